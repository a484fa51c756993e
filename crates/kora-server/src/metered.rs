//! A [`Broker`] that times every publish of the roles in this process, by what it publishes
//! (`kora_publish_seconds{kind}`, kind = the subject's part after the prefix: `run`, `ledger`,
//! `task`, `event`, `dlq`; `other` for a trigger's own subject), and counts failed publishes.
//! Everything else passes straight through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kora_broker::{
    Broker, Consumer, ConsumerConfig, ConsumerInfo, Outbound, PublishAck, Result, StoredMessage,
    StreamConfig, StreamInfo, SubjectState,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

fn buckets() -> Histogram {
    // 50 µs to ~6.5 s.
    Histogram::new(exponential_buckets(0.000_05, 1.6, 26))
}

#[derive(Debug)]
pub struct PublishMetrics {
    seconds: Family<KindLabels, Histogram, fn() -> Histogram>,
    failures: Family<KindLabels, Counter>,
}

impl PublishMetrics {
    pub fn registered(registry: &mut Registry) -> Self {
        let m = PublishMetrics {
            seconds: Family::new_with_constructor(buckets),
            failures: Family::default(),
        };
        registry.register(
            "publish_seconds",
            "Time for the broker to store a published message (a pipelined batch counts each message at the batch's time), by kind (run, ledger, task, event, dlq, other).",
            m.seconds.clone(),
        );
        registry.register(
            "publish_failures",
            "Publishes the broker refused or did not confirm, by kind.",
            m.failures.clone(),
        );
        m
    }
}

/// Times `inner`'s publishes for subjects under `prefix`.
pub struct Metered {
    inner: Arc<dyn Broker>,
    prefix: String,
    metrics: Arc<PublishMetrics>,
}

impl Metered {
    pub fn new(inner: Arc<dyn Broker>, prefix: &str, metrics: Arc<PublishMetrics>) -> Self {
        Metered {
            inner,
            prefix: format!("{prefix}."),
            metrics,
        }
    }

    fn kind(&self, subject: &str) -> &'static str {
        let kind = subject
            .strip_prefix(&self.prefix)
            .and_then(|rest| rest.split('.').next());
        match kind {
            Some("run") => "run",
            Some("ledger") => "ledger",
            Some("task") => "task",
            Some("event") => "event",
            Some("dlq") => "dlq",
            _ => "other",
        }
    }

    fn observe(&self, kind: &'static str, took: Duration, ok: bool) {
        let labels = KindLabels { kind: kind.into() };
        if ok {
            self.metrics
                .seconds
                .get_or_create(&labels)
                .observe(took.as_secs_f64());
        } else {
            self.metrics.failures.get_or_create(&labels).inc();
        }
    }
}

#[async_trait]
impl Broker for Metered {
    async fn ensure_stream(&self, cfg: &StreamConfig) -> Result<()> {
        self.inner.ensure_stream(cfg).await
    }
    async fn ensure_consumer(&self, stream: &str, cfg: &ConsumerConfig) -> Result<()> {
        self.inner.ensure_consumer(stream, cfg).await
    }
    async fn publish(&self, msg: Outbound) -> Result<PublishAck> {
        let kind = self.kind(&msg.subject);
        let began = Instant::now();
        let r = self.inner.publish(msg).await;
        self.observe(kind, began.elapsed(), r.is_ok());
        r
    }
    async fn publish_many(&self, msgs: Vec<Outbound>) -> Vec<Result<PublishAck>> {
        let kinds: Vec<&'static str> = msgs.iter().map(|m| self.kind(&m.subject)).collect();
        let began = Instant::now();
        let acks = self.inner.publish_many(msgs).await;
        let took = began.elapsed();
        for (kind, r) in kinds.into_iter().zip(&acks) {
            self.observe(kind, took, r.is_ok());
        }
        acks
    }
    async fn notify(&self, subject: &str, payload: Vec<u8>) -> Result<()> {
        self.inner.notify(subject, payload).await
    }
    async fn listen(&self, pattern: &str) -> Result<futures::stream::BoxStream<'static, Vec<u8>>> {
        self.inner.listen(pattern).await
    }
    async fn consumer(&self, stream: &str, durable: &str) -> Result<Arc<dyn Consumer>> {
        self.inner.consumer(stream, durable).await
    }
    async fn consumer_buffered(
        &self,
        stream: &str,
        durable: &str,
        buffer: usize,
    ) -> Result<Arc<dyn Consumer>> {
        self.inner.consumer_buffered(stream, durable, buffer).await
    }
    async fn get_message(&self, stream: &str, sequence: u64) -> Result<Option<StoredMessage>> {
        self.inner.get_message(stream, sequence).await
    }
    async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool> {
        self.inner.delete_message(stream, sequence).await
    }
    async fn stream_info(&self, stream: &str) -> Result<StreamInfo> {
        self.inner.stream_info(stream).await
    }
    async fn consumer_info(&self, stream: &str, durable: &str) -> Result<ConsumerInfo> {
        self.inner.consumer_info(stream, durable).await
    }
    async fn consumer_exists(&self, stream: &str, durable: &str) -> Result<()> {
        self.inner.consumer_exists(stream, durable).await
    }
    async fn subjects(
        &self,
        stream: &str,
        filter: &str,
        limit: usize,
    ) -> Result<Vec<SubjectState>> {
        self.inner.subjects(stream, filter, limit).await
    }
    async fn delete_consumer(&self, stream: &str, durable: &str) -> Result<()> {
        self.inner.delete_consumer(stream, durable).await
    }
    async fn delete_stream(&self, stream: &str) -> Result<()> {
        self.inner.delete_stream(stream).await
    }
    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
}
