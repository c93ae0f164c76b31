//! Spin-loop hints. Under loom a spin must yield, or the model never makes progress.

/// Signals a spin-wait iteration.
#[inline]
pub fn spin_loop() {
    #[cfg(mm_loom)]
    loom::thread::yield_now();
    #[cfg(all(not(mm_loom), feature = "shuttle"))]
    shuttle::thread::yield_now();
    #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
    std::hint::spin_loop();
}
