//! Race B10 (concurrency-races.md): the SLUB lockless fast path and its freelist ABA.
//!
//! 00e962c5408b ("Revert 'SLUB: Alternate fast paths using cmpxchg_local'", 2008) quotes Eric
//! Dumazet: a task reads `object = c->freelist` (A) and `next = A->next` (B); an interrupt on
//! the same CPU allocates A and B and frees A, so `c->freelist` is A again but `A->next` is now
//! C; the task's `cmpxchg_local(&c->freelist, A, B)` succeeds and B, still allocated, is handed
//! out again. 8a5ec0ba42c4 ("Lockless (and preemptless) fastpaths for slub", 2011) pairs the
//! freelist with a transaction id that every operation changes and compares both.
//!
//! The model runs the real fast path of [`crate::SlabCpu`] with two shared pins of CPU 0 (the
//! task and the "interrupt"). The historical variant is the same code with the tid increment
//! set to 0, so the compare-and-swap checks the freelist head only; loom must find the double
//! hand-out. With the tid, every interleaving is correct.

#[cfg(not(debug_assertions))]
compile_error!("run the loom models with -C debug-assertions (cargo xtask loom)");

use super::loom_freelist::boot;
use crate::cache::TID_ONE;
use crate::{PinMode, SlabObj};
use mm_sync::untracked::Ordering;
use mm_types::{CpuId, Gfp};
use std::collections::BTreeSet;

const K: Gfp = Gfp::GFP_KERNEL;

/// Runs the B10 interleaving space with the fast path's tid increment `tid_step`.
fn model(tid_step: u64) {
    mm_sync::model(move || {
        let (s, c) = boot();
        c.tid_step.store(tid_step, Ordering::Relaxed);
        // CPU 0's freelist: A -> B -> C -> D (one slab of four, all free).
        {
            let h = s.cpu(CpuId(0));
            let a = h.alloc(&c, K).unwrap();
            h.free(&c, a);
        }
        let task = {
            let (s, c) = (s.clone(), c.clone());
            mm_sync::thread::spawn(move || {
                let h = s.cpu_shared(CpuId(0));
                assert_eq!(h.mode(), PinMode::Shared);
                h.alloc(&c, K).unwrap().into_raw().0
            })
        };
        let irq = {
            let (s, c) = (s.clone(), c.clone());
            mm_sync::thread::spawn(move || {
                let h = s.cpu_shared(CpuId(0));
                assert_eq!(h.mode(), PinMode::Shared);
                let a = h.alloc(&c, K).unwrap();
                let b = h.alloc(&c, K).unwrap();
                h.free(&c, a);
                b.into_raw().0
            })
        };
        let x = task.join().unwrap();
        let b = irq.join().unwrap();
        assert_ne!(x, b, "the task and the interrupt got the same object");
        // Two objects are left on CPU 0's freelist; neither may be live.
        let h = s.cpu(CpuId(0));
        let mut live: BTreeSet<u64> = [x, b].into();
        for _ in 0..2 {
            let o = h.alloc(&c, K).unwrap().into_raw().0;
            assert!(
                live.insert(o),
                "object {o:#x} handed out while allocated (B10)"
            );
        }
        for o in live {
            h.free(&c, SlabObj::from_raw(mm_types::PhysAddr(o)));
        }
        drop(h);
        let n = s.cache_counts(&c).unwrap();
        assert_eq!(n.free_objects, n.total_objects);
    });
}

/// The 2008 fast path (freelist-only compare) loses: loom finds the double hand-out.
#[test]
fn race_b10_slub_fastpath_aba_historical_is_caught() {
    let caught = std::panic::catch_unwind(|| model(0));
    assert!(
        caught.is_err(),
        "loom did not find the B10 ABA in the freelist-only fast path"
    );
}

/// The fast path with a transaction id passes every interleaving.
#[test]
fn race_b10_slub_fastpath_aba_tid_fixed() {
    model(TID_ONE);
}
