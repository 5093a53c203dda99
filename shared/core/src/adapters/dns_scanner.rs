//! [`DomainScanner`] over DNS with `hickory-resolver`: for one domain it asks, at once, MX, TXT at
//! the apex, TXT at `{selector}._domainkey.{domain}` for each DKIM selector and TXT at
//! `_dmarc.{domain}`, and hands the raw answers to [`Signals::read`]. The adapter only asks and
//! classifies how DNS answered (a [`ScanState`]); every reading of the records lives in the domain.
//!
//! - **Transport**: UDP with EDNS0 (1232 bytes), a truncated answer asked again over TCP; or TCP
//!   only ([`Transport`]).
//! - **No cache**: every scan asks the nameserver. A rescan exists to see a domain's DNS as it is
//!   now, and the scans of one domain are hours or days apart, so a cache would only ever serve
//!   an answer that should not be served (or a stale NXDOMAIN).
//! - **Bounds**: a global limit on scans at once (a semaphore: a scan waits for a slot before it
//!   asks anything) and a deadline on each scan's asking; a scan that runs out of time is
//!   `timeout`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::join_all;
use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::{ProtoError, ProtoErrorKind};
use hickory_resolver::{Name, ResolveError, TokioResolver};
use hunter_domain::rules::Domain;
use hunter_domain::scan::{DnsAnswers, DomainScan, MxRecord, ScanState, Signals};
use tokio::sync::Semaphore;

use crate::ports::DomainScanner;

/// The DKIM selectors probed by default (docs/reference/hunter-rules.md).
pub const DEFAULT_DKIM_SELECTORS: [&str; 4] = ["default", "google", "selector1", "selector2"];
/// The default bound on one domain's scan (hunter-rules.md: "DNS timeout 10 s").
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// The default number of scans at once.
pub const DEFAULT_MAX_CONCURRENT: usize = 32;

/// How queries travel to the nameserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// UDP; an answer truncated for UDP (TC bit) is asked again over TCP.
    #[default]
    UdpThenTcp,
    /// TCP only.
    Tcp,
}

/// What a [`DnsScanner`] asks, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsScannerSettings {
    /// The one nameserver to ask; `None`: the system's configuration (`/etc/resolv.conf`).
    pub nameserver: Option<SocketAddr>,
    pub transport: Transport,
    /// Bound on one scan's asking (all its lookups together). Default 10 s.
    pub deadline: Duration,
    /// Scans at once across this scanner. Default 32.
    pub max_concurrent: usize,
    /// Selectors probed at `{selector}._domainkey.{domain}`.
    pub dkim_selectors: Vec<String>,
}

impl Default for DnsScannerSettings {
    fn default() -> Self {
        Self {
            nameserver: None,
            transport: Transport::default(),
            deadline: DEFAULT_DEADLINE,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            dkim_selectors: DEFAULT_DKIM_SELECTORS.map(str::to_owned).to_vec(),
        }
    }
}

/// A scanner that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsScannerError {
    /// The nameserver is not `HOST:PORT`, or its host does not resolve.
    #[error("invalid DNS server {server:?}: {reason}")]
    InvalidServer { server: String, reason: String },
    /// A DKIM selector is not a DNS label.
    #[error("invalid DKIM selector {0:?}")]
    InvalidSelector(String),
}

/// Parses `HOST:PORT` (an IP address or a host name resolved once, now).
pub fn parse_nameserver(server: &str) -> Result<SocketAddr, DnsScannerError> {
    let invalid = |reason: String| DnsScannerError::InvalidServer {
        server: server.to_owned(),
        reason,
    };
    let server = server.trim();
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if server
        .rsplit_once(':')
        .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(invalid("expected HOST:PORT".to_owned()));
    }
    server
        .to_socket_addrs()
        .map_err(|e| invalid(e.to_string()))?
        .next()
        .ok_or_else(|| invalid("the host has no address".to_owned()))
}

/// Scans domains over DNS. Cheap to share (`Arc`); clones share the limit.
#[derive(Debug, Clone)]
pub struct DnsScanner {
    resolver: TokioResolver,
    limit: Arc<Semaphore>,
    deadline: Duration,
    selectors: Arc<[String]>,
}

impl DnsScanner {
    /// A scanner as `settings` say.
    pub fn new(settings: DnsScannerSettings) -> Result<Self, DnsScannerError> {
        for selector in &settings.dkim_selectors {
            let valid = !selector.is_empty()
                && selector.len() <= 63
                && selector
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(DnsScannerError::InvalidSelector(selector.clone()));
            }
        }
        let provider = TokioConnectionProvider::default();
        let (config, mut options) = match settings.nameserver {
            Some(addr) => {
                let mut config = ResolverConfig::new();
                if settings.transport == Transport::UdpThenTcp {
                    config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                }
                config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
                (config, ResolverOpts::default())
            }
            None => {
                let (config, options) = system_conf();
                let servers: NameServerConfigGroup = config
                    .name_servers()
                    .iter()
                    .filter(|ns| match settings.transport {
                        Transport::UdpThenTcp => {
                            matches!(ns.protocol, Protocol::Udp | Protocol::Tcp)
                        }
                        Transport::Tcp => ns.protocol == Protocol::Tcp,
                    })
                    .cloned()
                    .collect::<Vec<_>>()
                    .into();
                let config = ResolverConfig::from_parts(
                    config.domain().cloned(),
                    config.search().to_vec(),
                    servers,
                );
                (config, options)
            }
        };
        // Three tries of one query (the first and two retries) fit in the deadline.
        options.timeout = (settings.deadline / 3).max(Duration::from_millis(50));
        options.attempts = 2;
        options.edns0 = true;
        options.try_tcp_on_error = true;
        options.use_hosts_file = ResolveHosts::Never;
        // No cache (see the module docs): nothing kept, and nothing kept would be current.
        options.cache_size = 0;
        options.positive_max_ttl = Some(Duration::ZERO);
        options.negative_max_ttl = Some(Duration::ZERO);
        let mut builder = TokioResolver::builder_with_config(config, provider);
        *builder.options_mut() = options;
        Ok(Self {
            resolver: builder.build(),
            limit: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            deadline: settings.deadline,
            selectors: settings.dkim_selectors.into(),
        })
    }

    /// Scans left before the limit is reached (for tests and metrics).
    pub fn available_slots(&self) -> usize {
        self.limit.available_permits()
    }

    async fn ask(&self, domain: &Domain) -> (ScanState, DnsAnswers, Option<String>) {
        let Ok(apex) = fqdn(domain.as_str()) else {
            return (
                ScanState::Nxdomain,
                DnsAnswers::default(),
                Some(format!("{domain} is not a valid DNS name")),
            );
        };
        let dmarc_name = fqdn(&format!("_dmarc.{domain}")).ok();
        let dkim_names: Vec<(&str, Option<Name>)> = self
            .selectors
            .iter()
            .map(|s| (s.as_str(), fqdn(&format!("{s}._domainkey.{domain}")).ok()))
            .collect();

        let mx = async {
            match self.resolver.mx_lookup(apex.clone()).await {
                Ok(lookup) => Answer::Found(
                    lookup
                        .iter()
                        .map(|mx| MxRecord {
                            preference: mx.preference(),
                            host: host_name(mx.exchange()),
                        })
                        .collect::<Vec<_>>(),
                ),
                Err(err) => Answer::from_error(&err),
            }
        };
        let dkim = join_all(
            dkim_names
                .iter()
                .map(|(selector, name)| async move { (*selector, self.txt(name.as_ref()).await) }),
        );
        let (mx, apex_txt, dmarc, dkim) = tokio::join!(
            mx,
            self.txt(Some(&apex)),
            self.txt(dmarc_name.as_ref()),
            dkim
        );
        conclude(domain, mx, apex_txt, dmarc, dkim)
    }

    /// The TXT records at `name`, each record's strings joined (RFC 7208 §3.3). A name that
    /// cannot exist (too long) has none.
    async fn txt(&self, name: Option<&Name>) -> Answer<String> {
        let Some(name) = name else {
            return Answer::NoSuchName;
        };
        match self.resolver.txt_lookup(name.clone()).await {
            Ok(lookup) => Answer::Found(
                lookup
                    .iter()
                    .map(|txt| {
                        let bytes: Vec<u8> = txt
                            .txt_data()
                            .iter()
                            .flat_map(|s| s.iter().copied())
                            .collect();
                        String::from_utf8_lossy(&bytes).into_owned()
                    })
                    .collect(),
            ),
            Err(err) => Answer::from_error(&err),
        }
    }
}

#[async_trait]
impl DomainScanner for DnsScanner {
    async fn scan(&self, domain: &Domain) -> DomainScan {
        // A closed semaphore cannot happen (it is never closed); scan unbounded rather than fail.
        let _slot = self.limit.acquire().await.ok();
        let started = Instant::now();
        let (state, answers, detail) =
            match tokio::time::timeout(self.deadline, self.ask(domain)).await {
                Ok(asked) => asked,
                Err(_elapsed) => (
                    ScanState::Timeout,
                    DnsAnswers::default(),
                    Some(format!(
                        "no complete answer within {} ms",
                        self.deadline.as_millis()
                    )),
                ),
            };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if state.is_conclusive() {
            tracing::debug!(event = "dns_scan_finished", domain = %domain, state = state.as_str(), elapsed_ms, detail = detail.as_deref());
        } else {
            tracing::info!(event = "dns_scan_finished", domain = %domain, state = state.as_str(), elapsed_ms, detail = detail.as_deref());
        }
        DomainScan {
            domain: domain.clone(),
            state,
            signals: Signals::read(&answers),
            scanned_at: chrono::Utc::now(),
            detail,
        }
    }
}

/// How one lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer<T> {
    /// Records (possibly none, e.g. only CNAMEs).
    Found(Vec<T>),
    /// The name exists, without records of this type (NODATA).
    NoData,
    /// NXDOMAIN.
    NoSuchName,
    /// No usable answer: `servfail` or `timeout`, and why.
    Failed(ScanState, String),
}

impl<T> Answer<T> {
    /// Classifies a failed lookup: NXDOMAIN and NODATA are answers; an error response code
    /// (SERVFAIL, REFUSED, ...) or a malformed answer is `servfail`; no answer at all (timeout,
    /// the nameserver unreachable) is `timeout`.
    fn from_error(err: &ResolveError) -> Self {
        match err.proto().map(ProtoError::kind) {
            Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => match *response_code {
                ResponseCode::NXDomain => Self::NoSuchName,
                ResponseCode::NoError => Self::NoData,
                code => Self::Failed(ScanState::Servfail, rcode_name(code)),
            },
            Some(ProtoErrorKind::Timeout) => {
                Self::Failed(ScanState::Timeout, "no answer (timed out)".to_owned())
            }
            Some(ProtoErrorKind::Io(_) | ProtoErrorKind::NoConnections | ProtoErrorKind::Busy) => {
                Self::Failed(ScanState::Timeout, format!("no answer ({err})"))
            }
            _ => Self::Failed(ScanState::Servfail, err.to_string()),
        }
    }
}

fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        code => format!("{code} (rcode {})", u16::from(code)),
    }
}

/// The answers, the state they make and why it is not `ok`.
///
/// The MX answer decides: records → `ok` (a lone null MX, RFC 7505, → `no_mx`), NODATA →
/// `no_mx`, NXDOMAIN → `nxdomain`, else its failure. A conclusive scan whose TXT lookups failed is
/// incomplete, so it takes the first failure's state (`servfail` or `timeout`): a missing SPF,
/// DKIM or DMARC answer must not read as a missing record. NXDOMAIN or NODATA below the apex
/// (`_dmarc`, a selector) only means no record.
fn conclude(
    domain: &Domain,
    mx: Answer<MxRecord>,
    apex_txt: Answer<String>,
    dmarc: Answer<String>,
    dkim: Vec<(&str, Answer<String>)>,
) -> (ScanState, DnsAnswers, Option<String>) {
    let mut failures: Vec<(ScanState, String)> = Vec::new();
    let mut answers = DnsAnswers::default();
    let mut take_txt = |what: String, answer: Answer<String>| match answer {
        Answer::Found(records) => records,
        Answer::NoData | Answer::NoSuchName => Vec::new(),
        Answer::Failed(state, why) => {
            failures.push((state, format!("{what}: {why}")));
            Vec::new()
        }
    };
    answers.apex_txt = take_txt(format!("TXT {domain}"), apex_txt);
    answers.dmarc_txt = take_txt(format!("TXT _dmarc.{domain}"), dmarc);
    for (selector, answer) in dkim {
        let records = take_txt(format!("TXT {selector}._domainkey.{domain}"), answer);
        if !records.is_empty() {
            answers.dkim_txt.push((selector.to_owned(), records));
        }
    }
    let (state, mx_detail) = match mx {
        Answer::Found(records) => {
            answers.mx = records
                .into_iter()
                .filter(|mx| !mx.host.is_empty())
                .collect();
            if answers.mx.is_empty() {
                (
                    ScanState::NoMx,
                    Some(format!("MX {domain}: null MX (RFC 7505)")),
                )
            } else {
                (ScanState::Ok, None)
            }
        }
        Answer::NoData => (ScanState::NoMx, Some(format!("MX {domain}: no MX records"))),
        Answer::NoSuchName => (ScanState::Nxdomain, Some(format!("MX {domain}: NXDOMAIN"))),
        Answer::Failed(state, why) => (state, Some(format!("MX {domain}: {why}"))),
    };
    let state = match failures.first() {
        Some((failed, _)) if matches!(state, ScanState::Ok | ScanState::NoMx) => *failed,
        _ => state,
    };
    let detail = mx_detail
        .into_iter()
        .chain(failures.into_iter().map(|(_, why)| why))
        .collect::<Vec<_>>();
    let detail = (!detail.is_empty()).then(|| detail.join("; "));
    (state, answers, detail)
}

/// The system's resolver configuration; without a readable one, what the C library assumes then:
/// a nameserver on 127.0.0.1:53.
fn system_conf() -> (ResolverConfig, ResolverOpts) {
    hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|err| {
        tracing::warn!(event = "dns_system_config_unreadable", error = %err, fallback = "127.0.0.1:53");
        let servers = NameServerConfigGroup::from_ips_clear(
            &[std::net::Ipv4Addr::LOCALHOST.into()],
            53,
            true,
        );
        (
            ResolverConfig::from_parts(None, Vec::new(), servers),
            ResolverOpts::default(),
        )
    })
}

/// `name.` (fully qualified, so no search domain is ever appended).
fn fqdn(name: &str) -> Result<Name, ProtoError> {
    let mut name = Name::from_ascii(name.trim_end_matches('.'))?;
    name.set_fqdn(true);
    Ok(name)
}

/// A host name as `MxRecord` holds it: lowercase ASCII, no trailing dot (`""` for the root).
fn host_name(name: &Name) -> String {
    name.to_lowercase()
        .to_ascii()
        .trim_end_matches('.')
        .to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hunter_domain::rules::normalize_domain;

    fn domain() -> Domain {
        normalize_domain("contoso.com").unwrap()
    }

    fn mx(preference: u16, host: &str) -> MxRecord {
        MxRecord {
            preference,
            host: host.to_owned(),
        }
    }

    fn no_record_found(code: ResponseCode) -> ResolveError {
        ProtoError::from(ProtoErrorKind::NoRecordsFound {
            query: Box::default(),
            soa: None,
            ns: None,
            negative_ttl: None,
            response_code: code,
            trusted: true,
            authorities: None,
        })
        .into()
    }

    #[test]
    fn when_lookups_fail_should_classify_by_response_code_or_missing_answer() {
        let answer = |err: ResolveError| Answer::<String>::from_error(&err);
        assert_eq!(
            answer(no_record_found(ResponseCode::NXDomain)),
            Answer::NoSuchName
        );
        assert_eq!(
            answer(no_record_found(ResponseCode::NoError)),
            Answer::NoData
        );
        assert_eq!(
            answer(no_record_found(ResponseCode::ServFail)),
            Answer::Failed(ScanState::Servfail, "SERVFAIL".to_owned())
        );
        assert_eq!(
            answer(no_record_found(ResponseCode::Refused)),
            Answer::Failed(ScanState::Servfail, "REFUSED".to_owned())
        );
        assert!(matches!(
            answer(ProtoError::from(ProtoErrorKind::Timeout).into()),
            Answer::Failed(ScanState::Timeout, _)
        ));
        assert!(matches!(
            answer(
                ProtoError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                    .into()
            ),
            Answer::Failed(ScanState::Timeout, _)
        ));
        assert!(matches!(
            answer(ProtoError::from("bad message").into()),
            Answer::Failed(ScanState::Servfail, _)
        ));
    }

    #[test]
    fn when_mx_answers_should_be_ok_and_keep_every_answer() {
        let (state, answers, detail) = conclude(
            &domain(),
            Answer::Found(vec![mx(20, "b.example"), mx(10, "a.example")]),
            Answer::Found(vec!["v=spf1 -all".to_owned()]),
            Answer::NoSuchName,
            vec![
                (
                    "selector1",
                    Answer::Found(vec!["v=DKIM1; p=MIIB".to_owned()]),
                ),
                ("google", Answer::NoSuchName),
                ("default", Answer::NoData),
            ],
        );
        assert_eq!(state, ScanState::Ok);
        assert_eq!(detail, None);
        assert_eq!(answers.mx.len(), 2);
        assert_eq!(answers.apex_txt, ["v=spf1 -all"]);
        assert!(answers.dmarc_txt.is_empty());
        assert_eq!(answers.dkim_txt.len(), 1);
        assert_eq!(answers.dkim_txt[0].0, "selector1");
    }

    #[test]
    fn when_mx_is_missing_or_null_should_be_no_mx_and_say_so() {
        for mx_answer in [Answer::NoData, Answer::Found(vec![mx(0, "")])] {
            let (state, answers, detail) = conclude(
                &domain(),
                mx_answer,
                Answer::NoData,
                Answer::NoData,
                Vec::new(),
            );
            assert_eq!(state, ScanState::NoMx);
            assert!(answers.mx.is_empty());
            assert!(detail.unwrap().starts_with("MX contoso.com: "));
        }
        let (state, _, detail) = conclude(
            &domain(),
            Answer::NoSuchName,
            Answer::NoSuchName,
            Answer::NoSuchName,
            Vec::new(),
        );
        assert_eq!(state, ScanState::Nxdomain);
        assert_eq!(detail.as_deref(), Some("MX contoso.com: NXDOMAIN"));
    }

    #[test]
    fn when_a_txt_lookup_fails_should_make_the_scan_inconclusive_and_name_the_lookup() {
        let (state, answers, detail) = conclude(
            &domain(),
            Answer::Found(vec![mx(10, "a.example")]),
            Answer::Found(vec!["v=spf1 -all".to_owned()]),
            Answer::Failed(ScanState::Servfail, "SERVFAIL".to_owned()),
            vec![(
                "selector2",
                Answer::Failed(ScanState::Timeout, "no answer (timed out)".to_owned()),
            )],
        );
        assert_eq!(state, ScanState::Servfail);
        assert_eq!(answers.mx.len(), 1, "what did answer is kept");
        assert_eq!(
            detail.as_deref(),
            Some(
                "TXT _dmarc.contoso.com: SERVFAIL; \
                 TXT selector2._domainkey.contoso.com: no answer (timed out)"
            )
        );
        let (state, _, detail) = conclude(
            &domain(),
            Answer::Failed(ScanState::Timeout, "no answer (timed out)".to_owned()),
            Answer::Failed(ScanState::Servfail, "SERVFAIL".to_owned()),
            Answer::NoData,
            Vec::new(),
        );
        assert_eq!(state, ScanState::Timeout, "the MX failure decides");
        assert!(detail.unwrap().starts_with("MX contoso.com: no answer"));
    }

    #[test]
    fn when_names_are_built_should_be_fully_qualified_and_lowercase_hosts() {
        assert!(fqdn("contoso.com").unwrap().is_fqdn());
        assert_eq!(fqdn("contoso.com.").unwrap().to_ascii(), "contoso.com.");
        assert_eq!(
            host_name(&fqdn("ASPMX.L.Google.com").unwrap()),
            "aspmx.l.google.com"
        );
        assert_eq!(host_name(&Name::root()), "");
    }

    #[test]
    fn when_a_nameserver_is_given_should_parse_host_and_port() {
        assert_eq!(
            parse_nameserver("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_nameserver("[::1]:53").unwrap(),
            "[::1]:53".parse().unwrap()
        );
        for bad in ["127.0.0.1", "127.0.0.1:", ":53", "host:port", ""] {
            assert!(parse_nameserver(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn when_a_selector_is_not_a_label_should_refuse_to_build() {
        let settings = DnsScannerSettings {
            nameserver: Some("127.0.0.1:53".parse().unwrap()),
            dkim_selectors: vec!["ok".to_owned(), "not.one".to_owned()],
            ..DnsScannerSettings::default()
        };
        assert!(matches!(
            DnsScanner::new(settings),
            Err(DnsScannerError::InvalidSelector(s)) if s == "not.one"
        ));
    }
}
