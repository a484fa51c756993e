//! A small, safe expression language for `converge_when`: the Python subset Kailash users write
//! (`done == True`, `count >= 5 and error < 0.01`, `len(items) > 3`), parsed once and evaluated
//! against a node-output context. There is no `eval`, no attribute access on objects beyond
//! dictionary keys, and no function but a fixed list of pure built-ins.

use serde_json::Value;

mod eval;
mod lex;
mod parse;

pub use eval::{eval, eval_bool};
pub use parse::parse;

/// Longest nesting the parser follows, and longest expression it reads.
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

/// Whether `e` reads the name `name` anywhere.
pub fn mentions(e: &Expr, name: &str) -> bool {
    let m = |x: &Expr| mentions(x, name);
    match e {
        Expr::Lit(_) => false,
        Expr::Name(n) => n == name,
        Expr::List(xs) => xs.iter().any(m),
        Expr::Dict(kv) => kv.iter().any(|(k, v)| m(k) || m(v)),
        Expr::Unary(_, x) | Expr::Attr(x, _) => m(x),
        Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) | Expr::Index(a, b) => {
            m(a) || m(b)
        }
        Expr::Compare(a, rest) => m(a) || rest.iter().any(|(_, x)| m(x)),
        Expr::Call(_, args) => args.iter().any(m),
        Expr::IfElse(a, b, c) => m(a) || m(b) || m(c),
    }
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

#[cfg(test)]
mod tests;
