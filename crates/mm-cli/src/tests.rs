use clap::error::ErrorKind;
use clap::Parser as _;

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("mmsim").chain(args.iter().copied()))
}

/// Runs `mmsim args` in-process; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = main_with(
        std::iter::once("mmsim").chain(args.iter().copied()),
        &mut out,
        &mut err,
    );
    let text = |v: Vec<u8>| String::from_utf8(v).expect("output is UTF-8");
    (code, text(out), text(err))
}

fn scenario(name: &str, set: &[&str]) -> ScenarioArgs {
    ScenarioArgs {
        scenario: name.to_owned(),
        set: set.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[test]
fn boot_takes_a_scenario_overrides_in_order_and_a_proc_file() {
    let cli = parse(&["boot", "--proc", "zoneinfo"]).unwrap();
    let Command::Boot {
        scenario: args,
        proc_file,
    } = cli.command
    else {
        panic!("not boot: {cli:?}");
    };
    assert_eq!(args, scenario("default", &[]));
    assert_eq!(proc_file, "zoneinfo".parse().unwrap());

    let cli = parse(&[
        "boot",
        "boot-sample",
        "--set",
        "machine.cpus=8",
        "--proc",
        "buddyinfo",
        "--set=machine.memory=1TiB",
    ])
    .unwrap();
    let Command::Boot {
        scenario: args,
        proc_file,
    } = cli.command
    else {
        panic!("not boot: {cli:?}");
    };
    assert_eq!(
        args,
        scenario("boot-sample", &["machine.cpus=8", "machine.memory=1TiB"])
    );
    assert_eq!(proc_file, "buddyinfo".parse().unwrap());
    assert_ne!(proc_file, "zoneinfo".parse().unwrap());
}

#[test]
fn run_scenarios_and_show_parse() {
    let cli = parse(&["run"]).unwrap();
    assert!(
        matches!(cli.command, Command::Run { scenario: s, .. } if s == scenario("default", &[]))
    );
    let cli = parse(&["run", "x.toml", "--set", "sysctl.vm.swappiness=100"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Run { scenario: s, .. } if s == scenario("x.toml", &["sysctl.vm.swappiness=100"])
    ));
    assert!(matches!(
        parse(&["scenarios"]).unwrap().command,
        Command::Scenarios
    ));
    assert!(matches!(
        parse(&["show", "default"]).unwrap().command,
        Command::Show { name } if name == "default"
    ));
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    for (args, kind) in [
        (&["boot"][..], ErrorKind::MissingRequiredArgument),
        (&["boot", "--proc", "slab"][..], ErrorKind::ValueValidation),
        (&["show"][..], ErrorKind::MissingRequiredArgument),
        (&["frobnicate"][..], ErrorKind::InvalidSubcommand),
        (&["run", "a", "b"][..], ErrorKind::UnknownArgument),
        (&[][..], ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand),
    ] {
        let e = parse(args).unwrap_err();
        assert_eq!(e.kind(), kind, "{args:?}");
        let (code, out, err) = run(args);
        assert_eq!((code, out.as_str()), (2, ""), "{args:?}");
        assert!(err.contains("--help"), "{args:?}: {err}");
    }
    let (_, _, err) = run(&["boot", "--proc", "slab"]);
    assert!(
        err.contains("unknown /proc file (expected one of: "),
        "{err}"
    );

    let (code, out, err) = run(&["--help"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.contains("Usage: mmsim <COMMAND>"), "{out}");
}

#[test]
fn scenario_errors_exit_2_with_one_line_naming_the_place() {
    for (args, expect) in [
        (
            &["run", "nope"][..],
            "mmsim: unknown scenario 'nope' (not a file; built-ins: default, boot-sample, fork-cow, page-fault-scale, oom)\n",
        ),
        (
            &["boot", "--set", "machine.memory=12%", "--proc", "meminfo"][..],
            "mmsim: --set machine.memory=12%: machine.memory cannot be a percentage: \
             percentages are of MemTotal, which machine.memory defines\n",
        ),
        (
            &["run", "default", "--set", "machine.swap=1"][..],
            "mmsim: --set machine.swap=1: unknown key `swap` in [machine]\n",
        ),
        (
            &["show", "nope"][..],
            "mmsim: unknown built-in scenario 'nope' (built-ins: default, boot-sample, fork-cow, page-fault-scale, oom)\n",
        ),
    ] {
        assert_eq!(run(args), (2, String::new(), expect.to_owned()), "{args:?}");
    }
}

#[test]
fn scenarios_lists_every_builtin_and_show_prints_its_toml() {
    let (code, out, err) = run(&["scenarios"]);
    assert_eq!((code, err.as_str()), (0, ""));
    // One line per built-in: the name padded to the longest one, two spaces, its summary.
    let width = mm_scenario::builtins()
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap();
    for ((name, text), line) in mm_scenario::builtins().iter().zip(out.lines()) {
        let summary = mm_scenario::summary(text).unwrap();
        assert_eq!(line, format!("{name:<width$}  {summary}"));
    }
    assert!(out.starts_with("default           Memory pressure on a 1 GiB, 2-CPU machine"));
    assert_eq!(out.lines().count(), mm_scenario::builtins().len());
    for (name, text) in mm_scenario::builtins() {
        assert_eq!(run(&["show", name]), (0, (*text).to_owned(), String::new()));
    }
}

#[test]
fn failures_map_to_exit_codes() {
    assert_eq!(Failure::Usage(anyhow::anyhow!("x")).exit_code(), 2);
    let sim = Failure::Simulator(anyhow::anyhow!("inner").context("cannot boot the machine"));
    assert_eq!(sim.exit_code(), 1);
    assert_eq!(sim.to_string(), "cannot boot the machine: inner");
}

/// A real `/proc/meminfo` (Linux 6.18, 2 CPUs, 24 GiB), abbreviated; `SwapCached` comes before
/// `Cached` to show fields are matched by whole label.
const MEMINFO: &str = "\
MemTotal:       24684084 kB
MemFree:        21713640 kB
MemAvailable:   24027356 kB
Buffers:           41836 kB
SwapCached:          999 kB
Cached:          2451700 kB
Active:           931932 kB
SwapTotal:       2097148 kB
SwapFree:        1048572 kB
Shmem:              8872 kB
KReclaimable:      86692 kB
Slab:             112924 kB
SReclaimable:      86692 kB
SUnreclaim:        26232 kB
";

#[test]
fn free_table_matches_procps_layout_and_formulas() {
    let s = FreeSummary::from_meminfo(MEMINFO).unwrap();
    assert_eq!(
        s,
        FreeSummary {
            mem_total: 24_684_084,
            // MemTotal - MemAvailable = 24684084 - 24027356, as procps-ng 4 computes it.
            mem_used: 656_728,
            mem_free: 21_713_640,
            shared: 8872,
            buff_cache: 2_580_228,
            available: 24_027_356,
            swap_total: 2_097_148,
            swap_used: 1_048_576,
            swap_free: 1_048_572,
        }
    );
    // procps-ng 4.0.2 `free -m` on this host printed the same Mem row (used 641 =
    // MemTotal - MemAvailable); its swap row differs only because this host has no swap.
    assert_eq!(
        s.render_mebibytes(),
        "               total        used        free      shared  buff/cache   available\n\
         Mem:           24105         641       21204           8        2519       23464\n\
         Swap:           2047        1024        1023\n"
    );
}

#[test]
fn free_used_is_total_minus_available() {
    let meminfo = "MemTotal: 10240 kB\nMemFree: 8192 kB\nMemAvailable: 9216 kB\nBuffers: 0 kB\n\
                   Cached: 4096 kB\nSReclaimable: 0 kB\nShmem: 0 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n";
    let s = FreeSummary::from_meminfo(meminfo).unwrap();
    assert_eq!(s.mem_used, 1024);
    assert_eq!(
        s.render_mebibytes().lines().nth(1),
        Some("Mem:              10           1           8           0           4           9")
    );
}

#[test]
fn free_rejects_meminfo_missing_a_field_or_malformed() {
    let without = MEMINFO.replace("SReclaimable", "Sreclaimable");
    let e = FreeSummary::from_meminfo(&without).unwrap_err();
    assert_eq!(e.to_string(), "meminfo has no SReclaimable line");

    let malformed = MEMINFO.replace("Shmem:              8872 kB", "Shmem: lots kB");
    let e = FreeSummary::from_meminfo(&malformed).unwrap_err();
    assert_eq!(
        e.to_string(),
        "meminfo Shmem is not a number of kB: \" lots kB\""
    );

    let inverted = MEMINFO.replace("SwapFree:        1048572", "SwapFree:        9999999");
    assert!(FreeSummary::from_meminfo(&inverted).is_err());
}

#[test]
fn describe_names_the_scenario_and_its_machine() {
    let s = mm_scenario::load_named("default", &[]).unwrap();
    assert_eq!(describe(&s, "default"), "scenario default: 2 CPUs, 1 GiB");
    let one = mm_scenario::parse_str("[machine]\ncpus = 1\nmemory = \"16M\"\n", "x.toml").unwrap();
    assert_eq!(describe(&one, "x.toml"), "scenario x.toml: 1 CPU, 16 MiB");
}

#[test]
fn a_run_with_a_violation_exits_3_and_a_clean_one_0() {
    let mut r = mm_sim::RunReport {
        wall_seconds: 0.1,
        seed: 7,
        meminfo: vec![("MemTotal".into(), 1024)],
        vmstat: vec![("pgfault".into(), 3)],
        tlb: mm_sim::TlbReport::default(),
        integrity: mm_sim::workload::Integrity::default(),
        invariant_checks: 1,
        invariant_violations: vec![],
        processes: vec![],
        samples: vec![],
        stall: None,
        daemons: mm_sim::DaemonReport::default(),
        oom_kills: vec![],
        proc_snapshots: vec![],
    };
    assert_eq!(crate::machine::violation(&r), None);
    r.integrity.corruptions = 1;
    let v = crate::machine::violation(&r).unwrap();
    assert!(v.contains("1 corruptions"), "{v}");
    assert_eq!(Failure::Violation(anyhow::anyhow!(v)).exit_code(), 3);
    r.integrity.corruptions = 0;
    r.invariant_violations
        .push("zone DMA32: nr_free[3] is 1".into());
    assert!(crate::machine::violation(&r)
        .unwrap()
        .contains("invariant violated"));
    r.stall = Some("watchdog: no CPU made progress\ncpu 0: ...".into());
    assert!(crate::machine::violation(&r)
        .unwrap()
        .starts_with("a CPU stalled"));
}
