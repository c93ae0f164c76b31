//! The slab objects behind the layer's kernel objects: with a slab allocator
//! ([`VmSys::slab`]), every address space has its `mm_struct`, every VMA its `vm_area_struct`,
//! every anon_vma its `anon_vma` and every (VMA, anon_vma) pair of a VMA's chain its
//! `anon_vma_chain` in simulated RAM, from `mm-slab`'s standard caches. So the caches' object
//! counts are the live counts of these objects, and their bytes are real simulated memory.
//!
//! An object is allocated (`GFP_KERNEL`) on the CPU of the [`crate::CpuCtx`] that creates the
//! kernel object and freed on the CPU of the one that tears it down. The only free without a
//! CPU context is the fallback of an anon_vma whose last reference goes elsewhere than in
//! [`crate::AddressSpace::close_vma`] (an rmap walk's copy): it frees through a shared pin of
//! the CPU that allocated it, a remote free as SLUB does them.
//!
//! What the objects hold (the rest of each object is zero, or for the anon_vma what its
//! constructor left):
//! - `vm_area_struct`, at Linux's offsets: `vm_start` (0), `vm_end` (8), `vm_mm` (16, the
//!   physical address of the `mm_struct`), `vm_flags` (32). Rewritten whenever the VMA's range,
//!   flags or chain change ([`VmSys::write_vma`]).
//! - `anon_vma_chain`, at Linux's offsets: `vma` (0) and `anon_vma` (8), physical addresses.
//! - `anon_vma`, at Linux's offsets: `root` (0), `refcount` (48; 1 while it lives, 0 once
//!   freed), `parent` (72); the constructor's rwsem and its wait list (32) are left alone.
//! - `mm_struct`, in the simulator's own layout (Linux's offsets depend on the kernel
//!   configuration): [`MM_MAGIC`] (0; zeroed when freed), the pid (8), `pgd` (16, the
//!   physical address of the root page table), `mmap_base` (24).
//!
//! # Locking protocol
//! Objects are allocated and freed with at most the mmap lock held, never under an rmap lock
//! or the page-table lock (a slab page allocation may reclaim, and reclaim walks rmap). The
//! `SlabCpu` pin is taken for one allocation or free and dropped before any lock of this
//! layer is waited for; pins never block.

use crate::rmap::RmapList;
use crate::sys::VmSys;
use crate::vma::Vma;
use mm_slab::{AnonVma, AnonVmaChain, KObj, MmStruct, SlabAllocator, SlabCpu, VmAreaStruct};
use mm_sync::sync::Arc;
use mm_types::{CpuId, Errno, Gfp, Pfn, PhysAddr};
use std::fmt;

/// `mm_struct` offset 0 of a live address space: "mmstruct" in ASCII, little endian.
pub(crate) const MM_MAGIC: u64 = u64::from_le_bytes(*b"mmstruct");

/// `vm_area_struct.vm_start`.
pub(crate) const VM_START: u64 = 0;
/// `vm_area_struct.vm_end`.
pub(crate) const VM_END: u64 = 8;
/// `vm_area_struct.vm_mm`.
pub(crate) const VM_MM: u64 = 16;
/// `vm_area_struct.vm_flags`.
pub(crate) const VM_FLAGS: u64 = 32;
/// `anon_vma_chain.vma`.
const AVC_VMA: u64 = 0;
/// `anon_vma_chain.anon_vma`.
const AVC_ANON_VMA: u64 = 8;
/// `anon_vma.root`.
const AV_ROOT: u64 = 0;
/// `anon_vma.refcount` (an `atomic_t`; the word includes the padding after it).
const AV_REFCOUNT: u64 = 48;
/// `anon_vma.parent`.
const AV_PARENT: u64 = 72;
/// The simulator's `mm_struct` record: magic, pid, pgd, mmap_base.
const MM_PID: u64 = 8;
const MM_PGD: u64 = 16;
const MM_MMAP_BASE: u64 = 24;

/// The slab objects of one VMA: its `vm_area_struct` and one `anon_vma_chain` per anon_vma
/// of its chain, in the order of [`Vma::anon_chain`].
pub(crate) struct VmaObjs {
    pub(crate) vma: KObj<VmAreaStruct>,
    pub(crate) avcs: Vec<KObj<AnonVmaChain>>,
}

impl fmt::Debug for VmaObjs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vm_area_struct@{:#x}", self.vma.addr().0)
    }
}

/// An anon_vma's slab object, with what frees it if the last reference goes without a CPU.
pub(crate) struct AnonVmaObj {
    slab: Arc<SlabAllocator>,
    /// The CPU that allocated it: the fallback frees through a shared pin of it.
    home: CpuId,
    obj: Option<KObj<AnonVma>>,
}

impl AnonVmaObj {
    /// Returns the object's physical address.
    pub(crate) fn addr(&self) -> u64 {
        self.obj.as_ref().map_or(0, |o| o.addr().0)
    }

    /// Frees the object through `pin` (`anon_vma_free`), leaving the refcount at 0.
    fn free(&mut self, pin: &SlabCpu<'_>) {
        if let Some(o) = self.obj.take() {
            write(pin.mem(), o.addr().0 + AV_REFCOUNT, 0);
            pin.free_obj(o);
        }
    }
}

impl Drop for AnonVmaObj {
    fn drop(&mut self) {
        if self.obj.is_some() {
            let slab = self.slab.clone();
            self.free(&slab.cpu_shared(self.home));
        }
    }
}

impl fmt::Debug for AnonVmaObj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "anon_vma@{:#x}", self.addr())
    }
}

#[inline]
fn write(mem: &mm_phys::PhysMem, addr: u64, v: u64) {
    mem.write_u64(PhysAddr(addr), v)
        .expect("slab objects lie in simulated RAM");
}

impl VmSys {
    /// Allocates the objects of a VMA with an anon chain of `chain` anon_vmas
    /// (`vm_area_alloc` and `anon_vma_chain_alloc`), zeroed as `vma_init` leaves them. `None`
    /// without a slab; ENOMEM, with nothing allocated, if the slab is out of memory.
    pub(crate) fn alloc_vma_objs(
        &self,
        cpu: CpuId,
        chain: usize,
    ) -> Result<Option<VmaObjs>, Errno> {
        let Some(slab) = &self.slab else {
            return Ok(None);
        };
        let pin = slab.cpu(cpu);
        let vma = pin
            .alloc_obj::<VmAreaStruct>(Gfp::GFP_KERNEL | Gfp::ZERO)
            .map_err(|_| Errno::Enomem)?;
        let mut objs = VmaObjs {
            vma,
            avcs: Vec::with_capacity(chain),
        };
        for _ in 0..chain {
            match pin.alloc_obj::<AnonVmaChain>(Gfp::GFP_KERNEL) {
                Ok(avc) => objs.avcs.push(avc),
                Err(_) => {
                    Self::free_objs_on(&pin, objs);
                    return Err(Errno::Enomem);
                }
            }
        }
        Ok(Some(objs))
    }

    /// Allocates one more `anon_vma_chain` for a VMA (`None` without a slab).
    pub(crate) fn alloc_avc(&self, cpu: CpuId) -> Result<Option<KObj<AnonVmaChain>>, Errno> {
        let Some(slab) = &self.slab else {
            return Ok(None);
        };
        slab.cpu(cpu)
            .alloc_obj::<AnonVmaChain>(Gfp::GFP_KERNEL)
            .map(Some)
            .map_err(|_| Errno::Enomem)
    }

    fn free_objs_on(pin: &SlabCpu<'_>, objs: VmaObjs) {
        for avc in objs.avcs {
            pin.free_obj(avc);
        }
        pin.free_obj(objs.vma);
    }

    /// Frees a VMA's objects that never made it into a tree.
    pub(crate) fn free_vma_objs(&self, cpu: CpuId, objs: Option<VmaObjs>) {
        if let (Some(slab), Some(objs)) = (&self.slab, objs) {
            Self::free_objs_on(&slab.cpu(cpu), objs);
        }
    }

    /// Frees a dying VMA's objects and drops its references to its anon_vmas, freeing on
    /// `cpu` the objects of those whose last reference this was (`unlink_anon_vmas` and
    /// `vm_area_free`).
    pub(crate) fn release_vma(&self, cpu: CpuId, vma: &mut Vma) {
        let objs = vma.objs.take();
        let mut chain: Vec<Arc<RmapList>> = std::mem::take(&mut vma.anon_parents);
        chain.extend(vma.anon_vma.take());
        let Some(slab) = &self.slab else {
            return;
        };
        let pin = slab.cpu(cpu);
        if let Some(objs) = objs {
            Self::free_objs_on(&pin, objs);
        }
        for list in chain {
            // A reference held elsewhere (another VMA, the registry, a walk) keeps it alive;
            // its last holder frees it.
            if let Ok(mut list) = Arc::try_unwrap(list) {
                if let Some(k) = list.kobj.as_mut() {
                    k.free(&pin);
                }
            }
        }
    }

    /// Creates an anon_vma (`anon_vma_alloc`) with a fresh id, under `parent` (fork's
    /// `anon_vma_fork`) or as its own root. ENOMEM if the slab is out of memory.
    pub(crate) fn new_anon_vma(
        &self,
        cpu: CpuId,
        parent: Option<&Arc<RmapList>>,
    ) -> Result<Arc<RmapList>, Errno> {
        let id = self.new_id();
        let Some(slab) = &self.slab else {
            return Ok(Arc::new(RmapList::new(id)));
        };
        // No __GFP_ZERO: the cache's constructor set the object up once (SLAB_TYPESAFE_BY_RCU).
        let obj = slab
            .cpu(cpu)
            .alloc_obj::<AnonVma>(Gfp::GFP_KERNEL)
            .map_err(|_| Errno::Enomem)?;
        let a = obj.addr().0;
        let parent = parent.and_then(|p| p.kobj.as_ref()).map_or(0, |k| k.addr());
        let root = if parent == 0 {
            a
        } else {
            self.mem
                .read_u64(PhysAddr(parent + AV_ROOT))
                .expect("slab objects lie in simulated RAM")
        };
        write(&self.mem, a + AV_ROOT, root);
        write(&self.mem, a + AV_REFCOUNT, 1);
        write(&self.mem, a + AV_PARENT, parent);
        Ok(Arc::new(RmapList::anon(
            id,
            AnonVmaObj {
                slab: slab.clone(),
                home: cpu,
                obj: Some(obj),
            },
        )))
    }

    /// Frees an anon_vma nothing else references yet (a failed fork or `anon_vma_prepare`).
    pub(crate) fn put_anon_vma(&self, cpu: CpuId, list: Arc<RmapList>) {
        if let (Some(slab), Ok(mut list)) = (&self.slab, Arc::try_unwrap(list)) {
            if let Some(k) = list.kobj.as_mut() {
                k.free(&slab.cpu(cpu));
            }
        }
    }

    /// Allocates and fills the `mm_struct` of a new address space (`allocate_mm` and
    /// `mm_init`). `None` without a slab; ENOMEM if the slab is out of memory.
    pub(crate) fn alloc_mm_obj(
        &self,
        cpu: CpuId,
        pid: mm_types::Pid,
        pgd: Pfn,
        mmap_base: u64,
    ) -> Result<Option<KObj<MmStruct>>, Errno> {
        let Some(slab) = &self.slab else {
            return Ok(None);
        };
        let obj = slab
            .cpu(cpu)
            .alloc_obj::<MmStruct>(Gfp::GFP_KERNEL | Gfp::ZERO)
            .map_err(|_| Errno::Enomem)?;
        let a = obj.addr().0;
        write(&self.mem, a, MM_MAGIC);
        write(&self.mem, a + MM_PID, pid.0 as u64);
        write(&self.mem, a + MM_PGD, pgd.phys().0);
        write(&self.mem, a + MM_MMAP_BASE, mmap_base);
        Ok(Some(obj))
    }

    /// Frees an address space's `mm_struct` (`__mmdrop`), clearing its magic first.
    pub(crate) fn free_mm_obj(&self, cpu: CpuId, obj: Option<KObj<MmStruct>>) {
        if let (Some(slab), Some(obj)) = (&self.slab, obj) {
            write(&self.mem, obj.addr().0, 0);
            slab.cpu(cpu).free_obj(obj);
        }
    }

    /// Writes `v`'s range, flags and owner into its `vm_area_struct`, and the (VMA, anon_vma)
    /// pair into each of its `anon_vma_chain`s. `mm` is the `mm_struct`'s physical address.
    pub(crate) fn write_vma(&self, v: &Vma, mm: u64) {
        let Some(objs) = &v.objs else {
            return;
        };
        let a = objs.vma.addr().0;
        write(&self.mem, a + VM_START, v.start);
        write(&self.mem, a + VM_END, v.end);
        write(&self.mem, a + VM_MM, mm);
        write(&self.mem, a + VM_FLAGS, v.flags.bits());
        debug_assert_eq!(objs.avcs.len(), v.anon_chain().count());
        for (avc, list) in objs.avcs.iter().zip(v.anon_chain()) {
            let c = avc.addr().0;
            write(&self.mem, c + AVC_VMA, a);
            write(
                &self.mem,
                c + AVC_ANON_VMA,
                list.kobj.as_ref().map_or(0, |k| k.addr()),
            );
        }
    }

    /// Checks that `v` has its objects if and only if the layer has a slab, one
    /// `anon_vma_chain` per anon_vma of its chain, and that the objects hold what
    /// [`VmSys::write_vma`] wrote; that each anon_vma of its chain is live.
    pub(crate) fn check_vma_objs(&self, v: &Vma, mm: u64) -> Result<(), String> {
        let Some(objs) = &v.objs else {
            return match self.slab {
                Some(_) => Err(format!("{v:?} has no vm_area_struct")),
                None => Ok(()),
            };
        };
        if self.slab.is_none() {
            return Err(format!("{v:?} has slab objects without a slab"));
        }
        let rd = |a: u64| self.mem.read_u64(PhysAddr(a)).unwrap_or(u64::MAX);
        let a = objs.vma.addr().0;
        let got = [
            rd(a + VM_START),
            rd(a + VM_END),
            rd(a + VM_MM),
            rd(a + VM_FLAGS),
        ];
        let want = [v.start, v.end, mm, v.flags.bits()];
        if got != want {
            return Err(format!(
                "{v:?}: its vm_area_struct at {a:#x} holds start, end, mm, flags {got:x?}, \
                 not {want:x?}"
            ));
        }
        if objs.avcs.len() != v.anon_chain().count() {
            return Err(format!(
                "{v:?} has {} anon_vma_chains for {} anon_vmas",
                objs.avcs.len(),
                v.anon_chain().count()
            ));
        }
        for (avc, list) in objs.avcs.iter().zip(v.anon_chain()) {
            let av = list.kobj.as_ref().map_or(0, |k| k.addr());
            let c = avc.addr().0;
            if av == 0 || rd(av + AV_REFCOUNT) != 1 {
                return Err(format!("{v:?}: anon_vma {} is not live", list.id));
            }
            if (rd(c + AVC_VMA), rd(c + AVC_ANON_VMA)) != (a, av) {
                return Err(format!("{v:?}: its anon_vma_chain at {c:#x} is stale"));
            }
        }
        Ok(())
    }

    /// Checks an address space's `mm_struct`.
    pub(crate) fn check_mm_obj(
        &self,
        obj: Option<&KObj<MmStruct>>,
        pid: mm_types::Pid,
        exited: bool,
    ) -> Result<(), String> {
        match (obj, &self.slab, exited) {
            (None, None, _) | (None, Some(_), true) => Ok(()),
            (Some(o), Some(_), false) => {
                let rd = |off: u64| self.mem.read_u64(PhysAddr(o.addr().0 + off)).ok();
                if rd(0) == Some(MM_MAGIC) && rd(MM_PID) == Some(pid.0 as u64) {
                    Ok(())
                } else {
                    Err(format!("the mm_struct at {:?} is not {pid:?}'s", o.addr()))
                }
            }
            (o, _, exited) => Err(format!(
                "mm_struct {o:?} with a slab: {}, exited: {exited}",
                self.slab.is_some()
            )),
        }
    }
}
