//! Shared pieces of the loom models: a small machine, a user CPU that keeps loading through its
//! TLB, and the check that no load ever reads a freed frame.

use super::fixture::machine;
use crate::mm::Regressions;
use crate::{FaultKind, Mm, Mmu, MmuConfig, MmuCpu, Prot, TlbConfig, TlbGeometry};
use mm_sync::sync::atomic::{AtomicUsize, Ordering};
use mm_sync::sync::Arc;
use mm_sync::thread;
use mm_types::{CpuId, Gfp, Order, Pfn, VirtAddr};

/// The value the mapped frame holds while it is mapped.
pub(crate) const OLD: u64 = 0x01d0_01d0_01d0_01d0;
/// The page the models unmap, move or write-protect.
pub(crate) const A: VirtAddr = VirtAddr(0x40_0000);
/// Where mremap moves it.
pub(crate) const B: VirtAddr = VirtAddr(0x80_0000);

/// `nr_cpus` CPUs with tiny TLBs over 64 frames, and one mm mapping `A` to a frame holding
/// [`OLD`].
pub(crate) fn setup(nr_cpus: u32, regress: Regressions) -> (Arc<Mmu>, Vec<MmuCpu>, Arc<Mm>, Pfn) {
    let mut cfg = MmuConfig::x86_64(nr_cpus);
    let g = |entries, ways| TlbGeometry { entries, ways };
    cfg.tlb = TlbConfig {
        l1: g(4, 2),
        l2: g(8, 2),
    };
    let (mmu, mut cpus) = machine(cfg, 64);
    let mm = Mm::with_regressions(&mmu, CpuId(0), regress).unwrap();
    let pfn = mmu
        .buddy()
        .alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL)
        .unwrap()
        .into_raw()
        .0;
    mmu.buddy().mem().write_u64(pfn.phys(), OLD).unwrap();
    mm.map(&mut cpus[0], A, pfn, Prot::RW).unwrap();
    (mmu, cpus, mm, pfn)
}

/// Loads `va` once: it either reads [`OLD`] from a frame that is still allocated, or faults
/// as not present. A load that succeeds while the frame is free went through a stale TLB
/// entry to a freed frame.
pub(crate) fn check_load(cpu: &mut MmuCpu, va: VirtAddr, frame: Pfn) {
    match cpu.load_u64(va) {
        Ok(v) => {
            let page = cpu.mmu().buddy().mem().page(frame);
            assert_ne!(
                page.refcount(),
                0,
                "CPU {} loaded {v:#x} from freed frame {frame:?} through a stale TLB entry",
                cpu.id().0
            );
            assert_eq!(v, OLD);
        }
        Err(f) => assert_eq!(f.kind, FaultKind::NotPresent, "{f}"),
    }
}

/// The user CPU's loop: load `va` and check it, then sleep until the next IPI, until `n`
/// other threads are [`finished`]; then a last load must fault.
///
/// Loads touch only per-CPU state and simulated RAM, which loom does not track, so each is
/// preceded by a yield: that is where other CPUs' steps interleave with this CPU's loads (a
/// CPU keeps executing between interrupts).
pub(crate) fn user_cpu(cpu: &mut MmuCpu, va: VirtAddr, frame: Pfn, done: &AtomicUsize, n: usize) {
    loop {
        thread::yield_now();
        check_load(cpu, va, frame);
        if done.load(Ordering::Acquire) == n {
            break;
        }
        cpu.wait_ipi();
    }
    assert_eq!(cpu.load_u64(va).unwrap_err().kind, FaultKind::NotPresent);
}

/// The tail of a CPU thread that may still be in a cpumask: it keeps acknowledging IPIs,
/// sleeping between them, until `n` threads are [`finished`].
pub(crate) fn serve_until(cpu: &mut MmuCpu, done: &AtomicUsize, n: usize) {
    while done.load(Ordering::Acquire) < n {
        cpu.wait_ipi();
    }
}

/// Counts this thread as done and wakes the CPUs that may be sleeping in [`serve_until`] or
/// [`user_cpu`] waiting for it.
pub(crate) fn finished(mmu: &Mmu, done: &AtomicUsize, wake: &[u32]) {
    done.fetch_add(1, Ordering::Release);
    for &c in wake {
        mmu.wake(CpuId(c));
    }
}

/// Executions explored so far by the running test (an untracked counter: loom does not see it).
static EXECUTIONS: mm_sync::untracked::AtomicUsize = mm_sync::untracked::AtomicUsize::new(0);

/// Runs `model` under loom, counting executions; returns how many ran.
pub(crate) fn explore(model: fn()) -> usize {
    let before = EXECUTIONS.load(mm_sync::untracked::Ordering::Relaxed);
    mm_sync::model(move || {
        EXECUTIONS.fetch_add(1, mm_sync::untracked::Ordering::Relaxed);
        model()
    });
    let n = EXECUTIONS.load(mm_sync::untracked::Ordering::Relaxed) - before;
    eprintln!("explored {n} executions");
    n
}

/// Runs `model` and returns true if some interleaving failed with a message containing
/// `expect` (and not, say, loom's branch limit).
pub(crate) fn caught(model: fn(), expect: &str) -> bool {
    let Err(payload) = std::panic::catch_unwind(|| mm_sync::model(model)) else {
        return false;
    };
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    assert!(msg.contains(expect), "the model failed another way: {msg}");
    true
}

/// What [`check_load`] reports when a CPU reads a freed frame.
pub(crate) const STALE_LOAD: &str = "through a stale TLB entry";
