use serde_json::json;

use super::*;

fn run(src: &str, ctx: Value) -> Result<Value, ExprError> {
    let e = parse(src)?;
    let ctx = ctx.as_object().cloned().unwrap_or_default();
    eval(&e, &|n| ctx.get(n).cloned())
}

#[test]
fn table() {
    let ctx = json!({"done": true, "count": 5, "error": 0.005, "items": [1, 2, 3], "a": {"result": {"x": 2}}, "s": "abc"});
    for (src, want) in [
        ("done == True", json!(true)),
        ("count >= 5 and error < 0.01", json!(true)),
        ("count > 5 or not done", json!(false)),
        ("len(items) == 3", json!(true)),
        ("a['result']['x'] * 2", json!(4)),
        ("a.result.x + 1", json!(3)),
        ("1 < count <= 5", json!(true)),
        ("2 in items", json!(true)),
        ("'b' in s", json!(true)),
        ("4 not in items", json!(true)),
        ("None is None", json!(true)),
        ("7 // 2", json!(3)),
        ("-7 // 2", json!(-4)),
        ("7 / 2", json!(3.5)),
        ("-7 % 3", json!(2)),
        ("2 ** 10", json!(1024)),
        ("max(items) + min(3, 1)", json!(4)),
        ("sum(items)", json!(6)),
        ("abs(-3)", json!(3)),
        ("round(2.567, 2)", json!(2.57)),
        ("'x' if done else 'y'", json!("x")),
        ("[1, 2] + [3]", json!([1, 2, 3])),
        ("{'k': 1}['k']", json!(1)),
    ] {
        assert_eq!(run(src, ctx.clone()), Ok(want.clone()), "{src}");
    }
}

#[test]
fn errors_are_reported_not_panicked() {
    assert!(matches!(
        run("missing > 1", json!({})),
        Err(ExprError::UnknownName(_))
    ));
    assert!(matches!(
        parse("__import__('os')"),
        Err(ExprError::Syntax { .. })
    ));
    assert!(matches!(parse("x = 1"), Err(ExprError::Syntax { .. })));
    assert!(matches!(parse("(1"), Err(ExprError::Syntax { .. })));
    assert!(matches!(run("1 / 0", json!({})), Err(ExprError::Type(_))));
    assert!(matches!(run("'a' < 1", json!({})), Err(ExprError::Type(_))));
    let deep = "(".repeat(500) + "1" + &")".repeat(500);
    assert!(parse(&deep).is_err());
    let deep_not = "not ".repeat(500) + "1";
    assert!(parse(&deep_not).is_err());
    assert!(run("2 ** 100000", json!({})).is_ok());
}
