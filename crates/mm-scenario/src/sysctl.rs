//! The `[sysctl]` table: `vm.*` sysctls, each checked against the range its kernel handler
//! accepts; absent keys keep the kernel's defaults ([`Sysctl::default`]).

use mm_sim::Sysctl;
use mm_types::ZoneId;
use toml::de::DeValue;

use crate::doc::{self, Table};
use crate::error::{Bounds, Problem, ScenarioError};

/// The kernel stores these sysctls in an `int`.
const INT_MAX: i64 = i32::MAX as i64;
/// `vm.min_free_kbytes`, `vm.overcommit_ratio`, `vm.watermark_boost_factor` and each
/// `vm.lowmem_reserve_ratio` entry: `0..=INT_MAX`.
const NON_NEGATIVE: Bounds = Bounds::Range(0, INT_MAX);
/// `vm.watermark_scale_factor`: `1..=3000`.
const WATERMARK_SCALE_FACTOR: Bounds = Bounds::Range(1, 3000);
/// `vm.percpu_pagelist_high_fraction`: 0 (automatic) or at least 8.
const PERCPU_PAGELIST_HIGH_FRACTION: Bounds = Bounds::ZeroOr(8, INT_MAX);
/// `vm.swappiness`: `0..=200`.
const SWAPPINESS: Bounds = Bounds::Range(0, 200);
/// `vm.overcommit_memory`: guess (0), always (1) or never (2).
const OVERCOMMIT_MEMORY: Bounds = Bounds::Range(0, 2);

/// Every `vm.*` key the format accepts.
const VM_KEYS: &[&str] = &[
    "min_free_kbytes",
    "watermark_scale_factor",
    "lowmem_reserve_ratio",
    "percpu_pagelist_high_fraction",
    "swappiness",
    "overcommit_memory",
    "overcommit_ratio",
    "watermark_boost_factor",
    "dirty_writeback_centisecs",
];

/// Reads `[sysctl]`; `None` (no table) gives the defaults.
pub(crate) fn read(sysctl: Option<&Table<'_, '_>>) -> Result<Sysctl, ScenarioError> {
    let mut out = Sysctl::default();
    let Some(sysctl) = sysctl else {
        return Ok(out);
    };
    sysctl.deny_unknown(&["vm"])?;
    let Some(vm) = sysctl.table("vm")? else {
        return Ok(out);
    };
    vm.deny_unknown(VM_KEYS)?;

    // Each value is within its bounds, all of which fit in a u32.
    let u32_of = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    if let Some(v) = vm.int("min_free_kbytes", NON_NEGATIVE)? {
        out.min_free_kbytes = Some(v.unsigned_abs());
    }
    if let Some(v) = vm.int("watermark_scale_factor", WATERMARK_SCALE_FACTOR)? {
        out.watermark_scale_factor = u32_of(v);
    }
    if let Some(ratios) = read_lowmem_reserve_ratio(&vm)? {
        out.lowmem_reserve_ratio = ratios.map(u32_of);
    }
    if let Some(v) = vm.int(
        "percpu_pagelist_high_fraction",
        PERCPU_PAGELIST_HIGH_FRACTION,
    )? {
        out.percpu_pagelist_high_fraction = u32_of(v);
    }
    if let Some(v) = vm.int("swappiness", SWAPPINESS)? {
        out.swappiness = u32_of(v);
    }
    if let Some(v) = vm.int("overcommit_memory", OVERCOMMIT_MEMORY)? {
        out.overcommit_memory = u32_of(v);
    }
    if let Some(v) = vm.int("overcommit_ratio", NON_NEGATIVE)? {
        out.overcommit_ratio = u32_of(v);
    }
    if let Some(v) = vm.int("watermark_boost_factor", NON_NEGATIVE)? {
        out.watermark_boost_factor = u32_of(v);
    }
    if let Some(v) = vm.int("dirty_writeback_centisecs", NON_NEGATIVE)? {
        out.dirty_writeback_centisecs = u32_of(v);
    }
    Ok(out)
}

/// Reads `vm.lowmem_reserve_ratio`: exactly one non-negative entry per zone type.
fn read_lowmem_reserve_ratio(
    vm: &Table<'_, '_>,
) -> Result<Option<[i64; ZoneId::COUNT]>, ScenarioError> {
    const KEY: &str = "lowmem_reserve_ratio";
    let Some(node) = vm.get(KEY) else {
        return Ok(None);
    };
    let DeValue::Array(items) = node.get_ref() else {
        return Err(vm.wrong_type(KEY, node, "an array of integers"));
    };
    if items.len() != ZoneId::COUNT {
        return Err(vm.doc.error(
            node.span(),
            Problem::LowmemReserveLength { found: items.len() },
        ));
    }
    let mut out = [0; ZoneId::COUNT];
    for (i, (slot, item)) in out.iter_mut().zip(items.iter()).enumerate() {
        let key = format!("{}[{i}]", vm.key_path(KEY));
        *slot = doc::int_in(vm.doc, &key, item, NON_NEGATIVE)?;
    }
    Ok(Some(out))
}
