//! The PythonCodeNode sandbox (#15) against a real `python3`: every escape the issue names
//! fails that node with a clear, permanent error, and the pool goes on serving other calls.

use std::time::Duration;

use kora_model::Map;
use kora_nodes::NodeError;
use kora_nodes::python::PythonPool;
use kora_nodes::sandbox::{SandboxConfig, landlock_abi};
use serde_json::{Value, json};

fn pool(cfg: SandboxConfig, root: &std::path::Path) -> PythonPool {
    PythonPool::new(
        "python3",
        1,
        Duration::from_secs(20),
        Some((cfg, root.to_path_buf())),
    )
}

async fn run(p: &PythonPool, code: &str) -> Result<Map, NodeError> {
    p.execute("n", code, &Map::new(), None).await
}

/// The node's error, which must be permanent and of `ty`.
async fn refused(p: &PythonPool, code: &str, ty: &str) -> String {
    match run(p, code).await {
        Ok(out) => panic!("{code:?} was allowed: {out:?}"),
        Err(e) => {
            assert!(!e.is_retryable(), "{code:?}: {e:?} should be permanent");
            assert_eq!(e.error_type(), ty, "{code:?}: {e}");
            e.to_string()
        }
    }
}

fn landlock() -> bool {
    if landlock_abi() == 0 {
        eprintln!("skipping: this kernel has no Landlock");
        return false;
    }
    true
}

#[tokio::test]
async fn escapes_fail_the_node_and_the_pool_carries_on() {
    if !landlock() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("in.txt"), "inside").unwrap();
    let outside = tempfile::tempdir().unwrap();
    let outside_file = outside.path().join("escape.txt");
    let cfg = SandboxConfig {
        memory_mib: 512,
        file_size_mib: 1,
        ..SandboxConfig::default()
    };
    let p = pool(cfg, root.path());

    // The data root is readable and writable, by relative path (it is the working directory).
    let out = run(
        &p,
        "open('out.txt', 'w').write('x')\nresult = open('in.txt').read()",
    )
    .await
    .unwrap();
    assert_eq!(out["result"], json!("inside"));
    assert!(root.path().join("out.txt").exists());

    // Files outside it: read, write, and the worker through /proc.
    let e = refused(&p, "result = open('/etc/passwd').read()", "PermissionError").await;
    assert!(
        e.contains("/etc/passwd")
            && e.contains(&format!(
                "sandbox allows files only below the data root {}",
                root.path().canonicalize().unwrap().display()
            )),
        "{e}"
    );
    refused(
        &p,
        &format!("open({:?}, 'w').write('x')", outside_file.to_str().unwrap()),
        "PermissionError",
    )
    .await;
    assert!(!outside_file.exists());
    for code in [
        "result = open('/proc/self/environ').read()",
        "import os\nresult = open('/proc/%d/environ' % os.getppid()).read()",
        "import os\nresult = os.listdir('/proc')",
        "import os\nresult = os.listdir('/home')",
    ] {
        refused(&p, code, "PermissionError").await;
    }

    // The worker cannot be signalled.
    refused(
        &p,
        // SIGCONT: harmless to the test process if the sandbox ever let it through.
        "import os, signal\nos.kill(os.getppid(), signal.SIGCONT)",
        "PermissionError",
    )
    .await;

    // New processes: fork, a shell, a fork bomb.
    refused(&p, "import os\nos.fork()", "PermissionError").await;
    refused(
        &p,
        "import subprocess\nsubprocess.run(['true'])",
        "PermissionError",
    )
    .await;
    refused(
        &p,
        "import os\nwhile True:\n    os.fork()",
        "PermissionError",
    )
    .await;
    // Threads still work.
    let out = run(
        &p,
        "import threading\nbox = []\nt = threading.Thread(target=lambda: box.append(1))\nt.start(); t.join()\nresult = box",
    )
    .await
    .unwrap();
    assert_eq!(out["result"], json!([1]));

    // No network: no socket of any family, so neither NATS nor PostgreSQL's Unix socket.
    let e = refused(
        &p,
        "import socket\nsocket.create_connection(('127.0.0.1', 4222), timeout=2)",
        "PermissionError",
    )
    .await;
    assert!(e.contains("no network"), "{e}");
    refused(
        &p,
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('/var/run/postgresql/.s.PGSQL.5432')",
        "PermissionError",
    )
    .await;
    refused(
        &p,
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        "PermissionError",
    )
    .await;

    // Memory beyond the limit, a file beyond its size.
    let e = refused(&p, "x = bytearray(1024 * 1024 * 1024)", "MemoryError").await;
    assert!(e.contains("512 MiB of memory"), "{e}");
    let e = refused(
        &p,
        "open('big.bin', 'wb').write(b'x' * (2 * 1024 * 1024))",
        "OSError",
    )
    .await;
    assert!(
        e.contains("[Errno 27]") && e.contains("files up to 1 MiB"),
        "{e}"
    );

    // The environment is the sandbox's own: none of the worker's variables.
    let out = run(&p, "import os\nresult = sorted(os.environ)")
        .await
        .unwrap();
    let names: Vec<&str> = out["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for n in &names {
        assert!(
            [
                "PATH",
                "LANG",
                "PYTHONDONTWRITEBYTECODE",
                "PYTHONNOUSERSITE",
                "LC_CTYPE"
            ]
            .contains(n),
            "the interpreter sees {n}: {names:?}"
        );
    }

    // And after all of that, the pool serves an ordinary call.
    let out = run(&p, "result = 40 + 2").await.unwrap();
    assert_eq!(out["result"], json!(42));
}

#[tokio::test]
async fn a_call_past_its_cpu_seconds_fails_and_the_next_one_runs() {
    if !landlock() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let cfg = SandboxConfig {
        cpu_secs: 1,
        ..SandboxConfig::default()
    };
    let p = pool(cfg, root.path());
    let t = std::time::Instant::now();
    let e = refused(&p, "while True:\n    pass", "CPUTimeExceeded").await;
    assert!(e.contains("1 CPU seconds a call"), "{e}");
    // Two CPU seconds at most (one allowance, rounded up), however busy the machine is.
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    let out = run(&p, "result = 'next'").await.unwrap();
    assert_eq!(out["result"], json!("next"));
}

#[tokio::test]
async fn network_can_be_allowed_and_the_sandbox_turned_off() {
    if !landlock() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!(
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5).close()\nresult = 'connected'"
    );
    let net = pool(
        SandboxConfig {
            network: true,
            ..SandboxConfig::default()
        },
        root.path(),
    );
    assert_eq!(
        run(&net, &connect).await.unwrap()["result"],
        json!("connected")
    );
    // Files stay confined with the network on.
    refused(&net, "open('/etc/passwd').read()", "PermissionError").await;

    let off = pool(
        SandboxConfig {
            enabled: false,
            ..SandboxConfig::default()
        },
        root.path(),
    );
    let out = run(&off, "result = len(open('/etc/passwd').read()) > 0")
        .await
        .unwrap();
    assert_eq!(out["result"], Value::Bool(true));
}

#[test]
fn settings_out_of_range_are_refused_naming_the_key() {
    let bad = SandboxConfig {
        memory_mib: 8,
        ..SandboxConfig::default()
    };
    let e = bad.validate().unwrap_err();
    assert!(
        e.contains("nodes.sandbox.memory_mib") && e.contains("(it is 8)"),
        "{e}"
    );
    assert!(SandboxConfig::default().validate().is_ok());
}
