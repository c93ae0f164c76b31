//! Machine boot and `/proc` rendering.

use super::*;

fn config(memory_bytes: u64) -> MachineConfig {
    MachineConfig {
        cpus: 2,
        memory_bytes,
        zones: None,
        sysctl: Sysctl::default(),
        disk: crate::DiskSpec::default(),
        cost: mm_mmu::CostModel::modern_x86(),
    }
}

#[test]
fn zones_are_derived_from_the_memory_size() {
    let z = derive_zones(1 << 20); // 4 GiB
    assert_eq!(z.len(), 2);
    assert_eq!(
        (z[0].id, z[0].start_pfn, z[0].spanned),
        (ZoneId::Dma, 1, 4095)
    );
    assert_eq!(
        (z[1].id, z[1].start_pfn, z[1].spanned),
        (ZoneId::Dma32, 4096, (1 << 20) - 4096)
    );
    let z = derive_zones(3 << 20); // 12 GiB
    assert_eq!(z[2].id, ZoneId::Normal);
    assert_eq!(z[2].spanned, 2 << 20);
    assert_eq!(derive_zones(4096).len(), 1, "16 MiB: DMA only");
}

#[test]
fn meminfo_has_kernel_layout_and_consistent_numbers() {
    let m = Machine::boot(&config(4 << 30)).unwrap();
    let text = m.proc_file(ProcFile::Meminfo);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("MemTotal:       {:>8} kB", ((1u64 << 20) - 1) * 4)
    );
    for l in &lines {
        // Values are right-aligned to column 24 (27 with " kB") unless wider than 8 digits.
        let width = if l.ends_with(" kB") { 27 } else { 24 };
        assert!(
            l.len() == width || l.starts_with("VmallocTotal"),
            "misaligned: {l:?}"
        );
    }
    assert!(text.contains("\nVmallocTotal:   34359738367 kB\n"));
    assert!(text.contains("\nHugePages_Total:       0\n"));
    let field = |name: &str| -> u64 {
        let l = lines
            .iter()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap();
        l.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // At boot only the slab's first slabs are allocated; the other pages that are not free
    // sit on the pcp lists that served them.
    // (plus the shared zero page).
    let pcp_kb = m.buddy().pcp_pages() * 4;
    assert_eq!(
        field("MemFree") + pcp_kb + field("Slab") + 4,
        field("MemTotal")
    );
    assert!(
        field("MemAvailable") < field("MemFree"),
        "totalreserve is not available"
    );
    let direct = field("DirectMap4k") + field("DirectMap2M") + field("DirectMap1G");
    assert_eq!(direct, 4 << 20, "the direct map covers all RAM");
    // The same labels, in the same order, as a real 6.18 kernel prints (reference host).
    let host = include_str!("../../../tests/it/data/host-6.18-2cpu.meminfo");
    let labels = |t: &str| {
        t.lines()
            .map(|l| l.split(':').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(labels(&text), labels(host));
}

#[test]
fn buddyinfo_and_vmstat_match_the_kernel_layout() {
    let m = Machine::boot(&config(4 << 30)).unwrap();
    let b = m.proc_file(ProcFile::Buddyinfo);
    let first = b.lines().next().unwrap();
    assert!(first.starts_with("Node 0, zone      DMA "), "{first}");
    assert!(first.ends_with(' '), "buddyinfo lines end in a space");
    let dma32 = b.lines().nth(1).unwrap();
    assert!(dma32.starts_with("Node 0, zone    DMA32 "));
    let blocks = m.buddy().zone_info(ZoneId::Dma32).free_blocks;
    let counts: Vec<u64> = dma32[22..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts, blocks, "{dma32}");
    assert!(
        blocks[10] >= 1019,
        "4 GiB - 16 MiB is ~1020 4 MiB blocks: {dma32}"
    );
    let v = m.proc_file(ProcFile::Vmstat);
    let host = include_str!("../../../tests/it/data/host-6.18-2cpu.vmstat");
    let names = |t: &str| {
        t.lines()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&v),
        names(host),
        "same counters in the same order as 6.18"
    );
    let blocks: u64 = ZoneId::ALL
        .iter()
        .map(|z| m.buddy().zone_info(*z).nr_free_pages_blocks)
        .sum();
    assert!(v.contains(&format!("\nnr_free_pages_blocks {blocks}\n")));
}

#[test]
fn allocation_shows_up_in_every_view() {
    let m = Machine::boot(&config(1 << 30)).unwrap();
    let counter = |text: &str, name: &str| -> u64 {
        let l = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap();
        l.split(' ').nth(1).unwrap().parse().unwrap()
    };
    let before = m.proc_file(ProcFile::Vmstat);
    let f = m
        .buddy()
        .alloc(
            mm_types::CpuId(1),
            mm_types::Order::new(2).unwrap(),
            mm_types::Gfp::GFP_KERNEL,
        )
        .unwrap();
    let v = m.proc_file(ProcFile::Vmstat);
    assert_eq!(
        counter(&v, "pgalloc_dma32"),
        counter(&before, "pgalloc_dma32") + 4
    );
    let z = m.proc_file(ProcFile::Zoneinfo);
    assert!(z.contains("\n    cpu: 1\n              count:    "), "{z}");
    m.buddy().free(mm_types::CpuId(1), f);
    let v = m.proc_file(ProcFile::Vmstat);
    assert_eq!(counter(&v, "pgfree"), counter(&before, "pgfree") + 4);
}

#[test]
fn boot_errors_are_typed() {
    let mut c = config(1 << 30);
    c.cpus = 0;
    assert!(matches!(Machine::boot(&c), Err(BootError::Config(_))));
    let mut c = config(1 << 30);
    c.sysctl.watermark_scale_factor = 0;
    assert!(matches!(Machine::boot(&c), Err(BootError::Buddy(_))));
    assert_eq!("zoneinfo".parse::<ProcFile>(), Ok(ProcFile::Zoneinfo));
    assert!("slab"
        .parse::<ProcFile>()
        .unwrap_err()
        .contains("one of: meminfo"));
}

#[test]
fn slab_caches_exist_at_boot_and_show_in_meminfo() {
    let m = Machine::boot(&config(1 << 30)).unwrap();
    let info = m.proc_file(ProcFile::Slabinfo);
    assert!(info.starts_with("slabinfo - version: 2.1\n# name "));
    for name in [
        "kmalloc-8 ",
        "kmalloc-96 ",
        "kmalloc-192 ",
        "kmalloc-8k ",
        "vm_area_struct ",
        "mm_struct ",
        "task_struct ",
    ] {
        assert!(
            info.lines().any(|l| l.starts_with(name)),
            "no {name} line:\n{info}"
        );
    }
    let meminfo = m.proc_file(ProcFile::Meminfo);
    let kb = |label: &str| -> u64 {
        let l = meminfo.lines().find(|l| l.starts_with(label)).unwrap();
        l.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert!(kb("Slab:") > 0, "the boot caches hold slabs");
    assert_eq!(kb("Slab:"), kb("SReclaimable:") + kb("SUnreclaim:"));
    assert_eq!(kb("Slab:"), m.slab().slab_pages() * 4);
    assert_eq!(kb("KReclaimable:"), kb("SReclaimable:"));
}

/// Allocated objects (not on any freelist) of the caches the VMA layer allocates from:
/// mm_struct, vm_area_struct, anon_vma, anon_vma_chain.
fn kernel_objects(m: &Machine) -> [u64; 4] {
    use mm_slab::StdCache::*;
    [MmStruct, VmAreaStruct, AnonVma, AnonVmaChain].map(|c| {
        let n = m.slab().cache_counts(m.slab().std_cache(c)).unwrap();
        assert_eq!(n.cpus_skipped, 0, "no CPU is running");
        n.total_objects - n.free_objects
    })
}

/// Flushes the CPU slabs of those caches and `task_struct`'s and frees their empty slabs
/// (`kmem_cache_shrink`).
fn shrink_kernel_object_caches(m: &Machine) {
    use mm_slab::StdCache::*;
    for c in [MmStruct, VmAreaStruct, AnonVma, AnonVmaChain, TaskStruct] {
        m.slab().shrink_cache(CpuId(0), m.slab().std_cache(c));
    }
}

/// `(active_objs, num_objs)` of a cache's `/proc/slabinfo` line.
fn slabinfo_objs(m: &Machine, name: &str) -> (u64, u64) {
    let text = m.proc_file(ProcFile::Slabinfo);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} line:\n{text}"));
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    (f[0], f[1])
}

#[test]
fn a_process_s_kernel_objects_show_in_slabinfo_until_it_exits() {
    use mm_types::{Pid, VirtAddr};
    use mm_vma::{Layout, MapFlags, ProtFlags};
    let mut m = Machine::boot(&config(256 << 20)).unwrap();
    let names = ["mm_struct", "vm_area_struct", "anon_vma", "anon_vma_chain"];
    let before = kernel_objects(&m);
    let rows: Vec<_> = names.iter().map(|n| slabinfo_objs(&m, n)).collect();
    let mut cpus = m.take_cpus().unwrap();
    let ctx = &mut cpus[0];
    let space = AddressSpace::new(m.vm(), ctx, Pid(1), &Layout::plain()).unwrap();
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    for i in 0..6 {
        let prot = if i % 2 == 0 {
            ProtFlags::RW
        } else {
            ProtFlags::READ
        };
        let a = space
            .mmap(ctx, VirtAddr(0), 4096, prot, anon, None)
            .unwrap();
        if i % 2 == 0 {
            ctx.store_u64(&space, a, 1).unwrap();
        }
    }
    let vmas = space.map_count() as u64;
    assert_eq!(
        kernel_objects(&m),
        [
            before[0] + 1,
            before[1] + vmas,
            before[2] + 3,
            before[3] + 3
        ],
        "one mm_struct, a vm_area_struct per VMA, an anon_vma and a chain link for each \
         VMA written to"
    );
    for (i, name) in names.iter().enumerate() {
        let (active, num) = slabinfo_objs(&m, name);
        let now = kernel_objects(&m)[i];
        assert!(
            active >= now && active > rows[i].0 && num >= active,
            "{name}: active {active} of {num}, {now} live"
        );
    }
    let child = space.fork(ctx, Pid(2)).unwrap();
    assert_eq!(
        kernel_objects(&m)[1],
        before[1] + 2 * vmas,
        "fork doubles the VMAs"
    );
    child.exit(ctx);
    space.exit(ctx);
    ctx.mmu().leave_mm();
    m.return_cpus(cpus);
    assert_eq!(kernel_objects(&m), before, "exit frees every object");
    // With the CPU slabs flushed and empty slabs freed, slabinfo is back where it was.
    shrink_kernel_object_caches(&m);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(slabinfo_objs(&m, name), rows[i], "{name}");
    }
}

mod run {
    use super::*;
    use crate::workload::*;
    use mm_types::{Pid, VirtAddr};

    const PAGES: u64 = 256;

    #[derive(Debug, Clone, Copy)]
    enum Step {
        Map,
        Store(u64, u64),
        /// Load page, expecting the value `owner` (this process when `None`) stored in `round`.
        Load(u64, u64, Option<Pid>),
        Fork,
    }

    /// Maps `PAGES` anonymous pages, stores (pid, page, round) into each and reads every page
    /// back, for some rounds; optionally then forks a child that first checks it sees the
    /// parent's last values and then writes and checks its own.
    struct Toucher {
        steps: std::collections::VecDeque<Step>,
        base: Option<VirtAddr>,
        expect: Option<u64>,
        integrity: Integrity,
        last_round: u64,
    }

    fn rounds(steps: &mut std::collections::VecDeque<Step>, from: u64, to: u64) {
        for r in from..=to {
            steps.extend((0..PAGES).map(|p| Step::Store(p, r)));
            steps.extend((0..PAGES).map(|p| Step::Load(p, r, None)));
        }
    }

    fn toucher(n: u64, fork_child: bool) -> Box<dyn Workload> {
        let mut steps = std::collections::VecDeque::from([Step::Map]);
        rounds(&mut steps, 1, n);
        if fork_child {
            steps.push_back(Step::Fork);
        }
        Box::new(Toucher {
            steps,
            base: None,
            expect: None,
            integrity: Integrity::default(),
            last_round: n,
        })
    }

    fn value(pid: Pid, page: u64, round: u64) -> u64 {
        ((pid.0 as u64) << 48) | (page << 16) | round
    }

    impl Toucher {
        fn addr(&self, page: u64) -> VirtAddr {
            VirtAddr(self.base.expect("mapped").0 + page * 4096 + 8 * (page % 500))
        }
    }

    impl Workload for Toucher {
        fn next(&mut self, last: OpResult, env: &WorkloadEnv) -> Option<Op> {
            if let Some(exp) = self.expect.take() {
                match last {
                    OpResult::Value(v) if v == exp => self.integrity.bytes_verified += 8,
                    _ => self.integrity.corruptions += 1,
                }
            }
            if let OpResult::Addr(a) = last {
                self.base = Some(a);
            }
            let pid = env.pid;
            Some(match self.steps.pop_front()? {
                Step::Map => Op::Mmap {
                    addr: None,
                    len: PAGES * 4096,
                    prot: PROT_READ | PROT_WRITE,
                    flags: MAP_PRIVATE | MAP_ANONYMOUS,
                },
                Step::Store(p, r) => Op::Store {
                    addr: self.addr(p),
                    value: value(pid, p, r),
                },
                Step::Load(p, r, owner) => {
                    self.expect = Some(value(owner.unwrap_or(pid), p, r));
                    Op::Load { addr: self.addr(p) }
                }
                Step::Fork => {
                    let mut steps: std::collections::VecDeque<Step> = (0..PAGES)
                        .map(|p| Step::Load(p, self.last_round, Some(pid)))
                        .collect();
                    rounds(&mut steps, 101, 102);
                    Op::Fork {
                        child: Box::new(Toucher {
                            steps,
                            base: self.base,
                            expect: None,
                            integrity: Integrity::default(),
                            last_round: 102,
                        }),
                    }
                }
            })
        }

        fn integrity(&self) -> Integrity {
            self.integrity
        }
    }

    /// Loads from an address nobody mapped.
    struct Stray;

    impl Workload for Stray {
        fn next(&mut self, last: OpResult, _: &WorkloadEnv) -> Option<Op> {
            match last {
                OpResult::Start => Some(Op::Load {
                    addr: VirtAddr(0x10_0000),
                }),
                other => panic!("a stray load must end the process, got {other:?}"),
            }
        }
    }

    fn plan(name: &str, threads: Vec<Box<dyn Workload>>) -> ProcessPlan {
        ProcessPlan {
            name: name.into(),
            oom_score_adj: 0,
            cpus: None,
            start_after: std::time::Duration::ZERO,
            threads,
        }
    }

    #[test]
    fn processes_run_verify_their_data_and_fork() {
        let mut m = Machine::boot(&MachineConfig {
            cpus: 4,
            ..config(256 << 20)
        })
        .unwrap();
        let free_before = m.buddy().nr_free_pages() + m.buddy().pcp_pages();
        let objects_before = kernel_objects(&m);
        let r = m
            .run(
                vec![
                    plan("toucher", vec![toucher(3, true), toucher(2, false)]),
                    plan("stray", vec![Box::new(Stray)]),
                ],
                &RunOpts::default(),
            )
            .unwrap();
        assert!(r.stall.is_none());
        assert_eq!(r.integrity.corruptions, 0, "{r:?}");
        // Parent: 3 rounds; second thread: 2; child: the inherited check plus 2 rounds.
        assert_eq!(
            r.integrity.bytes_verified,
            8 * PAGES * (3 + 2 + 1 + 2),
            "{:?}",
            r.integrity
        );
        assert!(
            r.invariant_violations.is_empty(),
            "{:?}",
            r.invariant_violations
        );
        let stray = r.processes.iter().find(|p| p.name == "stray").unwrap();
        assert_eq!(stray.exit, ExitKind::Segv, "{stray:?}");
        let tp: Vec<_> = r.processes.iter().filter(|p| p.name == "toucher").collect();
        assert_eq!(tp.len(), 2, "parent and forked child: {tp:?}");
        assert!(tp.iter().all(|p| p.exit == ExitKind::Ok && p.min_flt > 0));
        let vm = |n: &str| r.vmstat.iter().find(|(k, _)| k == n).unwrap().1;
        assert!(vm("pgfault") >= 2 * PAGES, "pgfault {}", vm("pgfault"));
        assert!(r.tlb.hits > 0 && r.tlb.misses > 0 && r.tlb.amat_cycles > 0.0);
        // Every kernel object the processes had is freed; once their caches give their empty
        // slabs back, every page the processes used came back.
        assert_eq!(kernel_objects(&m), objects_before, "kernel objects leaked");
        shrink_kernel_object_caches(&m);
        let free_after = m.buddy().nr_free_pages() + m.buddy().pcp_pages();
        assert_eq!(free_after, free_before, "pages leaked by the run");
        assert_eq!(
            m.run(vec![], &RunOpts::default()).unwrap().processes,
            vec![]
        );
    }

    #[test]
    fn eight_cpus_on_a_small_host_finish_without_a_stall() {
        let mut m = Machine::boot(&MachineConfig {
            cpus: 8,
            ..config(256 << 20)
        })
        .unwrap();
        let plans = (0..8)
            .map(|i| plan(&format!("t{i}"), vec![toucher(4, false)]))
            .collect();
        let r = m.run(plans, &RunOpts::default()).unwrap();
        assert!(r.stall.is_none());
        assert_eq!(r.integrity.corruptions, 0);
        assert_eq!(r.processes.len(), 8);
        assert!(r.processes.iter().all(|p| p.exit == ExitKind::Ok));
        assert!(r.invariant_checks >= 1 && r.invariant_violations.is_empty());
    }
}

mod daemons;
