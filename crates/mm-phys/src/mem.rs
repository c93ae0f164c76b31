//! Simulated RAM: lazily reserved memory sections of frames and descriptors.

use crate::{Page, PhysError};
use mm_sync::untracked::{AtomicU64, Ordering};
use mm_types::{Pfn, PhysAddr, PAGE_SHIFT, PAGE_SIZE};
use std::fmt;

/// log2 of a memory section's size in bytes (x86-64 `SECTION_SIZE_BITS`): 128 MiB.
pub const SECTION_SIZE_BITS: u32 = 27;
/// Frames per memory section.
pub const SECTION_FRAMES: u64 = 1 << (SECTION_SIZE_BITS - PAGE_SHIFT);
const WORDS_PER_FRAME: usize = PAGE_SIZE / 8;

/// Types whose all-zero bit pattern is a valid value.
///
/// # Safety
/// Implementors must be valid when every byte is zero.
unsafe trait ZeroValid {}
// SAFETY: an atomic integer's zero bit pattern is the value 0.
unsafe impl ZeroValid for AtomicU64 {}
// SAFETY: `Page` is `repr(C)` and made only of atomic integers, each valid at zero.
unsafe impl ZeroValid for Page {}

/// A host mapping of `len` zero-filled `T`s, reserved with `MAP_NORESERVE`: the host backs a
/// page of it only when it is first touched, and never charges the untouched rest.
struct LazyArray<T: ZeroValid> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
}

// SAFETY: (1) the array holds only atomics (`T: ZeroValid` is implemented for atomic-only
// types), which are `Sync`; (2) the mapping is owned by this value and unmapped once, on drop.
unsafe impl<T: ZeroValid + Sync> Send for LazyArray<T> {}
// SAFETY: shared access hands out `&T` only, and `T` is `Sync`.
unsafe impl<T: ZeroValid + Sync> Sync for LazyArray<T> {}

impl<T: ZeroValid> LazyArray<T> {
    fn new(len: usize) -> Result<Self, PhysError> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or(PhysError::HostRefused { bytes: u64::MAX })?;
        if bytes == 0 {
            return Ok(LazyArray {
                ptr: std::ptr::NonNull::dangling(),
                len: 0,
            });
        }
        // SAFETY: (1) a fresh anonymous private mapping aliases nothing; (2) the arguments are
        // valid for mmap: no address hint, a non-zero length, fd -1 with offset 0 as
        // MAP_ANONYMOUS requires.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(PhysError::HostRefused {
                bytes: bytes as u64,
            });
        }
        let ptr = std::ptr::NonNull::new(p.cast::<T>()).expect("mmap returned null");
        Ok(LazyArray { ptr, len })
    }

    #[inline(always)]
    fn as_slice(&self) -> &[T] {
        // SAFETY: (1) `ptr` points to `len` contiguous `T`s of a live mapping (or is dangling
        // with len 0); (2) the mapping is zero-filled and `T: ZeroValid`, so every element is
        // initialized; (3) elements are only ever accessed through `&T` (atomics).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ZeroValid> Drop for LazyArray<T> {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: (1) the range is exactly the mapping `new` created; (2) no reference into it
        // outlives `self`, since every `&T` borrows from `self`.
        unsafe {
            libc::munmap(
                self.ptr.as_ptr().cast(),
                self.len * std::mem::size_of::<T>(),
            );
        }
    }
}

/// The machine's RAM: `max_pfn` frames holding real bytes, with one [`Page`] each.
pub struct PhysMem {
    max_pfn: Pfn,
    words: LazyArray<AtomicU64>,
    pages: LazyArray<Page>,
}

impl fmt::Debug for PhysMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhysMem")
            .field("max_pfn", &self.max_pfn)
            .finish_non_exhaustive()
    }
}

/// The panic of [`PhysMem::page`], out of line: the pfn goes by value, so callers need not keep
/// it in memory for the message.
#[cold]
#[inline(never)]
pub(crate) fn no_such_page(pfn: Pfn) -> ! {
    panic!("{pfn:?} is outside simulated RAM")
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
    /// Creates RAM of `max_pfn` frames (pfn 0 up to `max_pfn - 1`). Nothing is backed by host
    /// memory until a frame or descriptor is touched.
    ///
    /// # Panics
    /// If the host refuses the address-space reservation; [`PhysMem::try_new`] reports it.
    pub fn new(max_pfn: Pfn) -> Self {
        Self::try_new(max_pfn).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates RAM of `max_pfn` frames, or reports that the host refused to reserve the
    /// address space (`MAP_NORESERVE` under `vm.overcommit_memory = 2`, or a too small
    /// address-space limit).
    pub fn try_new(max_pfn: Pfn) -> Result<Self, PhysError> {
        let n =
            usize::try_from(max_pfn.0).map_err(|_| PhysError::HostRefused { bytes: u64::MAX })?;
        Ok(PhysMem {
            max_pfn,
            words: LazyArray::new(
                n.checked_mul(WORDS_PER_FRAME)
                    .ok_or(PhysError::HostRefused { bytes: u64::MAX })?,
            )?,
            pages: LazyArray::new(n)?,
        })
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

    /// Returns the descriptor of `pfn`.
    ///
    /// # Panics
    /// If `pfn` is not valid: callers only hold pfns the allocator handed out.
    #[inline]
    pub fn page(&self, pfn: Pfn) -> &Page {
        match self.pages.as_slice().get(pfn.0 as usize) {
            Some(p) => p,
            None => no_such_page(pfn),
        }
    }

    /// Returns every descriptor, indexed by pfn: list operations index it several times
    /// with the length loaded once.
    #[inline(always)]
    pub(crate) fn pages(&self) -> &[Page] {
        self.pages.as_slice()
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
        let start = pfn.0 as usize * WORDS_PER_FRAME;
        Ok(FrameBytes {
            words: &self.words.as_slice()[start..start + WORDS_PER_FRAME],
        })
    }

    /// Returns the word holding the aligned u64 at `addr` (its low three bits are ignored),
    /// or `None` outside RAM: one bounds check, for hot paths that already know the frame.
    #[inline(always)]
    fn word(&self, addr: PhysAddr) -> Option<&AtomicU64> {
        // Frames are consecutive runs of WORDS_PER_FRAME words, so word `addr / 8` exists
        // exactly when `addr`'s frame is valid.
        let i = usize::try_from(addr.0 >> 3).ok()?;
        self.words.as_slice().get(i)
    }

    /// Loads the aligned u64 at `addr`, or returns `None` if `addr` is outside RAM: a relaxed
    /// load behind a single bounds check (the TLB-hit path of a simulated load).
    ///
    /// `addr` must be 8-aligned (checked in debug builds); its low three bits are ignored.
    #[inline(always)]
    pub fn load_aligned_u64(&self, addr: PhysAddr) -> Option<u64> {
        debug_assert!(addr.0 & 7 == 0, "unaligned word load at {addr:?}");
        self.word(addr).map(|w| w.load(Ordering::Relaxed))
    }

    /// Stores `v` at the aligned u64 at `addr`; returns false, storing nothing, if `addr` is
    /// outside RAM. The store counterpart of [`PhysMem::load_aligned_u64`].
    #[inline(always)]
    pub fn store_aligned_u64(&self, addr: PhysAddr, v: u64) -> bool {
        debug_assert!(addr.0 & 7 == 0, "unaligned word store at {addr:?}");
        match self.word(addr) {
            Some(w) => {
                w.store(v, Ordering::Relaxed);
                true
            }
            None => false,
        }
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
