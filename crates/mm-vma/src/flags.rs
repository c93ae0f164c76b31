//! Flag vocabularies: `vm_flags` of a VMA (`include/linux/mm.h`) and the user-visible flags of
//! `mmap`, `mprotect`, `mremap` and `madvise` (`include/uapi/asm-generic/mman*.h`, x86-64
//! values).

use mm_mmu::Prot;

bitflags::bitflags! {
    /// A VMA's `vm_flags`, with Linux's bit values (their order is the order of the
    /// `VmFlags:` mnemonics in `/proc/PID/smaps`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct VmFlags: u64 {
        /// `VM_READ`.
        const READ = 0x0000_0001;
        /// `VM_WRITE`.
        const WRITE = 0x0000_0002;
        /// `VM_EXEC`.
        const EXEC = 0x0000_0004;
        /// `VM_SHARED`: writes reach the object (MAP_SHARED of a writable object).
        const SHARED = 0x0000_0008;
        /// `VM_MAYREAD`: mprotect may add `VM_READ`.
        const MAYREAD = 0x0000_0010;
        /// `VM_MAYWRITE`.
        const MAYWRITE = 0x0000_0020;
        /// `VM_MAYEXEC`.
        const MAYEXEC = 0x0000_0040;
        /// `VM_MAYSHARE`: a MAP_SHARED mapping (shown as `s` in maps).
        const MAYSHARE = 0x0000_0080;
        /// `VM_GROWSDOWN`: a stack that a fault below it extends.
        const GROWSDOWN = 0x0000_0100;
        /// `VM_UFFD_MISSING`.
        const UFFD_MISSING = 0x0000_0200;
        /// `VM_PFNMAP`.
        const PFNMAP = 0x0000_0400;
        /// `VM_UFFD_WP`.
        const UFFD_WP = 0x0000_1000;
        /// `VM_LOCKED`: mlocked.
        const LOCKED = 0x0000_2000;
        /// `VM_IO`.
        const IO = 0x0000_4000;
        /// `VM_SEQ_READ` (MADV_SEQUENTIAL).
        const SEQ_READ = 0x0000_8000;
        /// `VM_RAND_READ` (MADV_RANDOM).
        const RAND_READ = 0x0001_0000;
        /// `VM_DONTCOPY` (MADV_DONTFORK): not copied into a fork child.
        const DONTCOPY = 0x0002_0000;
        /// `VM_DONTEXPAND`.
        const DONTEXPAND = 0x0004_0000;
        /// `VM_LOCKONFAULT`.
        const LOCKONFAULT = 0x0008_0000;
        /// `VM_ACCOUNT`: charged to `Committed_AS`.
        const ACCOUNT = 0x0010_0000;
        /// `VM_NORESERVE`: not charged (MAP_NORESERVE).
        const NORESERVE = 0x0020_0000;
        /// `VM_HUGETLB`.
        const HUGETLB = 0x0040_0000;
        /// `VM_SYNC`.
        const SYNC = 0x0080_0000;
        /// `VM_ARCH_1` (`VM_PAT` on x86).
        const ARCH_1 = 0x0100_0000;
        /// `VM_WIPEONFORK`: the child gets empty anonymous memory.
        const WIPEONFORK = 0x0200_0000;
        /// `VM_DONTDUMP`.
        const DONTDUMP = 0x0400_0000;
        /// `VM_SOFTDIRTY`.
        const SOFTDIRTY = 0x0800_0000;
        /// `VM_MIXEDMAP`.
        const MIXEDMAP = 0x1000_0000;
        /// `VM_HUGEPAGE` (MADV_HUGEPAGE).
        const HUGEPAGE = 0x2000_0000;
        /// `VM_NOHUGEPAGE`.
        const NOHUGEPAGE = 0x4000_0000;
        /// `VM_MERGEABLE` (KSM).
        const MERGEABLE = 0x8000_0000;
    }
}

impl VmFlags {
    /// `VM_STACK` on x86-64.
    pub const STACK: VmFlags = VmFlags::GROWSDOWN;
    /// `VM_DATA_DEFAULT_FLAGS` on x86-64 (no READ_IMPLIES_EXEC): heap and data.
    pub const DATA_DEFAULT: VmFlags = VmFlags::READ
        .union(VmFlags::WRITE)
        .union(VmFlags::MAYREAD)
        .union(VmFlags::MAYWRITE)
        .union(VmFlags::MAYEXEC);
    /// `VM_STACK_DEFAULT_FLAGS`: data defaults plus `VM_GROWSDOWN` and `VM_ACCOUNT`.
    pub const STACK_DEFAULT: VmFlags = VmFlags::DATA_DEFAULT
        .union(VmFlags::GROWSDOWN)
        .union(VmFlags::ACCOUNT);
    /// `VM_READ | VM_WRITE | VM_EXEC`.
    pub const ACCESS: VmFlags = VmFlags::READ.union(VmFlags::WRITE).union(VmFlags::EXEC);
    /// `VM_LOCKED_MASK`.
    pub const LOCKED_MASK: VmFlags = VmFlags::LOCKED.union(VmFlags::LOCKONFAULT);
    /// `VM_SPECIAL`: mappings mlock and merging leave alone.
    pub const SPECIAL: VmFlags = VmFlags::IO
        .union(VmFlags::DONTEXPAND)
        .union(VmFlags::PFNMAP)
        .union(VmFlags::MIXEDMAP);

    /// The `VmFlags:` mnemonics of `/proc/PID/smaps` (`show_smap_vma_flags`), by bit.
    pub(crate) const MNEMONICS: [(VmFlags, &'static str); 31] = [
        (VmFlags::READ, "rd"),
        (VmFlags::WRITE, "wr"),
        (VmFlags::EXEC, "ex"),
        (VmFlags::SHARED, "sh"),
        (VmFlags::MAYREAD, "mr"),
        (VmFlags::MAYWRITE, "mw"),
        (VmFlags::MAYEXEC, "me"),
        (VmFlags::MAYSHARE, "ms"),
        (VmFlags::GROWSDOWN, "gd"),
        (VmFlags::UFFD_MISSING, "um"),
        (VmFlags::PFNMAP, "pf"),
        (VmFlags::UFFD_WP, "uw"),
        (VmFlags::LOCKED, "lo"),
        (VmFlags::IO, "io"),
        (VmFlags::SEQ_READ, "sr"),
        (VmFlags::RAND_READ, "rr"),
        (VmFlags::DONTCOPY, "dc"),
        (VmFlags::DONTEXPAND, "de"),
        (VmFlags::LOCKONFAULT, "??"),
        (VmFlags::ACCOUNT, "ac"),
        (VmFlags::NORESERVE, "nr"),
        (VmFlags::HUGETLB, "ht"),
        (VmFlags::SYNC, "sf"),
        (VmFlags::ARCH_1, "ar"),
        (VmFlags::WIPEONFORK, "wf"),
        (VmFlags::DONTDUMP, "dd"),
        (VmFlags::SOFTDIRTY, "sd"),
        (VmFlags::MIXEDMAP, "mm"),
        (VmFlags::HUGEPAGE, "hg"),
        (VmFlags::NOHUGEPAGE, "nh"),
        (VmFlags::MERGEABLE, "mg"),
    ];

    /// `calc_vm_prot_bits`: the `VM_READ/WRITE/EXEC` bits of an mmap/mprotect `prot`.
    pub fn from_prot(prot: ProtFlags) -> VmFlags {
        let mut f = VmFlags::empty();
        if prot.contains(ProtFlags::READ) {
            f |= VmFlags::READ;
        }
        if prot.contains(ProtFlags::WRITE) {
            f |= VmFlags::WRITE;
        }
        if prot.contains(ProtFlags::EXEC) {
            f |= VmFlags::EXEC;
        }
        f
    }

    /// Returns true if any access is allowed (`vma_is_accessible`).
    #[inline]
    pub fn is_accessible(self) -> bool {
        self.intersects(VmFlags::ACCESS)
    }

    /// Returns true for a private mapping whose pages are copied on write (`is_cow_mapping`).
    #[inline]
    pub fn is_cow(self) -> bool {
        self & (VmFlags::SHARED | VmFlags::MAYWRITE) == VmFlags::MAYWRITE
    }

    /// `is_exec_mapping`: counted in `exec_vm` (VmExe/VmLib).
    pub(crate) fn is_exec_mapping(self) -> bool {
        self & (VmFlags::EXEC | VmFlags::WRITE | VmFlags::STACK) == VmFlags::EXEC
    }

    /// `is_stack_mapping`: counted in `stack_vm` (VmStk).
    pub(crate) fn is_stack_mapping(self) -> bool {
        self.contains(VmFlags::STACK)
    }

    /// `is_data_mapping`: counted in `data_vm` (VmData).
    pub(crate) fn is_data_mapping(self) -> bool {
        self & (VmFlags::WRITE | VmFlags::SHARED | VmFlags::STACK) == VmFlags::WRITE
    }

    /// The protection page-table entries of this mapping get (`vm_get_page_prot`), before the
    /// write bit is dropped for copy-on-write.
    pub(crate) fn page_prot(self) -> Prot {
        let mut p = Prot::empty();
        if self.contains(VmFlags::READ) {
            p |= Prot::READ;
        }
        if self.contains(VmFlags::WRITE) {
            p |= Prot::WRITE | Prot::READ;
        }
        if self.contains(VmFlags::EXEC) {
            p |= Prot::EXEC | Prot::READ;
        }
        p
    }

    /// The protection of a PTE installed for an existing page that this mapping may not
    /// write in place: the page protection without `Prot::WRITE` for private mappings
    /// (`PAGE_COPY`), as is for shared ones.
    pub(crate) fn shared_or_readonly_prot(self) -> Prot {
        if self.contains(VmFlags::SHARED) {
            self.page_prot()
        } else {
            self.page_prot() - Prot::WRITE
        }
    }
}

bitflags::bitflags! {
    /// `prot` of `mmap` and `mprotect` (`PROT_*`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct ProtFlags: u32 {
        /// `PROT_READ`.
        const READ = 0x1;
        /// `PROT_WRITE`.
        const WRITE = 0x2;
        /// `PROT_EXEC`.
        const EXEC = 0x4;
        /// `PROT_SEM`.
        const SEM = 0x8;
        /// `PROT_GROWSDOWN` (mprotect only).
        const GROWSDOWN = 0x0100_0000;
        /// `PROT_GROWSUP` (mprotect only).
        const GROWSUP = 0x0200_0000;
    }
}

impl ProtFlags {
    /// `PROT_NONE`.
    pub const NONE: ProtFlags = ProtFlags::empty();
    /// `PROT_READ | PROT_WRITE`.
    pub const RW: ProtFlags = ProtFlags::READ.union(ProtFlags::WRITE);
    /// The bits `arch_validate_prot` accepts.
    pub(crate) const VALID: ProtFlags = ProtFlags::READ
        .union(ProtFlags::WRITE)
        .union(ProtFlags::EXEC)
        .union(ProtFlags::SEM);
}

bitflags::bitflags! {
    /// `flags` of `mmap` (`MAP_*`, x86-64 values). The low four bits are the mapping type.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct MapFlags: u32 {
        /// `MAP_SHARED`.
        const SHARED = 0x01;
        /// `MAP_PRIVATE`.
        const PRIVATE = 0x02;
        /// `MAP_FIXED`: map exactly at `addr`, replacing what is there.
        const FIXED = 0x10;
        /// `MAP_ANONYMOUS`.
        const ANONYMOUS = 0x20;
        /// `MAP_GROWSDOWN`.
        const GROWSDOWN = 0x0100;
        /// `MAP_DENYWRITE` (ignored).
        const DENYWRITE = 0x0800;
        /// `MAP_EXECUTABLE` (ignored).
        const EXECUTABLE = 0x1000;
        /// `MAP_LOCKED`.
        const LOCKED = 0x2000;
        /// `MAP_NORESERVE`.
        const NORESERVE = 0x4000;
        /// `MAP_POPULATE`: fault the range in now.
        const POPULATE = 0x8000;
        /// `MAP_NONBLOCK` (with POPULATE: do not populate).
        const NONBLOCK = 0x0001_0000;
        /// `MAP_STACK` (ignored).
        const STACK = 0x0002_0000;
        /// `MAP_HUGETLB`.
        const HUGETLB = 0x0004_0000;
        /// `MAP_SYNC`.
        const SYNC = 0x0008_0000;
        /// `MAP_FIXED_NOREPLACE`: like FIXED, but fail with EEXIST instead of replacing.
        const FIXED_NOREPLACE = 0x0010_0000;
    }
}

impl MapFlags {
    /// `MAP_TYPE`: the mapping-type field.
    pub const TYPE: u32 = 0x0f;
    /// `MAP_SHARED_VALIDATE` (a type value).
    pub const SHARED_VALIDATE: u32 = 0x03;
}

bitflags::bitflags! {
    /// `flags` of `mremap` (`MREMAP_*`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct MremapFlags: u32 {
        /// `MREMAP_MAYMOVE`.
        const MAYMOVE = 1;
        /// `MREMAP_FIXED`.
        const FIXED = 2;
        /// `MREMAP_DONTUNMAP`.
        const DONTUNMAP = 4;
    }
}

/// `advice` of `madvise` that the simulator implements (`MADV_*` values).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Advice {
    /// `MADV_NORMAL` (0): clears the read-ahead hints.
    Normal,
    /// `MADV_RANDOM` (1): sets `VM_RAND_READ`.
    Random,
    /// `MADV_SEQUENTIAL` (2): sets `VM_SEQ_READ`.
    Sequential,
    /// `MADV_WILLNEED` (3): starts swap-in or file read-ahead of the range.
    WillNeed,
    /// `MADV_DONTNEED` (4): zaps the range; private pages read back as zero (or the file).
    DontNeed,
    /// `MADV_FREE` (8): private anonymous pages may be discarded lazily while clean.
    Free,
    /// `MADV_DONTFORK` (10): sets `VM_DONTCOPY`.
    DontFork,
    /// `MADV_DOFORK` (11): clears `VM_DONTCOPY`.
    DoFork,
}

impl Advice {
    /// Decodes a raw `advice`; `None` for values the simulator does not implement (`EINVAL`).
    pub fn from_raw(raw: i32) -> Option<Advice> {
        Some(match raw {
            0 => Advice::Normal,
            1 => Advice::Random,
            2 => Advice::Sequential,
            3 => Advice::WillNeed,
            4 => Advice::DontNeed,
            8 => Advice::Free,
            10 => Advice::DontFork,
            11 => Advice::DoFork,
            _ => return None,
        })
    }

    /// Returns the raw value.
    pub fn raw(self) -> i32 {
        match self {
            Advice::Normal => 0,
            Advice::Random => 1,
            Advice::Sequential => 2,
            Advice::WillNeed => 3,
            Advice::DontNeed => 4,
            Advice::Free => 8,
            Advice::DontFork => 10,
            Advice::DoFork => 11,
        }
    }
}
