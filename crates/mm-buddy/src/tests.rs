//! Unit tests, the seed example, the kernel-geometry checks and the conservation proptest.

use super::*;
use mm_types::PAGE_SIZE;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn cfg(cpus: u32, zones: Vec<ZoneConfig>, min_free_kbytes: Option<u64>) -> BuddyConfig {
    BuddyConfig {
        nr_cpus: cpus,
        zones,
        min_free_kbytes,
        watermark_scale_factor: 10,
        watermark_boost_factor: 0,
        lowmem_reserve_ratio: [256, 256, 32, 0, 0],
        percpu_pagelist_high_fraction: 0,
        thp_enabled: true,
    }
}

fn zc(id: ZoneId, start: u64, spanned: u64, present: u64, managed: u64) -> ZoneConfig {
    ZoneConfig {
        id,
        start_pfn: Pfn(start),
        spanned,
        present,
        managed,
    }
}

fn boot(c: &BuddyConfig) -> Buddy {
    let end = c
        .zones
        .iter()
        .map(|z| z.start_pfn.0 + z.spanned)
        .max()
        .unwrap();
    Buddy::new(Arc::new(PhysMem::new(Pfn(end))), c).unwrap()
}

fn o(n: u32) -> Order {
    Order::new(n).unwrap()
}

/// The seed's buddy example (seeds/001: 1024K of memory, 64K minimum block). One seed block of
/// 64K is 16 of our 4K pages, so seed order k is our order k + 4, and the seed's 1024K is one
/// order-8 block. Every step asserts the exact free lists, in 64K units.
#[test]
fn seeds_buddy_example() {
    let b = boot(&cfg(1, vec![zc(ZoneId::Dma, 0, 256, 256, 256)], Some(0)));
    let z = b.zone(ZoneId::Dma);
    let cpu = CpuId(0);
    // Free blocks per seed order 0..=4 (64K, 128K, 256K, 512K, 1024K), as seed-unit offsets.
    let lists = || -> Vec<Vec<u64>> {
        (0..=4)
            .map(|k| {
                let mut v: Vec<u64> = z
                    .free_blocks(o(k + 4))
                    .iter()
                    .map(|(p, _)| p.0 / 16)
                    .collect();
                v.sort_unstable();
                v
            })
            .collect()
    };
    let seed_order = |kib: u64| -> Order {
        let units = kib.div_ceil(64);
        o(units.next_power_of_two().trailing_zeros() + 4)
    };
    let alloc = |kib| b.alloc(cpu, seed_order(kib), Gfp::GFP_KERNEL).unwrap();
    assert_eq!(
        lists(),
        [vec![], vec![], vec![], vec![], vec![0]],
        "initial: one 1024K block"
    );

    let a = alloc(34);
    assert_eq!(a.pfn(), Pfn(0));
    assert_eq!(
        lists(),
        [vec![1], vec![2], vec![4], vec![8], vec![]],
        "A 34K"
    );
    let bb = alloc(66);
    assert_eq!(bb.pfn(), Pfn(32));
    assert_eq!(
        lists(),
        [vec![1], vec![], vec![4], vec![8], vec![]],
        "B 66K"
    );
    let c = alloc(35);
    assert_eq!(c.pfn(), Pfn(16));
    assert_eq!(lists(), [vec![], vec![], vec![4], vec![8], vec![]], "C 35K");
    let d = alloc(67);
    assert_eq!(d.pfn(), Pfn(64));
    assert_eq!(lists(), [vec![], vec![6], vec![], vec![8], vec![]], "D 67K");
    b.free(cpu, bb);
    assert_eq!(
        lists(),
        [vec![], vec![2, 6], vec![], vec![8], vec![]],
        "free B: not buddies"
    );
    b.free(cpu, d);
    assert_eq!(
        lists(),
        [vec![], vec![2], vec![4], vec![8], vec![]],
        "free D: merges to 256K"
    );
    b.free(cpu, a);
    assert_eq!(
        lists(),
        [vec![0], vec![2], vec![4], vec![8], vec![]],
        "free A: C still holds its buddy"
    );
    b.free(cpu, c);
    assert_eq!(
        lists(),
        [vec![], vec![], vec![], vec![], vec![0]],
        "free C: one 1024K block again"
    );
    b.check_invariants().unwrap();
}

/// This machine's /proc/zoneinfo (kernel 6.18.44, 2 CPUs) and the fact sheet's Appendix A.4
/// snapshot: the formulas must give exactly the kernel's numbers.
#[test]
fn zoneinfo_numbers_match_two_real_kernels() {
    struct Expect {
        id: ZoneId,
        w: [u64; 4],
        protection: [u64; 5],
        pcp: [u64; 3],
        threshold: u64,
    }
    let host = cfg(
        2,
        vec![
            zc(ZoneId::Dma, 1, 4095, 3998, 3840),
            zc(ZoneId::Dma32, 4096, 1_044_480, 782_336, 772_915),
            zc(ZoneId::Normal, 1_048_576, 5_505_024, 5_505_024, 196_608),
        ],
        Some(67584),
    );
    let host_expect = [
        Expect {
            id: ZoneId::Dma,
            w: [66, 82, 98, 114],
            protection: [0, 3019, 3787, 3787, 3787],
            pcp: [1, 41, 240],
            threshold: 4,
        },
        Expect {
            id: ZoneId::Dma32,
            w: [13416, 16770, 20124, 23478],
            protection: [0, 0, 768, 768, 768],
            pcp: [63, 8385, 48307],
            threshold: 24,
        },
        Expect {
            id: ZoneId::Normal,
            w: [3412, 4265, 5118, 5971],
            protection: [0; 5],
            pcp: [63, 2132, 12288],
            threshold: 16,
        },
        // Unpopulated zones print only down to `protection:`.
        Expect {
            id: ZoneId::Movable,
            w: [32; 4],
            protection: [0; 5],
            pcp: [0; 3],
            threshold: 0,
        },
        Expect {
            id: ZoneId::Device,
            w: [0; 4],
            protection: [0; 5],
            pcp: [0; 3],
            threshold: 0,
        },
    ];
    let sample = cfg(
        2,
        vec![
            zc(ZoneId::Dma, 1, 4095, 3998, 3840),
            zc(ZoneId::Dma32, 4096, 1_044_480, 782_336, 772_922),
            zc(ZoneId::Normal, 1_048_576, 5_505_024, 5_505_024, 1_835_008),
        ],
        Some(67584),
    );
    let sample_expect = [
        Expect {
            id: ZoneId::Dma,
            w: [24, 30, 36, 42],
            protection: [0, 3019, 10187, 10187, 10187],
            pcp: [1, 15, 240],
            threshold: 4,
        },
        Expect {
            id: ZoneId::Dma32,
            w: [5000, 6250, 7500, 8750],
            protection: [0, 0, 7168, 7168, 7168],
            pcp: [63, 3125, 48307],
            threshold: 24,
        },
    ];
    for (c, expect) in [(&host, &host_expect[..]), (&sample, &sample_expect[..])] {
        let b = boot(c);
        for e in expect {
            let zi = b.zone_info(e.id);
            let w = zi.watermarks;
            assert_eq!([w.min, w.low, w.high, w.promo], e.w, "{} watermarks", e.id);
            assert_eq!(zi.protection, e.protection, "{} protection", e.id);
            if zi.managed > 0 {
                let p = zi.pcp[1];
                assert_eq!([p.batch, p.high_min, p.high_max], e.pcp, "{} pcp", e.id);
                assert_eq!(zi.stat_threshold, e.threshold, "{} threshold", e.id);
            }
        }
    }
}

#[test]
fn default_min_free_kbytes_follows_the_boot_sequence() {
    // Without a user value: int_sqrt(lowmem_kB * 16) = 7892 for this geometry, then khugepaged
    // raises it to 3 zones * (2 + 9) pageblocks = 16896 pages = 67584 kB, as on the host.
    let mut c = cfg(
        2,
        vec![
            zc(ZoneId::Dma, 1, 4095, 3998, 3840),
            zc(ZoneId::Dma32, 4096, 1_044_480, 782_336, 772_915),
            zc(ZoneId::Normal, 1_048_576, 5_505_024, 5_505_024, 196_608),
        ],
        None,
    );
    assert_eq!(boot(&c).min_free_kbytes(), 67584);
    c.thp_enabled = false;
    assert_eq!(boot(&c).min_free_kbytes(), 7892);
    assert_eq!(
        formulas::default_min_free_kbytes(262_144),
        4096,
        "1 GiB -> 4096 kB"
    );
    assert_eq!(
        formulas::default_min_free_kbytes(1 << 22),
        16384,
        "16 GiB -> 16384 kB"
    );
}

#[test]
fn sysctl_writes_recompute_and_reject_out_of_range() {
    let b = boot(&cfg(
        2,
        vec![zc(ZoneId::Dma32, 4096, 1 << 18, 1 << 18, 1 << 18)],
        Some(16384),
    ));
    let before = b.zone(ZoneId::Dma32).watermarks();
    b.set_watermark_scale_factor(1000).unwrap();
    let after = b.zone(ZoneId::Dma32).watermarks();
    assert_eq!(after.min, before.min);
    assert_eq!(after.low - after.min, (1u64 << 18) * 1000 / 10000);
    assert!(matches!(
        b.set_watermark_scale_factor(0),
        Err(ConfigError::Sysctl { .. })
    ));
    assert!(matches!(
        b.set_watermark_scale_factor(3001),
        Err(ConfigError::Sysctl { .. })
    ));
    b.set_min_free_kbytes(4096).unwrap();
    assert_eq!(b.zone(ZoneId::Dma32).watermarks().min, 1024);
}

#[test]
fn bad_geometry_is_refused() {
    let mem = Arc::new(PhysMem::new(Pfn(1 << 20)));
    let mut c = cfg(
        1,
        vec![
            zc(ZoneId::Dma, 0, 4096, 4096, 4096),
            zc(ZoneId::Dma32, 4000, 4096, 4096, 4096),
        ],
        None,
    );
    assert_eq!(
        Buddy::new(mem.clone(), &c).unwrap_err(),
        ConfigError::Overlap(ZoneId::Dma32)
    );
    c.zones = vec![zc(ZoneId::Dma, 0, 4096, 4097, 10)];
    assert!(matches!(
        Buddy::new(mem.clone(), &c).unwrap_err(),
        ConfigError::Geometry { .. }
    ));
    c.zones = vec![zc(ZoneId::Dma32, 0, 2 << 20, 2 << 20, 2 << 20)];
    assert!(matches!(
        Buddy::new(mem.clone(), &c).unwrap_err(),
        ConfigError::BeyondRam { .. }
    ));
    c.zones = vec![
        zc(ZoneId::Dma, 0, 4096, 4096, 4096),
        zc(ZoneId::Dma, 8192, 4096, 4096, 4096),
    ];
    assert_eq!(
        Buddy::new(mem, &c).unwrap_err(),
        ConfigError::DuplicateZone(ZoneId::Dma)
    );
}

fn two_zone() -> Buddy {
    boot(&cfg(
        2,
        vec![
            zc(ZoneId::Dma, 0, 4096, 4096, 4000),
            zc(ZoneId::Dma32, 4096, 8192, 8192, 8192),
        ],
        Some(1024),
    ))
}

#[test]
fn gfp_zone_modifiers_and_fallback_order() {
    let b = two_zone();
    let cpu = CpuId(0);
    let f = b.alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL).unwrap();
    assert!(
        b.zone(ZoneId::Dma32).contains(f.pfn()),
        "Normal is empty: falls back to DMA32"
    );
    let d = b
        .alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL | Gfp::DMA)
        .unwrap();
    assert!(b.zone(ZoneId::Dma).contains(d.pfn()));
    // Exhaust DMA32: then GFP_KERNEL falls back to DMA, down to DMA's low mark + protection.
    let mut held = vec![f, d];
    while let Ok(f) = b.alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL) {
        held.push(f);
    }
    let dma = b.zone(ZoneId::Dma);
    let dma_free = dma.free_pages();
    let limit = (dma.watermarks().min + dma.lowmem_reserve(ZoneId::Normal)) as i64;
    assert!(
        dma_free > 0 && dma_free <= limit + 1,
        "DMA keeps its protection: {dma_free} vs {limit}"
    );
    assert!(held.iter().filter(|f| dma.contains(f.pfn())).count() > 1);
    for f in held {
        b.free(cpu, f);
    }
    b.drain_all_pages(None);
    b.check_invariants().unwrap();
    assert_eq!(b.nr_free_pages(), 12192);
}

#[test]
fn atomic_dips_below_min_but_nowait_does_not() {
    let b = boot(&cfg(
        1,
        vec![zc(ZoneId::Dma32, 4096, 4096, 4096, 4096)],
        Some(4096),
    ));
    let z = b.zone(ZoneId::Dma32);
    let min = z.watermarks().min as i64;
    let cpu = CpuId(0);
    let mut held = Vec::new();
    // A failing request leaves its CPU's pcp list empty; NR_FREE_PAGES then sits at the mark,
    // within the last refill (at most batch << PCP_BATCH_SCALE_MAX pages).
    let batch = (b.zone_info(ZoneId::Dma32).pcp[0].batch << pcp::PCP_BATCH_SCALE_MAX) as i64;
    while let Ok(f) = b.alloc(cpu, Order::ZERO, Gfp::GFP_NOWAIT) {
        held.push(f);
    }
    let after_nowait = z.free_pages();
    assert!(
        after_nowait <= min && after_nowait > min - batch - 1,
        "GFP_NOWAIT stops at min: {after_nowait} vs {min}"
    );
    while let Ok(f) = b.alloc(cpu, Order::ZERO, Gfp::GFP_ATOMIC) {
        held.push(f);
    }
    let after_atomic = z.free_pages();
    // GFP_ATOMIC: min - min/2 - (min - min/2)/4 = 3/8 of min.
    let atomic_floor = min - min / 2 - (min - min / 2) / 4;
    assert!(
        after_atomic <= atomic_floor && after_atomic > atomic_floor - batch - 1,
        "{after_atomic} vs {atomic_floor}"
    );
    assert_eq!(b.vm_events().alloc_fail, 2);
    for f in held {
        b.free(cpu, f);
    }
    b.check_invariants().unwrap();
}

#[test]
fn gfp_zero_returns_zeroed_memory() {
    let b = boot(&cfg(
        1,
        vec![zc(ZoneId::Dma32, 4096, 4096, 4096, 4096)],
        Some(128),
    ));
    let cpu = CpuId(0);
    let f = b.alloc(cpu, o(1), Gfp::GFP_KERNEL).unwrap();
    b.mem()
        .write(f.pfn().phys(), &[0xaa; 2 * PAGE_SIZE])
        .unwrap();
    let pfn = f.pfn();
    b.free(cpu, f);
    b.drain_all_pages(None);
    let g = b.alloc(cpu, o(1), Gfp::GFP_KERNEL | Gfp::ZERO).unwrap();
    assert_eq!(g.pfn(), pfn, "the same block comes back");
    let mut buf = vec![1u8; 2 * PAGE_SIZE];
    b.mem().read(g.pfn().phys(), &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 0));
    b.free(cpu, g);
}

/// A slow path whose "reclaim" frees a frame the test handed it, as direct reclaim would.
struct ReclaimOne {
    frames: mm_sync::sync::Mutex<Vec<Frame>>,
    reclaims: mm_sync::untracked::AtomicU64,
    ooms: mm_sync::untracked::AtomicU64,
}

impl SlowPath for Arc<ReclaimOne> {
    fn direct_reclaim(&self, b: &Buddy, cpu: CpuId, _: Order, _: Gfp, _: ZoneId) -> u64 {
        self.reclaims
            .fetch_add(1, mm_sync::untracked::Ordering::Relaxed);
        match self.frames.lock().pop() {
            Some(f) => {
                b.free(cpu, f);
                1
            }
            None => 0,
        }
    }
    fn out_of_memory(&self, _: &Buddy, _: CpuId, _: Order, _: Gfp) -> bool {
        self.ooms
            .fetch_add(1, mm_sync::untracked::Ordering::Relaxed);
        false
    }
}

#[test]
fn slow_path_reclaims_then_fails_then_noretry_and_nofail_behave() {
    let c = cfg(
        1,
        vec![zc(ZoneId::Dma32, 4096, 1024, 1024, 1024)],
        Some(128),
    );
    let slow = Arc::new(ReclaimOne {
        frames: mm_sync::sync::Mutex::new(Vec::new()),
        reclaims: Default::default(),
        ooms: Default::default(),
    });
    let mut b = boot(&c);
    b.set_slow_path(Box::new(slow.clone()));
    let cpu = CpuId(0);
    let mut held = Vec::new();
    while let Ok(f) = b.alloc(cpu, Order::ZERO, Gfp::GFP_NOWAIT) {
        held.push(f);
    }
    // GFP_KERNEL fails only after reclaim and the OOM killer made no progress.
    assert!(b.alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL).is_err());
    assert!(slow.reclaims.load(mm_sync::untracked::Ordering::Relaxed) >= 1);
    assert_eq!(slow.ooms.load(mm_sync::untracked::Ordering::Relaxed), 1);
    assert!(b.vm_events().allocstall[ZoneId::Normal.index()] >= 1);
    // NORETRY never reaches the OOM killer.
    assert!(b
        .alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL | Gfp::NORETRY)
        .is_err());
    assert_eq!(slow.ooms.load(mm_sync::untracked::Ordering::Relaxed), 1);
    // With reclaimable memory, direct reclaim makes room and the allocation succeeds.
    for _ in 0..64 {
        slow.frames.lock().push(held.pop().unwrap());
    }
    let f = b.alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL).unwrap();
    held.push(f);
    // NOFAIL succeeds even without the reserve being enough, as reclaim frees more.
    let g = b.alloc(cpu, o(2), Gfp::GFP_KERNEL | Gfp::NOFAIL).unwrap();
    held.push(g);
    for f in held.drain(..).chain(slow.frames.lock().drain(..)) {
        b.free(cpu, f);
    }
    b.drain_all_pages(None);
    b.check_invariants().unwrap();
    assert_eq!(b.nr_free_pages(), 1024);
}

#[test]
fn pcp_lists_refill_in_batches_and_flush_above_high() {
    let b = boot(&cfg(
        2,
        vec![zc(ZoneId::Dma32, 4096, 1 << 16, 1 << 16, 1 << 16)],
        Some(1024),
    ));
    let z = b.zone(ZoneId::Dma32);
    let info = b.zone_info(ZoneId::Dma32);
    let batch = info.pcp[0].batch;
    assert_eq!(batch, 15, "zone_batchsize(256 MiB)");
    let cpu = CpuId(0);
    let f = b.alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL).unwrap();
    let after = b.zone_info(ZoneId::Dma32);
    // The first refill pulls `batch` pages (alloc_factor 0); one is handed out.
    assert_eq!(after.pcp[0].count, batch - 1);
    assert_eq!(z.free_pages() as u64, (1 << 16) - batch);
    assert_eq!(after.pcp[1].count, 0, "CPU 1 untouched");
    // Free far more than high: the list flushes back to the buddy allocator.
    let mut held = vec![f];
    for _ in 0..5000 {
        held.push(b.alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL).unwrap());
    }
    for f in held {
        b.free(cpu, f);
    }
    let end = b.zone_info(ZoneId::Dma32);
    assert!(
        end.pcp[0].count <= end.pcp[0].high_max,
        "count {} high_max {}",
        end.pcp[0].count,
        end.pcp[0].high_max
    );
    assert!(end.pcp[0].count < 5001);
    assert_eq!(end.pgalloc, 5001);
    assert_eq!(end.pgfree, 5001);
    b.check_invariants().unwrap();
    b.drain_all_pages(None);
    assert_eq!(b.zone_info(ZoneId::Dma32).pcp[0].count, 0);
    assert_eq!(z.free_pages(), 1 << 16);
    assert_eq!(
        b.zone_info(ZoneId::Dma32).free_blocks[10],
        64,
        "fully merged again"
    );
}

#[test]
fn terabyte_machine_boots_without_touching_its_memory() {
    let pages = 1u64 << 28;
    let b = boot(&cfg(
        4,
        vec![
            zc(ZoneId::Dma, 1, 4095, 4095, 4095),
            zc(
                ZoneId::Dma32,
                4096,
                (1 << 20) - 4096,
                (1 << 20) - 4096,
                (1 << 20) - 4096,
            ),
            zc(
                ZoneId::Normal,
                1 << 20,
                pages - (1 << 20),
                pages - (1 << 20),
                pages - (1 << 20),
            ),
        ],
        None,
    ));
    let rss: u64 = std::fs::read_to_string("/proc/self/statm")
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rss * 4096 < 1 << 30,
        "boot touched {} MiB of host memory",
        rss >> 8
    );
    assert_eq!(b.nr_free_pages(), pages - 1);
    assert_eq!(
        b.min_free_kbytes(),
        131_071,
        "int_sqrt(4 GiB of kB * 16), pfn 0 excluded"
    );
    assert_eq!(
        formulas::default_min_free_kbytes(1 << 32),
        262_144,
        "16 TiB: capped at 256 MiB"
    );
    // Deferred blocks come into use on demand.
    let f = b.alloc(CpuId(3), o(10), Gfp::GFP_KERNEL).unwrap();
    assert!(b.zone(ZoneId::Normal).contains(f.pfn()));
    b.free(CpuId(3), f);
    b.check_invariants().unwrap();
}

#[test]
fn isolation_moves_free_pages_and_catches_later_frees() {
    let b = two_zone();
    let cpu = CpuId(1);
    let z = b.zone(ZoneId::Dma32);
    // Hold one page of the first DMA32 pageblock, so the block is not entirely free.
    let mut held = Vec::new();
    let target = loop {
        let f = b.alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL).unwrap();
        if f.pfn().0 < 4096 + 512 {
            break f;
        }
        held.push(f);
    };
    let before = z.free_pages();
    let guard = b.offline_isolate(Pfn(4096), Pfn(4096 + 512)).unwrap();
    let r = b.isolation_report(Pfn(4096), Pfn(4096 + 512));
    assert_eq!(r.on_pcp, 0);
    assert_eq!(r.on_other_free_list, 0);
    assert_eq!(z.free_pages(), before - r.isolated_free as i64);
    assert!(matches!(
        b.isolate_pageblocks(Pfn(4096), Pfn(4096 + 512)),
        Err(IsolateError::Busy(_))
    ));
    b.free(cpu, target);
    let r2 = b.isolation_report(Pfn(4096), Pfn(4096 + 512));
    assert_eq!(
        r2.isolated_free,
        r.isolated_free + 1,
        "the freed page joined the isolate list"
    );
    assert_eq!(r2.on_pcp, 0);
    b.check_invariants().unwrap();
    drop(guard);
    b.unisolate_pageblocks(Pfn(4096), Pfn(4096 + 512)).unwrap();
    for f in held {
        b.free(cpu, f);
    }
    b.drain_all_pages(None);
    b.check_invariants().unwrap();
    assert_eq!(b.nr_free_pages(), 12192);
}

struct CountWakes(Arc<mm_sync::untracked::AtomicU64>);

impl SlowPath for CountWakes {
    fn wake_kswapd(&self, _: &Buddy, _: ZoneId, _: Order, _: ZoneId) {
        self.0.fetch_add(1, mm_sync::untracked::Ordering::Relaxed);
    }
}

#[test]
fn fragmenting_fallback_boosts_the_watermark_and_wakes_kswapd() {
    let mut c = cfg(
        1,
        vec![zc(ZoneId::Dma32, 4096, 8192, 8192, 8192)],
        Some(128),
    );
    c.watermark_boost_factor = 15000;
    let mut b = boot(&c);
    let wakes = Arc::new(mm_sync::untracked::AtomicU64::new(0));
    b.set_slow_path(Box::new(CountWakes(wakes.clone())));
    let z = b.zone(ZoneId::Dma32);
    let cpu = CpuId(0);
    // Use up every movable block of pageblock order or more, then split one pageblock.
    let mut held = Vec::new();
    while z.free_blocks(o(9)).len() + 2 * z.free_blocks(o(10)).len() > 1 {
        held.push(b.alloc(cpu, o(9), Gfp::GFP_HIGHUSER_MOVABLE).unwrap());
    }
    b.drain_all_pages(None);
    held.push(b.alloc(cpu, o(8), Gfp::GFP_HIGHUSER_MOVABLE).unwrap());
    assert_eq!(z.boost(), 0);
    assert_eq!(wakes.load(mm_sync::untracked::Ordering::Relaxed), 0);
    // An unmovable request must now take part of a movable pageblock: a fragmenting fallback.
    let small = b.alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL).unwrap();
    assert_eq!(z.boost(), 512, "boosted by one pageblock");
    assert_eq!(
        wakes.load(mm_sync::untracked::Ordering::Relaxed),
        1,
        "kswapd woken"
    );
    assert_eq!(
        b.zone_info(ZoneId::Dma32).watermarks.min + 512,
        z.wmark_pages(0)
    );
    assert_eq!(
        z.pageblock_migratetype(small.pfn()),
        MigrateType::Unmovable,
        "more than half free: claimed"
    );
    held.push(small);
    for f in held {
        b.free(cpu, f);
    }
    b.check_invariants().unwrap();
}

#[test]
fn unmovable_requests_steal_pageblocks() {
    let b = two_zone();
    let cpu = CpuId(0);
    let f = b.alloc(cpu, o(4), Gfp::GFP_KERNEL).unwrap();
    let z = b.zone_of(f.pfn()).unwrap();
    assert_eq!(
        z.pageblock_migratetype(f.pfn()),
        MigrateType::Unmovable,
        "the whole block was claimed"
    );
    b.free(cpu, f);
    b.check_invariants().unwrap();
}

#[test]
#[allow(clippy::mutable_key_type)]
fn two_cpus_hammering_one_zone_keep_every_page() {
    let b = Arc::new(boot(&cfg(
        2,
        vec![zc(ZoneId::Dma32, 4096, 1 << 14, 1 << 14, 1 << 14)],
        Some(512),
    )));
    let threads: Vec<_> = (0..2u32)
        .map(|cpu| {
            let b = b.clone();
            mm_sync::thread::spawn(move || {
                let mut held: Vec<Frame> = Vec::new();
                let mut x = 12345u64 + cpu as u64;
                for _ in 0..40_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if !x.is_multiple_of(3) || held.is_empty() {
                        let order = o((x % 4) as u32);
                        if let Ok(f) = b.alloc(CpuId(cpu), order, Gfp::GFP_KERNEL) {
                            b.mem().write_u64(f.pfn().phys(), f.pfn().0).unwrap();
                            held.push(f);
                        }
                    } else {
                        let f = held.swap_remove((x as usize / 3) % held.len());
                        assert_eq!(
                            b.mem().read_u64(f.pfn().phys()).unwrap(),
                            f.pfn().0,
                            "frame shared by two owners"
                        );
                        b.free(CpuId((x % 2) as u32), f);
                    }
                }
                held
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    let mut held = Vec::new();
    for t in threads {
        for f in t.join().unwrap() {
            for i in 0..f.nr_pages() {
                assert!(all.insert(f.pfn().0 + i), "frame handed out twice");
            }
            held.push(f);
        }
    }
    b.check_invariants().unwrap();
    for f in held {
        b.free(CpuId(0), f);
    }
    b.drain_all_pages(None);
    b.check_invariants().unwrap();
    assert_eq!(b.nr_free_pages(), 1 << 14);
}

#[derive(Debug, Clone)]
enum Op {
    Alloc { cpu: u32, order: u32, zone: u8 },
    Free { cpu: u32, idx: usize },
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2u32, 0..=10u32, 0..3u8).prop_map(|(cpu, order, zone)| Op::Alloc { cpu, order, zone }),
        3 => (0..2u32, any::<usize>()).prop_map(|(cpu, idx)| Op::Free { cpu, idx }),
        1 => Just(Op::Drain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random allocations and frees of every order over three zones and two CPUs: conservation
    /// holds after every step, no frame is handed out twice, and freeing everything restores
    /// the boot-time buddyinfo.
    #[test]
    fn random_alloc_free_conserves_pages(ops in proptest::collection::vec(op(), 1..300)) {
        let b = boot(&cfg(
            2,
            vec![
                zc(ZoneId::Dma, 0, 4096, 4096, 4000),
                zc(ZoneId::Dma32, 4096, 8192, 8192, 8192),
                zc(ZoneId::Normal, 12288, 4096, 4096, 3000),
            ],
            Some(256),
        ));
        let boot_info: Vec<_> = ZoneId::ALL.iter().map(|z| b.zone_info(*z).free_blocks).collect();
        let managed = b.totalram_pages();
        let mut held: Vec<Frame> = Vec::new();
        let mut owned: BTreeMap<u64, u64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Alloc { cpu, order, zone } => {
                    let gfp = [Gfp::GFP_KERNEL | Gfp::DMA, Gfp::GFP_KERNEL | Gfp::DMA32, Gfp::GFP_HIGHUSER_MOVABLE][zone as usize];
                    if let Ok(f) = b.alloc(CpuId(cpu), o(order), gfp) {
                        prop_assert!(f.pfn().is_aligned(f.order()));
                        let start = f.pfn().0;
                        let end = start + f.nr_pages();
                        if let Some((s, l)) = owned.range(..end).next_back() {
                            prop_assert!(s + l <= start, "frame {start:#x} handed out twice");
                        }
                        owned.insert(start, f.nr_pages());
                        held.push(f);
                    }
                }
                Op::Free { cpu, idx } => {
                    if !held.is_empty() {
                        let f = held.swap_remove(idx % held.len());
                        owned.remove(&f.pfn().0);
                        b.free(CpuId(cpu), f);
                    }
                }
                Op::Drain => b.drain_all_pages(None),
            }
            let allocated: u64 = owned.values().sum();
            prop_assert_eq!(b.nr_free_pages() + b.pcp_pages() + allocated, managed);
        }
        b.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
        for f in held {
            b.free(CpuId(0), f);
        }
        b.drain_all_pages(None);
        b.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let end_info: Vec<_> = ZoneId::ALL.iter().map(|z| b.zone_info(*z).free_blocks).collect();
        prop_assert_eq!(end_info, boot_info);
    }
}

#[test]
fn held_pcp_lock_serves_the_fast_path_and_releases_for_the_slow_path() {
    let b = boot(&cfg(
        2,
        vec![zc(ZoneId::Dma32, 4096, 2048, 2048, 2048)],
        Some(128),
    ));
    let mut held = Vec::new();
    {
        let mut cpu = b.lock_cpu(CpuId(1));
        assert_eq!(cpu.cpu(), CpuId(1));
        for _ in 0..100 {
            held.push(cpu.alloc(Order::ZERO, Gfp::GFP_KERNEL).unwrap());
        }
        for f in held.drain(50..) {
            cpu.free(f);
        }
        // Exhausting memory enters the slow path, which drains every CPU (its own included):
        // it must drop the held lock first or it would deadlock on itself.
        while let Ok(f) = cpu.alloc(Order::ZERO, Gfp::GFP_KERNEL) {
            held.push(f);
        }
        cpu.relax();
        let f = held.pop().unwrap();
        cpu.free(f);
    }
    assert!(
        b.zone_info(ZoneId::Dma32).pcp[1].count > 0,
        "the last free went to CPU 1's list"
    );
    assert_eq!(b.zone_info(ZoneId::Dma32).pcp[0].count, 0);
    for f in held {
        b.free(CpuId(0), f);
    }
    b.drain_all_pages(None);
    b.check_invariants().unwrap();
    assert_eq!(b.nr_free_pages(), 2048);
}
