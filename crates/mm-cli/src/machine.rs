//! The one place the CLI touches the simulated machine: booting it, naming `/proc` files and
//! summarising a run.

use anyhow::Context as _;
use mm_scenario::Scenario;
pub(crate) use mm_sim::{Machine, ProcFile};

use crate::free::FreeSummary;
use crate::Failure;

/// Boots the scenario's machine; a boot failure is a simulator failure.
pub(crate) fn boot(scenario: &Scenario) -> Result<Machine, Failure> {
    // BootError's message already includes its cause, so it is not chained as a source.
    Machine::boot(&scenario.machine)
        .map_err(|e| Failure::Simulator(anyhow::anyhow!("cannot boot the machine: {e}")))
}

/// Parses a `--proc` name (`meminfo`, `zoneinfo`, …), listing the known ones on failure.
pub(crate) fn parse_proc_file(name: &str) -> Result<ProcFile, String> {
    name.parse().map_err(|_| {
        let names: Vec<&str> = ProcFile::ALL.iter().map(|p| p.name()).collect();
        format!("unknown /proc file (expected one of: {})", names.join(", "))
    })
}

/// Renders the `free -m` table of the machine's meminfo (the top of `mmsim run`'s summary).
pub fn run_summary(machine: &Machine) -> anyhow::Result<String> {
    let meminfo = machine.proc_file(ProcFile::Meminfo);
    Ok(FreeSummary::from_meminfo(&meminfo)
        .context("cannot summarise /proc/meminfo")?
        .render_mebibytes())
}

/// Runs the scenario's processes on the machine, with a progress bar on a terminal.
pub(crate) fn run(
    machine: &mut Machine,
    scenario: &Scenario,
    seed: u64,
    proc_snapshots: bool,
) -> Result<mm_sim::RunReport, Failure> {
    use std::io::IsTerminal as _;
    let meminfo = machine.meminfo();
    let mem = mm_scenario::MemSizes {
        total: field(&meminfo, "MemTotal") * 1024,
        available: field(&meminfo, "MemAvailable") * 1024,
    };
    let plans = scenario.plan(mem, seed);
    let mut opts = mm_sim::RunOpts {
        seed,
        proc_snapshots,
        ..mm_sim::RunOpts::default()
    };
    if let Some(mm_scenario::Length::Duration(d)) = scenario.length {
        opts.deadline = Some(d);
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = match opts.deadline {
            Some(d) => indicatif::ProgressBar::new(d.as_millis() as u64),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let template = if opts.deadline.is_some() {
            "{bar:30} {pos}/{len} ms  {msg}"
        } else {
            "{spinner} {elapsed}  {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar
    });
    let mut progress = |p: &mm_sim::RunProgress| {
        if let Some(bar) = &bar {
            bar.set_position(p.elapsed.as_millis() as u64);
            bar.set_message(format!(
                "{}/{} processes started, {} tasks live, MemFree {} MiB",
                p.started,
                p.planned,
                p.live_tasks,
                p.mem_free_kb / 1024
            ));
            bar.tick();
        }
    };
    let r = machine
        .run_observed(plans, &opts, &mut progress)
        .map_err(|e| Failure::Usage(anyhow::anyhow!("{e}")));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    r
}

/// Returns why the run counts as failed (exit 3), if it does.
pub(crate) fn violation(r: &mm_sim::RunReport) -> Option<String> {
    if let Some(stall) = &r.stall {
        return Some(format!(
            "a CPU stalled: {}",
            stall.lines().next().unwrap_or("")
        ));
    }
    let i = r.integrity;
    if i.corruptions > 0 || i.isolation_violations > 0 {
        return Some(format!(
            "data integrity violated: {} corruptions, {} isolation violations",
            i.corruptions, i.isolation_violations
        ));
    }
    r.invariant_violations
        .first()
        .map(|v| format!("invariant violated: {v}"))
}

fn field(fields: &[(String, u64)], name: &str) -> u64 {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or(0, |(_, v)| *v)
}

/// The human summary of a run: the `free -m` table, the main vmstat counters, TLB figures,
/// integrity and the processes.
pub(crate) fn run_text(
    scenario: &Scenario,
    arg: &str,
    machine: &Machine,
    r: &mm_sim::RunReport,
) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut o = format!("{}\n", crate::describe(scenario, arg));
    o.push_str(&run_summary(machine)?);
    let v = |n: &str| field(&r.vmstat, n);
    let _ = writeln!(o, "\nvmstat: pgfault {} pgmajfault {} pgreuse {} pgalloc_normal {} pgalloc_dma32 {} pgfree {} allocstall_normal {} oom_kill {}",
        v("pgfault"), v("pgmajfault"), v("pgreuse"), v("pgalloc_normal"), v("pgalloc_dma32"), v("pgfree"), v("allocstall_normal"), v("oom_kill"));
    let scanned = v("pgscan_kswapd") + v("pgscan_direct");
    let stolen = v("pgsteal_kswapd") + v("pgsteal_direct");
    let pct = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    let _ = writeln!(
        o,
        "reclaim: kswapd efficiency {:.1}% (steal/scan), direct scans {:.1}% of scans",
        pct(stolen, scanned),
        pct(v("pgscan_direct"), scanned)
    );
    let t = r.tlb;
    let _ = writeln!(o, "tlb: hit rate {:.2}% ({} hits, {} misses), {} flushes, {} shootdown IPIs, AMAT {:.1} cycles",
        pct(t.hits, t.hits + t.misses), t.hits, t.misses, t.flushes, t.shootdown_ipis, t.amat_cycles);
    let i = r.integrity;
    let _ = writeln!(o, "integrity: {} bytes verified, {} corruptions, {} isolation violations; invariants: {} checks, {} violations",
        i.bytes_verified, i.corruptions, i.isolation_violations, r.invariant_checks, r.invariant_violations.len());
    let d = &r.daemons;
    let _ = writeln!(o, "daemons: kswapd {} wakeups, {} runs ({} balanced), {} slab objects freed; flusher {} runs; oom_reaper {} queued, {} reaped; io {} reads, {} writes, {:.0} us mean wait",
        d.kswapd_wakeups, d.kswapd_runs, d.kswapd_balanced_runs, d.kswapd_slab_freed, d.flusher.runs,
        d.reaper.queued, d.reaper.reaped, d.io.reads, d.io.writes,
        if d.io.reads + d.io.writes == 0 { 0.0 } else { d.io.wait_us as f64 / (d.io.reads + d.io.writes) as f64 });
    if !r.oom_kills.is_empty() {
        o.push('\n');
        o.push_str(&crate::out::dmesg(r));
    }
    let _ = writeln!(
        o,
        "\n{:>7} {:<16} {:>6} {:>7} {:>9} {:>9} {:>9} {:>11}",
        "PID", "NAME", "EXIT", "ADJ", "MINFLT", "MAJFLT", "HWM kB", "FAULTS/s"
    );
    for p in &r.processes {
        let _ = writeln!(
            o,
            "{:>7} {:<16} {:>6} {:>7} {:>9} {:>9} {:>9} {:>11.0}{}",
            p.pid.0,
            p.name,
            p.exit.name(),
            p.oom_score_adj,
            p.min_flt,
            p.maj_flt,
            p.rss_kb,
            p.faults_per_second(),
            p.signal
                .as_deref()
                .map(|s| format!("  {s}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(o, "\nwall {:.2} s, seed {}", r.wall_seconds, r.seed);
    Ok(o)
}

/// The JSON report (stable top-level keys; see the README).
pub(crate) fn report_json(name: &str, scenario: &Scenario, r: &mm_sim::RunReport) -> String {
    use serde_json::{json, Map, Value};
    let obj = |fields: &[(String, u64)]| -> Value {
        Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<Map<_, _>>(),
        )
    };
    let m = &scenario.machine;
    let report = json!({
        "scenario": name,
        "seed": r.seed,
        "wall_seconds": r.wall_seconds,
        "machine": { "cpus": m.cpus, "memory_bytes": m.memory_bytes },
        "meminfo": obj(&r.meminfo),
        "vmstat": obj(&r.vmstat),
        "tlb": {
            "hits": r.tlb.hits, "misses": r.tlb.misses, "flushes": r.tlb.flushes,
            "shootdown_ipis": r.tlb.shootdown_ipis, "amat_cycles": r.tlb.amat_cycles,
        },
        "integrity": {
            "bytes_verified": r.integrity.bytes_verified,
            "corruptions": r.integrity.corruptions,
            "isolation_violations": r.integrity.isolation_violations,
        },
        "invariants": { "checks": r.invariant_checks, "violations": r.invariant_violations.len() },
        "oom_kills": r.oom_kills.iter().map(|k| json!({
            "pid": k.pid.0, "name": k.name, "oom_score_adj": k.oom_score_adj,
            "total_vm_kb": k.total_vm_kb, "anon_rss_kb": k.anon_rss_kb,
            "file_rss_kb": k.file_rss_kb, "shmem_rss_kb": k.shmem_rss_kb,
            "pgtables_kb": k.pgtables_kb, "t_ms": k.t_ms, "line": k.kernel_line(),
        })).collect::<Vec<_>>(),
        "daemons": {
            "kswapd": {
                "wakeups": r.daemons.kswapd_wakeups, "runs": r.daemons.kswapd_runs,
                "balanced_runs": r.daemons.kswapd_balanced_runs,
                "slab_objects_freed": r.daemons.kswapd_slab_freed,
                "failures": r.daemons.kswapd_failures,
            },
            "flusher": { "runs": r.daemons.flusher.runs, "periodic": r.daemons.flusher.periodic,
                         "pages_written": r.daemons.flusher.pages_written },
            "oom_reaper": { "queued": r.daemons.reaper.queued, "reaped": r.daemons.reaper.reaped,
                            "exited_first": r.daemons.reaper.exited_first },
            "io": { "reads": r.daemons.io.reads, "writes": r.daemons.io.writes,
                    "bytes_read": r.daemons.io.bytes_read, "bytes_written": r.daemons.io.bytes_written,
                    "wait_us": r.daemons.io.wait_us },
            "samples": r.daemons.samples,
        },
        "processes": r.processes.iter().map(|p| json!({
            "pid": p.pid.0, "name": p.name, "oom_score_adj": p.oom_score_adj, "exit": p.exit.name(),
            "min_flt": p.min_flt, "maj_flt": p.maj_flt, "rss_kb": p.rss_kb, "swap_kb": p.swap_kb,
            "faults_per_second": p.faults_per_second(),
        })).collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&report).expect("a JSON value serializes");
    s.push('\n');
    s
}
