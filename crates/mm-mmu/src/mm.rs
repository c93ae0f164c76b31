//! The address space's MMU half (`mm_struct`'s `pgd`, `context` and `cpumask`): the root table,
//! the PCID context id and TLB generation, the cpumask of CPUs that may cache its
//! translations, the page-table lock and the batched-flush state reclaim leaves behind.

use crate::flush::AtomicCpuMask;
use crate::pte::Pte;
use crate::{MapError, Mmu};
use mm_buddy::{AllocError, Frame};
use mm_sync::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use mm_sync::sync::{Arc, SpinLock};
use mm_sync::untracked;
use mm_types::{CpuId, Order, Pfn, VirtAddr, PAGE_SIZE};
use std::fmt;

/// Historical bugs a test can switch back on, to show the loom models catch them. Each names
/// the upstream fix it undoes.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Regressions {
    /// mprotect/munmap/mremap skip `flush_tlb_batched_pending` (before 3ea277194daa).
    pub(crate) skip_batched_pending_flush: bool,
    /// mremap flushes the old address only after dropping the page-table lock (before
    /// eb66ae030829, CVE-2018-18281).
    pub(crate) mremap_flush_after_unlock: bool,
    /// `mmu_gather` frees the gathered frames before the TLB flush.
    pub(crate) free_before_flush: bool,
    /// `switch_mm` reads `tlb_gen` without the full barrier after joining the cpumask.
    pub(crate) switch_mm_without_fence: bool,
}

/// One address space's page tables and TLB bookkeeping.
pub struct Mm {
    pub(crate) mmu: Arc<Mmu>,
    ctx_id: u64,
    root: Pfn,
    pub(crate) levels: u32,
    pub(crate) user_limit: u64,
    home: CpuId,
    /// `mm->context.tlb_gen`: bumped by every flush and every batched unmap.
    tlb_gen: AtomicU64,
    /// `mm_cpumask`: CPUs that have this address space loaded (lazily or not).
    cpumask: AtomicCpuMask,
    /// `mm->tlb_flush_batched`: pending generations in bits 0..15, flushed ones in 16..31.
    pub(crate) tlb_flush_batched: AtomicU32,
    /// The page-table lock (`mm->page_table_lock`; no split PTE locks).
    ptl: SpinLock<()>,
    /// Page-table pages hooked into this address space, root included.
    pub(crate) nr_tables: untracked::AtomicU64,
    #[cfg(test)]
    pub(crate) regress: Regressions,
}

impl fmt::Debug for Mm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mm")
            .field("ctx_id", &self.ctx_id)
            .field("root", &self.root)
            .field("tlb_gen", &self.tlb_gen_relaxed())
            .field("cpumask", &self.cpumask.snapshot())
            .finish_non_exhaustive()
    }
}

impl Mm {
    /// Creates an empty address space: allocates its root table on `cpu`'s lists and gives it a
    /// fresh, never reused context id.
    pub fn new(mmu: &Arc<Mmu>, cpu: CpuId) -> Result<Arc<Mm>, AllocError> {
        Self::build(mmu, cpu, |m| m)
    }

    /// Creates an address space with historical bugs switched back on.
    #[cfg(test)]
    pub(crate) fn with_regressions(
        mmu: &Arc<Mmu>,
        cpu: CpuId,
        regress: Regressions,
    ) -> Result<Arc<Mm>, AllocError> {
        Self::build(mmu, cpu, |mut m| {
            m.regress = regress;
            m
        })
    }

    fn build(mmu: &Arc<Mmu>, cpu: CpuId, f: impl FnOnce(Mm) -> Mm) -> Result<Arc<Mm>, AllocError> {
        let root = mmu.alloc_table(cpu)?.into_raw().0;
        let cfg = &mmu.cfg;
        Ok(Arc::new(f(Mm {
            mmu: mmu.clone(),
            ctx_id: mmu.new_ctx_id(),
            root,
            levels: cfg.paging.levels(),
            user_limit: cfg.paging.user_limit(),
            home: cpu,
            tlb_gen: AtomicU64::new(0),
            cpumask: AtomicCpuMask::new(cfg.nr_cpus as usize),
            tlb_flush_batched: AtomicU32::new(0),
            ptl: SpinLock::new(()),
            nr_tables: untracked::AtomicU64::new(1),
            #[cfg(test)]
            regress: Regressions::default(),
        })))
    }

    /// Returns the context id that tags this address space in every CPU's ASID slots.
    #[inline]
    pub fn ctx_id(&self) -> u64 {
        self.ctx_id
    }

    /// Returns the root table (the value CR3 would hold).
    #[inline]
    pub fn root(&self) -> Pfn {
        self.root
    }

    /// Returns the current TLB generation.
    pub fn tlb_gen(&self) -> u64 {
        self.tlb_gen_acquire()
    }

    /// Returns the CPUs in this address space's cpumask.
    pub fn cpumask_cpus(&self) -> Vec<CpuId> {
        self.cpumask
            .snapshot()
            .iter()
            .map(|c| CpuId(c as u32))
            .collect()
    }

    /// Returns the bytes of page-table pages hooked into this address space
    /// (`mm_pgtables_bytes`, `VmPTE`).
    pub fn pgtables_bytes(&self) -> u64 {
        self.nr_tables.load(untracked::Ordering::Relaxed) * PAGE_SIZE as u64
    }

    /// Returns the machine's MMU.
    pub fn mmu(&self) -> &Arc<Mmu> {
        &self.mmu
    }

    pub(crate) fn cpumask(&self) -> &AtomicCpuMask {
        &self.cpumask
    }

    pub(crate) fn ptl(&self) -> &SpinLock<()> {
        &self.ptl
    }

    pub(crate) fn tlb_gen_relaxed(&self) -> u64 {
        self.tlb_gen.load(Ordering::Relaxed)
    }

    pub(crate) fn tlb_gen_acquire(&self) -> u64 {
        self.tlb_gen.load(Ordering::Acquire)
    }

    /// `inc_mm_tlb_gen`: returns the new generation.
    pub(crate) fn inc_tlb_gen(&self) -> u64 {
        self.tlb_gen.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Checks `va` is a page-aligned user address; returns it.
    pub(crate) fn check_page(&self, va: VirtAddr) -> Result<u64, MapError> {
        if !va.is_page_aligned() {
            return Err(MapError::Misaligned(va));
        }
        if va.0 >= self.user_limit {
            return Err(MapError::OutOfRange(va));
        }
        Ok(va.0)
    }

    /// Checks `start..end` is a page-aligned user range; returns it.
    pub(crate) fn check_range(
        &self,
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<(u64, u64), MapError> {
        for a in [start, end] {
            if !a.is_page_aligned() {
                return Err(MapError::Misaligned(a));
            }
        }
        if end.0 > self.user_limit || start > end {
            return Err(MapError::OutOfRange(end));
        }
        Ok((start.0, end.0))
    }

    /// Collects every table page below `table` (a `level` table), `table` included.
    fn collect_tables(&self, table: Pfn, level: u32, out: &mut Vec<Frame>) {
        if level > 1 {
            let f = self.mmu.mem.frame(table).expect("page tables live in RAM");
            for idx in 0..crate::pte::PTRS_PER_TABLE {
                let e = Pte(f.read_u64(idx * 8));
                if e.is_present() {
                    self.collect_tables(e.pfn(), level - 1, out);
                }
            }
        }
        out.push(Frame::from_raw(table, Order::ZERO));
    }
}

impl Drop for Mm {
    /// Frees the remaining page-table pages without a flush. That is safe: every CPU that loads
    /// an address space holds an `Arc` to it, so none has this one loaded, and its context id is
    /// never reused, so no TLB entry tagged with it can be reached again (an ASID slot is
    /// flushed before it tags another address space). Frames still mapped belong to whoever
    /// mapped them, who zaps them first ([`Mm::exit_mmap`]).
    fn drop(&mut self) {
        let mut tables = Vec::new();
        self.collect_tables(self.root, self.levels, &mut tables);
        self.mmu.free_frames(self.home, tables);
    }
}
