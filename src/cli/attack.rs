//! `unmask attack`: adversarial images or a clip with an attacked segment, for demos and for
//! testing the element.
//!
//! Frames are attacked where the element looks at them ([`unmask::attack::frames`]: the
//! region the classifier sees, through its differentiable resize, pasted back and quantised
//! to 8 bits). Every frame written is then read back through the element's 8-bit
//! pre-processing and classified, and the prediction goes into the ground truth, so what the
//! clip does to M is known exactly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use unmask::attack::frames::{Attacker, FrameAttack};
use unmask::attack::{AdaptiveSpec, AttackSpec};
use unmask::clip::ClipWriter;
use unmask::detector::{Detector, DetectorConfig};
use unmask::model::Classifier;
use unmask::partsworld::{self, CLASSES, Scene, SceneOptions};
use unmask::paths;
use unmask::preprocess::Scaling;

use super::common::{progress, write_json};

/// How frames are fitted to the classifier (must match the element's `scaling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScalingArg {
    Crop,
    Stretch,
}

/// Arguments of `unmask attack`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    unmask attack --video clip.mkv                 parts-world clip, frames 35%-65% attacked\n  \
    unmask attack --video clip.mkv --attack-start 4 --attack-end 8 --preset MIA-Linf-16\n  \
    unmask attack --out adv/ -n 32                 32 attacked parts-world images\n  \
    unmask attack --out adv/ --images photos/      attacked copies of your images\n\n\
    The ground truth (per frame: time, true class, attacked, M's prediction through the \
    element's 8-bit path) is written to <clip>.json or <folder>/truth.json; \
    `unmask scan --truth` compares verdicts with it.")]
pub struct AttackArgs {
    /// Write a lossless clip (Matroska/FFV1, BGRx) with an attacked segment.
    #[arg(long, value_name = "FILE", required_unless_present = "out")]
    video: Option<PathBuf>,
    /// Write attacked images (PNG) to this folder instead.
    #[arg(long, value_name = "DIR", conflicts_with = "video")]
    out: Option<PathBuf>,
    /// Attack these images (PNG/JPEG files or folders) instead of parts-world scenes; in a
    /// clip each is shown for --scene-seconds.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    images: Vec<PathBuf>,
    /// True class of the --images [default: the classifier's prediction on each clean image].
    #[arg(long, value_name = "CLASS")]
    label: Option<String>,
    /// Parts-world images to write with --out.
    #[arg(short = 'n', long, default_value_t = 16)]
    count: u64,
    /// World seed of the parts-world scenes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f32,
    /// Seconds per scene in the clip.
    #[arg(long, default_value_t = 2.5)]
    scene_seconds: f32,
    /// Frames per second of the clip.
    #[arg(long, default_value_t = 10)]
    fps: u32,
    /// Frame width.
    #[arg(long, default_value_t = 320)]
    width: u32,
    /// Frame height.
    #[arg(long, default_value_t = 240)]
    height: u32,
    /// Start of the attacked segment in seconds [default: 35% of the clip].
    #[arg(long, value_name = "SECONDS")]
    attack_start: Option<f32>,
    /// End of the attacked segment in seconds (exclusive) [default: 65% of the clip].
    #[arg(long, value_name = "SECONDS")]
    attack_end: Option<f32>,
    /// Attack preset: PGD-Linf-8, PGD-Linf-16, MIA-Linf-8, MIA-Linf-16, PGD-L2-8, …,
    /// PGD-L2-0.5, PGD-L2-1.0, MIA-L2-0.5, MIA-L2-1.0.
    #[arg(long, default_value = "PGD-Linf-8")]
    preset: String,
    /// Override the preset's ε, in 0-255 pixel units (L∞) or as an L2 radius in [0,1] units.
    #[arg(long)]
    eps: Option<f64>,
    /// Override the preset's number of iterations.
    #[arg(long)]
    iters: Option<usize>,
    /// White-box adaptive attack on M and K together (tries to keep K's parts consistent with
    /// the wrong class so the frame is not flagged) instead of the gray-box attack on M.
    #[arg(long)]
    adaptive: bool,
    /// Weight of K's part loss in the adaptive attack.
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// Seed of the attack's random start.
    #[arg(long, default_value_t = 0)]
    attack_seed: u64,
    /// Frames attacked together.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Where to write the ground truth [default: <clip>.json or <folder>/truth.json].
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
    /// Classifier M [default: the shipped parts-world classifier for --class-set, --variant].
    #[arg(long, value_name = "FILE")]
    classifier: Option<PathBuf>,
    /// Part extractor K (adaptive attack) [default: the shipped k-parts.pt].
    #[arg(long, value_name = "FILE")]
    extractor: Option<PathBuf>,
    /// Knowledge base (adaptive attack) [default: the shipped knowledge.json].
    #[arg(long, value_name = "FILE")]
    knowledge: Option<PathBuf>,
    /// Class set of the shipped classifier.
    #[arg(long, default_value = paths::DEFAULT_CLASS_SET)]
    class_set: String,
    /// Variant of the shipped classifier: baseline or denoise.
    #[arg(long, default_value = paths::DEFAULT_VARIANT)]
    variant: String,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    /// How the element fits frames to the classifier (its `scaling`).
    #[arg(long, value_enum, default_value = "crop")]
    scaling: ScalingArg,
    /// libtorch CPU threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: i32,
}

/// A frame to write: RGB bytes, its true class and whether to attack it.
struct Pending {
    index: u64,
    time: f64,
    rgb: Vec<u8>,
    class: String,
    scene: Option<usize>,
    attacked: bool,
    file: Option<String>,
}

struct Ctx {
    frames: FrameAttack,
    /// The attack, for messages (an adaptive attack's base).
    spec: AttackSpec,
}

impl Ctx {
    /// The classifier's prediction on an 8-bit RGB frame, through the element's pre-processing.
    fn predict(&self, rgb: &[u8]) -> anyhow::Result<(usize, f32)> {
        Ok(self.frames.predict(rgb)?)
    }

    fn labels(&self) -> &[String] {
        self.frames.attacker().classifier().labels()
    }

    fn label_name(&self, i: usize) -> String {
        self.labels()[i].clone()
    }

    /// Attacks the frames in place, as one batch.
    fn attack(&mut self, frames: &mut [Pending]) -> anyhow::Result<()> {
        let labels = frames
            .iter()
            .map(|f| {
                self.labels()
                    .iter()
                    .position(|l| *l == f.class)
                    .ok_or_else(|| anyhow!("the classifier has no class \"{}\"", f.class))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut rgb: Vec<Vec<u8>> = frames
            .iter_mut()
            .map(|f| std::mem::take(&mut f.rgb))
            .collect();
        let result = self.frames.attack(&mut rgb, &labels);
        for (f, rgb) in frames.iter_mut().zip(rgb) {
            f.rgb = rgb;
        }
        Ok(result?)
    }
}

/// User images, resized to `width x height` when given.
fn load_images(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, image::RgbImage)>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("read {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str())
                    })
                })
                .collect();
            inner.sort();
            files.extend(inner);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        bail!("no PNG or JPEG images in {:?}", paths);
    }
    files
        .iter()
        .map(|f| {
            let img = image::open(f)
                .with_context(|| format!("{}: cannot read the image", f.display()))?
                .to_rgb8();
            let name = f
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            Ok((name, img))
        })
        .collect()
}

fn fit(img: &image::RgbImage, w: u32, h: u32) -> Vec<u8> {
    if img.dimensions() == (w, h) {
        img.as_raw().clone()
    } else {
        image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle).into_raw()
    }
}

fn load_attacker(a: &AttackArgs, spec: AttackSpec) -> anyhow::Result<Attacker> {
    let classifier = a
        .classifier
        .clone()
        .unwrap_or_else(|| paths::default_classifier(&a.class_set, &a.variant));
    if a.adaptive {
        let config = DetectorConfig {
            classifier,
            extractor: a.extractor.clone().unwrap_or_else(paths::default_extractor),
            knowledge: a.knowledge.clone().unwrap_or_else(paths::default_knowledge),
            class_set: None,
            device: a.device.clone(),
            threshold: None,
            min_area: None,
            min_confidence: None,
            scaling: match a.scaling {
                ScalingArg::Crop => Scaling::Crop,
                ScalingArg::Stretch => Scaling::Stretch,
            },
            freeze: true,
        };
        let d = Detector::load(&config)?;
        if d.classifier().model().input_size() != d.extractor().model().input_size()
            && a.scaling == ScalingArg::Crop
        {
            let (m, k) = (
                d.classifier().model().input_size(),
                d.extractor().model().input_size(),
            );
            if m.0 * k.1 != m.1 * k.0 {
                bail!(
                    "the adaptive attack needs M and K with the same aspect ratio (M {m:?}, K {k:?}): \
                     they would see different crops of the frame"
                );
            }
        }
        Ok(Attacker::Adaptive(
            Box::new(d),
            AdaptiveSpec::new(spec, a.lambda),
        ))
    } else {
        let device = unmask::device::parse_device(&a.device)?;
        Ok(Attacker::GrayBox(Box::new(Classifier::load(
            &classifier,
            device,
        )?)))
    }
}

/// Runs `unmask attack`.
pub fn run(a: AttackArgs) -> anyhow::Result<ExitCode> {
    if a.width == 0 || a.height == 0 || a.fps == 0 || a.batch == 0 {
        bail!("--width, --height, --fps and --batch must be positive");
    }
    let mut spec = AttackSpec::preset(&a.preset).ok_or_else(|| {
        let names: Vec<String> = AttackSpec::presets().into_iter().map(|(n, _)| n).collect();
        anyhow!(
            "unknown attack preset {}: one of {}",
            a.preset,
            names.join(", ")
        )
    })?;
    if let Some(eps) = a.eps {
        spec.eps = match spec.norm {
            unmask::attack::Norm::Linf => eps / 255.0,
            unmask::attack::Norm::L2 => eps,
        };
    }
    if let Some(iters) = a.iters {
        spec.iters = iters;
    }
    spec.validate()?;
    if a.threads > 0 {
        tch::set_num_threads(a.threads);
    }
    let attacker = load_attacker(&a, spec)?;
    let classifier_labels = attacker.classifier().labels().to_vec();
    if let Some(l) = &a.label
        && !classifier_labels.contains(l)
    {
        bail!("--label {l}: the classifier's classes are {classifier_labels:?}");
    }
    let scaling = match a.scaling {
        ScalingArg::Crop => Scaling::Crop,
        ScalingArg::Stretch => Scaling::Stretch,
    };
    let mut ctx = Ctx {
        frames: FrameAttack::new(
            attacker,
            spec,
            scaling,
            (a.width as usize, a.height as usize),
            a.attack_seed,
        ),
        spec,
    };
    let user = if a.images.is_empty() {
        None
    } else {
        Some(load_images(&a.images)?)
    };
    // Parts-world scenes of the classes the classifier knows.
    let opts = if user.is_none() {
        let known: Vec<&String> = classifier_labels
            .iter()
            .filter(|l| CLASSES.contains(&l.as_str()))
            .collect();
        if known.is_empty() {
            bail!(
                "the classifier's classes {classifier_labels:?} are not parts-world classes: \
                 give --images"
            );
        }
        Some(SceneOptions::with_class_names(&known).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let description = json!({
        "preset": a.preset,
        "spec": spec,
        "spec_text": spec.to_string(),
        "adaptive": a.adaptive,
        "lambda": a.adaptive.then_some(a.lambda),
        "seed": a.attack_seed,
        "classifier": ctx.frames.attacker().classifier().model().path(),
        "scaling": format!("{scaling:?}").to_lowercase(),
        "region": ctx.frames.region(),
    });
    match (&a.video, &a.out) {
        (Some(path), _) => clip(&a, &mut ctx, path, user, opts, description),
        (None, Some(dir)) => stills(&a, &mut ctx, dir, user, opts, description),
        (None, None) => bail!("give --video FILE or --out DIR"),
    }
}

/// Attacks the pending frames that need it and writes them all.
fn flush(
    ctx: &mut Ctx,
    pending: &mut Vec<Pending>,
    mut write: impl FnMut(&Ctx, Pending) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    ctx.attack(pending)?;
    for f in pending.drain(..) {
        write(ctx, f)?;
    }
    Ok(())
}

/// Per-frame ground truth, after reading the written frame back through the element's
/// pre-processing.
fn truth_entry(
    ctx: &Ctx,
    f: &Pending,
    clean_prediction: &str,
) -> anyhow::Result<serde_json::Value> {
    let (p, conf) = ctx.predict(&f.rgb)?;
    Ok(json!({
        "frame": f.index,
        "time": f.time,
        "class": f.class,
        "attacked": f.attacked,
        "prediction": ctx.label_name(p),
        "confidence": conf,
        "clean_prediction": clean_prediction,
        "scene": f.scene,
        "file": f.file,
    }))
}

fn clip(
    a: &AttackArgs,
    ctx: &mut Ctx,
    path: &Path,
    user: Option<Vec<(String, image::RgbImage)>>,
    opts: Option<SceneOptions>,
    description: serde_json::Value,
) -> anyhow::Result<ExitCode> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let fps = a.fps;
    let frames = (a.seconds * fps as f32).round().max(1.0) as u64;
    let start = a.attack_start.unwrap_or(a.seconds * 0.35);
    let end = a.attack_end.unwrap_or(a.seconds * 0.65);
    if start.is_nan() || end.is_nan() || start >= end {
        bail!("--attack-start ({start}) must be before --attack-end ({end})");
    }
    let scene_seconds = a.scene_seconds.max(0.1);
    let script = opts
        .as_ref()
        .map(|o| partsworld::video_scenes(a.seed, o, a.seconds, scene_seconds));
    // User images: the clean frames and their classes, once.
    let user_frames: Vec<(String, Vec<u8>, String)> = match &user {
        Some(images) => images
            .iter()
            .map(|(name, img)| {
                let rgb = fit(img, a.width, a.height);
                let class = match &a.label {
                    Some(l) => l.clone(),
                    None => ctx.label_name(ctx.predict(&rgb)?.0),
                };
                Ok((name.clone(), rgb, class))
            })
            .collect::<anyhow::Result<_>>()?,
        None => Vec::new(),
    };

    let mut writer = ClipWriter::create(path, a.width, a.height, fps)?;
    let pb = progress(Some(frames), "frames");
    let mut truth = Vec::with_capacity(frames as usize);
    let (mut attacked, mut fooled) = (0u64, 0u64);
    let mut pending: Vec<Pending> = Vec::new();
    let mut clean_predictions: Vec<String> = Vec::new();
    let mut write = |ctx: &Ctx, f: Pending, clean: &str| -> anyhow::Result<()> {
        let entry = truth_entry(ctx, &f, clean)?;
        if f.attacked {
            attacked += 1;
            fooled += u64::from(entry["prediction"] != entry["class"]);
        }
        truth.push(entry);
        writer.push_rgb(&f.rgb)?;
        pb.inc(1);
        Ok(())
    };
    for i in 0..frames {
        let t = i as f32 / fps as f32;
        let (rgb, class, scene, file) = match &script {
            Some(s) => {
                let (si, scene, local) = s.scene_at(t);
                let sample = scene.render(local, a.width, a.height);
                (
                    sample.rgb,
                    CLASSES[scene.class()].to_owned(),
                    Some(si),
                    None,
                )
            }
            None => {
                let si = ((t / scene_seconds) as usize) % user_frames.len();
                let (name, rgb, class) = &user_frames[si];
                (rgb.clone(), class.clone(), Some(si), Some(name.clone()))
            }
        };
        let attack = (start..end).contains(&t);
        let clean_prediction = ctx.label_name(ctx.predict(&rgb)?.0);
        let frame = Pending {
            index: i,
            time: i as f64 / f64::from(fps),
            rgb,
            class,
            scene,
            attacked: attack,
            file,
        };
        if attack {
            pending.push(frame);
            clean_predictions.push(clean_prediction);
            if pending.len() >= a.batch {
                let cleans = std::mem::take(&mut clean_predictions);
                let mut k = 0;
                flush(ctx, &mut pending, |ctx, f| {
                    k += 1;
                    write(ctx, f, &cleans[k - 1])
                })?;
            }
        } else {
            if !pending.is_empty() {
                let cleans = std::mem::take(&mut clean_predictions);
                let mut k = 0;
                flush(ctx, &mut pending, |ctx, f| {
                    k += 1;
                    write(ctx, f, &cleans[k - 1])
                })?;
            }
            write(ctx, frame, &clean_prediction)?;
        }
    }
    let cleans = std::mem::take(&mut clean_predictions);
    let mut k = 0;
    flush(ctx, &mut pending, |ctx, f| {
        k += 1;
        write(ctx, f, &cleans[k - 1])
    })?;
    pb.finish_and_clear();
    writer.finish()?;

    let scenes: serde_json::Value = match &script {
        Some(s) => s
            .scenes
            .iter()
            .enumerate()
            .map(|(i, scene): (usize, &Scene)| {
                json!({
                    "index": i,
                    "start": i as f32 * s.scene_seconds,
                    "end": ((i + 1) as f32 * s.scene_seconds).min(a.seconds),
                    "class": CLASSES[scene.class()],
                    "view": scene.view(),
                })
            })
            .collect(),
        None => user_frames
            .iter()
            .map(|(name, _, class)| json!({"file": name, "class": class}))
            .collect(),
    };
    let truth_path = a
        .truth
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.json", path.display())));
    let mut attack = description;
    attack["start"] = json!(start);
    attack["end"] = json!(end);
    write_json(
        &truth_path,
        &json!({
            "kind": "unmask-attack",
            "clip": path,
            "world": if script.is_some() { "partsworld" } else { "images" },
            "seed": a.seed,
            "fps": fps,
            "frames": frames,
            "width": a.width,
            "height": a.height,
            "attack": attack,
            "attacked": attacked,
            "fooled": fooled,
            "scenes": scenes,
            "truth": truth,
        }),
    )?;
    println!(
        "wrote {frames} frames ({}x{} at {fps} fps) to {}; frames {:.2}-{:.2} s attacked ({}): \
         {fooled} of {attacked} fool the classifier through the element's 8-bit path",
        a.width,
        a.height,
        path.display(),
        start,
        end,
        ctx.spec
    );
    println!("ground truth: {}", truth_path.display());
    Ok(ExitCode::SUCCESS)
}

fn stills(
    a: &AttackArgs,
    ctx: &mut Ctx,
    dir: &Path,
    user: Option<Vec<(String, image::RgbImage)>>,
    opts: Option<SceneOptions>,
    description: serde_json::Value,
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    // Each image keeps its size: the crop region depends on it.
    let sources: Vec<(String, u32, u32, Vec<u8>, String)> = match (&user, &opts) {
        (Some(images), _) => images
            .iter()
            .enumerate()
            .map(|(i, (name, img))| {
                let (w, h) = img.dimensions();
                Ok((
                    format!("{i:04}-{name}.png"),
                    w,
                    h,
                    img.as_raw().clone(),
                    String::new(),
                ))
            })
            .collect::<anyhow::Result<_>>()?,
        (None, Some(o)) => (0..a.count)
            .map(|i| {
                let scene = Scene::random(a.seed, i, o);
                let s = scene.render(0.0, a.width, a.height);
                (
                    format!("{i:06}.png"),
                    a.width,
                    a.height,
                    s.rgb,
                    CLASSES[scene.class()].to_owned(),
                )
            })
            .collect(),
        (None, None) => unreachable!("scene options exist without user images"),
    };
    let pb = progress(Some(sources.len() as u64), "images");
    let (mut attacked, mut fooled) = (0u64, 0u64);
    let mut truth = Vec::new();
    for (i, (name, w, h, rgb, class)) in sources.into_iter().enumerate() {
        ctx.frames.set_frame_size((w as usize, h as usize));
        let clean = ctx.label_name(ctx.predict(&rgb)?.0);
        let class = if !class.is_empty() {
            class
        } else {
            a.label.clone().unwrap_or_else(|| clean.clone())
        };
        let mut frames = vec![Pending {
            index: i as u64,
            time: i as f64,
            rgb,
            class,
            scene: None,
            attacked: true,
            file: Some(name.clone()),
        }];
        ctx.attack(&mut frames)?;
        let f = frames.pop().expect("one frame");
        let entry = truth_entry(ctx, &f, &clean)?;
        attacked += 1;
        fooled += u64::from(entry["prediction"] != entry["class"]);
        image::RgbImage::from_raw(w, h, f.rgb)
            .context("image size")?
            .save(dir.join(&name))
            .with_context(|| format!("write {}", dir.join(&name).display()))?;
        truth.push(entry);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let truth_path = a.truth.clone().unwrap_or_else(|| dir.join("truth.json"));
    write_json(
        &truth_path,
        &json!({
            "kind": "unmask-attack",
            "folder": dir,
            "world": if user.is_none() { "partsworld" } else { "images" },
            "seed": a.seed,
            "attack": description,
            "attacked": attacked,
            "fooled": fooled,
            "truth": truth,
        }),
    )?;
    println!(
        "wrote {attacked} attacked images to {} ({}): {fooled} fool the classifier through the \
         element's 8-bit path",
        dir.display(),
        ctx.spec
    );
    println!("ground truth: {}", truth_path.display());
    Ok(ExitCode::SUCCESS)
}
