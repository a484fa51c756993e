//! The OpenAPI 3.1 document, generated from the routes' own declarations, plus what the
//! declarations cannot say: the bearer security scheme and the links between operations (a
//! submitted run's id leads to reading, cancelling and streaming it), which let stateful API
//! fuzzers chain calls.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Doc, RefOr};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kora API",
        version = "1",
        description = "Runs, registered workflows, dead letters, triggers, API keys and the audit trail of a Kora installation. Authenticate with `Authorization: Bearer <API key or JWT>`; every resource belongs to the credential's tenant. Errors are `{\"error\": {\"code\", \"message\", \"details\"?}}`."
    ),
    modifiers(&Bearer),
    tags(
        (name = "runs", description = "Submit, read, cancel, retry and follow runs"),
        (name = "workflows", description = "Named, versioned workflows"),
        (name = "dead letters", description = "Node attempts that failed for good"),
        (name = "triggers", description = "Subject, cron and webhook triggers"),
        (name = "keys", description = "API keys (admin)"),
        (name = "audit", description = "The API audit trail (admin)"),
        (name = "health", description = "Liveness and readiness")
    )
)]
pub(crate) struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("kora_<key_id>_<secret> API key, or a JWT")
                    .description(Some(
                        "`kora keys create` or `POST /v1/keys` makes an API key",
                    ))
                    .build(),
            ),
        );
    }
}

fn operation_mut<'a>(doc: &'a mut Doc, id: &str) -> Option<&'a mut Operation> {
    doc.paths.paths.values_mut().find_map(|item| {
        [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.delete.as_mut(),
        ]
        .into_iter()
        .flatten()
        .find(|op| op.operation_id.as_deref() == Some(id))
    })
}

/// Adds links from `(operation, status)` to each of `targets`, passing `param` from the
/// response body's `field`.
fn link(doc: &mut Doc, from: &str, status: &str, param: &str, field: &str, targets: &[&str]) {
    let Some(op) = operation_mut(doc, from) else {
        return;
    };
    let Some(RefOr::T(resp)) = op.responses.responses.get_mut(status) else {
        return;
    };
    for t in targets {
        resp.links.insert(
            t.to_string(),
            RefOr::T(
                LinkBuilder::new()
                    .operation_id(*t)
                    .parameter(param, format!("$response.body#/{field}"))
                    .build(),
            ),
        );
    }
}

/// An error answer, as every route may give one.
fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build(),
    )
}

/// What any route may answer besides its own: a malformed path or query (400), an address
/// over its rate limit (429), the ledger or NATS unreachable (503), a request over its time
/// (504); with a credential, 401 and 403; with a body, 413 and 415.
pub(crate) fn add_common_responses(doc: &mut Doc) {
    for item in doc.paths.paths.values_mut() {
        for op in [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.delete.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            let mut add = vec![
                ("400", "the path, query or body is not valid"),
                ("429", "over a rate limit or quota; see Retry-After"),
                (
                    "503",
                    "NATS or the ledger cannot be reached; see Retry-After",
                ),
                ("504", "the request took over gateway.request_timeout"),
            ];
            if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                add.push(("401", "no valid credential"));
                add.push((
                    "403",
                    "the credential lacks the scope, or the network is not allowed",
                ));
            }
            if op.request_body.is_some() {
                add.push(("413", "the body is over gateway.max_body_bytes"));
                add.push(("415", "the body is not JSON"));
            }
            for (code, what) in add {
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(|| error_response(what));
            }
        }
    }
}

/// The links between operations.
pub(crate) fn add_links(doc: &mut Doc) {
    let run_ops = ["get_run", "cancel_run", "retry_run", "run_events"];
    link(doc, "submit_run", "202", "run_id", "run_id", &run_ops);
    link(doc, "submit_run", "200", "run_id", "run_id", &run_ops);
    link(
        doc,
        "register_workflow",
        "201",
        "name",
        "name",
        &["get_workflow", "delete_workflow"],
    );
    link(
        doc,
        "create_trigger",
        "201",
        "name",
        "name",
        &[
            "get_trigger",
            "pause_trigger",
            "resume_trigger",
            "delete_trigger",
        ],
    );
    link(
        doc,
        "create_key",
        "201",
        "key_id",
        "key_id",
        &["revoke_key"],
    );
    link(
        doc,
        "get_dead_letter",
        "200",
        "id",
        "dead_letter/id",
        &["replay_dead_letter"],
    );
}
