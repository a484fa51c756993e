//! How failures are named: the error types Kora itself reports (nodes and user code report their
//! own, Python-style, e.g. `ZeroDivisionError`), and why an attempt was dead-lettered.

/// Error types Kora reports, as they appear in results, the ledger and `kora dlq`.
pub mod error_type {
    /// The task was delivered `tasks.max_deliver` times and its worker died each time.
    pub const WORKER_LOST: &str = "WorkerLost";
    /// The node ran past its `timeout_secs` (or a node's own timeout).
    pub const TIMEOUT: &str = "TimeoutError";
    /// The node's inputs encode larger than a task message may be.
    pub const TASK_TOO_LARGE: &str = "TaskTooLarge";
    /// The node's output encodes larger than a result message may be.
    pub const OUTPUT_TOO_LARGE: &str = "OutputTooLarge";
    /// The node's output holds what the ledger cannot store (a NUL character).
    pub const INVALID_OUTPUT: &str = "InvalidOutput";
    /// The task could not be encoded.
    pub const ENCODE: &str = "EncodeError";
    /// A WorkflowNode's child workflow cannot start (it does not load or validate).
    pub const CHILD_WORKFLOW: &str = "ChildWorkflowError";
    /// A WorkflowNode's child run failed, was cancelled or was rejected.
    pub const CHILD_WORKFLOW_FAILED: &str = "ChildWorkflowFailed";
    /// The run's `deadline_secs` passed.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// No worker of the queue knows the node's type.
    pub const UNKNOWN_NODE_TYPE: &str = "UnknownNodeType";
    /// A node's configuration or input is unusable.
    pub const CONFIG: &str = "ConfigError";
    pub const VALUE: &str = "ValueError";
    /// A path outside the data root, or a refused operation.
    pub const PERMISSION: &str = "PermissionError";
    /// A secret reference that cannot be resolved.
    pub const SECRET: &str = "SecretError";
    /// The worker's machinery failed (an interpreter died): retried.
    pub const WORKER: &str = "WorkerError";
    pub const RUNTIME: &str = "RuntimeError";
    pub const CONNECTION: &str = "ConnectionError";
    pub const DATABASE: &str = "DatabaseError";
}

/// Why an attempt was dead-lettered: stored with it (`dlq_reason`) and filtered on by
/// `kora dlq list --reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// Its workers died `tasks.max_deliver` times in a row.
    WorkerLost,
    /// Its last attempt timed out.
    Timeout,
    /// Its last attempt failed with a retryable error.
    RetriesExhausted,
    /// It failed with a permanent error (an exception in user code, bad configuration).
    PermanentError,
    /// Its task could not be sent: the inputs were too large.
    TaskTooLarge,
    /// Its task could not be encoded.
    EncodeError,
    /// Its child workflow could not start.
    ChildWorkflowError,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 7] = [
        DeadLetterReason::WorkerLost,
        DeadLetterReason::Timeout,
        DeadLetterReason::RetriesExhausted,
        DeadLetterReason::PermanentError,
        DeadLetterReason::TaskTooLarge,
        DeadLetterReason::EncodeError,
        DeadLetterReason::ChildWorkflowError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::WorkerLost => "worker_lost",
            DeadLetterReason::Timeout => "timeout",
            DeadLetterReason::RetriesExhausted => "retries_exhausted",
            DeadLetterReason::PermanentError => "permanent_error",
            DeadLetterReason::TaskTooLarge => error_type::TASK_TOO_LARGE,
            DeadLetterReason::EncodeError => error_type::ENCODE,
            DeadLetterReason::ChildWorkflowError => error_type::CHILD_WORKFLOW,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The reason for a failed attempt that gets no retry.
    pub fn of_failure(error_type: &str, retryable: bool) -> Self {
        match error_type {
            error_type::WORKER_LOST => DeadLetterReason::WorkerLost,
            error_type::TIMEOUT => DeadLetterReason::Timeout,
            _ if retryable => DeadLetterReason::RetriesExhausted,
            _ => DeadLetterReason::PermanentError,
        }
    }

    /// The reason for a task that could not be sent, by its error type.
    pub fn of_undeliverable(error_type: &str) -> Self {
        match error_type {
            error_type::TASK_TOO_LARGE => DeadLetterReason::TaskTooLarge,
            error_type::CHILD_WORKFLOW => DeadLetterReason::ChildWorkflowError,
            _ => DeadLetterReason::EncodeError,
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_classify() {
        for r in DeadLetterReason::ALL {
            assert_eq!(DeadLetterReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(
            DeadLetterReason::of_failure(error_type::TIMEOUT, true),
            DeadLetterReason::Timeout
        );
        assert_eq!(
            DeadLetterReason::of_failure("ZeroDivisionError", false),
            DeadLetterReason::PermanentError
        );
        assert_eq!(
            DeadLetterReason::of_failure(error_type::CONNECTION, true),
            DeadLetterReason::RetriesExhausted
        );
    }
}
