//! The simulated machine (layer L6): boots from a [`MachineConfig`], wires the subsystems
//! together and renders the `/proc` views.
//!
//! This crate owns:
//! - the machine configuration types ([`MachineConfig`], [`ZoneSpec`], [`Sysctl`]), which
//!   `mm-scenario` fills from a scenario file;
//! - [`Machine`]: simulated RAM ([`mm_phys::PhysMem`]), the page allocator
//!   ([`mm_buddy::Buddy`]) and the slab ([`mm_slab::SlabAllocator`], with the kernel's boot and
//!   standard caches) booted from the configuration, with zones derived from the memory size
//!   when the configuration does not list them;
//! - the `/proc` renderers ([`ProcFile`]): `meminfo`, `zoneinfo`, `buddyinfo`, `vmstat`,
//!   `slabinfo` and `swaps`, in Linux 6.18's exact text formats, so procps tools read a
//!   snapshot directory; per-process files at exit ([`ProcSnapshot`], [`oom_score`]);
//! - [`Machine::run`]: the CPU actors (one thread per simulated CPU, running tasks one quantum
//!   at a time, answering IPIs between quanta and while idle), processes and tasks (fork,
//!   exit, affinity, a `task_struct` each), the syscall surface of [`workload::Op`], the
//!   `pagefault_out_of_memory` path (victim by `oom_badness`), the invariant checker and the
//!   watchdog;
//! - the daemon actors (`daemon/`): kswapd ([`KswapdMsg`], woken through the allocator's
//!   [`mm_buddy::SlowPath`]), the flusher ([`FlusherMsg`]), the OOM reaper ([`ReaperMsg`]),
//!   the I/O engine ([`IoMsg`]) and the sampler ([`SamplerMsg`]); LRU reclaim and the page
//!   cache plug into them through [`NodeReclaim`] and [`Writeback`];
//! - [`trace`]: `RUST_LOG` logging and the `--trace` JSON-lines sink for the tracepoint events.
//!
//! # Invariants
//! - Only this crate spawns threads and owns time and the seed.
//! - Every `/proc` view is rendered from one snapshot of the subsystems' counters; a view never
//!   invents a number the simulation does not have (unknown counters print 0).
//! - Every thread of a run is joined before [`Machine::run`] returns, except CPUs found
//!   deadlocked after a watchdog stall (reported, and the machine cannot run again).
//! - Every page a run used comes back: after a run, free + pcp + slab pages (once the caches
//!   are shrunk) equal the boot count; every `task_struct` is freed with its task.
//!
//! # Locking protocol
//! Run queues and the process table are leaf mutexes, never held while a task runs an
//! operation. `oom_lock` serializes OOM decisions and is taken with no other lock held. A CPU
//! thread takes address-space locks only as a CPU (answering IPIs while it waits), never with
//! the `_nocpu` readers. Daemons talk to the rest through mailboxes; the kswapd wake-up from
//! the allocator is two atomics and a send, safe under any allocator caller. Rendering takes
//! the allocator's locks through its snapshot functions (pcp locks, then zone locks).
#![deny(unsafe_code)]

mod config;
mod daemon;
mod error;
mod procfs;
mod run;
pub mod trace;
pub mod workload;

pub use daemon::flusher::{FlusherMsg, FlusherStats, WbReason, Writeback};
pub use daemon::io::{
    Completion, DiskSpec, IoDone, IoMsg, IoOp, IoRequest, IoStats, MAX_FILE_BYTES,
};
pub use daemon::kswapd::{KswapdMsg, KswapdShared, NodeReclaim, MAX_RECLAIM_RETRIES};
pub use daemon::reaper::{ReaperMsg, ReaperStats};
pub use daemon::sampler::SamplerMsg;
pub use run::{
    oom_score, DaemonReport, ExitKind, OomKill, ProcSnapshot, ProcessReport, RunError, RunOpts,
    RunProgress, RunReport, Sample, TlbReport, TASK_MAGIC,
};

pub use config::{MachineConfig, Sysctl, ZoneSpec};
pub use error::BootError;
pub use mm_mmu::CostModel;
pub use procfs::ProcFile;

use mm_buddy::{Buddy, BuddyConfig, ZoneConfig};
use mm_mmu::{Mmu, MmuConfig};
use mm_phys::PhysMem;
use mm_slab::SlabAllocator;
use mm_sync::channel::Receiver;
use mm_sync::sync::atomic::{AtomicU64, Ordering};
use mm_sync::sync::{Arc, Mutex};
use mm_types::{CpuId, Pfn, Pid, ZoneId, PAGE_SIZE};
use mm_vma::{AddressSpace, CpuCtx, Hooks, Overcommit, VmConfig, VmEvents, VmSys};
use std::collections::BTreeMap;

/// Transparent hugepages are in `madvise` mode, as on the reference host: khugepaged raises
/// the boot `min_free_kbytes` to its recommendation.
const THP_ENABLED: bool = true;

/// First pfn of ZONE_DMA32 (16 MiB).
pub const DMA32_START_PFN: u64 = 4096;
/// First pfn of ZONE_NORMAL (4 GiB).
pub const NORMAL_START_PFN: u64 = 1 << 20;

/// A booted machine.
#[derive(Debug)]
pub struct Machine {
    config: MachineConfig,
    zones: Vec<ZoneSpec>,
    buddy: Arc<Buddy>,
    slab: Arc<SlabAllocator>,
    mmu: Arc<Mmu>,
    vm: Arc<VmSys>,
    /// The CPUs' contexts between runs (a run's CPU threads own them meanwhile).
    cpus: Option<Vec<CpuCtx>>,
    /// Live address spaces by pid.
    spaces: Arc<Mutex<BTreeMap<Pid, Arc<AddressSpace>>>>,
    /// VMA-layer events of finished runs (pgfault, pgmajfault, pgreuse).
    events: Mutex<VmEvents>,
    /// Node 0's kswapd state, shared with the allocator's slow path.
    kswapd: Arc<KswapdShared>,
    /// kswapd's mailbox until a run starts the actor.
    kswapd_rx: Mutex<Option<Receiver<KswapdMsg>>>,
    /// `oom_kill`: processes killed for want of memory.
    oom_kills: AtomicU64,
    /// The slab as the allocator's direct reclaim sees it (cleared on drop).
    slab_slot: Arc<daemon::kswapd::SlabSlot>,
}

impl Drop for Machine {
    fn drop(&mut self) {
        // The allocator's slow path holds the slab, which holds the allocator: break the cycle.
        self.slab_slot.set(None);
    }
}

impl Machine {
    /// Boots a machine: reserves simulated RAM, frees every zone's managed pages into the page
    /// allocator and computes watermarks, protection and pcp limits from the sysctls.
    pub fn boot(config: &MachineConfig) -> Result<Machine, BootError> {
        if config.cpus == 0 {
            return Err(BootError::Config("a machine needs at least one CPU".into()));
        }
        if !config.memory_bytes.is_multiple_of(PAGE_SIZE as u64) || config.memory_bytes == 0 {
            return Err(BootError::Config(format!(
                "memory {} is not a positive multiple of the page size",
                config.memory_bytes
            )));
        }
        let max_pfn = config.memory_bytes / PAGE_SIZE as u64;
        let zones = match &config.zones {
            Some(z) => z.clone(),
            None => derive_zones(max_pfn),
        };
        let mem = Arc::new(PhysMem::try_new(Pfn(max_pfn))?);
        let s = &config.sysctl;
        let buddy = Buddy::new(
            mem,
            &BuddyConfig {
                nr_cpus: config.cpus,
                zones: zones
                    .iter()
                    .map(|z| ZoneConfig {
                        id: z.id,
                        start_pfn: Pfn(z.start_pfn),
                        spanned: z.spanned,
                        present: z.present,
                        managed: z.managed,
                    })
                    .collect(),
                min_free_kbytes: s.min_free_kbytes,
                watermark_scale_factor: s.watermark_scale_factor,
                watermark_boost_factor: s.watermark_boost_factor,
                lowmem_reserve_ratio: s.lowmem_reserve_ratio,
                percpu_pagelist_high_fraction: s.percpu_pagelist_high_fraction,
                thp_enabled: THP_ENABLED,
            },
        )?;
        let (kswapd_tx, kswapd_rx) = mm_sync::channel::unbounded();
        let kswapd = Arc::new(KswapdShared::new(daemon::Mailbox::new(kswapd_tx)));
        let mut buddy = buddy;
        let slab_slot = Arc::new(daemon::kswapd::SlabSlot::default());
        buddy.set_slow_path(Box::new(daemon::kswapd::MachineSlowPath {
            kswapd: kswapd.clone(),
            slab: slab_slot.clone(),
        }));
        let buddy = Arc::new(buddy);
        let slab = Arc::new(SlabAllocator::new(buddy.clone())?);
        slab_slot.set(Some(slab.clone()));
        let mut mmu_config = MmuConfig::x86_64(config.cpus);
        mmu_config.costs = config.cost;
        let (mmu, mmu_cpus) =
            Mmu::new(mmu_config, buddy.clone()).map_err(|e| BootError::Config(e.to_string()))?;
        let mut vmcfg = VmConfig::linux_default();
        vmcfg.overcommit_ratio = config.sysctl.overcommit_ratio as u64;
        vmcfg.overcommit = match config.sysctl.overcommit_memory {
            1 => Overcommit::Always,
            2 => Overcommit::Never,
            _ => Overcommit::Guess,
        };
        let vm = VmSys::new(&mmu, Some(slab.clone()), vmcfg, Hooks::default(), CpuId(0))
            .map_err(|e| BootError::Config(format!("cannot allocate the zero page: {e}")))?;
        Ok(Machine {
            config: config.clone(),
            zones,
            buddy,
            slab,
            mmu,
            vm,
            cpus: Some(mmu_cpus.into_iter().map(CpuCtx::new).collect()),
            spaces: Arc::new(Mutex::new(BTreeMap::new())),
            events: Mutex::new(VmEvents::default()),
            kswapd,
            kswapd_rx: Mutex::new(Some(kswapd_rx)),
            oom_kills: AtomicU64::new(0),
            slab_slot,
        })
    }

    /// Returns the configuration the machine booted from.
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// Returns the zone geometry in use (derived or given).
    pub fn zones(&self) -> &[ZoneSpec] {
        &self.zones
    }

    /// Returns the page allocator.
    pub fn buddy(&self) -> &Arc<Buddy> {
        &self.buddy
    }

    /// Returns the MMU.
    pub fn mmu(&self) -> &Arc<Mmu> {
        &self.mmu
    }

    /// Returns the VMA layer's machine-wide state.
    pub fn vm(&self) -> &Arc<VmSys> {
        &self.vm
    }

    pub(crate) fn take_cpus(&mut self) -> Option<Vec<CpuCtx>> {
        self.cpus.take()
    }

    pub(crate) fn return_cpus(&mut self, cpus: Vec<CpuCtx>) {
        self.cpus = Some(cpus);
    }

    pub(crate) fn take_kswapd_mailbox(&self) -> Option<Receiver<KswapdMsg>> {
        self.kswapd_rx.lock().take()
    }

    pub(crate) fn return_kswapd_mailbox(&self, rx: Receiver<KswapdMsg>) {
        *self.kswapd_rx.lock() = Some(rx);
    }

    /// Returns node 0's kswapd state (wake-ups, runs, failures).
    pub fn kswapd(&self) -> &Arc<KswapdShared> {
        &self.kswapd
    }

    pub(crate) fn record_oom_kills(&self, n: u64) {
        self.oom_kills.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn oom_kill_count(&self) -> u64 {
        self.oom_kills.load(Ordering::Relaxed)
    }

    /// A context for kernel work the machine does outside any CPU's tasks (creating a
    /// process), homed on CPU 0 like a kernel thread.
    pub(crate) fn daemon_ctx(&self) -> CpuCtx {
        CpuCtx::new(Mmu::daemon(&self.mmu, CpuId(0)))
    }

    pub(crate) fn record_run_events(&self, e: VmEvents) {
        let mut t = self.events.lock();
        t.pgfault += e.pgfault;
        t.pgmajfault += e.pgmajfault;
        t.pgreuse += e.pgreuse;
    }

    pub(crate) fn vm_events(&self) -> VmEvents {
        *self.events.lock()
    }

    /// Returns the resident anonymous pages of the live address spaces.
    pub(crate) fn anon_pages(&self) -> u64 {
        self.spaces.lock().values().map(|s| s.rss().anon).sum()
    }

    /// Returns the slab allocator.
    pub fn slab(&self) -> &SlabAllocator {
        &self.slab
    }

    pub(crate) fn slab_arc(&self) -> &Arc<SlabAllocator> {
        &self.slab
    }

    /// Returns `/proc/meminfo`'s fields, in kB, by Linux name.
    pub fn meminfo(&self) -> Vec<(String, u64)> {
        procfs::meminfo_fields(self)
    }

    /// Renders one `/proc` file.
    pub fn proc_file(&self, file: ProcFile) -> String {
        procfs::render(self, file)
    }
}

/// Derives x86-64 zones from the RAM size: ZONE_DMA below 16 MiB (pfn 0 reserved, as the
/// kernel keeps the first page), ZONE_DMA32 below 4 GiB and ZONE_NORMAL above. The simulated
/// machine has no PCI hole and no firmware reservations, so every present page is managed.
pub fn derive_zones(max_pfn: u64) -> Vec<ZoneSpec> {
    let mut zones = Vec::new();
    let mut push = |id, start: u64, end: u64| {
        if end > start {
            let n = end - start;
            zones.push(ZoneSpec {
                id,
                start_pfn: start,
                spanned: n,
                present: n,
                managed: n,
            });
        }
    };
    push(ZoneId::Dma, 1, max_pfn.min(DMA32_START_PFN));
    push(
        ZoneId::Dma32,
        DMA32_START_PFN,
        max_pfn.min(NORMAL_START_PFN),
    );
    push(ZoneId::Normal, NORMAL_START_PFN, max_pfn);
    zones
}

#[cfg(all(test, not(mm_loom)))]
mod tests;
