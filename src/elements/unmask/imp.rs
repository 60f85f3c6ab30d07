//! Implementation of the `unmask` element.
//!
//! The element is an always-in-place `GstBaseTransform` that overrides `submit_input_buffer`
//! and `generate_output`: input buffers are taken from the base class after its QoS and
//! renegotiation handling and put in our own queues. The models run in a shared
//! [`Engine`](crate::engine) (one per configuration in the process, with its own worker
//! thread); the element maps frames, submits them and turns the engine's analyses into
//! verdicts with its own threshold.
//!
//! - `sync`: buffers wait in `pending` until `batch-size` of them are due for analysis (or a
//!   serialized event / EOS drains them); the streaming thread submits them as one request
//!   and moves them to `in_flight`. Once more than `pipeline-depth - 1` batches are in flight,
//!   it waits for the oldest one's answer, attaches each `UnmaskMeta` and moves its buffers
//!   to `ready`, from which `generate_output` hands them out (depth 1: each batch is answered
//!   before the next buffer is taken; depth 2: the next batch reaches the engine while the
//!   previous one is in the models).
//! - `async`: each due buffer is mapped and submitted (by reference, no copy) with a callback
//!   and goes straight to `ready`; submitting never blocks. At most `2 x batch-size` frames
//!   are in flight (one batch being analysed, one waiting); frames offered beyond that are not
//!   analysed (`frames-dropped`). Finished verdicts wait in `Shared::finished` and ride on the
//!   next outgoing buffers, one per buffer.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;

use super::{ALERT_MESSAGE, Mode, PostMessages, Scaling, VERDICT_MESSAGE};
use crate::detector::{DetectorConfig, DetectorError, FALLBACK_THRESHOLD};
use crate::engine::{self, Engine, EngineOptions, FrameSource, Generation, Request};
use crate::knowledge::KnowledgeBase;
use crate::meta::UnmaskMeta;
use crate::model::ModelError;
use crate::paths;
use crate::preprocess::{Frame, OwnedFrame, PixelFormat, Plane, YuvColor, YuvMatrix};
use crate::similarity::Thresholds;

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
const MAX_INTERVAL: u32 = 1_000_000;
const DEFAULT_BATCH_SIZE: u32 = 1;
const DEFAULT_PIPELINE_DEPTH: u32 = 1;
const MAX_PIPELINE_DEPTH: u32 = 8;
const MAX_BATCH_SIZE: u32 = 256;
const DEFAULT_THREADS: u32 = 0;
const MAX_THREADS: u32 = 1024;
const DEFAULT_SHARED_ENGINE: bool = true;
const DEFAULT_FREEZE_MODELS: bool = true;

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
    pipeline_depth: u32,
    post_messages: PostMessages,
    threads: u32,
    shared_engine: bool,
    freeze_models: bool,
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
            pipeline_depth: DEFAULT_PIPELINE_DEPTH,
            post_messages: PostMessages::default(),
            threads: DEFAULT_THREADS,
            shared_engine: DEFAULT_SHARED_ENGINE,
            freeze_models: DEFAULT_FREEZE_MODELS,
        }
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn from_model(v: f64) -> Option<f32> {
    (v >= 0.0).then_some(v as f32)
}

/// The thresholds frames are judged with: the `threshold` property when set, else the
/// engine's calibrated ones.
fn thresholds_in_use(threshold: f64, engine: &Engine) -> Thresholds {
    from_model(threshold).map_or_else(
        || engine.calibrated_thresholds().clone(),
        Thresholds::Global,
    )
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
            freeze: self.freeze_models,
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
    /// Element-side profile: mapping buffers, waiting for the engine (sync), turning analyses
    /// into verdicts, metas and messages.
    map: Duration,
    wait: Duration,
    attach: Duration,
}

/// What the streaming thread shares with the engine's callbacks.
#[derive(Debug, Default)]
struct Shared {
    stats: Mutex<Stats>,
    /// Async mode: verdicts waiting for a buffer to ride on.
    finished: Mutex<VecDeque<UnmaskMeta>>,
    /// Async mode: an analysis failed (already posted); the stream stops.
    failed: AtomicBool,
    /// Detection thresholds in use (`None` while stopped).
    thresholds: Mutex<Option<Arc<Thresholds>>>,
    /// Bumped on flush and stop: requests submitted before are skipped or ignored.
    generation: Arc<AtomicU64>,
    /// Async mode: frames submitted and not answered yet.
    in_flight: Mutex<usize>,
    answered: Condvar,
}

impl Shared {
    fn record(&self, metas: &[UnmaskMeta], attach: Duration) {
        let mut stats = lock(&self.stats);
        for m in metas {
            stats.analysed += 1;
            stats.flagged += u64::from(m.verdict.adversarial);
            stats.latency_sum += m.latency;
        }
        stats.attach += attach;
    }

    /// The thresholds in use (the fallback if stopped: such verdicts are discarded).
    fn thresholds(&self) -> Arc<Thresholds> {
        lock(&self.thresholds)
            .clone()
            .unwrap_or_else(|| Arc::new(Thresholds::Global(FALLBACK_THRESHOLD)))
    }

    fn set_thresholds(&self, t: Option<Thresholds>) {
        *lock(&self.thresholds) = t.map(Arc::new);
    }

    /// Waits until no async frame is in flight (at most `timeout`).
    fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut n = lock(&self.in_flight);
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = self
                .answered
                .wait_timeout(n, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
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

    /// Maps a buffer (holding a reference to it) for the engine.
    fn map(self: &Arc<Self>, buffer: &gst::Buffer) -> Result<MappedFrame, String> {
        let frame = gst_video::VideoFrame::from_buffer_readable(buffer.clone(), &self.info)
            .map_err(|_| format!("cannot map a buffer as {:?}", self.info))?;
        Ok(MappedFrame {
            frame,
            video: self.clone(),
        })
    }

    /// A black frame of this format for the warm-up.
    fn blank(&self) -> OwnedFrame {
        let mut f = OwnedFrame::blank(
            self.info.width() as usize,
            self.info.height() as usize,
            self.format,
        );
        f.color = self.color;
        f
    }
}

/// A readable mapping of a buffer, sent to the engine.
struct MappedFrame {
    frame: gst_video::VideoFrame<gst_video::video_frame::Readable>,
    video: Arc<VideoConfig>,
}

impl FrameSource for MappedFrame {
    fn frame(&self) -> Result<Frame<'_>, String> {
        let map = &self.frame;
        let planes = (0..map.n_planes())
            .map(|i| {
                let stride = usize::try_from(map.plane_stride()[i as usize])
                    .map_err(|_| format!("plane {i} has a negative stride"))?;
                let data = map.plane_data(i).map_err(|e| e.to_string())?;
                Ok(Plane { data, stride })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Frame {
            format: self.video.format,
            width: map.width() as usize,
            height: map.height() as usize,
            planes,
            color: self.video.color,
        })
    }
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

/// Streaming state, from `start` to `stop`.
struct State {
    engine: Arc<Engine>,
    kb: Arc<KnowledgeBase>,
    mode: Mode,
    batch_size: usize,
    video: Option<Arc<VideoConfig>>,
    /// Sync mode: batches handed to the engine at most at once.
    pipeline_depth: usize,
    /// Sync mode: buffers waiting for their batch, with whether each is to be analysed.
    pending: VecDeque<(gst::Buffer, bool)>,
    pending_analyse: usize,
    /// Sync mode: batches handed to the engine (or with nothing to analyse), oldest first.
    in_flight: VecDeque<InFlight>,
    /// Buffers ready to be pushed, in order.
    ready: VecDeque<gst::Buffer>,
    /// Frames since start or the last flush (for `interval`).
    frame_index: u64,
}

/// Sync mode: a batch of buffers and, if any of them is analysed, the engine's answer to come.
struct InFlight {
    buffers: Vec<(gst::Buffer, bool)>,
    answer: Option<engine::PendingAnalysis>,
}

/// What the latency query needs, kept apart from the streaming state.
#[derive(Debug, Default)]
struct Latency {
    sync: bool,
    batch_size: u64,
    pipeline_depth: u64,
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
    /// Latency added in sync mode: the analysis plus the time to fill a batch (and, with a
    /// deeper pipeline, the batches after it that are handed over before it is pushed).
    fn added_latency(&self) -> gst::ClockTime {
        let interval = u64::from(lock(&self.settings).interval);
        let l = lock(&self.latency);
        if !l.sync {
            return gst::ClockTime::ZERO;
        }
        // Saturating: a huge interval or frame duration must not overflow (or panic).
        let batching = l.frame_duration.map_or(gst::ClockTime::ZERO, |d| {
            let held = l
                .batch_size
                .saturating_mul(l.pipeline_depth.max(1))
                .saturating_sub(1);
            d.saturating_mul(held.saturating_mul(interval))
        });
        l.analysis
            .unwrap_or(gst::ClockTime::ZERO)
            .saturating_add(batching)
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

    /// Sync mode: hands the pending buffers to the engine as one batch, then waits for the
    /// oldest batches until at most `keep` are in the engine.
    fn process_pending(&self, state: &mut State, keep: usize) -> Result<(), gst::FlowError> {
        if !state.pending.is_empty() {
            let buffers: Vec<_> = state.pending.drain(..).collect();
            let answer = if state.pending_analyse > 0 {
                let video = state.video.clone().ok_or(gst::FlowError::NotNegotiated)?;
                let t0 = Instant::now();
                let frames = buffers
                    .iter()
                    .filter(|(_, analyse)| *analyse)
                    .map(|(b, _)| video.map(b).map(|f| Box::new(f) as Box<dyn FrameSource>))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| self.fail("Analysis failed", &e))?;
                lock(&self.shared.stats).map += t0.elapsed();
                // Waited for at once (depth 1): on this thread if the engine is idle.
                let answer = if keep == 0 {
                    state.engine.analyse_here(frames)
                } else {
                    state.engine.analyse_later(frames)
                }
                .map_err(|e| self.fail("Analysis failed", &e))?;
                Some(answer)
            } else {
                None
            };
            state.pending_analyse = 0;
            state.in_flight.push_back(InFlight { buffers, answer });
        }
        loop {
            let waiting = state
                .in_flight
                .iter()
                .filter(|f| f.answer.is_some())
                .count();
            let due = match state.in_flight.front() {
                None => false,
                // Nothing to wait for: out as soon as the batches before it are.
                Some(f) if f.answer.is_none() => true,
                Some(_) => waiting > keep,
            };
            if !due {
                return Ok(());
            }
            let batch = state.in_flight.pop_front().expect("a batch in flight");
            self.finish(state, batch)?;
        }
    }

    /// Sync mode: waits for a batch's answer, attaches the verdicts and moves its buffers
    /// (in order) to `ready`.
    fn finish(&self, state: &mut State, batch: InFlight) -> Result<(), gst::FlowError> {
        let InFlight {
            mut buffers,
            answer,
        } = batch;
        if let Some(answer) = answer {
            let t1 = Instant::now();
            // The engine drops the mappings before answering: the buffers are writable again.
            let (analyses, timing) = answer
                .wait()
                .map_err(|e| self.fail("Analysis failed", &e))?;
            let t2 = Instant::now();
            let thresholds = self.shared.thresholds();
            let mut analyses = analyses.into_iter();
            let mut metas = Vec::with_capacity(buffers.len());
            for (buffer, analyse) in buffers.iter_mut() {
                if !*analyse {
                    continue;
                }
                let Some(analysis) = analyses.next() else {
                    break;
                };
                let meta = UnmaskMeta {
                    verdict: analysis.verdict(&state.kb, &thresholds),
                    pts: buffer.pts(),
                    latency: timing.elapsed,
                };
                meta.add(buffer.make_mut())
                    .map_err(|e| self.fail("Cannot attach UnmaskMeta", &e.to_string()))?;
                metas.push(meta);
            }
            let post = lock(&self.settings).post_messages;
            if post != PostMessages::None {
                let obj = self.obj();
                for m in &metas {
                    post_verdict(&obj, m, post);
                }
            }
            self.shared.record(&metas, t2.elapsed());
            lock(&self.shared.stats).wait += t2 - t1;
            self.note_analysis_time(timing.elapsed);
        }
        state.ready.extend(buffers.into_iter().map(|(b, _)| b));
        Ok(())
    }

    /// Async mode: submits a buffer to the engine, or counts a drop if this stream already
    /// has `2 x batch-size` frames in flight. Never blocks on the analysis.
    fn offer(&self, state: &mut State, buffer: &gst::Buffer) -> Result<(), gst::FlowError> {
        let video = state.video.clone().ok_or(gst::FlowError::NotNegotiated)?;
        {
            let mut n = lock(&self.shared.in_flight);
            if *n >= 2 * state.batch_size {
                drop(n);
                gst::trace!(CAT, imp = self, "engine busy, not analysing {buffer:?}");
                lock(&self.shared.stats).dropped += 1;
                return Ok(());
            }
            *n += 1;
        }
        let t0 = Instant::now();
        let frame = match video.map(buffer) {
            Ok(f) => f,
            Err(e) => {
                self.answered(1);
                return Err(self.fail("Cannot analyse", &e));
            }
        };
        lock(&self.shared.stats).map += t0.elapsed();
        let shared = self.shared.clone();
        let kb = state.kb.clone();
        let element = self.obj().downgrade();
        let pts = buffer.pts();
        let generation = Generation::current(&self.shared.generation);
        let stale = generation.clone();
        let request = Request::new(vec![Box::new(frame)], move |answer, timing| {
            Self::async_answer(&shared, &kb, &element, pts, &stale, answer, timing);
        })
        .cancellable(generation);
        match state.engine.submit(request) {
            Ok(()) => Ok(()),
            Err(engine::SubmitError::Full) => {
                // Shared by many streams and full: not analysed, like a busy engine.
                self.answered(1);
                gst::trace!(CAT, imp = self, "engine queue full, not analysing {pts:?}");
                lock(&self.shared.stats).dropped += 1;
                Ok(())
            }
            Err(e) => {
                self.answered(1);
                Err(self.fail("Cannot analyse", &e.to_string()))
            }
        }
    }

    fn answered(&self, n: usize) {
        let mut f = lock(&self.shared.in_flight);
        *f = f.saturating_sub(n);
        self.shared.answered.notify_all();
    }

    /// Async mode, on the engine's thread: turns the answer into a verdict for a later buffer.
    fn async_answer(
        shared: &Shared,
        kb: &KnowledgeBase,
        element: &glib::WeakRef<super::Unmask>,
        pts: Option<gst::ClockTime>,
        generation: &Generation,
        answer: engine::Answer,
        timing: engine::Timing,
    ) {
        let t0 = Instant::now();
        let element = element.upgrade();
        if !generation.is_stale() {
            match answer.map(|mut a| a.pop()) {
                Ok(Some(analysis)) => {
                    let meta = UnmaskMeta {
                        verdict: analysis.verdict(kb, &shared.thresholds()),
                        pts,
                        latency: timing.elapsed,
                    };
                    if let Some(element) = &element {
                        let post = lock(&element.imp().settings).post_messages;
                        post_verdict(element, &meta, post);
                    }
                    lock(&shared.finished).push_back(meta.clone());
                    shared.record(&[meta], t0.elapsed());
                }
                Ok(None) => {}
                Err(e) => {
                    shared.failed.store(true, Ordering::SeqCst);
                    if let Some(element) = &element {
                        gst::element_error!(
                            element,
                            gst::StreamError::Failed,
                            ("Analysis failed: {}", e)
                        );
                    }
                }
            }
        }
        let mut n = lock(&shared.in_flight);
        *n = n.saturating_sub(1);
        shared.answered.notify_all();
    }

    /// Drops everything queued (flush, stop); async frames in flight are cancelled and waited
    /// for.
    fn discard(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(state) = lock(&self.state).as_mut() {
            state.pending.clear();
            state.pending_analyse = 0;
            // Abandoned: the engine still analyses them, nobody waits for the answers.
            state.in_flight.clear();
            state.ready.clear();
            state.frame_index = 0;
        }
        if !self.shared.wait_idle(Duration::from_secs(30)) {
            gst::warning!(CAT, imp = self, "frames still in flight after 30 s");
        }
        lock(&self.shared.finished).clear();
        self.shared.failed.store(false, Ordering::SeqCst);
    }

    /// Pushes out every held buffer before a serialized event; at EOS also waits for the
    /// async frames in flight (their verdicts are still posted as messages).
    fn drain(&self, eos: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        let buffers = {
            let mut guard = lock(&self.state);
            let Some(state) = guard.as_mut() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            self.process_pending(state, 0)?;
            std::mem::take(&mut state.ready)
        };
        let src = self.obj().static_pad("src").ok_or(gst::FlowError::Error)?;
        for buffer in buffers {
            src.push(buffer)?;
        }
        if eos {
            if !self.shared.wait_idle(Duration::from_secs(60)) {
                gst::warning!(CAT, imp = self, "frames still in flight at EOS after 60 s");
            }
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

    /// The `stats` property: counters and the per-stage profile.
    fn stats_structure(&self) -> gst::Structure {
        let s = lock(&self.shared.stats).clone();
        let engine = lock(&self.state).as_ref().map(|st| st.engine.clone());
        let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
        let mut b = gst::Structure::builder("unmask-stats")
            .field("frames-seen", s.seen)
            .field("frames-analysed", s.analysed)
            .field("frames-flagged", s.flagged)
            .field("frames-dropped", s.dropped)
            .field("latency-ns", ns(s.latency_sum))
            .field("map-ns", ns(s.map))
            .field("wait-ns", ns(s.wait))
            .field("attach-ns", ns(s.attach));
        if let Some(engine) = engine {
            let e = engine.stats();
            b = b
                .field("engine-shared", engine.is_shared())
                .field("engine-users", (Arc::strong_count(&engine) - 1) as u32)
                .field("engine-requests", e.requests)
                .field("engine-batches", e.batches)
                .field("engine-frames", e.frames)
                .field("engine-largest-batch", e.largest_batch as u32)
                .field("engine-prepared-ahead", e.prepared_ahead)
                .field("engine-on-caller", e.on_caller)
                .field("queue-ns", ns(e.stages.queue))
                .field("preprocess-ns", ns(e.stages.preprocess))
                .field("classifier-ns", ns(e.stages.classifier))
                .field("extractor-ns", ns(e.stages.extractor))
                .field("parts-ns", ns(e.stages.parts));
        }
        b.build()
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
                    .maximum(MAX_INTERVAL)
                    .default_value(DEFAULT_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", Mode::default())
                    .nick("Mode")
                    .blurb(
                        "sync: frames wait for their verdict; async: frames flow on at once, the \
                         engine analyses what it can and verdicts ride on later buffers",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb(
                        "Frames analysed together (sync: frames wait for a full batch; async: \
                         up to twice this many frames in flight). The shared engine may batch \
                         frames of several streams together",
                    )
                    .minimum(1)
                    .maximum(MAX_BATCH_SIZE)
                    .default_value(DEFAULT_BATCH_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("pipeline-depth")
                    .nick("Pipeline depth")
                    .blurb(
                        "Sync mode: batches handed to the engine before the oldest is pushed. \
                         1: each batch is analysed before the next buffer is taken; 2 or more: \
                         the next batch is pre-processed while the previous one is in the \
                         models (more throughput; each extra batch adds one batch of latency)",
                    )
                    .minimum(1)
                    .maximum(MAX_PIPELINE_DEPTH)
                    .default_value(DEFAULT_PIPELINE_DEPTH)
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
                        "Threads of the inference engine: on the CPU those of a forward pass, \
                         one libtorch intra-op thread each (0: one per available core); on a \
                         GPU those that pre-process frames (0: one per available core, at most \
                         4)",
                    )
                    .maximum(MAX_THREADS)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("shared-engine")
                    .nick("Shared engine")
                    .blurb(
                        "Share one inference engine (one copy of the models, one worker \
                         thread, batches across streams) with every other unmask element of \
                         the process that uses the same models, device, part thresholds, \
                         scaling and threads",
                    )
                    .default_value(DEFAULT_SHARED_ENGINE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("freeze-models")
                    .nick("Freeze models")
                    .blurb(
                        "Freeze both TorchScript models for inference when loading them \
                         (libtorch's torch::jit::freeze: weights become constants, batch \
                         norms are folded into convolutions); a model that cannot be frozen \
                         runs as saved, with a warning",
                    )
                    .default_value(DEFAULT_FREEZE_MODELS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("active-threshold")
                    .nick("Active threshold")
                    .blurb(
                        "The one threshold frames are being judged with: `threshold`, or the \
                         classifier's calibrated one when that is -1 (-1 while stopped or when \
                         per-class thresholds decide, see class-thresholds)",
                    )
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(FROM_MODEL)
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("class-thresholds")
                    .nick("Class thresholds")
                    .blurb(
                        "Per predicted class thresholds in use (from the classifier's \
                         calibration when threshold is -1), as class=threshold pairs; empty \
                         when one threshold decides",
                    )
                    .read_only()
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
                    .blurb("Async mode: frames not analysed because the engine was busy")
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
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Counters and per-stage times in nanoseconds, summed: map (buffers), \
                         wait (sync: for the engine), attach (verdicts, metas, messages) and, \
                         for the engine (shared by its users), queue, preprocess, classifier, \
                         extractor, parts, with its batch counts and the passes run on the \
                         streaming thread itself (sync mode with pipeline-depth=1, engine idle)",
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
                    self.shared
                        .set_thresholds(Some(thresholds_in_use(threshold, &state.engine)));
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
            "pipeline-depth" => {
                settings.pipeline_depth = value.get().unwrap_or(DEFAULT_PIPELINE_DEPTH)
            }
            "post-messages" => settings.post_messages = value.get().unwrap_or_default(),
            "threads" => settings.threads = value.get().unwrap_or(DEFAULT_THREADS),
            "shared-engine" => {
                settings.shared_engine = value.get().unwrap_or(DEFAULT_SHARED_ENGINE)
            }
            "freeze-models" => {
                settings.freeze_models = value.get().unwrap_or(DEFAULT_FREEZE_MODELS)
            }
            _ => gst::warning!(CAT, imp = self, "unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "stats" => return self.stats_structure().to_value(),
            "active-threshold" => {
                let t = match lock(&self.shared.thresholds).as_deref() {
                    Some(Thresholds::Global(t)) => f64::from(*t),
                    _ => FROM_MODEL,
                };
                return t.to_value();
            }
            "class-thresholds" => {
                let kb = lock(&self.state).as_ref().map(|st| st.kb.clone());
                let text = match (lock(&self.shared.thresholds).as_deref(), kb) {
                    (Some(t @ Thresholds::PerClass(_)), Some(kb)) => t.describe(kb.classes()),
                    _ => String::new(),
                };
                return text.to_value();
            }
            _ => {}
        }
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
            "pipeline-depth" => settings.pipeline_depth.to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "threads" => settings.threads.to_value(),
            "shared-engine" => settings.shared_engine.to_value(),
            "freeze-models" => settings.freeze_models.to_value(),
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
        let batch_size = settings.batch_size.max(1) as usize;
        let options = EngineOptions {
            threads: settings.threads as usize,
            batch: batch_size,
            shared: settings.shared_engine,
        };
        gst::info!(CAT, imp = self, "loading {config:?} ({options:?})");
        let engine =
            engine::acquire(&config, &options).map_err(|e| self.load_error(&e, &config))?;
        let thresholds = thresholds_in_use(settings.threshold, &engine);
        gst::info!(
            CAT,
            imp = self,
            "engine on {:?}, thresholds {} ({})",
            engine.device(),
            thresholds.describe(engine.knowledge().classes()),
            if Arc::strong_count(&engine) > 1 {
                "shared"
            } else {
                "new"
            }
        );
        *lock(&self.shared.stats) = Stats::default();
        lock(&self.shared.finished).clear();
        self.shared.failed.store(false, Ordering::SeqCst);
        self.shared.set_thresholds(Some(thresholds));
        *lock(&self.latency) = Latency {
            sync: settings.mode == Mode::Sync,
            batch_size: batch_size as u64,
            pipeline_depth: u64::from(settings.pipeline_depth.max(1)),
            analysis: None,
            frame_duration: None,
        };
        *lock(&self.state) = Some(State {
            kb: engine.knowledge().clone(),
            engine,
            mode: settings.mode,
            batch_size,
            pipeline_depth: settings.pipeline_depth.max(1) as usize,
            video: None,
            pending: VecDeque::new(),
            pending_analyse: 0,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            frame_index: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.discard();
        // Dropped outside the lock: the last user's drop joins the engine's worker.
        let state = lock(&self.state).take();
        drop(state);
        self.shared.set_thresholds(None);
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
                let blank = Arc::new(video.blank());
                let frames = (0..state.batch_size)
                    .map(|_| Box::new(blank.clone()) as Box<dyn FrameSource>)
                    .collect();
                let start = Instant::now();
                let result = state.engine.analyse(frames);
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
                q.set(
                    live,
                    min.saturating_add(extra),
                    max.map(|m| m.saturating_add(extra)),
                );
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
                    let keep = state.pipeline_depth - 1;
                    self.process_pending(state, keep)?;
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
