//! `GET /v1/runs/{run_id}/events`: a run's events as Server-Sent Events, from the ledger and
//! then live, each with its sequence number as the SSE id, so a client that reconnects with
//! `Last-Event-ID` resumes after the last one it saw. The stream ends after the run's final
//! event.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::StreamExt;
use kora_model::wire::{self, EventKind, NodeEvents, RunEvent};
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::IntoParams;

use super::runs::find_run;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::scopes::Scope;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Only events after this sequence number (as `Last-Event-ID` does).
    pub(crate) after: Option<u64>,
}

fn is_final(k: EventKind) -> bool {
    matches!(
        k,
        EventKind::RunSucceeded
            | EventKind::RunFailed
            | EventKind::RunCancelled
            | EventKind::RunRejected
    )
}

fn sse_event(e: &RunEvent) -> Event {
    let kind = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let data = serde_json::json!({
        "run_id": e.run_id, "seq": e.seq, "kind": kind, "node_id": e.node_id,
        "iteration": e.iteration, "attempt": e.attempt, "at_ms": e.at_ms, "detail": e.detail,
    });
    Event::default()
        .id(e.seq.to_string())
        .event(kind)
        .data(data.to_string())
}

/// Stream a run's events.
///
/// Server-Sent Events (`text/event-stream`): each event's `id` is its sequence number, its
/// `event` its kind (`node_succeeded`, `run_failed`, ...), its `data` the event as JSON.
/// Reconnect with `Last-Event-ID` (or `?after=`) to resume. Ends after the run's final event.
/// One Server-Sent Event of a run's stream, as the fields of its lines.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only: the stream is written as text.
pub(crate) struct SseEvent {
    /// The event's sequence number in its run: send it back as `Last-Event-ID` to resume.
    id: String,
    /// The event's kind (`run_accepted`, `node_succeeded`, ...).
    event: String,
    /// The event as JSON: `run_id`, `seq`, `kind`, `node_id`, `iteration`, `attempt`, `at_ms`,
    /// `detail`.
    data: String,
}

#[utoipa::path(get, path = "/v1/runs/{run_id}/events", tag = "runs", operation_id = "run_events",
    params(("run_id" = String, Path, description = "the run's id"), EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event")),
    responses((status = 200, description = "the event stream", content_type = "text/event-stream", body = SseEvent),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn stream(
    State(st): State<AppState>,
    who: Principal,
    Path(run_id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>> {
    who.require(Scope::RunsRead)?;
    let run = find_run(&st, &who, &run_id).await?;
    let after = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid("Last-Event-ID must be an event's sequence number")
                })?,
        ),
        None => q.after,
    }
    .unwrap_or(0);
    let (tx, rx) = mpsc::channel::<Event>(256);
    tokio::spawn(follow(st, run.run_id, after, tx));
    let events =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Sends the run's events after `last` until its final one, or the client leaves.
async fn follow(st: AppState, run_id: String, mut last: u64, tx: mpsc::Sender<Event>) {
    let subjects = st.control.subjects();
    // Subscribe first, then read the ledger: nothing falls between the two.
    let live = st
        .control
        .broker()
        .listen(&format!("{}.event.{run_id}.>", subjects.prefix()))
        .await;
    let mut live = match live {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(%run_id, error = %e, "cannot follow live events; reading the ledger instead");
            None
        }
    };
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    loop {
        // Catch up from the ledger (at start, on a gap, and now and then).
        match st.store().events(&run_id).await {
            Ok(events) => {
                let seen = last;
                for e in events.into_iter().filter(|e| e.seq > seen) {
                    last = e.seq;
                    let done = is_final(e.kind);
                    if tx.send(sse_event(&e)).await.is_err() || done {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(%run_id, error = %e, "cannot read the run's events"),
        }
        loop {
            tokio::select! {
                () = tx.closed() => return,
                _ = poll.tick() => break,
                msg = async {
                    match live.as_mut() {
                        Some(l) => l.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some(payload) = msg else {
                        live = None;
                        continue;
                    };
                    // One run-level event, or a commit's node events in one message.
                    let events = match wire::decode::<RunEvent>(&payload) {
                        Ok(e) => vec![e],
                        Err(_) => match wire::decode::<NodeEvents>(&payload) {
                            Ok(batch) => batch.events,
                            Err(_) => continue,
                        },
                    };
                    let mut gap = false;
                    for e in events {
                        if e.seq <= last {
                            continue;
                        }
                        if e.seq != last + 1 {
                            // A gap: the ledger has what was missed.
                            gap = true;
                            break;
                        }
                        last = e.seq;
                        let done = is_final(e.kind);
                        if tx.send(sse_event(&e)).await.is_err() || done {
                            return;
                        }
                    }
                    if gap {
                        break;
                    }
                }
            }
        }
    }
}
