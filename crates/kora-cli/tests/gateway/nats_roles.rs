//! Least privilege on NATS (#15): a nats-server started with the users `kora setup
//! --nats-config` writes, one per role. The administrator prepares the installation with
//! `kora setup`; each role then runs as its own user with `nats.provision = false` and its
//! own inbox, and the whole path works (API submission, a node on a worker, a dead letter).
//! The worker's credential cannot publish an admission or a run request, answer for another
//! queue, read the ledger stream or another role's replies; the coordinator refuses a result
//! that arrives on another queue's subject. No role met a permission violation: every
//! violation the server logged came from the test's deliberate attempts.

use std::time::Duration;

use kora_broker::Broker;
use serde_json::json;

use crate::api::*;

const ROLES: [&str; 5] = ["admin", "scheduler", "coordinator", "worker", "gateway"];

fn password(user: &str) -> String {
    format!("pw-{user}-7d21-least-privilege")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_with_its_own_nats_user_does_its_work_and_no_more() {
    let Some(bin) = kora_broker::testing::TestServer::current_bin_or_skip() else {
        return;
    };
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The users, as an administrator makes them for this installation's prefix.
    let o = d.kora(&["setup", "--nats-config", "--queue", "default"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let users = String::from_utf8(o.stdout).unwrap();
    assert!(users.contains(&format!("{}.ledger.result.default", d.prefix())));
    let log = dir.path().join("nats.log");
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, format!("log_file: {:?}\n{users}", log)).unwrap();
    let vars: Vec<(String, String)> = ROLES
        .iter()
        .map(|r| {
            (
                format!("KORA_NATS_{}_PASSWORD", r.to_uppercase()),
                password(r),
            )
        })
        .collect();
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = kora_broker::testing::TestServer::start_with_env(
        &bin,
        &["-c".into(), conf.to_str().unwrap().into()],
        &env,
    );
    let url = server.url();
    d.env.push(("KORA_NATS_URL".into(), url.clone()));
    d.env.push(("KORA_NATS__PROVISION".into(), "false".into()));
    let creds = |user: &str| -> Vec<(String, String)> {
        vec![
            ("KORA_NATS__USER".into(), user.into()),
            ("KORA_NATS__PASSWORD".into(), password(user)),
            (
                "KORA_NATS__INBOX_PREFIX".into(),
                if user == "admin" {
                    "_INBOX".into()
                } else {
                    format!("_INBOX_{user}")
                },
            ),
        ]
    };

    // Before `kora setup`, a role may not make the streams itself and says what to run.
    let o = d
        .command()
        .envs(creds("worker"))
        .args(["serve", "--role", "worker"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("kora setup"), "{err}");
    // The worker's user cannot make them either.
    let o = d
        .command()
        .envs(creds("worker"))
        .env("KORA_NATS__REQUEST_TIMEOUT", "1s")
        .args(["setup"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "a worker user set up streams");

    // From here on, commands the test runs are the administrator's; each role its own.
    d.env.extend(creds("admin"));
    let o = d.kora(&["setup"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for role in ["scheduler", "coordinator", "worker", "gateway"] {
        let c = creds(role);
        let c: Vec<(&str, &str)> = c.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        d.serve_env(role, &[], &c);
    }
    let api = Api {
        base: d.gateway.clone(),
        http: reqwest::Client::new(),
    };
    ready(&api).await;
    let key = key(&d, "acme", "operator", &[]);
    let answer = run_wait(&api, &key, &doubling(), json!({"a": {"x": 21}})).await;
    assert_eq!(answer["status"], "succeeded", "{answer}");
    assert_eq!(answer["results"]["a"]["result"], 42, "{answer}");
    let failed = run_wait(&api, &key, &dividing(), json!({})).await;
    assert_eq!(failed["results"]["d"]["failed"], true, "{failed}");
    let letters = api.get("/v1/dead-letters", &key).await;
    assert_eq!(letters.status, 200, "{}", letters.body);
    assert!(
        letters.body.to_string().contains("ZeroDivisionError"),
        "{}",
        letters.body
    );

    // A slow node, so a forged result finds its run alive.
    let slow = json!({"kora": 1, "name": "slow", "nodes": [
        {"id": "s", "type": "PythonCodeNode", "config": {"code": "import time\ntime.sleep(5)\nresult = 1"}}]});
    let started = api
        .post("/v1/runs", &key, &json!({"workflow": slow, "params": {}}))
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let run_id = started.body["run_id"].as_str().unwrap().to_string();

    let subjects = kora_model::subjects::Subjects::new(&d.prefix()).unwrap();
    let forged = kora_model::wire::NodeResult {
        v: kora_model::wire::WIRE_VERSION,
        task_id: "forged".into(),
        run_id: run_id.clone(),
        node_id: "s".into(),
        iteration: 0,
        attempt: 1,
        outcome: kora_model::wire::TaskOutcome::Success {
            output: serde_json::from_value(json!({"result": 666})).unwrap(),
        },
        worker_id: "intruder".into(),
        started_at_ms: 0,
        finished_at_ms: 0,
        audit: Vec::new(),
    };
    let payload = kora_model::wire::encode(&forged).unwrap();
    // A result that arrives on another queue's subject (as from a worker of that queue) is
    // refused by the coordinator and dead-lettered with the reason; the run is untouched.
    let admin = kora_broker::nats::JetStreamBroker::connect(&kora_broker::nats::NatsConfig {
        url: url.clone(),
        prefix: d.prefix(),
        user: "admin".into(),
        password: kora_broker::nats_auth::Secret(password("admin")),
        ..Default::default()
    })
    .await
    .unwrap();
    admin
        .publish(kora_broker::Outbound::new(
            subjects.ledger_result_from("other"),
            payload.clone(),
        ))
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let poison = loop {
        let o = d.kora(&["dlq", "list", "--poison", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            break v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no dead letter for the forged result"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reason = poison[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("came from queue 'other'") && reason.contains("queue 'default'"),
        "{poison}"
    );
    // The intruder: the worker's own credential, used for what a worker may not do.
    let intruder = kora_broker::nats::JetStreamBroker::connect(&kora_broker::nats::NatsConfig {
        url: url.clone(),
        prefix: d.prefix(),
        name: "intruder".into(),
        user: "worker".into(),
        password: kora_broker::nats_auth::Secret(password("worker")),
        inbox_prefix: "_INBOX_worker".into(),
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let refused = [
        subjects.run_submit(),
        subjects.ledger_admit(),
        subjects.ledger_result(),
        subjects.ledger_result_from("other"),
        subjects.task("default"),
    ];
    for subject in &refused {
        let r = intruder
            .publish(kora_broker::Outbound::new(
                subject.to_string(),
                payload.clone(),
            ))
            .await;
        assert!(r.is_err(), "the worker's user published on {subject}");
    }
    assert!(
        intruder
            .consumer(&subjects.stream_ledger(), "coordinator")
            .await
            .is_err(),
        "the worker's user bound the coordinator's consumer"
    );
    assert!(
        intruder
            .get_message(&subjects.stream_ledger(), 1)
            .await
            .is_err(),
        "the worker's user read the ledger stream"
    );
    assert!(
        intruder
            .get_message(&subjects.stream_tasks(), 1)
            .await
            .is_err(),
        "the worker's user read a task by sequence"
    );
    // Subscribing to another role's inbox is refused by the server (logged below).
    let mut spy = intruder.listen("_INBOX_coordinator.>").await.unwrap();
    let peek = tokio::time::timeout(
        Duration::from_millis(500),
        futures::StreamExt::next(&mut spy),
    )
    .await;
    assert!(
        !matches!(peek, Ok(Some(_))),
        "the worker's user read the coordinator's replies"
    );

    let done = d.wait_finished(&run_id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["results"]["s"]["result"], 1,
        "the forged result was not taken: {done}"
    );

    // Every permission violation the server logged was one of the test's attempts (the
    // intruder's, and `kora setup` as the worker): no role lacked a permission.
    drop(spy);
    drop(intruder);
    let text = std::fs::read_to_string(&log).unwrap();
    let violations: Vec<&str> = text.lines().filter(|l| l.contains("Violation")).collect();
    assert!(
        violations.iter().any(|l| l.contains("_INBOX_coordinator")),
        "the inbox subscription was not refused: {text}"
    );
    for subject in &refused {
        assert!(
            violations
                .iter()
                .any(|l| l.contains("Publish Violation") && l.contains(&format!("\"{subject}\""))),
            "no violation logged for {subject}: {violations:#?}"
        );
    }
    for api in [
        // The ledger stream is not even visible to it.
        format!("STREAM.INFO.{}\"", subjects.stream_ledger()),
        format!("STREAM.MSG.GET.{}", subjects.stream_tasks()),
    ] {
        assert!(
            violations.iter().any(|l| l.contains(&api)),
            "no violation logged for {api}: {violations:#?}"
        );
    }
    assert!(
        violations
            .iter()
            .all(|l| l.contains(":rust:intruder\"") || l.contains(":rust:kora-setup\"")),
        "a role met a permission violation: {violations:#?}"
    );
    for secret in ROLES.map(password) {
        assert!(!text.contains(&secret));
    }
    d.finish().await;
}
