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

/// Summarises a run of `machine` for `mmsim run`: for now the `free -m` table of its meminfo.
///
/// The workload issue extends this with what the run did.
pub fn run_summary(machine: &Machine) -> anyhow::Result<String> {
    let meminfo = machine.proc_file(ProcFile::Meminfo);
    Ok(FreeSummary::from_meminfo(&meminfo)
        .context("cannot summarise /proc/meminfo")?
        .render_mebibytes())
}
