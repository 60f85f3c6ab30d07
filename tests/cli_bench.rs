//! `unmask bench` end to end on a small configuration with the shipped models: the element
//! runs in real pipelines, the PyTorch reference runs on the same frames, and both reach the
//! same verdict on every frame (the reference applies the models' per-class thresholds too).

mod common;

use std::path::Path;

use unmask::bench::{AFTER_K, AFTER_PASS};

use common::*;

#[test]
fn bench_element_and_python_reference_agree_on_every_frame() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/setup.sh",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let ran = Ran::new(
        unmask_cli()
            .args(["bench", "--sizes", "160x120", "--formats", "BGRx,NV12"])
            .args(["--batches", "1,4", "--depths", "1,2"])
            .args(["--seconds", "0.3", "--pool", "8"])
            .args(["--streams", "0", "--live-streams", "0", "--devices", "cpu"])
            .arg("--python")
            .arg(&python)
            .arg("--reference")
            .arg(root.join("scripts/bench/reference.py"))
            .arg("--work-dir")
            .arg(dir.path())
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap(),
    );
    assert_eq!(ran.code, Some(0), "{ran}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["complete"], true, "the finished run's report");
    assert_eq!(
        report["streams_device"], "cpu",
        "streams and live rows run on the CPU here"
    );
    let floor = report["floor"].as_array().unwrap();
    assert_eq!(floor.len(), 2, "one floor row per batch size: {floor:?}");
    let rows = report["element"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        8,
        "2 formats x 2 batch sizes x 2 depths: {rows:?}"
    );
    for row in rows {
        let what = format!(
            "{} batch {} depth {}",
            row["format"], row["batch"], row["depth"]
        );
        assert!(row["fps"].as_f64().unwrap() > 0.0, "{what}");
        assert!(row["reference_fps"].as_f64().unwrap() > 0.0, "{what}");
        let agreement = row["agreement"].as_array().unwrap();
        assert_eq!(agreement[1], 8, "{what}: every distinct frame compared");
        assert_eq!(
            agreement[0], agreement[1],
            "{what}: verdicts differ from the reference: {}",
            row["disagreements"]
        );
    }
}

/// The reports are rewritten after every measured row: a run stopped part way (a time limit
/// on a borrowed GPU machine) leaves the rows it measured, marked as a partial report.
#[test]
fn a_stopped_bench_leaves_a_partial_report_of_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let md = dir.path().join("bench.md");
    let mut child = unmask_cli()
        .args([
            "bench",
            "--sizes",
            "160x120",
            "--formats",
            "BGRx,RGB,I420,NV12",
        ])
        .args(["--batches", "1", "--depths", "1,2"])
        .args(["--seconds", "0.5", "--pool", "4", "--python", "none"])
        .args(["--streams", "0", "--live-streams", "0", "--devices", "cpu"])
        .arg("--work-dir")
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .arg("--markdown")
        .arg(&md)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rows = |report: &serde_json::Value| report["element"].as_array().map_or(0, Vec::len);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let report = loop {
        let report: Option<serde_json::Value> = std::fs::read_to_string(&json)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        match report {
            Some(r) if rows(&r) >= 1 => break r,
            _ if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                panic!("no element row written within 5 minutes");
            }
            _ if child.try_wait().unwrap().is_some() => {
                panic!("the bench ended before its first element row was written")
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(report["complete"], false, "{report}");
    assert_eq!(report["floor"].as_array().unwrap().len(), 1, "{report}");
    assert!(
        rows(&report) < 8,
        "the run was stopped before its 8 rows: {report}"
    );
    let row = &report["element"][0];
    assert_eq!(
        (row["format"].as_str(), row["batch"].as_u64()),
        (Some("BGRx"), Some(1))
    );
    assert!(row["fps"].as_f64().unwrap() > 0.0, "{row}");
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.contains("partial report"), "{md}");
    assert!(md.contains("| cpu | 160x120 | BGRx | 1 | 1 |"), "{md}");
}

/// `--micro` times each stage on its own: pre-processing per size, format and batch on one
/// thread and over the element's threads (with the frame in the cache, and right after a
/// pass of the models, as in the element), both models with one and all threads, the parts
/// decision (on its own and right after K); every row a positive time per frame.
#[test]
fn the_stages_are_timed_on_one_thread_and_over_the_elements_threads() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let ran = Ran::new(
        unmask_cli()
            .args(["bench", "--micro", "--no-element", "--threads", "2"])
            .args(["--sizes", "160x120", "--formats", "BGRx,I420"])
            .args(["--batches", "1,3", "--seconds", "0.05", "--pool", "4"])
            .args(["--python", "none", "--streams", "0", "--live-streams", "0"])
            .arg("--devices=cpu")
            .arg(format!("--work-dir={}", dir.path().display()))
            .arg(format!("--json={}", json.display()))
            .output()
            .unwrap(),
    );
    assert_eq!(ran.code, Some(0), "{ran}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows: Vec<(String, f64)> = report["micro"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["what"].as_str().unwrap().to_owned(),
                r["us_per_frame"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for batch in [1, 3] {
        for format in ["BGRx", "I420"] {
            for threads in ["1 thread", "2 threads"] {
                let row = format!("preprocess 160x120 {format} batch {batch}, {threads}");
                expected.push(format!("{row}, {AFTER_PASS}"));
                expected.push(row);
            }
        }
        for threads in ["1 thread", "2 threads"] {
            for model in ["M forward", "K forward", "M then K"] {
                expected.push(format!("{model} batch {batch}, {threads}"));
            }
        }
        expected.push(format!("parts decision batch {batch}"));
        expected.push(format!("parts decision batch {batch}, {AFTER_K}"));
    }
    for what in &expected {
        let row = rows.iter().find(|(w, _)| w == what);
        assert!(
            row.is_some_and(|(_, us)| us.is_finite() && *us > 0.0),
            "{what}: {row:?} in {rows:?}"
        );
    }
}
