//! What a trigger may be called and scheduled by: checked where a trigger is registered (the
//! CLI, the gateway) and where it fires (the scheduler).

/// A trigger name: 1-64 letters, digits, `-` or `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "trigger name {name:?}: use 1-64 letters, digits, '-' or '_'"
        ))
    }
}

/// Parses a cron schedule: 5 fields (minute hour day month weekday) or 6 (seconds first).
pub fn parse_schedule(expr: &str) -> Result<croner::Cron, String> {
    use std::str::FromStr;
    croner::Cron::from_str(expr).map_err(|e| {
        format!(
            "cron schedule {expr:?}: {e} (e.g. \"*/5 * * * *\", or \"*/10 * * * * *\" with seconds)"
        )
    })
}

/// A triggered run's parameters: the trigger's, then the message's (a JSON object's keys), or
/// else the whole message as `event` (JSON, or else text).
pub fn params_of(base: &crate::Map, payload: &[u8]) -> crate::Map {
    use crate::Value;
    let mut params = base.clone();
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(m)) => params.extend(m),
        Ok(other) => {
            params.insert("event".into(), other);
        }
        Err(_) => {
            params.insert(
                "event".into(),
                Value::String(String::from_utf8_lossy(payload).into_owned()),
            );
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_schedules_are_checked() {
        assert!(check_name("orders-v2_eu").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a.b").is_err());
        assert!(parse_schedule("*/5 * * * *").is_ok());
        assert!(parse_schedule("*/2 * * * * *").is_ok(), "seconds");
        assert!(parse_schedule("every minute").is_err());
    }
}
