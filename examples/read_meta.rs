//! Reads the verdicts of the `unmask` element from an application.
//!
//! Builds `uridecodebin ! videoconvert ! unmask ! fakesink`, registering the project's
//! elements statically (no plugin path needed), and prints the `UnmaskMeta` of every buffer
//! leaving `unmask` as a JSON line, from a pad probe.
//!
//! ```sh
//! cargo run --example read_meta -- clip.mkv
//! cargo run --example read_meta -- clip.mkv device=cpu threshold=0.4
//! cargo run --example read_meta -- "videotestsrc num-buffers=20"
//! ```
//!
//! The first argument is a video file, a URI, or a launch-line fragment producing video; the
//! others are `unmask` properties (`name=value`, see `gst-inspect-1.0 unmask`).

use gst::prelude::*;
use unmask::meta::UnmaskMeta;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = args
        .next()
        .ok_or("usage: read_meta INPUT [unmask-property=value ...]")?;
    gst::init()?;
    unmask::elements::register(None)?;

    let source = if input.contains("://") {
        format!("uridecodebin uri={input}")
    } else if std::path::Path::new(&input).is_file() {
        let path = std::fs::canonicalize(&input)?;
        format!(
            "uridecodebin uri={}",
            gst::glib::filename_to_uri(path, None)?
        )
    } else {
        input.clone()
    };
    let pipeline = gst::parse::launch(&format!(
        "{source} ! videoconvert ! unmask name=unmask ! fakesink sync=false"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let unmask = pipeline.by_name("unmask").ok_or("no unmask element")?;
    for prop in args {
        let (name, value) = prop
            .split_once('=')
            .ok_or_else(|| format!("{prop}: expected name=value"))?;
        unmask.set_property_from_str(name, value);
    }

    // Every buffer leaving `unmask` that carries a verdict.
    unmask
        .static_pad("src")
        .ok_or("unmask has no src pad")?
        .add_probe(gst::PadProbeType::BUFFER, |_, info| {
            if let Some(buffer) = info.buffer() {
                match UnmaskMeta::read(buffer) {
                    Some(Ok(meta)) => {
                        let v = &meta.verdict;
                        let line = serde_json::json!({
                            "pts": meta.pts.map(gst::ClockTime::nseconds),
                            "predicted": v.predicted,
                            "confidence": v.confidence,
                            "parts": v.parts,
                            "similarity": v.similarity,
                            "adversarial": v.adversarial,
                            "corrected": v.corrected,
                        });
                        println!("{line}");
                    }
                    Some(Err(e)) => eprintln!("malformed verdict: {e}"),
                    None => {}
                }
            }
            gst::PadProbeReturn::Ok
        });

    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let mut result = Ok(());
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                result = Err(format!("{}: {:?}", e.error(), e.debug()).into());
                break;
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null)?;
    result
}
