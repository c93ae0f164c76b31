//! Errors of the slab allocator.

use mm_types::Pfn;

/// Why an object allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlabError {
    /// The page allocator could not supply a slab (or a large kmalloc block).
    #[error("slab page allocation failed: {0}")]
    NoMemory(#[from] mm_buddy::AllocError),
    /// `kmalloc(0)`: Linux returns `ZERO_SIZE_PTR`, which may not be dereferenced.
    #[error("kmalloc of zero bytes")]
    ZeroSize,
    /// A kmalloc request above `KMALLOC_MAX_SIZE` (4 MiB).
    #[error("kmalloc of {size} bytes is above KMALLOC_MAX_SIZE")]
    TooLarge {
        /// The requested size.
        size: usize,
    },
    /// The cache was destroyed.
    #[error("allocation from a destroyed cache")]
    Destroyed,
}

/// Why `kmem_cache_create` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// The name is empty, too long for slabinfo readers (> 64 bytes) or contains whitespace.
    #[error("bad cache name {0:?}: it must be 1..=64 bytes without whitespace")]
    BadName(String),
    /// Object size 0, or too large for any slab order.
    #[error("cache {name}: object size {size} cannot be placed in a slab")]
    BadSize {
        /// The cache name.
        name: String,
        /// The object size asked for.
        size: u32,
    },
    /// The alignment is not a power of two.
    #[error("cache {name}: alignment {align} is not a power of two")]
    BadAlign {
        /// The cache name.
        name: String,
        /// The alignment asked for.
        align: u32,
    },
    /// Every cache id has been used (ids are not reused after destroy).
    #[error("no cache id left (at most {0} caches over the allocator's life)")]
    TooManyCaches(usize),
    /// A cache with this name exists already.
    #[error("a cache named {0} exists already")]
    Exists(String),
    /// The `kmem_cache` descriptor object could not be allocated.
    #[error("cannot allocate the kmem_cache descriptor: {0}")]
    NoMemory(#[from] SlabError),
}

/// Why `kmem_cache_destroy` refused. The cache stays usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestroyError {
    /// Objects are still allocated. `report` is the kernel's report, line by line
    /// (`slab_err` from `free_partial`, then the `kmem_cache_destroy` warning).
    #[error("kmem_cache_destroy {name}: Slab cache still has objects")]
    Busy {
        /// The cache name.
        name: String,
        /// Addresses of the objects still allocated (at most 64 listed).
        live: Vec<u64>,
        /// The kernel-style leak report.
        report: String,
    },
    /// A CPU holding a CPU slab of the cache is pinned by another thread, so its free objects
    /// cannot be counted; retry when that CPU is released.
    #[error("kmem_cache_destroy {name}: CPU {cpu} is held by another thread")]
    CpuBusy {
        /// The cache name.
        name: String,
        /// The CPU.
        cpu: u32,
    },
    /// The cache was destroyed already.
    #[error("kmem_cache_destroy {0}: already destroyed")]
    AlreadyDestroyed(String),
}

/// Why the allocator could not boot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootError {
    /// Simulated RAM is larger than the per-CPU freelist encoding covers (8 TiB).
    #[error("simulated RAM ends at pfn {0}, above the slab allocator's 8 TiB limit")]
    RamTooLarge(Pfn),
    /// A boot cache could not be created.
    #[error("boot cache: {0}")]
    Create(#[from] CreateError),
    /// A `slub_*` boot parameter is out of range.
    #[error("{name}={value} is out of range")]
    Param {
        /// The parameter (`slub_min_order`, `slub_max_order`, `slub_min_objects`).
        name: &'static str,
        /// The value given.
        value: u32,
    },
}

/// A broken slab invariant, found by [`crate::SlabAllocator::check_invariants`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("slab cache {cache}: {what}")]
pub struct InvariantError {
    /// The cache.
    pub cache: String,
    /// What is broken.
    pub what: String,
}
