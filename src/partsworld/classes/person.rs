//! People: full body from the front, back or side (walking), upper body and head-and-shoulder
//! portraits. Parts: `head`, `hair`, `ear`, `eye`, `eyebrow`, `nose`, `mouth`, `neck`,
//! `torso`, `arm`, `hand`, `leg`, `foot`.

use std::f32::consts::PI;

use super::super::Part;
use super::super::draw::{
    Figure, Fill, Rgb, WRng, capsule, chance, ellipse, limb, pick, polar, poly, rounded, smooth,
    uni,
};
use super::{Palette, colours};

struct Look {
    skin: Rgb,
    hair: Rgb,
    shirt: Fill,
    sleeve: Fill,
    trousers: Fill,
    shoes: Rgb,
    lips: Rgb,
    eye: Rgb,
    brow: Rgb,
    hair_style: &'static str,
    dress: bool,
}

/// Builds a person.
pub fn build(rng: &mut WRng, phase: f32) -> Figure {
    let pal = Palette::new(rng);
    let skin = pal.pick(rng, &colours::SKIN);
    let hair = pal.pick(rng, &colours::HAIR);
    let shirt_c = pal.pick(rng, &colours::CLOTH);
    let shirt = pal.texture(rng, shirt_c, 1.0);
    let trousers_c = pal.pick(rng, &colours::CLOTH);
    let look = Look {
        skin,
        hair,
        shirt,
        sleeve: if chance(rng, 0.55) {
            shirt
        } else {
            Fill::Solid(skin)
        },
        trousers: pal.texture(rng, trousers_c, 1.0),
        shoes: pal.pick(rng, &colours::DARK),
        lips: pal.pick(rng, &[Rgb(0.75, 0.35, 0.35), Rgb(0.6, 0.3, 0.28)]),
        eye: pal.pick(rng, &[Rgb(0.1, 0.08, 0.06), Rgb(0.2, 0.3, 0.5)]),
        brow: hair.shade(-0.3),
        hair_style: pick(rng, &["short", "short", "long", "bun", "bald", "curly"]),
        dress: chance(rng, 0.18),
    };
    let view = pick(
        rng,
        &[
            "full-front",
            "full-front",
            "full-back",
            "full-side",
            "full-side",
            "upper-body",
            "upper-body",
            "portrait",
            "portrait",
        ],
    );
    let mut fig = Figure {
        view,
        ..Figure::default()
    };
    // Proportions in head heights; feet at y = 0.
    let h = uni(rng, 6.6, 7.8);
    let hx = uni(rng, 0.38, 0.46);
    let hy = uni(rng, 0.5, 0.56);
    let head = (0.0, -h + hy);
    let sw = uni(rng, 0.8, 1.05);
    let hipw = uni(rng, 0.55, 0.72);
    let ys = -h + 1.4;
    let yh = -0.48 * h;
    let walk = uni(rng, 0.0, 1.0) < 0.4;
    let w = if walk {
        (phase * uni(rng, 5.0, 7.0) + uni(rng, 0.0, 6.3)).sin()
    } else {
        0.0
    };

    let profile = view == "full-side" || (view == "upper-body" && chance(rng, 0.35));
    match view {
        _ if profile => side(rng, &mut fig, &look, h, (hx, hy), sw, ys, yh, phase),
        _ => {
            let back = view == "full-back";
            front(
                rng,
                &mut fig,
                &look,
                (hx, hy),
                head,
                sw,
                hipw,
                ys,
                yh,
                back,
                w,
            );
        }
    }
    match view {
        "upper-body" => {
            fig.frame = Some([-sw - 0.8, -h - 0.3, sw + 0.8, yh + 0.4]);
            fig.anchor_bottom = true;
        }
        "portrait" => {
            fig.frame = Some([-sw - 0.2, -h - 0.25, sw + 0.2, ys + uni(rng, 0.6, 1.2)]);
            fig.anchor_bottom = true;
        }
        _ => fig.min_height = 0.65,
    }
    fig
}

#[allow(clippy::too_many_arguments)]
fn front(
    rng: &mut WRng,
    fig: &mut Figure,
    lk: &Look,
    (hx, hy): (f32, f32),
    head: (f32, f32),
    sw: f32,
    hipw: f32,
    ys: f32,
    yh: f32,
    back: bool,
    walk: f32,
) {
    // Legs and feet.
    let spread = uni(rng, 0.0, 0.35);
    for s in [-1.0f32, 1.0] {
        let hip = (s * hipw * 0.55, yh - 0.1);
        let knee = (s * (hipw * 0.55 + spread * 0.5), yh * 0.5 + 0.1 * walk * s);
        let ankle = (
            s * (hipw * 0.55 + spread),
            -0.28 - 0.15 * (walk * s).max(0.0),
        );
        limb(
            fig,
            &[hip, knee, ankle],
            &[0.3, 0.24, 0.17],
            lk.trousers,
            Part::Leg,
        );
        fig.part(
            ellipse(ankle.0 + s * 0.1, ankle.1 + 0.15, 0.3, 0.18, 0.0),
            Fill::Solid(lk.shoes),
            Part::Foot,
        );
    }
    // Long hair behind the back (front view).
    if lk.hair_style == "long" && !back {
        fig.part(
            smooth(&[
                (-hx * 1.1, head.1 - hy * 0.3),
                (hx * 1.1, head.1 - hy * 0.3),
                (hx * 1.35, head.1 + hy * 1.9),
                (-hx * 1.35, head.1 + hy * 1.9),
            ]),
            Fill::Solid(lk.hair),
            Part::Hair,
        );
    }
    // Neck and torso.
    fig.part(
        rounded(
            &[
                (-0.24, head.1 + hy * 0.6),
                (0.24, head.1 + hy * 0.6),
                (0.27, ys + 0.2),
                (-0.27, ys + 0.2),
            ],
            0.05,
        ),
        Fill::Solid(lk.skin.shade(-0.1)),
        Part::Neck,
    );
    let bottom = if lk.dress { yh * 0.45 } else { yh + 0.15 };
    let bw = if lk.dress { hipw * 1.35 } else { hipw };
    fig.part(
        rounded(
            &[
                (-sw + 0.2, ys),
                (sw - 0.2, ys),
                (sw, ys + 0.4),
                (sw * 0.85, ys + 1.6),
                (bw, bottom),
                (-bw, bottom),
                (-sw * 0.85, ys + 1.6),
                (-sw, ys + 0.4),
            ],
            0.25,
        ),
        lk.shirt,
        Part::Torso,
    );
    // Arms and hands.
    for s in [-1.0f32, 1.0] {
        let sh = (s * (sw - 0.15), ys + 0.25);
        let pose = pick(rng, &["down", "down", "down", "out", "up", "hip"]);
        let (a1, a2) = match pose {
            "out" => (
                PI / 2.0 - s * uni(rng, 0.6, 1.0),
                PI / 2.0 - s * uni(rng, 0.3, 1.2),
            ),
            "up" => (
                -PI / 2.0 + s * uni(rng, 0.3, 0.9),
                -PI / 2.0 + s * uni(rng, -0.2, 0.3),
            ),
            "hip" => (PI / 2.0 - s * 0.7, PI / 2.0 + s * 1.5),
            _ => {
                let a = PI / 2.0 - s * uni(rng, 0.05, 0.25) + 0.15 * walk * s;
                (a, a + s * uni(rng, -0.1, 0.3))
            }
        };
        let elbow = polar(sh, a1, 1.35);
        let wrist = polar(elbow, a2, 1.2);
        limb(
            fig,
            &[sh, elbow, wrist],
            &[0.22, 0.18, 0.14],
            lk.sleeve,
            Part::Arm,
        );
        let hand = polar(wrist, a2, 0.15);
        fig.part(
            ellipse(hand.0, hand.1, 0.19, 0.25, a2 - PI / 2.0),
            Fill::Solid(lk.skin),
            Part::Hand,
        );
    }
    // Ears, head, face, hair.
    for s in [-1.0f32, 1.0] {
        fig.part(
            ellipse(head.0 + s * hx * 0.97, head.1 + 0.04, 0.12, 0.19, 0.0),
            Fill::Solid(lk.skin.shade(-0.12)),
            Part::Ear,
        );
    }
    fig.part(
        ellipse(head.0, head.1, hx, hy, 0.0),
        Fill::Radial {
            c0: lk.skin.shade(0.12),
            c1: lk.skin.shade(-0.15),
            fx: 0.45,
            fy: 0.35,
        },
        Part::Head,
    );
    if back {
        if lk.hair_style != "bald" {
            fig.part(
                ellipse(head.0, head.1 - 0.05, hx * 1.06, hy * 1.02, 0.0),
                Fill::Solid(lk.hair),
                Part::Hair,
            );
            if lk.hair_style == "long" {
                fig.part(
                    smooth(&[
                        (-hx * 1.05, head.1),
                        (hx * 1.05, head.1),
                        (hx * 1.3, head.1 + hy * 1.9),
                        (-hx * 1.3, head.1 + hy * 1.9),
                    ]),
                    Fill::Solid(lk.hair),
                    Part::Hair,
                );
            }
        }
        return;
    }
    face_front(fig, lk, head, hx, hy);
    hair_front(fig, lk, head, hx, hy);
}

fn face_front(fig: &mut Figure, lk: &Look, c: (f32, f32), hx: f32, hy: f32) {
    let ex = hx * 0.42;
    let ey = c.1 - hy * 0.02;
    for s in [-1.0f32, 1.0] {
        fig.part(
            ellipse(c.0 + s * ex, ey, 0.1, 0.065, 0.0),
            Fill::Solid(Rgb(0.95, 0.95, 0.93)),
            Part::Eye,
        );
        fig.part(
            ellipse(c.0 + s * ex, ey, 0.05, 0.06, 0.0),
            Fill::Solid(lk.eye),
            Part::Eye,
        );
        fig.part(
            rounded(
                &[
                    (c.0 + s * (ex - 0.11), ey - 0.14),
                    (c.0 + s * (ex + 0.11), ey - 0.165),
                    (c.0 + s * (ex + 0.11), ey - 0.105),
                    (c.0 + s * (ex - 0.11), ey - 0.085),
                ],
                0.01,
            ),
            Fill::Solid(lk.brow),
            Part::Eyebrow,
        );
    }
    fig.part(
        poly(&[
            (c.0, ey + 0.02),
            (c.0 + 0.09, c.1 + hy * 0.33),
            (c.0 - 0.09, c.1 + hy * 0.33),
        ]),
        Fill::Solid(lk.skin.shade(-0.22)),
        Part::Nose,
    );
    fig.part(
        ellipse(c.0, c.1 + hy * 0.56, 0.15, 0.055, 0.0),
        Fill::Solid(lk.lips),
        Part::Mouth,
    );
}

fn hair_front(fig: &mut Figure, lk: &Look, c: (f32, f32), hx: f32, hy: f32) {
    let (x, y) = c;
    match lk.hair_style {
        "bald" => {}
        "curly" => {
            for k in 0..7 {
                let a = PI + PI * k as f32 / 6.0;
                let p = polar((x, y - hy * 0.15), a, hx * 0.95);
                fig.part(
                    ellipse(p.0, p.1, hx * 0.36, hy * 0.3, 0.0),
                    Fill::Solid(lk.hair),
                    Part::Hair,
                );
            }
        }
        _ => {
            fig.part(
                smooth(&[
                    (x - hx * 1.06, y + hy * 0.05),
                    (x - hx * 1.05, y - hy * 0.6),
                    (x - hx * 0.55, y - hy * 1.1),
                    (x, y - hy * 1.14),
                    (x + hx * 0.55, y - hy * 1.1),
                    (x + hx * 1.05, y - hy * 0.6),
                    (x + hx * 1.06, y + hy * 0.05),
                    (x + hx * 0.85, y - hy * 0.42),
                    (x, y - hy * 0.58),
                    (x - hx * 0.85, y - hy * 0.42),
                ]),
                Fill::Solid(lk.hair),
                Part::Hair,
            );
            if lk.hair_style == "bun" {
                fig.part(
                    ellipse(x, y - hy * 1.15, hx * 0.45, hy * 0.32, 0.0),
                    Fill::Solid(lk.hair),
                    Part::Hair,
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn side(
    rng: &mut WRng,
    fig: &mut Figure,
    lk: &Look,
    h: f32,
    (hx, hy): (f32, f32),
    _sw: f32,
    ys: f32,
    yh: f32,
    phase: f32,
) {
    // Facing +x. Walking stride with far limbs first and darker.
    let stride = uni(rng, 0.2, 0.6);
    let ph = phase * uni(rng, 4.0, 6.0) + uni(rng, 0.0, 6.3);
    let depth = uni(rng, 0.4, 0.55);
    let head = (0.12, -h + hy);
    let leg = |fig: &mut Figure, sw: f32, fill: Fill, shoe: Rgb| {
        let hip = (0.0, yh - 0.1);
        let a = PI / 2.0 + stride * sw;
        let knee = polar(hip, a, -yh * 0.5);
        let ankle = polar(knee, a - 0.25 * (1.0 - sw).max(0.0), -yh * 0.5 - 0.28);
        limb(
            fig,
            &[hip, knee, ankle],
            &[0.3, 0.23, 0.17],
            fill,
            Part::Leg,
        );
        fig.part(
            ellipse(ankle.0 + 0.2, ankle.1 + 0.12, 0.34, 0.17, 0.0),
            Fill::Solid(shoe),
            Part::Foot,
        );
    };
    let arm = |fig: &mut Figure, sw: f32, fill: Fill, skin: Rgb| {
        let sh = (0.0, ys + 0.25);
        let a1 = PI / 2.0 - 0.6 * stride * sw;
        let elbow = polar(sh, a1, 1.35);
        let a2 = a1 - 0.35 - 0.3 * sw.max(0.0);
        let wrist = polar(elbow, a2, 1.2);
        limb(
            fig,
            &[sh, elbow, wrist],
            &[0.21, 0.17, 0.14],
            fill,
            Part::Arm,
        );
        let hp = polar(wrist, a2, 0.15);
        fig.part(
            ellipse(hp.0, hp.1, 0.18, 0.24, a2 - PI / 2.0),
            Fill::Solid(skin),
            Part::Hand,
        );
    };
    let s = ph.sin();
    let dim = |f: Fill| match f {
        Fill::Solid(c) => Fill::Solid(c.shade(-0.25)),
        other => other,
    };
    arm(fig, -s, dim(lk.sleeve), lk.skin.shade(-0.25));
    leg(fig, -s, dim(lk.trousers), lk.shoes.shade(-0.2));
    leg(fig, s, lk.trousers, lk.shoes);
    if lk.hair_style == "long" {
        fig.part(
            smooth(&[
                (head.0 - hx * 0.2, head.1 - hy * 0.5),
                (head.0 - hx * 1.1, head.1 - hy * 0.2),
                (head.0 - hx * 1.2, head.1 + hy * 1.9),
                (head.0 - hx * 0.3, head.1 + hy * 1.6),
            ]),
            Fill::Solid(lk.hair),
            Part::Hair,
        );
    }
    fig.part(
        capsule((0.05, head.1 + hy * 0.5), (0.0, ys + 0.25), 0.23, 0.25),
        Fill::Solid(lk.skin.shade(-0.1)),
        Part::Neck,
    );
    let bottom = if lk.dress { yh * 0.45 } else { yh + 0.15 };
    fig.part(
        rounded(
            &[
                (-depth, ys + 0.05),
                (depth * 0.8, ys),
                (depth * 1.05, ys + 1.0),
                (depth * 0.8, bottom),
                (-depth * if lk.dress { 1.4 } else { 0.9 }, bottom),
                (-depth * 1.05, ys + 1.2),
            ],
            0.2,
        ),
        lk.shirt,
        Part::Torso,
    );
    arm(fig, s, lk.sleeve, lk.skin);
    // Head in profile: skull, nose, mouth, eye, brow, ear, hair.
    fig.part(
        poly(&[
            (head.0 + hx * 0.85, head.1 - 0.02),
            (head.0 + hx * 1.22, head.1 + hy * 0.3),
            (head.0 + hx * 0.85, head.1 + hy * 0.33),
        ]),
        Fill::Solid(lk.skin.shade(-0.15)),
        Part::Nose,
    );
    fig.part(
        ellipse(head.0, head.1, hx * 0.95, hy, 0.0),
        Fill::Radial {
            c0: lk.skin.shade(0.12),
            c1: lk.skin.shade(-0.15),
            fx: 0.6,
            fy: 0.35,
        },
        Part::Head,
    );
    fig.part(
        ellipse(head.0 + hx * 0.78, head.1 + hy * 0.58, 0.07, 0.04, 0.0),
        Fill::Solid(lk.lips),
        Part::Mouth,
    );
    fig.part(
        ellipse(head.0 + hx * 0.55, head.1 - hy * 0.03, 0.075, 0.065, 0.0),
        Fill::Solid(lk.eye),
        Part::Eye,
    );
    fig.part(
        rounded(
            &[
                (head.0 + hx * 0.35, head.1 - hy * 0.22),
                (head.0 + hx * 0.8, head.1 - hy * 0.25),
                (head.0 + hx * 0.8, head.1 - hy * 0.17),
                (head.0 + hx * 0.35, head.1 - hy * 0.14),
            ],
            0.01,
        ),
        Fill::Solid(lk.brow),
        Part::Eyebrow,
    );
    if lk.hair_style != "bald" {
        fig.part(
            smooth(&[
                (head.0 + hx * 0.7, head.1 - hy * 0.55),
                (head.0 + hx * 0.2, head.1 - hy * 1.08),
                (head.0 - hx * 0.7, head.1 - hy * 0.9),
                (head.0 - hx * 1.02, head.1 - hy * 0.1),
                (head.0 - hx * 0.8, head.1 + hy * 0.55),
                (head.0 - hx * 0.3, head.1 - hy * 0.1),
                (head.0 + hx * 0.3, head.1 - hy * 0.5),
            ]),
            Fill::Solid(lk.hair),
            Part::Hair,
        );
    }
    fig.part(
        ellipse(head.0 - hx * 0.1, head.1 + hy * 0.08, 0.12, 0.19, 0.2),
        Fill::Solid(lk.skin.shade(-0.12)),
        Part::Ear,
    );
}
