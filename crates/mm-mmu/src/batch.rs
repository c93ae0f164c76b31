//! Reclaim's batched TLB flush (`struct tlbflush_unmap_batch`, `try_to_unmap_flush`): PTEs of
//! many address spaces are cleared, their CPUs accumulated, and one shootdown flushes them all
//! before any of the frames is freed or written out.

use crate::flush::{Cover, CpuMask, FlushCompleted, FlushInfo, PendingFree, FLUSH_ALL};
use crate::{Mm, Mmu, MmuCpu};
use mm_buddy::Frame;
use mm_sync::sync::atomic::{fence, Ordering};
use mm_sync::sync::Arc;
use std::fmt;

/// One reclaimer's pending batched flush (`current->tlb_ubc`).
#[must_use = "call flush(), or the deferred frames are leaked and the flush never happens"]
pub struct TlbBatch {
    mmu: Arc<Mmu>,
    id: u64,
    /// Flushes done so far.
    epoch: u64,
    /// CPUs that may cache a cleared translation (`arch_tlbflush_unmap_batch.cpumask`).
    cpus: CpuMask,
    /// A PTE was cleared since the last flush (`flush_required`).
    flush_required: bool,
    frames: Vec<Frame>,
}

impl fmt::Debug for TlbBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlbBatch")
            .field("id", &self.id)
            .field("cpus", &self.cpus)
            .field("flush_required", &self.flush_required)
            .field("frames", &self.frames.len())
            .finish()
    }
}

impl TlbBatch {
    /// Creates an empty batch.
    pub fn new(mmu: &Arc<Mmu>) -> TlbBatch {
        TlbBatch {
            mmu: mmu.clone(),
            id: mmu.new_batch_id(),
            epoch: 0,
            cpus: CpuMask::default(),
            flush_required: false,
            frames: Vec::new(),
        }
    }

    /// Returns true if a cleared PTE still waits for the flush.
    pub fn is_pending(&self) -> bool {
        self.flush_required
    }

    /// `arch_tlbbatch_add_pending`: bumps `mm`'s TLB generation, so a CPU that loads `mm`
    /// later (or leaves lazy mode) flushes, and adds the CPUs that have it loaded now.
    pub(crate) fn add_pending(&mut self, mm: &Mm) {
        mm.inc_tlb_gen();
        // Pairs with the fence in switch_mm, as in flush_tlb_mm_range.
        fence(Ordering::SeqCst);
        for cpu in mm.cpumask().snapshot().iter() {
            self.cpus.set(cpu);
        }
        self.flush_required = true;
    }

    /// Queues a frame unmapped through this batch, to be freed after its flush.
    pub fn defer_free(&mut self, frame: Frame) {
        self.frames.push(frame);
    }

    /// Flushes every CPU the batch collected (each flushes the address space it has loaded;
    /// lazy CPUs catch up when they switch back), then frees the deferred frames
    /// (`try_to_unmap_flush`). Returns the number of frames freed.
    pub fn flush(&mut self, cpu: &mut MmuCpu) -> usize {
        let pending = PendingFree::new(
            Cover::Batch {
                id: self.id,
                epoch: self.epoch,
            },
            std::mem::take(&mut self.frames),
        );
        if self.flush_required {
            let info = FlushInfo {
                mm: None,
                start: 0,
                end: FLUSH_ALL,
                new_gen: None,
                freed_tables: false,
            };
            cpu.flush_tlb_multi(&self.cpus, &info);
        }
        self.epoch += 1;
        self.cpus = CpuMask::default();
        self.flush_required = false;
        let done = FlushCompleted::batch(self.id, self.epoch);
        match pending.release(&done, &self.mmu, cpu.id()) {
            Ok(n) => n,
            Err(p) => panic!("a batch flush covers the batch's frames: {p:?}"),
        }
    }
}
