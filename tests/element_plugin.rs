//! The built plugin (`target/debug/libgstunmask.so`) as other programs see it:
//! `gst-inspect-1.0`, `gst-launch-1.0` with the shipped-model lookup, and Python reading
//! `UnmaskMeta` through PyGObject. See [`common::plugin_env`] for how the plugin is found
//! (it is built on demand if missing or stale).

mod common;

use std::process::Command;

use common::*;
use unmask::testing::{TinyScene, tiny_scene, write_tiny_models};

fn command(program: &str, env: &PluginEnv) -> Command {
    let mut c = Command::new(program);
    c.envs(env.vars.iter().map(|(k, v)| (k, v)))
        .env_remove(unmask::paths::MODELS_DIR_ENV)
        .env("GST_DEBUG", "0");
    c
}

#[test]
fn gst_inspect_describes_the_element() {
    require_program("gst-inspect-1.0");
    let env = plugin_env();
    let out = command("gst-inspect-1.0", &env)
        .arg("unmask")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "Filter/Analyzer/Video",
        "UnMask adversarial frame detector",
        "video/x-raw",
        "NV12",
        "xBGR",
        "GstBaseTransform",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    for prop in [
        "classifier",
        "extractor",
        "knowledge",
        "class-set",
        "device",
        "threshold",
        "min-confidence",
        "min-area",
        "interval",
        "mode",
        "batch-size",
        "post-messages",
        "threads",
        "shared-engine",
        "freeze-models",
        "active-threshold",
        "frames-seen",
        "frames-analysed",
        "frames-flagged",
        "frames-dropped",
        "mean-latency",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{prop} "))),
            "property {prop} not listed in:\n{text}"
        );
    }
    for needle in [
        "(0): sync",
        "(1): async",
        "(2): all",
        "Default: 1, \"adversarial\"",
        "Default: \"auto\"",
        "Range: 1 - 256 Default: 1",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn shipped_models_are_found_next_to_the_plugin() {
    require_program("gst-launch-1.0");
    let env = plugin_env();
    // <dir>/target/debug/libgstunmask.so -> <dir>/models/partsworld/...
    let tiny = write_tiny_models(&env.dir.path().join("tiny"));
    let pw = env.dir.path().join("models").join("partsworld");
    std::fs::create_dir_all(&pw).unwrap();
    let classifier = unmask::paths::DEFAULT_CLASS_SET.to_ascii_lowercase();
    for (from, to) in [
        (&tiny.classifier, format!("m-{classifier}-denoise.pt")),
        (&tiny.extractor, "k-parts.pt".to_string()),
    ] {
        std::fs::copy(from, pw.join(&to)).unwrap();
        std::fs::copy(
            unmask::modelinfo::ModelInfo::sidecar_of(from),
            unmask::modelinfo::ModelInfo::sidecar_of(&pw.join(&to)),
        )
        .unwrap();
    }
    for labels in ["tiny-classifier.labels", "tiny-extractor.labels"] {
        std::fs::copy(tiny.classifier.with_file_name(labels), pw.join(labels)).unwrap();
    }
    std::fs::copy(&tiny.knowledge, pw.join("knowledge.json")).unwrap();
    let out = command("gst-launch-1.0", &env)
        .args(
            "-m videotestsrc num-buffers=3 ! video/x-raw,format=RGB,width=64,height=48 ! \
             unmask device=cpu threads=1 post-messages=all ! fakesink"
                .split_whitespace(),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    let verdicts = text
        .lines()
        .filter(|l| l.contains("unmask-verdict") || l.contains("unmask-alert"))
        .count();
    assert_eq!(verdicts, 3, "{text}");

    // Without models, the error names the shipped file it looked for (the knowledge base is
    // loaded first).
    std::fs::remove_dir_all(&pw).unwrap();
    let out = command("gst-launch-1.0", &env)
        .args("videotestsrc num-buffers=1 ! unmask device=cpu ! fakesink".split_whitespace())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("models/partsworld/knowledge.json: cannot read it"),
        "{all}"
    );
}

#[test]
fn python_reads_unmask_meta_without_linking() {
    let python = "/usr/bin/python3";
    require_program(python);
    let env = plugin_env();
    let tiny = write_tiny_models(&env.dir.path().join("tiny"));
    let (w, h) = (40, 30);
    let scenes = [TinyScene::CleanRed, TinyScene::MismatchedGreen];
    let frames: Vec<u8> = scenes.iter().flat_map(|&s| tiny_scene(s, w, h)).collect();
    let frames_path = env.dir.path().join("frames.rgb");
    std::fs::write(&frames_path, frames).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/read_unmask_meta.py"
    );
    let out = command(python, &env)
        .arg(script)
        .arg(&frames_path)
        .args([w.to_string(), h.to_string(), scenes.len().to_string()])
        .arg(format!("classifier={}", tiny.classifier.display()))
        .arg(format!("extractor={}", tiny.extractor.display()))
        .arg(format!("knowledge={}", tiny.knowledge.display()))
        .args(["device=cpu", "threads=1", "scaling=stretch"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(PYTHON_MISSING_GI),
        "PyGObject is missing (scripts/setup.sh installs it): {stderr}"
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let metas: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metas.len(), 2, "{stdout}");
    let clean = &metas[0];
    assert_eq!(clean["predicted"], "red_thing");
    assert_eq!(clean["parts"], "red_part,edge");
    assert_eq!(clean["adversarial"], false);
    assert_eq!(clean["pts"], 0);
    let flagged = &metas[1];
    assert_eq!(flagged["predicted"], "green_thing");
    assert_eq!(flagged["predicted-index"], 1);
    assert_eq!(flagged["parts"], "red_part");
    assert_eq!(flagged["adversarial"], true);
    assert_eq!(flagged["corrected"], "red_thing");
    assert_eq!(flagged["corrected-index"], 0);
    assert_eq!(flagged["similarity"], 0.0);
    assert_eq!(flagged["corrected-similarity"], 0.5);
    assert_eq!(flagged["threshold"], 0.5);
    assert_eq!(flagged["pts"], 40_000_000);
    assert!(flagged["latency-ns"].as_u64().unwrap() > 0);
}
