//! Kora's workflow model: what a workflow is and what running it means, with no I/O.
//!
//! Owns: the canonical [`spec::WorkflowSpec`]; loaders for every Kailash shape ([`load`]);
//! input [`limits`] checked before expensive work; validation that names the node and field of
//! each problem, compiled into a [`validate::CompiledWorkflow`]; Kailash's input semantics ([`semantics`]); the safe
//! `converge_when` language ([`expr`]); the planner ([`plan::RunState`]), which is the only code
//! that decides a node is ready; wire messages ([`wire`]), subject names ([`subjects`]), message
//! ids ([`msg_id`]), and the names of failures ([`failure`]).
//!
//! Must not: do I/O, name tokio, async-nats or sqlx, or panic on any input. Everything here is
//! deterministic so the coordinator can rebuild a run by replaying its results.

pub mod catalog;
pub mod duration;
pub mod exits;
pub mod expr;
pub mod failure;
pub mod limits;
pub mod load;
pub mod msg_id;
pub mod msgpack;
pub mod plan;
pub mod semantics;
pub mod spec;
pub mod subjects;
pub mod tenant;
pub mod trace;
pub mod trigger;
pub mod validate;
pub mod value;
pub mod wire;

pub use catalog::{Catalog, NodeTypeInfo, ParamInfo};
pub use failure::{DeadLetterReason, error_type};
pub use limits::Limits;
pub use plan::{Action, NodeStatus, Outcome, RunOutcome, RunState};
pub use spec::{
    ConcurrencyLimit, Connection, CycleSpec, NodeSpec, Priority, RetryPolicy, WorkflowSpec,
};
pub use validate::{
    CompiledWorkflow, NodeIdx, Problem, Severity, compile, validate, validate_within,
};
pub use value::{Map, Value};

/// Milliseconds since the Unix epoch, or 0 if the clock is before it.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
