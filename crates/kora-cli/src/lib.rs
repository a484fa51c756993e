//! The `kora` binary's library half: what its commands (and tests, and custom worker binaries)
//! call.
//!
//! Owns: the embedded engine ([`embedded::Engine`]: every role in one process on the in-memory
//! broker, wired by `kora_server`), submitting a run and waiting for its outcome ([`client`]),
//! the operator API ([`control`]: dead letters, replay, restart, cancel, triggers; requests
//! the coordinator applies), connecting to an installation ([`connect`]), loading workflow and
//! parameter files ([`input`]), and comparing results with Kailash's ([`conformance`]).
//!
//! Must not: implement engine logic or write run state. Everything here goes through the
//! broker and the store traits, exactly as separate processes would.

pub mod client;
pub mod conformance;
pub mod connect;
pub mod control;
pub mod embedded;
pub mod input;
