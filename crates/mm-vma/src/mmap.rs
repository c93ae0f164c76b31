//! `mmap`, `munmap`, `brk` and `mremap` (mm/mmap.c, mm/mremap.c), with `get_unmapped_area`
//! top-down below `mmap_base`.

use crate::ctx::CpuCtx;
use crate::flags::{MapFlags, MremapFlags, ProtFlags, VmFlags};
use crate::hooks::VmFileRef;
use crate::layout::TASK_SIZE;
use crate::lock::lock_spin;
use crate::mm::{AddressSpace, MmState};
use crate::pt;
use crate::shmem::ShmemFile;
use crate::sys::Overcommit;
use crate::vma::Vma;
use mm_types::{CpuId, Errno, VirtAddr, PAGE_SHIFT, PAGE_SIZE};

const PAGE: u64 = PAGE_SIZE as u64;

/// `PAGE_ALIGN`, or `None` on overflow.
pub(crate) fn page_align(v: u64) -> Option<u64> {
    v.checked_add(PAGE - 1).map(|x| x & !(PAGE - 1))
}

/// `do_munmap`'s argument checks: `start..start + len` page aligned, inside the user range,
/// not empty; returns the page-aligned end.
fn munmap_end(start: u64, len: u64) -> Result<u64, Errno> {
    if start & (PAGE - 1) != 0 || start > TASK_SIZE || len > TASK_SIZE - start {
        return Err(Errno::Einval);
    }
    match page_align(len) {
        Some(l) if l > 0 => Ok(start + l),
        _ => Err(Errno::Einval),
    }
}

/// The VMAs munmap took out of the tree, with the page-table range their teardown may free.
pub(crate) struct Detached {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) vmas: Vec<Vma>,
    /// `floor..ceiling` for `free_pgtables`: from the previous VMA's end to the next one's
    /// start.
    pub(crate) tables: (u64, u64),
    /// The VMA after the range grows down: the lock must not be downgraded (246c320a8cfe).
    pub(crate) next_grows_down: bool,
}

impl AddressSpace {
    /// `vm_start_gap`: a stack's start minus its guard gap.
    fn vm_start_gap(&self, v: &Vma) -> u64 {
        if v.flags.contains(VmFlags::GROWSDOWN) {
            v.start.saturating_sub(self.sys.cfg.stack_guard_gap)
        } else {
            v.start
        }
    }

    /// `vm_unmapped_area` top-down: the highest `len` bytes free in `low..high`, keeping
    /// stack guard gaps clear.
    fn unmapped_area_topdown(&self, st: &MmState, len: u64, low: u64, high: u64) -> Option<u64> {
        if high < low || high - low < len {
            return None;
        }
        let mut end = high;
        let reach = high.saturating_add(self.sys.cfg.stack_guard_gap);
        for v in st.vmas.iter_rev_below(reach) {
            if v.end < end && end - v.end.max(low) >= len {
                return Some(end - len);
            }
            end = end.min(self.vm_start_gap(v));
            if end < low || end - low < len {
                return None;
            }
        }
        (end - low >= len).then(|| end - len)
    }

    /// `vm_unmapped_area` bottom-up, the top-down search's fallback.
    fn unmapped_area(&self, st: &MmState, len: u64, low: u64, high: u64) -> Option<u64> {
        let mut start = low;
        for v in st.vmas.iter().filter(|v| v.end > low) {
            let gap_end = self.vm_start_gap(v).min(high);
            if gap_end >= start && gap_end - start >= len {
                return Some(start);
            }
            start = start.max(v.end);
        }
        (high >= start && high - start >= len).then_some(start)
    }

    /// `get_unmapped_area` with x86-64's `arch_get_unmapped_area_topdown`.
    pub(crate) fn get_unmapped_area(
        &self,
        st: &MmState,
        addr: u64,
        len: u64,
        fixed: bool,
    ) -> Result<u64, Errno> {
        if len > TASK_SIZE {
            return Err(Errno::Enomem);
        }
        let addr = if fixed {
            addr
        } else {
            let hint = addr & !(PAGE - 1);
            let hint_ok = hint != 0
                && TASK_SIZE - len >= hint
                && st
                    .vmas
                    .find(hint)
                    .is_none_or(|v| hint + len <= self.vm_start_gap(v));
            if hint_ok {
                hint
            } else {
                self.unmapped_area_topdown(st, len, PAGE, st.mmap_base)
                    .or_else(|| {
                        self.unmapped_area(st, len, (TASK_SIZE / 3) & !(PAGE - 1), TASK_SIZE)
                    })
                    .ok_or(Errno::Enomem)?
            }
        };
        if addr > TASK_SIZE - len {
            return Err(Errno::Enomem);
        }
        if addr & (PAGE - 1) != 0 {
            return Err(Errno::Einval);
        }
        // security_mmap_addr: an unprivileged task may not map below vm.mmap_min_addr.
        if addr < self.sys.cfg.mmap_min_addr {
            return Err(Errno::Eperm);
        }
        Ok(addr)
    }

    /// Maps `len` bytes (`mmap`). `file` is the object and byte offset for a file mapping;
    /// it is ignored with `MAP_ANONYMOUS`. Returns the address of the mapping.
    ///
    /// Errors follow Linux 6.1: EINVAL (offset not page aligned, `len` 0, bad mapping type,
    /// misaligned fixed address, GROWSDOWN on a shared mapping), ENOMEM (no room, overflow of
    /// the length, `max_map_count`, `RLIMIT_AS`/`RLIMIT_DATA`, commit limit), EOVERFLOW
    /// (offset + length wraps), EEXIST (`MAP_FIXED_NOREPLACE` over a mapping), EPERM
    /// (below `vm.mmap_min_addr`, or `MAP_LOCKED` with a zero memlock limit), EAGAIN (over
    /// the memlock limit), EACCES (file opened without the needed mode). A non-anonymous
    /// mapping without a file is EINVAL here: the caller resolves file descriptors and
    /// reports EBADF itself.
    pub fn mmap(
        &self,
        ctx: &mut CpuCtx,
        addr: VirtAddr,
        len: u64,
        prot: ProtFlags,
        flags: MapFlags,
        file: Option<(&VmFileRef, u64)>,
    ) -> Result<VirtAddr, Errno> {
        let anon = flags.contains(MapFlags::ANONYMOUS);
        let (file, offset) = match (anon, file) {
            (true, _) => (None, 0),
            (false, Some((f, off))) => (Some(f.clone()), off),
            (false, None) => return Err(Errno::Einval),
        };
        if offset & (PAGE - 1) != 0 {
            return Err(Errno::Einval);
        }
        if flags.contains(MapFlags::HUGETLB) {
            // No hugetlbfs: a file is never huge, and the anonymous pool holds no pages.
            return Err(if file.is_some() {
                Errno::Einval
            } else {
                Errno::Enomem
            });
        }
        if len == 0 {
            return Err(Errno::Einval);
        }
        let mut flags = flags;
        if flags.contains(MapFlags::FIXED_NOREPLACE) {
            flags |= MapFlags::FIXED;
        }
        let fixed = flags.contains(MapFlags::FIXED);
        let mut addr = addr.0;
        if !fixed {
            // round_hint_to_min.
            addr &= !(PAGE - 1);
            if addr != 0 && addr < self.sys.cfg.mmap_min_addr {
                addr = page_align(self.sys.cfg.mmap_min_addr).unwrap_or(0);
            }
        }
        let len = page_align(len).ok_or(Errno::Enomem)?;
        let pages = len >> PAGE_SHIFT;
        let pgoff_file = offset >> PAGE_SHIFT;
        if pgoff_file.checked_add(pages).is_none() {
            return Err(Errno::Eoverflow);
        }
        let cpu = ctx.id();
        let mut st = self.state.write(ctx.mmu());
        if st.vmas.len() as u64 > self.sys.cfg.max_map_count {
            return Err(Errno::Enomem);
        }
        let addr = self.get_unmapped_area(&st, addr, len, fixed)?;
        if flags.contains(MapFlags::FIXED_NOREPLACE) && st.vmas.intersects(addr, addr + len) {
            return Err(Errno::Eexist);
        }
        let mut vm_flags = VmFlags::from_prot(prot)
            | st.def_flags
            | VmFlags::MAYREAD
            | VmFlags::MAYWRITE
            | VmFlags::MAYEXEC;
        if flags.contains(MapFlags::GROWSDOWN) {
            vm_flags |= VmFlags::GROWSDOWN;
        }
        if flags.contains(MapFlags::LOCKED) {
            vm_flags |= VmFlags::LOCKED;
        }
        if flags.contains(MapFlags::SYNC) {
            vm_flags |= VmFlags::SYNC;
        }
        if flags.contains(MapFlags::LOCKED) && st.rlimits.memlock == 0 {
            return Err(Errno::Eperm);
        }
        if vm_flags.contains(VmFlags::LOCKED)
            && st.locked_vm() + pages > st.rlimits.memlock >> PAGE_SHIFT
        {
            return Err(Errno::Eagain);
        }
        let map_type = flags.bits() & MapFlags::TYPE;
        let pgoff;
        match &file {
            Some(f) => {
                match map_type {
                    t if t == MapFlags::SHARED.bits() || t == MapFlags::SHARED_VALIDATE => {
                        if prot.contains(ProtFlags::WRITE) && !f.writable() {
                            return Err(Errno::Eacces);
                        }
                        vm_flags |= VmFlags::SHARED | VmFlags::MAYSHARE;
                        if !f.writable() {
                            vm_flags -= VmFlags::MAYWRITE | VmFlags::SHARED;
                        }
                    }
                    t if t == MapFlags::PRIVATE.bits() => {}
                    _ => return Err(Errno::Einval),
                }
                if !f.readable() {
                    return Err(Errno::Eacces);
                }
                if vm_flags.contains(VmFlags::GROWSDOWN) {
                    return Err(Errno::Einval);
                }
                pgoff = pgoff_file;
            }
            None => match map_type {
                t if t == MapFlags::SHARED.bits() => {
                    if vm_flags.contains(VmFlags::GROWSDOWN) {
                        return Err(Errno::Einval);
                    }
                    vm_flags |= VmFlags::SHARED | VmFlags::MAYSHARE;
                    pgoff = 0;
                }
                t if t == MapFlags::PRIVATE.bits() => pgoff = addr >> PAGE_SHIFT,
                _ => return Err(Errno::Einval),
            },
        }
        if flags.contains(MapFlags::NORESERVE) && self.sys.cfg.overcommit != Overcommit::Never {
            vm_flags |= VmFlags::NORESERVE;
        }
        self.mmap_region(ctx, &mut st, cpu, file, addr, len, vm_flags, pgoff)?;
        drop(st);
        let populate = vm_flags.contains(VmFlags::LOCKED)
            || (flags.contains(MapFlags::POPULATE) && !flags.contains(MapFlags::NONBLOCK));
        if populate {
            let _ = self.populate(ctx, addr, addr + len, true);
        }
        Ok(VirtAddr(addr))
    }

    /// `mmap_region`: unmaps what `addr..addr + len` overlaps, charges the commitment, and
    /// inserts the new VMA, merged with compatible neighbours.
    #[allow(clippy::too_many_arguments)]
    fn mmap_region(
        &self,
        ctx: &mut CpuCtx,
        st: &mut MmState,
        cpu: CpuId,
        file: Option<VmFileRef>,
        addr: u64,
        len: u64,
        mut vm_flags: VmFlags,
        pgoff: u64,
    ) -> Result<(), Errno> {
        let end = addr + len;
        let pages = len >> PAGE_SHIFT;
        if !st.may_expand_vm(vm_flags, pages) {
            let overlapped: u64 = st
                .vmas
                .overlapping(addr, end)
                .map(|v| (v.end.min(end) - v.start.max(addr)) >> PAGE_SHIFT)
                .sum();
            if !st.may_expand_vm(vm_flags, pages - overlapped) {
                return Err(Errno::Enomem);
            }
        }
        // vm_area_alloc, first: without memory for the VMA nothing changes.
        let objs = self.sys.alloc_vma_objs(cpu, 0)?;
        if st.vmas.intersects(addr, end) {
            match self.munmap_detach(st, cpu, addr, end) {
                Ok(det) => self.munmap_finish(ctx, det),
                Err(e) => {
                    self.sys.free_vma_objs(cpu, objs);
                    return Err(e);
                }
            }
        }
        // accountable_mapping.
        if vm_flags & (VmFlags::NORESERVE | VmFlags::SHARED | VmFlags::WRITE) == VmFlags::WRITE {
            if let Err(e) = self.sys.vm_enough_memory(pages) {
                self.sys.free_vma_objs(cpu, objs);
                return Err(e);
            }
            vm_flags |= VmFlags::ACCOUNT;
        }
        let file = match (file, vm_flags.contains(VmFlags::MAYSHARE)) {
            (Some(f), _) => Some(f),
            // shmem_zero_setup: shared anonymous memory is a shmem object.
            (None, true) => Some(VmFileRef::new(ShmemFile::new(
                self.sys.buddy.clone(),
                self.sys.new_id(),
                self.sys.new_id(),
                pages,
            ))),
            (None, false) => None,
        };
        if let Some(f) = &file {
            f.open();
        }
        let vma = Vma {
            id: self.sys.new_id(),
            start: addr,
            end,
            flags: vm_flags,
            pgoff,
            file,
            anon_vma: None,
            anon_parents: Vec::new(),
            objs,
        };
        self.vma_insert(st, vma);
        st.vm_stat_account(vm_flags, pages as i64);
        if vm_flags.contains(VmFlags::LOCKED) {
            st.add_locked((pages) as i64);
        }
        self.merge_range(st, cpu, addr, end);
        Ok(())
    }

    /// The first half of munmap (`do_mas_align_munmap`): splits the VMAs at the edges of
    /// `start..end`, takes every VMA inside out of the tree and rmap, and uncounts them.
    pub(crate) fn munmap_detach(
        &self,
        st: &mut MmState,
        cpu: CpuId,
        start: u64,
        end: u64,
    ) -> Result<Detached, Errno> {
        let mut det = Detached {
            start,
            end,
            vmas: Vec::new(),
            tables: (0, 0),
            next_grows_down: false,
        };
        let Some(first) = st.vmas.find(start).filter(|v| v.start < end) else {
            return Ok(det);
        };
        let before = st.vmas.len();
        if first.start < start {
            // Only a hole strictly inside one VMA adds one.
            if end < first.end && st.vmas.len() as u64 >= self.sys.cfg.max_map_count {
                return Err(Errno::Enomem);
            }
            self.split_at_unchecked(st, cpu, start)?;
        }
        if st.vmas.lookup(end - 1).is_some_and(|v| v.end > end) {
            if let Err(e) = self.split_at_unchecked(st, cpu, end) {
                // Undo the first split: nothing changed.
                self.unsplit(st, cpu, start, before);
                return Err(e);
            }
        }
        let starts: Vec<u64> = st.vmas.overlapping(start, end).map(|v| v.start).collect();
        st.update_hiwater_vm();
        for s in starts {
            let v = self.vma_detach(st, s);
            let pages = v.pages();
            if v.flags.contains(VmFlags::LOCKED) {
                st.add_locked(-((pages) as i64));
            }
            st.vm_stat_account(v.flags, -(pages as i64));
            if v.flags.contains(VmFlags::ACCOUNT) {
                self.sys.vm_unacct_memory(pages);
            }
            det.vmas.push(v);
        }
        let floor = st.vmas.prev(start).map_or(0, |v| v.end);
        let next = st.vmas.next_from(end);
        det.next_grows_down = next.is_some_and(|v| v.flags.contains(VmFlags::GROWSDOWN));
        let ceiling = next.map_or(self.core.mm.mmu().config().paging.user_limit(), |v| v.start);
        det.tables = (floor, ceiling);
        Ok(det)
    }

    /// The second half of munmap (`unmap_region` and `remove_vma_list`): zaps the range,
    /// frees its empty page tables, flushes, then closes the VMAs.
    pub(crate) fn munmap_finish(&self, ctx: &mut CpuCtx, det: Detached) {
        if det.vmas.is_empty() {
            return;
        }
        self.unmap_region(ctx, det.start, det.end, Some(det.tables));
        let cpu = ctx.id();
        for v in det.vmas {
            self.close_vma(cpu, v);
        }
    }

    /// Unmaps `addr..addr + len` (`munmap`): EINVAL for a misaligned address, a zero or
    /// out-of-range length; ENOMEM if splitting would exceed `max_map_count`. Unmapping a
    /// hole is not an error. Like Linux, it downgrades the mmap lock to read while it zaps
    /// and frees page tables, unless the next VMA is a stack that could grow into the range
    /// (246c320a8cfe, CVE-2020-29369).
    pub fn munmap(&self, ctx: &mut CpuCtx, addr: VirtAddr, len: u64) -> Result<(), Errno> {
        let start = addr.0;
        let end = munmap_end(start, len)?;
        let cpu = ctx.id();
        let mut st = self.state.write(ctx.mmu());
        let det = self.munmap_detach(&mut st, cpu, start, end)?;
        #[cfg(test)]
        let downgrade = !det.next_grows_down || self.regress.munmap_downgrade_ignores_growsdown;
        #[cfg(not(test))]
        let downgrade = !det.next_grows_down;
        if downgrade {
            let gate = st.downgrade().into_gate();
            self.munmap_finish(ctx, det);
            drop(gate);
        } else {
            self.munmap_finish(ctx, det);
        }
        Ok(())
    }

    /// Sets the program break (`brk`). Returns the new break on success and the old one on
    /// any failure, never an error. `brk(0)` and values below the heap start return the
    /// current break; growing fails if the new heap plus a guard page would reach the next
    /// mapping (with its stack guard gap), or over `RLIMIT_DATA`, the memlock limit or the
    /// commit limit.
    pub fn brk(&self, ctx: &mut CpuCtx, brk: VirtAddr) -> VirtAddr {
        let brk = brk.0;
        let cpu = ctx.id();
        let mut st = self.state.write(ctx.mmu());
        let orig = st.brk;
        if brk < st.start_brk {
            return VirtAddr(orig);
        }
        // check_data_rlimit.
        if st.rlimits.data != u64::MAX
            && (brk - st.start_brk).saturating_add(st.end_data - st.start_data) > st.rlimits.data
        {
            return VirtAddr(orig);
        }
        let (Some(newbrk), Some(oldbrk)) = (page_align(brk), page_align(st.brk)) else {
            return VirtAddr(orig);
        };
        if oldbrk == newbrk {
            st.brk = brk;
            return VirtAddr(brk);
        }
        if brk <= st.brk {
            // Shrinking is always allowed; it unmaps newbrk..oldbrk (do_brk_munmap).
            if !st.vmas.intersects(newbrk, oldbrk) {
                return VirtAddr(orig);
            }
            st.brk = brk;
            match self.munmap_detach(&mut st, cpu, newbrk, oldbrk) {
                Ok(det) => {
                    if det.next_grows_down {
                        self.munmap_finish(ctx, det);
                    } else {
                        let gate = st.downgrade().into_gate();
                        self.munmap_finish(ctx, det);
                        drop(gate);
                    }
                    return VirtAddr(brk);
                }
                Err(_) => {
                    st.brk = orig;
                    return VirtAddr(orig);
                }
            }
        }
        let len = newbrk - oldbrk;
        let pages = len >> PAGE_SHIFT;
        // check_brk_limits: get_unmapped_area(MAP_FIXED) and mlock_future_check.
        if self.get_unmapped_area(&st, oldbrk, len, true).is_err() {
            return VirtAddr(orig);
        }
        if st.def_flags.contains(VmFlags::LOCKED)
            && st.locked_vm() + pages > st.rlimits.memlock >> PAGE_SHIFT
        {
            return VirtAddr(orig);
        }
        // The next VMA must stay a guard page (and a stack's guard gap) away.
        if let Some(next) = st.vmas.find(oldbrk) {
            if next.start < newbrk + PAGE + self.sys.cfg.stack_guard_gap
                && newbrk + PAGE > self.vm_start_gap(next)
            {
                return VirtAddr(orig);
            }
        }
        if self.do_brk_flags(&mut st, cpu, oldbrk, len).is_err() {
            return VirtAddr(orig);
        }
        st.brk = brk;
        let populate = st.def_flags.contains(VmFlags::LOCKED);
        drop(st);
        if populate {
            let _ = self.populate(ctx, oldbrk, newbrk, true);
        }
        VirtAddr(brk)
    }

    /// `do_brk_flags`: extends the heap VMA ending at `addr`, or creates one.
    fn do_brk_flags(&self, st: &mut MmState, cpu: CpuId, addr: u64, len: u64) -> Result<(), Errno> {
        let pages = len >> PAGE_SHIFT;
        let flags = VmFlags::DATA_DEFAULT | VmFlags::ACCOUNT | st.def_flags;
        if !st.may_expand_vm(flags, pages) {
            return Err(Errno::Enomem);
        }
        if st.vmas.len() as u64 > self.sys.cfg.max_map_count {
            return Err(Errno::Enomem);
        }
        // The heap VMA: it ends at the old break and starts at or above start_brk.
        let prev = st
            .vmas
            .prev(addr + 1)
            .filter(|v| v.end == addr && v.start >= st.start_brk)
            .filter(|v| v.flags == flags && v.file.is_none())
            .filter(|v| v.pgoff + v.pages() == addr >> PAGE_SHIFT);
        let prev = prev.map(|p| p.start);
        // A new heap VMA needs its vm_area_struct (before the charge, which it cannot undo).
        let objs = match prev {
            Some(_) => None,
            None => self.sys.alloc_vma_objs(cpu, 0)?,
        };
        if let Err(e) = self.sys.vm_enough_memory(pages) {
            self.sys.free_vma_objs(cpu, objs);
            return Err(e);
        }
        match prev {
            Some(start) => {
                let p = st.vmas.lookup(start).expect("found above");
                let grown = p.derive(self.sys.new_id(), p.start, addr + len);
                self.vma_replace(st, cpu, &[start], vec![grown]);
            }
            None => {
                let v = Vma {
                    id: self.sys.new_id(),
                    start: addr,
                    end: addr + len,
                    flags,
                    pgoff: addr >> PAGE_SHIFT,
                    file: None,
                    anon_vma: None,
                    anon_parents: Vec::new(),
                    objs,
                };
                self.vma_insert(st, v);
            }
        }
        st.vm_stat_account(flags, pages as i64);
        if flags.contains(VmFlags::LOCKED) {
            st.add_locked((pages) as i64);
        }
        Ok(())
    }

    /// `vma_to_resize`: the VMA at `addr` that `old_len..new_len` resizes, with its checks.
    fn vma_to_resize(
        &self,
        st: &MmState,
        addr: u64,
        old_len: u64,
        new_len: u64,
        flags: MremapFlags,
    ) -> Result<u64, Errno> {
        let v = st.vmas.lookup(addr).ok_or(Errno::Efault)?;
        if old_len == 0 {
            // Duplicating a shared mapping with old_len 0 is not simulated.
            return Err(Errno::Einval);
        }
        if flags.contains(MremapFlags::DONTUNMAP)
            && v.flags.intersects(VmFlags::DONTEXPAND | VmFlags::PFNMAP)
        {
            return Err(Errno::Einval);
        }
        if old_len > v.end - addr {
            return Err(Errno::Efault);
        }
        if new_len == old_len {
            return Ok(v.start);
        }
        let pgoff = v.linear_index(addr);
        if pgoff.checked_add(new_len >> PAGE_SHIFT).is_none() {
            return Err(Errno::Einval);
        }
        if v.flags.intersects(VmFlags::DONTEXPAND | VmFlags::PFNMAP) {
            return Err(Errno::Efault);
        }
        let delta = (new_len - old_len) >> PAGE_SHIFT;
        if v.flags.contains(VmFlags::LOCKED)
            && st.locked_vm() + delta > st.rlimits.memlock >> PAGE_SHIFT
        {
            return Err(Errno::Eagain);
        }
        if !st.may_expand_vm(v.flags, delta) {
            return Err(Errno::Enomem);
        }
        Ok(v.start)
    }

    /// Resizes and possibly moves a mapping (`mremap`). Returns its (new) address.
    ///
    /// Supports shrinking (unmaps the tail), growing in place when the pages after the
    /// mapping are free, and moving with `MREMAP_MAYMOVE`, to a chosen address with
    /// `MREMAP_FIXED` (unmapping what was there), and leaving the old range mapped but empty
    /// with `MREMAP_DONTUNMAP`. Errors as Linux 6.1: EINVAL (bad flags, misaligned address,
    /// zero new length, overlapping fixed ranges, `old_len` 0), EFAULT (no VMA at `addr`, or
    /// the range crosses VMAs), ENOMEM (no room without MAYMOVE, limits), EAGAIN (memlock).
    pub fn mremap(
        &self,
        ctx: &mut CpuCtx,
        addr: VirtAddr,
        old_len: u64,
        new_len: u64,
        flags: MremapFlags,
        new_addr: VirtAddr,
    ) -> Result<VirtAddr, Errno> {
        let (addr, new_addr) = (addr.0, new_addr.0);
        if flags.bits() & !MremapFlags::all().bits() != 0 {
            return Err(Errno::Einval);
        }
        if flags.contains(MremapFlags::FIXED) && !flags.contains(MremapFlags::MAYMOVE) {
            return Err(Errno::Einval);
        }
        if flags.contains(MremapFlags::DONTUNMAP)
            && (!flags.contains(MremapFlags::MAYMOVE) || old_len != new_len)
        {
            return Err(Errno::Einval);
        }
        if addr & (PAGE - 1) != 0 {
            return Err(Errno::Einval);
        }
        let old_len = page_align(old_len).ok_or(Errno::Einval)?;
        let new_len = page_align(new_len).ok_or(Errno::Einval)?;
        if new_len == 0 {
            return Err(Errno::Einval);
        }
        let cpu = ctx.id();
        let mut st = self.state.write(ctx.mmu());
        if st.vmas.lookup(addr).is_none() {
            return Err(Errno::Efault);
        }
        if flags.intersects(MremapFlags::FIXED | MremapFlags::DONTUNMAP) {
            return self
                .mremap_to(ctx, &mut st, addr, old_len, new_addr, new_len, flags)
                .map(VirtAddr);
        }
        if old_len >= new_len {
            if old_len > new_len {
                let tail = addr.saturating_add(new_len);
                let end = munmap_end(tail, old_len - new_len)?;
                let det = self.munmap_detach(&mut st, cpu, tail, end)?;
                self.munmap_finish(ctx, det);
            }
            return Ok(VirtAddr(addr));
        }
        let vstart = self.vma_to_resize(&st, addr, old_len, new_len, flags)?;
        let v = st.vmas.lookup(vstart).expect("found by vma_to_resize");
        let (vend, vflags) = (v.end, v.flags);
        if old_len == vend - addr {
            // Grow in place if the pages after the VMA are free (vma_expandable).
            let ext_end = addr.saturating_add(new_len);
            let expandable = ext_end <= TASK_SIZE
                && !st.vmas.intersects(vend, ext_end)
                && self
                    .get_unmapped_area(&st, vstart, ext_end - vstart, true)
                    .is_ok();
            if expandable {
                let pages = (new_len - old_len) >> PAGE_SHIFT;
                if vflags.contains(VmFlags::ACCOUNT) {
                    self.sys.vm_enough_memory(pages)?;
                }
                let v = st.vmas.lookup(vstart).expect("found above");
                let grown = v.derive(self.sys.new_id(), v.start, ext_end);
                self.vma_replace(&mut st, cpu, &[vstart], vec![grown]);
                st.vm_stat_account(vflags, pages as i64);
                let locked = vflags.contains(VmFlags::LOCKED);
                if locked {
                    st.add_locked((pages) as i64);
                }
                self.merge_range(&mut st, cpu, vstart, ext_end);
                drop(st);
                if locked {
                    let _ = self.populate(ctx, addr + old_len, ext_end, true);
                }
                return Ok(VirtAddr(addr));
            }
        }
        if !flags.contains(MremapFlags::MAYMOVE) {
            return Err(Errno::Enomem);
        }
        let dest = self.get_unmapped_area(&st, 0, new_len, false)?;
        let r = self.move_vma(ctx, &mut st, addr, old_len, new_len, dest, flags)?;
        let locked = vflags.contains(VmFlags::LOCKED);
        drop(st);
        if locked {
            let _ = self.populate(ctx, r + old_len, r + new_len, true);
        }
        Ok(VirtAddr(r))
    }

    /// `mremap_to`: the `MREMAP_FIXED` / `MREMAP_DONTUNMAP` move.
    #[allow(clippy::too_many_arguments)]
    fn mremap_to(
        &self,
        ctx: &mut CpuCtx,
        st: &mut MmState,
        addr: u64,
        mut old_len: u64,
        new_addr: u64,
        new_len: u64,
        flags: MremapFlags,
    ) -> Result<u64, Errno> {
        let cpu = ctx.id();
        if new_addr & (PAGE - 1) != 0 {
            return Err(Errno::Einval);
        }
        if new_len > TASK_SIZE || new_addr > TASK_SIZE - new_len {
            return Err(Errno::Einval);
        }
        if addr.saturating_add(old_len) > new_addr && new_addr + new_len > addr {
            return Err(Errno::Einval);
        }
        if st.vmas.len() as u64 + 2 >= self.sys.cfg.max_map_count - 3 {
            return Err(Errno::Enomem);
        }
        if flags.contains(MremapFlags::FIXED) {
            let end = munmap_end(new_addr, new_len)?;
            let det = self.munmap_detach(st, cpu, new_addr, end)?;
            self.munmap_finish(ctx, det);
        }
        if old_len > new_len {
            let tail = addr.saturating_add(new_len);
            let end = munmap_end(tail, old_len - new_len)?;
            let det = self.munmap_detach(st, cpu, tail, end)?;
            self.munmap_finish(ctx, det);
            old_len = new_len;
        }
        let vstart = self.vma_to_resize(st, addr, old_len, new_len, flags)?;
        let vflags = st
            .vmas
            .lookup(vstart)
            .expect("found by vma_to_resize")
            .flags;
        if flags.contains(MremapFlags::DONTUNMAP)
            && !st.may_expand_vm(vflags, old_len >> PAGE_SHIFT)
        {
            return Err(Errno::Enomem);
        }
        let dest =
            self.get_unmapped_area(st, new_addr, new_len, flags.contains(MremapFlags::FIXED))?;
        self.move_vma(ctx, st, addr, old_len, new_len, dest, flags)
    }

    /// `move_vma`: a new VMA at `new_addr` with the old one's pages moved over, then the old
    /// range unmapped (or kept, empty, with `MREMAP_DONTUNMAP`).
    #[allow(clippy::too_many_arguments)]
    fn move_vma(
        &self,
        ctx: &mut CpuCtx,
        st: &mut MmState,
        addr: u64,
        old_len: u64,
        new_len: u64,
        new_addr: u64,
        flags: MremapFlags,
    ) -> Result<u64, Errno> {
        let cpu = ctx.id();
        if st.vmas.len() as u64 >= self.sys.cfg.max_map_count - 3 {
            return Err(Errno::Enomem);
        }
        let v = st.vmas.lookup(addr).expect("checked by the caller");
        let vflags = v.flags;
        // copy_vma: a new VMA in the same anon_vmas.
        let objs = self.sys.alloc_vma_objs(cpu, v.anon_chain().count())?;
        if vflags.contains(VmFlags::ACCOUNT) {
            if let Err(e) = self.sys.vm_enough_memory(new_len >> PAGE_SHIFT) {
                self.sys.free_vma_objs(cpu, objs);
                return Err(e);
            }
        }
        if let Some(f) = &v.file {
            f.open();
        }
        let new = Vma {
            id: self.sys.new_id(),
            start: new_addr,
            end: new_addr + new_len,
            flags: vflags,
            pgoff: v.linear_index(addr),
            file: v.file.clone(),
            anon_vma: v.anon_vma.clone(),
            anon_parents: v.anon_parents.clone(),
            objs,
        };
        self.vma_insert(st, new);
        // move_page_tables.
        {
            let sys = &*self.sys;
            let _ptl = lock_spin(ctx.mmu(), &self.core.ptl);
            let mut entries = Vec::new();
            pt::for_each_pte(
                &sys.mem,
                self.core.mm.root(),
                sys.levels,
                addr,
                addr + old_len,
                &mut |va, _| entries.push(va),
            );
            for va in entries {
                self.core
                    .mm
                    .move_pte(ctx.mmu(), VirtAddr(va), VirtAddr(new_addr + (va - addr)))
                    .expect("the destination range was unmapped");
            }
        }
        st.vm_stat_account(vflags, (new_len >> PAGE_SHIFT) as i64);
        if vflags.contains(VmFlags::LOCKED) {
            st.add_locked((new_len >> PAGE_SHIFT) as i64);
        }
        if flags.contains(MremapFlags::DONTUNMAP) {
            // The old range stays mapped, empty, unlocked, and keeps its own charge.
            if vflags.intersects(VmFlags::LOCKED_MASK) {
                self.split_range(st, cpu, addr, addr + old_len)?;
                let o = st.vmas.lookup(addr).expect("split above");
                let mut unlocked = o.derive(self.sys.new_id(), o.start, o.end);
                unlocked.flags -= VmFlags::LOCKED_MASK;
                let os = o.start;
                if vflags.contains(VmFlags::LOCKED) {
                    st.add_locked(-((unlocked.pages()) as i64));
                }
                self.vma_replace(st, cpu, &[os], vec![unlocked]);
            }
        } else {
            let det = self.munmap_detach(st, cpu, addr, addr + old_len)?;
            self.munmap_finish(ctx, det);
        }
        self.merge_range(st, cpu, new_addr, new_addr + new_len);
        Ok(new_addr)
    }
}
