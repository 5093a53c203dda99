//! Deterministic referral fixtures in Microsoft's Partner Center shape, and loading them from a file.
//!
//! [`generate_referrals`] gives the same output for the same `(count, seed)` on every machine: all
//! dates are relative to [`SEED_EPOCH`], never to the clock. The mix covers every ingestion outcome
//! of Hunter's rules: eligible referrals whose domain comes from a customer e-mail, an `External`
//! profile id (bare domain or URL) or a website field; and every skip reason (`not_incoming`,
//! `status_closed`, `substatus_excluded`, `no_domain`, `invalid_payload`). The first 16 referrals
//! of any seed cover each of these cases once (in a seed-dependent order); the rest are drawn at
//! random with realistic weights.

use std::borrow::Cow;
use std::num::NonZeroU128;
use std::path::Path;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

/// `2026-11-01T00:00:00Z` in Unix seconds: every generated date lies in the 90 days before it.
pub const SEED_EPOCH_UNIX: i64 = 1_793_491_200;
/// [`SEED_EPOCH_UNIX`] as text.
pub const SEED_EPOCH: &str = "2026-11-01T00:00:00Z";

/// Our own partner organization (the top-level `team` and `organization*` fields).
const ORGANIZATION_ID: &str = "0e1d2c3b-4a59-6877-8695-a4b3c2d1e0f9";
const ORGANIZATION_NAME: &str = "Ridgeline IT Partners";
const PARTNER_DOMAIN: &str = "ridgeline-partners.com";

#[derive(Debug, Clone)]
struct Company {
    name: Cow<'static, str>,
    /// Unicode form for IDN companies (e.g. `bücher-gmbh.de`).
    domain: Cow<'static, str>,
    country: &'static str,
    state: Option<&'static str>,
    city: &'static str,
    currency: &'static str,
    locale: &'static str,
}

const fn company(
    name: &'static str,
    domain: &'static str,
    country: &'static str,
    state: Option<&'static str>,
    city: &'static str,
    currency: &'static str,
    locale: &'static str,
) -> Company {
    Company {
        name: Cow::Borrowed(name),
        domain: Cow::Borrowed(domain),
        country,
        state,
        city,
        currency,
        locale,
    }
}

/// Companies with ASCII domains; drawn with a bias to the first ones so domains repeat.
const COMPANIES: &[Company] = &[
    company(
        "Contoso Ltd",
        "contoso.com",
        "US",
        Some("WA"),
        "Redmond",
        "USD",
        "en-US",
    ),
    company(
        "Fabrikam Inc",
        "fabrikam.com",
        "US",
        Some("WA"),
        "Seattle",
        "USD",
        "en-US",
    ),
    company(
        "Northwind Traders",
        "northwindtraders.com",
        "US",
        Some("OR"),
        "Portland",
        "USD",
        "en-US",
    ),
    company(
        "Adventure Works Cycles",
        "adventure-works.com",
        "US",
        Some("WA"),
        "Bothell",
        "USD",
        "en-US",
    ),
    company(
        "Tailspin Toys UK",
        "tailspintoys.co.uk",
        "GB",
        None,
        "Manchester",
        "GBP",
        "en-GB",
    ),
    company(
        "Wide World Importers",
        "wideworldimporters.com",
        "US",
        Some("CA"),
        "San Francisco",
        "USD",
        "en-US",
    ),
    company(
        "Woodgrove Bank",
        "woodgrovebank.com",
        "US",
        Some("NY"),
        "New York",
        "USD",
        "en-US",
    ),
    company(
        "Alpine Ski House",
        "alpineskihouse.com",
        "AT",
        None,
        "Innsbruck",
        "EUR",
        "de-AT",
    ),
    company(
        "Litware Inc",
        "litwareinc.com",
        "US",
        Some("TX"),
        "Austin",
        "USD",
        "en-US",
    ),
    company(
        "Proseware Inc",
        "proseware.com",
        "US",
        Some("IL"),
        "Chicago",
        "USD",
        "en-US",
    ),
    company(
        "Coho Winery",
        "cohowinery.com",
        "US",
        Some("CA"),
        "Napa",
        "USD",
        "en-US",
    ),
    company(
        "Lamna Healthcare",
        "lamnahealthcare.com",
        "US",
        Some("MA"),
        "Boston",
        "USD",
        "en-US",
    ),
    company(
        "Trey Research",
        "treyresearch.net",
        "GB",
        None,
        "London",
        "GBP",
        "en-GB",
    ),
    company(
        "Relecloud",
        "relecloud.com",
        "NL",
        None,
        "Amsterdam",
        "EUR",
        "nl-NL",
    ),
    company(
        "A. Datum Corporation",
        "adatum.com",
        "US",
        Some("CO"),
        "Denver",
        "USD",
        "en-US",
    ),
];

/// First words and kinds of smaller customers' names (a kind's domain slug beside it).
const NAME_WORDS: &[&str] = &[
    "Alpine",
    "Bellows",
    "Cobalt",
    "Driftwood",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
    "Ivy",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Nimbus",
    "Orchard",
    "Pinecrest",
    "Quarry",
    "Riverside",
    "Summit",
    "Tidewater",
    "Upland",
    "Vantage",
    "Willow",
    "Yarrow",
    "Zephyr",
];
const NAME_KINDS: &[(&str, &str)] = &[
    ("Consulting", "consulting"),
    ("Logistics", "logistics"),
    ("Dental Group", "dental"),
    ("Foods", "foods"),
    ("Energy", "energy"),
    ("Legal LLP", "legal"),
    ("Retail", "retail"),
    ("Labs", "labs"),
];

/// A smaller customer in the country of `near` (its address, currency, locale and top-level
/// domain), drawn with a bias so that some recur.
fn smaller_customer(rng: &mut fastrand::Rng, near: &Company) -> Company {
    let count = NAME_WORDS.len() * NAME_KINDS.len();
    let index = rng.usize(..count).min(rng.usize(..count));
    let word = NAME_WORDS[index % NAME_WORDS.len()];
    let (kind, slug) = NAME_KINDS[index / NAME_WORDS.len()];
    let tld = near.domain.split_once('.').map_or("com", |(_, tld)| tld);
    Company {
        name: Cow::Owned(format!("{word} {kind}")),
        domain: Cow::Owned(format!("{}-{slug}.{tld}", ascii_fold(word))),
        ..near.clone()
    }
}

/// Companies whose domain is an IDN (Unicode; Hunter must punycode it).
const IDN_COMPANIES: &[Company] = &[
    company(
        "Bücher GmbH",
        "bücher-gmbh.de",
        "DE",
        None,
        "München",
        "EUR",
        "de-DE",
    ),
    company(
        "Café Lumière SARL",
        "café-lumière.fr",
        "FR",
        None,
        "Lyon",
        "EUR",
        "fr-FR",
    ),
    company(
        "Ålesund Fisk AS",
        "ålesundfisk.no",
        "NO",
        None,
        "Ålesund",
        "NOK",
        "nb-NO",
    ),
    company(
        "Müller Maschinenbau AG",
        "müller-maschinenbau.ch",
        "CH",
        None,
        "Zürich",
        "CHF",
        "de-CH",
    ),
];

/// Free-mail domains (all in Hunter's consumer list).
const CONSUMER_DOMAINS: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "hotmail.com",
    "yahoo.com",
    "icloud.com",
    "gmx.de",
    "web.de",
    "yahoo.co.uk",
    "proton.me",
    "hotmail.fr",
    "live.com",
    "googlemail.com",
];

const FIRST_NAMES: &[&str] = &[
    "Ada", "Grace", "Alan", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Jürgen",
    "Chloé", "Søren", "Priya", "Kenji", "Amara", "Mateo",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Weiß",
    "Lefèvre",
    "Østergaard",
    "Natarajan",
    "Sato",
    "Okafor",
    "García",
];
const PARTNER_PEOPLE: &[(&str, &str)] = &[
    ("Sam", "Seller"),
    ("Riley", "Architect"),
    ("Jordan", "Presales"),
];

/// (referral name suffix, product id, service id, solution id, solution name)
const NEEDS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "Microsoft 365 migration",
        "Microsoft365",
        "Licensing",
        "SOL-123-456",
        "Mail migration",
    ),
    (
        "Azure landing zone",
        "Azure",
        "Consulting",
        "SOL-234-567",
        "Cloud adoption",
    ),
    (
        "Teams Phone rollout",
        "Teams",
        "Deployment",
        "SOL-345-678",
        "Modern calling",
    ),
    (
        "Dynamics 365 Sales",
        "Dynamics365",
        "Implementation",
        "SOL-456-789",
        "CRM onboarding",
    ),
    (
        "Defender for Business",
        "Security",
        "ManagedServices",
        "SOL-567-890",
        "Managed security",
    ),
    (
        "Copilot readiness",
        "Copilot",
        "Consulting",
        "SOL-678-901",
        "AI readiness",
    ),
];
const INDUSTRIES: &[&str] = &[
    "Education",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "FinancialServices",
    "Government",
];
/// Contract: "1to9employees, 10to50employees, ... Morethan20000employees"; the middle ones are a guess.
const SIZES: &[&str] = &[
    "1to9employees",
    "10to50employees",
    "51to250employees",
    "251to1000employees",
    "1001to5000employees",
    "5001to10000employees",
    "10001to20000employees",
    "Morethan20000employees",
];

/// Where the customer's domain can (or cannot) be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContactStyle {
    /// Company e-mails only (first contact decides).
    Company,
    /// First contact on a consumer domain, second on the company domain.
    ConsumerThenCompany,
    /// Consumer e-mails only; `ids` has an `External` id holding the bare domain.
    ConsumerWithExternalId,
    /// Consumer e-mails only; the `External` id is a URL.
    ConsumerWithExternalUrl,
    /// Company e-mails on an IDN domain.
    Idn,
    /// Company e-mails on a subdomain (`mail.contoso.com`).
    Subdomain,
    /// No contacts, `ids` is `{}`, a website field holds the URL.
    WebsiteOnly,
    /// Consumer e-mails only and nothing else: `no_domain`.
    ConsumerOnly,
    /// No usable customer profile at all: `no_domain`.
    NoProfile,
}

/// (direction, status, substatus)
type Lifecycle = (&'static str, &'static str, &'static str);

const NEW_PENDING: Lifecycle = ("Incoming", "New", "Pending");
const NEW_RECEIVED: Lifecycle = ("Incoming", "New", "Received");
const ACTIVE_ACCEPTED: Lifecycle = ("Incoming", "Active", "Accepted");
const CLOSED_WON: Lifecycle = ("Incoming", "Closed", "Won");
const CLOSED_LOST: Lifecycle = ("Incoming", "Closed", "Lost");
const CLOSED_DECLINED: Lifecycle = ("Incoming", "Closed", "Declined");
const CLOSED_EXPIRED: Lifecycle = ("Incoming", "Closed", "Expired");
const OUT_NEW_PENDING: Lifecycle = ("Outgoing", "New", "Pending");
const OUT_ACTIVE_ACCEPTED: Lifecycle = ("Outgoing", "Active", "Accepted");
const OUT_CLOSED_WON: Lifecycle = ("Outgoing", "Closed", "Won");
/// Off-contract on purpose: an open status with an ending substatus (`substatus_excluded`).
const NEW_EXPIRED: Lifecycle = ("Incoming", "New", "Expired");
/// Off-contract on purpose: Hunter's plan names an `Error` substatus Microsoft does not document.
const ACTIVE_ERROR: Lifecycle = ("Incoming", "Active", "Error");

#[derive(Debug, Clone, Copy)]
struct Scenario {
    lifecycle: Lifecycle,
    contacts: ContactStyle,
    /// Index into [`COMPANIES`], else drawn at random.
    company: Option<usize>,
    /// The referral has no `id` (`invalid_payload`).
    invalid: bool,
}

const fn scenario(
    lifecycle: Lifecycle,
    contacts: ContactStyle,
    company: Option<usize>,
) -> Scenario {
    Scenario {
        lifecycle,
        contacts,
        company,
        invalid: false,
    }
}

/// One of each case; the first `min(count, 16)` referrals are these, shuffled by the seed.
/// The first three are eligible referrals of the same company found three different ways.
const COVERAGE: &[Scenario] = &[
    scenario(NEW_PENDING, ContactStyle::Company, Some(0)),
    scenario(NEW_RECEIVED, ContactStyle::ConsumerThenCompany, Some(0)),
    scenario(
        ACTIVE_ACCEPTED,
        ContactStyle::ConsumerWithExternalId,
        Some(0),
    ),
    scenario(NEW_PENDING, ContactStyle::Idn, None),
    scenario(ACTIVE_ACCEPTED, ContactStyle::WebsiteOnly, Some(1)),
    scenario(NEW_PENDING, ContactStyle::Subdomain, Some(4)),
    scenario(CLOSED_WON, ContactStyle::Company, None),
    scenario(CLOSED_LOST, ContactStyle::Company, None),
    scenario(CLOSED_DECLINED, ContactStyle::ConsumerWithExternalUrl, None),
    scenario(CLOSED_EXPIRED, ContactStyle::Company, None),
    scenario(OUT_NEW_PENDING, ContactStyle::Company, None),
    scenario(OUT_ACTIVE_ACCEPTED, ContactStyle::ConsumerOnly, None),
    scenario(NEW_EXPIRED, ContactStyle::Company, None),
    scenario(NEW_PENDING, ContactStyle::ConsumerOnly, None),
    scenario(NEW_RECEIVED, ContactStyle::NoProfile, None),
    Scenario {
        lifecycle: NEW_PENDING,
        contacts: ContactStyle::Company,
        company: None,
        invalid: true,
    },
];

/// Picks from `(item, weight)` pairs.
fn weighted<T: Copy>(rng: &mut fastrand::Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut roll = rng.u32(0..total.max(1));
    for &(item, weight) in items {
        if roll < weight {
            return item;
        }
        roll -= weight;
    }
    items[items.len() - 1].0
}

fn pick<T: Copy>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())]
}

fn random_scenario(rng: &mut fastrand::Rng) -> Scenario {
    let lifecycle = weighted(
        rng,
        &[
            (NEW_PENDING, 30),
            (NEW_RECEIVED, 10),
            (ACTIVE_ACCEPTED, 20),
            (CLOSED_WON, 5),
            (CLOSED_LOST, 4),
            (CLOSED_DECLINED, 4),
            (CLOSED_EXPIRED, 5),
            (OUT_NEW_PENDING, 6),
            (OUT_ACTIVE_ACCEPTED, 4),
            (OUT_CLOSED_WON, 2),
            (NEW_EXPIRED, 1),
            (ACTIVE_ERROR, 1),
        ],
    );
    let contacts = weighted(
        rng,
        &[
            (ContactStyle::Company, 45),
            (ContactStyle::ConsumerThenCompany, 10),
            (ContactStyle::ConsumerWithExternalId, 8),
            (ContactStyle::ConsumerWithExternalUrl, 5),
            (ContactStyle::Idn, 5),
            (ContactStyle::Subdomain, 5),
            (ContactStyle::WebsiteOnly, 6),
            (ContactStyle::ConsumerOnly, 8),
            (ContactStyle::NoProfile, 3),
        ],
    );
    Scenario {
        lifecycle,
        contacts,
        company: None,
        invalid: false,
    }
}

/// A version-4 UUID's bits (RFC 4122 variant), so ids look like Microsoft's GUIDs.
fn uuid_bits(rng: &mut fastrand::Rng) -> u128 {
    (rng.u128(..) & !(0xf000_u128 << 64) & !(0xc000_u128 << 48))
        | (0x4000_u128 << 64)
        | (0x8000_u128 << 48)
}

fn uuid(rng: &mut fastrand::Rng) -> String {
    uuid::Uuid::from_u128(uuid_bits(rng)).to_string()
}

/// `2026-11-01T00:00:00`: what `%Y-%m-%dT%H:%M:%S` gives (for four-digit years, as a seed's are),
/// written digit by digit: seeding and serving format several per referral, and `format!`'s
/// padded fields cost several times as much.
fn seconds(t: DateTime<Utc>) -> String {
    use chrono::{Datelike as _, Timelike as _};
    let mut out = String::with_capacity(30);
    let fields = [
        (t.year().unsigned_abs(), 4, "-"),
        (t.month(), 2, "-"),
        (t.day(), 2, "T"),
        (t.hour(), 2, ":"),
        (t.minute(), 2, ":"),
        (t.second(), 2, ""),
    ];
    for (value, digits, separator) in fields {
        push_digits(&mut out, value, digits);
        out.push_str(separator);
    }
    out
}

/// `value`'s last `digits` decimal digits, zero-padded: `{value:0digits$}` for a value that fits.
fn push_digits(out: &mut String, value: u32, digits: u32) {
    for place in (0..digits).rev() {
        let digit = value / 10_u32.pow(place) % 10;
        out.push(char::from_digit(digit, 10).unwrap_or('0'));
    }
}

/// Fractional seconds the way Partner Center varies them: 7 digits, 2, 3 or none.
fn timestamp(t: DateTime<Utc>, rng: &mut fastrand::Rng) -> String {
    let mut out = seconds(t);
    let ticks = t.timestamp_subsec_nanos() / 100;
    let (fraction, digits) = match rng.u8(0..10) {
        0..=4 => (ticks, 7),
        5 | 6 => (ticks / 100_000, 2),
        7 => (ticks / 10_000, 3),
        _ => (0, 0),
    };
    if digits > 0 {
        out.push('.');
        push_digits(&mut out, fraction, digits);
    }
    out.push('Z');
    out
}

fn plain_timestamp(t: DateTime<Utc>) -> String {
    let mut out = seconds(t);
    out.push('Z');
    out
}

/// ASCII local part of an e-mail address for a (possibly accented) name.
fn ascii_fold(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        match c {
            'ä' | 'æ' => out.push_str("ae"),
            'ö' | 'ø' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'å' => out.push_str("aa"),
            'ß' => out.push_str("ss"),
            'é' | 'è' | 'ê' => out.push('e'),
            'í' => out.push('i'),
            'á' | 'à' => out.push('a'),
            c if c.is_ascii_alphanumeric() => out.push(c),
            _ => {}
        }
    }
    out
}

// A generated referral as typed values, serialized straight to text: a `json!` tree cost ~150
// allocations per referral, and the simulator generates each referral again whenever it is
// read. Fields are declared in byte order of their names, the order a `serde_json::Value`
// object keeps, so the text is the same either way.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GeneratedReferral {
    accepted_date_time: Option<String>,
    closed_date_time: Option<String>,
    consent: Consent,
    created_date_time: String,
    /// Absent (`None`), `null` (`Some(None)`) or a profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_profile: Option<Option<Profile>>,
    details: Details,
    direction: &'static str,
    #[serde(rename = "eTag")]
    etag: String,
    engagement_id: String,
    expiration_date_time: Option<String>,
    external_reference_id: (),
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    invite_context: InviteContext,
    is_spam: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<Links>,
    name: String,
    organization_id: &'static str,
    organization_name: &'static str,
    qualification: &'static str,
    quality: &'static str,
    sales_stage: Option<&'static str>,
    status: &'static str,
    status_reason: (),
    substatus: &'static str,
    target: [Target; 1],
    team: Vec<Person>,
    #[serde(rename = "type")]
    referral_type: &'static str,
    updated_date_time: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Consent {
    consent_to_contact: bool,
    consent_to_share_referral_with_microsoft_sellers: bool,
    consent_to_to_share_info_with_others: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Details {
    closing_date_time: String,
    currency: &'static str,
    /// A number, the number as text, or `null`: Partner Center sends all three.
    deal_value: Value,
    notes: String,
    requirements: Requirements,
}

#[derive(Serialize)]
struct Requirements {
    industries: [Named; 1],
    products: [Named; 1],
    services: [Named; 1],
    solutions: [Solution; 1],
}

#[derive(Serialize)]
struct Named {
    id: &'static str,
}

#[derive(Serialize)]
struct Solution {
    id: &'static str,
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InviteContext {
    assistance_request_code: &'static str,
    notes: &'static str,
}

#[derive(Serialize)]
struct Links {
    #[serde(rename = "self")]
    this: Link,
}

#[derive(Serialize)]
struct Link {
    method: &'static str,
    uri: String,
}

#[derive(Serialize)]
struct Target {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A member of the partner's team (or a Microsoft seller on it).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Person {
    email: String,
    first_name: &'static str,
    last_name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    address: Address,
    #[serde(skip_serializing_if = "Option::is_none")]
    company_website: Option<String>,
    ids: Ids,
    name: Cow<'static, str>,
    size: &'static str,
    team: Vec<Contact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    website: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    website_url: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Address {
    address_line1: String,
    city: &'static str,
    country: &'static str,
    postal_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
}

/// `ids` as Partner Center sends it: a list, or (off-contract, seen in the wild) `{}`.
#[derive(Serialize)]
#[serde(untagged)]
enum Ids {
    List(Vec<ProfileId>),
    EmptyObject {},
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProfileId {
    id: String,
    profile_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Contact {
    contact_preference: ContactPreference,
    email: String,
    first_name: &'static str,
    last_name: &'static str,
    phone_number: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContactPreference {
    disable_notifications: bool,
    locale: &'static str,
}

fn contact(
    rng: &mut fastrand::Rng,
    email_domain: &str,
    consumer: bool,
    locale: &'static str,
) -> Contact {
    let first = pick(rng, FIRST_NAMES);
    let last = pick(rng, LAST_NAMES);
    let (f, l) = (ascii_fold(first), ascii_fold(last));
    let local = if consumer {
        format!("{f}.{l}{}", rng.u8(1..99))
    } else {
        match rng.u8(0..3) {
            0 => format!("{f}.{l}"),
            1 => format!("{}{l}", f.chars().next().unwrap_or('x')),
            _ => f,
        }
    };
    let mut email = format!("{local}@{email_domain}");
    if !consumer && rng.u8(0..12) == 0 {
        // Real data is not normalized: mixed case and stray spaces happen.
        email = format!(
            " {}",
            email.replace(email_domain, &email_domain.to_uppercase())
        );
    }
    let phone_number = format!("+1 555 01{:02}", rng.u8(0..100));
    Contact {
        contact_preference: ContactPreference {
            disable_notifications: rng.u8(0..5) == 0,
            locale,
        },
        email,
        first_name: first,
        last_name: last,
        phone_number,
    }
}

fn duns(rng: &mut fastrand::Rng) -> ProfileId {
    ProfileId {
        id: format!("{:09}", rng.u32(100_000_000..1_000_000_000)),
        profile_type: "Duns",
    }
}

/// `customerProfile` for a scenario: absent (`None`), `null` (`Some(None)`) or a profile.
fn customer_profile(
    rng: &mut fastrand::Rng,
    style: ContactStyle,
    company: &Company,
) -> Option<Option<Profile>> {
    let consumer = |rng: &mut fastrand::Rng| pick(rng, CONSUMER_DOMAINS);
    let mut team = Vec::new();
    let mut ids = Ids::List(Vec::new());
    let mut website = None;
    match style {
        ContactStyle::Company | ContactStyle::Idn => {
            for _ in 0..rng.usize(1..=3) {
                team.push(contact(rng, &company.domain, false, company.locale));
            }
        }
        ContactStyle::Subdomain => {
            let sub = pick(rng, &["mail", "corp", "eu", "sales"]);
            team.push(contact(
                rng,
                &format!("{sub}.{}", company.domain),
                false,
                company.locale,
            ));
            if rng.bool() {
                team.push(contact(rng, &company.domain, false, company.locale));
            }
        }
        ContactStyle::ConsumerThenCompany => {
            let free = consumer(rng);
            team.push(contact(rng, free, true, company.locale));
            team.push(contact(rng, &company.domain, false, company.locale));
        }
        ContactStyle::ConsumerWithExternalId | ContactStyle::ConsumerWithExternalUrl => {
            for _ in 0..rng.usize(1..=2) {
                let free = consumer(rng);
                team.push(contact(rng, free, true, company.locale));
            }
            let external = if style == ContactStyle::ConsumerWithExternalId {
                company.domain.to_string()
            } else {
                pick(rng, &["https://www.{}/", "http://{}/about", "https://{}"])
                    .replace("{}", &company.domain)
            };
            let external = ProfileId {
                id: external,
                profile_type: "External",
            };
            ids = Ids::List(vec![duns(rng), external]);
        }
        ContactStyle::WebsiteOnly => {
            ids = Ids::EmptyObject {};
            let key = pick(rng, &["website", "websiteUrl", "companyWebsite"]);
            website = Some((key, format!("https://www.{}", company.domain)));
        }
        ContactStyle::ConsumerOnly => {
            for _ in 0..rng.usize(1..=2) {
                let free = consumer(rng);
                team.push(contact(rng, free, true, company.locale));
            }
            ids = if rng.bool() {
                Ids::EmptyObject {}
            } else {
                Ids::List(vec![duns(rng)])
            };
        }
        ContactStyle::NoProfile => match rng.u8(0..3) {
            0 => return None,
            1 => return Some(None),
            _ => ids = Ids::EmptyObject {},
        },
    }
    let address = Address {
        address_line1: format!("{} Main St", rng.u16(1..2000)),
        city: company.city,
        postal_code: format!("{:05}", rng.u32(1000..99_999)),
        country: company.country,
        state: company.state,
    };
    let mut profile = Profile {
        address,
        company_website: None,
        ids,
        name: company.name.clone(),
        size: pick(rng, SIZES),
        team,
        website: None,
        website_url: None,
    };
    match website {
        Some(("website", url)) => profile.website = Some(url),
        Some(("websiteUrl", url)) => profile.website_url = Some(url),
        Some((_, url)) => profile.company_website = Some(url),
        None => {}
    }
    Some(Some(profile))
}

fn partner_team(rng: &mut fastrand::Rng, shared: bool) -> Vec<Person> {
    let mut team: Vec<Person> = PARTNER_PEOPLE
        .iter()
        .take(rng.usize(1..=2))
        .map(|&(first, last)| Person {
            email: format!("{}@{PARTNER_DOMAIN}", ascii_fold(first)),
            first_name: first,
            last_name: last,
        })
        .collect();
    if shared && rng.bool() {
        // A Microsoft seller involved (co-sell); never a customer contact.
        team.push(Person {
            email: "morgan.seller@microsoft.com".to_owned(),
            first_name: "Morgan",
            last_name: "Microsoft",
        });
    }
    team
}

/// One referral of `scenario` (the random draws in a fixed order: the seed's corpus depends on
/// it), and its engagement id's bits.
fn referral(
    rng: &mut fastrand::Rng,
    scenario: Scenario,
    previous_engagement: Option<u128>,
) -> (GeneratedReferral, u128) {
    let epoch = DateTime::from_timestamp(SEED_EPOCH_UNIX, 0).unwrap_or_default();
    let (direction, status, substatus) = scenario.lifecycle;
    let company = match (scenario.contacts, scenario.company) {
        (ContactStyle::Idn, _) => IDN_COMPANIES[rng.usize(..IDN_COMPANIES.len())].clone(),
        (_, Some(index)) => COMPANIES[index % COMPANIES.len()].clone(),
        _ => {
            // Biased to the first companies, so several referrals share a domain; most are
            // one of many smaller customers, as in a real pipeline.
            let known = &COMPANIES[rng
                .usize(..COMPANIES.len())
                .min(rng.usize(..COMPANIES.len()))];
            if rng.u8(0..10) < 6 {
                smaller_customer(rng, known)
            } else {
                known.clone()
            }
        }
    };
    let id = uuid(rng);
    let engagement = match previous_engagement {
        Some(previous) if rng.u8(0..8) == 0 => previous,
        _ => uuid_bits(rng),
    };
    let age = Duration::seconds(rng.i64(3_600..90 * 86_400))
        + Duration::nanoseconds(rng.i64(0..1_000_000_000));
    let created = epoch - age;
    let max_update = age.num_seconds().min(20 * 86_400);
    let updated = created
        + Duration::seconds(rng.i64(0..=max_update.max(0)))
        + Duration::milliseconds(rng.i64(0..1000));
    let updated = updated.min(epoch);
    let accepted = (status != "New").then(|| created + (updated - created) / 2);
    let closed = (status == "Closed").then_some(updated);
    let expiration = (status == "New").then(|| created + Duration::days(14));
    let referral_type = if rng.u8(0..100) < 45 {
        "Shared"
    } else {
        "Independent"
    };
    let qualification = weighted(
        rng,
        &[
            ("SalesQualified", 35),
            ("MarketingQualified", 30),
            ("Direct", 20),
            ("None", 15),
        ],
    );
    let need = pick(rng, NEEDS);
    let deal = u64::from(rng.u32(10..500)) * 500;
    let deal_value = match rng.u8(0..20) {
        0 => Value::Null,
        1 => Value::String(deal.to_string()),
        _ => Value::from(deal),
    };
    let customer_profile = customer_profile(rng, scenario.contacts, &company);
    let target_type = if rng.u8(0..4) == 0 {
        "BusinessProfileLocation"
    } else {
        "SolutionProfile"
    };
    let target_id = if target_type == "SolutionProfile" {
        need.3.to_owned()
    } else {
        uuid(rng)
    };
    let closing = plain_timestamp(epoch + Duration::days(rng.i64(30..180)));
    let created_date_time = timestamp(created, rng);
    let updated_date_time = timestamp(updated, rng);
    let accepted_date_time = accepted.map(|t| timestamp(t, rng));
    let closed_date_time = closed.map(|t| timestamp(t, rng));
    let etag = format!("\"{}\"", uuid(rng));
    let notes = format!(
        "{} for {} ({} seats)",
        need.0,
        company.name,
        rng.u16(5..2000)
    );
    let industry = pick(rng, INDUSTRIES);
    let team = partner_team(rng, referral_type == "Shared");
    let links = Links {
        this: Link {
            method: "GET",
            uri: format!("https://api.partner.microsoft.com/v1.0/engagements/referrals/{id}"),
        },
    };
    let (id, links) = if scenario.invalid {
        (None, None)
    } else {
        (Some(id), Some(links))
    };
    let referral = GeneratedReferral {
        accepted_date_time,
        closed_date_time,
        consent: Consent {
            consent_to_contact: true,
            consent_to_share_referral_with_microsoft_sellers: referral_type == "Shared",
            consent_to_to_share_info_with_others: true,
        },
        created_date_time,
        customer_profile,
        details: Details {
            closing_date_time: closing,
            currency: company.currency,
            deal_value,
            notes,
            requirements: Requirements {
                industries: [Named { id: industry }],
                products: [Named { id: need.1 }],
                services: [Named { id: need.2 }],
                solutions: [Solution {
                    id: need.3,
                    name: need.4,
                    kind: "Name",
                }],
            },
        },
        direction,
        etag,
        engagement_id: uuid::Uuid::from_u128(engagement).to_string(),
        expiration_date_time: expiration.map(plain_timestamp),
        external_reference_id: (),
        id,
        invite_context: InviteContext {
            assistance_request_code: "Unknown",
            notes: "",
        },
        is_spam: false,
        links,
        name: format!("{} - {}", company.name, need.0),
        organization_id: ORGANIZATION_ID,
        organization_name: ORGANIZATION_NAME,
        qualification,
        quality: "Unknown",
        sales_stage: (status == "Closed" && substatus == "Won").then_some("100"),
        status,
        status_reason: (),
        substatus,
        target: [Target {
            id: target_id,
            kind: target_type,
        }],
        team,
        referral_type,
        updated_date_time,
    };
    (referral, engagement)
}

/// `count` referrals in Partner Center's shape, the same for the same `seed` (see the module docs).
pub fn generate_referrals(count: usize, seed: u64) -> Vec<Value> {
    referral_stream(count, seed).collect()
}

/// [`generate_referrals`] one at a time, so that N referrals never need to be held at once.
pub fn referral_stream(count: usize, seed: u64) -> impl Iterator<Item = Value> {
    points(count, seed).map(|(_, referral)| to_value(&referral))
}

/// One referral of [`seeded_referrals`]: what generates it again alone, and the referral,
/// generated, to be written as text whole or in part.
pub struct SeededReferral {
    /// What generates it again alone.
    pub point: SeedPoint,
    referral: GeneratedReferral,
}

impl std::fmt::Debug for SeededReferral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededReferral")
            .field("point", &self.point)
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl SeededReferral {
    /// Its `id` (none for a referral generated without one).
    pub fn id(&self) -> Option<&str> {
        self.referral.id.as_deref()
    }

    /// Its compact JSON text.
    pub fn text(&self) -> String {
        to_text(&self.referral)
    }

    /// Its `id` and `customerProfile` alone, as compact JSON text, each written as in
    /// [`Self::text`]: all that ingest reads a customer's domain from, in a quarter of the text.
    pub fn customer_text(&self) -> String {
        to_text(&CustomerPart {
            customer_profile: self.referral.customer_profile.as_ref(),
            id: self.id(),
        })
    }
}

/// The part of a [`GeneratedReferral`] that names its customer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CustomerPart<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_profile: Option<&'a Option<Profile>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

/// [`referral_stream`], each referral with the [`SeedPoint`] that generates it again alone, to
/// be written as text whole or in part.
pub fn seeded_referrals(count: usize, seed: u64) -> impl Iterator<Item = SeededReferral> {
    points(count, seed).map(|(point, referral)| SeededReferral { point, referral })
}

fn points(count: usize, seed: u64) -> impl Iterator<Item = (SeedPoint, GeneratedReferral)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut coverage: Vec<u8> = (0..COVERAGE.len())
        .filter_map(|i| u8::try_from(i).ok())
        .collect();
    rng.shuffle(&mut coverage);
    let mut previous_engagement: Option<NonZeroU128> = None;
    (0..count).map(move |n| {
        let point = SeedPoint {
            rng: rng.get_seed(),
            coverage: coverage.get(n).copied(),
            previous_engagement,
        };
        let (referral, engagement) = point.generate(&mut rng);
        previous_engagement = NonZeroU128::new(engagement);
        (point, referral)
    })
}

fn to_value(referral: &GeneratedReferral) -> Value {
    serde_json::to_value(referral).unwrap_or(Value::Null)
}

fn to_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// Where one generated referral begins in its seed's sequence: all it takes to generate that
/// referral again on its own, without the ones before it (~40 bytes instead of ~2 KB of text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedPoint {
    /// The generator's state before this referral.
    rng: u64,
    /// Index into [`COVERAGE`] for the first referrals of a seed; else the scenario is drawn.
    coverage: Option<u8>,
    /// The engagement id of the referral before it (some referrals share their predecessor's);
    /// never zero (a UUID's version bits are set), so the option takes no room of its own.
    previous_engagement: Option<NonZeroU128>,
}

impl SeedPoint {
    /// The referral generated at this point, as a document.
    pub fn referral(&self) -> Value {
        to_value(&self.generated())
    }

    /// The referral generated at this point as a raw JSON value: the text of its
    /// [`SeededReferral::text`] (serialized once, not read back to check it).
    pub fn raw(&self) -> Box<serde_json::value::RawValue> {
        serde_json::value::to_raw_value(&self.generated())
            .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned())
    }

    /// The parts of the referral generated at this point that a listing can filter and order
    /// on — its top-level scalars, the customer's name, size, city and country, the deal's
    /// value and currency, an absent one as `null` — without serializing the rest (contacts,
    /// teams, notes, links) to text only to skip it again.
    pub fn listed(&self) -> Value {
        let r = self.generated();
        let profile = r.customer_profile.map(|profile| {
            profile.map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "size": p.size,
                    "address": { "city": p.address.city, "country": p.address.country },
                })
            })
        });
        serde_json::json!({
            "acceptedDateTime": r.accepted_date_time,
            "closedDateTime": r.closed_date_time,
            "createdDateTime": r.created_date_time,
            "customerProfile": profile,
            "details": { "currency": r.details.currency, "dealValue": r.details.deal_value },
            "direction": r.direction,
            "engagementId": r.engagement_id,
            "expirationDateTime": r.expiration_date_time,
            "id": r.id,
            "isSpam": r.is_spam,
            "name": r.name,
            "organizationId": r.organization_id,
            "organizationName": r.organization_name,
            "qualification": r.qualification,
            "quality": r.quality,
            "status": r.status,
            "substatus": r.substatus,
            "type": r.referral_type,
            "updatedDateTime": r.updated_date_time,
        })
    }

    fn generated(&self) -> GeneratedReferral {
        self.generate(&mut fastrand::Rng::with_seed(self.rng)).0
    }

    /// Generates the referral from `rng` (in the state [`SeedPoint::rng`] names) and advances it.
    fn generate(&self, rng: &mut fastrand::Rng) -> (GeneratedReferral, u128) {
        let scenario = match self.coverage {
            Some(index) => COVERAGE[usize::from(index) % COVERAGE.len()],
            None => random_scenario(rng),
        };
        referral(
            rng,
            scenario,
            self.previous_engagement.map(NonZeroU128::get),
        )
    }

    /// The `id` of the referral generated at this point (none for one generated without).
    pub fn id(&self) -> Option<String> {
        self.generated().id
    }
}

/// Reads referrals from a file holding a JSON array of referral objects (kept as they are).
pub fn load_referrals_file(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read referrals file {}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("referrals file {} is not valid JSON", path.display()))?;
    let found = match value {
        Value::Array(referrals) => return Ok(referrals),
        Value::Object(object) if object.contains_key("value") => {
            "an object (it looks like an API page: save its `value` array instead)"
        }
        Value::Object(_) => "an object",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    };
    bail!(
        "referrals file {} must hold a JSON array of referrals, found {found}",
        path.display()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_generated_again_from_its_seed_point_a_referral_should_be_the_same() {
        let stream: Vec<SeededReferral> = seeded_referrals(400, 11).collect();
        let documents = generate_referrals(400, 11);
        for (seeded, document) in stream.iter().zip(&documents) {
            let text = seeded.text();
            assert_eq!(&serde_json::from_str::<Value>(&text).unwrap(), document);
            // Typed fields in the order a document keeps its keys: the same text either way.
            assert_eq!(text, document.to_string());
            assert_eq!(seeded.id(), document["id"].as_str());
            let customer: Value = serde_json::from_str(&seeded.customer_text()).unwrap();
            let part = |key: &str| document.get(key).map_or(Value::Null, Value::clone);
            assert_eq!(
                customer.get("id").map_or(Value::Null, Value::clone),
                part("id")
            );
            assert_eq!(
                customer
                    .get("customerProfile")
                    .map_or(Value::Null, Value::clone),
                part("customerProfile")
            );
            assert!(customer.as_object().unwrap().len() <= 2);
        }
        assert!(stream.iter().any(|s| s.id().is_none()), "some have no id");
        // Backwards, so that no referral can lean on the one generated before it.
        for (seeded, document) in stream.iter().zip(&documents).rev() {
            assert_eq!(seeded.point.raw().get(), document.to_string());
            assert_eq!(&seeded.point.referral(), document);
        }
        let shared = documents
            .windows(2)
            .filter(|w| w[0]["engagementId"] == w[1]["engagementId"])
            .count();
        assert!(
            shared > 0,
            "some referrals share their predecessor's engagement"
        );
        assert!(stream.iter().take(16).all(|s| s.point.coverage.is_some()));
    }

    #[test]
    fn when_folding_names_should_give_ascii() {
        assert_eq!(ascii_fold("Jürgen"), "juergen");
        assert_eq!(ascii_fold("Østergaard"), "oestergaard");
        assert_eq!(ascii_fold("Weiß"), "weiss");
        assert_eq!(ascii_fold("Chloé"), "chloe");
    }

    #[test]
    fn when_formatting_timestamps_should_parse_back_to_the_same_second() {
        let mut rng = fastrand::Rng::with_seed(3);
        let t = DateTime::from_timestamp(SEED_EPOCH_UNIX, 123_456_700).unwrap();
        for _ in 0..50 {
            let text = timestamp(t, &mut rng);
            let parsed = DateTime::parse_from_rfc3339(&text).unwrap();
            assert_eq!(parsed.timestamp(), SEED_EPOCH_UNIX, "{text}");
        }
    }

    /// Written digit by digit, timestamps are what chrono's format and `format!`'s padding give.
    #[test]
    fn timestamps_are_what_formatting_them_gives() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..2000 {
            let t =
                DateTime::from_timestamp(rng.i64(0..SEED_EPOCH_UNIX * 2), rng.u32(..1_000_000_000))
                    .unwrap();
            let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            assert_eq!(seconds(t), base);
            assert_eq!(plain_timestamp(t), format!("{base}Z"));
            let ticks = t.timestamp_subsec_nanos() / 100;
            let choice = rng.get_seed();
            let expected = match fastrand::Rng::with_seed(choice).u8(0..10) {
                0..=4 => format!("{base}.{ticks:07}Z"),
                5 | 6 => format!("{base}.{:02}Z", ticks / 100_000),
                7 => format!("{base}.{:03}Z", ticks / 10_000),
                _ => format!("{base}Z"),
            };
            assert_eq!(
                timestamp(t, &mut fastrand::Rng::with_seed(choice)),
                expected
            );
        }
    }

    #[test]
    fn when_generating_uuids_should_be_v4_shaped() {
        let mut rng = fastrand::Rng::with_seed(1);
        let id = uuid::Uuid::parse_str(&uuid(&mut rng)).unwrap();
        assert_eq!(id.get_version_num(), 4);
    }

    #[test]
    fn when_seed_epoch_is_named_should_match_the_unix_value() {
        assert_eq!(
            DateTime::parse_from_rfc3339(SEED_EPOCH)
                .unwrap()
                .timestamp(),
            SEED_EPOCH_UNIX
        );
    }
}
