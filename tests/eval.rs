//! The evaluation end to end on a tiny subset of the shipped models' held-out data.

use unmask::eval::{self, AttackKind, EvalConfig, EvalReport};
use unmask::train::Variant;

fn config(attacks: &[&str]) -> EvalConfig {
    let all = eval::default_attacks();
    EvalConfig {
        models_dir: unmask::paths::partsworld_dir(),
        class_sets: vec!["CS3a".into()],
        variants: vec![Variant::Baseline],
        attacks: attacks
            .iter()
            .map(|a| {
                all.iter()
                    .find(|(n, _)| n == a)
                    .expect("attack exists")
                    .clone()
            })
            .collect(),
        images: 12,
        batch: 6,
        seed: 3,
        device: "cpu".into(),
        threshold: None,
    }
}

#[test]
fn evaluation_runs_end_to_end_and_writes_its_reports() {
    let config = config(&["PGD-Linf-16", "PGD-L2-8", "Adaptive-PGD-Linf-16"]);
    assert!(matches!(config.attacks[2].1, AttackKind::Adaptive(_)));
    let cells = eval::evaluate(&config, &()).unwrap();
    assert_eq!(cells.len(), 3);
    for c in &cells {
        assert_eq!(c.images, 12, "{}", c.attack);
        for r in [
            c.clean_accuracy,
            c.clean_flag_rate,
            c.attacked_accuracy,
            c.detection_rate,
            c.false_positive_rate,
            c.detection_at_paper_fpr,
            c.defense_accuracy,
            c.realignment_accuracy,
            c.undetected_success_rate,
        ] {
            assert!((0.0..=1.0).contains(&r), "{} has a rate {r}", c.attack);
        }
        assert_eq!(
            c.successful_attacks as f64,
            ((1.0 - c.attacked_accuracy) * 12.0).round()
        );
        assert!(c.fpr_at_paper_point <= eval::PAPER_FPR + 1e-9);
        if let Some(auc) = c.auc {
            assert!((0.0..=1.0).contains(&auc));
        }
        assert!(c.undetected_success_rate <= 1.0 - c.attacked_accuracy + 1e-9);
    }
    let by_name = |n: &str| cells.iter().find(|c| c.attack == n).unwrap();
    // The clean accuracy is shared by all cells of a detector.
    assert_eq!(
        by_name("PGD-Linf-16").clean_accuracy,
        by_name("PGD-L2-8").clean_accuracy
    );
    // A 16/255 L∞ PGD attack fools the undefended classifier on most images; the study's
    // tiny L2 radius barely moves it.
    let strong = by_name("PGD-Linf-16");
    assert!(
        strong.clean_accuracy >= 0.75,
        "clean accuracy {}",
        strong.clean_accuracy
    );
    assert!(
        strong.attacked_accuracy <= 0.25,
        "PGD-Linf-16 leaves {}",
        strong.attacked_accuracy
    );
    assert!(by_name("PGD-L2-8").attacked_accuracy >= strong.attacked_accuracy);

    let report = EvalReport {
        command: "test".into(),
        machine: unmask::bench_env::machine_summary(),
        date: unmask::bench_env::today(),
        images_per_class_set: 12,
        seconds: 0.0,
        cells,
    };
    let dir = tempfile::tempdir().unwrap();
    let written = eval::report::write_all(&report, dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("eval.md")).unwrap();
    assert!(
        md.contains("| PGD-Linf-16 |") && md.contains("| attack | CS3a |"),
        "{md}"
    );
    let csv = std::fs::read_to_string(dir.path().join("eval.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    let json: EvalReport =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("eval.json")).unwrap())
            .unwrap();
    assert_eq!(json.cells.len(), 3);
    let png = dir.path().join("roc-cs3a-baseline.png");
    assert!(written.contains(&png));
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
}

#[test]
fn evaluation_is_deterministic() {
    let config = config(&["PGD-Linf-8"]);
    let a = eval::evaluate(&config, &()).unwrap();
    let b = eval::evaluate(&config, &()).unwrap();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}
