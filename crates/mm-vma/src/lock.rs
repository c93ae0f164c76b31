//! The mmap lock (`mm->mmap_lock`, an rw_semaphore) and the VMA layer's page-table lock.
//!
//! # Locking protocol
//! [`MmapLock`] is two locks with one meaning:
//! - the **gate**, an atomic reader/writer word, is the rw_semaphore. A CPU waits for it in
//!   [`MmuCpu::spin_until`], so it keeps acknowledging shootdown IPIs while it waits: a writer
//!   (munmap) may wait for this CPU's acknowledgement while this CPU waits for the lock, and
//!   an OS-level blocking lock would deadlock there. A waiting writer holds new readers off
//!   (no writer starvation). Writers may downgrade to readers ([`MmapWrite::downgrade`]).
//! - the **data lock**, an `RwLock` around the state, is taken in the same mode right after
//!   the gate and released just before it. Because the gate already excludes conflicting
//!   holders, the data lock never blocks in the real code; it is what lets safe code hand out
//!   `&`/`&mut` to the VMA tree. Nothing waits for another CPU while it holds the data lock
//!   alone.
//!
//! The page-table lock of an address space is a spin lock taken the same way (through
//! `spin_until`), see [`lock_spin`].

use mm_mmu::MmuCpu;
use mm_sync::sync::atomic::{AtomicU64, Ordering};
use mm_sync::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, SpinLock, SpinLockGuard};
use std::fmt;
use std::ops::{Deref, DerefMut};

/// Set while a writer holds the gate.
const WRITER: u64 = 1 << 63;
/// One waiting writer.
const WAITER: u64 = 1 << 32;
/// Waiting writers.
const WAITERS: u64 = ((1 << 31) - 1) << 32;
/// Readers holding the gate.
const READERS: u64 = (1 << 32) - 1;

/// An rw_semaphore over `T` whose waiters keep handling IPIs (see the module docs).
pub(crate) struct MmapLock<T> {
    gate: AtomicU64,
    data: RwLock<T>,
}

impl<T> fmt::Debug for MmapLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmapLock")
            .field("gate", &self.gate.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> MmapLock<T> {
    pub(crate) fn new(value: T) -> Self {
        MmapLock {
            gate: AtomicU64::new(0),
            data: RwLock::new(value),
        }
    }

    fn try_read_gate(&self) -> bool {
        let s = self.gate.load(Ordering::Relaxed);
        s & (WRITER | WAITERS) == 0
            && self
                .gate
                .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Takes the gate for writing once the registered waiter can (readers gone).
    fn try_write_gate(&self) -> bool {
        let s = self.gate.load(Ordering::Relaxed);
        s & (WRITER | READERS) == 0
            && self
                .gate
                .compare_exchange(
                    s,
                    (s - WAITER) | WRITER,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// `mmap_read_lock` on a CPU.
    pub(crate) fn read(&self, cpu: &mut MmuCpu) -> MmapRead<'_, T> {
        if !self.try_read_gate() {
            cpu.spin_until(|| self.try_read_gate().then_some(()));
        }
        MmapRead {
            lock: self,
            data: Some(self.data.read()),
        }
    }

    /// `mmap_read_trylock`.
    pub(crate) fn try_read(&self) -> Option<MmapRead<'_, T>> {
        self.try_read_gate().then(|| MmapRead {
            lock: self,
            data: Some(self.data.read()),
        })
    }

    /// `mmap_write_lock` on a CPU.
    pub(crate) fn write(&self, cpu: &mut MmuCpu) -> MmapWrite<'_, T> {
        self.gate.fetch_add(WAITER, Ordering::Relaxed);
        if !self.try_write_gate() {
            cpu.spin_until(|| self.try_write_gate().then_some(()));
        }
        MmapWrite {
            lock: self,
            data: Some(self.data.write()),
        }
    }

    /// `mmap_write_trylock`: the write lock if nobody holds or waits for the lock.
    pub(crate) fn try_write(&self) -> Option<MmapWrite<'_, T>> {
        self.gate
            .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            .then(|| MmapWrite {
                lock: self,
                data: Some(self.data.write()),
            })
    }

    /// `mmap_read_lock` from a thread that is not a CPU (a `/proc` reader): it is never the
    /// target of a shootdown, so it only spins and yields.
    pub(crate) fn read_nocpu(&self) -> MmapRead<'_, T> {
        while !self.try_read_gate() {
            mm_sync::hint::spin_loop();
            mm_sync::thread::yield_now();
        }
        MmapRead {
            lock: self,
            data: Some(self.data.read()),
        }
    }
}

/// A held read lock; derefs to the state.
pub(crate) struct MmapRead<'a, T> {
    lock: &'a MmapLock<T>,
    data: Option<RwLockReadGuard<'a, T>>,
}

impl<T> MmapRead<'_, T> {
    /// Runs `f` with the state writable while only the gate's read side is held: what
    /// pre-6.5 kernels did to grow a stack under `mmap_read_lock`. Only the test-only
    /// regressions use it; the real code takes the write lock.
    #[cfg(test)]
    pub(crate) fn modify_under_read<R>(&mut self, f: impl FnOnce(&mut T) -> R) -> R {
        self.data = None;
        let r = {
            let mut w = self.lock.data.write();
            f(&mut w)
        };
        self.data = Some(self.lock.data.read());
        r
    }
}

impl<'a, T> MmapRead<'a, T> {
    /// Keeps only the gate's read side, releasing the state: what munmap holds while it zaps
    /// a range it already took out of the tree (it needs no VMA, and holding the data lock
    /// across a shootdown would make a waiter for it unable to acknowledge).
    pub(crate) fn into_gate(mut self) -> MmapGate<'a, T> {
        self.data = None;
        let lock = self.lock;
        std::mem::forget(self);
        MmapGate { lock }
    }
}

/// The read side of the gate alone (see [`MmapRead::into_gate`]).
pub(crate) struct MmapGate<'a, T> {
    lock: &'a MmapLock<T>,
}

impl<T> Drop for MmapGate<'_, T> {
    fn drop(&mut self) {
        self.lock.gate.fetch_sub(1, Ordering::Release);
    }
}

impl<T> Deref for MmapRead<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data.as_ref().expect("held until drop")
    }
}

impl<T> Drop for MmapRead<'_, T> {
    fn drop(&mut self) {
        self.data = None;
        self.lock.gate.fetch_sub(1, Ordering::Release);
    }
}

/// A held write lock; derefs mutably to the state.
pub(crate) struct MmapWrite<'a, T> {
    lock: &'a MmapLock<T>,
    data: Option<RwLockWriteGuard<'a, T>>,
}

impl<'a, T> MmapWrite<'a, T> {
    /// `mmap_write_downgrade`: becomes a read lock without letting a writer in between.
    pub(crate) fn downgrade(mut self) -> MmapRead<'a, T> {
        self.data = None;
        // The gate still excludes everyone else, so the data lock is free for us.
        let data = Some(self.lock.data.read());
        let lock = self.lock;
        // WRITER -> one reader, in one atomic step.
        lock.gate
            .fetch_add(1u64.wrapping_sub(WRITER), Ordering::Release);
        std::mem::forget(self);
        MmapRead { lock, data }
    }
}

impl<T> Deref for MmapWrite<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data.as_ref().expect("held until drop")
    }
}

impl<T> DerefMut for MmapWrite<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data.as_mut().expect("held until drop")
    }
}

impl<T> Drop for MmapWrite<'_, T> {
    fn drop(&mut self) {
        self.data = None;
        self.lock.gate.fetch_and(!WRITER, Ordering::Release);
    }
}

/// Takes a spin lock on a CPU, handling IPIs while it spins.
#[inline]
pub(crate) fn lock_spin<'a, T>(cpu: &mut MmuCpu, lock: &'a SpinLock<T>) -> SpinLockGuard<'a, T> {
    if let Some(g) = lock.try_lock() {
        return g;
    }
    cpu.spin_until(|| lock.try_lock())
}
