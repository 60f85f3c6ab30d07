//! Reports on analysed video: per-frame records, scan summaries with flagged segments, the
//! comparison with a ground truth, and the debounced alerts of live monitoring.
//!
//! GStreamer-agnostic apart from reading [`UnmaskMeta`]; used by `unmask scan` and
//! `unmask watch`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::meta::UnmaskMeta;

/// One analysed frame: a line of the JSON-lines report of `unmask scan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRecord {
    /// Index of the frame in the stream (0-based, counting every decoded frame, analysed or
    /// not).
    pub frame: u64,
    /// Presentation time in seconds (`null` if the frame had no timestamp).
    pub time: Option<f64>,
    /// The image file, when scanning a folder of images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Class predicted by the classifier M.
    pub predicted: String,
    pub predicted_index: usize,
    /// Softmax probability of the prediction.
    pub confidence: f32,
    /// Parts found by the part extractor K.
    pub parts: Vec<String>,
    /// Jaccard similarity of the parts found and the parts expected for the prediction.
    pub similarity: f32,
    pub threshold: f32,
    /// Flagged adversarial (`similarity < threshold`).
    pub adversarial: bool,
    /// The final label: realigned when flagged (`"unknown"` when no class matches).
    pub corrected: String,
    pub corrected_index: Option<usize>,
    pub corrected_similarity: f32,
    /// Duration of the analysis that produced the verdict, in milliseconds.
    pub latency_ms: f64,
}

impl FrameRecord {
    /// The record of frame number `frame` from its verdict.
    pub fn new(frame: u64, meta: &UnmaskMeta, file: Option<String>) -> Self {
        let v = &meta.verdict;
        Self {
            frame,
            time: meta.pts.map(|t| t.nseconds() as f64 / 1e9),
            file,
            predicted: v.predicted.clone(),
            predicted_index: v.predicted_index,
            confidence: v.confidence,
            parts: v.parts.clone(),
            similarity: v.similarity,
            threshold: v.threshold,
            adversarial: v.adversarial,
            corrected: v.corrected.clone(),
            corrected_index: v.corrected_index,
            corrected_similarity: v.corrected_similarity,
            latency_ms: meta.latency.as_secs_f64() * 1e3,
        }
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        let time = self.time.map_or("     -".into(), |t| format!("{t:7.2}s"));
        let parts = if self.parts.is_empty() {
            "-".to_owned()
        } else {
            self.parts.join(",")
        };
        let verdict = if self.adversarial {
            format!("FLAGGED -> {}", self.corrected)
        } else {
            "ok".to_owned()
        };
        let file = self
            .file
            .as_deref()
            .map_or(String::new(), |f| format!(" {f}"));
        format!(
            "{:>6} {time}{file}  {:<10} {:>4.0}%  sim {:.2}  {verdict:<20} parts: {parts}",
            self.frame,
            self.predicted,
            self.confidence * 100.0,
            self.similarity
        )
    }
}

/// A run of consecutive analysed frames that were all flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub start_frame: u64,
    /// Last flagged frame (inclusive).
    pub end_frame: u64,
    /// Time of the first flagged frame, in seconds.
    pub start: Option<f64>,
    /// Time of the last flagged frame, in seconds.
    pub end: Option<f64>,
    /// Flagged (analysed) frames in the segment.
    pub frames: u64,
    /// How often each corrected label was given in the segment.
    pub corrected: BTreeMap<String, u64>,
}

impl Segment {
    fn start(r: &FrameRecord) -> Self {
        Self {
            start_frame: r.frame,
            end_frame: r.frame,
            start: r.time,
            end: r.time,
            frames: 0,
            corrected: BTreeMap::new(),
        }
    }

    fn add(&mut self, r: &FrameRecord) {
        self.end_frame = r.frame;
        self.end = r.time;
        self.frames += 1;
        *self.corrected.entry(r.corrected.clone()).or_default() += 1;
    }

    /// The most frequent corrected label.
    pub fn main_label(&self) -> Option<&str> {
        self.corrected
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(l, _)| l.as_str())
    }
}

/// Totals of a scan.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Frames that reached the detector.
    pub frames: u64,
    /// Frames with a verdict.
    pub analysed: u64,
    /// Frames flagged adversarial.
    pub flagged: u64,
    /// Runs of consecutive flagged (analysed) frames.
    pub segments: Vec<Segment>,
    /// Corrected labels of the flagged frames, with counts.
    pub corrected: BTreeMap<String, u64>,
    /// Classifier predictions of all analysed frames, with counts.
    pub predicted: BTreeMap<String, u64>,
    /// Time of the last analysed frame, in seconds.
    pub last_time: Option<f64>,
    /// Mean analysis latency per verdict, in milliseconds.
    pub mean_latency_ms: f64,
}

/// Builds a [`Summary`] from records in stream order.
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    summary: Summary,
    open: Option<Segment>,
    latency_sum: f64,
}

impl SummaryBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next analysed frame.
    pub fn push(&mut self, r: &FrameRecord) {
        let s = &mut self.summary;
        s.analysed += 1;
        s.last_time = r.time.or(s.last_time);
        self.latency_sum += r.latency_ms;
        *s.predicted.entry(r.predicted.clone()).or_default() += 1;
        if r.adversarial {
            s.flagged += 1;
            *s.corrected.entry(r.corrected.clone()).or_default() += 1;
            self.open.get_or_insert_with(|| Segment::start(r)).add(r);
        } else if let Some(seg) = self.open.take() {
            s.segments.push(seg);
        }
    }

    /// Flagged frames so far.
    pub fn flagged(&self) -> u64 {
        self.summary.flagged
    }

    /// The summary, with `frames` frames seen by the detector.
    pub fn finish(mut self, frames: u64) -> Summary {
        if let Some(seg) = self.open.take() {
            self.summary.segments.push(seg);
        }
        let s = &mut self.summary;
        s.frames = frames.max(s.analysed);
        if s.analysed > 0 {
            s.mean_latency_ms = self.latency_sum / s.analysed as f64;
        }
        self.summary
    }
}

impl Summary {
    /// Human-readable lines.
    pub fn lines(&self) -> Vec<String> {
        let t = |t: Option<f64>| t.map_or("?".into(), |t| format!("{t:.2}s"));
        let mut out = vec![format!(
            "frames: {}   analysed: {}   flagged: {} ({:.1}%)   mean analysis time: {:.1} ms",
            self.frames,
            self.analysed,
            self.flagged,
            100.0 * self.flagged as f64 / self.analysed.max(1) as f64,
            self.mean_latency_ms
        )];
        if self.segments.is_empty() {
            out.push("flagged segments: none".into());
        } else {
            out.push(format!("flagged segments: {}", self.segments.len()));
            for s in &self.segments {
                out.push(format!(
                    "  {} - {} (frames {}-{}, {} flagged) corrected to {}",
                    t(s.start),
                    t(s.end),
                    s.start_frame,
                    s.end_frame,
                    s.frames,
                    counts(&s.corrected)
                ));
            }
            out.push(format!("corrected labels: {}", counts(&self.corrected)));
        }
        out
    }
}

/// `a 3, b 1` (most frequent first).
pub fn counts(map: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ground truth of one frame of a clip written by `unmask attack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthFrame {
    pub frame: u64,
    /// Time in seconds.
    pub time: f64,
    /// The true class of the scene (or of the image, for user images).
    pub class: String,
    /// Whether the frame was attacked.
    pub attacked: bool,
    /// The classifier's prediction on the frame as written (the attacked frame for attacked
    /// ones), through the element's uint8 pre-processing.
    pub prediction: String,
}

/// Ground-truth file of a clip (`<clip>.json`, written by `unmask attack`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// Per-frame ground truth, in frame order.
    pub truth: Vec<TruthFrame>,
    /// Anything else the file says (attack, scenes, …).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Truth {
    /// Reads a ground-truth file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a ground-truth file of `unmask attack` (needs a \"truth\" array)",
                path.display()
            )
        })
    }
}

/// Verdicts compared with the ground truth.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TruthComparison {
    /// Analysed frames that have a ground truth.
    pub compared: u64,
    /// Attacked frames analysed.
    pub attacked: u64,
    /// … of which flagged.
    pub attacked_flagged: u64,
    /// Attacked frames on which the classifier was fooled (prediction ≠ truth).
    pub fooled: u64,
    /// … of which flagged.
    pub fooled_flagged: u64,
    /// Attacked frames whose final label (corrected when flagged, predicted otherwise) is
    /// the true class.
    pub attacked_correct_label: u64,
    /// Clean frames analysed.
    pub clean: u64,
    /// … of which flagged (false alarms).
    pub false_alarms: u64,
    /// Clean frames the classifier got right.
    pub clean_correct: u64,
    /// Frames of the report without a ground truth (e.g. beyond its end).
    pub unmatched: u64,
    /// Detection rate on attacked frames (`attacked_flagged / attacked`).
    pub detection_rate: Option<f64>,
    /// Detection rate on attacked frames that fooled the classifier.
    pub detection_rate_fooled: Option<f64>,
    /// False-alarm rate on clean frames (`false_alarms / clean`).
    pub false_alarm_rate: Option<f64>,
    /// Final-label accuracy on attacked frames (the study's defense accuracy).
    pub corrected_accuracy: Option<f64>,
    /// Classifier accuracy on clean frames.
    pub clean_accuracy: Option<f64>,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl TruthComparison {
    /// Compares records (matched by frame number) with the ground truth.
    pub fn compute(records: &[FrameRecord], truth: &Truth) -> Self {
        let by_frame: HashMap<u64, &TruthFrame> =
            truth.truth.iter().map(|t| (t.frame, t)).collect();
        let mut c = Self::default();
        for r in records {
            let Some(t) = by_frame.get(&r.frame) else {
                c.unmatched += 1;
                continue;
            };
            c.compared += 1;
            let final_label = if r.adversarial {
                &r.corrected
            } else {
                &r.predicted
            };
            if t.attacked {
                c.attacked += 1;
                let fooled = r.predicted != t.class;
                c.fooled += u64::from(fooled);
                c.attacked_flagged += u64::from(r.adversarial);
                c.fooled_flagged += u64::from(fooled && r.adversarial);
                c.attacked_correct_label += u64::from(*final_label == t.class);
            } else {
                c.clean += 1;
                c.false_alarms += u64::from(r.adversarial);
                c.clean_correct += u64::from(r.predicted == t.class);
            }
        }
        c.detection_rate = ratio(c.attacked_flagged, c.attacked);
        c.detection_rate_fooled = ratio(c.fooled_flagged, c.fooled);
        c.false_alarm_rate = ratio(c.false_alarms, c.clean);
        c.corrected_accuracy = ratio(c.attacked_correct_label, c.attacked);
        c.clean_accuracy = ratio(c.clean_correct, c.clean);
        c
    }

    /// Human-readable lines.
    pub fn lines(&self) -> Vec<String> {
        let pct = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("{:.1}%", 100.0 * r));
        let mut out = vec![
            format!(
                "attacked frames: {}   flagged: {}   detection rate: {}",
                self.attacked,
                self.attacked_flagged,
                pct(self.detection_rate)
            ),
            format!(
                "  fooled the classifier: {}   of those flagged: {} ({})",
                self.fooled,
                self.fooled_flagged,
                pct(self.detection_rate_fooled)
            ),
            format!(
                "  final label correct (corrected when flagged): {} ({})",
                self.attacked_correct_label,
                pct(self.corrected_accuracy)
            ),
            format!(
                "clean frames: {}   false alarms: {} ({})   classifier correct: {}",
                self.clean,
                self.false_alarms,
                pct(self.false_alarm_rate),
                pct(self.clean_accuracy)
            ),
        ];
        if self.unmatched > 0 {
            out.push(format!(
                "frames without ground truth: {} (not counted)",
                self.unmatched
            ));
        }
        out
    }
}

/// Two aligned strips, one character per frame of the ground truth, `width` frames a row:
/// `attacked` (`#` attacked, `.` clean) and `flagged` (`X` flagged, `.` clean, blank: no
/// verdict for that frame).
pub fn timeline(records: &[FrameRecord], truth: &Truth, width: usize) -> Vec<String> {
    let flags: HashMap<u64, bool> = records.iter().map(|r| (r.frame, r.adversarial)).collect();
    let width = width.max(10);
    let mut out = Vec::new();
    for chunk in truth.truth.chunks(width) {
        let first = chunk[0].frame;
        let attacked: String = chunk
            .iter()
            .map(|t| if t.attacked { '#' } else { '.' })
            .collect();
        let flagged: String = chunk
            .iter()
            .map(|t| match flags.get(&t.frame) {
                Some(true) => 'X',
                Some(false) => '.',
                None => ' ',
            })
            .collect();
        out.push(format!("  frames {first:>5}+  attacked {attacked}"));
        out.push(format!("                flagged  {flagged}"));
    }
    out
}

/// An alert of live monitoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Alert {
    /// A flagged segment started: `start_after` consecutive analysed frames were flagged.
    Start {
        /// Time (stream seconds) and number of the first flagged frame of the segment.
        time: Option<f64>,
        frame: u64,
        predicted: String,
        corrected: String,
        similarity: f32,
    },
    /// A flagged segment ended: `end_after` consecutive analysed frames were clean, or the
    /// stream stopped (`reason`).
    End {
        /// First and last flagged frames of the segment (times in stream seconds).
        start: Option<f64>,
        end: Option<f64>,
        start_frame: u64,
        end_frame: u64,
        /// Flagged frames in the segment.
        flagged: u64,
        /// Most frequent corrected label.
        corrected: String,
        /// `clean`, `stopped` or `source-lost`.
        reason: String,
    },
}

/// Turns per-frame verdicts into segment start/end alerts: `start_after` consecutive flagged
/// analysed frames start a segment, `end_after` consecutive clean ones end it.
#[derive(Debug)]
pub struct Debouncer {
    start_after: u32,
    end_after: u32,
    /// Flagged frames of the current run (before a segment starts).
    run: Vec<FrameRecord>,
    clean_run: u32,
    active: Option<Segment>,
}

impl Debouncer {
    pub fn new(start_after: u32, end_after: u32) -> Self {
        Self {
            start_after: start_after.max(1),
            end_after: end_after.max(1),
            run: Vec::new(),
            clean_run: 0,
            active: None,
        }
    }

    /// Whether a segment is open.
    pub fn active(&self) -> bool {
        self.active.is_some()
    }

    /// Adds the next analysed frame; returns an alert when a segment starts or ends.
    pub fn push(&mut self, r: &FrameRecord) -> Option<Alert> {
        if let Some(seg) = &mut self.active {
            if r.adversarial {
                self.clean_run = 0;
                seg.add(r);
                return None;
            }
            self.clean_run += 1;
            if self.clean_run >= self.end_after {
                return self.close("clean");
            }
            return None;
        }
        if !r.adversarial {
            self.run.clear();
            return None;
        }
        self.run.push(r.clone());
        if self.run.len() < self.start_after as usize {
            return None;
        }
        let first = &self.run[0];
        let mut seg = Segment::start(first);
        for f in &self.run {
            seg.add(f);
        }
        let alert = Alert::Start {
            time: first.time,
            frame: first.frame,
            predicted: r.predicted.clone(),
            corrected: r.corrected.clone(),
            similarity: r.similarity,
        };
        self.run.clear();
        self.clean_run = 0;
        self.active = Some(seg);
        Some(alert)
    }

    /// Ends an open segment (`reason`: why), if any.
    pub fn close(&mut self, reason: &str) -> Option<Alert> {
        self.run.clear();
        self.clean_run = 0;
        let seg = self.active.take()?;
        Some(Alert::End {
            corrected: seg.main_label().unwrap_or_default().to_owned(),
            start: seg.start,
            end: seg.end,
            start_frame: seg.start_frame,
            end_frame: seg.end_frame,
            flagged: seg.frames,
            reason: reason.to_owned(),
        })
    }
}

/// UTC time as RFC 3339 with milliseconds (`2024-05-01T12:34:56.789Z`).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(frame: u64, adversarial: bool, predicted: &str, corrected: &str) -> FrameRecord {
        FrameRecord {
            frame,
            time: Some(frame as f64 * 0.1),
            file: None,
            predicted: predicted.into(),
            predicted_index: 0,
            confidence: 0.9,
            parts: vec![],
            similarity: if adversarial { 0.0 } else { 1.0 },
            threshold: 0.5,
            adversarial,
            corrected: corrected.into(),
            corrected_index: Some(0),
            corrected_similarity: 0.5,
            latency_ms: 2.0,
        }
    }

    #[test]
    fn summary_finds_segments_and_counts() {
        let flags = [false, true, true, false, true, true, true];
        let mut b = SummaryBuilder::new();
        for (i, &f) in flags.iter().enumerate() {
            b.push(&rec(i as u64, f, "dog", if f { "car" } else { "dog" }));
        }
        let s = b.finish(10);
        assert_eq!((s.frames, s.analysed, s.flagged), (10, 7, 5));
        assert_eq!(s.segments.len(), 2);
        assert_eq!((s.segments[0].start_frame, s.segments[0].end_frame), (1, 2));
        assert_eq!(s.segments[1].start, Some(0.4));
        assert_eq!(s.segments[1].end, Some(0.6000000000000001));
        assert_eq!(s.corrected["car"], 5);
        assert_eq!(s.predicted["dog"], 7);
        assert!((s.mean_latency_ms - 2.0).abs() < 1e-9);
        assert!(s.lines().join("\n").contains("frames 4-6, 3 flagged"));
    }

    #[test]
    fn debouncer_starts_and_ends_segments() {
        let mut d = Debouncer::new(2, 3);
        let flags = [
            true, false, true, true, true, false, true, false, false, false, true,
        ];
        let alerts: Vec<(usize, Alert)> = flags
            .iter()
            .enumerate()
            .filter_map(|(i, &f)| d.push(&rec(i as u64, f, "dog", "car")).map(|a| (i, a)))
            .collect();
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        assert!(matches!(alerts[0], (3, Alert::Start { frame: 2, .. })));
        match &alerts[1] {
            (
                9,
                Alert::End {
                    start_frame: 2,
                    end_frame: 6,
                    flagged: 4,
                    reason,
                    corrected,
                    ..
                },
            ) => {
                assert_eq!(reason, "clean");
                assert_eq!(corrected, "car");
            }
            other => panic!("{other:?}"),
        }
        assert!(!d.active());
        assert!(d.close("stopped").is_none());
        let json = serde_json::to_value(&alerts[0].1).unwrap();
        assert_eq!(json["event"], "start");
    }

    #[test]
    fn comparison_with_truth() {
        let truth = Truth {
            truth: (0..6)
                .map(|i| TruthFrame {
                    frame: i,
                    time: i as f64 * 0.1,
                    class: "dog".into(),
                    attacked: (2..5).contains(&i),
                    prediction: "dog".into(),
                })
                .collect(),
            extra: Default::default(),
        };
        let records = vec![
            rec(0, false, "dog", "dog"),
            rec(1, true, "dog", "car"),  // false alarm
            rec(2, true, "car", "dog"),  // fooled, flagged, corrected right
            rec(3, false, "car", "car"), // fooled, missed
            rec(4, false, "dog", "dog"), // not fooled, not flagged
            rec(9, true, "dog", "dog"),  // no truth
        ];
        let c = TruthComparison::compute(&records, &truth);
        assert_eq!(
            (c.attacked, c.attacked_flagged, c.fooled, c.fooled_flagged),
            (3, 1, 2, 1)
        );
        assert_eq!((c.clean, c.false_alarms, c.unmatched), (2, 1, 1));
        assert_eq!(c.attacked_correct_label, 2);
        assert_eq!(c.detection_rate_fooled, Some(0.5));
        assert_eq!(c.false_alarm_rate, Some(0.5));
        assert!(c.lines()[0].contains("33.3%"));
        let t = timeline(&records, &truth, 80);
        assert_eq!(t[0], "  frames     0+  attacked ..###.");
        assert_eq!(t[1], "                flagged  .XX.. ");
    }

    #[test]
    fn formats_utc_times() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_714_566_896_789);
        assert_eq!(rfc3339(t), "2024-05-01T12:34:56.789Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
