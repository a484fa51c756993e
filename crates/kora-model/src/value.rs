//! Dynamic values as Kailash sees them: JSON values with Python's notions of truth and `str()`.

pub use serde_json::{Map as JsonMap, Value};

/// A node's input or output: a JSON object with ordered keys.
pub type Map = JsonMap<String, Value>;

/// Python truthiness of a JSON value (`bool(x)` in Kailash).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `str(x)` for a JSON value, as Kailash's template resolver produces it.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr()` (and `str()`) of a float: the shortest digits that read back as the
/// same number; exponent form when the exponent is below -4 or at least 16 (`1e+16`,
/// `1.5e-05`), otherwise at least one decimal place (`2.0`, `0.0001`).
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` is the shortest round-trip form too: `1.5e-5`, `1e16`, `-2e0`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    if !(-4..16).contains(&exp) {
        let e_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{e_sign}{:02}", exp.unsigned_abs());
    }
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // The decimal point goes after `exp + 1` digits.
    let point = exp + 1;
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else {
        let point = point as usize;
        if point >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{body}")
}

/// Python's `repr(x)` for a JSON value (`None`, `True`, `'text'`, `{'k': 1}`).
pub fn py_repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(v, &mut out);
    out
}

fn write_repr(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => {
            if n.is_f64() {
                out.push_str(&py_float(n.as_f64().unwrap_or(0.0)));
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => {
            let quote = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            out.push(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out.push(quote);
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(&Value::String(k.clone()), out);
                out.push_str(": ");
                write_repr(x, out);
            }
            out.push('}');
        }
    }
}

/// Looks up an output path in a node's output, as Kailash does for connection sources:
/// the whole key first, then a walk through nested objects split on `.`.
/// Returns `None` when the path does not resolve (Kailash logs a warning and omits the input).
pub fn lookup_path<'a>(output: &'a Map, path: &str) -> Option<&'a Value> {
    if let Some(v) = output.get(path) {
        return Some(v);
    }
    if !path.contains('.') {
        return None;
    }
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut cur = output.get(first)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

/// Python-style equality between JSON values: `1 == 1.0` is true.
pub fn py_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Bool(x), Value::Number(_)) => py_eq(&Value::from(i64::from(*x)), b),
        (Value::Number(_), Value::Bool(y)) => py_eq(a, &Value::from(i64::from(*y))),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Python-style ordering for numbers and strings; `None` when Python would raise `TypeError`.
pub fn py_cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    let num = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    };
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                match py_cmp(p, q)? {
                    std::cmp::Ordering::Equal => continue,
                    o => return Some(o),
                }
            }
            Some(x.len().cmp(&y.len()))
        }
        _ => num(a)?.partial_cmp(&num(b)?),
    }
}

/// Python's `needle in haystack` for JSON values; `None` when Python would raise `TypeError`.
pub fn py_contains(haystack: &Value, needle: &Value) -> Option<bool> {
    match haystack {
        Value::Array(a) => Some(a.iter().any(|x| py_eq(x, needle))),
        Value::Object(o) => match needle {
            Value::String(s) => Some(o.contains_key(s)),
            _ => Some(false),
        },
        Value::String(s) => match needle {
            Value::String(n) => Some(s.contains(n.as_str())),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `v` is only known when the node runs: a `${...}` template (an input, or
/// `${secret:NAME}`), a `{"$secret": "NAME"}` reference, or a value redacted on export.
pub fn is_deferred(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("${") || s == crate::spec::REDACTED,
        Value::Object(m) => m.len() == 1 && m.contains_key("$secret"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn python_float_repr() {
        for (f, want) in [
            (2.0, "2.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345.6, "123456789012345.6"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (-0.00012, "-0.00012"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (f64::MAX, "1.7976931348623157e+308"),
        ] {
            assert_eq!(py_float(f), want, "{f:?}");
        }
    }

    #[test]
    fn python_str_and_repr() {
        assert_eq!(py_str(&json!("x")), "x");
        assert_eq!(py_str(&json!(null)), "None");
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!(3)), "3");
        assert_eq!(py_str(&json!(2.0)), "2.0");
        assert_eq!(py_str(&json!(2.5)), "2.5");
        assert_eq!(
            py_str(&json!({"a": [1, "b", null]})),
            "{'a': [1, 'b', None]}"
        );
        assert_eq!(py_repr(&json!("it's")), "\"it's\"");
    }

    #[test]
    fn truthiness_matches_python() {
        for (v, t) in [
            (json!(null), false),
            (json!(0), false),
            (json!(0.0), false),
            (json!(""), false),
            (json!([]), false),
            (json!({}), false),
            (json!(false), false),
            (json!(1), true),
            (json!("no"), true),
            (json!([0]), true),
        ] {
            assert_eq!(truthy(&v), t, "{v}");
        }
    }

    #[test]
    fn dotted_paths_walk_objects() {
        let out = json!({"result": {"x": {"y": 7}}, "a.b": 1})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(lookup_path(&out, "result.x.y"), Some(&json!(7)));
        assert_eq!(lookup_path(&out, "a.b"), Some(&json!(1)));
        assert_eq!(lookup_path(&out, "result.z"), None);
        assert_eq!(lookup_path(&out, "result.x.y.z"), None);
        assert_eq!(lookup_path(&out, "missing"), None);
    }

    #[test]
    fn python_comparisons() {
        assert!(py_eq(&json!(1), &json!(1.0)));
        assert!(py_eq(&json!(true), &json!(1)));
        assert_eq!(
            py_cmp(&json!(2), &json!(1.5)),
            Some(std::cmp::Ordering::Greater)
        );
        assert_eq!(py_cmp(&json!("a"), &json!(1)), None);
        assert_eq!(py_contains(&json!([1, 2]), &json!(2.0)), Some(true));
        assert_eq!(py_contains(&json!("hello"), &json!("ell")), Some(true));
        assert_eq!(py_contains(&json!(5), &json!(5)), None);
    }
}

/// Where the first NUL character (`\u0000`) is in `v`, in a string or an object key, as a path
/// (`config.a[2]`; a NUL in the path itself shown as `\u0000`). The ledger cannot store NUL
/// (PostgreSQL text and JSONB refuse it), so a value with one is refused where it comes in.
pub fn find_nul(v: &Value) -> Option<String> {
    let mut path = String::new();
    nul_walk(v, &mut path).then(|| {
        if path.is_empty() {
            "(the value)".into()
        } else {
            path
        }
    })
}

/// [`find_nul`] over a map's entries (a node's output), without building a value around it.
pub fn find_nul_in_map(m: &Map) -> Option<String> {
    let mut path = String::new();
    nul_in_entries(m, &mut path).then_some(path)
}

fn nul_walk(v: &Value, path: &mut String) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().enumerate().any(|(i, x)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = nul_walk(x, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Object(m) => nul_in_entries(m, path),
        _ => false,
    }
}

fn nul_in_entries(m: &Map, path: &mut String) -> bool {
    m.iter().any(|(k, x)| {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&k.replace('\0', "\\u0000"));
        let found = k.contains('\0') || nul_walk(x, path);
        if !found {
            path.truncate(len);
        }
        found
    })
}

/// `s` with each NUL character replaced by U+FFFD (for text that is only read by people:
/// error messages, audit entries).
pub fn without_nul(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// [`without_nul`] on every string and key of `v`.
pub fn strip_nul(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('\0') => *s = without_nul(s),
        Value::Array(a) => a.iter_mut().for_each(strip_nul),
        Value::Object(m) if m.keys().any(|k| k.contains('\0')) => {
            let old = std::mem::take(m);
            for (k, mut x) in old {
                strip_nul(&mut x);
                m.insert(without_nul(&k), x);
            }
        }
        Value::Object(m) => m.values_mut().for_each(strip_nul),
        _ => {}
    }
}

#[cfg(test)]
mod nul_tests {
    use super::*;

    #[test]
    fn nul_characters_are_found_by_path_and_stripped() {
        let mut v = serde_json::json!({"a": {"b": ["ok", "x\u{0}y"]}, "c\u{0}": 1});
        assert_eq!(find_nul(&v).as_deref(), Some("a.b[1]"));
        assert_eq!(
            find_nul(&serde_json::json!({"k\u{0}": 1})).as_deref(),
            Some("k\\u0000")
        );
        assert_eq!(
            find_nul(&serde_json::json!("\u{0}")).as_deref(),
            Some("(the value)")
        );
        assert_eq!(find_nul(&serde_json::json!({"a": [1, "b"]})), None);
        // A node's output, walked in place: the same paths.
        let Value::Object(m) = &v else { unreachable!() };
        assert_eq!(find_nul_in_map(m).as_deref(), Some("a.b[1]"));
        assert_eq!(find_nul_in_map(&Map::new()), None);
        strip_nul(&mut v);
        assert_eq!(find_nul(&v), None);
        assert_eq!(v["a"]["b"][1], "x\u{FFFD}y");
    }
}
