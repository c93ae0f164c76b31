//! The PTE format and the swap-entry encoding.

use crate::{Prot, Pte, PteFlags, MAX_SWAP_OFFSET};
use mm_types::{Pfn, SwapEntry};

#[test]
fn pte_bits_follow_the_x86_layout() {
    let p = Pte::new(
        Pfn(0x12345),
        PteFlags::PRESENT | PteFlags::RW | PteFlags::USER,
    );
    assert_eq!(p.raw(), 0x1234_5007);
    assert_eq!(p.pfn(), Pfn(0x12345));
    assert!(p.is_present() && p.is_writable() && !p.is_young() && !p.is_dirty());
    let all = PteFlags::ACCESSED | PteFlags::DIRTY | PteFlags::GLOBAL | PteFlags::NX;
    assert_eq!(all.bits(), (1 << 5) | (1 << 6) | (1 << 8) | (1 << 63));
    // The PFN field is bits 12..51: a 40-bit frame number survives, bit 52 up does not leak.
    let top = Pte::new(Pfn((1 << 40) - 1), PteFlags::PRESENT);
    assert_eq!(top.pfn(), Pfn((1 << 40) - 1));
    assert_eq!(top.raw() >> 52, 0);

    let ro = Pte::from_prot(Pfn(7), Prot::READ);
    assert_eq!(
        ro.flags(),
        PteFlags::PRESENT | PteFlags::USER | PteFlags::NX
    );
    assert_eq!(ro.prot(), Prot::READ);
    let rwx = Pte::from_prot(Pfn(7), Prot::RW | Prot::EXEC);
    assert_eq!(
        rwx.flags(),
        PteFlags::PRESENT | PteFlags::USER | PteFlags::RW
    );
    let kernel = Pte::from_prot(Pfn(7), Prot::RW | Prot::KERNEL);
    assert!(!kernel.flags().contains(PteFlags::USER));
    // PROT_NONE keeps the frame behind a non-present entry with _PAGE_PROTNONE.
    let none = Pte::from_prot(Pfn(7), Prot::NONE);
    assert!(!none.is_present() && none.is_protnone() && none.has_frame());
    assert_eq!(none.pfn(), Pfn(7));
    assert_eq!(none.swap_entry(), None);
    // pte_modify keeps accessed and dirty.
    let young_dirty = Pte(rwx.raw() | PteFlags::ACCESSED.bits() | PteFlags::DIRTY.bits());
    let ro2 = young_dirty.with_prot(Prot::READ);
    assert!(ro2.is_young() && ro2.is_dirty() && !ro2.is_writable());
    assert_eq!(ro2.pfn(), Pfn(7));
}

#[test]
fn swap_entries_use_the_linux_x86_64_encoding() {
    // __swp_entry(type, offset) = (~offset << 14 >> 5) | (type << 59).
    let e = SwapEntry {
        kind: 1,
        offset: 0x123,
    };
    let p = Pte::swap(e);
    assert_eq!(p.raw(), ((!0x123u64) << 14 >> 5) | (1 << 59));
    assert_eq!(
        p.raw() & 0x1ff,
        0,
        "bits 0..8 are clear: not present, not PROT_NONE"
    );
    assert_eq!(p.raw() >> 59, 1, "type in bits 59..63");
    // The offset is stored inverted in bits 9..58, so the PFN bits point far above RAM (L1TF).
    assert_eq!(
        (p.raw() >> 9) & ((1 << 50) - 1),
        !0x123u64 & ((1 << 50) - 1)
    );
    assert!(!p.is_present() && !p.is_protnone() && !p.has_frame() && !p.is_none());
    assert_eq!(p.swap_entry(), Some(e));
    for (kind, offset) in [(0, 1), (31, MAX_SWAP_OFFSET), (5, 0xdead_beef), (0, 0)] {
        let e = SwapEntry { kind, offset };
        assert_eq!(Pte::swap(e).swap_entry(), Some(e), "{e:?}");
    }
    assert_eq!(Pte::NONE.swap_entry(), None);
}
