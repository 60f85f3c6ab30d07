//! Jaccard similarity, the detection decision, realignment and the verdict they produce.

use serde::{Deserialize, Serialize};

use crate::knowledge::KnowledgeBase;
use crate::partset::PartSet;

/// Label used when realignment finds no class whose parts match the parts found.
pub const UNKNOWN_CLASS: &str = "unknown";

/// Jaccard similarity `|A∩B| / |A∪B|`, defined as 0 when both sets are empty.
pub fn jaccard(a: &PartSet, b: &PartSet) -> f32 {
    let union = a.union_len(b);
    if union == 0 {
        0.0
    } else {
        a.intersection_len(b) as f32 / union as f32
    }
}

/// The detection decision: adversarial when the similarity is below the threshold.
pub fn is_adversarial(similarity: f32, threshold: f32) -> bool {
    similarity < threshold
}

/// Detection thresholds: one for every prediction, or one per predicted class.
///
/// Classes differ in how many of their expected parts an image shows (a side view of a train
/// shows 3 of its 7 parts, a person most of 13), so clean similarities differ by class. A
/// threshold per predicted class, each calibrated for the same false-positive rate on clean
/// images of that prediction, flags attacks into a class whose clean images match well
/// (`person` -> `dog`) without flagging every clean image of a class that never matches well.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Thresholds {
    /// The same threshold whatever the prediction (the original UnMask).
    Global(f32),
    /// `per_class[p]` for prediction `p` (classes in knowledge-base order).
    PerClass(Vec<f32>),
}

impl Thresholds {
    /// The threshold for an image predicted as `class` (the last one for an out-of-range
    /// class, which a validated detector never produces).
    pub fn for_class(&self, class: usize) -> f32 {
        match self {
            Self::Global(t) => *t,
            Self::PerClass(ts) => ts.get(class).or(ts.last()).copied().unwrap_or(0.0),
        }
    }

    /// Whether every threshold is in `[0, 1]` (and there is at least one).
    pub fn is_valid(&self) -> bool {
        let ok = |t: &f32| (0.0..=1.0).contains(t);
        match self {
            Self::Global(t) => ok(t),
            Self::PerClass(ts) => !ts.is_empty() && ts.iter().all(ok),
        }
    }

    /// Human-readable: `0.35` or `car=0.40 person=0.55 …` with the class names.
    pub fn describe(&self, classes: &[String]) -> String {
        match self {
            Self::Global(t) => format!("{t:.3}"),
            Self::PerClass(ts) => ts
                .iter()
                .zip(classes)
                .map(|(t, c)| format!("{c}={t:.3}"))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// The outcome of realignment: the best-matching class, if any matches at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Realignment {
    /// Index of the best class, `None` ("unknown") when no class shares a part with the parts found.
    pub class: Option<usize>,
    /// Jaccard similarity of that class's expected parts to the parts found (0 for unknown).
    pub similarity: f32,
}

/// Finds the class whose expected parts best match `found`.
///
/// Ties are broken deterministically: the `preferred` class (normally the classifier's
/// prediction) wins if it is among the best; otherwise the class listed first in the
/// knowledge base wins. When the best similarity is 0, the result is "unknown".
pub fn realign(kb: &KnowledgeBase, found: &PartSet, preferred: Option<usize>) -> Realignment {
    let scores: Vec<f32> = (0..kb.classes().len())
        .map(|c| jaccard(kb.expected_parts(c), found))
        .collect();
    let best = scores.iter().copied().fold(0.0f32, f32::max);
    if best <= 0.0 {
        return Realignment {
            class: None,
            similarity: 0.0,
        };
    }
    let class = match preferred {
        Some(p) if scores.get(p) == Some(&best) => p,
        _ => scores.iter().position(|&s| s == best).expect("best exists"),
    };
    Realignment {
        class: Some(class),
        similarity: best,
    }
}

/// UnMask's verdict on one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Class index predicted by the classifier (into the knowledge base's classes).
    pub predicted_index: usize,
    /// Class name predicted by the classifier.
    pub predicted: String,
    /// Softmax probability of the predicted class.
    pub confidence: f32,
    /// Parts reported by the part extractor, in vocabulary order.
    pub parts: Vec<String>,
    /// Jaccard similarity of the parts found to the predicted class's expected parts.
    pub similarity: f32,
    /// The decision threshold in use.
    pub threshold: f32,
    /// Whether the image is flagged adversarial (`similarity < threshold`).
    pub adversarial: bool,
    /// The final label: the realigned class when flagged, the prediction otherwise
    /// (`"unknown"` when flagged and no class matches).
    pub corrected: String,
    /// Index of the corrected class, `None` for unknown.
    pub corrected_index: Option<usize>,
    /// Jaccard similarity of the corrected class's expected parts to the parts found.
    pub corrected_similarity: f32,
}

impl Verdict {
    /// Decides on one image from the classifier's prediction and the parts found.
    pub fn decide(
        kb: &KnowledgeBase,
        predicted: usize,
        confidence: f32,
        found: &PartSet,
        threshold: f32,
    ) -> Self {
        let similarity = jaccard(kb.expected_parts(predicted), found);
        let adversarial = is_adversarial(similarity, threshold);
        let (corrected_index, corrected_similarity) = if adversarial {
            let r = realign(kb, found, Some(predicted));
            (r.class, r.similarity)
        } else {
            (Some(predicted), similarity)
        };
        Self {
            predicted_index: predicted,
            predicted: kb.classes()[predicted].clone(),
            confidence,
            parts: kb.part_names(found),
            similarity,
            threshold,
            adversarial,
            corrected: corrected_index
                .map_or_else(|| UNKNOWN_CLASS.to_owned(), |c| kb.classes()[c].clone()),
            corrected_index,
            corrected_similarity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kb() -> KnowledgeBase {
        KnowledgeBase::from_json(
            r#"{"parts": ["wheel", "saddle", "headlight", "body", "cap", "screen"],
                "classes": [
                  {"name": "bicycle", "parts": ["wheel", "saddle"]},
                  {"name": "motorbike", "parts": ["wheel", "saddle", "headlight"]},
                  {"name": "bottle", "parts": ["body", "cap"]},
                  {"name": "unicycle", "parts": ["wheel", "saddle"]}
                ]}"#,
            "test.json",
        )
        .unwrap()
    }

    fn set(kb: &KnowledgeBase, names: &[&str]) -> PartSet {
        kb.part_set(names).unwrap()
    }

    #[test]
    fn jaccard_known_values() {
        let a = PartSet::from_indices([0, 1]);
        let b = PartSet::from_indices([0, 1, 2]);
        assert_eq!(jaccard(&a, &b), 2.0 / 3.0);
        assert_eq!(jaccard(&a, &PartSet::from_indices([3])), 0.0);
        assert_eq!(jaccard(&PartSet::new(), &PartSet::new()), 0.0);
        assert_eq!(jaccard(&a, &a), 1.0);
    }

    #[test]
    fn per_class_thresholds_follow_the_prediction() {
        let t = Thresholds::PerClass(vec![0.2, 0.6]);
        assert_eq!(t.for_class(0), 0.2);
        assert_eq!(t.for_class(1), 0.6);
        assert_eq!(Thresholds::Global(0.4).for_class(7), 0.4);
        assert!(t.is_valid() && !Thresholds::PerClass(vec![]).is_valid());
        assert!(!Thresholds::PerClass(vec![0.3, 1.5]).is_valid());
        let names = ["car".to_owned(), "dog".to_owned()];
        assert_eq!(t.describe(&names), "car=0.200 dog=0.600");
    }

    #[test]
    fn threshold_is_strict() {
        assert!(is_adversarial(0.49, 0.5));
        assert!(!is_adversarial(0.5, 0.5));
    }

    #[test]
    fn realign_picks_best_match() {
        let kb = kb();
        let r = realign(&kb, &set(&kb, &["wheel", "saddle", "headlight"]), None);
        assert_eq!(r.class, Some(1));
        assert_eq!(r.similarity, 1.0);
        let r = realign(&kb, &set(&kb, &["cap"]), Some(0));
        assert_eq!(r.class, Some(2));
        assert_eq!(r.similarity, 0.5);
    }

    #[test]
    fn realign_ties_prefer_prediction_then_first_listed() {
        let kb = kb();
        let found = set(&kb, &["wheel", "saddle"]);
        assert_eq!(realign(&kb, &found, Some(3)).class, Some(3));
        assert_eq!(realign(&kb, &found, None).class, Some(0));
        assert_eq!(realign(&kb, &found, Some(2)).class, Some(0));
    }

    #[test]
    fn realign_unknown_when_nothing_matches() {
        let kb = kb();
        assert_eq!(realign(&kb, &set(&kb, &["screen"]), Some(0)).class, None);
        assert_eq!(realign(&kb, &PartSet::new(), None).class, None);
    }

    #[test]
    fn verdict_clean_keeps_prediction() {
        let kb = kb();
        let v = Verdict::decide(&kb, 2, 0.9, &set(&kb, &["body", "cap"]), 0.5);
        assert!(!v.adversarial);
        assert_eq!(v.predicted, "bottle");
        assert_eq!(v.corrected, "bottle");
        assert_eq!(v.similarity, 1.0);
        assert_eq!(v.parts, ["body", "cap"]);
    }

    #[test]
    fn verdict_flags_and_corrects() {
        let kb = kb();
        let v = Verdict::decide(
            &kb,
            2,
            0.99,
            &set(&kb, &["wheel", "saddle", "headlight"]),
            0.5,
        );
        assert!(v.adversarial);
        assert_eq!(v.similarity, 0.0);
        assert_eq!(v.corrected, "motorbike");
        assert_eq!(v.corrected_index, Some(1));
        assert_eq!(v.corrected_similarity, 1.0);
    }

    #[test]
    fn verdict_unknown_when_nothing_found() {
        let kb = kb();
        let v = Verdict::decide(&kb, 0, 0.6, &PartSet::new(), 0.3);
        assert!(v.adversarial);
        assert_eq!(v.corrected, UNKNOWN_CLASS);
        assert_eq!(v.corrected_index, None);
    }

    fn part_set() -> impl Strategy<Value = PartSet> {
        proptest::collection::vec(0usize..130, 0..20).prop_map(PartSet::from_indices)
    }

    proptest! {
        #[test]
        fn jaccard_is_bounded(a in part_set(), b in part_set()) {
            let j = jaccard(&a, &b);
            prop_assert!((0.0..=1.0).contains(&j));
        }

        #[test]
        fn jaccard_is_symmetric(a in part_set(), b in part_set()) {
            prop_assert_eq!(jaccard(&a, &b), jaccard(&b, &a));
        }

        #[test]
        fn jaccard_identity(a in part_set()) {
            let expected = if a.is_empty() { 0.0 } else { 1.0 };
            prop_assert_eq!(jaccard(&a, &a), expected);
        }

        #[test]
        fn jaccard_one_only_for_equal_sets(a in part_set(), b in part_set()) {
            if jaccard(&a, &b) == 1.0 {
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn realigned_class_is_a_best_match(found in proptest::collection::vec(0usize..6, 0..6)) {
            let kb = kb();
            let found = PartSet::from_indices(found);
            let r = realign(&kb, &found, None);
            for c in 0..kb.classes().len() {
                prop_assert!(jaccard(kb.expected_parts(c), &found) <= r.similarity);
            }
            if let Some(c) = r.class {
                prop_assert_eq!(jaccard(kb.expected_parts(c), &found), r.similarity);
            }
        }
    }
}
