//! Kailash's `${name}` templates: a value (JSON if the text parses, else a string) resolved
//! against runtime inputs (the JSON object after the first NUL byte, else a fixed set).
#![no_main]

use kora_model::semantics::resolve_templates;
use kora_model::{Map, Value};
use libfuzzer_sys::fuzz_target;

/// Inputs of every kind, among them a dotted and a spaced name, floats Python prints in
/// exponent form, an integer beyond 128 bits and a value that is itself a template.
const DEFAULT_INPUTS: &str = r#"{"a": 1, "a.b": "dotted", "f": 1e16, "g": 1.5e-5, "h": 0.1, "s": "${a}",
    "big": 3402823669209384634633746074317682114560, "n": null, "t": true,
    "l": [1, "x", null, 2.0], "o": {"k": "v"}, "": "empty", " a ": "spaced"}"#;
fuzz_target!(|data: &[u8]| {
    let (head, tail) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(text) = std::str::from_utf8(head) else {
        return;
    };
    let inputs: Map = tail
        .and_then(|t| serde_json::from_slice::<Map>(t).ok())
        .unwrap_or_else(|| serde_json::from_str(DEFAULT_INPUTS).unwrap_or_default());
    let mut v = serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.into()));
    let before = v.clone();
    resolve_templates(&mut v, &inputs);
    if !text.contains("${") {
        assert_eq!(v, before, "a value without templates is left alone");
    }
    // Deterministic: the same value resolves the same way again.
    let mut again = before;
    resolve_templates(&mut again, &inputs);
    assert_eq!(again, v);
});
