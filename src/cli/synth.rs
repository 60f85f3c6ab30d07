//! `unmask synth`: render parts-world samples (PNGs + ground truth), a contact sheet, a
//! benchmark, or a lossless video clip of moving scenes.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use unmask::partsworld::{
    self, CLASSES, MIN_VISIBLE_FRACTION, PARTS, SampleStream, Scene, SceneOptions,
};

/// Arguments of `unmask synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder for the PNGs and `ground_truth.json`.
    #[arg(short, long, default_value = "partsworld-samples")]
    out: PathBuf,
    /// World seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// First sample index.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Number of samples (or of benchmark images).
    #[arg(short = 'n', long, default_value_t = 64)]
    count: u64,
    /// Width and height of the samples.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Classes to draw, comma separated (default: all of car,person,train,dog,bird,bottle).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Background clutter 0..1 (default: the training distribution's).
    #[arg(long)]
    clutter: Option<f32>,
    /// Occlusion 0..1.
    #[arg(long)]
    occlusion: Option<f32>,
    /// Camera degradation (lighting, blur, noise) 0..1.
    #[arg(long)]
    noise: Option<f32>,
    /// Also write `contact_sheet.png` (pictures and label maps, enlarged).
    #[arg(long)]
    sheet: bool,
    /// Columns of the contact sheet.
    #[arg(long, default_value_t = 8)]
    sheet_cols: usize,
    /// Print per-class statistics of the visible parts instead of writing files.
    #[arg(long)]
    stats: bool,
    /// Measure the generation speed instead of writing files.
    #[arg(long)]
    bench: bool,
    /// Worker threads for --bench (0 = one thread, no stream).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Write a lossless clip (Matroska/FFV1) of moving scenes to this file instead.
    #[arg(long)]
    video: Option<PathBuf>,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f32,
    /// Seconds per scene in the clip.
    #[arg(long, default_value_t = 2.5)]
    scene_seconds: f32,
    /// Frames per second of the clip.
    #[arg(long, default_value_t = 15)]
    fps: u32,
    /// Clip width.
    #[arg(long, default_value_t = 320)]
    width: u32,
    /// Clip height.
    #[arg(long, default_value_t = 240)]
    height: u32,
}

fn progress(len: u64) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let pb = ProgressBar::new(len);
        pb.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
                .expect("valid template"),
        );
        pb
    } else {
        ProgressBar::hidden()
    }
}

/// Runs `unmask synth`.
pub fn run(a: SynthArgs) -> anyhow::Result<ExitCode> {
    let mut opts = if a.classes.is_empty() {
        SceneOptions::default()
    } else {
        SceneOptions::with_class_names(&a.classes).map_err(anyhow::Error::msg)?
    };
    if let Some(v) = a.clutter {
        opts.clutter = v;
    }
    if let Some(v) = a.occlusion {
        opts.occlusion = v;
    }
    if let Some(v) = a.noise {
        opts.noise = v;
    }
    if a.size == 0 || a.width == 0 || a.height == 0 {
        bail!("sizes must be positive");
    }
    if a.bench {
        bench(&a, &opts);
    } else if a.stats {
        stats(&a, &opts);
    } else if let Some(path) = &a.video {
        video(&a, &opts, path)?;
    } else {
        samples(&a, &opts)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(a: &SynthArgs, opts: &SceneOptions) {
    let n = a.count.max(1);
    let cpu0 = process_cpu_seconds();
    let t = Instant::now();
    if a.workers == 0 {
        for i in 0..n {
            std::hint::black_box(partsworld::sample(a.seed, a.start + i, opts, a.size));
        }
    } else {
        let batch = 64;
        let batches = n.div_ceil(batch as u64) as usize;
        for b in SampleStream::new(a.seed, a.start, opts, a.size, batch, a.workers).take(batches) {
            std::hint::black_box(b);
        }
    }
    let dt = t.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu0;
    let threads = if a.workers == 0 {
        "one thread".to_string()
    } else {
        format!("{} workers", a.workers)
    };
    println!(
        "{n} images of {s}x{s} in {dt:.2} s: {:.0} images/s ({threads}); {:.0} images per CPU-second",
        n as f64 / dt,
        n as f64 / cpu.max(1e-9),
        s = a.size
    );
}

/// User + system CPU time of this process so far (Linux `/proc`; 0 elsewhere).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 100 Hz on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn stats(a: &SynthArgs, opts: &SceneOptions) {
    let min = partsworld::min_visible_pixels(a.size, a.size);
    let mut n = [0u64; CLASSES.len()];
    let mut seen = vec![[0u64; PARTS.len()]; CLASSES.len()];
    let mut borderline = vec![[0u64; PARTS.len()]; CLASSES.len()];
    let mut parts = [0u64; CLASSES.len()];
    let mut object = [0f64; CLASSES.len()];
    for i in 0..a.count {
        let s = partsworld::sample(a.seed, a.start + i, opts, a.size);
        let areas = partsworld::Sample::label_areas(&s.labels);
        n[s.class] += 1;
        parts[s.class] += s.visible.len() as u64;
        object[s.class] += areas[1..].iter().sum::<u32>() as f64 / s.labels.len() as f64;
        for p in 0..PARTS.len() {
            let a = areas[p + 1];
            if a >= min {
                seen[s.class][p] += 1;
            }
            if a > 0 && a >= min / 2 && a < 2 * min {
                borderline[s.class][p] += 1;
            }
        }
    }
    println!(
        "{} samples of {s}x{s}; visible = area >= {min} px; borderline = {}..{} px",
        a.count,
        min / 2,
        2 * min - 1,
        s = a.size
    );
    for c in 0..CLASSES.len() {
        if n[c] == 0 {
            continue;
        }
        let k = n[c] as f64;
        println!(
            "{} ({} samples, {:.1} visible parts, object covers {:.0}% of the picture):",
            CLASSES[c],
            n[c],
            parts[c] as f64 / k,
            100.0 * object[c] / k
        );
        for &p in partsworld::class_parts(c) {
            let p = p as usize;
            println!(
                "  {:<14} visible {:>5.1}%   borderline {:>5.1}%",
                PARTS[p],
                100.0 * seen[c][p] as f64 / k,
                100.0 * borderline[c][p] as f64 / k
            );
        }
    }
}

fn samples(a: &SynthArgs, opts: &SceneOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("create {}", a.out.display()))?;
    let pb = progress(a.count);
    let mut records = Vec::new();
    let mut sheet = Vec::new();
    for i in 0..a.count {
        let index = a.start + i;
        let scene = Scene::random(a.seed, index, opts);
        let s = scene.render(0.0, a.size, a.size);
        let file = format!("{index:06}.png");
        let labels = format!("{index:06}_labels.png");
        let parts = format!("{index:06}_parts.png");
        s.to_image()
            .save(a.out.join(&file))
            .with_context(|| format!("write {file}"))?;
        image::GrayImage::from_raw(s.width, s.height, s.labels.clone())
            .expect("label map has width * height bytes")
            .save(a.out.join(&labels))
            .with_context(|| format!("write {labels}"))?;
        s.labels_to_image()
            .save(a.out.join(&parts))
            .with_context(|| format!("write {parts}"))?;
        records.push(json!({
            "file": file,
            "labels": labels,
            "parts": parts,
            "class": s.class,
            "class_name": s.class_name(),
            "view": scene.view(),
            "visible": s.visible_names(),
            "seed": a.seed,
            "index": index,
        }));
        if a.sheet && sheet.len() < 64 {
            sheet.push(s);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let gt = json!({
        "world": "partsworld",
        "seed": a.seed,
        "size": a.size,
        "classes": CLASSES,
        "parts": PARTS.as_slice(),
        "label_maps": "NNNNNN_labels.png: 8-bit label per pixel, 0 = background, 1 + i = parts[i]; NNNNNN_parts.png: the same in colour",
        "min_visible_fraction": MIN_VISIBLE_FRACTION,
        "images": records,
    });
    write_json(&a.out.join("ground_truth.json"), &gt)?;
    if a.sheet {
        let zoom = (192 / a.size).max(1);
        partsworld::contact_sheet(&sheet, a.sheet_cols, zoom)
            .save(a.out.join("contact_sheet.png"))
            .context("write contact_sheet.png")?;
    }
    println!("wrote {} samples to {}", a.count, a.out.display());
    Ok(())
}

fn write_json(path: &Path, v: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
}

fn video(a: &SynthArgs, opts: &SceneOptions, path: &Path) -> anyhow::Result<()> {
    let script = partsworld::video_scenes(a.seed, opts, a.seconds, a.scene_seconds);
    let fps = a.fps.max(1);
    let frames = (a.seconds * fps as f32).round().max(1.0) as u64;
    let (w, h) = (a.width, a.height);
    let mut writer = unmask::clip::ClipWriter::create(path, w, h, fps)?;
    let pb = progress(frames);
    let mut timeline = Vec::new();
    let mut last_scene = usize::MAX;
    for f in 0..frames {
        let t = f as f32 / fps as f32;
        let (i, scene, _) = script.scene_at(t);
        if i != last_scene {
            timeline.push(json!({
                "start": i as f32 * script.scene_seconds,
                "end": ((i + 1) as f32 * script.scene_seconds).min(a.seconds),
                "class": scene.class(),
                "class_name": CLASSES[scene.class()],
                "view": scene.view(),
                "seed": a.seed,
                "index": i,
            }));
            last_scene = i;
        }
        writer.push_rgb(&script.render(t, w, h).rgb)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    writer.finish().context("video pipeline")?;
    let gt_path = PathBuf::from(format!("{}.json", path.display()));
    write_json(
        &gt_path,
        &json!({
            "world": "partsworld",
            "seed": a.seed,
            "fps": fps,
            "frames": frames,
            "width": w,
            "height": h,
            "scenes": timeline,
        }),
    )?;
    println!(
        "wrote {frames} frames ({w}x{h} at {fps} fps) to {} and the scene list to {}",
        path.display(),
        gt_path.display()
    );
    Ok(())
}
