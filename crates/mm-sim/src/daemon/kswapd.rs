//! kswapd, node 0's background reclaim thread (`mm/vmscan.c`: `wakeup_kswapd`, `kswapd`,
//! `balance_pgdat`, `pgdat_balanced`, `prepare_kswapd_sleep`).
//!
//! The allocator wakes kswapd through [`MachineSlowPath`] when an allocation falls below a
//! zone's low watermark. kswapd then reclaims until some eligible zone is above its high
//! watermark, or gives up after a pass from `DEF_PRIORITY` down to 0 frees nothing, and
//! sleeps. After `MAX_RECLAIM_RETRIES` fruitless runs in a row the node is hopeless and
//! wake-ups are ignored until a run makes progress again, as in Linux.
//!
//! What it reclaims: the slab shrinkers (`shrink_slab`) today. The LRU lists (`shrink_node`'s
//! `shrink_lruvec`) plug in through [`NodeReclaim`] with the reclaim issue.
//!
//! Wake-up protocol (`kswapd_wait`): the waker records the order and highest zone it needs in
//! atomics, then sends a `Wake` message only if it flips `sleeping` from true to false; a
//! waker that finds kswapd running sets `pending` instead. kswapd sets `sleeping`, then
//! checks `pending` (both sequentially consistent), so a wake-up is never lost between its
//! last check and its sleep.

use super::{Actor, ActorStatus, Flow};
use crate::daemon::Mailbox;
use mm_buddy::{Buddy, SlowPath};
use mm_slab::{SlabAllocator, DEF_PRIORITY};
use mm_sync::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use mm_sync::sync::{Arc, Mutex};
use mm_types::{CpuId, Gfp, NodeId, Order, ZoneId};

/// `MAX_RECLAIM_RETRIES`: fruitless kswapd runs after which the node is hopeless.
pub const MAX_RECLAIM_RETRIES: u32 = 16;

/// kswapd's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KswapdMsg {
    /// `wake_up_interruptible(&pgdat->kswapd_wait)` after `wakeup_kswapd`.
    Wake,
    /// End of the run.
    Shutdown,
}

/// Reclaim of one node's pages beyond the slab: the LRU lists, once they exist.
pub trait NodeReclaim: Send + Sync + std::fmt::Debug {
    /// Reclaims up to `nr_to_reclaim` pages at `priority` on `cpu`; returns (scanned,
    /// reclaimed).
    fn shrink_node(&self, cpu: CpuId, priority: u32, nr_to_reclaim: u64) -> (u64, u64);
}

/// The node's kswapd state that wakers and kswapd share (`pg_data_t`'s kswapd fields).
#[derive(Debug)]
pub struct KswapdShared {
    mailbox: Mailbox<KswapdMsg>,
    sleeping: AtomicBool,
    pending: AtomicBool,
    /// `pgdat->kswapd_order`.
    order: AtomicU32,
    /// `pgdat->kswapd_highest_zoneidx`.
    highest: AtomicU32,
    /// `pgdat->kswapd_failures`.
    failures: AtomicU32,
    /// Wake-ups sent.
    wakeups: AtomicU64,
    /// `pageoutrun`: `balance_pgdat` runs.
    pageoutrun: AtomicU64,
    /// Objects the shrinkers freed for kswapd.
    slab_freed: AtomicU64,
    /// Runs that ended with the node balanced.
    balanced_runs: AtomicU64,
}

impl KswapdShared {
    pub(crate) fn new(mailbox: Mailbox<KswapdMsg>) -> KswapdShared {
        KswapdShared {
            mailbox,
            sleeping: AtomicBool::new(true),
            pending: AtomicBool::new(false),
            order: AtomicU32::new(0),
            highest: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            wakeups: AtomicU64::new(0),
            pageoutrun: AtomicU64::new(0),
            slab_freed: AtomicU64::new(0),
            balanced_runs: AtomicU64::new(0),
        }
    }

    /// `wakeup_kswapd`: called by the allocator; never blocks.
    pub(crate) fn wakeup(&self, buddy: &Buddy, zone: ZoneId, order: Order, highest: ZoneId) {
        if self.failures.load(Ordering::Relaxed) >= MAX_RECLAIM_RETRIES {
            return;
        }
        self.order.fetch_max(order.get(), Ordering::SeqCst);
        self.highest
            .fetch_max(highest.index() as u32, Ordering::SeqCst);
        if !self.sleeping.load(Ordering::SeqCst) {
            // Running: it rechecks before sleeping.
            self.pending.store(true, Ordering::SeqCst);
            return;
        }
        if pgdat_balanced(buddy, order, highest) && !watermark_boosted(buddy, highest) {
            return;
        }
        tracing::event!(
            name: "mm_vmscan_wakeup_kswapd",
            target: "mm_trace",
            tracing::Level::TRACE,
            nid = 0u32,
            zid = zone.index() as u32,
            order = order.get(),
        );
        if self
            .sleeping
            .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            self.mailbox.send(KswapdMsg::Wake);
        } else {
            self.pending.store(true, Ordering::SeqCst);
        }
    }

    /// Wake-ups sent to kswapd.
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// `pageoutrun`.
    pub fn pageoutrun(&self) -> u64 {
        self.pageoutrun.load(Ordering::Relaxed)
    }

    /// Objects the shrinkers freed for kswapd.
    pub fn slab_freed(&self) -> u64 {
        self.slab_freed.load(Ordering::Relaxed)
    }

    /// `kswapd_failures`.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Runs that left the node balanced.
    pub fn balanced_runs(&self) -> u64 {
        self.balanced_runs.load(Ordering::Relaxed)
    }

    pub(crate) fn mailbox(&self) -> &Mailbox<KswapdMsg> {
        &self.mailbox
    }
}

/// `pgdat_watermark_boosted`: a zone up to `highest` has a watermark boost (set when an
/// allocation stole a pageblock of another migratetype).
pub(crate) fn watermark_boosted(buddy: &Buddy, highest: ZoneId) -> bool {
    ZoneId::ALL[..=highest.index()]
        .iter()
        .any(|&id| buddy.zone(id).is_populated() && buddy.zone(id).boost() > 0)
}

/// `pgdat_balanced`: some populated zone up to `highest` is above its high watermark (with
/// its boost) plus its protection against `highest`, with a free block of at least `order`.
pub(crate) fn pgdat_balanced(buddy: &Buddy, order: Order, highest: ZoneId) -> bool {
    ZoneId::ALL[..=highest.index()].iter().any(|&id| {
        let z = buddy.zone(id);
        if !z.is_populated() {
            return false;
        }
        let free = z.free_pages() - ((1i64 << order.get()) - 1);
        let mark = (z.watermarks().high + z.boost() + z.lowmem_reserve(highest)) as i64;
        if free <= mark {
            return false;
        }
        order.get() == 0 || {
            let info = buddy.zone_info(id);
            info.free_blocks[order.get() as usize..]
                .iter()
                .any(|&n| n > 0)
        }
    })
}

/// The slab allocator, for the slow path's direct reclaim: set after boot (the slab is built
/// on the allocator that holds the slow path) and cleared when the machine drops, so that the
/// two do not keep each other alive.
#[derive(Debug, Default)]
pub(crate) struct SlabSlot(Mutex<Option<Arc<SlabAllocator>>>);

impl SlabSlot {
    pub(crate) fn set(&self, slab: Option<Arc<SlabAllocator>>) {
        *self.0.lock() = slab;
    }

    fn get(&self) -> Option<Arc<SlabAllocator>> {
        self.0.lock().clone()
    }
}

/// The allocator's slow path as the machine wires it: wake-ups go to kswapd, and direct
/// reclaim (`try_to_free_pages`) runs the shrinkers on the allocating CPU.
#[derive(Debug)]
pub(crate) struct MachineSlowPath {
    pub(crate) kswapd: Arc<KswapdShared>,
    pub(crate) slab: Arc<SlabSlot>,
}

impl SlowPath for MachineSlowPath {
    fn wake_kswapd(&self, buddy: &Buddy, zone: ZoneId, order: Order, highest: ZoneId) {
        self.kswapd.wakeup(buddy, zone, order, highest);
    }

    /// `try_to_free_pages` → `do_try_to_free_pages`: from `DEF_PRIORITY` down, run the
    /// shrinkers (`shrink_slab`; the LRU lists join with the reclaim issue) until
    /// `SWAP_CLUSTER_MAX` pages came back. Returns the slab pages freed. Progress revives a
    /// hopeless kswapd, as in Linux.
    fn direct_reclaim(
        &self,
        _buddy: &Buddy,
        cpu: CpuId,
        order: Order,
        gfp: Gfp,
        _highest: ZoneId,
    ) -> u64 {
        let Some(slab) = self.slab.get() else {
            return 0;
        };
        tracing::event!(
            name: "mm_vmscan_direct_reclaim_begin",
            target: "mm_trace",
            tracing::Level::TRACE,
            order = order.get(),
            gfp_flags = gfp.bits(),
        );
        let before = slab.slab_pages();
        let mut reclaimed = 0;
        for priority in (0..=DEF_PRIORITY).rev() {
            slab.shrink_slab(cpu, gfp, NodeId(0), priority);
            reclaimed = before.saturating_sub(slab.slab_pages());
            if reclaimed >= SWAP_CLUSTER_MAX {
                break;
            }
        }
        tracing::event!(
            name: "mm_vmscan_direct_reclaim_end",
            target: "mm_trace",
            tracing::Level::TRACE,
            nr_reclaimed = reclaimed,
        );
        if reclaimed > 0 {
            self.kswapd.failures.store(0, Ordering::Relaxed);
        }
        reclaimed
    }
}

/// The kswapd actor of node 0.
#[derive(Debug)]
pub(crate) struct Kswapd<'m> {
    pub(crate) shared: Arc<KswapdShared>,
    pub(crate) buddy: &'m Buddy,
    pub(crate) slab: &'m SlabAllocator,
    pub(crate) reclaim: Option<&'m dyn NodeReclaim>,
    /// The CPU whose per-CPU lists kswapd's frees go to.
    pub(crate) cpu: CpuId,
}

/// `SWAP_CLUSTER_MAX`.
const SWAP_CLUSTER_MAX: u64 = 32;

impl Kswapd<'_> {
    /// `balance_pgdat`: returns whether the node ended balanced.
    ///
    /// A boosted run (a zone's watermark was boosted by a fragmenting fallback) reclaims the
    /// boost's worth of pages even if the node is balanced, and clears the boosts it started
    /// with at the end, as Linux does; if the node turns out unbalanced, boosting is dropped
    /// and the run reclaims for the watermarks.
    fn balance_pgdat(&self, order: Order, highest: ZoneId, status: &ActorStatus) -> bool {
        status.set("balance_pgdat");
        self.shared.pageoutrun.fetch_add(1, Ordering::Relaxed);
        let boosts: Vec<(ZoneId, u64)> = ZoneId::ALL[..=highest.index()]
            .iter()
            .map(|&id| (id, self.buddy.zone(id).boost()))
            .filter(|&(_, b)| b > 0)
            .collect();
        let mut nr_boost_reclaim: u64 = boosts.iter().map(|b| b.1).sum();
        let mut nr_reclaimed = 0u64;
        let mut priority = DEF_PRIORITY;
        let mut out_balanced = false;
        while priority >= 1 {
            let balanced = pgdat_balanced(self.buddy, order, highest);
            if !balanced && nr_boost_reclaim > 0 {
                nr_boost_reclaim = 0;
            }
            if balanced && nr_boost_reclaim == 0 {
                out_balanced = true;
                break;
            }
            let want = SWAP_CLUSTER_MAX.max(nr_boost_reclaim);
            let (scanned, reclaimed) = match self.reclaim {
                Some(r) => r.shrink_node(self.cpu, priority, want),
                None => (0, 0),
            };
            let freed = self
                .slab
                .shrink_slab(self.cpu, Gfp::GFP_KERNEL, NodeId(0), priority);
            self.shared.slab_freed.fetch_add(freed, Ordering::Relaxed);
            // shrink_node: reclaim progress (slab frees included, as reclaimed_slab is)
            // revives a node that had been failing.
            let progress = reclaimed + freed;
            if progress > 0 {
                self.shared.failures.store(0, Ordering::Relaxed);
            }
            nr_reclaimed += progress;
            nr_boost_reclaim -= nr_boost_reclaim.min(reclaimed);
            tracing::event!(
                name: "mm_vmscan_kswapd_pass",
                target: "mm_trace",
                tracing::Level::TRACE,
                nid = 0u32,
                priority,
                nr_scanned = scanned,
                nr_reclaimed = reclaimed,
                slab_freed = freed,
            );
            // Boost reclaim that makes no progress stops (it could loop forever).
            if nr_boost_reclaim > 0 && progress == 0 {
                break;
            }
            priority -= 1;
        }
        // Reclaim that ended without balancing the node and reclaimed nothing is a failure
        // (leaving balanced is `goto out`, which skips the count).
        if !out_balanced && nr_reclaimed == 0 {
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
        }
        for (id, b) in boosts {
            self.buddy.zone(id).reduce_boost(b);
        }
        let balanced = pgdat_balanced(self.buddy, order, highest);
        if balanced {
            self.shared.balanced_runs.fetch_add(1, Ordering::Relaxed);
        }
        balanced
    }
}

impl Actor for Kswapd<'_> {
    type Msg = KswapdMsg;

    fn handle(&mut self, msg: KswapdMsg, status: &ActorStatus) -> Flow {
        match msg {
            KswapdMsg::Shutdown => Flow::Stop,
            KswapdMsg::Wake => {
                loop {
                    let order = Order::new(self.shared.order.swap(0, Ordering::SeqCst))
                        .unwrap_or(Order::ZERO);
                    let highest =
                        ZoneId::ALL[self.shared.highest.swap(0, Ordering::SeqCst) as usize];
                    tracing::event!(
                        name: "mm_vmscan_kswapd_wake",
                        target: "mm_trace",
                        tracing::Level::TRACE,
                        nid = 0u32,
                        zid = highest.index() as u32,
                        order = order.get(),
                    );
                    self.balance_pgdat(order, highest, status);
                    // prepare_kswapd_sleep: sleep, then look for a wake-up that came meanwhile.
                    tracing::event!(
                        name: "mm_vmscan_kswapd_sleep",
                        target: "mm_trace",
                        tracing::Level::TRACE,
                        nid = 0u32,
                    );
                    self.shared.sleeping.store(true, Ordering::SeqCst);
                    // A hopeless node sleeps whatever came meanwhile (prepare_kswapd_sleep).
                    let hopeless =
                        self.shared.failures.load(Ordering::Relaxed) >= MAX_RECLAIM_RETRIES;
                    if !self.shared.pending.swap(false, Ordering::SeqCst) || hopeless {
                        break;
                    }
                    if self
                        .shared
                        .sleeping
                        .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                    {
                        // A waker flipped it and sent a Wake message: handle that instead.
                        break;
                    }
                }
                Flow::Continue
            }
        }
    }
}
