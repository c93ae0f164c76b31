//! The outcomes a memory access can end in besides success: the signals a task receives and
//! the out-of-memory result of a fault. Syscalls return [`mm_types::Errno`].

use mm_types::VirtAddr;
use std::fmt;

/// The `si_code` of a SIGSEGV.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SegvCode {
    /// `SEGV_MAPERR`: no mapping at the address.
    MapErr,
    /// `SEGV_ACCERR`: the mapping does not allow the access.
    AccErr,
}

/// A signal the fault handler sends to the faulting task. It ends that simulated process,
/// never the simulator.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Signal {
    /// SIGSEGV: no VMA at the address, or one that forbids the access.
    Segv {
        /// The faulting address.
        addr: VirtAddr,
        /// Why.
        code: SegvCode,
    },
    /// SIGBUS (`BUS_ADRERR`): a file mapping accessed beyond the end of its file, or a page
    /// its backing store could not provide.
    Bus {
        /// The faulting address.
        addr: VirtAddr,
    },
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::Segv { addr, code } => {
                let code = match code {
                    SegvCode::MapErr => "SEGV_MAPERR",
                    SegvCode::AccErr => "SEGV_ACCERR",
                };
                write!(f, "SIGSEGV at {addr} ({code})")
            }
            Signal::Bus { addr } => write!(f, "SIGBUS at {addr} (BUS_ADRERR)"),
        }
    }
}

/// Why a simulated memory access did not complete.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, thiserror::Error)]
pub enum AccessError {
    /// The task gets a signal (SIGSEGV or SIGBUS).
    #[error("{0}")]
    Signal(Signal),
    /// The fault could not allocate a page even after reclaim and the OOM killer
    /// (`VM_FAULT_OOM`); the machine decides whether the task retries or dies.
    #[error("out of memory handling the fault at {addr}")]
    Oom {
        /// The faulting address.
        addr: VirtAddr,
    },
}

impl From<Signal> for AccessError {
    fn from(s: Signal) -> AccessError {
        AccessError::Signal(s)
    }
}

/// The internal result of one fault attempt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FaultError {
    /// Deliver this signal.
    Signal(Signal),
    /// No memory (`VM_FAULT_OOM`).
    Oom,
    /// The VMA needs an anon_vma, which is set up under the mmap write lock: drop the read
    /// lock, prepare it and retry (`anon_vma_prepare`).
    NeedAnonVma,
    /// The address is below a stack VMA, which grows under the mmap write lock: drop the read
    /// lock, grow it and retry (`expand_stack`).
    NeedExpandStack,
}
