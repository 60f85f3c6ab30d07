//! Lossless video clips: RGB frames in, Matroska/FFV1 (BGRx) out, and back.
//!
//! FFV1 stores BGRx losslessly, so an adversarial perturbation written to a clip reaches the
//! `unmask` element bit for bit (`filesrc ! matroskademux ! avdec_ffv1` gives back the same
//! pixels). Used by `unmask synth --video`, `unmask attack` and the tests.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use gst::prelude::*;
use gst_video::prelude::*;

/// Creates a GStreamer element, naming the plugin package when it is missing.
pub fn make_element(factory: &str) -> anyhow::Result<gst::Element> {
    gst::ElementFactory::make(factory).build().with_context(|| {
        format!(
            "GStreamer element {factory} is missing (install gstreamer1.0-plugins-base, -good \
             and gstreamer1.0-libav)"
        )
    })
}

/// Bytes per row of a packed RGB frame in GStreamer's default layout (rows padded to 4 bytes).
pub fn rgb_stride(width: u32) -> usize {
    (3 * width as usize).div_ceil(4) * 4
}

/// Writes RGB frames to a lossless Matroska/FFV1 clip through `appsrc`.
pub struct ClipWriter {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    width: u32,
    height: u32,
    fps: u32,
    frames: u64,
}

impl ClipWriter {
    /// Starts writing a `width x height` clip at `fps` frames per second to `path`.
    pub fn create(path: &Path, width: u32, height: u32, fps: u32) -> anyhow::Result<Self> {
        gst::init().context("initialise GStreamer")?;
        if width == 0 || height == 0 || fps == 0 {
            bail!("a clip needs a positive size and frame rate");
        }
        let pipeline = gst::Pipeline::new();
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", width as i32)
            .field("height", height as i32)
            .field("framerate", gst::Fraction::new(fps as i32, 1))
            .build();
        let src = gst_app::AppSrc::builder()
            .caps(&caps)
            .format(gst::Format::Time)
            .block(true)
            .build();
        let convert = make_element("videoconvert")?;
        // FFV1 takes BGRx losslessly; without this videoconvert would pick subsampled I420.
        let lossless = make_element("capsfilter")?;
        lossless.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "BGRx")
                .build(),
        );
        let encoder = make_element("avenc_ffv1")?;
        let mux = make_element("matroskamux")?;
        let sink = make_element("filesink")?;
        sink.set_property("location", path.to_string_lossy().to_string());
        let chain = [src.upcast_ref(), &convert, &lossless, &encoder, &mux, &sink];
        pipeline.add_many(chain)?;
        gst::Element::link_many(chain)?;
        pipeline
            .set_state(gst::State::Playing)
            .with_context(|| format!("start writing {}", path.display()))?;
        Ok(Self {
            pipeline,
            src,
            width,
            height,
            fps,
            frames: 0,
        })
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Appends one frame of tightly packed RGB bytes (`width * height * 3`).
    pub fn push_rgb(&mut self, rgb: &[u8]) -> anyhow::Result<()> {
        let (w, h) = (self.width as usize, self.height as usize);
        if rgb.len() != w * h * 3 {
            bail!(
                "frame {} has {} bytes, expected {}x{}x3",
                self.frames,
                rgb.len(),
                w,
                h
            );
        }
        let stride = rgb_stride(self.width);
        let data = if stride == 3 * w {
            rgb.to_vec()
        } else {
            let mut d = vec![0u8; stride * h];
            for (dst, src) in d.chunks_exact_mut(stride).zip(rgb.chunks_exact(3 * w)) {
                dst[..src.len()].copy_from_slice(src);
            }
            d
        };
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().expect("new buffer is writable");
            let fps = u64::from(self.fps);
            b.set_pts(gst::ClockTime::from_nseconds(
                self.frames * 1_000_000_000 / fps,
            ));
            b.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / fps));
            b.set_offset(self.frames);
        }
        self.src
            .push_buffer(buffer)
            .map_err(|e| anyhow!("write frame {}: {e:?}", self.frames))?;
        self.frames += 1;
        Ok(())
    }

    /// Ends the clip and waits until it is written.
    pub fn finish(self) -> anyhow::Result<u64> {
        self.src
            .end_of_stream()
            .map_err(|e| anyhow!("end of stream: {e:?}"))?;
        let result = wait_for_eos(&self.pipeline);
        self.pipeline.set_state(gst::State::Null)?;
        result.map(|()| self.frames)
    }
}

impl Drop for ClipWriter {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Waits for EOS or an error on a pipeline's bus.
pub fn wait_for_eos(pipeline: &gst::Pipeline) -> anyhow::Result<()> {
    let bus = pipeline.bus().context("pipeline bus")?;
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(..) => return Ok(()),
            gst::MessageView::Error(e) => {
                bail!("{} ({})", e.error(), e.debug().unwrap_or_default())
            }
            _ => {}
        }
    }
    Ok(())
}

/// The first error message waiting on a pipeline's bus, if any.
pub fn bus_error(pipeline: &gst::Pipeline) -> Option<anyhow::Error> {
    let msg = pipeline.bus()?.pop_filtered(&[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => {
            Some(anyhow!("{} ({})", e.error(), e.debug().unwrap_or_default()))
        }
        _ => None,
    }
}

/// A decoded frame: tightly packed RGB bytes and its timestamp.
#[derive(Debug, Clone)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
    pub pts: Option<gst::ClockTime>,
    pub rgb: Vec<u8>,
}

/// Decodes every frame of a video file (any format GStreamer reads) to RGB.
pub fn read_rgb_frames(path: &Path) -> anyhow::Result<Vec<RgbFrame>> {
    gst::init().context("initialise GStreamer")?;
    let location = path
        .canonicalize()
        .with_context(|| format!("{}", path.display()))?;
    let desc = "filesrc name=src ! decodebin ! videoconvert ! video/x-raw,format=RGB ! \
                appsink name=sink sync=false";
    let pipeline = gst::parse::launch(desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
    let src = pipeline.by_name("src").context("filesrc")?;
    src.set_property("location", location.to_string_lossy().to_string());
    let sink = pipeline
        .by_name("sink")
        .context("appsink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow!("not an appsink"))?;
    pipeline.set_state(gst::State::Playing)?;
    let mut frames = Vec::new();
    let result = loop {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) else {
            break if sink.is_eos() {
                Ok(())
            } else {
                // An error (or a stall): report what the bus says.
                Err(bus_error(&pipeline).unwrap_or_else(|| anyhow!("decoding stalled")))
            };
        };
        let caps = sample.caps().context("sample without caps")?;
        let info = gst_video::VideoInfo::from_caps(caps)?;
        let buffer = sample.buffer().context("sample without buffer")?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|_| anyhow!("cannot map a frame"))?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        let stride = frame.plane_stride()[0] as usize;
        let data = frame.plane_data(0)?;
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            rgb.extend_from_slice(&data[y * stride..][..w * 3]);
        }
        frames.push(RgbFrame {
            width: info.width(),
            height: info.height(),
            pts: buffer.pts(),
            rgb,
        });
    };
    pipeline.set_state(gst::State::Null)?;
    result.with_context(|| format!("decode {}", path.display()))?;
    Ok(frames)
}
