//! The six object classes, each a figure built from its parts.
//!
//! Builders draw one object in object coordinates (y down) from a random generator that the
//! scene seeds identically for every frame, so the same object comes out each time; `phase`
//! (seconds) animates gaits, wings and tails for video.

use std::f32::consts::PI;

use super::class;
use super::draw::{Figure, Fill, Rgb, WRng, chance, pick, uni};

mod bird;
mod bottle;
mod car;
mod dog;
mod person;
mod train;

/// Builds the object of class `class`.
pub fn build(class: usize, rng: &mut WRng, phase: f32) -> Figure {
    match class {
        class::CAR => car::build(rng, phase),
        class::PERSON => person::build(rng, phase),
        class::TRAIN => train::build(rng, phase),
        class::DOG => dog::build(rng, phase),
        class::BIRD => bird::build(rng, phase),
        _ => bottle::build(rng, phase),
    }
}

/// Colour choices for one object: with probability `1 - wild` a part takes a colour from the
/// natural choices given (jittered), otherwise any colour at all. All classes use the same
/// rule, so colour alone tells neither the class nor the part.
pub struct Palette {
    /// Probability of a fully random colour.
    pub wild: f32,
}

impl Palette {
    /// A palette for one object: some objects are wildly coloured, most are plausible.
    pub fn new(rng: &mut WRng) -> Palette {
        let wild = if chance(rng, 0.35) { 0.85 } else { 0.2 };
        Palette { wild }
    }

    /// A colour: natural (from `choices`, jittered) or wild.
    pub fn pick(&self, rng: &mut WRng, choices: &[Rgb]) -> Rgb {
        if choices.is_empty() || chance(rng, self.wild) {
            Rgb::random(rng)
        } else {
            pick(rng, choices).jitter(rng, 0.07)
        }
    }

    /// A surface finish for a large part of colour `c`: plain, shaded, stripes, spots-like
    /// radial highlight or noisy grain.
    pub fn texture(&self, rng: &mut WRng, c: Rgb, scale: f32) -> Fill {
        let r: f32 = uni(rng, 0.0, 1.0);
        if r < 0.25 {
            Fill::Solid(c)
        } else if r < 0.6 {
            Fill::shaded(c, uni(rng, 0.08, 0.3))
        } else if r < 0.72 {
            Fill::Stripes {
                c0: c,
                c1: if chance(rng, 0.5) {
                    c.shade(uni(rng, -0.35, 0.35))
                } else {
                    Rgb::random(rng)
                },
                period: scale * uni(rng, 0.08, 0.3),
                angle: uni(rng, 0.0, PI),
            }
        } else if r < 0.84 {
            Fill::Radial {
                c0: c.shade(uni(rng, 0.15, 0.4)),
                c1: c.shade(-uni(rng, 0.0, 0.3)),
                fx: uni(rng, 0.2, 0.8),
                fy: uni(rng, 0.1, 0.5),
            }
        } else {
            Fill::Noise {
                c,
                amount: uni(rng, 0.15, 0.45),
                grain: scale * uni(rng, 0.01, 0.04),
            }
        }
    }
}

/// Common natural colours.
pub mod colours {
    use super::Rgb;

    /// Skin tones.
    pub const SKIN: [Rgb; 6] = [
        Rgb(0.96, 0.80, 0.69),
        Rgb(0.89, 0.67, 0.53),
        Rgb(0.78, 0.55, 0.40),
        Rgb(0.60, 0.40, 0.27),
        Rgb(0.42, 0.27, 0.18),
        Rgb(0.30, 0.19, 0.13),
    ];
    /// Hair colours.
    pub const HAIR: [Rgb; 6] = [
        Rgb(0.08, 0.06, 0.05),
        Rgb(0.25, 0.16, 0.09),
        Rgb(0.45, 0.30, 0.15),
        Rgb(0.85, 0.70, 0.42),
        Rgb(0.62, 0.28, 0.12),
        Rgb(0.75, 0.75, 0.75),
    ];
    /// Fur colours.
    pub const FUR: [Rgb; 7] = [
        Rgb(0.55, 0.38, 0.22),
        Rgb(0.80, 0.62, 0.38),
        Rgb(0.12, 0.10, 0.09),
        Rgb(0.92, 0.88, 0.80),
        Rgb(0.45, 0.42, 0.40),
        Rgb(0.70, 0.45, 0.20),
        Rgb(0.35, 0.22, 0.12),
    ];
    /// Vehicle paints.
    pub const PAINT: [Rgb; 9] = [
        Rgb(0.92, 0.92, 0.92),
        Rgb(0.08, 0.08, 0.09),
        Rgb(0.65, 0.66, 0.68),
        Rgb(0.70, 0.08, 0.08),
        Rgb(0.10, 0.20, 0.55),
        Rgb(0.30, 0.32, 0.35),
        Rgb(0.85, 0.75, 0.15),
        Rgb(0.15, 0.40, 0.20),
        Rgb(0.55, 0.12, 0.35),
    ];
    /// Glass.
    pub const GLASS: [Rgb; 4] = [
        Rgb(0.15, 0.20, 0.28),
        Rgb(0.35, 0.45, 0.55),
        Rgb(0.08, 0.09, 0.12),
        Rgb(0.55, 0.65, 0.72),
    ];
    /// Rubber, tyres, dark details.
    pub const DARK: [Rgb; 3] = [
        Rgb(0.06, 0.06, 0.06),
        Rgb(0.14, 0.14, 0.15),
        Rgb(0.22, 0.20, 0.20),
    ];
    /// Lamps.
    pub const LAMP: [Rgb; 3] = [
        Rgb(0.95, 0.95, 0.88),
        Rgb(0.98, 0.85, 0.45),
        Rgb(0.80, 0.85, 0.90),
    ];
    /// Clothes.
    pub const CLOTH: [Rgb; 10] = [
        Rgb(0.15, 0.20, 0.40),
        Rgb(0.80, 0.10, 0.12),
        Rgb(0.95, 0.95, 0.95),
        Rgb(0.10, 0.10, 0.10),
        Rgb(0.35, 0.50, 0.25),
        Rgb(0.55, 0.45, 0.35),
        Rgb(0.95, 0.75, 0.20),
        Rgb(0.40, 0.55, 0.80),
        Rgb(0.50, 0.50, 0.52),
        Rgb(0.60, 0.30, 0.55),
    ];
    /// Feathers.
    pub const FEATHER: [Rgb; 8] = [
        Rgb(0.45, 0.32, 0.20),
        Rgb(0.15, 0.15, 0.17),
        Rgb(0.92, 0.92, 0.90),
        Rgb(0.20, 0.35, 0.70),
        Rgb(0.85, 0.25, 0.10),
        Rgb(0.95, 0.80, 0.15),
        Rgb(0.55, 0.55, 0.55),
        Rgb(0.30, 0.45, 0.25),
    ];
    /// Bottle glass and plastics.
    pub const BOTTLE: [Rgb; 6] = [
        Rgb(0.10, 0.35, 0.15),
        Rgb(0.45, 0.25, 0.08),
        Rgb(0.75, 0.85, 0.88),
        Rgb(0.20, 0.45, 0.75),
        Rgb(0.85, 0.85, 0.80),
        Rgb(0.65, 0.10, 0.10),
    ];
}
