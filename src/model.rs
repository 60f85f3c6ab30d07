//! Loading TorchScript models through the model contract (model file + `.modelinfo` + labels)
//! and running them on canonical images.
//!
//! Canonical images are `float32 [N, 3, H, W]` RGB tensors with values in `[0, 1]` on the
//! model's device. Each model resizes them to its own input size (antialiased bilinear, a
//! differentiable step, so attacks can work through it), applies its normalisation and layout.

use std::path::{Path, PathBuf};

use tch::{CModule, Device, Kind, Tensor};

use crate::denormals::FlushDenormals;
use crate::fork_join::ForkJoin;
use crate::modelinfo::{Layout, ModelInfo, ModelInfoError, PartOutput, Role, TensorType};
use crate::partset::PartSet;
use crate::preprocess::{
    Frame, FrameError, InputFormat, InputMemory, Scaling, frames_to_inputs_on,
};

/// A model that cannot be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model {}: file not found", .0.display())]
    NotFound(PathBuf),
    #[error("model {}: no modelinfo sidecar at {}", model.display(), sidecar.display())]
    NoModelInfo { model: PathBuf, sidecar: PathBuf },
    #[error(transparent)]
    ModelInfo(#[from] ModelInfoError),
    #[error("model {}: cannot load TorchScript: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("model {}: label file {}: {reason}", model.display(), labels.display())]
    Labels {
        model: PathBuf,
        labels: PathBuf,
        reason: String,
    },
    #[error("model {}: does not match its modelinfo {}: {reason}", path.display(), info.display())]
    Mismatch {
        path: PathBuf,
        info: PathBuf,
        reason: String,
    },
    #[error("model {}: is a {found}, but a {expected} is needed", path.display())]
    WrongRole {
        path: PathBuf,
        found: &'static str,
        expected: &'static str,
    },
    #[error("model {}: inference failed: {reason}", path.display())]
    Inference { path: PathBuf, reason: String },
}

/// Reads a label file: one name per line; blank lines and `#` comments are skipped.
pub fn read_labels(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let labels: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if labels.is_empty() {
        return Err("no labels in it".into());
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
        return Err(format!("label \"{dup}\" appears twice"));
    }
    Ok(labels)
}

/// How [`Model::load_with`] loads the TorchScript module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LoadOptions {
    /// Freeze the module for inference (in eval mode, with `torch::jit::freeze`: parameters
    /// become constants, batch norms are folded into the convolutions before them). Outputs agree with the
    /// module as saved to float rounding, and gradients still flow to the input. A module
    /// that cannot be frozen, or that fails the load-time probe pass once frozen, is loaded
    /// as saved, with a warning.
    pub freeze: bool,
}

/// Loads the TorchScript module at `path` onto `device`, frozen when `options` ask for it
/// and libtorch can; returns it and whether it is frozen.
fn load_module(
    path: &Path,
    device: Device,
    options: LoadOptions,
) -> Result<(CModule, bool), ModelError> {
    if options.freeze {
        let frozen = crate::freeze::freeze_torchscript(path).and_then(|bytes| {
            CModule::load_data_on_device(&mut std::io::Cursor::new(bytes), device)
                .map_err(|e| e.to_string())
        });
        match frozen {
            Ok(module) => return Ok((module, true)),
            Err(reason) => log::warn!(
                "{}: cannot be frozen ({}); running it as saved",
                path.display(),
                first_line(&reason)
            ),
        }
    }
    let module = CModule::load_on_device(path, device).map_err(|e| ModelError::Load {
        path: path.to_owned(),
        reason: first_line(&e.to_string()),
    })?;
    Ok((module, false))
}

/// A TorchScript model loaded with its modelinfo and labels, validated.
#[derive(Debug)]
pub struct Model {
    path: PathBuf,
    module: CModule,
    info: ModelInfo,
    labels: Vec<String>,
    device: Device,
    layout: Layout,
    /// NCHW input given channels-last strides (see [`Model::channels_last`]).
    channels_last: bool,
    /// Frozen for inference at load (see [`LoadOptions::freeze`]).
    frozen: bool,
    size: (i64, i64),
    /// Per-channel affine from `[0,1]` canonical pixels to model input, shaped `[1,3,1,1]`,
    /// and its values.
    scale: Tensor,
    offset: Tensor,
    affine: ([f32; 3], [f32; 3]),
}

impl Model {
    /// Loads `path` with its `<path>.modelinfo` sidecar and label file onto `device`, and
    /// checks the model against the modelinfo with a probe forward pass.
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Self, ModelError> {
        Self::load_with(path, device, LoadOptions::default())
    }

    /// [`Self::load`] with `options` (e.g. frozen for inference).
    pub fn load_with(
        path: impl AsRef<Path>,
        device: Device,
        options: LoadOptions,
    ) -> Result<Self, ModelError> {
        let path = path.as_ref().to_owned();
        if !path.is_file() {
            return Err(ModelError::NotFound(path));
        }
        let sidecar = ModelInfo::sidecar_of(&path);
        if !sidecar.is_file() {
            return Err(ModelError::NoModelInfo {
                model: path,
                sidecar,
            });
        }
        let info = ModelInfo::load(&sidecar)?;
        let mismatch = |reason: String| ModelError::Mismatch {
            path: path.clone(),
            info: sidecar.clone(),
            reason,
        };
        let (layout, h, w) = info.input_geometry().map_err(mismatch)?;
        let labels_path = info.labels_path();
        let labels = read_labels(&labels_path).map_err(|reason| ModelError::Labels {
            model: path.clone(),
            labels: labels_path.clone(),
            reason,
        })?;
        let (module, frozen) = load_module(&path, device, options)?;
        let (scale, offset) = info.pixel_affine();
        let scale = scale.map(|x| x * 255.0);
        let shape = [1, 3, 1, 1];
        let to = |v: [f32; 3]| Tensor::from_slice(&v).view(shape).to(device);
        let mut model = Self {
            module,
            layout,
            channels_last: false,
            size: (h, w),
            scale: to(scale),
            offset: to(offset),
            affine: (scale, offset),
            labels,
            device,
            frozen,
            path: path.clone(),
            info,
        };
        if let Err(reason) = model.check_output_against_contract() {
            if !frozen {
                return Err(mismatch(reason));
            }
            // Whatever freezing broke, the model as saved is judged on its own.
            log::warn!(
                "{}: frozen, it fails its probe ({reason}); running it as saved",
                path.display()
            );
            return Self::load_with(&path, device, LoadOptions { freeze: false });
        }
        model.channels_last = device == Device::Cpu
            && layout == Layout::Nchw
            && model.gives_the_same_outputs_channels_last();
        log::info!(
            "loaded {}{} on {device:?}: input {:?} ({}), {} labels",
            path.display(),
            if model.frozen { " (frozen)" } else { "" },
            model.info.input.dims,
            if model.channels_last {
                "channels-last in memory"
            } else {
                "contiguous"
            },
            model.labels.len()
        );
        Ok(model)
    }

    /// Runs a probe batch and checks the output shape against the modelinfo and labels.
    fn check_output_against_contract(&self) -> Result<(), String> {
        let batch = match self.info.input.dims[0] {
            -1 => 2,
            n => n,
        };
        let probe = Tensor::full(
            [batch, 3, self.size.0, self.size.1],
            0.5,
            (Kind::Float, self.device),
        );
        let out = tch::no_grad(|| self.forward_images(&probe)).map_err(|e| {
            format!(
                "probe forward with input {:?} failed: {}",
                self.input_dims(batch),
                first_line(&e)
            )
        })?;
        let got = out.size();
        let want = &self.info.output.dims;
        let dims_match =
            got.len() == want.len() && got.iter().zip(want).all(|(&g, &w)| w == -1 || g == w);
        if !dims_match || got[0] != batch {
            return Err(format!(
                "output [{}] has shape {got:?} for a batch of {batch}, modelinfo says {want:?}",
                self.info.output.name
            ));
        }
        let width = got.get(1).copied().unwrap_or(0) as usize;
        match self.info.role {
            Role::Classifier if got.len() != 2 => Err(format!(
                "a classifier's output must be [N, classes], got {got:?}"
            )),
            Role::PartExtractor(PartOutput::Segmentation { .. }) if got.len() != 4 => Err(format!(
                "a segmentation part extractor's output must be [N, P+1, h, w], got {got:?}"
            )),
            Role::PartExtractor(PartOutput::MultiLabel { .. }) if got.len() != 2 => Err(format!(
                "a multilabel part extractor's output must be [N, P], got {got:?}"
            )),
            _ if width != self.labels.len() => Err(format!(
                "output width {width} but {} labels in {}",
                self.labels.len(),
                self.info.labels_path().display()
            )),
            _ => Ok(()),
        }
    }

    /// Whether the model runs channels-last inputs (NCHW with NHWC strides) and gives the
    /// same outputs as with contiguous ones (within float32 rounding of a different
    /// convolution algorithm). Probed once with a patterned batch; a model whose code relies
    /// on contiguous activations (a `view` after a convolution, say) fails and keeps
    /// contiguous inputs.
    fn gives_the_same_outputs_channels_last(&self) -> bool {
        let (h, w) = self.size;
        let batch = self.fixed_batch().unwrap_or(2);
        let numel = batch * 3 * h * w;
        // Values that vary along every axis, in [0, 1].
        let probe = (Tensor::arange(numel, (Kind::Float, self.device)) * 0.618_034)
            .frac()
            .view([batch, 3, h, w]);
        let outputs = tch::no_grad(|| {
            let contiguous = self.forward_images(&probe)?;
            let input = to_channels_last(&self.prepare_contiguous(&probe));
            let channels_last = self.forward_prepared(&input)?;
            Ok::<_, String>((contiguous, channels_last))
        });
        let (a, b) = match outputs {
            Ok(pair) => pair,
            Err(e) => {
                log::info!(
                    "{}: keeps contiguous inputs (a channels-last forward failed: {})",
                    self.path.display(),
                    first_line(&e)
                );
                return false;
            }
        };
        let largest = a.abs().max().double_value(&[]);
        let difference = if a.size() == b.size() {
            (&a - &b).abs().max().double_value(&[])
        } else {
            f64::INFINITY
        };
        let same = difference <= 1e-3 * (1.0 + largest);
        if !same {
            log::warn!(
                "{}: keeps contiguous inputs (channels-last outputs differ by {difference:e})",
                self.path.display()
            );
        }
        same
    }

    /// Whether forward passes get NCHW inputs with channels-last strides: on the CPU,
    /// libtorch's oneDNN convolutions then run without reordering every activation, which
    /// makes small-image models much faster (the shipped M 1.1x, K 1.4–1.5x, both side by
    /// side on two cores 1.2–1.6x, more at larger batches). Decided at load by a probe; the
    /// outputs are the same up to float32 rounding.
    pub fn channels_last(&self) -> bool {
        self.channels_last
    }

    /// Sets [`Self::channels_last`] (for comparisons; `true` only for a model that passed
    /// the probe at load, so a model that cannot take channels-last inputs keeps contiguous
    /// ones).
    pub fn set_channels_last(&mut self, channels_last: bool) {
        self.channels_last = channels_last && self.gives_the_same_outputs_channels_last();
    }

    fn input_dims(&self, batch: i64) -> Vec<i64> {
        let (h, w) = self.size;
        match self.layout {
            Layout::Nchw => vec![batch, 3, h, w],
            Layout::Nhwc => vec![batch, h, w, 3],
        }
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed modelinfo.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Labels, one per output channel.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Whether the module was frozen for inference at load.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Input height and width.
    pub fn input_size(&self) -> (i64, i64) {
        self.size
    }

    /// Fixed batch size required by the model, if any.
    pub fn fixed_batch(&self) -> Option<i64> {
        (self.info.input.dims[0] > 0).then_some(self.info.input.dims[0])
    }

    /// Converts canonical images (`[N,3,H,W]`, `[0,1]`, any H and W) to the model's input:
    /// resize, channel order, normalisation, layout and type. Differentiable for float inputs.
    pub fn prepare(&self, images: &Tensor) -> Tensor {
        let x = self.prepare_contiguous(images);
        match self.layout {
            Layout::Nchw if self.channels_last => to_channels_last(&x),
            _ => x,
        }
    }

    /// What [`Self::prepare`] makes of canonical images: size, normalisation, channel order,
    /// type and memory layout.
    pub fn input_format(&self) -> InputFormat {
        InputFormat {
            size: self.size,
            scale: self.affine.0,
            offset: self.affine.1,
            bgr: self.info.bgr,
            uint8: self.info.input.ty == TensorType::Uint8,
            memory: match self.layout {
                Layout::Nhwc => InputMemory::Nhwc,
                Layout::Nchw if self.channels_last => InputMemory::ChannelsLast,
                Layout::Nchw => InputMemory::Nchw,
            },
        }
    }

    /// The model's input for video frames: [`Self::prepare`] of their canonical images, the
    /// same values, made in one pass on the CPU ([`frames_to_inputs`]).
    pub fn prepare_frames(
        &self,
        frames: &[Frame<'_>],
        scaling: Scaling,
    ) -> Result<Tensor, FrameError> {
        Ok(prepare_frames(&[self], frames, scaling)?.remove(0))
    }

    /// [`Self::prepare`] with a contiguous NCHW result for NCHW models.
    fn prepare_contiguous(&self, images: &Tensor) -> Tensor {
        let (h, w) = self.size;
        let mut x = resize(images, h, w);
        if self.info.bgr {
            x = x.flip([1]);
        }
        match self.info.input.ty {
            TensorType::Float32 => x = &x * &self.scale + &self.offset,
            TensorType::Uint8 => x = (x * 255.0).round().clamp(0.0, 255.0).to_kind(Kind::Uint8),
        }
        match self.layout {
            Layout::Nchw => x,
            Layout::Nhwc => x.permute([0, 2, 3, 1]).contiguous(),
        }
    }

    /// Raw model output on canonical images (subnormal floats flushed to zero during the
    /// pass, see [`FlushDenormals`]).
    pub fn forward_images(&self, images: &Tensor) -> Result<Tensor, String> {
        forward_flushed(&self.module, &self.prepare(images)).map_err(|e| e.to_string())
    }

    /// The TorchScript module (thread-safe: forward passes may run on several threads).
    pub fn module(&self) -> &CModule {
        &self.module
    }

    /// Forward pass on an input already prepared by [`Self::prepare`]. Like
    /// [`Self::forward_images`], it runs with subnormal floats flushed to zero
    /// ([`FlushDenormals`]).
    pub fn forward_prepared(&self, input: &Tensor) -> Result<Tensor, String> {
        forward_flushed(&self.module, input).map_err(|e| e.to_string())
    }

    fn forward_checked(&self, images: &Tensor) -> Result<Tensor, ModelError> {
        self.forward_images(images)
            .map_err(|reason| self.inference_error(&reason))
    }

    fn forward_prepared_checked(&self, input: &Tensor) -> Result<Tensor, ModelError> {
        self.forward_prepared(input)
            .map_err(|reason| self.inference_error(&reason))
    }

    fn inference_error(&self, reason: &str) -> ModelError {
        ModelError::Inference {
            path: self.path.clone(),
            reason: first_line(reason),
        }
    }
}

/// A TorchScript module's forward pass on one input, with subnormal floats flushed to zero
/// during the pass ([`FlushDenormals`]): how every model of the project runs, the models'
/// own methods and the benchmark's floor alike.
pub fn forward_flushed(module: &CModule, input: &Tensor) -> Result<Tensor, tch::TchError> {
    let _flush = FlushDenormals::new();
    module.forward_ts(&[input])
}

/// The inputs of `models` (on one device) for video frames: [`Model::prepare_frames`] of each,
/// with the frames resized once per input size.
pub fn prepare_frames(
    models: &[&Model],
    frames: &[Frame<'_>],
    scaling: Scaling,
) -> Result<Vec<Tensor>, FrameError> {
    prepare_frames_on(models, frames, scaling, None)
}

/// [`prepare_frames`], on the CPU with each frame's resize in bands over the threads of
/// `fork` (if given).
pub fn prepare_frames_on(
    models: &[&Model],
    frames: &[Frame<'_>],
    scaling: Scaling,
    fork: Option<&ForkJoin>,
) -> Result<Vec<Tensor>, FrameError> {
    let Some(device) = models.first().map(|m| m.device) else {
        return Ok(Vec::new());
    };
    let formats: Vec<InputFormat> = models.iter().map(|m| m.input_format()).collect();
    let inputs = frames_to_inputs_on(frames, &formats, scaling, fork)?;
    if device == Device::Cpu {
        return Ok(inputs);
    }
    // Video frames are in system memory: resized here, each model's input crosses to the
    // device at its own size (48 KiB for a 64x64 float image, against 8 MiB for a 1080p
    // BGRx frame uploaded whole, once per model, and resized there: on an H200 machine the
    // element at 1080p, batch 1, went from 106 to 301 fps with this).
    Ok(inputs.into_iter().map(|t| t.to_device(device)).collect())
}

/// The same `[N,C,H,W]` tensor with channels-last strides (NHWC in memory); no copy when it
/// already has them.
fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Resizes canonical images to `h x w` with antialiased bilinear interpolation (no-op if the
/// size already matches).
pub fn resize(images: &Tensor, h: i64, w: i64) -> Tensor {
    let size = images.size();
    if size[2] == h && size[3] == w {
        return images.shallow_clone();
    }
    images.internal_upsample_bilinear2d_aa([h, w], false, None, None)
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(s)
        .to_owned()
}

/// The protected classifier M.
#[derive(Debug)]
pub struct Classifier {
    model: Model,
}

impl Classifier {
    /// Loads a classifier (role `classifier` in its modelinfo).
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Self, ModelError> {
        Self::from_model(Model::load(path, device)?)
    }

    /// A loaded model (e.g. [`Model::load_with`]) whose modelinfo says it is a classifier.
    pub fn from_model(model: Model) -> Result<Self, ModelError> {
        match model.info.role {
            Role::Classifier => Ok(Self { model }),
            Role::PartExtractor(_) => Err(ModelError::WrongRole {
                path: model.path,
                found: "part extractor",
                expected: "classifier",
            }),
        }
    }

    /// The underlying model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Class names.
    pub fn labels(&self) -> &[String] {
        &self.model.labels
    }

    /// Logits `[N, classes]` for canonical images (differentiable).
    pub fn logits(&self, images: &Tensor) -> Result<Tensor, ModelError> {
        self.model.forward_checked(images)
    }

    /// Predicted class index and softmax confidence for each image.
    pub fn predict(&self, images: &Tensor) -> Result<Vec<(usize, f32)>, ModelError> {
        Ok(Self::predictions(&tch::no_grad(|| self.logits(images))?))
    }

    /// [`Self::predict`] on an input made by [`Model::prepare`] or
    /// [`Model::prepare_frames`].
    pub fn predict_prepared(&self, input: &Tensor) -> Result<Vec<(usize, f32)>, ModelError> {
        Ok(Self::predictions(&self.logits_prepared(input)?))
    }

    /// Logits for an input made by [`Model::prepare`] or [`Model::prepare_frames`], without
    /// autograd. Not read back: on a GPU the pass is only queued when this returns.
    pub fn logits_prepared(&self, input: &Tensor) -> Result<Tensor, ModelError> {
        tch::no_grad(|| self.model.forward_prepared_checked(input))
    }

    /// Predicted class index and softmax confidence from each row of `logits`, computed on
    /// the CPU (logits on a GPU are read back once, `[N, classes]` floats).
    ///
    /// libtorch's softmax, read back once; the maximum of each row is found here, as
    /// `max_dim` finds it (the first maximum, or the first NaN), which saves libtorch's
    /// dispatch of two more operators: its code is cold right after M's forward pass.
    pub fn predictions(logits: &Tensor) -> Vec<(usize, f32)> {
        let logits = if logits.device() == Device::Cpu {
            logits.shallow_clone()
        } else {
            logits.to_device(Device::Cpu)
        };
        let classes = logits.size().last().copied().unwrap_or(0).max(0) as usize;
        let probs = Vec::<f32>::try_from(logits.softmax(-1, Kind::Float).flatten(0, -1))
            .unwrap_or_default();
        if classes == 0 {
            return Vec::new();
        }
        probs.chunks_exact(classes).map(first_maximum).collect()
    }
}

/// The index and value of a row's first maximum, or of its first NaN: what libtorch's
/// `max_dim` returns on the CPU.
fn first_maximum(row: &[f32]) -> (usize, f32) {
    let mut best = (0, row[0]);
    for (i, &value) in row.iter().enumerate().skip(1) {
        if best.1.is_nan() {
            break;
        }
        if value > best.1 || value.is_nan() {
            best = (i, value);
        }
    }
    best
}

/// The part extractor K.
#[derive(Debug)]
pub struct PartExtractor {
    model: Model,
    output: PartOutput,
}

impl PartExtractor {
    /// Loads a part extractor (role `part-extractor` in its modelinfo).
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Self, ModelError> {
        Self::from_model(Model::load(path, device)?)
    }

    /// A loaded model (e.g. [`Model::load_with`]) whose modelinfo says it is a part
    /// extractor.
    pub fn from_model(model: Model) -> Result<Self, ModelError> {
        match model.info.role {
            Role::PartExtractor(output) => Ok(Self { model, output }),
            Role::Classifier => Err(ModelError::WrongRole {
                path: model.path,
                found: "classifier",
                expected: "part extractor",
            }),
        }
    }

    /// The underlying model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// How parts are read from the output (thresholds included).
    pub fn output(&self) -> PartOutput {
        self.output
    }

    /// Overrides the thresholds (e.g. from element properties).
    pub fn set_output(&mut self, output: PartOutput) {
        self.output = output;
    }

    /// Part names in output-channel order (for segmentation, index 0 is the background).
    pub fn labels(&self) -> &[String] {
        &self.model.labels
    }

    /// Names of the parts the extractor can report, with their output channel.
    pub fn part_channels(&self) -> impl Iterator<Item = (usize, &str)> {
        let skip = matches!(self.output, PartOutput::Segmentation { .. }) as usize;
        self.model
            .labels
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, l)| (i, l.as_str()))
    }

    /// Raw output for canonical images (differentiable).
    pub fn raw(&self, images: &Tensor) -> Result<Tensor, ModelError> {
        self.model.forward_checked(images)
    }

    /// Raw output for an input made by [`Model::prepare`] or [`Model::prepare_frames`].
    pub fn raw_prepared(&self, input: &Tensor) -> Result<Tensor, ModelError> {
        self.model.forward_prepared_checked(input)
    }

    /// Per image, per output channel: whether the part is found. Channels are the model's.
    pub fn found_channels(&self, images: &Tensor) -> Result<Vec<PartSet>, ModelError> {
        let out = tch::no_grad(|| self.raw(images))?;
        Ok(self.decide(&out))
    }

    /// Turns raw outputs into per-image sets of output channels that count as found.
    pub fn decide(&self, out: &Tensor) -> Vec<PartSet> {
        let n = out.size()[0];
        let channels = out.size()[1];
        // A segmentation's channel 0 is its background, not a part.
        let skip = matches!(self.output, PartOutput::Segmentation { .. }) as usize;
        let flags = match self.output {
            PartOutput::Segmentation {
                min_area,
                min_confidence,
            } => {
                // A float map as it is: `to_kind` is a call through libtorch's dispatcher
                // even when it changes nothing (see `segmentation::stats_cpu`).
                let out = if out.kind() == Kind::Float {
                    out.shallow_clone()
                } else {
                    out.to_kind(Kind::Float)
                };
                let (area, conf_sum) = if out.device() == Device::Cpu {
                    crate::segmentation::stats_cpu(&out, skip)
                } else {
                    crate::segmentation::stats_tensor(&out)
                };
                let pixels = (out.size()[2] * out.size()[3]) as f64;
                // Comparisons in float32, like the tensor comparisons they replace.
                let min_pixels = (min_area as f64 * pixels) as f32;
                area.iter()
                    .zip(&conf_sum)
                    .map(|(&a, &s)| {
                        let mean = s as f32 / a.max(1) as f32;
                        a > 0 && a as f32 >= min_pixels && mean >= min_confidence
                    })
                    .collect()
            }
            PartOutput::MultiLabel { threshold } => {
                let found = out.sigmoid().ge(threshold as f64);
                Vec::<bool>::try_from(found.to_device(Device::Cpu).flatten(0, -1))
                    .unwrap_or_default()
            }
        };
        (0..n as usize)
            .map(|i| {
                (skip..channels as usize)
                    .filter(|&c| flags[i * channels as usize + c])
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libtorch's own answer: softmax, then `max_dim` over the classes.
    fn libtorch_predictions(logits: &Tensor) -> Vec<(usize, f32)> {
        let (conf, idx) = logits.softmax(-1, Kind::Float).max_dim(-1, false);
        let conf = Vec::<f32>::try_from(conf).unwrap();
        let idx = Vec::<i64>::try_from(idx).unwrap();
        idx.into_iter().map(|i| i as usize).zip(conf).collect()
    }

    #[test]
    fn the_first_maximum_is_max_dims_on_raw_rows_nan_anywhere() {
        // Softmax turns a row with a NaN into NaNs only, so the rows go to `max_dim` as they
        // are: NaNs before, at and after the maximum, ties, infinities.
        let nan = f32::NAN;
        let rows: [[f32; 4]; 8] = [
            [1.0, 3.0, 3.0, 0.0],
            [1.0, nan, 5.0, 2.0],
            [5.0, 2.0, nan, nan],
            [nan, 1.0, 2.0, 3.0],
            [2.0, 2.0, 2.0, 2.0],
            [f32::NEG_INFINITY, -1.0, f32::INFINITY, f32::INFINITY],
            [-0.0, 0.0, -1.0, 0.0],
            [0.5, 4.0, nan, 4.0],
        ];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let (values, indices) = Tensor::from_slice(&flat).view([8, 4]).max_dim(-1, false);
        let values = Vec::<f32>::try_from(values).unwrap();
        let indices = Vec::<i64>::try_from(indices).unwrap();
        for (i, row) in rows.iter().enumerate() {
            let (index, value) = first_maximum(row);
            assert_eq!(index as i64, indices[i], "row {i}: {row:?}");
            assert!(
                value.to_bits() == values[i].to_bits() || (value.is_nan() && values[i].is_nan()),
                "row {i}: {value} against {}",
                values[i]
            );
        }
    }

    #[test]
    fn predictions_are_libtorchs_max_dim_ties_and_nan_included() {
        tch::manual_seed(3);
        // Logits on a coarse grid, so that rows often tie at their maximum.
        let grid = (Tensor::randn([64, 7], (Kind::Float, Device::Cpu)) * 2.0).round();
        let tied = Tensor::from_slice(&[1.0f32, 3.0, 3.0, 0.0, 3.0, 3.0, 3.0, 3.0]).view([2, 4]);
        let nan =
            Tensor::from_slice(&[1.0f32, f32::NAN, 5.0, 2.0, 4.0, 0.0, f32::NAN, 1.0]).view([2, 4]);
        let one_class = Tensor::from_slice(&[0.5f32, -2.0]).view([2, 1]);
        for (name, logits) in [
            ("grid", grid),
            ("tied", tied),
            ("nan", nan),
            ("one class", one_class),
        ] {
            let ours = Classifier::predictions(&logits);
            let theirs = libtorch_predictions(&logits);
            assert_eq!(ours.len(), theirs.len(), "{name}");
            for (row, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert_eq!(a.0, b.0, "{name}, row {row}: class");
                assert!(
                    a.1.to_bits() == b.1.to_bits() || (a.1.is_nan() && b.1.is_nan()),
                    "{name}, row {row}: confidence {} against {}",
                    a.1,
                    b.1
                );
            }
        }
        assert!(
            Classifier::predictions(&Tensor::zeros([0, 5], (Kind::Float, Device::Cpu))).is_empty()
        );
    }
}
