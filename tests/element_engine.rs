//! The shared inference engine: several `unmask` elements on one engine, batches across
//! streams and formats, cancellation, passes on the caller's thread, and the engine's
//! lifetime.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;
use unmask::detector::DetectorConfig;
use unmask::engine::{self, Engine, EngineOptions, FrameSource, Generation, Request};
use unmask::preprocess::{OwnedFrame, PixelFormat};
use unmask::similarity::Thresholds;
use unmask::testing::{TinyScene, tiny_scene};

const SCENES: [TinyScene; 3] = [
    TinyScene::CleanRed,
    TinyScene::MismatchedGreen,
    TinyScene::CleanBlue,
];

/// Frames of mixed formats and sizes: format, width, height, row padding.
const MIXED_FRAMES: [(PixelFormat, usize, usize, usize); 5] = [
    (PixelFormat::Rgb, 64, 48, 0),
    (PixelFormat::Bgrx, 321, 239, 13),
    (PixelFormat::I420, 96, 62, 2),
    (PixelFormat::Nv12, 33, 17, 5),
    (PixelFormat::Abgr, 40, 40, 0),
];

/// Live shared engines whose classifier lives in the fixture's folder.
fn engines_of(fx: &Fixture) -> Vec<engine::EngineStatus> {
    let dir = std::fs::canonicalize(fx.dir.path()).unwrap();
    engine::live_engines()
        .into_iter()
        .filter(|e| e.description.contains(&dir.display().to_string()))
        .collect()
}

/// A private (not shared) engine for `config`, `threads` wide, batching up to `batch` frames.
fn private_engine(config: &DetectorConfig, threads: usize, batch: usize) -> Arc<Engine> {
    let options = EngineOptions {
        threads,
        batch,
        shared: false,
    };
    engine::acquire(config, &options).unwrap()
}

fn owned(scene: TinyScene, format: PixelFormat, w: usize, h: usize, pad: usize) -> OwnedFrame {
    OwnedFrame::from_rgb(&tiny_scene(scene, w, h), w, h, format, pad)
}

#[test]
fn two_elements_share_one_engine_and_it_goes_when_both_stop() {
    let fx = fixture();
    let detector = fx.detector();
    for shared in [true, false] {
        let props = fx.element_desc(&format!("shared-engine={shared}"));
        let desc = format!(
            "appsrc name=src0 format=time ! {} ! appsink name=sink0 sync=false \
             appsrc name=src1 format=time ! {} ! appsink name=sink1 sync=false",
            props.replace("name=u", "name=u0"),
            props.replace("name=u", "name=u1")
        );
        let pipeline = gst::parse::launch(&desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let by = |n: &str| pipeline.by_name(n).unwrap();
        // Different formats and sizes on the two streams.
        let streams: Vec<Vec<TestFrame>> = vec![
            (0..12)
                .map(|i| TestFrame::new(SCENES[i % 3], PixelFormat::Rgbx, 64, 48, 4))
                .collect(),
            (0..12)
                .map(|i| TestFrame::new(SCENES[(i + 1) % 3], PixelFormat::Nv12, 96, 62, 6))
                .collect(),
        ];
        let collected: Vec<Arc<Mutex<Vec<gst::Sample>>>> = (0..2)
            .map(|s| {
                let out = Arc::new(Mutex::new(Vec::new()));
                let o = out.clone();
                by(&format!("sink{s}"))
                    .downcast::<gst_app::AppSink>()
                    .unwrap()
                    .set_callbacks(
                        gst_app::AppSinkCallbacks::builder()
                            .new_sample(move |sink| {
                                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                                o.lock().unwrap().push(sample);
                                Ok(gst::FlowSuccess::Ok)
                            })
                            .build(),
                    );
                out
            })
            .collect();
        pipeline.set_state(gst::State::Playing).unwrap();
        let engines = engines_of(&fx);
        if shared {
            assert_eq!(engines.len(), 1, "{engines:?}");
            assert_eq!(engines[0].users, 2, "{engines:?}");
        } else {
            assert!(
                engines.is_empty(),
                "private engines are not shared: {engines:?}"
            );
        }
        // Push both streams at once from two threads.
        let pushers: Vec<_> = streams
            .iter()
            .enumerate()
            .map(|(s, frames)| {
                let src = by(&format!("src{s}"))
                    .downcast::<gst_app::AppSrc>()
                    .unwrap();
                let samples: Vec<gst::Sample> = frames
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        gst::Sample::builder()
                            .caps(&f.caps(25))
                            .buffer(&f.buffer_with_meta(FRAME * i as u64, FRAME))
                            .build()
                    })
                    .collect();
                std::thread::spawn(move || {
                    for sample in samples {
                        src.push_sample(&sample).unwrap();
                    }
                    src.end_of_stream().unwrap();
                })
            })
            .collect();
        for p in pushers {
            p.join().unwrap();
        }
        let msg = pipeline
            .bus()
            .unwrap()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(30),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("EOS");
        assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
        for (s, frames) in streams.iter().enumerate() {
            let out = collected[s].lock().unwrap();
            assert_eq!(out.len(), frames.len(), "stream {s}");
            for (i, (sample, frame)) in out.iter().zip(frames).enumerate() {
                let meta = meta_of(sample).unwrap_or_else(|| panic!("stream {s} frame {i}"));
                let want = expected(&detector, &[frame]).remove(0);
                assert_same_verdict(
                    &meta.verdict,
                    &want,
                    &format!("shared {shared} stream {s} frame {i}"),
                );
            }
            let stats = by(&format!("u{s}")).property::<gst::Structure>("stats");
            assert_eq!(stats.get::<bool>("engine-shared").unwrap(), shared);
            let users = stats.get::<u32>("engine-users").unwrap();
            assert_eq!(users, if shared { 2 } else { 1 }, "{stats}");
            let engine_frames = stats.get::<u64>("engine-frames").unwrap();
            // Each element's warm-up frame plus its frames, and the other's if shared.
            let own = frames.len() as u64 + 1;
            assert_eq!(engine_frames, if shared { 2 * own } else { own }, "{stats}");
        }
        // One element stopping keeps the engine for the other.
        by("u0").set_state(gst::State::Null).unwrap();
        if shared {
            let engines = engines_of(&fx);
            assert_eq!(engines.len(), 1, "{engines:?}");
            assert_eq!(engines[0].users, 1);
        }
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(
            engines_of(&fx).is_empty(),
            "the engine is dropped once both elements stopped"
        );
    }
}

#[test]
fn engine_batches_requests_of_mixed_formats_and_sizes_correctly() {
    let fx = fixture();
    let detector = fx.detector();
    let engine = private_engine(&fx.detector_config(), 1, 1);
    let kb = engine.knowledge().clone();
    let formats = MIXED_FRAMES;
    let frames: Vec<Arc<OwnedFrame>> = (0..30)
        .map(|i| {
            let (f, w, h, pad) = formats[i % formats.len()];
            Arc::new(owned(SCENES[(i / 2) % 3], f, w, h, pad))
        })
        .collect();
    let answers = Arc::new(Mutex::new(vec![None; frames.len()]));
    // Requests of 1, 2 and 3 frames, all queued before the worker can take them one by one.
    let mut i = 0;
    let mut sizes = [1usize, 2, 3].into_iter().cycle();
    while i < frames.len() {
        let n = sizes.next().unwrap().min(frames.len() - i);
        let batch: Vec<Box<dyn FrameSource>> = frames[i..i + n]
            .iter()
            .map(|f| Box::new(f.clone()) as Box<dyn FrameSource>)
            .collect();
        let answers = answers.clone();
        let first = i;
        engine
            .submit(Request::new(batch, move |answer, _| {
                let analyses = answer.expect("analysed");
                assert_eq!(analyses.len(), n);
                let mut a = answers.lock().unwrap();
                for (k, analysis) in analyses.into_iter().enumerate() {
                    a[first + k] = Some(analysis);
                }
            }))
            .unwrap();
        i += n;
    }
    assert!(wait_for(Duration::from_secs(30), || answers
        .lock()
        .unwrap()
        .iter()
        .all(Option::is_some)));
    let stats = engine.stats();
    assert_eq!(stats.frames, frames.len() as u64);
    assert!(
        stats.largest_batch > 3,
        "requests were batched together: {stats:?}"
    );
    assert!(stats.batches < stats.requests, "{stats:?}");
    for (i, (analysis, frame)) in answers.lock().unwrap().iter().zip(&frames).enumerate() {
        let got = analysis
            .as_ref()
            .unwrap()
            .verdict(&kb, detector.thresholds());
        let want = detector
            .analyse_frames(&[frame.as_frame()])
            .unwrap()
            .remove(0);
        assert_same_verdict(&got, &want, &format!("frame {i} {:?}", frame.format));
    }
    // The same frames as one request of 30, over the batch cap (16): split, same answers.
    let all: Vec<Box<dyn FrameSource>> = frames
        .iter()
        .map(|f| Box::new(f.clone()) as Box<dyn FrameSource>)
        .collect();
    let (analyses, timing) = engine.analyse(all).unwrap();
    assert_eq!(timing.batch_frames, frames.len());
    for (i, (a, b)) in analyses
        .iter()
        .zip(answers.lock().unwrap().iter())
        .enumerate()
    {
        let b = b.as_ref().unwrap();
        assert_same_verdict(
            &a.verdict(&kb, &Thresholds::Global(0.5)),
            &b.verdict(&kb, &Thresholds::Global(0.5)),
            &format!("frame {i} in one large request"),
        );
    }
}

#[test]
fn cancelled_requests_are_skipped_and_errors_stay_with_their_request() {
    let fx = fixture();
    let engine = private_engine(&fx.detector_config(), 1, 1);
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stale = Generation::current(&counter);
    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let frame = Arc::new(owned(TinyScene::CleanRed, PixelFormat::Rgb, 32, 24, 0));
    let (tx, rx) = crossbeam_channel::unbounded();
    let tx2 = tx.clone();
    engine
        .submit(
            Request::new(vec![Box::new(frame.clone())], move |a, _| {
                tx.send(("stale", a)).unwrap()
            })
            .cancellable(stale),
        )
        .unwrap();
    // A frame whose planes are too short fails alone; a good frame in the same batch is fine.
    let mut bad = owned(TinyScene::CleanRed, PixelFormat::Rgb, 32, 24, 0);
    bad.planes[0].0.truncate(10);
    let tx3 = tx2.clone();
    engine
        .submit(Request::new(vec![Box::new(bad)], move |a, _| {
            tx2.send(("bad", a)).unwrap()
        }))
        .unwrap();
    engine
        .submit(Request::new(vec![Box::new(frame)], move |a, _| {
            tx3.send(("good", a)).unwrap()
        }))
        .unwrap();
    let mut got: Vec<_> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    got.sort_by_key(|(n, _)| *n);
    assert!(
        matches!(&got[0], ("bad", Err(e)) if e.contains("bytes")),
        "{got:?}"
    );
    assert!(
        matches!(&got[1], ("good", Ok(a)) if a.len() == 1),
        "{got:?}"
    );
    assert!(
        matches!(&got[2], ("stale", Err(e)) if e == engine::CANCELLED),
        "{got:?}"
    );
    assert_eq!(engine.stats().cancelled, 1);
}

#[test]
fn async_streams_share_the_engine_without_blocking() {
    let fx = fixture();
    let slow = fx.slow_classifier(4);
    let desc = |s: usize| {
        format!(
            "videotestsrc is-live=true num-buffers=40 pattern=ball ! \
             video/x-raw,format=RGBx,width=64,height=48,framerate=50/1 ! \
             unmask name=u{s} classifier={} extractor={} knowledge={} device=cpu threads=1 \
             mode=async ! fakesink sync=true",
            slow.display(),
            fx.models.extractor.display(),
            fx.models.knowledge.display()
        )
    };
    let pipeline = gst::parse::launch(&format!("{} {} {}", desc(0), desc(1), desc(2)))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    let mut batches = 0;
    let mut frames = 0;
    for s in 0..3 {
        let u = pipeline.by_name(&format!("u{s}")).unwrap();
        let stats = u.property::<gst::Structure>("stats");
        assert_eq!(stats.get::<u32>("engine-users").unwrap(), 3, "{stats}");
        assert_eq!(
            u64_prop(&u, "frames-analysed") + u64_prop(&u, "frames-dropped"),
            40,
            "{stats}"
        );
        assert!(u64_prop(&u, "frames-analysed") > 0, "{stats}");
        batches = stats.get::<u64>("engine-batches").unwrap();
        frames = stats.get::<u64>("engine-frames").unwrap();
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        frames > batches,
        "frames of several streams went into one forward pass: {frames} frames in {batches} batches"
    );
}

#[test]
fn a_full_request_queue_refuses_without_blocking_and_answers_what_it_took() {
    let fx = fixture();
    let mut config = fx.detector_config();
    // Tens of milliseconds per forward pass (of up to 16 frames): the queue fills far faster
    // than the worker empties it.
    config.classifier = fx.slow_classifier(8);
    let engine = private_engine(&config, 1, 1);
    let frame = Arc::new(owned(TinyScene::CleanRed, PixelFormat::Rgb, 32, 24, 0));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (mut queued, mut refused) = (0usize, 0usize);
    let start = std::time::Instant::now();
    for _ in 0..engine::REQUEST_QUEUE * 4 {
        let answered = answered.clone();
        let request = Request::new(vec![Box::new(frame.clone())], move |a, _| {
            a.expect("analysed");
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        match engine.submit(request) {
            Ok(()) => queued += 1,
            Err(engine::SubmitError::Full) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    // Submitting never waited for an analysis: the submissions take far less time than the
    // dozens of forward passes the queued ones need.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(refused > 0, "the queue never filled ({queued} queued)");
    assert!(queued >= engine::REQUEST_QUEUE, "{queued} queued");
    assert!(wait_for(Duration::from_secs(60), || answered
        .load(std::sync::atomic::Ordering::SeqCst)
        == queued));
}

#[test]
fn the_next_request_is_prepared_while_the_classifier_runs() {
    // Requests of one frame, of three (a pass of several frames also runs M and K side by
    // side on two threads), and of eight (which a pass without a queue would analyse in
    // shares, each thread M and K on half of them; with the next pass to prepare it runs
    // side by side, and both threads make the next pass's inputs, a frame at a time).
    for per_request in [1, 3, 8] {
        next_request_prepared_while_the_classifier_runs(per_request);
    }
}

fn next_request_prepared_while_the_classifier_runs(per_request: usize) {
    let fx = fixture();
    let detector = fx.detector();
    // A classifier much slower than the extractor: the extractor's thread is idle while M
    // runs and takes the next request from the queue.
    let mut config = fx.detector_config();
    config.classifier = fx.slow_classifier(12);
    let engine = private_engine(&config, 2, per_request);
    let kb = engine.knowledge().clone();
    let formats = [
        (PixelFormat::Bgrx, 64, 48),
        (PixelFormat::I420, 40, 30),
        (PixelFormat::Rgb, 33, 17),
    ];
    let frames: Vec<Arc<OwnedFrame>> = (0..12 * per_request)
        .map(|i| {
            let (f, w, h) = formats[i % formats.len()];
            Arc::new(owned(SCENES[i % 3], f, w, h, 0))
        })
        .collect();
    let requests = frames.len() / per_request;
    let submit = |i: usize| {
        let sources = frames[i * per_request..(i + 1) * per_request]
            .iter()
            .map(|f| Box::new(f.clone()) as Box<dyn FrameSource>)
            .collect();
        engine.analyse_later(sources).unwrap()
    };
    // Two requests in flight at a time, as the element's sync mode with pipeline-depth=2.
    let mut in_flight = std::collections::VecDeque::from([submit(0)]);
    // Let the engine start on the first request alone (the slow classifier takes several
    // milliseconds a frame): the second then waits in the queue instead of joining its pass.
    std::thread::sleep(Duration::from_millis(5));
    let mut answers = Vec::new();
    for i in 1..=requests {
        if i < requests {
            in_flight.push_back(submit(i));
        }
        let (analyses, _) = in_flight.pop_front().unwrap().wait().unwrap();
        assert_eq!(analyses.len(), per_request);
        answers.extend(analyses);
    }
    for (i, (analysis, frame)) in answers.iter().zip(&frames).enumerate() {
        let got = analysis.verdict(&kb, detector.thresholds());
        let want = detector
            .analyse_frames(&[frame.as_frame()])
            .unwrap()
            .remove(0);
        // The slow classifier only adds work: its logits are the tiny classifier's.
        assert_eq!(got.predicted, want.predicted, "frame {i} of {per_request}");
        assert_eq!(got.parts, want.parts, "frame {i} of {per_request}");
    }
    let stats = engine.stats();
    assert_eq!(stats.frames, frames.len() as u64);
    assert!(
        stats.prepared_ahead > 0,
        "no request of {per_request} was prepared ahead: {stats:?}"
    );
}

#[test]
fn an_idle_engine_analyses_on_the_calling_thread_and_a_busy_one_queues() {
    let fx = fixture();
    let detector = fx.detector();
    let engine = private_engine(&fx.detector_config(), 2, 1);
    let kb = engine.knowledge().clone();
    let frame = |i: usize| {
        Arc::new(owned(
            SCENES[i % 3],
            [PixelFormat::Rgbx, PixelFormat::I420][i % 2],
            64,
            48,
            2,
        ))
    };
    let want: Vec<_> = (0..21)
        .map(|i| {
            detector
                .analyse_frames(&[frame(i).as_frame()])
                .unwrap()
                .remove(0)
        })
        .collect();
    let thresholds = detector.thresholds().clone();
    let expect = |i: usize, got: &engine::Analysis| {
        let got = got.verdict(&kb, &thresholds);
        assert_same_verdict(&got, &want[i], &format!("frame {i}"));
    };
    let boxed = |i: usize| vec![Box::new(frame(i)) as Box<dyn FrameSource>];

    // Idle: the pass runs here, and its answer is there when the call returns.
    let (analyses, _) = engine.analyse_here(boxed(0)).unwrap().wait().unwrap();
    expect(0, &analyses[0]);
    assert_eq!(engine.stats().on_caller, 1);

    // Busy: a queued request holds the worker (its answer blocks until released), so the
    // next one is queued behind it and answered by the worker thread.
    let (release, released) = crossbeam_channel::bounded::<()>(0);
    let (held_tx, held) = crossbeam_channel::bounded(1);
    engine
        .submit(Request::new(boxed(1), move |answer, _| {
            held_tx.send(answer).unwrap();
            released.recv().unwrap();
        }))
        .unwrap();
    let first = held.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
    expect(1, &first[0]);
    let queued = engine.analyse_here(boxed(2)).unwrap();
    assert_eq!(
        engine.stats().on_caller,
        1,
        "not run here: the worker was busy"
    );
    release.send(()).unwrap();
    let (analyses, _) = queued.wait().unwrap();
    expect(2, &analyses[0]);

    // Several threads at once: each gets its own answers, whoever runs the pass.
    std::thread::scope(|s| {
        for t in 0..3 {
            let (engine, expect, boxed) = (&engine, &expect, &boxed);
            s.spawn(move || {
                for k in 0..6 {
                    let i = t * 6 + k;
                    let (analyses, _) = engine.analyse_here(boxed(i)).unwrap().wait().unwrap();
                    expect(i, &analyses[0]);
                }
            });
        }
    });
    assert_eq!(engine.stats().frames, 2 + 1 + 18);
}

#[test]
fn frozen_and_saved_models_get_engines_of_their_own() {
    let fx = fixture();
    let options = EngineOptions {
        threads: 1,
        batch: 4,
        shared: true,
    };
    let frozen = engine::acquire(&fx.detector_config(), &options).unwrap();
    let saved_config = DetectorConfig {
        freeze: false,
        ..fx.detector_config()
    };
    let saved = engine::acquire(&saved_config, &options).unwrap();
    assert!(!Arc::ptr_eq(&frozen, &saved));
    let again = engine::acquire(&fx.detector_config(), &options).unwrap();
    assert!(Arc::ptr_eq(&frozen, &again));
    assert!(saved.key().describe().ends_with(", models as saved"));
    assert!(!frozen.key().describe().contains("as saved"));
    assert_eq!(engines_of(&fx).len(), 2);
}

/// With a GPU: a CUDA engine pre-processes each pass's frames over its threads (whole frames,
/// or bands of one frame's rows) and queues both models before reading them back, and
/// answers every frame as the CPU detector does, in passes of 1 to 5 frames of mixed formats
/// and sizes. Without one, it says so and checks nothing.
#[test]
fn a_cuda_engine_pre_processes_over_its_threads_and_answers_as_the_cpu() {
    if !unmask::testing::cuda_or_say_skipped() {
        return;
    }
    let fx = fixture();
    let detector = fx.detector();
    let mut config = fx.detector_config();
    config.device = "cuda:0".into();
    let engine = private_engine(&config, 3, 5);
    assert!(engine.device().is_cuda());
    let described = engine.key().describe();
    assert!(
        described.contains("3 pre-processing threads"),
        "{described}"
    );
    let kb = engine.knowledge().clone();
    let formats = MIXED_FRAMES;
    let mut k = 0;
    for count in [1, 2, 3, 5] {
        let frames: Vec<Arc<OwnedFrame>> = (0..count)
            .map(|i| {
                let (f, w, h, pad) = formats[(k + i) % formats.len()];
                Arc::new(owned(SCENES[(k + i) % 3], f, w, h, pad))
            })
            .collect();
        k += count;
        let sources: Vec<Box<dyn FrameSource>> = frames
            .iter()
            .map(|f| Box::new(f.clone()) as Box<dyn FrameSource>)
            .collect();
        let (analyses, _) = engine.analyse(sources).unwrap();
        assert_eq!(analyses.len(), count);
        for (i, (analysis, frame)) in analyses.iter().zip(&frames).enumerate() {
            let want = detector
                .analyse_frames(&[frame.as_frame()])
                .unwrap()
                .remove(0);
            assert_same_verdict(
                &analysis.verdict(&kb, detector.thresholds()),
                &want,
                &format!("frame {i} of {count}, {:?}", frame.format),
            );
        }
    }
}
