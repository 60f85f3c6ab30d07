//! The UnMask detector: classifier M + part extractor K + knowledge base -> verdicts.

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use crate::device::{DeviceError, parse_device};
use crate::fork_join::ForkJoin;
use crate::knowledge::{KnowledgeBase, KnowledgeError};
use crate::model::{Classifier, LoadOptions, Model, ModelError, PartExtractor, prepare_frames_on};
use crate::modelinfo::PartOutput;
use crate::partset::PartSet;
use crate::preprocess::{Frame, FrameError, Scaling};
use crate::similarity::{Thresholds, Verdict};

/// Detection threshold used when neither the caller nor the classifier's calibration gives one.
pub const FALLBACK_THRESHOLD: f32 = 0.5;

/// Why a detector cannot be built or run.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Knowledge(#[from] KnowledgeError),
    #[error("knowledge base {}: {reason}", path.display())]
    Contract { path: PathBuf, reason: String },
    #[error("the classifier and the part extractor are on different devices")]
    DeviceMismatch,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("threshold {0} is outside [0, 1]")]
    Threshold(f32),
    #[error("classifier calibration {}: {reason}", path.display())]
    Calibration { path: PathBuf, reason: String },
}

/// Where the detector's pieces come from.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Classifier M (TorchScript with `.modelinfo`).
    pub classifier: PathBuf,
    /// Part extractor K (TorchScript with `.modelinfo`).
    pub extractor: PathBuf,
    /// Knowledge base JSON.
    pub knowledge: PathBuf,
    /// Class set the classifier must cover exactly (optional check).
    pub class_set: Option<String>,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    /// Detection threshold; `None` uses the classifier's calibration.
    pub threshold: Option<f32>,
    /// Segmentation part extraction overrides.
    pub min_area: Option<f32>,
    pub min_confidence: Option<f32>,
    /// Aspect-ratio handling for frames.
    pub scaling: Scaling,
    /// Freeze M and K for inference at load (see [`LoadOptions::freeze`]).
    pub freeze: bool,
}

/// The classifier's calibrated global threshold, or [`FALLBACK_THRESHOLD`].
pub fn global_threshold(classifier: &Classifier) -> f32 {
    classifier
        .model()
        .info()
        .calibration
        .as_ref()
        .map_or(FALLBACK_THRESHOLD, |c| c.threshold)
}

/// The thresholds the classifier's calibration gives: per class when it has them, else its
/// global threshold (or [`FALLBACK_THRESHOLD`]).
pub fn calibrated_thresholds(classifier: &Classifier) -> Thresholds {
    match classifier
        .model()
        .info()
        .calibration
        .as_ref()
        .and_then(|c| c.class_thresholds.clone())
    {
        Some(ts) => Thresholds::PerClass(ts),
        None => Thresholds::Global(global_threshold(classifier)),
    }
}

/// Checks thresholds against a classifier: in `[0, 1]`, one per label when per class.
pub fn check_thresholds(
    thresholds: &Thresholds,
    classifier: &Classifier,
) -> Result<(), DetectorError> {
    match thresholds {
        Thresholds::Global(t) if !(0.0..=1.0).contains(t) => Err(DetectorError::Threshold(*t)),
        Thresholds::PerClass(ts)
            if ts.len() != classifier.labels().len() || !thresholds.is_valid() =>
        {
            Err(DetectorError::Calibration {
                path: crate::modelinfo::ModelInfo::sidecar_of(classifier.model().path()),
                reason: format!(
                    "class-thresholds {ts:?}: need one threshold in [0, 1] for each of the {} \
                     labels",
                    classifier.labels().len()
                ),
            })
        }
        _ => Ok(()),
    }
}

impl DetectorConfig {
    /// The shipped parts-world models of `class_set` and `variant` (see [`crate::paths`]) on
    /// the `auto` device, with their calibrated thresholds and centre-crop scaling: what the
    /// `unmask` element uses when no property is set.
    pub fn shipped(class_set: &str, variant: &str) -> Self {
        Self::in_dir(&crate::paths::partsworld_dir(), class_set, variant)
    }

    /// Like [`Self::shipped`], for a folder laid out like `models/partsworld`
    /// (`m-<class set>-<variant>.pt`, `k-parts.pt`, `knowledge.json`); the classifier must
    /// cover the class set exactly.
    pub fn in_dir(dir: &Path, class_set: &str, variant: &str) -> Self {
        Self {
            classifier: dir.join(crate::paths::classifier_file(class_set, variant)),
            extractor: dir.join(crate::paths::EXTRACTOR_FILE),
            knowledge: dir.join(crate::paths::KNOWLEDGE_FILE),
            class_set: Some(class_set.to_owned()),
            device: "auto".into(),
            threshold: None,
            min_area: None,
            min_confidence: None,
            scaling: Scaling::Crop,
            freeze: true,
        }
    }
}

/// The composed detector.
#[derive(Debug)]
pub struct Detector {
    classifier: Classifier,
    extractor: PartExtractor,
    kb: KnowledgeBase,
    /// The global threshold (set, or the calibrated global one).
    threshold: f32,
    /// What frames are judged with: `Global(threshold)` or per-class thresholds.
    thresholds: Thresholds,
    /// Extractor output channel -> knowledge base part index (`None` for the background).
    part_of_channel: Vec<Option<usize>>,
    scaling: Scaling,
}

impl Detector {
    /// Loads everything named by `config` and checks the contract between the pieces.
    pub fn load(config: &DetectorConfig) -> Result<Self, DetectorError> {
        let device = parse_device(&config.device)?;
        let kb = KnowledgeBase::load(&config.knowledge)?;
        let options = LoadOptions {
            freeze: config.freeze,
        };
        let classifier =
            Classifier::from_model(Model::load_with(&config.classifier, device, options)?)?;
        let mut extractor =
            PartExtractor::from_model(Model::load_with(&config.extractor, device, options)?)?;
        if let PartOutput::Segmentation {
            min_area,
            min_confidence,
        } = extractor.output()
        {
            extractor.set_output(PartOutput::Segmentation {
                min_area: config.min_area.unwrap_or(min_area),
                min_confidence: config.min_confidence.unwrap_or(min_confidence),
            });
        }
        let calibrated = calibrated_thresholds(&classifier);
        let threshold = config
            .threshold
            .unwrap_or_else(|| global_threshold(&classifier));
        let mut detector = Self::new(
            classifier,
            extractor,
            &kb,
            &config.knowledge,
            config.class_set.as_deref(),
            threshold,
        )?;
        if config.threshold.is_none() {
            detector.set_thresholds(calibrated)?;
        }
        detector.scaling = config.scaling;
        Ok(detector)
    }

    /// Composes loaded models with a knowledge base. The knowledge base is restricted to the
    /// classifier's labels (in label order), so class indices equal classifier outputs.
    pub fn new(
        classifier: Classifier,
        extractor: PartExtractor,
        kb: &KnowledgeBase,
        kb_path: &Path,
        class_set: Option<&str>,
        threshold: f32,
    ) -> Result<Self, DetectorError> {
        let contract = |reason: String| DetectorError::Contract {
            path: kb_path.to_owned(),
            reason,
        };
        if !(0.0..=1.0).contains(&threshold) {
            return Err(DetectorError::Threshold(threshold));
        }
        if classifier.model().device() != extractor.model().device() {
            return Err(DetectorError::DeviceMismatch);
        }
        let labels = classifier.labels();
        for l in labels {
            if kb.class_index(l).is_none() {
                return Err(contract(format!(
                    "classifier {} has class \"{l}\", which the knowledge base does not define",
                    classifier.model().path().display()
                )));
            }
        }
        if let Some(name) = class_set {
            let set = kb.class_set(name).map_err(|e| contract(e.to_string()))?;
            let mut a: Vec<&String> = set.classes.iter().collect();
            let mut b: Vec<&String> = labels.iter().collect();
            a.sort();
            b.sort();
            if a != b {
                return Err(contract(format!(
                    "class set {} is {:?}, but classifier {} has classes {:?}",
                    set.name,
                    set.classes,
                    classifier.model().path().display(),
                    labels
                )));
            }
        }
        let kb = kb.restrict(labels).map_err(|e| contract(e.to_string()))?;
        let mut part_of_channel = vec![None; extractor.labels().len()];
        for (channel, name) in extractor.part_channels() {
            let part = kb.part_index(name).ok_or_else(|| {
                contract(format!(
                    "part extractor {} reports part \"{name}\", which is not in the knowledge base's vocabulary",
                    extractor.model().path().display()
                ))
            })?;
            part_of_channel[channel] = Some(part);
        }
        let expected: PartSet = (0..kb.classes().len())
            .flat_map(|c| kb.expected_parts(c).iter())
            .collect();
        let unfindable: Vec<&str> = expected
            .iter()
            .filter(|p| !part_of_channel.contains(&Some(*p)))
            .map(|p| kb.parts()[p].as_str())
            .collect();
        if !unfindable.is_empty() {
            log::warn!(
                "part extractor {} cannot report {unfindable:?}, which the classes of {} \
                 expect: their similarity can never reach 1",
                extractor.model().path().display(),
                classifier.model().path().display()
            );
        }
        Ok(Self {
            classifier,
            extractor,
            kb,
            threshold,
            thresholds: Thresholds::Global(threshold),
            part_of_channel,
            scaling: Scaling::default(),
        })
    }

    /// The knowledge base restricted to the classifier's classes.
    pub fn knowledge(&self) -> &KnowledgeBase {
        &self.kb
    }

    /// The classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The part extractor.
    pub fn extractor(&self) -> &PartExtractor {
        &self.extractor
    }

    /// The device both models run on.
    pub fn device(&self) -> Device {
        self.classifier.model().device()
    }

    /// The global detection threshold: the one configured, or the classifier's calibrated
    /// one (which per-class thresholds, when calibrated, replace: see [`Self::thresholds`]).
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The thresholds frames are judged with.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Judges every frame with one threshold from now on.
    pub fn set_threshold(&mut self, threshold: f32) -> Result<(), DetectorError> {
        if !(0.0..=1.0).contains(&threshold) {
            return Err(DetectorError::Threshold(threshold));
        }
        self.threshold = threshold;
        self.thresholds = Thresholds::Global(threshold);
        Ok(())
    }

    /// Judges frames with `thresholds` from now on (per-class ones need one per class).
    pub fn set_thresholds(&mut self, thresholds: Thresholds) -> Result<(), DetectorError> {
        check_thresholds(&thresholds, &self.classifier)?;
        if let Thresholds::Global(t) = thresholds {
            self.threshold = t;
        }
        self.thresholds = thresholds;
        Ok(())
    }

    /// Aspect-ratio handling for frames.
    pub fn scaling(&self) -> Scaling {
        self.scaling
    }

    /// The largest batch the models accept (`None`: any).
    pub fn max_batch(&self) -> Option<i64> {
        match (
            self.classifier.model().fixed_batch(),
            self.extractor.model().fixed_batch(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// For each of the extractor's output channels, the knowledge base part it reports
    /// (`None` for a segmentation extractor's background channel).
    pub fn channel_parts(&self) -> &[Option<usize>] {
        &self.part_of_channel
    }

    /// Maps the extractor's found channels to knowledge base part sets.
    pub fn parts_from_channels(&self, channels: &[PartSet]) -> Vec<PartSet> {
        channels
            .iter()
            .map(|set| {
                set.iter()
                    .filter_map(|c| self.part_of_channel.get(c).copied().flatten())
                    .collect()
            })
            .collect()
    }

    /// Parts found in canonical images (knowledge base part indices).
    pub fn parts_found(&self, images: &Tensor) -> Result<Vec<PartSet>, DetectorError> {
        Ok(self.parts_from_channels(&self.extractor.found_channels(images)?))
    }

    /// Verdicts for canonical images `[N,3,H,W]` in `[0,1]` on the detector's device.
    pub fn analyse_images(&self, images: &Tensor) -> Result<Vec<Verdict>, DetectorError> {
        self.decide(images, images)
    }

    /// Verdicts from M on `m_images` and K on `k_images` (the same frames, each at its
    /// model's input size).
    fn decide(&self, m_images: &Tensor, k_images: &Tensor) -> Result<Vec<Verdict>, DetectorError> {
        let predictions = self.classifier.predict(m_images)?;
        let parts = self.parts_found(k_images)?;
        Ok(self.verdicts(predictions, &parts))
    }

    fn verdicts(&self, predictions: Vec<(usize, f32)>, parts: &[PartSet]) -> Vec<Verdict> {
        predictions
            .into_iter()
            .zip(parts)
            .map(|((class, confidence), found)| {
                let threshold = self.thresholds.for_class(class);
                Verdict::decide(&self.kb, class, confidence, found, threshold)
            })
            .collect()
    }

    /// The inputs of M and of K for video frames ([`crate::model::Model::prepare_frames`]):
    /// each model gets a tensor of its own.
    pub fn model_inputs(&self, frames: &[Frame<'_>]) -> Result<(Tensor, Tensor), DetectorError> {
        self.model_inputs_on(frames, None)
    }

    /// [`Self::model_inputs`], on the CPU with each frame's resize in bands over the threads
    /// of `fork` (if given; called from inside one of its jobs, the bands run in turn).
    pub fn model_inputs_on(
        &self,
        frames: &[Frame<'_>],
        fork: Option<&ForkJoin>,
    ) -> Result<(Tensor, Tensor), DetectorError> {
        let models = [self.classifier.model(), self.extractor.model()];
        let mut inputs = prepare_frames_on(&models, frames, self.scaling, fork)?;
        let k = inputs.pop().expect("two models, two inputs");
        let m = inputs.pop().expect("two models, two inputs");
        Ok((m, k))
    }

    /// Parts found in inputs made for K (knowledge base part indices).
    pub fn parts_found_prepared(&self, input: &Tensor) -> Result<Vec<PartSet>, DetectorError> {
        let out = tch::no_grad(|| self.extractor.raw_prepared(input))?;
        Ok(self.parts_from_channels(&self.extractor.decide(&out)))
    }

    /// Verdicts for a batch of video frames.
    pub fn analyse_frames(&self, frames: &[Frame<'_>]) -> Result<Vec<Verdict>, DetectorError> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let (m_input, k_input) = self.model_inputs(frames)?;
        let predictions = self.classifier.predict_prepared(&m_input)?;
        let parts = self.parts_found_prepared(&k_input)?;
        Ok(self.verdicts(predictions, &parts))
    }
}
