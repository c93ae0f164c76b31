//! The owned-frame handle.

use mm_types::{Order, Pfn};

/// An allocated block of `1 << order` contiguous frames, owned by whoever holds this value.
///
/// It is move-only: it cannot be cloned or copied, so the same allocation cannot be freed twice
/// through safe use. Give it back with [`crate::Buddy::free`]. A layer that must store the frame
/// number elsewhere (a PTE, a slab descriptor) takes it apart with [`Frame::into_raw`] and puts
/// it back together with [`Frame::from_raw`] when it frees.
#[must_use = "a frame that is dropped is leaked; free it with Buddy::free"]
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pfn: Pfn,
    order: Order,
}

static_assertions::assert_not_impl_any!(Frame: Clone, Copy);

impl Frame {
    pub(crate) fn new(pfn: Pfn, order: Order) -> Frame {
        Frame { pfn, order }
    }
    /// Returns the first frame of the block.
    #[inline]
    pub fn pfn(&self) -> Pfn {
        self.pfn
    }
    /// Returns the block's order.
    #[inline]
    pub fn order(&self) -> Order {
        self.order
    }
    /// Returns the number of pages in the block.
    #[inline]
    pub fn nr_pages(&self) -> u64 {
        self.order.pages()
    }
    /// Takes the handle apart; the caller now owns the block by its frame number.
    pub fn into_raw(self) -> (Pfn, Order) {
        (self.pfn, self.order)
    }
    /// Rebuilds a handle from [`Frame::into_raw`] parts. The caller must own the block; the
    /// allocator panics on a double free, because that is a simulator bug.
    pub fn from_raw(pfn: Pfn, order: Order) -> Frame {
        Frame { pfn, order }
    }
}
