//! `unmask eval`: the paper-style tables for the shipped models (or any models in the same
//! layout), with CSV/JSON and ROC curves.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use unmask::eval::{self, AttackKind, EvalConfig, EvalReport};
use unmask::train::Variant;

/// Arguments of `unmask eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Folder with `k-parts.pt`, `m-<set>-<variant>.pt` and `knowledge.json`.
    #[arg(long, default_value_os_t = unmask::paths::partsworld_dir())]
    models: PathBuf,
    /// Class sets to evaluate.
    #[arg(long, value_delimiter = ',', default_value = "CS3a,CS3b,CS5a,CS5b")]
    class_sets: Vec<String>,
    /// Classifier variants.
    #[arg(long, value_delimiter = ',', default_value = "baseline,denoise")]
    variants: Vec<String>,
    /// Attacks by name (see `--list-attacks`), or `all`.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    attacks: Vec<String>,
    /// Held-out images per class set.
    #[arg(long, default_value_t = 250)]
    images: usize,
    /// Images per attack batch.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Seed of the attacks' random starts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Detection threshold (default: each classifier's calibration).
    #[arg(long)]
    threshold: Option<f32>,
    /// Output folder for eval.md, eval.csv, eval.json and ROC plots.
    #[arg(long, default_value = "docs/eval")]
    out: PathBuf,
    /// List the attack names and exit.
    #[arg(long)]
    list_attacks: bool,
}

fn parse_variant(s: &str) -> anyhow::Result<Variant> {
    Variant::ALL
        .into_iter()
        .find(|v| v.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| anyhow::anyhow!("unknown variant {s} (baseline or denoise)"))
}

struct Bar(indicatif::ProgressBar);

impl eval::Progress for Bar {
    fn step(&self, message: &str) {
        self.0.set_message(message.to_owned());
        self.0.inc(1);
    }
}

/// Runs the evaluation and writes the report.
pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let all = eval::default_attacks();
    if args.list_attacks {
        for (name, kind) in &all {
            match kind {
                AttackKind::GrayBox(s) => println!("{name:22} gray-box  {s}"),
                AttackKind::Adaptive(s) => {
                    println!("{name:22} adaptive  {} λ={}", s.base, s.lambda)
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let attacks = if args.attacks.iter().any(|a| a.eq_ignore_ascii_case("all")) {
        all
    } else {
        let mut chosen = Vec::new();
        for a in &args.attacks {
            match all.iter().find(|(n, _)| n.eq_ignore_ascii_case(a)) {
                Some(x) => chosen.push(x.clone()),
                None => bail!("unknown attack {a} (see --list-attacks)"),
            }
        }
        chosen
    };
    let config = EvalConfig {
        models_dir: args.models.clone(),
        class_sets: args.class_sets.clone(),
        variants: args
            .variants
            .iter()
            .map(|v| parse_variant(v))
            .collect::<anyhow::Result<_>>()?,
        attacks,
        images: args.images,
        batch: args.batch,
        seed: args.seed,
        device: args.device.clone(),
        threshold: args.threshold,
    };
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(eval::total_steps(&config) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "eval [{bar:30}] {pos}/{len} {elapsed} eta {eta} {msg}",
        )?
        .progress_chars("=> "),
    );
    let start = Instant::now();
    let cells = eval::evaluate(&config, &Bar(bar.clone()))?;
    bar.finish_and_clear();
    let report = EvalReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: unmask::bench_env::machine_summary(),
        date: unmask::bench_env::today(),
        images_per_class_set: args.images,
        seconds: start.elapsed().as_secs_f64(),
        cells,
    };
    let written = eval::report::write_all(&report, &args.out)?;
    print!("{}", eval::report::markdown(&report));
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
