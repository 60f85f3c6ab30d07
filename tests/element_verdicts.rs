//! `appsrc ! unmask ! appsink`: verdicts on buffers equal the core library's, for every
//! supported format, odd sizes and padded strides; pixels are unchanged; the meta survives
//! downstream elements; bus messages.

mod common;

use common::*;
use gst::prelude::*;
use unmask::preprocess::{PixelFormat, YuvColor, YuvMatrix};
use unmask::testing::TinyScene;

const SCENES: [TinyScene; 3] = [
    TinyScene::CleanRed,
    TinyScene::MismatchedGreen,
    TinyScene::CleanBlue,
];

/// Runs frames through `unmask <extra>` and checks each output buffer's verdict and pixels.
fn check_frames(fx: &Fixture, extra: &str, frames: &[TestFrame], video_meta: bool) {
    let detector = fx.detector();
    let p = AppPipeline::new(&fx.element_desc(extra));
    p.play();
    let inputs: Vec<(gst::Caps, gst::Buffer)> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let pts = FRAME * i as u64;
            let b = if video_meta {
                f.buffer_with_meta(pts, FRAME)
            } else {
                f.buffer_default_layout(pts, FRAME)
            };
            (f.caps(25), b)
        })
        .collect();
    let input_bytes: Vec<Vec<u8>> = inputs.iter().map(|(_, b)| bytes(b)).collect();
    p.push_all(&inputs);
    let out = p.pull_all();
    assert!(p.errors().is_empty(), "{:?}", p.errors());
    assert_eq!(out.len(), frames.len());
    for (i, (sample, frame)) in out.iter().zip(frames).enumerate() {
        let what = format!(
            "{extra} frame {i} {:?} {}x{} video-meta {video_meta}",
            frame.format, frame.width, frame.height
        );
        let buffer = sample.buffer().unwrap();
        assert_eq!(bytes(buffer), input_bytes[i], "{what}: pixels changed");
        assert_eq!(buffer.pts(), Some(FRAME * i as u64));
        let meta = meta_of(sample).unwrap_or_else(|| panic!("{what}: no UnmaskMeta"));
        assert_eq!(meta.pts, buffer.pts(), "{what}");
        let want = expected(&detector, &[frame]).remove(0);
        assert_same_verdict(&meta.verdict, &want, &what);
    }
    let u = p.element("u");
    assert_eq!(u64_prop(&u, "frames-seen"), frames.len() as u64);
    assert_eq!(u64_prop(&u, "frames-analysed"), frames.len() as u64);
    let flagged = out
        .iter()
        .filter(|s| meta_of(s).unwrap().verdict.adversarial)
        .count();
    assert_eq!(u64_prop(&u, "frames-flagged"), flagged as u64);
    p.stop();
}

#[test]
fn every_format_odd_size_and_padded_stride() {
    let fx = fixture();
    for format in PixelFormat::ALL {
        let frames: Vec<TestFrame> = SCENES
            .iter()
            .map(|&s| TestFrame::new(s, format, 321, 239, 13))
            .collect();
        check_frames(&fx, "", &frames, true);
    }
}

#[test]
fn default_layouts_without_video_meta() {
    let fx = fixture();
    for format in [
        PixelFormat::Rgb,
        PixelFormat::Bgrx,
        PixelFormat::I420,
        PixelFormat::Nv12,
    ] {
        // 321 x 239: GStreamer pads rows to 4 bytes and the chroma planes' heights.
        let frames: Vec<TestFrame> = SCENES
            .iter()
            .map(|&s| TestFrame::new(s, format, 321, 239, 0))
            .collect();
        check_frames(&fx, "", &frames, false);
    }
}

#[test]
fn yuv_colorimetry_is_honoured() {
    let fx = fixture();
    for color in [
        YuvColor {
            matrix: YuvMatrix::Bt709,
            full_range: true,
        },
        YuvColor {
            matrix: YuvMatrix::Bt709,
            full_range: false,
        },
    ] {
        let frames: Vec<TestFrame> = SCENES
            .iter()
            .map(|&s| {
                let mut f = TestFrame::new(s, PixelFormat::Nv12, 64, 48, 4);
                f.color = color;
                f
            })
            .collect();
        check_frames(&fx, "", &frames, true);
    }
}

#[test]
fn batches_give_the_same_verdicts() {
    let fx = fixture();
    let frames: Vec<TestFrame> = (0..10)
        .map(|i| TestFrame::new(SCENES[i % 3], PixelFormat::Rgba, 96, 64, 8))
        .collect();
    // 10 frames in batches of 4: the last batch is partial and flushed at EOS.
    check_frames(&fx, "batch-size=4", &frames, true);
}

#[test]
fn pipelined_sync_mode_gives_the_same_verdicts_in_order() {
    let fx = fixture();
    let frames: Vec<TestFrame> = (0..11)
        .map(|i| TestFrame::new(SCENES[i % 3], PixelFormat::Bgrx, 80, 60, 4))
        .collect();
    // Up to 2 or 3 batches in the engine at once; with two threads single frames run M and K
    // side by side and the next frame is prepared ahead. The last batches drain at EOS.
    for extra in [
        "pipeline-depth=2",
        "pipeline-depth=3 threads=2",
        "batch-size=3 pipeline-depth=2",
        "pipeline-depth=8 threads=1",
    ] {
        check_frames(&fx, extra, &frames, true);
    }
}

#[test]
fn meta_survives_queue_tee_videoconvert_and_videoscale() {
    let fx = fixture();
    // The tee's second branch is not consumed by the test.
    let middle = format!(
        "{} ! queue ! tee name=t t. ! queue ! fakesink sync=false async=false \
         t. ! queue ! videoconvert ! video/x-raw,format=I420 ! videoscale ! \
         video/x-raw,width=50,height=40 ! videoconvert ! video/x-raw,format=BGRA",
        fx.element_desc("")
    );
    let p = AppPipeline::new(&middle);
    p.play();
    let frames: Vec<TestFrame> = SCENES
        .iter()
        .map(|&s| TestFrame::new(s, PixelFormat::Rgb, 160, 120, 0))
        .collect();
    let inputs = timed_inputs(&frames);
    p.push_all(&inputs);
    let out = p.pull_all();
    assert_eq!(out.len(), 3, "{:?}", p.errors());
    let detector = fx.detector();
    for (i, (sample, frame)) in out.iter().zip(&frames).enumerate() {
        let caps = sample.caps().unwrap().structure(0).unwrap().to_owned();
        assert_eq!(caps.get::<i32>("width").unwrap(), 50);
        assert_eq!(caps.get::<&str>("format").unwrap(), "BGRA");
        let meta = meta_of(sample).expect("meta survived the converters");
        assert_eq!(meta.pts, Some(FRAME * i as u64));
        assert_same_verdict(
            &meta.verdict,
            &expected(&detector, &[frame]).remove(0),
            "after converters",
        );
    }
    p.stop();
}

#[test]
fn messages_follow_post_messages() {
    let fx = fixture();
    let frames: Vec<TestFrame> = SCENES
        .iter()
        .map(|&s| TestFrame::new(s, PixelFormat::Rgb, 40, 30, 0))
        .collect();
    for (setting, want) in [("none", 0), ("adversarial", 1), ("all", 3)] {
        let p = AppPipeline::new(&fx.element_desc(&format!("post-messages={setting}")));
        p.play();
        let inputs = timed_inputs(&frames);
        p.push_all(&inputs);
        let out = p.pull_all();
        let msgs = verdict_messages(&p.pipeline);
        let metas: Vec<_> = out.iter().map(meta_of).collect();
        assert_eq!(msgs.len(), want, "post-messages={setting}: {metas:?}");
        for (name, m) in &msgs {
            let sample = out
                .iter()
                .find(|s| s.buffer().unwrap().pts() == m.pts)
                .unwrap();
            assert_eq!(&meta_of(sample).unwrap(), m, "message equals meta");
            let expected_name = if m.verdict.adversarial {
                "unmask-alert"
            } else {
                "unmask-verdict"
            };
            assert_eq!(name, expected_name);
        }
        if setting == "adversarial" {
            assert_eq!(msgs[0].1.verdict.predicted, "green_thing");
            assert_eq!(msgs[0].1.verdict.corrected, "red_thing");
        }
        p.stop();
    }
}

#[test]
fn threshold_property_applies() {
    let fx = fixture();
    let frame = TestFrame::new(TinyScene::MismatchedGreen, PixelFormat::Rgb, 40, 30, 0);
    let p = AppPipeline::new(&fx.element_desc("threshold=0"));
    p.play();
    p.push_all(&[(
        frame.caps(25),
        frame.buffer_with_meta(gst::ClockTime::ZERO, FRAME),
    )]);
    let out = p.pull_all();
    let meta = meta_of(&out[0]).unwrap();
    assert_eq!(meta.verdict.threshold, 0.0);
    assert!(!meta.verdict.adversarial);
    let u = p.element("u");
    assert_eq!(u.property::<f64>("active-threshold"), 0.0);
    // Back to the calibration (0.5 in the tiny classifier's modelinfo), while playing.
    u.set_property("threshold", -1.0f64);
    assert_eq!(u.property::<f64>("active-threshold"), 0.5);
    assert_eq!(u.property::<f64>("threshold"), -1.0);
    assert_eq!(u.property::<String>("class-thresholds"), "");
    p.stop();
    assert_eq!(u.property::<f64>("active-threshold"), -1.0);
}

#[test]
fn calibrated_class_thresholds_reach_the_verdicts() {
    let fx = fixture();
    let sidecar = unmask::modelinfo::ModelInfo::sidecar_of(&fx.models.classifier);
    let info = std::fs::read_to_string(&sidecar).unwrap();
    std::fs::write(
        &sidecar,
        info.replace(
            "threshold=0.5\n",
            "threshold=0.5\nclass-thresholds=0.9,0,0.9\n",
        ),
    )
    .unwrap();
    let frames = [TinyScene::MismatchedGreen, TinyScene::CleanRed]
        .map(|s| TestFrame::new(s, PixelFormat::Rgb, 40, 30, 0));
    let p = AppPipeline::new(&fx.element_desc(""));
    p.play();
    let inputs = timed_inputs(&frames);
    p.push_all(&inputs);
    let out = p.pull_all();
    let metas: Vec<_> = out.iter().map(|s| meta_of(s).unwrap().verdict).collect();
    assert_eq!(
        (metas[0].predicted.as_str(), metas[0].threshold),
        ("green_thing", 0.0)
    );
    assert!(!metas[0].adversarial);
    assert_eq!(
        (metas[1].predicted.as_str(), metas[1].threshold),
        ("red_thing", 0.9)
    );
    let u = p.element("u");
    assert_eq!(u.property::<f64>("active-threshold"), -1.0);
    assert_eq!(
        u.property::<String>("class-thresholds"),
        "red_thing=0.900 green_thing=0.000 blue_thing=0.900"
    );
    // Setting a threshold while playing replaces them.
    u.set_property("threshold", 0.5f64);
    assert_eq!(u.property::<f64>("active-threshold"), 0.5);
    assert_eq!(u.property::<String>("class-thresholds"), "");
    p.stop();
}
