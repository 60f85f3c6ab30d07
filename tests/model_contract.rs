//! The model contract beyond the default layout: label files that are missing, empty or
//! repeat a label fail at load time naming the file; inputs declared as BGR, NHWC or uint8
//! receive exactly that, from canonical images and from video frames alike.

use std::path::{Path, PathBuf};

use tch::{CModule, Device, Kind, Tensor};
use unmask::model::{Classifier, ModelError};

const LABELS: &str = "red\ngreen\nblue\n";

/// A classifier that answers its input's per-channel means, traced for `input`, with the
/// modelinfo's input `section` and `extra` lines in its `[unmask]` section.
fn write_mean_model(
    dir: &Path,
    name: &str,
    input: Tensor,
    nhwc: bool,
    section: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.pt"));
    let mut f = |inputs: &[Tensor]| {
        let x = inputs[0].to_kind(Kind::Float);
        let axes: &[i64] = if nhwc { &[1, 2] } else { &[2, 3] };
        vec![x.mean_dim(axes, false, Kind::Float)]
    };
    CModule::create_by_tracing(name, "forward", &[input], &mut f)
        .unwrap()
        .save(&path)
        .unwrap();
    std::fs::write(dir.join(format!("{name}.labels")), LABELS).unwrap();
    std::fs::write(
        unmask::modelinfo::ModelInfo::sidecar_of(&path),
        format!(
            "{section}\n[logits]\ntype=float32\ndims=-1,3\ndir=output\n\n\
             [unmask]\nrole=classifier\nlabels={name}.labels\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// A canonical `[1,3,8,8]` image of one colour.
fn solid(rgb: [f64; 3]) -> Tensor {
    Tensor::from_slice(&rgb.map(|v| v as f32))
        .view([1, 3, 1, 1])
        .expand([1, 3, 8, 8], false)
        .contiguous()
}

fn logits(c: &Classifier, image: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(c.logits(image).unwrap().flatten(0, -1)).unwrap()
}

#[test]
fn bgr_nhwc_and_uint8_inputs_get_what_their_modelinfo_declares() {
    let dir = tempfile::tempdir().unwrap();
    let image = solid([1.0, 0.5, 0.0]);

    let float_nchw =
        "[input]\ntype=float32\ndims=-1,3,8,8\ndir=input\nranges=0.0,1.0;0.0,1.0;0.0,1.0\n";
    let zeros = Tensor::zeros([2, 3, 8, 8], (Kind::Float, Device::Cpu));
    let plain = write_mean_model(
        dir.path(),
        "plain",
        zeros.shallow_clone(),
        false,
        float_nchw,
        "",
    );
    let c = Classifier::load(&plain, Device::Cpu).unwrap();
    assert_eq!(logits(&c, &image), [1.0, 0.5, 0.0]);
    assert_eq!(c.predict(&image).unwrap()[0].0, 0);

    let bgr = write_mean_model(
        dir.path(),
        "bgr",
        zeros,
        false,
        float_nchw,
        "channel-order=bgr\n",
    );
    let c = Classifier::load(&bgr, Device::Cpu).unwrap();
    assert_eq!(logits(&c, &image), [0.0, 0.5, 1.0]);
    assert_eq!(
        c.predict(&image).unwrap()[0].0,
        2,
        "red in RGB is blue in BGR"
    );

    // NHWC uint8: 0-255 pixels as they are.
    let u8_section = "[input]\ntype=uint8\ndims=-1,8,8,3\ndir=input\nranges=0,255;0,255;0,255\n";
    let u8_input = || Tensor::zeros([2, 8, 8, 3], (Kind::Uint8, Device::Cpu));
    let nhwc_u8 = write_mean_model(dir.path(), "nhwc_u8", u8_input(), true, u8_section, "");
    let c = Classifier::load(&nhwc_u8, Device::Cpu).unwrap();
    let prepared = c.model().prepare(&image);
    assert_eq!(prepared.size(), [1, 8, 8, 3]);
    assert_eq!(prepared.kind(), Kind::Uint8);
    // 0.5 * 255 = 127.5 rounds to 128.
    assert_eq!(logits(&c, &image), [255.0, 128.0, 0.0]);
    // ... which a normalisation cannot be applied to: refused at load time.
    let normalised = write_mean_model(
        dir.path(),
        "u8_mean",
        u8_input(),
        true,
        u8_section,
        "mean=0.5,0.5,0.5\n",
    );
    let text = Classifier::load(&normalised, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(text.contains("mean") && text.contains("uint8"), "{text}");
}

#[test]
fn bad_label_files_fail_at_load_time_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let section =
        "[input]\ntype=float32\ndims=-1,3,8,8\ndir=input\nranges=0.0,1.0;0.0,1.0;0.0,1.0\n";
    let zeros = Tensor::zeros([2, 3, 8, 8], (Kind::Float, Device::Cpu));
    let path = write_mean_model(dir.path(), "m", zeros, false, section, "");
    let labels = dir.path().join("m.labels");
    for (content, problem) in [
        (None, ""),
        (Some("\n# only a comment\n\n"), "no labels"),
        (Some("red\ngreen\nred\n"), "label \"red\" appears twice"),
    ] {
        match content {
            Some(c) => std::fs::write(&labels, c).unwrap(),
            None => std::fs::remove_file(&labels).unwrap(),
        }
        let err = Classifier::load(&path, Device::Cpu).unwrap_err();
        assert!(matches!(err, ModelError::Labels { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&labels.display().to_string()) && text.contains(problem),
            "{content:?}: {text}"
        );
    }
    // Two labels for a three-wide output: a contract mismatch at load time.
    std::fs::write(&labels, "red\ngreen\n").unwrap();
    let text = Classifier::load(&path, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(text.contains("output width 3 but 2 labels"), "{text}");
}

#[test]
fn channels_last_inputs_go_only_to_models_that_take_them() {
    let dir = tempfile::tempdir().unwrap();
    let section =
        "[input]\ntype=float32\ndims=-1,3,8,8\ndir=input\nranges=0.0,1.0;0.0,1.0;0.0,1.0\n";
    let image = solid([1.0, 0.5, 0.25]);
    let zeros = || Tensor::zeros([2, 3, 8, 8], (Kind::Float, Device::Cpu));

    // Per-channel means work on any strides: the input is channels-last in memory.
    let plain = write_mean_model(dir.path(), "any_strides", zeros(), false, section, "");
    let c = Classifier::load(&plain, Device::Cpu).unwrap();
    assert!(c.model().channels_last());
    let prepared = c.model().prepare(&image);
    assert_eq!(prepared.size(), [1, 3, 8, 8]);
    assert_eq!(prepared.stride(), [192, 1, 24, 3], "NHWC in memory");
    assert_eq!(logits(&c, &image), [1.0, 0.5, 0.25]);

    // A model that flattens its input with `view` needs contiguous memory: the probe at
    // load fails and the model keeps contiguous inputs (and its answers).
    let path = dir.path().join("needs_contiguous.pt");
    let mut f = |inputs: &[Tensor]| {
        let flat = inputs[0].view([-1, 3 * 8 * 8]);
        vec![
            flat.view([-1, 3, 64])
                .mean_dim([2].as_slice(), false, Kind::Float),
        ]
    };
    CModule::create_by_tracing("needs_contiguous", "forward", &[zeros()], &mut f)
        .unwrap()
        .save(&path)
        .unwrap();
    std::fs::write(dir.path().join("needs_contiguous.labels"), LABELS).unwrap();
    // The same modelinfo as the first model's, naming this model's labels.
    let info = std::fs::read_to_string(unmask::modelinfo::ModelInfo::sidecar_of(&plain)).unwrap();
    std::fs::write(
        unmask::modelinfo::ModelInfo::sidecar_of(&path),
        info.replace("any_strides.labels", "needs_contiguous.labels"),
    )
    .unwrap();
    let c = Classifier::load(&path, Device::Cpu).unwrap();
    assert!(!c.model().channels_last());
    assert!(c.model().prepare(&image).is_contiguous());
    assert_eq!(logits(&c, &image), [1.0, 0.5, 0.25]);
    let mut model = unmask::model::Model::load(&path, Device::Cpu).unwrap();
    model.set_channels_last(true);
    assert!(!model.channels_last(), "asking again does not force it");

    // The shipped models take channels-last inputs.
    let shipped = unmask::paths::default_classifier("CS3a", "baseline");
    assert!(
        Classifier::load(&shipped, Device::Cpu)
            .unwrap()
            .model()
            .channels_last()
    );
    let k = unmask::model::PartExtractor::load(unmask::paths::default_extractor(), Device::Cpu);
    assert!(k.unwrap().model().channels_last());
}

/// A 50x30 frame of every format, a pattern that varies along both axes.
fn frames() -> Vec<unmask::preprocess::OwnedFrame> {
    use unmask::preprocess::{OwnedFrame, PixelFormat};
    let (w, h) = (50, 30);
    let rgb: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i * 37 + (i / (w * 3)) * 11) % 256) as u8)
        .collect();
    PixelFormat::ALL
        .into_iter()
        .map(|f| OwnedFrame::from_rgb(&rgb, w, h, f, 3))
        .collect()
}

#[test]
fn frames_become_exactly_what_prepare_makes_of_their_images() {
    use unmask::model::{Model, prepare_frames};
    use unmask::preprocess::{Scaling, frames_to_images};
    let dir = tempfile::tempdir().unwrap();
    let nchw = |hw: &str| {
        format!(
            "[input]\ntype=float32\ndims=-1,3,{hw}\ndir=input\nranges=0.0,1.0;0.0,1.0;-1.0,1.0\n"
        )
    };
    let float = || Tensor::zeros([2, 3, 8, 8], (Kind::Float, Device::Cpu));
    let models = [
        write_mean_model(
            dir.path(),
            "normalised",
            float(),
            false,
            &nchw("8,8"),
            "mean=0.4,0.5,0.6\nstd=0.2,0.25,0.3\n",
        ),
        write_mean_model(
            dir.path(),
            "bgr_wide",
            Tensor::zeros([2, 3, 6, 10], (Kind::Float, Device::Cpu)),
            false,
            &nchw("6,10"),
            "channel-order=bgr\n",
        ),
        // 35 pixels: two runs of 16 and 3 more for the interleaved normalisation.
        write_mean_model(
            dir.path(),
            "normalised_odd",
            Tensor::zeros([2, 3, 5, 7], (Kind::Float, Device::Cpu)),
            false,
            &nchw("5,7"),
            "mean=0.3,0.45,0.5\nstd=0.22,0.2,0.35\n",
        ),
        write_mean_model(
            dir.path(),
            "nhwc_u8",
            Tensor::zeros([2, 8, 8, 3], (Kind::Uint8, Device::Cpu)),
            true,
            "[input]\ntype=uint8\ndims=-1,8,8,3\ndir=input\nranges=0,255;0,255;0,255\n",
            "",
        ),
    ];
    let mut models: Vec<Model> = models
        .iter()
        .map(|p| Model::load(p, Device::Cpu).unwrap())
        .collect();
    assert!(
        models[2].channels_last(),
        "the odd size's interleaved layout"
    );
    let mut contiguous = Model::load(dir.path().join("normalised.pt"), Device::Cpu).unwrap();
    assert!(contiguous.channels_last());
    contiguous.set_channels_last(false);
    assert!(!contiguous.channels_last());
    models.push(contiguous);
    let owned = frames();
    let frames: Vec<_> = owned.iter().map(|f| f.as_frame()).collect();
    for scaling in [Scaling::Crop, Scaling::Stretch] {
        let all: Vec<&Model> = models.iter().collect();
        let together = prepare_frames(&all, &frames, scaling).unwrap();
        for (model, together) in models.iter().zip(together) {
            let images =
                frames_to_images(&frames, model.input_size(), scaling, Device::Cpu).unwrap();
            let expected = model.prepare(&images);
            let got = model.prepare_frames(&frames, scaling).unwrap();
            let name = model.path().display().to_string();
            for got in [&got, &together] {
                assert_eq!(got.size(), expected.size(), "{name}");
                assert_eq!(got.stride(), expected.stride(), "{name}: memory layout");
                assert_eq!(got.kind(), expected.kind(), "{name}");
                let differ = got.ne_tensor(&expected).sum(Kind::Int64).int64_value(&[]);
                assert_eq!(differ, 0, "{name} {scaling:?}: values differ");
            }
        }
    }
}

/// [`write_mean_model`] for float `[N,3,8,8]` inputs in `[0,1]`, no normalisation.
fn write_plain_mean_model(dir: &Path, name: &str) -> PathBuf {
    write_mean_model(
        dir,
        name,
        Tensor::zeros([2, 3, 8, 8], (Kind::Float, Device::Cpu)),
        false,
        "[input]\ntype=float32\ndims=-1,3,8,8\ndir=input\nranges=0.0,1.0;0.0,1.0;0.0,1.0\n",
        "",
    )
}

#[test]
fn frozen_classifiers_answer_as_saved_and_still_pass_gradients_to_the_input() {
    use unmask::model::LoadOptions;
    let dir = tempfile::tempdir().unwrap();
    let mean = write_plain_mean_model(dir.path(), "mean");
    let shipped = unmask::paths::default_classifier("CS5a", "denoise");
    // Fixed images, not the global generator's: with fresh random images about one run in
    // 40 put one gradient value of the shipped M 8.3e-4 apart (the largest is 0.15-0.17),
    // most likely a pre-activation within rounding of a ReLU's kink that folding the batch
    // norms moved to its other side. On these images the gradients are 4.5e-8 apart.
    let images = uniform_images([3, 3, 64, 64], 0x5EED_F00D);
    for path in [&mean, &shipped] {
        let saved = Classifier::load(path, Device::Cpu).unwrap();
        let frozen =
            unmask::model::Model::load_with(path, Device::Cpu, LoadOptions { freeze: true })
                .and_then(Classifier::from_model)
                .unwrap();
        assert!(!saved.model().is_frozen());
        assert!(frozen.model().is_frozen(), "{}", path.display());
        let input = |t: &Tensor| t.copy().set_requires_grad(true);
        let (x_saved, x_frozen) = (input(&images), input(&images));
        let (l_saved, l_frozen) = (
            saved.logits(&x_saved).unwrap(),
            frozen.logits(&x_frozen).unwrap(),
        );
        let scale = l_saved.abs().max().double_value(&[]).max(1.0);
        let apart = (&l_saved - &l_frozen).abs().max().double_value(&[]);
        assert!(
            apart <= 1e-5 * scale,
            "{}: logits {apart} apart",
            path.display()
        );
        // The gradient an attack follows is the same through the frozen module.
        l_saved.sum(Kind::Float).backward();
        l_frozen.sum(Kind::Float).backward();
        let (g_saved, g_frozen) = (x_saved.grad(), x_frozen.grad());
        let size = g_saved.abs().max().double_value(&[]);
        assert!(size > 0.0, "{}: no gradient", path.display());
        let apart = (&g_saved - &g_frozen).abs().max().double_value(&[]);
        assert!(
            apart <= 1e-3 * size,
            "{}: gradients {apart} apart",
            path.display()
        );
    }
}

/// Float images of `shape` with values in `[0, 1)` from a generator seeded with `seed`: the
/// same every run, whatever other tests draw from libtorch's generator.
fn uniform_images(shape: [i64; 4], seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let count = shape.iter().product::<i64>() as usize;
    let values: Vec<f32> = (0..count).map(|_| rng.random::<f32>()).collect();
    Tensor::from_slice(&values).view(shape)
}

#[test]
fn a_file_libtorch_cannot_read_fails_frozen_or_not_naming_it() {
    use unmask::model::{LoadOptions, Model};
    let dir = tempfile::tempdir().unwrap();
    let good = write_plain_mean_model(dir.path(), "good");
    let broken = dir.path().join("broken.pt");
    std::fs::write(&broken, b"not a TorchScript archive").unwrap();
    std::fs::copy(
        unmask::modelinfo::ModelInfo::sidecar_of(&good),
        unmask::modelinfo::ModelInfo::sidecar_of(&broken),
    )
    .unwrap();
    // libtorch's exception comes back as a message, not across the FFI boundary.
    let reason = unmask::freeze::freeze_torchscript(&broken).unwrap_err();
    assert!(!reason.is_empty());
    for freeze in [true, false] {
        match Model::load_with(&broken, Device::Cpu, LoadOptions { freeze }) {
            Err(ModelError::Load { path, reason }) => {
                assert_eq!(path, broken);
                assert!(!reason.is_empty());
            }
            other => panic!("freeze {freeze}: {other:?}"),
        }
    }
}
