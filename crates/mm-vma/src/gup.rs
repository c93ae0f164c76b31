//! `get_user_pages` (mm/gup.c): the kernel reaching a process's pages by walking its page
//! tables rather than through a TLB, for `/proc/PID/mem`, ptrace (`access_process_vm`), and
//! populating ranges (`MAP_POPULATE`, `mlock`).
//!
//! With `FOLL_FORCE` a write may go to a read-only private mapping: the fault breaks COW and
//! the write lands in the private copy. The page is followed for writing only if its entry is
//! writable, or, after this GUP broke COW (`FOLL_COW`), if it is an anonymous page this
//! mapping alone maps: never the file page a concurrent MADV_DONTNEED may have put back
//! (19be0eaffa3a, Dirty COW).
//!
//! # Locking protocol
//! The mmap read lock across a page's follow-fault loop; the page-table lock to read the
//! entry and take a reference on its page (the reference keeps the page after the lock is
//! dropped).

use crate::ctx::CpuCtx;
use crate::error::FaultError;
use crate::fault::{fault_locked, FaultReq};
use crate::flags::VmFlags;
use crate::lock::lock_spin;
use crate::mm::AddressSpace;
use crate::pt;
use mm_phys::PageFlags;
use mm_types::{Errno, Pfn, PhysAddr, VirtAddr, PAGE_SIZE};

const PAGE: u64 = PAGE_SIZE as u64;

impl AddressSpace {
    /// `follow_page_pte`: the page mapped at `va`, with a reference taken, if the entry allows
    /// the access.
    fn follow_page(
        &self,
        ctx: &mut CpuCtx,
        va: u64,
        write: bool,
        force: bool,
        foll_cow: bool,
    ) -> Option<Pfn> {
        let sys = &*self.sys;
        let _ptl = lock_spin(ctx.mmu(), &self.core.ptl);
        let pte = pt::read_pte(&sys.mem, self.core.mm.root(), sys.levels, va);
        if !pte.is_present() {
            return None;
        }
        let pfn = pte.pfn();
        if write && !pte.is_writable() {
            // can_follow_write_pte.
            if pfn == sys.zero_pfn || !(force && foll_cow) {
                return None;
            }
            let page = sys.mem.page(pfn);
            if !(page.test(PageFlags::ANON) && page.mapcount() == 1) {
                return None;
            }
        }
        if pfn != sys.zero_pfn {
            sys.mem.page(pfn).get();
        }
        Some(pfn)
    }

    /// Gets the page at `va` for a read or write, faulting it in (`__get_user_pages` for one
    /// page). The caller puts the returned reference.
    pub(crate) fn get_user_page(
        &self,
        ctx: &mut CpuCtx,
        va: u64,
        write: bool,
        force: bool,
    ) -> Result<Pfn, Errno> {
        let va = va & !(PAGE - 1);
        #[cfg_attr(not(test), allow(unused_mut))]
        let mut foll_write = write;
        let mut foll_cow = false;
        'relock: loop {
            let mut st = self.state.read(ctx.mmu());
            let vflags = st.vmas.lookup(va).ok_or(Errno::Efault)?.flags;
            // check_vma_flags.
            let allowed = if write {
                vflags.contains(VmFlags::WRITE) || (force && vflags.is_cow())
            } else {
                vflags.contains(VmFlags::READ) || (force && vflags.contains(VmFlags::MAYREAD))
            };
            if !allowed {
                return Err(Errno::Efault);
            }
            loop {
                if let Some(pfn) = self.follow_page(ctx, va, foll_write, force, foll_cow) {
                    return Ok(pfn);
                }
                let req = FaultReq {
                    addr: va,
                    write: foll_write,
                    exec: false,
                    gup: true,
                    force,
                    not_present: false,
                };
                ctx.events.pgfault += 1;
                match fault_locked(ctx, self, &mut st, req) {
                    Ok(h) => {
                        if h.cow_broken && !vflags.contains(VmFlags::WRITE) {
                            #[cfg(test)]
                            if self.regress.gup_drops_foll_write_after_cow {
                                // Pre-19be0eaffa3a faultin_page: "COW done, retry as a read".
                                foll_write = false;
                                continue;
                            }
                            foll_cow = true;
                        }
                    }
                    Err(FaultError::Signal(_)) | Err(FaultError::NeedExpandStack) => {
                        return Err(Errno::Efault)
                    }
                    Err(FaultError::Oom) => return Err(Errno::Enomem),
                    Err(FaultError::NeedAnonVma) => {
                        drop(st);
                        self.anon_vma_prepare(ctx, va)?;
                        continue 'relock;
                    }
                }
            }
        }
    }

    /// Faults in every page of `start..end` as `mm_populate` does: a write for private
    /// writable mappings (breaking COW), a read otherwise, forced where the mapping is
    /// accessible. With `ignore_errors`, skips what fails; otherwise returns the first error.
    pub(crate) fn populate(
        &self,
        ctx: &mut CpuCtx,
        start: u64,
        end: u64,
        ignore_errors: bool,
    ) -> Result<(), Errno> {
        let cpu = ctx.id();
        let mut va = start;
        while va < end {
            let flags = {
                let st = self.state.read(ctx.mmu());
                match st.vmas.find(va).filter(|v| v.start < end) {
                    None => return Ok(()),
                    Some(v) => {
                        va = va.max(v.start);
                        v.flags
                    }
                }
            };
            if flags.intersects(VmFlags::IO | VmFlags::PFNMAP)
                || flags.contains(VmFlags::LOCKONFAULT)
            {
                va += PAGE;
                continue;
            }
            let write = flags & (VmFlags::WRITE | VmFlags::SHARED) == VmFlags::WRITE;
            let force = flags.is_accessible();
            match self.get_user_page(ctx, va, write, force) {
                Ok(pfn) => self.sys.put_page(cpu, pfn),
                Err(e) if !ignore_errors => return Err(e),
                Err(_) => {}
            }
            va += PAGE;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `va` of this address space from another context
    /// (`access_process_vm` for reading: `/proc/PID/mem`, `PTRACE_PEEKDATA`). With `force` it
    /// may read non-readable mappings. Returns the bytes read; EFAULT if none could be.
    pub fn read_remote(
        &self,
        ctx: &mut CpuCtx,
        va: VirtAddr,
        buf: &mut [u8],
        force: bool,
    ) -> Result<usize, Errno> {
        let cpu = ctx.id();
        let mut done = 0;
        while done < buf.len() {
            let a = va.0 + done as u64;
            let off = (a & (PAGE - 1)) as usize;
            let n = (PAGE as usize - off).min(buf.len() - done);
            let pfn = match self.get_user_page(ctx, a, false, force) {
                Ok(p) => p,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            self.sys
                .mem
                .read(
                    PhysAddr(pfn.phys().0 + off as u64),
                    &mut buf[done..done + n],
                )
                .expect("a mapped page is in RAM");
            self.sys.put_page(cpu, pfn);
            done += n;
        }
        Ok(done)
    }

    /// Writes `data` at `va` of this address space from another context (`access_process_vm`
    /// for writing: `/proc/PID/mem`, `PTRACE_POKEDATA`). With `force`, a read-only private
    /// mapping is written through a COW copy. Returns the bytes written; EFAULT if none
    /// could be.
    pub fn write_remote(
        &self,
        ctx: &mut CpuCtx,
        va: VirtAddr,
        data: &[u8],
        force: bool,
    ) -> Result<usize, Errno> {
        let cpu = ctx.id();
        let mut done = 0;
        while done < data.len() {
            let a = va.0 + done as u64;
            let off = (a & (PAGE - 1)) as usize;
            let n = (PAGE as usize - off).min(data.len() - done);
            let pfn = match self.get_user_page(ctx, a, true, force) {
                Ok(p) => p,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            self.sys
                .mem
                .write(PhysAddr(pfn.phys().0 + off as u64), &data[done..done + n])
                .expect("a mapped page is in RAM");
            // set_page_dirty_lock on the put of a FOLL_WRITE page.
            self.sys.mem.page(pfn).set(PageFlags::DIRTY);
            self.sys.put_page(cpu, pfn);
            done += n;
        }
        Ok(done)
    }
}
