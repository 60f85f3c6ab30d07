//! A shared inference engine: one loaded detector (M + K + knowledge base) per configuration
//! in a process, fed by any number of streams.
//!
//! [`acquire`] returns the live engine for a configuration (models, device, part thresholds,
//! scaling, freezing, threads) or loads a new one. The process-wide registry only holds weak
//! references: an engine is dropped, its models freed and its worker thread joined, when the
//! last stream using it lets go of its [`Arc<Engine>`].
//!
//! Each engine has one worker thread. Streams submit [`Request`]s (one or more frames, and a
//! callback for the answer) through a bounded crossbeam channel ([`REQUEST_QUEUE`] requests):
//! [`Engine::submit`] never blocks and hands a request back when the queue is full, so a live
//! stream counts a drop instead of waiting; [`Engine::analyse`] (sync mode) waits for room.
//! Streams also bound their own frames in flight, so one stream cannot fill the queue for all. The worker takes the first
//! waiting request and then everything else already queued, up to the engine's batch cap,
//! converts all those frames to one batch, runs M and K once on it and answers each request
//! with its own slice of the results. N cameras therefore share one copy of the models and
//! their frames are batched together. A caller that waits for its answer right away
//! ([`Engine::analyse_here`], sync mode with `pipeline-depth=1`) runs the pass on its own
//! thread when the engine is idle, without the two thread hand-offs.
//!
//! The engine produces the raw [`Analysis`] of a frame (M's class and confidence, the parts K
//! found); the verdict (Jaccard similarity against the knowledge base, the threshold decision,
//! realignment) is made by the caller with its own threshold ([`Analysis::verdict`]), so
//! streams with different thresholds still share the models.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use tch::{Device, Tensor};

use crate::detector::{Detector, DetectorConfig, DetectorError, calibrated_thresholds};
use crate::device::{device_name, parse_device};
use crate::fork_join::ForkJoin;
use crate::knowledge::KnowledgeBase;
use crate::model::Classifier;
use crate::partset::PartSet;
use crate::preprocess::{Frame, Scaling};
use crate::similarity::{Thresholds, Verdict};

/// Smallest batch cap of an engine: frames of several requests (streams) go into one forward
/// pass up to this many, or up to the largest batch a user asked for if that is more.
pub const MIN_BATCH_CAP: usize = 16;

/// Capacity of an engine's request queue (requests waiting for the worker, all streams).
pub const REQUEST_QUEUE: usize = 256;

/// Why [`Engine::submit`] did not queue a request.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request queue is full: the request was not queued (and will not be answered).
    #[error("the engine's request queue is full")]
    Full,
    /// The worker thread has stopped.
    #[error("the engine's worker thread has stopped")]
    Stopped,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Something that can be viewed as a video frame (a mapped GStreamer buffer, owned bytes).
/// It travels to the engine's worker thread and is dropped there once analysed, before the
/// request is answered.
pub trait FrameSource: Send {
    /// Borrows the frame's planes.
    fn frame(&self) -> Result<Frame<'_>, String>;
}

impl FrameSource for crate::preprocess::OwnedFrame {
    fn frame(&self) -> Result<Frame<'_>, String> {
        Ok(self.as_frame())
    }
}

impl<T: FrameSource + Sync> FrameSource for Arc<T> {
    fn frame(&self) -> Result<Frame<'_>, String> {
        (**self).frame()
    }
}

/// What the models say about one frame, before the threshold decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Class index predicted by M (into the engine's knowledge base classes).
    pub class: usize,
    /// M's softmax confidence.
    pub confidence: f32,
    /// Knowledge base parts K found.
    pub parts: PartSet,
}

impl Analysis {
    /// The verdict with `thresholds` (the one for the predicted class decides).
    pub fn verdict(&self, kb: &KnowledgeBase, thresholds: &Thresholds) -> Verdict {
        let threshold = thresholds.for_class(self.class);
        Verdict::decide(kb, self.class, self.confidence, &self.parts, threshold)
    }
}

/// Time spent per stage, summed over frames or batches (thread time: stages that run on
/// several threads at once count once per thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Waiting in the engine's queue (per request, summed).
    pub queue: Duration,
    /// Frames to model inputs (mapping, crop, resize, colour conversion, normalisation).
    pub preprocess: Duration,
    /// Classifier M (forward, softmax, copy back).
    pub classifier: Duration,
    /// Part extractor K (forward).
    pub extractor: Duration,
    /// Parts from K's output (segmentation statistics, copy back).
    pub parts: Duration,
}

impl StageTimes {
    fn add(&mut self, o: &StageTimes) {
        self.queue += o.queue;
        self.preprocess += o.preprocess;
        self.classifier += o.classifier;
        self.extractor += o.extractor;
        self.parts += o.parts;
    }
}

/// What one request's answer carries besides the results.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Frames in the forward pass(es) this request was part of.
    pub batch_frames: usize,
    /// Time from submission to answer.
    pub elapsed: Duration,
}

/// An engine's counters since it was loaded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EngineStats {
    /// Requests answered.
    pub requests: u64,
    /// Requests dropped because their stream cancelled them (flush, stop).
    pub cancelled: u64,
    /// Forward passes (one per batch).
    pub batches: u64,
    /// Frames analysed.
    pub frames: u64,
    /// Largest batch so far.
    pub largest_batch: usize,
    /// Batches taken from the queue and pre-processed while the previous batch was still in
    /// one of the models.
    pub prepared_ahead: u64,
    /// Passes run on the thread that asked for them, the engine being idle
    /// ([`Engine::analyse_here`]).
    pub on_caller: u64,
    /// Time per stage, summed over all batches (queue: over all requests).
    pub stages: StageTimes,
}

/// Cancellation of a stream's queued requests: a request is stale once the stream's
/// generation counter has moved past the value it was submitted with.
#[derive(Debug, Clone)]
pub struct Generation {
    counter: Arc<AtomicU64>,
    value: u64,
}

impl Generation {
    /// The current generation of `counter`.
    pub fn current(counter: &Arc<AtomicU64>) -> Self {
        Self {
            counter: counter.clone(),
            value: counter.load(Ordering::SeqCst),
        }
    }

    /// Whether the stream has moved on (flushed or stopped) since.
    pub fn is_stale(&self) -> bool {
        self.counter.load(Ordering::SeqCst) != self.value
    }
}

/// The answer to a request.
pub type Answer = Result<Vec<Analysis>, String>;

/// Work for the engine: frames and what to do with their analyses.
pub struct Request {
    frames: Vec<Box<dyn FrameSource>>,
    reply: Box<dyn FnOnce(Answer, Timing) + Send>,
    generation: Option<Generation>,
    submitted: Instant,
}

impl Request {
    /// A request for `frames`; `reply` is called on the engine's worker thread with one
    /// analysis per frame (in order) or an error. The frames are dropped before `reply` runs.
    pub fn new(
        frames: Vec<Box<dyn FrameSource>>,
        reply: impl FnOnce(Answer, Timing) + Send + 'static,
    ) -> Self {
        Self {
            frames,
            reply: Box::new(reply),
            generation: None,
            submitted: Instant::now(),
        }
    }

    /// Skips the request (answering `Err`) if `generation` is stale when the worker gets to it.
    pub fn cancellable(mut self, generation: Generation) -> Self {
        self.generation = Some(generation);
        self
    }

    fn is_stale(&self) -> bool {
        self.generation.as_ref().is_some_and(Generation::is_stale)
    }
}

/// Message of the error answering cancelled requests.
pub const CANCELLED: &str = "cancelled";

/// How an engine runs (besides the detector configuration).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Threads of one forward pass on the CPU (0: one per available core): M and K side by
    /// side or the frames in shares, see [`runs_side_by_side`]. Each thread uses one
    /// libtorch intra-op thread. On a GPU, the threads that pre-process a pass's frames (0:
    /// one per available core, at most [`GPU_PREPROCESS_THREADS`]).
    pub threads: usize,
    /// The largest batch this user submits (raises the engine's batch cap if larger).
    pub batch: usize,
    /// Share the engine with other users of the same configuration (`false`: a private one).
    pub shared: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            threads: 0,
            batch: 1,
            shared: true,
        }
    }
}

/// The most threads that pre-process frames for a GPU engine by default (`threads` 0): a
/// pass's CPU work there is its pre-processing alone, four threads would bring it under the
/// models' time at batch 16 by run 21's profile (153–197 µs a 640x480 frame on one thread of
/// the H200 machine, against about 110 µs of M and K; not measured yet), and each helper
/// spins between passes (see [`crate::fork_join`]), which a machine serving several engines
/// cannot give every core to.
pub const GPU_PREPROCESS_THREADS: usize = 4;

impl EngineOptions {
    fn resolved_threads(&self, device: Device) -> usize {
        let cores = || std::thread::available_parallelism().map_or(1, usize::from);
        match self.threads {
            0 if device == Device::Cpu => cores(),
            0 => cores().min(GPU_PREPROCESS_THREADS),
            n => n,
        }
    }
}

/// What makes two engines interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineKey {
    classifier: PathBuf,
    extractor: PathBuf,
    knowledge: PathBuf,
    class_set: Option<String>,
    device: String,
    min_area: Option<u32>,
    min_confidence: Option<u32>,
    scaling: Scaling,
    freeze: bool,
    threads: usize,
}

impl EngineKey {
    fn new(config: &DetectorConfig, options: &EngineOptions) -> Result<Self, DetectorError> {
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        let device = parse_device(&config.device)?;
        Ok(Self {
            classifier: canonical(&config.classifier),
            extractor: canonical(&config.extractor),
            knowledge: canonical(&config.knowledge),
            class_set: config.class_set.clone(),
            device: device_name(device),
            min_area: config.min_area.map(f32::to_bits),
            min_confidence: config.min_confidence.map(f32::to_bits),
            scaling: config.scaling,
            freeze: config.freeze,
            threads: options.resolved_threads(device),
        })
    }

    /// A short description for logs and reports.
    pub fn describe(&self) -> String {
        format!(
            "{} + {} on {}{}{}",
            self.classifier.display(),
            self.extractor.display(),
            self.device,
            match self.threads {
                0 => String::new(),
                n if self.device == device_name(Device::Cpu) => format!(" ({n} threads)"),
                n => format!(" ({n} pre-processing threads)"),
            },
            if self.freeze { "" } else { ", models as saved" }
        )
    }
}

static REGISTRY: LazyLock<Mutex<HashMap<EngineKey, Weak<Engine>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The live engine for `config` (loading one if there is none). With `options.shared =
/// false`, always a new private engine.
pub fn acquire(
    config: &DetectorConfig,
    options: &EngineOptions,
) -> Result<Arc<Engine>, DetectorError> {
    let key = EngineKey::new(config, options)?;
    if !options.shared {
        return Ok(Arc::new(Engine::start(key, config, options, false)?));
    }
    let mut registry = lock(&REGISTRY);
    if let Some(engine) = registry.get(&key).and_then(Weak::upgrade) {
        engine.raise_batch_cap(options.batch);
        let users = engine.users_total.fetch_add(1, Ordering::SeqCst) + 1;
        log::debug!("sharing engine {} ({users} streams so far)", key.describe());
        return Ok(engine);
    }
    log::info!("starting engine {}", key.describe());
    let engine = Arc::new(Engine::start(key.clone(), config, options, true)?);
    registry.retain(|_, w| w.strong_count() > 0);
    registry.insert(key, Arc::downgrade(&engine));
    Ok(engine)
}

/// A live shared engine, as [`live_engines`] reports it.
#[derive(Debug, Clone, Serialize)]
pub struct EngineStatus {
    /// Models, device, threads.
    pub description: String,
    /// Handles held right now (streams using it).
    pub users: usize,
    /// Streams that acquired it since it was loaded.
    pub users_total: usize,
    /// Counters.
    pub stats: EngineStats,
}

/// The shared engines alive in this process.
pub fn live_engines() -> Vec<EngineStatus> {
    let engines: Vec<Arc<Engine>> = lock(&REGISTRY).values().filter_map(Weak::upgrade).collect();
    engines
        .iter()
        // Minus the handle held here.
        .map(|e| e.status(Arc::strong_count(e) - 1))
        .collect()
}

/// A loaded detector and the worker thread that runs it.
pub struct Engine {
    key: EngineKey,
    shared: bool,
    jobs: Option<Sender<Request>>,
    /// The models and the threads of a pass: the worker thread's, or a caller's that finds
    /// the engine idle ([`Engine::analyse_here`]).
    core: Arc<Mutex<Worker>>,
    worker: Option<JoinHandle<()>>,
    kb: Arc<KnowledgeBase>,
    calibrated: Thresholds,
    thresholds: Thresholds,
    device: Device,
    batch_cap: Arc<AtomicUsize>,
    users_total: AtomicUsize,
    stats: Arc<Mutex<EngineStats>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("key", &self.key)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Engine {
    fn start(
        key: EngineKey,
        config: &DetectorConfig,
        options: &EngineOptions,
        shared: bool,
    ) -> Result<Self, DetectorError> {
        let threads = key.threads;
        // Loading runs probe forward passes: one intra-op thread, as the engine's threads.
        let caller_threads = tch::get_num_threads();
        tch::set_num_threads(1);
        let detector = Detector::load(config);
        tch::set_num_threads(caller_threads);
        let detector = detector?;
        let kb = Arc::new(detector.knowledge().clone());
        let calibrated = calibrated_thresholds(detector.classifier());
        let thresholds = detector.thresholds().clone();
        let device = detector.device();
        if device.is_cuda() {
            // Inputs have fixed sizes: let cuDNN pick its fastest algorithms.
            tch::Cuda::cudnn_set_benchmark(true);
        }
        let batch_cap = Arc::new(AtomicUsize::new(options.batch.max(MIN_BATCH_CAP)));
        let stats = Arc::new(Mutex::new(EngineStats::default()));
        let (jobs, rx) = crossbeam_channel::bounded(REQUEST_QUEUE);
        let cannot_start = |reason: String| DetectorError::Contract {
            path: config.classifier.clone(),
            reason,
        };
        let worker = Worker {
            detector,
            batch_cap: batch_cap.clone(),
            stats: stats.clone(),
            threads,
            fork: ForkJoin::new(threads).map_err(cannot_start)?,
        };
        let core = Arc::new(Mutex::new(worker));
        let worker_core = core.clone();
        let handle = std::thread::Builder::new()
            .name("unmask-engine".into())
            .spawn(move || Worker::run(&worker_core, rx))
            .map_err(|e| cannot_start(format!("cannot start the engine thread: {e}")))?;
        Ok(Self {
            key,
            shared,
            jobs: Some(jobs),
            core,
            worker: Some(handle),
            kb,
            calibrated,
            thresholds,
            device,
            batch_cap,
            users_total: AtomicUsize::new(1),
            stats,
        })
    }

    fn raise_batch_cap(&self, batch: usize) {
        self.batch_cap.fetch_max(batch, Ordering::SeqCst);
    }

    /// The knowledge base restricted to the classifier's classes (what analyses index).
    pub fn knowledge(&self) -> &Arc<KnowledgeBase> {
        &self.kb
    }

    /// The thresholds of the classifier's calibration (per class when calibrated so, else
    /// its global threshold or the fallback).
    pub fn calibrated_thresholds(&self) -> &Thresholds {
        &self.calibrated
    }

    /// The thresholds of the configuration the engine was loaded with.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The device the models run on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Whether other users of the same configuration share this engine.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// What the engine is.
    pub fn key(&self) -> &EngineKey {
        &self.key
    }

    /// The most frames that go into one forward pass.
    pub fn batch_cap(&self) -> usize {
        self.batch_cap.load(Ordering::SeqCst)
    }

    /// Counters since loading.
    pub fn stats(&self) -> EngineStats {
        lock(&self.stats).clone()
    }

    fn status(&self, users: usize) -> EngineStatus {
        EngineStatus {
            description: self.key.describe(),
            users,
            users_total: self.users_total.load(Ordering::SeqCst),
            stats: self.stats(),
        }
    }

    /// Queues a request without blocking. A request that is not queued (queue full, worker
    /// stopped) is dropped unanswered.
    pub fn submit(&self, request: Request) -> Result<(), SubmitError> {
        let jobs = self.jobs.as_ref().ok_or(SubmitError::Stopped)?;
        jobs.try_send(request).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => SubmitError::Full,
            crossbeam_channel::TrySendError::Disconnected(_) => SubmitError::Stopped,
        })
    }

    /// Queues a request, waiting for room in the queue. Fails only if the worker has stopped.
    fn submit_blocking(&self, request: Request) -> Result<(), SubmitError> {
        let jobs = self.jobs.as_ref().ok_or(SubmitError::Stopped)?;
        jobs.send(request).map_err(|_| SubmitError::Stopped)
    }

    /// Analyses frames and waits for the answer (on the calling thread when the engine is
    /// idle, see [`Self::analyse_here`]).
    pub fn analyse(
        &self,
        frames: Vec<Box<dyn FrameSource>>,
    ) -> Result<(Vec<Analysis>, Timing), String> {
        self.analyse_here(frames)?.wait()
    }

    /// Analyses frames on the calling thread when the engine is idle (nothing queued, no
    /// pass running): a caller that waits for the answer right away then saves the hand-offs
    /// to the worker thread and back, each a thread wake-up (tens of µs, more on a virtual
    /// machine whose other core is idle). Otherwise the frames are queued like
    /// [`Self::analyse_later`]. The answer is collected with [`PendingAnalysis::wait`].
    ///
    /// A thread that runs a pass here keeps one libtorch intra-op thread afterwards (changing
    /// the count empties its cache of oneDNN convolutions, see [`keep_one_intra_op_thread`]).
    pub fn analyse_here(
        &self,
        frames: Vec<Box<dyn FrameSource>>,
    ) -> Result<PendingAnalysis, String> {
        let idle = self.jobs.as_ref().is_some_and(|j| j.is_empty());
        let worker = if idle {
            self.core.try_lock().ok()
        } else {
            None
        };
        let Some(worker) = worker else {
            return self.analyse_later(frames);
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let request = Request::new(frames, move |answer, timing| {
            let _ = tx.send((answer, timing));
        });
        let cap = worker.batch_cap.load(Ordering::SeqCst).max(1);
        // The pass's threads run with one intra-op thread each, without autograd.
        keep_one_intra_op_thread();
        {
            let _no_grad = tch::no_grad_guard();
            // Nothing is taken from the queue meanwhile: the worker thread serves it.
            let next = worker.process(Batch::new(vec![request], cap), None);
            debug_assert!(next.is_none());
        }
        lock(&worker.stats).on_caller += 1;
        Ok(PendingAnalysis { answer: rx })
    }

    /// Queues frames for analysis (waiting for room in the queue, not for the analysis); the
    /// answer is collected with [`PendingAnalysis::wait`].
    pub fn analyse_later(
        &self,
        frames: Vec<Box<dyn FrameSource>>,
    ) -> Result<PendingAnalysis, String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.submit_blocking(Request::new(frames, move |answer, timing| {
            let _ = tx.send((answer, timing));
        }))
        .map_err(|e| e.to_string())?;
        Ok(PendingAnalysis { answer: rx })
    }
}

/// Gives the calling thread one libtorch intra-op thread and leaves it so: a thread that runs
/// passes with [`Engine::analyse_here`] (a streaming thread) is not set back after each one.
/// Every change of the count (`at::set_num_threads`) also empties the thread's cache of
/// oneDNN convolutions, so that M's next forward pass builds them all again: setting 1 and
/// restoring 2 around each pass made M 0.5-1.1 ms slower a pass (4.2-5.1 ms) on the
/// shipped models.
fn keep_one_intra_op_thread() {
    if tch::get_num_threads() != 1 {
        tch::set_num_threads(1);
    }
}

/// Frames handed to the engine by [`Engine::analyse_later`]. Dropping it abandons the answer
/// (the frames are still analysed).
#[derive(Debug)]
pub struct PendingAnalysis {
    answer: Receiver<(Answer, Timing)>,
}

impl PendingAnalysis {
    /// Waits for the analyses (one per frame, in order).
    pub fn wait(self) -> Result<(Vec<Analysis>, Timing), String> {
        let (answer, timing) = self
            .answer
            .recv()
            .map_err(|_| "the engine dropped the request".to_owned())?;
        answer.map(|a| (a, timing))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the channel ends the worker once it has answered what is queued.
        drop(self.jobs.take());
        if let Some(handle) = self.worker.take()
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
        if self.shared {
            lock(&REGISTRY).retain(|_, w| w.strong_count() > 0);
        }
    }
}

/// What runs a pass: the models, the threads of a pass and the counters. The worker thread
/// uses it, or a caller that finds the engine idle ([`Engine::analyse_here`]).
struct Worker {
    detector: Detector,
    batch_cap: Arc<AtomicUsize>,
    stats: Arc<Mutex<EngineStats>>,
    /// Threads of a pass (`1`: the worker's own only): on the CPU, of its forward passes; on
    /// a GPU, of its pre-processing.
    threads: usize,
    fork: ForkJoin,
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

/// `first` and the requests already queued behind it, up to `cap` frames.
fn gather(first: Request, jobs: &Receiver<Request>, cap: usize) -> Vec<Request> {
    let mut frames = first.frames.len();
    let mut requests = vec![first];
    while frames < cap {
        match jobs.try_recv() {
            Ok(r) => {
                frames += r.frames.len();
                requests.push(r);
            }
            Err(_) => break,
        }
    }
    requests
}

/// The requests of one pass, the stale ones set apart.
struct Batch {
    /// Requests to answer, in queue order.
    live: Vec<Request>,
    /// Per live request: why its frames cannot be read, if they cannot.
    unreadable: Vec<Option<String>>,
    /// Readable frames in all.
    frames: usize,
    /// Stale requests, to be answered as cancelled (on the worker thread, like every answer).
    cancelled: Vec<Request>,
    cap: usize,
    stages: StageTimes,
    /// The readable frames' inputs for M and K, made ahead while the previous pass was still
    /// in one of the models.
    inputs: Option<Result<(Tensor, Tensor), String>>,
}

impl Batch {
    /// Sets the stale `requests` apart and checks the others' frames.
    fn new(requests: Vec<Request>, cap: usize) -> Self {
        let start = Instant::now();
        let mut batch = Batch {
            live: Vec::with_capacity(requests.len()),
            unreadable: Vec::with_capacity(requests.len()),
            frames: 0,
            cancelled: Vec::new(),
            cap,
            stages: StageTimes::default(),
            inputs: None,
        };
        for r in requests {
            batch.stages.queue += start.saturating_duration_since(r.submitted);
            if r.is_stale() {
                batch.cancelled.push(r);
                continue;
            }
            let readable = r.frames.iter().try_for_each(|f| {
                f.frame()?.validate().map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            });
            match readable {
                Ok(()) => {
                    batch.frames += r.frames.len();
                    batch.unreadable.push(None);
                }
                Err(e) => batch.unreadable.push(Some(e)),
            }
            batch.live.push(r);
        }
        batch
    }

    /// The readable frames, each with the index of its request.
    fn frames(&self) -> (Vec<Frame<'_>>, Vec<usize>) {
        let mut frames = Vec::with_capacity(self.frames);
        let mut owners = Vec::with_capacity(self.frames);
        for (i, r) in self.live.iter().enumerate() {
            if self.unreadable[i].is_some() {
                continue;
            }
            // Read (and checked) once already: a frame that fails now is left out, and its
            // request answered with an error for the missing analysis.
            for frame in r.frames.iter().filter_map(|f| f.frame().ok()) {
                frames.push(frame);
                owners.push(i);
            }
        }
        (frames, owners)
    }
}

/// Tensors of a few frames each as one batch (a single one as it is: `cat` would copy it).
fn concat(mut parts: Vec<Tensor>) -> Tensor {
    if parts.len() == 1 {
        parts.pop().expect("one tensor")
    } else {
        Tensor::cat(&parts, 0)
    }
}

/// One frame's inputs for M and K, made ahead: the frame's index in its pass, the inputs
/// (or why they could not be made) and the time they took.
type MadeInputs = (usize, Result<(Tensor, Tensor), String>, Duration);

/// Frames of the next pass, shared by the threads that make its inputs.
struct ReadableFrames(Vec<Frame<'static>>);

/// The next pass, taken from the queue while a side-by-side pass is in the models and
/// pre-processed by its threads as each finishes its model: the first one done takes the
/// requests waiting, and both make the inputs a frame at a time, so that the thread done
/// first starts at once and the other one helps as soon as it is done.
struct NextPass<'a> {
    jobs: &'a Receiver<Request>,
    cap: usize,
    /// The requests taken, with their readable frames when the next pass runs side by side
    /// (its inputs are only made ahead then).
    taken: Mutex<Option<(Batch, Option<Arc<ReadableFrames>>)>>,
    /// The next frame whose inputs nobody makes yet.
    next_frame: AtomicUsize,
    /// Each frame's inputs, in the order they were made, with the time it took.
    made: Mutex<Vec<MadeInputs>>,
}

impl<'a> NextPass<'a> {
    fn new(jobs: &'a Receiver<Request>, cap: usize) -> Self {
        Self {
            jobs,
            cap,
            taken: Mutex::new(None),
            next_frame: AtomicUsize::new(0),
            made: Mutex::new(Vec::new()),
        }
    }

    /// Takes the next pass's requests if nobody has yet (and some are waiting), then makes
    /// inputs for its frames until none is left.
    fn help(&self, d: SharedDetector<'_>, threads: usize) {
        let frames = {
            let mut taken = lock(&self.taken);
            if taken.is_none() {
                let Ok(first) = self.jobs.try_recv() else {
                    return;
                };
                let batch = Batch::new(gather(first, self.jobs, self.cap), self.cap);
                let frames = Worker::side_by_side(d.0, threads, batch.frames, true).then(|| {
                    let (frames, _) = batch.frames();
                    // SAFETY: the frames borrow the planes of the batch's requests, which
                    // live on the heap (boxed frame sources) and are neither changed nor
                    // dropped before `finish`, which runs after both threads are done with
                    // the pass (`ForkJoin::run` joins them) and drops the last handle to
                    // these frames before the batch leaves it.
                    let frames = unsafe {
                        std::mem::transmute::<Vec<Frame<'_>>, Vec<Frame<'static>>>(frames)
                    };
                    Arc::new(ReadableFrames(frames))
                });
                *taken = Some((batch, frames));
            }
            match taken.as_ref() {
                Some((_, Some(frames))) => frames.clone(),
                _ => return,
            }
        };
        loop {
            let i = self.next_frame.fetch_add(1, Ordering::Relaxed);
            let Some(frame) = frames.0.get(i) else {
                break;
            };
            let t0 = Instant::now();
            let inputs = d.inputs(std::slice::from_ref(frame), None);
            lock(&self.made).push((i, inputs, t0.elapsed()));
        }
    }

    /// The batch taken, if any, with the inputs made for it. Called once the pass's threads
    /// are done.
    fn finish(self) -> Option<Batch> {
        let taken = self
            .taken
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let (mut batch, frames) = taken?;
        let Some(frames) = frames else {
            return Some(batch);
        };
        let count = frames.0.len();
        // The last handle (the threads' are gone): the frames go before the batch moves on.
        debug_assert_eq!(Arc::strong_count(&frames), 1);
        drop(frames);
        let mut made = self
            .made
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        made.sort_by_key(|(i, ..)| *i);
        batch.stages.preprocess += made.iter().map(|(.., t)| *t).sum::<Duration>();
        let inputs = if made.len() == count {
            made.into_iter()
                .map(|(_, inputs, _)| inputs)
                .collect::<Result<Vec<_>, String>>()
                .map(|inputs| {
                    let (m, k): (Vec<Tensor>, Vec<Tensor>) = inputs.into_iter().unzip();
                    (concat(m), concat(k))
                })
        } else {
            Err("the next pass's inputs were not all made".into())
        };
        batch.inputs = Some(inputs);
        Some(batch)
    }
}

impl Worker {
    /// The worker thread: passes over whatever is queued, until the queue is closed.
    fn run(core: &Mutex<Worker>, jobs: Receiver<Request>) {
        tch::set_num_threads(1);
        // Inference only: no autograd bookkeeping on this thread.
        let _no_grad = tch::no_grad_guard();
        while let Ok(first) = jobs.recv() {
            // Waits while a caller runs a pass of its own (`Engine::analyse_here`).
            let worker = lock(core);
            let cap = worker.batch_cap.load(Ordering::SeqCst).max(1);
            let mut next = Some(Batch::new(gather(first, &jobs, cap), cap));
            while let Some(batch) = next.take() {
                next = worker.process(batch, Some(&jobs));
            }
        }
    }

    /// Whether a pass over `frames` frames runs M and K side by side: on the CPU, see
    /// [`runs_side_by_side`]; with two threads always when the next pass can be prepared
    /// during it (`ahead`: a worker thread with a queue), since both threads then make the
    /// next pass's inputs as they finish their model, instead of both making their share's
    /// inputs before it.
    fn side_by_side(detector: &Detector, threads: usize, frames: usize, ahead: bool) -> bool {
        detector.device() == Device::Cpu
            && detector.max_batch().is_none()
            && (runs_side_by_side(threads, frames) || (ahead && threads == 2 && frames > 0))
    }

    /// Analyses a batch and answers its requests; returns the next batch if it was taken from
    /// `jobs` (and pre-processed) while this one was in the models.
    fn process(&self, mut batch: Batch, jobs: Option<&Receiver<Request>>) -> Option<Batch> {
        let cancelled = batch.cancelled.len() as u64;
        for r in std::mem::take(&mut batch.cancelled) {
            let elapsed = r.submitted.elapsed();
            drop(r.frames);
            (r.reply)(
                Err(CANCELLED.into()),
                Timing {
                    batch_frames: 0,
                    elapsed,
                },
            );
        }
        if batch.live.is_empty() {
            lock(&self.stats).cancelled += cancelled;
            return None;
        }
        let next = jobs.map(|jobs| NextPass::new(jobs, batch.cap));
        let mut stages = batch.stages;
        let prepared = batch.inputs.take();
        let was_prepared = prepared.is_some();
        let cap = batch.cap;
        let (frames, owners) = batch.frames();
        let total = frames.len();
        let mut batches = 0;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let inputs = match prepared {
                Some(inputs) => Some(inputs?),
                None if Self::side_by_side(&self.detector, self.threads, total, next.is_some()) => {
                    Some(self.inputs_on_all_threads(&frames, &mut stages)?)
                }
                None => None,
            };
            if let Some(inputs) = inputs {
                batches = 1;
                return self.run_side_by_side(inputs, &mut stages, next.as_ref());
            }
            let mut out = Vec::with_capacity(total);
            for chunk in frames.chunks(cap) {
                out.extend(self.analyse(chunk, &mut stages)?);
                batches += 1;
            }
            Ok::<_, String>(out)
        }))
        .unwrap_or_else(|panic| Err(panic_message(panic.as_ref())));
        drop(frames);
        let Batch {
            live, unreadable, ..
        } = batch;
        let mut answers: Vec<Answer> = match result {
            Ok(analyses) => {
                let mut per_request: Vec<Vec<Analysis>> = vec![Vec::new(); live.len()];
                for (a, owner) in analyses.into_iter().zip(owners) {
                    per_request[owner].push(a);
                }
                per_request.into_iter().map(Ok).collect()
            }
            Err(e) => live.iter().map(|_| Err(e.clone())).collect(),
        };
        for ((answer, r), why) in answers.iter_mut().zip(&live).zip(unreadable) {
            if let Some(why) = why {
                *answer = Err(why);
            } else if answer.as_ref().is_ok_and(|a| a.len() != r.frames.len()) {
                *answer = Err("a frame could not be read".into());
            }
        }
        {
            let mut s = lock(&self.stats);
            s.requests += live.len() as u64;
            s.cancelled += cancelled;
            s.batches += batches;
            s.frames += total as u64;
            s.largest_batch = s.largest_batch.max(total.min(cap));
            s.prepared_ahead += u64::from(was_prepared);
            s.stages.add(&stages);
        }
        for (r, answer) in live.into_iter().zip(answers) {
            let elapsed = r.submitted.elapsed();
            drop(r.frames);
            (r.reply)(
                answer,
                Timing {
                    batch_frames: total,
                    elapsed,
                },
            );
        }
        next.and_then(NextPass::finish)
    }

    /// One forward pass (padded to the models' fixed batch if they have one).
    fn analyse(
        &self,
        frames: &[Frame<'_>],
        stages: &mut StageTimes,
    ) -> Result<Vec<Analysis>, String> {
        let d = &self.detector;
        let fixed = d.max_batch().map(|n| n.max(1) as usize);
        if let Some(fixed) = fixed
            && frames.len() != fixed
        {
            let mut out = Vec::with_capacity(frames.len());
            for chunk in frames.chunks(fixed) {
                let mut padded = chunk.to_vec();
                while padded.len() < fixed {
                    padded.push(chunk[chunk.len() - 1].clone());
                }
                let mut a = self.analyse_exact(&padded, stages)?;
                a.truncate(chunk.len());
                out.extend(a);
            }
            return Ok(out);
        }
        self.analyse_exact(frames, stages)
    }

    fn analyse_exact(
        &self,
        frames: &[Frame<'_>],
        stages: &mut StageTimes,
    ) -> Result<Vec<Analysis>, String> {
        let d = SharedDetector(&self.detector);
        let width = self.threads.max(1);
        if self.detector.device() != Device::Cpu {
            // The frames in pieces over the threads, the models on the GPU.
            return d.analyse(frames, stages, Some(&self.fork));
        }
        if width == 1 || frames.is_empty() {
            return d.analyse(frames, stages, None);
        }
        if !runs_side_by_side(width, frames.len()) {
            // Data parallel: each thread analyses its share of the frames.
            let per = frames.len().div_ceil(width);
            let jobs: Vec<_> = frames
                .chunks(per)
                .map(|chunk| {
                    move || {
                        let mut st = StageTimes::default();
                        let r = d.analyse(chunk, &mut st, None);
                        (r, st)
                    }
                })
                .collect();
            let mut out = Vec::with_capacity(frames.len());
            for (r, st) in self.fork.run(jobs) {
                stages.add(&st);
                out.extend(r?);
            }
            return Ok(out);
        }
        let inputs = self.inputs_on_all_threads(frames, stages)?;
        self.run_side_by_side(inputs, stages, None)
    }

    /// The inputs of M and K for `frames`, made by all the pass's threads (whole frames, or
    /// bands of rows, see [`crate::preprocess::frames_to_inputs_on`]) into one tensor each: a
    /// pass that was not prepared ahead waits for them, so every core helps. Against shares
    /// of frames made on their own and concatenated, 9-10 µs less a 640x480 frame on two
    /// threads at batch 2-6 (63-68 against 72-78 µs). `stages.preprocess` gets the wait
    /// times the threads for a batch (their time added up), the wait for one frame.
    fn inputs_on_all_threads(
        &self,
        frames: &[Frame<'_>],
        stages: &mut StageTimes,
    ) -> Result<(Tensor, Tensor), String> {
        let d = SharedDetector(&self.detector);
        let fork = (self.threads >= 2).then_some(&self.fork);
        let t0 = Instant::now();
        let inputs = d.inputs(frames, fork);
        let threads = if frames.len() > 1 {
            self.threads.max(1)
        } else {
            1
        };
        stages.preprocess += t0.elapsed() * threads as u32;
        inputs
    }

    /// M on this thread and K (then the parts) on a pool thread, at the same time. With
    /// `next`, whichever thread is done first takes the next requests from the queue (if
    /// any are waiting) and starts pre-processing them, and the other one helps when it is
    /// done, so that the next pass starts with its inputs ready.
    fn run_side_by_side(
        &self,
        (m_input, k_input): (Tensor, Tensor),
        stages: &mut StageTimes,
        next: Option<&NextPass<'_>>,
    ) -> Result<Vec<Analysis>, String> {
        let d = SharedDetector(&self.detector);
        let threads = self.threads;
        let prepare_next = move || {
            if let Some(next) = next {
                next.help(d, threads);
            }
        };
        let m_job = move || {
            let t = Instant::now();
            let r = d.predict(&m_input).map(Either::M);
            let forward = t.elapsed();
            prepare_next();
            (r, forward, Duration::ZERO)
        };
        let k_job = move || {
            let t = Instant::now();
            let out = match d.raw_parts(&k_input) {
                Ok(out) => out,
                Err(e) => return (Err(e), t.elapsed(), Duration::ZERO),
            };
            let t1 = Instant::now();
            let parts = d.parts(&out);
            let after = t1.elapsed();
            prepare_next();
            (Ok(Either::K(parts)), t1 - t, after)
        };
        let jobs: Vec<Box<dyn FnOnce() -> _ + Send + '_>> = vec![Box::new(m_job), Box::new(k_job)];
        let mut predictions = Vec::new();
        let mut parts = Vec::new();
        for (r, forward, after) in self.fork.run(jobs) {
            match r? {
                Either::M(p) => {
                    predictions = p;
                    stages.classifier += forward;
                }
                Either::K(p) => {
                    parts = p;
                    stages.extractor += forward;
                    stages.parts += after;
                }
            }
        }
        Ok(zip_analyses(predictions, parts))
    }
}

enum Either {
    M(Vec<(usize, f32)>),
    K(Vec<PartSet>),
}

fn zip_analyses(predictions: Vec<(usize, f32)>, parts: Vec<PartSet>) -> Vec<Analysis> {
    predictions
        .into_iter()
        .zip(parts)
        .map(|((class, confidence), parts)| Analysis {
            class,
            confidence,
            parts,
        })
        .collect()
}

/// A detector borrowed by the threads of one forward pass.
#[derive(Clone, Copy)]
struct SharedDetector<'a>(&'a Detector);

// SAFETY: the threads only read the detector. TorchScript forward passes on one module may
// run concurrently, and the tensors the detector holds (normalisation constants) are only
// read, never modified; libtorch's reference counts are atomic.
unsafe impl Send for SharedDetector<'_> {}
unsafe impl Sync for SharedDetector<'_> {}

impl SharedDetector<'_> {
    fn predict(&self, input: &Tensor) -> Result<Vec<(usize, f32)>, String> {
        self.0
            .classifier()
            .predict_prepared(input)
            .map_err(|e| e.to_string())
    }

    fn raw_parts(&self, input: &Tensor) -> Result<Tensor, String> {
        self.0
            .extractor()
            .raw_prepared(input)
            .map_err(|e| e.to_string())
    }

    fn parts(&self, out: &Tensor) -> Vec<PartSet> {
        self.0.parts_from_channels(&self.0.extractor().decide(out))
    }

    /// The inputs of M and K for `frames` (made over the threads of `fork`, if given).
    fn inputs(
        &self,
        frames: &[Frame<'_>],
        fork: Option<&ForkJoin>,
    ) -> Result<(Tensor, Tensor), String> {
        self.0
            .model_inputs_on(frames, fork)
            .map_err(|e| e.to_string())
    }

    /// One pass stage by stage, on the current thread (the pre-processing over the threads of
    /// `fork`, if given). Both models are queued before either's result is read, so that on
    /// a GPU K's kernels are launched while M's run. There the classifier's stage times the
    /// queueing of M, the extractor's the queueing of K and the wait for both to finish.
    fn analyse(
        &self,
        frames: &[Frame<'_>],
        stages: &mut StageTimes,
        fork: Option<&ForkJoin>,
    ) -> Result<Vec<Analysis>, String> {
        let d = self.0;
        let sync = |device: Device| {
            if let Device::Cuda(i) = device {
                tch::Cuda::synchronize(i as i64);
            }
        };
        let t0 = Instant::now();
        let (m_input, k_input) = self.inputs(frames, fork)?;
        sync(d.device());
        let t1 = Instant::now();
        let logits = d
            .classifier()
            .logits_prepared(&m_input)
            .map_err(|e| e.to_string())?;
        let t2 = Instant::now();
        let out = self.raw_parts(&k_input)?;
        sync(d.device());
        let t3 = Instant::now();
        let predictions = Classifier::predictions(&logits);
        let parts = self.parts(&out);
        let t4 = Instant::now();
        stages.preprocess += t1 - t0;
        stages.classifier += t2 - t1;
        stages.extractor += t3 - t2;
        stages.parts += t4 - t3;
        Ok(zip_analyses(predictions, parts))
    }
}

/// Frames per thread from which a pass on two threads goes in shares when nothing can be
/// prepared during it (a pass on the calling thread, [`Engine::analyse_here`]): a forward
/// pass on this many frames costs about as much per frame as on the whole batch, and shares
/// keep the threads' work balanced (each pre-processes its frames, runs both models on them
/// and decides their parts). The engine's worker thread, which can take the next pass from
/// its queue, runs every pass on two threads side by side instead: the threads make the
/// next pass's inputs as each finishes its model (measured with the shipped models, batch
/// 16 at depth 2: 640x480 745-756 -> 773-785 frames/s, 1080p I420 706-708 -> 705-727).
pub const SHARE_MIN_FRAMES: usize = 4;

/// How a CPU engine with `threads` threads runs a pass over `frames` frames when the next
/// pass cannot be prepared during it: `true` for M and K side by side (M on one thread, K
/// on another, each on the whole batch), `false` for the frames in equal shares over all
/// threads (each thread M then K on its share).
///
/// With two threads, side by side below [`SHARE_MIN_FRAMES`] frames per thread: each model
/// keeps the whole batch, and small forward passes gain the most from a larger batch (with
/// the shipped models on two cores, M ‖ K against shares, frames/s: 560 / 354 at batch 2,
/// 648 / 542 at 4, but 701 / 677 at 16, where the shares' balance wins in the element).
/// With more threads, side by side only while there are fewer frames than threads.
pub fn runs_side_by_side(threads: usize, frames: usize) -> bool {
    let shares_from = if threads == 2 {
        SHARE_MIN_FRAMES * threads
    } else {
        threads
    };
    threads >= 2 && frames > 0 && frames < shares_from
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `threads` 0 means every core for a CPU engine's passes, and at most
    /// [`GPU_PREPROCESS_THREADS`] pre-processing threads for a GPU engine; a count is taken
    /// as it is on both.
    #[test]
    fn gpu_engines_default_to_a_few_pre_processing_threads() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let auto = EngineOptions::default();
        assert_eq!(auto.resolved_threads(Device::Cpu), cores);
        assert_eq!(
            auto.resolved_threads(Device::Cuda(0)),
            cores.min(GPU_PREPROCESS_THREADS)
        );
        let six = EngineOptions {
            threads: 6,
            ..EngineOptions::default()
        };
        assert_eq!(six.resolved_threads(Device::Cpu), 6);
        assert_eq!(six.resolved_threads(Device::Cuda(0)), 6);
    }
}
