//! Message ids: JetStream drops a second publish with the same id inside its duplicate window,
//! so every message that may be published twice (a retry, a crash, two instances) carries an id
//! derived from what it is. They are made here only, so two publishers of the same thing always
//! agree.

/// A run request: `run:<run_id>`.
pub fn run(run_id: &str) -> String {
    format!("run:{run_id}")
}

/// A scheduler's admission of a run: `admit:<run_id>`.
pub fn admission(run_id: &str) -> String {
    format!("admit:{run_id}")
}

/// A worker's result for a task: `result:<task_id>`.
pub fn result(task_id: &str) -> String {
    format!("result:{task_id}")
}

/// The failure the coordinator reports for a task its workers kept dying on: the same id as
/// a worker's result (`result:<task_id>`), so the stream holds one result per task within the
/// duplicate window, whichever came first (a real result of the last delivery, or the loss).
pub fn lost(task_id: &str) -> String {
    result(task_id)
}

/// Namespace of child run ids (UUIDv5 of the parent attempt's task id).
const CHILD_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b6f_7261_0000_4000_8000_6368_696c_6421);

/// The run id of the child a WorkflowNode's attempt `task_id` starts: derived from the
/// attempt, so every re-send starts the same run and a reader can find the child from it.
pub fn child_run_id(task_id: &str) -> String {
    uuid::Uuid::new_v5(&CHILD_NAMESPACE, task_id.as_bytes()).to_string()
}

/// A child run's outcome reported to its parent attempt: `child:<child_run_id>`.
pub fn child_result(child_run_id: &str) -> String {
    format!("child:{child_run_id}")
}

/// A request to cancel a run (an operator's, or a parent's for its child): `cancel:<run_id>`.
pub fn cancel(run_id: &str) -> String {
    format!("cancel:{run_id}")
}

/// The deadline of a run passing: `deadline:<run_id>`.
pub fn deadline(run_id: &str) -> String {
    format!("deadline:{run_id}")
}

/// A run event: `event:<event_id>`.
pub fn event(event_id: &str) -> String {
    format!("event:{event_id}")
}

/// A run's node events `first..=last` in one message: `events:<run_id>:<first>-<last>`.
pub fn node_events(run_id: &str, first: u64, last: u64) -> String {
    format!("events:{run_id}:{first}-{last}")
}

/// An operator's request to the coordinator (replay, restart, purge): `op:<request_id>`.
pub fn operation(request_id: &str) -> String {
    format!("op:{request_id}")
}

/// A message moved to the dead-letter stream: `dlq:<subject>:<stream_sequence>`.
pub fn poison(subject: &str, stream_sequence: u64) -> String {
    format!("dlq:{subject}:{stream_sequence}")
}
