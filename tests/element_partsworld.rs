//! The `unmask` element with its defaults — the shipped parts-world models, centre-crop
//! scaling — on parts-world frames, clean and adversarially attacked (gray-box PGD on the
//! region the element looks at): the verdict on every buffer equals what the core library
//! computes on the same frames, in several formats at an odd size with padded strides, and
//! the attacked frames really fool the classifier.

mod common;

use common::*;
use unmask::attack::AttackSpec;
use unmask::attack::frames::{Attacker, FrameAttack};
use unmask::detector::{Detector, DetectorConfig};
use unmask::model::Classifier;
use unmask::partsworld::{CLASSES, Scene, SceneOptions};
use unmask::paths;
use unmask::preprocess::{PixelFormat, Scaling};

/// A seed used by no training, calibration or evaluation split.
const SEED: u64 = 0x0E1E_3E47;
const FRAMES: usize = 8;
const ATTACKED_FROM: usize = 4;
const SIZE: (usize, usize) = (321, 239);

/// Parts-world frames of the default class set; the second half attacked with PGD-L∞
/// ε = 8/255 against the default classifier. Returns the RGB frames and their classes.
fn frames(detector: &Detector) -> (Vec<Vec<u8>>, Vec<usize>) {
    let classes = detector.knowledge().classes().to_vec();
    let opts = SceneOptions::with_class_names(&classes).unwrap();
    let (w, h) = SIZE;
    let mut rgb = Vec::new();
    let mut labels = Vec::new();
    for i in 0..FRAMES as u64 {
        let scene = Scene::random(SEED, i, &opts);
        rgb.push(scene.render(0.0, w as u32, h as u32).rgb);
        let name = CLASSES[scene.class()];
        labels.push(classes.iter().position(|c| c == name).unwrap());
    }
    let classifier = Classifier::load(
        paths::default_classifier(paths::DEFAULT_CLASS_SET, paths::DEFAULT_VARIANT),
        tch::Device::Cpu,
    )
    .unwrap();
    let mut attack = FrameAttack::new(
        Attacker::GrayBox(Box::new(classifier)),
        AttackSpec::preset("PGD-Linf-8").unwrap(),
        Scaling::Crop,
        SIZE,
        1,
    );
    attack
        .attack(&mut rgb[ATTACKED_FROM..], &labels[ATTACKED_FROM..])
        .unwrap();
    (rgb, labels)
}

#[test]
fn default_element_on_clean_and_attacked_partsworld_frames_agrees_with_the_library() {
    init();
    let detector = Detector::load(&DetectorConfig::shipped(
        paths::DEFAULT_CLASS_SET,
        paths::DEFAULT_VARIANT,
    ))
    .unwrap();
    let (rgb, labels) = frames(&detector);
    let (w, h) = SIZE;
    for format in [
        PixelFormat::Rgb,
        PixelFormat::Bgrx,
        PixelFormat::I420,
        PixelFormat::Nv12,
    ] {
        let frames: Vec<TestFrame> = rgb
            .iter()
            .map(|f| TestFrame::from_rgb(f, format, w, h, 7))
            .collect();
        let want = expected(&detector, &frames.iter().collect::<Vec<_>>());
        let p = AppPipeline::new("unmask name=u threads=1");
        p.play();
        let inputs = timed_inputs(&frames);
        p.push_all(&inputs);
        let out = p.pull_all();
        assert!(p.errors().is_empty(), "{:?}", p.errors());
        assert_eq!(out.len(), FRAMES);
        for (i, (sample, want)) in out.iter().zip(&want).enumerate() {
            let meta = meta_of(sample).unwrap_or_else(|| panic!("{format:?} {i}: no meta"));
            assert_same_verdict(&meta.verdict, want, &format!("{format:?} frame {i}"));
        }
        p.stop();

        if format == PixelFormat::Rgb {
            let fooled = want[ATTACKED_FROM..]
                .iter()
                .zip(&labels[ATTACKED_FROM..])
                .filter(|(v, l)| v.predicted_index != **l)
                .count();
            assert!(
                fooled >= 3,
                "PGD-Linf-8 fooled the classifier on only {fooled} of {} frames",
                FRAMES - ATTACKED_FROM
            );
        }
    }
}
