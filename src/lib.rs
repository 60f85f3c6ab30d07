//! UnMask: guard image classifiers in video pipelines against adversarial frames by checking
//! that the parts a robust part extractor finds agree with the classifier's prediction.
//!
//! The GStreamer-agnostic core is [`knowledge`], [`similarity`], [`modelinfo`], [`model`],
//! [`preprocess`] and [`detector`]; [`attack`] holds the adversarial attacks used to evaluate it.

pub mod attack;
pub mod detector;
pub mod device;
pub mod elements;
pub mod knowledge;
pub mod model;
pub mod modelinfo;
pub mod partset;
pub mod paths;
pub mod preprocess;
pub mod similarity;
pub mod testing;

pub use detector::{Detector, DetectorConfig, DetectorError};
pub use knowledge::KnowledgeBase;
pub use partset::PartSet;
pub use similarity::{Verdict, jaccard};
