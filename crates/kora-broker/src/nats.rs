//! The broker on NATS JetStream (async-nats). Works against nats-server 2.9.10 and current.
//!
//! Mapping: a [`StreamConfig`] is a file-backed JetStream stream (work-queue or limits
//! retention, `discard: new` when `max_msgs` is set); a [`ConsumerConfig`] a durable pull
//! consumer with explicit acks; a [`Consumer`] handle keeps one continuous pull
//! (`messages()`) whose client-side buffer is `batch` messages, so a slow process does not
//! hoard work; acks map to `+ACK`, `-NAK {delay}`, `+WPI` and `+TERM`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::stream::{ConsumerErrorKind, DeleteMessageErrorKind};
use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    context::Context,
    message::PublishMessage,
    stream::{DiscardPolicy, RetentionPolicy, StorageType},
};
use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use tokio::sync::Mutex;

use crate::nats_auth::{Secret, redact_url};
use crate::{
    Acker, Broker, Consumer, ConsumerConfig, ConsumerInfo, Delivery, DeliveryInfo, Error, Outbound,
    PublishAck, Result, Retention, StoredMessage, StreamConfig, StreamInfo, SubjectState,
};

/// `[nats]`: the connection, and the installation on it. Owned here so every role configures
/// NATS the same way.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// One or more server URLs, comma-separated.
    pub url: String,
    /// Installation prefix of every subject, stream and consumer: installations sharing a
    /// server differ here (letters, digits, `_` or `-`).
    pub prefix: String,
    /// Copies of each stream on a NATS cluster: 1, or 3 to survive losing a server
    /// (docs/durability.md says what each costs). Applied when a stream is created or updated.
    pub replicas: usize,
    /// Timeout for JetStream API calls and publish acks.
    #[serde(with = "kora_model::duration")]
    pub request_timeout: Duration,
    /// Shown in the server's connection list (set by the process, not configured).
    #[serde(skip)]
    pub name: String,
    /// Messages a consumer handle requests (and buffers) ahead of use, unless the role asks
    /// for another size ([`Broker::consumer_buffered`]).
    #[serde(skip)]
    pub pull_batch: usize,
    /// A user name, with `password` or `password_file` (`nats-server --user`, or a user in
    /// its `authorization` block).
    pub user: String,
    /// The user's password; set it in the environment (`KORA_NATS__PASSWORD`) or use
    /// `password_file`.
    pub password: Secret,
    /// A file whose first line is the user's password.
    pub password_file: Option<PathBuf>,
    /// A token (`nats-server --auth`); or `token_file`.
    pub token: Secret,
    /// A file whose first line is the token.
    pub token_file: Option<PathBuf>,
    /// A file holding an NKey user seed (`SU…`), signing the server's challenge.
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (a user JWT and its seed: decentralised JWT auth, `nsc`).
    pub creds_file: Option<PathBuf>,
    /// PEM CA bundle the server's certificate must chain to (turns TLS on).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a connection without TLS (the system's root certificates, unless a CA is given).
    pub tls_required: bool,
    /// The name the server's certificate must carry, when it is not the URL's host (a server
    /// reached by IP address, through a load balancer or a tunnel); needs `tls_ca_file`.
    pub tls_server_name: String,
    /// Where this process's replies arrive (`<inbox_prefix>.…`). With a NATS user per role
    /// each role gets its own (`_INBOX_worker`), so no role can read another's replies
    /// (`kora setup --nats-config` writes the matching permissions).
    pub inbox_prefix: String,
    /// Create or update the streams and consumers at start-up. `false` for roles whose NATS
    /// user may not manage streams: they only check that `kora setup` made them.
    pub provision: bool,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            prefix: kora_model::subjects::DEFAULT_PREFIX.into(),
            replicas: 1,
            request_timeout: Duration::from_secs(5),
            name: "kora".into(),
            pull_batch: 64,
            user: String::new(),
            password: Secret::default(),
            password_file: None,
            token: Secret::default(),
            token_file: None,
            nkey_seed_file: None,
            creds_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
            tls_server_name: String::new(),
            inbox_prefix: DEFAULT_INBOX_PREFIX.into(),
            provision: true,
        }
    }
}

impl NatsConfig {
    /// Every problem in words that name the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        kora_model::subjects::Subjects::new(&self.prefix)
            .map_err(|e| format!("nats.prefix: {e}"))?;
        if self.url.split(',').all(|u| u.trim().is_empty()) {
            return Err(
                "nats.url is empty: give one or more server URLs, e.g. nats://127.0.0.1:4222"
                    .into(),
            );
        }
        if !matches!(self.replicas, 1..=5) {
            return Err(format!(
                "nats.replicas must be between 1 and 5 (it is {}); use 3 on a three-server cluster",
                self.replicas
            ));
        }
        if self.inbox_prefix.is_empty()
            || !self.inbox_prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_graphic() && c != '*' && c != '>')
            })
        {
            return Err(format!(
                "nats.inbox_prefix {:?}: use dot-separated tokens without spaces or wildcards, e.g. _INBOX_worker",
                self.inbox_prefix
            ));
        }
        if self.request_timeout.is_zero() {
            return Err("nats.request_timeout must be more than 0".into());
        }
        if self.url.split(',').any(|u| {
            u.split_once("://")
                .is_some_and(|(_, rest)| rest.contains('@'))
        }) {
            return Err("nats.url holds credentials: give them as nats.user and nats.password (KORA_NATS__PASSWORD), or nats.token, so they stay out of URLs and logs".into());
        }
        self.validate_auth()
    }

    /// This installation's subject, stream and consumer names.
    pub fn subjects(&self) -> kora_model::subjects::Subjects {
        kora_model::subjects::Subjects::new(&self.prefix).unwrap_or_default()
    }
}

/// NATS's own reply prefix, the default of `nats.inbox_prefix`.
pub const DEFAULT_INBOX_PREFIX: &str = "_INBOX";

const TLS_HINT: &str = "TLS failed: check nats.tls_ca_file (the CA the server's certificate chains to), the URL's host name, and nats.tls_cert_file/tls_key_file if the server verifies clients";

/// Whether a failed connect found no server to talk to (refused, unroutable, timed out): worth
/// waiting for, unlike refused credentials or a failed TLS handshake.
fn unreachable(e: &async_nats::ConnectError) -> bool {
    use std::io::ErrorKind as K;
    if e.kind() != async_nats::ConnectErrorKind::Io {
        return false;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::TimedOut
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::AddrNotAvailable
                    | K::NotFound
            );
        }
        source = s.source();
    }
    // An I/O failure without its cause: the old behaviour, wait for the server.
    true
}

/// The JetStream broker. Cheap to clone.
#[derive(Clone)]
pub struct JetStreamBroker {
    client: async_nats::Client,
    js: Context,
    pull_batch: usize,
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

fn ms(t: async_nats::jetstream::message::StreamMessage) -> u64 {
    u64::try_from(t.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn headers_of(h: Option<&async_nats::HeaderMap>) -> Vec<(String, String)> {
    let Some(h) = h else { return Vec::new() };
    let mut out = Vec::new();
    for (k, vs) in h.iter() {
        let name = k.to_string();
        if name.starts_with("Nats-") {
            continue;
        }
        for v in vs {
            out.push((name.clone(), v.as_str().to_string()));
        }
    }
    out
}

impl JetStreamBroker {
    /// Connects; the client reconnects by itself after a server restart.
    pub async fn connect(cfg: &NatsConfig) -> Result<Self> {
        let urls: Vec<&str> = cfg
            .url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let shown: Vec<String> = urls.iter().map(|u| redact_url(u)).collect();
        let options = || async {
            let o = async_nats::ConnectOptions::new()
                .name(&cfg.name)
                .custom_inbox_prefix(&cfg.inbox_prefix)
                .request_timeout(Some(cfg.request_timeout))
                .event_callback(
                    |e| async move { tracing::info!(event = %e, "nats connection event") },
                );
            cfg.apply_auth(o).await.map_err(Error::Connection)
        };
        // Refused credentials and TLS failures are errors at once: the first attempt does not
        // retry, and only a server that cannot be reached is waited for (in the background,
        // as before).
        let client = match options().await?.connect(urls.clone()).await {
            Ok(c) => c,
            Err(e) if unreachable(&e) => options()
                .await?
                .retry_on_initial_connect()
                .connect(urls.clone())
                .await
                .map_err(|e| {
                    Error::Connection(format!(
                        "cannot connect to NATS at {}: {e}; is nats-server running with -js?",
                        shown.join(",")
                    ))
                })?,
            Err(e) => {
                // A failed handshake can come back as an I/O error naming the certificate.
                let text = e.to_string().to_ascii_lowercase();
                let hint = match e.kind() {
                    async_nats::ConnectErrorKind::AuthorizationViolation => {
                        "the server refused the credentials: check nats.user/password, nats.token, nats.nkey_seed_file or nats.creds_file"
                    }
                    async_nats::ConnectErrorKind::Tls => TLS_HINT,
                    _ if text.contains("certificate") || text.contains("tls") => TLS_HINT,
                    _ => "is nats-server running with -js?",
                };
                return Err(Error::Connection(format!(
                    "cannot connect to NATS at {}: {e}; {hint}",
                    shown.join(",")
                )));
            }
        };
        let js = jetstream::context::ContextBuilder::new()
            .timeout(cfg.request_timeout)
            .build(client.clone());
        Ok(JetStreamBroker {
            client,
            js,
            pull_batch: cfg.pull_batch.max(1),
        })
    }

    /// The version the connected server announced (`2.10.22`).
    pub fn server_version(&self) -> String {
        self.client.server_info().version
    }

    /// Deletes every stream whose name starts with `prefix` (test clean-up and operators
    /// removing an installation); returns how many were deleted.
    pub async fn delete_streams_with_prefix(&self, prefix: &str) -> Result<usize> {
        let mut names = self.js.stream_names();
        let mut doomed = Vec::new();
        while let Some(n) = names.next().await {
            let n = n.map_err(other)?;
            if n.starts_with(prefix) {
                doomed.push(n);
            }
        }
        for n in &doomed {
            self.js.delete_stream(n).await.map_err(other)?;
        }
        Ok(doomed.len())
    }

    async fn stream(&self, name: &str) -> Result<jetstream::stream::Stream> {
        self.js.get_stream(name).await.map_err(|e| match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(_) => {
                Error::StreamNotFound(name.into())
            }
            _ => other(e),
        })
    }

    fn outbound(m: Outbound) -> (String, PublishMessage) {
        let mut p = PublishMessage::build().payload(m.payload);
        if let Some(id) = m.msg_id {
            p = p.message_id(id);
        }
        for (k, v) in m.headers {
            p = p.header(k.as_str(), v.as_str());
        }
        (m.subject, p)
    }

    fn publish_error(subject: &str, e: &jetstream::context::PublishError) -> Error {
        use jetstream::context::PublishErrorKind as K;
        match e.kind() {
            K::StreamNotFound => Error::NoStreamForSubject(subject.into()),
            K::MaxPayloadExceeded => Error::TooLarge {
                stream: String::new(),
                size: 0,
                limit: 0,
            },
            _ => other(e),
        }
    }
}

impl JetStreamBroker {
    /// Creates a stream, trying again when the server failed to make its store directory:
    /// nats-server 2.9.10 removes an account's `streams` directory when its last stream is
    /// deleted, and a stream created at that moment fails with 10049/10077 ("could not create
    /// storage directory"), seen when many processes share one server.
    async fn create_stream(
        &self,
        c: &jetstream::stream::Config,
    ) -> std::result::Result<(), jetstream::context::CreateStreamError> {
        let mut tries = 0u32;
        loop {
            match self.js.create_stream(c.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if tries < 3 && store_race(&e) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20 << tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn store_race(e: &jetstream::context::CreateStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::CreateStreamErrorKind::JetStream(j)
            if j.error_code() == ErrorCode::STREAM_CREATE
                || j.error_code() == ErrorCode::STREAM_STORE_FAILED
    )
}

#[async_trait]
impl Broker for JetStreamBroker {
    async fn ensure_stream(&self, cfg: &StreamConfig) -> Result<()> {
        let c = jetstream::stream::Config {
            name: cfg.name.clone(),
            subjects: cfg.subjects.clone(),
            retention: match cfg.retention {
                Retention::Limits => RetentionPolicy::Limits,
                Retention::WorkQueue => RetentionPolicy::WorkQueue,
            },
            storage: StorageType::File,
            duplicate_window: cfg.duplicate_window,
            max_age: cfg.max_age.unwrap_or_default(),
            max_messages: cfg
                .max_msgs
                .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            max_bytes: cfg
                .max_bytes
                .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            discard: if cfg.max_msgs.is_some() {
                DiscardPolicy::New
            } else {
                DiscardPolicy::Old
            },
            max_message_size: cfg
                .max_msg_size
                .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX)),
            num_replicas: cfg.replicas.max(1),
            ..Default::default()
        };
        // Update only what differs: nats-server 2.9.10 can crash (a nil dereference in
        // `updateWithAdvisory`, seen here) when several processes update one stream at once,
        // and every role provisions the streams at start-up.
        let same = |have: &jetstream::stream::Config| {
            have.subjects == c.subjects
                && have.retention == c.retention
                && have.duplicate_window == c.duplicate_window
                && have.max_age == c.max_age
                && have.max_messages == c.max_messages
                && have.max_bytes == c.max_bytes
                && have.discard == c.discard
                && have.max_message_size == c.max_message_size
                && have.num_replicas == c.num_replicas
        };
        let err = |e: &dyn std::fmt::Display| Error::Config(format!("stream {}: {e}", cfg.name));
        match self.js.get_stream(&cfg.name).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| err(&e))?;
                if same(&info.config) {
                    return Ok(());
                }
                self.js.update_stream(c).await.map_err(|e| err(&e))?;
            }
            Err(_) => {
                if let Err(e) = self.create_stream(&c).await {
                    // Another process created it meanwhile: fine if it is the same.
                    let mut existing = self.js.get_stream(&cfg.name).await.map_err(|_| err(&e))?;
                    let info = existing.info().await.map_err(|e| err(&e))?;
                    if !same(&info.config) {
                        self.js.update_stream(c).await.map_err(|e| err(&e))?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn ensure_consumer(&self, stream: &str, cfg: &ConsumerConfig) -> Result<()> {
        let s = self.stream(stream).await?;
        let c = pull::Config {
            durable_name: Some(cfg.durable.clone()),
            filter_subject: cfg.filter_subject.clone().unwrap_or_default(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: cfg.ack_wait,
            max_deliver: if cfg.max_deliver == 0 {
                -1
            } else {
                i64::from(cfg.max_deliver)
            },
            max_ack_pending: i64::try_from(cfg.max_ack_pending).unwrap_or(i64::MAX),
            deliver_policy: match cfg.start_sequence {
                Some(start_sequence) => DeliverPolicy::ByStartSequence {
                    start_sequence: start_sequence.max(1),
                },
                None => DeliverPolicy::All,
            },
            ..Default::default()
        };
        // Create, or update an existing durable's editable settings (ack wait, max deliveries,
        // ...). A change the server cannot apply in place (the deliver policy, say) keeps the
        // existing consumer, with a warning: delete it to change those.
        match s.create_consumer(c.clone()).await {
            Ok(_) => Ok(()),
            Err(update) => match s.get_or_create_consumer(&cfg.durable, c).await {
                Ok(_) => {
                    tracing::warn!(consumer = %cfg.durable, %stream, error = %update, "the consumer's new settings could not be applied; it keeps its old ones (delete it to change them)");
                    Ok(())
                }
                Err(e) => Err(Error::Config(format!(
                    "consumer {} on {stream}: {e}",
                    cfg.durable
                ))),
            },
        }
    }

    async fn publish(&self, msg: Outbound) -> Result<PublishAck> {
        let (subject, p) = Self::outbound(msg);
        let fut = self
            .js
            .send_publish(subject.clone(), p)
            .await
            .map_err(|e| Self::publish_error(&subject, &e))?;
        let ack = fut.await.map_err(|e| Self::publish_error(&subject, &e))?;
        Ok(PublishAck {
            stream: ack.stream,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    async fn publish_many(&self, msgs: Vec<Outbound>) -> Vec<Result<PublishAck>> {
        // Pipelined within a window: the client holds a permit per unacknowledged publish
        // (5,000 by default) until its ack is awaited, so sending everything before awaiting
        // anything would stall a large batch.
        const WINDOW: usize = 512;
        type Pending = (String, Result<jetstream::context::PublishAckFuture>);
        async fn settle(p: Pending) -> Result<PublishAck> {
            let (subject, sent) = p;
            let fut = sent?;
            fut.await
                .map(|a| PublishAck {
                    stream: a.stream,
                    sequence: a.sequence,
                    duplicate: a.duplicate,
                })
                .map_err(|e| JetStreamBroker::publish_error(&subject, &e))
        }
        let mut out = Vec::with_capacity(msgs.len());
        let mut window: std::collections::VecDeque<Pending> =
            std::collections::VecDeque::with_capacity(WINDOW);
        for m in msgs {
            if window.len() >= WINDOW
                && let Some(oldest) = window.pop_front()
            {
                out.push(settle(oldest).await);
            }
            let (subject, p) = Self::outbound(m);
            let sent = self
                .js
                .send_publish(subject.clone(), p)
                .await
                .map_err(|e| Self::publish_error(&subject, &e));
            window.push_back((subject, sent));
        }
        for p in window {
            out.push(settle(p).await);
        }
        out
    }

    async fn notify(&self, subject: &str, payload: Vec<u8>) -> Result<()> {
        self.client
            .publish(subject.to_string(), payload.into())
            .await
            .map_err(|e| Error::Connection(e.to_string()))
    }

    async fn listen(&self, pattern: &str) -> Result<futures::stream::BoxStream<'static, Vec<u8>>> {
        use futures::StreamExt;
        let sub = self
            .client
            .subscribe(pattern.to_string())
            .await
            .map_err(|e| Error::Connection(e.to_string()))?;
        Ok(sub.map(|m| m.payload.to_vec()).boxed())
    }

    async fn consumer(&self, stream: &str, durable: &str) -> Result<Arc<dyn Consumer>> {
        self.consumer_buffered(stream, durable, self.pull_batch)
            .await
    }

    async fn consumer_buffered(
        &self,
        stream: &str,
        durable: &str,
        buffer: usize,
    ) -> Result<Arc<dyn Consumer>> {
        let s = self.stream(stream).await?;
        let c: PullConsumer =
            s.get_consumer(durable)
                .await
                .map_err(|_| Error::ConsumerNotFound {
                    stream: stream.into(),
                    consumer: durable.into(),
                })?;
        Ok(Arc::new(JetStreamConsumer {
            consumer: c,
            batch: buffer.max(1),
            messages: Mutex::new(None),
        }))
    }

    async fn get_message(&self, stream: &str, sequence: u64) -> Result<Option<StoredMessage>> {
        let s = self.stream(stream).await?;
        match s.get_raw_message(sequence).await {
            Ok(m) => {
                let headers = headers_of(Some(&m.headers));
                let subject = m.subject.to_string();
                let payload = m.payload.clone();
                let seq = m.sequence;
                Ok(Some(StoredMessage {
                    subject,
                    sequence: seq,
                    payload,
                    headers,
                    published_ms: ms(m),
                }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::stream::RawMessageErrorKind::NoMessageFound
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(other(e)),
        }
    }

    async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool> {
        let s = self.stream(stream).await?;
        match s.delete_message(sequence).await {
            Ok(done) => Ok(done),
            // The message is not there (2.9 says "stream store EOF" past the end, later
            // servers "no message found"): by its JetStream error code, not its text.
            Err(e)
                if matches!(e.kind(), DeleteMessageErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::NO_MESSAGE_FOUND
                        || j.error_code() == ErrorCode::STREAM_MESSAGE_DELETE_FAILED) =>
            {
                Ok(false)
            }
            Err(e) => Err(other(e)),
        }
    }

    async fn stream_info(&self, stream: &str) -> Result<StreamInfo> {
        let info = self.stream(stream).await?.get_info().await.map_err(other)?;
        Ok(StreamInfo {
            messages: info.state.messages,
            first_sequence: info.state.first_sequence,
            last_sequence: info.state.last_sequence,
        })
    }

    async fn consumer_exists(&self, stream: &str, durable: &str) -> Result<()> {
        let s = self.stream(stream).await?;
        s.consumer_info(durable)
            .await
            .map(|_| ())
            .map_err(|e| match e.kind() {
                async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound => {
                    Error::ConsumerNotFound {
                        stream: stream.into(),
                        consumer: durable.into(),
                    }
                }
                _ => Error::Other(format!("consumer {durable} on stream {stream}: {e}")),
            })
    }

    async fn consumer_info(&self, stream: &str, durable: &str) -> Result<ConsumerInfo> {
        let s = self.stream(stream).await?;
        let info = s
            .consumer_info(durable)
            .await
            .map_err(|_| Error::ConsumerNotFound {
                stream: stream.into(),
                consumer: durable.into(),
            })?;
        // The oldest message not yet delivered: the first on the consumer's subject after
        // the last one it delivered.
        let oldest_pending_ms = if info.num_pending == 0 {
            None
        } else {
            let filter = match info.config.filter_subject.as_str() {
                "" => ">".to_string(),
                f => f.to_string(),
            };
            match s
                .raw_message_builder()
                .sequence(info.delivered.stream_sequence + 1)
                .next_by_subject(filter)
                .send()
                .await
            {
                Ok(m) => Some(ms(m)),
                Err(e)
                    if matches!(
                        e.kind(),
                        jetstream::stream::RawMessageErrorKind::NoMessageFound
                    ) =>
                {
                    None
                }
                Err(e) => return Err(other(e)),
            }
        };
        Ok(ConsumerInfo {
            num_pending: info.num_pending,
            num_ack_pending: u64::try_from(info.num_ack_pending).unwrap_or(0),
            oldest_pending_ms,
        })
    }

    async fn subjects(
        &self,
        stream: &str,
        filter: &str,
        limit: usize,
    ) -> Result<Vec<SubjectState>> {
        let s = self.stream(stream).await?;
        let mut counts = s.info_with_subjects(filter).await.map_err(other)?;
        let mut found = Vec::new();
        while let Some(next) = counts.next().await {
            let (subject, messages) = next.map_err(other)?;
            found.push((subject, messages as u64));
        }
        found.sort();
        found.truncate(limit);
        let mut out = Vec::with_capacity(found.len());
        for (subject, messages) in found {
            // Removed meanwhile (acked): the subject no longer holds anything.
            let oldest_ms = match s.get_first_raw_message_by_subject(&subject, 0).await {
                Ok(m) => ms(m),
                Err(e)
                    if matches!(
                        e.kind(),
                        jetstream::stream::RawMessageErrorKind::NoMessageFound
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(other(e)),
            };
            out.push(SubjectState {
                subject,
                messages,
                oldest_ms,
            });
        }
        Ok(out)
    }

    async fn delete_consumer(&self, stream: &str, durable: &str) -> Result<()> {
        let s = self.stream(stream).await?;
        match s.delete_consumer(durable).await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(e.kind(), ConsumerErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND) =>
            {
                Ok(())
            }
            Err(e) => Err(other(e)),
        }
    }

    async fn delete_stream(&self, stream: &str) -> Result<()> {
        match self.js.delete_stream(stream).await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(e.kind(), jetstream::context::DeleteStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                Ok(())
            }
            Err(e) => Err(other(e)),
        }
    }

    async fn flush(&self) -> Result<()> {
        self.client
            .flush()
            .await
            .map_err(|e| Error::Connection(e.to_string()))
    }
}

struct JetStreamConsumer {
    consumer: PullConsumer,
    batch: usize,
    /// The continuous pull, opened on first use and reopened after an error.
    messages: Mutex<Option<pull::Stream>>,
}

#[async_trait]
impl Consumer for JetStreamConsumer {
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let mut guard = self.messages.lock().await;
        if guard.is_none() {
            let s = self
                .consumer
                .stream()
                .max_messages_per_batch(self.batch)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
                .map_err(|e| Error::Connection(format!("cannot pull: {e}")))?;
            *guard = Some(s);
        }
        let Some(stream) = guard.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let first = match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => return Ok(out),
            Ok(None) => {
                *guard = None;
                return Ok(out);
            }
            Ok(Some(Err(e))) => {
                // Missed heartbeats and the like: the pull recovers by itself.
                tracing::debug!(error = %e, "pull stream reported an error");
                return Ok(out);
            }
            Ok(Some(Ok(m))) => m,
        };
        out.push(delivery(first)?);
        while out.len() < max {
            match stream.next().now_or_never() {
                Some(Some(Ok(m))) => out.push(delivery(m)?),
                _ => break,
            }
        }
        Ok(out)
    }
}

fn delivery(m: jetstream::Message) -> Result<Delivery> {
    let info = m.info().map_err(other)?;
    let info = DeliveryInfo {
        stream_sequence: info.stream_sequence,
        delivered: u32::try_from(info.delivered).unwrap_or(u32::MAX),
        published_ms: u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
    };
    let (msg, acker) = m.split();
    Ok(Delivery {
        subject: msg.subject.to_string(),
        headers: headers_of(msg.headers.as_ref()),
        payload: msg.payload,
        info,
        acker: Box::new(JetStreamAcker(acker)),
    })
}

struct JetStreamAcker(jetstream::message::Acker);

#[async_trait]
impl Acker for JetStreamAcker {
    async fn ack(&self) -> Result<()> {
        self.0.ack().await.map_err(other)
    }
    async fn nak(&self, delay: Option<Duration>) -> Result<()> {
        self.0.ack_with(AckKind::Nak(delay)).await.map_err(other)
    }
    async fn progress(&self) -> Result<()> {
        self.0.ack_with(AckKind::Progress).await.map_err(other)
    }
    async fn term(&self, _reason: &str) -> Result<()> {
        self.0.ack_with(AckKind::Term).await.map_err(other)
    }
}
