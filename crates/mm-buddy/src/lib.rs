//! The page allocator (layer L2): zones, the buddy system, per-CPU page lists, watermarks,
//! `lowmem_reserve`, the zonelist fallback and GFP semantics, after Linux 6.x `mm/page_alloc.c`.
//!
//! This crate owns:
//! - [`Buddy`]: one node's allocator. It boots the zones of a [`BuddyConfig`] from simulated
//!   RAM ([`mm_phys::PhysMem`]), hands out [`Frame`]s with [`Buddy::alloc`] and takes them back
//!   with [`Buddy::free`].
//! - [`Zone`]: geometry, watermarks (`min`/`low`/`high`/`promo` from `vm.min_free_kbytes` and
//!   `vm.watermark_scale_factor`), protection (`vm.lowmem_reserve_ratio`), free areas of orders
//!   0..=10 split into migratetypes, and per-CPU page lists sized by `zone_batchsize` /
//!   `zone_highsize` with `high` auto-tuned between `high_min` and `high_max`.
//! - The `mm_page_alloc` and `mm_page_free` tracepoints (`tracing` events, target `mm_trace`)
//!   of [`Buddy::alloc`] and [`Buddy::free`]; the held-lists fast path ([`PcpLocked`]) emits none.
//! - The slow-path seam [`SlowPath`]: waking kswapd, direct reclaim and the OOM killer belong to
//!   upper layers, which `mm-sim` wires in. The default, [`NoSlowPath`], does nothing.
//! - Snapshots for `/proc` ([`ZoneInfo`], [`Buddy::vm_events`]) and [`Buddy::check_invariants`].
//!
//! # Invariants
//! - A free block of order `o` is aligned to `1 << o`, lies in the managed range of one zone,
//!   and its head descriptor alone carries `PageFlags::BUDDY` with its order and list type in
//!   `private`; a block merges with its buddy `pfn ^ (1 << o)` exactly when the buddy is a free
//!   block of the same order (and, across pageblocks, of a mergeable type).
//! - Pages on pcp lists are counted in the pcp `count`, not in `NR_FREE_PAGES` (as
//!   `rmqueue_bulk` does); free isolated pages are in neither.
//! - Conservation: `NR_FREE_PAGES` + isolated free pages + pcp pages + allocated pages =
//!   `managed`, for every zone.
//! - A pcp allocation or free takes one uncontended spin lock and touches no shared cache line
//!   other than the zone's read-mostly watermark fields.
//!
//! # Locking protocol
//! Per zone: `zone->lock` ([`Zone`]'s free area) and one pcp lock per CPU. Lock order: pcp lock,
//! then zone lock, never the reverse; never two pcp locks or two zone locks at once, except
//! [`Buddy::check_invariants`], which takes every pcp lock of a zone in CPU order and then its
//! zone lock. Changes to pcp `batch`/`high_min`/`high_max` (sysctl writes, `zone_pcp_disable`)
//! are serialized by the `pcp_update` mutex (`pcp_batch_high_lock`), taken before any pcp lock.
//! Watermarks and protection are atomics written under the `tunables` mutex and read locklessly.
#![deny(unsafe_code)]

mod error;
pub mod formulas;
mod frame;
mod pcp;
mod slowpath;
mod zone;

pub use error::{AllocError, ConfigError, InvariantError, IsolateError};
pub use formulas::Watermarks;
pub use frame::Frame;
pub use pcp::PAGE_ALLOC_COSTLY_ORDER;
pub use slowpath::{NoSlowPath, SlowPath};
pub use zone::{MigrateType, Zone, NR_MIGRATETYPES};

use formulas::PAGEBLOCK_NR_PAGES;
use mm_phys::{PageFlags, PhysMem};
use mm_sync::sync::atomic::Ordering;
use mm_sync::sync::{Arc, Mutex};
use mm_types::{CpuId, Gfp, Order, Pfn, ZoneId, NR_ORDERS};
use pcp::pcp_allowed_order;
use zone::{ZONE_BELOW_HIGH, ZONE_BOOSTED_WATERMARK};

/// `MAX_RECLAIM_RETRIES`.
pub const MAX_RECLAIM_RETRIES: u32 = 16;

/// The geometry of one zone, as `/proc/zoneinfo` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The zone type.
    pub id: ZoneId,
    /// First pfn of the span.
    pub start_pfn: Pfn,
    /// Pages spanned, holes included.
    pub spanned: u64,
    /// Pages present.
    pub present: u64,
    /// Pages the allocator manages: `[start_pfn, start_pfn + managed)` is free at boot,
    /// the rest of the present pages are reserved.
    pub managed: u64,
}

/// The allocator's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuddyConfig {
    /// Number of CPUs (each gets pcp lists in every zone).
    pub nr_cpus: u32,
    /// The zones, lowest first; zone types not listed are unpopulated.
    pub zones: Vec<ZoneConfig>,
    /// `vm.min_free_kbytes` as written by the user; `None` computes the boot default.
    pub min_free_kbytes: Option<u64>,
    /// `vm.watermark_scale_factor` (1..=3000).
    pub watermark_scale_factor: u32,
    /// `vm.watermark_boost_factor`.
    pub watermark_boost_factor: u32,
    /// `vm.lowmem_reserve_ratio`.
    pub lowmem_reserve_ratio: [u32; ZoneId::COUNT],
    /// `vm.percpu_pagelist_high_fraction` (0 or >= 8).
    pub percpu_pagelist_high_fraction: u32,
    /// Transparent hugepages enabled (`always` or `madvise`): khugepaged raises
    /// `min_free_kbytes` to its recommendation at boot.
    pub thp_enabled: bool,
}

impl BuddyConfig {
    /// One zone `id` of `pages` frames from `start_pfn`, all managed, with the watermarks at
    /// zero (`min_free_kbytes` 0), no watermark boosting and no THP: the small machine the
    /// tests and loom models of the crates above boot.
    pub fn single_zone(nr_cpus: u32, id: ZoneId, start_pfn: Pfn, pages: u64) -> BuddyConfig {
        BuddyConfig {
            nr_cpus,
            zones: vec![ZoneConfig {
                id,
                start_pfn,
                spanned: pages,
                present: pages,
                managed: pages,
            }],
            min_free_kbytes: Some(0),
            watermark_scale_factor: 10,
            watermark_boost_factor: 0,
            lowmem_reserve_ratio: [256, 256, 32, 0, 0],
            percpu_pagelist_high_fraction: 0,
            thp_enabled: false,
        }
    }
}

/// The sysctls after boot.
#[derive(Debug, Clone)]
struct Tunables {
    min_free_kbytes: u64,
    watermark_scale_factor: u32,
    lowmem_reserve_ratio: [u32; ZoneId::COUNT],
    percpu_pagelist_high_fraction: u32,
    totalreserve_pages: u64,
}

/// One CPU's pcp state in a [`ZoneInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcpInfo {
    /// Pages on the lists.
    pub count: u64,
    /// The live high limit.
    pub high: u64,
    /// The refill/flush batch.
    pub batch: u64,
    /// Lower bound of `high`.
    pub high_min: u64,
    /// Upper bound of `high`.
    pub high_max: u64,
}

/// A snapshot of one zone for `/proc/zoneinfo` and `/proc/buddyinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneInfo {
    /// The zone type.
    pub id: ZoneId,
    /// First pfn.
    pub start_pfn: u64,
    /// Spanned pages.
    pub spanned: u64,
    /// Present pages.
    pub present: u64,
    /// Managed pages.
    pub managed: u64,
    /// `NR_FREE_PAGES`.
    pub nr_free_pages: u64,
    /// Free pages in blocks of pageblock order or more.
    pub nr_free_pages_blocks: u64,
    /// Free blocks per order (buddyinfo).
    pub free_blocks: [u64; NR_ORDERS],
    /// Watermarks.
    pub watermarks: Watermarks,
    /// Watermark boost.
    pub boost: u64,
    /// `lowmem_reserve[]`.
    pub protection: [u64; ZoneId::COUNT],
    /// Per-CPU pcp state.
    pub pcp: Vec<PcpInfo>,
    /// `vm stats threshold`.
    pub stat_threshold: u64,
    /// `pgalloc_<zone>`.
    pub pgalloc: u64,
    /// `pgfree` of this zone.
    pub pgfree: u64,
}

/// Allocator-wide event counters (vmstat events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuddyEvents {
    /// `pgalloc_<zone>`, by zone index.
    pub pgalloc: [u64; ZoneId::COUNT],
    /// `pgfree`.
    pub pgfree: u64,
    /// `allocstall_<zone>`, by the request's highest zone.
    pub allocstall: [u64; ZoneId::COUNT],
    /// Allocation failures reported (`page allocation failure`).
    pub alloc_fail: u64,
}

/// Alloc flags (`ALLOC_*` in mm/internal.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AllocFlags {
    /// Watermark index: 0 min, 1 low, 2 high.
    wmark: usize,
    min_reserve: bool,
    non_block: bool,
    oom: bool,
    kswapd: bool,
}

/// One node's page allocator.
pub struct Buddy {
    mem: Arc<PhysMem>,
    /// Every zone type, populated or not, indexed by `ZoneId::index` (a fixed length, so the
    /// fast paths' zone lookups need no bounds check against a loaded length).
    zones: Box<[Zone; ZoneId::COUNT]>,
    cpus: Box<[pcp::CpuSlot]>,
    /// Populated zone indices for each highest zone, highest first (`ZONELIST_FALLBACK`).
    zonelists: [([u8; ZoneId::COUNT], u8); ZoneId::COUNT],
    nr_cpus: usize,
    has_movable: bool,
    slow: Box<dyn SlowPath>,
    tunables: Mutex<Tunables>,
    pcp_update: Mutex<()>,
    boost_factor: mm_sync::untracked::AtomicU64,
    stalls: [mm_sync::untracked::AtomicU64; ZoneId::COUNT],
    fails: mm_sync::untracked::AtomicU64,
}

impl std::fmt::Debug for Buddy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buddy")
            .field("nr_cpus", &self.nr_cpus)
            .field("zones", &self.zones.len())
            .finish_non_exhaustive()
    }
}

fn check_range(
    name: &'static str,
    v: u64,
    lo: u64,
    hi: u64,
    range: &'static str,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::Sysctl {
            name,
            value: v as i64,
            range,
        });
    }
    Ok(())
}

impl Buddy {
    /// Boots the allocator over `mem`: frees every zone's managed pages into the buddy lists
    /// and computes watermarks, protection and pcp limits.
    pub fn new(mem: Arc<PhysMem>, cfg: &BuddyConfig) -> Result<Buddy, ConfigError> {
        if cfg.nr_cpus == 0 {
            return Err(ConfigError::NoCpus);
        }
        check_range(
            "vm.watermark_scale_factor",
            cfg.watermark_scale_factor as u64,
            1,
            3000,
            "1..=3000",
        )?;
        if cfg.percpu_pagelist_high_fraction != 0 && cfg.percpu_pagelist_high_fraction < 8 {
            return Err(ConfigError::Sysctl {
                name: "vm.percpu_pagelist_high_fraction",
                value: cfg.percpu_pagelist_high_fraction as i64,
                range: "0 or >= 8",
            });
        }
        let mut specs: [Option<ZoneConfig>; ZoneId::COUNT] = [None; ZoneId::COUNT];
        let mut prev_end = 0u64;
        let mut prev_id: Option<ZoneId> = None;
        for z in &cfg.zones {
            if specs[z.id.index()].is_some() {
                return Err(ConfigError::DuplicateZone(z.id));
            }
            if prev_id.is_some_and(|p| p > z.id) || z.start_pfn.0 < prev_end {
                return Err(ConfigError::Overlap(z.id));
            }
            if z.present > z.spanned {
                return Err(ConfigError::Geometry {
                    zone: z.id,
                    what: "present exceeds spanned",
                });
            }
            if z.managed > z.present {
                return Err(ConfigError::Geometry {
                    zone: z.id,
                    what: "managed exceeds present",
                });
            }
            if z.id == ZoneId::Device && z.managed > 0 {
                return Err(ConfigError::Geometry {
                    zone: z.id,
                    what: "ZONE_DEVICE never has managed pages",
                });
            }
            let end = z.start_pfn.0 + z.spanned;
            if end > mem.max_pfn().0 {
                return Err(ConfigError::BeyondRam {
                    zone: z.id,
                    end: Pfn(end),
                    max_pfn: mem.max_pfn(),
                });
            }
            prev_end = end;
            prev_id = Some(z.id);
            specs[z.id.index()] = Some(*z);
        }
        if cfg.zones.iter().all(|z| z.managed == 0) {
            return Err(ConfigError::NoMemory);
        }
        let nr_cpus = cfg.nr_cpus as usize;
        let zones: Box<[Zone; ZoneId::COUNT]> = ZoneId::ALL
            .iter()
            .map(|id| {
                let s = specs[id.index()].unwrap_or(ZoneConfig {
                    id: *id,
                    start_pfn: Pfn(0),
                    spanned: 0,
                    present: 0,
                    managed: 0,
                });
                Zone::new(
                    *id,
                    s.start_pfn,
                    s.spanned,
                    s.present,
                    s.managed,
                    mem.clone(),
                )
            })
            .collect::<Box<[Zone]>>()
            .try_into()
            .unwrap_or_else(|_| unreachable!("one zone per ZoneId"));
        let has_movable = zones[ZoneId::Movable.index()].is_populated();
        let zonelists = std::array::from_fn(|highest| {
            let mut list = [0u8; ZoneId::COUNT];
            let mut n = 0;
            for i in (0..=highest).rev() {
                if zones[i].is_populated() {
                    list[n] = i as u8;
                    n += 1;
                }
            }
            (list, n as u8)
        });
        let buddy = Buddy {
            mem,
            zones,
            cpus: (0..nr_cpus).map(|_| pcp::CpuSlot::default()).collect(),
            zonelists,
            nr_cpus,
            has_movable,
            slow: Box::new(NoSlowPath),
            tunables: Mutex::new(Tunables {
                min_free_kbytes: 0,
                watermark_scale_factor: cfg.watermark_scale_factor,
                lowmem_reserve_ratio: cfg.lowmem_reserve_ratio,
                percpu_pagelist_high_fraction: cfg.percpu_pagelist_high_fraction,
                totalreserve_pages: 0,
            }),
            pcp_update: Mutex::new(()),
            boost_factor: mm_sync::untracked::AtomicU64::new(cfg.watermark_boost_factor as u64),
            stalls: Default::default(),
            fails: Default::default(),
        };
        // Boot order: init_per_zone_wmark_min (watermarks still zero), then khugepaged's
        // recommendation, then the value the user wrote to the sysctl.
        let managed = buddy.managed_array();
        let boot_min =
            formulas::default_min_free_kbytes(formulas::nr_free_buffer_pages(&managed, &[0; 5]));
        buddy.setup_wmarks(boot_min);
        let mut min_free = boot_min;
        if cfg.thp_enabled {
            let high = buddy
                .zones
                .iter()
                .map(|z| z.watermarks().high)
                .collect::<Vec<_>>();
            let high: [u64; 5] = high.try_into().expect("five zones");
            let nr_zones = buddy.zones[..=ZoneId::Normal.index()]
                .iter()
                .filter(|z| z.is_populated())
                .count() as u64;
            let rec = formulas::thp_recommended_min_free_kbytes(
                nr_zones,
                formulas::nr_free_buffer_pages(&managed, &high),
            );
            if rec > min_free {
                min_free = rec;
            }
        }
        if let Some(user) = cfg.min_free_kbytes {
            check_range(
                "vm.min_free_kbytes",
                user,
                0,
                i32::MAX as u64,
                "0..=2147483647",
            )?;
            min_free = user;
        }
        buddy.setup_wmarks(min_free);
        Ok(buddy)
    }

    /// Installs the machine's slow path (kswapd, direct reclaim, OOM).
    pub fn set_slow_path(&mut self, slow: Box<dyn SlowPath>) {
        self.slow = slow;
    }

    /// Returns the simulated RAM.
    pub fn mem(&self) -> &Arc<PhysMem> {
        &self.mem
    }

    /// Returns the number of CPUs.
    pub fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }

    /// Returns a zone.
    pub fn zone(&self, id: ZoneId) -> &Zone {
        &self.zones[id.index()]
    }

    /// Returns the zone whose span holds `pfn`.
    pub fn zone_of(&self, pfn: Pfn) -> Option<&Zone> {
        self.zones
            .iter()
            .find(|z| z.is_populated() && z.contains(pfn))
    }

    fn managed_array(&self) -> [u64; ZoneId::COUNT] {
        std::array::from_fn(|i| self.zones[i].managed)
    }

    /// `setup_per_zone_wmarks` + `setup_per_zone_lowmem_reserve` + `zone_pcp_update`.
    fn setup_wmarks(&self, min_free_kbytes: u64) {
        let mut t = self.tunables.lock();
        t.min_free_kbytes = min_free_kbytes;
        let managed = self.managed_array();
        let w = formulas::watermarks(min_free_kbytes, t.watermark_scale_factor as u64, &managed);
        let reserve = formulas::lowmem_reserve(&t.lowmem_reserve_ratio, &managed);
        for (i, z) in self.zones.iter().enumerate() {
            z.set_watermarks(w[i]);
            z.set_lowmem_reserve(&reserve[i]);
        }
        let high: [u64; ZoneId::COUNT] = std::array::from_fn(|i| w[i].high);
        t.totalreserve_pages = formulas::totalreserve_pages(&managed, &high, &reserve);
        let fraction = t.percpu_pagelist_high_fraction as u64;
        drop(t);
        let _g = self.pcp_update.lock();
        for z in self.zones.iter() {
            self.update_pcp_limits(z, fraction);
        }
    }

    fn update_pcp_limits(&self, z: &Zone, fraction: u64) {
        let (batch, hmin, hmax) = formulas::pcp_limits(
            z.watermarks().low + z.boost(),
            z.managed,
            self.nr_cpus as u64,
            fraction,
        );
        z.pcp_batch.store(batch, Ordering::Relaxed);
        z.pcp_high_min.store(hmin, Ordering::Relaxed);
        z.pcp_high_max.store(hmax, Ordering::Relaxed);
    }

    /// Returns the current `vm.min_free_kbytes`.
    pub fn min_free_kbytes(&self) -> u64 {
        self.tunables.lock().min_free_kbytes
    }

    /// Returns `totalreserve_pages`.
    pub fn totalreserve_pages(&self) -> u64 {
        self.tunables.lock().totalreserve_pages
    }

    /// Writes `vm.min_free_kbytes` and recomputes the watermarks.
    pub fn set_min_free_kbytes(&self, kb: u64) -> Result<(), ConfigError> {
        check_range(
            "vm.min_free_kbytes",
            kb,
            0,
            i32::MAX as u64,
            "0..=2147483647",
        )?;
        self.setup_wmarks(kb);
        Ok(())
    }

    /// Writes `vm.watermark_scale_factor` and recomputes the watermarks.
    pub fn set_watermark_scale_factor(&self, v: u32) -> Result<(), ConfigError> {
        check_range("vm.watermark_scale_factor", v as u64, 1, 3000, "1..=3000")?;
        let kb = {
            let mut t = self.tunables.lock();
            t.watermark_scale_factor = v;
            t.min_free_kbytes
        };
        self.setup_wmarks(kb);
        Ok(())
    }

    /// Writes `vm.lowmem_reserve_ratio` and recomputes the protection.
    pub fn set_lowmem_reserve_ratio(&self, r: [u32; ZoneId::COUNT]) -> Result<(), ConfigError> {
        for v in r {
            check_range(
                "vm.lowmem_reserve_ratio",
                v as u64,
                0,
                i32::MAX as u64,
                "0..=2147483647",
            )?;
        }
        let kb = {
            let mut t = self.tunables.lock();
            t.lowmem_reserve_ratio = r;
            t.min_free_kbytes
        };
        self.setup_wmarks(kb);
        Ok(())
    }

    // ----- allocation -----

    /// Returns the migratetype for a GFP mask (`gfp_migratetype`).
    fn gfp_migratetype(gfp: Gfp) -> MigrateType {
        if gfp.contains(Gfp::MOVABLE) {
            MigrateType::Movable
        } else if gfp.contains(Gfp::RECLAIMABLE) {
            MigrateType::Reclaimable
        } else {
            MigrateType::Unmovable
        }
    }

    /// `__zone_watermark_ok`.
    fn zone_watermark_ok(
        &self,
        z: &Zone,
        order: Order,
        mark: u64,
        highest: ZoneId,
        flags: AllocFlags,
        free: i64,
    ) -> bool {
        let free = free - (order.pages() as i64 - 1);
        let mut min = mark as i64;
        if flags.min_reserve {
            min -= min / 2;
            if flags.non_block {
                min -= min / 4;
            }
        }
        if flags.oom {
            min -= min / 2;
        }
        if free <= min + z.lowmem_reserve(highest) as i64 {
            return false;
        }
        if order.get() == 0 {
            return true;
        }
        let fa = z.free.lock();
        (order.index()..NR_ORDERS).any(|o| fa.nr_free[o] > 0)
    }

    /// `zone_watermark_fast`: the lockless order-0 check, then the full one.
    #[inline(always)]
    fn zone_watermark_fast(
        &self,
        z: &Zone,
        order: Order,
        mark: u64,
        highest: ZoneId,
        flags: AllocFlags,
    ) -> bool {
        let free = z.free_pages();
        if order.get() == 0 && free > (mark + z.lowmem_reserve(highest)) as i64 {
            return true;
        }
        self.zone_watermark_ok(z, order, mark, highest, flags, free)
    }

    /// `get_page_from_freelist`: walks the zonelist from `highest` down.
    #[inline(always)]
    fn get_page_from_freelist(
        &self,
        pcp: &mut PcpRef<'_>,
        order: Order,
        gfp: Gfp,
        flags: AllocFlags,
        highest: ZoneId,
    ) -> Option<Frame> {
        let mt = Self::gfp_migratetype(gfp);
        let (list, n) = &self.zonelists[highest.index()];
        for &zi in &list[..*n as usize] {
            let z = &self.zones[zi as usize];
            if !z.test_flag(ZONE_BELOW_HIGH) {
                if !self.zone_watermark_fast(z, order, z.wmark_pages(2), highest, flags) {
                    z.set_flag(ZONE_BELOW_HIGH);
                } else if let Some(f) = self.rmqueue(z, pcp, order, mt, flags) {
                    return Some(self.prep_new_page(f, gfp));
                } else {
                    continue;
                }
            }
            if !self.zone_watermark_fast(z, order, z.wmark_pages(flags.wmark), highest, flags) {
                continue;
            }
            if let Some(f) = self.rmqueue(z, pcp, order, mt, flags) {
                return Some(self.prep_new_page(f, gfp));
            }
        }
        None
    }

    /// `rmqueue`: from the pcp lists for small orders, else from the buddy lists.
    #[inline(always)]
    fn rmqueue(
        &self,
        z: &Zone,
        pcp: &mut PcpRef<'_>,
        order: Order,
        mt: MigrateType,
        flags: AllocFlags,
    ) -> Option<Frame> {
        let pfn = if pcp_allowed_order(order) {
            let mut locked;
            let p: &mut pcp::CpuPagesets = match pcp {
                PcpRef::Lock(cpu) => {
                    locked = self.cpus[cpu.index()].lock.lock();
                    &mut locked
                }
                PcpRef::Held(g) => g,
            };
            // The boost factor is read only on a refill, off the list-hit path.
            p.zones[z.id.index()].rmqueue(z, order, mt, &self.boost_factor, flags.kswapd)?
        } else {
            let mut fa = z.free.lock();
            let boost_factor = self.boost_factor();
            let pfn = z.rmqueue_locked(&mut fa, order, mt, boost_factor, flags.kswapd)?;
            fa.pgalloc += order.pages();
            drop(fa);
            z.mod_free_pages(-(order.pages() as i64));
            pfn
        };
        if z.test_flag(ZONE_BOOSTED_WATERMARK) {
            z.clear_flag(ZONE_BOOSTED_WATERMARK);
            self.slow.wake_kswapd(self, z.id, Order::ZERO, z.id);
        }
        Some(Frame::new(pfn, order))
    }

    #[inline]
    fn boost_factor(&self) -> u64 {
        // Read without the tunables mutex on the fast path: a sysctl write races benignly.
        self.boost_factor
            .load(mm_sync::untracked::Ordering::Relaxed)
    }

    /// `prep_new_page`: refcount 1, clean flags, zeroed if `__GFP_ZERO`.
    #[inline(always)]
    fn prep_new_page(&self, f: Frame, gfp: Gfp) -> Frame {
        let p = self.mem.page(f.pfn());
        p.set_flags(PageFlags::empty());
        p.set_private(0);
        p.set_refcount(1);
        if gfp.contains(Gfp::ZERO) {
            for i in 0..f.nr_pages() {
                self.mem
                    .zero_frame(f.pfn().add(i))
                    .expect("allocated frame is in RAM");
            }
        }
        f
    }

    /// Allocates a block of `1 << order` frames (`alloc_pages`).
    ///
    /// The fast path takes the first zone, from `gfp`'s highest usable zone down, that is above
    /// its low watermark plus the protection for that highest zone. The slow path then wakes
    /// kswapd, retries at the min watermark (less for `__GFP_HIGH` and atomic requests), and,
    /// if the caller may block, reclaims directly and finally invokes the OOM killer, following
    /// `__GFP_NORETRY`, `__GFP_RETRY_MAYFAIL` and `__GFP_NOFAIL` as documented in gfp_types.h.
    #[inline]
    pub fn alloc(&self, cpu: CpuId, order: Order, gfp: Gfp) -> Result<Frame, AllocError> {
        let highest = gfp.zone(self.has_movable);
        let fast = AllocFlags {
            wmark: 1,
            min_reserve: false,
            non_block: false,
            oom: false,
            kswapd: gfp.contains(Gfp::KSWAPD_RECLAIM),
        };
        let r = match self.get_page_from_freelist(&mut PcpRef::Lock(cpu), order, gfp, fast, highest)
        {
            Some(f) => Ok(f),
            None => self.alloc_slowpath(cpu, order, gfp, highest),
        };
        if let Ok(f) = &r {
            tracing::event!(
                name: "mm_page_alloc",
                target: "mm_trace",
                tracing::Level::TRACE,
                pfn = f.pfn().0,
                order = order.get(),
                gfp_flags = gfp.bits(),
                migratetype = Self::gfp_migratetype(gfp) as u32,
            );
        }
        r
    }

    /// `gfp_to_alloc_flags`.
    fn gfp_to_alloc_flags(gfp: Gfp) -> AllocFlags {
        let blocking = gfp.can_direct_reclaim();
        AllocFlags {
            wmark: 0,
            min_reserve: gfp.contains(Gfp::HIGH),
            non_block: !blocking && !gfp.contains(Gfp::NOMEMALLOC),
            oom: false,
            kswapd: gfp.contains(Gfp::KSWAPD_RECLAIM),
        }
    }

    fn wake_all_kswapds(&self, order: Order, highest: ZoneId) {
        for z in self.zones[..=highest.index()].iter().rev() {
            if z.is_populated() {
                self.slow.wake_kswapd(self, z.id, order, highest);
            }
        }
    }

    /// `should_reclaim_retry`: could reclaimable plus free pages pass the min watermark?
    fn should_reclaim_retry(
        &self,
        order: Order,
        highest: ZoneId,
        flags: AllocFlags,
        no_progress_loops: u32,
    ) -> bool {
        if no_progress_loops > MAX_RECLAIM_RETRIES {
            return false;
        }
        self.zones[..=highest.index()].iter().any(|z| {
            z.is_populated() && {
                let available = z.free_pages() + self.slow.reclaimable_pages(self, z.id) as i64;
                available > 0
                    && self.zone_watermark_ok(z, order, z.wmark_pages(0), highest, flags, available)
                    && self.slow.reclaimable_pages(self, z.id) > 0
            }
        })
    }

    /// `__alloc_pages_slowpath`.
    #[cold]
    fn alloc_slowpath(
        &self,
        cpu: CpuId,
        order: Order,
        gfp: Gfp,
        highest: ZoneId,
    ) -> Result<Frame, AllocError> {
        let mut flags = Self::gfp_to_alloc_flags(gfp);
        let costly = order.get() > PAGE_ALLOC_COSTLY_ORDER;
        let mut no_progress_loops = 0u32;
        // The slow path never holds this CPU's pcp lists: each attempt locks them itself.
        let try_alloc = |flags: AllocFlags| {
            self.get_page_from_freelist(&mut PcpRef::Lock(cpu), order, gfp, flags, highest)
        };
        loop {
            if flags.kswapd {
                self.wake_all_kswapds(order, highest);
            }
            if let Some(f) = try_alloc(flags) {
                return Ok(f);
            }
            let mut give_up = !gfp.can_direct_reclaim();
            if !give_up {
                // __alloc_pages_direct_reclaim: reclaim, retry, and once per reclaim drain the
                // pcp lists (where the reclaimed pages may sit, outside NR_FREE_PAGES) and retry.
                self.stalls[highest.index()].fetch_add(1, mm_sync::untracked::Ordering::Relaxed);
                let reclaimed = self.slow.direct_reclaim(self, cpu, order, gfp, highest);
                if let Some(f) = try_alloc(flags) {
                    return Ok(f);
                }
                self.drain_all_pages(None);
                if let Some(f) = try_alloc(flags) {
                    return Ok(f);
                }
                if gfp.contains(Gfp::NORETRY) || (costly && !gfp.contains(Gfp::RETRY_MAYFAIL)) {
                    give_up = true;
                } else {
                    no_progress_loops = if reclaimed > 0 {
                        0
                    } else {
                        no_progress_loops + 1
                    };
                    if self.should_reclaim_retry(order, highest, flags, no_progress_loops) {
                        continue;
                    }
                    // __alloc_pages_may_oom: not for RETRY_MAYFAIL or costly orders.
                    if !gfp.contains(Gfp::RETRY_MAYFAIL)
                        && !costly
                        && gfp.contains(Gfp::FS)
                        && self.slow.out_of_memory(self, cpu, order, gfp)
                    {
                        no_progress_loops = 0;
                        flags.oom = false;
                        continue;
                    }
                    give_up = true;
                }
            }
            if give_up {
                if gfp.contains(Gfp::NOFAIL) && gfp.can_direct_reclaim() {
                    // Help non-failing allocations with the min reserve, then loop forever.
                    let nofail = AllocFlags {
                        min_reserve: true,
                        ..flags
                    };
                    if let Some(f) = try_alloc(nofail) {
                        return Ok(f);
                    }
                    self.slow.cond_resched(cpu);
                    no_progress_loops = 0;
                    continue;
                }
                self.fails
                    .fetch_add(1, mm_sync::untracked::Ordering::Relaxed);
                return Err(AllocError::NoMemory {
                    order: order.get(),
                    highest,
                });
            }
        }
    }

    // ----- freeing -----

    /// Frees a block (`__free_pages`): small orders go to this CPU's pcp list (straight to the
    /// buddy lists if their pageblock is isolated), larger ones to the buddy lists.
    ///
    /// # Panics
    /// On a double free or a frame outside every zone: both are simulator bugs.
    #[inline]
    pub fn free(&self, cpu: CpuId, frame: Frame) {
        let (pfn, order) = frame.into_raw();
        tracing::event!(
            name: "mm_page_free",
            target: "mm_trace",
            tracing::Level::TRACE,
            pfn = pfn.0,
            order = order.get(),
        );
        self.free_inner(&mut PcpRef::Lock(cpu), pfn, order);
    }

    /// Returns a CPU's pcp lists locked for a run of operations (see [`PcpLocked`]).
    pub fn lock_cpu(&self, cpu: CpuId) -> PcpLocked<'_> {
        PcpLocked {
            buddy: self,
            cpu,
            guard: Some(self.cpus[cpu.index()].lock.lock()),
        }
    }

    #[inline(always)]
    fn free_inner(&self, pcp: &mut PcpRef<'_>, pfn: Pfn, order: Order) {
        let z = self.zone_for_free(pfn);
        let p = self.mem.page(pfn);
        assert!(
            !p.flags()
                .intersects(PageFlags::BUDDY | PageFlags::PCP | PageFlags::RESERVED),
            "double free of {pfn:?} (flags {:?})",
            p.flags()
        );
        p.set_refcount(0);
        if pcp_allowed_order(order) {
            // Lockless read, as get_pfnblock_migratetype; re-checked under the zone lock when
            // the page reaches the buddy lists.
            let Some(mt) = z.pcp_free_migratetype(pfn) else {
                z.free_one_page(pfn, order);
                return;
            };
            let mut locked;
            let p: &mut pcp::CpuPagesets = match pcp {
                PcpRef::Lock(cpu) => {
                    locked = self.cpus[cpu.index()].lock.lock();
                    &mut locked
                }
                PcpRef::Held(g) => g,
            };
            p.zones[z.id.index()].free_commit(z, pfn, mt, order);
        } else {
            z.free_one_page(pfn, order);
        }
    }

    #[inline(always)]
    fn zone_for_free(&self, pfn: Pfn) -> &Zone {
        // Highest zones hold most memory: try the highest populated zone, then the others.
        let (list, _) = &self.zonelists[ZoneId::COUNT - 1];
        let z = &self.zones[list[0] as usize];
        if z.contains(pfn) {
            return z;
        }
        self.zone_for_free_search(pfn)
    }

    /// [`Buddy::zone_for_free`] below the highest zone.
    #[cold]
    #[inline(never)]
    fn zone_for_free_search(&self, pfn: Pfn) -> &Zone {
        let (list, n) = &self.zonelists[ZoneId::COUNT - 1];
        for &zi in &list[..*n as usize] {
            let z = &self.zones[zi as usize];
            if z.contains(pfn) {
                return z;
            }
        }
        panic!("free of {pfn:?}, which no zone spans")
    }

    /// Drains `cpu`'s pcp lists in every zone (or one zone) back to the buddy lists.
    pub fn drain_local(&self, cpu: CpuId, zone: Option<ZoneId>) {
        let mut pcp = self.cpus[cpu.index()].lock.lock();
        for z in self
            .zones
            .iter()
            .filter(|z| zone.is_none_or(|id| id == z.id))
        {
            pcp.zones[z.id.index()].drain(z);
        }
    }

    /// Drains every CPU's pcp lists (`drain_all_pages`), taking each remote pcp lock in turn.
    pub fn drain_all_pages(&self, zone: Option<ZoneId>) {
        for cpu in 0..self.nr_cpus {
            self.drain_local(CpuId(cpu as u32), zone);
        }
    }

    /// `zone_pcp_disable`: sets the zone's pcp `high` to 0 and `batch` to 1 and drains every
    /// CPU, so every later free in this zone goes straight to the buddy lists. The returned
    /// guard holds `pcp_batch_high_lock`; dropping it re-enables the lists (`zone_pcp_enable`).
    pub fn zone_pcp_disable(&self, zone: ZoneId) -> PcpDisabled<'_> {
        let guard = self.pcp_update.lock();
        let z = self.zone(zone);
        z.pcp_high_min.store(0, Ordering::Relaxed);
        z.pcp_high_max.store(0, Ordering::Relaxed);
        z.pcp_batch.store(1, Ordering::Relaxed);
        self.drain_all_pages(Some(zone));
        PcpDisabled {
            buddy: self,
            zone,
            _guard: guard,
        }
    }

    /// Sets the migratetype of the pageblocks of `[start, end)` to isolate and moves their free
    /// pages to the isolate lists (`start_isolate_page_range`), without touching the pcp lists.
    /// Callers use it after [`Buddy::zone_pcp_disable`], as `offline_pages` does.
    pub fn isolate_pageblocks(&self, start: Pfn, end: Pfn) -> Result<(), IsolateError> {
        let z = self.isolation_zone(start, end)?;
        let mut b = start;
        while b < end {
            if let Err(e) = z.isolate_pageblock(b) {
                let mut u = start;
                while u < b {
                    z.unisolate_pageblock(u, MigrateType::Movable);
                    u = u.add(PAGEBLOCK_NR_PAGES);
                }
                return Err(e);
            }
            b = b.add(PAGEBLOCK_NR_PAGES);
        }
        Ok(())
    }

    /// Returns the pageblocks of `[start, end)` to `MIGRATE_MOVABLE` (`undo_isolate_page_range`).
    pub fn unisolate_pageblocks(&self, start: Pfn, end: Pfn) -> Result<(), IsolateError> {
        let z = self.isolation_zone(start, end)?;
        let mut b = start;
        while b < end {
            z.unisolate_pageblock(b, MigrateType::Movable);
            b = b.add(PAGEBLOCK_NR_PAGES);
        }
        Ok(())
    }

    /// Isolates `[start, end)` the way memory offlining does since v5.11 (ec6e8c7e0314):
    /// disable the zone's pcp lists, then isolate. No page freed afterwards can escape to a pcp
    /// list. The pcp lists are re-enabled when the returned guard drops.
    pub fn offline_isolate(&self, start: Pfn, end: Pfn) -> Result<PcpDisabled<'_>, IsolateError> {
        let zone = self.isolation_zone(start, end)?.id;
        let disabled = self.zone_pcp_disable(zone);
        self.isolate_pageblocks(start, end)?;
        Ok(disabled)
    }

    fn isolation_zone(&self, start: Pfn, end: Pfn) -> Result<&Zone, IsolateError> {
        let bad = IsolateError::BadRange { start, end };
        if start >= end
            || !start.0.is_multiple_of(PAGEBLOCK_NR_PAGES)
            || !end.0.is_multiple_of(PAGEBLOCK_NR_PAGES)
        {
            return Err(bad);
        }
        let z = self.zone_of(start).ok_or(bad)?;
        if !z.contains(end.sub(1)) || end.0 > z.start_pfn.0 + z.managed {
            return Err(bad);
        }
        Ok(z)
    }

    /// Returns the free blocks in `[start, end)` that sit on isolate lists, and whether any
    /// page of the range is on a pcp list or a non-isolate free list (an escaped page).
    pub fn isolation_report(&self, start: Pfn, end: Pfn) -> IsolationReport {
        let mut r = IsolationReport::default();
        let Some(z) = self.zone_of(start) else {
            return r;
        };
        for slot in self.cpus.iter() {
            let pcp = slot.lock.lock();
            r.on_pcp += pcp.zones[z.id.index()]
                .pfns(z)
                .iter()
                .filter(|(p, _)| *p >= start && *p < end)
                .map(|(_, o)| o.pages())
                .sum::<u64>();
        }
        let _fa = z.free.lock();
        let mut p = start.0;
        while p < end.0 {
            let page = self.mem.page(Pfn(p));
            if page.test(PageFlags::BUDDY) {
                let order = page.private() & 0xff;
                if MigrateType::from_u8((page.private() >> 8) as u8) == MigrateType::Isolate {
                    r.isolated_free += 1 << order;
                } else {
                    r.on_other_free_list += 1 << order;
                }
                p += 1 << order;
            } else {
                p += 1;
            }
        }
        r
    }

    // ----- reporting -----

    /// Returns `NR_FREE_PAGES` summed over the zones.
    pub fn nr_free_pages(&self) -> u64 {
        self.zones
            .iter()
            .map(|z| z.free_pages().max(0) as u64)
            .sum()
    }

    /// Returns the managed pages of all zones (`totalram_pages`).
    pub fn totalram_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.managed).sum()
    }

    /// Returns the pages on every pcp list.
    pub fn pcp_pages(&self) -> u64 {
        self.cpus
            .iter()
            .map(|s| s.lock.lock().zones.iter().map(|p| p.count).sum::<u64>())
            .sum()
    }

    /// Returns a snapshot of a zone.
    pub fn zone_info(&self, id: ZoneId) -> ZoneInfo {
        let z = self.zone(id);
        let (batch, hmin, hmax) = (
            z.pcp_batch.load(Ordering::Relaxed),
            z.pcp_high_min.load(Ordering::Relaxed),
            z.pcp_high_max.load(Ordering::Relaxed),
        );
        let mut pgalloc = 0;
        let mut pgfree = 0;
        let pcp = self
            .cpus
            .iter()
            .map(|s| {
                let g = s.lock.lock();
                let p = &g.zones[id.index()];
                pgalloc += p.pgalloc;
                pgfree += p.pgfree;
                PcpInfo {
                    count: p.count,
                    high: p.high,
                    batch,
                    high_min: hmin,
                    high_max: hmax,
                }
            })
            .collect();
        let fa = z.free.lock();
        ZoneInfo {
            id,
            start_pfn: z.start_pfn.0,
            spanned: z.spanned,
            present: z.present,
            managed: z.managed,
            nr_free_pages: z.free_pages().max(0) as u64,
            nr_free_pages_blocks: fa.free_pages_blocks(),
            free_blocks: fa.nr_free,
            watermarks: z.watermarks(),
            boost: z.boost(),
            protection: z.protection(),
            pcp,
            stat_threshold: formulas::stat_threshold(z.managed, self.nr_cpus as u64),
            pgalloc: pgalloc + fa.pgalloc,
            pgfree: pgfree + fa.pgfree,
        }
    }

    /// Returns the allocator's vm event counters.
    pub fn vm_events(&self) -> BuddyEvents {
        let mut e = BuddyEvents::default();
        for z in self.zones.iter() {
            let info = self.zone_info(z.id);
            e.pgalloc[z.id.index()] = info.pgalloc;
            e.pgfree += info.pgfree;
        }
        for (i, s) in self.stalls.iter().enumerate() {
            e.allocstall[i] = s.load(mm_sync::untracked::Ordering::Relaxed);
        }
        e.alloc_fail = self.fails.load(mm_sync::untracked::Ordering::Relaxed);
        e
    }

    /// Checks every zone's free lists, pcp lists and counters. Takes every CPU's pcp lock in
    /// CPU order, then each zone lock, so the view is consistent.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        // Lock order: every CPU's pcp lock in CPU order, then each zone lock in turn.
        let pcps: Vec<_> = self.cpus.iter().map(|s| s.lock.lock()).collect();
        for z in self.zones.iter() {
            let err = |what: String| InvariantError { zone: z.id, what };
            let fa = z.free.lock();
            let mut pcp_pages = 0;
            for p in &pcps {
                let p = &p.zones[z.id.index()];
                p.check(z).map_err(err)?;
                pcp_pages += p.count;
            }
            let free = z.check_free_area(&fa).map_err(err)?;
            let nr_free = z.free_pages();
            if nr_free != (free - fa.isolated_free) as i64 {
                return Err(err(format!(
                    "NR_FREE_PAGES is {nr_free} but the free lists hold {free} pages ({} isolated)",
                    fa.isolated_free
                )));
            }
            if free + pcp_pages > z.managed {
                return Err(err(format!(
                    "{free} free + {pcp_pages} pcp pages exceed {} managed",
                    z.managed
                )));
            }
        }
        Ok(())
    }
}

/// How an operation reaches its CPU's pcp lists: by locking them for itself, or through a
/// lock the caller already holds.
enum PcpRef<'g> {
    Lock(CpuId),
    Held(&'g mut pcp::CpuPagesets),
}

/// A CPU's pcp lists locked across a run of allocations and frees, as a CPU actor holds them for
/// a quantum (like `local_lock` around a stretch of kernel code). Each operation through it takes
/// no lock at all. A remote drain of this CPU waits until the guard is dropped or
/// [`PcpLocked::relax`]ed, so hold it only while the CPU runs; it is released around the
/// allocation slow path, which may reclaim or drain.
pub struct PcpLocked<'a> {
    buddy: &'a Buddy,
    cpu: CpuId,
    guard: Option<mm_sync::sync::SpinLockGuard<'a, pcp::CpuPagesets>>,
}

impl std::fmt::Debug for PcpLocked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcpLocked").field("cpu", &self.cpu).finish()
    }
}

impl PcpLocked<'_> {
    /// Returns the CPU.
    pub fn cpu(&self) -> CpuId {
        self.cpu
    }

    /// Allocates like [`Buddy::alloc`]; the fast path uses the held lists.
    #[inline]
    pub fn alloc(&mut self, order: Order, gfp: Gfp) -> Result<Frame, AllocError> {
        let b = self.buddy;
        let highest = gfp.zone(b.has_movable);
        let fast = AllocFlags {
            wmark: 1,
            min_reserve: false,
            non_block: false,
            oom: false,
            kswapd: gfp.contains(Gfp::KSWAPD_RECLAIM),
        };
        let guard = self.guard.as_mut().expect("PcpLocked holds its lock");
        let mut pcp = PcpRef::Held(guard);
        // Order 0 is most requests: a copy of the fast path with the order a constant lets the
        // compiler fold the order arithmetic away.
        let hit = if order == Order::ZERO {
            b.get_page_from_freelist(&mut pcp, Order::ZERO, gfp, fast, highest)
        } else {
            b.get_page_from_freelist(&mut pcp, order, gfp, fast, highest)
        };
        if let Some(f) = hit {
            return Ok(f);
        }
        // The slow path may reclaim, drain every CPU or wait: never with a pcp lock held.
        self.guard = None;
        let r = b.alloc_slowpath(self.cpu, order, gfp, highest);
        self.guard = Some(b.cpus[self.cpu.index()].lock.lock());
        r
    }

    /// Frees like [`Buddy::free`], onto the held lists.
    #[inline]
    pub fn free(&mut self, frame: Frame) {
        let guard = self.guard.as_mut().expect("PcpLocked holds its lock");
        let mut pcp = PcpRef::Held(guard);
        if frame.order() == Order::ZERO {
            let (pfn, _) = frame.into_raw();
            self.buddy.free_inner(&mut pcp, pfn, Order::ZERO);
        } else {
            let (pfn, order) = frame.into_raw();
            self.buddy.free_inner(&mut pcp, pfn, order);
        }
    }

    /// Drops and retakes the lock, letting a waiting remote drain in (a preemption point).
    pub fn relax(&mut self) {
        self.guard = None;
        mm_sync::hint::spin_loop();
        self.guard = Some(self.buddy.cpus[self.cpu.index()].lock.lock());
    }
}

/// What [`Buddy::isolation_report`] found in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IsolationReport {
    /// Free pages on isolate lists.
    pub isolated_free: u64,
    /// Pages of the range sitting on some CPU's pcp list.
    pub on_pcp: u64,
    /// Free pages of the range on a non-isolate free list.
    pub on_other_free_list: u64,
}

/// A zone whose pcp lists are disabled (see [`Buddy::zone_pcp_disable`]).
#[must_use = "dropping the guard re-enables the pcp lists at once"]
pub struct PcpDisabled<'a> {
    buddy: &'a Buddy,
    zone: ZoneId,
    _guard: mm_sync::sync::MutexGuard<'a, ()>,
}

impl std::fmt::Debug for PcpDisabled<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcpDisabled")
            .field("zone", &self.zone)
            .finish()
    }
}

impl Drop for PcpDisabled<'_> {
    fn drop(&mut self) {
        let fraction = self.buddy.tunables.lock().percpu_pagelist_high_fraction as u64;
        self.buddy
            .update_pcp_limits(self.buddy.zone(self.zone), fraction);
    }
}

#[cfg(all(test, mm_loom))]
mod loom_tests;
#[cfg(all(test, not(mm_loom)))]
mod tests;
