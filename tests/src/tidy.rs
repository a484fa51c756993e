//! Mechanical checks of ARCHITECTURE.md's invariants, over every crate's manifest and sources.

use std::collections::BTreeMap;

use crate::repo_root;

fn manifests() -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(repo_root().join("crates"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path().join("Cargo.toml")).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        let name = v["package"]["name"].as_str().unwrap().to_string();
        assert_eq!(
            e.file_name().to_string_lossy(),
            name,
            "folder name equals package name"
        );
        out.insert(name, v);
    }
    out
}

fn deps(v: &toml::Value) -> Vec<String> {
    v.get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn dependency_rules_hold() {
    let m = manifests();
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("kora-model", &[][..]),
        ("kora-runtime", &[][..]),
        ("kora-broker", &["kora-model"][..]),
        (
            "kora-client",
            &["kora-broker", "kora-model", "kora-store"][..],
        ),
        ("kora-store", &["kora-model"][..]),
        ("kora-nodes", &["kora-model"][..]),
        (
            "kora-scheduler",
            &["kora-broker", "kora-model", "kora-store"][..],
        ),
        (
            "kora-worker",
            &["kora-broker", "kora-model", "kora-nodes"][..],
        ),
        (
            "kora-coordinator",
            &["kora-broker", "kora-model", "kora-store"][..],
        ),
        (
            "kora-gateway",
            &["kora-broker", "kora-client", "kora-model", "kora-store"][..],
        ),
        (
            "kora-server",
            &[
                "kora-broker",
                "kora-coordinator",
                "kora-gateway",
                "kora-model",
                "kora-nodes",
                "kora-runtime",
                "kora-scheduler",
                "kora-store",
                "kora-worker",
            ][..],
        ),
        (
            "kora-cli",
            &[
                "kora-broker",
                "kora-client",
                "kora-coordinator",
                "kora-gateway",
                "kora-model",
                "kora-nodes",
                "kora-runtime",
                "kora-scheduler",
                "kora-server",
                "kora-store",
                "kora-worker",
            ][..],
        ),
    ]);
    for (name, v) in &m {
        let internal: Vec<String> = deps(v)
            .into_iter()
            .filter(|d| d.starts_with("kora-"))
            .collect();
        let ok = allowed
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is not in the dependency table of ARCHITECTURE.md"));
        for d in &internal {
            assert!(
                ok.contains(&d.as_str()),
                "{name} may not depend on {d} (see ARCHITECTURE.md, Code map)"
            );
        }
        let external = deps(v);
        // The ledger is kora-store's; kora-nodes' SQL nodes reach users' own databases.
        if name != "kora-store" && name != "kora-nodes" {
            assert!(
                !external.contains(&"sqlx".to_string()),
                "only kora-store (the ledger) and kora-nodes (SQL nodes) may name sqlx, {name} does"
            );
        }
        if name != "kora-broker" {
            assert!(
                !external.contains(&"async-nats".to_string()),
                "only kora-broker may name async-nats, {name} does"
            );
        }
        if name == "kora-model" {
            for banned in ["tokio", "async-nats", "sqlx"] {
                assert!(
                    !external.contains(&banned.to_string()),
                    "kora-model is pure; it names {banned}"
                );
            }
        }
        assert_eq!(
            v["lints"]["workspace"].as_bool(),
            Some(true),
            "{name} uses the workspace lints"
        );
    }
}

#[test]
fn every_crate_says_what_it_owns_and_architecture_names_it() {
    let arch = std::fs::read_to_string(repo_root().join("ARCHITECTURE.md")).unwrap();
    for name in manifests().keys() {
        let lib = repo_root().join("crates").join(name).join("src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} must open with //! docs",
            lib.display()
        );
        assert!(
            text.contains("Must not") || text.contains("must not"),
            "{} must say what the crate must not do",
            lib.display()
        );
        assert!(
            arch.contains(&format!("crates/{name}")),
            "ARCHITECTURE.md never names crates/{name}"
        );
    }
}

/// deploy/kora.toml is a valid configuration for the real loader, and docker-compose.yml runs
/// the roles with the variables the binary reads. (No Docker engine here: they are parsed.)
#[test]
fn deployment_files_match_the_binary() {
    let root = repo_root();
    let cfg = kora_server::ServerConfig::load(
        Some(&root.join("deploy/kora.toml")),
        Vec::<(String, String)>::new(),
        serde_json::json!({}),
    )
    .expect("deploy/kora.toml loads and is valid");
    assert_eq!(cfg.nats.url, "nats://nats:4222");
    assert_eq!(
        cfg.gateway,
        kora_gateway::GatewayConfig {
            addr: "0.0.0.0:8080".into(),
            ..Default::default()
        },
        "deploy/kora.toml's [gateway] shows the defaults (but addr)"
    );
    let compose: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(root.join("docker-compose.yml")).unwrap())
            .unwrap();
    let services = compose["services"].as_object().expect("services");
    for s in ["nats", "postgres", "coordinator", "worker"] {
        assert!(services.contains_key(s), "docker-compose.yml lacks {s}");
    }
    assert!(
        compose["services"]["nats"]["command"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "-js"),
        "NATS needs JetStream"
    );
    for role in ["coordinator", "worker"] {
        let env = compose["services"][role]["environment"]
            .as_object()
            .unwrap();
        assert!(
            env.contains_key("KORA_NATS_URL") && env.contains_key("KORA_DATABASE_URL"),
            "{role} env"
        );
        assert_eq!(compose["services"][role]["command"][0], "serve");
        // Every KORA_SECTION__KEY the file sets is one the loader knows.
        let vars: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let cfg = kora_server::ServerConfig::load(None, vars, serde_json::json!({}))
            .unwrap_or_else(|e| panic!("{role}'s environment: {e}"));
        if role == "coordinator" {
            assert_eq!(cfg.metrics.addr, "0.0.0.0:9464");
        }
    }
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("--bin kora") && dockerfile.contains("python3"),
        "the image builds kora and has python3"
    );
}

/// docs/nodes.md is what `kora nodes --markdown` prints from the registry.
#[test]
fn the_node_reference_is_generated_from_the_registry() {
    let want = kora_nodes::docs::markdown(&kora_nodes::Registry::builtin(
        &kora_nodes::NodesConfig::default(),
    ));
    let have = std::fs::read_to_string(repo_root().join("docs/nodes.md")).unwrap_or_default();
    assert!(
        have == want,
        "docs/nodes.md is stale: run `cargo run -p kora-cli --bin kora -- nodes --markdown > docs/nodes.md`"
    );
}
