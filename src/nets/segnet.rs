//! The part extractor K: a compact encoder-decoder segmentation network with skip
//! connections and a dilated bottleneck. It predicts at half the input resolution and
//! upsamples its logits, so it outputs per-pixel part logits `[N, P+1, H, W]` at the input
//! resolution (index 0 is the background).

use tch::{Tensor, nn, nn::ModuleT};

use super::{conv1x1, conv3x3};

/// Architecture of the part extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegNetConfig {
    /// Output channels: parts + 1 (background).
    pub outputs: i64,
    /// Widths at 1/2, 1/4 and 1/8 resolution.
    pub widths: [i64; 3],
    /// Decoder width.
    pub decoder: i64,
}

impl SegNetConfig {
    /// The shipped configuration for `parts` parts.
    pub fn shipped(parts: i64) -> Self {
        Self {
            outputs: parts + 1,
            widths: [32, 64, 96],
            decoder: 48,
        }
    }
}

#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBn {
    fn new(p: nn::Path, i: i64, o: i64, stride: i64, dilation: i64) -> Self {
        Self {
            conv: conv3x3(&p / "conv", i, o, stride, dilation),
            bn: nn::batch_norm2d(&p / "bn", o, Default::default()),
        }
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv).apply_t(&self.bn, train).relu()
    }
}

/// The segmentation network.
#[derive(Debug)]
pub struct PartSegNet {
    enc1: [ConvBn; 2],
    enc2: [ConvBn; 2],
    enc3: [ConvBn; 3],
    dec2: ConvBn,
    reduce1: nn::Conv2D,
    dec1: ConvBn,
    head: nn::Conv2D,
}

impl PartSegNet {
    /// Creates the network's variables under `p`.
    pub fn new(p: &nn::Path, c: &SegNetConfig) -> Self {
        let [w1, w2, w3] = c.widths;
        let d = c.decoder;
        Self {
            enc1: [
                ConvBn::new(p / "enc1a", 3, w1, 2, 1),
                ConvBn::new(p / "enc1b", w1, w1, 1, 1),
            ],
            enc2: [
                ConvBn::new(p / "enc2a", w1, w2, 2, 1),
                ConvBn::new(p / "enc2b", w2, w2, 1, 1),
            ],
            enc3: [
                ConvBn::new(p / "enc3a", w2, w3, 2, 1),
                ConvBn::new(p / "enc3b", w3, w3, 1, 2),
                ConvBn::new(p / "enc3c", w3, w3, 1, 4),
            ],
            dec2: ConvBn::new(p / "dec2", w3 + w2, d + d / 2, 1, 1),
            reduce1: conv1x1(p / "reduce1", d + d / 2 + w1, d, 1, false),
            dec1: ConvBn::new(p / "dec1", d, d, 1, 1),
            head: conv1x1(p / "head", d, c.outputs, 1, true),
        }
    }
}

fn upsample_like(x: &Tensor, like: &Tensor) -> Tensor {
    // Output size taken from the skip tensor; tracing records the sizes of a fixed-size input,
    // which is fine because the model's input size is fixed by its modelinfo.
    let s = like.size();
    x.upsample_bilinear2d([s[2], s[3]], false, None, None)
}

impl ModuleT for PartSegNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let e1 = self
            .enc1
            .iter()
            .fold(xs.shallow_clone(), |x, l| x.apply_t(l, train));
        let e2 = self
            .enc2
            .iter()
            .fold(e1.shallow_clone(), |x, l| x.apply_t(l, train));
        let e3 = self
            .enc3
            .iter()
            .fold(e2.shallow_clone(), |x, l| x.apply_t(l, train));
        let d2 = Tensor::cat(&[upsample_like(&e3, &e2), e2], 1).apply_t(&self.dec2, train);
        let d1 = Tensor::cat(&[upsample_like(&d2, &e1), e1], 1)
            .apply(&self.reduce1)
            .apply_t(&self.dec1, train);
        upsample_like(&d1.apply(&self.head), xs)
    }
}
