//! `mprotect` (mm/mprotect.c), `mlock`/`munlock` (mm/mlock.c) and `madvise` (mm/madvise.c).

use crate::ctx::CpuCtx;
use crate::fault::BUSY;
use crate::flags::{Advice, ProtFlags, VmFlags};
use crate::lock::lock_spin;
use crate::mm::{AddressSpace, MmState};
use crate::mmap::page_align;
use crate::pt;
use mm_mmu::Pte;
use mm_phys::PageFlags;
use mm_types::{CpuId, Errno, VirtAddr, PAGE_SHIFT, PAGE_SIZE};

const PAGE: u64 = PAGE_SIZE as u64;

impl AddressSpace {
    /// Splits out `start..end` of the VMA containing `start` and gives it `flags`, then merges
    /// around it (`mprotect_fixup`/`mlock_fixup`/`madvise_update_vma` without their extras).
    fn set_range_flags(
        &self,
        st: &mut MmState,
        cpu: CpuId,
        start: u64,
        end: u64,
        flags: VmFlags,
    ) -> Result<(), Errno> {
        self.split_range(st, cpu, start, end)?;
        let v = st.vmas.lookup(start).expect("split above");
        debug_assert!(v.start == start && v.end == end);
        let mut nv = v.derive(self.sys.new_id(), start, end);
        nv.flags = flags;
        self.vma_replace(st, cpu, &[start], vec![nv]);
        self.merge_range(st, cpu, start, end);
        Ok(())
    }

    /// Changes the protection of `addr..addr + len` (`mprotect`).
    ///
    /// EINVAL for a misaligned address, unknown `prot` bits or both GROWS bits, or
    /// `PROT_GROWSDOWN` on a VMA that does not grow down; ENOMEM if part of the range is
    /// unmapped (the VMAs before the hole are changed) or on overflow; EACCES if a VMA may not
    /// get the protection (a read-only shared file mapping asked for write). Private mappings
    /// that gain write permission are charged to `Committed_AS`.
    pub fn mprotect(
        &self,
        ctx: &mut CpuCtx,
        addr: VirtAddr,
        len: u64,
        prot: ProtFlags,
    ) -> Result<(), Errno> {
        let grows = prot & (ProtFlags::GROWSDOWN | ProtFlags::GROWSUP);
        let prot = prot - grows;
        if grows == ProtFlags::GROWSDOWN | ProtFlags::GROWSUP {
            return Err(Errno::Einval);
        }
        let mut start = addr.0;
        if start & (PAGE - 1) != 0 {
            return Err(Errno::Einval);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_align(len).ok_or(Errno::Enomem)?;
        let end = start.checked_add(len).ok_or(Errno::Enomem)?;
        if !(prot - ProtFlags::VALID).is_empty() {
            return Err(Errno::Einval);
        }
        let cpu = ctx.id();
        let mut st = self.state.write(ctx.mmu());
        let v = st.vmas.find(start).ok_or(Errno::Enomem)?;
        if grows.contains(ProtFlags::GROWSDOWN) {
            if v.start >= end {
                return Err(Errno::Enomem);
            }
            start = v.start;
            if !v.flags.contains(VmFlags::GROWSDOWN) {
                return Err(Errno::Einval);
            }
        } else {
            if v.start > start {
                return Err(Errno::Enomem);
            }
            if grows.contains(ProtFlags::GROWSUP) {
                return Err(Errno::Einval);
            }
        }
        let mut nstart = start;
        loop {
            let v = st
                .vmas
                .lookup(nstart)
                .expect("checked before the loop and at its end");
            let old = v.flags;
            let newflags = VmFlags::from_prot(prot) | (old - VmFlags::ACCESS);
            // newflags >> 4 puts VM_MAY* in place of VM_*.
            let may = VmFlags::from_bits_retain(newflags.bits() >> 4);
            if !(newflags & (VmFlags::ACCESS - may)).is_empty() {
                return Err(Errno::Eacces);
            }
            let tmp = v.end.min(end);
            self.mprotect_fixup(ctx, &mut st, cpu, nstart, tmp, old, newflags)?;
            // A merge may have swallowed the next VMA, which had the new flags already.
            nstart = Self::past_merge(&st, tmp);
            if nstart >= end {
                return Ok(());
            }
            match st.vmas.lookup(nstart) {
                Some(n) if n.start == nstart => {}
                _ => return Err(Errno::Enomem),
            }
        }
    }

    /// `mprotect_fixup`: charge, split, set the flags, rewrite the entries, merge.
    #[allow(clippy::too_many_arguments)]
    fn mprotect_fixup(
        &self,
        ctx: &mut CpuCtx,
        st: &mut MmState,
        cpu: CpuId,
        start: u64,
        end: u64,
        old: VmFlags,
        mut newflags: VmFlags,
    ) -> Result<(), Errno> {
        if newflags == old {
            return Ok(());
        }
        let pages = (end - start) >> PAGE_SHIFT;
        let mut charged = 0;
        let no_charge = VmFlags::ACCOUNT
            | VmFlags::WRITE
            | VmFlags::HUGETLB
            | VmFlags::SHARED
            | VmFlags::NORESERVE;
        if newflags.contains(VmFlags::WRITE) && !old.intersects(no_charge) {
            self.sys.vm_enough_memory(pages)?;
            charged = pages;
            newflags |= VmFlags::ACCOUNT;
        }
        if let Err(e) = self.set_range_flags(st, cpu, start, end, newflags) {
            self.sys.vm_unacct_memory(charged);
            return Err(e);
        }
        st.vm_stat_account(old, -(pages as i64));
        st.vm_stat_account(newflags, pages as i64);
        // Private entries stay read-only: a write to one faults and reuses or copies the page.
        let _ptl = lock_spin(ctx.mmu(), &self.core.ptl);
        self.core
            .mm
            .change_protection(
                ctx.mmu(),
                VirtAddr(start),
                VirtAddr(end),
                newflags.shared_or_readonly_prot(),
            )
            .expect("page-aligned user range");
        Ok(())
    }

    /// `apply_vma_lock_flags`: sets (`flags` = `VM_LOCKED`) or clears the lock flags of every
    /// VMA in `start..end`; ENOMEM at the first hole.
    fn apply_vma_lock_flags(
        &self,
        st: &mut MmState,
        cpu: CpuId,
        start: u64,
        end: u64,
        flags: VmFlags,
    ) -> Result<(), Errno> {
        if end < start {
            return Err(Errno::Einval);
        }
        if end == start {
            return Ok(());
        }
        if st.vmas.lookup(start).is_none() {
            return Err(Errno::Enomem);
        }
        let mut nstart = start;
        loop {
            let v = st
                .vmas
                .lookup(nstart)
                .expect("checked before the loop and at its end");
            let old = v.flags;
            let newflags = (old - VmFlags::LOCKED_MASK) | flags;
            let tmp = v.end.min(end);
            if newflags != old && !old.intersects(VmFlags::SPECIAL) {
                self.set_range_flags(st, cpu, nstart, tmp, newflags)?;
                let pages = (tmp - nstart) >> PAGE_SHIFT;
                match (
                    old.contains(VmFlags::LOCKED),
                    newflags.contains(VmFlags::LOCKED),
                ) {
                    (false, true) => st.add_locked((pages) as i64),
                    (true, false) => st.add_locked(-((pages) as i64)),
                    _ => {}
                }
            }
            nstart = Self::past_merge(st, tmp);
            if nstart >= end {
                return Ok(());
            }
            match st.vmas.lookup(nstart) {
                Some(n) if n.start == nstart => {}
                _ => return Err(Errno::Enomem),
            }
        }
    }

    /// Where a walk that just changed `..tmp` continues: `tmp`, or the end of the VMA a merge
    /// extended past it (`if (nstart < prev->vm_end) nstart = prev->vm_end`).
    fn past_merge(st: &MmState, tmp: u64) -> u64 {
        st.vmas.lookup(tmp - 1).map_or(tmp, |v| v.end.max(tmp))
    }

    /// The page-aligned start and length of an mlock call, computed as Linux does in
    /// unsigned arithmetic (a wrapping length becomes a short one; `apply_vma_lock_flags`
    /// rejects a range that wraps the address space).
    fn lock_range(addr: u64, len: u64) -> (u64, u64) {
        let start = addr & !(PAGE - 1);
        let len = len.wrapping_add(addr - start).wrapping_add(PAGE - 1) & !(PAGE - 1);
        (start, len)
    }

    /// Locks the pages of `addr..addr + len` in memory (`mlock`): marks the VMAs
    /// `VM_LOCKED` and faults every page in. EPERM with a zero memlock limit; ENOMEM over the
    /// limit, for an unmapped hole, or if a page could not be faulted in (a `PROT_NONE`
    /// range); EAGAIN if memory ran out while populating.
    pub fn mlock(&self, ctx: &mut CpuCtx, addr: VirtAddr, len: u64) -> Result<(), Errno> {
        let (start, len) = Self::lock_range(addr.0, len);
        let cpu = ctx.id();
        let end = start.wrapping_add(len);
        {
            let mut st = self.state.write(ctx.mmu());
            if st.rlimits.memlock == 0 {
                return Err(Errno::Eperm);
            }
            let limit = st.rlimits.memlock >> PAGE_SHIFT;
            let mut locked = (len >> PAGE_SHIFT) + st.locked_vm();
            if locked > limit {
                let already: u64 = st
                    .vmas
                    .overlapping(start, end.max(start))
                    .filter(|v| v.flags.contains(VmFlags::LOCKED))
                    .map(|v| (v.end.min(end) - v.start.max(start)) >> PAGE_SHIFT)
                    .sum();
                locked -= already;
                if locked > limit {
                    return Err(Errno::Enomem);
                }
            }
            self.apply_vma_lock_flags(&mut st, cpu, start, end, VmFlags::LOCKED)?;
        }
        match self.populate(ctx, start, end, false) {
            Ok(()) => Ok(()),
            // __mlock_posix_error_return.
            Err(Errno::Efault) => Err(Errno::Enomem),
            Err(Errno::Enomem) => Err(Errno::Eagain),
            Err(e) => Err(e),
        }
    }

    /// Unlocks `addr..addr + len` (`munlock`); ENOMEM for an unmapped hole.
    pub fn munlock(&self, ctx: &mut CpuCtx, addr: VirtAddr, len: u64) -> Result<(), Errno> {
        let (start, len) = Self::lock_range(addr.0, len);
        let end = start.wrapping_add(len);
        let cpu = ctx.id();
        let mut st = self.state.write(ctx.mmu());
        self.apply_vma_lock_flags(&mut st, cpu, start, end, VmFlags::empty())
    }

    /// Gives advice about `addr..addr + len` (`madvise`).
    ///
    /// EINVAL for a misaligned address, an unknown advice or overflow, DONTNEED or FREE on a
    /// locked VMA, FREE on a file mapping; ENOMEM if part of the range is unmapped (the advice
    /// is applied to the mapped parts first); EAGAIN if a VMA could not be split.
    pub fn madvise(
        &self,
        ctx: &mut CpuCtx,
        addr: VirtAddr,
        len: u64,
        advice: i32,
    ) -> Result<(), Errno> {
        let mut start = addr.0;
        if start & (PAGE - 1) != 0 {
            return Err(Errno::Einval);
        }
        let advice = Advice::from_raw(advice).ok_or(Errno::Einval)?;
        let len = page_align(len).ok_or(Errno::Einval)?;
        let end = start.checked_add(len).ok_or(Errno::Einval)?;
        if end == start {
            return Ok(());
        }
        let write = matches!(
            advice,
            Advice::Normal
                | Advice::Random
                | Advice::Sequential
                | Advice::DontFork
                | Advice::DoFork
        );
        let cpu = ctx.id();
        let mut unmapped = false;
        if write {
            let mut st = self.state.write(ctx.mmu());
            loop {
                let Some(v) = st.vmas.find(start) else {
                    return Err(Errno::Enomem);
                };
                if start < v.start {
                    unmapped = true;
                    start = v.start;
                    if start >= end {
                        break;
                    }
                }
                let v = st.vmas.lookup(start).expect("start is inside it now");
                let tmp = v.end.min(end);
                let old = v.flags;
                let new = match advice {
                    Advice::Normal => old - (VmFlags::SEQ_READ | VmFlags::RAND_READ),
                    Advice::Random => (old - VmFlags::SEQ_READ) | VmFlags::RAND_READ,
                    Advice::Sequential => (old - VmFlags::RAND_READ) | VmFlags::SEQ_READ,
                    Advice::DontFork => old | VmFlags::DONTCOPY,
                    Advice::DoFork => {
                        if old.contains(VmFlags::IO) {
                            return Err(Errno::Einval);
                        }
                        old - VmFlags::DONTCOPY
                    }
                    _ => unreachable!("read-lock advice"),
                };
                if new != old {
                    self.set_range_flags(&mut st, cpu, start, tmp, new)
                        .map_err(|e| if e == Errno::Enomem { Errno::Eagain } else { e })?;
                }
                start = Self::past_merge(&st, tmp);
                if start >= end {
                    break;
                }
            }
        } else {
            let st = self.state.read(ctx.mmu());
            loop {
                let Some(v) = st.vmas.find(start) else {
                    return Err(Errno::Enomem);
                };
                if start < v.start {
                    unmapped = true;
                    start = v.start;
                    if start >= end {
                        break;
                    }
                }
                let tmp = v.end.min(end);
                match advice {
                    Advice::DontNeed | Advice::Free => {
                        if v.flags
                            .intersects(VmFlags::LOCKED | VmFlags::PFNMAP | VmFlags::HUGETLB)
                        {
                            return Err(Errno::Einval);
                        }
                        if advice == Advice::DontNeed {
                            // zap_page_range under the mmap read lock, like Linux.
                            self.unmap_region(ctx, start, tmp, None);
                        } else {
                            if v.file.is_some() {
                                return Err(Errno::Einval);
                            }
                            self.madvise_free(ctx, start, tmp);
                        }
                    }
                    Advice::WillNeed => self.madvise_willneed(ctx, v, start, tmp),
                    _ => unreachable!("write-lock advice"),
                }
                start = tmp;
                if start >= end {
                    break;
                }
            }
        }
        if unmapped {
            Err(Errno::Enomem)
        } else {
            Ok(())
        }
    }

    /// `MADV_WILLNEED`: read-ahead of the file, or swap-in of swapped-out anonymous pages.
    fn madvise_willneed(&self, ctx: &mut CpuCtx, v: &crate::vma::Vma, start: u64, end: u64) {
        let cpu = ctx.id();
        if let Some(f) = &v.file {
            f.readahead(cpu, v.linear_index(start), (end - start) >> PAGE_SHIFT);
            return;
        }
        let mut entries = Vec::new();
        {
            let _ptl = lock_spin(ctx.mmu(), &self.core.ptl);
            pt::for_each_pte(
                &self.sys.mem,
                self.core.mm.root(),
                self.sys.levels,
                start,
                end,
                &mut |_, pte| entries.extend(pte.swap_entry()),
            );
        }
        for e in entries {
            self.sys.hooks.swap.readahead(cpu, e);
        }
    }

    /// `MADV_FREE` (`madvise_free_pte_range`): pages only this mapping uses become clean and
    /// lazily freeable (reclaim may discard them until they are written again); their entries
    /// are made clean and old. Swapped-out pages are dropped.
    fn madvise_free(&self, ctx: &mut CpuCtx, start: u64, end: u64) {
        let sys = &*self.sys;
        let cpu = ctx.id();
        let _ptl = lock_spin(ctx.mmu(), &self.core.ptl);
        let mut present = Vec::new();
        let mut swapped = Vec::new();
        pt::for_each_pte(
            &sys.mem,
            self.core.mm.root(),
            sys.levels,
            start,
            end,
            &mut |va, pte| {
                if pte.swap_entry().is_some() {
                    swapped.push(va);
                } else if pte.is_present() && pte.pfn() != sys.zero_pfn {
                    let page = sys.mem.page(pte.pfn());
                    if page.test(PageFlags::ANON) && page.mapcount() == 1 && page.refcount() == 1 {
                        present.push((va, pte));
                    }
                }
            },
        );
        for va in swapped {
            let mut tlb = mm_mmu::MmuGather::new(&self.core.mm);
            let mut acc = crate::mm::ZapAcc::default();
            self.core
                .mm
                .zap_range(
                    ctx.mmu(),
                    VirtAddr(va),
                    VirtAddr(va + PAGE),
                    &mut tlb,
                    |_, pte| AddressSpace::zap_one(sys, cpu, pte, &mut acc),
                )
                .expect("page-aligned user range");
            self.core.add_rss(
                crate::mm::RssKind::Swap,
                acc.rss[crate::mm::RssKind::Swap as usize],
            );
            tlb.finish(ctx.mmu());
        }
        // Clean and old: park the busy marker in every entry, flush once, map the pages again.
        let stale: Vec<(u64, Pte)> = present
            .into_iter()
            .filter(|(_, pte)| {
                let page = sys.mem.page(pte.pfn());
                page.clear(PageFlags::DIRTY | PageFlags::SWAPBACKED);
                sys.hooks.lru.lazyfree(cpu, pte.pfn());
                pte.is_dirty() || pte.is_young()
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        let mut batch = mm_mmu::TlbBatch::new(&sys.mmu);
        for (va, _) in &stale {
            self.core
                .mm
                .try_to_unmap(ctx.mmu(), VirtAddr(*va), Pte::swap(BUSY), &mut batch)
                .expect("page-aligned user address");
        }
        batch.flush(ctx.mmu());
        for (va, pte) in stale {
            self.core
                .mm
                .map(ctx.mmu(), VirtAddr(va), pte.pfn(), pte.prot())
                .expect("the marker's page table exists");
        }
    }
}
