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

/// Runs the scenario's processes on the machine.
pub(crate) fn run(
    machine: &mut Machine,
    scenario: &Scenario,
    seed: u64,
) -> Result<mm_sim::RunReport, Failure> {
    let mem_total = machine.buddy().totalram_pages() * 4096;
    let plans = scenario.plan(mem_total, seed);
    let mut opts = mm_sim::RunOpts {
        seed,
        ..mm_sim::RunOpts::default()
    };
    if let Some(mm_scenario::Length::Duration(d)) = scenario.length {
        opts.deadline = Some(d);
    }
    machine
        .run(plans, &opts)
        .map_err(|e| Failure::Usage(anyhow::anyhow!("{e}")))
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
        "oom_kills": Value::Array(vec![]),
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
