//! Reverse mapping: from a page to the (address space, address) pairs that map it
//! (`mm/rmap.c`), for reclaim and the OOM killer.
//!
//! - An anonymous page records in its descriptor the anon_vma it was created under
//!   (`page->mapping`) and its linear page index (`page->index`). Each private VMA that has
//!   had anonymous pages owns an anon_vma ([`RmapList`]); fork links the child's VMAs into
//!   every anon_vma of the parent's VMA (the `anon_vma_chain`), so pages the parent created
//!   are found in the child too, while pages the child creates go to the child's own anon_vma.
//! - A file page records its object's `mapping_id` and its file index; every VMA mapping the
//!   object is linked into the object's list (`i_mmap`).
//! - A link records the VMA's range and `vm_pgoff`, so a walk turns the page index into an
//!   address without the mmap lock: `start + (index - pgoff) * PAGE_SIZE`. Every change of a
//!   VMA's range links the new VMA before it unlinks the old one.
//!
//! # Locking protocol
//! A registry mutex, then a list mutex (`anon_vma->rwsem`, `i_mmap_rwsem`). Linking and
//! unlinking take both; a walk takes them only to copy the links out, then checks each
//! candidate's PTE under that address space's page-table lock, holding nothing else.

use crate::flags::VmFlags;
use crate::kobj::AnonVmaObj;
use crate::lock::lock_spin;
use crate::mm::{MmCore, RssKind};
use crate::pt;
use crate::sys::VmSys;
use crate::vma::Vma;
use mm_mmu::{MmuCpu, Pte, TlbBatch};
use mm_phys::PageFlags;
use mm_sync::sync::{Arc, Mutex};
use mm_types::{Pfn, SwapEntry, VirtAddr, PAGE_SHIFT};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;

/// One VMA as an rmap list sees it (`anon_vma_chain` entry, or an `i_mmap` node).
#[derive(Clone)]
pub(crate) struct Link {
    core: Arc<MmCore>,
    vma_id: u64,
    start: u64,
    end: u64,
    pgoff: u64,
    flags: VmFlags,
}

/// An anon_vma, or a file object's `i_mmap`: the VMAs that may map its pages.
pub(crate) struct RmapList {
    pub(crate) id: u64,
    links: Mutex<Vec<Link>>,
    /// An anon_vma's `struct anon_vma` in simulated RAM, when the layer has a slab (see the
    /// `kobj` module); freed with the last reference.
    pub(crate) kobj: Option<AnonVmaObj>,
}

impl fmt::Debug for RmapList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RmapList")
            .field("id", &self.id)
            .field("kobj", &self.kobj)
            .finish_non_exhaustive()
    }
}

impl RmapList {
    /// A file's list, or an anon_vma without a slab object.
    pub(crate) fn new(id: u64) -> RmapList {
        RmapList {
            id,
            links: Mutex::new(Vec::new()),
            kobj: None,
        }
    }

    /// An anon_vma with its slab object.
    pub(crate) fn anon(id: u64, kobj: AnonVmaObj) -> RmapList {
        RmapList {
            id,
            links: Mutex::new(Vec::new()),
            kobj: Some(kobj),
        }
    }
}

/// The machine's anon_vmas and file `i_mmap` lists, by `page->mapping` value.
#[derive(Default)]
pub(crate) struct Registry {
    anon: Mutex<BTreeMap<u64, Arc<RmapList>>>,
    files: Mutex<BTreeMap<u64, Arc<RmapList>>>,
}

/// A place where a page is mapped.
#[derive(Debug, Clone, Copy)]
pub struct RmapHit<'a> {
    /// The address space.
    pub core: &'a Arc<MmCore>,
    /// The address that maps the page.
    pub addr: VirtAddr,
    /// The flags of the VMA (reclaim skips `VM_LOCKED`).
    pub vm_flags: VmFlags,
    /// The entry that maps it, as the walk saw it.
    pub pte: Pte,
}

impl VmSys {
    fn link_into(
        &self,
        map: &mut BTreeMap<u64, Arc<RmapList>>,
        list: Option<&Arc<RmapList>>,
        id: u64,
        link: Link,
    ) {
        // Lock order: registry -> list.
        let list = map
            .entry(id)
            .or_insert_with(|| list.cloned().unwrap_or_else(|| Arc::new(RmapList::new(id))));
        list.links.lock().push(link);
    }

    /// Unlinks VMA `vma_id` from list `id`; returns the list if it became empty and left the
    /// registry, for the caller to drop once it holds no rmap lock.
    fn unlink_from(
        &self,
        map: &mut BTreeMap<u64, Arc<RmapList>>,
        id: u64,
        vma_id: u64,
    ) -> Option<Arc<RmapList>> {
        let list = map.get(&id)?;
        let empty = {
            // Lock order: registry -> list.
            let mut links = list.links.lock();
            links.retain(|l| l.vma_id != vma_id);
            links.is_empty()
        };
        if empty {
            map.remove(&id)
        } else {
            None
        }
    }

    /// Links `vma` of `core` into its anon_vmas and its file's list.
    pub(crate) fn link_vma(&self, core: &Arc<MmCore>, vma: &Vma) {
        let link = Link {
            core: core.clone(),
            vma_id: vma.id,
            start: vma.start,
            end: vma.end,
            pgoff: vma.pgoff,
            flags: vma.flags,
        };
        let mut chain = vma.anon_chain().peekable();
        if chain.peek().is_some() {
            let mut anon = self.rmap.anon.lock();
            for list in chain {
                self.link_into(&mut anon, Some(list), list.id, link.clone());
            }
        }
        if let Some(file) = &vma.file {
            let mut files = self.rmap.files.lock();
            self.link_into(&mut files, None, file.mapping_id(), link);
        }
    }

    /// Links `vma` into one more anon_vma (its own, just created).
    pub(crate) fn link_anon(&self, core: &Arc<MmCore>, vma: &Vma, list: &Arc<RmapList>) {
        let link = Link {
            core: core.clone(),
            vma_id: vma.id,
            start: vma.start,
            end: vma.end,
            pgoff: vma.pgoff,
            flags: vma.flags,
        };
        let mut anon = self.rmap.anon.lock();
        self.link_into(&mut anon, Some(list), list.id, link);
    }

    /// Unlinks `vma` from every list it is in.
    pub(crate) fn unlink_vma(&self, vma: &Vma) {
        // Lists that left the registry are dropped after its locks: a last reference frees an
        // anon_vma's slab object, which is not done under an rmap lock.
        let mut gone = Vec::new();
        let mut chain = vma.anon_chain().peekable();
        if chain.peek().is_some() {
            let mut anon = self.rmap.anon.lock();
            for list in chain {
                gone.extend(self.unlink_from(&mut anon, list.id, vma.id));
            }
        }
        if let Some(file) = &vma.file {
            let mut files = self.rmap.files.lock();
            gone.extend(self.unlink_from(&mut files, file.mapping_id(), vma.id));
        }
        drop(gone);
    }

    /// Returns the number of anon_vmas and file lists registered.
    pub fn rmap_lists(&self) -> (usize, usize) {
        (self.rmap.anon.lock().len(), self.rmap.files.lock().len())
    }

    /// The places `pfn` may be mapped: every VMA linked to the page's anon_vma or file whose
    /// range covers the page's index, as `(address space, address, vm_flags)`.
    fn rmap_candidates(&self, pfn: Pfn) -> Vec<(Arc<MmCore>, u64, VmFlags)> {
        if pfn == self.zero_pfn || !self.mem.pfn_valid(pfn) {
            return Vec::new();
        }
        let page = self.mem.page(pfn);
        let (mapping, index, anon) = (page.mapping(), page.index(), page.test(PageFlags::ANON));
        if mapping == 0 || page.mapcount() <= 0 {
            return Vec::new();
        }
        let list = {
            let map = if anon {
                self.rmap.anon.lock()
            } else {
                self.rmap.files.lock()
            };
            match map.get(&mapping) {
                Some(l) => l.clone(),
                None => return Vec::new(),
            }
        };
        let links = list.links.lock();
        links
            .iter()
            .filter(|l| index >= l.pgoff)
            .map(|l| (l, l.start + ((index - l.pgoff) << PAGE_SHIFT)))
            .filter(|(l, addr)| *addr < l.end)
            .map(|(l, addr)| (l.core.clone(), addr, l.flags))
            .collect()
    }

    /// Calls `f` for every place `pfn` is mapped (`rmap_walk`): each candidate of the page's
    /// anon_vma or file where that address space's PTE really holds the page (checked under
    /// its page-table lock, which `f` runs without). Stops early when `f` breaks. Returns the
    /// number of hits.
    pub fn rmap_walk(
        &self,
        cpu: &mut MmuCpu,
        pfn: Pfn,
        mut f: impl FnMut(RmapHit<'_>) -> ControlFlow<()>,
    ) -> usize {
        let mut hits = 0;
        for (core, addr, vm_flags) in self.rmap_candidates(pfn) {
            let pte = {
                let _ptl = lock_spin(cpu, &core.ptl);
                pt::read_pte(&self.mem, core.mm.root(), self.levels, addr)
            };
            if !pte.has_frame() || pte.pfn() != pfn {
                continue;
            }
            hits += 1;
            let hit = RmapHit {
                core: &core,
                addr: VirtAddr(addr),
                vm_flags,
                pte,
            };
            if f(hit).is_break() {
                break;
            }
        }
        hits
    }

    /// Unmaps `pfn` from every address space for reclaim (`try_to_unmap` with
    /// `TTU_BATCH_FLUSH`): under each address space's page-table lock, replaces the entry with
    /// `swap` (an anonymous page's swap entry, taking a reference on it with
    /// `SwapBackend::swap_duplicate`) or with nothing (a file page), uncounts the mapping, and
    /// drops its page reference; the TLB flush is left to `batch`.
    ///
    /// The caller holds a reference of its own on the page (it isolated it), so no drop here
    /// frees it; the caller flushes `batch` before it writes the page out or drops that last
    /// reference. Returns the mappings removed, or `Err` with that count if a `VM_LOCKED`
    /// mapping keeps the page (`try_to_unmap` fails, the page is mlocked).
    pub fn try_to_unmap(
        &self,
        cpu: &mut MmuCpu,
        pfn: Pfn,
        batch: &mut TlbBatch,
        swap: Option<SwapEntry>,
    ) -> Result<usize, usize> {
        let page = self.mem.page(pfn);
        let replacement = swap.map_or(Pte::NONE, Pte::swap);
        let mut done = 0;
        for (core, addr, vm_flags) in self.rmap_candidates(pfn) {
            let _ptl = lock_spin(cpu, &core.ptl);
            let pte = pt::read_pte(&self.mem, core.mm.root(), self.levels, addr);
            if !pte.has_frame() || pte.pfn() != pfn {
                continue;
            }
            // An mlocked mapping keeps the page; so does a PROT_NONE entry, which
            // `Mm::try_to_unmap` leaves alone as it does every non-present entry.
            if vm_flags.contains(VmFlags::LOCKED) || !pte.is_present() {
                return Err(done);
            }
            if let Some(e) = swap {
                if self.hooks.swap.swap_duplicate(e).is_err() {
                    return Err(done);
                }
            }
            let old = core
                .mm
                .try_to_unmap(cpu, VirtAddr(addr), replacement, batch)
                .expect("a page-aligned user address");
            debug_assert_eq!(old, pte, "the entry changed under the page-table lock");
            if old.is_dirty() {
                page.set(PageFlags::DIRTY);
            }
            let kind = crate::mm::rss_kind(page.flags());
            core.add_rss(kind, -1);
            if swap.is_some() {
                core.add_rss(RssKind::Swap, 1);
            }
            page.add_mapcount(-1);
            let last = page.put_testzero();
            debug_assert!(!last, "try_to_unmap's caller holds a reference");
            done += 1;
        }
        Ok(done)
    }
}
