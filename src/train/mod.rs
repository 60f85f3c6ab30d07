//! Training the default models on parts-world, exporting them through the model contract
//! (TorchScript + `.modelinfo` + labels) and measuring them on held-out data.

pub mod data;
pub mod metrics;
pub mod schedule;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor, nn};

use crate::model::{Classifier, PartExtractor};
use crate::modelinfo::{Direction, ModelInfo, PartOutput, Role, TensorInfo, TensorType};
use crate::nets::resnet::{ResNet, ResNetConfig};
use crate::nets::segnet::{PartSegNet, SegNetConfig};
use crate::nets::{export_traced, parameter_count};
use crate::partsworld::{self, SampleStream, SceneOptions};
use data::{Batch, augment};

/// Seeds of the parts-world splits. Each split uses its own seed, so no scene is shared.
pub mod seeds {
    /// Training data.
    pub const TRAIN: u64 = 0x7241_494e;
    /// Validation data (choosing K's part thresholds).
    pub const VALIDATION: u64 = 0x5641_4c49;
    /// Calibration data (choosing the detection threshold).
    pub const CALIBRATION: u64 = 0x4341_4c49;
    /// Held-out evaluation data, never used for training, tuning or calibration.
    pub const EVALUATION: u64 = 0x4556_414c;
}

/// Side of the square model input.
pub const INPUT_SIZE: i64 = 64;
/// Normalisation of the shipped models (after scaling pixels to `[0,1]`).
pub const MEAN: f32 = 0.5;
pub const STD: f32 = 0.25;

/// Classifier variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// ResNet-style baseline.
    Baseline,
    /// With feature-denoising blocks, trained with data augmentation.
    Denoise,
}

impl Variant {
    /// Both variants.
    pub const ALL: [Variant; 2] = [Variant::Baseline, Variant::Denoise];

    /// Lower-case name used in file names.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Denoise => "denoise",
        }
    }
}

/// Training options shared by all models.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Output folder (`models/partsworld`).
    pub out_dir: PathBuf,
    /// Optimisation steps of the 6-class pre-training of the shared classifier backbone.
    pub pretrain_steps: usize,
    /// Optimisation steps fine-tuning each classifier on its class set.
    pub classifier_steps: usize,
    /// Optimisation steps for the part extractor.
    pub extractor_steps: usize,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Held-out images used for the reported metrics.
    pub eval_images: usize,
    /// Seed for weight initialisation and augmentation (data seeds are in [`seeds`]).
    pub seed: u64,
    /// Show progress bars.
    pub progress: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            out_dir: crate::paths::partsworld_dir(),
            pretrain_steps: 6000,
            classifier_steps: 300,
            extractor_steps: 4200,
            batch: 64,
            lr: 3e-3,
            eval_images: 1000,
            seed: 7,
            progress: true,
        }
    }
}

/// What a classifier reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierReport {
    pub file: String,
    pub class_set: String,
    pub classes: Vec<String>,
    pub variant: Variant,
    pub parameters: i64,
    /// Fine-tuned from the variant's 6-class pre-trained backbone.
    pub fine_tuned: bool,
    pub steps: usize,
    pub images_seen: usize,
    pub train_seconds: f64,
    pub final_train_loss: f64,
    /// Clean accuracy on held-out parts-world images of the class set.
    pub heldout_accuracy: f64,
    pub heldout_images: usize,
}

/// What the part extractor reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtractorReport {
    pub file: String,
    pub parameters: i64,
    pub steps: usize,
    pub images_seen: usize,
    pub train_seconds: f64,
    pub final_train_loss: f64,
    /// Thresholds chosen on validation data and written to the modelinfo.
    pub min_area: f32,
    pub min_confidence: f32,
    /// Held-out metrics.
    pub heldout: metrics::ExtractorMetrics,
    /// How this entry came about when it is not a plain training run (e.g. re-measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn world_kb() -> anyhow::Result<crate::KnowledgeBase> {
    let path = crate::paths::default_knowledge();
    crate::KnowledgeBase::load(&path).with_context(|| "loading the parts-world knowledge base")
}

fn progress_bar(enabled: bool, len: usize, name: &str) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>18} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    bar.set_prefix(name.to_owned());
    bar
}

/// Normalises canonical images the way the shipped models expect.
pub fn normalise(images: &Tensor) -> Tensor {
    (images - MEAN as f64) / STD as f64
}

fn write_labels(path: &Path, labels: &[String]) -> anyhow::Result<()> {
    std::fs::write(path, labels.join("\n") + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// The modelinfo of a shipped model `<stem>.pt`: a dynamic-batch 64x64 RGB input in `[0,1]`
/// normalised with [`MEAN`]/[`STD`], one float output `(name, id, dims)`, labels in
/// `<stem>.labels`, no calibration (a retrained classifier needs `unmask calibrate`).
fn shipped_info(
    model_path: &Path,
    stem: &str,
    output: (&str, &str, Vec<i64>),
    role: Role,
) -> ModelInfo {
    let tensor = |name: &str, id: &str, dims: Vec<i64>, dir, ranges| TensorInfo {
        name: name.into(),
        id: Some(id.into()),
        ty: TensorType::Float32,
        dims,
        dir,
        ranges,
    };
    ModelInfo {
        path: ModelInfo::sidecar_of(model_path),
        group_id: format!("unmask-partsworld-{stem}"),
        input: tensor(
            "input",
            "image",
            vec![-1, 3, INPUT_SIZE, INPUT_SIZE],
            Direction::Input,
            vec![(0.0, 1.0); 3],
        ),
        output: tensor(output.0, output.1, output.2, Direction::Output, vec![]),
        role,
        labels: format!("{stem}.labels").into(),
        mean: [MEAN; 3],
        std: [STD; 3],
        bgr: false,
        calibration: None,
    }
}

/// Classes (world indices) of a class set of the world's knowledge base.
pub fn class_set_indices(
    kb: &crate::KnowledgeBase,
    class_set: &str,
) -> anyhow::Result<(String, Vec<usize>)> {
    let set = kb.class_set(class_set)?;
    let indices = set
        .classes
        .iter()
        .map(|c| {
            partsworld::CLASSES
                .iter()
                .position(|w| w == c)
                .with_context(|| format!("class {c} is not drawn by parts-world"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((set.name.clone(), indices))
}

/// What the pre-training of the classifier backbone reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainReport {
    pub classes: Vec<String>,
    pub steps: usize,
    pub images_seen: usize,
    pub train_seconds: f64,
    pub final_train_loss: f64,
}

fn resnet_config(variant: Variant, classes: usize) -> ResNetConfig {
    match variant {
        Variant::Baseline => ResNetConfig::baseline(classes as i64),
        Variant::Denoise => ResNetConfig::denoise(classes as i64),
    }
}

/// Optimises `net` to classify parts-world images of `classes` (world indices; the net's
/// outputs follow this order) for `steps` steps of the training split.
#[allow(clippy::too_many_arguments)]
fn fit_classifier(
    net: &ResNet,
    vs: &nn::VarStore,
    classes: &[usize],
    variant: Variant,
    steps: usize,
    lr: f64,
    data_seed: u64,
    name: &str,
    opts: &TrainOptions,
) -> anyhow::Result<(f64, f64)> {
    let device = vs.device();
    let scene_opts = SceneOptions {
        classes: classes.to_vec(),
        ..SceneOptions::default()
    };
    let stream = SampleStream::new(data_seed, 0, &scene_opts, INPUT_SIZE as u32, opts.batch, 1);
    optimise(vs, 5e-4, steps, lr, stream, name, opts, |batch| {
        let targets: Vec<i64> = batch
            .world_classes
            .iter()
            .map(|c| classes.iter().position(|x| x == c).expect("class in set") as i64)
            .collect();
        let targets = Tensor::from_slice(&targets).to_device(device);
        let images = match variant {
            Variant::Baseline => batch.images,
            Variant::Denoise => augment(&batch.images),
        };
        net.forward_t(&normalise(&images), true)
            .cross_entropy_for_logits(&targets)
    })
}

/// Runs `steps` AdamW steps (weight decay `wd`, warm-up/cosine schedule peaking at `lr`) over
/// batches from `stream`, minimising `loss_of`; shows a progress bar. Returns the seconds
/// taken and the smoothed final loss.
#[allow(clippy::too_many_arguments)]
fn optimise(
    vs: &nn::VarStore,
    wd: f64,
    steps: usize,
    lr: f64,
    stream: SampleStream,
    name: &str,
    opts: &TrainOptions,
    mut loss_of: impl FnMut(Batch) -> Tensor,
) -> anyhow::Result<(f64, f64)> {
    let mut opt = nn::AdamW::default().wd(wd).build(vs, lr)?;
    let bar = progress_bar(opts.progress, steps, name);
    let start = Instant::now();
    let mut smoothed = f64::NAN;
    for (step, samples) in stream.take(steps).enumerate() {
        opt.set_lr(schedule::warmup_cosine(step, steps, lr));
        let loss = loss_of(Batch::from_samples(&samples, vs.device()));
        opt.backward_step(&loss);
        let l = loss.double_value(&[]);
        smoothed = if smoothed.is_nan() {
            l
        } else {
            0.98 * smoothed + 0.02 * l
        };
        bar.inc(1);
        if step % 20 == 0 {
            bar.set_message(format!("loss {smoothed:.3}"));
        }
        if !opts.progress && (step + 1) % (steps / 10).max(1) == 0 {
            eprintln!(
                "  {name}: step {}/{steps}, loss {smoothed:.3}, {:.0} s",
                step + 1,
                start.elapsed().as_secs_f64()
            );
        }
    }
    bar.finish_and_clear();
    Ok((start.elapsed().as_secs_f64(), smoothed))
}

/// Pre-trains the baseline classifier on all six parts-world classes — the role ImageNet
/// pre-training plays in the paper. Every class set's classifier, of either variant, is then
/// fine-tuned from these weights (the denoising blocks start as the identity).
pub fn pretrain_backbone(opts: &TrainOptions) -> anyhow::Result<(nn::VarStore, PretrainReport)> {
    let classes: Vec<usize> = (0..partsworld::CLASSES.len()).collect();
    tch::manual_seed(opts.seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), &resnet_config(Variant::Baseline, classes.len()));
    let (train_seconds, loss) = fit_classifier(
        &net,
        &vs,
        &classes,
        Variant::Baseline,
        opts.pretrain_steps,
        opts.lr,
        seeds::TRAIN,
        "pretrain",
        opts,
    )?;
    let report = PretrainReport {
        classes: partsworld::CLASSES.iter().map(|c| c.to_string()).collect(),
        steps: opts.pretrain_steps,
        images_seen: opts.pretrain_steps * opts.batch,
        train_seconds,
        final_train_loss: loss,
    };
    Ok((vs, report))
}

/// Copies every variable but the final classification layer from `from` to `to`; the
/// denoising blocks that only `to` has keep their (identity) initialisation.
fn copy_backbone(from: &nn::VarStore, to: &nn::VarStore) -> anyhow::Result<usize> {
    let source = from.variables();
    let mut copied = 0;
    tch::no_grad(|| -> anyhow::Result<()> {
        for (name, mut target) in to.variables() {
            if name.starts_with("fc.")
                || (name.contains(".denoise.") && !source.contains_key(&name))
            {
                continue;
            }
            let src = source
                .get(&name)
                .with_context(|| format!("pre-trained backbone lacks {name}"))?;
            target.f_copy_(src)?;
            copied += 1;
        }
        Ok(())
    })?;
    Ok(copied)
}

/// Trains one classifier M for a class set — fine-tuned from `backbone` when given (see
/// [`pretrain_backbone`]), from scratch otherwise — exports it through the model contract and
/// measures its held-out accuracy through the same loading path as user models.
pub fn train_classifier(
    class_set: &str,
    variant: Variant,
    backbone: Option<&nn::VarStore>,
    opts: &TrainOptions,
) -> anyhow::Result<ClassifierReport> {
    let kb = world_kb()?;
    let (set_name, classes) = class_set_indices(&kb, class_set)?;
    let names: Vec<String> = classes
        .iter()
        .map(|&c| partsworld::CLASSES[c].to_owned())
        .collect();
    let device = Device::Cpu;
    tch::manual_seed(opts.seed as i64 + 17);
    let mut vs = nn::VarStore::new(device);
    let net = ResNet::new(&vs.root(), &resnet_config(variant, classes.len()));
    let lr = match backbone {
        Some(pretrained) => {
            copy_backbone(pretrained, &vs)?;
            opts.lr / 3.0
        }
        None => opts.lr,
    };
    let file_stem = format!("m-{}-{}", set_name.to_ascii_lowercase(), variant.name());
    let data_seed = seeds::TRAIN
        ^ (set_name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
            << 8);
    let (train_seconds, smoothed) = fit_classifier(
        &net,
        &vs,
        &classes,
        variant,
        opts.classifier_steps,
        lr,
        data_seed,
        &file_stem,
        opts,
    )?;

    std::fs::create_dir_all(&opts.out_dir)?;
    let model_path = opts.out_dir.join(format!("{file_stem}.pt"));
    export_model(&mut vs, &net, &file_stem, &model_path)?;
    write_labels(&opts.out_dir.join(format!("{file_stem}.labels")), &names)?;
    shipped_info(
        &model_path,
        &file_stem,
        (
            "logits",
            "classification-logits",
            vec![-1, classes.len() as i64],
        ),
        Role::Classifier,
    )
    .save()?;

    let classifier = Classifier::load(&model_path, device)?;
    let heldout_accuracy =
        metrics::classifier_accuracy(&classifier, &classes, opts.eval_images, opts.batch)?;
    Ok(ClassifierReport {
        file: model_path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        class_set: set_name,
        classes: names,
        variant,
        parameters: parameter_count(&vs),
        fine_tuned: backbone.is_some(),
        steps: opts.classifier_steps,
        images_seen: opts.classifier_steps * opts.batch,
        train_seconds,
        final_train_loss: smoothed,
        heldout_accuracy,
        heldout_images: opts.eval_images,
    })
}

/// Exports a trained network (which takes normalised input, as its modelinfo says).
fn export_model(
    vs: &mut nn::VarStore,
    net: &impl ModuleT,
    name: &str,
    path: &Path,
) -> anyhow::Result<()> {
    export_traced(vs, net, name, (INPUT_SIZE, INPUT_SIZE), path)
        .with_context(|| format!("exporting {}", path.display()))
}

/// Trains the part extractor K on all classes, chooses its part thresholds on validation
/// data, exports it and measures it on held-out data.
pub fn train_extractor(opts: &TrainOptions) -> anyhow::Result<ExtractorReport> {
    let device = Device::Cpu;
    let parts = partsworld::PARTS.len() as i64;
    tch::manual_seed(opts.seed as i64 + 1);
    let mut vs = nn::VarStore::new(device);
    let net = PartSegNet::new(&vs.root(), &SegNetConfig::shipped(parts));
    let scene_opts = SceneOptions::default();
    let weights = metrics::part_class_weights(&scene_opts, 512, device);
    let stream = SampleStream::new(
        seeds::TRAIN ^ 0xE,
        0,
        &scene_opts,
        INPUT_SIZE as u32,
        opts.batch,
        1,
    );
    let (train_seconds, smoothed) = optimise(
        &vs,
        1e-4,
        opts.extractor_steps,
        opts.lr,
        stream,
        "k-parts",
        opts,
        |batch| {
            net.forward_t(&normalise(&batch.images), true)
                .log_softmax(1, Kind::Float)
                .nll_loss_nd(&batch.labels, Some(&weights), tch::Reduction::Mean, -100)
        },
    )?;

    std::fs::create_dir_all(&opts.out_dir)?;
    let model_path = opts.out_dir.join("k-parts.pt");
    export_model(&mut vs, &net, "k-parts", &model_path)?;
    let mut labels = vec!["background".to_owned()];
    labels.extend(partsworld::PARTS.iter().map(|p| p.to_string()));
    write_labels(&opts.out_dir.join("k-parts.labels"), &labels)?;
    let mut info = shipped_info(
        &model_path,
        "k-parts",
        (
            "part_logits",
            "segmentation-part-logits",
            vec![-1, parts + 1, INPUT_SIZE, INPUT_SIZE],
        ),
        Role::PartExtractor(PartOutput::Segmentation {
            min_area: 0.0015,
            min_confidence: 0.5,
        }),
    );
    info.save()?;

    let mut extractor = PartExtractor::load(&model_path, device)?;
    let (min_area, min_confidence) =
        metrics::choose_part_thresholds(&mut extractor, opts.eval_images, opts.batch)?;
    info.role = Role::PartExtractor(PartOutput::Segmentation {
        min_area,
        min_confidence,
    });
    info.save()?;
    let extractor = PartExtractor::load(&model_path, device)?;
    let heldout =
        metrics::extractor_metrics(&extractor, &world_kb()?, opts.eval_images, opts.batch)?;
    Ok(ExtractorReport {
        file: "k-parts.pt".into(),
        parameters: parameter_count(&vs),
        steps: opts.extractor_steps,
        images_seen: opts.extractor_steps * opts.batch,
        train_seconds,
        final_train_loss: smoothed,
        min_area,
        min_confidence,
        heldout,
        note: None,
    })
}

/// Re-measures the held-out metrics of an existing part extractor in `opts.out_dir` with the
/// thresholds of its modelinfo, without training. Training fields that a measurement cannot
/// know come from `previous` (an earlier report entry) or are zero, and `note` says so.
pub fn measure_extractor(
    opts: &TrainOptions,
    previous: Option<&ExtractorReport>,
) -> anyhow::Result<ExtractorReport> {
    let model_path = opts.out_dir.join("k-parts.pt");
    let extractor = PartExtractor::load(&model_path, Device::Cpu)?;
    let (min_area, min_confidence) = match extractor.output() {
        PartOutput::Segmentation {
            min_area,
            min_confidence,
        } => (min_area, min_confidence),
        other => anyhow::bail!(
            "{}: not a segmentation extractor ({other:?})",
            model_path.display()
        ),
    };
    // A traced, frozen module keeps its weights as constants: count those of the architecture.
    let parameters = {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = PartSegNet::new(
            &vs.root(),
            &SegNetConfig::shipped(partsworld::PARTS.len() as i64),
        );
        parameter_count(&vs)
    };
    let heldout =
        metrics::extractor_metrics(&extractor, &world_kb()?, opts.eval_images, opts.batch)?;
    let note = match previous {
        Some(p) => p.note.clone(),
        None => Some(format!(
            "re-measured without training: the run that trained this model ({} steps of {} \
             images) did not record its training time or final loss",
            opts.extractor_steps, opts.batch
        )),
    };
    Ok(ExtractorReport {
        file: "k-parts.pt".into(),
        parameters,
        steps: previous.map_or(opts.extractor_steps, |p| p.steps),
        images_seen: previous.map_or(opts.extractor_steps * opts.batch, |p| p.images_seen),
        train_seconds: previous.map_or(0.0, |p| p.train_seconds),
        final_train_loss: previous.map_or(0.0, |p| p.final_train_loss),
        min_area,
        min_confidence,
        heldout,
        note,
    })
}

/// The whole training report written next to the models.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingReport {
    pub command: String,
    pub machine: String,
    pub libtorch_threads: i32,
    /// Wall time of the run that last wrote the report (it may have trained only some models).
    pub total_seconds: f64,
    /// Sum of the optimisation times of every model in the report: the time to train the
    /// whole set (held-out measurements excluded).
    #[serde(default)]
    pub sum_train_seconds: f64,
    pub extractor: Option<ExtractorReport>,
    #[serde(default)]
    pub pretraining: Option<PretrainReport>,
    pub classifiers: Vec<ClassifierReport>,
    /// Detection thresholds chosen after training (one per classifier, with the shipped K).
    #[serde(default)]
    pub calibration: Vec<crate::eval::calibrate::CalibrationResult>,
}

impl TrainingReport {
    /// Reads a report.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Writes the report (pretty JSON).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Replaces the calibration entry of `result`'s classifier (kept sorted by file).
    pub fn record_calibration(&mut self, result: crate::eval::calibrate::CalibrationResult) {
        self.calibration
            .retain(|c| c.classifier != result.classifier);
        self.calibration.push(result);
        self.calibration
            .sort_by(|a, b| a.classifier.cmp(&b.classifier));
    }
}
