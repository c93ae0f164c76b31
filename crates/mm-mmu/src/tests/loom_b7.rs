//! B7, CVE-2018-18281 (concurrency-races.md): after an unmap returns, no CPU can load from the
//! freed frame through a stale TLB entry. The real code passes; freeing before the flush, and
//! mremap's pre-eb66ae030829 flush after dropping the page-table lock, are caught.

use super::loom_common::{caught, explore, finished, setup, user_cpu, A, B, STALE_LOAD};
use crate::mm::Regressions;
use crate::tests::fixture::frame_of;
use crate::MmuGather;
use mm_sync::sync::atomic::AtomicUsize;
use mm_sync::sync::Arc;
use mm_sync::thread;
use mm_types::VirtAddr;

/// CPU 0 runs a user thread that keeps loading `A`; CPU 1 truncates: zaps `A` and frees the
/// frame through `mmu_gather`.
fn unmap_model(regress: Regressions) {
    let (mmu, mut cpus, mm, frame) = setup(2, regress);
    let mut truncate = cpus.pop().unwrap();
    let mut user = cpus.pop().unwrap();
    user.switch_mm(&mm);
    user.load_u64(A).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let (mm1, done1) = (mm.clone(), done.clone());
    let t = thread::spawn(move || {
        let mut tlb = MmuGather::new(&mm1);
        mm1.zap_range(&mut truncate, A, VirtAddr(A.0 + 4096), &mut tlb, frame_of)
            .unwrap();
        assert_eq!(tlb.finish(&mut truncate), 1);
        finished(&mmu, &done1, &[0]);
    });
    user_cpu(&mut user, A, frame, &done, 1);
    t.join().unwrap();
}

#[test]
fn race_b7_unmap_real_code_never_loads_a_freed_frame() {
    explore(|| unmap_model(Regressions::default()));
}

#[test]
fn race_b7_free_before_flush_is_caught() {
    assert!(caught(
        || unmap_model(Regressions {
            free_before_flush: true,
            ..Regressions::default()
        }),
        STALE_LOAD
    ));
}

/// The CVE's three parties: CPU 0 mremaps `A` to `B`, CPU 1 truncates the page at `B`
/// (finds it through rmap there, zaps, flushes `B`, frees), CPU 2 runs a user thread that
/// keeps loading `A`.
fn mremap_model(regress: Regressions) {
    let (mmu, mut cpus, mm, frame) = setup(3, regress);
    let mut user = cpus.pop().unwrap();
    let mut truncate = cpus.pop().unwrap();
    let mut mremap = cpus.pop().unwrap();
    user.switch_mm(&mm);
    user.load_u64(A).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let (mm0, done0, mmu0) = (mm.clone(), done.clone(), mmu.clone());
    let t0 = thread::spawn(move || {
        mm0.move_pte(&mut mremap, A, B).unwrap();
        finished(&mmu0, &done0, &[2]);
    });
    let (mm1, done1) = (mm.clone(), done.clone());
    let t1 = thread::spawn(move || {
        let mut tlb = MmuGather::new(&mm1);
        mm1.zap_range(&mut truncate, B, VirtAddr(B.0 + 4096), &mut tlb, frame_of)
            .unwrap();
        tlb.finish(&mut truncate);
        finished(&mmu, &done1, &[2]);
    });
    user_cpu(&mut user, A, frame, &done, 2);
    t0.join().unwrap();
    t1.join().unwrap();
}

#[test]
fn race_b7_mremap_real_code_flushes_under_the_ptl() {
    explore(|| mremap_model(Regressions::default()));
}

#[test]
fn race_b7_mremap_deferred_flush_is_caught() {
    assert!(caught(
        || mremap_model(Regressions {
            mremap_flush_after_unlock: true,
            ..Regressions::default()
        }),
        STALE_LOAD
    ));
}
