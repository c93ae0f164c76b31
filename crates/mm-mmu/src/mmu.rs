//! The machine-wide MMU state every CPU shares: configuration, the allocator, each CPU's
//! mailbox and lazy flag, and the page-table page counter.

use crate::flush::{Ipi, IpiKick};
use crate::wait::Doorbell;
use crate::{ConfigError, MmuConfig, MmuCpu};
use mm_buddy::{AllocError, Buddy, Frame};
use mm_phys::{PageFlags, PhysMem};
use mm_sync::channel::{unbounded, Sender};
use mm_sync::sync::atomic::AtomicBool;
use mm_sync::sync::Arc;
use mm_sync::untracked;
use mm_types::{CpuId, Gfp, Order};
use std::fmt;

/// What other CPUs may see of one CPU.
pub(crate) struct CpuShared {
    /// Where shootdown IPIs for this CPU are queued.
    pub(crate) mailbox: Sender<Ipi>,
    /// `cpu_tlbstate_shared.is_lazy`: the CPU runs a kernel thread on a borrowed mm and does
    /// no user accesses; shootdowns skip it unless page tables are freed.
    pub(crate) is_lazy: AtomicBool,
    /// IPIs handled (`/proc/interrupts` "TLB shootdowns").
    pub(crate) tlb_shootdowns: untracked::AtomicU64,
    /// Rung when an IPI is queued for this CPU or one of its shootdowns is acknowledged.
    pub(crate) doorbell: Arc<Doorbell>,
}

/// The MMU of one machine, shared by its CPUs and address spaces.
pub struct Mmu {
    pub(crate) cfg: MmuConfig,
    pub(crate) buddy: Arc<Buddy>,
    pub(crate) mem: Arc<PhysMem>,
    pub(crate) cpus: Box<[CpuShared]>,
    next_ctx_id: untracked::AtomicU64,
    next_batch_id: untracked::AtomicU64,
    nr_pagetables: untracked::AtomicU64,
    kick: Option<Box<dyn IpiKick>>,
}

impl fmt::Debug for Mmu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mmu")
            .field("cfg", &self.cfg)
            .field("nr_pagetables", &self.nr_pagetables())
            .finish_non_exhaustive()
    }
}

impl Mmu {
    /// Builds the MMU of a machine whose frames come from `buddy`, and one [`MmuCpu`] per CPU
    /// (index = CPU id). Each CPU's thread owns its `MmuCpu`.
    pub fn new(cfg: MmuConfig, buddy: Arc<Buddy>) -> Result<(Arc<Mmu>, Vec<MmuCpu>), ConfigError> {
        Self::build(cfg, buddy, None)
    }

    /// As [`Mmu::new`], calling `kick` after queueing an IPI for a CPU.
    pub fn with_kick(
        cfg: MmuConfig,
        buddy: Arc<Buddy>,
        kick: Box<dyn IpiKick>,
    ) -> Result<(Arc<Mmu>, Vec<MmuCpu>), ConfigError> {
        Self::build(cfg, buddy, Some(kick))
    }

    fn build(
        cfg: MmuConfig,
        buddy: Arc<Buddy>,
        kick: Option<Box<dyn IpiKick>>,
    ) -> Result<(Arc<Mmu>, Vec<MmuCpu>), ConfigError> {
        cfg.validate()?;
        if buddy.nr_cpus() < cfg.nr_cpus as usize {
            return Err(ConfigError::CpuMismatch {
                mmu: cfg.nr_cpus,
                buddy: buddy.nr_cpus(),
            });
        }
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..cfg.nr_cpus).map(|_| unbounded::<Ipi>()).unzip();
        let cpus = senders
            .into_iter()
            .map(|mailbox| CpuShared {
                mailbox,
                is_lazy: AtomicBool::new(false),
                tlb_shootdowns: untracked::AtomicU64::new(0),
                doorbell: Arc::new(Doorbell::default()),
            })
            .collect();
        let mmu = Arc::new(Mmu {
            cfg,
            mem: buddy.mem().clone(),
            buddy,
            cpus,
            next_ctx_id: untracked::AtomicU64::new(1),
            next_batch_id: untracked::AtomicU64::new(1),
            nr_pagetables: untracked::AtomicU64::new(0),
            kick,
        });
        let cpus = receivers
            .into_iter()
            .enumerate()
            .map(|(i, rx)| MmuCpu::new(&mmu, CpuId(i as u32), Some(rx)))
            .collect();
        Ok((mmu, cpus))
    }

    /// Returns a context for a daemon thread (kswapd, the OOM reaper) that edits page tables and
    /// starts shootdowns but is not a CPU: it has no TLB that matters, never loads an address
    /// space, receives no IPIs, and frees frames to `home`'s per-CPU lists.
    pub fn daemon(mmu: &Arc<Mmu>, home: CpuId) -> MmuCpu {
        assert!(home.index() < mmu.cpus.len(), "{home:?} is not a CPU");
        MmuCpu::new(mmu, home, None)
    }

    /// Returns the configuration.
    pub fn config(&self) -> &MmuConfig {
        &self.cfg
    }

    /// Returns the page allocator.
    pub fn buddy(&self) -> &Arc<Buddy> {
        &self.buddy
    }

    /// Returns the page-table pages allocated machine-wide (`NR_PAGETABLE`, meminfo
    /// `PageTables` in pages), counting those waiting for a flush before being freed.
    pub fn nr_pagetables(&self) -> u64 {
        self.nr_pagetables.load(untracked::Ordering::Relaxed)
    }

    /// Returns the shootdown IPIs `cpu` has handled (the `TLB:` row of `/proc/interrupts`).
    pub fn tlb_shootdowns(&self, cpu: CpuId) -> u64 {
        self.cpus[cpu.index()]
            .tlb_shootdowns
            .load(untracked::Ordering::Relaxed)
    }

    pub(crate) fn new_ctx_id(&self) -> u64 {
        self.next_ctx_id.fetch_add(1, untracked::Ordering::Relaxed)
    }

    pub(crate) fn new_batch_id(&self) -> u64 {
        self.next_batch_id
            .fetch_add(1, untracked::Ordering::Relaxed)
    }

    /// Queues an IPI that flushes nothing for `cpu`: it wakes a CPU blocked in
    /// [`MmuCpu::wait_ipi`] (a reschedule IPI, for the test harness).
    #[cfg(all(test, mm_loom))]
    pub(crate) fn wake(&self, cpu: CpuId) {
        use crate::flush::{FlushInfo, FlushRequest};
        let info = FlushInfo {
            mm: Some(0), // no address space has context id 0
            start: 0,
            end: 0,
            new_gen: None,
            freed_tables: false,
        };
        let target = &self.cpus[cpu.index()];
        let req = FlushRequest {
            info,
            pending: mm_sync::sync::atomic::AtomicUsize::new(1),
            waiter: Arc::new(Doorbell::default()),
        };
        let _ = target.mailbox.send(Ipi(Arc::new(req)));
        target.doorbell.ring();
    }

    pub(crate) fn kick(&self, cpu: usize) {
        if let Some(k) = &self.kick {
            k.kick(CpuId(cpu as u32));
        }
    }

    /// Allocates a zeroed page-table page, marked `PageTable` and counted.
    pub(crate) fn alloc_table(&self, cpu: CpuId) -> Result<Frame, AllocError> {
        let f = self
            .buddy
            .alloc(cpu, Order::ZERO, Gfp::GFP_KERNEL | Gfp::ZERO)?;
        self.mem.page(f.pfn()).set(PageFlags::PGTABLE);
        self.nr_pagetables
            .fetch_add(1, untracked::Ordering::Relaxed);
        Ok(f)
    }

    /// Gives frames back to the allocator, uncounting page-table pages. Callers have made sure
    /// no TLB can reach them (a covering flush, or they were never reachable).
    pub(crate) fn free_frames(&self, cpu: CpuId, frames: impl IntoIterator<Item = Frame>) -> usize {
        let mut n = 0;
        for f in frames {
            let page = self.mem.page(f.pfn());
            if page.test(PageFlags::PGTABLE) {
                page.clear(PageFlags::PGTABLE);
                self.nr_pagetables
                    .fetch_sub(1, untracked::Ordering::Relaxed);
            }
            self.buddy.free(cpu, f);
            n += 1;
        }
        n
    }
}
