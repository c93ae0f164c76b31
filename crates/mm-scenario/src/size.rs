//! Sizes as scenarios write them: byte counts with binary suffixes, or percentages.
//!
//! Every suffix is binary, as the kernel's `memparse()` treats them: `K`, `KB` and `KiB` all
//! mean 1024 bytes, `M`/`MB`/`MiB` 1024², `G`/`GB`/`GiB` 1024³ and `T`/`TB`/`TiB` 1024⁴.
//! Suffixes are case-insensitive and may be separated from the number by spaces. A `%` suffix
//! gives a [`Size::Percent`]; fields that cannot be relative (such as `machine.memory`) reject it.

use std::fmt;
use std::str::FromStr;

/// One KiB.
pub const KIB: u64 = 1 << 10;
/// One MiB.
pub const MIB: u64 = 1 << 20;
/// One GiB.
pub const GIB: u64 = 1 << 30;
/// One TiB.
pub const TIB: u64 = 1 << 40;

/// A size as written in a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    /// An absolute number of bytes.
    Bytes(u64),
    /// A percentage (of MemTotal, for fields that accept one); finite and non-negative.
    Percent(f64),
    /// A percentage of MemAvailable at boot (`"60% avail"`), as stress-ng sizes its `--vm-bytes`.
    PercentAvail(f64),
}

/// Why a size string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Nothing but spaces.
    #[error("it is empty")]
    Empty,
    /// The number part is missing or malformed.
    #[error("`{0}` is not a whole number")]
    BadNumber(String),
    /// The percentage is missing, malformed, negative or not finite.
    #[error("`{0}` is not a non-negative percentage")]
    BadPercent(String),
    /// The suffix is not one of the known units.
    #[error("unknown unit `{0}` (use B, K, KiB, M, MiB, G, GiB, T or TiB; all binary)")]
    UnknownUnit(String),
    /// The size does not fit in 64 bits.
    #[error("it does not fit in 64 bits")]
    Overflow,
}

impl FromStr for Size {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Size, SizeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SizeError::Empty);
        }
        if let Some(rest) = s.strip_suffix("avail") {
            if let Some(number) = rest.trim_end().strip_suffix('%') {
                let number = number.trim_end();
                return match number.parse::<f64>() {
                    Ok(p) if p.is_finite() && p >= 0.0 && !number.starts_with('+') => {
                        Ok(Size::PercentAvail(p))
                    }
                    _ => Err(SizeError::BadPercent(number.to_owned())),
                };
            }
        }
        if let Some(number) = s.strip_suffix('%') {
            let number = number.trim_end();
            return match number.parse::<f64>() {
                Ok(p) if p.is_finite() && p >= 0.0 && !number.starts_with('+') => {
                    Ok(Size::Percent(p))
                }
                _ => Err(SizeError::BadPercent(number.to_owned())),
            };
        }
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(digits_end);
        let unit = unit.trim_start();
        if number.is_empty() || unit.starts_with(['.', ',', '_']) {
            let end = s
                .find(|c: char| c.is_ascii_alphabetic())
                .filter(|&end| end > 0)
                .unwrap_or(s.len());
            return Err(SizeError::BadNumber(s[..end].trim_end().to_owned()));
        }
        let number: u64 = number.parse().map_err(|_| SizeError::Overflow)?;
        let multiplier =
            unit_multiplier(unit).ok_or_else(|| SizeError::UnknownUnit(unit.to_owned()))?;
        number
            .checked_mul(multiplier)
            .map(Size::Bytes)
            .ok_or(SizeError::Overflow)
    }
}

/// Returns the multiplier of a (case-insensitive) unit suffix; every unit is binary.
fn unit_multiplier(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_lowercase();
    let m = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        "t" | "tb" | "tib" => TIB,
        _ => return None,
    };
    Some(m)
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Bytes(b) => f.write_str(&format_bytes(*b)),
            Size::Percent(p) => write!(f, "{p}%"),
            Size::PercentAvail(p) => write!(f, "{p}% avail"),
        }
    }
}

/// Formats a byte count exactly, in the largest binary unit that divides it (`4 GiB`,
/// `12288 KiB`, `4097 bytes`).
pub fn format_bytes(bytes: u64) -> String {
    for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}
