//! Bottles: wine, beer, water, milk and spirits bottles, upright, tilted or lying, sometimes
//! with a second bottle. Parts: `body` (glass with its label sticker) and `cap`.

use std::f32::consts::PI;

use tiny_skia::Transform;

use super::super::Part;
use super::super::draw::{Figure, Fill, Rgb, WRng, chance, pick, rounded, rrect, uni};
use super::{Palette, colours};

/// Builds one or more bottles.
pub fn build(rng: &mut WRng, _phase: f32) -> Figure {
    let pal = Palette::new(rng);
    let pose = pick(rng, &["upright", "upright", "upright", "tilted", "lying"]);
    let mut fig = Figure {
        view: pose,
        min_height: if pose == "upright" { 0.6 } else { 0.0 },
        ..Figure::default()
    };
    let n = if chance(rng, 0.25) { 2 } else { 1 };
    for k in 0..n {
        let mut one = Figure::default();
        bottle(rng, &pal, &mut one);
        let ang = match pose {
            "tilted" => uni(rng, -0.45, 0.45),
            "lying" => PI / 2.0 * if chance(rng, 0.5) { 1.0 } else { -1.0 } + uni(rng, -0.1, 0.1),
            _ => uni(rng, -0.06, 0.06),
        };
        let (dx, sc) = if k == 0 {
            (0.0, 1.0)
        } else {
            (
                uni(rng, 0.35, 0.6) * if chance(rng, 0.5) { 1.0 } else { -1.0 },
                uni(rng, 0.6, 0.9),
            )
        };
        let ts = Transform::from_scale(sc, sc)
            .post_rotate(ang.to_degrees())
            .post_translate(dx, 0.0);
        one.transform(ts);
        if k == 0 {
            fig.shapes.append(&mut one.shapes);
        } else {
            // The second bottle stands behind the first.
            let mut s = one.shapes;
            s.append(&mut fig.shapes);
            fig.shapes = s;
        }
    }
    fig
}

fn bottle(rng: &mut WRng, pal: &Palette, fig: &mut Figure) {
    let kind = pick(rng, &["wine", "beer", "water", "milk", "spirits", "soda"]);
    // Half widths and heights (base at y = 0, up is -y; height ~1).
    let h = 1.0;
    let (rb, ysh, yn, rn): (f32, f32, f32, f32) = match kind {
        "wine" => (0.15, 0.6, 0.78, 0.05),
        "beer" => (0.13, 0.5, 0.72, 0.05),
        "water" => (0.17, 0.7, 0.82, 0.07),
        "milk" => (0.22, 0.7, 0.8, 0.1),
        "spirits" => (0.19, 0.72, 0.8, 0.06),
        _ => (0.14, 0.55, 0.75, 0.06),
    };
    let rb = rb * uni(rng, 0.85, 1.2);
    let ysh = ysh * uni(rng, 0.9, 1.08);
    let rn = rn * uni(rng, 0.85, 1.2);
    let yn = yn.max(ysh + 0.05);
    let glass = pal.pick(rng, &colours::BOTTLE);
    let corner = if kind == "spirits" { 0.02 } else { 0.05 };
    let outline = [
        (-rb, 0.0),
        (rb, 0.0),
        (rb, -ysh),
        (rn, -yn),
        (rn, -h),
        (-rn, -h),
        (-rn, -yn),
        (-rb, -ysh),
    ];
    let fill = Fill::Grad {
        c0: glass.shade(uni(rng, 0.1, 0.35)),
        c1: glass.shade(-uni(rng, 0.2, 0.5)),
        angle: uni(rng, -0.3, 0.3),
    };
    fig.part(rounded(&outline, corner + 0.04), fill, Part::Body);
    // Highlight.
    if chance(rng, 0.7) {
        let x = -rb * 0.55;
        fig.part(
            rrect(x, -ysh + 0.02, x + rb * 0.18, -0.06, 0.02),
            Fill::Solid(glass.shade(0.45)),
            Part::Body,
        );
    }
    // Label sticker.
    if chance(rng, 0.75) {
        let c = pal.pick(
            rng,
            &[
                Rgb(0.95, 0.93, 0.85),
                Rgb(0.8, 0.1, 0.1),
                Rgb(0.1, 0.1, 0.1),
            ],
        );
        let y0 = -ysh * uni(rng, 0.15, 0.35);
        let y1 = -ysh * uni(rng, 0.6, 0.9);
        let f = if chance(rng, 0.4) {
            Fill::Stripes {
                c0: c,
                c1: Rgb::random(rng),
                period: uni(rng, 0.04, 0.12),
                angle: uni(rng, 0.0, PI),
            }
        } else {
            Fill::Solid(c)
        };
        fig.part(rrect(-rb, y0, rb, y1, 0.0), f, Part::Body);
    }
    if kind == "water" && chance(rng, 0.6) {
        for k in 0..3 {
            let y = -ysh * (0.1 + 0.08 * k as f32);
            fig.part(
                rrect(-rb, y - 0.015, rb, y, 0.0),
                Fill::Solid(glass.shade(-0.2)),
                Part::Body,
            );
        }
    }
    // Cap or cork.
    let cap = pal.pick(
        rng,
        &[
            Rgb(0.8, 0.75, 0.3),
            Rgb(0.85, 0.85, 0.85),
            Rgb(0.1, 0.3, 0.7),
            Rgb(0.6, 0.4, 0.25),
        ],
    );
    let ch = uni(rng, 0.07, 0.14);
    let cw = rn * uni(rng, 1.05, 1.4);
    fig.part(
        rrect(-cw, -h - ch, cw, -h + 0.03, 0.015),
        Fill::shaded(cap, 0.2),
        Part::Cap,
    );
}
