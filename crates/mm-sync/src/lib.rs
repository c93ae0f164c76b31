//! The concurrency facade (layer L0): the only crate that names `std::sync`, `std::thread`,
//! `loom`, `shuttle`, `crossbeam-channel` or `dashmap`.
//!
//! Every other crate takes its locks, atomics, cells, threads, channels and concurrent maps from
//! here, so one code base runs in three runtimes:
//!
//! | runtime | selected by | primitives |
//! |---|---|---|
//! | std (default) | nothing | `std::sync`, OS threads, crossbeam-channel, dashmap |
//! | loom | `RUSTFLAGS="--cfg mm_loom"` | loom's model-checked types; `Mutex<HashMap>` maps |
//! | shuttle | `--features mm-sync/shuttle` | shuttle's scheduler-controlled types |
//!
//! The API mirrors std's namespaces ([`sync`], [`sync::atomic`], [`cell`], [`thread`], [`hint`])
//! with two differences taken from tokio's facade: [`sync::Mutex::lock`] does not poison (it
//! returns the guard directly), and [`cell::UnsafeCell`] is reached through `with`/`with_mut` so
//! loom can check every access.
//!
//! [`untracked`] holds std atomics that stay std atomics in every runtime. They are for bulk data
//! whose ordering is established by a tracked lock or atomic elsewhere: the bytes of simulated
//! RAM and page-descriptor fields. Model checkers do not explore their values; the protocols
//! around them are modelled with the tracked types.
//!
//! # Invariants
//! - The loom runtime uses the namespaced cfg `mm_loom`, never a bare `loom`, so the cfg does not
//!   leak into third-party crates.
//! - [`sync::SpinLock`] is a real test-and-test-and-set lock in the std runtime and the
//!   runtime's mutex under loom and shuttle; both give mutual exclusion with acquire/release
//!   ordering, which is all the callers rely on.
//!
//! # Locking protocol
//! The facade adds no locks of its own beyond what each wrapper wraps.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod cell;
pub mod channel;
pub mod hint;
pub mod map;
pub mod sync;
pub mod thread;
pub mod untracked;

/// Runs `f` as a model: every interleaving under loom (`loom::model`), a batch of randomized
/// schedules under shuttle (`check_random`, seed from `MMSIM_SEED` when set), and once in the
/// std runtime.
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    #[cfg(mm_loom)]
    {
        loom::model(f);
    }
    #[cfg(all(not(mm_loom), feature = "shuttle"))]
    {
        let iterations = std::env::var("MMSIM_SHUTTLE_ITERATIONS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000);
        match std::env::var("MMSIM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(seed) => shuttle::check_random_with_seed(f, seed, iterations),
            None => shuttle::check_random(f, iterations),
        }
    }
    #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
    {
        f();
    }
}

/// Returns true when built for the loom runtime.
pub const IS_LOOM: bool = cfg!(mm_loom);
