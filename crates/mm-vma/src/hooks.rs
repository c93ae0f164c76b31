//! Seams to the layers that do not exist yet or sit beside this one: files and the page cache,
//! swap, and the LRU lists. The machine installs implementations; the defaults do nothing.
//!
//! Page references: a page-table entry that maps a page holds one reference and one mapcount
//! on it. A hook that hands a page to the fault handler ([`VmFile::fault`],
//! [`SwapBackend::swap_in`]) takes one reference for it, which becomes the mapping's
//! reference, or which the handler drops again if it does not map the page.

use mm_sync::sync::Arc;
use mm_types::{CpuId, Pfn, SwapEntry};
use std::fmt;

/// A page a file hands to the fault handler.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FilePage {
    /// The page, with one reference taken for the caller.
    pub pfn: Pfn,
    /// The page had to be read (a major fault).
    pub major: bool,
}

/// Why a file could not provide a page.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum FileFaultError {
    /// The page lies beyond the end of the file (SIGBUS).
    #[error("page beyond the end of the file")]
    BeyondEof,
    /// Reading the page failed (SIGBUS).
    #[error("I/O error reading the page")]
    Io,
    /// No memory for the page (VM_FAULT_OOM).
    #[error("no memory for the page")]
    NoMemory,
}

/// A mappable object: a file in the page cache, or shared anonymous memory
/// ([`crate::ShmemFile`]). The page-cache issue implements it for real files.
pub trait VmFile: Send + Sync + fmt::Debug {
    /// The `page->mapping` value of this object's pages: unique among the machine's objects
    /// and never 0. rmap finds a file page's mappings by it.
    fn mapping_id(&self) -> u64;
    /// The path `/proc/PID/maps` shows.
    fn path(&self) -> &str;
    /// The device `/proc/PID/maps` shows (major, minor).
    fn dev(&self) -> (u32, u32) {
        (0, 0)
    }
    /// The inode number `/proc/PID/maps` shows.
    fn ino(&self) -> u64 {
        0
    }
    /// The file size in pages, rounded up: a fault at or beyond it is SIGBUS.
    fn size_pages(&self) -> u64;
    /// Shared memory (shmem/tmpfs): its pages count in `RssShmem`, not `RssFile`.
    fn is_shmem(&self) -> bool {
        false
    }
    /// The file was opened for reading (`FMODE_READ`).
    fn readable(&self) -> bool {
        true
    }
    /// The file was opened for writing (`FMODE_WRITE`): needed for a writable MAP_SHARED.
    fn writable(&self) -> bool {
        true
    }
    /// Writes through a shared mapping must fault first so the file can track dirtying
    /// (`vma_wants_writenotify`); shmem says no.
    fn wants_writenotify(&self) -> bool {
        true
    }
    /// Finds or reads page `index` (`vm_ops->fault`, `filemap_fault`), taking one reference
    /// for the caller.
    fn fault(&self, cpu: CpuId, index: u64) -> Result<FilePage, FileFaultError>;
    /// A shared mapping is about to make page `index` writable (`page_mkwrite` and
    /// `set_page_dirty`).
    fn page_mkwrite(&self, _cpu: CpuId, _pfn: Pfn, _index: u64) {}
    /// `MADV_WILLNEED`: start reading pages `first..first + count` (`force_page_cache_readahead`).
    fn readahead(&self, _cpu: CpuId, _first: u64, _count: u64) {}
    /// A VMA mapping this object was created (`vm_ops->open`, and at mmap).
    fn open(&self) {}
    /// A VMA mapping this object was destroyed, after every translation it made was flushed
    /// (`vm_ops->close`, `fput`).
    fn close(&self, _cpu: CpuId) {}
}

/// A shared handle to a [`VmFile`] (`struct file *`).
#[derive(Clone)]
pub struct VmFileRef(Arc<Box<dyn VmFile>>);

impl VmFileRef {
    /// Wraps a file.
    pub fn new(file: impl VmFile + 'static) -> VmFileRef {
        VmFileRef(Arc::new(Box::new(file)))
    }

    /// Returns true if both handles name the same object.
    pub fn same(&self, other: &VmFileRef) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for VmFileRef {
    type Target = dyn VmFile;
    fn deref(&self) -> &(dyn VmFile + 'static) {
        &**self.0
    }
}

impl fmt::Debug for VmFileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.0, f)
    }
}

/// A page brought in from swap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SwapIn {
    /// The page, with one reference taken for the caller; it holds the entry's data.
    pub pfn: Pfn,
    /// The page had to be read (a major fault).
    pub major: bool,
}

/// Why a swap entry could not be brought in.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum SwapError {
    /// The entry names no slot in use (SIGBUS).
    #[error("invalid swap entry")]
    Invalid,
    /// Reading the slot failed (SIGBUS).
    #[error("I/O error reading the swap slot")]
    Io,
    /// No memory for the page (VM_FAULT_OOM).
    #[error("no memory for the page")]
    NoMemory,
}

/// The swap layer as the VMA layer sees it (the swap issue implements it).
pub trait SwapBackend: Send + Sync + fmt::Debug {
    /// Brings the page of `entry` in (`swap_cache_get_folio` or `swapin_readahead`).
    fn swap_in(&self, cpu: CpuId, entry: SwapEntry) -> Result<SwapIn, SwapError>;
    /// Drops one page-table reference to `entry` (`free_swap_and_cache`, `swap_free`).
    fn swap_free(&self, cpu: CpuId, entry: SwapEntry);
    /// Adds one page-table reference to `entry` (`swap_duplicate`, at fork).
    fn swap_duplicate(&self, entry: SwapEntry) -> Result<(), SwapError>;
    /// The number of page-table references to `entry` (`swp_swapcount`, for SwapPss).
    fn swap_count(&self, _entry: SwapEntry) -> u32 {
        1
    }
    /// `MADV_WILLNEED` on a swapped-out page: start reading it.
    fn readahead(&self, _cpu: CpuId, _entry: SwapEntry) {}
    /// Total swap pages, for the overcommit heuristic (`total_swap_pages`).
    fn total_pages(&self) -> u64 {
        0
    }
}

/// A backend shared with its other users (the machine, reclaim) through an `Arc`.
impl<T: SwapBackend + ?Sized> SwapBackend for Arc<T>
where
    Arc<T>: fmt::Debug,
{
    fn swap_in(&self, cpu: CpuId, entry: SwapEntry) -> Result<SwapIn, SwapError> {
        (**self).swap_in(cpu, entry)
    }
    fn swap_free(&self, cpu: CpuId, entry: SwapEntry) {
        (**self).swap_free(cpu, entry)
    }
    fn swap_duplicate(&self, entry: SwapEntry) -> Result<(), SwapError> {
        (**self).swap_duplicate(entry)
    }
    fn swap_count(&self, entry: SwapEntry) -> u32 {
        (**self).swap_count(entry)
    }
    fn readahead(&self, cpu: CpuId, entry: SwapEntry) {
        (**self).readahead(cpu, entry)
    }
    fn total_pages(&self) -> u64 {
        (**self).total_pages()
    }
}

/// A machine without swap: no PTE ever holds a swap entry.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSwap;

impl SwapBackend for NoSwap {
    fn swap_in(&self, _cpu: CpuId, _entry: SwapEntry) -> Result<SwapIn, SwapError> {
        Err(SwapError::Invalid)
    }
    fn swap_free(&self, _cpu: CpuId, _entry: SwapEntry) {}
    fn swap_duplicate(&self, _entry: SwapEntry) -> Result<(), SwapError> {
        Err(SwapError::Invalid)
    }
}

/// The LRU lists as the VMA layer sees them (the LRU issue implements it).
pub trait LruHook: Send + Sync + fmt::Debug {
    /// A new anonymous page was mapped (`lru_cache_add_inactive_or_unevictable`).
    fn add_new_anon(&self, _cpu: CpuId, _pfn: Pfn) {}
    /// `MADV_FREE` made an anonymous page lazily freeable (`mark_page_lazyfree`).
    fn lazyfree(&self, _cpu: CpuId, _pfn: Pfn) {}
    /// The last reference to a page is being dropped: take it off its LRU list before it is
    /// freed (`__page_cache_release`).
    fn remove(&self, _cpu: CpuId, _pfn: Pfn) {}
}

/// LRU lists shared with their other users through an `Arc`.
impl<T: LruHook + ?Sized> LruHook for Arc<T>
where
    Arc<T>: fmt::Debug,
{
    fn add_new_anon(&self, cpu: CpuId, pfn: Pfn) {
        (**self).add_new_anon(cpu, pfn)
    }
    fn lazyfree(&self, cpu: CpuId, pfn: Pfn) {
        (**self).lazyfree(cpu, pfn)
    }
    fn remove(&self, cpu: CpuId, pfn: Pfn) {
        (**self).remove(cpu, pfn)
    }
}

/// LRU lists that are not there yet: every call does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLru;

impl LruHook for NoLru {}

/// The hooks a machine installs in [`crate::VmSys`].
#[derive(Debug)]
pub struct Hooks {
    /// The swap layer.
    pub swap: Box<dyn SwapBackend>,
    /// The LRU lists.
    pub lru: Box<dyn LruHook>,
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            swap: Box::new(NoSwap),
            lru: Box::new(NoLru),
        }
    }
}
