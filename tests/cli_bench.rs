//! `unmask bench` end to end on a small configuration with the shipped models: the element
//! runs in real pipelines, the PyTorch reference runs on the same frames, and both reach the
//! same verdict on every frame (the reference applies the models' per-class thresholds too).

mod common;

use std::path::Path;

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
