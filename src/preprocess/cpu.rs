//! Frames to canonical images and to model inputs on the CPU, in Rust.
//!
//! The cropped region is read in place and resized 8-bit with [`crate::resample`]
//! (libtorch's antialiased uint8 algorithm, bit for bit); then one pass over the small result
//! converts the colour, applies the model's normalisation and writes the values straight
//! into the tensor, in the model's memory layout. The arithmetic per value is the tensor
//! path's ([`super::planes_to_images`], [`crate::model::Model::prepare`]), operation for
//! operation, so the results are the same to the bit.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

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
            } => convert.pixels(luma, chroma),
        }
    }
}

/// [`super::yuv_to_rgb`]'s arithmetic (its scalars rounded to float, as libtorch does for
/// a float tensor).
#[derive(Debug, Clone, Copy)]
struct YuvToRgb {
    /// Luma is `(y - luma_from) / luma_over`, chroma `(c - 128) / chroma_over`: luma `y /
    /// 255` (full range, `y - 0` is `y` exactly) or `(y - 16) / 219` (limited), chroma `(c -
    /// 128) / 255` or `(c - 128) / 224`.
    luma_from: f32,
    luma_over: f32,
    chroma_over: f32,
    rv: f32,
    gu: f32,
    gv: f32,
    bu: f32,
}

impl YuvToRgb {
    fn new(color: YuvColor) -> Self {
        let (rv, gu, gv, bu) = color.matrix.coefficients();
        let (luma_from, luma_over, chroma_over) = if color.full_range {
            (0.0, 255.0, 255.0)
        } else {
            (16.0, 219.0, 224.0)
        };
        Self {
            luma_from,
            luma_over,
            chroma_over,
            rv: rv as f32,
            gu: gu as f32,
            gv: gv as f32,
            bu: bu as f32,
        }
    }

    /// One pixel.
    #[inline(always)]
    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [f32; 3] {
        let y = (f32::from(y) - self.luma_from) / self.luma_over;
        let (cb, cr) = (self.chroma(cb), self.chroma(cr));
        let r = y + cr * self.rv;
        let g = y - cb * self.gu - cr * self.gv;
        let b = y + cb * self.bu;
        [r.clamp(0.0, 1.0), g.clamp(0.0, 1.0), b.clamp(0.0, 1.0)]
    }

    #[inline(always)]
    fn chroma(&self, c: u8) -> f32 {
        (f32::from(c) - 128.0) / self.chroma_over
    }

    /// The pixels of `luma` with their interleaved chroma (Cb, Cr), three values a pixel,
    /// [`PATTERN_PIXELS`] at a time in a loop the compiler vectorises, divisions included
    /// (a pixel at a time through look-up tables, 640x480 I420 spent about a tenth of its
    /// pre-processing on one thread here). The rest go a pixel at a time.
    fn pixels(&self, luma: &[u8], chroma: &[u8]) -> Vec<f32> {
        const N: usize = PATTERN_PIXELS;
        assert_eq!(chroma.len(), 2 * luma.len(), "two chroma bytes a pixel");
        let mut rgb = vec![0.0; luma.len() * 3];
        let (out_blocks, out_rest) = rgb.as_chunks_mut::<{ 3 * N }>();
        let (luma_blocks, luma_rest) = luma.as_chunks::<N>();
        let (chroma_blocks, chroma_rest) = chroma.as_chunks::<{ 2 * N }>();
        let blocks = out_blocks.iter_mut().zip(luma_blocks).zip(chroma_blocks);
        for ((out, luma), chroma) in blocks {
            for (i, out) in out.as_chunks_mut::<3>().0.iter_mut().enumerate() {
                *out = self.rgb(luma[i], chroma[2 * i], chroma[2 * i + 1]);
            }
        }
        let rest = out_rest.as_chunks_mut::<3>().0.iter_mut();
        for ((out, &y), c) in rest.zip(luma_rest).zip(chroma_rest.as_chunks::<2>().0) {
            *out = self.rgb(y, c[0], c[1]);
        }
        rgb
    }
}

/// Frames (of any formats) in `formats`, one tensor each, on the CPU: each frame is resized
/// once per distinct input size, then every tensor that size takes its values in one pass.
pub fn frames_to_inputs(
    frames: &[Frame<'_>],
    formats: &[InputFormat],
    scaling: Scaling,
) -> Result<Vec<Tensor>, FrameError> {
    frames_to_inputs_on(frames, formats, scaling, None)
}

/// [`frames_to_inputs`] over the threads of `fork`, if there is one. The work is split into
/// pieces, each a band of one frame's rows at one input size, that the threads take in turn
/// until none is left, in a single fork-join: whole frames when their count is a multiple of
/// the threads', otherwise each frame in as many bands as it takes for the pieces to divide
/// evenly (but no band under [`MIN_BAND_ROWS`] rows). Each thread resizes its piece,
/// converts it and writes it into the tensors (the same values: bands are resized as the
/// whole image is), so nothing is left to join on the calling thread. Measured with the
/// shipped models' input format on two threads, 640x480 BGRx: one frame 142 -> 72 µs, 16
/// frames 2128 -> 1124 µs (1214 frame by frame in bands); I420 16 frames 1987 -> 970 µs.
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
    // Output rows `rows` of frame `i` at `size`, resized and written into every tensor of
    // that size.
    let write_rows = |i: usize, size: (i64, i64), rows: Range<usize>| {
        let first_pixel = rows.start * size.1 as usize;
        let canonical = Resized::rows(&frames[i], size, scaling, rows).canonical();
        for output in outputs.iter().filter(|o| o.format.size == size) {
            output.write(&canonical, i, first_pixel);
        }
    };
    let threads = fork.map_or(1, ForkJoin::width);
    match fork {
        Some(fork) if threads > 1 && n > 0 => {
            let pieces = Pieces::new(n, &sizes, threads);
            let next = AtomicUsize::new(0);
            let take_pieces = || {
                while let Some((i, size, rows)) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if !rows.is_empty() {
                        write_rows(i, size, rows);
                    }
                }
            };
            fork.run(vec![&take_pieces; threads.min(pieces.len())]);
        }
        _ => {
            for i in 0..n {
                for &size in &sizes {
                    write_rows(i, size, 0..size.0 as usize);
                }
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

/// The fewest output rows in a band of a frame split over threads: each band also resizes
/// the input rows its first and last output rows share with the next band, and with 8 rows
/// of 64 that is under a quarter more work (the shipped models' inputs at 640x480).
pub const MIN_BAND_ROWS: usize = 8;

/// The most bands a frame is split into, whatever the threads.
const MAX_BANDS: usize = 64;

/// The pieces of one pre-processing over threads: frame by frame, size by size, band by band.
struct Pieces<'a> {
    frames: usize,
    sizes: &'a [(i64, i64)],
    /// Bands per frame and size (the rows of a small input may allow fewer).
    bands: usize,
}

impl<'a> Pieces<'a> {
    /// Enough bands a frame for the pieces to divide evenly over `threads`: `threads` over
    /// the greatest common divisor of it and the frames (1 when the frames divide evenly).
    fn new(frames: usize, sizes: &'a [(i64, i64)], threads: usize) -> Self {
        let gcd = |mut a: usize, mut b: usize| {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        Self {
            frames,
            sizes,
            bands: (threads / gcd(frames, threads).max(1)).clamp(1, MAX_BANDS),
        }
    }

    fn len(&self) -> usize {
        self.frames * self.sizes.len() * self.bands
    }

    /// Piece `k`: its frame, input size and output rows (empty for a band past the last one
    /// its size's rows allow); `None` past the last piece.
    fn get(&self, k: usize) -> Option<(usize, (i64, i64), Range<usize>)> {
        if k >= self.len() {
            return None;
        }
        let per_frame = self.sizes.len() * self.bands;
        let (i, rest) = (k / per_frame, k % per_frame);
        let (size, band) = (self.sizes[rest / self.bands], rest % self.bands);
        let height = size.0 as usize;
        let bands = self.bands.min(height / MIN_BAND_ROWS).max(1);
        let rows = if band < bands {
            height * band / bands..height * (band + 1) / bands
        } else {
            0..0
        };
        Some((i, size, rows))
    }
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
        let interleaved = matches!(format.memory, InputMemory::ChannelsLast | InputMemory::Nhwc);
        if format.uint8 {
            // `(x * 255.0).round().clamp(0.0, 255.0).to_kind(Uint8)`.
            self.fill(canonical, n, first_pixel, |c, rgb: &[f32; 3]| {
                (rgb[source[c]] * 255.0).round_ties_even().clamp(0.0, 255.0) as u8
            });
        } else if interleaved && !format.bgr {
            self.normalise_interleaved(canonical, n, first_pixel);
        } else {
            // `x * scale + offset`, two roundings.
            let (scale, offset) = (format.scale, format.offset);
            self.fill(canonical, n, first_pixel, |c, rgb: &[f32; 3]| {
                rgb[source[c]] * scale[c] + offset[c]
            });
        }
    }

    /// `x * scale + offset` (two roundings) for RGB values in RGB order, interleaved in and
    /// out: one run of values, [`PATTERN_PIXELS`] pixels at a time against the channels'
    /// scales and offsets repeated as often, which the compiler vectorises without shuffles.
    /// Pixel by pixel, the conversion to float and this took about a fifth of a 640x480
    /// BGRx frame's pre-processing on one thread (`perf`), now about a twentieth.
    fn normalise_interleaved(&self, canonical: &[f32], n: usize, first_pixel: usize) {
        const VALUES: usize = 3 * PATTERN_PIXELS;
        let (scale, offset) = (self.format.scale, self.format.offset);
        let scales: [f32; VALUES] = std::array::from_fn(|j| scale[j % 3]);
        let offsets: [f32; VALUES] = std::array::from_fn(|j| offset[j % 3]);
        let out = self.interleaved_values::<f32>(n, first_pixel, canonical.len() / 3);
        let (out_runs, out_rest) = out.as_chunks_mut::<VALUES>();
        let (in_runs, in_rest) = canonical.as_chunks::<VALUES>();
        for (o, x) in out_runs.iter_mut().zip(in_runs) {
            for j in 0..VALUES {
                o[j] = x[j] * scales[j] + offsets[j];
            }
        }
        for (j, (o, x)) in out_rest.iter_mut().zip(in_rest).enumerate() {
            *o = x * scales[j] + offsets[j];
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
        match self.format.memory {
            InputMemory::ChannelsLast | InputMemory::Nhwc => {
                let out = self.interleaved_values::<T>(n, first_pixel, count);
                // Each value by its own call: `[0, 1, 2].map(..)` stayed a function call
                // per pixel, never inlined.
                for (o, rgb) in out.as_chunks_mut::<3>().0.iter_mut().zip(canonical) {
                    *o = [value(0, rgb), value(1, rgb), value(2, rgb)];
                }
            }
            InputMemory::Nchw => {
                let start = self.checked_start::<T>(n, first_pixel, count);
                let image_pixels = self.image_pixels();
                let data = self.data as *mut T;
                for c in 0..3 {
                    let start = start + c * image_pixels;
                    // SAFETY: in bounds (checked), the tensor's storage of `T` values
                    // outlives this call, and no other thread writes or reads these values
                    // meanwhile.
                    let plane = unsafe { std::slice::from_raw_parts_mut(data.add(start), count) };
                    for (o, rgb) in plane.iter_mut().zip(canonical) {
                        *o = value(c, rgb);
                    }
                }
            }
        }
    }

    fn image_pixels(&self) -> usize {
        (self.format.size.0 * self.format.size.1) as usize
    }

    /// The index of the first value of pixel `first_pixel` of image `n` (of its first channel
    /// in planar layout), after checking that `count` pixels from it lie inside the image and
    /// the tensor holds `T` values.
    fn checked_start<T>(&self, n: usize, first_pixel: usize, count: usize) -> usize {
        let image_pixels = self.image_pixels();
        assert_eq!(
            self.format.uint8,
            std::mem::size_of::<T>() == 1,
            "values of another kind than the input tensor's"
        );
        assert!(
            first_pixel + count <= image_pixels && (n + 1) * image_pixels * 3 <= self.numel,
            "pixels outside the input tensor"
        );
        match self.format.memory {
            InputMemory::ChannelsLast | InputMemory::Nhwc => (n * image_pixels + first_pixel) * 3,
            InputMemory::Nchw => n * 3 * image_pixels + first_pixel,
        }
    }

    /// The values of `count` pixels from pixel `first_pixel` of image `n` of an interleaved
    /// tensor.
    #[allow(clippy::mut_from_ref)]
    fn interleaved_values<T>(&self, n: usize, first_pixel: usize, count: usize) -> &mut [T] {
        debug_assert!(matches!(
            self.format.memory,
            InputMemory::ChannelsLast | InputMemory::Nhwc
        ));
        let start = self.checked_start::<T>(n, first_pixel, count);
        // SAFETY: in bounds (checked) of the tensor's storage of `T` values, which outlives
        // this call; the slice covers exactly the values of these pixels, which no other
        // thread writes or reads meanwhile (each writes pixels of its own).
        unsafe { std::slice::from_raw_parts_mut((self.data as *mut T).add(start), count * 3) }
    }
}

/// Pixels at a time in the loops the compiler vectorises ([`Output::normalise_interleaved`],
/// [`YuvToRgb::pixels`]): 48 values, whole vectors of any width up to 512 bits.
const PATTERN_PIXELS: usize = 16;

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
            // The vectorised blocks and the pixels after the last whole block (3 here).
            let chroma: Vec<u8> = cb.iter().zip(&cr).flat_map(|(&b, &r)| [b, r]).collect();
            for pixels in [y.len(), y.len() - 3] {
                let rows = convert.pixels(&y[..pixels], &chroma[..2 * pixels]);
                assert!(
                    bits(&rows) == bits(&expected[..3 * pixels]),
                    "{color:?}, {pixels} pixels"
                );
            }
        }
    }

    /// The pieces cover each row of each frame at each size exactly once, come in a number
    /// that divides evenly over the threads (the bands a small input has no rows for are
    /// empty), and are never bands under [`MIN_BAND_ROWS`] rows.
    #[test]
    fn pieces_cover_every_row_once() {
        for sizes in [
            vec![(64, 64)],
            vec![(64, 64), (41, 30)],
            vec![(5, 7)],
            vec![(1, 1)],
        ] {
            for frames in 1..=9 {
                for threads in 2..=9 {
                    let pieces = Pieces::new(frames, &sizes, threads);
                    let mut covered = vec![vec![vec![0u8; 64]; sizes.len()]; frames];
                    let mut k = 0;
                    while let Some((i, size, rows)) = pieces.get(k) {
                        let s = sizes.iter().position(|&x| x == size).expect("a size");
                        let height = size.0 as usize;
                        if !rows.is_empty() && rows.len() != height {
                            assert!(rows.len() >= MIN_BAND_ROWS, "{rows:?} of {height}");
                        }
                        for r in rows {
                            covered[i][s][r] += 1;
                        }
                        k += 1;
                    }
                    assert_eq!(k, pieces.len());
                    assert_eq!(
                        pieces.len() % threads,
                        0,
                        "{frames} frames, {threads} threads"
                    );
                    for (i, per_size) in covered.iter().enumerate() {
                        for (s, rows) in per_size.iter().enumerate() {
                            let height = sizes[s].0 as usize;
                            assert!(rows[..height].iter().all(|&c| c == 1), "frame {i}");
                            assert!(rows[height..].iter().all(|&c| c == 0));
                        }
                    }
                }
            }
        }
    }
}
