//! The Python client (`clients/python`), installed with pip into a fresh virtual environment
//! from the repository, runs its tests (`clients/python/tests`) against real roles.

use std::process::Command;

use crate::api::*;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn run(cmd: &mut Command, what: &str) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{what} failed ({}):\n{out}", o.status);
    out
}

#[tokio::test]
async fn the_python_client_installs_and_works() {
    let Some((d, api)) = start(&[]).await else {
        return;
    };
    let venv = tempfile::tempdir().unwrap();
    run(
        Command::new(python()).args(["-m", "venv"]).arg(venv.path()),
        "python3 -m venv",
    );
    let pip = venv.path().join("bin/pip");
    let py = venv.path().join("bin/python");
    // From a copy: setuptools writes build/ and *.egg-info next to the sources, which must not
    // land in the repository. pip builds it in isolation, fetching setuptools from PyPI (as a
    // user's pip would).
    let src = venv.path().join("src");
    run(
        Command::new("cp")
            .arg("-r")
            .arg(root().join("clients/python"))
            .arg(&src),
        "copying clients/python",
    );
    run(
        Command::new(&pip)
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg(&src),
        "pip install clients/python",
    );
    let admin = key(&d, "py", "admin", &[]);
    let viewer = key(&d, "py", "viewer", &[]);
    // The installed package, not the source folder: run from elsewhere.
    let out = run(
        Command::new(&py)
            .current_dir(venv.path())
            .args(["-m", "unittest", "discover", "-v", "-s"])
            .arg(root().join("clients/python/tests"))
            .env("KORA_URL", &api.base)
            .env("KORA_ADMIN_KEY", &admin)
            .env("KORA_VIEWER_KEY", &viewer),
        "the Python client's tests",
    );
    assert!(out.contains("OK"), "{out}");
    let file = run(
        Command::new(&py)
            .current_dir(venv.path())
            .args(["-c", "import kora_client; print(kora_client.__file__)"]),
        "import kora_client",
    );
    assert!(file.contains("site-packages"), "{file}");
    d.finish().await;
}
