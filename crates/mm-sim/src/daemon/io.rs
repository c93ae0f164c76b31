//! The I/O engine: the machine's block device and its request queue.
//!
//! A CPU submits a request and parks the task that issued it; the engine serves requests in
//! order on one device queue and calls each request's completion when the simulated device
//! finishes it, which puts the task back on a run queue. Service time is the device latency
//! plus the transfer at the device bandwidth, queued behind earlier requests (one queue, like
//! a single-queue disk).
//!
//! The device keeps file contents host-side, byte for byte. Files are read and written
//! directly (`O_DIRECT`-style, no page cache); the page-cache issue puts buffered I/O and
//! writeback on top of this engine, and swap I/O goes through it too.
//!
//! Time: the engine waits with its mailbox's timed receive, so completions are as precise as
//! the host's timed wake-ups (tens of microseconds), unlike a millisecond timer wheel.

use super::{Actor, ActorStatus, Flow};
use mm_types::Errno;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::time::{Duration, Instant};

/// The largest file the device stores (`EFBIG` beyond).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// The simulated block device's speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpec {
    /// Per-request latency in microseconds.
    pub latency_us: u64,
    /// Transfer rate in MiB/s.
    pub mib_per_s: u64,
}

impl Default for DiskSpec {
    /// A SATA SSD: 100 µs, 500 MiB/s.
    fn default() -> Self {
        DiskSpec {
            latency_us: 100,
            mib_per_s: 500,
        }
    }
}

impl DiskSpec {
    /// The service time of a transfer of `bytes`.
    pub fn service_time(&self, bytes: u64) -> Duration {
        let transfer_ns = bytes * 1_000_000_000 / (self.mib_per_s.max(1) << 20);
        Duration::from_micros(self.latency_us) + Duration::from_nanos(transfer_ns)
    }
}

/// What a request does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoOp {
    /// Read up to `len` bytes (fewer at the end of the file).
    Read {
        /// Bytes wanted.
        len: usize,
    },
    /// Write `data`, extending the file (holes read as zeros).
    Write {
        /// The bytes.
        data: Vec<u8>,
    },
}

/// A finished request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoDone {
    /// Bytes read.
    Read(Vec<u8>),
    /// Bytes written.
    Written(usize),
    /// The request failed.
    Err(Errno),
}

/// The callback a request runs when it completes, on the engine's thread.
pub type Completion = Box<dyn FnOnce(IoDone) + Send>;

/// One request.
pub struct IoRequest {
    /// The file.
    pub file: u32,
    /// Byte offset.
    pub offset: u64,
    /// Read or write.
    pub op: IoOp,
    /// Called with the result.
    pub done: Completion,
}

impl fmt::Debug for IoRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoRequest")
            .field("file", &self.file)
            .field("offset", &self.offset)
            .field("op", &self.op)
            .finish_non_exhaustive()
    }
}

/// The engine's messages.
#[derive(Debug)]
pub enum IoMsg {
    /// Queue a request.
    Submit(IoRequest),
    /// End of the run: complete what is queued at once, then stop.
    Shutdown,
}

/// What the engine did in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoStats {
    /// Read requests completed.
    pub reads: u64,
    /// Write requests completed.
    pub writes: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Sum of the requests' times from submission to completion, in microseconds.
    pub wait_us: u64,
}

struct Queued {
    due: Instant,
    seq: u64,
    submitted: Instant,
    req: IoRequest,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    /// Earliest first in a max-heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

/// The engine actor.
pub(crate) struct IoEngine {
    disk: DiskSpec,
    files: BTreeMap<u32, Vec<u8>>,
    queue: BinaryHeap<Queued>,
    /// When the device finishes what is queued.
    busy_until: Instant,
    seq: u64,
    pub(crate) stats: IoStats,
}

impl fmt::Debug for IoEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoEngine")
            .field("disk", &self.disk)
            .field("files", &self.files.len())
            .field("queued", &self.queue.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl IoEngine {
    pub(crate) fn new(disk: DiskSpec) -> IoEngine {
        IoEngine {
            disk,
            files: BTreeMap::new(),
            queue: BinaryHeap::new(),
            busy_until: Instant::now(),
            seq: 0,
            stats: IoStats::default(),
        }
    }

    fn submit(&mut self, req: IoRequest) {
        let now = Instant::now();
        let bytes = match &req.op {
            IoOp::Read { len } => *len as u64,
            IoOp::Write { data } => data.len() as u64,
        };
        let start = self.busy_until.max(now);
        self.busy_until = start + self.disk.service_time(bytes);
        self.seq += 1;
        tracing::event!(
            name: "block_rq_issue",
            target: "mm_trace",
            tracing::Level::TRACE,
            rwbs = if matches!(req.op, IoOp::Read { .. }) { "R" } else { "W" },
            file = req.file,
            offset = req.offset,
            bytes,
        );
        self.queue.push(Queued {
            due: self.busy_until,
            seq: self.seq,
            submitted: now,
            req,
        });
    }

    /// Serves one request against the stored files.
    fn serve(&mut self, file: u32, offset: u64, op: IoOp) -> IoDone {
        match op {
            IoOp::Read { len } => {
                let data = self.files.get(&file).map_or(&[][..], |v| &v[..]);
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(len).min(data.len());
                self.stats.reads += 1;
                self.stats.bytes_read += (end - start) as u64;
                IoDone::Read(data[start..end].to_vec())
            }
            IoOp::Write { data } => {
                let Some(end) = offset.checked_add(data.len() as u64) else {
                    return IoDone::Err(Errno::Einval);
                };
                if end > MAX_FILE_BYTES {
                    return IoDone::Err(Errno::Efbig);
                }
                let f = self.files.entry(file).or_default();
                if f.len() < end as usize {
                    f.resize(end as usize, 0);
                }
                f[offset as usize..end as usize].copy_from_slice(&data);
                self.stats.writes += 1;
                self.stats.bytes_written += data.len() as u64;
                IoDone::Written(data.len())
            }
        }
    }

    /// Completes every request due by `now` (all of them with `None`).
    fn complete(&mut self, now: Option<Instant>) {
        while self
            .queue
            .peek()
            .is_some_and(|q| now.is_none_or(|n| q.due <= n))
        {
            let q = self.queue.pop().expect("peeked");
            let IoRequest {
                file,
                offset,
                op,
                done,
            } = q.req;
            let write = matches!(op, IoOp::Write { .. });
            let result = self.serve(file, offset, op);
            let waited = q.submitted.elapsed();
            self.stats.wait_us += waited.as_micros() as u64;
            tracing::event!(
                name: "block_rq_complete",
                target: "mm_trace",
                tracing::Level::TRACE,
                rwbs = if write { "W" } else { "R" },
                file,
                offset,
                error = matches!(result, IoDone::Err(_)),
                latency_us = waited.as_micros() as u64,
            );
            done(result);
        }
    }
}

impl Actor for IoEngine {
    type Msg = IoMsg;

    fn handle(&mut self, msg: IoMsg, status: &ActorStatus) -> Flow {
        match msg {
            IoMsg::Submit(req) => {
                status.set("queueing");
                self.submit(req);
                Flow::Continue
            }
            IoMsg::Shutdown => {
                status.set("draining");
                self.complete(None);
                Flow::Stop
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.queue.peek().map(|q| q.due)
    }

    fn tick(&mut self, status: &ActorStatus) {
        status.set("completing");
        self.complete(Some(Instant::now()));
    }
}
