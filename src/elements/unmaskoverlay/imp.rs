//! Implementation of the `unmaskoverlay` element.
//!
//! `before_transform` reads the buffer's `UnmaskMeta` (if any), remembers the latest verdict
//! and decides whether this frame is annotated; frames that are not pass through
//! (`set_passthrough`), so they are neither copied nor mapped. `transform_frame_ip` blends the
//! cached overlay composition of the verdict into the frame.

use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use super::render::{self, Style};
use crate::meta::UnmaskMeta;
use crate::preprocess::PixelFormat;
use crate::similarity::Verdict;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "unmaskoverlay",
        gst::DebugColorFlags::empty(),
        Some("UnMask verdict overlay"),
    )
});

const DEFAULT_HOLD_TIME: u64 = gst::ClockTime::SECOND.nseconds();
const DEFAULT_SHOW_CLEAN: bool = true;
const DEFAULT_SHOW_PARTS: bool = true;
const DEFAULT_FONT_SIZE: f64 = 0.0;
const DEFAULT_BORDER_WIDTH: u32 = 0;
/// Big-endian ARGB, like `textoverlay`'s colours.
const DEFAULT_ALERT_COLOR: u32 = 0xffe6_1414;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    hold_time: gst::ClockTime,
    show_clean: bool,
    show_parts: bool,
    font_size: f64,
    border_width: u32,
    alert_color: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            hold_time: gst::ClockTime::from_nseconds(DEFAULT_HOLD_TIME),
            show_clean: DEFAULT_SHOW_CLEAN,
            show_parts: DEFAULT_SHOW_PARTS,
            font_size: DEFAULT_FONT_SIZE,
            border_width: DEFAULT_BORDER_WIDTH,
            alert_color: DEFAULT_ALERT_COLOR,
        }
    }
}

impl Settings {
    fn style(&self) -> Style {
        let [a, r, g, b] = self.alert_color.to_be_bytes();
        Style {
            font_size: self.font_size as f32,
            border: self.border_width,
            show_parts: self.show_parts,
            show_clean: self.show_clean,
            alert: [r, g, b, a],
        }
    }
}

/// The verdict being shown.
#[derive(Debug, Clone)]
struct Shown {
    verdict: Verdict,
    /// PTS of the buffer that brought it.
    since: Option<gst::ClockTime>,
}

/// The overlay of one verdict at one frame size and style.
struct Cached {
    verdict: Verdict,
    style: Style,
    size: (u32, u32),
    composition: Option<gst_video::VideoOverlayComposition>,
}

#[derive(Default)]
struct State {
    info: Option<gst_video::VideoInfo>,
    shown: Option<Shown>,
    /// Whether the buffer being processed is annotated (decided in `before_transform`).
    draw: bool,
    cached: Option<Cached>,
}

#[derive(Default)]
pub struct UnmaskOverlay {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

/// The composition for a drawing: one premultiplied rectangle per covered band.
fn composition(
    verdict: &Verdict,
    width: u32,
    height: u32,
    style: &Style,
) -> Result<Option<gst_video::VideoOverlayComposition>, glib::BoolError> {
    let Some(drawing) = render::draw(verdict, width, height, style) else {
        return Ok(None);
    };
    // The composition's RGB format is ARGB in native-endian 32-bit words.
    let (format, swap_rb) = if cfg!(target_endian = "little") {
        (gst_video::VideoFormat::Bgra, true)
    } else {
        (gst_video::VideoFormat::Argb, false)
    };
    let mut rects = Vec::with_capacity(drawing.regions.len());
    for r in &drawing.regions {
        let mut bytes = drawing.region_bytes(*r, swap_rb);
        if !swap_rb {
            // RGBA -> ARGB.
            bytes.chunks_exact_mut(4).for_each(|p| p.rotate_right(1));
        }
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        gst_video::VideoMeta::add(
            buffer.get_mut().expect("new buffer is writable"),
            gst_video::VideoFrameFlags::empty(),
            format,
            r.width,
            r.height,
        )?;
        rects.push(gst_video::VideoOverlayRectangle::new_raw(
            &buffer,
            r.x as i32,
            r.y as i32,
            r.width,
            r.height,
            gst_video::VideoOverlayFormatFlags::PREMULTIPLIED_ALPHA,
        ));
    }
    if rects.is_empty() {
        return Ok(None);
    }
    gst_video::VideoOverlayComposition::new(rects.iter()).map(Some)
}

#[glib::object_subclass]
impl ObjectSubclass for UnmaskOverlay {
    const NAME: &'static str = "GstUnmaskOverlay";
    type Type = super::UnmaskOverlay;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for UnmaskOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt64::builder("hold-time")
                    .nick("Hold time")
                    .blurb(
                        "How long (stream time, ns) the last verdict stays on frames that carry \
                         none (interval > 1, async mode); 0: only frames with a verdict",
                    )
                    .default_value(DEFAULT_HOLD_TIME)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("show-clean")
                    .nick("Show clean frames")
                    .blurb("Also annotate frames that are not flagged (panel with label and parts)")
                    .default_value(DEFAULT_SHOW_CLEAN)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("show-parts")
                    .nick("Show parts")
                    .blurb("List the parts the part extractor found")
                    .default_value(DEFAULT_SHOW_PARTS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("font-size")
                    .nick("Font size")
                    .blurb("Text size in pixels (0: about 1/19 of the frame height)")
                    .minimum(0.0)
                    .maximum(500.0)
                    .default_value(DEFAULT_FONT_SIZE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("border-width")
                    .nick("Border width")
                    .blurb(
                        "Thickness in pixels of the border drawn around flagged frames (0: about \
                         1/36 of the smaller frame dimension, at least 4)",
                    )
                    .maximum(10_000)
                    .default_value(DEFAULT_BORDER_WIDTH)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("alert-color")
                    .nick("Alert colour")
                    .blurb("Colour of the border and banner on flagged frames (big-endian ARGB)")
                    .default_value(DEFAULT_ALERT_COLOR)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        gst::debug!(CAT, imp = self, "setting {} to {value:?}", pspec.name());
        match pspec.name() {
            "hold-time" => {
                s.hold_time =
                    gst::ClockTime::from_nseconds(value.get().unwrap_or(DEFAULT_HOLD_TIME))
            }
            "show-clean" => s.show_clean = value.get().unwrap_or(DEFAULT_SHOW_CLEAN),
            "show-parts" => s.show_parts = value.get().unwrap_or(DEFAULT_SHOW_PARTS),
            "font-size" => s.font_size = value.get().unwrap_or(DEFAULT_FONT_SIZE),
            "border-width" => s.border_width = value.get().unwrap_or(DEFAULT_BORDER_WIDTH),
            "alert-color" => s.alert_color = value.get().unwrap_or(DEFAULT_ALERT_COLOR),
            name => gst::warning!(CAT, imp = self, "unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "hold-time" => s.hold_time.nseconds().to_value(),
            "show-clean" => s.show_clean.to_value(),
            "show-parts" => s.show_parts.to_value(),
            "font-size" => s.font_size.to_value(),
            "border-width" => s.border_width.to_value(),
            "alert-color" => s.alert_color.to_value(),
            name => {
                gst::warning!(CAT, imp = self, "unknown property {name}");
                glib::Value::from_type(pspec.value_type())
            }
        }
    }
}

impl GstObjectImpl for UnmaskOverlay {}

impl ElementImpl for UnmaskOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "UnMask verdict overlay",
                "Filter/Effect/Video",
                "Draws the verdicts of an upstream unmask element (UnmaskMeta) onto the video: \
                 label, corrected label, similarity and parts, and a red border and \
                 ADVERSARIAL banner on flagged frames",
                "The unmask developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let formats = PixelFormat::ALL.map(|f| f.gst_name());
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", gst::List::new(formats))
                .field("width", gst::IntRange::new(1, i32::MAX))
                .field("height", gst::IntRange::new(1, i32::MAX))
                .field(
                    "framerate",
                    gst::FractionRange::new(
                        gst::Fraction::new(0, 1),
                        gst::Fraction::new(i32::MAX, 1),
                    ),
                )
                .build();
            [
                ("src", gst::PadDirection::Src),
                ("sink", gst::PadDirection::Sink),
            ]
            .into_iter()
            .map(|(name, dir)| {
                gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps)
                    .expect("valid pad template")
            })
            .collect()
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for UnmaskOverlay {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = State::default();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = State::default();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStop(_) = event.view() {
            lock(&self.state).shown = None;
        }
        self.parent_sink_event(event)
    }

    fn before_transform(&self, buffer: &gst::BufferRef) {
        let settings = *lock(&self.settings);
        let mut state = lock(&self.state);
        let pts = buffer.pts();
        let carried = UnmaskMeta::read_all(buffer)
            .into_iter()
            .filter_map(|m| match m {
                Ok(m) => Some(m),
                Err(e) => {
                    gst::warning!(CAT, imp = self, "ignoring a malformed verdict: {e}");
                    None
                }
            })
            .next_back();
        let own = carried.is_some();
        if let Some(meta) = carried {
            state.shown = Some(Shown {
                verdict: meta.verdict,
                since: pts,
            });
        }
        let fresh = state.shown.as_ref().is_some_and(|s| {
            own || match (pts, s.since) {
                (Some(pts), Some(since)) => {
                    pts >= since
                        && pts - since <= settings.hold_time
                        && !settings.hold_time.is_zero()
                }
                // Without timestamps a verdict stays until the next one.
                _ => !settings.hold_time.is_zero(),
            }
        });
        if !fresh {
            state.shown = None;
        }
        let draw = state
            .shown
            .as_ref()
            .is_some_and(|s| s.verdict.adversarial || settings.show_clean);
        state.draw = draw;
        drop(state);
        let obj = self.obj();
        if obj.is_passthrough() == draw {
            gst::trace!(CAT, imp = self, "annotating: {draw}");
            obj.set_passthrough(!draw);
        }
    }
}

impl VideoFilterImpl for UnmaskOverlay {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        _outcaps: &gst::Caps,
        _out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        gst::debug!(CAT, imp = self, "caps {incaps}");
        let mut state = lock(&self.state);
        state.info = Some(in_info.clone());
        state.cached = None;
        Ok(())
    }

    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let style = lock(&self.settings).style();
        let mut state = lock(&self.state);
        if !state.draw {
            return Ok(gst::FlowSuccess::Ok);
        }
        let Some(shown) = state.shown.clone() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let size = (frame.width(), frame.height());
        let stale = state
            .cached
            .as_ref()
            .is_none_or(|c| c.verdict != shown.verdict || c.style != style || c.size != size);
        if stale {
            let composition = composition(&shown.verdict, size.0, size.1, &style).map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("Cannot build the overlay: {}", e)
                );
                gst::FlowError::Error
            })?;
            state.cached = Some(Cached {
                verdict: shown.verdict,
                style,
                size,
                composition,
            });
        }
        if let Some(c) = state.cached.as_ref().and_then(|c| c.composition.as_ref()) {
            c.blend(frame).map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("Cannot blend the overlay: {}", e)
                );
                gst::FlowError::Error
            })?;
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
