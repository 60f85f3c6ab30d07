//! UnMask: guard image classifiers in video pipelines against adversarial frames by checking
//! that the parts a robust part extractor finds agree with the classifier's prediction.
//!
//! The GStreamer-agnostic core is [`knowledge`], [`similarity`], [`modelinfo`], [`model`],
//! [`preprocess`] and [`detector`]; [`attack`] holds the adversarial attacks used to evaluate
//! it, [`partsworld`], [`nets`] and [`train`] make the default models; [`meta`] carries verdicts
//! on GStreamer buffers and [`elements`] holds the GStreamer elements.

pub mod attack;
pub mod bench;
pub mod bench_env;
pub mod clip;
pub mod denormals;
pub mod detector;
pub mod device;
pub mod elements;
pub mod engine;
pub mod eval;
pub mod fork_join;
pub mod freeze;
pub mod gstlog;
pub mod knowledge;
pub mod meta;
pub mod model;
pub mod modelinfo;
pub mod nets;
pub mod partset;
pub mod partsworld;
pub mod paths;
pub mod prefetch;
pub mod preprocess;
pub mod report;
pub mod resample;
pub mod segmentation;
pub mod similarity;
pub mod testing;
pub mod train;

pub use detector::{Detector, DetectorConfig, DetectorError};
pub use knowledge::KnowledgeBase;
pub use partset::PartSet;
pub use similarity::{Verdict, jaccard};
