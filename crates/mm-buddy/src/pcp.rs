//! Per-CPU page lists (`struct per_cpu_pages`) and their sizing logic (Linux 6.7+).
//!
//! # Locking protocol
//! Each CPU's lists for all zones sit behind one [`SpinLock`] (the `pagesets.lock` of Linux
//! 5.14-5.18, a spin lock like `pcp->lock` since 5.19). The owning CPU takes it for each pcp
//! allocation and free, or holds it across a run of them (a CPU actor's quantum, see
//! `PcpLocked`); another CPU takes it only to drain (`drain_all_pages`), and waits while the
//! owner holds it, as a remote drain waited for the owner's drain work in Linux before 5.19.
//! While holding it, the holder may take a zone lock (refill and flush): pcp lock, then zone
//! lock. The zone-wide
//! `batch`/`high_min`/`high_max` are atomics written under the allocator's pcp-update mutex
//! (`pcp_batch_high_lock`) and read under the pcp lock, as `READ_ONCE` reads them.

use crate::zone::{FreeArea, MigrateType, Zone, ZONE_BELOW_HIGH, ZONE_RECLAIM_ACTIVE};
use mm_phys::{PageFlags, PageList};
use mm_sync::sync::atomic::Ordering;
use mm_sync::sync::SpinLock;
use mm_sync::untracked;
use mm_types::{Order, Pfn};

/// `PAGE_ALLOC_COSTLY_ORDER`.
pub const PAGE_ALLOC_COSTLY_ORDER: u32 = 3;
/// `CONFIG_PCP_BATCH_SCALE_MAX` (default 5).
pub(crate) const PCP_BATCH_SCALE_MAX: u32 = 5;
/// Lists for orders 0..=3, one per pcp migratetype, plus one for the THP order.
pub(crate) const NR_LOWORDER_PCP_LISTS: usize = 3 * (PAGE_ALLOC_COSTLY_ORDER as usize + 1);
pub(crate) const NR_PCP_LISTS: usize = NR_LOWORDER_PCP_LISTS + 1;

const PCPF_PREV_FREE_HIGH_ORDER: u8 = 1 << 0;
const PCPF_FREE_HIGH_BATCH: u8 = 1 << 1;

/// The kernel's `clamp(v, lo, hi)`: `min(max(v, lo), hi)`, so `hi` wins when `lo > hi` (a
/// small zone's `high_min` from its low watermark can exceed `high_max`).
#[inline]
fn kclamp(v: u64, lo: u64, hi: u64) -> u64 {
    v.max(lo).min(hi)
}

/// Returns true if `order` is served from the pcp lists (`pcp_allowed_order`).
#[inline]
pub(crate) fn pcp_allowed_order(order: Order) -> bool {
    order.get() <= PAGE_ALLOC_COSTLY_ORDER || order.get() == crate::formulas::PAGEBLOCK_ORDER
}

#[inline]
fn order_to_pindex(mt: MigrateType, order: Order) -> usize {
    if order.get() > PAGE_ALLOC_COSTLY_ORDER {
        NR_LOWORDER_PCP_LISTS
    } else {
        3 * order.index() + mt as usize
    }
}

#[inline]
fn pindex_to_order(pindex: usize) -> Order {
    if pindex >= NR_LOWORDER_PCP_LISTS {
        Order::new(crate::formulas::PAGEBLOCK_ORDER).expect("order")
    } else {
        Order::new((pindex / 3) as u32).expect("order")
    }
}

/// One CPU's page lists for one zone.
#[derive(Debug, Default)]
pub(crate) struct Pcp {
    lists: [PageList; NR_PCP_LISTS],
    /// Pages on the lists.
    pub(crate) count: u64,
    /// The live high limit, auto-tuned between `high_min` and `high_max`.
    pub(crate) high: u64,
    free_count: u64,
    alloc_factor: u32,
    flags: u8,
    /// `pgalloc_<zone>` and `pgfree` counted by this CPU (per-CPU vm events).
    pub(crate) pgalloc: u64,
    pub(crate) pgfree: u64,
}

/// One CPU's page lists for every zone (`struct pagesets` + `per_cpu_pages` of each zone).
#[derive(Debug, Default)]
pub(crate) struct CpuPagesets {
    pub(crate) zones: [Pcp; mm_types::ZoneId::COUNT],
}

/// A CPU's pagesets behind its lock, on their own cache lines so CPUs never share one.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct CpuSlot {
    pub(crate) lock: SpinLock<CpuPagesets>,
}

impl Pcp {
    /// `nr_pcp_alloc`: how many blocks to pull from the buddy lists on a refill.
    fn nr_pcp_alloc(&mut self, zone: &Zone, order: Order) -> u64 {
        let base = zone.pcp_batch.load(Ordering::Relaxed);
        let high_min = zone.pcp_high_min.load(Ordering::Relaxed);
        let high_max = zone.pcp_high_max.load(Ordering::Relaxed);
        self.high = kclamp(self.high, high_min, high_max);
        let mut high = self.high;
        if high < base {
            return 1;
        }
        let mut batch = if order.get() > 0 {
            base
        } else {
            base << self.alloc_factor
        };
        if high_min != high_max && !zone.test_flag(ZONE_BELOW_HIGH) {
            high = (high + batch).min(high_max);
            self.high = high;
        }
        if order.get() == 0 {
            let max_nr_alloc = high.saturating_sub(self.count + base).max(base);
            if batch <= max_nr_alloc && self.alloc_factor < PCP_BATCH_SCALE_MAX {
                self.alloc_factor += 1;
            }
            batch = batch.min(max_nr_alloc);
        }
        if batch > 1 {
            batch = (batch >> order.get()).max(2);
        }
        batch
    }

    /// `nr_pcp_high`: the current flush threshold, adjusting `high` as the kernel does.
    #[inline(always)]
    fn nr_pcp_high(&mut self, zone: &Zone, batch: u64, free_high: bool) -> u64 {
        // Common case: nothing to adjust (high already in range, no zone pressure flag, list
        // below high): the general code below would return `high` unchanged.
        if !free_high
            && self.count < self.high
            && zone.flags_clear()
            && self.high <= zone.pcp_high_max.load(Ordering::Relaxed)
            && self.high >= zone.pcp_high_min.load(Ordering::Relaxed)
        {
            return self.high;
        }
        self.nr_pcp_high_slow(zone, batch, free_high)
    }

    #[cold]
    fn nr_pcp_high_slow(&mut self, zone: &Zone, batch: u64, free_high: bool) -> u64 {
        let high_min = zone.pcp_high_min.load(Ordering::Relaxed);
        let high_max = zone.pcp_high_max.load(Ordering::Relaxed);
        self.high = kclamp(self.high, high_min, high_max);
        let high = self.high;
        if high == 0 {
            return 0;
        }
        if free_high {
            self.high = high
                .saturating_sub(batch << PCP_BATCH_SCALE_MAX)
                .max(high_min);
            return 0;
        }
        if zone.test_flag(ZONE_RECLAIM_ACTIVE) {
            let free_count = self.free_count.max(batch);
            self.high = high.saturating_sub(free_count).max(high_min);
            return (batch << 2).min(self.high);
        }
        if high_min == high_max {
            return high;
        }
        if zone.test_flag(ZONE_BELOW_HIGH) {
            let free_count = self.free_count.max(batch);
            self.high = high.saturating_sub(free_count).max(high_min);
            return self.count.max(high_min);
        }
        if self.count >= high {
            let need_high = self.free_count + batch;
            if self.high < need_high {
                self.high = kclamp(need_high, high_min, high_max);
            }
        }
        high
    }

    /// `nr_pcp_free`: how many pages a flush returns to the buddy lists.
    fn nr_pcp_free(&self, batch: u64, high: u64, free_high: bool) -> u64 {
        if free_high {
            return self.count.min(batch << PCP_BATCH_SCALE_MAX);
        }
        if high < batch {
            return 1;
        }
        self.free_count.clamp(batch, (high - batch).max(batch))
    }

    /// `__rmqueue_pcplist`: takes a block from this CPU's list, refilling it from the zone.
    #[inline(always)]
    pub(crate) fn rmqueue(
        &mut self,
        zone: &Zone,
        order: Order,
        mt: MigrateType,
        boost_factor: &untracked::AtomicU64,
        kswapd: bool,
    ) -> Option<Pfn> {
        self.free_count >>= 1;
        let pindex = order_to_pindex(mt, order);
        if self.lists[pindex].is_empty() {
            let batch = self.nr_pcp_alloc(zone, order);
            // Read without the tunables mutex: a sysctl write races benignly.
            let boost_factor = boost_factor.load(untracked::Ordering::Relaxed);
            let n = self.rmqueue_bulk(zone, order, batch, pindex, mt, boost_factor, kswapd);
            self.count += n << order.get();
            if n == 0 {
                return None;
            }
        }
        let pfn = self.lists[pindex].pop_front(&zone.mem)?;
        self.count -= order.pages();
        self.pgalloc += order.pages();
        Some(pfn)
    }

    /// `rmqueue_bulk`: moves `count` blocks from the buddy lists to list `pindex`.
    #[allow(clippy::too_many_arguments)]
    fn rmqueue_bulk(
        &mut self,
        zone: &Zone,
        order: Order,
        count: u64,
        pindex: usize,
        mt: MigrateType,
        boost_factor: u64,
        kswapd: bool,
    ) -> u64 {
        // Lock order: pcp -> zone.
        let mut fa = zone.free.lock();
        let mut n = 0;
        while n < count {
            let Some(pfn) = zone.rmqueue_locked(&mut fa, order, mt, boost_factor, kswapd) else {
                break;
            };
            let p = zone.mem.page(pfn);
            p.set_flags(PageFlags::PCP);
            p.set_private(order.get() as u64);
            self.lists[pindex].push_back(&zone.mem, pfn);
            n += 1;
        }
        drop(fa);
        zone.mod_free_pages(-((n << order.get()) as i64));
        n
    }

    /// `free_unref_page_commit`: puts a block on this CPU's list and flushes when over `high`.
    #[inline(always)]
    pub(crate) fn free_commit(&mut self, zone: &Zone, pfn: Pfn, mt: MigrateType, order: Order) {
        self.alloc_factor >>= 1;
        self.pgfree += order.pages();
        let pindex = order_to_pindex(mt, order);
        let p = zone.mem.page(pfn);
        p.set_flags(PageFlags::PCP);
        p.set_private(order.get() as u64);
        self.lists[pindex].push_front(&zone.mem, pfn);
        self.count += order.pages();
        let batch = zone.pcp_batch.load(Ordering::Relaxed);
        let mut free_high = false;
        if order.get() > 0 && order.get() <= PAGE_ALLOC_COSTLY_ORDER {
            // Read here only: the compiler keeps an atomic load even when its value is unused.
            let high_min = zone.pcp_high_min.load(Ordering::Relaxed);
            free_high = self.free_count >= batch + high_min / 2
                && self.flags & PCPF_PREV_FREE_HIGH_ORDER != 0
                && (self.flags & PCPF_FREE_HIGH_BATCH == 0 || self.count >= batch);
            self.flags |= PCPF_PREV_FREE_HIGH_ORDER;
        } else {
            self.flags &= !PCPF_PREV_FREE_HIGH_ORDER;
        }
        if self.free_count < batch << PCP_BATCH_SCALE_MAX {
            self.free_count += order.pages();
        }
        let high = self.nr_pcp_high(zone, batch, free_high);
        if self.count >= high {
            let n = self.nr_pcp_free(batch, high, free_high);
            self.free_bulk(zone, n, pindex);
            if zone.test_flag(ZONE_BELOW_HIGH) && zone.free_pages() > zone.wmark_pages(2) as i64 {
                zone.clear_flag(ZONE_BELOW_HIGH);
            }
        }
    }

    /// `free_pcppages_bulk`: returns at least `count` pages (all, if fewer) to the buddy lists,
    /// round-robin over the lists starting after `pindex`, coldest pages first.
    pub(crate) fn free_bulk(&mut self, zone: &Zone, count: u64, pindex: usize) {
        let mut count = count.min(self.count);
        if count == 0 {
            return;
        }
        // Lock order: pcp -> zone.
        let mut fa: mm_sync::sync::SpinLockGuard<'_, FreeArea> = zone.free.lock();
        let mut pindex = pindex;
        let mut freed = 0i64;
        while count > 0 {
            loop {
                pindex = (pindex + 1) % NR_PCP_LISTS;
                if !self.lists[pindex].is_empty() {
                    break;
                }
            }
            let order = pindex_to_order(pindex);
            while count > 0 {
                let Some(pfn) = self.lists[pindex].pop_back(&zone.mem) else {
                    break;
                };
                self.count -= order.pages();
                count = count.saturating_sub(order.pages());
                // The pageblock type is re-read under the zone lock, so a page freed into a
                // block that was isolated meanwhile lands on the isolate list (51bb1a4093cc).
                let mt = zone.pageblock_migratetype(pfn);
                zone.free_one_locked(&mut fa, pfn, order, mt);
                if mt != MigrateType::Isolate {
                    freed += order.pages() as i64;
                }
            }
        }
        drop(fa);
        zone.mod_free_pages(freed);
    }

    /// Drains every page (`drain_pages_zone`).
    pub(crate) fn drain(&mut self, zone: &Zone) {
        let n = self.count;
        self.free_bulk(zone, n, NR_PCP_LISTS - 1);
    }

    /// Checks the lists against `count` (caller holds the pcp lock).
    pub(crate) fn check(&self, zone: &Zone) -> Result<(), String> {
        let mut pages = 0;
        for (pindex, list) in self.lists.iter().enumerate() {
            let order = pindex_to_order(pindex);
            for pfn in list.iter(&zone.mem) {
                let p = zone.mem.page(pfn);
                if !p.test(PageFlags::PCP) || p.private() != order.get() as u64 {
                    return Err(format!(
                        "{pfn:?} on pcp list {pindex} is not marked PCP order {order}"
                    ));
                }
                if !zone.contains(pfn) {
                    return Err(format!("{pfn:?} on a pcp list is outside the zone"));
                }
                pages += order.pages();
            }
        }
        if pages != self.count {
            return Err(format!(
                "pcp count is {} but its lists hold {pages} pages",
                self.count
            ));
        }
        Ok(())
    }

    /// Returns the pfns on the lists (for checks).
    pub(crate) fn pfns(&self, zone: &Zone) -> Vec<(Pfn, Order)> {
        self.lists
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.iter(&zone.mem).map(move |p| (p, pindex_to_order(i))))
            .collect()
    }
}
