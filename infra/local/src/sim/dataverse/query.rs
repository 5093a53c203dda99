//! Collection queries: `$filter`, `$select`, `$orderby`, `$top`, and paging by
//! `Prefer: odata.maxpagesize` with `$skiptoken` nextLinks.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::address::{self, query_pairs};
use super::api::{ApiRequest, DvError, SimBody, SimResponse, max_page_size};
use super::state::Inner;
use super::{API_PREFIX, CODE_BAD_SEGMENT, filter};

/// The `$select` of a single-record GET (the only query option it takes).
pub(super) fn select_from(query: Option<&str>) -> Result<Option<Vec<String>>, DvError> {
    let mut select = None;
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "$select" => select = Some(value),
            k if k.starts_with('$') => {
                return Err(DvError::bad_request(
                    CODE_BAD_SEGMENT,
                    format!("The query parameter {k} is not supported"),
                ));
            }
            _ => {}
        }
    }
    select.map(|s| parse_select(&s)).transpose()
}

pub(super) fn parse_select(input: &str) -> Result<Vec<String>, DvError> {
    let names: Vec<String> = input.split(',').map(|s| s.trim().to_owned()).collect();
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(DvError::bad_request(
            CODE_BAD_SEGMENT,
            format!("Could not find a property named '{bad}'."),
        ));
    }
    Ok(names)
}

/// The record reduced to the selected columns (the primary key and etag always stay).
pub(super) fn project(record: &Value, select: Option<&[String]>, pk: &str) -> Value {
    match (select, record) {
        (Some(names), Value::Object(object)) => Value::Object(
            object
                .iter()
                .filter(|(k, _)| {
                    // A selected column keeps its annotations (`col@OData...FormattedValue`).
                    let column = k.split('@').next().unwrap_or(k);
                    *k == "@odata.etag" || *k == pk || names.iter().any(|n| n == column)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => record.clone(),
    }
}

/// Parses `$orderby` (`col [asc|desc], ...`) into (column, descending) pairs.
fn parse_orderby(input: &str) -> Result<Vec<(String, bool)>, DvError> {
    input
        .split(',')
        .map(|item| {
            let mut words = item.split_whitespace();
            let column = words.next().unwrap_or_default();
            let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(DvError::bad_request(
                        CODE_BAD_SEGMENT,
                        format!("Invalid $orderby direction '{other}'."),
                    ));
                }
            };
            if column.is_empty()
                || words.next().is_some()
                || !column
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(DvError::bad_request(
                    CODE_BAD_SEGMENT,
                    format!("Invalid $orderby item '{}'.", item.trim()),
                ));
            }
            Ok((column.to_owned(), descending))
        })
        .collect()
}

/// Nulls first; numbers by value; strings case-insensitively; other kinds by their JSON text.
fn compare_values(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let a = a.filter(|v| !v.is_null());
    let b = b.filter(|v| !v.is_null());
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(Value::String(x)), Some(Value::String(y))) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Some(x), Some(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => x.to_string().cmp(&y.to_string()),
        },
    }
}

/// `GET {set}`: `$filter`, `$select`, `$orderby`, `$top`, paged by `Prefer: odata.maxpagesize`
/// with a `$skiptoken` nextLink (`N`, or `N!…` where change tracking keeps its start after `!`).
pub(super) fn query(
    inner: &Inner,
    set: &str,
    pk: &str,
    request: &ApiRequest,
    base: &str,
) -> Result<SimResponse, DvError> {
    let mut filter = None;
    let mut select = None;
    let mut top = None;
    let mut order = Vec::new();
    let mut skip = 0usize;
    let mut kept_query = Vec::new();
    let raw_query = request.query.as_deref().unwrap_or_default();
    for raw in raw_query.split('&').filter(|p| !p.is_empty()) {
        if !address::percent_decode(raw, true).starts_with("$skiptoken=") {
            kept_query.push(raw);
        }
    }
    for (key, value) in query_pairs(request.query.as_deref()) {
        match key.as_str() {
            "$filter" => {
                filter = Some(filter::parse(&value).map_err(|e| {
                    DvError::bad_request(
                        CODE_BAD_SEGMENT,
                        format!("Invalid $filter '{value}': {e}"),
                    )
                })?);
            }
            "$select" => select = Some(parse_select(&value)?),
            "$orderby" => order = parse_orderby(&value)?,
            "$top" => {
                top = Some(value.trim().parse::<usize>().map_err(|_| {
                    DvError::bad_request(
                        CODE_BAD_SEGMENT,
                        format!("Invalid value '{value}' for $top query option."),
                    )
                })?);
            }
            "$skiptoken" => {
                let position = value.split('!').next().unwrap_or_default();
                skip = position.trim().parse::<usize>().map_err(|_| {
                    DvError::bad_request(CODE_BAD_SEGMENT, "The $skiptoken is not valid.")
                })?;
            }
            k if k.starts_with('$') => {
                return Err(DvError::bad_request(
                    CODE_BAD_SEGMENT,
                    format!("The query parameter {k} is not supported"),
                ));
            }
            _ => {}
        }
    }
    let rows = inner.store.get(set).map(Vec::as_slice).unwrap_or_default();
    let mut matched: Vec<Value> = rows
        .iter()
        .map(|r| r.representation(pk))
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
        .collect();
    if !order.is_empty() {
        matched.sort_by(|a, b| {
            order
                .iter()
                .map(|(column, descending)| {
                    let o = compare_values(a.get(column), b.get(column));
                    if *descending { o.reverse() } else { o }
                })
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    if let Some(top) = top {
        matched.truncate(top);
    }
    let page_size = max_page_size(&request.headers);
    let end = page_size.map_or(matched.len(), |n| skip.saturating_add(n).min(matched.len()));
    let value: Vec<Value> = matched
        .get(skip.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|r| project(r, select.as_deref(), pk))
        .collect();
    let context = match &select {
        Some(names) => format!("{base}{API_PREFIX}$metadata#{set}({})", names.join(",")),
        None => format!("{base}{API_PREFIX}$metadata#{set}"),
    };
    let mut body = json!({"@odata.context": context, "value": value});
    let mut headers = Vec::new();
    if let Some(n) = page_size {
        headers.push((
            "Preference-Applied".to_owned(),
            format!("odata.maxpagesize={n}"),
        ));
        if end < matched.len() {
            kept_query.push("");
            let query = kept_query.join("&");
            body["@odata.nextLink"] =
                json!(format!("{base}{API_PREFIX}{set}?{query}$skiptoken={end}"));
        }
    }
    Ok(SimResponse {
        status: StatusCode::OK,
        headers,
        body: SimBody::Json(body),
    })
}
