//! Scheduling of the `unmask` element: sync and async modes, interval, batching,
//! renegotiation, flushing seeks, EOS, QoS, latency, state cycles and live sources.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;
use unmask::preprocess::PixelFormat;
use unmask::testing::TinyScene;

const SCENES: [TinyScene; 3] = [
    TinyScene::CleanRed,
    TinyScene::MismatchedGreen,
    TinyScene::CleanBlue,
];

fn frames(n: usize, format: PixelFormat, w: usize, h: usize) -> Vec<TestFrame> {
    (0..n)
        .map(|i| TestFrame::new(SCENES[i % 3], format, w, h, 4))
        .collect()
}

fn inputs(frames: &[TestFrame], first: usize) -> Vec<(gst::Caps, gst::Buffer)> {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let pts = FRAME * (first + i) as u64;
            (f.caps(25), f.buffer_with_meta(pts, FRAME))
        })
        .collect()
}

#[test]
fn interval_analyses_every_nth_frame() {
    let fx = fixture();
    let detector = fx.detector();
    let frames = frames(9, PixelFormat::Rgb, 48, 32);
    for extra in [
        "batch-size=1",
        "batch-size=2",
        "batch-size=2 pipeline-depth=3",
    ] {
        let p = AppPipeline::new(&fx.element_desc(&format!("interval=3 {extra}")));
        p.play();
        p.push_all(&inputs(&frames, 0));
        let out = p.pull_all();
        assert_eq!(out.len(), 9);
        for (i, s) in out.iter().enumerate() {
            let meta = meta_of(s);
            assert_eq!(meta.is_some(), i % 3 == 0, "{extra} frame {i}");
            if let Some(m) = meta {
                assert_same_verdict(
                    &m.verdict,
                    &expected(&detector, &[&frames[i]])[0],
                    "interval",
                );
            }
        }
        let u = p.element("u");
        assert_eq!(u64_prop(&u, "frames-seen"), 9);
        assert_eq!(u64_prop(&u, "frames-analysed"), 3);
        p.stop();
    }
}

#[test]
fn renegotiation_mid_stream() {
    let fx = fixture();
    let detector = fx.detector();
    let a = frames(5, PixelFormat::Rgb, 64, 48);
    let b = frames(5, PixelFormat::I420, 33, 27);
    let c = frames(3, PixelFormat::Bgrx, 80, 20);
    let all: Vec<&TestFrame> = a.iter().chain(&b).chain(&c).collect();
    for extra in [
        "",
        "batch-size=4",
        "mode=async post-messages=all batch-size=2",
    ] {
        let p = AppPipeline::new(&fx.element_desc(extra));
        p.play();
        let mut samples = inputs(&a, 0);
        samples.extend(inputs(&b, 5));
        samples.extend(inputs(&c, 10));
        let input_bytes: Vec<Vec<u8>> = samples.iter().map(|(_, b)| bytes(b)).collect();
        p.push_all(&samples);
        let out = p.pull_all();
        assert!(p.errors().is_empty(), "{extra}: {:?}", p.errors());
        assert_eq!(out.len(), all.len(), "{extra}");
        for (i, s) in out.iter().enumerate() {
            let caps = s.caps().unwrap().structure(0).unwrap().to_owned();
            assert_eq!(
                caps.get::<&str>("format").unwrap(),
                all[i].format.gst_name(),
                "{extra} {i}"
            );
            assert_eq!(bytes(s.buffer().unwrap()), input_bytes[i], "{extra} {i}");
        }
        // Verdicts on buffers (sync: on their own frame; async: on a later buffer, `pts`
        // naming the frame) and in messages (async) match the library's.
        let check = |m: &unmask::meta::UnmaskMeta| {
            let i = (m.pts.unwrap().nseconds() / FRAME.nseconds()) as usize;
            assert_same_verdict(
                &m.verdict,
                &expected(&detector, &[all[i]])[0],
                &format!("{extra} frame {i}"),
            );
        };
        let metas: Vec<_> = out.iter().filter_map(meta_of).collect();
        metas.iter().for_each(check);
        if extra.contains("async") {
            let msgs = verdict_messages(&p.pipeline);
            let u = p.element("u");
            assert_eq!(msgs.len() as u64, u64_prop(&u, "frames-analysed"));
            assert_eq!(
                u64_prop(&u, "frames-analysed") + u64_prop(&u, "frames-dropped"),
                all.len() as u64
            );
            msgs.iter().for_each(|(_, m)| check(m));
            for s in &out {
                if let Some(m) = meta_of(s) {
                    assert!(
                        m.pts <= s.buffer().unwrap().pts(),
                        "verdicts ride on later buffers"
                    );
                }
            }
        } else {
            assert_eq!(metas.len(), all.len(), "{extra}");
        }
        p.stop();
    }
}

#[test]
fn async_mode_attaches_one_verdict_per_buffer_in_order() {
    let fx = fixture();
    let frames = frames(30, PixelFormat::Rgb, 32, 24);
    let p = AppPipeline::new(&fx.element_desc("mode=async batch-size=3 post-messages=none"));
    p.play();
    p.push_all(&inputs(&frames, 0));
    let out = p.pull_all();
    assert_eq!(out.len(), 30);
    let pts: Vec<_> = out
        .iter()
        .filter_map(meta_of)
        .map(|m| m.pts.unwrap())
        .collect();
    assert!(pts.windows(2).all(|w| w[0] < w[1]), "{pts:?}");
    let u = p.element("u");
    assert_eq!(u64_prop(&u, "frames-seen"), 30);
    assert_eq!(
        u64_prop(&u, "frames-analysed") + u64_prop(&u, "frames-dropped"),
        30
    );
    assert!(u64_prop(&u, "frames-analysed") > 0);
    assert!(u64_prop(&u, "mean-latency") > 0);
    p.stop();
}

/// Pulls samples on a thread and records their PTS.
fn collect_pts(sink: &gst_app::AppSink) -> Arc<Mutex<Vec<(gst::ClockTime, bool)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().unwrap();
                s.lock()
                    .unwrap()
                    .push((buffer.pts().unwrap(), meta_of(&sample).is_some()));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    seen
}

#[test]
fn flushing_seek_drops_pending_frames() {
    let fx = fixture();
    for extra in [
        "batch-size=4",
        "mode=async batch-size=2",
        "batch-size=2 pipeline-depth=3",
    ] {
        let desc = format!(
            // identity sleeps 5 ms per frame, so that the seek comes long before the source
            // reaches the target or its last buffer.
            "videotestsrc name=src num-buffers=100 ! video/x-raw,format=RGB,width=64,height=48,framerate=25/1 ! identity sleep-time=5000 ! {} ! appsink name=sink sync=false",
            fx.element_desc(extra)
        );
        let pipeline = gst::parse::launch(&desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let sink = pipeline
            .by_name("sink")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        let seen = collect_pts(&sink);
        // Where the flush reached the sink: everything before it is from before the seek,
        // however far the (unthrottled) source had got by then.
        let flushed_at = Arc::new(Mutex::new(None::<usize>));
        {
            let (seen, flushed_at) = (seen.clone(), flushed_at.clone());
            sink.static_pad("sink").unwrap().add_probe(
                gst::PadProbeType::EVENT_FLUSH,
                move |_, info| {
                    if let Some(gst::EventView::FlushStop(_)) = info.event().map(|e| e.view()) {
                        *flushed_at.lock().unwrap() = Some(seen.lock().unwrap().len());
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        }
        pipeline.set_state(gst::State::Paused).unwrap();
        assert!(pipeline.state(gst::ClockTime::from_seconds(10)).0.is_ok());
        pipeline.set_state(gst::State::Playing).unwrap();
        assert!(wait_for(Duration::from_secs(10), || seen
            .lock()
            .unwrap()
            .len()
            >= 6));
        let target = gst::ClockTime::from_seconds(3);
        pipeline
            .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
            .unwrap();
        let bus = pipeline.bus().unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(30),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("EOS");
        assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
        let seen = seen.lock().unwrap().clone();
        let after = flushed_at
            .lock()
            .unwrap()
            .expect("the seek flushed the sink");
        assert!(after < seen.len(), "{extra}: no frames after the seek");
        assert!(
            seen[after..].iter().all(|(pts, _)| *pts >= target),
            "{extra}: frames from before the seek after it: {seen:?}"
        );
        // After the seek: contiguous frames from the target on (videotestsrc stops after 100
        // buffers in total).
        for (k, (pts, _)) in seen[after..].iter().enumerate() {
            assert_eq!(
                *pts,
                target + FRAME * k as u64,
                "{extra}: {:?}",
                &seen[after..]
            );
        }
        if !extra.contains("async") {
            assert!(
                seen[after..].iter().all(|(_, meta)| *meta),
                "{extra}: every frame analysed"
            );
        }
        pipeline.set_state(gst::State::Null).unwrap();
    }
}

#[test]
fn eos_flushes_a_partial_batch_and_state_cycles_leak_nothing() {
    let fx = fixture();
    let frames = frames(3, PixelFormat::Rgb, 32, 24);
    // Warm up: the first cycle creates GStreamer's and libtorch's long-lived threads.
    let run = |extra: &str| {
        let p = AppPipeline::new(&fx.element_desc(extra));
        p.play();
        p.push_all(&inputs(&frames, 0));
        let out = p.pull_all();
        assert_eq!(out.len(), 3);
        if !extra.contains("async") {
            assert!(out.iter().all(|s| meta_of(s).is_some()), "{extra}");
        }
        p.stop();
    };
    run("batch-size=4");
    run("mode=async batch-size=4");
    let before = thread_count();
    // 50 NULL <-> PLAYING cycles of one pipeline, both modes, stopping mid-stream.
    for extra in ["batch-size=4", "mode=async batch-size=2"] {
        let p = AppPipeline::new(&fx.element_desc(extra));
        for cycle in 0..25 {
            p.play();
            for (caps, b) in inputs(&frames, 0) {
                let sample = gst::Sample::builder().caps(&caps).buffer(&b).build();
                p.src.push_sample(&sample).unwrap();
            }
            if cycle % 2 == 0 {
                p.src.end_of_stream().unwrap();
                let out = p.pull_all();
                assert_eq!(out.len(), 3, "{extra} cycle {cycle}");
            }
            p.stop();
        }
        drop(p);
    }
    run("batch-size=4");
    // GStreamer's task pool may keep a few idle threads; a leak would be one per cycle.
    let after = thread_count();
    assert!(
        after <= before + 4,
        "threads before {before}, after {after}"
    );
}

#[test]
fn qos_late_frames_are_not_analysed() {
    let fx = fixture();
    let frames = frames(50, PixelFormat::Rgb, 32, 24);
    let p = AppPipeline::new(&fx.element_desc(""));
    p.play();
    let u = p.element("u");
    // Downstream says: everything up to running time 1 s is too late.
    let qos = gst::event::Qos::new(
        gst::QOSType::Underflow,
        2.0,
        1_000_000_000,
        gst::ClockTime::ZERO,
    );
    assert!(u.static_pad("src").unwrap().send_event(qos));
    p.push_all(&inputs(&frames, 0));
    let out = p.pull_all();
    let first = out[0].buffer().unwrap().pts().unwrap();
    assert!(first > gst::ClockTime::SECOND, "{first}");
    assert_eq!(out.len(), 24);
    assert_eq!(u64_prop(&u, "frames-seen"), 50);
    assert_eq!(u64_prop(&u, "frames-analysed"), 24);
    assert!(!messages(&p.pipeline, gst::MessageType::Qos).is_empty());
    p.stop();
}

#[test]
fn latency_query_reports_analysis_and_batching() {
    let fx = fixture();
    let frames = frames(2, PixelFormat::Rgb, 64, 48);
    let mut reported = Vec::new();
    for extra in [
        "",
        "batch-size=4",
        "mode=async batch-size=4",
        "batch-size=2 pipeline-depth=2",
    ] {
        let p = AppPipeline::new(&fx.element_desc(extra));
        p.play();
        // Negotiate, then query while the stream is still open.
        let (caps, b) = &inputs(&frames, 0)[0];
        p.src
            .push_sample(&gst::Sample::builder().caps(caps).buffer(b).build())
            .unwrap();
        if extra.contains("batch-size=") && !extra.contains("async") {
            // The frame waits for its batch (and, with depth 2, for the next batch to be
            // handed over): push three more.
            for i in 1..4 {
                let (caps, b) = &inputs(&frames, i)[0];
                p.src
                    .push_sample(&gst::Sample::builder().caps(caps).buffer(b).build())
                    .unwrap();
            }
        }
        assert!(
            p.sink
                .try_pull_sample(gst::ClockTime::from_seconds(10))
                .is_some()
        );
        let mut q = gst::query::Latency::new();
        assert!(p.sink.static_pad("sink").unwrap().peer_query(&mut q));
        let (_, min, max) = q.result();
        reported.push((extra, min, max));
        p.src.end_of_stream().unwrap();
        p.pull_all();
        p.stop();
    }
    let (_, sync_min, _) = reported[0];
    assert!(sync_min >= gst::ClockTime::MSECOND, "{reported:?}");
    let (_, batch_min, _) = reported[1];
    assert!(
        batch_min >= FRAME * 3,
        "3 frame durations for a batch of 4: {reported:?}"
    );
    let (_, async_min, _) = reported[2];
    assert_eq!(async_min, gst::ClockTime::ZERO, "{reported:?}");
    let (_, pipelined_min, _) = reported[3];
    assert!(
        pipelined_min >= FRAME * 3,
        "2 batches of 2 held: 3 frame durations: {reported:?}"
    );
}

/// A slow classifier whose analysis of one small frame takes at least `target`.
fn slow_classifier(fx: &Fixture, target: Duration) -> std::path::PathBuf {
    let frame = TestFrame::new(TinyScene::CleanRed, PixelFormat::Rgbx, 64, 48, 0);
    // Like the element below (threads=1).
    tch::set_num_threads(1);
    let mut work = 4;
    loop {
        let path = fx.slow_classifier(work);
        let mut config = fx.detector_config();
        config.classifier = path.clone();
        let detector = unmask::Detector::load(&config).unwrap();
        expected(&detector, &[&frame]);
        let start = std::time::Instant::now();
        expected(&detector, &[&frame]);
        let took = start.elapsed();
        if took >= target || work >= 4096 {
            return path;
        }
        let scale = target.as_secs_f64() * 1.5 / took.as_secs_f64().max(1e-4);
        work = ((work as f64 * scale).ceil() as i64).clamp(work * 2, 4096);
    }
}

#[test]
fn live_source_in_async_mode_keeps_real_time() {
    let fx = fixture();
    // Around 60 ms of work per analysis against 20 ms frames: the worker cannot keep up.
    let slow = slow_classifier(&fx, Duration::from_millis(60));
    let desc = format!(
        "videotestsrc is-live=true num-buffers=60 pattern=black ! video/x-raw,format=RGBx,width=64,height=48,framerate=50/1 ! \
         unmask name=u classifier={} extractor={} knowledge={} device=cpu threads=1 mode=async post-messages=all ! \
         appsink name=sink sync=false",
        slow.display(),
        fx.models.extractor.display(),
        fx.models.knowledge.display()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let lateness = Arc::new(Mutex::new(Vec::new()));
    let l = lateness.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(clock), Some(base)) = (sink.clock(), sink.base_time()) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let now = clock.time() - base;
                let segment = sample
                    .segment()
                    .unwrap()
                    .downcast_ref::<gst::ClockTime>()
                    .unwrap();
                let buffer = sample.buffer().unwrap();
                let running = segment.to_running_time(buffer.pts().unwrap()).unwrap();
                l.lock()
                    .unwrap()
                    .push(now.nseconds() as i64 - running.nseconds() as i64);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    let u = pipeline.by_name("u").unwrap();
    let mean_latency = Duration::from_nanos(u64_prop(&u, "mean-latency"));
    let analysed = u64_prop(&u, "frames-analysed");
    let dropped = u64_prop(&u, "frames-dropped");
    pipeline.set_state(gst::State::Null).unwrap();
    let lateness = lateness.lock().unwrap().clone();
    assert_eq!(lateness.len(), 60);
    let mut sorted = lateness.clone();
    sorted.sort();
    let median = Duration::from_nanos(sorted[30].max(0) as u64);
    let worst = Duration::from_nanos(sorted[59].max(0) as u64);
    eprintln!("lateness (ns): {lateness:?}");
    eprintln!(
        "analysis {mean_latency:?}, analysed {analysed}, dropped {dropped}, lateness median {median:?} worst {worst:?}"
    );
    assert!(
        mean_latency > Duration::from_millis(20),
        "the analysis is slow: {mean_latency:?}"
    );
    assert!(dropped > 0, "frames were skipped by the busy worker");
    assert_eq!(analysed + dropped, 60);
    // In sync mode each frame would wait for its analysis and the delay would pile up
    // (60 frames x >20 ms over budget); here frames are not held back.
    assert!(
        median < mean_latency / 2,
        "median lateness {median:?} vs analysis {mean_latency:?}"
    );
    assert!(
        worst < Duration::from_millis(250),
        "worst lateness {worst:?}"
    );
}
