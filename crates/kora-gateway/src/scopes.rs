//! What a credential may do: scopes, and the named roles that are sets of them. Defined here
//! once; `docs/gateway.md` lists them and a test checks the list matches.

use std::collections::BTreeSet;

/// One permission. A route needs exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read runs, their results and events.
    RunsRead,
    /// Submit runs (including of registered workflows).
    RunsWrite,
    /// Cancel runs.
    RunsCancel,
    /// Retry runs and replay dead letters.
    DlqReplay,
    /// Read dead letters.
    DlqRead,
    /// Purge dead letters.
    DlqPurge,
    /// Read registered workflows.
    WorkflowsRead,
    /// Register and delete workflows.
    WorkflowsWrite,
    /// Read triggers.
    TriggersRead,
    /// Create, pause, resume and delete triggers.
    TriggersWrite,
    /// Create, list and revoke API keys.
    KeysAdmin,
    /// Read the API audit trail.
    AuditRead,
    /// Read the fleet: task queue backlogs and the workers seen (installation-wide counts and
    /// worker ids; no tenant's runs).
    FleetRead,
    /// Submit inline, or register, workflows holding code nodes (PythonCodeNode): checked
    /// on the workflow's content (`[gateway.policy]`), not by a route.
    NodesCode,
}

impl Scope {
    pub const ALL: [Scope; 14] = [
        Scope::RunsRead,
        Scope::RunsWrite,
        Scope::RunsCancel,
        Scope::DlqRead,
        Scope::DlqReplay,
        Scope::DlqPurge,
        Scope::WorkflowsRead,
        Scope::WorkflowsWrite,
        Scope::TriggersRead,
        Scope::TriggersWrite,
        Scope::KeysAdmin,
        Scope::AuditRead,
        Scope::FleetRead,
        Scope::NodesCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::RunsRead => "runs:read",
            Scope::RunsWrite => "runs:write",
            Scope::RunsCancel => "runs:cancel",
            Scope::DlqRead => "dlq:read",
            Scope::DlqReplay => "dlq:replay",
            Scope::DlqPurge => "dlq:purge",
            Scope::WorkflowsRead => "workflows:read",
            Scope::WorkflowsWrite => "workflows:write",
            Scope::TriggersRead => "triggers:read",
            Scope::TriggersWrite => "triggers:write",
            Scope::KeysAdmin => "keys:admin",
            Scope::AuditRead => "audit:read",
            Scope::FleetRead => "fleet:read",
            Scope::NodesCode => "nodes:code",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Scopes from text, each checked.
    pub fn parse_all<'a>(
        list: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeSet<Scope>, String> {
        list.into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| {
                Scope::parse(s).ok_or_else(|| {
                    format!(
                        "unknown scope {s:?}: use {}",
                        Scope::ALL.map(Scope::as_str).join(", ")
                    )
                })
            })
            .collect()
    }
}

/// The named roles, least to most.
pub const ROLES: [&str; 3] = ["viewer", "operator", "admin"];

/// The scopes of a named role; `None` for a name that is not one.
pub fn role_scopes(role: &str) -> Option<BTreeSet<Scope>> {
    use Scope::*;
    let viewer = [RunsRead, DlqRead, WorkflowsRead, TriggersRead, FleetRead];
    let operator = [
        RunsWrite,
        RunsCancel,
        DlqReplay,
        WorkflowsWrite,
        TriggersWrite,
        // Operators write workflows, code included; a credential of explicit scopes (a
        // service that only submits) needs it named.
        NodesCode,
    ];
    Some(match role {
        "viewer" => viewer.into_iter().collect(),
        "operator" => viewer.into_iter().chain(operator).collect(),
        "admin" => Scope::ALL.into_iter().collect(),
        // A credential with only explicit scopes.
        "" => BTreeSet::new(),
        _ => return None,
    })
}

/// A role's scopes plus extra ones: what a credential may do.
pub fn grant(role: &str, extra: &[String]) -> Result<BTreeSet<Scope>, String> {
    let mut scopes = role_scopes(role)
        .ok_or_else(|| format!("unknown role {role:?}: use {}", ROLES.join(", ")))?;
    scopes.extend(Scope::parse_all(extra.iter().map(String::as_str))?);
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grow_and_scopes_round_trip() {
        let v = role_scopes("viewer").unwrap();
        let o = role_scopes("operator").unwrap();
        let a = role_scopes("admin").unwrap();
        assert!(v.is_subset(&o) && o.is_subset(&a));
        assert!(!o.contains(&Scope::KeysAdmin) && a.contains(&Scope::KeysAdmin));
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert!(role_scopes("root").is_none());
        assert_eq!(
            grant("viewer", &["audit:read".into()]).unwrap().len(),
            v.len() + 1
        );
        assert!(grant("viewer", &["audit:write".into()]).is_err());
    }
}
