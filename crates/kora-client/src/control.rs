//! The operator control API: what `kora dlq` does, as library calls over the ledger and the
//! broker, so the HTTP gateway can be a thin layer over the same functions.
//!
//! - [`Control::dead_letters`]: dead-lettered attempts, filtered by workflow, reason, time, run.
//! - [`Control::dead_letter`]: one, with every attempt of its node.
//! - [`Control::replay`]: a new attempt of its node with the operator's input overrides; the run
//!   is reopened and resumes from there (completed nodes keep their outputs and do not run
//!   again); recorded with who and when.
//! - [`Control::purge`]: closes dead letters without replaying them (the attempts stay).
//! - [`Control::retry_run`]: resumes a failed run by replaying its open dead letters.
//! - [`Control::poison`]: messages a role could not use (undecodable), with their reason;
//!   [`Control::purge_poison`] removes one.
//! - [`Control::add_trigger`], [`Control::triggers`], [`Control::set_trigger_paused`]: runs
//!   started by messages on a NATS subject.
//! - [`Control::cancel`]: cancels a run: no more dispatches, running tasks stopped, late
//!   results ignored, the run recorded `cancelled` with who asked.
//! - [`Control::run`], [`Control::runs`]: the ledger's runs.
//!
//! A control [`Control::for_tenant`] acts within one tenant: another tenant's runs, dead
//! letters and triggers are not found, exactly like ones that do not exist.

use std::sync::Arc;

use futures::StreamExt;
use kora_broker::{Broker, Outbound};
use kora_model::subjects::Subjects;
use kora_model::wire::{
    self, DeadLetterSelector, Operation, OperationKind, OperationOutcome, OperationReply,
    WIRE_VERSION,
};
use kora_model::{Map, now_ms};

use crate::{Error, Result};
use kora_store::{
    AttemptKey, AttemptRecord, DeadLetterFilter, DeadLetterRecord, ReplayOutcome, RunFilter,
    RunRecord, Store,
};

#[derive(Clone)]
pub struct Control {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) subjects: Subjects,
    /// How long a request waits for the coordinator's answer.
    wait: std::time::Duration,
    /// The tenant it acts within; `None` acts on every tenant (an operator's CLI).
    tenant: Option<String>,
}

impl Control {
    pub fn new(store: Arc<dyn Store>, broker: Arc<dyn Broker>, subjects: Subjects) -> Self {
        Control {
            store,
            broker,
            subjects,
            wait: std::time::Duration::from_secs(15),
            tenant: None,
        }
    }

    /// How long requests wait for the coordinator's answer (15 s unless set).
    pub fn with_wait(mut self, wait: std::time::Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The same control acting within `tenant` only (`None`: every tenant).
    pub fn for_tenant(&self, tenant: Option<&str>) -> Control {
        Control {
            tenant: tenant.map(String::from),
            ..self.clone()
        }
    }

    /// The tenant new things (triggers) belong to: the scope's, else the default one.
    fn own_tenant(&self) -> &str {
        self.tenant
            .as_deref()
            .unwrap_or(kora_model::tenant::DEFAULT)
    }

    pub(crate) fn in_scope(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// A run in scope, by id; `None` for one that does not exist or is another tenant's.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        Ok(self
            .store
            .run(run_id)
            .await?
            .filter(|r| self.in_scope(&r.tenant)))
    }

    /// The run in scope submitted with idempotency key `key` (as its tenant gave it).
    pub async fn run_by_key(&self, key: &str) -> Result<Option<RunRecord>> {
        let stored = kora_model::tenant::scoped_key(self.own_tenant(), key);
        Ok(self
            .store
            .run_by_key(&stored)
            .await?
            .filter(|r| self.in_scope(&r.tenant)))
    }

    /// A run in scope and every attempt of it, read together.
    pub async fn run_with_attempts(
        &self,
        run_id: &str,
    ) -> Result<Option<(RunRecord, Vec<AttemptRecord>)>> {
        Ok(self
            .store
            .run_with_attempts(run_id)
            .await?
            .filter(|(r, _)| self.in_scope(&r.tenant)))
    }

    /// A run in scope, or a not-found error naming it.
    async fn run_or_404(&self, run_id: &str) -> Result<RunRecord> {
        self.run(run_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no run {run_id} in the ledger")))
    }

    /// Runs in scope passing `filter`, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let mut filter = filter.clone();
        if self.tenant.is_some() {
            filter.tenant.clone_from(&self.tenant);
        }
        Ok(self.store.runs(&filter).await?)
    }

    pub async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetterRecord>> {
        let mut filter = filter.clone();
        if self.tenant.is_some() {
            filter.tenant.clone_from(&self.tenant);
        }
        Ok(self.store.dead_letters(&filter).await?)
    }

    /// One dead letter (in any state), by its id.
    async fn find(&self, id: &str) -> Result<Option<(AttemptKey, DeadLetterRecord)>> {
        let key = kora_store::parse_dead_letter_id(id).ok_or_else(|| {
            Error::Invalid(format!("{id:?} is not a dead-letter id (`kora dlq list` shows them: <run>:<node>:<iteration>:<attempt>)"))
        })?;
        let found = self
            .dead_letters(&DeadLetterFilter {
                run_id: Some(key.run_id.clone()),
                id: Some(id.to_string()),
                any_state: true,
                ..Default::default()
            })
            .await?
            .into_iter()
            .next();
        Ok(found.map(|dl| (key, dl)))
    }

    /// One dead letter (in any state) and every attempt of its node in that run.
    pub async fn dead_letter(
        &self,
        id: &str,
    ) -> Result<Option<(DeadLetterRecord, Vec<AttemptRecord>)>> {
        let Some((key, dl)) = self.find(id).await? else {
            return Ok(None);
        };
        let attempts = self
            .store
            .attempts(&key.run_id)
            .await?
            .into_iter()
            .filter(|a| a.node_id == key.node_id && a.iteration == key.iteration)
            .collect();
        Ok(Some((dl, attempts)))
    }

    /// Replays a dead letter: the coordinator reopens the run with a new attempt of its node
    /// (atomically, in the ledger) and sends it; the run resumes from there. Waits for the
    /// coordinator's answer.
    pub async fn replay(&self, id: &str, overrides: Map, actor: &str) -> Result<ReplayOutcome> {
        storable(&overrides)?;
        // Said at once, without waiting for a coordinator: what the ledger already shows.
        let Some((_, dl)) = self.find(id).await? else {
            return Err(Error::NotFound(format!(
                "no dead letter {id} (`kora dlq list --any-state` lists them)"
            )));
        };
        if let Some(info) = dl
            .attempt
            .dead_letter
            .as_ref()
            .filter(|i| i.state != "open")
        {
            return Err(Error::Conflict(format!(
                "dead letter {id} is already {}{}",
                info.state,
                info.replayed_by
                    .as_ref()
                    .map(|b| format!(" (by {b})"))
                    .unwrap_or_default()
            )));
        }
        let op = OperationKind::Replay {
            dead_letter: id.to_string(),
            overrides,
        };
        replayed(self.request(op, actor).await?, "replay")
    }

    /// Restarts a run that ended (failed, succeeded or cancelled) from `node`: a new attempt
    /// of it (with `overrides` over its inputs) and, as it completes, of every node downstream
    /// of it; the other nodes keep their outputs and are not executed again. The old attempts
    /// stay in the ledger, superseded; downstream open dead letters are closed as replayed.
    /// The coordinator applies it; this waits for its answer.
    pub async fn restart_from(
        &self,
        run_id: &str,
        node: &str,
        overrides: Map,
        actor: &str,
    ) -> Result<ReplayOutcome> {
        storable(&overrides)?;
        let rec = self.run_or_404(run_id).await?;
        let Some(spec) = rec.spec else {
            return Err(Error::Conflict(format!(
                "run {run_id} was rejected: it has no workflow to restart"
            )));
        };
        spec.downstream_of(node)
            .map_err(|e| Error::Invalid(format!("run {run_id}: {e}")))?;
        if !rec.status.is_final() {
            return Err(Error::Conflict(format!(
                "run {run_id} is {}: only a run that ended can be restarted from a node (cancel it first)",
                rec.status.as_str()
            )));
        }
        let op = OperationKind::Restart {
            run_id: run_id.to_string(),
            node_id: node.to_string(),
            overrides,
        };
        replayed(self.request(op, actor).await?, "restart")
    }

    /// Sends an operator request to the coordinator (stored on the ledger stream) and waits for
    /// its answer. No answer in time is an error that says the request still stands.
    async fn request(&self, op: OperationKind, actor: &str) -> Result<OperationOutcome> {
        let request_id = uuid::Uuid::now_v7().to_string();
        let reply_to = self.subjects.operation_reply(&request_id);
        let mut replies = self.broker.listen(&reply_to).await?;
        let msg = Operation {
            v: WIRE_VERSION,
            request_id: request_id.clone(),
            actor: actor.to_string(),
            at_ms: now_ms(),
            reply_to: Some(reply_to),
            op,
        };
        self.broker
            .publish(
                Outbound::new(self.subjects.ledger_operation(), wire::encode(&msg)?)
                    .msg_id(kora_model::msg_id::operation(&request_id)),
            )
            .await?;
        let answer = tokio::time::timeout(self.wait, async {
            while let Some(payload) = replies.next().await {
                if let Ok(r) = wire::decode::<OperationReply>(&payload)
                    && r.request_id == request_id
                {
                    return Some(r.outcome);
                }
            }
            None
        })
        .await;
        match answer {
            Ok(Some(outcome)) => Ok(outcome),
            _ => Err(Error::NoAnswer(format!(
                "no coordinator answered within {}: the request is kept on the ledger stream and is applied when a coordinator runs (is one running? `kora serve --role coordinator`)",
                kora_model::duration::format(self.wait)
            ))),
        }
    }

    /// Cancels a run: the request is stored on the ledger stream (it survives a coordinator
    /// restart); the coordinator records the run cancelled and workers stop its tasks. Waits up
    /// to `wait` for the ledger to show the run's final state, and returns it.
    pub async fn cancel(
        &self,
        run_id: &str,
        by: &str,
        wait: std::time::Duration,
    ) -> Result<kora_store::RunStatus> {
        let rec = self.run_or_404(run_id).await?;
        if rec.status.is_final() {
            return Ok(rec.status);
        }
        let msg = wire::Cancel {
            v: WIRE_VERSION,
            run_id: run_id.to_string(),
            by: by.to_string(),
            deadline_ms: None,
        };
        let payload = wire::encode(&msg)?;
        self.broker
            .publish(
                Outbound::new(self.subjects.ledger_cancel(), payload)
                    .msg_id(kora_model::msg_id::cancel(run_id)),
            )
            .await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let status = self
                .store
                .run(run_id)
                .await?
                .map_or(kora_store::RunStatus::Running, |r| r.status);
            if status.is_final() || tokio::time::Instant::now() >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Resumes a failed run from where it failed: replays each of its open dead letters (no
    /// input changes). Completed nodes keep their outputs. A run that failed without a dead
    /// letter (a node returned `success: false`) has nothing to replay: that is an error.
    pub async fn retry_run(&self, run_id: &str, actor: &str) -> Result<Vec<ReplayOutcome>> {
        self.run_or_404(run_id).await?;
        let open = self
            .dead_letters(&DeadLetterFilter {
                run_id: Some(run_id.to_string()),
                ..Default::default()
            })
            .await?;
        if open.is_empty() {
            return Err(Error::Conflict(format!(
                "run {run_id} has no open dead letter to resume from (`kora runs show {run_id}` says how it ended)"
            )));
        }
        let mut out = Vec::new();
        for d in open {
            out.push(self.replay(&d.id, Map::new(), actor).await?);
        }
        Ok(out)
    }

    /// Messages a role could not use (undecodable, or naming what does not exist), kept on the
    /// dead-letter stream with their reason, newest first, at most `limit`.
    pub async fn poison(&self, limit: usize) -> Result<Vec<PoisonMessage>> {
        let stream = self.subjects.stream_dlq();
        let info = self.broker.stream_info(&stream).await?;
        let mut out = Vec::new();
        let mut seq = info.last_sequence;
        while seq >= info.first_sequence.max(1) && out.len() < limit {
            if let Some(m) = self.broker.get_message(&stream, seq).await? {
                let header = |name: &str| {
                    m.headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                out.push(PoisonMessage {
                    sequence: m.sequence,
                    source: m.subject.rsplit('.').next().unwrap_or_default().to_string(),
                    reason: header(kora_broker::topology::HDR_REASON),
                    original_subject: header(kora_broker::topology::HDR_ORIG_SUBJECT),
                    deliveries: header(kora_broker::topology::HDR_DELIVERIES)
                        .parse()
                        .unwrap_or(0),
                    received_ms: m.published_ms,
                    bytes: m.payload.len(),
                });
            }
            seq -= 1;
        }
        Ok(out)
    }

    /// Removes one poison message from the dead-letter stream.
    pub async fn purge_poison(&self, sequence: u64) -> Result<bool> {
        Ok(self
            .broker
            .delete_message(&self.subjects.stream_dlq(), sequence)
            .await?)
    }

    /// Registers (or replaces) a trigger: messages on a subject, or cron ticks, start runs of
    /// `spec`. A subject is captured from now on, even while no Kora process runs.
    pub async fn add_trigger(
        &self,
        name: &str,
        source: TriggerSource,
        spec: kora_model::WorkflowSpec,
        params: Map,
    ) -> Result<()> {
        kora_model::trigger::check_name(name).map_err(Error::Invalid)?;
        let mut webhook_salt = None;
        let (subject, schedule) = match source {
            TriggerSource::Subject(subject) => {
                if subject.starts_with(&format!("{}.", self.subjects.prefix())) {
                    return Err(Error::Invalid(format!(
                        "subject {subject:?} is inside Kora's own subjects; use another"
                    )));
                }
                (subject, None)
            }
            TriggerSource::Cron(expr) => {
                kora_model::trigger::parse_schedule(&expr).map_err(Error::Invalid)?;
                (String::new(), Some(expr))
            }
            TriggerSource::Webhook { salt } => {
                webhook_salt = Some(salt);
                (String::new(), None)
            }
        };
        let now = now_ms();
        let t = kora_store::TriggerRecord {
            name: name.to_string(),
            subject,
            schedule,
            spec,
            params,
            paused: false,
            created_ms: now,
            updated_ms: now,
            tenant: self.own_tenant().to_string(),
            webhook_salt,
        };
        if t.schedule.is_none() && t.webhook_salt.is_none() {
            kora_broker::topology::provision_trigger(
                self.broker.as_ref(),
                &self.subjects,
                &t.name,
                &t.subject,
            )
            .await
            .map_err(|e| Error::Invalid(e.to_string()))?;
        }
        self.store.put_trigger(&t).await?;
        Ok(())
    }

    /// Triggers in scope, by name.
    pub async fn triggers(&self) -> Result<Vec<kora_store::TriggerRecord>> {
        let mut all = self.store.triggers().await?;
        all.retain(|t| self.in_scope(&t.tenant));
        Ok(all)
    }

    /// A trigger in scope, by name.
    pub async fn trigger(&self, name: &str) -> Result<kora_store::TriggerRecord> {
        self.triggers()
            .await?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::NotFound(format!("no trigger {name:?} (`kora triggers list`)")))
    }

    /// Pauses or resumes a trigger. A paused trigger's messages wait, and start their runs
    /// when it is resumed.
    pub async fn set_trigger_paused(&self, name: &str, paused: bool) -> Result<()> {
        self.trigger(name).await?;
        if self
            .store
            .set_trigger_paused(name, paused, now_ms())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "no trigger {name:?} (`kora triggers list`)"
            )))
        }
    }

    /// Deletes a trigger: no more runs start from it (the messages it captured and did not
    /// start yet are dropped with its stream).
    pub async fn delete_trigger(&self, name: &str) -> Result<()> {
        let t = self.trigger(name).await?;
        if !self.store.delete_trigger(name).await? {
            return Err(Error::NotFound(format!("no trigger {name:?}")));
        }
        if t.schedule.is_none() && !t.subject.is_empty() {
            let stream = self.subjects.stream_trigger(name);
            if let Err(e) = self.broker.delete_stream(&stream).await {
                tracing::warn!(trigger = %name, error = %e, "trigger deleted; its stream stays");
            }
        }
        Ok(())
    }

    /// Closes the open dead letters `filter` selects, without replaying them (their attempts
    /// stay in the ledger). The coordinator applies it; returns how many it closed.
    pub async fn purge(&self, filter: &DeadLetterFilter, actor: &str) -> Result<usize> {
        let selector = DeadLetterSelector {
            id: filter.id.clone(),
            run_id: filter.run_id.clone(),
            workflow: filter.workflow.clone(),
            reason: filter.reason.clone(),
            since_ms: filter.since_ms,
            tenant: self.tenant.clone().or_else(|| filter.tenant.clone()),
        };
        match self
            .request(OperationKind::Purge { filter: selector }, actor)
            .await?
        {
            OperationOutcome::Purged { count } => Ok(usize::try_from(count).unwrap_or(usize::MAX)),
            OperationOutcome::Refused { error, kind } => {
                Err(Error::refused(kind, format!("cannot purge: {error}")))
            }
            other => Err(Error::Conflict(format!(
                "unexpected answer to a purge: {other:?}"
            ))),
        }
    }
}

/// What starts a trigger's runs.
#[derive(Debug, Clone)]
pub enum TriggerSource {
    /// Each message on this NATS subject.
    Subject(String),
    /// Each tick of this cron schedule.
    Cron(String),
    /// Each signed HTTP request to the gateway's `/v1/hooks/<name>`; its signing secret
    /// derives from `salt` and the gateway's key pepper.
    Webhook { salt: String },
}

/// A message a role dead-lettered because it could not use it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoisonMessage {
    /// Its sequence on the dead-letter stream (`kora dlq purge --poison SEQ`).
    pub sequence: u64,
    /// Which role's input it was: `run` (scheduler), `ledger` (coordinator) or `task` (worker).
    pub source: String,
    pub reason: String,
    pub original_subject: String,
    pub deliveries: u32,
    pub received_ms: u64,
    pub bytes: usize,
}

/// A time filter as people give it: a duration back from now (`90s`, `30m`, `12h`, `7d`,
/// `1h 30m`) or milliseconds since the epoch.
pub fn parse_since(s: &str, now: u64) -> Result<u64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let back = humantime::parse_duration(s).map_err(|e| {
        Error::Invalid(format!(
            "since {s:?}: {e}; use e.g. 30m, 12h, 7d, or epoch milliseconds"
        ))
    })?;
    Ok(now.saturating_sub(u64::try_from(back.as_millis()).unwrap_or(u64::MAX)))
}

/// Overrides the ledger can store (no NUL character).
fn storable(overrides: &Map) -> Result<()> {
    match kora_model::value::find_nul(&kora_model::Value::Object(overrides.clone())) {
        Some(path) => Err(Error::Invalid(format!(
            "the override {path} contains a NUL character (\\u0000), which the ledger cannot store"
        ))),
        None => Ok(()),
    }
}

/// A replay's or restart's answer as what it did, or the coordinator's reason for refusing.
fn replayed(outcome: OperationOutcome, what: &str) -> Result<ReplayOutcome> {
    match outcome {
        OperationOutcome::Replayed {
            run_id,
            node_id,
            attempt,
            redispatched,
        } => Ok(ReplayOutcome {
            redispatched: redispatched
                .into_iter()
                .map(|a| AttemptKey {
                    run_id: run_id.clone(),
                    node_id: a.node_id,
                    iteration: a.iteration,
                    attempt: a.attempt,
                })
                .collect(),
            run_id,
            node_id,
            attempt,
        }),
        OperationOutcome::Refused { error, kind } => {
            Err(Error::refused(kind, format!("cannot {what}: {error}")))
        }
        other => Err(Error::Conflict(format!(
            "unexpected answer to a {what}: {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_epoch_ms() {
        assert_eq!(
            parse_since("30m", 10_000_000).unwrap(),
            10_000_000 - 1_800_000
        );
        assert_eq!(
            parse_since("2d", 500_000_000).unwrap(),
            500_000_000 - 172_800_000
        );
        assert_eq!(parse_since("1700000000000", 0).unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_since("1h 30m", 10_000_000).unwrap(),
            10_000_000 - 5_400_000
        );
        assert!(parse_since("5 fortnights", 0).is_err());
        // Larger than any clock: the start of time, not an overflow.
        assert_eq!(parse_since("99999999999999d", 10).unwrap(), 0);
    }
}
