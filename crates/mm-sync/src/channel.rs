//! Actor mailboxes: crossbeam-channel in std, the runtime's mpsc under loom and shuttle.

use std::fmt;

#[cfg(mm_loom)]
use loom::sync::mpsc as imp;
#[cfg(all(not(mm_loom), feature = "shuttle"))]
use shuttle::sync::mpsc as imp;

/// The sending half of a mailbox; clone it to have several senders.
pub struct Sender<T> {
    #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
    inner: crossbeam_channel::Sender<T>,
    #[cfg(any(mm_loom, feature = "shuttle"))]
    inner: imp::Sender<T>,
}

/// The receiving half of a mailbox.
pub struct Receiver<T> {
    #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
    inner: crossbeam_channel::Receiver<T>,
    #[cfg(any(mm_loom, feature = "shuttle"))]
    inner: imp::Receiver<T>,
}

/// The error of [`Sender::send`]: every receiver is gone; the message comes back.
#[derive(PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a closed mailbox")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// The error of [`Receiver::recv`]: every sender is gone and the mailbox is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving on an empty, closed mailbox")
    }
}

impl std::error::Error for RecvError {}

/// The error of [`Receiver::try_recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// The mailbox is empty right now.
    Empty,
    /// Every sender is gone and the mailbox is empty.
    Disconnected,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sender(..)")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Receiver(..)")
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            inner: self.inner.clone(),
        }
    }
}

/// Creates an unbounded mailbox.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
    let (s, r) = crossbeam_channel::unbounded();
    #[cfg(any(mm_loom, feature = "shuttle"))]
    let (s, r) = imp::channel();
    (Sender { inner: s }, Receiver { inner: r })
}

impl<T> Sender<T> {
    /// Sends a message; fails only when the receiver is gone.
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.inner.send(msg).map_err(|e| SendError(e.0))
    }
}

impl<T> Receiver<T> {
    /// Blocks until a message arrives or every sender is gone.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.inner.recv().map_err(|_| RecvError)
    }

    /// Takes a message if one is waiting.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
        {
            self.inner.try_recv().map_err(|e| match e {
                crossbeam_channel::TryRecvError::Empty => TryRecvError::Empty,
                crossbeam_channel::TryRecvError::Disconnected => TryRecvError::Disconnected,
            })
        }
        #[cfg(any(mm_loom, feature = "shuttle"))]
        {
            self.inner.try_recv().map_err(|e| match e {
                std::sync::mpsc::TryRecvError::Empty => TryRecvError::Empty,
                std::sync::mpsc::TryRecvError::Disconnected => TryRecvError::Disconnected,
            })
        }
    }

    /// Blocks for at most `timeout` (std runtime only: model runtimes have no clock).
    #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Result<T, TryRecvError> {
        self.inner.recv_timeout(timeout).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => TryRecvError::Empty,
            crossbeam_channel::RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
        })
    }
}

#[cfg(all(test, not(mm_loom), not(feature = "shuttle")))]
mod tests {
    use super::*;

    #[test]
    fn mailbox_delivers_in_order_and_reports_disconnect() {
        let (s, r) = unbounded();
        s.send(1).unwrap();
        s.clone().send(2).unwrap();
        assert_eq!(r.recv(), Ok(1));
        assert_eq!(r.try_recv(), Ok(2));
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        drop(s);
        assert_eq!(r.recv(), Err(RecvError));
        let (s, r) = unbounded::<u8>();
        drop(r);
        assert_eq!(s.send(7), Err(SendError(7)));
    }
}
