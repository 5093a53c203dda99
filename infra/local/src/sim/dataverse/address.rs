//! How Web API URLs name things: `leads(<guid>)` and `leads(key='value')` record addresses,
//! percent-decoding, query-string pairs.

use super::CODE_BAD_SEGMENT;
use super::api::DvError;

/// Decodes `%XX` escapes (and `+` as space when `plus_as_space`).
pub(super) fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_as_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a URL names one record.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Address {
    Id(String),
    Key(Vec<(String, String)>),
}

/// Splits `leads(...)` into the set and the record address; `leads` has none.
pub(super) fn parse_resource(path: &str) -> Result<(String, Option<Address>), DvError> {
    let Some(open) = path.find('(') else {
        return Ok((path.to_owned(), None));
    };
    let set = &path[..open];
    let Some(inside) = path[open + 1..].strip_suffix(')') else {
        return Err(DvError::bad_request(
            CODE_BAD_SEGMENT,
            format!("Resource not found for the segment '{path}'."),
        ));
    };
    if let Ok(id) = uuid::Uuid::parse_str(inside.trim()) {
        return Ok((set.to_owned(), Some(Address::Id(id.to_string()))));
    }
    let pairs = parse_key_pairs(inside).map_err(|e| {
        DvError::bad_request(
            "",
            format!("The key in the request URI is not valid for resource '{set}': {e}"),
        )
    })?;
    Ok((set.to_owned(), Some(Address::Key(pairs))))
}

/// `k1='a',k2='o''b'` (numbers unquoted) → pairs.
fn parse_key_pairs(input: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let name = name.trim().to_owned();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid key name '{name}'"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        value.push('\'');
                    }
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err("unterminated string".into()),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
            if value.is_empty() {
                return Err(format!("no value for key '{name}'"));
            }
        }
        pairs.push((name, value));
        match chars.next() {
            None => return Ok(pairs),
            Some(',') => {}
            Some(c) => return Err(format!("unexpected '{c}'")),
        }
    }
}

/// The address as error messages name it: `Id = <guid>` or `key = value, ...`.
pub(super) fn describe(address: &Address) -> String {
    match address {
        Address::Id(id) => format!("Id = {id}"),
        Address::Key(pairs) => pairs
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The `key=value` pairs of a query string, percent-decoded.
pub(super) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_key_has_quotes_should_unescape_and_split_pairs() {
        assert_eq!(
            parse_key_pairs("hnt_hunterkey='o''brien.com'").unwrap(),
            vec![("hnt_hunterkey".to_owned(), "o'brien.com".to_owned())]
        );
        assert_eq!(
            parse_key_pairs("k1='a,b',k2=7").unwrap(),
            vec![
                ("k1".to_owned(), "a,b".to_owned()),
                ("k2".to_owned(), "7".to_owned())
            ]
        );
        assert!(parse_key_pairs("k1='a").is_err());
        assert!(parse_key_pairs("='a'").is_err());
        let (set, address) = parse_resource("leads(0000000A-0000-0000-0000-000000000001)").unwrap();
        assert_eq!(set, "leads");
        assert_eq!(
            address,
            Some(Address::Id("0000000a-0000-0000-0000-000000000001".into()))
        );
    }
}
