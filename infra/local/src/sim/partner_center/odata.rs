//! A small OData v4 subset: `$filter`, `$orderby`, `$select` over raw referral JSON.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::state::parse_time;
use crate::sim::comparison::Op;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Case-sensitive string.
    Text,
    /// Enum member as a string; compared case-insensitively.
    Enum,
    DateTime,
    Number,
    Bool,
}

impl Kind {
    fn edm(self) -> &'static str {
        match self {
            Kind::Text | Kind::Enum => "Edm.String",
            Kind::DateTime => "Edm.DateTimeOffset",
            Kind::Number => "Edm.Decimal",
            Kind::Bool => "Edm.Boolean",
        }
    }
}

#[derive(Debug)]
pub(super) struct Field {
    name: &'static str,
    path: &'static [&'static str],
    kind: Kind,
}

const fn field(name: &'static str, path: &'static [&'static str], kind: Kind) -> Field {
    Field { name, path, kind }
}

/// Properties that can be filtered and ordered on.
static FIELDS: &[Field] = &[
    field("id", &["id"], Kind::Text),
    field("engagementId", &["engagementId"], Kind::Text),
    field("name", &["name"], Kind::Text),
    field("organizationId", &["organizationId"], Kind::Text),
    field("organizationName", &["organizationName"], Kind::Text),
    field("externalReferenceId", &["externalReferenceId"], Kind::Text),
    field("direction", &["direction"], Kind::Enum),
    field("status", &["status"], Kind::Enum),
    field("substatus", &["substatus"], Kind::Enum),
    field("type", &["type"], Kind::Enum),
    field("qualification", &["qualification"], Kind::Enum),
    field("quality", &["quality"], Kind::Enum),
    field("isSpam", &["isSpam"], Kind::Bool),
    field("createdDateTime", &["createdDateTime"], Kind::DateTime),
    field("updatedDateTime", &["updatedDateTime"], Kind::DateTime),
    field(
        "expirationDateTime",
        &["expirationDateTime"],
        Kind::DateTime,
    ),
    field("acceptedDateTime", &["acceptedDateTime"], Kind::DateTime),
    field("closedDateTime", &["closedDateTime"], Kind::DateTime),
    field(
        "customerProfile/name",
        &["customerProfile", "name"],
        Kind::Text,
    ),
    field(
        "customerProfile/size",
        &["customerProfile", "size"],
        Kind::Enum,
    ),
    field(
        "customerProfile/address/country",
        &["customerProfile", "address", "country"],
        Kind::Text,
    ),
    field(
        "customerProfile/address/city",
        &["customerProfile", "address", "city"],
        Kind::Text,
    ),
    field("details/dealValue", &["details", "dealValue"], Kind::Number),
    field("details/currency", &["details", "currency"], Kind::Text),
];

/// The properties of `referral` that `$filter` and `$orderby` can name, in an object of their
/// own (the rest of the referral is left out).
pub(super) fn filterable(referral: &Value) -> Value {
    let mut out = Value::Object(Map::new());
    for field in FIELDS {
        let Some(value) = value_at(referral, field.path) else {
            continue;
        };
        let mut at = &mut out;
        for key in &field.path[..field.path.len() - 1] {
            let Value::Object(object) = at else {
                break;
            };
            at = object
                .entry((*key).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        if let (Value::Object(object), Some(last)) = (at, field.path.last()) {
            object.insert((*last).to_owned(), value.clone());
        }
    }
    out
}

fn lookup_field(name: &str) -> Result<&'static Field, String> {
    FIELDS
        .iter()
        .find(|f| f.name == name)
        .or_else(|| FIELDS.iter().find(|f| f.name.eq_ignore_ascii_case(name)))
        .ok_or_else(|| format!("Could not find a property named '{name}' on type 'Referral'."))
}

fn value_at<'a>(referral: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(referral, |v, key| v.get(*key))
        .filter(|v| !v.is_null())
}

/// Whether `a op b` holds, with OData null semantics: null equals only null; ordering against
/// null is false.
fn holds<T: ?Sized>(
    op: Op,
    a: Option<&T>,
    b: Option<&T>,
    cmp: impl Fn(&T, &T) -> Ordering,
) -> bool {
    match (op, a, b) {
        (Op::Eq, None, None) => true,
        (Op::Ne, None, None) => false,
        (Op::Eq, _, _) if a.is_none() || b.is_none() => false,
        (Op::Ne, _, _) if a.is_none() || b.is_none() => true,
        (_, Some(a), Some(b)) => op.accepts(cmp(a, b)),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Literal {
    Null,
    Text(String),
    DateTime(DateTime<Utc>),
    Number(f64),
    Bool(bool),
}

impl Literal {
    fn edm(&self) -> &'static str {
        match self {
            Literal::Null => "null",
            Literal::Text(_) => "Edm.String",
            Literal::DateTime(_) => "Edm.DateTimeOffset",
            Literal::Number(_) => "Edm.Decimal",
            Literal::Bool(_) => "Edm.Boolean",
        }
    }

    fn fits(&self, kind: Kind) -> bool {
        matches!(
            (kind, self),
            (_, Literal::Null)
                | (Kind::Text | Kind::Enum, Literal::Text(_))
                | (Kind::DateTime, Literal::DateTime(_))
                | (Kind::Number, Literal::Number(_))
                | (Kind::Bool, Literal::Bool(_))
        )
    }
}

/// A parsed `$filter`.
#[derive(Debug)]
pub(super) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        field: &'static Field,
        op: Op,
        literal: Literal,
    },
}

impl Expr {
    /// Whether `referral` satisfies the filter (missing or mistyped fields count as null).
    pub(super) fn matches(&self, referral: &Value) -> bool {
        match self {
            Expr::And(a, b) => a.matches(referral) && b.matches(referral),
            Expr::Or(a, b) => a.matches(referral) || b.matches(referral),
            Expr::Not(e) => !e.matches(referral),
            Expr::Compare { field, op, literal } => {
                let value = value_at(referral, field.path);
                match field.kind {
                    Kind::Text => {
                        let b = match literal {
                            Literal::Text(s) => Some(s.as_str()),
                            _ => None,
                        };
                        holds(*op, value.and_then(Value::as_str), b, |a: &str, b: &str| {
                            a.cmp(b)
                        })
                    }
                    Kind::Enum => {
                        let b = match literal {
                            Literal::Text(s) => Some(s.to_lowercase()),
                            _ => None,
                        };
                        let a = value.and_then(Value::as_str).map(str::to_lowercase);
                        holds(*op, a.as_deref(), b.as_deref(), |a: &str, b: &str| a.cmp(b))
                    }
                    Kind::DateTime => {
                        let b = match literal {
                            Literal::DateTime(t) => Some(*t),
                            _ => None,
                        };
                        let a = value.and_then(Value::as_str).and_then(parse_time);
                        holds(*op, a.as_ref(), b.as_ref(), Ord::cmp)
                    }
                    Kind::Number => {
                        let b = match literal {
                            Literal::Number(n) => Some(*n),
                            _ => None,
                        };
                        holds(
                            *op,
                            value.and_then(number).as_ref(),
                            b.as_ref(),
                            |a: &f64, b: &f64| a.total_cmp(b),
                        )
                    }
                    Kind::Bool => {
                        let b = match literal {
                            Literal::Bool(v) => Some(*v),
                            _ => None,
                        };
                        holds(
                            *op,
                            value.and_then(Value::as_bool).as_ref(),
                            b.as_ref(),
                            Ord::cmp,
                        )
                    }
                }
            }
        }
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Text(String),
    Word(String),
}

fn lex(input: &str) -> Result<Vec<(usize, Token)>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push((at, Token::Open));
            }
            ')' => {
                chars.next();
                tokens.push((at, Token::Close));
            }
            '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(format!("unterminated string literal at position {at}"));
                        }
                        Some((_, '\'')) => {
                            if chars.peek().is_some_and(|&(_, c)| c == '\'') {
                                chars.next();
                                text.push('\'');
                            } else {
                                break;
                            }
                        }
                        Some((_, c)) => text.push(c),
                    }
                }
                tokens.push((at, Token::Text(text)));
            }
            _ => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '\'') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push((at, Token::Word(word)));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.next).map_or(self.len, |(at, _)| *at)
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).map(|(_, t)| t.clone());
        self.next += 1;
        token
    }

    fn at_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == word)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.at_word("or") {
            self.bump();
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.at_word("and") {
            self.bump();
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.at_word("not") {
            self.bump();
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let at = self.position();
        match self.bump() {
            Some(Token::Open) => {
                let inner = self.or()?;
                let close = self.position();
                match self.bump() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err(format!("')' expected at position {close}")),
                }
            }
            Some(Token::Word(name)) => {
                let field = lookup_field(&name)?;
                let op_at = self.position();
                let op = match self.bump() {
                    Some(Token::Word(w)) => Op::parse(&w),
                    _ => None,
                }
                .ok_or_else(|| {
                    format!(
                        "comparison operator (eq, ne, gt, ge, lt, le) expected at position {op_at}"
                    )
                })?;
                let literal_at = self.position();
                let literal = match self.bump() {
                    Some(Token::Text(s)) => Literal::Text(s),
                    Some(Token::Word(w)) => literal(&w).ok_or_else(|| {
                        format!("unrecognized literal '{w}' at position {literal_at}")
                    })?,
                    _ => return Err(format!("literal expected at position {literal_at}")),
                };
                if !literal.fits(field.kind) {
                    return Err(format!(
                        "A binary operator with incompatible types was detected. Found operand types '{}' and '{}' for property '{}'.",
                        field.kind.edm(),
                        literal.edm(),
                        field.name
                    ));
                }
                Ok(Expr::Compare { field, op, literal })
            }
            Some(Token::Close) => Err(format!("unexpected ')' at position {at}")),
            Some(Token::Text(_)) => Err(format!(
                "property name expected at position {at}, found a string literal"
            )),
            None => Err(format!("expression expected at position {at}")),
        }
    }
}

fn literal(word: &str) -> Option<Literal> {
    match word {
        "null" => return Some(Literal::Null),
        "true" => return Some(Literal::Bool(true)),
        "false" => return Some(Literal::Bool(false)),
        _ => {}
    }
    let first = word.chars().next()?;
    if !(first.is_ascii_digit() || first == '-' || first == '+') {
        return None;
    }
    if word.contains('T') && word.contains(':') {
        return DateTime::parse_from_rfc3339(word)
            .ok()
            .map(|t| Literal::DateTime(t.with_timezone(&Utc)));
    }
    word.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .map(Literal::Number)
}

/// Parses a `$filter` expression.
pub(super) fn parse_filter(input: &str) -> Result<Expr, String> {
    let tokens = lex(input)?;
    if tokens.is_empty() {
        return Err("the expression is empty".to_owned());
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        len: input.len(),
    };
    let expr = parser.or()?;
    if parser.peek().is_some() {
        return Err(format!(
            "unexpected token at position {}",
            parser.position()
        ));
    }
    Ok(expr)
}

/// One `$orderby` key.
#[derive(Debug)]
pub(super) struct OrderKey {
    field: &'static Field,
    descending: bool,
}

/// Parses `$orderby` (`field [asc|desc], ...`); none means storage order.
pub(super) fn parse_orderby(input: Option<&str>) -> Result<Vec<OrderKey>, String> {
    let Some(input) = input else {
        return Ok(Vec::new());
    };
    input
        .split(',')
        .map(|clause| {
            let mut words = clause.split_whitespace();
            let name = words
                .next()
                .ok_or_else(|| format!("Invalid $orderby '{input}': empty clause."))?;
            let field = lookup_field(name)?;
            let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(format!(
                        "Invalid $orderby direction '{other}': asc or desc expected."
                    ));
                }
            };
            if words.next().is_some() {
                return Err(format!("Invalid $orderby clause '{}'.", clause.trim()));
            }
            Ok(OrderKey { field, descending })
        })
        .collect()
}

#[derive(Debug, PartialEq)]
enum SortKey {
    Null,
    Text(String),
    Time(DateTime<Utc>),
    Number(f64),
    Bool(bool),
}

fn sort_key(referral: &Value, field: &Field) -> SortKey {
    let value = value_at(referral, field.path);
    let key = match field.kind {
        Kind::Text => value
            .and_then(Value::as_str)
            .map(|s| SortKey::Text(s.to_owned())),
        Kind::Enum => value
            .and_then(Value::as_str)
            .map(|s| SortKey::Text(s.to_lowercase())),
        Kind::DateTime => value
            .and_then(Value::as_str)
            .and_then(parse_time)
            .map(SortKey::Time),
        Kind::Number => value.and_then(number).map(SortKey::Number),
        Kind::Bool => value.and_then(Value::as_bool).map(SortKey::Bool),
    };
    key.unwrap_or(SortKey::Null)
}

/// Nulls first, then values; values of different kinds never meet (one field, one kind).
fn compare_keys(a: &SortKey, b: &SortKey) -> Ordering {
    match (a, b) {
        (SortKey::Null, SortKey::Null) => Ordering::Equal,
        (SortKey::Null, _) => Ordering::Less,
        (_, SortKey::Null) => Ordering::Greater,
        (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
        (SortKey::Time(a), SortKey::Time(b)) => a.cmp(b),
        (SortKey::Number(a), SortKey::Number(b)) => a.total_cmp(b),
        (SortKey::Bool(a), SortKey::Bool(b)) => a.cmp(b),
        _ => Ordering::Equal,
    }
}

/// Listings at least this long read their referrals on every core.
const READ_IN_PARALLEL_FROM: usize = 4096;

/// The positions of the `referrals` that pass `filter`, in `order` (ties by id, then position).
/// Each referral is read (`read`: its listing properties) once and dropped, so only its sort
/// keys and position are held, not its id: the referrals whose keys tie (few, in a listing
/// ordered by time) are read once more for theirs. A long listing is read on every core, in one
/// slice each.
pub(super) fn ordered_positions<T: Sync>(
    referrals: &[T],
    read: impl Fn(&T) -> Value + Sync,
    filter: Option<&Expr>,
    order: &[OrderKey],
) -> Vec<usize> {
    let threads = if referrals.len() >= READ_IN_PARALLEL_FROM {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        1
    };
    ordered_positions_on(threads, referrals, read, filter, order)
}

fn ordered_positions_on<T: Sync>(
    threads: usize,
    referrals: &[T],
    read: impl Fn(&T) -> Value + Sync,
    filter: Option<&Expr>,
    order: &[OrderKey],
) -> Vec<usize> {
    // The positions that match, and their keys: `order.len()` of them to a position.
    let keyed_slice = |first: usize, slice: &[T]| -> (Vec<usize>, Vec<SortKey>) {
        let mut positions = Vec::new();
        let mut keys = Vec::new();
        for (n, stored) in slice.iter().enumerate() {
            let referral = read(stored);
            if filter.is_some_and(|f| !f.matches(&referral)) {
                continue;
            }
            positions.push(first + n);
            keys.extend(order.iter().map(|o| sort_key(&referral, o.field)));
        }
        (positions, keys)
    };
    let slice_len = referrals.len().div_ceil(threads.max(1)).max(1);
    let (positions, keys) = if threads > 1 {
        std::thread::scope(|scope| {
            let readers: Vec<_> = referrals
                .chunks(slice_len)
                .enumerate()
                .map(|(n, slice)| scope.spawn(move || keyed_slice(n * slice_len, slice)))
                .collect();
            let mut all = (Vec::new(), Vec::new());
            for reader in readers {
                let (positions, keys) = reader
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                all.0.extend(positions);
                all.1.extend(keys);
            }
            all
        })
    } else {
        keyed_slice(0, referrals)
    };
    if order.is_empty() {
        return positions;
    }
    // Entries index `positions`, which ascend: ordering entries orders positions.
    let keys_of = |entry: usize| &keys[entry * order.len()..(entry + 1) * order.len()];
    let compare = |a: usize, b: usize| {
        order
            .iter()
            .zip(keys_of(a).iter().zip(keys_of(b)))
            .map(|(key, (a, b))| {
                let ordering = compare_keys(a, b);
                if key.descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            })
            .find(|ordering| ordering.is_ne())
            .unwrap_or(Ordering::Equal)
    };
    let mut entries: Vec<usize> = (0..positions.len()).collect();
    entries.sort_by(|&a, &b| compare(a, b));
    let mut start = 0;
    while start < entries.len() {
        let first = entries[start];
        let tied = entries[start..]
            .iter()
            .take_while(|&&entry| compare(first, entry).is_eq())
            .count();
        if tied > 1 {
            let run = &mut entries[start..start + tied];
            let mut by_id: Vec<(Option<String>, usize)> = run
                .iter()
                .map(|&entry| {
                    let referral = read(&referrals[positions[entry]]);
                    let id = referral
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    (id, entry)
                })
                .collect();
            by_id.sort_unstable();
            for (slot, (_, entry)) in run.iter_mut().zip(by_id) {
                *slot = entry;
            }
        }
        start += tied;
    }
    entries.into_iter().map(|entry| positions[entry]).collect()
}

/// Parses `$select` into top-level property names (`*` or none = everything).
pub(super) fn parse_select(input: Option<&str>) -> Result<Option<Vec<String>>, String> {
    let Some(input) = input else {
        return Ok(None);
    };
    let names: Vec<String> = input.split(',').map(|s| s.trim().to_owned()).collect();
    if names.iter().any(|n| n == "*") {
        return Ok(None);
    }
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(format!("Invalid $select property '{bad}'."));
    }
    Ok(Some(names))
}

/// The referral reduced to the selected top-level properties.
pub(super) fn project(referral: &Value, select: Option<&[String]>) -> Value {
    match (select, referral) {
        (Some(names), Value::Object(object)) => {
            let kept: Map<String, Value> = object
                .iter()
                .filter(|(k, _)| names.iter().any(|n| n == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(kept)
        }
        _ => referral.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A seeded referral's listing properties, read from its generated parts alone, are those
    /// of its whole document (every field a listing names, every shape the seed generates).
    #[test]
    fn a_seeded_referrals_listing_properties_are_those_of_its_whole_document() {
        let points = (1..=3).flat_map(|seed| {
            crate::sim::seed::seeded_referrals(400, seed).map(|seeded| seeded.point)
        });
        for point in points {
            let whole = point.referral();
            assert_eq!(filterable(&point.listed()), filterable(&whole), "{whole}");
        }
    }

    fn check(filter: &str, referral: &Value) -> bool {
        parse_filter(filter).unwrap().matches(referral)
    }

    #[test]
    fn when_precedence_mixes_and_or_not_should_bind_and_tighter() {
        let r = json!({"status": "New", "direction": "Outgoing", "type": "Shared"});
        assert!(check(
            "status eq 'Closed' or status eq 'New' and type eq 'Shared'",
            &r
        ));
        assert!(!check(
            "(status eq 'Closed' or status eq 'New') and direction eq 'Incoming'",
            &r
        ));
        assert!(check("not (direction eq 'Incoming')", &r));
        assert!(check(
            "not direction eq 'Incoming' and type ne 'Independent'",
            &r
        ));
    }

    #[test]
    fn when_quotes_are_doubled_should_unescape() {
        let r = json!({"name": "O'Brien - Teams"});
        assert!(check("name eq 'O''Brien - Teams'", &r));
    }

    #[test]
    fn when_datetimes_differ_in_precision_should_compare_instants() {
        let r = json!({"updatedDateTime": "2026-10-29T08:01:12.1234567Z"});
        assert!(check("updatedDateTime ge 2026-10-29T08:01:12.123Z", &r));
        assert!(!check("updatedDateTime gt 2026-10-29T10:01:13+02:00", &r));
        assert!(check("updatedDateTime lt 2026-10-29T08:01:13Z", &r));
    }

    #[test]
    fn when_field_missing_should_act_as_null() {
        let r = json!({"id": "1"});
        assert!(check("status eq null", &r));
        assert!(check("status ne 'New'", &r));
        assert!(!check("updatedDateTime ge 2020-01-01T00:00:00Z", &r));
    }

    #[test]
    fn when_input_is_garbage_should_fail() {
        for bad in [
            "",
            "status",
            "status eq",
            "status eq 'New",
            "(status eq 'New'",
            "status eq 'New')",
            "status equals 'New'",
            "nope eq 'x'",
            "updatedDateTime ge '2026-01-01'",
            "status eq 2026-01-01T00:00:00Z",
            "status eq 'New' and",
            "'New' eq status",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn when_ordering_should_put_nulls_first_and_break_ties_by_id() {
        let a = json!({"id": "b", "createdDateTime": "2026-01-02T00:00:00Z"});
        let b = json!({"id": "a", "createdDateTime": "2026-01-02T00:00:00.0000000Z"});
        let c = json!({"id": "c"});
        let rows = [a, b, c];
        let asc = parse_orderby(Some("createdDateTime asc")).unwrap();
        assert_eq!(
            ordered_positions(&rows, Value::clone, None, &asc),
            vec![2, 1, 0]
        );
        let desc = parse_orderby(Some("createdDateTime desc")).unwrap();
        assert_eq!(
            ordered_positions(&rows, Value::clone, None, &desc),
            vec![1, 0, 2]
        );
        let only_b = parse_filter("id eq 'b'").unwrap();
        assert_eq!(
            ordered_positions(&rows, Value::clone, Some(&only_b), &asc),
            vec![0]
        );
        assert!(parse_orderby(Some("createdDateTime sideways")).is_err());
        assert!(parse_orderby(Some("bogus asc")).is_err());
    }

    /// Listing rows whose ids, times and statuses repeat, some without an id or a deal value.
    fn rows_with_ties() -> Vec<Value> {
        let mut rng = fastrand::Rng::with_seed(5);
        let statuses = ["New", "Active", "Closed"];
        (0..5_000)
            .map(|n| {
                json!({
                    "id": if n % 13 == 0 { Value::Null } else { json!(format!("r{}", rng.u32(0..700))) },
                    "status": statuses[rng.usize(0..statuses.len())],
                    "updatedDateTime": format!("2026-11-{:02}T08:00:00Z", rng.u8(1..29)),
                    "details": {"dealValue": if n % 9 == 0 { Value::Null } else { json!(rng.u32(..)) }},
                })
            })
            .collect()
    }

    /// A listing is ordered as sorting whole rows by (keys, id, position) would — ties broken by
    /// id, then position — however many threads read it.
    #[test]
    fn a_listing_orders_ties_by_id_then_position_on_any_number_of_threads() {
        let rows = rows_with_ties();
        let filter = parse_filter("status ne 'Closed'").unwrap();
        for orderby in [
            "updatedDateTime asc",
            "status desc",
            "details/dealValue desc, updatedDateTime asc",
        ] {
            let order = parse_orderby(Some(orderby)).unwrap();
            let mut whole: Vec<(Vec<SortKey>, Option<String>, usize)> = rows
                .iter()
                .enumerate()
                .filter(|(_, row)| filter.matches(row))
                .map(|(n, row)| {
                    let keys = order.iter().map(|o| sort_key(row, o.field)).collect();
                    (keys, row["id"].as_str().map(str::to_owned), n)
                })
                .collect();
            whole.sort_by(|a, b| {
                let keys = order.iter().enumerate().map(|(n, key)| {
                    let ordering = compare_keys(&a.0[n], &b.0[n]);
                    if key.descending {
                        ordering.reverse()
                    } else {
                        ordering
                    }
                });
                keys.fold(Ordering::Equal, Ordering::then)
                    .then_with(|| a.1.cmp(&b.1))
                    .then(a.2.cmp(&b.2))
            });
            let expected: Vec<usize> = whole.into_iter().map(|(_, _, n)| n).collect();
            assert!(expected.len() > 2_000 && expected.len() < 5_000);
            for threads in [1, 2, 3, 7] {
                assert_eq!(
                    ordered_positions_on(threads, &rows, Value::clone, Some(&filter), &order),
                    expected,
                    "{orderby} on {threads} threads"
                );
            }
        }
        assert_eq!(
            ordered_positions(&rows, Value::clone, None, &[]),
            (0..rows.len()).collect::<Vec<_>>(),
            "no order: storage order"
        );
    }
}
