//! Forwards the `log` crate's records to GStreamer's debug system (category `unmask-log`), so
//! that library messages show up with `GST_DEBUG=unmask-log:5` inside pipelines.

use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;

/// The debug category the forwarded records go to.
pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "unmask-log",
        gst::DebugColorFlags::empty(),
        Some("Messages of the unmask library (log crate)"),
    )
});

/// A `log::Log` writing to [`CAT`].
#[derive(Debug)]
pub struct GstLogger;

fn gst_level(level: log::Level) -> gst::DebugLevel {
    match level {
        log::Level::Error => gst::DebugLevel::Error,
        log::Level::Warn => gst::DebugLevel::Warning,
        log::Level::Info => gst::DebugLevel::Info,
        log::Level::Debug => gst::DebugLevel::Debug,
        log::Level::Trace => gst::DebugLevel::Trace,
    }
}

impl log::Log for GstLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        CAT.above_threshold(gst_level(metadata.level()))
    }

    fn log(&self, record: &log::Record) {
        let level = gst_level(record.level());
        if !CAT.above_threshold(level) {
            return;
        }
        let file = glib::GString::from(record.file().unwrap_or("<unknown>"));
        CAT.log(
            None::<&glib::Object>,
            level,
            file.as_gstr(),
            record.module_path().unwrap_or(record.target()),
            record.line().unwrap_or(0),
            *record.args(),
        );
    }

    fn flush(&self) {}
}

static LOGGER: GstLogger = GstLogger;

/// Installs the forwarder as the process's logger unless one is installed already (then the
/// existing logger is kept). Returns whether this call installed it.
pub fn install() -> bool {
    let installed = log::set_logger(&LOGGER).is_ok();
    if installed {
        log::set_max_level(log::LevelFilter::Trace);
    }
    installed
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn forwards_records_to_the_category() {
        gst::init().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let f =
            gst::log::add_log_function(move |cat, level, _file, _function, _line, _obj, msg| {
                if cat.name() == "unmask-log" {
                    s.lock()
                        .unwrap()
                        .push((level, msg.get().map(|m| m.to_string())));
                }
            });
        CAT.set_threshold(gst::DebugLevel::Info);
        install();
        log::warn!("model {} is slow", "m.pt");
        log::debug!("below the threshold");
        gst::log::remove_log_function(f);
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            [(
                gst::DebugLevel::Warning,
                Some("model m.pt is slow".to_owned())
            )]
        );
    }
}
