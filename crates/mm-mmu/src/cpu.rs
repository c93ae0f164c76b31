//! One simulated CPU's MMU: its TLB, its ASID slots, the access API, the page walker, IPI
//! handling and the initiator side of a shootdown.
//!
//! # Locking protocol
//! An [`MmuCpu`] is owned by its CPU's thread and reached through `&mut`, so the TLB, the
//! ASID slots and the counters need no lock: a TLB hit is plain loads and stores on this
//! struct plus one relaxed load from simulated RAM. Other CPUs reach it only through its
//! mailbox ([`crate::Ipi`]) and its shared `is_lazy` flag.
//!
//! Whenever this CPU waits (for shootdown acknowledgements, for a page-table lock), it keeps
//! handling its own mailbox ([`MmuCpu::spin_until`]): that is what lets two CPUs that shoot each
//! other down both finish, and what lets a CPU holding a page-table lock wait for the ack of a
//! CPU that is spinning on the same lock.

use crate::error::{Access, AccessKind, Fault, FaultKind};
use crate::flush::{CpuMask, FlushCompleted, FlushInfo, FlushRequest, Ipi, FLUSH_ALL};
use crate::pte::{table_index, Pte, PteFlags};
use crate::tlb::{
    entry_perm, Tlb, TlbLevel, TlbStats, NO_HIT, PERM_MASK, PERM_R, PERM_U, PERM_W, PERM_X,
};
use crate::wait::{poll_idle, Doorbell};
use crate::{Mm, Mmu, TlbGeometry};
use mm_phys::{FrameBytes, PhysMem};
use mm_sync::channel::Receiver;
use mm_sync::sync::atomic::{fence, AtomicUsize, Ordering};
use mm_sync::sync::{Arc, SpinLockGuard};
use mm_types::{CpuId, Pfn, PhysAddr, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use std::fmt;

/// One ASID slot (`cpu_tlbstate.ctxs[asid]`): which address space the slot's PCID tags, and
/// the `tlb_gen` of that address space the TLB is known to be up to date with.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct AsidCtx {
    ctx_id: u64,
    tlb_gen: u64,
}

/// Idle rounds a shootdown waits for acknowledgements before a debug build reports a stall
/// (lower in unit tests, so the test of the report is quick).
const STALL_IDLES: u64 = if cfg!(test) { 1 << 20 } else { 1 << 24 };

/// A translation found by a walk.
struct Walked {
    pfn: Pfn,
    perm: u64,
}

/// One CPU's MMU state, owned by the CPU's thread.
pub struct MmuCpu {
    /// The TLB tag of the running address space (ASID + 1); 0 when none is usable, which no
    /// entry carries, so every lookup misses.
    pcid: u64,
    /// Rights an access needs, by [`AccessKind`], at the current privilege.
    need: [u64; 3],
    tlb: Tlb,
    /// Accesses so far: the LRU clock of both TLB levels. L1 hits are not counted on their own:
    /// they are the accesses that neither hit L2 nor walked.
    clock: u64,
    stats: TlbStats,
    mem: Arc<PhysMem>,
    levels: u32,
    user_limit: u64,
    cpu: CpuId,
    /// Index into the machine's CPUs; `None` for a daemon context.
    slot: Option<usize>,
    mmu: Arc<Mmu>,
    loaded: Option<Arc<Mm>>,
    asid: usize,
    ctxs: Box<[AsidCtx]>,
    next_asid: usize,
    lazy: bool,
    user: bool,
    mailbox: Option<Receiver<Ipi>>,
    doorbell: Arc<Doorbell>,
}

impl fmt::Debug for MmuCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmuCpu")
            .field("cpu", &self.cpu)
            .field("daemon", &self.slot.is_none())
            .field("loaded", &self.loaded.as_ref().map(|m| m.ctx_id()))
            .field("asid", &self.asid)
            .field("lazy", &self.lazy)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

const fn need_masks(user: bool) -> [u64; 3] {
    let u = if user { PERM_U } else { 0 };
    [PERM_R | u, PERM_R | PERM_W | u, PERM_R | PERM_X | u]
}

impl MmuCpu {
    pub(crate) fn new(mmu: &Arc<Mmu>, cpu: CpuId, mailbox: Option<Receiver<Ipi>>) -> MmuCpu {
        let cfg = &mmu.cfg;
        // A daemon never loads an address space: give it the smallest TLB.
        let tiny = TlbGeometry {
            entries: 1,
            ways: 1,
        };
        let (l1, l2) = match mailbox {
            Some(_) => (cfg.tlb.l1, cfg.tlb.l2),
            None => (tiny, tiny),
        };
        let nr_asids = if cfg.pcid {
            cfg.nr_dyn_asids as usize
        } else {
            1
        };
        MmuCpu {
            pcid: 0,
            need: need_masks(true),
            tlb: Tlb {
                l1: TlbLevel::new(l1),
                l2: TlbLevel::new(l2),
            },
            clock: 0,
            stats: TlbStats::default(),
            mem: mmu.mem.clone(),
            levels: cfg.paging.levels(),
            user_limit: cfg.paging.user_limit(),
            cpu,
            slot: mailbox.as_ref().map(|_| cpu.index()),
            mmu: mmu.clone(),
            loaded: None,
            asid: 0,
            ctxs: vec![AsidCtx::default(); nr_asids].into_boxed_slice(),
            next_asid: 0,
            lazy: false,
            user: true,
            doorbell: match mailbox {
                Some(_) => mmu.cpus[cpu.index()].doorbell.clone(),
                None => Arc::new(Doorbell::default()),
            },
            mailbox,
        }
    }

    /// Returns the CPU (for a daemon context: the CPU whose lists it frees to).
    #[inline]
    pub fn id(&self) -> CpuId {
        self.cpu
    }

    /// Returns the machine's MMU.
    pub fn mmu(&self) -> &Arc<Mmu> {
        &self.mmu
    }

    /// Returns the translation counters.
    pub fn stats(&self) -> TlbStats {
        TlbStats {
            l1_hits: self.clock - self.stats.l2_hits - self.stats.walks,
            ..self.stats
        }
    }

    /// Returns the average memory access time so far, in simulated cycles.
    pub fn amat(&self) -> f64 {
        self.stats().amat(&self.mmu.cfg.costs)
    }

    /// Returns the simulated cycles spent on accesses so far.
    pub fn cycles(&self) -> u64 {
        self.stats().cycles(&self.mmu.cfg.costs)
    }

    /// Returns the address space this CPU has loaded (also while lazy).
    pub fn loaded_mm(&self) -> Option<&Arc<Mm>> {
        self.loaded.as_ref()
    }

    /// Returns true if the CPU is in lazy-TLB mode.
    pub fn is_lazy(&self) -> bool {
        self.lazy
    }

    /// Sets the privilege of subsequent accesses: user mode (the default) or kernel mode.
    pub fn set_user_mode(&mut self, user: bool) {
        self.user = user;
        self.need = need_masks(user);
    }

    // ----- address-space switching (arch/x86/mm/tlb.c: switch_mm_irqs_off) -----

    /// Makes `next` the running address space (`switch_mm`). Joins its cpumask, then reads
    /// its `tlb_gen`; reuses this CPU's ASID for it when one is cached and up to date, and
    /// otherwise flushes the ASID's stale entries (recycling the least recently assigned
    /// slot, round robin, when `next` has none).
    ///
    /// # Panics
    /// On a daemon context, which has no address space.
    pub fn switch_mm(&mut self, next: &Arc<Mm>) {
        let slot = self
            .slot
            .expect("a daemon context cannot load an address space");
        if let Some(cur) = &self.loaded {
            if cur.ctx_id() == next.ctx_id() {
                if self.lazy {
                    // Leaving lazy mode: catch up with flushes we were skipped for.
                    self.lazy = false;
                    self.mmu.cpus[slot].is_lazy.store(false, Ordering::Relaxed);
                    fence(Ordering::SeqCst);
                    let gen = next.tlb_gen_relaxed();
                    if self.ctxs[self.asid].tlb_gen < gen {
                        self.flush_asid(self.asid, gen);
                    }
                    self.pcid = self.asid as u64 + 1;
                }
                return;
            }
        }
        self.leave_mm();
        self.stats.context_switches += 1;
        next.cpumask().set(slot);
        // Pairs with the fence after the tlb_gen increment of a shootdown: either the
        // initiator sees this CPU in the cpumask, or this CPU sees the new generation.
        #[cfg(test)]
        let fenced = !next.regress.switch_mm_without_fence;
        #[cfg(not(test))]
        let fenced = true;
        if fenced {
            fence(Ordering::SeqCst);
        }
        let gen = next.tlb_gen_relaxed();
        let (asid, need_flush) = self.choose_new_asid(next.ctx_id(), gen);
        if need_flush {
            self.ctxs[asid].ctx_id = next.ctx_id();
            self.flush_asid(asid, gen);
        }
        self.asid = asid;
        self.pcid = asid as u64 + 1;
        self.loaded = Some(next.clone());
    }

    /// `choose_new_asid`.
    fn choose_new_asid(&mut self, ctx_id: u64, gen: u64) -> (usize, bool) {
        if let Some(asid) = self.ctxs.iter().position(|c| c.ctx_id == ctx_id) {
            return (asid, self.ctxs[asid].tlb_gen < gen);
        }
        let asid = self.next_asid;
        self.next_asid = (asid + 1) % self.ctxs.len();
        if self.ctxs[asid].ctx_id != 0 {
            self.stats.asid_recycles += 1;
        }
        (asid, true)
    }

    /// Flushes every entry of `asid` and records it up to date with `gen`.
    fn flush_asid(&mut self, asid: usize, gen: u64) {
        self.tlb.flush_pcid(asid as u64 + 1);
        self.ctxs[asid].tlb_gen = gen;
        self.stats.full_flushes += 1;
    }

    /// Switches to a kernel thread that borrows the current address space (`enter_lazy_tlb`):
    /// the mm stays loaded but makes no user accesses, and shootdowns that free no page tables
    /// skip this CPU; [`MmuCpu::switch_mm`] back to it catches up.
    pub fn enter_lazy(&mut self) {
        if let (Some(slot), Some(_)) = (self.slot, &self.loaded) {
            self.lazy = true;
            self.mmu.cpus[slot].is_lazy.store(true, Ordering::Relaxed);
            self.pcid = 0;
        }
    }

    /// Drops the loaded address space (idle, or the mm is going away): leaves its cpumask.
    /// Entries tagged with its ASID stay, unreachable until a switch back flushes or reuses
    /// them.
    pub fn leave_mm(&mut self) {
        if let (Some(slot), Some(prev)) = (self.slot, self.loaded.take()) {
            prev.cpumask().clear(slot);
            if self.lazy {
                self.lazy = false;
                self.mmu.cpus[slot].is_lazy.store(false, Ordering::Relaxed);
            }
        }
        self.pcid = 0;
    }

    // ----- the access API -----

    /// Translates `va` for an access of `kind` and returns the physical address of its frame:
    /// the hit path of every access. A hit in the L1 TLB takes no lock, sends nothing and
    /// allocates nothing: a set lookup, a rights check and two plain stores (the way's LRU
    /// stamp and the access clock) on this struct.
    #[inline(always)]
    fn translate_base(&mut self, va: VirtAddr, kind: AccessKind) -> Result<u64, Fault> {
        let now = self.clock + 1;
        let v = self
            .tlb
            .l1
            .lookup(va.0 >> PAGE_SHIFT, self.pcid, self.need[kind as usize], now);
        if v == NO_HIT {
            return self.translate_slow(va, kind).map(|pfn| pfn.phys().0);
        }
        self.clock = now;
        Ok(v & !PERM_MASK)
    }

    /// [`MmuCpu::translate_base`] as a frame number.
    #[inline(always)]
    fn translate_pfn(&mut self, va: VirtAddr, kind: AccessKind) -> Result<Pfn, Fault> {
        self.translate_base(va, kind)
            .map(|base| Pfn(base >> PAGE_SHIFT))
    }

    /// The L1 miss path: the L2 TLB, then a walk that refills both levels.
    #[cold]
    #[inline(never)]
    fn translate_slow(&mut self, va: VirtAddr, kind: AccessKind) -> Result<Pfn, Fault> {
        let access = Access {
            kind,
            user: self.user,
        };
        let fault = |kind| Fault {
            kind,
            addr: va,
            access,
        };
        if va.0 >= self.user_limit {
            return Err(fault(FaultKind::NonCanonical));
        }
        if self.pcid == 0 {
            return Err(fault(FaultKind::NoAddressSpace));
        }
        let (vpn, pcid, need) = (va.0 >> PAGE_SHIFT, self.pcid, self.need[kind as usize]);
        self.clock += 1;
        let now = self.clock;
        // The L1 lookup failed: with the key cached there, the entry lacks a right.
        let mut denied = self.tlb.l1.peek(vpn, pcid).is_some();
        if !denied {
            match self.tlb.l2.lookup(vpn, pcid, need, now) {
                NO_HIT => denied = self.tlb.l2.peek(vpn, pcid).is_some(),
                v => {
                    self.stats.l2_hits += 1;
                    let pfn = Pfn(v >> PAGE_SHIFT);
                    self.tlb.l1.insert(vpn, pcid, pfn, entry_perm(v), now);
                    return Ok(pfn);
                }
            }
        }
        if denied {
            // The cached entry lacks a right: drop it and let the walk decide (this is also
            // how the first store through a clean entry sets the dirty bit).
            self.tlb.invalidate(vpn, pcid);
        } else {
            self.stats.misses += 1;
        }
        self.stats.walks += 1;
        let root = self
            .loaded
            .as_ref()
            .expect("a non-zero PCID means an address space is loaded")
            .root();
        let mut refs = 0;
        let r = walk(&self.mem, root, self.levels, va.0, access, &mut refs);
        self.stats.walk_refs += refs;
        match r {
            Ok(w) => {
                self.tlb.l2.insert(vpn, pcid, w.pfn, w.perm, now);
                self.tlb.l1.insert(vpn, pcid, w.pfn, w.perm, now);
                Ok(w.pfn)
            }
            Err(kind) => {
                self.stats.faults += 1;
                Err(fault(kind))
            }
        }
    }

    #[inline]
    fn frame(&self, pfn: Pfn) -> FrameBytes<'_> {
        self.mem
            .frame(pfn)
            .expect("page tables map only frames inside RAM")
    }

    /// Translates `va` for an access of `kind` through the TLB (walking on a miss) and returns
    /// the physical address.
    pub fn translate(&mut self, va: VirtAddr, kind: AccessKind) -> Result<PhysAddr, Fault> {
        let pfn = self.translate_pfn(va, kind)?;
        Ok(PhysAddr(pfn.phys().0 + va.page_offset() as u64))
    }

    /// Loads the little-endian u64 at `va`.
    #[inline(always)]
    pub fn load_u64(&mut self, va: VirtAddr) -> Result<u64, Fault> {
        let off = va.page_offset() as u64;
        if off & 7 == 0 {
            let base = self.translate_base(va, AccessKind::Read)?;
            return Ok(self
                .mem
                .load_aligned_u64(PhysAddr(base | off))
                .expect("page tables map only frames inside RAM"));
        }
        self.load_u64_unaligned(va)
    }

    #[inline(never)]
    fn load_u64_unaligned(&mut self, va: VirtAddr) -> Result<u64, Fault> {
        let mut b = [0; 8];
        self.read(va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Stores the little-endian u64 `v` at `va`.
    #[inline(always)]
    pub fn store_u64(&mut self, va: VirtAddr, v: u64) -> Result<(), Fault> {
        let off = va.page_offset();
        if off & 7 == 0 {
            let base = self.translate_base(va, AccessKind::Write)?;
            let stored = self.mem.store_aligned_u64(PhysAddr(base | off as u64), v);
            assert!(stored, "page tables map only frames inside RAM");
            return Ok(());
        }
        self.store_u64_unaligned(va, v)
    }

    #[inline(never)]
    fn store_u64_unaligned(&mut self, va: VirtAddr, v: u64) -> Result<(), Fault> {
        self.write(va, &v.to_le_bytes())
    }

    /// Loads the little-endian u32 at `va`.
    pub fn load_u32(&mut self, va: VirtAddr) -> Result<u32, Fault> {
        let mut b = [0; 4];
        self.read(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Stores the little-endian u32 `v` at `va`.
    pub fn store_u32(&mut self, va: VirtAddr, v: u32) -> Result<(), Fault> {
        self.write(va, &v.to_le_bytes())
    }

    /// Loads the byte at `va`.
    pub fn load_u8(&mut self, va: VirtAddr) -> Result<u8, Fault> {
        let mut b = [0; 1];
        self.read(va, &mut b)?;
        Ok(b[0])
    }

    /// Stores the byte `v` at `va`.
    pub fn store_u8(&mut self, va: VirtAddr, v: u8) -> Result<(), Fault> {
        self.write(va, &[v])
    }

    /// Copies `buf.len()` bytes from `va` into `buf`: one translation per page touched. On a
    /// fault, the pages before the faulting one have been read.
    pub fn read(&mut self, va: VirtAddr, buf: &mut [u8]) -> Result<(), Fault> {
        self.copy(va, buf.len(), AccessKind::Read, |f, off, done, n| {
            f.read(off, &mut buf[done..done + n])
        })
    }

    /// Copies `buf` to `va`: one translation per page touched. On a fault, the pages before the
    /// faulting one have been written.
    pub fn write(&mut self, va: VirtAddr, buf: &[u8]) -> Result<(), Fault> {
        self.copy(va, buf.len(), AccessKind::Write, |f, off, done, n| {
            f.write(off, &buf[done..done + n])
        })
    }

    /// Fetches `buf.len()` instruction bytes from `va` (needs execute rights).
    pub fn fetch(&mut self, va: VirtAddr, buf: &mut [u8]) -> Result<(), Fault> {
        self.copy(va, buf.len(), AccessKind::Exec, |f, off, done, n| {
            f.read(off, &mut buf[done..done + n])
        })
    }

    fn copy(
        &mut self,
        va: VirtAddr,
        len: usize,
        kind: AccessKind,
        mut op: impl FnMut(FrameBytes<'_>, usize, usize, usize),
    ) -> Result<(), Fault> {
        let mut done = 0;
        while done < len {
            let a = VirtAddr(va.0.wrapping_add(done as u64));
            let off = a.page_offset();
            let n = (PAGE_SIZE - off).min(len - done);
            let pfn = self.translate_pfn(a, kind)?;
            op(self.frame(pfn), off, done, n);
            done += n;
        }
        Ok(())
    }

    // ----- IPIs and waiting -----

    /// Handles every IPI waiting in this CPU's mailbox (`flush_tlb_func` for each), then
    /// acknowledges it. The CPU loop calls this between quanta; every wait calls it too.
    /// Returns the number handled.
    pub fn handle_ipis(&mut self) -> usize {
        let mut n = 0;
        while let Some(ipi) = self.mailbox.as_ref().and_then(|m| m.try_recv().ok()) {
            self.handle_ipi(ipi);
            n += 1;
        }
        n
    }

    /// Blocks until an IPI arrives, then handles every IPI waiting (an idle CPU halting until
    /// the next interrupt). Returns the number handled: 0 at once for a daemon context, which
    /// has no mailbox.
    pub fn wait_ipi(&mut self) -> usize {
        let Some(ipi) = self.mailbox.as_ref().and_then(|m| m.recv().ok()) else {
            return 0;
        };
        self.handle_ipi(ipi);
        1 + self.handle_ipis()
    }

    /// Flushes for one IPI, then acknowledges it (by dropping it).
    fn handle_ipi(&mut self, ipi: Ipi) {
        self.flush_tlb_func(&ipi.0.info, TlbFlushReason::RemoteShootdown);
        self.stats.ipis_received += 1;
        if let Some(slot) = self.slot {
            self.mmu.cpus[slot]
                .tlb_shootdowns
                .fetch_add(1, mm_sync::untracked::Ordering::Relaxed);
        }
        drop(ipi);
    }

    /// Polls `poll` until it yields a value, handling this CPU's IPIs between polls; spins
    /// briefly, then yields the host thread between polls (spinning again after it handled an
    /// IPI). Every wait of kernel code on a CPU must go through here (or
    /// [`MmuCpu::handle_ipis`]), or a CPU that waits for this one's acknowledgement while
    /// holding what this one waits for deadlocks.
    pub fn spin_until<T>(&mut self, mut poll: impl FnMut() -> Option<T>) -> T {
        let mut spins = 0u32;
        loop {
            if let Some(v) = poll() {
                return v;
            }
            if self.handle_ipis() == 0 {
                poll_idle(&mut spins);
            } else {
                spins = 0;
            }
        }
    }

    /// Waits until every CPU `req` went to (`targets`) has acknowledged, handling this CPU's
    /// IPIs meanwhile; idles on this CPU's doorbell, which each acknowledgement and each IPI
    /// for this CPU rings.
    ///
    /// # Panics
    /// In debug builds, after [`STALL_IDLES`] idle rounds (seconds; an acknowledgement takes
    /// microseconds): some target is not handling its IPIs, which breaks the protocol (for
    /// example, one thread driving several CPUs that are all in the cpumask).
    fn wait_for_acks(&mut self, req: &FlushRequest, targets: &CpuMask) {
        let mut spins = 0u32;
        let mut idles = 0u64;
        while req.pending.load(Ordering::Acquire) != 0 {
            if self.handle_ipis() == 0 {
                self.doorbell.idle(&mut spins);
                idles += 1;
                if cfg!(debug_assertions) && idles == STALL_IDLES {
                    panic!(
                        "CPU {} has waited {idles} rounds for {} acknowledgement(s) of a TLB \
                         shootdown sent to CPUs {targets:?}: every CPU in an mm's cpumask must \
                         keep handling its IPIs (a thread driving several CPUs must leave_mm \
                         on those it is not running)",
                        self.cpu.0,
                        req.pending.load(Ordering::Relaxed)
                    );
                }
            }
        }
    }

    /// Takes `mm`'s page-table lock, handling IPIs while it spins (interrupts stay enabled
    /// while a kernel spins on `spin_lock`).
    pub(crate) fn lock_ptl<'a>(&mut self, mm: &'a Mm) -> SpinLockGuard<'a, ()> {
        self.spin_until(|| mm.ptl().try_lock())
    }

    /// `flush_tlb_func`: brings this CPU's TLB up to date with a flush, on the initiating CPU
    /// or on IPI.
    fn flush_tlb_func(&mut self, f: &FlushInfo, reason: TlbFlushReason) {
        let Some(loaded) = &self.loaded else {
            return;
        };
        if f.mm.is_some_and(|ctx| ctx != loaded.ctx_id()) {
            // Switched away since: a switch back compares tlb_gen and flushes then.
            return;
        }
        if self.lazy {
            // Asked to flush while lazy: stop borrowing the mm instead.
            self.leave_mm();
            return;
        }
        let mm_gen = loaded.tlb_gen_acquire();
        let local_gen = self.ctxs[self.asid].tlb_gen;
        if f.new_gen.is_some_and(|g| g <= local_gen) || local_gen >= mm_gen {
            return; // Already caught up, possibly by a concurrent flush.
        }
        let partial =
            f.end != FLUSH_ALL && f.new_gen == Some(local_gen + 1) && f.new_gen == Some(mm_gen);
        if partial {
            for vpn in f.start..f.end {
                self.tlb.invalidate(vpn, self.pcid);
            }
            self.stats.page_flushes += f.end - f.start;
            self.ctxs[self.asid].tlb_gen = mm_gen;
            reason.trace(f.end - f.start);
        } else {
            self.flush_asid(self.asid, mm_gen);
            reason.trace(TLB_FLUSH_ALL_PAGES);
        }
    }

    // ----- initiating shootdowns (flush_tlb_mm_range, flush_tlb_multi) -----

    /// Flushes VPNs `start..end` of `mm` on every CPU that may cache them, and returns once all
    /// have acknowledged (`flush_tlb_mm_range`). More than `flush_ceiling` pages become a flush
    /// of the whole address space. `freed_tables` also reaches lazy-TLB CPUs.
    pub(crate) fn flush_tlb_mm_range(
        &mut self,
        mm: &Mm,
        start: u64,
        end: u64,
        freed_tables: bool,
    ) -> FlushCompleted {
        let (start, end) = if end == FLUSH_ALL || end - start > self.mmu.cfg.flush_ceiling {
            (0, FLUSH_ALL)
        } else {
            (start, end)
        };
        // inc_mm_tlb_gen is a full barrier in Linux: the PTE changes before it are visible to
        // whoever reads the new generation, and the cpumask read after it pairs with the fence
        // in switch_mm.
        let new_gen = mm.inc_tlb_gen();
        fence(Ordering::SeqCst);
        let info = FlushInfo {
            mm: Some(mm.ctx_id()),
            start,
            end,
            new_gen: Some(new_gen),
            freed_tables,
        };
        let mask = mm.cpumask().snapshot();
        self.flush_tlb_multi(&mask, &info);
        FlushCompleted::mm(mm.ctx_id(), new_gen, start, end, freed_tables)
    }

    /// Runs `info` here if this CPU is in `mask`, sends it to the other CPUs of `mask` (lazy ones
    /// only when page tables are freed) and waits for their acknowledgements, handling IPIs
    /// meanwhile.
    pub(crate) fn flush_tlb_multi(&mut self, mask: &CpuMask, info: &FlushInfo) {
        self.stats.shootdowns += 1;
        let me = self.slot;
        let mut targets = CpuMask::default();
        let mut count = 0;
        for cpu in mask.iter() {
            if Some(cpu) == me {
                continue;
            }
            if !info.freed_tables && self.mmu.cpus[cpu].is_lazy.load(Ordering::Relaxed) {
                continue;
            }
            targets.set(cpu);
            count += 1;
        }
        if me.is_some_and(|c| mask.test(c)) {
            self.flush_tlb_func(info, TlbFlushReason::LocalShootdown);
        }
        if count == 0 {
            return;
        }
        let req = Arc::new(FlushRequest {
            info: *info,
            pending: AtomicUsize::new(count),
            waiter: self.doorbell.clone(),
        });
        TlbFlushReason::RemoteSendIpi.trace(if info.end == FLUSH_ALL {
            TLB_FLUSH_ALL_PAGES
        } else {
            info.end - info.start
        });
        for cpu in targets.iter() {
            let target = &self.mmu.cpus[cpu];
            // A send fails only when that CPU's MmuCpu is gone, and its TLB with it: the IPI
            // comes back in the error and acknowledges itself as it is dropped.
            if target.mailbox.send(Ipi(req.clone())).is_ok() {
                self.stats.ipis_sent += 1;
                target.doorbell.ring();
                self.mmu.kick(cpu);
            }
        }
        self.wait_for_acks(&req, &targets);
    }

    // ----- inspection -----

    /// Returns the frame and rights the TLB caches for `va` in the running address space, from
    /// the L1 level, else L2, without touching LRU state: `(pfn, writable, user, exec)`.
    pub fn tlb_probe(&self, va: VirtAddr) -> Option<(Pfn, bool, bool, bool)> {
        let vpn = va.0 >> PAGE_SHIFT;
        let pcid = if self.loaded.is_some() {
            self.asid as u64 + 1
        } else {
            return None;
        };
        self.tlb
            .l1
            .peek(vpn, pcid)
            .or_else(|| self.tlb.l2.peek(vpn, pcid))
            .map(|(pfn, p)| (pfn, p & PERM_W != 0, p & PERM_U != 0, p & PERM_X != 0))
    }

    /// Checks the TLB's structure and the ASID slots.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.tlb.l1.check().map_err(|e| format!("L1 TLB: {e}"))?;
        self.tlb.l2.check().map_err(|e| format!("L2 TLB: {e}"))?;
        if let Some(mm) = &self.loaded {
            if self.ctxs[self.asid].ctx_id != mm.ctx_id() {
                return Err(format!(
                    "ASID {} tags ctx {} but ctx {} is loaded",
                    self.asid,
                    self.ctxs[self.asid].ctx_id,
                    mm.ctx_id()
                ));
            }
        }
        Ok(())
    }

    #[cfg(all(test, not(mm_loom)))]
    pub(crate) fn tlb(&self) -> &Tlb {
        &self.tlb
    }

    #[cfg(all(test, not(mm_loom)))]
    pub(crate) fn current_pcid(&self) -> u64 {
        self.pcid
    }
}

impl Drop for MmuCpu {
    /// Retires the CPU: it leaves its address space's cpumask, and the IPIs still queued for it
    /// (or sent to it until its mailbox is gone) acknowledge themselves as they are discarded.
    fn drop(&mut self) {
        self.leave_mm();
    }
}

/// Walks the tables from `root` for `access` to `va`, as the hardware walker does: reads one
/// entry per level, checks rights accumulated over the levels, and sets the accessed bit on
/// every level and the dirty bit on the leaf of a write with `cmpxchg`, retrying if the
/// entry changed under it. Counts table reads in `refs`.
fn walk(
    mem: &PhysMem,
    root: Pfn,
    levels: u32,
    va: u64,
    access: Access,
    refs: &mut u64,
) -> Result<Walked, FaultKind> {
    let mut table = root;
    let (mut rw, mut user, mut nx) = (true, true, false);
    for level in (1..=levels).rev() {
        let frame = mem.frame(table).expect("page tables live in RAM");
        let off = table_index(va, level) * 8;
        *refs += 1;
        loop {
            let e = Pte(frame.read_u64(off));
            if !e.is_present() {
                return Err(match (level, e.swap_entry()) {
                    (1, Some(s)) => FaultKind::Swap(s),
                    (1, None) if e.is_protnone() => FaultKind::ProtNone,
                    _ => FaultKind::NotPresent,
                });
            }
            let f = e.flags();
            let lrw = rw && f.contains(PteFlags::RW);
            let luser = user && f.contains(PteFlags::USER);
            let lnx = nx || f.contains(PteFlags::NX);
            if level > 1 {
                let young = PteFlags::ACCESSED.bits();
                if !e.is_young() && frame.cmpxchg_u64(off, e.0, e.0 | young) != e.0 {
                    continue;
                }
                // The rights of upper levels restrict the leaf's.
                (rw, user, nx) = (lrw, luser, lnx);
                table = e.pfn();
                break;
            }
            if access.user && !luser {
                return Err(FaultKind::UserAccess);
            }
            match access.kind {
                AccessKind::Write if !lrw => return Err(FaultKind::WriteProtect),
                AccessKind::Exec if lnx => return Err(FaultKind::NxViolation),
                _ => {}
            }
            let mut new = e.0 | PteFlags::ACCESSED.bits();
            if access.kind == AccessKind::Write {
                new |= PteFlags::DIRTY.bits();
            }
            if new != e.0 && frame.cmpxchg_u64(off, e.0, new) != e.0 {
                continue;
            }
            let mut perm = PERM_R;
            if lrw && Pte(new).is_dirty() {
                perm |= PERM_W;
            }
            if luser {
                perm |= PERM_U;
            }
            if !lnx {
                perm |= PERM_X;
            }
            return Ok(Walked { pfn: e.pfn(), perm });
        }
    }
    unreachable!("a walk ends at level 1")
}

/// `enum tlb_flush_reason`, as the `tlb_flush` tracepoint reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TlbFlushReason {
    /// `TLB_REMOTE_SHOOTDOWN`: a flush IPI from another CPU.
    RemoteShootdown,
    /// `TLB_LOCAL_SHOOTDOWN`: this CPU's part of its own shootdown.
    LocalShootdown,
    /// `TLB_REMOTE_SEND_IPI`: this CPU sends flush IPIs.
    RemoteSendIpi,
}

/// The `pages` a full flush reports (`TLB_FLUSH_ALL`, -1 as an unsigned long).
const TLB_FLUSH_ALL_PAGES: u64 = u64::MAX;

impl TlbFlushReason {
    /// Emits the `tlb_flush` tracepoint (`TP_printk("pages:%ld reason:%s (%d)")`).
    fn trace(self, pages: u64) {
        let (name, code) = match self {
            TlbFlushReason::RemoteShootdown => ("remote shootdown", 1),
            TlbFlushReason::LocalShootdown => ("local shootdown", 2),
            TlbFlushReason::RemoteSendIpi => ("remote ipi send", 4),
        };
        tracing::event!(
            name: "tlb_flush",
            target: "mm_trace",
            tracing::Level::TRACE,
            pages = pages as i64,
            reason = name,
            reason_code = code,
        );
    }
}
