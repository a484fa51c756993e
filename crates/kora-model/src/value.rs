//! Dynamic values as Kailash sees them: JSON values with Python's notions of truth and `str()`.

pub use serde_json::{Map as JsonMap, Value};

/// A node's input or output: a JSON object with ordered keys.
pub type Map = JsonMap<String, Value>;

/// Python truthiness of a JSON value (`bool(x)` in Kailash).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        // An integer too large for a float is not zero.
        Value::Number(n) => n.as_f64().is_none_or(|f| f != 0.0),
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
            _ => match int_cmp(x, y) {
                Some(o) => o.is_eq(),
                None => x.as_f64() == y.as_f64(),
            },
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

/// Exact ordering of two integers of any size (Python ints), from their digits; `None` unless
/// both are integers.
fn int_cmp(x: &serde_json::Number, y: &serde_json::Number) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
        return Some(i.cmp(&j));
    }
    // The digits as written (`arbitrary_precision`), without copying them.
    let split = |s: &str| -> Option<(bool, usize, usize)> {
        let (neg, digits) = s.strip_prefix('-').map_or((false, s), |d| (true, d));
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let start = s.len() - digits.trim_start_matches('0').len();
        Some((neg && start < s.len(), start, s.len()))
    };
    let (xs, ys) = (x.as_str(), y.as_str());
    let ((xn, xa, xb), (yn, ya, yb)) = (split(xs)?, split(ys)?);
    let (xd, yd) = (&xs[xa..xb], &ys[ya..yb]);
    let magnitude = xd.len().cmp(&yd.len()).then_with(|| xd.cmp(yd));
    Some(match (xn, yn) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
    })
}

/// Python-style ordering for numbers and strings; `None` when Python would raise `TypeError`.
pub fn py_cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    if let (Value::Number(x), Value::Number(y)) = (a, b)
        && let Some(o) = int_cmp(x, y)
    {
        return Some(o);
    }
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

    #[test]
    fn integers_of_any_size_stay_exact() {
        let v: Value = serde_json::from_str(
            r#"[1267650600228229401496703205376, 1267650600228229401496703205377, -1180591620717411303424, 1.5]"#,
        )
        .unwrap();
        let (a, b, neg) = (&v[0], &v[1], &v[2]);
        // As floats the first two are one number; as Python ints they differ.
        assert_eq!(a.as_f64(), b.as_f64());
        assert!(!py_eq(a, b));
        assert!(py_eq(a, &a.clone()));
        assert_eq!(py_cmp(a, b), Some(std::cmp::Ordering::Less));
        assert_eq!(py_cmp(neg, &json!(-1)), Some(std::cmp::Ordering::Less));
        assert_eq!(py_cmp(a, &json!(1.5)), Some(std::cmp::Ordering::Greater));
        assert_eq!(py_str(a), "1267650600228229401496703205376");
        assert_eq!(py_repr(&v[3]), "1.5");
        assert_eq!(
            v.to_string(),
            r#"[1267650600228229401496703205376,1267650600228229401496703205377,-1180591620717411303424,1.5]"#
        );
        // Too large for a float, still not zero.
        let huge: Value = serde_json::from_str(&"9".repeat(400)).unwrap();
        assert!(truthy(&huge));
    }

    #[test]
    fn numbers_nothing_can_carry_are_found_with_their_place() {
        let m: Map = serde_json::from_str(&format!(
            r#"{{"ok": [1, 2.5, 123456789012345678901234567890], "a": {{"b": [0, 1e400]}}, "n": {}}}"#,
            "7".repeat(MAX_INT_DIGITS + 1)
        ))
        .unwrap();
        let (path, why) = find_unusable_number(&m).unwrap();
        assert_eq!(path, "a.b[1]");
        assert!(why.contains("1e+400 is beyond a 64-bit float"), "{why}");
        let n: Value = serde_json::from_str(&"7".repeat(MAX_INT_DIGITS + 1)).unwrap();
        let Value::Number(n) = n else { unreachable!() };
        assert!(unusable_number(&n).unwrap().contains("4301 digits"));
        let fine: Value = serde_json::from_str(&"7".repeat(MAX_INT_DIGITS)).unwrap();
        let Value::Number(fine) = fine else {
            unreachable!()
        };
        assert_eq!(unusable_number(&fine), None);
        assert_eq!(
            find_unusable_number(&json!({"x": [1, -2.5e-300]}).as_object().unwrap().clone()),
            None
        );
    }
}

/// The most digits an integer may have: Python's own limit for reading an int from text
/// (`sys.int_max_str_digits`, 4300 by default), so every integer Kora carries reads in Python.
pub const MAX_INT_DIGITS: usize = 4300;

/// Why a number cannot be carried, if it cannot. Numbers keep the digits they were written
/// with, so an integer of any size stays exact; but a float beyond `f64` (`1e400`, which
/// Python reads as an infinity: JSON, the wire and the ledger have none) and an integer
/// longer than [`MAX_INT_DIGITS`] are refused where they come in.
pub fn unusable_number(n: &serde_json::Number) -> Option<String> {
    if n.is_i64() || n.is_u64() || n.is_f64() {
        return None;
    }
    let digits = n.to_string();
    if !digits.contains(['.', 'e', 'E']) {
        let len = digits.trim_start_matches('-').len();
        return (len > MAX_INT_DIGITS).then(|| {
            format!("an integer of {len} digits is longer than Python reads ({MAX_INT_DIGITS})")
        });
    }
    let shown: String = digits.chars().take(24).collect();
    Some(format!(
        "the number {shown} is beyond a 64-bit float (Python reads it as an infinity; JSON, the wire and the ledger have none): write a finite number, or a string"
    ))
}

/// Where the first number [`unusable_number`] refuses is in `m`, as a path (`a.b[2]`), and why.
pub fn find_unusable_number(m: &Map) -> Option<(String, String)> {
    let mut path = String::new();
    let leaf = |v: &Value| match v {
        Value::Number(n) => unusable_number(n),
        _ => None,
    };
    first_in(m, &mut path, &|_| None, &leaf).map(|why| (path, why))
}

/// Where the first NUL character (`\u0000`) is in `v`, in a string or an object key, as a path
/// (`config.a[2]`; a NUL in the path itself shown as `\u0000`). The ledger cannot store NUL
/// (PostgreSQL text and JSONB refuse it), so a value with one is refused where it comes in.
pub fn find_nul(v: &Value) -> Option<String> {
    let mut path = String::new();
    first_at(v, &mut path, &nul_key, &nul_leaf).map(|()| {
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
    first_in(m, &mut path, &nul_key, &nul_leaf).map(|()| path)
}

fn nul_key(k: &str) -> Option<()> {
    k.contains('\0').then_some(())
}

fn nul_leaf(v: &Value) -> Option<()> {
    match v {
        Value::String(s) => nul_key(s),
        _ => None,
    }
}

/// Depth first through `v` in key order: the first key or leaf value that `key` or `leaf`
/// finds something in, with `path` left pointing at it (`a.b[2]`; a NUL in a key written
/// `\u0000`).
fn first_at<T>(
    v: &Value,
    path: &mut String,
    key: &dyn Fn(&str) -> Option<T>,
    leaf: &dyn Fn(&Value) -> Option<T>,
) -> Option<T> {
    match v {
        Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = first_at(x, path, key, leaf);
            if found.is_none() {
                path.truncate(len);
            }
            found
        }),
        Value::Object(m) => first_in(m, path, key, leaf),
        other => leaf(other),
    }
}

/// [`first_at`] over a map's entries, under `path`.
fn first_in<T>(
    m: &Map,
    path: &mut String,
    key: &dyn Fn(&str) -> Option<T>,
    leaf: &dyn Fn(&Value) -> Option<T>,
) -> Option<T> {
    m.iter().find_map(|(k, x)| {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        if k.contains('\0') {
            path.push_str(&k.replace('\0', "\\u0000"));
        } else {
            path.push_str(k);
        }
        let found = key(k).or_else(|| first_at(x, path, key, leaf));
        if found.is_none() {
            path.truncate(len);
        }
        found
    })
}

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
