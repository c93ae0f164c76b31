//! The daemon actors in whole runs: kswapd under pressure, the I/O engine parking tasks, the
//! OOM path with the reaper, and the per-process /proc snapshots.

use super::*;
use crate::workload::*;
use mm_slab::SlabAllocator;
use mm_sync::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use mm_sync::sync::Arc;
use mm_types::{CpuId, Errno, Gfp, VirtAddr};
use std::time::Duration;

const PAGE: u64 = 4096;

fn plan(name: &str, threads: Vec<Box<dyn Workload>>) -> ProcessPlan {
    ProcessPlan {
        name: name.into(),
        oom_score_adj: 0,
        cpus: None,
        start_after: Duration::ZERO,
        threads,
    }
}

/// Maps `pages` and writes one word in each, then exits.
struct Hog {
    pages: u64,
    next: u64,
    base: Option<VirtAddr>,
}

fn hog(pages: u64) -> Box<dyn Workload> {
    Box::new(Hog {
        pages,
        next: 0,
        base: None,
    })
}

impl Workload for Hog {
    fn next(&mut self, last: OpResult, _: &WorkloadEnv) -> Option<Op> {
        let Some(base) = self.base else {
            if let OpResult::Addr(a) = last {
                self.base = Some(a);
                return self.next(OpResult::Ok, &WORKLOAD_ENV);
            }
            return Some(Op::Mmap {
                addr: None,
                len: self.pages * PAGE,
                prot: PROT_READ | PROT_WRITE,
                flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
            });
        };
        if self.next == self.pages {
            return None;
        }
        self.next += 1;
        Some(Op::Store {
            addr: VirtAddr(base.0 + (self.next - 1) * PAGE),
            value: self.next,
        })
    }
}

const WORKLOAD_ENV: WorkloadEnv = WorkloadEnv {
    pid: mm_types::Pid(0),
    mem_total: 0,
    elapsed: Duration::ZERO,
};

fn small(cpus: u32, mib: u64) -> MachineConfig {
    let mut c = config(mib << 20);
    c.cpus = cpus;
    c
}

#[test]
fn kswapd_wakes_below_the_low_watermark_and_runs_the_shrinkers() {
    // No watermark boosting: the boost kswapd clears asynchronously would otherwise make the
    // allocations near the min watermark depend on kswapd's timing (there is nothing else
    // to reclaim on this machine).
    let mut cfg = small(2, 64);
    cfg.sysctl.watermark_boost_factor = 0;
    let mut m = Machine::boot(&cfg).unwrap();
    // A dentry cache with plenty of unused entries for kswapd's shrinker pass to trim.
    let grown = m
        .slab()
        .dcache()
        .grow(&m.slab().cpu(CpuId(0)), 20_000, Gfp::GFP_KERNEL);
    assert_eq!(grown, 20_000);
    let marks = |f: fn(&mm_buddy::Watermarks) -> u64| {
        ZoneId::ALL
            .iter()
            .map(|z| m.buddy().zone(*z))
            .filter(|z| z.is_populated())
            .map(|z| f(&z.watermarks()))
            .sum::<u64>()
    };
    let (min, low) = (marks(|w| w.min), marks(|w| w.low));
    let free = m.buddy().nr_free_pages();
    // Leave free memory between the min and low watermarks (page tables take a few pages
    // more): the allocator falls below low and wakes kswapd, and still succeeds above min.
    let r = m
        .run(
            vec![plan("hog", vec![hog(free - (min + low) / 2 - 64)])],
            &RunOpts::default(),
        )
        .unwrap();
    assert_eq!(r.processes[0].exit, ExitKind::Ok, "{:?}", r.processes);
    let d = &r.daemons;
    assert!(d.kswapd_wakeups >= 1, "{d:?}");
    assert!(d.kswapd_runs >= 1, "{d:?}");
    assert!(d.kswapd_slab_freed > 0, "{d:?}");
    assert!(m.slab().dcache().nr_dentry() < 20_000);
    let pageoutrun = r.vmstat.iter().find(|(k, _)| k == "pageoutrun").unwrap().1;
    assert_eq!(pageoutrun, d.kswapd_runs);
    // Every actor got its Shutdown message and was joined.
    for (name, n) in &d.messages {
        assert!(*n >= 1, "{name} handled no message");
    }
}

#[test]
fn a_quiet_run_never_wakes_kswapd() {
    let mut m = Machine::boot(&small(2, 64)).unwrap();
    let r = m
        .run(vec![plan("small", vec![hog(256)])], &RunOpts::default())
        .unwrap();
    assert_eq!(r.daemons.kswapd_wakeups, 0);
    assert_eq!(r.daemons.kswapd_runs, 0);
}

/// Writes a pattern to the disk and reads it back into another page, `rounds` times,
/// verifying every word; `in_flight` is set while a request is outstanding.
struct DiskUser {
    rounds: u64,
    round: u64,
    step: u8,
    base: Option<VirtAddr>,
    in_flight: Arc<AtomicBool>,
    integrity: Integrity,
    word: u64,
}

const WORDS: u64 = 512;

impl DiskUser {
    fn pattern(round: u64, w: u64) -> u64 {
        0xd15c_0000_0000_0000 | (round << 16) | w
    }
}

impl Workload for DiskUser {
    fn next(&mut self, last: OpResult, _: &WorkloadEnv) -> Option<Op> {
        self.in_flight.store(false, Ordering::SeqCst);
        let Some(base) = self.base else {
            if let OpResult::Addr(a) = last {
                self.base = Some(a);
                return self.next(OpResult::Ok, &WORKLOAD_ENV);
            }
            return Some(Op::Mmap {
                addr: None,
                len: 2 * PAGE,
                prot: PROT_READ | PROT_WRITE,
                flags: MAP_PRIVATE | MAP_ANONYMOUS,
            });
        };
        let (src, dst) = (base, VirtAddr(base.0 + PAGE));
        loop {
            match self.step {
                // Fill the source page.
                0 if self.word < WORDS => {
                    self.word += 1;
                    return Some(Op::Store {
                        addr: VirtAddr(src.0 + (self.word - 1) * 8),
                        value: Self::pattern(self.round, self.word - 1),
                    });
                }
                0 => {
                    self.step = 1;
                    self.in_flight.store(true, Ordering::SeqCst);
                    return Some(Op::FileWrite {
                        file: 7,
                        offset: self.round * PAGE,
                        buf: src,
                        len: PAGE,
                    });
                }
                1 => {
                    assert_eq!(last, OpResult::Value(PAGE), "pwrite");
                    self.step = 2;
                    self.in_flight.store(true, Ordering::SeqCst);
                    return Some(Op::FileRead {
                        file: 7,
                        offset: self.round * PAGE,
                        buf: dst,
                        len: PAGE,
                    });
                }
                2 => {
                    assert_eq!(last, OpResult::Value(PAGE), "pread");
                    self.step = 3;
                    self.word = 0;
                }
                // Verify the destination page.
                3 => {
                    if self.word > 0 {
                        match last {
                            OpResult::Value(v) if v == Self::pattern(self.round, self.word - 1) => {
                                self.integrity.bytes_verified += 8
                            }
                            _ => self.integrity.corruptions += 1,
                        }
                    }
                    if self.word < WORDS {
                        self.word += 1;
                        return Some(Op::Load {
                            addr: VirtAddr(dst.0 + (self.word - 1) * 8),
                        });
                    }
                    self.round += 1;
                    self.step = 0;
                    self.word = 0;
                    if self.round == self.rounds {
                        return None;
                    }
                }
                _ => unreachable!(),
            }
        }
    }

    fn integrity(&self) -> Integrity {
        self.integrity
    }
}

/// Stores in a loop for `ops` operations, counting those it ran while `watch` was set.
struct Spinner {
    ops: u64,
    watch: Arc<AtomicBool>,
    while_set: Arc<AtomicU64>,
    base: Option<VirtAddr>,
}

impl Workload for Spinner {
    fn next(&mut self, last: OpResult, _: &WorkloadEnv) -> Option<Op> {
        let Some(base) = self.base else {
            if let OpResult::Addr(a) = last {
                self.base = Some(a);
            }
            return Some(Op::Mmap {
                addr: None,
                len: PAGE,
                prot: PROT_READ | PROT_WRITE,
                flags: MAP_PRIVATE | MAP_ANONYMOUS,
            })
            .filter(|_| self.base.is_none())
            .or(Some(Op::Yield));
        };
        if self.ops == 0 {
            return None;
        }
        self.ops -= 1;
        if self.watch.load(Ordering::SeqCst) {
            self.while_set.fetch_add(1, Ordering::Relaxed);
        }
        Some(Op::Store {
            addr: base,
            value: self.ops,
        })
    }
}

#[test]
fn a_task_waiting_for_the_disk_is_parked_while_its_cpu_runs_another() {
    // One CPU and a slow disk: the spinner can only run while the disk user waits if the
    // waiting task is parked rather than holding the CPU.
    let mut cfg = small(1, 64);
    cfg.disk = DiskSpec {
        latency_us: 2000,
        mib_per_s: 100,
    };
    let mut m = Machine::boot(&cfg).unwrap();
    let in_flight = Arc::new(AtomicBool::new(false));
    let while_set = Arc::new(AtomicU64::new(0));
    let user = DiskUser {
        rounds: 10,
        round: 0,
        step: 0,
        base: None,
        in_flight: in_flight.clone(),
        integrity: Integrity::default(),
        word: 0,
    };
    let spinner = Spinner {
        ops: 2_000_000,
        watch: in_flight.clone(),
        while_set: while_set.clone(),
        base: None,
    };
    let r = m
        .run(
            vec![
                plan("disk", vec![Box::new(user)]),
                plan("spin", vec![Box::new(spinner)]),
            ],
            &RunOpts::default(),
        )
        .unwrap();
    assert!(
        r.processes.iter().all(|p| p.exit == ExitKind::Ok),
        "{:?}",
        r.processes
    );
    assert_eq!(r.integrity.corruptions, 0);
    assert_eq!(r.integrity.bytes_verified, 10 * WORDS * 8);
    let io = r.daemons.io;
    assert_eq!((io.writes, io.reads), (10, 10), "{io:?}");
    assert_eq!((io.bytes_written, io.bytes_read), (10 * PAGE, 10 * PAGE));
    // Each request takes at least the 2 ms latency.
    assert!(io.wait_us >= 20 * 2000, "{io:?}");
    assert!(
        while_set.load(Ordering::Relaxed) > 0,
        "the spinner never ran while the disk user waited"
    );
}

#[test]
fn file_io_errors_are_errnos_not_signals() {
    struct BadIo(u8);
    impl Workload for BadIo {
        fn next(&mut self, last: OpResult, _: &WorkloadEnv) -> Option<Op> {
            self.0 += 1;
            match self.0 {
                // A buffer nobody mapped: EFAULT, the process lives on.
                1 => Some(Op::FileWrite {
                    file: 1,
                    offset: 0,
                    buf: VirtAddr(0x10_0000),
                    len: 8,
                }),
                2 => {
                    assert_eq!(last, OpResult::Err(Errno::Efault));
                    // Larger than one request may be.
                    Some(Op::FileRead {
                        file: 1,
                        offset: 0,
                        buf: VirtAddr(0x10_0000),
                        len: MAX_IO_BYTES + 1,
                    })
                }
                3 => {
                    assert_eq!(last, OpResult::Err(Errno::Einval));
                    // Reading a file nobody wrote: 0 bytes (end of file).
                    Some(Op::FileRead {
                        file: 99,
                        offset: 0,
                        buf: VirtAddr(0x10_0000),
                        len: 8,
                    })
                }
                _ => {
                    assert_eq!(last, OpResult::Value(0));
                    None
                }
            }
        }
    }
    let mut m = Machine::boot(&small(1, 64)).unwrap();
    let r = m
        .run(
            vec![plan("bad", vec![Box::new(BadIo(0))])],
            &RunOpts::default(),
        )
        .unwrap();
    assert_eq!(r.processes[0].exit, ExitKind::Ok, "{:?}", r.processes);
}

#[test]
fn an_oom_kill_is_logged_counted_and_queued_for_the_reaper() {
    let mut cfg = small(2, 32);
    cfg.sysctl.overcommit_memory = 1;
    let mut m = Machine::boot(&cfg).unwrap();
    let free_before = m.buddy().nr_free_pages() + m.buddy().pcp_pages();
    let opts = RunOpts {
        proc_snapshots: true,
        ..RunOpts::default()
    };
    let r = m
        .run(
            vec![
                plan("bystander", vec![hog(64)]),
                plan("hog", vec![hog(2 * free_before)]),
            ],
            &opts,
        )
        .unwrap();
    let hog_report = r.processes.iter().find(|p| p.name == "hog").unwrap();
    assert_eq!(hog_report.exit, ExitKind::Killed, "{:?}", r.processes);
    let by = r.processes.iter().find(|p| p.name == "bystander").unwrap();
    assert_eq!(by.exit, ExitKind::Ok);
    assert_eq!(r.oom_kills.len(), 1);
    let k = &r.oom_kills[0];
    assert_eq!(k.pid, hog_report.pid);
    assert!(k.anon_rss_kb > 0);
    let line = k.kernel_line();
    assert!(
        line.starts_with(&format!(
            "Out of memory: Killed process {} (hog) total-vm:",
            k.pid.0
        )),
        "{line}"
    );
    assert!(line.ends_with("oom_score_adj:0"), "{line}");
    assert_eq!(r.vmstat.iter().find(|(k, _)| k == "oom_kill").unwrap().1, 1);
    assert_eq!(r.daemons.reaper.queued, 1);
    // The allocator woke kswapd on the way down.
    assert!(r.daemons.kswapd_wakeups >= 1, "{:?}", r.daemons);
    // Each process left its /proc files.
    assert_eq!(r.proc_snapshots.len(), 2);
    let snap = r.proc_snapshots.iter().find(|s| s.pid == k.pid).unwrap();
    let file = |n: &str| &snap.files.iter().find(|(f, _)| *f == n).unwrap().1;
    assert!(
        file("status").starts_with("Name:\thog\n"),
        "{}",
        file("status")
    );
    assert!(file("status").contains(&format!("\nPid:\t{}\n", k.pid.0)));
    assert!(file("status").contains("\nVmRSS:"));
    assert_eq!(file("oom_score_adj"), "0\n");
    let score: u64 = file("oom_score").trim().parse().unwrap();
    // The hog held most of RAM: its score is near the top of the 0..2000 scale's lower half.
    assert!(score > 900 && score <= 1333, "oom_score {score}");
    assert!(file("maps").contains("rw-p"), "{}", file("maps"));
    // Every page came back (once the kernel-object caches give back their empty slabs).
    shrink_kernel_object_caches(&m);
    assert_eq!(
        m.buddy().nr_free_pages() + m.buddy().pcp_pages(),
        free_before
    );
}

#[test]
fn oom_score_follows_the_kernel_formula() {
    let mut m = Machine::boot(&small(1, 64)).unwrap();
    let mut ctx = m.daemon_ctx();
    let space =
        mm_vma::AddressSpace::new(m.vm(), &mut ctx, mm_types::Pid(5), &mm_vma::Layout::plain())
            .unwrap();
    let total = m.buddy().totalram_pages();
    // An empty address space: badness is its page tables only.
    let pgt = space.mm().pgtables_bytes() / PAGE;
    assert_eq!(
        oom_score(&space, 0, total),
        (1000 + pgt * 1000 / total) * 2 / 3
    );
    assert_eq!(oom_score(&space, -1000, total), 0);
    // adj 1000 adds totalpages/1000 * 1000 pages: the top of the scale.
    let top = (1000 + (pgt + total / 1000 * 1000) * 1000 / total) * 2 / 3;
    assert_eq!(oom_score(&space, 1000, total), top);
    assert!(oom_score(&space, -500, total) < oom_score(&space, 0, total));
    space.exit(&mut ctx);
    let _ = &mut m;
}

fn task_structs(slab: &SlabAllocator) -> (u64, u32) {
    let n = slab
        .cache_counts(slab.std_cache(mm_slab::StdCache::TaskStruct))
        .unwrap();
    (n.total_objects - n.free_objects, n.cpus_skipped)
}

/// Waits (yielding) until `arrived` reaches `n`; the first to see it records the live
/// `task_struct` count.
struct Gather {
    n: u64,
    arrived: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
    slab: Arc<SlabAllocator>,
    here: bool,
}

impl Workload for Gather {
    fn next(&mut self, _: OpResult, _: &WorkloadEnv) -> Option<Op> {
        if !self.here {
            self.here = true;
            self.arrived.fetch_add(1, Ordering::SeqCst);
        }
        if self.arrived.load(Ordering::SeqCst) < self.n {
            return Some(Op::Yield);
        }
        let (live, skipped) = task_structs(&self.slab);
        assert_eq!(skipped, 0, "no CPU holds a slab pin between operations");
        self.seen.fetch_max(live, Ordering::SeqCst);
        None
    }
}

#[test]
fn every_task_has_a_task_struct_in_simulated_ram() {
    let mut m = Machine::boot(&small(1, 64)).unwrap();
    let slab = m.slab_arc().clone();
    let (baseline, _) = task_structs(&slab);
    let arrived = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let gather = || -> Box<dyn Workload> {
        Box::new(Gather {
            n: 3,
            arrived: arrived.clone(),
            seen: seen.clone(),
            slab: slab.clone(),
            here: false,
        })
    };
    let r = m
        .run(
            vec![
                plan("two", vec![gather(), gather()]),
                plan("one", vec![gather()]),
            ],
            &RunOpts::default(),
        )
        .unwrap();
    assert!(r.processes.iter().all(|p| p.exit == ExitKind::Ok));
    assert_eq!(seen.load(Ordering::SeqCst), baseline + 3);
    assert_eq!(
        task_structs(&slab).0,
        baseline,
        "every task_struct is freed"
    );
}

/// Maps and touches `pages`, then keeps reading them until `stop` is set.
struct Holder {
    hog: Hog,
    read: u64,
    stop: Arc<AtomicBool>,
    done: Option<Arc<AtomicBool>>,
}

impl Workload for Holder {
    fn next(&mut self, last: OpResult, env: &WorkloadEnv) -> Option<Op> {
        if let Some(op) = self.hog.next(last, env) {
            return Some(op);
        }
        if self.stop.load(Ordering::SeqCst) {
            if let Some(d) = &self.done {
                d.store(true, Ordering::SeqCst);
            }
            return None;
        }
        let base = self.hog.base.expect("mapped");
        self.read = (self.read + 1) % self.hog.pages;
        Some(Op::Load {
            addr: VirtAddr(base.0 + self.read * PAGE),
        })
    }
}

/// Touches `pages`, then sets `done`.
struct Grower {
    hog: Hog,
    done: Arc<AtomicBool>,
}

impl Workload for Grower {
    fn next(&mut self, last: OpResult, env: &WorkloadEnv) -> Option<Op> {
        let op = self.hog.next(last, env);
        if op.is_none() {
            self.done.store(true, Ordering::SeqCst);
        }
        op
    }
}

#[test]
fn the_oom_killer_picks_the_largest_killable_process_not_the_one_that_faulted() {
    let mut cfg = small(2, 64);
    cfg.sysctl.overcommit_memory = 1;
    let mut m = Machine::boot(&cfg).unwrap();
    let free = m.buddy().nr_free_pages();
    let grown = Arc::new(AtomicBool::new(false));
    let holder = |pages, done| -> Box<dyn Workload> {
        Box::new(Holder {
            hog: Hog {
                pages,
                next: 0,
                base: None,
            },
            read: 0,
            stop: grown.clone(),
            done,
        })
    };
    let mut big = plan("big", vec![holder(free * 45 / 100, None)]);
    big.oom_score_adj = 0;
    // Larger than the grower will get, but unkillable.
    let mut shielded = plan("shielded", vec![holder(free * 25 / 100, None)]);
    shielded.oom_score_adj = -1000;
    let mut grower = plan(
        "grower",
        vec![Box::new(Grower {
            hog: Hog {
                pages: free * 40 / 100,
                next: 0,
                base: None,
            },
            done: grown.clone(),
        })],
    );
    grower.start_after = Duration::from_millis(150);
    let r = m
        .run(
            vec![big, shielded, grower],
            &RunOpts {
                deadline: Some(Duration::from_secs(20)),
                ..RunOpts::default()
            },
        )
        .unwrap();
    let exit = |n: &str| r.processes.iter().find(|p| p.name == n).unwrap().exit;
    assert_eq!(exit("big"), ExitKind::Killed, "{:?}", r.processes);
    assert_eq!(exit("shielded"), ExitKind::Ok, "{:?}", r.processes);
    assert_eq!(exit("grower"), ExitKind::Ok, "{:?}", r.processes);
    assert_eq!(r.oom_kills.len(), 1, "{:?}", r.oom_kills);
    assert_eq!(r.oom_kills[0].name, "big");
    assert_eq!(r.integrity.corruptions, 0);
}

#[test]
fn mremap_moves_a_mapping_with_its_data() {
    struct Mover {
        step: u8,
        old: VirtAddr,
        new: VirtAddr,
    }
    impl Workload for Mover {
        fn next(&mut self, last: OpResult, _: &WorkloadEnv) -> Option<Op> {
            self.step += 1;
            Some(match self.step {
                1 => Op::Mmap {
                    addr: None,
                    len: 4 * PAGE,
                    prot: PROT_READ | PROT_WRITE,
                    flags: MAP_PRIVATE | MAP_ANONYMOUS,
                },
                2 => {
                    let OpResult::Addr(a) = last else {
                        panic!("{last:?}")
                    };
                    self.old = a;
                    Op::Store {
                        addr: VirtAddr(a.0 + 3 * PAGE + 8),
                        value: 0x5eed,
                    }
                }
                // Unknown flag bits.
                3 => Op::Mremap {
                    addr: self.old,
                    old_len: 4 * PAGE,
                    new_len: 8 * PAGE,
                    flags: 0x80,
                    new_addr: VirtAddr(0),
                },
                4 => {
                    assert_eq!(last, OpResult::Err(Errno::Einval));
                    Op::Mremap {
                        addr: self.old,
                        old_len: 4 * PAGE,
                        new_len: 64 * PAGE,
                        flags: MREMAP_MAYMOVE,
                        new_addr: VirtAddr(0),
                    }
                }
                5 => {
                    let OpResult::Addr(a) = last else {
                        panic!("{last:?}")
                    };
                    self.new = a;
                    Op::Load {
                        addr: VirtAddr(a.0 + 3 * PAGE + 8),
                    }
                }
                6 => {
                    assert_eq!(
                        last,
                        OpResult::Value(0x5eed),
                        "the data moved with the mapping"
                    );
                    // The grown tail is fresh zero-fill memory.
                    Op::Load {
                        addr: VirtAddr(self.new.0 + 40 * PAGE),
                    }
                }
                _ => {
                    assert_eq!(last, OpResult::Value(0));
                    return None;
                }
            })
        }
    }
    let mut m = Machine::boot(&small(1, 64)).unwrap();
    let r = m
        .run(
            vec![plan(
                "mover",
                vec![Box::new(Mover {
                    step: 0,
                    old: VirtAddr(0),
                    new: VirtAddr(0),
                })],
            )],
            &RunOpts::default(),
        )
        .unwrap();
    assert_eq!(r.processes[0].exit, ExitKind::Ok, "{:?}", r.processes);
}

#[test]
fn the_watchdog_reports_a_stuck_cpu_with_every_actor_and_the_run_still_ends() {
    /// Hangs its CPU inside one operation's decision for `for_`, like a soft lockup.
    struct Hang {
        for_: Duration,
    }
    impl Workload for Hang {
        fn next(&mut self, _: OpResult, _: &WorkloadEnv) -> Option<Op> {
            let until = std::time::Instant::now() + self.for_;
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
            None
        }
    }
    let mut m = Machine::boot(&small(1, 64)).unwrap();
    let opts = RunOpts {
        stall_after: Duration::from_millis(200),
        ..RunOpts::default()
    };
    let started = std::time::Instant::now();
    let r = m
        .run(
            vec![plan(
                "hang",
                vec![Box::new(Hang {
                    for_: Duration::from_secs(3),
                })],
            )],
            &opts,
        )
        .unwrap();
    // The run ended well before the stuck CPU let go (grace: stall_after).
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    let dump = r.stall.expect("the watchdog fired");
    assert!(
        dump.starts_with("watchdog: no CPU made progress\n"),
        "{dump}"
    );
    assert!(dump.contains("cpu 0: progress 0"), "{dump}");
    for actor in ["kswapd0:", "oom_reaper:", "io engine:", "sampler:"] {
        assert!(dump.contains(actor), "{actor} missing from\n{dump}");
    }
    // Its CPU was left behind: the machine does not run again.
    assert_eq!(
        m.run(vec![], &RunOpts::default()).unwrap_err(),
        RunError::AlreadyRan
    );
}

#[test]
fn direct_reclaim_runs_the_shrinkers_when_allocations_reach_the_min_watermark() {
    let allocate_all = |grow: u64| {
        // No watermark boosting: stealing the freed slab pageblocks would boost the watermarks,
        // and only kswapd (not running here) clears a boost.
        let mut cfg = small(1, 64);
        cfg.sysctl.watermark_boost_factor = 0;
        let m = Machine::boot(&cfg).unwrap();
        if grow > 0 {
            let n = m
                .slab()
                .dcache()
                .grow(&m.slab().cpu(CpuId(0)), grow, Gfp::GFP_KERNEL);
            assert_eq!(n, grow);
        }
        let free = m.buddy().nr_free_pages() + m.buddy().pcp_pages();
        let slab_before = m.slab().slab_pages();
        // No run, so no kswapd: only direct reclaim can give memory back.
        let mut held = Vec::new();
        while let Ok(f) =
            m.buddy()
                .alloc(CpuId(0), mm_types::Order::ZERO, Gfp::GFP_HIGHUSER_MOVABLE)
        {
            held.push(f);
        }
        let stalls: u64 = m.buddy().vm_events().allocstall.iter().sum();
        let result = (
            held.len() as u64,
            free,
            slab_before,
            m.slab().slab_pages(),
            m.slab().dcache().nr_dentry(),
            stalls,
        );
        for f in held {
            m.buddy().free(CpuId(0), f);
        }
        result
    };
    // Without reclaimable slab, the allocations stop short of the free pages (the reserves).
    let (got0, free0, _, _, _, stalls) = allocate_all(0);
    assert!(got0 < free0 && stalls > 0, "{got0} of {free0}");
    // With 20000 unused dentries, direct reclaim shrinks the dentry cache and hands its pages
    // to the allocations: they get closer to (or past) the pages free at the start.
    let (got1, free1, slab_before, slab_after, dentries, _) = allocate_all(20_000);
    assert!(
        dentries < 20_000,
        "the dcache shrinker ran: {dentries} dentries left"
    );
    assert!(
        slab_after < slab_before,
        "slab pages {slab_before} -> {slab_after}"
    );
    let short = |got: u64, free: u64| free as i64 - got as i64;
    let freed = (slab_before - slab_after) as i64;
    assert!(
        short(got1, free1) <= short(got0, free0) - freed / 2,
        "reclaimed slab pages were allocated: short {} with reclaim ({freed} freed), {} without",
        short(got1, free1),
        short(got0, free0)
    );
}
