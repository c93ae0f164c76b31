//! `/proc` renderers in Linux 6.18's exact text formats (`fs/proc/meminfo.c`,
//! `mm/vmstat.c`: `frag_show_print`, `zoneinfo_show_print`, `vmstat_show`).
//!
//! Counter values come from one snapshot of the machine ([`Snapshot`]). Counters whose
//! subsystem does not exist yet (LRU, page cache, swap, slab, …) print 0, as they would on a
//! kernel where nothing has used them.

use crate::Machine;
use mm_buddy::ZoneInfo;
use mm_types::{ZoneId, PAGE_SIZE};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;

/// A `/proc` file the machine can render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcFile {
    /// `/proc/meminfo`.
    Meminfo,
    /// `/proc/zoneinfo`.
    Zoneinfo,
    /// `/proc/buddyinfo`.
    Buddyinfo,
    /// `/proc/vmstat`.
    Vmstat,
    /// `/proc/slabinfo` (version 2.1).
    Slabinfo,
    /// `/proc/swaps`.
    Swaps,
}

impl ProcFile {
    /// Every renderable file.
    pub const ALL: [ProcFile; 6] = [
        ProcFile::Meminfo,
        ProcFile::Zoneinfo,
        ProcFile::Buddyinfo,
        ProcFile::Vmstat,
        ProcFile::Slabinfo,
        ProcFile::Swaps,
    ];

    /// Returns the file name under `/proc`.
    pub fn name(self) -> &'static str {
        match self {
            ProcFile::Meminfo => "meminfo",
            ProcFile::Zoneinfo => "zoneinfo",
            ProcFile::Buddyinfo => "buddyinfo",
            ProcFile::Vmstat => "vmstat",
            ProcFile::Slabinfo => "slabinfo",
            ProcFile::Swaps => "swaps",
        }
    }
}

impl std::fmt::Display for ProcFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProcFile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ProcFile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ProcFile::ALL.iter().map(|p| p.name()).collect();
                format!("unknown /proc file '{s}' (one of: {})", names.join(", "))
            })
    }
}

/// Zone counters (`enum zone_stat_item`, 6.18 order).
const ZONE_STATS: &[&str] = &[
    "nr_free_pages",
    "nr_free_pages_blocks",
    "nr_zone_inactive_anon",
    "nr_zone_active_anon",
    "nr_zone_inactive_file",
    "nr_zone_active_file",
    "nr_zone_unevictable",
    "nr_zone_write_pending",
    "nr_mlock",
    "nr_zspages",
    "nr_free_cma",
];

/// NUMA events (`enum numa_stat_item`).
const NUMA_STATS: &[&str] = &[
    "numa_hit",
    "numa_miss",
    "numa_foreign",
    "numa_interleave",
    "numa_local",
    "numa_other",
];

/// Node counters (`enum node_stat_item`, 6.18 order).
const NODE_STATS: &[&str] = &[
    "nr_inactive_anon",
    "nr_active_anon",
    "nr_inactive_file",
    "nr_active_file",
    "nr_unevictable",
    "nr_slab_reclaimable",
    "nr_slab_unreclaimable",
    "nr_isolated_anon",
    "nr_isolated_file",
    "workingset_nodes",
    "workingset_refault_anon",
    "workingset_refault_file",
    "workingset_activate_anon",
    "workingset_activate_file",
    "workingset_restore_anon",
    "workingset_restore_file",
    "workingset_nodereclaim",
    "nr_anon_pages",
    "nr_mapped",
    "nr_file_pages",
    "nr_dirty",
    "nr_writeback",
    "nr_shmem",
    "nr_shmem_hugepages",
    "nr_shmem_pmdmapped",
    "nr_file_hugepages",
    "nr_file_pmdmapped",
    "nr_anon_transparent_hugepages",
    "nr_vmscan_write",
    "nr_vmscan_immediate_reclaim",
    "nr_dirtied",
    "nr_written",
    "nr_throttled_written",
    "nr_kernel_misc_reclaimable",
    "nr_foll_pin_acquired",
    "nr_foll_pin_released",
    "nr_kernel_stack",
    "nr_page_table_pages",
    "nr_sec_page_table_pages",
    "nr_iommu_pages",
    "nr_swapcached",
    "pgpromote_success",
    "pgpromote_candidate",
    "pgpromote_candidate_nrl",
    "pgdemote_kswapd",
    "pgdemote_direct",
    "pgdemote_khugepaged",
    "pgdemote_proactive",
    "nr_hugetlb",
    "nr_balloon_pages",
    "nr_kernel_file_pages",
];

/// Writeback thresholds and memmap counts (`enum vmstat_item` / writeback stats).
const VM_STATS: &[&str] = &[
    "nr_dirty_threshold",
    "nr_dirty_background_threshold",
    "nr_memmap_pages",
    "nr_memmap_boot_pages",
];

/// VM events (`enum vm_event_item`, 6.18 with x86-64's configuration).
const VM_EVENTS: &[&str] = &[
    "pgpgin",
    "pgpgout",
    "pswpin",
    "pswpout",
    "pgalloc_dma",
    "pgalloc_dma32",
    "pgalloc_normal",
    "pgalloc_movable",
    "pgalloc_device",
    "allocstall_dma",
    "allocstall_dma32",
    "allocstall_normal",
    "allocstall_movable",
    "allocstall_device",
    "pgskip_dma",
    "pgskip_dma32",
    "pgskip_normal",
    "pgskip_movable",
    "pgskip_device",
    "pgfree",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pgfault",
    "pgmajfault",
    "pglazyfreed",
    "pgrefill",
    "pgreuse",
    "pgsteal_kswapd",
    "pgsteal_direct",
    "pgsteal_khugepaged",
    "pgsteal_proactive",
    "pgscan_kswapd",
    "pgscan_direct",
    "pgscan_khugepaged",
    "pgscan_proactive",
    "pgscan_direct_throttle",
    "pgscan_anon",
    "pgscan_file",
    "pgsteal_anon",
    "pgsteal_file",
    "zone_reclaim_success",
    "zone_reclaim_failed",
    "pginodesteal",
    "slabs_scanned",
    "kswapd_inodesteal",
    "kswapd_low_wmark_hit_quickly",
    "kswapd_high_wmark_hit_quickly",
    "pageoutrun",
    "pgrotated",
    "drop_pagecache",
    "drop_slab",
    "oom_kill",
    "numa_pte_updates",
    "numa_huge_pte_updates",
    "numa_hint_faults",
    "numa_hint_faults_local",
    "numa_pages_migrated",
    "pgmigrate_success",
    "pgmigrate_fail",
    "thp_migration_success",
    "thp_migration_fail",
    "thp_migration_split",
    "compact_migrate_scanned",
    "compact_free_scanned",
    "compact_isolated",
    "compact_stall",
    "compact_fail",
    "compact_success",
    "compact_daemon_wake",
    "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned",
    "htlb_buddy_alloc_success",
    "htlb_buddy_alloc_fail",
    "unevictable_pgs_culled",
    "unevictable_pgs_scanned",
    "unevictable_pgs_rescued",
    "unevictable_pgs_mlocked",
    "unevictable_pgs_munlocked",
    "unevictable_pgs_cleared",
    "unevictable_pgs_stranded",
    "thp_fault_alloc",
    "thp_fault_fallback",
    "thp_fault_fallback_charge",
    "thp_collapse_alloc",
    "thp_collapse_alloc_failed",
    "thp_file_alloc",
    "thp_file_fallback",
    "thp_file_fallback_charge",
    "thp_file_mapped",
    "thp_split_page",
    "thp_split_page_failed",
    "thp_deferred_split_page",
    "thp_underused_split_page",
    "thp_split_pmd",
    "thp_scan_exceed_none_pte",
    "thp_scan_exceed_swap_pte",
    "thp_scan_exceed_share_pte",
    "thp_split_pud",
    "thp_zero_page_alloc",
    "thp_zero_page_alloc_failed",
    "thp_swpout",
    "thp_swpout_fallback",
    "balloon_inflate",
    "balloon_deflate",
    "balloon_migrate",
    "swap_ra",
    "swap_ra_hit",
    "swpin_zero",
    "swpout_zero",
    "ksm_swpin_copy",
    "cow_ksm",
    "zswpin",
    "zswpout",
    "zswpwb",
    "direct_map_level2_splits",
    "direct_map_level3_splits",
    "direct_map_level2_collapses",
    "direct_map_level3_collapses",
];

/// One consistent reading of the machine's counters, in pages unless named `_kb`.
pub(crate) struct Snapshot {
    zones: Vec<ZoneInfo>,
    /// Node, writeback and event counters by Linux name; absent names are 0.
    counters: BTreeMap<&'static str, u64>,
    totalram: u64,
    totalreserve: u64,
    max_pfn: u64,
    overcommit_ratio: u64,
}

impl Snapshot {
    pub(crate) fn take(m: &Machine) -> Snapshot {
        let b = m.buddy();
        let zones: Vec<ZoneInfo> = ZoneId::ALL.iter().map(|z| b.zone_info(*z)).collect();
        let events = b.vm_events();
        let mut c = BTreeMap::new();
        for z in ZoneId::ALL {
            let name = |prefix: &str| -> &'static str {
                VM_EVENTS
                    .iter()
                    .find(|e| e.strip_prefix(prefix) == Some(z.counter_name()))
                    .copied()
                    .expect("every zone has its event names")
            };
            c.insert(name("pgalloc_"), events.pgalloc[z.index()]);
            c.insert(name("allocstall_"), events.allocstall[z.index()]);
        }
        let pgalloc: u64 = events.pgalloc.iter().sum();
        c.insert("pgfree", events.pgfree);
        let vm = m.vm_events();
        c.insert("pgfault", vm.pgfault);
        c.insert("pgmajfault", vm.pgmajfault);
        c.insert("pgreuse", vm.pgreuse);
        c.insert("pageoutrun", m.kswapd().pageoutrun());
        c.insert("oom_kill", m.oom_kill_count());
        c.insert("nr_page_table_pages", m.mmu().nr_pagetables());
        c.insert("committed_as", m.vm().committed_pages().max(0) as u64);
        let anon = m.anon_pages();
        c.insert("nr_anon_pages", anon);
        c.insert("nr_slab_reclaimable", m.slab().slab_reclaimable_pages());
        c.insert("nr_slab_unreclaimable", m.slab().slab_unreclaimable_pages());
        // One node: every allocation is a local hit (counted in pages, as `zone_statistics`).
        c.insert("numa_hit", pgalloc);
        c.insert("numa_local", pgalloc);
        let totalreserve = b.totalreserve_pages();
        let free: u64 = zones.iter().map(|z| z.nr_free_pages).sum();
        let (thresh, bg) = global_dirty_limits(free, totalreserve, 0);
        c.insert("nr_dirty_threshold", thresh);
        c.insert("nr_dirty_background_threshold", bg);
        // struct page storage: 64 bytes per spanned page.
        let spanned: u64 = zones.iter().map(|z| z.spanned).sum();
        let memmap = (spanned * 64).div_ceil(PAGE_SIZE as u64);
        c.insert("nr_memmap_pages", memmap);
        c.insert("nr_memmap_boot_pages", memmap);
        Snapshot {
            totalram: b.totalram_pages(),
            totalreserve,
            max_pfn: m.config().memory_bytes / PAGE_SIZE as u64,
            overcommit_ratio: m.config().sysctl.overcommit_ratio as u64,
            zones,
            counters: c,
        }
    }

    fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn zone_stat(&self, z: &ZoneInfo, name: &str) -> u64 {
        match name {
            "nr_free_pages" => z.nr_free_pages,
            "nr_free_pages_blocks" => z.nr_free_pages_blocks,
            _ => 0,
        }
    }

    fn free_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.nr_free_pages).sum()
    }

    fn low_wmarks(&self) -> u64 {
        self.zones.iter().map(|z| z.watermarks.low).sum()
    }
}

/// `/proc/meminfo` as (name, kB) pairs, in file order (for reports and samples).
pub(crate) fn meminfo_fields(m: &Machine) -> Vec<(String, u64)> {
    let s = Snapshot::take(m);
    meminfo(&s)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            Some((
                name.to_string(),
                rest.split_whitespace().next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// `/proc/vmstat` as (name, value) pairs, in file order.
/// `global_dirty_limits` with the default `vm.dirty_ratio` (20) and
/// `vm.dirty_background_ratio` (10): (threshold, background threshold) in pages, from free
/// pages, `totalreserve_pages` and the file LRU pages (`global_dirtyable_memory`).
pub(crate) fn global_dirty_limits(free: u64, totalreserve: u64, file_lru: u64) -> (u64, u64) {
    let dirtyable = free - free.min(totalreserve) + file_lru + 1;
    let thresh = dirtyable * 20 / 100;
    let mut bg = dirtyable * 10 / 100;
    if bg >= thresh {
        bg = thresh / 2;
    }
    (thresh, bg)
}

pub(crate) fn vmstat_fields(m: &Machine) -> Vec<(String, u64)> {
    let s = Snapshot::take(m);
    vmstat(&s)
        .lines()
        .filter_map(|l| {
            let (name, v) = l.split_once(' ')?;
            Some((name.to_string(), v.parse().ok()?))
        })
        .collect()
}

pub(crate) fn render(m: &Machine, file: ProcFile) -> String {
    let s = Snapshot::take(m);
    match file {
        ProcFile::Meminfo => meminfo(&s),
        ProcFile::Zoneinfo => zoneinfo(&s, m.config().cpus as usize),
        ProcFile::Buddyinfo => buddyinfo(&s),
        ProcFile::Vmstat => vmstat(&s),
        ProcFile::Slabinfo => mm_slab::render_slabinfo(m.slab()),
        // `swap_show`: the header, then one row per active swap device; the machine has none
        // until the swap issue adds them.
        ProcFile::Swaps => SWAPS_HEADER.to_string(),
    }
}

/// The header line of `/proc/swaps`.
pub(crate) const SWAPS_HEADER: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";

/// `show_val_kb`: label padded to 16 columns, value right-aligned in 8, then " kB".
fn kb_line(out: &mut String, label: &str, kb: u64) {
    let _ = writeln!(out, "{:<16}{:>8} kB", format!("{label}:"), kb);
}

fn meminfo(s: &Snapshot) -> String {
    let k = |pages: u64| pages * (PAGE_SIZE as u64 / 1024);
    let free = s.free_pages();
    // si_mem_available(): free - totalreserve, plus the part of page cache and reclaimable
    // slab above the low watermarks (both empty until those subsystems exist).
    let wmark_low = s.low_wmarks();
    let pagecache = s.get("nr_active_file") + s.get("nr_inactive_file");
    let reclaimable = s.get("nr_slab_reclaimable") + s.get("nr_kernel_misc_reclaimable");
    let avail = free as i64 - s.totalreserve as i64
        + (pagecache - (pagecache / 2).min(wmark_low)) as i64
        + (reclaimable - (reclaimable / 2).min(wmark_low)) as i64;
    let avail = avail.max(0) as u64;
    let mut o = String::new();
    let swap_total = 0;
    let swap_free = 0;
    let commit_limit = s.totalram * s.overcommit_ratio / 100 + swap_total;
    let rows: [(&str, u64); 37] = [
        ("MemTotal", k(s.totalram)),
        ("MemFree", k(free)),
        ("MemAvailable", k(avail)),
        ("Buffers", 0),
        (
            "Cached",
            k(s.get("nr_file_pages")
                .saturating_sub(s.get("nr_swapcached"))),
        ),
        ("SwapCached", k(s.get("nr_swapcached"))),
        (
            "Active",
            k(s.get("nr_active_anon") + s.get("nr_active_file")),
        ),
        (
            "Inactive",
            k(s.get("nr_inactive_anon") + s.get("nr_inactive_file")),
        ),
        ("Active(anon)", k(s.get("nr_active_anon"))),
        ("Inactive(anon)", k(s.get("nr_inactive_anon"))),
        ("Active(file)", k(s.get("nr_active_file"))),
        ("Inactive(file)", k(s.get("nr_inactive_file"))),
        ("Unevictable", k(s.get("nr_unevictable"))),
        ("Mlocked", k(s.get("nr_mlock"))),
        ("SwapTotal", k(swap_total)),
        ("SwapFree", k(swap_free)),
        ("Zswap", 0),
        ("Zswapped", 0),
        ("Dirty", k(s.get("nr_dirty"))),
        ("Writeback", k(s.get("nr_writeback"))),
        ("AnonPages", k(s.get("nr_anon_pages"))),
        ("Mapped", k(s.get("nr_mapped"))),
        ("Shmem", k(s.get("nr_shmem"))),
        ("KReclaimable", k(reclaimable)),
        (
            "Slab",
            k(s.get("nr_slab_reclaimable") + s.get("nr_slab_unreclaimable")),
        ),
        ("SReclaimable", k(s.get("nr_slab_reclaimable"))),
        ("SUnreclaim", k(s.get("nr_slab_unreclaimable"))),
        ("KernelStack", s.get("nr_kernel_stack")),
        ("PageTables", k(s.get("nr_page_table_pages"))),
        ("SecPageTables", 0),
        ("NFS_Unstable", 0),
        ("Bounce", 0),
        ("WritebackTmp", 0),
        ("CommitLimit", k(commit_limit)),
        ("Committed_AS", k(s.get("committed_as"))),
        ("VmallocTotal", 34_359_738_367),
        ("VmallocUsed", 0),
    ];
    for (label, v) in rows {
        kb_line(&mut o, label, v);
    }
    for label in [
        "VmallocChunk",
        "Percpu",
        "AnonHugePages",
        "ShmemHugePages",
        "ShmemPmdMapped",
        "FileHugePages",
        "FilePmdMapped",
        "Balloon",
    ] {
        kb_line(&mut o, label, 0);
    }
    for label in [
        "HugePages_Total",
        "HugePages_Free",
        "HugePages_Rsvd",
        "HugePages_Surp",
    ] {
        let _ = writeln!(o, "{:<16}   {:>5}", format!("{label}:"), 0);
    }
    kb_line(&mut o, "Hugepagesize", 2048);
    kb_line(&mut o, "Hugetlb", 0);
    // The direct map: the first 2 MiB in 4 KiB pages, up to 1 GiB in 2 MiB pages, the rest
    // in 1 GiB pages (x86 `arch_report_meminfo`).
    let total_kb = s.max_pfn * 4;
    let map4k = total_kb.min(2048);
    let map2m = (total_kb.min(1 << 20) - map4k) / 2048 * 2048;
    let map1g = (total_kb - map4k - map2m) / (1 << 20) * (1 << 20);
    let map2m = map2m + (total_kb - map4k - map2m - map1g) / 2048 * 2048;
    kb_line(
        &mut o,
        "DirectMap4k",
        map4k + (total_kb - map4k - map2m - map1g),
    );
    kb_line(&mut o, "DirectMap2M", map2m);
    kb_line(&mut o, "DirectMap1G", map1g);
    o
}

fn buddyinfo(s: &Snapshot) -> String {
    let mut o = String::new();
    for z in s.zones.iter().filter(|z| z.managed > 0) {
        let _ = write!(o, "Node 0, zone {:>8} ", z.id.name());
        for n in z.free_blocks {
            let _ = write!(o, "{n:>6} ");
        }
        o.push('\n');
    }
    o
}

fn zoneinfo(s: &Snapshot, cpus: usize) -> String {
    let mut o = String::new();
    let first_populated = s.zones.iter().position(|z| z.managed > 0);
    for (i, z) in s.zones.iter().enumerate() {
        let _ = write!(o, "Node 0, zone {:>8}", z.id.name());
        if Some(i) == first_populated {
            o.push_str("\n  per-node stats");
            for name in NODE_STATS {
                let _ = write!(o, "\n      {:<12} {}", name, s.get(name));
            }
        }
        let w = z.watermarks;
        let _ = write!(
            o,
            "\n  pages free     {}\n        boost    {}\n        min      {}\n        low      {}\n        high     {}\n        promo    {}\n        spanned  {}\n        present  {}\n        managed  {}\n        cma      {}",
            z.nr_free_pages, z.boost, w.min, w.low, w.high, w.promo, z.spanned, z.present, z.managed, 0
        );
        let _ = write!(o, "\n        protection: ({}", z.protection[0]);
        for p in &z.protection[1..] {
            let _ = write!(o, ", {p}");
        }
        o.push(')');
        if z.managed == 0 {
            o.push('\n');
            continue;
        }
        for name in ZONE_STATS {
            let _ = write!(o, "\n      {:<12} {}", name, s.zone_stat(z, name));
        }
        for name in NUMA_STATS {
            let v = match *name {
                "numa_hit" | "numa_local" => z.pgalloc,
                _ => 0,
            };
            let _ = write!(o, "\n      {name:<12} {v}");
        }
        o.push_str("\n  pagesets");
        for (cpu, p) in z.pcp.iter().enumerate().take(cpus) {
            let _ = write!(
                o,
                "\n    cpu: {cpu}\n              count:    {}\n              high:     {}\n              batch:    {}\n              high_min: {}\n              high_max: {}\n  vm stats threshold: {}",
                p.count, p.high, p.batch, p.high_min, p.high_max, z.stat_threshold
            );
        }
        let _ = write!(
            o,
            "\n  node_unreclaimable:  {}\n  start_pfn:           {}\n",
            0, z.start_pfn
        );
    }
    o
}

fn vmstat(s: &Snapshot) -> String {
    let mut o = String::new();
    for name in ZONE_STATS {
        let v: u64 = s.zones.iter().map(|z| s.zone_stat(z, name)).sum();
        let _ = writeln!(o, "{name} {v}");
    }
    for name in NUMA_STATS
        .iter()
        .chain(NODE_STATS)
        .chain(VM_STATS)
        .chain(VM_EVENTS)
    {
        let _ = writeln!(o, "{name} {}", s.get(name));
    }
    o.push_str("nr_unstable 0\n");
    o
}
