//! Frames to canonical images and to model inputs on the CPU, in Rust.
//!
//! The cropped region is read in place and resized 8-bit with [`crate::resample`]
//! (libtorch's antialiased uint8 algorithm, bit for bit); then one pass over the small result
//! converts the colour, applies the model's normalisation and writes the values straight
//! into the tensor, in the model's memory layout. The arithmetic per value is the tensor
//! path's ([`super::planes_to_images`], [`crate::model::Model::prepare`]), operation for
//! operation, so the results are the same to the bit.

use std::ops::Range;

use tch::{Device, Kind, Tensor};

use super::{Frame, FrameError, PixelFormat, Scaling, YuvColor, source_region};
use crate::fork_join::ForkJoin;
use crate::resample::{resize_interleaved_rows, resize_plane_rows};

/// Memory layout of a model's input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMemory {
    /// `[N,3,H,W]`, contiguous.
    Nchw,
    /// `[N,3,H,W]` with channels-last strides (`[N,H,W,3]` in memory).
    ChannelsLast,
    /// `[N,H,W,3]`, contiguous.
    Nhwc,
}

/// What a model's input looks like and how canonical pixels (RGB in `[0,1]`) become its
/// values (see [`crate::model::Model::input_format`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputFormat {
    /// Height and width.
    pub size: (i64, i64),
    /// Per input channel, `value = canonical * scale + offset` (float inputs).
    pub scale: [f32; 3],
    pub offset: [f32; 3],
    /// Input channels in B, G, R order.
    pub bgr: bool,
    /// Bytes `round(canonical * 255)` instead of floats.
    pub uint8: bool,
    pub memory: InputMemory,
}

impl InputFormat {
    /// The canonical image's own format: RGB floats in `[0,1]`, NCHW, at `size`.
    pub fn canonical(size: (i64, i64)) -> Self {
        Self {
            size,
            scale: [1.0; 3],
            offset: [0.0; 3],
            bgr: false,
            uint8: false,
            memory: InputMemory::Nchw,
        }
    }

    fn kind(&self) -> Kind {
        if self.uint8 { Kind::Uint8 } else { Kind::Float }
    }

    fn shape(&self, n: i64) -> [i64; 4] {
        let (h, w) = self.size;
        match self.memory {
            InputMemory::Nchw => [n, 3, h, w],
            InputMemory::ChannelsLast | InputMemory::Nhwc => [n, h, w, 3],
        }
    }

    /// The canonical channel input channel `c` takes.
    #[inline(always)]
    fn source(&self, c: usize) -> usize {
        if self.bgr { 2 - c } else { c }
    }
}

/// One frame (or a band of its rows) cropped and resized to a model's input size, still
/// 8-bit.
enum Resized {
    /// RGB, 3 bytes a pixel.
    Rgb(Vec<u8>),
    /// Luma, 1 byte a pixel, and chroma, Cb and Cr a pixel.
    Yuv {
        luma: Vec<u8>,
        chroma: Vec<u8>,
        convert: YuvToRgb,
    },
}

impl Resized {
    /// `frame` (validated) cropped as `scaling` says and resized to `size`: its output rows
    /// `rows` (the whole image resizes each row the same way).
    fn rows(frame: &Frame<'_>, size: (i64, i64), scaling: Scaling, rows: Range<usize>) -> Self {
        let out = (size.1 as usize, size.0 as usize);
        let (x0, y0, cw, ch) = source_region(frame.width, frame.height, size, scaling);
        // The crop of plane `i` subsampled by `sub`: its bytes from the first pixel on.
        let crop = |i: usize, sub: usize, bpp: usize| {
            let p = &frame.planes[i];
            let start = (y0 / sub) * p.stride + (x0 / sub) * bpp;
            (
                &p.data[start..],
                p.stride,
                (cw.div_ceil(sub), ch.div_ceil(sub)),
            )
        };
        if let Some((bpp, rgb)) = frame.format.packed_layout() {
            let (data, stride, size) = crop(0, 1, bpp);
            return Self::Rgb(resize_interleaved_rows(
                data, stride, bpp, &rgb, size, out, rows,
            ));
        }
        let (data, stride, size) = crop(0, 1, 1);
        let luma = resize_plane_rows(data, stride, size, out, rows.clone());
        let chroma = match frame.format {
            PixelFormat::I420 => {
                let ((u, us, size), (v, vs, _)) = (crop(1, 2, 1), crop(2, 2, 1));
                let (u, v) = (
                    resize_plane_rows(u, us, size, out, rows.clone()),
                    resize_plane_rows(v, vs, size, out, rows),
                );
                u.iter().zip(&v).flat_map(|(&u, &v)| [u, v]).collect()
            }
            _ => {
                let (data, stride, size) = crop(1, 2, 2);
                resize_interleaved_rows(data, stride, 2, &[0, 1], size, out, rows)
            }
        };
        Self::Yuv {
            luma,
            chroma,
            convert: YuvToRgb::new(frame.color),
        }
    }

    /// The canonical image, RGB values in `[0,1]` pixel by pixel.
    fn canonical(&self) -> Vec<f32> {
        match self {
            // `to_kind(Float) * (1.0 / 255.0)`: the scalar rounded to float.
            Self::Rgb(rgb) => rgb
                .iter()
                .map(|&v| f32::from(v) * (1.0f64 / 255.0) as f32)
                .collect(),
            Self::Yuv {
                luma,
                chroma,
                convert,
            } => luma
                .iter()
                .zip(chroma.chunks_exact(2))
                .flat_map(|(&y, c)| convert.rgb(y, c[0], c[1]))
                .collect(),
        }
    }
}

/// [`super::yuv_to_rgb`]'s arithmetic for one pixel (its scalars rounded to float, as
/// libtorch does for a float tensor).
#[derive(Debug, Clone, Copy)]
struct YuvToRgb {
    scaled: &'static ScaledYuv,
    rv: f32,
    gu: f32,
    gv: f32,
    bu: f32,
}

impl YuvToRgb {
    fn new(color: YuvColor) -> Self {
        let (rv, gu, gv, bu) = color.matrix.coefficients();
        Self {
            scaled: if color.full_range {
                &FULL_RANGE
            } else {
                &LIMITED_RANGE
            },
            rv: rv as f32,
            gu: gu as f32,
            gv: gv as f32,
            bu: bu as f32,
        }
    }

    #[inline(always)]
    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [f32; 3] {
        let y = self.scaled.luma[usize::from(y)];
        let (cb, cr) = (
            self.scaled.chroma[usize::from(cb)],
            self.scaled.chroma[usize::from(cr)],
        );
        let r = y + cr * self.rv;
        let g = y - cb * self.gu - cr * self.gv;
        let b = y + cb * self.bu;
        [r, g, b].map(|v| v.clamp(0.0, 1.0))
    }
}

/// The first step of [`super::yuv_to_rgb`] for every byte value, in float: luma `y / 255`
/// (full range) or `(y - 16) / 219` (limited), chroma `(c - 128) / 255` or `(c - 128) /
/// 224`. Made at compile time, each entry the same correctly rounded division, so a
/// pixel's conversion does not divide.
#[derive(Debug)]
struct ScaledYuv {
    luma: [f32; 256],
    chroma: [f32; 256],
}

impl ScaledYuv {
    const fn new(full_range: bool) -> Self {
        let (mut luma, mut chroma) = ([0f32; 256], [0f32; 256]);
        let mut byte = 0;
        while byte < 256 {
            let v = byte as f32;
            (luma[byte], chroma[byte]) = if full_range {
                (v / 255.0, (v - 128.0) / 255.0)
            } else {
                ((v - 16.0) / 219.0, (v - 128.0) / 224.0)
            };
            byte += 1;
        }
        Self { luma, chroma }
    }
}

static FULL_RANGE: ScaledYuv = ScaledYuv::new(true);
static LIMITED_RANGE: ScaledYuv = ScaledYuv::new(false);

/// Frames (of any formats) in `formats`, one tensor each, on the CPU: each frame is resized
/// once per distinct input size, then every tensor that size takes its values in one pass.
pub fn frames_to_inputs(
    frames: &[Frame<'_>],
    formats: &[InputFormat],
    scaling: Scaling,
) -> Result<Vec<Tensor>, FrameError> {
    frames_to_inputs_on(frames, formats, scaling, None)
}

/// [`frames_to_inputs`], with each frame in bands of rows over the threads of `fork` if
/// there is one: each thread resizes its band, converts it and writes it into the tensors
/// (the same values: bands are resized as the whole image is). Nothing is left to join on
/// the calling thread (measured with the shipped models, one 640x480 frame on two threads:
/// 90 -> 80 µs for BGRx and 80 -> 70 µs for I420 in the engine).
pub fn frames_to_inputs_on(
    frames: &[Frame<'_>],
    formats: &[InputFormat],
    scaling: Scaling,
    fork: Option<&ForkJoin>,
) -> Result<Vec<Tensor>, FrameError> {
    for f in frames {
        f.validate()?;
    }
    let n = frames.len();
    let tensors: Vec<Tensor> = formats
        .iter()
        .map(|f| Tensor::empty(f.shape(n as i64), (f.kind(), Device::Cpu)))
        .collect();
    let outputs: Vec<Output> = tensors.iter().zip(formats).map(Output::new).collect();
    let mut sizes: Vec<(i64, i64)> = Vec::new();
    for f in formats {
        if !sizes.contains(&f.size) {
            sizes.push(f.size);
        }
    }
    for (i, frame) in frames.iter().enumerate() {
        for &size in &sizes {
            // Output rows `rows` of frame `i` at `size`, resized and written into every
            // tensor of that size.
            let write_rows = |rows: Range<usize>| {
                let first_pixel = rows.start * size.1 as usize;
                let canonical = Resized::rows(frame, size, scaling, rows).canonical();
                for output in outputs.iter().filter(|o| o.format.size == size) {
                    output.write(&canonical, i, first_pixel);
                }
            };
            let height = size.0 as usize;
            match fork {
                Some(fork) if fork.width() > 1 && height > 1 => {
                    let bands = fork.width().min(height);
                    let jobs: Vec<_> = (0..bands)
                        .map(|b| {
                            let rows = height * b / bands..height * (b + 1) / bands;
                            move || write_rows(rows)
                        })
                        .collect();
                    fork.run(jobs);
                }
                _ => write_rows(0..height),
            }
        }
    }
    Ok(tensors
        .into_iter()
        .zip(formats)
        .map(|(t, f)| match f.memory {
            InputMemory::ChannelsLast => t.permute([0, 3, 1, 2]),
            _ => t,
        })
        .collect())
}

/// A model input tensor just allocated by [`frames_to_inputs_on`], written by the threads of
/// one pre-processing, each to pixels of its own.
#[derive(Clone, Copy)]
struct Output {
    data: *mut u8,
    numel: usize,
    format: InputFormat,
}

// SAFETY: the tensor outlives every `write`, and concurrent writes go to disjoint pixels
// (`write` makes slices over exactly the values of its pixels).
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

impl Output {
    /// `tensor`: contiguous, on the CPU, in `format`'s shape and kind, not shared yet.
    fn new((tensor, format): (&Tensor, &InputFormat)) -> Self {
        Self {
            data: tensor.data_ptr() as *mut u8,
            numel: tensor.numel(),
            format: *format,
        }
    }

    /// Pixels `first_pixel..` of image `n` (as many as `canonical` has) from their canonical
    /// RGB values, in the tensor's layout and kind.
    fn write(&self, canonical: &[f32], n: usize, first_pixel: usize) {
        let format = &self.format;
        let source = [0, 1, 2].map(|c| format.source(c));
        if format.uint8 {
            // `(x * 255.0).round().clamp(0.0, 255.0).to_kind(Uint8)`.
            self.fill(canonical, n, first_pixel, |c, rgb: &[f32; 3]| {
                (rgb[source[c]] * 255.0).round_ties_even().clamp(0.0, 255.0) as u8
            });
        } else {
            // `x * scale + offset`, two roundings.
            let (scale, offset) = (format.scale, format.offset);
            self.fill(canonical, n, first_pixel, |c, rgb: &[f32; 3]| {
                rgb[source[c]] * scale[c] + offset[c]
            });
        }
    }

    /// Writes `value(channel, canonical RGB)` for each channel of the pixels of `canonical`.
    fn fill<T>(
        &self,
        canonical: &[f32],
        n: usize,
        first_pixel: usize,
        value: impl Fn(usize, &[f32; 3]) -> T,
    ) {
        let (canonical, _) = canonical.as_chunks::<3>();
        let count = canonical.len();
        let image_pixels = (self.format.size.0 * self.format.size.1) as usize;
        assert_eq!(
            self.format.uint8,
            std::mem::size_of::<T>() == 1,
            "values of another kind than the input tensor's"
        );
        assert!(
            first_pixel + count <= image_pixels && (n + 1) * image_pixels * 3 <= self.numel,
            "pixels outside the input tensor"
        );
        let data = self.data as *mut T;
        // SAFETY (both arms): in bounds (asserted above) of the tensor's storage of `T`
        // values, which outlives this call; the slices cover exactly the values of these
        // pixels, which no other thread writes or reads meanwhile.
        match self.format.memory {
            InputMemory::ChannelsLast | InputMemory::Nhwc => {
                let start = (n * image_pixels + first_pixel) * 3;
                let out = unsafe { std::slice::from_raw_parts_mut(data.add(start), count * 3) };
                for (o, rgb) in out.as_chunks_mut::<3>().0.iter_mut().zip(canonical) {
                    *o = [0, 1, 2].map(|c| value(c, rgb));
                }
            }
            InputMemory::Nchw => {
                for c in 0..3 {
                    let start = (n * 3 + c) * image_pixels + first_pixel;
                    let plane = unsafe { std::slice::from_raw_parts_mut(data.add(start), count) };
                    for (o, rgb) in plane.iter_mut().zip(canonical) {
                        *o = value(c, rgb);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::YuvMatrix;

    /// Each pixel's conversion equals [`super::super::yuv_to_rgb`]'s (libtorch's float
    /// arithmetic) bit for bit, in both ranges, with every byte value in each of luma, blue
    /// and red chroma.
    #[test]
    fn the_conversion_of_every_byte_equals_libtorchs() {
        let bytes = |f: fn(usize, usize) -> usize| -> Vec<u8> {
            (0..256 * 256).map(|p| f(p / 256, p % 256) as u8).collect()
        };
        let (y, cb, cr) = (
            bytes(|i, _| i),
            bytes(|_, j| j),
            bytes(|i, j| (255 - j + 3 * i) % 256),
        );
        let plane = |v: &[u8]| {
            Tensor::from_slice(v)
                .to_kind(Kind::Float)
                .view([1, 1, 256, 256])
        };
        let uv = Tensor::cat(&[plane(&cb), plane(&cr)], 1);
        for color in [
            YuvColor::default(),
            YuvColor {
                matrix: YuvMatrix::Bt709,
                full_range: true,
            },
        ] {
            let expected = super::super::yuv_to_rgb(&plane(&y), &uv, color);
            let expected = Vec::<f32>::try_from(expected.permute([0, 2, 3, 1]).flatten(0, -1))
                .expect("float tensor");
            let convert = YuvToRgb::new(color);
            let ours: Vec<f32> = (0..y.len())
                .flat_map(|p| convert.rgb(y[p], cb[p], cr[p]))
                .collect();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(bits(&ours) == bits(&expected), "{color:?}");
        }
    }
}
