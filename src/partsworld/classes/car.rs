//! Cars: an extruded side profile seen by a perspective camera from the front, back, side or
//! three-quarter views. Faces: `vehicle_left`/`vehicle_right` (side panels), `frontside`
//! (front face and bonnet), `vehicle_back` (rear face and boot), `vehicle_top` (roof);
//! decorations: `window`, `door`, `wheel`, `mirror`, `headlight`, `licenseplate`.

use std::f32::consts::PI;

use super::super::Part;
use super::super::draw::{Figure, Fill, Rgb, WRng, chance, pick, uni};
use super::super::vehicle::{Camera, Edge, FaceGroup, Prism, V3, emit, inset};
use super::{Palette, colours};

/// Clips a polygon to `x0 <= x <= x1`.
fn clip_x(pts: &[(f32, f32)], x0: f32, x1: f32) -> Vec<(f32, f32)> {
    fn clip(pts: &[(f32, f32)], keep: impl Fn(f32) -> bool, at: f32) -> Vec<(f32, f32)> {
        let n = pts.len();
        let mut out = Vec::with_capacity(n + 2);
        for i in 0..n {
            let a = pts[i];
            let b = pts[(i + 1) % n];
            let (ia, ib) = (keep(a.0), keep(b.0));
            if ia {
                out.push(a);
            }
            if ia != ib {
                let t = (at - a.0) / (b.0 - a.0);
                out.push((at, a.1 + (b.1 - a.1) * t));
            }
        }
        out
    }
    let a = clip(pts, |x| x >= x0, x0);
    clip(&a, |x| x <= x1, x1)
}

/// Builds a car.
pub fn build(rng: &mut WRng, _phase: f32) -> Figure {
    let pal = Palette::new(rng);
    let kind = pick(rng, &["sedan", "hatch", "suv", "van", "coupe"]);
    let l = uni(rng, 3.6, 4.8);
    let w = uni(rng, 1.65, 1.95);
    let r = uni(rng, 0.29, 0.37) * if kind == "suv" { 1.12 } else { 1.0 };
    let yb = r * uni(rng, 0.75, 0.95);
    let yh = match kind {
        "suv" | "van" => uni(rng, 1.0, 1.2),
        "coupe" => uni(rng, 0.75, 0.85),
        _ => uni(rng, 0.82, 0.98),
    };
    let yr = yh
        + match kind {
            "van" => uni(rng, 0.75, 0.95),
            "suv" => uni(rng, 0.55, 0.7),
            "coupe" => uni(rng, 0.38, 0.46),
            _ => uni(rng, 0.45, 0.58),
        };
    let (xf, xb) = (l / 2.0, -l / 2.0);
    let x_fw = xf - uni(rng, 0.65, 0.9);
    let x_rw = xb + uni(rng, 0.6, 0.85);
    let (x_wb, x_wt, x_rt, x_rb, yt) = match kind {
        "van" => {
            let wb = xf - uni(rng, 0.55, 0.8);
            (wb, wb - uni(rng, 0.4, 0.6), xb + 0.08, xb + 0.02, yh)
        }
        "hatch" | "suv" => {
            let wb = xf - uni(rng, 1.0, 1.3);
            let rt = xb + uni(rng, 0.2, 0.4);
            (wb, wb - uni(rng, 0.55, 0.8), rt, xb + 0.05, yh)
        }
        _ => {
            let wb = xf - uni(rng, 1.1, 1.45);
            let wt = wb - uni(rng, 0.6, 0.9);
            let rt = xb + uni(rng, 0.9, 1.3);
            let rb = rt - uni(rng, 0.4, 0.7);
            (wb, wt, rt, rb, yh - uni(rng, 0.0, 0.08))
        }
    };
    let ra = r * 1.13;
    let nose = uni(rng, 0.08, 0.2);

    // Colours.
    let body = pal.pick(rng, &colours::PAINT);
    let body_fill = match uni(rng, 0.0, 1.0) {
        v if v < 0.55 => Fill::shaded(body, uni(rng, 0.1, 0.3)),
        v if v < 0.8 => Fill::Solid(body),
        _ => pal.texture(rng, body, 1.0),
    };
    let front_fill = Fill::shaded(body.shade(uni(rng, -0.1, 0.1)), 0.15);
    let back_fill = Fill::shaded(body.shade(uni(rng, -0.12, 0.05)), 0.15);
    let top_fill = Fill::Solid(body.shade(uni(rng, 0.0, 0.25)));
    let glass = pal.pick(rng, &colours::GLASS);
    let glass_fill = Fill::Grad {
        c0: glass.shade(uni(rng, 0.1, 0.4)),
        c1: glass.shade(-0.2),
        angle: uni(rng, 0.3, 1.3),
    };
    let tyre = pal.pick(rng, &colours::DARK);
    let rim = pal.pick(
        rng,
        &[
            Rgb(0.75, 0.75, 0.77),
            Rgb(0.3, 0.3, 0.32),
            Rgb(0.55, 0.55, 0.6),
        ],
    );
    let lamp = pal.pick(rng, &colours::LAMP);
    let tail = pal.pick(rng, &[Rgb(0.8, 0.05, 0.05), Rgb(0.9, 0.3, 0.1)]);
    let plate = pal.pick(rng, &[Rgb(0.95, 0.95, 0.95), Rgb(0.95, 0.85, 0.2)]);
    let plate_fill = if chance(rng, 0.6) {
        Fill::Stripes {
            c0: plate,
            c1: plate.shade(-0.7),
            period: 0.07,
            angle: 0.0,
        }
    } else {
        Fill::Solid(plate)
    };
    let trim = pal.pick(rng, &colours::DARK);
    let door_fill = Fill::shaded(body.shade(uni(rng, -0.15, 0.12)), 0.2);
    let livery = if chance(rng, 0.2) {
        Some(Rgb::random(rng))
    } else {
        None
    };

    // Profile, counter-clockwise in (x, y-up), starting at the rear bottom.
    let none = Edge {
        part: None,
        fill: Fill::Solid(body),
        tag: "",
    };
    let e = |part: Part, fill: Fill, tag: &'static str| Edge {
        part: Some(part),
        fill,
        tag,
    };
    let mut pts: Vec<(f32, f32)> = Vec::new();
    let mut edges: Vec<Edge> = Vec::new();
    pts.push((xb, yb));
    edges.push(none);
    let alpha = ((r - yb) / ra).clamp(-0.9, 0.9).asin();
    for xw in [x_rw, x_fw] {
        let steps = 8;
        for k in 0..=steps {
            let th = PI + alpha - (PI + 2.0 * alpha) * k as f32 / steps as f32;
            pts.push((xw + ra * th.cos(), r + ra * th.sin()));
            edges.push(none);
        }
    }
    pts.push((xf, yb));
    edges.push(e(Part::Frontside, front_fill, "front"));
    pts.push((xf, yh - nose));
    edges.push(e(Part::Frontside, front_fill, "nose"));
    pts.push((xf - nose * 1.2, yh));
    edges.push(e(Part::Frontside, front_fill, "hood"));
    pts.push((x_wb, yh + 0.04));
    edges.push(e(Part::Frontside, Fill::Solid(trim), "windscreen"));
    pts.push((x_wt, yr));
    edges.push(e(Part::VehicleTop, top_fill, "roof"));
    pts.push((x_rt, yr));
    edges.push(e(Part::VehicleBack, Fill::Solid(trim), "rearwindow"));
    pts.push((x_rb, yt));
    if x_rb - (xb + 0.1) > 0.05 {
        edges.push(e(Part::VehicleBack, back_fill, "trunk"));
        pts.push((xb + 0.1, yt));
    }
    edges.push(e(Part::VehicleBack, back_fill, "tail"));
    pts.push((xb, yt - 0.12));
    edges.push(e(Part::VehicleBack, back_fill, "back"));
    let prism = Prism::new(pts, edges, w, 0.0);

    // Camera.
    let view = pick(
        rng,
        &[
            "front",
            "front-3/4",
            "front-3/4",
            "side",
            "side",
            "side",
            "back-3/4",
            "back",
        ],
    );
    let s = if chance(rng, 0.5) { 1.0 } else { -1.0 };
    let yaw = match view {
        "front" => uni(rng, -0.3, 0.3),
        "front-3/4" => s * uni(rng, 0.45, 1.1),
        "side" => s * uni(rng, 1.3, 1.85),
        "back-3/4" => s * uni(rng, 2.0, 2.6),
        _ => PI + uni(rng, -0.3, 0.3),
    };
    let pitch = uni(rng, 0.0, 0.42);
    let cam = Camera::new(yaw, pitch, l * uni(rng, 1.8, 6.0), [0.0, yr * 0.45, 0.0]);
    let hw = w / 2.0;

    let mut groups: Vec<FaceGroup> = Vec::new();

    // Wheels (under the body).
    for (xw, zs) in [(x_fw, 1.0f32), (x_fw, -1.0), (x_rw, 1.0), (x_rw, -1.0)] {
        let outer = [xw, r, zs * (hw - 0.03)];
        let inner = [xw, r, zs * (hw - 0.28)];
        let a: V3 = [r, 0.0, 0.0];
        let b: V3 = [0.0, r, 0.0];
        let mut g = FaceGroup::new(cam.depth(outer), -2);
        g.add(
            cam.cylinder(outer, inner, a, b),
            Fill::Solid(tyre),
            Part::Wheel,
        );
        if cam.faces(outer, [0.0, 0.0, zs]) {
            let k = uni(rng, 0.5, 0.7);
            g.add(
                cam.disc(outer, [r * k, 0.0, 0.0], [0.0, r * k, 0.0]),
                Fill::Radial {
                    c0: rim.shade(0.3),
                    c1: rim.shade(-0.2),
                    fx: 0.4,
                    fy: 0.4,
                },
                Part::Wheel,
            );
        }
        groups.push(g);
    }

    // Strips.
    for (st, depth) in prism.visible_strips(&cam) {
        let edge = prism.edges[st.edge];
        let mut g = FaceGroup::new(depth, 0);
        let part = edge.part.expect("visible strips have parts");
        g.add(prism.strip_path(&cam, &st), edge.fill, part);
        let quad = |s0: f32, s1: f32, z0: f32, z1: f32| {
            cam.poly(&[st.at(s0, z0), st.at(s1, z0), st.at(s1, z1), st.at(s0, z1)])
        };
        match edge.tag {
            "front" => {
                // Grille, headlights, licence plate.
                let gw = hw * uni(rng, 0.3, 0.6);
                g.add(
                    quad(uni(rng, 0.45, 0.55), 0.9, -gw, gw),
                    Fill::Stripes {
                        c0: trim,
                        c1: trim.shade(0.3),
                        period: 0.06,
                        angle: PI / 2.0,
                    },
                    Part::Frontside,
                );
                let lw = uni(rng, 0.3, 0.45);
                let (l0, l1) = (uni(rng, 0.5, 0.62), uni(rng, 0.85, 0.97));
                for zs in [-1.0f32, 1.0] {
                    let z0 = zs * (hw - 0.06);
                    let z1 = zs * (hw - 0.06 - lw);
                    g.add(quad(l0, l1, z0, z1), Fill::Solid(lamp), Part::Headlight);
                }
                g.add(quad(0.1, 0.4, -0.3, 0.3), plate_fill, Part::Licenseplate);
            }
            "back" => {
                let lw = uni(rng, 0.2, 0.38);
                for zs in [-1.0f32, 1.0] {
                    let z0 = zs * (hw - 0.05);
                    let z1 = zs * (hw - 0.05 - lw);
                    g.add(
                        quad(0.05, 0.3, z0, z1),
                        Fill::Solid(tail),
                        Part::VehicleBack,
                    );
                }
                g.add(quad(0.42, 0.75, -0.3, 0.3), plate_fill, Part::Licenseplate);
            }
            "windscreen" | "rearwindow" => {
                let fr = uni(rng, 0.04, 0.1);
                g.add(
                    quad(0.07, 0.93, -(hw - fr), hw - fr),
                    glass_fill,
                    Part::Window,
                );
            }
            _ => {}
        }
        groups.push(g);
    }

    // Side panel and its decorations.
    let side = prism.visible_side(&cam);
    let mirror_x = x_wb - 0.05;
    let mirror = |zs: f32| {
        let z0 = zs * (hw - 0.02);
        let z1 = zs * (hw + 0.27);
        let (y0, y1) = (yh + 0.0, yh + 0.22);
        cam.poly(&[
            [mirror_x, y0, z0],
            [mirror_x + 0.05, y0, z1],
            [mirror_x + 0.05, y1, z1],
            [mirror_x, y1, z0],
        ])
    };
    let mirror_fill = Fill::Solid(if chance(rng, 0.6) { body } else { trim });
    if let Some(zs) = side {
        let mut g = FaceGroup::new(0.0, -1);
        g.add(mirror(-zs), mirror_fill, Part::Mirror);
        groups.push(g);
        let part = if zs > 0.0 {
            Part::VehicleRight
        } else {
            Part::VehicleLeft
        };
        let mut g = FaceGroup::new(0.0, 1);
        g.add(prism.cap_path(&cam, zs), body_fill, part);
        if let Some(c) = livery {
            let y0 = uni(rng, yb + 0.1, yh - 0.2);
            g.add(
                prism.on_side(
                    &cam,
                    zs,
                    &[(xb, y0), (xf, y0), (xf, y0 + 0.1), (xb, y0 + 0.1)],
                ),
                Fill::Solid(c),
                part,
            );
        }
        // Doors: between the wheel arches, up to the belt line.
        let d_front = (x_fw - ra - 0.08).min(x_wb + 0.15);
        let d_back = (x_rw + ra + 0.08).max(x_rb - 0.1);
        let n_doors = if kind == "coupe" || d_front - d_back < 1.4 {
            1
        } else {
            2
        };
        let bp = if n_doors == 1 {
            d_back
        } else {
            (d_front + d_back) / 2.0
        };
        let dy0 = yb + 0.05;
        let dy1 = yh - 0.02;
        let mut doors = vec![(bp, d_front)];
        if n_doors == 2 {
            doors.push((d_back, bp));
        }
        for (x0, x1) in doors {
            g.add(
                prism.on_side(&cam, zs, &[(x0, dy0), (x1, dy0), (x1, dy1), (x0, dy1)]),
                Fill::Solid(body.shade(-0.45)),
                Part::Door,
            );
            g.add(
                prism.on_side(
                    &cam,
                    zs,
                    &[
                        (x0 + 0.025, dy0 + 0.025),
                        (x1 - 0.025, dy0 + 0.025),
                        (x1 - 0.025, dy1 - 0.02),
                        (x0 + 0.025, dy1 - 0.02),
                    ],
                ),
                door_fill,
                Part::Door,
            );
            let hx = x1 - 0.3;
            g.add(
                prism.on_side(
                    &cam,
                    zs,
                    &[
                        (hx, dy1 - 0.12),
                        (hx + 0.16, dy1 - 0.12),
                        (hx + 0.16, dy1 - 0.08),
                        (hx, dy1 - 0.08),
                    ],
                ),
                Fill::Solid(trim),
                Part::Door,
            );
        }
        // Side windows: the greenhouse inset, split at the pillars.
        let gh = [(x_wb, yh + 0.04), (x_rb, yt), (x_rt, yr), (x_wt, yr)];
        let win = inset(&gh, uni(rng, 0.05, 0.09));
        let pillar = 0.05;
        let mut cuts = vec![bp];
        if kind == "van" {
            cuts.push((bp + xb) / 2.0);
        }
        cuts.sort_by(f32::total_cmp);
        let mut lo = f32::MIN;
        for c in cuts.iter().copied().chain([f32::MAX]) {
            let piece = clip_x(&win, lo + pillar, c - pillar);
            if piece.len() >= 3 {
                g.add(prism.on_side(&cam, zs, &piece), glass_fill, Part::Window);
            }
            lo = c;
        }
        // Head- and tail lights wrapping round the corners, and the mirror on the side.
        let (l0, l1) = (yh - nose - 0.26, yh - nose - 0.03);
        g.add(
            prism.on_side(
                &cam,
                zs,
                &[(xf - 0.38, l0), (xf, l0), (xf, l1), (xf - 0.45, l1)],
            ),
            Fill::Solid(lamp),
            Part::Headlight,
        );
        g.add(
            prism.on_side(
                &cam,
                zs,
                &[
                    (xb, yt - 0.32),
                    (xb + 0.15, yt - 0.32),
                    (xb + 0.15, yt - 0.16),
                    (xb, yt - 0.16),
                ],
            ),
            Fill::Solid(tail),
            part,
        );
        groups.push(g);
        let mut g = FaceGroup::new(0.0, 2);
        g.add(
            prism.on_side(
                &cam,
                zs,
                &[
                    (mirror_x - 0.24, yh + 0.0),
                    (mirror_x + 0.04, yh + 0.0),
                    (mirror_x + 0.04, yh + 0.22),
                    (mirror_x - 0.2, yh + 0.22),
                ],
            ),
            mirror_fill,
            Part::Mirror,
        );
        g.add(mirror(zs), mirror_fill, Part::Mirror);
        groups.push(g);
    } else {
        let mut g = FaceGroup::new(0.0, 2);
        g.add(mirror(1.0), mirror_fill, Part::Mirror);
        g.add(mirror(-1.0), mirror_fill, Part::Mirror);
        groups.push(g);
    }

    let mut fig = Figure {
        view,
        ..Figure::default()
    };
    emit(&mut fig, groups);
    fig
}
