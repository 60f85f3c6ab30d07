//! Antialiased bilinear resizing of one 8-bit plane, with exactly the result of libtorch's
//! uint8 kernel (`_upsample_bilinear2d_aa` on `uint8` input, the one torchvision uses).
//!
//! libtorch's vectorised kernel covers 3- and 4-channel images that are contiguous in memory;
//! a single-channel plane (luma, or the chroma planes of I420) takes its generic path,
//! several times slower, and a region cropped from a frame is first copied whole. This module
//! does the same computation, in the same order, on the frame's memory in place: one channel
//! ([`resize_plane`]) or several interleaved ones, picked from packed pixels
//! ([`resize_interleaved`]: RGB from RGBx, chroma from NV12):
//!
//! - per axis, PIL's triangle filter widened by the scale (support = scale when shrinking),
//!   weights normalised in `f64`, then rounded to `i16` at the largest precision under which
//!   the axis's largest weight still fits (`_compute_index_ranges_int16_weights`);
//! - the width first, into an 8-bit intermediate, then the height; each output sample is the
//!   integer dot product plus half a unit of the last place, shifted down and clamped to
//!   `0..=255`.
//!
//! Tests compare it with libtorch on many sizes, bit for bit.

use crate::prefetch::{prefetch, prefetch_l2};
use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

/// What an [`Axis`] is built from: input and output sizes, tap multiple, fitted windows.
type AxisKey = (usize, usize, usize, bool);

/// One axis: for each output sample, the first input sample it reads and `taps` weights.
#[derive(Debug, Clone)]
struct Axis {
    first: Vec<usize>,
    /// Weights per output sample (zeros past the filter's end).
    taps: usize,
    weights: Vec<i16>,
    precision: u32,
}

/// An [`Axis`] whose weights are laid out for interleaved pixels, `group` taps at a time
/// (4 for AVX2, 8 for AVX-512): in 128-bit lane `l` of a group, taps `(2l, 2l+1)` repeated 4
/// times (what `madd_epi16` multiplies with the bytes of the group's pixels rearranged into
/// channel-wise pairs, one channel per 32-bit slot).
#[derive(Debug, Clone)]
struct PairedAxis {
    axis: Axis,
    group: usize,
    pairs: Vec<i16>,
}

impl PairedAxis {
    fn new(input: usize, output: usize, group: usize) -> Self {
        let axis = Axis::new(input, output, group, true);
        // Fewer than `group` input pixels: `taps` is not a multiple of it and the pixels go
        // one by one.
        let groups = if axis.taps.is_multiple_of(group) {
            axis.weights.as_slice()
        } else {
            &[]
        };
        let pairs = groups
            .chunks_exact(2)
            .flat_map(|pair| std::iter::repeat_n([pair[0], pair[1]], 4).flatten())
            .collect();
        Self { axis, group, pairs }
    }
}

/// Weights kept per thread for the last few geometries: a stream resizes frames of one size,
/// and building the weights costs about a tenth of a resize.
struct Kept<T>(Vec<(AxisKey, Rc<T>)>);

impl<T> Kept<T> {
    const KEPT: usize = 8;

    fn get(&mut self, key: AxisKey, make: impl FnOnce() -> T) -> Rc<T> {
        if let Some(i) = self.0.iter().position(|(k, _)| *k == key) {
            let hit = self.0.remove(i);
            let axis = hit.1.clone();
            self.0.push(hit);
            return axis;
        }
        let axis = Rc::new(make());
        if self.0.len() == Self::KEPT {
            self.0.remove(0);
        }
        self.0.push((key, axis.clone()));
        axis
    }
}

thread_local! {
    static AXES: RefCell<Kept<Axis>> = const { RefCell::new(Kept(Vec::new())) };
    static PAIRED_AXES: RefCell<Kept<PairedAxis>> = const { RefCell::new(Kept(Vec::new())) };
}

impl Axis {
    /// [`Axis::new`], kept per thread ([`Kept`]).
    fn cached(input: usize, output: usize, multiple: usize, fit: bool) -> Rc<Self> {
        AXES.with_borrow_mut(|kept| {
            kept.get((input, output, multiple, fit), || {
                Self::new(input, output, multiple, fit)
            })
        })
    }
}

impl PairedAxis {
    /// For `outputs` outputs from a row of `row_len` bytes of `bpp`-byte pixels, where each
    /// group of taps loads `load` bytes from its first pixel: the groups per output, and how
    /// many outputs (the first ones: `first` does not decrease) read only inside the row.
    ///
    /// # Panics
    /// If there are more outputs than the axis has or fewer weights than they need.
    fn vectorised(
        &self,
        outputs: usize,
        bpp: usize,
        load: usize,
        row_len: usize,
    ) -> (usize, usize) {
        let a = &self.axis;
        let groups = a.taps / self.group;
        // Per group, `group / 2` pairs of weights repeated 4 times.
        assert!(outputs <= a.output() && self.pairs.len() >= outputs * groups * self.group * 4);
        let reach = (a.taps - self.group) * bpp + load;
        let vectorised =
            a.first[..outputs].partition_point(|&first| first * bpp + reach <= row_len);
        (groups, vectorised)
    }

    /// [`PairedAxis::new`], kept per thread ([`Kept`]).
    fn cached(input: usize, output: usize, group: usize) -> Rc<Self> {
        PAIRED_AXES.with_borrow_mut(|kept| {
            kept.get((input, output, group, true), || {
                Self::new(input, output, group)
            })
        })
    }
}

/// PIL's antialiasing triangle filter.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

impl Axis {
    /// The weights of resizing `input` samples to `output`, `taps` of them per output sample
    /// at least, rounded up to `multiple`. When `fit` is set, each window is moved (with its
    /// weights) so that `first + taps <= input`: every read of `taps` samples stays in bounds.
    fn new(input: usize, output: usize, multiple: usize, fit: bool) -> Self {
        let scale = input as f64 / output as f64;
        let (support, invscale) = if scale >= 1.0 {
            (scale, 1.0 / scale)
        } else {
            (1.0, 1.0)
        };
        // libtorch rounds the support up in single precision (`ceilf`).
        let max_taps = (support as f32).ceil() as usize * 2 + 1;
        let mut first = Vec::with_capacity(output);
        let mut real: Vec<Vec<f64>> = Vec::with_capacity(output);
        let mut wt_max = 0.0f64;
        for i in 0..output {
            let center = scale * (i as f64 + 0.5);
            // `as i64` truncates toward zero, like the C++ casts.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xsize = (((center + support + 0.5) as i64).min(input as i64) - xmin)
                .clamp(0, max_taps as i64) as usize;
            let mut w: Vec<f64> = (0..xsize)
                .map(|j| triangle(((j as i64 + xmin) as f64 - center + 0.5) * invscale))
                .collect();
            let total: f64 = w.iter().fold(0.0, |a, &b| a + b);
            if total != 0.0 {
                for v in &mut w {
                    *v /= total;
                    wt_max = wt_max.max(*v);
                }
            }
            first.push(xmin as usize);
            real.push(w);
        }
        let mut precision = 0;
        while precision < 22 {
            let next = (0.5 + wt_max * f64::from(1u32 << (precision + 1))) as i32;
            if next >= 1 << 15 {
                break;
            }
            precision += 1;
        }
        let longest = real.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut taps = longest.div_ceil(multiple) * multiple;
        if fit {
            taps = taps.min(input);
        }
        let mut weights = vec![0i16; output * taps];
        for (i, w) in real.iter().enumerate() {
            let shift = if fit {
                (first[i] + taps).saturating_sub(input)
            } else {
                0
            };
            first[i] -= shift;
            let row = &mut weights[i * taps..(i + 1) * taps];
            for (j, &v) in w.iter().enumerate() {
                let scaled = v * f64::from(1u32 << precision);
                row[j + shift] = if v < 0.0 {
                    (scaled - 0.5) as i16
                } else {
                    (scaled + 0.5) as i16
                };
            }
        }
        Self {
            first,
            taps,
            weights,
            precision,
        }
    }

    fn output(&self) -> usize {
        self.first.len()
    }

    /// The rounded, clamped sample from an accumulated dot product.
    #[inline(always)]
    fn finish(&self, dot: i32) -> u8 {
        ((dot + (1 << (self.precision - 1))) >> self.precision).clamp(0, 255) as u8
    }
}

/// Resizes a `width x height` plane (`stride` bytes per row, one byte per sample) to
/// `out_w x out_h`, row-major, as libtorch's antialiased bilinear uint8 resize does.
///
/// # Panics
/// If the plane is shorter than `stride * (height - 1) + width` bytes or a size is zero.
pub fn resize_plane(
    data: &[u8],
    stride: usize,
    size: (usize, usize),
    out_size: (usize, usize),
) -> Vec<u8> {
    resize_interleaved(data, stride, 1, &[0], size, out_size)
}

/// The output rows `out_rows` of [`resize_plane`] (see [`resize_interleaved_rows`]).
pub fn resize_plane_rows(
    data: &[u8],
    stride: usize,
    size: (usize, usize),
    out_size: (usize, usize),
    out_rows: Range<usize>,
) -> Vec<u8> {
    resize_interleaved_rows(data, stride, 1, &[0], size, out_size, out_rows)
}

/// Resizes a `width x height` plane of interleaved pixels (`bpp` bytes each, `stride` bytes
/// per row) to `out_w x out_h`, keeping the channels at byte offsets `channels` (1 to 4 of
/// them, in that order): `out_h` rows of `out_w` pixels of `channels.len()` bytes. Each
/// channel is libtorch's antialiased bilinear uint8 resize of that channel, bit for bit.
///
/// # Panics
/// If the plane is shorter than `stride * (height - 1) + width * bpp` bytes, a size is zero,
/// or the channels are not 1 to 4 offsets inside a pixel of at most 4 bytes.
pub fn resize_interleaved(
    data: &[u8],
    stride: usize,
    bpp: usize,
    channels: &[usize],
    size: (usize, usize),
    out_size: (usize, usize),
) -> Vec<u8> {
    resize_interleaved_rows(data, stride, bpp, channels, size, out_size, 0..out_size.1)
}

/// The output rows `out_rows` of [`resize_interleaved`] (the same bytes), reading only the
/// input rows they need: bands of one image can be resized on several threads.
///
/// # Panics
/// As [`resize_interleaved`], or if `out_rows` is empty or ends past `out_h`.
pub fn resize_interleaved_rows(
    data: &[u8],
    stride: usize,
    bpp: usize,
    channels: &[usize],
    (width, height): (usize, usize),
    (out_w, out_h): (usize, usize),
    out_rows: Range<usize>,
) -> Vec<u8> {
    assert!(
        !out_rows.is_empty() && out_rows.end <= out_h,
        "rows {out_rows:?} of {out_h}"
    );
    assert!(
        width > 0 && height > 0 && out_w > 0 && out_h > 0,
        "empty plane"
    );
    assert!(
        (1..=4).contains(&bpp)
            && (1..=4).contains(&channels.len())
            && channels.iter().all(|&c| c < bpp),
        "channels {channels:?} of {bpp}-byte pixels"
    );
    let row_bytes = width * bpp;
    assert!(
        data.len() >= stride * (height - 1) + row_bytes && stride >= row_bytes,
        "plane too short"
    );
    // Width first (unless it stays), into an 8-bit intermediate of the rows the height needs.
    let vertical = (out_h != height).then(|| Axis::cached(height, out_h, 1, false));
    let rows = match &vertical {
        Some(v) => {
            let lo = out_rows.clone().map(|i| v.first[i]).min().unwrap_or(0);
            let hi = out_rows
                .clone()
                .map(|i| v.first[i] + taps_used(v, i))
                .max()
                .unwrap_or(0);
            lo..hi.max(lo)
        }
        None => out_rows.clone(),
    };
    let samples = out_w * channels.len();
    let mid: Vec<u8> = if out_w == width {
        rows.clone()
            .flat_map(|y| data[y * stride..y * stride + row_bytes].chunks_exact(bpp))
            .flat_map(|pixel| channels.iter().map(|&c| pixel[c]))
            .collect()
    } else if bpp == 1 {
        let h = Axis::cached(width, out_w, 16, true);
        let mut mid = vec![0u8; rows.len() * samples];
        let row = |y: usize| &data[y * stride..y * stride + width];
        // Rows of planes are short (17 lines of a 1080p crop's luma): asked for 4 rows ahead
        // only, the element was as fast as with a row further down into the second level.
        let ahead_of = |y: usize| Ahead::row(data, stride, width, y + PREFETCH_ROWS);
        // Two rows at a time (rows `y` and `y + 1`): they share the weights.
        for (y, out) in rows.clone().step_by(2).zip(mid.chunks_mut(2 * samples)) {
            if out.len() == 2 * samples {
                let (first, second) = out.split_at_mut(samples);
                let mut ahead = [ahead_of(y), ahead_of(y + 1)];
                horizontal_pair(&h, [row(y), row(y + 1)], [first, second], &mut ahead);
            } else {
                horizontal(&h, row(y), out, &mut ahead_of(y));
            }
        }
        mid
    } else {
        let kernel = RowKernel::detect();
        let h = PairedAxis::cached(width, out_w, kernel.group());
        let pixels = Interleaved::new(bpp, channels);
        let mut mid = vec![0u8; rows.len() * samples];
        for (y, out) in rows.clone().zip(mid.chunks_exact_mut(samples)) {
            let mut ahead = Ahead::of(data, stride, row_bytes, y);
            // The row and whatever follows it: a group's vector load (4 or 8 pixels) may read
            // up to 16 bytes past the last one (`PairedAxis::vectorised` keeps it inside).
            let rest = &data[y * stride..];
            let row = &rest[..rest.len().min(row_bytes + 16)];
            pixels.horizontal(kernel, &h, row, row_bytes, out, &mut ahead);
        }
        mid
    };
    let Some(v) = vertical else {
        return mid;
    };
    let mut out = vec![0u8; samples * out_rows.len()];
    for (i, out_row) in out_rows.zip(out.chunks_exact_mut(samples)) {
        let taps = taps_used(&v, i);
        let start = (v.first[i] - rows.start) * samples;
        let window = &mid[start..start + taps * samples];
        vertical_row(
            &v,
            &v.weights[i * v.taps..i * v.taps + taps],
            window,
            out_row,
        );
    }
    out
}

/// The instructions a row of interleaved pixels is resized with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKernel {
    /// AVX-512 with byte permutes (VBMI): 8 taps of 4 channels per multiply.
    #[cfg(target_arch = "x86_64")]
    Avx512Vbmi,
    /// AVX2: 4 taps of 4 channels per multiply.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// One sample at a time.
    Portable,
}

impl RowKernel {
    /// The best kernel this CPU runs.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vbmi") {
                return Self::Avx512Vbmi;
            }
            if has!("avx2") {
                return Self::Avx2;
            }
        }
        Self::Portable
    }

    /// The kernels this CPU runs, the best first.
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let all = [
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Vbmi,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2,
            Self::Portable,
        ];
        let best = Self::detect();
        all.into_iter().skip_while(|&k| k != best).collect()
    }

    /// The taps per group of the [`PairedAxis`] it reads.
    fn group(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Vbmi => 8,
            _ => 4,
        }
    }
}

/// How many rows ahead of the one being resized [`Ahead`] asks for: the hardware prefetcher
/// stops at the end of each page, and a 1080p frame comes from memory, not the cache.
const PREFETCH_ROWS: usize = 4;

/// How many rows ahead of the one being resized [`Ahead::of`] also asks into the
/// second-level cache only (rows of packed pixels), so that the row is on its way from
/// memory well before it is asked into the first. In the element (`unmask bench`, 1080p
/// BGRx, depth 1, alternated three times) the profile's pre-processing went from 423–467 to
/// 375–407 µs a frame at batch 1 and from 781–804 to 720–739 at batch 4; at 640x480 it did
/// not change. In `unmask bench --micro` right after a pass of the models, 8 rows ahead did
/// about as well, 16 and 24 less, a third row into the first level (8 ahead) worse.
const PREFETCH_L2_ROWS: usize = 12;

/// A row further down a plane, asked into the cache a few 64-byte lines at a time while
/// another row is resized. Asked all at once at the start of the row, the requests outnumber
/// the misses a core can track, and the arithmetic waits behind them; spread over the row's
/// outputs (a kernel calls [`Ahead::pace`], then [`Ahead::step`] as it goes and
/// [`Ahead::rest`] at the end), they arrive while it computes. Each line asked for comes
/// with the same line of a row further down, asked into the second-level cache only.
struct Ahead<'a> {
    row: &'a [u8],
    /// A row further down, asked into the second-level cache line by line with `row`'s.
    further: &'a [u8],
    /// The offset of the next line to ask for.
    next: usize,
    /// Bytes asked for per step.
    per_step: usize,
}

impl<'a> Ahead<'a> {
    /// What to ask for while row `y` of `row_bytes` bytes (rows `stride` apart) of `data` is
    /// resized: the row [`PREFETCH_ROWS`] ahead into every level of the cache, and the one
    /// [`PREFETCH_L2_ROWS`] ahead into the second.
    fn of(data: &'a [u8], stride: usize, row_bytes: usize, y: usize) -> Self {
        Self {
            further: row_inside(data, stride, row_bytes, y + PREFETCH_L2_ROWS),
            ..Self::row(data, stride, row_bytes, y + PREFETCH_ROWS)
        }
    }

    /// Row `y` of `row_bytes` bytes (rows `stride` apart) of `data` alone, what of it lies
    /// inside.
    fn row(data: &'a [u8], stride: usize, row_bytes: usize, y: usize) -> Self {
        Self {
            row: row_inside(data, stride, row_bytes, y),
            further: &[],
            next: 0,
            per_step: 0,
        }
    }

    /// Nothing to ask for.
    #[cfg(test)]
    fn none() -> Self {
        Self::row(&[], 0, 0, 0)
    }

    /// Spreads the lines not asked for yet over `steps` calls of [`Ahead::step`].
    fn pace(&mut self, steps: usize) {
        let lines = self.row.len().saturating_sub(self.next).div_ceil(64);
        self.per_step = lines.div_ceil(steps.max(1)) * 64;
    }

    /// Asks for the next lines.
    #[inline(always)]
    fn step(&mut self) {
        self.ask((self.next + self.per_step).min(self.row.len()));
    }

    /// Asks for every line not asked for yet.
    fn rest(&mut self) {
        self.ask(self.row.len());
    }

    /// Asks for the lines that start before `end` (at most the row's length).
    #[inline(always)]
    fn ask(&mut self, end: usize) {
        while self.next < end {
            prefetch(self.row[self.next..].as_ptr());
            if self.next < self.further.len() {
                prefetch_l2(self.further[self.next..].as_ptr());
            }
            self.next += 64;
        }
    }
}

/// Row `y` of `row_bytes` bytes (rows `stride` apart) of `data`, what of it lies inside.
fn row_inside(data: &[u8], stride: usize, row_bytes: usize, y: usize) -> &[u8] {
    let start = (y * stride).min(data.len());
    &data[start..(start + row_bytes).min(data.len())]
}

/// Interleaved pixels: `bpp` bytes each, the channels kept at byte offsets `channels`.
struct Interleaved<'a> {
    bpp: usize,
    channels: &'a [usize],
    /// The shuffle that turns 16 bytes from a window's pixel (4 pixels when `bpp` is 4) into
    /// channel-wise pairs of 16-bit samples: in the low lane taps 0 and 1 of each kept
    /// channel, in the high lane taps 2 and 3; unused places are zero.
    pair_shuffle: [i8; 32],
    /// The same for 8 pixels and 4 lanes (a byte permute): lane `l` holds taps `2l` and
    /// `2l+1`; bytes whose bit in `pair_permute_mask` is clear are zero.
    pair_permute: [u8; 64],
    pair_permute_mask: u64,
}

impl<'a> Interleaved<'a> {
    fn new(bpp: usize, channels: &'a [usize]) -> Self {
        let mut pair_shuffle = [-128i8; 32];
        let mut pair_permute = [0u8; 64];
        let mut pair_permute_mask = 0u64;
        for lane in 0..4 {
            for (k, &c) in channels.iter().enumerate() {
                for t in 0..2 {
                    let (tap, byte) = (2 * lane + t, lane * 16 + 4 * k + 2 * t);
                    if lane < 2 {
                        pair_shuffle[byte] = (tap * bpp + c) as i8;
                    }
                    pair_permute[byte] = (tap * bpp + c) as u8;
                    pair_permute_mask |= 1 << byte;
                }
            }
        }
        Self {
            bpp,
            channels,
            pair_shuffle,
            pair_permute,
            pair_permute_mask,
        }
    }

    /// One row (`row_bytes` of pixels at the start of `row`, possibly followed by more
    /// bytes) through the horizontal axis, whose groups suit `kernel`: `out` gets the kept
    /// channels of each output pixel. Asks for the lines of `ahead` on the way.
    fn horizontal(
        &self,
        kernel: RowKernel,
        axis: &PairedAxis,
        row: &[u8],
        row_bytes: usize,
        out: &mut [u8],
        ahead: &mut Ahead,
    ) {
        #[cfg(target_arch = "x86_64")]
        if !axis.pairs.is_empty() && kernel != RowKernel::Portable {
            assert_eq!(
                axis.group,
                kernel.group(),
                "weights laid out for another kernel"
            );
            // One instance per pixel size and number of kept channels, so that the offsets
            // are constants.
            macro_rules! instances {
                ($($bpp:literal: $($kept:literal)*;)*) => {
                    match (kernel, self.bpp, self.channels.len()) {
                        $($((RowKernel::Avx512Vbmi, $bpp, $kept) => {
                            // SAFETY: the CPU has these extensions (`RowKernel::detect`).
                            unsafe {
                                self.horizontal_avx512::<$bpp, $kept>(
                                    axis, row, row_bytes, out, ahead,
                                )
                            }
                        })*)*
                        $($((RowKernel::Avx2, $bpp, $kept) => {
                            // SAFETY: the CPU has AVX2 (`RowKernel::detect`).
                            unsafe {
                                self.horizontal_avx2::<$bpp, $kept>(
                                    axis, row, row_bytes, out, ahead,
                                )
                            }
                        })*)*
                        _ => unreachable!("resize_interleaved checks the channels"),
                    }
                };
            }
            instances! { 2: 1 2; 3: 1 2 3; 4: 1 2 3 4; }
            return;
        }
        ahead.rest();
        for (i, o) in out.chunks_exact_mut(self.channels.len()).enumerate() {
            self.output_pixel(&axis.axis, i, &row[..row_bytes], o);
        }
    }

    /// Output pixel `i` of the horizontal axis, channel by channel.
    fn output_pixel(&self, axis: &Axis, i: usize, row: &[u8], out: &mut [u8]) {
        let w = &axis.weights[i * axis.taps..(i + 1) * axis.taps];
        let window = &row[axis.first[i] * self.bpp..(axis.first[i] + axis.taps) * self.bpp];
        for (o, &c) in out.iter_mut().zip(self.channels) {
            let dot = window
                .chunks_exact(self.bpp)
                .zip(w)
                .fold(0i32, |a, (p, &w)| a + i32::from(p[c]) * i32::from(w));
            *o = axis.finish(dot);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn horizontal_avx2<const BPP: usize, const KEPT: usize>(
        &self,
        axis: &PairedAxis,
        row: &[u8],
        row_bytes: usize,
        out: &mut [u8],
        ahead: &mut Ahead,
    ) {
        use std::arch::x86_64::*;
        let a = &axis.axis;
        assert_eq!(axis.group, 4);
        let outputs = out.len() / KEPT;
        // Every group of 4 taps reads 16 bytes from its first pixel.
        let (groups, vectorised) = axis.vectorised(outputs, BPP, 16, row.len());
        // SAFETY: 32 bytes read from a 32-byte array.
        let shuffle = unsafe { _mm256_loadu_si256(self.pair_shuffle.as_ptr().cast()) };
        let half = _mm_set1_epi32(1 << (a.precision - 1));
        let shift = _mm_cvtsi32_si128(a.precision as i32);
        let (weights, bytes) = (axis.pairs.as_ptr(), out.as_mut_ptr());
        ahead.pace(vectorised);
        for i in 0..vectorised {
            ahead.step();
            let pixels = row[a.first[i] * BPP..].as_ptr();
            let weights = weights.wrapping_add(i * groups * 16);
            // Per channel, two taps multiplied and summed into an i32 (no overflow:
            // 2 * 255 * 2^15 < 2^31), for group `g` of this output.
            let group = |g: usize| {
                // SAFETY: output `i < vectorised` reads `reach` bytes from its first pixel,
                // inside `row`; its weights are `groups` blocks of 16 i16 in `pairs`
                // (asserted above).
                let (px, w) = unsafe {
                    (
                        _mm_loadu_si128(pixels.add(4 * g * BPP).cast()),
                        _mm256_loadu_si256(weights.add(g * 16).cast()),
                    )
                };
                _mm256_madd_epi16(
                    _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(px), shuffle),
                    w,
                )
            };
            let acc = if groups == 4 {
                // The usual window (a 4x to 7.5x reduction), unrolled.
                _mm256_add_epi32(
                    _mm256_add_epi32(group(0), group(1)),
                    _mm256_add_epi32(group(2), group(3)),
                )
            } else {
                (0..groups).fold(_mm256_setzero_si256(), |acc, g| {
                    _mm256_add_epi32(acc, group(g))
                })
            };
            let sum = _mm_add_epi32(
                _mm256_castsi256_si128(acc),
                _mm256_extracti128_si256::<1>(acc),
            );
            let value = _mm_sra_epi32(_mm_add_epi32(sum, half), shift);
            // Saturating packs: the clamp to 0..=255.
            let words = _mm_packs_epi32(value, value);
            let packed = _mm_cvtsi128_si32(_mm_packus_epi16(words, words));
            if KEPT == 4 || i + 1 < outputs {
                // SAFETY: 4 bytes from output `i` on lie inside `out` (all 4 are this output's,
                // or the extra ones the next output's, written after this).
                unsafe { bytes.add(i * KEPT).cast::<i32>().write_unaligned(packed) };
            } else {
                out[i * KEPT..].copy_from_slice(&packed.to_le_bytes()[..KEPT]);
            }
        }
        ahead.rest();
        for (i, o) in out.chunks_exact_mut(KEPT).enumerate().skip(vectorised) {
            self.output_pixel(a, i, &row[..row_bytes], o);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx2")]
    fn horizontal_avx512<const BPP: usize, const KEPT: usize>(
        &self,
        axis: &PairedAxis,
        row: &[u8],
        row_bytes: usize,
        out: &mut [u8],
        ahead: &mut Ahead,
    ) {
        use std::arch::x86_64::*;
        let a = &axis.axis;
        assert_eq!(axis.group, 8);
        // Every group of 8 taps reads 32 bytes from its first pixel.
        let (groups, vectorised) = axis.vectorised(out.len() / KEPT, BPP, 32, row.len());
        // SAFETY: 64 bytes read from a 64-byte array.
        let permute = unsafe { _mm512_loadu_si512(self.pair_permute.as_ptr().cast()) };
        let zeroed = self.pair_permute_mask;
        let weights = axis.pairs.as_ptr();
        // Output `i`'s products: 16 i32, lane `l` the sums of taps `2l` and `2l+1` of each
        // group, channel `k` in slot `k`.
        let products = |i: usize| {
            let pixels = row[a.first[i] * BPP..].as_ptr();
            let weights = weights.wrapping_add(i * groups * 32);
            let group = |g: usize| {
                // SAFETY: output `i < vectorised` reads `reach` bytes from its first pixel,
                // inside `row`; its weights are `groups` blocks of 32 i16 in `pairs`
                // (asserted above).
                let (px, w) = unsafe {
                    (
                        _mm256_loadu_si256(pixels.add(8 * g * BPP).cast()),
                        _mm512_loadu_si512(weights.add(g * 32).cast()),
                    )
                };
                // The permute reads the low 32 bytes only.
                let pairs =
                    _mm512_maskz_permutexvar_epi8(zeroed, permute, _mm512_zextsi256_si512(px));
                // No overflow: 2 * 255 * 2^15 < 2^31.
                _mm512_madd_epi16(pairs, w)
            };
            if groups == 2 {
                // The usual window (a 4x to 7.5x reduction).
                _mm512_add_epi32(group(0), group(1))
            } else {
                (0..groups).fold(_mm512_setzero_si512(), |acc, g| {
                    _mm512_add_epi32(acc, group(g))
                })
            }
        };
        let half = _mm512_set1_epi32(1 << (a.precision - 1));
        let shift = _mm_cvtsi32_si128(a.precision as i32);
        // Rounded, shifted, clamped to 0..=255 (unsigned saturation after the maximum with 0):
        // 4 bytes per 128-bit lane of `dots`.
        let finish = |dots: __m512i| {
            let value = _mm512_sra_epi32(_mm512_add_epi32(dots, half), shift);
            _mm512_cvtusepi32_epi8(_mm512_max_epi32(value, _mm512_setzero_si512()))
        };
        // The kept channels of each 4-byte pixel, side by side.
        let mut compact = [-1i8; 16];
        for (j, c) in compact.iter_mut().take(4 * KEPT).enumerate() {
            *c = (j / KEPT * 4 + j % KEPT) as i8;
        }
        // SAFETY: 16 bytes read from a 16-byte array.
        let compact = unsafe { _mm_loadu_si128(compact.as_ptr().cast()) };
        let (bytes, len) = (out.as_mut_ptr(), out.len());
        let store = |i: usize, count: usize, pixels: __m128i| {
            let pixels = if KEPT == 4 {
                pixels
            } else {
                _mm_shuffle_epi8(pixels, compact)
            };
            assert!((i + count) * KEPT <= len);
            if i * KEPT + 16 <= len {
                // SAFETY: 16 bytes from output `i` on lie inside `out` (checked just above);
                // those past its `count` outputs belong to outputs written after these.
                unsafe { _mm_storeu_si128(bytes.add(i * KEPT).cast(), pixels) };
            } else {
                // SAFETY: the `count * KEPT` bytes written lie inside `out` (asserted above).
                unsafe {
                    _mm_mask_storeu_epi8(
                        bytes.add(i * KEPT).cast(),
                        ((1u32 << (count * KEPT)) - 1) as u16,
                        pixels,
                    )
                };
            }
        };
        // Four outputs at a time: their 128-bit lanes summed by two rounds of lane shuffles,
        // lane `j` of the result output `j`'s dot products.
        let four = vectorised / 4 * 4;
        ahead.pace(four / 4);
        for i in (0..four).step_by(4) {
            ahead.step();
            let d = [
                products(i),
                products(i + 1),
                products(i + 2),
                products(i + 3),
            ];
            let pair = |x: __m512i, y: __m512i| {
                _mm512_add_epi32(
                    _mm512_shuffle_i32x4::<0b01_00_01_00>(x, y),
                    _mm512_shuffle_i32x4::<0b11_10_11_10>(x, y),
                )
            };
            let (low, high) = (pair(d[0], d[1]), pair(d[2], d[3]));
            let dots = _mm512_add_epi32(
                _mm512_shuffle_i32x4::<0b10_00_10_00>(low, high),
                _mm512_shuffle_i32x4::<0b11_01_11_01>(low, high),
            );
            store(i, 4, finish(dots));
        }
        ahead.rest();
        for i in four..vectorised {
            let p = products(i);
            let s = _mm256_add_epi32(_mm512_castsi512_si256(p), _mm512_extracti64x4_epi64::<1>(p));
            let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            store(i, 1, finish(_mm512_zextsi128_si512(s)));
        }
        for (i, o) in out.chunks_exact_mut(KEPT).enumerate().skip(vectorised) {
            self.output_pixel(a, i, &row[..row_bytes], o);
        }
    }
}

/// Weights of output `i` up to the last non-zero one (the vertical axis is not padded, but
/// short windows end in zeros).
fn taps_used(axis: &Axis, i: usize) -> usize {
    let w = &axis.weights[i * axis.taps..(i + 1) * axis.taps];
    w.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1)
}

/// One output row of the vertical axis: `window` holds the `weights.len()` input rows it
/// reads (`out.len()` samples each), one after the other.
fn vertical_row(axis: &Axis, weights: &[i16], window: &[u8], out: &mut [u8]) {
    assert!(
        window.len() >= weights.len() * out.len(),
        "window too short"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU has AVX-512F, BW and VL, and with them AVX2 (checked just
            // above).
            unsafe { vertical_avx512(axis, weights, window, out) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { vertical_avx2(axis, weights, window, out, 0) };
            return;
        }
    }
    vertical_portable(axis, weights, window, out);
}

fn vertical_portable(axis: &Axis, weights: &[i16], window: &[u8], out: &mut [u8]) {
    let mut acc = vec![0i32; out.len()];
    for (row, &w) in window.chunks_exact(out.len()).zip(weights) {
        for (a, &p) in acc.iter_mut().zip(row) {
            *a += i32::from(p) * i32::from(w);
        }
    }
    for (o, &a) in out.iter_mut().zip(&acc) {
        *o = axis.finish(a);
    }
}

/// [`vertical_portable`] (what [`vertical_row`] falls back to) from sample `from` on, 16
/// samples at a time: two rows' bytes interleaved, widened and multiplied with their two
/// weights by one `madd`, the sums kept in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn vertical_avx2(axis: &Axis, weights: &[i16], window: &[u8], out: &mut [u8], from: usize) {
    use std::arch::x86_64::*;
    let (n, rows) = (out.len(), weights.len());
    assert!(window.len() >= rows * n);
    let half = _mm256_set1_epi32(1 << (axis.precision - 1));
    let shift = _mm_cvtsi32_si128(axis.precision as i32);
    let done = from + (n - from) / 16 * 16;
    for x in (from..done).step_by(16) {
        // Samples `x..x+8` and `x+8..x+16`.
        let (mut low, mut high) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for j in (0..rows).step_by(2) {
            let (k, pair) = row_pair(weights, j);
            let w = _mm256_set1_epi32(pair);
            // SAFETY: rows `j` and `k < rows` hold `n >= x + 16` samples each in `window`
            // (asserted above).
            let (a, b) = unsafe {
                (
                    _mm_loadu_si128(window.as_ptr().add(j * n + x).cast()),
                    _mm_loadu_si128(window.as_ptr().add(k * n + x).cast()),
                )
            };
            // No overflow: 2 * 255 * 2^15 < 2^31.
            let pairs = [_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b)];
            low = _mm256_add_epi32(low, _mm256_madd_epi16(_mm256_cvtepu8_epi16(pairs[0]), w));
            high = _mm256_add_epi32(high, _mm256_madd_epi16(_mm256_cvtepu8_epi16(pairs[1]), w));
        }
        let low = _mm256_sra_epi32(_mm256_add_epi32(low, half), shift);
        let high = _mm256_sra_epi32(_mm256_add_epi32(high, half), shift);
        // Saturating packs (the clamp to 0..=255); `packs` works per 128-bit lane, the
        // permute puts the samples back in order.
        let words = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(low, high));
        let bytes = _mm_packus_epi16(
            _mm256_castsi256_si128(words),
            _mm256_extracti128_si256::<1>(words),
        );
        out[x..x + 16].copy_from_slice(&bytes_of(bytes));
    }
    for x in done..n {
        let dot = weights.iter().enumerate().fold(0i32, |a, (j, &w)| {
            a + i32::from(window[j * n + x]) * i32::from(w)
        });
        out[x] = axis.finish(dot);
    }
}

/// [`vertical_avx2`] with 512-bit vectors: 32 samples at a time, half the instructions per
/// sample (about a tenth of the pre-processing's time went to this pass at 640x480 on one
/// thread with 256-bit vectors). What is left after the last 32 goes to [`vertical_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
fn vertical_avx512(axis: &Axis, weights: &[i16], window: &[u8], out: &mut [u8]) {
    use std::arch::x86_64::*;
    let (n, rows) = (out.len(), weights.len());
    assert!(window.len() >= rows * n);
    let half = _mm512_set1_epi32(1 << (axis.precision - 1));
    let shift = _mm_cvtsi32_si128(axis.precision as i32);
    // Rounded, shifted, clamped to 0..=255 (unsigned saturation after the maximum with 0).
    let finish = |dots: __m512i| {
        let value = _mm512_sra_epi32(_mm512_add_epi32(dots, half), shift);
        _mm512_cvtusepi32_epi8(_mm512_max_epi32(value, _mm512_setzero_si512()))
    };
    let done = n / 32 * 32;
    for x in (0..done).step_by(32) {
        // The byte unpacks work per 128-bit lane: `low` holds samples `x..x+8` and
        // `x+16..x+24`, `high` samples `x+8..x+16` and `x+24..x+32`.
        let (mut low, mut high) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        for j in (0..rows).step_by(2) {
            let (k, pair) = row_pair(weights, j);
            let w = _mm512_set1_epi32(pair);
            // SAFETY: rows `j` and `k < rows` hold `n >= x + 32` samples each in `window`
            // (asserted above).
            let (a, b) = unsafe {
                (
                    _mm256_loadu_si256(window.as_ptr().add(j * n + x).cast()),
                    _mm256_loadu_si256(window.as_ptr().add(k * n + x).cast()),
                )
            };
            // No overflow: 2 * 255 * 2^15 < 2^31.
            let pairs = [_mm256_unpacklo_epi8(a, b), _mm256_unpackhi_epi8(a, b)];
            low = _mm512_add_epi32(low, _mm512_madd_epi16(_mm512_cvtepu8_epi16(pairs[0]), w));
            high = _mm512_add_epi32(high, _mm512_madd_epi16(_mm512_cvtepu8_epi16(pairs[1]), w));
        }
        let (low, high) = (finish(low), finish(high));
        out[x..x + 16].copy_from_slice(&bytes_of(_mm_unpacklo_epi64(low, high)));
        out[x + 16..x + 32].copy_from_slice(&bytes_of(_mm_unpackhi_epi64(low, high)));
    }
    // The CPU has AVX2: this function's features include it.
    vertical_avx2(axis, weights, window, out, done);
}

/// Row `j` of a vertical window and the row that goes with it in one `madd`, with their two
/// weights packed in 32 bits (row `j`'s in the low half): an odd last row goes with itself
/// and a zero weight.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn row_pair(weights: &[i16], j: usize) -> (usize, i32) {
    let (k, next) = match weights.get(j + 1) {
        Some(&next) => (j + 1, next),
        None => (j, 0),
    };
    (k, i32::from(weights[j] as u16) | (i32::from(next) << 16))
}

/// The 16 bytes of a vector.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn bytes_of(v: std::arch::x86_64::__m128i) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // SAFETY: 16 bytes written to a 16-byte array.
    unsafe { std::arch::x86_64::_mm_storeu_si128(bytes.as_mut_ptr().cast(), v) };
    bytes
}

/// One row through the horizontal axis, asking for the lines of `ahead` on the way.
fn horizontal(axis: &Axis, row: &[u8], out: &mut [u8], ahead: &mut Ahead) {
    #[cfg(target_arch = "x86_64")]
    if axis.taps.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above); every window of `taps` samples lies
        // inside `row` (`Axis::new` with `fit`) and `taps` is a multiple of 16.
        unsafe { horizontal_avx2(axis, row, out, ahead) };
        return;
    }
    ahead.rest();
    horizontal_portable(axis, row, out);
}

/// Two rows through the horizontal axis: the bytes of [`horizontal`] on each.
fn horizontal_pair(axis: &Axis, rows: [&[u8]; 2], out: [&mut [u8]; 2], ahead: &mut [Ahead; 2]) {
    #[cfg(target_arch = "x86_64")]
    if axis.taps.is_multiple_of(16)
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
    {
        // SAFETY: the CPU has AVX-512F and BW (checked just above); every window of `taps`
        // samples lies inside either row (`Axis::new` with `fit`), and `taps` is a multiple
        // of 16.
        unsafe { horizontal_pair_avx512(axis, rows, out, ahead) };
        return;
    }
    let [first, second] = out;
    horizontal(axis, rows[0], first, &mut ahead[0]);
    horizontal(axis, rows[1], second, &mut ahead[1]);
}

fn horizontal_portable(axis: &Axis, row: &[u8], out: &mut [u8]) {
    for (i, o) in out.iter_mut().enumerate() {
        let w = &axis.weights[i * axis.taps..(i + 1) * axis.taps];
        let px = &row[axis.first[i]..axis.first[i] + axis.taps];
        let dot = px
            .iter()
            .zip(w)
            .fold(0i32, |a, (&p, &w)| a + i32::from(p) * i32::from(w));
        *o = axis.finish(dot);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_avx2(axis: &Axis, row: &[u8], out: &mut [u8], ahead: &mut Ahead) {
    use std::arch::x86_64::*;
    let taps = axis.taps;
    assert!(
        out.len() <= axis.output()
            && axis.weights.len() >= out.len() * taps
            && axis.first[..out.len()]
                .iter()
                .all(|&f| f + taps <= row.len())
    );
    let (weights, pixels) = (axis.weights.as_ptr(), row.as_ptr());
    // The products of output `i`: 8 i32 that sum to its dot product.
    let products = |i: usize| {
        let (w, px) = (
            weights.wrapping_add(i * taps),
            pixels.wrapping_add(axis.first[i]),
        );
        let mut acc = _mm256_setzero_si256();
        for chunk in 0..taps / 16 {
            // SAFETY: output `i`'s `taps` weights and `taps` samples from its first one are
            // in bounds (asserted above); unaligned loads.
            let (p, w) = unsafe {
                (
                    _mm_loadu_si128(px.add(16 * chunk).cast()),
                    _mm256_loadu_si256(w.add(16 * chunk).cast()),
                )
            };
            // 16 samples widened to i16, multiplied and summed in pairs into 8 i32 (no
            // overflow: 2 * 255 * 2^15 < 2^31).
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepu8_epi16(p), w));
        }
        acc
    };
    // Eight outputs at a time: their products summed by a tree of horizontal adds, lane `k`
    // of the result output `k`'s dot product; then rounded, shifted and clamped together.
    let half = _mm256_set1_epi32(1 << (axis.precision - 1));
    let shift = _mm_cvtsi32_si128(axis.precision as i32);
    let done = out.len() / 8 * 8;
    ahead.pace(done / 8);
    for (block, o) in out[..done].chunks_exact_mut(8).enumerate() {
        ahead.step();
        let p: [__m256i; 8] = std::array::from_fn(|k| products(block * 8 + k));
        let quads = [
            _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3])),
            _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7])),
        ];
        // Low 128-bit lanes hold the sums of products 0-3 of each output, high ones 4-7.
        let dots = _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(quads[0], quads[1]),
            _mm256_permute2x128_si256::<0x31>(quads[0], quads[1]),
        );
        let value = _mm256_sra_epi32(_mm256_add_epi32(dots, half), shift);
        // Saturating packs (the clamp to 0..=255); the packs work per 128-bit lane, so
        // outputs 0-3 land in bytes 0-3 and outputs 4-7 in bytes 16-19.
        let words = _mm256_packs_epi32(value, value);
        let bytes = _mm256_packus_epi16(words, words);
        let low = _mm_cvtsi128_si32(_mm256_castsi256_si128(bytes)) as u32;
        let high = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(bytes)) as u32;
        o[..4].copy_from_slice(&low.to_le_bytes());
        o[4..].copy_from_slice(&high.to_le_bytes());
    }
    ahead.rest();
    for (i, o) in out.iter_mut().enumerate().skip(done) {
        *o = axis.finish(lane_sum(products(i)));
    }
}

/// The sum of the 8 i32 lanes of `v`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lane_sum(v: std::arch::x86_64::__m256i) -> i32 {
    use std::arch::x86_64::*;
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// [`horizontal_avx2`] on two rows at once: each output's 16 taps of both rows widened
/// into one 512-bit vector (the first row in the low half) and multiplied with the weights
/// repeated in both halves, then eight outputs of both rows summed by a tree of unpacks and
/// lane shuffles (fewer shuffles per output than the 256-bit tree of one row).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn horizontal_pair_avx512(
    axis: &Axis,
    rows: [&[u8]; 2],
    out: [&mut [u8]; 2],
    ahead: &mut [Ahead; 2],
) {
    use std::arch::x86_64::*;
    let taps = axis.taps;
    let outputs = out[0].len();
    assert!(
        out[1].len() == outputs
            && outputs <= axis.output()
            && axis.weights.len() >= outputs * taps
            && axis.first[..outputs]
                .iter()
                .all(|&f| f + taps <= rows[0].len() && f + taps <= rows[1].len())
    );
    let (weights, a, b) = (axis.weights.as_ptr(), rows[0].as_ptr(), rows[1].as_ptr());
    // The products of output `i`: lanes 0-7 sum to its dot product on the first row, lanes
    // 8-15 on the second.
    let products = |i: usize| {
        let (w, first) = (weights.wrapping_add(i * taps), axis.first[i]);
        let mut acc = _mm512_setzero_si512();
        for chunk in 0..taps / 16 {
            // SAFETY: output `i`'s `taps` weights and `taps` samples of either row from its
            // first one are in bounds (asserted above); unaligned loads.
            let (pa, pb, w) = unsafe {
                (
                    _mm_loadu_si128(a.add(first + 16 * chunk).cast()),
                    _mm_loadu_si128(b.add(first + 16 * chunk).cast()),
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(w.add(16 * chunk).cast())),
                )
            };
            let both = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(pa), pb);
            // No overflow: 2 * 255 * 2^15 < 2^31.
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_cvtepu8_epi16(both), w));
        }
        acc
    };
    // Four outputs' products folded so that 128-bit lane `l` holds, in slot `k`, the sum of
    // lane `l` of output `k`'s products.
    let fold4 = |p: [__m512i; 4]| {
        let pair = |x: __m512i, y: __m512i| {
            _mm512_add_epi32(_mm512_unpacklo_epi32(x, y), _mm512_unpackhi_epi32(x, y))
        };
        let (low, high) = (pair(p[0], p[1]), pair(p[2], p[3]));
        _mm512_add_epi32(
            _mm512_unpacklo_epi64(low, high),
            _mm512_unpackhi_epi64(low, high),
        )
    };
    let half = _mm512_set1_epi32(1 << (axis.precision - 1));
    let shift = _mm_cvtsi32_si128(axis.precision as i32);
    // Bytes [row 0: 0-3, row 1: 0-3, row 0: 4-7, row 1: 4-7] to [row 0: 0-7, row 1: 0-7].
    let order = _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15);
    let [first, second] = out;
    let done = outputs / 8 * 8;
    ahead.iter_mut().for_each(|a| a.pace(done / 8));
    for x in (0..done).step_by(8) {
        ahead.iter_mut().for_each(Ahead::step);
        let low = fold4(std::array::from_fn(|k| products(x + k)));
        let high = fold4(std::array::from_fn(|k| products(x + 4 + k)));
        // Lanes: [row 0 outputs 0-3, row 1 outputs 0-3, row 0 outputs 4-7, row 1 4-7].
        let dots = _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0b10_00_10_00>(low, high),
            _mm512_shuffle_i32x4::<0b11_01_11_01>(low, high),
        );
        let value = _mm512_sra_epi32(_mm512_add_epi32(dots, half), shift);
        // Rounded, shifted, clamped to 0..=255 (unsigned saturation after the maximum with 0).
        let bytes = _mm512_cvtusepi32_epi8(_mm512_max_epi32(value, _mm512_setzero_si512()));
        let bytes = bytes_of(_mm_shuffle_epi8(bytes, order));
        first[x..x + 8].copy_from_slice(&bytes[..8]);
        second[x..x + 8].copy_from_slice(&bytes[8..]);
    }
    ahead.iter_mut().for_each(Ahead::rest);
    // The last outputs (fewer than 8), each row's lanes summed on their own.
    for i in done..outputs {
        let p = products(i);
        first[i] = axis.finish(lane_sum(_mm512_castsi512_si256(p)));
        second[i] = axis.finish(lane_sum(_mm512_extracti64x4_epi64::<1>(p)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tch::Tensor;

    /// libtorch's result for the same plane.
    fn torch_resize(
        data: &[u8],
        stride: usize,
        w: usize,
        h: usize,
        ow: usize,
        oh: usize,
    ) -> Vec<u8> {
        torch_resize_interleaved(data, stride, 1, &[0], w, h, ow, oh)
    }

    fn plane(seed: u64, len: usize) -> Vec<u8> {
        // Smooth areas, edges and noise: a hash of the index.
        (0..len)
            .map(|i| {
                let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
                let x = (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                if (i / 37) % 3 == 0 {
                    (i % 256) as u8
                } else {
                    (x >> 56) as u8
                }
            })
            .collect()
    }

    #[test]
    fn equals_libtorch_on_the_shapes_the_element_uses() {
        tch::set_num_threads(1);
        for &((w, h), (ow, oh), pad) in &[
            ((480, 480), (64, 64), 160),
            ((240, 240), (64, 64), 80),
            ((1080, 1080), (64, 64), 840),
            ((540, 540), (64, 64), 420),
            ((640, 480), (64, 64), 0),
            ((48, 32), (64, 64), 3),
            ((64, 64), (64, 64), 0),
            ((64, 300), (64, 64), 1),
            ((300, 64), (64, 64), 7),
            ((17, 5), (64, 64), 0),
            ((1, 1), (64, 64), 0),
            ((3, 200), (32, 16), 0),
        ] {
            let stride = w + pad;
            let data = plane((w * h) as u64, stride * h);
            assert_eq!(
                resize_plane(&data, stride, (w, h), (ow, oh)),
                torch_resize(&data, stride, w, h, ow, oh),
                "{w}x{h} -> {ow}x{oh}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn equals_libtorch_on_any_size(
            w in 1usize..400, h in 1usize..400, ow in 1usize..130, oh in 1usize..130,
            pad in 0usize..20, seed in any::<u64>(),
        ) {
            let stride = w + pad;
            let data = plane(seed, stride * h);
            prop_assert_eq!(
                resize_plane(&data, stride, (w, h), (ow, oh)),
                torch_resize(&data, stride, w, h, ow, oh)
            );
        }
    }

    /// libtorch's result for channels `channels` of interleaved `bpp`-byte pixels, as
    /// `[oh, ow, channels]` bytes.
    #[allow(clippy::too_many_arguments)]
    fn torch_resize_interleaved(
        data: &[u8],
        stride: usize,
        bpp: usize,
        channels: &[usize],
        w: usize,
        h: usize,
        ow: usize,
        oh: usize,
    ) -> Vec<u8> {
        let index = Tensor::from_slice(&channels.iter().map(|&c| c as i64).collect::<Vec<_>>());
        // The last row may end right after its last pixel: pad it to a whole stride.
        let mut padded = data[..data.len().min(stride * h)].to_vec();
        padded.resize(stride * h, 0);
        let t = Tensor::from_slice(&padded)
            .view([h as i64, stride as i64])
            .narrow(1, 0, (w * bpp) as i64)
            .view([h as i64, w as i64, bpp as i64])
            .permute([2, 0, 1])
            .index_select(0, &index)
            .unsqueeze(0);
        let out = t.internal_upsample_bilinear2d_aa([oh as i64, ow as i64], false, None, None);
        Vec::<u8>::try_from(
            out.squeeze_dim(0)
                .permute([1, 2, 0])
                .contiguous()
                .flatten(0, -1),
        )
        .unwrap()
    }

    /// The packed layouts the pre-processor reads: RGB from RGB, BGR, RGBx/BGRx-like 4-byte
    /// pixels in either order, and NV12's chroma pairs.
    const LAYOUTS: [(usize, &[usize]); 6] = [
        (3, &[0, 1, 2]),
        (3, &[2, 1, 0]),
        (4, &[0, 1, 2]),
        (4, &[2, 1, 0]),
        (4, &[3, 2, 1]),
        (2, &[0, 1]),
    ];

    #[test]
    fn interleaved_channels_equal_libtorch_on_the_shapes_the_element_uses() {
        tch::set_num_threads(1);
        for (bpp, channels) in LAYOUTS {
            for &((w, h), (ow, oh), pad) in &[
                ((480, 480), (64, 64), 160 * bpp),
                ((1080, 1080), (64, 64), 840 * bpp),
                ((240, 240), (64, 64), 0),
                ((640, 480), (64, 64), 0),
                ((64, 64), (64, 64), 3),
                ((48, 32), (64, 64), 0),
                ((3, 200), (32, 16), 1),
                ((1, 1), (64, 64), 0),
            ] {
                let stride = w * bpp + pad;
                let data = plane((w * h * bpp) as u64, stride * h);
                assert_eq!(
                    resize_interleaved(&data, stride, bpp, channels, (w, h), (ow, oh)),
                    torch_resize_interleaved(&data, stride, bpp, channels, w, h, ow, oh),
                    "{bpp}-byte pixels, channels {channels:?}: {w}x{h} -> {ow}x{oh}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]
        #[test]
        fn interleaved_channels_equal_libtorch_on_any_size(
            layout in 0..LAYOUTS.len(), w in 1usize..300, h in 1usize..300,
            ow in 1usize..100, oh in 1usize..100, pad in 0usize..20, seed in any::<u64>(),
        ) {
            let (bpp, channels) = LAYOUTS[layout];
            let stride = w * bpp + pad;
            // The plane ends right after its last pixel: the vector loads must not run over.
            let data = plane(seed, stride * (h - 1) + w * bpp);
            prop_assert_eq!(
                resize_interleaved(&data, stride, bpp, channels, (w, h), (ow, oh)),
                torch_resize_interleaved(&data, stride, bpp, channels, w, h, ow, oh)
            );
        }
    }

    #[test]
    fn every_interleaved_row_kernel_of_this_cpu_equals_the_portable_arithmetic() {
        let kernels = RowKernel::available();
        for kernel in kernels {
            for (bpp, channels) in LAYOUTS {
                let pixels = Interleaved::new(bpp, channels);
                for (input, output) in [(480, 64), (1080, 64), (240, 64), (640, 64), (37, 5)] {
                    let axis = PairedAxis::new(input, output, kernel.group());
                    // The row ends right after its last pixel: the last windows go one by one.
                    let row = plane((input * bpp) as u64, input * bpp);
                    let (mut a, mut b) = (
                        vec![0u8; output * channels.len()],
                        vec![0u8; output * channels.len()],
                    );
                    pixels.horizontal(kernel, &axis, &row, row.len(), &mut a, &mut Ahead::none());
                    for (i, o) in b.chunks_exact_mut(channels.len()).enumerate() {
                        pixels.output_pixel(&axis.axis, i, &row, o);
                    }
                    assert_eq!(
                        a, b,
                        "{kernel:?}, {bpp}-byte pixels, channels {channels:?}, {input} -> {output}"
                    );
                }
            }
        }
    }

    /// Bands of output rows, resized alone (each reading only its input rows), are the rows
    /// of the whole resize: shrinking, enlarging and keeping the height, 1 to 4 channels.
    #[test]
    fn bands_of_rows_are_the_rows_of_the_whole_image() {
        for (bpp, channels) in [
            (1, &[0][..]),
            (2, &[0, 1]),
            (3, &[0, 1, 2]),
            (4, &[2, 1, 0]),
        ] {
            for ((w, h), (ow, oh)) in [
                ((480, 480), (64, 64)),
                ((37, 23), (64, 41)),
                ((90, 17), (30, 17)),
            ] {
                let stride = w * bpp + 5;
                let data = plane((w * h) as u64, stride * h);
                let whole = resize_interleaved(&data, stride, bpp, channels, (w, h), (ow, oh));
                let row = ow * channels.len();
                for bands in [2, 3, 7] {
                    let mut joined = Vec::new();
                    for b in 0..bands {
                        let rows = oh * b / bands..oh * (b + 1) / bands;
                        if rows.is_empty() {
                            continue;
                        }
                        let band = resize_interleaved_rows(
                            &data,
                            stride,
                            bpp,
                            channels,
                            (w, h),
                            (ow, oh),
                            rows.clone(),
                        );
                        assert_eq!(band.len(), rows.len() * row);
                        joined.extend(band);
                    }
                    assert_eq!(
                        joined, whole,
                        "{bpp}-byte pixels, {w}x{h} -> {ow}x{oh}, {bands} bands"
                    );
                }
            }
        }
    }

    /// Each vertical kernel this CPU has (and the one [`vertical_row`] picks) gives the
    /// portable pass's bytes, on widths with and without samples after the last whole vector.
    #[test]
    fn the_vectorised_vertical_passes_equal_the_portable_one() {
        type Kernel = fn(&Axis, &[i16], &[u8], &mut [u8]);
        let mut kernels: Vec<(&str, Kernel)> = vec![("dispatched", vertical_row)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above).
                kernels.push(("avx2", |a, w, win, o| unsafe {
                    vertical_avx2(a, w, win, o, 0)
                }));
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                // SAFETY: the CPU has AVX-512F, BW and VL, and AVX2 (checked just above).
                kernels.push(("avx512", |a, w, win, o| unsafe {
                    vertical_avx512(a, w, win, o)
                }));
            }
        }
        for (input, output, samples) in [
            (480, 64, 192),
            (1080, 64, 64),
            (240, 64, 128),
            (7, 3, 37),
            (300, 20, 61),
        ] {
            let axis = Axis::new(input, output, 1, false);
            let mid = plane(input as u64, input * samples);
            for i in 0..output {
                let taps = taps_used(&axis, i);
                let window = &mid[axis.first[i] * samples..(axis.first[i] + taps) * samples];
                let weights = &axis.weights[i * axis.taps..i * axis.taps + taps];
                let mut expected = vec![0u8; samples];
                vertical_portable(&axis, weights, window, &mut expected);
                for (name, kernel) in &kernels {
                    let mut got = vec![0u8; samples];
                    kernel(&axis, weights, window, &mut got);
                    assert_eq!(got, expected, "{name}: {input} -> {output}, row {i}");
                }
            }
        }
    }

    /// Pairs of rows give each row's bytes, on the shapes the element uses (one and three
    /// 16-tap chunks), enlarging, and widths whose outputs are not a multiple of 8.
    #[test]
    fn two_rows_at_once_equal_the_portable_rows() {
        for (input, output) in [
            (480, 64),
            (240, 64),
            (1080, 64),
            (540, 64),
            (37, 61),
            (100, 13),
        ] {
            let axis = Axis::new(input, output, 16, true);
            let rows = [plane(input as u64, input), plane(input as u64 + 1, input)];
            let mut pair = [vec![0u8; output], vec![0u8; output]];
            let [first, second] = &mut pair;
            let mut ahead = [Ahead::none(), Ahead::none()];
            horizontal_pair(&axis, [&rows[0], &rows[1]], [first, second], &mut ahead);
            for (row, got) in rows.iter().zip(&pair) {
                let mut expected = vec![0u8; output];
                horizontal_portable(&axis, row, &mut expected);
                assert_eq!(got, &expected, "{input} -> {output}");
            }
        }
    }

    /// A row ahead asks for each of its lines once, in order: at most its share per step,
    /// all of them over the steps it is paced for; what a kernel leaves (fewer steps) comes
    /// with the rest. The rows asked for while a row is resized are the right ones, clipped
    /// to the plane.
    #[test]
    fn a_row_ahead_is_asked_for_line_by_line_over_its_steps() {
        let data = vec![0u8; 5000];
        for row_bytes in [0usize, 1, 64, 65, 480, 1920, 4320] {
            let lines = row_bytes.div_ceil(64);
            for steps in [0, 1, 3, 8, 16, 100] {
                let what = format!("{row_bytes} bytes, {steps} steps");
                let mut ahead = Ahead::row(&data, 0, row_bytes, 0);
                ahead.pace(steps);
                assert_eq!(ahead.next, 0, "{what}");
                let share = lines.div_ceil(steps.max(1)) * 64;
                for _ in 0..steps {
                    let before = ahead.next;
                    ahead.step();
                    assert!(ahead.next - before <= share, "{what}");
                }
                assert!(steps == 0 || ahead.next == lines * 64, "{what}");
                ahead.rest();
                assert_eq!(ahead.next, lines * 64, "{what}");
            }
        }
        // A row past the end of the plane asks for what lies inside it.
        assert_eq!(Ahead::row(&data, 1000, 1480, 4).row.len(), 1000);
        assert!(Ahead::row(&data, 1000, 480, 9).row.is_empty());
        // While row `y` is resized: the row `PREFETCH_ROWS` ahead, and into the second
        // level the one `PREFETCH_L2_ROWS` ahead, each what of it lies inside the plane.
        let offset = |bytes: &[u8]| bytes.as_ptr() as usize - data.as_ptr() as usize;
        let ahead = Ahead::of(&data, 100, 80, 2);
        assert_eq!(offset(ahead.row), (2 + PREFETCH_ROWS) * 100);
        assert_eq!(offset(ahead.further), (2 + PREFETCH_L2_ROWS) * 100);
        assert_eq!((ahead.row.len(), ahead.further.len()), (80, 80));
        let near_the_end = Ahead::of(&data, 450, 480, 0);
        assert_eq!(offset(near_the_end.row), PREFETCH_ROWS * 450);
        assert_eq!(near_the_end.row.len(), 480);
        assert!(near_the_end.further.is_empty());
    }

    #[test]
    fn the_vectorised_row_equals_the_portable_one() {
        let axis = Axis::new(480, 64, 16, true);
        let row = plane(7, 480);
        let (mut a, mut b) = (vec![0u8; 64], vec![0u8; 64]);
        horizontal(&axis, &row, &mut a, &mut Ahead::none());
        horizontal_portable(&axis, &row, &mut b);
        assert_eq!(a, b);
    }
}
