//! Scenario errors: where a scenario is wrong ([`Place`]) and what is wrong ([`Problem`]).

use std::fmt;

use mm_types::ZoneId;

use crate::size::{format_bytes, SizeError};

/// An error loading a scenario. Its `Display` is one line that starts with the place.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario file could not be read.
    #[error("{path}: cannot read scenario: {error}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error (part of the message, so not also a `source`).
        error: std::io::Error,
    },
    /// A scenario name is neither a built-in nor an existing file.
    #[error("unknown scenario '{name}' (not a file; built-ins: {builtins})")]
    UnknownScenario {
        /// The name as given.
        name: String,
        /// The built-in names, comma separated.
        builtins: String,
    },
    /// The scenario text or an override is malformed or out of range.
    #[error("{place}: {problem}")]
    Invalid {
        /// Where the problem is.
        place: Place,
        /// What is wrong.
        problem: Problem,
    },
}

impl ScenarioError {
    /// Returns the place of an [`ScenarioError::Invalid`] error.
    pub fn place(&self) -> Option<&Place> {
        match self {
            ScenarioError::Invalid { place, .. } => Some(place),
            _ => None,
        }
    }
    /// Returns the problem of an [`ScenarioError::Invalid`] error.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ScenarioError::Invalid { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// The place a problem is reported at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A position in a scenario text; line and column are 1-based, the column counts characters.
    File {
        /// The file path (or `<builtin:NAME>`).
        origin: String,
        /// Line number, from 1.
        line: usize,
        /// Column number in characters, from 1.
        col: usize,
    },
    /// A `--set KEY=VALUE` override.
    Set {
        /// The override as given (`KEY=VALUE`).
        arg: String,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::File { origin, line, col } => write!(f, "{origin}:{line}:{col}"),
            Place::Set { arg } => write!(f, "--set {arg}"),
        }
    }
}

/// An inclusive range of accepted integers, as the kernel's sysctl handlers check them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounds {
    /// `lo..=hi`.
    Range(i64, i64),
    /// `0` or `lo..=hi` (`vm.percpu_pagelist_high_fraction`).
    ZeroOr(i64, i64),
}

impl Bounds {
    /// Returns true if `v` is accepted.
    pub fn contains(self, v: i64) -> bool {
        match self {
            Bounds::Range(lo, hi) => (lo..=hi).contains(&v),
            Bounds::ZeroOr(lo, hi) => v == 0 || (lo..=hi).contains(&v),
        }
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bounds::Range(lo, hi) => write!(f, "{lo}..={hi}"),
            Bounds::ZeroOr(lo, hi) => write!(f, "0 or {lo}..={hi}"),
        }
    }
}

/// An accepted range of floats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FloatRange {
    /// `x > 0` (and finite).
    Positive,
    /// `lo..=hi`.
    Closed(f64, f64),
    /// `lo < x < hi`.
    Open(f64, f64),
}

impl FloatRange {
    /// Returns true if `v` is accepted.
    pub fn contains(self, v: f64) -> bool {
        v.is_finite()
            && match self {
                FloatRange::Positive => v > 0.0,
                FloatRange::Closed(lo, hi) => (lo..=hi).contains(&v),
                FloatRange::Open(lo, hi) => lo < v && v < hi,
            }
    }
}

impl fmt::Display for FloatRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FloatRange::Positive => f.write_str("> 0"),
            FloatRange::Closed(lo, hi) => write!(f, "{lo}..={hi}"),
            FloatRange::Open(lo, hi) => write!(f, "{lo} < x < {hi}"),
        }
    }
}

/// What is wrong with a scenario. Keys are named by their full dotted path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// The TOML itself does not parse.
    #[error("invalid TOML: {0}")]
    Syntax(String),
    /// A `--set` argument is not `KEY=VALUE` with a dotted key.
    #[error("expected KEY=VALUE with a dotted key such as machine.memory=8GiB")]
    SetSyntax,
    /// A `--set` key walks through a value that is not a table.
    #[error("`{key}` is {found}, not a table, so it has no key `{child}`")]
    SetThroughValue {
        /// The path walked so far.
        key: String,
        /// The child key that was asked for.
        child: String,
        /// The type found, with its article.
        found: &'static str,
    },
    /// A `--set` key indexes an array with something other than an index in range.
    #[error("`{key}` is an array of {len}, so `{found}` is not one of its indices (0..{len})")]
    SetArrayIndex {
        /// The array's path.
        key: String,
        /// The segment given as an index.
        found: String,
        /// The array's length.
        len: usize,
    },
    /// A key the format does not know.
    #[error("unknown key `{key}` in {table}")]
    UnknownKey {
        /// The unknown key.
        key: String,
        /// The table it is in (`the top level`, `[machine]`, `[sysctl.vm]`, …).
        table: String,
    },
    /// A required key is absent.
    #[error("missing key `{key}` in {table}")]
    MissingKey {
        /// The missing key.
        key: &'static str,
        /// The table it should be in.
        table: String,
    },
    /// A value has the wrong TOML type.
    #[error("{key} must be {expected}, found {found}")]
    WrongType {
        /// The full dotted key.
        key: String,
        /// What was expected, with its article.
        expected: &'static str,
        /// The type found, with its article.
        found: &'static str,
    },
    /// An integer outside its accepted range.
    #[error("{key} = {value} is out of range {bounds}")]
    OutOfRange {
        /// The full dotted key.
        key: String,
        /// The value given.
        value: i64,
        /// The accepted values.
        bounds: Bounds,
    },
    /// A size string that does not parse.
    #[error("{key} = \"{text}\" is not a size: {reason}")]
    BadSize {
        /// The full dotted key.
        key: String,
        /// The text given.
        text: String,
        /// Why it does not parse.
        reason: SizeError,
    },
    /// A percentage where only an absolute size makes sense.
    #[error("{key} cannot be a percentage: percentages are of MemTotal, which {key} defines")]
    PercentNotAllowed {
        /// The full dotted key.
        key: String,
    },
    /// A negative byte count.
    #[error("{key} = {value} is negative; a size is a byte count")]
    NegativeSize {
        /// The full dotted key.
        key: String,
        /// The value given.
        value: i64,
    },
    /// `machine.memory` is not a whole number of pages.
    #[error("machine.memory = {bytes} bytes is not a multiple of the page size (4096)")]
    MemoryNotPageMultiple {
        /// The size given.
        bytes: u64,
    },
    /// `machine.memory` is below the minimum.
    #[error("machine.memory = {} is below the minimum of 16 MiB", format_bytes(*.bytes))]
    MemoryTooSmall {
        /// The size given.
        bytes: u64,
    },
    /// `machine.memory` is above the maximum.
    #[error("machine.memory = {} is above the maximum of 64 TiB", format_bytes(*.bytes))]
    MemoryTooLarge {
        /// The size given.
        bytes: u64,
    },
    /// A zone name other than DMA, DMA32 and Normal.
    #[error("unknown zone name `{name}` (expected DMA, DMA32 or Normal)")]
    UnknownZone {
        /// The name given.
        name: String,
    },
    /// A zone listed twice.
    #[error("duplicate zone {zone}: each zone is listed at most once")]
    DuplicateZone {
        /// The zone.
        zone: ZoneId,
    },
    /// Zones listed out of order.
    #[error("zone {zone} is listed after {previous}; list zones in ascending order (DMA, DMA32, Normal)")]
    ZoneOrder {
        /// The zone listed late.
        zone: ZoneId,
        /// The higher zone listed before it.
        previous: ZoneId,
    },
    /// `machine.zone` is an empty array.
    #[error("machine.zone is empty; omit it to derive the zones from machine.memory")]
    NoZones,
    /// A zone spanning no pages.
    #[error("zone {zone} spans no pages; omit the zone instead")]
    EmptyZone {
        /// The zone.
        zone: ZoneId,
    },
    /// A zone whose span reaches beyond its address range.
    #[error("zone {zone} spans pfns {start}..{end}, outside its range {limit}")]
    ZoneOutsideRange {
        /// The zone.
        zone: ZoneId,
        /// First pfn.
        start: u64,
        /// One past the last pfn.
        end: u64,
        /// The zone's range, as text (`pfns ..4096 (below 16 MiB)`).
        limit: &'static str,
    },
    /// Two zone spans overlap.
    #[error("zone {zone} starts at pfn {start}, inside zone {previous} which ends at pfn {previous_end}")]
    ZoneOverlap {
        /// The later zone.
        zone: ZoneId,
        /// Its first pfn.
        start: u64,
        /// The earlier zone.
        previous: ZoneId,
        /// One past the earlier zone's last pfn.
        previous_end: u64,
    },
    /// More pages present than spanned.
    #[error("zone {zone}: present = {present} exceeds spanned = {spanned}")]
    PresentExceedsSpanned {
        /// The zone.
        zone: ZoneId,
        /// Present pages.
        present: u64,
        /// Spanned pages.
        spanned: u64,
    },
    /// More pages managed than present.
    #[error("zone {zone}: managed = {managed} exceeds present = {present}")]
    ManagedExceedsPresent {
        /// The zone.
        zone: ZoneId,
        /// Managed pages.
        managed: u64,
        /// Present pages.
        present: u64,
    },
    /// The zones reach beyond `machine.memory`.
    #[error(
        "machine.memory = {} ({} pages) is smaller than the zones, which end at pfn {end_pfn} ({})",
        format_bytes(*.memory), .memory / 4096, format_bytes(.end_pfn * 4096)
    )]
    ZonesExceedMemory {
        /// The memory size in bytes.
        memory: u64,
        /// One past the last zone's last pfn.
        end_pfn: u64,
    },
    /// A float outside its accepted range.
    #[error("{key} = {value} is out of range {range}")]
    FloatOutOfRange {
        /// The full dotted key.
        key: String,
        /// The value given.
        value: f64,
        /// The accepted values.
        range: FloatRange,
    },
    /// A duration string that does not parse.
    #[error("{key} = \"{text}\" is not a duration (use \"500ms\", \"2s\", \"1min\" or a number of seconds)")]
    BadDuration {
        /// The full dotted key.
        key: String,
        /// The text given.
        text: String,
    },
    /// A negative or non-finite number of seconds.
    #[error("{key} = {value} is not a duration: a number of seconds is finite and >= 0")]
    BadSeconds {
        /// The full dotted key.
        key: String,
        /// The value given.
        value: f64,
    },
    /// A size of zero bytes or 0%.
    #[error("{key} is zero; a phase needs some memory")]
    ZeroSize {
        /// The full dotted key.
        key: String,
    },
    /// A percentage of MemTotal above 100%.
    #[error("{key} = {percent}% is more than 100% of MemTotal")]
    PercentTooLarge {
        /// The full dotted key.
        key: String,
        /// The percentage given.
        percent: f64,
    },
    /// A percentage of MemAvailable above 100%.
    #[error("{key} = {percent}% avail is more than 100% of MemAvailable")]
    PercentAvailTooLarge {
        /// The full dotted key.
        key: String,
        /// The percentage given.
        percent: f64,
    },
    /// A percentage where a field needs an absolute size.
    #[error("{key} must be a byte count, not a percentage")]
    PercentNotBytes {
        /// The full dotted key.
        key: String,
    },
    /// A command name that is empty or longer than the kernel keeps.
    #[error("process.name = \"{name}\" has {bytes} bytes; a command name has 1 to 15 (TASK_COMM_LEN is 16)")]
    NameLength {
        /// The name given.
        name: String,
        /// Its length in bytes.
        bytes: usize,
    },
    /// A workload kind the format does not know.
    #[error("unknown workload `{name}` (expected anon, mmap-churn, malloc, fork-cow, direct-io or file)")]
    UnknownWorkload {
        /// The name given.
        name: String,
    },
    /// The `file` workload, which needs the page cache.
    #[error("workload `file` needs the page cache, not simulated yet")]
    FileWorkload,
    /// An access pattern the format does not know.
    #[error("unknown pattern `{name}` (expected sequential, random, zipf, hotcold or stride)")]
    UnknownPattern {
        /// The name given.
        name: String,
    },
    /// A key that means nothing for the rest of its table.
    #[error("{key} applies only to {only}")]
    NotApplicable {
        /// The full dotted key.
        key: String,
        /// What it applies to (`pattern = "zipf"`, `workload = "anon"`, …).
        only: &'static str,
    },
    /// Both `ops` and `duration` in one table.
    #[error("{table} has both ops and duration; give exactly one")]
    BothLengths {
        /// The table (`[[process.phase]]`, `the top level`).
        table: String,
    },
    /// Neither `ops` nor `duration` in a phase that needs a length.
    #[error("{table} needs a length: give ops or duration ({workload} runs until stopped)")]
    MissingLength {
        /// The table.
        table: String,
        /// The phase's workload.
        workload: &'static str,
    },
    /// `process.phase = []`.
    #[error("process.phase is empty; a process needs at least one [[process.phase]]")]
    NoPhases,
    /// `process.cpus = []`.
    #[error("process.cpus is empty; omit it to run on any CPU")]
    NoCpus,
    /// A CPU listed twice in `process.cpus`.
    #[error("process.cpus lists CPU {cpu} twice")]
    DuplicateCpu {
        /// The CPU.
        cpu: u32,
    },
    /// A `fork-cow` phase whose fork tree is too big to simulate.
    #[error("fork-cow with children = {children} and generations = {generations} forks {processes} processes; at most {max}")]
    ForkTreeTooLarge {
        /// Children per fork.
        children: u32,
        /// Generations.
        generations: u32,
        /// Processes the tree would fork.
        processes: u64,
        /// The limit.
        max: u64,
    },
    /// `vm.lowmem_reserve_ratio` with the wrong number of entries.
    #[error("sysctl.vm.lowmem_reserve_ratio must have exactly 5 entries (one per zone type), found {found}")]
    LowmemReserveLength {
        /// Entries given.
        found: usize,
    },
}
