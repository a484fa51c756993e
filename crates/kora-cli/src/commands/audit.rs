//! `kora audit`: the entries AuditLogNode recorded in the ledger.

use std::process::ExitCode;

use crate::args::{Conn, Format};
use crate::render::{self, AuditRow};

pub(crate) async fn audit(
    run: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    limit: usize,
    format: Format,
    conn: Conn,
) -> anyhow::Result<ExitCode> {
    let cfg = conn.load(serde_json::json!({}))?;
    let store = kora_cli::connect::store(&cfg).await?;
    let since_ms = since
        .as_deref()
        .map(|s| kora_client::parse_since(s, kora_model::now_ms()))
        .transpose()?;
    let entries = store
        .audit_log(&kora_store::AuditFilter {
            run_id: run,
            event_type,
            since_ms,
            limit,
            ..Default::default()
        })
        .await?;
    let rows: Vec<AuditRow> = entries.iter().map(AuditRow::from).collect();
    render::audit(&rows, format)?;
    Ok(ExitCode::SUCCESS)
}
