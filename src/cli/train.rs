//! `unmask train`: reproduces the shipped parts-world models and their training report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use unmask::detector::DetectorConfig;
use unmask::eval::calibrate;
use unmask::train::{self, TrainOptions, TrainingReport, Variant};

/// Arguments of `unmask train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Output folder for models, modelinfo, labels and `training-report.json`.
    #[arg(long, default_value_os_t = unmask::paths::partsworld_dir())]
    out: PathBuf,
    /// Train only these models: `k`, or `<class set>-<variant>` such as `cs3a-baseline`;
    /// `classifiers` for all classifiers. Default: everything.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Optimisation steps of the 6-class pre-training of each variant's backbone.
    #[arg(long, default_value_t = TrainOptions::default().pretrain_steps)]
    pretrain_steps: usize,
    /// Optimisation steps fine-tuning each classifier on its class set.
    #[arg(long, default_value_t = TrainOptions::default().classifier_steps)]
    classifier_steps: usize,
    /// Optimisation steps for the part extractor.
    #[arg(long, default_value_t = TrainOptions::default().extractor_steps)]
    extractor_steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = TrainOptions::default().batch)]
    batch: usize,
    /// Held-out images for the reported metrics.
    #[arg(long, default_value_t = TrainOptions::default().eval_images)]
    eval_images: usize,
    /// Do not train the part extractor: re-measure the existing `k-parts.pt` in `--out` (with
    /// its modelinfo's thresholds) and update its report entry.
    #[arg(long)]
    remeasure_extractor: bool,
    /// After training, calibrate the classifiers' detection thresholds for this fraction of
    /// clean images flagged (all classifiers when K was trained, else the ones trained).
    #[arg(long, default_value_t = 0.05)]
    target_fpr: f64,
    /// Clean calibration images per classifier.
    #[arg(long, default_value_t = 1000)]
    calibration_images: usize,
    /// Skip the calibration.
    #[arg(long)]
    no_calibrate: bool,
    /// Calibrate one threshold for every prediction instead of one per predicted class.
    #[arg(long)]
    global_threshold: bool,
    /// libtorch intra-op threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: i32,
}

const CLASS_SETS: [&str; 4] = ["CS3a", "CS3b", "CS5a", "CS5b"];

fn wanted(only: &[String], name: &str, is_classifier: bool) -> bool {
    only.is_empty()
        || only.iter().any(|o| {
            o.eq_ignore_ascii_case(name) || (is_classifier && o.eq_ignore_ascii_case("classifiers"))
        })
}

/// Trains the selected models and merges their entries into the training report.
pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let opts = TrainOptions {
        out_dir: args.out.clone(),
        pretrain_steps: args.pretrain_steps,
        classifier_steps: args.classifier_steps,
        extractor_steps: args.extractor_steps,
        batch: args.batch,
        eval_images: args.eval_images,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ..TrainOptions::default()
    };
    let report_path = args.out.join("training-report.json");
    let mut report = TrainingReport::load(&report_path).unwrap_or(TrainingReport {
        command: String::new(),
        machine: String::new(),
        libtorch_threads: 0,
        total_seconds: 0.0,
        sum_train_seconds: 0.0,
        extractor: None,
        pretraining: None,
        classifiers: Vec::new(),
        calibration: Vec::new(),
    });
    let start = Instant::now();
    let mut trained_extractor = false;
    if args.remeasure_extractor {
        eprintln!("re-measuring the part extractor K");
        let r = train::measure_extractor(&opts, report.extractor.as_ref())
            .context("measuring the part extractor")?;
        eprintln!(
            "  k-parts: mean image Jaccard {:.3}, mean part IoU {:.3}",
            r.heldout.mean_image_jaccard, r.heldout.mean_part_iou
        );
        report.extractor = Some(r);
        save_report(&mut report, &report_path, &start)?;
    } else if wanted(&args.only, "k", false) {
        eprintln!(
            "training the part extractor K ({} steps)",
            opts.extractor_steps
        );
        let r = train::train_extractor(&opts).context("training the part extractor")?;
        eprintln!(
            "  k-parts: mean image Jaccard {:.3}, mean part IoU {:.3} ({:.0} s)",
            r.heldout.mean_image_jaccard, r.heldout.mean_part_iou, r.train_seconds
        );
        report.extractor = Some(r);
        trained_extractor = true;
        save_report(&mut report, &report_path, &start)?;
    }
    let wanted_classifiers: Vec<(&str, Variant, String)> = Variant::ALL
        .into_iter()
        .flat_map(|variant| {
            CLASS_SETS.iter().map(move |set| {
                (
                    *set,
                    variant,
                    format!("{}-{}", set.to_ascii_lowercase(), variant.name()),
                )
            })
        })
        .filter(|(_, _, name)| wanted(&args.only, name, true))
        .collect();
    let backbone = if opts.pretrain_steps > 0 && !wanted_classifiers.is_empty() {
        eprintln!(
            "pre-training the classifier backbone on all six classes ({} steps)",
            opts.pretrain_steps
        );
        let (vs, r) = train::pretrain_backbone(&opts).context("pre-training")?;
        eprintln!(
            "  pretrain: final loss {:.3} ({:.0} s)",
            r.final_train_loss, r.train_seconds
        );
        report.pretraining = Some(r);
        save_report(&mut report, &report_path, &start)?;
        Some(vs)
    } else {
        None
    };
    let mut trained = Vec::new();
    for (set, variant, name) in wanted_classifiers {
        eprintln!(
            "training classifier {name} ({} steps)",
            opts.classifier_steps
        );
        let r = train::train_classifier(set, variant, backbone.as_ref(), &opts)
            .with_context(|| format!("training {name}"))?;
        eprintln!(
            "  {name}: held-out accuracy {:.4} ({:.0} s)",
            r.heldout_accuracy, r.train_seconds
        );
        report.classifiers.retain(|c| c.file != r.file);
        report.classifiers.push(r);
        save_report(&mut report, &report_path, &start)?;
        trained.push((set.to_owned(), variant));
    }
    if !args.no_calibrate {
        let to_calibrate: Vec<(String, Variant)> = if trained_extractor {
            report
                .classifiers
                .iter()
                .map(|c| (c.class_set.clone(), c.variant))
                .collect()
        } else {
            trained
        };
        for (set, variant) in to_calibrate {
            let config = DetectorConfig {
                device: "cpu".into(),
                ..DetectorConfig::in_dir(&args.out, &set, variant.name())
            };
            let r = calibrate::calibrate(
                &config,
                args.calibration_images,
                opts.batch,
                args.target_fpr,
                !args.global_threshold,
            )
            .with_context(|| format!("calibrating {}", config.classifier.display()))?;
            eprintln!(
                "  {}: threshold {:.3}, {} ({:.1}% of clean images flagged)",
                r.classifier,
                r.threshold,
                calibrate::describe(&r),
                100.0 * r.measured_fpr
            );
            report.record_calibration(r);
        }
        save_report(&mut report, &report_path, &start)?;
    }
    eprintln!(
        "wrote {} ({:.0} s)",
        report_path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the report (after every model, so an interrupted run keeps what it finished).
fn save_report(
    report: &mut TrainingReport,
    path: &std::path::Path,
    start: &Instant,
) -> anyhow::Result<()> {
    report.classifiers.sort_by(|a, b| a.file.cmp(&b.file));
    report.command = std::env::args().collect::<Vec<_>>().join(" ");
    report.machine = unmask::bench_env::machine_summary();
    report.libtorch_threads = tch::get_num_threads();
    report.total_seconds = start.elapsed().as_secs_f64();
    report.sum_train_seconds = report.extractor.as_ref().map_or(0.0, |k| k.train_seconds)
        + report.pretraining.as_ref().map_or(0.0, |p| p.train_seconds)
        + report
            .classifiers
            .iter()
            .map(|c| c.train_seconds)
            .sum::<f64>();
    report.save(path)
}
