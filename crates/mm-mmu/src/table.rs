//! Page-table editing: map, lookup, zap, change protection, move (mremap), batched unmap
//! (reclaim) and freeing empty tables. Every edit runs under the address space's page-table
//! lock; the hardware walker reads without it, so every entry changes with one atomic store or
//! `cmpxchg` and a present entry is cleared with a get-and-clear that keeps a dirty bit the
//! walker set concurrently.

use crate::flush::FLUSH_ALL;
use crate::pte::{entry_span, table_index, Pte, PteFlags, PTRS_PER_TABLE};
use crate::{FlushCompleted, MapError, Mm, MmuCpu, MmuGather, Prot, TlbBatch};
use mm_buddy::Frame;
use mm_phys::FrameBytes;
use mm_sync::sync::atomic::Ordering;
use mm_sync::untracked;
use mm_types::{Order, Pfn, VirtAddr, PAGE_SHIFT};

/// `TLB_FLUSH_BATCH_FLUSHED_SHIFT`.
const FLUSHED_SHIFT: u32 = 16;
/// `TLB_FLUSH_BATCH_PENDING_MASK`.
const PENDING_MASK: u32 = (1 << FLUSHED_SHIFT) - 1;
/// `TLB_FLUSH_BATCH_PENDING_LARGE`.
const PENDING_LARGE: u32 = PENDING_MASK / 2;

/// Clears the entry at `off` atomically and returns what it held (`ptep_get_and_clear`).
fn get_and_clear(f: FrameBytes<'_>, off: usize) -> Pte {
    loop {
        let old = f.read_u64(off);
        if old == 0 || f.cmpxchg_u64(off, old, 0) == old {
            return Pte(old);
        }
    }
}

/// Replaces the entry at `off` with `g(old)` atomically; returns `(old, new)`.
fn update(f: FrameBytes<'_>, off: usize, mut g: impl FnMut(Pte) -> Pte) -> (Pte, Pte) {
    loop {
        let old = Pte(f.read_u64(off));
        let new = g(old);
        if new == old || f.cmpxchg_u64(off, old.0, new.0) == old.0 {
            return (old, new);
        }
    }
}

impl Mm {
    fn table(&self, pfn: Pfn) -> FrameBytes<'_> {
        self.mmu.mem.frame(pfn).expect("page tables live in RAM")
    }

    /// Finds the PTE slot of `va` (table, byte offset) without allocating. PTL held.
    fn find_slot(&self, va: u64) -> Option<(Pfn, usize)> {
        let mut table = self.root();
        for level in (2..=self.levels).rev() {
            let e = Pte(self.table(table).read_u64(table_index(va, level) * 8));
            if !e.is_present() {
                return None;
            }
            table = e.pfn();
        }
        Some((table, table_index(va, 1) * 8))
    }

    /// Finds the PTE slot of `va`, hooking in tables from `spares` where a level is missing.
    /// PTL held. Fails with the number of tables still needed when `spares` runs out.
    fn alloc_slot(&self, va: u64, spares: &mut Vec<Frame>) -> Result<(Pfn, usize), usize> {
        let mut table = self.root();
        for level in (2..=self.levels).rev() {
            let f = self.table(table);
            let off = table_index(va, level) * 8;
            let e = Pte(f.read_u64(off));
            table = if e.is_present() {
                e.pfn()
            } else {
                let Some(t) = spares.pop() else {
                    return Err(level as usize - 1);
                };
                let pfn = t.into_raw().0;
                // The table was zeroed at allocation; publishing it is one store.
                f.write_u64(off, Pte::new(pfn, PteFlags::TABLE).0);
                self.nr_tables.fetch_add(1, untracked::Ordering::Relaxed);
                pfn
            };
        }
        Ok((table, table_index(va, 1) * 8))
    }

    /// Runs `op` on the PTE slot of `va` under the page-table lock, allocating missing tables
    /// first. Tables are allocated with the lock dropped (the allocator may reclaim); spares a
    /// racing CPU made unnecessary were never reachable and are freed directly.
    fn with_slot<R>(
        &self,
        cpu: &mut MmuCpu,
        va: u64,
        op: impl FnOnce(&mut MmuCpu, FrameBytes<'_>, usize) -> R,
    ) -> Result<R, MapError> {
        let mut op = Some(op);
        let mut spares = Vec::new();
        let r = loop {
            let ptl = cpu.lock_ptl(self);
            match self.alloc_slot(va, &mut spares) {
                Ok((t, off)) => {
                    let op = op.take().expect("runs once");
                    let r = op(cpu, self.table(t), off);
                    drop(ptl);
                    break r;
                }
                Err(missing) => {
                    drop(ptl);
                    for _ in 0..missing {
                        match self.mmu.alloc_table(cpu.id()) {
                            Ok(f) => spares.push(f),
                            Err(e) => {
                                self.mmu.free_frames(cpu.id(), spares);
                                return Err(e.into());
                            }
                        }
                    }
                }
            }
        };
        self.mmu.free_frames(cpu.id(), spares);
        Ok(r)
    }

    /// Calls `f(va, table, offset)` for every PTE slot in `start..end` whose PTE table exists.
    /// PTL held.
    fn for_each_pte(&self, start: u64, end: u64, f: &mut dyn FnMut(u64, FrameBytes<'_>, usize)) {
        self.visit(self.root(), self.levels, 0, start, end, f);
    }

    fn visit(
        &self,
        table: Pfn,
        level: u32,
        base: u64,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, FrameBytes<'_>, usize),
    ) {
        let span = entry_span(level);
        let (lo, hi) = (
            start.max(base),
            end.min(base + span * PTRS_PER_TABLE as u64),
        );
        if lo >= hi {
            return;
        }
        let frame = self.table(table);
        for idx in ((lo - base) / span) as usize..=((hi - 1 - base) / span) as usize {
            let ebase = base + idx as u64 * span;
            if level == 1 {
                f(ebase, frame, idx * 8);
            } else {
                let e = Pte(frame.read_u64(idx * 8));
                if e.is_present() {
                    self.visit(e.pfn(), level - 1, ebase, start, end, f);
                }
            }
        }
    }

    /// Maps the page at `va` to `pfn` with `prot` (`set_pte_at` from the fault handler),
    /// allocating missing tables. The slot may hold nothing or a swap entry, which is returned;
    /// an entry that holds a frame is left alone ([`MapError::Exists`]). Filling an entry needs
    /// no flush: a TLB never caches a non-present entry.
    pub fn map(
        &self,
        cpu: &mut MmuCpu,
        va: VirtAddr,
        pfn: Pfn,
        prot: Prot,
    ) -> Result<Pte, MapError> {
        let v = self.check_page(va)?;
        if !self.mmu.mem.pfn_valid(pfn) {
            return Err(MapError::BadPfn(pfn));
        }
        let new = Pte::from_prot(pfn, prot);
        self.with_slot(cpu, v, |_, f, off| {
            let old = Pte(f.read_u64(off));
            if old.has_frame() {
                return Err(MapError::Exists { va, old });
            }
            // Non-present: the walker never writes it, a plain store publishes the entry.
            f.write_u64(off, new.0);
            Ok(old)
        })?
    }

    /// Installs a swap entry at `va` in an empty slot (`set_pte_at(swp_entry_to_pte)`),
    /// allocating missing tables.
    pub fn set_swap_pte(
        &self,
        cpu: &mut MmuCpu,
        va: VirtAddr,
        entry: mm_types::SwapEntry,
    ) -> Result<(), MapError> {
        let v = self.check_page(va)?;
        let new = Pte::swap(entry);
        self.with_slot(cpu, v, |_, f, off| {
            let old = Pte(f.read_u64(off));
            if !old.is_none() {
                return Err(MapError::Exists { va, old });
            }
            f.write_u64(off, new.0);
            Ok(())
        })?
    }

    /// Returns the entry for `va` (`Pte::NONE` where no table exists), under the page-table
    /// lock.
    pub fn lookup(&self, cpu: &mut MmuCpu, va: VirtAddr) -> Result<Pte, MapError> {
        let v = self.check_page(va.page_align_down())?;
        let _ptl = cpu.lock_ptl(self);
        Ok(self
            .find_slot(v)
            .map_or(Pte::NONE, |(t, off)| Pte(self.table(t).read_u64(off))))
    }

    /// Clears every entry in `start..end` (`zap_pte_range`): records each cleared address in
    /// `tlb` and calls `on_pte(va, old)` for each non-empty entry under the page-table lock;
    /// a frame `on_pte` returns is freed by `tlb` after the flush that covers it. Returns the
    /// number of entries cleared.
    pub fn zap_range(
        &self,
        cpu: &mut MmuCpu,
        start: VirtAddr,
        end: VirtAddr,
        tlb: &mut MmuGather<'_>,
        mut on_pte: impl FnMut(VirtAddr, Pte) -> Option<Frame>,
    ) -> Result<usize, MapError> {
        let (s, e) = self.check_range(start, end)?;
        assert_eq!(tlb.mm().ctx_id(), self.ctx_id(), "gather of another mm");
        let mut n = 0;
        {
            let _ptl = cpu.lock_ptl(self);
            self.flush_tlb_batched_pending(cpu);
            self.for_each_pte(s, e, &mut |va, f, off| {
                let old = get_and_clear(f, off);
                if old.is_none() {
                    return;
                }
                n += 1;
                tlb.track(va >> PAGE_SHIFT);
                if let Some(frame) = on_pte(VirtAddr(va), old) {
                    tlb.remove_page(frame);
                }
            });
        }
        if tlb.is_full() {
            tlb.flush_mmu(cpu);
        }
        Ok(n)
    }

    /// Sets the protection of every entry that holds a frame in `start..end` to `prot`
    /// (`change_protection`, mprotect), keeping frames and accessed/dirty bits, and flushes the
    /// range before returning if any entry changed. Returns the number changed.
    pub fn change_protection(
        &self,
        cpu: &mut MmuCpu,
        start: VirtAddr,
        end: VirtAddr,
        prot: Prot,
    ) -> Result<usize, MapError> {
        let (s, e) = self.check_range(start, end)?;
        let mut pages = 0;
        {
            let _ptl = cpu.lock_ptl(self);
            self.flush_tlb_batched_pending(cpu);
            self.for_each_pte(s, e, &mut |_, f, off| {
                let (old, new) = update(f, off, |old| {
                    if old.has_frame() {
                        old.with_prot(prot)
                    } else {
                        old
                    }
                });
                if old != new {
                    pages += 1;
                }
            });
        }
        if pages > 0 {
            cpu.flush_tlb_mm_range(self, s >> PAGE_SHIFT, e >> PAGE_SHIFT, false);
        }
        Ok(pages)
    }

    /// Moves the entry at `from` to the empty slot at `to` (mremap's `move_ptes`) and returns
    /// it (`Pte::NONE` if there was nothing to move). A present entry's old translation is flushed *before* the page-table lock is
    /// dropped (eb66ae030829): after the lock is released, rmap finds the page only at `to`,
    /// and truncate may free it once it has flushed `to`, so no CPU may still reach it
    /// through `from`.
    pub fn move_pte(
        &self,
        cpu: &mut MmuCpu,
        from: VirtAddr,
        to: VirtAddr,
    ) -> Result<Pte, MapError> {
        let src = self.check_page(from)?;
        let dst = self.check_page(to)?;
        let (moved, flush_after_unlock) = self.with_slot(cpu, dst, |cpu, df, doff| {
            self.flush_tlb_batched_pending(cpu);
            let Some((st, soff)) = self.find_slot(src) else {
                return Ok((Pte::NONE, false));
            };
            let sf = self.table(st);
            if Pte(sf.read_u64(soff)).is_none() {
                return Ok((Pte::NONE, false));
            }
            let existing = Pte(df.read_u64(doff));
            if !existing.is_none() {
                return Err(MapError::Exists {
                    va: to,
                    old: existing,
                });
            }
            let old = get_and_clear(sf, soff);
            df.write_u64(doff, old.0);
            let need_flush = old.is_present();
            #[cfg(test)]
            if self.regress.mremap_flush_after_unlock {
                return Ok((old, need_flush));
            }
            if need_flush {
                cpu.flush_tlb_mm_range(self, src >> PAGE_SHIFT, (src >> PAGE_SHIFT) + 1, false);
            }
            Ok((old, false))
        })??;
        if flush_after_unlock {
            cpu.flush_tlb_mm_range(self, src >> PAGE_SHIFT, (src >> PAGE_SHIFT) + 1, false);
        }
        Ok(moved)
    }

    /// Replaces a present entry at `va` with `replacement` (empty or a swap entry) for reclaim,
    /// deferring the TLB flush to `batch` (`try_to_unmap_one` with `TTU_BATCH_FLUSH`): the frame
    /// must not be freed or written out until `batch` is flushed. Returns the old entry; a
    /// non-present entry is left alone.
    ///
    /// # Panics
    /// If `replacement` holds a frame.
    pub fn try_to_unmap(
        &self,
        cpu: &mut MmuCpu,
        va: VirtAddr,
        replacement: Pte,
        batch: &mut TlbBatch,
    ) -> Result<Pte, MapError> {
        assert!(
            !replacement.has_frame(),
            "reclaim replaces a PTE with a non-present one"
        );
        let v = self.check_page(va)?;
        let _ptl = cpu.lock_ptl(self);
        let Some((t, off)) = self.find_slot(v) else {
            return Ok(Pte::NONE);
        };
        let (old, _) = update(self.table(t), off, |old| {
            if old.is_present() {
                replacement
            } else {
                old
            }
        });
        if old.is_present() {
            batch.add_pending(self);
            self.set_tlb_flush_batched_pending();
        }
        Ok(old)
    }

    /// `set_tlb_ubc_flush_pending`'s part on the mm: counts one more pending batched flush.
    /// PTL held, so it is ordered after the PTE change it records.
    fn set_tlb_flush_batched_pending(&self) {
        let mut batch = self.tlb_flush_batched.load(Ordering::Relaxed);
        loop {
            if batch & PENDING_MASK > PENDING_LARGE {
                // Keep `pending` from wrapping onto `flushed`: restart at pending 1, flushed 0.
                match self.tlb_flush_batched.compare_exchange(
                    batch,
                    1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return,
                    Err(b) => batch = b,
                }
            } else {
                self.tlb_flush_batched.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }

    /// `flush_tlb_batched_pending` (3ea277194daa): if reclaim cleared PTEs of this mm and has
    /// not flushed yet, flush the whole mm now. mprotect, munmap and mremap call it under the
    /// page-table lock before relying on what they see: an entry reclaim cleared looks empty,
    /// so they would skip its flush while a CPU still caches the old, writable translation.
    pub(crate) fn flush_tlb_batched_pending(&self, cpu: &mut MmuCpu) {
        #[cfg(test)]
        if self.regress.skip_batched_pending_flush {
            return;
        }
        let batch = self.tlb_flush_batched.load(Ordering::Acquire);
        let pending = batch & PENDING_MASK;
        let flushed = batch >> FLUSHED_SHIFT;
        if pending != flushed {
            cpu.flush_tlb_mm_range(self, 0, FLUSH_ALL, false);
            // A batch that became pending meanwhile keeps the word as is, so it is not lost.
            let _ = self.tlb_flush_batched.compare_exchange(
                batch,
                pending | (pending << FLUSHED_SHIFT),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// Unhooks every page-table page below the root that is empty and whose whole span lies in
    /// `start..end` (`free_pgtables`), handing it to `tlb`, which frees it after a flush that
    /// reaches lazy-TLB CPUs too. Returns the number of tables unhooked.
    pub fn free_pgtables(
        &self,
        cpu: &mut MmuCpu,
        start: VirtAddr,
        end: VirtAddr,
        tlb: &mut MmuGather<'_>,
    ) -> Result<usize, MapError> {
        let (s, e) = self.check_range(start, end)?;
        assert_eq!(tlb.mm().ctx_id(), self.ctx_id(), "gather of another mm");
        let _ptl = cpu.lock_ptl(self);
        Ok(self.free_tables_in(self.root(), self.levels, 0, s, e, tlb))
    }

    fn free_tables_in(
        &self,
        table: Pfn,
        level: u32,
        base: u64,
        start: u64,
        end: u64,
        tlb: &mut MmuGather<'_>,
    ) -> usize {
        if level == 1 {
            return 0;
        }
        let span = entry_span(level);
        let (lo, hi) = (
            start.max(base),
            end.min(base + span * PTRS_PER_TABLE as u64),
        );
        if lo >= hi {
            return 0;
        }
        let frame = self.table(table);
        let mut n = 0;
        for idx in ((lo - base) / span) as usize..=((hi - 1 - base) / span) as usize {
            let off = idx * 8;
            let e = Pte(frame.read_u64(off));
            if !e.is_present() {
                continue;
            }
            let cbase = base + idx as u64 * span;
            n += self.free_tables_in(e.pfn(), level - 1, cbase, start, end, tlb);
            let child = self.table(e.pfn());
            let empty = (0..PTRS_PER_TABLE).all(|i| child.read_u64(i * 8) == 0);
            if cbase >= start && cbase + span <= end && empty {
                get_and_clear(frame, off);
                self.nr_tables.fetch_sub(1, untracked::Ordering::Relaxed);
                tlb.track_table(cbase >> PAGE_SHIFT, Frame::from_raw(e.pfn(), Order::ZERO));
                n += 1;
            }
        }
        n
    }

    /// Flushes `start..end` of this address space on every CPU that may cache it
    /// (`flush_tlb_range`) and returns once all have acknowledged. More than
    /// `flush_ceiling` pages flush the whole address space instead.
    pub fn flush_tlb_range(
        &self,
        cpu: &mut MmuCpu,
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<FlushCompleted, MapError> {
        let (s, e) = self.check_range(start, end)?;
        Ok(cpu.flush_tlb_mm_range(self, s >> PAGE_SHIFT, e >> PAGE_SHIFT, false))
    }

    /// Flushes the whole address space on every CPU that may cache it (`flush_tlb_mm`).
    pub fn flush_tlb_mm(&self, cpu: &mut MmuCpu) -> FlushCompleted {
        cpu.flush_tlb_mm_range(self, 0, FLUSH_ALL, false)
    }

    /// Tears the address space down at exit (`exit_mmap`): zaps every entry, calling `on_pte`
    /// as [`Mm::zap_range`] does, unhooks every table below the root, and flushes the whole mm
    /// once, lazy CPUs included, before freeing. Returns the frames and tables freed.
    pub fn exit_mmap(
        &self,
        cpu: &mut MmuCpu,
        on_pte: impl FnMut(VirtAddr, Pte) -> Option<Frame>,
    ) -> usize {
        let mut tlb = MmuGather::new_fullmm(self);
        let (start, end) = (VirtAddr(0), VirtAddr(self.user_limit));
        self.zap_range(cpu, start, end, &mut tlb, on_pte)
            .expect("the user range is valid");
        self.free_pgtables(cpu, start, end, &mut tlb)
            .expect("the user range is valid");
        tlb.finish(cpu)
    }

    /// Checks the table tree: every hooked table is marked `PageTable` and the count matches.
    pub fn check_invariants(&self, cpu: &mut MmuCpu) -> Result<(), String> {
        let _ptl = cpu.lock_ptl(self);
        let mut tables = 0u64;
        let mut bad = None;
        self.count_tables(self.root(), self.levels, &mut tables, &mut bad);
        if let Some(pfn) = bad {
            return Err(format!("table {pfn:?} is not marked PageTable"));
        }
        let counted = self.nr_tables.load(untracked::Ordering::Relaxed);
        if tables != counted {
            return Err(format!("{tables} tables hooked, {counted} counted"));
        }
        Ok(())
    }

    fn count_tables(&self, table: Pfn, level: u32, n: &mut u64, bad: &mut Option<Pfn>) {
        *n += 1;
        if !self.mmu.mem.page(table).test(mm_phys::PageFlags::PGTABLE) {
            *bad = Some(table);
        }
        if level > 1 {
            let f = self.table(table);
            for idx in 0..PTRS_PER_TABLE {
                let e = Pte(f.read_u64(idx * 8));
                if e.is_present() {
                    self.count_tables(e.pfn(), level - 1, n, bad);
                }
            }
        }
    }
}
