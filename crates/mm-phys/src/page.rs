//! The page descriptor (`struct page`).

use mm_sync::untracked::{AtomicI32, AtomicU64, Ordering};
use mm_types::Pfn;

bitflags::bitflags! {
    /// Page flags (`enum pageflags` plus the page types the simulator needs as flags).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct PageFlags: u32 {
        /// `PG_locked`.
        const LOCKED = 1 << 0;
        /// `PG_referenced`.
        const REFERENCED = 1 << 1;
        /// `PG_uptodate`.
        const UPTODATE = 1 << 2;
        /// `PG_dirty`.
        const DIRTY = 1 << 3;
        /// `PG_lru`: on an LRU list.
        const LRU = 1 << 4;
        /// `PG_active`.
        const ACTIVE = 1 << 5;
        /// `PG_workingset`.
        const WORKINGSET = 1 << 6;
        /// `PG_reserved`: never handed to the buddy allocator.
        const RESERVED = 1 << 7;
        /// `PG_private`.
        const PRIVATE = 1 << 8;
        /// `PG_writeback`.
        const WRITEBACK = 1 << 9;
        /// `PG_head`: first page of a compound page.
        const HEAD = 1 << 10;
        /// `PG_swapcache`.
        const SWAPCACHE = 1 << 11;
        /// `PG_swapbacked`.
        const SWAPBACKED = 1 << 12;
        /// `PG_reclaim`.
        const RECLAIM = 1 << 13;
        /// `PG_unevictable`.
        const UNEVICTABLE = 1 << 14;
        /// `PG_mlocked`.
        const MLOCKED = 1 << 15;
        /// `PageBuddy`: head of a free block on a buddy free list; `private` holds its order.
        const BUDDY = 1 << 16;
        /// On a per-CPU page list (`private` holds its order, as `page->private` in Linux).
        const PCP = 1 << 17;
        /// `PageSlab`.
        const SLAB = 1 << 18;
        /// `PageTable`: a page-table page.
        const PGTABLE = 1 << 19;
        /// Anonymous page (`PAGE_MAPPING_ANON`).
        const ANON = 1 << 20;
    }
}

/// The descriptor of one frame: 64 bytes, one cache line.
///
/// Fields are atomics so any CPU may read them; who may write which field is set by the owner's
/// protocol (the buddy allocator owns free frames' descriptors under the zone or pcp lock).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct Page {
    flags: AtomicU64,
    refcount: AtomicI32,
    mapcount: AtomicI32,
    pub(crate) lru_next: AtomicU64,
    pub(crate) lru_prev: AtomicU64,
    private: AtomicU64,
    mapping: AtomicU64,
    index: AtomicU64,
}

static_assertions::const_assert!(std::mem::size_of::<Page>() <= 64);

/// Marks the end of a [`crate::PageList`] chain.
pub(crate) const NIL: u64 = u64::MAX;

impl Page {
    /// Returns the flags.
    #[inline]
    pub fn flags(&self) -> PageFlags {
        PageFlags::from_bits_retain(self.flags.load(Ordering::Acquire) as u32)
    }
    /// Returns true if every flag in `f` is set.
    #[inline]
    pub fn test(&self, f: PageFlags) -> bool {
        self.flags().contains(f)
    }
    /// Sets the flags in `f` atomically (`SetPageX`).
    #[inline]
    pub fn set(&self, f: PageFlags) {
        self.flags.fetch_or(f.bits() as u64, Ordering::AcqRel);
    }
    /// Clears the flags in `f` atomically (`ClearPageX`).
    #[inline]
    pub fn clear(&self, f: PageFlags) {
        self.flags.fetch_and(!(f.bits() as u64), Ordering::AcqRel);
    }
    /// Replaces all flags with `f` (the owner alone may do this, e.g. on allocation).
    #[inline]
    pub fn set_flags(&self, f: PageFlags) {
        self.flags.store(f.bits() as u64, Ordering::Release);
    }
    /// Returns the reference count (`page_ref_count`).
    #[inline]
    pub fn refcount(&self) -> i32 {
        self.refcount.load(Ordering::Acquire)
    }
    /// Sets the reference count (`set_page_refcounted` on allocation).
    #[inline]
    pub fn set_refcount(&self, v: i32) {
        self.refcount.store(v, Ordering::Release);
    }
    /// Takes a reference (`get_page`), returning the new count.
    #[inline]
    pub fn get(&self) -> i32 {
        self.refcount.fetch_add(1, Ordering::AcqRel) + 1
    }
    /// Takes a reference unless the count is zero (`get_page_unless_zero`).
    pub fn get_unless_zero(&self) -> bool {
        self.refcount
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c > 0).then_some(c + 1)
            })
            .is_ok()
    }
    /// Drops a reference (`put_page_testzero`), returning true when it reached zero.
    #[inline]
    pub fn put_testzero(&self) -> bool {
        self.refcount.fetch_sub(1, Ordering::AcqRel) == 1
    }
    /// Returns the number of page-table mappings (`page_mapcount`).
    #[inline]
    pub fn mapcount(&self) -> i32 {
        self.mapcount.load(Ordering::Acquire)
    }
    /// Adds `delta` mappings, returning the new count.
    #[inline]
    pub fn add_mapcount(&self, delta: i32) -> i32 {
        self.mapcount.fetch_add(delta, Ordering::AcqRel) + delta
    }
    /// Sets the mapcount.
    #[inline]
    pub fn set_mapcount(&self, v: i32) {
        self.mapcount.store(v, Ordering::Release);
    }
    /// Returns `page->private`.
    #[inline]
    pub fn private(&self) -> u64 {
        self.private.load(Ordering::Acquire)
    }
    /// Sets `page->private`.
    #[inline]
    pub fn set_private(&self, v: u64) {
        self.private.store(v, Ordering::Release);
    }
    /// Returns `page->mapping` (an owner-defined handle; 0 = none).
    #[inline]
    pub fn mapping(&self) -> u64 {
        self.mapping.load(Ordering::Acquire)
    }
    /// Sets `page->mapping`.
    #[inline]
    pub fn set_mapping(&self, v: u64) {
        self.mapping.store(v, Ordering::Release);
    }
    /// Returns `page->index` (offset in the mapping, or virtual page for anon).
    #[inline]
    pub fn index(&self) -> u64 {
        self.index.load(Ordering::Acquire)
    }
    /// Sets `page->index`.
    #[inline]
    pub fn set_index(&self, v: u64) {
        self.index.store(v, Ordering::Release);
    }
    /// Returns the next frame on this page's list, if any.
    #[inline]
    pub fn lru_next(&self) -> Option<Pfn> {
        let n = self.lru_next.load(Ordering::Relaxed);
        (n != NIL).then_some(Pfn(n))
    }
    /// Resets every field to its boot value (free, unreferenced, unlinked).
    pub fn reset(&self) {
        self.flags.store(0, Ordering::Relaxed);
        self.refcount.store(0, Ordering::Relaxed);
        self.mapcount.store(0, Ordering::Relaxed);
        self.lru_next.store(0, Ordering::Relaxed);
        self.lru_prev.store(0, Ordering::Relaxed);
        self.private.store(0, Ordering::Relaxed);
        self.mapping.store(0, Ordering::Relaxed);
        self.index.store(0, Ordering::Release);
    }
}
