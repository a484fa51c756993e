//! `kora submit`: a run for a deployment; with `--wait`, its results like `kora run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use kora_cli::input;
use kora_client::RunReport;
use kora_client::runs as client;
use serde::Serialize;

use super::{exit_of, print_report};
use crate::args::{Conn, Format, PriorityArg};
use crate::render::note;

pub(crate) struct Args {
    pub(crate) file: PathBuf,
    pub(crate) params: Option<String>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) priority: Option<PriorityArg>,
    pub(crate) tenant: String,
    pub(crate) wait: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) conn: Conn,
}

/// What `kora submit` prints without `--wait`.
#[derive(Serialize)]
struct Submitted {
    run_id: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deduplicated: bool,
}

pub(crate) async fn submit(a: Args, format: Format) -> anyhow::Result<ExitCode> {
    let local = kora_cli::settings::Local::from_env()?;
    let (mut spec, _) = input::load_workflow(&a.file, &local.limits)?;
    if let Some(p) = a.priority {
        spec.priority = match p {
            PriorityArg::Normal => kora_model::Priority::Normal,
            PriorityArg::High => kora_model::Priority::High,
        };
    }
    let params = input::load_params(a.params.as_deref(), &local.limits)?;
    let cfg = a.conn.load(serde_json::json!({}))?;
    let subjects = cfg.nats.subjects();
    let broker = kora_cli::connect::broker(&cfg, "kora-submit").await?;
    // Store the request even if no role has started yet.
    if cfg.nats.provision {
        kora_broker::topology::provision_streams(broker.as_ref(), &subjects, &cfg.topology())
            .await?;
    }
    // A keyed submission gets its own run id too: the coordinator decides whether the key
    // names a run inside the idempotency window (then this id becomes an alias of that run,
    // and we report that run) or not.
    let run_id = uuid::Uuid::now_v7().to_string();
    let keyed = a.idempotency_key.is_some();
    let ids: Vec<String> = spec.nodes.iter().map(|n| n.id.clone()).collect();
    let may_amend = kora_model::exits::may_amend(&spec);
    let from = client::events_position(broker.as_ref(), &subjects).await?;
    let submission = client::Submission {
        run_id: run_id.clone(),
        idempotency_key: a.idempotency_key,
        tenant: a.tenant.clone(),
        // A caller's trace context, as tracing-aware scripts pass it (`TRACEPARENT`): the
        // run's trace links to it.
        traceparent: std::env::var("TRACEPARENT")
            .ok()
            .and_then(|v| kora_model::trace::TraceParent::parse(&v)),
        ..client::Submission::new(spec, params)
    };
    client::submit(broker.as_ref(), &subjects, submission).await?;
    if !a.wait {
        let mut out = Submitted {
            run_id: run_id.clone(),
            deduplicated: false,
        };
        if keyed {
            let limit = a.timeout.unwrap_or(Duration::from_secs(30));
            match client::admission(&broker, &subjects, &run_id, from, limit).await? {
                Some(e) => {
                    if let Some(existing) = client::follow(&e) {
                        out = Submitted {
                            run_id: existing,
                            deduplicated: true,
                        };
                    }
                }
                None => note(&format!(
                    "warning: no coordinator took the submission in within {}; it is stored and is taken in when one runs (if its key names a recent run, that run stands for it)",
                    kora_model::duration::format(limit)
                )),
            }
        }
        broker.flush().await.ok();
        json_line(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let waited = {
        let wait = client::wait(&broker, &subjects, &run_id, from, a.timeout);
        tokio::pin!(wait);
        // A run nobody takes in would be waited on silently forever: say why after a while.
        let hint = async {
            tokio::time::sleep(ADMISSION_HINT).await;
            let taken =
                client::admission(&broker, &subjects, &run_id, from, Duration::from_secs(2)).await;
            if matches!(taken, Ok(None)) {
                note(&format!(
                    "still waiting: no coordinator has taken run {run_id} in after {}; is a scheduler and a coordinator running with prefix {:?} (`kora dev`, or `kora serve --role scheduler,coordinator`)? The submission is stored and starts when they run",
                    kora_model::duration::format(ADMISSION_HINT),
                    cfg.nats.prefix
                ));
            }
        };
        tokio::select! {
            w = &mut wait => w,
            () = hint => wait.await,
        }
    };
    let store = kora_cli::connect::store(&cfg).await?;
    let mut ending = match waited {
        Err(kora_client::Error::Timeout(_)) => {
            ended_unseen(store.as_ref(), &run_id, a.timeout.unwrap_or_default()).await?
        }
        w => w?,
    };
    let mut run_id = run_id;
    if let Some(existing) = client::follow(&ending) {
        note(&format!(
            "note: the idempotency key names run {existing}, submitted within the idempotency window: reporting that run"
        ));
        let rec = store
            .run(&existing)
            .await?
            .with_context(|| format!("run {existing} is not in the ledger"))?;
        ending = if rec.status.is_final() {
            RunReport::ending_of(&rec)
        } else {
            client::wait(&broker, &subjects, &existing, from, a.timeout).await?
        };
        run_id = existing;
    }
    let report = RunReport::build(store.as_ref(), run_id, &ids, may_amend, ending).await?;
    print_report(&report, format)?;
    Ok(exit_of(&report.status))
}

/// How long `--wait` waits for a coordinator to take the run in before saying none has.
const ADMISSION_HINT: Duration = Duration::from_secs(10);

/// One JSON object on one line (what scripts read from `kora submit`).
fn json_line<T: Serialize>(v: &T) -> anyhow::Result<()> {
    crate::render::say(&serde_json::to_string(v)?);
    Ok(())
}

/// The wait timed out: how the ledger sees the run. An ended run (its final event did not
/// reach this command) is reported from the ledger, with a warning; a run still going is an
/// error naming the nodes it waits on, so the user knows where to look.
async fn ended_unseen(
    store: &dyn kora_store::Store,
    run_id: &str,
    waited: Duration,
) -> anyhow::Result<kora_client::runs::Ending> {
    let waited = kora_model::duration::format(waited);
    let Some(rec) = store.run(run_id).await? else {
        anyhow::bail!(
            "run {run_id} did not start within {waited}: no coordinator recorded it (is a scheduler and a coordinator running on this prefix?); it is stored and starts when they run"
        );
    };
    if rec.status.is_final() {
        note(&format!(
            "warning: run {run_id} ended but its final event did not reach this command within {waited}; its results are read from the ledger"
        ));
        return Ok(RunReport::ending_of(&rec));
    }
    let now = kora_model::now_ms();
    let open: Vec<String> = store
        .attempts(run_id)
        .await?
        .iter()
        .filter(|a| a.finished_ms.is_none())
        .map(|a| {
            format!(
                "{} (iteration {}, attempt {}, dispatched {} ago)",
                a.node_id,
                a.iteration,
                a.attempt,
                kora_model::duration::format(Duration::from_millis(
                    now.saturating_sub(a.dispatched_ms)
                ))
            )
        })
        .collect();
    let waiting = if open.is_empty() {
        "no node is dispatched".to_string()
    } else {
        format!("waiting on {}", open.join(", "))
    };
    anyhow::bail!(
        "run {run_id} did not finish within {waited}: the ledger has it {}, {waiting}; follow it with `kora runs show {run_id}`",
        rec.status.as_str()
    )
}
