//! The data-integrity verifier: every store writes a value derived from (pid, address,
//! version), and every load checks it against what this task expects.
//!
//! A value is `pid[15:0] << 48 | vpn[31:0] << 16 | version`: the low 16 bits of the writer's
//! pid, the low 32 bits of the page number and a per-page version (1..=65535, wrapping past 0,
//! which means "never written"). Each page has one check word, at an offset inside the page
//! derived from its page number ([`check_word`]), so the words of neighbouring pages fall on
//! different cache lines and offsets.
//!
//! Per tracked region the verifier keeps, per page, the version last stored and who stored it
//! (an index into the task's lineage: its ancestors' pids, then its own), three bytes a page. A
//! page never written must read 0. After `fork` the child starts from a copy of the parent's
//! expectations, so pages it has not rewritten are expected to hold its ancestors' values.
//!
//! A load that returns the expected value adds 8 to `bytes_verified`. Any other value is an
//! isolation violation when it is non-zero and its pid field is neither this task's nor an
//! ancestor's (another process's data is visible here), and a corruption otherwise.

use std::collections::BTreeMap;

use mm_sim::workload::{Integrity, Op, OpResult};
use mm_types::{Pid, VirtAddr, PAGE_SHIFT, PAGE_SIZE};

/// Bytes in a page.
pub(crate) const PAGE: u64 = PAGE_SIZE as u64;
/// The most processes a lineage names (the root and its descendants).
const MAX_LINEAGE: usize = u8::MAX as usize;

/// Returns the value `pid` stores at the check word of the page at `page` in `version`.
pub(crate) fn encode(pid: u32, page: VirtAddr, version: u16) -> u64 {
    (u64::from(pid) & 0xFFFF) << 48 | (page.vpn().0 & 0xFFFF_FFFF) << 16 | u64::from(version)
}

/// Returns the pid field of a value.
pub(crate) fn pid_field(value: u64) -> u64 {
    value >> 48
}

/// Returns the address of the check word of the page holding `addr`: an 8-byte aligned offset
/// inside the page, scattered by a multiplicative hash of the page number.
pub(crate) fn check_word(addr: VirtAddr) -> VirtAddr {
    let page = addr.page_align_down();
    let slot = (page.vpn().0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 55) & (PAGE / 8 - 1);
    VirtAddr(page.0 + slot * 8)
}

/// The expectations for one mapped region: per page, the last version and its writer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Region {
    version: Vec<u16>,
    writer: Vec<u8>,
}

/// An access whose result has not arrived yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// A load that must return `expected`.
    Load { expected: u64 },
    /// A store to page `page` of the region at `start`; undone if the store fails.
    Store {
        start: u64,
        page: usize,
        prev_version: u16,
        prev_writer: u8,
    },
}

/// One task's expectations and counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Verifier {
    /// Pids (full) of the task's ancestors, then its own; writer indices point here.
    lineage: Vec<u32>,
    /// Tracked regions by start address.
    regions: BTreeMap<u64, Region>,
    pending: Option<Pending>,
    integrity: Integrity,
}

impl Verifier {
    /// Notes the task's pid (a forked child learns its own here, at its first operation).
    pub(crate) fn begin(&mut self, pid: Pid) {
        if self.lineage.last() != Some(&pid.0) && self.lineage.len() < MAX_LINEAGE {
            self.lineage.push(pid.0);
        }
    }

    /// Checks the result of the previous access, if it was one.
    pub(crate) fn settle(&mut self, last: OpResult) {
        match (self.pending.take(), last) {
            (Some(Pending::Load { expected }), OpResult::Value(value)) => {
                self.check(expected, value);
            }
            (
                Some(Pending::Store {
                    start,
                    page,
                    prev_version,
                    prev_writer,
                }),
                OpResult::Err(_),
            ) => {
                if let Some(r) = self.regions.get_mut(&start) {
                    r.version[page] = prev_version;
                    r.writer[page] = prev_writer;
                }
            }
            _ => {}
        }
    }

    /// Counts one loaded `value` against `expected`.
    fn check(&mut self, expected: u64, value: u64) {
        if value == expected {
            self.integrity.bytes_verified += 8;
            return;
        }
        let field = pid_field(value);
        let ours = self.lineage.iter().any(|&p| u64::from(p) & 0xFFFF == field);
        if value != 0 && field != 0 && !ours {
            self.integrity.isolation_violations += 1;
        } else {
            self.integrity.corruptions += 1;
        }
    }

    /// Starts tracking `pages` fresh (zero) pages at `start`.
    pub(crate) fn add_region(&mut self, start: VirtAddr, pages: u64) {
        let n = usize::try_from(pages).unwrap_or(usize::MAX);
        self.regions.insert(
            start.0,
            Region {
                version: vec![0; n],
                writer: vec![0; n],
            },
        );
    }

    /// Stops tracking the region at `start` (it was unmapped).
    pub(crate) fn remove_region(&mut self, start: VirtAddr) {
        self.regions.remove(&start.0);
    }

    /// Resizes the region at `start` to `pages`: pages cut off are forgotten, pages added are
    /// fresh (a heap that shrinks and grows again reads zeros).
    pub(crate) fn resize_region(&mut self, start: VirtAddr, pages: u64) {
        let n = usize::try_from(pages).unwrap_or(usize::MAX);
        let r = self.regions.entry(start.0).or_insert_with(|| Region {
            version: Vec::new(),
            writer: Vec::new(),
        });
        r.version.resize(n, 0);
        r.writer.resize(n, 0);
    }

    /// Finds the region and page index holding `addr`.
    fn locate(&self, addr: VirtAddr) -> Option<(u64, usize)> {
        let (&start, region) = self.regions.range(..=addr.0).next_back()?;
        let page = usize::try_from((addr.0 - start) >> PAGE_SHIFT).ok()?;
        (page < region.version.len()).then_some((start, page))
    }

    /// Returns the load of the check word of the page holding `addr`, expecting its value.
    ///
    /// An untracked address gives a plain [`Op::Yield`]: generators only touch their regions.
    pub(crate) fn load(&mut self, addr: VirtAddr) -> Op {
        let Some((start, page)) = self.locate(addr) else {
            return Op::Yield;
        };
        let r = &self.regions[&start];
        let version = r.version[page];
        let word = check_word(addr);
        let expected = match version {
            0 => 0,
            v => {
                let writer = self.lineage.get(usize::from(r.writer[page])).copied();
                encode(writer.unwrap_or(0), word, v)
            }
        };
        self.pending = Some(Pending::Load { expected });
        Op::Load { addr: word }
    }

    /// Returns a load of `addr` that must read `expected`: data that reached this buffer from
    /// elsewhere (a file), checked like any load.
    pub(crate) fn load_expecting(&mut self, addr: VirtAddr, expected: u64) -> Op {
        self.pending = Some(Pending::Load { expected });
        Op::Load { addr }
    }

    /// Counts a check done outside a load (a short read: `expected` bytes, `value` came).
    pub(crate) fn count(&mut self, expected: u64, value: u64) {
        self.check(expected, value);
    }

    /// Returns this task's pid (0 before its first operation).
    pub(crate) fn pid(&self) -> u32 {
        self.lineage.last().copied().unwrap_or(0)
    }

    /// Returns a store of this task's next value to the check word of the page holding `addr`.
    pub(crate) fn store(&mut self, addr: VirtAddr) -> Op {
        let Some((start, page)) = self.locate(addr) else {
            return Op::Yield;
        };
        let me = self.lineage.len().saturating_sub(1);
        let pid = self.lineage.last().copied().unwrap_or(0);
        let Some(r) = self.regions.get_mut(&start) else {
            return Op::Yield;
        };
        let (prev_version, prev_writer) = (r.version[page], r.writer[page]);
        let version = match prev_version.wrapping_add(1) {
            0 => 1,
            v => v,
        };
        r.version[page] = version;
        // The lineage holds at most 255 pids.
        r.writer[page] = u8::try_from(me).unwrap_or(u8::MAX);
        self.pending = Some(Pending::Store {
            start,
            page,
            prev_version,
            prev_writer,
        });
        let word = check_word(addr);
        Op::Store {
            addr: word,
            value: encode(pid, word, version),
        }
    }

    /// Returns the counts so far.
    pub(crate) fn integrity(&self) -> Integrity {
        self.integrity
    }

    /// Returns a forked child's verifier: the same expectations and lineage (the child adds its
    /// own pid when it starts), no pending access and zero counts.
    pub(crate) fn for_child(&self) -> Verifier {
        Verifier {
            lineage: self.lineage.clone(),
            regions: self.regions.clone(),
            pending: None,
            integrity: Integrity::default(),
        }
    }
}
