//! `mmsim run` on the built-in scenarios whose subsystems exist, through the CLI.

fn mmsim(args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("mmsim")
        .chain(args.iter().copied())
        .map(std::ffi::OsString::from);
    let code = mm_cli::main_with(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn report(args: &[&str]) -> serde_json::Value {
    let mut argv = vec!["run"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--json", "-"]);
    let (code, out, err) = mmsim(&argv);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn fork_cow_verifies_bytes_without_corruption() {
    let r = report(&["fork-cow"]);
    for key in [
        "scenario",
        "seed",
        "wall_seconds",
        "machine",
        "meminfo",
        "vmstat",
        "tlb",
        "integrity",
        "invariants",
        "oom_kills",
        "processes",
    ] {
        assert!(r.get(key).is_some(), "report lacks {key}");
    }
    assert!(r["integrity"]["bytes_verified"].as_u64().unwrap() > 0);
    assert_eq!(r["integrity"]["corruptions"], 0);
    assert_eq!(r["integrity"]["isolation_violations"], 0);
    assert_eq!(r["invariants"]["violations"], 0);
    let procs = r["processes"].as_array().unwrap();
    assert!(procs.len() > 1, "the scenario forks");
    assert!(procs.iter().all(|p| p["exit"] == "ok"));
    assert!(
        r["vmstat"]["pgreuse"].as_u64().unwrap() > 0
            || r["vmstat"]["pgfault"].as_u64().unwrap() > 0
    );
}

#[test]
fn page_fault_scale_reports_fault_rates_for_threads_and_processes() {
    let r = report(&["page-fault-scale"]);
    let procs = r["processes"].as_array().unwrap();
    let rate = |name: &str| -> f64 {
        procs
            .iter()
            .filter(|p| p["name"] == name)
            .map(|p| p["faults_per_second"].as_f64().unwrap())
            .sum()
    };
    assert!(rate("pf-threads") > 0.0, "{procs:?}");
    assert!(rate("pf-processes") > 0.0, "{procs:?}");
}

#[test]
fn eight_cpus_on_two_cores_run_to_completion() {
    let r = report(&["fork-cow", "--set", "machine.cpus=8"]);
    assert_eq!(r["machine"]["cpus"], 8);
    assert_eq!(r["integrity"]["corruptions"], 0);
    assert!(r["processes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["exit"] == "ok"));
}
