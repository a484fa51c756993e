//! Evaluating an expression against a node-output context, with Python's semantics.

use serde_json::{Number, Value};

use super::{BinOp, CmpOp, Expr, ExprError, UnOp};
use crate::value::{py_cmp, py_contains, py_eq, truthy};

pub(super) const FUNCS: [&str; 12] = [
    "len", "abs", "min", "max", "sum", "round", "int", "float", "str", "bool", "all", "any",
];

/// Evaluates `e`, resolving names through `lookup`.
pub fn eval(e: &Expr, lookup: &dyn Fn(&str) -> Option<Value>) -> Result<Value, ExprError> {
    let ty = |m: String| ExprError::Type(m);
    Ok(match e {
        Expr::Lit(v) => v.clone(),
        Expr::Name(n) => lookup(n).ok_or_else(|| ExprError::UnknownName(n.clone()))?,
        Expr::List(items) => Value::Array(
            items
                .iter()
                .map(|i| eval(i, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Dict(items) => {
            let mut m = serde_json::Map::new();
            for (k, v) in items {
                let k = match eval(k, lookup)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                m.insert(k, eval(v, lookup)?);
            }
            Value::Object(m)
        }
        Expr::Unary(op, x) => {
            let v = eval(x, lookup)?;
            match op {
                UnOp::Not => Value::Bool(!truthy(&v)),
                UnOp::Pos => num(&v)
                    .map(|_| v.clone())
                    .ok_or_else(|| ty("bad operand for unary +".into()))?,
                UnOp::Neg => match &v {
                    Value::Number(n) if n.is_i64() => Value::from(-n.as_i64().unwrap_or(0)),
                    _ => float(-num(&v).ok_or_else(|| ty("bad operand for unary -".into()))?),
                },
            }
        }
        Expr::And(a, b) => {
            let l = eval(a, lookup)?;
            if truthy(&l) { eval(b, lookup)? } else { l }
        }
        Expr::Or(a, b) => {
            let l = eval(a, lookup)?;
            if truthy(&l) { l } else { eval(b, lookup)? }
        }
        Expr::IfElse(c, a, b) => {
            if truthy(&eval(c, lookup)?) {
                eval(a, lookup)?
            } else {
                eval(b, lookup)?
            }
        }
        Expr::Compare(first, rest) => {
            let mut left = eval(first, lookup)?;
            for (op, r) in rest {
                let right = eval(r, lookup)?;
                let ok = compare(*op, &left, &right)?;
                if !ok {
                    return Ok(Value::Bool(false));
                }
                left = right;
            }
            Value::Bool(true)
        }
        Expr::Binary(op, a, b) => binary(*op, &eval(a, lookup)?, &eval(b, lookup)?)?,
        Expr::Index(x, i) => {
            let v = eval(x, lookup)?;
            let i = eval(i, lookup)?;
            match (&v, &i) {
                (Value::Object(m), Value::String(k)) => m
                    .get(k)
                    .cloned()
                    .ok_or_else(|| ty(format!("key error: {k:?}")))?,
                (Value::Array(a), Value::Number(n)) => {
                    let n = n
                        .as_i64()
                        .ok_or_else(|| ty("list index must be an integer".into()))?;
                    let len = i64::try_from(a.len()).unwrap_or(i64::MAX);
                    let k = if n < 0 { n + len } else { n };
                    usize::try_from(k)
                        .ok()
                        .and_then(|k| a.get(k))
                        .cloned()
                        .ok_or_else(|| ty("list index out of range".into()))?
                }
                _ => {
                    return Err(ty(format!(
                        "cannot index {} with {}",
                        crate::load::kind(&v),
                        crate::load::kind(&i)
                    )));
                }
            }
        }
        Expr::Attr(x, name) => match eval(x, lookup)? {
            Value::Object(m) => m
                .get(name)
                .cloned()
                .ok_or_else(|| ty(format!("no key '{name}'")))?,
            other => {
                return Err(ty(format!(
                    "{} has no attribute '{name}'",
                    crate::load::kind(&other)
                )));
            }
        },
        Expr::Call(f, args) => {
            let args: Vec<Value> = args
                .iter()
                .map(|a| eval(a, lookup))
                .collect::<Result<_, _>>()?;
            call(f, &args)?
        }
    })
}

/// Evaluates to Python truthiness.
pub fn eval_bool(e: &Expr, lookup: &dyn Fn(&str) -> Option<Value>) -> Result<bool, ExprError> {
    eval(e, lookup).map(|v| truthy(&v))
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn compare(op: CmpOp, l: &Value, r: &Value) -> Result<bool, ExprError> {
    use std::cmp::Ordering::*;
    let ord = || {
        py_cmp(l, r).ok_or_else(|| {
            ExprError::Type(format!(
                "cannot compare {} with {}",
                crate::load::kind(l),
                crate::load::kind(r)
            ))
        })
    };
    let contains = || {
        py_contains(r, l).ok_or_else(|| {
            ExprError::Type(format!(
                "'in' needs a list, object or string, found {}",
                crate::load::kind(r)
            ))
        })
    };
    Ok(match op {
        CmpOp::Eq => py_eq(l, r),
        CmpOp::Ne => !py_eq(l, r),
        CmpOp::Lt => ord()? == Less,
        CmpOp::Le => ord()? != Greater,
        CmpOp::Gt => ord()? == Greater,
        CmpOp::Ge => ord()? != Less,
        CmpOp::In => contains()?,
        CmpOp::NotIn => !contains()?,
        // `is` is identity: meaningful for None, True and False only.
        CmpOp::Is => l == r && matches!(l, Value::Null | Value::Bool(_)),
        CmpOp::IsNot => !(l == r && matches!(l, Value::Null | Value::Bool(_))),
    })
}

fn binary(op: BinOp, l: &Value, r: &Value) -> Result<Value, ExprError> {
    let bad = || {
        ExprError::Type(format!(
            "unsupported operand types: {} and {}",
            crate::load::kind(l),
            crate::load::kind(r)
        ))
    };
    match (op, l, r) {
        (BinOp::Add, Value::String(a), Value::String(b)) => {
            return Ok(Value::String(format!("{a}{b}")));
        }
        (BinOp::Add, Value::Array(a), Value::Array(b)) => {
            return Ok(Value::Array(a.iter().chain(b).cloned().collect()));
        }
        _ => {}
    }
    if let (Some(a), Some(b)) = (int(l), int(r)) {
        let v = match op {
            BinOp::Add => a.checked_add(b),
            BinOp::Sub => a.checked_sub(b),
            BinOp::Mul => a.checked_mul(b),
            BinOp::FloorDiv if b != 0 => {
                Some(a.div_euclid(b) - i64::from(b < 0 && a.rem_euclid(b) != 0))
            }
            BinOp::Mod if b != 0 => Some(((a % b) + b) % b),
            BinOp::Pow if (0..=63).contains(&b) => {
                u32::try_from(b).ok().and_then(|e| a.checked_pow(e))
            }
            BinOp::FloorDiv | BinOp::Mod => return Err(ExprError::Type("division by zero".into())),
            _ => None,
        };
        if let Some(v) = v {
            return Ok(Value::from(v));
        }
    }
    let (a, b) = (num(l).ok_or_else(bad)?, num(r).ok_or_else(bad)?);
    let zero = || ExprError::Type("division by zero".into());
    Ok(float(match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => {
            if b == 0.0 {
                return Err(zero());
            }
            a / b
        }
        BinOp::FloorDiv => {
            if b == 0.0 {
                return Err(zero());
            }
            (a / b).floor()
        }
        BinOp::Mod => {
            if b == 0.0 {
                return Err(zero());
            }
            a - b * (a / b).floor()
        }
        BinOp::Pow => a.powf(b),
    }))
}

fn call(f: &str, args: &[Value]) -> Result<Value, ExprError> {
    let ty = |m: &str| ExprError::Type(format!("{f}(): {m}"));
    let one = || {
        if args.len() == 1 {
            Ok(&args[0])
        } else {
            Err(ty("takes exactly one argument"))
        }
    };
    let items = |v: &Value| -> Result<Vec<Value>, ExprError> {
        match v {
            Value::Array(a) => Ok(a.clone()),
            Value::Object(o) => Ok(o.keys().map(|k| Value::String(k.clone())).collect()),
            Value::String(s) => Ok(s.chars().map(|c| Value::String(c.into())).collect()),
            _ => Err(ty("argument is not iterable")),
        }
    };
    Ok(match f {
        "len" => match one()? {
            Value::Array(a) => Value::from(a.len()),
            Value::Object(o) => Value::from(o.len()),
            Value::String(s) => Value::from(s.chars().count()),
            _ => return Err(ty("object has no len()")),
        },
        "abs" => match one()? {
            Value::Number(n) if n.is_i64() => Value::from(n.as_i64().unwrap_or(0).unsigned_abs()),
            v => float(num(v).ok_or_else(|| ty("bad operand"))?.abs()),
        },
        "min" | "max" => {
            let list = if args.len() == 1 {
                items(&args[0])?
            } else {
                args.to_vec()
            };
            let mut best: Option<Value> = None;
            for v in list {
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let o = py_cmp(&v, &b).ok_or_else(|| ty("values cannot be compared"))?;
                        let take = if f == "min" { o.is_lt() } else { o.is_gt() };
                        if take { v } else { b }
                    }
                });
            }
            best.ok_or_else(|| ty("arg is an empty sequence"))?
        }
        "sum" => {
            let mut acc = Value::from(0);
            for v in items(one()?)? {
                acc = binary(BinOp::Add, &acc, &v)?;
            }
            acc
        }
        "round" => {
            let x = num(args.first().ok_or_else(|| ty("missing argument"))?)
                .ok_or_else(|| ty("bad operand"))?;
            match args.get(1).and_then(int) {
                Some(d) => {
                    let p = 10f64.powi(i32::try_from(d).unwrap_or(0));
                    float((x * p).round() / p)
                }
                None => Value::from(x.round() as i64),
            }
        }
        "int" => match one()? {
            Value::String(s) => {
                Value::from(s.trim().parse::<i64>().map_err(|_| ty("invalid literal"))?)
            }
            v => Value::from(num(v).ok_or_else(|| ty("bad operand"))?.trunc() as i64),
        },
        "float" => match one()? {
            Value::String(s) => float(s.trim().parse::<f64>().map_err(|_| ty("invalid literal"))?),
            v => float(num(v).ok_or_else(|| ty("bad operand"))?),
        },
        "str" => Value::String(crate::value::py_str(one()?)),
        "bool" => Value::Bool(truthy(one()?)),
        "all" => Value::Bool(items(one()?)?.iter().all(truthy)),
        "any" => Value::Bool(items(one()?)?.iter().any(truthy)),
        _ => return Err(ty("unknown function")),
    })
}
