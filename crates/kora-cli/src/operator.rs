//! What the CLI adds to the operator API: who is acting, and input overrides from flags.

use anyhow::Context;
use kora_model::Map;

/// Who is acting, for the audit trail: `$KORA_ACTOR`, else `$USER@host`.
pub fn actor() -> String {
    if let Ok(a) = std::env::var("KORA_ACTOR") {
        return a;
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

/// `--set key=value` pairs and an `--input-file` (a JSON object) as one overrides map; a value
/// that parses as JSON is taken as JSON (`--set n=3` is a number), else as a string.
pub fn overrides(sets: &[String], file: Option<&std::path::Path>) -> anyhow::Result<Map> {
    let mut out = Map::new();
    if let Some(f) = file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", f.display()))?;
        match v {
            serde_json::Value::Object(m) => out.extend(m),
            _ => anyhow::bail!("{} must hold a JSON object of inputs", f.display()),
        }
    }
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--set {s:?}: use key=value"))?;
        anyhow::ensure!(!k.is_empty(), "--set {s:?}: the key is empty");
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_json_when_they_parse() {
        let m = overrides(&["n=3".into(), "s=abc".into(), "o={\"a\":1}".into()], None).unwrap();
        assert_eq!(m["n"], serde_json::json!(3));
        assert_eq!(m["s"], serde_json::json!("abc"));
        assert_eq!(m["o"]["a"], serde_json::json!(1));
        assert!(overrides(&["novalue".into()], None).is_err());
    }
}
