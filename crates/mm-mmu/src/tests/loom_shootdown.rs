//! The shootdown protocol itself: two CPUs that shoot each other down both finish, and a CPU
//! that comes back to an address space (switch back, or out of lazy mode) while another CPU
//! flushes it never uses a translation the flush removed.

use super::loom_common::{
    caught, check_load, explore, finished, serve_until, setup, A, STALE_LOAD,
};
use crate::mm::Regressions;
use crate::tests::fixture::frame_of;
use crate::{FaultKind, Mm, MmuCpu, MmuGather, Prot};
use mm_sync::sync::atomic::AtomicUsize;
use mm_sync::sync::Arc;
use mm_sync::thread;
use mm_types::{CpuId, Gfp, Order, VirtAddr};

const P1: VirtAddr = VirtAddr(0x50_0000);

fn unmap(cpu: &mut MmuCpu, mm: &Mm, va: VirtAddr) -> usize {
    let mut tlb = MmuGather::new(mm);
    mm.zap_range(cpu, va, VirtAddr(va.0 + 4096), &mut tlb, frame_of)
        .unwrap();
    tlb.finish(cpu)
}

/// CPUs 0 and 1 both cache `A` and `P1`; each unmaps one of them at the same time, so each
/// waits for the other's acknowledgement while the other waits for its own.
#[test]
fn shootdown_mutual_always_finishes() {
    explore(|| {
        let (mmu, mut cpus, mm, fa) = setup(2, Regressions::default());
        let f1 = mmu
            .buddy()
            .alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL)
            .unwrap()
            .into_raw()
            .0;
        mm.map(&mut cpus[0], P1, f1, Prot::RW).unwrap();
        for cpu in cpus.iter_mut() {
            cpu.switch_mm(&mm);
            cpu.load_u64(A).unwrap();
            cpu.load_u64(P1).unwrap();
        }
        let done = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = cpus
            .into_iter()
            .zip([A, P1])
            .map(|(mut cpu, va)| {
                let (mm, done, mmu) = (mm.clone(), done.clone(), mmu.clone());
                thread::spawn(move || {
                    assert_eq!(unmap(&mut cpu, &mm, va), 1);
                    finished(&mmu, &done, &[1 - cpu.id().0]);
                    serve_until(&mut cpu, &done, 2);
                    cpu
                })
            })
            .collect();
        for h in handles {
            let mut cpu = h.join().unwrap();
            for (va, f) in [(A, fa), (P1, f1)] {
                assert!(cpu.tlb_probe(va).is_none(), "CPU {} kept {va}", cpu.id().0);
                assert_eq!(cpu.load_u64(va).unwrap_err().kind, FaultKind::NotPresent);
                assert_eq!(mmu.buddy().mem().page(f).refcount(), 0, "freed");
            }
        }
    });
}

/// CPU 1 cached `A`, then switched to another mm (leaving `A`'s cpumask but keeping its ASID
/// and entries) or went lazy; it comes back while CPU 0 unmaps `A` and frees the frame. Either
/// CPU 0 sees it in the cpumask (or not lazy) and IPIs it, or it sees the new `tlb_gen` and
/// flushes: it never loads the freed frame.
fn come_back_model(lazy: bool, regress: Regressions) {
    let (mmu, mut cpus, mm, frame) = setup(2, regress);
    let mut back = cpus.pop().unwrap();
    let mut unmapper = cpus.pop().unwrap();
    let other = Mm::new(&mmu, CpuId(0)).unwrap();
    back.switch_mm(&mm);
    back.load_u64(A).unwrap();
    if lazy {
        back.enter_lazy();
    } else {
        back.switch_mm(&other);
    }
    let done = Arc::new(AtomicUsize::new(0));
    let (mm0, done0, mmu0) = (mm.clone(), done.clone(), mmu.clone());
    let t = thread::spawn(move || {
        assert_eq!(unmap(&mut unmapper, &mm0, A), 1);
        finished(&mmu0, &done0, &[1]);
    });
    back.switch_mm(&mm);
    thread::yield_now(); // let the unmap run between the switch and the load
    check_load(&mut back, A, frame);
    serve_until(&mut back, &done, 1);
    assert_eq!(back.load_u64(A).unwrap_err().kind, FaultKind::NotPresent);
    t.join().unwrap();
}

#[test]
fn shootdown_switch_back_vs_flush() {
    explore(|| come_back_model(false, Regressions::default()));
}

#[test]
fn shootdown_leave_lazy_vs_flush() {
    explore(|| come_back_model(true, Regressions::default()));
}

/// Without the fence between setting the cpumask bit and reading `tlb_gen`, both sides can
/// read the old value (store buffering): the unmapper sends no IPI, the returning CPU does not
/// flush, and it loads the freed frame.
#[test]
fn shootdown_switch_back_without_the_fence_is_caught() {
    assert!(caught(
        || come_back_model(
            false,
            Regressions {
                switch_mm_without_fence: true,
                ..Regressions::default()
            }
        ),
        STALE_LOAD
    ));
}
