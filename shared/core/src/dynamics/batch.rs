//! OData `$batch` bodies (`multipart/mixed`), both ways: the Dataverse client writes requests and
//! reads answers, the Dataverse simulator reads requests and writes answers, with this one reader
//! and one writer.
//!
//! A batch is a list of entries, each one HTTP message (`Content-Type: application/http`) or a
//! change set (a nested `multipart/mixed` of messages). Line ends may be CRLF or LF.

use std::fmt::Write as _;

/// Header lines, compared case-insensitively, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }
}

/// One HTTP message of a batch: a request (`PATCH url HTTP/1.1`) or an answer
/// (`HTTP/1.1 204 No Content`), with its `Content-ID`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub content_id: Option<String>,
    /// The request or status line.
    pub start_line: String,
    pub headers: Headers,
    pub body: String,
}

impl Message {
    /// A request's method and URL.
    pub fn request_line(&self) -> Option<(&str, &str)> {
        let mut words = self.start_line.split_whitespace();
        Some((words.next()?, words.next()?))
    }

    /// An answer's status code.
    pub fn status(&self) -> Option<u16> {
        let mut words = self.start_line.split_whitespace();
        words.next()?;
        words.next()?.parse().ok()
    }
}

/// A top-level entry of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Single(Message),
    /// An atomic change set.
    ChangeSet(Vec<Message>),
}

impl Entry {
    /// The entry's messages, a change set's in order.
    pub fn into_messages(self) -> Vec<Message> {
        match self {
            Entry::Single(message) => vec![message],
            Entry::ChangeSet(messages) => messages,
        }
    }

    /// How many messages the entry holds.
    pub fn len(&self) -> usize {
        match self {
            Entry::Single(_) => 1,
            Entry::ChangeSet(messages) => messages.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `boundary` parameter of a `multipart/mixed` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/mixed")
    {
        return None;
    }
    params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .filter(|b| !b.is_empty())
}

/// Reads a batch body (requests or answers) delimited by `boundary` into its entries.
pub fn read(text: &str, boundary: &str) -> Result<Vec<Entry>, String> {
    let text = text.replace("\r\n", "\n");
    let mut entries = Vec::new();
    for part in split(&text, boundary)? {
        let (headers, content) = head(&part)?;
        match headers.get("Content-Type").and_then(self::boundary) {
            Some(inner) => {
                let messages = split(content, &inner)?
                    .iter()
                    .map(|part| message(part))
                    .collect::<Result<_, _>>()?;
                entries.push(Entry::ChangeSet(messages));
            }
            None => entries.push(Entry::Single(message(&part)?)),
        }
    }
    Ok(entries)
}

/// The parts between `--boundary` lines, up to `--boundary--` (text with `\n` line ends).
fn split(text: &str, boundary: &str) -> Result<Vec<String>, String> {
    let open = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        let trimmed = line.trim_end();
        if trimmed == close || trimmed == open {
            if let Some(lines) = current.take() {
                parts.push(lines.join("\n"));
            }
            if trimmed == close {
                return match parts.is_empty() {
                    true => Err("the batch has no parts".to_owned()),
                    false => Ok(parts),
                };
            }
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    Err(format!("the closing delimiter '{close}' is missing"))
}

/// The header lines up to the first empty line, and the rest.
fn head(part: &str) -> Result<(Headers, &str), String> {
    let part = part.trim_start_matches('\n');
    let (block, rest) = match part.find("\n\n") {
        Some(at) => (&part[..at], &part[at + 2..]),
        None if part.trim().is_empty() => return Err("an empty part".to_owned()),
        None => (part, ""),
    };
    let mut headers = Headers::default();
    for line in block.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line '{line}'"))?;
        headers.push(name.trim(), value.trim());
    }
    Ok((headers, rest))
}

/// An `application/http` part: its own headers, then the message.
fn message(part: &str) -> Result<Message, String> {
    let (part_headers, content) = head(part)?;
    let kind = part_headers.get("Content-Type").unwrap_or_default();
    if !kind.to_ascii_lowercase().starts_with("application/http") {
        return Err(format!(
            "a part must have Content-Type application/http, not '{kind}'"
        ));
    }
    let content = content.trim_start_matches('\n');
    let (start_line, rest) = content.split_once('\n').unwrap_or((content, ""));
    if start_line.split_whitespace().count() < 2 {
        return Err(format!("malformed start line '{start_line}'"));
    }
    let (headers, body) = if rest.trim().is_empty() {
        (Headers::default(), "")
    } else if let Some(body) = rest.strip_prefix('\n') {
        (Headers::default(), body)
    } else {
        head(rest)?
    };
    let content_id = part_headers
        .get("Content-ID")
        .or_else(|| headers.get("Content-ID"))
        .map(str::to_owned);
    Ok(Message {
        content_id,
        start_line: start_line.trim_end().to_owned(),
        headers,
        body: body.trim().to_owned(),
    })
}

/// Writes a batch body.
#[derive(Debug)]
pub struct Writer {
    boundary: String,
    text: String,
}

impl Writer {
    pub fn new(boundary: impl Into<String>) -> Self {
        Self {
            boundary: boundary.into(),
            text: String::new(),
        }
    }

    /// One message on its own.
    pub fn single(&mut self, message: &Message) {
        let _ = write!(self.text, "--{}\r\n", self.boundary);
        write_message(&mut self.text, message);
    }

    /// Messages in one change set delimited by `boundary`.
    pub fn change_set(&mut self, boundary: &str, messages: &[Message]) {
        let _ = write!(
            self.text,
            "--{}\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n",
            self.boundary
        );
        for message in messages {
            let _ = write!(self.text, "--{boundary}\r\n");
            write_message(&mut self.text, message);
        }
        let _ = write!(self.text, "--{boundary}--\r\n");
    }

    /// The content type and the body.
    pub fn finish(mut self) -> (String, String) {
        let _ = write!(self.text, "--{}--\r\n", self.boundary);
        (
            format!("multipart/mixed; boundary={}", self.boundary),
            self.text,
        )
    }
}

fn write_message(text: &mut String, message: &Message) {
    text.push_str("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(id) = &message.content_id {
        let _ = write!(text, "Content-ID: {id}\r\n");
    }
    let _ = write!(text, "\r\n{}\r\n", message.start_line);
    for (name, value) in &message.headers.0 {
        let _ = write!(text, "{name}: {value}\r\n");
    }
    text.push_str("\r\n");
    if !message.body.is_empty() {
        let _ = write!(text, "{}\r\n", message.body);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(id: &str, body: &str) -> Message {
        let mut headers = Headers::default();
        headers.push("Content-Type", "application/json; type=entry");
        Message {
            content_id: Some(id.to_owned()),
            start_line: format!("PATCH http://org/api/data/v9.2/leads(k='{id}') HTTP/1.1"),
            headers,
            body: body.to_owned(),
        }
    }

    #[test]
    fn when_a_batch_is_written_and_read_should_round_trip() {
        let mut writer = Writer::new("batch_1");
        writer.change_set(
            "changeset_a",
            &[request("1", "{\"a\":1}"), request("2", "{}")],
        );
        writer.single(&Message {
            content_id: None,
            start_line: "GET http://org/api/data/v9.2/leads?$top=1 HTTP/1.1".to_owned(),
            headers: Headers::default(),
            body: String::new(),
        });
        let (content_type, body) = writer.finish();
        assert_eq!(content_type, "multipart/mixed; boundary=batch_1");
        let entries = read(&body, &boundary(&content_type).unwrap()).unwrap();
        assert_eq!(entries.len(), 2);
        let Entry::ChangeSet(messages) = &entries[0] else {
            panic!("{entries:?}")
        };
        assert_eq!(
            messages,
            &vec![request("1", "{\"a\":1}"), request("2", "{}")]
        );
        assert_eq!(entries[1].len(), 1);
        let Entry::Single(get) = &entries[1] else {
            panic!("{entries:?}")
        };
        assert_eq!(
            get.request_line(),
            Some(("GET", "http://org/api/data/v9.2/leads?$top=1"))
        );
    }

    #[test]
    fn when_an_answer_is_read_should_give_status_headers_and_body() {
        let body = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_a\r\n\r\n--changesetresponse_a\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nHTTP/1.1 201 Created\r\nOData-EntityId: http://x/api/data/v9.2/leads(00000000-0000-0000-0000-000000000001)\r\nOData-Version: 4.0\r\n\r\n\r\n--changesetresponse_a--\r\n--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n{\"error\":{\"code\":\"0x80044331\"}}\r\n--batchresponse_1--\r\n";
        let entries = read(body, "batchresponse_1").unwrap();
        let Entry::ChangeSet(created) = &entries[0] else {
            panic!("{entries:?}")
        };
        assert_eq!(created[0].status(), Some(201));
        assert_eq!(created[0].content_id.as_deref(), Some("1"));
        assert!(created[0].headers.get("odata-entityid").is_some());
        let Entry::Single(refused) = &entries[1] else {
            panic!("{entries:?}")
        };
        assert_eq!(refused.status(), Some(400));
        assert_eq!(refused.body, "{\"error\":{\"code\":\"0x80044331\"}}");
    }

    #[test]
    fn when_a_batch_is_malformed_should_say_why() {
        assert!(
            read("--b\r\n", "b")
                .unwrap_err()
                .contains("closing delimiter")
        );
        assert!(read("--b--\r\n", "b").unwrap_err().contains("no parts"));
        let not_http = "--b\r\nContent-Type: text/plain\r\n\r\nGET x HTTP/1.1\r\n--b--\r\n";
        assert!(
            read(not_http, "b")
                .unwrap_err()
                .contains("application/http")
        );
        let bad_header =
            "--b\r\nContent-Type: application/http\r\nnonsense\r\n\r\nGET x HTTP/1.1\r\n--b--\r\n";
        assert!(
            read(bad_header, "b")
                .unwrap_err()
                .contains("malformed header")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(
            boundary("multipart/mixed; boundary=\"batch_1\"").as_deref(),
            Some("batch_1")
        );
    }
}
