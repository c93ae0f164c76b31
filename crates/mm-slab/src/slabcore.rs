//! State shared by every cache: the page allocator, the cache registry (`slab_caches` under
//! `slab_mutex`), the CPU pins and the slab page counters.

use crate::cache::{Ctor, KmemCache};
use crate::error::{CreateError, SlabError};
use crate::sizes::{calculate_alignment, calculate_sizes, Sizing, SlabFlags};
use mm_buddy::{AllocError, Buddy, Frame};
use mm_phys::PhysMem;
use mm_sync::sync::atomic::{AtomicBool, AtomicU32};
use mm_sync::sync::{Arc, Mutex};
use mm_sync::untracked::{self, OnceLock};
use mm_types::{CpuId, Gfp, Order, PhysAddr};

/// Where slab pages come from and go back to: the buddy allocator, through the calling CPU's
/// pcp lists (locked per call, or held by the caller across its quantum).
pub(crate) trait PageOps {
    /// Allocates a block (`alloc_pages`).
    fn alloc_pages(&self, order: Order, gfp: Gfp) -> Result<Frame, AllocError>;
    /// Frees a block (`__free_pages`).
    fn free_pages(&self, frame: Frame);
}

/// Pages through the buddy allocator's per-call locking on `cpu`.
pub(crate) struct PlainPages<'a> {
    pub(crate) buddy: &'a Buddy,
    pub(crate) cpu: CpuId,
}

impl PageOps for PlainPages<'_> {
    fn alloc_pages(&self, order: Order, gfp: Gfp) -> Result<Frame, AllocError> {
        self.buddy.alloc(self.cpu, order, gfp)
    }
    fn free_pages(&self, frame: Frame) {
        self.buddy.free(self.cpu, frame)
    }
}

/// Cache ids available over the allocator's life; ids are not reused after a destroy, so a
/// kfree of a stale object can never be attributed to a newer cache.
pub(crate) const MAX_CACHES: usize = 1024;

/// The pin word's exclusive-holder bit; the low bits count shared holders.
pub(crate) const PIN_EXCL: u32 = 1 << 31;

/// Who may use one CPU's per-CPU slabs: one exclusive holder (plain stores on the fast path)
/// or any number of shared holders (compare-and-swap with tid on the fast path).
#[derive(Debug)]
pub(crate) struct CpuPin {
    pub(crate) word: AtomicU32,
    /// A thread that could not pin this CPU asks its holder to flush the CPU slabs on release
    /// (`flush_all` queues work on each CPU).
    pub(crate) flush_req: AtomicBool,
}

/// The caches alive, in creation order, and the next id (`slab_caches`, `slab_mutex`).
#[derive(Debug, Default)]
struct CacheList {
    ids: Vec<u32>,
    next_id: u32,
}

/// The allocator-wide state.
pub(crate) struct SlabCore {
    pub(crate) buddy: Arc<Buddy>,
    pub(crate) mem: Arc<PhysMem>,
    pub(crate) sizing: Sizing,
    pub(crate) nr_cpus: usize,
    pub(crate) pins: Box<[CpuPin]>,
    registry: Box<[OnceLock<Arc<KmemCache>>]>,
    list: Mutex<CacheList>,
    /// The `kmem_cache` and `kmem_cache_node` caches, once both exist.
    meta: OnceLock<(Arc<KmemCache>, Arc<KmemCache>)>,
    /// `NR_SLAB_RECLAIMABLE_B` in pages.
    nr_reclaimable: untracked::AtomicI64,
    /// `NR_SLAB_UNRECLAIMABLE_B` in pages (large kmalloc blocks included, as in Linux).
    nr_unreclaimable: untracked::AtomicI64,
}

impl std::fmt::Debug for SlabCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlabCore")
            .field("nr_cpus", &self.nr_cpus)
            .field("sizing", &self.sizing)
            .finish_non_exhaustive()
    }
}

impl SlabCore {
    pub(crate) fn new(buddy: Arc<Buddy>, sizing: Sizing) -> SlabCore {
        let nr_cpus = buddy.nr_cpus();
        SlabCore {
            mem: buddy.mem().clone(),
            buddy,
            sizing,
            nr_cpus,
            pins: (0..nr_cpus)
                .map(|_| CpuPin {
                    word: AtomicU32::new(0),
                    flush_req: AtomicBool::new(false),
                })
                .collect(),
            registry: (0..MAX_CACHES).map(|_| OnceLock::new()).collect(),
            list: Mutex::new(CacheList::default()),
            meta: OnceLock::new(),
            nr_reclaimable: untracked::AtomicI64::new(0),
            nr_unreclaimable: untracked::AtomicI64::new(0),
        }
    }

    /// Adds `delta` pages to the reclaimable or unreclaimable slab counter.
    pub(crate) fn account_pages(&self, reclaimable: bool, delta: i64) {
        let c = if reclaimable {
            &self.nr_reclaimable
        } else {
            &self.nr_unreclaimable
        };
        c.fetch_add(delta, untracked::Ordering::Relaxed);
    }

    /// Returns the reclaimable slab pages (meminfo `SReclaimable`).
    pub(crate) fn reclaimable_pages(&self) -> u64 {
        self.nr_reclaimable
            .load(untracked::Ordering::Relaxed)
            .max(0) as u64
    }

    /// Returns the unreclaimable slab pages (meminfo `SUnreclaim`).
    pub(crate) fn unreclaimable_pages(&self) -> u64 {
        self.nr_unreclaimable
            .load(untracked::Ordering::Relaxed)
            .max(0) as u64
    }

    /// Returns the cache whose slab pages carry `mapping` (cache id + 1).
    ///
    /// # Panics
    /// If no cache has that id: the address is not a slab object.
    #[inline]
    pub(crate) fn cache_by_mapping(&self, mapping: u64) -> &Arc<KmemCache> {
        self.registry
            .get(mapping.wrapping_sub(1) as usize)
            .and_then(OnceLock::get)
            .unwrap_or_else(|| panic!("kfree of an address that is not a slab object"))
    }

    /// Returns the live caches, oldest first.
    pub(crate) fn live_caches(&self) -> Vec<Arc<KmemCache>> {
        let l = self.list.lock();
        l.ids
            .iter()
            .filter_map(|&id| self.registry[id as usize].get().cloned())
            .collect()
    }

    /// Records the `kmem_cache` / `kmem_cache_node` caches (boot, once).
    pub(crate) fn set_meta_caches(&self, kc: Arc<KmemCache>, kcn: Arc<KmemCache>) {
        let _ = self.meta.set((kc, kcn));
    }

    /// Creates a cache (`__kmem_cache_create`) with `align` already final, registers it and,
    /// once the boot caches exist, allocates its `kmem_cache` and `kmem_cache_node` objects.
    pub(crate) fn create(
        &self,
        name: &str,
        object_size: u32,
        align: u32,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<Arc<KmemCache>, CreateError> {
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_whitespace) {
            return Err(CreateError::BadName(name.to_string()));
        }
        let layout = calculate_sizes(object_size, align, flags, ctor.is_some(), &self.sizing)
            .ok_or_else(|| CreateError::BadSize {
                name: name.to_string(),
                size: object_size,
            })?;
        let cache = {
            let mut l = self.list.lock();
            if l.ids.iter().any(|&id| {
                self.registry[id as usize]
                    .get()
                    .is_some_and(|c| c.name() == name)
            }) {
                return Err(CreateError::Exists(name.to_string()));
            }
            let id = l.next_id;
            if id as usize >= MAX_CACHES {
                return Err(CreateError::TooManyCaches(MAX_CACHES));
            }
            l.next_id += 1;
            let cache = Arc::new(KmemCache::new(
                id,
                name.to_string(),
                layout,
                flags,
                ctor,
                self.nr_cpus,
            ));
            let _ = self.registry[id as usize].set(cache.clone());
            l.ids.push(id);
            cache
        };
        if self.meta.get().is_some() {
            if let Err(e) = self.alloc_descriptors(&cache) {
                self.unlist(&cache);
                return Err(e.into());
            }
        }
        Ok(cache)
    }

    /// Allocates `cache`'s `kmem_cache` and `kmem_cache_node` objects (`kmem_cache_zalloc`,
    /// `init_kmem_cache_nodes`), straight from the node lists of the boot caches.
    pub(crate) fn alloc_descriptors(&self, cache: &KmemCache) -> Result<(), SlabError> {
        let (kc, kcn) = self.meta.get().expect("boot caches exist");
        let pages = PlainPages {
            buddy: &self.buddy,
            cpu: CpuId(0),
        };
        let a = kc.alloc_single(self, &pages, Gfp::GFP_KERNEL)?;
        let b = match kcn.alloc_single(self, &pages, Gfp::GFP_KERNEL) {
            Ok(b) => b,
            Err(e) => {
                kc.free_to_slab(self, &pages, a);
                return Err(e);
            }
        };
        *cache.descriptors.lock() = Some((PhysAddr(a), PhysAddr(b)));
        Ok(())
    }

    /// Frees `cache`'s descriptor objects (`kmem_cache_release`).
    pub(crate) fn free_descriptors(&self, cache: &KmemCache, pages: &dyn PageOps) {
        let d = cache.descriptors.lock().take();
        if let (Some((a, b)), Some((kc, kcn))) = (d, self.meta.get()) {
            kc.free_to_slab(self, pages, a.0);
            kcn.free_to_slab(self, pages, b.0);
        }
    }

    /// Takes a cache off `slab_caches` and marks it dead.
    pub(crate) fn unlist(&self, cache: &KmemCache) {
        let mut l = self.list.lock();
        l.ids.retain(|&id| id != cache.id);
        cache.dead.store(true, untracked::Ordering::Release);
    }

    /// Creates a cache from `kmem_cache_create` arguments: `align` is the caller's minimum
    /// (0 for none), adjusted by `calculate_alignment`.
    pub(crate) fn create_user(
        &self,
        name: &str,
        object_size: u32,
        align: u32,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<Arc<KmemCache>, CreateError> {
        if align != 0 && !align.is_power_of_two() {
            return Err(CreateError::BadAlign {
                name: name.to_string(),
                align,
            });
        }
        let align = calculate_alignment(flags, align, object_size);
        self.create(name, object_size, align, flags, ctor)
    }
}
