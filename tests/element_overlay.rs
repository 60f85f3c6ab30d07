//! `unmask ! unmaskoverlay`: the marker (red border and banner) on flagged frames only, the
//! panel on the others, for every supported format; verdicts held over frames without one
//! (interval, async); pass-through when there is nothing to draw.

mod common;

use common::*;
use gst_video::prelude::*;
use unmask::preprocess::PixelFormat;
use unmask::testing::TinyScene;

const W: usize = 160;
const H: usize = 120;

/// Runs frames through `unmask <extra> ! unmaskoverlay <overlay>` and returns them as RGB
/// (converted by videoconvert after the overlay).
fn annotate(
    fx: &Fixture,
    extra: &str,
    overlay: &str,
    frames: &[TestFrame],
) -> Vec<(Vec<u8>, bool)> {
    let p = AppPipeline::new(&format!(
        "{} ! unmaskoverlay name=o {overlay} ! videoconvert ! video/x-raw,format=RGB",
        fx.element_desc(extra)
    ));
    p.play();
    let inputs = timed_inputs(frames);
    p.push_all(&inputs);
    let out = p.pull_all();
    assert!(p.errors().is_empty(), "{:?}", p.errors());
    p.stop();
    out.iter()
        .map(|s| {
            let buffer = s.buffer().unwrap();
            let info = gst_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).unwrap();
            let stride = frame.plane_stride()[0] as usize;
            let data = frame.plane_data(0).unwrap();
            let mut rgb = Vec::with_capacity(W * H * 3);
            for y in 0..H {
                rgb.extend_from_slice(&data[y * stride..][..W * 3]);
            }
            (rgb, meta_of(s).is_some())
        })
        .collect()
}

fn px(rgb: &[u8], x: usize, y: usize) -> [u8; 3] {
    let i = (y * W + x) * 3;
    [rgb[i], rgb[i + 1], rgb[i + 2]]
}

fn is_red([r, g, b]: [u8; 3]) -> bool {
    r > 170 && g < 90 && b < 90
}

fn is_green([r, g, b]: [u8; 3]) -> bool {
    g > 150 && r < 110 && b < 130
}

/// The marker: the left border (middle row), the top banner and the bottom border are red.
fn marked(rgb: &[u8]) -> bool {
    is_red(px(rgb, 1, H / 2)) && is_red(px(rgb, W / 2, 1)) && is_red(px(rgb, W / 2, H - 1))
}

#[test]
fn marker_only_on_flagged_frames_for_every_format() {
    let fx = fixture();
    for format in PixelFormat::ALL {
        let frames: Vec<TestFrame> = [
            TinyScene::CleanRed,
            TinyScene::MismatchedGreen,
            TinyScene::CleanBlue,
        ]
        .iter()
        .map(|&s| TestFrame::new(s, format, W, H, 8))
        .collect();
        let out = annotate(&fx, "", "", &frames);
        assert_eq!(out.len(), 3, "{format:?}");
        let what = |i: usize| format!("{format:?} frame {i}");
        // Clean frames: no marker, the green accent of the panel at the bottom left, the
        // picture untouched at the left edge (black there).
        for i in [0, 2] {
            let rgb = &out[i].0;
            assert!(!marked(rgb), "{}", what(i));
            assert!(
                is_green(px(rgb, 1, H - 3)),
                "{}: {:?}",
                what(i),
                px(rgb, 1, H - 3)
            );
            let [r, g, b] = px(rgb, 1, H / 2);
            assert!(r < 40 && g < 40 && b < 40, "{}: ({r},{g},{b})", what(i));
        }
        // The flagged frame.
        assert!(marked(&out[1].0), "{}", what(1));
        // Text: the banner has white letters somewhere along its middle row.
        let banner_row = 4 + 10;
        assert!(
            (0..W).any(|x| px(&out[1].0, x, banner_row).iter().all(|&c| c > 200)),
            "{}: no text in the banner",
            what(1)
        );
        // The middle of the picture stays as it was (the red patch).
        assert!(is_red(px(&out[1].0, W / 2, H / 2)), "{}", what(1));
    }
}

#[test]
fn clean_frames_pass_unchanged_without_show_clean() {
    let fx = fixture();
    let frames: Vec<TestFrame> = [TinyScene::CleanRed, TinyScene::MismatchedGreen]
        .iter()
        .map(|&s| TestFrame::new(s, PixelFormat::Rgb, W, H, 0))
        .collect();
    let plain = annotate(&fx, "", "show-clean=false hold-time=0", &frames[..1]);
    assert_eq!(plain[0].0, frames[0].planes[0].0, "clean frame changed");
    let out = annotate(&fx, "", "show-clean=false", &frames);
    assert!(marked(&out[1].0));
}

#[test]
fn verdicts_are_held_over_frames_without_one() {
    let fx = fixture();
    let scenes = [
        TinyScene::MismatchedGreen,
        TinyScene::MismatchedGreen,
        TinyScene::CleanRed,
        TinyScene::CleanRed,
    ];
    let frames: Vec<TestFrame> = scenes
        .iter()
        .map(|&s| TestFrame::new(s, PixelFormat::Bgrx, W, H, 0))
        .collect();
    // interval=2: frames 1 and 3 have no verdict of their own.
    let out = annotate(&fx, "interval=2", "", &frames);
    let has: Vec<bool> = out.iter().map(|o| o.1).collect();
    assert_eq!(has, [true, false, true, false]);
    let marks: Vec<bool> = out.iter().map(|o| marked(&o.0)).collect();
    assert_eq!(marks, [true, true, false, false]);
    // Without holding, only the frame with the verdict is marked.
    let out = annotate(&fx, "interval=2", "hold-time=0", &frames);
    let marks: Vec<bool> = out.iter().map(|o| marked(&o.0)).collect();
    assert_eq!(marks, [true, false, false, false]);
}

#[test]
fn async_verdicts_riding_later_buffers_are_drawn() {
    let fx = fixture();
    let frames: Vec<TestFrame> = (0..12)
        .map(|_| TestFrame::new(TinyScene::MismatchedGreen, PixelFormat::I420, W, H, 0))
        .collect();
    let out = annotate(&fx, "mode=async", "", &frames);
    let first = out.iter().position(|o| o.1);
    // Async verdicts may all arrive after the last buffer; then nothing is drawn.
    if let Some(first) = first {
        for (i, (rgb, _)) in out.iter().enumerate() {
            assert_eq!(
                marked(rgb),
                i >= first,
                "frame {i} (first verdict on {first})"
            );
        }
    }
}
