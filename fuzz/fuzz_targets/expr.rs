//! The `converge_when` expression language: parse any text, evaluate what parses against
//! values of every JSON kind. Errors are fine; panics, hangs and unbounded recursion are not.
#![no_main]

use kora_model::Value;
use kora_model::expr;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(e) = expr::parse(src) else {
        return;
    };
    let vars = json!({
        "n": 3, "f": 0.5, "big": 18446744073709551616u128, "neg": -7, "s": "text", "e": "",
        "t": true, "z": null, "l": [1, 2.5, "x", null], "o": {"a": {"b": 1}}, "inf": 1e308
    });
    let lookup = |name: &str| -> Option<Value> { vars.get(name).cloned() };
    let _ = expr::eval(&e, &lookup);
    let _ = expr::eval_bool(&e, &lookup);
    let _ = expr::mentions(&e, "n");
});
