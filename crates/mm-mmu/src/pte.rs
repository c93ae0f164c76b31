//! The x86-64 page-table entry (`arch/x86/include/asm/pgtable_types.h`) and the swap-entry
//! encoding of a non-present PTE (`arch/x86/include/asm/pgtable_64.h`).

use mm_types::{Pfn, SwapEntry, PAGE_SHIFT};
use std::fmt;

/// Entries per table at every level (`PTRS_PER_PTE` and friends).
pub const PTRS_PER_TABLE: usize = 512;
/// Address bits one table level translates.
pub(crate) const LEVEL_BITS: u32 = 9;

bitflags::bitflags! {
    /// The non-address bits of an entry, in x86 bit positions.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct PteFlags: u64 {
        /// Bit 0, `_PAGE_PRESENT`.
        const PRESENT = 1 << 0;
        /// Bit 1, `_PAGE_RW`: writable.
        const RW = 1 << 1;
        /// Bit 2, `_PAGE_USER`: reachable from user mode.
        const USER = 1 << 2;
        /// Bit 3, `_PAGE_PWT`.
        const PWT = 1 << 3;
        /// Bit 4, `_PAGE_PCD`.
        const PCD = 1 << 4;
        /// Bit 5, `_PAGE_ACCESSED`: set by the walker on any access.
        const ACCESSED = 1 << 5;
        /// Bit 6, `_PAGE_DIRTY`: set by the walker on a write.
        const DIRTY = 1 << 6;
        /// Bit 7, `_PAGE_PAT` in a 4 KiB PTE, `_PAGE_PSE` in a PMD/PUD.
        const PAT = 1 << 7;
        /// Bit 8, `_PAGE_GLOBAL`; in a non-present entry it is `_PAGE_PROTNONE`.
        const GLOBAL = 1 << 8;
        /// Bit 9, `_PAGE_SPECIAL` (software).
        const SPECIAL = 1 << 9;
        /// Bit 10, `_PAGE_UFFD_WP` (software).
        const UFFD_WP = 1 << 10;
        /// Bit 11, `_PAGE_SOFT_DIRTY` (software).
        const SOFT_DIRTY = 1 << 11;
        /// Bit 63, `_PAGE_NX`: no instruction fetch.
        const NX = 1 << 63;
    }
}

impl PteFlags {
    /// `_PAGE_PROTNONE`: the global bit of a non-present entry marks `PROT_NONE`.
    pub const PROTNONE: PteFlags = PteFlags::GLOBAL;
    /// `_PAGE_TABLE`: what an upper-level entry pointing at a user table carries.
    pub const TABLE: PteFlags = PteFlags::PRESENT
        .union(PteFlags::RW)
        .union(PteFlags::USER)
        .union(PteFlags::ACCESSED)
        .union(PteFlags::DIRTY);
}

/// Bits 12..51: the frame number of a present entry (`PTE_PFN_MASK`).
pub const PTE_PFN_MASK: u64 = ((1 << 52) - 1) & !((1 << PAGE_SHIFT) - 1);

const SWP_TYPE_BITS: u32 = 5;
/// `SWP_OFFSET_FIRST_BIT` = `_PAGE_BIT_PROTNONE + 1`.
const SWP_OFFSET_FIRST_BIT: u32 = 9;
/// `SWP_OFFSET_SHIFT`.
const SWP_OFFSET_SHIFT: u32 = SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS;
/// Largest swap offset a PTE can hold (50 bits, bits 9..58).
pub const MAX_SWAP_OFFSET: u64 = (1 << (64 - SWP_OFFSET_SHIFT)) - 1;
/// Number of swap types a PTE can hold (`1 << MAX_SWAPFILES_SHIFT`).
pub const MAX_SWAP_TYPES: u8 = 1 << SWP_TYPE_BITS;

bitflags::bitflags! {
    /// Protection of a mapping, as `mmap`'s `prot` plus a supervisor-only marker.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct Prot: u8 {
        /// `PROT_READ`.
        const READ = 1 << 0;
        /// `PROT_WRITE` (x86 cannot map write-only: it implies read).
        const WRITE = 1 << 1;
        /// `PROT_EXEC`.
        const EXEC = 1 << 2;
        /// A supervisor-only mapping (`_PAGE_USER` clear); user accesses fault.
        const KERNEL = 1 << 3;
    }
}

impl Prot {
    /// `PROT_READ | PROT_WRITE`.
    pub const RW: Prot = Prot::READ.union(Prot::WRITE);
    /// `PROT_NONE`.
    pub const NONE: Prot = Prot::empty();

    /// Returns true if the mapping allows no access at all (`PROT_NONE`).
    pub fn is_none(self) -> bool {
        !self.intersects(Prot::READ | Prot::WRITE | Prot::EXEC)
    }
}

/// One page-table entry: a present translation, a `PROT_NONE` entry, a swap entry, or none.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Pte(pub u64);

impl fmt::Debug for Pte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            f.write_str("Pte(none)")
        } else if let Some(e) = self.swap_entry() {
            write!(f, "Pte(swap type {} offset {:#x})", e.kind, e.offset)
        } else {
            write!(f, "Pte({:?} {:?})", self.pfn(), self.flags())
        }
    }
}

impl Pte {
    /// The empty entry (`pte_none`).
    pub const NONE: Pte = Pte(0);

    /// Builds an entry mapping `pfn` with `flags`.
    #[inline]
    pub const fn new(pfn: Pfn, flags: PteFlags) -> Pte {
        Pte(((pfn.0 << PAGE_SHIFT) & PTE_PFN_MASK) | flags.bits())
    }

    /// Builds the entry `mmap`/the fault handler installs for `pfn` with `prot` (`mk_pte` with
    /// the VMA's `vm_page_prot`): present, user unless [`Prot::KERNEL`], writable with
    /// [`Prot::WRITE`], NX without [`Prot::EXEC`]; `PROT_NONE` gives a non-present
    /// `_PAGE_PROTNONE` entry that keeps the frame.
    pub fn from_prot(pfn: Pfn, prot: Prot) -> Pte {
        Pte::new(pfn, Self::prot_flags(prot))
    }

    /// Returns the flag bits `prot` stands for.
    pub(crate) fn prot_flags(prot: Prot) -> PteFlags {
        if prot.is_none() {
            return PteFlags::PROTNONE;
        }
        let mut f = PteFlags::PRESENT;
        if !prot.contains(Prot::KERNEL) {
            f |= PteFlags::USER;
        }
        if prot.contains(Prot::WRITE) {
            f |= PteFlags::RW;
        }
        if !prot.contains(Prot::EXEC) {
            f |= PteFlags::NX;
        }
        f
    }

    /// Returns the entry with its protection replaced by `prot`, keeping the frame and the
    /// accessed, dirty and software bits (`pte_modify`).
    pub fn with_prot(self, prot: Prot) -> Pte {
        let keep = PteFlags::ACCESSED
            | PteFlags::DIRTY
            | PteFlags::SPECIAL
            | PteFlags::UFFD_WP
            | PteFlags::SOFT_DIRTY;
        let kept = self.flags() & keep;
        Pte::new(self.pfn(), Self::prot_flags(prot) | kept)
    }

    /// Encodes a swap entry as a non-present PTE, the Linux x86-64 way: type in bits 59..63,
    /// the *inverted* offset in bits 9..58, bits 0..8 clear (`__swp_entry`).
    ///
    /// # Panics
    /// If the type is not below [`MAX_SWAP_TYPES`] or the offset is above
    /// [`MAX_SWAP_OFFSET`]: the swap layer never hands those out.
    pub fn swap(entry: SwapEntry) -> Pte {
        assert!(
            entry.kind < MAX_SWAP_TYPES,
            "swap type {} too large",
            entry.kind
        );
        assert!(
            entry.offset <= MAX_SWAP_OFFSET,
            "swap offset {:#x} too large",
            entry.offset
        );
        Pte(((!entry.offset) << SWP_OFFSET_SHIFT >> SWP_TYPE_BITS)
            | (u64::from(entry.kind) << (64 - SWP_TYPE_BITS)))
    }

    /// Returns the raw value.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Returns the flag bits.
    #[inline]
    pub const fn flags(self) -> PteFlags {
        PteFlags::from_bits_retain(self.0 & !PTE_PFN_MASK)
    }

    /// Returns the frame number field (meaningful for present and `PROT_NONE` entries).
    #[inline]
    pub const fn pfn(self) -> Pfn {
        Pfn((self.0 & PTE_PFN_MASK) >> PAGE_SHIFT)
    }

    /// Returns true for the empty entry.
    #[inline]
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }

    /// Returns true if the walker may use the entry (`pte_present` without the PROT_NONE case).
    #[inline]
    pub const fn is_present(self) -> bool {
        self.0 & PteFlags::PRESENT.bits() != 0
    }

    /// Returns true for a non-present `PROT_NONE` entry (`pte_protnone`).
    #[inline]
    pub const fn is_protnone(self) -> bool {
        self.0 & (PteFlags::PRESENT.bits() | PteFlags::PROTNONE.bits()) == PteFlags::PROTNONE.bits()
    }

    /// Returns true if the entry holds a frame: present or `PROT_NONE`.
    #[inline]
    pub const fn has_frame(self) -> bool {
        self.is_present() || self.is_protnone()
    }

    /// Returns the swap entry of a non-present, non-`PROT_NONE`, non-empty entry.
    pub fn swap_entry(self) -> Option<SwapEntry> {
        if self.is_none() || self.has_frame() {
            return None;
        }
        Some(SwapEntry {
            kind: (self.0 >> (64 - SWP_TYPE_BITS)) as u8,
            offset: (!self.0) << SWP_TYPE_BITS >> SWP_OFFSET_SHIFT,
        })
    }

    /// Returns true if the accessed bit is set (`pte_young`).
    #[inline]
    pub const fn is_young(self) -> bool {
        self.0 & PteFlags::ACCESSED.bits() != 0
    }

    /// Returns true if the dirty bit is set (`pte_dirty`).
    #[inline]
    pub const fn is_dirty(self) -> bool {
        self.0 & PteFlags::DIRTY.bits() != 0
    }

    /// Returns true if the entry is writable (`pte_write`).
    #[inline]
    pub const fn is_writable(self) -> bool {
        self.0 & PteFlags::RW.bits() != 0
    }

    /// Returns the protection the entry grants (`PROT_NONE` for anything non-present).
    pub fn prot(self) -> Prot {
        if !self.is_present() {
            return Prot::NONE;
        }
        let f = self.flags();
        let mut p = Prot::READ;
        if f.contains(PteFlags::RW) {
            p |= Prot::WRITE;
        }
        if !f.contains(PteFlags::NX) {
            p |= Prot::EXEC;
        }
        if !f.contains(PteFlags::USER) {
            p |= Prot::KERNEL;
        }
        p
    }
}

/// Returns the index into the table of `level` (1 = PTE table, 2 = PMD, 3 = PUD, 4 = P4D or
/// the 4-level PGD, 5 = the 5-level PGD) that translates `va`.
#[inline]
pub(crate) const fn table_index(va: u64, level: u32) -> usize {
    ((va >> (PAGE_SHIFT + LEVEL_BITS * (level - 1))) & (PTRS_PER_TABLE as u64 - 1)) as usize
}

/// Returns the number of bytes one entry of a `level` table maps.
#[inline]
pub(crate) const fn entry_span(level: u32) -> u64 {
    1 << (PAGE_SHIFT + LEVEL_BITS * (level - 1))
}
