//! The example applications and the ready-made pipelines, run as a user would, with the tiny
//! models: `examples/read_meta.rs` (cargo example), `examples/read_meta.py` (PyGObject, the
//! built plugin through GST_PLUGIN_PATH) and the scripts of `pipelines/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use unmask::testing::TinyScene;

/// 5 clean red frames then 5 mismatched ones, 10 fps.
fn clip(fx: &Fixture) -> PathBuf {
    let path = fx.dir.path().join("clip.mkv");
    write_tiny_clip(
        &path,
        &[(TinyScene::CleanRed, 5), (TinyScene::MismatchedGreen, 5)],
        64,
        48,
        10,
    );
    path
}

fn tiny_props(fx: &Fixture) -> Vec<String> {
    vec![
        format!("classifier={}", fx.models.classifier.display()),
        format!("extractor={}", fx.models.extractor.display()),
        format!("knowledge={}", fx.models.knowledge.display()),
        "device=cpu".into(),
        "threads=1".into(),
        "scaling=stretch".into(),
    ]
}

/// The built example binary (cargo test builds examples; built on demand otherwise).
fn example_binary() -> PathBuf {
    let exe = target_dir().join("examples").join("read_meta");
    let test_exe = std::env::current_exe().unwrap();
    let stale = |p: &Path| {
        let t = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        t(p).is_none() || t(p) < t(&test_exe)
    };
    if stale(&exe) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", "read_meta"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example read_meta failed");
    }
    exe
}

fn check_verdicts(lines: &[serde_json::Value], what: &str) {
    assert_eq!(lines.len(), 10, "{what}: {lines:?}");
    for (i, l) in lines.iter().enumerate() {
        let flagged = i >= 5;
        assert_eq!(l["adversarial"], flagged, "{what} frame {i}: {l}");
        assert_eq!(
            l["predicted"],
            if flagged { "green_thing" } else { "red_thing" }
        );
        if flagged {
            assert_eq!(l["corrected"], "red_thing");
        }
        assert_eq!(l["pts"], i as u64 * 100_000_000, "{what} frame {i}");
    }
}

fn parse_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn rust_example_reads_unmask_meta() {
    let fx = fixture();
    let clip = clip(&fx);
    let out = Ran::new(
        Command::new(example_binary())
            .arg(&clip)
            .args(tiny_props(&fx))
            .env("GST_DEBUG", "0")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, Some(0), "{out}");
    check_verdicts(&parse_lines(&out.stdout), "read_meta.rs");
}

#[test]
fn python_example_reads_unmask_meta() {
    let python = "/usr/bin/python3";
    require_program(python);
    let fx = fixture();
    let clip = clip(&fx);
    let env = plugin_env();
    let out = Ran::new(
        Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/read_meta.py"
            ))
            .arg(&clip)
            .args(tiny_props(&fx))
            .envs(env.vars.iter().map(|(k, v)| (k, v)))
            .env("GST_DEBUG", "0")
            .output()
            .unwrap(),
    );
    assert_ne!(
        out.code,
        Some(PYTHON_MISSING_GI),
        "PyGObject is missing (scripts/setup.sh installs it): {out}"
    );
    assert_eq!(out.code, Some(0), "{out}");
    let lines = parse_lines(&out.stdout);
    check_verdicts(&lines, "read_meta.py");
    assert_eq!(lines[5]["parts"], "red_part");
    assert_eq!(lines[5]["corrected-index"], 0);
}

fn pipeline(script: &str, env: &PluginEnv, fx: &Fixture) -> Command {
    let mut c = Command::new("bash");
    c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/").to_owned() + script)
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .env("UNMASK_PROPS", tiny_props(fx).join(" "))
        .env("SINK", "fakesink")
        .env("GST_DEBUG", "0");
    c
}

#[test]
fn pipeline_scripts_run_with_the_built_plugin() {
    require_program("gst-launch-1.0");
    let fx = fixture();
    let clip = clip(&fx);
    let env = plugin_env();

    let out = Ran::new(pipeline("file.sh", &env, &fx).arg(&clip).output().unwrap());
    assert_eq!(out.code, Some(0), "{out}");

    let annotated = fx.dir.path().join("annotated.mkv");
    let out = Ran::new(
        pipeline("record.sh", &env, &fx)
            .arg(&clip)
            .arg(&annotated)
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, Some(0), "{out}");
    let frames = unmask::clip::read_rgb_frames(&annotated).unwrap();
    assert_eq!(frames.len(), 10);
    for (i, f) in frames.iter().enumerate() {
        let k = (24 * 64 + 1) * 3;
        let red = f.rgb[k] > 170 && f.rgb[k + 1] < 90 && f.rgb[k + 2] < 90;
        assert_eq!(red, i >= 5, "frame {i}");
    }

    if Command::new("/usr/bin/python3")
        .args(["-c", "import gi; gi.require_version('Gst', '1.0')"])
        .status()
        .is_ok_and(|s| s.success())
    {
        let out = Ran::new(
            pipeline("headless-json.sh", &env, &fx)
                .arg(&clip)
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, Some(0), "{out}");
        let lines = parse_lines(&out.stdout);
        assert_eq!(lines.len(), 10, "{out}");
        assert_eq!(lines[0]["event"], "unmask-verdict");
        assert_eq!(lines[7]["event"], "unmask-alert");
        assert_eq!(lines[7]["corrected"], "red_thing");
    }

    // The live ones need a camera: check that they parse and that they explain their usage.
    for script in [
        "webcam.sh",
        "rtsp.sh",
        "file.sh",
        "record.sh",
        "headless-json.sh",
    ] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/").to_owned() + script;
        let status = Command::new("bash").args(["-n", &path]).status().unwrap();
        assert!(status.success(), "{script} does not parse");
    }
    let out = Ran::new(pipeline("rtsp.sh", &env, &fx).output().unwrap());
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("usage"), "{out}");
}

#[test]
fn gst_inspect_describes_the_overlay() {
    require_program("gst-inspect-1.0");
    let env = plugin_env();
    let out = Ran::new(
        Command::new("gst-inspect-1.0")
            .arg("unmaskoverlay")
            .envs(env.vars.iter().map(|(k, v)| (k, v)))
            .env("GST_DEBUG", "0")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, Some(0), "{out}");
    for needle in [
        "Filter/Effect/Video",
        "UnMask verdict overlay",
        "GstVideoFilter",
        "I420",
        "NV12",
        "ABGR",
        "unmaskoverlay draws its verdicts",
    ] {
        assert!(out.stdout.contains(needle), "missing {needle:?}:\n{out}");
    }
    for prop in [
        "hold-time",
        "show-clean",
        "show-parts",
        "font-size",
        "border-width",
        "alert-color",
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{prop} "))),
            "property {prop} not listed:\n{out}"
        );
    }
}
