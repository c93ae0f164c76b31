//! Simulated physical memory (layer L1): frames of real bytes and their page descriptors.
//!
//! This crate owns:
//! - [`PhysMem`]: the machine's RAM, `max_pfn` frames of [`PAGE_SIZE`](mm_types::PAGE_SIZE)
//!   bytes each. Frame bytes and descriptors live in two host mappings reserved with
//!   `MAP_NORESERVE`: the host backs a page of them only when it is first touched, so untouched
//!   frames cost no host memory (a 1 TiB machine that touches nothing costs a few kilobytes),
//!   and a descriptor or word is one index away (no lookup table on the fast paths).
//! - [`Page`]: the `struct page` analogue (flags, refcount, mapcount, LRU links, private,
//!   mapping, index), 64 bytes, one per frame, checked at compile time.
//! - [`PageList`]: an intrusive doubly-linked list of frames threaded through the descriptors'
//!   LRU links (`struct list_head lru`), used for buddy free lists, per-CPU page lists and LRUs.
//!
//! It holds bytes and descriptors only: which frames are free, and every policy, lives above it
//! (`mm-buddy`, `mm-lru`, …).
//!
//! # Invariants
//! - Every byte access is an atomic access to a 64-bit word, so concurrent simulated CPUs never
//!   race in Rust's memory model: a torn simulated access is possible, as on hardware, undefined
//!   behaviour is not. Sub-word stores are compare-and-swap loops on the containing word, so two
//!   CPUs storing to different bytes of one word never lose each other's store.
//! - A descriptor's fields are untracked std atomics ([`mm_sync::untracked`]): the protocols that
//!   hand frames between owners (zone lock, pcp lock, page-table lock) order them, and those
//!   protocols are what the loom models check.
//!
//! # Locking protocol
//! `PhysMem` takes no lock on an access. A [`PageList`] is not synchronized: its owner holds the lock that guards the
//! list (zone lock for free lists, pcp lock for pcp lists) around every call.
#![deny(unsafe_code)]

mod error;
mod list;
#[allow(unsafe_code)]
mod mem;
mod page;

pub use error::PhysError;
pub use list::PageList;
pub use mem::{FrameBytes, PhysMem, SECTION_FRAMES, SECTION_SIZE_BITS};
pub use page::{Page, PageFlags};

#[cfg(test)]
mod tests;
