//! `mmu_gather` (`mm/mmu_gather.c`): batches the frames and page-table pages an unmap frees,
//! with the range it cleared, and frees them only after the flush that covers that range.

use crate::flush::{Cover, PendingFree, FLUSH_ALL};
use crate::{Mm, MmuCpu};
use mm_buddy::Frame;
use std::fmt;

/// Frames gathered beyond this many are flushed and freed mid-unmap (`MAX_GATHER_BATCH_COUNT`
/// batches of `MAX_GATHER_BATCH` pages: about 10 000).
pub const MAX_GATHER_PAGES: usize = 10_000;

/// An unmap in progress on one address space (`struct mmu_gather`).
///
/// Page-table code records every address it clears ([`Mm::zap_range`],
/// [`Mm::free_pgtables`]); the caller hands over frames to free with
/// [`MmuGather::remove_page`]. [`MmuGather::flush_mmu`] and [`MmuGather::finish`] flush the
/// recorded range on every CPU that may cache it and only then give the frames back: the frames
/// sit in a holder that only the flush's [`crate::FlushCompleted`] can release.
#[must_use = "call finish(), or the gathered frames are leaked"]
pub struct MmuGather<'a> {
    mm: &'a Mm,
    fullmm: bool,
    /// Cleared VPNs `start..end`; empty while `start >= end`.
    start: u64,
    end: u64,
    freed_tables: bool,
    frames: Vec<Frame>,
    freed: usize,
}

impl fmt::Debug for MmuGather<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmuGather")
            .field("mm", &self.mm.ctx_id())
            .field("fullmm", &self.fullmm)
            .field("range", &(self.start..self.end))
            .field("freed_tables", &self.freed_tables)
            .field("frames", &self.frames.len())
            .finish()
    }
}

impl<'a> MmuGather<'a> {
    /// Starts an unmap of part of `mm` (`tlb_gather_mmu`).
    pub fn new(mm: &'a Mm) -> MmuGather<'a> {
        MmuGather {
            mm,
            fullmm: false,
            start: u64::MAX,
            end: 0,
            freed_tables: false,
            frames: Vec::new(),
            freed: 0,
        }
    }

    /// Starts the teardown of all of `mm` (`tlb_gather_mmu_fullmm`): one flush of the whole mm.
    pub fn new_fullmm(mm: &'a Mm) -> MmuGather<'a> {
        MmuGather {
            fullmm: true,
            ..MmuGather::new(mm)
        }
    }

    /// Returns the address space.
    pub fn mm(&self) -> &'a Mm {
        self.mm
    }

    /// Records that the PTE of `vpn` was cleared (`tlb_remove_tlb_entry`).
    pub(crate) fn track(&mut self, vpn: u64) {
        self.start = self.start.min(vpn);
        self.end = self.end.max(vpn + 1);
    }

    /// Records that the page table spanning from `vpn` was unhooked and hands it over
    /// (`pte_free_tlb` and friends): the flush must then reach lazy-TLB CPUs.
    pub(crate) fn track_table(&mut self, vpn: u64, table: Frame) {
        self.track(vpn);
        self.freed_tables = true;
        self.frames.push(table);
    }

    /// Queues a frame whose last mapping was cleared in this gather, to be freed after the
    /// flush (`__tlb_remove_page`).
    pub fn remove_page(&mut self, frame: Frame) {
        self.frames.push(frame);
    }

    /// Returns the number of frames waiting for the flush.
    pub fn pending(&self) -> usize {
        self.frames.len()
    }

    /// Returns the number of frames freed so far.
    pub fn freed(&self) -> usize {
        self.freed
    }

    pub(crate) fn is_full(&self) -> bool {
        self.frames.len() >= MAX_GATHER_PAGES
    }

    /// Flushes the range cleared so far, then frees what was gathered (`tlb_flush_mmu`).
    pub fn flush_mmu(&mut self, cpu: &mut MmuCpu) {
        let has_range = self.start < self.end;
        if !has_range && self.frames.is_empty() {
            return;
        }
        let (start, end) = if self.fullmm || !has_range {
            (0, FLUSH_ALL)
        } else {
            (self.start, self.end)
        };
        // Read after every clear this gather recorded: the flush below bumps past it.
        let gen = self.mm.tlb_gen();
        let pending = PendingFree::new(
            Cover::Mm {
                ctx_id: self.mm.ctx_id(),
                gen,
                start,
                end,
                tables: self.freed_tables,
            },
            std::mem::take(&mut self.frames),
        );
        let mmu = self.mm.mmu.clone();
        #[cfg(test)]
        if self.mm.regress.free_before_flush {
            self.freed += pending.release_unflushed(&mmu, cpu.id());
            cpu.flush_tlb_mm_range(self.mm, start, end, self.freed_tables);
            self.reset();
            return;
        }
        let done = cpu.flush_tlb_mm_range(self.mm, start, end, self.freed_tables);
        match pending.release(&done, &mmu, cpu.id()) {
            Ok(n) => self.freed += n,
            Err(p) => panic!("the flush of the gathered range does not cover it: {p:?}"),
        }
        self.reset();
    }

    fn reset(&mut self) {
        self.start = u64::MAX;
        self.end = 0;
        self.freed_tables = false;
    }

    /// Flushes and frees what is left, ending the unmap (`tlb_finish_mmu`). Returns the number
    /// of frames this gather freed in all.
    pub fn finish(mut self, cpu: &mut MmuCpu) -> usize {
        self.flush_mmu(cpu);
        self.freed
    }
}
