//! `mmsim boot … --proc zoneinfo` against real kernels: a scenario that gives a real machine's
//! zone geometry and sysctls must print exactly that kernel's watermarks, spans, protection,
//! pcp batch/high_min/high_max, stat thresholds and start pfns, in the same line layout.

use mm_sim::{Machine, ProcFile};
use std::collections::BTreeMap;

const SCENARIO_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/mm-scenario/testdata"
);
const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/it/data");

/// The lines of a zoneinfo file as `(zone, key)` → value, plus the layout (labels in order).
struct Parsed {
    values: BTreeMap<(String, String), String>,
    layout: Vec<String>,
}

fn parse(text: &str) -> Parsed {
    let mut values = BTreeMap::new();
    let mut layout = Vec::new();
    let (mut zone, mut cpu) = (String::new(), String::new());
    for line in text.lines() {
        let t = line.trim();
        if let Some(z) = t.strip_prefix("Node 0, zone") {
            zone = z.trim().to_string();
            cpu.clear();
            layout.push(format!("zone {zone}"));
            continue;
        }
        if let Some(c) = t.strip_prefix("cpu: ") {
            cpu = c.to_string();
            layout.push("cpu".into());
            continue;
        }
        let (key, value) = if let Some(p) = t.strip_prefix("protection: ") {
            ("protection".to_string(), p.to_string())
        } else if let Some((k, v)) = t.rsplit_once(char::is_whitespace) {
            (k.trim().trim_end_matches(':').to_string(), v.to_string())
        } else {
            (t.to_string(), String::new())
        };
        let per_cpu = [
            "count",
            "high",
            "batch",
            "high_min",
            "high_max",
            "vm stats threshold",
        ];
        let key =
            if !cpu.is_empty() && per_cpu.contains(&key.as_str()) && line.starts_with("      ")
                || key == "vm stats threshold"
            {
                format!("cpu{cpu}.{key}")
            } else {
                key
            };
        layout.push(key.split('.').next_back().unwrap().to_string());
        values.insert((zone.clone(), key), value);
    }
    Parsed { values, layout }
}

/// The numbers a booted machine must reproduce exactly (counts and live `high` are excluded:
/// they depend on what the real host had running).
fn is_geometry(key: &str) -> bool {
    let k = key.rsplit('.').next().unwrap();
    matches!(
        k,
        "min"
            | "low"
            | "high"
            | "promo"
            | "spanned"
            | "present"
            | "managed"
            | "protection"
            | "batch"
            | "high_min"
            | "high_max"
            | "vm stats threshold"
            | "start_pfn"
            | "boost"
            | "cma"
    ) && !(key.starts_with("cpu") && k == "high")
}

fn boot(path: String) -> String {
    let s = mm_scenario::load(path, &[]).unwrap();
    Machine::boot(&s.machine)
        .unwrap()
        .proc_file(ProcFile::Zoneinfo)
}

fn assert_matches(ours: &str, reference: &str) -> usize {
    let (ours, reference) = (parse(ours), parse(reference));
    let mut checked = 0;
    for ((zone, key), want) in &reference.values {
        if !is_geometry(key) {
            continue;
        }
        let got = ours.values.get(&(zone.clone(), key.clone()));
        assert_eq!(got, Some(want), "zone {zone} {key}");
        checked += 1;
    }
    checked
}

#[test]
fn host_6_18_zoneinfo_numbers_and_layout() {
    let ours = boot(format!("{DATA_DIR}/host-6.18-2cpu.toml"));
    let host = include_str!("data/host-6.18-2cpu.zoneinfo");
    let checked = assert_matches(&ours, host);
    assert!(checked >= 60, "only {checked} numbers compared");
    assert_eq!(
        parse(&ours).layout,
        parse(host).layout,
        "line layout differs from the kernel's"
    );
}

#[test]
fn appendix_a_snapshot_zoneinfo_numbers() {
    let ours = boot(format!("{SCENARIO_DIR}/sample-appendix-a.toml"));
    let reference = include_str!("data/appendix-a4.zoneinfo");
    let checked = assert_matches(&ours, reference);
    assert!(checked >= 40, "only {checked} numbers compared");
}
