//! The VMA (`struct vm_area_struct`) and the ordered tree of an address space's VMAs.
//!
//! The tree is a `BTreeMap` keyed by `vm_start`, with the maple tree's semantics: ordered,
//! non-overlapping, O(log n) lookup of the VMA containing an address or the first one above
//! it (`find_vma`).

use crate::flags::VmFlags;
use crate::hooks::VmFileRef;
use crate::kobj::VmaObjs;
use crate::rmap::RmapList;
use mm_sync::sync::Arc;
use mm_types::PAGE_SHIFT;
use std::collections::BTreeMap;
use std::fmt;

/// One mapping of an address space.
pub(crate) struct Vma {
    /// Unique id (rmap links name VMAs by it); a changed VMA gets a new one.
    pub(crate) id: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) flags: VmFlags,
    /// `vm_pgoff`: file page of `start`, or `start >> PAGE_SHIFT` at creation for anon.
    pub(crate) pgoff: u64,
    pub(crate) file: Option<VmFileRef>,
    /// `vma->anon_vma`: where new anonymous pages of this VMA go; set at the first one.
    pub(crate) anon_vma: Option<Arc<RmapList>>,
    /// The other anon_vmas of the `anon_vma_chain` (inherited at fork), oldest first.
    pub(crate) anon_parents: Vec<Arc<RmapList>>,
    /// Its `vm_area_struct` and `anon_vma_chain`s in simulated RAM (when the layer has a
    /// slab). A VMA in a tree has them; a new VMA without them takes those of the VMA it
    /// replaces (see `AddressSpace::vma_replace`). Freed by `AddressSpace::close_vma`.
    pub(crate) objs: Option<VmaObjs>,
}

impl Drop for Vma {
    fn drop(&mut self) {
        debug_assert!(
            self.objs.is_none() || mm_sync::thread::panicking(),
            "{self:?} dropped with its slab objects: AddressSpace::close_vma frees them"
        );
    }
}

impl fmt::Debug for Vma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Vma#{} {:#x}-{:#x} {:?} pgoff {:#x}",
            self.id, self.start, self.end, self.flags, self.pgoff
        )?;
        if let Some(file) = &self.file {
            write!(f, " file {}", file.path())?;
        }
        if let Some(a) = &self.anon_vma {
            write!(f, " anon_vma {}", a.id)?;
        }
        if let Some(o) = &self.objs {
            write!(f, " {o:?}")?;
        }
        Ok(())
    }
}

impl Vma {
    /// Returns the number of pages.
    #[inline]
    pub(crate) fn pages(&self) -> u64 {
        (self.end - self.start) >> PAGE_SHIFT
    }

    /// Returns the linear page index of `addr` (`linear_page_index`).
    #[inline]
    pub(crate) fn linear_index(&self, addr: u64) -> u64 {
        self.pgoff + ((addr - self.start) >> PAGE_SHIFT)
    }

    /// Returns every anon_vma the VMA is linked into (the `anon_vma_chain`).
    pub(crate) fn anon_chain(&self) -> impl Iterator<Item = &Arc<RmapList>> {
        self.anon_parents.iter().chain(self.anon_vma.iter())
    }

    /// Returns true if `self` and `other` are linked into the same anon_vmas, in the same
    /// order.
    pub(crate) fn same_chain(&self, other: &Vma) -> bool {
        self.anon_chain().count() == other.anon_chain().count()
            && self
                .anon_chain()
                .zip(other.anon_chain())
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// Returns true if the VMA has (or may have) anonymous pages.
    pub(crate) fn has_anon(&self) -> bool {
        self.anon_vma.is_some() || !self.anon_parents.is_empty()
    }

    /// Returns a copy covering `start..end` of this VMA, with id `id` and `vm_pgoff`
    /// adjusted; a file reference is opened for it (`vm_area_dup`). The copy has no slab
    /// objects: it gets fresh ones, or takes those of the VMA it replaces.
    pub(crate) fn derive(&self, id: u64, start: u64, end: u64) -> Vma {
        debug_assert!(start < end);
        if let Some(f) = &self.file {
            f.open();
        }
        Vma {
            id,
            start,
            end,
            flags: self.flags,
            pgoff: if start >= self.start {
                self.pgoff + ((start - self.start) >> PAGE_SHIFT)
            } else {
                self.pgoff - ((self.start - start) >> PAGE_SHIFT)
            },
            file: self.file.clone(),
            anon_vma: self.anon_vma.clone(),
            anon_parents: self.anon_parents.clone(),
            objs: None,
        }
    }

    /// Returns true if `self` and `next` (which must follow it) can be one VMA
    /// (`is_mergeable_vma` and `is_mergeable_anon_vma`, `can_vma_merge_after`).
    pub(crate) fn can_merge_with(&self, next: &Vma) -> bool {
        let same_file = match (&self.file, &next.file) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same(b),
            _ => false,
        };
        let anon_ok = match (&self.anon_vma, &next.anon_vma) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => true,
        };
        let parents_ok = self.anon_parents.len() == next.anon_parents.len()
            && self
                .anon_parents
                .iter()
                .zip(&next.anon_parents)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        self.end == next.start
            && (self.flags - VmFlags::SOFTDIRTY) == (next.flags - VmFlags::SOFTDIRTY)
            && !self.flags.intersects(VmFlags::SPECIAL)
            && same_file
            && self.pgoff + self.pages() == next.pgoff
            && anon_ok
            && parents_ok
    }
}

/// An address space's VMAs, ordered by start.
#[derive(Default)]
pub(crate) struct VmaTree {
    map: BTreeMap<u64, Vma>,
}

impl fmt::Debug for VmaTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.map.values()).finish()
    }
}

impl VmaTree {
    /// Returns the number of VMAs (`map_count`).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Returns the first VMA that ends above `addr` (`find_vma`); it may start above `addr`.
    #[inline]
    pub(crate) fn find(&self, addr: u64) -> Option<&Vma> {
        if let Some((_, v)) = self.map.range(..=addr).next_back() {
            if v.end > addr {
                return Some(v);
            }
        }
        self.map
            .range(addr.saturating_add(1)..)
            .next()
            .map(|(_, v)| v)
    }

    /// Returns the VMA containing `addr` (`vma_lookup`).
    #[inline]
    pub(crate) fn lookup(&self, addr: u64) -> Option<&Vma> {
        self.map
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.end > addr)
    }

    /// Returns the last VMA that ends at or below `addr`.
    pub(crate) fn prev(&self, addr: u64) -> Option<&Vma> {
        self.map
            .range(..addr)
            .rev()
            .map(|(_, v)| v)
            .find(|v| v.end <= addr)
    }

    /// Returns the first VMA that starts at or above `addr`.
    pub(crate) fn next_from(&self, addr: u64) -> Option<&Vma> {
        self.map.range(addr..).next().map(|(_, v)| v)
    }

    /// Returns the VMAs that intersect `start..end`, in order.
    pub(crate) fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Vma> {
        let first = self.find(start).map_or(end, |v| v.start.min(end));
        self.map
            .range(first..end)
            .map(|(_, v)| v)
            .filter(move |v| v.end > start)
    }

    /// Returns true if some VMA intersects `start..end`.
    pub(crate) fn intersects(&self, start: u64, end: u64) -> bool {
        self.find(start).is_some_and(|v| v.start < end)
    }

    /// Returns every VMA in order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Vma> {
        self.map.values()
    }

    /// Returns the VMAs that start below `addr`, highest first.
    pub(crate) fn iter_rev_below(&self, addr: u64) -> impl Iterator<Item = &Vma> {
        self.map.range(..addr).rev().map(|(_, v)| v)
    }

    pub(crate) fn get_mut(&mut self, start: u64) -> Option<&mut Vma> {
        self.map.get_mut(&start)
    }

    pub(crate) fn insert(&mut self, vma: Vma) {
        let prev = self.map.insert(vma.start, vma);
        debug_assert!(prev.is_none(), "two VMAs start at one address");
    }

    pub(crate) fn remove(&mut self, start: u64) -> Option<Vma> {
        self.map.remove(&start)
    }

    /// Takes every VMA out.
    pub(crate) fn take_all(&mut self) -> Vec<Vma> {
        std::mem::take(&mut self.map).into_values().collect()
    }

    /// Checks ordering and non-overlap.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut last_end = 0;
        for (k, v) in &self.map {
            if *k != v.start {
                return Err(format!("{v:?} is keyed at {k:#x}"));
            }
            if v.start >= v.end {
                return Err(format!("{v:?} is empty"));
            }
            if v.start & 0xfff != 0 || v.end & 0xfff != 0 {
                return Err(format!("{v:?} is not page aligned"));
            }
            if v.start < last_end {
                return Err(format!("{v:?} overlaps the VMA before it"));
            }
            last_end = v.end;
        }
        Ok(())
    }
}
