//! The evaluation that reproduces the UnMask tables on parts-world: for each class set,
//! classifier variant and attack vector — clean accuracy, accuracy under attack, detection
//! rate and false-positive rate at the configured threshold, ROC AUC (positives: the
//! successful attacks; negatives: the same images clean), the operating point at the paper's
//! false-positive rate, and defense accuracy — on held-out images never used in training or
//! calibration.

pub mod calibrate;
pub mod report;
pub mod roc;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::attack::{
    AdaptiveSpec, AttackSpec, attack_adaptive, attack_classifier, batch_seed, evaluate_attack,
};
use crate::detector::{Detector, DetectorConfig};
use crate::partsworld::{self, SceneOptions};
use crate::similarity::{Thresholds, realign};
use crate::train::metrics::heldout_batches;
use crate::train::{Variant, seeds};

/// The paper's best operating point: 96.75% detection at 9.66% false positives.
pub const PAPER_FPR: f64 = 0.0966;
/// The paper's best detection rate.
pub const PAPER_DETECTION: f64 = 0.9675;

/// An attack to evaluate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AttackKind {
    /// The attacker knows M only.
    GrayBox(AttackSpec),
    /// The attacker knows M, K and the knowledge base.
    Adaptive(AdaptiveSpec),
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Folder with the models and `knowledge.json`.
    pub models_dir: PathBuf,
    pub class_sets: Vec<String>,
    pub variants: Vec<Variant>,
    pub attacks: Vec<(String, AttackKind)>,
    /// Held-out images per class set.
    pub images: usize,
    pub batch: usize,
    /// Seed of the attacks' random starts.
    pub seed: u64,
    pub device: String,
    /// Detection threshold; `None` uses each classifier's calibration.
    pub threshold: Option<f32>,
}

/// The paper's eight gray-box vectors, the conventional L2 ones and adaptive attacks.
pub fn default_attacks() -> Vec<(String, AttackKind)> {
    let mut attacks: Vec<(String, AttackKind)> = AttackSpec::presets()
        .into_iter()
        .map(|(n, s)| (n, AttackKind::GrayBox(s)))
        .collect();
    for name in ["PGD-Linf-8", "PGD-Linf-16"] {
        let base = AttackSpec::preset(name)
            .expect("preset")
            .with_random_start(false);
        attacks.push((
            format!("Adaptive-{name}"),
            AttackKind::Adaptive(AdaptiveSpec::new(base, 1.0)),
        ));
    }
    attacks
}

/// Results of one (class set, variant, attack) cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    pub class_set: String,
    pub variant: Variant,
    pub attack: String,
    pub adaptive: bool,
    pub images: usize,
    /// The global threshold (the calibrated or configured one).
    pub threshold: f32,
    /// Per predicted class thresholds that decide instead (empty: `threshold` decides).
    #[serde(default)]
    pub class_thresholds: Vec<f32>,
    /// M's accuracy on the clean images.
    pub clean_accuracy: f64,
    /// Fraction of clean images UnMask flags.
    pub clean_flag_rate: f64,
    /// M's accuracy on the adversarial images (no defense).
    pub attacked_accuracy: f64,
    /// Adversarial images on which M is wrong (the successful attacks on M).
    pub successful_attacks: usize,
    /// Fraction of the successful attacks that UnMask flags, at the threshold.
    pub detection_rate: f64,
    /// Fraction of the same images, clean, that UnMask flags, at the threshold.
    pub false_positive_rate: f64,
    /// ROC AUC of the detector's score, `threshold of the predicted class - similarity`
    /// (positives: successful attacks; negatives: the same images clean). With one global
    /// threshold this is the AUC of the paper's score `1 - similarity`.
    pub auc: Option<f64>,
    /// ROC AUC of the paper's score `1 - similarity`, whatever the thresholds.
    #[serde(default)]
    pub auc_paper_score: Option<f64>,
    /// The best detection rate with a false-positive rate of at most [`PAPER_FPR`], on the
    /// ROC of the detector's score.
    pub detection_at_paper_fpr: f64,
    pub fpr_at_paper_point: f64,
    /// Fraction of adversarial images whose final UnMask label (realigned when flagged, M's
    /// prediction otherwise) is the truth.
    pub defense_accuracy: f64,
    /// Fraction of adversarial images whose realigned class (from K's parts alone) is the
    /// truth, as the paper's "defense accuracy".
    pub realignment_accuracy: f64,
    /// Fraction of adversarial images on which the attack beat the whole detector (M wrong
    /// and not flagged).
    pub undetected_success_rate: f64,
    /// ROC curve of this cell.
    pub roc: Vec<roc::RocPoint>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub command: String,
    pub machine: String,
    pub date: String,
    pub images_per_class_set: usize,
    pub seconds: f64,
    pub cells: Vec<CellResult>,
}

/// Progress events for a caller's progress bar.
pub trait Progress {
    /// A unit of work (one batch of one attack) is done.
    fn step(&self, message: &str);
}

impl Progress for () {
    fn step(&self, _: &str) {}
}

/// Number of progress steps [`evaluate`] will report.
pub fn total_steps(config: &EvalConfig) -> usize {
    config.class_sets.len()
        * config.variants.len()
        * (config.attacks.len() + 1)
        * config.images.div_ceil(config.batch)
}

struct Clean {
    images: Vec<Tensor>,
    labels: Vec<Tensor>,
    similarity: Vec<f32>,
    /// The threshold each clean verdict was judged with (its prediction's).
    threshold: Vec<f32>,
    correct: Vec<bool>,
    flagged: Vec<bool>,
}

fn detector_for(
    config: &EvalConfig,
    class_set: &str,
    variant: Variant,
) -> anyhow::Result<Detector> {
    Ok(Detector::load(&DetectorConfig {
        device: config.device.clone(),
        threshold: config.threshold,
        ..DetectorConfig::in_dir(&config.models_dir, class_set, variant.name())
    })?)
}

fn clean_pass(
    detector: &Detector,
    config: &EvalConfig,
    progress: &dyn Progress,
) -> anyhow::Result<Clean> {
    let kb = detector.knowledge();
    let opts = SceneOptions::with_class_names(kb.classes()).map_err(anyhow::Error::msg)?;
    let mut clean = Clean {
        images: Vec::new(),
        labels: Vec::new(),
        similarity: Vec::new(),
        threshold: Vec::new(),
        correct: Vec::new(),
        flagged: Vec::new(),
    };
    for b in heldout_batches(seeds::EVALUATION, &opts, config.images, config.batch) {
        let labels: Vec<i64> = b
            .world_classes
            .iter()
            .map(|&c| {
                kb.class_index(partsworld::CLASSES[c])
                    .expect("class of the set") as i64
            })
            .collect();
        let images = b.images.to_device(detector.device());
        let verdicts = detector.analyse_images(&images)?;
        for (v, &l) in verdicts.iter().zip(&labels) {
            clean.similarity.push(v.similarity);
            clean.threshold.push(v.threshold);
            clean.correct.push(v.predicted_index as i64 == l);
            clean.flagged.push(v.adversarial);
        }
        clean.images.push(images);
        clean.labels.push(Tensor::from_slice(&labels));
        progress.step("clean");
    }
    Ok(clean)
}

fn rate(hits: impl Iterator<Item = bool>) -> f64 {
    let (mut h, mut n) = (0usize, 0usize);
    for x in hits {
        h += x as usize;
        n += 1;
    }
    if n == 0 { 0.0 } else { h as f64 / n as f64 }
}

/// Evaluates one attack against one detector on the prepared clean images.
fn evaluate_cell(
    detector: &Detector,
    clean: &Clean,
    name: &str,
    kind: &AttackKind,
    config: &EvalConfig,
    progress: &dyn Progress,
) -> anyhow::Result<(Vec<crate::attack::AttackOutcome>, Vec<bool>)> {
    let mut outcomes = Vec::new();
    let mut realigned_ok = Vec::new();
    for (i, (images, labels)) in clean.images.iter().zip(&clean.labels).enumerate() {
        let seed = batch_seed(config.seed, i as u64);
        let labels_dev = labels.to_device(images.device());
        let adversarial = match kind {
            AttackKind::GrayBox(spec) => {
                attack_classifier(detector.classifier(), images, &labels_dev, spec, seed)?
            }
            AttackKind::Adaptive(spec) => {
                attack_adaptive(detector, images, &labels_dev, spec, seed)?.images
            }
        };
        let batch = evaluate_attack(detector, &adversarial, labels, None)?;
        let parts = detector.parts_found(&adversarial)?;
        for (o, found) in batch.iter().zip(&parts) {
            let r = realign(detector.knowledge(), found, None);
            realigned_ok.push(r.class == Some(o.label as usize));
        }
        outcomes.extend(batch);
        progress.step(name);
    }
    Ok((outcomes, realigned_ok))
}

/// Runs the evaluation.
pub fn evaluate(config: &EvalConfig, progress: &dyn Progress) -> anyhow::Result<Vec<CellResult>> {
    let mut cells = Vec::new();
    for class_set in &config.class_sets {
        for &variant in &config.variants {
            let detector = detector_for(config, class_set, variant)?;
            let clean = clean_pass(&detector, config, progress)?;
            let clean_accuracy = rate(clean.correct.iter().copied());
            let clean_flag_rate = rate(clean.flagged.iter().copied());
            for (name, kind) in &config.attacks {
                let (outcomes, realigned_ok) =
                    evaluate_cell(&detector, &clean, name, kind, config, progress)?;
                let fooled: Vec<usize> = (0..outcomes.len())
                    .filter(|&i| outcomes[i].fooled)
                    .collect();
                // The detector's score: how far the similarity falls below the threshold of
                // the predicted class (with one global threshold, the paper's 1 - s shifted).
                let margin = |s: f32, t: f32| f64::from(t) - f64::from(s);
                let positives: Vec<f64> = fooled
                    .iter()
                    .map(|&i| {
                        margin(
                            outcomes[i].verdict.similarity,
                            outcomes[i].verdict.threshold,
                        )
                    })
                    .collect();
                let negatives: Vec<f64> = fooled
                    .iter()
                    .map(|&i| margin(clean.similarity[i], clean.threshold[i]))
                    .collect();
                let paper_score = |s: f32| 1.0 - f64::from(s);
                let auc_paper_score = roc::auc(
                    &fooled
                        .iter()
                        .map(|&i| paper_score(outcomes[i].verdict.similarity))
                        .collect::<Vec<_>>(),
                    &fooled
                        .iter()
                        .map(|&i| paper_score(clean.similarity[i]))
                        .collect::<Vec<_>>(),
                );
                let curve = roc::roc_curve(&positives, &negatives);
                let paper = roc::best_at_fpr(&curve, PAPER_FPR);
                cells.push(CellResult {
                    class_set: class_set.clone(),
                    variant,
                    attack: name.clone(),
                    adaptive: matches!(kind, AttackKind::Adaptive(_)),
                    images: outcomes.len(),
                    threshold: detector.threshold(),
                    class_thresholds: match detector.thresholds() {
                        Thresholds::PerClass(ts) => ts.clone(),
                        Thresholds::Global(_) => Vec::new(),
                    },
                    clean_accuracy,
                    clean_flag_rate,
                    attacked_accuracy: rate(outcomes.iter().map(|o| !o.fooled)),
                    successful_attacks: fooled.len(),
                    detection_rate: rate(fooled.iter().map(|&i| outcomes[i].flagged)),
                    false_positive_rate: rate(fooled.iter().map(|&i| clean.flagged[i])),
                    auc: roc::auc(&positives, &negatives),
                    auc_paper_score,
                    detection_at_paper_fpr: paper.true_positive_rate,
                    fpr_at_paper_point: paper.false_positive_rate,
                    defense_accuracy: rate(outcomes.iter().map(|o| o.defended)),
                    realignment_accuracy: rate(realigned_ok.iter().copied()),
                    undetected_success_rate: rate(outcomes.iter().map(|o| o.success)),
                    roc: curve,
                });
            }
        }
    }
    Ok(cells)
}
