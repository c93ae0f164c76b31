//! The `mmsim` command line end to end, in-process through `mm_cli::main_with`.

use crate::mmsim;

fn scenario_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("mmsim-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_place() {
    let cases: &[(&str, &str, &str)] = &[
        ("unknown-key.toml", "[machine]\ncpus = 2\nmemory = \"1GiB\"\ncolour = \"red\"\n", ":4:1: unknown key"),
        (
            "overlap.toml",
            "[machine]\ncpus = 2\nmemory = \"8GiB\"\n[[machine.zone]]\nname = \"DMA\"\nstart_pfn = 1\nspanned = 4095\npresent = 4095\nmanaged = 4095\n[[machine.zone]]\nname = \"DMA32\"\nstart_pfn = 4000\nspanned = 8192\npresent = 8192\nmanaged = 8192\n",
            "overlap",
        ),
        (
            "too-big.toml",
            "[machine]\ncpus = 2\nmemory = \"1GiB\"\n[[machine.zone]]\nname = \"DMA32\"\nstart_pfn = 4096\nspanned = 1044480\npresent = 1044480\nmanaged = 1044480\n",
            "memory",
        ),
        ("sysctl.toml", "[machine]\ncpus = 2\nmemory = \"1GiB\"\n[sysctl]\nvm.watermark_scale_factor = 3001\n", ":5:"),
    ];
    for (name, text, needle) in cases {
        let path = scenario_file(name, text);
        let (code, out, err) = mmsim(&["boot", &path, "--proc", "meminfo"]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(out.is_empty(), "{name}: nothing on stdout");
        assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
        assert!(
            err.starts_with("mmsim: ") && err.contains(&path),
            "{name}: names the file: {err}"
        );
        assert!(err.contains(needle), "{name}: {err:?} lacks {needle:?}");
    }
    let (code, _, err) = mmsim(&[
        "boot",
        "--set",
        "sysctl.vm.swappiness=201",
        "--proc",
        "meminfo",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--set sysctl.vm.swappiness=201"), "{err}");
}

#[test]
fn boot_prints_proc_files_of_the_scenario() {
    let (code, out, _) = mmsim(&["boot", "--set", "machine.memory=1TiB", "--proc", "meminfo"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("MemTotal:       1073741820 kB\n"), "{out}");
    let (code, out, _) = mmsim(&["boot", "boot-sample", "--proc", "buddyinfo"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3, "DMA, DMA32 and Normal: {out}");
    let (code, out, _) = mmsim(&["run", "boot-sample"]);
    assert_eq!(code, 0);
    assert!(out.contains("buff/cache"), "{out}");
}

#[test]
fn run_options_are_checked_and_set_reaches_processes() {
    // --trace-events needs --trace: a usage error, exit 2.
    let (code, _, err) = mmsim(&["run", "fork-cow", "--trace-events", "mark_victim"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--trace"), "{err}");
    // An index past the end of [[process]]: exit 2, naming the override.
    let (code, _, err) = mmsim(&["run", "oom", "--set", "process.9.count=2"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err,
        "mmsim: --set process.9.count=2: `process` is an array of 4, so `9` is not one of its indices (0..4)\n"
    );
    // An --out directory that cannot be created: a simulator failure, exit 1, after the run.
    let blocker = scenario_file("not-a-dir", "");
    let out = format!("{blocker}/snap");
    let (code, _, err) = mmsim(&[
        "run",
        "fork-cow",
        "--set",
        "machine.memory=256MiB",
        "--out",
        &out,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("mmsim: cannot create "), "{err}");
    // --set into the process array changes what runs: one process, renamed, fewer ops.
    let (code, out, err) = mmsim(&[
        "run",
        "page-fault-scale",
        "--set",
        "process.1.count=1",
        "--set",
        "process.1.name=solo",
        "--json",
        "-",
    ]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let solos = r["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "solo")
        .count();
    assert_eq!(solos, 1, "{out}");
}
