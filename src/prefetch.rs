//! Cache hints for the loops that read frames and maps larger than the caches, where the
//! hardware prefetcher stops at each page's end.

/// Asks the CPU to bring the cache line of `byte` into all levels of the cache. A hint: it
/// reads nothing and never faults, whatever the address.
#[inline(always)]
pub fn prefetch(byte: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64, and a prefetch reads nothing and never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(byte.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}

/// Asks the CPU to bring the cache line of `byte` into its second-level cache (not the
/// first): for lines needed a little later than [`prefetch`]'s, which the first level would
/// have evicted again by then. A hint, like [`prefetch`].
#[inline(always)]
pub fn prefetch_l2(byte: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64, and a prefetch reads nothing and never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(byte.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}
