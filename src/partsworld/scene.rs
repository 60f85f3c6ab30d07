//! Scenes: all random choices of one picture (class, object, placement, background, look,
//! motion), drawn from `(seed, index)`, and their rendering at any size and time.

use rand::{Rng, SeedableRng};
use tiny_skia::Transform;

use super::background::{paint_background, paint_occluders};
use super::draw::{Canvas, WRng, chance, uni};
use super::effects::{self, Look};
use super::{CLASSES, Sample, class, classes};

/// Knobs of the scene distribution. The defaults are the training distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneOptions {
    /// Classes to draw (indices into [`CLASSES`]), chosen uniformly; default all six.
    pub classes: Vec<usize>,
    /// Background clutter, `0..=1` (number of distractor shapes).
    pub clutter: f32,
    /// Occlusion, `0..=1`: probability and size of foreground occluders.
    pub occlusion: f32,
    /// Camera degradation, `0..=1`: lighting changes, blur and sensor noise.
    pub noise: f32,
    /// Probability that the object runs over the picture border.
    pub crop: f32,
    /// Range of the object's height as a fraction of the picture height (before cropping).
    pub scale: (f32, f32),
}

impl Default for SceneOptions {
    fn default() -> Self {
        SceneOptions {
            classes: (0..CLASSES.len()).collect(),
            clutter: 0.5,
            occlusion: 0.3,
            noise: 0.5,
            crop: 0.2,
            scale: (0.45, 0.95),
        }
    }
}

impl SceneOptions {
    /// Options drawing only the named classes (unknown names are an error).
    pub fn with_class_names<S: AsRef<str>>(names: &[S]) -> Result<SceneOptions, String> {
        let classes = names
            .iter()
            .map(|n| {
                CLASSES
                    .iter()
                    .position(|c| *c == n.as_ref())
                    .ok_or_else(|| format!("unknown parts-world class \"{}\"", n.as_ref()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SceneOptions {
            classes,
            ..SceneOptions::default()
        })
    }

    /// Clean pictures: no clutter, occlusion, cropping or camera effects.
    pub fn clean() -> SceneOptions {
        SceneOptions {
            clutter: 0.0,
            occlusion: 0.0,
            noise: 0.0,
            crop: 0.0,
            ..SceneOptions::default()
        }
    }
}

/// Smooth motion of the object and background over time (video).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Motion {
    /// Object drift, scene units per second.
    pub velocity: (f32, f32),
    /// Amplitude of a slow sway.
    pub sway: (f32, f32),
    /// Angular frequency of the sway.
    pub freq: f32,
    /// Phase of the sway.
    pub phase: f32,
    /// Relative amplitude of zooming in and out.
    pub zoom: f32,
    /// Background pan, scene units per second.
    pub pan: f32,
}

/// All random choices of one scene. Render it at any size and time with [`Scene::render`].
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Class index into [`CLASSES`].
    pub class: usize,
    /// Seed of the object's shape, pose, viewpoint and colours.
    pub object_seed: u64,
    /// Seed of the background and occluders.
    pub background_seed: u64,
    /// Seed of the sensor noise.
    pub noise_seed: u64,
    /// Mirror the object horizontally.
    pub flip: bool,
    /// Object height as a fraction of the picture (square) height: `size` in `[0, 1]` maps
    /// linearly onto this range (whose lower end may be raised by the object, e.g. for full
    /// figures of people).
    pub height: (f32, f32),
    /// Where in the height range the object's size lies, `0..=1`.
    pub size: f32,
    /// Largest allowed width as a fraction of the square.
    pub max_width: f32,
    /// Centre of the object's frame in the square `[0, 1]²` at `t = 0`.
    pub centre: (f32, f32),
    /// Motion over time.
    pub motion: Motion,
    /// Lighting and camera effects.
    pub look: Look,
    /// Background clutter `0..=1`.
    pub clutter: f32,
    /// Occlusion `0..=1`.
    pub occlusion: f32,
    /// Whether (and how far, as a fraction of the object size) it runs over the border.
    pub crop: (f32, f32),
}

/// Mixes two numbers into a well-spread seed (SplitMix64).
pub fn mix_seed(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b)
        .wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Scene {
    /// The scene number `index` of the world with this `seed` (deterministic).
    pub fn random(seed: u64, index: u64, opts: &SceneOptions) -> Scene {
        let mut rng = WRng::seed_from_u64(mix_seed(seed, index));
        let classes: &[usize] = if opts.classes.is_empty() {
            &[0, 1, 2, 3, 4, 5]
        } else {
            &opts.classes
        };
        let class = classes[rng.random_range(0..classes.len())].min(CLASSES.len() - 1);
        let object_seed = rng.random();
        let background_seed = rng.random();
        let noise_seed = rng.random();
        let vehicle = class == class::CAR || class == class::TRAIN;
        let flip = !vehicle && rng.random::<bool>();
        let (s0, s1) = (
            opts.scale.0.min(opts.scale.1),
            opts.scale.1.max(opts.scale.0),
        );
        let size = uni(&mut rng, 0.0, 1.0);
        let max_width = if class == class::TRAIN {
            uni(&mut rng, 0.9, 1.3)
        } else {
            uni(&mut rng, 0.85, 1.0)
        };
        let crop = if chance(&mut rng, opts.crop) {
            (
                uni(&mut rng, 0.05, 0.3),
                uni(&mut rng, 0.0, std::f32::consts::TAU),
            )
        } else {
            (0.0, 0.0)
        };
        let centre = (uni(&mut rng, -1.0, 1.0), uni(&mut rng, -1.0, 1.0));
        let motion = Motion {
            velocity: (uni(&mut rng, -0.03, 0.03), uni(&mut rng, -0.01, 0.01)),
            sway: (uni(&mut rng, 0.0, 0.03), uni(&mut rng, 0.0, 0.015)),
            freq: uni(&mut rng, 0.5, 2.0),
            phase: uni(&mut rng, 0.0, std::f32::consts::TAU),
            zoom: uni(&mut rng, 0.0, 0.06),
            pan: uni(&mut rng, -0.06, 0.06),
        };
        let look = Look::random(&mut rng, opts.noise);
        Scene {
            class,
            object_seed,
            background_seed,
            noise_seed,
            flip,
            height: (s0, s1),
            size,
            max_width,
            centre,
            motion,
            look,
            clutter: opts.clutter,
            occlusion: opts.occlusion,
            crop,
        }
    }

    /// The class index into [`CLASSES`].
    pub fn class(&self) -> usize {
        self.class
    }

    /// The object's viewpoint/pose name (e.g. `"front-3/4"`, `"portrait"`).
    pub fn view(&self) -> &'static str {
        let mut rng = WRng::seed_from_u64(self.object_seed);
        classes::build(self.class, &mut rng, 0.0).view
    }

    /// Renders the scene at time `t` (seconds; 0 for stills) as a `width` x `height` picture
    /// with its ground truth.
    pub fn render(&self, t: f32, width: u32, height: u32) -> Sample {
        let (w, h) = (width.max(1), height.max(1));
        let mut canvas = Canvas::new(w, h);
        // Scene coordinates: the centred square of the frame is [0, 1]².
        let side = w.min(h) as f32;
        let (ox, oy) = ((w as f32 - side) / 2.0, (h as f32 - side) / 2.0);
        let to_px = Transform::from_scale(side, side).post_translate(ox, oy);
        let view = [-ox / side, -oy / side, 1.0 + ox / side, 1.0 + oy / side];

        let mut bg_rng = WRng::seed_from_u64(self.background_seed);
        paint_background(
            &mut bg_rng,
            &mut canvas,
            view,
            to_px,
            side,
            self.motion.pan * t,
            self.clutter,
        );

        // The object, placed so that its frame has the chosen height.
        let mut obj_rng = WRng::seed_from_u64(self.object_seed);
        let fig = classes::build(self.class, &mut obj_rng, t);
        let f = fig.frame.unwrap_or_else(|| fig.bounds());
        let (fw, fh) = ((f[2] - f[0]).max(1e-3), (f[3] - f[1]).max(1e-3));
        let m = &self.motion;
        let zoom = 1.0 + m.zoom * (0.7 * m.freq * t + m.phase).sin();
        let lo = self.height.0.max(fig.min_height).min(self.height.1);
        let mut k = (lo + (self.height.1 - lo) * self.size) / fh;
        if k * fw > self.max_width {
            k = self.max_width / fw;
        }
        k *= zoom;
        let (ow, oh) = (k * fw, k * fh);
        // Free room for the centre; the object stays in the square unless cropped.
        let room_x = ((1.0 - ow) / 2.0).max(0.0);
        let room_y = ((1.0 - oh) / 2.0).max(0.0);
        let mut cx = 0.5 + self.centre.0 * room_x;
        let mut cy = 0.5 + self.centre.1 * room_y;
        if fig.anchor_bottom {
            cy = 1.0 - oh / 2.0 + 0.02;
        }
        if self.crop.0 > 0.0 {
            cx += self.crop.1.cos() * self.crop.0 * ow;
            if !fig.anchor_bottom {
                cy += self.crop.1.sin() * self.crop.0 * oh;
            }
        }
        cx += m.velocity.0 * t + m.sway.0 * (m.freq * t + m.phase).sin();
        cy += m.velocity.1 * t + m.sway.1 * (1.3 * m.freq * t + m.phase).sin();
        let sx = if self.flip { -k } else { k };
        let obj = Transform::from_translate(-(f[0] + f[2]) / 2.0, -(f[1] + f[3]) / 2.0)
            .post_scale(sx, k)
            .post_translate(cx, cy);
        canvas.paint_figure(&fig, obj.post_concat(to_px), k * side);

        let mut occ_rng = WRng::seed_from_u64(self.background_seed ^ 0x0cc1_0de5);
        let obj_box = [cx - ow / 2.0, cy - oh / 2.0, cx + ow / 2.0, cy + oh / 2.0];
        paint_occluders(
            &mut occ_rng,
            &mut canvas,
            obj_box,
            to_px,
            side,
            self.occlusion,
        );

        let frame_no = (t * 1000.0).round() as i64 as u64;
        let noise_seed = mix_seed(self.noise_seed, frame_no);
        let rgb = effects::apply(canvas.rgb.data(), w, h, &self.look, noise_seed);
        let labels = canvas.labels();
        let visible = Sample::visible_from_labels(&labels, w, h);
        Sample {
            width: w,
            height: h,
            rgb,
            labels,
            class: self.class,
            visible,
        }
    }
}
