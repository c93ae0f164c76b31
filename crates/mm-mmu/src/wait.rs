//! How a CPU idles while it waits for another CPU (an acknowledgement, an IPI).
//!
//! In the std and shuttle runtimes a waiting CPU spins briefly, then yields its host thread:
//! a spinning round trip costs a microsecond or two, a blocking wake-up on an oversubscribed
//! host about a hundred. Under loom a waiting CPU blocks until its doorbell rings instead:
//! loom's scheduler is unfair after a yield, so two CPUs that yield while they wait for a
//! third could be scheduled in turn forever. Every event a waiter waits for rings its
//! doorbell (an IPI queued for it, an acknowledgement of its shootdown), and the bell stays
//! rung until the waiter consumes it, so no wake-up is lost.

use mm_sync::{hint, thread};

/// Spins of a wait before it starts yielding its host thread.
pub(crate) const SPINS_BEFORE_YIELD: u32 = 64;

/// One CPU's wake-up bell.
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    #[cfg(mm_loom)]
    rung: mm_sync::sync::Mutex<bool>,
    #[cfg(mm_loom)]
    bell: mm_sync::sync::Condvar,
}

impl Doorbell {
    /// Wakes the owner if it idles in [`Doorbell::idle`] (or makes its next idle return).
    #[inline]
    pub(crate) fn ring(&self) {
        #[cfg(mm_loom)]
        {
            *self.rung.lock() = true;
            self.bell.notify_all();
        }
    }

    /// Idles once between two polls of a wait; `spins` counts the polls so far.
    pub(crate) fn idle(&self, spins: &mut u32) {
        #[cfg(mm_loom)]
        {
            let _ = spins;
            let mut rung = self.rung.lock();
            while !*rung {
                rung = self.bell.wait(rung);
            }
            *rung = false;
        }
        #[cfg(not(mm_loom))]
        {
            if *spins < SPINS_BEFORE_YIELD {
                *spins += 1;
                hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
    }
}

/// Idles once in a poll loop that no doorbell announces the end of (a lock another CPU
/// releases): spin, then yield, in every runtime.
pub(crate) fn poll_idle(spins: &mut u32) {
    if *spins < SPINS_BEFORE_YIELD {
        *spins += 1;
        hint::spin_loop();
    } else {
        thread::yield_now();
    }
}
