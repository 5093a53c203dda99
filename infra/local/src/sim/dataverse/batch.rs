//! `POST /api/data/v9.2/$batch`: requests and atomic change sets in one `multipart/mixed` body,
//! with a small, strict parser and the response writer.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::http::StatusCode;
use hunter_core::dynamics::batch::Headers;

use super::address::percent_decode;
use super::api::{ApiRequest, DvError, JSON_CONTENT_TYPE, SimBody, SimResponse, prefers};
use super::{API_PREFIX, DataverseSim};

/// Most requests in one `$batch`.
const MAX_BATCH_REQUESTS: usize = 1000;

/// One top-level part: a request or a change set.
#[derive(Debug)]
enum Item {
    Single(ApiRequest),
    ChangeSet(Vec<ApiRequest>),
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::Single(_) => 1,
            Item::ChangeSet(requests) => requests.len(),
        }
    }
}

/// The `boundary` parameter of a `multipart/mixed` content type.
fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let media = params.next()?.trim();
    if !media.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .filter(|b| !b.is_empty())
}

/// The parts between `--boundary` lines (up to `--boundary--`), CRLF or LF line ends.
fn split(text: &str, boundary: &str) -> Result<Vec<String>, String> {
    let open = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        let trimmed = line.trim_end();
        if trimmed == close {
            if let Some(lines) = current.take() {
                parts.push(lines.join("\n"));
            }
            if parts.is_empty() {
                return Err("no parts".into());
            }
            return Ok(parts);
        }
        if trimmed == open {
            if let Some(lines) = current.take() {
                parts.push(lines.join("\n"));
            }
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    Err(format!("the closing delimiter '{close}' is missing"))
}

/// Splits a header block from the content at the first empty line.
fn headers_and_content(part: &str) -> Result<(Headers, &str), String> {
    let (head, content) = match part.find("\n\n") {
        Some(at) => (&part[..at], &part[at + 2..]),
        None if part.trim().is_empty() => return Err("empty part".into()),
        None => (part, ""),
    };
    let mut headers = Vec::new();
    for line in head.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line '{line}'"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok((Headers(headers), content))
}

fn request(part: &str) -> Result<ApiRequest, String> {
    let (part_headers, content) = headers_and_content(part)?;
    let kind = part_headers.get("content-type").unwrap_or_default();
    if !kind.to_ascii_lowercase().starts_with("application/http") {
        return Err(format!(
            "a part must have Content-Type application/http, not '{kind}'"
        ));
    }
    let content = content.trim_start_matches('\n');
    let (request_line, rest) = content.split_once('\n').unwrap_or((content, ""));
    let mut words = request_line.split_whitespace();
    let (Some(method), Some(url)) = (words.next(), words.next()) else {
        return Err(format!("malformed request line '{request_line}'"));
    };
    let (headers, body) = if rest.trim().is_empty() {
        (Headers::default(), "")
    } else if let Some(body) = rest.strip_prefix('\n') {
        (Headers::default(), body)
    } else {
        headers_and_content(rest)?
    };
    let url = url
        .split_once(API_PREFIX)
        .map_or(url, |(_, p)| p)
        .trim_start_matches('/');
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (url, None),
    };
    Ok(ApiRequest {
        method: method.to_ascii_uppercase(),
        path: percent_decode(path, false),
        query,
        headers,
        body: body.trim().as_bytes().to_vec(),
        content_id: part_headers.get("content-id").map(str::to_owned),
    })
}

/// Parses a `$batch` body into requests and change sets (no nesting beyond one change set).
fn parse_batch(text: &str, boundary: &str) -> Result<Vec<Item>, String> {
    let text = text.replace("\r\n", "\n");
    let mut items = Vec::new();
    for part in split(&text, boundary)? {
        let (headers, content) = headers_and_content(&part)?;
        let kind = headers.get("content-type").unwrap_or_default();
        if let Some(inner) = boundary_of(kind) {
            let mut requests = Vec::new();
            for inner_part in split(content, &inner)? {
                let request = request(&inner_part)?;
                if request.method == "GET" {
                    return Err("a change set cannot hold a GET".into());
                }
                requests.push(request);
            }
            items.push(Item::ChangeSet(requests));
        } else {
            items.push(Item::Single(request(&part)?));
        }
    }
    Ok(items)
}

fn boundary_of(kind: &str) -> Option<String> {
    boundary(kind)
}

/// Writes a `multipart/mixed` batch response.
#[derive(Debug)]
struct Writer {
    boundary: String,
    text: String,
}

fn write_response(text: &mut String, response: &SimResponse, content_id: Option<&str>) {
    text.push_str("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(id) = content_id {
        let _ = write!(text, "Content-ID: {id}\r\n");
    }
    let _ = write!(
        text,
        "\r\nHTTP/1.1 {} {}\r\n",
        response.status.as_u16(),
        response.status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &response.headers {
        let _ = write!(text, "{name}: {value}\r\n");
    }
    text.push_str("OData-Version: 4.0\r\n");
    match &response.body {
        SimBody::Empty => text.push_str("\r\n"),
        SimBody::Json(body) => {
            let _ = write!(
                text,
                "Content-Type: {}\r\n\r\n{body}\r\n",
                JSON_CONTENT_TYPE
            );
        }
        SimBody::Text(body) => {
            let _ = write!(text, "\r\n{body}\r\n");
        }
    }
}

impl Writer {
    fn new(boundary: &str) -> Self {
        Self {
            boundary: boundary.to_owned(),
            text: String::new(),
        }
    }

    fn part(&mut self, response: &SimResponse, content_id: Option<&str>) {
        let _ = write!(self.text, "--{}\r\n", self.boundary);
        write_response(&mut self.text, response, content_id);
    }

    fn changeset(&mut self, boundary: &str, responses: &[(SimResponse, Option<String>)]) {
        let _ = write!(
            self.text,
            "--{}\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n",
            self.boundary
        );
        for (response, content_id) in responses {
            let _ = write!(self.text, "--{boundary}\r\n");
            write_response(&mut self.text, response, content_id.as_deref());
        }
        let _ = write!(self.text, "--{boundary}--\r\n");
    }

    /// The content type and the body.
    fn finish(mut self) -> (String, String) {
        let _ = write!(self.text, "--{}--\r\n", self.boundary);
        (
            format!("multipart/mixed; boundary={}", self.boundary),
            self.text,
        )
    }
}

impl DataverseSim {
    /// One `$batch` request: parses the multipart body and runs the parts under one lock.
    pub(super) fn batch(
        &self,
        headers: &Headers,
        body: &[u8],
        base: &str,
    ) -> Result<SimResponse, DvError> {
        let content_type = headers.get("content-type").unwrap_or_default();
        let boundary = boundary(content_type).ok_or_else(|| {
            DvError::bad_request(
                "",
                "The $batch request must have Content-Type multipart/mixed with a boundary.",
            )
        })?;
        let text = std::str::from_utf8(body)
            .map_err(|_| DvError::bad_request("", "The $batch body is not UTF-8."))?;
        let items = parse_batch(text, &boundary).map_err(|e| {
            DvError::bad_request("", format!("The $batch body cannot be read: {e}"))
        })?;
        let total: usize = items.iter().map(Item::len).sum();
        if total > MAX_BATCH_REQUESTS {
            return Err(DvError::bad_request(
                "0x8005f006",
                format!(
                    "The number of requests in a batch ({total}) exceeds the limit of {MAX_BATCH_REQUESTS}."
                ),
            ));
        }
        let continue_on_error = prefers(headers, "odata.continue-on-error");
        let mut inner = self.lock();
        // Requests inside a batch count individually (the batch itself was counted once).
        inner.protection.accept_more(total.saturating_sub(1));
        let mut out = Writer::new(&format!("batchresponse_{}", inner.new_guid()));
        let mut executed = 0usize;
        for item in &items {
            let failed = match item {
                Item::Single(request) => {
                    let response = inner.execute(request, base, &HashMap::new());
                    executed += 1;
                    out.part(&response, request.content_id.as_deref());
                    response.status.as_u16() >= 400
                }
                Item::ChangeSet(requests) => {
                    let snapshot = inner.snapshot();
                    let mut refs: HashMap<String, String> = HashMap::new();
                    let mut responses = Vec::new();
                    let mut failure = None;
                    for request in requests {
                        let response = inner.execute(request, base, &refs);
                        executed += 1;
                        if response.status.as_u16() >= 400 {
                            failure = Some((response, request.content_id.as_deref()));
                            break;
                        }
                        if let (Some(id), Some(entity)) =
                            (&request.content_id, response.header("OData-EntityId"))
                        {
                            refs.insert(format!("${id}"), entity.to_owned());
                        }
                        responses.push((response, request.content_id.clone()));
                    }
                    match failure {
                        Some((response, content_id)) => {
                            inner.restore(snapshot);
                            tracing::info!(
                                event = "dataverse_sim_changeset_rolled_back",
                                status = response.status.as_u16()
                            );
                            out.part(&response, content_id);
                            true
                        }
                        None => {
                            let boundary = format!("changesetresponse_{}", inner.new_guid());
                            out.changeset(&boundary, &responses);
                            false
                        }
                    }
                }
            };
            if failed && !continue_on_error {
                break;
            }
        }
        drop(inner);
        tracing::info!(
            event = "dataverse_sim_batch",
            parts = items.len(),
            requests = total,
            executed
        );
        let (content_type, body) = out.finish();
        Ok(SimResponse {
            status: StatusCode::OK,
            headers: vec![("Content-Type".into(), content_type)],
            body: SimBody::Text(body),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_batch_is_parsed_should_find_changesets_and_requests() {
        let body = "--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n--changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPOST /api/data/v9.2/leads HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{\"subject\":\"a\"}\r\n--changeset_1--\r\n--batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET /api/data/v9.2/leads?$top=1 HTTP/1.1\r\n\r\n--batch_1--\r\n";
        let items = parse_batch(body, "batch_1").unwrap();
        assert_eq!(items.len(), 2);
        let Item::ChangeSet(requests) = &items[0] else {
            panic!("not a change set");
        };
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path, "leads");
        assert_eq!(requests[0].content_id.as_deref(), Some("1"));
        assert_eq!(requests[0].body, b"{\"subject\":\"a\"}");
        let Item::Single(get) = &items[1] else {
            panic!("not a request");
        };
        assert_eq!(get.query.as_deref(), Some("$top=1"));
        assert!(parse_batch("--batch_1\r\n", "batch_1").is_err());
        assert_eq!(
            boundary("multipart/mixed; boundary=\"batch_x\"").as_deref(),
            Some("batch_x")
        );
    }
}
