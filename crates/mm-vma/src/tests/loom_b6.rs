//! B6, CVE-2020-29369 (concurrency-races.md): munmap downgrades the mmap lock to read while it
//! zaps the range it took out of the tree; a fault below the stack grows the stack into that
//! range and maps a page there; munmap's zap then takes the page of a live VMA away, and the
//! write is lost. Fixed twice upstream: munmap keeps the write lock when the next VMA grows
//! down (246c320a8cfe), and faults grow stacks only under the write lock (8d7071af8907).
//! The real code has both; each alone passes; the historical kernel (neither) is caught.

#[cfg(not(debug_assertions))]
compile_error!("run the loom models with -C debug-assertions (cargo xtask loom)");

use super::fixture::process;
use super::loom_common::{failure, loom_machine};
use crate::mm::Regressions;
use crate::{AccessError, MapFlags, ProtFlags, Signal, TASK_SIZE};
use mm_sync::sync::atomic::{AtomicBool, Ordering};
use mm_sync::sync::Arc;
use mm_sync::thread;
use mm_types::VirtAddr;

const P: u64 = 4096;
const V: u64 = 0x5ac0_5ac0;

/// CPU 0 unmaps the PROT_NONE VMA right below the stack; CPU 1 (the main thread) keeps
/// pushing onto the stack one page below its VMA, which lands in that VMA until it is gone.
fn model(regress: Regressions) {
    let mut m = loom_machine();
    let mut as_ = process(&mut m, 1);
    as_.regress = regress;
    let stack_lo = TASK_SIZE - 33 * P;
    let x = stack_lo - 2 * P;
    let addr = VirtAddr(stack_lo - P);
    {
        let c = &mut m.cpus[0];
        as_.mmap(
            c,
            VirtAddr(x),
            2 * P,
            ProtFlags::NONE,
            MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED,
            None,
        )
        .unwrap();
        // Populate the stack's page table, so the race is about the entries, not the tables.
        c.store_u64(&as_, VirtAddr(stack_lo), 1).unwrap();
        c.mmu().leave_mm();
    }
    let as_ = Arc::new(as_);
    let mut c1 = m.cpus.pop().unwrap();
    let mut c0 = m.cpus.pop().unwrap();
    c0.enter(&as_);
    c1.enter(&as_);
    let done = Arc::new(AtomicBool::new(false));
    let (as0, done0) = (as_.clone(), done.clone());
    let t = thread::spawn(move || {
        as0.munmap(&mut c0, VirtAddr(x), 2 * P).unwrap();
        c0.mmu().leave_mm();
        done0.store(true, Ordering::Release);
    });
    loop {
        let was_done = done.load(Ordering::Acquire);
        c1.mmu().handle_ipis();
        match c1.store_u64(&as_, addr, V) {
            Ok(()) => break,
            Err(AccessError::Signal(Signal::Segv { .. })) if !was_done => thread::yield_now(),
            Err(e) => panic!("the stack did not grow once the VMA below it was unmapped: {e}"),
        }
    }
    // Keep acknowledging shootdowns until munmap is done, then read the value back.
    c1.mmu()
        .spin_until(|| done.load(Ordering::Acquire).then_some(()));
    t.join().unwrap();
    assert_eq!(
        c1.load_u64(&as_, addr),
        Ok(V),
        "CVE-2020-29369: munmap zapped a page of the stack, which grew into the range munmap was \
         tearing down, so a write to the stack was lost"
    );
    as_.exit(&mut c1);
}

#[test]
fn race_b6_real_code_never_loses_a_stack_write() {
    mm_sync::model(|| model(Regressions::default()));
}

#[test]
fn race_b6_keeping_the_write_lock_alone_suffices() {
    // 246c320a8cfe alone: stacks still grow under the read lock, munmap does not downgrade.
    mm_sync::model(|| {
        model(Regressions {
            expand_stack_under_read_lock: true,
            ..Regressions::default()
        })
    });
}

#[test]
fn race_b6_historical_is_caught() {
    let msg = failure(|| {
        model(Regressions {
            expand_stack_under_read_lock: true,
            munmap_downgrade_ignores_growsdown: true,
            ..Regressions::default()
        })
    })
    .expect("loom finds the interleaving that loses the write");
    assert!(msg.contains("CVE-2020-29369"), "{msg}");
}
