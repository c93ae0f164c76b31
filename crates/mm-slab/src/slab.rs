//! The slab descriptor (`struct slab`, overlaid on the head page's `struct page`) and the
//! encodings of free pointers.
//!
//! A slab is one block of `1 << order` frames from the buddy allocator. Its objects sit at
//! `base + i * size`; a free object holds the physical address of the next free object at
//! `s->offset` inside it, in simulated RAM, and the last one holds [`FREE_END`].
//!
//! Descriptor fields (every page of the slab): flags `SLAB` (and `HEAD` on the head page of a
//! multi-page slab), `mapping` = cache id + 1. Tail pages: `private` = [`TAIL`] | the head pfn
//! (`compound_head`). Head page: `index` = the slab's own freelist, `private` = [`SlabMeta`]
//! (which never has the `TAIL` bit). The head page's LRU links thread it on its node's partial
//! or full list. `mapcount` and `refcount` keep the values the buddy allocator gave them. After the slab is created,
//! `index`, `private` and the links change only under the node's `list_lock`.

use mm_phys::{PageFlags, PhysMem};
use mm_types::{Pfn, PhysAddr};

/// The free pointer of the last free object (`NULL`).
pub(crate) const FREE_END: u64 = u64::MAX;

/// Marks a tail page's `private` as holding its head pfn.
pub(crate) const TAIL: u64 = 1 << 63;

/// `page->mapping` of the head page of a large kmalloc block (`kmalloc_large`).
pub(crate) const LARGE_KMALLOC: u64 = u64::MAX - 1;

/// Which node list a slab is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnList {
    /// On no list: a CPU slab (frozen) or in transit.
    None = 0,
    /// On the node's partial list.
    Partial = 1,
    /// On the node's full list.
    Full = 2,
}

/// The counters of a slab (`slab->inuse`, `objects`, `frozen`), packed in the head page's
/// `private`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlabMeta {
    /// Objects not on the slab's own freelist. While the slab is frozen, the objects on its
    /// CPU's freelist count as in use, as in SLUB.
    pub(crate) inuse: u32,
    /// Objects in the slab.
    pub(crate) objects: u32,
    /// The slab is some CPU's active slab.
    pub(crate) frozen: bool,
    /// The node list it is on.
    pub(crate) list: OnList,
    /// The slab's order.
    pub(crate) order: u32,
}

impl SlabMeta {
    fn pack(self) -> u64 {
        self.inuse as u64
            | (self.objects as u64) << 16
            | (self.frozen as u64) << 32
            | (self.list as u64) << 33
            | (self.order as u64) << 36
    }

    fn unpack(v: u64) -> SlabMeta {
        SlabMeta {
            inuse: (v & 0xffff) as u32,
            objects: ((v >> 16) & 0xffff) as u32,
            frozen: (v >> 32) & 1 == 1,
            list: match (v >> 33) & 3 {
                1 => OnList::Partial,
                2 => OnList::Full,
                _ => OnList::None,
            },
            order: ((v >> 36) & 0xf) as u32,
        }
    }
}

/// Returns the head frame of the slab holding `obj` (`virt_to_slab`).
#[inline]
pub(crate) fn slab_head(mem: &PhysMem, obj: u64) -> Pfn {
    let pfn = PhysAddr(obj).pfn();
    let p = mem.page(pfn).private();
    if p & TAIL != 0 {
        Pfn(p & !TAIL)
    } else {
        pfn
    }
}

/// Reads a slab's counters.
#[inline]
pub(crate) fn meta(mem: &PhysMem, head: Pfn) -> SlabMeta {
    SlabMeta::unpack(mem.page(head).private())
}

/// Writes a slab's counters.
#[inline]
pub(crate) fn set_meta(mem: &PhysMem, head: Pfn, m: SlabMeta) {
    mem.page(head).set_private(m.pack());
}

/// Reads a slab's own freelist head (`slab->freelist`).
#[inline]
pub(crate) fn slab_freelist(mem: &PhysMem, head: Pfn) -> u64 {
    mem.page(head).index()
}

/// Writes a slab's own freelist head.
#[inline]
pub(crate) fn set_slab_freelist(mem: &PhysMem, head: Pfn, v: u64) {
    mem.page(head).set_index(v);
}

/// Marks the pages of a new slab (`allocate_slab`: `__folio_set_slab`, `slab->slab_cache`).
pub(crate) fn init_slab_pages(mem: &PhysMem, head: Pfn, order: u32, cache_id: u32) {
    for i in 0..1u64 << order {
        let p = mem.page(head.add(i));
        let f = if i == 0 && order > 0 {
            PageFlags::SLAB | PageFlags::HEAD
        } else {
            PageFlags::SLAB
        };
        p.set_flags(f);
        p.set_mapping(cache_id as u64 + 1);
        p.set_private(if i == 0 { 0 } else { TAIL | head.0 });
        p.set_index(0);
    }
}

/// Clears the slab marks before the block goes back to the buddy allocator
/// (`__folio_clear_slab`, `page->mapping = NULL`).
pub(crate) fn clear_slab_pages(mem: &PhysMem, head: Pfn, order: u32) {
    for i in 0..1u64 << order {
        let p = mem.page(head.add(i));
        p.set_flags(PageFlags::empty());
        p.set_mapping(0);
        p.set_private(0);
        p.set_index(0);
    }
}

#[cfg(all(test, not(mm_loom)))]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_every_field() {
        let m = SlabMeta {
            inuse: 511,
            objects: 512,
            frozen: true,
            list: OnList::Full,
            order: 3,
        };
        assert_eq!(SlabMeta::unpack(m.pack()), m);
        let m2 = SlabMeta {
            inuse: 0,
            objects: 32767,
            frozen: false,
            list: OnList::Partial,
            order: 10,
        };
        assert_eq!(SlabMeta::unpack(m2.pack()), m2);
    }
}
