//! The regression guard: each bench records the issue targets it measured here, and `make
//! bench` prints them all as one table at the end (`support/targets.py`), so a change that
//! loses a target is seen in one place. Records go to the file `KORA_BENCH_TARGETS` names, one
//! JSON object per line; without it nothing is recorded (a bench run on its own prints its
//! figures as before).

#![allow(dead_code)] // each bench uses the part it needs

use std::io::Write;

/// Which side of its limit a figure must be on.
#[derive(Clone, Copy)]
pub(crate) enum Limit {
    AtMost(f64),
    AtLeast(f64),
}

impl Limit {
    fn met(self, v: f64) -> bool {
        match self {
            Limit::AtMost(l) => v <= l,
            Limit::AtLeast(l) => v >= l,
        }
    }
}

/// Records one measured figure against its target: `what` names it, `unit` says what the
/// figure is (`x raw`, `ms`, `µs/node`, `MiB`).
pub(crate) fn record(bench: &str, what: &str, value: f64, unit: &str, limit: Limit) {
    let Some(path) = std::env::var_os("KORA_BENCH_TARGETS") else {
        return;
    };
    let (op, bound) = match limit {
        Limit::AtMost(l) => ("<=", l),
        Limit::AtLeast(l) => (">=", l),
    };
    let line = serde_json::json!({
        "bench": bench,
        "what": what,
        "value": value,
        "unit": unit,
        "target": format!("{op} {bound}"),
        "met": value.is_finite() && limit.met(value),
    });
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        eprintln!("cannot record a target in {}: {e}", path.to_string_lossy());
    }
}
