//! The knowledge base: classes, the part vocabulary and each class's expected parts.
//!
//! Stored as JSON:
//!
//! ```json
//! {
//!   "name": "pascal-part",
//!   "parts": ["wheel", "saddle"],
//!   "classes": [{ "name": "bicycle", "parts": ["wheel", "saddle"] }],
//!   "class_sets": [{ "name": "two-wheelers", "classes": ["bicycle"] }]
//! }
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::partset::PartSet;

/// What is wrong with a knowledge base file.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeErrorKind {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the part vocabulary is empty")]
    EmptyVocabulary,
    #[error("part \"{0}\" is listed twice in the vocabulary")]
    DuplicatePart(String),
    #[error("the knowledge base has no classes")]
    NoClasses,
    #[error("class \"{0}\" is defined twice")]
    DuplicateClass(String),
    #[error("class \"{0}\" has no parts")]
    ClassWithoutParts(String),
    #[error("class \"{class}\" lists part \"{part}\" twice")]
    DuplicateClassPart { class: String, part: String },
    #[error("class \"{class}\" uses unknown part \"{part}\" (not in the vocabulary)")]
    UnknownPart { class: String, part: String },
    #[error("class set \"{set}\" names unknown class \"{class}\"")]
    UnknownClassInSet { set: String, class: String },
    #[error("class set \"{0}\" is defined twice")]
    DuplicateClassSet(String),
    #[error("class set \"{0}\" is empty")]
    EmptyClassSet(String),
    #[error("class set \"{set}\" lists class \"{class}\" twice")]
    DuplicateClassInSet { set: String, class: String },
}

/// A knowledge base error, naming the file it came from.
#[derive(Debug, thiserror::Error)]
#[error("knowledge base {}: {kind}", origin.display())]
pub struct KnowledgeError {
    /// The file (or other origin) of the knowledge base.
    pub origin: PathBuf,
    /// The problem.
    pub kind: KnowledgeErrorKind,
}

/// Errors when looking up classes, parts or class sets in a valid knowledge base.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("unknown class \"{0}\"")]
    UnknownClass(String),
    #[error("unknown class set \"{name}\" (known: {known})")]
    UnknownClassSet { name: String, known: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassFile {
    name: String,
    parts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassSetFile {
    name: String,
    classes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnowledgeFile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    parts: Vec<String>,
    classes: Vec<ClassFile>,
    #[serde(default)]
    class_sets: Vec<ClassSetFile>,
}

/// A named subset of a knowledge base's classes (e.g. the paper's CS3a).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassSet {
    /// Name, e.g. `CS3a`.
    pub name: String,
    /// Class names in the order given.
    pub classes: Vec<String>,
}

/// A validated knowledge base.
#[derive(Debug, Clone)]
pub struct KnowledgeBase {
    name: String,
    parts: Vec<String>,
    classes: Vec<String>,
    expected: Vec<PartSet>,
    class_sets: Vec<ClassSet>,
}

impl KnowledgeBase {
    /// Loads and validates a knowledge base JSON file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KnowledgeError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| KnowledgeError {
            origin: path.to_owned(),
            kind: e.into(),
        })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates a knowledge base from JSON text; `origin` names it in errors.
    pub fn from_json(text: &str, origin: impl AsRef<Path>) -> Result<Self, KnowledgeError> {
        let fail = |kind| KnowledgeError {
            origin: origin.as_ref().to_owned(),
            kind,
        };
        let file: KnowledgeFile =
            serde_json::from_str(text).map_err(|e| fail(KnowledgeErrorKind::Json(e)))?;
        Self::validate(file).map_err(fail)
    }

    fn validate(file: KnowledgeFile) -> Result<Self, KnowledgeErrorKind> {
        use KnowledgeErrorKind as E;
        if file.parts.is_empty() {
            return Err(E::EmptyVocabulary);
        }
        let mut seen = HashSet::new();
        for p in &file.parts {
            if !seen.insert(p.as_str()) {
                return Err(E::DuplicatePart(p.clone()));
            }
        }
        if file.classes.is_empty() {
            return Err(E::NoClasses);
        }
        let mut class_names = HashSet::new();
        let mut expected = Vec::with_capacity(file.classes.len());
        for c in &file.classes {
            if !class_names.insert(c.name.as_str()) {
                return Err(E::DuplicateClass(c.name.clone()));
            }
            if c.parts.is_empty() {
                return Err(E::ClassWithoutParts(c.name.clone()));
            }
            let mut set = PartSet::new();
            for p in &c.parts {
                let index =
                    file.parts
                        .iter()
                        .position(|v| v == p)
                        .ok_or_else(|| E::UnknownPart {
                            class: c.name.clone(),
                            part: p.clone(),
                        })?;
                if !set.insert(index) {
                    return Err(E::DuplicateClassPart {
                        class: c.name.clone(),
                        part: p.clone(),
                    });
                }
            }
            expected.push(set);
        }
        let mut set_names = HashSet::new();
        for s in &file.class_sets {
            if !set_names.insert(s.name.as_str()) {
                return Err(E::DuplicateClassSet(s.name.clone()));
            }
            if s.classes.is_empty() {
                return Err(E::EmptyClassSet(s.name.clone()));
            }
            let mut members = HashSet::new();
            for c in &s.classes {
                if !class_names.contains(c.as_str()) {
                    return Err(E::UnknownClassInSet {
                        set: s.name.clone(),
                        class: c.clone(),
                    });
                }
                if !members.insert(c.as_str()) {
                    return Err(E::DuplicateClassInSet {
                        set: s.name.clone(),
                        class: c.clone(),
                    });
                }
            }
        }
        Ok(Self {
            name: file.name,
            parts: file.parts,
            classes: file.classes.into_iter().map(|c| c.name).collect(),
            expected,
            class_sets: file
                .class_sets
                .into_iter()
                .map(|s| ClassSet {
                    name: s.name,
                    classes: s.classes,
                })
                .collect(),
        })
    }

    /// The knowledge base's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The part vocabulary.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// Class names, in file order (class indices refer to this order).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The class sets defined in the file.
    pub fn class_sets(&self) -> &[ClassSet] {
        &self.class_sets
    }

    /// Index of a class by name.
    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == name)
    }

    /// Index of a part by name.
    pub fn part_index(&self, name: &str) -> Option<usize> {
        self.parts.iter().position(|p| p == name)
    }

    /// The parts expected for class `class`.
    pub fn expected_parts(&self, class: usize) -> &PartSet {
        &self.expected[class]
    }

    /// Part names of a set, in vocabulary order.
    pub fn part_names(&self, set: &PartSet) -> Vec<String> {
        set.iter()
            .filter_map(|i| self.parts.get(i).cloned())
            .collect()
    }

    /// Builds a part set from names; unknown names are an error.
    pub fn part_set<S: AsRef<str>>(&self, names: &[S]) -> Result<PartSet, String> {
        names
            .iter()
            .map(|n| {
                self.part_index(n.as_ref())
                    .ok_or_else(|| format!("unknown part \"{}\"", n.as_ref()))
            })
            .collect()
    }

    /// Looks up a class set by name (case-insensitive).
    pub fn class_set(&self, name: &str) -> Result<&ClassSet, LookupError> {
        self.class_sets
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| LookupError::UnknownClassSet {
                name: name.to_owned(),
                known: self
                    .class_sets
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// A knowledge base holding only `classes` (in the order given), with the same part
    /// vocabulary. Class sets that are not subsets of the restriction are dropped.
    pub fn restrict<S: AsRef<str>>(&self, classes: &[S]) -> Result<Self, LookupError> {
        let mut names = Vec::with_capacity(classes.len());
        let mut expected = Vec::with_capacity(classes.len());
        for c in classes {
            let c = c.as_ref();
            let i = self
                .class_index(c)
                .ok_or_else(|| LookupError::UnknownClass(c.to_owned()))?;
            if !names.iter().any(|n| n == c) {
                names.push(c.to_owned());
                expected.push(self.expected[i].clone());
            }
        }
        let class_sets = self
            .class_sets
            .iter()
            .filter(|s| s.classes.iter().all(|c| names.contains(c)))
            .cloned()
            .collect();
        Ok(Self {
            name: self.name.clone(),
            parts: self.parts.clone(),
            classes: names,
            expected,
            class_sets,
        })
    }

    /// A knowledge base restricted to the named class set.
    pub fn restrict_to_class_set(&self, name: &str) -> Result<Self, LookupError> {
        let set = self.class_set(name)?.classes.clone();
        self.restrict(&set)
    }

    /// Serialises back to the JSON file format.
    pub fn to_json(&self) -> String {
        let file = KnowledgeFile {
            name: self.name.clone(),
            description: String::new(),
            parts: self.parts.clone(),
            classes: self
                .classes
                .iter()
                .zip(&self.expected)
                .map(|(name, set)| ClassFile {
                    name: name.clone(),
                    parts: self.part_names(set),
                })
                .collect(),
            class_sets: self
                .class_sets
                .iter()
                .map(|s| ClassSetFile {
                    name: s.name.clone(),
                    classes: s.classes.clone(),
                })
                .collect(),
        };
        serde_json::to_string_pretty(&file).expect("knowledge base serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"{
        "name": "small",
        "parts": ["wheel", "saddle", "headlight", "body", "cap"],
        "classes": [
            {"name": "bicycle", "parts": ["wheel", "saddle"]},
            {"name": "motorbike", "parts": ["wheel", "saddle", "headlight"]},
            {"name": "bottle", "parts": ["body", "cap"]}
        ],
        "class_sets": [{"name": "two", "classes": ["bicycle", "bottle"]}]
    }"#;

    fn kind_of(text: &str) -> KnowledgeErrorKind {
        KnowledgeBase::from_json(text, "test.json")
            .unwrap_err()
            .kind
    }

    #[test]
    fn loads_classes_parts_and_sets() {
        let kb = KnowledgeBase::from_json(SMALL, "small.json").unwrap();
        assert_eq!(kb.name(), "small");
        assert_eq!(kb.classes(), ["bicycle", "motorbike", "bottle"]);
        assert_eq!(kb.class_index("bottle"), Some(2));
        assert_eq!(
            kb.part_names(kb.expected_parts(1)),
            ["wheel", "saddle", "headlight"]
        );
        assert_eq!(kb.class_set("TWO").unwrap().classes, ["bicycle", "bottle"]);
    }

    #[test]
    fn restriction_keeps_vocabulary_and_order() {
        let kb = KnowledgeBase::from_json(SMALL, "small.json").unwrap();
        let r = kb.restrict_to_class_set("two").unwrap();
        assert_eq!(r.classes(), ["bicycle", "bottle"]);
        assert_eq!(r.parts().len(), 5);
        assert_eq!(r.part_names(r.expected_parts(1)), ["body", "cap"]);
        assert!(matches!(
            kb.restrict(&["plane"]),
            Err(LookupError::UnknownClass(_))
        ));
        assert!(matches!(
            kb.restrict_to_class_set("nope"),
            Err(LookupError::UnknownClassSet { .. })
        ));
    }

    #[test]
    fn round_trips_through_json() {
        let kb = KnowledgeBase::from_json(SMALL, "small.json").unwrap();
        let again = KnowledgeBase::from_json(&kb.to_json(), "again.json").unwrap();
        assert_eq!(again.classes(), kb.classes());
        for c in 0..kb.classes().len() {
            assert_eq!(again.expected_parts(c), kb.expected_parts(c));
        }
        assert_eq!(again.class_sets(), kb.class_sets());
    }

    #[test]
    fn error_names_the_file() {
        let err = KnowledgeBase::load("/nonexistent/kb.json").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kb.json"), "{err}");
        assert!(matches!(err.kind, KnowledgeErrorKind::Io(_)));
    }

    #[test]
    fn rejects_malformed_json() {
        assert!(matches!(
            kind_of("{\"parts\": ["),
            KnowledgeErrorKind::Json(_)
        ));
        assert!(matches!(
            kind_of(r#"{"parts": ["a"], "classes": [], "extra": 1}"#),
            KnowledgeErrorKind::Json(_)
        ));
    }

    #[test]
    fn rejects_empty_vocabulary() {
        let text = r#"{"parts": [], "classes": [{"name": "c", "parts": ["a"]}]}"#;
        assert!(matches!(kind_of(text), KnowledgeErrorKind::EmptyVocabulary));
    }

    #[test]
    fn rejects_duplicate_part() {
        let text = r#"{"parts": ["a", "a"], "classes": [{"name": "c", "parts": ["a"]}]}"#;
        assert!(matches!(kind_of(text), KnowledgeErrorKind::DuplicatePart(p) if p == "a"));
    }

    #[test]
    fn rejects_no_classes() {
        assert!(matches!(
            kind_of(r#"{"parts": ["a"], "classes": []}"#),
            KnowledgeErrorKind::NoClasses
        ));
    }

    #[test]
    fn rejects_duplicate_class() {
        let text = r#"{"parts": ["a"], "classes": [{"name": "c", "parts": ["a"]}, {"name": "c", "parts": ["a"]}]}"#;
        assert!(matches!(kind_of(text), KnowledgeErrorKind::DuplicateClass(c) if c == "c"));
    }

    #[test]
    fn rejects_class_without_parts() {
        let text = r#"{"parts": ["a"], "classes": [{"name": "c", "parts": []}]}"#;
        assert!(matches!(kind_of(text), KnowledgeErrorKind::ClassWithoutParts(c) if c == "c"));
    }

    #[test]
    fn rejects_unknown_and_duplicate_class_parts() {
        let text = r#"{"parts": ["a"], "classes": [{"name": "c", "parts": ["a", "zz"]}]}"#;
        let err = KnowledgeBase::from_json(text, "kb.json").unwrap_err();
        assert!(err.to_string().contains("unknown part \"zz\""), "{err}");
        let text = r#"{"parts": ["a"], "classes": [{"name": "c", "parts": ["a", "a"]}]}"#;
        assert!(matches!(
            kind_of(text),
            KnowledgeErrorKind::DuplicateClassPart { .. }
        ));
    }

    #[test]
    fn rejects_bad_class_sets() {
        let base = r#"{"parts": ["a"], "classes": [{"name": "c", "parts": ["a"]}], "class_sets": "#;
        let unknown = format!(r#"{base}[{{"name": "s", "classes": ["x"]}}]}}"#);
        assert!(matches!(
            kind_of(&unknown),
            KnowledgeErrorKind::UnknownClassInSet { .. }
        ));
        let twice = format!(
            r#"{base}[{{"name": "s", "classes": ["c"]}}, {{"name": "s", "classes": ["c"]}}]}}"#
        );
        assert!(matches!(
            kind_of(&twice),
            KnowledgeErrorKind::DuplicateClassSet(_)
        ));
        let empty = format!(r#"{base}[{{"name": "s", "classes": []}}]}}"#);
        assert!(matches!(
            kind_of(&empty),
            KnowledgeErrorKind::EmptyClassSet(_)
        ));
        let dup = format!(r#"{base}[{{"name": "s", "classes": ["c", "c"]}}]}}"#);
        assert!(matches!(
            kind_of(&dup),
            KnowledgeErrorKind::DuplicateClassInSet { .. }
        ));
    }
}
