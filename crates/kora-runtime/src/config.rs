//! Layered configuration, like restate's loader: defaults < file < environment < flags.

use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Builds `T` from its serde defaults, overlaid by `file` (TOML, if given), then by environment
/// variables `{prefix}_SECTION__KEY=value` (double underscore descends; values parse as JSON
/// when they can, else are strings), then by `overrides` (a JSON object from flags).
pub fn load<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    env_prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: Value,
) -> Result<T, Error> {
    let mut merged =
        serde_json::to_value(T::default()).map_err(|e| Error::Invalid(e.to_string()))?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        let parsed: toml::Value = toml::from_str(&text).map_err(|source| Error::Toml {
            path: path.display().to_string(),
            source,
        })?;
        let parsed = serde_json::to_value(parsed).map_err(|e| Error::Invalid(e.to_string()))?;
        merge(&mut merged, parsed);
    }
    let want = format!("{env_prefix}_");
    for (k, v) in env {
        let Some(rest) = k.strip_prefix(&want) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            continue;
        }
        let value = serde_json::from_str::<Value>(&v).unwrap_or(Value::String(v));
        let mut obj = value;
        for key in path.iter().rev() {
            let mut m = Map::new();
            m.insert(key.clone(), obj);
            obj = Value::Object(m);
        }
        // Only keys the configuration knows are taken from the environment, so unrelated
        // KORA_* variables cannot break start-up.
        if known(&merged, &path) {
            merge(&mut merged, obj);
        }
    }
    merge(&mut merged, overrides);
    serde_json::from_value(merged).map_err(|e| Error::Invalid(e.to_string()))
}

fn known(v: &Value, path: &[String]) -> bool {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    true
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, other) if !other.is_null() => *slot = other,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
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
    struct Cfg {
        nats: Nats,
        workers: u32,
    }

    #[test]
    fn layers_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("kora.toml");
        std::fs::write(&f, "workers = 3\n[nats]\nprefix = \"file\"\n").unwrap();
        let env = vec![
            ("KORA_NATS__URL".to_string(), "nats://env:1".to_string()),
            ("KORA_UNRELATED".into(), "x".into()),
        ];
        let c: Cfg = load(Some(&f), "KORA", env, json!({"workers": 5})).unwrap();
        assert_eq!(
            c,
            Cfg {
                nats: Nats {
                    url: "nats://env:1".into(),
                    prefix: "file".into()
                },
                workers: 5
            }
        );
        std::fs::write(&f, "wrkers = 3\n").unwrap();
        let e = load::<Cfg>(Some(&f), "KORA", vec![], json!({})).unwrap_err();
        assert!(e.to_string().contains("unknown field `wrkers`"), "{e}");
    }
}
