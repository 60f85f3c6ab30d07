//! Draws a verdict for people watching, with tiny-skia, into a transparent frame-sized pixmap.
//!
//! - Flagged frames: a thick border in the alert colour around the whole picture, a banner
//!   "ADVERSARIAL" across the top, and a panel at the bottom with the classifier's label and
//!   confidence, the corrected label, the similarity against the threshold and the parts found.
//! - Other frames (when shown): the same bottom panel with a green accent and "OK".
//!
//! Only a few bands of the picture are covered (top, bottom, the border's sides); they are
//! returned as [`Region`]s so that only they are blended into the video.

use tiny_skia::{FillRule, Paint, Pixmap, Rect, Transform};

use super::text::Font;
use crate::similarity::Verdict;

/// How the verdict is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    /// Text size in pixels (0: from the frame height).
    pub font_size: f32,
    /// Border thickness on flagged frames in pixels (0: from the frame size).
    pub border: u32,
    /// Write the parts found.
    pub show_parts: bool,
    /// Draw the panel on frames that are not flagged.
    pub show_clean: bool,
    /// Colour of the marker on flagged frames (RGBA).
    pub alert: [u8; 4],
}

impl Default for Style {
    fn default() -> Self {
        Self {
            font_size: 0.0,
            border: 0,
            show_parts: true,
            show_clean: true,
            alert: [230, 20, 20, 255],
        }
    }
}

/// Accent colour of frames that are not flagged.
const CLEAN: [u8; 4] = [40, 200, 70, 255];

/// A rectangle of the frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// A drawn verdict: a frame-sized premultiplied RGBA pixmap, transparent outside `regions`.
pub struct Drawing {
    pub pixmap: Pixmap,
    pub regions: Vec<Region>,
}

impl Drawing {
    /// The pixels of a region as premultiplied BGRA (`swap_rb`) or RGBA rows.
    pub fn region_bytes(&self, r: Region, swap_rb: bool) -> Vec<u8> {
        let stride = self.pixmap.width() as usize * 4;
        let data = self.pixmap.data();
        let mut out = Vec::with_capacity(r.width as usize * r.height as usize * 4);
        for y in r.y..r.y + r.height {
            let row = &data[y as usize * stride..][r.x as usize * 4..][..r.width as usize * 4];
            out.extend_from_slice(row);
        }
        if swap_rb {
            out.chunks_exact_mut(4).for_each(|p| p.swap(0, 2));
        }
        out
    }
}

/// The text size used for a frame `height` pixels high with `style`.
pub fn font_size(height: u32, style: &Style) -> f32 {
    if style.font_size > 0.0 {
        style.font_size
    } else {
        (height as f32 / 19.0).clamp(9.0, 40.0)
    }
}

/// The border thickness used for a `width x height` frame with `style`.
pub fn border_width(width: u32, height: u32, style: &Style) -> u32 {
    if style.border > 0 {
        style.border
    } else {
        (width.min(height) / 36).max(4)
    }
}

fn paint(rgba: [u8; 4]) -> Paint<'static> {
    let mut p = Paint::default();
    p.set_color_rgba8(rgba[0], rgba[1], rgba[2], rgba[3]);
    p.anti_alias = true;
    p
}

fn fill(pixmap: &mut Pixmap, x: f32, y: f32, w: f32, h: f32, rgba: [u8; 4]) {
    if let Some(rect) = Rect::from_xywh(x, y, w, h) {
        pixmap.fill_rect(rect, &paint(rgba), Transform::identity(), None);
    }
}

/// Writes `text` with a dark outline-free shadow for contrast on any background.
fn text(pixmap: &mut Pixmap, font: &Font, s: &str, size: f32, x: f32, y: f32, rgba: [u8; 4]) {
    let shadow = (size / 14.0).max(1.0);
    if let Some(path) = font.path(s, size, x + shadow, y + shadow) {
        pixmap.fill_path(
            &path,
            &paint([0, 0, 0, 200]),
            FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
    if let Some(path) = font.path(s, size, x, y) {
        pixmap.fill_path(
            &path,
            &paint(rgba),
            FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
}

/// Confidence as a whole percentage.
fn percent(p: f32) -> String {
    format!("{:.0}%", (p * 100.0).clamp(0.0, 100.0))
}

/// The lines of the bottom panel: for the first, candidates from the most to the least
/// explicit (the first that fits is drawn).
fn panel_lines(v: &Verdict, show_parts: bool) -> (Vec<String>, String) {
    let (p, c) = (&v.predicted, percent(v.confidence));
    let first = if v.adversarial {
        let k = &v.corrected;
        vec![
            format!("M: {p} {c}  \u{2192}  corrected: {k}"),
            format!("M: {p} {c} \u{2192} {k}"),
            format!("{p} \u{2192} {k}"),
        ]
    } else {
        vec![format!("OK  {p} {c}"), format!("OK {p}")]
    };
    let relation = if v.adversarial { "<" } else { "\u{2265}" };
    let mut second = format!(
        "similarity {:.2} {relation} {:.2}",
        v.similarity, v.threshold
    );
    if show_parts {
        let parts = if v.parts.is_empty() {
            "none".to_owned()
        } else {
            v.parts.join(", ")
        };
        second += &format!("  \u{b7}  parts: {parts}");
    }
    (first, second)
}

/// Draws `verdict` for a `width x height` frame; `None` when there is nothing to draw
/// (a frame that is not flagged with `show_clean` off, or an empty frame).
pub fn draw(verdict: &Verdict, width: u32, height: u32, style: &Style) -> Option<Drawing> {
    if !verdict.adversarial && !style.show_clean {
        return None;
    }
    let mut pixmap = Pixmap::new(width, height)?;
    let (w, h) = (width as f32, height as f32);
    let size = font_size(height, style);
    let regular = Font::sans();
    let bold = Font::sans_bold();
    let flagged = verdict.adversarial;
    let b = if flagged {
        border_width(width, height, style)
            .min(width / 4)
            .min(height / 4)
    } else {
        0
    };
    let bf = b as f32;
    let accent = if flagged { style.alert } else { CLEAN };
    let mut regions = Vec::new();

    // Bottom panel: two lines of text on a translucent dark band inside the border.
    let line = (size * 1.3).ceil();
    let pad = (size * 0.35).ceil();
    let panel_h = (2.0 * line + 2.0 * pad).min(h - 2.0 * bf).max(0.0);
    let panel_y = h - bf - panel_h;
    let inner_w = (w - 2.0 * bf).max(0.0);
    fill(&mut pixmap, bf, panel_y, inner_w, panel_h, [0, 0, 0, 150]);
    let bar = (size / 3.0).ceil().max(2.0);
    fill(&mut pixmap, bf, panel_y, bar, panel_h, accent);
    let x = bf + bar + pad;
    let max_text = (w - bf - pad - x).max(0.0);
    let (first, second) = panel_lines(verdict, style.show_parts);
    let first_colour = if flagged {
        [255, 255, 255, 255]
    } else {
        [170, 255, 180, 255]
    };
    let baseline = |i: f32| panel_y + pad + i * line + bold.ascent(size) * 0.95;
    let first = first
        .iter()
        .find(|l| bold.width(l, size) <= max_text)
        .unwrap_or(&first[first.len() - 1]);
    text(
        &mut pixmap,
        bold,
        &bold.fit(first, size, max_text),
        size,
        x,
        baseline(0.0),
        first_colour,
    );
    text(
        &mut pixmap,
        regular,
        &regular.fit(&second, size, max_text),
        size,
        x,
        baseline(1.0),
        [235, 235, 235, 255],
    );
    let bottom_band = (panel_h + bf).ceil() as u32;

    let mut top_band = 0;
    if flagged {
        // The border.
        fill(&mut pixmap, 0.0, 0.0, w, bf, accent);
        fill(&mut pixmap, 0.0, h - bf, w, bf, accent);
        fill(&mut pixmap, 0.0, bf, bf, h - 2.0 * bf, accent);
        fill(&mut pixmap, w - bf, bf, bf, h - 2.0 * bf, accent);
        // The banner.
        let banner_size = (size * 1.5).round();
        let banner_h = (banner_size * 1.45).ceil().min(h / 3.0);
        fill(&mut pixmap, bf, bf, inner_w, banner_h, accent);
        let label = "\u{26a0} ADVERSARIAL \u{26a0}";
        let label = if bold.width(label, banner_size) <= inner_w {
            label
        } else {
            "ADVERSARIAL"
        };
        let label = bold.fit(label, banner_size, inner_w);
        let tw = bold.width(&label, banner_size);
        let tx = bf + ((inner_w - tw) / 2.0).max(0.0);
        let ty = bf + (banner_h + bold.ascent(banner_size) * 0.72) / 2.0;
        text(
            &mut pixmap,
            bold,
            &label,
            banner_size,
            tx,
            ty,
            [255, 255, 255, 255],
        );
        top_band = ((bf + banner_h).ceil() as u32).min(height);
        let middle = height.saturating_sub(top_band + bottom_band);
        if middle > 0 {
            for x in [0, width - b] {
                regions.push(Region {
                    x,
                    y: top_band,
                    width: b,
                    height: middle,
                });
            }
        }
        regions.push(Region {
            x: 0,
            y: 0,
            width,
            height: top_band,
        });
    }
    let bottom_band = bottom_band.min(height - top_band);
    if bottom_band > 0 {
        regions.push(Region {
            x: 0,
            y: height - bottom_band,
            width,
            height: bottom_band,
        });
    }
    regions.retain(|r| r.width > 0 && r.height > 0);
    Some(Drawing { pixmap, regions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::similarity::UNKNOWN_CLASS;

    fn verdict(adversarial: bool) -> Verdict {
        Verdict {
            predicted_index: 0,
            predicted: "dog".into(),
            confidence: 0.87,
            parts: vec!["wheel".into(), "door".into()],
            similarity: if adversarial { 0.0 } else { 0.8 },
            threshold: 0.5,
            adversarial,
            corrected: if adversarial {
                "car".into()
            } else {
                "dog".into()
            },
            corrected_index: Some(1),
            corrected_similarity: 0.5,
        }
    }

    fn alpha(d: &Drawing, x: u32, y: u32) -> u8 {
        d.pixmap.pixel(x, y).unwrap().alpha()
    }

    #[test]
    fn flagged_frames_get_a_border_banner_and_panel() {
        let d = draw(&verdict(true), 320, 240, &Style::default()).unwrap();
        // Border on all sides, transparent middle.
        for (x, y) in [(1, 120), (318, 120), (160, 1), (160, 238)] {
            let p = d.pixmap.pixel(x, y).unwrap();
            assert_eq!(
                (p.red(), p.green(), p.blue(), p.alpha()),
                (230, 20, 20, 255)
            );
        }
        assert_eq!(alpha(&d, 160, 120), 0);
        // Regions cover everything drawn.
        let covered = |x: u32, y: u32| {
            d.regions
                .iter()
                .any(|r| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height)
        };
        for y in 0..240 {
            for x in 0..320 {
                if alpha(&d, x, y) > 0 {
                    assert!(covered(x, y), "({x}, {y}) drawn outside the regions");
                }
            }
        }
        assert_eq!(d.regions.len(), 4, "{:?}", d.regions);
    }

    #[test]
    fn clean_frames_get_only_the_panel_or_nothing() {
        let d = draw(&verdict(false), 320, 240, &Style::default()).unwrap();
        assert_eq!(d.regions.len(), 1);
        assert_eq!(alpha(&d, 1, 120), 0);
        assert!(alpha(&d, 1, 235) > 0);
        let quiet = Style {
            show_clean: false,
            ..Style::default()
        };
        assert!(draw(&verdict(false), 320, 240, &quiet).is_none());
    }

    #[test]
    fn tiny_and_odd_frames_do_not_panic() {
        let mut v = verdict(true);
        v.corrected = UNKNOWN_CLASS.into();
        v.corrected_index = None;
        for (w, h) in [(1, 1), (7, 3), (33, 17), (2000, 50)] {
            if let Some(d) = draw(&v, w, h, &Style::default()) {
                for r in &d.regions {
                    assert!(r.x + r.width <= w && r.y + r.height <= h, "{w}x{h}: {r:?}");
                    assert_eq!(
                        d.region_bytes(*r, true).len(),
                        (r.width * r.height * 4) as usize
                    );
                }
            }
        }
    }

    #[test]
    fn panel_text_says_what_happened() {
        let (a, b) = panel_lines(&verdict(true), true);
        assert_eq!(a[0], "M: dog 87%  \u{2192}  corrected: car");
        assert_eq!(a[2], "dog \u{2192} car");
        assert!(b.starts_with("similarity 0.00 < 0.50"), "{b}");
        assert!(b.ends_with("parts: wheel, door"), "{b}");
        let (a, b) = panel_lines(&verdict(false), false);
        assert_eq!(a[0], "OK  dog 87%");
        assert_eq!(b, "similarity 0.80 \u{2265} 0.50");
    }
}
