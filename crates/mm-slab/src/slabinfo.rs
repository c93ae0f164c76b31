//! `/proc/slabinfo` version 2.1 (`print_slabinfo_header`, `cache_show` in
//! `mm/slab_common.c`, values from SLUB's `get_slabinfo`).

use crate::cache::SlabInfoRow;
use crate::SlabAllocator;
use std::fmt::Write;

/// The two header lines, newline included.
pub const SLABINFO_HEADER: &str = "slabinfo - version: 2.1\n\
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n";

/// Formats one cache line exactly as `cache_show` does (SLUB's tunables and `sharedavail` are
/// always 0).
pub fn format_slabinfo_row(out: &mut String, r: &SlabInfoRow) {
    let _ = writeln!(
        out,
        "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
        r.name,
        r.active_objs,
        r.num_objs,
        r.objsize,
        r.objperslab,
        r.pagesperslab,
        0,
        0,
        0,
        r.active_slabs,
        r.num_slabs,
        0
    );
}

/// Returns `/proc/slabinfo`: the 2.1 header, then one line per live cache, newest first (the
/// order of the kernel's `slab_caches` list).
pub fn render_slabinfo(slab: &SlabAllocator) -> String {
    let mut out = String::from(SLABINFO_HEADER);
    for r in slab.slabinfo_rows() {
        format_slabinfo_row(&mut out, &r);
    }
    out
}
