//! Address translation (layer L3): x86-64 page tables stored in simulated RAM, the hardware
//! walker, per-CPU TLBs tagged with PCIDs, and the TLB-shootdown protocol with `mmu_gather`.
//!
//! Shootdowns emit the `tlb_flush` tracepoint (reasons `local shootdown`, `remote shootdown`,
//! `remote ipi send`; pages, -1 for a full flush) as `tracing` events, target `mm_trace`.
//!
//! This crate owns:
//! - [`Pte`]: the x86-64 entry (present, RW, user, accessed, dirty, global, NX, PFN in bits
//!   12..51) and the Linux encoding of a swap entry in a non-present PTE ([`Pte::swap`]).
//! - [`Mm`]: one address space's page tables (4-level, or 5-level per machine), allocated from
//!   `mm-buddy` as `PageTable` pages, with its PCID context id, TLB generation (`tlb_gen`),
//!   cpumask and page-table lock; and the editing API the VMA layer uses: [`Mm::map`],
//!   [`Mm::zap_range`], [`Mm::change_protection`], [`Mm::move_pte`], [`Mm::try_to_unmap`],
//!   [`Mm::free_pgtables`], [`Mm::lookup`], [`Mm::exit_mmap`].
//! - [`MmuCpu`]: one CPU's TLB (L1 + L2, set-associative, LRU, [`TlbConfig`]), its 6 dynamic
//!   ASIDs, its counters and cycle cost model ([`TlbStats`], [`CostModel`]), the access API
//!   (`load_u64`, `store_u64`, `read`, `write`, … at a virtual address, returning a
//!   [`Fault`] instead of a value when the walk fails), and the IPI mailbox it drains with
//!   [`MmuCpu::handle_ipis`].
//! - The shootdown: a flush bumps the mm's `tlb_gen`, flushes locally, sends an [`Ipi`] to every
//!   other CPU in the cpumask (lazy ones only when page tables are freed), and waits for their
//!   acks. [`MmuGather`] (munmap, exit) and [`TlbBatch`] (reclaim) free frames only after the
//!   flush that covers them: the frames wait in a holder that only that flush's
//!   [`FlushCompleted`] releases.
//!
//! It does not know VMAs, rmap or swap policy: the VMA layer decides what to map and handles
//! faults; reclaim decides what to unmap.
//!
//! # Invariants
//! - Free after flush: a frame or page-table page unhooked from a page table goes back to the
//!   allocator only after every CPU that may cache a translation through it has flushed it.
//!   Nothing in the public API frees an unhooked frame any other way.
//! - A CPU caches translations of an address space only while it is in that mm's cpumask, or
//!   under an ASID whose recorded `tlb_gen` is compared with the mm's before the ASID is used
//!   again; a context id is never reused.
//! - A TLB entry never grants more than the PTE it was filled from granted when it was filled;
//!   write permission is cached only once the PTE is dirty.
//! - Page-table pages carry `PageFlags::PGTABLE` and are counted in [`Mmu::nr_pagetables`]
//!   from allocation until they are freed.
//!
//! # Locking protocol
//! - **TLB state** is per CPU, owned by the CPU's thread ([`MmuCpu`] through `&mut`): no lock.
//!   A hit is a few loads and stores on it plus one relaxed load of simulated RAM.
//! - **Page tables** are edited under the mm's page-table lock (a spin lock). The walker reads
//!   them without it and sets accessed/dirty bits with `cmpxchg`, so software clears entries
//!   with get-and-clear. A CPU spinning for the lock keeps handling its IPIs.
//! - **Shootdown** (`flush_tlb_mm_range`), initiator on CPU `i`:
//!   1. change the PTEs (under the page-table lock or not);
//!   2. `new_gen = ++mm.tlb_gen`, then `fence(SeqCst)`;
//!   3. read the cpumask and each target's `is_lazy`; run the flush locally if `i` is in it;
//!   4. queue one [`Ipi`] per target and spin (then yield) until all have acknowledged,
//!      **handling `i`'s own mailbox meanwhile**; two CPUs shooting each other down thus each
//!      acknowledge the other while waiting. The initiator may hold the page-table lock while
//!      it waits, because every CPU waiting for that lock handles IPIs too.
//!
//!   A target handles the IPI between accesses ([`MmuCpu::handle_ipis`]): if it has that mm
//!   loaded it compares its ASID's `tlb_gen` with the mm's and flushes the page range (only
//!   when exactly one generation behind) or the whole ASID, records the mm's generation, then
//!   acknowledges with a release decrement that the initiator acquires before it frees.
//! - **Switching in** (`switch_mm`): set the cpumask bit, `fence(SeqCst)`, read `tlb_gen`, and
//!   flush the ASID if it is behind. With the initiator's fence this is store buffering
//!   fenced on both sides: either the initiator sees the bit, or the CPU sees the new
//!   generation. Leaving lazy mode clears `is_lazy`, fences and compares the same way.
//! - **Batched reclaim** ([`TlbBatch`]): under the page-table lock reclaim clears the PTE, bumps
//!   `tlb_gen`, accumulates the cpumask and counts a pending batch in `mm.tlb_flush_batched`;
//!   mprotect, munmap and mremap call `flush_tlb_batched_pending` under the same lock before
//!   trusting an empty PTE (3ea277194daa). mremap flushes a moved present PTE before dropping
//!   the lock (eb66ae030829).
//! - **Waiting and retiring**: a waiting CPU spins briefly, then yields its host thread (under
//!   loom it blocks on a doorbell that every IPI for it and every acknowledgement of its
//!   shootdown rings; see `wait.rs`). A CPU thread that stops either keeps handling IPIs until
//!   the others stop too, or drops its [`MmuCpu`]: an [`Ipi`] acknowledges itself when it is
//!   dropped, so the IPIs of a retired CPU complete. Daemons that are not CPUs work through
//!   [`Mmu::daemon`].
//! - Lock order: page-table lock, then the allocator's pcp and zone locks (tables are
//!   allocated with the page-table lock dropped; frames are freed after it is dropped or while
//!   it is held, never the reverse). A CPU must not hold its `PcpLocked` pcp lists across an
//!   MMU call that allocates, frees or flushes.
#![deny(unsafe_code)]

mod batch;
mod config;
mod cpu;
mod error;
mod flush;
mod gather;
mod mm;
mod mmu;
mod pte;
mod table;
mod tlb;
mod wait;

pub use batch::TlbBatch;
pub use config::{
    CostModel, MmuConfig, PagingMode, TlbConfig, TlbGeometry, MAX_CPUS, MAX_DYN_ASIDS,
    TLB_NR_DYN_ASIDS, TLB_SINGLE_PAGE_FLUSH_CEILING,
};
pub use cpu::MmuCpu;
pub use error::{Access, AccessKind, ConfigError, Fault, FaultKind, MapError};
pub use flush::{FlushCompleted, Ipi, IpiKick};
pub use gather::{MmuGather, MAX_GATHER_PAGES};
pub use mm::Mm;
pub use mmu::Mmu;
pub use pte::{Prot, Pte, PteFlags, MAX_SWAP_OFFSET, MAX_SWAP_TYPES, PTE_PFN_MASK, PTRS_PER_TABLE};
pub use tlb::TlbStats;

#[cfg(test)]
mod tests;
