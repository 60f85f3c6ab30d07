//! The `unmaskoverlay` element: draws the verdicts of an upstream `unmask` onto the video.
//!
//! ```text
//! gst-launch-1.0 uridecodebin uri=file:///clip.mkv ! videoconvert ! unmask ! unmaskoverlay ! \
//!     videoconvert ! autovideosink
//! ```
//!
//! For people watching: flagged frames get an unmistakable marker (a thick border in
//! `alert-color` and an "ADVERSARIAL" banner across the top); every annotated frame gets a
//! panel at the bottom with the classifier's label and confidence, the corrected label, the
//! similarity against the threshold and the parts found.
//!
//! - Reads [`UnmaskMeta`](crate::meta) from the buffers, so it works anywhere downstream of
//!   `unmask` (after `queue`, `tee`, `videoconvert`, …). Frames without a verdict of their own
//!   (`interval` > 1, or `mode=async` where verdicts ride on later buffers) keep showing the
//!   last verdict for `hold-time` of stream time; after that they pass unchanged.
//! - In-place `GstVideoFilter` for the packed RGB formats (RGB, BGR, RGBA, BGRA, RGBx, BGRx,
//!   xRGB, xBGR, ARGB, ABGR) and I420 / NV12. The drawing (tiny-skia, text from the embedded
//!   DejaVu Sans) is made once per verdict and frame size and blended with GStreamer's
//!   overlay composition (`gst_video_overlay_composition_blend`), only over the bands it
//!   covers. Frames with nothing to draw pass through untouched (no copy).
//!
//! See `gst-inspect-1.0 unmaskoverlay` for the properties.

use gst::glib;
use gst::prelude::*;

mod imp;
pub mod render;
pub mod text;

glib::wrapper! {
    /// The `unmaskoverlay` element (a `GstVideoFilter`).
    pub struct UnmaskOverlay(ObjectSubclass<imp::UnmaskOverlay>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Registers the element with `plugin`, or statically when `None`.
pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    gst::Element::register(
        plugin,
        "unmaskoverlay",
        gst::Rank::NONE,
        UnmaskOverlay::static_type(),
    )
}
