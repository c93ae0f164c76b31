//! Machine boot and `/proc` rendering.

use super::*;

fn config(memory_bytes: u64) -> MachineConfig {
    MachineConfig {
        cpus: 2,
        memory_bytes,
        zones: None,
        sysctl: Sysctl::default(),
    }
}

#[test]
fn zones_are_derived_from_the_memory_size() {
    let z = derive_zones(1 << 20); // 4 GiB
    assert_eq!(z.len(), 2);
    assert_eq!(
        (z[0].id, z[0].start_pfn, z[0].spanned),
        (ZoneId::Dma, 1, 4095)
    );
    assert_eq!(
        (z[1].id, z[1].start_pfn, z[1].spanned),
        (ZoneId::Dma32, 4096, (1 << 20) - 4096)
    );
    let z = derive_zones(3 << 20); // 12 GiB
    assert_eq!(z[2].id, ZoneId::Normal);
    assert_eq!(z[2].spanned, 2 << 20);
    assert_eq!(derive_zones(4096).len(), 1, "16 MiB: DMA only");
}

#[test]
fn meminfo_has_kernel_layout_and_consistent_numbers() {
    let m = Machine::boot(&config(4 << 30)).unwrap();
    let text = m.proc_file(ProcFile::Meminfo);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("MemTotal:       {:>8} kB", ((1u64 << 20) - 1) * 4)
    );
    for l in &lines {
        // Values are right-aligned to column 24 (27 with " kB") unless wider than 8 digits.
        let width = if l.ends_with(" kB") { 27 } else { 24 };
        assert!(
            l.len() == width || l.starts_with("VmallocTotal"),
            "misaligned: {l:?}"
        );
    }
    assert!(text.contains("\nVmallocTotal:   34359738367 kB\n"));
    assert!(text.contains("\nHugePages_Total:       0\n"));
    let field = |name: &str| -> u64 {
        let l = lines
            .iter()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap();
        l.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // At boot only the slab's first slabs are allocated; the other pages that are not free
    // sit on the pcp lists that served them.
    let pcp_kb = m.buddy().pcp_pages() * 4;
    assert_eq!(field("MemFree") + pcp_kb + field("Slab"), field("MemTotal"));
    assert!(
        field("MemAvailable") < field("MemFree"),
        "totalreserve is not available"
    );
    let direct = field("DirectMap4k") + field("DirectMap2M") + field("DirectMap1G");
    assert_eq!(direct, 4 << 20, "the direct map covers all RAM");
    // The same labels, in the same order, as a real 6.18 kernel prints (reference host).
    let host = include_str!("../../../tests/it/data/host-6.18-2cpu.meminfo");
    let labels = |t: &str| {
        t.lines()
            .map(|l| l.split(':').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(labels(&text), labels(host));
}

#[test]
fn buddyinfo_and_vmstat_match_the_kernel_layout() {
    let m = Machine::boot(&config(4 << 30)).unwrap();
    let b = m.proc_file(ProcFile::Buddyinfo);
    let first = b.lines().next().unwrap();
    assert!(first.starts_with("Node 0, zone      DMA "), "{first}");
    assert!(first.ends_with(' '), "buddyinfo lines end in a space");
    let dma32 = b.lines().nth(1).unwrap();
    assert!(dma32.starts_with("Node 0, zone    DMA32 "));
    let blocks = m.buddy().zone_info(ZoneId::Dma32).free_blocks;
    let counts: Vec<u64> = dma32[22..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts, blocks, "{dma32}");
    assert!(
        blocks[10] >= 1019,
        "4 GiB - 16 MiB is ~1020 4 MiB blocks: {dma32}"
    );
    let v = m.proc_file(ProcFile::Vmstat);
    let host = include_str!("../../../tests/it/data/host-6.18-2cpu.vmstat");
    let names = |t: &str| {
        t.lines()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&v),
        names(host),
        "same counters in the same order as 6.18"
    );
    let blocks: u64 = ZoneId::ALL
        .iter()
        .map(|z| m.buddy().zone_info(*z).nr_free_pages_blocks)
        .sum();
    assert!(v.contains(&format!("\nnr_free_pages_blocks {blocks}\n")));
}

#[test]
fn allocation_shows_up_in_every_view() {
    let m = Machine::boot(&config(1 << 30)).unwrap();
    let counter = |text: &str, name: &str| -> u64 {
        let l = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap();
        l.split(' ').nth(1).unwrap().parse().unwrap()
    };
    let before = m.proc_file(ProcFile::Vmstat);
    let f = m
        .buddy()
        .alloc(
            mm_types::CpuId(1),
            mm_types::Order::new(2).unwrap(),
            mm_types::Gfp::GFP_KERNEL,
        )
        .unwrap();
    let v = m.proc_file(ProcFile::Vmstat);
    assert_eq!(
        counter(&v, "pgalloc_dma32"),
        counter(&before, "pgalloc_dma32") + 4
    );
    let z = m.proc_file(ProcFile::Zoneinfo);
    assert!(z.contains("\n    cpu: 1\n              count:    "), "{z}");
    m.buddy().free(mm_types::CpuId(1), f);
    let v = m.proc_file(ProcFile::Vmstat);
    assert_eq!(counter(&v, "pgfree"), counter(&before, "pgfree") + 4);
}

#[test]
fn boot_errors_are_typed() {
    let mut c = config(1 << 30);
    c.cpus = 0;
    assert!(matches!(Machine::boot(&c), Err(BootError::Config(_))));
    let mut c = config(1 << 30);
    c.sysctl.watermark_scale_factor = 0;
    assert!(matches!(Machine::boot(&c), Err(BootError::Buddy(_))));
    assert_eq!("zoneinfo".parse::<ProcFile>(), Ok(ProcFile::Zoneinfo));
    assert!("slab"
        .parse::<ProcFile>()
        .unwrap_err()
        .contains("one of: meminfo"));
}

#[test]
fn slab_caches_exist_at_boot_and_show_in_meminfo() {
    let m = Machine::boot(&config(1 << 30)).unwrap();
    let info = m.proc_file(ProcFile::Slabinfo);
    assert!(info.starts_with("slabinfo - version: 2.1\n# name "));
    for name in [
        "kmalloc-8 ",
        "kmalloc-96 ",
        "kmalloc-192 ",
        "kmalloc-8k ",
        "vm_area_struct ",
        "mm_struct ",
        "task_struct ",
    ] {
        assert!(
            info.lines().any(|l| l.starts_with(name)),
            "no {name} line:\n{info}"
        );
    }
    let meminfo = m.proc_file(ProcFile::Meminfo);
    let kb = |label: &str| -> u64 {
        let l = meminfo.lines().find(|l| l.starts_with(label)).unwrap();
        l.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert!(kb("Slab:") > 0, "the boot caches hold slabs");
    assert_eq!(kb("Slab:"), kb("SReclaimable:") + kb("SUnreclaim:"));
    assert_eq!(kb("Slab:"), m.slab().slab_pages() * 4);
    assert_eq!(kb("KReclaimable:"), kb("SReclaimable:"));
}
