//! Self-registration by RFC 2136 dynamic update, optionally signed with TSIG (RFC 8945).
//!
//! One update message adds the whole DNS-SD set: the PTR record of the service, the SRV and
//! TXT records of the instance and the A/AAAA records of a host name of its own. It first
//! deletes the instance's SRV and TXT sets, so a restarted source (same caller id, same
//! instance name) replaces its old port rather than adding a second one. Withdrawing
//! deletes the PTR record (only this instance's) and every record at the instance and host
//! names.

use std::future::Future;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;
use hickory_proto::op::{DnsRequest, Message, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HickoryTsig;
use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

use super::{dns_err, fqdn, service_name, DnsConfig, DnsLookup, DnsUpdate, TsigAlgorithm};
use crate::discovery::{txt, Advertisement, DiscoveryError, PublishHandle, Publisher};
use crate::task::{self, Owned};
use crate::time::Timestamp;
use crate::wire::PROTOCOL_VERSION;

/// How many times a background registration is tried before it gives up (logged).
const ATTEMPTS: u32 = 5;
/// The longest `name` TXT value accepted (a TXT string holds at most 255 bytes).
const MAX_NAME_LEN: usize = 200;

/// Everything needed to add and withdraw one publication.
#[derive(Clone)]
struct Plan {
    server: SocketAddr,
    zone: Name,
    ttl: u32,
    timeout: Duration,
    tsig: Option<TSigner>,
    service: Name,
    instance: Name,
    host: Name,
    port: u16,
    txt: Vec<String>,
    addresses: Vec<IpAddr>,
}

fn invalid(message: String) -> DiscoveryError {
    DiscoveryError::InvalidAdvertisement(message)
}

impl Plan {
    fn new(config: &DnsConfig, ad: &Advertisement) -> Result<Self, DiscoveryError> {
        let update: &DnsUpdate = config.update.as_ref().ok_or_else(|| {
            invalid(
                "this DNS discovery has no `update` configuration: register the service with \
                 the registry's own tools, or set DnsConfig::update"
                    .into(),
            )
        })?;
        let zone = fqdn(&update.zone, "zone")?;
        let domain = match &config.lookup {
            DnsLookup::Browse { domain } => domain.clone(),
            DnsLookup::Srv { .. } => update.zone.clone(),
        };
        let service = service_name(&ad.runtime_name, &domain)?;
        if !zone.zone_of(&service) {
            return Err(invalid(format!("{service} is not in the zone {zone}")));
        }
        if ad.port == 0 {
            return Err(invalid(
                "port 0 cannot be advertised; advertise the bound port".into(),
            ));
        }
        if let Some(name) = &ad.name {
            if name.len() > MAX_NAME_LEN {
                return Err(invalid(format!(
                    "name is {} bytes; at most {MAX_NAME_LEN} are allowed",
                    name.len()
                )));
            }
        }
        let label = ad
            .instance_name
            .clone()
            .unwrap_or_else(|| ad.caller_id.to_string());
        if label.is_empty() || label.len() > 63 || label.contains('.') {
            return Err(invalid(format!(
                "instance name {label:?} must be 1..=63 bytes, without '.'"
            )));
        }
        let prepend = |base: &Name, label: &str| {
            Name::from_labels([label.as_bytes()])
                .and_then(|l| l.append_domain(base))
                .map_err(|e| invalid(format!("{label:?} is not a DNS label: {e}")))
        };
        let instance = prepend(&service, &label)?;
        let host_label = format!("tsercom-{}", ad.caller_id.as_uuid().simple());
        let host = prepend(&zone, &host_label)?;
        let addresses = if update.addresses.is_empty() {
            vec![local_address(update.server)?]
        } else {
            update.addresses.clone()
        };
        let tsig = update.tsig.as_ref().map(signer).transpose()?;
        let txt = txt::encode(
            ad.name.as_deref(),
            Timestamp::now(),
            ad.caller_id,
            ad.schema,
            PROTOCOL_VERSION,
            ad.requires_tls,
        )
        .into_iter()
        .chain(txt::same_host(ad))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
        Ok(Plan {
            server: update.server,
            zone,
            ttl: update.ttl,
            timeout: update.timeout,
            tsig,
            service,
            instance,
            host,
            port: ad.port,
            txt,
            addresses,
        })
    }

    fn message(&self) -> Message {
        let mut zone = Query::query(self.zone.clone(), RecordType::SOA);
        zone.set_query_class(DNSClass::IN);
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Update;
        message.metadata.recursion_desired = false;
        message.add_zone(zone);
        message
    }

    /// RFC 2136 §2.5.2: delete an RRset (class ANY, TTL 0, no data).
    fn delete_set(name: &Name, rtype: RecordType) -> Record {
        let mut r = Record::update0(name.clone(), 0, rtype).into_record_of_rdata();
        r.dns_class = DNSClass::ANY;
        r
    }

    fn add_message(&self) -> Message {
        let mut m = self.message();
        m.add_update(Self::delete_set(&self.instance, RecordType::SRV));
        m.add_update(Self::delete_set(&self.instance, RecordType::TXT));
        m.add_update(Self::delete_set(&self.host, RecordType::A));
        m.add_update(Self::delete_set(&self.host, RecordType::AAAA));
        let rec = |name: &Name, data: RData| Record::from_rdata(name.clone(), self.ttl, data);
        m.add_update(rec(&self.service, RData::PTR(PTR(self.instance.clone()))));
        m.add_update(rec(
            &self.instance,
            RData::SRV(SRV::new(0, 0, self.port, self.host.clone())),
        ));
        m.add_update(rec(&self.instance, RData::TXT(TXT::new(self.txt.clone()))));
        for ip in &self.addresses {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(A(*v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
            };
            m.add_update(rec(&self.host, data));
        }
        m
    }

    fn delete_message(&self) -> Message {
        let mut m = self.message();
        // RFC 2136 §2.5.4: delete one RR (class NONE, TTL 0): only this instance's PTR.
        let mut ptr = Record::from_rdata(
            self.service.clone(),
            0,
            RData::PTR(PTR(self.instance.clone())),
        );
        ptr.dns_class = DNSClass::NONE;
        m.add_update(ptr);
        // §2.5.3: delete all RRsets of a name.
        m.add_update(Self::delete_set(&self.instance, RecordType::ANY));
        m.add_update(Self::delete_set(&self.host, RecordType::ANY));
        m
    }

    async fn send(&self, message: Message, op: &'static str) -> Result<(), DiscoveryError> {
        let exchange = UdpClientStream::builder(self.server, TokioRuntimeProvider::default())
            .with_timeout(Some(self.timeout))
            .with_signer(self.tsig.clone())
            .exchange();
        let mut responses = exchange.send(DnsRequest::from(message));
        let answer = tokio::time::timeout(self.timeout.saturating_mul(2), responses.next())
            .await
            .map_err(|_| dns_err(op)(format!("no answer from {} in time", self.server)))?;
        let response = match answer {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(dns_err(op)(format!("{}: {e}", self.server))),
            None => return Err(dns_err(op)(format!("{}: no answer", self.server))),
        };
        let code = response.metadata.response_code;
        if code != ResponseCode::NoError {
            return Err(dns_err(op)(format!("{} answered {code}", self.server)));
        }
        Ok(())
    }
}

fn signer(key: &super::TsigKey) -> Result<TSigner, DiscoveryError> {
    let algorithm = match key.algorithm {
        TsigAlgorithm::HmacSha256 => HickoryTsig::HmacSha256,
        TsigAlgorithm::HmacSha384 => HickoryTsig::HmacSha384,
        TsigAlgorithm::HmacSha512 => HickoryTsig::HmacSha512,
    };
    let name = fqdn(&key.name, "TSIG key name")?;
    TSigner::new(key.secret.clone(), algorithm, name, 300)
        .map_err(|e| dns_err("TSIG key")(e.to_string()))
}

/// The local address that routes to `server` (a connected UDP socket sends nothing).
fn local_address(server: SocketAddr) -> Result<IpAddr, DiscoveryError> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).map_err(|e| dns_err("local address")(e.to_string()))?;
    socket
        .connect(server)
        .and_then(|()| socket.local_addr())
        .map(|a| a.ip())
        .map_err(|e| dns_err("local address")(format!("no route to {server}: {e}")))
}

/// A live registration; withdrawn by close or, best effort, on drop.
struct DnsPublication {
    plan: Plan,
    /// The background registration, when [`publish`] started one.
    task: Option<Owned>,
    open: bool,
}

impl PublishHandle for DnsPublication {
    fn instance_name(&self) -> String {
        self.plan.instance.to_ascii()
    }

    fn close(
        mut self: Box<Self>,
    ) -> Pin<Box<dyn Future<Output = Result<(), DiscoveryError>> + Send>> {
        self.open = false;
        // Dropping the registration task aborts it.
        self.task = None;
        let plan = self.plan.clone();
        Box::pin(async move {
            let result = plan.send(plan.delete_message(), "withdraw").await;
            tracing::debug!(instance = %plan.instance, ok = result.is_ok(), "DNS unpublished");
            result
        })
    }
}

impl Drop for DnsPublication {
    fn drop(&mut self) {
        self.task = None;
        if self.open {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let plan = self.plan.clone();
                handle.spawn(async move {
                    if let Err(error) = plan.send(plan.delete_message(), "withdraw").await {
                        tracing::warn!(instance = %plan.instance, %error, "DNS withdraw on drop failed");
                    }
                });
            } else {
                tracing::warn!(instance = %self.plan.instance, "DNS publication dropped outside a runtime: records stay until removed");
            }
        }
    }
}

/// Registers in the background (retried with backoff, failures logged).
pub(super) fn publish(config: &DnsConfig, ad: Advertisement) -> Result<Publisher, DiscoveryError> {
    let plan = Plan::new(config, &ad)?;
    let task = {
        let plan = plan.clone();
        task::try_spawn_logged("DNS registration", async move {
            let mut delay = Duration::from_millis(250);
            for attempt in 1..=ATTEMPTS {
                match plan.send(plan.add_message(), "register").await {
                    Ok(()) => {
                        tracing::debug!(instance = %plan.instance, port = plan.port, "DNS published");
                        return;
                    }
                    Err(error) if attempt < ATTEMPTS => {
                        tracing::debug!(instance = %plan.instance, attempt, %error, "DNS registration failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = delay.saturating_mul(2);
                    }
                    Err(error) => {
                        tracing::warn!(instance = %plan.instance, %error, "DNS registration failed; giving up");
                    }
                }
            }
        })
        .ok_or(DiscoveryError::NoRuntime)?
    };
    Ok(Publisher::custom(Box::new(DnsPublication {
        plan,
        task: Some(task),
        open: true,
    })))
}

/// Registers and waits for the server's confirmation.
pub(super) async fn register(
    config: &DnsConfig,
    ad: Advertisement,
) -> Result<Publisher, DiscoveryError> {
    let plan = Plan::new(config, &ad)?;
    plan.send(plan.add_message(), "register").await?;
    tracing::debug!(instance = %plan.instance, port = plan.port, "DNS published");
    Ok(Publisher::custom(Box::new(DnsPublication {
        plan,
        task: None,
        open: true,
    })))
}
