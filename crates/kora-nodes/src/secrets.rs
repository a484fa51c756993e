//! Secret references in node config, resolved on the worker when the node runs.
//!
//! A config value `{"$secret": "NAME"}` is replaced by the secret's value, and `${secret:NAME}`
//! inside a string by its text. Secrets come from the worker's environment, and only from
//! variables named `KORA_SECRET_<NAME>` (upper-cased): a workflow cannot read anything else of
//! the worker's environment. The ledger, events and logs only ever hold the reference; the
//! worker also masks every resolved value in the node's output and error before they leave it.

use kora_model::error_type;
use kora_model::{Map, Value};

use crate::NodeError;

/// Where secret values come from.
pub trait SecretSource: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
}

/// `KORA_SECRET_<NAME>` environment variables.
pub struct EnvSecrets;

impl SecretSource for EnvSecrets {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(env_name(name)).ok()
    }
}

/// Every secret value this process holds (`KORA_SECRET_*`), for masking text that did not come
/// through a reference (what node code prints). Longest first, so a secret that contains
/// another is masked whole.
pub fn env_values() -> Vec<String> {
    let mut values: Vec<String> = std::env::vars_os()
        .filter(|(k, _)| k.to_string_lossy().starts_with("KORA_SECRET_"))
        .filter_map(|(_, v)| v.into_string().ok())
        .filter(|v| !v.is_empty())
        .collect();
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values
}

/// The environment variable holding secret `name`.
pub fn env_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("KORA_SECRET_{clean}")
}

/// Replaces every secret reference in `input` (at any depth) by its value. Returns the
/// values resolved (to mask them in what the node returns), or which secret is missing.
pub fn resolve(input: &mut Map, source: &dyn SecretSource) -> Result<Vec<String>, NodeError> {
    let mut used = Vec::new();
    for v in input.values_mut() {
        resolve_value(v, source, &mut used)?;
    }
    Ok(used)
}

fn resolve_value(
    v: &mut Value,
    source: &dyn SecretSource,
    used: &mut Vec<String>,
) -> Result<(), NodeError> {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("$secret") => {
            let name = m
                .get("$secret")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let value = lookup(&name, source)?;
            used.push(value.clone());
            *v = Value::String(value);
        }
        Value::Object(m) => {
            for x in m.values_mut() {
                resolve_value(x, source, used)?;
            }
        }
        Value::Array(a) => {
            for x in a {
                resolve_value(x, source, used)?;
            }
        }
        Value::String(s) if s.contains("${secret:") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${secret:") {
                out.push_str(&rest[..start]);
                let after = &rest[start + "${secret:".len()..];
                let Some(end) = after.find('}') else {
                    out.push_str(&rest[start..]);
                    rest = "";
                    break;
                };
                let value = lookup(&after[..end], source)?;
                out.push_str(&value);
                used.push(value);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        _ => {}
    }
    Ok(())
}

fn lookup(name: &str, source: &dyn SecretSource) -> Result<String, NodeError> {
    if name.is_empty() {
        return Err(NodeError::permanent(
            error_type::SECRET,
            "a secret reference names no secret: write {\"$secret\": \"NAME\"} or ${secret:NAME}",
        ));
    }
    source.get(name).ok_or_else(|| {
        NodeError::permanent(
            error_type::SECRET,
            format!(
                "secret '{name}' is not set on this worker: set the environment variable {} where the worker runs",
                env_name(name)
            ),
        )
    })
}

/// Replaces each secret value in `v` (at any depth, inside strings too) by `***`.
pub fn mask(v: &mut Value, secrets: &[String]) {
    match v {
        Value::String(s) => *s = mask_text(s, secrets),
        Value::Array(a) => a.iter_mut().for_each(|x| mask(x, secrets)),
        Value::Object(m) => m.values_mut().for_each(|x| mask(x, secrets)),
        _ => {}
    }
}

/// `text` with every secret value replaced by `***` (secrets shorter than 4 characters are
/// masked too: no value is too short to leak).
pub fn mask_text(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixed;
    impl SecretSource for Fixed {
        fn get(&self, name: &str) -> Option<String> {
            (name == "pg_password").then(|| "hunter2".to_string())
        }
    }

    #[test]
    fn references_resolve_and_values_are_masked() {
        let mut input: Map = json!({
            "password": {"$secret": "pg_password"},
            "url": "postgres://app:${secret:pg_password}@db/app",
            "nested": [{"token": {"$secret": "pg_password"}}],
            "plain": "${name}",
        })
        .as_object()
        .unwrap()
        .clone();
        let used = resolve(&mut input, &Fixed).unwrap();
        assert_eq!(input["password"], "hunter2");
        assert_eq!(input["url"], "postgres://app:hunter2@db/app");
        assert_eq!(input["nested"][0]["token"], "hunter2");
        assert_eq!(
            input["plain"], "${name}",
            "ordinary templates are left alone"
        );
        let mut out = json!({"echo": "connected to postgres://app:hunter2@db/app"});
        mask(&mut out, &used);
        assert_eq!(out["echo"], "connected to postgres://app:***@db/app");
    }

    #[test]
    fn a_missing_secret_names_the_variable_to_set() {
        let mut input: Map = json!({"k": {"$secret": "api-key"}})
            .as_object()
            .unwrap()
            .clone();
        let e = resolve(&mut input, &Fixed).unwrap_err();
        assert!(e.to_string().contains("KORA_SECRET_API_KEY"), "{e}");
        assert!(!e.is_retryable());
    }
}
