//! `.modelinfo` sidecars: GStreamer's ini convention (one section per tensor) plus an
//! `[unmask]` section with what UnMask needs to use the model.
//!
//! ```ini
//! [modelinfo]
//! version=1.0
//! group-id=partsworld-cs3a-baseline
//!
//! [input]
//! id=image
//! type=float32
//! dims=-1,3,64,64
//! dir=input
//! ranges=0.0,1.0;0.0,1.0;0.0,1.0
//!
//! [logits]
//! id=classification-logits
//! type=float32
//! dims=-1,3
//! dir=output
//!
//! [unmask]
//! role=classifier
//! labels=cs3a-baseline.labels
//! mean=0.5,0.5,0.5
//! std=0.25,0.25,0.25
//! threshold=0.5
//! ```
//!
//! Input `ranges` follow GStreamer: 8-bit pixels map to `min + p/255 * (max - min)` per channel.
//! `mean`/`std` (optional) are then applied as `(x - mean) / std`. Part extractors set
//! `role=part-extractor` and `output=segmentation` (`[N, P+1, h, w]`, index 0 background,
//! with `min-area` as a fraction of the map and `min-confidence`) or `output=multilabel`
//! (`[N, P]`, with `threshold` on the sigmoid).

use std::path::{Path, PathBuf};

use ini::Ini;

/// What is wrong with a modelinfo file.
#[derive(Debug, thiserror::Error)]
pub enum ModelInfoErrorKind {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("not valid ini: {0}")]
    Parse(String),
    #[error("section [{section}] lacks key \"{key}\"")]
    MissingKey { section: String, key: String },
    #[error("section [{section}], key \"{key}\": {problem}")]
    BadValue {
        section: String,
        key: String,
        problem: String,
    },
    #[error("expected exactly one {dir} tensor section, found {found}")]
    TensorCount { dir: &'static str, found: usize },
    #[error("no [unmask] section (role, labels, …)")]
    NoUnmaskSection,
}

/// A modelinfo error, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("modelinfo {}: {kind}", path.display())]
pub struct ModelInfoError {
    /// The modelinfo file.
    pub path: PathBuf,
    /// The problem.
    pub kind: ModelInfoErrorKind,
}

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    Float32,
    Uint8,
}

impl TensorType {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "float32" => Ok(Self::Float32),
            "uint8" => Ok(Self::Uint8),
            other => Err(format!("unsupported type \"{other}\" (float32 or uint8)")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::Uint8 => "uint8",
        }
    }
}

/// Direction of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

/// One tensor section.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Section name (the tensor's name in the model).
    pub name: String,
    /// Optional `id`.
    pub id: Option<String>,
    /// Element type.
    pub ty: TensorType,
    /// Dimensions, `-1` for dynamic.
    pub dims: Vec<i64>,
    /// Direction.
    pub dir: Direction,
    /// Per-channel `(min, max)` ranges (input tensors), one entry meaning "all channels".
    pub ranges: Vec<(f32, f32)>,
}

/// Memory layout of an image input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[N, C, H, W]`
    Nchw,
    /// `[N, H, W, C]`
    Nhwc,
}

/// What the model is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// The protected classifier M: outputs `[N, classes]` logits.
    Classifier,
    /// The part extractor K.
    PartExtractor(PartOutput),
}

/// How a part extractor reports parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PartOutput {
    /// Per-pixel logits `[N, P+1, h, w]` with index 0 the background. A part is found when
    /// its pixels cover at least `min_area` (fraction of the map) with mean softmax confidence
    /// of at least `min_confidence`.
    Segmentation { min_area: f32, min_confidence: f32 },
    /// Per-part logits `[N, P]`; a part is found when its sigmoid is at least `threshold`.
    MultiLabel { threshold: f32 },
}

/// Calibration of the detector written by `unmask calibrate`.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Detection threshold on the Jaccard similarity.
    pub threshold: f32,
    /// The clean false-positive rate the threshold was chosen for.
    pub target_fpr: Option<f32>,
    /// The false-positive rate measured on the calibration data.
    pub measured_fpr: Option<f32>,
    /// The part extractor used during calibration (file name).
    pub extractor: Option<String>,
    /// Thresholds per predicted class, in label order (`class-thresholds=`), each chosen for
    /// the target false-positive rate on clean images of that prediction. When present they
    /// decide instead of `threshold`.
    pub class_thresholds: Option<Vec<f32>>,
}

/// A parsed `.modelinfo` file.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The file it was read from (or will be written to).
    pub path: PathBuf,
    /// `group-id` of the `[modelinfo]` section.
    pub group_id: String,
    /// The image input.
    pub input: TensorInfo,
    /// The output.
    pub output: TensorInfo,
    /// Role and role-specific settings.
    pub role: Role,
    /// Label file, relative to the modelinfo's folder unless absolute.
    pub labels: PathBuf,
    /// Per-channel mean subtracted after `ranges`.
    pub mean: [f32; 3],
    /// Per-channel std divided after the mean.
    pub std: [f32; 3],
    /// Channel order the model expects.
    pub bgr: bool,
    /// Detector calibration (classifiers).
    pub calibration: Option<Calibration>,
}

const UNMASK: &str = "unmask";

impl ModelInfo {
    /// The sidecar path of a model file: `<model>.modelinfo`.
    pub fn sidecar_of(model: &Path) -> PathBuf {
        let mut name = model.as_os_str().to_owned();
        name.push(".modelinfo");
        PathBuf::from(name)
    }

    /// Reads and validates a modelinfo file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelInfoError> {
        let path = path.as_ref();
        let fail = |kind| ModelInfoError {
            path: path.to_owned(),
            kind,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.into()))?;
        Self::parse(&text, path).map_err(fail)
    }

    /// Parses modelinfo text; `path` is recorded as the file's location.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ModelInfoErrorKind> {
        let ini = Ini::load_from_str_noescape(text)
            .map_err(|e| ModelInfoErrorKind::Parse(e.to_string()))?;
        let group_id = ini
            .get_from(Some("modelinfo"), "group-id")
            .unwrap_or_default()
            .to_owned();
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for (name, props) in ini.iter() {
            let Some(name) = name else { continue };
            if name == "modelinfo" || name == UNMASK {
                continue;
            }
            let tensor = parse_tensor(name, props)?;
            match tensor.dir {
                Direction::Input => inputs.push(tensor),
                Direction::Output => outputs.push(tensor),
            }
        }
        let one = |mut v: Vec<TensorInfo>, dir| {
            if v.len() == 1 {
                Ok(v.remove(0))
            } else {
                Err(ModelInfoErrorKind::TensorCount {
                    dir,
                    found: v.len(),
                })
            }
        };
        let input = one(inputs, "input")?;
        let output = one(outputs, "output")?;
        let props = ini
            .section(Some(UNMASK))
            .ok_or(ModelInfoErrorKind::NoUnmaskSection)?;
        let get = |key: &str| props.get(key);
        let require = |key: &str| {
            get(key).ok_or_else(|| ModelInfoErrorKind::MissingKey {
                section: UNMASK.into(),
                key: key.into(),
            })
        };
        let bad = |key: &str, problem: String| ModelInfoErrorKind::BadValue {
            section: UNMASK.into(),
            key: key.into(),
            problem,
        };
        let float = |key: &str| -> Result<Option<f32>, ModelInfoErrorKind> {
            get(key)
                .map(|v| v.trim().parse::<f32>().map_err(|e| bad(key, e.to_string())))
                .transpose()
        };
        let triple = |key: &str, default: f32| -> Result<[f32; 3], ModelInfoErrorKind> {
            match get(key) {
                None => Ok([default; 3]),
                Some(v) => {
                    let values = parse_floats(v).map_err(|e| bad(key, e))?;
                    match values.as_slice() {
                        [x] => Ok([*x; 3]),
                        [a, b, c] => Ok([*a, *b, *c]),
                        _ => Err(bad(key, "expected 1 or 3 numbers".into())),
                    }
                }
            }
        };
        let role = match require("role")? {
            "classifier" => Role::Classifier,
            "part-extractor" => Role::PartExtractor(match require("output")? {
                "segmentation" => PartOutput::Segmentation {
                    min_area: float("min-area")?.unwrap_or(0.01),
                    min_confidence: float("min-confidence")?.unwrap_or(0.5),
                },
                "multilabel" => PartOutput::MultiLabel {
                    threshold: float("threshold")?.unwrap_or(0.5),
                },
                other => {
                    return Err(bad(
                        "output",
                        format!("\"{other}\" (expected segmentation or multilabel)"),
                    ));
                }
            }),
            other => {
                return Err(bad(
                    "role",
                    format!("\"{other}\" (expected classifier or part-extractor)"),
                ));
            }
        };
        let std = triple("std", 1.0)?;
        if std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
            return Err(bad("std", "must be positive".into()));
        }
        let mean = triple("mean", 0.0)?;
        if input.ty == TensorType::Uint8 && (mean != [0.0; 3] || std != [1.0; 3]) {
            // A uint8 input takes 0-255 pixels as they are; normalising would need floats.
            let key = if mean != [0.0; 3] { "mean" } else { "std" };
            return Err(bad(
                key,
                "a uint8 input takes 0-255 pixels; mean and std apply to float32 inputs".into(),
            ));
        }
        let calibration = match (role, float("threshold")?) {
            (Role::Classifier, Some(threshold)) => Some(Calibration {
                threshold,
                target_fpr: float("calibration-target-fpr")?,
                measured_fpr: float("calibration-measured-fpr")?,
                extractor: get("calibration-extractor").map(str::to_owned),
                class_thresholds: match get("class-thresholds") {
                    None => None,
                    Some(v) => {
                        let ts = parse_floats(v).map_err(|e| bad("class-thresholds", e))?;
                        if ts.is_empty() || ts.iter().any(|t| !(0.0..=1.0).contains(t)) {
                            return Err(bad(
                                "class-thresholds",
                                "expected one threshold in [0, 1] per label".into(),
                            ));
                        }
                        Some(ts)
                    }
                },
            }),
            _ => None,
        };
        let bgr = match get("channel-order").unwrap_or("rgb") {
            "rgb" => false,
            "bgr" => true,
            other => return Err(bad("channel-order", format!("\"{other}\" (rgb or bgr)"))),
        };
        Ok(Self {
            path: path.to_owned(),
            group_id,
            input,
            output,
            role,
            labels: PathBuf::from(require("labels")?),
            mean,
            std,
            bgr,
            calibration,
        })
    }

    /// The label file's full path.
    pub fn labels_path(&self) -> PathBuf {
        if self.labels.is_absolute() {
            self.labels.clone()
        } else {
            self.path
                .parent()
                .unwrap_or(Path::new("."))
                .join(&self.labels)
        }
    }

    /// Layout, height and width of the image input, checked.
    pub fn input_geometry(&self) -> Result<(Layout, i64, i64), String> {
        let d = &self.input.dims;
        if d.len() != 4 {
            return Err(format!("input dims {d:?}: expected 4 dimensions"));
        }
        let (layout, h, w) = match (d[1], d[3]) {
            (3, c) if c != 3 => (Layout::Nchw, d[2], d[3]),
            (_, 3) => (Layout::Nhwc, d[1], d[2]),
            _ => return Err(format!("input dims {d:?}: no 3-channel axis at 1 or 3")),
        };
        if h <= 0 || w <= 0 {
            return Err(format!("input dims {d:?}: height and width must be fixed"));
        }
        if self.input.ranges.len() != 1 && self.input.ranges.len() != 3 {
            return Err("input ranges: expected 1 or 3 min,max pairs".into());
        }
        Ok((layout, h, w))
    }

    /// The per-channel affine map from 8-bit pixels to model input: `x * scale + offset`,
    /// combining `ranges`, `mean` and `std`.
    pub fn pixel_affine(&self) -> ([f32; 3], [f32; 3]) {
        let mut scale = [0.0; 3];
        let mut offset = [0.0; 3];
        for c in 0..3 {
            let (lo, hi) = if self.input.ranges.is_empty() {
                (0.0, 255.0)
            } else {
                self.input.ranges[c.min(self.input.ranges.len() - 1)]
            };
            scale[c] = (hi - lo) / 255.0 / self.std[c];
            offset[c] = (lo - self.mean[c]) / self.std[c];
        }
        (scale, offset)
    }

    /// Renders the file's text.
    pub fn to_ini_string(&self) -> String {
        let mut s = String::new();
        s += &format!("[modelinfo]\nversion=1.0\ngroup-id={}\n\n", self.group_id);
        for t in [&self.input, &self.output] {
            s += &format!("[{}]\n", t.name);
            if let Some(id) = &t.id {
                s += &format!("id={id}\n");
            }
            s += &format!("type={}\n", t.ty.as_str());
            s += &format!("dims={}\n", join(&t.dims, ","));
            s += &format!(
                "dir={}\n",
                match t.dir {
                    Direction::Input => "input",
                    Direction::Output => "output",
                }
            );
            if !t.ranges.is_empty() {
                let r: Vec<String> = t
                    .ranges
                    .iter()
                    .map(|(a, b)| format!("{a:?},{b:?}"))
                    .collect();
                s += &format!("ranges={}\n", r.join(";"));
            }
            s += "\n";
        }
        s += &format!("[{UNMASK}]\n");
        match self.role {
            Role::Classifier => s += "role=classifier\n",
            Role::PartExtractor(PartOutput::Segmentation {
                min_area,
                min_confidence,
            }) => {
                s += &format!(
                    "role=part-extractor\noutput=segmentation\nmin-area={min_area}\nmin-confidence={min_confidence}\n"
                )
            }
            Role::PartExtractor(PartOutput::MultiLabel { threshold }) => {
                s += &format!("role=part-extractor\noutput=multilabel\nthreshold={threshold}\n")
            }
        }
        s += &format!("labels={}\n", self.labels.display());
        s += &format!(
            "mean={}\nstd={}\n",
            join(&self.mean, ","),
            join(&self.std, ",")
        );
        if self.bgr {
            s += "channel-order=bgr\n";
        }
        if let Some(c) = &self.calibration {
            s += &format!("threshold={}\n", c.threshold);
            if let Some(v) = c.target_fpr {
                s += &format!("calibration-target-fpr={v}\n");
            }
            if let Some(v) = c.measured_fpr {
                s += &format!("calibration-measured-fpr={v}\n");
            }
            if let Some(v) = &c.extractor {
                s += &format!("calibration-extractor={v}\n");
            }
            if let Some(ts) = &c.class_thresholds {
                let ts: Vec<String> = ts.iter().map(f32::to_string).collect();
                s += &format!("class-thresholds={}\n", ts.join(","));
            }
        }
        s
    }

    /// Writes the file to `self.path`.
    pub fn save(&self) -> std::io::Result<()> {
        std::fs::write(&self.path, self.to_ini_string())
    }
}

fn join<T: std::fmt::Display>(v: &[T], sep: &str) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

fn parse_floats(v: &str) -> Result<Vec<f32>, String> {
    v.split(',')
        .map(|x| x.trim().parse::<f32>().map_err(|e| format!("\"{x}\": {e}")))
        .collect()
}

fn parse_tensor(name: &str, props: &ini::Properties) -> Result<TensorInfo, ModelInfoErrorKind> {
    let missing = |key: &str| ModelInfoErrorKind::MissingKey {
        section: name.into(),
        key: key.into(),
    };
    let bad = |key: &str, problem: String| ModelInfoErrorKind::BadValue {
        section: name.into(),
        key: key.into(),
        problem,
    };
    let dir = match props.get("dir").ok_or_else(|| missing("dir"))? {
        "input" => Direction::Input,
        "output" => Direction::Output,
        other => return Err(bad("dir", format!("\"{other}\" (input or output)"))),
    };
    let ty = TensorType::parse(props.get("type").ok_or_else(|| missing("type"))?)
        .map_err(|e| bad("type", e))?;
    let dims = props
        .get("dims")
        .ok_or_else(|| missing("dims"))?
        .split(',')
        .map(|d| {
            d.trim()
                .parse::<i64>()
                .map_err(|e| format!("\"{d}\": {e}"))
                .and_then(|v| {
                    if v == -1 || v > 0 {
                        Ok(v)
                    } else {
                        Err(format!("{v} is neither -1 nor positive"))
                    }
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("dims", e))?;
    let ranges = match props.get("ranges") {
        None => Vec::new(),
        Some(r) => r
            .split(';')
            .map(|pair| match parse_floats(pair)?.as_slice() {
                [lo, hi] if lo < hi => Ok((*lo, *hi)),
                _ => Err(format!("\"{pair}\" is not a min,max pair with min < max")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("ranges", e))?,
    };
    Ok(TensorInfo {
        name: name.to_owned(),
        id: props.get("id").map(str::to_owned),
        ty,
        dims,
        dir,
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIFIER: &str = "[modelinfo]\nversion=1.0\ngroup-id=g\n\n[input]\nid=image\ntype=float32\ndims=-1,3,64,48\ndir=input\nranges=0.0,1.0;0.0,1.0;-1.0,1.0\n\n[logits]\ntype=float32\ndims=-1,3\ndir=output\n\n[unmask]\nrole=classifier\nlabels=m.labels\nmean=0.5,0.5,0.5\nstd=0.25\nthreshold=0.4\ncalibration-target-fpr=0.05\n";

    fn parse(text: &str) -> Result<ModelInfo, ModelInfoErrorKind> {
        ModelInfo::parse(text, Path::new("/models/m.pt.modelinfo"))
    }

    #[test]
    fn parses_classifier() {
        let mi = parse(CLASSIFIER).unwrap();
        assert_eq!(mi.group_id, "g");
        assert_eq!(mi.input.dims, [-1, 3, 64, 48]);
        assert_eq!(mi.input.ranges, [(0.0, 1.0), (0.0, 1.0), (-1.0, 1.0)]);
        assert_eq!(mi.output.dims, [-1, 3]);
        assert_eq!(mi.role, Role::Classifier);
        assert_eq!(mi.labels_path(), Path::new("/models/m.labels"));
        assert_eq!(mi.std, [0.25; 3]);
        assert_eq!(mi.input_geometry().unwrap(), (Layout::Nchw, 64, 48));
        let c = mi.calibration.clone().unwrap();
        assert_eq!(c.threshold, 0.4);
        assert_eq!(c.target_fpr, Some(0.05));
        assert_eq!(c.class_thresholds, None);
    }

    #[test]
    fn class_thresholds_parse_round_trip_and_are_checked() {
        let text = CLASSIFIER.replace(
            "threshold=0.4\n",
            "threshold=0.4\nclass-thresholds=0.25,0.5,0.75\n",
        );
        let mi = parse(&text).unwrap();
        let c = mi.calibration.clone().unwrap();
        assert_eq!(c.class_thresholds, Some(vec![0.25, 0.5, 0.75]));
        assert_eq!(parse(&mi.to_ini_string()).unwrap(), mi);
        for bad in ["0.25,1.5,0.75", "", "a,b"] {
            let text = CLASSIFIER.replace(
                "threshold=0.4\n",
                &format!("threshold=0.4\nclass-thresholds={bad}\n"),
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("class-thresholds"), "{bad}: {err}");
        }
    }

    #[test]
    fn pixel_affine_combines_ranges_mean_std() {
        let mi = parse(CLASSIFIER).unwrap();
        let (scale, offset) = mi.pixel_affine();
        // channel 0: p/255 in [0,1], then (x-0.5)/0.25
        assert!((255.0 * scale[0] + offset[0] - 2.0).abs() < 1e-5);
        assert!((offset[0] + 2.0).abs() < 1e-6);
        // channel 2: [-1,1] then (x-0.5)/0.25: 0 -> -6, 255 -> 2
        assert!((offset[2] + 6.0).abs() < 1e-5);
        assert!((255.0 * scale[2] + offset[2] - 2.0).abs() < 1e-5);
    }

    #[test]
    fn round_trips() {
        let mi = parse(CLASSIFIER).unwrap();
        let again = parse(&mi.to_ini_string()).unwrap();
        assert_eq!(again, mi);
    }

    #[test]
    fn parses_part_extractors() {
        let seg = CLASSIFIER.replace(
            "role=classifier",
            "role=part-extractor\noutput=segmentation\nmin-area=0.02\nmin-confidence=0.6",
        );
        let mi = parse(&seg).unwrap();
        assert_eq!(
            mi.role,
            Role::PartExtractor(PartOutput::Segmentation {
                min_area: 0.02,
                min_confidence: 0.6
            })
        );
        assert!(mi.calibration.is_none());
        let ml = CLASSIFIER.replace("role=classifier", "role=part-extractor\noutput=multilabel");
        let mi = parse(&ml).unwrap();
        assert_eq!(
            mi.role,
            Role::PartExtractor(PartOutput::MultiLabel { threshold: 0.4 })
        );
        assert_eq!(parse(&mi.to_ini_string()).unwrap(), mi);
    }

    #[test]
    fn nhwc_geometry() {
        let mi = parse(&CLASSIFIER.replace("dims=-1,3,64,48", "dims=1,32,16,3")).unwrap();
        assert_eq!(mi.input_geometry().unwrap(), (Layout::Nhwc, 32, 16));
        let mi = parse(&CLASSIFIER.replace("dims=-1,3,64,48", "dims=1,4,16,4")).unwrap();
        assert!(mi.input_geometry().is_err());
        let mi = parse(&CLASSIFIER.replace("dims=-1,3,64,48", "dims=-1,3,-1,48")).unwrap();
        assert!(mi.input_geometry().is_err());
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn rejects_bad_files() {
        use ModelInfoErrorKind as E;
        type Check = fn(&E) -> bool;
        let cases: Vec<(String, Check)> = vec![
            (CLASSIFIER.replace("[unmask]", "[other]"), |e| {
                matches!(
                    e,
                    E::TensorCount { .. } | E::NoUnmaskSection | E::MissingKey { .. }
                )
            }),
            (
                CLASSIFIER.replace("role=classifier", "role=oracle"),
                |e| matches!(e, E::BadValue { key, .. } if key == "role"),
            ),
            (
                CLASSIFIER.replace("labels=m.labels\n", ""),
                |e| matches!(e, E::MissingKey { key, .. } if key == "labels"),
            ),
            (
                CLASSIFIER.replace("type=float32\ndims=-1,3\n", "type=float64\ndims=-1,3\n"),
                |e| matches!(e, E::BadValue { key, .. } if key == "type"),
            ),
            (
                CLASSIFIER.replace("dims=-1,3\n", "dims=-1,x\n"),
                |e| matches!(e, E::BadValue { key, .. } if key == "dims"),
            ),
            (
                CLASSIFIER.replace("dims=-1,3\n", "dims=-1,0\n"),
                |e| matches!(e, E::BadValue { key, .. } if key == "dims"),
            ),
            (
                CLASSIFIER.replace("ranges=0.0,1.0;", "ranges=1.0,0.0;"),
                |e| matches!(e, E::BadValue { key, .. } if key == "ranges"),
            ),
            (CLASSIFIER.replace("dir=output", "dir=input"), |e| {
                matches!(
                    e,
                    E::TensorCount {
                        dir: "input",
                        found: 2
                    }
                )
            }),
            (
                CLASSIFIER.replace("std=0.25", "std=0"),
                |e| matches!(e, E::BadValue { key, .. } if key == "std"),
            ),
            (
                CLASSIFIER.replace("mean=0.5,0.5,0.5", "mean=1,2"),
                |e| matches!(e, E::BadValue { key, .. } if key == "mean"),
            ),
            (
                CLASSIFIER.replace("threshold=0.4", "threshold=high"),
                |e| matches!(e, E::BadValue { key, .. } if key == "threshold"),
            ),
            (
                CLASSIFIER.replace("role=classifier", "role=part-extractor\noutput=boxes"),
                |e| matches!(e, E::BadValue { key, .. } if key == "output"),
            ),
            ("[input\n".to_owned(), |e| matches!(e, E::Parse(_))),
        ];
        for (text, check) in cases {
            let err = parse(&text).unwrap_err();
            assert!(check(&err), "unexpected error {err:?} for\n{text}");
        }
    }

    #[test]
    fn load_error_names_the_file() {
        let err = ModelInfo::load("/nonexistent/m.pt.modelinfo").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/m.pt.modelinfo"));
    }
}
