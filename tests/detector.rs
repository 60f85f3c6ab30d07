//! End to end: frame bytes -> tensors -> verdict, on tiny traced models with known answers.

use std::path::Path;

use unmask::detector::{Detector, DetectorConfig, DetectorError};
use unmask::model::ModelError;
use unmask::preprocess::{Frame, OwnedFrame, PixelFormat, Scaling};
use unmask::testing::{TinyModels, TinyScene, tiny_scene, write_tiny_models};

fn config(m: &TinyModels) -> DetectorConfig {
    DetectorConfig {
        classifier: m.classifier.clone(),
        extractor: m.extractor.clone(),
        knowledge: m.knowledge.clone(),
        class_set: None,
        device: "cpu".into(),
        threshold: None,
        min_area: None,
        min_confidence: None,
        scaling: Scaling::Stretch,
        freeze: true,
    }
}

fn frame_verdicts(
    detector: &Detector,
    scene: TinyScene,
    format: PixelFormat,
    w: usize,
    h: usize,
    pad: usize,
) -> unmask::Verdict {
    let frame = OwnedFrame::from_rgb(&tiny_scene(scene, w, h), w, h, format, pad);
    detector
        .analyse_frames(&[frame.as_frame()])
        .unwrap()
        .remove(0)
}

#[test]
fn known_verdicts_for_every_format_size_and_stride() {
    let dir = tempfile::tempdir().unwrap();
    let models = write_tiny_models(dir.path());
    let detector = Detector::load(&config(&models)).unwrap();
    assert_eq!(
        detector.threshold(),
        0.5,
        "threshold comes from the classifier's calibration"
    );
    for format in PixelFormat::ALL {
        for (w, h, pad) in [(64, 64, 0), (321, 239, 7), (40, 30, 1)] {
            let v = frame_verdicts(&detector, TinyScene::CleanRed, format, w, h, pad);
            assert_eq!(v.predicted, "red_thing", "{format:?} {w}x{h}");
            assert_eq!(v.parts, ["red_part", "edge"], "{format:?} {w}x{h}");
            assert_eq!(v.similarity, 1.0);
            assert!(!v.adversarial);
            assert_eq!(v.corrected, "red_thing");

            let v = frame_verdicts(&detector, TinyScene::CleanBlue, format, w, h, pad);
            assert_eq!(
                (v.predicted.as_str(), v.adversarial),
                ("blue_thing", false),
                "{format:?}"
            );

            let v = frame_verdicts(&detector, TinyScene::MismatchedGreen, format, w, h, pad);
            assert_eq!(v.predicted, "green_thing", "{format:?} {w}x{h}");
            assert_eq!(v.parts, ["red_part"], "{format:?} {w}x{h}");
            assert_eq!(v.similarity, 0.0);
            assert!(v.adversarial);
            assert_eq!(v.corrected, "red_thing");
            assert_eq!(v.corrected_similarity, 0.5);
        }
    }
}

#[test]
fn batches_give_the_same_verdicts_as_single_frames() {
    let dir = tempfile::tempdir().unwrap();
    let models = write_tiny_models(dir.path());
    let detector = Detector::load(&config(&models)).unwrap();
    let scenes = [
        TinyScene::CleanRed,
        TinyScene::MismatchedGreen,
        TinyScene::CleanBlue,
    ];
    let buffers: Vec<Vec<u8>> = scenes.iter().map(|&s| tiny_scene(s, 50, 40)).collect();
    let frames: Vec<Frame> = buffers
        .iter()
        .map(|b| Frame::packed(PixelFormat::Rgb, 50, 40, b, 150))
        .collect();
    let batch = detector.analyse_frames(&frames).unwrap();
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(
            batch[i],
            detector
                .analyse_frames(std::slice::from_ref(frame))
                .unwrap()[0]
        );
    }
}

#[test]
fn multilabel_extractor_gives_the_same_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let models = write_tiny_models(dir.path());
    let mut cfg = config(&models);
    cfg.extractor = models.multilabel_extractor.clone();
    let detector = Detector::load(&cfg).unwrap();
    let v = frame_verdicts(
        &detector,
        TinyScene::MismatchedGreen,
        PixelFormat::Rgbx,
        33,
        31,
        0,
    );
    assert_eq!(v.parts, ["red_part"]);
    assert!(v.adversarial);
    let v = frame_verdicts(&detector, TinyScene::CleanRed, PixelFormat::Rgbx, 33, 31, 0);
    assert_eq!(v.parts, ["red_part", "edge"]);
    assert!(!v.adversarial);
}

#[test]
fn threshold_and_class_set_settings_apply() {
    let dir = tempfile::tempdir().unwrap();
    let models = write_tiny_models(dir.path());
    let mut cfg = config(&models);
    cfg.threshold = Some(0.0);
    cfg.class_set = Some("all".into());
    let detector = Detector::load(&cfg).unwrap();
    let v = frame_verdicts(
        &detector,
        TinyScene::MismatchedGreen,
        PixelFormat::Rgb,
        32,
        32,
        0,
    );
    assert!(!v.adversarial, "similarity 0 is not below threshold 0");
    cfg.class_set = Some("warm".into());
    let err = Detector::load(&cfg).unwrap_err();
    assert!(err.to_string().contains("class set warm"), "{err}");
    cfg.class_set = Some("nope".into());
    assert!(
        Detector::load(&cfg)
            .unwrap_err()
            .to_string()
            .contains("unknown class set")
    );
    cfg.class_set = None;
    cfg.threshold = Some(1.5);
    assert!(matches!(
        Detector::load(&cfg),
        Err(DetectorError::Threshold(_))
    ));
}

#[test]
fn calibrated_class_thresholds_decide_per_prediction_unless_a_threshold_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let models = write_tiny_models(dir.path());
    let sidecar = unmask::modelinfo::ModelInfo::sidecar_of(&models.classifier);
    let info = std::fs::read_to_string(&sidecar).unwrap();
    let with = |ts: &str| {
        std::fs::write(
            &sidecar,
            info.replace(
                "threshold=0.5\n",
                &format!("threshold=0.5\nclass-thresholds={ts}\n"),
            ),
        )
        .unwrap();
    };
    // Labels red_thing, green_thing, blue_thing.
    with("0.9,0,0.9");
    let mut cfg = config(&models);
    let detector = Detector::load(&cfg).unwrap();
    assert_eq!(
        detector.thresholds(),
        &unmask::similarity::Thresholds::PerClass(vec![0.9, 0.0, 0.9])
    );
    assert_eq!(detector.threshold(), 0.5, "the global one stays known");
    let verdict = |d: &Detector, scene| frame_verdicts(d, scene, PixelFormat::Rgb, 32, 32, 0);
    let green = verdict(&detector, TinyScene::MismatchedGreen);
    assert_eq!(
        (green.predicted.as_str(), green.threshold),
        ("green_thing", 0.0)
    );
    assert!(
        !green.adversarial,
        "similarity 0 is not below green's threshold 0"
    );
    let red = verdict(&detector, TinyScene::CleanRed);
    assert_eq!((red.predicted.as_str(), red.threshold), ("red_thing", 0.9));
    // An explicit threshold decides for every class.
    cfg.threshold = Some(0.5);
    let detector = Detector::load(&cfg).unwrap();
    let green = verdict(&detector, TinyScene::MismatchedGreen);
    assert!(green.adversarial && green.threshold == 0.5);
    // One threshold per label or the load fails, naming the modelinfo.
    cfg.threshold = None;
    with("0.5,0.5");
    let err = load_err(&cfg);
    assert!(
        err.contains("class-thresholds") && err.contains(&sidecar.display().to_string()),
        "{err}"
    );
}

fn load_err(cfg: &DetectorConfig) -> String {
    Detector::load(cfg).unwrap_err().to_string()
}

#[test]
fn bad_configurations_fail_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let models = write_tiny_models(dir.path());
    let base = config(&models);
    let d = dir.path();

    let mut cfg = base.clone();
    cfg.classifier = d.join("missing.pt");
    assert!(load_err(&cfg).contains("missing.pt: file not found"));

    // A corrupt model file (with a valid sidecar).
    let corrupt = d.join("corrupt.pt");
    std::fs::write(&corrupt, b"not a torchscript archive").unwrap();
    std::fs::copy(
        unmask::modelinfo::ModelInfo::sidecar_of(&models.classifier),
        unmask::modelinfo::ModelInfo::sidecar_of(&corrupt),
    )
    .unwrap();
    cfg.classifier = corrupt;
    let err = load_err(&cfg);
    assert!(err.contains("corrupt.pt: cannot load TorchScript"), "{err}");

    // No sidecar.
    let bare = d.join("bare.pt");
    std::fs::copy(&models.classifier, &bare).unwrap();
    cfg.classifier = bare;
    assert!(load_err(&cfg).contains("no modelinfo sidecar"));

    // A modelinfo that does not match the model: wrong class count.
    let (wrong, _) = copy_with_info(d, &models.classifier, "wrong-width", |s| {
        s.replace("dims=-1,3\n", "dims=-1,4\n")
    });
    cfg.classifier = wrong;
    let err = load_err(&cfg);
    assert!(err.contains("does not match its modelinfo"), "{err}");

    // Labels that do not match the output width.
    let (fewer, dir2) = copy_with_info(d, &models.classifier, "fewer-labels", |s| {
        s.replace("tiny-classifier.labels", "fewer.labels")
    });
    std::fs::write(dir2.join("fewer.labels"), "red_thing\ngreen_thing\n").unwrap();
    cfg.classifier = fewer;
    let err = load_err(&cfg);
    assert!(err.contains("output width 3 but 2 labels"), "{err}");

    // Wrong role: an extractor given as classifier.
    cfg.classifier = models.extractor.clone();
    assert!(load_err(&cfg).contains("is a part extractor, but a classifier is needed"));

    // Unknown part in the knowledge base.
    let kb = d.join("bad-kb.json");
    std::fs::write(
        &kb,
        std::fs::read_to_string(&models.knowledge)
            .unwrap()
            .replace(r#"["blue_part"]}"#, r#"["blue_part", "fin"]}"#),
    )
    .unwrap();
    let mut cfg = base.clone();
    cfg.knowledge = kb;
    let err = load_err(&cfg);
    assert!(
        err.contains("bad-kb.json") && err.contains("unknown part \"fin\""),
        "{err}"
    );

    // Extractor reporting a part the knowledge base lacks.
    let kb = d.join("small-kb.json");
    std::fs::write(
        &kb,
        std::fs::read_to_string(&models.knowledge)
            .unwrap()
            .replace(r#", "edge"]"#, "]")
            .replace(r#""edge"]}"#, "]}")
            .replace(r#"["red_part", "edge"]"#, r#"["red_part"]"#)
            .replace(r#"["green_part", "edge"]"#, r#"["green_part"]"#),
    )
    .unwrap();
    let mut cfg = base.clone();
    cfg.knowledge = kb;
    let err = load_err(&cfg);
    assert!(err.contains("reports part \"edge\""), "{err}");

    // CUDA without a GPU.
    if !unmask::device::cuda_available() {
        let mut cfg = base.clone();
        cfg.device = "cuda:0".into();
        assert!(load_err(&cfg).contains("CUDA is not available"));
    }
}

/// With a GPU: frames are pre-processed on the CPU for a CUDA detector too, so both models
/// get the CPU's inputs to the bit, and the tiny models give the CPU's verdicts. Without one,
/// it says so and checks nothing.
#[test]
fn cuda_models_get_the_cpu_inputs_and_give_the_cpu_verdicts() {
    if !unmask::testing::cuda_or_say_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let models = write_tiny_models(dir.path());
    let cpu = Detector::load(&config(&models)).unwrap();
    let mut cfg = config(&models);
    cfg.device = "cuda:0".into();
    let cuda = Detector::load(&cfg).unwrap();
    assert!(cuda.device().is_cuda());
    let (w, h) = (321, 239);
    for format in PixelFormat::ALL {
        let scenes = [
            TinyScene::CleanRed,
            TinyScene::MismatchedGreen,
            TinyScene::CleanBlue,
        ];
        let owned: Vec<_> = scenes
            .iter()
            .map(|&s| OwnedFrame::from_rgb(&tiny_scene(s, w, h), w, h, format, 7))
            .collect();
        let frames: Vec<Frame> = owned.iter().map(OwnedFrame::as_frame).collect();
        let (m_cpu, k_cpu) = cpu.model_inputs(&frames).unwrap();
        let (m_cuda, k_cuda) = cuda.model_inputs(&frames).unwrap();
        assert!(m_cuda.device().is_cuda() && k_cuda.device().is_cuda());
        assert!(
            m_cpu.equal(&m_cuda.to_device(tch::Device::Cpu)),
            "{format:?}: M's input"
        );
        assert!(
            k_cpu.equal(&k_cuda.to_device(tch::Device::Cpu)),
            "{format:?}: K's input"
        );
        let on_cpu = cpu.analyse_frames(&frames).unwrap();
        let on_cuda = cuda.analyse_frames(&frames).unwrap();
        for (a, b) in on_cpu.iter().zip(&on_cuda) {
            assert_eq!(
                (&a.predicted, &a.parts, a.adversarial, &a.corrected),
                (&b.predicted, &b.parts, b.adversarial, &b.corrected),
                "{format:?}"
            );
        }
    }
}

fn copy_with_info(
    dir: &Path,
    model: &Path,
    name: &str,
    edit: impl Fn(&str) -> String,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let target = sub.join("model.pt");
    std::fs::copy(model, &target).unwrap();
    for entry in std::fs::read_dir(model.parent().unwrap()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "labels") {
            std::fs::copy(&p, sub.join(p.file_name().unwrap())).unwrap();
        }
    }
    let info = std::fs::read_to_string(unmask::modelinfo::ModelInfo::sidecar_of(model)).unwrap();
    std::fs::write(
        unmask::modelinfo::ModelInfo::sidecar_of(&target),
        edit(&info),
    )
    .unwrap();
    (target, sub)
}

#[test]
fn model_error_type_is_exposed() {
    let e = ModelError::NotFound("x.pt".into());
    assert_eq!(e.to_string(), "model x.pt: file not found");
}
