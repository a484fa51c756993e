//! Source text to tokens, with their columns.

use serde_json::{Number, Value};

use super::{ExprError, MAX_LEN};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Num(Value),
    Str(String),
    Ident(String),
    Op(&'static str),
    End,
}

pub(super) fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let syntax = |col: usize, m: &str| ExprError::Syntax {
        col,
        message: m.into(),
    };
    if src.len() > MAX_LEN {
        return Err(syntax(0, "expression is too long"));
    }
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    const OPS: [&str; 25] = [
        "**", "//", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "[", "]",
        "{", "}", ",", ":", ".", "=", "!", "~",
    ];
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || chars[i] == '_'
                    || ((chars[i] == '+' || chars[i] == '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let v = if let Ok(n) = text.parse::<i64>() {
                Value::from(n)
            } else if let Ok(f) = text.parse::<f64>() {
                Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| syntax(start, "bad number"))?
            } else {
                return Err(syntax(start, &format!("bad number '{text}'")));
            };
            out.push((Tok::Num(v), start));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start));
        } else if c == '\'' || c == '"' {
            let start = i;
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(syntax(start, "unterminated string")),
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let e = chars
                            .get(i + 1)
                            .ok_or_else(|| syntax(i, "unterminated string"))?;
                        s.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => *other,
                        });
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Str(s), start));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                return Err(syntax(i, &format!("unexpected character '{c}'")));
            };
            if matches!(*op, "=" | "!" | "~") {
                return Err(syntax(
                    i,
                    &format!("unsupported operator '{op}' (use == for comparison)"),
                ));
            }
            out.push((Tok::Op(op), i));
            i += op.len();
        }
    }
    out.push((Tok::End, chars.len()));
    Ok(out)
}

pub(super) fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("number {n}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Op(o) => format!("'{o}'"),
        Tok::End => "end of expression".into(),
    }
}
