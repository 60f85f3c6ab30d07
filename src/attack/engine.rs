//! The generic attack loop: FGSM / PGD / MIM in L∞ or L2 on any per-image loss.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::{AttackError, AttackSpec, Method, Norm};

/// Norms below this are treated as zero when normalising (advertorch's `small`).
const TINY_NORM: f64 = 1e-12;

/// Checks that `images` are a non-empty-shaped floating batch with values in `[0, 1]`.
pub(crate) fn check_images(images: &Tensor) -> Result<(), AttackError> {
    let bad = |m: String| Err(AttackError::Images(m));
    let size = images.size();
    if size.len() < 2 {
        return bad(format!(
            "expected a batch [N, ...] of images, got shape {size:?}"
        ));
    }
    if !matches!(
        images.kind(),
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    ) {
        return bad(format!(
            "expected floating-point images, got {:?}",
            images.kind()
        ));
    }
    if images.numel() > 0 {
        let (lo, hi) = tch::no_grad(|| {
            (
                images.min().double_value(&[]),
                images.max().double_value(&[]),
            )
        });
        if !(lo >= 0.0 && hi <= 1.0) {
            return bad(format!(
                "pixel values must lie in [0, 1], found values in [{lo}, {hi}]"
            ));
        }
    }
    Ok(())
}

/// Checks that a model runs on the images' device.
pub(crate) fn check_device(
    model: &crate::model::Model,
    images: &Tensor,
) -> Result<(), AttackError> {
    if model.device() == images.device() {
        Ok(())
    } else {
        Err(AttackError::Images(format!(
            "the images are on {:?}, but model {} runs on {:?}",
            images.device(),
            model.path().display(),
            model.device()
        )))
    }
}

/// Shape `[N, 1, 1, ...]` to broadcast a per-image value over an image batch of `dims` dims.
fn per_image_shape(n: i64, dims: usize) -> Vec<i64> {
    let mut shape = vec![1; dims];
    shape[0] = n;
    shape
}

/// Per-image `p`-norm, shaped to broadcast over the batch.
fn norms(t: &Tensor, p: f64) -> Tensor {
    let size = t.size();
    t.flatten(1, -1)
        .norm_scalaropt_dim(p, [1].as_slice(), false)
        .view(per_image_shape(size[0], size.len()).as_slice())
}

/// `t` divided per image by its `p`-norm (zero stays zero).
fn normalise(t: &Tensor, p: f64) -> Tensor {
    t / norms(t, p).clamp_min(TINY_NORM)
}

/// Scales each image of `delta` down onto the L2 ball of radius `eps` if it lies outside.
fn project_l2(delta: &Tensor, eps: f64) -> Tensor {
    let factor = (eps / norms(delta, 2.0).clamp_min(TINY_NORM)).clamp_max(1.0);
    delta * factor
}

/// Keeps `x + delta` in the pixel range: returns the perturbation actually applied.
fn clip_pixels(x: &Tensor, delta: &Tensor) -> Tensor {
    (x + delta).clamp(0.0, 1.0) - x
}

/// Projects a perturbation onto the ε-ball of `norm` and the pixel range.
fn project(x: &Tensor, delta: &Tensor, norm: Norm, eps: f64) -> Tensor {
    match norm {
        // Both steps only shrink components, so the result satisfies both constraints.
        Norm::Linf => clip_pixels(x, &delta.clamp(-eps, eps)),
        // Scaling a pixel-valid perturbation by a factor ≤ 1 keeps it pixel-valid (the range is
        // convex and contains x).
        Norm::L2 => project_l2(&clip_pixels(x, delta), eps),
    }
}

/// A random starting perturbation as advertorch's `rand_init_delta`, from a ChaCha RNG
/// generated on the CPU.
fn random_start(x: &Tensor, norm: Norm, eps: f64, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let numel = x.numel();
    let uniform: Vec<f32> = (0..numel).map(|_| rng.random::<f32>()).collect();
    let u = Tensor::from_slice(&uniform)
        .view(x.size().as_slice())
        .to_kind(x.kind())
        .to_device(x.device());
    match norm {
        Norm::Linf => clip_pixels(x, &((u * 2.0 - 1.0) * eps)),
        // A uniformly random image, minus the image, scaled down onto the ε-sphere.
        Norm::L2 => project_l2(&(u - x), eps),
    }
}

/// Attacks the images with `spec`, following the gradient of a per-image loss.
///
/// `loss` maps adversarial images (the same shape, kind and device as `images`, requiring
/// gradient) to a per-image loss `[N]`, differentiable with respect to its input. The attack
/// maximises the loss when `spec.targeted` is false and minimises it when it is true (so a
/// cross-entropy against true labels or against target classes can be used as is); losses of
/// different images do not interact. Images with a zero gradient do not move (apart from the
/// random start).
///
/// Returns adversarial images in `[0, 1]`, within `spec.eps` of `images` in `spec.norm`
/// (up to floating-point rounding), on the images' device. The result is the last iterate, as
/// in advertorch. The random start is drawn from `seed` (see the module documentation).
pub fn perturb<F>(
    images: &Tensor,
    spec: &AttackSpec,
    seed: u64,
    mut loss: F,
) -> Result<Tensor, AttackError>
where
    F: FnMut(&Tensor) -> Result<Tensor, AttackError>,
{
    spec.validate()?;
    check_images(images)?;
    let x = images.detach();
    let n = x.size()[0];
    if x.numel() == 0 {
        return Ok(x.copy());
    }
    let mut delta = if spec.random_start {
        tch::no_grad(|| random_start(&x, spec.norm, spec.eps, seed))
    } else {
        x.zeros_like()
    };
    let mut momentum = x.zeros_like();
    let iters = match spec.method {
        Method::Fgsm => 1,
        Method::Pgd | Method::Mim => spec.iters,
    };
    for _ in 0..iters {
        let adv = (&x + &delta)
            .clamp(0.0, 1.0)
            .detach()
            .set_requires_grad(true);
        let l = loss(&adv)?;
        if l.size() != [n] {
            return Err(AttackError::Loss(format!(
                "the loss must give one value per image, shape [{n}], got {:?}",
                l.size()
            )));
        }
        let objective = l.to_kind(Kind::Double).sum(Kind::Double);
        let objective = if spec.targeted { -objective } else { objective };
        if !objective.requires_grad() {
            // (libtorch's backward would crash on a graph-less tensor.)
            return Err(AttackError::Loss(
                "the loss does not depend on the images (no gradient)".into(),
            ));
        }
        let grad = Tensor::f_run_backward(&[&objective], &[&adv], false, false)
            .map_err(|e| {
                AttackError::Loss(format!(
                    "no gradient with respect to the images: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ))
            })?
            .remove(0);
        delta = tch::no_grad(|| {
            let direction = match spec.method {
                Method::Mim => {
                    momentum = &momentum * spec.decay + normalise(&grad, 1.0);
                    momentum.shallow_clone()
                }
                Method::Fgsm | Method::Pgd => grad,
            };
            let step = match spec.norm {
                Norm::Linf => direction.sign() * spec.step,
                Norm::L2 => normalise(&direction, 2.0) * spec.step,
            };
            project(&x, &(&delta + step), spec.norm, spec.eps)
        });
    }
    Ok(tch::no_grad(|| (&x + &delta).clamp(0.0, 1.0)))
}
