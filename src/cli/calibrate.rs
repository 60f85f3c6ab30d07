//! `unmask calibrate`: picks each classifier's detection threshold for a target
//! false-positive rate on held-out clean calibration images and writes it into the
//! classifier's modelinfo, which the element then uses by default.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use unmask::detector::DetectorConfig;
use unmask::eval::calibrate;
use unmask::train::TrainingReport;

/// Arguments of `unmask calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Folder with `k-parts.pt`, `m-<set>-<variant>.pt` and `knowledge.json`.
    #[arg(long, default_value_os_t = unmask::paths::partsworld_dir())]
    models: PathBuf,
    /// Class sets whose classifiers to calibrate.
    #[arg(long, value_delimiter = ',', default_value = "CS3a,CS3b,CS5a,CS5b")]
    class_sets: Vec<String>,
    /// Classifier variants.
    #[arg(long, value_delimiter = ',', default_value = "baseline,denoise")]
    variants: Vec<String>,
    /// Largest fraction of clean images that may be flagged.
    #[arg(long, default_value_t = 0.05)]
    target_fpr: f64,
    /// Clean calibration images per classifier.
    #[arg(long, default_value_t = 1000)]
    images: usize,
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// One threshold for every prediction (the original UnMask) instead of one per
    /// predicted class.
    #[arg(long)]
    global: bool,
}

/// Calibrates every selected classifier.
pub fn run(args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    // The training report next to the models keeps the thresholds chosen for them.
    let report_path = args.models.join("training-report.json");
    let mut report = report_path
        .is_file()
        .then(|| TrainingReport::load(&report_path))
        .transpose()?;
    println!(
        "| classifier | images | clean accuracy | global threshold | thresholds that decide | clean FPR (target {:.1}%) |",
        100.0 * args.target_fpr
    );
    println!("|---|---:|---:|---:|---|---:|");
    for set in &args.class_sets {
        for variant in &args.variants {
            let config = DetectorConfig {
                device: args.device.clone(),
                ..DetectorConfig::in_dir(&args.models, set, variant)
            };
            let r = calibrate::calibrate(
                &config,
                args.images,
                args.batch,
                args.target_fpr,
                !args.global,
            )?;
            if let Some(report) = report.as_mut() {
                report.record_calibration(r.clone());
            }
            println!(
                "| {} | {} | {:.1}% | {:.4} | {} | {:.2}% |",
                r.classifier,
                r.images,
                100.0 * r.clean_accuracy,
                r.threshold,
                calibrate::describe(&r),
                100.0 * r.measured_fpr
            );
        }
    }
    if let Some(report) = &report {
        report.save(&report_path)?;
        eprintln!("updated {}", report_path.display());
    }
    Ok(ExitCode::SUCCESS)
}
