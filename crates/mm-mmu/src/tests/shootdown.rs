//! Flushes, shootdowns, `mmu_gather`, reclaim batches and free-after-flush, on one CPU and on
//! real threads.

use super::fixture::{frame_of, machine, mm};
use crate::flush::{Cover, FlushCompleted, PendingFree, FLUSH_ALL};
use crate::mm::Regressions;
use crate::{FaultKind, IpiKick, Mm, Mmu, MmuConfig, MmuCpu, MmuGather, Prot, Pte, TlbBatch};
use mm_buddy::Frame;
use mm_sync::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use mm_sync::sync::Arc;
use mm_sync::{hint, thread};
use mm_types::{CpuId, Gfp, Order, Pfn, SwapEntry, VirtAddr, PAGE_SIZE};

const BASE: u64 = 0x2000_0000;

fn page(i: u64) -> VirtAddr {
    VirtAddr(BASE + i * PAGE_SIZE as u64)
}

fn alloc(mm: &Mm) -> Pfn {
    mm.mmu()
        .buddy()
        .alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL | Gfp::ZERO)
        .expect("test RAM")
        .into_raw()
        .0
}

fn map_pages(mm: &Mm, cpu: &mut MmuCpu, n: u64) -> Vec<Pfn> {
    (0..n)
        .map(|i| {
            let pfn = alloc(mm);
            mm.map(cpu, page(i), pfn, Prot::RW).unwrap();
            pfn
        })
        .collect()
}

fn free_pages(mmu: &Mmu) -> u64 {
    mmu.buddy().nr_free_pages() + mmu.buddy().pcp_pages()
}

/// A CPU thread: loads `pages` pages of `mm` (so its TLB caches them), then handles IPIs
/// until `stop`, and hands its MMU state back.
fn spawn_cpu(
    mut cpu: MmuCpu,
    mm: Arc<Mm>,
    pages: u64,
    warm: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<MmuCpu> {
    thread::spawn(move || {
        cpu.switch_mm(&mm);
        for i in 0..pages {
            cpu.load_u64(page(i)).unwrap();
        }
        warm.fetch_add(1, Ordering::Release);
        while !stop.load(Ordering::Acquire) {
            cpu.handle_ipis();
            hint::spin_loop();
            thread::yield_now();
        }
        cpu.handle_ipis();
        cpu
    })
}

fn wait_for(warm: &AtomicU64, n: u64, cpu: &mut MmuCpu) {
    cpu.spin_until(|| (warm.load(Ordering::Acquire) >= n).then_some(()));
}

#[test]
fn range_flushes_of_33_pages_go_page_by_page_and_34_flush_everything() {
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(2), 512);
    let mut cpu1 = cpus.pop().unwrap();
    let mut cpu0 = cpus.pop().unwrap();
    let mm = mm(&mmu);
    map_pages(&mm, &mut cpu0, 40);
    cpu0.switch_mm(&mm);
    let load_all = |cpu: &mut MmuCpu| {
        for i in 0..40 {
            cpu.load_u64(page(i)).unwrap();
        }
    };

    // Locally: 33 pages are 33 INVLPGs, pages outside the range stay cached.
    load_all(&mut cpu0);
    let s = cpu0.stats();
    let done = mm.flush_tlb_range(&mut cpu0, page(0), page(33)).unwrap();
    assert!(!done.is_full());
    assert_eq!(cpu0.stats().page_flushes, s.page_flushes + 33);
    assert_eq!(cpu0.stats().full_flushes, s.full_flushes);
    assert!(cpu0.tlb_probe(page(32)).is_none());
    assert!(cpu0.tlb_probe(page(33)).is_some());
    // 34 pages exceed tlb_single_page_flush_ceiling: one full flush.
    load_all(&mut cpu0);
    let s = cpu0.stats();
    let done = mm.flush_tlb_range(&mut cpu0, page(0), page(34)).unwrap();
    assert!(done.is_full());
    assert_eq!(cpu0.stats().page_flushes, s.page_flushes);
    assert_eq!(cpu0.stats().full_flushes, s.full_flushes + 1);
    assert!(cpu0.tlb_probe(page(39)).is_none());

    // Remotely, through IPIs, the same choice.
    let warm = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let h = spawn_cpu(cpu1, mm.clone(), 40, warm.clone(), stop.clone());
    wait_for(&warm, 1, &mut cpu0);
    mm.flush_tlb_range(&mut cpu0, page(0), page(33)).unwrap();
    mm.flush_tlb_range(&mut cpu0, page(0), page(34)).unwrap();
    stop.store(true, Ordering::Release);
    cpu1 = h.join().unwrap();
    let s1 = cpu1.stats();
    assert_eq!(s1.ipis_received, 2);
    assert_eq!(s1.page_flushes, 33);
    assert_eq!(
        s1.full_flushes, 2,
        "one on switch_mm (new ASID), one for 34 pages"
    );
    assert!(cpu1.tlb_probe(page(39)).is_none());
    assert_eq!(cpu0.stats().ipis_sent, 2);
    assert_eq!(mmu.tlb_shootdowns(CpuId(1)), 2);
    assert_eq!(mmu.tlb_shootdowns(CpuId(0)), 0);
    drop(cpu1);
    cpu0.leave_mm();
    mm.exit_mmap(&mut cpu0, frame_of);
}

#[test]
fn gathered_frames_are_freed_only_by_the_covering_flush() {
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(1), 512);
    let cpu = &mut cpus[0];
    let mm = mm(&mmu);
    let before_map = free_pages(&mmu);
    let pfns = map_pages(&mm, cpu, 8);
    assert_eq!(mmu.nr_pagetables(), 4);
    assert_eq!(free_pages(&mmu), before_map - 8 - 3);
    cpu.switch_mm(&mm);
    for i in 0..8 {
        cpu.store_u64(page(i), i).unwrap();
    }

    let mut tlb = MmuGather::new(&mm);
    let mut seen = Vec::new();
    let n = mm
        .zap_range(cpu, page(2), page(6), &mut tlb, |va, pte| {
            seen.push((va, pte.pfn(), pte.is_dirty()));
            frame_of(va, pte)
        })
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(
        seen,
        (2..6)
            .map(|i| (page(i), pfns[i as usize], true))
            .collect::<Vec<_>>(),
        "the callback sees the old entries, dirty bit included"
    );
    // Cleared but not flushed: the TLB still reaches the frames, and they are not free.
    assert_eq!(tlb.pending(), 4);
    assert_eq!(
        cpu.load_u64(page(3)),
        Ok(3),
        "stale translation until the flush"
    );
    assert_eq!(free_pages(&mmu), before_map - 8 - 3);
    assert_eq!(tlb.finish(cpu), 4);
    assert_eq!(free_pages(&mmu), before_map - 4 - 3);
    assert_eq!(
        cpu.load_u64(page(3)).unwrap_err().kind,
        FaultKind::NotPresent
    );
    assert_eq!(cpu.load_u64(page(6)), Ok(6));

    // Tables go too once their whole span is empty and covered.
    let mut tlb = MmuGather::new(&mm);
    mm.zap_range(cpu, page(0), page(8), &mut tlb, frame_of)
        .unwrap();
    let span = VirtAddr(BASE & !((1 << 39) - 1));
    let tables = mm
        .free_pgtables(cpu, span, VirtAddr(span.0 + (1 << 39)), &mut tlb)
        .unwrap();
    assert_eq!(tables, 3, "PUD, PMD and PTE table");
    assert_eq!(mmu.nr_pagetables(), 4, "counted until freed");
    assert_eq!(tlb.finish(cpu), 4 + 3);
    assert_eq!(mmu.nr_pagetables(), 1);
    assert_eq!(mm.pgtables_bytes(), PAGE_SIZE as u64);
    assert_eq!(free_pages(&mmu), before_map);
    mm.check_invariants(cpu).unwrap();
    cpu.leave_mm();
}

#[test]
fn a_pending_free_is_released_only_by_a_flush_that_covers_it() {
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(1), 64);
    let cpu = CpuId(0);
    let _ = &mut cpus;
    let frame = || {
        mmu.buddy()
            .alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL)
            .unwrap()
    };
    let cover = Cover::Mm {
        ctx_id: 7,
        gen: 10,
        start: 100,
        end: 110,
        tables: false,
    };
    let mut pending = PendingFree::new(cover, vec![frame(), frame()]);
    let not_covering = [
        FlushCompleted::mm(8, 11, 0, FLUSH_ALL, true), // another mm
        FlushCompleted::mm(7, 10, 0, FLUSH_ALL, true), // started before the clears
        FlushCompleted::mm(7, 11, 101, 110, false),    // misses vpn 100
        FlushCompleted::mm(7, 11, 100, 109, false),    // misses vpn 109
        FlushCompleted::batch(1, 1),                   // a reclaim batch
    ];
    for done in not_covering {
        pending = pending
            .release(&done, &mmu, cpu)
            .expect_err("must not be released");
    }
    let free = free_pages(&mmu);
    assert_eq!(
        pending
            .release(&FlushCompleted::mm(7, 11, 100, 110, false), &mmu, cpu)
            .unwrap(),
        2
    );
    assert_eq!(free_pages(&mmu), free + 2);

    let tables = PendingFree::new(
        Cover::Mm {
            ctx_id: 7,
            gen: 10,
            start: 100,
            end: 110,
            tables: true,
        },
        vec![frame()],
    );
    let tables = tables
        .release(&FlushCompleted::mm(7, 11, 0, FLUSH_ALL, false), &mmu, cpu)
        .expect_err("freed tables need a flush that reached lazy CPUs");
    assert_eq!(
        tables
            .release(&FlushCompleted::mm(7, 11, 0, FLUSH_ALL, true), &mmu, cpu)
            .unwrap(),
        1
    );
    let batch = PendingFree::new(Cover::Batch { id: 3, epoch: 4 }, vec![frame()]);
    let batch = batch
        .release(&FlushCompleted::batch(3, 4), &mmu, cpu)
        .expect_err("an earlier flush of the batch");
    assert_eq!(
        batch
            .release(&FlushCompleted::batch(3, 5), &mmu, cpu)
            .unwrap(),
        1
    );
}

#[test]
fn mprotect_write_protects_and_flushes_before_returning() {
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(1), 256);
    let cpu = &mut cpus[0];
    let mm = mm(&mmu);
    map_pages(&mm, cpu, 4);
    cpu.switch_mm(&mm);
    for i in 0..4 {
        cpu.store_u64(page(i), 1).unwrap();
    }
    assert_eq!(cpu.tlb_probe(page(1)).map(|t| t.1), Some(true));
    let s = cpu.stats();
    assert_eq!(
        mm.change_protection(cpu, page(0), page(3), Prot::READ),
        Ok(3)
    );
    assert_eq!(cpu.stats().page_flushes, s.page_flushes + 3);
    assert_eq!(
        cpu.store_u64(page(1), 2).unwrap_err().kind,
        FaultKind::WriteProtect
    );
    assert_eq!(cpu.load_u64(page(1)), Ok(1));
    cpu.store_u64(page(3), 2).unwrap();
    let e = mm.lookup(cpu, page(1)).unwrap();
    assert!(e.is_dirty() && e.is_young() && !e.is_writable(), "{e:?}");
    // Re-protecting with the same rights changes nothing and flushes nothing.
    let s = cpu.stats();
    assert_eq!(
        mm.change_protection(cpu, page(0), page(3), Prot::READ),
        Ok(0)
    );
    assert_eq!(cpu.stats().shootdowns, s.shootdowns);
    // PROT_NONE and back keeps the frame and the data.
    mm.change_protection(cpu, page(0), page(1), Prot::NONE)
        .unwrap();
    assert_eq!(cpu.load_u64(page(0)).unwrap_err().kind, FaultKind::ProtNone);
    mm.change_protection(cpu, page(0), page(1), Prot::RW)
        .unwrap();
    assert_eq!(cpu.load_u64(page(0)), Ok(1));
    cpu.leave_mm();
    mm.exit_mmap(cpu, frame_of);
}

#[test]
fn mremap_moves_the_translation_and_flushes_the_old_address() {
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(1), 256);
    let cpu = &mut cpus[0];
    let mm = mm(&mmu);
    let pfns = map_pages(&mm, cpu, 1);
    cpu.switch_mm(&mm);
    cpu.store_u64(page(0), 77).unwrap();
    let to = VirtAddr(0x7000_0000_0000);
    let moved = mm.move_pte(cpu, page(0), to).unwrap();
    assert_eq!(moved.pfn(), pfns[0]);
    assert!(moved.is_dirty());
    assert_eq!(
        cpu.load_u64(page(0)).unwrap_err().kind,
        FaultKind::NotPresent
    );
    assert_eq!(cpu.load_u64(to), Ok(77));
    assert_eq!(
        mm.move_pte(cpu, page(0), to),
        Ok(Pte::NONE),
        "nothing left to move"
    );
    assert!(matches!(mm.move_pte(cpu, page(5), to), Ok(Pte::NONE)));
    cpu.leave_mm();
    mm.exit_mmap(cpu, frame_of);
}

#[test]
fn reclaim_batches_defer_the_flush_and_mprotect_flushes_a_pending_batch() {
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(1), 256);
    let cpu = &mut cpus[0];
    let mm = mm(&mmu);
    let pfns = map_pages(&mm, cpu, 2);
    cpu.switch_mm(&mm);
    cpu.store_u64(page(0), 5).unwrap();
    cpu.store_u64(page(1), 6).unwrap();
    let mut batch = TlbBatch::new(&mmu);
    let e = SwapEntry { kind: 0, offset: 9 };
    let old = mm
        .try_to_unmap(cpu, page(0), Pte::swap(e), &mut batch)
        .unwrap();
    assert_eq!(old.pfn(), pfns[0]);
    assert!(batch.is_pending());
    assert_eq!(mm.lookup(cpu, page(0)).unwrap(), Pte::swap(e));
    // Until the batch flushes, the old writable translation is still cached.
    assert_eq!(cpu.tlb_probe(page(0)).map(|t| t.1), Some(true));
    // mprotect sees an empty PTE at page 0 but must not trust it: it flushes the batch's
    // pending generation first (3ea277194daa).
    mm.change_protection(cpu, page(0), page(1), Prot::READ)
        .unwrap();
    assert_eq!(cpu.tlb_probe(page(0)), None);
    assert_eq!(
        cpu.store_u64(page(0), 1).unwrap_err().kind,
        FaultKind::Swap(e)
    );
    // A second mprotect finds nothing pending.
    let s = cpu.stats();
    mm.change_protection(cpu, page(0), page(1), Prot::READ)
        .unwrap();
    assert_eq!(cpu.stats().shootdowns, s.shootdowns);

    mm.try_to_unmap(cpu, page(1), Pte::NONE, &mut batch)
        .unwrap();
    batch.defer_free(Frame::from_raw(pfns[0], Order::ZERO));
    batch.defer_free(Frame::from_raw(pfns[1], Order::ZERO));
    let free = free_pages(&mmu);
    assert_eq!(batch.flush(cpu), 2);
    assert!(!batch.is_pending());
    assert_eq!(free_pages(&mmu), free + 2);
    assert_eq!(
        cpu.load_u64(page(1)).unwrap_err().kind,
        FaultKind::NotPresent
    );
    // Not present: nothing to unmap, nothing pending.
    assert_eq!(
        mm.try_to_unmap(cpu, page(1), Pte::NONE, &mut batch),
        Ok(Pte::NONE)
    );
    assert!(!batch.is_pending());
    cpu.leave_mm();
    mm.exit_mmap(cpu, |_, _| None);
}

#[test]
fn without_the_batched_pending_flush_mprotect_leaves_a_stale_writable_entry() {
    // B3 in one thread, deterministic: the historical code path lets the write through.
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(1), 256);
    let cpu = &mut cpus[0];
    let regress = Regressions {
        skip_batched_pending_flush: true,
        ..Regressions::default()
    };
    let mm = Mm::with_regressions(&mmu, CpuId(0), regress).unwrap();
    let pfns = map_pages(&mm, cpu, 1);
    cpu.switch_mm(&mm);
    cpu.store_u64(page(0), 5).unwrap();
    let mut batch = TlbBatch::new(&mmu);
    mm.try_to_unmap(cpu, page(0), Pte::NONE, &mut batch)
        .unwrap();
    mm.change_protection(cpu, page(0), page(1), Prot::READ)
        .unwrap();
    assert_eq!(
        cpu.store_u64(page(0), 6),
        Ok(()),
        "the stale entry still writes"
    );
    batch.defer_free(Frame::from_raw(pfns[0], Order::ZERO));
    batch.flush(cpu);
    assert_eq!(
        cpu.store_u64(page(0), 7).unwrap_err().kind,
        FaultKind::NotPresent
    );
    cpu.leave_mm();
}

#[test]
fn lazy_cpus_are_skipped_unless_tables_are_freed_and_catch_up_on_return() {
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(2), 256);
    let mut cpu1 = cpus.pop().unwrap();
    let mut cpu0 = cpus.pop().unwrap();
    let mm = mm(&mmu);
    map_pages(&mm, &mut cpu0, 2);
    cpu1.switch_mm(&mm);
    cpu1.load_u64(page(0)).unwrap();
    cpu1.enter_lazy();
    assert_eq!(
        mm.cpumask_cpus(),
        [CpuId(1)],
        "a lazy CPU stays in the cpumask"
    );
    // No IPI for a lazy CPU: this returns without anyone handling CPU 1's mailbox.
    mm.flush_tlb_range(&mut cpu0, page(0), page(1)).unwrap();
    assert_eq!(cpu0.stats().ipis_sent, 0);
    assert_eq!(cpu1.handle_ipis(), 0);
    assert!(
        cpu1.tlb_probe(page(0)).is_some(),
        "stale while lazy, unreachable"
    );
    cpu1.switch_mm(&mm);
    assert!(
        cpu1.tlb_probe(page(0)).is_none(),
        "caught up on leaving lazy mode"
    );
    cpu1.load_u64(page(0)).unwrap();

    // Freeing page tables must reach the lazy CPU, which then drops the mm.
    cpu1.enter_lazy();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let h = thread::spawn(move || {
        while !stop2.load(Ordering::Acquire) {
            cpu1.handle_ipis();
            thread::yield_now();
        }
        cpu1
    });
    let mut tlb = MmuGather::new(&mm);
    mm.zap_range(&mut cpu0, page(0), page(2), &mut tlb, frame_of)
        .unwrap();
    mm.free_pgtables(&mut cpu0, VirtAddr(0), VirtAddr(1 << 47), &mut tlb)
        .unwrap();
    tlb.finish(&mut cpu0);
    stop.store(true, Ordering::Release);
    let cpu1 = h.join().unwrap();
    assert_eq!(cpu1.stats().ipis_received, 1);
    assert!(cpu1.loaded_mm().is_none() && !cpu1.is_lazy());
    assert!(mm.cpumask_cpus().is_empty());
}

#[test]
fn cpus_shooting_each_other_down_all_finish() {
    const CPUS: u32 = 4;
    const ROUNDS: u64 = 300;
    let (mmu, cpus) = machine(MmuConfig::x86_64(CPUS), 1024);
    let mm = mm(&mmu);
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = cpus
        .into_iter()
        .map(|mut cpu| {
            let (mm, done) = (mm.clone(), done.clone());
            thread::spawn(move || {
                let me = cpu.id().0 as u64;
                let va = page(me);
                cpu.switch_mm(&mm);
                for round in 0..ROUNDS {
                    let pfn = alloc(&mm);
                    mm.map(&mut cpu, va, pfn, Prot::RW).unwrap();
                    cpu.store_u64(va, round).unwrap();
                    assert_eq!(cpu.load_u64(va), Ok(round));
                    // Every CPU reads every page, so every unmap needs everyone's ack.
                    for other in 0..CPUS as u64 {
                        let _ = cpu.load_u64(page(other));
                    }
                    let mut tlb = MmuGather::new(&mm);
                    mm.zap_range(&mut cpu, va, VirtAddr(va.0 + 4096), &mut tlb, frame_of)
                        .unwrap();
                    assert_eq!(tlb.finish(&mut cpu), 1);
                    assert_eq!(cpu.load_u64(va).unwrap_err().kind, FaultKind::NotPresent);
                }
                done.fetch_add(1, Ordering::AcqRel);
                cpu.spin_until(|| (done.load(Ordering::Acquire) == CPUS as u64).then_some(()));
                cpu.stats()
            })
        })
        .collect();
    let mut received = 0;
    for h in handles {
        let s = h.join().unwrap();
        assert_eq!(s.shootdowns, ROUNDS);
        received += s.ipis_received;
    }
    assert!(received > 0, "the CPUs did shoot each other down");
}

#[test]
fn a_cpu_waiting_for_the_page_table_lock_still_acknowledges() {
    // CPU 0 moves PTEs, flushing under the page-table lock; CPU 1 maps and unmaps in the same
    // mm, spinning on that lock. Both must keep finishing.
    const ROUNDS: u64 = 200;
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(2), 1024);
    let mut cpu1 = cpus.pop().unwrap();
    let mut cpu0 = cpus.pop().unwrap();
    let mm = mm(&mmu);
    // Both in the cpumask from the start: every flush of one needs the other's ack.
    cpu0.switch_mm(&mm);
    cpu1.switch_mm(&mm);
    let done = Arc::new(AtomicU64::new(0));
    let (mm1, done1) = (mm.clone(), done.clone());
    let h = thread::spawn(move || {
        for _ in 0..ROUNDS {
            let pfn = alloc(&mm1);
            mm1.map(&mut cpu1, page(100), pfn, Prot::RW).unwrap();
            cpu1.store_u64(page(100), 1).unwrap();
            let _ = cpu1.load_u64(page(0));
            let _ = cpu1.load_u64(page(1));
            let mut tlb = MmuGather::new(&mm1);
            mm1.zap_range(&mut cpu1, page(100), page(101), &mut tlb, frame_of)
                .unwrap();
            tlb.finish(&mut cpu1);
        }
        // Still in the cpumask: keep acknowledging until CPU 0 is done too.
        done1.fetch_add(1, Ordering::AcqRel);
        cpu1.spin_until(|| (done1.load(Ordering::Acquire) == 2).then_some(()));
        cpu1
    });
    let pfn = alloc(&mm);
    mm.map(&mut cpu0, page(0), pfn, Prot::RW).unwrap();
    cpu0.store_u64(page(0), 42).unwrap();
    let mut at = 0;
    for _ in 0..ROUNDS {
        mm.move_pte(&mut cpu0, page(at), page(1 - at)).unwrap();
        at = 1 - at;
        assert_eq!(cpu0.load_u64(page(at)), Ok(42));
    }
    done.fetch_add(1, Ordering::AcqRel);
    cpu0.spin_until(|| (done.load(Ordering::Acquire) == 2).then_some(()));
    let cpu1 = h.join().unwrap();
    assert_eq!(cpu0.stats().shootdowns, ROUNDS);
    assert_eq!(cpu1.stats().shootdowns, ROUNDS);
    assert_eq!(cpu0.stats().ipis_received, ROUNDS);
    assert_eq!(cpu1.stats().ipis_received, ROUNDS);
    drop(cpu1);
    cpu0.leave_mm();
    mm.exit_mmap(&mut cpu0, frame_of);
}

#[test]
fn dropping_a_cpu_retires_it_without_blocking_shootdowns() {
    // CPU 1 has the mm loaded and stops handling IPIs; dropping its MmuCpu (as a CPU thread
    // does when it exits) acknowledges what is queued for it and takes it out of the cpumask.
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(2), 64);
    let mut cpu1 = cpus.pop().unwrap();
    let mut cpu0 = cpus.pop().unwrap();
    let mm = mm(&mmu);
    cpu1.switch_mm(&mm);
    let mm0 = mm.clone();
    let h = thread::spawn(move || {
        for _ in 0..100 {
            mm0.flush_tlb_mm(&mut cpu0);
        }
        cpu0
    });
    // The first flush has bumped the generation: its IPI to CPU 1 is queued or about to be.
    while mm.tlb_gen() < 1 {
        thread::yield_now();
    }
    drop(cpu1);
    let cpu0 = h.join().unwrap();
    assert_eq!(cpu0.stats().shootdowns, 100);
    assert!(
        cpu0.stats().ipis_sent <= 1,
        "after the drop nobody is left to IPI"
    );
    assert!(mm.cpumask_cpus().is_empty());
}

#[test]
fn a_shootdown_nobody_acknowledges_is_reported_in_debug_builds() {
    if !cfg!(debug_assertions) {
        return;
    }
    // One thread driving two CPUs that both have the mm loaded breaks the protocol: CPU 1
    // never handles CPU 0's IPI. The wait reports it instead of hanging.
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(2), 64);
    let mm = mm(&mmu);
    cpus[0].switch_mm(&mm);
    cpus[1].switch_mm(&mm);
    let cpu0 = &mut cpus[0];
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mm.flush_tlb_mm(cpu0)));
    let msg = r
        .expect_err("the wait must give up")
        .downcast::<String>()
        .unwrap();
    assert!(msg.contains("must keep handling its IPIs"), "{msg}");
    assert!(msg.contains("CPU 0") && msg.contains("{1}"), "{msg}");
}

#[test]
fn a_daemon_flushes_reclaim_batches_and_kicks_the_target() {
    #[derive(Debug)]
    struct Count(Arc<AtomicU64>);
    impl IpiKick for Count {
        fn kick(&self, cpu: CpuId) {
            assert_eq!(cpu, CpuId(0));
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let kicks = Arc::new(AtomicU64::new(0));
    let buddy = super::fixture::buddy(1, 256);
    let (mmu, mut cpus) =
        Mmu::with_kick(MmuConfig::x86_64(1), buddy, Box::new(Count(kicks.clone()))).unwrap();
    let mut cpu0 = cpus.pop().unwrap();
    let mm = mm(&mmu);
    let pfns = map_pages(&mm, &mut cpu0, 1);
    let warm = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let h = spawn_cpu(cpu0, mm.clone(), 1, warm.clone(), stop.clone());
    let mut kswapd = Mmu::daemon(&mmu, CpuId(0));
    wait_for(&warm, 1, &mut kswapd);
    let mut batch = TlbBatch::new(&mmu);
    mm.try_to_unmap(&mut kswapd, page(0), Pte::NONE, &mut batch)
        .unwrap();
    batch.defer_free(Frame::from_raw(pfns[0], Order::ZERO));
    assert_eq!(batch.flush(&mut kswapd), 1);
    assert_eq!(kicks.load(Ordering::Relaxed), 1);
    stop.store(true, Ordering::Release);
    let mut cpu0 = h.join().unwrap();
    assert_eq!(cpu0.stats().ipis_received, 1);
    assert!(cpu0.tlb_probe(page(0)).is_none());
    assert_eq!(
        cpu0.load_u64(page(0)).unwrap_err().kind,
        FaultKind::NotPresent
    );
    assert_eq!(kswapd.stats().ipis_sent, 1);
}
