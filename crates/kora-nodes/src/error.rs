use std::time::Duration;

/// How a node failed, and whether trying again could help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// A failure that may pass on another attempt (a crashed interpreter, a timeout, I/O).
    /// `retry_after` is the node's own word on when (an HTTP 429 or 503 `Retry-After`): the
    /// coordinator waits at least that long before the next attempt.
    #[error("{message}")]
    Retryable {
        error_type: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A failure that will repeat (bad input, a bug in the node's code).
    #[error("{message}")]
    Permanent { error_type: String, message: String },
}

impl NodeError {
    pub fn retryable(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        NodeError::Retryable {
            error_type: error_type.into(),
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn permanent(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        NodeError::Permanent {
            error_type: error_type.into(),
            message: message.into(),
        }
    }
    /// The same error, asking for the next attempt no sooner than `after` (retryable only).
    pub fn retry_after(mut self, after: Option<Duration>) -> Self {
        if let NodeError::Retryable { retry_after, .. } = &mut self {
            *retry_after = after;
        }
        self
    }
    pub fn error_type(&self) -> &str {
        match self {
            NodeError::Retryable { error_type, .. } | NodeError::Permanent { error_type, .. } => {
                error_type
            }
        }
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, NodeError::Retryable { .. })
    }
    /// When the node asked to be tried again, if it did.
    pub fn wait_hint(&self) -> Option<Duration> {
        match self {
            NodeError::Retryable { retry_after, .. } => *retry_after,
            NodeError::Permanent { .. } => None,
        }
    }
}
