//! The HTTP gateway against real roles: `kora serve --role all` (the gateway with the engine)
//! on the machine's NATS and PostgreSQL, each test under its own prefix, database and port.
//! Outside CI, missing services skip these tests with a message; with `CI` set they fail.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../distributed/support.rs"]
#[allow(dead_code)]
mod support;

mod api;
mod authz;
mod fuzz;
mod isolation;
mod jwt;
mod nats_roles;
mod policy;
mod protection;
mod python;
mod runs;
mod secrets;
mod ui;
mod webhooks;
