//! Shootdown vocabulary: the IPI, what it asks a CPU to flush, the proof that a flush finished,
//! and the holder of frames that may be freed only after it.

use crate::wait::Doorbell;
use crate::Mmu;
use mm_buddy::Frame;
use mm_sync::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use mm_sync::sync::Arc;
use mm_types::CpuId;
use std::fmt;

/// `TLB_FLUSH_ALL`: the end of a flush range that covers the whole address space.
pub(crate) const FLUSH_ALL: u64 = u64::MAX;

/// What one shootdown asks each CPU to flush (`struct flush_tlb_info`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct FlushInfo {
    /// The address space (`ctx_id`), or `None` for the batched reclaim flush, which flushes
    /// whatever address space each CPU has loaded (`full_flush_tlb_info`).
    pub(crate) mm: Option<u64>,
    /// First VPN.
    pub(crate) start: u64,
    /// One past the last VPN, or [`FLUSH_ALL`].
    pub(crate) end: u64,
    /// The `tlb_gen` this flush brings the address space to (`None`:
    /// `TLB_GENERATION_INVALID`).
    pub(crate) new_gen: Option<u64>,
    /// Page-table pages are being freed: lazy-TLB CPUs must be flushed too.
    pub(crate) freed_tables: bool,
}

/// The shared part of one shootdown: the info, the number of CPUs yet to acknowledge, and
/// the initiator's doorbell, which each acknowledgement rings.
#[derive(Debug)]
pub(crate) struct FlushRequest {
    pub(crate) info: FlushInfo,
    pub(crate) pending: AtomicUsize,
    pub(crate) waiter: Arc<Doorbell>,
}

/// A TLB-shootdown IPI waiting in a CPU's mailbox. The CPU handles it in
/// [`crate::MmuCpu::handle_ipis`]: it flushes its own TLB, then acknowledges.
///
/// Dropping an IPI acknowledges it. Handling flushes first and then drops it; an IPI that is
/// discarded unhandled went to a CPU whose `MmuCpu` (and so its TLB) is gone, together with
/// its mailbox, and there is nothing left to flush.
pub struct Ipi(pub(crate) Arc<FlushRequest>);

impl Drop for Ipi {
    fn drop(&mut self) {
        // Release: the initiator frees frames only after seeing every ack, so whatever the
        // handler flushed happens-before any reuse.
        self.0.pending.fetch_sub(1, Ordering::Release);
        self.0.waiter.ring();
    }
}

impl fmt::Debug for Ipi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Ipi").field(&self.0.info).finish()
    }
}

/// Wakes a CPU that may be blocked outside [`crate::MmuCpu::handle_ipis`] (for example, parked
/// on its actor mailbox) after an IPI was queued for it. The machine implements it; the
/// default does nothing.
pub trait IpiKick: Send + Sync {
    /// An IPI is waiting for `cpu`.
    fn kick(&self, cpu: CpuId);
}

/// A set of CPUs (`struct cpumask`), up to [`crate::MAX_CPUS`].
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CpuMask([u64; CpuMask::WORDS]);

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl CpuMask {
    pub(crate) const WORDS: usize = (crate::MAX_CPUS as usize).div_ceil(64);

    pub(crate) fn set(&mut self, cpu: usize) {
        self.0[cpu / 64] |= 1 << (cpu % 64);
    }

    pub(crate) fn test(&self, cpu: usize) -> bool {
        self.0[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    pub(crate) fn or_word(&mut self, word: usize, bits: u64) {
        self.0[word] |= bits;
    }

    /// Returns the CPUs in the set, lowest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            (0..64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| i * 64 + b)
        })
    }
}

/// An atomic cpumask sized for one machine (`mm_cpumask`).
#[derive(Debug)]
pub(crate) struct AtomicCpuMask(Box<[AtomicU64]>);

impl AtomicCpuMask {
    pub(crate) fn new(nr_cpus: usize) -> AtomicCpuMask {
        AtomicCpuMask(
            (0..nr_cpus.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }

    /// Sets `cpu` (`cpumask_set_cpu`). The caller orders it with a fence.
    pub(crate) fn set(&self, cpu: usize) {
        self.0[cpu / 64].fetch_or(1 << (cpu % 64), Ordering::Relaxed);
    }

    /// Clears `cpu` (`cpumask_clear_cpu`).
    pub(crate) fn clear(&self, cpu: usize) {
        self.0[cpu / 64].fetch_and(!(1 << (cpu % 64)), Ordering::Relaxed);
    }

    /// Reads the set, word by word. The caller orders it with a fence.
    pub(crate) fn snapshot(&self) -> CpuMask {
        let mut m = CpuMask::default();
        for (i, w) in self.0.iter().enumerate() {
            m.or_word(i, w.load(Ordering::Relaxed));
        }
        m
    }
}

/// What a finished flush covered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    /// A flush of one address space's VPN range (`end` = [`FLUSH_ALL`] for all of it).
    Mm {
        ctx_id: u64,
        gen: u64,
        start: u64,
        end: u64,
        freed_tables: bool,
    },
    /// The `epoch`-th flush of reclaim batch `id`.
    Batch { id: u64, epoch: u64 },
}

/// Proof that a shootdown finished: every CPU that might cache a covered translation has
/// flushed it and acknowledged. Only the shootdown code creates one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlushCompleted {
    scope: Scope,
}

impl FlushCompleted {
    pub(crate) fn mm(ctx_id: u64, gen: u64, start: u64, end: u64, freed_tables: bool) -> Self {
        FlushCompleted {
            scope: Scope::Mm {
                ctx_id,
                gen,
                start,
                end,
                freed_tables,
            },
        }
    }

    pub(crate) fn batch(id: u64, epoch: u64) -> Self {
        FlushCompleted {
            scope: Scope::Batch { id, epoch },
        }
    }

    /// Returns true if the flush covered the whole address space (or was a batch flush).
    pub fn is_full(&self) -> bool {
        match self.scope {
            Scope::Mm { end, .. } => end == FLUSH_ALL,
            Scope::Batch { .. } => true,
        }
    }
}

/// What a [`PendingFree`] needs a flush to have covered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Cover {
    /// PTEs of address space `ctx_id` in VPNs `start..end` were cleared while its `tlb_gen`
    /// was at most `gen`; `tables` if page-table pages were unhooked.
    Mm {
        ctx_id: u64,
        gen: u64,
        start: u64,
        end: u64,
        tables: bool,
    },
    /// Frames deferred by reclaim batch `id` before its `epoch`-th flush finished.
    Batch { id: u64, epoch: u64 },
}

/// Frames and page-table pages unhooked from page tables, that some TLB may still reach.
///
/// It cannot be turned back into [`Frame`]s: the only way out is [`PendingFree::release`],
/// which needs the [`FlushCompleted`] of a flush that covers it. Dropping it leaks the frames
/// (never frees them early).
#[must_use = "frames in a PendingFree are leaked unless released after the covering flush"]
pub(crate) struct PendingFree {
    cover: Cover,
    frames: Vec<Frame>,
}

impl fmt::Debug for PendingFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingFree")
            .field("cover", &self.cover)
            .field("frames", &self.frames.len())
            .finish()
    }
}

static_assertions::assert_not_impl_any!(PendingFree: Clone);

impl PendingFree {
    pub(crate) fn new(cover: Cover, frames: Vec<Frame>) -> PendingFree {
        PendingFree { cover, frames }
    }

    /// Returns true if `done` covers these frames.
    pub(crate) fn covered_by(&self, done: &FlushCompleted) -> bool {
        match (self.cover, done.scope) {
            (
                Cover::Mm {
                    ctx_id,
                    gen,
                    start,
                    end,
                    tables,
                },
                Scope::Mm {
                    ctx_id: c,
                    gen: g,
                    start: s,
                    end: e,
                    freed_tables,
                },
            ) => ctx_id == c && g > gen && s <= start && end <= e && (!tables || freed_tables),
            (Cover::Batch { id, epoch }, Scope::Batch { id: i, epoch: e }) => id == i && e > epoch,
            _ => false,
        }
    }

    /// Gives the frames back to the allocator on `cpu`'s lists, if `done` covers them;
    /// otherwise hands the holder back untouched. Returns the number of frames freed.
    pub(crate) fn release(
        self,
        done: &FlushCompleted,
        mmu: &Mmu,
        cpu: CpuId,
    ) -> Result<usize, PendingFree> {
        if !self.covered_by(done) {
            return Err(self);
        }
        Ok(mmu.free_frames(cpu, self.frames))
    }

    /// Frees the frames *without* a covering flush: the historical bug the loom models catch.
    #[cfg(test)]
    pub(crate) fn release_unflushed(self, mmu: &Mmu, cpu: CpuId) -> usize {
        mmu.free_frames(cpu, self.frames)
    }
}
