//! Shared fixtures for the criterion benchmarks in `benches/` (a top-level, dev-only crate).
//!
//! Each bench target measures mmsim code and, in the same run, the peer or host operation it is
//! compared with; `ids.json` registers every benchmark id with its unit so `cargo xtask bench`
//! can report them (see docs/performance.md).
//!
//! # Invariants
//! - Benchmark ids are stable: `docs/performance.md` and the bench JSON key on them.
//! - Host-side peer measurements (plain loads, host malloc, thread scaling) may use `std::thread`
//!   directly; nothing here is simulator code.
//!
//! # Locking protocol
//! None of its own; the benchmarks exercise the simulator's locks.
#![deny(unsafe_code)]

use mm_buddy::{Buddy, BuddyConfig, ZoneConfig};
use mm_phys::PhysMem;
use mm_sync::sync::Arc;
use mm_types::{Pfn, ZoneId};

/// Boots an allocator with one Normal zone of `pages` pages for `cpus` CPUs, with the kernel's
/// default sysctls.
pub fn normal_zone_buddy(cpus: u32, pages: u64) -> Buddy {
    let start = 1u64 << 20;
    let cfg = BuddyConfig {
        nr_cpus: cpus,
        zones: vec![ZoneConfig {
            id: ZoneId::Normal,
            start_pfn: Pfn(start),
            spanned: pages,
            present: pages,
            managed: pages,
        }],
        min_free_kbytes: None,
        watermark_scale_factor: 10,
        watermark_boost_factor: 15000,
        lowmem_reserve_ratio: [256, 256, 32, 0, 0],
        percpu_pagelist_high_fraction: 0,
        thp_enabled: true,
    };
    Buddy::new(Arc::new(PhysMem::new(Pfn(start + pages))), &cfg).expect("bench machine boots")
}
