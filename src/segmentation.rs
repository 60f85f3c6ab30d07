//! Statistics of a segmentation part extractor's output: per image and channel, how many
//! pixels the channel wins and how confident those pixels are.
//!
//! Both functions return, for logits `[N,C,h,w]` (float), `N*C` pixel counts (pixels whose
//! winning channel it is: the first maximum, like `max_dim`) and `N*C` sums of those pixels'
//! softmax probability `1 / sum_c exp(x_c - max)`. [`stats_cpu`] is one pass in Rust over a
//! map in memory, [`stats_tensor`] keeps everything on the map's device.

use tch::{Device, Kind, Tensor};

/// [`stats_tensor`]'s result for a map on the CPU, computed in Rust in one pass over the
/// map's memory, in whichever of the two layouts it has:
/// - contiguous (NCHW): per image, one pass over the channel planes for each pixel's maximum
///   and winning channel, one for the exponentials (summed in channel order, as libtorch
///   does), then the counting;
/// - channels-last (what a model fed channels-last inputs returns, see
///   [`crate::model::Model::channels_last`]): the same arithmetic on blocks of [`LANES`]
///   pixels transposed on the fly, with the same results bit for bit.
///
/// The exponential is [`exp_nonpositive`] (within 2 ulp of the exact value, where libtorch's
/// vectorised one is within 1), so the sums can differ from [`stats_tensor`]'s in the last
/// bits; the counts are identical.
pub fn stats_cpu(out: &Tensor) -> (Vec<i64>, Vec<f64>) {
    let size = out.size();
    let (n, channels) = (size[0] as usize, size[1] as usize);
    let pixels = (size[2] * size[3]) as usize;
    let mut area = vec![0i64; n * channels];
    let mut conf_sum = vec![0f64; n * channels];
    if pixels == 0 || channels == 0 {
        return (area, conf_sum);
    }
    let out = out.to_device(Device::Cpu).to_kind(Kind::Float);
    // Pixel-major memory: the [N,h,w,C] view of a channels-last map is contiguous.
    let nhwc = out.permute([0, 2, 3, 1]);
    let channels_last = channels > 1 && nhwc.is_contiguous() && !out.is_contiguous();
    let memory = if channels_last {
        nhwc
    } else {
        out.contiguous()
    };
    if !memory.is_contiguous() || memory.numel() != n * channels * pixels {
        return (area, conf_sum);
    }
    // SAFETY: `memory` is a contiguous float32 CPU tensor of `numel` elements (checked just
    // above, its kind and device made so), alive until the end of this function and written
    // by nobody meanwhile (the map is this caller's).
    let values =
        unsafe { std::slice::from_raw_parts(memory.data_ptr() as *const f32, memory.numel()) };
    let per_image = values.chunks_exact(channels * pixels);
    let counts = area
        .chunks_exact_mut(channels)
        .zip(conf_sum.chunks_exact_mut(channels));
    if channels_last {
        let mut blocks = PixelBlocks::new(channels);
        for (map, (area, conf_sum)) in per_image.zip(counts) {
            blocks.count(map, area, conf_sum);
        }
        return (area, conf_sum);
    }
    let mut max = vec![f32::NEG_INFINITY; pixels];
    let mut arg = vec![0u32; pixels];
    let mut sum = vec![0f32; pixels];
    for (map, (area, conf_sum)) in per_image.zip(counts) {
        max.fill(f32::NEG_INFINITY);
        arg.fill(0);
        sum.fill(0.0);
        for (c, plane) in map.chunks_exact(pixels).enumerate() {
            update_maxima(&mut max, &mut arg, plane, c as u32);
        }
        for plane in map.chunks_exact(pixels) {
            add_shifted_exp(&mut sum, plane, &max);
        }
        for (&c, &s) in arg.iter().zip(&sum) {
            area[c as usize] += 1;
            conf_sum[c as usize] += f64::from(1.0 / s);
        }
    }
    (area, conf_sum)
}

/// Pixels handled side by side by the channels-last path (one AVX2 register of floats).
pub const LANES: usize = 8;

/// The channels-last path: blocks of [`LANES`] pixels are transposed into a small buffer
/// (channel-major, in the L1 cache), then each lane runs exactly the planar path's
/// arithmetic (channels in order), so the results equal the contiguous map's bit for bit.
struct PixelBlocks {
    /// `[channel][pixel of the block]`.
    block: Vec<[f32; LANES]>,
}

impl PixelBlocks {
    fn new(channels: usize) -> Self {
        Self {
            block: vec![[0.0; LANES]; channels],
        }
    }

    /// Adds the pixels of one image's map (`[h,w,C]` in memory) to its counts.
    fn count(&mut self, map: &[f32], area: &mut [i64], conf_sum: &mut [f64]) {
        let channels = self.block.len();
        for pixels in map.chunks(LANES * channels) {
            let lanes = pixels.len() / channels;
            for (l, pixel) in pixels.chunks_exact(channels).enumerate() {
                for (row, &x) in self.block.iter_mut().zip(pixel) {
                    row[l] = x;
                }
            }
            let (arg, sum) = self.winners();
            for l in 0..lanes {
                area[arg[l] as usize] += 1;
                conf_sum[arg[l] as usize] += f64::from(1.0 / sum[l]);
            }
        }
    }

    /// Per lane: the winning channel (the first maximum) and the softmax denominator.
    fn winners(&self) -> ([u32; LANES], [f32; LANES]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { block_winners_avx2(&self.block) };
        }
        block_winners_portable(&self.block)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn block_winners_avx2(block: &[[f32; LANES]]) -> ([u32; LANES], [f32; LANES]) {
    block_winners_portable(block)
}

#[inline(always)]
fn block_winners_portable(block: &[[f32; LANES]]) -> ([u32; LANES], [f32; LANES]) {
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut arg = [0u32; LANES];
    for (c, row) in block.iter().enumerate() {
        update_maxima_portable(&mut max, &mut arg, row, c as u32);
    }
    let mut sum = [0f32; LANES];
    for row in block {
        add_shifted_exp_portable(&mut sum, row, &max);
    }
    (arg, sum)
}

/// `max`/`arg` become the running maximum and its (first) channel after `plane` of channel `c`.
fn update_maxima(max: &mut [f32], arg: &mut [u32], plane: &[f32], c: u32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { update_maxima_avx2(max, arg, plane, c) };
    }
    update_maxima_portable(max, arg, plane, c);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn update_maxima_avx2(max: &mut [f32], arg: &mut [u32], plane: &[f32], c: u32) {
    update_maxima_portable(max, arg, plane, c);
}

#[inline(always)]
fn update_maxima_portable(max: &mut [f32], arg: &mut [u32], plane: &[f32], c: u32) {
    for ((m, a), &x) in max.iter_mut().zip(arg.iter_mut()).zip(plane) {
        // Strictly greater: the first maximum wins.
        let greater = x > *m;
        *m = if greater { x } else { *m };
        *a = if greater { c } else { *a };
    }
}

/// `sum += exp(plane - max)`, element by element (`plane <= max` everywhere).
fn add_shifted_exp(sum: &mut [f32], plane: &[f32], max: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { add_shifted_exp_avx2(sum, plane, max) };
    }
    add_shifted_exp_portable(sum, plane, max);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_shifted_exp_avx2(sum: &mut [f32], plane: &[f32], max: &[f32]) {
    add_shifted_exp_portable(sum, plane, max);
}

#[inline(always)]
fn add_shifted_exp_portable(sum: &mut [f32], plane: &[f32], max: &[f32]) {
    for ((s, &x), &m) in sum.iter_mut().zip(plane).zip(max) {
        *s += exp_nonpositive(x - m);
    }
}

/// `e^x` for `x <= 0`, within 2 ulp of the exact value for `x >= -87` (smaller `x` gives
/// `e^-87`, negligible next to the 1 every softmax denominator contains). Branch-free (the
/// Cephes range reduction and polynomial), so loops over slices vectorise.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    // Round x / ln 2 to the nearest integer n with the 1.5 * 2^23 trick: the sum's low
    // mantissa bits are then n in two's complement.
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 0.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let n_bits = shifted.to_bits().wrapping_sub(ROUNDER.to_bits());
    // r = x - n ln 2, with ln 2 split in two for precision.
    let r = x - n * 0.693_359_4;
    let r = r + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    // 2^n by building the exponent field (n is in -126..=0 here).
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    e * scale
}

/// [`stats_cpu`] with tensor operations only, for maps on other devices.
///
/// Per pixel: the winning channel (the first maximum) and its softmax probability; per
/// image and channel: the pixel count and the summed probability (two bincounts over
/// `image * channels + channel`). Index-tracking reductions over the channel axis
/// (`max_dim`, `argmax`) and one-hot maps are several times slower.
pub fn stats_tensor(out: &Tensor) -> (Vec<i64>, Vec<f64>) {
    let (n, channels) = (out.size()[0], out.size()[1]);
    let max = out.amax([1].as_slice(), true); // [N,1,h,w]
    let conf = (out - &max)
        .exp_()
        .sum_dim_intlist([1].as_slice(), false, Kind::Float)
        .reciprocal_(); // [N,h,w]
    let rank = Tensor::arange_start_step(channels, 0, -1, (Kind::Float, out.device()))
        .view([1, channels, 1, 1]);
    // channels - index of the first maximum
    let first = (out.eq_tensor(&max).to_kind(Kind::Float) * rank).amax([1].as_slice(), false);
    let arg = (first.neg() + channels as f64).to_kind(Kind::Int64);
    let image = Tensor::arange(n, (Kind::Int64, out.device())) * channels;
    let index = (arg + image.view([n, 1, 1])).flatten(0, -1);
    let bins = n * channels;
    let area = index.bincount::<Tensor>(None, bins);
    let conf_sum = index.bincount(Some(conf.flatten(0, -1).to_kind(Kind::Double)), bins);
    (
        Vec::<i64>::try_from(area.to_device(Device::Cpu)).unwrap_or_default(),
        Vec::<f64>::try_from(conf_sum.to_device(Device::Cpu)).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random logits rounded to a coarse grid, so that ties between channels are common.
    fn logits(n: i64, channels: i64, h: i64, w: i64, seed: i64) -> Tensor {
        tch::manual_seed(seed);
        (Tensor::randn([n, channels, h, w], (Kind::Float, Device::Cpu)) * 2.0).round() * 0.5
    }

    /// The same logits with channels-last strides (NHWC in memory).
    fn channels_last(x: &Tensor) -> Tensor {
        x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    }

    #[test]
    fn cpu_statistics_match_the_tensor_ones_in_both_layouts_ties_included() {
        for (seed, (n, c, h, w)) in [
            (1, 9, 8, 8),
            (3, 37, 16, 12),
            (2, 5, 1, 1),
            (2, 5, 1, 3),
            (4, 2, 7, 5),
            (2, 8, 3, 3),
            (1, 17, 4, 4),
            (2, 37, 64, 64),
        ]
        .into_iter()
        .enumerate()
        {
            let out = logits(n, c, h, w, seed as i64);
            let (area_cpu, sum_cpu) = stats_cpu(&out);
            let (area_t, sum_t) = stats_tensor(&out);
            assert_eq!(area_cpu, area_t, "areas, case {seed}");
            assert_eq!(
                area_cpu.iter().sum::<i64>(),
                n * h * w,
                "every pixel counted once"
            );
            // Each pixel's probability is within a few float32 ulp of libtorch's.
            for (i, (&a, &b)) in sum_cpu.iter().zip(&sum_t).enumerate() {
                let pixels = area_cpu[i].max(1) as f64;
                assert!(
                    (a - b).abs() <= 4.0 * f64::from(f32::EPSILON) * pixels,
                    "confidence sum {i}, case {seed}: {a} vs {b}"
                );
            }
            // Channels-last: bit for bit the contiguous map's statistics (the same
            // arithmetic per pixel).
            let strided = channels_last(&out);
            assert!(!strided.is_contiguous() || h * w == 1);
            assert_eq!(
                stats_cpu(&strided),
                (area_cpu, sum_cpu),
                "channels-last, case {seed}"
            );
        }
    }

    #[test]
    fn the_first_maximum_wins_a_tie_in_every_lane_position() {
        // 20 channels, two of them tied at the maximum, in every pair of positions; two
        // pixels per image so that the map is channels-last in memory.
        for first in 0..20 {
            for second in first + 1..20 {
                let mut values = vec![-1.0f32; 40];
                for pixel in [0, 20] {
                    values[pixel + first] = 2.0;
                    values[pixel + second] = 2.0;
                }
                let out = Tensor::from_slice(&values)
                    .view([1, 1, 2, 20])
                    .permute([0, 3, 1, 2]);
                let (area, _) = stats_cpu(&out);
                assert_eq!(area[first], 2, "tie at {first} and {second}");
                assert_eq!(area.iter().sum::<i64>(), 2);
            }
        }
    }

    #[test]
    fn the_first_maximum_wins_a_tie() {
        // One pixel, channels 1 and 2 tied at the maximum: channel 1 wins.
        let out = Tensor::from_slice(&[0.0f32, 3.0, 3.0, -1.0]).view([1, 4, 1, 1]);
        let (area, sum) = stats_cpu(&out);
        assert_eq!(area, vec![0, 1, 0, 0]);
        let e = [0.0f64, 3.0, 3.0, -1.0]
            .map(|x| (x - 3.0f64).exp())
            .iter()
            .sum::<f64>();
        assert!((sum[1] - 1.0 / e).abs() < 1e-6);
    }

    #[test]
    fn the_exponential_is_within_two_ulp_on_its_whole_range() {
        let mut worst = 0.0f64;
        let mut x = 0.0f32;
        while x >= -87.0 {
            let exact = f64::from(x).exp();
            let got = f64::from(exp_nonpositive(x));
            // One ulp of the exact value in float32.
            let ulp = f64::from(f32::EPSILON) * exact;
            worst = worst.max((got - exact).abs() / ulp);
            x -= 0.000_37;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) < 1e-37);
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn the_vectorised_loops_equal_the_portable_ones() {
        let plane: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 * -0.3).collect();
        let max = vec![0.5f32; 1000];
        let (mut a, mut b) = (vec![0.25f32; 1000], vec![0.25f32; 1000]);
        add_shifted_exp(&mut a, &plane, &max);
        add_shifted_exp_portable(&mut b, &plane, &max);
        assert_eq!(a, b);
        let (mut ma, mut aa) = (plane.clone(), vec![7u32; 1000]);
        let (mut mb, mut ab) = (plane.clone(), vec![7u32; 1000]);
        let next: Vec<f32> = plane.iter().rev().copied().collect();
        update_maxima(&mut ma, &mut aa, &next, 3);
        update_maxima_portable(&mut mb, &mut ab, &next, 3);
        assert_eq!((ma, aa), (mb, ab));
    }
}
