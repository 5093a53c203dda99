//! Hostile input, as properties: the referral reader and the domain rules take anything —
//! arbitrary JSON, arbitrary text, deep nesting, huge strings, odd URLs, IDN — without panicking,
//! and whatever domain they return is a clean registrable domain. Sizes are capped (text up to
//! 10 KB, nesting up to 64 levels) and the case count is modest, so the suite stays quick.
#![allow(clippy::unwrap_used)]

use hunter_domain::referral::{
    InvalidPayload, MAX_PAYLOAD_BYTES, Referral, parse_referral, parse_referral_value,
};
use hunter_domain::rules::{
    Domain, Rules, domain_from_url_or_host, eligibility, email_domain, extract_domain,
    normalize_domain,
};
use proptest::prelude::*;
use proptest::string::string_regex;
use serde_json::{Map, Value, json};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any text up to `max` chars (any Unicode scalar, control characters included).
fn text(max: usize) -> impl Strategy<Value = String> {
    string_regex(&format!("(?s).{{0,{max}}}")).unwrap()
}

/// Keys the reader and the extractor look at, and any other.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "id", "customerProfile", "team", "email", "ids", "profileType", "website",
            "websiteUrl", "URL", "domain", "details", "dealValue", "currency", "notes", "name",
            "address", "country", "createdDateTime", "updatedDateTime", "eTag", "etag",
            "@odata.etag", "status", "substatus", "direction", "type", "externalReferenceId",
            "phoneNumber", "External",
        ])
        .prop_map(str::to_owned),
        1 => text(12),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text(40).prop_map(Value::from),
        hostish().prop_map(Value::from),
        email().prop_map(Value::from),
        url().prop_map(Value::from),
        prop::sample::select(vec![
            "2026-10-29T08:01:12Z",
            "2026-10-29T08:01:12.1234567",
            "1e400"
        ])
        .prop_map(Value::from),
    ]
}

/// Arbitrary JSON: up to 8 levels, a few hundred nodes.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(8, 256, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `leaf` wrapped in up to 64 arrays or objects (each `true` an object level).
fn nested() -> impl Strategy<Value = Value> {
    (prop::collection::vec(any::<bool>(), 0..=64), leaf(), key()).prop_map(|(levels, leaf, k)| {
        levels.into_iter().fold(leaf, |inner, object| {
            if object {
                json!({ "id": "1", (k.as_str()): inner })
            } else {
                Value::Array(vec![inner])
            }
        })
    })
}

/// A label as people, systems and attackers write them.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "www", "WWW", "co", "uk", "com", "COM", "de", "jp", "io", "ck", "contoso", "mail",
            "github", "s3", "amazonaws", "blogspot", "appspot", "xn--bcher-kva", "xn--", "xn--a",
            "bücher", "BÜCHER", "ß", "İ", "ｅｘａｍｐｌｅ", "１２３", "日本", "中国", "рф", "-a",
            "a-", "a--b", "_dmarc", "", " ", "local", "internal", "0", "255",
        ])
        .prop_map(str::to_owned),
        2 => string_regex("[a-z0-9-]{1,70}").unwrap(),
        1 => string_regex("[A-Za-z0-9\u{e0}-\u{ff}\u{400}-\u{44f}]{1,20}").unwrap(),
        1 => text(20),
    ]
}

/// Host-like text: labels joined by dots, in any case, maybe a trailing dot and blanks around.
fn hostish() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(label(), 1..8),
        any::<bool>(),
        prop::sample::select(vec!["", " ", "\t", "\n", "\u{a0}"]),
    )
        .prop_map(|(labels, trailing_dot, blank)| {
            let host = labels.join(".");
            let dot = if trailing_dot { "." } else { "" };
            format!("{blank}{host}{dot}{blank}")
        })
}

/// Subdomains (often `www`) of public suffixes of one, two and three labels, wildcard and
/// exception rules included.
fn under_suffix() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop::sample::select(vec!["www", "WWW", "mail", "a", "xn--bcher-kva", "bücher"]),
            0..4,
        ),
        prop::sample::select(vec![
            "com",
            "co.uk",
            "com.au",
            "s3.amazonaws.com",
            "github.io",
            "blogspot.com",
            "ck",
            "www.ck",
            "kawasaki.jp",
            "city.kawasaki.jp",
            "de",
            "xn--p1ai",
            "local",
        ]),
    )
        .prop_map(|(labels, suffix)| {
            labels
                .into_iter()
                .chain([suffix])
                .collect::<Vec<_>>()
                .join(".")
        })
}

fn email() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            string_regex("[a-z.+_-]{0,12}").unwrap(),
            text(12),
            Just("\"a@b\"".to_owned())
        ],
        prop::sample::select(vec!["@", "@@", "", " @ ", "＠"]),
        hostish(),
        prop::sample::select(vec![
            ("", ""),
            ("Ada <", ">"),
            ("<", ""),
            ("mailto:", ""),
            ("MAILTO:", ""),
            ("ma\u{e9}lto:", ""),
            ("\"x\" <", "> trailing"),
        ]),
    )
        .prop_map(|(local, at, host, (before, after))| format!("{before}{local}{at}{host}{after}"))
}

fn url() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "http://", "https://", "HTTPS://", "ftp://", "ws://", "file://", "mailto:",
            "javascript:", "data:text/html,", "foo+bar://", "xn--://", "//", "", "://", "http:",
            "http:///", "\u{202e}https://",
        ]),
        prop::sample::select(vec!["", "user:pw@", "@", "a@b@", "%40@"]),
        prop_oneof![
            3 => hostish(),
            1 => under_suffix(),
            1 => prop::sample::select(vec![
                "[::1]", "[2001:db8::1]", "10.0.0.1", "0x7f.1", "127.1", "[v1.x]", "１２７.０.０.１",
            ])
            .prop_map(str::to_owned),
        ],
        prop::sample::select(vec!["", ":8080", ":", ":99999", ":-1"]),
        prop_oneof![
            Just(String::new()),
            string_regex("[/?#][ -~]{0,30}").unwrap(),
            text(20).prop_map(|t| format!("/{t}"))
        ],
    )
        .prop_map(|(scheme, user, host, port, rest)| format!("{scheme}{user}{host}{port}{rest}"))
}

/// What a returned domain always is: lowercase ASCII (punycode), at most 253 bytes, two or more
/// LDH labels of 1..=63 bytes, and a fixed point of every way in.
fn assert_clean(domain: &Domain, input: &str) {
    let s = domain.as_str();
    assert!(
        s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()),
        "{s:?} from {input:?}"
    );
    assert!(!s.is_empty() && s.len() <= 253, "{s:?} from {input:?}");
    let labels: Vec<&str> = s.split('.').collect();
    assert!(labels.len() >= 2, "{s:?} from {input:?}");
    for label in labels {
        assert!(
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "label {label:?} of {s:?} from {input:?}"
        );
    }
    assert_eq!(
        normalize_domain(s).as_ref(),
        Ok(domain),
        "normalizing {s:?} (from {input:?}) again"
    );
    assert_eq!(
        domain_from_url_or_host(s).as_ref(),
        Ok(domain),
        "{s:?} as a host"
    );
    assert_eq!(
        domain_from_url_or_host(&format!("https://{s}/")).as_ref(),
        Ok(domain),
        "{s:?} in a URL"
    );
    assert_eq!(
        email_domain(&format!("x@{s}")).as_ref(),
        Ok(domain),
        "{s:?} in an address"
    );
}

/// A reader answer: a referral with a trimmed, non-empty id, or an error that says why.
fn assert_answer(answer: &Result<Referral, InvalidPayload>) {
    match answer {
        Ok(referral) => {
            assert!(!referral.id.is_empty(), "{referral:?}");
            assert_eq!(referral.id.trim(), referral.id);
            assert!(referral.deal_value.is_none_or(f64::is_finite));
            let rules = Rules::embedded();
            let extracted = extract_domain(referral, rules);
            if let Some(e) = &extracted {
                assert_clean(&e.domain, &referral.id);
                assert!(!rules.is_consumer_domain(&e.domain), "{e:?}");
            }
            let _ = eligibility(referral, extracted.as_ref().map(|e| &e.domain), rules);
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
}

fn kind(answer: &Result<Referral, InvalidPayload>) -> &'static str {
    match answer {
        Ok(_) => "referral",
        Err(InvalidPayload::NotJson(_)) => "not json",
        Err(InvalidPayload::NotAnObject) => "not an object",
        Err(InvalidPayload::MissingId) => "missing id",
        Err(InvalidPayload::TooLarge { .. }) => "too large",
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn reader_takes_any_text(input in prop_oneof![text(200), text(10_000)]) {
        assert_answer(&parse_referral(&input));
    }

    #[test]
    fn reader_takes_any_json_and_text_and_value_agree(value in json_value()) {
        let from_value = parse_referral_value(value.clone());
        assert_answer(&from_value);
        let from_text = parse_referral(&value.to_string());
        assert_answer(&from_text);
        prop_assert_eq!(kind(&from_text), kind(&from_value));
    }

    #[test]
    fn reader_takes_any_referral_shaped_json(
        id in prop_oneof![text(10).prop_map(Value::from), any::<i64>().prop_map(Value::from)],
        emails in prop::collection::vec(prop_oneof![email().prop_map(Value::from), leaf()], 0..4),
        ids in prop::collection::vec((label(), url()), 0..4),
        website_key in key(),
        website in prop_oneof![url().prop_map(Value::from), json_value()],
        extra in json_value(),
    ) {
        let team: Vec<Value> = emails.into_iter().map(|e| json!({"email": e})).collect();
        let ids: Vec<Value> = ids
            .into_iter()
            .enumerate()
            .map(|(i, (t, id))| {
                let profile_type = if i % 2 == 0 { "External".to_owned() } else { t };
                json!({"profileType": profile_type, "id": id})
            })
            .collect();
        let mut profile = json!({"team": team, "ids": ids, "website": website.clone()});
        profile[website_key.as_str()] = website;
        let value = json!({"id": id, "extra": extra, "customerProfile": profile});
        assert_answer(&parse_referral_value(value.clone()));
        assert_answer(&parse_referral(&value.to_string()));
    }

    #[test]
    fn reader_takes_nesting_up_to_64_levels(value in nested()) {
        assert_answer(&parse_referral_value(value.clone()));
        assert_answer(&parse_referral(&value.to_string()));
    }

    #[test]
    fn reader_refuses_unbalanced_or_too_deep_text(
        open in prop::sample::select(vec!["[", "{\"id\":", "{\"a\":["]),
        depth in 0usize..5_000,
    ) {
        let answer = parse_referral(&open.repeat(depth));
        assert_answer(&answer);
        prop_assert!(answer.is_err());
    }

    #[test]
    fn any_text_normalizes_to_a_clean_domain_or_an_error(input in prop_oneof![
        3 => hostish(), 3 => under_suffix(), 1 => text(100), 1 => text(10_000),
    ]) {
        if let Ok(d) = normalize_domain(&input) {
            assert_clean(&d, &input);
        }
        if let Ok(d) = domain_from_url_or_host(&input) {
            assert_clean(&d, &input);
        }
        if let Ok(d) = email_domain(&input) {
            assert_clean(&d, &input);
        }
    }

    #[test]
    fn any_email_gives_a_clean_domain_or_an_error(input in email()) {
        if let Ok(d) = email_domain(&input) {
            assert_clean(&d, &input);
        }
    }

    #[test]
    fn any_url_gives_a_clean_domain_or_an_error(input in url()) {
        if let Ok(d) = domain_from_url_or_host(&input) {
            assert_clean(&d, &input);
        }
    }

    #[test]
    fn very_long_labels_and_names_are_refused_not_truncated(
        label_len in 1usize..400,
        labels in 1usize..40,
        suffix in prop::sample::select(vec!["com", "co.uk", "de", "xn--p1ai"]),
    ) {
        let input = format!("{}.{suffix}", vec!["a".repeat(label_len); labels].join("."));
        match normalize_domain(&input) {
            Ok(d) => {
                assert_clean(&d, &input);
                prop_assert!(label_len <= 63 && input.len() <= 253, "{}", input.len());
            }
            Err(_) => prop_assert!(label_len > 63 || input.len() > 253, "{input}"),
        }
    }
}

/// 1 MB in every way in: each returns, with a clean domain or a typed error — no quadratic
/// blow-up, no stack overflow (all linear: a quarter of the size takes about a quarter of the time).
#[test]
fn one_megabyte_inputs_return() {
    const MB: usize = 1 << 20;
    let shapes = [
        "a".repeat(MB),
        "ü".repeat(MB / 2),
        "a.".repeat(MB / 2),
        format!("x@{}.com", "b".repeat(MB)),
        format!("https://{}.com/", "ü".repeat(MB / 2)),
        format!("mailto:{}", "<a@".repeat(MB / 3)),
        ('\u{80}'..='\u{10ffff}').take(MB / 4).collect::<String>(),
    ];
    for huge in &shapes {
        for d in [
            normalize_domain(huge),
            domain_from_url_or_host(huge),
            email_domain(huge),
        ]
        .iter()
        .flatten()
        {
            assert_clean(d, "(1 MB)");
        }
        assert_answer(&parse_referral(huge));
        // The same text in the fields extraction reads, as large as a payload may be: a referral
        // (or a typed error), and extraction returns.
        let quarter = huge.get(..MAX_PAYLOAD_BYTES / 4).unwrap_or_else(|| {
            let mut end = MAX_PAYLOAD_BYTES / 4;
            while !huge.is_char_boundary(end) {
                end -= 1;
            }
            &huge[..end]
        });
        let payload = json!({"id": "1", "customerProfile": {
            "team": [{"email": quarter}], "ids": [{"profileType": "External", "id": quarter}],
            "website": quarter,
        }});
        assert_answer(&parse_referral(&payload.to_string()));
        assert_answer(&parse_referral_value(payload));
        // Past the limit: refused as too large, by text and by value.
        let too_large = json!({"id": "1", "details": {"notes": "x".repeat(MAX_PAYLOAD_BYTES)},
            "website": huge});
        assert!(matches!(
            parse_referral(&too_large.to_string()),
            Err(InvalidPayload::TooLarge { .. })
        ));
        assert!(matches!(
            parse_referral_value(too_large),
            Err(InvalidPayload::TooLarge { .. })
        ));
        // A referral built by hand can hold fields no payload could carry: extraction returns.
        let mut referral = parse_referral_value(json!({"id": "1"})).unwrap();
        referral.customer_contacts = vec![hunter_domain::referral::Contact {
            email: Some(huge.clone()),
            ..Default::default()
        }];
        referral.customer_ids = vec![hunter_domain::referral::ProfileId {
            profile_type: "External".to_owned(),
            id: huge.clone(),
        }];
        referral.profile_texts = vec![("website".to_owned(), vec![huge.clone()])];
        referral.raw = json!({"customerProfile": {"website": huge}}).to_string();
        assert_answer(&Ok(referral));
    }
}
