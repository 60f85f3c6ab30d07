//! `unmask bench`: throughput of the models alone, of the `unmask` element in real pipelines,
//! of the PyTorch reference on the same frames, of several streams sharing one engine, and of
//! live streams in async mode; peak memory. Prints Markdown tables (see `docs/performance.md`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use unmask::bench::{self, BenchOptions};
use unmask::detector::DetectorConfig;
use unmask::paths;
use unmask::preprocess::{PixelFormat, Scaling};

/// Arguments of `unmask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Classifier M (default: the shipped parts-world classifier of the class set).
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Part extractor K (default: the shipped one).
    #[arg(long)]
    extractor: Option<PathBuf>,
    /// Knowledge base (default: the shipped parts-world one).
    #[arg(long)]
    knowledge: Option<PathBuf>,
    /// Class set of the shipped classifier.
    #[arg(long, default_value = paths::DEFAULT_CLASS_SET)]
    class_set: String,
    /// Variant of the shipped classifier.
    #[arg(long, default_value = paths::DEFAULT_VARIANT)]
    variant: String,
    /// Input sizes, WxH.
    #[arg(long, value_delimiter = ',', default_value = "640x480,1920x1080")]
    sizes: Vec<String>,
    /// Frame formats (GStreamer names).
    #[arg(long, value_delimiter = ',', default_value = "BGRx,RGB,RGBA,I420,NV12")]
    formats: Vec<String>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    batches: Vec<usize>,
    /// Sync-mode pipeline depths of the element (`pipeline-depth`).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    depths: Vec<usize>,
    /// Timed seconds per throughput measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Distinct pre-rendered frames per size.
    #[arg(long, default_value_t = 16)]
    pool: usize,
    /// Threads (0: one per core): libtorch intra-op threads of the floor and the reference,
    /// and the element's `threads` (on a GPU its pre-processing threads; 0: at most 4).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Devices: cpu, cuda (CUDA rows are skipped without a GPU).
    #[arg(long, value_delimiter = ',', default_value = "cpu,cuda")]
    devices: Vec<String>,
    /// Python with torch for the reference (a path, or a name on the PATH); `none` skips it.
    #[arg(long, default_value = ".venv/bin/python")]
    python: String,
    /// The reference script.
    #[arg(long, default_value = "scripts/bench/reference.py")]
    reference: PathBuf,
    /// Stream counts for the shared-engine comparison (0 values: skip).
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    streams: Vec<usize>,
    /// Live stream counts in async mode.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    live_streams: Vec<usize>,
    /// Frame rate of each live stream.
    #[arg(long, default_value_t = 30)]
    live_fps: u32,
    /// Seconds per live measurement.
    #[arg(long, default_value_t = 10.0)]
    live_seconds: f64,
    /// Size of the live streams' frames, WxH.
    #[arg(long, default_value = "1920x1080")]
    live_size: String,
    /// Folder for the raw frame files given to the reference.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Also time the stages on their own (pre-processing, M, K, parts; threads; M || K).
    #[arg(long)]
    micro: bool,
    /// Skip the element runs (with --micro: the stages only).
    #[arg(long)]
    no_element: bool,
    /// Run M and K as saved, not frozen for inference (element, floor and micro-benchmarks;
    /// the reference always runs them as saved).
    #[arg(long)]
    no_freeze: bool,
    /// Also write the Markdown report here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `program` as a path, or, for a bare name that is not a file here (`python3`), the first
/// file of that name on the `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    let path = PathBuf::from(program);
    if path.exists() {
        return Some(path);
    }
    if path.components().count() != 1 {
        return None;
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(&path))
        .find(|candidate| candidate.is_file())
}

fn parse_size(s: &str) -> anyhow::Result<(usize, usize)> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("size {s} is not WxH"))?;
    Ok((w.trim().parse()?, h.trim().parse()?))
}

/// Runs the benchmarks.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let class_set = args.class_set.clone();
    let config = DetectorConfig {
        classifier: args
            .classifier
            .unwrap_or_else(|| paths::default_classifier(&class_set, &args.variant)),
        extractor: args.extractor.unwrap_or_else(paths::default_extractor),
        knowledge: args.knowledge.unwrap_or_else(paths::default_knowledge),
        class_set: None,
        device: "cpu".into(),
        threshold: None,
        min_area: None,
        min_confidence: None,
        scaling: Scaling::Crop,
        freeze: !args.no_freeze,
    };
    let formats = args
        .formats
        .iter()
        .map(|f| {
            PixelFormat::from_gst_name(f.trim()).with_context(|| format!("unknown format {f}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if formats.is_empty() || args.batches.is_empty() || args.sizes.is_empty() {
        bail!("give at least one size, format and batch size");
    }
    if args.depths.is_empty() || args.depths.iter().any(|&d| d == 0 || d > 8) {
        bail!("pipeline depths are 1 to 8");
    }
    let python = match args.python.as_str() {
        "none" | "" => None,
        p => {
            let found = find_program(p);
            if found.is_none() {
                eprintln!("{p} not found: the reference is skipped");
            }
            found
        }
    };
    let opts = BenchOptions {
        config,
        sizes: args
            .sizes
            .iter()
            .map(|s| parse_size(s))
            .collect::<anyhow::Result<_>>()?,
        formats,
        batches: args.batches,
        depths: args.depths,
        seconds: args.seconds,
        pool: args.pool.max(1),
        threads: args.threads,
        python,
        reference: args.reference,
        streams: args.streams.into_iter().filter(|&n| n > 0).collect(),
        live_streams: args.live_streams.into_iter().filter(|&n| n > 0).collect(),
        live_fps: args.live_fps.max(1),
        live_seconds: args.live_seconds,
        live_size: parse_size(&args.live_size)?,
        work_dir: args.work_dir,
        devices: args.devices,
        micro: args.micro,
        no_element: args.no_element,
    };
    let write = |report: &bench::BenchReport| -> anyhow::Result<String> {
        let md = bench::markdown(report);
        if let Some(path) = &args.markdown {
            std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_string_pretty(report)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(md)
    };
    // The reports are rewritten after every row: a run stopped part way leaves its rows.
    let report = bench::run_with_progress(&opts, &command, |partial| {
        if let Err(e) = write(partial) {
            eprintln!("warning: {e:#}");
        }
    })?;
    println!("{}", write(&report)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_is_a_path_or_a_name_on_the_path() {
        let sh = find_program("sh").expect("sh on the PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(find_program(sh.to_str().unwrap()), Some(sh.clone()));
        assert_eq!(find_program("no-such-program-anywhere"), None);
        // A relative path with folders is taken as it is, never looked up on the PATH.
        assert_eq!(find_program("no/such/sh"), None);
    }
}
