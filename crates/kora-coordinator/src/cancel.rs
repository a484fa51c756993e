//! Ending a run from outside its graph: an operator's cancel, or its deadline passing. Either
//! arrives as a stored request on the ledger's cancel subject, so it applies even if no
//! coordinator runs when it is made.

use std::cmp::Reverse;

use kora_broker::Outbound;
use kora_model::wire::{self, EventKind, WIRE_VERSION};
use kora_model::{error_type, msg_id, now_ms};
use kora_store::{RunStatus, RunUpdate};
use tracing::{debug, info, warn};

use crate::apply::finished;
use crate::pending::{Ev, Pending, Refusal};
use crate::{Coordinator, Error};

impl Coordinator {
    /// Records the run cancelled (with who), or failed when it is its deadline, announces it,
    /// and has workers stop its tasks once committed. Its later results find the run finished
    /// and are ignored.
    pub(crate) async fn on_cancel(
        &mut self,
        c: wire::Cancel,
        p: &mut Pending,
    ) -> Result<(), Refusal> {
        let now = now_ms();
        let Some(mut run) = self.take_run(&c.run_id).await? else {
            debug!(run_id = %c.run_id, "cancel of a run that is not running ignored");
            return Ok(());
        };
        p.expect(&run);
        // Past its deadline a run fails; an operator's cancel cancels it.
        let (status, kind, error, detail) = match c.deadline_ms {
            Some(d) => {
                let error = format!(
                    "{}: the run's deadline (deadline_secs) passed at {d} ms since the epoch; its unfinished tasks were stopped",
                    error_type::DEADLINE_EXCEEDED
                );
                let detail = serde_json::json!({ "error": error, "error_type": error_type::DEADLINE_EXCEEDED });
                self.metrics.runs_past_deadline.inc();
                warn!(run_id = %c.run_id, deadline_ms = d, "run failed: past its deadline");
                (RunStatus::Failed, EventKind::RunFailed, error, detail)
            }
            None => {
                info!(run_id = %c.run_id, by = %c.by, "run cancelled");
                (
                    RunStatus::Cancelled,
                    EventKind::RunCancelled,
                    format!("cancelled by {}", c.by),
                    serde_json::json!({ "by": c.by }),
                )
            }
        };
        p.batch.run_updates.push(RunUpdate {
            run_id: c.run_id.clone(),
            status,
            error: Some(error),
            error_node: None,
            at_ms: now,
        });
        p.emit(
            &self.env.subjects,
            &mut run,
            now,
            Ev::run(kind).detail(Some(detail)),
        );
        finished(&self.env, &run, status, &c.by, p);
        p.touched.push(c.run_id.clone());
        p.cancelled.push(c.run_id.clone());
        self.runs.insert(c.run_id, run);
        Ok(())
    }

    /// Ends runs whose deadline passed: due ones this coordinator admitted, and (`sweep`)
    /// every overdue run in the ledger. Each gets a deadline message on the ledger's cancel
    /// subject, handled in a batch like an operator's cancel (one per run: its message id).
    pub(crate) async fn end_overdue_runs(&mut self, sweep: bool) -> Result<(), Error> {
        let now = now_ms();
        let mut due = Vec::new();
        while self
            .deadlines
            .peek()
            .is_some_and(|Reverse((d, _))| *d <= now)
        {
            if let Some(Reverse((d, id))) = self.deadlines.pop() {
                due.push((id, d));
            }
        }
        if sweep {
            due.extend(self.store.overdue_runs(now, 256).await?);
        }
        for (run_id, d) in due {
            let msg = wire::Cancel {
                v: WIRE_VERSION,
                run_id: run_id.clone(),
                by: "deadline".into(),
                deadline_ms: Some(d),
            };
            self.broker
                .publish(
                    Outbound::new(self.env.subjects.ledger_cancel(), wire::encode(&msg)?)
                        .msg_id(msg_id::deadline(&run_id)),
                )
                .await?;
        }
        Ok(())
    }
}
