//! fork: copy-on-write integrity over generations, shared mappings, rmap, and isolation
//! between processes that reuse each other's frames.

use super::fixture::{free_pages, machine, process, TestFile};
use crate::{AccessError, AddressSpace, MapFlags, ProtFlags, SegvCode, Signal, VmFileRef};
use mm_types::{Pid, VirtAddr};
use std::ops::ControlFlow;

const P: u64 = 4096;
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);

fn tag(pid: u32, gen: u64, i: u64) -> u64 {
    (u64::from(pid) << 40) | (gen << 32) | i
}

#[test]
fn parent_and_children_keep_their_own_values_over_generations_of_forks() {
    const PAGES: u64 = 2000;
    const GENS: u64 = 4;
    let mut m = machine(2, 1 << 16);
    let free0 = free_pages(&m.sys);
    let root = process(&mut m, 1);
    let base = root
        .mmap(
            &mut m.cpus[0],
            VirtAddr(0),
            PAGES * P,
            ProtFlags::RW,
            ANON,
            None,
        )
        .unwrap()
        .0;
    // Two words per page: one rewritten after each fork, one never (it stays shared).
    for i in 0..PAGES {
        m.cpus[0]
            .store_u64(&root, VirtAddr(base + i * P), tag(1, 0, i))
            .unwrap();
        m.cpus[0]
            .store_u64(&root, VirtAddr(base + i * P + 8), i)
            .unwrap();
    }
    let mut procs: Vec<(AddressSpace, Vec<u64>)> =
        vec![(root, (0..PAGES).map(|i| tag(1, 0, i)).collect())];
    let mut next_pid = 2;
    for gen in 1..=GENS {
        let mut children = Vec::new();
        for (p, vals) in &procs {
            let child = p.fork(m.cpu(0), Pid(next_pid)).unwrap();
            children.push((child, vals.clone()));
            next_pid += 1;
        }
        procs.extend(children);
        // Every process (on alternating CPUs) writes its own tag to 3 of 4 pages.
        for (k, (p, vals)) in procs.iter_mut().enumerate() {
            let c = m.cpu(k % 2);
            for i in (0..PAGES).filter(|i| i % 4 != 3) {
                let v = tag(p.pid().0, gen, i);
                c.store_u64(p, VirtAddr(base + i * P), v).unwrap();
                vals[i as usize] = v;
            }
        }
        for (k, (p, vals)) in procs.iter().enumerate() {
            let c = m.cpu((k + 1) % 2);
            for i in 0..PAGES {
                assert_eq!(
                    c.load_u64(p, VirtAddr(base + i * P)),
                    Ok(vals[i as usize]),
                    "pid {} page {i} gen {gen}",
                    p.pid()
                );
                assert_eq!(c.load_u64(p, VirtAddr(base + i * P + 8)), Ok(i));
            }
            p.check_invariants(c).unwrap();
        }
    }
    assert_eq!(procs.len(), 16);
    // Pages nobody wrote since the first fork are still one frame mapped by all 16.
    m.cpu(0);
    let c = &mut m.cpus[0];
    let pte = procs[0]
        .0
        .mm()
        .lookup(c.mmu(), VirtAddr(base + 3 * P))
        .unwrap();
    let mut seen = Vec::new();
    let hits = m.sys.rmap_walk(c.mmu(), pte.pfn(), |h| {
        seen.push(h.core.pid().0);
        ControlFlow::Continue(())
    });
    assert_eq!(hits, 16);
    seen.sort_unstable();
    assert_eq!(seen, (1..=16).collect::<Vec<_>>());
    assert_eq!(m.sys.buddy().mem().page(pte.pfn()).mapcount(), 16);
    assert!(
        c.events().pgreuse > 0,
        "the last writer of a COW page reuses it"
    );
    for (k, (p, _)) in procs.iter().enumerate() {
        p.exit(m.cpu(k % 2));
    }
    drop(procs);
    for c in &mut m.cpus {
        c.mmu().leave_mm();
    }
    assert_eq!(
        free_pages(&m.sys),
        free0,
        "every frame and page table is back"
    );
    assert_eq!(m.sys.rmap_lists(), (0, 0));
}

#[test]
fn shared_anonymous_memory_stays_shared_across_fork() {
    let mut m = machine(1, 4096);
    let free0 = free_pages(&m.sys);
    let parent = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let sh = parent
        .mmap(
            c,
            VirtAddr(0),
            4 * P,
            ProtFlags::RW,
            MapFlags::SHARED | MapFlags::ANONYMOUS,
            None,
        )
        .unwrap();
    c.store_u64(&parent, sh, 1).unwrap();
    let child = parent.fork(c, Pid(2)).unwrap();
    assert_eq!(c.load_u64(&child, sh), Ok(1));
    c.store_u64(&child, VirtAddr(sh.0 + P), 22).unwrap();
    assert_eq!(c.load_u64(&parent, VirtAddr(sh.0 + P)), Ok(22));
    c.store_u64(&parent, sh, 11).unwrap();
    assert_eq!(c.load_u64(&child, sh), Ok(11));
    assert_eq!(parent.rss().shmem, 2);
    assert_eq!(child.rss().shmem, 2);
    // The object outlives the parent's mapping while the child maps it.
    parent.munmap(c, sh, 4 * P).unwrap();
    assert_eq!(c.load_u64(&child, VirtAddr(sh.0 + P)), Ok(22));
    // DONTNEED on shared memory drops the mapping, not the data.
    child.madvise(c, sh, 4 * P, 4).unwrap();
    assert_eq!(c.load_u64(&child, sh), Ok(11));
    let maps = crate::proc_maps(&child, c);
    assert!(
        maps.lines()
            .any(|l| l.contains(" rw-s 00000000 00:01 ") && l.ends_with(" /dev/zero (deleted)")),
        "{maps}"
    );
    parent.exit(c);
    child.exit(c);
    drop((parent, child));
    m.cpus[0].mmu().leave_mm();
    assert_eq!(free_pages(&m.sys), free0);
}

#[test]
fn rmap_follows_cow_mremap_and_file_mappings() {
    let mut m = machine(1, 4096);
    let parent = process(&mut m, 1);
    let file = TestFile::new(&m.sys, 0xf11e, 2, true, |i| i);
    let fref = VmFileRef::new(file.clone());
    let c = &mut m.cpus[0];
    let a = parent
        .mmap(c, VirtAddr(0), 2 * P, ProtFlags::RW, ANON, None)
        .unwrap();
    c.store_u64(&parent, a, 5).unwrap();
    let f = parent
        .mmap(
            c,
            VirtAddr(0),
            2 * P,
            ProtFlags::READ,
            MapFlags::SHARED,
            Some((&fref, 0)),
        )
        .unwrap();
    assert_eq!(c.load_u64(&parent, VirtAddr(f.0 + P)), Ok(1));
    let child = parent.fork(c, Pid(2)).unwrap();
    assert_eq!(c.load_u64(&child, VirtAddr(f.0 + P)), Ok(1));
    let walk = |c: &mut crate::CpuCtx, pfn| {
        let mut hits = Vec::new();
        m.sys.rmap_walk(c.mmu(), pfn, |h| {
            hits.push((h.core.pid().0, h.addr));
            ControlFlow::Continue(())
        });
        hits.sort();
        hits
    };
    let anon = parent.mm().lookup(c.mmu(), a).unwrap().pfn();
    assert_eq!(walk(c, anon), vec![(1, a), (2, a)]);
    assert_eq!(
        walk(c, file.pfn(1)),
        vec![(1, VirtAddr(f.0 + P)), (2, VirtAddr(f.0 + P))]
    );
    // The child's write copies: the old page is the parent's alone, the copy the child's.
    c.store_u64(&child, a, 6).unwrap();
    let copy = child.mm().lookup(c.mmu(), a).unwrap().pfn();
    assert_eq!(walk(c, anon), vec![(1, a)]);
    assert_eq!(walk(c, copy), vec![(2, a)]);
    // mremap moves the mapping; rmap finds the page at its new address.
    let moved = parent
        .mremap(
            c,
            a,
            2 * P,
            2 * P,
            crate::MremapFlags::MAYMOVE | crate::MremapFlags::FIXED,
            VirtAddr(0x7000_0000),
        )
        .unwrap();
    assert_eq!(walk(c, anon), vec![(1, moved)]);
    assert_eq!(c.load_u64(&parent, moved), Ok(5));
    parent.check_invariants(c).unwrap();
    child.check_invariants(c).unwrap();
    parent.exit(c);
    child.exit(c);
    assert_eq!(walk(c, file.pfn(1)), vec![]);
    file.evict();
}

#[test]
fn dontcopy_and_wipeonfork_and_locks_are_not_inherited() {
    let mut m = machine(1, 4096);
    let parent = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let a = parent
        .mmap(c, VirtAddr(0), P, ProtFlags::RW, ANON, None)
        .unwrap();
    let b = parent
        .mmap(
            c,
            VirtAddr(0x4000_0000),
            P,
            ProtFlags::RW,
            ANON | MapFlags::FIXED,
            None,
        )
        .unwrap();
    c.store_u64(&parent, a, 1).unwrap();
    c.store_u64(&parent, b, 2).unwrap();
    parent.madvise(c, a, P, 10).unwrap();
    parent.mlock(c, b, P).unwrap();
    let child = parent.fork(c, Pid(2)).unwrap();
    assert_eq!(
        c.load_u64(&child, a),
        Err(AccessError::Signal(Signal::Segv {
            addr: a,
            code: SegvCode::MapErr
        }))
    );
    assert_eq!(c.load_u64(&child, b), Ok(2));
    assert!(crate::proc_status(&child).contains("VmLck:\t       0 kB\n"));
    assert!(crate::proc_status(&parent).contains("VmLck:\t       4 kB\n"));
    child.check_invariants(c).unwrap();
    parent.exit(c);
    child.exit(c);
}

/// A process never reads another's data: not through frames the other freed and this one
/// got, not through a TLB entry left from before an unmap, not after switching CPUs back
/// and forth.
#[test]
fn processes_never_see_each_others_data() {
    let mut m = machine(2, 1 << 14);
    let procs: Vec<AddressSpace> = (1..=4).map(|pid| process(&mut m, pid)).collect();
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    const PAGES: u64 = 64;
    let base = 0x2000_0000;
    let mut mapped = [false; 4];
    let mut vals = vec![vec![0u64; PAGES as usize]; 4];
    for _ in 0..3000 {
        let k = (next() % 4) as usize;
        let cpu = (next() % 2) as usize;
        let p = &procs[k];
        let c = m.cpu(cpu);
        let i = next() % PAGES;
        let addr = VirtAddr(base + i * P);
        match next() % 10 {
            0 => {
                // Unmap everything, after loading through the TLB so an entry is cached.
                if mapped[k] {
                    let _ = c.load_u64(p, addr);
                    p.munmap(c, VirtAddr(base), PAGES * P).unwrap();
                    mapped[k] = false;
                    vals[k].fill(0);
                }
            }
            1 if !mapped[k] => {
                p.mmap(
                    c,
                    VirtAddr(base),
                    PAGES * P,
                    ProtFlags::RW,
                    ANON | MapFlags::FIXED,
                    None,
                )
                .unwrap();
                mapped[k] = true;
            }
            2..=5 => {
                let v = (k as u64 + 1) << 56 | next() >> 8;
                match c.store_u64(p, addr, v) {
                    Ok(()) => {
                        assert!(mapped[k]);
                        vals[k][i as usize] = v;
                    }
                    Err(e) => {
                        assert!(!mapped[k]);
                        assert_eq!(
                            e,
                            AccessError::Signal(Signal::Segv {
                                addr,
                                code: SegvCode::MapErr
                            })
                        );
                    }
                }
            }
            _ => match c.load_u64(p, addr) {
                Ok(v) => {
                    assert!(
                        mapped[k],
                        "pid {} loaded {v:#x} from an unmapped page",
                        k + 1
                    );
                    assert_eq!(v, vals[k][i as usize], "pid {} page {i}", k + 1);
                    assert!(
                        v == 0 || v >> 56 == k as u64 + 1,
                        "pid {} read another's value {v:#x}",
                        k + 1
                    );
                }
                Err(_) => assert!(!mapped[k]),
            },
        }
    }
    for p in &procs {
        p.check_invariants(&mut m.cpus[0]).unwrap();
        p.exit(&mut m.cpus[0]);
    }
}

/// Reclaim's path through this layer: rmap unmaps a page shared by parent and child into a
/// swap entry in both; each then faults it back in through the swap hook, with its data; exit
/// frees the swap slots.
#[test]
fn try_to_unmap_swaps_a_shared_page_out_of_both_and_faults_bring_it_back() {
    use super::fixture::{machine_hooks, small_tlb, TestSwap};
    use mm_sync::sync::Arc;
    let swap: std::cell::OnceCell<Arc<TestSwap>> = std::cell::OnceCell::new();
    let mut m = machine_hooks(
        1,
        4096,
        crate::VmConfig::linux_default(),
        small_tlb(false),
        |b| {
            let s = Arc::new(TestSwap::new(b));
            swap.set(s.clone()).expect("set once");
            crate::Hooks {
                swap: Box::new(s),
                lru: Box::new(crate::NoLru),
            }
        },
    );
    let swap = swap.into_inner().expect("set by the hook factory");
    let free0 = free_pages(&m.sys);
    let parent = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let a = parent
        .mmap(c, VirtAddr(0), 2 * P, ProtFlags::RW, ANON, None)
        .unwrap();
    c.store_u64(&parent, a, 42).unwrap();
    c.store_u64(&parent, VirtAddr(a.0 + P), 43).unwrap();
    let child = parent.fork(c, Pid(2)).unwrap();
    let pfn = parent.mm().lookup(c.mmu(), a).unwrap().pfn();
    // Reclaim isolates the page (a reference), adds it to swap, unmaps it everywhere.
    let page = m.sys.buddy().mem().page(pfn);
    page.get();
    let entry = swap.add(pfn);
    let mut batch = mm_mmu::TlbBatch::new(m.sys.mmu());
    assert_eq!(
        m.sys.try_to_unmap(c.mmu(), pfn, &mut batch, Some(entry)),
        Ok(2)
    );
    batch.flush(c.mmu());
    m.sys.put_page(c.id(), pfn);
    assert_eq!(page.mapcount(), 0);
    assert_eq!(page.refcount(), 1, "only the swap cache holds it");
    assert_eq!((parent.rss().anon, parent.rss().swap), (1, 1));
    assert_eq!((child.rss().anon, child.rss().swap), (1, 1));
    let smaps = crate::proc_smaps_rollup(&child, c);
    assert!(
        smaps.contains("Swap:                  4 kB\nSwapPss:               2 kB\n"),
        "{smaps}"
    );
    assert!(crate::proc_status(&child).contains("VmSwap:\t       4 kB\n"));
    parent.check_invariants(c).unwrap();
    child.check_invariants(c).unwrap();
    // Swap-in, a major fault, in the child first; the parent then finds it in the swap cache.
    assert_eq!(c.load_u64(&child, a), Ok(42));
    assert_eq!(child.core().faults().1, 1);
    assert_eq!(c.load_u64(&parent, a), Ok(42));
    assert_eq!(
        swap.used(),
        0,
        "both entries were freed, and the slot with them"
    );
    assert_eq!(page.mapcount(), 2);
    // The parent's write copies (the child maps it too); the child's then reuses.
    c.store_u64(&parent, a, 1).unwrap();
    c.store_u64(&child, a, 2).unwrap();
    assert_eq!(
        (c.load_u64(&parent, a), c.load_u64(&child, a)),
        (Ok(1), Ok(2))
    );
    parent.check_invariants(c).unwrap();
    child.check_invariants(c).unwrap();
    // Swapped out again, then exit: the swap entries are freed with the address spaces.
    let pfn2 = child.mm().lookup(c.mmu(), VirtAddr(a.0 + P)).unwrap().pfn();
    m.sys.buddy().mem().page(pfn2).get();
    let e2 = swap.add(pfn2);
    let mut batch = mm_mmu::TlbBatch::new(m.sys.mmu());
    assert_eq!(
        m.sys.try_to_unmap(c.mmu(), pfn2, &mut batch, Some(e2)),
        Ok(2)
    );
    batch.flush(c.mmu());
    m.sys.put_page(c.id(), pfn2);
    // An mlocked page stays mapped.
    parent.mlock(c, a, P).unwrap();
    let locked = parent.mm().lookup(c.mmu(), a).unwrap().pfn();
    let mut batch = mm_mmu::TlbBatch::new(m.sys.mmu());
    assert_eq!(
        m.sys.try_to_unmap(c.mmu(), locked, &mut batch, None),
        Err(0)
    );
    batch.flush(c.mmu());
    assert_eq!(c.load_u64(&parent, a), Ok(1));
    parent.exit(c);
    child.exit(c);
    assert_eq!(swap.used(), 0);
    drop((parent, child));
    m.cpus[0].mmu().leave_mm();
    assert_eq!(free_pages(&m.sys), free0);
}
