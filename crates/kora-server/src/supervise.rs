//! Running roles side by side: each is a task with its health; the first that fails (returns an
//! error, or stops when nobody asked) stops the others, which drain, and the process then ends
//! with that failure.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::Error;
use crate::health::{Health, State};

pub struct Supervisor {
    tracker: TaskTracker,
    /// Cancelled by the caller's shutdown, or by the first failure.
    stop: CancellationToken,
    health: Arc<Health>,
    failure: Arc<Mutex<Option<(String, String)>>>,
}

impl Supervisor {
    /// Roles stop when `shutdown` is cancelled.
    pub fn new(shutdown: &CancellationToken, health: Arc<Health>) -> Self {
        Supervisor {
            tracker: TaskTracker::new(),
            stop: shutdown.child_token(),
            health,
            failure: Arc::default(),
        }
    }

    /// The token roles stop on.
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// Runs `task` (a role's loop, which returns when its token is cancelled) as `name`.
    pub fn spawn<E: std::fmt::Display>(
        &self,
        name: &str,
        task: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let name = name.to_string();
        let (stop, health, failure) = (
            self.stop.clone(),
            Arc::clone(&self.health),
            Arc::clone(&self.failure),
        );
        health.set(&name, State::Running, None);
        self.tracker.spawn(async move {
            let outcome = task.await;
            let error = match outcome {
                Ok(()) if stop.is_cancelled() => None,
                Ok(()) => Some("stopped though nobody asked it to".to_string()),
                Err(e) => Some(e.to_string()),
            };
            match error {
                None => {
                    health.set(&name, State::Stopped, None);
                    info!(role = %name, "role stopped");
                }
                Some(e) => {
                    error!(role = %name, error = %e, "role failed; stopping the others");
                    health.set(&name, State::Failed, Some(e.clone()));
                    if let Ok(mut f) = failure.lock() {
                        f.get_or_insert((name, e));
                    }
                    health.stopping();
                    stop.cancel();
                }
            }
        });
    }

    /// Waits for every role to stop; the first failure, if one stopped the rest.
    pub async fn wait(self) -> Result<(), Error> {
        let stop = self.stop.clone();
        let health = Arc::clone(&self.health);
        tokio::spawn(async move {
            stop.cancelled().await;
            health.stopping();
        });
        self.tracker.close();
        self.tracker.wait().await;
        let failure = self.failure.lock().ok().and_then(|mut f| f.take());
        match failure {
            Some((role, error)) => Err(Error::RoleFailed { role, error }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_failing_role_stops_the_others_and_is_reported() {
        let shutdown = CancellationToken::new();
        let s = Supervisor::new(&shutdown, Arc::new(Health::default()));
        let health = s.health();
        let (t1, t2) = (s.token(), s.token());
        s.spawn("worker", async move {
            t1.cancelled().await;
            Ok::<(), String>(())
        });
        s.spawn("coordinator", async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = t2;
            Err::<(), String>("the ledger is gone".into())
        });
        let e = tokio::time::timeout(Duration::from_secs(5), s.wait())
            .await
            .expect("the healthy role was stopped")
            .unwrap_err();
        assert_eq!(e.to_string(), "role coordinator failed: the ledger is gone");
        let snap = health.snapshot();
        assert_eq!(snap["coordinator"].state, State::Failed);
        assert_eq!(snap["worker"].state, State::Stopped);
        assert!(!health.healthy());
        assert!(
            !shutdown.is_cancelled(),
            "the caller's token is the caller's"
        );
    }

    #[tokio::test]
    async fn a_requested_stop_is_not_a_failure() {
        let shutdown = CancellationToken::new();
        let s = Supervisor::new(&shutdown, Arc::new(Health::default()));
        let t = s.token();
        s.spawn("scheduler", async move {
            t.cancelled().await;
            Ok::<(), String>(())
        });
        assert!(s.health().healthy());
        shutdown.cancel();
        s.wait().await.unwrap();
    }

    #[tokio::test]
    async fn a_role_that_returns_by_itself_has_failed() {
        let s = Supervisor::new(&CancellationToken::new(), Arc::new(Health::default()));
        s.spawn("worker", async { Ok::<(), String>(()) });
        let e = s.wait().await.unwrap_err().to_string();
        assert!(e.contains("stopped though nobody asked"), "{e}");
    }
}
