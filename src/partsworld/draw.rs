//! Drawing primitives: colours, fills, shapes, figures and the two-layer canvas.
//!
//! A figure is a display list of shapes in object coordinates, each with a fill and a part
//! label. The canvas paints every shape twice with the same path and transform: anti-aliased
//! with its fill into the picture, and without anti-aliasing with its label into the label
//! layer, so the label map follows exactly the painter's order of the picture.

use std::f32::consts::PI;
use std::sync::LazyLock;

use rand::Rng;
use tiny_skia::{
    BlendMode, Color, FillRule, FilterQuality, GradientStop, LinearGradient, Paint, Path,
    PathBuilder, Pattern, Pixmap, Point, RadialGradient, Shader, SpreadMode, Transform,
};

use super::Part;

/// The random generator used everywhere in the world.
pub type WRng = rand_chacha::ChaCha8Rng;

/// Uniform in `[a, b)` (any order, empty ranges allowed).
pub fn uni(rng: &mut WRng, a: f32, b: f32) -> f32 {
    a + (b - a) * rng.random::<f32>()
}

/// True with probability `p`.
pub fn chance(rng: &mut WRng, p: f32) -> bool {
    rng.random::<f32>() < p
}

/// Picks one element.
pub fn pick<T: Copy>(rng: &mut WRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// A linear RGB colour with components in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rgb(pub f32, pub f32, pub f32);

impl Rgb {
    /// From hue (turns), saturation and value.
    pub fn hsv(h: f32, s: f32, v: f32) -> Rgb {
        let h = h.rem_euclid(1.0) * 6.0;
        let c = v * s;
        let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
        let (r, g, b) = match h as u32 {
            0 => (c, x, 0.0),
            1 => (x, c, 0.0),
            2 => (0.0, c, x),
            3 => (0.0, x, c),
            4 => (x, 0.0, c),
            _ => (c, 0.0, x),
        };
        let m = v - c;
        Rgb(r + m, g + m, b + m)
    }

    /// Linear mix: `self * (1 - t) + other * t`.
    pub fn mix(self, o: Rgb, t: f32) -> Rgb {
        Rgb(
            self.0 + (o.0 - self.0) * t,
            self.1 + (o.1 - self.1) * t,
            self.2 + (o.2 - self.2) * t,
        )
    }

    /// Brighter (`k > 0`, towards white) or darker (`k < 0`, towards black).
    pub fn shade(self, k: f32) -> Rgb {
        if k >= 0.0 {
            self.mix(Rgb(1.0, 1.0, 1.0), k.min(1.0))
        } else {
            self.mix(Rgb(0.0, 0.0, 0.0), (-k).min(1.0))
        }
    }

    fn color(self) -> Color {
        Color::from_rgba(
            self.0.clamp(0.0, 1.0),
            self.1.clamp(0.0, 1.0),
            self.2.clamp(0.0, 1.0),
            1.0,
        )
        .unwrap_or(Color::BLACK)
    }

    /// To 8-bit.
    pub fn to_u8(self) -> [u8; 3] {
        let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
        [q(self.0), q(self.1), q(self.2)]
    }

    /// Any colour: uniform hue, mixed saturation (greys included) and value.
    pub fn random(rng: &mut WRng) -> Rgb {
        let s = if chance(rng, 0.2) {
            uni(rng, 0.0, 0.15)
        } else {
            uni(rng, 0.2, 1.0)
        };
        Rgb::hsv(rng.random(), s, uni(rng, 0.12, 1.0))
    }

    /// A random variation of this colour (small hue/value change).
    pub fn jitter(self, rng: &mut WRng, amount: f32) -> Rgb {
        Rgb(
            self.0 + uni(rng, -amount, amount),
            self.1 + uni(rng, -amount, amount),
            self.2 + uni(rng, -amount, amount),
        )
        .clamp()
    }

    fn clamp(self) -> Rgb {
        Rgb(
            self.0.clamp(0.0, 1.0),
            self.1.clamp(0.0, 1.0),
            self.2.clamp(0.0, 1.0),
        )
    }
}

/// How a shape is coloured. Geometry of gradients is relative to the shape's bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// One colour.
    Solid(Rgb),
    /// Linear gradient from `c0` to `c1` across the bounds, in direction `angle` (radians,
    /// 0 = left to right, `PI / 2` = top to bottom).
    Grad { c0: Rgb, c1: Rgb, angle: f32 },
    /// Hard stripes alternating `c0` and `c1` with the given period (object units) and angle.
    Stripes {
        c0: Rgb,
        c1: Rgb,
        period: f32,
        angle: f32,
    },
    /// Radial gradient: `c0` at the point (`fx`, `fy`) (fractions of the bounds), `c1` at
    /// the far edge.
    Radial { c0: Rgb, c1: Rgb, fx: f32, fy: f32 },
    /// `c` with a grainy noise texture of strength `amount` and grain `grain` (object units).
    Noise { c: Rgb, amount: f32, grain: f32 },
}

impl Fill {
    /// A top-lit shading of `c`: lighter at the top, darker at the bottom by `k`.
    pub fn shaded(c: Rgb, k: f32) -> Fill {
        Fill::Grad {
            c0: c.shade(k),
            c1: c.shade(-k),
            angle: PI / 2.0,
        }
    }

    /// A representative colour of the fill.
    pub fn base(&self) -> Rgb {
        match *self {
            Fill::Solid(c) | Fill::Noise { c, .. } => c,
            Fill::Grad { c0, c1, .. } | Fill::Radial { c0, c1, .. } => c0.mix(c1, 0.5),
            Fill::Stripes { c0, .. } => c0,
        }
    }
}

/// A filled shape with its label (`0` = not a part: background, distractor, occluder).
#[derive(Debug, Clone)]
pub struct Shape {
    /// Outline in object coordinates.
    pub path: Path,
    /// Colouring.
    pub fill: Fill,
    /// Label-map value.
    pub label: u8,
}

/// A display list in object coordinates with the box to frame when placing it.
#[derive(Debug, Clone, Default)]
pub struct Figure {
    /// Shapes in painter's order.
    pub shapes: Vec<Shape>,
    /// `[x0, y0, x1, y1]` region that should appear in the picture (object coordinates, y
    /// down); `None` = the bounds of all shapes.
    pub frame: Option<[f32; 4]>,
    /// The frame's bottom edge sits on the bottom of the picture (upper body, portrait).
    pub anchor_bottom: bool,
    /// A short name of the viewpoint/pose, for the ground-truth files.
    pub view: &'static str,
    /// Smallest height (fraction of the picture) the framed region should get.
    pub min_height: f32,
}

impl Figure {
    /// Adds a part shape (skips degenerate paths).
    pub fn part(&mut self, path: Option<Path>, fill: Fill, part: Part) {
        if let Some(path) = path {
            self.shapes.push(Shape {
                path,
                fill,
                label: part.label(),
            });
        }
    }

    /// Adds a shape that belongs to no part (label 0).
    pub fn plain(&mut self, path: Option<Path>, fill: Fill) {
        if let Some(path) = path {
            self.shapes.push(Shape {
                path,
                fill,
                label: 0,
            });
        }
    }

    /// Bounds of all shapes `[x0, y0, x1, y1]`.
    pub fn bounds(&self) -> [f32; 4] {
        let mut b = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
        for s in &self.shapes {
            let r = s.path.bounds();
            b[0] = b[0].min(r.left());
            b[1] = b[1].min(r.top());
            b[2] = b[2].max(r.right());
            b[3] = b[3].max(r.bottom());
        }
        if b[0] > b[2] { [0.0, 0.0, 1.0, 1.0] } else { b }
    }

    /// Applies a transform to every shape (shapes that degenerate are dropped).
    pub fn transform(&mut self, ts: Transform) {
        let shapes = std::mem::take(&mut self.shapes);
        self.shapes = shapes
            .into_iter()
            .filter_map(|s| {
                Some(Shape {
                    path: s.path.transform(ts)?,
                    ..s
                })
            })
            .collect();
        if let Some(f) = self.frame {
            let mut a = Point::from_xy(f[0], f[1]);
            let mut b = Point::from_xy(f[2], f[3]);
            ts.map_point(&mut a);
            ts.map_point(&mut b);
            self.frame = Some([a.x.min(b.x), a.y.min(b.y), a.x.max(b.x), a.y.max(b.y)]);
        }
    }
}

// ---------------------------------------------------------------- geometry helpers

/// A closed polygon.
pub fn poly(pts: &[(f32, f32)]) -> Option<Path> {
    let mut pb = PathBuilder::with_capacity(pts.len() + 2, pts.len() + 1);
    let (first, rest) = pts.split_first()?;
    pb.move_to(first.0, first.1);
    for p in rest {
        pb.line_to(p.0, p.1);
    }
    pb.close();
    pb.finish()
}

/// A closed smooth curve through the points (Catmull-Rom as cubic Béziers).
pub fn smooth(pts: &[(f32, f32)]) -> Option<Path> {
    let n = pts.len();
    if n < 3 {
        return None;
    }
    let mut pb = PathBuilder::with_capacity(n + 2, 3 * n + 1);
    pb.move_to(pts[0].0, pts[0].1);
    for i in 0..n {
        let p0 = pts[(i + n - 1) % n];
        let p1 = pts[i];
        let p2 = pts[(i + 1) % n];
        let p3 = pts[(i + 2) % n];
        let c1 = (p1.0 + (p2.0 - p0.0) / 6.0, p1.1 + (p2.1 - p0.1) / 6.0);
        let c2 = (p2.0 - (p3.0 - p1.0) / 6.0, p2.1 - (p3.1 - p1.1) / 6.0);
        pb.cubic_to(c1.0, c1.1, c2.0, c2.1, p2.0, p2.1);
    }
    pb.close();
    pb.finish()
}

/// A polygon with rounded corners (corner cut `r`, at most 45 % of each adjacent edge).
pub fn rounded(pts: &[(f32, f32)], r: f32) -> Option<Path> {
    let n = pts.len();
    if n < 3 {
        return None;
    }
    let mut pb = PathBuilder::with_capacity(2 * n + 2, 3 * n + 1);
    for i in 0..n {
        let prev = pts[(i + n - 1) % n];
        let p = pts[i];
        let next = pts[(i + 1) % n];
        let d0 = ((p.0 - prev.0).hypot(p.1 - prev.1)).max(1e-6);
        let d1 = ((next.0 - p.0).hypot(next.1 - p.1)).max(1e-6);
        let r0 = r.min(0.45 * d0) / d0;
        let r1 = r.min(0.45 * d1) / d1;
        let a = (p.0 + (prev.0 - p.0) * r0, p.1 + (prev.1 - p.1) * r0);
        let b = (p.0 + (next.0 - p.0) * r1, p.1 + (next.1 - p.1) * r1);
        if i == 0 {
            pb.move_to(a.0, a.1);
        } else {
            pb.line_to(a.0, a.1);
        }
        pb.quad_to(p.0, p.1, b.0, b.1);
    }
    pb.close();
    pb.finish()
}

/// An ellipse centred at (`cx`, `cy`) with radii `rx`, `ry`, rotated by `rot` radians.
pub fn ellipse(cx: f32, cy: f32, rx: f32, ry: f32, rot: f32) -> Option<Path> {
    if rx <= 1e-5 || ry <= 1e-5 {
        return None;
    }
    let mut pb = PathBuilder::new();
    pb.push_oval(tiny_skia::Rect::from_xywh(-rx, -ry, 2.0 * rx, 2.0 * ry)?);
    let ts = Transform::from_rotate(rot.to_degrees()).post_translate(cx, cy);
    pb.finish()?.transform(ts)
}

/// A circle.
pub fn circle(cx: f32, cy: f32, r: f32) -> Option<Path> {
    ellipse(cx, cy, r, r, 0.0)
}

/// A rectangle `[x0, y0]`-`[x1, y1]` with corner radius `r`.
pub fn rrect(x0: f32, y0: f32, x1: f32, y1: f32, r: f32) -> Option<Path> {
    let (x0, x1) = (x0.min(x1), x0.max(x1));
    let (y0, y1) = (y0.min(y1), y0.max(y1));
    if r <= 1e-5 {
        return poly(&[(x0, y0), (x1, y0), (x1, y1), (x0, y1)]);
    }
    rounded(&[(x0, y0), (x1, y0), (x1, y1), (x0, y1)], r)
}

/// A limb: a capsule from `a` (radius `ra`) to `b` (radius `rb`).
pub fn capsule(a: (f32, f32), b: (f32, f32), ra: f32, rb: f32) -> Option<Path> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = dx.hypot(dy);
    if len < 1e-5 {
        return circle(a.0, a.1, ra.max(rb));
    }
    let ang = dy.atan2(dx);
    let mut pts = Vec::with_capacity(20);
    // Half circle around b from -90° to +90°, then around a from +90° to 270°.
    for k in 0..=8 {
        let t = ang - PI / 2.0 + PI * k as f32 / 8.0;
        pts.push((b.0 + rb * t.cos(), b.1 + rb * t.sin()));
    }
    for k in 0..=8 {
        let t = ang + PI / 2.0 + PI * k as f32 / 8.0;
        pts.push((a.0 + ra * t.cos(), a.1 + ra * t.sin()));
    }
    poly(&pts)
}

/// A limb through several joints with a radius per joint: one capsule per segment, all with
/// the same label.
pub fn limb(fig: &mut Figure, joints: &[(f32, f32)], radii: &[f32], fill: Fill, part: Part) {
    for i in 0..joints.len().saturating_sub(1) {
        fig.part(
            capsule(joints[i], joints[i + 1], radii[i], radii[i + 1]),
            fill,
            part,
        );
    }
}

/// Point at `len` from `p` in direction `ang` (radians, y down).
pub fn polar(p: (f32, f32), ang: f32, len: f32) -> (f32, f32) {
    (p.0 + len * ang.cos(), p.1 + len * ang.sin())
}

/// Linear interpolation between points.
pub fn lerp2(a: (f32, f32), b: (f32, f32), t: f32) -> (f32, f32) {
    (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
}

// ---------------------------------------------------------------- canvas

static NOISE_TILE: LazyLock<Pixmap> = LazyLock::new(|| {
    use rand::SeedableRng;
    let n = 32u32;
    let mut pm = Pixmap::new(n, n).expect("32x32 pixmap");
    let mut rng = WRng::seed_from_u64(0x6e6f697365);
    for px in pm.pixels_mut() {
        // Grey with premultiplied alpha: dark and light specks.
        let a: u8 = rng.random_range(0..=255);
        let v: u8 = if rng.random::<bool>() { a } else { 0 };
        *px = tiny_skia::PremultipliedColorU8::from_rgba(v, v, v, a).expect("v <= a");
    }
    pm
});

/// The picture and label layers being drawn.
pub struct Canvas {
    /// RGBA picture (opaque after the background is drawn).
    pub rgb: Pixmap,
    /// Label layer: label value in the red channel.
    pub lab: Pixmap,
    /// Object-to-pixel scale of the current figure (for stripe periods and grain).
    pub scale: f32,
}

impl Canvas {
    /// A cleared canvas.
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas {
            rgb: Pixmap::new(width, height).expect("non-zero size"),
            lab: Pixmap::new(width, height).expect("non-zero size"),
            scale: 1.0,
        }
    }

    /// Paints a shape already in pixel coordinates into the picture only.
    pub fn paint_rgb(&mut self, path: &Path, fill: &Fill) {
        let b = path.bounds();
        if b.right() < 0.0
            || b.bottom() < 0.0
            || b.left() > self.rgb.width() as f32
            || b.top() > self.rgb.height() as f32
        {
            return;
        }
        let mut paint = Paint {
            anti_alias: true,
            ..Paint::default()
        };
        let (cx, cy) = ((b.left() + b.right()) / 2.0, (b.top() + b.bottom()) / 2.0);
        let half = 0.5 * b.width().hypot(b.height()).max(1e-3);
        // Texture is invisible on tiny shapes: paint them flat (faster).
        let fill = if b.width() * b.height() < 24.0 {
            &Fill::Solid(fill.base())
        } else {
            fill
        };
        let shader = match *fill {
            Fill::Solid(c) => Shader::SolidColor(c.color()),
            Fill::Grad { c0, c1, angle } => {
                let (dx, dy) = (angle.cos() * half, angle.sin() * half);
                LinearGradient::new(
                    Point::from_xy(cx - dx, cy - dy),
                    Point::from_xy(cx + dx, cy + dy),
                    vec![
                        GradientStop::new(0.0, c0.color()),
                        GradientStop::new(1.0, c1.color()),
                    ],
                    SpreadMode::Pad,
                    Transform::identity(),
                )
                .unwrap_or(Shader::SolidColor(c0.color()))
            }
            Fill::Stripes {
                c0,
                c1,
                period,
                angle,
            } => {
                let p = (period * self.scale).max(1.5);
                let (dx, dy) = (angle.cos() * p, angle.sin() * p);
                LinearGradient::new(
                    Point::from_xy(cx, cy),
                    Point::from_xy(cx + dx, cy + dy),
                    vec![
                        GradientStop::new(0.0, c0.color()),
                        GradientStop::new(0.5, c0.color()),
                        GradientStop::new(0.5, c1.color()),
                        GradientStop::new(1.0, c1.color()),
                    ],
                    SpreadMode::Repeat,
                    Transform::identity(),
                )
                .unwrap_or(Shader::SolidColor(c0.color()))
            }
            Fill::Radial { c0, c1, fx, fy } => {
                let p = Point::from_xy(b.left() + fx * b.width(), b.top() + fy * b.height());
                RadialGradient::new(
                    p,
                    0.0,
                    p,
                    2.0 * half,
                    vec![
                        GradientStop::new(0.0, c0.color()),
                        GradientStop::new(1.0, c1.color()),
                    ],
                    SpreadMode::Pad,
                    Transform::identity(),
                )
                .unwrap_or(Shader::SolidColor(c1.color()))
            }
            Fill::Noise { c, .. } => Shader::SolidColor(c.color()),
        };
        paint.shader = shader;
        self.rgb
            .fill_path(path, &paint, FillRule::Winding, Transform::identity(), None);
        if let Fill::Noise { amount, grain, .. } = *fill {
            let g = (grain * self.scale / 4.0).max(0.25);
            paint.shader = Pattern::new(
                NOISE_TILE.as_ref(),
                SpreadMode::Repeat,
                if g > 1.0 {
                    FilterQuality::Bilinear
                } else {
                    FilterQuality::Nearest
                },
                amount,
                Transform::from_scale(g, g),
            );
            self.rgb
                .fill_path(path, &paint, FillRule::Winding, Transform::identity(), None);
        }
    }

    /// Paints a shape already in pixel coordinates into the label layer (no anti-aliasing).
    pub fn paint_label(&mut self, path: &Path, label: u8) {
        let mut paint = Paint {
            anti_alias: false,
            blend_mode: BlendMode::Source,
            ..Paint::default()
        };
        paint.set_color_rgba8(label, 0, 0, 255);
        self.lab
            .fill_path(path, &paint, FillRule::Winding, Transform::identity(), None);
    }

    /// Paints a figure with the object-to-pixel transform `ts` into both layers.
    pub fn paint_figure(&mut self, fig: &Figure, ts: Transform, scale: f32) {
        self.scale = scale;
        for s in &fig.shapes {
            if let Some(p) = s.path.clone().transform(ts) {
                self.paint_rgb(&p, &s.fill);
                self.paint_label(&p, s.label);
            }
        }
    }

    /// The label map (red channel of the label layer).
    pub fn labels(&self) -> Vec<u8> {
        self.lab.data().chunks_exact(4).map(|p| p[0]).collect()
    }
}
