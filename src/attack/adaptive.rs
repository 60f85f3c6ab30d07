//! The adaptive white-box attack: fool the classifier M while keeping the part extractor K's
//! parts consistent with the attacker's class, so UnMask's Jaccard check passes.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{AttackError, AttackSpec, class_tensor, cross_entropy, engine, perturb};
use crate::detector::Detector;
use crate::modelinfo::PartOutput;
use crate::similarity::{is_adversarial, jaccard};

/// How an untargeted adaptive attack chooses the class it pushes each image towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TargetChoice {
    /// The wrong class with the largest logit of M on the clean image.
    #[default]
    MostLikelyWrong,
    /// The wrong class whose expected parts best match (Jaccard) the parts K finds on the
    /// clean image — the class that needs the fewest parts changed — ties broken by M's logit.
    ClosestParts,
}

/// Parameters of the adaptive attack.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveSpec {
    /// The optimiser (method, norm, ε, step, iterations, random start, decay). When
    /// `base.targeted`, the labels given to [`attack_adaptive`] are the attacker's classes;
    /// otherwise they are the true classes and the attacker's classes come from `choice`.
    /// A random start can hurt here: noise at the scale of ε may wipe out fine part evidence
    /// (thin structures, saturated colours) that the attack would otherwise keep.
    pub base: AttackSpec,
    /// Weight λ of K's part loss against M's cross-entropy: the attack minimises
    /// `CE(M(x), t) + λ · L_K(K(x), t)` ([`part_alignment_loss`]). λ = 0 attacks M alone
    /// (towards `t`).
    pub lambda: f64,
    /// How untargeted attacks choose `t`.
    pub choice: TargetChoice,
    /// Segmentation K: fraction of the output map's pixels pooled (top-k) per part channel.
    /// `None`: twice the extractor's `min-area` (at least one pixel), so a pushed part clears
    /// the area threshold.
    pub pool_fraction: Option<f64>,
    /// Segmentation K: log-probability margin κ by which a pushed part should beat every
    /// other channel on its pooled pixels (and an unwanted part lose); the loss stops pushing
    /// once it does.
    pub margin: f64,
}

/// Default [`AdaptiveSpec::margin`].
pub const DEFAULT_MARGIN: f64 = 1.0;

impl AdaptiveSpec {
    /// An adaptive attack with optimiser `base` and weight `lambda`, towards the most likely
    /// wrong class (untargeted `base`), with the default pooling and margin.
    pub fn new(base: AttackSpec, lambda: f64) -> Self {
        Self {
            base,
            lambda,
            choice: TargetChoice::default(),
            pool_fraction: None,
            margin: DEFAULT_MARGIN,
        }
    }

    /// Checks that the parameters make sense.
    pub fn validate(&self) -> Result<(), AttackError> {
        self.base.validate()?;
        let bad = |m: String| Err(AttackError::Spec(m));
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return bad(format!("λ must be finite and ≥ 0, got {}", self.lambda));
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return bad(format!(
                "margin must be finite and ≥ 0, got {}",
                self.margin
            ));
        }
        if let Some(f) = self.pool_fraction
            && !(f.is_finite() && f > 0.0 && f <= 1.0)
        {
            return bad(format!("pool fraction must be in (0, 1], got {f}"));
        }
        Ok(())
    }
}

/// Adversarial images, the class each was pushed towards, and whether it beat the detector.
#[derive(Debug)]
pub struct AdaptiveOutcome {
    /// Adversarial images, `[0, 1]`, within ε, on the images' device.
    pub images: Tensor,
    /// The attacker's class per image (index into the classifier's labels).
    pub targets: Vec<i64>,
    /// Per image: M is fooled (predicts the target, for a targeted attack) and UnMask does not
    /// flag the returned image.
    pub success: Vec<bool>,
}

/// Per class, per K output channel: whether the channel reports a part expected for the class;
/// and per channel whether it reports a knowledge-base part at all.
struct PartMasks {
    expected: Tensor,
    mapped: Tensor,
}

impl PartMasks {
    fn new(detector: &Detector, device: Device) -> Self {
        let kb = detector.knowledge();
        let channels = detector.channel_parts();
        let classes = kb.classes().len();
        let mut expected = Vec::with_capacity(classes * channels.len());
        for class in 0..classes {
            let parts = kb.expected_parts(class);
            expected.extend(
                channels
                    .iter()
                    .map(|p| p.is_some_and(|p| parts.contains(p)) as u8 as f32),
            );
        }
        let mapped: Vec<f32> = channels.iter().map(|p| p.is_some() as u8 as f32).collect();
        Self {
            expected: Tensor::from_slice(&expected)
                .view([classes as i64, channels.len() as i64])
                .to_device(device),
            mapped: Tensor::from_slice(&mapped).to_device(device),
        }
    }
}

/// How the segmentation surrogate pools and how far it pushes.
#[derive(Clone, Copy)]
struct Pooling {
    fraction: f64,
    margin: f64,
}

impl Pooling {
    fn new(detector: &Detector, pool_fraction: Option<f64>, margin: f64) -> Self {
        let fraction = pool_fraction.unwrap_or(match detector.extractor().output() {
            PartOutput::Segmentation { min_area, .. } => 2.0 * f64::from(min_area),
            PartOutput::MultiLabel { .. } => 0.0,
        });
        Self { fraction, margin }
    }

    fn pixels(&self, total: i64) -> i64 {
        ((self.fraction * total as f64).ceil() as i64).clamp(1, total.max(1))
    }
}

fn alignment_loss(
    masks: &PartMasks,
    output: PartOutput,
    raw: &Tensor,
    targets: &Tensor,
    pooling: Pooling,
) -> Result<Tensor, AttackError> {
    let size = raw.size();
    let channels = masks.mapped.size()[0];
    if size.len() < 2 || size[1] != channels || size[0] != targets.size()[0] {
        return Err(AttackError::Loss(format!(
            "part extractor output {size:?} does not match {} images and {channels} channels",
            targets.size()[0]
        )));
    }
    let expected = masks.expected.f_index_select(0, targets)?; // [N, C]
    let unexpected = &masks.mapped - &expected; // [N, C]
    let raw = raw.to_kind(Kind::Float);
    let mean_over = |loss: &Tensor, mask: &Tensor| -> Tensor {
        (loss * mask).sum_dim_intlist([1].as_slice(), false, Kind::Float)
            / mask
                .sum_dim_intlist([1].as_slice(), false, Kind::Float)
                .clamp_min(1.0)
    };
    match output {
        PartOutput::MultiLabel { .. } => {
            if size.len() != 2 {
                return Err(AttackError::Loss(format!(
                    "a multilabel part extractor's output must be [N, P], got {size:?}"
                )));
            }
            let bce = raw.f_binary_cross_entropy_with_logits::<Tensor>(
                &expected,
                None,
                None,
                tch::Reduction::None,
            )?;
            Ok(mean_over(&bce, &masks.mapped.unsqueeze(0)))
        }
        PartOutput::Segmentation { .. } => {
            if size.len() != 4 || size[1] < 2 {
                return Err(AttackError::Loss(format!(
                    "a segmentation part extractor's output must be [N, P+1, h, w], got {size:?}"
                )));
            }
            let log_p = raw.log_softmax(1, Kind::Float); // [N, C, h, w]
            let (top2, _) = log_p.f_topk(2, 1, true, true)?; // [N, 2, h, w]
            let (best, second) = (top2.narrow(1, 0, 1), top2.narrow(1, 1, 1));
            // Per pixel and channel: log p_c minus the best other channel's log p (positive
            // exactly where c is the argmax, which is what the detector counts).
            let rival = second.f_where_self(&log_p.ge_tensor(&best), &best)?;
            let margin = (&log_p - rival).flatten(2, -1); // [N, C, hw]
            let k = pooling.pixels(size[2] * size[3]);
            let (top, _) = margin.f_topk(k, 2, true, false)?; // [N, C, k]
            let pooled = top.mean_dim([2].as_slice(), false, Kind::Float); // [N, C]
            // Hinged both ways: a part that is already where it should be stops consuming
            // budget, and gradients stay bounded, so an impossible part cannot drown the rest.
            let present = (-&pooled + pooling.margin).clamp_min(0.0);
            let absent = (pooled + pooling.margin).clamp_min(0.0);
            Ok(mean_over(&present, &expected) + mean_over(&absent, &unexpected))
        }
    }
}

/// A differentiable per-image loss `[N]` (≥ 0) that is small when the part extractor's raw
/// output `raw` (from [`crate::model::PartExtractor::raw`]) shows the parts the knowledge base
/// expects for `targets` (`int64 [N]`, classifier class indices) and no others — the parts
/// that make UnMask accept the classifier predicting `targets`.
///
/// - Segmentation (`[N, P+1, h, w]`, decided by a per-pixel argmax): per pixel and channel the
///   margin `m = log p_c − max_{c'≠c} log p_c'` (positive where the channel wins), pooled as
///   the mean over the `k` pixels with the largest margin (`k` from `pool_fraction` as in
///   [`AdaptiveSpec::pool_fraction`]). The loss is the mean of `max(0, κ − m)` over the
///   expected parts (win on `k` pixels) plus the mean of `max(0, m + κ)` over the parts K can
///   report that are not expected (lose everywhere), κ = `margin`. The background channel
///   is neither.
/// - Multilabel (`[N, P]`): binary cross-entropy towards the expected-part vector, averaged
///   over the channels.
pub fn part_alignment_loss(
    detector: &Detector,
    raw: &Tensor,
    targets: &Tensor,
    pool_fraction: Option<f64>,
    margin: f64,
) -> Result<Tensor, AttackError> {
    let classes = detector.knowledge().classes().len() as i64;
    let n = raw.size().first().copied().unwrap_or(0);
    let targets = class_tensor(targets, n, classes, raw.device())?;
    let masks = PartMasks::new(detector, raw.device());
    let pooling = Pooling::new(detector, pool_fraction, margin);
    alignment_loss(
        &masks,
        detector.extractor().output(),
        raw,
        &targets,
        pooling,
    )
}

/// The attacker's class for each image: a wrong class (never the label) chosen by `choice`
/// from M's logits and K's parts on `images`. Needs at least two classes.
pub fn choose_targets(
    detector: &Detector,
    images: &Tensor,
    labels: &Tensor,
    choice: TargetChoice,
) -> Result<Vec<i64>, AttackError> {
    let kb = detector.knowledge();
    let classes = kb.classes().len();
    if classes < 2 {
        return Err(AttackError::Labels(
            "an untargeted attack needs at least two classes".into(),
        ));
    }
    let n = images.size().first().copied().unwrap_or(0);
    let labels = class_tensor(labels, n, classes as i64, Device::Cpu)?;
    let labels = Vec::<i64>::try_from(&labels)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let logits = tch::no_grad(|| detector.classifier().logits(images))?
        .to_kind(Kind::Float)
        .to_device(Device::Cpu);
    let logits = Vec::<f32>::try_from(logits.flatten(0, -1))?;
    let found = match choice {
        TargetChoice::ClosestParts => Some(detector.parts_found(images)?),
        TargetChoice::MostLikelyWrong => None,
    };
    Ok(labels
        .iter()
        .enumerate()
        .map(|(i, &label)| {
            let score = |c: usize| {
                let parts = found
                    .as_ref()
                    .map_or(0.0, |f| jaccard(kb.expected_parts(c), &f[i]));
                (parts, logits[i * classes + c])
            };
            (0..classes)
                .filter(|&c| c as i64 != label)
                .max_by(|&a, &b| {
                    let (sa, sb) = (score(a), score(b));
                    sa.0.total_cmp(&sb.0)
                        .then(sa.1.total_cmp(&sb.1))
                        // Equal scores: the class listed first wins.
                        .then(b.cmp(&a))
                })
                .expect("at least one wrong class") as i64
        })
        .collect())
}

/// What the attack is after, to judge iterates with the detector's own decision rule.
struct Goal<'a> {
    detector: &'a Detector,
    /// True classes (untargeted) or attacker's classes (targeted).
    labels: &'a [i64],
    targeted: bool,
}

impl Goal<'_> {
    /// Per image: M's prediction meets the goal and UnMask does not flag the image.
    fn met(&self, logits: &Tensor, raw: &Tensor) -> Result<Vec<bool>, AttackError> {
        let (predicted, parts) = tch::no_grad(|| {
            let predicted = logits.argmax(-1, false).to_device(Device::Cpu);
            let channels = self.detector.extractor().decide(&raw.detach());
            (predicted, self.detector.parts_from_channels(&channels))
        });
        let predicted = Vec::<i64>::try_from(&predicted)?;
        let kb = self.detector.knowledge();
        Ok(predicted
            .iter()
            .zip(self.labels)
            .zip(&parts)
            .map(|((&p, &l), found)| {
                let fooled = if self.targeted { p == l } else { p != l };
                let similarity = jaccard(kb.expected_parts(p as usize), found);
                fooled
                    && !is_adversarial(similarity, self.detector.thresholds().for_class(p as usize))
            })
            .collect())
    }
}

/// Per image, `a` where `mask` holds, `b` elsewhere.
fn select(mask: &[bool], a: &Tensor, b: &Tensor) -> Result<Tensor, AttackError> {
    let mut shape = vec![1; a.dim()];
    shape[0] = mask.len() as i64;
    let mask = Tensor::from_slice(mask)
        .view(shape.as_slice())
        .to_device(a.device());
    Ok(a.f_where_self(&mask, b)?)
}

/// The adaptive white-box attack: fool M towards a class `t` while pushing K's output towards
/// the parts the knowledge base expects for `t`, by minimising
/// `CE(M(x), t) + λ · L_K(K(x), t)` ([`part_alignment_loss`]) with `spec.base`'s optimiser.
///
/// `labels` (`int64 [N]`) are the attacker's classes when `spec.base.targeted`, otherwise the
/// true classes, and `t` is chosen by `spec.choice` on the clean images. Both models see the
/// same canonical images (each resizes them to its input).
///
/// The attacker knows the detector's decision rule, so every iterate is judged with it (M's
/// argmax, K's parts, the Jaccard threshold) at no extra cost: per image, the result is the
/// final iterate if it beats the detector, else the last iterate that did, else the final
/// iterate. (Sign steps on the coupled objective tend to oscillate around the decision
/// boundaries, so the last iterate alone would throw successes away.)
///
/// Returns the adversarial images (in `[0, 1]`, within ε), `t` and the per-image success.
/// Deterministic for a given `seed`.
pub fn attack_adaptive(
    detector: &Detector,
    images: &Tensor,
    labels: &Tensor,
    spec: &AdaptiveSpec,
    seed: u64,
) -> Result<AdaptiveOutcome, AttackError> {
    spec.validate()?;
    engine::check_images(images)?;
    engine::check_device(detector.classifier().model(), images)?;
    let n = images.size()[0];
    let classes = detector.knowledge().classes().len() as i64;
    let device = images.device();
    let label_vec = Vec::<i64>::try_from(&class_tensor(labels, n, classes, Device::Cpu)?)?;
    let targets = if spec.base.targeted {
        label_vec.clone()
    } else {
        choose_targets(detector, images, labels, spec.choice)?
    };
    let goal = Goal {
        detector,
        labels: &label_vec,
        targeted: spec.base.targeted,
    };
    let t = Tensor::from_slice(&targets).to_device(device);
    let masks = PartMasks::new(detector, device);
    let pooling = Pooling::new(detector, spec.pool_fraction, spec.margin);
    let output = detector.extractor().output();
    let base = spec.base.targeted(true);
    let mut kept = images.detach().copy();
    let mut ever = vec![false; n as usize];
    let last = perturb(images, &base, seed, |x| {
        let logits = detector.classifier().logits(x)?;
        let raw = detector.extractor().raw(x)?;
        let met = goal.met(&logits, &raw)?;
        if met.iter().any(|&m| m) {
            kept = select(&met, &x.detach(), &kept)?;
            ever.iter_mut().zip(&met).for_each(|(e, m)| *e |= m);
        }
        let m = cross_entropy(&logits, &t)?;
        if spec.lambda == 0.0 {
            return Ok(m);
        }
        let k = alignment_loss(&masks, output, &raw, &t, pooling)?;
        Ok(m + k * spec.lambda)
    })?;
    let final_met = tch::no_grad(|| -> Result<Vec<bool>, AttackError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let logits = detector.classifier().logits(&last)?;
        let raw = detector.extractor().raw(&last)?;
        goal.met(&logits, &raw)
    })?;
    let use_last: Vec<bool> = final_met
        .iter()
        .zip(&ever)
        .map(|(&f, &e)| f || !e)
        .collect();
    let adversarial = if n == 0 {
        last
    } else {
        tch::no_grad(|| select(&use_last, &last, &kept))?
    };
    let success = final_met.iter().zip(&ever).map(|(&f, &e)| f || e).collect();
    Ok(AdaptiveOutcome {
        images: adversarial,
        targets,
        success,
    })
}
