use std::path::PathBuf;

use mm_sim::{Sysctl, ZoneSpec};
use mm_types::ZoneId;

use super::*;

/// Joins lines into a scenario text.
fn text(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

fn owned(sets: &[&str]) -> Vec<String> {
    sets.iter().map(|s| (*s).to_owned()).collect()
}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// Asserts that the scenario fails with exactly `expect` (place and message).
#[track_caller]
fn check_err(lines: &[&str], sets: &[&str], expect: &str) {
    match parse_with_overrides(&text(lines), "t.toml", &owned(sets)) {
        Ok(s) => panic!("expected `{expect}`, parsed {s:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert_eq!(msg, expect);
            assert!(!msg.contains('\n'), "not one line: {msg}");
        }
    }
}

const MACHINE: &[&str] = &["[machine]", "cpus = 2", "memory = \"4GiB\""];

/// `MACHINE` followed by `more`.
fn with(more: &[&'static str]) -> Vec<&'static str> {
    MACHINE.iter().chain(more).copied().collect()
}

/// A three-zone machine (the host geometry) with lines replaced.
fn zones_with(replace: &[(&str, &'static str)]) -> Vec<&'static str> {
    let lines: Vec<&'static str> = vec![
        "[machine]",           // 1
        "cpus = 2",            // 2
        "memory = \"25GiB\"",  // 3
        "[[machine.zone]]",    // 4
        "name = \"DMA\"",      // 5
        "start_pfn = 1",       // 6
        "spanned = 4095",      // 7
        "present = 3998",      // 8
        "managed = 3840",      // 9
        "[[machine.zone]]",    // 10
        "name = \"DMA32\"",    // 11
        "start_pfn = 4096",    // 12
        "spanned = 1044480",   // 13
        "present = 782336",    // 14
        "managed = 772915",    // 15
        "[[machine.zone]]",    // 16
        "name = \"Normal\"",   // 17
        "start_pfn = 1048576", // 18
        "spanned = 5505024",   // 19
        "present = 5505024",   // 20
        "managed = 196608",    // 21
    ];
    for (from, _) in replace {
        assert!(lines.contains(from), "no line `{from}`");
    }
    lines
        .into_iter()
        .map(|l| {
            replace
                .iter()
                .find(|(from, _)| *from == l)
                .map_or(l, |(_, to)| *to)
        })
        .collect()
}

#[test]
fn malformed_scenarios_name_the_place_and_the_problem() {
    #[rustfmt::skip]
    let cases: Vec<(Vec<&str>, &[&str], &str)> = vec![
        // Syntax.
        (vec!["[machine", "cpus = 2"], &[],
         "t.toml:1:9: invalid TOML: unclosed table, expected `]`"),
        // Unknown keys.
        (vec!["nmae = \"x\"", "[machine]", "cpus = 2", "memory = \"4GiB\""], &[],
         "t.toml:1:1: unknown key `nmae` in the top level"),
        (with(&["swap = \"1GiB\""]), &[],
         "t.toml:4:1: unknown key `swap` in [machine]"),
        (with(&["[sysctl]", "vm.dirty_ratio = 20"]), &[],
         "t.toml:5:4: unknown key `dirty_ratio` in [sysctl.vm]"),
        (with(&["[sysctl]", "kernel.pid_max = 20"]), &[],
         "t.toml:5:1: unknown key `kernel` in [sysctl]"),
        (zones_with(&[("present = 3998", "holes = 97")]), &[],
         "t.toml:8:1: unknown key `holes` in [[machine.zone]]"),
        // Missing keys and wrong types.
        (vec!["name = \"x\""], &[],
         "t.toml:1:1: missing key `machine` in the top level"),
        (vec!["", "[machine]", "cpus = 2"], &[],
         "t.toml:2:1: missing key `memory` in [machine]"),
        (zones_with(&[("managed = 196608", "")]), &[],
         "t.toml:16:1: missing key `managed` in [[machine.zone]]"),
        (vec!["[machine]", "cpus = \"2\"", "memory = \"4GiB\""], &[],
         "t.toml:2:8: machine.cpus must be an integer, found a string"),
        (vec!["machine = 4"], &[],
         "t.toml:1:11: machine must be a table, found an integer"),
        (vec!["[machine]", "cpus = 2", "memory = 4.5"], &[],
         "t.toml:3:10: machine.memory must be a size (bytes, or a string such as \"4GiB\"), found a float"),
        (with(&["zone = 3"]), &[],
         "t.toml:4:8: machine.zone must be an array of tables, found an integer"),
        (with(&["[sysctl]", "vm.swappiness = true"]), &[],
         "t.toml:5:17: sysctl.vm.swappiness must be an integer, found a boolean"),
        // Counts.
        (vec!["[machine]", "cpus = 0", "memory = \"4GiB\""], &[],
         "t.toml:2:8: machine.cpus = 0 is out of range 1..=256"),
        (vec!["[machine]", "cpus = -1", "memory = \"4GiB\""], &[],
         "t.toml:2:8: machine.cpus = -1 is out of range 1..=256"),
        (vec!["[machine]", "cpus = 257", "memory = \"4GiB\""], &[],
         "t.toml:2:8: machine.cpus = 257 is out of range 1..=256"),
        // Sizes.
        (vec!["[machine]", "cpus = 2", "memory = \"4XB\""], &[],
         "t.toml:3:10: machine.memory = \"4XB\" is not a size: unknown unit `XB` (use B, K, KiB, M, MiB, G, GiB, T or TiB; all binary)"),
        (vec!["[machine]", "cpus = 2", "memory = \"4.5GiB\""], &[],
         "t.toml:3:10: machine.memory = \"4.5GiB\" is not a size: `4.5` is not a whole number"),
        (vec!["[machine]", "cpus = 2", "memory = 16781313"], &[],
         "t.toml:3:10: machine.memory = 16781313 bytes is not a multiple of the page size (4096)"),
        (vec!["[machine]", "cpus = 2", "memory = \"8MiB\""], &[],
         "t.toml:3:10: machine.memory = 8 MiB is below the minimum of 16 MiB"),
        (vec!["[machine]", "cpus = 2", "memory = \"65T\""], &[],
         "t.toml:3:10: machine.memory = 65 TiB is above the maximum of 64 TiB"),
        (vec!["[machine]", "cpus = 2", "memory = -4096"], &[],
         "t.toml:3:10: machine.memory = -4096 is negative; a size is a byte count"),
        (vec!["[machine]", "cpus = 2", "memory = \"50%\""], &[],
         "t.toml:3:10: machine.memory cannot be a percentage: percentages are of MemTotal, which machine.memory defines"),
        // Zones.
        (zones_with(&[("start_pfn = 4096", "start_pfn = 4000")]), &[],
         "t.toml:12:13: zone DMA32 starts at pfn 4000, inside zone DMA which ends at pfn 4096"),
        (zones_with(&[("name = \"Normal\"", "name = \"DMA32\"")]), &[],
         "t.toml:17:8: duplicate zone DMA32: each zone is listed at most once"),
        (zones_with(&[("name = \"Normal\"", "name = \"HighMem\"")]), &[],
         "t.toml:17:8: unknown zone name `HighMem` (expected DMA, DMA32 or Normal)"),
        (zones_with(&[("name = \"Normal\"", "name = \"Movable\"")]), &[],
         "t.toml:17:8: unknown zone name `Movable` (expected DMA, DMA32 or Normal)"),
        (zones_with(&[("name = \"DMA\"", "name = \"DMA32\""), ("name = \"DMA32\"", "name = \"DMA\"")]), &[],
         "t.toml:11:8: zone DMA is listed after DMA32; list zones in ascending order (DMA, DMA32, Normal)"),
        (zones_with(&[("present = 3998", "present = 4096")]), &[],
         "t.toml:8:11: zone DMA: present = 4096 exceeds spanned = 4095"),
        (zones_with(&[("managed = 772915", "managed = 782337")]), &[],
         "t.toml:15:11: zone DMA32: managed = 782337 exceeds present = 782336"),
        (zones_with(&[("memory = \"25GiB\"", "memory = \"16GiB\"")]), &[],
         "t.toml:3:10: machine.memory = 16 GiB (4194304 pages) is smaller than the zones, which end at pfn 6553600 (25 GiB)"),
        (zones_with(&[("spanned = 4095", "spanned = 4096")]), &[],
         "t.toml:7:11: zone DMA spans pfns 1..4097, outside its range pfns ..4096 (below 16 MiB)"),
        (zones_with(&[("start_pfn = 1048576", "start_pfn = 1048575")]), &[],
         "t.toml:18:13: zone Normal spans pfns 1048575..6553599, outside its range pfns 1048576.. (from 4 GiB up)"),
        (zones_with(&[("spanned = 4095", "spanned = 0")]), &[],
         "t.toml:7:11: zone DMA spans no pages; omit the zone instead"),
        (zones_with(&[("start_pfn = 1", "start_pfn = -1")]), &[],
         "t.toml:6:13: machine.zone.start_pfn = -1 is out of range 0..=9223372036854775807"),
        (with(&["zone = []"]), &[],
         "t.toml:4:8: machine.zone is empty; omit it to derive the zones from machine.memory"),
        // Sysctls.
        (with(&["[sysctl]", "vm.watermark_scale_factor = 0"]), &[],
         "t.toml:5:29: sysctl.vm.watermark_scale_factor = 0 is out of range 1..=3000"),
        (with(&["[sysctl]", "vm.watermark_scale_factor = 3001"]), &[],
         "t.toml:5:29: sysctl.vm.watermark_scale_factor = 3001 is out of range 1..=3000"),
        (with(&["[sysctl]", "vm.swappiness = 201"]), &[],
         "t.toml:5:17: sysctl.vm.swappiness = 201 is out of range 0..=200"),
        (with(&["[sysctl]", "vm.lowmem_reserve_ratio = [256, 256, 32, 0]"]), &[],
         "t.toml:5:27: sysctl.vm.lowmem_reserve_ratio must have exactly 5 entries (one per zone type), found 4"),
        (with(&["[sysctl]", "vm.lowmem_reserve_ratio = [256, 256, -32, 0, 0]"]), &[],
         "t.toml:5:38: sysctl.vm.lowmem_reserve_ratio[2] = -32 is out of range 0..=2147483647"),
        (with(&["[sysctl.vm]", "percpu_pagelist_high_fraction = 3"]), &[],
         "t.toml:5:33: sysctl.vm.percpu_pagelist_high_fraction = 3 is out of range 0 or 8..=2147483647"),
        (with(&["[sysctl]", "vm.overcommit_memory = 3"]), &[],
         "t.toml:5:24: sysctl.vm.overcommit_memory = 3 is out of range 0..=2"),
        (with(&["[sysctl]", "vm.min_free_kbytes = 2147483648"]), &[],
         "t.toml:5:22: sysctl.vm.min_free_kbytes = 2147483648 is out of range 0..=2147483647"),
        (with(&["[sysctl]", "vm.overcommit_ratio = -1"]), &[],
         "t.toml:5:23: sysctl.vm.overcommit_ratio = -1 is out of range 0..=2147483647"),
        (with(&["[sysctl]", "vm.watermark_boost_factor = -1"]), &[],
         "t.toml:5:29: sysctl.vm.watermark_boost_factor = -1 is out of range 0..=2147483647"),
        // The cost model and the disk.
        (with(&["[machine.cost]", "l1_hit = -1"]), &[],
         "t.toml:5:10: machine.cost.l1_hit = -1 is out of range 0..=1000000"),
        (with(&["[machine.disk]", "speed = 3"]), &[],
         "t.toml:5:1: unknown key `speed` in [machine.disk]"),
        (with(&["[machine.disk]", "mib_per_s = 0"]), &[],
         "t.toml:5:13: machine.disk.mib_per_s = 0 is out of range 1..=1048576"),
        // Overrides.
        (MACHINE.to_vec(), &["machine.swap=1GiB"],
         "--set machine.swap=1GiB: unknown key `swap` in [machine]"),
        (MACHINE.to_vec(), &["machine.memory=12%"],
         "--set machine.memory=12%: machine.memory cannot be a percentage: percentages are of MemTotal, which machine.memory defines"),
        (MACHINE.to_vec(), &["machine.cpus"],
         "--set machine.cpus: expected KEY=VALUE with a dotted key such as machine.memory=8GiB"),
        (MACHINE.to_vec(), &["machine..cpus=2"],
         "--set machine..cpus=2: expected KEY=VALUE with a dotted key such as machine.memory=8GiB"),
        (MACHINE.to_vec(), &["machine.memory.size=1"],
         "--set machine.memory.size=1: `machine.memory` is a string, not a table, so it has no key `size`"),
        (MACHINE.to_vec(), &["sysctl.vm.swappiness=500"],
         "--set sysctl.vm.swappiness=500: sysctl.vm.swappiness = 500 is out of range 0..=200"),
        (MACHINE.to_vec(), &["sysctl.vm.lowmem_reserve_ratio=[1, 2"],
         "--set sysctl.vm.lowmem_reserve_ratio=[1, 2: invalid TOML: unclosed array, expected `]`"),
        (MACHINE.to_vec(), &["sysctl.vm.lowmem_reserve_ratio=[1,2,3,4,-5]"],
         "--set sysctl.vm.lowmem_reserve_ratio=[1,2,3,4,-5]: sysctl.vm.lowmem_reserve_ratio[4] = -5 is out of range 0..=2147483647"),
        (MACHINE.to_vec(), &["machine.cpus=8", "machine.cpus=many"],
         "--set machine.cpus=many: machine.cpus must be an integer, found a string"),
        (zones_with(&[]), &["machine.memory=4GiB"],
         "--set machine.memory=4GiB: machine.memory = 4 GiB (1048576 pages) is smaller than the zones, which end at pfn 6553600 (25 GiB)"),
        // An error after a multi-byte character: the column counts characters, not bytes.
        (vec!["machine = { memory = \"ü\", cpus = 0 }"], &[],
         "t.toml:1:34: machine.cpus = 0 is out of range 1..=256"),
    ];
    assert!(cases.len() >= 20);
    for (lines, sets, expect) in &cases {
        check_err(lines, sets, expect);
    }
}

/// A machine with one process of one `anon` phase, with lines replaced or (`"+N"`: after line
/// N) inserted.
fn proc_with(edits: &[(&str, &'static str)]) -> Vec<&'static str> {
    let mut lines: Vec<&'static str> = vec![
        "[machine]",           // 1
        "cpus = 2",            // 2
        "memory = \"4GiB\"",   // 3
        "[[process]]",         // 4
        "name = \"hog\"",      // 5
        "[[process.phase]]",   // 6
        "workload = \"anon\"", // 7
        "size = \"40%\"",      // 8
        "ops = 100",           // 9
    ];
    for (from, to) in edits {
        if let Some(n) = from.strip_prefix('+') {
            let n: usize = n.parse().unwrap();
            lines.insert(n, to);
        } else {
            let i = lines.iter().position(|l| l == from);
            let i = i.unwrap_or_else(|| panic!("no line `{from}`"));
            lines[i] = to;
        }
    }
    lines
}

#[test]
fn malformed_processes_name_the_place_and_the_problem() {
    #[rustfmt::skip]
    let cases: Vec<(Vec<&str>, &[&str], &str)> = vec![
        // Keys.
        (proc_with(&[("+5", "colour = 1")]), &[],
         "t.toml:6:1: unknown key `colour` in [[process]]"),
        (proc_with(&[("+8", "sise = 1")]), &[],
         "t.toml:9:1: unknown key `sise` in [[process.phase]]"),
        (proc_with(&[("+9", "duration = \"2s\"")]), &[],
         "t.toml:10:1: [[process.phase]] has both ops and duration; give exactly one"),
        (proc_with(&[("ops = 100", "")]), &[],
         "t.toml:6:1: [[process.phase]] needs a length: give ops or duration (anon runs until stopped)"),
        (vec!["ops = 5", "duration = 3", "[machine]", "cpus = 1", "memory = \"1G\""], &[],
         "t.toml:2:1: the top level has both ops and duration; give exactly one"),
        (proc_with(&[("[[process.phase]]", ""), ("workload = \"anon\"", ""), ("size = \"40%\"", ""), ("ops = 100", "")]), &[],
         "t.toml:4:1: missing key `phase` in [[process]]"),
        (proc_with(&[("[[process.phase]]", "phase = []"), ("workload = \"anon\"", ""), ("size = \"40%\"", ""), ("ops = 100", "")]), &[],
         "t.toml:6:9: process.phase is empty; a process needs at least one [[process.phase]]"),
        (proc_with(&[("workload = \"anon\"", "")]), &[],
         "t.toml:6:1: missing key `workload` in [[process.phase]]"),
        // Process fields.
        (proc_with(&[("name = \"hog\"", "name = \"kworker/u16:3-ev\"")]), &[],
         "t.toml:5:8: process.name = \"kworker/u16:3-ev\" has 16 bytes; a command name has 1 to 15 (TASK_COMM_LEN is 16)"),
        (proc_with(&[("name = \"hog\"", "name = \"\"")]), &[],
         "t.toml:5:8: process.name = \"\" has 0 bytes; a command name has 1 to 15 (TASK_COMM_LEN is 16)"),
        (proc_with(&[("+5", "count = -1")]), &[],
         "t.toml:6:9: process.count = -1 is out of range 1..=4096"),
        (proc_with(&[]), &["process.0.count=-1"],
         "--set process.0.count=-1: process.count = -1 is out of range 1..=4096"),
        (proc_with(&[]), &["process.1.count=2"],
         "--set process.1.count=2: `process` is an array of 1, so `1` is not one of its indices (0..1)"),
        (proc_with(&[]), &["process.first.count=2"],
         "--set process.first.count=2: `process` is an array of 1, so `first` is not one of its indices (0..1)"),
        (proc_with(&[]), &["process.0.phase.0.size=140%"],
         "--set process.0.phase.0.size=140%: process.phase.size = 140% is more than 100% of MemTotal"),
        (proc_with(&[("+5", "threads = 0")]), &[],
         "t.toml:6:11: process.threads = 0 is out of range 1..=1024"),
        (proc_with(&[("+5", "oom_score_adj = 1001")]), &[],
         "t.toml:6:17: process.oom_score_adj = 1001 is out of range -1000..=1000"),
        (proc_with(&[("+5", "cpus = [0, 2]")]), &[],
         "t.toml:6:12: process.cpus[1] = 2 is out of range 0..=1"),
        (proc_with(&[("+5", "cpus = [1, 1]")]), &[],
         "t.toml:6:12: process.cpus lists CPU 1 twice"),
        (proc_with(&[("+5", "cpus = []")]), &[],
         "t.toml:6:8: process.cpus is empty; omit it to run on any CPU"),
        (proc_with(&[("+5", "start_after = \"2 hours\"")]), &[],
         "t.toml:6:15: process.start_after = \"2 hours\" is not a duration (use \"500ms\", \"2s\", \"1min\" or a number of seconds)"),
        (proc_with(&[("+5", "start_after = -1.5")]), &[],
         "t.toml:6:15: process.start_after = -1.5 is not a duration: a number of seconds is finite and >= 0"),
        // Workloads and sizes.
        (proc_with(&[("workload = \"anon\"", "workload = \"anonymous\"")]), &[],
         "t.toml:7:12: unknown workload `anonymous` (expected anon, mmap-churn, malloc, fork-cow, direct-io or file)"),
        (proc_with(&[("workload = \"anon\"", "workload = \"file\"")]), &[],
         "t.toml:7:12: workload `file` needs the page cache, not simulated yet"),
        (proc_with(&[("size = \"40%\"", "size = \"140%\"")]), &[],
         "t.toml:8:8: process.phase.size = 140% is more than 100% of MemTotal"),
        (proc_with(&[("size = \"40%\"", "size = \"140% avail\"")]), &[],
         "t.toml:8:8: process.phase.size = 140% avail is more than 100% of MemAvailable"),
        (proc_with(&[("size = \"40%\"", "size = \"0%\"")]), &[],
         "t.toml:8:8: process.phase.size is zero; a phase needs some memory"),
        (proc_with(&[("size = \"40%\"", "size = 0")]), &[],
         "t.toml:8:8: process.phase.size is zero; a phase needs some memory"),
        (proc_with(&[("+9", "write_ratio = 1.5")]), &[],
         "t.toml:10:15: process.phase.write_ratio = 1.5 is out of range 0..=1"),
        // Patterns.
        (proc_with(&[("+9", "pattern = \"zipfian\"")]), &[],
         "t.toml:10:11: unknown pattern `zipfian` (expected sequential, random, zipf, hotcold or stride)"),
        (proc_with(&[("+9", "pattern = \"zipf\""), ("+10", "zipf_s = 0")]), &[],
         "t.toml:11:10: process.phase.zipf_s = 0 is out of range > 0"),
        (proc_with(&[("+9", "pattern = \"zipf\""), ("+10", "zipf_s = -0.5")]), &[],
         "t.toml:11:10: process.phase.zipf_s = -0.5 is out of range > 0"),
        (proc_with(&[("+9", "pattern = \"random\""), ("+10", "zipf_s = 1.1")]), &[],
         "t.toml:11:1: process.phase.zipf_s applies only to pattern = \"zipf\""),
        (proc_with(&[("+9", "pattern = \"hotcold\""), ("+10", "hot_fraction = 1")]), &[],
         "t.toml:11:16: process.phase.hot_fraction = 1 is out of range 0 < x < 1"),
        (proc_with(&[("+9", "pattern = \"stride\""), ("+10", "stride = \"5%\"")]), &[],
         "t.toml:11:10: process.phase.stride must be a byte count, not a percentage"),
        (proc_with(&[("+9", "pattern = \"stride\"")]), &[],
         "t.toml:6:1: missing key `stride` in [[process.phase]]"),
        (proc_with(&[("workload = \"anon\"", "workload = \"malloc\""), ("+9", "pattern = \"random\"")]), &[],
         "t.toml:10:1: process.phase.pattern applies only to workload = \"anon\""),
        (proc_with(&[("+9", "children = 2")]), &[],
         "t.toml:10:1: process.phase.children applies only to workload = \"fork-cow\""),
        (proc_with(&[("workload = \"anon\"", "workload = \"fork-cow\""), ("+9", "children = 64"), ("+10", "generations = 2")]), &[],
         "t.toml:11:15: fork-cow with children = 64 and generations = 2 forks 4160 processes; at most 1024"),
        (proc_with(&[("workload = \"anon\"", "workload = \"mmap-churn\""), ("+9", "touch_pages = \"some\"")]), &[],
         "t.toml:10:15: process.phase.touch_pages must be a number of pages or \"all\", found a string"),
        // Run-level keys and overrides.
        (proc_with(&[("+0", "seed = -1")]), &[],
         "t.toml:1:8: seed = -1 is out of range 0..=9223372036854775807"),
        (proc_with(&[]), &["duration=soon"],
         "--set duration=soon: duration = \"soon\" is not a duration (use \"500ms\", \"2s\", \"1min\" or a number of seconds)"),
    ];
    assert!(cases.len() >= 10);
    for (lines, sets, expect) in &cases {
        check_err(lines, sets, expect);
    }
}

/// The zones of both real geometries, lowest first, with the given DMA32 and Normal `managed`.
fn real_zones(dma32_managed: u64, normal_managed: u64) -> Vec<ZoneSpec> {
    vec![
        ZoneSpec {
            id: ZoneId::Dma,
            start_pfn: 1,
            spanned: 4095,
            present: 3998,
            managed: 3840,
        },
        ZoneSpec {
            id: ZoneId::Dma32,
            start_pfn: 4096,
            spanned: 1_044_480,
            present: 782_336,
            managed: dma32_managed,
        },
        ZoneSpec {
            id: ZoneId::Normal,
            start_pfn: 1_048_576,
            spanned: 5_505_024,
            present: 5_505_024,
            managed: normal_managed,
        },
    ]
}

fn real_sysctl() -> Sysctl {
    Sysctl {
        min_free_kbytes: Some(67584),
        watermark_scale_factor: 10,
        lowmem_reserve_ratio: [256, 256, 32, 0, 0],
        ..Sysctl::default()
    }
}

#[test]
fn testdata_geometries_parse_to_the_exact_zones() {
    for (file, dma32, normal) in [
        ("host-6.18-2cpu.toml", 772_915, 196_608),
        ("sample-appendix-a.toml", 772_922, 1_835_008),
    ] {
        let s = load(testdata(file), &[]).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(s.machine.cpus, 2, "{file}");
        assert_eq!(s.machine.memory_bytes, 25 * GIB, "{file}");
        assert_eq!(s.machine.zones, Some(real_zones(dma32, normal)), "{file}");
        assert_eq!(s.machine.sysctl, real_sysctl(), "{file}");
        assert_eq!(s.name, None, "{file}");
        assert!(s.description.is_some(), "{file}");
    }
}

#[test]
fn builtins_parse_and_boot_sample_is_the_host_geometry() {
    let names: Vec<&str> = builtins().iter().map(|(n, _)| *n).collect();
    assert_eq!(names[..2], ["default", "boot-sample"]);
    for (name, text) in builtins() {
        assert_eq!(builtin(name), Some(*text));
        let s = load_named(name, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.name.as_deref(), Some(*name));
        assert!(summary(text).is_some(), "{name} has no summary");
    }
    assert_eq!(builtin("nope"), None);

    let default = load_named("default", &[]).unwrap();
    assert_eq!(default.machine.cpus, 2);
    assert_eq!(default.machine.memory_bytes, GIB);
    assert_eq!(default.machine.zones, None);
    assert_eq!(default.machine.sysctl, Sysctl::default());

    let sample = load_named("boot-sample", &[]).unwrap();
    let host = load(testdata("host-6.18-2cpu.toml"), &[]).unwrap();
    assert_eq!(sample.machine, host.machine);
    assert_eq!(sample.machine.zones, Some(real_zones(772_915, 196_608)));
}

#[test]
fn overrides_replace_and_create_values() {
    let sets = owned(&[
        "machine.memory=1TiB",
        "machine.cpus = 8",
        "sysctl.vm.swappiness=100",
        "sysctl.vm.lowmem_reserve_ratio=[256,256,32,0,0]",
        "sysctl.vm.watermark_scale_factor=\"5\"",
        "sysctl.vm.watermark_scale_factor=150",
    ]);
    let s = load_named("default", &sets).unwrap();
    assert_eq!(s.machine.memory_bytes, TIB);
    assert_eq!(s.machine.cpus, 8);
    assert_eq!(s.machine.zones, None);
    assert_eq!(
        s.machine.sysctl,
        Sysctl {
            swappiness: 100,
            watermark_scale_factor: 150,
            ..Sysctl::default()
        }
    );

    // Overriding a key that the file sets inside a dotted table.
    let host = load(
        testdata("host-6.18-2cpu.toml"),
        &owned(&["sysctl.vm.min_free_kbytes=1024", "machine.memory=32GiB"]),
    )
    .unwrap();
    assert_eq!(host.machine.sysctl.min_free_kbytes, Some(1024));
    assert_eq!(host.machine.memory_bytes, 32 * GIB);

    // A whole zone list can be replaced with inline tables.
    let zones =
        "machine.zone=[{name=\"DMA32\", start_pfn=4096, spanned=4096, present=4096, managed=4000}]";
    let s = load_named("default", &owned(&[zones])).unwrap();
    assert_eq!(
        s.machine.zones,
        Some(vec![ZoneSpec {
            id: ZoneId::Dma32,
            start_pfn: 4096,
            spanned: 4096,
            present: 4096,
            managed: 4000,
        }])
    );
}

#[test]
fn sysctl_defaults_apply_when_absent_or_partial() {
    let s = parse_str(&text(MACHINE), "t.toml").unwrap();
    assert_eq!(s.machine.sysctl, Sysctl::default());
    assert_eq!(s.machine.sysctl.min_free_kbytes, None);

    let s = parse_str(&text(&with(&["[sysctl]", "vm.swappiness = 0"])), "t.toml").unwrap();
    assert_eq!(
        s.machine.sysctl,
        Sysctl {
            swappiness: 0,
            ..Sysctl::default()
        }
    );

    let all = with(&[
        "[sysctl.vm]",
        "min_free_kbytes = 0",
        "watermark_scale_factor = 3000",
        "lowmem_reserve_ratio = [1, 2, 3, 4, 2147483647]",
        "percpu_pagelist_high_fraction = 8",
        "swappiness = 200",
        "overcommit_memory = 2",
        "overcommit_ratio = 0",
        "watermark_boost_factor = 0",
    ]);
    let s = parse_str(&text(&all), "t.toml").unwrap();
    assert_eq!(
        s.machine.sysctl,
        Sysctl {
            min_free_kbytes: Some(0),
            watermark_scale_factor: 3000,
            lowmem_reserve_ratio: [1, 2, 3, 4, 2_147_483_647],
            percpu_pagelist_high_fraction: 8,
            swappiness: 200,
            overcommit_memory: 2,
            overcommit_ratio: 0,
            watermark_boost_factor: 0,
            dirty_writeback_centisecs: 500,
        }
    );
}

#[test]
fn memory_accepts_integers_and_every_suffix_at_the_limits() {
    for (memory, bytes) in [
        ("16777216", 16 * MIB),
        ("\"16M\"", 16 * MIB),
        ("\"16384 KB\"", 16 * MIB),
        ("\"64TiB\"", 64 * TIB),
        ("\"3gb\"", 3 * GIB),
    ] {
        let src = text(&["[machine]", "cpus = 1", &format!("memory = {memory}")]);
        let s = parse_str(&src, "t.toml").unwrap_or_else(|e| panic!("{memory}: {e}"));
        assert_eq!(s.machine.memory_bytes, bytes, "{memory}");
    }
}

#[test]
fn sizes_parse_with_binary_units_and_percentages() {
    for (input, expect) in [
        ("4096", Ok(Size::Bytes(4096))),
        ("4096B", Ok(Size::Bytes(4096))),
        ("4K", Ok(Size::Bytes(4 * KIB))),
        ("4kb", Ok(Size::Bytes(4 * KIB))),
        ("4 KiB", Ok(Size::Bytes(4 * KIB))),
        ("2M", Ok(Size::Bytes(2 * MIB))),
        ("2MB", Ok(Size::Bytes(2 * MIB))),
        ("4GiB", Ok(Size::Bytes(4 * GIB))),
        ("4GB", Ok(Size::Bytes(4 * GIB))),
        ("1T", Ok(Size::Bytes(TIB))),
        (" 1TB ", Ok(Size::Bytes(TIB))),
        ("12%", Ok(Size::Percent(12.0))),
        ("12.5 %", Ok(Size::Percent(12.5))),
        ("", Err(SizeError::Empty)),
        ("GiB", Err(SizeError::BadNumber("GiB".into()))),
        ("-1G", Err(SizeError::BadNumber("-1".into()))),
        ("1.5G", Err(SizeError::BadNumber("1.5".into()))),
        ("4XB", Err(SizeError::UnknownUnit("XB".into()))),
        ("4PiB", Err(SizeError::UnknownUnit("PiB".into()))),
        ("-3%", Err(SizeError::BadPercent("-3".into()))),
        ("x%", Err(SizeError::BadPercent("x".into()))),
        ("inf%", Err(SizeError::BadPercent("inf".into()))),
        ("16777216T", Err(SizeError::Overflow)),
        ("99999999999999999999", Err(SizeError::Overflow)),
    ] {
        assert_eq!(input.parse::<Size>(), expect, "{input:?}");
    }
}

#[test]
fn byte_counts_format_in_the_largest_exact_unit() {
    for (bytes, expect) in [
        (0, "0 bytes"),
        (4097, "4097 bytes"),
        (4096, "4 KiB"),
        (12 * MIB + 4 * KIB, "12292 KiB"),
        (16 * MIB, "16 MiB"),
        (25 * GIB, "25 GiB"),
        (64 * TIB, "64 TiB"),
    ] {
        assert_eq!(format_bytes(bytes), expect);
        assert_eq!(Size::Bytes(bytes).to_string(), expect);
    }
}

#[test]
fn loading_reports_unknown_names_and_unreadable_files() {
    let e = load_named("no-such-scenario", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown scenario 'no-such-scenario' (not a file; built-ins: default, boot-sample, fork-cow, page-fault-scale, oom)"
    );
    let missing = testdata("missing.toml");
    let e = load(&missing, &[]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot read scenario: ", missing.display())),
        "{msg}"
    );
    assert!(e.place().is_none());

    // A path loads the file, and errors name the path.
    let path = testdata("sample-appendix-a.toml");
    let s = load_named(path.to_str().unwrap(), &[]).unwrap();
    assert_eq!(s.machine.zones, Some(real_zones(772_922, 1_835_008)));
    let e = load_named(path.to_str().unwrap(), &owned(&["machine.cpus=0"])).unwrap_err();
    assert_eq!(
        e.place(),
        Some(&Place::Set {
            arg: "machine.cpus=0".into()
        })
    );
    assert!(matches!(
        e.problem(),
        Some(Problem::OutOfRange { value: 0, .. })
    ));
    let e = parse_str("[machine]\ncpus = 0\n", "dir/x.toml").unwrap_err();
    assert_eq!(
        e.place(),
        Some(&Place::File {
            origin: "dir/x.toml".into(),
            line: 2,
            col: 8
        })
    );
}

#[test]
fn summary_prefers_the_description_then_the_first_comment() {
    assert_eq!(
        summary("# comment\ndescription = \"first\\nsecond\"\n").as_deref(),
        Some("first")
    );
    assert_eq!(
        summary("#\n#  A machine.\n[machine]\n").as_deref(),
        Some("A machine.")
    );
    assert_eq!(summary("[machine]\n"), None);
    assert_eq!(
        summary(builtin("default").unwrap()).as_deref(),
        Some("Memory pressure on a 1 GiB, 2-CPU machine: an anonymous hog grows past what is free, kswapd wakes, the OOM killer picks the hog; malloc churn, a fork/COW worker and an O_DIRECT disk user finish")
    );
}

mod workload;

#[test]
fn set_reaches_into_arrays_of_tables() {
    let text = text(&proc_with(&[]));
    let sets = owned(&[
        "process.0.count=3",
        "process.0.phase.0.ops=7",
        "process.0.name=grower",
    ]);
    let s = parse_with_overrides(&text, "t.toml", &sets).unwrap();
    assert_eq!(s.processes[0].count, 3);
    assert_eq!(s.processes[0].name, "grower");
    assert_eq!(s.processes[0].phases.len(), 1);
}

#[test]
fn the_cost_model_and_the_disk_are_read_and_overridable() {
    let sets = owned(&["machine.cost.walk_ref=40", "machine.disk.latency_us=2500"]);
    let s = parse_with_overrides(&text(MACHINE), "t.toml", &sets).unwrap();
    assert_eq!(s.machine.cost.walk_ref, 40);
    assert_eq!(
        s.machine.cost.l1_hit,
        mm_sim::CostModel::modern_x86().l1_hit
    );
    assert_eq!(s.machine.disk.latency_us, 2500);
    assert_eq!(
        s.machine.disk.mib_per_s,
        mm_sim::DiskSpec::default().mib_per_s
    );
}
