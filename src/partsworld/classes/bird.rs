//! Birds: songbirds, ducks, waders and raptors standing or perched in profile, flying with
//! spread wings, or facing the camera. Parts: `head`, `beak`, `eye`, `neck`, `torso`, `wing`,
//! `tail`, `leg`, `foot`.

use std::f32::consts::PI;

use super::super::Part;
use super::super::draw::{
    Figure, Fill, Rgb, WRng, capsule, chance, ellipse, limb, pick, polar, poly, smooth, uni,
};
use super::{Palette, colours};

/// Builds a bird.
pub fn build(rng: &mut WRng, phase: f32) -> Figure {
    let pal = Palette::new(rng);
    let body = pal.pick(rng, &colours::FEATHER);
    let wing = if chance(rng, 0.5) {
        body.shade(uni(rng, -0.35, 0.1))
    } else {
        pal.pick(rng, &colours::FEATHER)
    };
    let head_c = if chance(rng, 0.6) {
        body
    } else {
        pal.pick(rng, &colours::FEATHER)
    };
    let beak_c = pal.pick(
        rng,
        &[
            Rgb(0.95, 0.7, 0.1),
            Rgb(0.9, 0.45, 0.1),
            Rgb(0.15, 0.15, 0.15),
            Rgb(0.6, 0.55, 0.45),
        ],
    );
    let leg_c = pal.pick(
        rng,
        &[
            Rgb(0.9, 0.55, 0.15),
            Rgb(0.35, 0.3, 0.25),
            Rgb(0.75, 0.6, 0.45),
        ],
    );
    let eye_c = pal.pick(rng, &[Rgb(0.05, 0.05, 0.05), Rgb(0.9, 0.7, 0.1)]);
    let kind = pick(rng, &["song", "song", "duck", "wader", "raptor", "pigeon"]);
    let view = pick(
        rng,
        &[
            "side", "side", "side", "perched", "flying", "flying", "front",
        ],
    );
    let mut fig = Figure {
        view,
        ..Figure::default()
    };
    let body_fill = pal.texture(rng, body, 0.5);
    let wing_fill = if chance(rng, 0.4) {
        Fill::Stripes {
            c0: wing,
            c1: wing.shade(uni(rng, -0.4, 0.4)),
            period: uni(rng, 0.06, 0.14),
            angle: uni(rng, 0.0, PI),
        }
    } else {
        Fill::shaded(wing, 0.2)
    };

    // Proportions (body length ~1).
    let (bw, bh, tilt, neck_len, leg_len, beak_len) = match kind {
        "duck" => (1.0, 0.5, 0.05, 0.3, 0.18, 0.32),
        "wader" => (0.85, 0.42, 0.15, 0.65, 0.9, 0.55),
        "raptor" => (0.8, 0.5, -0.9, 0.15, 0.3, 0.22),
        "pigeon" => (0.9, 0.55, -0.25, 0.2, 0.25, 0.16),
        _ => (0.75, 0.5, -0.5, 0.14, 0.32, 0.2),
    };
    let bw = bw * uni(rng, 0.9, 1.1);
    let bh = bh * uni(rng, 0.9, 1.15);
    let leg_len = leg_len * uni(rng, 0.85, 1.2);
    let beak_len = beak_len * uni(rng, 0.95, 1.4);
    let neck_len = neck_len * uni(rng, 0.85, 1.2);

    if view == "front" {
        front(
            &mut fig, bw, bh, leg_len, body_fill, wing_fill, head_c, beak_c, leg_c, eye_c,
        );
        return fig;
    }
    let flying = view == "flying";
    let tilt = if flying { uni(rng, -0.15, 0.15) } else { tilt };
    let c = (0.0, -leg_len - bh * 0.5);
    let (ts, tc) = tilt.sin_cos();
    // Body-axis point: u forward along the body, v down.
    let at = |u: f32, v: f32| (c.0 + u * tc - v * ts, c.1 + u * ts + v * tc);
    let flap = if flying {
        (phase * uni(rng, 6.0, 9.0) + uni(rng, 0.0, 6.3)).sin()
    } else {
        0.0
    };

    // Far wing (flying), legs, tail.
    if flying {
        let root = at(bw * 0.05, -bh * 0.3);
        let span = bw * uni(rng, 1.0, 1.5);
        let a = -PI / 2.0 - 0.5 + 0.6 * flap;
        let tip = polar(root, a - 0.3, span);
        fig.part(
            smooth(&[
                at(bw * 0.3, -bh * 0.2),
                polar(root, a + 0.2, span * 0.7),
                tip,
                polar(root, a - 0.4, span * 0.6),
                at(-bw * 0.25, -bh * 0.25),
            ]),
            Fill::Solid(wing.shade(-0.3)),
            Part::Wing,
        );
    }
    let legs_visible = !flying || chance(rng, 0.3);
    if legs_visible {
        for (k, dx) in [(0, -0.04f32), (1, 0.06)] {
            let hip = at(dx * bw, bh * 0.3);
            let (knee, foot) = if flying {
                let k = polar(hip, PI * 0.85, leg_len * 0.5);
                (k, polar(k, PI * 0.95, leg_len * 0.5))
            } else {
                let foot = (hip.0 + dx * 0.5, -0.03);
                ((hip.0 + dx * 0.3 + 0.03, (hip.1 + foot.1) / 2.0), foot)
            };
            let lc = if k == 0 { leg_c.shade(-0.25) } else { leg_c };
            let r = 0.028 + 0.02 * bw;
            limb(
                &mut fig,
                &[hip, knee, foot],
                &[r * 1.6, r, r],
                Fill::Solid(lc),
                Part::Leg,
            );
            // Toes.
            let (d, back) = if flying { (PI, 0.0) } else { (0.0, PI) };
            for (a, l) in [(d - 0.25, 0.14), (d + 0.15, 0.13), (back + 0.2, 0.08)] {
                fig.part(
                    capsule(foot, polar(foot, a, l * bw.sqrt()), r * 0.8, r * 0.6),
                    Fill::Solid(lc.shade(-0.1)),
                    Part::Foot,
                );
            }
        }
    }
    let tail_len = bw * uni(rng, 0.35, 0.7);
    let tail_a = if flying {
        PI + uni(rng, -0.15, 0.15)
    } else {
        PI + tilt + uni(rng, -0.45, -0.1) * if kind == "duck" { -1.0 } else { 1.0 }
    };
    let tb = at(-bw * 0.42, -bh * 0.05);
    let spread = uni(rng, 0.12, 0.35);
    fig.part(
        poly(&[
            polar(tb, tail_a + PI / 2.0, bh * 0.18),
            polar(tb, tail_a - spread, tail_len),
            polar(tb, tail_a + spread, tail_len),
            polar(tb, tail_a - PI / 2.0, bh * 0.18),
        ]),
        Fill::Solid(wing.shade(-0.1)),
        Part::Tail,
    );

    // Torso.
    fig.part(
        smooth(&[
            at(bw * 0.5, -bh * 0.05),
            at(bw * 0.3, -bh * 0.45),
            at(-bw * 0.1, -bh * 0.5),
            at(-bw * 0.5, -bh * 0.1),
            at(-bw * 0.3, bh * 0.4),
            at(bw * 0.2, bh * 0.48),
        ]),
        body_fill,
        Part::Torso,
    );
    // Neck and head.
    let nb = at(bw * 0.38, -bh * 0.2);
    let neck_a = -PI / 2.0 + uni(rng, 0.15, 0.7) * if kind == "duck" { 1.3 } else { 1.0 };
    let hr = bh * uni(rng, 0.32, 0.42);
    let hc = polar(nb, neck_a, neck_len + hr * 0.6);
    fig.part(
        capsule(
            nb,
            polar(nb, neck_a, neck_len + hr * 0.1),
            bh * 0.24,
            hr * 0.7,
        ),
        Fill::Solid(head_c.mix(body, 0.5)),
        Part::Neck,
    );
    // Folded or near wing.
    if flying {
        let root = at(bw * 0.05, -bh * 0.3);
        let span = bw * uni(rng, 1.1, 1.6);
        let a = -PI / 2.0 - 0.3 + 0.9 * flap;
        let tip = polar(root, a - 0.35, span);
        fig.part(
            smooth(&[
                at(bw * 0.3, -bh * 0.15),
                polar(root, a + 0.2, span * 0.65),
                tip,
                polar(root, a - 0.45, span * 0.55),
                at(-bw * 0.25, -bh * 0.1),
            ]),
            wing_fill,
            Part::Wing,
        );
    } else {
        fig.part(
            smooth(&[
                at(bw * 0.3, -bh * 0.3),
                at(bw * 0.05, -bh * 0.42),
                at(-bw * 0.35, -bh * 0.3),
                at(-bw * 0.7, -bh * 0.05),
                at(-bw * 0.3, bh * 0.15),
                at(bw * 0.15, bh * 0.05),
            ]),
            wing_fill,
            Part::Wing,
        );
    }
    let head_dir = uni(rng, -0.25, 0.2) + if kind == "duck" { 0.1 } else { 0.0 };
    fig.part(
        ellipse(hc.0, hc.1, hr * 1.08, hr, head_dir),
        Fill::Solid(head_c),
        Part::Head,
    );
    let bb = polar(hc, head_dir + 0.1, hr * 0.8);
    let bt = polar(
        bb,
        head_dir + 0.15,
        beak_len * if kind == "duck" { 0.75 } else { 1.0 },
    );
    let bthick = hr * if kind == "duck" { 0.5 } else { 0.45 };
    fig.part(
        poly(&[
            polar(bb, head_dir - PI / 2.0, bthick),
            bt,
            polar(bb, head_dir + PI / 2.0, bthick * 0.8),
        ]),
        Fill::Solid(beak_c),
        Part::Beak,
    );
    let ec = polar(hc, head_dir - 0.55, hr * 0.45);
    fig.part(
        ellipse(ec.0, ec.1, hr * 0.3, hr * 0.3, 0.0),
        Fill::Solid(eye_c),
        Part::Eye,
    );
    if view == "perched" {
        // A branch under the feet (not a part).
        let y = 0.0;
        fig.plain(
            capsule((-bw * 1.2, y + 0.02), (bw * 1.2, y - 0.04), 0.06, 0.05),
            Fill::Solid(Rgb(0.35, 0.25, 0.15).shade(uni(rng, -0.3, 0.3))),
        );
    }
    fig
}

#[allow(clippy::too_many_arguments)]
fn front(
    fig: &mut Figure,
    bw: f32,
    bh: f32,
    leg_len: f32,
    body: Fill,
    wing: Fill,
    head_c: Rgb,
    beak_c: Rgb,
    leg_c: Rgb,
    eye_c: Rgb,
) {
    let w = bh * 0.55 + bw * 0.1;
    let h = bh * 0.9 + bw * 0.1;
    let c = (0.0, -leg_len - h * 0.5);
    for s in [-1.0f32, 1.0] {
        let hip = (s * w * 0.3, c.1 + h * 0.3);
        let foot = (s * w * 0.35, -0.03);
        limb(
            fig,
            &[hip, foot],
            &[0.05, 0.035],
            Fill::Solid(leg_c),
            Part::Leg,
        );
        for a in [-0.5f32, 0.0, 0.5] {
            fig.part(
                capsule(foot, polar(foot, PI / 2.0 + a * 2.0, 0.1), 0.03, 0.02),
                Fill::Solid(leg_c.shade(-0.1)),
                Part::Foot,
            );
        }
    }
    fig.part(
        ellipse(c.0, c.1, w * 0.55, h * 0.55, 0.0),
        body,
        Part::Torso,
    );
    for s in [-1.0f32, 1.0] {
        fig.part(
            smooth(&[
                (s * w * 0.35, c.1 - h * 0.35),
                (s * w * 0.62, c.1 - h * 0.1),
                (s * w * 0.58, c.1 + h * 0.45),
                (s * w * 0.4, c.1 + h * 0.2),
            ]),
            wing,
            Part::Wing,
        );
    }
    let hr = w * 0.38;
    let hc = (0.0, c.1 - h * 0.5 - hr * 0.55);
    fig.part(
        ellipse(0.0, c.1 - h * 0.45, hr * 0.75, hr * 0.45, 0.0),
        Fill::Solid(head_c.shade(-0.1)),
        Part::Neck,
    );
    fig.part(
        ellipse(hc.0, hc.1, hr, hr * 0.95, 0.0),
        Fill::Solid(head_c),
        Part::Head,
    );
    for s in [-1.0f32, 1.0] {
        fig.part(
            ellipse(s * hr * 0.42, hc.1 - hr * 0.12, hr * 0.25, hr * 0.25, 0.0),
            Fill::Solid(eye_c),
            Part::Eye,
        );
    }
    fig.part(
        poly(&[
            (-hr * 0.22, hc.1 + hr * 0.1),
            (hr * 0.22, hc.1 + hr * 0.1),
            (0.0, hc.1 + hr * 0.6),
        ]),
        Fill::Solid(beak_c),
        Part::Beak,
    );
}
