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
    /// Optimisation steps for each classifier.
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
            classifier_steps: 1200,
            extractor_steps: 3000,
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

fn image_input(dims_n: i64) -> TensorInfo {
    TensorInfo {
        name: "input".into(),
        id: Some("image".into()),
        ty: TensorType::Float32,
        dims: vec![dims_n, 3, INPUT_SIZE, INPUT_SIZE],
        dir: Direction::Input,
        ranges: vec![(0.0, 1.0); 3],
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

/// Trains one classifier M for a class set, exports it and measures held-out accuracy.
pub fn train_classifier(
    class_set: &str,
    variant: Variant,
    opts: &TrainOptions,
) -> anyhow::Result<ClassifierReport> {
    let kb = world_kb()?;
    let (set_name, classes) = class_set_indices(&kb, class_set)?;
    let names: Vec<String> = classes
        .iter()
        .map(|&c| partsworld::CLASSES[c].to_owned())
        .collect();
    let device = Device::Cpu;
    tch::manual_seed(opts.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let config = match variant {
        Variant::Baseline => ResNetConfig::baseline(classes.len() as i64),
        Variant::Denoise => ResNetConfig::denoise(classes.len() as i64),
    };
    let net = ResNet::new(&vs.root(), &config);
    let mut opt = nn::AdamW::default().wd(5e-4).build(&vs, opts.lr)?;
    let scene_opts = SceneOptions {
        classes: classes.clone(),
        ..SceneOptions::default()
    };
    let stream = SampleStream::new(
        seeds::TRAIN,
        0,
        &scene_opts,
        INPUT_SIZE as u32,
        opts.batch,
        1,
    );
    let file_stem = format!("m-{}-{}", set_name.to_ascii_lowercase(), variant.name());
    let bar = progress_bar(opts.progress, opts.classifier_steps, &file_stem);
    let start = Instant::now();
    let mut smoothed = f64::NAN;
    for (step, samples) in stream.take(opts.classifier_steps).enumerate() {
        let batch = Batch::from_samples(&samples, device);
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
        opt.set_lr(schedule::warmup_cosine(
            step,
            opts.classifier_steps,
            opts.lr,
        ));
        let loss = net
            .forward_t(&normalise(&images), true)
            .cross_entropy_for_logits(&targets);
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
    }
    bar.finish_and_clear();
    let train_seconds = start.elapsed().as_secs_f64();

    std::fs::create_dir_all(&opts.out_dir)?;
    let model_path = opts.out_dir.join(format!("{file_stem}.pt"));
    export_model(&mut vs, &net, &file_stem, &model_path)?;
    let labels_name = format!("{file_stem}.labels");
    write_labels(&opts.out_dir.join(&labels_name), &names)?;
    // Keep an existing calibration (written by `unmask calibrate`) only if it still applies;
    // a retrained model needs recalibrating, so it is dropped.
    let info = ModelInfo {
        path: ModelInfo::sidecar_of(&model_path),
        group_id: format!("unmask-partsworld-{file_stem}"),
        input: image_input(-1),
        output: TensorInfo {
            name: "logits".into(),
            id: Some("classification-logits".into()),
            ty: TensorType::Float32,
            dims: vec![-1, classes.len() as i64],
            dir: Direction::Output,
            ranges: vec![],
        },
        role: Role::Classifier,
        labels: labels_name.into(),
        mean: [MEAN; 3],
        std: [STD; 3],
        bgr: false,
        calibration: None,
    };
    info.save()?;

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
    let mut opt = nn::AdamW::default().wd(1e-4).build(&vs, opts.lr)?;
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
    let bar = progress_bar(opts.progress, opts.extractor_steps, "k-parts");
    let start = Instant::now();
    let mut smoothed = f64::NAN;
    for (step, samples) in stream.take(opts.extractor_steps).enumerate() {
        let batch = Batch::from_samples(&samples, device);
        opt.set_lr(schedule::warmup_cosine(step, opts.extractor_steps, opts.lr));
        let logits = net.forward_t(&normalise(&batch.images), true);
        let loss = logits.log_softmax(1, Kind::Float).nll_loss_nd(
            &batch.labels,
            Some(&weights),
            tch::Reduction::Mean,
            -100,
        );
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
    }
    bar.finish_and_clear();
    let train_seconds = start.elapsed().as_secs_f64();

    std::fs::create_dir_all(&opts.out_dir)?;
    let model_path = opts.out_dir.join("k-parts.pt");
    export_model(&mut vs, &net, "k-parts", &model_path)?;
    let mut labels = vec!["background".to_owned()];
    labels.extend(partsworld::PARTS.iter().map(|p| p.to_string()));
    write_labels(&opts.out_dir.join("k-parts.labels"), &labels)?;
    let mut info = ModelInfo {
        path: ModelInfo::sidecar_of(&model_path),
        group_id: "unmask-partsworld-k-parts".into(),
        input: image_input(-1),
        output: TensorInfo {
            name: "part_logits".into(),
            id: Some("segmentation-part-logits".into()),
            ty: TensorType::Float32,
            dims: vec![-1, parts + 1, INPUT_SIZE, INPUT_SIZE],
            dir: Direction::Output,
            ranges: vec![],
        },
        role: Role::PartExtractor(PartOutput::Segmentation {
            min_area: 0.0015,
            min_confidence: 0.5,
        }),
        labels: "k-parts.labels".into(),
        mean: [MEAN; 3],
        std: [STD; 3],
        bgr: false,
        calibration: None,
    };
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
    })
}

/// The whole training report written next to the models.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingReport {
    pub command: String,
    pub machine: String,
    pub libtorch_threads: i32,
    pub total_seconds: f64,
    pub extractor: Option<ExtractorReport>,
    pub classifiers: Vec<ClassifierReport>,
}

impl TrainingReport {
    /// Reads a report.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}
