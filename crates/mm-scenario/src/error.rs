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
    /// `vm.lowmem_reserve_ratio` with the wrong number of entries.
    #[error("sysctl.vm.lowmem_reserve_ratio must have exactly 5 entries (one per zone type), found {found}")]
    LowmemReserveLength {
        /// Entries given.
        found: usize,
    },
}
