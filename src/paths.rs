//! Where the shipped models and knowledge bases are found.
//!
//! The models folder is, in order of preference:
//! 1. `$UNMASK_MODELS_DIR`;
//! 2. next to the loaded GStreamer plugin ([`set_plugin_file`]): `<plugin dir>/../../models`
//!    for a cargo target folder (`target/debug/libgstunmask.so`), or
//!    `<prefix>/share/unmask/models` for an installed plugin
//!    (`<prefix>/lib[/<triplet>]/gstreamer-1.0/libgstunmask.so`);
//! 3. next to the running executable: `<exe dir>/../../models` (cargo target folder) or
//!    `<prefix>/share/unmask/models` (`<prefix>/bin/unmask`);
//! 4. the `models/` folder of the source tree this was built from.
//!
//! The first candidate that exists wins; if none does, the last one is returned.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable naming the models folder (overrides the built-in location).
pub const MODELS_DIR_ENV: &str = "UNMASK_MODELS_DIR";

static PLUGIN_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Records the file the GStreamer plugin was loaded from (done at plugin init).
pub fn set_plugin_file(path: impl Into<PathBuf>) {
    let _ = PLUGIN_FILE.set(path.into());
}

/// The file the GStreamer plugin was loaded from, if known.
pub fn plugin_file() -> Option<&'static Path> {
    PLUGIN_FILE.get().map(PathBuf::as_path)
}

/// Models folders that may sit next to a binary (plugin or executable) in `dir`.
fn candidates_near(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    // Cargo target folder: <repo>/target/<profile>/<binary> -> <repo>/models.
    if let Some(repo) = dir.parent().and_then(Path::parent) {
        out.push(repo.join("models"));
    }
    // Installed: <prefix>/{bin,lib,lib/<triplet>,lib/gstreamer-1.0,lib/<triplet>/gstreamer-1.0}.
    for up in 1..=3 {
        if let Some(prefix) = dir.ancestors().nth(up) {
            out.push(prefix.join("share").join("unmask").join("models"));
        }
    }
    out
}

/// Every place the models folder is looked for, best first (see the module docs).
pub fn models_dir_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os(MODELS_DIR_ENV).filter(|d| !d.is_empty()) {
        out.push(PathBuf::from(dir));
    }
    if let Some(dir) = plugin_file().and_then(Path::parent) {
        out.extend(candidates_near(dir));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(Path::parent)
    {
        out.extend(candidates_near(dir));
    }
    out.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models"
    )));
    out
}

/// The models folder: the first existing candidate (see the module docs).
pub fn models_dir() -> PathBuf {
    let mut candidates = models_dir_candidates();
    if let Some(env) = std::env::var_os(MODELS_DIR_ENV).filter(|d| !d.is_empty()) {
        // An explicit setting is used even if it does not exist, so errors name it.
        return PathBuf::from(env);
    }
    let fallback = candidates.pop().expect("at least the source tree");
    candidates
        .into_iter()
        .find(|d| d.is_dir())
        .unwrap_or(fallback)
}

/// The parts-world folder with the default models and knowledge base.
pub fn partsworld_dir() -> PathBuf {
    models_dir().join("partsworld")
}

/// Class set whose classifier the element and CLI use by default.
pub const DEFAULT_CLASS_SET: &str = "CS5a";
/// Classifier variant used by default (`baseline` or `denoise`).
pub const DEFAULT_VARIANT: &str = "denoise";

/// File name of the parts-world knowledge base in a models folder.
pub const KNOWLEDGE_FILE: &str = "knowledge.json";
/// File name of the part extractor K in a models folder.
pub const EXTRACTOR_FILE: &str = "k-parts.pt";

/// File name of the classifier M for a class set and variant, e.g. `m-cs5a-denoise.pt`.
pub fn classifier_file(class_set: &str, variant: &str) -> String {
    format!(
        "m-{}-{}.pt",
        class_set.to_ascii_lowercase(),
        variant.to_ascii_lowercase()
    )
}

/// The shipped parts-world knowledge base.
pub fn default_knowledge() -> PathBuf {
    partsworld_dir().join(KNOWLEDGE_FILE)
}

/// The shipped part extractor K.
pub fn default_extractor() -> PathBuf {
    partsworld_dir().join(EXTRACTOR_FILE)
}

/// The shipped classifier M for a class set and variant, e.g. `m-cs5a-denoise.pt`.
pub fn default_classifier(class_set: &str, variant: &str) -> PathBuf {
    partsworld_dir().join(classifier_file(class_set, variant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_target_dirs_and_prefixes() {
        let c = candidates_near(Path::new("/src/repo/target/debug"));
        assert_eq!(c[0], Path::new("/src/repo/models"));
        let c = candidates_near(Path::new("/usr/lib/x86_64-linux-gnu/gstreamer-1.0"));
        assert!(
            c.contains(&PathBuf::from("/usr/share/unmask/models")),
            "{c:?}"
        );
        let c = candidates_near(Path::new("/opt/unmask/bin"));
        assert!(c.contains(&PathBuf::from("/opt/unmask/share/unmask/models")));
    }

    #[test]
    fn source_tree_is_the_last_resort() {
        let c = models_dir_candidates();
        assert_eq!(
            c.last().unwrap(),
            &PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models"))
        );
    }
}
