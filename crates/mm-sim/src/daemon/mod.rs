//! Daemon actors: kswapd, the writeback flusher, the OOM reaper, the I/O engine and the
//! sampler. Each owns its state, has a typed message enum with a `Shutdown` variant, runs on
//! its own thread for the length of a run and is joined at its end.
//!
//! An actor handles its mailbox one message at a time; an actor with a period also ticks when
//! no message arrives for that long (the flusher's `dirty_writeback_centisecs`, the sampler's
//! interval). Its [`ActorStatus`] is what the watchdog prints: its name, what it is doing and
//! how many messages and ticks it has handled.

pub(crate) mod flusher;
pub(crate) mod io;
pub(crate) mod kswapd;
pub(crate) mod reaper;
pub(crate) mod sampler;

use mm_sync::channel::{Receiver, Sender, TryRecvError};
use mm_sync::sync::atomic::{AtomicU64, Ordering};
use mm_sync::sync::Mutex;
use std::time::Instant;

/// What an actor does after handling a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Wait for the next message.
    Continue,
    /// Stop: the actor's thread returns it.
    Stop,
}

/// A daemon: state plus a handler for its messages.
pub(crate) trait Actor: Send {
    /// Its message enum.
    type Msg: Send;
    /// Handles one message; `Shutdown` returns [`Flow::Stop`].
    fn handle(&mut self, msg: Self::Msg, status: &ActorStatus) -> Flow;
    /// When it next wants to tick, if at all (a periodic timer, or the next I/O completion).
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// The timed work, called once the deadline has passed; it sets the next deadline.
    fn tick(&mut self, status: &ActorStatus) {
        let _ = status;
    }
}

/// What the watchdog and the report see of one actor.
#[derive(Debug)]
pub(crate) struct ActorStatus {
    name: String,
    state: Mutex<&'static str>,
    handled: AtomicU64,
    ticks: AtomicU64,
}

impl ActorStatus {
    pub(crate) fn new(name: impl Into<String>) -> ActorStatus {
        ActorStatus {
            name: name.into(),
            state: Mutex::new("starting"),
            handled: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
        }
    }

    /// Records what the actor is doing now.
    pub(crate) fn set(&self, state: &'static str) {
        *self.state.lock() = state;
    }

    /// One line for the watchdog's dump.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{}: {} (messages {}, ticks {})",
            self.name,
            *self.state.lock(),
            self.handled.load(Ordering::Relaxed),
            self.ticks.load(Ordering::Relaxed)
        )
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn messages(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }
}

/// Runs `actor` on the current thread until it stops or every sender is gone; returns it.
pub(crate) fn run<A: Actor>(mut actor: A, rx: &Receiver<A::Msg>, status: &ActorStatus) -> A {
    status.set("idle");
    loop {
        let got = match actor.deadline() {
            None => rx.recv().map_err(|_| TryRecvError::Disconnected),
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match got {
            Ok(msg) => {
                status.handled.fetch_add(1, Ordering::Relaxed);
                let flow = actor.handle(msg, status);
                status.set("idle");
                if flow == Flow::Stop {
                    break;
                }
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => break,
        }
        if actor.deadline().is_some_and(|at| Instant::now() >= at) {
            status.ticks.fetch_add(1, Ordering::Relaxed);
            actor.tick(status);
            status.set("idle");
        }
    }
    status.set("stopped");
    actor
}

/// A mailbox's sending half, with the name of the actor behind it.
#[derive(Debug)]
pub(crate) struct Mailbox<M> {
    tx: Sender<M>,
}

impl<M> Clone for Mailbox<M> {
    fn clone(&self) -> Self {
        Mailbox {
            tx: self.tx.clone(),
        }
    }
}

impl<M> Mailbox<M> {
    pub(crate) fn new(tx: Sender<M>) -> Mailbox<M> {
        Mailbox { tx }
    }

    /// Sends `msg`; returns false if the actor has stopped (the message is dropped, as a
    /// wake-up of a thread that is gone).
    pub(crate) fn send(&self, msg: M) -> bool {
        self.tx.send(msg).is_ok()
    }
}
