//! An authoritative DNS server for tests: `hickory-server` in process on 127.0.0.1 (random
//! port), one primary zone held in memory, RFC 2136 updates applied (optionally TSIG-checked).
//! The test edits the zone directly too (add, remove records).

#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{
    DNSClass, LowerName, Name, RData, Record, RecordSet, RecordType, RrKey, TSigResponseContext,
    TSigner,
};
use hickory_server::dnssec::NxProofKind;
use hickory_server::server::{Request, RequestInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AuthLookup, AxfrPolicy, Catalog, LookupControlFlow, LookupOptions, Nsec3QueryInfo,
    UpdateRequest, ZoneHandler, ZoneType,
};
use hickory_server::Server;

/// A zone that serves its records and accepts dynamic updates.
struct Zone {
    inner: InMemoryZoneHandler,
    tsig: Option<TSigner>,
}

#[async_trait::async_trait]
impl ZoneHandler for Zone {
    fn zone_type(&self) -> ZoneType {
        ZoneType::Primary
    }
    fn axfr_policy(&self) -> AxfrPolicy {
        AxfrPolicy::Deny
    }
    fn origin(&self) -> &LowerName {
        self.inner.origin()
    }
    async fn lookup(
        &self,
        name: &LowerName,
        rtype: RecordType,
        request_info: Option<&RequestInfo<'_>>,
        lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        self.inner
            .lookup(name, rtype, request_info, lookup_options)
            .await
    }
    async fn search(
        &self,
        request: &Request,
        lookup_options: LookupOptions,
    ) -> (LookupControlFlow<AuthLookup>, Option<TSigResponseContext>) {
        self.inner.search(request, lookup_options).await
    }
    async fn nsec_records(
        &self,
        name: &LowerName,
        lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        self.inner.nsec_records(name, lookup_options).await
    }
    async fn nsec3_records(
        &self,
        info: Nsec3QueryInfo<'_>,
        lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        self.inner.nsec3_records(info, lookup_options).await
    }
    fn nx_proof_kind(&self) -> Option<&NxProofKind> {
        None
    }

    async fn update(
        &self,
        update: &Request,
        now: u64,
    ) -> (Result<bool, ResponseCode>, Option<TSigResponseContext>) {
        let mut context = None;
        if let Some(signer) = &self.tsig {
            let Some(tsig) = update.signature() else {
                return (Err(ResponseCode::Refused), None);
            };
            if tsig.name != *signer.signer_name() {
                let ctx = TSigResponseContext::unknown_key(update.id(), now, tsig.name.clone());
                return (Err(ResponseCode::NotAuth), Some(ctx));
            }
            match signer.verify_message_byte(update.as_slice(), None, true) {
                Ok((_, _, range)) if range.contains(&now) => {
                    context = Some(TSigResponseContext::new(
                        update.id(),
                        now,
                        signer.clone(),
                        tsig.data.mac.clone(),
                        None,
                    ));
                }
                _ => {
                    let ctx = TSigResponseContext::bad_signature(update.id(), now, signer.clone());
                    return (Err(ResponseCode::NotAuth), Some(ctx));
                }
            }
        }
        let origin = Name::from(self.inner.origin().clone());
        for r in update.updates() {
            if !origin.zone_of(&r.name) {
                return (Err(ResponseCode::NotZone), context);
            }
        }
        for r in update.updates() {
            self.apply(r).await;
        }
        (Ok(true), context)
    }
}

impl Zone {
    async fn apply(&self, r: &Record) {
        let serial = self.inner.serial().await;
        match r.dns_class {
            DNSClass::ANY => {
                let rtype = r.record_type();
                let name = LowerName::new(&r.name);
                let mut records = self.inner.records_mut().await;
                records.retain(|k, _| {
                    !(k.name == name
                        && k.record_type != RecordType::SOA
                        && (rtype == RecordType::ANY || k.record_type == rtype))
                });
            }
            DNSClass::NONE => {
                let mut record = r.clone();
                record.dns_class = DNSClass::IN;
                let key = RrKey::new(LowerName::new(&r.name), r.record_type());
                let mut records = self.inner.records_mut().await;
                if let Some(set) = records.get(&key) {
                    let mut set = (**set).clone();
                    set.remove(&record, serial);
                    if set.is_empty() {
                        records.remove(&key);
                    } else {
                        records.insert(key, Arc::new(set));
                    }
                }
            }
            _ => {
                self.inner.upsert(r.clone(), serial).await;
            }
        }
    }
}

/// The running server and a handle on its zone.
pub struct TestDns {
    pub addr: SocketAddr,
    pub origin: Name,
    zone: Arc<Zone>,
    server: Server<Catalog>,
}

impl TestDns {
    /// Serves `origin` (e.g. `example.test.`) with an SOA whose minimum (negative) TTL is 1 s.
    pub async fn start(origin: &str, tsig: Option<TSigner>) -> TestDns {
        let origin = Name::from_ascii(origin).unwrap();
        let inner =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny, None);
        let soa = SOA::new(
            Name::from_ascii("ns")
                .unwrap()
                .append_domain(&origin)
                .unwrap(),
            Name::from_ascii("admin")
                .unwrap()
                .append_domain(&origin)
                .unwrap(),
            1,
            60,
            60,
            600,
            1,
        );
        inner
            .upsert(Record::from_rdata(origin.clone(), 1, RData::SOA(soa)), 1)
            .await;
        let zone = Arc::new(Zone { inner, tsig });
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::new(&origin),
            vec![zone.clone() as Arc<dyn ZoneHandler>],
        );
        let socket = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        TestDns {
            addr,
            origin,
            zone,
            server,
        }
    }

    /// `label.origin`.
    pub fn name(&self, label: &str) -> Name {
        Name::from_ascii(label)
            .unwrap()
            .append_domain(&self.origin)
            .unwrap()
    }

    pub async fn add(&self, record: Record) {
        self.zone.apply(&record).await;
    }

    /// Replaces the set of `record`'s name and type by `record`, atomically.
    pub async fn replace(&self, record: Record) {
        let key = RrKey::new(LowerName::new(&record.name), record.record_type());
        let serial = self.zone.inner.serial().await;
        let mut set = RecordSet::new(record.name.clone(), record.record_type(), serial);
        set.insert(record, serial);
        self.zone
            .inner
            .records_mut()
            .await
            .insert(key, Arc::new(set));
    }

    /// Removes every record of `rtype` at `name`.
    pub async fn remove(&self, name: &Name, rtype: RecordType) {
        let mut r = Record::update0(name.clone(), 0, rtype).into_record_of_rdata();
        r.dns_class = DNSClass::ANY;
        self.zone.apply(&r).await;
    }

    /// Removes one record (same name, type and data).
    pub async fn remove_one(&self, record: &Record) {
        let mut r = record.clone();
        r.dns_class = DNSClass::NONE;
        self.zone.apply(&r).await;
    }

    /// The records of `rtype` at `name`.
    pub async fn get(&self, name: &Name, rtype: RecordType) -> Vec<Record> {
        let key = RrKey::new(LowerName::new(name), rtype);
        let records = self.zone.inner.records().await;
        records
            .get(&key)
            .map(|set| set.records_without_rrsigs().cloned().collect())
            .unwrap_or_default()
    }

    /// Publishes a DNS-SD instance by hand: PTR, SRV, TXT and A records with `ttl`.
    pub async fn add_instance(
        &self,
        service: &Name,
        label: &str,
        port: u16,
        txt: &[String],
        ttl: u32,
    ) -> Name {
        let instance = Name::from_ascii(label)
            .unwrap()
            .append_domain(service)
            .unwrap();
        let host = self.name(&format!("host-{label}"));
        self.add(Record::from_rdata(
            service.clone(),
            ttl,
            RData::PTR(PTR(instance.clone())),
        ))
        .await;
        self.add(Record::from_rdata(
            instance.clone(),
            ttl,
            RData::SRV(SRV::new(0, 0, port, host.clone())),
        ))
        .await;
        if !txt.is_empty() {
            self.add(Record::from_rdata(
                instance.clone(),
                ttl,
                RData::TXT(TXT::new(txt.to_vec())),
            ))
            .await;
        }
        self.add(Record::from_rdata(
            host,
            ttl,
            RData::A(A(Ipv4Addr::LOCALHOST)),
        ))
        .await;
        instance
    }

    pub async fn shutdown(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }
}
