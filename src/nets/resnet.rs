//! The classifier M: a small ResNet for 64x64 inputs, optionally with feature denoising.

use tch::{Tensor, nn, nn::ModuleT};

use super::denoise::NonLocalDenoise;
use super::{conv1x1, conv3x3};

/// Architecture of the classifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Number of classes.
    pub classes: i64,
    /// Stem width (a stride-2 3x3 convolution).
    pub stem: i64,
    /// Residual stages: (width, stride, blocks).
    pub stages: Vec<(i64, i64, usize)>,
    /// Insert a feature-denoising block after each residual stage from this index on
    /// (`None`: the baseline without denoising).
    pub denoise_from: Option<usize>,
}

impl ResNetConfig {
    /// The shipped baseline for `classes` classes.
    pub fn baseline(classes: i64) -> Self {
        Self {
            classes,
            stem: 24,
            stages: vec![(32, 1, 1), (64, 2, 2), (128, 2, 2)],
            denoise_from: None,
        }
    }

    /// The shipped denoising variant: denoising blocks after the last two stages.
    pub fn denoise(classes: i64) -> Self {
        Self {
            denoise_from: Some(1),
            ..Self::baseline(classes)
        }
    }
}

/// A basic residual block (two 3x3 convs) with a projection shortcut when the shape changes.
#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl BasicBlock {
    fn new(p: nn::Path, i: i64, o: i64, stride: i64) -> Self {
        let shortcut = (stride != 1 || i != o).then(|| {
            (
                conv1x1(&p / "proj", i, o, stride, false),
                nn::batch_norm2d(&p / "proj_bn", o, Default::default()),
            )
        });
        Self {
            conv1: conv3x3(&p / "conv1", i, o, stride, 1),
            bn1: nn::batch_norm2d(&p / "bn1", o, Default::default()),
            conv2: conv3x3(&p / "conv2", o, o, 1, 1),
            bn2: nn::batch_norm2d(&p / "bn2", o, Default::default()),
            shortcut,
        }
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        let y = y.apply(&self.conv2).apply_t(&self.bn2, train);
        let skip = match &self.shortcut {
            Some((conv, bn)) => xs.apply(conv).apply_t(bn, train),
            None => xs.shallow_clone(),
        };
        (y + skip).relu()
    }
}

/// The classifier network.
#[derive(Debug)]
pub struct ResNet {
    stem: nn::Conv2D,
    stem_bn: nn::BatchNorm,
    stages: Vec<(Vec<BasicBlock>, Option<NonLocalDenoise>)>,
    fc: nn::Linear,
}

impl ResNet {
    /// Creates the network's variables under `p`.
    pub fn new(p: &nn::Path, config: &ResNetConfig) -> Self {
        let stem = conv3x3(p / "stem", 3, config.stem, 2, 1);
        let stem_bn = nn::batch_norm2d(p / "stem_bn", config.stem, Default::default());
        let mut stages = Vec::new();
        let mut width = config.stem;
        for (i, &(w, stride, blocks)) in config.stages.iter().enumerate() {
            let sp = p / format!("stage{i}");
            let blocks = (0..blocks)
                .map(|b| {
                    let (input, stride) = if b == 0 { (width, stride) } else { (w, 1) };
                    BasicBlock::new(&sp / format!("block{b}"), input, w, stride)
                })
                .collect();
            let denoise = config
                .denoise_from
                .is_some_and(|from| i >= from)
                .then(|| NonLocalDenoise::new(&sp / "denoise", w));
            stages.push((blocks, denoise));
            width = w;
        }
        let fc = nn::linear(p / "fc", width, config.classes, Default::default());
        Self {
            stem,
            stem_bn,
            stages,
            fc,
        }
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.apply(&self.stem).apply_t(&self.stem_bn, train).relu();
        for (blocks, denoise) in &self.stages {
            for block in blocks {
                x = x.apply_t(block, train);
            }
            if let Some(d) = denoise {
                x = x.apply_t(d, train);
            }
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}
