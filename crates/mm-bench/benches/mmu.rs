//! MMU benchmarks: simulated 8-byte loads that hit the L1 TLB or walk four levels, the plain
//! host load they are compared with over the same working set in the same run, and a
//! single-page TLB shootdown between two CPU threads.
//!
//! - `mmu.tlb_hit_load`: 32 mapped pages (inside the 64-entry L1 dTLB), loads cycling through
//!   them page by page, one cache line per page ([`addr`]); after warm-up every load hits L1
//!   (checked).
//! - `native.load`: the same offsets in a host array of the same 128 KiB.
//! - `mmu.walk_load`: 4096 pages loaded in a cycle, more than the 1536-entry 12-way STLB holds
//!   under LRU, so every load misses both levels and walks four levels (checked).
//! - `mmu.shootdown_2cpu`: CPU 0 flushes one page of an address space CPU 1 also has loaded; CPU
//!   1's thread idles in `MmuCpu::spin_until`, handling IPIs (spin briefly, then yield). One
//!   iteration is the bump, the local flush, the IPI and the wait for the acknowledgement.

use criterion::{criterion_group, criterion_main, Criterion};
use mm_mmu::{Mm, Mmu, MmuConfig, MmuCpu, Prot};
use mm_sync::sync::Arc;
use mm_types::{CpuId, Gfp, Order, VirtAddr, PAGE_SIZE};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

const PAGES: u64 = 1 << 14; // 64 MiB of simulated RAM
const BASE: u64 = 0x1000_0000;
const HIT_PAGES: u64 = 32;
const WALK_PAGES: u64 = 4096;
const WORDS: u64 = (PAGE_SIZE / 8) as u64;
const LINE_WORDS: u64 = 8;

fn machine(cpus: u32) -> (Arc<Mmu>, Vec<MmuCpu>, Arc<Mm>) {
    let buddy = Arc::new(mm_bench::normal_zone_buddy(cpus, PAGES));
    let (mmu, cpus) = Mmu::new(MmuConfig::x86_64(cpus), buddy).expect("the MMU boots");
    let mm = Mm::new(&mmu, CpuId(0)).expect("a root table");
    (mmu, cpus, mm)
}

fn map(mm: &Mm, cpu: &mut MmuCpu, pages: u64) {
    for i in 0..pages {
        let f = mm
            .mmu()
            .buddy()
            .alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL | Gfp::ZERO)
            .expect("bench RAM");
        mm.map(
            cpu,
            VirtAddr(BASE + i * PAGE_SIZE as u64),
            f.into_raw().0,
            Prot::RW,
        )
        .expect("map");
    }
}

/// The `i`-th address of a walk through `pages` pages: consecutive loads land on consecutive
/// pages (different TLB sets), each page contributes one 64-byte line, and page `p`'s line is
/// line `p % 64` of the page, so the lines of different pages sit in different data-cache
/// sets. The measurement is then the translation, not 4 KiB cache aliasing.
fn addr(i: u64, pages: u64) -> VirtAddr {
    let (page, word) = (i % pages, (i / pages) % LINE_WORDS);
    let line = page % (WORDS / LINE_WORDS);
    VirtAddr(BASE + page * PAGE_SIZE as u64 + (line * LINE_WORDS + word) * 8)
}

/// The first `n` addresses of [`addr`] over `pages` pages; `n` is a power of two, so the
/// loops index them with a mask instead of a division.
fn addrs(n: u64, pages: u64) -> Vec<VirtAddr> {
    assert!(n.is_power_of_two());
    (0..n).map(|i| addr(i, pages)).collect()
}

fn tlb_hit_load(c: &mut Criterion) {
    let (_mmu, mut cpus, mm) = machine(1);
    let cpu = &mut cpus[0];
    map(&mm, cpu, HIT_PAGES);
    cpu.switch_mm(&mm);
    let seq = addrs(HIT_PAGES * LINE_WORDS, HIT_PAGES);
    for &va in &seq {
        cpu.load_u64(va).expect("mapped");
    }
    let before = cpu.stats();
    let mask = seq.len() - 1;
    let mut i = 0;
    c.bench_function("mmu.tlb_hit_load", |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            black_box(cpu.load_u64(seq[i]).unwrap_or_default())
        })
    });
    let after = cpu.stats();
    assert_eq!(after.walks, before.walks, "every measured load hit the TLB");
    assert_eq!(after.l2_hits, before.l2_hits, "every measured load hit L1");
}

fn native_load(c: &mut Criterion) {
    let data: Vec<u64> = (0..HIT_PAGES * WORDS).collect();
    let seq: Vec<usize> = addrs(HIT_PAGES * LINE_WORDS, HIT_PAGES)
        .iter()
        .map(|va| (va.0 - BASE) as usize / 8)
        .collect();
    let mask = seq.len() - 1;
    let mut i = 0;
    c.bench_function("native.load", |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            black_box(data[seq[i]])
        })
    });
}

fn walk_load(c: &mut Criterion) {
    let (_mmu, mut cpus, mm) = machine(1);
    let cpu = &mut cpus[0];
    map(&mm, cpu, WALK_PAGES);
    cpu.switch_mm(&mm);
    let seq = addrs(WALK_PAGES * LINE_WORDS, WALK_PAGES);
    let before = cpu.stats();
    let mask = seq.len() - 1;
    let mut i = 0;
    c.bench_function("mmu.walk_load", |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            black_box(cpu.load_u64(seq[i]).unwrap_or_default())
        })
    });
    let after = cpu.stats();
    assert_eq!(after.l1_hits, before.l1_hits, "no measured load hit L1");
    assert_eq!(after.l2_hits, before.l2_hits, "no measured load hit L2");
}

fn shootdown_2cpu(c: &mut Criterion) {
    let (_mmu, mut cpus, mm) = machine(2);
    let mut cpu1 = cpus.pop().expect("CPU 1");
    let mut cpu0 = cpus.pop().expect("CPU 0");
    map(&mm, &mut cpu0, 1);
    cpu0.switch_mm(&mm);
    cpu1.switch_mm(&mm);
    let stop = Arc::new(AtomicBool::new(false));
    let stop1 = stop.clone();
    let other = std::thread::spawn(move || {
        cpu1.load_u64(VirtAddr(BASE)).expect("mapped");
        // An idle CPU: handle IPIs, spinning briefly, then yielding, as every MMU wait does.
        cpu1.spin_until(|| stop1.load(Ordering::Acquire).then_some(()));
        cpu1
    });
    let (start, end) = (VirtAddr(BASE), VirtAddr(BASE + PAGE_SIZE as u64));
    c.bench_function("mmu.shootdown_2cpu", |b| {
        b.iter(|| {
            mm.flush_tlb_range(&mut cpu0, start, end)
                .expect("a valid range")
        })
    });
    stop.store(true, Ordering::Release);
    let cpu1 = other.join().expect("CPU 1's thread");
    let (sent, received) = (cpu0.stats().ipis_sent, cpu1.stats().ipis_received);
    assert_eq!(sent, received, "every IPI sent was handled");
}

criterion_group!(
    benches,
    tlb_hit_load,
    native_load,
    walk_load,
    shootdown_2cpu
);
criterion_main!(benches);
