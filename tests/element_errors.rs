//! Bad configurations fail the state change with an error message naming the file and the
//! problem.

mod common;

use common::*;
use gst::prelude::*;

/// Starts `appsrc ! unmask <props> ! fakesink` and returns the error message text.
fn start_error(props: &str) -> String {
    let desc = format!("appsrc ! unmask name=u threads=1 {props} ! fakesink");
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let result = pipeline.set_state(gst::State::Paused);
    assert!(result.is_err(), "{props}: the state change must fail");
    let errors: Vec<String> = messages(&pipeline, gst::MessageType::Error)
        .iter()
        .map(|m| match m.view() {
            gst::MessageView::Error(e) => {
                assert_eq!(
                    e.src().map(|s| s.name().to_string()).as_deref(),
                    Some("u"),
                    "posted by the element"
                );
                e.error().to_string()
            }
            _ => unreachable!(),
        })
        .collect();
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(errors.len(), 1, "{props}: {errors:?}");
    errors.into_iter().next().unwrap()
}

fn props(
    classifier: &std::path::Path,
    extractor: &std::path::Path,
    kb: &std::path::Path,
) -> String {
    format!(
        "classifier={} extractor={} knowledge={} device=cpu",
        classifier.display(),
        extractor.display(),
        kb.display()
    )
}

#[test]
fn bad_configurations_fail_the_state_change() {
    let fx = fixture();
    let m = &fx.models;
    let d = fx.dir.path();

    // Missing model.
    let missing = d.join("missing.pt");
    let e = start_error(&props(&missing, &m.extractor, &m.knowledge));
    assert!(e.contains("missing.pt: file not found"), "{e}");

    // Corrupt model (valid sidecar).
    let corrupt = d.join("corrupt.pt");
    std::fs::write(&corrupt, b"not a torchscript archive").unwrap();
    std::fs::copy(
        unmask::modelinfo::ModelInfo::sidecar_of(&m.extractor),
        unmask::modelinfo::ModelInfo::sidecar_of(&corrupt),
    )
    .unwrap();
    let e = start_error(&props(&m.classifier, &corrupt, &m.knowledge));
    assert!(e.contains("corrupt.pt: cannot load TorchScript"), "{e}");

    // A modelinfo that does not match the model.
    let wrong = d.join("wrong.pt");
    std::fs::copy(&m.classifier, &wrong).unwrap();
    let info = std::fs::read_to_string(unmask::modelinfo::ModelInfo::sidecar_of(&m.classifier))
        .unwrap()
        .replace("dims=-1,3\n", "dims=-1,4\n");
    std::fs::write(unmask::modelinfo::ModelInfo::sidecar_of(&wrong), info).unwrap();
    let e = start_error(&props(&wrong, &m.extractor, &m.knowledge));
    assert!(
        e.contains("wrong.pt") && e.contains("does not match its modelinfo"),
        "{e}"
    );

    // Unknown part in the knowledge base.
    let kb = d.join("bad-kb.json");
    std::fs::write(
        &kb,
        std::fs::read_to_string(&m.knowledge)
            .unwrap()
            .replace(r#"["blue_part"]}"#, r#"["blue_part", "fin"]}"#),
    )
    .unwrap();
    let e = start_error(&props(&m.classifier, &m.extractor, &kb));
    assert!(
        e.contains("bad-kb.json") && e.contains("unknown part \"fin\""),
        "{e}"
    );

    // A class set the classifier does not cover.
    let e = start_error(&format!(
        "{} class-set=warm",
        props(&m.classifier, &m.extractor, &m.knowledge)
    ));
    assert!(e.contains("class set warm"), "{e}");

    // CUDA without a GPU.
    if !unmask::device::cuda_available() {
        let e = start_error(&format!(
            "classifier={} extractor={} knowledge={} device=cuda:0",
            m.classifier.display(),
            m.extractor.display(),
            m.knowledge.display()
        ));
        assert!(e.contains("CUDA is not available"), "{e}");
    } else {
        eprintln!("CUDA is available: not testing the no-GPU error");
    }

    // Unknown device string.
    let e = start_error(&format!(
        "classifier={} extractor={} knowledge={} device=tpu",
        m.classifier.display(),
        m.extractor.display(),
        m.knowledge.display()
    ));
    assert!(e.contains("unknown device \"tpu\""), "{e}");
}

#[test]
fn a_good_configuration_starts_after_a_bad_one() {
    let fx = fixture();
    let m = &fx.models;
    let desc = format!(
        "appsrc ! unmask name=u threads=1 {} ! fakesink",
        props(&fx.dir.path().join("nope.pt"), &m.extractor, &m.knowledge)
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    assert!(pipeline.set_state(gst::State::Paused).is_err());
    pipeline.set_state(gst::State::Null).unwrap();
    let u = pipeline.by_name("u").unwrap();
    u.set_property("classifier", m.classifier.to_str());
    assert!(pipeline.set_state(gst::State::Paused).is_ok());
    pipeline.set_state(gst::State::Null).unwrap();
}
