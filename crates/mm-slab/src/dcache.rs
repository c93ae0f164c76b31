//! The dentry-cache analogue: a reclaimable cache that workloads grow and a shrinker trims.
//!
//! Each dentry is an object of the `dentry` slab cache (192 bytes in simulated RAM holding its
//! name hash and reference count). A dentry whose last reference is dropped stays cached on an
//! LRU of unused dentries (`dput` → `d_lru_add`), so a later lookup of the same name finds it.
//! The shrinker (`super_cache_count` / `prune_dcache_sb`) counts the unused dentries, scaled
//! by `vfs_cache_pressure`, and frees from the cold end of the LRU, giving a referenced dentry
//! a second pass (`dentry_lru_isolate`: `DCACHE_REFERENCED` → `LRU_ROTATE`).

use crate::cache::KmemCache;
use crate::cpu::{SlabCpu, SlabObj};
use crate::error::SlabError;
use crate::shrinker::{ShrinkControl, Shrinker, SHRINK_EMPTY};
use mm_sync::sync::{Arc, Mutex};
use mm_types::{Gfp, PhysAddr};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Offset of the name hash in a dentry object (`d_name.hash`).
pub const D_HASH_OFFSET: u64 = 32;
/// Offset of the reference count in a dentry object (`d_lockref.count`).
pub const D_COUNT_OFFSET: u64 = 88;

/// A counted reference to a dentry, returned by [`DentryCache::d_alloc`] and
/// [`DentryCache::d_lookup`]; give it back with [`DentryCache::dput`].
#[must_use = "a dentry reference that is dropped pins the dentry forever; dput it"]
#[derive(Debug, PartialEq, Eq)]
pub struct Dentry {
    hash: u64,
    addr: PhysAddr,
}

impl Dentry {
    /// Returns the name hash.
    pub fn hash(&self) -> u64 {
        self.hash
    }
    /// Returns the dentry object's address in simulated RAM.
    pub fn addr(&self) -> PhysAddr {
        self.addr
    }
}

#[derive(Debug)]
struct Entry {
    addr: PhysAddr,
    count: u32,
    referenced: bool,
    /// Position on the LRU while unused.
    lru: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    table: HashMap<u64, Entry>,
    /// Unused dentries, coldest first: LRU sequence → hash.
    lru: BTreeMap<u64, u64>,
    seq: u64,
    next_hash: u64,
}

impl Inner {
    fn lru_add(&mut self, hash: u64) {
        self.seq += 1;
        let seq = self.seq;
        self.lru.insert(seq, hash);
        if let Some(e) = self.table.get_mut(&hash) {
            e.lru = Some(seq);
        }
    }
}

/// The dentry cache.
pub struct DentryCache {
    cache: Arc<KmemCache>,
    inner: Mutex<Inner>,
    /// `sysctl_vfs_cache_pressure` (default 100).
    vfs_cache_pressure: mm_sync::untracked::AtomicU64,
}

impl fmt::Debug for DentryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.inner.lock();
        f.debug_struct("DentryCache")
            .field("nr_dentry", &i.table.len())
            .field("nr_unused", &i.lru.len())
            .finish()
    }
}

impl DentryCache {
    /// Creates an empty dentry cache over the `dentry` slab cache.
    pub fn new(cache: Arc<KmemCache>) -> DentryCache {
        DentryCache {
            cache,
            inner: Mutex::new(Inner {
                next_hash: 1 << 63,
                ..Inner::default()
            }),
            vfs_cache_pressure: mm_sync::untracked::AtomicU64::new(100),
        }
    }

    /// Returns the slab cache holding the dentries.
    pub fn slab_cache(&self) -> &Arc<KmemCache> {
        &self.cache
    }

    /// Sets `vm.vfs_cache_pressure`.
    pub fn set_vfs_cache_pressure(&self, v: u64) {
        self.vfs_cache_pressure
            .store(v, mm_sync::untracked::Ordering::Relaxed);
    }

    /// Returns `nr_dentry` (`/proc/sys/fs/dentry-state`, first field).
    pub fn nr_dentry(&self) -> u64 {
        self.inner.lock().table.len() as u64
    }

    /// Returns `nr_unused`: cached dentries nobody references.
    pub fn nr_unused(&self) -> u64 {
        self.inner.lock().lru.len() as u64
    }

    fn write_count(cpu: &SlabCpu<'_>, addr: PhysAddr, count: u32) {
        cpu.mem()
            .write_u32(PhysAddr(addr.0 + D_COUNT_OFFSET), count)
            .expect("dentry objects lie in simulated RAM");
    }

    /// Looks up the dentry for `hash` (`d_lookup`), taking a reference.
    pub fn d_lookup(&self, cpu: &SlabCpu<'_>, hash: u64) -> Option<Dentry> {
        let mut i = self.inner.lock();
        let e = i.table.get_mut(&hash)?;
        e.count += 1;
        e.referenced = true;
        let (addr, count, lru) = (e.addr, e.count, e.lru.take());
        if let Some(seq) = lru {
            i.lru.remove(&seq);
        }
        Self::write_count(cpu, addr, count);
        Some(Dentry { hash, addr })
    }

    /// Returns the dentry for `hash`, allocating it if it is not cached (`d_alloc` after a
    /// failed `d_lookup`), with one reference.
    pub fn d_alloc(&self, cpu: &SlabCpu<'_>, hash: u64, gfp: Gfp) -> Result<Dentry, SlabError> {
        if let Some(d) = self.d_lookup(cpu, hash) {
            return Ok(d);
        }
        // Allocate with no dcache lock held: the allocation may reclaim through our shrinker.
        let obj = cpu.alloc(&self.cache, gfp | Gfp::ZERO)?;
        let addr = obj.addr();
        let mut i = self.inner.lock();
        if let Some(e) = i.table.get_mut(&hash) {
            // Raced with another d_alloc of the same name: use the winner's.
            e.count += 1;
            let (addr, count, lru) = (e.addr, e.count, e.lru.take());
            if let Some(seq) = lru {
                i.lru.remove(&seq);
            }
            drop(i);
            Self::write_count(cpu, addr, count);
            cpu.free(&self.cache, obj);
            return Ok(Dentry { hash, addr });
        }
        cpu.mem()
            .write_u64(PhysAddr(addr.0 + D_HASH_OFFSET), hash)
            .expect("dentry objects lie in simulated RAM");
        Self::write_count(cpu, addr, 1);
        let _ = obj.into_raw();
        i.table.insert(
            hash,
            Entry {
                addr,
                count: 1,
                referenced: false,
                lru: None,
            },
        );
        Ok(Dentry { hash, addr })
    }

    /// Drops a reference (`dput`); the last one leaves the dentry cached on the LRU.
    pub fn dput(&self, cpu: &SlabCpu<'_>, d: Dentry) {
        let mut i = self.inner.lock();
        let e = i
            .table
            .get_mut(&d.hash)
            .expect("a referenced dentry is in the table");
        e.count -= 1;
        let (addr, count) = (e.addr, e.count);
        if count == 0 {
            i.lru_add(d.hash);
        }
        Self::write_count(cpu, addr, count);
    }

    /// Creates `n` dentries for new names and leaves them unused on the LRU, as a workload
    /// that stats many files does. Returns how many were created before an allocation failed.
    pub fn grow(&self, cpu: &SlabCpu<'_>, n: u64, gfp: Gfp) -> u64 {
        for done in 0..n {
            let hash = {
                let mut i = self.inner.lock();
                i.next_hash += 1;
                i.next_hash
            };
            match self.d_alloc(cpu, hash, gfp) {
                Ok(d) => self.dput(cpu, d),
                Err(_) => return done,
            }
        }
        n
    }

    /// Frees up to `nr_to_scan` unused dentries from the cold end of the LRU
    /// (`prune_dcache_sb`). Returns (scanned, freed).
    pub fn prune(&self, cpu: &SlabCpu<'_>, nr_to_scan: u64) -> (u64, u64) {
        let mut victims = Vec::new();
        let mut scanned = 0;
        {
            let mut i = self.inner.lock();
            while scanned < nr_to_scan {
                let Some((seq, hash)) = i.lru.pop_first() else {
                    break;
                };
                scanned += 1;
                let e = i
                    .table
                    .get_mut(&hash)
                    .expect("LRU entries are in the table");
                if e.referenced {
                    e.referenced = false;
                    e.lru = None;
                    let _ = seq;
                    i.lru_add(hash);
                    continue;
                }
                let e = i.table.remove(&hash).expect("present");
                victims.push(e.addr);
            }
        }
        let freed = victims.len() as u64;
        for addr in victims {
            cpu.free(&self.cache, SlabObj::from_raw(addr));
        }
        (scanned, freed)
    }
}

/// The dentry cache's shrinker.
#[derive(Debug)]
pub struct DcacheShrinker(pub Arc<DentryCache>);

impl Shrinker for DcacheShrinker {
    fn name(&self) -> &str {
        "sb-dentry"
    }

    fn count_objects(&self, _sc: &ShrinkControl<'_>) -> u64 {
        let unused = self.0.nr_unused();
        if unused == 0 {
            return SHRINK_EMPTY;
        }
        let pressure = self
            .0
            .vfs_cache_pressure
            .load(mm_sync::untracked::Ordering::Relaxed);
        unused * pressure / 100
    }

    fn scan_objects(&self, sc: &mut ShrinkControl<'_>) -> u64 {
        let cpu = sc.slab.cpu(sc.cpu);
        let (scanned, freed) = self.0.prune(&cpu, sc.nr_to_scan);
        sc.nr_scanned = scanned;
        freed
    }
}
