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
    /// Measure throughput: models alone, the element, the PyTorch reference, streams, live.
    Bench(cli::bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Info(a) => cli::info::run(a),
        Command::Synth(a) => cli::synth::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Bench(a) => cli::bench::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("unmask: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
