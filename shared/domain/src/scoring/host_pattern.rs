//! Host patterns of the tenant-size rules: matched against the last labels of an MX host.

/// A host pattern such as `mail.protection.outlook.com` or `???##.protection.outlook.com`.
///
/// It matches a host whose last labels match its labels one for one, so it covers the host it
/// names and every host under it. Within a label, `?` stands for one character, `#` for one
/// digit and `*` for any run of characters (none included); anything else matches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    text: String,
}

impl HostPattern {
    /// Reads a pattern: lowercase labels of `a-z`, `0-9`, `-` and the wildcards, none empty.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().trim_end_matches('.').to_ascii_lowercase();
        if text.is_empty() {
            return Err("a host pattern must not be empty".to_owned());
        }
        for label in text.split('.') {
            if label.is_empty() {
                return Err(format!("host pattern {text:?} has an empty label"));
            }
            if let Some(bad) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '?' | '#' | '*')))
            {
                return Err(format!("host pattern {text:?} has the character {bad:?}"));
            }
        }
        Ok(Self { text })
    }

    /// Whether `host` (any case, trailing dot allowed) ends with labels matching this pattern.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim().trim_end_matches('.');
        let mut host_labels = host.split('.').rev();
        self.text.split('.').rev().all(|pattern| {
            host_labels
                .next()
                .is_some_and(|label| label_matches(pattern.as_bytes(), label.as_bytes()))
        })
    }
}

/// Whether `label` (any ASCII case) matches `pattern` (lowercase).
fn label_matches(pattern: &[u8], label: &[u8]) -> bool {
    match pattern.split_first() {
        None => label.is_empty(),
        Some((b'*', rest)) => (0..=label.len()).any(|skip| label_matches(rest, &label[skip..])),
        Some((wanted, rest)) => label.split_first().is_some_and(|(found, tail)| {
            let one_matches = match wanted {
                b'?' => true,
                b'#' => found.is_ascii_digit(),
                _ => found.to_ascii_lowercase() == *wanted,
            };
            one_matches && label_matches(rest, tail)
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_hosts_are_matched_should_compare_the_last_labels() {
        let cases: &[(&str, &str, bool)] = &[
            (
                "mail.protection.outlook.com",
                "mail.protection.outlook.com",
                true,
            ),
            (
                "mail.protection.outlook.com",
                "contoso-com.mail.protection.outlook.com",
                true,
            ),
            (
                "mail.protection.outlook.com",
                "CONTOSO-COM.Mail.Protection.Outlook.com.",
                true,
            ),
            (
                "mail.protection.outlook.com",
                "contoso-com.olc.protection.outlook.com",
                false,
            ),
            (
                "mail.protection.outlook.com",
                "protection.outlook.com",
                false,
            ),
            (
                "mail.protection.outlook.com",
                "xmail.protection.outlook.com",
                false,
            ),
            (
                "???##.protection.outlook.com",
                "eur01.protection.outlook.com",
                true,
            ),
            (
                "???##.protection.outlook.com",
                "contoso.nam12.protection.outlook.com",
                true,
            ),
            (
                "???##.protection.outlook.com",
                "eu01.protection.outlook.com",
                false,
            ),
            (
                "???##.protection.outlook.com",
                "eur0a.protection.outlook.com",
                false,
            ),
            (
                "???##.protection.outlook.com",
                "euro01.protection.outlook.com",
                false,
            ),
            ("*##.example.com", "mx07.example.com", true),
            ("*##.example.com", "07.example.com", true),
            ("*##.example.com", "mx7.example.com", false),
            ("mx*.example.com", "mx.example.com", true),
            ("mx*.example.com", "mail.example.com", false),
        ];
        for (pattern, host, expected) in cases {
            assert_eq!(
                HostPattern::parse(pattern).unwrap().matches(host),
                *expected,
                "{pattern} vs {host}"
            );
        }
    }

    #[test]
    fn when_a_pattern_is_unusable_should_refuse_it() {
        for bad in [
            "",
            " . ",
            "mail..outlook.com",
            "mail.outlook.com/x",
            "m@il.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            HostPattern::parse(" Mail.Protection.Outlook.COM. ").unwrap(),
            HostPattern::parse("mail.protection.outlook.com").unwrap()
        );
    }
}
