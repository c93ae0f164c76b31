//! The workload generators against a fake executor: a tiny model of address spaces that runs
//! [`Op`]s (mmap hands out addresses, a load returns what was stored, fork copies memory).

use std::collections::BTreeMap;
use std::time::Duration;

use mm_sim::workload::{Integrity, Op, OpResult, Workload, WorkloadEnv, MAP_NORESERVE};
use mm_types::{Pid, VirtAddr};

use crate::workload::MMAP_THRESHOLD;
use crate::workload::{check_word, derive, encode, Phase, Rng, Task, Zipf, ARENA_SIZE};
use crate::*;

const PAGE: u64 = 4096;

/// Rewrites a loaded value: (pid, address, value, load number) -> value.
type Tamper = Box<dyn FnMut(Pid, VirtAddr, u64, u64) -> u64>;

/// One simulated process: its memory (8-byte words) and break.
#[derive(Clone)]
struct Space {
    words: BTreeMap<u64, u64>,
    next_map: u64,
    brk: u64,
}

impl Space {
    fn new() -> Space {
        Space {
            words: BTreeMap::new(),
            next_map: 0x7f00_0000_0000,
            brk: 0x5555_0000_0800, // an unaligned break, as after exec
        }
    }
    fn clear(&mut self, from: u64, to: u64) {
        let keys: Vec<u64> = self.words.range(from..to).map(|(k, _)| *k).collect();
        for k in keys {
            self.words.remove(&k);
        }
    }
}

struct Proc {
    pid: Pid,
    space: usize,
    tasks: Vec<(Box<dyn Workload>, OpResult, bool)>,
}

/// What a run did.
#[derive(Default)]
struct Run {
    integrity: Integrity,
    ops: Vec<String>,
    loads: u64,
    forks: u64,
    counts: BTreeMap<&'static str, u64>,
}

/// Runs `procs` (each a list of thread workloads) round-robin until all exit; with
/// `cow_bug`, fork shares the parent's memory instead of copying it.
fn execute(procs: Vec<Vec<Box<dyn Workload>>>, mut tamper: Option<Tamper>, cow_bug: bool) -> Run {
    let mut spaces = Vec::new();
    let mut ps: Vec<Proc> = Vec::new();
    for (i, threads) in procs.into_iter().enumerate() {
        spaces.push(Space::new());
        ps.push(Proc {
            pid: Pid(100 + i as u32),
            space: i,
            tasks: threads
                .into_iter()
                .map(|w| (w, OpResult::Start, true))
                .collect(),
        });
    }
    let mut run = Run::default();
    // The disk: each file's words by byte offset.
    let mut files: BTreeMap<u32, BTreeMap<u64, u64>> = BTreeMap::new();
    let mut next_pid = 1000;
    let mut tick = 0u64;
    let mut finished: Vec<Box<dyn Workload>> = Vec::new();
    loop {
        let mut any = false;
        let mut born = Vec::new();
        for p in &mut ps {
            for (w, last, alive) in &mut p.tasks {
                if !*alive {
                    continue;
                }
                any = true;
                tick += 1;
                let env = WorkloadEnv {
                    pid: p.pid,
                    mem_total: 1 << 30,
                    elapsed: Duration::from_micros(tick),
                };
                let Some(op) = w.next(*last, &env) else {
                    *alive = false;
                    continue;
                };
                run.ops.push(format!("{}:{op:?}", p.pid));
                let space = &mut spaces[p.space];
                let (name, result) = match op {
                    Op::Mmap { len, flags, .. } => {
                        let a = space.next_map;
                        space.next_map += len.div_ceil(PAGE) * PAGE + PAGE;
                        let name = if flags & MAP_NORESERVE != 0 {
                            "mmap-arena"
                        } else if len >= MMAP_THRESHOLD {
                            "mmap-big"
                        } else {
                            "mmap"
                        };
                        (name, OpResult::Addr(VirtAddr(a)))
                    }
                    Op::Munmap { addr, len } => {
                        space.clear(addr.0, addr.0 + len);
                        ("munmap", OpResult::Ok)
                    }
                    Op::Brk { addr: None } => ("brk", OpResult::Addr(VirtAddr(space.brk))),
                    Op::Brk { addr: Some(a) } => {
                        if a.0 < space.brk {
                            space.clear(a.0.div_ceil(PAGE) * PAGE, space.brk.div_ceil(PAGE) * PAGE);
                        }
                        space.brk = a.0;
                        ("brk", OpResult::Addr(a))
                    }
                    Op::Mprotect { .. } => ("mprotect", OpResult::Ok),
                    Op::Madvise { addr, len, .. } => {
                        space.clear(addr.0, addr.0 + len);
                        ("madvise", OpResult::Ok)
                    }
                    Op::Load { addr } => {
                        run.loads += 1;
                        let mut v = space.words.get(&addr.0).copied().unwrap_or(0);
                        if let Some(t) = tamper.as_mut() {
                            v = t(p.pid, addr, v, run.loads);
                        }
                        ("load", OpResult::Value(v))
                    }
                    Op::Store { addr, value } => {
                        space.words.insert(addr.0, value);
                        ("store", OpResult::Ok)
                    }
                    Op::Fork { child } => {
                        run.forks += 1;
                        next_pid += 1;
                        born.push((Pid(next_pid), p.space, child));
                        ("fork", OpResult::Forked(Pid(next_pid)))
                    }
                    Op::Yield => ("yield", OpResult::Ok),
                    Op::FileWrite {
                        file,
                        offset,
                        buf,
                        len,
                    } => {
                        let f = files.entry(file).or_default();
                        let old: Vec<u64> =
                            f.range(offset..offset + len).map(|(k, _)| *k).collect();
                        for k in old {
                            f.remove(&k);
                        }
                        for (a, v) in space.words.range(buf.0..buf.0 + len) {
                            f.insert(offset + (a - buf.0), *v);
                        }
                        *run.counts.entry("file-bytes").or_default() += len;
                        ("pwrite", OpResult::Value(len))
                    }
                    Op::FileRead {
                        file,
                        offset,
                        buf,
                        len,
                    } => {
                        space.clear(buf.0, buf.0 + len);
                        if let Some(f) = files.get(&file) {
                            for (o, v) in f.range(offset..offset + len) {
                                space.words.insert(buf.0 + (o - offset), *v);
                            }
                        }
                        ("pread", OpResult::Value(len))
                    }
                    Op::Mremap { .. } => panic!("no scenario workload issues mremap: {op:?}"),
                };
                *run.counts.entry(name).or_default() += 1;
                *last = result;
            }
        }
        for (pid, parent, child) in born {
            let space = if cow_bug {
                parent
            } else {
                spaces.push(spaces[parent].clone());
                spaces.len() - 1
            };
            ps.push(Proc {
                pid,
                space,
                tasks: vec![(child, OpResult::Start, true)],
            });
        }
        if !any {
            break;
        }
        assert!(tick < 20_000_000, "runaway workload");
    }
    for p in ps {
        finished.extend(p.tasks.into_iter().map(|(w, _, _)| w));
    }
    for w in &finished {
        run.integrity.add(w.integrity());
    }
    run
}

/// Parses one process of one phase (the phase's lines given) on a 2-CPU 1 GiB machine.
fn scenario(phase: &[&str], process: &[&str]) -> Scenario {
    let mut lines = vec![
        "[machine]",
        "cpus = 2",
        "memory = \"1GiB\"",
        "[[process]]",
        "name = \"t\"",
    ];
    lines.extend_from_slice(process);
    lines.push("[[process.phase]]");
    lines.extend_from_slice(phase);
    parse_str(&super::text(&lines), "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// Plans `s` with `seed` and runs it.
fn run_scenario(s: &Scenario, seed: u64, tamper: Option<Tamper>, cow_bug: bool) -> Run {
    let procs = s.plan(GIB1, seed).into_iter().map(|p| p.threads).collect();
    execute(procs, tamper, cow_bug)
}

#[track_caller]
fn clean(run: &Run) {
    let i = run.integrity;
    assert_eq!((i.corruptions, i.isolation_violations), (0, 0), "{i:?}");
    assert!(i.bytes_verified > 0);
}

#[test]
fn anon_patterns_verify_every_load() {
    for pattern in [
        &["pattern = \"sequential\""][..],
        &["pattern = \"random\""],
        &["pattern = \"zipf\"", "zipf_s = 1.1"],
        &["pattern = \"hotcold\"", "hot_fraction = 0.2"],
        &["pattern = \"stride\"", "stride = \"64KiB\""],
    ] {
        let mut phase = vec!["workload = \"anon\"", "size = \"1MiB\"", "ops = 3000"];
        phase.extend_from_slice(pattern);
        let run = run_scenario(&scenario(&phase, &[]), 7, None, false);
        clean(&run);
        // Every load was checked and matched: 8 bytes each.
        assert_eq!(run.integrity.bytes_verified, 8 * run.loads, "{pattern:?}");
        assert_eq!(run.counts["mmap-big"], 1);
        assert_eq!(run.counts["munmap"], 1);
        // 3000 counted operations (the mmap among them) plus the munmap.
        assert_eq!(run.ops.len(), 3001, "{pattern:?}");
    }
}

#[test]
fn a_never_written_page_must_read_zero_and_write_ratio_is_honoured() {
    let phase = [
        "workload = \"anon\"",
        "size = \"64KiB\"",
        "ops = 2001",
        "write_ratio = 0",
    ];
    let run = run_scenario(&scenario(&phase, &[]), 1, None, false);
    clean(&run);
    assert_eq!(run.counts.get("store"), None);
    assert_eq!(run.loads, 2000);
    let phase = [
        "workload = \"anon\"",
        "size = \"64KiB\"",
        "ops = 2001",
        "write_ratio = 1",
    ];
    let run = run_scenario(&scenario(&phase, &[]), 1, None, false);
    assert_eq!(run.counts["store"], 2000);
}

#[test]
fn a_corrupted_value_is_a_corruption_and_a_foreign_pid_an_isolation_violation() {
    let s = scenario(
        &["workload = \"anon\"", "size = \"256KiB\"", "ops = 4000"],
        &[],
    );
    // The 100th load returns a flipped bit.
    let flip: Tamper = Box::new(|_, _, v, n| if n == 100 { v ^ 0x10 } else { v });
    let run = run_scenario(&s, 3, Some(flip), false);
    assert_eq!(run.integrity.corruptions, 1);
    assert_eq!(run.integrity.isolation_violations, 0);
    assert_eq!(run.integrity.bytes_verified, 8 * (run.loads - 1));

    // The 100th load returns what pid 4242 stored at that address.
    let foreign: Tamper = Box::new(|_, a, v, n| if n == 100 { encode(4242, a, 1) } else { v });
    let run = run_scenario(&s, 3, Some(foreign), false);
    assert_eq!(run.integrity.isolation_violations, 1);
    assert_eq!(run.integrity.corruptions, 0);

    // A stale value of our own (an older version) is a corruption, not a violation.
    let stale: Tamper = Box::new(|pid, a, v, n| {
        if n == 100 {
            encode(pid.0, a, 0xFFFF)
        } else {
            v
        }
    });
    let run = run_scenario(&s, 3, Some(stale), false);
    assert_eq!(run.integrity.corruptions, 1);
    assert_eq!(run.integrity.isolation_violations, 0);
}

#[test]
fn values_encode_pid_page_and_version_at_a_scattered_check_word() {
    let a = VirtAddr(0x7f12_3456_7000);
    let w = check_word(a);
    assert_eq!(w.page_align_down(), a);
    assert_eq!(w.0 % 8, 0);
    assert_ne!(
        check_word(VirtAddr(a.0 + PAGE)).page_offset(),
        w.page_offset()
    );
    assert_eq!(
        encode(0x1_0042, w, 7),
        0x0042 << 48 | (0x7_f123_4567 & 0xFFFF_FFFF) << 16 | 7
    );
}

#[test]
fn the_same_seed_gives_the_same_op_stream() {
    let kinds: [&[&str]; 4] = [
        &[
            "workload = \"anon\"",
            "size = \"1MiB\"",
            "ops = 500",
            "pattern = \"random\"",
        ],
        &["workload = \"mmap-churn\"", "size = \"1MiB\"", "ops = 500"],
        &["workload = \"malloc\"", "size = \"4MiB\"", "ops = 500"],
        &[
            "workload = \"fork-cow\"",
            "size = \"64KiB\"",
            "generations = 2",
        ],
    ];
    for phase in kinds {
        let s = scenario(phase, &["threads = 2"]);
        let a = run_scenario(&s, 11, None, false);
        let b = run_scenario(&s, 11, None, false);
        let c = run_scenario(&s, 12, None, false);
        assert_eq!(a.ops, b.ops, "{phase:?}");
        assert_ne!(a.ops, c.ops, "{phase:?}");
        clean(&a);
    }
}

#[test]
fn fork_cow_children_inherit_expectations_and_catch_shared_pages() {
    let s = scenario(
        &[
            "workload = \"fork-cow\"",
            "size = \"128KiB\"",
            "children = 2",
            "generations = 2",
            "write_ratio = 0.5",
        ],
        &[],
    );
    let run = run_scenario(&s, 5, None, false);
    clean(&run);
    assert_eq!(run.forks, 2 + 4);
    assert_eq!(run.integrity.bytes_verified, 8 * run.loads);
    // Root: fill (32 stores) + check; each child: check inherited + check after rewrite.
    assert_eq!(run.loads, 32 + 6 * 2 * 32);

    // A machine whose fork shares pages instead of copying them on write: processes see each
    // other's stores.
    let run = run_scenario(&s, 5, None, true);
    assert!(
        run.integrity.isolation_violations > 0,
        "{:?}",
        run.integrity
    );
}

#[test]
fn malloc_uses_brk_below_the_threshold_mmap_above_and_arenas_in_other_threads() {
    let s = scenario(
        &["workload = \"malloc\"", "size = \"8MiB\"", "ops = 20000"],
        &["threads = 2"],
    );
    let run = run_scenario(&s, 9, None, false);
    clean(&run);
    let c = &run.counts;
    // Thread 0: brk(NULL), brk growth and trims, and a final brk back to the base.
    assert!(c["brk"] > 3, "{c:?}");
    // Big chunks in both threads, and thread 1's arena (one 64 MiB PROT_NONE reservation,
    // grown with mprotect and trimmed with madvise).
    assert!(c["mmap-big"] > 10, "{c:?}");
    assert_eq!(c["mmap-arena"], 1, "{c:?}");
    assert!(c["mprotect"] > 0 && c["madvise"] > 0, "{c:?}");
    // Everything mapped is unmapped at the end (the arena once).
    assert_eq!(c["munmap"], c["mmap-big"] + 1, "{c:?}");
    assert!(run
        .ops
        .iter()
        .any(|o| o.contains(&format!(", {ARENA_SIZE}, 0x0, "))));
}

#[test]
fn mmap_churn_fixed_size_touches_every_page_like_page_fault1() {
    let s = scenario(
        &[
            "workload = \"mmap-churn\"",
            "size = \"64KiB\"",
            "fixed_size = true",
            "touch_pages = \"all\"",
            "write_ratio = 1",
            "ops = 340",
        ],
        &[],
    );
    let run = run_scenario(&s, 2, None, false);
    clean(&run);
    // Each cycle: mmap, 16 stores, 16 loads, munmap = 34 operations.
    assert_eq!(run.counts["mmap"], 10);
    assert_eq!(run.counts["store"], 160);
    assert_eq!(run.counts["munmap"], 10);
    assert!(run
        .ops
        .iter()
        .all(|o| !o.starts_with("mmap") || o.contains(", 65536,")));
}

#[test]
fn phases_run_in_order_and_durations_end_by_the_clock() {
    let mut lines = vec![
        "[machine]",
        "cpus = 2",
        "memory = \"1GiB\"",
        "[[process]]",
        "name = \"t\"",
    ];
    lines.extend([
        "[[process.phase]]",
        "workload = \"anon\"",
        "size = \"1%\"",
        "duration = \"2ms\"", // 2000 ticks of the fake clock
        "[[process.phase]]",
        "workload = \"mmap-churn\"",
        "size = \"64KiB\"",
        "ops = 50",
    ]);
    let s = parse_str(&super::text(&lines), "t.toml").unwrap();
    let run = run_scenario(&s, 4, None, false);
    clean(&run);
    let first_churn = run
        .ops
        .iter()
        .position(|o| o.contains("mmap(None, ") && !o.contains(", 10739712,"));
    // The anon phase (1% of 1 GiB, rounded up to pages) ran about 2000 operations, then the
    // churn phase started.
    let first_churn = first_churn.unwrap();
    assert!((1995..=2005).contains(&first_churn), "{first_churn}");
    assert!(run.ops[first_churn - 1].contains("munmap"));
}

#[test]
fn plans_have_count_processes_of_threads_seeded_apart() {
    let s = scenario(
        &["workload = \"anon\"", "size = \"1MiB\"", "ops = 10"],
        &[
            "count = 3",
            "threads = 2",
            "oom_score_adj = 500",
            "cpus = [1]",
            "start_after = 1.5",
        ],
    );
    let plans = s.plan(GIB1, 0);
    assert_eq!(plans.len(), 3);
    for p in &plans {
        assert_eq!(p.name, "t");
        assert_eq!(p.threads.len(), 2);
        assert_eq!(p.oom_score_adj, 500);
        assert_eq!(p.cpus, Some(vec![mm_types::CpuId(1)]));
        assert_eq!(p.start_after, Duration::from_millis(1500));
    }
    let seeds: Vec<u64> = (0..3)
        .flat_map(|i| (0..2).map(move |t| derive(0, &[0, i, t])))
        .collect();
    let mut unique = seeds.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seeds.len());
    let p = Phase::resolve(&s.processes[0].phases[0], GIB1);
    let mut a = Task::new(vec![p.clone()], 0, 1);
    let mut b = Task::new(vec![p], 0, 1);
    let env = WorkloadEnv {
        pid: Pid(1),
        mem_total: 1 << 30,
        elapsed: Duration::ZERO,
    };
    assert_eq!(
        format!("{:?}", a.next(OpResult::Start, &env)),
        format!("{:?}", b.next(OpResult::Start, &env))
    );
}

#[test]
fn zipf_samples_follow_the_rank_frequency_law() {
    for (n, s) in [(1000u64, 1.1f64), (1000, 1.0), (50, 0.5), (5_000_000, 1.2)] {
        let z = Zipf::new(n, s);
        let mut rng = Rng::new(42);
        const DRAWS: u64 = 400_000;
        let mut counts = [0u64; 11];
        for _ in 0..DRAWS {
            let k = z.sample(&mut rng);
            assert!((1..=n).contains(&k));
            if k <= 10 {
                counts[k as usize] += 1;
            }
        }
        let h: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
        for k in 1..=10u64 {
            let expect = DRAWS as f64 * (k as f64).powf(-s) / h;
            let got = counts[k as usize] as f64;
            // Within 5 standard deviations of the binomial count.
            let sd = (expect * (1.0 - expect / DRAWS as f64)).sqrt();
            assert!(
                (got - expect).abs() < 5.0 * sd,
                "n={n} s={s} k={k}: {got} vs {expect}"
            );
        }
        // The log-log slope between ranks 1 and 8 is -s.
        let slope = ((counts[8] as f64).ln() - (counts[1] as f64).ln()) / 8f64.ln();
        assert!((slope + s).abs() < 0.05, "n={n} s={s}: slope {slope}");
    }
}

/// MemTotal 1 GiB with 900 MiB available.
const GIB1: crate::MemSizes = crate::MemSizes {
    total: 1 << 30,
    available: 900 << 20,
};

#[test]
fn sizes_are_resolved_against_memtotal_or_memavailable() {
    for (size, pages) in [
        ("\"50%\"", (1u64 << 30) / 2 / 4096),
        ("\"50% avail\"", (900u64 << 20) / 2 / 4096),
        ("\"10%avail\"", (90u64 << 20) / 4096),
        ("\"0.001% avail\"", 3),
    ] {
        let text = format!(
            "[machine]\ncpus = 1\nmemory = \"1GiB\"\n[[process]]\nname = \"p\"\n[[process.phase]]\nworkload = \"anon\"\nsize = {size}\nops = 1\n"
        );
        let s = crate::parse_str(&text, "t.toml").unwrap();
        let phase = crate::workload::Phase::resolve(&s.processes[0].phases[0], GIB1);
        // 0.001% of 900 MiB is 9437 bytes: rounded up to 3 pages.
        assert_eq!(phase.pages, pages, "{size}");
    }
}

#[test]
fn direct_io_checks_every_page_it_reads_back_and_catches_a_lost_write() {
    let s = scenario(
        &[
            "workload = \"direct-io\"",
            "size = \"1MiB\"",
            "write_ratio = 0.3",
            "ops = 4000",
        ],
        &["threads = 2"],
    );
    let run = run_scenario(&s, 3, None, false);
    clean(&run);
    assert!(
        run.counts["pwrite"] >= 2 * 16,
        "the initial pass writes all 16 chunks: {:?}",
        run.counts
    );
    assert!(run.counts["pread"] > 0);
    // A word that comes back changed from a read-back chunk is caught.
    let tamper: Tamper = Box::new(|_, _, v, n| if n % 97 == 0 { v ^ 1 } else { v });
    let bad = run_scenario(&s, 3, Some(tamper), false);
    assert!(bad.integrity.corruptions > 0, "{:?}", bad.integrity);
}
