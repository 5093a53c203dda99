//! Fault injection both simulators share: scripted statuses, random draws, injected failures.

use axum::http::StatusCode;

/// What the next scripted status (a `fail_next` list) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scripted {
    /// The list is empty.
    Nothing,
    /// A 2xx entry: serve this one normally.
    Serve,
    /// Answer this status.
    Fail(u16),
}

/// Takes the next status off a `fail_next` list.
pub(crate) fn next_scripted(fail_next: &mut Vec<u16>) -> Scripted {
    if fail_next.is_empty() {
        return Scripted::Nothing;
    }
    match fail_next.remove(0) {
        status if (200..300).contains(&status) => Scripted::Serve,
        status => Scripted::Fail(status),
    }
}

/// A draw that succeeds with probability `rate` (no draw at all when `rate` is not positive).
pub(crate) fn strikes(rng: &mut fastrand::Rng, rate: f64) -> bool {
    rate > 0.0 && rng.f64() < rate
}

/// With probability `rate`, a server error: 500 or 503 at even odds.
pub(crate) fn server_error(rng: &mut fastrand::Rng, rate: f64) -> Option<u16> {
    strikes(rng, rate).then(|| if rng.bool() { 500 } else { 503 })
}

/// The status of an injected failure (an invalid code is a 500) and its message.
pub(crate) fn simulated(status: u16) -> (StatusCode, String) {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        format!("Simulated failure (HTTP {}).", status.as_u16()),
    )
}
