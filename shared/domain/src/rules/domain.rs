//! Domain normalization: registrable domain (public suffix list + 1 label), lowercase ASCII.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Maximum length of a domain name in ASCII form (RFC 1035).
const MAX_DOMAIN_LEN: usize = 253;
/// Maximum length of one label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A registrable domain in lowercase ASCII (punycode), e.g. `contoso.co.uk`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Domain(String);

impl Domain {
    /// The domain as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the domain, returning the inner string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Domain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Domain {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        normalize_domain(s)
    }
}

/// Why a string is not a usable company domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Nothing left after trimming.
    #[error("domain is empty")]
    Empty,
    /// An IPv4 or IPv6 address, not a name.
    #[error("IP addresses are not domains")]
    IpAddress,
    /// A name without a dot (`localhost`, `contoso`).
    #[error("single-label names are not domains")]
    SingleLabel,
    /// A label that is not LDH, is empty, longer than 63 bytes or starts/ends with a hyphen.
    #[error("invalid domain label {0:?}")]
    InvalidLabel(String),
    /// The suffix is not in the public suffix list (`.local`, `.internal`).
    #[error("unknown public suffix {0:?}")]
    UnknownSuffix(String),
    /// The name is itself a public suffix (`co.uk`).
    #[error("a bare public suffix is not a registrable domain")]
    PublicSuffix,
    /// Longer than 253 bytes in ASCII form.
    #[error("domain is longer than 253 bytes")]
    TooLong,
    /// IDNA (punycode) conversion failed.
    #[error("internationalized domain name could not be converted to ASCII")]
    Idna,
    /// An e-mail address without `@` or with an empty local part.
    #[error("not an e-mail address")]
    NotAnEmail,
}

/// Normalizes a host name to its registrable domain.
///
/// Trims, lowercases, strips a trailing dot and a leading `www.`, converts IDN to punycode and
/// reduces to the registrable domain (`mail.contoso.co.uk` → `contoso.co.uk`).
pub fn normalize_domain(input: &str) -> Result<Domain, DomainError> {
    let host = checked_host(input)?;
    let unknown_suffix =
        |suffix: psl::Suffix<'_>| DomainError::UnknownSuffix(lossy(suffix.as_bytes()));
    let registrable = match psl::domain(host.as_bytes()) {
        Some(domain) if !domain.suffix().is_known() => return Err(unknown_suffix(domain.suffix())),
        Some(domain) => domain,
        // No registrable domain: an unknown suffix still says so first.
        None => {
            return Err(match psl::suffix(host.as_bytes()) {
                Some(suffix) if !suffix.is_known() => unknown_suffix(suffix),
                _ => DomainError::PublicSuffix,
            });
        }
    };
    let registrable = std::str::from_utf8(registrable.as_bytes()).map_err(|_| DomainError::Idna)?;
    Ok(Domain(registrable.to_owned()))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Extracts the registrable domain from a URL (`https://contoso.com/path?q`), a host with a path
/// (`contoso.com/about`) or a bare host (`contoso.com`).
pub fn domain_from_url_or_host(input: &str) -> Result<Domain, DomainError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(DomainError::Empty);
    }
    let parsed = if trimmed.contains("://") {
        url::Url::parse(trimmed)
    } else {
        url::Url::parse(&format!("http://{trimmed}"))
    };
    match parsed {
        Ok(url) => match url.host() {
            Some(url::Host::Domain(host)) => normalize_domain(host),
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => Err(DomainError::IpAddress),
            None => Err(DomainError::Empty),
        },
        // Not URL-shaped: fall back to the text before any path, query or fragment.
        Err(_) => {
            let host = trimmed
                .split(['/', '?', '#'])
                .find(|part| !part.is_empty())
                .unwrap_or_default();
            normalize_domain(host)
        }
    }
}

/// Registrable domain of an e-mail address; accepts `Ada <ada@contoso.com>` and `mailto:`.
pub fn email_domain(email: &str) -> Result<Domain, DomainError> {
    let mut address = email.trim();
    if let Some(start) = address.rfind('<') {
        let inner = &address[start + 1..];
        address = inner.split('>').next().unwrap_or(inner).trim();
    }
    if let Some(rest) = address
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("mailto:"))
        .and(address.get(7..))
    {
        address = rest.trim();
    }
    if address.is_empty() {
        return Err(DomainError::Empty);
    }
    let (local, host) = address.rsplit_once('@').ok_or(DomainError::NotAnEmail)?;
    if local.trim().is_empty() {
        return Err(DomainError::NotAnEmail);
    }
    normalize_domain(host)
}

/// Host in validated lowercase ASCII form, before the public-suffix reduction.
pub(crate) fn ascii_host(input: &str) -> Result<String, DomainError> {
    checked_host(input).map(Cow::into_owned)
}

/// [`ascii_host`], borrowed from `input` when it is already in that form.
fn checked_host(input: &str) -> Result<Cow<'_, str>, DomainError> {
    let mut host = input.trim();
    if host.is_empty() {
        return Err(DomainError::Empty);
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if inner.parse::<IpAddr>().is_ok() {
            return Err(DomainError::IpAddress);
        }
        return Err(DomainError::InvalidLabel(host.to_owned()));
    }
    if is_ip_address(host) {
        return Err(DomainError::IpAddress);
    }
    host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err(DomainError::Empty);
    }
    let mut ascii = idna::domain_to_ascii_cow(host.as_bytes(), idna::AsciiDenyList::EMPTY)
        .map_err(|_| DomainError::Idna)?;
    if ascii.bytes().any(|b| b.is_ascii_uppercase()) {
        ascii = Cow::Owned(ascii.to_ascii_lowercase());
    }
    if ascii.is_empty() {
        return Err(DomainError::Empty);
    }
    // IDNA maps e.g. full-width digits; re-check for an address.
    if is_ip_address(&ascii) {
        return Err(DomainError::IpAddress);
    }
    // `www.` goes unless it is the registrable label itself (`www.com`, `www.co.uk`): stripping
    // it there would leave a bare public suffix, and a returned domain would not normalize again.
    if ascii.starts_with("www.") && psl::domain(&ascii.as_bytes()[4..]).is_some() {
        ascii = match ascii {
            Cow::Borrowed(ascii) => Cow::Borrowed(&ascii[4..]),
            Cow::Owned(mut ascii) => {
                ascii.drain(..4);
                Cow::Owned(ascii)
            }
        };
    }
    if ascii.len() > MAX_DOMAIN_LEN {
        return Err(DomainError::TooLong);
    }
    let mut labels = 0;
    for label in ascii.split('.') {
        if !is_valid_label(label) {
            return Err(DomainError::InvalidLabel(label.to_owned()));
        }
        labels += 1;
    }
    if labels < 2 {
        return Err(DomainError::SingleLabel);
    }
    Ok(ascii)
}

/// Whether `text` is an IPv4 or IPv6 address; text with a character no address has (any letter
/// after `f`, say) is not parsed.
fn is_ip_address(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        && text.parse::<IpAddr>().is_ok()
}

/// LDH rule: 1..=63 bytes of `a-z0-9-`, no leading or trailing hyphen.
fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, DomainError> {
        normalize_domain(s).map(Domain::into_string)
    }

    #[test]
    fn when_subdomain_of_multi_label_suffix_should_reduce_to_registrable() {
        assert_eq!(norm("mail.contoso.co.uk").unwrap(), "contoso.co.uk");
        assert_eq!(norm("a.b.contoso.com").unwrap(), "contoso.com");
    }

    #[test]
    fn when_idn_should_convert_to_punycode() {
        assert_eq!(norm("Bücher.de").unwrap(), "xn--bcher-kva.de");
        assert_eq!(norm("xn--bcher-kva.de").unwrap(), "xn--bcher-kva.de");
    }

    #[test]
    fn when_uppercase_www_and_trailing_dot_should_normalize() {
        assert_eq!(norm("WWW.Contoso.COM.").unwrap(), "contoso.com");
        assert_eq!(norm("  contoso.com \n").unwrap(), "contoso.com");
    }

    #[test]
    fn when_www_is_the_registrable_label_should_keep_it() {
        assert_eq!(norm("www.com").unwrap(), "www.com");
        assert_eq!(norm("www.co.uk").unwrap(), "www.co.uk");
        assert_eq!(norm("a.www.co.uk").unwrap(), "www.co.uk");
        assert_eq!(norm("www.www.co.uk").unwrap(), "www.co.uk");
        assert_eq!(norm("www.contoso.co.uk").unwrap(), "contoso.co.uk");
        assert_eq!(
            norm(&norm("x.www.s3.amazonaws.com").unwrap()).unwrap(),
            "www.s3.amazonaws.com"
        );
    }

    #[test]
    fn when_ipv4_or_ipv6_should_reject() {
        assert_eq!(norm("192.168.1.10"), Err(DomainError::IpAddress));
        assert_eq!(norm("::1"), Err(DomainError::IpAddress));
        assert_eq!(norm("2001:db8::1"), Err(DomainError::IpAddress));
        assert_eq!(norm("[2001:db8::1]"), Err(DomainError::IpAddress));
        assert_eq!(
            domain_from_url_or_host("http://10.0.0.1/x"),
            Err(DomainError::IpAddress)
        );
        assert_eq!(
            domain_from_url_or_host("https://[2001:db8::1]:8443/x"),
            Err(DomainError::IpAddress)
        );
        assert_eq!(email_domain("a@[10.0.0.1]"), Err(DomainError::IpAddress));
    }

    #[test]
    fn when_single_label_should_reject() {
        assert_eq!(norm("localhost"), Err(DomainError::SingleLabel));
        assert_eq!(
            domain_from_url_or_host("http://intranet/x"),
            Err(DomainError::SingleLabel)
        );
        assert_eq!(norm("contoso"), Err(DomainError::SingleLabel));
    }

    #[test]
    fn when_bare_public_suffix_should_reject() {
        assert_eq!(norm("co.uk"), Err(DomainError::PublicSuffix));
        assert_eq!(norm("com"), Err(DomainError::SingleLabel));
    }

    #[test]
    fn when_unknown_suffix_should_reject() {
        assert_eq!(
            norm("contoso.local"),
            Err(DomainError::UnknownSuffix("local".into()))
        );
        assert_eq!(
            norm("dc1.contoso.internal"),
            Err(DomainError::UnknownSuffix("internal".into()))
        );
    }

    #[test]
    fn when_label_over_63_bytes_should_reject() {
        let long = format!("{}.com", "a".repeat(64));
        assert!(matches!(norm(&long), Err(DomainError::InvalidLabel(_))));
        let ok = format!("{}.com", "a".repeat(63));
        assert_eq!(norm(&ok).unwrap(), ok);
    }

    #[test]
    fn when_total_over_253_bytes_should_reject() {
        let long = format!("{}com", "abcdefghi.".repeat(26));
        assert_eq!(norm(&long), Err(DomainError::TooLong));
    }

    #[test]
    fn when_label_has_bad_characters_or_hyphens_should_reject() {
        assert!(matches!(
            norm("-contoso.com"),
            Err(DomainError::InvalidLabel(_))
        ));
        assert!(matches!(
            norm("contoso-.com"),
            Err(DomainError::InvalidLabel(_))
        ));
        assert!(matches!(
            norm("con_toso.com"),
            Err(DomainError::InvalidLabel(_))
        ));
        assert!(norm("con toso.com").is_err());
        assert!(norm("contoso..com").is_err());
        assert!(matches!(
            norm("<img src=x onerror=alert(1)>"),
            Err(DomainError::InvalidLabel(_) | DomainError::Idna)
        ));
    }

    #[test]
    fn when_empty_should_reject() {
        assert_eq!(norm(""), Err(DomainError::Empty));
        assert_eq!(norm("   "), Err(DomainError::Empty));
        assert_eq!(norm("."), Err(DomainError::Empty));
    }

    #[test]
    fn when_url_with_path_query_or_port_should_extract_host() {
        for input in [
            "https://www.contoso.com/about/us",
            "https://contoso.com/path?q=1#frag",
            "contoso.com/about",
            "contoso.com",
            "HTTP://WWW.CONTOSO.COM:8080",
            "//contoso.com/x",
            "https://user:pw@shop.contoso.com/",
        ] {
            assert_eq!(
                domain_from_url_or_host(input).unwrap().as_str(),
                "contoso.com",
                "{input}"
            );
        }
        assert_eq!(domain_from_url_or_host("  "), Err(DomainError::Empty));
        assert_eq!(
            domain_from_url_or_host("https://Bücher.de/x")
                .unwrap()
                .as_str(),
            "xn--bcher-kva.de"
        );
    }

    #[test]
    fn when_email_has_display_name_or_multiple_at_should_use_last_at() {
        assert_eq!(
            email_domain("Ada <ada@Mail.Contoso.co.uk>")
                .unwrap()
                .as_str(),
            "contoso.co.uk"
        );
        assert_eq!(
            email_domain("\"a@b\"@contoso.com").unwrap().as_str(),
            "contoso.com"
        );
        assert_eq!(
            email_domain("mailto:ada@contoso.com").unwrap().as_str(),
            "contoso.com"
        );
    }

    #[test]
    fn when_email_starts_with_multibyte_characters_should_not_panic() {
        assert_eq!(
            email_domain("üüüü@contoso.com").unwrap().as_str(),
            "contoso.com"
        );
        assert_eq!(
            email_domain("ma\u{e9}lto:x@contoso.com").unwrap().as_str(),
            "contoso.com"
        );
        assert_eq!(email_domain("日本語のメール"), Err(DomainError::NotAnEmail));
    }

    #[test]
    fn when_email_has_no_local_part_or_no_at_should_reject() {
        assert_eq!(email_domain("@contoso.com"), Err(DomainError::NotAnEmail));
        assert_eq!(email_domain("contoso.com"), Err(DomainError::NotAnEmail));
        assert_eq!(email_domain(""), Err(DomainError::Empty));
    }

    #[test]
    fn when_serialized_should_be_a_plain_string() {
        let d = normalize_domain("contoso.com").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"contoso.com\"");
        let back: Domain = serde_json::from_str("\"contoso.com\"").unwrap();
        assert_eq!(back, d);
        assert_eq!(d.to_string(), "contoso.com");
        assert_eq!("Contoso.com".parse::<Domain>().unwrap(), d);
    }
}
