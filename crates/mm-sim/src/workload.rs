//! The seam between workloads and the machine: a simulated task is a [`Workload`] that yields
//! [`Op`]s — system calls and memory accesses, in the Linux ABI's terms — and sees each one's
//! [`OpResult`]. `mm-scenario` generates workloads from a scenario; the machine executes their
//! operations on a CPU, through the VMA layer and the MMU.

use mm_types::{Errno, Pid, VirtAddr};
use std::fmt;
use std::time::Duration;

/// `PROT_READ`.
pub const PROT_READ: u32 = 0x1;
/// `PROT_WRITE`.
pub const PROT_WRITE: u32 = 0x2;
/// `PROT_EXEC`.
pub const PROT_EXEC: u32 = 0x4;
/// `MAP_SHARED`.
pub const MAP_SHARED: u32 = 0x01;
/// `MAP_PRIVATE`.
pub const MAP_PRIVATE: u32 = 0x02;
/// `MAP_FIXED`.
pub const MAP_FIXED: u32 = 0x10;
/// `MAP_ANONYMOUS`.
pub const MAP_ANONYMOUS: u32 = 0x20;
/// `MAP_NORESERVE`.
pub const MAP_NORESERVE: u32 = 0x4000;
/// `MAP_POPULATE`.
pub const MAP_POPULATE: u32 = 0x8000;
/// `MAP_FIXED_NOREPLACE`.
pub const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;
/// `MREMAP_MAYMOVE`.
pub const MREMAP_MAYMOVE: u32 = 1;
/// `MREMAP_FIXED`.
pub const MREMAP_FIXED: u32 = 2;
/// `MADV_DONTNEED`.
pub const MADV_DONTNEED: i32 = 4;
/// `MADV_FREE`.
pub const MADV_FREE: i32 = 8;
/// `MADV_WILLNEED`.
pub const MADV_WILLNEED: i32 = 3;

/// One operation of a simulated task.
pub enum Op {
    /// `mmap(addr, len, prot, flags, -1, 0)` (anonymous mappings; file mappings arrive with
    /// the page cache).
    Mmap {
        /// The hint or fixed address.
        addr: Option<VirtAddr>,
        /// Length in bytes.
        len: u64,
        /// `PROT_*` bits.
        prot: u32,
        /// `MAP_*` bits.
        flags: u32,
    },
    /// `munmap(addr, len)`.
    Munmap {
        /// Start.
        addr: VirtAddr,
        /// Length in bytes.
        len: u64,
    },
    /// `mremap(addr, old_len, new_len, flags, new_addr)`; the result is [`OpResult::Addr`].
    Mremap {
        /// The mapping's start.
        addr: VirtAddr,
        /// Its length.
        old_len: u64,
        /// The new length.
        new_len: u64,
        /// `MREMAP_*` bits.
        flags: u32,
        /// The target of `MREMAP_FIXED`.
        new_addr: VirtAddr,
    },
    /// `mprotect(addr, len, prot)`.
    Mprotect {
        /// Start.
        addr: VirtAddr,
        /// Length in bytes.
        len: u64,
        /// `PROT_*` bits.
        prot: u32,
    },
    /// `madvise(addr, len, advice)`.
    Madvise {
        /// Start.
        addr: VirtAddr,
        /// Length in bytes.
        len: u64,
        /// `MADV_*`.
        advice: i32,
    },
    /// `brk(addr)`; `None` asks for the current break.
    Brk {
        /// The new break.
        addr: Option<VirtAddr>,
    },
    /// An 8-byte load; the result is [`OpResult::Value`].
    Load {
        /// Address.
        addr: VirtAddr,
    },
    /// An 8-byte store.
    Store {
        /// Address.
        addr: VirtAddr,
        /// The value.
        value: u64,
    },
    /// `fork()`: the child runs `child` in a copy of this address space.
    Fork {
        /// The child's workload.
        child: Box<dyn Workload>,
    },
    /// `pread(file, buf, len, offset)` straight from the machine's disk into `buf` (an
    /// `O_DIRECT` read: the task sleeps in the I/O engine's queue, its CPU runs other tasks).
    /// The result is [`OpResult::Value`] with the bytes read (fewer at the end of the file).
    FileRead {
        /// The file (a number naming it on the machine's disk).
        file: u32,
        /// Byte offset in the file.
        offset: u64,
        /// The user buffer.
        buf: VirtAddr,
        /// Bytes wanted.
        len: u64,
    },
    /// `pwrite(file, buf, len, offset)` from `buf` straight to the disk (`O_DIRECT`); the task
    /// sleeps until the write completes. The result is [`OpResult::Value`] with the bytes
    /// written.
    FileWrite {
        /// The file.
        file: u32,
        /// Byte offset in the file.
        offset: u64,
        /// The user buffer.
        buf: VirtAddr,
        /// Bytes to write.
        len: u64,
    },
    /// Gives up the rest of the quantum.
    Yield,
}

/// The most one `FileRead`/`FileWrite` moves (`MAX_RW_COUNT` is larger; the engine keeps
/// requests to a size a device queue takes at once).
pub const MAX_IO_BYTES: u64 = 1 << 20;

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Mmap {
                addr,
                len,
                prot,
                flags,
            } => write!(f, "mmap({addr:?}, {len}, {prot:#x}, {flags:#x})"),
            Op::Munmap { addr, len } => write!(f, "munmap({addr}, {len})"),
            Op::Mprotect { addr, len, prot } => write!(f, "mprotect({addr}, {len}, {prot:#x})"),
            Op::Mremap {
                addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => write!(
                f,
                "mremap({addr}, {old_len}, {new_len}, {flags:#x}, {new_addr})"
            ),
            Op::Madvise { addr, len, advice } => write!(f, "madvise({addr}, {len}, {advice})"),
            Op::Brk { addr } => write!(f, "brk({addr:?})"),
            Op::Load { addr } => write!(f, "load({addr})"),
            Op::Store { addr, value } => write!(f, "store({addr}, {value:#x})"),
            Op::Fork { .. } => f.write_str("fork()"),
            Op::FileRead {
                file,
                offset,
                buf,
                len,
            } => write!(f, "pread({file}, {buf}, {len}, {offset})"),
            Op::FileWrite {
                file,
                offset,
                buf,
                len,
            } => write!(f, "pwrite({file}, {buf}, {len}, {offset})"),
            Op::Yield => f.write_str("yield"),
        }
    }
}

/// What the previous operation returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpResult {
    /// No previous operation (the task starts).
    Start,
    /// Success with no value.
    Ok,
    /// An address (`mmap`, `brk`).
    Addr(VirtAddr),
    /// A loaded value.
    Value(u64),
    /// `fork` succeeded in the parent: the child's pid.
    Forked(Pid),
    /// The system call failed.
    Err(Errno),
}

/// What a workload can see of its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadEnv {
    /// The task's process.
    pub pid: Pid,
    /// `MemTotal` in bytes (for sizes given as a percentage).
    pub mem_total: u64,
    /// Time since the run started (the machine's clock).
    pub elapsed: Duration,
}

/// Data-integrity counts a workload keeps for what it stored and loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Integrity {
    /// Bytes whose loaded value matched what the workload last stored (or inherited).
    pub bytes_verified: u64,
    /// Loads that returned a value other than the expected one.
    pub corruptions: u64,
    /// Loads that returned a value another process stored.
    pub isolation_violations: u64,
}

impl Integrity {
    /// Adds another task's counts.
    pub fn add(&mut self, o: Integrity) {
        self.bytes_verified += o.bytes_verified;
        self.corruptions += o.corruptions;
        self.isolation_violations += o.isolation_violations;
    }
}

/// A simulated task's program.
pub trait Workload: Send {
    /// Returns the next operation, given what the previous one returned; `None` exits the
    /// task with status 0.
    fn next(&mut self, last: OpResult, env: &WorkloadEnv) -> Option<Op>;

    /// Returns the integrity counts so far.
    fn integrity(&self) -> Integrity {
        Integrity::default()
    }
}

/// A process to start during a run: its threads' workloads share one address space.
pub struct ProcessPlan {
    /// The command name (`/proc/PID/status` `Name:`).
    pub name: String,
    /// `oom_score_adj` (-1000..=1000).
    pub oom_score_adj: i32,
    /// The CPUs its threads may run on (`None`: any).
    pub cpus: Option<Vec<mm_types::CpuId>>,
    /// When it starts, from the start of the run.
    pub start_after: Duration,
    /// One workload per thread (at least one).
    pub threads: Vec<Box<dyn Workload>>,
}

impl fmt::Debug for ProcessPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPlan")
            .field("name", &self.name)
            .field("oom_score_adj", &self.oom_score_adj)
            .field("cpus", &self.cpus)
            .field("start_after", &self.start_after)
            .field("threads", &self.threads.len())
            .finish()
    }
}
