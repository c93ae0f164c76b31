//! A tiny machine for the tests: one DMA zone of RAM, a buddy allocator and the MMU.

use crate::{Mmu, MmuConfig, MmuCpu, Pte};
use mm_buddy::Frame;
use mm_buddy::{Buddy, BuddyConfig};
use mm_phys::PhysMem;
use mm_sync::sync::Arc;
use mm_types::{Order, Pfn, VirtAddr, ZoneId};

/// Boots `pages` frames of RAM, all managed, with watermarks at zero.
pub(crate) fn buddy(nr_cpus: u32, pages: u64) -> Arc<Buddy> {
    let cfg = BuddyConfig::single_zone(nr_cpus, ZoneId::Dma, Pfn(0), pages);
    Arc::new(Buddy::new(Arc::new(PhysMem::new(Pfn(pages))), &cfg).expect("valid test machine"))
}

/// A machine with `cfg` over `pages` frames.
pub(crate) fn machine(cfg: MmuConfig, pages: u64) -> (Arc<Mmu>, Vec<MmuCpu>) {
    Mmu::new(cfg, buddy(cfg.nr_cpus, pages)).expect("valid MMU config")
}

/// A new address space, root allocated on CPU 0.
#[cfg(not(mm_loom))]
pub(crate) fn mm(mmu: &Arc<Mmu>) -> Arc<crate::Mm> {
    crate::Mm::new(mmu, mm_types::CpuId(0)).expect("memory for a root table")
}

/// The `on_pte` of a zap that frees every data frame it unmaps.
pub(crate) fn frame_of(_: VirtAddr, pte: Pte) -> Option<Frame> {
    pte.has_frame()
        .then(|| Frame::from_raw(pte.pfn(), Order::ZERO))
}
