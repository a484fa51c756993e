//! A certificate authority of a test's own, made with the `openssl` command: TLS tests of NATS,
//! the gateway and PostgreSQL give their servers certificates signed by it and their clients
//! its certificate to trust. Test support only (feature `test-util`).

// Test support: a failed openssl step is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files [`certificates`] writes.
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// The CA's certificate: what clients trust.
    pub ca: PathBuf,
    /// A server certificate for `127.0.0.1` and `localhost`, and its key.
    pub server: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate (`CN=kora-client`), and its key.
    pub client: PathBuf,
    pub client_key: PathBuf,
    /// A server certificate naming only `nats.internal` (no address), and its key: a server
    /// reached by an address its certificate does not name.
    pub internal: PathBuf,
    pub internal_key: PathBuf,
}

/// Makes a CA in `dir` and signs a server and a client certificate with it, each valid for a
/// day (RSA 2048, unencrypted keys).
pub fn certificates(dir: &Path) -> TestCerts {
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=kora-test-ca",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
        (
            "internal",
            "subjectAltName=DNS:nats.internal\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        ),
    ] {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN=kora-{name}"),
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.csr"),
        ]);
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }
    TestCerts {
        ca: dir.join("ca.pem"),
        server: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
        internal: dir.join("internal.pem"),
        internal_key: dir.join("internal-key.pem"),
    }
}
