//! How a process proves itself to NATS and checks the server it reached: a user and password,
//! a token, an NKey seed, or a `.creds` file (decentralised JWT auth); TLS with a CA bundle and
//! a client certificate. Every setting comes from the configuration file or the environment
//! (`KORA_NATS__PASSWORD`), or names a file holding the secret; none is a command-line flag.
//!
//! Owns: checking `[nats]`'s credential keys and turning them into connect options.
//! Must not: log or put a secret in an error ([`Secret`]'s `Debug` is redacted, and errors name
//! the key or file, never its contents).

use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;

use crate::nats::NatsConfig;

/// A secret from configuration: shown as `[redacted]` by `Debug`, compared and serialized as
/// its text. An environment variable that looks like a number is read as its text, so the
/// configuration's type check never repeats a secret in an error (a secret with leading zeros
/// belongs in a file: `nats.password_file`).
#[derive(Clone, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a secret (text)")
            }
            fn visit_str<E>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(Text)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

/// `[nats]`'s credential and TLS keys, kept flat in [`NatsConfig`] (`nats.user`,
/// `nats.tls_ca_file`, …): at most one way to authenticate; TLS combines with any. An empty
/// path counts as unset.
impl NatsConfig {
    /// Every combination of credential keys that cannot work, named by key.
    pub(crate) fn validate_auth(&self) -> Result<(), String> {
        let password = !self.password.0.is_empty() || set(&self.password_file).is_some();
        let token = !self.token.0.is_empty() || set(&self.token_file).is_some();
        if !self.password.0.is_empty() && set(&self.password_file).is_some() {
            return Err("nats.password and nats.password_file are both set: keep one".into());
        }
        if !self.token.0.is_empty() && set(&self.token_file).is_some() {
            return Err("nats.token and nats.token_file are both set: keep one".into());
        }
        if password == self.user.is_empty() {
            return Err(
                "nats.user and nats.password (or nats.password_file) go together: set both or neither"
                    .into(),
            );
        }
        let ways = [
            ("nats.user", password),
            ("nats.token", token),
            ("nats.nkey_seed_file", set(&self.nkey_seed_file).is_some()),
            ("nats.creds_file", set(&self.creds_file).is_some()),
        ];
        let given: Vec<&str> = ways.iter().filter(|(_, on)| *on).map(|(k, _)| *k).collect();
        if given.len() > 1 {
            return Err(format!(
                "{} are all set: NATS takes one way to authenticate, keep one",
                given.join(" and ")
            ));
        }
        if !self.tls_server_name.is_empty() {
            if set(&self.tls_ca_file).is_none() {
                return Err(
                    "nats.tls_server_name needs nats.tls_ca_file (the CA the server's certificate chains to)"
                        .into(),
                );
            }
            if !crate::nats_tls::valid_name(&self.tls_server_name) {
                return Err(format!(
                    "nats.tls_server_name {:?} is not a DNS name or an IP address",
                    self.tls_server_name
                ));
            }
        }
        if set(&self.tls_cert_file).is_some() != set(&self.tls_key_file).is_some() {
            return Err(
                "nats.tls_cert_file and nats.tls_key_file go together (a client certificate and its key)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Whether TLS is asked for (a CA, a client certificate or `tls_required`).
    pub fn tls(&self) -> bool {
        self.tls_required || set(&self.tls_ca_file).is_some() || set(&self.tls_cert_file).is_some()
    }

    /// `options` with these credentials and TLS settings; an error names the key or file.
    pub(crate) async fn apply_auth(
        &self,
        mut options: ConnectOptions,
    ) -> Result<ConnectOptions, String> {
        self.validate_auth()?;
        if !self.user.is_empty() {
            let password = match set(&self.password_file) {
                Some(p) => read_secret(p, "nats.password_file")?,
                None => self.password.0.clone(),
            };
            options = options.user_and_password(self.user.to_string(), password);
        }
        let token = match set(&self.token_file) {
            Some(p) => read_secret(p, "nats.token_file")?,
            None => self.token.0.clone(),
        };
        if !token.is_empty() {
            options = options.token(token);
        }
        if let Some(p) = set(&self.nkey_seed_file) {
            let seed = read_secret(p, "nats.nkey_seed_file")?;
            // Checked here so a wrong file is named now, not as a failed handshake later.
            nkeys::KeyPair::from_seed(&seed).map_err(|_| {
                format!(
                    "nats.nkey_seed_file {}: not an NKey seed (a line starting with S, as `nk -gen user` writes)",
                    p.display()
                )
            })?;
            options = options.nkey(seed);
        }
        if let Some(p) = set(&self.creds_file) {
            exists(p, "nats.creds_file")?;
            options = options.credentials_file(p).await.map_err(|e| {
                format!(
                    "nats.creds_file {}: not a usable credentials file ({})",
                    p.display(),
                    e.kind()
                )
            })?;
        }
        if let (Some(ca), false) = (set(&self.tls_ca_file), self.tls_server_name.is_empty()) {
            exists(ca, "nats.tls_ca_file")?;
            let client = set(&self.tls_cert_file).zip(set(&self.tls_key_file));
            let config = crate::nats_tls::config(ca, &self.tls_server_name, client)?;
            return Ok(options.tls_client_config(config).require_tls(true));
        }
        if let Some(p) = set(&self.tls_ca_file) {
            exists(p, "nats.tls_ca_file")?;
            options = options.add_root_certificates(p.to_path_buf());
        }
        if let (Some(cert), Some(key)) = (set(&self.tls_cert_file), set(&self.tls_key_file)) {
            exists(cert, "nats.tls_cert_file")?;
            exists(key, "nats.tls_key_file")?;
            options = options.add_client_certificate(cert.to_path_buf(), key.to_path_buf());
        }
        if self.tls() {
            options = options.require_tls(true);
        }
        Ok(options)
    }
}

fn exists(p: &Path, key: &str) -> Result<(), String> {
    std::fs::metadata(p)
        .map(|_| ())
        .map_err(|e| format!("{key} {}: {e}", p.display()))
}

/// A secret file's first line, trimmed; an error names the key and the file, never the text.
fn read_secret(p: &Path, key: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{key} {}: {e}", p.display()))?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    line.map(str::to_string)
        .ok_or_else(|| format!("{key} {} is empty", p.display()))
}

/// `url` with any password or token in it replaced by `***` (for messages).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_string(),
    }
}

/// A path key that is empty in configuration counts as unset.
fn set(p: &Option<PathBuf>) -> Option<&Path> {
    p.as_deref().filter(|p| !p.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_and_combinations_are_checked() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        let both = NatsConfig {
            token: s,
            nkey_seed_file: Some("/x".into()),
            ..NatsConfig::default()
        };
        let e = both.validate_auth().unwrap_err();
        assert!(e.contains("nats.token and nats.nkey_seed_file"), "{e}");
        assert!(!format!("{both:?}").contains("hunter2"));
        let lonely = NatsConfig {
            user: "kora".into(),
            ..NatsConfig::default()
        };
        assert!(lonely.validate_auth().unwrap_err().contains("go together"));
        assert_eq!(
            redact_url("nats://kora:hunter2@127.0.0.1:4222"),
            "nats://***@127.0.0.1:4222"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        // A numeric-looking secret from the environment is its text.
        use serde::Deserialize;
        let n = Secret::deserialize(
            serde::de::value::U64Deserializer::<serde::de::value::Error>::new(12345),
        )
        .unwrap();
        assert_eq!(n.0, "12345");
    }
}
