//! Simulated RAM: lazily reserved memory sections of frames and descriptors.

use crate::{Page, PhysError};
use mm_sync::untracked::{AtomicU64, AtomicUsize, OnceLock, Ordering};
use mm_types::{Pfn, PhysAddr, PAGE_SHIFT, PAGE_SIZE};
use std::alloc::Layout;
use std::fmt;

/// log2 of a memory section's size in bytes (x86-64 `SECTION_SIZE_BITS`): 128 MiB.
pub const SECTION_SIZE_BITS: u32 = 27;
/// Frames per memory section.
pub const SECTION_FRAMES: u64 = 1 << (SECTION_SIZE_BITS - PAGE_SHIFT);
const WORDS_PER_FRAME: usize = PAGE_SIZE / 8;
const SECTION_SHIFT: u32 = SECTION_SIZE_BITS - PAGE_SHIFT;

/// Types whose all-zero bit pattern is a valid value.
///
/// # Safety
/// Implementors must be valid when every byte is zero.
unsafe trait ZeroValid {}
// SAFETY: an atomic integer's zero bit pattern is the value 0.
unsafe impl ZeroValid for AtomicU64 {}
// SAFETY: `Page` is `repr(C)` and made only of atomic integers, each valid at zero.
unsafe impl ZeroValid for Page {}

/// Allocates `n` zeroed `T`s. For large sizes the host maps the memory lazily, so pages of it
/// that are never touched are never backed.
fn zeroed_slice<T: ZeroValid>(n: usize) -> Box<[T]> {
    if n == 0 || std::mem::size_of::<T>() == 0 {
        return (0..n)
            .map(|_| {
                // SAFETY: `T: ZeroValid`, so the zero pattern is a valid `T`.
                unsafe { std::mem::zeroed() }
            })
            .collect();
    }
    let layout = Layout::array::<T>(n).expect("section layout overflows");
    // SAFETY: (1) `layout` has non-zero size (n > 0, size_of::<T>() > 0).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
    if ptr.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: (1) `ptr` was allocated by the global allocator with `Layout::array::<T>(n)`, which
    // is the layout `Box<[T]>` frees with; (2) the memory is zeroed and `T: ZeroValid`, so all `n`
    // elements are initialized; (3) nothing else owns the allocation.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, n)) }
}

struct Section {
    words: Box<[AtomicU64]>,
    pages: Box<[Page]>,
}

/// The machine's RAM: `max_pfn` frames holding real bytes, with one [`Page`] each.
pub struct PhysMem {
    max_pfn: Pfn,
    sections: Box<[OnceLock<Section>]>,
    materialized: AtomicUsize,
}

impl fmt::Debug for PhysMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhysMem")
            .field("max_pfn", &self.max_pfn)
            .field("sections", &self.sections.len())
            .field("materialized", &self.materialized_sections())
            .finish()
    }
}

/// A view of one frame's bytes as 512 atomic words.
#[derive(Clone, Copy)]
pub struct FrameBytes<'a> {
    words: &'a [AtomicU64],
}

impl fmt::Debug for FrameBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FrameBytes(..)")
    }
}

impl PhysMem {
    /// Creates RAM of `max_pfn` frames (pfn 0 up to `max_pfn - 1`). Nothing is reserved from the
    /// host until a frame or descriptor is touched.
    pub fn new(max_pfn: Pfn) -> Self {
        let nr_sections = max_pfn.0.div_ceil(SECTION_FRAMES) as usize;
        PhysMem {
            max_pfn,
            sections: (0..nr_sections).map(|_| OnceLock::new()).collect(),
            materialized: AtomicUsize::new(0),
        }
    }

    /// Returns one past the last frame.
    pub fn max_pfn(&self) -> Pfn {
        self.max_pfn
    }

    /// Returns true if `pfn` is backed by simulated RAM (`pfn_valid`).
    #[inline]
    pub fn pfn_valid(&self, pfn: Pfn) -> bool {
        pfn < self.max_pfn
    }

    /// Returns how many 128 MiB sections have been reserved from the host.
    pub fn materialized_sections(&self) -> usize {
        self.materialized.load(Ordering::Relaxed)
    }

    /// Returns the host bytes reserved so far (frames and descriptors of touched sections).
    pub fn host_bytes_reserved(&self) -> u64 {
        let per = SECTION_FRAMES * (PAGE_SIZE as u64 + std::mem::size_of::<Page>() as u64);
        self.materialized_sections() as u64 * per
    }

    #[inline]
    fn section(&self, idx: usize) -> &Section {
        self.sections[idx].get_or_init(|| self.materialize(idx))
    }

    #[cold]
    fn materialize(&self, idx: usize) -> Section {
        let start = idx as u64 * SECTION_FRAMES;
        let frames = (self.max_pfn.0 - start).min(SECTION_FRAMES) as usize;
        self.materialized.fetch_add(1, Ordering::Relaxed);
        Section {
            words: zeroed_slice(frames * WORDS_PER_FRAME),
            pages: zeroed_slice(frames),
        }
    }

    /// Returns the descriptor of `pfn`.
    ///
    /// # Panics
    /// If `pfn` is not valid: callers only hold pfns the allocator handed out.
    #[inline]
    pub fn page(&self, pfn: Pfn) -> &Page {
        assert!(self.pfn_valid(pfn), "{pfn:?} is outside simulated RAM");
        let s = self.section((pfn.0 >> SECTION_SHIFT) as usize);
        &s.pages[(pfn.0 & (SECTION_FRAMES - 1)) as usize]
    }

    /// Returns the bytes of frame `pfn`.
    #[inline]
    pub fn frame(&self, pfn: Pfn) -> Result<FrameBytes<'_>, PhysError> {
        if !self.pfn_valid(pfn) {
            return Err(PhysError::NoSuchFrame {
                pfn,
                max_pfn: self.max_pfn,
            });
        }
        let s = self.section((pfn.0 >> SECTION_SHIFT) as usize);
        let start = (pfn.0 & (SECTION_FRAMES - 1)) as usize * WORDS_PER_FRAME;
        Ok(FrameBytes {
            words: &s.words[start..start + WORDS_PER_FRAME],
        })
    }

    fn check_range(&self, addr: PhysAddr, len: usize) -> Result<(), PhysError> {
        let end = addr.0.checked_add(len as u64);
        match end {
            Some(end) if end <= self.max_pfn.phys().0 => Ok(()),
            _ => Err(PhysError::OutOfRange { addr, len }),
        }
    }

    /// Loads the little-endian u64 at `addr` (any alignment; an unaligned load is done bytewise
    /// and is not single-copy atomic, as on hardware across a cache line).
    #[inline]
    pub fn read_u64(&self, addr: PhysAddr) -> Result<u64, PhysError> {
        if addr.0 & 7 == 0 {
            Ok(self.frame(addr.pfn())?.read_u64(addr.page_offset()))
        } else {
            let mut b = [0u8; 8];
            self.read(addr, &mut b)?;
            Ok(u64::from_le_bytes(b))
        }
    }

    /// Stores the little-endian u64 at `addr`.
    #[inline]
    pub fn write_u64(&self, addr: PhysAddr, v: u64) -> Result<(), PhysError> {
        if addr.0 & 7 == 0 {
            self.frame(addr.pfn())?.write_u64(addr.page_offset(), v);
            Ok(())
        } else {
            self.write(addr, &v.to_le_bytes())
        }
    }

    /// Loads the little-endian u32 at `addr`.
    pub fn read_u32(&self, addr: PhysAddr) -> Result<u32, PhysError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Stores the little-endian u32 at `addr`.
    pub fn write_u32(&self, addr: PhysAddr, v: u32) -> Result<(), PhysError> {
        self.write(addr, &v.to_le_bytes())
    }

    /// Loads the byte at `addr`.
    pub fn read_u8(&self, addr: PhysAddr) -> Result<u8, PhysError> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }

    /// Stores the byte at `addr`.
    pub fn write_u8(&self, addr: PhysAddr, v: u8) -> Result<(), PhysError> {
        self.write(addr, &[v])
    }

    /// Atomically compares and exchanges the aligned u64 at `addr` (`cmpxchg`), returning the
    /// value found.
    pub fn cmpxchg_u64(&self, addr: PhysAddr, old: u64, new: u64) -> Result<u64, PhysError> {
        let f = self.frame(addr.pfn())?;
        Ok(f.cmpxchg_u64(addr.page_offset(), old, new))
    }

    /// Copies `buf.len()` bytes starting at `addr` into `buf`, across frames if needed.
    pub fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), PhysError> {
        self.check_range(addr, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let a = PhysAddr(addr.0 + done as u64);
            let off = a.page_offset();
            let n = (PAGE_SIZE - off).min(buf.len() - done);
            self.frame(a.pfn())?.read(off, &mut buf[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Copies `buf` into RAM starting at `addr`, across frames if needed.
    pub fn write(&self, addr: PhysAddr, buf: &[u8]) -> Result<(), PhysError> {
        self.check_range(addr, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let a = PhysAddr(addr.0 + done as u64);
            let off = a.page_offset();
            let n = (PAGE_SIZE - off).min(buf.len() - done);
            self.frame(a.pfn())?.write(off, &buf[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Zeroes frame `pfn` (`clear_page`).
    pub fn zero_frame(&self, pfn: Pfn) -> Result<(), PhysError> {
        self.frame(pfn)?.fill_words(0);
        Ok(())
    }

    /// Copies frame `src` to frame `dst` (`copy_page`).
    pub fn copy_frame(&self, dst: Pfn, src: Pfn) -> Result<(), PhysError> {
        let (d, s) = (self.frame(dst)?, self.frame(src)?);
        for (dw, sw) in d.words.iter().zip(s.words) {
            dw.store(sw.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        Ok(())
    }
}

impl FrameBytes<'_> {
    /// Loads the aligned u64 at byte `offset` (must be 8-aligned and inside the frame).
    #[inline]
    pub fn read_u64(&self, offset: usize) -> u64 {
        debug_assert!(offset & 7 == 0);
        self.words[offset / 8].load(Ordering::Relaxed)
    }

    /// Stores the aligned u64 at byte `offset`.
    #[inline]
    pub fn write_u64(&self, offset: usize, v: u64) {
        debug_assert!(offset & 7 == 0);
        self.words[offset / 8].store(v, Ordering::Relaxed);
    }

    /// Compares and exchanges the aligned u64 at `offset`, returning the value found.
    #[inline]
    pub fn cmpxchg_u64(&self, offset: usize, old: u64, new: u64) -> u64 {
        match self.words[offset / 8].compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(v) | Err(v) => v,
        }
    }

    /// Atomically ORs `bits` into the aligned u64 at `offset`, returning the old value.
    #[inline]
    pub fn fetch_or_u64(&self, offset: usize, bits: u64) -> u64 {
        self.words[offset / 8].fetch_or(bits, Ordering::AcqRel)
    }

    /// Atomically ANDs `mask` into the aligned u64 at `offset`, returning the old value.
    #[inline]
    pub fn fetch_and_u64(&self, offset: usize, mask: u64) -> u64 {
        self.words[offset / 8].fetch_and(mask, Ordering::AcqRel)
    }

    /// Sets every word of the frame to `v`.
    pub fn fill_words(&self, v: u64) {
        for w in self.words {
            w.store(v, Ordering::Relaxed);
        }
    }

    /// Copies bytes `offset..offset + buf.len()` of the frame into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) {
        assert!(
            offset + buf.len() <= PAGE_SIZE,
            "read past the end of a frame"
        );
        let mut i = 0;
        while i < buf.len() {
            let at = offset + i;
            let (w, sh) = (at / 8, at % 8);
            let n = (8 - sh).min(buf.len() - i);
            let bytes = self.words[w].load(Ordering::Relaxed).to_le_bytes();
            buf[i..i + n].copy_from_slice(&bytes[sh..sh + n]);
            i += n;
        }
    }

    /// Copies `buf` into the frame at `offset`. Whole words are plain stores; a partial word is
    /// a compare-and-swap on that word, so concurrent stores to its other bytes survive.
    pub fn write(&self, offset: usize, buf: &[u8]) {
        assert!(
            offset + buf.len() <= PAGE_SIZE,
            "write past the end of a frame"
        );
        let mut i = 0;
        while i < buf.len() {
            let at = offset + i;
            let (w, sh) = (at / 8, at % 8);
            let n = (8 - sh).min(buf.len() - i);
            if n == 8 {
                let v = u64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
                self.words[w].store(v, Ordering::Relaxed);
            } else {
                let mut mask = [0u8; 8];
                let mut val = [0u8; 8];
                mask[sh..sh + n].fill(0xff);
                val[sh..sh + n].copy_from_slice(&buf[i..i + n]);
                let (mask, val) = (u64::from_le_bytes(mask), u64::from_le_bytes(val));
                let _ = self.words[w].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some((old & !mask) | val)
                });
            }
            i += n;
        }
    }
}
