//! Subnormal floats flushed to zero while a model runs on the CPU.
//!
//! On real frames the shipped models produce some subnormal intermediate values (floats below
//! `f32::MIN_POSITIVE`), which x86 CPUs compute through a slow microcode path. Measured on the
//! shipped classifier at batch 1 (16 parts-world frames, passes with and without alternated):
//! 3–5% off M's forward pass with them flushed, no change on random inputs, and the same
//! outputs to the bit on those frames. PyTorch users get the same with
//! `torch.set_flush_denormal(True)`; here it is scoped to the forward pass, so the thread's
//! own floating-point mode (a GStreamer streaming thread's, say) is left as it was.

/// Flushes subnormal results to zero and treats subnormal inputs as zero on the current
/// thread (x86-64: the FTZ and DAZ bits of MXCSR) until dropped, which restores the previous
/// mode. Elsewhere it does nothing.
#[derive(Debug)]
#[must_use = "the mode is restored when the guard is dropped"]
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

/// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) bits.
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut csr = 0u32;
    // SAFETY: `stmxcsr` stores the 32-bit MXCSR register at the address given, a local here.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
    }
    csr
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(csr: u32) {
    // SAFETY: `ldmxcsr` loads MXCSR from the address given. Callers only pass a value read
    // from MXCSR with FTZ/DAZ changed, so no reserved bit is set (which would fault).
    unsafe {
        std::arch::asm!(
            "ldmxcsr [{}]",
            in(reg) &csr,
            options(nostack, preserves_flags, readonly)
        );
    }
}

impl FlushDenormals {
    /// Starts flushing on the current thread.
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = read_mxcsr();
            if saved & FTZ_DAZ != FTZ_DAZ {
                write_mxcsr(saved | FTZ_DAZ);
            }
            Self { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self {}
    }

    /// Whether this thread flushes subnormals now (always `false` where unsupported).
    pub fn active() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            read_mxcsr() & FTZ_DAZ == FTZ_DAZ
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if self.saved & FTZ_DAZ != FTZ_DAZ {
            write_mxcsr(self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    /// Half the smallest normal float: subnormal unless flushed.
    fn halved_min() -> f32 {
        black_box(f32::MIN_POSITIVE) / black_box(2.0)
    }

    #[test]
    fn flushes_inside_and_restores_after() {
        assert!(!FlushDenormals::active());
        assert!(halved_min() > 0.0);
        {
            let _flush = FlushDenormals::new();
            if cfg!(target_arch = "x86_64") {
                assert!(FlushDenormals::active());
                assert_eq!(halved_min(), 0.0);
            }
            {
                // Nested: the inner guard leaves the outer one's mode in place.
                let _inner = FlushDenormals::new();
            }
            if cfg!(target_arch = "x86_64") {
                assert_eq!(halved_min(), 0.0);
            }
        }
        assert!(!FlushDenormals::active());
        assert!(halved_min() > 0.0);
    }

    #[test]
    fn a_thread_already_flushing_keeps_flushing() {
        std::thread::spawn(|| {
            let outer = FlushDenormals::new();
            drop(FlushDenormals::new());
            if cfg!(target_arch = "x86_64") {
                assert!(FlushDenormals::active());
            }
            drop(outer);
            assert!(!FlushDenormals::active());
        })
        .join()
        .expect("test thread");
    }
}
