//! The `free -m` view of a `/proc/meminfo` text, in procps-ng's layout.

use std::fmt::Write as _;

use anyhow::{bail, Context as _};

/// The figures `free` shows, in kB, read from `/proc/meminfo` by label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSummary {
    /// `MemTotal`.
    pub mem_total: u64,
    /// `MemTotal - MemFree - Buffers - Cached - SReclaimable`, or `MemTotal - MemFree` if that
    /// would be negative (procps-ng 3.3's rule; procps-ng 4.0.1 and later print
    /// `MemTotal - MemAvailable` instead).
    pub mem_used: u64,
    /// `MemFree`.
    pub mem_free: u64,
    /// `Shmem`.
    pub shared: u64,
    /// `Buffers + Cached + SReclaimable`.
    pub buff_cache: u64,
    /// `MemAvailable`.
    pub available: u64,
    /// `SwapTotal`.
    pub swap_total: u64,
    /// `SwapTotal - SwapFree`.
    pub swap_used: u64,
    /// `SwapFree`.
    pub swap_free: u64,
}

/// The header line of `free` without `--wide`.
pub const FREE_HEADER: &str =
    "               total        used        free      shared  buff/cache   available";

impl FreeSummary {
    /// Reads the summary from a `/proc/meminfo` text (`Label:   value kB` lines).
    pub fn from_meminfo(meminfo: &str) -> anyhow::Result<FreeSummary> {
        let field = |label: &str| -> anyhow::Result<u64> {
            let line = meminfo
                .lines()
                .find_map(|line| line.strip_prefix(label)?.strip_prefix(':'))
                .with_context(|| format!("meminfo has no {label} line"))?;
            let value = line.trim().trim_end_matches("kB").trim_end();
            value
                .parse()
                .with_context(|| format!("meminfo {label} is not a number of kB: {line:?}"))
        };
        let mem_total = field("MemTotal")?;
        let mem_free = field("MemFree")?;
        let buffers = field("Buffers")?;
        let cached = field("Cached")?;
        let reclaimable = field("SReclaimable")?;
        let swap_total = field("SwapTotal")?;
        let swap_free = field("SwapFree")?;
        if mem_free > mem_total || swap_free > swap_total {
            bail!("meminfo reports more free memory than total: {meminfo:?}");
        }
        let buff_cache = buffers + cached + reclaimable;
        // procps-ng 4 (the `free` users have): used = MemTotal - MemAvailable.
        let available = field("MemAvailable")?;
        let mem_used = mem_total.saturating_sub(available);
        Ok(FreeSummary {
            mem_total,
            mem_used,
            mem_free,
            shared: field("Shmem")?,
            buff_cache,
            available,
            swap_total,
            swap_used: swap_total - swap_free,
            swap_free,
        })
    }

    /// Renders the table as `free -m` prints it: values in MiB, rounded down; the label in 9
    /// columns, then the total in 11 and every later value in 12, right-aligned.
    pub fn render_mebibytes(&self) -> String {
        let mib = |kb: u64| kb / 1024;
        let mut out = String::new();
        let mut row = |label: &str, values: &[u64]| {
            let _ = write!(out, "{label:<9}");
            for (i, v) in values.iter().enumerate() {
                let width = if i == 0 { 11 } else { 12 };
                let _ = write!(out, "{:>width$}", mib(*v));
            }
            out.push('\n');
        };
        row(
            "Mem:",
            &[
                self.mem_total,
                self.mem_used,
                self.mem_free,
                self.shared,
                self.buff_cache,
                self.available,
            ],
        );
        row("Swap:", &[self.swap_total, self.swap_used, self.swap_free]);
        format!("{FREE_HEADER}\n{out}")
    }
}
