//! `SpinLock`: the kernel's `spinlock_t` analogue, used for the zone lock and the pcp locks.
//!
//! In the std runtime it is a test-and-test-and-set lock: one atomic swap to acquire and one
//! release store to drop, with no syscall on the uncontended path. A waiter spins briefly and
//! then yields its OS thread, so a preempted holder on an oversubscribed host (8 simulated CPUs
//! on 2 cores) does not burn a whole time slice of every waiter. Under loom and shuttle it is
//! the runtime's mutex, which the model checker schedules and checks.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// A spin lock guarding a `T`.
pub struct SpinLock<T> {
    #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
    locked: std::sync::atomic::AtomicBool,
    #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
    data: std::cell::UnsafeCell<T>,
    #[cfg(any(mm_loom, feature = "shuttle"))]
    inner: super::Mutex<T>,
}

// SAFETY: (1) the lock hands out access to `data` to one thread at a time (acquire swap /
// release store pair), so sharing the lock is as safe as sending `T`; (2) `T: Send` is required
// because the value is moved between the threads that hold the lock.
#[cfg(all(not(mm_loom), not(feature = "shuttle")))]
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: the lock owns its `T`; sending the lock sends the `T`.
#[cfg(all(not(mm_loom), not(feature = "shuttle")))]
unsafe impl<T: Send> Send for SpinLock<T> {}

/// The guard of a [`SpinLock`]; the lock is released on drop.
pub struct SpinLockGuard<'a, T> {
    #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
    lock: &'a SpinLock<T>,
    #[cfg(any(mm_loom, feature = "shuttle"))]
    inner: super::MutexGuard<'a, T>,
}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        SpinLock::new(T::default())
    }
}

impl<T> fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinLock").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for SpinLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinLockGuard").finish_non_exhaustive()
    }
}

#[cfg(all(not(mm_loom), not(feature = "shuttle")))]
impl<T> SpinLock<T> {
    /// Creates an unlocked spin lock.
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: std::sync::atomic::AtomicBool::new(false),
            data: std::cell::UnsafeCell::new(value),
        }
    }

    /// Acquires the lock, spinning (then yielding) while another thread holds it.
    #[inline]
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        use std::sync::atomic::Ordering;
        if !self.locked.swap(true, Ordering::Acquire) {
            return SpinLockGuard { lock: self };
        }
        self.lock_contended()
    }

    #[cold]
    fn lock_contended(&self) -> SpinLockGuard<'_, T> {
        use std::sync::atomic::Ordering;
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            if !self.locked.swap(true, Ordering::Acquire) {
                return SpinLockGuard { lock: self };
            }
        }
    }

    /// Acquires the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        use std::sync::atomic::Ordering;
        if !self.locked.load(Ordering::Relaxed) && !self.locked.swap(true, Ordering::Acquire) {
            Some(SpinLockGuard { lock: self })
        } else {
            None
        }
    }
}

#[cfg(all(not(mm_loom), not(feature = "shuttle")))]
impl<T> Drop for SpinLockGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock
            .locked
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(all(not(mm_loom), not(feature = "shuttle")))]
impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: (1) the guard exists only while `locked` is true and this thread set it;
        // (2) no other guard can exist at the same time, so no `&mut T` aliases this `&T`.
        unsafe { &*self.lock.data.get() }
    }
}

#[cfg(all(not(mm_loom), not(feature = "shuttle")))]
impl<T> DerefMut for SpinLockGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: (1) as in `deref`, this guard is the only holder; (2) `&mut self` makes this
        // the only live reference derived from the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

#[cfg(any(mm_loom, feature = "shuttle"))]
impl<T> SpinLock<T> {
    /// Creates an unlocked spin lock.
    pub fn new(value: T) -> Self {
        SpinLock {
            inner: super::Mutex::new(value),
        }
    }
    /// Acquires the lock.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        SpinLockGuard {
            inner: self.inner.lock(),
        }
    }
    /// Acquires the lock if it is free.
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        self.inner.try_lock().map(|inner| SpinLockGuard { inner })
    }
}

#[cfg(any(mm_loom, feature = "shuttle"))]
impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

#[cfg(any(mm_loom, feature = "shuttle"))]
impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

#[cfg(all(test, not(mm_loom), not(feature = "shuttle")))]
mod tests {
    use super::SpinLock;
    use std::sync::Arc;

    #[test]
    fn spinlock_counts_exactly_under_contention() {
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 200_000);
        let g = lock.lock();
        assert!(lock.try_lock().is_none());
        drop(g);
        assert!(lock.try_lock().is_some());
    }
}
