//! Real concurrency in the std runtime: two CPU threads running threads of one process (and
//! forks of it), so faults, COW, zaps, unmaps and shootdowns interleave for real. Each thread
//! checks every value it reads against its own record, and acknowledges IPIs between accesses
//! as a CPU does between instructions.

use super::fixture::{free_pages, machine, process};
use crate::{AccessError, AddressSpace, CpuCtx, MapFlags, ProtFlags, SegvCode, Signal};
use mm_sync::sync::atomic::{AtomicBool, Ordering};
use mm_sync::sync::Arc;
use mm_sync::thread;
use mm_types::{Pid, VirtAddr};

const P: u64 = 4096;
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);

struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Thread A: writes and reads its own region, and zaps parts of it with MADV_DONTNEED.
fn writer(c: &mut CpuCtx, as_: &AddressSpace, base: u64, pages: u64, seed: u64, rounds: u32) {
    let mut rng = Xorshift(seed);
    let mut vals = vec![0u64; pages as usize];
    for _ in 0..rounds {
        c.mmu().handle_ipis();
        let i = rng.next() % pages;
        let a = VirtAddr(base + i * P);
        match rng.next() % 8 {
            0 => {
                as_.madvise(c, a, P, 4).unwrap();
                vals[i as usize] = 0;
            }
            1..=4 => {
                let v = rng.next() | 1;
                c.store_u64(as_, a, v).unwrap();
                vals[i as usize] = v;
            }
            _ => assert_eq!(c.load_u64(as_, a), Ok(vals[i as usize]), "page {i}"),
        }
    }
}

#[test]
fn two_cpus_fault_zap_map_unmap_and_fork_one_process_concurrently() {
    let mut m = machine(2, 1 << 14);
    let free0 = free_pages(&m.sys);
    let as_ = Arc::new(process(&mut m, 1));
    let own = 0x1000_0000;
    let other = 0x2000_0000;
    as_.mmap(
        &mut m.cpus[0],
        VirtAddr(own),
        64 * P,
        ProtFlags::RW,
        ANON | MapFlags::FIXED,
        None,
    )
    .unwrap();
    let mut c1 = m.cpus.pop().unwrap();
    let mut c0 = m.cpus.pop().unwrap();
    // Each thread, once done, keeps acknowledging shootdowns until the other is done too.
    let done = Arc::new(AtomicBool::new(false));
    let a_done = Arc::new(AtomicBool::new(false));
    let (as1, done1, a_done1) = (as_.clone(), done.clone(), a_done.clone());
    let t = thread::spawn(move || {
        // Thread B: maps, touches, protects and unmaps its own region, and forks.
        let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
        let mut forks = 0;
        for round in 0..15_000u64 {
            c1.mmu().handle_ipis();
            let a = VirtAddr(other + (rng.next() % 32) * P);
            match rng.next() % 6 {
                0 => {
                    as1.mmap(
                        &mut c1,
                        a,
                        4 * P,
                        ProtFlags::RW,
                        ANON | MapFlags::FIXED,
                        None,
                    )
                    .unwrap();
                    c1.store_u64(&as1, a, round).unwrap();
                    assert_eq!(c1.load_u64(&as1, a), Ok(round));
                }
                1 => as1.munmap(&mut c1, a, 3 * P).unwrap(),
                2 => {
                    let _ = as1.mprotect(&mut c1, a, 2 * P, ProtFlags::READ);
                }
                3 => match c1.store_u64(&as1, a, round) {
                    Ok(()) => assert_eq!(c1.load_u64(&as1, a), Ok(round)),
                    Err(AccessError::Signal(Signal::Segv { .. })) => {}
                    Err(e) => panic!("{e}"),
                },
                4 if forks < 20 => {
                    forks += 1;
                    let child = as1.fork(&mut c1, Pid(100 + forks)).unwrap();
                    // The child sees a snapshot and writes its own copy.
                    c1.store_u64(&child, VirtAddr(own), 7).unwrap();
                    assert_eq!(c1.load_u64(&child, VirtAddr(own)), Ok(7));
                    child.check_invariants(&mut c1).unwrap();
                    child.exit(&mut c1);
                    c1.mmu().switch_mm(as1.mm());
                }
                _ => {
                    let _ = as1.madvise(&mut c1, a, 2 * P, 4);
                }
            }
        }
        done1.store(true, Ordering::Release);
        c1.mmu()
            .spin_until(|| a_done1.load(Ordering::Acquire).then_some(()));
        c1
    });
    writer(&mut c0, &as_, own, 64, 0x1234_5678, 60_000);
    a_done.store(true, Ordering::Release);
    c0.mmu()
        .spin_until(|| done.load(Ordering::Acquire).then_some(()));
    let mut c1 = t.join().unwrap();
    c1.mmu().leave_mm();
    as_.check_invariants(&mut c0).unwrap();
    assert_eq!(
        c0.load_u64(&as_, VirtAddr(0x3000_0000)),
        Err(AccessError::Signal(Signal::Segv {
            addr: VirtAddr(0x3000_0000),
            code: SegvCode::MapErr
        }))
    );
    as_.exit(&mut c0);
    drop(as_);
    c0.mmu().leave_mm();
    c1.mmu().leave_mm();
    assert_eq!(free_pages(&m.sys), free0);
}

#[test]
fn two_processes_on_two_cpus_keep_their_data_apart() {
    let mut m = machine(2, 1 << 14);
    let a = Arc::new(process(&mut m, 1));
    let b = Arc::new(process(&mut m, 2));
    let mut c1 = m.cpus.pop().unwrap();
    let mut c0 = m.cpus.pop().unwrap();
    let base = 0x1000_0000;
    for (p, c) in [(&a, &mut c0), (&b, &mut c1)] {
        p.mmap(
            c,
            VirtAddr(base),
            64 * P,
            ProtFlags::RW,
            ANON | MapFlags::FIXED,
            None,
        )
        .unwrap();
        c.mmu().leave_mm();
    }
    // Different address spaces: neither CPU is ever in the other's cpumask.
    let b1 = b.clone();
    let t = thread::spawn(move || {
        writer(&mut c1, &b1, base, 64, 77, 20_000);
        b1.exit(&mut c1);
        c1.mmu().leave_mm();
        c1
    });
    writer(&mut c0, &a, base, 64, 99, 20_000);
    a.exit(&mut c0);
    t.join().unwrap();
}
