//! Every subject, stream and consumer name Kora uses, in one place. All live under a
//! configurable prefix so several installations (and parallel tests) share one NATS server.

/// Names derived from one installation prefix (`kora` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

pub const DEFAULT_PREFIX: &str = "kora";
pub const DEFAULT_QUEUE: &str = "default";

impl Subjects {
    /// `prefix` must be a NATS token: letters, digits, `_` or `-`.
    pub fn new(prefix: &str) -> Result<Self, String> {
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "invalid subject prefix {prefix:?}: use letters, digits, '_' or '-'"
            ));
        }
        Ok(Subjects {
            prefix: prefix.to_string(),
        })
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    fn upper(&self) -> String {
        self.prefix.to_ascii_uppercase().replace('-', "_")
    }

    /// Run requests from any submitter: `<p>.run.submit`.
    pub fn run_submit(&self) -> String {
        format!("{}.run.submit", self.prefix)
    }
    /// Admissions from scheduler to coordinator: `<p>.ledger.admit`.
    pub fn ledger_admit(&self) -> String {
        format!("{}.ledger.admit", self.prefix)
    }
    /// Results the coordinator makes itself (a child run's end, a task it could not send):
    /// `<p>.ledger.result`. Workers may not publish here (docs/security.md).
    pub fn ledger_result(&self) -> String {
        format!("{}.ledger.result", self.prefix)
    }
    /// Node results from the workers of `queue`: `<p>.ledger.result.<queue>`. A NATS user
    /// may publish only its own queues' results, and the coordinator refuses a result for a
    /// node of another queue ([`Subjects::result_queue`]).
    pub fn ledger_result_from(&self, queue: &str) -> String {
        format!("{}.ledger.result.{queue}", self.prefix)
    }
    /// The queue a worker's result subject names; `None` for any other subject.
    pub fn result_queue<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".ledger.result.")
            .filter(|q| !q.is_empty() && !q.contains('.'))
    }
    /// Operator requests to the coordinator (a replayed run to resume): `<p>.ledger.resume`.
    pub fn ledger_resume(&self) -> String {
        format!("{}.ledger.resume", self.prefix)
    }
    /// Operator requests to cancel a run: `<p>.ledger.cancel`.
    pub fn ledger_cancel(&self) -> String {
        format!("{}.ledger.cancel", self.prefix)
    }
    /// Operator requests the coordinator applies (replay, restart, purge): `<p>.ledger.op`.
    pub fn ledger_operation(&self) -> String {
        format!("{}.ledger.op", self.prefix)
    }
    /// Where the coordinator answers one operator request (NATS core, not stored):
    /// `<p>.control.reply.<request_id>`.
    pub fn operation_reply(&self, request_id: &str) -> String {
        format!("{}.control.reply.{request_id}", self.prefix)
    }
    /// Notification to workers to stop a cancelled run's tasks: `<p>.control.cancel.<run_id>`
    /// (NATS core: not stored).
    pub fn cancel_notice(&self, run_id: &str) -> String {
        format!("{}.control.cancel.{run_id}", self.prefix)
    }
    pub fn cancel_notices(&self) -> String {
        format!("{}.control.cancel.*", self.prefix)
    }
    /// Every worker's status every few seconds (NATS core: not stored), for the dashboard's
    /// busy slots: `<p>.control.worker`.
    pub fn worker_status(&self) -> String {
        format!("{}.control.worker", self.prefix)
    }
    pub fn ledger_all(&self) -> String {
        format!("{}.ledger.>", self.prefix)
    }
    /// Tasks for one worker queue: `<p>.task.<queue>`.
    pub fn task(&self, queue: &str) -> String {
        format!("{}.task.{queue}", self.prefix)
    }
    /// High-priority tasks for one queue: `<p>.task.<queue>.high` (taken first).
    pub fn task_high(&self, queue: &str) -> String {
        format!("{}.task.{queue}.high", self.prefix)
    }
    pub fn task_all(&self) -> String {
        format!("{}.task.>", self.prefix)
    }
    /// Run events: `<p>.event.<run_id>.<level>.<kind>`, level `run` or `node`, so a client can
    /// follow only a run's lifecycle (`<p>.event.<run_id>.run.*`).
    pub fn event(&self, run_id: &str, level: &str, kind: &str) -> String {
        format!("{}.event.{run_id}.{level}.{kind}", self.prefix)
    }
    /// A run's node-level events, many to a message ([`crate::wire::NodeEvents`]).
    pub fn node_events(&self, run_id: &str) -> String {
        format!("{}.event.{run_id}.nodes", self.prefix)
    }
    pub fn event_all(&self) -> String {
        format!("{}.event.>", self.prefix)
    }
    /// Dead letters: `<p>.dlq.<source>` where source is `run`, `ledger` or a task queue.
    pub fn dlq(&self, source: &str) -> String {
        format!("{}.dlq.{source}", self.prefix)
    }
    pub fn dlq_all(&self) -> String {
        format!("{}.dlq.>", self.prefix)
    }

    pub fn stream_runs(&self) -> String {
        format!("{}_RUNS", self.upper())
    }
    pub fn stream_ledger(&self) -> String {
        format!("{}_LEDGER", self.upper())
    }
    pub fn stream_tasks(&self) -> String {
        format!("{}_TASKS", self.upper())
    }
    pub fn stream_events(&self) -> String {
        format!("{}_EVENTS", self.upper())
    }
    pub fn stream_dlq(&self) -> String {
        format!("{}_DLQ", self.upper())
    }
    /// Captures the server's max-deliveries advisories for the task stream (tasks whose workers
    /// kept dying), so the coordinator dead-letters them even if it was down when they fired.
    pub fn stream_advisories(&self) -> String {
        format!("{}_ADVISORIES", self.upper())
    }

    /// The stream capturing a subject trigger's messages: `<P>_TRIGGER_<NAME>`.
    pub fn stream_trigger(&self, name: &str) -> String {
        format!(
            "{}_TRIGGER_{}",
            self.upper(),
            name.to_ascii_uppercase().replace('-', "_")
        )
    }

    pub const CONSUMER_SCHEDULER: &'static str = "scheduler";
    /// The durable consumer every scheduler shares on a trigger's stream.
    pub const CONSUMER_TRIGGER: &'static str = "kora-trigger";
    pub const CONSUMER_COORDINATOR: &'static str = "coordinator";
    pub const CONSUMER_ADVISORIES: &'static str = "coordinator-advisories";
    pub fn consumer_workers(queue: &str) -> String {
        format!("workers-{queue}")
    }
    pub fn consumer_workers_high(queue: &str) -> String {
        format!("workers-{queue}-high")
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects {
            prefix: DEFAULT_PREFIX.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_subject_names_its_queue() {
        let s = Subjects::new("kora").unwrap();
        assert_eq!(
            s.result_queue(&s.ledger_result_from("reports")),
            Some("reports")
        );
        assert_eq!(s.result_queue(&s.ledger_result()), None);
        assert_eq!(s.result_queue("kora.ledger.result.a.b"), None);
        assert_eq!(s.result_queue("other.ledger.result.a"), None);
        assert_eq!(s.result_queue("kora.ledger.admit"), None);
    }
}
