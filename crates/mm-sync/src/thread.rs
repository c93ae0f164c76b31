//! Threads of the selected runtime. Only the machine (`mm-sim`) and tests spawn threads.

#[cfg(mm_loom)]
pub use loom::thread::{spawn, yield_now, JoinHandle};
#[cfg(all(not(mm_loom), feature = "shuttle"))]
pub use shuttle::thread::{spawn, yield_now, JoinHandle};
#[cfg(all(not(mm_loom), not(feature = "shuttle")))]
pub use std::thread::{
    available_parallelism, scope, sleep, spawn, yield_now, Builder, JoinHandle, Scope,
    ScopedJoinHandle,
};
