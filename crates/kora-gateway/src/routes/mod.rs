//! The API's routes, one module per resource, each handler a thin layer over
//! [`kora_client::Control`] acting within the caller's tenant. Every route is declared with
//! its OpenAPI description next to it; [`api`] gathers them.

pub(crate) mod audit;
pub(crate) mod dead_letters;
pub(crate) mod events;
pub(crate) mod graph;
pub(crate) mod health;
pub(crate) mod hooks;
pub(crate) mod inputs;
pub(crate) mod keys;
pub(crate) mod me;
pub(crate) mod overview;
pub(crate) mod runs;
pub(crate) mod triggers;
pub(crate) mod workflows;

use base64::Engine as _;
use kora_model::{Map, Value, WorkflowSpec};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Every `/v1` route, with its OpenAPI paths.
pub(crate) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(runs::submit, runs::list))
        .routes(routes!(runs::get))
        .routes(routes!(runs::cancel))
        .routes(routes!(runs::retry))
        .routes(routes!(graph::graph))
        .routes(routes!(graph::node))
        .routes(routes!(events::stream))
        .routes(routes!(workflows::register, workflows::list))
        .routes(routes!(workflows::get, workflows::delete))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::get))
        .routes(routes!(dead_letters::replay))
        .routes(routes!(dead_letters::replay_bulk))
        .routes(routes!(dead_letters::purge))
        .routes(routes!(triggers::create, triggers::list))
        .routes(routes!(triggers::get, triggers::delete))
        .routes(routes!(triggers::pause))
        .routes(routes!(triggers::resume))
        .routes(routes!(hooks::deliver))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(audit::list))
        .routes(routes!(me::me))
        .routes(routes!(overview::overview))
        .routes(routes!(overview::fleet))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// A workflow in any shape `kora run` accepts: an object, or JSON/YAML text, within the input
/// limits (text is measured before it is parsed).
pub(crate) fn load_workflow(st: &AppState, doc: &Value, field: &str) -> ApiResult<WorkflowSpec> {
    let limits = &st.cfg.input_limits;
    let refused = |e| ApiError::unprocessable(format!("`{field}` is refused: {e}"));
    let loaded = match doc {
        Value::String(text) => {
            limits.check_text(text).map_err(refused)?;
            kora_model::load::load_str(text, kora_model::load::Syntax::Auto)
        }
        other => {
            limits
                .check_value(&format!("`{field}`"), other)
                .map_err(refused)?;
            kora_model::load::from_value(other)
        }
    };
    loaded.map(|(spec, _)| spec).map_err(|errs| {
        let list: Vec<String> = errs.iter().map(ToString::to_string).collect();
        ApiError::unprocessable(format!(
            "`{field}` is not a usable workflow: {}",
            list.join("; ")
        ))
        .details(serde_json::json!({ "problems": list }))
    })
}

/// `422` with every problem (each naming its node and field) unless `spec` is valid with
/// `params`.
pub(crate) fn check_workflow(
    st: &AppState,
    spec: &WorkflowSpec,
    params: Option<&Map>,
) -> ApiResult<()> {
    let problems: Vec<String> =
        kora_model::validate_within(spec, st.catalog.as_ref(), params, &st.cfg.input_limits)
            .iter()
            .filter(|p| p.severity == kora_model::Severity::Error)
            .map(ToString::to_string)
            .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::unprocessable(format!(
            "the workflow is not valid: {}",
            problems.join("; ")
        ))
        .details(serde_json::json!({ "problems": problems })))
    }
}

/// A page position, opaque to clients.
pub(crate) fn encode_cursor(parts: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(parts)
}

pub(crate) fn decode_cursor(cursor: &str) -> ApiResult<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            ApiError::invalid("`cursor` is not one this API gave; start again without it")
        })
}

/// `since`/`until` as people give them: `30m`, `12h`, `7d` back from now, or epoch ms.
pub(crate) fn parse_time(v: Option<&str>, name: &str) -> ApiResult<Option<u64>> {
    v.map(|s| {
        kora_client::parse_since(s, kora_model::now_ms())
            .map_err(|e| ApiError::invalid(format!("`{name}`: {e}")))
    })
    .transpose()
}

/// A page size: `default` when absent, at most `max`.
pub(crate) fn page_size(limit: Option<usize>, default: usize, max: usize) -> ApiResult<usize> {
    match limit {
        None => Ok(default),
        Some(0) => Err(ApiError::invalid("`limit` must be at least 1")),
        Some(n) if n > max => Err(ApiError::invalid(format!("`limit` must be at most {max}"))),
        Some(n) => Ok(n),
    }
}

/// A name for a registered workflow or a trigger: 1-64 letters, digits, `-` or `_`.
pub(crate) fn check_name(name: &str, what: &str) -> ApiResult<()> {
    kora_model::trigger::check_name(name).map_err(|_| {
        ApiError::invalid(format!(
            "{what} name {name:?}: use 1-64 letters, digits, '-' or '_'"
        ))
    })
}
