//! `struct kmem_cache`: one cache's geometry, its per-CPU slabs and its node lists, and the
//! slab-level operations every path shares (new, discard, freeze, unfreeze, free to a slab).

use crate::error::{InvariantError, SlabError};
use crate::sizes::{Layout, SlabFlags};
use crate::slab::{
    clear_slab_pages, init_slab_pages, meta, set_meta, set_slab_freelist, slab_freelist, slab_head,
    OnList, SlabMeta, FREE_END,
};
use crate::slabcore::{PageOps, SlabCore};
use mm_phys::{PageFlags, PageList, PhysMem};
use mm_sync::sync::atomic::{AtomicU64, Ordering};
use mm_sync::sync::SpinLock;
use mm_sync::untracked;
use mm_types::{CpuId, Gfp, Order, Pfn, PhysAddr};
use std::collections::BTreeSet;
use std::fmt;

/// A constructor, run on every object when its slab is created (`s->ctor`). It gets simulated
/// RAM and the object's address. Objects must be back in their constructed state when freed.
pub type Ctor = Box<dyn Fn(&PhysMem, PhysAddr) + Send + Sync>;

/// Low bits of the per-CPU state word: the CPU freelist head as `addr >> 3`.
pub(crate) const FL_BITS: u32 = 40;
pub(crate) const FL_MASK: u64 = (1 << FL_BITS) - 1;
/// The CPU freelist is empty.
pub(crate) const FL_NIL: u64 = FL_MASK;
/// A slow path owns the CPU slab: fast paths must not commit.
pub(crate) const FL_BUSY: u64 = FL_MASK - 1;
/// One step of the transaction id in the high 24 bits (`TID_STEP`).
pub(crate) const TID_ONE: u64 = 1 << FL_BITS;

/// Encodes a free pointer (an object address or [`FREE_END`]) for the state word.
#[inline]
pub(crate) const fn fl_encode(ptr: u64) -> u64 {
    (ptr >> 3) & FL_MASK
}

/// `struct kmem_cache_cpu`: one CPU's active slab of one cache.
///
/// `state` packs the CPU freelist (low 40 bits) with a transaction id (high 24 bits) that
/// changes on every operation, as SLUB pairs `c->freelist` with `c->tid`: a fast path that read
/// the state and is overtaken commits nothing (race B10). `base..end` is the active slab's
/// object range (`end` is 0 without a slab); it changes only while `state` holds [`FL_BUSY`].
#[repr(align(64))]
pub(crate) struct KmemCacheCpu {
    pub(crate) state: AtomicU64,
    pub(crate) base: AtomicU64,
    pub(crate) end: AtomicU64,
    /// `local_lock`: serializes this CPU's slow paths for this cache.
    pub(crate) lock: SpinLock<()>,
}

impl KmemCacheCpu {
    fn new() -> KmemCacheCpu {
        KmemCacheCpu {
            state: AtomicU64::new(FL_NIL),
            base: AtomicU64::new(0),
            end: AtomicU64::new(0),
            lock: SpinLock::new(()),
        }
    }
}

/// `struct kmem_cache_node`: the node's partial and full slabs and its counters.
#[derive(Debug, Default)]
pub(crate) struct NodeLists {
    pub(crate) partial: PageList,
    pub(crate) full: PageList,
    /// Slabs of the node, CPU slabs included (`nr_slabs`).
    pub(crate) nr_slabs: u64,
    /// Object capacity of those slabs (`total_objects`).
    pub(crate) total_objects: u64,
}

/// A slab cache (`struct kmem_cache`): objects of one size, in slabs of one order.
///
/// Get one from [`crate::SlabAllocator::create_cache`] or the boot caches; allocate and free
/// through a [`crate::SlabCpu`].
pub struct KmemCache {
    pub(crate) id: u32,
    name: String,
    pub(crate) l: Layout,
    flags: SlabFlags,
    ctor: Option<Ctor>,
    pub(crate) cpus: Box<[KmemCacheCpu]>,
    /// `n->list_lock` and the lists it guards (one node).
    pub(crate) node: SpinLock<NodeLists>,
    pub(crate) dead: untracked::AtomicBool,
    /// The cache's own `kmem_cache` and `kmem_cache_node` objects, once allocated.
    pub(crate) descriptors: SpinLock<Option<(PhysAddr, PhysAddr)>>,
    /// Under loom, the tid increment of the fast path: 0 reproduces the 2008 fast path that
    /// compared the freelist head only (race B10).
    #[cfg(mm_loom)]
    pub(crate) tid_step: untracked::AtomicU64,
}

impl fmt::Debug for KmemCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmemCache")
            .field("name", &self.name)
            .field("object_size", &self.l.object_size)
            .field("size", &self.l.size)
            .field("order", &self.l.order)
            .field("objects", &self.l.objects)
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

/// One cache's line of `/proc/slabinfo` (`struct slabinfo` from `get_slabinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlabInfoRow {
    /// The cache name.
    pub name: String,
    /// `num_objs` minus the free objects of partial slabs (CPU slabs count as in use).
    pub active_objs: u64,
    /// Object capacity of all slabs.
    pub num_objs: u64,
    /// `s->size`.
    pub objsize: u32,
    /// Objects per slab.
    pub objperslab: u32,
    /// Pages per slab (`1 << order`).
    pub pagesperslab: u32,
    /// Equal to `num_slabs` under SLUB.
    pub active_slabs: u64,
    /// Slabs.
    pub num_slabs: u64,
}

/// Object counts of one cache, for tests and the invariant checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheCounts {
    /// Slabs.
    pub slabs: u64,
    /// Object capacity of all slabs.
    pub total_objects: u64,
    /// Free objects on slab freelists and on the freelists of CPUs that could be inspected.
    pub free_objects: u64,
    /// Pages held by the cache's slabs.
    pub pages: u64,
    /// CPUs whose freelist could not be inspected (held by another thread).
    pub cpus_skipped: u32,
}

impl KmemCache {
    pub(crate) fn new(
        id: u32,
        name: String,
        l: Layout,
        flags: SlabFlags,
        ctor: Option<Ctor>,
        nr_cpus: usize,
    ) -> KmemCache {
        KmemCache {
            id,
            name,
            l,
            flags,
            ctor,
            cpus: (0..nr_cpus).map(|_| KmemCacheCpu::new()).collect(),
            node: SpinLock::new(NodeLists::default()),
            dead: untracked::AtomicBool::new(false),
            descriptors: SpinLock::new(None),
            #[cfg(mm_loom)]
            tid_step: untracked::AtomicU64::new(TID_ONE),
        }
    }

    /// Returns the cache name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Returns the size users asked for (`s->object_size`).
    pub fn object_size(&self) -> u32 {
        self.l.object_size
    }
    /// Returns the stride of objects in a slab, metadata and alignment included (`s->size`).
    pub fn size(&self) -> u32 {
        self.l.size
    }
    /// Returns the object alignment.
    pub fn align(&self) -> u32 {
        self.l.align
    }
    /// Returns where a free object keeps its free pointer (`s->offset`).
    pub fn free_pointer_offset(&self) -> u32 {
        self.l.offset
    }
    /// Returns the objects per slab of the preferred order.
    pub fn objects_per_slab(&self) -> u32 {
        self.l.objects
    }
    /// Returns the preferred slab order.
    pub fn order(&self) -> Order {
        Order::new(self.l.order).expect("calculate_order bounds the order")
    }
    /// Returns the pages of a slab of the preferred order.
    pub fn pages_per_slab(&self) -> u32 {
        1 << self.l.order
    }
    /// Returns `s->min_partial`.
    pub fn min_partial(&self) -> u64 {
        self.l.min_partial
    }
    /// Returns the cache flags.
    pub fn flags(&self) -> SlabFlags {
        self.flags
    }
    /// Returns true if the cache has a constructor.
    pub fn has_ctor(&self) -> bool {
        self.ctor.is_some()
    }
    /// Returns true if its pages count as SReclaimable (`SLAB_RECLAIM_ACCOUNT`).
    pub fn is_reclaimable(&self) -> bool {
        self.flags.contains(SlabFlags::RECLAIM_ACCOUNT)
    }
    /// Returns true once the cache has been destroyed.
    pub fn is_destroyed(&self) -> bool {
        self.dead.load(untracked::Ordering::Acquire)
    }

    /// Returns `cpu`'s `kmem_cache_cpu`.
    #[inline]
    pub(crate) fn cpu_slab(&self, cpu: CpuId) -> &KmemCacheCpu {
        &self.cpus[cpu.index()]
    }

    /// Returns the tid field of `state` advanced by one operation (`next_tid`).
    #[inline]
    pub(crate) fn next_tid(&self, state: u64) -> u64 {
        #[cfg(mm_loom)]
        let step = self.tid_step.load(untracked::Ordering::Relaxed);
        #[cfg(not(mm_loom))]
        let step = TID_ONE;
        (state & !FL_MASK).wrapping_add(step)
    }

    /// Reads the free pointer stored in free object `obj` (`get_freepointer`).
    #[inline]
    pub(crate) fn get_freepointer(&self, mem: &PhysMem, obj: u64) -> u64 {
        mem.read_u64(PhysAddr(obj + self.l.offset as u64))
            .expect("slab objects lie in simulated RAM")
    }

    /// Stores `next` as the free pointer of `obj` (`set_freepointer`).
    #[inline]
    pub(crate) fn set_freepointer(&self, mem: &PhysMem, obj: u64, next: u64) {
        mem.write_u64(PhysAddr(obj + self.l.offset as u64), next)
            .expect("slab objects lie in simulated RAM");
    }

    /// Returns the object range `base..end` of the slab at `head` of `order`.
    #[inline]
    pub(crate) fn slab_range(&self, head: Pfn, order: u32) -> (u64, u64) {
        let base = head.phys().0;
        let objects = crate::sizes::order_objects(order, self.l.size) as u64;
        (base, base + objects * self.l.size as u64)
    }

    /// Checks that `head` is a slab of this cache (`cache_from_obj`); a mismatch is a
    /// simulator bug.
    fn assert_owns(&self, mem: &PhysMem, head: Pfn, obj: u64) {
        let p = mem.page(head);
        assert!(
            p.test(PageFlags::SLAB) && p.mapping() == self.id as u64 + 1,
            "free of {:#x} to cache {}: the object is not in a slab of this cache",
            obj,
            self.name
        );
    }

    // ----- slab creation and destruction -----

    /// Allocates and formats a slab (`new_slab` → `allocate_slab`): frames from the buddy
    /// allocator (the preferred order without reclaim first, then the minimum order), the
    /// objects threaded on a freelist in address order, the constructor run on each.
    ///
    /// A `frozen` slab is handed to a CPU: its whole freelist is returned and the slab keeps
    /// none. Otherwise the slab keeps its freelist and `FREE_END` is returned. Takes no lock
    /// of this crate while the page allocator runs, so reclaim may call back into slab.
    pub(crate) fn new_slab(
        &self,
        core: &SlabCore,
        pages: &dyn PageOps,
        gfp: Gfp,
        frozen: bool,
    ) -> Result<(Pfn, u64), SlabError> {
        if self.is_destroyed() {
            return Err(SlabError::Destroyed);
        }
        let mut flags = gfp.difference(Gfp::ZERO);
        if self.is_reclaimable() {
            flags |= Gfp::RECLAIMABLE;
        }
        if self.flags.contains(SlabFlags::CACHE_DMA) {
            flags |= Gfp::DMA;
        }
        let order = Order::new(self.l.order).expect("valid order");
        let mut first = (flags | Gfp::NOWARN).difference(Gfp::NOFAIL);
        if first.contains(Gfp::DIRECT_RECLAIM) && self.l.order > self.l.min_order {
            first = (first | Gfp::NOMEMALLOC).difference(Gfp::RECLAIM);
        }
        let frame = match pages.alloc_pages(order, first) {
            Ok(f) => f,
            Err(e) if self.l.min_order < self.l.order => {
                let min = Order::new(self.l.min_order).expect("valid order");
                pages.alloc_pages(min, flags).map_err(|_| e)?
            }
            Err(e) => return Err(e.into()),
        };
        let (head, order) = frame.into_raw();
        let order = order.get();
        let mem = &*core.mem;
        init_slab_pages(mem, head, order, self.id);
        let (base, end) = self.slab_range(head, order);
        let size = self.l.size as u64;
        let mut obj = base;
        while obj < end {
            if let Some(ctor) = &self.ctor {
                ctor(mem, PhysAddr(obj));
            }
            let next = if obj + size < end {
                obj + size
            } else {
                FREE_END
            };
            self.set_freepointer(mem, obj, next);
            obj += size;
        }
        let objects = ((end - base) / size) as u32;
        set_meta(
            mem,
            head,
            SlabMeta {
                inuse: if frozen { objects } else { 0 },
                objects,
                frozen,
                list: OnList::None,
                order,
            },
        );
        set_slab_freelist(mem, head, if frozen { FREE_END } else { base });
        {
            let mut n = self.node.lock();
            n.nr_slabs += 1;
            n.total_objects += objects as u64;
        }
        core.account_pages(self.is_reclaimable(), 1i64 << order);
        Ok((head, if frozen { base } else { FREE_END }))
    }

    /// Returns an empty slab's frames to the buddy allocator (`discard_slab`). The caller has
    /// already taken it off every list and out of the node counters.
    fn discard_slab(&self, core: &SlabCore, pages: &dyn PageOps, head: Pfn) {
        let mem = &*core.mem;
        let order = meta(mem, head).order;
        clear_slab_pages(mem, head, order);
        core.account_pages(self.is_reclaimable(), -(1i64 << order));
        pages.free_pages(mm_buddy::Frame::from_raw(
            head,
            Order::new(order).expect("valid order"),
        ));
    }

    /// Takes an empty slab out of the node counters (`dec_slabs_node`).
    fn dec_slabs(n: &mut NodeLists, m: &SlabMeta) {
        n.nr_slabs -= 1;
        n.total_objects -= m.objects as u64;
    }

    // ----- CPU slab hand-over (callers hold the CPU's local lock with the state BUSY) -----

    /// Takes a CPU slab's own freelist, the objects remote CPUs freed into it
    /// (`get_freelist`). If it has none, the slab is full: it is unfrozen onto the full list
    /// and `FREE_END` is returned, and the CPU must drop it.
    pub(crate) fn get_freelist(&self, core: &SlabCore, head: Pfn) -> u64 {
        let mem = &*core.mem;
        let mut n = self.node.lock();
        let mut m = meta(mem, head);
        debug_assert!(m.frozen, "get_freelist of a slab that is not a CPU slab");
        let f = slab_freelist(mem, head);
        if f != FREE_END {
            set_slab_freelist(mem, head, FREE_END);
            m.inuse = m.objects;
        } else {
            m.frozen = false;
            m.list = OnList::Full;
            n.full.push_back(mem, head);
        }
        set_meta(mem, head, m);
        f
    }

    /// Takes the first partial slab and freezes it for a CPU (`get_partial` →
    /// `acquire_slab`), returning it and its freelist.
    pub(crate) fn get_partial(&self, core: &SlabCore) -> Option<(Pfn, u64)> {
        let mem = &*core.mem;
        let mut n = self.node.lock();
        let head = n.partial.pop_front(mem)?;
        let mut m = meta(mem, head);
        let f = slab_freelist(mem, head);
        debug_assert!(f != FREE_END, "a partial slab has free objects");
        set_slab_freelist(mem, head, FREE_END);
        m.inuse = m.objects;
        m.frozen = true;
        m.list = OnList::None;
        set_meta(mem, head, m);
        Some((head, f))
    }

    /// Unfreezes a CPU slab, giving back the CPU's free objects `c_freelist`
    /// (`deactivate_slab`): an empty slab is freed if the node keeps `min_partial` partial
    /// slabs already, a slab with free objects goes on the partial list (to the tail if remote
    /// CPUs freed into it meanwhile), a full one on the full list.
    pub(crate) fn deactivate_slab(
        &self,
        core: &SlabCore,
        pages: &dyn PageOps,
        head: Pfn,
        c_freelist: u64,
    ) {
        let mem = &*core.mem;
        // The CPU freelist is ours alone: walk it before taking the list lock.
        let objects = meta(mem, head).objects;
        let mut count = 0u32;
        let mut tail = FREE_END;
        let mut p = c_freelist;
        while p != FREE_END {
            count += 1;
            assert!(
                count <= objects,
                "{}: the CPU freelist of {head:?} is corrupt",
                self.name
            );
            tail = p;
            p = self.get_freepointer(mem, p);
        }
        let discard = {
            let mut n = self.node.lock();
            let mut m = meta(mem, head);
            let prior = slab_freelist(mem, head);
            if count > 0 {
                self.set_freepointer(mem, tail, prior);
                set_slab_freelist(mem, head, c_freelist);
            }
            assert!(
                m.inuse >= count,
                "{}: CPU freelist longer than the slab's use",
                self.name
            );
            m.inuse -= count;
            m.frozen = false;
            let discard = if m.inuse == 0 && n.partial.len() >= self.l.min_partial {
                Self::dec_slabs(&mut n, &m);
                true
            } else if slab_freelist(mem, head) != FREE_END {
                m.list = OnList::Partial;
                if prior != FREE_END {
                    n.partial.push_back(mem, head);
                } else {
                    n.partial.push_front(mem, head);
                }
                false
            } else {
                m.list = OnList::Full;
                n.full.push_back(mem, head);
                false
            };
            set_meta(mem, head, m);
            discard
        };
        if discard {
            self.discard_slab(core, pages, head);
        }
    }

    // ----- paths under the list lock alone -----

    /// Frees `obj` to its slab's own freelist under the list lock (`__slab_free`): a frozen
    /// slab only gains the object (its CPU takes it later); an unfrozen full slab moves to the
    /// partial list; an empty one is freed if the node keeps `min_partial` partial slabs.
    pub(crate) fn free_to_slab(&self, core: &SlabCore, pages: &dyn PageOps, obj: u64) {
        let mem = &*core.mem;
        let head = slab_head(mem, obj);
        self.assert_owns(mem, head, obj);
        let discard = {
            let mut n = self.node.lock();
            let mut m = meta(mem, head);
            let prior = slab_freelist(mem, head);
            assert!(
                prior != obj && m.inuse > 0,
                "double free of {obj:#x} in cache {}",
                self.name
            );
            self.set_freepointer(mem, obj, prior);
            set_slab_freelist(mem, head, obj);
            m.inuse -= 1;
            let mut discard = false;
            if !m.frozen {
                let was_full = m.list == OnList::Full;
                if m.inuse == 0 && n.partial.len() >= self.l.min_partial {
                    match m.list {
                        OnList::Partial => n.partial.remove(mem, head),
                        OnList::Full => n.full.remove(mem, head),
                        OnList::None => {}
                    }
                    m.list = OnList::None;
                    Self::dec_slabs(&mut n, &m);
                    discard = true;
                } else if was_full {
                    n.full.remove(mem, head);
                    n.partial.push_back(mem, head);
                    m.list = OnList::Partial;
                }
            }
            set_meta(mem, head, m);
            discard
        };
        if discard {
            self.discard_slab(core, pages, head);
        }
    }

    /// Allocates one object without a CPU slab (`alloc_single_from_partial` /
    /// `alloc_single_from_new_slab`, SLUB's path for debug caches): used when the CPU is held
    /// by another thread.
    pub(crate) fn alloc_single(
        &self,
        core: &SlabCore,
        pages: &dyn PageOps,
        gfp: Gfp,
    ) -> Result<u64, SlabError> {
        let mem = &*core.mem;
        {
            let mut n = self.node.lock();
            if let Some(head) = n.partial.front() {
                return Ok(self.take_one_locked(mem, &mut n, head));
            }
        }
        let (head, _) = self.new_slab(core, pages, gfp, false)?;
        let mut n = self.node.lock();
        let mut m = meta(mem, head);
        m.list = OnList::Partial;
        set_meta(mem, head, m);
        n.partial.push_front(mem, head);
        Ok(self.take_one_locked(mem, &mut n, head))
    }

    /// Pops one object off partial slab `head` (under the list lock).
    fn take_one_locked(&self, mem: &PhysMem, n: &mut NodeLists, head: Pfn) -> u64 {
        let mut m = meta(mem, head);
        let obj = slab_freelist(mem, head);
        debug_assert!(obj != FREE_END);
        let next = self.get_freepointer(mem, obj);
        set_slab_freelist(mem, head, next);
        m.inuse += 1;
        if next == FREE_END {
            n.partial.remove(mem, head);
            n.full.push_back(mem, head);
            m.list = OnList::Full;
        }
        set_meta(mem, head, m);
        obj
    }

    /// Frees every empty slab on the partial list (the tail of `__kmem_cache_do_shrink`),
    /// returning the pages freed.
    pub(crate) fn discard_empty_partials(&self, core: &SlabCore, pages: &dyn PageOps) -> u64 {
        let mem = &*core.mem;
        let mut victims = Vec::new();
        {
            let mut n = self.node.lock();
            let heads: Vec<Pfn> = n.partial.iter(mem).collect();
            for head in heads {
                let mut m = meta(mem, head);
                if m.inuse == 0 {
                    n.partial.remove(mem, head);
                    m.list = OnList::None;
                    set_meta(mem, head, m);
                    Self::dec_slabs(&mut n, &m);
                    victims.push((head, m.order));
                }
            }
        }
        let mut freed = 0;
        for (head, order) in victims {
            freed += 1u64 << order;
            self.discard_slab(core, pages, head);
        }
        freed
    }

    // ----- reporting -----

    /// Returns this cache's `/proc/slabinfo` values (`get_slabinfo`).
    pub fn slabinfo(&self, mem: &PhysMem) -> SlabInfoRow {
        let n = self.node.lock();
        let nr_free: u64 = n
            .partial
            .iter(mem)
            .map(|h| {
                let m = meta(mem, h);
                (m.objects - m.inuse) as u64
            })
            .sum();
        SlabInfoRow {
            name: self.name.clone(),
            active_objs: n.total_objects - nr_free,
            num_objs: n.total_objects,
            objsize: self.l.size,
            objperslab: self.l.objects,
            pagesperslab: 1 << self.l.order,
            active_slabs: n.nr_slabs,
            num_slabs: n.nr_slabs,
        }
    }

    /// Counts the free objects of a freelist starting at `p`, checking each lies in
    /// `base..end` on an object boundary and appears once.
    fn walk_freelist(
        &self,
        mem: &PhysMem,
        mut p: u64,
        base: u64,
        end: u64,
        seen: &mut BTreeSet<u64>,
    ) -> Result<u32, String> {
        let mut n = 0u32;
        while p != FREE_END {
            if p < base || p >= end || !(p - base).is_multiple_of(self.l.size as u64) {
                return Err(format!(
                    "free object {p:#x} is outside its slab {base:#x}..{end:#x}"
                ));
            }
            if !seen.insert(p) {
                return Err(format!("free object {p:#x} is on a freelist twice"));
            }
            n += 1;
            p = self.get_freepointer(mem, p);
        }
        Ok(n)
    }

    /// Checks the node lists and every slab on them, and the CPU slabs in `cpu_slabs` (head
    /// and CPU freelist of CPUs the caller pinned); returns the cache's counts.
    pub(crate) fn check(
        &self,
        mem: &PhysMem,
        cpu_slabs: &[(Pfn, u64)],
        cpus_skipped: u32,
    ) -> Result<CacheCounts, InvariantError> {
        let err = |what: String| InvariantError {
            cache: self.name.clone(),
            what,
        };
        let n = self.node.lock();
        let mut counts = CacheCounts {
            cpus_skipped,
            ..CacheCounts::default()
        };
        let mut total = 0u64;
        let mut slabs = 0u64;
        let mut seen = BTreeSet::new();
        let mut check_slab = |head: Pfn, want: OnList, cpu_fl: Option<u64>| {
            let p = mem.page(head);
            if !p.test(PageFlags::SLAB)
                || p.mapping() != self.id as u64 + 1
                || p.private() & crate::slab::TAIL != 0
            {
                return Err(err(format!("{head:?} is not a head page of this cache")));
            }
            let m = meta(mem, head);
            if m.list != want || m.frozen != (want == OnList::None) {
                return Err(err(format!(
                    "{head:?}: list {:?} frozen {} on {want:?}",
                    m.list, m.frozen
                )));
            }
            let (base, end) = self.slab_range(head, m.order);
            if m.objects as u64 != (end - base) / self.l.size as u64 {
                return Err(err(format!(
                    "{head:?}: objects {} for order {}",
                    m.objects, m.order
                )));
            }
            let free = self
                .walk_freelist(mem, slab_freelist(mem, head), base, end, &mut seen)
                .map_err(&err)?;
            if m.inuse + free != m.objects {
                return Err(err(format!(
                    "{head:?}: inuse {} + free {} != objects {}",
                    m.inuse, free, m.objects
                )));
            }
            let cpu_free = match cpu_fl {
                Some(f) => self
                    .walk_freelist(mem, f, base, end, &mut seen)
                    .map_err(&err)?,
                None => 0,
            };
            match want {
                OnList::Partial if free == 0 => {
                    return Err(err(format!(
                        "{head:?} is on the partial list with no free object"
                    )))
                }
                OnList::Full if free != 0 => {
                    return Err(err(format!(
                        "{head:?} is on the full list with {free} free objects"
                    )))
                }
                _ => {}
            }
            counts.free_objects += (free + cpu_free) as u64;
            counts.pages += 1 << m.order;
            total += m.objects as u64;
            slabs += 1;
            Ok(())
        };
        for head in n.partial.iter(mem) {
            check_slab(head, OnList::Partial, None)?;
        }
        for head in n.full.iter(mem) {
            check_slab(head, OnList::Full, None)?;
        }
        for &(head, fl) in cpu_slabs {
            check_slab(head, OnList::None, Some(fl))?;
        }
        if cpus_skipped == 0 && (slabs != n.nr_slabs || total != n.total_objects) {
            return Err(err(format!(
                "counters say {} slabs / {} objects, the lists hold {slabs} / {total}",
                n.nr_slabs, n.total_objects
            )));
        }
        counts.slabs = n.nr_slabs;
        counts.total_objects = n.total_objects;
        Ok(counts)
    }

    /// Builds the kernel's leak report for `kmem_cache_destroy` (`slab_err` with
    /// `list_slab_objects`, then the `WARN`), listing the allocated objects of every slab.
    pub(crate) fn leak_report(&self, mem: &PhysMem) -> (Vec<u64>, String) {
        let n = self.node.lock();
        let mut report = String::new();
        let mut live = Vec::new();
        let bar = "=".repeat(77);
        let dash = "-".repeat(77);
        for head in n.partial.iter(mem).chain(n.full.iter(mem)) {
            let m = meta(mem, head);
            let (base, end) = self.slab_range(head, m.order);
            let mut free = BTreeSet::new();
            let mut p = slab_freelist(mem, head);
            while p != FREE_END && free.insert(p) {
                p = self.get_freepointer(mem, p);
            }
            report.push_str(&format!(
                "{bar}\nBUG {} (Not tainted): Objects remaining in {} on __kmem_cache_shutdown()\n{dash}\n\n",
                self.name, self.name
            ));
            report.push_str(&format!(
                "Slab {:#x} objects={} used={} fp={:#x} flags={:?}\n",
                head.phys().0,
                m.objects,
                m.inuse,
                match slab_freelist(mem, head) {
                    FREE_END => 0,
                    f => f,
                },
                mem.page(head).flags()
            ));
            let mut obj = base;
            while obj < end {
                if !free.contains(&obj) {
                    report.push_str(&format!("Object {obj:#x} @offset={}\n", obj - base));
                    if live.len() < 64 {
                        live.push(obj);
                    }
                }
                obj += self.l.size as u64;
            }
        }
        report.push_str(&format!(
            "kmem_cache_destroy {}: Slab cache still has objects when called from mm_slab::SlabAllocator::destroy_cache\n",
            self.name
        ));
        (live, report)
    }
}

/// Reads the CPU slab of `c` for the invariant checker; the caller holds the CPU's pin.
pub(crate) fn cpu_slab_snapshot(c: &KmemCacheCpu) -> Option<(Pfn, u64)> {
    let state = c.state.load(Ordering::Acquire);
    let base = c.base.load(Ordering::Acquire);
    if c.end.load(Ordering::Acquire) == 0 {
        return None;
    }
    let fl = state & FL_MASK;
    let fl = if fl >= FL_BUSY { FREE_END } else { fl << 3 };
    Some((PhysAddr(base).pfn(), fl))
}
