//! Adversarial attacks for evaluating UnMask: FGSM, PGD and momentum-iterative FGSM (the
//! UnMask study's "MIA"), each in L∞ and L2, untargeted or targeted.
//!
//! - [`perturb`] is the generic engine: it attacks any differentiable per-image loss given as a
//!   closure, so other losses can reuse FGSM/PGD/MIM.
//! - [`attack_classifier`] is the gray-box attack of the study: the attacker knows the
//!   classifier M only and follows the cross-entropy of its logits.
//! - [`attack_adaptive`] is a white-box attack the study did not report: it attacks M and the
//!   part extractor K together, fooling M while pushing K's parts towards the parts the
//!   knowledge base expects for the attacker's class, so the Jaccard check passes.
//! - [`evaluate_attack`] scores adversarial images against the whole detector (fooled, flagged,
//!   successful = fooled and not flagged, defended = realigned to the truth).
//! - [`AttackSpec::paper_vectors`] are the eight attack vectors of the study, parameterised as
//!   its advertorch code was; [`AttackSpec::conventional_l2_vectors`] are stronger L2 attacks.
//!
//! Images are canonical: `float [N, 3, H, W]` (any float kind, any batch dimension first) with
//! values in `[0, 1]` on the models' device. All work, random starts included, happens on the
//! images' device. Budgets are in `[0, 1]` pixel units over the canonical images as given (so
//! an L2 radius depends on their resolution). Random starts come from a ChaCha RNG seeded by
//! the caller, generated on the CPU, so a seed gives the same start on every device and with
//! any thread count. On the CPU the whole attack is then bit-for-bit reproducible; on CUDA some
//! backward kernels (e.g. of the antialiased resize) accumulate atomically, so gradients, and
//! therefore results, may differ in the last bits between runs.
//!
//! Every function attacks the batch it is given in one go; a model with a fixed batch size
//! needs batches of exactly that size (see [`crate::Detector::max_batch`]). Callers that split a
//! data set into batches should give each batch its own seed (e.g. [`batch_seed`]).

mod adaptive;
mod engine;
mod evaluate;
pub mod frames;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use crate::detector::DetectorError;
use crate::model::{Classifier, ModelError};

pub use adaptive::{
    AdaptiveOutcome, AdaptiveSpec, DEFAULT_MARGIN, TargetChoice, attack_adaptive, choose_targets,
    part_alignment_loss,
};
pub use engine::perturb;
pub use evaluate::{AttackOutcome, AttackSummary, evaluate_attack};

/// Why an attack cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    #[error("attack parameters: {0}")]
    Spec(String),
    #[error("images: {0}")]
    Images(String),
    #[error("labels: {0}")]
    Labels(String),
    #[error("loss: {0}")]
    Loss(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The norm of the threat model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Norm {
    /// Max-norm: every pixel moves by at most ε; steps follow the gradient's sign.
    Linf,
    /// Euclidean norm over the whole image (all channels and pixels); steps follow the
    /// L2-normalised gradient.
    L2,
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Linf => "Linf",
            Self::L2 => "L2",
        })
    }
}

/// The attack algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Method {
    /// One gradient step of size `step` (ε for [`AttackSpec::fgsm`]) — FGSM for L∞, FGM for L2.
    /// With a random start this is FGSM-RS. `iters` must be 1.
    Fgsm,
    /// Projected gradient descent (Madry et al.): `iters` steps of size `step`, each projected
    /// back onto the ε-ball and the pixel range.
    Pgd,
    /// Momentum-iterative FGSM (Dong et al.; "MIA" in the UnMask study): like PGD, but steps
    /// follow an accumulated gradient `g ← decay·g + ∇/‖∇‖₁` (advertorch's
    /// `MomentumIterativeAttack`).
    Mim,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fgsm => "FGSM",
            Self::Pgd => "PGD",
            Self::Mim => "MIA",
        })
    }
}

/// Parameters of one attack.
///
/// All distances are in `[0, 1]` pixel units over the canonical images the attack is given.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttackSpec {
    pub method: Method,
    pub norm: Norm,
    /// Radius of the threat model (max-norm for L∞, Euclidean norm per image for L2).
    pub eps: f64,
    /// Step size. Steps larger than ε saturate: they land on the ε-ball after projection.
    pub step: f64,
    /// Number of steps (1 for FGSM).
    pub iters: usize,
    /// Start from a random point of the ε-ball (advertorch's `rand_init`): uniform in
    /// `[-ε, ε]` per pixel for L∞; for L2, a uniformly random image minus the image, scaled
    /// down onto the ε-sphere when longer than ε.
    pub random_start: bool,
    /// Momentum decay (MIM only; ignored otherwise).
    pub decay: f64,
    /// Targeted: the labels given to the attack are target classes and the loss is minimised.
    /// Untargeted: the labels are the true classes and the loss is maximised.
    pub targeted: bool,
}

/// The 0–255 pixel budgets of the UnMask study.
pub const PAPER_EPSILONS_255: [u32; 2] = [8, 16];
/// Iterations of the study's iterative attacks.
pub const PAPER_ITERS: usize = 20;
/// Step size of the study's attacks, in `[0, 1]` units: larger than any ε, so every step
/// saturates to the ε-ball.
pub const PAPER_STEP: f64 = 2.0;
/// L2 radii of the conventional (stronger) L2 presets, for `[0, 1]` images at 64x64.
pub const CONVENTIONAL_L2_EPSILONS: [f64; 2] = [0.5, 1.0];

impl AttackSpec {
    /// FGSM (L∞) / FGM (L2): one step of size ε from the clean image.
    pub fn fgsm(norm: Norm, eps: f64) -> Self {
        Self {
            method: Method::Fgsm,
            norm,
            eps,
            step: eps,
            iters: 1,
            random_start: false,
            decay: 0.0,
            targeted: false,
        }
    }

    /// PGD with a random start.
    pub fn pgd(norm: Norm, eps: f64, step: f64, iters: usize) -> Self {
        Self {
            method: Method::Pgd,
            norm,
            eps,
            step,
            iters,
            random_start: true,
            decay: 0.0,
            targeted: false,
        }
    }

    /// Momentum-iterative FGSM without random start, with momentum decay `decay`.
    pub fn mim(norm: Norm, eps: f64, step: f64, iters: usize, decay: f64) -> Self {
        Self {
            method: Method::Mim,
            norm,
            eps,
            step,
            iters,
            random_start: false,
            decay,
            targeted: false,
        }
    }

    /// The same attack, targeted (`true`) or untargeted.
    pub fn targeted(self, targeted: bool) -> Self {
        Self { targeted, ..self }
    }

    /// The same attack with or without random start.
    pub fn with_random_start(self, random_start: bool) -> Self {
        Self {
            random_start,
            ..self
        }
    }

    /// The eight attack vectors of the UnMask study, as its advertorch code ran them:
    /// PGD-L∞ and PGD-L2 with random start, MIA-L∞ and MIA-L2 with decay 1.0, untargeted,
    /// [`PAPER_ITERS`] = 20 iterations, step [`PAPER_STEP`] = 2.0, at ε = 8/255 and 16/255.
    ///
    /// Names: `PGD-Linf-8`, `PGD-Linf-16`, `PGD-L2-8`, `PGD-L2-16`, `MIA-Linf-8`,
    /// `MIA-Linf-16`, `MIA-L2-8`, `MIA-L2-16` (the number is ε in 0–255 units).
    ///
    /// Two quirks are reproduced on purpose:
    /// - the step (2.0) exceeds every ε, so each step saturates to the ε-ball: L∞ attacks are
    ///   sign steps at full ε, L2 attacks full-radius steps along the normalised gradient;
    /// - the L2 radius is the same number as the L∞ one, 8/255 ≈ 0.031 or 16/255 ≈ 0.063, in
    ///   Euclidean norm over a whole image. That is very small: for a 64x64 RGB image it is the
    ///   budget of changing every value by about 0.0003 (0.07 of a 0–255 level), or a handful
    ///   of pixels by 8 levels. Expect the L2 vectors to be much weaker than the L∞ ones; see
    ///   [`AttackSpec::conventional_l2_vectors`] for stronger L2 attacks.
    pub fn paper_vectors() -> Vec<(String, AttackSpec)> {
        let mut out = Vec::with_capacity(8);
        for method in [Method::Pgd, Method::Mim] {
            for norm in [Norm::Linf, Norm::L2] {
                for e in PAPER_EPSILONS_255 {
                    let eps = f64::from(e) / 255.0;
                    let spec = match method {
                        Method::Mim => Self::mim(norm, eps, PAPER_STEP, PAPER_ITERS, 1.0),
                        _ => Self::pgd(norm, eps, PAPER_STEP, PAPER_ITERS),
                    };
                    out.push((format!("{method}-{norm}-{e}"), spec));
                }
            }
        }
        out
    }

    /// Conventional L2 attacks, stronger than the study's: PGD-L2 with random start and MIA-L2
    /// (decay 1.0), ε = 0.5 and 1.0 in L2 norm over `[0, 1]` images (sized for 64x64 RGB; an
    /// L2 radius is resolution-dependent), 20 iterations of step 2.5·ε/20.
    ///
    /// Names: `PGD-L2-0.5`, `PGD-L2-1.0`, `MIA-L2-0.5`, `MIA-L2-1.0`.
    pub fn conventional_l2_vectors() -> Vec<(String, AttackSpec)> {
        let mut out = Vec::with_capacity(4);
        for method in [Method::Pgd, Method::Mim] {
            for eps in CONVENTIONAL_L2_EPSILONS {
                let step = 2.5 * eps / PAPER_ITERS as f64;
                let spec = match method {
                    Method::Mim => Self::mim(Norm::L2, eps, step, PAPER_ITERS, 1.0),
                    _ => Self::pgd(Norm::L2, eps, step, PAPER_ITERS),
                };
                out.push((format!("{method}-L2-{eps:.1}"), spec));
            }
        }
        out
    }

    /// All named presets: [`AttackSpec::paper_vectors`] then
    /// [`AttackSpec::conventional_l2_vectors`].
    pub fn presets() -> Vec<(String, AttackSpec)> {
        let mut all = Self::paper_vectors();
        all.extend(Self::conventional_l2_vectors());
        all
    }

    /// A preset by name (case-insensitive), e.g. `PGD-Linf-8` or `PGD-L2-0.5`.
    pub fn preset(name: &str) -> Option<AttackSpec> {
        Self::presets()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, s)| s)
    }

    /// Checks that the parameters make sense.
    pub fn validate(&self) -> Result<(), AttackError> {
        let bad = |m: String| Err(AttackError::Spec(m));
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return bad(format!("ε must be finite and ≥ 0, got {}", self.eps));
        }
        if !(self.step.is_finite() && self.step >= 0.0) {
            return bad(format!("step must be finite and ≥ 0, got {}", self.step));
        }
        if !(self.decay.is_finite() && self.decay >= 0.0) {
            return bad(format!("decay must be finite and ≥ 0, got {}", self.decay));
        }
        match self.method {
            Method::Fgsm if self.iters != 1 => {
                bad(format!("FGSM takes exactly 1 step, got {}", self.iters))
            }
            Method::Pgd | Method::Mim if self.iters == 0 => {
                bad("an iterative attack needs at least 1 step".into())
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for AttackSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{} ε={:.4} step={:.4} iters={}",
            self.method, self.norm, self.eps, self.step, self.iters
        )?;
        if self.random_start {
            f.write_str(" random-start")?;
        }
        if self.method == Method::Mim {
            write!(f, " decay={}", self.decay)?;
        }
        f.write_str(if self.targeted {
            " targeted"
        } else {
            " untargeted"
        })
    }
}

/// A seed for batch `index` of a data set attacked with `seed` (SplitMix64 mixing), so that
/// batches get unrelated random starts.
pub fn batch_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Checks class indices `[N]` against `n` images and `classes` classes, and returns them as
/// `int64` on `device`.
pub(crate) fn class_tensor(
    labels: &Tensor,
    n: i64,
    classes: i64,
    device: tch::Device,
) -> Result<Tensor, AttackError> {
    let bad = |m: String| Err(AttackError::Labels(m));
    if labels.size() != [n] {
        return bad(format!(
            "expected {n} class indices (shape [{n}]), got shape {:?}",
            labels.size()
        ));
    }
    if !matches!(
        labels.kind(),
        Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
    ) {
        return bad(format!(
            "class indices must be integers, got {:?}",
            labels.kind()
        ));
    }
    let labels = labels.to_kind(Kind::Int64).to_device(device);
    if n > 0 {
        let lo = labels.min().int64_value(&[]);
        let hi = labels.max().int64_value(&[]);
        if lo < 0 || hi >= classes {
            return bad(format!(
                "class indices must be in 0..{classes}, got values in {lo}..={hi}"
            ));
        }
    }
    Ok(labels)
}

/// Per-image cross-entropy `[N]` of `logits` against `labels`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor, AttackError> {
    Ok(logits.to_kind(Kind::Float).f_cross_entropy_loss::<Tensor>(
        labels,
        None,
        Reduction::None,
        -100,
        0.0,
    )?)
}

/// The gray-box attack of the UnMask study: the attacker knows the classifier M only and
/// follows the cross-entropy of its logits.
///
/// `labels` (`int64 [N]`, any device) are the true classes for an untargeted `spec` (the
/// cross-entropy is maximised) and the target classes for a targeted one (minimised), as in
/// advertorch. Returns adversarial images on the images' device, in `[0, 1]` and within ε of
/// `images` in `spec.norm`. Deterministic for a given `seed` (see the module documentation).
pub fn attack_classifier(
    classifier: &Classifier,
    images: &Tensor,
    labels: &Tensor,
    spec: &AttackSpec,
    seed: u64,
) -> Result<Tensor, AttackError> {
    spec.validate()?;
    engine::check_images(images)?;
    engine::check_device(classifier.model(), images)?;
    let classes = classifier.labels().len() as i64;
    let labels = class_tensor(labels, images.size()[0], classes, images.device())?;
    perturb(images, spec, seed, |x| {
        cross_entropy(&classifier.logits(x)?, &labels)
    })
}
