//! `mmsim run --out DIR`: the run's `/proc` snapshot, each process's `/proc/PID` files, the
//! sampler's time series as CSV, the kernel log lines and the JSON report.
//!
//! Layout:
//! - `proc/{meminfo,vmstat,zoneinfo,buddyinfo,slabinfo,swaps}` at the end of the run;
//! - `proc/PID/{status,statm,maps,smaps,smaps_rollup,oom_score,oom_score_adj}` as each process
//!   exited (before its teardown);
//! - `series/meminfo.csv` and `series/vmstat.csv`: `t_ms` then one column per field, one row
//!   per sample;
//! - `dmesg`: the OOM killer's lines, with kernel timestamps;
//! - `report.json`.

use anyhow::Context as _;
use mm_sim::{Machine, ProcFile, RunReport, Sample};
use std::fmt::Write as _;
use std::path::Path;

/// Writes the directory; returns how many files it wrote.
pub(crate) fn write(
    dir: &Path,
    machine: &Machine,
    report: &RunReport,
    json: &str,
) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut put = |rel: &str, text: &str| -> anyhow::Result<()> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        n += 1;
        Ok(())
    };
    for f in ProcFile::ALL {
        put(&format!("proc/{}", f.name()), &machine.proc_file(f))?;
    }
    for snap in &report.proc_snapshots {
        for (name, text) in &snap.files {
            put(&format!("proc/{}/{name}", snap.pid.0), text)?;
        }
    }
    put("series/meminfo.csv", &csv(&report.samples, |s| &s.meminfo))?;
    put("series/vmstat.csv", &csv(&report.samples, |s| &s.vmstat))?;
    put("dmesg", &dmesg(report))?;
    put("report.json", json)?;
    Ok(n)
}

/// One CSV table: `t_ms` and the fields of the first sample, one row per sample.
pub(crate) fn csv(samples: &[Sample], fields: fn(&Sample) -> &Vec<(String, u64)>) -> String {
    let mut out = String::from("t_ms");
    let Some(first) = samples.first() else {
        out.push('\n');
        return out;
    };
    let names: Vec<&str> = fields(first).iter().map(|(k, _)| k.as_str()).collect();
    for n in &names {
        out.push(',');
        out.push_str(n);
    }
    out.push('\n');
    for s in samples {
        let _ = write!(out, "{}", s.t_ms);
        for n in &names {
            let v = fields(s)
                .iter()
                .find(|(k, _)| k == n)
                .map_or(0, |(_, v)| *v);
            let _ = write!(out, ",{v}");
        }
        out.push('\n');
    }
    out
}

/// The kernel log lines of the run (`[seconds.micros] message`).
pub(crate) fn dmesg(report: &RunReport) -> String {
    let mut out = String::new();
    for k in &report.oom_kills {
        let _ = writeln!(
            out,
            "[{:>5}.{:06}] {}",
            k.t_ms / 1000,
            (k.t_ms % 1000) * 1000,
            k.kernel_line()
        );
    }
    out
}
