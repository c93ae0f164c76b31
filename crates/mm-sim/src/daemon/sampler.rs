//! The sampler: records `/proc/meminfo` and `/proc/vmstat` every interval of the run, the
//! time series `--out` writes as CSV.

use super::{Actor, ActorStatus, Flow};
use crate::run::Sample;
use crate::Machine;
use std::time::{Duration, Instant};

/// The sampler's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerMsg {
    /// Take a sample now (the run's first and last).
    Sample,
    /// End of the run.
    Shutdown,
}

/// The sampler actor.
#[derive(Debug)]
pub(crate) struct Sampler<'m> {
    machine: &'m Machine,
    start: Instant,
    every: Duration,
    next: Instant,
    pub(crate) samples: Vec<Sample>,
}

impl<'m> Sampler<'m> {
    pub(crate) fn new(machine: &'m Machine, start: Instant, every: Duration) -> Sampler<'m> {
        Sampler {
            machine,
            start,
            every,
            next: Instant::now(),
            samples: Vec::new(),
        }
    }

    fn sample(&mut self, status: &ActorStatus) {
        status.set("sampling");
        let t_ms = self.start.elapsed().as_millis() as u64;
        if self.samples.last().is_some_and(|s| s.t_ms == t_ms) {
            return;
        }
        self.samples.push(Sample {
            t_ms,
            meminfo: crate::procfs::meminfo_fields(self.machine),
            vmstat: crate::procfs::vmstat_fields(self.machine),
        });
    }
}

impl Actor for Sampler<'_> {
    type Msg = SamplerMsg;

    fn handle(&mut self, msg: SamplerMsg, status: &ActorStatus) -> Flow {
        match msg {
            SamplerMsg::Sample => {
                self.sample(status);
                Flow::Continue
            }
            SamplerMsg::Shutdown => Flow::Stop,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        Some(self.next)
    }

    fn tick(&mut self, status: &ActorStatus) {
        self.sample(status);
        self.next = Instant::now() + self.every;
    }
}
