//! The scenario format (layer L7): parses and validates TOML scenarios into a [`Scenario`],
//! whose [`MachineConfig`](mm_sim::MachineConfig) `mm-sim` boots.
//!
//! This crate owns:
//! - the format itself: the top-level `name`, `description`, `duration`, `ops` and `seed`,
//!   `[machine]` (`cpus`, `memory`, `[[machine.zone]]`), `[sysctl]` (`vm.*`) and `[[process]]`
//!   with its `[[process.phase]]`s ([`ProcessSpec`], [`PhaseSpec`]), read by [`parse_str`],
//!   [`load`] and [`load_named`];
//! - the workloads: [`Scenario::plan`] turns the processes into
//!   [`ProcessPlan`](mm_sim::workload::ProcessPlan)s whose threads are seeded generators
//!   (`anon`, `mmap-churn`, `malloc`, `fork-cow`) that store values derived from (pid, address,
//!   version) and check every load, counting [`Integrity`](mm_sim::workload::Integrity);
//! - `--set KEY=VALUE` overrides, spliced into the parsed tree before validation;
//! - sizes ([`Size`]): byte counts with binary suffixes, and percentages for the fields that
//!   accept them;
//! - the built-in scenarios ([`builtins`], [`builtin`]);
//! - the errors ([`ScenarioError`]), each one line naming its [`Place`].
//!
//! Its neighbours: `mm-sim` below it defines the configuration types it fills; `mm-cli` above
//! it resolves scenario names and prints the errors.
//!
//! # Invariants
//! - A returned [`Scenario`] is valid: every rule of the format holds (CPUs in `1..=256`,
//!   memory page-aligned in `16 MiB..=64 TiB`, zones known, unique, ascending, inside their
//!   address ranges, non-overlapping, `managed <= present <= spanned`, covered by memory, and
//!   every sysctl in its kernel range, every process and phase within the rules of
//!   `docs/scenarios.md`), so the simulator need not re-check them.
//! - A plan is a pure function of the scenario, MemTotal and the seed.
//! - Unknown keys are errors everywhere; nothing in a scenario is silently ignored.
//! - Every error names exactly one place: `FILE:LINE:COL` (1-based, columns in characters) or
//!   `--set KEY=VALUE`. When several things are wrong, the first one checked is reported.
//!
//! # Locking protocol
//! None: parsing is a pure function of the text and the overrides.
#![deny(unsafe_code)]

mod doc;
mod error;
mod machine;
mod process;
mod size;
mod sysctl;
#[cfg(all(test, not(mm_loom)))]
mod tests;
mod workload;

use std::path::Path;

use mm_sim::MachineConfig;

pub use error::{Bounds, FloatRange, Place, Problem, ScenarioError};
pub use process::{Length, Pattern, PhaseSpec, ProcessSpec, Touch, WorkloadKind};
pub use size::{format_bytes, Size, SizeError, GIB, KIB, MIB, TIB};
pub use workload::MemSizes;

use doc::{Doc, Table};

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The top-level `name`, if given (for built-ins, the built-in's name when absent).
    pub name: Option<String>,
    /// The top-level `description`, if given.
    pub description: Option<String>,
    /// The machine to boot: `[machine]` plus `[sysctl]`.
    pub machine: MachineConfig,
    /// The `[[process]]` tables, in order.
    pub processes: Vec<ProcessSpec>,
    /// The top-level `duration` or `ops`: when the run stops; `None` runs until every process
    /// has exited.
    pub length: Option<Length>,
    /// The top-level `seed`, if given (`--seed` overrides it).
    pub seed: Option<u64>,
}

impl Scenario {
    /// Builds the processes to start: for each `[[process]]`, `count` processes of `threads`
    /// threads, every thread a workload running the phases in order. Percent sizes are of
    /// `mem.total` (MemTotal) or, written `"N% avail"`, of `mem.available` (MemAvailable at
    /// boot); thread `t` of instance `i` of the `k`-th `[[process]]` is seeded from
    /// `(seed, k, i, t)`, so the same seed gives the same operation streams.
    pub fn plan(&self, mem: MemSizes, seed: u64) -> Vec<mm_sim::workload::ProcessPlan> {
        workload::plan(&self.processes, mem, seed)
    }
}

/// The built-in scenarios, as (name, TOML text), `default` first.
static BUILTINS: &[(&str, &str)] = &[
    ("default", include_str!("../builtins/default.toml")),
    (
        "boot-sample",
        include_str!("../testdata/host-6.18-2cpu.toml"),
    ),
    ("fork-cow", include_str!("../builtins/fork-cow.toml")),
    (
        "page-fault-scale",
        include_str!("../builtins/page-fault-scale.toml"),
    ),
    ("oom", include_str!("../builtins/oom.toml")),
];

/// Returns the built-in scenarios as (name, TOML text), `default` first.
pub fn builtins() -> &'static [(&'static str, &'static str)] {
    BUILTINS
}

/// Returns the TOML text of the built-in scenario `name`.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// Parses and validates a scenario text; `origin` names it in error places (a file path).
pub fn parse_str(src: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    parse_with_overrides(src, origin, &[])
}

/// Parses a scenario text, applies `overrides` (`KEY=VALUE`, in order; the value is TOML, or a
/// bare string such as `1TiB` when it does not parse as TOML) and validates the result.
pub fn parse_with_overrides(
    src: &str,
    origin: &str,
    overrides: &[String],
) -> Result<Scenario, ScenarioError> {
    let (doc, root) = Doc::parse(src, origin, overrides)?;
    read_scenario(&Table::root(&doc, &root))
}

/// Reads the scenario file at `path`, applies `overrides` and validates it.
pub fn load(path: impl AsRef<Path>, overrides: &[String]) -> Result<Scenario, ScenarioError> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|error| ScenarioError::Read {
        path: origin.clone(),
        error,
    })?;
    parse_with_overrides(&src, &origin, overrides)
}

/// Loads a scenario by built-in name or by path, applies `overrides` and validates it.
///
/// A built-in name wins over a file of the same name (write `./default` for the file). A name
/// that is neither is [`ScenarioError::UnknownScenario`]. A built-in without a `name` key is
/// named after itself, and its places read `<builtin:NAME>:LINE:COL`.
pub fn load_named(name: &str, overrides: &[String]) -> Result<Scenario, ScenarioError> {
    if let Some(text) = builtin(name) {
        let mut scenario = parse_with_overrides(text, &format!("<builtin:{name}>"), overrides)?;
        scenario.name.get_or_insert_with(|| name.to_owned());
        return Ok(scenario);
    }
    if !Path::new(name).exists() {
        let names: Vec<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
        return Err(ScenarioError::UnknownScenario {
            name: name.to_owned(),
            builtins: names.join(", "),
        });
    }
    load(name, overrides)
}

/// Returns a one-line summary of a scenario text: the first line of its `description`, or
/// else its first comment line.
pub fn summary(src: &str) -> Option<String> {
    let description = toml::de::DeTable::parse(src).ok().and_then(|root| {
        root.get_ref()
            .get("description")
            .and_then(|d| d.get_ref().as_str())
            .and_then(|d| d.lines().next())
            .map(str::to_owned)
    });
    description.or_else(|| {
        src.lines()
            .filter_map(|l| l.trim().strip_prefix('#'))
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned)
    })
}

/// Reads the top level: `name`, `description`, `duration`, `ops`, `seed`, `[machine]`,
/// `[sysctl]` and `[[process]]`.
fn read_scenario(root: &Table<'_, '_>) -> Result<Scenario, ScenarioError> {
    root.deny_unknown(&[
        "name",
        "description",
        "duration",
        "ops",
        "seed",
        "machine",
        "sysctl",
        "process",
    ])?;
    let name = root.string("name")?.map(|s| s.get_ref().to_string());
    let description = root.string("description")?.map(|s| s.get_ref().to_string());
    let run = process::read_run(root)?;
    let machine = machine::read(&root.require_table("machine")?)?;
    let sysctl = sysctl::read(root.table("sysctl")?.as_ref())?;
    let processes = process::read_processes(root, machine.cpus)?;
    Ok(Scenario {
        name,
        description,
        machine: machine.into_config(sysctl),
        processes,
        length: run.length,
        seed: run.seed,
    })
}
