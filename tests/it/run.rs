//! `mmsim run` on the built-in scenarios whose subsystems exist, through the CLI.

use crate::mmsim;

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

/// The default scenario, shrunk to 256 MiB, with `--out` and `--trace`.
#[test]
fn default_shows_pressure_kswapd_and_an_oom_kill_with_out_and_trace() {
    let dir = std::env::temp_dir().join(format!("mmsim-it-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let trace = dir.with_extension("trace.jsonl");
    let (dir_s, trace_s) = (dir.to_str().unwrap(), trace.to_str().unwrap());
    let r = report(&[
        "default",
        "--set",
        "machine.memory=256MiB",
        "--out",
        dir_s,
        "--trace",
        trace_s,
        "--trace-events",
        "mm_vmscan_*,mark_victim,tlb_flush,block_rq_complete",
    ]);
    // The hog is the victim; the others finish with their bytes intact.
    let kills = r["oom_kills"].as_array().unwrap();
    assert_eq!(kills.len(), 1, "{kills:?}");
    assert_eq!(kills[0]["name"], "hog");
    assert!(kills[0]["line"]
        .as_str()
        .unwrap()
        .starts_with("Out of memory: Killed process "));
    assert_eq!(r["vmstat"]["oom_kill"], 1);
    for p in r["processes"].as_array().unwrap() {
        let want = if p["name"] == "hog" { "killed" } else { "ok" };
        assert_eq!(p["exit"], want, "{p}");
    }
    // kswapd wakes, finds nothing it can reclaim (no LRU or swap yet, no slab to shrink) and,
    // after MAX_RECLAIM_RETRIES fruitless runs, leaves the hopeless node to direct reclaim.
    let kswapd = &r["daemons"]["kswapd"];
    assert!(kswapd["wakeups"].as_u64().unwrap() >= 1);
    let n = |k: &str| kswapd[k].as_u64().unwrap();
    assert!((1..=16).contains(&n("failures")), "{kswapd}");
    // Every run that does not end balanced is fruitless here, and there are at most 16.
    assert!(n("runs") - n("balanced_runs") <= 16, "{kswapd}");
    assert_eq!(r["integrity"]["corruptions"], 0);
    assert_eq!(r["invariants"]["violations"], 0);
    // The O_DIRECT disk user went through the I/O engine both ways.
    let io = &r["daemons"]["io"];
    assert!(
        io["reads"].as_u64().unwrap() > 0 && io["writes"].as_u64().unwrap() > 0,
        "{io}"
    );

    // --out: the /proc snapshot, each process's files, the series and the kernel log.
    let read = |rel: &str| std::fs::read_to_string(dir.join(rel)).unwrap();
    let meminfo = read("proc/meminfo");
    assert!(meminfo.starts_with("MemTotal:  ") && meminfo.contains("\nMemFree:  "));
    assert!(read("proc/swaps").starts_with("Filename"));
    assert!(read("proc/slabinfo").starts_with("slabinfo - version: 2.1\n"));
    for name in ["vmstat", "zoneinfo", "buddyinfo"] {
        assert!(!read(&format!("proc/{name}")).is_empty(), "{name}");
    }
    let hog = kills[0]["pid"].as_u64().unwrap();
    let status = read(&format!("proc/{hog}/status"));
    assert!(status.starts_with("Name:\thog\n"), "{status}");
    assert!(status.contains("\nVmRSS:"), "{status}");
    let score: u64 = read(&format!("proc/{hog}/oom_score"))
        .trim()
        .parse()
        .unwrap();
    assert!(score > 0 && score <= 2000);
    assert!(read(&format!("proc/{hog}/maps")).contains(" rw-p "));
    assert!(read(&format!("proc/{hog}/smaps")).contains("\nRss:"));
    let csv = read("series/meminfo.csv");
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("t_ms,MemTotal,MemFree,"));
    assert!(lines.count() >= 2, "at least the first and last samples");
    assert!(read("series/vmstat.csv").starts_with("t_ms,nr_free_pages,"));
    assert!(read("dmesg").contains("] Out of memory: Killed process "));
    let json: serde_json::Value = serde_json::from_str(&read("report.json")).unwrap();
    assert_eq!(json["oom_kills"], r["oom_kills"]);

    // --trace: one JSON object per line, named after Linux tracepoints.
    let text = std::fs::read_to_string(&trace).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let named = |n: &str| events.iter().filter(|e| e["event"] == n).count();
    assert!(named("mm_vmscan_kswapd_wake") >= 1, "{text}");
    assert!(named("mm_vmscan_kswapd_sleep") >= 1);
    // (The trace sink is per process: under `cargo test`, runs of other tests in this binary
    // add their events too, so look for this run's victim rather than count.)
    assert!(named("mark_victim") >= 1);
    assert!(events.iter().any(|e| e["event"] == "mark_victim"
        && e["pid"].as_u64() == Some(hog)
        && e["comm"] == "hog"));
    assert!(events
        .iter()
        .all(|e| e["t_us"].is_u64() && e["thread"].is_string()));
    // tlb_flush as Linux prints it: pages (-1 for a full flush) and the reason.
    let flush = events.iter().find(|e| e["event"] == "tlb_flush").unwrap();
    assert!(
        flush["pages"].is_i64() && flush["reason"].is_string(),
        "{flush}"
    );
    assert!(named("block_rq_complete") >= 1);
    // The filter kept nothing else.
    assert!(events.iter().all(|e| {
        let n = e["event"].as_str().unwrap();
        n.starts_with("mm_vmscan_")
            || ["mark_victim", "tlb_flush", "block_rq_complete"].contains(&n)
    }));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&trace);
}

#[test]
fn oom_kills_by_badness_and_spares_oom_score_adj_min() {
    let r = report(&["oom", "--set", "machine.memory=256MiB"]);
    let kills: Vec<&str> = r["oom_kills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    // batch (adj 500) first; then the largest of what is left, the grower.
    assert_eq!(kills.first(), Some(&"batch"), "{kills:?}");
    assert!(!kills.contains(&"db"), "{kills:?}");
    let exit = |n: &str| {
        r["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()["exit"]
            .clone()
    };
    assert_eq!(exit("db"), "ok");
    assert_eq!(exit("batch"), "killed");
    assert_eq!(r["integrity"]["corruptions"], 0);
}
