//! The `[[process]]` tables and their `[[process.phase]]`s, and the run-level `duration`, `ops`
//! and `seed`: what runs on the machine, checked as strictly as the machine itself.

use std::time::Duration;

use mm_types::CpuId;
use toml::de::DeValue;
use toml::Spanned;

use crate::doc::{self, Table};
use crate::error::{Bounds, FloatRange, Problem, ScenarioError};
use crate::machine::read_size;
use crate::size::Size;

/// `process.count`: processes of one kind.
const COUNT: Bounds = Bounds::Range(1, 4096);
/// `process.threads`: threads per process.
const THREADS: Bounds = Bounds::Range(1, 1024);
/// `process.oom_score_adj`: `OOM_SCORE_ADJ_MIN..=OOM_SCORE_ADJ_MAX`.
const OOM_SCORE_ADJ: Bounds = Bounds::Range(-1000, 1000);
/// `ops`: a positive operation count.
const OPS: Bounds = Bounds::Range(1, i64::MAX);
/// `seed`: any non-negative 63-bit integer (TOML integers are signed).
const SEED: Bounds = Bounds::Range(0, i64::MAX);
/// `fork-cow` `children`.
const CHILDREN: Bounds = Bounds::Range(1, 64);
/// `fork-cow` `generations`.
const GENERATIONS: Bounds = Bounds::Range(1, 16);
/// The most processes one `fork-cow` phase may fork (per process running it).
pub(crate) const MAX_FORKED: u64 = 1024;
/// Longest command name: `TASK_COMM_LEN - 1`.
const COMM_MAX: usize = 15;

/// The run-level keys: how long the run lasts and its seed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Run {
    pub(crate) length: Option<Length>,
    pub(crate) seed: Option<u64>,
}

/// How long a phase (or a run) lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// A number of operations (each [`Op`](mm_sim::workload::Op) counts one).
    Ops(u64),
    /// Simulated time, from the phase's (or run's) first operation.
    Duration(Duration),
}

/// One `[[process]]`: `count` processes of `threads` threads each, running `phases` in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    /// The command name, 1..=15 bytes.
    pub name: String,
    /// How many processes of this kind start (>= 1).
    pub count: u32,
    /// Threads per process (>= 1), sharing its address space; each runs the phases.
    pub threads: u32,
    /// `oom_score_adj`, -1000..=1000.
    pub oom_score_adj: i32,
    /// CPU affinity (each below `machine.cpus`); `None` runs anywhere.
    pub cpus: Option<Vec<CpuId>>,
    /// When the processes start, from the start of the run.
    pub start_after: Duration,
    /// The phases, run in order; at least one.
    pub phases: Vec<PhaseSpec>,
}

/// One `[[process.phase]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSpec {
    /// What the phase does.
    pub workload: WorkloadKind,
    /// Its memory: bytes, or a percentage of MemTotal (`0 < p <= 100`); never zero.
    pub size: Size,
    /// The fraction of accesses that are stores (0..=1; default 0.5).
    pub write_ratio: f64,
    /// How long it lasts; `None` only for `fork-cow`, which ends when its forks are done.
    pub length: Option<Length>,
}

/// A workload kind and its own keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WorkloadKind {
    /// Maps one anonymous region of `size`, touches its pages per `pattern`, unmaps it.
    Anon {
        /// Which pages are touched.
        pattern: Pattern,
    },
    /// Repeatedly maps a region of up to `size` (random, or exactly `size` with
    /// `fixed_size`), touches some of its pages, unmaps it.
    MmapChurn {
        /// Every mapping is exactly `size` (default: a random size up to it).
        fixed_size: bool,
        /// Which pages of each mapping are touched (default 4 random pages).
        touch: Touch,
    },
    /// malloc-like churn with a live set of up to `size`: below 128 KiB from a brk heap, at or
    /// above it from mmap.
    Malloc,
    /// A file of `size` (at most 256 MiB) on the machine's disk, written whole, then chunks
    /// of 64 KiB rewritten or read back and checked with `O_DIRECT` reads and writes; the task
    /// sleeps in the I/O engine's queue for each.
    DirectIo,
    /// Maps and fills `size`, then forks; parents and children rewrite pages and check them.
    ForkCow {
        /// Children per fork (default 1).
        children: u32,
        /// Levels of fork below the first process (default 1).
        generations: u32,
    },
}

impl WorkloadKind {
    /// Returns the name as scenarios write it.
    pub fn name(&self) -> &'static str {
        match self {
            WorkloadKind::Anon { .. } => "anon",
            WorkloadKind::MmapChurn { .. } => "mmap-churn",
            WorkloadKind::Malloc => "malloc",
            WorkloadKind::ForkCow { .. } => "fork-cow",
            WorkloadKind::DirectIo => "direct-io",
        }
    }
}

/// Which pages of each mapping `mmap-churn` touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// This many random pages (at most the mapping's).
    Pages(u64),
    /// Every page, in order (will-it-scale's page_fault1).
    All,
}

/// Which pages of its region an `anon` phase touches, one access at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pattern {
    /// Page 0, 1, 2, …, wrapping around.
    Sequential,
    /// Uniformly random pages.
    Random,
    /// Zipf(`s`) over the pages: the page of rank k is touched with probability ∝ k^-s.
    Zipf {
        /// The exponent (> 0).
        s: f64,
    },
    /// A hot set of `hot_fraction` of the pages gets `hot_probability` of the accesses.
    HotCold {
        /// Fraction of pages that are hot (0 < x < 1).
        hot_fraction: f64,
        /// Fraction of accesses that go to the hot set (0..=1).
        hot_probability: f64,
    },
    /// Addresses `i * bytes` modulo the region size.
    Stride {
        /// The stride in bytes (> 0).
        bytes: u64,
    },
}

/// Every key of `[[process]]`.
const PROCESS_KEYS: &[&str] = &[
    "name",
    "count",
    "threads",
    "oom_score_adj",
    "cpus",
    "start_after",
    "phase",
];

/// Every key of `[[process.phase]]`; which apply depends on `workload` and `pattern`.
const PHASE_KEYS: &[&str] = &[
    "workload",
    "size",
    "pattern",
    "zipf_s",
    "hot_fraction",
    "hot_probability",
    "stride",
    "write_ratio",
    "ops",
    "duration",
    "children",
    "generations",
    "fixed_size",
    "touch_pages",
];

/// Reads the run-level `duration`, `ops` and `seed` from the top level.
pub(crate) fn read_run(root: &Table<'_, '_>) -> Result<Run, ScenarioError> {
    let length = read_length(root)?;
    let seed = root.int("seed", SEED)?.map(i64::unsigned_abs);
    Ok(Run { length, seed })
}

/// Reads every `[[process]]`; `cpus` is `machine.cpus`.
pub(crate) fn read_processes(
    root: &Table<'_, '_>,
    cpus: u32,
) -> Result<Vec<ProcessSpec>, ScenarioError> {
    let Some(tables) = root.tables("process")? else {
        return Ok(Vec::new());
    };
    tables.iter().map(|t| read_process(t, cpus)).collect()
}

fn read_process(table: &Table<'_, '_>, machine_cpus: u32) -> Result<ProcessSpec, ScenarioError> {
    table.deny_unknown(PROCESS_KEYS)?;
    let doc = table.doc;
    let name = table.require_string("name")?;
    let bytes = name.get_ref().len();
    if !(1..=COMM_MAX).contains(&bytes) {
        return Err(doc.error(
            name.span(),
            Problem::NameLength {
                name: name.get_ref().to_string(),
                bytes,
            },
        ));
    }
    let count = table.int("count", COUNT)?.unwrap_or(1);
    let threads = table.int("threads", THREADS)?.unwrap_or(1);
    let oom_score_adj = table.int("oom_score_adj", OOM_SCORE_ADJ)?.unwrap_or(0);
    let cpus = read_cpus(table, machine_cpus)?;
    let start_after = read_duration(table, "start_after")?.map_or(Duration::ZERO, |d| *d.get_ref());
    let phase_node = table.require("phase")?;
    let phase_tables = table.tables("phase")?.unwrap_or_default();
    if phase_tables.is_empty() {
        return Err(doc.error(phase_node.span(), Problem::NoPhases));
    }
    let phases = phase_tables
        .iter()
        .map(read_phase)
        .collect::<Result<_, _>>()?;
    // Each value is within its bounds, all of which fit the target types.
    Ok(ProcessSpec {
        name: name.get_ref().to_string(),
        count: u32::try_from(count).unwrap_or(1),
        threads: u32::try_from(threads).unwrap_or(1),
        oom_score_adj: i32::try_from(oom_score_adj).unwrap_or(0),
        cpus,
        start_after,
        phases,
    })
}

/// Reads `process.cpus`: a non-empty list of distinct CPUs below `machine.cpus`.
fn read_cpus(
    table: &Table<'_, '_>,
    machine_cpus: u32,
) -> Result<Option<Vec<CpuId>>, ScenarioError> {
    const KEY: &str = "cpus";
    let Some(node) = table.get(KEY) else {
        return Ok(None);
    };
    let DeValue::Array(items) = node.get_ref() else {
        return Err(table.wrong_type(KEY, node, "an array of CPU numbers"));
    };
    if items.is_empty() {
        return Err(table.doc.error(node.span(), Problem::NoCpus));
    }
    let bounds = Bounds::Range(0, i64::from(machine_cpus) - 1);
    let mut out: Vec<CpuId> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = format!("{}[{i}]", table.key_path(KEY));
        let cpu = doc::int_in(table.doc, &key, item, bounds)?;
        // Below machine.cpus, which is at most 256.
        let cpu = CpuId(u32::try_from(cpu).unwrap_or(0));
        if out.contains(&cpu) {
            return Err(table
                .doc
                .error(item.span(), Problem::DuplicateCpu { cpu: cpu.0 }));
        }
        out.push(cpu);
    }
    Ok(Some(out))
}

fn read_phase(phase: &Table<'_, '_>) -> Result<PhaseSpec, ScenarioError> {
    phase.deny_unknown(PHASE_KEYS)?;
    let doc = phase.doc;
    let workload = phase.require_string("workload")?;
    let kind_name = *workload.get_ref();
    match kind_name {
        "anon" | "mmap-churn" | "malloc" | "fork-cow" | "direct-io" => {}
        "file" => return Err(doc.error(workload.span(), Problem::FileWorkload)),
        other => {
            return Err(doc.error(
                workload.span(),
                Problem::UnknownWorkload {
                    name: other.to_owned(),
                },
            ))
        }
    }
    let size = read_size(phase, "size")?;
    let key = phase.key_path("size");
    match *size.get_ref() {
        Size::Bytes(0) | Size::Percent(0.0) | Size::PercentAvail(0.0) => {
            return Err(doc.error(size.span(), Problem::ZeroSize { key }))
        }
        Size::Percent(percent) if percent > 100.0 => {
            return Err(doc.error(size.span(), Problem::PercentTooLarge { key, percent }))
        }
        Size::PercentAvail(percent) if percent > 100.0 => {
            return Err(doc.error(size.span(), Problem::PercentAvailTooLarge { key, percent }))
        }
        _ => {}
    }

    // Keys that belong to one workload or pattern are errors elsewhere.
    let only = |key: &str, applies: bool, only: &'static str| match phase
        .key_span(key)
        .filter(|_| !applies)
    {
        Some(span) => Err(doc.error(
            span,
            Problem::NotApplicable {
                key: phase.key_path(key),
                only,
            },
        )),
        None => Ok(()),
    };
    let anon = kind_name == "anon";
    let fork_cow = kind_name == "fork-cow";
    only("pattern", anon, "workload = \"anon\"")?;
    only("children", fork_cow, "workload = \"fork-cow\"")?;
    only("generations", fork_cow, "workload = \"fork-cow\"")?;
    let churn = kind_name == "mmap-churn";
    only("fixed_size", churn, "workload = \"mmap-churn\"")?;
    only("touch_pages", churn, "workload = \"mmap-churn\"")?;

    let kind = match kind_name {
        "anon" => WorkloadKind::Anon {
            pattern: read_pattern(phase, &only)?,
        },
        "mmap-churn" => WorkloadKind::MmapChurn {
            fixed_size: phase.boolean("fixed_size")?.unwrap_or(false),
            touch: read_touch(phase)?,
        },
        "malloc" => WorkloadKind::Malloc,
        "direct-io" => WorkloadKind::DirectIo,
        _ => {
            let children = phase.int("children", CHILDREN)?.unwrap_or(1);
            let generations = phase.int("generations", GENERATIONS)?.unwrap_or(1);
            let (children, generations) = (children.unsigned_abs(), generations.unsigned_abs());
            let processes = fork_tree_size(children, generations);
            if processes > MAX_FORKED {
                let span = phase
                    .get("generations")
                    .map_or(phase.span.clone(), Spanned::span);
                return Err(doc.error(
                    span,
                    Problem::ForkTreeTooLarge {
                        // Both are at most 64.
                        children: children as u32,
                        generations: generations as u32,
                        processes,
                        max: MAX_FORKED,
                    },
                ));
            }
            WorkloadKind::ForkCow {
                children: children as u32,
                generations: generations as u32,
            }
        }
    };
    if !anon {
        for key in ["zipf_s", "hot_fraction", "hot_probability", "stride"] {
            only(key, false, "workload = \"anon\"")?;
        }
    }
    let write_ratio = phase
        .float("write_ratio", FloatRange::Closed(0.0, 1.0))?
        .map_or(0.5, |w| *w.get_ref());
    let length = read_length(phase)?;
    if length.is_none() && !fork_cow {
        return Err(doc.error(
            phase.span.clone(),
            Problem::MissingLength {
                table: phase.name().to_owned(),
                workload: kind.name(),
            },
        ));
    }
    Ok(PhaseSpec {
        workload: kind,
        size: *size.get_ref(),
        write_ratio,
        length,
    })
}

/// Returns how many processes a fork tree of `children` per fork and `generations` levels
/// forks: `children + children² + … + children^generations`.
pub(crate) fn fork_tree_size(children: u64, generations: u64) -> u64 {
    let mut level = 1u64;
    let mut total = 0u64;
    for _ in 0..generations {
        level = level.saturating_mul(children);
        total = total.saturating_add(level);
    }
    total
}

/// Reads `touch_pages`: a positive number of pages, or `"all"`.
fn read_touch(phase: &Table<'_, '_>) -> Result<Touch, ScenarioError> {
    const KEY: &str = "touch_pages";
    match phase.get(KEY) {
        None => Ok(Touch::Pages(4)),
        Some(node) => match node.get_ref() {
            DeValue::String(s) if s.as_ref() == "all" => Ok(Touch::All),
            DeValue::Integer(_) => {
                let n = doc::int_in(phase.doc, &phase.key_path(KEY), node, OPS)?;
                Ok(Touch::Pages(n.unsigned_abs()))
            }
            _ => Err(phase.wrong_type(KEY, node, "a number of pages or \"all\"")),
        },
    }
}

/// Reads `pattern` and its own keys.
fn read_pattern(
    phase: &Table<'_, '_>,
    only: &dyn Fn(&str, bool, &'static str) -> Result<(), ScenarioError>,
) -> Result<Pattern, ScenarioError> {
    let name = phase.string("pattern")?;
    let name_str = name.as_ref().map_or("sequential", |n| *n.get_ref());
    only("zipf_s", name_str == "zipf", "pattern = \"zipf\"")?;
    let hotcold = name_str == "hotcold";
    only("hot_fraction", hotcold, "pattern = \"hotcold\"")?;
    only("hot_probability", hotcold, "pattern = \"hotcold\"")?;
    only("stride", name_str == "stride", "pattern = \"stride\"")?;
    let pattern = match name_str {
        "sequential" => Pattern::Sequential,
        "random" => Pattern::Random,
        "zipf" => Pattern::Zipf {
            s: phase
                .float("zipf_s", FloatRange::Positive)?
                .map_or(1.0, |s| *s.get_ref()),
        },
        "hotcold" => Pattern::HotCold {
            hot_fraction: phase
                .float("hot_fraction", FloatRange::Open(0.0, 1.0))?
                .map_or(0.1, |f| *f.get_ref()),
            hot_probability: phase
                .float("hot_probability", FloatRange::Closed(0.0, 1.0))?
                .map_or(0.9, |p| *p.get_ref()),
        },
        "stride" => {
            let stride = read_size(phase, "stride")?;
            let key = phase.key_path("stride");
            let bytes = match *stride.get_ref() {
                Size::Bytes(0) => {
                    return Err(phase.doc.error(stride.span(), Problem::ZeroSize { key }))
                }
                Size::Bytes(b) => b,
                Size::Percent(_) | Size::PercentAvail(_) => {
                    return Err(phase
                        .doc
                        .error(stride.span(), Problem::PercentNotBytes { key }))
                }
            };
            Pattern::Stride { bytes }
        }
        other => {
            // `name` is present: the default is a known pattern.
            let span = name.map_or(phase.span.clone(), |n| n.span());
            return Err(phase.doc.error(
                span,
                Problem::UnknownPattern {
                    name: other.to_owned(),
                },
            ));
        }
    };
    Ok(pattern)
}

/// Reads `ops` or `duration` (at most one) from a phase or the top level.
fn read_length(table: &Table<'_, '_>) -> Result<Option<Length>, ScenarioError> {
    let ops = table.int("ops", OPS)?;
    let duration = read_duration(table, "duration")?;
    match (ops, duration) {
        (Some(_), Some(_)) => {
            let later = [table.key_span("ops"), table.key_span("duration")]
                .into_iter()
                .flatten()
                .max_by_key(|s| s.start)
                .unwrap_or(table.span.clone());
            Err(table.doc.error(
                later,
                Problem::BothLengths {
                    table: table.name().to_owned(),
                },
            ))
        }
        (Some(ops), None) => Ok(Some(Length::Ops(ops.unsigned_abs()))),
        (None, Some(d)) => Ok(Some(Length::Duration(*d.get_ref()))),
        (None, None) => Ok(None),
    }
}

/// Reads a duration: `"500ms"`, `"2s"`, `"1.5min"`, `"250us"`, or a number of seconds.
pub(crate) fn read_duration(
    table: &Table<'_, '_>,
    key: &str,
) -> Result<Option<Spanned<Duration>>, ScenarioError> {
    let Some(node) = table.get(key) else {
        return Ok(None);
    };
    let doc = table.doc;
    let seconds = |value: f64| {
        Duration::try_from_secs_f64(value).map_err(|_| {
            doc.error(
                node.span(),
                Problem::BadSeconds {
                    key: table.key_path(key),
                    value,
                },
            )
        })
    };
    let duration = match node.get_ref() {
        DeValue::Integer(_) => {
            let v = doc::int_in(
                doc,
                &table.key_path(key),
                node,
                Bounds::Range(i64::MIN, i64::MAX),
            )?;
            seconds(v as f64)?
        }
        DeValue::Float(f) => seconds(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN))?,
        DeValue::String(text) => parse_duration(text).ok_or_else(|| {
            doc.error(
                node.span(),
                Problem::BadDuration {
                    key: table.key_path(key),
                    text: text.to_string(),
                },
            )
        })?,
        _ => return Err(table.wrong_type(key, node, "a duration (\"500ms\", \"2s\" or seconds)")),
    };
    Ok(Some(Spanned::new(node.span(), duration)))
}

/// Parses `NUMBER UNIT` with unit `us`, `ms`, `s` or `min` (a bare number is seconds).
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scale = match unit.trim_start() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "min" => 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(value * scale).ok()
}
