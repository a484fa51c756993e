//! Process plumbing shared by the `kora` binary's modes.
//!
//! Owns: layered configuration ([`config::load`]: serde defaults, then a TOML file, then
//! `KORA_*` environment variables, then command-line overrides, then validation), tracing
//! initialisation ([`telemetry`]), and turning SIGINT/SIGTERM into a cancellation token
//! ([`shutdown`]).
//!
//! Must not: depend on any other kora crate or know what the configuration means.

pub mod config;
pub mod shutdown;
pub mod telemetry;

pub use tokio_util::sync::CancellationToken;
pub use tokio_util::task::TaskTracker;
