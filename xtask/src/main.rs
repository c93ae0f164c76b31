//! Project automation for mmsim, run as `cargo xtask <task>` (the alias lives in
//! `.cargo/config.toml`).
//!
//! - `ci`: everything CI checks, in order, stopping at the first failure.
//! - `loom [CRATE] [-- TEST_ARGS]`: the loom models of every crate that has `loom_*.rs` files.
//! - `bench [--quick] [--json PATH]`: the criterion benchmarks of `crates/mm-bench`, converted to
//!   the units of its id registry.
//! - `tidy`: repository rules that rustc and clippy do not check (dependency DAG, crate headers,
//!   concurrency names, test attributes, `todo!`, `// SAFETY:` comments).
//!
//! xtask is host tooling: it may use std freely and depends on no mm-* crate.

mod bench;
mod ci;
mod loom;
mod tidy;
mod util;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// mmsim project automation.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run every CI check in order: fmt, clippy, tests, loom (LOOM_MAX_PREEMPTIONS=2), tidy.
    Ci,
    /// Run the loom models (`--cfg mm_loom`, release, target/loom).
    Loom {
        /// Only this package (e.g. mm-buddy); default: every crate with a `loom_*.rs` file.
        #[arg(value_name = "CRATE")]
        krate: Option<String>,
        /// Arguments for the test harness, after `--` (e.g. a test name and `--exact`).
        #[arg(last = true, value_name = "TEST_ARGS")]
        test_args: Vec<String>,
    },
    /// Run the criterion benchmarks of crates/mm-bench and report them in registry units.
    Bench {
        /// Short runs: 0.5 s warm-up, 1 s measurement, 10 samples per benchmark.
        #[arg(long)]
        quick: bool,
        /// Also write `{"<id>": {"value": .., "unit": ".."}}` to PATH.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
    },
    /// Check the dependency DAG, crate headers, concurrency names, test attributes, todo!s and
    /// SAFETY comments.
    Tidy,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = util::project_root();
    let result = match cli.task {
        Task::Ci => ci::run(&root),
        Task::Loom { krate, test_args } => loom::run(&root, krate.as_deref(), None, &test_args),
        Task::Bench { quick, json } => bench::run(&root, quick, json.as_deref()),
        Task::Tidy => tidy::run(&root),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
