//! The `mmsim` command line (layer L8): resolves scenarios, boots the machine and prints what
//! the user asked for.
//!
//! This crate owns the commands and their output formats:
//! - `mmsim boot [SCENARIO] [--set KEY=VALUE]... --proc FILE` prints one `/proc` file of the
//!   freshly booted machine;
//! - `mmsim run [SCENARIO] [--set KEY=VALUE]... [--seed N] [--json PATH|-] [--out DIR]
//!   [--trace FILE]` boots the machine, runs the scenario's processes and prints a summary (the
//!   `free -m` table ([`FreeSummary`]), vmstat and reclaim figures, TLB hit rate and AMAT,
//!   integrity, the daemons, the OOM kill lines and the processes with their fault rates) or
//!   the JSON report; `--out` writes the `/proc` snapshots and time series, `--trace` the
//!   tracepoint events as JSON lines; a progress bar shows on a terminal; `RUST_LOG` turns on
//!   log lines on stderr;
//! - `mmsim scenarios` lists the built-in scenarios and `mmsim show NAME` prints one.
//!
//! Its neighbours: `mm-scenario` parses and validates scenarios; `mm-sim` boots them and renders
//! `/proc`. [`main_with`] is the whole program with its streams passed in, so tests drive it
//! in-process.
//!
//! # Invariants
//! - Exit codes: 0 ok; 1 a simulator failure; 2 a usage or scenario error; 3 a run that found
//!   a data-integrity, isolation or invariant violation, or a stalled CPU.
//! - An error is one line on stderr, `mmsim: <message>`, and the message names the place
//!   (`FILE:LINE:COL` or `--set KEY=VALUE`). Clap's own usage errors keep clap's format.
//! - Requested output (a `/proc` file, a TOML text) goes to stdout byte for byte.
//!
//! # Locking protocol
//! None: the CLI is single-threaded; the machine's threads belong to `mm-sim`.
#![deny(unsafe_code)]

mod free;
mod machine;
mod out;
#[cfg(all(test, not(mm_loom)))]
mod tests;

use std::ffi::OsString;
use std::fmt;
use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use mm_scenario::{format_bytes, Scenario};

pub use free::{FreeSummary, FREE_HEADER};
pub use machine::run_summary;

/// The `mmsim` command line.
#[derive(Debug, Parser)]
#[command(name = "mmsim", version, about = "A Linux memory-management simulator")]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The `mmsim` commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot the machine, run no workload and print one /proc file.
    Boot {
        /// The scenario to boot.
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// The /proc file to print.
        #[arg(long = "proc", value_name = "FILE", value_parser = machine::parse_proc_file)]
        proc_file: machine::ProcFile,
    },
    /// Boot the machine, run the scenario's processes and print what happened.
    Run {
        /// The scenario to run.
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// The run's seed (default: the scenario's `seed`, else 0).
        #[arg(long)]
        seed: Option<u64>,
        /// Write the JSON report to PATH (`-` for stdout, instead of the summary).
        #[arg(long, value_name = "PATH")]
        json: Option<String>,
        /// Write /proc snapshots (proc/, proc/PID/), time series (series/*.csv), the kernel
        /// log lines (dmesg) and the report to DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Write the tracepoint events (mm_vmscan_kswapd_wake, mark_victim, tlb_flush, …) to
        /// FILE as JSON lines.
        #[arg(long, value_name = "FILE")]
        trace: Option<String>,
        /// Keep only these tracepoints in the trace (comma-separated; `mm_vmscan_*` matches a
        /// prefix). The per-page events (mm_page_alloc, mm_page_free, tlb_flush) are many.
        #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "trace")]
        trace_events: Vec<String>,
    },
    /// List the built-in scenarios.
    Scenarios,
    /// Print a built-in scenario as TOML.
    Show {
        /// The built-in's name (see `mmsim scenarios`).
        name: String,
    },
}

/// Selects a scenario and its overrides.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ScenarioArgs {
    /// A scenario file, or the name of a built-in scenario.
    #[arg(value_name = "SCENARIO", default_value = "default")]
    pub scenario: String,
    /// Override a scenario field, e.g. `--set machine.memory=8GiB` (repeatable; applied in order).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ScenarioArgs {
    /// Loads and validates the selected scenario with its overrides.
    pub fn load(&self) -> Result<Scenario, Failure> {
        mm_scenario::load_named(&self.scenario, &self.set).map_err(|e| Failure::Usage(e.into()))
    }
}

/// Why a command failed; the variant decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// A usage or scenario error (exit code 2).
    Usage(anyhow::Error),
    /// The simulator failed (exit code 1).
    Simulator(anyhow::Error),
    /// The run finished but found a data-integrity, isolation or invariant violation, or a
    /// CPU stalled (exit code 3); its output was written.
    Violation(anyhow::Error),
}

impl Failure {
    /// Returns the process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Simulator(_) => 1,
            Failure::Violation(_) => 3,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Failure::Usage(e) | Failure::Simulator(e) | Failure::Violation(e)) = self;
        // `{:#}` joins the cause chain with ": " on one line.
        write!(f, "{e:#}")
    }
}

/// Runs `mmsim` with `args` (program name first), writing to `out` and `err`; returns the exit
/// code.
pub fn main_with<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with code 0; usage errors to stderr with code 2.
            let rendered = e.render();
            return if e.use_stderr() {
                let _ = write!(err, "{rendered}");
                2
            } else {
                let _ = write!(out, "{rendered}");
                0
            };
        }
    };
    match execute(&cli, out) {
        Ok(()) => 0,
        Err(failure) => {
            let _ = writeln!(err, "mmsim: {failure}");
            failure.exit_code()
        }
    }
}

/// Runs one parsed command, writing its output to `out`.
pub fn execute(cli: &Cli, out: &mut dyn Write) -> Result<(), Failure> {
    let text = match &cli.command {
        Command::Boot {
            scenario,
            proc_file,
        } => {
            let scenario = scenario.load()?;
            machine::boot(&scenario)?.proc_file(*proc_file)
        }
        Command::Run {
            scenario,
            seed,
            json,
            out: out_dir,
            trace: trace_path,
            trace_events,
        } => {
            let loaded = scenario.load()?;
            mm_sim::trace::install(false);
            let trace_file = match trace_path {
                Some(p) => Some(
                    mm_sim::trace::TraceFile::create(p, trace_events)
                        .with_context(|| format!("cannot create the trace file {p}"))
                        .map_err(Failure::Usage)?,
                ),
                None => None,
            };
            let mut machine = machine::boot(&loaded)?;
            let seed = seed.or(loaded.seed).unwrap_or(0);
            let report = machine::run(&mut machine, &loaded, seed, out_dir.is_some())?;
            if let Some(t) = trace_file {
                let path = t.path().to_owned();
                t.finish()
                    .with_context(|| format!("cannot write the trace file {path}"))
                    .map_err(Failure::Simulator)?;
            }
            let name = loaded
                .name
                .clone()
                .unwrap_or_else(|| scenario.scenario.clone());
            let json_text = machine::report_json(&name, &loaded, &report);
            if let Some(dir) = out_dir {
                out::write(dir, &machine, &report, &json_text).map_err(Failure::Simulator)?;
            }
            let text = match json.as_deref() {
                Some("-") => json_text,
                Some(path) => {
                    std::fs::write(path, &json_text)
                        .with_context(|| format!("cannot write the report to {path}"))
                        .map_err(Failure::Simulator)?;
                    machine::run_text(&loaded, &scenario.scenario, &machine, &report)
                        .map_err(Failure::Simulator)?
                }
                None => machine::run_text(&loaded, &scenario.scenario, &machine, &report)
                    .map_err(Failure::Simulator)?,
            };
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .context("cannot write to stdout")
                .map_err(Failure::Simulator)?;
            if let Some(v) = machine::violation(&report) {
                return Err(Failure::Violation(anyhow::anyhow!(v)));
            }
            return Ok(());
        }
        Command::Scenarios => list_builtins(),
        Command::Show { name } => mm_scenario::builtin(name)
            .ok_or_else(|| {
                Failure::Usage(anyhow::anyhow!(
                    "unknown built-in scenario '{name}' (built-ins: {})",
                    builtin_names()
                ))
            })?
            .to_owned(),
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
        .map_err(Failure::Simulator)
}

/// Returns the built-in names, comma separated.
fn builtin_names() -> String {
    let names: Vec<&str> = mm_scenario::builtins().iter().map(|(n, _)| *n).collect();
    names.join(", ")
}

/// Lists the built-ins, one per line: the name, then its summary line.
pub fn list_builtins() -> String {
    let builtins = mm_scenario::builtins();
    let width = builtins.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, text) in builtins {
        let summary = mm_scenario::summary(text).unwrap_or_default();
        out.push_str(format!("{name:<width$}  {summary}").trim_end());
        out.push('\n');
    }
    out
}

/// Describes a scenario's machine in one line (`scenario default: 2 CPUs, 4 GiB`); `arg` (the
/// name or path given) names a scenario without a `name`.
pub fn describe(scenario: &Scenario, arg: &str) -> String {
    let m = &scenario.machine;
    format!(
        "scenario {}: {} CPU{}, {}",
        scenario.name.as_deref().unwrap_or(arg),
        m.cpus,
        if m.cpus == 1 { "" } else { "s" },
        format_bytes(m.memory_bytes)
    )
}
