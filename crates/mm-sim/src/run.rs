//! Running workloads: one OS thread per simulated CPU, each running the tasks bound to it one
//! quantum at a time; the daemon actors (kswapd, the flusher, the OOM reaper, the I/O engine
//! and the sampler) on their own threads; and the driver thread, which starts processes on
//! schedule, runs the invariant checker and watches for stalls.
//!
//! Lifecycle: every thread is spawned in one scope and joined before [`Machine::run`]
//! returns. The driver ends the run by (on a deadline or a stall) setting `stop` and shutting
//! the I/O engine down, which completes every queued request so parked tasks come back and
//! are killed; then it joins the CPUs, and last sends `Shutdown` to each daemon and joins it.
//!
//! # Locking protocol
//! - Each CPU's run queue is a `Mutex<VecDeque<Task>>`: its CPU pops the front and pushes the
//!   task back after a quantum; the driver, forking CPUs and the I/O engine (a completed
//!   request's task) push tasks. No other lock is held while a task runs.
//! - A task waiting for I/O is in no run queue: its request's completion owns it. It still
//!   counts in `live_tasks`, so CPUs keep running (and answering IPIs) until it is back.
//! - The process table is a `Mutex<BTreeMap<Pid, Proc>>`, taken briefly to create, kill and
//!   reap processes; never while a task runs an operation.
//! - Kernel code runs on the CPU thread that entered it, with that CPU's `CpuCtx` (`&mut`, no
//!   lock); between quanta and while idle the CPU handles its TLB-shootdown IPIs.

use crate::daemon::flusher::{Flusher, FlusherMsg, FlusherStats};
use crate::daemon::io::{IoDone, IoEngine, IoMsg, IoOp, IoRequest, IoStats};
use crate::daemon::kswapd::{Kswapd, KswapdMsg};
use crate::daemon::reaper::{Reaper, ReaperMsg, ReaperStats};
use crate::daemon::sampler::{Sampler, SamplerMsg};
use crate::daemon::{self, ActorStatus, Mailbox};
use crate::workload::{Integrity, Op, OpResult, ProcessPlan, Workload, WorkloadEnv, MAX_IO_BYTES};
use crate::Machine;
use mm_slab::{KObj, SlabAllocator, TaskStruct};
use mm_sync::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use mm_sync::sync::{Arc, Mutex};
use mm_types::{CpuId, Errno, Gfp, PhysAddr, Pid, VirtAddr, PAGE_SIZE};

use mm_vma::{
    AccessError, AddressSpace, CpuCtx, Layout, MapFlags, MremapFlags, ProtFlags, Signal, VmEvents,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How a run proceeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOpts {
    /// Progress callbacks' interval (see [`Machine::run_observed`]).
    pub progress_every: Duration,
    /// The run's seed (workloads get theirs from the scenario; recorded in the report).
    pub seed: u64,
    /// Operations per quantum.
    pub quantum: u32,
    /// Interval of the meminfo/vmstat sampler.
    pub sample_every: Duration,
    /// Interval of the invariant checker.
    pub check_every: Duration,
    /// A CPU with runnable tasks and no progress for this long is a stall (exit 3).
    pub stall_after: Duration,
    /// Ends the run after this long even if tasks remain (they are killed).
    pub deadline: Option<Duration>,
    /// Keep each process's `/proc/PID` files as it exits ([`RunReport::proc_snapshots`]).
    pub proc_snapshots: bool,
    /// How long the OOM reaper waits for a victim to exit by itself (`OOM_REAPER_DELAY`,
    /// 2 s in Linux).
    pub oom_reaper_delay: Duration,
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            progress_every: Duration::from_millis(100),
            seed: 0,
            quantum: 64,
            sample_every: Duration::from_millis(100),
            check_every: Duration::from_millis(250),
            stall_after: Duration::from_secs(10),
            deadline: None,
            proc_snapshots: false,
            oom_reaper_delay: Duration::from_secs(2),
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Its workloads finished (or the run's deadline ended it).
    Ok,
    /// The OOM killer killed it.
    Killed,
    /// SIGSEGV.
    Segv,
    /// SIGBUS.
    Bus,
}

impl ExitKind {
    /// Returns the report's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::Ok => "ok",
            ExitKind::Killed => "killed",
            ExitKind::Segv => "segv",
            ExitKind::Bus => "bus",
        }
    }
}

/// One process in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessReport {
    /// Its pid.
    pub pid: Pid,
    /// Its name.
    pub name: String,
    /// `oom_score_adj`.
    pub oom_score_adj: i32,
    /// How it ended.
    pub exit: ExitKind,
    /// Minor faults.
    pub min_flt: u64,
    /// Major faults.
    pub maj_flt: u64,
    /// Peak resident set (VmHWM) in kB.
    pub rss_kb: u64,
    /// Swapped-out pages (VmSwap) in kB at exit.
    pub swap_kb: u64,
    /// The signal's description, for segv and bus.
    pub signal: Option<String>,
    /// When it started and ended, in milliseconds since the run started.
    pub lifetime_ms: (u64, u64),
}

impl ProcessReport {
    /// Returns its minor and major faults per second of its lifetime.
    pub fn faults_per_second(&self) -> f64 {
        let ms = self.lifetime_ms.1.saturating_sub(self.lifetime_ms.0).max(1);
        (self.min_flt + self.maj_flt) as f64 * 1000.0 / ms as f64
    }
}

/// TLB figures summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TlbReport {
    /// Accesses that hit the L1 or L2 TLB.
    pub hits: u64,
    /// Accesses that missed both.
    pub misses: u64,
    /// Page and full flushes.
    pub flushes: u64,
    /// Shootdown IPIs sent.
    pub shootdown_ipis: u64,
    /// Average memory access time in simulated cycles.
    pub amat_cycles: f64,
}

/// One sample of the time series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Milliseconds since the run started.
    pub t_ms: u64,
    /// `/proc/meminfo` fields in kB (Linux names).
    pub meminfo: Vec<(String, u64)>,
    /// `/proc/vmstat` counters (Linux names).
    pub vmstat: Vec<(String, u64)>,
}

/// What the daemons did in a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DaemonReport {
    /// Wake-ups sent to kswapd.
    pub kswapd_wakeups: u64,
    /// `balance_pgdat` runs (`pageoutrun`).
    pub kswapd_runs: u64,
    /// Runs that left the node balanced.
    pub kswapd_balanced_runs: u64,
    /// Slab objects kswapd's shrinker calls freed.
    pub kswapd_slab_freed: u64,
    /// `kswapd_failures` at the end.
    pub kswapd_failures: u32,
    /// The flusher.
    pub flusher: FlusherStats,
    /// The OOM reaper.
    pub reaper: ReaperStats,
    /// The I/O engine.
    pub io: IoStats,
    /// Samples the sampler took.
    pub samples: u64,
    /// Messages each actor handled, by actor name.
    pub messages: Vec<(String, u64)>,
}

/// A process killed for want of memory, as the kernel log reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKill {
    /// The victim.
    pub pid: Pid,
    /// Its name.
    pub name: String,
    /// Its `oom_score_adj`.
    pub oom_score_adj: i32,
    /// `total-vm` in kB.
    pub total_vm_kb: u64,
    /// `anon-rss` in kB.
    pub anon_rss_kb: u64,
    /// `file-rss` in kB.
    pub file_rss_kb: u64,
    /// `shmem-rss` in kB.
    pub shmem_rss_kb: u64,
    /// Page tables in kB (`pgtables`).
    pub pgtables_kb: u64,
    /// Milliseconds into the run.
    pub t_ms: u64,
}

impl OomKill {
    /// The kernel's `Out of memory: Killed process …` line (`__oom_kill_process`).
    pub fn kernel_line(&self) -> String {
        format!(
            "Out of memory: Killed process {} ({}) total-vm:{}kB, anon-rss:{}kB, file-rss:{}kB, shmem-rss:{}kB, UID:0 pgtables:{}kB oom_score_adj:{}",
            self.pid.0,
            self.name,
            self.total_vm_kb,
            self.anon_rss_kb,
            self.file_rss_kb,
            self.shmem_rss_kb,
            self.pgtables_kb,
            self.oom_score_adj
        )
    }
}

/// What a progress callback sees, every [`RunOpts::progress_every`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunProgress {
    /// Time since the run started.
    pub elapsed: Duration,
    /// The run's deadline, if it has one.
    pub deadline: Option<Duration>,
    /// Processes started so far.
    pub started: usize,
    /// Processes in the plan (forks not included).
    pub planned: usize,
    /// Tasks alive (running, runnable or waiting for I/O).
    pub live_tasks: usize,
    /// `MemFree` in kB.
    pub mem_free_kb: u64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// Wall-clock seconds.
    pub wall_seconds: f64,
    /// The seed.
    pub seed: u64,
    /// `/proc/meminfo` at the end, in kB.
    pub meminfo: Vec<(String, u64)>,
    /// `/proc/vmstat` at the end.
    pub vmstat: Vec<(String, u64)>,
    /// TLB figures.
    pub tlb: TlbReport,
    /// Data integrity, summed over every task.
    pub integrity: Integrity,
    /// Invariant checks run, and violations found.
    pub invariant_checks: u64,
    /// Invariant violations (the first few messages).
    pub invariant_violations: Vec<String>,
    /// Every process, by pid.
    pub processes: Vec<ProcessReport>,
    /// The sampler's time series.
    pub samples: Vec<Sample>,
    /// The watchdog's dump, if a CPU stalled.
    pub stall: Option<String>,
    /// What the daemons did.
    pub daemons: DaemonReport,
    /// Processes killed for want of memory, in order.
    pub oom_kills: Vec<OomKill>,
    /// Each process's `/proc/PID` files as it exited (with [`RunOpts::proc_snapshots`]).
    pub proc_snapshots: Vec<ProcSnapshot>,
}

/// A process's `/proc/PID` files, taken as its last thread exited (before the teardown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSnapshot {
    /// The process.
    pub pid: Pid,
    /// `status`, `maps`, `smaps`, `oom_score`, `oom_score_adj` and `statm`, by file name.
    pub files: Vec<(&'static str, String)>,
}

/// Errors that stop a run before it starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// A process plan names a CPU the machine does not have.
    #[error("process {name}: CPU {cpu} does not exist (the machine has {cpus})")]
    NoSuchCpu {
        /// The process.
        name: String,
        /// The CPU.
        cpu: u32,
        /// How many the machine has.
        cpus: u32,
    },
    /// A process plan has no threads.
    #[error("process {0}: no threads")]
    NoThreads(String),
    /// The machine already ran.
    #[error("the machine has already run; boot a new one")]
    AlreadyRan,
}

/// An I/O request a task waits for, and what it does when the task runs again.
enum IoWait {
    /// A read: copy the data to the user buffer.
    Read { buf: VirtAddr },
    /// A write: nothing more.
    Write,
}

struct Task {
    pid: Pid,
    space: Arc<AddressSpace>,
    workload: Box<dyn Workload>,
    last: OpResult,
    cpus: Vec<CpuId>,
    /// The process got a fatal signal: the task stops before its next operation.
    killed: Arc<AtomicBool>,
    /// A completed I/O request the task has not seen yet.
    io_done: Option<(IoWait, IoDone)>,
    /// Its `task_struct` in simulated RAM.
    kobj: KObj<TaskStruct>,
    /// An access to retry after the OOM killer made room.
    retry: Option<Op>,
}

/// `task_struct` holds the simulator's record (Linux's offsets depend on the kernel
/// configuration): [`TASK_MAGIC`] at 0 (zeroed when freed), the pid (tgid) at 8 and the
/// thread's index in its process at 16.
pub const TASK_MAGIC: u64 = u64::from_le_bytes(*b"taskstrc");

/// `dup_task_struct`: a `task_struct` from its cache on `cpu` (a remote CPU's lists for the
/// driver, which is not a CPU), filled in; ENOMEM if the slab cannot grow.
fn alloc_task_struct(
    slab: &SlabAllocator,
    cpu: CpuId,
    shared_pin: bool,
    pid: Pid,
    thread: u64,
) -> Result<KObj<TaskStruct>, Errno> {
    let pin = if shared_pin {
        slab.cpu_shared(cpu)
    } else {
        slab.cpu(cpu)
    };
    let obj = pin
        .alloc_obj::<TaskStruct>(Gfp::GFP_KERNEL)
        .map_err(|_| Errno::Enomem)?;
    let mem = pin.mem();
    for (off, v) in [(0, TASK_MAGIC), (8, pid.0 as u64), (16, thread)] {
        mem.write_u64(PhysAddr(obj.addr().0 + off), v)
            .expect("a slab object is in RAM");
    }
    Ok(obj)
}

/// `free_task_struct`, on the CPU where the task ends.
fn free_task_struct(slab: &SlabAllocator, cpu: CpuId, obj: KObj<TaskStruct>) {
    let pin = slab.cpu(cpu);
    pin.mem()
        .write_u64(PhysAddr(obj.addr().0), 0)
        .expect("a slab object is in RAM");
    pin.free_obj(obj);
}

struct Proc {
    name: String,
    oom_score_adj: i32,
    live_threads: usize,
    /// SIGKILL or a fatal signal: its threads stop before their next operation.
    killed: Arc<AtomicBool>,
    /// Chosen by the OOM killer.
    oom_victim: bool,
    /// Its address space is torn down (`exit_mmap` done, which sets `MMF_OOM_SKIP`).
    mm_gone: bool,
    /// The reaper has dealt with it (`MMF_OOM_SKIP`): the OOM killer may pick another.
    reaped: Arc<AtomicBool>,
    exit: Option<(ExitKind, Option<String>)>,
    integrity: Integrity,
    faults: (u64, u64),
    hwm_kb: u64,
    swap_kb: u64,
    start_ms: u64,
    end_ms: u64,
}

struct Shared {
    start: Instant,
    mem_total: u64,
    quantum: u32,
    queues: Vec<Mutex<VecDeque<Task>>>,
    procs: Mutex<BTreeMap<Pid, Proc>>,
    next_pid: AtomicU64,
    live_tasks: AtomicUsize,
    /// Tasks waiting for I/O (live, in no run queue).
    parked: AtomicUsize,
    pending_starts: AtomicUsize,
    stop: AtomicBool,
    progress: Vec<AtomicU64>,
    rr: AtomicUsize,
    cpus_done: AtomicUsize,
    /// Live address spaces by pid (the machine's view, for meminfo).
    spaces: Arc<Mutex<BTreeMap<Pid, Arc<AddressSpace>>>>,
    /// Processes that could not start.
    failed: Mutex<Vec<ProcessReport>>,
    io: Mailbox<IoMsg>,
    reaper: Mailbox<ReaperMsg>,
    oom_kills: Mutex<Vec<OomKill>>,
    /// `oom_lock`: one OOM kill decision at a time.
    oom_lock: Mutex<()>,
    /// Invariant violations found by the CPUs (address spaces at exit).
    violations: Mutex<Vec<String>>,
    proc_snapshots: Option<Mutex<Vec<ProcSnapshot>>>,
    /// The machine's total pages for `oom_score` (RAM plus swap).
    oom_totalpages: u64,
    /// The slab, for `task_struct`s.
    slab: Arc<SlabAllocator>,
}

/// What one CPU thread hands back.
struct CpuResult {
    ctx: CpuCtx,
}

impl Shared {
    fn enqueue(&self, task: Task) {
        self.live_tasks.fetch_add(1, Ordering::AcqRel);
        self.requeue(task);
    }

    /// Puts a task that is already counted live back on a run queue.
    fn requeue(&self, task: Task) {
        let cpu = task.cpus[self.rr.fetch_add(1, Ordering::Relaxed) % task.cpus.len()];
        self.queues[cpu.index()].lock().push_back(task);
    }

    fn alloc_pid(&self) -> Pid {
        Pid(self.next_pid.fetch_add(1, Ordering::Relaxed) as u32)
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// A fatal signal for the whole process: every thread stops before its next operation.
    fn signal_process(&self, task: &Task) {
        task.killed.store(true, Ordering::Release);
    }

    /// `pagefault_out_of_memory` → `out_of_memory`, serialized by the OOM lock: if an earlier
    /// victim is still exiting, wait for it (`oom_evaluate_task` aborts the scan); otherwise
    /// pick the process with the highest `oom_badness` (ties to the later pid, as the scan
    /// order does) and kill it (`oom_kill_process`): SIGKILL to its threads, the kernel log
    /// line, `oom_kill` counted, the victim queued for the reaper. Returns the victim, or
    /// `None` when the caller should just retry, or when nothing is killable.
    fn out_of_memory(&self) -> OomDecision {
        let _oom_lock = self.oom_lock.lock();
        let spaces: Vec<(Pid, Arc<AddressSpace>)> = self
            .spaces
            .lock()
            .iter()
            .map(|(p, s)| (*p, s.clone()))
            .collect();
        let mut procs = self.procs.lock();
        if procs
            .values()
            .any(|p| p.oom_victim && !p.mm_gone && !p.reaped.load(Ordering::Acquire))
        {
            return OomDecision::Wait;
        }
        let mut chosen: Option<(i64, Pid, Arc<AddressSpace>)> = None;
        for (pid, space) in spaces {
            let Some(p) = procs.get(&pid) else { continue };
            if p.live_threads == 0 || p.exit.is_some() || p.oom_victim {
                continue;
            }
            let Some(points) = oom_badness(&space, p.oom_score_adj, self.oom_totalpages) else {
                continue;
            };
            if chosen.as_ref().is_none_or(|c| points >= c.0) {
                chosen = Some((points, pid, space));
            }
        }
        let Some((_, pid, space)) = chosen else {
            return OomDecision::NoVictim;
        };
        let p = procs.get_mut(&pid).expect("chosen from the table");
        p.oom_victim = true;
        p.killed.store(true, Ordering::Release);
        if p.exit.is_none() {
            p.exit = Some((ExitKind::Killed, Some("killed by the OOM killer".into())));
        }
        let (name, adj, reaped) = (p.name.clone(), p.oom_score_adj, p.reaped.clone());
        drop(procs);
        let rss = space.rss();
        let kill = OomKill {
            pid,
            name: name.clone(),
            oom_score_adj: adj,
            total_vm_kb: space.core().total_vm() * 4,
            anon_rss_kb: rss.anon * 4,
            file_rss_kb: rss.file * 4,
            shmem_rss_kb: rss.shmem * 4,
            pgtables_kb: space.mm().pgtables_bytes() >> 10,
            t_ms: self.now_ms(),
        };
        tracing::event!(
            name: "mark_victim",
            target: "mm_trace",
            tracing::Level::TRACE,
            pid = pid.0,
            comm = %name,
            total_vm = kill.total_vm_kb,
            anon_rss = kill.anon_rss_kb,
            oom_score_adj = adj,
        );
        tracing::warn!(target: "mm_sim::oom", "{}", kill.kernel_line());
        self.oom_kills.lock().push(kill);
        self.reaper.send(ReaperMsg::Reap {
            pid,
            name,
            space,
            reaped,
        });
        OomDecision::Killed(pid)
    }
}

/// What the OOM killer did for a failed fault.
enum OomDecision {
    /// It killed this process.
    Killed(Pid),
    /// An earlier victim is still exiting: retry later.
    Wait,
    /// No process is killable (Linux panics; the machine ends the faulting process).
    NoVictim,
}

fn errno(r: Result<(), Errno>) -> OpResult {
    match r {
        Ok(()) => OpResult::Ok,
        Err(e) => OpResult::Err(e),
    }
}

/// What an operation did.
enum Step {
    /// It finished with this result.
    Done(OpResult),
    /// It needs the disk: the task waits for the request.
    Io {
        file: u32,
        offset: u64,
        op: IoOp,
        wait: IoWait,
    },
}

/// A fatal signal: how the process ends and the signal's description.
type Fatal = (ExitKind, String);

fn fatal(e: AccessError) -> Fatal {
    match e {
        AccessError::Signal(sig @ Signal::Bus { .. }) => (ExitKind::Bus, sig.to_string()),
        AccessError::Signal(sig) => (ExitKind::Segv, sig.to_string()),
        AccessError::Oom { addr } => (ExitKind::Killed, format!("out of memory at {addr}")),
    }
}

/// Runs one operation of `task` on `ctx`. `Err` carries the fatal signal.
fn execute(shared: &Shared, ctx: &mut CpuCtx, task: &Task, op: Op) -> Result<Step, Fatal> {
    let s = &task.space;
    Ok(Step::Done(match op {
        Op::Mmap {
            addr,
            len,
            prot,
            flags,
        } => {
            match s.mmap(
                ctx,
                addr.unwrap_or(VirtAddr(0)),
                len,
                ProtFlags::from_bits_truncate(prot),
                MapFlags::from_bits_truncate(flags),
                None,
            ) {
                Ok(a) => OpResult::Addr(a),
                Err(e) => OpResult::Err(e),
            }
        }
        Op::Munmap { addr, len } => errno(s.munmap(ctx, addr, len)),
        Op::Mremap {
            addr,
            old_len,
            new_len,
            flags,
            new_addr,
        } => match MremapFlags::from_bits(flags) {
            // Unknown bits: EINVAL, as do_mremap checks first.
            None => OpResult::Err(Errno::Einval),
            Some(f) => match s.mremap(ctx, addr, old_len, new_len, f, new_addr) {
                Ok(a) => OpResult::Addr(a),
                Err(e) => OpResult::Err(e),
            },
        },
        Op::Mprotect { addr, len, prot } => {
            errno(s.mprotect(ctx, addr, len, ProtFlags::from_bits_truncate(prot)))
        }
        Op::Madvise { addr, len, advice } => errno(s.madvise(ctx, addr, len, advice)),
        // brk(NULL) is a brk below the heap's start: it returns the current break (and takes
        // the mmap lock as a CPU, answering shootdowns while it waits).
        Op::Brk { addr } => OpResult::Addr(s.brk(ctx, addr.unwrap_or(VirtAddr(0)))),
        Op::Load { addr } => OpResult::Value(ctx.load_u64(s, addr).map_err(fatal)?),
        Op::Store { addr, value } => {
            ctx.store_u64(s, addr, value).map_err(fatal)?;
            OpResult::Ok
        }
        Op::Fork { child } => {
            let pid = shared.alloc_pid();
            let kobj = match alloc_task_struct(&shared.slab, ctx.id(), false, pid, 0) {
                Ok(k) => k,
                Err(e) => return Ok(Step::Done(OpResult::Err(e))),
            };
            match s.fork(ctx, pid) {
                Ok(space) => {
                    let space = Arc::new(space);
                    let killed = Arc::new(AtomicBool::new(false));
                    {
                        let mut procs = shared.procs.lock();
                        let parent = procs.get(&task.pid).expect("the parent is alive");
                        let (name, adj) = (parent.name.clone(), parent.oom_score_adj);
                        procs.insert(pid, new_proc(name, adj, 1, shared.now_ms(), killed.clone()));
                    }
                    shared.spaces.lock().insert(pid, space.clone());
                    shared.enqueue(Task {
                        pid,
                        space,
                        workload: child,
                        last: OpResult::Start,
                        cpus: task.cpus.clone(),
                        killed,
                        io_done: None,
                        kobj,
                        retry: None,
                    });
                    OpResult::Forked(pid)
                }
                Err(e) => {
                    free_task_struct(&shared.slab, ctx.id(), kobj);
                    OpResult::Err(e)
                }
            }
        }
        Op::FileRead {
            file,
            offset,
            buf,
            len,
        } => match io_len_result(len) {
            Some(r) => r,
            None => {
                return Ok(Step::Io {
                    file,
                    offset,
                    op: IoOp::Read { len: len as usize },
                    wait: IoWait::Read { buf },
                })
            }
        },
        Op::FileWrite {
            file,
            offset,
            buf,
            len,
        } => {
            if let Some(r) = io_len_result(len) {
                r
            } else {
                // copy_from_user: a bad buffer fails the call with EFAULT, as in Linux.
                let mut data = vec![0u8; len as usize];
                match ctx.read(s, buf, &mut data) {
                    Ok(()) => {
                        return Ok(Step::Io {
                            file,
                            offset,
                            op: IoOp::Write { data },
                            wait: IoWait::Write,
                        })
                    }
                    Err(AccessError::Oom { addr }) => {
                        return Err(fatal(AccessError::Oom { addr }));
                    }
                    Err(AccessError::Signal(_)) => OpResult::Err(Errno::Efault),
                }
            }
        }
        Op::Yield => OpResult::Ok,
    }))
}

/// The result of a read or write whose length needs no I/O: EINVAL beyond one request's
/// limit, 0 for an empty one; `None` when it goes to the disk.
fn io_len_result(len: u64) -> Option<OpResult> {
    if len > MAX_IO_BYTES {
        Some(OpResult::Err(Errno::Einval))
    } else if len == 0 {
        Some(OpResult::Value(0))
    } else {
        None
    }
}

/// Finishes an I/O request the task waited for: a read copies its data to the user buffer
/// (copy_to_user; a bad buffer gives EFAULT).
fn finish_io(ctx: &mut CpuCtx, task: &Task, wait: IoWait, done: IoDone) -> Result<OpResult, Fatal> {
    Ok(match (wait, done) {
        (_, IoDone::Err(e)) => OpResult::Err(e),
        (IoWait::Write, IoDone::Written(n)) => OpResult::Value(n as u64),
        (IoWait::Read { buf }, IoDone::Read(data)) => match ctx.write(&task.space, buf, &data) {
            Ok(()) => OpResult::Value(data.len() as u64),
            Err(AccessError::Oom { addr }) => return Err(fatal(AccessError::Oom { addr })),
            Err(AccessError::Signal(_)) => OpResult::Err(Errno::Efault),
        },
        (_, other) => unreachable!("an I/O request completed as another kind: {other:?}"),
    })
}

fn new_proc(
    name: String,
    oom_score_adj: i32,
    threads: usize,
    start_ms: u64,
    killed: Arc<AtomicBool>,
) -> Proc {
    Proc {
        killed,
        oom_victim: false,
        mm_gone: false,
        reaped: Arc::new(AtomicBool::new(false)),
        start_ms,
        end_ms: start_ms,
        name,
        oom_score_adj,
        live_threads: threads,
        exit: None,
        integrity: Integrity::default(),
        faults: (0, 0),
        hwm_kb: 0,
        swap_kb: 0,
    }
}

/// `/proc/PID/oom_score` (`proc_oom_score`): `(1000 + badness * 1000 / totalpages) * 2 / 3`,
/// 0 for an unkillable task (`oom_score_adj` -1000).
pub fn oom_score(space: &AddressSpace, oom_score_adj: i32, totalpages: u64) -> u64 {
    match oom_badness(space, oom_score_adj, totalpages) {
        Some(badness) if totalpages > 0 => {
            ((1000 + badness * 1000 / totalpages as i64) * 2 / 3).max(0) as u64
        }
        _ => 0,
    }
}

/// `oom_badness`: resident pages, swap entries and page-table pages, plus `oom_score_adj`
/// thousandths of `totalpages`; `None` (LONG_MIN) for an unkillable task (adj -1000).
fn oom_badness(space: &AddressSpace, oom_score_adj: i32, totalpages: u64) -> Option<i64> {
    if oom_score_adj == -1000 {
        return None;
    }
    let rss = space.rss();
    let pages = rss.anon + rss.file + rss.shmem + rss.swap;
    let pgtables = space.mm().pgtables_bytes() / PAGE_SIZE as u64;
    Some((pages + pgtables) as i64 + oom_score_adj as i64 * (totalpages / 1000) as i64)
}

/// The `/proc/PID` files of a process.
fn snapshot_files(
    ctx: &mut CpuCtx,
    space: &AddressSpace,
    pid: Pid,
    name: &str,
    oom_score_adj: i32,
    threads: usize,
    totalpages: u64,
) -> Vec<(&'static str, String)> {
    // The header of `proc_pid_status` (`task_name`, `task_state`), then `task_mem`, then the
    // thread count (`task_sig` and the rest are not simulated).
    let mut status = format!(
        "Name:\t{name}\nUmask:\t0022\nState:\tR (running)\nTgid:\t{p}\nNgid:\t0\nPid:\t{p}\nPPid:\t1\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t\n",
        p = pid.0
    );
    status.push_str(&mm_vma::proc_status(space));
    status.push_str(&format!(
        "CoreDumping:\t0\nTHP_enabled:\t1\nThreads:\t{threads}\n"
    ));
    vec![
        ("status", status),
        ("statm", mm_vma::proc_statm(space)),
        ("maps", mm_vma::proc_maps(space, ctx)),
        ("smaps", mm_vma::proc_smaps(space, ctx)),
        ("smaps_rollup", mm_vma::proc_smaps_rollup(space, ctx)),
        (
            "oom_score",
            format!("{}\n", oom_score(space, oom_score_adj, totalpages)),
        ),
        ("oom_score_adj", format!("{oom_score_adj}\n")),
    ]
}

/// Ends one thread of a process; the last one tears the address space down on this CPU.
fn thread_exit(shared: &Shared, ctx: &mut CpuCtx, task: Task, how: Option<Fatal>) {
    let (last, threads, name, adj) = {
        let mut procs = shared.procs.lock();
        let p = procs.get_mut(&task.pid).expect("a task's process exists");
        p.integrity.add(task.workload.integrity());
        let threads = p.live_threads;
        p.live_threads -= 1;
        if let Some((kind, msg)) = how {
            if p.exit.is_none() {
                p.exit = Some((kind, Some(msg)));
            }
        }
        let last = p.live_threads == 0;
        // The name and adj only matter to the last thread's /proc snapshot.
        let name = if last { p.name.clone() } else { String::new() };
        (last, threads, name, p.oom_score_adj)
    };
    if last {
        let space = &task.space;
        if let Err(e) = space.check_invariants(ctx) {
            let mut v = shared.violations.lock();
            if v.len() < 8 {
                v.push(format!("pid {}: {e}", task.pid.0));
            }
        }
        let (min, maj) = space.core().faults();
        let hwm_kb = space.core().hiwater_rss() * 4;
        let swap_kb = space.rss().swap * 4;
        if let Some(snaps) = &shared.proc_snapshots {
            let files = snapshot_files(
                ctx,
                space,
                task.pid,
                &name,
                adj,
                threads,
                shared.oom_totalpages,
            );
            snaps.lock().push(ProcSnapshot {
                pid: task.pid,
                files,
            });
        }
        space.exit(ctx);
        shared.spaces.lock().remove(&task.pid);
        let mut procs = shared.procs.lock();
        let p = procs.get_mut(&task.pid).expect("a task's process exists");
        p.faults = (min, maj);
        p.mm_gone = true;
        p.end_ms = shared.now_ms();
        p.hwm_kb = hwm_kb;
        p.swap_kb = swap_kb;
        p.exit.get_or_insert((ExitKind::Ok, None));
    }
    free_task_struct(&shared.slab, ctx.id(), task.kobj);
    // Only now, after the teardown's shootdowns: a CPU that sees no live task may stop.
    shared.live_tasks.fetch_sub(1, Ordering::AcqRel);
}

/// How a quantum ended.
enum QuantumEnd {
    /// The task runs again later.
    Preempted,
    /// The task exits (normally with `None`).
    Exit(Option<Fatal>),
    /// The task waits for a disk request.
    Io {
        file: u32,
        offset: u64,
        op: IoOp,
        wait: IoWait,
    },
}

/// Runs one quantum of `task`.
fn run_quantum(shared: &Shared, ctx: &mut CpuCtx, task: &mut Task) -> QuantumEnd {
    if let Some((wait, done)) = task.io_done.take() {
        match finish_io(ctx, task, wait, done) {
            Ok(r) => task.last = r,
            Err(f) => return QuantumEnd::Exit(Some(f)),
        }
    }
    let env = WorkloadEnv {
        pid: task.pid,
        mem_total: shared.mem_total,
        elapsed: shared.start.elapsed(),
    };
    for _ in 0..shared.quantum {
        if task.killed.load(Ordering::Acquire) {
            return QuantumEnd::Exit(None);
        }
        let next = match task.retry.take() {
            Some(op) => Some(op),
            None => task.workload.next(task.last, &env),
        };
        let Some(op) = next else {
            return QuantumEnd::Exit(None);
        };
        let yield_now = matches!(op, Op::Yield);
        // An access the OOM killer may make room for is retried, as a faulting task returns
        // to user space and faults again.
        let retry = match &op {
            Op::Load { addr } => Some(Op::Load { addr: *addr }),
            Op::Store { addr, value } => Some(Op::Store {
                addr: *addr,
                value: *value,
            }),
            _ => None,
        };
        match execute(shared, ctx, task, op) {
            Ok(Step::Done(r)) => task.last = r,
            Ok(Step::Io {
                file,
                offset,
                op,
                wait,
            }) => {
                return QuantumEnd::Io {
                    file,
                    offset,
                    op,
                    wait,
                }
            }
            Err(f) if f.0 == ExitKind::Killed => {
                // VM_FAULT_OOM: pagefault_out_of_memory.
                match shared.out_of_memory() {
                    OomDecision::Killed(victim) if victim == task.pid => {
                        return QuantumEnd::Exit(None)
                    }
                    OomDecision::Killed(_) | OomDecision::Wait if retry.is_some() => {
                        task.retry = retry;
                        return QuantumEnd::Preempted;
                    }
                    _ => {
                        shared.signal_process(task);
                        return QuantumEnd::Exit(Some(f));
                    }
                }
            }
            Err(f) => {
                shared.signal_process(task);
                return QuantumEnd::Exit(Some(f));
            }
        }
        if yield_now {
            break;
        }
    }
    QuantumEnd::Preempted
}

/// Parks `task` on a disk request; its completion (on the I/O engine's thread) puts it back
/// on a run queue.
fn submit_io(shared: &Arc<Shared>, task: Task, file: u32, offset: u64, op: IoOp, wait: IoWait) {
    let sh = shared.clone();
    shared.parked.fetch_add(1, Ordering::AcqRel);
    let slot = Arc::new(Mutex::new(Some((task, wait))));
    let back = slot.clone();
    let req = IoRequest {
        file,
        offset,
        op,
        done: Box::new(move |done| {
            let (mut task, wait) = back.lock().take().expect("a request completes once");
            task.io_done = Some((wait, done));
            sh.requeue(task);
            sh.parked.fetch_sub(1, Ordering::AcqRel);
        }),
    };
    if !shared.io.send(IoMsg::Submit(req)) {
        // The engine is gone (the run is ending): the request fails.
        if let Some((mut task, wait)) = slot.lock().take() {
            task.io_done = Some((wait, IoDone::Err(Errno::Eio)));
            shared.requeue(task);
            shared.parked.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn cpu_main(shared: Arc<Shared>, mut ctx: CpuCtx) -> CpuResult {
    let me = ctx.id();
    loop {
        ctx.mmu().handle_ipis();
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let task = shared.queues[me.index()].lock().pop_front();
        let Some(mut task) = task else {
            if shared.live_tasks.load(Ordering::Acquire) == 0
                && shared.pending_starts.load(Ordering::Acquire) == 0
            {
                break;
            }
            // Idle: keep no user mm loaded, so this CPU needs no more flush IPIs for it.
            ctx.mmu().leave_mm();
            mm_sync::thread::yield_now();
            continue;
        };
        // A thread of a process that died meanwhile (another thread's signal) ends here.
        if task.killed.load(Ordering::Acquire) {
            thread_exit(&shared, &mut ctx, task, None);
            continue;
        }
        ctx.enter(&task.space);
        let end = run_quantum(&shared, &mut ctx, &mut task);
        shared.progress[me.index()].fetch_add(1, Ordering::Relaxed);
        match end {
            QuantumEnd::Preempted => shared.queues[me.index()].lock().push_back(task),
            QuantumEnd::Exit(how) => thread_exit(&shared, &mut ctx, task, how),
            QuantumEnd::Io {
                file,
                offset,
                op,
                wait,
            } => submit_io(&shared, task, file, offset, op, wait),
        }
    }
    // Kill what is left (deadline or stall) so every address space is torn down; tasks
    // waiting for I/O come back when the engine shuts down.
    while shared.live_tasks.load(Ordering::Acquire) > 0 {
        let task = shared.queues[me.index()].lock().pop_front();
        match task {
            Some(task) => {
                ctx.enter(&task.space);
                thread_exit(&shared, &mut ctx, task, None);
            }
            None => {
                ctx.mmu().leave_mm();
                ctx.mmu().handle_ipis();
                mm_sync::thread::yield_now();
            }
        }
    }
    // Leave together: until every CPU is done, another one may still tear an address space
    // down and wait for this CPU's acknowledgement of its shootdown.
    ctx.mmu().leave_mm();
    shared.cpus_done.fetch_add(1, Ordering::AcqRel);
    while shared.cpus_done.load(Ordering::Acquire) < shared.queues.len() {
        ctx.mmu().handle_ipis();
        mm_sync::thread::yield_now();
    }
    ctx.mmu().handle_ipis();
    CpuResult { ctx }
}

/// Spawns a named thread in the run's scope (the name shows in traces and panics).
fn spawn_named<'scope, 'env, T: Send + 'scope>(
    s: &'scope mm_sync::thread::Scope<'scope, 'env>,
    name: String,
    f: impl FnOnce() -> T + Send + 'scope,
) -> mm_sync::thread::ScopedJoinHandle<'scope, T> {
    mm_sync::thread::Builder::new()
        .name(name)
        .spawn_scoped(s, f)
        .expect("the host can spawn a thread")
}

/// The daemons' status lines, for the watchdog.
struct Statuses {
    kswapd: ActorStatus,
    flusher: ActorStatus,
    reaper: ActorStatus,
    io: ActorStatus,
    sampler: ActorStatus,
}

impl Statuses {
    fn all(&self) -> [&ActorStatus; 5] {
        [
            &self.kswapd,
            &self.flusher,
            &self.reaper,
            &self.io,
            &self.sampler,
        ]
    }
}

impl Machine {
    /// Runs `plans` to completion (or to the deadline) on the machine's CPUs and returns what
    /// happened. The machine can run again afterwards, with what the run left behind.
    pub fn run(&mut self, plans: Vec<ProcessPlan>, opts: &RunOpts) -> Result<RunReport, RunError> {
        self.run_observed(plans, opts, &mut |_| {})
    }

    /// [`Machine::run`], calling `progress` from the driver thread every
    /// [`RunOpts::progress_every`].
    pub fn run_observed(
        &mut self,
        plans: Vec<ProcessPlan>,
        opts: &RunOpts,
        progress: &mut dyn FnMut(&RunProgress),
    ) -> Result<RunReport, RunError> {
        let cpus = self.config().cpus;
        for p in &plans {
            if p.threads.is_empty() {
                return Err(RunError::NoThreads(p.name.clone()));
            }
            if let Some(c) = p.cpus.iter().flatten().find(|c| c.0 >= cpus) {
                return Err(RunError::NoSuchCpu {
                    name: p.name.clone(),
                    cpu: c.0,
                    cpus,
                });
            }
        }
        let kswapd_rx = self.take_kswapd_mailbox().ok_or(RunError::AlreadyRan)?;
        let ctxs = self.take_cpus().ok_or(RunError::AlreadyRan)?;
        let (io_tx, io_rx) = mm_sync::channel::unbounded();
        let (reaper_tx, reaper_rx) = mm_sync::channel::unbounded();
        let (flusher_tx, flusher_rx) = mm_sync::channel::unbounded();
        let (sampler_tx, sampler_rx) = mm_sync::channel::unbounded();
        let (io_box, reaper_box) = (Mailbox::new(io_tx), Mailbox::new(reaper_tx));
        let (flusher_box, sampler_box) = (Mailbox::new(flusher_tx), Mailbox::new(sampler_tx));
        let shared = Arc::new(Shared {
            start: Instant::now(),
            mem_total: self.buddy().totalram_pages() * PAGE_SIZE as u64,
            quantum: opts.quantum.max(1),
            queues: (0..cpus).map(|_| Mutex::new(VecDeque::new())).collect(),
            procs: Mutex::new(BTreeMap::new()),
            next_pid: AtomicU64::new(1000),
            live_tasks: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            pending_starts: AtomicUsize::new(plans.len()),
            stop: AtomicBool::new(false),
            progress: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
            rr: AtomicUsize::new(0),
            cpus_done: AtomicUsize::new(0),
            spaces: self.spaces.clone(),
            failed: Mutex::new(Vec::new()),
            io: io_box.clone(),
            reaper: reaper_box.clone(),
            oom_kills: Mutex::new(Vec::new()),
            oom_lock: Mutex::new(()),
            violations: Mutex::new(Vec::new()),
            proc_snapshots: opts.proc_snapshots.then(|| Mutex::new(Vec::new())),
            oom_totalpages: self.buddy().totalram_pages(),
            slab: self.slab_arc().clone(),
        });
        let statuses = Statuses {
            kswapd: ActorStatus::new("kswapd0"),
            flusher: ActorStatus::new("flusher (kworker/u:flush-8:0)"),
            reaper: ActorStatus::new("oom_reaper"),
            io: ActorStatus::new("io engine"),
            sampler: ActorStatus::new("sampler"),
        };
        let reaper_ctx = self.daemon_ctx();
        let mut spawn_ctx = self.daemon_ctx();
        let this: &Machine = self;
        let planned = plans.len();

        let outcome = mm_sync::thread::scope(|s| {
            let kswapd = spawn_named(s, "kswapd0".into(), || {
                let actor = Kswapd {
                    shared: this.kswapd.clone(),
                    buddy: this.buddy(),
                    slab: this.slab(),
                    reclaim: None,
                    cpu: CpuId(0),
                };
                daemon::run(actor, &kswapd_rx, &statuses.kswapd);
                kswapd_rx
            });
            let flusher = spawn_named(s, "flusher".into(), || {
                let actor = Flusher::new(
                    this.buddy(),
                    None,
                    this.config().sysctl.dirty_writeback_centisecs,
                    CpuId(0),
                );
                daemon::run(actor, &flusher_rx, &statuses.flusher).stats
            });
            let reaper = spawn_named(s, "oom_reaper".into(), || {
                let actor = Reaper::new(reaper_ctx, opts.oom_reaper_delay);
                daemon::run(actor, &reaper_rx, &statuses.reaper).stats
            });
            let io = spawn_named(s, "io_engine".into(), || {
                let actor = IoEngine::new(this.config().disk);
                daemon::run(actor, &io_rx, &statuses.io).stats
            });
            let sampler = spawn_named(s, "sampler".into(), || {
                let actor = Sampler::new(this, shared.start, opts.sample_every);
                daemon::run(actor, &sampler_rx, &statuses.sampler).samples
            });
            let cpu_handles: Vec<_> = ctxs
                .into_iter()
                .map(|ctx| {
                    let shared = shared.clone();
                    // Not scoped: a CPU deadlocked past the watchdog is left behind rather
                    // than joined, so that the run still ends and reports the stall.
                    mm_sync::thread::Builder::new()
                        .name(format!("cpu{}", ctx.id().0))
                        .spawn(move || cpu_main(shared, ctx))
                        .expect("the host can spawn a thread")
                })
                .collect();

            let mut plans: Vec<ProcessPlan> = plans;
            plans.sort_by_key(|p| p.start_after);
            let mut plans: VecDeque<ProcessPlan> = plans.into();
            let (mut checks, mut violations) = (0u64, Vec::new());
            let mut next_check = opts.check_every;
            let mut next_progress = Duration::ZERO;
            let mut last_progress: Vec<u64> = vec![0; cpus as usize];
            let mut last_change = Instant::now();
            let mut stall = None;
            loop {
                let now = shared.start.elapsed();
                while plans.front().is_some_and(|p| p.start_after <= now) {
                    let p = plans.pop_front().expect("front exists");
                    this.start_process(&shared, &mut spawn_ctx, p);
                    shared.pending_starts.fetch_sub(1, Ordering::AcqRel);
                }
                if now >= next_check {
                    checks += 1;
                    this.check_all(&mut violations);
                    next_check = now + opts.check_every;
                }
                if now >= next_progress {
                    progress(&RunProgress {
                        elapsed: now,
                        deadline: opts.deadline,
                        started: planned - plans.len(),
                        planned,
                        live_tasks: shared.live_tasks.load(Ordering::Acquire),
                        mem_free_kb: this.buddy().nr_free_pages() * (PAGE_SIZE as u64 / 1024),
                    });
                    next_progress = now + opts.progress_every;
                }
                // Watchdog: runnable work but no CPU made progress for `stall_after`.
                let cpu_progress: Vec<u64> = shared
                    .progress
                    .iter()
                    .map(|p| p.load(Ordering::Relaxed))
                    .collect();
                let runnable = shared.live_tasks.load(Ordering::Acquire)
                    > shared.parked.load(Ordering::Acquire);
                if cpu_progress != last_progress || !runnable {
                    last_progress = cpu_progress;
                    last_change = Instant::now();
                } else if last_change.elapsed() > opts.stall_after {
                    stall = Some(this.dump_state(&shared, &statuses));
                    shared.stop.store(true, Ordering::Release);
                }
                if opts.deadline.is_some_and(|d| now >= d) {
                    shared.stop.store(true, Ordering::Release);
                }
                let idle = shared.live_tasks.load(Ordering::Acquire) == 0 && plans.is_empty();
                if idle || shared.stop.load(Ordering::Acquire) {
                    break;
                }
                let wake = plans
                    .front()
                    .map_or(opts.sample_every, |p| p.start_after.saturating_sub(now));
                mm_sync::thread::sleep(wake.min(opts.sample_every).min(Duration::from_millis(5)));
            }
            // The driver starts nothing more. On a stop, the I/O engine completes what it has
            // queued first, so that parked tasks come back to their CPUs and are killed.
            shared.pending_starts.store(0, Ordering::Release);
            if shared.stop.load(Ordering::Acquire) {
                io_box.send(IoMsg::Shutdown);
            }
            // After a stall, give the CPUs a grace period to wind down; CPUs still stuck after
            // it are deadlocked and left behind (the machine cannot run again).
            if stall.is_some() {
                let grace = Instant::now() + opts.stall_after.min(Duration::from_secs(5));
                while Instant::now() < grace && !cpu_handles.iter().all(|h| h.is_finished()) {
                    mm_sync::thread::sleep(Duration::from_millis(10));
                }
            }
            let ctxs: Option<Vec<CpuCtx>> =
                if cpu_handles.iter().all(|h| h.is_finished()) || stall.is_none() {
                    Some(
                        cpu_handles
                            .into_iter()
                            .map(|h| h.join().expect("a CPU thread panicked").ctx)
                            .collect(),
                    )
                } else {
                    None
                };
            checks += 1;
            this.check_all(&mut violations);
            sampler_box.send(SamplerMsg::Sample);
            sampler_box.send(SamplerMsg::Shutdown);
            this.kswapd.mailbox().send(KswapdMsg::Shutdown);
            flusher_box.send(FlusherMsg::Shutdown);
            reaper_box.send(ReaperMsg::Shutdown);
            io_box.send(IoMsg::Shutdown);
            let kswapd_rx = kswapd.join().expect("kswapd panicked");
            this.return_kswapd_mailbox(kswapd_rx);
            let daemons = DaemonReport {
                flusher: flusher.join().expect("the flusher panicked"),
                reaper: reaper.join().expect("the OOM reaper panicked"),
                io: io.join().expect("the I/O engine panicked"),
                ..DaemonReport::default()
            };
            let samples = sampler.join().expect("the sampler panicked");
            (ctxs, checks, violations, stall, daemons, samples)
        });
        let (ctxs, mut checks, mut violations, stall, mut daemons, samples) = outcome;
        let exited = shared.procs.lock().len() as u64;
        checks += exited;
        violations.extend(std::mem::take(&mut *shared.violations.lock()));
        let ks = &self.kswapd;
        daemons.kswapd_wakeups = ks.wakeups();
        daemons.kswapd_runs = ks.pageoutrun();
        daemons.kswapd_balanced_runs = ks.balanced_runs();
        daemons.kswapd_slab_freed = ks.slab_freed();
        daemons.kswapd_failures = ks.failures();
        daemons.samples = samples.len() as u64;
        daemons.messages = statuses
            .all()
            .iter()
            .map(|st| (st.name().to_string(), st.messages()))
            .collect();

        let mut events = VmEvents::default();
        let mut tlb = TlbReport::default();
        let (mut cycles, mut accesses) = (0u64, 0u64);
        for c in ctxs.iter().flatten() {
            let e = c.events();
            events.pgfault += e.pgfault;
            events.pgmajfault += e.pgmajfault;
            events.pgreuse += e.pgreuse;
            let st = c.mmu_ref().stats();
            tlb.hits += st.l1_hits + st.l2_hits;
            tlb.misses += st.misses;
            tlb.flushes += st.page_flushes + st.full_flushes;
            tlb.shootdown_ipis += st.ipis_sent;
            cycles += c.mmu_ref().cycles();
            accesses += st.l1_hits + st.l2_hits + st.misses;
        }
        tlb.amat_cycles = if accesses == 0 {
            0.0
        } else {
            cycles as f64 / accesses as f64
        };
        self.record_run_events(events);
        if let Some(ctxs) = ctxs {
            self.return_cpus(ctxs);
        }
        let oom_kills = std::mem::take(&mut *shared.oom_kills.lock());
        self.record_oom_kills(oom_kills.len() as u64);
        let procs = std::mem::take(&mut *shared.procs.lock());
        let mut integrity = Integrity::default();
        let failed = std::mem::take(&mut *shared.failed.lock());
        let mut processes: Vec<ProcessReport> = procs
            .into_iter()
            .map(|(pid, p)| {
                integrity.add(p.integrity);
                let (kind, signal) = p.exit.unwrap_or((ExitKind::Ok, None));
                ProcessReport {
                    pid,
                    name: p.name,
                    oom_score_adj: p.oom_score_adj,
                    exit: kind,
                    min_flt: p.faults.0,
                    maj_flt: p.faults.1,
                    rss_kb: p.hwm_kb,
                    swap_kb: p.swap_kb,
                    signal,
                    lifetime_ms: (p.start_ms, p.end_ms),
                }
            })
            .collect();
        processes.extend(failed);
        processes.sort_by_key(|p| p.pid);
        let proc_snapshots = shared
            .proc_snapshots
            .as_ref()
            .map(|m| std::mem::take(&mut *m.lock()))
            .unwrap_or_default();
        Ok(RunReport {
            wall_seconds: shared.start.elapsed().as_secs_f64(),
            seed: opts.seed,
            meminfo: crate::procfs::meminfo_fields(self),
            vmstat: crate::procfs::vmstat_fields(self),
            tlb,
            integrity,
            invariant_checks: checks,
            invariant_violations: violations,
            processes,
            samples,
            stall,
            daemons,
            oom_kills,
            proc_snapshots,
        })
    }

    /// The invariant checker: page conservation and the allocators' structure invariants,
    /// each under its own locks. An address space is checked when its last thread exits
    /// (before the teardown), the one moment its page tables and RSS counters hold still.
    fn check_all(&self, violations: &mut Vec<String>) {
        let mut note = |r: Result<(), String>| {
            if let Err(e) = r {
                if violations.len() < 8 {
                    violations.push(e);
                }
            }
        };
        note(self.buddy().check_invariants().map_err(|e| e.to_string()));
        note(self.slab().check_invariants().map_err(|e| e.to_string()));
    }

    fn start_process(&self, shared: &Shared, ctx: &mut CpuCtx, p: ProcessPlan) {
        let pid = shared.alloc_pid();
        let space = match AddressSpace::new(self.vm(), ctx, pid, &Layout::plain()) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                // Like a failed exec: the process never runs; the report says why.
                shared.failed.lock().push(ProcessReport {
                    pid,
                    name: p.name,
                    oom_score_adj: p.oom_score_adj,
                    exit: ExitKind::Killed,
                    min_flt: 0,
                    maj_flt: 0,
                    rss_kb: 0,
                    swap_kb: 0,
                    signal: Some(format!("could not create the address space: {e}")),
                    lifetime_ms: (0, 0),
                });
                return;
            }
        };
        self.spaces.lock().insert(pid, space.clone());
        let cpus: Vec<CpuId> = p
            .cpus
            .clone()
            .unwrap_or_else(|| (0..self.config().cpus).map(CpuId).collect());
        let killed = Arc::new(AtomicBool::new(false));
        shared.procs.lock().insert(
            pid,
            new_proc(
                p.name.clone(),
                p.oom_score_adj,
                p.threads.len(),
                shared.now_ms(),
                killed.clone(),
            ),
        );
        let mut started = 0;
        for (i, w) in p.threads.into_iter().enumerate() {
            // The driver is not a CPU: it allocates through a shared pin of CPU 0's slabs.
            let kobj = match alloc_task_struct(&shared.slab, CpuId(0), true, pid, i as u64) {
                Ok(k) => k,
                Err(_) => {
                    // clone() failing for want of memory: the thread never starts.
                    shared
                        .procs
                        .lock()
                        .get_mut(&pid)
                        .expect("just added")
                        .live_threads -= 1;
                    continue;
                }
            };
            shared.enqueue(Task {
                pid,
                space: space.clone(),
                workload: w,
                last: OpResult::Start,
                cpus: cpus.clone(),
                killed: killed.clone(),
                io_done: None,
                kobj,
                retry: None,
            });
            started += 1;
        }
        if started == 0 {
            space.exit(ctx);
            self.spaces.lock().remove(&pid);
            let mut procs = shared.procs.lock();
            let p = procs.get_mut(&pid).expect("just added");
            p.exit = Some((ExitKind::Killed, Some("no memory for a task_struct".into())));
        }
    }

    fn dump_state(&self, shared: &Shared, statuses: &Statuses) -> String {
        let mut out = String::from("watchdog: no CPU made progress\n");
        for (i, q) in shared.queues.iter().enumerate() {
            let q = q.lock();
            out.push_str(&format!(
                "cpu {i}: progress {} queued {:?}\n",
                shared.progress[i].load(Ordering::Relaxed),
                q.iter().map(|t| t.pid.0).collect::<Vec<_>>()
            ));
        }
        for st in statuses.all() {
            out.push_str(&st.describe());
            out.push('\n');
        }
        out
    }
}
