//! The workers alive now and their busy slots, from the statuses they publish every few
//! seconds on `<p>.control.worker` (NATS core). A short cache, like the key cache: a worker
//! not heard from for three intervals is gone from it, one that says it is stopping at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kora_broker::Broker;
use kora_model::wire::WorkerStatus;

/// How long a worker counts as alive after its last status.
const ALIVE: Duration = Duration::from_secs(3 * WorkerStatus::INTERVAL.as_secs());

#[derive(Default)]
pub(crate) struct Workers {
    seen: Mutex<BTreeMap<String, (WorkerStatus, Instant)>>,
}

impl Workers {
    /// Listens for the workers' statuses until the last other holder of `this` is gone.
    pub(crate) fn watch(this: &Arc<Workers>, broker: Arc<dyn Broker>, subject: String) {
        let weak = Arc::downgrade(this);
        tokio::spawn(async move {
            let mut statuses = match broker.listen(&subject).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%subject, error = %e, "cannot hear the workers' statuses; the dashboard shows no busy slots");
                    return;
                }
            };
            let mut prune = tokio::time::interval(WorkerStatus::INTERVAL);
            loop {
                tokio::select! {
                    s = statuses.next() => {
                        let Some(body) = s else { return };
                        let Some(me) = weak.upgrade() else { return };
                        match serde_json::from_slice::<WorkerStatus>(&body) {
                            Ok(st) => me.record(st),
                            Err(e) => tracing::debug!(error = %e, "a worker status that does not decode"),
                        }
                    }
                    _ = prune.tick() => {
                        let Some(me) = weak.upgrade() else { return };
                        me.prune();
                    }
                }
            }
        });
    }

    fn record(&self, st: WorkerStatus) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.stopping {
            seen.remove(&st.worker_id);
        } else {
            seen.insert(st.worker_id.clone(), (st, Instant::now()));
        }
    }

    fn prune(&self) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|_, (_, at)| at.elapsed() < ALIVE);
    }

    /// The workers heard from lately, by id, with how long ago.
    pub(crate) fn alive(&self) -> Vec<(WorkerStatus, Duration)> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.values()
            .filter(|(_, at)| at.elapsed() < ALIVE)
            .map(|(st, at)| (st.clone(), at.elapsed()))
            .collect()
    }
}
