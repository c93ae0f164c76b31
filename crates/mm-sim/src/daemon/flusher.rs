//! The writeback flusher (`fs/fs-writeback.c`: `wb_workfn`, `wb_do_writeback`,
//! `wb_check_background_flush`, `wb_check_old_data_flush`).
//!
//! It wakes every `vm.dirty_writeback_centisecs` (kupdate-style writeback of old dirty data),
//! and on demand (`wakeup_flusher_threads` from reclaim, or background writeback when dirty
//! pages pass the background threshold). What is dirty and how it is written belongs to the
//! page cache, which plugs in through [`Writeback`]; a machine without one has nothing dirty.

use super::{Actor, ActorStatus, Flow};
use mm_buddy::Buddy;
use mm_types::CpuId;
use std::time::{Duration, Instant};

/// Why writeback runs (`enum wb_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WbReason {
    /// `WB_REASON_BACKGROUND`: dirty pages above the background threshold.
    Background,
    /// `WB_REASON_VMSCAN`: reclaim met dirty pages.
    Vmscan,
    /// `WB_REASON_PERIODIC`: the kupdate timer.
    Periodic,
    /// `WB_REASON_SYNC`.
    Sync,
}

impl WbReason {
    /// The name Linux's `writeback_*` tracepoints print.
    pub fn name(self) -> &'static str {
        match self {
            WbReason::Background => "background",
            WbReason::Vmscan => "vmscan",
            WbReason::Periodic => "periodic",
            WbReason::Sync => "sync",
        }
    }
}

/// The flusher's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlusherMsg {
    /// `wb_wakeup` / `wakeup_flusher_threads`.
    Wakeup(WbReason),
    /// End of the run.
    Shutdown,
}

/// Dirty data the flusher writes back: the page cache, once it exists.
pub trait Writeback: Send + Sync + std::fmt::Debug {
    /// Dirty pages (`NR_FILE_DIRTY`).
    fn nr_dirty(&self) -> u64;
    /// Pages under writeback (`NR_WRITEBACK`).
    fn nr_writeback(&self) -> u64;
    /// Starts writeback of up to `nr_pages` dirty pages from `cpu` (`wb_writeback`); with
    /// `only_expired`, only pages dirty for longer than `dirty_expire_centisecs`. Returns the
    /// pages it started.
    fn writeback(&self, cpu: CpuId, nr_pages: u64, only_expired: bool, reason: WbReason) -> u64;
}

/// What the flusher did in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlusherStats {
    /// `wb_workfn` runs.
    pub runs: u64,
    /// Runs of which periodic (the kupdate timer).
    pub periodic: u64,
    /// Runs that found dirty pages above the background threshold.
    pub background: u64,
    /// Pages whose writeback it started.
    pub pages_written: u64,
}

/// The flusher actor.
#[derive(Debug)]
pub(crate) struct Flusher<'m> {
    buddy: &'m Buddy,
    writeback: Option<&'m dyn Writeback>,
    /// `vm.dirty_writeback_centisecs`; 0 disables the periodic wake-up.
    writeback_centisecs: u32,
    cpu: CpuId,
    pub(crate) stats: FlusherStats,
    next_periodic: Option<Instant>,
}

impl<'m> Flusher<'m> {
    pub(crate) fn new(
        buddy: &'m Buddy,
        writeback: Option<&'m dyn Writeback>,
        writeback_centisecs: u32,
        cpu: CpuId,
    ) -> Flusher<'m> {
        Flusher {
            buddy,
            writeback,
            writeback_centisecs,
            cpu,
            stats: FlusherStats::default(),
            next_periodic: Self::periodic_after(writeback_centisecs),
        }
    }

    fn periodic_after(centisecs: u32) -> Option<Instant> {
        (centisecs > 0).then(|| Instant::now() + Duration::from_millis(centisecs as u64 * 10))
    }

    /// `wb_do_writeback`.
    fn wb_workfn(&mut self, reason: WbReason, status: &ActorStatus) {
        status.set("wb_workfn");
        self.stats.runs += 1;
        if reason == WbReason::Periodic {
            self.stats.periodic += 1;
        }
        let Some(wb) = self.writeback else {
            return;
        };
        // wb_check_background_flush: write until below the background threshold.
        let free = self.buddy.nr_free_pages();
        let (_, bg) = crate::procfs::global_dirty_limits(free, self.buddy.totalreserve_pages(), 0);
        let dirty = wb.nr_dirty() + wb.nr_writeback();
        let mut written = 0;
        if dirty > bg || reason == WbReason::Vmscan || reason == WbReason::Sync {
            if dirty > bg {
                self.stats.background += 1;
            }
            tracing::event!(
                name: "writeback_start",
                target: "mm_trace",
                tracing::Level::TRACE,
                reason = reason.name(),
                nr_dirty = dirty,
                background_thresh = bg,
            );
            written += wb.writeback(self.cpu, dirty.saturating_sub(bg).max(1), false, reason);
        }
        // wb_check_old_data_flush: the kupdate pass over expired dirty data.
        if reason == WbReason::Periodic {
            written += wb.writeback(self.cpu, u64::MAX, true, reason);
        }
        self.stats.pages_written += written;
        if written > 0 {
            tracing::event!(
                name: "writeback_written",
                target: "mm_trace",
                tracing::Level::TRACE,
                reason = reason.name(),
                nr_pages = written,
            );
        }
    }
}

impl Actor for Flusher<'_> {
    type Msg = FlusherMsg;

    fn handle(&mut self, msg: FlusherMsg, status: &ActorStatus) -> Flow {
        match msg {
            FlusherMsg::Shutdown => Flow::Stop,
            FlusherMsg::Wakeup(reason) => {
                self.wb_workfn(reason, status);
                Flow::Continue
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.next_periodic
    }

    fn tick(&mut self, status: &ActorStatus) {
        self.wb_workfn(WbReason::Periodic, status);
        self.next_periodic = Self::periodic_after(self.writeback_centisecs);
    }
}
