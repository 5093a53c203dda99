//! Mail profiles: what a company's DNS says about its mail, as the DNS simulator serves it.
//!
//! [`CATALOG`] covers every row of hunter-rules.md's "DNS scan signals": each provider (M365
//! small, medium and large tenant hosts, Google medium and large, Yandex, Zoho, Amazon SES,
//! SendGrid, Mailgun, each Hosting root, Local) and domains without MX (none, or a null MX);
//! SPF with 0 to 5 includes, none, and split into several strings; DKIM at each probed selector,
//! at selectors Hunter does not probe, and none; DMARC none, quarantine and reject with and
//! without `pct=`, and none at all; several MX preferences and ties; and one apex TXT answer too
//! large for UDP. Hosts with `{slug}` take the domain with dots as dashes (`contoso-com`, as
//! Microsoft names tenants); `{domain}` takes the domain.

use hunter_domain::scan::{DmarcPolicy, MxRecord, ScanState, Signals};

/// A record the simulator serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimRecord {
    /// `MX preference host` (`host` without the trailing dot; `""` is the root, a null MX).
    Mx { preference: u16, host: String },
    /// One TXT record: its character-strings, each at most 255 bytes.
    Txt(Vec<String>),
}

/// A mail setup, independent of the domain it is served for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailProfile {
    /// Short unique name (`m365-large`).
    pub name: &'static str,
    /// `(preference, host)`; `{slug}` and `{domain}` are replaced.
    pub mx: &'static [(u16, &'static str)],
    /// A null MX (`0 .`, RFC 7505): the domain says it takes no mail.
    pub null_mx: bool,
    /// The SPF record's terms before its includes (`mx`, `ip4:...`), or `None` for no SPF record.
    pub spf: Option<&'static str>,
    /// The SPF record's `include:` targets.
    pub spf_includes: &'static [&'static str],
    /// The SPF record's last term (`-all`, `~all`).
    pub spf_all: &'static str,
    /// The SPF record is served as strings of this many bytes (RFC 7208 §3.3), else as one string.
    pub spf_split: Option<usize>,
    /// Selectors with a DKIM key (probed by Hunter or not).
    pub dkim: &'static [&'static str],
    /// `p=` and `pct=` of the DMARC record, or `None` for no record.
    pub dmarc: Option<(DmarcPolicy, Option<u8>)>,
    /// Other apex TXT records (site verifications); this many of them.
    pub verifications: usize,
}

/// Verification records the oversized profile serves: together over 2 KB, far past what UDP
/// carries with EDNS0's 1232 bytes.
pub const OVERSIZED_VERIFICATIONS: usize = 28;

const fn profile(name: &'static str, mx: &'static [(u16, &'static str)]) -> MailProfile {
    MailProfile {
        name,
        mx,
        null_mx: false,
        spf: None,
        spf_includes: &[],
        spf_all: "-all",
        spf_split: None,
        dkim: &[],
        dmarc: None,
        verifications: 0,
    }
}

impl MailProfile {
    const fn spf(
        mut self,
        terms: &'static str,
        includes: &'static [&'static str],
        all: &'static str,
    ) -> Self {
        self.spf = Some(terms);
        self.spf_includes = includes;
        self.spf_all = all;
        self
    }

    const fn dkim(mut self, selectors: &'static [&'static str]) -> Self {
        self.dkim = selectors;
        self
    }

    const fn dmarc(mut self, policy: DmarcPolicy, pct: Option<u8>) -> Self {
        self.dmarc = Some((policy, pct));
        self
    }

    const fn split(mut self, bytes: usize) -> Self {
        self.spf_split = Some(bytes);
        self
    }

    const fn verifications(mut self, count: usize) -> Self {
        self.verifications = count;
        self
    }

    const fn null_mx(mut self) -> Self {
        self.null_mx = true;
        self
    }
}

use DmarcPolicy::{None as PNone, Quarantine, Reject};

const M365_SPF: &[&str] = &["spf.protection.outlook.com"];

/// Every profile; seeded domains take them in turn (see [`crate::dns::DnsSim::seeded`]).
pub const CATALOG: &[MailProfile] = &[
    // M365, large tenant (`*.mail.protection.outlook.com`).
    profile("m365-large", &[(0, "{slug}.mail.protection.outlook.com")])
        .spf("", M365_SPF, "-all")
        .dkim(&["selector1", "selector2"])
        .dmarc(Reject, None),
    // M365, medium (another outlook.com host).
    profile("m365-medium", &[(10, "{slug}.mail.eo.outlook.com")])
        .spf(
            "",
            &["spf.protection.outlook.com", "_spf.salesforce.com"],
            "~all",
        )
        .dkim(&["selector1"])
        .dmarc(Quarantine, Some(50)),
    // M365 through outlook.office365.com.
    profile("m365-office365", &[(10, "outlook.office365.com")])
        .spf("", M365_SPF, "-all")
        .dmarc(PNone, None),
    // M365, small tenant (`olc.protection.outlook.com`); no DKIM, no DMARC.
    profile(
        "m365-small-olc",
        &[(10, "{slug}.olc.protection.outlook.com")],
    )
    .spf("", M365_SPF, "~all"),
    // M365, small tenant (`xxx00.protection.outlook.com`); 4 includes (a risk), DMARC none + pct.
    profile(
        "m365-small-regional",
        &[(10, "{slug}.eur00.protection.outlook.com")],
    )
    .spf(
        "",
        &[
            "spf.protection.outlook.com",
            "sendgrid.net",
            "mailgun.org",
            "_spf.google.com",
        ],
        "~all",
    )
    .dkim(&["selector2"])
    .dmarc(PNone, Some(100)),
    // M365, large, with many verification records: its apex TXT answer needs TCP.
    profile(
        "m365-large-oversized-txt",
        &[(0, "{slug}.mail.protection.outlook.com")],
    )
    .spf(
        "ip4:198.51.100.0/24",
        &[
            "spf.protection.outlook.com",
            "_spf.salesforce.com",
            "servers.mcsv.net",
            "sendgrid.net",
            "_spf.google.com",
        ],
        "-all",
    )
    .split(40)
    .dkim(&["selector1", "selector2"])
    .dmarc(Reject, Some(100))
    .verifications(OVERSIZED_VERIFICATIONS),
    // Google, medium (`aspmx.l.google.com`, the classic five MX).
    profile(
        "google-medium",
        &[
            (1, "aspmx.l.google.com"),
            (5, "alt1.aspmx.l.google.com"),
            (5, "alt2.aspmx.l.google.com"),
            (10, "alt3.aspmx.l.google.com"),
            (10, "alt4.aspmx.l.google.com"),
        ],
    )
    .spf("", &["_spf.google.com"], "~all")
    .dkim(&["google"])
    .dmarc(Quarantine, None),
    // Google, large (`smtp.google.com`); 3 includes, SPF split in two strings.
    profile("google-large", &[(1, "smtp.google.com")])
        .spf(
            "",
            &["_spf.google.com", "spf.mandrillapp.com", "servers.mcsv.net"],
            "~all",
        )
        .split(64)
        .dkim(&["google", "selector1"])
        .dmarc(Reject, Some(25)),
    // Google through googlemail.com; two MX of the same preference; no SPF.
    profile(
        "google-googlemail",
        &[
            (5, "aspmx3.googlemail.com"),
            (5, "aspmx2.googlemail.com"),
            (10, "alt1.aspmx.l.google.com"),
        ],
    )
    .dkim(&["google"])
    .dmarc(PNone, None),
    // Yandex (yandex.net); its DKIM selector `mail` is not one Hunter probes.
    profile("yandex-net", &[(10, "mx.yandex.net")])
        .spf("", &["_spf.yandex.net"], "~all")
        .dkim(&["mail"])
        .dmarc(PNone, None),
    // Yandex (yandex.ru); nothing else.
    profile("yandex-ru", &[(10, "mx.yandex.ru")]),
    // Zoho (zoho.com), three preferences.
    profile(
        "zoho-com",
        &[
            (10, "mx.zoho.com"),
            (20, "mx2.zoho.com"),
            (50, "mx3.zoho.com"),
        ],
    )
    .spf("", &["zoho.com"], "~all")
    .dkim(&["default"])
    .dmarc(Quarantine, Some(10)),
    // Zoho (zoho.eu); SPF, nothing else.
    profile(
        "zoho-eu",
        &[(10, "mx.zoho.eu"), (20, "mx2.zoho.eu"), (50, "mx3.zoho.eu")],
    )
    .spf("", &["zoho.eu"], "-all"),
    // Zoho (zoho.in).
    profile("zoho-in", &[(10, "mx.zoho.in"), (20, "mx2.zoho.in")])
        .spf("", &["zoho.in"], "~all")
        .dkim(&["default"])
        .dmarc(Reject, None),
    // Amazon SES inbound (amazonaws.com).
    profile(
        "amazon-ses-inbound",
        &[(10, "inbound-smtp.us-east-1.amazonaws.com")],
    )
    .spf("", &["amazonses.com"], "~all")
    .dmarc(PNone, None),
    // Amazon SES (amazonses.com).
    profile(
        "amazon-ses",
        &[(10, "feedback-smtp.eu-west-1.amazonses.com")],
    )
    .spf("", &["amazonses.com"], "-all")
    .dkim(&["default"])
    .dmarc(Reject, Some(50)),
    // SendGrid; its selectors `s1`, `s2` are not probed.
    profile("sendgrid", &[(10, "mx.sendgrid.net")])
        .spf("", &["sendgrid.net"], "~all")
        .dkim(&["s1", "s2"])
        .dmarc(PNone, None),
    // Mailgun; two MX of the same preference.
    profile(
        "mailgun",
        &[(10, "mxb.mailgun.org"), (10, "mxa.mailgun.org")],
    )
    .spf("", &["mailgun.org"], "~all")
    .dkim(&["k1"])
    .dmarc(Quarantine, None),
    // Hosting (cpanel.net) with neither SPF nor DKIM (a risk).
    profile("hosting-cpanel", &[(0, "{slug}.mx.cpanel.net")]),
    // Hosting (plesk.com); SPF without includes.
    profile("hosting-plesk", &[(10, "mx1.plesk.com")])
        .spf("a mx", &[], "-all")
        .dkim(&["default"])
        .dmarc(PNone, None),
    // Hosting (hostgator.com).
    profile(
        "hosting-hostgator",
        &[(0, "mx1.hostgator.com"), (10, "mx2.hostgator.com")],
    )
    .spf("", &["websitewelcome.com"], "~all")
    .dkim(&["default"]),
    // Hosting (godaddy.com); SPF only.
    profile(
        "hosting-godaddy",
        &[(0, "smtp.godaddy.com"), (10, "mailstore1.godaddy.com")],
    )
    .spf("", &["secureserver.net"], "~all"),
    // Hosting (bluehost.com); DMARC none only.
    profile("hosting-bluehost", &[(0, "mail.bluehost.com")]).dmarc(PNone, None),
    // Hosting (hostinger.com).
    profile(
        "hosting-hostinger",
        &[(5, "mx1.hostinger.com"), (10, "mx2.hostinger.com")],
    )
    .spf("", &["_spf.mail.hostinger.com"], "~all")
    .dmarc(Quarantine, Some(100)),
    // Local: the company's own mail servers.
    profile(
        "local-own",
        &[(10, "mail.{domain}"), (20, "mail2.{domain}")],
    )
    .spf("mx a ip4:203.0.113.0/24", &[], "-all")
    .dkim(&["default"])
    .dmarc(Reject, None),
    // Local: a local hoster.
    profile(
        "local-hoster",
        &[(10, "mx00.ionos.de"), (20, "mx01.ionos.de")],
    )
    .spf("", &["_spf-eu.ionos.com"], "~all"),
    // Local with five includes split in strings, DKIM at three selectors.
    profile("local-many-includes", &[(10, "mx.{slug}-mail.net")])
        .spf(
            "mx",
            &[
                "spf.protection.outlook.com",
                "_spf.google.com",
                "sendgrid.net",
                "mailgun.org",
                "amazonses.com",
            ],
            "-all",
        )
        .split(50)
        .dkim(&["default", "google", "selector1"])
        .dmarc(Quarantine, Some(100)),
    // No MX: a parked domain (`v=spf1 -all`, DMARC reject).
    profile("no-mx-parked", &[])
        .spf("", &[], "-all")
        .dmarc(Reject, None),
    // No MX and no TXT at all.
    profile("no-mx-bare", &[]),
    // A null MX (RFC 7505).
    profile("no-mx-null", &[])
        .null_mx()
        .spf("", &[], "-all")
        .dmarc(Reject, None),
];

/// The profile named `name`.
pub fn by_name(name: &str) -> Option<&'static MailProfile> {
    CATALOG.iter().find(|p| p.name == name)
}

impl MailProfile {
    /// The records served for `domain`: `(owner name, record)`, owner names lowercase without
    /// the trailing dot.
    pub fn records(&self, domain: &str) -> Vec<(String, SimRecord)> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut records = Vec::new();
        for (preference, host) in self.mx_hosts(&domain) {
            records.push((domain.clone(), SimRecord::Mx { preference, host }));
        }
        if self.null_mx {
            records.push((
                domain.clone(),
                SimRecord::Mx {
                    preference: 0,
                    host: String::new(),
                },
            ));
        }
        for n in 0..self.verifications {
            records.push((
                domain.clone(),
                SimRecord::Txt(vec![verification(&domain, n)]),
            ));
        }
        // After the verifications: a truncated answer would lose the SPF record first.
        if let Some(spf) = self.spf_text() {
            let strings = match self.spf_split {
                Some(size) => chunks(&spf, size.clamp(1, 255)),
                None => vec![spf],
            };
            records.push((domain.clone(), SimRecord::Txt(strings)));
        }
        for selector in self.dkim {
            let key = format!(
                "v=DKIM1; k=rsa; p={}",
                pseudo_key(&format!("{selector}.{domain}"))
            );
            records.push((
                format!("{selector}._domainkey.{domain}"),
                SimRecord::Txt(chunks(&key, 255)),
            ));
        }
        if let Some((policy, pct)) = self.dmarc {
            let policy = match policy {
                DmarcPolicy::None => "none",
                DmarcPolicy::Quarantine => "quarantine",
                DmarcPolicy::Reject => "reject",
            };
            let pct = pct.map(|p| format!(" pct={p};")).unwrap_or_default();
            records.push((
                format!("_dmarc.{domain}"),
                SimRecord::Txt(vec![format!(
                    "v=DMARC1; p={policy};{pct} rua=mailto:dmarc@{domain}"
                )]),
            ));
        }
        records
    }

    /// The state a scan of `domain` served this profile ends in.
    pub fn expected_state(&self) -> ScanState {
        if self.mx.is_empty() {
            ScanState::NoMx
        } else {
            ScanState::Ok
        }
    }

    /// The signals a scan probing `selectors` reads, stated from the profile (not from its
    /// records): MX preferred first, the SPF text and includes, the probed selectors with a key
    /// (in probe order), the DMARC policy and coverage.
    pub fn expected_signals(&self, domain: &str, selectors: &[&str]) -> Signals {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut mx: Vec<MxRecord> = self
            .mx_hosts(&domain)
            .into_iter()
            .map(|(preference, host)| MxRecord { preference, host })
            .collect();
        mx.sort();
        let dkim_selectors: Vec<String> = selectors
            .iter()
            .filter(|s| self.dkim.contains(s))
            .map(|s| (*s).to_owned())
            .collect();
        Signals {
            mx,
            spf: self.spf_text(),
            spf_includes: self.spf_includes.iter().map(|s| (*s).to_owned()).collect(),
            dkim: !dkim_selectors.is_empty(),
            dkim_selectors,
            dmarc_policy: self.dmarc.map(|(policy, _)| policy),
            dmarc_coverage: self.dmarc.map(|(_, pct)| pct.unwrap_or(100)),
        }
    }

    fn mx_hosts(&self, domain: &str) -> Vec<(u16, String)> {
        let slug: String = domain.replace('.', "-").chars().take(50).collect();
        self.mx
            .iter()
            .map(|(preference, host)| {
                (
                    *preference,
                    host.replace("{slug}", &slug).replace("{domain}", domain),
                )
            })
            .collect()
    }

    fn spf_text(&self) -> Option<String> {
        let terms = self.spf?;
        let mut text = String::from("v=spf1");
        for term in terms
            .split_whitespace()
            .map(str::to_owned)
            .chain(self.spf_includes.iter().map(|i| format!("include:{i}")))
            .chain(std::iter::once(self.spf_all.to_owned()))
        {
            text.push(' ');
            text.push_str(&term);
        }
        Some(text)
    }
}

/// `text` in strings of at most `size` bytes (ASCII text).
fn chunks(text: &str, size: usize) -> Vec<String> {
    text.as_bytes()
        .chunks(size)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// FNV-1a, for deterministic filler.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Deterministic pseudo-random text over `alphabet`.
fn filler(seed: &str, len: usize, alphabet: &[u8]) -> String {
    let mut state = fnv(seed) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(alphabet[(state % alphabet.len() as u64) as usize])
        })
        .collect()
}

/// A 2048-bit RSA public key's length in base64 (392 characters), deterministic per name.
fn pseudo_key(seed: &str) -> String {
    const PREFIX: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA";
    const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    format!(
        "{PREFIX}{}IDAQAB",
        filler(seed, 392 - PREFIX.len() - 6, BASE64)
    )
}

/// The `n`th site-verification record of `domain`.
fn verification(domain: &str, n: usize) -> String {
    const VENDORS: &[&str] = &[
        "google-site-verification",
        "MS",
        "facebook-domain-verification",
        "atlassian-domain-verification",
        "docusign",
        "adobe-idp-site-verification",
        "apple-domain-verification",
        "stripe-verification",
        "zoom-verification",
        "slack-domain-verification",
        "miro-verification",
        "hubspot-developer-verification",
        "onetrust-domain-verification",
        "globalsign-domain-verification",
    ];
    let vendor = VENDORS[n % VENDORS.len()];
    let token = filler(&format!("{n}.{domain}"), 48, b"0123456789abcdef");
    format!("{vendor}={token}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hunter_domain::scan::DnsAnswers;

    fn answers(profile: &MailProfile, domain: &str, selectors: &[&str]) -> DnsAnswers {
        let mut answers = DnsAnswers::default();
        for (owner, record) in profile.records(domain) {
            match record {
                SimRecord::Mx { preference, host } if owner == domain && !host.is_empty() => {
                    answers.mx.push(MxRecord { preference, host });
                }
                SimRecord::Mx { .. } => {}
                SimRecord::Txt(strings) => {
                    let text = strings.concat();
                    if owner == domain {
                        answers.apex_txt.push(text);
                    } else if owner == format!("_dmarc.{domain}") {
                        answers.dmarc_txt.push(text);
                    } else if let Some(selector) = selectors
                        .iter()
                        .find(|s| owner == format!("{s}._domainkey.{domain}"))
                    {
                        answers.dkim_txt.push(((*selector).to_owned(), vec![text]));
                    }
                }
            }
        }
        answers
    }

    #[test]
    fn when_records_are_read_should_say_what_each_profile_states() {
        let selectors = ["default", "google", "selector1", "selector2"];
        for profile in CATALOG {
            let domain = "contoso.com";
            let mut read = Signals::read(&answers(profile, domain, &selectors));
            // The reader keeps selectors in answer order; the profile states them in probe order.
            read.dkim_selectors
                .sort_by_key(|s| selectors.iter().position(|p| p == s));
            assert_eq!(
                read,
                profile.expected_signals(domain, &selectors),
                "{}",
                profile.name
            );
        }
    }

    #[test]
    fn when_profiles_are_listed_should_have_unique_names_and_valid_strings() {
        for (i, profile) in CATALOG.iter().enumerate() {
            assert!(
                CATALOG[i + 1..].iter().all(|p| p.name != profile.name),
                "{}",
                profile.name
            );
            assert_eq!(by_name(profile.name), Some(profile));
            for (_, record) in profile.records("tidewater-consulting.co.uk") {
                if let SimRecord::Txt(strings) = record {
                    assert!(strings.iter().all(|s| s.len() <= 255), "{}", profile.name);
                }
            }
        }
    }

    #[test]
    fn when_the_catalog_is_listed_should_cover_every_rule() {
        let hosts: Vec<String> = CATALOG
            .iter()
            .flat_map(|p| p.mx_hosts("contoso.com"))
            .map(|(_, h)| h)
            .collect();
        for suffix in [
            ".mail.protection.outlook.com",
            ".olc.protection.outlook.com",
            "00.protection.outlook.com",
            "outlook.office365.com",
            "aspmx.l.google.com",
            "smtp.google.com",
            "googlemail.com",
            "yandex.ru",
            "yandex.net",
            "zoho.com",
            "zoho.eu",
            "zoho.in",
            "amazonses.com",
            "amazonaws.com",
            "sendgrid.net",
            "mailgun.org",
            "cpanel.net",
            "plesk.com",
            "hostgator.com",
            "godaddy.com",
            "bluehost.com",
            "hostinger.com",
            "mail.contoso.com",
            "ionos.de",
        ] {
            assert!(hosts.iter().any(|h| h.ends_with(suffix)), "{suffix}");
        }
        let includes: Vec<usize> = CATALOG
            .iter()
            .filter(|p| p.spf.is_some())
            .map(|p| p.spf_includes.len())
            .collect();
        for n in 0..=5 {
            assert!(includes.contains(&n), "SPF with {n} includes");
        }
        assert!(CATALOG.iter().any(|p| p.spf.is_none()));
        assert!(CATALOG.iter().any(|p| p.spf_split.is_some()));
        for selector in ["default", "google", "selector1", "selector2"] {
            assert!(
                CATALOG.iter().any(|p| p.dkim.contains(&selector)),
                "{selector}"
            );
        }
        assert!(CATALOG.iter().any(|p| p.dkim.is_empty()));
        for policy in [PNone, Quarantine, Reject] {
            for with_pct in [false, true] {
                assert!(
                    CATALOG.iter().any(|p| matches!(p.dmarc, Some((q, pct)) if q == policy && pct.is_some() == with_pct)),
                    "{policy:?} pct={with_pct}"
                );
            }
        }
        assert!(CATALOG.iter().any(|p| p.dmarc.is_none()));
        assert!(CATALOG.iter().any(|p| p.mx.is_empty() && !p.null_mx));
        assert!(CATALOG.iter().any(|p| p.null_mx));
        assert!(CATALOG.iter().any(|p| p.mx.len() > 1));
        assert!(CATALOG.iter().any(|p| p.verifications > 0));
    }

    #[test]
    fn when_a_record_is_long_should_split_it_and_join_back() {
        let profile = by_name("local-many-includes").unwrap();
        let spf = profile
            .records("contoso.com")
            .into_iter()
            .find_map(|(_, r)| match r {
                SimRecord::Txt(s) if s.concat().starts_with("v=spf1") => Some(s),
                _ => None,
            })
            .unwrap();
        assert!(spf.len() > 2);
        assert_eq!(Some(spf.concat()), profile.spf_text());
        assert_eq!(pseudo_key("a").len(), 392);
        assert_eq!(pseudo_key("a"), pseudo_key("a"));
    }
}
