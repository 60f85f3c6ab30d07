//! The default networks, defined with tch and exported to TorchScript by tracing.
//!
//! - [`resnet::ResNet`]: the protected classifier M, a small ResNet; with
//!   `denoise = true` it gets feature-denoising blocks ([`denoise::NonLocalDenoise`]: non-local
//!   means, 1x1 conv, residual add) after its residual stages, as in the later UnMask study.
//! - [`segnet::PartSegNet`]: the part extractor K, an encoder-decoder segmentation network
//!   (a different architecture from M, as Mask R-CNN differs from ResNet in the paper).

pub mod denoise;
pub mod resnet;
pub mod segnet;

use std::path::Path;

use tch::{CModule, Device, Kind, Tensor, nn};

/// Exports a network to TorchScript by tracing its evaluation-mode forward pass on a batch of
/// `[2, 3, h, w]` inputs. The variable store is frozen first.
pub fn export_traced(
    vs: &mut nn::VarStore,
    net: &impl nn::ModuleT,
    name: &str,
    input_size: (i64, i64),
    path: &Path,
) -> Result<(), tch::TchError> {
    vs.freeze();
    // The name becomes a TorchScript class name: keep it an identifier.
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name = name.as_str();
    let input = Tensor::rand(
        [2, 3, input_size.0, input_size.1],
        (Kind::Float, vs.device()),
    );
    let mut forward = |inputs: &[Tensor]| vec![net.forward_t(&inputs[0], false)];
    let module =
        tch::no_grad(|| CModule::create_by_tracing(name, "forward", &[input], &mut forward))?;
    let module = if vs.device() == Device::Cpu {
        module
    } else {
        // Save CPU weights so the file loads anywhere.
        let mut m = module;
        m.to(Device::Cpu, Kind::Float, false);
        m
    };
    module.save(path)
}

/// A 3x3 convolution without bias (batch norm follows).
pub(crate) fn conv3x3(p: nn::Path, i: i64, o: i64, stride: i64, dilation: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        i,
        o,
        3,
        nn::ConvConfig {
            stride,
            padding: dilation,
            dilation,
            bias: false,
            ..Default::default()
        },
    )
}

/// A 1x1 convolution.
pub(crate) fn conv1x1(p: nn::Path, i: i64, o: i64, stride: i64, bias: bool) -> nn::Conv2D {
    nn::conv2d(
        p,
        i,
        o,
        1,
        nn::ConvConfig {
            stride,
            bias,
            ..Default::default()
        },
    )
}

/// Number of trainable parameters in a variable store.
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::resnet::{ResNet, ResNetConfig};
    use super::segnet::{PartSegNet, SegNetConfig};
    use super::*;
    use tch::nn::{ModuleT, OptimizerConfig};

    fn one_step(vs: &nn::VarStore, loss: impl Fn() -> Tensor) -> (f64, f64) {
        let mut opt = nn::Adam::default().build(vs, 1e-2).unwrap();
        let before = loss();
        opt.backward_step(&before);
        let after = tch::no_grad(&loss);
        (before.double_value(&[]), after.double_value(&[]))
    }

    #[test]
    fn classifiers_train_one_step_and_export_batch_generic() {
        tch::manual_seed(0);
        for config in [ResNetConfig::baseline(3), ResNetConfig::denoise(3)] {
            let mut vs = nn::VarStore::new(Device::Cpu);
            let net = ResNet::new(&vs.root(), &config);
            let x = Tensor::rand([8, 3, 64, 64], (Kind::Float, Device::Cpu));
            let y = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2, 0, 1]);
            let (before, after) =
                one_step(&vs, || net.forward_t(&x, true).cross_entropy_for_logits(&y));
            assert!(before.is_finite() && after.is_finite());
            assert!(after < before, "{config:?}: loss {before} -> {after}");

            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.pt");
            export_traced(&mut vs, &net, "M", (64, 64), &path).unwrap();
            let module = CModule::load(&path).unwrap();
            for n in [1, 5] {
                let x = Tensor::rand([n, 3, 64, 64], (Kind::Float, Device::Cpu));
                let traced = module.forward_ts(&[&x]).unwrap();
                let eager = tch::no_grad(|| net.forward_t(&x, false));
                assert_eq!(traced.size(), [n, 3]);
                assert!(traced.allclose(&eager, 1e-4, 1e-4, false));
            }
        }
    }

    #[test]
    fn denoise_block_changes_parameter_count() {
        let base = nn::VarStore::new(Device::Cpu);
        ResNet::new(&base.root(), &ResNetConfig::baseline(5));
        let den = nn::VarStore::new(Device::Cpu);
        ResNet::new(&den.root(), &ResNetConfig::denoise(5));
        assert!(parameter_count(&den) > parameter_count(&base));
    }

    #[test]
    fn segnet_trains_one_step_and_outputs_full_resolution() {
        tch::manual_seed(0);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = PartSegNet::new(&vs.root(), &SegNetConfig::shipped(36));
        let x = Tensor::rand([4, 3, 64, 64], (Kind::Float, Device::Cpu));
        let target = Tensor::randint(37, [4, 64, 64], (Kind::Int64, Device::Cpu));
        let out = net.forward_t(&x, false);
        assert_eq!(out.size(), [4, 37, 64, 64]);
        let (before, after) = one_step(&vs, || {
            net.forward_t(&x, true)
                .log_softmax(1, Kind::Float)
                .nll_loss_nd::<Tensor>(&target, None, tch::Reduction::Mean, -100)
        });
        assert!(after < before, "loss {before} -> {after}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pt");
        export_traced(&mut vs, &net, "K", (64, 64), &path).unwrap();
        let module = CModule::load(&path).unwrap();
        let x = Tensor::rand([3, 3, 64, 64], (Kind::Float, Device::Cpu));
        assert_eq!(module.forward_ts(&[&x]).unwrap().size(), [3, 37, 64, 64]);
    }
}

#[cfg(test)]
mod speed {
    use super::resnet::{ResNet, ResNetConfig};
    use super::segnet::{PartSegNet, SegNetConfig};
    use super::*;
    use tch::nn::{ModuleT, OptimizerConfig};

    fn measure(name: &str, net: &impl ModuleT, vs: &nn::VarStore, seg: bool) {
        let x = Tensor::rand([64, 3, 64, 64], (Kind::Float, Device::Cpu));
        let t = std::time::Instant::now();
        for _ in 0..5 {
            let _ = tch::no_grad(|| net.forward_t(&x, false));
        }
        let infer = 320.0 / t.elapsed().as_secs_f64();
        let mut opt = nn::Adam::default().build(vs, 1e-3).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..3 {
            let out = net.forward_t(&x, true);
            let loss = if seg {
                out.mean(Kind::Float)
            } else {
                out.sum(Kind::Float)
            };
            opt.backward_step(&loss);
        }
        let train = 192.0 / t.elapsed().as_secs_f64();
        println!("{name}: infer {infer:.0} img/s, train {train:.0} img/s");
    }

    #[test]
    #[ignore]
    fn net_speed() {
        for (name, c) in [
            ("M baseline", ResNetConfig::baseline(5)),
            ("M denoise", ResNetConfig::denoise(5)),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = ResNet::new(&vs.root(), &c);
            measure(name, &net, &vs, false);
        }
        let vs = nn::VarStore::new(Device::Cpu);
        let net = PartSegNet::new(&vs.root(), &SegNetConfig::shipped(36));
        measure("K", &net, &vs, true);
    }
}
