//! Per-CPU access: pinning a CPU ([`SlabCpu`]), the allocation and free fast paths on the CPU
//! slab, the slow path (`___slab_alloc`), flushing, shrinking and destroying.
//!
//! # Pinning
//! A simulated CPU is an OS thread, and kernel code runs on the CPU thread that entered it, so
//! a CPU's per-CPU slabs belong to whoever runs on that CPU. [`SlabAllocator::cpu`] pins the
//! CPU for the calling thread:
//! - **exclusive** when nobody else holds it: the fast path is a load, one simulated-RAM access
//!   and a plain store, since nothing else can run on this CPU meanwhile (SLUB's
//!   `this_cpu_cmpxchg_double` is not a locked instruction either: only the CPU itself, through
//!   interrupts and preemption, races with it);
//! - **shared** when others share it ([`SlabAllocator::cpu_shared`]): tasks preempting each
//!   other on one CPU. The fast path then commits with a compare-and-swap of the packed
//!   (freelist, tid) word, which every operation changes, so a stale fast path fails instead
//!   of reinstalling an allocated object (race B10, fixed by 8a5ec0ba42c4);
//! - **remote** when another thread holds it exclusively: the per-CPU slabs are not touched;
//!   objects come from and go to the node lists under `list_lock`, as SLUB does for debug caches.
//!
//! Pins never block, so no pin can deadlock. The pin is released when the handle drops.

use crate::cache::{fl_encode, KmemCache, KmemCacheCpu, FL_BUSY, FL_MASK, FL_NIL};
use crate::error::{DestroyError, SlabError};
use crate::sizes::{get_order, kmalloc_index, KMALLOC_MAX_SIZE};
use crate::slab::{FREE_END, LARGE_KMALLOC};
use crate::slabcore::{PageOps, SlabCore, PIN_EXCL};
use crate::{KernelObject, ObjSource, SlabAllocator};
use mm_buddy::{AllocError, Frame, PcpLocked};
use mm_phys::PageFlags;
use mm_sync::sync::atomic::Ordering;
use mm_sync::sync::Arc;
use mm_types::{CpuId, Gfp, Order, Pfn, PhysAddr};
use std::cell::{Cell, RefCell, RefMut};
use std::fmt;
use std::marker::PhantomData;

/// An allocated slab or kmalloc object: its physical address in simulated RAM.
///
/// Move-only, so one allocation cannot be freed twice through safe use. A layer that stores
/// the address elsewhere (in another object in RAM) takes the handle apart with
/// [`SlabObj::into_raw`] and rebuilds it with [`SlabObj::from_raw`] to free it.
#[must_use = "a slab object that is dropped is leaked; free it through a SlabCpu"]
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlabObj {
    addr: PhysAddr,
}

static_assertions::assert_not_impl_any!(SlabObj: Clone, Copy);

impl SlabObj {
    /// Returns the object's physical address.
    #[inline]
    pub fn addr(&self) -> PhysAddr {
        self.addr
    }
    /// Takes the handle apart; the caller now owns the object by its address.
    #[inline]
    pub fn into_raw(self) -> PhysAddr {
        self.addr
    }
    /// Rebuilds a handle from [`SlabObj::into_raw`]. The caller must own the object.
    #[inline]
    pub fn from_raw(addr: PhysAddr) -> SlabObj {
        SlabObj { addr }
    }
}

/// How a [`SlabCpu`] holds its CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    /// The only user of the CPU's slabs: plain-store fast path.
    Exclusive,
    /// One of several users of the CPU's slabs: compare-and-swap fast path with tid.
    Shared,
    /// The CPU is held exclusively by another thread: node lists only.
    Remote,
}

/// A thread's pin of one simulated CPU, through which it allocates and frees
/// (`kmem_cache_alloc`, `kmem_cache_free`, `kmalloc`, `kfree` on `smp_processor_id()`).
///
/// Not `Send`: the pin belongs to the thread that took it, as per-CPU access belongs to the
/// code running on that CPU. Dropping it releases the CPU.
pub struct SlabCpu<'a> {
    slab: &'a SlabAllocator,
    cpu: CpuId,
    mode: PinMode,
    /// The CPU's pcp lists, when the caller holds them across its quantum: slab pages then
    /// come from and go to them.
    pcp: Option<RefCell<PcpLocked<'a>>>,
    /// The kmalloc cache of this handle's last `kmalloc`: a `kfree` of an object in that
    /// cache's CPU slab needs no page-descriptor lookup to find its cache.
    kfree_hint: Cell<Option<&'a KmemCache>>,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for SlabCpu<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlabCpu")
            .field("cpu", &self.cpu)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Pins `cpu`: exclusively if `exclusive` is asked and nobody holds it, else shared if it is
/// not held exclusively, else remotely.
pub(crate) fn pin(core: &SlabCore, cpu: CpuId, exclusive: bool) -> PinMode {
    let w = &core.pins[cpu.index()].word;
    if exclusive
        && w.compare_exchange(0, PIN_EXCL, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        return PinMode::Exclusive;
    }
    let mut cur = w.load(Ordering::Relaxed);
    loop {
        if cur & PIN_EXCL != 0 {
            return PinMode::Remote;
        }
        match w.compare_exchange(cur, cur + 1, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return PinMode::Shared,
            Err(v) => cur = v,
        }
    }
}

impl<'a> SlabCpu<'a> {
    pub(crate) fn new(
        slab: &'a SlabAllocator,
        cpu: CpuId,
        exclusive: bool,
        pcp: Option<PcpLocked<'a>>,
    ) -> SlabCpu<'a> {
        assert!(
            cpu.index() < slab.core.nr_cpus,
            "{cpu:?} is not a CPU of this machine"
        );
        SlabCpu {
            slab,
            cpu,
            mode: pin(&slab.core, cpu, exclusive),
            pcp: pcp.map(RefCell::new),
            kfree_hint: Cell::new(None),
            _not_send: PhantomData,
        }
    }

    /// Returns the CPU's held pcp lists, if this pin was made with them
    /// ([`SlabAllocator::cpu_with_pcp`]), for the CPU's own page allocations and its
    /// [`PcpLocked::relax`] points.
    pub fn pcp(&self) -> Option<RefMut<'_, PcpLocked<'a>>> {
        self.pcp.as_ref().map(RefCell::borrow_mut)
    }

    /// Releases the CPU and hands back the held pcp lists.
    pub fn into_pcp(mut self) -> Option<PcpLocked<'a>> {
        self.pcp.take().map(RefCell::into_inner)
    }

    /// Returns the pinned CPU.
    pub fn cpu(&self) -> CpuId {
        self.cpu
    }

    /// Returns how the CPU is held.
    pub fn mode(&self) -> PinMode {
        self.mode
    }

    /// Returns simulated RAM, where the objects' bytes are.
    #[inline]
    pub fn mem(&self) -> &'a mm_phys::PhysMem {
        &self.slab.core.mem
    }

    #[inline]
    fn core(&self) -> &'a SlabCore {
        &self.slab.core
    }

    // ----- fast paths -----

    /// Allocates an object from `cache` (`kmem_cache_alloc`). `__GFP_ZERO` zeroes it.
    #[inline]
    pub fn alloc(&self, cache: &KmemCache, gfp: Gfp) -> Result<SlabObj, SlabError> {
        let obj = match self.alloc_fast(cache) {
            Some(obj) => obj,
            None => self.alloc_slow(cache, gfp)?,
        };
        if gfp.contains(Gfp::ZERO) {
            self.zero(cache, obj);
        }
        Ok(SlabObj {
            addr: PhysAddr(obj),
        })
    }

    /// Pops the CPU freelist (`slab_alloc_node` fast path), or returns `None` for the slow path.
    #[inline(always)]
    fn alloc_fast(&self, cache: &KmemCache) -> Option<u64> {
        if self.mode == PinMode::Remote {
            return None;
        }
        let c = cache.cpu_slab(self.cpu);
        let mem = &*self.core().mem;
        loop {
            let cur = c.state.load(Ordering::Acquire);
            let fl = cur & FL_MASK;
            if fl >= FL_BUSY {
                return None;
            }
            let obj = fl << 3;
            // A stale read (the object was taken meanwhile) is harmless: the commit fails.
            let next = cache.get_freepointer(mem, obj);
            if self.commit(c, cur, fl_encode(next) | cache.next_tid(cur)) {
                return Some(obj);
            }
        }
    }

    /// Frees `obj` to `cache` (`kmem_cache_free`): onto the CPU freelist when it belongs to
    /// this CPU's slab, else to its slab under the list lock.
    #[inline]
    pub fn free(&self, cache: &KmemCache, obj: SlabObj) {
        let addr = obj.addr.0;
        if self.mode != PinMode::Remote && self.free_fast(cache, addr) {
            return;
        }
        cache.free_to_slab(self.core(), self, addr);
    }

    /// Pushes onto the CPU freelist (`do_slab_free` fast path); false for the slow path.
    #[inline(always)]
    fn free_fast(&self, cache: &KmemCache, addr: u64) -> bool {
        let c = cache.cpu_slab(self.cpu);
        let mem = &*self.core().mem;
        loop {
            let cur = c.state.load(Ordering::Acquire);
            let fl = cur & FL_MASK;
            if fl == FL_BUSY {
                return false;
            }
            // The range is read after the state: if it changed since, so did the tid.
            let base = c.base.load(Ordering::Relaxed);
            let end = c.end.load(Ordering::Relaxed);
            if addr < base || addr >= end {
                return false;
            }
            let next = if fl == FL_NIL { FREE_END } else { fl << 3 };
            if next == addr {
                double_free(cache, addr);
            }
            cache.set_freepointer(mem, addr, next);
            if self.commit(c, cur, fl_encode(addr) | cache.next_tid(cur)) {
                return true;
            }
        }
    }

    /// Publishes a fast-path update of the CPU state.
    #[inline(always)]
    fn commit(&self, c: &KmemCacheCpu, cur: u64, new: u64) -> bool {
        if self.mode == PinMode::Exclusive {
            c.state.store(new, Ordering::Release);
            true
        } else {
            c.state
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        }
    }

    fn zero(&self, cache: &KmemCache, obj: u64) {
        let mem = &*self.core().mem;
        let words = (cache.object_size() as u64).div_ceil(8);
        for i in 0..words {
            mem.write_u64(PhysAddr(obj + 8 * i), 0)
                .expect("slab objects lie in simulated RAM");
        }
    }

    // ----- kmalloc -----

    /// Allocates `size` bytes (`kmalloc`): from the kmalloc cache of its size class
    /// (`kmalloc-rcl-*` for `__GFP_RECLAIMABLE`), or whole pages from the buddy allocator above
    /// 8 KiB (`kmalloc_large`).
    #[inline]
    pub fn kmalloc(&self, size: usize, gfp: Gfp) -> Result<SlabObj, SlabError> {
        match kmalloc_index(size) {
            Some(idx) => {
                let kind = gfp.contains(Gfp::RECLAIMABLE) as usize;
                let cache: &'a KmemCache = &self.slab.kmalloc[kind][idx];
                self.kfree_hint.set(Some(cache));
                self.alloc(cache, gfp)
            }
            None => self.kmalloc_large(size, gfp),
        }
    }

    /// Frees a kmalloc object or any slab object (`kfree`), finding its cache from the page
    /// descriptor.
    ///
    /// # Panics
    /// If `obj` is neither a slab object nor a large kmalloc block.
    #[inline]
    pub fn kfree(&self, obj: SlabObj) {
        if let Some(cache) = self.kfree_hint.get() {
            // An object inside that cache's CPU slab range belongs to that cache.
            if self.mode != PinMode::Remote && self.free_fast(cache, obj.addr.0) {
                return;
            }
        }
        let page = self.core().mem.page(obj.addr.pfn());
        let mapping = page.mapping();
        if !page.test(PageFlags::SLAB) {
            assert!(
                mapping == LARGE_KMALLOC,
                "kfree of {:?}, which is not a kmalloc object",
                obj.addr
            );
            return self.kfree_large(obj);
        }
        let cache = self.core().cache_by_mapping(mapping);
        self.free(cache, obj);
    }

    #[cold]
    fn kmalloc_large(&self, size: usize, gfp: Gfp) -> Result<SlabObj, SlabError> {
        if size == 0 {
            return Err(SlabError::ZeroSize);
        }
        if size > KMALLOC_MAX_SIZE {
            return Err(SlabError::TooLarge { size });
        }
        let order = Order::new(get_order(size as u64)).expect("bounded by KMALLOC_MAX_SIZE");
        let frame = self.alloc_pages(order, gfp)?;
        let (pfn, order) = frame.into_raw();
        let p = self.core().mem.page(pfn);
        p.set_mapping(LARGE_KMALLOC);
        p.set_private(order.get() as u64);
        self.core().account_pages(false, order.pages() as i64);
        Ok(SlabObj { addr: pfn.phys() })
    }

    #[cold]
    fn kfree_large(&self, obj: SlabObj) {
        let pfn = obj.addr.pfn();
        assert!(
            obj.addr.page_offset() == 0,
            "kfree of {:?} inside a large kmalloc block",
            obj.addr
        );
        let p = self.core().mem.page(pfn);
        let order = Order::new(p.private() as u32).expect("order recorded at kmalloc");
        p.set_mapping(0);
        p.set_private(0);
        self.core().account_pages(false, -(order.pages() as i64));
        self.free_pages(Frame::from_raw(pfn, order));
    }

    // ----- typed kernel objects -----

    /// Allocates a kernel object of type `T` from its cache (or kmalloc class).
    #[inline]
    pub fn alloc_obj<T: KernelObject>(&self, gfp: Gfp) -> Result<crate::KObj<T>, SlabError> {
        let obj = match T::SOURCE {
            ObjSource::Cache(c) => self.alloc(self.slab.std_cache(c), gfp)?,
            ObjSource::Kmalloc(size) => self.kmalloc(size, gfp)?,
        };
        Ok(crate::KObj::from_obj(obj))
    }

    /// Frees a kernel object of type `T`.
    #[inline]
    pub fn free_obj<T: KernelObject>(&self, obj: crate::KObj<T>) {
        let obj = obj.into_obj();
        match T::SOURCE {
            ObjSource::Cache(c) => self.free(self.slab.std_cache(c), obj),
            ObjSource::Kmalloc(_) => self.kfree(obj),
        }
    }

    // ----- slow path -----

    /// Moves the CPU state to BUSY (bumping the tid) and returns the CPU freelist it held, as
    /// a free pointer, and the BUSY state. The caller holds the CPU's local lock.
    fn claim(&self, cache: &KmemCache, c: &KmemCacheCpu) -> (u64, u64) {
        let mut cur = c.state.load(Ordering::Acquire);
        loop {
            let fl = cur & FL_MASK;
            debug_assert!(fl != FL_BUSY, "two slow paths on one CPU slab");
            let busy = cache.next_tid(cur) | FL_BUSY;
            match c
                .state
                .compare_exchange(cur, busy, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return (if fl == FL_NIL { FREE_END } else { fl << 3 }, busy),
                Err(v) => cur = v,
            }
        }
    }

    /// Ends a claim: the CPU freelist becomes `freelist` under a new tid.
    fn publish(&self, cache: &KmemCache, c: &KmemCacheCpu, busy: u64, freelist: u64) {
        c.state.store(
            fl_encode(freelist) | cache.next_tid(busy),
            Ordering::Release,
        );
    }

    /// Hands out the first object of `freelist` and publishes the rest.
    fn take_first(&self, cache: &KmemCache, c: &KmemCacheCpu, busy: u64, freelist: u64) -> u64 {
        let next = cache.get_freepointer(&self.core().mem, freelist);
        self.publish(cache, c, busy, next);
        freelist
    }

    /// `___slab_alloc`: the CPU freelist is empty (or a slow path was running). Refill it from
    /// the objects remote CPUs freed to the CPU slab, else from a partial slab, else from a new
    /// slab, allocated with no lock of this crate held.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, cache: &KmemCache, gfp: Gfp) -> Result<u64, SlabError> {
        let core = self.core();
        if self.mode == PinMode::Remote {
            return cache.alloc_single(core, self, gfp);
        }
        let c = cache.cpu_slab(self.cpu);
        {
            let _local = c.lock.lock();
            let (fl, busy) = self.claim(cache, c);
            if fl != FREE_END {
                return Ok(self.take_first(cache, c, busy, fl));
            }
            if c.end.load(Ordering::Relaxed) != 0 {
                let head = PhysAddr(c.base.load(Ordering::Relaxed)).pfn();
                let f = cache.get_freelist(core, head);
                if f != FREE_END {
                    return Ok(self.take_first(cache, c, busy, f));
                }
                // The slab was full and is now on the full list.
                c.base.store(0, Ordering::Relaxed);
                c.end.store(0, Ordering::Relaxed);
            }
            if let Some((head, f)) = cache.get_partial(core) {
                self.install(cache, c, head);
                return Ok(self.take_first(cache, c, busy, f));
            }
            self.publish(cache, c, busy, FREE_END);
        }
        let (head, f) = cache.new_slab(core, self, gfp, true)?;
        let (obj, retired) = {
            let _local = c.lock.lock();
            let (fl, busy) = self.claim(cache, c);
            // Another user of this CPU may have installed a slab meanwhile: retire it below,
            // after the local lock is dropped (retiring may free pages).
            let retired = (c.end.load(Ordering::Relaxed) != 0)
                .then(|| (PhysAddr(c.base.load(Ordering::Relaxed)).pfn(), fl));
            debug_assert!(
                retired.is_some() || fl == FREE_END,
                "a CPU freelist without a slab"
            );
            self.install(cache, c, head);
            (self.take_first(cache, c, busy, f), retired)
        };
        if let Some((old, fl)) = retired {
            cache.deactivate_slab(core, self, old, fl);
        }
        Ok(obj)
    }

    /// Makes `head` the CPU slab (under a claim).
    fn install(&self, cache: &KmemCache, c: &KmemCacheCpu, head: Pfn) {
        let order = crate::slab::meta(&self.core().mem, head).order;
        let (base, end) = cache.slab_range(head, order);
        c.base.store(base, Ordering::Relaxed);
        c.end.store(end, Ordering::Relaxed);
    }

    /// Gives this CPU's slab of `cache` back to the node (`flush_slab`), freeing pages through
    /// `pages`. Requires a pin.
    pub(crate) fn flush_cpu_slab(&self, cache: &KmemCache, pages: &dyn PageOps) {
        debug_assert!(self.mode != PinMode::Remote);
        let c = cache.cpu_slab(self.cpu);
        let (head, fl) = {
            let _local = c.lock.lock();
            let (fl, busy) = self.claim(cache, c);
            let slab = (c.end.load(Ordering::Relaxed) != 0)
                .then(|| PhysAddr(c.base.load(Ordering::Relaxed)).pfn());
            c.base.store(0, Ordering::Relaxed);
            c.end.store(0, Ordering::Relaxed);
            self.publish(cache, c, busy, FREE_END);
            match slab {
                Some(h) => (h, fl),
                None => return,
            }
        };
        cache.deactivate_slab(self.core(), pages, head, fl);
    }

    /// Runs `f` with a pin of `cpu` (this handle for its own CPU); `None` if that CPU is held
    /// exclusively by another thread.
    fn with_cpu<R>(&self, cpu: CpuId, f: impl FnOnce(&SlabCpu<'_>) -> R) -> Option<R> {
        if cpu == self.cpu {
            return (self.mode != PinMode::Remote).then(|| f(self));
        }
        let other = SlabCpu::new(self.slab, cpu, true, None);
        (other.mode != PinMode::Remote).then(|| f(&other))
    }

    /// Flushes every CPU's slab of `cache` (`flush_all`); returns the CPUs held by other
    /// threads, which were asked to flush when they release their pin.
    pub(crate) fn flush_all(&self, cache: &KmemCache) -> Vec<CpuId> {
        let mut busy = Vec::new();
        for i in 0..self.core().nr_cpus {
            let cpu = CpuId(i as u32);
            if self
                .with_cpu(cpu, |h| h.flush_cpu_slab(cache, self))
                .is_none()
            {
                self.core().pins[i].flush_req.store(true, Ordering::Release);
                busy.push(cpu);
            }
        }
        busy
    }

    /// Shrinks `cache` (`kmem_cache_shrink`): flushes the CPU slabs and frees every empty
    /// slab, `min_partial` notwithstanding. Returns the pages freed.
    pub fn shrink(&self, cache: &KmemCache) -> u64 {
        self.flush_all(cache);
        cache.discard_empty_partials(self.core(), self)
    }

    /// Destroys `cache` (`kmem_cache_destroy`). Refuses, with the kernel's leak report, while
    /// objects are allocated; the cache then stays usable.
    pub fn destroy(&self, cache: &Arc<KmemCache>) -> Result<(), DestroyError> {
        let core = self.core();
        if cache.is_destroyed() {
            return Err(DestroyError::AlreadyDestroyed(cache.name().to_string()));
        }
        let busy = self.flush_all(cache);
        cache.discard_empty_partials(core, self);
        let slabs = cache.node.lock().nr_slabs;
        if slabs > 0 {
            if let Some(cpu) = busy.first() {
                return Err(DestroyError::CpuBusy {
                    name: cache.name().to_string(),
                    cpu: cpu.0,
                });
            }
            let (live, report) = cache.leak_report(&core.mem);
            return Err(DestroyError::Busy {
                name: cache.name().to_string(),
                live,
                report,
            });
        }
        core.unlist(cache);
        core.free_descriptors(cache, self);
        Ok(())
    }

    /// Flushes this CPU's slabs of every cache (the work a refused flush request left).
    fn flush_requested(&self) {
        for cache in self.core().live_caches() {
            self.flush_cpu_slab(&cache, self);
        }
    }

    /// Returns this CPU's slab of `cache` and its freelist, for the invariant checker.
    pub(crate) fn cpu_slab_snapshot(&self, cache: &KmemCache) -> Option<(Pfn, u64)> {
        crate::cache::cpu_slab_snapshot(cache.cpu_slab(self.cpu))
    }
}

/// Reports a free of the object at the head of the CPU freelist (the naive double-free check
/// of `CONFIG_SLAB_FREELIST_HARDENED`): a simulator bug.
#[cold]
#[inline(never)]
fn double_free(cache: &KmemCache, addr: u64) -> ! {
    panic!("double free of {addr:#x} in cache {}", cache.name())
}

impl PageOps for SlabCpu<'_> {
    fn alloc_pages(&self, order: Order, gfp: Gfp) -> Result<Frame, AllocError> {
        match &self.pcp {
            // PcpLocked releases its lock around the slow path, which may reclaim.
            Some(p) => p.borrow_mut().alloc(order, gfp),
            None => self.core().buddy.alloc(self.cpu, order, gfp),
        }
    }
    fn free_pages(&self, frame: Frame) {
        match &self.pcp {
            Some(p) => p.borrow_mut().free(frame),
            None => self.core().buddy.free(self.cpu, frame),
        }
    }
}

impl Drop for SlabCpu<'_> {
    fn drop(&mut self) {
        let pin = &self.core().pins[self.cpu.index()];
        match self.mode {
            PinMode::Exclusive => {
                if pin.flush_req.load(Ordering::Acquire) {
                    pin.flush_req.store(false, Ordering::Relaxed);
                    self.flush_requested();
                }
                pin.word.store(0, Ordering::Release);
            }
            PinMode::Shared => {
                if pin.flush_req.swap(false, Ordering::AcqRel) {
                    self.flush_requested();
                }
                pin.word.fetch_sub(1, Ordering::Release);
            }
            PinMode::Remote => {}
        }
    }
}
