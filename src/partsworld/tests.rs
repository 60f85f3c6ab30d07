use super::*;
use crate::KnowledgeBase;

fn kb() -> KnowledgeBase {
    KnowledgeBase::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/partsworld/knowledge.json"
    ))
    .expect("the shipped parts-world knowledge base loads")
}

#[test]
fn constants_match_the_knowledge_base() {
    let kb = kb();
    assert_eq!(kb.parts(), PARTS.map(String::from).as_slice());
    assert_eq!(kb.classes(), CLASSES.map(String::from).as_slice());
    for (c, _) in CLASSES.iter().enumerate() {
        let mut want: Vec<usize> = class_parts(c).iter().map(|&p| p as usize).collect();
        want.sort_unstable();
        let got: Vec<usize> = kb.expected_parts(c).iter().collect();
        assert_eq!(got, want, "parts of {}", CLASSES[c]);
    }
    for (set, classes) in [
        ("CS3a", &["car", "person", "train"][..]),
        ("CS3b", &["person", "dog", "bird"]),
        ("CS5a", &["dog", "car", "bottle", "train", "person"]),
        ("CS5b", &["dog", "car", "bird", "train", "person"]),
    ] {
        assert_eq!(kb.class_set(set).unwrap().classes, classes);
    }
    // The knowledge base agrees with PASCAL-Part's part sets.
    let pascal = KnowledgeBase::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/knowledge/pascal-part.json"
    ))
    .unwrap();
    for (c, name) in CLASSES.iter().enumerate() {
        let pc = pascal.class_index(name).unwrap();
        let mut a = pascal.part_names(pascal.expected_parts(pc));
        let mut b = kb.part_names(kb.expected_parts(c));
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}");
    }
    for (i, p) in Part::ALL.iter().enumerate() {
        assert_eq!(*p as usize, i);
        assert_eq!(p.name(), PARTS[i]);
        assert_eq!(p.label() as usize, i + 1);
    }
}

#[test]
fn deterministic_from_seed_and_index() {
    let opts = SceneOptions::default();
    for i in 0..6 {
        let a = sample(11, i, &opts, 64);
        let b = sample(11, i, &opts, 64);
        assert_eq!(a, b);
        let c = sample(11, i + 100, &opts, 64);
        assert_ne!(a.rgb, c.rgb);
        let d = sample(12, i, &opts, 64);
        assert_ne!(a.rgb, d.rgb);
    }
}

#[test]
fn ground_truth_is_consistent() {
    let kb = kb();
    let opts = SceneOptions::default();
    let mut classes_seen = [0usize; 6];
    let mut empty = 0;
    for i in 0..120 {
        let s = sample(3, i, &opts, 64);
        assert_eq!(s.rgb.len(), 64 * 64 * 3);
        assert_eq!(s.labels.len(), 64 * 64);
        classes_seen[s.class] += 1;
        let areas = Sample::label_areas(&s.labels);
        assert!(areas[0] > 0, "sample {i} has no background");
        let expected = kb.expected_parts(s.class);
        for (l, &a) in areas.iter().enumerate().skip(1) {
            if a > 0 {
                assert!(
                    expected.contains(l - 1),
                    "sample {i} ({}) draws {} which is not one of its parts",
                    CLASSES[s.class],
                    PARTS[l - 1]
                );
            }
        }
        let min = min_visible_pixels(64, 64);
        assert_eq!(min, 6);
        for p in 0..PARTS.len() {
            assert_eq!(s.visible.contains(&p), areas[p + 1] >= min);
        }
        assert!(s.visible.windows(2).all(|w| w[0] < w[1]));
        if s.visible.is_empty() {
            empty += 1;
        }
    }
    assert!(classes_seen.iter().all(|&n| n >= 8), "{classes_seen:?}");
    assert!(empty <= 2, "{empty} samples show no part");
}

#[test]
fn class_option_is_respected() {
    let opts = SceneOptions::with_class_names(&["dog", "bottle"]).unwrap();
    let mut seen = [false; 6];
    for i in 0..40 {
        let s = Scene::random(5, i, &opts);
        assert!(s.class() == class::DOG || s.class() == class::BOTTLE);
        seen[s.class()] = true;
    }
    assert!(seen[class::DOG] && seen[class::BOTTLE]);
    assert!(SceneOptions::with_class_names(&["cat"]).is_err());
}

#[test]
fn resolution_independent() {
    let opts = SceneOptions::default();
    let mut jac = 0.0;
    let n = 30;
    for i in 0..n {
        let scene = Scene::random(21, i, &opts);
        let a = scene.render(0.0, 64, 64);
        let b = scene.render(0.0, 256, 256);
        assert_eq!(a.class, b.class);
        // Large parts at 256 (>= 2 % of the picture) are visible at 64.
        let areas = Sample::label_areas(&b.labels);
        for p in 0..PARTS.len() {
            if areas[p + 1] as f32 >= 0.02 * 256.0 * 256.0 {
                assert!(a.visible.contains(&p), "scene {i}: {} lost at 64", PARTS[p]);
            }
        }
        let inter = a.visible.iter().filter(|p| b.visible.contains(p)).count();
        let union = a.visible.len() + b.visible.len() - inter;
        jac += if union == 0 {
            1.0
        } else {
            inter as f32 / union as f32
        };
    }
    let mean = jac / n as f32;
    assert!(mean > 0.8, "mean Jaccard 64 vs 256 = {mean}");
}

#[test]
fn non_square_frames_keep_the_object_in_the_centre_square() {
    let opts = SceneOptions::clean();
    for i in 0..12 {
        let s = Scene::random(8, i, &opts).render(0.0, 160, 90);
        assert_eq!(s.rgb.len(), 160 * 90 * 3);
        // Without cropping, the object lies in the centred 90x90 square (only long objects
        // such as trains may run on beyond it, as they run out of square pictures).
        let (mut inside, mut all) = (0, 0);
        for y in 0..90 {
            for x in 0..160 {
                if s.labels[y * 160 + x] > 0 {
                    all += 1;
                    if (35..125).contains(&x) {
                        inside += 1;
                    }
                }
            }
        }
        assert!(all > 0);
        let min = if s.class == class::TRAIN { 0.6 } else { 0.97 };
        assert!(
            inside as f32 >= min * all as f32,
            "scene {i} ({}): {inside} of {all} object pixels in the centre square",
            CLASSES[s.class]
        );
    }
}

/// Colour alone must not give the class away: a nearest-class-mean classifier on the mean
/// colour of the object's pixels (and on the whole picture) stays far from perfect.
#[test]
fn colour_does_not_determine_the_class() {
    let opts = SceneOptions::default();
    let n = 300;
    let mut obj = Vec::with_capacity(n);
    let mut whole = Vec::with_capacity(n);
    let mut cls = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let s = sample(99, i, &opts, 48);
        let mut o = [0f64; 3];
        let mut w = [0f64; 3];
        let mut k = 0f64;
        for (p, &l) in s.labels.iter().enumerate() {
            for c in 0..3 {
                let v = s.rgb[3 * p + c] as f64;
                w[c] += v;
                if l > 0 {
                    o[c] += v;
                }
            }
            if l > 0 {
                k += 1.0;
            }
        }
        let k = k.max(1.0);
        obj.push(o.map(|v| v / k));
        whole.push(w.map(|v| v / s.labels.len() as f64));
        cls.push(s.class);
    }
    let accuracy = |feat: &[[f64; 3]]| {
        // Train the class means on the first 200, test on the rest.
        let mut means = [[0f64; 3]; 6];
        let mut counts = [0f64; 6];
        for (f, &c) in feat.iter().zip(&cls).take(200) {
            for (m, v) in means[c].iter_mut().zip(f) {
                *m += v;
            }
            counts[c] += 1.0;
        }
        for (m, k) in means.iter_mut().zip(counts) {
            m.iter_mut().for_each(|v| *v /= k.max(1.0));
        }
        let mut right = 0;
        for i in 200..n {
            let d = |k: usize| {
                (0..3)
                    .map(|c| (feat[i][c] - means[k][c]).powi(2))
                    .sum::<f64>()
            };
            let best = (0..6).min_by(|&a, &b| d(a).total_cmp(&d(b))).unwrap();
            if best == cls[i] {
                right += 1;
            }
        }
        right as f64 / (n - 200) as f64
    };
    let a_obj = accuracy(&obj);
    let a_whole = accuracy(&whole);
    eprintln!(
        "nearest-mean-colour accuracy: object {a_obj:.2}, picture {a_whole:.2} (chance 0.17)"
    );
    assert!(a_obj < 0.45, "object colour predicts the class: {a_obj}");
    assert!(
        a_whole < 0.4,
        "picture colour predicts the class: {a_whole}"
    );
}

#[test]
fn stream_is_deterministic_whatever_the_workers() {
    let opts = SceneOptions::default();
    let one: Vec<Vec<Sample>> = SampleStream::new(4, 10, &opts, 32, 3, 1).take(3).collect();
    let three: Vec<Vec<Sample>> = SampleStream::new(4, 10, &opts, 32, 3, 3).take(3).collect();
    assert_eq!(one, three);
    assert_eq!(one[1][2], sample(4, 15, &opts, 32));
}

#[test]
fn video_is_smooth_and_changes_scenes() {
    let opts = SceneOptions::default();
    let v = video_scenes(2, &opts, 4.0, 2.0);
    assert_eq!(v.scenes.len(), 2);
    let a = v.render(0.5, 80, 60);
    let b = v.render(0.5 + 1.0 / 15.0, 80, 60);
    // Consecutive frames are close: most label pixels unchanged.
    let same = a
        .labels
        .iter()
        .zip(&b.labels)
        .filter(|(x, y)| x == y)
        .count();
    assert!(same as f32 > 0.85 * a.labels.len() as f32);
    assert_eq!(v.scene_at(2.5).0, 1);
}

#[test]
#[ignore = "benchmark: cargo test --lib partsworld::tests::bench -- --ignored --nocapture"]
fn bench() {
    let opts = SceneOptions::default();
    let n = 2000;
    let t = std::time::Instant::now();
    for i in 0..n {
        std::hint::black_box(sample(1, i, &opts, 64));
    }
    let dt = t.elapsed().as_secs_f64();
    eprintln!("{:.0} images/s at 64x64 on one thread", n as f64 / dt);
}

#[test]
#[ignore = "profiling helper"]
fn stage_times() {
    use super::draw::{Canvas, WRng};
    use rand::SeedableRng;
    use std::time::Instant;
    let opts = SceneOptions::default();
    let n = 2000u64;
    let scenes: Vec<Scene> = (0..n).map(|i| Scene::random(1, i, &opts)).collect();
    let mut t_bg = 0.0;
    let mut t_build = 0.0;
    let mut t_paint = 0.0;
    let mut t_fx = 0.0;
    let mut shapes = 0usize;
    let ts = tiny_skia::Transform::from_scale(64.0, 64.0);
    for s in &scenes {
        let mut c = Canvas::new(64, 64);
        let t = Instant::now();
        let mut r = WRng::seed_from_u64(s.background_seed);
        super::background::paint_background(
            &mut r,
            &mut c,
            [0.0, 0.0, 1.0, 1.0],
            ts,
            64.0,
            0.0,
            0.5,
        );
        t_bg += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut r = WRng::seed_from_u64(s.object_seed);
        let fig = super::classes::build(s.class, &mut r, 0.0);
        t_build += t.elapsed().as_secs_f64();
        shapes += fig.shapes.len();
        let b = fig.bounds();
        let k = 0.8 / (b[3] - b[1]);
        let obj = tiny_skia::Transform::from_translate(-(b[0] + b[2]) / 2.0, -(b[1] + b[3]) / 2.0)
            .post_scale(k, k)
            .post_translate(0.5, 0.5)
            .post_concat(ts);
        let t = Instant::now();
        c.paint_figure(&fig, obj, k * 64.0);
        t_paint += t.elapsed().as_secs_f64();
        let t = Instant::now();
        std::hint::black_box(super::effects::apply(c.rgb.data(), 64, 64, &s.look, 5));
        std::hint::black_box(c.labels());
        t_fx += t.elapsed().as_secs_f64();
    }
    let us = |v: f64| v / n as f64 * 1e6;
    eprintln!(
        "per image: background {:.0} us, build {:.0} us, paint {:.0} us ({:.1} shapes), effects {:.0} us",
        us(t_bg),
        us(t_build),
        us(t_paint),
        shapes as f64 / n as f64,
        us(t_fx)
    );
}
