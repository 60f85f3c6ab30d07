//! ROC curves and operating points of the detector's score `1 - similarity`.

use serde::{Deserialize, Serialize};

/// One point of a ROC curve: flagging scores `>= threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// `+∞` for the first point (nothing flagged), written as `null` in JSON.
    #[serde(with = "infinite_as_null")]
    pub threshold: f64,
    pub false_positive_rate: f64,
    pub true_positive_rate: f64,
}

/// JSON has no infinity: `+∞` travels as `null`.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::INFINITY))
    }
}

/// The ROC curve of `positives` against `negatives` (higher score = more suspicious), from
/// (0,0) to (1,1), one point per distinct score.
pub fn roc_curve(positives: &[f64], negatives: &[f64]) -> Vec<RocPoint> {
    let mut thresholds: Vec<f64> = positives.iter().chain(negatives).copied().collect();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    let rate = |scores: &[f64], t: f64| {
        if scores.is_empty() {
            0.0
        } else {
            scores.iter().filter(|&&s| s >= t).count() as f64 / scores.len() as f64
        }
    };
    let mut curve = vec![RocPoint {
        threshold: f64::INFINITY,
        false_positive_rate: 0.0,
        true_positive_rate: 0.0,
    }];
    curve.extend(thresholds.into_iter().map(|t| RocPoint {
        threshold: t,
        false_positive_rate: rate(negatives, t),
        true_positive_rate: rate(positives, t),
    }));
    curve
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (Mann–Whitney). `None` without positives or negatives.
pub fn auc(positives: &[f64], negatives: &[f64]) -> Option<f64> {
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for &p in positives {
        for &n in negatives {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (positives.len() * negatives.len()) as f64)
}

/// The operating point with the highest true-positive rate whose false-positive rate is at
/// most `max_fpr`.
pub fn best_at_fpr(curve: &[RocPoint], max_fpr: f64) -> RocPoint {
    curve
        .iter()
        .filter(|p| p.false_positive_rate <= max_fpr + 1e-12)
        .max_by(|a, b| {
            a.true_positive_rate
                .total_cmp(&b.true_positive_rate)
                .then(b.false_positive_rate.total_cmp(&a.false_positive_rate))
        })
        .copied()
        .unwrap_or(curve[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_useless_detectors() {
        assert_eq!(auc(&[0.9, 0.8], &[0.1, 0.2]), Some(1.0));
        assert_eq!(auc(&[0.1], &[0.9]), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5], &[0.5]), Some(0.5));
        assert_eq!(auc(&[], &[0.5]), None);
    }

    #[test]
    fn auc_matches_the_curve_area() {
        let pos = [0.9, 0.7, 0.7, 0.4, 0.2];
        let neg = [0.8, 0.5, 0.3, 0.3, 0.1, 0.0];
        let curve = roc_curve(&pos, &neg);
        let trapezoid: f64 = curve
            .windows(2)
            .map(|w| {
                (w[1].false_positive_rate - w[0].false_positive_rate)
                    * (w[1].true_positive_rate + w[0].true_positive_rate)
                    / 2.0
            })
            .sum();
        assert!((trapezoid - auc(&pos, &neg).unwrap()).abs() < 1e-12);
        let last = curve.last().unwrap();
        assert_eq!(
            (last.false_positive_rate, last.true_positive_rate),
            (1.0, 1.0)
        );
    }

    #[test]
    fn curves_survive_a_json_round_trip() {
        let curve = roc_curve(&[0.9, 0.4], &[0.5, 0.1]);
        assert_eq!(curve[0].threshold, f64::INFINITY);
        let json = serde_json::to_string(&curve).unwrap();
        assert!(json.starts_with(r#"[{"threshold":null,"#), "{json}");
        let back: Vec<RocPoint> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, curve);
    }

    #[test]
    fn operating_point_respects_the_fpr_budget() {
        let pos = [0.9, 0.8, 0.6, 0.3];
        let neg = [0.7, 0.2, 0.1, 0.05];
        let curve = roc_curve(&pos, &neg);
        let p = best_at_fpr(&curve, 0.0);
        assert_eq!((p.false_positive_rate, p.true_positive_rate), (0.0, 0.5));
        // Flagging scores >= 0.3 catches every positive and only the negative at 0.7.
        let p = best_at_fpr(&curve, 0.25);
        assert_eq!((p.false_positive_rate, p.true_positive_rate), (0.25, 1.0));
        assert_eq!(p.threshold, 0.3);
        let p = best_at_fpr(&curve, 0.2);
        assert_eq!((p.false_positive_rate, p.true_positive_rate), (0.0, 0.5));
    }
}
