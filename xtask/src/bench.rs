//! `cargo xtask bench [--quick] [--json PATH]`: the criterion benchmarks of `crates/mm-bench`,
//! reported in the units of its id registry.
//!
//! `crates/mm-bench/ids.json` registers the benchmark ids that are reported, and ratios between
//! them:
//!
//! ```text
//! {"ids": {"buddy.pcp_pair_1t": {"unit": "ns"},
//!          "buddy.pcp_pair_2t_throughput": {"unit": "Mops/s", "threads": 2},
//!          "mmu.shootdown_2cpu": {"unit": "us"}},
//!  "ratios": [{"name": "...", "num": "<id>", "den": "<id>"}]}
//! ```
//!
//! After `cargo bench -p mm-bench --bench <each bench target>`, each id's mean time per iteration
//! is read from criterion's `new/estimates.json` (`mean.point_estimate`, in ns). Criterion 0.8
//! writes it to `<target>/criterion/<directory_name>/new/`, where the directory name is the id
//! with `?"/\*<>:|^` replaced by `_` (a benchmark group adds one directory level per `/` in the
//! full id, `.` is kept), and records the mapping in `new/benchmark.json` (`full_id`,
//! `directory_name`). We read that mapping rather than re-deriving the escaping.
//!
//! Units: `ns` is the time per iteration; `us` and `ms` are it divided by 1000 and 10^6;
//! `Mops/s` is `threads * 1000 / ns` (one iteration is one operation on each of `threads`
//! threads; `threads` defaults to 1).
//!
//! `--quick` passes `--warm-up-time 0.5 --measurement-time 1 --sample-size 10`. Criterion 0.8 also
//! has `--quick`, but that mode skips the warm-up and fits only two samples, which is too little
//! for the multi-threaded throughput benchmarks.

use crate::util;
use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const BENCH_PACKAGE: &str = "mm-bench";
const QUICK_ARGS: &[&str] = &[
    "--warm-up-time",
    "0.5",
    "--measurement-time",
    "1",
    "--sample-size",
    "10",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registry {
    ids: BTreeMap<String, IdSpec>,
    #[serde(default)]
    ratios: Vec<Ratio>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdSpec {
    unit: String,
    threads: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ratio {
    name: String,
    num: String,
    den: String,
}

/// Converts a criterion mean (ns per iteration) to `unit`.
fn convert(unit: &str, threads: u32, ns: f64) -> Result<f64> {
    Ok(match unit {
        "ns" => ns,
        "us" => ns / 1e3,
        "ms" => ns / 1e6,
        "Mops/s" => f64::from(threads) * 1e3 / ns,
        other => bail!("unknown unit `{other}` (known: ns, us, ms, Mops/s)"),
    })
}

fn load_registry(path: &Path) -> Result<Registry> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "could not read the benchmark id registry {}",
            path.display()
        )
    })?;
    let reg: Registry = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid id registry", path.display()))?;
    for (id, spec) in &reg.ids {
        convert(&spec.unit, 1, 1.0).with_context(|| format!("{}: id `{id}`", path.display()))?;
        ensure!(
            spec.threads != Some(0),
            "{}: id `{id}` has threads = 0",
            path.display()
        );
    }
    for r in &reg.ratios {
        for id in [&r.num, &r.den] {
            ensure!(
                reg.ids.contains_key(id),
                "{}: ratio `{}` names `{id}`, which is not a registered id",
                path.display(),
                r.name
            );
        }
    }
    Ok(reg)
}

/// Runs the benchmarks and prints (and with `json`, writes) the registered results.
pub(crate) fn run(root: &Path, quick: bool, json: Option<&Path>) -> Result<()> {
    let meta = util::metadata(root)?;
    let Some(pkg) = meta.packages.iter().find(|p| p.name == BENCH_PACKAGE) else {
        bail!(
            "there is no `{BENCH_PACKAGE}` package (crates/mm-bench) yet: `cargo xtask bench` runs \
             its criterion benchmarks and reads its id registry crates/mm-bench/ids.json"
        );
    };
    let registry_path = pkg.dir().join("ids.json");
    let registry = load_registry(&registry_path)?;
    let benches: Vec<&str> = pkg
        .targets
        .iter()
        .filter(|t| t.kind.iter().any(|k| k == "bench"))
        .map(|t| t.name.as_str())
        .collect();
    ensure!(
        !benches.is_empty(),
        "{BENCH_PACKAGE} has no [[bench]] target"
    );

    let mut cmd = util::cargo(root);
    cmd.args(["bench", "-p", BENCH_PACKAGE]);
    for b in &benches {
        cmd.args(["--bench", b]);
    }
    if quick {
        cmd.arg("--").args(QUICK_ARGS);
    }
    // Estimates older than this were not written by this run. The slack covers coarse file
    // timestamps.
    let started = SystemTime::now() - Duration::from_secs(1);
    util::run(&mut cmd)?;

    let criterion_dir = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| meta.target_directory.join("criterion"));
    let index = index_benchmarks(&criterion_dir)?;

    let mut results: BTreeMap<&str, (f64, &str)> = BTreeMap::new();
    let mut missing = Vec::new();
    for (id, spec) in &registry.ids {
        let dir = index
            .get(id.as_str())
            .map(|b| b.dir.clone())
            .unwrap_or_else(|| criterion_dir.join(default_directory(id)));
        let estimates = dir.join("new/estimates.json");
        let fresh = std::fs::metadata(&estimates)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= started);
        if !fresh {
            missing.push(format!(
                "  `{id}`: {} {}",
                estimates.display(),
                if estimates.exists() {
                    "is stale (not written by this run)"
                } else {
                    "does not exist"
                }
            ));
            continue;
        }
        let ns = read_mean_ns(&estimates)?;
        ensure!(
            ns.is_finite() && ns > 0.0,
            "`{id}`: criterion's mean is {ns} ns ({})",
            estimates.display()
        );
        let value = convert(&spec.unit, spec.threads.unwrap_or(1), ns)?;
        results.insert(id, (value, &spec.unit));
    }
    if !missing.is_empty() {
        bail!(
            "no criterion estimate from this run for {} registered id(s) of {}:\n{}\n\
             each id in ids.json must be the exact id of a criterion benchmark in crates/mm-bench",
            missing.len(),
            registry_path.display(),
            missing.join("\n")
        );
    }

    for (full_id, b) in &index {
        if b.modified >= started && !registry.ids.contains_key(full_id.as_str()) {
            eprintln!("note: benchmark `{full_id}` ran but is not registered in ids.json");
        }
    }

    let width = results.keys().map(|id| id.len()).max().unwrap_or(2).max(2);
    println!("\n{:<width$}  {:>12}  unit", "id", "value");
    for (id, (value, unit)) in &results {
        println!("{id:<width$}  {:>12}  {unit}", fmt_value(*value));
    }
    if !registry.ratios.is_empty() {
        let width = registry
            .ratios
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(5);
        println!("\n{:<width$}  {:>12}  num / den", "ratio", "value");
        for r in &registry.ratios {
            let ratio = results[r.num.as_str()].0 / results[r.den.as_str()].0;
            println!(
                "{:<width$}  {:>12}  {} / {}",
                r.name,
                fmt_value(ratio),
                r.num,
                r.den
            );
        }
    }

    if let Some(path) = json {
        let mut obj = serde_json::Map::new();
        for (id, (value, unit)) in &results {
            obj.insert(
                id.to_string(),
                serde_json::json!({ "value": value, "unit": unit }),
            );
        }
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(obj))?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("could not write {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A benchmark criterion has results for.
#[derive(Debug)]
struct Benchmark {
    dir: PathBuf,
    modified: SystemTime,
}

/// Maps criterion's `full_id` of every benchmark with results to its directory.
fn index_benchmarks(criterion_dir: &Path) -> Result<BTreeMap<String, Benchmark>> {
    #[derive(Deserialize)]
    struct BenchmarkJson {
        full_id: String,
        directory_name: String,
    }
    let mut index = BTreeMap::new();
    for f in util::walk_files(criterion_dir)? {
        let is_new = f
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "new");
        if !is_new || f.file_name().is_none_or(|n| n != "benchmark.json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(b) = serde_json::from_str::<BenchmarkJson>(&text) else {
            continue;
        };
        let modified = std::fs::metadata(&f)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let dir = criterion_dir.join(&b.directory_name);
        index.insert(b.full_id, Benchmark { dir, modified });
    }
    Ok(index)
}

/// Criterion's directory for a benchmark id: each `/`-separated part with the characters that
/// are unsafe in file names replaced by `_` (criterion's `make_filename_safe`).
fn default_directory(id: &str) -> PathBuf {
    id.split('/')
        .map(|part| part.replace(['?', '"', '\\', '*', '<', '>', ':', '|', '^'], "_"))
        .collect()
}

fn read_mean_ns(estimates: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(estimates)
        .with_context(|| format!("could not read {}", estimates.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", estimates.display()))?;
    v.pointer("/mean/point_estimate")
        .and_then(|x| x.as_f64())
        .with_context(|| format!("{} has no mean.point_estimate", estimates.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_from_ns_per_iteration() {
        assert_eq!(convert("ns", 1, 250.0).unwrap(), 250.0);
        assert_eq!(convert("us", 1, 2500.0).unwrap(), 2.5);
        // 2 threads each doing one op per 100 ns iteration: 20 Mops/s.
        assert_eq!(convert("Mops/s", 2, 100.0).unwrap(), 20.0);
        assert!(convert("furlongs", 1, 1.0).is_err());
    }

    #[test]
    fn default_directory_keeps_dots_and_splits_groups() {
        assert_eq!(
            default_directory("buddy.pcp_pair_1t"),
            Path::new("buddy.pcp_pair_1t")
        );
        assert_eq!(default_directory("grp/a:b"), Path::new("grp/a_b"));
    }
}
