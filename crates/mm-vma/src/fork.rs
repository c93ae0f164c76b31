//! `fork`'s address-space copy (`dup_mmap`, `copy_page_range`): the child gets a copy of every
//! VMA (but `VM_DONTCOPY` ones) and of the page tables of private VMAs that have anonymous
//! pages; private writable pages become read-only in both, shared copy-on-write.
//!
//! # Locking protocol
//! The parent's mmap lock for writing, then the child's (new, uncontended). The parent's
//! entries are write-protected (with a flush of the parent's TLBs) and collected under the
//! parent's page-table lock, taking a reference and a mapcount on each page; the child's
//! entries are filled after that lock is dropped, so its page tables are allocated with no
//! lock of this layer held.

use crate::ctx::CpuCtx;
use crate::flags::VmFlags;
use crate::lock::lock_spin;
use crate::mm::{rss_kind, AddressSpace, MmCore, RssKind};
use crate::pt;
use crate::sys::VmSys;
use crate::vma::Vma;
use mm_mmu::{Mm, Pte};
use mm_phys::PageFlags;
use mm_sync::sync::Arc;
use mm_types::{CpuId, Errno, Pid, VirtAddr};

impl AddressSpace {
    /// Creates the address space of a fork child `child_pid`. ENOMEM if memory for page
    /// tables or the commitment of the copied private mappings is not available (the parent
    /// is unchanged then, apart from entries already write-protected).
    pub fn fork(&self, ctx: &mut CpuCtx, child_pid: Pid) -> Result<AddressSpace, Errno> {
        let sys = &self.sys;
        let cpu = ctx.id();
        let pst = self.state.write(ctx.mmu());
        if pst.exited {
            return Err(Errno::Esrch);
        }
        let mm = Mm::new(&sys.mmu, cpu).map_err(|_| Errno::Enomem)?;
        let mm_obj = sys.alloc_mm_obj(cpu, child_pid, mm.root(), pst.mmap_base)?;
        let cst = pst.fork_copy(mm_obj);
        let core = MmCore::new(child_pid, mm, cst.vm.clone(), self.core.code);
        core.set_hiwater_rss(self.core.hiwater_rss());
        let child = AddressSpace {
            sys: sys.clone(),
            core: Arc::new(core),
            state: crate::lock::MmapLock::new(cst),
            #[cfg(test)]
            regress: self.regress,
        };
        let mut failed = None;
        {
            // Lock order: parent mmap lock -> child mmap lock.
            let mut cst = child.state.write(ctx.mmu());
            for v in pst.vmas.iter() {
                let pages = v.pages();
                if v.flags.contains(VmFlags::DONTCOPY) {
                    cst.vm_stat_account(v.flags, -(pages as i64));
                    continue;
                }
                let mut nv = v.derive(sys.new_id(), v.start, v.end);
                nv.flags -= VmFlags::LOCKED_MASK;
                let wipe = v.flags.contains(VmFlags::WIPEONFORK);
                nv.anon_vma = None;
                nv.anon_parents = Vec::new();
                if let Err(e) = Self::fork_vma_objs(sys, cpu, v, &mut nv, !wipe && v.has_anon()) {
                    child.close_vma(cpu, nv);
                    failed = Some(e);
                    break;
                }
                child.vma_insert(&mut cst, nv);
                if wipe || !v.has_anon() {
                    // Shared and file-only mappings are faulted in again by the child.
                    continue;
                }
                if let Err(e) = self.copy_page_range(ctx, &child, v.start, v.end, v.flags) {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(pst);
        if let Some(e) = failed {
            child.exit(ctx);
            return Err(e);
        }
        Ok(child)
    }

    /// Gives the child's copy `nv` of `v` its anon chain and slab objects, and charges its
    /// commitment (`vm_area_dup`, `anon_vma_fork`). With `inherit`, `nv` links into every
    /// anon_vma of `v`'s chain plus a fresh one of its own, whose parent is the newest of
    /// `v`'s. On an error the caller closes `nv`, which frees what was allocated.
    fn fork_vma_objs(
        sys: &VmSys,
        cpu: CpuId,
        v: &Vma,
        nv: &mut Vma,
        inherit: bool,
    ) -> Result<(), Errno> {
        if inherit {
            nv.anon_parents = v.anon_chain().cloned().collect();
            nv.anon_vma = Some(sys.new_anon_vma(cpu, v.anon_chain().last())?);
        }
        nv.objs = sys.alloc_vma_objs(cpu, nv.anon_chain().count())?;
        if v.flags.contains(VmFlags::ACCOUNT) {
            sys.vm_enough_memory(v.pages())?;
        }
        Ok(())
    }

    /// `copy_page_range` for one VMA: write-protects the parent's COW entries, takes a
    /// reference for the child on every page (and a swap reference on every swap entry), and
    /// fills the child's entries.
    fn copy_page_range(
        &self,
        ctx: &mut CpuCtx,
        child: &AddressSpace,
        start: u64,
        end: u64,
        flags: VmFlags,
    ) -> Result<(), Errno> {
        let sys = &*self.sys;
        let cpu = ctx.id();
        let mut entries: Vec<(u64, Pte)> = Vec::new();
        {
            let _ptl = lock_spin(ctx.mmu(), &self.core.ptl);
            if flags.is_cow() && flags.contains(VmFlags::WRITE) {
                // ptep_set_wrprotect on every entry, then one flush of the parent.
                self.core
                    .mm
                    .change_protection(
                        ctx.mmu(),
                        VirtAddr(start),
                        VirtAddr(end),
                        flags.shared_or_readonly_prot(),
                    )
                    .expect("page-aligned user range");
            }
            let mut dup_failed = false;
            pt::for_each_pte(
                &sys.mem,
                self.core.mm.root(),
                sys.levels,
                start,
                end,
                &mut |va, pte| {
                    if dup_failed {
                        return;
                    }
                    if let Some(e) = pte.swap_entry() {
                        if sys.hooks.swap.swap_duplicate(e).is_err() {
                            dup_failed = true;
                            return;
                        }
                    } else if pte.has_frame() && pte.pfn() != sys.zero_pfn {
                        let page = sys.mem.page(pte.pfn());
                        page.get();
                        page.add_mapcount(1);
                        if pte.is_dirty() {
                            page.set(PageFlags::DIRTY);
                        }
                    }
                    entries.push((va, pte));
                },
            );
            if dup_failed {
                drop(_ptl);
                for (_, pte) in entries {
                    if let Some(e) = pte.swap_entry() {
                        sys.hooks.swap.swap_free(cpu, e);
                    } else if pte.has_frame() && pte.pfn() != sys.zero_pfn {
                        sys.mem.page(pte.pfn()).add_mapcount(-1);
                        sys.put_page(cpu, pte.pfn());
                    }
                }
                return Err(Errno::Enomem);
            }
        }
        let mut it = entries.into_iter();
        while let Some((va, pte)) = it.next() {
            let r = if let Some(e) = pte.swap_entry() {
                child
                    .core
                    .mm
                    .set_swap_pte(ctx.mmu(), VirtAddr(va), e)
                    .map(|()| Some(RssKind::Swap))
            } else {
                let kind =
                    (pte.pfn() != sys.zero_pfn).then(|| rss_kind(sys.mem.page(pte.pfn()).flags()));
                child
                    .core
                    .mm
                    .map(ctx.mmu(), VirtAddr(va), pte.pfn(), pte.prot())
                    .map(|_| kind)
            };
            match r {
                Ok(Some(kind)) => child.core.add_rss(kind, 1),
                Ok(None) => {}
                Err(_) => {
                    // No memory for the child's tables: give back what was not installed.
                    for (_, pte) in std::iter::once((va, pte)).chain(it) {
                        if let Some(e) = pte.swap_entry() {
                            sys.hooks.swap.swap_free(cpu, e);
                        } else if pte.has_frame() && pte.pfn() != sys.zero_pfn {
                            sys.mem.page(pte.pfn()).add_mapcount(-1);
                            sys.put_page(cpu, pte.pfn());
                        }
                    }
                    return Err(Errno::Enomem);
                }
            }
        }
        Ok(())
    }
}
