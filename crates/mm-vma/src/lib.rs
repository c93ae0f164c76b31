//! Address spaces (layer L4): the VMA tree, the memory syscalls, the page-fault handler, fork
//! with copy-on-write, rmap, and the `/proc/PID` memory files, after Linux 6.x `mm/mmap.c`,
//! `mm/memory.c`, `mm/mprotect.c`, `mm/mremap.c`, `mm/madvise.c`, `mm/mlock.c`, `mm/rmap.c`
//! and `fs/proc/task_mmu.c`.
//!
//! This crate owns:
//! - [`VmSys`]: the layer's machine-wide state: the MMU and allocator it maps with, the slab
//!   allocator its kernel objects come from ([`VmSys::slab`]), the shared zero page, the
//!   [`Hooks`] the machine installs ([`SwapBackend`], [`LruHook`]), the rmap registries and
//!   `Committed_AS`. One per machine.
//! - The kernel objects' memory (the `kobj` module): every address space, VMA and anon_vma,
//!   and every link of a VMA's anon_vma chain, owns one object of `mm-slab`'s `mm_struct`,
//!   `vm_area_struct`, `anon_vma` and `anon_vma_chain` caches in simulated RAM, holding its
//!   fields at Linux's offsets where they are stable (`vm_start`, `vm_end`, `vm_mm`,
//!   `vm_flags`; the chain's two pointers; the anon_vma's root, refcount and parent) and a
//!   documented record for the `mm_struct`. So `/proc/slabinfo` counts them as a kernel's does.
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
//! - With a slab, the allocated objects of those four caches that this layer made are exactly
//!   the live address spaces (until `exit`), the VMAs in trees, the anon_vmas still
//!   referenced, and the (VMA, anon_vma) pairs of the trees' VMAs: a VMA changed in place by
//!   the syscalls (grown, shrunk, merged, reprotected) keeps its objects, a split allocates
//!   one `vm_area_struct` (and chain links), and a `vm_area_struct` always holds its VMA's
//!   current range and flags (`check_invariants` verifies all of this). Out of slab memory,
//!   a syscall fails with ENOMEM and a fault with OOM, leaving the tree as it was.
//!
//! The machine's side: every CPU in an address space's cpumask keeps handling its IPIs (a
//! CPU actor between quanta, any CPU while it waits for a lock of this layer); the CPU does
//! not hold its `PcpLocked` guard while it runs this crate's code (nor a slab pin made with
//! it: this crate pins the CPU itself); an `AddressSpace` is `exit`ed before it is dropped;
//! [`VmSys::new`] gets the machine's slab, booted on the same page allocator.
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
//!
//! Slab objects are allocated and freed under at most the mmap lock (1), never under 2 or 3:
//! a slab page allocation may reclaim, and reclaim takes 2 and 3. Each allocation or free
//! pins the running CPU in the slab (`SlabAllocator::cpu`, its `CpuCtx`'s CPU) for that call
//! only, so no pin is held while waiting for a lock; pins never block. The one free without
//! a `CpuCtx`, of an anon_vma whose last reference an rmap walk held, goes through a shared
//! pin of the CPU that allocated it (a remote free), after the walk dropped its locks.
#![deny(unsafe_code)]

mod ctx;
mod error;
mod fault;
mod flags;
mod fork;
mod gup;
mod hooks;
mod kobj;
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
