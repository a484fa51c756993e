use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::*;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct Nats {
    url: String,
    prefix: String,
}
impl Default for Nats {
    fn default() -> Self {
        Nats {
            url: "nats://127.0.0.1:4222".into(),
            prefix: "kora".into(),
        }
    }
}
#[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
struct Worker {
    concurrency: u32,
}
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Queue {
    rate_per_sec: f64,
}
#[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
struct Cfg {
    nats: Nats,
    worker: Worker,
    queues: BTreeMap<String, Queue>,
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[test]
fn layers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kora.toml");
    std::fs::write(&f, "[worker]\nconcurrency = 3\n[nats]\nprefix = \"file\"\n").unwrap();
    let vars = env(&[
        ("KORA_NATS__URL", "nats://env:1"),
        // Not configuration: no section path.
        ("KORA_LOG", "debug"),
        ("KORA_NATS_URL", "nats://flag-env:1"),
        ("KORA_SECRET_TOKEN", "s3cret"),
        ("OTHER__THING", "x"),
    ]);
    let c: Cfg = load(
        Some(&f),
        "KORA",
        vars,
        json!({"worker": {"concurrency": 5}}),
    )
    .unwrap();
    assert_eq!(c.nats.url, "nats://env:1");
    assert_eq!(c.nats.prefix, "file");
    assert_eq!(c.worker.concurrency, 5, "flags win");
}

#[test]
fn a_section_can_come_whole_from_one_variable_as_json() {
    let vars = env(&[("KORA_QUEUES", r#"{"email": {"rate_per_sec": 10}}"#)]);
    let c: Cfg = load(None, "KORA", vars, json!({})).unwrap();
    assert_eq!(c.queues["email"].rate_per_sec, 10.0);
}

#[test]
fn a_misspelled_key_is_reported_with_where_it_came_from() {
    let vars = env(&[("KORA_WORKER__CONCURENCY", "8")]);
    let e = load::<Cfg>(None, "KORA", vars, json!({}))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("concurency") && e.contains("environment variable KORA_WORKER__CONCURENCY"),
        "{e}"
    );
    let vars = env(&[("KORA_WROKER__CONCURRENCY", "8")]);
    let e = load::<Cfg>(None, "KORA", vars, json!({}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("wroker"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kora.toml");
    std::fs::write(&f, "[worker]\nconcurency = 3\n").unwrap();
    let e = load::<Cfg>(Some(&f), "KORA", vec![], json!({}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("concurency") && e.contains("kora.toml"), "{e}");
    let e = load::<Cfg>(
        None,
        "KORA",
        env(&[("KORA_WORKER__CONCURRENCY", "many")]),
        json!({}),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("worker.concurrency") && e.contains("many"),
        "{e}"
    );
}

#[test]
fn a_moved_key_says_where_it_went() {
    let vars = env(&[("KORA_WORKER__DATA_ROOT", "/data")]);
    let e = Loader::new("KORA", vars)
        .moved(&[("worker.data_root", "nodes.data_root")])
        .load::<Cfg>()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("worker.data_root is now nodes.data_root")
            && e.contains("KORA_WORKER__DATA_ROOT"),
        "{e}"
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let e = load::<Cfg>(
        Some(Path::new("/nope/kora.toml")),
        "KORA",
        vec![],
        json!({}),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nope/kora.toml"), "{e}");
}
