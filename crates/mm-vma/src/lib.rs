//! Address spaces (layer L4): the VMA tree, the memory syscalls, the page-fault handler, fork
//! with copy-on-write, rmap, and the `/proc/PID` memory files, after Linux 6.x `mm/mmap.c`,
//! `mm/memory.c`, `mm/mprotect.c`, `mm/mremap.c`, `mm/madvise.c`, `mm/mlock.c`, `mm/rmap.c`
//! and `fs/proc/task_mmu.c`.
//!
//! This crate owns:
//! - [`VmSys`]: the layer's machine-wide state: the MMU and allocator it maps with, the shared
//!   zero page, the [`Hooks`] the machine installs ([`SwapBackend`], [`LruHook`]), the rmap
//!   registries and `Committed_AS`. One per machine.
//! - [`AddressSpace`] (`mm_struct`): one per process. Its VMAs live in an ordered tree
//!   (maple-tree semantics: ordered, non-overlapping, O(log n) lookup) under the mmap lock;
//!   its page tables are an `mm_mmu::Mm`; it keeps the x86-64 layout (`mmap_base`
//!   top-down, the heap after the image, the stack at the top with a guard gap), the RSS and
//!   VM counters. Syscalls are its methods: [`AddressSpace::mmap`], `munmap`, `mprotect`,
//!   `mremap`, `brk`, `madvise`, `mlock`, `munlock`, `fork`, `exit`, and the remote access
//!   of `/proc/PID/mem` (`read_remote`, `write_remote`). They return `Result<_, Errno>` with
//!   Linux's errnos (`brk` returns the old break on failure).
//! - [`CpuCtx`]: what kernel code on one simulated CPU carries (its `mm_mmu::MmuCpu`, event
//!   counters). The machine makes one per CPU actor (and per daemon). Its access API
//!   (`load_u64`, `store_u64`, `read`, `write`, ...) goes through the TLB and, on a fault,
//!   the fault handler, returning [`AccessError`] (a [`Signal`] or OOM) on a bad access.
//! - The fault handler: demand-zero (the shared zero page for reads), file and shmem faults
//!   ([`VmFile`]), COW copy or reuse, swap-in ([`SwapBackend`]), stack growth.
//! - rmap ([`VmSys::rmap_walk`]): anon_vmas linked through fork, and per-file lists; and
//!   [`VmSys::try_to_unmap`], reclaim's way to replace every mapping of a page with a swap
//!   entry (or nothing) under each address space's page-table lock, with a batched flush.
//! - [`proc_status`], [`proc_statm`], [`proc_maps`], [`proc_smaps`], [`proc_smaps_rollup`].
//!
//! # Invariants
//! - The VMAs of an address space are page aligned, ordered and never overlap; adjacent VMAs
//!   that could be one are merged (except the heap's first VMA, which `brk` never merges
//!   backwards).
//! - Every present or swap entry in the page tables lies inside a VMA and is counted in the
//!   RSS counters (`check_invariants`). A page mapped by `n` entries has mapcount `n` and at
//!   least `n` references; an anonymous page records the anon_vma it was created under
//!   (which the mapping VMA's chain contains) and its linear index.
//! - A frame is freed only after every TLB that may map it was flushed: a zap hands a page
//!   whose last reference it drops to the `mmu_gather`, and a page others still reference
//!   keeps the zap's reference until after the flush.
//! - References to mapped pages are taken only under the page-table lock (GUP, COW, fork) or
//!   by a fault that fills an empty entry with a new or page-cache page.
//! - An entry this layer replaces holds a non-present busy marker (a non-swap entry) between
//!   the flush of the old translation and the new one, never nothing: an empty entry only
//!   ever becomes present.
//!
//! The machine's side: every CPU in an address space's cpumask keeps handling its IPIs (a
//! CPU actor between quanta, any CPU while it waits for a lock of this layer); the CPU does
//! not hold its `PcpLocked` guard while it runs this crate's code; an `AddressSpace` is
//! `exit`ed before it is dropped.
//! - The shared zero page is never counted, referenced or freed while the layer lives.
//!
//! # Locking protocol
//! Lock order, outermost first:
//! 1. **mmap lock** (per address space, an rw_semaphore): read for faults, GUP, madvise
//!    DONTNEED/FREE/WILLNEED and `/proc` walks; write for everything that changes the VMA
//!    tree. munmap and brk shrink downgrade it to read while they zap, unless the next VMA
//!    grows down (246c320a8cfe). Fork takes the parent's, then the child's. Waiting is a
//!    spin that keeps handling IPIs: a holder may be waiting for this CPU's acknowledgement.
//! 2. **rmap locks** (registry, then one anon_vma or file list): while linking and unlinking
//!    VMAs, and briefly in a walk to copy the links out.
//! 3. **page-table lock** of the address space (`MmCore`'s spin lock, waited for with IPIs
//!    handled): around every check-then-change of an entry (COW, reuse, swap-in, a shared
//!    write, protection changes, zaps, fork's copy, GUP's follow), and page-table walks.
//!    `mm-mmu`'s own page-table lock nests inside it. Filling an empty entry does not take
//!    it (see the fault module).
//! 4. The allocator's pcp and zone locks, innermost (allocations and frees).
//!
//! A flush (waiting for other CPUs' acknowledgements) may happen under 1 and 3, never
//! under 2 or 4.
#![deny(unsafe_code)]

mod ctx;
mod error;
mod fault;
mod flags;
mod fork;
mod gup;
mod hooks;
mod layout;
mod lock;
mod mm;
mod mmap;
mod mprotect;
mod procfs;
mod pt;
mod rmap;
mod shmem;
mod sys;
mod vma;

pub use ctx::{CpuCtx, VmEvents};
pub use error::{AccessError, SegvCode, Signal};
pub use flags::{Advice, MapFlags, MremapFlags, ProtFlags, VmFlags};
pub use hooks::{
    FileFaultError, FilePage, Hooks, LruHook, NoLru, NoSwap, SwapBackend, SwapError, SwapIn,
    VmFile, VmFileRef,
};
pub use layout::{
    ExecImage, Layout, Rlimits, ELF_ET_DYN_BASE, INITIAL_STACK_PAGES, RLIM_INFINITY, TASK_SIZE,
};
pub use mm::{AddressSpace, MmCore, Rss, RssKind};
pub use procfs::{proc_maps, proc_smaps, proc_smaps_rollup, proc_statm, proc_status};
pub use rmap::RmapHit;
pub use shmem::{ShmemFile, SHMEM_DEV};
pub use sys::{Overcommit, VmConfig, VmSys};

#[cfg(test)]
mod tests;
