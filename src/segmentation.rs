//! Statistics of a segmentation part extractor's output: per image and channel, how many
//! pixels the channel wins and how confident those pixels are.
//!
//! Both functions return, for logits `[N,C,h,w]` (float), `N*C` pixel counts (pixels whose
//! winning channel it is: the first maximum, like `max_dim`) and `N*C` sums of those pixels'
//! softmax probability `1 / sum_c exp(x_c - max)`. [`stats_cpu`] is one pass in Rust over a
//! map in memory, [`stats_tensor`] keeps everything on the map's device.

use crate::prefetch::prefetch;
use tch::{Device, Kind, Tensor};

/// [`stats_tensor`]'s result for a map on the CPU, computed in Rust in one pass over the
/// map's memory, pixel by pixel: each pixel's channels lie side by side in a channels-last
/// map (what a model fed channels-last inputs returns, see
/// [`crate::model::Model::channels_last`]), which is read in place; a contiguous (NCHW) map
/// goes a block of pixels at a time, vectorised over the pixels, with the same arithmetic.
///
/// Per pixel, a vector of channels at a time (16 with AVX-512, 8 with AVX2): the maximum,
/// the first channel holding it, and the softmax denominator, summed per lane (channel `c`
/// in lane `c % LANES`) and then over the lanes in a fixed tree (the portable kernel's
/// `pixel_argmax` and `softmax_denominator` are the arithmetic, the same on every CPU, to
/// the bit). Neighbouring pixels mostly share their winner, so the vector kernels check
/// the next pixels against the last winner found (no channel greater, none before it
/// equal) and search for the maximum again only where it loses, adding up the run in
/// registers. The exponential is [`exp_nonpositive`] (within 2 ulp of the exact value,
/// where libtorch's vectorised one is within 1), so the sums can differ from
/// [`stats_tensor`]'s in the last bits; the counts are identical.
///
/// Only pixels won by a channel from `confidence_from` on have their probability computed
/// and summed; the sums of the channels before it stay 0 (their counts are made). A
/// segmentation's background (channel 0, usually most of the pixels) is not a part, so its
/// confidence is never read: with `confidence_from = 1` its pixels skip the exponentials.
pub fn stats_cpu(out: &Tensor, confidence_from: usize) -> (Vec<i64>, Vec<f64>) {
    let size = out.size();
    let (n, channels) = (size[0] as usize, size[1] as usize);
    let pixels = (size[2] * size[3]) as usize;
    let mut area = vec![0i64; n * channels];
    let mut conf_sum = vec![0f64; n * channels];
    if pixels == 0 || channels == 0 {
        return (area, conf_sum);
    }
    // Only libtorch's accessors for a float map on the CPU (what K returns there): its
    // operators (`to`, `permute`, `contiguous`) go through the dispatcher, whose code is cold
    // right after K's forward pass, and cost 10-20 µs on the first call.
    let out = if out.device() == Device::Cpu && out.kind() == Kind::Float {
        out.shallow_clone()
    } else {
        out.to_device(Device::Cpu).to_kind(Kind::Float)
    };
    // Pixel-major memory: a channels-last map is [N,h,w,C] in memory.
    let strides = out.stride();
    let channels_last = laid_out_in_order(&size, &strides, &[0, 2, 3, 1]);
    let memory = if channels_last || laid_out_in_order(&size, &strides, &[0, 1, 2, 3]) {
        out
    } else {
        out.contiguous()
    };
    if memory.numel() != n * channels * pixels {
        return (area, conf_sum);
    }
    // SAFETY: `memory` is a contiguous float32 CPU tensor of `numel` elements (made so just
    // above), alive until the end of this function and written by nobody meanwhile (the map
    // is this caller's).
    let values =
        unsafe { std::slice::from_raw_parts(memory.data_ptr() as *const f32, memory.numel()) };
    let kernel = PixelKernel::detect();
    let mut planar = Planar::new(channels);
    // The last images first: the model wrote them last, so they are the ones still in the
    // cache, and reading the first images first would evict them before their turn.
    for ((map, area), conf_sum) in values
        .chunks_exact(channels * pixels)
        .zip(area.chunks_exact_mut(channels))
        .zip(conf_sum.chunks_exact_mut(channels))
        .rev()
    {
        if channels_last {
            kernel.count(map, area, conf_sum, confidence_from);
        } else {
            planar.count(map, pixels, area, conf_sum, confidence_from);
        }
    }
    (area, conf_sum)
}

/// Whether a tensor of `sizes` and `strides` is packed in memory with its dimensions in
/// `order`, outermost first (libtorch's rule: dimensions of size 1 have any stride), as
/// `tensor.permute(order).is_contiguous()` says without a call through the dispatcher.
fn laid_out_in_order(sizes: &[i64], strides: &[i64], order: &[usize]) -> bool {
    if sizes.len() != order.len() || strides.len() != order.len() {
        return false;
    }
    if sizes.contains(&0) {
        return true;
    }
    let mut expected = 1;
    for &d in order.iter().rev() {
        if sizes[d] != 1 {
            if strides[d] != expected {
                return false;
            }
            expected *= sizes[d];
        }
    }
    true
}

/// The arithmetic of [`pixel_argmax`] and [`softmax_denominator`] on a contiguous (NCHW) map, a block of pixels at a time,
/// vectorised over the pixels: the maximum, the first channel equal to it, and the 16 lanes
/// of partial sums of each pixel in planes of the block (small enough for the L1 cache).
struct Planar {
    channels: usize,
    max: [f32; BLOCK_PIXELS],
    arg: [u32; BLOCK_PIXELS],
    lanes: Vec<[f32; BLOCK_PIXELS]>,
}

/// Pixels of a [`Planar`] block.
const BLOCK_PIXELS: usize = 64;

impl Planar {
    fn new(channels: usize) -> Self {
        Self {
            channels,
            max: [0.0; BLOCK_PIXELS],
            arg: [0; BLOCK_PIXELS],
            lanes: vec![[0.0; BLOCK_PIXELS]; LANES],
        }
    }

    /// Adds the pixels of one image's map (`C` planes of `pixels`) to its counts (the
    /// probabilities of pixels won by channels from `from` on, as [`stats_cpu`]).
    fn count(
        &mut self,
        map: &[f32],
        pixels: usize,
        area: &mut [i64],
        conf_sum: &mut [f64],
        from: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { self.count_avx2_fma(map, pixels, area, conf_sum, from) };
        }
        self.count_portable(map, pixels, area, conf_sum, from);
    }

    /// [`Self::count_portable`] with the block's pixels 8 to a vector.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn count_avx2_fma(
        &mut self,
        map: &[f32],
        pixels: usize,
        area: &mut [i64],
        conf: &mut [f64],
        from: usize,
    ) {
        use std::arch::x86_64::*;
        const V: usize = 8;
        let whole = pixels / BLOCK_PIXELS * BLOCK_PIXELS;
        let none = _mm256_set1_epi32(-1);
        for start in (0..whole).step_by(BLOCK_PIXELS) {
            let plane = |c: usize| &map[c * pixels + start..c * pixels + start + BLOCK_PIXELS];
            // SAFETY (all loads and stores below): 8 floats at `v * 8` inside a slice of
            // `BLOCK_PIXELS` (a multiple of 8) values.
            let load = |s: &[f32], v: usize| unsafe { _mm256_loadu_ps(s.as_ptr().add(v * V)) };
            let store = |s: &mut [f32], v: usize, x| unsafe {
                _mm256_storeu_ps(s.as_mut_ptr().add(v * V), x)
            };
            for v in 0..BLOCK_PIXELS / V {
                let mut max = _mm256_set1_ps(f32::NEG_INFINITY);
                for c in 0..self.channels {
                    max = _mm256_max_ps(load(plane(c), v), max);
                }
                let mut arg = none;
                for c in (0..self.channels).rev() {
                    // The first channel equal to the maximum: the last one written, going back.
                    let equal =
                        _mm256_castps_si256(_mm256_cmp_ps::<_CMP_EQ_OQ>(load(plane(c), v), max));
                    arg = _mm256_blendv_epi8(arg, _mm256_set1_epi32(c as i32), equal);
                }
                store(&mut self.max, v, max);
                // SAFETY: 8 u32 at `v * 8` inside `arg` (`BLOCK_PIXELS` values).
                unsafe { _mm256_storeu_si256(self.arg.as_mut_ptr().add(v * V).cast(), arg) };
                // None of these 8 pixels needs its probability (no channel from `from` on
                // wins; a pixel without a winner, all -1, counts as channel 0): their
                // denominators are left unwritten, and unread.
                if from > 0 {
                    let wanted = _mm256_cmpgt_epi32(arg, _mm256_set1_epi32(from as i32 - 1));
                    if _mm256_movemask_epi8(wanted) == 0 {
                        continue;
                    }
                }
                let mut lanes = [_mm256_setzero_ps(); LANES];
                for c in 0..self.channels {
                    let e = exp_avx2_fma(_mm256_sub_ps(load(plane(c), v), max));
                    lanes[c % LANES] = _mm256_add_ps(lanes[c % LANES], e);
                }
                let mut width = LANES / 2;
                while width > 0 {
                    for j in 0..width {
                        lanes[j] = _mm256_add_ps(lanes[j], lanes[j + width]);
                    }
                    width /= 2;
                }
                store(&mut self.lanes[0], v, lanes[0]);
            }
            for (&a, &sum) in self.arg.iter().zip(&self.lanes[0]) {
                let a = if a == u32::MAX { 0 } else { a as usize };
                area[a] += 1;
                if a >= from {
                    conf[a] += f64::from(1.0 / sum);
                }
            }
        }
        // The last pixels, fewer than a block.
        if whole < pixels {
            let rest: Vec<f32> = (0..self.channels)
                .flat_map(|c| map[c * pixels + whole..(c + 1) * pixels].iter().copied())
                .collect();
            self.count_portable(&rest, pixels - whole, area, conf, from);
        }
    }

    #[inline(always)]
    fn count_portable(
        &mut self,
        map: &[f32],
        pixels: usize,
        area: &mut [i64],
        conf: &mut [f64],
        from: usize,
    ) {
        const NONE: u32 = u32::MAX;
        for start in (0..pixels).step_by(BLOCK_PIXELS) {
            let len = BLOCK_PIXELS.min(pixels - start);
            let plane = |c: usize| &map[c * pixels + start..c * pixels + start + len];
            let (max, arg) = (&mut self.max[..len], &mut self.arg[..len]);
            max.fill(f32::NEG_INFINITY);
            for c in 0..self.channels {
                for (m, &x) in max.iter_mut().zip(plane(c)) {
                    *m = if x > *m { x } else { *m };
                }
            }
            arg.fill(NONE);
            for c in 0..self.channels {
                for ((a, &m), &x) in arg.iter_mut().zip(&*max).zip(plane(c)) {
                    *a = if *a == NONE && x == m { c as u32 } else { *a };
                }
            }
            let winner = |a: u32| if a == NONE { 0 } else { a as usize };
            // The denominators only where a pixel of the block needs its probability.
            if arg.iter().any(|&a| winner(a) >= from) {
                for lane in &mut self.lanes {
                    lane[..len].fill(0.0);
                }
                for c in 0..self.channels {
                    let lane = &mut self.lanes[c % LANES][..len];
                    for ((s, &m), &x) in lane.iter_mut().zip(&*max).zip(plane(c)) {
                        *s += exp_nonpositive(x - m);
                    }
                }
                let mut width = LANES / 2;
                while width > 0 {
                    let (low, high) = self.lanes.split_at_mut(width);
                    for (l, h) in low.iter_mut().zip(&high[..width]) {
                        for (a, &b) in l[..len].iter_mut().zip(&h[..len]) {
                            *a += b;
                        }
                    }
                    width /= 2;
                }
            }
            for (&a, &sum) in arg.iter().zip(&self.lanes[0][..len]) {
                let a = winner(a);
                area[a] += 1;
                if a >= from {
                    conf[a] += f64::from(1.0 / sum);
                }
            }
        }
    }
}

/// Lanes of the softmax denominator's partial sums (one AVX-512 register of floats, two AVX2
/// ones): channel `c` is added to lane `c % LANES`.
pub const LANES: usize = 16;

/// How [`stats_cpu`] runs [`pixel_argmax`]'s and [`softmax_denominator`]'s arithmetic on this
/// CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PixelKernel {
    /// AVX-512 intrinsics: 16 channels a vector.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX2 and FMA intrinsics: 8 channels a vector, the 16 lanes in two registers.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// Plain Rust, lane by lane.
    Portable,
}

impl PixelKernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx2") && has!("fma") {
                return Self::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Self::Avx2Fma;
            }
        }
        Self::Portable
    }

    /// The kernels this CPU can run, the best first.
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let best = Self::detect();
        let all = [
            #[cfg(target_arch = "x86_64")]
            Self::Avx512,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma,
            Self::Portable,
        ];
        all.into_iter().skip_while(|&k| k != best).collect()
    }

    /// Adds the pixels of one image's map (`[h,w,C]` in memory) to its counts (the
    /// probabilities of pixels won by channels from `from` on, as [`stats_cpu`]).
    fn count(self, map: &[f32], area: &mut [i64], conf_sum: &mut [f64], from: usize) {
        match self {
            // SAFETY: the CPU has AVX-512F, AVX2 and FMA (`detect`).
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { count_avx512(map, area, conf_sum, from) },
            // SAFETY: the CPU has AVX2 and FMA (`detect`).
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => unsafe { count_avx2_fma(map, area, conf_sum, from) },
            Self::Portable => {
                for pixel in map.chunks_exact(area.len()) {
                    let (arg, max) = pixel_argmax(pixel);
                    area[arg] += 1;
                    if arg >= from {
                        conf_sum[arg] += f64::from(1.0 / softmax_denominator(pixel, max));
                    }
                }
            }
        }
    }
}

/// One pixel's winning channel (the first maximum of the numbers among its logits; 0 when
/// there is none) and its largest logit, as the vector kernels find them.
#[inline(always)]
fn pixel_argmax(pixel: &[f32]) -> (usize, f32) {
    let mut max = f32::NEG_INFINITY;
    for &x in pixel {
        // `_mm256_max_ps(x, max)`: NaN is passed over.
        max = if x > max { x } else { max };
    }
    (pixel.iter().position(|&x| x == max).unwrap_or(0), max)
}

/// One pixel's softmax denominator `sum_c exp(x_c - max)`, given its largest logit `max`:
/// the exponentials are summed per lane (channel `c` in lane `c % LANES`, channels in
/// order), then the lanes in a fixed tree (`l[j] + l[j+8]`, then `+ [j+4]`, `+ [j+2]`,
/// `+ [j+1]`), as the vector kernels do.
#[inline(always)]
fn softmax_denominator(pixel: &[f32], max: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    for chunk in pixel.chunks(LANES) {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += exp_nonpositive(x - max);
        }
    }
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            lanes[j] += lanes[j + width];
        }
        width /= 2;
    }
    lanes[0]
}

/// The first channel whose bit is set in `hits` (the channels of the first 64), else the
/// first channel equal to the maximum past them; 0 when none is (NaN logits).
#[inline(always)]
fn first_hit(hits: u64, pixel: &[f32]) -> usize {
    if hits != 0 {
        return hits.trailing_zeros() as usize;
    }
    let max = pixel
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    pixel
        .iter()
        .skip(64)
        .position(|&x| x == max)
        .map_or(0, |i| i + 64)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn count_avx2_fma(map: &[f32], area: &mut [i64], conf_sum: &mut [f64], from: usize) {
    use std::arch::x86_64::*;
    const HALF: usize = LANES / 2;
    let channels = area.len();
    let (full, tail) = (channels / HALF, channels % HALF);
    let tail_mask = _mm256_cmpgt_epi32(
        _mm256_set1_epi32(tail as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    let tail_ps = _mm256_castsi256_ps(tail_mask);
    let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
    // SAFETY: `full` whole vectors lie inside a pixel (`channels` floats, see `count_runs`).
    let load = |pixel: &[f32], k: usize| unsafe { _mm256_loadu_ps(pixel.as_ptr().add(k * HALF)) };
    // SAFETY: so do the `tail` lanes after them; the lanes past them are not read (masked
    // load), they hold -inf.
    let load_last = |pixel: &[f32]| {
        (tail > 0).then(|| {
            let x = unsafe { _mm256_maskload_ps(pixel.as_ptr().add(full * HALF), tail_mask) };
            _mm256_blendv_ps(neg_inf, x, tail_ps)
        })
    };
    let search = |pixel: &[f32]| {
        let last = load_last(pixel);
        let mut vmax = neg_inf;
        // NaN logits are passed over (`_mm256_max_ps` returns its second operand then).
        for k in 0..full {
            vmax = _mm256_max_ps(load(pixel, k), vmax);
        }
        if let Some(x) = last {
            vmax = _mm256_max_ps(x, vmax);
        }
        let max = _mm256_set1_ps(horizontal_max(vmax));
        // Which channels hold the maximum, one bit each (no branch on where it is).
        let mut hits = 0u64;
        for k in 0..full.min(64 / HALF) {
            let equal = _mm256_cmp_ps::<_CMP_EQ_OQ>(load(pixel, k), max);
            hits |= u64::from(_mm256_movemask_ps(equal) as u8) << (k * HALF);
        }
        if let Some(x) = last
            && full < 64 / HALF
        {
            let equal = _mm256_cmp_ps::<_CMP_EQ_OQ>(x, max);
            let lanes = _mm256_movemask_ps(equal) as u8 & ((1u16 << tail) - 1) as u8;
            hits |= u64::from(lanes) << (full * HALF);
        }
        (first_hit(hits, pixel), max)
    };
    let compare = |pixel: &[f32], value: f32| {
        let max = _mm256_set1_ps(value);
        let (mut greater, mut not_less) = (0u64, 0u64);
        for k in 0..full {
            let x = load(pixel, k);
            let gt = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(x, max)) as u8;
            let ge = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(x, max)) as u8;
            greater |= u64::from(gt) << (k * HALF);
            not_less |= u64::from(ge) << (k * HALF);
        }
        // The lanes past the tail (-inf) are never greater, and come after the winner.
        if let Some(x) = load_last(pixel) {
            let gt = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(x, max)) as u8;
            let ge = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(x, max)) as u8;
            greater |= u64::from(gt) << (full * HALF);
            not_less |= u64::from(ge) << (full * HALF);
        }
        (greater, not_less, max)
    };
    let probability = |pixel: &[f32], max: __m256| {
        // Lanes 0-7 of the 16 in `sums[0]`, lanes 8-15 in `sums[1]`.
        let mut sums = [_mm256_setzero_ps(); 2];
        for k in 0..full {
            let e = exp_avx2_fma(_mm256_sub_ps(load(pixel, k), max));
            sums[k % 2] = _mm256_add_ps(sums[k % 2], e);
        }
        if let Some(x) = load_last(pixel) {
            let e = exp_avx2_fma(_mm256_sub_ps(x, max));
            sums[full % 2] = _mm256_add_ps(sums[full % 2], _mm256_and_ps(e, tail_ps));
        }
        1.0 / horizontal_sum(_mm256_add_ps(sums[0], sums[1]))
    };
    count_runs(map, area, conf_sum, from, search, compare, probability);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn count_avx512(map: &[f32], area: &mut [i64], conf_sum: &mut [f64], from: usize) {
    use std::arch::x86_64::*;
    let channels = area.len();
    let (full, tail) = (channels / LANES, channels % LANES);
    let tail_mask: __mmask16 = ((1u32 << tail) - 1) as __mmask16;
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    // SAFETY: `full` whole vectors lie inside a pixel (`channels` floats, see `count_runs`).
    let load = |pixel: &[f32], k: usize| unsafe { _mm512_loadu_ps(pixel.as_ptr().add(k * LANES)) };
    // SAFETY: so do the `tail` lanes after them; the lanes past them are not read (masked
    // load), they hold -inf.
    let load_last = |pixel: &[f32]| {
        (tail > 0).then(|| unsafe {
            _mm512_mask_loadu_ps(neg_inf, tail_mask, pixel.as_ptr().add(full * LANES))
        })
    };
    let search = |pixel: &[f32]| {
        let last = load_last(pixel);
        let mut vmax = neg_inf;
        // NaN logits are passed over (`_mm512_max_ps` returns its second operand then).
        for k in 0..full {
            vmax = _mm512_max_ps(load(pixel, k), vmax);
        }
        if let Some(x) = last {
            vmax = _mm512_max_ps(x, vmax);
        }
        let half = _mm256_max_ps(
            _mm512_castps512_ps256(vmax),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(vmax))),
        );
        let max = _mm512_set1_ps(horizontal_max(half));
        let mut hits = 0u64;
        for k in 0..full.min(64 / LANES) {
            let equal = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(load(pixel, k), max);
            hits |= u64::from(equal) << (k * LANES);
        }
        if let Some(x) = last
            && full < 64 / LANES
        {
            let equal = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, max) & tail_mask;
            hits |= u64::from(equal) << (full * LANES);
        }
        (first_hit(hits, pixel), max)
    };
    let compare = |pixel: &[f32], value: f32| {
        let max = _mm512_set1_ps(value);
        let (mut greater, mut not_less) = (0u64, 0u64);
        for k in 0..full {
            let x = load(pixel, k);
            let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, max);
            let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, max);
            greater |= u64::from(gt) << (k * LANES);
            not_less |= u64::from(ge) << (k * LANES);
        }
        // The lanes past the tail (-inf) are never greater, and come after the winner.
        if let Some(x) = load_last(pixel) {
            let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, max);
            let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, max);
            greater |= u64::from(gt) << (full * LANES);
            not_less |= u64::from(ge) << (full * LANES);
        }
        (greater, not_less, max)
    };
    let probability = |pixel: &[f32], max: __m512| {
        let mut sum = _mm512_setzero_ps();
        for k in 0..full {
            sum = _mm512_add_ps(sum, exp_avx512(_mm512_sub_ps(load(pixel, k), max)));
        }
        if let Some(x) = load_last(pixel) {
            let e = exp_avx512(_mm512_sub_ps(x, max));
            sum = _mm512_mask_add_ps(sum, tail_mask, sum, e);
        }
        // Lanes j and j + 8, then the 8-lane tree.
        let half = _mm256_add_ps(
            _mm512_castps512_ps256(sum),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(sum))),
        );
        1.0 / horizontal_sum(half)
    };
    count_runs(map, area, conf_sum, from, search, compare, probability);
}

/// Adds the pixels of `map` (`area.len()` channels each) to the counts and sums (as
/// [`PixelKernel::count`]) a run of pixels won by one channel at a time: neighbours mostly
/// share their winner, so after `search` has found a pixel's winner and maximum, the next
/// pixel is only checked against it, without searching. `compare` gives a pixel's channels
/// greater than a value and those at least equal to it (one bit each), and the value in
/// the form `search` gives the maximum in. The run is counted and summed in registers, its
/// probabilities (`probability`, given the maximum) added in pixel order, as pixel by
/// pixel.
#[inline(always)]
fn count_runs<V>(
    map: &[f32],
    area: &mut [i64],
    conf_sum: &mut [f64],
    from: usize,
    search: impl Fn(&[f32]) -> (usize, V),
    compare: impl Fn(&[f32], f32) -> (u64, u64, V),
    probability: impl Fn(&[f32], V) -> f32,
) {
    let channels = area.len();
    // `winner` wins the pixel too when no channel is greater and none before it equal
    // (while the channels fit one bit each in a `u64`); NaN logits compare false, so they
    // are passed over as in `search`.
    let wins = |pixel: &[f32], winner: usize| {
        prefetch_ahead(pixel);
        let value = pixel[winner];
        if channels > 64 || value.is_nan() {
            return None;
        }
        let (greater, not_less, max) = compare(pixel, value);
        (greater | (not_less & ((1u64 << winner) - 1)) == 0).then_some(max)
    };
    let mut pixels = map.chunks_exact(channels).peekable();
    while let Some(pixel) = pixels.next() {
        prefetch_ahead(pixel);
        let (arg, max) = search(pixel);
        let mut count = 1;
        if arg < from {
            while pixels.next_if(|p| wins(p, arg).is_some()).is_some() {
                count += 1;
            }
        } else {
            let mut sum = conf_sum[arg] + f64::from(probability(pixel, max));
            while let Some((pixel, max)) = pixels.peek().and_then(|p| Some((*p, wins(p, arg)?))) {
                pixels.next();
                sum += f64::from(probability(pixel, max));
                count += 1;
            }
            conf_sum[arg] = sum;
        }
        area[arg] += count;
    }
}

/// How far ahead of the pixel being decided [`prefetch_ahead`] asks for the map (about 14
/// pixels of 37 channels). A batch's map is larger than the L2 cache (606 KB a frame with
/// the shipped K), and the hardware prefetcher stops at each page's end: measured with 16
/// frames at batch 16, 37 -> 34 µs a frame (1 or 4 KiB ahead did the same as 2).
const PREFETCH_BYTES: usize = 2048;

/// Asks the CPU to bring the map [`PREFETCH_BYTES`] past `pixel` into the cache: three lines
/// (192 bytes), so that pixels of up to 48 channels, asked for one after the other, leave no
/// line out.
#[inline(always)]
fn prefetch_ahead(pixel: &[f32]) {
    let ahead = pixel.as_ptr().cast::<u8>().wrapping_add(PREFETCH_BYTES);
    for line in 0..3 {
        prefetch(ahead.wrapping_add(64 * line));
    }
}

/// The largest of 8 lanes (any order gives the same value for numbers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn horizontal_max(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let quad = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let pair = _mm_max_ps(quad, _mm_movehl_ps(quad, quad));
    _mm_cvtss_f32(_mm_max_ss(pair, _mm_shuffle_ps::<0b01>(pair, pair)))
}

/// The sum of 8 lanes in [`softmax_denominator`]'s tree (`l[j] + l[j+4]`, `+ [j+2]`, `+ [j+1]`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn horizontal_sum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<0b01>(pair, pair)))
}

/// Cephes' single-precision range reduction and polynomial, with fused multiply-adds.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `e^x` for `x <= 0`, within 2 ulp of the exact value for `x >= -87` (smaller `x` gives
/// `e^-87`, negligible next to the 1 every softmax denominator contains; positive `x` is not
/// handled). Cephes' range reduction `x = n ln 2 + r` and polynomial in `r`, with fused
/// multiply-adds: the AVX2 kernel computes exactly this, 8 lanes at a time.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    // `_mm256_max_ps(x, -87)`: NaN becomes -87 too.
    let x = if x > -87.0 { x } else { -87.0 };
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = p.mul_add(r, *c);
    }
    // 2^n by building the exponent field (n is in -126..=0 here); e^r - 1 = r + r^2 p.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p.mul_add(r * r, r).mul_add(scale, scale)
}

/// [`exp_nonpositive`] on 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_avx2_fma(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
    let mut p = _mm256_set1_ps(EXP_POLY[0]);
    for c in &EXP_POLY[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
    }
    let exponent = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(exponent));
    let expm1 = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    _mm256_fmadd_ps(expm1, scale, scale)
}

/// [`exp_nonpositive`] on 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let x = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), x);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_POLY[0]);
    for c in &EXP_POLY[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
    }
    let exponent = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(exponent));
    let expm1 = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    _mm512_fmadd_ps(expm1, scale, scale)
}

/// [`stats_cpu`] with tensor operations only, for maps on other devices.
///
/// Per pixel: the winning channel (the first maximum) and its softmax probability; per
/// image and channel: the pixel count and the summed probability, both summed into one
/// `[2, images * channels]` tensor of doubles by a single `scatter_add` over
/// `image * channels + channel`, which is read back once. On a GPU nothing waits for the
/// device before that read (`bincount` reads the largest index back to size its result), and
/// integer counts stay exact in doubles. Index-tracking reductions over the channel axis
/// (`max_dim`, `argmax`) and one-hot maps are several times slower.
pub fn stats_tensor(out: &Tensor) -> (Vec<i64>, Vec<f64>) {
    let (n, channels) = (out.size()[0], out.size()[1]);
    let device = out.device();
    let max = out.amax([1].as_slice(), true); // [N,1,h,w]
    let conf = (out - &max)
        .exp_()
        .sum_dim_intlist([1].as_slice(), false, Kind::Float)
        .reciprocal_(); // [N,h,w]
    let rank =
        Tensor::arange_start_step(channels, 0, -1, (Kind::Float, device)).view([1, channels, 1, 1]);
    // channels - index of the first maximum
    let first = (out.eq_tensor(&max).to_kind(Kind::Float) * rank).amax([1].as_slice(), false);
    let arg = (first.neg() + channels as f64).to_kind(Kind::Int64);
    let image = Tensor::arange(n, (Kind::Int64, device)) * channels;
    let index = (arg + image.view([n, 1, 1])).flatten(0, -1);
    let pixels = index.size()[0];
    // Row 0 counts the pixels, row 1 sums their probabilities.
    let values = Tensor::stack(
        &[
            Tensor::ones([pixels], (Kind::Double, device)),
            conf.flatten(0, -1).to_kind(Kind::Double),
        ],
        0,
    );
    let sums = Tensor::zeros([2, n * channels], (Kind::Double, device)).scatter_add(
        1,
        &index.unsqueeze(0).expand([2, pixels], false),
        &values,
    );
    let sums = Vec::<f64>::try_from(sums.to_device(Device::Cpu).flatten(0, -1)).unwrap_or_default();
    let (area, conf_sum) = sums.split_at(sums.len() / 2);
    (area.iter().map(|&a| a as i64).collect(), conf_sum.to_vec())
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
            let (area_cpu, sum_cpu) = stats_cpu(&out, 0);
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
                stats_cpu(&strided, 0),
                (area_cpu, sum_cpu),
                "channels-last, case {seed}"
            );
        }
    }

    #[test]
    fn the_layout_is_read_from_the_strides_as_libtorch_reads_it() {
        let base = logits(2, 5, 3, 4, 7);
        let cases = [
            base.shallow_clone(),
            channels_last(&base),
            base.narrow(0, 1, 1),
            channels_last(&base).narrow(0, 1, 1),
            // Neither layout: a window of columns, rows and columns swapped, a channel slice.
            base.narrow(3, 1, 2),
            base.transpose(2, 3),
            channels_last(&base).narrow(1, 0, 3),
            // Dimensions of size 1, whose strides libtorch ignores.
            logits(1, 5, 1, 1, 3),
            logits(3, 1, 2, 2, 4),
            channels_last(&logits(1, 5, 1, 3, 5)),
        ];
        for (i, map) in cases.iter().enumerate() {
            let (size, stride) = (map.size(), map.stride());
            for order in [[0, 2, 3, 1], [0, 1, 2, 3]] {
                assert_eq!(
                    laid_out_in_order(&size, &stride, &order),
                    map.permute(order.map(|d| d as i64)).is_contiguous(),
                    "case {i}, order {order:?}"
                );
            }
            // Whatever the layout, the statistics are the contiguous copy's.
            assert_eq!(
                stats_cpu(map, 0),
                stats_cpu(&map.contiguous(), 0),
                "case {i}"
            );
        }
    }

    #[test]
    fn the_first_maximum_wins_a_tie_in_every_lane_position() {
        // 37 channels (four whole vectors and a tail of 5), two of them tied at the maximum,
        // in every pair of positions; two pixels per image so that the map is channels-last
        // in memory.
        const C: usize = 37;
        for first in 0..C {
            for second in first + 1..C {
                let mut values = vec![-1.0f32; 2 * C];
                for pixel in [0, C] {
                    values[pixel + first] = 2.0;
                    values[pixel + second] = 2.0;
                }
                let out = Tensor::from_slice(&values)
                    .view([1, 1, 2, C as i64])
                    .permute([0, 3, 1, 2]);
                let (area, _) = stats_cpu(&out, 0);
                assert_eq!(area[first], 2, "tie at {first} and {second}");
                assert_eq!(area.iter().sum::<i64>(), 2);
            }
        }
    }

    #[test]
    fn the_first_maximum_wins_a_tie() {
        // One pixel, channels 1 and 2 tied at the maximum: channel 1 wins.
        let out = Tensor::from_slice(&[0.0f32, 3.0, 3.0, -1.0]).view([1, 4, 1, 1]);
        let (area, sum) = stats_cpu(&out, 0);
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
    fn the_kernels_of_this_cpu_equal_the_portable_arithmetic_bit_for_bit() {
        for kernel in PixelKernel::available() {
            for from in [0, 1, 3] {
                for_each_channel_count(kernel, from);
            }
        }
    }

    fn for_each_channel_count(kernel: PixelKernel, from: usize) {
        for channels in (1..=41usize).chain([63, 64, 65, 80]) {
            let pixels = 300;
            // Logits on a coarse grid (ties), wide enough to reach the exponential's clamp,
            // a NaN pixel and an all -inf pixel; pixels 64 to 191 (two whole blocks of the
            // planar kernel) won by channel 0, like a background.
            let mut map: Vec<f32> = (0..channels * pixels)
                .map(|i| ((i * 7919) % 263) as f32 * 0.5 - 100.0)
                .collect();
            for pixel in 64..192 {
                map[pixel * channels] = 100.0;
            }
            map[channels..2 * channels].fill(f32::NEG_INFINITY);
            map[2 * channels + channels / 2] = f32::NAN;
            let case = format!("{kernel:?}, {channels} channels, confidence from {from}");
            matches_the_portable_arithmetic(kernel, &map, channels, from, &case);
            let case = format!("runs, {case}");
            matches_the_portable_arithmetic(kernel, &runs(channels), channels, from, &case);
        }
    }

    /// Pixels in runs of about 7 won by one channel (a segmentation's regions), each run
    /// broken or tested by what the check of a run's winner must tell apart: another
    /// channel equal to the winner before it (which wins) or after it (which does not), a
    /// greater one, a NaN in the winner's channel or elsewhere, -0 against +0, all -inf.
    fn runs(channels: usize) -> Vec<f32> {
        let pixels = 400;
        let mut map = vec![0f32; channels * pixels];
        for (i, pixel) in map.chunks_exact_mut(channels).enumerate() {
            let winner = (i / 7 * 5 + i / 60) % channels;
            for (c, x) in pixel.iter_mut().enumerate() {
                *x = ((i * 31 + c * 17) % 23) as f32 * 0.25 - 4.0;
            }
            pixel[winner] = 3.0;
            let other = (winner + 1 + i % 5) % channels;
            match i % 13 {
                1 if other != winner => pixel[other] = 3.0,
                2 if other != winner => pixel[other] = 3.5,
                3 => pixel[winner] = f32::NAN,
                4 => pixel[other] = f32::NAN,
                5 => {
                    pixel.fill(-1.0);
                    pixel[winner] = 0.0;
                    pixel[other] = -0.0;
                }
                6 => {
                    pixel.fill(-1.0);
                    pixel[winner] = -0.0;
                    pixel[other] = 0.0;
                }
                7 => pixel.fill(f32::NEG_INFINITY),
                8 => pixel[winner] = -50.0,
                _ => {}
            }
        }
        map
    }

    /// `kernel` on a channels-last `map` gives the portable kernel's counts and sums to
    /// the bit, skips the sums before `from` and nothing else, and so do the planar kernels
    /// on the same pixels as planes.
    fn matches_the_portable_arithmetic(
        kernel: PixelKernel,
        map: &[f32],
        channels: usize,
        from: usize,
        case: &str,
    ) {
        let pixels = map.len() / channels;
        let (mut area, mut sums) = (vec![0i64; channels], vec![0f64; channels]);
        kernel.count(map, &mut area, &mut sums, from);
        let (mut area_p, mut sums_p) = (vec![0i64; channels], vec![0f64; channels]);
        PixelKernel::Portable.count(map, &mut area_p, &mut sums_p, from);
        assert_eq!(area, area_p, "{case}");
        let bits = |sums: &[f64]| sums.iter().map(|s| s.to_bits()).collect::<Vec<u64>>();
        assert_eq!(bits(&sums), bits(&sums_p), "{case}");
        assert_eq!(area.iter().sum::<i64>(), pixels as i64);
        // Skipping the channels before `from` changes nothing else: their sums are 0,
        // the others' those of every pixel.
        let (mut area_all, mut sums_all) = (vec![0i64; channels], vec![0f64; channels]);
        PixelKernel::Portable.count(map, &mut area_all, &mut sums_all, 0);
        assert_eq!(area, area_all, "{case}");
        let expected: Vec<f64> = (0..channels)
            .map(|c| if c < from { 0.0 } else { sums_all[c] })
            .collect();
        assert_eq!(bits(&sums), bits(&expected), "{case}");
        // The same pixels as planes (NCHW), block by block.
        let planes: Vec<f32> = (0..channels)
            .flat_map(|c| map.chunks_exact(channels).map(move |px| px[c]))
            .collect();
        let (mut area_n, mut sums_n) = (vec![0i64; channels], vec![0f64; channels]);
        Planar::new(channels).count(&planes, pixels, &mut area_n, &mut sums_n, from);
        assert_eq!(area_n, area_p, "planar, {case}");
        assert_eq!(bits(&sums_n), bits(&sums_p), "planar, {case}");
        let (mut area_n, mut sums_n) = (vec![0i64; channels], vec![0f64; channels]);
        Planar::new(channels).count_portable(&planes, pixels, &mut area_n, &mut sums_n, from);
        assert_eq!(area_n, area_p, "portable planar, {case}");
        assert_eq!(bits(&sums_n), bits(&sums_p), "portable planar, {case}");
    }
}
