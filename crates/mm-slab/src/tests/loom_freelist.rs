//! Loom model: one CPU's per-CPU freelist racing remote frees from another CPU, on the real
//! allocator (`SlabCpu` fast and slow paths, `free_to_slab`, `get_freelist`,
//! `deactivate_slab`, the buddy allocator underneath).
//!
//! CPU 0 has allocated a whole slab S (objects o0..o3), so S is frozen with an empty CPU
//! freelist. Thread A (on CPU 0) frees o0 and allocates it back through the CPU freelist,
//! allocates once more (the slow path: the objects remote frees put on S's own freelist, or S
//! retired to the full list and a new slab), frees its first object and flushes its CPU slab,
//! merging its CPU freelist with whatever remote frees arrived meanwhile. Thread B (on CPU 1)
//! frees o1 and o2: into the frozen slab, or into the retired full slab, which then becomes
//! partial. In every interleaving: no object is handed out twice, no free is lost, and
//! allocated + free objects = the objects of all slabs.

#[cfg(not(debug_assertions))]
compile_error!("run the loom models with -C debug-assertions (cargo xtask loom)");

use crate::{KmemCache, PinMode, SlabAllocator, SlabConfig, SlabFlags, SlabObj};
use mm_buddy::{Buddy, BuddyConfig};
use mm_phys::PhysMem;
use mm_sync::sync::Arc;
use mm_types::{CpuId, Gfp, Pfn, PhysAddr, ZoneId};
use std::collections::BTreeSet;

/// A 2-CPU machine of 64 pages and an allocator with one test cache of 1 KiB objects, four
/// to an order-0 slab (`slub_min_objects=4`).
pub(crate) fn boot() -> (Arc<SlabAllocator>, Arc<KmemCache>) {
    let pages = 64;
    let start = 256;
    let cfg = BuddyConfig::single_zone(2, ZoneId::Normal, Pfn(start), pages);
    let buddy = Arc::new(Buddy::new(Arc::new(PhysMem::new(Pfn(start + pages))), &cfg).unwrap());
    let s = SlabAllocator::with_config(
        buddy,
        SlabConfig {
            slub_min_objects: 4,
            standard_caches: false,
            ..SlabConfig::default()
        },
    )
    .unwrap();
    let c = s
        .create_cache("loom", 1024, 0, SlabFlags::empty(), None)
        .unwrap();
    assert_eq!((c.objects_per_slab(), c.pages_per_slab()), (4, 1));
    (Arc::new(s), c)
}

#[test]
fn loom_cpu_freelist_vs_remote_free() {
    mm_sync::model(|| {
        let (s, c) = boot();
        let objs: Vec<u64> = {
            let h = s.cpu(CpuId(0));
            (0..4)
                .map(|_| h.alloc(&c, Gfp::GFP_KERNEL).unwrap().into_raw().0)
                .collect()
        };
        let a = {
            let (s, c) = (s.clone(), c.clone());
            let o0 = objs[0];
            mm_sync::thread::spawn(move || {
                let h = s.cpu(CpuId(0));
                assert_eq!(h.mode(), PinMode::Exclusive);
                h.free(&c, SlabObj::from_raw(PhysAddr(o0)));
                let x1 = h.alloc(&c, Gfp::GFP_KERNEL).unwrap();
                assert_eq!(x1.addr().0, o0, "the CPU freelist is LIFO");
                let x2 = h.alloc(&c, Gfp::GFP_KERNEL).unwrap();
                h.free(&c, x1);
                // Hand the CPU slab back: its CPU freelist merges with the remote frees.
                h.flush_cpu_slab(&c, &h);
                x2.into_raw().0
            })
        };
        let b = {
            let (s, c) = (s.clone(), c.clone());
            let (o1, o2) = (objs[1], objs[2]);
            mm_sync::thread::spawn(move || {
                let h = s.cpu(CpuId(1));
                assert_eq!(h.mode(), PinMode::Exclusive);
                h.free(&c, SlabObj::from_raw(PhysAddr(o1)));
                h.free(&c, SlabObj::from_raw(PhysAddr(o2)));
            })
        };
        let x2 = a.join().unwrap();
        b.join().unwrap();
        // Live now: o3 and x2.
        let live: BTreeSet<u64> = [objs[3], x2].into();
        assert_eq!(live.len(), 2, "an object was handed out while allocated");
        let n = s.cache_counts(&c).unwrap();
        assert_eq!(
            n.free_objects + 2,
            n.total_objects,
            "a free was lost or an object is on a freelist while allocated"
        );
        s.check_invariants().unwrap();
        // Drain: every free object comes out once and none is live.
        let h = s.cpu(CpuId(0));
        let mut got = BTreeSet::new();
        for _ in 0..n.free_objects {
            let o = h.alloc(&c, Gfp::GFP_KERNEL).unwrap().into_raw().0;
            assert!(
                !live.contains(&o) && got.insert(o),
                "{o:#x} handed out twice"
            );
        }
    });
}
