//! The shipped parts-world models load through the model contract, are calibrated, stay within
//! the size budget, and reproduce the held-out figures of their training report on a fresh
//! sample (a seed used by no split of the training, tuning, calibration or evaluation): the
//! report in `models/partsworld/training-report.json` tells the truth about the files shipped
//! next to it. (Whether those figures reach the project's targets is stated in the README and
//! the report, not asserted here.)

use unmask::detector::{Detector, DetectorConfig};
use unmask::partset::PartSet;
use unmask::partsworld::{self, SampleStream, SceneOptions};
use unmask::preprocess::Scaling;
use unmask::similarity::jaccard;
use unmask::train::TrainingReport;
use unmask::train::data::Batch;

const FRESH_SEED: u64 = 0xF2E5_4A11;
const CLASS_SETS: [&str; 4] = ["CS3a", "CS3b", "CS5a", "CS5b"];

fn report() -> TrainingReport {
    TrainingReport::load(&unmask::paths::partsworld_dir().join("training-report.json")).unwrap()
}

fn detector(class_set: &str, variant: &str) -> Detector {
    detector_loaded(class_set, variant, true)
}

/// The shipped detector of `class_set` and `variant`, its models frozen or as saved.
fn detector_loaded(class_set: &str, variant: &str, freeze: bool) -> Detector {
    let dir = unmask::paths::partsworld_dir();
    Detector::load(&DetectorConfig {
        classifier: dir.join(format!("m-{}-{variant}.pt", class_set.to_ascii_lowercase())),
        extractor: dir.join("k-parts.pt"),
        knowledge: dir.join("knowledge.json"),
        class_set: Some(class_set.into()),
        device: "cpu".into(),
        threshold: None,
        min_area: None,
        min_confidence: None,
        scaling: Scaling::Stretch,
        freeze,
    })
    .unwrap_or_else(|e| panic!("{class_set} {variant}: {e}"))
}

fn fresh_batch(classes: &[String], n: usize) -> Batch {
    let opts = SceneOptions::with_class_names(classes).unwrap();
    let samples = SampleStream::new(FRESH_SEED, 0, &opts, 64, n, 1)
        .next()
        .unwrap();
    Batch::from_samples(&samples, tch::Device::Cpu)
}

/// Three binomial standard errors of a rate `p` measured on `n` images, plus a point for the
/// difference between the report's sample and this one.
fn tolerance(p: f64, n: usize) -> f64 {
    3.0 * (p * (1.0 - p) / n as f64).sqrt() + 0.01
}

#[test]
fn every_classifier_is_calibrated_and_matches_its_reported_accuracy() {
    let report = report();
    for set in CLASS_SETS {
        for variant in ["baseline", "denoise"] {
            let file = format!("m-{}-{variant}.pt", set.to_ascii_lowercase());
            let reported = report
                .classifiers
                .iter()
                .find(|c| c.file == file)
                .unwrap_or_else(|| panic!("{file} is missing from the training report"))
                .heldout_accuracy;
            let d = detector(set, variant);
            let info = d.classifier().model().info();
            let calibration = info
                .calibration
                .as_ref()
                .unwrap_or_else(|| panic!("{set} {variant} is not calibrated"));
            assert_eq!(d.threshold(), calibration.threshold);
            assert!((0.0..=1.0).contains(&calibration.threshold));
            // The threshold is the one the training run's calibration chose, with this K.
            let calibrated = report
                .calibration
                .iter()
                .find(|c| c.classifier == file)
                .unwrap_or_else(|| panic!("{file} has no calibration in the training report"));
            assert_eq!(calibrated.threshold, calibration.threshold, "{file}");
            assert_eq!(calibration.extractor.as_deref(), Some("k-parts.pt"));
            let classes = d.knowledge().classes().to_vec();
            let n = 300;
            let batch = fresh_batch(&classes, n);
            let predictions = d.classifier().predict(&batch.images).unwrap();
            let correct = predictions
                .iter()
                .zip(&batch.world_classes)
                .filter(|((p, _), c)| classes[*p] == partsworld::CLASSES[**c])
                .count();
            let accuracy = correct as f64 / n as f64;
            let tol = tolerance(reported, n);
            assert!(
                (accuracy - reported).abs() <= tol,
                "{file}: clean accuracy {accuracy:.3} on fresh images, the report says \
                 {reported:.3} (tolerance {tol:.3})"
            );
            // Far better than chance in every case.
            assert!(
                accuracy > 2.0 / classes.len() as f64,
                "{file}: {accuracy:.3}"
            );
        }
    }
}

#[test]
fn part_extractor_matches_its_reported_jaccard() {
    let reported = report()
        .extractor
        .expect("k-parts.pt is missing from the training report")
        .heldout
        .mean_image_jaccard;
    let d = detector("CS5b", "denoise");
    let all: Vec<String> = partsworld::CLASSES.iter().map(|c| c.to_string()).collect();
    let n = 300;
    let batch = fresh_batch(&all, n);
    let found = d.parts_found(&batch.images).unwrap();
    let kb = d.knowledge();
    let scores: Vec<f64> = found
        .iter()
        .zip(&batch.visible)
        .map(|(f, visible)| {
            let truth: PartSet = visible
                .iter()
                .map(|&p| kb.part_index(partsworld::PARTS[p]).unwrap())
                .collect();
            jaccard(f, &truth) as f64
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / n as f64;
    let sd = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    let tol = 3.0 * sd / (n as f64).sqrt() + 0.01;
    assert!(
        (mean - reported).abs() <= tol,
        "mean image-level Jaccard {mean:.3} on fresh images, the report says {reported:.3} \
         (tolerance {tol:.3})"
    );
}

#[test]
fn shipped_models_stay_within_25_mb() {
    let dir = unmask::paths::partsworld_dir();
    let total: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pt"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(total > 0, "no models in {}", dir.display());
    assert!(total <= 25 << 20, "{total} bytes of models");
}

#[test]
fn frozen_models_judge_fresh_images_as_the_saved_ones_do() {
    // Freezing folds the batch norms into the convolutions: outputs move by float rounding
    // only, so classes, confidences and the parts found stay those of the models as saved.
    for (set, variant) in [("CS5a", "denoise"), ("CS3b", "baseline")] {
        let frozen = detector_loaded(set, variant, true);
        let saved = detector_loaded(set, variant, false);
        assert!(frozen.classifier().model().is_frozen());
        assert!(frozen.extractor().model().is_frozen());
        assert!(!saved.classifier().model().is_frozen());
        assert!(!saved.extractor().model().is_frozen());
        let classes = frozen.knowledge().classes().to_vec();
        let batch = fresh_batch(&classes, 64);
        let by_frozen = frozen.classifier().predict(&batch.images).unwrap();
        let by_saved = saved.classifier().predict(&batch.images).unwrap();
        for (i, (f, s)) in by_frozen.iter().zip(&by_saved).enumerate() {
            assert_eq!(f.0, s.0, "{set} {variant} image {i}: class");
            assert!(
                (f.1 - s.1).abs() < 1e-4,
                "{set} {variant} image {i}: {f:?} vs {s:?}"
            );
        }
        assert_eq!(
            frozen.parts_found(&batch.images).unwrap(),
            saved.parts_found(&batch.images).unwrap(),
            "{set} {variant}: parts found"
        );
    }
}
