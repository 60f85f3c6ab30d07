//! Parts-world: a procedural, PASCAL-Part-like image world with exact part ground truth.
//!
//! Nothing can be downloaded, so the project renders its own photos: six classes ([`CLASSES`])
//! built from their PASCAL-Part parts ([`PARTS`]), seen from several viewpoints, with randomised
//! shapes, colours and textures, cluttered backgrounds, occluders, cropping, lighting, blur and
//! sensor noise. Every sample comes with a per-pixel part label map drawn in the same painter's
//! order as the picture (without anti-aliasing), the class, and the set of visible parts
//! (parts covering at least [`MIN_VISIBLE_FRACTION`] of the image).
//!
//! Drawing is vector based (tiny-skia) in a normalised frame, so a scene renders at any size:
//! the object lives in the centred square of the frame, so a centre crop always contains it.
//!
//! - Viewpoints: cars and trains are extruded 3-D profiles seen in perspective from the front,
//!   back, side and three-quarter views (so a side view shows `vehicle_left` *or*
//!   `vehicle_right`, front views show `frontside`, `headlight`, `licenseplate`, …); people in
//!   full figure (front, back, walking profile), upper body and portrait; dogs standing,
//!   walking, sitting, with the head turned, from the front and as portraits; birds standing,
//!   perched, flying and from the front; bottles upright, tilted, lying, alone or in pairs.
//! - Every object pixel belongs to exactly one part of the object's class (as in
//!   `models/partsworld/knowledge.json`, see [`knowledge_path`]); backgrounds, distractors and
//!   occluders are label 0. Colours are drawn from one rule for all classes (plausible or
//!   wild), so colour alone tells neither class nor part.
//! - Ground truth: [`Sample::labels`] (0 = background, `1 + i` = `PARTS[i]`), the class, and
//!   [`Sample::visible`] = parts with at least [`min_visible_pixels`] pixels.
//! - Training streams: [`SampleStream`]; videos: [`video_scenes`]; files, contact sheets, the
//!   benchmark, statistics and clips: `unmask synth --help`.
//!
//! ```no_run
//! use unmask::partsworld::{self, SceneOptions};
//! let s = partsworld::sample(7, 0, &SceneOptions::default(), 64);
//! println!("{} with parts {:?}", partsworld::CLASSES[s.class], s.visible_names());
//! ```

mod background;
mod classes;
mod draw;
mod effects;
mod scene;
mod stream;
mod vehicle;
mod video;

pub use scene::{Scene, SceneOptions};
pub use stream::SampleStream;
pub use video::{VideoScript, video_scenes};

/// The six classes of the world, in label order.
pub const CLASSES: [&str; 6] = ["car", "person", "train", "dog", "bird", "bottle"];

macro_rules! define_parts {
    ($($var:ident => $name:literal),* $(,)?) => {
        /// A part type of the world; `Part as usize` indexes [`PARTS`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Part { $(#[doc = $name] $var),* }

        /// The world's part vocabulary, in the order of `models/partsworld/knowledge.json`.
        pub const PARTS: [&str; [$($name),*].len()] = [$($name),*];

        impl Part {
            /// All parts, in [`PARTS`] order.
            pub const ALL: [Part; PARTS.len()] = [$(Part::$var),*];
        }
    };
}

define_parts! {
    Body => "body",
    Wheel => "wheel",
    Tail => "tail",
    Wing => "wing",
    Eye => "eye",
    Beak => "beak",
    Foot => "foot",
    Torso => "torso",
    Head => "head",
    Neck => "neck",
    Leg => "leg",
    Cap => "cap",
    VehicleLeft => "vehicle_left",
    Mirror => "mirror",
    Door => "door",
    Headlight => "headlight",
    Frontside => "frontside",
    VehicleBack => "vehicle_back",
    Licenseplate => "licenseplate",
    VehicleTop => "vehicle_top",
    Window => "window",
    VehicleRight => "vehicle_right",
    Paw => "paw",
    Nose => "nose",
    Ear => "ear",
    Muzzle => "muzzle",
    Arm => "arm",
    Mouth => "mouth",
    Hair => "hair",
    Hand => "hand",
    Eyebrow => "eyebrow",
    CoachFront => "coach_front",
    CoachRight => "coach_right",
    CoachLeft => "coach_left",
    CoachTop => "coach_top",
    CoachBack => "coach_back",
}

impl Part {
    /// The part's name in [`PARTS`].
    pub fn name(self) -> &'static str {
        PARTS[self as usize]
    }

    /// The part's value in a label map (`1 + index`; 0 is background).
    pub fn label(self) -> u8 {
        self as u8 + 1
    }
}

/// Class indices into [`CLASSES`].
pub mod class {
    /// car
    pub const CAR: usize = 0;
    /// person
    pub const PERSON: usize = 1;
    /// train
    pub const TRAIN: usize = 2;
    /// dog
    pub const DOG: usize = 3;
    /// bird
    pub const BIRD: usize = 4;
    /// bottle
    pub const BOTTLE: usize = 5;
}

/// The minimum area of a part, as a fraction of the image area, for it to count as visible:
/// `6 / 4096`, i.e. 6 pixels at 64x64 (about 0.146 %), 113 pixels at 320x240.
///
/// A part is visible iff `pixels_with_its_label >= MIN_VISIBLE_FRACTION * width * height`.
pub const MIN_VISIBLE_FRACTION: f32 = 6.0 / 4096.0;

/// The minimum pixel count for a part to be visible in a `width` x `height` image.
pub fn min_visible_pixels(width: u32, height: u32) -> u32 {
    (MIN_VISIBLE_FRACTION * (width as f32) * (height as f32)).ceil() as u32
}

/// The parts (index into [`PARTS`]) each class is built from, as in the knowledge base.
pub fn class_parts(class: usize) -> &'static [Part] {
    use Part::*;
    match class {
        class::CAR => &[
            VehicleLeft,
            Mirror,
            Door,
            Headlight,
            Wheel,
            Frontside,
            VehicleBack,
            Licenseplate,
            VehicleTop,
            Window,
            VehicleRight,
        ],
        class::PERSON => &[
            Ear, Nose, Eye, Foot, Torso, Arm, Mouth, Head, Neck, Hair, Hand, Leg, Eyebrow,
        ],
        class::TRAIN => &[
            CoachFront, CoachRight, CoachLeft, Headlight, CoachTop, Head, CoachBack,
        ],
        class::DOG => &[Paw, Nose, Ear, Eye, Torso, Head, Neck, Tail, Muzzle, Leg],
        class::BIRD => &[Eye, Beak, Foot, Torso, Head, Neck, Tail, Wing, Leg],
        class::BOTTLE => &[Body, Cap],
        _ => &[],
    }
}

/// The parts-world knowledge base file shipped with the project
/// (`<models>/partsworld/knowledge.json`).
pub fn knowledge_path() -> std::path::PathBuf {
    crate::paths::partsworld_dir().join("knowledge.json")
}

/// One rendered image with its ground truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Interleaved RGB, row-major, `width * height * 3` bytes.
    pub rgb: Vec<u8>,
    /// Part label per pixel, `width * height`: 0 = background or distractor, `1 + i` = `PARTS[i]`.
    pub labels: Vec<u8>,
    /// Class index into [`CLASSES`].
    pub class: usize,
    /// The visible parts (indices into [`PARTS`], sorted) by the [`MIN_VISIBLE_FRACTION`] rule.
    pub visible: Vec<usize>,
}

impl Sample {
    /// Pixel count of every label value (index 0 = background, `1 + i` = part `i`).
    pub fn label_areas(labels: &[u8]) -> [u32; PARTS.len() + 1] {
        let mut h = [0u32; PARTS.len() + 1];
        for &l in labels {
            if let Some(c) = h.get_mut(l as usize) {
                *c += 1;
            }
        }
        h
    }

    /// The visible parts of a label map (sorted indices into [`PARTS`]): those covering at
    /// least [`min_visible_pixels`] pixels.
    pub fn visible_from_labels(labels: &[u8], width: u32, height: u32) -> Vec<usize> {
        let min = min_visible_pixels(width, height);
        let h = Self::label_areas(labels);
        (0..PARTS.len()).filter(|&i| h[i + 1] >= min).collect()
    }

    /// Names of the visible parts.
    pub fn visible_names(&self) -> Vec<&'static str> {
        self.visible.iter().map(|&i| PARTS[i]).collect()
    }

    /// The class name.
    pub fn class_name(&self) -> &'static str {
        CLASSES[self.class]
    }

    /// A colourised label map (RGB, same size), for looking at the ground truth.
    pub fn label_rgb(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.labels.len() * 3);
        for &l in &self.labels {
            out.extend_from_slice(&label_colour(l));
        }
        out
    }

    /// The image as a 3-channel `image` buffer.
    pub fn to_image(&self) -> image::RgbImage {
        image::RgbImage::from_raw(self.width, self.height, self.rgb.clone())
            .expect("rgb buffer has width * height * 3 bytes")
    }

    /// The colourised label map as an `image` buffer.
    pub fn labels_to_image(&self) -> image::RgbImage {
        image::RgbImage::from_raw(self.width, self.height, self.label_rgb())
            .expect("label buffer has width * height bytes")
    }
}

/// A fixed, distinct display colour per label value (black for background).
pub fn label_colour(label: u8) -> [u8; 3] {
    if label == 0 {
        return [0, 0, 0];
    }
    // Golden-angle hues with alternating brightness: neighbouring labels look different.
    let i = label as f32;
    let h = (i * 0.618_034).fract();
    let v = if label.is_multiple_of(2) { 0.95 } else { 0.7 };
    let s = if label.is_multiple_of(3) { 0.55 } else { 0.9 };
    let c = draw::Rgb::hsv(h, s, v);
    c.to_u8()
}

/// One sample: `Scene::random(seed, index, opts).render(0.0, size, size)`.
pub fn sample(seed: u64, index: u64, opts: &SceneOptions, size: u32) -> Sample {
    Scene::random(seed, index, opts).render(0.0, size, size)
}

/// A contact sheet: samples in a grid of `cols` columns, each shown as the picture and its
/// colourised label map side by side, enlarged `zoom` times (nearest neighbour).
pub fn contact_sheet(samples: &[Sample], cols: usize, zoom: u32) -> image::RgbImage {
    let cols = cols.max(1);
    let zoom = zoom.max(1);
    let rows = samples.len().div_ceil(cols);
    let tw = samples.iter().map(|s| s.width).max().unwrap_or(1) * zoom;
    let th = samples.iter().map(|s| s.height).max().unwrap_or(1) * zoom;
    let gap = 4;
    let cw = 2 * tw + gap + 2 * gap;
    let ch = th + gap;
    let mut sheet = image::RgbImage::from_pixel(
        cols as u32 * cw,
        (rows as u32 * ch).max(1),
        image::Rgb([40, 40, 40]),
    );
    for (i, s) in samples.iter().enumerate() {
        let (ox, oy) = ((i % cols) as u32 * cw, (i / cols) as u32 * ch);
        let lab = s.label_rgb();
        for y in 0..s.height * zoom {
            for x in 0..s.width * zoom {
                let p = ((y / zoom) * s.width + x / zoom) as usize;
                let a = [s.rgb[3 * p], s.rgb[3 * p + 1], s.rgb[3 * p + 2]];
                let b = [lab[3 * p], lab[3 * p + 1], lab[3 * p + 2]];
                sheet.put_pixel(ox + x, oy + y, image::Rgb(a));
                sheet.put_pixel(ox + tw + gap + x, oy + y, image::Rgb(b));
            }
        }
    }
    sheet
}

#[cfg(test)]
mod tests;
