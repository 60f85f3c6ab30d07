//! `UnmaskMeta`: the verdict on a frame, carried on buffers as a `GstCustomMeta`.
//!
//! The meta holds a `GstStructure` named [`META_NAME`] with these fields, so any GStreamer
//! application (C, Python, …) can read it without linking this project
//! (`gst_buffer_get_custom_meta (buf, "UnmaskMeta")` then `gst_custom_meta_get_structure`):
//!
//! | field                  | type      | meaning                                            |
//! |------------------------|-----------|----------------------------------------------------|
//! | `predicted`            | string    | class predicted by the classifier M                |
//! | `predicted-index`      | int       | its index in the classifier's labels               |
//! | `confidence`           | double    | softmax probability of the prediction              |
//! | `parts`                | string    | parts found by K, comma-separated (`""`: none)     |
//! | `similarity`           | double    | Jaccard similarity of found and expected parts     |
//! | `threshold`            | double    | decision threshold in use                          |
//! | `adversarial`          | boolean   | `similarity < threshold`                           |
//! | `corrected`            | string    | realigned class (`"unknown"` if none matches)      |
//! | `corrected-index`      | int       | its index, `-1` for unknown                        |
//! | `corrected-similarity` | double    | similarity of the corrected class                  |
//! | `pts`                  | guint64   | PTS of the frame the verdict belongs to (`GST_CLOCK_TIME_NONE` if unknown) |
//! | `latency-ns`           | guint64   | duration of the analysis that produced it          |
//!
//! From C:
//!
//! ```c
//! GstCustomMeta *meta = gst_buffer_get_custom_meta (buffer, "UnmaskMeta");
//! if (meta) {
//!   GstStructure *s = gst_custom_meta_get_structure (meta);
//!   gboolean adversarial = FALSE;
//!   gst_structure_get_boolean (s, "adversarial", &adversarial);
//!   const gchar *corrected = gst_structure_get_string (s, "corrected");
//! }
//! ```
//!
//! From Python (PyGObject): `buffer.get_custom_meta("UnmaskMeta").get_structure()` (see
//! `tests/python/read_unmask_meta.py`).
//!
//! In `async` mode a verdict rides on a later buffer; `pts` names its frame. The same fields
//! are used for the element's bus messages.
//!
//! The meta has no tags: it describes the picture's content, not its geometry or colours, so
//! base transforms (`videoconvert`, `videoscale`, `queue`, `tee`, …) copy it unchanged.

use std::sync::OnceLock;
use std::time::Duration;

use crate::similarity::{UNKNOWN_CLASS, Verdict};

/// Name of the custom meta, and of the structure it holds.
pub const META_NAME: &str = "UnmaskMeta";

/// Why a structure is not a valid verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("UnmaskMeta: field \"{field}\": {problem}")]
pub struct MetaError {
    pub field: &'static str,
    pub problem: String,
}

/// A verdict with the frame it belongs to, as carried by `UnmaskMeta`.
#[derive(Debug, Clone, PartialEq)]
pub struct UnmaskMeta {
    /// The verdict.
    pub verdict: Verdict,
    /// PTS of the analysed frame.
    pub pts: Option<gst::ClockTime>,
    /// Duration of the analysis (of the whole batch the frame was analysed in).
    pub latency: Duration,
}

/// Registers the custom meta with GStreamer (idempotent; needs `gst::init`).
pub fn register() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // Another copy of this library in the process (plugin + static registration) may
        // have registered it already.
        if !gst::meta::CustomMeta::is_registered(META_NAME) {
            gst::meta::CustomMeta::register(META_NAME, &[]);
        }
    });
}

impl UnmaskMeta {
    /// Writes the fields into a structure (see the module docs).
    pub fn write_fields(&self, s: &mut gst::StructureRef) {
        let v = &self.verdict;
        s.set("predicted", v.predicted.as_str());
        s.set("predicted-index", v.predicted_index as i32);
        s.set("confidence", f64::from(v.confidence));
        s.set("parts", v.parts.join(","));
        s.set("similarity", f64::from(v.similarity));
        s.set("threshold", f64::from(v.threshold));
        s.set("adversarial", v.adversarial);
        s.set("corrected", v.corrected.as_str());
        s.set(
            "corrected-index",
            v.corrected_index.map_or(-1, |c| c as i32),
        );
        s.set("corrected-similarity", f64::from(v.corrected_similarity));
        s.set("pts", self.pts.map_or(u64::MAX, gst::ClockTime::nseconds));
        s.set(
            "latency-ns",
            u64::try_from(self.latency.as_nanos()).unwrap_or(u64::MAX),
        );
    }

    /// A structure named `name` with the fields.
    pub fn to_structure(&self, name: &str) -> gst::Structure {
        let mut s = gst::Structure::new_empty(name);
        self.write_fields(&mut s);
        s
    }

    /// Reads the fields back from a structure.
    pub fn from_structure(s: &gst::StructureRef) -> Result<Self, MetaError> {
        fn get<'a, T: gst::glib::value::FromValue<'a>>(
            s: &'a gst::StructureRef,
            field: &'static str,
        ) -> Result<T, MetaError> {
            s.get::<T>(field).map_err(|e| MetaError {
                field,
                problem: e.to_string(),
            })
        }
        let index = |field: &'static str| -> Result<Option<usize>, MetaError> {
            let i: i32 = get(s, field)?;
            Ok(usize::try_from(i).ok())
        };
        let predicted_index = index("predicted-index")?.ok_or_else(|| MetaError {
            field: "predicted-index",
            problem: "negative".into(),
        })?;
        let parts: String = get(s, "parts")?;
        let corrected: String = get(s, "corrected")?;
        let corrected_index = index("corrected-index")?;
        let pts: u64 = get(s, "pts")?;
        let latency: u64 = get(s, "latency-ns")?;
        Ok(Self {
            verdict: Verdict {
                predicted_index,
                predicted: get::<String>(s, "predicted")?,
                confidence: get::<f64>(s, "confidence")? as f32,
                parts: parts
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
                similarity: get::<f64>(s, "similarity")? as f32,
                threshold: get::<f64>(s, "threshold")? as f32,
                adversarial: get(s, "adversarial")?,
                corrected: if corrected.is_empty() {
                    UNKNOWN_CLASS.to_owned()
                } else {
                    corrected
                },
                corrected_index,
                corrected_similarity: get::<f64>(s, "corrected-similarity")? as f32,
            },
            pts: (pts != u64::MAX).then(|| gst::ClockTime::from_nseconds(pts)),
            latency: Duration::from_nanos(latency),
        })
    }

    /// Attaches the verdict to a buffer as an `UnmaskMeta`.
    pub fn add(&self, buffer: &mut gst::BufferRef) -> Result<(), gst::glib::BoolError> {
        register();
        let mut meta = gst::meta::CustomMeta::add(buffer, META_NAME)?;
        self.write_fields(meta.mut_structure());
        Ok(())
    }

    /// The first `UnmaskMeta` on a buffer, if any (`Err` if it is malformed).
    pub fn read(buffer: &gst::BufferRef) -> Option<Result<Self, MetaError>> {
        if !gst::meta::CustomMeta::is_registered(META_NAME) {
            return None;
        }
        let meta = gst::meta::CustomMeta::from_buffer(buffer, META_NAME).ok()?;
        Some(Self::from_structure(meta.structure()))
    }

    /// Every `UnmaskMeta` on a buffer, in the order they were added.
    pub fn read_all(buffer: &gst::BufferRef) -> Vec<Result<Self, MetaError>> {
        let mut all = Vec::new();
        buffer.foreach_meta(|meta| {
            if let Some(custom) = meta.try_as_custom_meta()
                && custom.has_name(META_NAME)
            {
                all.push(Self::from_structure(custom.structure()));
            }
            std::ops::ControlFlow::Continue(())
        });
        all
    }

    /// Removes every `UnmaskMeta` from a buffer.
    pub fn remove_all(buffer: &mut gst::BufferRef) {
        buffer.foreach_meta_mut(|meta| {
            let ours = meta
                .try_as_custom_meta()
                .is_some_and(|c| c.has_name(META_NAME));
            std::ops::ControlFlow::Continue(if ours {
                gst::buffer::BufferMetaForeachAction::Remove
            } else {
                gst::buffer::BufferMetaForeachAction::Keep
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UnmaskMeta {
        UnmaskMeta {
            verdict: Verdict {
                predicted_index: 1,
                predicted: "green_thing".into(),
                confidence: 0.75,
                parts: vec!["red_part".into(), "edge".into()],
                similarity: 1.0 / 3.0,
                threshold: 0.5,
                adversarial: true,
                corrected: UNKNOWN_CLASS.into(),
                corrected_index: None,
                corrected_similarity: 0.0,
            },
            pts: Some(gst::ClockTime::from_mseconds(40)),
            latency: Duration::from_micros(1234),
        }
    }

    #[test]
    fn round_trips_through_a_buffer() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::with_size(16).unwrap();
        assert!(UnmaskMeta::read(&buffer).is_none());
        let m = sample();
        m.add(buffer.get_mut().unwrap()).unwrap();
        let mut other = m.clone();
        other.pts = None;
        other.verdict.parts.clear();
        other.add(buffer.get_mut().unwrap()).unwrap();
        assert_eq!(UnmaskMeta::read(&buffer).unwrap().unwrap(), m);
        let all: Vec<_> = UnmaskMeta::read_all(&buffer)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(all, [m, other]);
        UnmaskMeta::remove_all(buffer.get_mut().unwrap());
        assert!(UnmaskMeta::read(&buffer).is_none());
    }

    #[test]
    fn structure_has_the_documented_types() {
        gst::init().unwrap();
        let s = sample().to_structure("unmask-alert");
        assert_eq!(s.get::<&str>("parts").unwrap(), "red_part,edge");
        assert_eq!(s.get::<i32>("corrected-index").unwrap(), -1);
        assert_eq!(s.get::<u64>("pts").unwrap(), 40_000_000);
        assert_eq!(s.get::<u64>("latency-ns").unwrap(), 1_234_000);
        assert!(s.get::<bool>("adversarial").unwrap());
        let mut bad = s.clone();
        bad.set("confidence", "high");
        let err = UnmaskMeta::from_structure(&bad).unwrap_err();
        assert_eq!(err.field, "confidence");
    }
}
