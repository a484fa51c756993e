//! Least privilege on NATS: the subjects each Kora role may publish and subscribe to, and the
//! nats-server `authorization` block that gives every role its own user with exactly those
//! permissions (`kora setup --nats-config` prints it; `deploy/nats/kora-users.conf` is it for
//! the default prefix and queue).
//!
//! What a role may do, in JetStream terms: take messages only from its own durable consumers
//! (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>` and acks on `$JS.ACK.<stream>.<consumer>.>`),
//! publish only the subjects it produces, and receive replies only on its own inbox prefix
//! (`_INBOX_<user>`), so no role can read another's replies. A worker may take its queues'
//! tasks, publish their results on `<p>.ledger.result.<queue>` and hear cancel notices;
//! nothing else. Only the `admin` user (for `kora setup` and operator commands) may create or
//! delete streams, apart from the trigger streams schedulers and gateways create on demand.
//!
//! This module does not connect anywhere and must not: it only writes text.

use std::collections::BTreeSet;

use kora_model::subjects::Subjects;

/// A role as NATS sees it: the four `kora serve` roles and the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NatsRole {
    /// `kora setup` and the operator commands (`kora dlq`, `kora runs`, `kora triggers`, …):
    /// everything.
    Admin,
    Scheduler,
    Coordinator,
    Worker,
    Gateway,
}

impl NatsRole {
    pub const ALL: [NatsRole; 5] = [
        NatsRole::Admin,
        NatsRole::Scheduler,
        NatsRole::Coordinator,
        NatsRole::Worker,
        NatsRole::Gateway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NatsRole::Admin => "admin",
            NatsRole::Scheduler => "scheduler",
            NatsRole::Coordinator => "coordinator",
            NatsRole::Worker => "worker",
            NatsRole::Gateway => "gateway",
        }
    }

    pub fn parse(s: &str) -> Option<NatsRole> {
        NatsRole::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Subjects a user may publish and subscribe to (NATS wildcards allowed), in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: BTreeSet<String>,
    pub subscribe: BTreeSet<String>,
}

impl Permissions {
    fn publish(&mut self, subjects: impl IntoIterator<Item = String>) {
        self.publish.extend(subjects);
    }
    fn subscribe(&mut self, subjects: impl IntoIterator<Item = String>) {
        self.subscribe.extend(subjects);
    }
}

/// One NATS user: its name (also its inbox, `_INBOX_<name>`) and the roles it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub roles: Vec<NatsRole>,
}

impl User {
    /// `NAME=ROLE[,ROLE…]`, e.g. `control=scheduler,coordinator`.
    pub fn parse(s: &str) -> Result<User, String> {
        let (name, roles) = s.split_once('=').ok_or_else(|| {
            format!("{s:?}: write NAME=ROLE[,ROLE…], e.g. control=scheduler,coordinator")
        })?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "user name {name:?}: use letters, digits, '_' or '-'"
            ));
        }
        let roles = roles
            .split(',')
            .map(|r| {
                NatsRole::parse(r.trim()).ok_or_else(|| {
                    format!(
                        "unknown role {r:?} for user {name}: use admin, scheduler, coordinator, worker or gateway"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(User {
            name: name.to_string(),
            roles,
        })
    }

    /// One user per role, named after it.
    pub fn one_per_role() -> Vec<User> {
        NatsRole::ALL
            .into_iter()
            .map(|r| User {
                name: r.as_str().to_string(),
                roles: vec![r],
            })
            .collect()
    }

    /// The inbox prefix this user's processes set as `nats.inbox_prefix`.
    pub fn inbox_prefix(&self) -> String {
        if self.roles.contains(&NatsRole::Admin) {
            crate::nats::DEFAULT_INBOX_PREFIX.to_string()
        } else {
            format!("_INBOX_{}", self.name)
        }
    }

    /// The union of its roles' permissions, with its own inbox.
    pub fn permissions(&self, s: &Subjects, queues: &[&str]) -> Permissions {
        let mut p = Permissions::default();
        for r in &self.roles {
            let q = role(*r, s, queues);
            p.publish(q.publish);
            p.subscribe(q.subscribe);
        }
        p.subscribe([format!("{}.>", self.inbox_prefix())]);
        p
    }
}

const API: &str = "$JS.API";

/// Taking messages from one durable consumer: its info, pulls and acks.
fn take_from(p: &mut Permissions, stream: &str, consumer: &str) {
    p.publish([
        format!("{API}.STREAM.INFO.{stream}"),
        format!("{API}.CONSUMER.INFO.{stream}.{consumer}"),
        format!("{API}.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
        format!("$JS.ACK.{stream}.{consumer}.>"),
    ]);
}

/// Creating, reading and removing consumers of one stream (ephemeral ones included), the
/// forms of nats-server 2.9 and later.
fn manage_consumers(p: &mut Permissions, stream: &str) {
    p.publish([
        format!("{API}.STREAM.INFO.{stream}"),
        format!("{API}.CONSUMER.CREATE.{stream}"),
        format!("{API}.CONSUMER.CREATE.{stream}.>"),
        format!("{API}.CONSUMER.DURABLE.CREATE.{stream}.*"),
        format!("{API}.CONSUMER.INFO.{stream}.*"),
        format!("{API}.CONSUMER.DELETE.{stream}.*"),
        format!("{API}.CONSUMER.MSG.NEXT.{stream}.*"),
        format!("$JS.ACK.{stream}.>"),
    ]);
}

/// The trigger streams (`<P>_TRIGGER_<NAME>`), made on demand. Their names have no common
/// token, so this is any stream's create, update, delete and the trigger consumer.
fn manage_triggers(p: &mut Permissions) {
    p.publish([
        format!("{API}.STREAM.INFO.*"),
        format!("{API}.STREAM.CREATE.*"),
        format!("{API}.STREAM.UPDATE.*"),
        format!("{API}.STREAM.DELETE.*"),
        format!("{API}.CONSUMER.CREATE.*"),
        format!("{API}.CONSUMER.CREATE.*.{}", Subjects::CONSUMER_TRIGGER),
        format!("{API}.CONSUMER.CREATE.*.{}.>", Subjects::CONSUMER_TRIGGER),
        format!(
            "{API}.CONSUMER.DURABLE.CREATE.*.{}",
            Subjects::CONSUMER_TRIGGER
        ),
        format!("{API}.CONSUMER.INFO.*.{}", Subjects::CONSUMER_TRIGGER),
        format!("{API}.CONSUMER.MSG.NEXT.*.{}", Subjects::CONSUMER_TRIGGER),
        format!("$JS.ACK.*.{}.>", Subjects::CONSUMER_TRIGGER),
    ]);
}

/// What one role needs, without its inbox.
pub fn role(role: NatsRole, s: &Subjects, queues: &[&str]) -> Permissions {
    let p_ = s.prefix();
    let mut p = Permissions::default();
    match role {
        NatsRole::Admin => {
            p.publish([">".to_string()]);
            p.subscribe([">".to_string()]);
        }
        NatsRole::Worker => {
            for q in queues {
                for consumer in [
                    Subjects::consumer_workers(q),
                    Subjects::consumer_workers_high(q),
                ] {
                    take_from(&mut p, &s.stream_tasks(), &consumer);
                }
                p.publish([s.ledger_result_from(q)]);
            }
            // A task it cannot decode goes to the dead letters, with the reason.
            p.publish([s.dlq("task")]);
            p.subscribe([s.cancel_notices()]);
            // Its status every few seconds, for the dashboard.
            p.publish([s.worker_status()]);
        }
        NatsRole::Scheduler => {
            take_from(&mut p, &s.stream_runs(), Subjects::CONSUMER_SCHEDULER);
            manage_triggers(&mut p);
            p.publish([s.ledger_admit(), s.run_submit(), s.dlq_all()]);
        }
        NatsRole::Coordinator => {
            take_from(&mut p, &s.stream_ledger(), Subjects::CONSUMER_COORDINATOR);
            take_from(
                &mut p,
                &s.stream_advisories(),
                Subjects::CONSUMER_ADVISORIES,
            );
            let tasks = s.stream_tasks();
            p.publish([
                // Queue backlogs, and taking back the task of a cancelled run.
                format!("{API}.STREAM.INFO.{tasks}"),
                format!("{API}.CONSUMER.INFO.{tasks}.*"),
                format!("{API}.STREAM.MSG.GET.{tasks}"),
                format!("{API}.STREAM.MSG.DELETE.{tasks}"),
                s.task_all(),
                s.event_all(),
                s.dlq_all(),
                s.ledger_all(),
                format!("{p_}.control.>"),
            ]);
        }
        NatsRole::Gateway => {
            // Submissions and operator requests, answered on the control subjects.
            p.publish([
                s.run_submit(),
                s.ledger_operation(),
                s.ledger_cancel(),
                s.ledger_resume(),
            ]);
            p.subscribe([
                format!("{p_}.control.reply.*"),
                s.event_all(),
                // The workers' statuses, for the dashboard's busy slots.
                s.worker_status(),
            ]);
            // Watching a run's events; dead letters (read, replayed, purged); queue backlogs
            // for the dashboard; triggers created and deleted through the API.
            manage_consumers(&mut p, &s.stream_events());
            let (runs, dlq, tasks) = (s.stream_runs(), s.stream_dlq(), s.stream_tasks());
            p.publish([
                format!("{API}.STREAM.INFO.{runs}"),
                format!("{API}.STREAM.INFO.{dlq}"),
                format!("{API}.STREAM.MSG.GET.{dlq}"),
                format!("{API}.STREAM.MSG.DELETE.{dlq}"),
                format!("{API}.STREAM.INFO.{tasks}"),
                format!("{API}.CONSUMER.INFO.{tasks}.*"),
            ]);
            manage_triggers(&mut p);
            p.publish([s.dlq_all()]);
        }
    }
    p
}

/// The nats-server `authorization { users = [...] }` block for `users`, each password given
/// as `password(user)` (written as is: an environment reference such as
/// `$KORA_NATS_WORKER_PASSWORD`, which nats-server resolves at start, or a quoted literal).
pub fn nats_server_config(
    s: &Subjects,
    queues: &[&str],
    users: &[User],
    password: impl Fn(&User) -> String,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# One NATS user per Kora role, each allowed exactly what the role does, for the\n\
         # installation prefix {:?} and worker queue(s) {}. Made by `kora setup --nats-config`;\n\
         # docs/security.md explains each permission. Include it from nats-server.conf.",
        s.prefix(),
        queues.join(", ")
    );
    out.push_str("authorization {\n  users = [\n");
    for u in users {
        let p = u.permissions(s, queues);
        let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
        let _ = writeln!(
            out,
            "    # {}: roles {}; set nats.inbox_prefix = \"{}\"",
            u.name,
            roles.join(","),
            u.inbox_prefix()
        );
        let _ = writeln!(out, "    {{");
        let _ = writeln!(out, "      user: \"{}\"", u.name);
        let _ = writeln!(out, "      password: {}", password(u));
        let _ = writeln!(out, "      permissions: {{");
        for (key, list) in [("publish", &p.publish), ("subscribe", &p.subscribe)] {
            let _ = writeln!(out, "        {key}: {{ allow: [");
            for subject in list {
                let _ = writeln!(out, "          \"{subject}\"");
            }
            let _ = writeln!(out, "        ] }}");
        }
        let _ = writeln!(out, "      }}");
        let _ = writeln!(out, "    }}");
    }
    out.push_str("  ]\n}\n");
    out
}

/// The environment variable a shipped configuration reads `user`'s password from.
pub fn password_variable(user: &User) -> String {
    format!(
        "KORA_NATS_{}_PASSWORD",
        user.name.to_ascii_uppercase().replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_may_take_only_its_queues_tasks_and_answer_only_for_them() {
        let s = Subjects::new("kora").unwrap();
        let w = User::parse("w=worker").unwrap();
        let p = w.permissions(&s, &["default"]);
        assert!(p.publish.contains("kora.ledger.result.default"));
        assert!(
            p.publish
                .contains("$JS.API.CONSUMER.MSG.NEXT.KORA_TASKS.workers-default")
        );
        assert!(p.subscribe.contains("_INBOX_w.>"));
        for forbidden in [
            "kora.run.submit",
            "kora.ledger.admit",
            "kora.ledger.result",
            "kora.ledger.>",
            ">",
        ] {
            assert!(!p.publish.contains(forbidden), "{forbidden}");
        }
        assert!(
            p.publish
                .iter()
                .all(|x| !x.contains("LEDGER") && !x.contains("STREAM.CREATE"))
        );
        assert!(!p.subscribe.iter().any(|x| x.starts_with("_INBOX.")));
    }

    #[test]
    fn users_parse_with_clear_errors() {
        assert_eq!(
            User::parse("control=scheduler,coordinator").unwrap().roles,
            vec![NatsRole::Scheduler, NatsRole::Coordinator]
        );
        assert!(User::parse("x").unwrap_err().contains("NAME=ROLE"));
        assert!(User::parse("x=boss").unwrap_err().contains("unknown role"));
        assert!(User::parse("a b=worker").unwrap_err().contains("user name"));
    }

    #[test]
    fn the_shipped_configuration_is_the_generated_one() {
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../deploy/nats/kora-users.conf"),
        )
        .unwrap();
        let made = nats_server_config(
            &Subjects::default(),
            &[kora_model::subjects::DEFAULT_QUEUE],
            &User::one_per_role(),
            |u| format!("${}", password_variable(u)),
        );
        assert_eq!(
            shipped, made,
            "deploy/nats/kora-users.conf is stale: regenerate it with `kora setup --nats-config > deploy/nats/kora-users.conf`"
        );
    }
}
