//! A store in process memory, for embedded runs that need no record after exit.

mod compact;
mod directory;

use foldhash::{HashMap, HashMapExt};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use kora_model::WorkflowSpec;
use kora_model::wire::RunEvent;

use compact::{Attempt, Event, Names, Packed};

use crate::{
    AttemptKey, AttemptRecord, AttemptStatus, Batch, CommitReport, DeadLetterFilter,
    DeadLetterInfo, DeadLetterRecord, Error, Expect, ReplayOutcome, ReplayRequest, Result,
    RunFilter, RunRecord, RunStatus, Store,
};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    dir: Mutex<directory::DirInner>,
}

#[derive(Default)]
struct Inner {
    triggers: std::collections::BTreeMap<String, crate::TriggerRecord>,
    runs: HashMap<String, RunEntry>,
    order: Vec<String>,
    keys: HashMap<String, String>,
    rates: HashMap<String, f64>,
    aliases: HashMap<String, String>,
    audit: Vec<crate::AuditEntry>,
    audit_keys: foldhash::HashSet<(String, String, u32, u32, u32)>,
    alerts: std::collections::BTreeMap<String, MemAlert>,
}

/// An alert and, per message (`[open, resolve]`), when it was claimed and delivered.
struct MemAlert {
    record: crate::AlertRecord,
    claimed: [Option<u64>; 2],
    sent: [Option<u64>; 2],
}

/// A run's records, compact (see [`compact`]).
struct RunEntry {
    /// The run's record without its workflow, which is `spec`.
    record: RunRecord,
    spec: Option<Packed<WorkflowSpec>>,
    /// The node ids, node types and worker ids its attempts and events name.
    names: Names,
    /// Attempts whose tasks the outbox marked published: `(node, iteration, attempt)`.
    published: foldhash::HashSet<(u32, u32, u32)>,
    attempts: Vec<Attempt>,
    /// Where an attempt is in `attempts`, by `(node, iteration, attempt)`.
    index: HashMap<(u32, u32, u32), u32>,
    /// In sequence order, each sequence number once.
    events: Vec<Event>,
    outcomes: u64,
    concurrency: Option<(String, u32)>,
    deadline_ms: Option<u64>,
    parent_reported: bool,
}

impl RunEntry {
    /// The run's record with its workflow.
    fn full_record(&self) -> Result<RunRecord> {
        let mut r = self.record.clone();
        r.spec = self.spec.as_ref().map(Packed::get).transpose()?;
        Ok(r)
    }

    /// Where attempt `(node_id, iteration, attempt)` is in `attempts`.
    fn position(&self, node_id: &str, iteration: u32, attempt: u32) -> Option<usize> {
        let node = self.names.find(node_id)?;
        self.index
            .get(&(node, iteration, attempt))
            .map(|&i| i as usize)
    }

    fn push_attempt(&mut self, a: Attempt) {
        let at = u32::try_from(self.attempts.len()).unwrap_or(u32::MAX);
        self.index.insert(a.key(), at);
        self.attempts.push(a);
    }

    fn attempt_record(&self, a: &Attempt) -> Result<AttemptRecord> {
        a.record(&self.record.run_id, &self.names)
    }

    /// The run's dead-lettered attempts, as records.
    fn dead_letters(&self) -> Result<Vec<AttemptRecord>> {
        self.attempts
            .iter()
            .filter(|a| a.rare().is_some_and(|r| r.dead_letter.is_some()))
            .map(|a| self.attempt_record(a))
            .collect()
    }

    /// Adds `e` unless an event with its sequence number is stored; keeps sequence order.
    fn add_event(&mut self, e: RunEvent) {
        let at = match self.events.last() {
            None => 0,
            Some(last) if last.seq < e.seq => self.events.len(),
            Some(_) => match self.events.binary_search_by_key(&e.seq, |x| x.seq) {
                Ok(_) => return,
                Err(i) => i,
            },
        };
        self.record.event_seq = self.record.event_seq.max(e.seq);
        let e = Event::new(e, &mut self.names);
        self.events.insert(at, e);
    }
}

/// Refuses a batch that would leave a concurrency group with more running runs than its
/// limit (counted as after the batch: its starts added, its finishes taken off).
fn check_limits(inner: &Inner, batch: &Batch) -> Result<()> {
    let mut delta: std::collections::BTreeMap<&str, (i64, u32)> = Default::default();
    let mut started: foldhash::HashSet<&str> = Default::default();
    for r in &batch.new_runs {
        if let (RunStatus::Running, Some((g, lim))) = (r.status, &r.concurrency)
            && !inner.runs.contains_key(&r.run_id)
        {
            let e = delta.entry(g).or_insert((0, *lim));
            e.0 += 1;
            e.1 = e.1.min(*lim);
            started.insert(&r.run_id);
        }
    }
    for u in &batch.run_updates {
        let Some(run) = inner.runs.get(&u.run_id) else {
            continue;
        };
        let Some((g, lim)) = &run.concurrency else {
            continue;
        };
        if u.status == RunStatus::Running && run.record.status == RunStatus::Queued {
            if started.insert(&u.run_id) {
                let e = delta.entry(g).or_insert((0, *lim));
                e.0 += 1;
                e.1 = e.1.min(*lim);
            }
        } else if u.status.is_final()
            && (run.record.status == RunStatus::Running || started.contains(u.run_id.as_str()))
        {
            delta.entry(g).or_insert((0, *lim)).0 -= 1;
        }
    }
    for (g, (d, lim)) in delta {
        if started.is_empty() || d <= 0 {
            continue;
        }
        let running = inner
            .runs
            .values()
            .filter(|r| {
                r.record.status == RunStatus::Running
                    && r.concurrency.as_ref().is_some_and(|(x, _)| x == g)
            })
            .count();
        let after = i64::try_from(running).unwrap_or(i64::MAX) + d;
        if after > i64::from(lim) {
            return Err(Error::Conflict {
                run_id: g.to_string(),
                detail: format!(
                    "concurrency group {g:?} would have {after} runs running, over its limit of {lim}"
                ),
            });
        }
    }
    Ok(())
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn dir(&self) -> MutexGuard<'_, directory::DirInner> {
        self.dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn commit(&self, batch: Batch) -> Result<CommitReport> {
        let mut report = CommitReport::default();
        let mut g = self.lock();
        let inner = &mut *g;
        for e in &batch.expect {
            match e {
                Expect::Absent { run_id } if inner.runs.contains_key(run_id) => {
                    return Err(Error::Conflict {
                        run_id: run_id.clone(),
                        detail: "it already exists".into(),
                    });
                }
                Expect::Outcomes { run_id, count } => {
                    let have = inner.runs.get(run_id).map(|r| r.outcomes);
                    if have != Some(*count) {
                        return Err(Error::Conflict {
                            run_id: run_id.clone(),
                            detail: format!("expected {count} recorded outcomes, found {have:?}"),
                        });
                    }
                }
                Expect::Absent { .. } => {}
                Expect::Events { run_id, seq } => {
                    if let Some(have) = inner.runs.get(run_id).map(|r| r.record.event_seq)
                        && have != *seq
                    {
                        return Err(Error::Conflict {
                            run_id: run_id.clone(),
                            detail: format!("expected event sequence {seq}, found {have}"),
                        });
                    }
                }
                Expect::Queued { run_id } => {
                    let have = inner.runs.get(run_id).map(|r| r.record.status);
                    if have != Some(RunStatus::Queued) {
                        return Err(Error::Conflict {
                            run_id: run_id.clone(),
                            detail: format!("expected a queued run, found {have:?}"),
                        });
                    }
                }
            }
        }
        if batch.limited() {
            check_limits(inner, &batch)?;
        }
        // Checked before anything is written: a new run whose key another run holds (and
        // this batch does not release) is a conflict.
        for r in &batch.new_runs {
            if let Some(k) = &r.idempotency_key
                && !inner.runs.contains_key(&r.run_id)
                && !batch.release_keys.contains(k)
                && inner.keys.get(k).is_some_and(|holder| *holder != r.run_id)
            {
                return Err(Error::Conflict {
                    run_id: r.run_id.clone(),
                    detail: format!("idempotency key {k} is held by another run"),
                });
            }
        }
        for k in &batch.release_keys {
            if let Some(holder) = inner.keys.remove(k)
                && let Some(run) = inner.runs.get_mut(&holder)
            {
                run.record.idempotency_key = None;
            }
        }
        for a in &batch.aliases {
            inner
                .aliases
                .entry(a.alias.clone())
                .or_insert_with(|| a.run_id.clone());
        }
        for r in batch.new_runs {
            if inner.runs.contains_key(&r.run_id) {
                report.runs_existing += 1;
                continue;
            }
            if let Some(k) = &r.idempotency_key {
                inner.keys.insert(k.clone(), r.run_id.clone());
            }
            inner.order.push(r.run_id.clone());
            let finished = r.status.is_final().then_some(r.at_ms);
            // One attempt per node is the common case: size for it up front.
            let nodes = r.spec.as_ref().map_or(0, |s| s.nodes.len());
            let record = RunRecord {
                run_id: r.run_id.clone(),
                idempotency_key: r.idempotency_key,
                workflow_id: r.spec.as_ref().map(|s| s.id.clone()).unwrap_or_default(),
                workflow_name: r.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                status: r.status,
                spec: None,
                params: r.params,
                error: r.error,
                error_node: None,
                created_ms: r.at_ms,
                updated_ms: r.at_ms,
                finished_ms: finished,
                parent: r.parent,
                event_seq: 0,
                tenant: r.tenant,
            };
            inner.runs.insert(
                r.run_id,
                RunEntry {
                    record,
                    spec: r.spec.map(Packed::new),
                    names: Names::default(),
                    published: Default::default(),
                    attempts: Vec::with_capacity(nodes),
                    index: HashMap::with_capacity(nodes),
                    events: Vec::new(),
                    outcomes: 0,
                    concurrency: r.concurrency,
                    deadline_ms: r.deadline_ms,
                    parent_reported: false,
                },
            );
        }
        for n in batch.new_attempts {
            let Some(run) = inner.runs.get_mut(&n.run_id) else {
                continue;
            };
            if run.position(&n.node_id, n.iteration, n.attempt).is_some() {
                report.attempts_existing += 1;
                continue;
            }
            let skipped = n.status == AttemptStatus::Skipped;
            let a = Attempt {
                node: run.names.intern(&n.node_id),
                iteration: n.iteration,
                attempt: n.attempt,
                node_type: run.names.intern(&n.node_type),
                worker: None,
                status: n.status,
                dispatched_ms: n.at_ms,
                finished_ms: skipped.then_some(n.at_ms),
                seq: None,
                output: None,
                rare: None,
            };
            run.push_attempt(a);
        }
        for o in batch.outcomes {
            let Some(run) = inner.runs.get_mut(&o.run_id) else {
                report.outcomes_ignored += 1;
                continue;
            };
            let Some(i) = run.position(&o.node_id, o.iteration, o.attempt) else {
                report.outcomes_ignored += 1;
                continue;
            };
            if run.attempts[i].status != AttemptStatus::Dispatched {
                report.outcomes_ignored += 1;
                continue;
            }
            run.outcomes += 1;
            let worker = o.worker_id.map(|w| run.names.intern(&w));
            let seq = run.outcomes;
            let a = &mut run.attempts[i];
            a.status = o.status;
            a.output = o.output.map(Packed::new);
            a.worker = worker;
            a.finished_ms = Some(o.at_ms);
            a.seq = Some(seq);
            let dead_letter = o.dead_letter.map(|(reason, inputs)| DeadLetterInfo {
                reason,
                state: "open".into(),
                inputs: Some(inputs),
                replayed_ms: None,
                replayed_by: None,
                replay_attempt: None,
            });
            if o.error.is_some() || o.error_type.is_some() || dead_letter.is_some() {
                let rare = a.rare_mut();
                rare.error = o.error;
                rare.error_type = o.error_type;
                rare.dead_letter = dead_letter;
            } else if let Some(rare) = a.rare.as_deref_mut() {
                rare.error = None;
                rare.error_type = None;
                rare.dead_letter = None;
            }
        }
        for u in batch.run_updates {
            let Some(run) = inner.runs.get_mut(&u.run_id) else {
                continue;
            };
            let r = &mut run.record;
            if r.status.is_final() {
                continue;
            }
            r.status = u.status;
            r.error = u.error;
            r.error_node = u.error_node;
            r.updated_ms = u.at_ms;
            if u.status.is_final() {
                r.finished_ms = Some(u.at_ms);
            }
        }
        mark(inner, &batch.published);
        for a in batch.audit {
            let k = (
                a.run_id.clone(),
                a.node_id.clone(),
                a.iteration,
                a.attempt,
                a.idx,
            );
            if inner.audit_keys.insert(k) {
                inner.audit.push(a);
            }
        }
        for e in batch.events {
            let Some(run) = inner.runs.get_mut(&e.run_id) else {
                continue;
            };
            run.add_event(e);
        }
        Ok(report)
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        self.lock()
            .runs
            .get(run_id)
            .map(RunEntry::full_record)
            .transpose()
    }

    async fn run_by_key(&self, key: &str) -> Result<Option<RunRecord>> {
        let g = self.lock();
        g.keys
            .get(key)
            .and_then(|id| g.runs.get(id))
            .map(RunEntry::full_record)
            .transpose()
    }

    async fn unreported_children(&self, before_ms: u64, limit: usize) -> Result<Vec<RunRecord>> {
        let g = self.lock();
        let mut out: Vec<&RunEntry> = g
            .runs
            .values()
            .filter(|r| {
                r.record.parent.is_some()
                    && !r.parent_reported
                    && r.record.finished_ms.is_some_and(|f| f <= before_ms)
            })
            .collect();
        out.sort_by_key(|r| r.record.finished_ms);
        out.into_iter()
            .take(limit)
            .map(RunEntry::full_record)
            .collect()
    }

    async fn mark_children_reported(&self, run_ids: &[String], _at_ms: u64) -> Result<()> {
        let mut g = self.lock();
        for id in run_ids {
            if let Some(r) = g.runs.get_mut(id) {
                r.parent_reported = true;
            }
        }
        Ok(())
    }

    async fn audit_log(&self, filter: &crate::AuditFilter) -> Result<Vec<crate::AuditEntry>> {
        let g = self.lock();
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        Ok(g.audit
            .iter()
            .rev()
            .filter(|a| filter.admits(a))
            .filter(|a| {
                filter
                    .tenant
                    .as_deref()
                    .is_none_or(|t| g.runs.get(&a.run_id).is_some_and(|r| r.record.tenant == t))
            })
            .take(limit)
            .cloned()
            .collect())
    }

    async fn alias_of(&self, run_id: &str) -> Result<Option<String>> {
        Ok(self.lock().aliases.get(run_id).cloned())
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let g = self.lock();
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        // Newest first, like the other stores: by creation time, then run id.
        let mut out: Vec<&RunEntry> = g
            .runs
            .values()
            .filter(|r| filter.admits(&r.record))
            .collect();
        out.sort_by(|a, b| {
            let (a, b) = (&a.record, &b.record);
            (b.created_ms, b.run_id.as_str()).cmp(&(a.created_ms, a.run_id.as_str()))
        });
        out.into_iter()
            .take(limit)
            .map(RunEntry::full_record)
            .collect()
    }

    async fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>> {
        let g = self.lock();
        let Some(run) = g.runs.get(run_id) else {
            return Ok(Vec::new());
        };
        let mut out = run
            .attempts
            .iter()
            .map(|a| run.attempt_record(a))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|a| a.seq.unwrap_or(u64::MAX));
        Ok(out)
    }

    async fn events(&self, run_id: &str) -> Result<Vec<RunEvent>> {
        let g = self.lock();
        let Some(run) = g.runs.get(run_id) else {
            return Ok(Vec::new());
        };
        run.events
            .iter()
            .map(|e| e.record(run_id, &run.names))
            .collect()
    }

    async fn mark_published(&self, attempts: &[AttemptKey], _at_ms: u64) -> Result<()> {
        mark(&mut self.lock(), attempts);
        Ok(())
    }

    async fn unpublished(&self, before_ms: u64, limit: usize) -> Result<Vec<AttemptKey>> {
        let g = self.lock();
        let mut out = Vec::new();
        for run in g
            .runs
            .values()
            .filter(|r| r.record.status == crate::RunStatus::Running)
        {
            for a in &run.attempts {
                if a.status == AttemptStatus::Dispatched
                    && a.dispatched_ms <= before_ms
                    && !run.published.contains(&a.key())
                {
                    out.push(AttemptKey {
                        run_id: run.record.run_id.clone(),
                        node_id: run.names.name(a.node).to_string(),
                        iteration: a.iteration,
                        attempt: a.attempt,
                    });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn reserve_rate(
        &self,
        queue: &str,
        interval_ms: f64,
        n: u32,
        not_before_ms: f64,
    ) -> Result<f64> {
        let mut g = self.lock();
        let tat = g.rates.entry(queue.to_string()).or_insert(0.0);
        let begin = tat.max(not_before_ms);
        *tat = begin + interval_ms * f64::from(n);
        Ok(begin)
    }

    async fn concurrency_usage(&self, group: &str) -> Result<(u64, u64)> {
        let g = self.lock();
        let (mut running, mut queued) = (0, 0);
        for r in g.runs.values() {
            if r.concurrency.as_ref().is_some_and(|(x, _)| x == group) {
                match r.record.status {
                    RunStatus::Running => running += 1,
                    RunStatus::Queued => queued += 1,
                    _ => {}
                }
            }
        }
        Ok((running, queued))
    }

    async fn startable_runs(&self, groups: Option<&[String]>, limit: usize) -> Result<Vec<String>> {
        let g = self.lock();
        // Free slots per group, then queued runs in submission order.
        let mut free: HashMap<&str, i64> = HashMap::new();
        for r in g.runs.values() {
            if let Some((x, lim)) = &r.concurrency {
                let e = free.entry(x.as_str()).or_insert(i64::from(*lim));
                if r.record.status == RunStatus::Running {
                    *e -= 1;
                }
            }
        }
        let mut out = Vec::new();
        for id in &g.order {
            let Some(r) = g.runs.get(id) else { continue };
            let Some((x, _)) = &r.concurrency else {
                continue;
            };
            if r.record.status != RunStatus::Queued
                || groups.is_some_and(|gs| !gs.iter().any(|s| s == x))
            {
                continue;
            }
            if let Some(f) = free.get_mut(x.as_str())
                && *f > 0
            {
                *f -= 1;
                out.push(id.clone());
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn overdue_runs(&self, now_ms: u64, limit: usize) -> Result<Vec<(String, u64)>> {
        let g = self.lock();
        let mut out: Vec<(u64, String)> = g
            .runs
            .values()
            .filter(|r| !r.record.status.is_final())
            .filter_map(|r| {
                r.deadline_ms
                    .filter(|d| *d <= now_ms)
                    .map(|d| (d, r.record.run_id.clone()))
            })
            .collect();
        out.sort();
        Ok(out.into_iter().take(limit).map(|(d, id)| (id, d)).collect())
    }

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetterRecord>> {
        let g = self.lock();
        let mut out: Vec<DeadLetterRecord> = Vec::new();
        for run in g.order.iter().filter_map(|id| g.runs.get(id)) {
            for a in run.dead_letters()? {
                if filter.admits(&run.record.workflow_name, &run.record.tenant, &a) {
                    out.push(DeadLetterRecord {
                        id: kora_model::wire::NodeTask::make_id(
                            &a.run_id,
                            &a.node_id,
                            a.iteration,
                            a.attempt,
                        ),
                        workflow_name: run.record.workflow_name.clone(),
                        run_status: run.record.status,
                        attempt: a,
                    });
                }
            }
        }
        out.sort_by_key(|d| (d.attempt.finished_ms, d.id.clone()));
        if filter.limit > 0 {
            out.truncate(filter.limit);
        }
        Ok(out)
    }

    async fn replay(&self, req: &ReplayRequest) -> Result<ReplayOutcome> {
        let key = crate::parse_dead_letter_id(&req.id)
            .ok_or_else(|| Error::Config(format!("{:?} is not a dead-letter id", req.id)))?;
        let mut g = self.lock();
        let run = g
            .runs
            .get_mut(&key.run_id)
            .ok_or_else(|| Error::RunNotFound(key.run_id.clone()))?;
        let attempts = run
            .attempts
            .iter()
            .map(|a| run.attempt_record(a))
            .collect::<Result<Vec<_>>>()?;
        let plan = crate::records::plan_replay(req, &key, &attempts, run.record.status).map_err(
            |detail| Error::Conflict {
                run_id: key.run_id.clone(),
                detail: format!("{} {}: {detail}", req.what(), req.id),
            },
        )?;
        let next = plan.next;
        for k in &plan.superseded {
            let Some(j) = run.position(&k.node_id, k.iteration, k.attempt) else {
                continue;
            };
            if let Some(dl) = run.attempts[j].dead_letter_mut() {
                dl.state = "replayed".into();
                dl.replayed_ms = Some(req.at_ms);
                dl.replayed_by = Some(req.actor.clone());
            }
        }
        if let Some(i) = run.position(&key.node_id, key.iteration, key.attempt)
            && let Some(dl) = run.attempts[i].dead_letter_mut()
        {
            dl.state = "replayed".into();
            dl.replayed_ms = Some(req.at_ms);
            dl.replayed_by = Some(req.actor.clone());
            dl.replay_attempt = Some(next);
        }
        let redispatched = plan.redispatched;
        for (node_id, iteration, attempt, node_type, overrides) in plan.fresh {
            let a = Attempt {
                node: run.names.intern(&node_id),
                iteration,
                attempt,
                node_type: run.names.intern(&node_type),
                worker: None,
                status: AttemptStatus::Dispatched,
                dispatched_ms: req.at_ms,
                finished_ms: None,
                seq: None,
                output: None,
                rare: overrides.map(|o| {
                    Box::new(compact::Rare {
                        overrides: Some(o),
                        ..Default::default()
                    })
                }),
            };
            run.push_attempt(a);
        }
        if req.restart.is_some() {
            let e = crate::records::restart_event(req, &key, next, run.record.event_seq + 1);
            run.add_event(e);
        }
        let r = &mut run.record;
        r.status = RunStatus::Running;
        r.error = None;
        r.error_node = None;
        r.finished_ms = None;
        r.updated_ms = req.at_ms;
        Ok(ReplayOutcome {
            run_id: key.run_id,
            node_id: key.node_id,
            attempt: next,
            redispatched,
        })
    }

    async fn purge_dead_letters(&self, filter: &DeadLetterFilter) -> Result<usize> {
        let mut g = self.lock();
        let mut n = 0;
        for run in g.runs.values_mut() {
            let mut purge = Vec::new();
            for (i, a) in run.attempts.iter().enumerate() {
                if a.rare().is_some_and(|r| r.dead_letter.is_some())
                    && filter.admits(
                        &run.record.workflow_name,
                        &run.record.tenant,
                        &run.attempt_record(a)?,
                    )
                {
                    purge.push(i);
                }
            }
            for i in purge {
                if let Some(dl) = run.attempts[i].dead_letter_mut()
                    && dl.state == "open"
                {
                    dl.state = "purged".into();
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    async fn put_trigger(&self, t: &crate::TriggerRecord) -> Result<()> {
        let mut g = self.lock();
        let old = g.triggers.get(&t.name);
        crate::records::trigger_written(t, u64::from(old.is_none_or(|o| o.tenant == t.tenant)))?;
        let created = old.map_or(t.created_ms, |o| o.created_ms);
        let mut t = t.clone();
        t.created_ms = created;
        g.triggers.insert(t.name.clone(), t);
        Ok(())
    }

    async fn triggers(&self) -> Result<Vec<crate::TriggerRecord>> {
        Ok(self.lock().triggers.values().cloned().collect())
    }

    async fn set_trigger_paused(&self, name: &str, paused: bool, at_ms: u64) -> Result<bool> {
        Ok(match self.lock().triggers.get_mut(name) {
            Some(t) => {
                t.paused = paused;
                t.updated_ms = at_ms;
                true
            }
            None => false,
        })
    }

    async fn active_workers(&self, since_ms: u64) -> Result<Vec<(String, u64)>> {
        let g = self.lock();
        let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for r in g.runs.values() {
            for a in &r.attempts {
                if let (Some(w), Some(f)) = (a.worker, a.finished_ms)
                    && f >= since_ms
                {
                    *counts.entry(r.names.name(w).to_string()).or_default() += 1;
                }
            }
        }
        Ok(counts.into_iter().collect())
    }

    async fn finished_since(&self, since_ms: u64, limit: usize) -> Result<Vec<crate::FinishedRun>> {
        let g = self.lock();
        let mut out: Vec<(String, crate::FinishedRun)> = g
            .runs
            .values()
            .filter_map(|r| {
                let rec = &r.record;
                let finished_ms = rec.finished_ms.filter(|f| *f >= since_ms)?;
                Some((
                    rec.run_id.clone(),
                    crate::FinishedRun {
                        tenant: rec.tenant.clone(),
                        workflow: if rec.workflow_name.is_empty() {
                            rec.workflow_id.clone()
                        } else {
                            rec.workflow_name.clone()
                        },
                        status: rec.status,
                        created_ms: rec.created_ms,
                        finished_ms,
                    },
                ))
            })
            .collect();
        out.sort_by(|a, b| (b.1.finished_ms, &a.0).cmp(&(a.1.finished_ms, &b.0)));
        Ok(out.into_iter().take(limit).map(|(_, f)| f).collect())
    }

    async fn stuck_runs(
        &self,
        progress_before_ms: u64,
        attempts_at_least: u32,
        limit: usize,
    ) -> Result<Vec<crate::StuckRun>> {
        let g = self.lock();
        let mut out = Vec::new();
        for run_id in &g.order {
            let Some(r) = g.runs.get(run_id) else {
                continue;
            };
            let rec = &r.record;
            if rec.status != RunStatus::Running {
                continue;
            }
            let mut progress = rec.created_ms.max(rec.updated_ms);
            let mut max_attempt = 0;
            let mut in_flight = Vec::new();
            for a in &r.attempts {
                progress = progress
                    .max(a.dispatched_ms)
                    .max(a.finished_ms.unwrap_or(0));
                max_attempt = max_attempt.max(a.attempt);
                if a.status == crate::AttemptStatus::Dispatched {
                    in_flight.push(r.names.name(a.node).to_string());
                }
            }
            if progress >= progress_before_ms && max_attempt < attempts_at_least {
                continue;
            }
            in_flight.sort();
            in_flight.dedup();
            out.push(crate::StuckRun {
                run_id: rec.run_id.clone(),
                tenant: rec.tenant.clone(),
                workflow: if rec.workflow_name.is_empty() {
                    rec.workflow_id.clone()
                } else {
                    rec.workflow_name.clone()
                },
                created_ms: rec.created_ms,
                progress_ms: progress,
                max_attempt,
                in_flight,
            });
        }
        out.sort_by(|a, b| (a.created_ms, &a.run_id).cmp(&(b.created_ms, &b.run_id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn open_alert(
        &self,
        a: &crate::NewAlert,
        now_ms: u64,
        reopen_resolved_before_ms: u64,
    ) -> Result<bool> {
        let mut g = self.lock();
        let reopen = match g.alerts.get(&a.subject) {
            None => true,
            Some(x) => x
                .record
                .resolved_ms
                .is_some_and(|r| r <= reopen_resolved_before_ms),
        };
        if reopen {
            g.alerts.insert(
                a.subject.clone(),
                MemAlert {
                    record: crate::AlertRecord {
                        subject: a.subject.clone(),
                        kind: a.kind.clone(),
                        severity: a.severity.clone(),
                        body: a.body.clone(),
                        opened_ms: now_ms,
                        resolved_ms: None,
                    },
                    claimed: [Some(now_ms), None],
                    sent: [None, None],
                },
            );
        }
        Ok(reopen)
    }

    async fn resolve_alert(
        &self,
        subject: &str,
        now_ms: u64,
    ) -> Result<Option<crate::AlertRecord>> {
        let mut g = self.lock();
        match g.alerts.get_mut(subject) {
            Some(a) if a.record.resolved_ms.is_none() => {
                a.record.resolved_ms = Some(now_ms);
                a.claimed[1] = Some(now_ms);
                Ok(Some(a.record.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn alert_sent(&self, subject: &str, resolve: bool, now_ms: u64) -> Result<()> {
        if let Some(a) = self.lock().alerts.get_mut(subject)
            && (!resolve || a.record.resolved_ms.is_some())
        {
            a.sent[usize::from(resolve)] = Some(now_ms);
        }
        Ok(())
    }

    async fn claim_unsent_alerts(
        &self,
        claimed_before_ms: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(crate::AlertRecord, bool)>> {
        let mut g = self.lock();
        let mut out = Vec::new();
        for resolve in [false, true] {
            let phase = usize::from(resolve);
            let mut due: Vec<&mut MemAlert> = g
                .alerts
                .values_mut()
                .filter(|a| {
                    a.sent[phase].is_none()
                        && a.record.resolved_ms.is_some() == resolve
                        && a.claimed[phase].is_none_or(|c| c < claimed_before_ms)
                })
                .collect();
            due.sort_by_key(|a| (a.record.resolved_ms, a.record.opened_ms));
            for a in due.into_iter().take(limit) {
                a.claimed[phase] = Some(now_ms);
                out.push((a.record.clone(), resolve));
            }
        }
        Ok(out)
    }

    async fn open_alerts(
        &self,
        kind: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::AlertRecord>> {
        let g = self.lock();
        let mut open: Vec<crate::AlertRecord> = g
            .alerts
            .values()
            .filter(|a| a.record.resolved_ms.is_none() && kind.is_none_or(|k| a.record.kind == k))
            .map(|a| a.record.clone())
            .collect();
        open.sort_by(|a, b| (a.opened_ms, &a.subject).cmp(&(b.opened_ms, &b.subject)));
        open.truncate(limit);
        Ok(open)
    }

    async fn live_runs(&self, limit: usize) -> Result<Vec<crate::LiveRuns>> {
        let g = self.lock();
        let mut counts: std::collections::BTreeMap<(String, String, &'static str), u64> =
            std::collections::BTreeMap::new();
        for r in g.runs.values() {
            let rec = &r.record;
            if !matches!(rec.status, RunStatus::Running | RunStatus::Queued) {
                continue;
            }
            let workflow = if rec.workflow_name.is_empty() {
                &rec.workflow_id
            } else {
                &rec.workflow_name
            };
            *counts
                .entry((rec.tenant.clone(), workflow.clone(), rec.status.as_str()))
                .or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .take(limit)
            .filter_map(|((tenant, workflow, status), runs)| {
                Some(crate::LiveRuns {
                    tenant,
                    workflow,
                    status: RunStatus::parse(status)?,
                    runs,
                })
            })
            .collect())
    }

    async fn tenant_active_runs(&self, tenant: &str) -> Result<u64> {
        Ok(self
            .lock()
            .runs
            .values()
            .filter(|r| r.record.tenant == tenant && !r.record.status.is_final())
            .count() as u64)
    }

    async fn delete_trigger(&self, name: &str) -> Result<bool> {
        Ok(self.lock().triggers.remove(name).is_some())
    }

    async fn results(&self, run_id: &str, node_ids: &[String]) -> Result<kora_model::Map> {
        let g = self.lock();
        let Some(run) = g.runs.get(run_id) else {
            return Ok(crate::records::results_from_iter(
                node_ids,
                std::iter::empty(),
            ));
        };
        // Each node's latest attempt, read straight from the compact records: a run's
        // results can be its whole size, so nothing else is made per node.
        let mut latest: HashMap<u32, &Attempt> = HashMap::new();
        for a in &run.attempts {
            let newer = latest
                .get(&a.node)
                .is_none_or(|b| (a.iteration, a.attempt) >= (b.iteration, b.attempt));
            if newer {
                latest.insert(a.node, a);
            }
        }
        let mut out = kora_model::Map::with_capacity(node_ids.len());
        for id in node_ids {
            let v = match run.names.find(id).and_then(|n| latest.get(&n)) {
                Some(a) => {
                    // Only a success's output is read (and decoded).
                    let output = match a.status {
                        AttemptStatus::Succeeded => {
                            a.output.as_ref().map(Packed::get).transpose()?
                        }
                        _ => None,
                    };
                    let rare = a.rare();
                    crate::records::node_result(
                        a.status,
                        output,
                        rare.and_then(|r| r.error.clone()),
                        rare.and_then(|r| r.error_type.clone()),
                    )
                }
                None => kora_model::Value::Null,
            };
            out.insert(id.clone(), v);
        }
        Ok(out)
    }
}

/// Marks tasks published (the outbox's hint).
fn mark(inner: &mut Inner, attempts: &[AttemptKey]) {
    for k in attempts {
        if let Some(run) = inner.runs.get_mut(&k.run_id) {
            let node = run.names.intern(&k.node_id);
            run.published.insert((node, k.iteration, k.attempt));
        }
    }
}
