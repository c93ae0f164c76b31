//! [`AddressSpace`] (`struct mm_struct`): the VMA tree under the mmap lock, the page tables,
//! the layout fields, the RSS and VM counters; and the helpers every syscall shares: editing
//! the tree with rmap links kept current, splitting, merging, and zapping a range.

use crate::ctx::CpuCtx;
use crate::flags::VmFlags;
use crate::layout::{place, Layout, Rlimits, INITIAL_STACK_PAGES};
use crate::lock::{lock_spin, MmapLock};
use crate::sys::VmSys;
use crate::vma::{Vma, VmaTree};
use mm_buddy::Frame;
use mm_mmu::{Mm, MmuGather, Pte};
use mm_phys::PageFlags;
use mm_slab::{KObj, MmStruct};
use mm_sync::sync::{Arc, SpinLock};
use mm_sync::untracked::{AtomicI64, AtomicU64, Ordering};
use mm_types::{CpuId, Errno, Order, Pfn, Pid, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use std::fmt;

/// `MM_FILEPAGES`, `MM_ANONPAGES`, `MM_SWAPENTS`, `MM_SHMEMPAGES`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RssKind {
    /// `MM_FILEPAGES`.
    File = 0,
    /// `MM_ANONPAGES`.
    Anon = 1,
    /// `MM_SWAPENTS`.
    Swap = 2,
    /// `MM_SHMEMPAGES`.
    Shmem = 3,
}

/// A snapshot of an address space's RSS counters, in pages.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Rss {
    /// `MM_FILEPAGES` (RssFile).
    pub file: u64,
    /// `MM_ANONPAGES` (RssAnon).
    pub anon: u64,
    /// `MM_SWAPENTS` (VmSwap).
    pub swap: u64,
    /// `MM_SHMEMPAGES` (RssShmem).
    pub shmem: u64,
}

impl Rss {
    /// Resident pages: anon + file + shmem (`get_mm_rss`).
    pub fn resident(&self) -> u64 {
        self.anon + self.file + self.shmem
    }
}

/// The part of an address space that rmap walkers reach without the mmap lock: its page
/// tables, its page-table lock, its pid and its RSS counters.
pub struct MmCore {
    pid: Pid,
    pub(crate) mm: Arc<Mm>,
    /// The VM counters (shared with the mmap-locked state that writes them).
    pub(crate) vm: Arc<VmCounters>,
    /// `start_code..end_code`, fixed at exec.
    pub(crate) code: (u64, u64),
    /// The VMA layer's page-table lock (`mm->page_table_lock`): every check-then-change of
    /// this address space's PTEs by this layer happens under it.
    pub(crate) ptl: SpinLock<()>,
    // Statistics: nothing synchronizes through them.
    rss: [AtomicI64; 4],
    hiwater_rss: AtomicU64,
    min_flt: AtomicU64,
    maj_flt: AtomicU64,
}

impl fmt::Debug for MmCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmCore")
            .field("pid", &self.pid)
            .field("rss", &self.rss())
            .finish_non_exhaustive()
    }
}

impl MmCore {
    pub(crate) fn new(pid: Pid, mm: Arc<Mm>, vm: Arc<VmCounters>, code: (u64, u64)) -> MmCore {
        MmCore {
            pid,
            mm,
            vm,
            code,
            ptl: SpinLock::new(()),
            rss: Default::default(),
            hiwater_rss: AtomicU64::new(0),
            min_flt: AtomicU64::new(0),
            maj_flt: AtomicU64::new(0),
        }
    }

    /// Returns the process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Returns the page tables.
    pub fn mm(&self) -> &Arc<Mm> {
        &self.mm
    }

    /// Returns the RSS counters.
    pub fn rss(&self) -> Rss {
        let g = |k: RssKind| self.rss[k as usize].load(Ordering::Relaxed).max(0) as u64;
        Rss {
            file: g(RssKind::File),
            anon: g(RssKind::Anon),
            swap: g(RssKind::Swap),
            shmem: g(RssKind::Shmem),
        }
    }

    /// Returns `max(rss, hiwater_rss)` (VmHWM) in pages.
    pub fn hiwater_rss(&self) -> u64 {
        self.hiwater_rss
            .load(Ordering::Relaxed)
            .max(self.rss().resident())
    }

    /// Returns `total_vm` (VmSize) in pages, without the mmap lock.
    pub fn total_vm(&self) -> u64 {
        self.vm.snapshot()[0]
    }

    /// Returns the minor and major fault counts (`min_flt`, `maj_flt`).
    pub fn faults(&self) -> (u64, u64) {
        (
            self.min_flt.load(Ordering::Relaxed),
            self.maj_flt.load(Ordering::Relaxed),
        )
    }

    #[inline]
    pub(crate) fn add_rss(&self, kind: RssKind, delta: i64) {
        self.rss[kind as usize].fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn count_fault(&self, major: bool) {
        let c = if major { &self.maj_flt } else { &self.min_flt };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_hiwater_rss(&self, pages: u64) {
        self.hiwater_rss.store(pages, Ordering::Relaxed);
    }

    /// `update_hiwater_rss`: called before RSS goes down.
    pub(crate) fn update_hiwater_rss(&self) {
        self.hiwater_rss
            .fetch_max(self.rss().resident(), Ordering::Relaxed);
    }
}

/// What the mmap lock protects.
#[derive(Debug)]
pub(crate) struct MmState {
    pub(crate) vmas: VmaTree,
    pub(crate) start_code: u64,
    pub(crate) end_code: u64,
    pub(crate) start_data: u64,
    pub(crate) end_data: u64,
    pub(crate) start_brk: u64,
    pub(crate) brk: u64,
    pub(crate) start_stack: u64,
    pub(crate) mmap_base: u64,
    pub(crate) rlimits: Rlimits,
    /// The VM counters, written under the mmap write lock and read by anyone.
    pub(crate) vm: Arc<VmCounters>,
    /// `mm->def_flags` (`VM_LOCKED` after `mlockall(MCL_FUTURE)`).
    pub(crate) def_flags: VmFlags,
    pub(crate) exited: bool,
    /// The `mm_struct` in simulated RAM (when the layer has a slab), freed at exit.
    pub(crate) mm_obj: Option<KObj<MmStruct>>,
}

/// An address space's VM counters in pages (`total_vm`, `locked_vm`, ...): written under
/// the mmap write lock, read locklessly by `/proc/PID/status` and the OOM killer as Linux
/// reads them. Statistics only: nothing synchronizes through them.
#[derive(Debug, Default)]
pub(crate) struct VmCounters {
    pub(crate) total: AtomicU64,
    pub(crate) locked: AtomicU64,
    pub(crate) data: AtomicU64,
    pub(crate) exec: AtomicU64,
    pub(crate) stack: AtomicU64,
    pub(crate) hiwater: AtomicU64,
}

#[inline]
fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

#[inline]
fn add(a: &AtomicU64, d: i64) {
    a.fetch_add(d as u64, Ordering::Relaxed);
}

impl VmCounters {
    fn copy(&self) -> VmCounters {
        let c = VmCounters::default();
        for (d, s) in [
            (&c.total, &self.total),
            (&c.data, &self.data),
            (&c.exec, &self.exec),
            (&c.stack, &self.stack),
            (&c.hiwater, &self.hiwater),
        ] {
            d.store(get(s), Ordering::Relaxed);
        }
        c
    }

    /// Returns `(total_vm, locked_vm, data_vm, exec_vm, stack_vm, max(hiwater_vm, total_vm))`.
    pub(crate) fn snapshot(&self) -> [u64; 6] {
        let total = get(&self.total);
        [
            total,
            get(&self.locked),
            get(&self.data),
            get(&self.exec),
            get(&self.stack),
            get(&self.hiwater).max(total),
        ]
    }
}

impl MmState {
    /// Returns the physical address of the `mm_struct` (a VMA's `vm_mm`), or 0.
    #[inline]
    pub(crate) fn mm_addr(&self) -> u64 {
        self.mm_obj.as_ref().map_or(0, |o| o.addr().0)
    }

    /// `vm_stat_account`.
    pub(crate) fn vm_stat_account(&mut self, flags: VmFlags, pages: i64) {
        add(&self.vm.total, pages);
        if flags.is_exec_mapping() {
            add(&self.vm.exec, pages);
        } else if flags.is_stack_mapping() {
            add(&self.vm.stack, pages);
        } else if flags.is_data_mapping() {
            add(&self.vm.data, pages);
        }
    }

    /// Returns `locked_vm`.
    #[inline]
    pub(crate) fn locked_vm(&self) -> u64 {
        get(&self.vm.locked)
    }

    /// Adds to `locked_vm`.
    #[inline]
    pub(crate) fn add_locked(&mut self, pages: i64) {
        add(&self.vm.locked, pages);
    }

    /// Returns `total_vm`.
    #[inline]
    pub(crate) fn total_vm(&self) -> u64 {
        get(&self.vm.total)
    }

    /// `may_expand_vm`: `RLIMIT_AS` and, for data mappings, `RLIMIT_DATA`.
    pub(crate) fn may_expand_vm(&self, flags: VmFlags, pages: u64) -> bool {
        let limit = |bytes: u64| bytes >> PAGE_SHIFT;
        if self.total_vm() + pages > limit(self.rlimits.address_space) {
            return false;
        }
        !(flags.is_data_mapping() && get(&self.vm.data) + pages > limit(self.rlimits.data))
    }

    /// `update_hiwater_vm`: called before `total_vm` goes down.
    pub(crate) fn update_hiwater_vm(&mut self) {
        self.vm
            .hiwater
            .fetch_max(self.total_vm(), Ordering::Relaxed);
    }
}

/// Historical bugs a test can switch back on to show the loom models catch them. Each names
/// the upstream fix it undoes.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Regressions {
    /// The fault handler grows a stack under the mmap *read* lock (before 8d7071af8907,
    /// "mm: always expand the stack with the mmap write lock held", 6.5).
    pub(crate) expand_stack_under_read_lock: bool,
    /// munmap downgrades the mmap lock even when the next VMA grows down (before
    /// 246c320a8cfe, CVE-2020-29369).
    pub(crate) munmap_downgrade_ignores_growsdown: bool,
    /// GUP drops FOLL_WRITE after a COW break and retries as a read (before 19be0eaffa3a,
    /// Dirty COW, CVE-2016-5195).
    pub(crate) gup_drops_foll_write_after_cow: bool,
    /// A COW fault installs its copy without re-checking the entry once it has the
    /// page-table lock again (`wp_page_copy`'s `pte_same`): Dirty COW's check-then-act class.
    pub(crate) cow_skips_pte_same_recheck: bool,
}

/// One process's address space (`struct mm_struct`).
pub struct AddressSpace {
    pub(crate) sys: Arc<VmSys>,
    pub(crate) core: Arc<MmCore>,
    pub(crate) state: MmapLock<MmState>,
    #[cfg(test)]
    pub(crate) regress: Regressions,
}

impl fmt::Debug for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddressSpace")
            .field("pid", &self.core.pid)
            .field("ctx_id", &self.core.mm.ctx_id())
            .finish_non_exhaustive()
    }
}

/// What a zap collected: RSS changes, and the pages whose put waits for the flush.
#[derive(Default)]
pub(crate) struct ZapAcc {
    pub(crate) rss: [i64; 4],
    /// Pages that had references besides this mapping: their put comes after the flush.
    pub(crate) deferred: Vec<Pfn>,
}

impl AddressSpace {
    /// Creates the address space of a new process `pid` laid out by `layout` (what `execve`
    /// leaves): the stack VMA, the program image if any, and an empty heap.
    pub fn new(
        sys: &Arc<VmSys>,
        ctx: &mut CpuCtx,
        pid: Pid,
        layout: &Layout,
    ) -> Result<AddressSpace, Errno> {
        let placed = place(layout, sys.cfg.stack_guard_gap);
        let cpu = ctx.id();
        let mm = Mm::new(&sys.mmu, cpu).map_err(|_| Errno::Enomem)?;
        let mm_obj = sys.alloc_mm_obj(cpu, pid, mm.root(), placed.mmap_base)?;
        let stack_start = placed.stack_top - (INITIAL_STACK_PAGES << PAGE_SHIFT);
        let mut st = MmState {
            vmas: VmaTree::default(),
            start_code: placed.load_base,
            end_code: placed.load_base,
            start_data: placed.load_base,
            end_data: placed.load_base,
            start_brk: placed.load_base,
            brk: placed.load_base,
            // Where the initial stack pointer sits: just below the argument area.
            start_stack: placed.stack_top - PAGE_SIZE as u64,
            mmap_base: placed.mmap_base,
            rlimits: layout.rlimits,
            vm: Arc::new(VmCounters::default()),
            def_flags: VmFlags::empty(),
            exited: false,
            mm_obj,
        };
        let mut segments = vec![(stack_start, placed.stack_top, VmFlags::STACK_DEFAULT)];
        if let Some(img) = &layout.exec {
            let text_end = placed.load_base + (img.text_pages << PAGE_SHIFT);
            let data_end = text_end + (img.data_pages << PAGE_SHIFT);
            let bss_end = data_end + (img.bss_pages << PAGE_SHIFT);
            let exec = VmFlags::READ | VmFlags::EXEC | VmFlags::MAYREAD | VmFlags::MAYWRITE;
            let exec = exec | VmFlags::MAYEXEC;
            let data = VmFlags::DATA_DEFAULT | VmFlags::ACCOUNT;
            if img.text_pages > 0 {
                segments.push((placed.load_base, text_end, exec));
            }
            if bss_end > text_end {
                segments.push((text_end, bss_end, data));
            }
            st.end_code = text_end;
            st.start_data = text_end;
            st.end_data = data_end;
            st.start_brk = bss_end;
        }
        st.start_brk += placed.brk_offset;
        st.brk = st.start_brk;
        let as_ = AddressSpace {
            sys: sys.clone(),
            core: Arc::new(MmCore::new(
                pid,
                mm,
                st.vm.clone(),
                (st.start_code, st.end_code),
            )),
            state: MmapLock::new(st),
            #[cfg(test)]
            regress: Regressions::default(),
        };
        {
            let mut w = as_.state.write(ctx.mmu());
            for (start, end, flags) in segments {
                let pages = (end - start) >> PAGE_SHIFT;
                // On an error the drop of `as_` tears down what was built (exit).
                let objs = sys.alloc_vma_objs(cpu, 0)?;
                if flags.contains(VmFlags::ACCOUNT) {
                    if let Err(e) = sys.vm_enough_memory(pages) {
                        sys.free_vma_objs(cpu, objs);
                        return Err(e);
                    }
                }
                let vma = Vma {
                    id: sys.new_id(),
                    start,
                    end,
                    flags,
                    pgoff: start >> PAGE_SHIFT,
                    file: None,
                    anon_vma: None,
                    anon_parents: Vec::new(),
                    objs,
                };
                as_.vma_insert(&mut w, vma);
                w.vm_stat_account(flags, pages as i64);
            }
            as_.merge_range(&mut w, cpu, 0, u64::MAX >> 1);
        }
        Ok(as_)
    }

    /// Returns the machine-wide VMA state.
    pub fn sys(&self) -> &Arc<VmSys> {
        &self.sys
    }

    /// Returns the part rmap and reclaim see.
    pub fn core(&self) -> &Arc<MmCore> {
        &self.core
    }

    /// Returns the process id.
    pub fn pid(&self) -> Pid {
        self.core.pid
    }

    /// Returns the page tables.
    pub fn mm(&self) -> &Arc<Mm> {
        &self.core.mm
    }

    /// Returns the RSS counters.
    pub fn rss(&self) -> Rss {
        self.core.rss()
    }

    /// Returns the current program break.
    pub fn brk_value(&self) -> VirtAddr {
        VirtAddr(self.state.read_nocpu().brk)
    }

    /// Returns the number of VMAs (`map_count`).
    pub fn map_count(&self) -> usize {
        self.state.read_nocpu().vmas.len()
    }

    /// Returns `mmap_base`.
    pub fn mmap_base(&self) -> VirtAddr {
        VirtAddr(self.state.read_nocpu().mmap_base)
    }

    /// Returns every VMA as `(start, end, vm_flags)`, in order (a `/proc` reader's view).
    pub fn vmas(&self) -> Vec<(VirtAddr, VirtAddr, VmFlags)> {
        self.state
            .read_nocpu()
            .vmas
            .iter()
            .map(|v| (VirtAddr(v.start), VirtAddr(v.end), v.flags))
            .collect()
    }

    // ----- editing the tree -----

    /// Inserts `vma`, which has its slab objects, writes them and links it into rmap.
    pub(crate) fn vma_insert(&self, st: &mut MmState, vma: Vma) {
        self.sys.write_vma(&vma, st.mm_addr());
        self.sys.link_vma(&self.core, &vma);
        st.vmas.insert(vma);
    }

    /// Removes the VMA starting at `start` and unlinks it from rmap; the caller closes it.
    pub(crate) fn vma_detach(&self, st: &mut MmState, start: u64) -> Vma {
        let v = st
            .vmas
            .remove(start)
            .expect("detaching a VMA that is in the tree");
        self.sys.unlink_vma(&v);
        v
    }

    /// Frees a detached (or never inserted) VMA on `cpu`: its slab objects, its references to
    /// its anon_vmas and to its file (after every translation it made is flushed;
    /// `remove_vma`).
    pub(crate) fn close_vma(&self, cpu: CpuId, mut vma: Vma) {
        self.sys.release_vma(cpu, &mut vma);
        if let Some(f) = &vma.file {
            f.close(cpu);
        }
    }

    /// Replaces the VMAs starting at each of `old` with `new`, linking the new ones into
    /// rmap before unlinking the old ones, so a walk never misses a mapping.
    ///
    /// A new VMA without slab objects takes those of an old one with the same anon chain (as
    /// Linux adjusts a VMA in place when it expands, shrinks or merges it); the objects of
    /// old VMAs nobody took are freed. The caller arranges that every new VMA either brings
    /// objects or has such an old one.
    pub(crate) fn vma_replace(&self, st: &mut MmState, cpu: CpuId, old: &[u64], mut new: Vec<Vma>) {
        for v in &new {
            self.sys.link_vma(&self.core, v);
        }
        let mut olds: Vec<Vma> = old
            .iter()
            .map(|s| {
                st.vmas
                    .remove(*s)
                    .expect("replacing a VMA that is in the tree")
            })
            .collect();
        let mm = st.mm_addr();
        for v in new.iter_mut() {
            if v.objs.is_none() && self.sys.slab.is_some() {
                let donor = olds
                    .iter_mut()
                    .find(|o| o.objs.is_some() && o.same_chain(v))
                    .expect("a new VMA without objects replaces one with its anon chain");
                v.objs = donor.objs.take();
            }
            self.sys.write_vma(v, mm);
        }
        for v in new {
            st.vmas.insert(v);
        }
        for v in olds {
            self.sys.unlink_vma(&v);
            self.close_vma(cpu, v);
        }
    }

    /// Splits the VMA that contains `addr` strictly inside it into two (`split_vma`).
    /// Fails with ENOMEM at `max_map_count` or without memory for the new VMA.
    pub(crate) fn split_at(&self, st: &mut MmState, cpu: CpuId, addr: u64) -> Result<(), Errno> {
        if st.vmas.lookup(addr).is_some_and(|v| v.start != addr)
            && st.vmas.len() as u64 >= self.sys.cfg.max_map_count
        {
            return Err(Errno::Enomem);
        }
        self.split_at_unchecked(st, cpu, addr)
    }

    /// Splits like [`AddressSpace::split_at`] without the `max_map_count` check
    /// (`__split_vma`): munmap checks the count itself, since its splits may not add a VMA.
    /// The lower part keeps the VMA's slab objects; the upper part gets new ones, and
    /// without memory for them nothing changes (ENOMEM).
    pub(crate) fn split_at_unchecked(
        &self,
        st: &mut MmState,
        cpu: CpuId,
        addr: u64,
    ) -> Result<(), Errno> {
        let Some(v) = st.vmas.lookup(addr) else {
            return Ok(());
        };
        if v.start == addr {
            return Ok(());
        }
        let objs = self.sys.alloc_vma_objs(cpu, v.anon_chain().count())?;
        let lo = v.derive(self.sys.new_id(), v.start, addr);
        let mut hi = v.derive(self.sys.new_id(), addr, v.end);
        hi.objs = objs;
        let old = v.start;
        self.vma_replace(st, cpu, &[old], vec![lo, hi]);
        Ok(())
    }

    /// Splits at `start` and at `end` ([`AddressSpace::split_at`]); if the second split
    /// fails, merges the first back, so a failure leaves the tree as it was.
    pub(crate) fn split_range(
        &self,
        st: &mut MmState,
        cpu: CpuId,
        start: u64,
        end: u64,
    ) -> Result<(), Errno> {
        let before = st.vmas.len();
        self.split_at(st, cpu, start)?;
        if let Err(e) = self.split_at(st, cpu, end) {
            self.unsplit(st, cpu, start, before);
            return Err(e);
        }
        Ok(())
    }

    /// Merges the two VMAs around `addr` back if a split there made the tree grow from
    /// `before` VMAs (merging needs no memory). Only the split's own pair is merged: the
    /// heap's first VMA, which `brk` never merges backwards, stays as it is.
    pub(crate) fn unsplit(&self, st: &mut MmState, cpu: CpuId, addr: u64, before: usize) {
        if st.vmas.len() > before {
            self.merge_range(st, cpu, addr, addr);
        }
    }

    /// Merges every mergeable pair of adjacent VMAs from the one ending at or below `lo` to
    /// the one starting at `hi` (`vma_merge` after a change of `lo..hi`).
    pub(crate) fn merge_range(&self, st: &mut MmState, cpu: CpuId, lo: u64, hi: u64) {
        let mut cur = st
            .vmas
            .prev(lo)
            .or_else(|| st.vmas.find(lo))
            .map(|v| v.start);
        while let Some(s) = cur {
            let Some(v) = st.vmas.lookup(s) else { break };
            if v.start > hi {
                break;
            }
            let next = st.vmas.next_from(v.end);
            match next {
                Some(n) if n.start == v.end && v.can_merge_with(n) => {
                    let mut merged = v.derive(self.sys.new_id(), v.start, n.end);
                    if merged.anon_vma.is_none() {
                        merged.anon_vma = n.anon_vma.clone();
                    }
                    let old = [v.start, n.start];
                    self.vma_replace(st, cpu, &old, vec![merged]);
                    cur = Some(s);
                }
                Some(n) => cur = Some(n.start),
                None => cur = None,
            }
        }
    }

    /// Gives the VMA containing `addr` its own anon_vma (`anon_vma_prepare`), with the
    /// `anon_vma_chain` that links them; takes the mmap lock for writing, so no reader ever
    /// sees the tree change. ENOMEM, with nothing changed, if the slab is out of memory.
    pub(crate) fn anon_vma_prepare(&self, ctx: &mut CpuCtx, addr: u64) -> Result<(), Errno> {
        let cpu = ctx.id();
        let mut st = self.state.write(ctx.mmu());
        let Some(v) = st.vmas.lookup(addr) else {
            return Ok(());
        };
        if v.anon_vma.is_some() {
            return Ok(());
        }
        let start = v.start;
        let list = self.sys.new_anon_vma(cpu, None)?;
        let avc = match self.sys.alloc_avc(cpu) {
            Ok(avc) => avc,
            Err(e) => {
                self.sys.put_anon_vma(cpu, list);
                return Err(e);
            }
        };
        let mm = st.mm_addr();
        let v = st.vmas.get_mut(start).expect("found above");
        v.anon_vma = Some(list.clone());
        if let (Some(objs), Some(avc)) = (v.objs.as_mut(), avc) {
            objs.avcs.push(avc);
        }
        let v = st.vmas.lookup(start).expect("found above");
        self.sys.write_vma(v, mm);
        self.sys.link_anon(&self.core, v, &list);
        Ok(())
    }

    // ----- zapping -----

    /// The `on_pte` of a zap (`zap_pte_range`'s body): uncounts the entry, drops the
    /// mapping's references, and returns the frame to free after the flush when this was its
    /// last reference. A page others still reference keeps this mapping's reference until
    /// after the flush ([`ZapAcc::deferred`]).
    pub(crate) fn zap_one(sys: &VmSys, cpu: CpuId, pte: Pte, acc: &mut ZapAcc) -> Option<Frame> {
        if let Some(e) = pte.swap_entry() {
            sys.hooks.swap.swap_free(cpu, e);
            acc.rss[RssKind::Swap as usize] -= 1;
            return None;
        }
        if !pte.has_frame() || pte.pfn() == sys.zero_pfn {
            return None;
        }
        let pfn = pte.pfn();
        let page = sys.mem.page(pfn);
        let flags = page.flags();
        let kind = rss_kind(flags);
        acc.rss[kind as usize] -= 1;
        if kind != RssKind::Anon && pte.is_dirty() {
            page.set(PageFlags::DIRTY);
        }
        page.add_mapcount(-1);
        // References are taken only under the page-table lock this zap holds, so a count of 1
        // cannot grow: this mapping holds the last one.
        if page.refcount() == 1 {
            let last = page.put_testzero();
            debug_assert!(last);
            sys.hooks.lru.remove(cpu, pfn);
            page.set_flags(PageFlags::empty());
            page.set_mapping(0);
            Some(Frame::from_raw(pfn, Order::ZERO))
        } else {
            acc.deferred.push(pfn);
            None
        }
    }

    /// Clears `start..end` into `tlb` under the page-table lock, and unhooks the empty tables
    /// of `floor..ceiling` (`unmap_vmas` + `free_pgtables`).
    pub(crate) fn zap(
        &self,
        ctx: &mut CpuCtx,
        tlb: &mut MmuGather<'_>,
        start: u64,
        end: u64,
        tables: Option<(u64, u64)>,
        acc: &mut ZapAcc,
    ) {
        self.core.update_hiwater_rss();
        let cpu = ctx.id();
        let sys = &*self.sys;
        let _ptl = lock_spin(ctx.mmu(), &self.core.ptl);
        self.core
            .mm
            .zap_range(ctx.mmu(), VirtAddr(start), VirtAddr(end), tlb, |_, pte| {
                Self::zap_one(sys, cpu, pte, acc)
            })
            .expect("zap of a page-aligned user range");
        if let Some((floor, ceiling)) = tables {
            self.core
                .mm
                .free_pgtables(ctx.mmu(), VirtAddr(floor), VirtAddr(ceiling), tlb)
                .expect("page-aligned user range");
        }
        for (k, d) in acc.rss.iter_mut().enumerate() {
            if *d != 0 {
                self.core.rss[k].fetch_add(*d, Ordering::Relaxed);
                *d = 0;
            }
        }
    }

    /// Flushes and frees what `tlb` gathered, then drops the deferred references
    /// (`tlb_finish_mmu`).
    pub(crate) fn finish_zap(&self, ctx: &mut CpuCtx, tlb: MmuGather<'_>, acc: ZapAcc) {
        tlb.finish(ctx.mmu());
        let cpu = ctx.id();
        for pfn in acc.deferred {
            self.sys.put_page(cpu, pfn);
        }
    }

    /// Zaps `start..end` and frees empty tables of `floor..ceiling`, then flushes
    /// (`unmap_region`).
    pub(crate) fn unmap_region(
        &self,
        ctx: &mut CpuCtx,
        start: u64,
        end: u64,
        tables: Option<(u64, u64)>,
    ) {
        let mut tlb = MmuGather::new(&self.core.mm);
        let mut acc = ZapAcc::default();
        self.zap(ctx, &mut tlb, start, end, tables, &mut acc);
        self.finish_zap(ctx, tlb, acc);
    }

    /// Tears the address space down at exit (`exit_mmap`): zaps every mapping, frees the
    /// page tables below the root and the swap entries, unlinks and closes every VMA, and
    /// returns the commitment. The root table goes when the last `Arc` of the page tables is
    /// dropped (the CPUs that have it loaded hold one).
    pub fn exit(&self, ctx: &mut CpuCtx) {
        let mut st = self.state.write(ctx.mmu());
        if st.exited {
            return;
        }
        st.exited = true;
        st.update_hiwater_vm();
        self.core.update_hiwater_rss();
        let cpu = ctx.id();
        let sys = &*self.sys;
        let mut acc = ZapAcc::default();
        {
            let _ptl = lock_spin(ctx.mmu(), &self.core.ptl);
            self.core
                .mm
                .exit_mmap(ctx.mmu(), |_, pte| Self::zap_one(sys, cpu, pte, &mut acc));
        }
        for (k, d) in acc.rss.iter().enumerate() {
            self.core.rss[k].fetch_add(*d, Ordering::Relaxed);
        }
        for pfn in std::mem::take(&mut acc.deferred) {
            sys.put_page(cpu, pfn);
        }
        for v in st.vmas.take_all() {
            sys.unlink_vma(&v);
            if v.flags.contains(VmFlags::ACCOUNT) {
                sys.vm_unacct_memory(v.pages());
            }
            self.close_vma(cpu, v);
        }
        // mmput's last user is gone; nothing else holds the mm here (mmdrop).
        let mm_obj = st.mm_obj.take();
        sys.free_mm_obj(cpu, mm_obj);
        for c in [
            &st.vm.total,
            &st.vm.locked,
            &st.vm.data,
            &st.vm.exec,
            &st.vm.stack,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Returns true once [`AddressSpace::exit`] ran.
    pub fn has_exited(&self) -> bool {
        self.state.read_nocpu().exited
    }

    /// Checks the address space: the tree is ordered and non-overlapping, no two adjacent
    /// VMAs could be merged, every entry in the page tables lies inside a VMA and is counted,
    /// and the VM counters match the VMAs.
    pub fn check_invariants(&self, ctx: &mut CpuCtx) -> Result<(), String> {
        let st = self.state.read(ctx.mmu());
        st.vmas.check()?;
        self.sys
            .check_mm_obj(st.mm_obj.as_ref(), self.core.pid, st.exited)?;
        for v in st.vmas.iter() {
            self.sys.check_vma_objs(v, st.mm_addr())?;
        }
        let mut prev: Option<&Vma> = None;
        let (mut total, mut locked) = (0, 0);
        for v in st.vmas.iter() {
            if let Some(p) = prev {
                // The heap starts a VMA of its own (do_brk_flags never merges backwards).
                if p.can_merge_with(v) && v.start != st.start_brk {
                    return Err(format!("{p:?} and {v:?} should have been merged"));
                }
            }
            total += v.pages();
            if v.flags.contains(VmFlags::LOCKED) {
                locked += v.pages();
            }
            prev = Some(v);
        }
        if !st.exited && (total != st.total_vm() || locked != st.locked_vm()) {
            return Err(format!(
                "total_vm {} locked_vm {}, VMAs add up to {total} and {locked}",
                st.total_vm(),
                st.locked_vm()
            ));
        }
        let _ptl = lock_spin(ctx.mmu(), &self.core.ptl);
        let mut rss = [0i64; 4];
        let mut bad = None;
        crate::pt::for_each_pte(
            &self.sys.mem,
            self.core.mm.root(),
            self.sys.levels,
            0,
            crate::layout::TASK_SIZE,
            &mut |va, pte| {
                let Some(v) = st.vmas.lookup(va) else {
                    bad.get_or_insert(format!("{pte:?} at {va:#x} is outside every VMA"));
                    return;
                };
                if pte.swap_entry().is_some() {
                    rss[RssKind::Swap as usize] += 1;
                } else if pte.has_frame() && pte.pfn() != self.sys.zero_pfn {
                    let page = self.sys.mem.page(pte.pfn());
                    let kind = rss_kind(page.flags());
                    rss[kind as usize] += 1;
                    if page.mapcount() < 1 || page.refcount() < page.mapcount() {
                        bad.get_or_insert(format!(
                            "page {:?} at {va:#x} has mapcount {} refcount {}",
                            pte.pfn(),
                            page.mapcount(),
                            page.refcount()
                        ));
                    }
                    if kind == RssKind::Anon {
                        let idx = v.linear_index(va);
                        let in_chain = v.anon_chain().any(|a| a.id == page.mapping());
                        if page.index() != idx || !in_chain {
                            bad.get_or_insert(format!(
                                "anon page {:?} at {va:#x}: index {:#x} (VMA says {idx:#x}), \
                                 anon_vma {} not in {v:?}'s chain",
                                pte.pfn(),
                                page.index(),
                                page.mapping()
                            ));
                        }
                    }
                }
            },
        );
        if let Some(b) = bad {
            return Err(b);
        }
        let counted = self.core.rss();
        let want = Rss {
            file: rss[0] as u64,
            anon: rss[1] as u64,
            swap: rss[2] as u64,
            shmem: rss[3] as u64,
        };
        if counted != want {
            return Err(format!(
                "RSS counters {counted:?}, page tables hold {want:?}"
            ));
        }
        Ok(())
    }
}

impl MmState {
    /// A copy for a fork child (`dup_mm`) with its own `mm_struct`: layout, limits and VM
    /// counters; no locked memory, no `mlockall` flags, no VMAs yet.
    pub(crate) fn fork_copy(&self, mm_obj: Option<KObj<MmStruct>>) -> MmState {
        MmState {
            vmas: VmaTree::default(),
            start_code: self.start_code,
            end_code: self.end_code,
            start_data: self.start_data,
            end_data: self.end_data,
            start_brk: self.start_brk,
            brk: self.brk,
            start_stack: self.start_stack,
            mmap_base: self.mmap_base,
            rlimits: self.rlimits,
            vm: Arc::new(self.vm.copy()),
            def_flags: VmFlags::empty(),
            exited: false,
            mm_obj,
        }
    }
}

/// Which RSS counter a mapped page counts in.
#[inline]
pub(crate) fn rss_kind(flags: PageFlags) -> RssKind {
    if flags.contains(PageFlags::ANON) {
        RssKind::Anon
    } else if flags.contains(PageFlags::SWAPBACKED) {
        RssKind::Shmem
    } else {
        RssKind::File
    }
}

impl Drop for AddressSpace {
    /// An address space dropped without [`AddressSpace::exit`] is torn down from a daemon
    /// context freeing to CPU 0's lists, if no CPU has it loaded; otherwise its frames and
    /// its slab objects leak.
    fn drop(&mut self) {
        if self.state.try_read().is_none_or(|st| st.exited) {
            return;
        }
        // A CPU that still has the page tables loaded would have to acknowledge the teardown's
        // shootdown, and it may be the thread running this drop: leave the frames then.
        if !self.core.mm.cpumask_cpus().is_empty() {
            if let Some(mut st) = self.state.try_write() {
                // The VMAs stay linked into rmap; their objects leak with them.
                std::mem::forget(st.vmas.take_all());
            }
            return;
        }
        let mut ctx = CpuCtx::new(mm_mmu::Mmu::daemon(&self.sys.mmu, CpuId(0)));
        self.exit(&mut ctx);
    }
}
