//! Camera effects on the finished picture: lighting (gain, contrast, gamma, colour cast,
//! vignetting), blur and sensor noise. Sizes are fractions of the frame so they look the same
//! at any resolution.

use std::sync::LazyLock;

use super::draw::{WRng, chance, uni};

/// The camera/lighting look of a scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look {
    /// Brightness gain.
    pub gain: f32,
    /// Contrast around mid-grey.
    pub contrast: f32,
    /// Gamma.
    pub gamma: f32,
    /// Per-channel colour cast multipliers.
    pub cast: [f32; 3],
    /// Darkening at the corners (0 = none).
    pub vignette: f32,
    /// Gaussian blur sigma as a fraction of the frame's smaller side.
    pub blur: f32,
    /// Sensor noise standard deviation (in `[0, 1]` pixel units).
    pub noise: f32,
}

impl Look {
    /// A random look; `noise` in `[0, 1]` scales lighting changes, blur and noise.
    pub fn random(rng: &mut WRng, noise: f32) -> Look {
        let k = noise.clamp(0.0, 1.5);
        Look {
            gain: 1.0 + k * uni(rng, -0.45, 0.35),
            contrast: 1.0 + k * uni(rng, -0.4, 0.3),
            gamma: 1.0 + k * uni(rng, -0.3, 0.3),
            cast: [
                1.0 + k * uni(rng, -0.18, 0.18),
                1.0 + k * uni(rng, -0.18, 0.18),
                1.0 + k * uni(rng, -0.18, 0.18),
            ],
            vignette: if chance(rng, 0.3) {
                k * uni(rng, 0.0, 0.5)
            } else {
                0.0
            },
            blur: if chance(rng, 0.35) {
                k * uni(rng, 0.0, 0.014)
            } else {
                0.0
            },
            noise: if chance(rng, 0.65) {
                k * uni(rng, 0.0, 0.07)
            } else {
                0.0
            },
        }
    }

    /// No change at all.
    pub fn identity() -> Look {
        Look {
            gain: 1.0,
            contrast: 1.0,
            gamma: 1.0,
            cast: [1.0; 3],
            vignette: 0.0,
            blur: 0.0,
            noise: 0.0,
        }
    }
}

/// A small, fast generator for per-pixel noise (xorshift64*).
struct FastRng(u64);

impl FastRng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Standard normal quantiles at `(i + 0.5) / 256`, for table-driven Gaussian noise.
static NORMAL: LazyLock<[f32; 256]> = LazyLock::new(|| {
    // erf by Abramowitz & Stegun 7.1.26 (error < 1.5e-7), inverted by bisection.
    fn erf(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let y = 1.0
            - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736)
                * t
                + 0.254_829_592)
                * t
                * (-x * x).exp();
        if x >= 0.0 { y } else { -y }
    }
    std::array::from_fn(|i| {
        let p = (i as f64 + 0.5) / 256.0;
        let (mut lo, mut hi) = (-6.0f64, 6.0f64);
        for _ in 0..50 {
            let mid = (lo + hi) / 2.0;
            if 0.5 * (1.0 + erf(mid / std::f64::consts::SQRT_2)) < p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        ((lo + hi) / 2.0) as f32
    })
});

/// Applies the look to an opaque RGBA picture, returning packed RGB; `seed` drives the noise.
pub fn apply(rgba: &[u8], width: u32, height: u32, look: &Look, seed: u64) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let n = w * h;
    // Lighting via per-channel lookup tables (values 0..=255).
    let base: [f32; 256] = std::array::from_fn(|i| {
        if look.gamma == 1.0 {
            i as f32 / 255.0
        } else {
            (i as f32 / 255.0).powf(look.gamma)
        }
    });
    let lut8: [[u8; 256]; 3] = std::array::from_fn(|c| {
        std::array::from_fn(|i| {
            let x = base[i] * look.gain * look.cast[c];
            (((x - 0.5) * look.contrast + 0.5).clamp(0.0, 1.0) * 255.0 + 0.5) as u8
        })
    });
    let sigma = look.blur * w.min(h) as f32;
    let mut out = vec![0u8; n * 3];
    let [l0, l1, l2] = &lut8;
    for (o, px) in out.chunks_exact_mut(3).zip(rgba.chunks_exact(4)) {
        o[0] = l0[px[0] as usize];
        o[1] = l1[px[1] as usize];
        o[2] = l2[px[2] as usize];
    }
    if look.vignette > 0.0 {
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        let r2 = cx * cx + cy * cy;
        for (y, row) in out.chunks_exact_mut(3 * w).enumerate() {
            let dy = (y as f32 + 0.5 - cy) * (y as f32 + 0.5 - cy);
            for (x, o) in row.chunks_exact_mut(3).enumerate() {
                let dx = x as f32 + 0.5 - cx;
                let k = (256.0 * (1.0 - look.vignette * (dx * dx + dy) / r2)) as u32;
                o[0] = ((o[0] as u32 * k) >> 8) as u8;
                o[1] = ((o[1] as u32 * k) >> 8) as u8;
                o[2] = ((o[2] as u32 * k) >> 8) as u8;
            }
        }
    }
    if sigma > 0.05 {
        blur(&mut out, w, h, sigma);
    }
    if look.noise > 0.0 {
        let s = look.noise * 255.0;
        let table = &*NORMAL;
        let mut delta = [0i16; 256];
        for (d, q) in delta.iter_mut().zip(table.iter()) {
            *d = (q * s).round() as i16;
        }
        let mut rng = FastRng(seed | 1);
        let mut bits = 0u64;
        for (k, o) in out.iter_mut().enumerate() {
            if k & 7 == 0 {
                bits = rng.next();
            }
            let v = *o as i32 + delta[(bits & 0xff) as usize] as i32;
            bits >>= 8;
            *o = if v < 0 {
                0
            } else if v > 255 {
                255
            } else {
                v as u8
            };
        }
    }
    out
}

/// Separable blur of an interleaved RGB image (edges replicated), approximating a Gaussian of
/// standard deviation `sigma` pixels by repeated 3-tap binomial passes (variance adds up).
fn blur(img: &mut [u8], w: usize, h: usize, sigma: f32) {
    let mut var = sigma * sigma;
    let mut tmp = vec![0u8; img.len()];
    while var > 0.01 {
        // One pass of [a, 1 - 2a, a] has variance 2a; a <= 1/4.
        let a = (var / 2.0).min(0.25);
        var -= 2.0 * a;
        let wa = (a * 256.0).round() as u32;
        let wc = 256 - 2 * wa;
        // Horizontal.
        tmp.copy_from_slice(img);
        let stride = 3 * w;
        for y in 0..h {
            let row = y * stride;
            for x in 0..w {
                let l = row + 3 * x.saturating_sub(1);
                let c = row + 3 * x;
                let r = row + 3 * if x + 1 < w { x + 1 } else { x };
                for k in 0..3 {
                    let v = wa * (tmp[l + k] as u32 + tmp[r + k] as u32) + wc * tmp[c + k] as u32;
                    img[c + k] = ((v + 128) >> 8) as u8;
                }
            }
        }
        // Vertical.
        tmp.copy_from_slice(img);
        for y in 0..h {
            let up = stride * y.saturating_sub(1);
            let row = stride * y;
            let down = stride * if y + 1 < h { y + 1 } else { y };
            for i in 0..stride {
                let v = wa * (tmp[up + i] as u32 + tmp[down + i] as u32) + wc * tmp[row + i] as u32;
                img[row + i] = ((v + 128) >> 8) as u8;
            }
        }
    }
}
