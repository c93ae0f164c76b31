//! Errors of the MMU: configuration, mapping, and the page fault an access can raise.

use crate::Pte;
use mm_buddy::AllocError;
use mm_types::{Pfn, SwapEntry, VirtAddr};
use std::fmt;

/// A configuration the MMU refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The CPU count is 0 or above [`crate::MAX_CPUS`].
    #[error("{0} CPUs: a machine has 1..={max} CPUs", max = crate::MAX_CPUS)]
    Cpus(u32),
    /// The allocator has fewer CPUs than the MMU (it keeps per-CPU page lists).
    #[error("the page allocator has {buddy} CPUs, the MMU {mmu}")]
    CpuMismatch {
        /// CPUs of the MMU configuration.
        mmu: u32,
        /// CPUs of the allocator.
        buddy: usize,
    },
    /// A TLB level whose entries are not a power-of-two number of sets of `ways`.
    #[error("{level} TLB: {entries} entries in {ways} ways is not a power-of-two number of sets")]
    TlbGeometry {
        /// `l1` or `l2`.
        level: &'static str,
        /// Entries asked for.
        entries: usize,
        /// Ways asked for.
        ways: usize,
    },
    /// The ASID count is 0 or does not fit a 12-bit PCID.
    #[error("{0} dynamic ASIDs: the range is 1..={max}", max = crate::MAX_DYN_ASIDS)]
    Asids(u16),
}

/// Why a mapping operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The address is not page aligned.
    #[error("{0} is not page aligned")]
    Misaligned(VirtAddr),
    /// The address is outside the user half of the address space.
    #[error("{0} is outside the user address space")]
    OutOfRange(VirtAddr),
    /// The frame is not in simulated RAM.
    #[error("pfn {0} is outside simulated RAM")]
    BadPfn(Pfn),
    /// The entry already holds a frame.
    #[error("{va} is already mapped ({old:?})")]
    Exists {
        /// The address.
        va: VirtAddr,
        /// The entry found there.
        old: Pte,
    },
    /// A page-table page could not be allocated.
    #[error("no memory for a page table: {0}")]
    NoMemory(#[from] AllocError),
}

/// The kind of a memory access.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AccessKind {
    /// A data load.
    Read,
    /// A data store.
    Write,
    /// An instruction fetch.
    Exec,
}

/// A memory access: its kind and the privilege it ran at.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Access {
    /// Load, store or fetch.
    pub kind: AccessKind,
    /// True for a user-mode access (`X86_PF_USER`).
    pub user: bool,
}

/// Why an access faulted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FaultKind {
    /// No translation: an empty entry at some level.
    NotPresent,
    /// The PTE holds a swap entry: the fault handler swaps the page in.
    Swap(SwapEntry),
    /// The PTE is a `PROT_NONE` entry that keeps its frame.
    ProtNone,
    /// A write to a page mapped read-only (`X86_PF_PROT | X86_PF_WRITE`).
    WriteProtect,
    /// A user-mode access to a supervisor page.
    UserAccess,
    /// An instruction fetch from a no-execute page.
    NxViolation,
    /// The address is outside the user half of the address space (a #GP on hardware).
    NonCanonical,
    /// The CPU has no user address space loaded (idle, or in lazy-TLB mode).
    NoAddressSpace,
}

/// A page fault: what went wrong, where, and on which access. The VMA layer handles it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, thiserror::Error)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// The faulting address.
    pub addr: VirtAddr,
    /// The access that faulted.
    pub access: Access,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FaultKind::NotPresent => "not present".to_string(),
            FaultKind::Swap(e) => format!("swapped out (type {} offset {:#x})", e.kind, e.offset),
            FaultKind::ProtNone => "PROT_NONE".to_string(),
            FaultKind::WriteProtect => "write to a read-only page".to_string(),
            FaultKind::UserAccess => "user access to a supervisor page".to_string(),
            FaultKind::NxViolation => "instruction fetch from a no-execute page".to_string(),
            FaultKind::NonCanonical => "address outside the user half".to_string(),
            FaultKind::NoAddressSpace => "no address space loaded".to_string(),
        };
        let mode = if self.access.user { "user" } else { "kernel" };
        let kind = match self.access.kind {
            AccessKind::Read => "read",
            AccessKind::Write => "write",
            AccessKind::Exec => "fetch",
        };
        write!(f, "page fault at {}: {what} ({mode} {kind})", self.addr)
    }
}
