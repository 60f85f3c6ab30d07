//! Trains: a leading unit (a locomotive, labelled `head`, or a cab coach) followed by coaches
//! (`coach_left`/`coach_right` sides, `coach_top`, `coach_front`, `coach_back` ends), with
//! `headlight`s on the leading front. Seen in perspective from the front, three-quarter
//! front, side, three-quarter back or back; the framed unit fills the picture and the rest
//! of the train runs out of it.

use std::f32::consts::PI;

use rand::Rng;

use super::super::Part;
use super::super::draw::{Figure, Fill, Rgb, WRng, chance, pick, uni};
use super::super::vehicle::{Camera, Edge, FaceGroup, Prism, emit};
use super::{Palette, colours};

struct Unit {
    prism: Prism,
    /// Leading locomotive (all `head`) or a coach.
    loco: bool,
    /// Leading unit (has headlights and a windscreen).
    leading: bool,
    /// Trailing unit.
    last: bool,
}

/// Builds a train.
pub fn build(rng: &mut WRng, _phase: f32) -> Figure {
    let pal = Palette::new(rng);
    let w = uni(rng, 2.8, 3.2);
    let yb = uni(rng, 0.9, 1.2);
    let ytop = uni(rng, 3.6, 4.3);
    let coach_len = uni(rng, 11.0, 15.0);
    let gap = 0.7;
    let has_loco = chance(rng, 0.6);
    let lead_len = if has_loco {
        uni(rng, 7.0, 10.0)
    } else {
        coach_len
    };
    let nose_kind = pick(rng, &["box", "box", "sloped", "streamline", "hood"]);
    let n_coaches = rng.random_range(1..=4);

    // Colours.
    let livery = pal.pick(
        rng,
        &[
            Rgb(0.75, 0.1, 0.1),
            Rgb(0.1, 0.25, 0.6),
            Rgb(0.9, 0.9, 0.9),
            Rgb(0.55, 0.55, 0.58),
            Rgb(0.9, 0.75, 0.1),
            Rgb(0.1, 0.4, 0.2),
            Rgb(0.15, 0.15, 0.15),
        ],
    );
    let loco_col = if chance(rng, 0.5) {
        livery
    } else {
        pal.pick(
            rng,
            &[Rgb(0.8, 0.1, 0.1), Rgb(0.2, 0.2, 0.22), Rgb(0.95, 0.8, 0.1)],
        )
    };
    let stripe = Rgb::random(rng);
    let glass = pal.pick(rng, &colours::GLASS);
    let dark = pal.pick(rng, &colours::DARK);
    let lamp = pal.pick(rng, &colours::LAMP);
    let roof = livery.shade(uni(rng, -0.4, 0.3));
    let side_fill = match uni(rng, 0.0, 1.0) {
        v if v < 0.5 => Fill::shaded(livery, uni(rng, 0.05, 0.25)),
        v if v < 0.75 => Fill::Solid(livery),
        _ => pal.texture(rng, livery, 4.0),
    };
    let win_style = pick(rng, &["row", "band", "row"]);

    // Units along -x, the front of the leading unit at x = 0.
    let none = Edge {
        part: None,
        fill: Fill::Solid(dark),
        tag: "",
    };
    let mut units: Vec<Unit> = Vec::new();
    let mut x = 0.0f32;
    for i in 0..=n_coaches {
        let leading = i == 0;
        let loco = leading && has_loco;
        let len = if leading { lead_len } else { coach_len };
        let cx = x - len / 2.0;
        x -= len + gap;
        let (fpart, tpart, bpart) = if loco {
            (Part::Head, Part::Head, Part::Head)
        } else {
            (Part::CoachFront, Part::CoachTop, Part::CoachBack)
        };
        let body = if loco { loco_col } else { livery };
        let end_fill = Fill::shaded(body.shade(-0.05), 0.15);
        let top_fill = Fill::Solid(if loco { loco_col.shade(-0.2) } else { roof });
        let e = |part: Part, fill: Fill, tag: &'static str| Edge {
            part: Some(part),
            fill,
            tag,
        };
        let h = len / 2.0;
        let (pts, edges) = if leading {
            match nose_kind {
                "sloped" => (
                    vec![
                        (-h, yb),
                        (h, yb),
                        (h, ytop - 1.4),
                        (h - 0.9, ytop - 0.15),
                        (h - 1.3, ytop),
                        (-h, ytop),
                    ],
                    vec![
                        none,
                        e(fpart, end_fill, "front"),
                        e(fpart, end_fill, "windscreen"),
                        e(tpart, top_fill, "cab-roof"),
                        e(tpart, top_fill, "roof"),
                        e(bpart, end_fill, "back"),
                    ],
                ),
                "streamline" => (
                    vec![
                        (-h, yb),
                        (h, yb),
                        (h, yb + 0.7),
                        (h - 1.6, ytop - 1.0),
                        (h - 3.2, ytop - 0.1),
                        (h - 3.8, ytop),
                        (-h, ytop),
                    ],
                    vec![
                        none,
                        e(fpart, end_fill, "front"),
                        e(fpart, end_fill, "nose"),
                        e(fpart, end_fill, "windscreen"),
                        e(tpart, top_fill, "cab-roof"),
                        e(tpart, top_fill, "roof"),
                        e(bpart, end_fill, "back"),
                    ],
                ),
                "hood" if loco => {
                    let yhood = ytop - uni(rng, 0.9, 1.4);
                    let xc = h - uni(rng, 2.0, 3.5);
                    (
                        vec![
                            (-h, yb),
                            (h, yb),
                            (h, yhood),
                            (xc, yhood),
                            (xc, ytop - 0.2),
                            (xc - 0.2, ytop),
                            (-h, ytop),
                        ],
                        vec![
                            none,
                            e(fpart, end_fill, "front"),
                            e(tpart, top_fill, "hood"),
                            e(fpart, end_fill, "windscreen"),
                            e(tpart, top_fill, "cab-roof"),
                            e(tpart, top_fill, "roof"),
                            e(bpart, end_fill, "back"),
                        ],
                    )
                }
                _ => (
                    vec![
                        (-h, yb),
                        (h, yb),
                        (h, ytop - 1.5),
                        (h - 0.35, ytop - 0.2),
                        (h - 0.55, ytop),
                        (-h, ytop),
                    ],
                    vec![
                        none,
                        e(fpart, end_fill, "front"),
                        e(fpart, end_fill, "windscreen"),
                        e(tpart, top_fill, "cab-roof"),
                        e(tpart, top_fill, "roof"),
                        e(bpart, end_fill, "back"),
                    ],
                ),
            }
        } else {
            (
                vec![
                    (-h, yb),
                    (h, yb),
                    (h, ytop - 0.15),
                    (h - 0.25, ytop),
                    (-h + 0.25, ytop),
                    (-h, ytop - 0.15),
                ],
                vec![
                    none,
                    e(fpart, end_fill, "end"),
                    e(tpart, top_fill, "roof"),
                    e(tpart, top_fill, "roof"),
                    e(tpart, top_fill, "roof"),
                    e(bpart, end_fill, "back"),
                ],
            )
        };
        units.push(Unit {
            prism: Prism::new(pts, edges, w, cx),
            loco,
            leading,
            last: i == n_coaches,
        });
    }

    // Camera and framing.
    let view = pick(
        rng,
        &[
            "front",
            "front-3/4",
            "front-3/4",
            "front-3/4",
            "front-3/4",
            "side",
            "side",
            "back-3/4",
            "back",
        ],
    );
    let s = if chance(rng, 0.5) { 1.0 } else { -1.0 };
    let yaw = match view {
        "front" => uni(rng, -0.25, 0.25),
        "front-3/4" => s * uni(rng, 0.35, 1.05),
        "side" => s * uni(rng, 1.3, 1.75),
        "back-3/4" => s * uni(rng, 2.2, 2.8),
        _ => PI + uni(rng, -0.25, 0.25),
    };
    let back_view = view.starts_with("back");
    let framed = if back_view { units.len() - 1 } else { 0 };
    let fc = units[framed].prism.centre();
    let flen = if framed == 0 { lead_len } else { coach_len };
    let pitch = uni(rng, 0.02, if view == "side" { 0.35 } else { 0.25 });
    let cam = Camera::new(
        yaw,
        pitch,
        flen * uni(rng, 1.4, 3.5),
        [fc[0], ytop * 0.5, 0.0],
    );

    let mut groups: Vec<FaceGroup> = Vec::new();

    // Track: ballast with sleepers and two rails, clipped to stay in front of the camera.
    let x_first = 8.0;
    let x_last = x - 8.0;
    let min_depth = 0.3 * flen;
    let depth_ok = |x: f32| {
        [-2.0f32, 2.0]
            .iter()
            .all(|&z| cam.depth([x, 0.0, z]) >= min_depth)
    };
    let (mut xa, mut xb) = (x_last, x_first);
    for _ in 0..2 {
        // Depth is linear in x: pull an end that is behind the near limit towards the other.
        for end in [0, 1] {
            let (bad, good) = if end == 0 { (xa, xb) } else { (xb, xa) };
            if !depth_ok(bad) && depth_ok(good) {
                let (mut lo, mut hi) = (good, bad);
                for _ in 0..24 {
                    let mid = (lo + hi) / 2.0;
                    if depth_ok(mid) {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                if end == 0 {
                    xa = lo;
                } else {
                    xb = lo;
                }
            }
        }
    }
    if depth_ok(xa) && depth_ok(xb) && xb > xa {
        let mut g = FaceGroup::new(0.0, i32::MIN / 2);
        let along = {
            let a = cam.project([0.0, 0.0, 0.0]);
            let b = cam.project([1.0, 0.0, 0.0]);
            (b.0 - a.0, b.1 - a.1)
        };
        let ballast = Rgb(0.45, 0.42, 0.38).shade(uni(rng, -0.3, 0.2));
        g.add_plain(
            cam.poly(&[
                [xa, 0.0, -1.9],
                [xb, 0.0, -1.9],
                [xb, 0.0, 1.9],
                [xa, 0.0, 1.9],
            ]),
            Fill::Stripes {
                c0: ballast,
                c1: Rgb(0.3, 0.22, 0.15).shade(uni(rng, -0.3, 0.1)),
                period: 0.65 * along.0.hypot(along.1),
                angle: along.1.atan2(along.0),
            },
        );
        let rail = Rgb(0.55, 0.55, 0.58).shade(uni(rng, -0.3, 0.2));
        for zr in [-0.75f32, 0.75] {
            g.add_plain(
                cam.poly(&[
                    [xa, 0.16, zr - 0.05],
                    [xb, 0.16, zr - 0.05],
                    [xb, 0.16, zr + 0.05],
                    [xa, 0.16, zr + 0.05],
                ]),
                Fill::Solid(rail),
            );
        }
        groups.push(g);
    }

    let mut frame = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
    let next = if back_view {
        framed.checked_sub(1)
    } else if framed + 1 < units.len() {
        Some(framed + 1)
    } else {
        None
    };
    for (ui, u) in units.iter().enumerate() {
        let p = &u.prism;
        let c = p.centre();
        // Units are drawn far to near as whole blocks.
        let unit_depth = cam.depth(c);
        let layer = -((unit_depth * 100.0) as i32);
        // Frame the chosen unit and a part of its neighbour.
        let part_of = if ui == framed {
            // At most ~9 m of the framed unit: long coaches run out of the picture.
            let len = p.pts.iter().map(|q| q.0).fold(f32::MIN, f32::max);
            if back_view {
                Some((f32::MIN, p.x0 - len + 9.0))
            } else {
                Some((p.x0 + len - 9.0, f32::MAX))
            }
        } else if Some(ui) == next && view != "side" {
            let len = p.pts.iter().map(|q| q.0).fold(f32::MIN, f32::max);
            // The half facing the framed unit.
            if back_view {
                Some((f32::MIN, p.x0 - len * 0.2))
            } else {
                Some((p.x0 + len * 0.2, f32::MAX))
            }
        } else {
            None
        };
        if let Some((x_lo, x_hi)) = part_of {
            for &(px, py) in &p.pts {
                for z in [-w / 2.0, w / 2.0] {
                    let q = cam.project([(px + p.x0).clamp(x_lo, x_hi), py, z]);
                    frame = [
                        frame[0].min(q.0),
                        frame[1].min(q.1),
                        frame[2].max(q.0),
                        frame[3].max(q.1),
                    ];
                }
            }
        }
        for (st, depth) in p.visible_strips(&cam) {
            let edge = p.edges[st.edge];
            let part = edge.part.expect("visible strips have parts");
            let mut g = FaceGroup::new(depth, layer);
            g.add(p.strip_path(&cam, &st), edge.fill, part);
            let quad = |s0: f32, s1: f32, z0: f32, z1: f32| {
                cam.poly(&[st.at(s0, z0), st.at(s1, z0), st.at(s1, z1), st.at(s0, z1)])
            };
            let hw = w / 2.0;
            match edge.tag {
                "windscreen" if u.leading => {
                    g.add(
                        quad(0.12, 0.88, -(hw - 0.25), hw - 0.25),
                        Fill::Grad {
                            c0: glass.shade(0.3),
                            c1: glass.shade(-0.3),
                            angle: 1.0,
                        },
                        part,
                    );
                }
                "front" if u.leading => {
                    if chance(rng, 0.5) {
                        g.add(quad(0.55, 0.7, -hw, hw), Fill::Solid(stripe), part);
                    }
                    let big: f32 = if nose_kind == "streamline" { 1.6 } else { 1.0 };
                    let (l0, l1) = (0.1 * big.min(1.2), 0.34 * big.min(1.2));
                    for zs in [-1.0f32, 1.0] {
                        g.add(
                            quad(l0, l1, zs * (hw - 0.2), zs * (hw - 0.2 - 0.6 * big)),
                            Fill::Solid(lamp),
                            Part::Headlight,
                        );
                    }
                    if nose_kind != "streamline" && chance(rng, 0.6) {
                        g.add(
                            quad(0.84, 0.98, -0.32, 0.32),
                            Fill::Solid(lamp),
                            Part::Headlight,
                        );
                    }
                    // Buffer beam.
                    g.add(quad(0.0, 0.08, -hw, hw), Fill::Solid(dark), part);
                }
                "end" | "back" => {
                    // Gangway door and, at the tail, two tail lamps.
                    g.add(
                        quad(0.15, 0.85, -0.4, 0.4),
                        Fill::Solid(livery.shade(-0.35)),
                        part,
                    );
                    if u.last && edge.tag == "back" {
                        for zs in [-1.0f32, 1.0] {
                            g.add(
                                quad(0.8, 0.9, zs * (hw - 0.2), zs * (hw - 0.5)),
                                Fill::Solid(Rgb(0.8, 0.1, 0.1)),
                                part,
                            );
                        }
                    }
                }
                _ => {}
            }
            groups.push(g);
        }
        if let Some(zs) = p.visible_side(&cam) {
            let part = if u.loco {
                Part::Head
            } else if zs > 0.0 {
                Part::CoachRight
            } else {
                Part::CoachLeft
            };
            let mut g = FaceGroup::new(0.0, layer + 1);
            let body = if u.loco { loco_col } else { livery };
            let fill = if u.loco {
                Fill::shaded(body, 0.15)
            } else {
                side_fill
            };
            g.add(p.cap_path(&cam, zs), fill, part);
            let h = if u.leading {
                lead_len / 2.0
            } else {
                coach_len / 2.0
            };
            // Livery stripe.
            let sy = uni(rng, yb + 0.3, yb + 0.9);
            let x_end = if u.leading { h - 1.5 } else { h };
            g.add(
                p.on_side(
                    &cam,
                    zs,
                    &[(-h, sy), (x_end, sy), (x_end, sy + 0.25), (-h, sy + 0.25)],
                ),
                Fill::Solid(stripe),
                part,
            );
            // Windows.
            let (wy0, wy1) = (ytop - 1.6, ytop - 0.7);
            let glass_fill = Fill::Grad {
                c0: glass.shade(0.25),
                c1: glass.shade(-0.25),
                angle: PI / 2.0,
            };
            if u.loco {
                // Cab side window near the front, a door and vents.
                let cx0 = match nose_kind {
                    "streamline" => h - 4.2,
                    "hood" => h - 3.9,
                    _ => h - 1.8,
                };
                g.add(
                    p.on_side(
                        &cam,
                        zs,
                        &[(cx0, wy0), (cx0 + 1.0, wy0), (cx0 + 1.0, wy1), (cx0, wy1)],
                    ),
                    glass_fill,
                    part,
                );
                for k in 0..3 {
                    let vx = -h + 1.0 + k as f32 * 1.3;
                    g.add(
                        p.on_side(
                            &cam,
                            zs,
                            &[(vx, wy0), (vx + 0.9, wy0), (vx + 0.9, wy1), (vx, wy1)],
                        ),
                        Fill::Stripes {
                            c0: body.shade(-0.3),
                            c1: body.shade(0.1),
                            period: 0.25,
                            angle: PI / 2.0,
                        },
                        part,
                    );
                }
            } else if win_style == "band" {
                let x1 = if u.leading { h - 2.0 } else { h - 1.2 };
                g.add(
                    p.on_side(
                        &cam,
                        zs,
                        &[(-h + 1.2, wy0), (x1, wy0), (x1, wy1), (-h + 1.2, wy1)],
                    ),
                    glass_fill,
                    part,
                );
            } else {
                let n = ((2.0 * h - 3.0) / 1.6) as i32;
                for k in 0..n.max(1) {
                    let wx = -h + 1.5 + k as f32 * 1.6;
                    if u.leading && wx + 1.1 > h - 2.0 {
                        break;
                    }
                    g.add(
                        p.on_side(
                            &cam,
                            zs,
                            &[(wx, wy0), (wx + 1.1, wy0), (wx + 1.1, wy1), (wx, wy1)],
                        ),
                        glass_fill,
                        part,
                    );
                }
            }
            if u.leading && !u.loco {
                // Cab window of a cab coach.
                let x0 = h - 1.8;
                g.add(
                    p.on_side(
                        &cam,
                        zs,
                        &[(x0, wy0), (x0 + 1.0, wy0), (x0 + 0.9, wy1), (x0, wy1)],
                    ),
                    glass_fill,
                    part,
                );
            }
            // Doors.
            if !u.loco {
                for dx in [-h + 0.4, h - 1.3] {
                    g.add(
                        p.on_side(
                            &cam,
                            zs,
                            &[
                                (dx, yb + 0.15),
                                (dx + 0.9, yb + 0.15),
                                (dx + 0.9, ytop - 0.6),
                                (dx, ytop - 0.6),
                            ],
                        ),
                        Fill::Solid(body.shade(-0.25)),
                        part,
                    );
                }
            }
            // Bogies with wheels.
            for bx in [-h + 2.2, h - 2.2] {
                g.add(
                    p.on_side(
                        &cam,
                        zs,
                        &[
                            (bx - 1.3, 0.25),
                            (bx + 1.3, 0.25),
                            (bx + 1.3, yb),
                            (bx - 1.3, yb),
                        ],
                    ),
                    Fill::Solid(dark),
                    part,
                );
                for wx in [bx - 0.75, bx + 0.75] {
                    let pts: Vec<(f32, f32)> = (0..12)
                        .map(|k| {
                            let t = std::f32::consts::TAU * k as f32 / 12.0;
                            (wx + 0.45 * t.cos(), 0.45 + 0.45 * t.sin())
                        })
                        .collect();
                    g.add(
                        p.on_side(&cam, zs, &pts),
                        Fill::Solid(dark.shade(0.25)),
                        part,
                    );
                }
            }
            groups.push(g);
        }
    }

    let mut fig = Figure {
        view,
        ..Figure::default()
    };
    emit(&mut fig, groups);
    fig.frame = Some(frame);
    fig
}
