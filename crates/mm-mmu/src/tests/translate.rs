//! Translation: the walker, the TLB levels, ASIDs, faults and the cost model (one CPU).

use super::fixture::{frame_of, machine, mm};
use crate::{
    AccessKind, CostModel, FaultKind, MapError, Mm, MmuConfig, MmuCpu, PagingMode, Prot, Pte,
    PteFlags, TlbConfig, TlbGeometry,
};
use mm_sync::untracked;
use mm_types::{CpuId, Gfp, Order, Pfn, PhysAddr, SwapEntry, VirtAddr, PAGE_SIZE};

const BASE: u64 = 0x1000_0000; // vpn 0x10000: a multiple of every set count used here

fn page(i: u64) -> VirtAddr {
    VirtAddr(BASE + i * PAGE_SIZE as u64)
}

/// Allocates a data frame and maps it at `va`.
fn map_new(mm: &Mm, cpu: &mut MmuCpu, va: VirtAddr, prot: Prot) -> Pfn {
    let f = mm
        .mmu()
        .buddy()
        .alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL | Gfp::ZERO)
        .expect("test RAM");
    let pfn = f.into_raw().0;
    assert_eq!(mm.map(cpu, va, pfn, prot), Ok(Pte::NONE));
    pfn
}

/// Zaps everything `mm` maps, frees the data frames and drops the CPU's reference.
fn teardown(mm: &Mm, cpu: &mut MmuCpu) {
    cpu.leave_mm();
    mm.exit_mmap(cpu, frame_of);
}

fn free_pages(mm: &Mm) -> u64 {
    let b = mm.mmu().buddy();
    b.nr_free_pages() + b.pcp_pages()
}

#[test]
fn hand_built_table_translates_and_the_walk_sets_accessed_and_dirty() {
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(1), 256);
    let cpu = &mut cpus[0];
    let mm = mm(&mmu);
    let mem = mmu.buddy().mem().clone();
    let va = VirtAddr(0x0000_7f12_3456_7000);
    let idx = |shift: u32| ((va.0 >> shift) & 511) as usize * 8;
    // PGD -> PUD -> PMD -> PTE by hand, no accessed bits anywhere.
    let [pud, pmd, pt] = [0; 3].map(|_| mmu.alloc_table(CpuId(0)).unwrap().into_raw().0);
    mm.nr_tables.fetch_add(3, untracked::Ordering::Relaxed);
    let data = mmu
        .buddy()
        .alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL)
        .unwrap()
        .into_raw()
        .0;
    let upper = PteFlags::PRESENT | PteFlags::RW | PteFlags::USER;
    let slots = [
        (mm.root(), idx(39), Pte::new(pud, upper)),
        (pud, idx(30), Pte::new(pmd, upper)),
        (pmd, idx(21), Pte::new(pt, upper)),
        (pt, idx(12), Pte::new(data, upper | PteFlags::NX)),
    ];
    for (t, off, e) in slots {
        mem.frame(t).unwrap().write_u64(off, e.raw());
    }
    mem.write_u64(PhysAddr(data.phys().0 + 0x18), 0xfeed_f00d)
        .unwrap();
    let read = |t: Pfn, off: usize| Pte(mem.frame(t).unwrap().read_u64(off));

    cpu.switch_mm(&mm);
    let target = VirtAddr(va.0 + 0x18);
    assert_eq!(
        cpu.translate(target, AccessKind::Read),
        Ok(PhysAddr(data.phys().0 + 0x18))
    );
    assert_eq!(cpu.load_u64(target), Ok(0xfeed_f00d));
    for (t, off, e) in slots {
        let now = read(t, off);
        assert_eq!(now.pfn(), e.pfn());
        assert!(now.is_young(), "the walk sets A at every level: {now:?}");
        assert!(!now.is_dirty(), "a read sets no D: {now:?}");
    }
    let s = cpu.stats();
    assert_eq!((s.misses, s.walks, s.walk_refs, s.l1_hits), (1, 1, 4, 1));

    // The first store through the clean entry walks again to set D; the next one hits.
    cpu.store_u64(target, 0xbeef).unwrap();
    assert!(read(pt, idx(12)).is_dirty());
    assert_eq!(mem.read_u64(PhysAddr(data.phys().0 + 0x18)), Ok(0xbeef));
    cpu.store_u64(target, 0xcafe).unwrap();
    let s = cpu.stats();
    assert_eq!((s.misses, s.walks, s.walk_refs, s.l1_hits), (1, 2, 8, 2));
    assert_eq!(mm.lookup(cpu, va).unwrap(), read(pt, idx(12)));
    // NX holds even though every level allows the rest.
    assert_eq!(
        cpu.fetch(target, &mut [0; 4]).unwrap_err().kind,
        FaultKind::NxViolation
    );
    mm.check_invariants(cpu).unwrap();
    cpu.check_invariants().unwrap();
    teardown(&mm, cpu);
    assert_eq!(mmu.nr_pagetables(), 1, "only the root is left");
    drop(mm);
    assert_eq!(mmu.nr_pagetables(), 0);
}

#[test]
fn faults_report_their_kind_address_and_access() {
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(1), 256);
    let cpu = &mut cpus[0];
    let mm = mm(&mmu);
    assert_eq!(
        cpu.load_u64(page(0)).unwrap_err().kind,
        FaultKind::NoAddressSpace
    );
    cpu.switch_mm(&mm);
    let f = cpu.load_u64(VirtAddr(page(0).0 + 8)).unwrap_err();
    assert_eq!(f.kind, FaultKind::NotPresent);
    assert_eq!(f.addr, VirtAddr(page(0).0 + 8));
    assert_eq!((f.access.kind, f.access.user), (AccessKind::Read, true));
    assert_eq!(
        f.to_string(),
        "page fault at 0x10000008: not present (user read)"
    );

    map_new(&mm, cpu, page(1), Prot::READ);
    assert_eq!(cpu.load_u64(page(1)), Ok(0));
    assert_eq!(
        cpu.tlb_probe(page(1)).map(|t| t.1),
        Some(false),
        "cached read-only"
    );
    let f = cpu.store_u64(page(1), 1).unwrap_err();
    assert_eq!(
        (f.kind, f.access.kind),
        (FaultKind::WriteProtect, AccessKind::Write)
    );
    assert_eq!(
        cpu.tlb_probe(page(1)),
        None,
        "a fault drops the entry it re-walked"
    );

    map_new(&mm, cpu, page(2), Prot::RW | Prot::KERNEL);
    assert_eq!(
        cpu.load_u8(page(2)).unwrap_err().kind,
        FaultKind::UserAccess
    );
    cpu.set_user_mode(false);
    cpu.store_u8(page(2), 9).unwrap();
    assert_eq!(cpu.load_u8(page(2)), Ok(9));
    // A kernel access may use user pages (no SMAP); the cached entry keeps the user bit.
    assert_eq!(cpu.load_u64(page(1)), Ok(0));
    cpu.set_user_mode(true);
    assert_eq!(
        cpu.load_u8(page(2)).unwrap_err().kind,
        FaultKind::UserAccess
    );

    map_new(&mm, cpu, page(3), Prot::READ | Prot::EXEC);
    cpu.fetch(page(3), &mut [0; 16]).unwrap();
    assert_eq!(
        cpu.fetch(page(1), &mut [0; 16]).unwrap_err().kind,
        FaultKind::NxViolation
    );

    let e = SwapEntry {
        kind: 2,
        offset: 0x4242,
    };
    mm.set_swap_pte(cpu, page(4), e).unwrap();
    assert_eq!(cpu.load_u32(page(4)).unwrap_err().kind, FaultKind::Swap(e));
    assert_eq!(mm.lookup(cpu, page(4)).unwrap().swap_entry(), Some(e));
    // Swap-in replaces the swap entry: map returns it.
    let f = mmu
        .buddy()
        .alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL)
        .unwrap();
    assert_eq!(
        mm.map(cpu, page(4), f.into_raw().0, Prot::RW),
        Ok(Pte::swap(e))
    );
    assert!(cpu.store_u32(page(4), 5).is_ok());

    let g = mmu
        .buddy()
        .alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL)
        .unwrap();
    let (gpfn, _) = g.into_raw();
    mm.map(cpu, page(5), gpfn, Prot::NONE).unwrap();
    assert_eq!(cpu.load_u8(page(5)).unwrap_err().kind, FaultKind::ProtNone);
    assert!(matches!(
        mm.map(cpu, page(5), gpfn, Prot::READ),
        Err(MapError::Exists { .. })
    ));

    let high = VirtAddr(1 << 47);
    assert_eq!(cpu.load_u8(high).unwrap_err().kind, FaultKind::NonCanonical);
    assert_eq!(
        mm.map(cpu, high, gpfn, Prot::READ),
        Err(MapError::OutOfRange(high))
    );
    assert_eq!(
        mm.map(cpu, VirtAddr(7), gpfn, Prot::READ),
        Err(MapError::Misaligned(VirtAddr(7)))
    );

    cpu.enter_lazy();
    assert_eq!(
        cpu.load_u64(page(1)).unwrap_err().kind,
        FaultKind::NoAddressSpace
    );
    cpu.switch_mm(&mm);
    assert_eq!(cpu.load_u64(page(1)), Ok(0));
    let before = free_pages(&mm);
    teardown(&mm, cpu);
    assert_eq!(
        free_pages(&mm),
        before + 5 + 3,
        "5 data frames and 3 tables freed"
    );
}

#[test]
fn tlb_set_index_and_lru_replacement_follow_the_configuration() {
    let mut cfg = MmuConfig::x86_64(1);
    cfg.tlb = TlbConfig {
        l1: TlbGeometry {
            entries: 8,
            ways: 2,
        },
        l2: TlbGeometry {
            entries: 16,
            ways: 4,
        },
    };
    let (mmu, mut cpus) = machine(cfg, 256);
    let cpu = &mut cpus[0];
    let mm = mm(&mmu);
    cpu.switch_mm(&mm);
    for i in [0, 4, 5, 8, 12, 16] {
        map_new(&mm, cpu, page(i), Prot::RW);
    }
    let vpn = |i: u64| page(i).vpn().0;
    let l1_set = |cpu: &MmuCpu, i: u64| {
        let l1 = &cpu.tlb().l1;
        let mut v = l1.set_contents(l1.set_of(vpn(i)), cpu.current_pcid());
        v.sort_unstable();
        v
    };
    assert_eq!(cpu.tlb().l1.set_of(vpn(5)), cpu.tlb().l1.set_of(vpn(0)) + 1);
    assert_eq!(cpu.tlb().l2.set_of(vpn(4)), cpu.tlb().l2.set_of(vpn(0)));

    cpu.load_u64(page(0)).unwrap();
    cpu.load_u64(page(4)).unwrap();
    cpu.load_u64(page(5)).unwrap();
    assert_eq!(
        l1_set(cpu, 0),
        [vpn(0), vpn(4)],
        "4 sets: vpn & 3 picks the set"
    );
    assert_eq!(l1_set(cpu, 5), [vpn(5)]);
    cpu.load_u64(page(0)).unwrap(); // 0 is now more recent than 4
    cpu.load_u64(page(8)).unwrap(); // evicts 4, the least recently used
    assert_eq!(l1_set(cpu, 0), [vpn(0), vpn(8)]);
    let s = cpu.stats();
    assert_eq!((s.walks, s.l1_hits, s.l2_hits), (4, 1, 0));

    // 4 is still in the 4-way L2 set: an L2 hit refills L1 (evicting 0, now the LRU).
    cpu.load_u64(page(4)).unwrap();
    assert_eq!(cpu.stats().l2_hits, 1);
    assert_eq!(cpu.stats().walks, 4);
    assert_eq!(l1_set(cpu, 0), [vpn(4), vpn(8)]);
    // L2 set 0 holds 0, 4, 8; 12 fills it, 16 evicts 0 (filled first, never refreshed).
    cpu.load_u64(page(12)).unwrap();
    cpu.load_u64(page(16)).unwrap();
    let l2 = &cpu.tlb().l2;
    let mut in_l2 = l2.set_contents(l2.set_of(vpn(0)), cpu.current_pcid());
    in_l2.sort_unstable();
    assert_eq!(in_l2, [vpn(4), vpn(8), vpn(12), vpn(16)]);
    assert_eq!(cpu.tlb().l1.occupancy(), 3, "set 0 full, set 1 holds 5");
    cpu.load_u64(page(0)).unwrap();
    assert_eq!(cpu.stats().walks, 7, "0 had left both levels");
    cpu.check_invariants().unwrap();
    teardown(&mm, cpu);
}

#[test]
fn pcid_reuse_flushes_the_stale_tags_and_cached_asids_skip_the_flush() {
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(1), 512);
    let cpu = &mut cpus[0];
    let va = page(0);
    // Seven address spaces map the same address to different frames holding their index.
    let mms: Vec<_> = (0..7u64)
        .map(|i| {
            let m = mm(&mmu);
            let pfn = map_new(&m, cpu, va, Prot::RW);
            mmu.buddy().mem().write_u64(pfn.phys(), 100 + i).unwrap();
            m
        })
        .collect();
    for (i, m) in mms.iter().enumerate().take(6) {
        cpu.switch_mm(m);
        assert_eq!(
            cpu.current_pcid(),
            i as u64 + 1,
            "ASIDs 0..5 handed out in order"
        );
        assert_eq!(cpu.load_u64(va), Ok(100 + i as u64));
    }
    assert_eq!(cpu.stats().asid_recycles, 0);
    // The 7th reuses ASID 0, which tagged mm 0: its entries must go.
    cpu.switch_mm(&mms[6]);
    assert_eq!(cpu.current_pcid(), 1);
    assert_eq!(cpu.stats().asid_recycles, 1);
    assert_eq!(
        cpu.tlb_probe(va),
        None,
        "mm 0's entry under PCID 1 was flushed"
    );
    assert_eq!(cpu.load_u64(va), Ok(106), "not mm 0's stale translation");
    // Back to mm 0: it lost its slot, so it recycles ASID 1 (mm 1's) and walks.
    let walks = cpu.stats().walks;
    cpu.switch_mm(&mms[0]);
    assert_eq!(cpu.current_pcid(), 2);
    assert_eq!(cpu.load_u64(va), Ok(100));
    assert_eq!(cpu.stats().walks, walks + 1);
    // mm 5 still owns ASID 5 and nothing changed: no flush, its entry is still in L2.
    let (walks, flushes) = (cpu.stats().walks, cpu.stats().full_flushes);
    cpu.switch_mm(&mms[5]);
    assert_eq!(cpu.current_pcid(), 6);
    assert_eq!(cpu.load_u64(va), Ok(105));
    assert_eq!(cpu.stats().walks, walks);
    assert_eq!(cpu.stats().full_flushes, flushes);
    // A flush of mm 5 while loaded bumps its generation; a later switch back after leaving
    // compares generations and flushes.
    cpu.switch_mm(&mms[4]);
    mms[5].flush_tlb_mm(cpu);
    let flushes = cpu.stats().full_flushes;
    cpu.switch_mm(&mms[5]);
    assert_eq!(
        cpu.stats().full_flushes,
        flushes + 1,
        "behind on tlb_gen: flush"
    );
    cpu.check_invariants().unwrap();
    for m in &mms {
        teardown(m, cpu);
    }
}

#[test]
fn without_pcid_every_switch_flushes() {
    let mut cfg = MmuConfig::x86_64(1);
    cfg.pcid = false;
    let (mmu, mut cpus) = machine(cfg, 256);
    let cpu = &mut cpus[0];
    let (a, b) = (mm(&mmu), mm(&mmu));
    map_new(&a, cpu, page(0), Prot::RW);
    map_new(&b, cpu, page(0), Prot::RW);
    for _ in 0..3 {
        for m in [&a, &b] {
            cpu.switch_mm(m);
            assert_eq!(cpu.current_pcid(), 1);
            cpu.load_u64(page(0)).unwrap();
        }
    }
    assert_eq!(cpu.stats().walks, 6, "every switch lost the other's entry");
    assert_eq!(cpu.stats().full_flushes, 6);
    teardown(&a, cpu);
    teardown(&b, cpu);
}

#[test]
fn five_level_addresses_translate() {
    let mut cfg = MmuConfig::x86_64(1);
    cfg.paging = PagingMode::FiveLevel;
    let (mmu, mut cpus) = machine(cfg, 256);
    let cpu = &mut cpus[0];
    let mm = mm(&mmu);
    cpu.switch_mm(&mm);
    // Above the 4-level limit (2^47), below the 5-level one (2^56).
    let va = VirtAddr(0x00ab_cdef_1234_5000);
    let pfn = map_new(&mm, cpu, va, Prot::RW);
    assert_eq!(
        mm.pgtables_bytes(),
        5 * PAGE_SIZE as u64,
        "PGD, P4D, PUD, PMD, PTE"
    );
    cpu.store_u64(VirtAddr(va.0 + 8), 0x5151).unwrap();
    assert_eq!(
        mmu.buddy().mem().read_u64(PhysAddr(pfn.phys().0 + 8)),
        Ok(0x5151)
    );
    assert_eq!(cpu.stats().walk_refs, 5, "one reference per level");
    // The PGD index is VA bits 48..56.
    let root = mmu.buddy().mem().frame(mm.root()).unwrap();
    assert!(Pte(root.read_u64(0xab * 8)).is_present());
    assert_eq!(
        cpu.translate(VirtAddr(va.0 + 8), AccessKind::Read),
        Ok(PhysAddr(pfn.phys().0 + 8))
    );
    assert_eq!(
        cpu.load_u8(VirtAddr(1 << 56)).unwrap_err().kind,
        FaultKind::NonCanonical
    );
    teardown(&mm, cpu);

    // The same address does not exist with 4 levels.
    let (mmu4, mut cpus4) = machine(MmuConfig::x86_64(1), 64);
    let mm4 = super::fixture::mm(&mmu4);
    assert_eq!(
        mm4.map(&mut cpus4[0], va, Pfn(1), Prot::RW),
        Err(MapError::OutOfRange(va))
    );
}

#[test]
fn unaligned_and_slice_accesses_cross_pages() {
    let (mmu, mut cpus) = machine(MmuConfig::x86_64(1), 256);
    let cpu = &mut cpus[0];
    let mm = mm(&mmu);
    cpu.switch_mm(&mm);
    let p0 = map_new(&mm, cpu, page(0), Prot::RW);
    let p1 = map_new(&mm, cpu, page(1), Prot::RW);
    let edge = VirtAddr(page(1).0 - 4);
    cpu.store_u64(edge, 0x1122_3344_5566_7788).unwrap();
    assert_eq!(cpu.load_u64(edge), Ok(0x1122_3344_5566_7788));
    let mem = mmu.buddy().mem();
    assert_eq!(mem.read_u32(PhysAddr(p0.phys().0 + 4092)), Ok(0x5566_7788));
    assert_eq!(mem.read_u32(p1.phys()), Ok(0x1122_3344));
    let msg: Vec<u8> = (0..100u8).collect();
    cpu.write(VirtAddr(page(1).0 - 50), &msg).unwrap();
    let mut back = vec![0; 100];
    cpu.read(VirtAddr(page(1).0 - 50), &mut back).unwrap();
    assert_eq!(back, msg);
    cpu.store_u32(VirtAddr(page(0).0 + 2), 0xa1b2_c3d4).unwrap();
    assert_eq!(cpu.load_u32(VirtAddr(page(0).0 + 2)), Ok(0xa1b2_c3d4));
    // A slice reaching an unmapped page writes the mapped part and faults at the next page.
    let f = cpu.write(VirtAddr(page(2).0 - 8), &[0xee; 16]).unwrap_err();
    assert_eq!(f.addr, page(2));
    assert_eq!(
        mem.read_u64(PhysAddr(p1.phys().0 + 4088)),
        Ok(u64::from_le_bytes([0xee; 8]))
    );
    teardown(&mm, cpu);
}

#[test]
fn amat_follows_the_cost_model() {
    let mut cfg = MmuConfig::x86_64(1);
    cfg.costs = CostModel {
        l1_hit: 1,
        l2_hit: 10,
        walk_ref: 100,
        fault: 1000,
    };
    let (mmu, mut cpus) = machine(cfg, 256);
    let cpu = &mut cpus[0];
    let mm = mm(&mmu);
    cpu.switch_mm(&mm);
    map_new(&mm, cpu, page(0), Prot::RW);
    cpu.load_u64(page(0)).unwrap(); // walk: 1 + 10 + 4 * 100
    cpu.load_u64(page(0)).unwrap(); // L1 hit: 1
    assert_eq!(cpu.cycles(), 412);
    assert_eq!(cpu.amat(), 206.0);
    // Nothing mapped in this 512 GiB slot: the walk stops at the root, 1 reference.
    cpu.load_u64(VirtAddr(1 << 40)).unwrap_err();
    assert_eq!(cpu.cycles(), 412 + 1 + 10 + 100 + 1000);
    assert_eq!(cpu.stats().accesses(), 3);
    teardown(&mm, cpu);
}

#[test]
fn configurations_are_validated() {
    use crate::{ConfigError, Mmu};
    let mut cfg = MmuConfig::x86_64(2);
    cfg.tlb.l2.entries = 1500;
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::TlbGeometry { level: "l2", .. })
    ));
    let mut cfg = MmuConfig::x86_64(2);
    cfg.tlb.l1 = TlbGeometry {
        entries: 48,
        ways: 4,
    };
    assert!(cfg.validate().is_err(), "12 sets is not a power of two");
    let mut cfg = MmuConfig::x86_64(2);
    cfg.nr_dyn_asids = 0;
    assert_eq!(cfg.validate(), Err(ConfigError::Asids(0)));
    assert_eq!(MmuConfig::x86_64(0).validate(), Err(ConfigError::Cpus(0)));
    assert!(MmuConfig::x86_64(256).validate().is_ok());
    assert_eq!(
        Mmu::new(MmuConfig::x86_64(4), super::fixture::buddy(2, 64)).unwrap_err(),
        ConfigError::CpuMismatch { mmu: 4, buddy: 2 }
    );
}
