//! Node-type policy at admission (`[gateway.policy]`): which node types a credential or tenant
//! may submit, and which hosts a tenant's HTTP and SQL nodes may reach. Checked when a run is
//! submitted and when a workflow is registered, before anything is stored; a refusal names
//! every node and the rule it breaks.
//!
//! Rules:
//! - **code nodes** (`code_node_types`, PythonCodeNode by default): an inline workflow or a
//!   registration holding one needs a credential with the `nodes:code` scope. Running a
//!   registered workflow does not: whoever registered it had the scope.
//! - **denied types** (`tenants.<t>.deny_types`, else `default`): refused in every submission.
//! - **hosts** (`http_hosts`, `sql_hosts`): when set, every HTTP or SQL target of a node must
//!   match a pattern (`api.example.com`, `*.example.com` for its subdomains, `*` for any). The
//!   target is checked wherever it can come from (the node's config, its parameters, a
//!   workflow-level parameter, the node type's default); one that arrives through a connection
//!   or a template cannot be known at admission and is refused.
//!
//! This module decides; it does not read the store or the network.

use std::collections::BTreeMap;

use kora_model::{Map, Value, WorkflowSpec};
use serde::{Deserialize, Serialize};

/// `[gateway.policy]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Node types that run code the submitter writes.
    pub code_node_types: Vec<String>,
    /// The rules of tenants not named in `tenants`.
    pub default: TenantPolicy,
    pub tenants: BTreeMap<String, TenantPolicy>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            code_node_types: vec!["PythonCodeNode".into()],
            default: TenantPolicy::default(),
            tenants: BTreeMap::new(),
        }
    }
}

/// One tenant's rules; empty lists restrict nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantPolicy {
    /// Node types this tenant may not use.
    pub deny_types: Vec<String>,
    /// Hosts HTTP nodes may call (HTTPRequestNode, RESTClientNode, RateLimitedAPINode,
    /// LLMAgentNode, the alert nodes).
    pub http_hosts: Vec<String>,
    /// Hosts SQLDatabaseNode may connect to (a SQLite file has none and passes).
    pub sql_hosts: Vec<String>,
}

impl PolicyConfig {
    pub fn of(&self, tenant: &str) -> &TenantPolicy {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }

    pub fn validate(&self) -> Result<(), String> {
        for (t, p) in std::iter::once(("default", &self.default))
            .chain(self.tenants.iter().map(|(t, p)| (t.as_str(), p)))
        {
            for pattern in p.http_hosts.iter().chain(&p.sql_hosts) {
                let rest = pattern.strip_prefix("*.").unwrap_or(pattern);
                if pattern.is_empty()
                    || (pattern != "*" && rest.contains(['*', '/', ':', '@', ' ']))
                {
                    return Err(format!(
                        "gateway.policy.{t}: host pattern {pattern:?} must be a host name, *.domain or *"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where a workflow comes from, which decides the code-node rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An inline workflow in a run submission.
    Inline,
    /// A registration.
    Registering,
    /// A run of a registered workflow.
    Registered,
}

/// The node types whose targets the host rules cover: (type, key, default, is SQL).
const TARGETS: &[(&str, &str, Option<&str>, bool)] = &[
    ("HTTPRequestNode", "url", None, false),
    ("RESTClientNode", "base_url", None, false),
    ("RateLimitedAPINode", "url", None, false),
    (
        "LLMAgentNode",
        "base_url",
        Some("https://api.openai.com/v1"),
        false,
    ),
    ("WebhookAlertNode", "url", None, false),
    ("SlackAlertNode", "webhook_url", None, false),
    ("DiscordAlertNode", "webhook_url", None, false),
    ("SQLDatabaseNode", "connection_string", None, true),
];

/// Every rule `spec` (with `params`) breaks for a credential with `may_code` in `tenant`, one
/// line per node and rule; empty when it may run.
pub fn violations(
    cfg: &PolicyConfig,
    spec: &WorkflowSpec,
    params: &Map,
    tenant: &str,
    may_code: bool,
    source: Source,
) -> Vec<String> {
    let rules = cfg.of(tenant);
    let mut out = Vec::new();
    for node in &spec.nodes {
        let (id, ty) = (&node.id, &node.node_type);
        if rules.deny_types.iter().any(|d| d == ty) {
            out.push(format!(
                "node '{id}' ({ty}): rule deny_types: tenant {tenant:?} may not use {ty}"
            ));
        }
        if source != Source::Registered && !may_code && cfg.code_node_types.iter().any(|c| c == ty)
        {
            out.push(format!(
                "node '{id}' ({ty}): rule nodes:code: a workflow with code nodes is submitted inline or registered only with the nodes:code scope; run a registered workflow instead, or ask for the scope"
            ));
        }
        let Some(&(_, key, default, sql)) = TARGETS.iter().find(|t| t.0 == ty) else {
            continue;
        };
        let patterns = if sql {
            &rules.sql_hosts
        } else {
            &rules.http_hosts
        };
        if patterns.is_empty() {
            continue;
        }
        let rule = if sql { "sql_hosts" } else { "http_hosts" };
        if spec
            .connections
            .iter()
            .any(|c| &c.target == id && (c.input == key || c.input.starts_with(&format!("{key}."))))
        {
            out.push(format!(
                "node '{id}' ({ty}): rule {rule}: its {key} comes from a connection, so its host cannot be checked; set it in the workflow"
            ));
            continue;
        }
        // Every place the value can come from; each must pass.
        let mut values: Vec<&str> = Vec::new();
        let scoped = params.get(id.as_str()).and_then(Value::as_object);
        for v in [
            node.config.get(key),
            scoped.and_then(|p| p.get(key)),
            params.get(key),
        ]
        .into_iter()
        .flatten()
        {
            match v.as_str() {
                Some(s) => values.push(s),
                None => out.push(format!(
                    "node '{id}' ({ty}): rule {rule}: its {key} is not text"
                )),
            }
        }
        if values.is_empty() {
            values.extend(default);
        }
        for v in values {
            match host(v) {
                Host::None if sql => {}
                Host::Named(h) if allowed(&h, patterns) => {}
                Host::Named(h) => out.push(format!(
                    "node '{id}' ({ty}): rule {rule}: host {h:?} is not allowed for tenant {tenant:?} (allowed: {})",
                    patterns.join(", ")
                )),
                Host::Unknown | Host::None => out.push(format!(
                    "node '{id}' ({ty}): rule {rule}: the host of its {key} cannot be read at admission (a template, or no host); write it out in the workflow"
                )),
            }
        }
    }
    out
}

enum Host {
    Named(String),
    /// No network host (a SQLite file).
    None,
    Unknown,
}

/// The host a URL names, lower-cased and without userinfo or port.
fn host(url: &str) -> Host {
    let Some((_, rest)) = url.split_once("://") else {
        return if url.starts_with("sqlite:") {
            Host::None
        } else {
            Host::Unknown
        };
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let h = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        hostport.split(':').next().unwrap_or_default()
    };
    if h.is_empty() || h.contains(['{', '}', '$']) || rest.starts_with("{{") {
        Host::Unknown
    } else {
        Host::Named(h.to_ascii_lowercase())
    }
}

fn allowed(host: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        p == "*"
            || p == host
            || p.strip_prefix("*.")
                .is_some_and(|domain| host.ends_with(&format!(".{domain}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> WorkflowSpec {
        serde_json::from_value(v).unwrap()
    }

    fn map(v: serde_json::Value) -> Map {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn code_nodes_need_the_scope_unless_the_workflow_is_registered() {
        let cfg = PolicyConfig::default();
        let wf = spec(serde_json::json!({"kora": 1, "nodes": [
            {"id": "p", "type": "PythonCodeNode", "config": {"code": "result = 1"}}]}));
        let v = violations(&cfg, &wf, &Map::new(), "t", false, Source::Inline);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].contains("node 'p'") && v[0].contains("nodes:code"),
            "{v:?}"
        );
        assert_eq!(
            violations(&cfg, &wf, &Map::new(), "t", false, Source::Registering).len(),
            1
        );
        assert!(violations(&cfg, &wf, &Map::new(), "t", true, Source::Inline).is_empty());
        assert!(violations(&cfg, &wf, &Map::new(), "t", false, Source::Registered).is_empty());
    }

    #[test]
    fn hosts_are_checked_wherever_the_target_comes_from() {
        let mut cfg = PolicyConfig::default();
        cfg.tenants.insert(
            "acme".into(),
            TenantPolicy {
                http_hosts: vec!["*.example.com".into(), "api.partner.io".into()],
                sql_hosts: vec!["db.internal".into()],
                deny_types: vec!["RedisCacheNode".into()],
            },
        );
        let wf = spec(serde_json::json!({"kora": 1, "nodes": [
            {"id": "h", "type": "HTTPRequestNode", "config": {"url": "https://svc.example.com/x"}},
            {"id": "s", "type": "SQLDatabaseNode", "config": {"connection_string": "postgresql://u:${secret:pw}@db.internal:5432/app"}},
            {"id": "l", "type": "SQLDatabaseNode", "config": {"connection_string": "sqlite:local.db"}}]}));
        let ok = violations(&cfg, &wf, &Map::new(), "acme", true, Source::Inline);
        assert!(ok.is_empty(), "{ok:?}");
        // Another tenant has no host rules.
        assert!(violations(&cfg, &wf, &Map::new(), "other", true, Source::Inline).is_empty());
        // A parameter pointing the node elsewhere is refused, named.
        let bad = violations(
            &cfg,
            &wf,
            &map(serde_json::json!({"h": {"url": "http://evil.test/"}})),
            "acme",
            true,
            Source::Inline,
        );
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(
            bad[0].contains("node 'h'")
                && bad[0].contains("evil.test")
                && bad[0].contains("http_hosts")
        );
        // The apex of a *.domain pattern, a connection, a template, a default: each refused.
        let wf = spec(serde_json::json!({"kora": 1, "nodes": [
            {"id": "a", "type": "HTTPRequestNode", "config": {"url": "https://example.com"}},
            {"id": "src", "type": "PythonCodeNode", "config": {"code": "result = 'x'"}},
            {"id": "c", "type": "HTTPRequestNode"},
            {"id": "t", "type": "HTTPRequestNode", "config": {"url": "https://{{host}}/x"}},
            {"id": "m", "type": "LLMAgentNode", "config": {"model": "gpt"}},
            {"id": "r", "type": "RedisCacheNode"}],
            "connections": [{"source": "src", "output": "result", "target": "c", "input": "url"}]}));
        let bad = violations(&cfg, &wf, &Map::new(), "acme", true, Source::Inline);
        let nodes: Vec<&str> = ["'a'", "'c'", "'t'", "'m'", "'r'"].to_vec();
        assert_eq!(bad.len(), nodes.len(), "{bad:?}");
        for (line, node) in bad.iter().zip(nodes) {
            assert!(line.contains(node), "{line}");
        }
    }

    #[test]
    fn patterns_are_validated() {
        let mut cfg = PolicyConfig::default();
        cfg.default.http_hosts = vec!["https://x.com".into()];
        assert!(cfg.validate().unwrap_err().contains("host pattern"));
        cfg.default.http_hosts = vec!["*".into(), "*.x.com".into(), "x.com".into()];
        assert!(cfg.validate().is_ok());
    }
}
