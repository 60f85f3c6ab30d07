//! Choosing the detection threshold for a target false-positive rate on clean held-out data,
//! and writing it into the classifier's modelinfo (which the element uses by default).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::detector::{Detector, DetectorConfig};
use crate::modelinfo::{Calibration, ModelInfo};
use crate::partsworld::SceneOptions;
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
        let fpr = clean_similarities.iter().filter(|&&s| s < v).count() as f64 / n;
        if fpr <= target_fpr {
            best = (v, fpr);
        }
    }
    best
}

/// What calibration found for one classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationResult {
    pub classifier: String,
    pub images: usize,
    pub target_fpr: f64,
    pub threshold: f32,
    pub measured_fpr: f64,
    /// Clean accuracy of M on the calibration images (misclassified clean images are often
    /// flagged too, which counts against the false-positive budget).
    pub clean_accuracy: f64,
}

/// Clean similarities `J(E(p), F)` of a detector over `images` calibration images of its
/// classes, with M's accuracy.
pub fn clean_similarities(
    detector: &Detector,
    images: usize,
    batch: usize,
) -> anyhow::Result<(Vec<f32>, f64)> {
    let kb = detector.knowledge();
    let opts = SceneOptions::with_class_names(kb.classes()).map_err(anyhow::Error::msg)?;
    let mut similarities = Vec::with_capacity(images);
    let mut correct = 0usize;
    for b in heldout_batches(seeds::CALIBRATION, &opts, images, batch) {
        let verdicts = detector.analyse_images(&b.images.to_device(detector.device()))?;
        for (v, &c) in verdicts.iter().zip(&b.world_classes) {
            similarities.push(v.similarity);
            correct += (v.predicted == crate::partsworld::CLASSES[c]) as usize;
        }
    }
    let accuracy = correct as f64 / similarities.len().max(1) as f64;
    Ok((similarities, accuracy))
}

/// Calibrates the classifier of `config` with its part extractor and writes the threshold
/// into the classifier's modelinfo.
pub fn calibrate(
    config: &DetectorConfig,
    images: usize,
    batch: usize,
    target_fpr: f64,
) -> anyhow::Result<CalibrationResult> {
    let mut config = config.clone();
    config.threshold = Some(0.5);
    let detector = Detector::load(&config)?;
    let (similarities, clean_accuracy) = clean_similarities(&detector, images, batch)?;
    let (threshold, measured_fpr) = choose_threshold(&similarities, target_fpr);
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
    });
    info.save()
        .with_context(|| format!("writing {}", sidecar.display()))?;
    Ok(CalibrationResult {
        classifier: file_name(&config.classifier),
        images: similarities.len(),
        target_fpr,
        threshold,
        measured_fpr,
        clean_accuracy,
    })
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
}
