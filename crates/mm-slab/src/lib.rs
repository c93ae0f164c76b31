//! The slab allocator (layer L3): SLUB-style caches of small kernel objects on frames of the
//! buddy allocator, after Linux 6.x `mm/slub.c`, `mm/slab_common.c` and `mm/vmscan.c`.
//!
//! This crate owns:
//! - [`SlabAllocator`]: the machine's slab. [`SlabAllocator::new`] boots it on a
//!   [`mm_buddy::Buddy`] with the kernel's boot caches (`kmem_cache`, `kmem_cache_node`,
//!   `kmalloc-96` … `kmalloc-8k` and the `kmalloc-rcl-*` family) and the standard caches of the
//!   simulator's own kernel objects ([`StdCache`]: `mm_struct`, `vm_area_struct`, `task_struct`,
//!   `anon_vma`, `anon_vma_chain`, `maple_node`, `dentry`).
//! - [`KmemCache`]: one cache (`kmem_cache_create`): object size, alignment
//!   (`SLAB_HWCACHE_ALIGN`), `SLAB_RECLAIM_ACCOUNT`, constructor; the slab order and objects per
//!   slab SLUB's `calculate_order` picks; per-CPU slabs and one node's partial and full lists.
//! - [`SlabCpu`]: a thread's pin of a simulated CPU, through which it allocates and frees
//!   ([`SlabCpu::alloc`], [`SlabCpu::free`], [`SlabCpu::kmalloc`], [`SlabCpu::kfree`], typed
//!   [`KObj`]s). Objects are [`SlabObj`] handles: physical addresses in simulated RAM.
//! - Shrinkers ([`Shrinker`], [`ShrinkerRegistry`], `do_shrink_slab`) and the dentry-cache
//!   analogue ([`DentryCache`]) that workloads grow and its shrinker trims.
//! - `/proc/slabinfo` 2.1 ([`render_slabinfo`]) and meminfo's `SReclaimable` / `SUnreclaim`
//!   ([`SlabAllocator::slab_reclaimable_pages`], [`SlabAllocator::slab_unreclaimable_pages`]).
//!
//! Neighbours: frames come from `mm-buddy` and go back to it; object bytes and the slab
//! descriptors live in `mm-phys` (the `struct slab` overlay of the head page). Reclaim
//! (`mm-kswapd`) calls [`SlabAllocator::shrink_slab`]; `mm-sim` renders the /proc files.
//!
//! # Invariants
//! - Every object lies in exactly one slab, at `base + i * size`, and is either allocated, on
//!   its slab's freelist, or on the freelist of the CPU whose active slab holds it; freelists
//!   are chains of free pointers stored inside the free objects in simulated RAM.
//! - Conservation, per cache: allocated objects + free objects on all freelists = the objects of
//!   all slabs = `total_objects`; `Slab` pages = `SReclaimable` + `SUnreclaim`, with large
//!   kmalloc blocks counted in `SUnreclaim` as Linux does.
//! - A slab is frozen (some CPU's active slab, on no list) or on its node's partial list (it has
//!   free objects) or full list (it has none). An empty slab is freed to the buddy allocator
//!   as soon as the node keeps `min_partial` partial slabs, and always by a shrink.
//! - Only the pin holders of a CPU touch its per-CPU slabs; a CPU freelist holds only objects
//!   of that CPU's active slab.
//!
//! # Locking protocol
//! Lock order: (a CPU actor's held pcp lists, [`SlabAllocator::cpu_with_pcp`]) → CPU pin →
//! per-CPU `local_lock` (slow paths only) → node `list_lock`. Pins never block. The fast paths
//! take no lock: an exclusive pin commits with a store, a shared pin with a compare-and-swap of
//! the (freelist, tid) word. A slow path first claims the word (BUSY, new tid), which fails
//! every concurrent fast path of a sharer. The buddy allocator is called with no lock of this
//! crate held, for allocating (its slow path may reclaim through the shrinkers) and for freeing
//! (its pcp lock may be held by a CPU actor for a quantum); slab pages of a pin made with held
//! pcp lists go through those lists. The cache list mutex (`slab_mutex`) and the shrinker-list
//! mutex are never held across other locks of this crate. The dentry cache's mutex is never
//! held while allocating or freeing slab objects.
#![deny(unsafe_code)]

mod cache;
mod cpu;
mod dcache;
mod error;
mod kobj;
mod shrinker;
mod sizes;
mod slab;
mod slabcore;
mod slabinfo;

pub use cache::{CacheCounts, Ctor, KmemCache, SlabInfoRow};
pub use cpu::{PinMode, SlabCpu, SlabObj};
pub use dcache::{DcacheShrinker, Dentry, DentryCache, D_COUNT_OFFSET, D_HASH_OFFSET};
pub use error::{BootError, CreateError, DestroyError, InvariantError, SlabError};
pub use kobj::{
    AnonVma, AnonVmaChain, KObj, KernelObject, MapleNode, MmStruct, ObjSource, StdCache,
    TaskStruct, VmAreaStruct, ANON_VMA_WAIT_LIST,
};
pub use shrinker::{
    ShrinkControl, Shrinker, ShrinkerId, ShrinkerRegistry, DEFAULT_SEEKS, DEF_PRIORITY,
    SHRINK_BATCH, SHRINK_EMPTY, SHRINK_STOP,
};
pub use sizes::{
    kmalloc_index, kmalloc_name, kmalloc_size, kmalloc_size_roundup, KmallocType, SlabFlags,
    CACHE_LINE_SIZE, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE, KMALLOC_MIN_SIZE, MAX_OBJS_PER_PAGE,
    SLUB_MAX_ORDER_DEFAULT,
};
pub use slabinfo::{format_slabinfo_row, render_slabinfo, SLABINFO_HEADER};

use mm_buddy::{Buddy, PcpLocked};
use mm_sync::sync::Arc;
use mm_types::{CpuId, Gfp, NodeId, MAX_ORDER};
use sizes::{
    calculate_alignment, fls, Sizing, ARCH_KMALLOC_MINALIGN, KMALLOC_CREATE_ORDER, KMALLOC_SLOTS,
};
use slabcore::SlabCore;

/// The slab allocator's boot parameters (`slub_min_objects=`, `slub_min_order=`,
/// `slub_max_order=` on the kernel command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlabConfig {
    /// `slub_min_objects`; 0 derives it from the CPU count: `4 * (fls(nr_cpus) + 1)`.
    pub slub_min_objects: u32,
    /// `slub_min_order`.
    pub slub_min_order: u32,
    /// `slub_max_order` (default `PAGE_ALLOC_COSTLY_ORDER` = 3).
    pub slub_max_order: u32,
    /// Create the standard caches and the dentry cache at boot.
    pub standard_caches: bool,
}

impl Default for SlabConfig {
    fn default() -> Self {
        SlabConfig {
            slub_min_objects: 0,
            slub_min_order: 0,
            slub_max_order: SLUB_MAX_ORDER_DEFAULT,
            standard_caches: true,
        }
    }
}

/// The machine's slab allocator.
pub struct SlabAllocator {
    pub(crate) core: SlabCore,
    /// `kmalloc_caches[type][index]`; index 0 aliases kmalloc-8 and is never looked up.
    pub(crate) kmalloc: [[Arc<KmemCache>; KMALLOC_SLOTS]; 2],
    std: Option<[Arc<KmemCache>; 7]>,
    dcache: Option<Arc<DentryCache>>,
    shrinkers: ShrinkerRegistry,
}

impl std::fmt::Debug for SlabAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlabAllocator")
            .field("core", &self.core)
            .field("reclaimable", &self.slab_reclaimable_pages())
            .field("unreclaimable", &self.slab_unreclaimable_pages())
            .finish_non_exhaustive()
    }
}

impl SlabAllocator {
    /// Boots the slab allocator on `buddy` with the default parameters (`kmem_cache_init`,
    /// `create_kmalloc_caches`, then the standard caches and the dentry cache with its
    /// shrinker).
    pub fn new(buddy: Arc<Buddy>) -> Result<SlabAllocator, BootError> {
        Self::with_config(buddy, SlabConfig::default())
    }

    /// Boots the slab allocator with explicit parameters.
    pub fn with_config(buddy: Arc<Buddy>, cfg: SlabConfig) -> Result<SlabAllocator, BootError> {
        let max_pfn = buddy.mem().max_pfn();
        if max_pfn.0 > 1 << 31 {
            return Err(BootError::RamTooLarge(max_pfn));
        }
        if cfg.slub_max_order > MAX_ORDER as u32 {
            return Err(BootError::Param {
                name: "slub_max_order",
                value: cfg.slub_max_order,
            });
        }
        if cfg.slub_min_order > cfg.slub_max_order {
            return Err(BootError::Param {
                name: "slub_min_order",
                value: cfg.slub_min_order,
            });
        }
        let nr_cpus = buddy.nr_cpus() as u64;
        let sizing = Sizing {
            min_objects: match cfg.slub_min_objects {
                0 => 4 * (fls(nr_cpus) + 1),
                n => n,
            },
            min_order: cfg.slub_min_order,
            max_order: cfg.slub_max_order,
        };
        let core = SlabCore::new(buddy, sizing);

        // kmem_cache_init: the caches of the caches, then their own descriptors.
        let hw = SlabFlags::HWCACHE_ALIGN | SlabFlags::PANIC;
        let kc = core.create("kmem_cache", 256, calculate_alignment(hw, 0, 256), hw, None)?;
        let kcn = core.create(
            "kmem_cache_node",
            128,
            calculate_alignment(hw, 0, 128),
            hw,
            None,
        )?;
        core.set_meta_caches(kc.clone(), kcn.clone());
        for c in [&kc, &kcn] {
            core.alloc_descriptors(c).map_err(CreateError::from)?;
        }

        // create_kmalloc_caches: kmalloc-* then kmalloc-rcl-*.
        let mut kmalloc: [Vec<Option<Arc<KmemCache>>>; 2] =
            [vec![None; KMALLOC_SLOTS], vec![None; KMALLOC_SLOTS]];
        for kind in [KmallocType::Normal, KmallocType::Reclaim] {
            for idx in KMALLOC_CREATE_ORDER {
                let size = kmalloc_size(idx) as u32;
                let mut flags = SlabFlags::KMALLOC | SlabFlags::PANIC;
                if kind == KmallocType::Reclaim {
                    flags |= SlabFlags::RECLAIM_ACCOUNT;
                }
                // create_boot_cache: power-of-two sizes are naturally aligned.
                let align = if size.is_power_of_two() {
                    size.max(ARCH_KMALLOC_MINALIGN)
                } else {
                    ARCH_KMALLOC_MINALIGN
                };
                let align = calculate_alignment(flags, align, size);
                let c = core.create(&kmalloc_name(kind, idx), size, align, flags, None)?;
                kmalloc[kind as usize][idx] = Some(c);
            }
        }
        let kmalloc = kmalloc.map(|v| {
            let eight = v[3].clone().expect("kmalloc-8 exists");
            let v: Vec<Arc<KmemCache>> = v
                .into_iter()
                .map(|c| c.unwrap_or_else(|| eight.clone()))
                .collect();
            <[Arc<KmemCache>; KMALLOC_SLOTS]>::try_from(v).expect("KMALLOC_SLOTS entries")
        });

        let mut std = None;
        let mut dcache = None;
        let shrinkers = ShrinkerRegistry::new();
        if cfg.standard_caches {
            let mut v = Vec::with_capacity(StdCache::ALL.len());
            for sc in StdCache::ALL {
                let s = sc.spec();
                v.push(core.create_user(s.name, s.object_size, s.align, s.flags, sc.ctor())?);
            }
            let arr: [Arc<KmemCache>; 7] = v.try_into().expect("seven standard caches");
            let d = Arc::new(DentryCache::new(arr[StdCache::Dentry.index()].clone()));
            shrinkers.register(Box::new(DcacheShrinker(d.clone())));
            dcache = Some(d);
            std = Some(arr);
        }
        Ok(SlabAllocator {
            core,
            kmalloc,
            std,
            dcache,
            shrinkers,
        })
    }

    /// Pins `cpu` for the calling thread: exclusively if nobody holds it (the fastest path),
    /// shared if other threads share it, remotely if another thread holds it exclusively.
    /// Hold the pin for a burst of work (a CPU actor holds it for its quantum).
    ///
    /// # Panics
    /// If `cpu` is not a CPU of the machine.
    #[inline]
    pub fn cpu(&self, cpu: CpuId) -> SlabCpu<'_> {
        SlabCpu::new(self, cpu, true, None)
    }

    /// Pins the CPU whose pcp lists `pcp` holds, as [`SlabAllocator::cpu`] does, and takes
    /// slab pages from and frees them to those held lists. A CPU actor that holds its pcp lists
    /// across a quantum must pin through this, since a slab page allocation on the CPU would
    /// otherwise wait for the pcp lock the actor holds.
    pub fn cpu_with_pcp<'a>(&'a self, pcp: PcpLocked<'a>) -> SlabCpu<'a> {
        let cpu = pcp.cpu();
        SlabCpu::new(self, cpu, true, Some(pcp))
    }

    /// Pins `cpu` shared: for tasks that may run on the CPU at the same time as its actor
    /// (preemption), remotely if another thread holds it exclusively.
    pub fn cpu_shared(&self, cpu: CpuId) -> SlabCpu<'_> {
        SlabCpu::new(self, cpu, false, None)
    }

    /// Returns the page allocator.
    pub fn buddy(&self) -> &Arc<Buddy> {
        &self.core.buddy
    }

    /// Returns the number of CPUs.
    pub fn nr_cpus(&self) -> usize {
        self.core.nr_cpus
    }

    /// Creates a cache (`kmem_cache_create(name, object_size, align, flags, ctor)`). `align` is
    /// the minimum alignment (0 for none); `SLAB_HWCACHE_ALIGN` may raise it.
    pub fn create_cache(
        &self,
        name: &str,
        object_size: u32,
        align: u32,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<Arc<KmemCache>, CreateError> {
        self.core.create_user(
            name,
            object_size,
            align,
            flags.difference(SlabFlags::KMALLOC),
            ctor,
        )
    }

    /// Destroys a cache from `cpu` (`kmem_cache_destroy`); see [`SlabCpu::destroy`].
    pub fn destroy_cache(&self, cpu: CpuId, cache: &Arc<KmemCache>) -> Result<(), DestroyError> {
        self.cpu(cpu).destroy(cache)
    }

    /// Shrinks a cache from `cpu` (`kmem_cache_shrink`); see [`SlabCpu::shrink`].
    pub fn shrink_cache(&self, cpu: CpuId, cache: &KmemCache) -> u64 {
        self.cpu(cpu).shrink(cache)
    }

    /// Returns a standard cache.
    ///
    /// # Panics
    /// If the allocator was booted without standard caches.
    #[inline]
    pub fn std_cache(&self, which: StdCache) -> &Arc<KmemCache> {
        &self
            .std
            .as_ref()
            .expect("booted without the standard caches")[which.index()]
    }

    /// Returns the kmalloc cache serving `size` bytes with `gfp` (`kmalloc_slab`), or `None`
    /// for 0 and for sizes above 8 KiB.
    pub fn kmalloc_cache(&self, size: usize, gfp: Gfp) -> Option<&Arc<KmemCache>> {
        kmalloc_index(size).map(|i| &self.kmalloc[gfp.contains(Gfp::RECLAIMABLE) as usize][i])
    }

    /// Returns the dentry cache.
    ///
    /// # Panics
    /// If the allocator was booted without standard caches.
    pub fn dcache(&self) -> &Arc<DentryCache> {
        self.dcache
            .as_ref()
            .expect("booted without the standard caches")
    }

    /// Returns the shrinker registry.
    pub fn shrinkers(&self) -> &ShrinkerRegistry {
        &self.shrinkers
    }

    /// Calls the shrinkers for node `nid` at reclaim `priority` from `cpu` (`shrink_slab`),
    /// returning the objects freed.
    pub fn shrink_slab(&self, cpu: CpuId, gfp: Gfp, nid: NodeId, priority: u32) -> u64 {
        self.shrinkers.shrink_slab(self, cpu, gfp, nid, priority)
    }

    /// Shrinks until little is left (`drop_slab`, `echo 2 > /proc/sys/vm/drop_caches`),
    /// returning the objects freed.
    pub fn drop_slab(&self, cpu: CpuId) -> u64 {
        let mut total = 0;
        let mut shift = 0;
        loop {
            let freed = self.shrink_slab(cpu, Gfp::GFP_KERNEL, NodeId(0), 0);
            total += freed;
            if (freed >> shift) <= 1 {
                return total;
            }
            shift += 1;
        }
    }

    /// Returns the live caches, newest first (the order of `/proc/slabinfo`).
    pub fn caches(&self) -> Vec<Arc<KmemCache>> {
        let mut v = self.core.live_caches();
        v.reverse();
        v
    }

    /// Returns every live cache's slabinfo values, newest first.
    pub fn slabinfo_rows(&self) -> Vec<SlabInfoRow> {
        self.caches()
            .iter()
            .map(|c| c.slabinfo(&self.core.mem))
            .collect()
    }

    /// Returns the pages of `SLAB_RECLAIM_ACCOUNT` slabs (meminfo `SReclaimable`, vmstat
    /// `nr_slab_reclaimable`).
    pub fn slab_reclaimable_pages(&self) -> u64 {
        self.core.reclaimable_pages()
    }

    /// Returns the pages of other slabs and of large kmalloc blocks (meminfo `SUnreclaim`,
    /// vmstat `nr_slab_unreclaimable`).
    pub fn slab_unreclaimable_pages(&self) -> u64 {
        self.core.unreclaimable_pages()
    }

    /// Returns the slab pages (meminfo `Slab` = `SReclaimable` + `SUnreclaim`).
    pub fn slab_pages(&self) -> u64 {
        self.slab_reclaimable_pages() + self.slab_unreclaimable_pages()
    }

    /// Allocates from `cpu` (pins it for this one call); see [`SlabCpu::kmalloc`].
    pub fn kmalloc(&self, cpu: CpuId, size: usize, gfp: Gfp) -> Result<SlabObj, SlabError> {
        self.cpu(cpu).kmalloc(size, gfp)
    }

    /// Frees from `cpu` (pins it for this one call); see [`SlabCpu::kfree`].
    pub fn kfree(&self, cpu: CpuId, obj: SlabObj) {
        self.cpu(cpu).kfree(obj)
    }

    /// Counts one cache's slabs and free objects and checks its lists, slabs and freelists,
    /// including the CPU slabs of every CPU no other thread holds.
    pub fn cache_counts(&self, cache: &KmemCache) -> Result<CacheCounts, InvariantError> {
        let mut cpu_slabs = Vec::new();
        let mut skipped = 0;
        let pins: Vec<SlabCpu<'_>> = (0..self.core.nr_cpus)
            .map(|i| self.cpu(CpuId(i as u32)))
            .collect();
        for p in &pins {
            if p.mode() == PinMode::Remote {
                skipped += 1;
            } else if let Some(s) = p.cpu_slab_snapshot(cache) {
                cpu_slabs.push(s);
            }
        }
        let r = cache.check(&self.core.mem, &cpu_slabs, skipped);
        drop(pins);
        r
    }

    /// Checks every live cache ([`SlabAllocator::cache_counts`]) and that the page counters
    /// equal the pages of all slabs (when no CPU is held by another thread and no large
    /// kmalloc block is live, exactly; otherwise as a lower bound).
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let mut reclaimable = 0;
        let mut unreclaimable = 0;
        let mut exact = true;
        for c in self.core.live_caches() {
            let n = self.cache_counts(&c)?;
            exact &= n.cpus_skipped == 0;
            if c.is_reclaimable() {
                reclaimable += n.pages;
            } else {
                unreclaimable += n.pages;
            }
        }
        let err = |what: String| InvariantError {
            cache: "*".to_string(),
            what,
        };
        let r = self.slab_reclaimable_pages();
        if (exact && reclaimable != r) || reclaimable > r {
            return Err(err(format!(
                "SReclaimable is {} pages, the reclaimable slabs hold {reclaimable}",
                self.slab_reclaimable_pages()
            )));
        }
        if unreclaimable > self.slab_unreclaimable_pages() {
            return Err(err(format!(
                "SUnreclaim is {} pages, the unreclaimable slabs hold {unreclaimable}",
                self.slab_unreclaimable_pages()
            )));
        }
        Ok(())
    }
}

#[cfg(all(test, not(mm_loom)))]
mod tests;

#[cfg(all(test, mm_loom))]
#[path = "tests/loom_freelist.rs"]
mod loom_freelist;

#[cfg(all(test, mm_loom))]
#[path = "tests/loom_b10.rs"]
mod loom_b10;

#[cfg(all(test, mm_loom))]
#[path = "tests/loom_slowpath.rs"]
mod loom_slowpath;
