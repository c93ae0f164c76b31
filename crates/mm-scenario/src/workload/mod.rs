//! The workloads a scenario's processes run: generators implementing
//! [`mm_sim::workload::Workload`], deterministic from a seed, that check every load.
//!
//! A thread of a `[[process]]` is one [`Task`]: it runs the process's phases in order, each
//! through its generator (`gens`), and counts the phase's operations against its length (a
//! number of operations, or simulated time from the phase's first operation). When a phase is
//! over, its generator unmaps what it mapped (those operations are not counted) and the next
//! phase starts; after the last one the task exits.
//!
//! Every store and load goes through the task's verifier (`verify`), which keeps what each
//! page must hold and reports [`Integrity`].
//!
//! # Invariants
//! - The operation stream of a task is a pure function of its seed and the results it is
//!   given: no OS randomness, no wall time (only [`WorkloadEnv::elapsed`]).
//! - A forked child's counts start at zero; the machine sums every task's counts.

mod gens;
mod rng;
mod verify;
mod zipf;

use mm_sim::workload::{Integrity, Op, OpResult, ProcessPlan, Workload, WorkloadEnv};
use std::time::Duration;

use crate::process::{Length, PhaseSpec, ProcessSpec, WorkloadKind};
use crate::size::Size;

/// The machine's memory that percentage sizes refer to, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemSizes {
    /// MemTotal.
    pub total: u64,
    /// MemAvailable at boot.
    pub available: u64,
}
use gens::{Anon, Churn, Cx, DirectIo, ForkCow, Gen, Malloc};
use verify::{Verifier, PAGE};

pub(crate) use rng::{derive, Rng};
#[cfg(test)]
pub(crate) use verify::{check_word, encode};
#[cfg(test)]
pub(crate) use zipf::Zipf;

#[cfg(test)]
pub(crate) use gens::{ARENA_SIZE, MMAP_THRESHOLD};

/// A phase with its size resolved to pages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Phase {
    kind: WorkloadKind,
    pub(crate) pages: u64,
    write_ratio: f64,
    length: Option<Length>,
}

impl Phase {
    /// Resolves `spec` against the machine's memory: a percentage of MemTotal or of
    /// MemAvailable at boot, rounded up to whole pages, at least one page.
    pub(crate) fn resolve(spec: &PhaseSpec, mem: MemSizes) -> Phase {
        let bytes = match spec.size {
            Size::Bytes(b) => b,
            Size::Percent(p) => (mem.total as f64 * p / 100.0) as u64,
            Size::PercentAvail(p) => (mem.available as f64 * p / 100.0) as u64,
        };
        Phase {
            kind: spec.workload,
            pages: bytes.div_ceil(PAGE).max(1),
            write_ratio: spec.write_ratio,
            length: spec.length,
        }
    }

    fn generator(&self, thread: u32) -> Gen {
        match self.kind {
            WorkloadKind::Anon { pattern } => {
                Gen::Anon(Anon::new(self.pages, pattern, self.write_ratio))
            }
            WorkloadKind::MmapChurn { fixed_size, touch } => {
                Gen::Churn(Churn::new(self.pages, fixed_size, touch, self.write_ratio))
            }
            WorkloadKind::Malloc => {
                Gen::Malloc(Malloc::new(self.pages * PAGE, self.write_ratio, thread))
            }
            WorkloadKind::ForkCow {
                children,
                generations,
            } => Gen::ForkCow(ForkCow::new(
                self.pages,
                children,
                generations,
                self.write_ratio,
            )),
            WorkloadKind::DirectIo => {
                Gen::DirectIo(DirectIo::new(self.pages, self.write_ratio, thread))
            }
        }
    }
}

/// One simulated thread's program: phases in order, each one generator.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    phases: Vec<Phase>,
    /// The phase running (or next to run).
    index: usize,
    current: Option<Gen>,
    /// Operations counted in the current phase.
    ops: u64,
    /// When the current phase issued its first operation.
    started: Duration,
    cx: Cx,
}

impl Task {
    /// Builds thread `thread` of a process running `phases`, from `seed`.
    pub(crate) fn new(phases: Vec<Phase>, thread: u32, seed: u64) -> Task {
        Task {
            phases,
            index: 0,
            current: None,
            ops: 0,
            started: Duration::ZERO,
            cx: Cx {
                rng: Rng::new(seed),
                verify: Verifier::default(),
                thread,
            },
        }
    }

    /// Builds a forked child: it runs `gen` to its end, then exits.
    pub(crate) fn forked(gen: Gen, cx: Cx) -> Task {
        Task {
            phases: Vec::new(),
            index: 0,
            current: Some(gen),
            ops: 0,
            started: Duration::ZERO,
            cx,
        }
    }

    /// Returns true when the current phase has run its length.
    fn over(&self, env: &WorkloadEnv) -> bool {
        match self.phases.get(self.index).and_then(|p| p.length) {
            Some(Length::Ops(n)) => self.ops >= n,
            Some(Length::Duration(d)) => env.elapsed.saturating_sub(self.started) >= d,
            None => false,
        }
    }
}

impl Workload for Task {
    fn next(&mut self, last: OpResult, env: &WorkloadEnv) -> Option<Op> {
        self.cx.verify.begin(env.pid);
        self.cx.verify.settle(last);
        let mut last = last;
        loop {
            if self.current.is_none() {
                let phase = self.phases.get(self.index)?;
                self.current = Some(phase.generator(self.cx.thread));
                self.ops = 0;
                self.started = env.elapsed;
                last = OpResult::Start;
            }
            let stop = self.over(env);
            let gen = self.current.as_mut()?;
            if let Some(op) = gen.next(last, &mut self.cx, stop) {
                if !stop {
                    self.ops += 1;
                }
                return Some(op);
            }
            self.current = None;
            self.index += 1;
        }
    }

    fn integrity(&self) -> Integrity {
        self.cx.verify.integrity()
    }
}

/// Builds the processes of `specs`: `count` processes each, `threads` tasks each. Thread `t`
/// of instance `i` of process kind `k` is seeded from `(seed, k, i, t)`.
pub(crate) fn plan(specs: &[ProcessSpec], mem: MemSizes, seed: u64) -> Vec<ProcessPlan> {
    let mut out = Vec::new();
    for (k, spec) in specs.iter().enumerate() {
        let phases: Vec<Phase> = spec.phases.iter().map(|p| Phase::resolve(p, mem)).collect();
        for instance in 0..spec.count {
            let threads = (0..spec.threads)
                .map(|t| {
                    let seed = derive(seed, &[k as u64, u64::from(instance), u64::from(t)]);
                    Box::new(Task::new(phases.clone(), t, seed)) as Box<dyn Workload>
                })
                .collect();
            out.push(ProcessPlan {
                name: spec.name.clone(),
                oom_score_adj: spec.oom_score_adj,
                cpus: spec.cpus.clone(),
                start_after: spec.start_after,
                threads,
            });
        }
    }
    out
}
