//! `unmask scan` on generated clips and image folders with the tiny models: reports,
//! summaries, annotated copies, the comparison with a ground truth, and every kind of bad
//! input (missing, truncated, unsupported, broken images) with its exit status.

mod common;

use std::path::Path;

use common::*;
use unmask::testing::TinyScene;

const FPS: u32 = 10;

/// 10 clean red, 10 mismatched (flagged, corrected to red_thing), 10 clean blue frames.
fn clip(fx: &Fixture) -> std::path::PathBuf {
    let path = fx.dir.path().join("clip.mkv");
    let n = write_tiny_clip(
        &path,
        &[
            (TinyScene::CleanRed, 10),
            (TinyScene::MismatchedGreen, 10),
            (TinyScene::CleanBlue, 10),
        ],
        64,
        48,
        FPS,
    );
    assert_eq!(n, 30);
    path
}

fn scan(fx: &Fixture, input: &Path, extra: &[&str]) -> Ran {
    Ran::new(
        unmask_cli()
            .arg("scan")
            .arg(input)
            .args(tiny_cli_args(&fx.models))
            .args(extra)
            .output()
            .unwrap(),
    )
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn scans_a_file_with_report_summary_and_truth() {
    let fx = fixture();
    let clip = clip(&fx);
    let report = fx.dir.path().join("out/report.jsonl");
    let summary = fx.dir.path().join("out/summary.json");
    // A ground truth in the format of `unmask attack`: frames 10..20 "attacked".
    let truth = fx.dir.path().join("truth.json");
    let frames: Vec<serde_json::Value> = (0..30)
        .map(|i| {
            let class = match i {
                0..10 => "red_thing",
                10..20 => "red_thing",
                _ => "blue_thing",
            };
            serde_json::json!({
                "frame": i, "time": i as f64 / 10.0, "class": class,
                "attacked": (10..20).contains(&i),
                "prediction": if (10..20).contains(&i) { "green_thing" } else { class },
            })
        })
        .collect();
    std::fs::write(
        &truth,
        serde_json::json!({"kind": "unmask-attack", "truth": frames}).to_string(),
    )
    .unwrap();
    let out = scan(
        &fx,
        &clip,
        &[
            "--report",
            report.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
            "--truth",
            truth.to_str().unwrap(),
            "--frames",
        ],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let lines = json_lines(&report);
    assert_eq!(lines.len(), 30, "{out}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["frame"], i as u64);
        assert!((l["time"].as_f64().unwrap() - i as f64 / 10.0).abs() < 1e-6);
        let flagged = (10..20).contains(&i);
        assert_eq!(l["adversarial"], flagged, "frame {i}: {l}");
        if flagged {
            assert_eq!(l["predicted"], "green_thing");
            assert_eq!(l["corrected"], "red_thing");
            assert_eq!(l["parts"], serde_json::json!(["red_part"]));
        }
    }
    let s = read_json(&summary);
    assert_eq!(s["status"], "ok");
    assert_eq!(s["frames"], 30);
    assert_eq!(s["analysed"], 30);
    assert_eq!(s["flagged"], 10);
    assert_eq!(s["segments"].as_array().unwrap().len(), 1);
    assert_eq!(s["segments"][0]["start_frame"], 10);
    assert_eq!(s["segments"][0]["end_frame"], 19);
    assert!((s["segments"][0]["start"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    assert!((s["segments"][0]["end"].as_f64().unwrap() - 1.9).abs() < 1e-6);
    assert_eq!(s["corrected"]["red_thing"], 10);
    let t = &s["truth"];
    assert_eq!(t["attacked"], 10);
    assert_eq!(t["detection_rate"], 1.0);
    assert_eq!(t["false_alarm_rate"], 0.0);
    assert_eq!(t["corrected_accuracy"], 1.0);
    // The printed summary and the streaming per-frame lines.
    assert!(out.stdout.contains("flagged: 10"), "{out}");
    assert!(out.stdout.contains("detection rate: 100.0%"), "{out}");
    assert!(out.stdout.contains("FLAGGED -> red_thing"), "{out}");

    // --fail-on-flag turns flagged frames into exit status 1.
    let out = scan(&fx, &clip, &["--fail-on-flag", "--quiet"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
}

#[test]
fn writes_an_annotated_copy_and_reports_on_stdout() {
    let fx = fixture();
    let clip = clip(&fx);
    let annotated = fx.dir.path().join("annotated.mkv");
    let out = scan(
        &fx,
        &clip,
        &[
            "--report",
            "-",
            "--annotate",
            annotated.to_str().unwrap(),
            "--max-frames",
            "25",
        ],
    );
    assert_eq!(out.code, Some(0), "{out}");
    // The report is the whole of stdout; the summary went to stderr.
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 25, "{out}");
    assert!(out.stderr.contains("flagged: 10"), "{out}");
    let frames = unmask::clip::read_rgb_frames(&annotated).unwrap();
    assert_eq!(frames.len(), 25);
    let px = |f: &unmask::clip::RgbFrame, x: usize, y: usize| {
        let i = (y * f.width as usize + x) * 3;
        [f.rgb[i], f.rgb[i + 1], f.rgb[i + 2]]
    };
    for (i, f) in frames.iter().enumerate() {
        let [r, g, b] = px(f, 1, 24);
        let red = r > 170 && g < 90 && b < 90;
        assert_eq!(red, (10..20).contains(&i), "frame {i}: ({r},{g},{b})");
    }
}

#[test]
fn scans_an_image_folder_and_reports_broken_images() {
    let fx = fixture();
    let dir = fx.dir.path().join("images");
    std::fs::create_dir_all(&dir).unwrap();
    let save = |name: &str, scene: TinyScene, w: u32, h: u32| {
        let rgb = unmask::testing::tiny_scene(scene, w as usize, h as usize);
        image::RgbImage::from_raw(w, h, rgb)
            .unwrap()
            .save(dir.join(name))
            .unwrap();
    };
    save("a.png", TinyScene::CleanRed, 40, 30);
    save("b.png", TinyScene::MismatchedGreen, 33, 21);
    save("d.jpg", TinyScene::CleanBlue, 48, 48);
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    let annotated = fx.dir.path().join("annotated");
    let report = fx.dir.path().join("images.jsonl");
    let out = scan(
        &fx,
        &dir,
        &[
            "--report",
            report.to_str().unwrap(),
            "--annotate",
            annotated.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let lines = json_lines(&report);
    let files: Vec<&str> = lines.iter().map(|l| l["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["a.png", "b.png", "d.jpg"]);
    let flags: Vec<bool> = lines
        .iter()
        .map(|l| l["adversarial"].as_bool().unwrap())
        .collect();
    assert_eq!(flags, [false, true, false]);
    assert_eq!(lines[2]["predicted"], "blue_thing");
    for name in ["a.png", "b.png", "d.png"] {
        let img = image::open(annotated.join(name)).unwrap().to_rgb8();
        let p = img.get_pixel(1, img.height() / 2);
        let red = p[0] > 170 && p[1] < 90 && p[2] < 90;
        assert_eq!(red, name == "b.png", "{name}: {p:?}");
    }

    // A broken image: the others are still analysed, the exit status says error.
    std::fs::write(dir.join("c.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let out = scan(&fx, &dir, &["--report", report.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("c.png: cannot read the image"), "{out}");
    assert_eq!(json_lines(&report).len(), 3);
}

#[test]
fn truncated_file_keeps_the_report_and_fails() {
    let fx = fixture();
    let clip = clip(&fx);
    let bytes = std::fs::read(&clip).unwrap();
    let cut = fx.dir.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let report = fx.dir.path().join("cut.jsonl");
    let summary = fx.dir.path().join("cut.json");
    let out = scan(
        &fx,
        &cut,
        &[
            "--report",
            report.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, Some(2), "{out}");
    let lines = json_lines(&report);
    assert!(
        !lines.is_empty() && lines.len() < 30,
        "{} lines\n{out}",
        lines.len()
    );
    let s = read_json(&summary);
    assert_eq!(s["status"], "error");
    assert_eq!(s["analysed"], lines.len());
    assert!(out.stderr.contains("analysed before the error"), "{out}");
}

#[test]
fn missing_empty_and_unsupported_inputs_fail_clearly() {
    let fx = fixture();
    let out = scan(&fx, &fx.dir.path().join("nope.mkv"), &[]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains("nope.mkv: no such file or folder"),
        "{out}"
    );

    let text = fx.dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "these are not the frames you are looking for\n".repeat(50),
    )
    .unwrap();
    let report = fx.dir.path().join("r.jsonl");
    let out = scan(&fx, &text, &["--report", report.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("notes.txt"), "{out}");
    assert_eq!(json_lines(&report).len(), 0);

    let empty = fx.dir.path().join("empty.mkv");
    std::fs::write(&empty, b"").unwrap();
    let out = scan(&fx, &empty, &[]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("empty"), "{out}");

    let empty_dir = fx.dir.path().join("nothing");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let out = scan(&fx, &empty_dir, &[]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("no PNG or JPEG"), "{out}");

    // Models that do not load.
    let clip = clip(&fx);
    let out = Ran::new(
        unmask_cli()
            .arg("scan")
            .arg(&clip)
            .args(["--classifier", "/nonexistent/m.pt", "--device", "cpu"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("/nonexistent/m.pt"), "{out}");
}

#[test]
fn async_mode_reports_the_verdicts_it_made() {
    let fx = fixture();
    let clip = clip(&fx);
    let report = fx.dir.path().join("async.jsonl");
    let out = scan(
        &fx,
        &clip,
        &["--mode", "async", "--report", report.to_str().unwrap()],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let lines = json_lines(&report);
    assert!(!lines.is_empty(), "{out}");
    let mut last = None;
    for l in &lines {
        let frame = l["frame"].as_u64().unwrap();
        assert!(last.is_none_or(|p| frame > p), "frames out of order");
        last = Some(frame);
        assert_eq!(
            l["adversarial"],
            (10..20).contains(&frame),
            "frame {frame}: {l}"
        );
    }
}
