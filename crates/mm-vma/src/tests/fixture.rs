//! A small machine for the tests: RAM, the page allocator, the MMU with its CPUs, and the VMA
//! layer; plus a file of fixed pages standing in for the page cache.

use crate::{CpuCtx, FileFaultError, FilePage, Hooks, VmConfig, VmFile, VmSys};
use mm_buddy::{Buddy, BuddyConfig};
use mm_mmu::{Mmu, MmuConfig, TlbConfig, TlbGeometry};
use mm_phys::{PageFlags, PhysMem};
use mm_sync::sync::Arc;
use mm_types::{CpuId, Gfp, Order, Pfn, ZoneId};

/// A booted machine.
pub(crate) struct Machine {
    pub(crate) sys: Arc<VmSys>,
    pub(crate) cpus: Vec<CpuCtx>,
}

/// Boots `pages` frames of RAM (watermarks at zero) for `nr_cpus` CPUs.
pub(crate) fn buddy(nr_cpus: u32, pages: u64) -> Arc<Buddy> {
    let cfg = BuddyConfig::single_zone(nr_cpus, ZoneId::Dma, Pfn(0), pages);
    Arc::new(Buddy::new(Arc::new(PhysMem::new(Pfn(pages))), &cfg).expect("valid test machine"))
}

/// A machine with the default sysctls and hooks.
#[cfg(not(mm_loom))]
pub(crate) fn machine(nr_cpus: u32, pages: u64) -> Machine {
    machine_with(nr_cpus, pages, VmConfig::linux_default(), small_tlb(false))
}

/// The TLB geometry: the modern default, or a tiny one that evicts constantly.
pub(crate) fn small_tlb(tiny: bool) -> TlbConfig {
    if tiny {
        let g = |entries, ways| TlbGeometry { entries, ways };
        TlbConfig {
            l1: g(4, 2),
            l2: g(8, 2),
        }
    } else {
        TlbConfig::modern_x86()
    }
}

/// A machine with `cfg` and the given TLBs.
pub(crate) fn machine_with(nr_cpus: u32, pages: u64, cfg: VmConfig, tlb: TlbConfig) -> Machine {
    machine_hooks(nr_cpus, pages, cfg, tlb, |_| Hooks::default())
}

/// A machine whose hooks `hooks` makes from the allocator.
pub(crate) fn machine_hooks(
    nr_cpus: u32,
    pages: u64,
    cfg: VmConfig,
    tlb: TlbConfig,
    hooks: impl FnOnce(&Arc<Buddy>) -> Hooks,
) -> Machine {
    let mut mcfg = MmuConfig::x86_64(nr_cpus);
    mcfg.tlb = tlb;
    let buddy = buddy(nr_cpus, pages);
    let hooks = hooks(&buddy);
    // The loom models check this layer's own protocols and leave the slab out (mm-slab has
    // models of its own); every other test machine has one, as a real machine does.
    #[cfg(not(mm_loom))]
    let slab = Some(Arc::new(
        mm_slab::SlabAllocator::new(buddy.clone()).expect("the slab boots"),
    ));
    #[cfg(mm_loom)]
    let slab = None;
    let (mmu, cpus) = Mmu::new(mcfg, buddy).expect("valid MMU config");
    let sys = VmSys::new(&mmu, slab, cfg, hooks, CpuId(0)).expect("a zero page");
    Machine {
        sys,
        cpus: cpus.into_iter().map(CpuCtx::new).collect(),
    }
}

#[cfg(not(mm_loom))]
impl Machine {
    /// Returns CPU `k` for a test thread that drives every CPU: the others drop their loaded
    /// address space first, so no shootdown waits for a CPU this thread is not running.
    pub(crate) fn cpu(&mut self, k: usize) -> &mut CpuCtx {
        for (i, c) in self.cpus.iter_mut().enumerate() {
            if i != k {
                c.mmu().leave_mm();
            }
        }
        &mut self.cpus[k]
    }
}

/// A process with the plain layout, created on CPU 0.
pub(crate) fn process(m: &mut Machine, pid: u32) -> crate::AddressSpace {
    crate::AddressSpace::new(
        &m.sys,
        &mut m.cpus[0],
        mm_types::Pid(pid),
        &crate::Layout::plain(),
    )
    .expect("memory for a process")
}

/// Free pages of the machine: the buddy lists plus every CPU's pcp lists, plus the slab's
/// pages. Slab pages count as free here because the layer's objects come and go in slabs
/// that stay cached; the `kobj` tests count the objects themselves.
#[cfg(not(mm_loom))]
pub(crate) fn free_pages(sys: &VmSys) -> u64 {
    let slab = sys.slab().map_or(0, |s| s.slab_pages());
    sys.buddy().nr_free_pages() + sys.buddy().pcp_pages() + slab
}

/// A file of `len` pages already in the "page cache": each page is allocated up front, holds
/// `fill(index)` in every word, and keeps one cache reference.
#[derive(Debug, Clone)]
pub(crate) struct TestFile {
    buddy: Arc<Buddy>,
    mapping: u64,
    pages: Arc<Vec<Pfn>>,
    writable: bool,
}

impl TestFile {
    pub(crate) fn new(
        sys: &VmSys,
        mapping: u64,
        len: u64,
        writable: bool,
        fill: impl Fn(u64) -> u64,
    ) -> TestFile {
        let buddy = sys.buddy().clone();
        let pages = (0..len)
            .map(|i| {
                let pfn = buddy
                    .alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL)
                    .expect("test RAM")
                    .into_raw()
                    .0;
                let page = buddy.mem().page(pfn);
                page.set_flags(PageFlags::UPTODATE);
                page.set_mapping(mapping);
                page.set_index(i);
                buddy.mem().frame(pfn).expect("RAM").fill_words(fill(i));
                pfn
            })
            .collect::<Vec<_>>();
        let pages = Arc::new(pages);
        TestFile {
            buddy,
            mapping,
            pages,
            writable,
        }
    }

    /// The frame of page `i`.
    pub(crate) fn pfn(&self, i: u64) -> Pfn {
        self.pages[i as usize]
    }

    /// Drops the cache's references (truncate): call once nothing maps the file any more.
    pub(crate) fn evict(&self) {
        for &pfn in self.pages.iter() {
            let page = self.buddy.mem().page(pfn);
            assert_eq!(page.mapcount(), 0, "evicting a mapped page");
            if page.put_testzero() {
                page.set_flags(PageFlags::empty());
                self.buddy
                    .free(CpuId(0), mm_buddy::Frame::from_raw(pfn, Order::ZERO));
            }
        }
    }
}

impl VmFile for TestFile {
    fn mapping_id(&self) -> u64 {
        self.mapping
    }
    fn path(&self) -> &str {
        "/tmp/test-file"
    }
    fn dev(&self) -> (u32, u32) {
        (0xfe, 0)
    }
    fn ino(&self) -> u64 {
        4242
    }
    fn size_pages(&self) -> u64 {
        self.pages.len() as u64
    }
    fn writable(&self) -> bool {
        self.writable
    }
    fn fault(&self, _cpu: CpuId, index: u64) -> Result<FilePage, FileFaultError> {
        let pfn = *self
            .pages
            .get(index as usize)
            .ok_or(FileFaultError::BeyondEof)?;
        self.buddy.mem().page(pfn).get();
        Ok(FilePage { pfn, major: false })
    }
}

/// A swap device for the tests: "writing a page out" keeps the page itself as the swap cache
/// (one reference), so swapping in hands the same frame back. Slot offsets are the page's pfn.
#[cfg(not(mm_loom))]
#[derive(Debug, Default)]
pub(crate) struct TestSwap {
    buddy: Option<Arc<Buddy>>,
    /// Offset -> (frame, page-table references).
    slots: mm_sync::sync::Mutex<std::collections::BTreeMap<u64, (Pfn, u32)>>,
}

#[cfg(not(mm_loom))]
impl TestSwap {
    pub(crate) fn new(buddy: &Arc<Buddy>) -> TestSwap {
        TestSwap {
            buddy: Some(buddy.clone()),
            slots: Default::default(),
        }
    }

    /// `add_to_swap`: gives `pfn` a slot, the swap cache taking a reference on the page.
    pub(crate) fn add(&self, pfn: Pfn) -> mm_types::SwapEntry {
        let buddy = self.buddy.as_ref().expect("a swap device with RAM");
        buddy.mem().page(pfn).get();
        self.slots.lock().insert(pfn.0, (pfn, 0));
        mm_types::SwapEntry {
            kind: 0,
            offset: pfn.0,
        }
    }

    /// Slots in use.
    pub(crate) fn used(&self) -> usize {
        self.slots.lock().len()
    }
}

#[cfg(not(mm_loom))]
impl crate::SwapBackend for TestSwap {
    fn swap_in(
        &self,
        _cpu: CpuId,
        e: mm_types::SwapEntry,
    ) -> Result<crate::SwapIn, crate::SwapError> {
        let (pfn, _) = *self
            .slots
            .lock()
            .get(&e.offset)
            .ok_or(crate::SwapError::Invalid)?;
        self.buddy.as_ref().expect("RAM").mem().page(pfn).get();
        Ok(crate::SwapIn { pfn, major: true })
    }
    fn swap_free(&self, cpu: CpuId, e: mm_types::SwapEntry) {
        let mut slots = self.slots.lock();
        let slot = slots.get_mut(&e.offset).expect("a slot in use");
        slot.1 -= 1;
        if slot.1 == 0 {
            // The last reference: the slot and the swap cache's page reference go.
            let (pfn, _) = slots.remove(&e.offset).expect("present");
            let buddy = self.buddy.as_ref().expect("RAM");
            let page = buddy.mem().page(pfn);
            if page.put_testzero() {
                page.set_flags(PageFlags::empty());
                buddy.free(cpu, mm_buddy::Frame::from_raw(pfn, Order::ZERO));
            }
        }
    }
    fn swap_duplicate(&self, e: mm_types::SwapEntry) -> Result<(), crate::SwapError> {
        let mut slots = self.slots.lock();
        let slot = slots.get_mut(&e.offset).ok_or(crate::SwapError::Invalid)?;
        slot.1 += 1;
        Ok(())
    }
    fn swap_count(&self, e: mm_types::SwapEntry) -> u32 {
        self.slots.lock().get(&e.offset).map_or(0, |s| s.1)
    }
}
