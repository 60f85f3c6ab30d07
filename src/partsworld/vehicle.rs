//! A tiny 3-D kit for vehicles: a perspective camera, projected polygons and extruded
//! profiles ("prisms") whose faces are drawn back to front.
//!
//! Object space: x forward, y up, z to the vehicle's right (so `x × y = z`). The vehicle's
//! right side is the face with normal +z.

use tiny_skia::Path;

use super::Part;
use super::draw::{Figure, Fill, poly};

/// A 3-D point or vector.
pub type V3 = [f32; 3];

fn dot(a: V3, b: V3) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn norm(a: V3) -> V3 {
    let l = dot(a, a).sqrt().max(1e-9);
    [a[0] / l, a[1] / l, a[2] / l]
}

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// A perspective camera looking at `target` from direction (`yaw`, `pitch`) at `dist`.
///
/// `yaw = 0` looks at the vehicle's front, `yaw = PI / 2` at its right side; `pitch > 0` is
/// from above.
#[derive(Debug, Clone, Copy)]
pub struct Camera {
    pos: V3,
    r: V3,
    u: V3,
    f: V3,
    dist: f32,
}

impl Camera {
    /// A camera.
    pub fn new(yaw: f32, pitch: f32, dist: f32, target: V3) -> Camera {
        let c = [
            pitch.cos() * yaw.cos(),
            pitch.sin(),
            pitch.cos() * yaw.sin(),
        ];
        let f = [-c[0], -c[1], -c[2]];
        let r = norm(cross(f, [0.0, 1.0, 0.0]));
        let u = cross(r, f);
        let pos = [
            target[0] + c[0] * dist,
            target[1] + c[1] * dist,
            target[2] + c[2] * dist,
        ];
        Camera { pos, r, u, f, dist }
    }

    /// Screen position (y down), scaled so that points at the target distance keep their size.
    pub fn project(&self, p: V3) -> (f32, f32) {
        let d = sub(p, self.pos);
        let z = dot(d, self.f).max(0.05 * self.dist);
        let k = self.dist / z;
        (dot(d, self.r) * k, -dot(d, self.u) * k)
    }

    /// Distance along the viewing direction (larger = farther).
    pub fn depth(&self, p: V3) -> f32 {
        dot(sub(p, self.pos), self.f)
    }

    /// Whether a face through `p` with outward normal `n` faces the camera.
    pub fn faces(&self, p: V3, n: V3) -> bool {
        dot(sub(self.pos, p), n) > 1e-4 * self.dist
    }

    /// A projected polygon.
    pub fn poly(&self, pts: &[V3]) -> Option<Path> {
        let p: Vec<(f32, f32)> = pts.iter().map(|&q| self.project(q)).collect();
        poly(&p)
    }

    /// A projected ellipse on a plane: centre `c`, axes `a` and `b` (full radius vectors).
    pub fn disc(&self, c: V3, a: V3, b: V3) -> Option<Path> {
        let n = 20;
        let pts: Vec<V3> = (0..n)
            .map(|i| {
                let t = std::f32::consts::TAU * i as f32 / n as f32;
                let (s, co) = t.sin_cos();
                [
                    c[0] + a[0] * co + b[0] * s,
                    c[1] + a[1] * co + b[1] * s,
                    c[2] + a[2] * co + b[2] * s,
                ]
            })
            .collect();
        self.poly(&pts)
    }

    /// The outline of a cylinder (e.g. a wheel): convex hull of its two projected end discs.
    pub fn cylinder(&self, c0: V3, c1: V3, a: V3, b: V3) -> Option<Path> {
        let n = 20;
        let mut pts = Vec::with_capacity(2 * n);
        for c in [c0, c1] {
            for i in 0..n {
                let t = std::f32::consts::TAU * i as f32 / n as f32;
                let (s, co) = t.sin_cos();
                pts.push(self.project([
                    c[0] + a[0] * co + b[0] * s,
                    c[1] + a[1] * co + b[1] * s,
                    c[2] + a[2] * co + b[2] * s,
                ]));
            }
        }
        poly(&convex_hull(pts))
    }
}

/// Convex hull (monotone chain), counter-clockwise.
pub fn convex_hull(mut pts: Vec<(f32, f32)>) -> Vec<(f32, f32)> {
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    if pts.len() < 3 {
        return pts;
    }
    let turn = |o: (f32, f32), a: (f32, f32), b: (f32, f32)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f32, f32)> = Vec::with_capacity(pts.len() + 1);
    for &p in &pts {
        while hull.len() >= 2 && turn(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    let lower = hull.len() + 1;
    for &p in pts.iter().rev().skip(1) {
        while hull.len() >= lower && turn(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    hull.pop();
    hull
}

/// A planar face drawn as a group: a base polygon and decorations on it.
pub struct FaceGroup {
    /// Depth used for ordering (far first).
    pub depth: f32,
    /// Drawing priority for equal groups (higher = later).
    pub layer: i32,
    /// The shapes, in order (`None` part = not a part, label 0).
    pub shapes: Vec<(Option<Path>, Fill, Option<Part>)>,
}

impl FaceGroup {
    /// An empty group.
    pub fn new(depth: f32, layer: i32) -> FaceGroup {
        FaceGroup {
            depth,
            layer,
            shapes: Vec::new(),
        }
    }

    /// Adds a part shape.
    pub fn add(&mut self, path: Option<Path>, fill: Fill, part: Part) {
        self.shapes.push((path, fill, Some(part)));
    }

    /// Adds a shape that is no part (label 0), e.g. the track under a train.
    pub fn add_plain(&mut self, path: Option<Path>, fill: Fill) {
        self.shapes.push((path, fill, None));
    }
}

/// Sorts groups far to near (then by layer) and appends them to a figure.
pub fn emit(fig: &mut Figure, mut groups: Vec<FaceGroup>) {
    groups.sort_by(|a, b| a.layer.cmp(&b.layer).then(b.depth.total_cmp(&a.depth)));
    for g in groups {
        for (p, f, part) in g.shapes {
            match part {
                Some(part) => fig.part(p, f, part),
                None => fig.plain(p, f),
            }
        }
    }
}

/// The role of a profile edge of an extruded body: which part its strip face is, and whether
/// it is drawn at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    /// Part label of the strip; `None` = never drawn (underbody).
    pub part: Option<Part>,
    /// Fill of the strip.
    pub fill: Fill,
    /// A tag for decorations (e.g. "front", "back", "windscreen").
    pub tag: &'static str,
}

/// An extruded body: a profile in the x-y plane (y up), from `z = -w/2` to `z = w/2`.
pub struct Prism {
    /// Profile vertices, counter-clockwise in (x, y-up); edge `i` goes from `pts[i]` to
    /// `pts[i + 1]`.
    pub pts: Vec<(f32, f32)>,
    /// Edge roles, one per vertex.
    pub edges: Vec<Edge>,
    /// Width along z.
    pub width: f32,
    /// Offset of the profile along x (position of the body in the vehicle).
    pub x0: f32,
}

/// A strip face of a prism seen by the camera, with its geometry for decorations.
pub struct Strip {
    /// Index of the edge.
    pub edge: usize,
    /// Start and end of the edge in (x, y) (offset applied).
    pub a: (f32, f32),
    /// End of the edge.
    pub b: (f32, f32),
    /// Half width.
    pub hw: f32,
}

impl Strip {
    /// A 3-D point on the strip: `s` in [0, 1] along the edge, `z` across.
    pub fn at(&self, s: f32, z: f32) -> V3 {
        [
            self.a.0 + (self.b.0 - self.a.0) * s,
            self.a.1 + (self.b.1 - self.a.1) * s,
            z,
        ]
    }
}

impl Prism {
    /// A prism; the profile must be counter-clockwise in (x, y-up).
    pub fn new(pts: Vec<(f32, f32)>, edges: Vec<Edge>, width: f32, x0: f32) -> Prism {
        debug_assert_eq!(pts.len(), edges.len());
        debug_assert!(
            {
                let n = pts.len();
                (0..n)
                    .map(|i| {
                        let (a, b) = (pts[i], pts[(i + 1) % n]);
                        a.0 * b.1 - b.0 * a.1
                    })
                    .sum::<f32>()
                    > 0.0
            },
            "profile must be counter-clockwise"
        );
        Prism {
            pts,
            edges,
            width,
            x0,
        }
    }

    fn p3(&self, p: (f32, f32), z: f32) -> V3 {
        [p.0 + self.x0, p.1, z]
    }

    /// Centre of the body.
    pub fn centre(&self) -> V3 {
        let n = self.pts.len() as f32;
        let (sx, sy) = self
            .pts
            .iter()
            .fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1));
        [sx / n + self.x0, sy / n, 0.0]
    }

    /// The visible strips (faces along the profile edges), with their depth.
    pub fn visible_strips(&self, cam: &Camera) -> Vec<(Strip, f32)> {
        let n = self.pts.len();
        let hw = self.width / 2.0;
        let mut out = Vec::new();
        for i in 0..n {
            if self.edges[i].part.is_none() {
                continue;
            }
            let a = self.pts[i];
            let b = self.pts[(i + 1) % n];
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let nrm = [dy, -dx, 0.0];
            let mid = self.p3(((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0), 0.0);
            if !cam.faces(mid, nrm) {
                continue;
            }
            out.push((
                Strip {
                    edge: i,
                    a: (a.0 + self.x0, a.1),
                    b: (b.0 + self.x0, b.1),
                    hw,
                },
                cam.depth(mid),
            ));
        }
        out
    }

    /// The polygon of a strip.
    pub fn strip_path(&self, cam: &Camera, s: &Strip) -> Option<Path> {
        cam.poly(&[
            s.at(0.0, -s.hw),
            s.at(1.0, -s.hw),
            s.at(1.0, s.hw),
            s.at(0.0, s.hw),
        ])
    }

    /// The visible side cap: `Some(+1.0)` for the right side (z = +w/2), `Some(-1.0)` for the
    /// left, `None` when seen edge-on.
    pub fn visible_side(&self, cam: &Camera) -> Option<f32> {
        let c = self.centre();
        for side in [1.0f32, -1.0] {
            let p = [c[0], c[1], side * self.width / 2.0];
            if cam.faces(p, [0.0, 0.0, side]) {
                return Some(side);
            }
        }
        None
    }

    /// The side cap polygon at `side` (±1).
    pub fn cap_path(&self, cam: &Camera, side: f32) -> Option<Path> {
        let z = side * self.width / 2.0;
        let pts: Vec<V3> = self.pts.iter().map(|&p| self.p3(p, z)).collect();
        cam.poly(&pts)
    }

    /// A polygon on the side cap given in profile (x, y) coordinates (without offset).
    pub fn on_side(&self, cam: &Camera, side: f32, pts: &[(f32, f32)]) -> Option<Path> {
        let z = side * self.width / 2.0;
        let p: Vec<V3> = pts.iter().map(|&q| self.p3(q, z)).collect();
        cam.poly(&p)
    }
}

/// Inset of a convex polygon by `d` (each edge moved inwards), CCW or CW.
pub fn inset(pts: &[(f32, f32)], d: f32) -> Vec<(f32, f32)> {
    let n = pts.len();
    let area: f32 = (0..n)
        .map(|i| {
            let (a, b) = (pts[i], pts[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum();
    let s = if area >= 0.0 { 1.0 } else { -1.0 };
    // Offset lines.
    let lines: Vec<((f32, f32), (f32, f32))> = (0..n)
        .map(|i| {
            let a = pts[i];
            let b = pts[(i + 1) % n];
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let l = dx.hypot(dy).max(1e-9);
            // Inward normal of a CCW polygon is (-dy, dx).
            let (nx, ny) = (-dy / l * s * d, dx / l * s * d);
            ((a.0 + nx, a.1 + ny), (dx, dy))
        })
        .collect();
    (0..n)
        .map(|i| {
            let (p0, d0) = lines[(i + n - 1) % n];
            let (p1, d1) = lines[i];
            let den = d0.0 * d1.1 - d0.1 * d1.0;
            if den.abs() < 1e-9 {
                return p1;
            }
            let t = ((p1.0 - p0.0) * d1.1 - (p1.1 - p0.1) * d1.0) / den;
            (p0.0 + d0.0 * t, p0.1 + d0.1 * t)
        })
        .collect()
}
