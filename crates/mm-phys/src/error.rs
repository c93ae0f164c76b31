//! Errors of physical-memory access.

use mm_types::{Pfn, PhysAddr};

/// An access outside simulated RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhysError {
    /// The frame is beyond `max_pfn`.
    #[error("pfn {pfn} is outside simulated RAM (max_pfn {max_pfn})")]
    NoSuchFrame {
        /// The frame asked for.
        pfn: Pfn,
        /// One past the last frame.
        max_pfn: Pfn,
    },
    /// The host would not reserve address space for simulated RAM.
    #[error("the host refused to reserve {bytes} bytes of address space for simulated RAM")]
    HostRefused {
        /// The size of the refused reservation.
        bytes: u64,
    },
    /// The byte range runs past the end of RAM.
    #[error("access of {len} bytes at {addr} runs past the end of simulated RAM")]
    OutOfRange {
        /// Start of the access.
        addr: PhysAddr,
        /// Its length in bytes.
        len: usize,
    },
}
