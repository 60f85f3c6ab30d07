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

/// Class set whose classifier the element and CLI use by default.
pub const DEFAULT_CLASS_SET: &str = "CS5a";
/// Classifier variant used by default (`baseline` or `denoise`).
pub const DEFAULT_VARIANT: &str = "denoise";

/// The shipped parts-world knowledge base.
pub fn default_knowledge() -> PathBuf {
    partsworld_dir().join("knowledge.json")
}

/// The shipped part extractor K.
pub fn default_extractor() -> PathBuf {
    partsworld_dir().join("k-parts.pt")
}

/// The shipped classifier M for a class set and variant, e.g. `m-cs5a-denoise.pt`.
pub fn default_classifier(class_set: &str, variant: &str) -> PathBuf {
    partsworld_dir().join(format!(
        "m-{}-{}.pt",
        class_set.to_ascii_lowercase(),
        variant.to_ascii_lowercase()
    ))
}
