//! Durations in configuration, as people write them: `"30s"`, `"1h 30m"`, `"250ms"` (humantime),
//! or a plain number of seconds (`30`, `0.5`). Serialized as humantime text. Use with
//! `#[serde(with = "kora_model::duration")]`; an unusable value (negative, not finite, beyond a
//! hundred years) is an error naming what was given, never a panic.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de};

/// The longest duration accepted anywhere in configuration.
pub const MAX: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses `"30s"`, `"1h 30m"`, `"250ms"` or a number of seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return from_secs(secs);
    }
    let d = humantime::parse_duration(t).map_err(|e| {
        format!(
            "{text:?} is not a duration ({e}): write e.g. 30s, 1h 30m, 250ms or a number of seconds"
        )
    })?;
    if d > MAX {
        return Err(format!("{text:?} is longer than a hundred years"));
    }
    Ok(d)
}

/// A number of seconds as a duration, refusing what no duration is.
pub fn from_secs(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "{secs} is not a duration: use a number of seconds from 0"
        ));
    }
    if secs > MAX.as_secs_f64() {
        return Err(format!("{secs} seconds is longer than a hundred years"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{secs} seconds: {e}"))
}

/// `humantime` text: `30s`, `1h 30m`.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(Given)
}

/// A number of seconds or a `humantime` text. A visitor rather than an untagged enum: with
/// serde_json's `arbitrary_precision` (Kora keeps numbers exact) an untagged enum sees a
/// number as serde_json's private one-field map and matches neither.
struct Given;

impl<'de> de::Visitor<'de> for Given {
    type Value = Duration;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration: a number of seconds or text such as \"30s\" or \"1h 30m\"")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        from_secs(v as f64).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        from_secs(v as f64).map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        from_secs(v).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }
    // serde_json's exact number, given as a one-entry map holding its digits.
    fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Duration, A::Error> {
        let digits = match m.next_entry::<String, String>()? {
            Some((k, v)) if k == crate::msgpack::NUMBER_TOKEN => v,
            _ => return Err(de::Error::invalid_type(de::Unexpected::Map, &self)),
        };
        let secs: f64 = digits
            .parse()
            .map_err(|_| de::Error::custom(format!("{digits} is not a number of seconds")))?;
        from_secs(secs).map_err(de::Error::custom)
    }
}

/// The same for an optional duration (`None` when absent).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// The same for a map of durations by name.
pub mod map {
    use std::collections::BTreeMap;

    use super::*;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = s.serialize_map(Some(m.len()))?;
        for (k, d) in m {
            out.serialize_entry(k, &format(*d))?;
        }
        out.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super")] Duration);
        Ok(BTreeMap::<String, Wrap>::deserialize(d)?
            .into_iter()
            .map(|(k, w)| (k, w.0))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        // (given, expected)
        let ok = [
            ("30s", Duration::from_secs(30)),
            ("1h 30m", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
            ("30", Duration::from_secs(30)),
            ("0.5", Duration::from_millis(500)),
            ("0", Duration::ZERO),
        ];
        for (given, want) in ok {
            assert_eq!(parse(given), Ok(want), "{given}");
        }
        for bad in [
            "-1",
            "NaN",
            "inf",
            "1e300",
            "soon",
            "5 fortnights",
            "200000000y",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(bad) || e.contains("seconds"), "{bad}: {e}");
        }
    }

    #[test]
    fn serde_takes_text_or_seconds_and_writes_text() {
        #[derive(serde::Serialize, Deserialize, PartialEq, Debug)]
        struct C {
            #[serde(with = "super")]
            wait: Duration,
        }
        let c: C = serde_json::from_str(r#"{"wait": "2m"}"#).unwrap();
        assert_eq!(c.wait, Duration::from_secs(120));
        let c: C = serde_json::from_str(r#"{"wait": 1.5}"#).unwrap();
        assert_eq!(c.wait, Duration::from_millis(1500));
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"wait":"1s 500ms"}"#);
        let e = serde_json::from_str::<C>(r#"{"wait": 1e300}"#).unwrap_err();
        assert!(e.to_string().contains("hundred years"), "{e}");
    }
}
