//! Intrusive frame lists threaded through [`Page`](crate::Page) LRU links.

use crate::mem::no_such_page;
use crate::page::NIL;
use crate::{Page, PhysMem};
use mm_sync::untracked::Ordering::Relaxed;
use mm_types::Pfn;

/// Returns the descriptor of `pfn` from [`PhysMem::pages`] (one bounds check against a length
/// the caller already holds in a register).
#[inline(always)]
fn page(pages: &[Page], pfn: u64) -> &Page {
    match pages.get(pfn as usize) {
        Some(p) => p,
        None => no_such_page(Pfn(pfn)),
    }
}

/// A doubly-linked list of frames (`struct list_head` of pages): O(1) push, pop and remove.
///
/// The list stores only its ends and length; the links live in the frames' descriptors. A
/// frame is on at most one list at a time. The caller holds whatever lock guards the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageList {
    head: u64,
    tail: u64,
    len: u64,
}

impl Default for PageList {
    fn default() -> Self {
        Self::new()
    }
}

impl PageList {
    /// Creates an empty list.
    pub const fn new() -> Self {
        PageList {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
    /// Returns the number of frames on the list.
    #[inline]
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Returns true if the list is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Returns the first frame.
    #[inline]
    pub fn front(&self) -> Option<Pfn> {
        (self.head != NIL).then_some(Pfn(self.head))
    }
    /// Returns the last frame.
    #[inline]
    pub fn back(&self) -> Option<Pfn> {
        (self.tail != NIL).then_some(Pfn(self.tail))
    }

    /// Adds `pfn` at the head (`list_add`).
    #[inline(always)]
    pub fn push_front(&mut self, mem: &PhysMem, pfn: Pfn) {
        let pages = mem.pages();
        let p = page(pages, pfn.0);
        p.lru_prev.store(NIL, Relaxed);
        p.lru_next.store(self.head, Relaxed);
        if self.head != NIL {
            page(pages, self.head).lru_prev.store(pfn.0, Relaxed);
        } else {
            self.tail = pfn.0;
        }
        self.head = pfn.0;
        self.len += 1;
    }

    /// Adds `pfn` at the tail (`list_add_tail`).
    #[inline]
    pub fn push_back(&mut self, mem: &PhysMem, pfn: Pfn) {
        let pages = mem.pages();
        let p = page(pages, pfn.0);
        p.lru_next.store(NIL, Relaxed);
        p.lru_prev.store(self.tail, Relaxed);
        if self.tail != NIL {
            page(pages, self.tail).lru_next.store(pfn.0, Relaxed);
        } else {
            self.head = pfn.0;
        }
        self.tail = pfn.0;
        self.len += 1;
    }

    /// Removes and returns the first frame.
    #[inline(always)]
    pub fn pop_front(&mut self, mem: &PhysMem) -> Option<Pfn> {
        let pfn = self.front()?;
        self.remove(mem, pfn);
        Some(pfn)
    }

    /// Removes and returns the last frame.
    #[inline]
    pub fn pop_back(&mut self, mem: &PhysMem) -> Option<Pfn> {
        let pfn = self.back()?;
        self.remove(mem, pfn);
        Some(pfn)
    }

    /// Unlinks `pfn`, which must be on this list (`list_del`).
    #[inline(always)]
    pub fn remove(&mut self, mem: &PhysMem, pfn: Pfn) {
        let pages = mem.pages();
        let p = page(pages, pfn.0);
        let next = p.lru_next.load(Relaxed);
        let prev = p.lru_prev.load(Relaxed);
        if prev != NIL {
            page(pages, prev).lru_next.store(next, Relaxed);
        } else {
            debug_assert_eq!(self.head, pfn.0, "{pfn:?} is not on this list");
            self.head = next;
        }
        if next != NIL {
            page(pages, next).lru_prev.store(prev, Relaxed);
        } else {
            debug_assert_eq!(self.tail, pfn.0, "{pfn:?} is not on this list");
            self.tail = prev;
        }
        p.lru_next.store(NIL, Relaxed);
        p.lru_prev.store(NIL, Relaxed);
        self.len -= 1;
    }

    /// Moves every frame of `other` to the head of this list, leaving `other` empty.
    pub fn splice_front(&mut self, mem: &PhysMem, other: &mut PageList) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            *self = *other;
        } else {
            mem.page(Pfn(other.tail)).lru_next.store(self.head, Relaxed);
            mem.page(Pfn(self.head)).lru_prev.store(other.tail, Relaxed);
            self.head = other.head;
            self.len += other.len;
        }
        *other = PageList::new();
    }

    /// Iterates the frames from head to tail. The list must not change meanwhile.
    pub fn iter<'a>(&self, mem: &'a PhysMem) -> impl Iterator<Item = Pfn> + 'a {
        let mut cur = self.head;
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let pfn = Pfn(cur);
            cur = mem.page(pfn).lru_next.load(Relaxed);
            Some(pfn)
        })
    }
}
