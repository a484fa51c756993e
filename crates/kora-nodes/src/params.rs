//! Reading node parameters that become timers, so no value a user gives can panic a worker:
//! a duration is a number of seconds from 0 to [`MAX_SECONDS`], else a permanent error naming
//! the node and the field. (Static config is checked earlier, by `kora validate` and admission,
//! through `ParamKind::Seconds`; inputs that arrive at run time are checked here.)

use std::time::Duration;

use kora_model::catalog::MAX_SECONDS;
use kora_model::{Map, Value};

use crate::NodeError;
use crate::builtin::input_error;

/// The duration in `input[key]` (seconds), or `default` when it is absent or null.
pub(crate) fn seconds(
    node: &str,
    input: &Map,
    key: &str,
    default: Option<f64>,
) -> Result<Option<Duration>, NodeError> {
    let secs = match input.get(key) {
        None | Some(Value::Null) => match default {
            Some(d) => d,
            None => return Ok(None),
        },
        Some(v) => v.as_f64().ok_or_else(|| {
            input_error(
                node,
                format!("'{key}' must be a number of seconds, found {v}"),
            )
        })?,
    };
    if !(secs.is_finite() && (0.0..=MAX_SECONDS).contains(&secs)) {
        return Err(input_error(
            node,
            format!(
                "'{key}' must be a number of seconds from 0 to 1000000000, found {}",
                kora_model::value::py_float(secs)
            ),
        ));
    }
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|e| input_error(node, format!("'{key}': {e}")))
}

/// A duration parameter with a default.
pub(crate) fn seconds_or(
    node: &str,
    input: &Map,
    key: &str,
    default: f64,
) -> Result<Duration, NodeError> {
    Ok(seconds(node, input, key, Some(default))?.unwrap_or(Duration::ZERO))
}

/// A rate in events per second: above 0, at most a billion (a period of at least 1 ns).
pub(crate) fn rate(node: &str, input: &Map, key: &str) -> Result<f64, NodeError> {
    let r = input.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    if !(r.is_finite() && (1e-6..=1e9).contains(&r)) {
        return Err(input_error(
            node,
            format!(
                "'{key}' must be a number of events per second from 0.000001 to 1000000000, found {r}"
            ),
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: serde_json::Value) -> Map {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn durations_are_bounded_and_named() {
        let i = input(serde_json::json!({"ttl": 1e300, "timeout": 2.5, "neg": -1, "text": "soon"}));
        assert_eq!(
            seconds("TTLCacheNode", &i, "timeout", None).unwrap(),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(seconds("n", &i, "absent", None).unwrap(), None);
        assert_eq!(
            seconds_or("n", &i, "absent", 3.0).unwrap(),
            Duration::from_secs(3)
        );
        for key in ["ttl", "neg", "text"] {
            let e = seconds("TTLCacheNode", &i, key, None)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("TTLCacheNode") && e.contains(&format!("'{key}'")),
                "{e}"
            );
        }
        assert!(rate("n", &input(serde_json::json!({"r": 1e-300})), "r").is_err());
        assert_eq!(
            rate("n", &input(serde_json::json!({"r": 5})), "r").unwrap(),
            5.0
        );
    }
}
