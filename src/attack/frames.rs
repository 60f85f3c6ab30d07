//! Attacking whole video frames the way the `unmask` element sees them.
//!
//! The element fits each frame to the classifier's input (a centre crop to its aspect ratio
//! with [`Scaling::Crop`], the whole frame with [`Scaling::Stretch`]) and resizes it
//! (antialiased bilinear). [`FrameAttack`] therefore attacks that region of the
//! full-resolution frame through [`Classifier::logits`] (whose differentiable resize is the
//! same), pastes the adversarial region back and quantises the frame to 8 bits: what reaches
//! the element is exactly what was attacked. Used by `unmask attack` and the element tests.

use tch::{Device, Kind, Tensor};

use super::{
    AdaptiveSpec, AttackError, AttackSpec, attack_adaptive, attack_classifier, batch_seed,
};
use crate::detector::Detector;
use crate::model::Classifier;
use crate::preprocess::{self, Frame, PixelFormat, Scaling};

/// The models an attack needs: the classifier alone (gray-box) or the whole detector
/// (adaptive white-box, M and K together).
pub enum Attacker {
    /// The attacker knows M only.
    GrayBox(Box<Classifier>),
    /// The attacker knows M, K and the knowledge base.
    Adaptive(Box<Detector>, AdaptiveSpec),
}

impl Attacker {
    /// The attacked classifier.
    pub fn classifier(&self) -> &Classifier {
        match self {
            Self::GrayBox(c) => c,
            Self::Adaptive(d, _) => d.classifier(),
        }
    }

    /// The models' device.
    pub fn device(&self) -> Device {
        self.classifier().model().device()
    }

    /// The batch size the models require, if fixed.
    pub fn fixed_batch(&self) -> Option<usize> {
        match self {
            Self::GrayBox(c) => c.model().fixed_batch(),
            Self::Adaptive(d, _) => d.max_batch(),
        }
        .map(|n| n.max(1) as usize)
    }
}

/// Attacks packed RGB frames of one size (`width * height * 3` bytes each, no padding).
pub struct FrameAttack {
    attacker: Attacker,
    spec: AttackSpec,
    scaling: Scaling,
    width: usize,
    height: usize,
    seed: u64,
    batches: u64,
}

impl FrameAttack {
    /// An attack with `spec` (ignored by an adaptive attacker, whose spec has its own base)
    /// on `width x height` frames fitted with `scaling`; batch `i` uses
    /// `batch_seed(seed, i)`.
    pub fn new(
        attacker: Attacker,
        spec: AttackSpec,
        scaling: Scaling,
        (width, height): (usize, usize),
        seed: u64,
    ) -> Self {
        Self {
            attacker,
            spec,
            scaling,
            width,
            height,
            seed,
            batches: 0,
        }
    }

    /// Attack frames of another size from now on.
    pub fn set_frame_size(&mut self, (width, height): (usize, usize)) {
        self.width = width;
        self.height = height;
    }

    /// The models.
    pub fn attacker(&self) -> &Attacker {
        &self.attacker
    }

    /// How frames are fitted to the classifier.
    pub fn scaling(&self) -> Scaling {
        self.scaling
    }

    /// The region of the frame the element looks at: `(x, y, width, height)`.
    pub fn region(&self) -> (usize, usize, usize, usize) {
        let size = self.attacker.classifier().model().input_size();
        preprocess::source_region(self.width, self.height, size, self.scaling)
    }

    /// The classifier's class and confidence on an 8-bit RGB frame, through the element's
    /// pre-processing.
    pub fn predict(&self, rgb: &[u8]) -> Result<(usize, f32), AttackError> {
        let c = self.attacker.classifier();
        let frame = Frame::packed(
            PixelFormat::Rgb,
            self.width,
            self.height,
            rgb,
            self.width * 3,
        );
        let image = preprocess::frame_to_image(
            &frame,
            c.model().input_size(),
            self.scaling,
            self.attacker.device(),
        )
        .map_err(|e| AttackError::Images(e.to_string()))?;
        Ok(c.predict(&image)?[0])
    }

    /// Attacks `frames` in place as one batch; `labels` are their true classes (indices into
    /// the classifier's labels). The next call uses the next batch seed.
    pub fn attack(&mut self, frames: &mut [Vec<u8>], labels: &[usize]) -> Result<(), AttackError> {
        let n = frames.len();
        if n == 0 {
            return Ok(());
        }
        if labels.len() != n {
            return Err(AttackError::Labels(format!(
                "{} labels for {n} frames",
                labels.len()
            )));
        }
        let (w, h) = (self.width, self.height);
        if let Some(f) = frames.iter().find(|f| f.len() != w * h * 3) {
            return Err(AttackError::Images(format!(
                "a frame has {} bytes, {w}x{h} RGB needs {}",
                f.len(),
                w * h * 3
            )));
        }
        let (x0, y0, cw, ch) = self.region();
        let crop = |t: &Tensor| {
            t.narrow(1, y0 as i64, ch as i64)
                .narrow(2, x0 as i64, cw as i64)
        };
        let fulls: Vec<Tensor> = frames
            .iter()
            .map(|f| preprocess::rgb_bytes_to_image(f, w, h))
            .collect();
        let mut images = Tensor::stack(&fulls.iter().map(crop).collect::<Vec<_>>(), 0);
        let mut labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        if let Some(fixed) = self.attacker.fixed_batch()
            && fixed != n
        {
            if n > fixed {
                return Err(AttackError::Images(format!(
                    "the models take batches of exactly {fixed} frames, not {n}"
                )));
            }
            // Pad with copies of the last frame; their results are dropped.
            let last = images.narrow(0, n as i64 - 1, 1);
            let pad: Vec<Tensor> = (n..fixed).map(|_| last.shallow_clone()).collect();
            images = Tensor::cat(&[images, Tensor::cat(&pad, 0)], 0);
            labels.resize(fixed, labels[n - 1]);
        }
        let images = images
            .to_kind(Kind::Float)
            .to_device(self.attacker.device());
        let labels = Tensor::from_slice(&labels);
        let seed = batch_seed(self.seed, self.batches);
        self.batches += 1;
        let adv = match &self.attacker {
            Attacker::Adaptive(d, spec) => attack_adaptive(d, &images, &labels, spec, seed)?.images,
            Attacker::GrayBox(c) => attack_classifier(c, &images, &labels, &self.spec, seed)?,
        };
        let adv = adv.to_device(Device::Cpu);
        for (i, (f, full)) in frames.iter_mut().zip(fulls).enumerate() {
            crop(&full).copy_(&adv.get(i as i64));
            *f = preprocess::image_to_rgb_bytes(&full);
        }
        Ok(())
    }
}
