//! Backgrounds (sky and ground, walls, rooms, textures) with distractor shapes that are not
//! parts, and foreground occluders (poles, fences, bushes, boxes, branches) that hide parts of
//! the object. Everything here has label 0.

use std::f32::consts::PI;

use rand::Rng;
use tiny_skia::{Path, Transform};

use super::draw::{
    Canvas, Fill, Rgb, WRng, capsule, chance, ellipse, pick, poly, rrect, smooth, uni,
};

/// Paints the background into the picture layer. `view` is the visible region in scene
/// coordinates `[x0, y0, x1, y1]` (the object's square is `[0, 1]²`), `ts` maps scene
/// coordinates to pixels, `pan` shifts the background (video), `clutter` in `[0, 1]`.
pub fn paint_background(
    rng: &mut WRng,
    canvas: &mut Canvas,
    view: [f32; 4],
    ts: Transform,
    scale: f32,
    pan: f32,
    clutter: f32,
) {
    canvas.scale = scale;
    let [x0, y0, x1, y1] = view;
    // Generous margins so that panning never shows an edge.
    let (mx0, mx1) = (x0 - 1.0, x1 + 1.0);
    let kind = pick(rng, &["sky", "sky", "wall", "room", "texture"]);
    let paint = |canvas: &mut Canvas, path: Option<Path>, fill: Fill, depth: f32| {
        if let Some(p) = path {
            let t = Transform::from_translate(pan * depth, 0.0).post_concat(ts);
            if let Some(p) = p.transform(t) {
                canvas.paint_rgb(&p, &fill);
            }
        }
    };
    let c1 = Rgb::random(rng);
    let c2 = Rgb::random(rng);
    let horizon = uni(rng, 0.25, 0.85);
    match kind {
        "sky" => {
            let sky = if chance(rng, 0.5) {
                pick(
                    rng,
                    &[
                        Rgb(0.55, 0.7, 0.9),
                        Rgb(0.8, 0.85, 0.9),
                        Rgb(0.9, 0.7, 0.5),
                        Rgb(0.4, 0.5, 0.7),
                    ],
                )
            } else {
                c1
            };
            paint(
                canvas,
                rrect(mx0, y0 - 0.1, mx1, horizon, 0.0),
                Fill::Grad {
                    c0: sky.shade(uni(rng, -0.2, 0.2)),
                    c1: sky.shade(uni(rng, 0.0, 0.4)),
                    angle: PI / 2.0,
                },
                0.2,
            );
            let ground = rrect(mx0, horizon, mx1, y1 + 0.1, 0.0);
            let g = ground_fill(rng, c2);
            paint(canvas, ground, g, 1.0);
        }
        "wall" => {
            let f = texture_fill(rng, c1);
            paint(canvas, rrect(mx0, y0 - 0.1, mx1, y1 + 0.1, 0.0), f, 1.0);
        }
        "room" => {
            let f = texture_fill(rng, c1);
            paint(canvas, rrect(mx0, y0 - 0.1, mx1, horizon, 0.0), f, 1.0);
            let g = ground_fill(rng, c2);
            paint(canvas, rrect(mx0, horizon, mx1, y1 + 0.1, 0.0), g, 1.0);
        }
        _ => {
            let f = texture_fill(rng, c1);
            paint(canvas, rrect(mx0, y0 - 0.1, mx1, y1 + 0.1, 0.0), f, 1.0);
        }
    }
    // Distractors.
    let n = (clutter * uni(rng, 2.0, 14.0)).round() as usize;
    for _ in 0..n {
        let c = Rgb::random(rng);
        let x = uni(rng, mx0 + 0.5, mx1 - 0.5);
        let y = if kind == "sky" || kind == "room" {
            horizon - uni(rng, -0.1, 0.35)
        } else {
            uni(rng, y0, y1)
        };
        let s = uni(rng, 0.04, 0.35);
        let depth = uni(rng, 0.3, 1.0);
        let fill = if chance(rng, 0.7) {
            Fill::shaded(c, uni(rng, 0.0, 0.3))
        } else {
            texture_fill(rng, c)
        };
        match rng.random_range(0..7) {
            0 => {
                // Building or box standing on the horizon.
                let w = s * uni(rng, 0.5, 1.5);
                paint(
                    canvas,
                    rrect(x - w, y - s * 2.0, x + w, y + 0.02, 0.0),
                    fill,
                    depth,
                );
                if chance(rng, 0.6) {
                    // Window grid.
                    let f = Fill::Stripes {
                        c0: c.shade(-0.4),
                        c1: c.shade(0.2),
                        period: w * uni(rng, 0.15, 0.4),
                        angle: pick(rng, &[0.0, PI / 2.0]),
                    };
                    paint(
                        canvas,
                        rrect(x - w * 0.8, y - s * 1.8, x + w * 0.8, y - s * 0.3, 0.0),
                        f,
                        depth,
                    );
                }
            }
            1 => {
                // Tree: trunk and crown.
                let tc = Rgb(0.35, 0.25, 0.15).shade(uni(rng, -0.3, 0.2));
                paint(
                    canvas,
                    rrect(x - s * 0.08, y - s * 1.5, x + s * 0.08, y + 0.02, 0.0),
                    Fill::Solid(tc),
                    depth,
                );
                let crown = pick(rng, &[Rgb(0.2, 0.45, 0.15), Rgb(0.35, 0.5, 0.2), c]);
                paint(
                    canvas,
                    blob(rng, x, y - s * 1.6, s * 0.7, s * 0.6),
                    Fill::Noise {
                        c: crown,
                        amount: 0.4,
                        grain: 0.03,
                    },
                    depth,
                );
            }
            2 => {
                let ry = s * uni(rng, 0.4, 1.0);
                paint(canvas, blob(rng, x, y, s, ry), fill, depth)
            }
            3 => {
                // Pole or wire.
                let a = uni(rng, -0.3, 0.3) + if chance(rng, 0.3) { PI / 2.0 } else { 0.0 };
                let l = uni(rng, 0.5, 2.0);
                let (dx, dy) = (a.sin() * l, -a.cos() * l);
                paint(
                    canvas,
                    capsule((x, y + 0.05), (x + dx, y + dy), s * 0.05, s * 0.04),
                    Fill::Solid(c),
                    depth,
                );
            }
            4 => {
                let k = rng.random_range(3..7);
                let pts: Vec<(f32, f32)> = (0..k)
                    .map(|_| (x + uni(rng, -s, s), y + uni(rng, -s, s)))
                    .collect();
                paint(canvas, poly(&pts), fill, depth);
            }
            5 => paint(
                canvas,
                rrect(x - s, y - s * 0.3, x + s, y + s * 0.3, s * 0.1),
                fill,
                depth,
            ),
            _ => paint(
                canvas,
                ellipse(
                    x,
                    y,
                    s * uni(rng, 0.3, 1.0),
                    s * uni(rng, 0.2, 0.6),
                    uni(rng, 0.0, PI),
                ),
                fill,
                depth,
            ),
        }
    }
}

/// A random rounded blob.
fn blob(rng: &mut WRng, x: f32, y: f32, rx: f32, ry: f32) -> Option<Path> {
    let k = rng.random_range(5..9);
    let pts: Vec<(f32, f32)> = (0..k)
        .map(|i| {
            let a = 2.0 * PI * i as f32 / k as f32;
            let r = uni(rng, 0.7, 1.1);
            (x + rx * r * a.cos(), y + ry * r * a.sin())
        })
        .collect();
    smooth(&pts)
}

fn ground_fill(rng: &mut WRng, c: Rgb) -> Fill {
    let natural = [
        Rgb(0.3, 0.5, 0.2),
        Rgb(0.45, 0.45, 0.45),
        Rgb(0.55, 0.45, 0.3),
        Rgb(0.25, 0.25, 0.27),
    ];
    let g = if chance(rng, 0.5) {
        pick(rng, &natural)
    } else {
        c
    };
    match rng.random_range(0..3) {
        0 => Fill::Grad {
            c0: g.shade(uni(rng, -0.3, 0.0)),
            c1: g.shade(uni(rng, 0.0, 0.3)),
            angle: PI / 2.0,
        },
        1 => Fill::Noise {
            c: g,
            amount: uni(rng, 0.2, 0.6),
            grain: uni(rng, 0.005, 0.03),
        },
        _ => Fill::Stripes {
            c0: g,
            c1: g.shade(uni(rng, -0.25, 0.25)),
            period: uni(rng, 0.03, 0.2),
            angle: uni(rng, 0.0, PI),
        },
    }
}

fn texture_fill(rng: &mut WRng, c: Rgb) -> Fill {
    match rng.random_range(0..5) {
        0 => Fill::Solid(c),
        1 => Fill::Grad {
            c0: c.shade(uni(rng, -0.4, 0.1)),
            c1: Rgb::random(rng),
            angle: uni(rng, 0.0, 2.0 * PI),
        },
        2 => Fill::Stripes {
            c0: c,
            c1: if chance(rng, 0.5) {
                c.shade(uni(rng, -0.3, 0.3))
            } else {
                Rgb::random(rng)
            },
            period: uni(rng, 0.02, 0.25),
            angle: uni(rng, 0.0, PI),
        },
        3 => Fill::Noise {
            c,
            amount: uni(rng, 0.2, 0.7),
            grain: uni(rng, 0.004, 0.03),
        },
        _ => Fill::Radial {
            c0: c.shade(0.3),
            c1: Rgb::random(rng),
            fx: uni(rng, 0.0, 1.0),
            fy: uni(rng, 0.0, 1.0),
        },
    }
}

/// Paints foreground occluders over the object (label 0 in the label layer). `obj` is the
/// object's box in scene coordinates; `occlusion` in `[0, 1]` sets how likely and how large.
pub fn paint_occluders(
    rng: &mut WRng,
    canvas: &mut Canvas,
    obj: [f32; 4],
    ts: Transform,
    scale: f32,
    occlusion: f32,
) {
    if !chance(rng, occlusion) {
        return;
    }
    canvas.scale = scale;
    let [x0, y0, x1, y1] = obj;
    let (w, h) = (x1 - x0, y1 - y0);
    let n = if chance(rng, 0.3) { 2 } else { 1 };
    for _ in 0..n {
        let c = Rgb::random(rng);
        let fill = if chance(rng, 0.6) {
            Fill::shaded(c, 0.2)
        } else {
            texture_fill(rng, c)
        };
        let size = occlusion.sqrt() * uni(rng, 0.15, 0.45);
        let shapes: Vec<Option<Path>> = match rng.random_range(0..5) {
            0 => {
                // Vertical pole.
                let x = uni(rng, x0 + 0.1 * w, x1 - 0.1 * w);
                let hw = w * size * 0.15;
                vec![rrect(x - hw, y0 - 2.0, x + hw, y1 + 2.0, 0.0)]
            }
            1 => {
                // Fence slats along the bottom.
                let top = y1 - h * size * uni(rng, 0.6, 1.2);
                let n = rng.random_range(3..8);
                let gap = (w * 1.6) / n as f32;
                let sw = gap * uni(rng, 0.2, 0.5);
                let mut v: Vec<Option<Path>> = (0..n)
                    .map(|i| {
                        let x = x0 - 0.3 * w + i as f32 * gap;
                        rrect(x, top, x + sw, y1 + 2.0, 0.0)
                    })
                    .collect();
                v.push(rrect(
                    x0 - w,
                    top + 0.3 * (y1 - top),
                    x1 + w,
                    top + 0.3 * (y1 - top) + sw * 0.5,
                    0.0,
                ));
                v
            }
            2 => {
                // Bush from the bottom edge.
                let x = uni(rng, x0, x1);
                vec![blob(rng, x, y1, w * size * 1.2, h * size * 1.1)]
            }
            3 => {
                // A box coming in from a side.
                let left = chance(rng, 0.5);
                let d = w * size;
                let yc = uni(rng, y0 + 0.2 * h, y1);
                let hh = h * size * uni(rng, 0.6, 1.2);
                let (a, b) = if left {
                    (x0 - 2.0, x0 + d)
                } else {
                    (x1 - d, x1 + 2.0)
                };
                vec![rrect(a, yc - hh, b, yc + hh, 0.0)]
            }
            _ => {
                // A branch across.
                let ya = uni(rng, y0, y1);
                let yb = ya + uni(rng, -0.3, 0.3) * h;
                let r = h * size * 0.08 + 0.004;
                vec![capsule((x0 - 0.5 * w, ya), (x1 + 0.5 * w, yb), r, r * 0.6)]
            }
        };
        for p in shapes.into_iter().flatten() {
            if let Some(p) = p.transform(ts) {
                canvas.paint_rgb(&p, &fill);
                canvas.paint_label(&p, 0);
            }
        }
    }
}
