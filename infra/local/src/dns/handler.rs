//! Answers one DNS query from the simulator's zones (the `hickory-server` request handler).

use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{MX, SOA, TXT};
use hickory_server::proto::rr::{Name, RData, Record};
use hickory_server::proto::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

use super::{DnsSim, LoggedQuery, Reply, SimRecord, Transport};

/// The largest UDP answer the simulator sends (the EDNS0 size of DNS Flag Day 2020).
const MAX_UDP_PAYLOAD: u16 = 1232;
/// The UDP answer limit without EDNS0 (RFC 1035).
const PLAIN_UDP_PAYLOAD: u16 = 512;
/// TTL of every record served.
const TTL: u32 = 300;

/// The request handler over a [`DnsSim`].
#[derive(Debug)]
pub(super) struct Handler {
    sim: DnsSim,
}

impl Handler {
    pub(super) fn new(sim: DnsSim) -> Self {
        Self { sim }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut header = Header::response_from_request(request.header());
        let query = match request.request_info() {
            Ok(info)
                if request.message_type() == MessageType::Query
                    && request.op_code() == OpCode::Query =>
            {
                info.query.clone()
            }
            _ => {
                header.set_response_code(ResponseCode::FormErr);
                let response =
                    MessageResponseBuilder::from_message_request(request).build_no_records(header);
                return send(&mut response_handle, response, header).await;
            }
        };
        // ASCII (punycode) form: `Display` would show an IDN in Unicode.
        let name = query
            .original()
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let record_type = query.query_type().to_string();
        let transport = match request.protocol() {
            Protocol::Tcp => Transport::Tcp,
            _ => Transport::Udp,
        };
        // Counted until just before the answer goes out: the count at the server never
        // includes a query whose client may already hold its answer.
        let in_flight = self.sim.enter(&name);
        self.sim.wait_while_held().await;

        let mut log = LoggedQuery {
            name: name.clone(),
            record_type,
            transport,
            answer: "NOERROR",
            records: 0,
            truncated: false,
        };
        header.set_authoritative(true);
        header.set_recursion_available(false);
        let (code, answers, soa_zone) = match self.sim.reply(&name, &log.record_type) {
            Reply::Drop => {
                log.answer = "none";
                self.sim.log(log);
                return ResponseInfo::from(header);
            }
            Reply::Records { zone, records } => {
                let answers: Vec<Record> = records
                    .iter()
                    .filter_map(|r| record(query.original().name(), r))
                    .collect();
                let soa = answers.is_empty().then_some(zone);
                (ResponseCode::NoError, answers, soa)
            }
            Reply::NoSuchName { zone } => (ResponseCode::NXDomain, Vec::new(), zone),
            Reply::Servfail => (ResponseCode::ServFail, Vec::new(), None),
            Reply::Refused => (ResponseCode::Refused, Vec::new(), None),
        };
        header.set_response_code(code);
        log.answer = match code {
            ResponseCode::NoError => "NOERROR",
            ResponseCode::NXDomain => "NXDOMAIN",
            ResponseCode::ServFail => "SERVFAIL",
            _ => "REFUSED",
        };
        let soa: Vec<Record> = soa_zone.as_deref().and_then(soa).into_iter().collect();

        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = request.edns() {
            let mut ours = Edns::new();
            ours.set_max_payload(MAX_UDP_PAYLOAD);
            ours.set_version(edns.version());
            builder.edns(ours);
        }
        let limit = request.edns().map_or(PLAIN_UDP_PAYLOAD, |e| {
            e.max_payload().clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
        });
        let too_large = transport == Transport::Udp
            && encoded_len(request, header, &answers, &soa) > usize::from(limit);
        log.truncated = too_large;
        log.records = if too_large { 0 } else { answers.len() };
        self.sim.log(log);
        drop(in_flight);
        if too_large {
            header.set_truncated(true);
            return send(
                &mut response_handle,
                builder.build_no_records(header),
                header,
            )
            .await;
        }
        let response = builder.build(header, answers.iter(), [], soa.iter(), []);
        send(&mut response_handle, response, header).await
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    header: Header,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(err) => {
            tracing::debug!(event = "dns_sim_send_failed", error = %err);
            ResponseInfo::from(header)
        }
    }
}

/// The size of the whole answer on the wire (with the question and an OPT record as sent).
fn encoded_len(request: &Request, header: Header, answers: &[Record], soa: &[Record]) -> usize {
    let mut message = Message::new();
    message.set_header(header);
    for query in request.queries() {
        message.add_query(query.original().clone());
    }
    message.add_answers(answers.iter().cloned());
    message.add_name_servers(soa.iter().cloned());
    if request.edns().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        message.set_edns(edns);
    }
    // An answer that cannot be encoded is too large for any transport.
    message.to_vec().map_or(usize::MAX, |bytes| bytes.len())
}

/// The wire record of `record` at `owner`; `None` for a host that is not a DNS name.
fn record(owner: &Name, record: &SimRecord) -> Option<Record> {
    let data = match record {
        SimRecord::Mx { preference, host } => {
            let exchange = if host.is_empty() {
                Name::root()
            } else {
                fqdn(host)?
            };
            RData::MX(MX::new(*preference, exchange))
        }
        SimRecord::Txt(strings) => RData::TXT(TXT::new(strings.clone())),
    };
    Some(Record::from_rdata(owner.clone(), TTL, data))
}

/// The zone's SOA record (its minimum: the negative TTL).
fn soa(zone: &str) -> Option<Record> {
    let apex = fqdn(zone)?;
    let data = SOA::new(
        fqdn(&format!("ns1.{zone}"))?,
        fqdn(&format!("hostmaster.{zone}"))?,
        1,
        3600,
        600,
        86_400,
        60,
    );
    Some(Record::from_rdata(apex, TTL, RData::SOA(data)))
}

fn fqdn(name: &str) -> Option<Name> {
    let mut name = Name::from_ascii(name).ok()?;
    name.set_fqdn(true);
    Some(name)
}
