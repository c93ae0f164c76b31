//! B3 (concurrency-races.md): reclaim's batched TLB flush vs mprotect. Reclaim clears a PTE
//! and defers the flush; mprotect then sees an empty PTE, changes nothing, flushes nothing and
//! returns, and the user writes through the stale writable TLB entry. The fix, 3ea277194daa,
//! has mprotect call `flush_tlb_batched_pending` under the page-table lock.

use super::loom_common::{caught, explore, finished, serve_until, setup, A};
use crate::mm::Regressions;
use crate::{FaultKind, Prot, Pte, TlbBatch};
use mm_sync::sync::atomic::AtomicUsize;
use mm_sync::sync::Arc;
use mm_sync::thread;
use mm_types::{SwapEntry, VirtAddr};

const STALE_WRITE: &str = "a write went through a stale writable TLB entry after mprotect returned";

/// CPU 0 reclaims `A` with a batched flush; CPU 1, which wrote `A` before (its TLB caches it
/// writable), mprotects it read-only and writes again.
fn model(regress: Regressions) {
    let (mmu, mut cpus, mm, _frame) = setup(2, regress);
    let mut user = cpus.pop().unwrap();
    let mut reclaim = cpus.pop().unwrap();
    user.switch_mm(&mm);
    user.store_u64(A, 1).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let (mm0, done0) = (mm.clone(), done.clone());
    let t = thread::spawn(move || {
        let mut batch = TlbBatch::new(&mmu);
        let swap = Pte::swap(SwapEntry { kind: 0, offset: 1 });
        mm0.try_to_unmap(&mut reclaim, A, swap, &mut batch).unwrap();
        batch.flush(&mut reclaim);
        finished(&mmu, &done0, &[1]);
    });
    mm.change_protection(&mut user, A, VirtAddr(A.0 + 4096), Prot::READ)
        .unwrap();
    // mprotect returned: no write may get through.
    match user.store_u64(A, 2) {
        Ok(()) => panic!("{STALE_WRITE}"),
        Err(f) => assert!(
            matches!(f.kind, FaultKind::WriteProtect | FaultKind::Swap(_)),
            "{f}"
        ),
    }
    serve_until(&mut user, &done, 1);
    t.join().unwrap();
}

#[test]
fn race_b3_batched_flush_vs_mprotect_fixed() {
    explore(|| model(Regressions::default()));
}

#[test]
fn race_b3_historical_is_caught() {
    assert!(caught(
        || model(Regressions {
            skip_batched_pending_flush: true,
            ..Regressions::default()
        }),
        STALE_WRITE
    ));
}
