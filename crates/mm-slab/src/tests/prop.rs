//! The conservation proptest: allocations and frees from several caches (plain, constructed,
//! multi-page, kmalloc and large kmalloc) on two CPUs, with remote frees and shrinks.
//!
//! Checked throughout: objects never overlap and no object is handed out twice (every live
//! object is stamped across its whole extent and the stamp is verified when it is freed);
//! constructed objects come out in their constructed state. At the end, per cache:
//! allocated objects + free objects in slabs = the objects of all slabs; after freeing
//! everything and shrinking, the buddy allocator has every page back.

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Alloc { cache: usize, cpu: u32 },
    Kmalloc { size: usize, cpu: u32 },
    Free { pick: usize, cpu: u32 },
    Shrink { cache: usize, cpu: u32 },
    Check,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 0..2u32).prop_map(|(cache, cpu)| Op::Alloc { cache, cpu }),
        4 => (prop_oneof![1..=256usize, 1..=8192usize, 8193..=20000usize], 0..2u32)
            .prop_map(|(size, cpu)| Op::Kmalloc { size, cpu }),
        8 => (any::<usize>(), 0..2u32).prop_map(|(pick, cpu)| Op::Free { pick, cpu }),
        1 => (0..3usize, 0..2u32).prop_map(|(cache, cpu)| Op::Shrink { cache, cpu }),
        1 => Just(Op::Check),
    ]
}

fn ctor_word(a: u64, i: u64) -> u64 {
    0xc0c0_0000_0000_0000 ^ (a << 4) ^ i
}

struct Live {
    obj: SlabObj,
    len: u64,
    /// The cache it came from, or `None` for large kmalloc.
    cache: Option<Arc<KmemCache>>,
    ctor: bool,
    stamp: u64,
}

/// Words of a live object that carry its stamp: all of them, or a sample for large blocks.
fn stamp_words(len: u64) -> Vec<u64> {
    let words = len / 8;
    if words <= 1100 {
        (0..words).collect()
    } else {
        (0..words).step_by(61).chain([words - 1]).collect()
    }
}

/// Records a new live object after checking it overlaps none and, if constructed, holds its
/// constructed state; stamps it otherwise.
fn admit(mem: &PhysMem, live: &mut Vec<Live>, extents: &mut BTreeMap<u64, u64>, l: Live) {
    let a = l.obj.addr().0;
    let end = a + l.len;
    if let Some((&s0, &e0)) = extents.range(..end).next_back() {
        assert!(
            e0 <= a || s0 >= end,
            "{a:#x}+{} overlaps {s0:#x}..{e0:#x}",
            l.len
        );
    }
    assert!(extents.insert(a, end).is_none(), "{a:#x} handed out twice");
    if l.ctor {
        for i in 0..13 {
            assert_eq!(mem.read_u64(PhysAddr(a + 8 * i)), Ok(ctor_word(a, i)));
        }
    } else {
        for w in stamp_words(l.len) {
            mem.write_u64(PhysAddr(a + 8 * w), l.stamp ^ w).unwrap();
        }
    }
    live.push(l);
}

fn run(ops: Vec<Op>) {
    let s = slab(2, 1 << 13);
    let f = SlabFlags::empty();
    let caches = [
        s.create_cache("pt-plain", 40, 0, f, None).unwrap(),
        s.create_cache(
            "pt-ctor",
            100,
            0,
            f,
            Some(Box::new(|m: &PhysMem, a: PhysAddr| {
                for i in 0..13 {
                    m.write_u64(PhysAddr(a.0 + 8 * i), ctor_word(a.0, i))
                        .unwrap();
                }
            })),
        )
        .unwrap(),
        s.create_cache("pt-big", 3000, 0, SlabFlags::HWCACHE_ALIGN, None)
            .unwrap(),
    ];
    assert_eq!(
        (caches[2].objects_per_slab(), caches[2].pages_per_slab()),
        (10, 8)
    );
    let mem = s.buddy().mem().clone();
    let baseline = (free_pages(&s), s.slab_pages());
    let mut live: Vec<Live> = Vec::new();
    let mut extents: BTreeMap<u64, u64> = BTreeMap::new();
    let mut seq = 0u64;

    for op in ops {
        seq += 1;
        match op {
            Op::Alloc { cache, cpu } => {
                let h = s.cpu(CpuId(cpu));
                let c = &caches[cache];
                let obj = h.alloc(c, K).unwrap();
                admit(
                    &mem,
                    &mut live,
                    &mut extents,
                    Live {
                        obj,
                        len: c.object_size() as u64 / 8 * 8,
                        cache: Some(c.clone()),
                        ctor: c.has_ctor(),
                        stamp: seq << 20,
                    },
                );
            }
            Op::Kmalloc { size, cpu } => {
                let h = s.cpu(CpuId(cpu));
                let obj = h.kmalloc(size, K).unwrap();
                let cache = s.kmalloc_cache(size, K).cloned();
                admit(
                    &mem,
                    &mut live,
                    &mut extents,
                    Live {
                        obj,
                        len: (size as u64).div_ceil(8) * 8,
                        cache,
                        ctor: false,
                        stamp: seq << 20,
                    },
                );
            }
            Op::Free { pick, cpu } => {
                if live.is_empty() {
                    continue;
                }
                let l = live.swap_remove(pick % live.len());
                let a = l.obj.addr().0;
                if !l.ctor {
                    for w in stamp_words(l.len) {
                        assert_eq!(
                            mem.read_u64(PhysAddr(a + 8 * w)),
                            Ok(l.stamp ^ w),
                            "object {a:#x} was overwritten"
                        );
                    }
                }
                extents.remove(&a);
                let h = s.cpu(CpuId(cpu));
                match (&l.cache, pick % 2) {
                    (Some(c), 0) => h.free(c, l.obj),
                    _ => h.kfree(l.obj),
                }
            }
            Op::Shrink { cache, cpu } => {
                s.shrink_cache(CpuId(cpu), &caches[cache]);
            }
            Op::Check => s.check_invariants().unwrap(),
        }
    }

    // Conservation per cache.
    s.check_invariants().unwrap();
    let mut all: Vec<Arc<KmemCache>> = caches.to_vec();
    all.extend((1..14).map(|i| s.kmalloc_cache(kmalloc_size(i), K).unwrap().clone()));
    for c in &all {
        let n = s.cache_counts(c).unwrap();
        let in_use = live
            .iter()
            .filter(|l| l.cache.as_ref().is_some_and(|x| Arc::ptr_eq(x, c)))
            .count() as u64;
        assert_eq!(
            in_use + n.free_objects,
            n.total_objects,
            "{}: {in_use} in use + {} free != {}",
            c.name(),
            n.free_objects,
            n.total_objects
        );
        assert_eq!(n.total_objects % c.objects_per_slab() as u64, 0);
        assert_eq!(n.total_objects, n.slabs * c.objects_per_slab() as u64);
    }

    // Free everything, shrink: every page comes back.
    let h = s.cpu(C1);
    for l in live {
        h.kfree(l.obj);
    }
    drop(h);
    for c in &all {
        s.shrink_cache(C0, c);
        assert_eq!(s.cache_counts(c).unwrap().slabs, 0, "{}", c.name());
    }
    assert_eq!((free_pages(&s), s.slab_pages()), baseline);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn objects_are_disjoint_unique_constructed_and_conserved(
        ops in proptest::collection::vec(op(), 1..250)
    ) {
        run(ops);
    }
}

#[test]
fn conservation_holds_for_a_long_fixed_workload() {
    let mut ops = Vec::new();
    for i in 0..600usize {
        ops.push(Op::Alloc {
            cache: i % 3,
            cpu: (i % 2) as u32,
        });
        ops.push(Op::Kmalloc {
            size: 1 + (i * 37) % 9000,
            cpu: ((i / 2) % 2) as u32,
        });
        if i % 3 == 0 {
            ops.push(Op::Free {
                pick: i * 7,
                cpu: ((i / 3) % 2) as u32,
            });
        }
        if i % 97 == 0 {
            ops.push(Op::Shrink {
                cache: i % 3,
                cpu: 0,
            });
            ops.push(Op::Check);
        }
    }
    run(ops);
}
