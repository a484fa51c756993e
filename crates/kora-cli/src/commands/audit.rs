//! `kora audit`: the entries AuditLogNode recorded in the ledger, or (`--api`) the gateway's
//! trail of mutating API calls.

use std::process::ExitCode;

use crate::args::{Conn, Format};
use crate::render::{self, ApiAuditRow, AuditRow};

pub(crate) struct Args {
    pub(crate) api: bool,
    pub(crate) tenant: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) run: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) since: Option<String>,
    pub(crate) limit: usize,
    pub(crate) conn: Conn,
}

pub(crate) async fn audit(a: Args, format: Format) -> anyhow::Result<ExitCode> {
    let cfg = a.conn.load(serde_json::json!({}))?;
    let store = kora_cli::connect::store(&cfg).await?;
    let since_ms = a
        .since
        .as_deref()
        .map(|s| kora_client::parse_since(s, kora_model::now_ms()))
        .transpose()?;
    if a.api {
        let entries = store
            .api_audit(&kora_store::ApiAuditFilter {
                tenant: a.tenant,
                actor: a.actor,
                action: a.action,
                since_ms,
                before_id: None,
                limit: a.limit,
            })
            .await?;
        let rows: Vec<ApiAuditRow> = entries.iter().map(ApiAuditRow::from).collect();
        render::api_audit(&rows, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let entries = store
        .audit_log(&kora_store::AuditFilter {
            run_id: a.run,
            event_type: a.event_type,
            since_ms,
            limit: a.limit,
            ..Default::default()
        })
        .await?;
    let rows: Vec<AuditRow> = entries.iter().map(AuditRow::from).collect();
    render::audit(&rows, format)?;
    Ok(ExitCode::SUCCESS)
}
