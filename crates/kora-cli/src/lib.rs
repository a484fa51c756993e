//! The `kora` binary's library half: the embedded engine and the client calls the commands use.
//!
//! Owns: wiring the roles together in one process ([`embedded::Engine`]: scheduler,
//! coordinator and workers on the in-memory broker with a memory or SQLite ledger), submitting a
//! run and waiting for its outcome ([`client`]), loading workflow and parameter files
//! ([`input`]), and rendering results ([`output`]).
//!
//! Must not: implement engine logic. Everything here calls the role crates through their
//! public `run` functions and the broker and store traits, exactly as separate processes would.

pub mod client;
pub mod conformance;
pub mod control;
pub mod embedded;
pub mod http;
pub mod input;
pub mod output;
pub mod serve;
pub mod triggers;
