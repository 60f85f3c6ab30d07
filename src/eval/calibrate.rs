//! Choosing the detection threshold for a target false-positive rate on clean held-out data,
//! and writing it into the classifier's modelinfo (which the element uses by default).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::detector::{Detector, DetectorConfig};
use crate::modelinfo::{Calibration, ModelInfo};
use crate::partsworld::SceneOptions;
use crate::similarity::is_adversarial;
use crate::train::metrics::heldout_batches;
use crate::train::seeds;

/// The largest threshold `t` (a similarity value seen, or 0) whose false-positive rate on the
/// clean similarities — the fraction with `s < t` — is at most `target_fpr`. Returns the
/// threshold and that rate.
pub fn choose_threshold(clean_similarities: &[f32], target_fpr: f64) -> (f32, f64) {
    let n = clean_similarities.len().max(1) as f64;
    let mut values: Vec<f32> = clean_similarities.to_vec();
    values.sort_by(f32::total_cmp);
    values.dedup();
    let mut best = (0.0f32, 0.0f64);
    for v in values {
        let fpr = clean_similarities
            .iter()
            .filter(|&&s| is_adversarial(s, v))
            .count() as f64
            / n;
        if fpr <= target_fpr {
            best = (v, fpr);
        }
    }
    best
}

/// Fewest clean calibration images predicted as a class for it to get a threshold of its own
/// (fewer: it keeps the global threshold).
pub const MIN_CLASS_IMAGES: usize = 50;

/// The threshold calibration chose for one predicted class.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassThreshold {
    pub class: String,
    /// Clean calibration images M predicted as this class.
    pub images: usize,
    pub threshold: f32,
    /// Fraction of those images flagged at `threshold`.
    pub measured_fpr: f64,
}

/// What calibration found for one classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationResult {
    pub classifier: String,
    pub images: usize,
    pub target_fpr: f64,
    /// The global threshold (one for every prediction).
    pub threshold: f32,
    /// Fraction of the clean images flagged by the thresholds that decide (per class when
    /// `class_thresholds` is not empty, else the global one).
    pub measured_fpr: f64,
    /// Per predicted class thresholds, in label order (empty: the global threshold decides).
    #[serde(default)]
    pub class_thresholds: Vec<ClassThreshold>,
    /// Clean accuracy of M on the calibration images (misclassified clean images are often
    /// flagged too, which counts against the false-positive budget).
    pub clean_accuracy: f64,
}

/// Clean similarities `J(E(p), F)` with M's predictions `p` of a detector over `images`
/// calibration images of its classes, and M's accuracy.
pub fn clean_similarities(
    detector: &Detector,
    images: usize,
    batch: usize,
) -> anyhow::Result<(Vec<(usize, f32)>, f64)> {
    let kb = detector.knowledge();
    let opts = SceneOptions::with_class_names(kb.classes()).map_err(anyhow::Error::msg)?;
    let mut similarities = Vec::with_capacity(images);
    let mut correct = 0usize;
    for b in heldout_batches(seeds::CALIBRATION, &opts, images, batch) {
        let verdicts = detector.analyse_images(&b.images.to_device(detector.device()))?;
        for (v, &c) in verdicts.iter().zip(&b.world_classes) {
            similarities.push((v.predicted_index, v.similarity));
            correct += (v.predicted == crate::partsworld::CLASSES[c]) as usize;
        }
    }
    let accuracy = correct as f64 / similarities.len().max(1) as f64;
    Ok((similarities, accuracy))
}

/// Per predicted class thresholds for `target_fpr` on clean `(prediction, similarity)` pairs
/// of `classes`; a class with fewer than [`MIN_CLASS_IMAGES`] images keeps `global`.
pub fn choose_class_thresholds(
    clean: &[(usize, f32)],
    classes: &[String],
    target_fpr: f64,
    global: f32,
) -> Vec<ClassThreshold> {
    classes
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let sims: Vec<f32> = clean
                .iter()
                .filter(|(p, _)| *p == c)
                .map(|(_, s)| *s)
                .collect();
            let threshold = if sims.len() >= MIN_CLASS_IMAGES {
                choose_threshold(&sims, target_fpr).0
            } else {
                global
            };
            let flagged = sims
                .iter()
                .filter(|&&s| is_adversarial(s, threshold))
                .count();
            ClassThreshold {
                class: name.clone(),
                images: sims.len(),
                threshold,
                measured_fpr: flagged as f64 / sims.len().max(1) as f64,
            }
        })
        .collect()
}

/// Calibrates the classifier of `config` with its part extractor — one global threshold
/// and, with `per_class`, one per predicted class — and writes the thresholds into the
/// classifier's modelinfo.
pub fn calibrate(
    config: &DetectorConfig,
    images: usize,
    batch: usize,
    target_fpr: f64,
    per_class: bool,
) -> anyhow::Result<CalibrationResult> {
    let mut config = config.clone();
    config.threshold = Some(0.5);
    let detector = Detector::load(&config)?;
    let (clean, clean_accuracy) = clean_similarities(&detector, images, batch)?;
    let similarities: Vec<f32> = clean.iter().map(|(_, s)| *s).collect();
    let (threshold, global_fpr) = choose_threshold(&similarities, target_fpr);
    let class_thresholds = if per_class {
        choose_class_thresholds(
            &clean,
            detector.knowledge().classes(),
            target_fpr,
            threshold,
        )
    } else {
        Vec::new()
    };
    let measured_fpr = if class_thresholds.is_empty() {
        global_fpr
    } else {
        let flagged = clean
            .iter()
            .filter(|(p, s)| is_adversarial(*s, class_thresholds[*p].threshold))
            .count();
        flagged as f64 / clean.len().max(1) as f64
    };
    let sidecar = ModelInfo::sidecar_of(&config.classifier);
    let mut info = ModelInfo::load(&sidecar)?;
    info.calibration = Some(Calibration {
        threshold,
        target_fpr: Some(target_fpr as f32),
        measured_fpr: Some(measured_fpr as f32),
        extractor: config
            .extractor
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        class_thresholds: (!class_thresholds.is_empty())
            .then(|| class_thresholds.iter().map(|c| c.threshold).collect()),
    });
    info.save()
        .with_context(|| format!("writing {}", sidecar.display()))?;
    Ok(CalibrationResult {
        classifier: file_name(&config.classifier),
        images: clean.len(),
        target_fpr,
        threshold,
        measured_fpr,
        class_thresholds,
        clean_accuracy,
    })
}

/// The thresholds that decide, for people: `per class: car 0.400, …` or `global`.
pub fn describe(r: &CalibrationResult) -> String {
    if r.class_thresholds.is_empty() {
        return "global".into();
    }
    let per: Vec<String> = r
        .class_thresholds
        .iter()
        .map(|c| format!("{} {:.3}", c.class, c.threshold))
        .collect();
    format!("per class: {}", per.join(", "))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_keeps_the_fpr_within_target() {
        let s = [1.0, 1.0, 0.9, 0.8, 0.8, 0.5, 0.2, 1.0, 1.0, 0.9];
        // t = 0.8 flags {0.5, 0.2}: 20%; t = 0.9 flags 4: 40%.
        assert_eq!(choose_threshold(&s, 0.2), (0.8, 0.2));
        assert_eq!(choose_threshold(&s, 0.1), (0.5, 0.1));
        assert_eq!(choose_threshold(&s, 0.0), (0.2, 0.0));
        assert_eq!(choose_threshold(&s, 1.0), (1.0, 0.6));
        assert_eq!(choose_threshold(&[], 0.05), (0.0, 0.0));
    }

    #[test]
    fn class_thresholds_keep_each_class_within_target() {
        let classes = ["train".to_owned(), "person".to_owned(), "rare".to_owned()];
        // Trains match their parts poorly, people well; "rare" is predicted twice.
        let mut clean: Vec<(usize, f32)> = (0..100).map(|i| (0, 0.2 + 0.003 * i as f32)).collect();
        clean.extend((0..100).map(|i| (1, 0.6 + 0.003 * i as f32)));
        clean.extend([(2, 0.9), (2, 0.1)]);
        let ts = choose_class_thresholds(&clean, &classes, 0.05, 0.33);
        assert_eq!(ts.len(), 3);
        assert_eq!((ts[0].images, ts[1].images, ts[2].images), (100, 100, 2));
        // 5 of 100 below: the 6th smallest value of each class.
        assert!((ts[0].threshold - 0.215).abs() < 1e-6, "{ts:?}");
        assert!((ts[1].threshold - 0.615).abs() < 1e-6, "{ts:?}");
        assert!(ts[0].measured_fpr <= 0.05 && ts[1].measured_fpr <= 0.05);
        // Too few images: the global threshold.
        assert_eq!(ts[2].threshold, 0.33);
        assert_eq!(ts[2].measured_fpr, 0.5);
    }
}
