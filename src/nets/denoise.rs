//! The feature-denoising block of Xie et al., used by the later UnMask study: non-local means
//! over all spatial positions (softmax of dot products, "embedded Gaussian" without
//! embeddings), a 1x1 convolution with batch norm, and a residual connection.

use tch::{Kind, Tensor, nn, nn::ModuleT};

use super::conv1x1;

/// `x + BN(conv1x1(NLM(x)))`.
#[derive(Debug)]
pub struct NonLocalDenoise {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    scale: f64,
}

impl NonLocalDenoise {
    /// Creates a block for `channels` channels. The batch norm's scale starts at zero, so the
    /// block starts as the identity.
    pub fn new(p: nn::Path, channels: i64) -> Self {
        let bn = nn::batch_norm2d(
            &p / "bn",
            channels,
            nn::BatchNormConfig {
                ws_init: nn::Init::Const(0.0),
                ..Default::default()
            },
        );
        Self {
            conv: conv1x1(&p / "conv", channels, channels, 1, false),
            bn,
            scale: (channels as f64).sqrt().recip(),
        }
    }
}

/// Non-local means with softmax weights: `y_i = sum_j softmax_j(x_i . x_j / sqrt(C)) x_j`.
/// Shape-generic (no sizes are baked into a trace).
pub fn non_local_means(x: &Tensor, scale: f64) -> Tensor {
    let flat = x.flatten(2, -1); // [N, C, HW]
    let affinity = flat.transpose(1, 2).matmul(&flat) * scale; // [N, HW, HW]
    let weights = affinity.softmax(-1, Kind::Float);
    let y = flat.matmul(&weights.transpose(1, 2)); // [N, C, HW]
    y.view_as(x)
}

impl ModuleT for NonLocalDenoise {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = non_local_means(xs, self.scale)
            .apply(&self.conv)
            .apply_t(&self.bn, train);
        xs + y
    }
}
