//! `unmask attack`: clips and images whose attacked frames fool a small classifier through
//! the element's 8-bit path, clean frames left alone, the ground truth, and errors.

mod common;

use common::*;
use tch::{CModule, Device, Kind, Tensor};

/// Top half red, bottom half green: the tiny classifier (channel means) says red_thing, by
/// a margin far below what an 8/255 L∞ perturbation can move.
fn balanced_image(path: &std::path::Path, w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |_, y| {
        if y < h / 2 {
            image::Rgb([200, 0, 0])
        } else {
            image::Rgb([0, 196, 0])
        }
    });
    img.save(path).unwrap();
    img.into_raw()
}

fn attack(fx: &Fixture, extra: &[&str]) -> Ran {
    Ran::new(
        unmask_cli()
            .arg("attack")
            .args([
                "--classifier",
                fx.models.classifier.to_str().unwrap(),
                "--device",
                "cpu",
                "--threads",
                "1",
                "--scaling",
                "stretch",
            ])
            .args(extra)
            .output()
            .unwrap(),
    )
}

#[test]
fn attacked_segment_of_a_clip_fools_the_classifier_through_the_element() {
    let fx = fixture();
    let image = fx.dir.path().join("balanced.png");
    let clean = balanced_image(&image, 64, 48);
    let clip = fx.dir.path().join("adv.mkv");
    let out = attack(
        &fx,
        &[
            "--video",
            clip.to_str().unwrap(),
            "--images",
            image.to_str().unwrap(),
            "--width",
            "64",
            "--height",
            "48",
            "--seconds",
            "2",
            "--fps",
            "5",
            "--attack-start",
            "0.8",
            "--attack-end",
            "1.6",
        ],
    );
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("4 of 4 fool the classifier"), "{out}");
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.json", clip.display())).unwrap())
            .unwrap();
    assert_eq!(truth["frames"], 10);
    assert_eq!(truth["attack"]["preset"], "PGD-Linf-8");
    let t = truth["truth"].as_array().unwrap();
    assert_eq!(t.len(), 10);
    for (i, f) in t.iter().enumerate() {
        let attacked = (4..8).contains(&i);
        assert_eq!(f["frame"], i as u64);
        assert_eq!(f["attacked"], attacked, "{f}");
        assert_eq!(f["class"], "red_thing");
        assert_eq!(f["clean_prediction"], "red_thing");
        assert_eq!(f["prediction"] != "red_thing", attacked, "{f}");
    }
    // Clean frames are the image; attacked ones stay within 8 levels of it.
    let frames = unmask::clip::read_rgb_frames(&clip).unwrap();
    assert_eq!(frames.len(), 10);
    for (i, f) in frames.iter().enumerate() {
        let max = f
            .rgb
            .iter()
            .zip(&clean)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        if (4..8).contains(&i) {
            assert!((1..=8).contains(&max), "frame {i}: max change {max}");
        } else {
            assert_eq!(max, 0, "frame {i} changed");
        }
    }
    // Through the element: the attacked frames are classified wrongly.
    let report = fx.dir.path().join("adv.jsonl");
    let summary = fx.dir.path().join("adv-summary.json");
    let out = Ran::new(
        unmask_cli()
            .arg("scan")
            .arg(&clip)
            .args(tiny_cli_args(&fx.models))
            .args(["--report", report.to_str().unwrap()])
            .args(["--summary", summary.to_str().unwrap()])
            .arg("--truth")
            .arg(format!("{}.json", clip.display()))
            .output()
            .unwrap(),
    );
    assert!(out.code == Some(0), "{out}");
    for l in json_lines(&report) {
        let i = l["frame"].as_u64().unwrap();
        assert_eq!(
            l["predicted"] != "red_thing",
            (4..8).contains(&i),
            "frame {i}: {l}"
        );
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["truth"]["attacked"], 4);
    assert_eq!(s["truth"]["fooled"], 4);
}

#[test]
fn attacked_images_and_errors() {
    let fx = fixture();
    let image = fx.dir.path().join("in/balanced.png");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    balanced_image(&image, 40, 30);
    let out_dir = fx.dir.path().join("adv");
    let out = attack(
        &fx,
        &[
            "--out",
            out_dir.to_str().unwrap(),
            "--images",
            image.parent().unwrap().to_str().unwrap(),
            "--label",
            "red_thing",
            "--preset",
            "MIA-Linf-8",
        ],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("truth.json")).unwrap())
            .unwrap();
    assert_eq!(truth["fooled"], 1, "{truth}");
    assert_eq!(truth["truth"][0]["file"], "0000-balanced.png");
    let adv = image::open(out_dir.join("0000-balanced.png")).unwrap();
    assert_eq!((adv.width(), adv.height()), (40, 30));

    // Parts-world scenes need a classifier with parts-world classes.
    let out = attack(
        &fx,
        &["--video", fx.dir.path().join("x.mkv").to_str().unwrap()],
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("not parts-world classes"), "{out}");
    let out = attack(
        &fx,
        &[
            "--out",
            out_dir.to_str().unwrap(),
            "--images",
            image.to_str().unwrap(),
            "--preset",
            "XYZ",
        ],
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("unknown attack preset XYZ"), "{out}");
    let out = attack(
        &fx,
        &[
            "--out",
            out_dir.to_str().unwrap(),
            "--images",
            image.to_str().unwrap(),
            "--label",
            "cat",
        ],
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("--label cat"), "{out}");
}

/// A classifier over the six parts-world classes (a fixed linear map of colour statistics):
/// it is not accurate, but it lets the parts-world clip mode run.
fn partsworld_classifier(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("pw-classifier.pt");
    let input = Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let mut f = |inputs: &[Tensor]| {
        let x = &inputs[0];
        let pooled = x.adaptive_avg_pool2d([2, 1]).flatten(1, -1); // [N, 6]
        let w = Tensor::from_slice(&[
            3.0f32, -1.0, 0.5, 1.0, -2.0, 0.0, //
            -1.0, 2.0, 1.0, -0.5, 0.0, 1.5, //
            0.5, 0.5, -2.0, 2.0, 1.0, -1.0, //
            1.0, 0.0, 1.0, -1.0, 2.5, 0.5, //
            -2.0, 1.0, 0.0, 0.5, 1.0, 2.0, //
            0.0, -1.5, 2.0, 1.0, -1.0, 1.0,
        ])
        .view([6, 6]);
        vec![pooled.matmul(&w.tr()) * 10.0]
    };
    CModule::create_by_tracing("Pw", "forward", &[input], &mut f)
        .unwrap()
        .save(&path)
        .unwrap();
    std::fs::write(
        dir.join("pw-classifier.labels"),
        unmask::partsworld::CLASSES.join("\n") + "\n",
    )
    .unwrap();
    std::fs::write(
        unmask::modelinfo::ModelInfo::sidecar_of(&path),
        "[modelinfo]\nversion=1.0\n\n[input]\ntype=float32\ndims=-1,3,32,32\ndir=input\n\
         ranges=0.0,1.0;0.0,1.0;0.0,1.0\n\n[logits]\ntype=float32\ndims=-1,6\ndir=output\n\n\
         [unmask]\nrole=classifier\nlabels=pw-classifier.labels\n",
    )
    .unwrap();
    path
}

#[test]
fn partsworld_clip_keeps_clean_frames_and_attacks_the_crop() {
    let fx = fixture();
    let classifier = partsworld_classifier(fx.dir.path());
    let clip = fx.dir.path().join("pw.mkv");
    let out = Ran::new(
        unmask_cli()
            .arg("attack")
            .args(["--classifier", classifier.to_str().unwrap()])
            .args(["--device", "cpu", "--threads", "1", "--video"])
            .arg(&clip)
            .args([
                "--width",
                "80",
                "--height",
                "48",
                "--seconds",
                "1",
                "--fps",
                "6",
            ])
            .args([
                "--scene-seconds",
                "0.5",
                "--attack-start",
                "0.3",
                "--attack-end",
                "0.7",
            ])
            .args(["--batch", "2", "--seed", "3"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, Some(0), "{out}");
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.json", clip.display())).unwrap())
            .unwrap();
    assert_eq!(truth["world"], "partsworld");
    assert_eq!(truth["scenes"].as_array().unwrap().len(), 2);
    // The crop of an 80x48 frame for a square input: x 16..64.
    assert_eq!(
        truth["attack"]["region"],
        serde_json::json!([16, 0, 48, 48])
    );
    let script =
        unmask::partsworld::video_scenes(3, &unmask::partsworld::SceneOptions::default(), 1.0, 0.5);
    let frames = unmask::clip::read_rgb_frames(&clip).unwrap();
    assert_eq!(frames.len(), 6);
    for (i, f) in frames.iter().enumerate() {
        let t = truth["truth"][i].clone();
        let want = script.render(i as f32 / 6.0, 80, 48);
        assert_eq!(
            t["class"],
            unmask::partsworld::CLASSES[want.class],
            "frame {i}"
        );
        let attacked = t["attacked"].as_bool().unwrap();
        assert_eq!(attacked, (2..5).contains(&i), "frame {i}");
        for y in 0..48 {
            for x in 0..80 {
                let k = (y * 80 + x) * 3;
                let d = (0..3)
                    .map(|c| f.rgb[k + c].abs_diff(want.rgb[k + c]))
                    .max()
                    .unwrap();
                let in_crop = (16..64).contains(&x);
                let limit = if attacked && in_crop { 8 } else { 0 };
                assert!(d <= limit, "frame {i} ({x},{y}) changed by {d}");
            }
        }
    }
}
