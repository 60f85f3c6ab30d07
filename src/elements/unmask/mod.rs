//! The `unmask` element: flags adversarial video frames and attaches verdicts.
//!
//! Video passes through unchanged. Each analysed frame gets an [`UnmaskMeta`](crate::meta)
//! (and, depending on `post-messages`, an element message `unmask-alert` for flagged frames or
//! `unmask-verdict` for the others, with the same fields).
//!
//! ```text
//! gst-launch-1.0 videotestsrc ! unmask post-messages=all ! fakesink -m
//! ```
//!
//! - Input: packed RGB formats (RGB, BGR, RGBA, BGRA, RGBx, BGRx, xRGB, xBGR, ARGB, ABGR), I420
//!   and NV12 at any size and stride (`GstVideoMeta` honoured); colour conversion and resizing
//!   happen on the models' device. YUV uses the caps' matrix (BT.709/BT.2020 -> BT.709, else
//!   BT.601) and range.
//! - `mode=sync` (default): frames wait for their verdict; with `batch-size` N they wait for N
//!   analysed frames (a partial batch is analysed before any serialized event and at EOS, and
//!   dropped on flush). The latency query adds the analysis time (measured on a blank frame
//!   when caps are set, raised with a latency message if an analysis takes longer) plus
//!   `(N - 1) x interval` frame durations. With `pipeline-depth` D > 1 up to D batches are in
//!   the engine at once (the next one is pre-processed while the previous one is in the
//!   models); buffers still leave in order with their own verdicts, and the latency grows to
//!   `(D x N - 1) x interval` frame durations plus the analysis.
//! - `mode=async`: frames flow on at once; a worker thread analyses up to `batch-size` frames at
//!   a time from a bounded queue (frames offered while it is full are not analysed and count in
//!   `frames-dropped`); each verdict rides on a later buffer (`pts` names its frame) and is
//!   posted on the bus as soon as it is ready. Nothing is added to the latency. Verdicts
//!   finished after the last buffer has left (at EOS) are only posted on the bus.
//! - QoS (the inherited `qos` property, on by default): frames that are already late are
//!   dropped by the base class before analysis.
//! - Models: `classifier`, `extractor`, `knowledge`; unset ones are the shipped parts-world
//!   files, found as described in [`crate::paths`] (`$UNMASK_MODELS_DIR`, next to the plugin,
//!   `<prefix>/share/unmask/models`). Loading happens in READY -> PAUSED; any problem fails
//!   the state change with an error message naming the file. `active-threshold` reads the
//!   threshold in use (`threshold`, or the classifier's calibration when that is -1).
//!
//! See `gst-inspect-1.0 unmask` for the properties.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `unmask` element (a `GstBaseTransform`).
    pub struct Unmask(ObjectSubclass<imp::Unmask>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// How analysis is scheduled against the stream (`mode` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstUnmaskMode")]
pub enum Mode {
    /// Each analysed frame is pushed only once its verdict is attached.
    #[default]
    #[enum_value(
        name = "Sync: frames wait for their verdict (adds latency)",
        nick = "sync"
    )]
    Sync,
    /// Frames flow on at once; a worker thread analyses them and the verdicts ride on later
    /// buffers (their `pts` names the frame). Frames are skipped when the worker is busy.
    #[enum_value(
        name = "Async: frames flow on, verdicts follow on later buffers (live sources)",
        nick = "async"
    )]
    Async,
}

/// Which verdicts are posted on the bus (`post-messages` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstUnmaskPostMessages")]
pub enum PostMessages {
    /// No messages.
    #[enum_value(name = "None", nick = "none")]
    None,
    /// `unmask-alert` for flagged frames.
    #[default]
    #[enum_value(name = "Adversarial frames only (unmask-alert)", nick = "adversarial")]
    Adversarial,
    /// `unmask-alert` for flagged frames, `unmask-verdict` for the others.
    #[enum_value(name = "All verdicts (unmask-alert / unmask-verdict)", nick = "all")]
    All,
}

/// How the frame's aspect ratio is fitted to the models' input (`scaling` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstUnmaskScaling")]
pub enum Scaling {
    /// Centre crop with the model's aspect ratio, then resize.
    #[default]
    #[enum_value(name = "Crop the centre to the model's aspect ratio", nick = "crop")]
    Crop,
    /// Resize the whole frame.
    #[enum_value(name = "Stretch the whole frame", nick = "stretch")]
    Stretch,
}

impl From<Scaling> for crate::preprocess::Scaling {
    fn from(s: Scaling) -> Self {
        match s {
            Scaling::Crop => Self::Crop,
            Scaling::Stretch => Self::Stretch,
        }
    }
}

/// Structure name of the bus message for a flagged frame.
pub const ALERT_MESSAGE: &str = "unmask-alert";
/// Structure name of the bus message for a frame that is not flagged.
pub const VERDICT_MESSAGE: &str = "unmask-verdict";

/// Registers the element with `plugin`, or statically when `None`.
pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    gst::Element::register(plugin, "unmask", gst::Rank::NONE, Unmask::static_type())
}
