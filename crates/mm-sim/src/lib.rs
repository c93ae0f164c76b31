//! The simulated machine (layer L6): boots from a [`MachineConfig`], wires the subsystems
//! together and renders the `/proc` views.
//!
//! This crate owns the machine configuration types ([`MachineConfig`], [`ZoneSpec`],
//! [`Sysctl`]); `mm-scenario` fills them from a scenario file.
//!
//! # Invariants
//! - Only this crate spawns threads and owns time and the seed.
//!
//! # Locking protocol
//! The configuration is plain data; the machine's locks belong to the subsystems it wires.
#![deny(unsafe_code)]

mod config;

pub use config::{MachineConfig, Sysctl, ZoneSpec};
