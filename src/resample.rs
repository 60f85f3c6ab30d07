//! Antialiased bilinear resizing of one 8-bit plane, with exactly the result of libtorch's
//! uint8 kernel (`_upsample_bilinear2d_aa` on `uint8` input, the one torchvision uses).
//!
//! libtorch's vectorised kernel covers 3- and 4-channel images; a single-channel plane (luma,
//! or the chroma planes of I420) takes its generic path, several times slower. This module
//! does the same computation, in the same order, for one channel:
//!
//! - per axis, PIL's triangle filter widened by the scale (support = scale when shrinking),
//!   weights normalised in `f64`, then rounded to `i16` at the largest precision under which
//!   the axis's largest weight still fits (`_compute_index_ranges_int16_weights`);
//! - the width first, into an 8-bit intermediate, then the height; each output sample is the
//!   integer dot product plus half a unit of the last place, shifted down and clamped to
//!   `0..=255`.
//!
//! Tests compare it with libtorch on many sizes, bit for bit.

use std::cell::RefCell;
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

    /// [`Axis::new`], kept per thread for the last few geometries: a stream resizes frames
    /// of one size, and building the weights costs about a tenth of a resize.
    fn cached(input: usize, output: usize, multiple: usize, fit: bool) -> Rc<Self> {
        const KEPT: usize = 8;
        thread_local! {
            static AXES: RefCell<Vec<(AxisKey, Rc<Axis>)>> = const { RefCell::new(Vec::new()) };
        }
        let key = (input, output, multiple, fit);
        AXES.with_borrow_mut(|axes| {
            if let Some(i) = axes.iter().position(|(k, _)| *k == key) {
                let hit = axes.remove(i);
                let axis = hit.1.clone();
                axes.push(hit);
                return axis;
            }
            let axis = Rc::new(Self::new(input, output, multiple, fit));
            if axes.len() == KEPT {
                axes.remove(0);
            }
            axes.push((key, axis.clone()));
            axis
        })
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
    (width, height): (usize, usize),
    (out_w, out_h): (usize, usize),
) -> Vec<u8> {
    assert!(
        width > 0 && height > 0 && out_w > 0 && out_h > 0,
        "empty plane"
    );
    assert!(
        data.len() >= stride * (height - 1) + width && stride >= width,
        "plane too short"
    );
    let row = |y: usize| &data[y * stride..y * stride + width];
    // Width first (unless it stays), into an 8-bit intermediate of the rows the height needs.
    let vertical = (out_h != height).then(|| Axis::cached(height, out_h, 1, false));
    let rows = match &vertical {
        Some(v) => {
            let lo = v.first.iter().copied().min().unwrap_or(0);
            let hi = (0..v.output())
                .map(|i| v.first[i] + taps_used(v, i))
                .max()
                .unwrap_or(0);
            lo..hi.max(lo)
        }
        None => 0..height,
    };
    let mid: Vec<u8> = if out_w != width {
        let h = Axis::cached(width, out_w, 16, true);
        let mut mid = vec![0u8; rows.len() * out_w];
        for (y, out) in rows.clone().zip(mid.chunks_exact_mut(out_w)) {
            horizontal(&h, row(y), out);
        }
        mid
    } else {
        rows.clone().flat_map(row).copied().collect()
    };
    let Some(v) = vertical else {
        return mid;
    };
    let mut out = vec![0u8; out_w * out_h];
    let mut acc = vec![0i32; out_w];
    for (i, out_row) in out.chunks_exact_mut(out_w).enumerate() {
        acc.fill(0);
        let weights = &v.weights[i * v.taps..(i + 1) * v.taps];
        for (j, &w) in weights.iter().enumerate().take(taps_used(&v, i)) {
            let y = v.first[i] + j - rows.start;
            accumulate_row(&mut acc, &mid[y * out_w..(y + 1) * out_w], i32::from(w));
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = v.finish(a);
        }
    }
    out
}

/// Weights of output `i` up to the last non-zero one (the vertical axis is not padded, but
/// short windows end in zeros).
fn taps_used(axis: &Axis, i: usize) -> usize {
    let w = &axis.weights[i * axis.taps..(i + 1) * axis.taps];
    w.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1)
}

/// `acc += row * w`, sample by sample (vectorises).
fn accumulate_row(acc: &mut [i32], row: &[u8], w: i32) {
    for (a, &p) in acc.iter_mut().zip(row) {
        *a += i32::from(p) * w;
    }
}

/// One row through the horizontal axis.
fn horizontal(axis: &Axis, row: &[u8], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if axis.taps.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above); every window of `taps` samples lies
        // inside `row` (`Axis::new` with `fit`) and `taps` is a multiple of 16.
        unsafe { horizontal_avx2(axis, row, out) };
        return;
    }
    horizontal_portable(axis, row, out);
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
unsafe fn horizontal_avx2(axis: &Axis, row: &[u8], out: &mut [u8]) {
    use std::arch::x86_64::*;
    for (i, o) in out.iter_mut().enumerate() {
        let w = &axis.weights[i * axis.taps..(i + 1) * axis.taps];
        let px = &row[axis.first[i]..axis.first[i] + axis.taps];
        let mut acc = _mm256_setzero_si256();
        for (p, w) in px.chunks_exact(16).zip(w.chunks_exact(16)) {
            // SAFETY: 16 bytes and 16 i16 are in bounds (chunks_exact); unaligned loads.
            let (p, w) = unsafe {
                (
                    _mm_loadu_si128(p.as_ptr().cast()),
                    _mm256_loadu_si256(w.as_ptr().cast()),
                )
            };
            // 16 samples widened to i16, multiplied and summed in pairs into 8 i32 (no
            // overflow: 2 * 255 * 2^15 < 2^31).
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepu8_epi16(p), w));
        }
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        *o = axis.finish(_mm_cvtsi128_si32(s));
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
        let t = Tensor::from_slice(data)
            .narrow(0, 0, (stride * h) as i64)
            .view([h as i64, stride as i64])
            .narrow(1, 0, w as i64)
            .view([1, 1, h as i64, w as i64]);
        let out = t.internal_upsample_bilinear2d_aa([oh as i64, ow as i64], false, None, None);
        Vec::<u8>::try_from(out.contiguous().flatten(0, -1)).unwrap()
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

    #[test]
    fn the_vectorised_row_equals_the_portable_one() {
        let axis = Axis::new(480, 64, 16, true);
        let row = plane(7, 480);
        let (mut a, mut b) = (vec![0u8; 64], vec![0u8; 64]);
        horizontal(&axis, &row, &mut a);
        horizontal_portable(&axis, &row, &mut b);
        assert_eq!(a, b);
    }
}
