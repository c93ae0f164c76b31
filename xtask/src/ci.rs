//! `cargo xtask ci`: every check CI runs, in order, stopping at the first failure.
//!
//! 1. `cargo fmt --all -- --check`
//! 2. `cargo clippy --workspace --all-targets -- -D warnings`
//! 3. the tests: `cargo nextest run --workspace` when cargo-nextest is installed, else
//!    `cargo test --workspace` (doctests are off in every crate)
//! 4. the loom models, as `cargo xtask loom` with `LOOM_MAX_PREEMPTIONS=2`
//! 5. tidy (also run by step 3 as `#[test] fn tidy`; run again here so its report is the last
//!    word)

use crate::{loom, tidy, util};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

type StepFn = fn(&Path) -> Result<()>;

const STEPS: &[(&str, StepFn)] = &[
    ("fmt", fmt),
    ("clippy", clippy),
    ("test", test),
    ("loom", loom_step),
    ("tidy", tidy::run),
];

/// Runs the CI steps and prints one timing line per step.
pub(crate) fn run(root: &Path) -> Result<()> {
    let start = Instant::now();
    let mut timings: Vec<(&str, Duration, bool)> = Vec::new();
    let n = STEPS.len();
    for (i, (name, step)) in STEPS.iter().enumerate() {
        eprintln!("\n==> ci [{}/{n}] {name}", i + 1);
        let t = Instant::now();
        let result = step(root);
        let took = t.elapsed();
        timings.push((name, took, result.is_ok()));
        match &result {
            Ok(()) => eprintln!(
                "<== ci [{}/{n}] {name}: ok in {}",
                i + 1,
                util::fmt_duration(took)
            ),
            Err(_) => eprintln!(
                "<== ci [{}/{n}] {name}: FAILED after {}",
                i + 1,
                util::fmt_duration(took)
            ),
        }
        if result.is_err() {
            print_summary(&timings, start.elapsed());
            println!("steps: {} passed, 1 failed", i);
            return result.with_context(|| {
                format!(
                    "ci step {}/{n} `{name}` failed; later steps did not run",
                    i + 1
                )
            });
        }
    }
    print_summary(&timings, start.elapsed());
    // The plain closing line: CI steps (each test runner printed its own counts above).
    println!("steps: {n} passed, 0 failed");
    Ok(())
}

fn print_summary(timings: &[(&str, Duration, bool)], total: Duration) {
    eprintln!("\nci timings:");
    for (name, took, ok) in timings {
        let status = if *ok { "ok" } else { "FAILED" };
        eprintln!("  {name:<8} {:>9}  {status}", util::fmt_duration(*took));
    }
    eprintln!("  {:<8} {:>9}", "total", util::fmt_duration(total));
}

fn fmt(root: &Path) -> Result<()> {
    util::run(util::cargo(root).args(["fmt", "--all", "--", "--check"]))
}

fn clippy(root: &Path) -> Result<()> {
    util::run(util::cargo(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

fn test(root: &Path) -> Result<()> {
    if util::has_cargo_subcommand(root, "nextest") {
        util::run(util::cargo(root).args(["nextest", "run", "--workspace"]))
    } else {
        eprintln!("cargo-nextest is not installed: using cargo test");
        util::run(util::cargo(root).args(["test", "--workspace"]))
    }
}

fn loom_step(root: &Path) -> Result<()> {
    loom::run(root, None, Some(2), &[])
}
