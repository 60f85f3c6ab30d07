//! Scoring adversarial images against the whole UnMask detector.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::{AttackError, class_tensor, engine};
use crate::detector::Detector;
use crate::similarity::Verdict;

/// What the detector made of one adversarial image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackOutcome {
    /// The true class.
    pub label: i64,
    /// The attacker's class, if the attack had one.
    pub target: Option<i64>,
    /// The detector's verdict on the adversarial image.
    pub verdict: Verdict,
    /// M's prediction differs from the true class.
    pub fooled: bool,
    /// M predicts the attacker's class (`false` when there is none).
    pub on_target: bool,
    /// UnMask flags the image (Jaccard below the threshold).
    pub flagged: bool,
    /// The attack beat the whole detector: M is fooled and the image is not flagged.
    pub success: bool,
    /// The detector's final label (the realigned class when flagged, else M's prediction)
    /// is the true class.
    pub defended: bool,
}

/// Counts over a set of [`AttackOutcome`]s; add batches up with [`AttackSummary::merge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AttackSummary {
    pub images: usize,
    /// M fooled.
    pub fooled: usize,
    /// Flagged by UnMask.
    pub flagged: usize,
    /// M fooled and flagged (detected attacks).
    pub fooled_flagged: usize,
    /// M fooled and not flagged.
    pub success: usize,
    /// Final label equals the truth.
    pub defended: usize,
    /// Images that had an attacker's class.
    pub targeted: usize,
    /// M predicts the attacker's class.
    pub on_target: usize,
    /// M predicts the attacker's class and the image is not flagged.
    pub on_target_unflagged: usize,
}

fn rate(count: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        count as f64 / of as f64
    }
}

impl AttackSummary {
    /// Counts `outcomes`.
    pub fn from_outcomes(outcomes: &[AttackOutcome]) -> Self {
        let mut s = Self::default();
        for o in outcomes {
            s.images += 1;
            s.fooled += o.fooled as usize;
            s.flagged += o.flagged as usize;
            s.fooled_flagged += (o.fooled && o.flagged) as usize;
            s.success += o.success as usize;
            s.defended += o.defended as usize;
            s.targeted += o.target.is_some() as usize;
            s.on_target += o.on_target as usize;
            s.on_target_unflagged += (o.on_target && !o.flagged) as usize;
        }
        s
    }

    /// Adds another batch's counts.
    pub fn merge(&mut self, other: &Self) {
        self.images += other.images;
        self.fooled += other.fooled;
        self.flagged += other.flagged;
        self.fooled_flagged += other.fooled_flagged;
        self.success += other.success;
        self.defended += other.defended;
        self.targeted += other.targeted;
        self.on_target += other.on_target;
        self.on_target_unflagged += other.on_target_unflagged;
    }

    /// Fraction of images on which M is fooled (M's error rate under attack).
    pub fn fooled_rate(&self) -> f64 {
        rate(self.fooled, self.images)
    }

    /// Fraction of images flagged.
    pub fn flagged_rate(&self) -> f64 {
        rate(self.flagged, self.images)
    }

    /// Fraction of the attacks that fooled M which UnMask flagged.
    pub fn detection_rate(&self) -> f64 {
        rate(self.fooled_flagged, self.fooled)
    }

    /// Fraction of images on which the attack beat the whole detector.
    pub fn success_rate(&self) -> f64 {
        rate(self.success, self.images)
    }

    /// Defense accuracy: fraction of images whose final label is the truth.
    pub fn defense_accuracy(&self) -> f64 {
        rate(self.defended, self.images)
    }

    /// Fraction of targeted images on which M predicts the attacker's class.
    pub fn on_target_rate(&self) -> f64 {
        rate(self.on_target, self.targeted)
    }
}

/// Runs the detector on adversarial images and scores each against the true `labels`
/// (`int64 [N]`) and, when given, the attacker's classes `targets` (one per image).
pub fn evaluate_attack(
    detector: &Detector,
    adversarial: &Tensor,
    labels: &Tensor,
    targets: Option<&[i64]>,
) -> Result<Vec<AttackOutcome>, AttackError> {
    engine::check_images(adversarial)?;
    engine::check_device(detector.classifier().model(), adversarial)?;
    let n = adversarial.size()[0];
    let classes = detector.knowledge().classes().len() as i64;
    let labels = class_tensor(labels, n, classes, Device::Cpu)?;
    let labels = Vec::<i64>::try_from(&labels).map_err(AttackError::Torch)?;
    if let Some(t) = targets {
        if t.len() != labels.len() {
            return Err(AttackError::Labels(format!(
                "{} target classes for {} images",
                t.len(),
                labels.len()
            )));
        }
        if let Some(bad) = t.iter().find(|&&c| c < 0 || c >= classes) {
            return Err(AttackError::Labels(format!(
                "target class {bad} is not in 0..{classes}"
            )));
        }
    }
    let verdicts = detector.analyse_images(adversarial)?;
    Ok(verdicts
        .into_iter()
        .enumerate()
        .map(|(i, verdict)| {
            let label = labels[i];
            let target = targets.map(|t| t[i]);
            let predicted = verdict.predicted_index as i64;
            let fooled = predicted != label;
            let flagged = verdict.adversarial;
            AttackOutcome {
                label,
                target,
                fooled,
                on_target: target == Some(predicted),
                flagged,
                success: fooled && !flagged,
                defended: verdict.corrected_index.map(|c| c as i64) == Some(label),
                verdict,
            }
        })
        .collect())
}
