//! Parts-world samples as training tensors, and the augmentation of the denoising variant.

use tch::{Device, Kind, Tensor};

use crate::partsworld::Sample;

/// A batch of parts-world samples as tensors.
#[derive(Debug)]
pub struct Batch {
    /// `float32 [B,3,S,S]` in `[0,1]`.
    pub images: Tensor,
    /// `int64 [B]`: class index into the world's classes.
    pub world_classes: Vec<usize>,
    /// `int64 [B,S,S]`: part label map (0 background, 1 + part index).
    pub labels: Tensor,
    /// Visible parts per sample (indices into the world's parts).
    pub visible: Vec<Vec<usize>>,
}

impl Batch {
    /// Converts samples (all of the same size) to tensors on `device`.
    pub fn from_samples(samples: &[Sample], device: Device) -> Self {
        let b = samples.len() as i64;
        let (w, h) = (samples[0].width as i64, samples[0].height as i64);
        let mut rgb = Vec::with_capacity(samples.len() * (w * h * 3) as usize);
        let mut labels = Vec::with_capacity(samples.len() * (w * h) as usize);
        for s in samples {
            rgb.extend_from_slice(&s.rgb);
            labels.extend_from_slice(&s.labels);
        }
        let images = Tensor::from_slice(&rgb)
            .view([b, h, w, 3])
            .to_device(device)
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float)
            / 255.0;
        let labels = Tensor::from_slice(&labels)
            .view([b, h, w])
            .to_device(device)
            .to_kind(Kind::Int64);
        Self {
            images: images.contiguous(),
            world_classes: samples.iter().map(|s| s.class).collect(),
            labels,
            visible: samples.iter().map(|s| s.visible.clone()).collect(),
        }
    }
}

/// Augmentation used to train the denoising variant: random resized crops (80–100% of the
/// side), horizontal flips, brightness/contrast/colour jitter, Gaussian noise and random
/// erasing of a patch. Deterministic given the global torch seed.
pub fn augment(images: &Tensor) -> Tensor {
    let device = images.device();
    let size = images.size();
    let (b, h, w) = (size[0], size[2], size[3]);
    let opts = (Kind::Float, device);
    // Random resized crop via an affine sampling grid: scale in [0.8, 1], shift within bounds.
    let scale = Tensor::rand([b], opts) * 0.2 + 0.8;
    let tx = (Tensor::rand([b], opts) * 2.0 - 1.0) * (-&scale + 1.0);
    let ty = (Tensor::rand([b], opts) * 2.0 - 1.0) * (-&scale + 1.0);
    let flip = Tensor::rand([b], opts).lt(0.5).to_kind(Kind::Float) * 2.0 - 1.0;
    let zero = Tensor::zeros([b], opts);
    let theta = Tensor::stack(
        &[
            Tensor::stack(&[&scale * &flip, zero.shallow_clone(), tx], 1),
            Tensor::stack(&[zero.shallow_clone(), scale.shallow_clone(), ty], 1),
        ],
        1,
    );
    let grid = Tensor::affine_grid_generator(&theta, [b, 3, h, w], false);
    let x = images.grid_sampler(&grid, 0, 1, false);
    // Photometric jitter.
    let brightness = Tensor::rand([b, 1, 1, 1], opts) * 0.4 - 0.2;
    let contrast = Tensor::rand([b, 1, 1, 1], opts) * 0.5 + 0.75;
    let colour = Tensor::rand([b, 3, 1, 1], opts) * 0.2 + 0.9;
    let mean = x.mean_dim([1, 2, 3].as_slice(), true, Kind::Float);
    let x = ((x - &mean) * contrast + mean + brightness) * colour;
    let noise = Tensor::randn([b, 3, h, w], opts) * (Tensor::rand([b, 1, 1, 1], opts) * 0.04);
    let x = x + noise;
    // Random erasing: a patch of 10–25% of the side in half of the images.
    let side = (h as f64 * 0.25) as i64;
    let ys = Tensor::arange(h, (Kind::Float, device)).view([1, 1, h, 1]);
    let xs = Tensor::arange(w, (Kind::Float, device)).view([1, 1, 1, w]);
    let cy = Tensor::rand([b, 1, 1, 1], opts) * h as f64;
    let cx = Tensor::rand([b, 1, 1, 1], opts) * w as f64;
    let half = (Tensor::rand([b, 1, 1, 1], opts) * 0.6 + 0.4) * (side as f64 / 2.0);
    let inside = (ys - &cy)
        .abs()
        .le_tensor(&half)
        .logical_and(&(xs - &cx).abs().le_tensor(&half));
    let apply = Tensor::rand([b, 1, 1, 1], opts).lt(0.5);
    let mask = inside.logical_and(&apply);
    let fill = Tensor::rand([b, 3, 1, 1], opts);
    x.where_self(&mask.logical_not(), &fill).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmentation_keeps_shape_and_range_and_changes_images() {
        tch::manual_seed(1);
        let x = Tensor::rand([6, 3, 32, 32], (Kind::Float, Device::Cpu));
        let y = augment(&x);
        assert_eq!(y.size(), x.size());
        assert!(y.min().double_value(&[]) >= 0.0 && y.max().double_value(&[]) <= 1.0);
        assert!((&y - &x).abs().mean(Kind::Float).double_value(&[]) > 0.01);
    }
}
