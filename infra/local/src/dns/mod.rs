//! A DNS simulator: an in-process authoritative server on loopback (`hickory-server`, UDP and TCP
//! on one port) serving the mail records of the seeded companies, so local runs and tests scan
//! over real DNS packets.
//!
//! Each zone is a registrable domain with a [`MailProfile`] (MX, SPF, DKIM, DMARC, site
//! verifications). The server answers like an authoritative one: records with the AA bit; NODATA
//! and NXDOMAIN with the zone's SOA; REFUSED outside its zones; over UDP an answer larger than the
//! client's EDNS0 size (512 bytes without EDNS0) goes out empty with the TC bit, so the client
//! asks again over TCP. [`Fault`]s make names answer NXDOMAIN, SERVFAIL or REFUSED, or never
//! answer. Every query is logged ([`DnsSim::queries`]) and the zones being asked at once are
//! counted ([`DnsSim::max_zones_in_flight`]).

mod handler;
pub mod profiles;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hickory_server::ServerFuture;
use hunter_domain::referral::parse_referral;
use hunter_domain::rules::{Rules, extract_domain};
use serde_json::Value;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

pub use profiles::{CATALOG, MailProfile, SimRecord};

use handler::Handler;

/// How a name (and every name below it) answers instead of its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// NXDOMAIN (the name does not exist).
    Nxdomain,
    /// SERVFAIL.
    Servfail,
    /// REFUSED.
    Refused,
    /// No answer at all (the query is dropped).
    NoAnswer,
}

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One query the simulator received and how it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedQuery {
    /// Lowercase, without the trailing dot.
    pub name: String,
    /// `MX`, `TXT`, ...
    pub record_type: String,
    pub transport: Transport,
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, or `none` when dropped.
    pub answer: &'static str,
    /// Records answered.
    pub records: usize,
    /// Sent empty with the TC bit (too large for UDP).
    pub truncated: bool,
}

/// Queries kept in the log (the oldest are dropped first).
const LOG_CAPACITY: usize = 10_000;

/// Every 11th seeded domain from the 4th on answers NXDOMAIN, from the 7th SERVFAIL, from the
/// 10th never (with faults on); 11 is prime to the catalog's size, so each profile is served
/// clean for some domains.
const FAULT_CYCLE: [(usize, Fault); 3] = [
    (3, Fault::Nxdomain),
    (6, Fault::Servfail),
    (9, Fault::NoAnswer),
];

/// The simulator's zones, faults and observations. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct DnsSim {
    state: Arc<Mutex<State>>,
    /// While `true`, queries wait before being answered (see [`DnsSim::hold`]).
    held: Arc<watch::Sender<bool>>,
    /// Zones with a query in flight now.
    in_flight: Arc<watch::Sender<usize>>,
}

#[derive(Debug, Default)]
struct State {
    /// Apex (lowercase, no trailing dot) → zone.
    zones: BTreeMap<String, Zone>,
    faults: HashMap<String, Fault>,
    log: VecDeque<LoggedQuery>,
    /// Zone → queries in flight.
    in_flight: HashMap<String, usize>,
    max_in_flight: usize,
}

#[derive(Debug, Clone, Default)]
struct Zone {
    profile: Option<MailProfile>,
    /// Owner name → records.
    records: BTreeMap<String, Vec<SimRecord>>,
}

/// What the server answers a query with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// NOERROR with these records (empty: NODATA, with the SOA of `zone`).
    Records {
        zone: String,
        records: Vec<SimRecord>,
    },
    /// NXDOMAIN, with the SOA of `zone` when the name is in one.
    NoSuchName {
        zone: Option<String>,
    },
    Servfail,
    Refused,
    Drop,
}

impl DnsSim {
    /// A simulator without zones.
    pub fn new() -> Self {
        Self::default()
    }

    /// A zone for every domain `referrals` name (the domain ingest extracts with the embedded
    /// rules), each with a profile of [`CATALOG`] in turn, in order of first appearance: the same
    /// referrals always give the same records, and any 30 domains cover the whole catalog. With
    /// `faults`, some of them answer NXDOMAIN, SERVFAIL or never (see `FAULT_CYCLE`).
    pub fn seeded(referrals: &[Value], faults: bool) -> Self {
        Self::with_domains(&seeded_domains(referrals), faults)
    }

    /// [`Self::seeded`] for domains collected already ([`SeededDomains`]).
    pub fn with_domains(domains: &[String], faults: bool) -> Self {
        let sim = Self::new();
        for (index, domain) in domains.iter().enumerate() {
            sim.add_domain(domain, &CATALOG[index % CATALOG.len()]);
            if faults {
                if let Some((_, fault)) = FAULT_CYCLE.iter().find(|(at, _)| index % 11 == *at) {
                    sim.set_fault(domain, *fault);
                }
            }
        }
        sim
    }

    /// Serves `domain` as `profile` says (replacing the zone if it exists).
    pub fn add_domain(&self, domain: &str, profile: &MailProfile) {
        let apex = normalize(domain);
        let mut zone = Zone {
            profile: Some(*profile),
            records: BTreeMap::new(),
        };
        for (owner, record) in profile.records(&apex) {
            zone.records.entry(owner).or_default().push(record);
        }
        self.lock().zones.insert(apex, zone);
    }

    /// Adds a record at `name`, in the zone that holds it, else in a new zone at `name`.
    pub fn add_record(&self, name: &str, record: SimRecord) {
        let name = normalize(name);
        let mut state = self.lock();
        let apex = state.zone_of(&name).unwrap_or(&name).to_owned();
        state
            .zones
            .entry(apex)
            .or_default()
            .records
            .entry(name)
            .or_default()
            .push(record);
    }

    /// Stops serving `domain`'s zone.
    pub fn remove_domain(&self, domain: &str) {
        self.lock().zones.remove(&normalize(domain));
    }

    /// Makes `name` and every name below it answer as `fault` says.
    pub fn set_fault(&self, name: &str, fault: Fault) {
        self.lock().faults.insert(normalize(name), fault);
    }

    /// Lets `name` answer normally again.
    pub fn clear_fault(&self, name: &str) {
        self.lock().faults.remove(&normalize(name));
    }

    /// The zones served from a profile: `(domain, profile)`, sorted by domain.
    pub fn domains(&self) -> Vec<(String, MailProfile)> {
        self.lock()
            .zones
            .iter()
            .filter_map(|(apex, zone)| zone.profile.map(|p| (apex.clone(), p)))
            .collect()
    }

    /// The faults set: `(name, fault)`, sorted by name.
    pub fn faults(&self) -> Vec<(String, Fault)> {
        let mut faults: Vec<_> = self
            .lock()
            .faults
            .iter()
            .map(|(name, fault)| (name.clone(), *fault))
            .collect();
        faults.sort_by(|a, b| a.0.cmp(&b.0));
        faults
    }

    /// The fault `name` answers with, if any (its own or an ancestor's).
    pub fn fault_of(&self, name: &str) -> Option<Fault> {
        self.lock().fault_of(&normalize(name))
    }

    /// The queries received, oldest first (the last 10 000).
    pub fn queries(&self) -> Vec<LoggedQuery> {
        self.lock().log.iter().cloned().collect()
    }

    /// The most zones that had a query in flight at the same time.
    pub fn max_zones_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// Holds every query until [`DnsSim::release`] (answers wait; nothing is dropped).
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Answers the held queries and stops holding.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// Waits until `zones` zones have a query in flight at once.
    pub async fn wait_for_zones_in_flight(&self, zones: usize) {
        let mut now = self.in_flight.subscribe();
        let _ = now.wait_for(|n| *n >= zones).await;
    }

    /// Serves on `addr` over UDP and TCP on the same port (port 0: a free port on both).
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<RunningDns> {
        let mut tries = 0;
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind(addr).await?;
            match TcpListener::bind(udp.local_addr()?).await {
                Ok(tcp) => break (udp, tcp),
                // The port is free for UDP and taken for TCP: another free port.
                Err(_) if addr.port() == 0 && tries < 8 => tries += 1,
                Err(err) => return Err(err),
            }
        };
        let addr = udp.local_addr()?;
        let mut server = ServerFuture::new(Handler::new(self.clone()));
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(30));
        tracing::info!(event = "dns_sim_started", addr = %addr, zones = self.lock().zones.len());
        Ok(RunningDns {
            addr,
            sim: self,
            server,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How to answer `name` (lowercase, no trailing dot) for `record_type`.
    fn reply(&self, name: &str, record_type: &str) -> Reply {
        let state = self.lock();
        match state.fault_of(name) {
            Some(Fault::Nxdomain) => {
                return Reply::NoSuchName {
                    zone: state.zone_of(name).map(str::to_owned),
                };
            }
            Some(Fault::Servfail) => return Reply::Servfail,
            Some(Fault::Refused) => return Reply::Refused,
            Some(Fault::NoAnswer) => return Reply::Drop,
            None => {}
        }
        let Some(apex) = state.zone_of(name) else {
            return Reply::Refused;
        };
        let Some(zone) = state.zones.get(apex) else {
            return Reply::Refused;
        };
        let exists = name == apex
            || zone
                .records
                .keys()
                .any(|owner| owner == name || owner.ends_with(&format!(".{name}")));
        if !exists {
            return Reply::NoSuchName {
                zone: Some(apex.to_owned()),
            };
        }
        let records = zone
            .records
            .get(name)
            .map(|records| {
                records
                    .iter()
                    .filter(|r| match r {
                        SimRecord::Mx { .. } => record_type == "MX",
                        SimRecord::Txt(_) => record_type == "TXT",
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Reply::Records {
            zone: apex.to_owned(),
            records,
        }
    }

    /// Counts a query to `name` in flight until the guard drops.
    fn enter(&self, name: &str) -> InFlight {
        let mut state = self.lock();
        let zone = state.zone_of(name).unwrap_or(name).to_owned();
        *state.in_flight.entry(zone.clone()).or_default() += 1;
        let zones = state.in_flight.len();
        state.max_in_flight = state.max_in_flight.max(zones);
        drop(state);
        self.in_flight.send_replace(zones);
        InFlight {
            sim: self.clone(),
            zone,
        }
    }

    fn log(&self, query: LoggedQuery) {
        let mut state = self.lock();
        if state.log.len() == LOG_CAPACITY {
            state.log.pop_front();
        }
        state.log.push_back(query);
    }

    /// Waits while queries are held.
    async fn wait_while_held(&self) {
        let mut held = self.held.subscribe();
        let _ = held.wait_for(|held| !*held).await;
    }
}

impl State {
    /// The apex of the zone holding `name` (the longest one).
    fn zone_of<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        ancestors(name).find(|candidate| self.zones.contains_key(*candidate))
    }

    /// The fault of `name` or its nearest ancestor.
    fn fault_of(&self, name: &str) -> Option<Fault> {
        ancestors(name).find_map(|candidate| self.faults.get(candidate).copied())
    }
}

/// A query counted in flight.
#[derive(Debug)]
struct InFlight {
    sim: DnsSim,
    zone: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.sim.lock();
        if let Some(count) = state.in_flight.get_mut(&self.zone) {
            *count -= 1;
            if *count == 0 {
                state.in_flight.remove(&self.zone);
            }
        }
        let zones = state.in_flight.len();
        drop(state);
        self.sim.in_flight.send_replace(zones);
    }
}

/// `a.b.c`, `b.c`, `c`.
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(name), |n| n.split_once('.').map(|(_, rest)| rest))
        .filter(|n| !n.is_empty())
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The domains `referrals` name, in order of first appearance.
pub fn seeded_domains(referrals: &[Value]) -> Vec<String> {
    let mut domains = SeededDomains::default();
    referrals.iter().for_each(|r| domains.add(r));
    domains.into_vec()
}

/// Collects the domains of referrals one at a time (as they are generated), in order of first
/// appearance, each once.
#[derive(Debug, Default)]
pub struct SeededDomains {
    seen: std::collections::HashSet<String>,
    order: Vec<String>,
}

impl SeededDomains {
    /// Notes the domain ingest would extract from `referral` with the embedded rules.
    pub fn add(&mut self, referral: &Value) {
        if let Ok(text) = serde_json::to_string(referral) {
            self.add_text(&text);
        }
    }

    /// The domains of every referral text that `produce` hands to its visitor, gathered on a
    /// thread of their own (in chunks, in order) while `produce` goes on: seeding generates the
    /// text on one core while another reads the domains out of it. The same as
    /// [`Self::add_text`] of each text in turn.
    pub fn gather_beside<T>(produce: impl FnOnce(&mut dyn FnMut(String)) -> T) -> (T, Self) {
        const CHUNK: usize = 256;
        let (send, receive) = std::sync::mpsc::sync_channel::<Vec<String>>(8);
        std::thread::scope(|scope| {
            let gatherer = scope.spawn(move || {
                let mut domains = Self::default();
                for text in receive.iter().flatten() {
                    domains.add_text(&text);
                }
                domains
            });
            let mut chunk = Vec::with_capacity(CHUNK);
            let produced = produce(&mut |text| {
                chunk.push(text);
                if chunk.len() == CHUNK {
                    // Only a gatherer that panicked hangs up: its join below says so.
                    let _ = send.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
                }
            });
            let _ = send.send(chunk);
            drop(send);
            let domains = gatherer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (produced, domains)
        })
    }

    /// [`Self::add`] for a referral's JSON text.
    pub fn add_text(&mut self, referral: &str) {
        let Ok(referral) = parse_referral(referral) else {
            return;
        };
        if let Some(extracted) = extract_domain(&referral, Rules::embedded()) {
            let domain = extracted.domain.into_string();
            if self.seen.insert(domain.clone()) {
                self.order.push(domain);
            }
        }
    }

    pub fn into_vec(self) -> Vec<String> {
        self.order
    }
}

/// The simulator serving on a socket. Dropping it stops the server.
#[must_use = "dropping RunningDns stops the DNS simulator"]
pub struct RunningDns {
    /// The address of both the UDP socket and the TCP listener.
    pub addr: SocketAddr,
    /// The simulator, to inspect or steer while it serves.
    pub sim: DnsSim,
    server: ServerFuture<Handler>,
}

impl std::fmt::Debug for RunningDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningDns")
            .field("addr", &self.addr)
            .field("sim", &self.sim)
            .finish_non_exhaustive()
    }
}

impl RunningDns {
    /// Stops serving and waits for the server's tasks to end.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.server
            .shutdown_gracefully()
            .await
            .map_err(std::io::Error::other)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sim::seed::generate_referrals;

    #[test]
    fn domains_gathered_beside_the_generator_should_be_those_read_in_turn_in_the_same_order() {
        let texts: Vec<String> = crate::sim::seed::seeded_referrals(1_500, 9)
            .map(|seeded| seeded.customer_text())
            .collect();
        let mut in_turn = SeededDomains::default();
        for text in &texts {
            in_turn.add_text(text);
        }

        let (count, beside) = SeededDomains::gather_beside(|visit| {
            texts.iter().cloned().for_each(&mut *visit);
            texts.len()
        });

        assert_eq!(count, 1_500);
        let expected = in_turn.into_vec();
        assert!(expected.len() > 256, "{} domains", expected.len());
        assert_eq!(beside.into_vec(), expected);
    }

    /// Seeding reads domains from each referral's id and customer profile alone: ingest, which
    /// reads the whole referral, finds the same domain in every one.
    #[test]
    fn a_referrals_customer_text_names_the_domain_its_whole_text_does() {
        let mut named = 0;
        for seeded in (1..=3).flat_map(|seed| crate::sim::seed::seeded_referrals(1_000, seed)) {
            let domains = |text: String| {
                let mut domains = SeededDomains::default();
                domains.add_text(&text);
                domains.into_vec()
            };
            let whole = domains(seeded.text());
            assert_eq!(domains(seeded.customer_text()), whole, "{}", seeded.text());
            named += whole.len();
        }
        assert!(named > 2_000, "{named} of 3,000 name a domain");
    }

    #[test]
    fn when_seeded_should_serve_every_extracted_domain_with_a_catalog_profile() {
        let referrals = generate_referrals(200, 42);
        let domains = seeded_domains(&referrals);
        assert!(domains.len() >= CATALOG.len(), "{} domains", domains.len());
        let sim = DnsSim::seeded(&referrals, false);
        let served = sim.domains();
        assert_eq!(served.len(), domains.len());
        for profile in CATALOG {
            assert!(
                served.iter().any(|(_, p)| p.name == profile.name),
                "{}",
                profile.name
            );
        }
        assert!(sim.faults().is_empty());
        let again = DnsSim::seeded(&referrals, false);
        assert_eq!(
            again.domains(),
            served,
            "the same referrals, the same records"
        );
    }

    #[test]
    fn when_seeded_with_faults_should_fault_some_names_of_each_kind() {
        let sim = DnsSim::seeded(&generate_referrals(200, 42), true);
        let faults = sim.faults();
        for fault in [Fault::Nxdomain, Fault::Servfail, Fault::NoAnswer] {
            assert!(faults.iter().any(|(_, f)| *f == fault), "{fault:?}");
        }
        assert!(faults.len() < sim.domains().len() / 2);
    }

    #[test]
    fn when_asked_should_answer_as_an_authoritative_server() {
        let sim = DnsSim::new();
        sim.add_domain("contoso.com", profiles::by_name("m365-large").unwrap());
        let mx = sim.reply("contoso.com", "MX");
        assert!(matches!(&mx, Reply::Records { records, .. } if records.len() == 1));
        assert!(matches!(
            sim.reply("_dmarc.contoso.com", "MX"),
            Reply::Records { records, .. } if records.is_empty()
        ));
        assert!(matches!(
            sim.reply("_domainkey.contoso.com", "TXT"),
            Reply::Records { records, .. } if records.is_empty()
        ));
        assert_eq!(
            sim.reply("google._domainkey.contoso.com", "TXT"),
            Reply::NoSuchName {
                zone: Some("contoso.com".to_owned())
            }
        );
        assert_eq!(sim.reply("fabrikam.com", "MX"), Reply::Refused);
        sim.set_fault("_dmarc.contoso.com", Fault::Servfail);
        assert_eq!(sim.reply("_dmarc.contoso.com", "TXT"), Reply::Servfail);
        assert_eq!(sim.reply("contoso.com", "MX"), mx, "only below the fault");
        sim.set_fault("contoso.com", Fault::NoAnswer);
        assert_eq!(
            sim.reply("selector1._domainkey.contoso.com", "TXT"),
            Reply::Drop
        );
        sim.clear_fault("contoso.com");
        assert_eq!(sim.reply("contoso.com", "MX"), mx);
    }
}
