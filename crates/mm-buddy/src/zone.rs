//! A zone: its geometry, watermarks, free areas (under the zone lock) and pageblock types.
//!
//! # Locking protocol
//! `Zone::free` is `zone->lock`. It guards the free lists, the per-order counts, the deferred
//! range and the zone-level event counters. `nr_free_pages` is written only under it and read
//! without it (`zone_page_state`). Pageblock migratetypes are written under it and read without
//! it on the free fast path (`get_pfnblock_migratetype`), as in Linux; every path that acts on a
//! migratetype re-reads it under the zone lock. Lock order: a pcp lock, then the zone lock.

use crate::formulas::{Watermarks, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};
use mm_phys::{PageFlags, PageList, PhysMem};
use mm_sync::sync::atomic::{AtomicU64 as TrackedU64, AtomicU8, Ordering};
use mm_sync::sync::{Arc, SpinLock};
use mm_sync::untracked::{self, AtomicI64, AtomicU32, AtomicU64};
use mm_types::{Order, Pfn, ZoneId, MAX_ORDER, NR_ORDERS};

/// A pageblock migratetype (`enum migratetype`, without CMA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum MigrateType {
    /// `MIGRATE_UNMOVABLE`.
    Unmovable = 0,
    /// `MIGRATE_MOVABLE`.
    Movable = 1,
    /// `MIGRATE_RECLAIMABLE`.
    Reclaimable = 2,
    /// `MIGRATE_HIGHATOMIC`.
    HighAtomic = 3,
    /// `MIGRATE_ISOLATE`.
    Isolate = 4,
}

/// Number of migratetypes.
pub const NR_MIGRATETYPES: usize = 5;

impl MigrateType {
    /// Every type, in the kernel's order (`migratetype_names`).
    pub const ALL: [MigrateType; NR_MIGRATETYPES] = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
        MigrateType::HighAtomic,
        MigrateType::Isolate,
    ];
    /// Returns the name `/proc/pagetypeinfo` prints.
    pub fn name(self) -> &'static str {
        match self {
            MigrateType::Unmovable => "Unmovable",
            MigrateType::Movable => "Movable",
            MigrateType::Reclaimable => "Reclaimable",
            MigrateType::HighAtomic => "HighAtomic",
            MigrateType::Isolate => "Isolate",
        }
    }
    #[inline]
    pub(crate) fn from_u8(v: u8) -> MigrateType {
        match v {
            0 => MigrateType::Unmovable,
            1 => MigrateType::Movable,
            2 => MigrateType::Reclaimable,
            3 => MigrateType::HighAtomic,
            _ => MigrateType::Isolate,
        }
    }
    /// True for the three types that have pcp lists.
    pub(crate) fn is_pcptype(self) -> bool {
        (self as u8) < 3
    }
    /// `fallbacks[]`.
    fn fallbacks(self) -> &'static [MigrateType] {
        match self {
            MigrateType::Unmovable => &[MigrateType::Reclaimable, MigrateType::Movable],
            MigrateType::Movable => &[MigrateType::Reclaimable, MigrateType::Unmovable],
            MigrateType::Reclaimable => &[MigrateType::Unmovable, MigrateType::Movable],
            _ => &[],
        }
    }
}

pub(crate) const ZONE_BELOW_HIGH: u32 = 1 << 0;
pub(crate) const ZONE_RECLAIM_ACTIVE: u32 = 1 << 1;
pub(crate) const ZONE_BOOSTED_WATERMARK: u32 = 1 << 2;

/// Encodes a free block's order and list type in `page->private`.
#[inline]
fn buddy_private(order: u32, mt: MigrateType) -> u64 {
    order as u64 | ((mt as u64) << 8)
}

/// The buddy free areas of a zone (`zone->free_area[]`), guarded by the zone lock.
#[derive(Debug)]
pub(crate) struct FreeArea {
    lists: [[PageList; NR_MIGRATETYPES]; NR_ORDERS],
    /// Free blocks per order, every migratetype and the deferred range included.
    pub(crate) nr_free: [u64; NR_ORDERS],
    /// `[deferred_next, deferred_end)`: whole MAX_ORDER Movable blocks that are free but whose
    /// descriptors are not initialized yet (`CONFIG_DEFERRED_STRUCT_PAGE_INIT`).
    deferred_next: u64,
    deferred_end: u64,
    /// Free pages on isolate lists (not counted in `NR_FREE_PAGES`).
    pub(crate) isolated_free: u64,
    /// `pgalloc_<zone>` and `pgfree` of allocations that bypass the pcp lists.
    pub(crate) pgalloc: u64,
    pub(crate) pgfree: u64,
}

/// A memory zone.
#[derive(Debug)]
pub struct Zone {
    pub(crate) id: ZoneId,
    pub(crate) start_pfn: Pfn,
    pub(crate) spanned: u64,
    pub(crate) present: u64,
    pub(crate) managed: u64,
    pub(crate) mem: Arc<PhysMem>,
    pub(crate) free: SpinLock<FreeArea>,
    nr_free_pages: AtomicI64,
    wmark: [AtomicU64; 4],
    boost: AtomicU64,
    reserve: [AtomicU64; ZoneId::COUNT],
    pub(crate) flags: AtomicU32,
    pub(crate) pcp_batch: TrackedU64,
    pub(crate) pcp_high_min: TrackedU64,
    pub(crate) pcp_high_max: TrackedU64,
    pageblock_mt: Box<[AtomicU8]>,
}

impl Zone {
    pub(crate) fn new(
        id: ZoneId,
        start_pfn: Pfn,
        spanned: u64,
        present: u64,
        managed: u64,
        mem: Arc<PhysMem>,
    ) -> Zone {
        let nr_blocks = spanned.div_ceil(PAGEBLOCK_NR_PAGES) as usize
            + usize::from(!start_pfn.0.is_multiple_of(PAGEBLOCK_NR_PAGES));
        let zone = Zone {
            id,
            start_pfn,
            spanned,
            present,
            managed,
            mem,
            free: SpinLock::new(FreeArea {
                lists: Default::default(),
                nr_free: [0; NR_ORDERS],
                deferred_next: 0,
                deferred_end: 0,
                isolated_free: 0,
                pgalloc: 0,
                pgfree: 0,
            }),
            nr_free_pages: AtomicI64::new(0),
            wmark: Default::default(),
            boost: AtomicU64::new(0),
            reserve: Default::default(),
            flags: AtomicU32::new(0),
            pcp_batch: TrackedU64::new(1),
            pcp_high_min: TrackedU64::new(0),
            pcp_high_max: TrackedU64::new(0),
            pageblock_mt: (0..nr_blocks)
                .map(|_| AtomicU8::new(MigrateType::Movable as u8))
                .collect(),
        };
        zone.init_free_range();
        zone
    }

    /// Frees the managed range `[start_pfn, start_pfn + managed)` into the buddy lists at boot
    /// (`memmap_init` + `__free_pages_core`). Reserved pages follow, then holes. Whole
    /// MAX_ORDER-aligned blocks go to the deferred range and cost nothing until used.
    fn init_free_range(&self) {
        let start = self.start_pfn.0;
        let end = start + self.managed;
        let max = Order::MAX.pages();
        for pfn in end..(start + self.present) {
            self.mem.page(Pfn(pfn)).set_flags(PageFlags::RESERVED);
        }
        let mut fa = self.free.lock();
        let d_start = start.next_multiple_of(max).min(end);
        let d_end = (end / max * max).max(d_start);
        let free_piece = |from: u64, to: u64, fa: &mut FreeArea| {
            let mut pfn = from;
            while pfn < to {
                let mut order = (pfn.trailing_zeros().min(MAX_ORDER as u32)) as u8;
                while pfn + (1u64 << order) > to {
                    order -= 1;
                }
                let o = Order::new(order as u32).expect("order");
                self.add_free(fa, Pfn(pfn), o, MigrateType::Movable, false);
                pfn += 1 << order;
            }
        };
        free_piece(start, d_start, &mut fa);
        free_piece(d_end, end, &mut fa);
        fa.deferred_next = d_start;
        fa.deferred_end = d_end;
        let deferred_blocks = (d_end - d_start) / max;
        fa.nr_free[MAX_ORDER as usize] += deferred_blocks;
        self.nr_free_pages
            .store(self.managed as i64, untracked::Ordering::Relaxed);
    }

    /// Returns the zone type.
    pub fn id(&self) -> ZoneId {
        self.id
    }
    /// Returns true if the zone has managed pages.
    pub fn is_populated(&self) -> bool {
        self.managed > 0
    }
    /// Returns the managed page count.
    pub fn managed(&self) -> u64 {
        self.managed
    }
    /// Returns true if `pfn` lies in the zone's span.
    #[inline]
    pub fn contains(&self, pfn: Pfn) -> bool {
        // One compare: below the start, the difference wraps to a huge value.
        pfn.0.wrapping_sub(self.start_pfn.0) < self.spanned
    }
    /// Returns `NR_FREE_PAGES` (buddy pages, not pcp, not isolated), read without the lock.
    #[inline]
    pub fn free_pages(&self) -> i64 {
        self.nr_free_pages.load(untracked::Ordering::Relaxed)
    }
    #[inline]
    pub(crate) fn mod_free_pages(&self, delta: i64) {
        self.nr_free_pages
            .fetch_add(delta, untracked::Ordering::Relaxed);
    }
    /// Returns the watermarks without boost.
    pub fn watermarks(&self) -> Watermarks {
        let r = |i: usize| self.wmark[i].load(untracked::Ordering::Relaxed);
        Watermarks {
            min: r(0),
            low: r(1),
            high: r(2),
            promo: r(3),
        }
    }
    pub(crate) fn set_watermarks(&self, w: Watermarks) {
        for (i, v) in [w.min, w.low, w.high, w.promo].into_iter().enumerate() {
            self.wmark[i].store(v, untracked::Ordering::Relaxed);
        }
        self.boost.store(0, untracked::Ordering::Relaxed);
    }
    /// Returns the current watermark boost.
    #[inline]
    pub fn boost(&self) -> u64 {
        self.boost.load(untracked::Ordering::Relaxed)
    }
    /// Lowers the watermark boost by up to `pages`, as kswapd does at the end of a boosted
    /// `balance_pgdat` (`zone->watermark_boost -= min(zone->watermark_boost, zone_boosts[i])`).
    pub fn reduce_boost(&self, pages: u64) {
        let _ = self.boost.fetch_update(
            untracked::Ordering::Relaxed,
            untracked::Ordering::Relaxed,
            |b| Some(b - b.min(pages)),
        );
    }
    /// Returns `wmark_pages(zone, i)`: mark `i` (0 min, 1 low, 2 high, 3 promo) plus boost.
    #[inline]
    pub(crate) fn wmark_pages(&self, i: usize) -> u64 {
        self.wmark[i].load(untracked::Ordering::Relaxed) + self.boost()
    }
    /// Returns `lowmem_reserve[highest]`.
    #[inline]
    pub fn lowmem_reserve(&self, highest: ZoneId) -> u64 {
        self.reserve[highest.index()].load(untracked::Ordering::Relaxed)
    }
    pub(crate) fn set_lowmem_reserve(&self, r: &[u64; ZoneId::COUNT]) {
        for (slot, v) in self.reserve.iter().zip(r) {
            slot.store(*v, untracked::Ordering::Relaxed);
        }
    }
    /// Returns the protection array (`lowmem_reserve[]`).
    pub fn protection(&self) -> [u64; ZoneId::COUNT] {
        std::array::from_fn(|i| self.reserve[i].load(untracked::Ordering::Relaxed))
    }
    #[inline]
    pub(crate) fn flags_clear(&self) -> bool {
        self.flags.load(untracked::Ordering::Relaxed) == 0
    }
    #[inline]
    pub(crate) fn test_flag(&self, f: u32) -> bool {
        self.flags.load(untracked::Ordering::Relaxed) & f != 0
    }
    pub(crate) fn set_flag(&self, f: u32) {
        if !self.test_flag(f) {
            self.flags.fetch_or(f, untracked::Ordering::Relaxed);
        }
    }
    pub(crate) fn clear_flag(&self, f: u32) {
        if self.test_flag(f) {
            self.flags.fetch_and(!f, untracked::Ordering::Relaxed);
        }
    }

    #[inline]
    fn block_index(&self, pfn: Pfn) -> usize {
        ((pfn.0 >> PAGEBLOCK_ORDER) - (self.start_pfn.0 >> PAGEBLOCK_ORDER)) as usize
    }
    /// Returns the migratetype of the pageblock holding `pfn` (`get_pfnblock_migratetype`).
    #[inline]
    pub fn pageblock_migratetype(&self, pfn: Pfn) -> MigrateType {
        MigrateType::from_u8(self.pageblock_mt[self.block_index(pfn)].load(Ordering::Relaxed))
    }
    /// Returns the pcp list a page freed into `pfn`'s pageblock goes to (`free_unref_page`):
    /// the block's migratetype when it has pcp lists, Movable for a HighAtomic block, and
    /// `None` for an isolated block, whose pages go straight to the buddy lists.
    #[inline]
    pub(crate) fn pcp_free_migratetype(&self, pfn: Pfn) -> Option<MigrateType> {
        let raw = self.pageblock_mt[self.block_index(pfn)].load(Ordering::Relaxed);
        if raw < MigrateType::HighAtomic as u8 {
            // Unmovable, Movable or Reclaimable: the value is the type (no remapping).
            Some(MigrateType::from_u8(raw))
        } else if raw == MigrateType::Isolate as u8 {
            None
        } else {
            Some(MigrateType::Movable)
        }
    }
    fn set_pageblock_migratetype(&self, pfn: Pfn, mt: MigrateType) {
        self.pageblock_mt[self.block_index(pfn)].store(mt as u8, Ordering::Relaxed);
    }

    /// Returns the free blocks of `order` as `(pfn, list type)`, taking the zone lock. Deferred
    /// (never touched) MAX_ORDER blocks are listed as Movable after the initialized ones.
    pub fn free_blocks(&self, order: Order) -> Vec<(Pfn, MigrateType)> {
        let fa = self.free.lock();
        let mut out: Vec<_> = MigrateType::ALL
            .iter()
            .flat_map(|mt| {
                fa.lists[order.index()][*mt as usize]
                    .iter(&self.mem)
                    .map(move |p| (p, *mt))
            })
            .collect();
        if order == Order::MAX {
            let mut p = fa.deferred_next;
            while p < fa.deferred_end {
                out.push((Pfn(p), MigrateType::Movable));
                p += Order::MAX.pages();
            }
        }
        out
    }

    // ----- operations under the zone lock -----

    /// Puts a free block on its list (`add_to_free_list`).
    fn add_free(&self, fa: &mut FreeArea, pfn: Pfn, order: Order, mt: MigrateType, tail: bool) {
        let p = self.mem.page(pfn);
        p.set_flags(PageFlags::BUDDY);
        p.set_private(buddy_private(order.get(), mt));
        let list = &mut fa.lists[order.index()][mt as usize];
        if tail {
            list.push_back(&self.mem, pfn);
        } else {
            list.push_front(&self.mem, pfn);
        }
        fa.nr_free[order.index()] += 1;
        if mt == MigrateType::Isolate {
            fa.isolated_free += order.pages();
        }
    }

    /// Takes a known free block off its list (`del_page_from_free_list`).
    fn del_free(&self, fa: &mut FreeArea, pfn: Pfn) -> (Order, MigrateType) {
        let p = self.mem.page(pfn);
        let private = p.private();
        let order = Order::new((private & 0xff) as u32).expect("buddy order");
        let mt = MigrateType::from_u8((private >> 8) as u8);
        fa.lists[order.index()][mt as usize].remove(&self.mem, pfn);
        fa.nr_free[order.index()] -= 1;
        if mt == MigrateType::Isolate {
            fa.isolated_free -= order.pages();
        }
        p.set_flags(PageFlags::empty());
        p.set_private(0);
        (order, mt)
    }

    /// Returns true if `pfn` heads a free block of exactly `order` (`page_is_buddy`).
    #[inline]
    fn is_buddy(&self, pfn: Pfn, order: Order) -> bool {
        if !self.contains(pfn) || !self.mem.pfn_valid(pfn) {
            return false;
        }
        let p = self.mem.page(pfn);
        p.test(PageFlags::BUDDY) && (p.private() & 0xff) == order.get() as u64
    }

    fn list_nonempty(&self, fa: &FreeArea, order: usize, mt: MigrateType) -> bool {
        !fa.lists[order][mt as usize].is_empty()
            || (order == MAX_ORDER as usize
                && mt == MigrateType::Movable
                && fa.deferred_next < fa.deferred_end)
    }

    /// Takes the first block of `(order, mt)` off its list, initializing one deferred block if
    /// that is where the free memory is.
    fn take_first(&self, fa: &mut FreeArea, order: usize, mt: MigrateType) -> Option<Pfn> {
        if let Some(pfn) = fa.lists[order][mt as usize].front() {
            self.del_free(fa, pfn);
            return Some(pfn);
        }
        if order == MAX_ORDER as usize
            && mt == MigrateType::Movable
            && fa.deferred_next < fa.deferred_end
        {
            let pfn = Pfn(fa.deferred_next);
            fa.deferred_next += Order::MAX.pages();
            fa.nr_free[order] -= 1;
            return Some(pfn);
        }
        None
    }

    /// Initializes every deferred block below `end` (`deferred_grow_zone`), so that
    /// pageblock-wide operations see real descriptors.
    fn grow_deferred_to(&self, fa: &mut FreeArea, end: u64) {
        while fa.deferred_next < fa.deferred_end && fa.deferred_next < end {
            let pfn = Pfn(fa.deferred_next);
            fa.deferred_next += Order::MAX.pages();
            fa.nr_free[MAX_ORDER as usize] -= 1;
            self.add_free(fa, pfn, Order::MAX, MigrateType::Movable, true);
        }
    }

    /// Splits a block of `high` down to `low`, returning the upper halves (`expand`).
    fn expand(&self, fa: &mut FreeArea, pfn: Pfn, low: Order, high: Order, mt: MigrateType) {
        let mut h = high.get();
        while h > low.get() {
            h -= 1;
            let half = Order::new(h).expect("order");
            self.add_free(fa, pfn.add(half.pages()), half, mt, false);
        }
    }

    /// `__rmqueue_smallest`.
    fn rmqueue_smallest(&self, fa: &mut FreeArea, order: Order, mt: MigrateType) -> Option<Pfn> {
        for o in order.index()..NR_ORDERS {
            if let Some(pfn) = self.take_first(fa, o, mt) {
                self.expand(fa, pfn, order, Order::new(o as u32).expect("order"), mt);
                return Some(pfn);
            }
        }
        None
    }

    /// `can_steal_fallback`.
    fn can_steal(order: usize, start: MigrateType) -> bool {
        order >= PAGEBLOCK_ORDER as usize
            || order >= PAGEBLOCK_ORDER as usize / 2
            || start == MigrateType::Reclaimable
            || start == MigrateType::Unmovable
    }

    /// `find_suitable_fallback`: the first fallback type with a free block at `order`.
    fn find_fallback(
        &self,
        fa: &FreeArea,
        order: usize,
        start: MigrateType,
    ) -> Option<(MigrateType, bool)> {
        start
            .fallbacks()
            .iter()
            .find(|mt| self.list_nonempty(fa, order, **mt))
            .map(|mt| (*mt, Self::can_steal(order, start)))
    }

    /// Moves the free blocks of the pageblock holding `pfn` to `mt`'s lists, returning
    /// `(free pages moved, movable in-use pages seen)` (`move_freepages_block`).
    fn move_freepages_block(&self, fa: &mut FreeArea, pfn: Pfn, mt: MigrateType) -> (u64, u64) {
        let start = pfn.0 & !(PAGEBLOCK_NR_PAGES - 1);
        let end = start + PAGEBLOCK_NR_PAGES;
        self.grow_deferred_to(fa, end);
        let (mut p, mut moved, mut movable) = (start.max(self.start_pfn.0), 0, 0);
        let zend = (self.start_pfn.0 + self.managed).min(end);
        while p < zend {
            let page = self.mem.page(Pfn(p));
            if page.test(PageFlags::BUDDY) {
                let (order, _) = self.del_free(fa, Pfn(p));
                self.add_free(fa, Pfn(p), order, mt, false);
                moved += order.pages();
                p += order.pages();
            } else {
                if page.test(PageFlags::LRU) {
                    movable += 1;
                }
                p += 1;
            }
        }
        (moved, movable)
    }

    /// `boost_watermark`: raise the boost by a pageblock after a fragmenting fallback.
    fn boost_watermark(&self, boost_factor: u64) -> bool {
        if boost_factor == 0 || self.managed < 4 * PAGEBLOCK_NR_PAGES {
            return false;
        }
        let max_boost =
            crate::formulas::mult_frac(self.wmark_pages(2) - self.boost(), boost_factor, 10_000)
                .max(PAGEBLOCK_NR_PAGES);
        let b = (self.boost() + PAGEBLOCK_NR_PAGES).min(max_boost);
        self.boost.store(b, untracked::Ordering::Relaxed);
        true
    }

    /// `__rmqueue_fallback` + `steal_suitable_fallback` (6.1 semantics): steal from another
    /// migratetype, largest block first; returns true if something moved to `start`'s lists.
    fn rmqueue_fallback(
        &self,
        fa: &mut FreeArea,
        order: Order,
        start: MigrateType,
        boost_factor: u64,
        kswapd: bool,
    ) -> bool {
        let mut found = None;
        for cur in (order.index()..NR_ORDERS).rev() {
            if let Some((mt, can_steal)) = self.find_fallback(fa, cur, start) {
                if !can_steal && start == MigrateType::Movable && cur > order.index() {
                    // find_smallest
                    found = (order.index()..NR_ORDERS)
                        .find_map(|c| self.find_fallback(fa, c, start).map(|(m, s)| (c, m, s)));
                } else {
                    found = Some((cur, mt, can_steal));
                }
                break;
            }
        }
        let Some((cur, fallback_mt, whole_block)) = found else {
            return false;
        };
        let pfn = self
            .take_first(fa, cur, fallback_mt)
            .expect("fallback list was not empty");
        let order_cur = Order::new(cur as u32).expect("order");
        if cur >= PAGEBLOCK_ORDER as usize {
            // Take ownership of whole pageblocks.
            let mut b = pfn.0;
            while b < pfn.0 + order_cur.pages() {
                self.set_pageblock_migratetype(Pfn(b), start);
                b += PAGEBLOCK_NR_PAGES;
            }
            self.add_free(fa, pfn, order_cur, start, false);
            return true;
        }
        if self.boost_watermark(boost_factor) && kswapd {
            self.set_flag(ZONE_BOOSTED_WATERMARK);
        }
        if !whole_block {
            // Steal just this block.
            self.add_free(fa, pfn, order_cur, start, false);
            return true;
        }
        // Put the block back, then move every free page of its pageblock.
        self.add_free(fa, pfn, order_cur, fallback_mt, false);
        let old = self.pageblock_migratetype(pfn);
        let (free, movable) = self.move_freepages_block(fa, pfn, start);
        let alike = if start == MigrateType::Movable {
            movable
        } else if old == MigrateType::Movable {
            PAGEBLOCK_NR_PAGES.saturating_sub(free + movable)
        } else {
            0
        };
        if free + alike >= PAGEBLOCK_NR_PAGES / 2 {
            self.set_pageblock_migratetype(pfn, start);
        }
        true
    }

    /// `__rmqueue`: a block of `order` for `mt`, stealing from other types if needed.
    pub(crate) fn rmqueue_locked(
        &self,
        fa: &mut FreeArea,
        order: Order,
        mt: MigrateType,
        boost_factor: u64,
        kswapd: bool,
    ) -> Option<Pfn> {
        loop {
            if let Some(pfn) = self.rmqueue_smallest(fa, order, mt) {
                return Some(pfn);
            }
            if !self.rmqueue_fallback(fa, order, mt, boost_factor, kswapd) {
                return None;
            }
        }
    }

    /// `__free_one_page`: frees a block and merges it with its buddies.
    pub(crate) fn free_one_locked(
        &self,
        fa: &mut FreeArea,
        pfn: Pfn,
        order: Order,
        mt: MigrateType,
    ) {
        let (mut pfn, mut order) = (pfn, order);
        while order.get() < MAX_ORDER as u32 {
            let buddy = pfn.buddy(order);
            if !self.is_buddy(buddy, order) {
                break;
            }
            if order.get() >= PAGEBLOCK_ORDER {
                // Do not merge isolated pageblocks with others (and vice versa).
                let bmt = self.pageblock_migratetype(buddy);
                if bmt != mt && (!mt.is_pcptype() || !bmt.is_pcptype()) {
                    break;
                }
            }
            self.del_free(fa, buddy);
            pfn = Pfn(pfn.0 & buddy.0);
            order = Order::new(order.get() + 1).expect("order");
        }
        self.add_free(fa, pfn, order, mt, false);
    }

    /// Frees a block straight to the buddy lists (`free_one_page`), taking the zone lock.
    pub(crate) fn free_one_page(&self, pfn: Pfn, order: Order) {
        let mut fa = self.free.lock();
        let mt = self.pageblock_migratetype(pfn);
        self.free_one_locked(&mut fa, pfn, order, mt);
        fa.pgfree += order.pages();
        if mt != MigrateType::Isolate {
            self.mod_free_pages(order.pages() as i64);
        }
    }

    /// Isolates one pageblock (`set_migratetype_isolate`): its free pages move to the isolate
    /// lists and leave `NR_FREE_PAGES`; later frees into it land there too.
    pub(crate) fn isolate_pageblock(&self, pfn: Pfn) -> Result<(), crate::IsolateError> {
        let mut fa = self.free.lock();
        if self.pageblock_migratetype(pfn) == MigrateType::Isolate {
            return Err(crate::IsolateError::Busy(pfn));
        }
        self.split_covering_block(&mut fa, pfn);
        self.set_pageblock_migratetype(pfn, MigrateType::Isolate);
        let (moved, _) = self.move_freepages_block(&mut fa, pfn, MigrateType::Isolate);
        self.mod_free_pages(-(moved as i64));
        Ok(())
    }

    /// Splits a free block larger than a pageblock that covers the pageblock of `pfn` into
    /// pageblock-sized blocks, each on its own pageblock's list, so the pageblock can change
    /// type alone (`move_freepages_block_isolate` splitting a larger buddy).
    fn split_covering_block(&self, fa: &mut FreeArea, pfn: Pfn) {
        let block = pfn.0 & !(PAGEBLOCK_NR_PAGES - 1);
        self.grow_deferred_to(fa, block + PAGEBLOCK_NR_PAGES);
        for o in (PAGEBLOCK_ORDER + 1)..=MAX_ORDER as u32 {
            let order = Order::new(o).expect("order");
            let head = Pfn(block & !(order.pages() - 1));
            if self.is_buddy(head, order) {
                self.del_free(fa, head);
                let mut p = head.0;
                while p < head.0 + order.pages() {
                    let piece = Order::new(PAGEBLOCK_ORDER).expect("order");
                    self.add_free(fa, Pfn(p), piece, self.pageblock_migratetype(Pfn(p)), false);
                    p += PAGEBLOCK_NR_PAGES;
                }
                return;
            }
        }
    }

    /// Ends the isolation of one pageblock (`unset_migratetype_isolate`): its free pages go back
    /// to `mt` and merge with their buddies.
    pub(crate) fn unisolate_pageblock(&self, pfn: Pfn, mt: MigrateType) {
        let mut fa = self.free.lock();
        if self.pageblock_migratetype(pfn) != MigrateType::Isolate {
            return;
        }
        self.set_pageblock_migratetype(pfn, mt);
        let start = pfn.0 & !(PAGEBLOCK_NR_PAGES - 1);
        let end = (start + PAGEBLOCK_NR_PAGES).min(self.start_pfn.0 + self.managed);
        let mut blocks = Vec::new();
        let mut p = start.max(self.start_pfn.0);
        while p < end {
            if self.mem.page(Pfn(p)).test(PageFlags::BUDDY) {
                let (order, _) = self.del_free(&mut fa, Pfn(p));
                blocks.push((Pfn(p), order));
                p += order.pages();
            } else {
                p += 1;
            }
        }
        for (b, order) in blocks {
            self.free_one_locked(&mut fa, b, order, mt);
            self.mod_free_pages(order.pages() as i64);
        }
    }

    /// Walks the free lists and checks them against the counts (caller holds the zone lock).
    pub(crate) fn check_free_area(&self, fa: &FreeArea) -> Result<u64, String> {
        let mut total = 0;
        let mut heads = Vec::new();
        for o in 0..NR_ORDERS {
            let mut n = 0;
            for mt in MigrateType::ALL {
                let list = &fa.lists[o][mt as usize];
                for pfn in list.iter(&self.mem) {
                    let p = self.mem.page(pfn);
                    if !p.test(PageFlags::BUDDY) || p.private() != buddy_private(o as u32, mt) {
                        return Err(format!(
                            "{pfn:?} on the order-{o} {} list is not marked as such",
                            mt.name()
                        ));
                    }
                    if !pfn.is_aligned(Order::new(o as u32).expect("order")) || !self.contains(pfn)
                    {
                        return Err(format!(
                            "free block {pfn:?} of order {o} is misaligned or outside the zone"
                        ));
                    }
                    heads.push((pfn.0, 1u64 << o));
                    n += 1;
                }
                if list.len() as usize != list.iter(&self.mem).count() {
                    return Err(format!("order-{o} {} list length is wrong", mt.name()));
                }
            }
            if o == MAX_ORDER as usize {
                let d = (fa.deferred_end - fa.deferred_next) / Order::MAX.pages();
                n += d;
                let mut p = fa.deferred_next;
                while p < fa.deferred_end {
                    heads.push((p, Order::MAX.pages()));
                    p += Order::MAX.pages();
                }
            }
            if n != fa.nr_free[o] {
                return Err(format!(
                    "nr_free[{o}] is {} but the lists hold {n} blocks",
                    fa.nr_free[o]
                ));
            }
            total += n << o;
        }
        heads.sort_unstable();
        for w in heads.windows(2) {
            if w[0].0 + w[0].1 > w[1].0 {
                return Err(format!(
                    "free blocks at pfn {:#x} and {:#x} overlap",
                    w[0].0, w[1].0
                ));
            }
        }
        if let Some(last) = heads.last() {
            if last.0 + last.1 > self.start_pfn.0 + self.managed {
                return Err(format!(
                    "free block {:#x} runs past the managed range",
                    last.0
                ));
            }
        }
        Ok(total)
    }
}

impl FreeArea {
    /// Returns the free pages in blocks of at least pageblock order (`nr_free_pages_blocks`).
    pub(crate) fn free_pages_blocks(&self) -> u64 {
        (PAGEBLOCK_ORDER as usize..NR_ORDERS)
            .map(|o| self.nr_free[o] << o)
            .sum()
    }
}
