//! `POST /api/data/v9.2/$batch`: requests and atomic change sets in one `multipart/mixed` body,
//! read and answered with [`hunter_core::dynamics::batch`]. The Web API's own rules stay here:
//! a change set holds no GET, a batch at most [`MAX_BATCH_REQUESTS`] requests, part URLs lose the
//! API prefix and are percent-decoded, and `$n` names what change-set request `n` created.

use std::collections::HashMap;

use axum::http::StatusCode;
use hunter_core::dynamics::batch::{self, Entry, Headers, Message, Writer};

use super::address::percent_decode;
use super::api::{ApiRequest, DvError, JSON_CONTENT_TYPE, SimBody, SimResponse, prefers};
use super::{API_PREFIX, DataverseSim};

/// Most requests in one `$batch`.
const MAX_BATCH_REQUESTS: usize = 1000;

/// A top-level part of a `$batch` request.
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

/// Reads a `$batch` body delimited by `boundary` into requests and change sets.
fn parse_batch(text: &str, boundary: &str) -> Result<Vec<Item>, String> {
    batch::read(text, boundary)?
        .into_iter()
        .map(|entry| match entry {
            Entry::Single(message) => request(message).map(Item::Single),
            Entry::ChangeSet(messages) => messages
                .into_iter()
                .map(|message| {
                    let request = request(message)?;
                    if request.method == "GET" {
                        return Err("a change set cannot hold a GET".to_owned());
                    }
                    Ok(request)
                })
                .collect::<Result<_, _>>()
                .map(Item::ChangeSet),
        })
        .collect()
}

/// The Web API request of one part: its URL relative to the API, the path percent-decoded.
fn request(message: Message) -> Result<ApiRequest, String> {
    let Some((method, url)) = message.request_line() else {
        return Err(format!("malformed request line '{}'", message.start_line));
    };
    let method = method.to_ascii_uppercase();
    let url = url
        .split_once(API_PREFIX)
        .map_or(url, |(_, p)| p)
        .trim_start_matches('/');
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (url, None),
    };
    let path = percent_decode(path, false);
    Ok(ApiRequest {
        method,
        path,
        query,
        headers: message.headers,
        body: message.body.into_bytes(),
        content_id: message.content_id,
    })
}

/// The part answering a request.
fn answer(response: &SimResponse, content_id: Option<&str>) -> Message {
    let mut headers = Headers(response.headers.clone());
    headers.push("OData-Version", "4.0");
    let body = match &response.body {
        SimBody::Empty => String::new(),
        SimBody::Json(body) => {
            headers.push("Content-Type", JSON_CONTENT_TYPE);
            body.to_string()
        }
        SimBody::Text(text) => text.clone(),
    };
    Message {
        content_id: content_id.map(str::to_owned),
        start_line: format!(
            "HTTP/1.1 {} {}",
            response.status.as_u16(),
            response.status.canonical_reason().unwrap_or("")
        ),
        headers,
        body,
    }
}

impl DataverseSim {
    /// One `$batch` request: reads the multipart body and runs the parts under one lock.
    pub(super) fn batch(
        &self,
        client: &str,
        headers: &Headers,
        body: &[u8],
        base: &str,
    ) -> Result<SimResponse, DvError> {
        let content_type = headers.get("content-type").unwrap_or_default();
        let boundary = batch::boundary(content_type).ok_or_else(|| {
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
        inner
            .protection
            .accept_more(client, total.saturating_sub(1));
        let mut out = Writer::new(format!("batchresponse_{}", inner.new_guid()));
        let mut executed = 0usize;
        for item in &items {
            let failed = match item {
                Item::Single(request) => {
                    let response = inner.execute(request, base, &HashMap::new());
                    executed += 1;
                    out.single(&answer(&response, request.content_id.as_deref()));
                    response.status.as_u16() >= 400
                }
                Item::ChangeSet(requests) => {
                    let snapshot = inner.snapshot();
                    let mut refs: HashMap<String, String> = HashMap::new();
                    let mut answers = Vec::new();
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
                        answers.push(answer(&response, request.content_id.as_deref()));
                    }
                    match failure {
                        Some((response, content_id)) => {
                            inner.restore(snapshot);
                            tracing::info!(
                                event = "dataverse_sim_changeset_rolled_back",
                                status = response.status.as_u16()
                            );
                            out.single(&answer(&response, content_id));
                            true
                        }
                        None => {
                            let boundary = format!("changesetresponse_{}", inner.new_guid());
                            out.change_set(&boundary, &answers);
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
            batch::boundary("multipart/mixed; boundary=\"batch_x\"").as_deref(),
            Some("batch_x")
        );
    }
}
