//! The allocation slow path's hooks into reclaim and the OOM killer.

use crate::Buddy;
use mm_types::{CpuId, Gfp, Order, ZoneId};

/// What the allocator asks of the rest of the machine when the fast path fails
/// (`__alloc_pages_slowpath`). `mm-sim` implements it with kswapd, direct reclaim and the OOM
/// killer; every method defaults to doing nothing, so the allocator works alone. Each method
/// gets the allocator itself, so reclaim can free pages into it without holding a reference
/// back to it.
pub trait SlowPath: Send + Sync {
    /// Wakes the node's kswapd for `zone` (`wakeup_kswapd`); it must not block.
    fn wake_kswapd(&self, buddy: &Buddy, zone: ZoneId, order: Order, highest: ZoneId) {
        let _ = (buddy, zone, order, highest);
    }

    /// Reclaims directly on the allocating CPU (`try_to_free_pages`), returning the number of
    /// pages freed.
    fn direct_reclaim(
        &self,
        buddy: &Buddy,
        cpu: CpuId,
        order: Order,
        gfp: Gfp,
        highest: ZoneId,
    ) -> u64 {
        let _ = (buddy, cpu, order, gfp, highest);
        0
    }

    /// Returns how many pages reclaim could still free in `zone`
    /// (`zone_reclaimable_pages`), used by `should_reclaim_retry`.
    fn reclaimable_pages(&self, buddy: &Buddy, zone: ZoneId) -> u64 {
        let _ = (buddy, zone);
        0
    }

    /// Invokes the OOM killer (`out_of_memory`); returns true if it made progress (a victim was
    /// chosen and will free memory).
    fn out_of_memory(&self, buddy: &Buddy, cpu: CpuId, order: Order, gfp: Gfp) -> bool {
        let _ = (buddy, cpu, order, gfp);
        false
    }

    /// Gives up the CPU between retries of a `__GFP_NOFAIL` allocation (`cond_resched`).
    fn cond_resched(&self, cpu: CpuId) {
        let _ = cpu;
        mm_sync::thread::yield_now();
    }
}

/// The slow path of a machine without reclaim or OOM killer.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSlowPath;

impl SlowPath for NoSlowPath {}
