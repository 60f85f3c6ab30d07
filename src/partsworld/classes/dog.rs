//! Dogs: side views (standing, walking, sitting; head in profile or turned to the camera),
//! front views and head portraits. Parts: `head`, `muzzle`, `nose`, `eye`, `ear`, `neck`,
//! `torso`, `leg`, `paw`, `tail`.

use std::f32::consts::PI;

use rand::Rng;

use super::super::Part;
use super::super::draw::{
    Figure, Fill, Rgb, WRng, chance, ellipse, lerp2, limb, pick, polar, poly, rounded, smooth, uni,
};
use super::{Palette, colours};

struct Look {
    fur: Rgb,
    fur_fill: Fill,
    fur2: Rgb,
    ear: Rgb,
    nose: Rgb,
    eye: Rgb,
    muzzle: Rgb,
    floppy: bool,
    spots: bool,
}

/// Builds a dog.
pub fn build(rng: &mut WRng, phase: f32) -> Figure {
    let pal = Palette::new(rng);
    let fur = pal.pick(rng, &colours::FUR);
    let fur2 = if chance(rng, 0.5) {
        fur.shade(uni(rng, -0.3, 0.3))
    } else {
        pal.pick(rng, &colours::FUR)
    };
    let look = Look {
        fur,
        fur_fill: pal.texture(rng, fur, 0.8),
        fur2,
        ear: if chance(rng, 0.5) {
            fur2
        } else {
            fur.shade(-0.2)
        },
        nose: pal.pick(rng, &colours::DARK),
        eye: pal.pick(rng, &[Rgb(0.08, 0.05, 0.03), Rgb(0.3, 0.18, 0.08)]),
        muzzle: if chance(rng, 0.5) {
            fur2
        } else {
            fur.shade(0.15)
        },
        floppy: chance(rng, 0.55),
        spots: chance(rng, 0.15),
    };
    let view = pick(
        rng,
        &[
            "side",
            "side",
            "side",
            "side-walk",
            "side-sit",
            "side-face",
            "front",
            "portrait",
        ],
    );
    let mut fig = Figure {
        view,
        ..Figure::default()
    };
    match view {
        "front" => front(rng, &mut fig, &look, false),
        "portrait" => {
            front(rng, &mut fig, &look, true);
            fig.anchor_bottom = true;
        }
        _ => side(rng, &mut fig, &look, view, phase),
    }
    fig
}

fn side(rng: &mut WRng, fig: &mut Figure, lk: &Look, view: &str, phase: f32) {
    // Facing +x, ground at y = 0.
    let bl = uni(rng, 1.3, 1.9);
    let th = uni(rng, 0.45, 0.65);
    let ll = th * uni(rng, 0.9, 1.7);
    let sit = view == "side-sit";
    let walk = view == "side-walk";
    let ph = phase * uni(rng, 5.0, 7.0) + uni(rng, 0.0, 6.3);
    let ytop = -ll - th;
    let ybel = -ll;
    let fx = bl / 2.0;
    let rx = -bl / 2.0;
    // Sitting: the body pivots up about the rump.
    // Sitting: the body pivots up about the rump, which comes down to the ground.
    let tilt: f32 = if sit { -0.6 } else { 0.0 };
    let pivot = (rx, ybel);
    let drop = if sit { ll - th * 0.2 } else { 0.0 };
    let rot = |p: (f32, f32)| {
        let (s, c) = tilt.sin_cos();
        let d = (p.0 - pivot.0, p.1 - pivot.1);
        (
            pivot.0 + d.0 * c - d.1 * s,
            pivot.1 + d.0 * s + d.1 * c + drop,
        )
    };
    let leg_r = th * uni(rng, 0.11, 0.15);
    let gait = |k: f32| if walk { 0.35 * (ph + k).sin() } else { 0.0 };
    let paw = |fig: &mut Figure, foot: (f32, f32), c: Rgb| {
        fig.part(
            ellipse(
                foot.0 + leg_r * 0.5,
                foot.1 - leg_r * 0.2,
                leg_r * 1.3,
                leg_r * 0.75,
                0.0,
            ),
            Fill::Solid(c),
            Part::Paw,
        );
    };
    let front_leg = |fig: &mut Figure, x: f32, swing: f32, c: Fill, pc: Rgb| {
        let sh = rot((x, ytop + th * 0.55));
        let foot = (sh.0 + 0.05 + swing * 0.5 * -sh.1, -leg_r * 0.5);
        let elbow = lerp2(sh, foot, 0.45);
        let elbow = (elbow.0 - 0.04, elbow.1);
        limb(
            fig,
            &[sh, elbow, foot],
            &[leg_r * 1.5, leg_r, leg_r * 0.85],
            c,
            Part::Leg,
        );
        paw(fig, foot, pc);
    };
    let hind_leg = |fig: &mut Figure, x: f32, swing: f32, c: Fill, pc: Rgb| {
        if sit {
            let _ = x;
            let hip = (rx + th * 0.45, -th * 0.45);
            fig.part(
                ellipse(hip.0, hip.1, th * 0.6, th * 0.42, -0.5),
                c,
                Part::Leg,
            );
            let foot = (hip.0 + th * 0.75, -leg_r * 0.5);
            limb(
                fig,
                &[(hip.0 + th * 0.2, hip.1 + th * 0.2), foot],
                &[leg_r * 1.2, leg_r * 0.85],
                c,
                Part::Leg,
            );
            paw(fig, foot, pc);
            return;
        }
        let hip = (x, ytop + th * 0.45);
        let d = swing * ll;
        let stifle = (x + 0.12 + d * 0.3, ybel + ll * 0.15);
        let hock = (x - 0.12 + d * 0.6, -ll * 0.35);
        let foot = (x - 0.06 + d * 0.8, -leg_r * 0.5);
        limb(
            fig,
            &[hip, stifle, hock, foot],
            &[leg_r * 2.0, leg_r * 1.2, leg_r * 0.85, leg_r * 0.85],
            c,
            Part::Leg,
        );
        paw(fig, foot, pc);
    };
    let dim = lk.fur.shade(-0.3);
    let far = Fill::Solid(dim);
    front_leg(fig, fx * 0.62, gait(PI), far, dim.shade(-0.1));
    hind_leg(fig, rx * 0.62, gait(0.0), far, dim.shade(-0.1));

    // Tail.
    let tail_base = rot((rx + 0.02, ytop + th * 0.15));
    let tail_kind = pick(rng, &["up", "curl", "down", "straight"]);
    let wag = if walk || chance(rng, 0.3) {
        0.25 * (ph * 1.7).sin()
    } else {
        0.0
    };
    let tl = th * uni(rng, 0.8, 1.4);
    let (a0, bend) = match tail_kind {
        "up" => (-PI * 0.7, 0.3),
        "curl" => (-PI * 0.6, 0.9),
        "down" => (PI * 0.7, -0.2),
        _ => (PI * 1.05, 0.1),
    };
    let t1 = polar(tail_base, a0 + wag, tl * 0.5);
    let t2 = polar(t1, a0 + wag + bend, tl * 0.5);
    let tr = th * uni(rng, 0.08, 0.14);
    limb(
        fig,
        &[tail_base, t1, t2],
        &[tr * 1.3, tr, tr * 0.45],
        Fill::Solid(lk.fur2),
        Part::Tail,
    );

    // Head placement, then the neck (behind the torso), torso, near legs, head.
    let hrx = th * uni(rng, 0.5, 0.65);
    let hry = hrx * uni(rng, 0.75, 0.9);
    let chest = rot((fx + 0.05, ytop + th * 0.45));
    let withers = rot((fx * 0.45, ytop));
    let hc = (
        chest.0 + hrx * 0.2,
        withers.1 - uni(rng, 0.15, 0.4) * th - hry * 0.6,
    );
    fig.part(
        poly(&[
            withers,
            (hc.0 - hrx * 0.7, hc.1 - hry * 0.2),
            (hc.0 + hrx * 0.3, hc.1 + hry * 0.6),
            chest,
            (chest.0 - th * 0.5, chest.1 + th * 0.3),
        ]),
        Fill::Solid(lk.fur.shade(-0.05)),
        Part::Neck,
    );
    let body_pts = [
        (rx - 0.04, ytop + th * 0.12),
        (rx * 0.3, ytop),
        (fx * 0.6, ytop - 0.03),
        (fx + 0.06, ytop + th * 0.45),
        (fx * 0.7, ybel + 0.02),
        (fx * 0.1, ybel - th * 0.08),
        (rx * 0.55, ybel - th * 0.12),
        (rx - 0.1, ytop + th * 0.65),
    ];
    let body: Vec<(f32, f32)> = body_pts.iter().map(|&p| rot(p)).collect();
    fig.part(smooth(&body), lk.fur_fill, Part::Torso);
    if lk.spots {
        for _ in 0..rng.random_range(3..6) {
            let p = rot((
                uni(rng, rx * 0.8, fx * 0.6),
                uni(rng, ytop + 0.1, ybel - 0.1),
            ));
            fig.part(
                ellipse(
                    p.0,
                    p.1,
                    th * uni(rng, 0.1, 0.25),
                    th * uni(rng, 0.08, 0.18),
                    uni(rng, 0.0, 3.0),
                ),
                Fill::Solid(lk.fur2),
                Part::Torso,
            );
        }
    }
    front_leg(fig, fx * 0.5, gait(0.0), lk.fur_fill, lk.fur2);
    hind_leg(fig, rx * 0.55, gait(PI), lk.fur_fill, lk.fur2);

    if view == "side-face" {
        head_front(rng, fig, lk, hc, hrx * 1.1);
        return;
    }
    if !lk.floppy {
        // Far ear peeking out.
        fig.part(
            poly(&[
                (hc.0 - hrx * 0.05, hc.1 - hry * 0.6),
                (hc.0 + hrx * 0.2, hc.1 - hry * 1.8),
                (hc.0 + hrx * 0.45, hc.1 - hry * 0.45),
            ]),
            Fill::Solid(lk.ear.shade(-0.25)),
            Part::Ear,
        );
    }
    fig.part(ellipse(hc.0, hc.1, hrx, hry, 0.0), lk.fur_fill, Part::Head);
    let ml = hrx * uni(rng, 0.6, 1.3);
    let mh = hry * uni(rng, 0.6, 0.8);
    let m0 = (hc.0 + hrx * 0.45, hc.1 + hry * 0.25);
    fig.part(
        rounded(
            &[
                (m0.0, m0.1 - mh * 0.55),
                (m0.0 + ml, m0.1 - mh * 0.25),
                (m0.0 + ml, m0.1 + mh * 0.45),
                (m0.0 - hrx * 0.15, m0.1 + mh * 0.6),
            ],
            mh * 0.3,
        ),
        Fill::Solid(lk.muzzle),
        Part::Muzzle,
    );
    fig.part(
        ellipse(
            m0.0 + ml - mh * 0.1,
            m0.1 - mh * 0.2,
            mh * 0.42,
            mh * 0.35,
            0.0,
        ),
        Fill::Solid(lk.nose),
        Part::Nose,
    );
    fig.part(
        ellipse(
            hc.0 + hrx * 0.3,
            hc.1 - hry * 0.25,
            hry * 0.25,
            hry * 0.23,
            0.0,
        ),
        Fill::Solid(lk.eye),
        Part::Eye,
    );
    if lk.floppy {
        fig.part(
            smooth(&[
                (hc.0 - hrx * 0.55, hc.1 - hry * 0.75),
                (hc.0 + hrx * 0.0, hc.1 - hry * 0.7),
                (hc.0 - hrx * 0.15, hc.1 + hry * 1.2),
                (hc.0 - hrx * 0.6, hc.1 + hry * 1.0),
            ]),
            Fill::Solid(lk.ear),
            Part::Ear,
        );
    } else {
        fig.part(
            poly(&[
                (hc.0 - hrx * 0.6, hc.1 - hry * 0.45),
                (hc.0 - hrx * 0.35, hc.1 - hry * 1.9),
                (hc.0 + hrx * 0.05, hc.1 - hry * 0.65),
            ]),
            Fill::Solid(lk.ear),
            Part::Ear,
        );
    }
}

/// A head seen from the front, centred at `c`, radius `r`.
fn head_front(_rng: &mut WRng, fig: &mut Figure, lk: &Look, c: (f32, f32), r: f32) {
    let (x, y) = c;
    // Ears behind (pointy) or hanging in front (floppy, drawn after the head).
    if !lk.floppy {
        for s in [-1.0f32, 1.0] {
            fig.part(
                poly(&[
                    (x + s * r * 0.3, y - r * 0.7),
                    (x + s * r * 0.75, y - r * 1.6),
                    (x + s * r * 0.95, y - r * 0.3),
                ]),
                Fill::Solid(lk.ear),
                Part::Ear,
            );
        }
    }
    fig.part(ellipse(x, y, r, r * 0.92, 0.0), lk.fur_fill, Part::Head);
    for s in [-1.0f32, 1.0] {
        fig.part(
            ellipse(x + s * r * 0.38, y - r * 0.15, r * 0.19, r * 0.18, 0.0),
            Fill::Solid(lk.eye),
            Part::Eye,
        );
    }
    fig.part(
        ellipse(x, y + r * 0.45, r * 0.48, r * 0.38, 0.0),
        Fill::Solid(lk.muzzle),
        Part::Muzzle,
    );
    fig.part(
        ellipse(x, y + r * 0.3, r * 0.24, r * 0.16, 0.0),
        Fill::Solid(lk.nose),
        Part::Nose,
    );
    if lk.floppy {
        for s in [-1.0f32, 1.0] {
            fig.part(
                smooth(&[
                    (x + s * r * 0.55, y - r * 0.85),
                    (x + s * r * 1.2, y - r * 0.55),
                    (x + s * r * 1.2, y + r * 0.6),
                    (x + s * r * 0.85, y + r * 0.5),
                ]),
                Fill::Solid(lk.ear),
                Part::Ear,
            );
        }
    }
}

fn front(rng: &mut WRng, fig: &mut Figure, lk: &Look, portrait: bool) {
    // Facing the camera, sitting or standing; ground at y = 0.
    let ll = uni(rng, 0.6, 1.1);
    let cw = uni(rng, 0.35, 0.5);
    let ch = uni(rng, 0.7, 1.0);
    let chest = (0.0, -ll - ch * 0.35);
    let leg_r = cw * 0.28;
    // Hind legs/haunches at the sides (sitting) and tail.
    if chance(rng, 0.5) {
        for s in [-1.0f32, 1.0] {
            fig.part(
                ellipse(s * cw * 0.95, -ll * 0.35, cw * 0.45, ll * 0.4, 0.0),
                Fill::Solid(lk.fur.shade(-0.15)),
                Part::Leg,
            );
            fig.part(
                ellipse(s * cw * 1.2, -0.05, leg_r * 1.3, leg_r * 0.7, 0.0),
                Fill::Solid(lk.fur2.shade(-0.1)),
                Part::Paw,
            );
        }
    }
    if chance(rng, 0.4) {
        let s = if chance(rng, 0.5) { 1.0 } else { -1.0 };
        limb(
            fig,
            &[
                (s * cw * 0.5, -ll * 0.8),
                (s * cw * 1.6, -ll * 1.1),
                (s * cw * 2.0, -ll * 1.6),
            ],
            &[0.08, 0.06, 0.03],
            Fill::Solid(lk.fur2),
            Part::Tail,
        );
    }
    fig.part(
        ellipse(chest.0, chest.1, cw, ch * 0.6, 0.0),
        lk.fur_fill,
        Part::Torso,
    );
    for s in [-1.0f32, 1.0] {
        let top = (s * cw * 0.45, chest.1);
        let foot = (s * cw * 0.5, -0.06);
        limb(
            fig,
            &[top, lerp2(top, foot, 0.5), foot],
            &[leg_r * 1.2, leg_r, leg_r * 0.9],
            lk.fur_fill,
            Part::Leg,
        );
        fig.part(
            ellipse(foot.0, foot.1, leg_r * 1.3, leg_r * 0.75, 0.0),
            Fill::Solid(lk.fur2),
            Part::Paw,
        );
    }
    let r = cw * uni(rng, 0.75, 0.95);
    let hc = (uni(rng, -0.1, 0.1) * cw, chest.1 - ch * 0.55 - r * 0.9);
    fig.part(
        rounded(
            &[
                (-cw * 0.55, chest.1 - ch * 0.2),
                (cw * 0.55, chest.1 - ch * 0.2),
                (r * 0.5 + hc.0, hc.1 + r * 0.5),
                (-r * 0.5 + hc.0, hc.1 + r * 0.5),
            ],
            0.05,
        ),
        Fill::Solid(lk.fur.shade(-0.05)),
        Part::Neck,
    );
    head_front(rng, fig, lk, hc, r);
    if portrait {
        fig.frame = Some([hc.0 - r * 1.6, hc.1 - r * 1.8, hc.0 + r * 1.6, chest.1]);
    }
}
