//! Tiny TorchScript models with known behaviour, built by tracing, for tests and examples.
//!
//! The toy world has three classes, each with a colour part and a shared part:
//! `red_thing {red_part, edge}`, `green_thing {green_part, edge}`, `blue_thing {blue_part}`.
//! - The classifier predicts the channel with the largest mean over the image.
//! - The segmentation part extractor labels a pixel `red_part`/`green_part`/`blue_part` when
//!   that channel is above 0.5 and the largest, `edge` when all channels are above 0.9
//!   (white), background otherwise.
//! - The multilabel extractor reports a colour part when some pixel has that channel above
//!   0.5 and at least 0.2 above the others, and `edge` when some pixel is white.
//!
//! So a frame that is mostly dim green with a bright red patch is classified `green_thing`
//! but shows only `red_part`: UnMask flags it and realigns it to `red_thing`.

use std::path::{Path, PathBuf};

use tch::{CModule, Device, Kind, Tensor};

/// Paths of the tiny models and their knowledge base.
#[derive(Debug, Clone)]
pub struct TinyModels {
    pub classifier: PathBuf,
    pub extractor: PathBuf,
    pub multilabel_extractor: PathBuf,
    pub knowledge: PathBuf,
}

/// Classes of the toy world, in classifier output order.
pub const TINY_CLASSES: [&str; 3] = ["red_thing", "green_thing", "blue_thing"];
/// Part vocabulary of the toy world.
pub const TINY_PARTS: [&str; 4] = ["red_part", "green_part", "blue_part", "edge"];
/// Classifier input size (height, width).
pub const TINY_CLASSIFIER_SIZE: (i64, i64) = (16, 16);
/// Extractor input size (height, width); differs from the classifier's on purpose.
pub const TINY_EXTRACTOR_SIZE: (i64, i64) = (24, 20);

fn tensor_section(name: &str, dims: &str, dir: &str, ranges: bool) -> String {
    let ranges = if ranges {
        "ranges=0.0,1.0;0.0,1.0;0.0,1.0\n"
    } else {
        ""
    };
    format!("[{name}]\ntype=float32\ndims={dims}\ndir={dir}\n{ranges}\n")
}

fn write_sidecar(model: &Path, body: String) {
    std::fs::write(crate::modelinfo::ModelInfo::sidecar_of(model), body).expect("write modelinfo");
}

fn trace(name: &str, size: (i64, i64), f: impl Fn(&Tensor) -> Tensor) -> CModule {
    let input = Tensor::zeros([2, 3, size.0, size.1], (Kind::Float, Device::Cpu));
    let mut closure = |inputs: &[Tensor]| vec![f(&inputs[0])];
    CModule::create_by_tracing(name, "forward", &[input], &mut closure).expect("trace")
}

/// Writes the tiny models, label files, modelinfo sidecars and knowledge base into `dir`.
pub fn write_tiny_models(dir: &Path) -> TinyModels {
    std::fs::create_dir_all(dir).expect("create dir");
    let (ch, cw) = TINY_CLASSIFIER_SIZE;
    let (eh, ew) = TINY_EXTRACTOR_SIZE;

    let classifier = dir.join("tiny-classifier.pt");
    trace("TinyClassifier", TINY_CLASSIFIER_SIZE, |x| {
        x.mean_dim([2, 3].as_slice(), false, Kind::Float) * 20.0
    })
    .save(&classifier)
    .expect("save classifier");
    std::fs::write(
        dir.join("tiny-classifier.labels"),
        TINY_CLASSES.join("\n") + "\n",
    )
    .unwrap();
    write_sidecar(
        &classifier,
        format!(
            "[modelinfo]\nversion=1.0\ngroup-id=tiny-classifier\n\n{}{}[unmask]\nrole=classifier\nlabels=tiny-classifier.labels\nthreshold=0.5\n",
            tensor_section("input", &format!("-1,3,{ch},{cw}"), "input", true),
            tensor_section("logits", "-1,3", "output", false)
        ),
    );

    let extractor = dir.join("tiny-extractor.pt");
    trace("TinyExtractor", TINY_EXTRACTOR_SIZE, |x| {
        let colour = (x - 0.5) * 20.0; // [N,3,h,w]
        let white = (x.amin([1].as_slice(), true) - 0.9) * 40.0; // [N,1,h,w]
        // Colour parts lose to `edge` on white pixels.
        let colour = colour - white.clamp_min(0.0) * 2.0;
        let background = Tensor::zeros_like(&white);
        Tensor::cat(&[background, colour, white], 1)
    })
    .save(&extractor)
    .expect("save extractor");
    std::fs::write(
        dir.join("tiny-extractor.labels"),
        format!("background\n{}\n", TINY_PARTS.join("\n")),
    )
    .unwrap();
    write_sidecar(
        &extractor,
        format!(
            "[modelinfo]\nversion=1.0\ngroup-id=tiny-extractor\n\n{}{}[unmask]\nrole=part-extractor\noutput=segmentation\nlabels=tiny-extractor.labels\nmin-area=0.05\nmin-confidence=0.5\n",
            tensor_section("input", &format!("-1,3,{eh},{ew}"), "input", true),
            tensor_section("part_logits", &format!("-1,5,{eh},{ew}"), "output", false)
        ),
    );

    let multilabel_extractor = dir.join("tiny-multilabel.pt");
    trace("TinyMultilabel", TINY_EXTRACTOR_SIZE, |x| {
        let white = (x.amin([1].as_slice(), true) - 0.9) * 40.0; // [N,1,h,w]
        let (r, g, b) = (x.narrow(1, 0, 1), x.narrow(1, 1, 1), x.narrow(1, 2, 1));
        let others = Tensor::cat(&[g.maximum(&b), r.maximum(&b), r.maximum(&g)], 1);
        // Bright enough and clearly ahead of the other channels.
        let colour = ((x - 0.5) * 20.0).minimum(&((x - &others - 0.2) * 20.0));
        let colour = colour.amax([2, 3].as_slice(), false); // [N,3]
        let white = white.amax([1, 2, 3].as_slice(), false);
        Tensor::cat(&[colour, white.unsqueeze(1)], 1)
    })
    .save(&multilabel_extractor)
    .expect("save multilabel extractor");
    std::fs::write(
        dir.join("tiny-multilabel.labels"),
        TINY_PARTS.join("\n") + "\n",
    )
    .unwrap();
    write_sidecar(
        &multilabel_extractor,
        format!(
            "[modelinfo]\nversion=1.0\ngroup-id=tiny-multilabel\n\n{}{}[unmask]\nrole=part-extractor\noutput=multilabel\nlabels=tiny-multilabel.labels\nthreshold=0.5\n",
            tensor_section("input", &format!("-1,3,{eh},{ew}"), "input", true),
            tensor_section("part_logits", "-1,4", "output", false)
        ),
    );

    let knowledge = dir.join("tiny-knowledge.json");
    std::fs::write(
        &knowledge,
        r#"{
  "name": "tiny",
  "parts": ["red_part", "green_part", "blue_part", "edge"],
  "classes": [
    {"name": "red_thing", "parts": ["red_part", "edge"]},
    {"name": "green_thing", "parts": ["green_part", "edge"]},
    {"name": "blue_thing", "parts": ["blue_part"]}
  ],
  "class_sets": [{"name": "all", "classes": ["red_thing", "green_thing", "blue_thing"]},
                 {"name": "warm", "classes": ["red_thing"]}]
}
"#,
    )
    .unwrap();
    TinyModels {
        classifier,
        extractor,
        multilabel_extractor,
        knowledge,
    }
}

/// Toy frames with known verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TinyScene {
    /// Bright red object with a white border on black: `red_thing`, parts `{red_part, edge}`.
    CleanRed,
    /// Blue object: `blue_thing`, parts `{blue_part}`.
    CleanBlue,
    /// Dim green field (classified `green_thing`, no part found) with a bright red patch
    /// (`red_part`): flagged, realigned to `red_thing`.
    MismatchedGreen,
}

/// Renders a toy scene as RGB bytes (`width*height*3`).
pub fn tiny_scene(scene: TinyScene, width: usize, height: usize) -> Vec<u8> {
    let mut rgb = vec![0u8; width * height * 3];
    for y in 0..height {
        for x in 0..width {
            let (u, v) = (x as f32 / width as f32, y as f32 / height as f32);
            let inside = (0.2..0.8).contains(&u) && (0.2..0.8).contains(&v);
            let border = (0.1..0.9).contains(&u) && (0.1..0.9).contains(&v) && !inside;
            let px: [u8; 3] = match scene {
                TinyScene::CleanRed if inside => [240, 20, 20],
                TinyScene::CleanRed if border => [255, 255, 255],
                TinyScene::CleanBlue if inside => [10, 30, 230],
                TinyScene::MismatchedGreen
                    if (0.3..0.7).contains(&u) && (0.3..0.7).contains(&v) =>
                {
                    [250, 0, 0]
                }
                TinyScene::MismatchedGreen => [0, 115, 0],
                _ => [0, 0, 0],
            };
            rgb[(y * width + x) * 3..][..3].copy_from_slice(&px);
        }
    }
    rgb
}

/// What a CUDA test prints when it skips itself for want of a GPU; on a GPU machine
/// `scripts/bench/device-tests.sh` looks for it and counts it as a failure.
pub const CUDA_SKIPPED: &str = "no CUDA device: skipped";

/// Whether CUDA loads here. If it does not, says [`CUDA_SKIPPED`] on stderr, for a test that
/// then checks nothing.
pub fn cuda_or_say_skipped() -> bool {
    let available = crate::device::cuda_available();
    if !available {
        eprintln!("{CUDA_SKIPPED}");
    }
    available
}
