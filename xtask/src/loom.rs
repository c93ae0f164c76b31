//! `cargo xtask loom [CRATE]`: the loom models.
//!
//! A crate has loom models when its `src/` tree holds a file named `loom_*.rs` (style.md rule
//! 5). Each such crate runs as
//!
//! ```text
//! RUSTFLAGS="--cfg mm_loom -C debug-assertions" CARGO_TARGET_DIR=target/loom \
//!   LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2} LOOM_MAX_BRANCHES=${LOOM_MAX_BRANCHES:-10000} \
//!   cargo test --release --lib -p CRATE
//! ```
//!
//! Under `cfg(mm_loom)` a crate compiles only its loom tests, so no test-name filter is needed;
//! `cargo xtask loom CRATE -- NAME --exact` passes harness arguments through, for replaying one
//! model from a checkpoint (docs/concurrency.md).
//! The separate target directory keeps the loom build from invalidating the normal one.

use crate::util;
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Instant;

const DEFAULT_PREEMPTIONS: u32 = 2;
const DEFAULT_MAX_BRANCHES: &str = "10000";

/// Runs the loom models of `krate`, or of every crate that has some. `preemptions` overrides
/// `LOOM_MAX_PREEMPTIONS` (CI pins it); otherwise the environment's value or 2 is used.
/// `test_args` go to the test harness after `--`.
pub(crate) fn run(
    root: &Path,
    krate: Option<&str>,
    preemptions: Option<u32>,
    test_args: &[String],
) -> Result<()> {
    let meta = util::metadata(root)?;
    let crates_dir = root.join("crates");
    let mut targets = Vec::new();
    match krate {
        Some(name) => {
            let Some(p) = meta.packages.iter().find(|p| p.name == name) else {
                bail!("no workspace package named `{name}`");
            };
            if !has_loom_files(p.dir())? {
                eprintln!("loom: `{name}` has no loom_*.rs file under src/; running it anyway");
            }
            targets.push(name.to_string());
        }
        None => {
            for p in &meta.packages {
                if p.dir().starts_with(&crates_dir) && has_loom_files(p.dir())? {
                    targets.push(p.name.clone());
                }
            }
            targets.sort();
        }
    }
    if targets.is_empty() {
        println!("loom: no crate under crates/ has a src/**/loom_*.rs file yet; nothing to run");
        return Ok(());
    }

    let preemptions = match preemptions {
        Some(n) => n.to_string(),
        None => std::env::var("LOOM_MAX_PREEMPTIONS")
            .unwrap_or_else(|_| DEFAULT_PREEMPTIONS.to_string()),
    };
    let max_branches =
        std::env::var("LOOM_MAX_BRANCHES").unwrap_or_else(|_| DEFAULT_MAX_BRANCHES.to_string());
    eprintln!(
        "loom: {} (LOOM_MAX_PREEMPTIONS={preemptions})",
        targets.join(", ")
    );
    for name in &targets {
        let t = Instant::now();
        let mut cmd = util::cargo(root);
        cmd.env("RUSTFLAGS", "--cfg mm_loom -C debug-assertions")
            .env("CARGO_TARGET_DIR", root.join("target/loom"))
            .env("LOOM_MAX_PREEMPTIONS", &preemptions)
            .env("LOOM_MAX_BRANCHES", &max_branches)
            .args(["test", "--release", "--lib", "-p", name]);
        if !test_args.is_empty() {
            cmd.arg("--").args(test_args);
        }
        util::run(&mut cmd)?;
        eprintln!("loom: {name} ok in {}", util::fmt_duration(t.elapsed()));
    }
    Ok(())
}

fn has_loom_files(crate_dir: &Path) -> Result<bool> {
    Ok(util::walk_files(&crate_dir.join("src"))?.iter().any(|f| {
        f.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("loom_") && n.ends_with(".rs"))
    }))
}
