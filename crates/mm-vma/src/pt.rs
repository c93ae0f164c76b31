//! Read-only page-table walks: the current PTE of an address, and every non-empty PTE of a
//! range. They read the tables in simulated RAM the way the hardware walker does.
//!
//! `mm-mmu` offers no read-only iteration, so fork, smaps and the fault handler's `pte_same`
//! checks walk the tables themselves. Callers hold the address space's page-table lock
//! ([`crate::MmCore`]), which every edit of this layer holds, so the entries they see change
//! only by the walker setting accessed/dirty bits; and they hold the mmap lock, without which
//! no table is freed.

use mm_mmu::{Pte, PTRS_PER_TABLE};
use mm_phys::PhysMem;
use mm_types::{Pfn, PAGE_SHIFT};

/// Address bits one table level translates.
const LEVEL_BITS: u32 = 9;

#[inline]
fn index(va: u64, level: u32) -> usize {
    ((va >> (PAGE_SHIFT + LEVEL_BITS * (level - 1))) & (PTRS_PER_TABLE as u64 - 1)) as usize
}

#[inline]
fn span(level: u32) -> u64 {
    1 << (PAGE_SHIFT + LEVEL_BITS * (level - 1))
}

/// Returns the PTE that translates `va` (`Pte::NONE` where a level is missing).
#[inline]
pub(crate) fn read_pte(mem: &PhysMem, root: Pfn, levels: u32, va: u64) -> Pte {
    let mut table = root;
    for level in (1..=levels).rev() {
        let e = Pte(mem
            .frame(table)
            .expect("page tables live in RAM")
            .read_u64(index(va, level) * 8));
        if level == 1 {
            return e;
        }
        if !e.is_present() {
            return Pte::NONE;
        }
        table = e.pfn();
    }
    unreachable!("a walk ends at level 1")
}

/// Calls `f(va, pte)` for every non-empty PTE in `start..end`, in address order.
pub(crate) fn for_each_pte(
    mem: &PhysMem,
    root: Pfn,
    levels: u32,
    start: u64,
    end: u64,
    f: &mut dyn FnMut(u64, Pte),
) {
    visit(mem, root, levels, 0, start, end, f);
}

fn visit(
    mem: &PhysMem,
    table: Pfn,
    level: u32,
    base: u64,
    start: u64,
    end: u64,
    f: &mut dyn FnMut(u64, Pte),
) {
    let s = span(level);
    let (lo, hi) = (start.max(base), end.min(base + s * PTRS_PER_TABLE as u64));
    if lo >= hi {
        return;
    }
    let frame = mem.frame(table).expect("page tables live in RAM");
    for idx in ((lo - base) / s) as usize..=((hi - 1 - base) / s) as usize {
        let e = Pte(frame.read_u64(idx * 8));
        let ebase = base + idx as u64 * s;
        if level == 1 {
            if !e.is_none() {
                f(ebase, e);
            }
        } else if e.is_present() {
            visit(mem, e.pfn(), level - 1, ebase, start, end, f);
        }
    }
}
