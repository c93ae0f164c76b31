//! Loom model: a CPU slab's slow path (`___slab_alloc` under the local lock, with the state
//! claimed BUSY) racing the fast paths of another task sharing the same CPU.
//!
//! CPU 0's slab S has one free object left. The task (a shared pin of CPU 0) allocates twice:
//! the second allocation runs the slow path, which finds S full, retires it to the full list
//! and installs a new slab from the page allocator, with the local lock dropped around the page
//! allocation. The other task on CPU 0 frees an object of S and allocates one: each of its
//! fast paths either commits before the claim, fails against BUSY or a changed tid and falls
//! back (free into S's own freelist, allocation through the slow path), or runs on the new
//! slab. In every interleaving no object is handed out twice and allocated + free objects =
//! the objects of all slabs.

#[cfg(not(debug_assertions))]
compile_error!("run the loom models with -C debug-assertions (cargo xtask loom)");

use super::loom_freelist::boot;
use crate::{PinMode, SlabObj};
use mm_types::{CpuId, Gfp, PhysAddr};
use std::collections::BTreeSet;

const K: Gfp = Gfp::GFP_KERNEL;

#[test]
fn loom_cpu_slab_slow_path_vs_a_sharer() {
    mm_sync::model(|| {
        let (s, c) = boot();
        let objs: Vec<u64> = {
            let h = s.cpu(CpuId(0));
            (0..3)
                .map(|_| h.alloc(&c, K).unwrap().into_raw().0)
                .collect()
        };
        let task = {
            let (s, c) = (s.clone(), c.clone());
            mm_sync::thread::spawn(move || {
                let h = s.cpu_shared(CpuId(0));
                assert_eq!(h.mode(), PinMode::Shared);
                let a = h.alloc(&c, K).unwrap().into_raw().0;
                let b = h.alloc(&c, K).unwrap().into_raw().0;
                (a, b)
            })
        };
        let other = {
            let (s, c) = (s.clone(), c.clone());
            let o1 = objs[1];
            mm_sync::thread::spawn(move || {
                let h = s.cpu_shared(CpuId(0));
                assert_eq!(h.mode(), PinMode::Shared);
                h.free(&c, SlabObj::from_raw(PhysAddr(o1)));
                h.alloc(&c, K).unwrap().into_raw().0
            })
        };
        let (a, b) = task.join().unwrap();
        let x = other.join().unwrap();
        let live: BTreeSet<u64> = [objs[0], objs[2], a, b, x].into();
        assert_eq!(live.len(), 5, "an object was handed out twice");
        let n = s.cache_counts(&c).unwrap();
        assert_eq!(n.free_objects + 5, n.total_objects, "an object was lost");
        s.check_invariants().unwrap();
    });
}
