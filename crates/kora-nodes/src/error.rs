/// How a node failed, and whether trying again could help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// A failure that may pass on another attempt (a crashed interpreter, a timeout, I/O).
    #[error("{message}")]
    Retryable { error_type: String, message: String },
    /// A failure that will repeat (bad input, a bug in the node's code).
    #[error("{message}")]
    Permanent { error_type: String, message: String },
}

impl NodeError {
    pub fn retryable(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        NodeError::Retryable {
            error_type: error_type.into(),
            message: message.into(),
        }
    }
    pub fn permanent(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        NodeError::Permanent {
            error_type: error_type.into(),
            message: message.into(),
        }
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
}
