//! The roles a process can serve.

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Scheduler,
    Coordinator,
    Worker,
    /// The HTTP API (`kora_gateway`).
    Gateway,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Scheduler,
        Role::Coordinator,
        Role::Worker,
        Role::Gateway,
    ];
    /// The roles that run workflows (what `kora run` embeds).
    pub const ENGINE: [Role; 3] = [Role::Scheduler, Role::Coordinator, Role::Worker];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Scheduler => "scheduler",
            Role::Coordinator => "coordinator",
            Role::Worker => "worker",
            Role::Gateway => "gateway",
        }
    }

    /// The `(stream, durable consumer)` pairs this role takes messages from (a worker: its
    /// queue's, normal and high priority).
    pub fn consumers(
        self,
        subjects: &kora_model::subjects::Subjects,
        worker_queue: &str,
    ) -> Vec<(String, String)> {
        use kora_model::subjects::Subjects;
        match self {
            Role::Scheduler => vec![(
                subjects.stream_runs(),
                Subjects::CONSUMER_SCHEDULER.to_string(),
            )],
            Role::Coordinator => vec![
                (
                    subjects.stream_ledger(),
                    Subjects::CONSUMER_COORDINATOR.to_string(),
                ),
                (
                    subjects.stream_advisories(),
                    Subjects::CONSUMER_ADVISORIES.to_string(),
                ),
            ],
            Role::Worker => vec![
                (
                    subjects.stream_tasks(),
                    Subjects::consumer_workers(worker_queue),
                ),
                (
                    subjects.stream_tasks(),
                    Subjects::consumer_workers_high(worker_queue),
                ),
            ],
            Role::Gateway => Vec::new(),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `scheduler,coordinator,worker,gateway` (any combination, `all` for every role), in
/// that order.
pub fn parse_roles(s: &str) -> Result<Vec<Role>, Error> {
    let mut out = Vec::new();
    for r in s.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        match r {
            "all" => out.extend(Role::ALL),
            other => match Role::ALL.into_iter().find(|role| role.as_str() == other) {
                Some(role) => out.push(role),
                None => {
                    return Err(Error::Config(format!(
                        "unknown role {other:?}: use scheduler, coordinator, worker, gateway or all"
                    )));
                }
            },
        }
    }
    if out.is_empty() {
        return Err(Error::Config(
            "no role given: --role scheduler,coordinator,worker,gateway (or all)".into(),
        ));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_in_any_combination() {
        assert_eq!(parse_roles("all").unwrap(), Role::ALL);
        assert_eq!(
            parse_roles("worker, scheduler,worker").unwrap(),
            [Role::Scheduler, Role::Worker]
        );
        assert!(parse_roles("").is_err());
        assert_eq!(
            parse_roles("gateway,scheduler").unwrap(),
            [Role::Scheduler, Role::Gateway]
        );
        let e = parse_roles("scheduler,gatway").unwrap_err().to_string();
        assert!(e.contains("\"gatway\""), "{e}");
    }
}
