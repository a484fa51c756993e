//! Tokens to an expression tree, by precedence climbing; nesting is bounded.

use serde_json::Value;

use super::eval::FUNCS;
use super::lex::{Tok, describe, lex};
use super::{BinOp, CmpOp, Expr, ExprError, MAX_DEPTH, UnOp};

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
