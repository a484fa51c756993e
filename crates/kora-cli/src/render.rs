//! Printing, in one place: each command's output is a `Serialize` record printed as JSON
//! (`--format json`, for programs) or as a table sized to the terminal (`--format table`).

use comfy_table::{ContentArrangement, Table, presets};
use kora_model::{Map, Value};
use kora_store::{AttemptRecord, AuditEntry, DeadLetterRecord, RunRecord, TriggerRecord};
use serde::Serialize;

use crate::args::Format;

pub(crate) fn json<T: Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    say(&serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A table with these columns, as wide as the terminal allows (unbounded when not a terminal).
pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().map(|h| h.to_uppercase()));
    t
}

/// A time as a date, or `-`.
pub(crate) fn when(ms: Option<u64>) -> String {
    ms.and_then(|m| chrono::DateTime::from_timestamp_millis(i64::try_from(m).ok()?))
        .map_or_else(
            || "-".into(),
            |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
}

/// Text cut to `width` characters.
pub(crate) fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    text.chars()
        .take(width.saturating_sub(1))
        .collect::<String>()
        + "…"
}

/// Node results as a table: node, whether it ran, failed or was skipped, and its output.
pub(crate) fn results(results: &Map) -> Table {
    let mut t = table(&["node", "status", "output"]);
    for (id, v) in results {
        let status = match v {
            Value::Null => "skipped",
            Value::Object(o) if o.get("failed") == Some(&Value::Bool(true)) => "failed",
            _ => "ok",
        };
        let text = if v.is_null() {
            "-".to_string()
        } else {
            cut(&v.to_string(), 100)
        };
        t.add_row(vec![id.as_str(), status, text.as_str()]);
    }
    t
}

/// A run in a list.
#[derive(Serialize)]
pub(crate) struct RunRow {
    pub(crate) run_id: String,
    pub(crate) status: &'static str,
    pub(crate) workflow: String,
    pub(crate) tenant: String,
    pub(crate) created_ms: u64,
    pub(crate) finished_ms: Option<u64>,
}

impl From<&RunRecord> for RunRow {
    fn from(r: &RunRecord) -> Self {
        RunRow {
            run_id: r.run_id.clone(),
            status: r.status.as_str(),
            workflow: if r.workflow_name.is_empty() {
                r.workflow_id.clone()
            } else {
                r.workflow_name.clone()
            },
            tenant: r.tenant.clone(),
            created_ms: r.created_ms,
            finished_ms: r.finished_ms,
        }
    }
}

pub(crate) fn runs(rows: &[RunRow], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json(rows);
    }
    let mut t = table(&["run", "status", "workflow", "tenant", "created", "finished"]);
    for r in rows {
        t.add_row(vec![
            r.run_id.clone(),
            r.status.to_string(),
            r.workflow.clone(),
            r.tenant.clone(),
            when(Some(r.created_ms)),
            when(r.finished_ms),
        ]);
    }
    print_table(&t);
    Ok(())
}

/// A stuck run (`kora runs list --stuck`).
#[derive(Serialize)]
pub(crate) struct StuckRow {
    pub(crate) run_id: String,
    pub(crate) workflow: String,
    pub(crate) tenant: String,
    /// The monitor's reason, once a coordinator has judged it.
    pub(crate) reason: Option<String>,
    /// Seconds since the run's last activity.
    pub(crate) idle_secs: u64,
    pub(crate) created_ms: u64,
    pub(crate) max_attempt: u32,
    pub(crate) in_flight: Vec<String>,
}

pub(crate) fn stuck(rows: &[StuckRow], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json(rows);
    }
    let mut t = table(&[
        "run",
        "workflow",
        "tenant",
        "reason",
        "idle",
        "attempt",
        "waiting on",
        "created",
    ]);
    for r in rows {
        t.add_row(vec![
            r.run_id.clone(),
            r.workflow.clone(),
            r.tenant.clone(),
            r.reason.clone().unwrap_or_else(|| "-".into()),
            kora_model::duration::format(std::time::Duration::from_secs(r.idle_secs)),
            r.max_attempt.to_string(),
            r.in_flight.join(", "),
            when(Some(r.created_ms)),
        ]);
    }
    print_table(&t);
    Ok(())
}

/// One attempt of a node.
#[derive(Serialize)]
pub(crate) struct AttemptRow {
    pub(crate) node_id: String,
    pub(crate) iteration: u32,
    pub(crate) attempt: u32,
    pub(crate) status: &'static str,
    pub(crate) error: Option<String>,
    pub(crate) error_type: Option<String>,
    pub(crate) worker_id: Option<String>,
    pub(crate) dispatched_ms: u64,
    pub(crate) finished_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) overrides: Option<Map>,
}

impl From<&AttemptRecord> for AttemptRow {
    fn from(a: &AttemptRecord) -> Self {
        AttemptRow {
            node_id: a.node_id.clone(),
            iteration: a.iteration,
            attempt: a.attempt,
            status: a.status.as_str(),
            error: a.error.clone(),
            error_type: a.error_type.clone(),
            worker_id: a.worker_id.clone(),
            dispatched_ms: a.dispatched_ms,
            finished_ms: a.finished_ms,
            overrides: a.overrides.clone(),
        }
    }
}

/// What happened to a run as a whole: queued, started, cancelled, restarted (and by whom).
#[derive(Serialize)]
pub(crate) struct HistoryItem {
    pub(crate) event: &'static str,
    pub(crate) at_ms: u64,
    pub(crate) node_id: Option<String>,
    pub(crate) detail: Option<Value>,
}

/// `kora runs show`.
#[derive(Serialize)]
pub(crate) struct RunDetail {
    pub(crate) run_id: String,
    pub(crate) status: &'static str,
    pub(crate) workflow: String,
    pub(crate) error: Option<String>,
    pub(crate) error_node: Option<String>,
    pub(crate) created_ms: u64,
    pub(crate) finished_ms: Option<u64>,
    pub(crate) results: Map,
    pub(crate) attempts: Vec<AttemptRow>,
    pub(crate) history: Vec<HistoryItem>,
}

pub(crate) fn run_detail(d: &RunDetail, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json(d);
    }
    say(&format!(
        "run {}  {}  workflow {:?}",
        d.run_id, d.status, d.workflow
    ));
    if let Some(e) = &d.error {
        say(&format!("error: {e}"));
    }
    print_table(&results(&d.results));
    for h in &d.history {
        let by = h
            .detail
            .as_ref()
            .and_then(|d| d["by"].as_str())
            .map(|b| format!(" by {b}"))
            .unwrap_or_default();
        let node = h
            .node_id
            .as_ref()
            .map(|n| format!(" from {n}"))
            .unwrap_or_default();
        say(&format!("{} at {}{node}{by}", h.event, when(Some(h.at_ms))));
    }
    // Every attempt of the nodes that failed or were retried, with its error.
    let notable: Vec<&AttemptRow> = d
        .attempts
        .iter()
        .filter(|a| a.attempt > 1 || a.status == "failed")
        .collect();
    if !notable.is_empty() {
        say("attempts that failed or were retried:");
        let mut t = table(&["node", "iteration", "attempt", "status", "error"]);
        for a in notable {
            t.add_row(vec![
                a.node_id.clone(),
                a.iteration.to_string(),
                a.attempt.to_string(),
                a.status.to_string(),
                cut(a.error.as_deref().unwrap_or(""), 120),
            ]);
        }
        print_table(&t);
    }
    Ok(())
}

/// A dead letter.
#[derive(Serialize)]
pub(crate) struct DeadLetterRow {
    pub(crate) id: String,
    pub(crate) workflow: String,
    pub(crate) run_id: String,
    pub(crate) run_status: &'static str,
    pub(crate) node_id: String,
    pub(crate) node_type: String,
    pub(crate) iteration: u32,
    pub(crate) attempt: u32,
    pub(crate) reason: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) error_type: Option<String>,
    pub(crate) failed_ms: Option<u64>,
    pub(crate) inputs: Option<Map>,
    pub(crate) replayed_ms: Option<u64>,
    pub(crate) replayed_by: Option<String>,
    pub(crate) replay_attempt: Option<u32>,
    /// `kora dlq show`: every attempt of its node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attempts: Option<Vec<AttemptRow>>,
}

impl From<&DeadLetterRecord> for DeadLetterRow {
    fn from(d: &DeadLetterRecord) -> Self {
        let a = &d.attempt;
        let info = a.dead_letter.as_ref();
        DeadLetterRow {
            id: d.id.clone(),
            workflow: d.workflow_name.clone(),
            run_id: a.run_id.clone(),
            run_status: d.run_status.as_str(),
            node_id: a.node_id.clone(),
            node_type: a.node_type.clone(),
            iteration: a.iteration,
            attempt: a.attempt,
            reason: info.map(|i| i.reason.clone()),
            state: info.map(|i| i.state.clone()),
            error: a.error.clone(),
            error_type: a.error_type.clone(),
            failed_ms: a.finished_ms,
            inputs: info.and_then(|i| i.inputs.clone()),
            replayed_ms: info.and_then(|i| i.replayed_ms),
            replayed_by: info.and_then(|i| i.replayed_by.clone()),
            replay_attempt: info.and_then(|i| i.replay_attempt),
            attempts: None,
        }
    }
}

pub(crate) fn dead_letters(rows: &[DeadLetterRow], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json(rows);
    }
    if rows.is_empty() {
        say("no dead letters match");
        return Ok(());
    }
    let mut t = table(&["id", "failed", "workflow", "reason", "state", "error"]);
    for d in rows {
        let replayed = d
            .replayed_by
            .as_ref()
            .map(|b| format!(" (replayed by {b} at {})", when(d.replayed_ms)))
            .unwrap_or_default();
        t.add_row(vec![
            d.id.clone(),
            when(d.failed_ms),
            if d.workflow.is_empty() {
                "-".into()
            } else {
                d.workflow.clone()
            },
            d.reason.clone().unwrap_or_default(),
            format!("{}{replayed}", d.state.as_deref().unwrap_or_default()),
            cut(
                d.error
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or(""),
                80,
            ),
        ]);
    }
    print_table(&t);
    note(&format!("{} dead letter(s)", rows.len()));
    Ok(())
}

pub(crate) fn dead_letter(d: &DeadLetterRow, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json(d);
    }
    say(&format!("dead letter {}", d.id));
    say(&format!(
        "  workflow {:?}, run {} ({})",
        d.workflow, d.run_id, d.run_status
    ));
    say(&format!(
        "  node {} ({}), iteration {}, attempt {}",
        d.node_id, d.node_type, d.iteration, d.attempt
    ));
    say(&format!(
        "  reason {}, state {}",
        d.reason.as_deref().unwrap_or(""),
        d.state.as_deref().unwrap_or("")
    ));
    say(&format!(
        "  error ({}) {}",
        d.error_type.as_deref().unwrap_or("?"),
        d.error.as_deref().unwrap_or("")
    ));
    say(&format!(
        "  inputs {}",
        serde_json::to_string(&d.inputs).unwrap_or_default()
    ));
    if let Some(by) = &d.replayed_by {
        say(&format!(
            "  replayed by {by} at {} as attempt {}",
            when(d.replayed_ms),
            d.replay_attempt.unwrap_or(0)
        ));
    }
    say("  attempts of this node:");
    let mut t = table(&["attempt", "status", "when", "error", "overrides"]);
    for a in d.attempts.iter().flatten() {
        t.add_row(vec![
            a.attempt.to_string(),
            a.status.to_string(),
            when(a.finished_ms.or(Some(a.dispatched_ms))),
            cut(a.error.as_deref().unwrap_or(""), 80),
            a.overrides
                .as_ref()
                .map(|o| Value::Object(o.clone()).to_string())
                .unwrap_or_default(),
        ]);
    }
    print_table(&t);
    Ok(())
}

/// A registered trigger.
#[derive(Serialize)]
pub(crate) struct TriggerRow {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) schedule: Option<String>,
    pub(crate) workflow: String,
    pub(crate) paused: bool,
    pub(crate) params: Map,
    pub(crate) created_ms: u64,
    pub(crate) updated_ms: u64,
}

impl From<&TriggerRecord> for TriggerRow {
    fn from(t: &TriggerRecord) -> Self {
        TriggerRow {
            name: t.name.clone(),
            subject: t.subject.clone(),
            schedule: t.schedule.clone(),
            workflow: t.spec.name.clone(),
            paused: t.paused,
            params: t.params.clone(),
            created_ms: t.created_ms,
            updated_ms: t.updated_ms,
        }
    }
}

pub(crate) fn triggers(rows: &[TriggerRow], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json(rows);
    }
    if rows.is_empty() {
        say("no triggers (`kora triggers add --help`)");
        return Ok(());
    }
    let mut t = table(&["name", "source", "workflow", "state"]);
    for r in rows {
        t.add_row(vec![
            r.name.clone(),
            r.schedule
                .as_ref()
                .map_or_else(|| r.subject.clone(), |c| format!("cron {c:?}")),
            if r.workflow.is_empty() {
                "-".into()
            } else {
                r.workflow.clone()
            },
            if r.paused { "paused" } else { "active" }.into(),
        ]);
    }
    print_table(&t);
    Ok(())
}

/// An audit entry.
#[derive(Serialize)]
pub(crate) struct AuditRow {
    pub(crate) run_id: String,
    pub(crate) node_id: String,
    pub(crate) attempt: u32,
    pub(crate) at_ms: u64,
    pub(crate) entry: Value,
}

impl From<&AuditEntry> for AuditRow {
    fn from(a: &AuditEntry) -> Self {
        AuditRow {
            run_id: a.run_id.clone(),
            node_id: a.node_id.clone(),
            attempt: a.attempt,
            at_ms: a.at_ms,
            entry: a.entry.clone(),
        }
    }
}

pub(crate) fn audit(rows: &[AuditRow], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json(rows);
    }
    let mut t = table(&["when", "level", "event", "user", "message", "run", "node"]);
    for a in rows {
        let e = &a.entry;
        t.add_row(vec![
            when(Some(a.at_ms)),
            e["log_level"].as_str().unwrap_or("info").to_string(),
            e["event_type"].as_str().unwrap_or_default().to_string(),
            e["user_id"].as_str().unwrap_or("-").to_string(),
            cut(e["message"].as_str().unwrap_or_default(), 80),
            a.run_id.clone(),
            a.node_id.clone(),
        ]);
    }
    print_table(&t);
    say(&format!(
        "{} entr{}",
        rows.len(),
        if rows.len() == 1 { "y" } else { "ies" }
    ));
    Ok(())
}

pub(crate) fn print_table(t: &Table) {
    if t.row_count() > 0 {
        say(&t.trim_fmt());
    }
}

/// A line of output on stdout. When the reader has gone (`kora ... | head`), later output is
/// dropped quietly, as Unix tools do, rather than panicking in `println!`; the command still
/// finishes (a server still drains).
pub(crate) fn say(line: &str) {
    out(line);
    out("\n");
}

/// Set once stdout cannot be written: the reader went away, or another error (then reported).
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set when stdout failed for another reason than its reader going away: `main` exits 1.
static STDOUT_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Text on stdout, as [`say`] writes it.
pub(crate) fn out(text: &str) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            STDOUT_FAILED.store(true, Ordering::Relaxed);
            note(&format!("error: cannot write the output: {e}"));
        }
    }
}

/// Whether some output could not be written (other than to a reader that went away).
pub(crate) fn output_failed() -> bool {
    STDOUT_FAILED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A line for the person at the terminal (stderr): counts, hints, warnings.
pub(crate) fn note(line: &str) {
    eprintln!("{line}");
}

/// An API key, as `kora keys list` shows it (never its secret or hash).
#[derive(Serialize)]
pub(crate) struct KeyRow {
    pub(crate) key_id: String,
    pub(crate) tenant: String,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) created_ms: u64,
    pub(crate) created_by: String,
    pub(crate) expires_ms: Option<u64>,
    pub(crate) revoked_ms: Option<u64>,
}

impl From<&kora_store::ApiKey> for KeyRow {
    fn from(k: &kora_store::ApiKey) -> Self {
        KeyRow {
            key_id: k.key_id.clone(),
            tenant: k.tenant.clone(),
            name: k.name.clone(),
            role: k.role.clone(),
            scopes: k.scopes.clone(),
            created_ms: k.created_ms,
            created_by: k.created_by.clone(),
            expires_ms: k.expires_ms,
            revoked_ms: k.revoked_ms,
        }
    }
}

pub(crate) fn keys(rows: &[KeyRow], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json(rows);
    }
    let mut t = table(&[
        "key", "tenant", "name", "role", "scopes", "created", "expires", "revoked",
    ]);
    for k in rows {
        t.add_row(vec![
            k.key_id.clone(),
            k.tenant.clone(),
            k.name.clone(),
            k.role.clone(),
            k.scopes.join(","),
            when(Some(k.created_ms)),
            when(k.expires_ms),
            when(k.revoked_ms),
        ]);
    }
    print_table(&t);
    Ok(())
}

/// One mutating API call, as `kora audit --api` shows it.
#[derive(Serialize)]
pub(crate) struct ApiAuditRow {
    pub(crate) id: u64,
    pub(crate) at_ms: u64,
    pub(crate) tenant: String,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) outcome: String,
    pub(crate) status: u16,
    pub(crate) client_addr: String,
    pub(crate) request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<Value>,
}

impl From<&kora_store::ApiAuditEntry> for ApiAuditRow {
    fn from(e: &kora_store::ApiAuditEntry) -> Self {
        ApiAuditRow {
            id: e.id,
            at_ms: e.at_ms,
            tenant: e.tenant.clone(),
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            status: e.status,
            client_addr: e.client_addr.clone(),
            request_id: e.request_id.clone(),
            detail: e.detail.clone(),
        }
    }
}

pub(crate) fn api_audit(rows: &[ApiAuditRow], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json(rows);
    }
    let mut t = table(&[
        "when", "tenant", "actor", "action", "target", "outcome", "status", "client",
    ]);
    for e in rows {
        t.add_row(vec![
            when(Some(e.at_ms)),
            e.tenant.clone(),
            e.actor.clone(),
            e.action.clone(),
            cut(&e.target, 60),
            e.outcome.clone(),
            e.status.to_string(),
            e.client_addr.clone(),
        ]);
    }
    print_table(&t);
    Ok(())
}
