//! The distributed engine with real processes: `kora serve` roles on the machine's NATS and
//! PostgreSQL, each test under its own subject prefix and its own database. One test binary,
//! one module per theme. Outside CI, missing services skip these tests with a message; with
//! `CI` set they fail.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod crash;
mod dev;
mod dlq;
mod limits;
mod monitor;
mod observe;
mod runs;
mod security;
mod shutdown;
mod support;
mod trace;
mod triggers;
mod walkthrough;
