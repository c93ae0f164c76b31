//! The `[machine]` table: CPUs, memory size and the optional explicit zone geometry.

use mm_sim::{Sysctl, ZoneSpec};
use mm_types::{ZoneId, PAGE_SIZE};
use toml::de::DeValue;
use toml::Spanned;

use crate::doc::Table;
use crate::error::{Bounds, Problem, ScenarioError};
use crate::size::{Size, MIB, TIB};

/// Accepted `machine.cpus`.
pub(crate) const CPUS: Bounds = Bounds::Range(1, 256);
/// Smallest accepted `machine.memory`.
pub(crate) const MIN_MEMORY: u64 = 16 * MIB;
/// Largest accepted `machine.memory`.
pub(crate) const MAX_MEMORY: u64 = 64 * TIB;
/// Pfns below this are in DMA's range (16 MiB).
pub(crate) const DMA_END_PFN: u64 = 4096;
/// Pfns below this are in DMA32's range (4 GiB); Normal starts here.
pub(crate) const DMA32_END_PFN: u64 = 1 << 20;
/// `machine.disk.latency_us`: up to 10 s.
const DISK_LATENCY_US: Bounds = Bounds::Range(0, 10_000_000);
/// `machine.disk.mib_per_s`: 1 MiB/s to 1 TiB/s.
const DISK_MIB_PER_S: Bounds = Bounds::Range(1, 1 << 20);
/// `machine.cost.*`: simulated cycles.
const CYCLES: Bounds = Bounds::Range(0, 1_000_000);
/// A pfn or page count: non-negative.
const PAGES: Bounds = Bounds::Range(0, i64::MAX);

const PAGE_BYTES: u64 = PAGE_SIZE as u64;

/// The machine part of a scenario, before the sysctls are attached.
#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) cpus: u32,
    pub(crate) memory_bytes: u64,
    pub(crate) zones: Option<Vec<ZoneSpec>>,
    pub(crate) disk: mm_sim::DiskSpec,
    pub(crate) cost: mm_sim::CostModel,
}

impl Machine {
    /// Attaches the sysctls, giving the configuration the simulator boots from.
    pub(crate) fn into_config(self, sysctl: Sysctl) -> mm_sim::MachineConfig {
        mm_sim::MachineConfig {
            cpus: self.cpus,
            memory_bytes: self.memory_bytes,
            zones: self.zones,
            sysctl,
            disk: self.disk,
            cost: self.cost,
        }
    }
}

/// Reads and validates `[machine]`.
pub(crate) fn read(machine: &Table<'_, '_>) -> Result<Machine, ScenarioError> {
    machine.deny_unknown(&["cpus", "memory", "zone", "disk", "cost"])?;
    let cpus = machine.require_int("cpus", CPUS)?;
    let memory = read_memory(machine)?;
    let zones = match machine.tables("zone")? {
        None => None,
        Some(tables) => Some(read_zones(machine, &tables, &memory)?),
    };
    let mut disk = mm_sim::DiskSpec::default();
    if let Some(t) = machine.table("disk")? {
        t.deny_unknown(&["latency_us", "mib_per_s"])?;
        if let Some(v) = t.int("latency_us", DISK_LATENCY_US)? {
            disk.latency_us = v.unsigned_abs();
        }
        if let Some(v) = t.int("mib_per_s", DISK_MIB_PER_S)? {
            disk.mib_per_s = v.unsigned_abs();
        }
    }
    let mut cost = mm_sim::CostModel::modern_x86();
    if let Some(t) = machine.table("cost")? {
        t.deny_unknown(&["l1_hit", "l2_hit", "walk_ref", "fault"])?;
        for (key, slot) in [
            ("l1_hit", &mut cost.l1_hit),
            ("l2_hit", &mut cost.l2_hit),
            ("walk_ref", &mut cost.walk_ref),
            ("fault", &mut cost.fault),
        ] {
            if let Some(v) = t.int(key, CYCLES)? {
                *slot = v.unsigned_abs();
            }
        }
    }
    Ok(Machine {
        // In range 1..=256, checked above.
        cpus: u32::try_from(*cpus.get_ref()).unwrap_or(u32::MAX),
        memory_bytes: *memory.get_ref(),
        zones,
        disk,
        cost,
    })
}

/// Reads a size field: an integer byte count or a size string.
pub(crate) fn read_size(
    table: &Table<'_, '_>,
    key: &'static str,
) -> Result<Spanned<Size>, ScenarioError> {
    let node = table.require(key)?;
    let doc = table.doc;
    let size = match node.get_ref() {
        DeValue::Integer(_) => {
            let bytes = crate::doc::int_in(
                doc,
                &table.key_path(key),
                node,
                Bounds::Range(i64::MIN, i64::MAX),
            )?;
            let bytes = u64::try_from(bytes).map_err(|_| {
                doc.error(
                    node.span(),
                    Problem::NegativeSize {
                        key: table.key_path(key),
                        value: bytes,
                    },
                )
            })?;
            Size::Bytes(bytes)
        }
        DeValue::String(text) => text.parse::<Size>().map_err(|reason| {
            doc.error(
                node.span(),
                Problem::BadSize {
                    key: table.key_path(key),
                    text: text.to_string(),
                    reason,
                },
            )
        })?,
        _ => {
            return Err(table.wrong_type(key, node, "a size (bytes, or a string such as \"4GiB\")"))
        }
    };
    Ok(Spanned::new(node.span(), size))
}

/// Reads `machine.memory`: an absolute, page-aligned size in `16 MiB..=64 TiB`.
fn read_memory(machine: &Table<'_, '_>) -> Result<Spanned<u64>, ScenarioError> {
    let size = read_size(machine, "memory")?;
    let err = |problem| machine.doc.error(size.span(), problem);
    let bytes = match *size.get_ref() {
        Size::Bytes(b) => b,
        Size::Percent(_) | Size::PercentAvail(_) => {
            return Err(err(Problem::PercentNotAllowed {
                key: "machine.memory".to_owned(),
            }))
        }
    };
    if bytes % PAGE_BYTES != 0 {
        return Err(err(Problem::MemoryNotPageMultiple { bytes }));
    }
    if bytes < MIN_MEMORY {
        return Err(err(Problem::MemoryTooSmall { bytes }));
    }
    if bytes > MAX_MEMORY {
        return Err(err(Problem::MemoryTooLarge { bytes }));
    }
    Ok(Spanned::new(size.span(), bytes))
}

/// Reads `[[machine.zone]]` and checks the geometry: known zones, each once, in ascending order,
/// inside their address ranges, not overlapping, `managed <= present <= spanned`, and covered by
/// `machine.memory`.
fn read_zones(
    machine: &Table<'_, '_>,
    tables: &[Table<'_, '_>],
    memory: &Spanned<u64>,
) -> Result<Vec<ZoneSpec>, ScenarioError> {
    let doc = machine.doc;
    if tables.is_empty() {
        let span = machine
            .get("zone")
            .map_or(machine.span.clone(), Spanned::span);
        return Err(doc.error(span, Problem::NoZones));
    }
    let mut zones: Vec<ZoneSpec> = Vec::with_capacity(tables.len());
    for zone in tables {
        zone.deny_unknown(&["name", "start_pfn", "spanned", "present", "managed"])?;
        let name = zone.require_string("name")?;
        let id = match ZoneId::from_name(name.get_ref()) {
            Some(id @ (ZoneId::Dma | ZoneId::Dma32 | ZoneId::Normal)) => id,
            _ => {
                return Err(doc.error(
                    name.span(),
                    Problem::UnknownZone {
                        name: name.get_ref().to_string(),
                    },
                ))
            }
        };
        if zones.iter().any(|z| z.id == id) {
            return Err(doc.error(name.span(), Problem::DuplicateZone { zone: id }));
        }
        if let Some(prev) = zones.last().filter(|prev| prev.id > id) {
            return Err(doc.error(
                name.span(),
                Problem::ZoneOrder {
                    zone: id,
                    previous: prev.id,
                },
            ));
        }
        let start = zone.require_int("start_pfn", PAGES)?;
        let spanned = zone.require_int("spanned", PAGES)?;
        let present = zone.require_int("present", PAGES)?;
        let managed = zone.require_int("managed", PAGES)?;
        let [start_pfn, spanned_pages, present_pages, managed_pages] =
            [&start, &spanned, &present, &managed].map(|v| v.get_ref().unsigned_abs());

        if spanned_pages == 0 {
            return Err(doc.error(spanned.span(), Problem::EmptyZone { zone: id }));
        }
        let end = start_pfn.saturating_add(spanned_pages);
        let outside = |limit| Problem::ZoneOutsideRange {
            zone: id,
            start: start_pfn,
            end,
            limit,
        };
        match id {
            ZoneId::Dma if end > DMA_END_PFN => {
                return Err(doc.error(spanned.span(), outside("pfns ..4096 (below 16 MiB)")))
            }
            ZoneId::Dma32 if end > DMA32_END_PFN => {
                return Err(doc.error(spanned.span(), outside("pfns ..1048576 (below 4 GiB)")))
            }
            ZoneId::Normal if start_pfn < DMA32_END_PFN => {
                return Err(doc.error(start.span(), outside("pfns 1048576.. (from 4 GiB up)")))
            }
            _ => {}
        }
        if let Some(prev) = zones.last() {
            let previous_end = prev.start_pfn.saturating_add(prev.spanned);
            if start_pfn < previous_end {
                return Err(doc.error(
                    start.span(),
                    Problem::ZoneOverlap {
                        zone: id,
                        start: start_pfn,
                        previous: prev.id,
                        previous_end,
                    },
                ));
            }
        }
        if present_pages > spanned_pages {
            return Err(doc.error(
                present.span(),
                Problem::PresentExceedsSpanned {
                    zone: id,
                    present: present_pages,
                    spanned: spanned_pages,
                },
            ));
        }
        if managed_pages > present_pages {
            return Err(doc.error(
                managed.span(),
                Problem::ManagedExceedsPresent {
                    zone: id,
                    managed: managed_pages,
                    present: present_pages,
                },
            ));
        }
        zones.push(ZoneSpec {
            id,
            start_pfn,
            spanned: spanned_pages,
            present: present_pages,
            managed: managed_pages,
        });
    }
    let end_pfn = zones
        .iter()
        .map(|z| z.start_pfn.saturating_add(z.spanned))
        .max()
        .unwrap_or(0);
    if end_pfn.saturating_mul(PAGE_BYTES) > *memory.get_ref() {
        return Err(doc.error(
            memory.span(),
            Problem::ZonesExceedMemory {
                memory: *memory.get_ref(),
                end_pfn,
            },
        ));
    }
    Ok(zones)
}
