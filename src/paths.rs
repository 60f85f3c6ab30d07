//! Where the shipped models and knowledge bases are found.

use std::path::PathBuf;

/// Environment variable naming the models folder (overrides the built-in location).
pub const MODELS_DIR_ENV: &str = "UNMASK_MODELS_DIR";

/// The models folder: `$UNMASK_MODELS_DIR`, else the `models/` folder of the source tree this
/// was built from.
pub fn models_dir() -> PathBuf {
    std::env::var_os(MODELS_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models")))
}

/// The parts-world folder with the default models and knowledge base.
pub fn partsworld_dir() -> PathBuf {
    models_dir().join("partsworld")
}
