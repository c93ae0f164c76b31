//! The per-CPU TLB: two set-associative levels of PCID-tagged entries with LRU replacement.
//!
//! An entry is a key and a value. The key is `vpn << 12 | pcid`: the VPN of a 64-bit address
//! has 52 bits, so the key keeps all of it, and PCIDs are 1..=4095, so a valid key is never 0
//! and 0 marks an invalid way. The value is `pfn << 12 | lacking`, where `lacking` holds the
//! rights the entry does *not* grant (the complement of [`PERM_R`], [`PERM_W`], [`PERM_U`],
//! [`PERM_X`] within the low 12 bits), so a hit's rights check is one `test` against the rights
//! the access needs. `PERM_W` is granted only when the PTE was both writable and dirty, so the
//! first store through a clean entry walks again to set the dirty bit, as x86 does.
//!
//! The set is chosen by the low VPN bits (`vpn & (sets - 1)`); within a set the least recently
//! used way is replaced, free ways first. Use stamps come from one counter per level.

use crate::config::TlbGeometry;
use mm_types::{Pfn, PAGE_SHIFT};

/// The entry allows loads (every valid entry does).
pub(crate) const PERM_R: u64 = 1 << 0;
/// The entry allows stores: the PTE was writable and already dirty.
pub(crate) const PERM_W: u64 = 1 << 1;
/// The entry allows user-mode accesses.
pub(crate) const PERM_U: u64 = 1 << 2;
/// The entry allows instruction fetches.
pub(crate) const PERM_X: u64 = 1 << 3;
/// The bits of an entry's value that hold its (lacking) rights; the rest is the frame's
/// physical address.
pub(crate) const PERM_MASK: u64 = (1 << PAGE_SHIFT) - 1;
const PCID_MASK: u64 = (1 << PAGE_SHIFT) - 1;
const PERM_ALL: u64 = PERM_R | PERM_W | PERM_U | PERM_X;

/// Returns the key of `vpn` under `pcid`.
#[inline]
pub(crate) const fn key(vpn: u64, pcid: u64) -> u64 {
    (vpn << PAGE_SHIFT) | pcid
}

/// Returns the value of an entry for `pfn` granting `perm`.
#[inline]
const fn entry(pfn: Pfn, perm: u64) -> u64 {
    (pfn.0 << PAGE_SHIFT) | (!perm & PERM_MASK)
}

/// Returns the rights an entry's value grants.
#[inline]
pub(crate) const fn entry_perm(v: u64) -> u64 {
    !v & PERM_ALL
}

/// Returns the frame an entry's value maps.
#[inline]
pub(crate) const fn entry_pfn(v: u64) -> Pfn {
    Pfn(v >> PAGE_SHIFT)
}

/// What [`TlbLevel::lookup`] returns when the key is not cached, or is cached without a right
/// the access needs. A cached value is never 0: the lacking-rights bits above [`PERM_X`] are
/// always set.
pub(crate) const NO_HIT: u64 = 0;

/// One set of `W` ways: its keys (0 when a way is invalid), their values and the access-clock
/// stamps of their last use, in one contiguous block. Cache-line aligned: a 4-way set is 128
/// bytes (indexed by a shift), its keys and values one line, its stamps the next.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Set<const W: usize> {
    keys: [u64; W],
    vals: [u64; W],
    stamps: [u64; W],
}

impl<const W: usize> Set<W> {
    const EMPTY: Set<W> = Set {
        keys: [0; W],
        vals: [0; W],
        stamps: [0; W],
    };

    #[inline(always)]
    fn split(&self) -> (&[u64], &[u64], &[u64]) {
        (&self.keys, &self.vals, &self.stamps)
    }

    #[inline(always)]
    fn split_mut(&mut self) -> (&mut [u64], &mut [u64], &mut [u64]) {
        (&mut self.keys, &mut self.vals, &mut self.stamps)
    }

    /// The hit path: a compare per way up to the hit, then [`probe`].
    #[inline(always)]
    fn lookup(&mut self, k: u64, need: u64, now: u64) -> u64 {
        // An early exit, not conditional moves: the branch on which way hit is predictable
        // for a working set, so the value load issues speculatively instead of waiting for
        // every compare (measured: about 5 ns against 9 per hit on a 2 GHz host).
        for w in 0..W {
            if self.keys[w] == k {
                return probe(self.vals[w], &mut self.stamps[w], need, now);
            }
        }
        NO_HIT
    }
}

/// A level's sets. The common geometries (the x86 L1 dTLB's 4 ways, the STLB's 12) are arrays
/// of typed sets, so the hit path indexes a set with one bounds check and compares a fixed,
/// unrolled number of ways; other geometries are flat blocks of `3 * ways` words per set.
#[derive(Debug)]
enum Sets {
    Four(Box<[Set<4>]>),
    Twelve(Box<[Set<12>]>),
    Flat { data: Box<[u64]>, ways: usize },
}

/// One set-associative level.
#[derive(Debug)]
pub(crate) struct TlbLevel {
    sets: Sets,
    set_mask: u64,
}

impl TlbLevel {
    pub(crate) fn new(g: TlbGeometry) -> TlbLevel {
        let n = g.sets();
        let sets = match g.ways {
            4 => Sets::Four(vec![Set::EMPTY; n].into_boxed_slice()),
            12 => Sets::Twelve(vec![Set::EMPTY; n].into_boxed_slice()),
            ways => Sets::Flat {
                data: vec![0; 3 * g.entries].into_boxed_slice(),
                ways,
            },
        };
        TlbLevel {
            sets,
            set_mask: n as u64 - 1,
        }
    }

    /// Returns the number of ways per set.
    fn ways(&self) -> usize {
        match &self.sets {
            Sets::Four(_) => 4,
            Sets::Twelve(_) => 12,
            Sets::Flat { ways, .. } => *ways,
        }
    }

    /// Returns the number of sets.
    fn nr_sets(&self) -> usize {
        self.set_mask as usize + 1
    }

    /// Returns the set `vpn` indexes.
    #[inline(always)]
    pub(crate) fn set_of(&self, vpn: u64) -> usize {
        (vpn & self.set_mask) as usize
    }

    /// Returns set `set`, split into keys, values and stamps.
    fn block(&self, set: usize) -> (&[u64], &[u64], &[u64]) {
        match &self.sets {
            Sets::Four(s) => s[set].split(),
            Sets::Twelve(s) => s[set].split(),
            Sets::Flat { data, ways } => {
                let w = *ways;
                let (keys, rest) = data[set * 3 * w..(set + 1) * 3 * w].split_at(w);
                let (vals, stamps) = rest.split_at(w);
                (keys, vals, stamps)
            }
        }
    }

    /// Returns set `set`, split into keys, values and stamps, for update.
    fn block_mut(&mut self, set: usize) -> (&mut [u64], &mut [u64], &mut [u64]) {
        match &mut self.sets {
            Sets::Four(s) => s[set].split_mut(),
            Sets::Twelve(s) => s[set].split_mut(),
            Sets::Flat { data, ways } => {
                let w = *ways;
                let (keys, rest) = data[set * 3 * w..(set + 1) * 3 * w].split_at_mut(w);
                let (vals, stamps) = rest.split_at_mut(w);
                (keys, vals, stamps)
            }
        }
    }

    /// Looks `vpn` up under `pcid` and returns the entry's value if it is cached with every
    /// right in `need`, stamping the way with `now` (the CPU's access clock); otherwise returns
    /// [`NO_HIT`] ([`TlbLevel::peek`] tells a miss from a lack of rights). This is the hit
    /// path of every access: a masked index, one bounds check, a compare per way up to the
    /// hit, a rights test and one store.
    #[inline(always)]
    pub(crate) fn lookup(&mut self, vpn: u64, pcid: u64, need: u64, now: u64) -> u64 {
        let k = key(vpn, pcid);
        let set = self.set_of(vpn);
        match &mut self.sets {
            Sets::Four(s) => match s.get_mut(set) {
                Some(s) => s.lookup(k, need, now),
                None => NO_HIT,
            },
            Sets::Twelve(s) => match s.get_mut(set) {
                Some(s) => s.lookup(k, need, now),
                None => NO_HIT,
            },
            Sets::Flat { .. } => self.lookup_flat(set, k, need, now),
        }
    }

    /// [`TlbLevel::lookup`] for the flat geometries, out of the inlined hit path.
    #[inline(never)]
    fn lookup_flat(&mut self, set: usize, k: u64, need: u64, now: u64) -> u64 {
        let (keys, vals, stamps) = self.block_mut(set);
        match keys.iter().position(|&c| c == k) {
            Some(w) => probe(vals[w], &mut stamps[w], need, now),
            None => NO_HIT,
        }
    }

    /// Caches `vpn -> pfn` with `perm` under `pcid`, stamped `now`, replacing the key if
    /// present, else a free way, else the least recently used way of the set. Returns the key
    /// it evicted.
    pub(crate) fn insert(
        &mut self,
        vpn: u64,
        pcid: u64,
        pfn: Pfn,
        perm: u64,
        now: u64,
    ) -> Option<u64> {
        let k = key(vpn, pcid);
        let (keys, vals, stamps) = self.block_mut(self.set_of(vpn));
        let way = keys
            .iter()
            .position(|&c| c == k)
            .or_else(|| keys.iter().position(|&c| c == 0))
            .unwrap_or_else(|| {
                (0..keys.len())
                    .min_by_key(|&w| stamps[w])
                    .expect("a set has at least one way")
            });
        let evicted = (keys[way] != 0 && keys[way] != k).then_some(keys[way]);
        keys[way] = k;
        vals[way] = entry(pfn, perm);
        stamps[way] = now;
        evicted
    }

    /// Drops `vpn` under `pcid` (`INVLPG` for one PCID). Returns true if it was cached.
    pub(crate) fn invalidate(&mut self, vpn: u64, pcid: u64) -> bool {
        let k = key(vpn, pcid);
        let (keys, _, _) = self.block_mut(self.set_of(vpn));
        match keys.iter_mut().find(|c| **c == k) {
            Some(c) => {
                *c = 0;
                true
            }
            None => false,
        }
    }

    /// Returns every key, set by set, way by way.
    fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.nr_sets()).flat_map(move |s| self.block(s).0.iter().copied())
    }

    /// Drops every entry tagged `pcid`. Returns how many were dropped.
    pub(crate) fn flush_pcid(&mut self, pcid: u64) -> usize {
        let mut n = 0;
        for set in 0..self.nr_sets() {
            for c in self.block_mut(set).0 {
                if *c != 0 && *c & PCID_MASK == pcid {
                    *c = 0;
                    n += 1;
                }
            }
        }
        n
    }

    /// Returns the cached frame and rights of `vpn` under `pcid` without touching LRU state.
    pub(crate) fn peek(&self, vpn: u64, pcid: u64) -> Option<(Pfn, u64)> {
        let k = key(vpn, pcid);
        let (keys, vals, _) = self.block(self.set_of(vpn));
        keys.iter()
            .position(|&c| c == k)
            .map(|i| (entry_pfn(vals[i]), entry_perm(vals[i])))
    }

    /// Returns the VPNs cached in `set` under `pcid`, way order.
    #[cfg(all(test, not(mm_loom)))]
    pub(crate) fn set_contents(&self, set: usize, pcid: u64) -> Vec<u64> {
        self.block(set)
            .0
            .iter()
            .filter(|&&k| k != 0 && k & PCID_MASK == pcid)
            .map(|k| k >> PAGE_SHIFT)
            .collect()
    }

    /// Returns the number of valid entries.
    #[cfg(all(test, not(mm_loom)))]
    pub(crate) fn occupancy(&self) -> usize {
        self.keys().filter(|&k| k != 0).count()
    }

    /// Checks that no key is cached twice in a set and every key sits in its own set.
    pub(crate) fn check(&self) -> Result<(), String> {
        let keys: Vec<u64> = self.keys().collect();
        for (set, ways) in keys.chunks(self.ways()).enumerate() {
            for (w, &k) in ways.iter().enumerate() {
                if k == 0 {
                    continue;
                }
                if k & PCID_MASK == 0 {
                    return Err(format!("set {set} way {w}: entry with PCID 0"));
                }
                if self.set_of(k >> PAGE_SHIFT) != set {
                    return Err(format!(
                        "set {set} way {w}: key {k:#x} belongs to another set"
                    ));
                }
                if ways[w + 1..].contains(&k) {
                    return Err(format!("set {set}: key {k:#x} cached twice"));
                }
            }
        }
        Ok(())
    }
}

/// The end of a lookup that found its key: test the rights, stamp the way.
#[inline(always)]
fn probe(val: u64, stamp: &mut u64, need: u64, now: u64) -> u64 {
    if val & need != 0 {
        return NO_HIT;
    }
    *stamp = now;
    val
}

/// The two TLB levels of one CPU.
#[derive(Debug)]
pub(crate) struct Tlb {
    pub(crate) l1: TlbLevel,
    pub(crate) l2: TlbLevel,
}

impl Tlb {
    /// Drops `vpn` under `pcid` from both levels.
    pub(crate) fn invalidate(&mut self, vpn: u64, pcid: u64) {
        self.l1.invalidate(vpn, pcid);
        self.l2.invalidate(vpn, pcid);
    }

    /// Drops every entry tagged `pcid` from both levels.
    pub(crate) fn flush_pcid(&mut self, pcid: u64) {
        self.l1.flush_pcid(pcid);
        self.l2.flush_pcid(pcid);
    }
}

/// Per-CPU translation counters. Every access is exactly one of an L1 hit, an L2 hit or a walk,
/// so `accesses = l1_hits + l2_hits + walks`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TlbStats {
    /// Accesses whose translation hit the L1 TLB.
    pub l1_hits: u64,
    /// Accesses that missed L1 and hit the L2 TLB.
    pub l2_hits: u64,
    /// Accesses whose translation was in neither level.
    pub misses: u64,
    /// Page walks: every miss, plus re-walks of cached entries that lacked a right (the
    /// first store through a clean entry, which must set the dirty bit).
    pub walks: u64,
    /// Table reads made by walks.
    pub walk_refs: u64,
    /// Walks that ended in a page fault.
    pub faults: u64,
    /// Single-page invalidations (`INVLPG`) made by flushes.
    pub page_flushes: u64,
    /// Whole-address-space (or whole-TLB) flushes, local or on IPI.
    pub full_flushes: u64,
    /// Shootdowns this CPU initiated (`flush_tlb_mm_range` and batched reclaim flushes).
    pub shootdowns: u64,
    /// IPIs this CPU sent.
    pub ipis_sent: u64,
    /// IPIs this CPU handled (`/proc/interrupts` "TLB shootdowns").
    pub ipis_received: u64,
    /// Address-space switches.
    pub context_switches: u64,
    /// Switches that had to recycle an ASID and flush its stale entries.
    pub asid_recycles: u64,
}

impl TlbStats {
    /// Returns the number of accesses.
    pub fn accesses(&self) -> u64 {
        self.l1_hits + self.l2_hits + self.walks
    }

    /// Returns the simulated cycles the accesses cost under `c`.
    pub fn cycles(&self, c: &crate::CostModel) -> u64 {
        self.accesses() * c.l1_hit
            + (self.l2_hits + self.walks) * c.l2_hit
            + self.walk_refs * c.walk_ref
            + self.faults * c.fault
    }

    /// Returns the average memory access time in cycles (0 without accesses).
    pub fn amat(&self, c: &crate::CostModel) -> f64 {
        match self.accesses() {
            0 => 0.0,
            n => self.cycles(c) as f64 / n as f64,
        }
    }

    /// Adds `other` to these counters (to sum CPUs).
    pub fn accumulate(&mut self, o: &TlbStats) {
        self.l1_hits += o.l1_hits;
        self.l2_hits += o.l2_hits;
        self.misses += o.misses;
        self.walks += o.walks;
        self.walk_refs += o.walk_refs;
        self.faults += o.faults;
        self.page_flushes += o.page_flushes;
        self.full_flushes += o.full_flushes;
        self.shootdowns += o.shootdowns;
        self.ipis_sent += o.ipis_sent;
        self.ipis_received += o.ipis_received;
        self.context_switches += o.context_switches;
        self.asid_recycles += o.asid_recycles;
    }
}
