//! The kernel's sizing formulas, as pure functions of zone sizes and sysctls.
//!
//! Sources: `mm/page_alloc.c` (`calculate_min_free_kbytes`, `__setup_per_zone_wmarks`,
//! `setup_per_zone_lowmem_reserve`, `calculate_totalreserve_pages`, `zone_batchsize`,
//! `zone_highsize`), `mm/khugepaged.c` (`set_recommended_min_free_kbytes`) and `mm/vmstat.c`
//! (`calculate_normal_threshold`), Linux 6.7+.

use mm_types::ZoneId;

/// `pageblock_order` on x86-64 (2 MiB blocks).
pub const PAGEBLOCK_ORDER: u32 = 9;
/// Pages per pageblock.
pub const PAGEBLOCK_NR_PAGES: u64 = 1 << PAGEBLOCK_ORDER;
/// `MIGRATE_PCPTYPES`.
pub const MIGRATE_PCPTYPES: u64 = 3;
/// `SWAP_CLUSTER_MAX`.
pub const SWAP_CLUSTER_MAX: u64 = 32;
/// `MIN_PERCPU_PAGELIST_HIGH_FRACTION`.
pub const MIN_PERCPU_PAGELIST_HIGH_FRACTION: u64 = 8;

/// The four watermarks of a zone, in pages (without boost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watermarks {
    /// `WMARK_MIN`.
    pub min: u64,
    /// `WMARK_LOW`.
    pub low: u64,
    /// `WMARK_HIGH`.
    pub high: u64,
    /// `WMARK_PROMO`.
    pub promo: u64,
}

/// Integer square root (`int_sqrt`).
pub fn int_sqrt(x: u64) -> u64 {
    if x < 2 {
        return x;
    }
    let mut r = (x as f64).sqrt() as u64;
    while r * r > x {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= x {
        r += 1;
    }
    r
}

/// `mult_frac(x, n, d)`: `x * n / d` without overflowing the intermediate.
pub fn mult_frac(x: u64, n: u64, d: u64) -> u64 {
    (x / d) * n + ((x % d) * n) / d
}

/// `nr_free_buffer_pages()`: pages above the high watermark in zones up to Normal.
pub fn nr_free_buffer_pages(managed: &[u64; ZoneId::COUNT], high: &[u64; ZoneId::COUNT]) -> u64 {
    (0..=ZoneId::Normal.index())
        .map(|i| managed[i].saturating_sub(high[i]))
        .sum()
}

/// `calculate_min_free_kbytes()`: `clamp(int_sqrt(lowmem_kbytes * 16), 128, 262144)`.
pub fn default_min_free_kbytes(nr_free_buffer_pages: u64) -> u64 {
    int_sqrt(nr_free_buffer_pages * 4 * 16).clamp(128, 262_144)
}

/// `set_recommended_min_free_kbytes()` (THP enabled): the kB value khugepaged asks for.
pub fn thp_recommended_min_free_kbytes(
    populated_lowmem_zones: u64,
    nr_free_buffer_pages: u64,
) -> u64 {
    let mut rec = PAGEBLOCK_NR_PAGES * populated_lowmem_zones * 2;
    rec += PAGEBLOCK_NR_PAGES * populated_lowmem_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES;
    rec = rec.min(nr_free_buffer_pages / 20);
    rec << 2
}

/// `__setup_per_zone_wmarks()`: watermarks of every zone.
pub fn watermarks(
    min_free_kbytes: u64,
    watermark_scale_factor: u64,
    managed: &[u64; ZoneId::COUNT],
) -> [Watermarks; ZoneId::COUNT] {
    let pages_min = min_free_kbytes >> 2;
    let lowmem: u64 = ZoneId::ALL
        .iter()
        .filter(|z| **z != ZoneId::Movable)
        .map(|z| managed[z.index()])
        .sum();
    let mut out = [Watermarks::default(); ZoneId::COUNT];
    for z in ZoneId::ALL {
        let m = managed[z.index()];
        let tmp = (pages_min * m).checked_div(lowmem).unwrap_or(0);
        let min = if z == ZoneId::Movable {
            (m / 1024).clamp(SWAP_CLUSTER_MAX, 128)
        } else {
            tmp
        };
        let gap = (tmp >> 2).max(mult_frac(m, watermark_scale_factor, 10_000));
        out[z.index()] = Watermarks {
            min,
            low: min + gap,
            high: min + 2 * gap,
            promo: min + 3 * gap,
        };
    }
    out
}

/// `setup_per_zone_lowmem_reserve()`: `protection[i][j]` for every zone pair.
pub fn lowmem_reserve(
    ratio: &[u32; ZoneId::COUNT],
    managed: &[u64; ZoneId::COUNT],
) -> [[u64; ZoneId::COUNT]; ZoneId::COUNT] {
    let mut out = [[0u64; ZoneId::COUNT]; ZoneId::COUNT];
    for i in 0..ZoneId::COUNT - 1 {
        let r = ratio[i] as u64;
        let clear = r == 0 || managed[i] == 0;
        let mut upper = 0;
        for j in i + 1..ZoneId::COUNT {
            upper += managed[j];
            out[i][j] = if clear { 0 } else { upper / r };
        }
    }
    out
}

/// `calculate_totalreserve_pages()`.
pub fn totalreserve_pages(
    managed: &[u64; ZoneId::COUNT],
    high: &[u64; ZoneId::COUNT],
    reserve: &[[u64; ZoneId::COUNT]; ZoneId::COUNT],
) -> u64 {
    (0..ZoneId::COUNT)
        .map(|i| {
            let max = reserve[i][i..].iter().copied().max().unwrap_or(0) + high[i];
            max.min(managed[i])
        })
        .sum()
}

fn rounddown_pow_of_two(x: u64) -> u64 {
    if x == 0 {
        0
    } else {
        1 << (63 - x.leading_zeros())
    }
}

/// `zone_batchsize()` (current kernels: `min(managed >> 12, 256 KiB)`), already passed through
/// the `max(1, …)` of `zone_set_pageset_high_and_batch`.
pub fn zone_batchsize(managed: u64) -> u64 {
    let b = (managed >> 12).min(256 * 1024 / 4096);
    if b <= 1 {
        return 1;
    }
    (rounddown_pow_of_two(b + b / 2) - 1).max(1)
}

/// `zone_highsize()`: the pcp high limit per CPU for a fraction (0 = use the low watermark).
pub fn zone_highsize(low_wmark: u64, managed: u64, batch: u64, nr_cpus: u64, fraction: u64) -> u64 {
    let total = managed.checked_div(fraction).unwrap_or(low_wmark);
    (total / nr_cpus.max(1)).max(batch << 2)
}

/// The pcp `(batch, high_min, high_max)` of a zone.
pub fn pcp_limits(
    low_wmark: u64,
    managed: u64,
    nr_cpus: u64,
    percpu_pagelist_high_fraction: u64,
) -> (u64, u64, u64) {
    let batch = zone_batchsize(managed);
    if percpu_pagelist_high_fraction != 0 {
        let h = zone_highsize(
            low_wmark,
            managed,
            batch,
            nr_cpus,
            percpu_pagelist_high_fraction,
        );
        (batch, h, h)
    } else {
        (
            batch,
            zone_highsize(low_wmark, managed, batch, nr_cpus, 0),
            zone_highsize(
                low_wmark,
                managed,
                batch,
                nr_cpus,
                MIN_PERCPU_PAGELIST_HIGH_FRACTION,
            ),
        )
    }
}

fn fls(x: u64) -> u64 {
    64 - x.leading_zeros() as u64
}

/// `calculate_normal_threshold()`: the per-CPU vmstat drift threshold.
pub fn stat_threshold(managed: u64, nr_cpus: u64) -> u64 {
    let mem = managed >> (27 - 12);
    (2 * fls(nr_cpus) * (1 + fls(mem))).min(125)
}
