//! How the memory store holds a run's records: compact, because an embedded run of 100,000
//! nodes keeps every attempt and event of it in process memory until it ends.
//!
//! - a run's names (node ids, node types, worker ids) are stored once, in [`Names`], and
//!   records refer to them by number;
//! - outputs, event details and the workflow are kept encoded ([`Packed`], MessagePack, which
//!   carries every JSON number exactly) and decoded when read;
//! - what most attempts never have (an error, a dead letter, operator overrides) is boxed
//!   behind one pointer.
//!
//! Reads turn these back into the public records ([`AttemptRecord`], [`RunEvent`]).

use std::sync::Arc;

use foldhash::HashMap;
use kora_model::wire::{EventKind, RunEvent};
use kora_model::{Map, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{AttemptRecord, AttemptStatus, DeadLetterInfo, Error, Result};

/// A value kept encoded. Encoding a JSON value or a workflow cannot fail in practice; if it
/// ever did, the value is kept as it is rather than lost.
#[derive(Debug, Clone)]
pub(super) enum Packed<T> {
    Bytes(Box<[u8]>),
    Plain(Box<T>),
}

impl<T: Serialize + DeserializeOwned + Clone> Packed<T> {
    pub(super) fn new(v: T) -> Self {
        match kora_model::msgpack::to_vec_named(&v) {
            Ok(b) => Packed::Bytes(b.into_boxed_slice()),
            Err(_) => Packed::Plain(Box::new(v)),
        }
    }

    pub(super) fn get(&self) -> Result<T> {
        match self {
            Packed::Bytes(b) => rmp_serde::from_slice(b)
                .map_err(|e| Error::Corrupt(format!("a record held in memory: {e}"))),
            Packed::Plain(v) => Ok((**v).clone()),
        }
    }
}

/// The names a run's records use, each stored once and numbered in order of first use.
#[derive(Default)]
pub(super) struct Names {
    list: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

impl Names {
    /// The number of `name`, adding it if new.
    pub(super) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(name);
        self.list.push(Arc::clone(&name));
        self.index.insert(name, i);
        i
    }

    /// The number of `name` if the run has used it.
    pub(super) fn find(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub(super) fn name(&self, i: u32) -> &str {
        self.list.get(i as usize).map_or("", |s| s)
    }
}

/// What few attempts have.
#[derive(Debug, Clone, Default)]
pub(super) struct Rare {
    pub(super) error: Option<String>,
    pub(super) error_type: Option<String>,
    pub(super) dead_letter: Option<DeadLetterInfo>,
    pub(super) overrides: Option<Map>,
}

/// One attempt of a run's node: an [`AttemptRecord`] without the repeated strings.
pub(super) struct Attempt {
    pub(super) node: u32,
    pub(super) iteration: u32,
    pub(super) attempt: u32,
    pub(super) node_type: u32,
    pub(super) worker: Option<u32>,
    pub(super) status: AttemptStatus,
    pub(super) dispatched_ms: u64,
    pub(super) finished_ms: Option<u64>,
    pub(super) seq: Option<u64>,
    pub(super) output: Option<Packed<Value>>,
    pub(super) rare: Option<Box<Rare>>,
}

impl Attempt {
    pub(super) fn rare(&self) -> Option<&Rare> {
        self.rare.as_deref()
    }

    pub(super) fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    pub(super) fn dead_letter_mut(&mut self) -> Option<&mut DeadLetterInfo> {
        self.rare.as_mut().and_then(|r| r.dead_letter.as_mut())
    }

    /// The key an attempt is found by: `(node, iteration, attempt)`.
    pub(super) fn key(&self) -> (u32, u32, u32) {
        (self.node, self.iteration, self.attempt)
    }

    pub(super) fn record(&self, run_id: &str, names: &Names) -> Result<AttemptRecord> {
        let rare = self.rare();
        Ok(AttemptRecord {
            run_id: run_id.to_string(),
            node_id: names.name(self.node).to_string(),
            iteration: self.iteration,
            attempt: self.attempt,
            node_type: names.name(self.node_type).to_string(),
            status: self.status,
            output: self.output.as_ref().map(Packed::get).transpose()?,
            error: rare.and_then(|r| r.error.clone()),
            error_type: rare.and_then(|r| r.error_type.clone()),
            worker_id: self.worker.map(|w| names.name(w).to_string()),
            dispatched_ms: self.dispatched_ms,
            finished_ms: self.finished_ms,
            seq: self.seq,
            dead_letter: rare.and_then(|r| r.dead_letter.clone()),
            overrides: rare.and_then(|r| r.overrides.clone()),
        })
    }
}

/// One event of a run: a [`RunEvent`] without its repeated strings. `event_id` is kept only
/// where it is not the usual `{run_id}:{seq}`.
pub(super) struct Event {
    pub(super) v: u16,
    pub(super) kind: EventKind,
    pub(super) node: Option<u32>,
    pub(super) iteration: u32,
    pub(super) attempt: u32,
    pub(super) seq: u64,
    pub(super) at_ms: u64,
    pub(super) event_id: Option<Box<str>>,
    pub(super) detail: Option<Packed<Value>>,
}

impl Event {
    pub(super) fn new(e: RunEvent, names: &mut Names) -> Self {
        let usual = e
            .event_id
            .strip_prefix(e.run_id.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|seq| is_decimal(seq, e.seq));
        Event {
            v: e.v,
            kind: e.kind,
            node: e.node_id.as_deref().map(|n| names.intern(n)),
            iteration: e.iteration,
            attempt: e.attempt,
            seq: e.seq,
            at_ms: e.at_ms,
            event_id: (!usual).then(|| e.event_id.into_boxed_str()),
            detail: e.detail.map(Packed::new),
        }
    }

    pub(super) fn record(&self, run_id: &str, names: &Names) -> Result<RunEvent> {
        Ok(RunEvent {
            v: self.v,
            event_id: self
                .event_id
                .as_deref()
                .map_or_else(|| format!("{run_id}:{}", self.seq), str::to_string),
            run_id: run_id.to_string(),
            seq: self.seq,
            kind: self.kind,
            node_id: self.node.map(|n| names.name(n).to_string()),
            iteration: self.iteration,
            attempt: self.attempt,
            at_ms: self.at_ms,
            detail: self.detail.as_ref().map(Packed::get).transpose()?,
        })
    }
}

/// Whether `s` is `n` written in decimal, as `format!("{n}")` writes it (no sign, no leading
/// zero), without allocating: this runs for every event a commit stores.
fn is_decimal(s: &str, n: u64) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<u64>() == Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn packed_values_come_back_exactly() {
        let v = serde_json::json!({
            "f": 0.1 + 0.2, "tiny": 5e-324, "big": u64::MAX, "neg": i64::MIN,
            "s": "text", "n": null, "list": [1, 2.5, {"k": true}]
        });
        assert_eq!(Packed::new(v.clone()).get().unwrap(), v);
    }

    #[test]
    fn decimal_is_exactly_the_written_form() {
        for (s, n, want) in [
            ("7", 7, true),
            ("0", 0, true),
            ("18446744073709551615", u64::MAX, true),
            ("07", 7, false),
            ("+7", 7, false),
            ("8", 7, false),
            ("", 0, false),
        ] {
            assert_eq!(is_decimal(s, n), want, "{s:?} {n}");
        }
    }

    #[test]
    fn an_attempt_stays_small() {
        // 512 bytes inline as an AttemptRecord (issue #19); the compact form must stay small.
        assert!(
            std::mem::size_of::<Attempt>() <= 112,
            "{}",
            std::mem::size_of::<Attempt>()
        );
    }

    #[test]
    fn an_unusual_event_id_is_kept_and_a_usual_one_rebuilt() {
        let mut names = Names::default();
        let mut e = RunEvent {
            v: 1,
            event_id: "r1:7".into(),
            run_id: "r1".into(),
            seq: 7,
            kind: EventKind::NodeSucceeded,
            node_id: Some("a".into()),
            iteration: 2,
            attempt: 3,
            at_ms: 9,
            detail: Some(serde_json::json!({"error": "x"})),
        };
        let c = Event::new(e.clone(), &mut names);
        assert!(c.event_id.is_none());
        assert_eq!(c.record("r1", &names).unwrap(), e);
        e.event_id = "other".into();
        let c = Event::new(e.clone(), &mut names);
        assert_eq!(c.record("r1", &names).unwrap(), e);
    }
}
