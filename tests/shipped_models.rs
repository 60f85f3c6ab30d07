//! The shipped parts-world models load through the model contract, are calibrated, and reach
//! their accuracy targets on a small fresh sample (a seed used by no split of the training,
//! tuning, calibration or evaluation).

use unmask::detector::{Detector, DetectorConfig};
use unmask::partset::PartSet;
use unmask::partsworld::{self, SampleStream, SceneOptions};
use unmask::preprocess::Scaling;
use unmask::similarity::jaccard;
use unmask::train::data::Batch;

const FRESH_SEED: u64 = 0xF2E5_4A11;
const CLASS_SETS: [&str; 4] = ["CS3a", "CS3b", "CS5a", "CS5b"];

fn detector(class_set: &str, variant: &str) -> Detector {
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

#[test]
fn every_classifier_loads_calibrated_and_reaches_95_percent() {
    for set in CLASS_SETS {
        for variant in ["baseline", "denoise"] {
            let d = detector(set, variant);
            let info = d.classifier().model().info();
            let calibration = info
                .calibration
                .as_ref()
                .unwrap_or_else(|| panic!("{set} {variant} is not calibrated"));
            assert_eq!(d.threshold(), calibration.threshold);
            let classes = d.knowledge().classes().to_vec();
            let batch = fresh_batch(&classes, 200);
            let predictions = d.classifier().predict(&batch.images).unwrap();
            let correct = predictions
                .iter()
                .zip(&batch.world_classes)
                .filter(|((p, _), c)| classes[*p] == partsworld::CLASSES[**c])
                .count();
            let accuracy = correct as f64 / predictions.len() as f64;
            assert!(
                accuracy >= 0.95,
                "{set} {variant}: clean accuracy {accuracy:.3} < 0.95"
            );
        }
    }
}

#[test]
fn part_extractor_reaches_its_jaccard_target() {
    let d = detector("CS5b", "denoise");
    let all: Vec<String> = partsworld::CLASSES.iter().map(|c| c.to_string()).collect();
    let batch = fresh_batch(&all, 300);
    let found = d.parts_found(&batch.images).unwrap();
    let kb = d.knowledge();
    let mean: f64 = found
        .iter()
        .zip(&batch.visible)
        .map(|(f, visible)| {
            let truth: PartSet = visible
                .iter()
                .map(|&p| kb.part_index(partsworld::PARTS[p]).unwrap())
                .collect();
            jaccard(f, &truth) as f64
        })
        .sum::<f64>()
        / found.len() as f64;
    assert!(mean >= 0.85, "mean image-level Jaccard {mean:.3} < 0.85");
}
