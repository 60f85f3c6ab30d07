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
    /// Analyse recorded video (a file, a folder of images or a URI) through the unmask
    /// element: JSON-lines report, summary, annotated copy, comparison with a ground truth.
    Scan(cli::scan::ScanArgs),
    /// Monitor a live camera (V4L2, RTSP/HTTP, any GStreamer source): alerts when flagged
    /// segments start and end, on-screen display, reconnection.
    Watch(cli::watch::WatchArgs),
    /// Write adversarial images or a clip with an attacked segment, with its ground truth.
    Attack(cli::attack::AttackArgs),
    /// Measure throughput: models alone, the element, the PyTorch reference, streams, live.
    Bench(cli::bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Info(a) => cli::info::run(a),
        Command::Synth(a) => cli::synth::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Calibrate(a) => cli::calibrate::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Scan(a) => cli::scan::run(a),
        Command::Watch(a) => cli::watch::run(a),
        Command::Attack(a) => cli::attack::run(a),
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
