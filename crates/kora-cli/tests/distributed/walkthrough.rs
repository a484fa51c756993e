//! The README's walkthroughs, run as written, so they cannot silently go stale.
//!
//! A README block whose info string is `sh walkthrough=NAME` is part of walkthrough NAME; its
//! blocks run in order in one `bash` (so variables carry over), in a fresh folder holding an
//! `examples` link to the repository's, with the freshly built `kora` first on the PATH and
//! the test deployment's prefix, database and ports in the environment. A block tagged
//! `background` runs like a command left running in another terminal; the next block starts
//! once its last expected line has appeared. Lines starting `#> ` are expected output: each
//! must match a line the block printed, in order, where `...` stands for anything.
//! `localhost:8080` and `127.0.0.1:8080` (the gateway) and `127.0.0.1:9464` (a metrics
//! address) are rewritten to this test's free ports.

use std::collections::BTreeMap;
use std::io::Read;

use crate::support::*;

/// How long a whole walkthrough may take.
const WALKTHROUGH_LIMIT: Duration = Duration::from_secs(240);

#[derive(Debug, Default)]
struct Block {
    background: bool,
    script: Vec<String>,
    expected: Vec<String>,
}

/// The README's walkthrough blocks, by walkthrough name, in the order they appear.
fn walkthroughs(readme: &str) -> BTreeMap<String, Vec<Block>> {
    let mut all: BTreeMap<String, Vec<Block>> = BTreeMap::new();
    let mut current: Option<(String, Block)> = None;
    for line in readme.lines() {
        if let Some((name, block)) = current.take() {
            if line.trim_start().starts_with("```") {
                all.entry(name).or_default().push(block);
            } else {
                let mut block = block;
                match line.strip_prefix("#>") {
                    Some(expected) => block
                        .expected
                        .push(expected.strip_prefix(' ').unwrap_or(expected).to_string()),
                    None => block.script.push(line.to_string()),
                }
                current = Some((name, block));
            }
            continue;
        }
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let words: Vec<&str> = info.split_whitespace().collect();
        if let Some(name) = words.iter().find_map(|w| w.strip_prefix("walkthrough=")) {
            let block = Block {
                background: words.contains(&"background"),
                ..Block::default()
            };
            current = Some((name.to_string(), block));
        }
    }
    assert!(
        current.is_none(),
        "README: a walkthrough block is not closed"
    );
    all
}

/// Whether `line` matches `pattern`, whose `...` stand for anything.
fn matches(pattern: &str, line: &str) -> bool {
    let mut rest = line;
    for piece in pattern.trim_end().split("...") {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// The expected lines `output` lacks (matched in order): empty when all are there.
fn missing(expected: &[String], output: &str) -> Vec<String> {
    let mut lines = output.lines();
    let mut lacking = Vec::new();
    for want in expected {
        if !lines.by_ref().any(|l| matches(want, l)) {
            lacking.push(want.clone());
            // Later lines are looked for from the start again, so one miss reports once.
            lines = output.lines();
        }
    }
    lacking
}

/// The longest literal piece of `pattern`: what a background block's log is polled for.
fn needle(pattern: &str) -> &str {
    pattern
        .split("...")
        .max_by_key(|p| p.trim().len())
        .unwrap_or("")
        .trim()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs walkthrough `name` of the README and checks every block's expected lines.
async fn walk(name: &str) {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut all = walkthroughs(&readme);
    let blocks = all
        .remove(name)
        .unwrap_or_else(|| panic!("README has no walkthrough={name} block"));
    let Some(d) = Deployment::new(&[]).await else {
        return;
    };
    let gateway = d.gateway.trim_start_matches("http://").to_string();
    let metrics = format!("127.0.0.1:{}", free_port());
    let rewrite = |s: &str| {
        s.replace("localhost:8080", &gateway)
            .replace("127.0.0.1:8080", &gateway)
            .replace("127.0.0.1:9464", &metrics)
    };

    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root().join("examples"), dir.path().join("examples")).unwrap();
    let mut script = String::from(
        "exec 2>&1\n\
         wait_for() { for _ in $(seq 1 600); do grep -qF -- \"$2\" \"$1\" && return 0; sleep 0.1; done; \
         echo \"@@ gave up waiting for: $2\"; cat \"$1\"; exit 1; }\n",
    );
    for (i, b) in blocks.iter().enumerate() {
        let body = rewrite(&b.script.join("\n"));
        if b.background {
            script.push_str(&format!("(\n{body}\n) > background-{i}.log 2>&1 &\n"));
            if let Some(last) = b.expected.last() {
                let wanted = rewrite(needle(last));
                script.push_str(&format!(
                    "wait_for background-{i}.log {}\n",
                    shell_quote(&wanted)
                ));
            }
        } else {
            script.push_str(&format!("echo '@@block {i}'\n{body}\n"));
        }
    }
    script.push_str("echo '@@end'\n");
    std::fs::write(dir.path().join("walkthrough.sh"), &script).unwrap();

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kora")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("walkthrough.sh")
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("KORA_CONFIG")
        .env("KORA_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in &d.env {
        cmd.env(k, v);
    }
    // Its own process group: everything the walkthrough started is stopped with it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if started.elapsed() > WALKTHROUGH_LIMIT {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.wait();
    let output = reader.join().unwrap();
    assert!(
        finished,
        "walkthrough {name} did not finish within {WALKTHROUGH_LIMIT:?}; it printed:\n{output}"
    );
    assert!(
        output.contains("@@end"),
        "walkthrough {name} stopped early; it printed:\n{output}"
    );

    let mut failures = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let printed = if b.background {
            std::fs::read_to_string(dir.path().join(format!("background-{i}.log")))
                .unwrap_or_default()
        } else {
            let from = output.find(&format!("@@block {i}\n")).unwrap();
            let rest = &output[from..];
            let to = rest[1..].find("@@").map_or(rest.len(), |n| n + 1);
            rest[..to].to_string()
        };
        let expected: Vec<String> = b.expected.iter().map(|e| rewrite(e)).collect();
        let lacking = missing(&expected, &printed);
        if !lacking.is_empty() {
            failures.push(format!(
                "block {i} (`{}`) lacks:\n  {}\nit printed:\n{printed}",
                b.script.first().map_or("", |s| s.as_str()),
                lacking.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "README walkthrough {name} differs from what it prints:\n{}",
        failures.join("\n")
    );
    d.finish().await;
}

#[tokio::test]
async fn readme_embedded_walkthrough_runs_as_written() {
    walk("embedded").await;
}

#[tokio::test]
async fn readme_five_minutes_with_kora_dev_runs_as_written() {
    walk("five-minutes").await;
}

#[tokio::test]
async fn readme_distributed_walkthrough_runs_as_written() {
    walk("distributed").await;
}

#[tokio::test]
async fn readme_gateway_walkthrough_runs_as_written() {
    walk("gateway").await;
}

#[test]
fn expected_lines_match_in_order_with_wildcards() {
    assert!(matches("run ...  succeeded", "run 01a2  succeeded"));
    assert!(!matches("run ...  succeeded", "run 01a2  failed"));
    assert!(matches(" mean  ok", "x mean  ok y"));
    let out = "a 1\nb 2\nc 3\n";
    assert!(missing(&["a ...".into(), "c 3".into()], out).is_empty());
    assert_eq!(
        missing(&["c 3".into(), "a 1".into()], out),
        vec!["a 1".to_string()]
    );
    assert_eq!(
        needle("  API key  ... (admin of tenant default, ...)"),
        "(admin of tenant default,"
    );
}
