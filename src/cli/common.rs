//! What `scan` and `watch` share: the `unmask` element's options, reading verdicts off the
//! element, linking decoded video, encoders for annotated copies, output files.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{IsTerminal, LineWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use gst::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use unmask::clip::make_element;
use unmask::meta::UnmaskMeta;
use unmask::report::FrameRecord;

/// `mode` of the element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Frames wait for their verdict.
    Sync,
    /// Frames flow on; verdicts follow (frames are skipped when the analysis is busy).
    Async,
}

impl Mode {
    fn nick(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
        }
    }
}

/// `scaling` of the element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scaling {
    /// Centre crop with the model's aspect ratio.
    Crop,
    /// Resize the whole frame.
    Stretch,
}

/// Options of the `unmask` element (see `gst-inspect-1.0 unmask`).
#[derive(Debug, Clone, Args)]
pub struct DetectorArgs {
    /// Classifier M (TorchScript with a .modelinfo sidecar) [default: the shipped parts-world
    /// classifier for --class-set and --variant].
    #[arg(long, value_name = "FILE", help_heading = "Detector")]
    pub classifier: Option<PathBuf>,
    /// Part extractor K [default: the shipped parts-world k-parts.pt].
    #[arg(long, value_name = "FILE", help_heading = "Detector")]
    pub extractor: Option<PathBuf>,
    /// Knowledge base JSON [default: the shipped parts-world knowledge.json].
    #[arg(long, value_name = "FILE", help_heading = "Detector")]
    pub knowledge: Option<PathBuf>,
    /// Class set the classifier must cover (also picks the shipped classifier) [default: CS5a].
    #[arg(long, value_name = "NAME", help_heading = "Detector")]
    pub class_set: Option<String>,
    /// Variant of the shipped classifier: baseline or denoise.
    #[arg(long, value_name = "NAME", help_heading = "Detector")]
    pub variant: Option<String>,
    /// Where the models run: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto", help_heading = "Detector")]
    pub device: String,
    /// Flag frames whose similarity is below this [default: the classifier's calibration].
    #[arg(long, help_heading = "Detector")]
    pub threshold: Option<f64>,
    /// Segmentation extractors: minimum fraction of the image a part must cover.
    #[arg(long, help_heading = "Detector")]
    pub min_area: Option<f64>,
    /// Segmentation extractors: minimum mean confidence of a part.
    #[arg(long, help_heading = "Detector")]
    pub min_confidence: Option<f64>,
    /// How the frame is fitted to the models' input.
    #[arg(long, value_enum, default_value = "crop", help_heading = "Detector")]
    pub scaling: Scaling,
    /// Analyse every N-th frame.
    #[arg(long, default_value_t = 1, value_name = "N", help_heading = "Detector")]
    pub interval: u32,
    /// Frames analysed together.
    #[arg(long, default_value_t = 1, value_name = "N", help_heading = "Detector")]
    pub batch_size: u32,
    /// Sync mode: batches handed to the engine at once (2: the next is pre-processed while
    /// the previous is in the models; each extra batch adds a batch of latency) [default: 2
    /// for scan, 1 for watch].
    #[arg(long, value_name = "N", help_heading = "Detector")]
    pub pipeline_depth: Option<u32>,
    /// libtorch CPU threads (0: one per core).
    #[arg(long, default_value_t = 0, value_name = "N", help_heading = "Detector")]
    pub threads: u32,
    /// Run the models as saved instead of freezing them for inference at load.
    #[arg(long, help_heading = "Detector")]
    pub no_freeze: bool,
}

impl DetectorArgs {
    /// Creates the `unmask` element with these options and `mode` (`depth`: the pipeline
    /// depth when `--pipeline-depth` is not given).
    pub fn element(&self, mode: Mode, depth: u32) -> anyhow::Result<gst::Element> {
        if let Some(t) = self.threshold
            && !(0.0..=1.0).contains(&t)
        {
            bail!("--threshold must be in [0, 1], got {t}");
        }
        if self.interval == 0 || self.batch_size == 0 || self.batch_size > 256 {
            bail!("--interval must be at least 1 and --batch-size in 1..=256");
        }
        let depth = self.pipeline_depth.unwrap_or(depth);
        if !(1..=8).contains(&depth) {
            bail!("--pipeline-depth must be in 1..=8, got {depth}");
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        let mut b = gst::ElementFactory::make("unmask")
            .name("unmask")
            .property("device", &self.device)
            .property("interval", self.interval)
            .property("batch-size", self.batch_size)
            .property("pipeline-depth", depth)
            .property("threads", self.threads)
            .property("freeze-models", !self.no_freeze)
            .property_from_str("mode", mode.nick())
            .property_from_str(
                "scaling",
                match self.scaling {
                    Scaling::Crop => "crop",
                    Scaling::Stretch => "stretch",
                },
            );
        for (name, value) in [
            ("classifier", path(&self.classifier)),
            ("extractor", path(&self.extractor)),
            ("knowledge", path(&self.knowledge)),
            ("class-set", self.class_set.clone()),
            ("variant", self.variant.clone()),
        ] {
            if let Some(v) = value {
                b = b.property(name, v);
            }
        }
        for (name, value) in [
            ("threshold", self.threshold),
            ("min-area", self.min_area),
            ("min-confidence", self.min_confidence),
        ] {
            if let Some(v) = value {
                b = b.property(name, v);
            }
        }
        b.build()
            .context("the unmask element is not registered (build problem?)")
    }
}

/// Initialises GStreamer and registers the project's elements statically.
pub fn init_gstreamer() -> anyhow::Result<()> {
    gst::init().context("initialise GStreamer")?;
    unmask::elements::register(None).context("register the unmask elements")?;
    Ok(())
}

/// A progress bar on stderr when it is a terminal (hidden otherwise): a bar with rate and ETA
/// when the length is known, a spinner with the rate otherwise.
pub fn progress(len: Option<u64>, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match len {
        Some(n) => {
            let pb = ProgressBar::new(n);
            pb.set_style(
                ProgressStyle::with_template(&format!(
                    "{{bar:40}} {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}} {{msg}}"
                ))
                .expect("valid template"),
            );
            pb
        }
        None => {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} {{pos}} {unit} {{per_sec}} {{elapsed}} {{msg}}"
                ))
                .expect("valid template"),
            );
            pb
        }
    }
}

/// An output of JSON lines: a file, or stdout for `-`; flushed after every line so that an
/// interrupted run keeps everything written so far.
pub struct JsonLines {
    out: Box<dyn Write + Send>,
    pub is_stdout: bool,
}

impl JsonLines {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        if path == Path::new("-") {
            return Ok(Self {
                out: Box::new(LineWriter::new(std::io::stdout())),
                is_stdout: true,
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
        Ok(Self {
            out: Box::new(LineWriter::new(file)),
            is_stdout: false,
        })
    }

    pub fn write<T: serde::Serialize>(&mut self, value: &T) -> anyhow::Result<()> {
        let line = serde_json::to_string(value)?;
        writeln!(self.out, "{line}").context("write a JSON line")?;
        Ok(())
    }
}

/// Writes pretty JSON to a file.
pub fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
}

/// Counts frames entering `unmask` and reads the verdicts leaving it.
///
/// Verdicts come from the `UnmaskMeta` of the buffers leaving the element (a pad probe on its
/// src pad). In async mode a verdict rides on a later buffer, and the last ones of a stream
/// only reach the bus, so [`Tap::on_message`] takes the element's verdict messages too; a
/// verdict is reported once, whichever way it comes first.
#[derive(Clone)]
pub struct Tap {
    inner: Arc<Mutex<TapState>>,
    tx: crossbeam_channel::Sender<FrameRecord>,
}

#[derive(Default)]
struct TapState {
    /// Frames that entered the element.
    frames: u64,
    /// PTS of the last of them.
    last_pts: Option<gst::ClockTime>,
    /// Frames let through at most (later ones are dropped before the element).
    max: Option<u64>,
    /// Whether verdict messages count (async mode).
    messages: bool,
    /// PTS -> (frame number, file) of frames not yet reported.
    index: HashMap<Option<u64>, (u64, Option<String>)>,
    /// Frames already reported (by PTS), the most recent ones.
    reported: HashSet<Option<u64>>,
    reported_order: std::collections::VecDeque<Option<u64>>,
    /// File names by buffer offset (image folders).
    files: Option<Arc<Vec<String>>>,
}

/// How many reported PTS are remembered to drop the second copy of a verdict.
const REMEMBERED: usize = 4096;

impl Tap {
    /// Installs the probes on `unmask`; verdicts arrive on the returned receiver. Frames past
    /// `max` are dropped before the element; with `messages`, [`Tap::on_message`] takes the
    /// element's verdict messages (async mode).
    pub fn install(
        unmask: &gst::Element,
        files: Option<Arc<Vec<String>>>,
        max: Option<u64>,
        messages: bool,
    ) -> (Self, crossbeam_channel::Receiver<FrameRecord>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let tap = Self {
            inner: Arc::new(Mutex::new(TapState {
                files,
                max,
                messages,
                ..TapState::default()
            })),
            tx,
        };
        let sink = unmask.static_pad("sink").expect("unmask has a sink pad");
        let t = tap.clone();
        sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            match info.buffer() {
                Some(buffer) if !t.entered(buffer) => {
                    // Past the limit: consume the buffer here (returning `Drop` makes
                    // GStreamer 1.22 unref a NULL pointer with gstreamer-rs).
                    drop(info.take_buffer());
                    gst::PadProbeReturn::Handled
                }
                _ => gst::PadProbeReturn::Ok,
            }
        });
        let src = unmask.static_pad("src").expect("unmask has a src pad");
        let t = tap.clone();
        src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                for meta in UnmaskMeta::read_all(buffer).into_iter().flatten() {
                    t.verdict(&meta);
                }
            }
            gst::PadProbeReturn::Ok
        });
        (tap, rx)
    }

    /// Counts a frame; `false` when it is past the limit.
    fn entered(&self, buffer: &gst::BufferRef) -> bool {
        let mut s = self.inner.lock().expect("tap lock");
        if s.max.is_some_and(|m| s.frames >= m) {
            return false;
        }
        let n = s.frames;
        s.frames += 1;
        s.last_pts = buffer.pts().or(s.last_pts);
        let file = s.files.as_ref().and_then(|f| {
            let i = usize::try_from(buffer.offset()).ok()?;
            f.get(i).cloned()
        });
        s.index
            .insert(buffer.pts().map(gst::ClockTime::nseconds), (n, file));
        true
    }

    fn verdict(&self, meta: &UnmaskMeta) {
        let key = meta.pts.map(gst::ClockTime::nseconds);
        let mut s = self.inner.lock().expect("tap lock");
        if !s.reported.insert(key) {
            return;
        }
        s.reported_order.push_back(key);
        if s.reported_order.len() > REMEMBERED
            && let Some(old) = s.reported_order.pop_front()
        {
            s.reported.remove(&old);
        }
        let (frame, file) = s
            .index
            .remove(&key)
            .unwrap_or((s.frames.saturating_sub(1), None));
        // Frames before this one that got no verdict will not get one any more.
        if let Some(pts) = key {
            s.index.retain(|k, _| k.is_none_or(|k| k > pts));
        }
        drop(s);
        let _ = self.tx.send(FrameRecord::new(frame, meta, file));
    }

    /// Takes a verdict from an `unmask-alert` / `unmask-verdict` bus message (async mode).
    pub fn on_message(&self, msg: &gst::Message) -> bool {
        if !self.inner.lock().expect("tap lock").messages {
            return false;
        }
        let Some(s) = msg.structure() else {
            return false;
        };
        let name = s.name();
        if name != unmask::elements::unmask::ALERT_MESSAGE
            && name != unmask::elements::unmask::VERDICT_MESSAGE
        {
            return false;
        }
        if let Ok(meta) = UnmaskMeta::from_structure(s) {
            self.verdict(&meta);
        }
        true
    }

    /// Frames that entered the element so far.
    pub fn frames(&self) -> u64 {
        self.inner.lock().expect("tap lock").frames
    }

    /// PTS of the last frame that entered the element.
    pub fn last_pts(&self) -> Option<gst::ClockTime> {
        self.inner.lock().expect("tap lock").last_pts
    }
}

/// Links the video pads of a decodebin / uridecodebin to `target` (the first one only) and
/// every other pad to a fakesink, so that files with audio play; `found` is set once a video
/// pad is linked.
pub fn link_decoded_video(
    decoder: &gst::Element,
    pipeline: &gst::Pipeline,
    target: &gst::Element,
    found: Arc<std::sync::atomic::AtomicBool>,
) {
    let pipeline = pipeline.downgrade();
    let target = target.downgrade();
    decoder.connect_pad_added(move |_, pad| {
        let (Some(pipeline), Some(target)) = (pipeline.upgrade(), target.upgrade()) else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_video = caps
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/"));
        let sink = target.static_pad("sink").expect("converter sink pad");
        if is_video && !sink.is_linked() {
            if pad.link(&sink).is_ok() {
                found.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            return;
        }
        // Other streams (audio, subtitles, a second video) are dropped.
        if let Ok(fake) = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            && pipeline.add(&fake).is_ok()
        {
            let _ = fake.sync_state_with_parent();
            if let Some(p) = fake.static_pad("sink") {
                let _ = pad.link(&p);
            }
        }
    });
}

/// Elements that write an annotated copy to `path`, by extension: `.mkv` lossless FFV1 in
/// Matroska, `.webm` VP8 in WebM, `.avi` MJPEG in AVI (small, lossy).
pub fn encoder_chain(path: &Path) -> anyhow::Result<Vec<gst::Element>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let (format, encoder, mux) = match ext.as_str() {
        "mkv" => ("BGRx", "avenc_ffv1", "matroskamux"),
        "webm" => ("I420", "vp8enc", "webmmux"),
        "avi" => ("I420", "jpegenc", "avimux"),
        _ => bail!(
            "cannot write {}: use .mkv (lossless FFV1), .webm (VP8) or .avi (MJPEG)",
            path.display()
        ),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let convert = make_element("videoconvert")?;
    let caps = make_element("capsfilter")?;
    caps.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", format)
            .build(),
    );
    let encoder = make_element(encoder)?;
    if ext == "webm" {
        encoder.set_property("deadline", 1i64);
        encoder.set_property("target-bitrate", 2_000_000i32);
    }
    let mux = make_element(mux)?;
    let sink = make_element("filesink")?;
    sink.set_property("location", path.to_string_lossy().to_string());
    Ok(vec![convert, caps, encoder, mux, sink])
}

/// The text and source element of an error message (with the useful part of the debug
/// text, without GStreamer's source-code location).
pub fn error_text(msg: &gst::Message) -> Option<(String, Option<String>)> {
    match msg.view() {
        gst::MessageView::Error(e) => {
            let debug = e.debug().map(|d| d.to_string()).unwrap_or_default();
            let src = msg.src().map(|s| s.path_string().to_string());
            let detail = debug
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !is_code_location(l));
            let text = match detail {
                Some(d) => format!("{} ({d})", e.error()),
                None => e.error().to_string(),
            };
            Some((text, src))
        }
        _ => None,
    }
}

/// `../plugins/elements/gsttypefindelement.c(1186): gst_type_find_element_loop (): /GstPipeline…`
fn is_code_location(line: &str) -> bool {
    line.split_once("): ").is_some_and(|(head, _)| {
        head.rsplit_once('(')
            .is_some_and(|(file, n)| file.contains('.') && n.chars().all(|c| c.is_ascii_digit()))
    })
}

/// Ctrl-C (SIGINT) and SIGTERM: the first one sets the returned flag (the caller stops the
/// stream cleanly), a second one exits at once with status 130.
pub fn interrupt_flag() -> Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let installed = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("unmask: interrupted again, exiting");
            std::process::exit(130);
        }
        eprintln!("unmask: stopping (Ctrl-C again to exit at once)");
    });
    if let Err(e) = installed {
        eprintln!("unmask: warning: cannot handle Ctrl-C: {e}");
    }
    flag
}
