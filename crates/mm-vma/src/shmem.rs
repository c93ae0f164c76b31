//! Shared anonymous memory (`MAP_SHARED | MAP_ANONYMOUS`): Linux backs it with a shmem file
//! named `/dev/zero (deleted)` (`shmem_zero_setup`). This is that file, without swap: its pages
//! live until the last VMA mapping it is gone.

use crate::hooks::{FileFaultError, FilePage, VmFile};
use mm_buddy::{Buddy, Frame};
use mm_phys::PageFlags;
use mm_sync::sync::{Arc, Mutex};
use mm_sync::untracked::{AtomicU64, Ordering};
use mm_types::{CpuId, Gfp, Order, Pfn};
use std::collections::BTreeMap;
use std::fmt;

/// The device of the internal shmem mount, as `/proc/PID/maps` shows it.
pub const SHMEM_DEV: (u32, u32) = (0, 1);

/// A shmem object backing one shared anonymous mapping (and its fork copies).
pub struct ShmemFile {
    buddy: Arc<Buddy>,
    mapping_id: u64,
    ino: u64,
    size_pages: u64,
    /// Page index -> frame; the object holds one reference on each.
    pages: Mutex<BTreeMap<u64, Pfn>>,
    /// VMAs mapping the object (`vm_ops->open` minus `close`).
    users: AtomicU64,
}

impl fmt::Debug for ShmemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmemFile")
            .field("mapping_id", &self.mapping_id)
            .field("ino", &self.ino)
            .field("size_pages", &self.size_pages)
            .finish_non_exhaustive()
    }
}

impl ShmemFile {
    /// Creates an empty object of `size_pages` pages.
    pub fn new(buddy: Arc<Buddy>, mapping_id: u64, ino: u64, size_pages: u64) -> ShmemFile {
        ShmemFile {
            buddy,
            mapping_id,
            ino,
            size_pages,
            pages: Mutex::new(BTreeMap::new()),
            users: AtomicU64::new(0),
        }
    }

    /// Returns the number of pages the object holds (`shmem_inode_info.alloced`).
    pub fn nr_pages(&self) -> usize {
        self.pages.lock().len()
    }
}

impl VmFile for ShmemFile {
    fn mapping_id(&self) -> u64 {
        self.mapping_id
    }
    fn path(&self) -> &str {
        "/dev/zero (deleted)"
    }
    fn dev(&self) -> (u32, u32) {
        SHMEM_DEV
    }
    fn ino(&self) -> u64 {
        self.ino
    }
    fn size_pages(&self) -> u64 {
        self.size_pages
    }
    fn is_shmem(&self) -> bool {
        true
    }
    fn wants_writenotify(&self) -> bool {
        false
    }

    fn fault(&self, cpu: CpuId, index: u64) -> Result<FilePage, FileFaultError> {
        if index >= self.size_pages {
            return Err(FileFaultError::BeyondEof);
        }
        if let Some(&pfn) = self.pages.lock().get(&index) {
            self.buddy.mem().page(pfn).get();
            return Ok(FilePage { pfn, major: false });
        }
        // Allocate with the object unlocked: the allocator may reclaim.
        let frame = self
            .buddy
            .alloc(cpu, Order::ZERO, Gfp::GFP_HIGHUSER_MOVABLE | Gfp::ZERO)
            .map_err(|_| FileFaultError::NoMemory)?;
        let mut pages = self.pages.lock();
        if let Some(&pfn) = pages.get(&index) {
            // Another CPU added it meanwhile.
            self.buddy.mem().page(pfn).get();
            drop(pages);
            self.buddy.free(cpu, frame);
            return Ok(FilePage { pfn, major: false });
        }
        let pfn = frame.into_raw().0;
        let page = self.buddy.mem().page(pfn);
        page.set_flags(PageFlags::SWAPBACKED | PageFlags::UPTODATE);
        page.set_mapping(self.mapping_id);
        page.set_index(index);
        page.set_mapcount(0);
        // One reference for the object, one for the caller.
        page.set_refcount(2);
        pages.insert(index, pfn);
        Ok(FilePage { pfn, major: false })
    }

    fn open(&self) {
        self.users.fetch_add(1, Ordering::Relaxed);
    }

    fn close(&self, cpu: CpuId) {
        if self.users.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // The last VMA is gone and its translations flushed: drop the object's references.
        let pages = std::mem::take(&mut *self.pages.lock());
        for pfn in pages.into_values() {
            let page = self.buddy.mem().page(pfn);
            if page.put_testzero() {
                page.set_flags(PageFlags::empty());
                page.set_mapping(0);
                self.buddy.free(cpu, Frame::from_raw(pfn, Order::ZERO));
            }
        }
    }
}
