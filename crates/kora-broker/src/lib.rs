//! The message broker seen by Kora's roles: JetStream's semantics behind one trait.
//!
//! Owns: [`Broker`] / [`Consumer`] / [`Delivery`] (publish with a dedup id; durable pull
//! consumers shared by many processes; ack, nak with delay, in-progress, term; redelivery after
//! ack-wait; max deliveries signalled by a JetStream-style advisory; raw get and delete for
//! replay), the in-memory [`memory::MemoryBroker`] used by embedded mode, and the contract suite
//! ([`testing`], feature `test-util`) every implementation must pass.
//!
//! Must not: know what a workflow, run or node is. Payloads are opaque bytes here; the only
//! Kora knowledge is [`topology`]: which streams and consumers exist, by name.

mod error;
pub mod memory;
pub mod nats;
pub mod nats_auth;
mod nats_tls;
pub mod permissions;
mod subject;
#[cfg(any(test, feature = "test-util"))]
pub mod test_ca;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod topology;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use bytes::Bytes;

pub use error::{Error, Result};
pub use subject::subject_matches;

/// How long a stream keeps messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep until limits (age, count) remove them.
    Limits,
    /// A message is removed when a consumer acks or terminates it.
    WorkQueue,
}

#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub name: String,
    pub subjects: Vec<String>,
    pub retention: Retention,
    /// Window in which a repeated message id is a duplicate.
    pub duplicate_window: Duration,
    pub max_age: Option<Duration>,
    /// Publishes beyond this count are refused (discard-new), so producers feel backpressure.
    pub max_msgs: Option<u64>,
    /// Beyond this many payload bytes the oldest messages are removed (discard-old): for a
    /// `Limits` stream without `max_msgs`.
    pub max_bytes: Option<u64>,
    pub max_msg_size: Option<usize>,
    /// Copies kept by a clustered server (1 or 3; 3 survives the loss of one node).
    pub replicas: usize,
}

impl StreamConfig {
    pub fn new(name: impl Into<String>, subjects: Vec<String>, retention: Retention) -> Self {
        StreamConfig {
            name: name.into(),
            subjects,
            retention,
            duplicate_window: Duration::from_secs(120),
            max_age: None,
            max_msgs: None,
            max_bytes: None,
            max_msg_size: None,
            replicas: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub durable: String,
    pub filter_subject: Option<String>,
    /// Time a delivery may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// Deliveries before the broker gives up and signals max-deliveries; 0 means unlimited.
    pub max_deliver: u32,
    /// Unacknowledged deliveries allowed across all fetchers of this consumer.
    pub max_ack_pending: usize,
    /// First stream sequence to deliver (JetStream's `DeliverPolicy::ByStartSequence`); `None`
    /// delivers everything in the stream.
    pub start_sequence: Option<u64>,
}

impl ConsumerConfig {
    pub fn new(durable: impl Into<String>) -> Self {
        ConsumerConfig {
            durable: durable.into(),
            filter_subject: None,
            ack_wait: Duration::from_secs(30),
            max_deliver: 0,
            max_ack_pending: 10_000,
            start_sequence: None,
        }
    }
}

/// A message to publish. `msg_id` makes a re-publish within the duplicate window a no-op.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub subject: String,
    pub payload: Bytes,
    pub msg_id: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Outbound {
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Outbound {
            subject: subject.into(),
            payload: payload.into(),
            msg_id: None,
            headers: Vec::new(),
        }
    }
    pub fn msg_id(mut self, id: impl Into<String>) -> Self {
        self.msg_id = Some(id.into());
        self
    }
    pub fn header(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishAck {
    pub stream: String,
    pub sequence: u64,
    pub duplicate: bool,
}

/// A message as stored in a stream (for replay and inspection).
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub subject: String,
    pub sequence: u64,
    pub payload: Bytes,
    pub headers: Vec<(String, String)>,
    pub published_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryInfo {
    pub stream_sequence: u64,
    /// 1 on first delivery.
    pub delivered: u32,
    pub published_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamInfo {
    pub messages: u64,
    /// The oldest stored message's sequence (`last_sequence + 1` when the stream is empty).
    pub first_sequence: u64,
    pub last_sequence: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerInfo {
    /// Messages not yet delivered.
    pub num_pending: u64,
    /// Delivered and not yet acknowledged.
    pub num_ack_pending: u64,
    /// When the oldest message not yet delivered was published (ms since the epoch); `None`
    /// when nothing waits. Its age is how long the consumer's backlog has been waiting.
    pub oldest_pending_ms: Option<u64>,
}

/// The messages a stream holds on one subject: for a work queue, what waits or runs there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectState {
    pub subject: String,
    pub messages: u64,
    /// When the oldest of them was published (ms since the epoch).
    pub oldest_ms: u64,
}

/// The subject on which a broker reports that a message reached its consumer's max deliveries
/// (JetStream's advisory). The body is JSON with `stream`, `consumer`, `stream_seq`, `deliveries`.
pub fn max_deliveries_advisory(stream: &str, consumer: &str) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}")
}

/// The subject on which a broker reports a terminated message (JetStream's advisory).
pub fn terminated_advisory(stream: &str, consumer: &str) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{stream}.{consumer}")
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Creates the stream, or updates it to `cfg`. Idempotent.
    async fn ensure_stream(&self, cfg: &StreamConfig) -> Result<()>;
    /// Creates the durable consumer, or updates it to `cfg`. Idempotent.
    async fn ensure_consumer(&self, stream: &str, cfg: &ConsumerConfig) -> Result<()>;
    /// Publishes and waits for the broker to store it.
    async fn publish(&self, msg: Outbound) -> Result<PublishAck>;
    /// Publishes many messages with their acknowledgements pipelined; results are in order.
    async fn publish_many(&self, msgs: Vec<Outbound>) -> Vec<Result<PublishAck>> {
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            out.push(self.publish(m).await);
        }
        out
    }
    /// Sends a notification: delivered at most once to every current listener of a matching
    /// pattern, never stored (NATS core publish). For signals whose loss is harmless or
    /// covered otherwise, such as "stop the tasks of this cancelled run".
    async fn notify(&self, subject: &str, payload: Vec<u8>) -> Result<()>;
    /// Notifications on subjects matching `pattern` (`*` and `>` wildcards), from now on.
    async fn listen(&self, pattern: &str) -> Result<futures::stream::BoxStream<'static, Vec<u8>>>;
    /// A handle on a durable consumer. Many handles (in many processes) share its messages.
    async fn consumer(&self, stream: &str, durable: &str) -> Result<Arc<dyn Consumer>>;
    /// A handle that requests up to `buffer` messages ahead of use (a network broker's pull
    /// batch): large for a role that records results in big batches, a worker's free slots for
    /// a worker, so it does not hoard tasks another worker could run. Brokers without such a
    /// buffer return a plain handle.
    async fn consumer_buffered(
        &self,
        stream: &str,
        durable: &str,
        buffer: usize,
    ) -> Result<Arc<dyn Consumer>> {
        let _ = buffer;
        self.consumer(stream, durable).await
    }
    async fn get_message(&self, stream: &str, sequence: u64) -> Result<Option<StoredMessage>>;
    async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool>;
    async fn stream_info(&self, stream: &str) -> Result<StreamInfo>;
    async fn consumer_info(&self, stream: &str, durable: &str) -> Result<ConsumerInfo>;
    /// Whether the durable consumer exists ([`Error::ConsumerNotFound`] if not), asking no more
    /// than that: a NATS user allowed to see the consumer but not the stream's messages can.
    async fn consumer_exists(&self, stream: &str, durable: &str) -> Result<()> {
        self.consumer_info(stream, durable).await.map(|_| ())
    }
    /// The subjects matching `filter` that hold messages in `stream`, each with its message
    /// count and oldest message, in subject order; at most `limit` of them.
    async fn subjects(&self, stream: &str, filter: &str, limit: usize)
    -> Result<Vec<SubjectState>>;
    /// Removes a durable consumer; removing a missing one is not an error.
    async fn delete_consumer(&self, stream: &str, durable: &str) -> Result<()>;
    /// Removes a stream with its messages and consumers; removing a missing one is not an error.
    async fn delete_stream(&self, stream: &str) -> Result<()>;
    /// Makes sure every acknowledgement sent so far has reached the broker.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
pub trait Consumer: Send + Sync {
    /// Waits up to `wait` for at least one message and returns at most `max`.
    /// An empty batch means nothing arrived in time.
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>>;
}

/// How a delivery is answered. Implemented by each broker.
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self) -> Result<()>;
    /// Redeliver after `delay` (immediately when `None`).
    async fn nak(&self, delay: Option<Duration>) -> Result<()>;
    /// Still working: restart the ack-wait timer.
    async fn progress(&self) -> Result<()>;
    /// Never deliver again.
    async fn term(&self, reason: &str) -> Result<()>;
}

/// One delivered message and the means to answer it.
pub struct Delivery {
    pub subject: String,
    pub payload: Bytes,
    pub headers: Vec<(String, String)>,
    pub info: DeliveryInfo,
    pub acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("info", &self.info)
            .finish()
    }
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub async fn ack(&self) -> Result<()> {
        self.acker.ack().await
    }
    pub async fn nak(&self, delay: Option<Duration>) -> Result<()> {
        self.acker.nak(delay).await
    }
    pub async fn progress(&self) -> Result<()> {
        self.acker.progress().await
    }
    pub async fn term(&self, reason: &str) -> Result<()> {
        self.acker.term(reason).await
    }
}
