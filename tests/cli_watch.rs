//! `unmask watch` on live sources with the tiny models: alerts for a mismatched segment
//! (a clip replayed in real time through `appsrc is-live=true`), `videotestsrc is-live=true`
//! with --duration, Ctrl-C, reconnection with back-off, and fatal errors.

mod common;

use std::time::{Duration, Instant};

use common::*;
use unmask::testing::TinyScene;

fn watch(fx: &Fixture, source: &str, extra: &[&str]) -> std::process::Command {
    let mut c = unmask_cli();
    c.arg("watch")
        .args(["--source", source])
        .args(tiny_cli_args(&fx.models))
        .args(extra);
    c
}

#[test]
fn replayed_clip_raises_start_and_end_alerts() {
    let fx = fixture();
    let clip = fx.dir.path().join("live.mkv");
    // 2 s clean, 2 s mismatched, 2 s clean at 10 fps.
    write_tiny_clip(
        &clip,
        &[
            (TinyScene::CleanRed, 20),
            (TinyScene::MismatchedGreen, 20),
            (TinyScene::CleanRed, 20),
        ],
        64,
        48,
        10,
    );
    let alerts = fx.dir.path().join("alerts.jsonl");
    let report = fx.dir.path().join("report.jsonl");
    let started = Instant::now();
    let out = Ran::new(
        watch(
            &fx,
            clip.to_str().unwrap(),
            &[
                "--alerts",
                alerts.to_str().unwrap(),
                "--report",
                report.to_str().unwrap(),
                "--start-after",
                "3",
                "--end-after",
                "3",
                "--duration",
                "30",
            ],
        )
        .output()
        .unwrap(),
    );
    let took = started.elapsed();
    assert_eq!(out.code, Some(0), "{out}");
    // Real time: the 6 s clip takes about 6 s, not a fraction of it.
    assert!(took >= Duration::from_secs(5), "took {took:?}\n{out}");
    assert!(out.stdout.contains("async mode"), "{out}");
    let a = json_lines(&alerts);
    assert_eq!(a.len(), 2, "{a:?}\n{out}");
    assert_eq!(a[0]["event"], "start");
    assert_eq!(a[0]["predicted"], "green_thing");
    assert_eq!(a[0]["corrected"], "red_thing");
    let start = a[0]["frame"].as_u64().unwrap();
    assert!((18..=24).contains(&start), "start frame {start}: {a:?}");
    assert!(a[0]["wallclock"].as_str().unwrap().ends_with('Z'));
    assert_eq!(a[1]["event"], "end");
    assert_eq!(a[1]["reason"], "clean");
    let end = a[1]["end_frame"].as_u64().unwrap();
    assert!((37..=42).contains(&end), "end frame {end}: {a:?}");
    // The live source stamps frames with the running time: about 2 s at the start alert.
    let t = a[0]["time"].as_f64().unwrap();
    assert!((1.5..4.0).contains(&t), "start time {t}");
    let verdicts = json_lines(&report);
    assert!(verdicts.len() >= 30, "{} verdicts", verdicts.len());
    assert!(out.stdout.contains("ALERT: adversarial frames"), "{out}");
    assert!(out.stdout.contains("ALERT END"), "{out}");
}

/// Dim green everywhere: classified green_thing with no part found, so every frame is flagged.
const FLAGGED_TESTSRC: &str = "videotestsrc is-live=true pattern=solid-color \
    foreground-color=0xff007300 ! video/x-raw,width=64,height=48,framerate=20/1";

#[test]
fn live_test_source_stops_after_duration_closing_the_segment() {
    let fx = fixture();
    let started = Instant::now();
    let out = Ran::new(
        watch(
            &fx,
            FLAGGED_TESTSRC,
            &[
                "--alerts",
                "-",
                "--duration",
                "2",
                "--display",
                "--display-sink",
                "fakesink",
            ],
        )
        .output()
        .unwrap(),
    );
    assert_eq!(out.code, Some(0), "{out}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let alerts: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alerts.len(), 2, "{out}");
    assert_eq!(alerts[0]["event"], "start");
    assert_eq!(alerts[0]["frame"], 0);
    assert_eq!(alerts[1]["event"], "end");
    assert_eq!(alerts[1]["reason"], "stopped");
    assert!(alerts[1]["flagged"].as_u64().unwrap() >= 10, "{out}");
    // Human-readable lines went to stderr because stdout carries the alerts.
    assert!(out.stderr.contains("ALERT: adversarial frames"), "{out}");
}

#[test]
fn ctrl_c_stops_cleanly() {
    let fx = fixture();
    let alerts = fx.dir.path().join("alerts.jsonl");
    let child = watch(
        &fx,
        FLAGGED_TESTSRC,
        &["--alerts", alerts.to_str().unwrap(), "--duration", "60"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // Wait for the segment to start, then interrupt.
    assert!(
        wait_for(Duration::from_secs(30), || !json_lines(&alerts).is_empty()),
        "no alert"
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let out = Ran::new(child.wait_with_output().unwrap());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("stopping"), "{out}");
    assert!(out.stdout.contains("watched for"), "{out}");
    let a = json_lines(&alerts);
    assert_eq!(a.last().unwrap()["event"], "end", "{a:?}");
    assert_eq!(a.last().unwrap()["reason"], "stopped");
}

#[test]
fn source_errors_reconnect_with_back_off_then_give_up() {
    let fx = fixture();
    let started = Instant::now();
    let out = Ran::new(
        watch(
            &fx,
            "filesrc location=/nonexistent/camera.mkv",
            &["--retry-delay", "0.2", "--max-retries", "2"],
        )
        .output()
        .unwrap(),
    );
    assert_eq!(out.code, Some(2), "{out}");
    // Two waits: 0.2 s then 0.4 s.
    assert!(started.elapsed() >= Duration::from_millis(600), "{out}");
    assert_eq!(out.stderr.matches("reconnecting in").count(), 2, "{out}");
    assert!(out.stderr.contains("reconnecting in 0.2 s"), "{out}");
    assert!(out.stderr.contains("reconnecting in 0.4 s"), "{out}");
    assert!(out.stderr.contains("gave up after 3 failures"), "{out}");
}

#[test]
fn model_errors_are_fatal() {
    let fx = fixture();
    let out = Ran::new(
        unmask_cli()
            .arg("watch")
            .args(["--source", FLAGGED_TESTSRC])
            .args(["--classifier", "/nonexistent/m.pt", "--device", "cpu"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("/nonexistent/m.pt"), "{out}");
    assert!(!out.stderr.contains("reconnecting"), "{out}");
    drop(fx);
}

/// The product end to end on a live source: a parts-world clip whose middle is attacked
/// (gray-box PGD-L∞ ε = 8/255 on the shipped classifier, `unmask attack`), replayed in real
/// time as a live camera into `unmask watch` with the shipped models (async mode). Flagged
/// frames concentrate in the attacked segment and an alert starts inside it.
#[test]
fn shipped_models_flag_the_attacked_segment_of_a_live_partsworld_clip() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("attacked.mkv");
    let truth = dir.path().join("attacked.json");
    // 8 s at 10 fps, 320x240; scenes of 2 s; frames 30-59 (3-6 s) attacked.
    let made = Ran::new(
        unmask_cli()
            .arg("attack")
            .args(["--video", clip.to_str().unwrap()])
            .args(["--truth", truth.to_str().unwrap()])
            .args(["--seconds", "8", "--fps", "10", "--scene-seconds", "2"])
            .args(["--attack-start", "3", "--attack-end", "6"])
            .args(["--device", "cpu", "--threads", "1"])
            .output()
            .unwrap(),
    );
    assert_eq!(made.code, Some(0), "{made}");
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&truth).unwrap()).unwrap();
    let truth = truth["truth"].as_array().unwrap().clone();
    assert_eq!(truth.len(), 80);

    let alerts = dir.path().join("alerts.jsonl");
    let report = dir.path().join("report.jsonl");
    let out = Ran::new(
        unmask_cli()
            .arg("watch")
            .args(["--source", clip.to_str().unwrap()])
            .args(["--alerts", alerts.to_str().unwrap()])
            .args(["--report", report.to_str().unwrap()])
            .args(["--start-after", "2", "--end-after", "3", "--duration", "40"])
            .args(["--device", "cpu"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, Some(0), "{out}");
    let verdicts = json_lines(&report);
    // Async on a live source: most frames get a verdict in real time.
    assert!(verdicts.len() >= 60, "{} verdicts\n{out}", verdicts.len());
    let (mut attacked, mut attacked_flagged, mut clean, mut clean_flagged) = (0, 0, 0, 0);
    for v in &verdicts {
        let frame = v["frame"].as_u64().unwrap() as usize;
        let flagged = v["adversarial"].as_bool().unwrap();
        let t = &truth[frame];
        if t["attacked"].as_bool().unwrap() {
            attacked += 1;
            attacked_flagged += usize::from(flagged);
        } else {
            clean += 1;
            clean_flagged += usize::from(flagged);
        }
    }
    let rate = |a: usize, n: usize| a as f64 / n.max(1) as f64;
    let (detected, false_alarms) = (rate(attacked_flagged, attacked), rate(clean_flagged, clean));
    assert!(
        detected >= 0.5 && false_alarms <= 0.2,
        "flagged {attacked_flagged}/{attacked} attacked and {clean_flagged}/{clean} clean frames"
    );
    let a = json_lines(&alerts);
    let starts: Vec<u64> = a
        .iter()
        .filter(|e| e["event"] == "start")
        .map(|e| e["frame"].as_u64().unwrap())
        .collect();
    assert!(
        starts.iter().any(|f| (30..62).contains(f)),
        "no alert starts in the attacked frames 30-59: {a:?}"
    );
}
