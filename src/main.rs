//! The `unmask` command-line tool: a thin layer of subcommands over the library.

use clap::{Parser, Subcommand};

mod cli;

/// UnMask: flag adversarial video frames by robust feature alignment.
#[derive(Debug, Parser)]
#[command(name = "unmask", version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the default models, knowledge base and devices.
    Info(cli::info::InfoArgs),
    /// Render parts-world samples with ground truth, a benchmark, or a video clip.
    Synth(cli::synth::SynthArgs),
    /// Train the default parts-world models (reproduces models/partsworld).
    Train(cli::train::TrainArgs),
    /// Pick detection thresholds for a target false-positive rate and write them into the
    /// classifiers' modelinfo.
    Calibrate(cli::calibrate::CalibrateArgs),
    /// Evaluate detection and defense under attack; writes the paper-style tables.
    Eval(cli::eval::EvalArgs),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Info(a) => cli::info::run(a),
        Command::Synth(a) => cli::synth::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Calibrate(a) => cli::calibrate::run(a),
        Command::Eval(a) => cli::eval::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("unmask: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
