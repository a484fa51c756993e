//! The operations files shipped in `deploy/prometheus` are valid and their alert rules do what
//! their unit tests say, checked by the real `promtool` (Debian's `prometheus` package, which
//! `make test` installs through `.ci/services-up`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

/// `promtool`, or `None` outside CI when it is not installed (CI must not skip).
fn promtool() -> Option<&'static str> {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return Some("promtool");
    }
    assert!(
        std::env::var("CI").is_err(),
        "promtool is not installed; CI must not skip (apt-get install -y prometheus)"
    );
    eprintln!("skipping: promtool is not installed (apt-get install -y prometheus)");
    None
}

fn promtool_ok(args: &[&str]) {
    let Some(bin) = promtool() else { return };
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir())
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_are_valid() {
    promtool_ok(&["check", "rules", "kora-alerts.yml"]);
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    promtool_ok(&["test", "rules", "kora-alerts.test.yml"]);
}

#[test]
fn scrape_config_is_valid() {
    promtool_ok(&["check", "config", "prometheus.yml"]);
}

/// Every alert in the rules has a unit test that expects it to fire.
#[test]
fn every_alert_is_tested() {
    let rules = std::fs::read_to_string(dir().join("kora-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir().join("kora-alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for a in alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {a}\n        exp_alerts:\n          - "
            )),
            "no unit test expects {a} to fire"
        );
    }
}
