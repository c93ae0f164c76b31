//! One process at a time: mmap/munmap/mprotect/mremap/brk/madvise/mlock with their errnos,
//! demand paging, the zero page, stack growth, file mappings and the teardown.

use super::fixture::{free_pages, machine, machine_with, process, small_tlb, TestFile};
use crate::{
    AccessError, AddressSpace, Layout, MapFlags, MremapFlags, ProtFlags, Rlimits, SegvCode, Signal,
    VmConfig, VmFileRef, VmFlags, ELF_ET_DYN_BASE, TASK_SIZE,
};
use mm_types::{Errno, Pid, VirtAddr};

const P: u64 = 4096;
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
const RW: ProtFlags = ProtFlags::RW;
const MMAP_BASE: u64 = TASK_SIZE - (128 << 20);

fn va(a: u64) -> VirtAddr {
    VirtAddr(a)
}

fn segv(addr: u64, code: SegvCode) -> AccessError {
    AccessError::Signal(Signal::Segv {
        addr: VirtAddr(addr),
        code,
    })
}

fn check(as_: &AddressSpace, ctx: &mut crate::CpuCtx) {
    as_.check_invariants(ctx).unwrap();
}

#[test]
fn first_mapping_sits_just_below_mmap_base_and_reads_the_zero_page() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    assert_eq!(as_.mmap_base(), va(MMAP_BASE));
    let a = as_.mmap(c, va(0), 4 * P, RW, ANON, None).unwrap();
    assert_eq!(a, va(MMAP_BASE - 4 * P));
    let b = as_.mmap(c, va(0), P, RW, ANON, None).unwrap();
    assert_eq!(
        b,
        va(MMAP_BASE - 5 * P),
        "top-down, and merged with the first"
    );
    assert_eq!(as_.map_count(), 2, "the stack and one merged anonymous VMA");
    // A read maps the shared zero page: nothing resident.
    assert_eq!(c.load_u64(&as_, va(a.0 + 8)), Ok(0));
    assert_eq!(as_.rss().anon, 0);
    assert_eq!(c.events().zero_page_maps, 1);
    // A write copies from the zero page; a write to an untouched page allocates.
    c.store_u64(&as_, va(a.0 + 8), 7).unwrap();
    c.store_u64(&as_, va(a.0 + P), 9).unwrap();
    assert_eq!(as_.rss().anon, 2);
    assert_eq!(c.events().cow_copies, 1);
    assert_eq!(c.load_u64(&as_, va(a.0 + 8)), Ok(7));
    assert_eq!(c.load_u64(&as_, va(a.0 + P)), Ok(9));
    assert_eq!(c.load_u64(&as_, va(a.0 + 2 * P)), Ok(0));
    assert_eq!(as_.core().faults().0, 4);
    check(&as_, c);
    as_.exit(c);
}

#[test]
fn bad_accesses_are_signals() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    assert_eq!(
        c.load_u64(&as_, va(0x1000_0000)),
        Err(segv(0x1000_0000, SegvCode::MapErr))
    );
    let ro = as_.mmap(c, va(0), P, ProtFlags::READ, ANON, None).unwrap();
    assert_eq!(c.load_u64(&as_, ro), Ok(0));
    assert_eq!(c.store_u64(&as_, ro, 1), Err(segv(ro.0, SegvCode::AccErr)));
    let none = as_.mmap(c, va(0), P, ProtFlags::NONE, ANON, None).unwrap();
    assert_eq!(c.load_u64(&as_, none), Err(segv(none.0, SegvCode::AccErr)));
    let mut code = [0u8; 4];
    assert_eq!(
        c.fetch(&as_, ro, &mut code),
        Err(segv(ro.0, SegvCode::AccErr))
    );
    assert_eq!(
        c.load_u64(&as_, va(1 << 47)),
        Err(segv(1 << 47, SegvCode::MapErr))
    );
    as_.exit(c);
}

#[test]
fn mmap_errnos_follow_linux() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let e = |r: Result<VirtAddr, Errno>| r.unwrap_err();
    assert_eq!(e(as_.mmap(c, va(0), 0, RW, ANON, None)), Errno::Einval);
    assert_eq!(
        e(as_.mmap(c, va(0), P, RW, MapFlags::ANONYMOUS, None)),
        Errno::Einval
    );
    let shared_validate =
        MapFlags::from_bits_retain(MapFlags::SHARED_VALIDATE) | MapFlags::ANONYMOUS;
    assert_eq!(
        e(as_.mmap(c, va(0), P, RW, shared_validate, None)),
        Errno::Einval
    );
    assert_eq!(
        e(as_.mmap(c, va(0x10_0100), P, RW, ANON | MapFlags::FIXED, None)),
        Errno::Einval
    );
    assert_eq!(
        e(as_.mmap(c, va(0x1000), P, RW, ANON | MapFlags::FIXED, None)),
        Errno::Eperm
    );
    assert_eq!(
        e(as_.mmap(c, va(0), 1 << 47, RW, ANON, None)),
        Errno::Enomem
    );
    assert_eq!(
        e(as_.mmap(c, va(0), u64::MAX - 10, RW, ANON, None)),
        Errno::Enomem
    );
    assert_eq!(
        e(as_.mmap(c, va(0), P, RW, ANON | MapFlags::HUGETLB, None)),
        Errno::Enomem
    );
    assert_eq!(
        e(as_.mmap(
            c,
            va(0),
            P,
            RW,
            MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::GROWSDOWN,
            None
        )),
        Errno::Einval
    );
    let fixed = as_
        .mmap(c, va(0x4000_0000), 2 * P, RW, ANON | MapFlags::FIXED, None)
        .unwrap();
    assert_eq!(fixed, va(0x4000_0000));
    assert_eq!(
        e(as_.mmap(
            c,
            va(0x4000_1000),
            P,
            RW,
            ANON | MapFlags::FIXED_NOREPLACE,
            None
        )),
        Errno::Eexist
    );
    // A hint that is free is taken as is; a taken one falls back to top-down.
    assert_eq!(
        as_.mmap(c, va(0x5000_0000), P, RW, ANON, None),
        Ok(va(0x5000_0000))
    );
    assert_eq!(
        as_.mmap(c, va(0x4000_0000), P, RW, ANON, None),
        Ok(va(MMAP_BASE - P))
    );
    // MAP_FIXED replaces what was there: the old data is gone.
    c.store_u64(&as_, fixed, 5).unwrap();
    as_.mmap(c, fixed, P, RW, ANON | MapFlags::FIXED, None)
        .unwrap();
    assert_eq!(c.load_u64(&as_, fixed), Ok(0));
    assert_eq!(as_.rss().anon, 0);
    check(&as_, c);
    as_.exit(c);
}

#[test]
fn munmap_splits_zaps_and_frees_the_frames() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let free0 = free_pages(&m.sys);
    let c = &mut m.cpus[0];
    let a = as_.mmap(c, va(0), 8 * P, RW, ANON, None).unwrap().0;
    for i in 0..8 {
        c.store_u64(&as_, va(a + i * P), 100 + i).unwrap();
    }
    let used = free0 - free_pages(&m.sys);
    assert!(used >= 8, "8 data pages plus page tables: {used}");
    let c = &mut m.cpus[0];
    as_.munmap(c, va(a + 2 * P), 2 * P).unwrap();
    assert_eq!(as_.map_count(), 3);
    assert_eq!(
        c.load_u64(&as_, va(a + 2 * P)),
        Err(segv(a + 2 * P, SegvCode::MapErr))
    );
    assert_eq!(
        c.load_u64(&as_, va(a + 3 * P)),
        Err(segv(a + 3 * P, SegvCode::MapErr))
    );
    for i in [0, 1, 4, 5, 6, 7] {
        assert_eq!(c.load_u64(&as_, va(a + i * P)), Ok(100 + i));
    }
    assert_eq!(as_.rss().anon, 6);
    assert_eq!(free0 - free_pages(&m.sys), used - 2);
    let c = &mut m.cpus[0];
    // Unmapping a hole is fine; misaligned or empty ranges are not.
    assert_eq!(as_.munmap(c, va(a + 2 * P), P), Ok(()));
    assert_eq!(as_.munmap(c, va(a + 1), P), Err(Errno::Einval));
    assert_eq!(as_.munmap(c, va(a), 0), Err(Errno::Einval));
    assert_eq!(as_.munmap(c, va(TASK_SIZE), 2 * P), Err(Errno::Einval));
    check(&as_, c);
    as_.exit(c);
    drop(as_);
    m.cpus[0].mmu().leave_mm();
    assert_eq!(
        free_pages(&m.sys),
        free0 + 1,
        "the page tables and the root come back"
    );
}

#[test]
fn exit_returns_every_frame() {
    let mut m = machine(1, 8192);
    let free0 = free_pages(&m.sys);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let a = as_.mmap(c, va(0), 300 * P, RW, ANON, None).unwrap().0;
    for i in 0..300 {
        c.store_u64(&as_, va(a + i * P), i).unwrap();
    }
    let sh = as_
        .mmap(
            c,
            va(0),
            3 * P,
            RW,
            MapFlags::SHARED | MapFlags::ANONYMOUS,
            None,
        )
        .unwrap();
    c.store_u64(&as_, sh, 1).unwrap();
    assert_eq!(
        as_.brk(c, va(ELF_ET_DYN_BASE + 5 * P)),
        va(ELF_ET_DYN_BASE + 5 * P)
    );
    c.store_u64(&as_, va(ELF_ET_DYN_BASE), 1).unwrap();
    assert!(free_pages(&m.sys) < free0 - 300);
    let c = &mut m.cpus[0];
    as_.exit(c);
    assert_eq!(as_.rss(), crate::Rss::default());
    assert_eq!(m.sys.committed_pages(), 0);
    drop(as_);
    m.cpus[0].mmu().leave_mm();
    assert_eq!(free_pages(&m.sys), free0);
    assert_eq!(m.sys.rmap_lists(), (0, 0));
}

#[test]
fn mprotect_splits_merges_and_reports_holes() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let a = as_.mmap(c, va(0), 8 * P, RW, ANON, None).unwrap().0;
    for i in 0..8 {
        c.store_u64(&as_, va(a + i * P), i + 1).unwrap();
    }
    as_.mprotect(c, va(a + 2 * P), 2 * P, ProtFlags::READ)
        .unwrap();
    assert_eq!(as_.map_count(), 4);
    assert_eq!(
        c.store_u64(&as_, va(a + 2 * P), 0),
        Err(segv(a + 2 * P, SegvCode::AccErr))
    );
    assert_eq!(c.load_u64(&as_, va(a + 3 * P)), Ok(4));
    c.store_u64(&as_, va(a + 4 * P), 50).unwrap();
    as_.mprotect(c, va(a + 2 * P), 2 * P, RW).unwrap();
    assert_eq!(as_.map_count(), 2, "merged back into one VMA");
    c.store_u64(&as_, va(a + 2 * P), 30).unwrap();
    assert_eq!(c.load_u64(&as_, va(a + 2 * P)), Ok(30));
    assert_eq!(c.load_u64(&as_, va(a + 4 * P)), Ok(50));
    // A hole: the part before it is changed, then ENOMEM.
    as_.munmap(c, va(a + 5 * P), P).unwrap();
    assert_eq!(
        as_.mprotect(c, va(a + 4 * P), 3 * P, ProtFlags::READ),
        Err(Errno::Enomem)
    );
    assert_eq!(
        c.store_u64(&as_, va(a + 4 * P), 0),
        Err(segv(a + 4 * P, SegvCode::AccErr))
    );
    c.store_u64(&as_, va(a + 6 * P), 60).unwrap();
    assert_eq!(as_.mprotect(c, va(a + 1), P, RW), Err(Errno::Einval));
    assert_eq!(
        as_.mprotect(c, va(a), P, ProtFlags::from_bits_retain(0x40)),
        Err(Errno::Einval)
    );
    assert_eq!(as_.mprotect(c, va(a), 0, RW), Ok(()));
    assert_eq!(
        as_.mprotect(c, va(a), u64::MAX - 100, RW),
        Err(Errno::Enomem)
    );
    assert_eq!(as_.mprotect(c, va(0x1000_0000), P, RW), Err(Errno::Enomem));
    // PROT_GROWSDOWN needs a VMA that grows down.
    assert_eq!(
        as_.mprotect(c, va(a), P, ProtFlags::READ | ProtFlags::GROWSDOWN),
        Err(Errno::Einval)
    );
    check(&as_, c);
    as_.exit(c);
}

#[test]
fn mprotect_write_after_fork_style_readonly_reuses_the_page() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let a = as_.mmap(c, va(0), P, RW, ANON, None).unwrap();
    c.store_u64(&as_, a, 1).unwrap();
    as_.mprotect(c, a, P, ProtFlags::READ).unwrap();
    as_.mprotect(c, a, P, RW).unwrap();
    let reuse0 = c.events().pgreuse;
    c.store_u64(&as_, a, 2).unwrap();
    assert_eq!(
        c.events().pgreuse,
        reuse0 + 1,
        "the only mapping reuses the page in place"
    );
    assert_eq!(as_.rss().anon, 1);
    as_.exit(c);
}

#[test]
fn brk_grows_shrinks_and_returns_the_old_break_on_failure() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let start = ELF_ET_DYN_BASE;
    assert_eq!(as_.brk(c, va(0)), va(start));
    assert_eq!(as_.brk(c, va(start - P)), va(start));
    let top = start + 3 * P + 1;
    assert_eq!(as_.brk(c, va(top)), va(top));
    assert_eq!(as_.brk_value(), va(top));
    for i in 0..4 {
        c.store_u64(&as_, va(start + i * P), i + 1).unwrap();
    }
    assert_eq!(as_.rss().anon, 4);
    // Within the same page: only the value changes.
    assert_eq!(as_.brk(c, va(top + 100)), va(top + 100));
    assert_eq!(as_.brk(c, va(start + P)), va(start + P));
    assert_eq!(c.load_u64(&as_, va(start)), Ok(1));
    assert_eq!(
        c.load_u64(&as_, va(start + P)),
        Err(segv(start + P, SegvCode::MapErr))
    );
    assert_eq!(as_.rss().anon, 1);
    // A mapping right above the heap: growing up to a guard page below it fails.
    as_.mmap(c, va(start + 6 * P), P, RW, ANON | MapFlags::FIXED, None)
        .unwrap();
    assert_eq!(as_.brk(c, va(start + 5 * P)), va(start + 5 * P));
    assert_eq!(
        as_.brk(c, va(start + 6 * P)),
        va(start + 5 * P),
        "old break on failure"
    );
    // Grown again: the new pages read zero.
    assert_eq!(c.load_u64(&as_, va(start + P)), Ok(0));
    let maps = crate::proc_maps(&as_, c);
    assert!(
        maps.contains("555555554000-555555559000 rw-p 00000000 00:00 0"),
        "{maps}"
    );
    assert!(maps.lines().next().unwrap().ends_with("[heap]"), "{maps}");
    check(&as_, c);
    as_.exit(c);
}

#[test]
fn brk_respects_rlimit_data() {
    let mut m = machine(1, 4096);
    let layout = Layout {
        rlimits: Rlimits {
            data: 4 * P,
            ..Rlimits::linux_default()
        },
        ..Layout::plain()
    };
    let as_ = AddressSpace::new(&m.sys, &mut m.cpus[0], Pid(1), &layout).unwrap();
    let c = &mut m.cpus[0];
    let start = ELF_ET_DYN_BASE;
    assert_eq!(as_.brk(c, va(start + 4 * P)), va(start + 4 * P));
    assert_eq!(as_.brk(c, va(start + 5 * P)), va(start + 4 * P));
    as_.exit(c);
}

#[test]
fn mremap_grows_in_place_moves_and_shrinks() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let a = as_.mmap(c, va(0), 4 * P, RW, ANON, None).unwrap().0;
    for i in 0..4 {
        c.store_u64(&as_, va(a + i * P), 10 + i).unwrap();
    }
    // Nothing above the first mapping: it grows in place.
    assert_eq!(
        as_.mremap(c, va(a), 4 * P, 6 * P, MremapFlags::empty(), va(0)),
        Ok(va(a))
    );
    c.store_u64(&as_, va(a + 5 * P), 15).unwrap();
    // Something right above: without MAYMOVE it cannot grow.
    let above = as_
        .mmap(
            c,
            va(a + 6 * P),
            P,
            ProtFlags::READ,
            ANON | MapFlags::FIXED,
            None,
        )
        .unwrap();
    assert_eq!(above, va(a + 6 * P));
    assert_eq!(
        as_.mremap(c, va(a), 6 * P, 8 * P, MremapFlags::empty(), va(0)),
        Err(Errno::Enomem)
    );
    let b = as_
        .mremap(c, va(a), 6 * P, 8 * P, MremapFlags::MAYMOVE, va(0))
        .unwrap()
        .0;
    assert_ne!(b, a);
    for i in 0..4 {
        assert_eq!(c.load_u64(&as_, va(b + i * P)), Ok(10 + i));
    }
    assert_eq!(c.load_u64(&as_, va(b + 5 * P)), Ok(15));
    assert_eq!(c.load_u64(&as_, va(b + 7 * P)), Ok(0));
    assert_eq!(c.load_u64(&as_, va(a)), Err(segv(a, SegvCode::MapErr)));
    // FIXED move, then shrink.
    let dst = 0x6000_0000;
    assert_eq!(
        as_.mremap(
            c,
            va(b),
            8 * P,
            8 * P,
            MremapFlags::MAYMOVE | MremapFlags::FIXED,
            va(dst)
        ),
        Ok(va(dst))
    );
    assert_eq!(c.load_u64(&as_, va(dst + 3 * P)), Ok(13));
    assert_eq!(
        as_.mremap(c, va(dst), 8 * P, 2 * P, MremapFlags::empty(), va(0)),
        Ok(va(dst))
    );
    assert_eq!(
        c.load_u64(&as_, va(dst + 2 * P)),
        Err(segv(dst + 2 * P, SegvCode::MapErr))
    );
    assert_eq!(as_.rss().anon, 2);
    // Errnos.
    let e = |r: Result<VirtAddr, Errno>| r.unwrap_err();
    assert_eq!(
        e(as_.mremap(c, va(dst + 1), P, P, MremapFlags::empty(), va(0))),
        Errno::Einval
    );
    assert_eq!(
        e(as_.mremap(c, va(dst), P, 0, MremapFlags::empty(), va(0))),
        Errno::Einval
    );
    assert_eq!(
        e(as_.mremap(c, va(dst), P, 2 * P, MremapFlags::FIXED, va(0))),
        Errno::Einval
    );
    assert_eq!(
        e(as_.mremap(c, va(0x1000_0000), P, 2 * P, MremapFlags::MAYMOVE, va(0))),
        Errno::Efault
    );
    assert_eq!(
        e(as_.mremap(c, va(dst), 3 * P, 4 * P, MremapFlags::MAYMOVE, va(0))),
        Errno::Efault
    );
    assert_eq!(
        e(as_.mremap(c, va(dst), 0, P, MremapFlags::MAYMOVE, va(0))),
        Errno::Einval
    );
    assert_eq!(
        e(as_.mremap(
            c,
            va(dst),
            2 * P,
            2 * P,
            MremapFlags::MAYMOVE | MremapFlags::FIXED,
            va(dst + P)
        )),
        Errno::Einval,
        "overlapping ranges"
    );
    check(&as_, c);
    as_.exit(c);
}

#[test]
fn mremap_dontunmap_leaves_an_empty_mapping() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let a = as_.mmap(c, va(0), 2 * P, RW, ANON, None).unwrap().0;
    c.store_u64(&as_, va(a), 77).unwrap();
    let b = as_
        .mremap(
            c,
            va(a),
            2 * P,
            2 * P,
            MremapFlags::MAYMOVE | MremapFlags::DONTUNMAP,
            va(0),
        )
        .unwrap()
        .0;
    assert_eq!(c.load_u64(&as_, va(b)), Ok(77));
    assert_eq!(c.load_u64(&as_, va(a)), Ok(0), "still mapped, but empty");
    check(&as_, c);
    as_.exit(c);
}

#[test]
fn madvise_dontneed_zaps_free_keeps_and_holes_are_enomem() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let a = as_.mmap(c, va(0), 4 * P, RW, ANON, None).unwrap().0;
    for i in 0..4 {
        c.store_u64(&as_, va(a + i * P), i + 1).unwrap();
    }
    assert_eq!(as_.madvise(c, va(a), 2 * P, 4), Ok(()));
    assert_eq!(c.load_u64(&as_, va(a)), Ok(0));
    assert_eq!(as_.rss().anon, 2);
    assert_eq!(as_.madvise(c, va(a + 2 * P), P, 8), Ok(()));
    assert_eq!(
        c.load_u64(&as_, va(a + 2 * P)),
        Ok(3),
        "MADV_FREE without reclaim keeps data"
    );
    let smaps = crate::proc_smaps(&as_, c);
    assert!(smaps.contains("LazyFree:              4 kB"), "{smaps}");
    c.store_u64(&as_, va(a + 2 * P), 33).unwrap();
    let smaps = crate::proc_smaps(&as_, c);
    assert!(
        smaps.contains("LazyFree:              0 kB"),
        "written again: {smaps}"
    );
    // A hole: the advice applies around it, then ENOMEM.
    as_.munmap(c, va(a + P), P).unwrap();
    assert_eq!(as_.madvise(c, va(a), 4 * P, 4), Err(Errno::Enomem));
    assert_eq!(c.load_u64(&as_, va(a + 3 * P)), Ok(0));
    assert_eq!(as_.madvise(c, va(a + 1), P, 4), Err(Errno::Einval));
    assert_eq!(as_.madvise(c, va(a), P, 1234), Err(Errno::Einval));
    assert_eq!(as_.madvise(c, va(a), 0, 4), Ok(()));
    as_.mlock(c, va(a), P).unwrap();
    assert_eq!(as_.madvise(c, va(a), P, 4), Err(Errno::Einval));
    assert_eq!(as_.madvise(c, va(a), P, 10), Ok(()));
    assert!(as_
        .vmas()
        .iter()
        .any(|v| v.2.contains(VmFlags::DONTCOPY | VmFlags::LOCKED)));
    check(&as_, c);
    as_.exit(c);
}

#[test]
fn mlock_populates_counts_and_respects_the_limit() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let a = as_.mmap(c, va(0), 8 * P, RW, ANON, None).unwrap().0;
    as_.mlock(c, va(a + 100), 3 * P).unwrap();
    assert_eq!(
        as_.rss().anon,
        4,
        "mlock of a partial page range locks whole pages, populated"
    );
    assert!(crate::proc_status(&as_).contains("VmLck:\t      16 kB\n"));
    assert_eq!(as_.map_count(), 3);
    as_.munlock(c, va(a), 8 * P).unwrap();
    assert!(crate::proc_status(&as_).contains("VmLck:\t       0 kB\n"));
    assert_eq!(as_.map_count(), 2);
    // 8 MiB limit: 2049 pages is too many.
    let big = as_
        .mmap(c, va(0), 2049 * P, RW, ANON | MapFlags::NORESERVE, None)
        .unwrap();
    assert_eq!(as_.mlock(c, big, 2049 * P), Err(Errno::Enomem));
    assert_eq!(as_.mlock(c, va(0x1000_0000), P), Err(Errno::Enomem));
    let locked = as_
        .mmap(c, va(0), 2 * P, RW, ANON | MapFlags::LOCKED, None)
        .unwrap();
    assert_eq!(as_.rss().anon, 6, "MAP_LOCKED populates");
    assert!(as_
        .vmas()
        .iter()
        .any(|v| v.0 == locked && v.2.contains(VmFlags::LOCKED)));
    check(&as_, c);
    as_.exit(c);
}

#[test]
fn the_stack_grows_down_within_its_limit_and_guard_gap() {
    let mut m = machine(1, 8192);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let top = TASK_SIZE;
    let low = top - 33 * P;
    assert_eq!(as_.vmas()[0], (va(low), va(top), VmFlags::STACK_DEFAULT));
    // A push below the VMA grows it.
    c.store_u64(&as_, va(low - 10 * P + 8), 5).unwrap();
    assert_eq!(as_.vmas()[0].0, va(low - 10 * P));
    assert_eq!(c.load_u64(&as_, va(low - 10 * P + 8)), Ok(5));
    let status = crate::proc_status(&as_);
    assert!(status.contains("VmStk:\t     172 kB\n"), "{status}");
    // Beyond RLIMIT_STACK (8 MiB) it does not.
    let far = top - (8 << 20) - P;
    assert_eq!(
        c.store_u64(&as_, va(far), 1),
        Err(segv(far, SegvCode::MapErr))
    );
    // A mapping within the guard gap (256 pages) below blocks growth.
    let cur = low - 10 * P;
    as_.mmap(c, va(cur - 300 * P), P, RW, ANON | MapFlags::FIXED, None)
        .unwrap();
    assert_eq!(
        c.store_u64(&as_, va(cur - 100 * P), 1),
        Err(segv(cur - 100 * P, SegvCode::MapErr))
    );
    c.store_u64(&as_, va(cur - 40 * P), 1).unwrap();
    check(&as_, c);
    as_.exit(c);
}

#[test]
fn max_map_count_limits_new_mappings_and_splits() {
    let cfg = VmConfig {
        max_map_count: 6,
        ..VmConfig::linux_default()
    };
    let mut m = machine_with(1, 4096, cfg, small_tlb(false));
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    // Alternate protections so nothing merges.
    let mut last = va(0);
    for i in 0..6 {
        let prot = if i % 2 == 0 { RW } else { ProtFlags::READ };
        last = as_.mmap(c, va(0), 3 * P, prot, ANON, None).unwrap();
    }
    assert_eq!(as_.map_count(), 7);
    assert_eq!(as_.mmap(c, va(0), P, RW, ANON, None), Err(Errno::Enomem));
    assert_eq!(
        as_.munmap(c, va(last.0 + P), P),
        Err(Errno::Enomem),
        "a split needs a new VMA"
    );
    assert_eq!(as_.munmap(c, last, 3 * P), Ok(()));
    as_.exit(c);
}

#[test]
fn file_mappings_read_the_file_and_copy_on_private_write() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let file = TestFile::new(&m.sys, 0xf11e, 3, true, |i| 0xf000 + i);
    let fref = VmFileRef::new(file.clone());
    let c = &mut m.cpus[0];
    let private = MapFlags::PRIVATE;
    let a = as_
        .mmap(c, va(0), 3 * P, RW, private, Some((&fref, 0)))
        .unwrap()
        .0;
    assert_eq!(c.load_u64(&as_, va(a + P)), Ok(0xf001));
    assert_eq!(as_.rss().file, 1);
    c.store_u64(&as_, va(a + P), 1).unwrap();
    assert_eq!(c.load_u64(&as_, va(a + P)), Ok(1));
    let mem = m.sys.buddy().mem().clone();
    assert_eq!(
        mem.read_u64(file.pfn(1).phys()),
        Ok(0xf001),
        "the file is untouched"
    );
    assert_eq!((as_.rss().file, as_.rss().anon), (0, 1));
    // A shared writable mapping writes the file.
    let c = &mut m.cpus[0];
    let s = as_
        .mmap(c, va(0), 2 * P, RW, MapFlags::SHARED, Some((&fref, P)))
        .unwrap()
        .0;
    c.store_u64(&as_, va(s + P), 0xabc).unwrap();
    assert_eq!(mem.read_u64(file.pfn(2).phys()), Ok(0xabc));
    // Past the end of the file: SIGBUS.
    let c = &mut m.cpus[0];
    let big = as_
        .mmap(c, va(0), 4 * P, ProtFlags::READ, private, Some((&fref, 0)))
        .unwrap()
        .0;
    assert_eq!(
        c.load_u64(&as_, va(big + 3 * P)),
        Err(AccessError::Signal(Signal::Bus {
            addr: va(big + 3 * P)
        }))
    );
    // A read-only file cannot be mapped shared and writable.
    let ro = VmFileRef::new(TestFile::new(&m.sys, 0xf12e, 1, false, |_| 0));
    assert_eq!(
        as_.mmap(c, va(0), P, RW, MapFlags::SHARED, Some((&ro, 0))),
        Err(Errno::Eacces)
    );
    let maps = crate::proc_maps(&as_, c);
    assert!(
        maps.lines()
            .any(|l| l.ends_with(" rw-s 00001000 fe:00 4242                       /tmp/test-file")),
        "{maps}"
    );
    check(&as_, c);
    as_.exit(c);
    file.evict();
}

#[test]
fn forced_remote_write_to_a_readonly_private_file_mapping_lands_in_a_copy() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let file = TestFile::new(&m.sys, 0xf11e, 1, false, |_| 0x5afe);
    let fref = VmFileRef::new(file.clone());
    let c = &mut m.cpus[0];
    let a = as_
        .mmap(
            c,
            va(0),
            P,
            ProtFlags::READ,
            MapFlags::PRIVATE,
            Some((&fref, 0)),
        )
        .unwrap();
    assert_eq!(c.load_u64(&as_, a), Ok(0x5afe));
    assert_eq!(
        as_.write_remote(c, a, &[0xee; 8], false),
        Err(Errno::Efault)
    );
    assert_eq!(as_.write_remote(c, a, &[0xee; 8], true), Ok(8));
    let mem = m.sys.buddy().mem().clone();
    assert_eq!(mem.read_u64(file.pfn(0).phys()), Ok(0x5afe));
    assert_eq!(c.load_u64(&as_, a), Ok(0xeeee_eeee_eeee_eeee));
    let mut buf = [0u8; 8];
    assert_eq!(as_.read_remote(c, a, &mut buf, false), Ok(8));
    assert_eq!(buf, [0xee; 8]);
    assert_eq!(c.store_u64(&as_, a, 1), Err(segv(a.0, SegvCode::AccErr)));
    check(&as_, c);
    as_.exit(c);
    file.evict();
}

#[test]
fn randomized_layouts_differ_by_seed_and_stay_valid() {
    let mut m = machine(1, 4096);
    let mut bases = Vec::new();
    for seed in 1..4 {
        let layout = Layout {
            seed: Some(seed),
            ..Layout::plain()
        };
        let as_ = AddressSpace::new(&m.sys, &mut m.cpus[0], Pid(seed as u32), &layout).unwrap();
        let c = &mut m.cpus[0];
        let base = as_.mmap_base().0;
        let stack = as_.vmas()[as_.map_count() - 1];
        assert!(
            base + (8 << 20) + (1 << 20) <= stack.0 .0,
            "mmap_base below the stack gap"
        );
        assert!(as_.brk_value().0 >= ELF_ET_DYN_BASE);
        let a = as_.mmap(c, va(0), P, RW, ANON, None).unwrap();
        assert_eq!(a.0, base - P);
        c.store_u64(&as_, a, seed).unwrap();
        bases.push(base);
        as_.exit(c);
    }
    bases.dedup();
    assert_eq!(bases.len(), 3);
}

#[test]
fn huge_and_wrapping_arguments_are_errors_not_panics() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let a = as_.mmap(c, va(0), 2 * P, RW, ANON, None).unwrap();
    let big = [
        u64::MAX,
        u64::MAX - P + 1,
        1 << 63,
        TASK_SIZE,
        TASK_SIZE + P,
    ];
    for &n in &big {
        assert!(as_.mmap(c, va(0), n, RW, ANON, None).is_err());
        assert!(as_
            .mmap(c, va(n & !(P - 1)), P, RW, ANON | MapFlags::FIXED, None)
            .is_err());
        assert!(as_.munmap(c, a, n).is_err());
        assert!(as_.munmap(c, va(n & !(P - 1)), P).is_err());
        let _ = as_.mprotect(c, a, n, RW);
        let _ = as_.madvise(c, a, n, 4);
        let _ = as_.mlock(c, va(a.0 + 1), n);
        let _ = as_.munlock(c, a, n);
        let _ = as_.mremap(c, a, n, P, MremapFlags::empty(), va(0));
        let _ = as_.mremap(c, a, P, n, MremapFlags::MAYMOVE, va(0));
        let _ = as_.mremap(
            c,
            a,
            n,
            n,
            MremapFlags::MAYMOVE | MremapFlags::FIXED,
            va(0x4000_0000),
        );
        assert_eq!(as_.brk(c, va(n)), va(ELF_ET_DYN_BASE));
    }
    check(&as_, c);
    as_.exit(c);
}
