//! The authorization matrix: every route × {no credential, malformed, wrong secret, expired,
//! revoked, another tenant's admin, viewer, operator, admin}. Every denial is its documented
//! status (401 for a credential that is not valid, 403 for a missing scope, 404 for another
//! tenant's resource); every allowed call works.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::*;

#[derive(Clone, Copy, PartialEq)]
enum Need {
    /// No credential needed.
    Public,
    Viewer,
    Operator,
    Admin,
}

/// A request body, made for the caller (names must differ where they are unique).
type MakeBody = Box<dyn Fn(&str) -> Value>;

struct Route {
    method: Method,
    path: String,
    body: Option<MakeBody>,
    need: Need,
    /// Whether it names a resource of tenant `ta` (another tenant gets 404).
    owned: bool,
    /// What an allowed call may answer.
    ok: &'static [u16],
}

fn route(
    method: Method,
    path: impl Into<String>,
    need: Need,
    owned: bool,
    ok: &'static [u16],
) -> Route {
    Route {
        method,
        path: path.into(),
        body: None,
        need,
        owned,
        ok,
    }
}

fn with(mut r: Route, body: impl Fn(&str) -> Value + 'static) -> Route {
    r.body = Some(Box::new(body));
    r
}

#[tokio::test]
async fn every_route_answers_every_credential_as_documented() {
    let Some((d, api)) = start(&[("KORA_GATEWAY__RATE_LIMIT__PER_CREDENTIAL", "0")]).await else {
        return;
    };
    let viewer = key(&d, "ta", "viewer", &[]);
    let operator = key(&d, "ta", "operator", &[]);
    let admin = key(&d, "ta", "admin", &[]);
    let other = key(&d, "tb", "admin", &[]);
    let expired = key(&d, "ta", "admin", &["--expires", "1s"]);
    let revoked = key(&d, "ta", "admin", &[]);
    let revoked_id = revoked.split('_').nth(1).unwrap().to_string();
    let o = d.kora(&["keys", "revoke", &revoked_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let throwaway = key(&d, "ta", "viewer", &[]);
    let throwaway_id = throwaway.split('_').nth(1).unwrap().to_string();
    let wrong_secret = format!(
        "kora_{}_{}",
        admin.split('_').nth(1).unwrap(),
        "0".repeat(64)
    );
    let malformed = "kora_not_a_key".to_string();

    // Tenant ta's resources.
    let ok = run_wait(&api, &admin, &doubling(), json!({"a": {"x": 4}})).await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    let run = ok["run_id"].as_str().unwrap().to_string();
    // A leaf node's failure does not fail the run (Kailash's rule), but it is dead-lettered.
    let failed = run_wait(&api, &admin, &dividing(), json!({})).await;
    assert_eq!(failed["results"]["d"]["failed"], true, "{failed}");
    let dead = format!("{}:d:0:1", failed["run_id"].as_str().unwrap());
    for name in ["wf-a", "wf-del"] {
        let a = api
            .post(
                "/v1/workflows",
                &admin,
                &json!({"name": name, "workflow": doubling()}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    for name in ["trig-a", "trig-del"] {
        let a = api
            .post(
                "/v1/triggers",
                &admin,
                &json!({"name": name, "webhook": true, "workflow": doubling()}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await; // the expiring key has expired

    use Need::*;
    let routes = vec![
        with(
            route(Method::POST, "/v1/runs", Operator, false, &[202]),
            |_| json!({"workflow": doubling()}),
        ),
        route(Method::GET, "/v1/runs", Viewer, false, &[200]),
        route(Method::GET, format!("/v1/runs/{run}"), Viewer, true, &[200]),
        route(
            Method::GET,
            format!("/v1/runs/{run}/graph"),
            Viewer,
            true,
            &[200],
        ),
        route(
            Method::GET,
            format!("/v1/runs/{run}/nodes/a"),
            Viewer,
            true,
            &[200],
        ),
        route(Method::GET, "/v1/me", Viewer, false, &[200]),
        route(Method::GET, "/v1/overview?window=1h", Viewer, false, &[200]),
        route(Method::GET, "/v1/fleet", Viewer, false, &[200]),
        route(
            Method::GET,
            format!("/v1/runs/{run}/events?after=0"),
            Viewer,
            true,
            &[200],
        ),
        route(
            Method::POST,
            format!("/v1/runs/{run}/cancel"),
            Operator,
            true,
            &[200],
        ),
        with(
            route(
                Method::POST,
                format!("/v1/runs/{run}/retry"),
                Operator,
                true,
                &[200, 409],
            ),
            |_| json!({"from": "a"}),
        ),
        with(
            route(Method::POST, "/v1/workflows", Operator, false, &[201]),
            |who| json!({"name": format!("wf-{who}"), "workflow": doubling()}),
        ),
        route(Method::GET, "/v1/workflows", Viewer, false, &[200]),
        route(Method::GET, "/v1/workflows/wf-a", Viewer, true, &[200]),
        route(
            Method::DELETE,
            "/v1/workflows/wf-del",
            Operator,
            true,
            &[204, 404],
        ),
        route(Method::GET, "/v1/dead-letters", Viewer, false, &[200]),
        route(
            Method::GET,
            format!("/v1/dead-letters/{dead}"),
            Viewer,
            true,
            &[200],
        ),
        with(
            route(
                Method::POST,
                format!("/v1/dead-letters/{dead}/replay"),
                Operator,
                true,
                &[200, 409],
            ),
            |_| json!({}),
        ),
        with(
            route(
                Method::POST,
                "/v1/dead-letters/replay",
                Operator,
                false,
                &[200],
            ),
            |_| json!({"dry_run": true}),
        ),
        with(
            route(Method::POST, "/v1/dead-letters/purge", Admin, false, &[200]),
            |_| json!({"dry_run": true}),
        ),
        with(
            route(Method::POST, "/v1/triggers", Operator, false, &[201]),
            |who| json!({"name": format!("trig-{who}"), "webhook": true, "workflow": doubling()}),
        ),
        route(Method::GET, "/v1/triggers", Viewer, false, &[200]),
        route(Method::GET, "/v1/triggers/trig-a", Viewer, true, &[200]),
        route(
            Method::POST,
            "/v1/triggers/trig-a/pause",
            Operator,
            true,
            &[200],
        ),
        route(
            Method::POST,
            "/v1/triggers/trig-a/resume",
            Operator,
            true,
            &[200],
        ),
        route(
            Method::DELETE,
            "/v1/triggers/trig-del",
            Operator,
            true,
            &[204, 404],
        ),
        with(
            route(Method::POST, "/v1/keys", Admin, false, &[201]),
            |_| json!({"role": "viewer"}),
        ),
        route(Method::GET, "/v1/keys", Admin, false, &[200]),
        route(
            Method::DELETE,
            format!("/v1/keys/{throwaway_id}"),
            Admin,
            true,
            &[204],
        ),
        route(Method::GET, "/v1/audit", Admin, false, &[200]),
        route(Method::GET, "/healthz", Public, false, &[200]),
        route(Method::GET, "/readyz", Public, false, &[200]),
        route(Method::GET, "/openapi.json", Public, false, &[200]),
        route(Method::GET, "/ui/", Public, false, &[200]),
        route(Method::GET, "/metrics", Public, false, &[200]),
    ];
    let invalid = [
        ("no credential", None),
        ("malformed", Some(malformed.as_str())),
        ("wrong secret", Some(wrong_secret.as_str())),
        ("expired", Some(expired.as_str())),
        ("revoked", Some(revoked.as_str())),
    ];
    let roles = [
        ("viewer", viewer.as_str(), Viewer),
        ("operator", operator.as_str(), Operator),
        ("admin", admin.as_str(), Admin),
    ];
    let rank = |n: Need| match n {
        Public => 0,
        Viewer => 1,
        Operator => 2,
        Admin => 3,
    };
    let mut checked = 0;
    for r in &routes {
        let body = |who: &str| r.body.as_ref().map(|b| b(who));
        let call = |who: &'static str, key: Option<&str>| {
            let (method, path, body) = (r.method.clone(), r.path.clone(), body(who));
            let key = key.map(String::from);
            let api = &api;
            async move { api.call(method, &path, key.as_deref(), body.as_ref()).await }
        };
        let what = format!("{} {}", r.method, r.path);
        if r.need == Public {
            let a = call("anon", None).await;
            assert!(
                r.ok.contains(&a.status),
                "{what} without a credential: {} {}",
                a.status,
                a.body
            );
            checked += 1;
            continue;
        }
        for (label, k) in invalid {
            let a = call("bad", k).await;
            assert_eq!(a.status, 401, "{what} with {label}: {}", a.body);
            assert_eq!(
                a.body["error"]["code"], "unauthenticated",
                "{what} with {label}"
            );
            assert!(
                a.headers.contains_key("www-authenticate"),
                "{what} with {label}"
            );
            checked += 1;
        }
        // Another tenant's admin: a resource of ta does not exist for it.
        let a = call("tb", Some(&other)).await;
        if r.owned {
            assert_eq!(a.status, 404, "{what} from another tenant: {}", a.body);
        } else {
            assert!(
                r.ok.contains(&a.status),
                "{what} from another tenant, in its own: {} {}",
                a.status,
                a.body
            );
        }
        checked += 1;
        for (label, k, level) in roles {
            let a = call(label, Some(k)).await;
            if rank(level) >= rank(r.need) {
                assert!(
                    r.ok.contains(&a.status),
                    "{what} as {label}: {} {}",
                    a.status,
                    a.body
                );
            } else {
                assert_eq!(a.status, 403, "{what} as {label}: {}", a.body);
                assert_eq!(a.body["error"]["code"], "forbidden");
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked} calls");
    // The denials and the calls are in the audit trail, with who made them.
    let audit = api.get("/v1/audit?limit=1000", &admin).await;
    let entries = audit.body["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "runs.cancel" && e["outcome"] == "forbidden"),
        "a denied call is audited"
    );
    assert!(entries.iter().all(|e| e["tenant"] == "ta"), "only ta's");
    // The metrics docs/gateway.md names, on /metrics (loopback is an admin network).
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "kora_gateway_requests_total{",
        "kora_gateway_request_duration_seconds_bucket{",
        "kora_gateway_auth_failures_total{",
        "kora_gateway_rate_limited_total ",
        "kora_gateway_audit_failures_total ",
    ] {
        assert!(metrics.contains(name), "{name} is not on /metrics");
    }
    d.finish().await;
}
