//! `kora dev` where no NATS answers: it starts the `nats-server` on the PATH (JetStream, its
//! store in the data folder), runs a submitted workflow on it, and stops it on Ctrl-C.

use std::io::Read;

use super::support::*;

#[tokio::test]
async fn kora_dev_starts_a_nats_server_when_none_answers_and_stops_it() {
    if !Command::new("sh")
        .args(["-c", "command -v nats-server"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            std::env::var("CI").is_err(),
            "CI needs a nats-server on the PATH"
        );
        eprintln!("skipping: no nats-server on the PATH");
        return;
    }
    let nats = format!("nats://127.0.0.1:{}", free_port());
    let Some(d) = Deployment::new(&[("KORA_NATS_URL", &nats)]).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut dev = d
        .command()
        .args(["dev", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = dev.stdout.take().unwrap();
    let banner = std::thread::spawn(move || {
        // The banner's last line ends it; read until then.
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while !text.contains("Ctrl-C drains and stops.") {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        text
    });
    let banner = banner.join().unwrap();
    assert!(
        banner.contains(&format!("{nats} (started by kora dev)")),
        "{banner}"
    );
    assert!(dir.path().join("nats").is_dir(), "its JetStream store");

    let out = d.submit_wait(&root().join("examples/diamond/workflow.json"), None);
    assert_eq!(out["status"], "succeeded", "{out}");

    // Ctrl-C: kora dev drains, stops its nats-server, and exits 0.
    let _ = Command::new("kill")
        .args(["-INT", &dev.id().to_string()])
        .status();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = dev.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "kora dev did not stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut err = String::new();
    dev.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(
        err.contains("started ") && err.contains("kora dev stopped"),
        "{err}"
    );
    let port: u16 = nats.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the nats-server it started still answers"
    );
    d.finish().await;
}
