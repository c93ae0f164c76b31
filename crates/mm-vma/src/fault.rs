//! The page-fault handler (`do_user_addr_fault` → `handle_mm_fault` → `handle_pte_fault`,
//! mm/memory.c): demand-zero and zero-page faults, file and shmem faults, copy-on-write with
//! reuse, swap-in, and stack growth.
//!
//! # Locking protocol
//! - The VMA is found and checked under the mmap read lock, which is held to the end: no VMA
//!   or page table it relies on can go away (munmap and mremap take the write lock; the page
//!   tables of a range munmap detached are freed only while that range has no VMA, and a
//!   fault never grows a stack under the read lock).
//! - Filling an empty entry is one `Mm::map`, which refuses a slot that already holds a frame:
//!   an empty entry can only become present (never a swap entry, which needs a present page
//!   to unmap first), so no check-then-act is needed and page tables are allocated with no
//!   lock of this layer held.
//! - Replacing an entry (COW copy or reuse, swap-in, a shared write) is check-then-act: under
//!   the address space's page-table lock the entry is read again and compared with the one the
//!   decision was made on (`pte_same`, ignoring the accessed and dirty bits the walker sets);
//!   if it changed the fault is retried. MADV_DONTNEED and munmap zap under the same lock.
//!   A COW clears the old entry and flushes it before installing the new one
//!   (break-before-make, `ptep_clear_flush`), all under the lock.
//! - Growing a stack and giving a VMA its anon_vma change the VMA tree, so the fault drops the
//!   read lock, does them under the write lock, and retries.

use crate::ctx::CpuCtx;
use crate::error::{AccessError, FaultError, SegvCode, Signal};
use crate::flags::VmFlags;
use crate::hooks::{FileFaultError, SwapError};
use crate::lock::{lock_spin, MmapRead};
use crate::mm::{AddressSpace, MmState, RssKind};
use crate::pt;
use crate::vma::Vma;
use mm_mmu::{AccessKind, Fault, FaultKind, MapError, Prot, Pte, PteFlags, TlbBatch};
use mm_phys::PageFlags;
use mm_types::{CpuId, Gfp, Order, Pfn, SwapEntry, VirtAddr, PAGE_SIZE};

const PAGE: u64 = PAGE_SIZE as u64;

/// The entry a present PTE holds while this layer replaces it (a non-swap entry, like
/// Linux's migration entries): non-present, so no TLB caches it, and not empty, so no fault
/// fills the slot meanwhile. It exists only under the page-table lock. The swap layer never
/// hands out this type.
pub(crate) const BUSY: SwapEntry = SwapEntry {
    kind: mm_mmu::MAX_SWAP_TYPES - 1,
    offset: 0,
};

/// Replaces the present entry at `va`, with the page-table lock held: parks [`BUSY`] in it,
/// flushes every TLB that may cache the old translation, then lets `install` fill the slot
/// (`ptep_clear_flush` + `set_pte_at`). Returns the old entry.
pub(crate) fn replace_present(
    ctx: &mut CpuCtx,
    as_: &AddressSpace,
    va: u64,
    install: impl FnOnce(&mut CpuCtx),
) -> Pte {
    let mut batch = TlbBatch::new(&as_.sys.mmu);
    let old = as_
        .core
        .mm
        .try_to_unmap(ctx.mmu(), VirtAddr(va), Pte::swap(BUSY), &mut batch)
        .expect("page-aligned user address");
    batch.flush(ctx.mmu());
    install(ctx);
    old
}

/// One fault to handle.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FaultReq {
    pub(crate) addr: u64,
    pub(crate) write: bool,
    pub(crate) exec: bool,
    /// From `get_user_pages` (GUP checks the VMA's `VM_READ` for reads).
    pub(crate) gup: bool,
    /// `FOLL_FORCE`: ptrace and `/proc/PID/mem` may write a read-only private mapping
    /// (through a COW copy) and read a non-readable one.
    pub(crate) force: bool,
    /// The hardware walk found no entry: the entry was empty (an empty entry only ever
    /// becomes present, which filling it detects), so the handler skips re-reading it.
    pub(crate) not_present: bool,
}

/// What a handled fault did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Handled {
    /// A write fault broke COW or reused the page (`VM_FAULT_WRITE`).
    pub(crate) cow_broken: bool,
    /// The page had to be read from a file or swap.
    pub(crate) major: bool,
}

fn segv(addr: u64, code: SegvCode) -> FaultError {
    FaultError::Signal(Signal::Segv {
        addr: VirtAddr(addr),
        code,
    })
}

fn bus(addr: u64) -> FaultError {
    FaultError::Signal(Signal::Bus {
        addr: VirtAddr(addr),
    })
}

/// `pte_same`, ignoring the accessed and dirty bits the hardware walker may set meanwhile.
#[inline]
fn pte_same(a: Pte, b: Pte) -> bool {
    let ad = (PteFlags::ACCESSED | PteFlags::DIRTY).bits();
    (a.0 ^ b.0) & !ad == 0
}

/// Handles a fault a user access raised, or returns the signal or OOM that ends it.
pub(crate) fn handle_user_fault(
    ctx: &mut CpuCtx,
    as_: &AddressSpace,
    f: Fault,
) -> Result<(), AccessError> {
    let addr = f.addr.0;
    match f.kind {
        FaultKind::NonCanonical => {
            return Err(Signal::Segv {
                addr: f.addr,
                code: SegvCode::MapErr,
            }
            .into())
        }
        FaultKind::UserAccess => {
            return Err(Signal::Segv {
                addr: f.addr,
                code: SegvCode::AccErr,
            }
            .into())
        }
        FaultKind::NoAddressSpace => {
            ctx.mmu().switch_mm(&as_.core.mm);
            return Ok(());
        }
        _ => {}
    }
    let req = FaultReq {
        addr,
        write: f.access.kind == AccessKind::Write,
        exec: f.access.kind == AccessKind::Exec,
        gup: false,
        force: false,
        not_present: f.kind == FaultKind::NotPresent,
    };
    ctx.events.pgfault += 1;
    match handle_mm_fault(ctx, as_, req) {
        Ok(h) => {
            as_.core.count_fault(h.major);
            Ok(())
        }
        Err(FaultError::Signal(s)) => Err(s.into()),
        Err(FaultError::Oom) => Err(AccessError::Oom { addr: f.addr }),
        Err(e @ (FaultError::NeedAnonVma | FaultError::NeedExpandStack)) => {
            unreachable!("handle_mm_fault resolves {e:?}")
        }
    }
}

/// `handle_mm_fault` with the mmap lock: takes the read lock, and retries after growing a
/// stack or preparing an anon_vma under the write lock.
pub(crate) fn handle_mm_fault(
    ctx: &mut CpuCtx,
    as_: &AddressSpace,
    req: FaultReq,
) -> Result<Handled, FaultError> {
    loop {
        let mut st = as_.state.read(ctx.mmu());
        match fault_locked(ctx, as_, &mut st, req) {
            Err(FaultError::NeedAnonVma) => {
                drop(st);
                as_.anon_vma_prepare(ctx, req.addr)
                    .map_err(|_| FaultError::Oom)?;
            }
            Err(FaultError::NeedExpandStack) => {
                drop(st);
                as_.expand_stack(ctx, req.addr)
                    .map_err(|()| segv(req.addr, SegvCode::MapErr))?;
            }
            r => return r,
        }
    }
}

/// Whether the VMA allows the access (`access_error`, or GUP's `check_vma_flags`).
fn access_ok(flags: VmFlags, req: &FaultReq) -> bool {
    if req.write {
        flags.contains(VmFlags::WRITE) || (req.force && flags.is_cow())
    } else if req.exec {
        flags.contains(VmFlags::EXEC)
    } else if req.gup {
        flags.contains(VmFlags::READ) || (req.force && flags.contains(VmFlags::MAYREAD))
    } else {
        flags.is_accessible()
    }
}

/// The fault with the mmap read lock held: find and check the VMA, then handle the entry.
pub(crate) fn fault_locked(
    ctx: &mut CpuCtx,
    as_: &AddressSpace,
    st: &mut MmapRead<'_, MmState>,
    req: FaultReq,
) -> Result<Handled, FaultError> {
    let addr = req.addr;
    // Loops only after growing a stack in place (the test-only regression).
    #[cfg_attr(not(test), allow(clippy::never_loop))]
    loop {
        let (start, flags) = match st.vmas.find(addr) {
            None => return Err(segv(addr, SegvCode::MapErr)),
            Some(v) => (v.start, v.flags),
        };
        if start > addr {
            if !flags.contains(VmFlags::GROWSDOWN) || req.gup {
                return Err(segv(addr, SegvCode::MapErr));
            }
            #[cfg(test)]
            if as_.regress.expand_stack_under_read_lock {
                // Pre-6.5: expand_stack() under mmap_read_lock.
                let cpu = ctx.id();
                st.modify_under_read(|s| as_.expand_downwards(s, cpu, addr))
                    .map_err(|()| segv(addr, SegvCode::MapErr))?;
                continue;
            }
            return Err(FaultError::NeedExpandStack);
        }
        if !access_ok(flags, &req) {
            return Err(segv(addr, SegvCode::AccErr));
        }
        let vma = st.vmas.lookup(addr).expect("found above");
        return handle_pte_fault(ctx, as_, vma, &req);
    }
}

/// `handle_pte_fault`.
fn handle_pte_fault(
    ctx: &mut CpuCtx,
    as_: &AddressSpace,
    vma: &Vma,
    req: &FaultReq,
) -> Result<Handled, FaultError> {
    let sys = &*as_.sys;
    let va = req.addr & !(PAGE - 1);
    let orig = if req.not_present {
        Pte::NONE
    } else {
        pt::read_pte(&sys.mem, as_.core.mm.root(), sys.levels, va)
    };
    if orig.is_none() {
        return match vma.file {
            Some(_) => do_fault(ctx, as_, vma, va, req),
            None => do_anonymous_page(ctx, as_, vma, va, req),
        };
    }
    if let Some(entry) = orig.swap_entry() {
        return do_swap_page(ctx, as_, vma, va, orig, entry, req);
    }
    if !orig.is_present() || (req.exec && !orig.prot().contains(Prot::EXEC)) {
        return fix_protection(ctx, as_, vma, va, orig);
    }
    if req.write && !orig.is_writable() {
        return do_wp_page(ctx, as_, vma, va, orig);
    }
    ctx.events.spurious += 1;
    Ok(Handled::default())
}

/// Allocates a page for user data (`GFP_HIGHUSER_MOVABLE`).
fn alloc_user_page(as_: &AddressSpace, cpu: CpuId, zeroed: bool) -> Result<Pfn, FaultError> {
    let gfp = if zeroed {
        Gfp::GFP_HIGHUSER_MOVABLE | Gfp::ZERO
    } else {
        Gfp::GFP_HIGHUSER_MOVABLE
    };
    as_.sys
        .buddy
        .alloc(cpu, Order::ZERO, gfp)
        .map(|f| f.into_raw().0)
        .map_err(|_| FaultError::Oom)
}

/// Sets up a new anonymous page for its first mapping (`__page_set_anon_rmap` via
/// `page_add_new_anon_rmap`, `__SetPageSwapBacked`): refcount 1 and mapcount 1 for it.
#[inline]
fn init_anon_page(as_: &AddressSpace, pfn: Pfn, anon_vma: u64, index: u64) {
    let page = as_.sys.mem.page(pfn);
    page.set_flags(PageFlags::ANON | PageFlags::SWAPBACKED | PageFlags::UPTODATE);
    page.set_mapping(anon_vma);
    page.set_index(index);
    page.set_mapcount(1);
}

/// Frees a page this fault allocated but did not map: no TLB ever saw it.
fn release_new_page(as_: &AddressSpace, cpu: CpuId, pfn: Pfn) {
    let page = as_.sys.mem.page(pfn);
    page.set_mapcount(0);
    as_.sys.put_page(cpu, pfn);
}

/// Fills an empty entry with `pfn` (`set_pte_at`). `Ok(false)` if another CPU filled it first.
#[inline]
fn fill(
    ctx: &mut CpuCtx,
    as_: &AddressSpace,
    va: u64,
    pfn: Pfn,
    prot: Prot,
) -> Result<bool, FaultError> {
    match as_.core.mm.map(ctx.mmu(), VirtAddr(va), pfn, prot) {
        Ok(_) => Ok(true),
        Err(MapError::Exists { .. }) => Ok(false),
        Err(MapError::NoMemory(_)) => Err(FaultError::Oom),
        Err(e) => panic!("mapping {va:#x} in a VMA: {e}"),
    }
}

/// `do_anonymous_page`: a read maps the shared zero page; a write maps a new zeroed page.
fn do_anonymous_page(
    ctx: &mut CpuCtx,
    as_: &AddressSpace,
    vma: &Vma,
    va: u64,
    req: &FaultReq,
) -> Result<Handled, FaultError> {
    let sys = &*as_.sys;
    if !req.write {
        let prot = vma.flags.page_prot() - Prot::WRITE;
        if fill(ctx, as_, va, sys.zero_pfn, prot)? {
            ctx.events.zero_page_maps += 1;
        } else {
            ctx.events.spurious += 1;
        }
        return Ok(Handled::default());
    }
    let anon = vma.anon_vma.as_ref().ok_or(FaultError::NeedAnonVma)?;
    let cpu = ctx.id();
    let pfn = alloc_user_page(as_, cpu, true)?;
    init_anon_page(as_, pfn, anon.id, vma.linear_index(va));
    match fill(ctx, as_, va, pfn, vma.flags.page_prot()) {
        Ok(true) => {
            as_.core.add_rss(RssKind::Anon, 1);
            sys.hooks.lru.add_new_anon(cpu, pfn);
            Ok(Handled::default())
        }
        Ok(false) => {
            release_new_page(as_, cpu, pfn);
            ctx.events.spurious += 1;
            Ok(Handled::default())
        }
        Err(e) => {
            release_new_page(as_, cpu, pfn);
            Err(e)
        }
    }
}

fn file_error(addr: u64, e: FileFaultError) -> FaultError {
    match e {
        FileFaultError::NoMemory => FaultError::Oom,
        FileFaultError::BeyondEof | FileFaultError::Io => bus(addr),
    }
}

/// `do_fault` on an empty entry of a file or shmem VMA: `do_read_fault`, `do_shared_fault`
/// or `do_cow_fault`.
fn do_fault(
    ctx: &mut CpuCtx,
    as_: &AddressSpace,
    vma: &Vma,
    va: u64,
    req: &FaultReq,
) -> Result<Handled, FaultError> {
    let sys = &*as_.sys;
    let file = vma.file.as_ref().expect("a file VMA");
    let cpu = ctx.id();
    let index = vma.linear_index(va);
    if index >= file.size_pages() {
        return Err(bus(req.addr));
    }
    let shared = vma.flags.contains(VmFlags::SHARED);
    if req.write && !shared {
        // do_cow_fault: a private copy of the file page.
        let anon = vma.anon_vma.as_ref().ok_or(FaultError::NeedAnonVma)?;
        let fp = file
            .fault(cpu, index)
            .map_err(|e| file_error(req.addr, e))?;
        let new = match alloc_user_page(as_, cpu, false) {
            Ok(p) => p,
            Err(e) => {
                sys.put_page(cpu, fp.pfn);
                return Err(e);
            }
        };
        sys.mem
            .copy_frame(new, fp.pfn)
            .expect("both frames are in RAM");
        sys.put_page(cpu, fp.pfn);
        init_anon_page(as_, new, anon.id, index);
        return match fill(ctx, as_, va, new, vma.flags.page_prot()) {
            Ok(true) => {
                as_.core.add_rss(RssKind::Anon, 1);
                sys.hooks.lru.add_new_anon(cpu, new);
                ctx.events.cow_copies += 1;
                Ok(Handled {
                    cow_broken: false,
                    major: fp.major,
                })
            }
            Ok(false) => {
                release_new_page(as_, cpu, new);
                Ok(Handled::default())
            }
            Err(e) => {
                release_new_page(as_, cpu, new);
                Err(e)
            }
        };
    }
    let fp = file
        .fault(cpu, index)
        .map_err(|e| file_error(req.addr, e))?;
    if req.write {
        file.page_mkwrite(cpu, fp.pfn, index);
    }
    let prot = if shared && (req.write || !file.wants_writenotify()) {
        vma.flags.page_prot()
    } else {
        vma.flags.page_prot() - Prot::WRITE
    };
    let page = sys.mem.page(fp.pfn);
    page.add_mapcount(1);
    match fill(ctx, as_, va, fp.pfn, prot) {
        Ok(true) => {
            let kind = if file.is_shmem() {
                RssKind::Shmem
            } else {
                RssKind::File
            };
            as_.core.add_rss(kind, 1);
            if fp.major {
                ctx.events.pgmajfault += 1;
            }
            Ok(Handled {
                cow_broken: false,
                major: fp.major,
            })
        }
        r => {
            page.add_mapcount(-1);
            sys.put_page(cpu, fp.pfn);
            r.map(|_| Handled::default())
        }
    }
}

/// `do_swap_page`: brings the page of a swap entry back and maps it in place of the entry.
fn do_swap_page(
    ctx: &mut CpuCtx,
    as_: &AddressSpace,
    vma: &Vma,
    va: u64,
    orig: Pte,
    entry: SwapEntry,
    req: &FaultReq,
) -> Result<Handled, FaultError> {
    let sys = &*as_.sys;
    if entry == BUSY {
        // Another CPU is replacing the entry under the page-table lock: wait for it.
        drop(lock_spin(ctx.mmu(), &as_.core.ptl));
        ctx.events.spurious += 1;
        return Ok(Handled::default());
    }
    let anon = vma.anon_vma.as_ref().ok_or(FaultError::NeedAnonVma)?;
    let cpu = ctx.id();
    let si = sys.hooks.swap.swap_in(cpu, entry).map_err(|e| match e {
        SwapError::NoMemory => FaultError::Oom,
        SwapError::Invalid | SwapError::Io => bus(req.addr),
    })?;
    let ptl = lock_spin(ctx.mmu(), &as_.core.ptl);
    if pt::read_pte(&sys.mem, as_.core.mm.root(), sys.levels, va) != orig {
        drop(ptl);
        sys.put_page(cpu, si.pfn);
        ctx.events.spurious += 1;
        return Ok(Handled::default());
    }
    let page = sys.mem.page(si.pfn);
    // A page still in the swap cache keeps the anon_vma it was created under, when this VMA
    // is linked to it (another process of the fork tree may map it too).
    let keeps = page.test(PageFlags::ANON) && vma.anon_chain().any(|a| a.id == page.mapping());
    if !keeps {
        page.set(PageFlags::ANON | PageFlags::SWAPBACKED | PageFlags::UPTODATE);
        page.set_mapping(anon.id);
        page.set_index(vma.linear_index(va));
    }
    page.add_mapcount(1);
    let prot = if req.write && page.refcount() == 1 {
        vma.flags.page_prot()
    } else {
        vma.flags.shared_or_readonly_prot()
    };
    // The swap entry's slot holds no frame, so map() replaces it; its table exists.
    as_.core
        .mm
        .map(ctx.mmu(), VirtAddr(va), si.pfn, prot)
        .expect("the swap entry's page table exists");
    as_.core.add_rss(RssKind::Swap, -1);
    as_.core.add_rss(RssKind::Anon, 1);
    drop(ptl);
    sys.hooks.swap.swap_free(cpu, entry);
    if si.major {
        ctx.events.pgmajfault += 1;
    }
    Ok(Handled {
        cow_broken: false,
        major: si.major,
    })
}

/// An entry that grants less than its VMA (left `PROT_NONE` or without exec): give it the
/// VMA's protection.
fn fix_protection(
    ctx: &mut CpuCtx,
    as_: &AddressSpace,
    vma: &Vma,
    va: u64,
    orig: Pte,
) -> Result<Handled, FaultError> {
    let sys = &*as_.sys;
    let _ptl = lock_spin(ctx.mmu(), &as_.core.ptl);
    if pte_same(
        pt::read_pte(&sys.mem, as_.core.mm.root(), sys.levels, va),
        orig,
    ) {
        as_.core
            .mm
            .change_protection(
                ctx.mmu(),
                VirtAddr(va),
                VirtAddr(va + PAGE),
                vma.flags.shared_or_readonly_prot(),
            )
            .expect("page-aligned user range");
    }
    Ok(Handled::default())
}

/// `do_wp_page`: a write to a present read-only entry in a VMA that may write it.
fn do_wp_page(
    ctx: &mut CpuCtx,
    as_: &AddressSpace,
    vma: &Vma,
    va: u64,
    orig: Pte,
) -> Result<Handled, FaultError> {
    let sys = &*as_.sys;
    let core = &*as_.core;
    let cpu = ctx.id();
    let read = |sys: &crate::sys::VmSys| pt::read_pte(&sys.mem, core.mm.root(), sys.levels, va);
    let ptl = lock_spin(ctx.mmu(), &core.ptl);
    if !pte_same(read(sys), orig) {
        ctx.events.spurious += 1;
        return Ok(Handled::default());
    }
    let pfn = orig.pfn();
    let from_zero = pfn == sys.zero_pfn;
    if !from_zero {
        let page = sys.mem.page(pfn);
        if vma.flags.contains(VmFlags::SHARED) {
            // wp_page_shared: tell the file, then make the entry writable.
            page.get();
            drop(ptl);
            if let Some(f) = &vma.file {
                f.page_mkwrite(cpu, pfn, vma.linear_index(va));
            }
            let ptl = lock_spin(ctx.mmu(), &core.ptl);
            if pte_same(read(sys), orig) {
                core.mm
                    .change_protection(
                        ctx.mmu(),
                        VirtAddr(va),
                        VirtAddr(va + PAGE),
                        vma.flags.page_prot(),
                    )
                    .expect("page-aligned user range");
            }
            drop(ptl);
            sys.put_page(cpu, pfn);
            return Ok(Handled::default());
        }
        if page.test(PageFlags::ANON) && page.refcount() == 1 {
            // wp_page_reuse: this mapping holds the only reference, and references are taken
            // only under the lock held here.
            let prot = vma.flags.page_prot();
            if prot != orig.prot() {
                core.mm
                    .change_protection(ctx.mmu(), VirtAddr(va), VirtAddr(va + PAGE), prot)
                    .expect("page-aligned user range");
            }
            ctx.events.pgreuse += 1;
            return Ok(Handled {
                cow_broken: true,
                major: false,
            });
        }
        // Hold the source across the copy.
        page.get();
    }
    let Some(anon) = vma.anon_vma.as_ref() else {
        drop(ptl);
        sys.put_page(cpu, pfn);
        return Err(FaultError::NeedAnonVma);
    };
    drop(ptl);
    // wp_page_copy.
    let new = match alloc_user_page(as_, cpu, from_zero) {
        Ok(p) => p,
        Err(e) => {
            sys.put_page(cpu, pfn);
            return Err(e);
        }
    };
    if !from_zero {
        sys.mem
            .copy_frame(new, pfn)
            .expect("both frames are in RAM");
    }
    init_anon_page(as_, new, anon.id, vma.linear_index(va));
    let ptl = lock_spin(ctx.mmu(), &core.ptl);
    #[cfg(test)]
    let recheck = !as_.regress.cow_skips_pte_same_recheck;
    #[cfg(not(test))]
    let recheck = true;
    if recheck && !pte_same(read(sys), orig) {
        drop(ptl);
        release_new_page(as_, cpu, new);
        sys.put_page(cpu, pfn);
        ctx.events.spurious += 1;
        return Ok(Handled::default());
    }
    // Break before make: park a busy marker in the entry, flush, then install the copy.
    let old = replace_present(ctx, as_, va, |ctx| {
        core.mm
            .map(ctx.mmu(), VirtAddr(va), new, vma.flags.page_prot())
            .expect("the marker's page table exists");
    });
    // The replaced mapping's reference (`orig`'s page), then the one held across the copy;
    // both after the flush.
    if old.has_frame() && old.pfn() != sys.zero_pfn {
        let page = sys.mem.page(old.pfn());
        page.add_mapcount(-1);
        core.add_rss(crate::mm::rss_kind(page.flags()), -1);
        sys.put_page(cpu, old.pfn());
    }
    if !from_zero {
        sys.put_page(cpu, pfn);
    }
    core.add_rss(RssKind::Anon, 1);
    sys.hooks.lru.add_new_anon(cpu, new);
    drop(ptl);
    ctx.events.cow_copies += 1;
    Ok(Handled {
        cow_broken: true,
        major: false,
    })
}

impl AddressSpace {
    /// Grows the stack VMA above `addr` down to it under the mmap write lock
    /// (`expand_stack`, 6.5+).
    pub(crate) fn expand_stack(&self, ctx: &mut CpuCtx, addr: u64) -> Result<(), ()> {
        let mut st = self.state.write(ctx.mmu());
        let cpu = ctx.id();
        match st.vmas.find(addr) {
            Some(v) if v.start <= addr => Ok(()),
            Some(v) if v.flags.contains(VmFlags::GROWSDOWN) => {
                self.expand_downwards(&mut st, cpu, addr)
            }
            _ => Err(()),
        }
    }

    /// `expand_downwards`: checks the guard gap, `RLIMIT_STACK`, the mlock limit and the
    /// commitment, then moves the stack VMA's start down to the page of `addr`.
    pub(crate) fn expand_downwards(
        &self,
        st: &mut MmState,
        cpu: CpuId,
        addr: u64,
    ) -> Result<(), ()> {
        let addr = addr & !(PAGE - 1);
        if addr < self.sys.cfg.mmap_min_addr {
            return Err(());
        }
        let v = st.vmas.find(addr).ok_or(())?;
        if v.start <= addr || !v.flags.contains(VmFlags::GROWSDOWN) {
            return Err(());
        }
        if let Some(prev) = st.vmas.prev(v.start) {
            if !prev.flags.contains(VmFlags::GROWSDOWN)
                && prev.flags.is_accessible()
                && addr - prev.end < self.sys.cfg.stack_guard_gap
            {
                return Err(());
            }
        }
        let grow = (v.start - addr) / PAGE;
        if v.end - addr > st.rlimits.stack {
            return Err(());
        }
        let flags = v.flags;
        if flags.contains(VmFlags::LOCKED) && st.locked_vm() + grow > st.rlimits.memlock / PAGE {
            return Err(());
        }
        if !st.may_expand_vm(flags, grow) {
            return Err(());
        }
        if flags.contains(VmFlags::ACCOUNT) {
            self.sys.vm_enough_memory(grow).map_err(|_| ())?;
        }
        let new = v.derive(self.sys.new_id(), addr, v.end);
        let old = v.start;
        self.vma_replace(st, cpu, &[old], vec![new]);
        st.vm_stat_account(flags, grow as i64);
        if flags.contains(VmFlags::LOCKED) {
            st.add_locked((grow) as i64);
        }
        Ok(())
    }
}
