//! Readiness, as `/readyz` reports it: the process can do its work now. NATS answers, the
//! ledger answers (for roles that use it), and every durable consumer this process's roles
//! take messages from exists; and no role is stopping. Each check is bounded by a timeout, so
//! a hung dependency makes the probe fail rather than hang.

use std::sync::Arc;
use std::time::Duration;

use kora_broker::Broker;
use kora_model::subjects::Subjects;
use kora_store::Store;
use serde::Serialize;

use crate::Role;

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Readiness {
    pub broker: Arc<dyn Broker>,
    pub ledger: Option<Arc<dyn Store>>,
    /// `(stream, durable consumer)` pairs the roles take messages from.
    pub consumers: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Readiness {
    pub fn new(
        broker: Arc<dyn Broker>,
        ledger: Option<Arc<dyn Store>>,
        subjects: &Subjects,
        roles: &[Role],
        worker_queue: &str,
    ) -> Self {
        // The ones each role takes messages from (the worker's high-priority consumer too).
        let consumers = roles
            .iter()
            .flat_map(|r| r.consumers(subjects, worker_queue))
            .collect();
        Readiness {
            broker,
            ledger,
            consumers,
        }
    }

    /// Every check, in a fixed order.
    pub async fn checks(&self) -> Vec<Check> {
        let mut out = Vec::new();
        // A consumer's info is a JetStream request: it answering means NATS does.
        for (stream, durable) in &self.consumers {
            let r = bounded(self.broker.consumer_exists(stream, durable)).await;
            out.push(check(format!("consumer {stream}/{durable}"), r));
        }
        if self.consumers.is_empty() {
            // A gateway alone still publishes: NATS must answer.
            out.push(check("nats".into(), bounded(self.broker.flush()).await));
        }
        if let Some(ledger) = &self.ledger {
            out.push(check(
                "ledger".into(),
                bounded(ledger.run("readyz-probe")).await.map(|_| ()),
            ));
        }
        out
    }
}

async fn bounded<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    }
}

fn check(name: String, r: Result<(), String>) -> Check {
    Check {
        name,
        ok: r.is_ok(),
        error: r.err(),
    }
}
