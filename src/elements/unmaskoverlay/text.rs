//! Text as tiny-skia paths: glyph outlines from an embedded TrueType font (DejaVu Sans, from
//! the `dejavu` crate, so no font has to be installed), laid out on one line and converted to
//! a [`tiny_skia::Path`] that is filled like any other shape (anti-aliased).

use std::sync::LazyLock;

use tiny_skia::{Path, PathBuilder};

/// A parsed font face.
pub struct Font {
    face: ttf_parser::Face<'static>,
    units_per_em: f32,
}

static SANS: LazyLock<Font> = LazyLock::new(|| Font::parse(dejavu::sans::regular()));
static SANS_BOLD: LazyLock<Font> = LazyLock::new(|| Font::parse(dejavu::sans::bold()));

/// Character drawn for characters the font does not have.
const REPLACEMENT: char = '?';

impl Font {
    fn parse(data: &'static [u8]) -> Self {
        let face = ttf_parser::Face::parse(data, 0).expect("the embedded font parses");
        let units_per_em = f32::from(face.units_per_em().max(1));
        Self { face, units_per_em }
    }

    /// DejaVu Sans.
    pub fn sans() -> &'static Font {
        &SANS
    }

    /// DejaVu Sans Bold.
    pub fn sans_bold() -> &'static Font {
        &SANS_BOLD
    }

    fn glyph(&self, c: char) -> Option<ttf_parser::GlyphId> {
        self.face
            .glyph_index(c)
            .or_else(|| self.face.glyph_index(REPLACEMENT))
    }

    fn advance(&self, g: ttf_parser::GlyphId, size: f32) -> f32 {
        f32::from(self.face.glyph_hor_advance(g).unwrap_or(0)) * size / self.units_per_em
    }

    /// Height above the baseline of the tallest glyphs at `size` pixels.
    pub fn ascent(&self, size: f32) -> f32 {
        f32::from(self.face.ascender()) * size / self.units_per_em
    }

    /// Depth below the baseline (positive) at `size` pixels.
    pub fn descent(&self, size: f32) -> f32 {
        -f32::from(self.face.descender()) * size / self.units_per_em
    }

    /// Width of `text` at `size` pixels.
    pub fn width(&self, text: &str, size: f32) -> f32 {
        text.chars()
            .filter_map(|c| self.glyph(c))
            .map(|g| self.advance(g, size))
            .sum()
    }

    /// `text` shortened with an ellipsis so that it is at most `max_width` pixels wide.
    pub fn fit(&self, text: &str, size: f32, max_width: f32) -> String {
        if self.width(text, size) <= max_width {
            return text.to_owned();
        }
        let mut chars: Vec<char> = text.chars().collect();
        while !chars.is_empty() {
            chars.pop();
            let candidate: String = chars.iter().collect::<String>().trim_end().to_owned() + "…";
            if self.width(&candidate, size) <= max_width {
                return candidate;
            }
        }
        String::new()
    }

    /// The outline of `text` at `size` pixels with its baseline starting at `(x, y)`
    /// (`None` for text without visible glyphs).
    pub fn path(&self, text: &str, size: f32, x: f32, y: f32) -> Option<Path> {
        let scale = size / self.units_per_em;
        let mut builder = Outline {
            pb: PathBuilder::new(),
            scale,
            x,
            y,
        };
        for c in text.chars() {
            let Some(g) = self.glyph(c) else { continue };
            self.face.outline_glyph(g, &mut builder);
            builder.x += self.advance(g, size);
        }
        builder.pb.finish()
    }
}

/// Receives glyph outlines (font units, y up) and adds them to a path (pixels, y down).
struct Outline {
    pb: PathBuilder,
    scale: f32,
    x: f32,
    y: f32,
}

impl Outline {
    fn map(&self, x: f32, y: f32) -> (f32, f32) {
        (self.x + x * self.scale, self.y - y * self.scale)
    }
}

impl ttf_parser::OutlineBuilder for Outline {
    fn move_to(&mut self, x: f32, y: f32) {
        let (x, y) = self.map(x, y);
        self.pb.move_to(x, y);
    }

    fn line_to(&mut self, x: f32, y: f32) {
        let (x, y) = self.map(x, y);
        self.pb.line_to(x, y);
    }

    fn quad_to(&mut self, x1: f32, y1: f32, x: f32, y: f32) {
        let (x1, y1) = self.map(x1, y1);
        let (x, y) = self.map(x, y);
        self.pb.quad_to(x1, y1, x, y);
    }

    fn curve_to(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, x: f32, y: f32) {
        let (x1, y1) = self.map(x1, y1);
        let (x2, y2) = self.map(x2, y2);
        let (x, y) = self.map(x, y);
        self.pb.cubic_to(x1, y1, x2, y2, x, y);
    }

    fn close(&mut self) {
        self.pb.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_outlines_text() {
        let f = Font::sans_bold();
        let w = f.width("ADVERSARIAL", 20.0);
        assert!(w > 100.0 && w < 200.0, "{w}");
        let p = f.path("ADVERSARIAL", 20.0, 5.0, 25.0).unwrap();
        let b = p.bounds();
        assert!(b.left() >= 5.0 && b.right() <= 5.0 + w + 1.0, "{b:?}");
        assert!(
            b.top() >= 25.0 - f.ascent(20.0) && b.bottom() <= 25.0 + 1.0,
            "{b:?}"
        );
        assert!(f.path(" ", 20.0, 0.0, 0.0).is_none());
    }

    #[test]
    fn fits_text_with_an_ellipsis() {
        let f = Font::sans();
        let long = "parts: wheel, door, window, headlight, mirror, licenseplate";
        let short = f.fit(long, 12.0, 100.0);
        assert!(short.ends_with('…'), "{short}");
        assert!(f.width(&short, 12.0) <= 100.0);
        assert_eq!(f.fit("car", 12.0, 100.0), "car");
    }
}
