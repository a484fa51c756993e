//! An in-process broker with JetStream's semantics, for embedded mode (`kora run`).
//! It keeps messages in memory only: a crash loses them, which embedded mode accepts.

use std::collections::{BTreeMap, VecDeque};

use foldhash::{HashMap, HashMapExt};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{
    Acker, Broker, Consumer, ConsumerConfig, ConsumerInfo, Delivery, DeliveryInfo, Error, Outbound,
    PublishAck, Result, Retention, StoredMessage, StreamConfig, StreamInfo, SubjectState,
    max_deliveries_advisory, subject_matches, terminated_advisory,
};

/// A notification pattern and where to send what matches it.
type Listener = (String, tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

/// The in-memory broker. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    /// Notification listeners: pattern and where to send.
    listeners: Arc<Mutex<Vec<Listener>>>,
    streams: Arc<Mutex<HashMap<String, Arc<StreamCell>>>>,
    /// Subject -> stream, filled on first use and cleared when streams change.
    routes: Arc<Mutex<HashMap<String, Option<Arc<StreamCell>>>>>,
}

struct StreamCell {
    state: Mutex<StreamState>,
    /// Woken on every publish, nak and ack-pending change.
    notify: Notify,
}

struct StreamState {
    cfg: StreamConfig,
    msgs: BTreeMap<u64, StoredMessage>,
    /// The payload bytes of `msgs`.
    bytes: u64,
    last_seq: u64,
    /// Message ids seen within the duplicate window, by digest, and their expiry queue.
    dedup: HashMap<u128, u64>,
    dedup_order: VecDeque<(Instant, u128)>,
    digest: Digest,
    consumers: HashMap<String, ConsumerState>,
    /// Advisories produced under the lock, published after it is released.
    advisories: Vec<Outbound>,
}

struct ConsumerState {
    cfg: ConsumerConfig,
    /// Next stream sequence never delivered to this consumer.
    next_new: u64,
    /// Delivered, not yet acknowledged: seq -> (deliveries, redeliver at).
    pending: BTreeMap<u64, (u32, Instant)>,
    /// No pending entry falls due before this. After acks it may be earlier than the true
    /// minimum; the next scan then recomputes it.
    next_due: Option<Instant>,
}

impl ConsumerState {
    fn hold(&mut self, seq: u64, delivered: u32, until: Instant) {
        self.pending.insert(seq, (delivered, until));
        self.next_due = Some(self.next_due.map_or(until, |d| d.min(until)));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated in a way that matters
    // more than losing the broker, so recover the guard.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl MemoryBroker {
    pub fn new() -> Self {
        Self::default()
    }

    fn cell(&self, stream: &str) -> Result<Arc<StreamCell>> {
        lock(&self.streams)
            .get(stream)
            .cloned()
            .ok_or_else(|| Error::StreamNotFound(stream.into()))
    }

    fn route(&self, subject: &str) -> Option<Arc<StreamCell>> {
        if let Some(hit) = lock(&self.routes).get(subject) {
            return hit.clone();
        }
        let found = lock(&self.streams)
            .values()
            .find(|c| {
                lock(&c.state)
                    .cfg
                    .subjects
                    .iter()
                    .any(|p| subject_matches(p, subject))
            })
            .cloned();
        let mut routes = lock(&self.routes);
        if routes.len() > 100_000 {
            routes.clear();
        }
        routes.insert(subject.to_string(), found.clone());
        found
    }

    fn publish_sync(&self, msg: Outbound) -> Result<PublishAck> {
        let cell = self
            .route(&msg.subject)
            .ok_or_else(|| Error::NoStreamForSubject(msg.subject.clone()))?;
        let ack = {
            let mut st = lock(&cell.state);
            st.publish(msg)?
        };
        cell.notify.notify_waiters();
        Ok(ack)
    }

    fn flush_advisories(&self, cell: &StreamCell) {
        let advisories = std::mem::take(&mut lock(&cell.state).advisories);
        for a in advisories {
            // An advisory nobody captures is dropped, as on a NATS server.
            let _ = self.publish_sync(a);
        }
    }
}

/// A message id's 128-bit digest: two SipHash-1-3 with independent random keys. A stream
/// keeps ids for its duplicate window (ten minutes), a few per node of every run: as digests
/// they take 16 bytes each instead of the id's own allocation. Keyed at random per stream,
/// so no one can choose ids that collide; by chance, two of a million ids collide with a
/// probability near 10^-27.
#[derive(Default)]
struct Digest(std::hash::RandomState, std::hash::RandomState);

impl Digest {
    fn of(&self, id: &str) -> u128 {
        use std::hash::BuildHasher;
        (u128::from(self.0.hash_one(id)) << 64) | u128::from(self.1.hash_one(id))
    }
}

/// Deliveries taken (message, delivery count) and when the next pending one falls due.
type Taken = (Vec<(StoredMessage, u32)>, Option<Instant>);

impl StreamState {
    fn publish(&mut self, msg: Outbound) -> Result<PublishAck> {
        let now = Instant::now();
        while let Some((t, _)) = self.dedup_order.front() {
            if now.duration_since(*t) <= self.cfg.duplicate_window {
                break;
            }
            if let Some((_, id)) = self.dedup_order.pop_front() {
                self.dedup.remove(&id);
            }
        }
        let digest = msg.msg_id.as_deref().map(|id| self.digest.of(id));
        if let Some(id) = digest
            && let Some(&seq) = self.dedup.get(&id)
        {
            return Ok(PublishAck {
                stream: self.cfg.name.clone(),
                sequence: seq,
                duplicate: true,
            });
        }
        if let Some(limit) = self.cfg.max_msg_size
            && msg.payload.len() > limit
        {
            return Err(Error::TooLarge {
                stream: self.cfg.name.clone(),
                size: msg.payload.len(),
                limit,
            });
        }
        self.expire(now_ms());
        if let Some(limit) = self.cfg.max_msgs
            && self.msgs.len() as u64 >= limit
        {
            return Err(Error::StreamFull {
                stream: self.cfg.name.clone(),
                limit,
            });
        }
        self.last_seq += 1;
        let seq = self.last_seq;
        if let Some(id) = digest {
            self.dedup.insert(id, seq);
            self.dedup_order.push_back((now, id));
        }
        self.bytes += msg.payload.len() as u64;
        self.msgs.insert(
            seq,
            StoredMessage {
                subject: msg.subject,
                sequence: seq,
                payload: msg.payload,
                headers: msg.headers,
                published_ms: now_ms(),
            },
        );
        self.trim();
        Ok(PublishAck {
            stream: self.cfg.name.clone(),
            sequence: seq,
            duplicate: false,
        })
    }

    fn remove(&mut self, seq: u64) -> Option<StoredMessage> {
        let m = self.msgs.remove(&seq)?;
        self.bytes = self.bytes.saturating_sub(m.payload.len() as u64);
        Some(m)
    }

    /// Removes the oldest messages while the stream holds more than `max_bytes` (the newest
    /// message stays, whatever its size).
    fn trim(&mut self) {
        let Some(max) = self.cfg.max_bytes else {
            return;
        };
        while self.bytes > max && self.msgs.len() > 1 {
            let Some(&seq) = self.msgs.keys().next() else {
                return;
            };
            self.remove(seq);
        }
    }

    fn expire(&mut self, now: u64) {
        let Some(age) = self.cfg.max_age else { return };
        let cutoff = now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
        while let Some((&seq, m)) = self.msgs.first_key_value() {
            if m.published_ms >= cutoff {
                break;
            }
            self.remove(seq);
        }
    }

    fn remove_if_workqueue(&mut self, seq: u64) {
        if self.cfg.retention == Retention::WorkQueue {
            self.remove(seq);
        }
    }

    /// Takes up to `max` deliveries for `durable`; returns them and the next instant at which
    /// a pending message would become redeliverable.
    fn take(&mut self, durable: &str, max: usize) -> Result<Taken> {
        let now = Instant::now();
        let stream_name = self.cfg.name.clone();
        let StreamState {
            msgs,
            consumers,
            advisories,
            ..
        } = self;
        let c = consumers
            .get_mut(durable)
            .ok_or_else(|| Error::ConsumerNotFound {
                stream: stream_name.clone(),
                consumer: durable.into(),
            })?;
        let mut out = Vec::new();
        // Redeliveries first: expired ack-waits and naks whose delay has passed. Scan only when
        // something can be due.
        let scan = c.next_due.is_some_and(|d| d <= now);
        let due: Vec<u64> = if scan {
            c.pending
                .iter()
                .filter(|(_, (_, at))| *at <= now)
                .map(|(s, _)| *s)
                .collect()
        } else {
            Vec::new()
        };
        for seq in due {
            let Some(&(delivered, _)) = c.pending.get(&seq) else {
                continue;
            };
            let Some(m) = msgs.get(&seq) else {
                c.pending.remove(&seq);
                continue;
            };
            if c.cfg.max_deliver > 0 && delivered >= c.cfg.max_deliver {
                // As JetStream: the message stays in the stream and an advisory is emitted.
                c.pending.remove(&seq);
                let body = format!(
                    r#"{{"type":"io.nats.jetstream.advisory.v1.max_deliver","stream":"{stream_name}","consumer":"{durable}","stream_seq":{seq},"deliveries":{delivered}}}"#
                );
                advisories.push(Outbound::new(
                    max_deliveries_advisory(&stream_name, durable),
                    body,
                ));
                continue;
            }
            if out.len() >= max {
                break;
            }
            c.pending.insert(seq, (delivered + 1, now + c.cfg.ack_wait));
            out.push((m.clone(), delivered + 1));
        }
        if scan {
            c.next_due = c.pending.values().map(|(_, at)| *at).min();
        }
        // Then new messages, within max_ack_pending.
        let filter = c.cfg.filter_subject.clone();
        while out.len() < max && c.pending.len() < c.cfg.max_ack_pending {
            let Some((&seq, m)) = msgs.range(c.next_new..).next() else {
                break;
            };
            c.next_new = seq + 1;
            if filter
                .as_deref()
                .is_some_and(|f| !subject_matches(f, &m.subject))
            {
                continue;
            }
            c.hold(seq, 1, now + c.cfg.ack_wait);
            out.push((m.clone(), 1));
        }
        Ok((out, c.next_due))
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn ensure_stream(&self, cfg: &StreamConfig) -> Result<()> {
        if cfg.name.is_empty() || cfg.subjects.is_empty() {
            return Err(Error::Config(
                "a stream needs a name and at least one subject".into(),
            ));
        }
        lock(&self.routes).clear();
        let mut streams = lock(&self.streams);
        for (name, other) in streams.iter() {
            if name == &cfg.name {
                continue;
            }
            let theirs = &lock(&other.state).cfg.subjects;
            if cfg.subjects.iter().any(|s| {
                theirs
                    .iter()
                    .any(|t| subject_matches(s, t) || subject_matches(t, s))
            }) {
                return Err(Error::Config(format!(
                    "subjects of stream {} overlap with stream {name}",
                    cfg.name
                )));
            }
        }
        match streams.get(&cfg.name) {
            Some(cell) => lock(&cell.state).cfg = cfg.clone(),
            None => {
                let state = StreamState {
                    cfg: cfg.clone(),
                    msgs: BTreeMap::new(),
                    bytes: 0,
                    last_seq: 0,
                    dedup: HashMap::new(),
                    dedup_order: VecDeque::new(),
                    digest: Digest::default(),
                    consumers: HashMap::new(),
                    advisories: Vec::new(),
                };
                streams.insert(
                    cfg.name.clone(),
                    Arc::new(StreamCell {
                        state: Mutex::new(state),
                        notify: Notify::new(),
                    }),
                );
            }
        }
        Ok(())
    }

    async fn ensure_consumer(&self, stream: &str, cfg: &ConsumerConfig) -> Result<()> {
        let cell = self.cell(stream)?;
        let mut st = lock(&cell.state);
        if st.cfg.retention == Retention::WorkQueue {
            let overlapping = st.consumers.iter().any(|(name, c)| {
                name != &cfg.durable
                    && match (&c.cfg.filter_subject, &cfg.filter_subject) {
                        (Some(a), Some(b)) => subject_matches(a, b) || subject_matches(b, a),
                        _ => true,
                    }
            });
            if overlapping {
                return Err(Error::Config(format!(
                    "consumer {} overlaps another consumer's filter on work-queue stream {stream}",
                    cfg.durable
                )));
            }
        }
        match st.consumers.get_mut(&cfg.durable) {
            Some(c) => c.cfg = cfg.clone(),
            None => {
                let first = match cfg.start_sequence {
                    Some(seq) => seq.max(1),
                    None => st
                        .msgs
                        .first_key_value()
                        .map_or(st.last_seq + 1, |(s, _)| *s),
                };
                st.consumers.insert(
                    cfg.durable.clone(),
                    ConsumerState {
                        cfg: cfg.clone(),
                        next_new: first,
                        pending: BTreeMap::new(),
                        next_due: None,
                    },
                );
            }
        }
        Ok(())
    }

    async fn publish(&self, msg: Outbound) -> Result<PublishAck> {
        self.publish_sync(msg)
    }

    async fn publish_many(&self, msgs: Vec<Outbound>) -> Vec<Result<PublishAck>> {
        msgs.into_iter().map(|m| self.publish_sync(m)).collect()
    }

    async fn notify(&self, subject: &str, payload: Vec<u8>) -> Result<()> {
        lock(&self.listeners).retain(|(pattern, tx)| {
            !subject_matches(pattern, subject) || tx.send(payload.clone()).is_ok()
        });
        Ok(())
    }

    async fn listen(&self, pattern: &str) -> Result<futures::stream::BoxStream<'static, Vec<u8>>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        lock(&self.listeners).push((pattern.to_string(), tx));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|m| (m, rx))
        })))
    }

    async fn consumer(&self, stream: &str, durable: &str) -> Result<Arc<dyn Consumer>> {
        let cell = self.cell(stream)?;
        if !lock(&cell.state).consumers.contains_key(durable) {
            return Err(Error::ConsumerNotFound {
                stream: stream.into(),
                consumer: durable.into(),
            });
        }
        Ok(Arc::new(MemoryConsumer {
            broker: self.clone(),
            cell,
            durable: durable.into(),
        }))
    }

    async fn get_message(&self, stream: &str, sequence: u64) -> Result<Option<StoredMessage>> {
        Ok(lock(&self.cell(stream)?.state).msgs.get(&sequence).cloned())
    }

    async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool> {
        let cell = self.cell(stream)?;
        let mut st = lock(&cell.state);
        let removed = st.remove(sequence).is_some();
        for c in st.consumers.values_mut() {
            c.pending.remove(&sequence);
        }
        Ok(removed)
    }

    async fn stream_info(&self, stream: &str) -> Result<StreamInfo> {
        let cell = self.cell(stream)?;
        let mut st = lock(&cell.state);
        st.expire(now_ms());
        Ok(StreamInfo {
            messages: st.msgs.len() as u64,
            first_sequence: st
                .msgs
                .first_key_value()
                .map_or(st.last_seq + 1, |(s, _)| *s),
            last_sequence: st.last_seq,
        })
    }

    async fn consumer_info(&self, stream: &str, durable: &str) -> Result<ConsumerInfo> {
        let cell = self.cell(stream)?;
        let st = lock(&cell.state);
        let c = st
            .consumers
            .get(durable)
            .ok_or_else(|| Error::ConsumerNotFound {
                stream: stream.into(),
                consumer: durable.into(),
            })?;
        let mut waiting = st.msgs.range(c.next_new..).filter(|(_, m)| {
            c.cfg
                .filter_subject
                .as_deref()
                .is_none_or(|f| subject_matches(f, &m.subject))
        });
        let oldest_pending_ms = waiting.next().map(|(_, m)| m.published_ms);
        let num_pending = u64::from(oldest_pending_ms.is_some()) + waiting.count() as u64;
        Ok(ConsumerInfo {
            num_pending,
            num_ack_pending: c.pending.len() as u64,
            oldest_pending_ms,
        })
    }

    async fn subjects(
        &self,
        stream: &str,
        filter: &str,
        limit: usize,
    ) -> Result<Vec<SubjectState>> {
        let cell = self.cell(stream)?;
        let st = lock(&cell.state);
        let mut by_subject: BTreeMap<&str, SubjectState> = BTreeMap::new();
        // Messages are in sequence order: the first seen on a subject is its oldest.
        for m in st.msgs.values() {
            if !subject_matches(filter, &m.subject) {
                continue;
            }
            by_subject
                .entry(m.subject.as_str())
                .or_insert_with(|| SubjectState {
                    subject: m.subject.clone(),
                    messages: 0,
                    oldest_ms: m.published_ms,
                })
                .messages += 1;
        }
        Ok(by_subject.into_values().take(limit).collect())
    }

    async fn delete_consumer(&self, stream: &str, durable: &str) -> Result<()> {
        let cell = self.cell(stream)?;
        lock(&cell.state).consumers.remove(durable);
        Ok(())
    }

    async fn delete_stream(&self, stream: &str) -> Result<()> {
        if let Some(cell) = lock(&self.streams).remove(stream) {
            cell.notify.notify_waiters();
        }
        lock(&self.routes).clear();
        Ok(())
    }
}

struct MemoryConsumer {
    broker: MemoryBroker,
    cell: Arc<StreamCell>,
    durable: String,
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let give_up = Instant::now() + wait;
        loop {
            let notified = self.cell.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (taken, next_deadline) = lock(&self.cell.state).take(&self.durable, max.max(1))?;
            self.broker.flush_advisories(&self.cell);
            if !taken.is_empty() {
                let stream = lock(&self.cell.state).cfg.name.clone();
                return Ok(taken
                    .into_iter()
                    .map(|(m, delivered)| Delivery {
                        info: DeliveryInfo {
                            stream_sequence: m.sequence,
                            delivered,
                            published_ms: m.published_ms,
                        },
                        acker: Box::new(MemoryAcker {
                            broker: self.broker.clone(),
                            cell: Arc::clone(&self.cell),
                            stream: stream.clone(),
                            durable: self.durable.clone(),
                            seq: m.sequence,
                            delivered,
                        }),
                        subject: m.subject,
                        payload: m.payload,
                        headers: m.headers,
                    })
                    .collect());
            }
            let now = Instant::now();
            if now >= give_up {
                return Ok(Vec::new());
            }
            let until = next_deadline.map_or(give_up, |d| d.min(give_up)).max(now);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

struct MemoryAcker {
    broker: MemoryBroker,
    cell: Arc<StreamCell>,
    stream: String,
    durable: String,
    seq: u64,
    delivered: u32,
}

impl MemoryAcker {
    /// Applies `f` to this delivery's pending entry if it is still this delivery's.
    fn with_pending(&self, f: impl FnOnce(&mut StreamState, &mut bool)) {
        let mut st = lock(&self.cell.state);
        let current = st
            .consumers
            .get(&self.durable)
            .and_then(|c| c.pending.get(&self.seq))
            .is_some_and(|(d, _)| *d == self.delivered);
        let mut wake = false;
        if current {
            f(&mut st, &mut wake);
        }
        drop(st);
        if wake {
            self.cell.notify.notify_waiters();
        }
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<()> {
        let (durable, seq) = (&self.durable, self.seq);
        self.with_pending(|st, wake| {
            if let Some(c) = st.consumers.get_mut(durable) {
                // Fetchers wait on acks only when max_ack_pending held them back.
                *wake = c.pending.len() >= c.cfg.max_ack_pending;
                c.pending.remove(&seq);
            }
            st.remove_if_workqueue(seq);
        });
        Ok(())
    }

    async fn nak(&self, delay: Option<Duration>) -> Result<()> {
        let (durable, seq, delivered) = (&self.durable, self.seq, self.delivered);
        self.with_pending(|st, wake| {
            if let Some(c) = st.consumers.get_mut(durable) {
                c.hold(seq, delivered, Instant::now() + delay.unwrap_or_default());
            }
            *wake = true;
        });
        Ok(())
    }

    async fn progress(&self) -> Result<()> {
        let (durable, seq, delivered) = (&self.durable, self.seq, self.delivered);
        self.with_pending(|st, _| {
            if let Some(c) = st.consumers.get_mut(durable) {
                let wait = c.cfg.ack_wait;
                c.hold(seq, delivered, Instant::now() + wait);
            }
        });
        Ok(())
    }

    async fn term(&self, reason: &str) -> Result<()> {
        let (durable, seq, stream) = (&self.durable, self.seq, &self.stream);
        let mut advisory = None;
        self.with_pending(|st, wake| {
            if let Some(c) = st.consumers.get_mut(durable) {
                *wake = c.pending.len() >= c.cfg.max_ack_pending;
                c.pending.remove(&seq);
            }
            st.remove_if_workqueue(seq);
            let reason = reason.replace(['"', '\\'], "'");
            advisory = Some(Outbound::new(
                terminated_advisory(stream, durable),
                format!(
                    r#"{{"type":"io.nats.jetstream.advisory.v1.terminated","stream":"{stream}","consumer":"{durable}","stream_seq":{seq},"reason":"{reason}"}}"#
                ),
            ));
        });
        if let Some(a) = advisory {
            let _ = self.broker.publish_sync(a);
        }
        Ok(())
    }
}
