//! A small OData `$filter` subset: `eq`/`ne`/`gt`/`ge`/`lt`/`le`, `contains`/`startswith`/
//! `endswith`, `and`/`or`/`not`, parentheses; string comparisons are case-insensitive (as in SQL).

use std::cmp::Ordering;

use serde_json::Value;

use crate::sim::comparison::Op;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    Word(String),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    Contains,
    StartsWith,
    EndsWith,
}

/// A parsed `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(String, Op, Literal),
    Call(Func, String, String),
}

fn lex(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            ',' => {
                chars.next();
                tokens.push(Token::Comma);
            }
            '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            text.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => text.push(c),
                        None => return Err("unterminated string literal".into()),
                    }
                }
                tokens.push(Token::Str(text));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '+' | ':' | '/') {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if word.is_empty() {
                    return Err(format!("unexpected character '{c}'"));
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

fn is_identifier(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn expect(&mut self, token: &Token) -> Result<(), String> {
        match self.next() {
            Some(t) if t == *token => Ok(()),
            other => Err(format!("expected {token:?}, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn identifier(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(w)) if is_identifier(&w) => Ok(w),
            other => Err(format!("expected a column name, found {other:?}")),
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(&Token::Close)?;
            return Ok(inner);
        }
        let name = self.identifier()?;
        let func = match name.to_ascii_lowercase().as_str() {
            "contains" => Some(Func::Contains),
            "startswith" => Some(Func::StartsWith),
            "endswith" => Some(Func::EndsWith),
            _ => None,
        };
        if let Some(func) = func.filter(|_| self.peek() == Some(&Token::Open)) {
            self.at += 1;
            let column = self.identifier()?;
            self.expect(&Token::Comma)?;
            let Some(Token::Str(text)) = self.next() else {
                return Err(format!("{name} expects a string literal"));
            };
            self.expect(&Token::Close)?;
            return Ok(Expr::Call(func, column, text));
        }
        let op = match self.next() {
            Some(Token::Word(w)) => Op::parse(&w.to_ascii_lowercase())
                .ok_or_else(|| format!("unknown operator '{w}'"))?,
            other => return Err(format!("expected an operator, found {other:?}")),
        };
        let literal = match self.next() {
            Some(Token::Str(text)) => Literal::Text(text),
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "null" => Literal::Null,
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                lower => {
                    if let Ok(n) = lower.parse::<f64>() {
                        Literal::Number(n)
                    } else if let Ok(id) = uuid::Uuid::parse_str(lower) {
                        Literal::Text(id.to_string())
                    } else {
                        return Err(format!("'{w}' is not a literal"));
                    }
                }
            },
            other => return Err(format!("expected a literal, found {other:?}")),
        };
        Ok(Expr::Compare(name, op, literal))
    }
}

/// Parses a `$filter` expression.
pub(super) fn parse(input: &str) -> Result<Expr, String> {
    let mut parser = Parser {
        tokens: lex(input)?,
        at: 0,
    };
    if parser.tokens.is_empty() {
        return Err("empty expression".into());
    }
    let expr = parser.or()?;
    if let Some(extra) = parser.peek() {
        return Err(format!("unexpected {extra:?}"));
    }
    Ok(expr)
}

fn compare(value: Option<&Value>, op: Op, literal: &Literal) -> bool {
    let value = value.filter(|v| !v.is_null());
    let ordering = match (value, literal) {
        (None, Literal::Null) => Some(Ordering::Equal),
        (None, _) | (Some(_), Literal::Null) => None,
        (Some(Value::String(s)), Literal::Text(t)) => Some(s.to_lowercase().cmp(&t.to_lowercase())),
        (Some(v), Literal::Number(n)) => v.as_f64().and_then(|x| x.partial_cmp(n)),
        (Some(Value::Bool(b)), Literal::Bool(l)) => Some(b.cmp(l)),
        _ => None,
    };
    match ordering {
        Some(ordering) => op.accepts(ordering),
        None => op == Op::Ne,
    }
}

impl Expr {
    /// Whether the record matches (a missing column is null).
    pub(super) fn matches(&self, record: &Value) -> bool {
        match self {
            Expr::Or(a, b) => a.matches(record) || b.matches(record),
            Expr::And(a, b) => a.matches(record) && b.matches(record),
            Expr::Not(a) => !a.matches(record),
            Expr::Compare(column, op, literal) => compare(record.get(column), *op, literal),
            Expr::Call(func, column, text) => {
                let Some(value) = record.get(column).and_then(Value::as_str) else {
                    return false;
                };
                let (value, text) = (value.to_lowercase(), text.to_lowercase());
                match func {
                    Func::Contains => value.contains(&text),
                    Func::StartsWith => value.starts_with(&text),
                    Func::EndsWith => value.ends_with(&text),
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(filter: &str, record: &Value) -> bool {
        parse(filter).unwrap().matches(record)
    }

    #[test]
    fn when_filter_mixes_functions_and_logic_should_match() {
        let r =
            json!({"websiteurl": "https://Contoso.com", "emailaddress1": "a@contoso.com", "n": 3});
        assert!(check(
            "contains(websiteurl,'contoso.com') or contains(emailaddress1,'@x.com')",
            &r
        ));
        assert!(check(
            "(n eq 3 or n eq 4) and not (emailaddress1 eq null)",
            &r
        ));
        assert!(!check("n gt 3 and websiteurl ne null", &r));
        assert!(check("missing eq null and n ge 3", &r));
    }

    #[test]
    fn when_quotes_are_doubled_should_unescape() {
        let r = json!({"companyname": "O'Brien Ltd"});
        assert!(check("companyname eq 'o''brien ltd'", &r));
    }

    #[test]
    fn when_input_is_garbage_should_fail() {
        for bad in [
            "",
            "a",
            "a eq",
            "a eq 'x",
            "(a eq 'x'",
            "a eq 'x')",
            "a equals 'x'",
            "contains(a, 1)",
            "'x' eq a",
            "a eq 'x' and",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
