//! `kora runs`: show, list, cancel and retry runs.

use std::process::ExitCode;
use std::time::Duration;

use kora_cli::operator::{actor, overrides};
use kora_model::wire::EventKind;
use kora_store::{RunFilter, RunStatus};

use crate::args::RunsCommand;
use crate::render::{self, AttemptRow, HistoryItem, RunDetail, RunRow, note, say};

pub(crate) async fn runs(command: RunsCommand) -> anyhow::Result<ExitCode> {
    match command {
        RunsCommand::Show {
            run_id,
            wait,
            timeout,
            format,
            conn,
        } => {
            let cfg = conn.load(serde_json::json!({}))?;
            let store = kora_cli::connect::store(&cfg).await?;
            // A submission deduplicated by its idempotency key stands for an earlier run.
            let run_id = match store.alias_of(&run_id).await? {
                Some(real) => {
                    note(&format!(
                        "note: {run_id} was deduplicated by its idempotency key onto run {real}"
                    ));
                    real
                }
                None => run_id,
            };
            let Some(mut rec) = store.run(&run_id).await? else {
                note(&format!(
                    "error: no run {run_id} in the ledger at {}",
                    kora_store::pg::redact(&cfg.database.url)
                ));
                return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
            };
            if wait {
                let until = tokio::time::Instant::now() + timeout;
                while !rec.status.is_final() && tokio::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    rec = store.run(&run_id).await?.unwrap_or(rec);
                }
                if !rec.status.is_final() {
                    note(&format!(
                        "warning: run {run_id} is still {} after {}",
                        rec.status.as_str(),
                        kora_model::duration::format(timeout)
                    ));
                }
            }
            let ids: Vec<String> = rec
                .spec
                .as_ref()
                .map(|s| s.nodes.iter().map(|n| n.id.clone()).collect())
                .unwrap_or_default();
            let history = store
                .events(&run_id)
                .await?
                .into_iter()
                .filter(|e| {
                    matches!(
                        e.kind,
                        EventKind::RunQueued
                            | EventKind::RunStarted
                            | EventKind::RunCancelled
                            | EventKind::RunRestarted
                    )
                })
                .map(|e| HistoryItem {
                    event: e.kind.as_str(),
                    at_ms: e.at_ms,
                    node_id: e.node_id,
                    detail: e.detail,
                })
                .collect();
            let detail = RunDetail {
                results: store
                    .final_results(
                        &run_id,
                        &ids,
                        rec.spec.as_ref().is_some_and(kora_model::exits::may_amend),
                    )
                    .await?,
                attempts: store
                    .attempts(&run_id)
                    .await?
                    .iter()
                    .map(AttemptRow::from)
                    .collect(),
                history,
                workflow: rec.workflow_name,
                run_id: rec.run_id,
                status: rec.status.as_str(),
                error: rec.error,
                error_node: rec.error_node,
                created_ms: rec.created_ms,
                finished_ms: rec.finished_ms,
            };
            render::run_detail(&detail, format)?;
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::List {
            stuck: true,
            workflow,
            tenant,
            limit,
            format,
            conn,
            ..
        } => {
            let cfg = conn.load(serde_json::json!({}))?;
            let store = kora_cli::connect::store(&cfg).await?;
            let now = kora_model::now_ms();
            let m = &cfg.monitoring;
            let after_ms = m.stuck_after_secs.max(1).saturating_mul(1000);
            let reasons = kora_client::overview::stuck_reasons(store.as_ref()).await?;
            let rows: Vec<render::StuckRow> = store
                .stuck_runs(now.saturating_sub(after_ms), m.retry_loop_attempts, 10_000)
                .await?
                .into_iter()
                .filter(|s| workflow.as_ref().is_none_or(|w| &s.workflow == w))
                .filter(|s| tenant.as_ref().is_none_or(|t| &s.tenant == t))
                .take(limit)
                .map(|s| render::StuckRow {
                    reason: reasons.get(&s.run_id).cloned(),
                    idle_secs: now.saturating_sub(s.progress_ms) / 1000,
                    run_id: s.run_id,
                    workflow: s.workflow,
                    tenant: s.tenant,
                    created_ms: s.created_ms,
                    max_attempt: s.max_attempt,
                    in_flight: s.in_flight,
                })
                .collect();
            render::stuck(&rows, format)?;
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::List {
            status,
            workflow,
            tenant,
            since,
            limit,
            format,
            conn,
            ..
        } => {
            let cfg = conn.load(serde_json::json!({}))?;
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown status {s:?}: use queued, running, succeeded, failed, cancelled or rejected"
                    )
                })?),
            };
            let store = kora_cli::connect::store(&cfg).await?;
            let since_ms = since
                .as_deref()
                .map(|s| kora_client::parse_since(s, kora_model::now_ms()))
                .transpose()?;
            let runs = store
                .runs(&RunFilter {
                    status,
                    workflow,
                    tenant,
                    since_ms,
                    limit,
                    ..Default::default()
                })
                .await?;
            let rows: Vec<RunRow> = runs.iter().map(RunRow::from).collect();
            render::runs(&rows, format)?;
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Cancel {
            run_id,
            timeout,
            conn,
        } => {
            let control = kora_cli::connect::control(&conn.load(serde_json::json!({}))?).await?;
            match control.cancel(&run_id, &actor(), timeout).await? {
                RunStatus::Cancelled => {
                    say(&format!("run {run_id} cancelled"));
                    Ok(ExitCode::SUCCESS)
                }
                RunStatus::Running | RunStatus::Queued => {
                    note(&format!(
                        "error: run {run_id} is not cancelled yet after {}: is a coordinator running? The request is kept and applies when one starts.",
                        kora_model::duration::format(timeout)
                    ));
                    Ok(ExitCode::from(crate::EXIT_FAILED))
                }
                other => {
                    say(&format!(
                        "run {run_id} had already ended: {}",
                        other.as_str()
                    ));
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        RunsCommand::Retry {
            run_id,
            from,
            sets,
            input_file,
            timeout,
            conn,
        } => {
            let control = kora_cli::connect::control(&conn.load(serde_json::json!({}))?)
                .await?
                .with_wait(timeout);
            if let Some(node) = from {
                let inputs = overrides(&sets, input_file.as_deref())?;
                let out = control
                    .restart_from(&run_id, &node, inputs, &actor())
                    .await?;
                say(&format!(
                    "run {} restarts from {} (attempt {}); the nodes downstream of it run again",
                    out.run_id, out.node_id, out.attempt
                ));
                return Ok(ExitCode::SUCCESS);
            }
            for out in control.retry_run(&run_id, &actor()).await? {
                say(&format!(
                    "run {} resumes with {} attempt {}",
                    out.run_id, out.node_id, out.attempt
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
