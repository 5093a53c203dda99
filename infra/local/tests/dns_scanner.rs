//! The DNS scanner (hunter-core) against the DNS simulator (hunter-local) over real packets on
//! loopback, over UDP (truncated answers retried over TCP) and over TCP only. No test asks the
//! machine's own resolver.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hunter_core::adapters::dns_scanner::{
    DEFAULT_DKIM_SELECTORS, DnsScanner, DnsScannerSettings, Transport,
};
use hunter_core::ports::DomainScanner;
use hunter_domain::rules::{Domain, normalize_domain};
use hunter_domain::scan::{DomainScan, ScanState};
use hunter_local::dns::profiles::{self, CATALOG, OVERSIZED_VERIFICATIONS};
use hunter_local::dns::{self, DnsSim, Fault, RunningDns};
use hunter_local::sim::seed::generate_referrals;

const BOTH: [Transport; 2] = [Transport::UdpThenTcp, Transport::Tcp];

async fn serve(sim: DnsSim) -> RunningDns {
    sim.serve(([127, 0, 0, 1], 0).into()).await.unwrap()
}

fn scanner(dns: &RunningDns, transport: Transport) -> DnsScanner {
    scanner_with(dns, transport, Duration::from_secs(10), 32)
}

fn scanner_with(
    dns: &RunningDns,
    transport: Transport,
    deadline: Duration,
    max_concurrent: usize,
) -> DnsScanner {
    DnsScanner::new(DnsScannerSettings {
        nameserver: Some(dns.addr),
        transport,
        deadline,
        max_concurrent,
        ..DnsScannerSettings::default()
    })
    .unwrap()
}

fn domain(name: &str) -> Domain {
    normalize_domain(name).unwrap()
}

/// A simulator serving `domain` as the catalog profile `profile`.
fn sim_with(domain: &str, profile: &str) -> DnsSim {
    let sim = DnsSim::new();
    sim.add_domain(domain, profiles::by_name(profile).unwrap());
    sim
}

/// Asserts the scan read what the profile says.
fn assert_reads_profile(scan: &DomainScan, profile: &str, transport: Transport) {
    let profile = profiles::by_name(profile).unwrap();
    let domain = scan.domain.as_str();
    assert_eq!(
        scan.state,
        profile.expected_state(),
        "{domain} ({}) over {transport:?}: {:?}",
        profile.name,
        scan.detail
    );
    assert_eq!(
        scan.signals,
        profile.expected_signals(domain, &DEFAULT_DKIM_SELECTORS),
        "{domain} ({}) over {transport:?}",
        profile.name
    );
}

/// Over TCP only, the simulator saw no UDP query.
fn assert_transport(sim: &DnsSim, transport: Transport) {
    if transport == Transport::Tcp {
        assert!(
            sim.queries()
                .iter()
                .all(|q| q.transport == dns::Transport::Tcp),
            "TCP only"
        );
    }
}

#[tokio::test]
async fn when_several_mx_answer_should_read_them_all_and_prefer_the_lowest() {
    for transport in BOTH {
        let sim = sim_with("fabrikam.com", "google-medium");
        sim.add_domain("contoso.com", profiles::by_name("mailgun").unwrap());
        let dns = serve(sim.clone()).await;
        let scanner = scanner(&dns, transport);

        let google = scanner.scan(&domain("fabrikam.com")).await;
        assert_reads_profile(&google, "google-medium", transport);
        assert_eq!(google.signals.mx.len(), 5);
        assert_eq!(google.signals.preferred_mx(), Some("aspmx.l.google.com"));

        let tie = scanner.scan(&domain("contoso.com")).await;
        assert_reads_profile(&tie, "mailgun", transport);
        assert_eq!(tie.signals.preferred_mx(), Some("mxa.mailgun.org"));
        assert_eq!(tie.detail, None);
        assert_transport(&sim, transport);
    }
}

#[tokio::test]
async fn when_a_txt_record_is_split_in_strings_should_join_them() {
    for transport in BOTH {
        let sim = sim_with("contoso.com", "local-many-includes");
        let dns = serve(sim.clone()).await;
        let scan = scanner(&dns, transport).scan(&domain("contoso.com")).await;
        assert_reads_profile(&scan, "local-many-includes", transport);
        let spf = scan.signals.spf.as_deref().unwrap();
        assert!(
            spf.contains("include:mailgun.org include:amazonses.com -all"),
            "{spf}"
        );
        assert_eq!(scan.signals.spf_includes.len(), 5);
        // Two-string DKIM keys (a 2048-bit key is longer than one string) read as keys.
        assert_eq!(
            scan.signals.dkim_selectors,
            ["default", "google", "selector1"]
        );
        assert_transport(&sim, transport);
    }
}

#[tokio::test]
async fn when_an_answer_is_too_large_for_udp_should_ask_again_over_tcp_and_read_it_whole() {
    let sim = sim_with("contoso.com", "m365-large-oversized-txt");
    let dns = serve(sim.clone()).await;
    let scan = scanner(&dns, Transport::UdpThenTcp)
        .scan(&domain("contoso.com"))
        .await;
    // The SPF record is the last of the answer: read only if the whole answer was.
    assert_reads_profile(&scan, "m365-large-oversized-txt", Transport::UdpThenTcp);

    let apex_txt: Vec<_> = sim
        .queries()
        .into_iter()
        .filter(|q| q.name == "contoso.com" && q.record_type == "TXT")
        .collect();
    assert_eq!(apex_txt.len(), 2, "{apex_txt:?}");
    assert_eq!(apex_txt[0].transport, dns::Transport::Udp);
    assert!(apex_txt[0].truncated);
    assert_eq!(apex_txt[1].transport, dns::Transport::Tcp);
    assert!(!apex_txt[1].truncated);
    assert_eq!(apex_txt[1].records, OVERSIZED_VERIFICATIONS + 1);
    // Every other answer fit in UDP.
    assert!(
        sim.queries()
            .iter()
            .filter(|q| q.name != "contoso.com" || q.record_type != "TXT")
            .all(|q| q.transport == dns::Transport::Udp && !q.truncated)
    );
}

#[tokio::test]
async fn when_the_domain_does_not_exist_should_be_nxdomain() {
    for transport in BOTH {
        let sim = sim_with("contoso.com", "m365-large");
        sim.set_fault("contoso.com", Fault::Nxdomain);
        let dns = serve(sim.clone()).await;
        let scan = scanner(&dns, transport).scan(&domain("contoso.com")).await;
        assert_eq!(scan.state, ScanState::Nxdomain, "{transport:?}");
        assert_eq!(scan.detail.as_deref(), Some("MX contoso.com: NXDOMAIN"));
        assert_eq!(scan.signals, Default::default());
        assert_transport(&sim, transport);
    }
}

#[tokio::test]
async fn when_the_domain_has_no_mx_should_be_no_mx_and_still_read_its_txt() {
    for transport in BOTH {
        let sim = sim_with("contoso.com", "no-mx-parked");
        sim.add_domain("fabrikam.com", profiles::by_name("no-mx-null").unwrap());
        sim.add_domain("litwareinc.com", profiles::by_name("no-mx-bare").unwrap());
        let dns = serve(sim.clone()).await;
        let scanner = scanner(&dns, transport);

        let parked = scanner.scan(&domain("contoso.com")).await;
        assert_reads_profile(&parked, "no-mx-parked", transport);
        assert_eq!(parked.signals.spf.as_deref(), Some("v=spf1 -all"));
        assert_eq!(
            parked.detail.as_deref(),
            Some("MX contoso.com: no MX records")
        );

        let null = scanner.scan(&domain("fabrikam.com")).await;
        assert_reads_profile(&null, "no-mx-null", transport);
        assert_eq!(
            null.detail.as_deref(),
            Some("MX fabrikam.com: null MX (RFC 7505)")
        );

        let bare = scanner.scan(&domain("litwareinc.com")).await;
        assert_reads_profile(&bare, "no-mx-bare", transport);
        assert_transport(&sim, transport);
    }
}

#[tokio::test]
async fn when_the_nameserver_fails_should_be_servfail_and_name_the_lookup() {
    for transport in BOTH {
        let sim = sim_with("contoso.com", "m365-large");
        sim.add_domain("fabrikam.com", profiles::by_name("m365-large").unwrap());
        sim.add_domain("litwareinc.com", profiles::by_name("m365-large").unwrap());
        sim.set_fault("contoso.com", Fault::Servfail);
        sim.set_fault("_dmarc.fabrikam.com", Fault::Servfail);
        sim.set_fault("litwareinc.com", Fault::Refused);
        let dns = serve(sim.clone()).await;
        let scanner = scanner(&dns, transport);

        let whole = scanner.scan(&domain("contoso.com")).await;
        assert_eq!(whole.state, ScanState::Servfail, "{transport:?}");
        assert!(
            whole
                .detail
                .as_deref()
                .unwrap()
                .starts_with("MX contoso.com: SERVFAIL"),
            "{:?}",
            whole.detail
        );

        // MX answered, DMARC did not: the scan is incomplete, so not conclusive.
        let dmarc = scanner.scan(&domain("fabrikam.com")).await;
        assert_eq!(dmarc.state, ScanState::Servfail);
        assert_eq!(
            dmarc.detail.as_deref(),
            Some("TXT _dmarc.fabrikam.com: SERVFAIL")
        );
        assert_eq!(dmarc.signals.mx.len(), 1, "what answered is read");

        let refused = scanner.scan(&domain("litwareinc.com")).await;
        assert_eq!(refused.state, ScanState::Servfail);
        assert!(refused.detail.as_deref().unwrap().contains("REFUSED"));

        // A zone the server does not serve is refused too.
        let unknown = scanner.scan(&domain("northwindtraders.com")).await;
        assert_eq!(unknown.state, ScanState::Servfail);
        assert_transport(&sim, transport);
    }
}

#[tokio::test]
async fn when_a_name_never_answers_should_end_as_timeout_within_the_deadline() {
    let deadline = Duration::from_secs(1);
    for transport in BOTH {
        let sim = sim_with("contoso.com", "m365-large");
        sim.set_fault("contoso.com", Fault::NoAnswer);
        let dns = serve(sim.clone()).await;
        let scanner = scanner_with(&dns, transport, deadline, 32);
        let started = Instant::now();
        let scan = tokio::time::timeout(
            deadline + Duration::from_secs(2),
            scanner.scan(&domain("contoso.com")),
        )
        .await
        .expect("the scan ends at its deadline");
        assert_eq!(
            scan.state,
            ScanState::Timeout,
            "{transport:?}: {:?}",
            scan.detail
        );
        assert!(scan.detail.is_some());
        assert!(started.elapsed() < deadline + Duration::from_secs(2));
        assert!(sim.queries().iter().all(|q| q.answer == "none"));
    }
}

#[tokio::test]
async fn when_many_scans_run_at_once_should_never_ask_for_more_domains_than_the_limit() {
    const LIMIT: usize = 3;
    let sim = DnsSim::new();
    let domains: Vec<Domain> = (0..LIMIT * 4)
        .map(|n| domain(&format!("company{n}.com")))
        .collect();
    for d in &domains {
        sim.add_domain(d.as_str(), profiles::by_name("google-medium").unwrap());
    }
    let dns = serve(sim.clone()).await;
    let scanner = scanner_with(&dns, Transport::UdpThenTcp, Duration::from_secs(10), LIMIT);

    // Answers wait until the first LIMIT domains are all being asked; the rest wait for a slot.
    sim.hold();
    let scans: Vec<_> = domains
        .iter()
        .map(|d| {
            let (scanner, d) = (scanner.clone(), d.clone());
            tokio::spawn(async move { scanner.scan(&d).await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(5), sim.wait_for_zones_in_flight(LIMIT))
        .await
        .expect("LIMIT domains are asked at once");
    assert_eq!(scanner.available_slots(), 0);
    sim.release();

    for scan in join_all(scans).await {
        assert_eq!(scan.unwrap().state, ScanState::Ok);
    }
    assert_eq!(sim.max_zones_in_flight(), LIMIT);
    assert_eq!(scanner.available_slots(), LIMIT);
}

#[tokio::test]
async fn when_every_seeded_domain_is_scanned_should_read_what_its_profile_says() {
    let referrals = generate_referrals(200, 42);
    for transport in BOTH {
        let sim = DnsSim::seeded(&referrals, false);
        let served = sim.domains();
        assert_eq!(served.len(), dns::seeded_domains(&referrals).len());
        for profile in CATALOG {
            assert!(
                served.iter().any(|(_, p)| p.name == profile.name),
                "{}",
                profile.name
            );
        }
        let dns = serve(sim.clone()).await;
        let scanner = scanner(&dns, transport);
        let scans = join_all(served.iter().map(|(d, _)| {
            let scanner = scanner.clone();
            let d = domain(d);
            async move { scanner.scan(&d).await }
        }))
        .await;
        for ((_, profile), scan) in served.iter().zip(&scans) {
            assert_reads_profile(scan, profile.name, transport);
        }
        assert_transport(&sim, transport);
    }
}

#[tokio::test]
async fn when_seeded_with_faults_should_end_each_faulted_domain_in_its_state() {
    let referrals = generate_referrals(60, 42);
    let sim = DnsSim::seeded(&referrals, true);
    let dns = serve(sim.clone()).await;
    let scanner = scanner_with(&dns, Transport::UdpThenTcp, Duration::from_secs(1), 32);
    let served = sim.domains();
    let scans = join_all(served.iter().map(|(d, _)| {
        let scanner = scanner.clone();
        let d = domain(d);
        async move { scanner.scan(&d).await }
    }))
    .await;
    let mut seen = Vec::new();
    for ((d, profile), scan) in served.iter().zip(&scans) {
        let expected = match sim.fault_of(d) {
            Some(Fault::Nxdomain) => ScanState::Nxdomain,
            Some(Fault::Servfail | Fault::Refused) => ScanState::Servfail,
            Some(Fault::NoAnswer) => ScanState::Timeout,
            None => profile.expected_state(),
        };
        assert_eq!(scan.state, expected, "{d}: {:?}", scan.detail);
        seen.push(expected);
    }
    for state in [ScanState::Nxdomain, ScanState::Servfail, ScanState::Timeout] {
        assert!(seen.contains(&state), "{state:?}");
    }
}

#[tokio::test]
async fn when_a_zone_changes_should_see_it_on_the_next_scan() {
    let sim = sim_with("contoso.com", "google-medium");
    let dns = serve(sim.clone()).await;
    let scanner = scanner(&dns, Transport::UdpThenTcp);
    let first = scanner.scan(&domain("contoso.com")).await;
    assert_reads_profile(&first, "google-medium", Transport::UdpThenTcp);

    // No cache: a rescan sees the new records and the new fault at once.
    sim.add_domain("contoso.com", profiles::by_name("m365-large").unwrap());
    let moved = scanner.scan(&domain("contoso.com")).await;
    assert_reads_profile(&moved, "m365-large", Transport::UdpThenTcp);
    sim.set_fault("contoso.com", Fault::Servfail);
    assert_eq!(
        scanner.scan(&domain("contoso.com")).await.state,
        ScanState::Servfail
    );
}
