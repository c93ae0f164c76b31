//! Tests: ordinary tests in the std runtime; under `--cfg mm_loom` only the loom models.

mod fixture;

#[cfg(not(mm_loom))]
mod basics;
#[cfg(not(mm_loom))]
mod fork;
#[cfg(not(mm_loom))]
mod kobj;
#[cfg(mm_loom)]
mod loom_b4;
#[cfg(mm_loom)]
mod loom_b6;
#[cfg(mm_loom)]
mod loom_common;
#[cfg(not(mm_loom))]
mod model;
#[cfg(not(mm_loom))]
mod procfs;
#[cfg(not(mm_loom))]
mod threads;
