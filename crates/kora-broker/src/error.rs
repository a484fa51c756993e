#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("stream {0} does not exist")]
    StreamNotFound(String),
    #[error("consumer {consumer} on stream {stream} does not exist")]
    ConsumerNotFound { stream: String, consumer: String },
    #[error("no stream takes subject {0}")]
    NoStreamForSubject(String),
    #[error("stream {stream} is full ({limit} messages); retry later")]
    StreamFull { stream: String, limit: u64 },
    #[error("message of {size} bytes exceeds the limit of {limit} bytes on stream {stream}")]
    TooLarge {
        stream: String,
        size: usize,
        limit: usize,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("broker connection: {0}")]
    Connection(String),
    #[error("broker error: {0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
