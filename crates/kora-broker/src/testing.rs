//! The broker contract: each check written once, run against every implementation
//! (the in-memory broker here, JetStream in its own crate's tests).
//!
//! Every check takes a unique namespace `ns` (letters and digits) and creates its own streams
//! and subjects under it, so checks never see each other's messages, even on a shared server.

// Contract checks are assertions: a failed call is a failed check. The test server helper
// blocks briefly while a process starts, before any async work.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::Duration;

use crate::{Broker, ConsumerConfig, Outbound, Retention, StreamConfig, max_deliveries_advisory};

fn wq(ns: &str, name: &str) -> StreamConfig {
    StreamConfig::new(
        format!("{ns}_{name}"),
        vec![format!("{ns}.{name}.>")],
        Retention::WorkQueue,
    )
}

fn consumer(durable: &str, ack_wait_ms: u64, max_deliver: u32) -> ConsumerConfig {
    ConsumerConfig {
        ack_wait: Duration::from_millis(ack_wait_ms),
        max_deliver,
        ..ConsumerConfig::new(durable)
    }
}

/// Publish, fetch, ack: the message is delivered once and leaves a work-queue stream.
pub async fn publish_fetch_ack(b: &dyn Broker, ns: &str) {
    let s = wq(ns, "pfa");
    b.ensure_stream(&s).await.unwrap();
    b.ensure_stream(&s)
        .await
        .expect("ensure_stream is idempotent");
    b.ensure_consumer(&s.name, &consumer("w", 5_000, 0))
        .await
        .unwrap();
    b.ensure_consumer(&s.name, &consumer("w", 5_000, 0))
        .await
        .expect("ensure_consumer is idempotent");
    let ack = b
        .publish(Outbound::new(format!("{ns}.pfa.x"), "hello").header("K", "v"))
        .await
        .unwrap();
    assert_eq!(ack.sequence, 1);
    assert!(!ack.duplicate);
    let c = b.consumer(&s.name, "w").await.unwrap();
    let got = c.fetch(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"hello");
    assert_eq!(got[0].header("k"), Some("v"));
    assert_eq!(got[0].info.delivered, 1);
    got[0].ack().await.unwrap();
    b.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        b.stream_info(&s.name).await.unwrap().messages,
        0,
        "acked work-queue message is removed"
    );
    assert!(
        c.fetch(10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
}

/// The same message id within the window is stored once.
pub async fn dedup_by_message_id(b: &dyn Broker, ns: &str) {
    let s = wq(ns, "dd");
    b.ensure_stream(&s).await.unwrap();
    let a1 = b
        .publish(Outbound::new(format!("{ns}.dd.x"), "1").msg_id("id-1"))
        .await
        .unwrap();
    let a2 = b
        .publish(Outbound::new(format!("{ns}.dd.x"), "2").msg_id("id-1"))
        .await
        .unwrap();
    assert_eq!(a1.sequence, a2.sequence);
    assert!(a2.duplicate);
    let many = b
        .publish_many(
            (0..50)
                .map(|i| Outbound::new(format!("{ns}.dd.y"), "m").msg_id(format!("m-{}", i % 25)))
                .collect(),
        )
        .await;
    assert_eq!(
        many.iter()
            .filter(|r| r.as_ref().is_ok_and(|a| a.duplicate))
            .count(),
        25
    );
    assert_eq!(b.stream_info(&s.name).await.unwrap().messages, 26);
}

/// An unacknowledged delivery comes back after ack-wait with its delivery count raised.
pub async fn redelivery_after_ack_wait(b: &dyn Broker, ns: &str) {
    let s = wq(ns, "rd");
    b.ensure_stream(&s).await.unwrap();
    b.ensure_consumer(&s.name, &consumer("w", 300, 0))
        .await
        .unwrap();
    b.publish(Outbound::new(format!("{ns}.rd.x"), "t"))
        .await
        .unwrap();
    let c = b.consumer(&s.name, "w").await.unwrap();
    let first = c.fetch(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(first[0].info.delivered, 1);
    drop(first);
    let again = c.fetch(1, Duration::from_secs(3)).await.unwrap();
    assert_eq!(again.len(), 1, "redelivered after ack_wait");
    assert_eq!(again[0].info.delivered, 2);
    again[0].ack().await.unwrap();
}

/// Ensuring an existing consumer again applies its new settings (an operator lowering the ack
/// wait sees it take effect without deleting the consumer).
pub async fn consumer_settings_update(b: &dyn Broker, ns: &str) {
    let s = wq(ns, "cu");
    b.ensure_stream(&s).await.unwrap();
    b.ensure_consumer(&s.name, &consumer("w", 30_000, 0))
        .await
        .unwrap();
    b.ensure_consumer(&s.name, &consumer("w", 300, 0))
        .await
        .unwrap();
    b.publish(Outbound::new(format!("{ns}.cu.x"), "t"))
        .await
        .unwrap();
    let c = b.consumer(&s.name, "w").await.unwrap();
    let first = c.fetch(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(first.len(), 1);
    drop(first);
    let again = c.fetch(1, Duration::from_secs(3)).await.unwrap();
    assert_eq!(
        again.len(),
        1,
        "redelivered after the updated 300 ms ack wait"
    );
    again[0].ack().await.unwrap();
}

/// `nak(delay)` redelivers no sooner than the delay; `progress` holds a delivery past ack-wait.
pub async fn nak_delay_and_progress(b: &dyn Broker, ns: &str) {
    let s = wq(ns, "nk");
    b.ensure_stream(&s).await.unwrap();
    b.ensure_consumer(&s.name, &consumer("w", 600, 0))
        .await
        .unwrap();
    b.publish(Outbound::new(format!("{ns}.nk.x"), "t"))
        .await
        .unwrap();
    let c = b.consumer(&s.name, "w").await.unwrap();
    let d = c.fetch(1, Duration::from_secs(2)).await.unwrap().remove(0);
    let t0 = tokio::time::Instant::now();
    d.nak(Some(Duration::from_millis(300))).await.unwrap();
    let d = c.fetch(1, Duration::from_secs(3)).await.unwrap().remove(0);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "nak delay honoured, waited {waited:?}"
    );
    assert_eq!(d.info.delivered, 2);
    // Keep it alive for 2.5 ack-waits with progress; it must not be redelivered meanwhile.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        d.progress().await.unwrap();
    }
    assert!(
        c.fetch(1, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "in-progress delivery not redelivered"
    );
    d.ack().await.unwrap();
}

/// `term` ends deliveries for good and removes the message from a work queue.
pub async fn term_stops_redelivery(b: &dyn Broker, ns: &str) {
    let s = wq(ns, "tm");
    b.ensure_stream(&s).await.unwrap();
    b.ensure_consumer(&s.name, &consumer("w", 200, 0))
        .await
        .unwrap();
    b.publish(Outbound::new(format!("{ns}.tm.x"), "poison"))
        .await
        .unwrap();
    let c = b.consumer(&s.name, "w").await.unwrap();
    let d = c.fetch(1, Duration::from_secs(2)).await.unwrap().remove(0);
    d.term("undecodable").await.unwrap();
    b.flush().await.unwrap();
    assert!(
        c.fetch(1, Duration::from_millis(600))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(b.stream_info(&s.name).await.unwrap().messages, 0);
}

/// After max deliveries the message stays in the stream, an advisory names it, and an operator
/// can read it, delete it and republish it for a fresh first delivery.
pub async fn max_deliveries_then_replay(b: &dyn Broker, ns: &str) {
    let s = wq(ns, "md");
    b.ensure_stream(&s).await.unwrap();
    let adv = StreamConfig::new(
        format!("{ns}_ADV"),
        vec![max_deliveries_advisory(&s.name, "*")],
        Retention::Limits,
    );
    b.ensure_stream(&adv).await.unwrap();
    b.ensure_consumer(&adv.name, &consumer("ops", 5_000, 0))
        .await
        .unwrap();
    b.ensure_consumer(&s.name, &consumer("w", 200, 2))
        .await
        .unwrap();
    b.publish(Outbound::new(format!("{ns}.md.x"), "crashy"))
        .await
        .unwrap();
    let c = b.consumer(&s.name, "w").await.unwrap();
    for n in 1..=2 {
        let d = c.fetch(1, Duration::from_secs(3)).await.unwrap();
        assert_eq!(d.len(), 1, "delivery {n}");
        assert_eq!(d[0].info.delivered, n);
    }
    assert!(
        c.fetch(1, Duration::from_secs(1)).await.unwrap().is_empty(),
        "no third delivery"
    );
    let ops = b.consumer(&adv.name, "ops").await.unwrap();
    let a = ops.fetch(1, Duration::from_secs(3)).await.unwrap();
    assert_eq!(a.len(), 1, "max-deliveries advisory captured");
    let body = String::from_utf8_lossy(&a[0].payload).to_string();
    assert!(body.contains("\"stream_seq\":1"), "{body}");
    a[0].ack().await.unwrap();
    let stored = b
        .get_message(&s.name, 1)
        .await
        .unwrap()
        .expect("message stays in the stream");
    assert_eq!(&stored.payload[..], b"crashy");
    assert!(b.delete_message(&s.name, 1).await.unwrap());
    assert!(
        !b.delete_message(&s.name, 1).await.unwrap(),
        "a deleted message is not there to delete again"
    );
    assert!(
        !b.delete_message(&s.name, 999).await.unwrap(),
        "nor is one past the end"
    );
    b.delete_consumer(&s.name, "never-made")
        .await
        .expect("deleting a consumer that does not exist is not an error");
    b.publish(Outbound::new(stored.subject, stored.payload).msg_id(format!("replay-{ns}")))
        .await
        .unwrap();
    let d = c.fetch(1, Duration::from_secs(3)).await.unwrap();
    assert_eq!(d[0].info.delivered, 1, "replayed message starts fresh");
    d[0].ack().await.unwrap();
}

/// Many fetchers of one durable consumer share its messages: each is delivered to exactly one.
pub async fn competing_consumers_share_work(b: &dyn Broker, ns: &str) {
    let s = wq(ns, "cc");
    b.ensure_stream(&s).await.unwrap();
    b.ensure_consumer(&s.name, &consumer("pool", 10_000, 0))
        .await
        .unwrap();
    let n = 200u32;
    let msgs = (0..n)
        .map(|i| Outbound::new(format!("{ns}.cc.x"), i.to_string()))
        .collect();
    assert!(b.publish_many(msgs).await.iter().all(Result::is_ok));
    let c1 = b.consumer(&s.name, "pool").await.unwrap();
    let c2 = b.consumer(&s.name, "pool").await.unwrap();
    let work = |c: std::sync::Arc<dyn crate::Consumer>| async move {
        let mut seen = Vec::new();
        loop {
            let batch = c.fetch(7, Duration::from_millis(400)).await.unwrap();
            if batch.is_empty() {
                return seen;
            }
            for d in batch {
                seen.push(String::from_utf8_lossy(&d.payload).parse::<u32>().unwrap());
                d.ack().await.unwrap();
            }
        }
    };
    let (a, bb) = tokio::join!(work(c1), work(c2));
    let mut all: Vec<u32> = a.into_iter().chain(bb).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..n).collect::<Vec<_>>(),
        "every message exactly once"
    );
}

/// A limits stream keeps acknowledged messages; a filtered consumer sees only its subjects.
pub async fn limits_stream_keeps_messages(b: &dyn Broker, ns: &str) {
    let s = StreamConfig::new(
        format!("{ns}_LIM"),
        vec![format!("{ns}.lim.>")],
        Retention::Limits,
    );
    b.ensure_stream(&s).await.unwrap();
    let mut cfg = consumer("only-a", 5_000, 0);
    cfg.filter_subject = Some(format!("{ns}.lim.a.>"));
    b.ensure_consumer(&s.name, &cfg).await.unwrap();
    b.publish(Outbound::new(format!("{ns}.lim.a.1"), "a"))
        .await
        .unwrap();
    b.publish(Outbound::new(format!("{ns}.lim.b.1"), "b"))
        .await
        .unwrap();
    let c = b.consumer(&s.name, "only-a").await.unwrap();
    let d = c.fetch(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(&d[0].payload[..], b"a");
    d[0].ack().await.unwrap();
    b.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.stream_info(&s.name).await.unwrap().messages, 2);
    assert!(
        b.publish(Outbound::new(format!("{ns}.nowhere"), "x"))
            .await
            .is_err(),
        "no stream for subject"
    );
}

/// A limits stream with `max_bytes` drops its oldest messages to stay within it, and a
/// consumer starts at the oldest it still has.
pub async fn max_bytes_drops_the_oldest(b: &dyn Broker, ns: &str) {
    let mut s = StreamConfig::new(
        format!("{ns}_MB"),
        vec![format!("{ns}.mb.>")],
        Retention::Limits,
    );
    // Room for three 1,000-byte messages with the server's per-message overhead.
    s.max_bytes = Some(3_500);
    b.ensure_stream(&s).await.unwrap();
    for i in 0..10u8 {
        b.publish(Outbound::new(format!("{ns}.mb.x"), vec![i; 1000]))
            .await
            .unwrap();
    }
    b.flush().await.unwrap();
    let info = b.stream_info(&s.name).await.unwrap();
    assert_eq!(
        (info.messages, info.first_sequence, info.last_sequence),
        (3, 8, 10)
    );
    b.ensure_consumer(&s.name, &consumer("all", 5_000, 0))
        .await
        .unwrap();
    let c = b.consumer(&s.name, "all").await.unwrap();
    // A fetch returns what has arrived once the first message is there (a network broker
    // may hand the three over in more than one batch), so collect until nothing more comes.
    let mut firsts: Vec<u8> = Vec::new();
    loop {
        let d = c.fetch(10, Duration::from_millis(500)).await.unwrap();
        if d.is_empty() {
            break;
        }
        firsts.extend(d.iter().map(|m| m.payload[0]));
    }
    assert_eq!(firsts, vec![7, 8, 9]);
}

/// A batch larger than the client's in-flight publish limit goes through, in order.
pub async fn publish_many_large_batch(b: &dyn Broker, ns: &str) {
    let s = wq(ns, "big");
    b.ensure_stream(&s).await.unwrap();
    let n = 6000u64;
    let msgs = (0..n)
        .map(|i| Outbound::new(format!("{ns}.big.x"), i.to_string()))
        .collect();
    let acks = tokio::time::timeout(Duration::from_secs(60), b.publish_many(msgs))
        .await
        .expect("no stall");
    assert_eq!(acks.len() as u64, n);
    let seqs: Vec<u64> = acks.into_iter().map(|a| a.unwrap().sequence).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "acks in order");
    assert_eq!(b.stream_info(&s.name).await.unwrap().messages, n);
}

/// A deleted stream is gone with its messages; its subjects no longer store; deleting it again
/// is not an error.
pub async fn delete_stream_removes_it(b: &dyn Broker, ns: &str) {
    let s = wq(ns, "gone");
    b.ensure_stream(&s).await.unwrap();
    b.publish(Outbound::new(format!("{ns}.gone.x"), "x"))
        .await
        .unwrap();
    b.delete_stream(&s.name).await.unwrap();
    assert!(b.stream_info(&s.name).await.is_err(), "no stream");
    assert!(
        b.publish(Outbound::new(format!("{ns}.gone.x"), "y"))
            .await
            .is_err(),
        "its subjects no longer store"
    );
    b.delete_stream(&s.name).await.unwrap();
}

/// A notification reaches every listener whose pattern matches, and no other.
pub async fn notifications_reach_listeners(b: &dyn Broker, ns: &str) {
    use futures::StreamExt;
    let mut all = b.listen(&format!("{ns}.note.*")).await.unwrap();
    let mut one = b.listen(&format!("{ns}.note.a")).await.unwrap();
    // Core NATS subscriptions are registered asynchronously: flush makes them active.
    b.flush().await.unwrap();
    b.notify(&format!("{ns}.note.b"), b"to-all".to_vec())
        .await
        .unwrap();
    b.notify(&format!("{ns}.note.a"), b"to-both".to_vec())
        .await
        .unwrap();
    let wait = Duration::from_secs(3);
    let got = tokio::time::timeout(wait, all.next()).await.ok().flatten();
    assert_eq!(got.as_deref(), Some(&b"to-all"[..]));
    let got = tokio::time::timeout(wait, all.next()).await.ok().flatten();
    assert_eq!(got.as_deref(), Some(&b"to-both"[..]));
    let got = tokio::time::timeout(wait, one.next()).await.ok().flatten();
    assert_eq!(
        got.as_deref(),
        Some(&b"to-both"[..]),
        "only what matches its pattern"
    );
}

/// What waits: messages per subject with the oldest's publish time, and a consumer's backlog
/// with the publish time of its oldest undelivered message.
pub async fn backlog_by_subject_and_consumer(b: &dyn Broker, ns: &str) {
    let s = wq(ns, "bl");
    b.ensure_stream(&s).await.unwrap();
    let c = ConsumerConfig {
        filter_subject: Some(format!("{ns}.bl.a")),
        ..consumer("wa", 5_000, 0)
    };
    b.ensure_consumer(&s.name, &c).await.unwrap();
    let info = b.consumer_info(&s.name, "wa").await.unwrap();
    assert_eq!((info.num_pending, info.oldest_pending_ms), (0, None));
    assert!(
        b.subjects(&s.name, &format!("{ns}.bl.>"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let before = kora_now_ms();
    for subject in ["a", "a", "b", "a"] {
        b.publish(Outbound::new(format!("{ns}.bl.{subject}"), "x"))
            .await
            .unwrap();
    }
    let found = b
        .subjects(&s.name, &format!("{ns}.bl.>"), 10)
        .await
        .unwrap();
    let counts: Vec<(String, u64)> = found
        .iter()
        .map(|f| (f.subject.clone(), f.messages))
        .collect();
    assert_eq!(
        counts,
        [(format!("{ns}.bl.a"), 3), (format!("{ns}.bl.b"), 1)]
    );
    // Publish times come from the broker's clock; allow for a second of skew.
    for f in &found {
        assert!(f.oldest_ms + 1_000 >= before, "{f:?} vs {before}");
    }
    assert_eq!(
        b.subjects(&s.name, &format!("{ns}.bl.>"), 1)
            .await
            .unwrap()
            .len(),
        1
    );
    let info = b.consumer_info(&s.name, "wa").await.unwrap();
    assert_eq!(info.num_pending, 3);
    let oldest = info.oldest_pending_ms.expect("three wait");
    assert_eq!(oldest, found[0].oldest_ms);
    // Delivered (not acked): no longer waiting, but still held by the subject.
    let h = b.consumer(&s.name, "wa").await.unwrap();
    let got = h.fetch(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 1);
    // A network broker may pull more than one ahead of use: those are delivered too.
    let info = b.consumer_info(&s.name, "wa").await.unwrap();
    assert_eq!(info.num_pending + info.num_ack_pending, 3, "{info:?}");
    assert!(info.num_ack_pending >= 1, "{info:?}");
    assert_eq!(
        info.oldest_pending_ms.is_some(),
        info.num_pending > 0,
        "{info:?}"
    );
    assert!(info.oldest_pending_ms.is_none_or(|t| t >= oldest));
    let mut rest = Vec::new();
    while rest.len() < 2 {
        let more = h.fetch(10, Duration::from_secs(2)).await.unwrap();
        assert!(!more.is_empty(), "the other two are delivered");
        rest.extend(more);
    }
    assert_eq!(rest.len(), 2);
    let info = b.consumer_info(&s.name, "wa").await.unwrap();
    assert_eq!((info.num_pending, info.oldest_pending_ms), (0, None));
    for d in got.iter().chain(&rest) {
        d.ack().await.unwrap();
    }
    b.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let left: Vec<String> = b
        .subjects(&s.name, &format!("{ns}.bl.>"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.subject)
        .collect();
    assert_eq!(left, [format!("{ns}.bl.b")]);
}

fn kora_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Calls `$m!(check, check, ...)` with every contract check, so each broker's test file lists
/// them through this one list: `kora_broker::contract_checks!(contract);`.
#[macro_export]
macro_rules! contract_checks {
    ($m:ident) => {
        $m!(
            publish_fetch_ack,
            dedup_by_message_id,
            redelivery_after_ack_wait,
            consumer_settings_update,
            nak_delay_and_progress,
            term_stops_redelivery,
            max_deliveries_then_replay,
            competing_consumers_share_work,
            limits_stream_keeps_messages,
            max_bytes_drops_the_oldest,
            publish_many_large_batch,
            notifications_reach_listeners,
            backlog_by_subject_and_consumer,
            delete_stream_removes_it
        );
    };
}

pub async fn run_all(b: &dyn Broker, ns: &str) {
    notifications_reach_listeners(b, ns).await;
    consumer_settings_update(b, ns).await;
    publish_fetch_ack(b, &format!("{ns}a")).await;
    dedup_by_message_id(b, &format!("{ns}b")).await;
    redelivery_after_ack_wait(b, &format!("{ns}c")).await;
    nak_delay_and_progress(b, &format!("{ns}d")).await;
    term_stops_redelivery(b, &format!("{ns}e")).await;
    max_deliveries_then_replay(b, &format!("{ns}f")).await;
    competing_consumers_share_work(b, &format!("{ns}g")).await;
    limits_stream_keeps_messages(b, &format!("{ns}h")).await;
    publish_many_large_batch(b, &format!("{ns}i")).await;
    max_bytes_drops_the_oldest(b, &format!("{ns}k")).await;
    backlog_by_subject_and_consumer(b, &format!("{ns}l")).await;
    delete_stream_removes_it(b, &format!("{ns}j")).await;
}

/// A private nats-server the test owns: its own loopback port and store directory, killed when
/// dropped. Crash tests use [`TestServer::kill`] and [`TestServer::restart`].
pub struct TestServer {
    bin: std::path::PathBuf,
    port: u16,
    dir: std::path::PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<std::process::Child>,
}

impl TestServer {
    /// The current-release binary: `KORA_NATS_CURRENT`, else the one `.ci/services-up`
    /// installs under `target/tools`. `None` when neither exists.
    pub fn current_bin() -> Option<std::path::PathBuf> {
        if let Ok(p) = std::env::var("KORA_NATS_CURRENT") {
            return Some(p.into());
        }
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/tools/nats-current/bin/nats-server");
        p.exists().then_some(p)
    }

    /// [`TestServer::current_bin`], or `None` with a message saying how to get one; under
    /// `CI` a missing binary fails the test instead (CI must not skip).
    pub fn current_bin_or_skip() -> Option<std::path::PathBuf> {
        let bin = Self::current_bin();
        if bin.is_none() {
            assert!(
                std::env::var("CI").is_err(),
                "no current nats-server: run .ci/services-up (CI must not skip)"
            );
            eprintln!("skipping: no current nats-server; run .ci/services-up");
        }
        bin
    }

    /// Starts `bin` with JetStream on a free port and waits until it accepts connections.
    pub fn start(bin: &std::path::Path) -> TestServer {
        Self::start_with(bin, &[])
    }

    /// The same with more server arguments (`--user`, `-c FILE`, `--tls` …).
    pub fn start_with(bin: &std::path::Path, args: &[String]) -> TestServer {
        Self::start_with_env(bin, args, &[])
    }

    /// The same with environment variables for the server (a configuration file's `$VAR`s).
    pub fn start_with_env(
        bin: &std::path::Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> TestServer {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "kora-nats-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = TestServer {
            bin: bin.to_path_buf(),
            port,
            dir,
            args: args.to_vec(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts (again) on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new(&self.bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("nats-server did not come up on port {}", self.port);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
