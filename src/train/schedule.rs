//! Learning-rate schedule: linear warm-up, then cosine decay.

/// Learning rate at `step` of `total` steps for a peak rate `peak`: linear warm-up over the
/// first 5% of the steps, then cosine decay to 1% of the peak.
pub fn warmup_cosine(step: usize, total: usize, peak: f64) -> f64 {
    let warmup = (total / 20).max(1);
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    let floor = 0.01 * peak;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays() {
        let total = 1000;
        assert!(warmup_cosine(0, total, 1.0) < 0.05);
        assert!((warmup_cosine(49, total, 1.0) - 1.0).abs() < 1e-9);
        assert!(warmup_cosine(500, total, 1.0) < 1.0);
        assert!((warmup_cosine(999, total, 1.0) - 0.01).abs() < 1e-3);
        let mut last = f64::MAX;
        for s in 50..total {
            let lr = warmup_cosine(s, total, 1.0);
            assert!(lr <= last + 1e-12);
            last = lr;
        }
    }
}
