//! Running workloads: one OS thread per simulated CPU, each running the tasks bound to it one
//! quantum at a time, while the driver thread starts processes on schedule, samples
//! `/proc/meminfo`, runs the invariant checker and watches for stalls.
//!
//! # Locking protocol
//! - Each CPU's run queue is a `Mutex<VecDeque<Task>>`: its CPU pops the front and pushes the
//!   task back after a quantum; the driver and forking CPUs push new tasks. No other lock is
//!   held while a task runs.
//! - The process table is a `Mutex<BTreeMap<Pid, Proc>>`, taken briefly to create, kill and
//!   reap processes; never while a task runs an operation.
//! - Kernel code runs on the CPU thread that entered it, with that CPU's `CpuCtx` (`&mut`, no
//!   lock); between quanta and while idle the CPU handles its TLB-shootdown IPIs.

use crate::workload::{Integrity, Op, OpResult, ProcessPlan, Workload, WorkloadEnv};
use crate::Machine;
use mm_sync::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use mm_sync::sync::{Arc, Mutex};
use mm_types::{CpuId, Errno, Pid, VirtAddr};

use mm_vma::{AccessError, AddressSpace, CpuCtx, Layout, MapFlags, ProtFlags, Signal, VmEvents};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How a run proceeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOpts {
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
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            seed: 0,
            quantum: 64,
            sample_every: Duration::from_millis(100),
            check_every: Duration::from_millis(250),
            stall_after: Duration::from_secs(10),
            deadline: None,
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

struct Task {
    pid: Pid,
    space: Arc<AddressSpace>,
    workload: Box<dyn Workload>,
    last: OpResult,
    cpus: Vec<CpuId>,
}

struct Proc {
    name: String,
    oom_score_adj: i32,
    live_threads: usize,
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
    pending_starts: AtomicUsize,
    stop: AtomicBool,
    progress: Vec<AtomicU64>,
    rr: AtomicUsize,
    cpus_done: AtomicUsize,
    /// Live address spaces by pid (the machine's view, for meminfo).
    spaces: Arc<Mutex<BTreeMap<Pid, Arc<AddressSpace>>>>,
    /// Processes that could not start.
    failed: Mutex<Vec<ProcessReport>>,
}

/// What one CPU thread hands back.
struct CpuResult {
    ctx: CpuCtx,
}

impl Shared {
    fn enqueue(&self, task: Task) {
        let cpu = task.cpus[self.rr.fetch_add(1, Ordering::Relaxed) % task.cpus.len()];
        self.live_tasks.fetch_add(1, Ordering::AcqRel);
        self.queues[cpu.index()].lock().push_back(task);
    }

    fn alloc_pid(&self) -> Pid {
        Pid(self.next_pid.fetch_add(1, Ordering::Relaxed) as u32)
    }
}

fn errno(r: Result<(), Errno>) -> OpResult {
    match r {
        Ok(()) => OpResult::Ok,
        Err(e) => OpResult::Err(e),
    }
}

/// Runs one operation of `task` on `ctx`. `Err` carries the fatal signal.
fn execute(
    shared: &Shared,
    ctx: &mut CpuCtx,
    task: &Task,
    op: Op,
) -> Result<OpResult, (ExitKind, String)> {
    let s = &task.space;
    let fatal = |e: AccessError| match e {
        AccessError::Signal(sig @ Signal::Bus { .. }) => (ExitKind::Bus, sig.to_string()),
        AccessError::Signal(sig) => (ExitKind::Segv, sig.to_string()),
        AccessError::Oom { addr } => (ExitKind::Killed, format!("out of memory at {addr}")),
    };
    Ok(match op {
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
        Op::Mprotect { addr, len, prot } => {
            errno(s.mprotect(ctx, addr, len, ProtFlags::from_bits_truncate(prot)))
        }
        Op::Madvise { addr, len, advice } => errno(s.madvise(ctx, addr, len, advice)),
        Op::Brk { addr } => {
            let cur = s.brk_value();
            OpResult::Addr(match addr {
                Some(a) => s.brk(ctx, a),
                None => cur,
            })
        }
        Op::Load { addr } => OpResult::Value(ctx.load_u64(s, addr).map_err(fatal)?),
        Op::Store { addr, value } => {
            ctx.store_u64(s, addr, value).map_err(fatal)?;
            OpResult::Ok
        }
        Op::Fork { child } => {
            let pid = shared.alloc_pid();
            match s.fork(ctx, pid) {
                Ok(space) => {
                    let space = Arc::new(space);
                    {
                        let mut procs = shared.procs.lock();
                        let parent = procs.get(&task.pid).expect("the parent is alive");
                        let (name, adj) = (parent.name.clone(), parent.oom_score_adj);
                        procs.insert(
                            pid,
                            new_proc(name, adj, 1, shared.start.elapsed().as_millis() as u64),
                        );
                    }
                    shared.spaces.lock().insert(pid, space.clone());
                    shared.enqueue(Task {
                        pid,
                        space,
                        workload: child,
                        last: OpResult::Start,
                        cpus: task.cpus.clone(),
                    });
                    OpResult::Forked(pid)
                }
                Err(e) => OpResult::Err(e),
            }
        }
        Op::Yield => OpResult::Ok,
    })
}

fn new_proc(name: String, oom_score_adj: i32, threads: usize, start_ms: u64) -> Proc {
    Proc {
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

/// Ends one thread of a process; the last one tears the address space down on this CPU.
fn thread_exit(shared: &Shared, ctx: &mut CpuCtx, task: Task, how: Option<(ExitKind, String)>) {
    let last = {
        let mut procs = shared.procs.lock();
        let p = procs.get_mut(&task.pid).expect("a task's process exists");
        p.integrity.add(task.workload.integrity());
        p.live_threads -= 1;
        if let Some((kind, msg)) = how {
            if p.exit.is_none() {
                p.exit = Some((kind, Some(msg)));
            }
        }
        p.live_threads == 0
    };
    if last {
        let space = &task.space;
        let (min, maj) = space.core().faults();
        let hwm_kb = space.core().hiwater_rss() * 4;
        let swap_kb = space.rss().swap * 4;
        space.exit(ctx);
        shared.spaces.lock().remove(&task.pid);
        let mut procs = shared.procs.lock();
        let p = procs.get_mut(&task.pid).expect("a task's process exists");
        p.faults = (min, maj);
        p.end_ms = shared.start.elapsed().as_millis() as u64;
        p.hwm_kb = hwm_kb;
        p.swap_kb = swap_kb;
        p.exit.get_or_insert((ExitKind::Ok, None));
    }
    // Only now, after the teardown's shootdowns: a CPU that sees no live task may stop.
    shared.live_tasks.fetch_sub(1, Ordering::AcqRel);
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
        let dead = shared
            .procs
            .lock()
            .get(&task.pid)
            .is_some_and(|p| p.exit.is_some());
        if dead {
            thread_exit(&shared, &mut ctx, task, None);
            continue;
        }
        ctx.enter(&task.space);
        let env = WorkloadEnv {
            pid: task.pid,
            mem_total: shared.mem_total,
            elapsed: shared.start.elapsed(),
        };
        let mut outcome = None;
        let mut done = false;
        for _ in 0..shared.quantum {
            let Some(op) = task.workload.next(task.last, &env) else {
                done = true;
                break;
            };
            let yield_now = matches!(op, Op::Yield);
            match execute(&shared, &mut ctx, &task, op) {
                Ok(r) => task.last = r,
                Err(fatal) => {
                    outcome = Some(fatal);
                    done = true;
                    break;
                }
            }
            if yield_now {
                break;
            }
        }
        shared.progress[me.index()].fetch_add(1, Ordering::Relaxed);
        if done {
            thread_exit(&shared, &mut ctx, task, outcome);
        } else {
            shared.queues[me.index()].lock().push_back(task);
        }
    }
    // Kill what is left (deadline or stall) so every address space is torn down.
    loop {
        let task = shared.queues[me.index()].lock().pop_front();
        let Some(task) = task else { break };
        ctx.enter(&task.space);
        thread_exit(&shared, &mut ctx, task, None);
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

impl Machine {
    /// Runs `plans` to completion (or to the deadline) on the machine's CPUs and returns what
    /// happened. A machine runs once.
    pub fn run(&mut self, plans: Vec<ProcessPlan>, opts: &RunOpts) -> Result<RunReport, RunError> {
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
        let ctxs = self.take_cpus().ok_or(RunError::AlreadyRan)?;
        let shared = Arc::new(Shared {
            start: Instant::now(),
            mem_total: self.buddy().totalram_pages() * 4096,
            quantum: opts.quantum.max(1),
            queues: (0..cpus).map(|_| Mutex::new(VecDeque::new())).collect(),
            procs: Mutex::new(BTreeMap::new()),
            next_pid: AtomicU64::new(1000),
            live_tasks: AtomicUsize::new(0),
            pending_starts: AtomicUsize::new(plans.len()),
            stop: AtomicBool::new(false),
            progress: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
            rr: AtomicUsize::new(0),
            cpus_done: AtomicUsize::new(0),
            spaces: self.spaces.clone(),
            failed: Mutex::new(Vec::new()),
        });
        let handles: Vec<_> = ctxs
            .into_iter()
            .map(|ctx| {
                let shared = shared.clone();
                mm_sync::thread::spawn(move || cpu_main(shared, ctx))
            })
            .collect();
        let mut plans: Vec<ProcessPlan> = plans;
        plans.sort_by_key(|p| p.start_after);
        let mut plans: VecDeque<ProcessPlan> = plans.into();
        let (mut samples, mut checks, mut violations) = (Vec::new(), 0u64, Vec::new());
        let (mut next_sample, mut next_check) = (Duration::ZERO, opts.check_every);
        let mut last_progress: Vec<u64> = vec![0; cpus as usize];
        let mut last_change = Instant::now();
        let mut stall = None;
        let mut spawn_ctx = self.daemon_ctx();
        loop {
            let now = shared.start.elapsed();
            while plans.front().is_some_and(|p| p.start_after <= now) {
                let p = plans.pop_front().expect("front exists");
                self.start_process(&shared, &mut spawn_ctx, p);
                shared.pending_starts.fetch_sub(1, Ordering::AcqRel);
            }
            if now >= next_sample {
                samples.push(Sample {
                    t_ms: now.as_millis() as u64,
                    meminfo: crate::procfs::meminfo_fields(self),
                });
                next_sample = now + opts.sample_every;
            }
            if now >= next_check {
                checks += 1;
                for r in [
                    self.buddy().check_invariants().map_err(|e| e.to_string()),
                    self.slab().check_invariants().map_err(|e| e.to_string()),
                ] {
                    if let Err(e) = r {
                        if violations.len() < 8 {
                            violations.push(e);
                        }
                    }
                }
                next_check = now + opts.check_every;
            }
            // Watchdog: runnable work but no CPU made progress for `stall_after`.
            let progress: Vec<u64> = shared
                .progress
                .iter()
                .map(|p| p.load(Ordering::Relaxed))
                .collect();
            if progress != last_progress {
                last_progress = progress;
                last_change = Instant::now();
            } else if shared.live_tasks.load(Ordering::Acquire) > 0
                && last_change.elapsed() > opts.stall_after
            {
                stall = Some(self.dump_state(&shared));
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
        // The driver starts nothing more; CPUs finish (or, on stop, kill) their tasks.
        shared.pending_starts.store(0, Ordering::Release);
        let results: Vec<CpuResult> = handles
            .into_iter()
            .map(|h| h.join().expect("a CPU thread panicked"))
            .collect();
        let ctxs: Vec<CpuCtx> = results.into_iter().map(|r| r.ctx).collect();
        checks += 1;
        for r in [
            self.buddy().check_invariants().map_err(|e| e.to_string()),
            self.slab().check_invariants().map_err(|e| e.to_string()),
        ] {
            if let Err(e) = r {
                violations.push(e);
            }
        }
        let mut events = VmEvents::default();
        let mut tlb = TlbReport::default();
        let (mut cycles, mut accesses) = (0u64, 0u64);
        for c in &ctxs {
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
        self.return_cpus(ctxs);
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
        })
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
        shared.procs.lock().insert(
            pid,
            new_proc(
                p.name.clone(),
                p.oom_score_adj,
                p.threads.len(),
                shared.start.elapsed().as_millis() as u64,
            ),
        );
        for w in p.threads {
            shared.enqueue(Task {
                pid,
                space: space.clone(),
                workload: w,
                last: OpResult::Start,
                cpus: cpus.clone(),
            });
        }
    }

    fn dump_state(&self, shared: &Shared) -> String {
        let mut out = String::from("watchdog: no CPU made progress\n");
        for (i, q) in shared.queues.iter().enumerate() {
            let q = q.lock();
            out.push_str(&format!(
                "cpu {i}: progress {} queued {:?}\n",
                shared.progress[i].load(Ordering::Relaxed),
                q.iter().map(|t| t.pid.0).collect::<Vec<_>>()
            ));
        }
        out
    }
}
