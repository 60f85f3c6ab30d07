//! `unmask watch`: monitor a live camera (V4L2, RTSP/HTTP, any launch-line source, or a
//! recorded clip replayed in real time) through the `unmask` element, with alerts when a
//! flagged segment starts and ends, an optional on-screen display, reconnection with
//! back-off, and a clean stop on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use gst::prelude::*;
use serde_json::json;
use unmask::clip::make_element;
use unmask::report::{Alert, Debouncer, FrameRecord, SummaryBuilder, rfc3339};

use super::common::{
    DetectorArgs, JsonLines, Mode, Tap, encoder_chain, error_text, init_gstreamer, interrupt_flag,
    link_decoded_video, progress,
};

/// Arguments of `unmask watch`.
#[derive(Debug, Args)]
#[command(
    after_help = "SOURCE is a V4L2 device (/dev/video0), an rtsp:// or http(s):// URI, \
    a video file (replayed in real time as a live camera), or a gst-launch fragment that \
    produces video, e.g. \"videotestsrc is-live=true\".\n\n\
    Exit status: 0 stopped (end of stream, --duration, --max-frames or Ctrl-C); 1 \
    --fail-on-flag and some frame was flagged; 2 error (models that do not load, bad options, \
    the source failed more than --max-retries times in a row)."
)]
pub struct WatchArgs {
    /// The camera or stream to watch (see below).
    #[arg(short, long, value_name = "SOURCE")]
    source: String,
    #[command(flatten)]
    detector: DetectorArgs,
    /// async: the camera is never slowed down, frames are analysed as fast as the models
    /// allow; sync: every frame waits for its verdict.
    #[arg(long, value_enum, default_value = "async")]
    mode: Mode,
    /// Write alerts as JSON lines here ("-": stdout).
    #[arg(long, value_name = "FILE")]
    alerts: Option<PathBuf>,
    /// Write every verdict as JSON lines here ("-": stdout), like `unmask scan --report`.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Consecutive flagged analysed frames that start a flagged segment.
    #[arg(long, default_value_t = 3, value_name = "N")]
    start_after: u32,
    /// Consecutive clean analysed frames that end it.
    #[arg(long, default_value_t = 5, value_name = "N")]
    end_after: u32,
    /// Show the video with the verdicts drawn on it (unmaskoverlay ! autovideosink).
    #[arg(long)]
    display: bool,
    /// Video sink for --display, as a launch-line fragment.
    #[arg(long, default_value = "autovideosink", value_name = "SINK")]
    display_sink: String,
    /// Also record the annotated video (.mkv lossless, .webm, .avi).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Stop after this many frames.
    #[arg(long, value_name = "N")]
    max_frames: Option<u64>,
    /// First reconnection delay in seconds (doubles after each failure).
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    retry_delay: f64,
    /// Longest reconnection delay in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    max_retry_delay: f64,
    /// Give up after this many failures in a row (0: never).
    #[arg(long, default_value_t = 0, value_name = "N")]
    max_retries: u32,
    /// Reconnect when the stream ends (EOS) instead of stopping.
    #[arg(long)]
    reconnect_on_eos: bool,
    /// Exit with status 1 when any frame was flagged.
    #[arg(long)]
    fail_on_flag: bool,
    /// Print only alerts and errors.
    #[arg(short, long)]
    quiet: bool,
}

/// Where the video comes from.
#[derive(Debug, Clone)]
enum Source {
    V4l2(String),
    Uri(String),
    Replay(PathBuf),
    Launch(String),
}

impl Source {
    fn parse(s: &str) -> Self {
        let path = Path::new(s);
        if s.starts_with("/dev/") {
            Self::V4l2(s.to_owned())
        } else if let Some(file) = s.strip_prefix("file://") {
            Self::Replay(PathBuf::from(file))
        } else if s.contains("://") {
            Self::Uri(s.to_owned())
        } else if !s.contains(' ') && !s.contains('!') && path.is_file() {
            Self::Replay(path.to_owned())
        } else {
            Self::Launch(s.to_owned())
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::V4l2(d) => format!("camera {d}"),
            Self::Uri(u) => u.clone(),
            Self::Replay(p) => format!("{} (replayed in real time)", p.display()),
            Self::Launch(l) => format!("\"{l}\""),
        }
    }
}

/// Runs `unmask watch`.
pub fn run(a: WatchArgs) -> anyhow::Result<ExitCode> {
    init_gstreamer()?;
    if a.retry_delay <= 0.0 || a.max_retry_delay < a.retry_delay {
        bail!("--retry-delay must be positive and at most --max-retry-delay");
    }
    let source = Source::parse(&a.source);
    if let Source::Replay(p) = &source
        && !p.is_file()
    {
        bail!("{}: no such file", p.display());
    }
    let mut alerts = a.alerts.as_deref().map(JsonLines::create).transpose()?;
    let mut report = a.report.as_deref().map(JsonLines::create).transpose()?;
    let stdout_taken = alerts.as_ref().is_some_and(|j| j.is_stdout)
        || report.as_ref().is_some_and(|j| j.is_stdout);
    let say = move |line: &str| {
        if stdout_taken {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let interrupted = interrupt_flag();
    let started = Instant::now();
    let deadline = a
        .duration
        .map(|d| started + Duration::from_secs_f64(d.max(0.0)));
    let mut debouncer = Debouncer::new(a.start_after, a.end_after);
    let mut summary = SummaryBuilder::new();
    let mut frames_total = 0u64;
    let mut failures = 0u32;
    let mut delay = a.retry_delay;
    let pb = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        progress(None, "frames")
    };
    if !a.quiet {
        say(&format!(
            "watching {} ({} mode); Ctrl-C to stop",
            source.describe(),
            match a.mode {
                Mode::Async => "async",
                Mode::Sync => "sync",
            }
        ));
    }
    let emit = |alert: Alert, alerts: &mut Option<JsonLines>| -> anyhow::Result<()> {
        let line = match &alert {
            Alert::Start {
                time,
                frame,
                predicted,
                corrected,
                similarity,
            } => format!(
                "ALERT: adversarial frames from {} (frame {frame}): classifier says {predicted}, \
                 parts say {corrected} (similarity {similarity:.2})",
                fmt_time(*time)
            ),
            Alert::End {
                start,
                end,
                flagged,
                corrected,
                reason,
                ..
            } => format!(
                "ALERT END: flagged segment {} - {} over ({reason}): {flagged} frames flagged, \
                 mostly corrected to {corrected}",
                fmt_time(*start),
                fmt_time(*end)
            ),
        };
        pb.suspend(|| say(&line));
        if let Some(out) = alerts {
            let mut v = serde_json::to_value(&alert)?;
            v["wallclock"] = json!(rfc3339(SystemTime::now()));
            v["source"] = json!(a.source);
            out.write(&v)?;
        }
        Ok(())
    };

    let stop_now = |frames: u64| {
        interrupted.load(Ordering::SeqCst)
            || deadline.is_some_and(|d| Instant::now() >= d)
            || a.max_frames.is_some_and(|m| frames >= m)
    };
    let outcome: anyhow::Result<()> = loop {
        if stop_now(frames_total) {
            break Ok(());
        }
        let left = a.max_frames.map(|m| m.saturating_sub(frames_total));
        let conn = match Connection::build(&a, &source, left) {
            Ok(c) => c,
            Err(e) => break Err(e),
        };
        let run = conn.run(
            &a,
            &pb,
            &interrupted,
            deadline,
            frames_total,
            |r: FrameRecord| -> anyhow::Result<()> {
                if let Some(rep) = &mut report {
                    rep.write(&r)?;
                }
                summary.push(&r);
                if let Some(alert) = debouncer.push(&r) {
                    emit(alert, &mut alerts)?;
                }
                Ok(())
            },
        );
        frames_total += conn.tap.frames();
        match run {
            Ok(End::Stopped) => break Ok(()),
            Ok(End::Eos) if !a.reconnect_on_eos => break Ok(()),
            Ok(End::Eos) => {
                pb.suspend(|| eprintln!("unmask: the stream ended; reconnecting"));
            }
            Err(Failure::Fatal(e)) => break Err(e),
            Err(Failure::Source(e)) => {
                if conn.tap.frames() > 0 {
                    failures = 0;
                    delay = a.retry_delay;
                }
                failures += 1;
                if let Some(alert) = debouncer.close("source-lost") {
                    emit(alert, &mut alerts)?;
                }
                if a.max_retries > 0 && failures > a.max_retries {
                    break Err(e.context(format!("gave up after {} failures", failures)));
                }
                pb.suspend(|| {
                    eprintln!(
                        "unmask: source error: {e:#}; reconnecting in {delay:.1} s (failure {failures})"
                    )
                });
                let until = Instant::now() + Duration::from_secs_f64(delay);
                while Instant::now() < until && !stop_now(frames_total) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                delay = (delay * 2.0).min(a.max_retry_delay);
            }
        }
    };
    pb.finish_and_clear();
    if let Some(alert) = debouncer.close("stopped") {
        emit(alert, &mut alerts)?;
    }
    let summary = summary.finish(frames_total);
    if !a.quiet {
        say(&format!(
            "watched for {:.1} s: {} frames, {} analysed, {} flagged, {} flagged segments",
            started.elapsed().as_secs_f64(),
            summary.frames,
            summary.analysed,
            summary.flagged,
            summary.segments.len()
        ));
    }
    match outcome {
        Err(e) => {
            eprintln!("unmask: error: {e:#}");
            Ok(ExitCode::from(2))
        }
        Ok(()) if a.fail_on_flag && summary.flagged > 0 => Ok(ExitCode::from(1)),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

fn fmt_time(t: Option<f64>) -> String {
    t.map_or("?".into(), |t| format!("{t:.2} s"))
}

/// How a connection ended.
enum End {
    /// The source ended the stream.
    Eos,
    /// Stopped on request (Ctrl-C, --duration, --max-frames).
    Stopped,
}

enum Failure {
    /// The source failed: reconnect.
    Source(anyhow::Error),
    /// Anything else (models, outputs): give up.
    Fatal(anyhow::Error),
}

/// One pipeline from the source to the outputs.
struct Connection {
    pipeline: gst::Pipeline,
    tap: Tap,
    records: crossbeam_channel::Receiver<FrameRecord>,
    replay: Option<Replay>,
    /// Names of the elements whose errors are not the source's.
    ours: Vec<String>,
}

impl Connection {
    fn build(a: &WatchArgs, source: &Source, max_frames: Option<u64>) -> anyhow::Result<Self> {
        let pipeline = gst::Pipeline::with_name("unmask-watch");
        let convert = make_element("videoconvert")?;
        let unmask = a.detector.element(a.mode, 1)?;
        unmask.set_property_from_str("post-messages", "all");
        pipeline.add_many([&convert, &unmask])?;
        convert.link(&unmask)?;
        let mut replay = None;
        match source {
            Source::V4l2(device) => {
                let src = make_element("v4l2src")?;
                src.set_property("device", device);
                let decode = make_element("decodebin")?;
                pipeline.add_many([&src, &decode])?;
                src.link(&decode)?;
                link_decoded_video(&decode, &pipeline, &convert, Default::default());
            }
            Source::Uri(uri) => {
                let decode = make_element("uridecodebin")?;
                decode.set_property("uri", uri);
                pipeline.add(&decode)?;
                link_decoded_video(&decode, &pipeline, &convert, Default::default());
            }
            Source::Launch(fragment) => {
                // The identity at the end makes trailing caps ("… ! video/x-raw,width=…")
                // valid and gives sources with dynamic pads (decodebin) a static one.
                let bin = gst::parse::bin_from_description(&format!("{fragment} ! identity"), true)
                    .with_context(|| format!("--source \"{fragment}\""))?;
                if bin.static_pad("src").is_none() {
                    bail!(
                        "--source \"{fragment}\" must end with an element whose video output is \
                         not linked"
                    );
                }
                let decode = make_element("decodebin")?;
                pipeline.add_many([bin.upcast_ref(), &decode])?;
                bin.link(&decode)?;
                link_decoded_video(&decode, &pipeline, &convert, Default::default());
            }
            Source::Replay(path) => {
                let r = Replay::new(path)?;
                pipeline.add(&r.appsrc)?;
                r.appsrc.link(&convert)?;
                replay = Some(r);
            }
        }
        let mut ours = vec![unmask.name().to_string()];
        let tee = make_element("tee")?;
        pipeline.add(&tee)?;
        if a.display || a.record.is_some() {
            let overlay = make_element("unmaskoverlay")?;
            pipeline.add(&overlay)?;
            gst::Element::link_many([&unmask, &overlay, &tee])?;
            ours.push(overlay.name().to_string());
        } else {
            unmask.link(&tee)?;
        }
        let mut branches: Vec<Vec<gst::Element>> = Vec::new();
        if a.display {
            let sink = gst::parse::bin_from_description(&a.display_sink, true)
                .with_context(|| format!("--display-sink \"{}\"", a.display_sink))?;
            branches.push(vec![
                make_element("queue")?,
                make_element("videoconvert")?,
                sink.upcast(),
            ]);
        }
        if let Some(path) = &a.record {
            let mut chain = vec![make_element("queue")?];
            chain.extend(encoder_chain(path)?);
            branches.push(chain);
        }
        if branches.is_empty() {
            let sink = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .property("async", false)
                .build()?;
            branches.push(vec![sink]);
        }
        for chain in &branches {
            pipeline.add_many(chain)?;
            gst::Element::link_many(chain)?;
            tee.link(&chain[0])?;
            ours.extend(chain.iter().map(|e| e.name().to_string()));
        }
        ours.push(tee.name().to_string());
        let (tap, records) = Tap::install(&unmask, None, max_frames, a.mode == Mode::Async);
        Ok(Self {
            pipeline,
            tap,
            records,
            replay,
            ours,
        })
    }

    fn run(
        &self,
        a: &WatchArgs,
        pb: &indicatif::ProgressBar,
        interrupted: &AtomicBool,
        deadline: Option<Instant>,
        frames_before: u64,
        mut on_record: impl FnMut(FrameRecord) -> anyhow::Result<()>,
    ) -> Result<End, Failure> {
        // Frame numbers count on across reconnections.
        let mut on_record = |r: FrameRecord| {
            on_record(FrameRecord {
                frame: frames_before + r.frame,
                ..r
            })
        };
        let result = self.play(a, pb, interrupted, deadline, frames_before, &mut on_record);
        if let Some(r) = &self.replay {
            r.stop();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        while let Ok(r) = self.records.try_recv() {
            on_record(r).map_err(Failure::Fatal)?;
        }
        result
    }

    fn play(
        &self,
        a: &WatchArgs,
        pb: &indicatif::ProgressBar,
        interrupted: &AtomicBool,
        deadline: Option<Instant>,
        frames_before: u64,
        on_record: &mut impl FnMut(FrameRecord) -> anyhow::Result<()>,
    ) -> Result<End, Failure> {
        let bus = self.pipeline.bus().expect("pipeline bus");
        if self.pipeline.set_state(gst::State::Playing).is_err() {
            // The reason is on the bus.
            let msg =
                bus.timed_pop_filtered(gst::ClockTime::from_seconds(2), &[gst::MessageType::Error]);
            return Err(match msg {
                Some(m) => self.classify_error(&m),
                None => Failure::Source(anyhow!("the pipeline does not start")),
            });
        }
        if let Some(r) = &self.replay {
            r.start(&self.pipeline).map_err(Failure::Source)?;
        }
        let mut stop_sent: Option<Instant> = None;
        loop {
            while let Ok(r) = self.records.try_recv() {
                on_record(r).map_err(Failure::Fatal)?;
            }
            let frames = frames_before + self.tap.frames();
            pb.set_position(frames);
            let stop = interrupted.load(Ordering::SeqCst)
                || deadline.is_some_and(|d| Instant::now() >= d)
                || a.max_frames.is_some_and(|m| frames >= m);
            match stop_sent {
                None if stop => {
                    stop_sent = Some(Instant::now());
                    if let Some(r) = &self.replay {
                        r.stop();
                    }
                    self.pipeline.send_event(gst::event::Eos::new());
                }
                // A source that ignores EOS: stop anyway.
                Some(t) if t.elapsed() > Duration::from_secs(5) => return Ok(End::Stopped),
                _ => {}
            }
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Eos(_) => {
                    return Ok(if stop_sent.is_some() {
                        End::Stopped
                    } else {
                        End::Eos
                    });
                }
                gst::MessageView::Error(_) => {
                    if stop_sent.is_some() {
                        return Ok(End::Stopped);
                    }
                    return Err(self.classify_error(&msg));
                }
                gst::MessageView::Warning(w) if !a.quiet => {
                    pb.suspend(|| eprintln!("unmask: warning: {}", w.error()));
                }
                gst::MessageView::Element(_) => {
                    self.tap.on_message(&msg);
                }
                _ => {}
            }
        }
    }

    /// Errors of the source (or of decoding it) are worth a reconnection; the others are not.
    fn classify_error(&self, msg: &gst::Message) -> Failure {
        let (text, src) = error_text(msg).unwrap_or_default();
        // Ours: one of the elements we added, or inside one of them (the sink that
        // `autovideosink` picked, the encoder inside a bin).
        let is_ours = |o: &gst::Object| self.ours.iter().any(|n| n.as_str() == o.name().as_str());
        let ours = msg.src().is_some_and(|s| {
            std::iter::successors(Some(s.clone()), |o| o.parent()).any(|o| is_ours(&o))
        });
        let src = src.unwrap_or_default();
        if ours {
            Failure::Fatal(anyhow!("{src}: {text}"))
        } else {
            Failure::Source(anyhow!("{text}"))
        }
    }
}

/// A recorded clip replayed in real time as a live camera: a decoding pipeline paced by its
/// clock (`appsink sync=true`) feeds `appsrc is-live=true do-timestamp=true`, which stamps
/// each frame with the watching pipeline's running time on arrival, like a camera does.
struct Replay {
    appsrc: gst_app::AppSrc,
    decoder: gst::Pipeline,
    done: Arc<AtomicBool>,
}

impl Replay {
    fn new(path: &Path) -> anyhow::Result<Self> {
        let abs = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
        let uri = gst::glib::filename_to_uri(&abs, None)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let appsrc = gst_app::AppSrc::builder()
            .name("replay")
            .is_live(true)
            .do_timestamp(true)
            .format(gst::Format::Time)
            .max_buffers(4)
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .build();
        let decoder = gst::Pipeline::with_name("unmask-replay");
        let decode = make_element("uridecodebin")?;
        decode.set_property("uri", uri.as_str());
        let convert = make_element("videoconvert")?;
        let sink = gst_app::AppSink::builder().sync(true).build();
        decoder.add_many([&decode, &convert, sink.upcast_ref()])?;
        convert.link(&sink)?;
        link_decoded_video(&decode, &decoder, &convert, Default::default());
        let src = appsrc.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer_owned() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    // The live source stamps frames itself.
                    let mut buffer = buffer;
                    {
                        let b = buffer.make_mut();
                        b.set_pts(gst::ClockTime::NONE);
                        b.set_dts(gst::ClockTime::NONE);
                    }
                    let caps = sample.caps().map(|c| c.to_owned());
                    let mut out = gst::Sample::builder().buffer(&buffer);
                    if let Some(caps) = &caps {
                        out = out.caps(caps);
                    }
                    src.push_sample(&out.build())
                })
                .build(),
        );
        Ok(Self {
            appsrc,
            decoder,
            done: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Starts decoding; the end of the clip ends the live stream, a decoding error fails it.
    fn start(&self, _watch: &gst::Pipeline) -> anyhow::Result<()> {
        self.decoder
            .set_state(gst::State::Playing)
            .context("start replaying")?;
        let bus = self.decoder.bus().context("replay bus")?;
        let appsrc = self.appsrc.clone();
        let done = self.done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
                    continue;
                };
                match msg.view() {
                    gst::MessageView::Eos(_) => {
                        let _ = appsrc.end_of_stream();
                        return;
                    }
                    gst::MessageView::Error(e) => {
                        gst::element_error!(
                            appsrc,
                            gst::ResourceError::Read,
                            ("Cannot replay the clip: {}", e.error())
                        );
                        return;
                    }
                    _ => {}
                }
            }
        });
        Ok(())
    }

    fn stop(&self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.decoder.set_state(gst::State::Null);
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.stop();
    }
}
