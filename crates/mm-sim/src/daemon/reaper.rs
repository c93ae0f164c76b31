//! The OOM reaper (`mm/oom_kill.c`: `oom_reaper`, `oom_reap_task`, `__oom_reap_task_mm`).
//!
//! When a process is killed for want of memory, its threads may take a while to notice the
//! signal and exit. A victim is queued with `OOM_REAPER_DELAY` (2 s in Linux); if it has not
//! finished exiting by then (its address space still has mappings), the reaper frees its
//! private memory so the machine recovers. It unmaps the pages (not the VMAs) of every mapping that is not `VM_SHARED`,
//! under the address space's locks, like `MADV_DONTNEED`: a thread of the victim that touches
//! reaped memory would see zeros, which is why the machine stops a killed process's threads
//! before their next operation. `VM_LOCKED` mappings are skipped (the mlock rule of
//! `MADV_DONTNEED`; Linux 6.x reaps them too).

use super::{Actor, ActorStatus, Flow};
use mm_sync::sync::atomic::{AtomicBool, Ordering};
use mm_sync::sync::Arc;
use mm_types::Pid;
use mm_vma::{AddressSpace, CpuCtx, VmFlags};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// `MADV_DONTNEED`.
const MADV_DONTNEED: i32 = 4;

/// The reaper's messages.
#[derive(Debug)]
pub enum ReaperMsg {
    /// `wake_oom_reaper`: reap this victim's address space.
    Reap {
        /// The victim.
        pid: Pid,
        /// Its command name.
        name: String,
        /// Its address space.
        space: Arc<AddressSpace>,
        /// Set once the reaper is done with it (`MMF_OOM_SKIP`).
        reaped: Arc<AtomicBool>,
    },
    /// End of the run.
    Shutdown,
}

/// What the reaper did in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReaperStats {
    /// Victims queued.
    pub queued: u64,
    /// Victims that had exited by themselves when their delay passed (`MMF_OOM_SKIP`).
    pub exited_first: u64,
    /// Victims reaped.
    pub reaped: u64,
    /// Resident pages they had when the reaper started (anon + file + shmem).
    pub pages_before: u64,
    /// Resident pages left after the reap.
    pub pages_after: u64,
}

/// A victim waiting for its delay to pass.
#[derive(Debug)]
struct Queued {
    due: Instant,
    pid: Pid,
    name: String,
    space: Arc<AddressSpace>,
    reaped: Arc<AtomicBool>,
}

/// The reaper actor. It edits page tables from a daemon context, like a kernel thread.
#[derive(Debug)]
pub(crate) struct Reaper {
    ctx: CpuCtx,
    delay: Duration,
    queue: VecDeque<Queued>,
    pub(crate) stats: ReaperStats,
}

impl Reaper {
    pub(crate) fn new(ctx: CpuCtx, delay: Duration) -> Reaper {
        Reaper {
            ctx,
            delay,
            queue: VecDeque::new(),
            stats: ReaperStats::default(),
        }
    }

    /// `oom_reap_task` / `__oom_reap_task_mm`.
    fn reap(&mut self, pid: Pid, name: &str, space: &AddressSpace, status: &ActorStatus) {
        if space.has_exited() {
            self.stats.exited_first += 1;
            return;
        }
        status.set("oom_reap_task");
        let before = space.rss();
        tracing::event!(
            name: "start_task_reaping",
            target: "mm_trace",
            tracing::Level::TRACE,
            pid = pid.0,
        );
        for (start, end, flags) in space.vmas() {
            if flags.intersects(VmFlags::SHARED | VmFlags::LOCKED) {
                continue;
            }
            // A VMA unmapped meanwhile (the victim exiting) gives ENOMEM: nothing left there.
            let _ = space.madvise(&mut self.ctx, start, end.0 - start.0, MADV_DONTNEED);
        }
        let after = space.rss();
        self.stats.reaped += 1;
        self.stats.pages_before += before.anon + before.file + before.shmem;
        self.stats.pages_after += after.anon + after.file + after.shmem;
        tracing::event!(
            name: "finish_task_reaping",
            target: "mm_trace",
            tracing::Level::TRACE,
            pid = pid.0,
        );
        tracing::warn!(
            target: "mm_sim::oom",
            "oom_reaper: reaped process {} ({}), now anon-rss:{}kB, file-rss:{}kB, shmem-rss:{}kB",
            pid.0,
            name,
            after.anon * 4,
            after.file * 4,
            after.shmem * 4
        );
    }
}

impl Actor for Reaper {
    type Msg = ReaperMsg;

    fn handle(&mut self, msg: ReaperMsg, _status: &ActorStatus) -> Flow {
        match msg {
            // Victims still queued at the end of the run have been torn down with it.
            ReaperMsg::Shutdown => Flow::Stop,
            ReaperMsg::Reap {
                pid,
                name,
                space,
                reaped,
            } => {
                self.stats.queued += 1;
                tracing::event!(
                    name: "wake_reaper",
                    target: "mm_trace",
                    tracing::Level::TRACE,
                    pid = pid.0,
                );
                self.queue.push_back(Queued {
                    due: Instant::now() + self.delay,
                    pid,
                    name,
                    space,
                    reaped,
                });
                Flow::Continue
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.queue.front().map(|q| q.due)
    }

    fn tick(&mut self, status: &ActorStatus) {
        while self.queue.front().is_some_and(|q| q.due <= Instant::now()) {
            let q = self.queue.pop_front().expect("front exists");
            self.reap(q.pid, &q.name, &q.space, status);
            q.reaped.store(true, Ordering::Release);
        }
    }
}
