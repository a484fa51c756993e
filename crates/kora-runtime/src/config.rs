//! Layered configuration through figment: serde defaults < a TOML file < `KORA_SECTION__KEY`
//! environment variables < flags, then the type's own checks. Every layer is attributed, so an
//! error names the key and where it came from; a misspelled key in any layer is an error (the
//! types deny unknown fields), never silently dropped.

use std::path::Path;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Serialize, de::DeserializeOwned};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Where configuration comes from, and how it is checked.
pub struct Loader<'a> {
    file: Option<&'a Path>,
    env_prefix: &'a str,
    env: Vec<(String, String)>,
    flags: serde_json::Value,
    moved: &'a [(&'a str, &'a str)],
}

impl<'a> Loader<'a> {
    /// Variables `{env_prefix}_SECTION__KEY` (double underscore descends) configure; so does
    /// `{env_prefix}_SECTION` holding a whole section (JSON, or figment's `{key=value}`). Other
    /// variables with the prefix (`KORA_LOG`, `KORA_NATS_URL`, secrets) are not configuration.
    pub fn new(env_prefix: &'a str, env: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        Loader {
            file: None,
            env_prefix,
            env,
            flags: serde_json::Value::Object(Default::default()),
            moved: &[],
        }
    }

    /// A TOML file, over the defaults.
    pub fn file(mut self, file: Option<&'a Path>) -> Self {
        self.file = file;
        self
    }

    /// Values from flags (a JSON object of sections), over everything else.
    pub fn flags(mut self, flags: serde_json::Value) -> Self {
        self.flags = flags;
        self
    }

    /// Keys that moved, `(old, new)` as dotted paths: using an old one says where it went.
    pub fn moved(mut self, moved: &'a [(&'a str, &'a str)]) -> Self {
        self.moved = moved;
        self
    }

    pub fn load<T: Serialize + DeserializeOwned + Default>(self) -> Result<T, Error> {
        let defaults =
            serde_json::to_value(T::default()).map_err(|e| Error::Invalid(e.to_string()))?;
        let sections: Vec<String> = defaults
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let mut fig = Figment::from(Serialized::defaults(T::default()));
        if let Some(path) = self.file {
            std::fs::metadata(path).map_err(|source| Error::Read {
                path: path.display().to_string(),
                source,
            })?;
            fig = fig.merge(Toml::file_exact(path));
        }
        let want = format!("{}_", self.env_prefix);
        for (name, value) in &self.env {
            let Some(rest) = name.strip_prefix(&want) else {
                continue;
            };
            let is_section = sections.iter().any(|s| s.eq_ignore_ascii_case(rest));
            if !rest.contains("__") && !is_section {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                return Err(Error::Invalid(format!(
                    "environment variable {name}: an empty key between double underscores"
                )));
            }
            fig = fig.merge(EnvVar {
                name: name.clone(),
                path,
                value: parse_value(value),
            });
        }
        fig = fig.merge(Attributed {
            name: "flags",
            data: Serialized::defaults(figment_value(self.flags.clone())),
        });
        if let Some(msg) = self.moved_key(&fig) {
            return Err(Error::Invalid(msg));
        }
        fig.extract::<T>().map_err(|e| Error::Invalid(describe(e)))
    }

    fn moved_key(&self, fig: &Figment) -> Option<String> {
        for (old, new) in self.moved {
            if fig.find_value(old).is_ok() {
                let from = fig
                    .find_metadata(old)
                    .map(|m| format!(" (from {})", source_of(m)))
                    .unwrap_or_default();
                return Some(format!("{old} is now {new}{from}: rename it"));
            }
        }
        None
    }
}

/// Builds `T` from its serde defaults, overlaid by `file` (TOML, if given), then by environment
/// variables `{prefix}_SECTION__KEY=value`, then by `overrides` (a JSON object from flags).
pub fn load<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    env_prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: serde_json::Value,
) -> Result<T, Error> {
    Loader::new(env_prefix, env)
        .file(file)
        .flags(overrides)
        .load()
}

/// One environment variable as a configuration layer, named in errors.
struct EnvVar {
    name: String,
    path: Vec<String>,
    value: Value,
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut v = self.value.clone();
        for key in self.path.iter().skip(1).rev() {
            let mut d = Dict::new();
            d.insert(key.clone(), v);
            v = Value::from(d);
        }
        let mut top = Dict::new();
        top.insert(self.path[0].clone(), v);
        Ok(Profile::Default.collect(top))
    }
}

/// A provider under a name of our own (for errors).
struct Attributed<P> {
    name: &'static str,
    data: P,
}

impl<P: Provider> Provider for Attributed<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.data.data()
    }
}

/// A variable's value: JSON when it parses as JSON (`{"email": {"rate_per_sec": 10}}`), else
/// figment's syntax (numbers, booleans, `[a, b]`, `{k=v}`), else the text itself.
fn parse_value(text: &str) -> Value {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
        return figment_value(json);
    }
    text.parse()
        .unwrap_or_else(|_| Value::from(text.to_string()))
}

/// A JSON value as figment's, with numbers as numbers: serde_json keeps a number as its digits
/// (`arbitrary_precision`, so Python ints of any size stay exact), which figment's own
/// serializer would read as a one-entry map.
fn figment_value(v: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(figment::value::Empty::Unit),
        J::Bool(b) => Value::from(b),
        J::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_u64().map(Value::from))
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or_else(|| Value::from(n.to_string())),
        J::String(s) => Value::from(s),
        J::Array(a) => Value::from(a.into_iter().map(figment_value).collect::<Vec<_>>()),
        J::Object(o) => Value::from(
            o.into_iter()
                .map(|(k, v)| (k, figment_value(v)))
                .collect::<Dict>(),
        ),
    }
}

fn source_of(m: &Metadata) -> String {
    match &m.source {
        Some(figment::Source::File(p)) => format!("{} {}", m.name, p.display()),
        _ => m.name.to_string(),
    }
}

/// A figment error as one line per problem: the key, what is wrong, and where it came from.
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", source_of(m)))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{from}", e.kind)
            } else {
                format!("{key}: {}{from}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
