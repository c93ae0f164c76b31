//! Page allocator benchmarks: an order-0 alloc+free pair through the pcp lists, on one and two
//! CPU threads, and the same pair on the crates.io `buddy_system_allocator` FrameAllocator.
//!
//! A CPU actor holds its pcp lock across a quantum (`Buddy::lock_cpu`), so the pcp ids measure
//! that path; `buddy.pcp_pair_1t_oplock` measures `Buddy::alloc`/`free`, which take the lock
//! for each operation (daemons and callers outside a CPU quantum).

use buddy_system_allocator::FrameAllocator;
use criterion::{criterion_group, criterion_main, Criterion};
use mm_types::{CpuId, Gfp, Order};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

const PAGES: u64 = 1 << 18; // 1 GiB

fn pcp_pair(c: &mut Criterion) {
    let b = mm_bench::normal_zone_buddy(2, PAGES);
    c.bench_function("buddy.pcp_pair_1t_oplock", |bench| {
        bench.iter(|| {
            let f = b.alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL).unwrap();
            b.free(CpuId(0), black_box(f));
        })
    });
    let mut cpu = b.lock_cpu(CpuId(0));
    c.bench_function("buddy.pcp_pair_1t", |bench| {
        bench.iter(|| {
            let f = cpu.alloc(Order::ZERO, Gfp::GFP_KERNEL).unwrap();
            cpu.free(black_box(f));
        })
    });
}

/// Runs `iters` pairs on each of `threads` CPU threads at once and returns the time from their
/// common start to the end of the last one: CPU 0's pairs run on the calling thread, each other
/// CPU's on a spawned thread. Spawning and joining are outside the timed region, so the 1- and
/// 2-thread cases time the same thing (the pairs) and differ only in how many CPUs run them.
fn pairs_on_threads(b: &mm_buddy::Buddy, threads: u32, iters: u64) -> Duration {
    fn pairs(pcp: &mut mm_buddy::PcpLocked<'_>, iters: u64) -> Instant {
        for _ in 0..iters {
            let f = pcp.alloc(Order::ZERO, Gfp::GFP_KERNEL).unwrap();
            pcp.free(black_box(f));
        }
        Instant::now()
    }
    let ready = AtomicU32::new(0);
    let go = AtomicBool::new(false);
    std::thread::scope(|s| {
        let others: Vec<_> = (1..threads)
            .map(|cpu| {
                let (ready, go) = (&ready, &go);
                s.spawn(move || {
                    let mut pcp = b.lock_cpu(CpuId(cpu));
                    ready.fetch_add(1, Ordering::Release);
                    while !go.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    pairs(&mut pcp, iters)
                })
            })
            .collect();
        let mut pcp = b.lock_cpu(CpuId(0));
        // Yield while the others start, so a spawned thread is not left waiting for a core.
        while ready.load(Ordering::Acquire) < threads - 1 {
            std::thread::yield_now();
        }
        let t0 = Instant::now();
        go.store(true, Ordering::Release);
        let mut end = pairs(&mut pcp, iters);
        drop(pcp);
        for h in others {
            end = end.max(h.join().unwrap());
        }
        end - t0
    })
}

fn pcp_throughput(c: &mut Criterion) {
    let b = mm_bench::normal_zone_buddy(2, PAGES);
    // Warm both CPUs' pcp lists so neither thread starts with a refill.
    pairs_on_threads(&b, 2, 1000);
    for threads in [1u32, 2] {
        let id = format!("buddy.pcp_pair_{threads}t_throughput");
        c.bench_function(&id, |bench| {
            bench.iter_custom(|iters| pairs_on_threads(&b, threads, iters))
        });
    }
}

fn peer_bsa(c: &mut Criterion) {
    let mut fa = FrameAllocator::<33>::new();
    fa.add_frame(1 << 20, (1 << 20) + PAGES as usize);
    c.bench_function("peer.bsa_pair_1t", |bench| {
        bench.iter(|| {
            let f = fa.alloc(1).unwrap();
            fa.dealloc(black_box(f), 1);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500));
    targets = pcp_pair, pcp_throughput, peer_bsa
}
criterion_main!(benches);
