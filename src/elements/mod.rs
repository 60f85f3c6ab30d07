//! GStreamer elements provided by UnMask.

use gst::glib;

pub mod unmask;
pub mod unmaskoverlay;

/// Registers all elements, with `plugin` or statically (for applications) when `None`.
///
/// Also registers [`UnmaskMeta`](crate::meta::UnmaskMeta), installs the `log` → GStreamer
/// forwarder ([`crate::gstlog`]) and, for a plugin, records its file so that the shipped
/// models are found next to it ([`crate::paths`]).
pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    crate::gstlog::install();
    crate::meta::register();
    if let Some(file) = plugin.and_then(|p| p.filename()) {
        crate::paths::set_plugin_file(file);
    }
    unmask::register(plugin)?;
    unmaskoverlay::register(plugin)
}
