//! Shared helpers of the element tests: tiny models, test frames, pipelines.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gst::prelude::*;
use tch::{CModule, Device, Kind, Tensor};
use unmask::Verdict;
use unmask::detector::{Detector, DetectorConfig};
use unmask::meta::UnmaskMeta;
use unmask::preprocess::{Frame, PixelFormat, Plane, Scaling, YuvColor, YuvMatrix, rgb_to_format};
use unmask::testing::{TinyModels, TinyScene, tiny_scene, write_tiny_models};

/// Initialises GStreamer and registers the elements statically.
pub fn init() {
    gst::init().expect("gst init");
    unmask::elements::register(None).expect("register elements");
}

/// Tiny models in a temporary folder (kept alive with the fixture).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub models: TinyModels,
}

pub fn fixture() -> Fixture {
    init();
    let dir = tempfile::tempdir().expect("tempdir");
    let models = write_tiny_models(dir.path());
    Fixture { dir, models }
}

impl Fixture {
    /// `unmask` with the tiny models on the CPU, one thread.
    pub fn element_desc(&self, extra: &str) -> String {
        format!(
            "unmask name=u classifier={} extractor={} knowledge={} device=cpu threads=1 scaling=stretch {extra}",
            self.models.classifier.display(),
            self.models.extractor.display(),
            self.models.knowledge.display()
        )
    }

    /// A detector configured like [`Self::element_desc`].
    pub fn detector(&self) -> Detector {
        Detector::load(&self.detector_config()).expect("load detector")
    }

    /// The configuration of [`Self::detector`].
    pub fn detector_config(&self) -> DetectorConfig {
        DetectorConfig {
            classifier: self.models.classifier.clone(),
            extractor: self.models.extractor.clone(),
            knowledge: self.models.knowledge.clone(),
            class_set: None,
            device: "cpu".into(),
            threshold: None,
            min_area: None,
            min_confidence: None,
            scaling: Scaling::Stretch,
            freeze: true,
        }
    }

    /// A classifier like the tiny one that also burns about `work` matrix products of
    /// 512x512 per frame batch: a deliberately slow analysis.
    pub fn slow_classifier(&self, work: i64) -> PathBuf {
        let path = self.dir.path().join("slow-classifier.pt");
        let (h, w) = unmask::testing::TINY_CLASSIFIER_SIZE;
        let input = Tensor::zeros([2, 3, h, w], (Kind::Float, Device::Cpu));
        let mut f = |inputs: &[Tensor]| {
            let x = &inputs[0];
            let logits = x.mean_dim([2, 3].as_slice(), false, Kind::Float) * 20.0;
            // Entries stay 1/512 whatever the input: the cost does not depend on the frame.
            let mut m = (x.mean(Kind::Float) * 0.0 + 1.0 / 512.0)
                .reshape([1, 1])
                .expand([512, 512], false)
                .contiguous();
            for _ in 0..work {
                m = m.matmul(&m);
            }
            vec![logits + m.sum(Kind::Float) * 0.0]
        };
        CModule::create_by_tracing("Slow", "forward", &[input], &mut f)
            .expect("trace")
            .save(&path)
            .expect("save");
        std::fs::copy(
            unmask::modelinfo::ModelInfo::sidecar_of(&self.models.classifier),
            unmask::modelinfo::ModelInfo::sidecar_of(&path),
        )
        .expect("copy sidecar");
        path
    }
}

/// A test frame: planes as produced by `rgb_to_format`.
#[derive(Clone)]
pub struct TestFrame {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub planes: Vec<(Vec<u8>, usize)>,
    pub color: YuvColor,
}

impl TestFrame {
    pub fn new(
        scene: TinyScene,
        format: PixelFormat,
        width: usize,
        height: usize,
        pad: usize,
    ) -> Self {
        Self::from_rgb(
            &tiny_scene(scene, width, height),
            format,
            width,
            height,
            pad,
        )
    }

    /// A frame of packed RGB bytes (`width * height * 3`) converted to `format`, each row
    /// padded by `pad` bytes.
    pub fn from_rgb(
        rgb: &[u8],
        format: PixelFormat,
        width: usize,
        height: usize,
        pad: usize,
    ) -> Self {
        Self {
            format,
            width,
            height,
            planes: rgb_to_format(rgb, width, height, format, pad),
            color: YuvColor::default(),
        }
    }

    pub fn frame(&self) -> Frame<'_> {
        Frame {
            format: self.format,
            width: self.width,
            height: self.height,
            planes: self
                .planes
                .iter()
                .map(|(d, s)| Plane {
                    data: d,
                    stride: *s,
                })
                .collect(),
            color: self.color,
        }
    }

    /// Caps for the frame (YUV formats state their colorimetry).
    pub fn caps(&self, fps: i32) -> gst::Caps {
        let mut b = gst::Caps::builder("video/x-raw")
            .field("format", self.format.gst_name())
            .field("width", self.width as i32)
            .field("height", self.height as i32)
            .field("framerate", gst::Fraction::new(fps, 1));
        if self.format.packed_layout().is_none() {
            let c = match (self.color.matrix, self.color.full_range) {
                (YuvMatrix::Bt601, false) => "bt601",
                (YuvMatrix::Bt709, false) => "bt709",
                (YuvMatrix::Bt601, true) => "1:4:0:0",
                (YuvMatrix::Bt709, true) => "1:3:5:1",
            };
            b = b.field("colorimetry", c);
        }
        b.build()
    }

    /// A buffer with the planes back to back and a `GstVideoMeta` giving their strides.
    pub fn buffer_with_meta(&self, pts: gst::ClockTime, duration: gst::ClockTime) -> gst::Buffer {
        let mut data = Vec::new();
        let mut offsets = Vec::new();
        let mut strides = Vec::new();
        for (d, s) in &self.planes {
            offsets.push(data.len());
            strides.push(*s as i32);
            data.extend_from_slice(d);
        }
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(pts);
            b.set_duration(duration);
            gst_video::VideoMeta::add_full(
                b,
                gst_video::VideoFrameFlags::empty(),
                gst_video::VideoFormat::from_string(self.format.gst_name()),
                self.width as u32,
                self.height as u32,
                &offsets,
                &strides,
            )
            .unwrap();
        }
        buffer
    }

    /// A buffer in GStreamer's default layout for the caps (no video meta).
    pub fn buffer_default_layout(
        &self,
        pts: gst::ClockTime,
        duration: gst::ClockTime,
    ) -> gst::Buffer {
        let info = gst_video::VideoInfo::from_caps(&self.caps(25)).unwrap();
        let mut data = vec![0u8; info.size()];
        for (i, (d, s)) in self.planes.iter().enumerate() {
            let (off, stride) = (info.offset()[i], info.stride()[i] as usize);
            let rows = d.len() / s;
            let n = (*s).min(stride);
            for r in 0..rows {
                data[off + r * stride..][..n].copy_from_slice(&d[r * s..][..n]);
            }
        }
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(pts);
            b.set_duration(duration);
        }
        buffer
    }
}

/// Buffers for `frames` at 25 fps from time 0, each with a `GstVideoMeta`, and their caps.
pub fn timed_inputs(frames: &[TestFrame]) -> Vec<(gst::Caps, gst::Buffer)> {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| (f.caps(25), f.buffer_with_meta(FRAME * i as u64, FRAME)))
        .collect()
}

/// Expected verdicts from the core library.
pub fn expected(detector: &Detector, frames: &[&TestFrame]) -> Vec<Verdict> {
    let frames: Vec<Frame> = frames.iter().map(|f| f.frame()).collect();
    detector.analyse_frames(&frames).expect("analyse")
}

/// Verdicts equal up to float rounding.
pub fn assert_same_verdict(got: &Verdict, want: &Verdict, what: &str) {
    assert_eq!(got.predicted, want.predicted, "{what}");
    assert_eq!(got.predicted_index, want.predicted_index, "{what}");
    assert_eq!(got.parts, want.parts, "{what}");
    assert_eq!(got.adversarial, want.adversarial, "{what}");
    assert_eq!(got.corrected, want.corrected, "{what}");
    assert_eq!(got.corrected_index, want.corrected_index, "{what}");
    for (a, b, f) in [
        (got.confidence, want.confidence, "confidence"),
        (got.similarity, want.similarity, "similarity"),
        (got.threshold, want.threshold, "threshold"),
        (
            got.corrected_similarity,
            want.corrected_similarity,
            "corrected-similarity",
        ),
    ] {
        assert!((a - b).abs() < 1e-4, "{what}: {f} {a} vs {b}");
    }
}

/// Frame duration at 25 fps.
pub const FRAME: gst::ClockTime = gst::ClockTime::from_mseconds(40);

/// A pipeline `appsrc name=src ! <middle> ! appsink name=sink`.
pub struct AppPipeline {
    pub pipeline: gst::Pipeline,
    pub src: gst_app::AppSrc,
    pub sink: gst_app::AppSink,
}

impl AppPipeline {
    pub fn new(middle: &str) -> Self {
        let desc = format!("appsrc name=src format=time ! {middle} ! appsink name=sink sync=false");
        let pipeline = gst::parse::launch(&desc)
            .unwrap_or_else(|e| panic!("{desc}: {e}"))
            .downcast::<gst::Pipeline>()
            .unwrap();
        let src = pipeline
            .by_name("src")
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        let sink = pipeline
            .by_name("sink")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        Self {
            pipeline,
            src,
            sink,
        }
    }

    pub fn element(&self, name: &str) -> gst::Element {
        self.pipeline.by_name(name).unwrap()
    }

    pub fn play(&self) {
        self.pipeline
            .set_state(gst::State::Playing)
            .expect("playing");
    }

    /// Pushes samples (caps may change between them), then EOS.
    pub fn push_all(&self, samples: &[(gst::Caps, gst::Buffer)]) {
        for (caps, buffer) in samples {
            let sample = gst::Sample::builder().caps(caps).buffer(buffer).build();
            self.src.push_sample(&sample).expect("push");
        }
        self.src.end_of_stream().expect("eos");
    }

    /// Pulls every sample until EOS (panics on error or timeout).
    pub fn pull_all(&self) -> Vec<gst::Sample> {
        let mut out = Vec::new();
        loop {
            match self.sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
                Some(s) => out.push(s),
                None => {
                    assert!(self.sink.is_eos(), "timed out; errors: {:?}", self.errors());
                    return out;
                }
            }
        }
    }

    /// Error messages on the bus so far.
    pub fn errors(&self) -> Vec<String> {
        messages(&self.pipeline, gst::MessageType::Error)
            .iter()
            .map(|m| match m.view() {
                gst::MessageView::Error(e) => format!("{} ({:?})", e.error(), e.debug()),
                _ => unreachable!(),
            })
            .collect()
    }

    pub fn stop(&self) {
        self.pipeline.set_state(gst::State::Null).expect("null");
    }
}

/// Pops the queued bus messages of a type (the others are put back).
pub fn messages(pipeline: &gst::Pipeline, ty: gst::MessageType) -> Vec<gst::Message> {
    let bus = pipeline.bus().unwrap();
    let mut all = Vec::new();
    while let Some(m) = bus.pop() {
        all.push(m);
    }
    let (wanted, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|m| m.type_() == ty);
    for m in others {
        let _ = bus.post(m);
    }
    wanted
}

/// Verdict messages (`unmask-alert` / `unmask-verdict`) on the bus so far.
pub fn verdict_messages(pipeline: &gst::Pipeline) -> Vec<(String, UnmaskMeta)> {
    messages(pipeline, gst::MessageType::Element)
        .iter()
        .filter_map(|m| m.structure())
        .filter(|s| s.name().starts_with("unmask-"))
        .map(|s| {
            (
                s.name().to_string(),
                UnmaskMeta::from_structure(s).expect("valid verdict message"),
            )
        })
        .collect()
}

/// The verdict carried by a sample's buffer.
pub fn meta_of(sample: &gst::Sample) -> Option<UnmaskMeta> {
    UnmaskMeta::read(sample.buffer().unwrap()).map(|r| r.expect("valid meta"))
}

/// Bytes of a buffer.
pub fn bytes(buffer: &gst::BufferRef) -> Vec<u8> {
    buffer.map_readable().unwrap().as_slice().to_vec()
}

pub fn u64_prop(e: &gst::Element, name: &str) -> u64 {
    e.property::<u64>(name)
}

/// Number of threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Waits until `f` holds (polling), up to `timeout`.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// The cargo target folder (`target/debug`) holding this test binary.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

/// Environment making the built plugin (`target/debug/libgstunmask.so`) visible to
/// `gst-inspect-1.0`, `gst-launch-1.0` or Python, with a private registry.
///
/// The plugin is built with `cargo build -p gst-plugin-unmask` when it is missing or older
/// than this test binary (CI normally runs `cargo build --workspace` first, which makes this
/// a no-op). The plugin is exposed as `<dir>/target/debug/libgstunmask.so`, so the models
/// folder it finds by default is `<dir>/models`. Only the plugin file is exposed (through a symlink in a temporary folder): the
/// target folder also holds hashed copies of it in `deps/`, which would register twice.
pub struct PluginEnv {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

pub fn plugin_env() -> PluginEnv {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let target = target_dir();
    let so = target.join("libgstunmask.so");
    BUILT.call_once(|| build_plugin_if_stale(&target, &so));
    assert!(so.is_file(), "{} missing", so.display());
    let dir = tempfile::tempdir().unwrap();
    // Laid out like a cargo target folder, so `<dir>/models` is the plugin's models folder.
    let plugins = dir.path().join("target").join("debug");
    std::fs::create_dir_all(&plugins).unwrap();
    std::os::unix::fs::symlink(&so, plugins.join("libgstunmask.so")).unwrap();
    let vars = vec![
        ("GST_PLUGIN_PATH".into(), plugins.display().to_string()),
        (
            "GST_REGISTRY".into(),
            dir.path().join("registry.bin").display().to_string(),
        ),
    ];
    PluginEnv { dir, vars }
}

/// Builds the plugin if it is missing or older than this test binary.
fn build_plugin_if_stale(target: &Path, so: &Path) {
    let exe_time = std::fs::metadata(std::env::current_exe().unwrap())
        .and_then(|m| m.modified())
        .ok();
    let so_time = std::fs::metadata(so).and_then(|m| m.modified()).ok();
    if so_time.is_none() || so_time < exe_time {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("building the plugin: {cargo} build -p gst-plugin-unmask");
        let mut args = vec!["build", "-p", "gst-plugin-unmask"];
        if target.ends_with("release") {
            args.push("--release");
        }
        let status = std::process::Command::new(cargo)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build -p gst-plugin-unmask failed");
    }
}

/// Writes a lossless clip (Matroska/FFV1) of tiny scenes: each `(scene, frames)` in turn.
pub fn write_tiny_clip(
    path: &Path,
    scenes: &[(TinyScene, u64)],
    width: u32,
    height: u32,
    fps: u32,
) -> u64 {
    let mut w = unmask::clip::ClipWriter::create(path, width, height, fps).expect("clip");
    for &(scene, n) in scenes {
        let rgb = tiny_scene(scene, width as usize, height as usize);
        for _ in 0..n {
            w.push_rgb(&rgb).expect("push frame");
        }
    }
    w.finish().expect("finish clip")
}

/// The `unmask` command line tool built with these tests.
pub fn unmask_cli() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_unmask"));
    c.env("GST_DEBUG", "0")
        .env_remove(unmask::paths::MODELS_DIR_ENV)
        .stdin(std::process::Stdio::null());
    c
}

/// `--classifier … --extractor … --knowledge …` for the tiny models, on one CPU thread.
pub fn tiny_cli_args(models: &TinyModels) -> Vec<String> {
    vec![
        "--classifier".into(),
        models.classifier.display().to_string(),
        "--extractor".into(),
        models.extractor.display().to_string(),
        "--knowledge".into(),
        models.knowledge.display().to_string(),
        "--device".into(),
        "cpu".into(),
        "--threads".into(),
        "1".into(),
        "--scaling".into(),
        "stretch".into(),
    ]
}

/// Output of a finished command, with stdout and stderr as text.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn new(out: std::process::Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Reads a JSON-lines file.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Fails the test (with a hint) unless `program` runs: what the tests need is installed by
/// `scripts/setup.sh`, so a missing tool is a broken set-up, not a reason to skip.
pub fn require_program(program: &str) {
    let runs = std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(runs, "{program} does not run: run scripts/setup.sh");
}

/// Exit status of the Python scripts when PyGObject or GStreamer's introspection is missing.
pub const PYTHON_MISSING_GI: i32 = 77;
