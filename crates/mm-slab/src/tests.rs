//! Unit tests: kernel geometry, kmalloc classes, fast and slow paths, remote frees, partial
//! lists, destroy, the slabinfo text (parsed with procps' rules), shrinkers, the dentry cache,
//! pins and threads, and the conservation proptest.

use super::*;
use crate::cache::FL_MASK;
use crate::slab::{meta, slab_freelist, slab_head};
use mm_buddy::BuddyConfig;
use mm_phys::PhysMem;
use mm_types::{Pfn, PhysAddr, ZoneId};
use proptest::prelude::*;
use std::collections::BTreeMap;

mod procps;
mod prop;

/// A machine of `pages` pages in one Normal zone, no reserves.
pub(crate) fn buddy(cpus: u32, pages: u64) -> Arc<Buddy> {
    let start = 1u64 << 12;
    let cfg = BuddyConfig::single_zone(cpus, ZoneId::Normal, Pfn(start), pages);
    Arc::new(Buddy::new(Arc::new(PhysMem::new(Pfn(start + pages))), &cfg).unwrap())
}

pub(crate) fn slab(cpus: u32, pages: u64) -> SlabAllocator {
    SlabAllocator::new(buddy(cpus, pages)).unwrap()
}

/// Pages the buddy allocator holds free (free lists and pcp lists).
pub(crate) fn free_pages(s: &SlabAllocator) -> u64 {
    s.buddy().nr_free_pages() + s.buddy().pcp_pages()
}

fn row<'a>(rows: &'a [SlabInfoRow], name: &str) -> &'a SlabInfoRow {
    rows.iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no slabinfo line for {name}"))
}

const C0: CpuId = CpuId(0);
const C1: CpuId = CpuId(1);
const K: Gfp = Gfp::GFP_KERNEL;

/// objsize, objperslab and pagesperslab of this 2-CPU 6.18 machine's /proc/slabinfo (and of
/// linux-mm-facts.md A.6 where it has the cache).
#[test]
fn geometry_matches_a_2_cpu_kernel() {
    let s = slab(2, 1 << 12);
    let rows = s.slabinfo_rows();
    let want: &[(&str, u32, u32, u32)] = &[
        ("kmalloc-8", 8, 512, 1),
        ("kmalloc-16", 16, 256, 1),
        ("kmalloc-32", 32, 128, 1),
        ("kmalloc-64", 64, 64, 1),
        ("kmalloc-96", 96, 42, 1),
        ("kmalloc-128", 128, 32, 1),
        ("kmalloc-192", 192, 21, 1),
        ("kmalloc-256", 256, 16, 1),
        ("kmalloc-512", 512, 16, 2),
        ("kmalloc-1k", 1024, 16, 4),
        ("kmalloc-2k", 2048, 16, 8),
        ("kmalloc-4k", 4096, 8, 8),
        ("kmalloc-8k", 8192, 4, 8),
        ("kmalloc-rcl-96", 96, 42, 1),
        ("kmalloc-rcl-192", 192, 21, 1),
        ("kmalloc-rcl-8", 8, 512, 1),
        ("kmalloc-rcl-1k", 1024, 16, 4),
        ("kmalloc-rcl-8k", 8192, 4, 8),
        ("mm_struct", 1600, 20, 8),
        ("vm_area_struct", 192, 21, 1),
        ("task_struct", 5952, 5, 8),
        ("anon_vma", 104, 39, 1),
        ("anon_vma_chain", 64, 64, 1),
        ("maple_node", 256, 16, 1),
        ("dentry", 192, 21, 1),
        ("kmem_cache", 256, 16, 1),
        ("kmem_cache_node", 128, 32, 1),
    ];
    for &(name, objsize, per, pages) in want {
        let r = row(&rows, name);
        assert_eq!(
            (r.objsize, r.objperslab, r.pagesperslab),
            (objsize, per, pages),
            "{name}"
        );
    }
    // A.6's 6.18 task_struct is 5888 bytes: also 5 objects in an order-3 slab.
    let t = s
        .create_cache("task_struct_a6", 5888, 64, SlabFlags::empty(), None)
        .unwrap();
    assert_eq!(
        (t.size(), t.objects_per_slab(), t.pages_per_slab()),
        (5888, 5, 8)
    );
    // min_partial = clamp(ilog2(size) / 2, 5, 10).
    assert_eq!(s.kmalloc_cache(8, K).unwrap().min_partial(), 5);
    assert_eq!(s.kmalloc_cache(8192, K).unwrap().min_partial(), 6);
    assert_eq!(t.min_partial(), 6);
}

/// `min_objects = 4 * (fls(nr_cpus) + 1)` changes the order with the CPU count, as on real
/// machines (kmalloc-256 is 32 objects in 2 pages from 8 CPUs on).
#[test]
fn slab_order_follows_the_cpu_count() {
    let geometry = |cpus: u32, size: usize| {
        let s = slab(cpus, 1 << 12);
        let c = s.kmalloc_cache(size, K).unwrap().clone();
        (c.objects_per_slab(), c.pages_per_slab())
    };
    assert_eq!(geometry(1, 512), (8, 1));
    assert_eq!(geometry(2, 512), (16, 2));
    assert_eq!(geometry(8, 256), (32, 2));
    assert_eq!(geometry(8, 192), (21, 1));
    assert_eq!(geometry(64, 64), (64, 1));
    let cfg = SlabConfig {
        slub_max_order: 0,
        ..SlabConfig::default()
    };
    let s = SlabAllocator::with_config(buddy(2, 1 << 12), cfg).unwrap();
    // An object larger than slub_max_order allows still gets one object of get_order(size).
    let c = s.kmalloc_cache(8192, K).unwrap();
    assert_eq!((c.objects_per_slab(), c.pages_per_slab()), (1, 2));
}

#[test]
fn kmalloc_rounds_to_its_class() {
    let s = slab(2, 1 << 12);
    let cases: &[(usize, &str)] = &[
        (1, "kmalloc-8"),
        (8, "kmalloc-8"),
        (9, "kmalloc-16"),
        (24, "kmalloc-32"),
        (33, "kmalloc-64"),
        (64, "kmalloc-64"),
        (65, "kmalloc-96"),
        (96, "kmalloc-96"),
        (97, "kmalloc-128"),
        (129, "kmalloc-192"),
        (192, "kmalloc-192"),
        (193, "kmalloc-256"),
        (257, "kmalloc-512"),
        (1000, "kmalloc-1k"),
        (1025, "kmalloc-2k"),
        (4096, "kmalloc-4k"),
        (4097, "kmalloc-8k"),
        (8192, "kmalloc-8k"),
    ];
    let cpu = s.cpu(C0);
    for &(size, name) in cases {
        assert_eq!(
            s.kmalloc_cache(size, K).unwrap().name(),
            name,
            "size {size}"
        );
        assert_eq!(
            kmalloc_size_roundup(size),
            s.kmalloc_cache(size, K).unwrap().object_size() as usize
        );
        let o = cpu.kmalloc(size, K).unwrap();
        let page = s.buddy().mem().page(o.addr().pfn());
        let cache = s.core.cache_by_mapping(page.mapping());
        assert_eq!(
            cache.name(),
            name,
            "kmalloc({size}) came from the wrong cache"
        );
        cpu.kfree(o);
    }
    assert_eq!(
        s.kmalloc_cache(100, K | Gfp::RECLAIMABLE).unwrap().name(),
        "kmalloc-rcl-128"
    );
    assert!(s.kmalloc_cache(0, K).is_none());
    assert!(s.kmalloc_cache(8193, K).is_none());
    assert_eq!(cpu.kmalloc(0, K), Err(SlabError::ZeroSize));
    assert_eq!(
        cpu.kmalloc(KMALLOC_MAX_SIZE + 1, K),
        Err(SlabError::TooLarge {
            size: KMALLOC_MAX_SIZE + 1
        })
    );
    assert_eq!(kmalloc_size_roundup(8193), 16384);
}

#[test]
fn large_kmalloc_comes_from_the_buddy_allocator_and_counts_as_sunreclaim() {
    let s = slab(2, 1 << 12);
    let (free0, unrec0) = (free_pages(&s), s.slab_unreclaimable_pages());
    let cpu = s.cpu(C0);
    let o = cpu.kmalloc(8193, K | Gfp::ZERO).unwrap();
    assert_eq!(o.addr().page_offset(), 0);
    assert_eq!(free_pages(&s), free0 - 4, "get_order(8193) = 2");
    assert_eq!(s.slab_unreclaimable_pages(), unrec0 + 4);
    assert_eq!(
        s.buddy().mem().read_u64(PhysAddr(o.addr().0 + 16000)),
        Ok(0)
    );
    cpu.kfree(o);
    assert_eq!(free_pages(&s), free0);
    assert_eq!(s.slab_unreclaimable_pages(), unrec0);
    assert_eq!(s.buddy().mem().page(Pfn(free0)).mapping(), 0);
}

/// The free pointer sits at `s->offset` inside a free object: the middle for plain caches,
/// behind the object when a constructor (or TYPESAFE_BY_RCU) keeps the object's bytes.
#[test]
fn free_pointer_lives_at_s_offset_in_simulated_ram() {
    let s = slab(2, 1 << 12);
    assert_eq!(s.kmalloc_cache(64, K).unwrap().free_pointer_offset(), 32);
    assert_eq!(s.kmalloc_cache(96, K).unwrap().free_pointer_offset(), 48);
    let av = s.std_cache(StdCache::AnonVma);
    assert_eq!((av.free_pointer_offset(), av.size()), (96, 104));
    let c = s
        .create_cache("fp", 40, 0, SlabFlags::empty(), None)
        .unwrap();
    assert_eq!(c.free_pointer_offset(), 16);
    let cpu = s.cpu(C0);
    let a = cpu.alloc(&c, K).unwrap();
    let b = cpu.alloc(&c, K).unwrap();
    assert_eq!(
        b.addr().0,
        a.addr().0 + 40,
        "a fresh slab hands out objects in order"
    );
    let mem = s.buddy().mem();
    // The object after b is the CPU freelist head; its free pointer names the one after it.
    assert_eq!(
        mem.read_u64(PhysAddr(b.addr().0 + 40 + 16)),
        Ok(b.addr().0 + 80)
    );
    let (aa, ba) = (a.addr().0, b.addr().0);
    cpu.free(&c, a);
    assert_eq!(mem.read_u64(PhysAddr(aa + 16)), Ok(ba + 40));
    cpu.free(&c, b);
    assert_eq!(mem.read_u64(PhysAddr(ba + 16)), Ok(aa));
}

#[test]
fn same_cpu_alloc_free_is_lifo_through_the_cpu_freelist() {
    let s = slab(2, 1 << 12);
    let c = s.kmalloc_cache(64, K).unwrap().clone();
    let cpu = s.cpu(C0);
    assert_eq!(cpu.mode(), PinMode::Exclusive);
    let a = cpu.kmalloc(64, K).unwrap();
    let b = cpu.kmalloc(64, K).unwrap();
    let (aa, ba) = (a.addr(), b.addr());
    let state0 = c
        .cpu_slab(C0)
        .state
        .load(mm_sync::sync::atomic::Ordering::Relaxed);
    cpu.kfree(b);
    cpu.kfree(a);
    let state1 = c
        .cpu_slab(C0)
        .state
        .load(mm_sync::sync::atomic::Ordering::Relaxed);
    assert_ne!(
        state0 & !FL_MASK,
        state1 & !FL_MASK,
        "every operation bumps the tid"
    );
    assert_eq!(cpu.kmalloc(64, K).unwrap().into_raw(), aa);
    assert_eq!(cpu.kmalloc(64, K).unwrap().into_raw(), ba);
    // The CPU slab is frozen with every object counted in use, as in SLUB.
    let head = slab_head(s.buddy().mem(), aa.0);
    let m = meta(s.buddy().mem(), head);
    assert!(m.frozen);
    assert_eq!(m.inuse, 64);
    s.check_invariants().unwrap();
}

/// A free from another CPU goes to the slab's own freelist; the owner picks it up when its
/// CPU freelist runs dry; a full slab freed into from afar becomes partial.
#[test]
fn remote_frees_reach_the_slab_and_come_back() {
    let s = slab(2, 1 << 12);
    let c = s
        .create_cache("remote", 4096, 0, SlabFlags::empty(), None)
        .unwrap();
    assert_eq!(c.objects_per_slab(), 8);
    let mem = s.buddy().mem();
    let (cpu0, cpu1) = (s.cpu(C0), s.cpu(C1));
    let objs: Vec<SlabObj> = (0..8).map(|_| cpu0.alloc(&c, K).unwrap()).collect();
    let head = slab_head(mem, objs[0].addr().0);
    let addrs: Vec<u64> = objs.iter().map(|o| o.addr().0).collect();
    let mut objs = objs;
    let third = objs.remove(3);
    cpu1.free(&c, third);
    let m = meta(mem, head);
    assert!(m.frozen, "still CPU 0's slab");
    assert_eq!(m.inuse, 7);
    assert_eq!(slab_freelist(mem, head), addrs[3]);
    // CPU 0's freelist is empty: the slow path takes the remote free back.
    let again = cpu0.alloc(&c, K).unwrap();
    assert_eq!(again.addr().0, addrs[3]);
    // Now the slab is full: the next allocation retires it to the full list.
    let next = cpu0.alloc(&c, K).unwrap();
    assert_ne!(slab_head(mem, next.addr().0), head);
    let m = meta(mem, head);
    assert_eq!(
        (m.frozen, m.list, m.inuse),
        (false, crate::slab::OnList::Full, 8)
    );
    assert_eq!(c.node.lock().full.len(), 1);
    // A remote free into the full slab moves it to the partial list; slabinfo counts it.
    let first = objs.remove(0);
    cpu1.free(&c, first);
    assert_eq!(meta(mem, head).list, crate::slab::OnList::Partial);
    let r = c.slabinfo(mem);
    assert_eq!((r.num_slabs, r.num_objs, r.active_objs), (2, 16, 15));
    s.check_invariants().unwrap();
    for o in objs.into_iter().chain([again, next]) {
        cpu1.free(&c, o);
    }
    drop((cpu0, cpu1));
    assert_eq!(s.cache_counts(&c).unwrap().free_objects, 16);
    s.destroy_cache(C0, &c).unwrap();
}

/// Empty slabs beyond `min_partial` go back to the buddy allocator at once; a shrink frees
/// the rest.
#[test]
fn empty_slabs_beyond_min_partial_return_to_the_buddy_allocator() {
    let s = slab(2, 1 << 12);
    let c = s
        .create_cache("mp", 512, 0, SlabFlags::empty(), None)
        .unwrap();
    assert_eq!(
        (c.objects_per_slab(), c.pages_per_slab(), c.min_partial()),
        (16, 2, 5)
    );
    let free0 = free_pages(&s);
    let cpu0 = s.cpu(C0);
    let objs: Vec<SlabObj> = (0..160).map(|_| cpu0.alloc(&c, K).unwrap()).collect();
    assert_eq!(free_pages(&s), free0 - 20);
    assert_eq!(c.node.lock().full.len(), 9);
    let cpu1 = s.cpu(C1);
    for o in objs {
        cpu1.free(&c, o);
    }
    // Slabs 1-4 stay on the partial list, slabs 5-9 are freed, slab 10 is CPU 0's.
    assert_eq!(c.node.lock().partial.len(), 4);
    assert_eq!(c.node.lock().nr_slabs, 5);
    assert_eq!(free_pages(&s), free0 - 10);
    s.check_invariants().unwrap();
    drop(cpu1);
    assert_eq!(cpu0.shrink(&c), 10);
    assert_eq!(free_pages(&s), free0);
    assert_eq!(c.node.lock().nr_slabs, 0);
}

#[test]
fn gfp_zero_zeroes_and_allocation_failure_is_an_error() {
    let s = slab(1, 64);
    let c = s
        .create_cache("z", 2048, 0, SlabFlags::empty(), None)
        .unwrap();
    let cpu = s.cpu(C0);
    let mem = s.buddy().mem();
    let o = cpu.alloc(&c, K).unwrap();
    mem.write(o.addr(), &[0xab; 2048]).unwrap();
    let a = o.addr();
    cpu.free(&c, o);
    let o = cpu.alloc(&c, K | Gfp::ZERO).unwrap();
    assert_eq!(o.addr(), a);
    let mut buf = [1u8; 2048];
    mem.read(a, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    cpu.free(&c, o);
    // Exhaust the machine: the error comes back as a value, and everything is recoverable.
    let mut objs = Vec::new();
    let err = loop {
        match cpu.alloc(&c, K) {
            Ok(o) => objs.push(o),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, SlabError::NoMemory(_)), "{err:?}");
    assert!(objs.len() >= 16);
    for o in objs {
        cpu.free(&c, o);
    }
    cpu.shrink(&c);
    assert_eq!(c.node.lock().nr_slabs, 0);
}

/// The constructor runs once per object when its slab is made; its state survives free and
/// reuse because the free pointer lives behind the object.
#[test]
fn ctor_state_survives_free_and_reuse() {
    let s = slab(2, 1 << 12);
    let pattern = |a: u64, i: u64| 0xc7c7_0000_0000_0000 | (a >> 3) << 8 | i;
    let c = s
        .create_cache(
            "ctor",
            100,
            0,
            SlabFlags::empty(),
            Some(Box::new(move |m: &PhysMem, a: PhysAddr| {
                for i in 0..12 {
                    m.write_u64(PhysAddr(a.0 + 8 * i), pattern(a.0, i)).unwrap();
                }
                m.write_u32(PhysAddr(a.0 + 96), 0xc7c7_c7c7).unwrap();
            })),
        )
        .unwrap();
    assert_eq!((c.free_pointer_offset(), c.size()), (104, 112));
    let mem = s.buddy().mem();
    let check = |o: &SlabObj| {
        let a = o.addr().0;
        for i in 0..12 {
            assert_eq!(mem.read_u64(PhysAddr(a + 8 * i)), Ok(pattern(a, i)));
        }
        assert_eq!(mem.read_u32(PhysAddr(a + 96)), Ok(0xc7c7_c7c7));
    };
    let (cpu0, cpu1) = (s.cpu(C0), s.cpu(C1));
    for _ in 0..3 {
        let objs: Vec<SlabObj> = (0..100).map(|_| cpu0.alloc(&c, K).unwrap()).collect();
        objs.iter().for_each(check);
        for (i, o) in objs.into_iter().enumerate() {
            if i % 2 == 0 {
                cpu0.free(&c, o);
            } else {
                cpu1.free(&c, o);
            }
        }
    }
    // The standard anon_vma constructor: an empty rwsem wait list points at itself.
    let av = cpu0.alloc_obj::<AnonVma>(K).unwrap();
    let head = av.addr().0 + ANON_VMA_WAIT_LIST;
    assert_eq!(mem.read_u64(PhysAddr(head)), Ok(head));
    assert_eq!(mem.read_u64(PhysAddr(head + 8)), Ok(head));
    cpu0.free_obj(av);
}

#[test]
fn destroy_refuses_while_objects_live_and_reports_them_as_linux_does() {
    let s = slab(2, 1 << 12);
    let kc_active = |s: &SlabAllocator| {
        let rows = s.slabinfo_rows();
        row(&rows, "kmem_cache").active_objs
    };
    let before = kc_active(&s);
    let c = s
        .create_cache("leaky", 256, 0, SlabFlags::empty(), None)
        .unwrap();
    assert_eq!(
        kc_active(&s),
        before + 1,
        "the cache's descriptor is a kmem_cache object"
    );
    let cpu = s.cpu(C0);
    let a = cpu.alloc(&c, K).unwrap();
    let b = cpu.alloc(&c, K).unwrap();
    let junk = cpu.alloc(&c, K).unwrap();
    cpu.free(&c, junk);
    let err = cpu.destroy(&c).unwrap_err();
    let DestroyError::Busy { name, live, report } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(name, "leaky");
    assert_eq!(live, &vec![a.addr().0, b.addr().0]);
    assert_eq!(
        err.to_string(),
        "kmem_cache_destroy leaky: Slab cache still has objects"
    );
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "=".repeat(77));
    assert_eq!(
        lines[1],
        "BUG leaky (Not tainted): Objects remaining in leaky on __kmem_cache_shutdown()"
    );
    assert!(lines[4].starts_with("Slab 0x") && lines[4].contains("objects=16 used=2"));
    assert_eq!(lines[5], format!("Object {:#x} @offset=0", a.addr().0));
    assert_eq!(lines[6], format!("Object {:#x} @offset=256", b.addr().0));
    assert!(lines
        .last()
        .unwrap()
        .starts_with("kmem_cache_destroy leaky: Slab cache still has objects when called from"));
    // Refused: the cache still works.
    let c2 = cpu.alloc(&c, K).unwrap();
    for o in [a, b, c2] {
        cpu.free(&c, o);
    }
    cpu.destroy(&c).unwrap();
    assert!(c.is_destroyed());
    assert_eq!(kc_active(&s), before);
    assert!(s.caches().iter().all(|x| x.name() != "leaky"));
    assert!(matches!(
        cpu.destroy(&c),
        Err(DestroyError::AlreadyDestroyed(_))
    ));
    assert_eq!(cpu.alloc(&c, K), Err(SlabError::Destroyed));
    // The name is free again.
    s.create_cache("leaky", 64, 0, SlabFlags::empty(), None)
        .unwrap();
}

#[test]
fn create_validates_its_arguments() {
    let s = slab(1, 1 << 10);
    let f = SlabFlags::empty();
    assert!(matches!(
        s.create_cache("", 8, 0, f, None),
        Err(CreateError::BadName(_))
    ));
    assert!(matches!(
        s.create_cache("a b", 8, 0, f, None),
        Err(CreateError::BadName(_))
    ));
    assert!(matches!(
        s.create_cache("x", 0, 0, f, None),
        Err(CreateError::BadSize { .. })
    ));
    assert!(matches!(
        s.create_cache("x", 8, 12, f, None),
        Err(CreateError::BadAlign { .. })
    ));
    assert!(matches!(
        s.create_cache("kmalloc-64", 8, 0, f, None),
        Err(CreateError::Exists(_))
    ));
    // 1 MiB objects: one per order-8 slab.
    let big = s.create_cache("big", 1 << 20, 0, f, None).unwrap();
    assert_eq!((big.objects_per_slab(), big.pages_per_slab()), (1, 256));
    let c = s
        .create_cache("hw", 20, 0, SlabFlags::HWCACHE_ALIGN, None)
        .unwrap();
    assert_eq!(
        (c.align(), c.size()),
        (32, 32),
        "HWCACHE_ALIGN halves the line for small objects"
    );
}

#[test]
fn slabinfo_is_version_2_1_newest_first_and_parses_with_procps_rules() {
    let s = slab(2, 1 << 12);
    let cpu = s.cpu(C0);
    let objs: Vec<SlabObj> = (0..100).map(|_| cpu.kmalloc(64, K).unwrap()).collect();
    let mine = s
        .create_cache("newest", 300, 0, SlabFlags::empty(), None)
        .unwrap();
    let text = render_slabinfo(&s);
    assert!(text.starts_with(
        "slabinfo - version: 2.1\n# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n"
    ));
    let parsed = procps::parse_slabinfo(&text).unwrap();
    let names: Vec<&str> = parsed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names[0], "newest");
    assert_eq!(
        &names[..8],
        &[
            "newest",
            "dentry",
            "vm_area_struct",
            "task_struct",
            "anon_vma_chain",
            "anon_vma",
            "maple_node",
            "mm_struct"
        ]
    );
    let tail: Vec<&str> = names.iter().rev().take(5).copied().collect();
    assert_eq!(
        tail,
        [
            "kmem_cache",
            "kmem_cache_node",
            "kmalloc-96",
            "kmalloc-192",
            "kmalloc-8"
        ]
    );
    for want in [
        "kmalloc-8",
        "kmalloc-96",
        "kmalloc-192",
        "kmalloc-8k",
        "vm_area_struct",
    ] {
        assert!(names.contains(&want), "{want}");
    }
    let k64 = parsed.iter().find(|p| p.name == "kmalloc-64").unwrap();
    assert_eq!(
        (
            k64.num_objs,
            k64.objsize,
            k64.objperslab,
            k64.pagesperslab,
            k64.num_slabs
        ),
        (128, 64, 64, 1, 2)
    );
    // One full slab (64 in use) and the CPU slab (all counted active): 128 active.
    assert_eq!(k64.active_objs, 128);
    // The exact column layout of cache_show.
    let line = text.lines().find(|l| l.starts_with("kmalloc-64 ")).unwrap();
    assert_eq!(
        line,
        "kmalloc-64           128    128     64   64    1 : tunables    0    0    0 : slabdata      2      2      0"
    );
    let mut golden = String::new();
    format_slabinfo_row(
        &mut golden,
        &SlabInfoRow {
            name: "kmalloc-8k".into(),
            active_objs: 32,
            num_objs: 32,
            objsize: 8192,
            objperslab: 4,
            pagesperslab: 8,
            active_slabs: 8,
            num_slabs: 8,
        },
    );
    assert_eq!(
        golden,
        "kmalloc-8k            32     32   8192    4    8 : tunables    0    0    0 : slabdata      8      8      0\n"
    );
    for o in objs {
        cpu.kfree(o);
    }
    drop(cpu);
    let _ = mine;
    // Frees from afar leave free objects on partial slabs: active_objs drops below num_objs.
    let cpu1 = s.cpu(C1);
    let objs: Vec<SlabObj> = (0..130).map(|_| cpu1.kmalloc(64, K).unwrap()).collect();
    let cpu0 = s.cpu(C0);
    for o in objs.into_iter().step_by(2) {
        cpu0.kfree(o);
    }
    let r = s.kmalloc_cache(64, K).unwrap().slabinfo(s.buddy().mem());
    assert!(r.active_objs < r.num_objs);
}

#[test]
fn meminfo_slab_counters_follow_the_slabs() {
    let s = slab(2, 1 << 13);
    let (rec0, unrec0) = (s.slab_reclaimable_pages(), s.slab_unreclaimable_pages());
    assert_eq!(rec0, 0, "no reclaimable slab at boot");
    assert!(unrec0 >= 2, "kmem_cache and kmem_cache_node slabs");
    assert_eq!(s.slab_pages(), rec0 + unrec0);
    let cpu = s.cpu(C0);
    let o = cpu.kmalloc(100, K | Gfp::RECLAIMABLE).unwrap();
    assert_eq!(s.slab_reclaimable_pages(), 1);
    cpu.kfree(o);
    assert_eq!(s.dcache().grow(&cpu, 1000, K), 1000);
    // 1000 dentries at 21 per page.
    assert_eq!(s.slab_reclaimable_pages(), 1 + 1000u64.div_ceil(21));
    assert_eq!(s.slab_unreclaimable_pages(), unrec0);
    s.check_invariants().unwrap();
    drop(cpu);
    let freed = s.drop_slab(C0);
    assert_eq!(freed, 1000);
    assert_eq!(s.dcache().nr_dentry(), 0);
    // Empty slabs above min_partial went back at once; a shrink returns the rest.
    let dentry = s.std_cache(StdCache::Dentry).clone();
    assert!(s.slab_reclaimable_pages() <= 1 + 5 + 1);
    s.shrink_cache(C0, &dentry);
    s.shrink_cache(C0, s.kmalloc_cache(128, Gfp::RECLAIMABLE).unwrap());
    assert_eq!(s.slab_reclaimable_pages(), 0);
    assert!(s.shrinkers().slabs_scanned() >= 1000);
}

/// A shrinker that records its calls and frees half of what it scans.
#[derive(Debug)]
struct Recorder {
    count: u64,
    calls: mm_sync::sync::Mutex<Vec<u64>>,
    stop_after: Option<usize>,
}

impl Shrinker for Arc<Recorder> {
    fn name(&self) -> &str {
        "recorder"
    }
    fn count_objects(&self, _: &ShrinkControl<'_>) -> u64 {
        self.count
    }
    fn scan_objects(&self, sc: &mut ShrinkControl<'_>) -> u64 {
        let mut calls = self.calls.lock();
        if self.stop_after.is_some_and(|n| calls.len() >= n) {
            return SHRINK_STOP;
        }
        calls.push(sc.nr_to_scan);
        sc.nr_to_scan / 2
    }
}

fn recorder(count: u64, stop_after: Option<usize>) -> Arc<Recorder> {
    Arc::new(Recorder {
        count,
        calls: mm_sync::sync::Mutex::new(Vec::new()),
        stop_after,
    })
}

#[test]
fn do_shrink_slab_scales_with_priority_batches_and_defers() {
    let s = SlabAllocator::with_config(
        buddy(1, 1 << 10),
        SlabConfig {
            standard_caches: false,
            ..SlabConfig::default()
        },
    )
    .unwrap();
    assert!(s.shrinkers().names().is_empty());
    let rec = recorder(10_000, None);
    let id = s.shrinkers().register(Box::new(rec.clone()));
    assert_eq!(s.shrinkers().names(), ["recorder"]);
    let shrink = |prio| s.shrink_slab(C0, K, NodeId(0), prio);
    // Priority 12: delta = (10000 >> 12) * 4 / 2 = 4, below a batch: deferred.
    assert_eq!(shrink(DEF_PRIORITY), 0);
    assert!(rec.calls.lock().is_empty());
    assert_eq!(s.shrinkers().nr_deferred(id), Some(4));
    assert_eq!(shrink(DEF_PRIORITY), 0);
    assert_eq!(s.shrinkers().nr_deferred(id), Some(8));
    // Priority 0: total_scan = min(8 + 20000, 2 * 10000) = 20000: 156 batches of 128.
    assert_eq!(shrink(0), 156 * 64);
    assert_eq!(*rec.calls.lock(), vec![128; 156]);
    assert_eq!(s.shrinkers().slabs_scanned(), 156 * 128);
    // next_deferred = 8 + 20000 - 19968 = 40.
    assert_eq!(s.shrinkers().nr_deferred(id), Some(40));
    assert!(s.shrinkers().unregister(id));
    assert!(!s.shrinkers().unregister(id));

    // Fewer objects than a batch: when total_scan reaches freeable, scan them all at once.
    let small = recorder(50, None);
    s.shrinkers().register(Box::new(small.clone()));
    assert_eq!(shrink(0), 50);
    assert_eq!(*small.calls.lock(), vec![100]);
    // SHRINK_STOP ends the scan.
    let stop = recorder(100_000, Some(2));
    s.shrinkers().register(Box::new(stop.clone()));
    shrink(0);
    assert_eq!(stop.calls.lock().len(), 2);
}

#[test]
fn dentry_cache_grows_revives_rotates_and_shrinks() {
    let s = slab(2, 1 << 12);
    let d = s.dcache().clone();
    let cpu = s.cpu(C0);
    let mem = s.buddy().mem();
    let mk = |h| {
        let x = d.d_alloc(&cpu, h, K).unwrap();
        assert_eq!(mem.read_u64(PhysAddr(x.addr().0 + D_HASH_OFFSET)), Ok(h));
        d.dput(&cpu, x);
    };
    mk(1);
    mk(2);
    mk(3);
    assert_eq!((d.nr_dentry(), d.nr_unused()), (3, 3));
    // A lookup revives a cached dentry; its count lives in the object.
    let one = d.d_lookup(&cpu, 1).unwrap();
    assert_eq!(mem.read_u32(PhysAddr(one.addr().0 + D_COUNT_OFFSET)), Ok(1));
    assert_eq!(d.nr_unused(), 2);
    d.dput(&cpu, one);
    // LRU: 2, 3, 1 (referenced). Two scans free 2 and 3.
    assert_eq!(d.prune(&cpu, 2), (2, 2));
    assert!(d.d_lookup(&cpu, 2).is_none());
    // The referenced dentry gets a second pass.
    assert_eq!(d.prune(&cpu, 1), (1, 0));
    assert_eq!(d.prune(&cpu, 1), (1, 1));
    assert_eq!(d.nr_dentry(), 0);
    // The shrinker trims a grown cache to nothing at priority 0; used dentries survive.
    assert_eq!(d.grow(&cpu, 500, K), 500);
    let pinned = d.d_alloc(&cpu, 7, K).unwrap();
    drop(cpu);
    assert_eq!(s.shrinkers().names(), ["sb-dentry"]);
    assert_eq!(s.shrink_slab(C1, K, NodeId(0), 0), 500);
    assert_eq!((d.nr_dentry(), d.nr_unused()), (1, 0));
    let cpu = s.cpu(C0);
    d.dput(&cpu, pinned);
    assert_eq!(d.nr_unused(), 1);
    s.check_invariants().unwrap();
}

#[test]
fn pins_are_exclusive_shared_or_remote() {
    let s = slab(2, 1 << 12);
    let c = s
        .create_cache("pins", 1024, 0, SlabFlags::empty(), None)
        .unwrap();
    {
        let a = s.cpu(C0);
        let b = s.cpu(C0);
        assert_eq!((a.mode(), b.mode()), (PinMode::Exclusive, PinMode::Remote));
        // Remote mode works from the node lists and never touches CPU 0's slab: its new slab
        // goes on the partial list, where CPU 0 then finds it.
        let x = b.alloc(&c, K).unwrap();
        assert_eq!(
            c.cpu_slab(C0)
                .end
                .load(mm_sync::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(c.node.lock().partial.len(), 1);
        let y = a.alloc(&c, K).unwrap();
        assert_eq!(y.addr().0, x.addr().0 + 1024);
        assert_eq!(c.node.lock().partial.len(), 0);
        b.free(&c, y);
        a.free(&c, x);
        assert_eq!(s.cpu_shared(C0).mode(), PinMode::Remote);
    }
    {
        let a = s.cpu_shared(C0);
        let b = s.cpu(C0);
        assert_eq!((a.mode(), b.mode()), (PinMode::Shared, PinMode::Shared));
        // Sharers push and pop one CPU freelist.
        let x = a.alloc(&c, K).unwrap();
        let xa = x.addr();
        b.free(&c, x);
        let y = a.alloc(&c, K).unwrap();
        assert_eq!(y.addr(), xa);
        b.free(&c, y);
    }
    assert_eq!(s.cpu(C0).mode(), PinMode::Exclusive);
    // A flush asked of a CPU held elsewhere happens when its holder lets go.
    let holder = s.cpu(C1);
    let o = holder.alloc(&c, K).unwrap();
    holder.free(&c, o);
    // CPU 0's empty slab goes back; CPU 1's is held.
    assert_eq!(s.shrink_cache(C0, &c), 4);
    assert_eq!(c.node.lock().nr_slabs, 1);
    assert_ne!(
        c.cpu_slab(C1)
            .end
            .load(mm_sync::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(holder);
    assert_eq!(
        c.cpu_slab(C1)
            .end
            .load(mm_sync::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(s.shrink_cache(C0, &c), 4);
    assert_eq!(c.node.lock().nr_slabs, 0);
}

#[test]
fn typed_kernel_objects_use_their_caches() {
    let s = slab(2, 1 << 12);
    let cpu = s.cpu(C1);
    let mm = cpu.alloc_obj::<MmStruct>(K | Gfp::ZERO).unwrap();
    let vma = cpu.alloc_obj::<VmAreaStruct>(K).unwrap();
    let task = cpu.alloc_obj::<TaskStruct>(K).unwrap();
    let mem = s.buddy().mem();
    mem.write_u64(PhysAddr(vma.addr().0 + 16), mm.addr().0)
        .unwrap();
    assert_eq!(mem.read_u64(PhysAddr(vma.addr().0 + 16)), Ok(mm.addr().0));
    let name = |a: PhysAddr| {
        s.core
            .cache_by_mapping(mem.page(a.pfn()).mapping())
            .name()
            .to_string()
    };
    assert_eq!(name(mm.addr()), "mm_struct");
    assert_eq!(name(vma.addr()), "vm_area_struct");
    assert_eq!(name(task.addr()), "task_struct");
    #[derive(Debug)]
    enum Batch {}
    impl KernelObject for Batch {
        const SOURCE: ObjSource = ObjSource::Kmalloc(48);
    }
    let b = cpu.alloc_obj::<Batch>(K).unwrap();
    assert_eq!(name(b.addr()), "kmalloc-64");
    let raw = vma.into_raw();
    cpu.free_obj(KObj::<VmAreaStruct>::from_raw(raw));
    cpu.free_obj(mm);
    cpu.free_obj(task);
    cpu.free_obj(b);
    drop(cpu);
    for c in [
        StdCache::MmStruct,
        StdCache::VmAreaStruct,
        StdCache::TaskStruct,
    ] {
        assert_eq!(
            s.cache_counts(s.std_cache(c)).unwrap().free_objects,
            s.cache_counts(s.std_cache(c)).unwrap().total_objects
        );
    }
}

/// Two CPU threads allocate, free locally and hand objects to each other to free remotely;
/// afterwards every object is accounted for and a shrink returns every page.
#[test]
fn two_cpu_threads_with_cross_frees_keep_conservation() {
    let s = Arc::new(slab(2, 1 << 14));
    let c = s
        .create_cache("xfree", 200, 0, SlabFlags::empty(), None)
        .unwrap();
    let free0 = free_pages(&s);
    let (tx0, rx0) = mm_sync::channel::unbounded::<u64>();
    let (tx1, rx1) = mm_sync::channel::unbounded::<u64>();
    let run = |cpu: u32, tx: mm_sync::channel::Sender<u64>, rx: mm_sync::channel::Receiver<u64>| {
        let s = s.clone();
        let c = c.clone();
        mm_sync::thread::spawn(move || {
            let h = s.cpu(CpuId(cpu));
            assert_eq!(h.mode(), PinMode::Exclusive);
            let mem = h.mem();
            let mut mine = Vec::new();
            let check_free = |a: u64| {
                assert_eq!(
                    mem.read_u64(PhysAddr(a)),
                    Ok(a ^ 0x5a5a),
                    "object {a:#x} was clobbered"
                );
                assert_eq!(mem.read_u64(PhysAddr(a + 192)), Ok(!a));
                h.free(&c, SlabObj::from_raw(PhysAddr(a)));
            };
            for i in 0..20_000u64 {
                let o = h.alloc(&c, K).unwrap().into_raw().0;
                mem.write_u64(PhysAddr(o), o ^ 0x5a5a).unwrap();
                mem.write_u64(PhysAddr(o + 192), !o).unwrap();
                match i % 3 {
                    0 => tx.send(o).unwrap(),
                    _ => mine.push(o),
                }
                if mine.len() > 50 {
                    check_free(mine.swap_remove((i as usize * 7) % mine.len()));
                }
                while let Ok(a) = rx.try_recv() {
                    check_free(a);
                }
            }
            drop(tx);
            mine.into_iter().for_each(check_free);
            while let Ok(a) = rx.recv() {
                check_free(a);
            }
        })
    };
    let t0 = run(0, tx1, rx0);
    let t1 = run(1, tx0, rx1);
    t0.join().unwrap();
    t1.join().unwrap();
    s.check_invariants().unwrap();
    let n = s.cache_counts(&c).unwrap();
    assert_eq!(n.free_objects, n.total_objects, "every object came back");
    s.shrink_cache(C0, &c);
    assert_eq!(free_pages(&s), free0);
}

/// A CPU actor holding its pcp lists for a quantum pins through them: slab pages come from and
/// go back to the held lists (through the buddy allocator's own per-call lock this would wait
/// for the actor itself).
#[test]
fn a_cpu_holding_its_pcp_lists_gets_slab_pages_through_them() {
    let s = slab(2, 1 << 12);
    let c = s
        .create_cache("held", 2048, 0, SlabFlags::empty(), None)
        .unwrap();
    let (free0, unrec0) = (free_pages(&s), s.slab_unreclaimable_pages());
    let h = s.cpu_with_pcp(s.buddy().lock_cpu(C0));
    assert_eq!((h.cpu(), h.mode()), (C0, PinMode::Exclusive));
    let objs: Vec<SlabObj> = (0..100).map(|_| h.alloc(&c, K).unwrap()).collect();
    let big = h.kmalloc(20_000, K).unwrap();
    let page = h.pcp().unwrap().alloc(mm_types::Order::ZERO, K).unwrap();
    // Seven order-3 slabs of 16 objects and an order-3 kmalloc block (free_pages() would take
    // the pcp lock we hold, so count through the slab counters).
    assert_eq!(s.slab_unreclaimable_pages(), unrec0 + 7 * 8 + 8);
    h.pcp().unwrap().free(page);
    h.kfree(big);
    for o in objs {
        h.free(&c, o);
    }
    // Two emptied slabs went back at once (min_partial is 5); the shrink frees the other five.
    assert_eq!(h.shrink(&c), 5 * 8);
    assert_eq!(s.slab_unreclaimable_pages(), unrec0);
    let pcp = h.into_pcp().unwrap();
    drop(pcp);
    assert_eq!(free_pages(&s), free0);
    assert_eq!(
        s.cpu(C0).mode(),
        PinMode::Exclusive,
        "into_pcp released the CPU"
    );
}

/// Two threads share CPU 0 (as tasks preempting each other on one CPU would): every fast path
/// commits by compare-and-swap with the tid, slow paths claim the CPU slab; objects stay
/// unique and stamped, and all come back.
#[test]
fn two_threads_sharing_one_cpu_never_share_an_object() {
    let s = Arc::new(slab(2, 1 << 13));
    let c = s
        .create_cache("shared", 96, 0, SlabFlags::empty(), None)
        .unwrap();
    let free0 = free_pages(&s);
    let started = Arc::new(mm_sync::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..2u64)
        .map(|t| {
            let (s, c, started) = (s.clone(), c.clone(), started.clone());
            mm_sync::thread::spawn(move || {
                let h = s.cpu_shared(C0);
                assert_eq!(h.mode(), PinMode::Shared);
                let mem = h.mem();
                let mut mine: Vec<SlabObj> = Vec::new();
                // Start together, so the two really interleave on CPU 0's freelist.
                started.fetch_add(1, mm_sync::sync::atomic::Ordering::AcqRel);
                while started.load(mm_sync::sync::atomic::Ordering::Acquire) < 2 {
                    mm_sync::hint::spin_loop();
                }
                for i in 0..100_000u64 {
                    if i % 5 < 3 || mine.is_empty() {
                        let o = h.alloc(&c, K).unwrap();
                        let a = o.addr().0;
                        for w in 0..12 {
                            mem.write_u64(PhysAddr(a + 8 * w), a ^ t ^ w).unwrap();
                        }
                        mine.push(o);
                    } else {
                        let o = mine.swap_remove((i as usize * 13) % mine.len());
                        let a = o.addr().0;
                        for w in 0..12 {
                            assert_eq!(
                                mem.read_u64(PhysAddr(a + 8 * w)),
                                Ok(a ^ t ^ w),
                                "{a:#x} was shared"
                            );
                        }
                        h.free(&c, o);
                    }
                }
                for o in mine {
                    h.free(&c, o);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    s.check_invariants().unwrap();
    let n = s.cache_counts(&c).unwrap();
    assert_eq!(n.free_objects, n.total_objects);
    s.shrink_cache(C1, &c);
    assert_eq!(free_pages(&s), free0);
}
