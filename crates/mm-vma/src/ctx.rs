//! [`CpuCtx`]: what kernel code running on one simulated CPU carries, and the user access API
//! that turns page faults into calls of the fault handler.

use crate::error::AccessError;
use crate::fault;
use crate::mm::AddressSpace;
use mm_mmu::{Fault, MmuCpu};
use mm_types::{CpuId, VirtAddr};

/// Per-CPU event counters of the VMA layer (vmstat events, summed over CPUs by the machine).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct VmEvents {
    /// `pgfault`: faults handled.
    pub pgfault: u64,
    /// `pgmajfault`: faults that needed I/O.
    pub pgmajfault: u64,
    /// `pgreuse`: write faults on a COW page that reused it in place.
    pub pgreuse: u64,
    /// Write faults that copied a page (COW breaks, including from the zero page).
    pub cow_copies: u64,
    /// Read faults that mapped the shared zero page.
    pub zero_page_maps: u64,
    /// Faults that found the entry already fixed by another CPU.
    pub spurious: u64,
}

/// One CPU's context for the kernel code that runs on it: its MMU (TLB, IPI mailbox, the
/// CPU id whose per-CPU lists allocations use) and its event counters.
///
/// The machine creates one per CPU actor from the `MmuCpu`s `Mmu::new` returns, and one per
/// daemon from `Mmu::daemon`. The CPU's thread owns it. The CPU must not hold its
/// `PcpLocked` guard while it runs code of this crate: the page tables are allocated and
/// frames freed through `Buddy::alloc`/`free` on the same CPU's lists.
#[derive(Debug)]
pub struct CpuCtx {
    mmu: MmuCpu,
    pub(crate) events: VmEvents,
}

impl CpuCtx {
    /// Wraps a CPU's (or daemon's) MMU context.
    pub fn new(mmu: MmuCpu) -> CpuCtx {
        CpuCtx {
            mmu,
            events: VmEvents::default(),
        }
    }

    /// Returns the CPU.
    #[inline]
    pub fn id(&self) -> CpuId {
        self.mmu.id()
    }

    /// Returns the MMU context.
    #[inline]
    pub fn mmu(&mut self) -> &mut MmuCpu {
        &mut self.mmu
    }

    /// Returns the MMU context for inspection.
    pub fn mmu_ref(&self) -> &MmuCpu {
        &self.mmu
    }

    /// Returns the event counters.
    pub fn events(&self) -> VmEvents {
        self.events
    }

    /// Unwraps the MMU context.
    pub fn into_mmu(self) -> MmuCpu {
        self.mmu
    }

    /// Makes `as_` the running address space if it is not already (`switch_mm`).
    #[inline]
    pub fn enter(&mut self, as_: &AddressSpace) {
        let want = as_.core.mm.ctx_id();
        let loaded = self.mmu.loaded_mm().map(|m| m.ctx_id());
        if loaded != Some(want) || self.mmu.is_lazy() {
            self.mmu.switch_mm(&as_.core.mm);
        }
    }

    /// Retries `op` after handling each fault it raises, until it succeeds or the fault
    /// handler returns a signal or OOM.
    #[inline]
    fn access<T>(
        &mut self,
        as_: &AddressSpace,
        mut op: impl FnMut(&mut MmuCpu) -> Result<T, Fault>,
    ) -> Result<T, AccessError> {
        self.enter(as_);
        loop {
            match op(&mut self.mmu) {
                Ok(v) => return Ok(v),
                Err(f) => fault::handle_user_fault(self, as_, f)?,
            }
        }
    }

    /// Loads the u64 at `va` in `as_` as the user task would (faulting pages in).
    #[inline]
    pub fn load_u64(&mut self, as_: &AddressSpace, va: VirtAddr) -> Result<u64, AccessError> {
        self.access(as_, |m| m.load_u64(va))
    }

    /// Stores the u64 `v` at `va` in `as_`.
    #[inline]
    pub fn store_u64(
        &mut self,
        as_: &AddressSpace,
        va: VirtAddr,
        v: u64,
    ) -> Result<(), AccessError> {
        self.access(as_, |m| m.store_u64(va, v))
    }

    /// Loads the byte at `va`.
    pub fn load_u8(&mut self, as_: &AddressSpace, va: VirtAddr) -> Result<u8, AccessError> {
        self.access(as_, |m| m.load_u8(va))
    }

    /// Stores the byte `v` at `va`.
    pub fn store_u8(&mut self, as_: &AddressSpace, va: VirtAddr, v: u8) -> Result<(), AccessError> {
        self.access(as_, |m| m.store_u8(va, v))
    }

    /// Reads `buf.len()` bytes from `va`.
    pub fn read(
        &mut self,
        as_: &AddressSpace,
        va: VirtAddr,
        buf: &mut [u8],
    ) -> Result<(), AccessError> {
        self.access(as_, |m| m.read(va, buf))
    }

    /// Writes `buf` to `va`.
    pub fn write(
        &mut self,
        as_: &AddressSpace,
        va: VirtAddr,
        buf: &[u8],
    ) -> Result<(), AccessError> {
        self.access(as_, |m| m.write(va, buf))
    }

    /// Fetches instruction bytes from `va` (needs `PROT_EXEC`).
    pub fn fetch(
        &mut self,
        as_: &AddressSpace,
        va: VirtAddr,
        buf: &mut [u8],
    ) -> Result<(), AccessError> {
        self.access(as_, |m| m.fetch(va, buf))
    }
}
