//! Small generic helpers that every skillkernel crate may use, in the
//! spirit of rust-analyzer's `stdx`: things the standard library almost
//! has — poison-tolerant locks ([`sync`]), locked and atomically
//! replaced small files ([`files`]), opening a sled database that
//! this process just closed (`sled_open`, with the `sled` feature), text for people
//! ([`text`]: durations, plain-text tables, HTML escaping), and the
//! Prometheus text format with an atomic histogram ([`prometheus`]), and
//! the counters of a telemetry outlet that drops rather than waits
//! ([`outlet`]), comparing secrets in constant time ([`secret`]), and the time stamps of rotated files (`stamps`, with the
//! `stamps` feature), and how a `tracing` span is marked failed for trace
//! export ([`span`]).
//!
//! # What this crate must never do
//!
//! * Know anything of skillkernel: no Jupyter, no skills, no models, no
//!   sandbox. A helper that needs a project type belongs in that type's
//!   crate.
//! * Depend on another skillkernel crate, or pull a heavy dependency into
//!   every user (sled and chrono are behind the `sled` and `stamps` features).

pub mod files;
pub mod outlet;
pub mod prometheus;
pub mod secret;
#[cfg(feature = "sled")]
pub mod sled_open;
pub mod span;
#[cfg(feature = "stamps")]
pub mod stamps;
pub mod sync;
pub mod text;

pub use sync::{lock, read, write};
