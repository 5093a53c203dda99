//! The one place the current time comes from.

use chrono::{DateTime, SecondsFormat, Utc};

/// The current UTC time.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// RFC 3339 with nanoseconds and `Z`: fixed width, so strings sort in time order.
pub fn sortable(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}
