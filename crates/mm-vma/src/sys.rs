//! [`VmSys`]: the VMA layer's machine-wide state, shared by every address space.

use crate::hooks::Hooks;
use crate::rmap::Registry;
use mm_buddy::{AllocError, Buddy, Frame};
use mm_mmu::Mmu;
use mm_phys::{PageFlags, PhysMem};
use mm_slab::SlabAllocator;
use mm_sync::sync::Arc;
use mm_sync::untracked::{AtomicI64, AtomicU64, Ordering};
use mm_types::{CpuId, Errno, Gfp, Order, Pfn, PAGE_SHIFT};
use std::fmt;

/// `vm.overcommit_memory`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Overcommit {
    /// 0: heuristic; one request may not exceed RAM plus swap.
    Guess,
    /// 1: always allow.
    Always,
    /// 2: strict; commitments may not exceed `CommitLimit`.
    Never,
}

/// The VMA layer's sysctls.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VmConfig {
    /// `vm.max_map_count` (65530).
    pub max_map_count: u64,
    /// `vm.mmap_min_addr` in bytes (65536 on x86-64 by default).
    pub mmap_min_addr: u64,
    /// `stack_guard_gap` in bytes (256 pages).
    pub stack_guard_gap: u64,
    /// `vm.overcommit_memory`.
    pub overcommit: Overcommit,
    /// `vm.overcommit_ratio` (50).
    pub overcommit_ratio: u64,
    /// `vm.overcommit_kbytes` (0: use the ratio).
    pub overcommit_kbytes: u64,
}

impl VmConfig {
    /// Linux's defaults.
    pub const fn linux_default() -> VmConfig {
        VmConfig {
            max_map_count: 65530,
            mmap_min_addr: 65536,
            stack_guard_gap: 256 << PAGE_SHIFT,
            overcommit: Overcommit::Guess,
            overcommit_ratio: 50,
            overcommit_kbytes: 0,
        }
    }
}

/// The VMA layer of one machine: the MMU and allocator it maps with, the slab its kernel
/// objects come from, the shared zero page, the hooks to swap and the LRU, the rmap
/// registries and the commit accounting.
pub struct VmSys {
    pub(crate) mmu: Arc<Mmu>,
    pub(crate) buddy: Arc<Buddy>,
    /// Where `mm_struct`, `vm_area_struct`, `anon_vma` and `anon_vma_chain` objects come from
    /// (the `kobj` module); `None` only in test models that leave the slab out.
    pub(crate) slab: Option<Arc<SlabAllocator>>,
    pub(crate) mem: Arc<PhysMem>,
    pub(crate) levels: u32,
    pub(crate) cfg: VmConfig,
    pub(crate) zero_pfn: Pfn,
    pub(crate) hooks: Hooks,
    pub(crate) rmap: Registry,
    next_id: AtomicU64,
    /// `vm_committed_as`, in pages.
    committed: AtomicI64,
    home: CpuId,
}

impl fmt::Debug for VmSys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmSys")
            .field("cfg", &self.cfg)
            .field("zero_pfn", &self.zero_pfn)
            .field("committed", &self.committed_pages())
            .finish_non_exhaustive()
    }
}

impl VmSys {
    /// Sets up the VMA layer of a machine: allocates the shared zero page on `cpu`'s lists.
    /// The layer's kernel objects come from `slab`'s standard caches; a machine always
    /// passes its slab (`None` is for models of the layer's own protocols).
    ///
    /// # Panics
    /// If `slab` runs on another page allocator than `mmu`, or was booted without the
    /// standard caches.
    pub fn new(
        mmu: &Arc<Mmu>,
        slab: Option<Arc<SlabAllocator>>,
        cfg: VmConfig,
        hooks: Hooks,
        cpu: CpuId,
    ) -> Result<Arc<VmSys>, AllocError> {
        let buddy = mmu.buddy().clone();
        if let Some(s) = &slab {
            assert!(
                Arc::ptr_eq(s.buddy(), &buddy),
                "the slab and the MMU must share one page allocator"
            );
            // Panics without the standard caches, before anything is allocated.
            let _ = s.std_cache(mm_slab::StdCache::VmAreaStruct);
        }
        let zero = buddy.alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL | Gfp::ZERO)?;
        let zero_pfn = zero.into_raw().0;
        let mem = buddy.mem().clone();
        // Reserved: the allocator refuses it if anything ever tried to free it.
        mem.page(zero_pfn)
            .set_flags(PageFlags::RESERVED | PageFlags::UPTODATE);
        Ok(Arc::new(VmSys {
            levels: mmu.config().paging.levels(),
            mmu: mmu.clone(),
            buddy,
            slab,
            mem,
            cfg,
            zero_pfn,
            hooks,
            rmap: Registry::default(),
            next_id: AtomicU64::new(1),
            committed: AtomicI64::new(0),
            home: cpu,
        }))
    }

    /// Returns the MMU.
    pub fn mmu(&self) -> &Arc<Mmu> {
        &self.mmu
    }

    /// Returns the page allocator.
    pub fn buddy(&self) -> &Arc<Buddy> {
        &self.buddy
    }

    /// Returns the slab allocator the layer's kernel objects come from, if it has one.
    pub fn slab(&self) -> Option<&Arc<SlabAllocator>> {
        self.slab.as_ref()
    }

    /// Returns the sysctls.
    pub fn config(&self) -> &VmConfig {
        &self.cfg
    }

    /// Returns the shared zero page (`ZERO_PAGE`).
    pub fn zero_pfn(&self) -> Pfn {
        self.zero_pfn
    }

    /// Returns `Committed_AS` in pages.
    pub fn committed_pages(&self) -> i64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Returns `CommitLimit` in pages (`vm_commit_limit`).
    pub fn commit_limit_pages(&self) -> u64 {
        let ram = if self.cfg.overcommit_kbytes > 0 {
            self.cfg.overcommit_kbytes >> (PAGE_SHIFT - 10)
        } else {
            self.buddy.totalram_pages() * self.cfg.overcommit_ratio / 100
        };
        ram + self.hooks.swap.total_pages()
    }

    /// Returns a fresh id for a VMA, an anon_vma or a shmem object; never 0.
    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Charges `pages` to `Committed_AS` if the overcommit policy allows
    /// (`security_vm_enough_memory_mm` / `__vm_enough_memory`).
    pub(crate) fn vm_enough_memory(&self, pages: u64) -> Result<(), Errno> {
        let committed = self.committed.fetch_add(pages as i64, Ordering::Relaxed) + pages as i64;
        let ok = match self.cfg.overcommit {
            Overcommit::Always => true,
            Overcommit::Guess => {
                pages <= self.buddy.totalram_pages() + self.hooks.swap.total_pages()
            }
            Overcommit::Never => committed as u64 <= self.commit_limit_pages(),
        };
        if ok {
            Ok(())
        } else {
            self.committed.fetch_sub(pages as i64, Ordering::Relaxed);
            Err(Errno::Enomem)
        }
    }

    /// Returns `pages` of commitment (`vm_unacct_memory`).
    pub(crate) fn vm_unacct_memory(&self, pages: u64) {
        self.committed.fetch_sub(pages as i64, Ordering::Relaxed);
    }

    /// Drops a reference taken outside a page-table entry (a fault's or GUP's); the last one
    /// frees the page. Safe without a flush: a zap that unmapped the page while this
    /// reference was held deferred its own put until after its flush, so this put can only be
    /// the last one once that flush is done.
    pub(crate) fn put_page(&self, cpu: CpuId, pfn: Pfn) {
        if pfn == self.zero_pfn {
            return;
        }
        let page = self.mem.page(pfn);
        if page.put_testzero() {
            self.hooks.lru.remove(cpu, pfn);
            page.set_flags(PageFlags::empty());
            page.set_mapping(0);
            page.set_mapcount(0);
            self.buddy.free(cpu, Frame::from_raw(pfn, Order::ZERO));
        }
    }
}

impl Drop for VmSys {
    fn drop(&mut self) {
        let page = self.mem.page(self.zero_pfn);
        page.set_flags(PageFlags::empty());
        self.buddy
            .free(self.home, Frame::from_raw(self.zero_pfn, Order::ZERO));
    }
}
