//! The raw JetStream task round trip both benchmarks compare Kora against: the same client
//! settings Kora's roles use, two work-queue streams, three connections, no engine.

use std::time::{Duration, Instant};

use kora_broker::nats::{JetStreamBroker, NatsConfig};
use kora_broker::{Broker, ConsumerConfig, Outbound, Retention, StreamConfig};

pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) async fn connect(url: &str, name: &str) -> JetStreamBroker {
    JetStreamBroker::connect(&NatsConfig {
        url: url.into(),
        name: name.into(),
        ..NatsConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("NATS at {url}: {e}"))
}

/// The raw round trip through two work-queue streams with three connections, as a Kora hop
/// without the engine.
pub(crate) async fn raw(url: &str, tag: &str, replicas: usize) -> (f64, f64, f64) {
    let (client, worker, collector) = (
        connect(url, "raw-client").await,
        connect(url, "raw-worker").await,
        connect(url, "raw-collector").await,
    );
    let (tasks, results) = (
        format!("RAW{tag}_T").to_ascii_uppercase(),
        format!("RAW{tag}_R").to_ascii_uppercase(),
    );
    let (ts, rs) = (format!("raw{tag}.t"), format!("raw{tag}.r"));
    for (name, subj) in [(&tasks, &ts), (&results, &rs)] {
        client
            .ensure_stream(&StreamConfig {
                replicas,
                ..StreamConfig::new(name.clone(), vec![subj.clone()], Retention::WorkQueue)
            })
            .await
            .expect("stream");
        client
            .ensure_consumer(name, &ConsumerConfig::new("c"))
            .await
            .expect("consumer");
    }
    let wc = worker.consumer(&tasks, "c").await.expect("c");
    let cc = collector.consumer(&results, "c").await.expect("c");
    let stop = tokio_util::sync::CancellationToken::new();
    let (w_stop, rs2) = (stop.clone(), rs.clone());
    let worker_task = tokio::spawn(async move {
        while !w_stop.is_cancelled() {
            let batch = wc
                .fetch(256, Duration::from_millis(200))
                .await
                .unwrap_or_default();
            let msgs: Vec<Outbound> = batch
                .iter()
                .map(|d| Outbound::new(rs2.clone(), d.payload.clone()))
                .collect();
            let _ = worker.publish_many(msgs).await;
            for d in batch {
                let _ = d.ack().await;
            }
        }
    });
    let payload = vec![7u8; 128];
    let mut lat = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        client
            .publish(Outbound::new(ts.clone(), payload.clone()))
            .await
            .expect("publish");
        let got = cc.fetch(1, Duration::from_secs(5)).await.expect("fetch");
        for d in got {
            let _ = d.ack().await;
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let n = 20_000;
    let t = Instant::now();
    let mut sent = 0;
    let mut received = 0;
    while received < n {
        let burst = (n - sent).min(1000 - (sent - received));
        if burst > 0 {
            let msgs = (0..burst)
                .map(|_| Outbound::new(ts.clone(), payload.clone()))
                .collect();
            let _ = client.publish_many(msgs).await;
            sent += burst;
        }
        let got = cc.fetch(1000, Duration::from_secs(5)).await.expect("fetch");
        received += got.len();
        for d in got {
            let _ = d.ack().await;
        }
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    stop.cancel();
    let _ = worker_task.await;
    (pct(&lat, 0.5), pct(&lat, 0.99), rate)
}
