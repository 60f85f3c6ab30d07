//! Benchmarks behind `unmask bench`: the models alone, the `unmask` element in real pipelines,
//! the PyTorch reference on the same frames, several streams sharing one engine, and live
//! sources in async mode.
//!
//! Every throughput is measured in this process, side by side, so that ratios compare runs
//! taken under the same conditions:
//! - **model floor**: M and K forward passes on ready (normalised) tensors with tch, nothing
//!   else — what the element can at best approach; measured once per batch size in three
//!   ways, and its best way again just before and after each element run, so that the
//!   element / floor ratio compares runs seconds apart on a host whose speed drifts;
//! - **element**: `appsrc ! unmask ! fakesink` with pre-rendered parts-world frames held in
//!   memory (no decoding, no rendering), sync mode, frames pushed as fast as the element takes
//!   them; the first frames are not timed;
//! - **reference**: `scripts/bench/reference.py` (PyTorch) analysing the same frames, read
//!   from a raw file, with the same number of threads; its verdicts are compared with the
//!   element's frame by frame;
//! - **streams**: N such pipelines in one process, with one shared engine or one engine each;
//! - **live**: N live `appsrc`s at a fixed frame rate (pre-rendered frames, timestamped by the
//!   pipeline clock) through `unmask mode=async` into `fakesink sync=true`; how many frames are
//!   analysed per second and how late frames reach the sink.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gst::prelude::*;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::detector::{Detector, DetectorConfig};
use crate::device::{cuda_available, device_name, parse_device};
use crate::fork_join::ForkJoin;
use crate::meta::UnmaskMeta;
use crate::model::forward_flushed;
use crate::partsworld::{Scene, SceneOptions};
use crate::preprocess::{OwnedFrame, PixelFormat};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The models (threshold and scaling as the element's defaults).
    pub config: DetectorConfig,
    /// Input sizes (width, height).
    pub sizes: Vec<(usize, usize)>,
    /// Frame formats for the element and the reference.
    pub formats: Vec<PixelFormat>,
    /// Batch sizes.
    pub batches: Vec<usize>,
    /// Sync-mode pipeline depths (`pipeline-depth`) of the element rows.
    pub depths: Vec<usize>,
    /// Timed seconds per throughput measurement (at least).
    pub seconds: f64,
    /// Distinct pre-rendered frames per size and format (cycled).
    pub pool: usize,
    /// Threads (0: one per core): libtorch intra-op threads of the floor and the reference,
    /// and the element's `threads` (on a GPU its pre-processing threads; 0: at most 4).
    pub threads: usize,
    /// Python interpreter with torch for the reference (`None`: skip it).
    pub python: Option<PathBuf>,
    /// The reference script.
    pub reference: PathBuf,
    /// Numbers of streams for the shared-engine comparison (sync mode, first size, RGBx-like
    /// first format).
    pub streams: Vec<usize>,
    /// Numbers of live streams for async mode.
    pub live_streams: Vec<usize>,
    /// Frame rate of the live streams.
    pub live_fps: u32,
    /// Seconds per live measurement.
    pub live_seconds: f64,
    /// Size of the live streams' frames.
    pub live_size: (usize, usize),
    /// Folder for the raw frame files given to the reference.
    pub work_dir: PathBuf,
    /// Devices to measure (`cpu`, `cuda`); CUDA rows are skipped without a GPU.
    pub devices: Vec<String>,
    /// Time the stages on their own first (CPU).
    pub micro: bool,
    /// Skip the element runs (floor and micro-benchmarks only).
    pub no_element: bool,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub machine: String,
    pub date: String,
    pub command: String,
    pub load_before: String,
    pub load_after: String,
    pub torch_threads: i32,
    pub models: Vec<String>,
    pub floor: Vec<FloorRow>,
    pub element: Vec<ElementRow>,
    pub streams: Vec<StreamsRow>,
    pub live: Vec<LiveRow>,
    /// The device of the streams and live rows: the first one asked for and available.
    pub streams_device: String,
    pub micro: Vec<MicroRow>,
    pub notes: Vec<String>,
    /// False while the run is still going: the reports written after each row
    /// ([`run_with_progress`]) say so, and one left by a run that was stopped keeps saying it.
    pub complete: bool,
}

/// Model-only throughput.
#[derive(Debug, Clone, Serialize)]
pub struct FloorRow {
    pub device: String,
    pub batch: usize,
    /// M + K frames per second: the best of the three ways below.
    pub fps: f64,
    /// One after the other, libtorch intra-op threads = `threads`.
    pub fps_sequential: f64,
    /// One after the other on one thread.
    pub fps_single: f64,
    /// M and K side by side on the whole batch, one thread each (0: not measured).
    pub fps_side_by_side: f64,
    /// The frames in equal shares over `threads` threads, each M then K (0: not measured:
    /// fewer frames than threads, or one thread).
    pub fps_shares: f64,
    /// M alone, K alone (one thread).
    pub m_fps: f64,
    pub k_fps: f64,
    pub peak_rss_mib: f64,
    pub cuda_mib: Option<f64>,
}

/// Per-frame profile of an element run (microseconds per analysed frame).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Profile {
    pub wall: f64,
    pub map: f64,
    pub queue: f64,
    pub preprocess: f64,
    pub classifier: f64,
    pub extractor: f64,
    pub parts: f64,
    pub attach: f64,
    /// Wall time not covered by the stages: GStreamer, hand-offs, the source and sink.
    pub other: f64,
    pub mean_batch: f64,
}

/// Element throughput for one size, format and batch.
#[derive(Debug, Clone, Serialize)]
pub struct ElementRow {
    pub device: String,
    pub width: usize,
    pub height: usize,
    pub format: String,
    pub batch: usize,
    /// The element's `pipeline-depth`.
    pub depth: usize,
    pub fps: f64,
    /// The model floor at this batch size, re-measured (its best way) just before and just
    /// after this run, averaged.
    pub floor_fps: f64,
    /// fps / floor_fps.
    pub ratio: f64,
    pub reference_fps: Option<f64>,
    /// Intra-op threads of the reference's better run.
    pub reference_threads: Option<usize>,
    /// fps / reference_fps.
    pub vs_reference: Option<f64>,
    /// Verdicts equal to the reference's (predicted, parts, flag, corrected) / compared.
    pub agreement: Option<(usize, usize)>,
    pub disagreements: Vec<String>,
    pub profile: Profile,
    pub peak_rss_mib: f64,
    pub cuda_mib: Option<f64>,
}

/// N streams, shared engine vs one engine per stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamsRow {
    pub streams: usize,
    pub width: usize,
    pub height: usize,
    pub format: String,
    pub shared_fps: f64,
    pub shared_peak_rss_mib: f64,
    pub shared_mean_batch: f64,
    pub separate_fps: f64,
    pub separate_peak_rss_mib: f64,
}

/// Live streams in async mode.
#[derive(Debug, Clone, Serialize)]
pub struct LiveRow {
    pub streams: usize,
    pub width: usize,
    pub height: usize,
    pub format: String,
    pub fps_per_stream: u32,
    pub seconds: f64,
    pub frames: u64,
    /// Frames analysed per second, all streams together.
    pub analysed_per_s: f64,
    pub analysed_fraction: f64,
    pub dropped: u64,
    pub mean_batch: f64,
    /// Arrival at the sink minus the frame's timestamp (ms).
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
    pub delay_max_ms: f64,
    /// Frames reaching the sink more than one frame interval after their timestamp.
    pub late_frames: u64,
    /// CPU time of the whole process over the window (user + system), in cores: 1.0 is one
    /// core busy all the time.
    pub cpu_cores: f64,
    /// That CPU time per analysed frame (ms).
    pub cpu_ms_per_analysed: f64,
    pub peak_rss_mib: f64,
}

/// Memory high-water mark of this process (VmHWM), MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") as f64 / 1024.0
}

/// Resident memory of this process (VmRSS), MiB.
pub fn rss_mib() -> f64 {
    status_kib("VmRSS:") as f64 / 1024.0
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// CPU time this process has used so far, user and system, its finished threads included
/// (`/proc/self/stat`), in seconds; 0 where it cannot be read.
pub fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses: utime and
    // stime are the 12th and 13th, in clock ticks (`USER_HZ`, 100 on Linux).
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    ticks as f64 / 100.0
}

/// Resets the memory high-water mark to the current RSS (Linux `clear_refs` 5).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// GPU memory used by this process (MiB), from `nvidia-smi`; `None` without CUDA.
pub fn cuda_memory_mib() -> Option<f64> {
    if !cuda_available() {
        return None;
    }
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    let pid = std::process::id().to_string();
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut it = l.split(',').map(str::trim);
        (it.next()? == pid).then(|| it.next()?.parse().ok())?
    })
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Pre-rendered frames of one size and format.
pub struct FrameSet {
    pub width: usize,
    pub height: usize,
    pub format: PixelFormat,
    pub frames: Vec<Arc<OwnedFrame>>,
    pub buffers: Vec<gst::Buffer>,
    pub caps_fps: i32,
}

impl FrameSet {
    /// Parts-world scenes rendered at `width x height`, converted to `format`.
    pub fn render(rgb: &[Vec<u8>], width: usize, height: usize, format: PixelFormat) -> Self {
        let frames: Vec<Arc<OwnedFrame>> = rgb
            .iter()
            .map(|rgb| Arc::new(OwnedFrame::from_rgb(rgb, width, height, format, 0)))
            .collect();
        let buffers = frames.iter().map(|f| frame_buffer(f)).collect();
        Self {
            width,
            height,
            format,
            frames,
            buffers,
            caps_fps: 30,
        }
    }

    pub fn caps(&self) -> gst::Caps {
        let mut b = gst::Caps::builder("video/x-raw")
            .field("format", self.format.gst_name())
            .field("width", self.width as i32)
            .field("height", self.height as i32)
            .field("framerate", gst::Fraction::new(self.caps_fps, 1));
        if self.format.packed_layout().is_none() {
            b = b.field("colorimetry", "bt601");
        }
        b.build()
    }

    /// Buffer `i` (cycling through the pool), timestamped as frame `i`.
    pub fn buffer(&self, i: usize) -> gst::Buffer {
        let mut b = self.buffers[i % self.buffers.len()].copy();
        let d = gst::ClockTime::SECOND / self.caps_fps as u64;
        let bm = b.make_mut();
        bm.set_pts(d * i as u64);
        bm.set_duration(d);
        b
    }

    /// Writes the frames back to back (tight strides) for the reference.
    pub fn write_raw(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let mut bytes = Vec::new();
        for f in &self.frames {
            bytes.extend(f.tight_bytes());
        }
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    }
}

/// A buffer with the frame's planes back to back and a `GstVideoMeta` with their strides.
fn frame_buffer(f: &OwnedFrame) -> gst::Buffer {
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    let mut strides = Vec::new();
    for (d, s) in &f.planes {
        offsets.push(data.len());
        strides.push(*s as i32);
        data.extend_from_slice(d);
    }
    let mut buffer = gst::Buffer::from_mut_slice(data);
    gst_video::VideoMeta::add_full(
        buffer.get_mut().expect("new buffer"),
        gst_video::VideoFrameFlags::empty(),
        gst_video::VideoFormat::from_string(f.format.gst_name()),
        f.width as u32,
        f.height as u32,
        &offsets,
        &strides,
    )
    .expect("video meta");
    buffer
}

/// Renders `n` parts-world scenes (RGB) at `width x height`.
pub fn render_scenes(n: usize, width: usize, height: usize) -> Vec<Vec<u8>> {
    let opts = SceneOptions::default();
    (0..n as u64)
        .map(|i| {
            Scene::random(0xBE4C, i, &opts)
                .render(0.0, width as u32, height as u32)
                .rgb
        })
        .collect()
}

fn timed_loop(seconds: f64, frames_per_call: usize, mut f: impl FnMut()) -> f64 {
    // Warm up (allocations, lazy initialisation, cuDNN choices).
    for _ in 0..3 {
        f();
    }
    let start = Instant::now();
    let mut frames = 0;
    while start.elapsed().as_secs_f64() < seconds || frames < 3 * frames_per_call {
        f();
        frames += frames_per_call;
    }
    frames as f64 / start.elapsed().as_secs_f64()
}

/// How a floor measurement runs M and K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorWay {
    /// One after the other with libtorch's intra-op threads.
    Sequential,
    /// One after the other on one thread.
    Single,
    /// M on one thread, K on another, each on the whole batch.
    SideBySide,
    /// The frames in equal shares over the threads, each M then K on its share.
    Shares,
}

/// Loaded models and ready inputs for timing M + K forward passes.
struct FloorBench {
    detector: Detector,
    m_in: Tensor,
    k_in: Tensor,
    batch: usize,
    threads: usize,
}

/// M's and K's inputs for `batch` frames of `set` (cycled), made as the element makes them;
/// random images without a set. Real frames matter: they drive the models through other
/// values than random images do (subnormal floats among them, see [`crate::denormals`]).
fn model_inputs(
    detector: &Detector,
    batch: usize,
    set: Option<&FrameSet>,
) -> anyhow::Result<(Tensor, Tensor)> {
    let _guard = tch::no_grad_guard();
    if let Some(set) = set.filter(|s| !s.frames.is_empty()) {
        let frames: Vec<_> = (0..batch)
            .map(|i| set.frames[i % set.frames.len()].as_frame())
            .collect();
        return Ok(detector.model_inputs(&frames)?);
    }
    let (h, w) = detector.classifier().model().input_size();
    tch::manual_seed(0);
    let images = Tensor::rand([batch as i64, 3, h, w], (Kind::Float, detector.device()));
    Ok((
        detector.classifier().model().prepare(&images),
        detector.extractor().model().prepare(&images),
    ))
}

impl FloorBench {
    fn new(
        config: &DetectorConfig,
        batch: usize,
        threads: usize,
        set: Option<&FrameSet>,
    ) -> anyhow::Result<Self> {
        let detector = Detector::load(config)?;
        let (m_in, k_in) = model_inputs(&detector, batch, set)?;
        Ok(Self {
            detector,
            m_in,
            k_in,
            batch,
            threads: threads.max(1),
        })
    }

    fn is_cpu(&self) -> bool {
        self.detector.device() == Device::Cpu
    }

    /// Whether `way` is a distinct measurement here (the threaded ways need a CPU and threads;
    /// shares need at least one frame per thread).
    fn applies(&self, way: FloorWay) -> bool {
        match way {
            FloorWay::Sequential => true,
            FloorWay::Single | FloorWay::SideBySide => self.is_cpu() && self.threads > 1,
            FloorWay::Shares => self.is_cpu() && self.threads > 1 && self.batch >= self.threads,
        }
    }

    fn sync(&self) {
        if let Device::Cuda(i) = self.detector.device() {
            tch::Cuda::synchronize(i as i64);
        }
    }

    /// Frames per second of M and K (`m`, `k`: which of them run; the parallel way always
    /// runs both) the way `way` says.
    fn time(&self, way: FloorWay, seconds: f64, m: bool, k: bool) -> f64 {
        let _guard = tch::no_grad_guard();
        let (mm, km) = (
            self.detector.classifier().model(),
            self.detector.extractor().model(),
        );
        let run = || {
            if m {
                let _ = mm.forward_prepared(&self.m_in).expect("M forward");
            }
            if k {
                let _ = km.forward_prepared(&self.k_in).expect("K forward");
            }
            self.sync();
        };
        let fps = match way {
            FloorWay::Sequential => {
                tch::set_num_threads(if self.is_cpu() {
                    self.threads as i32
                } else {
                    1
                });
                timed_loop(seconds, self.batch, run)
            }
            FloorWay::Single => {
                tch::set_num_threads(1);
                timed_loop(seconds, self.batch, run)
            }
            FloorWay::SideBySide | FloorWay::Shares => {
                tch::set_num_threads(1);
                self.time_parallel(seconds, way == FloorWay::Shares)
            }
        };
        tch::set_num_threads(self.threads as i32);
        fps
    }

    /// M and K over the threads, one intra-op thread each: the frames in equal shares
    /// (`shares`), or M and K side by side on the whole batch.
    fn time_parallel(&self, seconds: f64, shares: bool) -> f64 {
        // Tensors are Send, not Sync: each job gets its own handles.
        let shared = SharedModels(
            self.detector.classifier().model().module(),
            self.detector.extractor().model().module(),
        );
        let fork = ForkJoin::new(self.threads).expect("fork-join threads");
        let (batch, threads) = (self.batch, self.threads);
        let (m_in, k_in) = (&self.m_in, &self.k_in);
        if shares {
            let per = batch.div_ceil(threads) as i64;
            timed_loop(seconds, batch, || {
                let jobs: Vec<_> = (0..batch as i64)
                    .step_by(per as usize)
                    .map(|start| {
                        let len = per.min(batch as i64 - start);
                        let (mi, ki) = (m_in.narrow(0, start, len), k_in.narrow(0, start, len));
                        move || {
                            let s = shared;
                            let _ = forward_flushed(s.0, &mi).expect("M");
                            let _ = forward_flushed(s.1, &ki).expect("K");
                        }
                    })
                    .collect();
                fork.run(jobs);
            })
        } else {
            timed_loop(seconds, batch, || side_by_side(&fork, shared, m_in, k_in))
        }
    }
}

/// M + K forward passes on ready tensors (the inputs of `set`'s frames, see
/// [`model_inputs`]): the floor of the element's cost. Measured up to four ways, the best
/// counts: one after the other with libtorch's intra-op threads (`threads`), one after the
/// other on one thread, M and K side by side on the whole batch (one thread each), and the
/// frames in equal shares over `threads` threads (one intra-op thread each).
pub fn model_floor(
    config: &DetectorConfig,
    batch: usize,
    seconds: f64,
    threads: usize,
    set: Option<&FrameSet>,
) -> anyhow::Result<FloorRow> {
    let bench = FloorBench::new(config, batch, threads, set)?;
    reset_peak_rss();
    let fps_sequential = bench.time(FloorWay::Sequential, seconds, true, true);
    let fps_single = if bench.applies(FloorWay::Single) {
        bench.time(FloorWay::Single, seconds, true, true)
    } else {
        fps_sequential
    };
    let m_fps = bench.time(FloorWay::Single, seconds / 2.0, true, false);
    let k_fps = bench.time(FloorWay::Single, seconds / 2.0, false, true);
    let time_if = |way| {
        if bench.applies(way) {
            bench.time(way, seconds, true, true)
        } else {
            0.0
        }
    };
    let fps_side_by_side = time_if(FloorWay::SideBySide);
    let fps_shares = time_if(FloorWay::Shares);
    Ok(FloorRow {
        device: device_name(bench.detector.device()),
        batch,
        fps: fps_sequential
            .max(fps_single)
            .max(fps_side_by_side)
            .max(fps_shares),
        fps_sequential,
        fps_single,
        fps_side_by_side,
        fps_shares,
        m_fps,
        k_fps,
        peak_rss_mib: peak_rss_mib(),
        cuda_mib: cuda_memory_mib(),
    })
}

impl FloorRow {
    /// The way that gave the best floor.
    pub fn best_way(&self) -> FloorWay {
        [
            (FloorWay::SideBySide, self.fps_side_by_side),
            (FloorWay::Shares, self.fps_shares),
            (FloorWay::Single, self.fps_single),
            (FloorWay::Sequential, self.fps_sequential),
        ]
        .into_iter()
        .fold((FloorWay::Sequential, f64::MIN), |best, way| {
            if way.1 > best.1 { way } else { best }
        })
        .0
    }
}

/// A floor figure, or `-` for a way not measured.
fn measured(fps: f64) -> String {
    if fps > 0.0 {
        format!("{fps:.1}")
    } else {
        "-".into()
    }
}

/// The floor re-measured next to an element run (on the inputs of the frames it analyses),
/// the best way of the full measurement only: on a machine whose speed drifts (shared
/// hosts), the ratio element / floor compares runs taken a few seconds apart instead of
/// minutes apart.
pub fn adjacent_floor(
    config: &DetectorConfig,
    full: &FloorRow,
    seconds: f64,
    threads: usize,
    set: &FrameSet,
) -> anyhow::Result<f64> {
    let bench = FloorBench::new(config, full.batch, threads, Some(set))?;
    let way = full.best_way();
    let way = if bench.applies(way) {
        way
    } else {
        FloorWay::Sequential
    };
    Ok(bench.time(way, seconds, true, true))
}

/// The two TorchScript modules, shared by the threads of one measurement (run with
/// [`forward_flushed`], as the element's models run).
#[derive(Clone, Copy)]
struct SharedModels<'a>(&'a tch::CModule, &'a tch::CModule);

/// M on one of `fork`'s threads and K on another, each on its whole input, as the element
/// runs them side by side.
fn side_by_side(fork: &ForkJoin, models: SharedModels<'_>, m_in: &Tensor, k_in: &Tensor) {
    let (mi, ki) = (m_in.shallow_clone(), k_in.shallow_clone());
    let jobs: Vec<Box<dyn FnOnce() + Send>> = vec![
        Box::new(move || {
            let _ = forward_flushed(models.0, &mi).expect("M");
        }),
        Box::new(move || {
            let _ = forward_flushed(models.1, &ki).expect("K");
        }),
    ];
    fork.run(jobs);
}

/// Options of the `unmask` element under test.
fn element_props(opts: &BenchOptions, device: &str, extra: &str) -> String {
    let c = &opts.config;
    let mut s = format!(
        "unmask classifier=\"{}\" extractor=\"{}\" knowledge=\"{}\" device={device} threads={} \
         freeze-models={}",
        c.classifier.display(),
        c.extractor.display(),
        c.knowledge.display(),
        opts.threads,
        c.freeze
    );
    if let Some(cs) = &c.class_set {
        write!(s, " class-set={cs}").ok();
    }
    write!(s, " {extra}").ok();
    s
}

/// Drops the element messages the element posts (an application would read them).
fn drain_bus(pipeline: &gst::Pipeline) {
    pipeline
        .bus()
        .expect("bus")
        .set_sync_handler(|_, msg| match msg.type_() {
            gst::MessageType::Element => gst::BusSyncReply::Drop,
            _ => gst::BusSyncReply::Pass,
        });
}

fn wait_eos(pipeline: &gst::Pipeline, timeout: Duration) -> anyhow::Result<()> {
    let bus = pipeline.bus().expect("bus");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::try_from(timeout).ok(),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .context("timed out waiting for EOS")?;
    if let gst::MessageView::Error(e) = msg.view() {
        bail!("pipeline error: {} ({:?})", e.error(), e.debug());
    }
    Ok(())
}

/// A buffer count and when it was reached.
type Mark = Option<(Instant, u64)>;

/// Counts buffers reaching the sinks and times the window after the warm-up.
#[derive(Default)]
struct Counter {
    count: AtomicU64,
    skip: u64,
    window: Mutex<(Mark, Mark)>,
}

impl Counter {
    fn tick(&self) {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let now = Instant::now();
        let mut w = self.window.lock().expect("counter");
        if n == self.skip {
            w.0 = Some((now, n));
        }
        if n > self.skip {
            w.1 = Some((now, n));
        }
    }

    fn fps(&self) -> f64 {
        let w = self.window.lock().expect("counter");
        match *w {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                (n1 - n0) as f64 / (t1 - t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// The result of a sync-mode run.
struct SyncRun {
    fps: f64,
    verdicts: Vec<Option<UnmaskMeta>>,
    stats: Vec<gst::Structure>,
    peak_rss_mib: f64,
    cuda_mib: Option<f64>,
    analysed: u64,
}

/// `streams` pipelines `appsrc ! unmask ! fakesink` in sync mode, `per_stream` frames each.
/// Each feeder queues all its buffers at once (shallow copies, a few ms before the timed
/// window): a feeder blocked on a short queue would be woken for every buffer taken, which
/// cost the streaming thread 45–100 µs a buffer on the 2-core VM (measured with `identity` in
/// place of `unmask`), CPU taken from the models and paid by no PyTorch loop.
fn run_sync(
    opts: &BenchOptions,
    device: &str,
    set: &FrameSet,
    (batch, depth): (usize, usize),
    streams: usize,
    shared: bool,
    per_stream: usize,
) -> anyhow::Result<SyncRun> {
    let mut desc = String::new();
    for s in 0..streams {
        write!(
            desc,
            "appsrc name=src{s} format=time max-buffers=0 max-bytes=0 max-time=0 ! {} name=u{s} ! \
             fakesink name=sink{s} sync=false async=false ",
            element_props(
                opts,
                device,
                &format!("batch-size={batch} pipeline-depth={depth} shared-engine={shared}")
            )
        )
        .ok();
    }
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    drain_bus(&pipeline);
    let counter = Arc::new(Counter {
        skip: (streams * (2 * batch).max(8)) as u64,
        ..Counter::default()
    });
    let pool = set.frames.len();
    let verdicts = Arc::new(Mutex::new(vec![None; pool]));
    // Each element's stats when the timed window starts (its own warm-up frames excluded).
    let at_start = Arc::new(Mutex::new(vec![None::<gst::Structure>; streams]));
    let own_skip = (2 * batch).max(8) as u64;
    for s in 0..streams {
        let sink = pipeline.by_name(&format!("sink{s}")).expect("sink");
        let pad = sink.static_pad("sink").expect("sink pad");
        let unmask = pipeline.by_name(&format!("u{s}")).expect("unmask");
        let counter = counter.clone();
        let verdicts = verdicts.clone();
        let at_start = at_start.clone();
        let first = s == 0;
        let frame = gst::ClockTime::SECOND / set.caps_fps as u64;
        let seen = AtomicU64::new(0);
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                counter.tick();
                if seen.fetch_add(1, Ordering::SeqCst) + 1 == own_skip {
                    at_start.lock().expect("stats")[s] =
                        Some(unmask.property::<gst::Structure>("stats"));
                }
                if first {
                    let i = buffer.pts().map_or(usize::MAX, |p| (p / frame) as usize);
                    if i < pool {
                        verdicts.lock().expect("verdicts")[i] =
                            UnmaskMeta::read(buffer).and_then(Result::ok);
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    let before = rss_mib();
    reset_peak_rss();
    pipeline.set_state(gst::State::Playing)?;
    let feeders: Vec<_> = (0..streams)
        .map(|s| {
            let src = pipeline
                .by_name(&format!("src{s}"))
                .expect("src")
                .downcast::<gst_app::AppSrc>()
                .expect("appsrc");
            src.set_caps(Some(&set.caps()));
            let buffers: Vec<gst::Buffer> = (0..per_stream).map(|i| set.buffer(i)).collect();
            std::thread::spawn(move || {
                for b in buffers {
                    if src.push_buffer(b).is_err() {
                        break;
                    }
                }
                let _ = src.end_of_stream();
            })
        })
        .collect();
    let result = wait_eos(&pipeline, Duration::from_secs(600));
    let peak = peak_rss_mib();
    let cuda_mib = cuda_memory_mib();
    let stats: Vec<gst::Structure> = (0..streams)
        .map(|s| {
            pipeline
                .by_name(&format!("u{s}"))
                .expect("unmask")
                .property::<gst::Structure>("stats")
        })
        .collect();
    let at_start = at_start.lock().expect("stats").clone();
    pipeline.set_state(gst::State::Null)?;
    for f in feeders {
        let _ = f.join();
    }
    result?;
    let analysed = stats
        .iter()
        .map(|s| s.get::<u64>("frames-analysed").unwrap_or(0))
        .sum();
    // Counters over the timed window only.
    let stats = stats
        .iter()
        .zip(at_start)
        .map(|(end, start)| match start {
            Some(start) => stats_delta(end, &start),
            None => end.clone(),
        })
        .collect();
    let _ = before;
    let verdicts = verdicts.lock().expect("verdicts").clone();
    Ok(SyncRun {
        fps: counter.fps(),
        verdicts,
        stats,
        peak_rss_mib: peak,
        cuda_mib,
        analysed,
    })
}

/// `end - start` for every unsigned counter of an element's `stats`.
fn stats_delta(end: &gst::Structure, start: &gst::Structure) -> gst::Structure {
    let mut out = end.clone();
    for (name, value) in end.iter() {
        if let (Ok(e), Ok(s)) = (value.get::<u64>(), start.get::<u64>(name)) {
            out.set(name, e.saturating_sub(s));
        }
    }
    out
}

fn stat_ns(s: &gst::Structure, field: &str) -> f64 {
    s.get::<u64>(field).unwrap_or(0) as f64
}

/// Per-frame profile from the element's `stats` (one element).
fn profile(s: &gst::Structure, fps: f64) -> Profile {
    let frames = (s.get::<u64>("frames-analysed").unwrap_or(0) as f64).max(1.0);
    let engine_frames = (s.get::<u64>("engine-frames").unwrap_or(0) as f64).max(1.0);
    let us = |f: &str| stat_ns(s, f) / frames / 1e3;
    let eus = |f: &str| stat_ns(s, f) / engine_frames / 1e3;
    let wall = if fps > 0.0 { 1e6 / fps } else { 0.0 };
    let mut p = Profile {
        wall,
        map: us("map-ns"),
        queue: eus("queue-ns"),
        preprocess: eus("preprocess-ns"),
        classifier: eus("classifier-ns"),
        extractor: eus("extractor-ns"),
        parts: eus("parts-ns"),
        attach: us("attach-ns"),
        other: 0.0,
        mean_batch: engine_frames / (s.get::<u64>("engine-batches").unwrap_or(0) as f64).max(1.0),
    };
    p.other = wall - (p.map + p.preprocess + p.classifier + p.extractor + p.parts + p.attach);
    p
}

/// The reference's answer.
#[derive(Debug, Clone, serde::Deserialize)]
struct ReferenceOutput {
    fps: f64,
    threads: usize,
    verdicts: Vec<ReferenceVerdict>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct ReferenceVerdict {
    predicted: String,
    parts: Vec<String>,
    adversarial: bool,
    corrected: String,
}

#[allow(clippy::too_many_arguments)]
fn run_reference(
    opts: &BenchOptions,
    python: &std::path::Path,
    set: &FrameSet,
    raw: &std::path::Path,
    batch: usize,
    count: usize,
    device: &str,
    threads: usize,
) -> anyhow::Result<ReferenceOutput> {
    let c = &opts.config;
    let out = std::process::Command::new(python)
        .arg(&opts.reference)
        .args(["--classifier".as_ref(), c.classifier.as_os_str()])
        .args(["--extractor".as_ref(), c.extractor.as_os_str()])
        .args(["--knowledge".as_ref(), c.knowledge.as_os_str()])
        .args(["--frames".as_ref(), raw.as_os_str()])
        .args(["--width", &set.width.to_string()])
        .args(["--height", &set.height.to_string()])
        .args(["--format", set.format.gst_name()])
        .args(["--batch", &batch.to_string()])
        .args(["--count", &count.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--device", device])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "reference failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("reading the reference's output {line}"))
}

fn compare(
    ours: &[Option<UnmaskMeta>],
    reference: &[ReferenceVerdict],
) -> ((usize, usize), Vec<String>) {
    let mut same = 0;
    let mut compared = 0;
    let mut diffs = Vec::new();
    for (i, (o, r)) in ours.iter().zip(reference).enumerate() {
        let Some(o) = o else { continue };
        compared += 1;
        let v = &o.verdict;
        let mut ours_parts = v.parts.clone();
        ours_parts.sort();
        let mut ref_parts = r.parts.clone();
        ref_parts.sort();
        if v.predicted == r.predicted
            && ours_parts == ref_parts
            && v.adversarial == r.adversarial
            && v.corrected == r.corrected
        {
            same += 1;
        } else {
            diffs.push(format!(
                "frame {i}: ours {} {:?} adv={} -> {}, reference {} {:?} adv={} -> {}",
                v.predicted,
                ours_parts,
                v.adversarial,
                v.corrected,
                r.predicted,
                ref_parts,
                r.adversarial,
                r.corrected
            ));
        }
    }
    ((same, compared), diffs)
}

/// Live streams in async mode: `streams` live `appsrc`s at `fps` pushing pre-rendered frames
/// into `unmask mode=async` and `fakesink sync=true`.
fn run_live(
    opts: &BenchOptions,
    device: &str,
    set: &FrameSet,
    streams: usize,
) -> anyhow::Result<LiveRow> {
    let fps = opts.live_fps;
    let mut desc = String::new();
    for s in 0..streams {
        write!(
            desc,
            "appsrc name=src{s} format=time is-live=true do-timestamp=true max-buffers=2 \
             leaky-type=downstream ! {} name=u{s} ! fakesink name=sink{s} sync=true ",
            element_props(opts, device, "mode=async batch-size=1")
        )
        .ok();
    }
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    drain_bus(&pipeline);
    let warm = Duration::from_secs(1);
    let delays = Arc::new(Mutex::new(Vec::<i64>::new()));
    let started = Arc::new(Mutex::new(None::<Instant>));
    for s in 0..streams {
        let sink = pipeline.by_name(&format!("sink{s}")).expect("sink");
        let pad = sink.static_pad("sink").expect("sink pad");
        let delays = delays.clone();
        let started = started.clone();
        let element = sink.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let in_window = started
                .lock()
                .expect("start")
                .is_some_and(|t: Instant| t.elapsed() >= warm);
            if in_window
                && let (Some(clock), Some(base), Some(pts)) =
                    (element.clock(), element.base_time(), buffer.pts())
            {
                let now = clock.time().nseconds() as i64 - base.nseconds() as i64;
                delays
                    .lock()
                    .expect("delays")
                    .push(now - pts.nseconds() as i64);
            }
            gst::PadProbeReturn::Ok
        });
    }
    reset_peak_rss();
    pipeline.set_state(gst::State::Playing)?;
    let _ = pipeline.state(gst::ClockTime::from_seconds(10));
    let start = Instant::now();
    *started.lock().expect("start") = Some(start);
    let total = Duration::from_secs_f64(opts.live_seconds) + warm;
    let interval = Duration::from_secs_f64(1.0 / fps as f64);
    let feeders: Vec<_> = (0..streams)
        .map(|s| {
            let src = pipeline
                .by_name(&format!("src{s}"))
                .expect("src")
                .downcast::<gst_app::AppSrc>()
                .expect("appsrc");
            src.set_caps(Some(&set.caps()));
            let buffers = set.buffers.clone();
            std::thread::spawn(move || {
                // Streams start a little apart, like independent cameras.
                let offset = interval.mul_f64(s as f64 / streams as f64);
                let mut i = 0usize;
                loop {
                    let due = offset + interval * i as u32;
                    if due > total {
                        break;
                    }
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let b = buffers[i % buffers.len()].copy();
                    if src.push_buffer(b).is_err() {
                        break;
                    }
                    i += 1;
                }
                let _ = src.end_of_stream();
            })
        })
        .collect();
    std::thread::sleep(warm);
    let analysed_at = |p: &gst::Pipeline| -> (u64, u64, u64, u64, u64) {
        (0..streams)
            .map(|s| {
                let st = p
                    .by_name(&format!("u{s}"))
                    .expect("unmask")
                    .property::<gst::Structure>("stats");
                let g = |f: &str| st.get::<u64>(f).unwrap_or(0);
                (
                    g("frames-analysed"),
                    g("frames-seen"),
                    g("frames-dropped"),
                    g("engine-frames"),
                    g("engine-batches"),
                )
            })
            .fold((0, 0, 0, 0, 0), |a, b| {
                (a.0 + b.0, a.1 + b.1, a.2 + b.2, b.3.max(a.3), b.4.max(a.4))
            })
    };
    let (a0, s0, d0, ef0, eb0) = analysed_at(&pipeline);
    let (t0, cpu0) = (Instant::now(), process_cpu_seconds());
    std::thread::sleep(Duration::from_secs_f64(opts.live_seconds));
    let (a1, s1, d1, ef1, eb1) = analysed_at(&pipeline);
    let (window, cpu) = (t0.elapsed().as_secs_f64(), process_cpu_seconds() - cpu0);
    let peak = peak_rss_mib();
    for f in feeders {
        let _ = f.join();
    }
    let _ = wait_eos(&pipeline, Duration::from_secs(30));
    pipeline.set_state(gst::State::Null)?;
    let mut d = delays.lock().expect("delays").clone();
    d.sort_unstable();
    let pct = |q: f64| {
        if d.is_empty() {
            0.0
        } else {
            d[((d.len() - 1) as f64 * q).round() as usize] as f64 / 1e6
        }
    };
    let frame_ns = 1e9 / fps as f64;
    let (engine_frames, engine_batches) = (ef1 - ef0, eb1 - eb0);
    Ok(LiveRow {
        streams,
        width: set.width,
        height: set.height,
        format: set.format.gst_name().into(),
        fps_per_stream: fps,
        seconds: window,
        frames: s1 - s0,
        analysed_per_s: (a1 - a0) as f64 / window,
        analysed_fraction: (a1 - a0) as f64 / ((s1 - s0).max(1)) as f64,
        dropped: d1 - d0,
        mean_batch: engine_frames as f64 / engine_batches.max(1) as f64,
        delay_p50_ms: pct(0.5),
        delay_p99_ms: pct(0.99),
        delay_max_ms: pct(1.0),
        late_frames: d.iter().filter(|&&x| x as f64 > frame_ns).count() as u64,
        cpu_cores: cpu / window,
        cpu_ms_per_analysed: cpu * 1e3 / ((a1 - a0).max(1)) as f64,
        peak_rss_mib: peak,
    })
}

/// Runs everything `opts` asks for, printing progress to stderr.
pub fn run(opts: &BenchOptions, command: &str) -> anyhow::Result<BenchReport> {
    run_with_progress(opts, command, |_| {})
}

/// [`run`], handing the report so far to `progress` after each measured row, so that a run
/// stopped part way (a time limit on a borrowed GPU machine, say) leaves what it measured.
pub fn run_with_progress(
    opts: &BenchOptions,
    command: &str,
    mut progress: impl FnMut(&BenchReport),
) -> anyhow::Result<BenchReport> {
    gst::init()?;
    crate::elements::register(None)?;
    let load_before = load_average();
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    tch::set_num_threads(threads as i32);
    let date = std::process::Command::new("date")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut report = BenchReport {
        machine: crate::bench_env::machine_summary(),
        date,
        command: command.to_owned(),
        load_before,
        load_after: String::new(),
        torch_threads: tch::get_num_threads(),
        models: vec![
            opts.config.classifier.display().to_string(),
            opts.config.extractor.display().to_string(),
        ],
        floor: Vec::new(),
        element: Vec::new(),
        streams: Vec::new(),
        live: Vec::new(),
        streams_device: String::new(),
        micro: Vec::new(),
        notes: Vec::new(),
        complete: false,
    };
    let mut devices = Vec::new();
    for d in &opts.devices {
        match parse_device(d) {
            Ok(dev) => devices.push(device_name(dev)),
            Err(e) => report.notes.push(format!("device {d} skipped: {e}")),
        }
    }
    std::fs::create_dir_all(&opts.work_dir)?;
    eprintln!("rendering {} scenes per size", opts.pool);
    let mut sets = Vec::new();
    for &(w, h) in &opts.sizes {
        let rgb = render_scenes(opts.pool, w, h);
        for &format in &opts.formats {
            sets.push(FrameSet::render(&rgb, w, h, format));
        }
    }
    if opts.micro {
        let mut config = opts.config.clone();
        config.device = "cpu".into();
        report.micro = micro(&config, &sets, &opts.batches, opts.seconds, opts.threads)?;
        progress(&report);
    }
    for device in &devices {
        let mut config = opts.config.clone();
        config.device = device.clone();
        for &batch in &opts.batches {
            let row = model_floor(&config, batch, opts.seconds, threads, sets.first())?;
            eprintln!(
                "floor {device} batch {batch}: M+K {:.1} fps (sequential {:.1}, one thread {:.1}, side by side {:.1}, shares {:.1}; M {:.1}, K {:.1})",
                row.fps,
                row.fps_sequential,
                row.fps_single,
                row.fps_side_by_side,
                row.fps_shares,
                row.m_fps,
                row.k_fps
            );
            report.floor.push(row);
            progress(&report);
        }
        for set in sets.iter().filter(|_| !opts.no_element) {
            let raw = opts.work_dir.join(format!(
                "frames-{}x{}-{}.raw",
                set.width,
                set.height,
                set.format.gst_name()
            ));
            if opts.python.is_some() {
                set.write_raw(&raw)?;
            }
            for &batch in &opts.batches {
                let full = report
                    .floor
                    .iter()
                    .find(|r| &r.device == device && r.batch == batch)
                    .cloned()
                    .context("no floor measured for this batch size")?;
                let per_stream = ((full.fps * opts.seconds).ceil() as usize)
                    .max(8 * batch)
                    .max(set.frames.len())
                    .div_ceil(batch)
                    * batch;
                // The reference once per batch size (it has no pipeline depth).
                let mut reference = None;
                for &depth in &opts.depths {
                    // The floor again, just before and just after the element run.
                    let half = opts.seconds / 2.0;
                    let before = adjacent_floor(&config, &full, half, threads, set)?;
                    let run = run_sync(opts, device, set, (batch, depth), 1, true, per_stream)?;
                    let after = adjacent_floor(&config, &full, half, threads, set)?;
                    let floor = (before + after) / 2.0;
                    let profile = profile(&run.stats[0], run.fps);
                    let mut row = ElementRow {
                        device: device.clone(),
                        width: set.width,
                        height: set.height,
                        format: set.format.gst_name().into(),
                        batch,
                        depth,
                        fps: run.fps,
                        floor_fps: floor,
                        ratio: run.fps / floor,
                        reference_fps: None,
                        reference_threads: None,
                        vs_reference: None,
                        agreement: None,
                        disagreements: Vec::new(),
                        profile,
                        peak_rss_mib: run.peak_rss_mib,
                        cuda_mib: run.cuda_mib,
                    };
                    if let Some(python) = opts.python.as_ref().filter(|_| reference.is_none()) {
                        let count = ((run.fps / 2.0 * opts.seconds).ceil() as usize).max(4 * batch);
                        // The reference gets its better thread setting: as many intra-op threads
                        // as we use, or one.
                        let mut counts = vec![threads, 1];
                        counts.dedup();
                        let runs: Vec<_> = counts
                            .into_iter()
                            .map(|t| {
                                run_reference(opts, python, set, &raw, batch, count, device, t)
                            })
                            .collect();
                        let best = runs.into_iter().reduce(|a, b| match (&a, &b) {
                            (Ok(x), Ok(y)) if y.fps > x.fps => b,
                            (Err(_), Ok(_)) => b,
                            _ => a,
                        });
                        match best.expect("one run at least") {
                            Ok(r) => reference = Some(r),
                            Err(e) => report.notes.push(format!("reference: {e:#}")),
                        }
                    }
                    if let Some(r) = &reference {
                        row.reference_threads = Some(r.threads);
                        row.reference_fps = Some(r.fps);
                        row.vs_reference = Some(run.fps / r.fps);
                        let (agreement, diffs) = compare(&run.verdicts, &r.verdicts);
                        row.agreement = Some(agreement);
                        row.disagreements = diffs;
                    }
                    let line = format!(
                        "element {device} {}x{} {} batch {batch} depth {depth}: {:.1} fps, floor {:.1}, ratio {:.3}, reference {}, agreement {:?} ({} analysed)",
                        set.width,
                        set.height,
                        set.format.gst_name(),
                        row.fps,
                        floor,
                        row.ratio,
                        row.reference_fps
                            .map_or("-".into(), |r| format!("{r:.1} fps (x{:.2})", row.fps / r)),
                        row.agreement,
                        run.analysed
                    );
                    report.element.push(row);
                    progress(&report);
                    eprintln!("{line}");
                }
            }
        }
    }
    // The streams and live rows run on the first device asked for (the CPU if none of them
    // is available).
    let streams_device = devices.first().cloned().unwrap_or_else(|| "cpu".into());
    report.streams_device = streams_device.clone();
    if let Some(set) = sets.first() {
        for &n in &opts.streams {
            let floor = report
                .floor
                .iter()
                .find(|r| r.batch == 1)
                .map_or(1.0, |r| r.fps);
            let per_stream = ((floor * opts.seconds / n as f64).ceil() as usize).max(16);
            let shared = run_sync(opts, &streams_device, set, (1, 1), n, true, per_stream)?;
            let batch = profile(&shared.stats[0], shared.fps).mean_batch;
            let separate = run_sync(opts, &streams_device, set, (1, 1), n, false, per_stream)?;
            let line = format!(
                "{n} streams: shared {:.1} fps ({:.0} MiB, mean batch {batch:.1}), separate {:.1} fps ({:.0} MiB)",
                shared.fps, shared.peak_rss_mib, separate.fps, separate.peak_rss_mib
            );
            report.streams.push(StreamsRow {
                streams: n,
                width: set.width,
                height: set.height,
                format: set.format.gst_name().into(),
                shared_fps: shared.fps,
                shared_peak_rss_mib: shared.peak_rss_mib,
                shared_mean_batch: batch,
                separate_fps: separate.fps,
                separate_peak_rss_mib: separate.peak_rss_mib,
            });
            progress(&report);
            eprintln!("{line}");
        }
    }
    if !opts.live_streams.is_empty() {
        let (w, h) = opts.live_size;
        let format = opts.formats.first().copied().unwrap_or(PixelFormat::Bgrx);
        let set = match sets
            .iter()
            .position(|s| s.width == w && s.height == h && s.format == format)
        {
            Some(i) => sets.swap_remove(i),
            None => FrameSet::render(&render_scenes(opts.pool, w, h), w, h, format),
        };
        for &n in &opts.live_streams {
            let row = run_live(opts, &streams_device, &set, n)?;
            let line = format!(
                "live {n} x {}x{} @ {} fps: analysed {:.1}/s ({:.0}%), dropped {}, mean batch {:.1}, delay p50 {:.2} ms p99 {:.2} ms max {:.2} ms, late {}",
                w,
                h,
                row.fps_per_stream,
                row.analysed_per_s,
                row.analysed_fraction * 100.0,
                row.dropped,
                row.mean_batch,
                row.delay_p50_ms,
                row.delay_p99_ms,
                row.delay_max_ms,
                row.late_frames
            );
            report.live.push(row);
            progress(&report);
            eprintln!("{line}");
        }
    }
    report.load_after = load_average();
    report.complete = true;
    Ok(report)
}

/// The report as Markdown tables.
pub fn markdown(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "- machine: {}", r.machine);
    if !r.complete {
        let _ = writeln!(
            s,
            "- **partial report**: written while the run was going; the run was stopped here or is still going"
        );
    }
    let _ = writeln!(s, "- date: {}", r.date);
    let _ = writeln!(s, "- command: `{}`", r.command);
    let _ = writeln!(
        s,
        "- load average (1, 5, 15 min): before {}, after {}",
        r.load_before, r.load_after
    );
    let _ = writeln!(s, "- libtorch intra-op threads: {}", r.torch_threads);
    let _ = writeln!(s, "- models: {}", r.models.join(", "));
    let _ = writeln!(
        s,
        "\n### Model floor (M + K forward on ready tensors)\n\n| device | batch | floor fps (best) | sequential, {} intra-op threads | sequential, 1 thread | M ‖ K side by side, 1 thread each | in shares over {} threads | M fps (1 thread) | K fps (1 thread) | ms/frame | peak RSS MiB | CUDA MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
        r.torch_threads, r.torch_threads
    );
    for f in &r.floor {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} | {:.1} | {:.2} | {:.0} | {} |",
            f.device,
            f.batch,
            f.fps,
            f.fps_sequential,
            f.fps_single,
            measured(f.fps_side_by_side),
            measured(f.fps_shares),
            f.m_fps,
            f.k_fps,
            1e3 / f.fps,
            f.peak_rss_mib,
            f.cuda_mib.map_or("-".into(), |m| format!("{m:.0}"))
        );
    }
    summary(&mut s, &r.element);
    let _ = writeln!(
        s,
        "\n### Element (sync mode) vs the floor and the PyTorch reference\n\n| device | input | format | batch | depth | element fps | floor fps (measured next to it) | element/floor | reference fps (threads) | element/reference | same verdicts | peak RSS MiB | CUDA MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for e in &r.element {
        let _ = writeln!(
            s,
            "| {} | {}x{} | {} | {} | {} | {:.1} | {:.1} | {:.3} | {} | {} | {} | {:.0} | {} |",
            e.device,
            e.width,
            e.height,
            e.format,
            e.batch,
            e.depth,
            e.fps,
            e.floor_fps,
            e.ratio,
            e.reference_fps.map_or("-".into(), |v| format!(
                "{v:.1} ({})",
                e.reference_threads.unwrap_or(0)
            )),
            e.vs_reference.map_or("-".into(), |v| format!("{v:.2}")),
            e.agreement.map_or("-".into(), |(a, b)| format!("{a}/{b}")),
            e.peak_rss_mib,
            e.cuda_mib.map_or("-".into(), |m| format!("{m:.0}"))
        );
    }
    let _ = writeln!(
        s,
        "\n### Profile per analysed frame (µs; engine stages per frame of the batch)\n\n| input | format | batch | depth | wall | map | preprocess | M | K | parts | attach | other | queue (waiting, overlaps) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for e in &r.element {
        let p = &e.profile;
        let _ = writeln!(
            s,
            "| {}x{} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            e.width,
            e.height,
            e.format,
            e.batch,
            e.depth,
            p.wall,
            p.map,
            p.preprocess,
            p.classifier,
            p.extractor,
            p.parts,
            p.attach,
            p.other,
            p.queue
        );
    }
    if !r.streams.is_empty() {
        let _ = writeln!(
            s,
            "\n### Several streams in one process ({}, sync mode, batch-size 1, as fast as possible)\n\n| streams | input | format | shared engine fps (all streams) | mean batch | peak RSS MiB | one engine per stream fps | peak RSS MiB |\n|---|---|---|---|---|---|---|---|",
            r.streams_device
        );
        for x in &r.streams {
            let _ = writeln!(
                s,
                "| {} | {}x{} | {} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} |",
                x.streams,
                x.width,
                x.height,
                x.format,
                x.shared_fps,
                x.shared_mean_batch,
                x.shared_peak_rss_mib,
                x.separate_fps,
                x.separate_peak_rss_mib
            );
        }
    }
    if !r.live.is_empty() {
        let _ = writeln!(
            s,
            "\n### Live sources, async mode ({}, shared engine, batch-size 1 per stream)\n\n| streams | input | fps each | frames | analysed/s | analysed | dropped | mean batch | delay p50 ms | p99 ms | max ms | frames later than 1 interval | CPU (cores) | CPU ms per analysed frame | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            r.streams_device
        );
        for l in &r.live {
            let _ = writeln!(
                s,
                "| {} | {}x{} {} | {} | {} | {:.1} | {:.0}% | {} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.1} | {:.0} |",
                l.streams,
                l.width,
                l.height,
                l.format,
                l.fps_per_stream,
                l.frames,
                l.analysed_per_s,
                l.analysed_fraction * 100.0,
                l.dropped,
                l.mean_batch,
                l.delay_p50_ms,
                l.delay_p99_ms,
                l.delay_max_ms,
                l.late_frames,
                l.cpu_cores,
                l.cpu_ms_per_analysed,
                l.peak_rss_mib
            );
        }
    }
    // Every row sees the same distinct frames: list each difference once.
    let mut disagreements: Vec<&String> = Vec::new();
    for d in r.element.iter().flat_map(|e| &e.disagreements) {
        if !disagreements.contains(&d) {
            disagreements.push(d);
        }
    }
    if !disagreements.is_empty() {
        let _ = writeln!(s, "\nVerdicts that differ from the reference:\n");
        for d in disagreements.iter().take(20) {
            let _ = writeln!(s, "- {d}");
        }
    }
    if !r.micro.is_empty() {
        let _ = writeln!(
            s,
            "\n### Stages on their own (CPU, µs per frame)\n\n| what | µs/frame |\n|---|---|"
        );
        for m in &r.micro {
            let _ = writeln!(s, "| {} | {:.0} |", m.what, m.us_per_frame);
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "\nNote: {n}");
    }
    s
}

/// One micro-benchmark result.
#[derive(Debug, Clone, Serialize)]
pub struct MicroRow {
    pub what: String,
    /// Microseconds per frame.
    pub us_per_frame: f64,
}

/// "1 thread", "2 threads", …
fn threads_named(threads: i32) -> String {
    match threads {
        1 => "1 thread".to_owned(),
        n => format!("{n} threads"),
    }
}

fn micro_time(seconds: f64, frames: usize, f: impl FnMut()) -> f64 {
    1e6 / timed_loop(seconds, frames, f)
}

/// Microseconds per frame of `f` (`frames` frames a call, given the call's number), each
/// call timed on its own right after `before` (untimed), for about `seconds` in all.
fn micro_time_after(
    seconds: f64,
    frames: usize,
    before: impl Fn(),
    mut f: impl FnMut(usize),
) -> f64 {
    for call in 0..2 {
        before();
        f(call);
    }
    let start = Instant::now();
    let mut timed = Duration::ZERO;
    let mut calls = 0;
    while start.elapsed().as_secs_f64() < seconds || calls < 3 {
        before();
        let t = Instant::now();
        f(calls);
        timed += t.elapsed();
        calls += 1;
    }
    timed.as_secs_f64() * 1e6 / (calls * frames) as f64
}

/// How the micro-benchmark's rows name pre-processing timed right after a forward pass of
/// M and K, on the next frames of the pool (as the element goes from one pass to the next).
pub const AFTER_PASS: &str = "right after a pass of M and K";

/// How the micro-benchmark's rows name the parts decision on K's fresh map.
pub const AFTER_K: &str = "right after K's forward pass";

/// Times the pieces of the analysis on their own (CPU): pre-processing per size and format
/// on one thread and over all of them (as the element's pass makes its inputs), each with
/// the same frames over and over and with the next frames of the pool right after a pass of
/// the models (as in the element, where it costs more), M and K with 1 and all threads, the
/// tensor normalisation of canonical images, the parts decision on its own and right after
/// K's forward pass.
pub fn micro(
    config: &DetectorConfig,
    sets: &[FrameSet],
    batches: &[usize],
    seconds: f64,
    threads: usize,
) -> anyhow::Result<Vec<MicroRow>> {
    let detector = Detector::load(config)?;
    let cores = match threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    } as i32;
    let _guard = tch::no_grad_guard();
    let mut rows = Vec::new();
    let mut push = |what: String, us: f64| {
        eprintln!("micro {what}: {us:.0} µs/frame");
        rows.push(MicroRow {
            what,
            us_per_frame: us,
        });
    };
    let m = detector.classifier().model();
    let k = detector.extractor().model();
    let (h, w) = m.input_size();
    let fork = (cores >= 2)
        .then(|| ForkJoin::new(cores as usize))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let models = SharedModels(m.module(), k.module());
    for &batch in batches {
        tch::set_num_threads(cores);
        let (m_in, k_in) = model_inputs(&detector, batch, sets.first())?;
        // A pass as the element runs small batches at depth 1 (one intra-op thread each): M
        // and K side by side over the fork's threads, or one after the other on this one.
        let pass = || match &fork {
            Some(fork) => side_by_side(fork, models, &m_in, &k_in),
            None => {
                let _ = forward_flushed(models.0, &m_in).expect("M");
                let _ = forward_flushed(models.1, &k_in).expect("K");
            }
        };
        for set in sets {
            let frames: Vec<_> = (0..batch)
                .map(|i| set.frames[i % set.frames.len()].as_frame())
                .collect();
            let name = format!(
                "preprocess {}x{} {} batch {batch}",
                set.width,
                set.height,
                set.format.gst_name()
            );
            let us = micro_time(seconds, batch, || {
                let _ = detector.model_inputs(&frames).expect("preprocess");
            });
            push(format!("{name}, {}", threads_named(1)), us);
            if let Some(fork) = &fork {
                let us = micro_time(seconds, batch, || {
                    let _ = detector
                        .model_inputs_on(&frames, Some(fork))
                        .expect("preprocess");
                });
                push(format!("{name}, {}", threads_named(cores)), us);
            }
            // As in the element: each batch the next frames of the pool, right after the
            // models' pass has filled the cores' caches with their weights and activations.
            let pool: Vec<_> = set.frames.iter().map(|f| f.as_frame()).collect();
            let batch_of = |call: usize| -> Vec<_> {
                (0..batch)
                    .map(|i| pool[(call * batch + i) % pool.len()].clone())
                    .collect()
            };
            tch::set_num_threads(1);
            let us = micro_time_after(seconds, batch, pass, |call| {
                let _ = detector.model_inputs(&batch_of(call)).expect("preprocess");
            });
            push(format!("{name}, {}, {AFTER_PASS}", threads_named(1)), us);
            if let Some(fork) = &fork {
                let us = micro_time_after(seconds, batch, pass, |call| {
                    let _ = detector
                        .model_inputs_on(&batch_of(call), Some(fork))
                        .expect("preprocess");
                });
                push(
                    format!("{name}, {}, {AFTER_PASS}", threads_named(cores)),
                    us,
                );
            }
            tch::set_num_threads(cores);
        }
        let images = Tensor::rand([batch as i64, 3, h, w], (Kind::Float, Device::Cpu));
        let k_out = k.forward_prepared(&k_in).map_err(anyhow::Error::msg)?;
        let mut counts = vec![1, cores];
        counts.dedup();
        for threads in counts {
            tch::set_num_threads(threads);
            let us = micro_time(seconds, batch, || {
                let _ = m.forward_prepared(&m_in).expect("M");
            });
            push(
                format!("M forward batch {batch}, {}", threads_named(threads)),
                us,
            );
            let us = micro_time(seconds, batch, || {
                let _ = k.forward_prepared(&k_in).expect("K");
            });
            push(
                format!("K forward batch {batch}, {}", threads_named(threads)),
                us,
            );
            let us = micro_time(seconds, batch, || {
                let _ = m.forward_prepared(&m_in).expect("M");
                let _ = k.forward_prepared(&k_in).expect("K");
            });
            push(
                format!("M then K batch {batch}, {}", threads_named(threads)),
                us,
            );
        }
        tch::set_num_threads(cores);
        let us = micro_time(seconds, batch, || {
            let _ = m.prepare(&images);
            let _ = k.prepare(&images);
        });
        push(
            format!("canonical images to M's and K's inputs (tensor ops) batch {batch}"),
            us,
        );
        let us = micro_time(seconds, batch, || {
            let _ = detector.extractor().decide(&k_out);
        });
        push(format!("parts decision batch {batch}"), us);
        // As in the element: K's fresh map (K on one thread), decided on the thread that
        // ran K.
        tch::set_num_threads(1);
        let fresh = std::cell::Cell::new(None);
        let us = micro_time_after(
            seconds,
            batch,
            || fresh.set(Some(k.forward_prepared(&k_in).expect("K"))),
            |_| {
                let out = fresh.take().expect("K's map");
                let _ = detector.extractor().decide(&out);
            },
        );
        push(format!("parts decision batch {batch}, {AFTER_K}"), us);
        tch::set_num_threads(cores);
    }
    Ok(rows)
}

/// The median of `values` (`NaN` when empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Per device, input size, batch and depth, over the formats: the element/floor and
/// element/reference ratios (median, range, rows reaching the targets). One row's ratio
/// moves with this machine's speed drift; the medians over several rows much less.
fn summary(s: &mut String, rows: &[ElementRow]) {
    let mut groups: Vec<(String, usize, usize, usize, usize)> = rows
        .iter()
        .map(|e| (e.device.clone(), e.width, e.height, e.batch, e.depth))
        .collect();
    groups.sort();
    groups.dedup();
    if groups.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n### Summary over the formats (element/floor target 0.95, element/reference target 2)\n\n| device | input | batch | depth | formats | element/floor median | range | rows >= 0.95 | element/reference median | range | rows >= 2 |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (device, w, h, batch, depth) in groups {
        let of_group: Vec<&ElementRow> = rows
            .iter()
            .filter(|e| {
                e.device == device && (e.width, e.height, e.batch, e.depth) == (w, h, batch, depth)
            })
            .collect();
        let ratios: Vec<f64> = of_group.iter().map(|e| e.ratio).collect();
        let vs: Vec<f64> = of_group.iter().filter_map(|e| e.vs_reference).collect();
        let range = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if v.is_empty() {
                "-".to_owned()
            } else {
                format!("{lo:.2}-{hi:.2}")
            }
        };
        let reaching =
            |v: &[f64], t: f64| format!("{}/{}", v.iter().filter(|&&x| x >= t).count(), v.len());
        let _ = writeln!(
            s,
            "| {device} | {w}x{h} | {batch} | {depth} | {} | {:.3} | {} | {} | {} | {} | {} |",
            of_group.len(),
            median(ratios.clone()),
            range(&ratios),
            reaching(&ratios, 0.95),
            if vs.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.2}", median(vs.clone()))
            },
            range(&vs),
            reaching(&vs, 2.0),
        );
    }
}
