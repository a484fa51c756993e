//! The dashboard at `/ui/`: static files compiled into the binary (no CDN, works air-gapped),
//! a small single-page application in plain JavaScript modules with no build step. It signs
//! in with an API key or a JWT and reads and acts only through the public `/v1` API, so it can
//! do exactly what the credential may (the pages ask `/v1/me` which actions to offer).
//!
//! Must not: hold state, take any credential of its own, or reach anything but `/v1`.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::state::AppState;

/// `(name, content type, bytes)` of every file the dashboard serves.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../ui/index.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../ui/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/api.js"),
    ),
    (
        "graph.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/graph.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/dom.js"),
    ),
    (
        "signin.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/signin.js"),
    ),
    (
        "runs.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/runs.js"),
    ),
    (
        "run.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/run.js"),
    ),
    (
        "timeline.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/timeline.js"),
    ),
    (
        "dead_letters.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/dead_letters.js"),
    ),
    (
        "overview.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/overview.js"),
    ),
    (
        "triggers.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/triggers.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../ui/favicon.svg"),
    ),
];

/// The Content-Security-Policy of the dashboard's files: its own scripts, styles and API only.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, bytes)) => (
            [
                (header::CONTENT_TYPE, *kind),
                // Revalidated on every load: a new binary's files are used at once.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file in the dashboard").into_response(),
    }
}

/// `/ui` (redirects), `/ui/` (the page) and `/ui/<file>`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { asset("index.html") }))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

#[cfg(test)]
mod tests {
    /// Every file the page loads is served, so a file added to `ui/` is not forgotten here.
    #[test]
    fn every_referenced_file_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/ui");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut served: Vec<String> = super::ASSETS.iter().map(|a| a.0.to_string()).collect();
        served.sort();
        assert_eq!(
            on_disk, served,
            "crates/kora-gateway/ui and ui.rs's ASSETS differ"
        );
    }
}
