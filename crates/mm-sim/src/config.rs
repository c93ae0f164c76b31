//! The machine configuration: plain data that `mm-scenario` fills from a scenario file.

use mm_types::ZoneId;

/// Everything needed to boot a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// Number of simulated CPUs (1..=256).
    pub cpus: u32,
    /// RAM size in bytes; a multiple of the page size.
    pub memory_bytes: u64,
    /// Explicit zone geometry, lowest zone first; `None` derives the zones from
    /// `memory_bytes` (DMA below 16 MiB, DMA32 below 4 GiB, Normal above).
    pub zones: Option<Vec<ZoneSpec>>,
    /// The `vm.*` sysctls.
    pub sysctl: Sysctl,
    /// The block device the I/O engine simulates.
    pub disk: crate::DiskSpec,
    /// The MMU's cycle costs (`[machine.cost]`), for the AMAT the run reports.
    pub cost: mm_mmu::CostModel,
}

/// One zone of an explicit geometry, as `/proc/zoneinfo` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneSpec {
    /// Which zone (DMA, DMA32 or Normal).
    pub id: ZoneId,
    /// First pfn of the zone span.
    pub start_pfn: u64,
    /// Pages spanned, holes included.
    pub spanned: u64,
    /// Pages physically present in the span.
    pub present: u64,
    /// Pages the buddy allocator manages (present minus boot reservations).
    pub managed: u64,
}

/// The `vm.*` sysctls the machine honours, with the kernel's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// `vm.min_free_kbytes`; `None` computes the kernel's boot default.
    pub min_free_kbytes: Option<u64>,
    /// `vm.watermark_scale_factor` (1..=3000, default 10).
    pub watermark_scale_factor: u32,
    /// `vm.lowmem_reserve_ratio`, one entry per zone type (default `[256, 256, 32, 0, 0]`).
    pub lowmem_reserve_ratio: [u32; ZoneId::COUNT],
    /// `vm.percpu_pagelist_high_fraction` (0 = automatic, else >= 8).
    pub percpu_pagelist_high_fraction: u32,
    /// `vm.swappiness` (0..=200, default 60).
    pub swappiness: u32,
    /// `vm.overcommit_memory` (0, 1 or 2).
    pub overcommit_memory: u32,
    /// `vm.overcommit_ratio` (percent, default 50).
    pub overcommit_ratio: u32,
    /// `vm.watermark_boost_factor` (default 15000).
    pub watermark_boost_factor: u32,
    /// `vm.dirty_writeback_centisecs`: the flusher's period (default 500; 0 disables it).
    pub dirty_writeback_centisecs: u32,
}

impl Default for Sysctl {
    fn default() -> Self {
        Sysctl {
            min_free_kbytes: None,
            watermark_scale_factor: 10,
            lowmem_reserve_ratio: [256, 256, 32, 0, 0],
            percpu_pagelist_high_fraction: 0,
            swappiness: 60,
            overcommit_memory: 0,
            overcommit_ratio: 50,
            watermark_boost_factor: 15000,
            dirty_writeback_centisecs: 500,
        }
    }
}
