//! Implementation of the `unmask` element.
//!
//! The element is an always-in-place `GstBaseTransform` that overrides `submit_input_buffer`
//! and `generate_output`: input buffers are taken from the base class after its QoS and
//! renegotiation handling and put in our own queues.
//!
//! - `sync`: buffers wait in `pending` until `batch-size` of them are due for analysis (or a
//!   serialized event / EOS drains them), are analysed together on the streaming thread, get
//!   their `UnmaskMeta` and move to `ready`, from which `generate_output` hands them out.
//! - `async`: each due buffer is offered (by reference, no copy) to a worker thread through a
//!   bounded channel and goes straight to `ready`; when the channel is full the frame is not
//!   analysed (`frames-dropped`). Finished verdicts wait in `Shared::finished` and ride on the
//!   next outgoing buffers, one per buffer.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;

use super::{ALERT_MESSAGE, Mode, PostMessages, Scaling, VERDICT_MESSAGE};
use crate::detector::{Detector, DetectorConfig, DetectorError, FALLBACK_THRESHOLD};
use crate::meta::UnmaskMeta;
use crate::model::ModelError;
use crate::paths;
use crate::preprocess::{Frame, PixelFormat, Plane, YuvColor, YuvMatrix};
use crate::similarity::Verdict;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "unmask",
        gst::DebugColorFlags::empty(),
        Some("UnMask adversarial frame detector"),
    )
});

const DEFAULT_VARIANT: &str = paths::DEFAULT_VARIANT;
const DEFAULT_DEVICE: &str = "auto";
const FROM_MODEL: f64 = -1.0;
const DEFAULT_INTERVAL: u32 = 1;
const DEFAULT_BATCH_SIZE: u32 = 1;
const MAX_BATCH_SIZE: u32 = 256;
const DEFAULT_THREADS: u32 = 0;
const MAX_THREADS: u32 = 1024;

/// Locks a mutex, ignoring poisoning (a panic elsewhere must not spread).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct Settings {
    classifier: Option<String>,
    extractor: Option<String>,
    knowledge: Option<String>,
    class_set: Option<String>,
    variant: String,
    device: String,
    threshold: f64,
    min_confidence: f64,
    min_area: f64,
    scaling: Scaling,
    interval: u32,
    mode: Mode,
    batch_size: u32,
    post_messages: PostMessages,
    threads: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            classifier: None,
            extractor: None,
            knowledge: None,
            class_set: None,
            variant: DEFAULT_VARIANT.into(),
            device: DEFAULT_DEVICE.into(),
            threshold: FROM_MODEL,
            min_confidence: FROM_MODEL,
            min_area: FROM_MODEL,
            scaling: Scaling::default(),
            interval: DEFAULT_INTERVAL,
            mode: Mode::default(),
            batch_size: DEFAULT_BATCH_SIZE,
            post_messages: PostMessages::default(),
            threads: DEFAULT_THREADS,
        }
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn from_model(v: f64) -> Option<f32> {
    (v >= 0.0).then_some(v as f32)
}

impl Settings {
    /// The detector configuration, with unset paths resolved to the shipped models.
    fn detector_config(&self) -> DetectorConfig {
        let class_set = non_empty(&self.class_set);
        DetectorConfig {
            classifier: non_empty(&self.classifier).map_or_else(
                || {
                    paths::default_classifier(
                        class_set.unwrap_or(paths::DEFAULT_CLASS_SET),
                        &self.variant,
                    )
                },
                PathBuf::from,
            ),
            extractor: non_empty(&self.extractor)
                .map_or_else(paths::default_extractor, PathBuf::from),
            knowledge: non_empty(&self.knowledge)
                .map_or_else(paths::default_knowledge, PathBuf::from),
            class_set: class_set.map(str::to_owned),
            device: self.device.clone(),
            threshold: from_model(self.threshold),
            min_area: from_model(self.min_area),
            min_confidence: from_model(self.min_confidence),
            scaling: self.scaling.into(),
        }
    }

    fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n as usize,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Stats {
    seen: u64,
    analysed: u64,
    flagged: u64,
    dropped: u64,
    latency_sum: Duration,
}

/// What the streaming thread shares with the async worker.
#[derive(Debug, Default)]
struct Shared {
    stats: Mutex<Stats>,
    /// Async mode: verdicts waiting for a buffer to ride on.
    finished: Mutex<VecDeque<UnmaskMeta>>,
    /// Async mode: the worker hit an error (already posted); the stream stops.
    failed: AtomicBool,
}

impl Shared {
    fn record(&self, metas: &[UnmaskMeta]) {
        let mut stats = lock(&self.stats);
        for m in metas {
            stats.analysed += 1;
            stats.flagged += u64::from(m.verdict.adversarial);
            stats.latency_sum += m.latency;
        }
    }
}

/// The negotiated input format, as the pre-processor needs it.
#[derive(Debug)]
struct VideoConfig {
    info: gst_video::VideoInfo,
    format: PixelFormat,
    color: YuvColor,
}

impl VideoConfig {
    fn new(info: gst_video::VideoInfo) -> Result<Self, String> {
        let format = PixelFormat::from_gst_name(info.format().to_str())
            .ok_or_else(|| format!("unsupported format {}", info.format()))?;
        let colorimetry = info.colorimetry();
        let matrix = match colorimetry.matrix() {
            gst_video::VideoColorMatrix::Bt709 | gst_video::VideoColorMatrix::Bt2020 => {
                YuvMatrix::Bt709
            }
            _ => YuvMatrix::Bt601,
        };
        let color = YuvColor {
            matrix,
            full_range: colorimetry.range() == gst_video::VideoColorRange::Range0_255,
        };
        Ok(Self {
            info,
            format,
            color,
        })
    }

    /// Borrows a mapped frame's planes.
    fn frame<'a>(
        &self,
        map: &'a gst_video::VideoFrameRef<&gst::BufferRef>,
    ) -> Result<Frame<'a>, String> {
        let planes = (0..map.n_planes())
            .map(|i| {
                let stride = usize::try_from(map.plane_stride()[i as usize])
                    .map_err(|_| format!("plane {i} has a negative stride"))?;
                let data = map.plane_data(i).map_err(|e| e.to_string())?;
                Ok(Plane { data, stride })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Frame {
            format: self.format,
            width: map.width() as usize,
            height: map.height() as usize,
            planes,
            color: self.color,
        })
    }
}

/// Runs the detector on frames, splitting and padding to the models' fixed batch if any.
fn analyse_frames(detector: &Detector, frames: &[Frame<'_>]) -> Result<Vec<Verdict>, String> {
    let Some(fixed) = detector.max_batch().map(|n| n.max(1) as usize) else {
        return detector.analyse_frames(frames).map_err(|e| e.to_string());
    };
    let mut verdicts = Vec::with_capacity(frames.len());
    for chunk in frames.chunks(fixed) {
        let mut padded = chunk.to_vec();
        while padded.len() < fixed {
            padded.push(chunk[chunk.len() - 1].clone());
        }
        let mut v = detector
            .analyse_frames(&padded)
            .map_err(|e| e.to_string())?;
        v.truncate(chunk.len());
        verdicts.extend(v);
    }
    Ok(verdicts)
}

/// Maps buffers and analyses them as one batch; returns the verdicts and the time taken.
fn analyse_buffers(
    detector: &Detector,
    video: &VideoConfig,
    buffers: &[&gst::BufferRef],
) -> Result<(Vec<Verdict>, Duration), String> {
    let start = Instant::now();
    let maps = buffers
        .iter()
        .map(|b| {
            gst_video::VideoFrameRef::from_buffer_ref_readable(b, &video.info)
                .map_err(|e| format!("cannot map a buffer as {:?}: {e}", video.info))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let frames = maps
        .iter()
        .map(|m| video.frame(m))
        .collect::<Result<Vec<_>, _>>()?;
    let verdicts = analyse_frames(detector, &frames)?;
    Ok((verdicts, start.elapsed()))
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown error");
    format!("panic: {text}")
}

/// Posts the verdict on the bus if `post` asks for it.
fn post_verdict(element: &super::Unmask, meta: &UnmaskMeta, post: PostMessages) {
    let adversarial = meta.verdict.adversarial;
    let wanted = match post {
        PostMessages::None => false,
        PostMessages::Adversarial => adversarial,
        PostMessages::All => true,
    };
    if wanted {
        let name = if adversarial {
            ALERT_MESSAGE
        } else {
            VERDICT_MESSAGE
        };
        let msg = gst::message::Element::builder(meta.to_structure(name))
            .src(element)
            .build();
        if element.post_message(msg).is_err() {
            gst::debug!(CAT, obj = element, "no bus to post the verdict on");
        }
    }
}

/// A frame handed to the async worker.
struct Job {
    buffer: gst::Buffer,
    video: Arc<VideoConfig>,
}

/// The async worker thread.
struct Worker {
    jobs: crossbeam_channel::Sender<Job>,
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Worker {
    /// Stops the worker: with `cancel`, queued frames are dropped; otherwise they are analysed
    /// first. Waits for the thread to end.
    fn finish(self, cancel: bool) {
        if cancel {
            self.cancel.store(true, Ordering::SeqCst);
        }
        drop(self.jobs);
        if self.handle.join().is_err() {
            gst::error!(CAT, "the unmask worker thread panicked");
        }
    }
}

/// Everything the worker thread needs.
struct WorkerContext {
    detector: Arc<Mutex<Detector>>,
    shared: Arc<Shared>,
    cancel: Arc<AtomicBool>,
    element: glib::WeakRef<super::Unmask>,
    batch: usize,
    threads: usize,
}

impl WorkerContext {
    fn run(self, jobs: crossbeam_channel::Receiver<Job>) {
        tch::set_num_threads(self.threads as i32);
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            while batch.len() < self.batch {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if self.cancel.load(Ordering::SeqCst) {
                continue;
            }
            // Frames of one negotiated format at a time.
            let mut start = 0;
            while start < batch.len() {
                let video = batch[start].video.clone();
                let end = start
                    + batch[start..]
                        .iter()
                        .take_while(|j| Arc::ptr_eq(&j.video, &video))
                        .count();
                let run = &batch[start..end];
                start = end;
                let buffers: Vec<&gst::BufferRef> = run.iter().map(|j| j.buffer.as_ref()).collect();
                // libtorch errors in pre-processing surface as panics: keep them on this side.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    analyse_buffers(&lock(&self.detector), &video, &buffers)
                }))
                .unwrap_or_else(|panic| Err(panic_message(panic.as_ref())));
                let element = self.element.upgrade();
                match result {
                    Ok((verdicts, latency)) => {
                        let metas: Vec<UnmaskMeta> = verdicts
                            .into_iter()
                            .zip(run)
                            .map(|(verdict, job)| UnmaskMeta {
                                verdict,
                                pts: job.buffer.pts(),
                                latency,
                            })
                            .collect();
                        self.shared.record(&metas);
                        if let Some(element) = &element {
                            let post = lock(&element.imp().settings).post_messages;
                            for m in &metas {
                                post_verdict(element, m, post);
                            }
                        }
                        lock(&self.shared.finished).extend(metas);
                    }
                    Err(e) => {
                        self.shared.failed.store(true, Ordering::SeqCst);
                        if let Some(element) = &element {
                            gst::element_error!(
                                element,
                                gst::StreamError::Failed,
                                ("Analysis failed: {}", e)
                            );
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// Streaming state, from `start` to `stop`.
struct State {
    detector: Arc<Mutex<Detector>>,
    /// Threshold from the classifier's calibration (for `threshold = -1`).
    calibrated_threshold: f32,
    mode: Mode,
    batch_size: usize,
    threads: usize,
    video: Option<Arc<VideoConfig>>,
    /// Sync mode: buffers waiting for their batch, with whether each is to be analysed.
    pending: VecDeque<(gst::Buffer, bool)>,
    pending_analyse: usize,
    /// Buffers ready to be pushed, in order.
    ready: VecDeque<gst::Buffer>,
    /// Frames since start or the last flush (for `interval`).
    frame_index: u64,
    worker: Option<Worker>,
    /// The streaming thread on which the libtorch thread count was last set.
    threads_applied: Option<ThreadId>,
}

impl State {
    fn apply_threads(&mut self) {
        let me = std::thread::current().id();
        if self.threads_applied != Some(me) {
            tch::set_num_threads(self.threads as i32);
            self.threads_applied = Some(me);
        }
    }
}

/// What the latency query needs, kept apart from the streaming state.
#[derive(Debug, Default)]
struct Latency {
    sync: bool,
    batch_size: u64,
    /// Reported (conservative) analysis time of one batch.
    analysis: Option<gst::ClockTime>,
    frame_duration: Option<gst::ClockTime>,
}

#[derive(Default)]
pub struct Unmask {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    shared: Arc<Shared>,
    latency: Mutex<Latency>,
}

impl Unmask {
    /// Latency added in sync mode: the analysis plus the time to fill a batch.
    fn added_latency(&self) -> gst::ClockTime {
        let interval = u64::from(lock(&self.settings).interval);
        let l = lock(&self.latency);
        if !l.sync {
            return gst::ClockTime::ZERO;
        }
        let batching = l.frame_duration.map_or(gst::ClockTime::ZERO, |d| {
            d * l.batch_size.saturating_sub(1) * interval
        });
        l.analysis.unwrap_or(gst::ClockTime::ZERO) + batching
    }

    fn post_latency(&self) {
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
    }

    /// Raises the reported analysis latency if an analysis took longer.
    fn note_analysis_time(&self, elapsed: Duration) {
        let elapsed = gst::ClockTime::try_from(elapsed).unwrap_or(gst::ClockTime::MAX);
        let raised = {
            let mut l = lock(&self.latency);
            if l.sync && l.analysis.is_none_or(|a| elapsed > a) {
                let new = elapsed + elapsed / 2;
                gst::info!(
                    CAT,
                    imp = self,
                    "analysis took {elapsed}, raising reported latency to {new}"
                );
                l.analysis = Some(new);
                true
            } else {
                false
            }
        };
        if raised {
            self.post_latency();
        }
    }

    fn fail(&self, what: &str, error: &str) -> gst::FlowError {
        gst::element_imp_error!(self, gst::StreamError::Failed, ("{}: {}", what, error));
        gst::FlowError::Error
    }

    /// Sync mode: analyses the pending buffers and moves them (in order) to `ready`.
    fn process_pending(&self, state: &mut State) -> Result<(), gst::FlowError> {
        if state.pending_analyse > 0 {
            let video = state.video.clone().ok_or(gst::FlowError::NotNegotiated)?;
            state.apply_threads();
            let result = {
                let buffers: Vec<&gst::BufferRef> = state
                    .pending
                    .iter()
                    .filter(|(_, analyse)| *analyse)
                    .map(|(b, _)| b.as_ref())
                    .collect();
                analyse_buffers(&lock(&state.detector), &video, &buffers)
            };
            let (verdicts, latency) = result.map_err(|e| self.fail("Analysis failed", &e))?;
            let mut verdicts = verdicts.into_iter();
            let mut metas = Vec::with_capacity(state.pending_analyse);
            for (buffer, analyse) in state.pending.iter_mut() {
                if !*analyse {
                    continue;
                }
                let Some(verdict) = verdicts.next() else {
                    break;
                };
                let meta = UnmaskMeta {
                    verdict,
                    pts: buffer.pts(),
                    latency,
                };
                meta.add(buffer.make_mut())
                    .map_err(|e| self.fail("Cannot attach UnmaskMeta", &e.to_string()))?;
                metas.push(meta);
            }
            self.shared.record(&metas);
            self.note_analysis_time(latency);
            let post = lock(&self.settings).post_messages;
            let obj = self.obj();
            for m in &metas {
                post_verdict(&obj, m, post);
            }
        }
        state.pending_analyse = 0;
        let State { pending, ready, .. } = state;
        ready.extend(pending.drain(..).map(|(b, _)| b));
        Ok(())
    }

    fn spawn_worker(&self, state: &State) -> Result<Worker, String> {
        let (jobs, rx) = crossbeam_channel::bounded(state.batch_size);
        let cancel = Arc::new(AtomicBool::new(false));
        let ctx = WorkerContext {
            detector: state.detector.clone(),
            shared: self.shared.clone(),
            cancel: cancel.clone(),
            element: self.obj().downgrade(),
            batch: state.batch_size,
            threads: state.threads,
        };
        let handle = std::thread::Builder::new()
            .name("unmask-worker".into())
            .spawn(move || ctx.run(rx))
            .map_err(|e| format!("cannot start the worker thread: {e}"))?;
        Ok(Worker {
            jobs,
            cancel,
            handle,
        })
    }

    /// Async mode: offers a buffer to the worker (counting a drop if it is busy).
    fn offer(&self, state: &mut State, buffer: &gst::Buffer) -> Result<(), gst::FlowError> {
        let video = state.video.clone().ok_or(gst::FlowError::NotNegotiated)?;
        if state.worker.is_none() {
            let worker = self
                .spawn_worker(state)
                .map_err(|e| self.fail("Cannot analyse", &e))?;
            state.worker = Some(worker);
        }
        let Some(worker) = &state.worker else {
            return Err(gst::FlowError::Error);
        };
        let job = Job {
            buffer: buffer.clone(),
            video,
        };
        match worker.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                gst::trace!(CAT, imp = self, "worker busy, not analysing {buffer:?}");
                lock(&self.shared.stats).dropped += 1;
                Ok(())
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                Err(self.fail("Cannot analyse", "the analysis thread has stopped"))
            }
        }
    }

    /// Drops everything queued (flush, stop). Stops the worker without analysing its queue.
    fn discard(&self) {
        let worker = {
            let mut guard = lock(&self.state);
            guard.as_mut().and_then(|state| {
                state.pending.clear();
                state.pending_analyse = 0;
                state.ready.clear();
                state.frame_index = 0;
                state.worker.take()
            })
        };
        if let Some(worker) = worker {
            worker.finish(true);
        }
        lock(&self.shared.finished).clear();
        self.shared.failed.store(false, Ordering::SeqCst);
    }

    /// Pushes out every held buffer before a serialized event; at EOS also lets the async
    /// worker finish its queue (its verdicts are still posted as messages).
    fn drain(&self, eos: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (buffers, worker) = {
            let mut guard = lock(&self.state);
            let Some(state) = guard.as_mut() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            self.process_pending(state)?;
            let worker = if eos { state.worker.take() } else { None };
            (std::mem::take(&mut state.ready), worker)
        };
        let src = self.obj().static_pad("src").ok_or(gst::FlowError::Error)?;
        for buffer in buffers {
            src.push(buffer)?;
        }
        if let Some(worker) = worker {
            worker.finish(false);
            let left = std::mem::take(&mut *lock(&self.shared.finished));
            if !left.is_empty() {
                gst::debug!(
                    CAT,
                    imp = self,
                    "{} verdicts finished after the last buffer",
                    left.len()
                );
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn load_error(&self, e: &DetectorError, config: &DetectorConfig) -> gst::ErrorMessage {
        let debug = format!("configuration: {config:?}");
        match e {
            DetectorError::Model(ModelError::NotFound(_) | ModelError::NoModelInfo { .. }) => {
                gst::error_msg!(gst::ResourceError::NotFound, ("{}", e), ["{}", debug])
            }
            DetectorError::Model(ModelError::Load { .. }) => {
                gst::error_msg!(gst::ResourceError::OpenRead, ("{}", e), ["{}", debug])
            }
            DetectorError::Device(_) => {
                gst::error_msg!(gst::LibraryError::Init, ("{}", e), ["{}", debug])
            }
            _ => gst::error_msg!(gst::ResourceError::Settings, ("{}", e), ["{}", debug]),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for Unmask {
    const NAME: &'static str = "GstUnmask";
    type Type = super::Unmask;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for Unmask {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("classifier")
                    .nick("Classifier")
                    .blurb(
                        "Classifier M (TorchScript file with a .modelinfo sidecar); unset: the \
                         shipped parts-world classifier m-<class-set>-<variant>.pt",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("extractor")
                    .nick("Part extractor")
                    .blurb(
                        "Part extractor K (TorchScript file with a .modelinfo sidecar); unset: \
                         the shipped parts-world extractor k-parts.pt",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("knowledge")
                    .nick("Knowledge base")
                    .blurb(
                        "Knowledge base JSON (expected parts per class); unset: the shipped \
                         parts-world knowledge.json. Shipped models are looked up in \
                         $UNMASK_MODELS_DIR, next to the plugin, or in <prefix>/share/unmask/models",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("class-set")
                    .nick("Class set")
                    .blurb(
                        "Class set of the knowledge base the classifier must cover exactly; also \
                         selects the shipped classifier (unset: no check, shipped classifier for CS5a)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("variant")
                    .nick("Classifier variant")
                    .blurb("Variant of the shipped classifier: baseline or denoise")
                    .default_value(Some(DEFAULT_VARIANT))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("device")
                    .nick("Device")
                    .blurb("Where the models run: cpu, cuda, cuda:N or auto (CUDA if available)")
                    .default_value(Some(DEFAULT_DEVICE))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("threshold")
                    .nick("Threshold")
                    .blurb(
                        "A frame is flagged when the Jaccard similarity of found and expected \
                         parts is below this (-1: the classifier's calibration)",
                    )
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(FROM_MODEL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("min-confidence")
                    .nick("Minimum part confidence")
                    .blurb(
                        "Segmentation extractors: mean confidence a part needs to count as \
                         found (-1: from the extractor's modelinfo)",
                    )
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(FROM_MODEL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("min-area")
                    .nick("Minimum part area")
                    .blurb(
                        "Segmentation extractors: fraction of the image a part must cover to \
                         count as found (-1: from the extractor's modelinfo)",
                    )
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(FROM_MODEL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("scaling", Scaling::default())
                    .nick("Scaling")
                    .blurb("How the frame's aspect ratio is fitted to the models' input")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("interval")
                    .nick("Interval")
                    .blurb("Analyse every N-th frame (the others pass without a verdict)")
                    .minimum(1)
                    .default_value(DEFAULT_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", Mode::default())
                    .nick("Mode")
                    .blurb(
                        "sync: frames wait for their verdict; async: frames flow on at once, a \
                         worker analyses what it can and verdicts ride on later buffers",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb(
                        "Frames analysed together (sync: frames wait for a full batch; async: \
                         the worker takes up to this many and queues as many)",
                    )
                    .minimum(1)
                    .maximum(MAX_BATCH_SIZE)
                    .default_value(DEFAULT_BATCH_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "post-messages",
                    PostMessages::default(),
                )
                .nick("Post messages")
                .blurb(
                    "Which verdicts are posted as element messages (unmask-alert for flagged \
                     frames, unmask-verdict for the others)",
                )
                .mutable_playing()
                .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb(
                        "libtorch intra-op threads on the CPU (process-wide; 0: one per \
                         available core)",
                    )
                    .maximum(MAX_THREADS)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-seen")
                    .nick("Frames seen")
                    .blurb("Frames received since the element started")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-analysed")
                    .nick("Frames analysed")
                    .blurb("Frames that got a verdict")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-flagged")
                    .nick("Frames flagged")
                    .blurb("Frames flagged adversarial")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-dropped")
                    .nick("Frames dropped")
                    .blurb("Async mode: frames not analysed because the worker was busy")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("mean-latency")
                    .nick("Mean latency")
                    .blurb(
                        "Mean duration in nanoseconds of the analysis behind each verdict \
                         (a batch counts once per frame)",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        let name = pspec.name();
        gst::debug!(CAT, imp = self, "setting {name} to {value:?}");
        match name {
            "classifier" => settings.classifier = value.get().unwrap_or_default(),
            "extractor" => settings.extractor = value.get().unwrap_or_default(),
            "knowledge" => settings.knowledge = value.get().unwrap_or_default(),
            "class-set" => settings.class_set = value.get().unwrap_or_default(),
            "variant" => {
                settings.variant = value
                    .get::<Option<String>>()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| DEFAULT_VARIANT.into())
            }
            "device" => {
                settings.device = value
                    .get::<Option<String>>()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| DEFAULT_DEVICE.into())
            }
            "threshold" => {
                settings.threshold = value.get().unwrap_or(FROM_MODEL);
                let threshold = settings.threshold;
                drop(settings);
                if let Some(state) = lock(&self.state).as_ref() {
                    let t = from_model(threshold).unwrap_or(state.calibrated_threshold);
                    if let Err(e) = lock(&state.detector).set_threshold(t) {
                        gst::warning!(CAT, imp = self, "{e}");
                    }
                }
            }
            "min-confidence" => settings.min_confidence = value.get().unwrap_or(FROM_MODEL),
            "min-area" => settings.min_area = value.get().unwrap_or(FROM_MODEL),
            "scaling" => settings.scaling = value.get().unwrap_or_default(),
            "interval" => {
                let old = std::mem::replace(
                    &mut settings.interval,
                    value.get().unwrap_or(DEFAULT_INTERVAL).max(1),
                );
                let changed = old != settings.interval;
                drop(settings);
                let batching = {
                    let l = lock(&self.latency);
                    l.sync && l.batch_size > 1
                };
                if changed && batching {
                    self.post_latency();
                }
            }
            "mode" => settings.mode = value.get().unwrap_or_default(),
            "batch-size" => settings.batch_size = value.get().unwrap_or(DEFAULT_BATCH_SIZE),
            "post-messages" => settings.post_messages = value.get().unwrap_or_default(),
            "threads" => settings.threads = value.get().unwrap_or(DEFAULT_THREADS),
            _ => gst::warning!(CAT, imp = self, "unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let stats = || lock(&self.shared.stats).clone();
        let settings = lock(&self.settings);
        match pspec.name() {
            "classifier" => settings.classifier.to_value(),
            "extractor" => settings.extractor.to_value(),
            "knowledge" => settings.knowledge.to_value(),
            "class-set" => settings.class_set.to_value(),
            "variant" => settings.variant.to_value(),
            "device" => settings.device.to_value(),
            "threshold" => settings.threshold.to_value(),
            "min-confidence" => settings.min_confidence.to_value(),
            "min-area" => settings.min_area.to_value(),
            "scaling" => settings.scaling.to_value(),
            "interval" => settings.interval.to_value(),
            "mode" => settings.mode.to_value(),
            "batch-size" => settings.batch_size.to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "threads" => settings.threads.to_value(),
            "frames-seen" => stats().seen.to_value(),
            "frames-analysed" => stats().analysed.to_value(),
            "frames-flagged" => stats().flagged.to_value(),
            "frames-dropped" => stats().dropped.to_value(),
            "mean-latency" => {
                let s = stats();
                let mean = match s.analysed {
                    0 => 0,
                    n => (s.latency_sum.as_nanos() / u128::from(n)) as u64,
                };
                mean.to_value()
            }
            name => {
                gst::warning!(CAT, imp = self, "unknown property {name}");
                glib::Value::from_type(pspec.value_type())
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_in_place(true);
        obj.set_passthrough(false);
        obj.set_qos(true);
    }
}

impl GstObjectImpl for Unmask {}

impl ElementImpl for Unmask {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "UnMask adversarial frame detector",
                "Filter/Analyzer/Video",
                "Flags frames whose classifier prediction disagrees with the object parts a \
                 part extractor finds (UnMask), corrects the label and attaches the verdict \
                 as UnmaskMeta; the video passes through unchanged",
                "The unmask developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let formats = PixelFormat::ALL.map(|f| f.gst_name());
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", gst::List::new(formats))
                .field("width", gst::IntRange::new(1, i32::MAX))
                .field("height", gst::IntRange::new(1, i32::MAX))
                .field(
                    "framerate",
                    gst::FractionRange::new(
                        gst::Fraction::new(0, 1),
                        gst::Fraction::new(i32::MAX, 1),
                    ),
                )
                .build();
            [gst::PadDirection::Src, gst::PadDirection::Sink]
                .into_iter()
                .map(|dir| {
                    let name = if dir == gst::PadDirection::Src {
                        "src"
                    } else {
                        "sink"
                    };
                    gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps)
                        .expect("valid pad template")
                })
                .collect()
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for Unmask {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let config = settings.detector_config();
        let threads = settings.threads();
        tch::set_num_threads(threads as i32);
        gst::info!(CAT, imp = self, "loading {config:?}");
        let detector = Detector::load(&config).map_err(|e| self.load_error(&e, &config))?;
        let calibrated_threshold = detector
            .classifier()
            .model()
            .info()
            .calibration
            .as_ref()
            .map_or(FALLBACK_THRESHOLD, |c| c.threshold);
        gst::info!(
            CAT,
            imp = self,
            "loaded on {:?}, threshold {}",
            detector.device(),
            detector.threshold()
        );
        let batch_size = settings.batch_size.max(1) as usize;
        *lock(&self.shared.stats) = Stats::default();
        lock(&self.shared.finished).clear();
        self.shared.failed.store(false, Ordering::SeqCst);
        *lock(&self.latency) = Latency {
            sync: settings.mode == Mode::Sync,
            batch_size: batch_size as u64,
            analysis: None,
            frame_duration: None,
        };
        *lock(&self.state) = Some(State {
            detector: Arc::new(Mutex::new(detector)),
            calibrated_threshold,
            mode: settings.mode,
            batch_size,
            threads,
            video: None,
            pending: VecDeque::new(),
            pending_analyse: 0,
            ready: VecDeque::new(),
            frame_index: 0,
            worker: None,
            threads_applied: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.discard();
        *lock(&self.state) = None;
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        gst::debug!(CAT, imp = self, "caps {incaps} -> {outcaps}");
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "invalid caps {incaps}"))?;
        let frame_duration = (info.fps().numer() > 0).then(|| {
            gst::ClockTime::SECOND
                .mul_div_ceil(info.fps().denom() as u64, info.fps().numer() as u64)
                .unwrap_or(gst::ClockTime::ZERO)
        });
        let video = Arc::new(VideoConfig::new(info).map_err(|e| gst::loggable_error!(CAT, "{e}"))?);
        let warm_up = {
            let mut guard = lock(&self.state);
            let state = guard
                .as_mut()
                .ok_or_else(|| gst::loggable_error!(CAT, "caps before start"))?;
            let changed = state.video.as_ref().is_none_or(|v| v.info != video.info);
            state.video = Some(video.clone());
            if changed && state.mode == Mode::Sync {
                // Time one full batch on a blank frame of this size, for the latency report.
                state.apply_threads();
                let data = vec![0u8; video.info.size()];
                let planes = (0..video.info.n_planes() as usize)
                    .map(|i| Plane {
                        data: &data[video.info.offset()[i]..],
                        stride: video.info.stride()[i].max(0) as usize,
                    })
                    .collect();
                let frame = Frame {
                    format: video.format,
                    width: video.info.width() as usize,
                    height: video.info.height() as usize,
                    planes,
                    color: video.color,
                };
                let frames = vec![frame; state.batch_size];
                let start = Instant::now();
                let result = analyse_frames(&lock(&state.detector), &frames);
                Some(result.map(|_| start.elapsed()))
            } else {
                None
            }
        };
        let mut post = false;
        {
            let mut l = lock(&self.latency);
            post |= l.frame_duration != frame_duration && l.batch_size > 1;
            l.frame_duration = frame_duration;
            match warm_up {
                Some(Ok(elapsed)) => {
                    let elapsed = gst::ClockTime::try_from(elapsed).unwrap_or(gst::ClockTime::MAX);
                    let new = (elapsed + elapsed / 2).max(gst::ClockTime::MSECOND);
                    gst::info!(
                        CAT,
                        imp = self,
                        "warm-up batch took {elapsed}, reporting {new}"
                    );
                    post |= l.analysis.is_none_or(|a| new > a);
                    l.analysis = Some(l.analysis.map_or(new, |a| a.max(new)));
                }
                Some(Err(e)) => {
                    drop(l);
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Failed,
                        ("Cannot analyse {} frames: {}", incaps, e)
                    );
                    return Err(gst::loggable_error!(CAT, "warm-up failed: {e}"));
                }
                None => {}
            }
        }
        if post {
            self.post_latency();
        }
        Ok(())
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Src && query.type_() == gst::QueryType::Latency {
            if !BaseTransformImplExt::parent_query(self, direction, query) {
                return false;
            }
            let extra = self.added_latency();
            if let gst::QueryViewMut::Latency(q) = query.view_mut() {
                let (live, min, max) = q.result();
                gst::debug!(
                    CAT,
                    imp = self,
                    "upstream latency {min}-{max:?}, adding {extra}"
                );
                q.set(live, min + extra, max.map(|m| m + extra));
            }
            return true;
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn propose_allocation(
        &self,
        decide_query: Option<&gst::query::Allocation>,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        if let Err(e) = self.parent_propose_allocation(decide_query, query) {
            gst::debug!(CAT, imp = self, "downstream allocation query: {e}");
        }
        if query
            .find_allocation_meta::<gst_video::VideoMeta>()
            .is_none()
        {
            query.add_allocation_meta::<gst_video::VideoMeta>(None);
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStart(_) | gst::EventView::FlushStop(_) => self.discard(),
            gst::EventView::Eos(_) => {
                if let Err(e) = self.drain(true) {
                    gst::debug!(CAT, imp = self, "draining at EOS: {e:?}");
                }
            }
            _ if event.is_serialized() => {
                if let Err(e) = self.drain(false) {
                    gst::debug!(CAT, imp = self, "draining before {event:?}: {e:?}");
                }
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn submit_input_buffer(
        &self,
        is_discont: bool,
        inbuf: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        lock(&self.shared.stats).seen += 1;
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(gst::FlowError::Error);
        }
        let ret = self.parent_submit_input_buffer(is_discont, inbuf)?;
        if ret != gst::FlowSuccess::Ok {
            // Dropped by QoS: late frames are not analysed.
            return Ok(ret);
        }
        let Some(mut buffer) = self.take_queued_buffer() else {
            return Ok(ret);
        };
        let interval = u64::from(lock(&self.settings).interval.max(1));
        let mut guard = lock(&self.state);
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let analyse = state.frame_index.is_multiple_of(interval);
        state.frame_index += 1;
        match state.mode {
            Mode::Sync => {
                state.pending.push_back((buffer, analyse));
                state.pending_analyse += usize::from(analyse);
                if state.pending_analyse == 0 || state.pending_analyse >= state.batch_size {
                    self.process_pending(state)?;
                }
            }
            Mode::Async => {
                if analyse {
                    self.offer(state, &buffer)?;
                }
                let finished = lock(&self.shared.finished).pop_front();
                if let Some(meta) = finished {
                    meta.add(buffer.make_mut())
                        .map_err(|e| self.fail("Cannot attach UnmaskMeta", &e.to_string()))?;
                }
                state.ready.push_back(buffer);
            }
        }
        Ok(ret)
    }

    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        let next = lock(&self.state).as_mut().and_then(|s| s.ready.pop_front());
        Ok(next.map_or(
            GenerateOutputSuccess::NoOutput,
            GenerateOutputSuccess::Buffer,
        ))
    }

    fn transform_ip(&self, _buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        // Unused: buffers go through submit_input_buffer/generate_output.
        Ok(gst::FlowSuccess::Ok)
    }
}
