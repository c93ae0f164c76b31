//! GFP flags (`include/linux/gfp_types.h`).

use crate::ZoneId;

bitflags::bitflags! {
    /// Allocation flags: zone modifiers, reclaim modifiers and action modifiers, with the
    /// kernel's composite masks as associated constants.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct Gfp: u32 {
        /// `__GFP_DMA`: allocate from ZONE_DMA.
        const DMA = 1 << 0;
        /// `__GFP_HIGHMEM`: highmem is acceptable (x86-64: no effect alone).
        const HIGHMEM = 1 << 1;
        /// `__GFP_DMA32`: allocate from ZONE_DMA32 or below.
        const DMA32 = 1 << 2;
        /// `__GFP_MOVABLE`: the page can be migrated (ZONE_MOVABLE with HIGHMEM).
        const MOVABLE = 1 << 3;
        /// `__GFP_RECLAIMABLE`: slab pages that shrinkers can free.
        const RECLAIMABLE = 1 << 4;
        /// `__GFP_HIGH`: high priority, may use part of the min reserve.
        const HIGH = 1 << 5;
        /// `__GFP_IO`: may start physical I/O.
        const IO = 1 << 6;
        /// `__GFP_FS`: may call into the filesystem.
        const FS = 1 << 7;
        /// `__GFP_ZERO`: return a zeroed page.
        const ZERO = 1 << 8;
        /// `__GFP_DIRECT_RECLAIM`: the caller may enter direct reclaim (may sleep).
        const DIRECT_RECLAIM = 1 << 10;
        /// `__GFP_KSWAPD_RECLAIM`: wake kswapd when below the low watermark.
        const KSWAPD_RECLAIM = 1 << 11;
        /// `__GFP_NOWARN`: no failure report.
        const NOWARN = 1 << 13;
        /// `__GFP_RETRY_MAYFAIL`: retry hard, but may fail.
        const RETRY_MAYFAIL = 1 << 14;
        /// `__GFP_NOFAIL`: never fail; loop forever.
        const NOFAIL = 1 << 15;
        /// `__GFP_NORETRY`: one light reclaim attempt, no OOM killer, then fail.
        const NORETRY = 1 << 16;
        /// `__GFP_MEMALLOC`: may use all reserves.
        const MEMALLOC = 1 << 17;
        /// `__GFP_NOMEMALLOC`: never use the emergency reserves.
        const NOMEMALLOC = 1 << 19;
        /// `__GFP_HARDWALL`: respect cpuset limits.
        const HARDWALL = 1 << 20;
        /// `__GFP_ACCOUNT`: charge to the memory cgroup.
        const ACCOUNT = 1 << 22;

        /// `__GFP_RECLAIM`: both kinds of reclaim.
        const RECLAIM = Self::DIRECT_RECLAIM.bits() | Self::KSWAPD_RECLAIM.bits();
        /// `GFP_ATOMIC`: cannot sleep, may dip into the reserves.
        const GFP_ATOMIC = Self::HIGH.bits() | Self::KSWAPD_RECLAIM.bits();
        /// `GFP_KERNEL`: ordinary kernel allocation, may sleep and reclaim.
        const GFP_KERNEL = Self::RECLAIM.bits() | Self::IO.bits() | Self::FS.bits();
        /// `GFP_NOWAIT`: cannot sleep, wakes kswapd, no reserves.
        const GFP_NOWAIT = Self::KSWAPD_RECLAIM.bits() | Self::NOWARN.bits();
        /// `GFP_NOIO`: may reclaim but not start I/O.
        const GFP_NOIO = Self::RECLAIM.bits();
        /// `GFP_NOFS`: may reclaim and do I/O but not call the filesystem.
        const GFP_NOFS = Self::RECLAIM.bits() | Self::IO.bits();
        /// `GFP_USER`: user-space allocation.
        const GFP_USER = Self::RECLAIM.bits() | Self::IO.bits() | Self::FS.bits() | Self::HARDWALL.bits();
        /// `GFP_DMA`.
        const GFP_DMA = Self::DMA.bits();
        /// `GFP_DMA32`.
        const GFP_DMA32 = Self::DMA32.bits();
        /// `GFP_HIGHUSER`: user pages, highmem allowed.
        const GFP_HIGHUSER = Self::GFP_USER.bits() | Self::HIGHMEM.bits();
        /// `GFP_HIGHUSER_MOVABLE`: user anonymous and page-cache pages.
        const GFP_HIGHUSER_MOVABLE = Self::GFP_HIGHUSER.bits() | Self::MOVABLE.bits();
    }
}

impl Gfp {
    /// Returns the highest zone this mask may use (`gfp_zone()`), given whether the machine
    /// has a populated ZONE_MOVABLE.
    pub fn zone(self, has_movable: bool) -> ZoneId {
        if self.contains(Gfp::DMA) {
            ZoneId::Dma
        } else if self.contains(Gfp::DMA32) {
            ZoneId::Dma32
        } else if has_movable && self.contains(Gfp::HIGHMEM | Gfp::MOVABLE) {
            ZoneId::Movable
        } else {
            ZoneId::Normal
        }
    }

    /// Returns true if the caller may sleep and enter direct reclaim.
    pub fn can_direct_reclaim(self) -> bool {
        self.contains(Gfp::DIRECT_RECLAIM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gfp_zone_picks_the_highest_usable_zone() {
        assert_eq!(Gfp::GFP_KERNEL.zone(false), ZoneId::Normal);
        assert_eq!((Gfp::GFP_KERNEL | Gfp::DMA).zone(false), ZoneId::Dma);
        assert_eq!((Gfp::GFP_KERNEL | Gfp::DMA32).zone(false), ZoneId::Dma32);
        assert_eq!(Gfp::GFP_HIGHUSER_MOVABLE.zone(false), ZoneId::Normal);
        assert_eq!(Gfp::GFP_HIGHUSER_MOVABLE.zone(true), ZoneId::Movable);
        assert!(!Gfp::GFP_ATOMIC.can_direct_reclaim());
        assert!(Gfp::GFP_KERNEL.can_direct_reclaim());
        assert!(!Gfp::GFP_NOWAIT.contains(Gfp::HIGH));
    }
}
