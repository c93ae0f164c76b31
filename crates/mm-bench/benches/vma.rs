//! VMA-layer benchmarks, with the host kernel's anonymous fault measured in the same run.
//!
//! - `vma.anon_write_fault`: the first store to a page of a fresh private anonymous mapping,
//!   through `CpuCtx::store_u64`: the TLB miss and walk that find no entry, the fault handler
//!   (mmap read lock, VMA lookup, a zeroed page from the CPU's pcp list, the page descriptor,
//!   `Mm::map`, the RSS counter, the LRU hook, which does nothing until the LRU issue lands),
//!   and the retried store's walk. Time per page; the mmap before and the munmap after each
//!   batch are not timed. Frames come back through munmap, so after warm-up every frame is
//!   host-backed and the host never faults inside the timed loop.
//! - `kernel.anon_write_fault`: the same on the host: `mmap` a fresh 64 MiB private anonymous
//!   region, store one byte per page, `munmap`. Time per page of the stores only: each is a
//!   real minor fault (zeroing, LRU add and page-table update included).
//! - `vma.mmap_munmap_pair`: `mmap` of 16 untouched anonymous pages plus their `munmap`.
//!
//! The VMA layer runs with a slab allocator, as on a machine: `mmap` takes a `vm_area_struct`
//! from its cache and `munmap` frees it; a VMA's first fault takes an `anon_vma` and an
//! `anon_vma_chain`.
//!
//! The binary counts heap allocations, and checks once, before measuring, that the only
//! faults of a batch that allocate on the heap are the VMA's first (its anon_vma) and those
//! that allocate a page-table page (`Mm::map` keeps the spare table in a `Vec`): the common
//! case allocates nothing.

use criterion::{criterion_group, criterion_main, Criterion};
use mm_mmu::{Mmu, MmuConfig};
use mm_slab::SlabAllocator;
use mm_sync::sync::Arc;
use mm_types::{CpuId, Pid, VirtAddr, PAGE_SIZE};
use mm_vma::{AddressSpace, CpuCtx, Hooks, Layout, MapFlags, ProtFlags, VmConfig, VmSys};
use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Heap allocations made by this process so far.
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting allocations.
struct Counting;

// SAFETY: (1) every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; (2) the counter is an atomic, so concurrent calls are fine.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees for `layout` are `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout` (forwarded above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// 1 GiB of simulated RAM.
const RAM_PAGES: u64 = 1 << 18;
/// Pages faulted per mapping: 16 MiB.
const BATCH: u64 = 1024;
const P: u64 = PAGE_SIZE as u64;
/// Pages of the host region per `kernel.anon_write_fault` batch: 64 MiB.
const HOST_BATCH: usize = 1024;

fn machine() -> (Arc<VmSys>, CpuCtx, AddressSpace) {
    let buddy = Arc::new(mm_bench::normal_zone_buddy(1, RAM_PAGES));
    // The slab, as on a machine: VMAs, anon_vmas and the mm_struct live in its caches.
    let slab = Arc::new(SlabAllocator::new(buddy.clone()).expect("the slab boots"));
    let (mmu, mut cpus) = Mmu::new(MmuConfig::x86_64(1), buddy).expect("the MMU boots");
    let sys = VmSys::new(
        &mmu,
        Some(slab),
        VmConfig::linux_default(),
        Hooks::default(),
        CpuId(0),
    )
    .expect("a zero page");
    let mut ctx = CpuCtx::new(cpus.remove(0));
    let as_ = AddressSpace::new(&sys, &mut ctx, Pid(1), &Layout::plain()).expect("a process");
    (sys, ctx, as_)
}

/// Faults `BATCH` pages of a fresh mapping in; returns the time of the stores alone.
fn fault_batch(ctx: &mut CpuCtx, as_: &AddressSpace, pages: u64) -> Duration {
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    let a = as_
        .mmap(ctx, VirtAddr(0), pages * P, ProtFlags::RW, anon, None)
        .expect("room for the mapping")
        .0;
    let t0 = Instant::now();
    for i in 0..pages {
        ctx.store_u64(as_, VirtAddr(a + i * P), i)
            .expect("a writable page");
    }
    let t = t0.elapsed();
    assert_eq!(as_.rss().anon, pages);
    as_.munmap(ctx, VirtAddr(a), pages * P).expect("munmap");
    t
}

fn anon_write_fault(c: &mut Criterion) {
    let (_sys, mut ctx, as_) = machine();
    // Warm the pcp lists, the page tables and the host backing of the frames.
    fault_batch(&mut ctx, &as_, BATCH);
    // The fault path allocates nothing on the heap.
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    let a = as_
        .mmap(&mut ctx, VirtAddr(0), BATCH * P, ProtFlags::RW, anon, None)
        .expect("room for the mapping")
        .0;
    let tables0 = as_.mm().pgtables_bytes();
    let mut allocating = 0;
    for i in 0..BATCH {
        let before = ALLOCS.load(Ordering::Relaxed);
        ctx.store_u64(&as_, VirtAddr(a + i * P), i)
            .expect("a writable page");
        if ALLOCS.load(Ordering::Relaxed) != before {
            allocating += 1;
        }
    }
    let tables = (as_.mm().pgtables_bytes() - tables0) / P;
    assert!(
        allocating <= tables + 1,
        "{allocating} of {BATCH} anonymous write faults allocated on the heap; \
         {tables} page-table pages were allocated"
    );
    as_.munmap(&mut ctx, VirtAddr(a), BATCH * P)
        .expect("munmap");
    let faults0 = as_.core().faults().0;
    c.bench_function("vma.anon_write_fault", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                total += fault_batch(&mut ctx, &as_, n);
                left -= n;
            }
            total
        })
    });
    assert!(as_.core().faults().0 > faults0, "the benchmark took faults");
    as_.exit(&mut ctx);
}

/// Touches one byte per page of a fresh host mapping; returns the time of the stores alone.
fn host_fault_batch(pages: usize) -> Duration {
    let len = pages * PAGE_SIZE;
    // SAFETY: (1) an anonymous private mapping with no address hint aliases nothing; (2) the
    // arguments are valid for mmap: fd -1 and offset 0 as MAP_ANONYMOUS requires.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "host mmap");
    let base = p.cast::<u8>();
    let t0 = Instant::now();
    for i in 0..pages {
        // SAFETY: (1) `base + i * PAGE_SIZE` lies inside the `len`-byte mapping created above;
        // (2) the mapping is writable and nothing else references it.
        unsafe { std::ptr::write_volatile(base.add(i * PAGE_SIZE), 1) };
    }
    let t = t0.elapsed();
    // SAFETY: (1) exactly the mapping created above; (2) no reference into it outlives this.
    unsafe { libc::munmap(p, len) };
    t
}

fn kernel_anon_write_fault(c: &mut Criterion) {
    host_fault_batch(HOST_BATCH);
    c.bench_function("kernel.anon_write_fault", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(HOST_BATCH);
                total += host_fault_batch(n);
                left -= n;
            }
            total
        })
    });
}

fn mmap_munmap_pair(c: &mut Criterion) {
    let (_sys, mut ctx, as_) = machine();
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    c.bench_function("vma.mmap_munmap_pair", |b| {
        b.iter(|| {
            let a = as_
                .mmap(&mut ctx, VirtAddr(0), 16 * P, ProtFlags::RW, anon, None)
                .expect("room for the mapping");
            as_.munmap(&mut ctx, black_box(a), 16 * P).expect("munmap");
        })
    });
    assert_eq!(as_.map_count(), 1, "only the stack is left");
    as_.exit(&mut ctx);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500));
    targets = anon_write_fault, kernel_anon_write_fault, mmap_munmap_pair
}
criterion_main!(benches);
