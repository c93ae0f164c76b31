//! Tests: unit tests in the std runtime; under `--cfg mm_loom` only the loom models compile.

mod fixture;

#[cfg(mm_loom)]
mod loom_b3;
#[cfg(mm_loom)]
mod loom_b7;
#[cfg(mm_loom)]
mod loom_common;
#[cfg(mm_loom)]
mod loom_shootdown;
#[cfg(not(mm_loom))]
mod pte;
#[cfg(not(mm_loom))]
mod shootdown;
#[cfg(not(mm_loom))]
mod translate;
