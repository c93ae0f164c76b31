//! Slab benchmarks: a `kmalloc(64)` + `kfree` pair on one CPU, and in the same run the host
//! allocator's `malloc(64)` + `free` pair it is compared with.
//!
//! The slab pair runs through a CPU pin held across the loop, as a CPU actor holds its pin for a
//! quantum: the size class is a table lookup, the allocation pops the per-CPU freelist (one
//! simulated-RAM read of the free pointer), and the free finds the cache from the page
//! descriptor and pushes the object back (one simulated-RAM write).

use criterion::{criterion_group, criterion_main, Criterion};
use mm_slab::SlabAllocator;
use mm_sync::sync::Arc;
use mm_types::{CpuId, Gfp};
use std::alloc::{alloc, dealloc, Layout};
use std::hint::black_box;

const PAGES: u64 = 1 << 16; // 256 MiB

fn kmalloc64_pair(c: &mut Criterion) {
    let buddy = Arc::new(mm_bench::normal_zone_buddy(2, PAGES));
    let slab = SlabAllocator::new(buddy).expect("the slab allocator boots");
    let cpu = slab.cpu(CpuId(0));
    // Give CPU 0 its kmalloc-64 slab before measuring.
    let warm = cpu.kmalloc(64, Gfp::GFP_KERNEL).expect("kmalloc(64)");
    cpu.kfree(warm);
    c.bench_function("slab.kmalloc64_pair", |b| {
        b.iter(|| {
            let o = cpu
                .kmalloc(black_box(64), Gfp::GFP_KERNEL)
                .expect("kmalloc(64)");
            cpu.kfree(black_box(o));
        })
    });
}

fn native_malloc64_pair(c: &mut Criterion) {
    let layout = Layout::from_size_align(64, 8).expect("valid layout");
    c.bench_function("native.malloc64_pair", |b| {
        b.iter(|| {
            // SAFETY: (1) `layout` has a non-zero size.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null(), "host allocation failed");
            // SAFETY: (1) `p` came from `alloc` with this same `layout`; (2) it is freed once.
            unsafe { dealloc(black_box(p), layout) };
        })
    });
}

criterion_group!(benches, kmalloc64_pair, native_malloc64_pair);
criterion_main!(benches);
