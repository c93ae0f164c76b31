//! The simulator's own kernel objects: the standard caches created at boot, with Linux's
//! object sizes, and typed handles for the crates that allocate from them.
//!
//! Sizes are the `<objsize>` column of a 6.18 x86-64 kernel's `/proc/slabinfo` (the sample
//! machine of `linux-mm-facts.md`, 2 CPUs), reached through the kernel's own
//! `kmem_cache_create` arguments: the alignment flags and, for `anon_vma`, the constructor
//! that moves the free pointer behind the object.

use crate::cache::Ctor;
use crate::cpu::SlabObj;
use crate::sizes::SlabFlags;
use mm_phys::PhysMem;
use mm_types::PhysAddr;
use std::fmt;
use std::marker::PhantomData;

/// A standard cache created at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StdCache {
    /// `mm_struct` (1600 B, `SLAB_HWCACHE_ALIGN`): one per address space.
    MmStruct,
    /// `maple_node` (256 B, 256-aligned): nodes of the VMA tree.
    MapleNode,
    /// `anon_vma` (96 B + constructor → 104 B, `SLAB_TYPESAFE_BY_RCU`).
    AnonVma,
    /// `anon_vma_chain` (64 B).
    AnonVmaChain,
    /// `task_struct` (5952 B, cache-line aligned).
    TaskStruct,
    /// `vm_area_struct` (176 B, `SLAB_HWCACHE_ALIGN` → 192 B).
    VmAreaStruct,
    /// `dentry` (192 B, `SLAB_RECLAIM_ACCOUNT`): the dentry cache's objects.
    Dentry,
}

/// The arguments of one standard cache's `kmem_cache_create`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StdSpec {
    pub(crate) name: &'static str,
    pub(crate) object_size: u32,
    pub(crate) align: u32,
    pub(crate) flags: SlabFlags,
    pub(crate) ctor: Option<CtorFn>,
}

/// A constructor as a plain function.
type CtorFn = fn(&PhysMem, PhysAddr);

/// Offset of `anon_vma.rwsem.wait_list` (root 8 B, then the rwsem: count, owner, osq and
/// wait_lock 24 B, then the list head).
pub const ANON_VMA_WAIT_LIST: u64 = 32;

/// `anon_vma_ctor`: an unlocked rwsem with an empty wait list (a list head pointing at
/// itself), refcount 0, an empty rb-tree.
fn anon_vma_ctor(mem: &PhysMem, obj: PhysAddr) {
    for off in (0..96).step_by(8) {
        mem.write_u64(PhysAddr(obj.0 + off), 0)
            .expect("slab objects lie in simulated RAM");
    }
    let head = obj.0 + ANON_VMA_WAIT_LIST;
    mem.write_u64(PhysAddr(head), head)
        .expect("slab objects lie in simulated RAM");
    mem.write_u64(PhysAddr(head + 8), head)
        .expect("slab objects lie in simulated RAM");
}

impl StdCache {
    /// Every standard cache, in the kernel's creation order (slabinfo lists them newest first:
    /// dentry, vm_area_struct, task_struct, anon_vma_chain, anon_vma, maple_node, mm_struct).
    pub const ALL: [StdCache; 7] = [
        StdCache::MmStruct,
        StdCache::MapleNode,
        StdCache::AnonVma,
        StdCache::AnonVmaChain,
        StdCache::TaskStruct,
        StdCache::VmAreaStruct,
        StdCache::Dentry,
    ];

    /// Returns the cache's name.
    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    pub(crate) const fn spec(self) -> StdSpec {
        const P: SlabFlags = SlabFlags::PANIC.union(SlabFlags::ACCOUNT);
        let (name, object_size, align, flags, ctor): (_, _, _, _, Option<CtorFn>) = match self {
            StdCache::MmStruct => (
                "mm_struct",
                1600,
                0,
                P.union(SlabFlags::HWCACHE_ALIGN),
                None,
            ),
            StdCache::MapleNode => ("maple_node", 256, 256, SlabFlags::PANIC, None),
            StdCache::AnonVma => (
                "anon_vma",
                96,
                0,
                P.union(SlabFlags::TYPESAFE_BY_RCU),
                Some(anon_vma_ctor),
            ),
            StdCache::AnonVmaChain => ("anon_vma_chain", 64, 0, P, None),
            StdCache::TaskStruct => ("task_struct", 5952, 64, P, None),
            StdCache::VmAreaStruct => (
                "vm_area_struct",
                176,
                0,
                P.union(SlabFlags::HWCACHE_ALIGN),
                None,
            ),
            StdCache::Dentry => ("dentry", 192, 0, P.union(SlabFlags::RECLAIM_ACCOUNT), None),
        };
        StdSpec {
            name,
            object_size,
            align,
            flags,
            ctor,
        }
    }

    pub(crate) fn ctor(self) -> Option<Ctor> {
        self.spec().ctor.map(|f| Box::new(f) as Ctor)
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// Where a kernel object type is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjSource {
    /// A standard cache.
    Cache(StdCache),
    /// `kmalloc(size)`.
    Kmalloc(usize),
}

/// A kernel object type allocated through [`crate::SlabCpu::alloc_obj`]. The standard ones
/// are below; an upper crate implements it for its own bookkeeping types (for example a page
/// table's `mmu_gather` batch record with `ObjSource::Kmalloc(..)`).
pub trait KernelObject {
    /// Where objects of this type come from.
    const SOURCE: ObjSource;
}

/// Declares a marker type for a standard cache.
macro_rules! std_object {
    ($(#[$m:meta])* $name:ident => $cache:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {}
        impl KernelObject for $name {
            const SOURCE: ObjSource = ObjSource::Cache(StdCache::$cache);
        }
    };
}

std_object!(
    /// `struct mm_struct`.
    MmStruct => MmStruct
);
std_object!(
    /// `struct maple_node`.
    MapleNode => MapleNode
);
std_object!(
    /// `struct anon_vma`.
    AnonVma => AnonVma
);
std_object!(
    /// `struct anon_vma_chain`.
    AnonVmaChain => AnonVmaChain
);
std_object!(
    /// `struct task_struct`.
    TaskStruct => TaskStruct
);
std_object!(
    /// `struct vm_area_struct`.
    VmAreaStruct => VmAreaStruct
);

/// An allocated kernel object of type `T`: a [`SlabObj`] that remembers its cache.
#[must_use = "a kernel object that is dropped is leaked; free it with SlabCpu::free_obj"]
pub struct KObj<T: KernelObject> {
    obj: SlabObj,
    _t: PhantomData<fn() -> T>,
}

static_assertions::assert_not_impl_any!(KObj<MmStruct>: Clone, Copy);

impl<T: KernelObject> fmt::Debug for KObj<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KObj<{}>({:?})",
            std::any::type_name::<T>(),
            self.obj.addr()
        )
    }
}

impl<T: KernelObject> KObj<T> {
    pub(crate) fn from_obj(obj: SlabObj) -> Self {
        KObj {
            obj,
            _t: PhantomData,
        }
    }
    pub(crate) fn into_obj(self) -> SlabObj {
        self.obj
    }
    /// Returns the object's physical address: its bytes are simulated RAM.
    #[inline]
    pub fn addr(&self) -> PhysAddr {
        self.obj.addr()
    }
    /// Takes the handle apart (to store the address in another object).
    pub fn into_raw(self) -> PhysAddr {
        self.obj.into_raw()
    }
    /// Rebuilds a handle from [`KObj::into_raw`]. The caller must own the object.
    pub fn from_raw(addr: PhysAddr) -> Self {
        Self::from_obj(SlabObj::from_raw(addr))
    }
}
