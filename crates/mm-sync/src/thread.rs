//! Threads of the selected runtime. Only the machine (`mm-sim`) and tests spawn threads.

#[cfg(mm_loom)]
pub use loom::thread::{spawn, yield_now, JoinHandle};
#[cfg(all(not(mm_loom), feature = "shuttle"))]
pub use shuttle::thread::{spawn, yield_now, JoinHandle};
/// Whether the current thread is unwinding from a panic. Every runtime runs a model thread's
/// unwinding on the host thread that runs it, so the host's answer holds in all three.
pub use std::thread::panicking;
#[cfg(all(not(mm_loom), not(feature = "shuttle")))]
pub use std::thread::{
    available_parallelism, current, scope, sleep, spawn, yield_now, Builder, JoinHandle, Scope,
    ScopedJoinHandle,
};
