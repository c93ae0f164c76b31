//! Std atomics in every runtime, for bulk data that model checkers do not explore.
//!
//! Simulated RAM holds gigabytes of words, and page descriptors exist for every frame; loom
//! cannot track millions of objects, and their values are ordered by the tracked locks and
//! atomics of the protocols that hand frames around. Use these only where such a tracked
//! synchronization point exists, and say which in a comment.

pub use std::sync::atomic::{
    fence, AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
pub use std::sync::OnceLock;
