//! Version ordering for the upsert: out-of-order deliveries never win.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How an incoming referral version relates to the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionOrder {
    /// Replaces the stored version.
    Newer,
    /// The same version again (idempotent redelivery).
    Same,
    /// Older than the stored version; must be ignored.
    Stale,
}

/// A referral's version: `updatedDateTime` and `eTag`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Version {
    /// `updatedDateTime`; `None` sorts oldest.
    pub updated: Option<DateTime<Utc>>,
    /// `eTag`, compared verbatim.
    pub etag: Option<String>,
}

impl Version {
    /// Nanoseconds since the Unix epoch; `i64::MIN` when missing (saturating outside i64 range).
    pub fn sort_key(&self) -> i64 {
        match self.updated {
            None => i64::MIN,
            Some(t) => t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
                i64::MIN + 1
            } else {
                i64::MAX
            }),
        }
    }
}

/// Newer `updated` wins; equal time with a different eTag is `Newer`, with the same eTag `Same`;
/// older is `Stale`. A missing time is the oldest.
pub fn compare_versions(incoming: &Version, stored: &Version) -> VersionOrder {
    match incoming.sort_key().cmp(&stored.sort_key()) {
        std::cmp::Ordering::Greater => VersionOrder::Newer,
        std::cmp::Ordering::Less => VersionOrder::Stale,
        std::cmp::Ordering::Equal if incoming.etag != stored.etag => VersionOrder::Newer,
        std::cmp::Ordering::Equal => VersionOrder::Same,
    }
}

/// What a conditional referral upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsertOutcome {
    /// No referral with this id was stored.
    Inserted,
    /// A newer version replaced the stored one.
    Updated,
    /// The same version was stored already (a duplicate delivery).
    Unchanged,
    /// The stored version is newer; the incoming one was ignored.
    Stale,
}

impl UpsertOutcome {
    /// What storing a version does, given the stored one (`None`: nothing stored).
    pub fn of(incoming: &Version, stored: Option<&Version>) -> Self {
        match stored.map(|stored| compare_versions(incoming, stored)) {
            None => Self::Inserted,
            Some(VersionOrder::Newer) => Self::Updated,
            Some(VersionOrder::Same) => Self::Unchanged,
            Some(VersionOrder::Stale) => Self::Stale,
        }
    }

    /// Whether the incoming version is written.
    pub fn writes(self) -> bool {
        matches!(self, Self::Inserted | Self::Updated)
    }

    /// The snake_case name used in counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inserted => "inserted",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Stale => "stale",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(updated: Option<&str>, etag: Option<&str>) -> Version {
        Version {
            updated: updated.map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)),
            etag: etag.map(str::to_owned),
        }
    }

    #[test]
    fn when_incoming_updated_later_should_be_newer() {
        let stored = v(Some("2026-10-29T08:01:12.12Z"), Some("a"));
        let incoming = v(Some("2026-10-29T08:01:12.1200001Z"), Some("a"));
        assert_eq!(compare_versions(&incoming, &stored), VersionOrder::Newer);
    }

    #[test]
    fn when_incoming_updated_earlier_should_be_stale() {
        let stored = v(Some("2026-10-29T08:01:12Z"), Some("a"));
        let incoming = v(Some("2026-10-28T08:01:12Z"), Some("b"));
        assert_eq!(compare_versions(&incoming, &stored), VersionOrder::Stale);
    }

    #[test]
    fn when_same_time_and_same_etag_should_be_same() {
        let a = v(Some("2026-10-29T08:01:12Z"), Some("\"84001c9d\""));
        assert_eq!(compare_versions(&a, &a.clone()), VersionOrder::Same);
        assert_eq!(
            compare_versions(&v(None, None), &v(None, None)),
            VersionOrder::Same
        );
    }

    #[test]
    fn when_same_time_and_different_etag_should_be_newer() {
        let stored = v(Some("2026-10-29T08:01:12Z"), Some("a"));
        let incoming = v(Some("2026-10-29T08:01:12Z"), Some("b"));
        assert_eq!(compare_versions(&incoming, &stored), VersionOrder::Newer);
    }

    #[test]
    fn when_time_missing_should_be_oldest() {
        let dated = v(Some("1970-01-01T00:00:00Z"), None);
        assert_eq!(
            compare_versions(&v(None, Some("x")), &dated),
            VersionOrder::Stale
        );
        assert_eq!(
            compare_versions(&dated, &v(None, Some("x"))),
            VersionOrder::Newer
        );
        assert_eq!(v(None, None).sort_key(), i64::MIN);
    }

    #[test]
    fn when_sort_key_should_be_nanoseconds_and_monotonic() {
        assert_eq!(
            v(Some("1970-01-01T00:00:01Z"), None).sort_key(),
            1_000_000_000
        );
        let far = v(Some("2500-01-01T00:00:00Z"), None);
        assert_eq!(far.sort_key(), i64::MAX);
        let early = v(Some("1600-01-01T00:00:00Z"), None);
        assert!(early.sort_key() > i64::MIN);
    }
}
