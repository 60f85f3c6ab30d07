//! GStreamer elements provided by UnMask.

use gst::glib;

/// Registers all elements, with `plugin` or statically (for applications) when `None`.
pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    let _ = plugin;
    Ok(())
}
