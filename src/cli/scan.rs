//! `unmask scan`: analyse recorded video (a file, a folder of images or a URI) through the
//! `unmask` element, with a JSON-lines report, a summary, an optional annotated copy and an
//! optional comparison with the ground truth of `unmask attack`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use gst::prelude::*;
use gst_video::prelude::*;
use serde_json::json;
use unmask::clip::{make_element, rgb_stride};
use unmask::report::{FrameRecord, SummaryBuilder, Truth, TruthComparison};

use super::common::{
    DetectorArgs, JsonLines, Mode, Tap, encoder_chain, error_text, init_gstreamer, interrupt_flag,
    link_decoded_video, progress, write_json,
};

/// Exit status: analysis finished.
pub const EXIT_OK: u8 = 0;
/// Exit status: `--fail-on-flag` and at least one frame was flagged.
pub const EXIT_FLAGGED: u8 = 1;
/// Exit status: an error (missing or unreadable input, broken or truncated file, unsupported
/// format, models that do not load, bad options).
pub const EXIT_ERROR: u8 = 2;
/// Exit status: stopped with Ctrl-C before the end.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Image files a folder scan takes.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Arguments of `unmask scan`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 finished; 1 --fail-on-flag and some frame was flagged; \
    2 error (missing, broken, truncated or unsupported input, models that do not load, bad \
    options; the report keeps every frame analysed before the fault); 130 interrupted (Ctrl-C)."
)]
pub struct ScanArgs {
    /// A video file, a folder of images (PNG/JPEG, in name order) or a URI GStreamer reads
    /// (file://, http(s)://, rtsp://, …).
    input: String,
    #[command(flatten)]
    detector: DetectorArgs,
    /// sync: every frame waits for its verdict; async: frames flow on and some may not be
    /// analysed.
    #[arg(long, value_enum, default_value = "sync")]
    mode: Mode,
    /// Write the JSON-lines report here: one line per analysed frame ("-": stdout).
    #[arg(short, long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write the summary as JSON here.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Write an annotated copy (unmaskoverlay): .mkv lossless FFV1, .webm VP8 or .avi MJPEG;
    /// for a folder of images, a folder of annotated PNGs.
    #[arg(long, value_name = "PATH")]
    annotate: Option<PathBuf>,
    /// Compare the verdicts with this ground truth (the .json written by `unmask attack`).
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
    /// Print one line per analysed frame.
    #[arg(long)]
    frames: bool,
    /// Exit with status 1 when any frame is flagged.
    #[arg(long)]
    fail_on_flag: bool,
    /// Stop after this many frames.
    #[arg(long, value_name = "N")]
    max_frames: Option<u64>,
    /// Frame rate given to the images of a folder (their timestamps in the report).
    #[arg(long, default_value_t = 1, value_name = "FPS")]
    image_fps: u32,
    /// Print nothing but errors (the report and summary files are still written).
    #[arg(short, long)]
    quiet: bool,
}

/// What is scanned.
enum Input {
    Uri(String),
    Images(Vec<PathBuf>),
}

fn classify(input: &str) -> anyhow::Result<Input> {
    if input.contains("://") {
        return Ok(Input::Uri(input.to_owned()));
    }
    let path = Path::new(input);
    let meta =
        std::fs::metadata(path).with_context(|| format!("{input}: no such file or folder"))?;
    if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("read folder {input}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
                    })
            })
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("{input}: the folder has no PNG or JPEG images");
        }
        return Ok(Input::Images(files));
    }
    if meta.len() == 0 {
        bail!("{input}: the file is empty");
    }
    let abs = std::fs::canonicalize(path).with_context(|| input.to_string())?;
    let uri = gst::glib::filename_to_uri(&abs, None)
        .map_err(|e| anyhow!("{input}: cannot make a URI: {e}"))?;
    Ok(Input::Uri(uri.to_string()))
}

/// Runs `unmask scan`.
pub fn run(a: ScanArgs) -> anyhow::Result<ExitCode> {
    init_gstreamer()?;
    if a.image_fps == 0 {
        bail!("--image-fps must be at least 1");
    }
    let input = classify(&a.input)?;
    let truth = a.truth.as_deref().map(Truth::load).transpose()?;
    let mut report = a.report.as_deref().map(JsonLines::create).transpose()?;
    let to_stdout = report.as_ref().is_some_and(|r| r.is_stdout);
    let say = |line: &str| {
        if to_stdout {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };

    let scan = Scan::build(&a, &input)?;
    let interrupted = interrupt_flag();
    let started = Instant::now();
    let pb = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        progress(
            match &input {
                Input::Images(f) => Some(f.len() as u64),
                Input::Uri(_) => None,
            }
            .map(|n| a.max_frames.map_or(n, |m| m.min(n))),
            "frames",
        )
    };
    let mut summary = SummaryBuilder::new();
    let mut records: Vec<FrameRecord> = Vec::new();
    let mut handle = |r: FrameRecord,
                      report: &mut Option<JsonLines>,
                      summary: &mut SummaryBuilder|
     -> anyhow::Result<()> {
        if let Some(rep) = report {
            rep.write(&r)?;
        }
        if a.frames && !a.quiet {
            pb.suspend(|| say(&r.line()));
        }
        summary.push(&r);
        records.push(r);
        Ok(())
    };

    let outcome = scan.run(&a, &pb, &interrupted, |r| {
        handle(r, &mut report, &mut summary)
    });
    pb.finish_and_clear();
    let elapsed = started.elapsed();
    let frames = scan.tap.frames();
    let summary = summary.finish(frames);
    let comparison = truth
        .as_ref()
        .map(|t| TruthComparison::compute(&records, t));

    let (status, error) = match &outcome {
        Ok(Finish::Eos) => ("ok", None),
        Ok(Finish::Interrupted) => ("interrupted", None),
        Err(e) => ("error", Some(format!("{e:#}"))),
    };
    if let Some(path) = &a.summary {
        let mut v = serde_json::to_value(&summary)?;
        let o = v.as_object_mut().expect("summary is an object");
        o.insert("input".into(), json!(a.input));
        o.insert("status".into(), json!(status));
        o.insert("error".into(), json!(error));
        o.insert("elapsed_s".into(), json!(elapsed.as_secs_f64()));
        o.insert("report".into(), json!(a.report));
        o.insert("annotated".into(), json!(a.annotate));
        o.insert("truth".into(), json!(comparison));
        write_json(path, &v)?;
    }
    if !a.quiet {
        say(&format!(
            "scanned {} in {:.1} s ({:.1} frames/s)",
            a.input,
            elapsed.as_secs_f64(),
            frames as f64 / elapsed.as_secs_f64().max(1e-9)
        ));
        for l in summary.lines() {
            say(&l);
        }
        if let (Some(c), Some(t)) = (&comparison, &truth) {
            say("attacked frames (ground truth) against flagged frames (verdicts):");
            for l in unmask::report::timeline(&records, t, 100) {
                say(&l);
            }
            say("compared with the ground truth:");
            for l in c.lines() {
                say(&format!("  {l}"));
            }
        }
        for (what, path) in [
            ("report", &a.report),
            ("summary", &a.summary),
            ("annotated copy", &a.annotate),
        ] {
            if let Some(p) = path.as_ref().filter(|p| p.as_path() != Path::new("-")) {
                say(&format!("{what}: {}", p.display()));
            }
        }
    }
    for e in &scan.skipped() {
        eprintln!("unmask: error: {e}");
    }
    match outcome {
        Err(e) => {
            eprintln!("unmask: error: {e:#}");
            eprintln!(
                "unmask: {} frames were analysed before the error{}",
                summary.analysed,
                if a.report.is_some() {
                    " (they are in the report)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::from(EXIT_ERROR))
        }
        Ok(_) if !scan.skipped().is_empty() => Ok(ExitCode::from(EXIT_ERROR)),
        Ok(Finish::Interrupted) => Ok(ExitCode::from(EXIT_INTERRUPTED)),
        Ok(Finish::Eos) if a.fail_on_flag && summary.flagged > 0 => {
            Ok(ExitCode::from(EXIT_FLAGGED))
        }
        Ok(Finish::Eos) => Ok(ExitCode::from(EXIT_OK)),
    }
}

enum Finish {
    Eos,
    Interrupted,
}

/// The scanning pipeline.
struct Scan {
    pipeline: gst::Pipeline,
    unmask: gst::Element,
    tap: Tap,
    records: crossbeam_channel::Receiver<FrameRecord>,
    /// File inputs: whether a video stream was found.
    video_found: Option<Arc<AtomicBool>>,
    /// Image folders: the feeder thread's work.
    feeder: Option<Feeder>,
    skipped: Arc<std::sync::Mutex<Vec<String>>>,
}

struct Feeder {
    src: gst_app::AppSrc,
    files: Vec<PathBuf>,
    fps: u32,
    max: Option<u64>,
}

impl Scan {
    fn build(a: &ScanArgs, input: &Input) -> anyhow::Result<Self> {
        let pipeline = gst::Pipeline::with_name("unmask-scan");
        let convert = make_element("videoconvert")?;
        let unmask = a.detector.element(a.mode, 2)?;
        if a.mode == Mode::Async {
            // The last verdicts of a stream only reach the bus.
            unmask.set_property_from_str("post-messages", "all");
        }
        pipeline.add_many([&convert, &unmask])?;
        convert.link(&unmask)?;

        let skipped = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (video_found, feeder, files) = match input {
            Input::Uri(uri) => {
                let decode = make_element("uridecodebin")?;
                decode.set_property("uri", uri);
                pipeline.add(&decode)?;
                let found = Arc::new(AtomicBool::new(false));
                link_decoded_video(&decode, &pipeline, &convert, found.clone());
                (Some(found), None, None)
            }
            Input::Images(files) => {
                let src = gst_app::AppSrc::builder()
                    .name("images")
                    .format(gst::Format::Time)
                    .block(true)
                    .max_buffers(2)
                    .build();
                pipeline.add(&src)?;
                src.link(&convert)?;
                let names: Vec<String> = files
                    .iter()
                    .map(|f| {
                        f.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect();
                let feeder = Feeder {
                    src,
                    files: files.clone(),
                    fps: a.image_fps,
                    max: a.max_frames,
                };
                (None, Some(feeder), Some(Arc::new(names)))
            }
        };

        match (&a.annotate, files.as_ref()) {
            (Some(dir), Some(names)) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("create {}", dir.display()))?;
                let overlay = make_element("unmaskoverlay")?;
                let conv = make_element("videoconvert")?;
                let sink = gst_app::AppSink::builder()
                    .caps(
                        &gst::Caps::builder("video/x-raw")
                            .field("format", "RGB")
                            .build(),
                    )
                    .sync(false)
                    .build();
                let names = names.clone();
                let dir = dir.clone();
                let skipped = skipped.clone();
                sink.set_callbacks(
                    gst_app::AppSinkCallbacks::builder()
                        .new_sample(move |sink| {
                            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                            if let Err(e) = save_png(&sample, &names, &dir) {
                                skipped.lock().expect("lock").push(format!("{e:#}"));
                            }
                            Ok(gst::FlowSuccess::Ok)
                        })
                        .build(),
                );
                pipeline.add_many([&overlay, &conv, sink.upcast_ref()])?;
                gst::Element::link_many([&unmask, &overlay, &conv, sink.upcast_ref()])?;
            }
            (Some(path), None) => {
                let overlay = make_element("unmaskoverlay")?;
                let chain = encoder_chain(path)?;
                pipeline.add(&overlay)?;
                pipeline.add_many(&chain)?;
                unmask.link(&overlay)?;
                overlay.link(&chain[0])?;
                gst::Element::link_many(&chain)?;
            }
            (None, _) => {
                let sink = gst::ElementFactory::make("fakesink")
                    .property("sync", false)
                    .build()?;
                pipeline.add(&sink)?;
                unmask.link(&sink)?;
            }
        }
        let (tap, records) = Tap::install(&unmask, files, a.max_frames, a.mode == Mode::Async);
        Ok(Self {
            pipeline,
            unmask,
            tap,
            records,
            video_found,
            feeder,
            skipped,
        })
    }

    /// Input images that could not be read (or annotated).
    fn skipped(&self) -> Vec<String> {
        self.skipped.lock().expect("lock").clone()
    }

    /// Plays the pipeline to the end, handing every verdict to `on_record`.
    fn run(
        &self,
        a: &ScanArgs,
        pb: &indicatif::ProgressBar,
        interrupted: &AtomicBool,
        mut on_record: impl FnMut(FrameRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<Finish> {
        let bus = self.pipeline.bus().context("pipeline bus")?;
        let result = self.play(a, pb, interrupted, &bus, &mut on_record);
        let _ = self.pipeline.set_state(gst::State::Null);
        // Verdicts still in the channel were analysed before the end or the fault.
        while let Ok(r) = self.records.try_recv() {
            on_record(r)?;
        }
        result
    }

    fn play(
        &self,
        a: &ScanArgs,
        pb: &indicatif::ProgressBar,
        interrupted: &AtomicBool,
        bus: &gst::Bus,
        on_record: &mut impl FnMut(FrameRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<Finish> {
        if let Err(e) = self.pipeline.set_state(gst::State::Playing) {
            return Err(self
                .bus_error(bus)
                .unwrap_or_else(|| anyhow!("cannot start the pipeline: {e}")));
        }
        let feeder = self.feeder.as_ref().map(|f| {
            let src = f.src.clone();
            let files = f.files.clone();
            let (fps, max) = (f.fps, f.max);
            let skipped = self.skipped.clone();
            std::thread::spawn(move || feed_images(&src, &files, fps, max, &skipped))
        });
        let mut stopping = false;
        let mut duration: Option<gst::ClockTime> = None;
        let mut frame_duration: Option<gst::ClockTime> = None;
        let finish = loop {
            while let Ok(r) = self.records.try_recv() {
                on_record(r)?;
            }
            pb.set_position(self.tap.frames());
            if pb.length().is_none() && self.feeder.is_none() {
                duration = duration.or_else(|| self.pipeline.query_duration::<gst::ClockTime>());
                frame_duration = frame_duration.or_else(|| self.frame_duration());
                if let (Some(d), Some(f)) = (duration, frame_duration) {
                    let n = (d.nseconds() as f64 / f.nseconds() as f64).round() as u64;
                    pb.set_length(a.max_frames.map_or(n, |m| m.min(n)));
                }
            }
            let stop = interrupted.load(Ordering::SeqCst)
                || a.max_frames.is_some_and(|m| self.tap.frames() >= m);
            if stop && !stopping {
                stopping = true;
                if let Some(f) = &self.feeder {
                    let _ = f.src.end_of_stream();
                } else {
                    self.pipeline.send_event(gst::event::Eos::new());
                }
            }
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Eos(_) => {
                    break if interrupted.load(Ordering::SeqCst) {
                        Finish::Interrupted
                    } else {
                        Finish::Eos
                    };
                }
                gst::MessageView::Error(e) => {
                    let (text, _) = error_text(&msg).unwrap_or_default();
                    if is_ours(&msg) {
                        // The element's own messages name the file or setting at fault.
                        bail!("{}", e.error());
                    }
                    let what = if e.error().matches(gst::StreamError::TypeNotFound) {
                        "unsupported or unrecognised format"
                    } else if e.error().matches(gst::StreamError::CodecNotFound)
                        || e.error().matches(gst::CoreError::MissingPlugin)
                    {
                        "no decoder for this format"
                    } else {
                        "cannot read the input"
                    };
                    bail!("{}: {what}: {text}", a.input);
                }
                gst::MessageView::Warning(w) => {
                    pb.suspend(|| eprintln!("unmask: warning: {}", w.error()));
                }
                gst::MessageView::Element(_) => {
                    self.tap.on_message(&msg);
                }
                _ => {}
            }
        };
        if let Some(f) = feeder {
            let _ = f.join();
        }
        if let Some(found) = &self.video_found
            && !found.load(Ordering::SeqCst)
        {
            bail!("{}: no video stream found", a.input);
        }
        // A file that ends early (cut off) can still end with EOS: compare with its duration.
        let last_pts = self.tap.last_pts();
        if let (Finish::Eos, Some(d), Some(f), Some(last)) =
            (&finish, duration, frame_duration, last_pts)
            && a.max_frames.is_none()
            && last + f * 2 < d
        {
            bail!(
                "{}: the stream ended at {:.2} s but the file says it lasts {:.2} s \
                 (truncated or damaged file)",
                a.input,
                (last + f).seconds_f64(),
                d.seconds_f64()
            );
        }
        Ok(finish)
    }

    /// Duration of a frame from the negotiated caps of the element.
    fn frame_duration(&self) -> Option<gst::ClockTime> {
        let caps = self.unmask.static_pad("sink")?.current_caps()?;
        let fps = caps.structure(0)?.get::<gst::Fraction>("framerate").ok()?;
        (fps.numer() > 0).then(|| {
            gst::ClockTime::SECOND
                .mul_div_floor(fps.denom() as u64, fps.numer() as u64)
                .unwrap_or(gst::ClockTime::ZERO)
        })
    }

    fn bus_error(&self, bus: &gst::Bus) -> Option<anyhow::Error> {
        let msg =
            bus.timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])?;
        let (text, _) = error_text(&msg)?;
        Some(anyhow!(text))
    }
}

/// Whether a message comes from one of the project's elements (rather than the input).
fn is_ours(msg: &gst::Message) -> bool {
    msg.src()
        .and_then(|s| s.downcast_ref::<gst::Element>())
        .and_then(|e| e.factory())
        .is_some_and(|f| ["unmask", "unmaskoverlay"].contains(&f.name().as_str()))
}

/// Decodes the images one after another into the pipeline; unreadable ones are listed in
/// `skipped` (the scan goes on and exits with an error status).
fn feed_images(
    src: &gst_app::AppSrc,
    files: &[PathBuf],
    fps: u32,
    max: Option<u64>,
    skipped: &std::sync::Mutex<Vec<String>>,
) {
    let frame = gst::ClockTime::SECOND / u64::from(fps);
    for (i, f) in files.iter().enumerate() {
        if max.is_some_and(|m| i as u64 >= m) {
            break;
        }
        let image = match image::open(f) {
            Ok(img) => img.to_rgb8(),
            Err(e) => {
                skipped
                    .lock()
                    .expect("lock")
                    .push(format!("{}: cannot read the image: {e}", f.display()));
                continue;
            }
        };
        let (w, h) = image.dimensions();
        let stride = rgb_stride(w);
        let mut data = vec![0u8; stride * h as usize];
        for (dst, row) in data
            .chunks_exact_mut(stride)
            .zip(image.as_raw().chunks_exact(3 * w as usize))
        {
            dst[..row.len()].copy_from_slice(row);
        }
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", w as i32)
            .field("height", h as i32)
            .field("framerate", gst::Fraction::new(fps as i32, 1))
            .build();
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().expect("new buffer is writable");
            b.set_pts(frame * i as u64);
            b.set_duration(frame);
            b.set_offset(i as u64);
        }
        let sample = gst::Sample::builder().caps(&caps).buffer(&buffer).build();
        if src.push_sample(&sample).is_err() {
            return;
        }
    }
    let _ = src.end_of_stream();
}

/// Saves an annotated image as `<dir>/<original stem>.png`.
fn save_png(sample: &gst::Sample, names: &[String], dir: &Path) -> anyhow::Result<()> {
    let buffer = sample.buffer().context("no buffer")?;
    let info = gst_video::VideoInfo::from_caps(sample.caps().context("no caps")?)?;
    let name = usize::try_from(buffer.offset())
        .ok()
        .and_then(|i| names.get(i))
        .context("annotated frame without a file name")?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|_| anyhow!("cannot map a frame"))?;
    let (w, h) = (info.width(), info.height());
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0)?;
    let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h as usize {
        rgb.extend_from_slice(&data[y * stride..][..w as usize * 3]);
    }
    let stem = Path::new(name).file_stem().unwrap_or_default();
    let path = dir.join(stem).with_extension("png");
    image::RgbImage::from_raw(w, h, rgb)
        .context("image size")?
        .save(&path)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
