//! Admission: a run the scheduler validated becomes a ledger row (running, or queued under its
//! concurrency limit) with its first dispatches; a rejected one is recorded with its problems;
//! a keyed submission inside the idempotency window becomes an alias of the run holding the key.

use kora_model::plan::RunState;
use kora_model::wire::{Admission, EventKind, RunRequest};
use kora_model::{Map, now_ms};
use kora_store::{NewRun, RunStatus};
use tracing::{debug, info};

use crate::Coordinator;
use crate::apply::apply;
use crate::config::ms;
use crate::pending::{Ev, Pending, Refusal};
use crate::state::ActiveRun;

impl Coordinator {
    pub(crate) async fn on_admission(
        &mut self,
        a: Admission,
        p: &mut Pending,
    ) -> Result<(), Refusal> {
        match a {
            Admission::Rejected {
                run_id,
                problems,
                tenant,
                ..
            } => self.record_rejected(run_id, problems, tenant, p).await,
            Admission::Admitted { request } => self.admit(*request, p).await,
        }
    }

    async fn exists(&self, run_id: &str) -> Result<bool, Refusal> {
        Ok(self.runs.contains_key(run_id)
            || self
                .store
                .run(run_id)
                .await
                .map_err(Refusal::store)?
                .is_some())
    }

    async fn record_rejected(
        &mut self,
        run_id: String,
        problems: Vec<String>,
        tenant: String,
        p: &mut Pending,
    ) -> Result<(), Refusal> {
        if self.exists(&run_id).await? {
            return Ok(());
        }
        let now = now_ms();
        self.metrics.runs_rejected.inc();
        p.expect_absent(&run_id);
        p.batch.new_runs.push(NewRun {
            run_id: run_id.clone(),
            idempotency_key: None,
            spec: None,
            params: Map::new(),
            status: RunStatus::Rejected,
            error: Some(problems.join("\n")),
            at_ms: now,
            concurrency: None,
            deadline_ms: None,
            parent: None,
            tenant,
        });
        let detail = serde_json::json!({ "problems": problems });
        let ev = Ev::run(EventKind::RunRejected).detail(Some(detail));
        p.emit_at(&self.env.subjects, &run_id, 1, now, ev);
        Ok(())
    }

    async fn admit(&mut self, mut request: RunRequest, p: &mut Pending) -> Result<(), Refusal> {
        let now = now_ms();
        // Idempotency keys are per tenant: another tenant's key is another key.
        if let Some(key) = request.idempotency_key.as_mut() {
            *key = kora_model::tenant::scoped_key(&request.tenant, key);
        }
        let run_id = request.run_id.clone();
        if self.exists(&run_id).await? {
            debug!(%run_id, "run already admitted");
            return Ok(());
        }
        if let Some(key) = &request.idempotency_key
            && self.deduplicated(&run_id, key, now, p).await?
        {
            return Ok(());
        }
        let compiled = kora_model::compile(
            &request.workflow,
            self.env.catalog.as_ref(),
            Some(&request.params),
        );
        let compiled = match compiled {
            Ok((c, _)) => c,
            Err(problems) => {
                let problems = problems.iter().map(ToString::to_string).collect();
                return self
                    .record_rejected(run_id, problems, request.tenant, p)
                    .await;
            }
        };
        // Compiling with the parameters checked the concurrency key is present.
        let group = request
            .workflow
            .concurrency_group(&request.params)
            .ok()
            .flatten();
        // Over its concurrency limit (or behind runs already waiting), the run is recorded
        // queued and starts when a slot frees. The ledger refuses the commit if another
        // coordinator took the slot meanwhile; the batch is then retried.
        let queued = match &group {
            Some((g, limit)) => {
                let (running, waiting) = self
                    .store
                    .concurrency_usage(g)
                    .await
                    .map_err(Refusal::store)?;
                let here = p.groups.entry(g.clone()).or_default();
                let queued = waiting + here.1 > 0 || running + here.0 >= u64::from(*limit);
                if queued {
                    here.1 += 1;
                } else {
                    here.0 += 1;
                }
                queued
            }
            None => false,
        };
        let submitted = if request.submitted_at_ms > 0 {
            request.submitted_at_ms.min(now)
        } else {
            now
        };
        // Validation keeps deadline_secs finite and bounded.
        let deadline_ms = request
            .workflow
            .deadline_secs
            .and_then(|d| std::time::Duration::try_from_secs_f64(d).ok())
            .map(|d| submitted.saturating_add(ms(d)));
        if let Some(d) = deadline_ms {
            p.deadlines.push((d, run_id.clone()));
        }
        if queued {
            self.metrics.runs_queued.inc();
            info!(%run_id, workflow = %request.workflow.name, group = group.as_ref().map(|g| g.0.as_str()), "run queued under its concurrency limit");
        } else {
            self.metrics.runs_started.inc();
            info!(%run_id, workflow = %request.workflow.name, "run started");
        }
        let state = RunState::new(compiled, &request.params).keep_leaf_outputs(false);
        p.expect_absent(&run_id);
        let mut run = ActiveRun::new(
            run_id.clone(),
            state,
            0,
            group.as_ref().map(|g| g.0.clone()),
            request.parent.clone(),
            request.tenant.clone(),
        );
        run.created_ms = submitted;
        if kora_broker::trace::enabled() {
            // The run's root span: its trace is the run's (derived from its id, so every
            // process and a replay find it); a caller's own trace context is linked.
            let now_t = std::time::SystemTime::now();
            let mut root = kora_broker::trace::SpanSpec::new(
                format!("kora.run {}", request.workflow.name),
                kora_broker::trace::at_ms(submitted),
                now_t,
            )
            .attr("kora.run_id", run_id.clone())
            .attr("kora.workflow", request.workflow.name.clone())
            .attr("kora.tenant", request.tenant.clone());
            root.ids = Some(kora_model::trace::TraceParent::of_run(&run_id));
            root.links.extend(p.trace_in.take());
            // Made once the run is durable (a batch that fails is redelivered and remade).
            p.spans.push(root);
        }
        // The compiled workflow holds its own copy; the ledger takes the request's.
        p.batch.new_runs.push(NewRun {
            run_id: run_id.clone(),
            idempotency_key: request.idempotency_key,
            spec: Some(request.workflow),
            params: request.params,
            status: if queued {
                RunStatus::Queued
            } else {
                RunStatus::Running
            },
            error: None,
            at_ms: now,
            concurrency: group.clone(),
            deadline_ms,
            parent: request.parent,
            tenant: request.tenant,
        });
        p.emit(
            &self.env.subjects,
            &mut run,
            now,
            Ev::run(EventKind::RunAccepted),
        );
        if let (true, Some((g, limit))) = (queued, &group) {
            let detail = serde_json::json!({ "group": g, "limit": limit });
            let ev = Ev::run(EventKind::RunQueued).detail(Some(detail));
            p.emit(&self.env.subjects, &mut run, now, ev);
            return Ok(());
        }
        let actions = run.state.start(now);
        apply(&self.env, &mut run, actions, now, p);
        p.touched.push(run_id.clone());
        self.runs.insert(run_id, run);
        Ok(())
    }

    /// A keyed submission: `true` when the key names a run inside the idempotency window
    /// (this submission becomes its alias); past the window, the key is released to this run.
    async fn deduplicated(
        &mut self,
        run_id: &str,
        key: &str,
        now: u64,
        p: &mut Pending,
    ) -> Result<bool, Refusal> {
        // Only a keyed submission can have become an alias.
        if self
            .store
            .alias_of(run_id)
            .await
            .map_err(Refusal::store)?
            .is_some()
        {
            debug!(%run_id, "submission already deduplicated");
            return Ok(true);
        }
        let holder = match p.keys.get(key) {
            Some(id) => Some((id.clone(), now)),
            None => self
                .store
                .run_by_key(key)
                .await
                .map_err(Refusal::store)?
                .map(|r| (r.run_id, r.created_ms)),
        };
        match holder {
            Some((existing, created))
                if now.saturating_sub(created) < ms(self.env.cfg.idempotency_window) =>
            {
                // The same request again: this submission is that run.
                info!(%run_id, %existing, key, "submission deduplicated by its idempotency key");
                self.metrics.runs_deduplicated.inc();
                p.batch.aliases.push(kora_store::Alias {
                    alias: run_id.to_string(),
                    run_id: existing.clone(),
                    at_ms: now,
                });
                let detail = serde_json::json!({ "run_id": existing, "idempotency_key": key });
                let ev = Ev::run(EventKind::RunDeduplicated).detail(Some(detail));
                p.announce(&self.env.subjects, run_id, now, ev);
                return Ok(true);
            }
            Some((old, _)) => {
                info!(%run_id, %old, key, "idempotency key past its window: released to a new run");
                p.batch.release_keys.push(key.to_string());
            }
            None => {}
        }
        p.keys.insert(key.to_string(), run_id.to_string());
        Ok(false)
    }
}
