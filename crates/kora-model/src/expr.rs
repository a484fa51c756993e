//! A small, safe expression language for `converge_when`: the Python subset Kailash users write
//! (`done == True`, `count >= 5 and error < 0.01`, `len(items) > 3`), parsed once and evaluated
//! against a node-output context. There is no `eval`, no attribute access on objects beyond
//! dictionary keys, and no function but a fixed list of pure built-ins.

use serde_json::{Number, Value};

use crate::value::{py_cmp, py_contains, py_eq, truthy};

const MAX_DEPTH: usize = 64;
const MAX_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    Name(String),
    List(Vec<Expr>),
    Dict(Vec<(Expr, Expr)>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// Chained comparison `a < b <= c`.
    Compare(Box<Expr>, Vec<(CmpOp, Expr)>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Attr(Box<Expr>, String),
    Call(String, Vec<Expr>),
    IfElse(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnOp {
    Neg,
    Pos,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Is,
    IsNot,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error("syntax error at column {col}: {message}")]
    Syntax { col: usize, message: String },
    #[error("name '{0}' is not defined")]
    UnknownName(String),
    #[error("{0}")]
    Type(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(Value),
    Str(String),
    Ident(String),
    Op(&'static str),
    End,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
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

/// Parses an expression. Fails with the column of the first problem.
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p.expr()?;
    match p.peek() {
        Tok::End => Ok(e),
        t => Err(p.err(&format!("unexpected {}", describe(t)))),
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("number {n}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Op(o) => format!("'{o}'"),
        Tok::End => "end of expression".into(),
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn err(&self, m: &str) -> ExprError {
        ExprError::Syntax {
            col: self.toks[self.pos.min(self.toks.len() - 1)].1,
            message: m.into(),
        }
    }
    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Tok::Op(o) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Tok::Ident(s) if s == kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_op(&mut self, op: &str) -> Result<(), ExprError> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(self.err(&format!("expected '{op}', found {}", describe(self.peek()))))
        }
    }
    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(self.err("expression is nested too deeply"))
        } else {
            Ok(())
        }
    }

    fn expr(&mut self) -> Result<Expr, ExprError> {
        self.enter()?;
        let body = self.or()?;
        let e = if self.eat_kw("if") {
            let cond = self.or()?;
            if !self.eat_kw("else") {
                return Err(self.err("expected 'else'"));
            }
            let other = self.expr()?;
            Expr::IfElse(Box::new(cond), Box::new(body), Box::new(other))
        } else {
            body
        };
        self.depth -= 1;
        Ok(e)
    }
    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.and()?;
        while self.eat_kw("or") {
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.not()?;
        while self.eat_kw("and") {
            l = Expr::And(Box::new(l), Box::new(self.not()?));
        }
        Ok(l)
    }
    fn not(&mut self) -> Result<Expr, ExprError> {
        if self.eat_kw("not") {
            self.enter()?;
            let e = Expr::Unary(UnOp::Not, Box::new(self.not()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.compare()
    }
    fn compare(&mut self) -> Result<Expr, ExprError> {
        let first = self.arith()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Tok::Op("==") => CmpOp::Eq,
                Tok::Op("!=") => CmpOp::Ne,
                Tok::Op("<") => CmpOp::Lt,
                Tok::Op("<=") => CmpOp::Le,
                Tok::Op(">") => CmpOp::Gt,
                Tok::Op(">=") => CmpOp::Ge,
                Tok::Ident(s) if s == "in" => CmpOp::In,
                Tok::Ident(s) if s == "is" => CmpOp::Is,
                Tok::Ident(s) if s == "not" => CmpOp::NotIn,
                _ => break,
            };
            self.pos += 1;
            let op = match op {
                CmpOp::NotIn => {
                    if !self.eat_kw("in") {
                        return Err(self.err("expected 'in' after 'not'"));
                    }
                    CmpOp::NotIn
                }
                CmpOp::Is if self.eat_kw("not") => CmpOp::IsNot,
                o => o,
            };
            rest.push((op, self.arith()?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Expr::Compare(Box::new(first), rest)
        })
    }
    fn arith(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.term()?;
        loop {
            let op = if self.eat_op("+") {
                BinOp::Add
            } else if self.eat_op("-") {
                BinOp::Sub
            } else {
                break;
            };
            l = Expr::Binary(op, Box::new(l), Box::new(self.term()?));
        }
        Ok(l)
    }
    fn term(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.unary()?;
        loop {
            let op = if self.eat_op("*") {
                BinOp::Mul
            } else if self.eat_op("//") {
                BinOp::FloorDiv
            } else if self.eat_op("/") {
                BinOp::Div
            } else if self.eat_op("%") {
                BinOp::Mod
            } else {
                break;
            };
            l = Expr::Binary(op, Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Expr, ExprError> {
        let op = if self.eat_op("-") {
            UnOp::Neg
        } else if self.eat_op("+") {
            UnOp::Pos
        } else {
            return self.power();
        };
        self.enter()?;
        let e = Expr::Unary(op, Box::new(self.unary()?));
        self.depth -= 1;
        Ok(e)
    }
    fn power(&mut self) -> Result<Expr, ExprError> {
        let base = self.postfix()?;
        if self.eat_op("**") {
            self.enter()?;
            let e = Expr::Binary(BinOp::Pow, Box::new(base), Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(e);
        }
        Ok(base)
    }
    fn postfix(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.atom()?;
        loop {
            if self.eat_op(".") {
                match self.next() {
                    Tok::Ident(name) => e = Expr::Attr(Box::new(e), name),
                    t => {
                        return Err(self.err(&format!(
                            "expected a name after '.', found {}",
                            describe(&t)
                        )));
                    }
                }
            } else if self.eat_op("[") {
                let idx = self.expr()?;
                self.expect_op("]")?;
                e = Expr::Index(Box::new(e), Box::new(idx));
            } else if matches!(self.peek(), Tok::Op("(")) {
                let Expr::Name(f) = &e else {
                    return Err(self.err("only built-in functions can be called"));
                };
                if !FUNCS.contains(&f.as_str()) {
                    return Err(self.err(&format!(
                        "unknown function '{f}'; allowed: {}",
                        FUNCS.join(", ")
                    )));
                }
                let f = f.clone();
                self.pos += 1;
                let mut args = Vec::new();
                if !self.eat_op(")") {
                    loop {
                        args.push(self.expr()?);
                        if self.eat_op(")") {
                            break;
                        }
                        self.expect_op(",")?;
                    }
                }
                e = Expr::Call(f, args);
            } else {
                return Ok(e);
            }
        }
    }
    fn atom(&mut self) -> Result<Expr, ExprError> {
        match self.next() {
            Tok::Num(n) => Ok(Expr::Lit(n)),
            Tok::Str(s) => Ok(Expr::Lit(Value::String(s))),
            Tok::Ident(s) => Ok(match s.as_str() {
                "True" | "true" => Expr::Lit(Value::Bool(true)),
                "False" | "false" => Expr::Lit(Value::Bool(false)),
                "None" | "null" => Expr::Lit(Value::Null),
                "and" | "or" | "not" | "in" | "is" | "if" | "else" | "lambda" | "import" => {
                    self.pos -= 1;
                    return Err(self.err(&format!("unexpected keyword '{s}'")));
                }
                _ => Expr::Name(s),
            }),
            Tok::Op("(") => {
                let e = self.expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                if !self.eat_op("]") {
                    loop {
                        items.push(self.expr()?);
                        if self.eat_op("]") {
                            break;
                        }
                        self.expect_op(",")?;
                        if self.eat_op("]") {
                            break;
                        }
                    }
                }
                Ok(Expr::List(items))
            }
            Tok::Op("{") => {
                let mut items = Vec::new();
                if !self.eat_op("}") {
                    loop {
                        let k = self.expr()?;
                        self.expect_op(":")?;
                        items.push((k, self.expr()?));
                        if self.eat_op("}") {
                            break;
                        }
                        self.expect_op(",")?;
                    }
                }
                Ok(Expr::Dict(items))
            }
            t => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.err(&format!("unexpected {}", describe(&t))))
            }
        }
    }
}

const FUNCS: [&str; 12] = [
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

#[cfg(test)]
mod tests {
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
}
