//! Fuzz harness bodies (feature `fuzzing`): each function takes arbitrary bytes, runs them
//! through the real code path and checks what must hold for any input. The cargo-fuzz targets
//! in `fuzz/` call them, and `tests/answers.rs` feeds every committed corpus file
//! (`fuzz/corpus/<target>/`) through the same functions as an ordinary test. A panic here is a
//! finding; returning means the input was handled.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use fleetdns_core::{
    ClusterId, ClusterView, Endpoint, Export, ExportSet, FleetSnapshot, HostVips, Port, Protocol,
    ServiceEntry, ServiceEntrySet, ServiceKey, ServiceType, Timestamp, merge_fleet,
    service_entry::Resolution,
};

use crate::cache::CacheLimits;
use crate::catalog::Catalog;
use crate::dispatch::{Handled, handle};
use crate::forward::{ForwardZoneConfig, Forwarder, UpstreamPolicy};
use crate::request::{MAX_UDP_SIZE, Outcome, Request, Transport};
use crate::table::AnswerTable;
use crate::wire::{self, HEADER_LEN, MAX_NAME};
use crate::{AnswerPolicy, ZonesConfig, compile};

/// The table and forwarder every query target answers from, built once per process.
struct Fixture {
    table: AnswerTable,
    forwarder: Forwarder,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let snapshot = fleet();
        let merged = merge_fleet(&snapshot);
        let mut config = ZonesConfig {
            local_cluster: Some(ClusterId::new("east").expect("fixture id")),
            ..ZonesConfig::default()
        };
        config.clusterset.policy = AnswerPolicy::LocalFirst;
        config.clusterset.lighthouse_names = true;
        config.mesh.enabled = true;
        config.validate().expect("fixture config is valid");
        let table = compile(&snapshot, &merged, &config, 7);
        let zone = |zone: &str| ForwardZoneConfig {
            zone: zone.into(),
            upstreams: vec!["192.0.2.1".into()],
            force_tcp: false,
            prefer_udp: false,
            policy: UpstreamPolicy::Random,
            health_check_ms: 500,
            max_fails: 2,
            timeout_ms: 100,
            max_concurrent: 10,
        };
        let forwarder = Forwarder::new(
            &[zone("example.net"), zone("sub.clusterset.local")],
            CacheLimits::default(),
        )
        .expect("fixture forward zones");
        Fixture { table, forwarder }
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("fixture address")
}

fn export(cluster: &ClusterId, ns: &str, name: &str, headless: bool, n: u8) -> Export {
    Export {
        key: ServiceKey::new(ns, name).expect("fixture key"),
        cluster: cluster.clone(),
        service_type: if headless {
            ServiceType::Headless
        } else {
            ServiceType::ClusterSetIp
        },
        ports: vec![
            Port {
                name: Some("http".into()),
                protocol: Protocol::Tcp,
                port: 80,
                app_protocol: None,
            },
            Port {
                name: Some("dns".into()),
                protocol: Protocol::Udp,
                port: 53,
                app_protocol: None,
            },
            Port {
                name: None,
                protocol: Protocol::Tcp,
                port: 8080,
                app_protocol: None,
            },
        ]
        .into(),
        cluster_ips: if headless {
            Vec::new().into()
        } else {
            vec![ip(&format!("10.96.{n}.10")), ip(&format!("fd00:{n}::10"))].into()
        },
        endpoints: (0..if headless { 40 } else { 2 })
            .map(|i| Endpoint {
                addresses: vec![ip(&format!("10.{n}.1.{}", i + 1))].into(),
                hostname: (i % 3 != 2).then(|| format!("pod-{i}").into()),
                ready: i % 5 != 4,
                zone: None,
            })
            .collect(),
        created: Timestamp(1_700_000_000 + i64::from(n)),
    }
}

fn entry(cluster: &ClusterId, name: &str, hosts: &[&str], addresses: &[&str]) -> ServiceEntry {
    ServiceEntry {
        namespace: "istio-system".into(),
        name: name.into(),
        cluster: cluster.clone(),
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        addresses: addresses.iter().map(|a| ip(a)).collect(),
        status_addresses: Vec::new(),
        resolution: Resolution::Static,
        autoallocate: true,
        created: Timestamp(1_700_000_000),
    }
}

/// Three clusters (one dead), ClusterSetIP and headless services, dual-stack addresses,
/// named and unnamed ports, ServiceEntries with a wildcard host and a VIP-allocated host.
pub fn fleet() -> FleetSnapshot {
    let mut snapshot = FleetSnapshot {
        version: 3,
        ..FleetSnapshot::default()
    };
    for (c, (id, alive)) in [("east", true), ("west", true), ("gone", false)]
        .into_iter()
        .enumerate()
    {
        let cluster = ClusterId::new(id).expect("fixture id");
        let n = c as u8 + 1;
        let mut exports = ExportSet::new();
        for e in [
            export(&cluster, "default", "web", false, n),
            export(&cluster, "default", "db", true, n),
            export(&cluster, "prod", &format!("only-{id}"), false, n),
        ] {
            exports.insert(e.key.clone(), Arc::new(e));
        }
        let mut entries = ServiceEntrySet::new();
        if c == 0 {
            for e in [
                entry(&cluster, "api", &["api.example.com"], &["192.0.2.5"]),
                entry(&cluster, "wild", &["*.wild.example.com"], &["192.0.2.50"]),
                entry(&cluster, "alloc", &["alloc.example.com"], &[]),
            ] {
                entries.insert(e.label(), Arc::new(e));
            }
        }
        snapshot.clusters.insert(
            cluster,
            ClusterView {
                alive,
                exports: Arc::new(exports),
                published: Timestamp(1_700_000_000),
                service_entries: Arc::new(entries),
            },
        );
    }
    snapshot.host_vips.insert(
        "alloc.example.com".into(),
        HostVips {
            v4: Some("240.240.1.1".parse().expect("fixture VIP")),
            v6: None,
        },
    );
    snapshot.vips.insert(
        ServiceKey::new("default", "web").expect("key"),
        ip("241.0.0.1"),
    );
    snapshot.vips_v6 = BTreeMap::new();
    snapshot
}

/// One message through the whole request path (`dispatch::handle`) on the fixture table and
/// forward zones, and the checks every response passes: the query's ID, a header at least,
/// the UDP size limit, the question echoed.
fn one_message(packet: &[u8], transport: Transport, out: &mut Vec<u8>) {
    let f = fixture();
    let catalog = Catalog {
        table: Some(&f.table),
        forwarder: Some(&f.forwarder),
    };
    let allowed = packet.len().is_multiple_of(2);
    let nsid = packet.len().is_multiple_of(3).then_some(&b"fuzz-1"[..]);
    match handle(catalog, || allowed, nsid, packet, transport, out) {
        Handled::Answered { outcome, .. } => {
            if outcome == Outcome::Dropped {
                assert!(out.is_empty(), "a dropped message has no response");
                return;
            }
            assert!(out.len() >= HEADER_LEN, "a response has a header");
            assert_eq!(out[..2], packet[..2], "a response carries the query's ID");
            assert!(out[2] & 0x80 != 0, "a response has QR set");
            let mut lower = [0u8; MAX_NAME];
            if let Ok(request) = Request::parse(packet, transport, &mut lower) {
                let limit = request.size_limit();
                assert!(
                    out.len() <= limit,
                    "{} bytes over a limit of {limit}",
                    out.len()
                );
                if transport == Transport::Udp {
                    assert!(out.len() <= MAX_UDP_SIZE);
                }
                let q = request.query.question;
                assert_eq!(
                    out.get(HEADER_LEN..HEADER_LEN + q.len()),
                    Some(q),
                    "the question is echoed as asked"
                );
            }
        }
        Handled::Forward { question, .. } => {
            assert!(allowed, "a client not allowed is never forwarded");
            assert!(out.is_empty());
            assert!(question.lower_name.len() <= MAX_NAME);
        }
    }
}

/// A UDP datagram: one query → response.
pub fn query_response_udp(data: &[u8]) {
    one_message(data, Transport::Udp, &mut Vec::new());
}

/// A TCP stream: length-prefixed messages (RFC 7766) answered one by one on one connection,
/// each response framed as the TCP loop frames it. A cut last message is left unanswered.
pub fn query_response_tcp(data: &[u8]) {
    let mut out = Vec::new();
    let mut framed = Vec::new();
    let mut rest = data;
    while let [h, l, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*h, *l]));
        let Some(message) = tail.get(..len) else {
            break;
        };
        one_message(message, Transport::Tcp, &mut out);
        assert!(
            out.len() <= usize::from(u16::MAX),
            "a TCP response fits its frame"
        );
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        rest = &tail[len..];
    }
}

/// A question name: `data` is the name as sent (after the header); read as the request path
/// reads it, and walked as every other step walks names.
pub fn question_name(data: &[u8]) {
    let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(data);
    let mut lower = [0u8; MAX_NAME];
    let skipped = wire::skip_name(&packet, HEADER_LEN);
    let qtype = wire::question_type(&packet);
    match wire::parse_query(&packet, &mut lower) {
        Ok(query) => {
            let name = &lower[..query.name_len];
            assert!(name.len() <= MAX_NAME);
            assert_eq!(name.last(), Some(&0), "a name ends with the root label");
            assert!(!name.iter().any(u8::is_ascii_uppercase), "lower-cased");
            assert_eq!(skipped, Some(HEADER_LEN + query.name_len));
            assert_eq!(qtype, Some(query.qtype));
            let offsets: Vec<usize> = wire::label_offsets(name).collect();
            assert_eq!(offsets.last(), Some(&(name.len() - 1)));
            let dotted = wire::display_name(name);
            // A name whose labels hold no dot survives the round trip through its text form.
            if !name.contains(&b'.') && name.is_ascii() {
                assert_eq!(wire::encode_name(&dotted).as_deref(), Ok(name));
            }
            let f = fixture();
            let _ = f.table.lookup(name);
            let _ = f.forwarder.find(name);
        }
        Err(_) => {
            let _ = wire::display_name(data);
            let _ = wire::label_offsets(data).count();
        }
    }
}

/// A forwarded upstream answer: `data` is a 2-byte length, the client's query, then the
/// upstream's response. See [`crate::forward::take_upstream_answer`].
pub fn upstream_answer(data: &[u8]) {
    let (query, response) = match data {
        [h, l, rest @ ..] => {
            let len = usize::from(u16::from_be_bytes([*h, *l])).min(rest.len());
            rest.split_at(len)
        }
        _ => return,
    };
    crate::forward::take_upstream_answer(query, response);
}
