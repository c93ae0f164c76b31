//! Shrinkers (`include/linux/shrinker.h`, `do_shrink_slab` / `shrink_slab` in 6.1
//! `mm/vmscan.c`): caches whose objects reclaim can free register a count/scan pair; reclaim
//! asks each for a share of its objects that grows as the reclaim priority drops.

use crate::SlabAllocator;
use mm_sync::sync::atomic::{AtomicU64, Ordering};
use mm_sync::sync::{Arc, Mutex};
use mm_sync::untracked;
use mm_types::{CpuId, Gfp, NodeId};
use std::fmt;

/// `SHRINK_BATCH`: objects per `scan_objects` call unless the shrinker sets its own batch.
pub const SHRINK_BATCH: u64 = 128;
/// `DEFAULT_SEEKS`: the cost of recreating an object, relative to a page.
pub const DEFAULT_SEEKS: u32 = 2;
/// `SHRINK_STOP`: `scan_objects` cannot make progress now.
pub const SHRINK_STOP: u64 = !0;
/// `SHRINK_EMPTY`: `count_objects` has nothing to free.
pub const SHRINK_EMPTY: u64 = !0 - 1;
/// `DEF_PRIORITY`: reclaim starts at this priority and counts down to 0.
pub const DEF_PRIORITY: u32 = 12;

/// `struct shrink_control`: what one call asks of a shrinker.
#[derive(Debug)]
pub struct ShrinkControl<'a> {
    /// The reclaim context's allocation flags.
    pub gfp: Gfp,
    /// The node being reclaimed.
    pub nid: NodeId,
    /// Objects to scan in this call.
    pub nr_to_scan: u64,
    /// Objects the shrinker scanned; it may lower this (defaults to `nr_to_scan`).
    pub nr_scanned: u64,
    /// The CPU reclaim runs on; frees go through it.
    pub cpu: CpuId,
    /// The slab allocator, for freeing objects.
    pub slab: &'a SlabAllocator,
}

/// A cache reclaim can shrink (`struct shrinker`).
pub trait Shrinker: Send + Sync {
    /// Returns the shrinker's name (`shrinker->name`).
    fn name(&self) -> &str;
    /// Returns how many objects could be freed now (`count_objects`), or 0 /
    /// [`SHRINK_EMPTY`].
    fn count_objects(&self, sc: &ShrinkControl<'_>) -> u64;
    /// Scans up to `sc.nr_to_scan` objects and frees what it can (`scan_objects`), returning
    /// the number freed or [`SHRINK_STOP`]. It must not allocate with direct reclaim.
    fn scan_objects(&self, sc: &mut ShrinkControl<'_>) -> u64;
    /// Returns `shrinker->seeks` (0: objects are free to recreate, trim half at once).
    fn seeks(&self) -> u32 {
        DEFAULT_SEEKS
    }
    /// Returns `shrinker->batch` (0: [`SHRINK_BATCH`]).
    fn batch(&self) -> u64 {
        0
    }
}

/// A handle naming one registered shrinker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShrinkerId(u64);

/// One registered shrinker and its deferred work (`nr_deferred`).
struct Entry {
    id: ShrinkerId,
    shrinker: Box<dyn Shrinker>,
    nr_deferred: AtomicU64,
}

/// The registered shrinkers (`shrinker_list`).
///
/// Registration takes a mutex; a shrink takes a snapshot of the list under it and calls the
/// shrinkers with no lock held (the 6.7+ lockless walk), so a shrinker may free slab objects.
pub struct ShrinkerRegistry {
    list: Mutex<Vec<Arc<Entry>>>,
    next_id: untracked::AtomicU64,
    slabs_scanned: untracked::AtomicU64,
}

impl fmt::Debug for ShrinkerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .list
            .lock()
            .iter()
            .map(|e| e.shrinker.name().to_string())
            .collect();
        f.debug_struct("ShrinkerRegistry")
            .field("shrinkers", &names)
            .finish()
    }
}

impl Default for ShrinkerRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl ShrinkerRegistry {
    /// Creates an empty registry.
    pub fn new() -> ShrinkerRegistry {
        ShrinkerRegistry {
            list: Mutex::new(Vec::new()),
            next_id: untracked::AtomicU64::new(1),
            slabs_scanned: untracked::AtomicU64::new(0),
        }
    }

    /// Registers a shrinker (`register_shrinker`).
    pub fn register(&self, shrinker: Box<dyn Shrinker>) -> ShrinkerId {
        let id = ShrinkerId(self.next_id.fetch_add(1, untracked::Ordering::Relaxed));
        self.list.lock().push(Arc::new(Entry {
            id,
            shrinker,
            nr_deferred: AtomicU64::new(0),
        }));
        id
    }

    /// Unregisters a shrinker (`unregister_shrinker`); returns false if it was not registered.
    pub fn unregister(&self, id: ShrinkerId) -> bool {
        let mut l = self.list.lock();
        let before = l.len();
        l.retain(|e| e.id != id);
        l.len() != before
    }

    /// Returns the names of the registered shrinkers, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.list
            .lock()
            .iter()
            .map(|e| e.shrinker.name().to_string())
            .collect()
    }

    /// Returns the objects scanned by shrinkers so far (vmstat `slabs_scanned`).
    pub fn slabs_scanned(&self) -> u64 {
        self.slabs_scanned.load(untracked::Ordering::Relaxed)
    }

    /// Returns a shrinker's deferred scan count (`nr_deferred`).
    pub fn nr_deferred(&self, id: ShrinkerId) -> Option<u64> {
        self.list
            .lock()
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.nr_deferred.load(Ordering::Relaxed))
    }

    /// Calls every shrinker for node `nid` at reclaim `priority` (`shrink_slab`), returning the
    /// objects freed.
    pub fn shrink_slab(
        &self,
        slab: &SlabAllocator,
        cpu: CpuId,
        gfp: Gfp,
        nid: NodeId,
        priority: u32,
    ) -> u64 {
        let snapshot: Vec<Arc<Entry>> = self.list.lock().clone();
        let mut freed = 0u64;
        for e in snapshot {
            let mut sc = ShrinkControl {
                gfp,
                nid,
                nr_to_scan: 0,
                nr_scanned: 0,
                cpu,
                slab,
            };
            let ret = self.do_shrink_slab(&mut sc, &e, priority);
            if ret != SHRINK_EMPTY {
                freed += ret;
            }
        }
        freed
    }

    /// `do_shrink_slab`: scans `(freeable >> priority) * 4 / seeks` objects plus this
    /// shrinker's deferred work `>> priority`, capped at twice the freeable objects, in batches;
    /// the work not done is deferred to the next call.
    fn do_shrink_slab(&self, sc: &mut ShrinkControl<'_>, e: &Entry, priority: u32) -> u64 {
        let s = &*e.shrinker;
        let batch = match s.batch() {
            0 => SHRINK_BATCH,
            b => b,
        };
        let freeable = s.count_objects(sc);
        if freeable == 0 || freeable == SHRINK_EMPTY {
            return freeable;
        }
        let nr = e.nr_deferred.swap(0, Ordering::AcqRel);
        let delta = match s.seeks() {
            0 => freeable / 2,
            seeks => (freeable >> priority) * 4 / seeks as u64,
        };
        let mut total_scan = ((nr >> priority) + delta).min(2 * freeable);
        let mut scanned = 0u64;
        let mut freed = 0u64;
        while total_scan >= batch || total_scan >= freeable {
            let nr_to_scan = batch.min(total_scan);
            sc.nr_to_scan = nr_to_scan;
            sc.nr_scanned = nr_to_scan;
            let ret = s.scan_objects(sc);
            if ret == SHRINK_STOP {
                break;
            }
            freed += ret;
            self.slabs_scanned
                .fetch_add(sc.nr_scanned, untracked::Ordering::Relaxed);
            total_scan = total_scan.saturating_sub(sc.nr_scanned);
            scanned += sc.nr_scanned;
            if sc.nr_scanned == 0 {
                break;
            }
        }
        let next_deferred = (nr + delta).saturating_sub(scanned).min(2 * freeable);
        e.nr_deferred.fetch_add(next_deferred, Ordering::AcqRel);
        freed
    }
}
