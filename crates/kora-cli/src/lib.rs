//! The `kora` binary's library half: what its commands (and tests, and custom worker binaries)
//! call.
//!
//! Owns: the embedded engine ([`embedded::Engine`]: every role in one process on the in-memory
//! broker, wired by `kora_server`), connecting to an installation ([`connect`]: its broker, its
//! ledger, the operator API of `kora_client`), what the CLI adds to that API ([`operator`]:
//! who acts, overrides from flags), loading workflow and parameter files within the input limits ([`input`], [`settings`]), and
//! comparing results with Kailash's ([`conformance`]).
//!
//! Must not: implement engine logic or write run state. Everything here goes through the
//! broker and the store traits, exactly as separate processes would.

pub mod conformance;
pub mod connect;
pub mod embedded;
pub mod input;
pub mod operator;
pub mod settings;
