//! Data-driven answer tests: a small fleet compiled into an answer table, queried through
//! `respond()` with packets built by hickory-proto, and the responses decoded by hickory-proto.
//!
//! Every case names the rule it checks (SPEC.md §2–3, `reference/dns-behaviour.md` K8S-n,
//! MCS-n, LH-n). Expected answers are written from the rules and the fixture below, never
//! copied from the implementation's output.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use fleetdns_core::{
    ClusterId, ClusterView, Endpoint, Export, ExportSet, FleetSnapshot, Port, Protocol, ServiceKey,
    ServiceType, Timestamp, merge_fleet,
};
use fleetdns_dns::{AnswerPolicy, AnswerTable, Transport, ZonesConfig, compile, respond};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The SOA serial handed to `compile`; the apex SOA must carry it.
const SERIAL: u32 = 4242;

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

fn ip(s: &str) -> IpAddr {
    s.parse().expect("fixture IP")
}

fn port(name: Option<&str>, protocol: Protocol, port: u16) -> Port {
    Port {
        name: name.map(Into::into),
        protocol,
        port,
        app_protocol: None,
    }
}

fn ep(hostname: Option<&str>, addresses: &[&str], ready: bool) -> Endpoint {
    Endpoint {
        addresses: addresses.iter().map(|a| ip(a)).collect(),
        hostname: hostname.map(Into::into),
        ready,
        zone: None,
    }
}

struct Svc {
    ns: &'static str,
    name: &'static str,
    ty: ServiceType,
    created: i64,
    ports: Vec<Port>,
    cluster_ips: Vec<&'static str>,
    endpoints: Vec<Endpoint>,
}

fn svc(name: &'static str, ty: ServiceType, created: i64) -> Svc {
    Svc {
        ns: "default",
        name,
        ty,
        created,
        ports: vec![port(Some("http"), Protocol::Tcp, 80)],
        cluster_ips: vec![],
        endpoints: vec![],
    }
}

impl Svc {
    fn ns(mut self, ns: &'static str) -> Self {
        self.ns = ns;
        self
    }
    fn ips(mut self, ips: &[&'static str]) -> Self {
        self.cluster_ips = ips.to_vec();
        self
    }
    fn ports(mut self, ports: Vec<Port>) -> Self {
        self.ports = ports;
        self
    }
    fn eps(mut self, eps: Vec<Endpoint>) -> Self {
        self.endpoints = eps;
        self
    }
    /// One ready endpoint (a ClusterSetIP service with a ready backend).
    fn ready(self, addr: &str) -> Self {
        self.eps(vec![ep(None, &[addr], true)])
    }
    /// One endpoint that is not ready.
    fn not_ready(self, addr: &str) -> Self {
        self.eps(vec![ep(None, &[addr], false)])
    }
}

fn cluster(snap: &mut FleetSnapshot, id: &str, alive: bool, services: Vec<Svc>) {
    let cid = ClusterId::new(id).unwrap();
    let mut set = ExportSet::new();
    for s in services {
        let key = ServiceKey::new(s.ns, s.name).unwrap();
        let export = Export {
            key: key.clone(),
            cluster: cid.clone(),
            service_type: s.ty,
            ports: s.ports.into(),
            cluster_ips: s.cluster_ips.iter().map(|a| ip(a)).collect(),
            endpoints: s.endpoints.into(),
            created: Timestamp(s.created),
        };
        set.insert(key, Arc::new(export));
    }
    snap.clusters.insert(
        cid,
        ClusterView {
            alive,
            exports: Arc::new(set),
            published: Timestamp(1_700_000_000),
            service_entries: Arc::default(),
        },
    );
}

/// The fleet every table case runs against.
///
/// | service          | cluster-a (local, t=100)        | cluster-b (t=200)        | cluster-c (t=300)         | cluster-d (DEAD)      |
/// |------------------|---------------------------------|--------------------------|---------------------------|-----------------------|
/// | web (CSIP)       | 10.1.0.10 fd00:a::10 ready      | 10.2.0.10 fd00:b::10     | 10.3.0.10 fd00:c::10      | 10.4.0.10 (t=400)     |
/// | v4only (CSIP)    | 10.1.0.20 ready                 |                          |                           |                       |
/// | failover (CSIP)  | 10.1.0.30 NOT ready             | 10.2.0.30 ready          | 10.3.0.30 ready           |                       |
/// | noready (CSIP)   | 10.1.0.40 NOT ready             | 10.2.0.40 NOT ready      |                           | 10.4.0.40 ready (t=50)|
/// | split (CSIP)     |                                 | 10.2.0.60 ready          |                           | 10.4.0.60 (t=50)      |
/// | api (CSIP)       | http:80                         | grpc:9090, http:8080     |                           |                       |
/// | db (Headless)    | db-0 10.1.1.1, db-1 10.1.1.2,   | (no hostname) 10.2.1.1   | ClusterSetIP 10.3.0.99    |                       |
/// |                  | (no hostname) 10.1.1.3 NOT ready|                          | (type conflict, newest)   |                       |
/// | empty-hl (HL)    | 10.1.2.1 NOT ready              |                          |                           |                       |
/// | big (HL)         | 60 ready endpoints 10.1.3.1..60 |                          |                           |                       |
/// | web.prod (CSIP)  |                                 | 10.2.0.70                |                           |                       |
///
/// cluster-e is alive and exports nothing.
fn fleet() -> FleetSnapshot {
    use ServiceType::{ClusterSetIp as Csip, Headless as Hl};
    let web_ports = || {
        vec![
            port(Some("http"), Protocol::Tcp, 80),
            port(Some("dns"), Protocol::Udp, 53),
            port(None, Protocol::Tcp, 8080), // unnamed: no SRV (K8S-5, MCS-13)
        ]
    };
    let db_ports = || {
        vec![
            port(Some("pg"), Protocol::Tcp, 5432),
            port(Some("metrics"), Protocol::Tcp, 9187),
            port(None, Protocol::Tcp, 7000),
        ]
    };
    let mut snap = FleetSnapshot {
        version: 9,
        clusters: BTreeMap::new(),
        ..FleetSnapshot::default()
    };
    cluster(
        &mut snap,
        "cluster-a",
        true,
        vec![
            svc("web", Csip, 100)
                .ips(&["10.1.0.10", "fd00:a::10"])
                .ports(web_ports())
                .ready("10.1.5.1"),
            svc("v4only", Csip, 100)
                .ips(&["10.1.0.20"])
                .ready("10.1.5.2"),
            svc("failover", Csip, 100)
                .ips(&["10.1.0.30"])
                .not_ready("10.1.5.3"),
            svc("noready", Csip, 100)
                .ips(&["10.1.0.40"])
                .not_ready("10.1.5.4"),
            svc("api", Csip, 100).ips(&["10.1.0.50"]).ready("10.1.5.5"),
            svc("db", Hl, 100).ports(db_ports()).eps(vec![
                ep(Some("db-0"), &["10.1.1.1"], true),
                ep(Some("db-1"), &["10.1.1.2"], true),
                ep(None, &["10.1.1.3"], false),
            ]),
            svc("empty-hl", Hl, 100).not_ready("10.1.2.1"),
            svc("big", Hl, 100).eps(
                (1..=60)
                    .map(|i| Endpoint {
                        addresses: vec![IpAddr::from([10, 1, 3, i])].into(),
                        hostname: None,
                        ready: true,
                        zone: None,
                    })
                    .collect(),
            ),
        ],
    );
    cluster(
        &mut snap,
        "cluster-b",
        true,
        vec![
            svc("web", Csip, 200)
                .ips(&["10.2.0.10", "fd00:b::10"])
                .ports(web_ports())
                .ready("10.2.5.1"),
            svc("failover", Csip, 200)
                .ips(&["10.2.0.30"])
                .ready("10.2.5.3"),
            svc("noready", Csip, 200)
                .ips(&["10.2.0.40"])
                .not_ready("10.2.5.4"),
            svc("split", Csip, 200)
                .ips(&["10.2.0.60"])
                .ready("10.2.5.6"),
            svc("api", Csip, 200)
                .ips(&["10.2.0.50"])
                .ports(vec![
                    port(Some("grpc"), Protocol::Tcp, 9090),
                    port(Some("http"), Protocol::Tcp, 8080), // name clash: the oldest (a: 80) wins
                ])
                .ready("10.2.5.5"),
            svc("db", Hl, 200)
                .ports(db_ports())
                .eps(vec![ep(None, &["10.2.1.1"], true)]),
            svc("web", Csip, 200)
                .ns("prod")
                .ips(&["10.2.0.70"])
                .ready("10.2.5.7"),
        ],
    );
    cluster(
        &mut snap,
        "cluster-c",
        true,
        vec![
            svc("web", Csip, 300)
                .ips(&["10.3.0.10", "fd00:c::10"])
                .ports(web_ports())
                .ready("10.3.5.1"),
            svc("failover", Csip, 300)
                .ips(&["10.3.0.30"])
                .ready("10.3.5.3"),
            // Newer than a's and b's headless exports, other type: MCS-20/22 leave it out.
            svc("db", Csip, 300)
                .ips(&["10.3.0.99"])
                .ports(db_ports())
                .ready("10.3.1.1"),
        ],
    );
    cluster(
        &mut snap,
        "cluster-d",
        false,
        vec![
            svc("web", Csip, 400).ips(&["10.4.0.10"]).ready("10.4.5.1"),
            svc("noready", Csip, 50)
                .ips(&["10.4.0.40"])
                .ready("10.4.5.4"),
            svc("split", Csip, 50).ips(&["10.4.0.60"]).ready("10.4.5.6"),
        ],
    );
    // An agent that is alive but exports nothing yet: its zone exists and is empty.
    cluster(&mut snap, "cluster-e", true, vec![]);
    snap
}

/// The configurations the table cases name in their second column.
fn config(fixture: &str) -> ZonesConfig {
    let mut cfg = ZonesConfig {
        local_cluster: Some(ClusterId::new("cluster-a").unwrap()),
        ..ZonesConfig::default()
    };
    match fixture {
        "std" | "empty" => {}
        "all" => cfg.clusterset.policy = AnswerPolicy::All,
        "rr" => cfg.clusterset.policy = AnswerPolicy::RoundRobin,
        "lh" => cfg.clusterset.lighthouse_names = true,
        "ttl" => {
            cfg.clusterset.ttl = 600;
            cfg.cluster_zones.ttl = 30;
        }
        "mesh" | "mesh-ttl" => {
            cfg.mesh.enabled = true;
            // cluster-2 is not in the fleet: its gateway entry makes `<svc>.<ns>.cluster-2`
            // hosts land in the mesh zone `cluster-2`.
            cfg.mesh
                .gateways
                .insert("cluster-2".into(), "192.0.2.10:15443".into());
            if fixture == "mesh-ttl" {
                cfg.mesh.ttl = 60;
            }
        }
        other => panic!("unknown fixture {other}"),
    }
    cfg.validate().expect("fixture config is valid");
    cfg
}

/// ServiceEntries of the `mesh` fixtures, as manifests would hold them (translated by
/// `fleetdns_core::service_entry`, so the tests go through the same parsing as the sources).
///
/// | entry (cluster, created) | hosts | addresses | expected |
/// |---|---|---|---|
/// | reviews (a, 10)  | reviews.default.cluster-2 | 240.0.0.2 | spec address, v4 only |
/// | ratings (a, 11)  | ratings.default.cluster-2 | 240.0.0.3/32, 2001:db8::3/128, 10.9.0.0/16 | /32 and /128, the /16 dropped |
/// | status (a, 12)   | status.example.com | status 240.240.0.1, 2001:2::1 | status addresses |
/// | young (b, 20)    | young.example.com | status 240.240.0.1 (clash) | falls back to its VIP 240.240.1.2 |
/// | alloc (a, 13)    | alloc.example.com | - | allocated 240.240.1.1, 2001:2::1:1 |
/// | optout (a, 14)   | optout.example.com | -, label opt-out | not served |
/// | wild (a, 15)     | *.wild.example.com | 192.0.2.50 | wildcard |
/// | none (a, 16)     | none.example.com | -, resolution NONE | not served |
/// | noneaddr (a, 17) | noneaddr.example.com | 192.0.2.60, resolution NONE | served |
/// | shadow (a, 18)   | web.default.svc.clusterset.local | 192.0.2.99 | Kubernetes wins (IST-15) |
/// | override (a, 19) | web.default.cluster-b | 240.0.0.9 | the entry's address, not b's ClusterIP |
/// | private (a, 20)  | private.example.com | 192.0.2.70, exportTo ["."] | not served |
/// | apex (a, 21)     | example.org | 192.0.2.90 | its own zone (never the TLD `org`) |
/// | tld (a, 22)      | *.net | 192.0.2.91 | not served (fleetdns never serves a TLD) |
/// | decorates (a, 23)| details.default.svc.cluster.local, *.svc.cluster-z.example | 192.0.2.95 | Kubernetes names: left to the cluster DNS (IST-15) |
/// | dup (b, 30)      | reviews.default.cluster-2 | 192.0.2.80 | younger: reviews keeps 240.0.0.2 |
fn add_service_entries(snap: &mut FleetSnapshot) {
    use fleetdns_core::service_entry::{ServiceEntryObject, translate_service_entries};
    let t = |secs: i64| format!("2024-01-01T00:00:{secs:02}Z");
    let entry = |name: &str, created: i64, spec: serde_json::Value| -> ServiceEntryObject {
        let mut v = serde_json::json!({
            "metadata": {"name": name, "namespace": "istio-system", "creationTimestamp": t(created)},
            "spec": spec,
        });
        if name == "optout" {
            v["metadata"]["labels"] =
                serde_json::json!({"networking.istio.io/enable-autoallocate-ip": "false"});
        }
        serde_json::from_value(v).unwrap()
    };
    let mut status = entry(
        "status",
        12,
        serde_json::json!({"hosts": ["status.example.com"], "resolution": "DNS"}),
    );
    status.status = serde_json::from_value(serde_json::json!({"addresses": [
        {"value": "240.240.0.1", "host": "status.example.com"},
        {"value": "2001:2::1", "host": "status.example.com"}]}))
    .unwrap();
    let mut young = entry(
        "young",
        20,
        serde_json::json!({"hosts": ["young.example.com"], "resolution": "DNS"}),
    );
    young.status = serde_json::from_value(serde_json::json!({"addresses": [
        {"value": "240.240.0.1", "host": "young.example.com"}]}))
    .unwrap();
    let a = vec![
        entry(
            "reviews",
            10,
            serde_json::json!({"hosts": ["reviews.default.cluster-2"], "addresses": ["240.0.0.2"], "location": "MESH_INTERNAL", "resolution": "DNS"}),
        ),
        entry(
            "ratings",
            11,
            serde_json::json!({"hosts": ["ratings.default.cluster-2"], "addresses": ["240.0.0.3/32", "2001:db8::3/128", "10.9.0.0/16"], "resolution": "DNS"}),
        ),
        status,
        entry(
            "alloc",
            13,
            serde_json::json!({"hosts": ["alloc.example.com"], "resolution": "DNS"}),
        ),
        entry(
            "optout",
            14,
            serde_json::json!({"hosts": ["optout.example.com"], "resolution": "DNS"}),
        ),
        entry(
            "wild",
            15,
            serde_json::json!({"hosts": ["*.wild.example.com"], "addresses": ["192.0.2.50"], "resolution": "NONE"}),
        ),
        entry(
            "none",
            16,
            serde_json::json!({"hosts": ["none.example.com"], "resolution": "NONE"}),
        ),
        entry(
            "noneaddr",
            17,
            serde_json::json!({"hosts": ["noneaddr.example.com"], "addresses": ["192.0.2.60"], "resolution": "NONE"}),
        ),
        entry(
            "shadow",
            18,
            serde_json::json!({"hosts": ["web.default.svc.clusterset.local"], "addresses": ["192.0.2.99"], "resolution": "STATIC"}),
        ),
        entry(
            "override",
            19,
            serde_json::json!({"hosts": ["web.default.cluster-b"], "addresses": ["240.0.0.9"], "resolution": "DNS"}),
        ),
        entry(
            "private",
            20,
            serde_json::json!({"hosts": ["private.example.com"], "addresses": ["192.0.2.70"], "exportTo": ["."]}),
        ),
        entry(
            "apex",
            21,
            serde_json::json!({"hosts": ["example.org"], "addresses": ["192.0.2.90"], "resolution": "STATIC"}),
        ),
        entry(
            "tld",
            22,
            serde_json::json!({"hosts": ["*.net"], "addresses": ["192.0.2.91"], "resolution": "STATIC"}),
        ),
        entry(
            "decorates",
            23,
            serde_json::json!({"hosts": ["details.default.svc.cluster.local", "*.svc.cluster-z.example"], "addresses": ["192.0.2.95"], "resolution": "STATIC"}),
        ),
    ];
    let b = vec![
        young,
        entry(
            "dup",
            30,
            serde_json::json!({"hosts": ["reviews.default.cluster-2"], "addresses": ["192.0.2.80"], "resolution": "DNS"}),
        ),
    ];
    for (id, objects) in [("cluster-a", a), ("cluster-b", b)] {
        let cid = ClusterId::new(id).unwrap();
        let (set, _notes) = translate_service_entries(&cid, &objects, &mut |_| Timestamp(0));
        snap.clusters.get_mut(&cid).unwrap().service_entries = Arc::new(set);
    }
    let key = |n: &str| ServiceKey::new("default", n).unwrap();
    snap.vips.insert(key("web"), ip("240.240.0.10"));
    snap.vips_v6
        .insert(key("web"), "2001:2::10".parse().unwrap());
    snap.vips.insert(key("v4only"), ip("240.240.0.20"));
    let host = |v4: &str, v6: Option<&str>| fleetdns_core::HostVips {
        v4: Some(v4.parse().unwrap()),
        v6: v6.map(|s| s.parse().unwrap()),
    };
    snap.host_vips.insert(
        "alloc.example.com".into(),
        host("240.240.1.1", Some("2001:2::1:1")),
    );
    snap.host_vips
        .insert("young.example.com".into(), host("240.240.1.2", None));
}

fn table(fixture: &str) -> AnswerTable {
    let snap = if fixture == "empty" {
        FleetSnapshot::default()
    } else if fixture.starts_with("mesh") {
        let mut s = fleet();
        add_service_entries(&mut s);
        s
    } else {
        fleet()
    };
    let merged = merge_fleet(&snap);
    compile(&snap, &merged, &config(fixture), SERIAL)
}

// ---------------------------------------------------------------------------------------------
// Queries and responses
// ---------------------------------------------------------------------------------------------

fn query_packet(id: u16, name: &str, qtype: RecordType, edns: Option<(u16, u8)>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some((size, version)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        e.set_version(version);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn ask_raw(table: Option<&AnswerTable>, packet: &[u8], transport: Transport) -> (Message, usize) {
    let mut out = Vec::new();
    respond(table, packet, transport, &mut out);
    assert!(!out.is_empty(), "no response to a well-formed query");
    let msg = Message::from_vec(&out).unwrap_or_else(|e| panic!("unparseable response: {e}"));
    (msg, out.len())
}

fn ask(table: &AnswerTable, name: &str, qtype: RecordType) -> Message {
    ask_raw(
        Some(table),
        &query_packet(0x5a5a, name, qtype, None),
        Transport::Udp,
    )
    .0
}

/// `"A 10.0.0.1"`, `"SRV 0 100 80 web.default.svc.clusterset.local."`, `"TXT 1.0.0"`.
fn rr_string(r: &Record) -> String {
    match &r.data {
        RData::TXT(t) => {
            let parts: Vec<String> = t
                .txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            format!("TXT {}", parts.join(" "))
        }
        d => format!("{} {}", r.record_type(), d),
    }
}

fn sorted_answers(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(rr_string).collect();
    v.sort();
    v
}

fn soa_in_authority(m: &Message) -> Option<&Record> {
    m.authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
}

fn rtype(s: &str) -> RecordType {
    match s {
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        "SRV" => RecordType::SRV,
        "TXT" => RecordType::TXT,
        "SOA" => RecordType::SOA,
        "MX" => RecordType::MX,
        "NS" => RecordType::NS,
        other => panic!("unknown type {other}"),
    }
}

fn rcode(s: &str) -> ResponseCode {
    match s {
        "NOERROR" => ResponseCode::NoError,
        "NXDOMAIN" => ResponseCode::NXDomain,
        "REFUSED" => ResponseCode::Refused,
        other => panic!("unknown rcode {other}"),
    }
}

/// The served zone a query name falls in, with the TTL the fixture configures for it.
fn zone_of(name: &str, cfg: &ZonesConfig) -> Option<(String, u32)> {
    let lower = name.to_ascii_lowercase();
    let lower = lower.trim_end_matches('.');
    let under = |apex: &str| lower == apex || lower.ends_with(&format!(".{apex}"));
    if under(&cfg.clusterset.name) {
        return Some((format!("{}.", cfg.clusterset.name), cfg.clusterset.ttl));
    }
    if cfg.mesh.enabled {
        for apex in [
            "cluster-a",
            "cluster-b",
            "cluster-c",
            "cluster-d",
            "cluster-e",
            "cluster-2",
            "global",
            "wild.example.com",
            "example.com",
            "example.org",
        ] {
            if under(apex) {
                return Some((format!("{apex}."), cfg.mesh.ttl));
            }
        }
    }
    for c in [
        "cluster-a",
        "cluster-b",
        "cluster-c",
        "cluster-d",
        "cluster-e",
    ] {
        let apex = cfg.cluster_zone_name(c);
        if under(&apex) {
            return Some((format!("{apex}."), cfg.cluster_zones.ttl));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// `rule | fixture | qname qtype | rcode flags | answers`
///
/// flags: `AA` (must be set; absent = must be clear), `SOA` (an SOA must be in AUTHORITY;
/// absent = must not be), `ttl=N` (every answer record has TTL N). TC must be clear in all of
/// these. Answers are `;`-separated and compared as sorted sets; `-` means none. Lines
/// starting with `#` are comments.
/// Fixtures: std (local-first, local cluster-a), all, lh (lighthouse_names), ttl (clusterset
/// TTL 600, per-cluster TTL 30), empty (no cluster at all).
const CASES: &str = r#"
MCS-11       | std   | dns-version.clusterset.local. TXT                         | NOERROR AA       | TXT 1.0.0
K8S-3        | std   | dns-version.cluster-a.local. TXT                          | NOERROR AA       | TXT 1.1.0
K8S-3        | std   | dns-version.cluster-d.local. TXT                          | NOERROR AA       | TXT 1.1.0
MCS-12       | std   | v4only.default.svc.clusterset.local. A                    | NOERROR AA ttl=5 | A 10.1.0.20
MCS-12       | std   | web.default.svc.clusterset.local. A                       | NOERROR AA ttl=5 | A 10.1.0.10
MCS-12       | std   | web.default.svc.clusterset.local. AAAA                    | NOERROR AA ttl=5 | AAAA fd00:a::10
K8S-21       | std   | v4only.default.svc.clusterset.local. AAAA                 | NOERROR AA SOA   | -
K8S-21       | std   | web.prod.svc.clusterset.local. AAAA                       | NOERROR AA SOA   | -
K8S-21       | std   | db-0.cluster-a.db.default.svc.clusterset.local. AAAA      | NOERROR AA SOA   | -
MCS-13       | std   | web.default.svc.clusterset.local. SRV                     | NOERROR AA       | SRV 0 50 80 web.default.svc.clusterset.local.;SRV 0 50 53 web.default.svc.clusterset.local.
MCS-13       | std   | _http._tcp.web.default.svc.clusterset.local. SRV          | NOERROR AA       | SRV 0 100 80 web.default.svc.clusterset.local.
MCS-13       | std   | _dns._udp.web.default.svc.clusterset.local. SRV           | NOERROR AA       | SRV 0 100 53 web.default.svc.clusterset.local.
K8S-5        | std   | _dns._tcp.web.default.svc.clusterset.local. SRV           | NXDOMAIN AA SOA  | -
K8S-5        | std   | v4only.default.svc.clusterset.local. SRV                  | NOERROR AA       | SRV 0 100 80 v4only.default.svc.clusterset.local.
MCS-14       | std   | db.default.svc.clusterset.local. A                        | NOERROR AA ttl=5 | A 10.1.1.1;A 10.1.1.2;A 10.2.1.1
MCS-14       | std   | empty-hl.default.svc.clusterset.local. A                  | NXDOMAIN AA SOA  | -
MCS-14       | std   | empty-hl.default.svc.clusterset.local. AAAA               | NXDOMAIN AA SOA  | -
K8S-16       | std   | 10-1-1-3.cluster-a.db.default.svc.clusterset.local. A     | NXDOMAIN AA SOA  | -
MCS-15       | std   | db-0.cluster-a.db.default.svc.clusterset.local. A         | NOERROR AA ttl=5 | A 10.1.1.1
MCS-15       | std   | db-1.cluster-a.db.default.svc.clusterset.local. A         | NOERROR AA       | A 10.1.1.2
K8S-11       | std   | 10-2-1-1.cluster-b.db.default.svc.clusterset.local. A     | NOERROR AA       | A 10.2.1.1
MCS-15       | std   | db-0.cluster-b.db.default.svc.clusterset.local. A         | NXDOMAIN AA SOA  | -
MCS-16       | std   | _pg._tcp.db.default.svc.clusterset.local. SRV             | NOERROR AA       | SRV 0 33 5432 db-0.cluster-a.db.default.svc.clusterset.local.;SRV 0 33 5432 db-1.cluster-a.db.default.svc.clusterset.local.;SRV 0 33 5432 10-2-1-1.cluster-b.db.default.svc.clusterset.local.
MCS-16       | std   | _metrics._tcp.db.default.svc.clusterset.local. SRV        | NOERROR AA       | SRV 0 33 9187 db-0.cluster-a.db.default.svc.clusterset.local.;SRV 0 33 9187 db-1.cluster-a.db.default.svc.clusterset.local.;SRV 0 33 9187 10-2-1-1.cluster-b.db.default.svc.clusterset.local.
MCS-16       | std   | db.default.svc.clusterset.local. SRV                      | NOERROR AA       | SRV 0 16 5432 db-0.cluster-a.db.default.svc.clusterset.local.;SRV 0 16 5432 db-1.cluster-a.db.default.svc.clusterset.local.;SRV 0 16 5432 10-2-1-1.cluster-b.db.default.svc.clusterset.local.;SRV 0 16 9187 db-0.cluster-a.db.default.svc.clusterset.local.;SRV 0 16 9187 db-1.cluster-a.db.default.svc.clusterset.local.;SRV 0 16 9187 10-2-1-1.cluster-b.db.default.svc.clusterset.local.
# MCS-18: `<cluster>.<svc>...` must not exist. For a ClusterSetIP service nothing lives below the
# service name, so it is NXDOMAIN. For a headless service with ready endpoints the per-pod names
# `<hostname>.<cluster>.<svc>...` (MCS-15) exist below it, which makes `<cluster>.<svc>...` an empty
# non-terminal: it owns no records, but answering NXDOMAIN would tell resolvers that the whole
# subtree, MCS-15 names included, does not exist (RFC 8020). So it is NODATA with the SOA: still
# "no answer", as MCS-18's test allows ("NXDOMAIN, or at least no answer").
MCS-18       | std   | cluster-a.web.default.svc.clusterset.local. A             | NXDOMAIN AA SOA  | -
MCS-18       | std   | cluster-b.web.default.svc.clusterset.local. SRV           | NXDOMAIN AA SOA  | -
MCS-18+RFC8020 | std | cluster-a.db.default.svc.clusterset.local. A              | NOERROR AA SOA   | -
MCS-18       | std   | cluster-c.db.default.svc.clusterset.local. A              | NXDOMAIN AA SOA  | -
# lighthouse_names = true turns the reserved name into the Lighthouse extension (LH-11/12).
LH-12        | lh    | cluster-b.web.default.svc.clusterset.local. A             | NOERROR AA       | A 10.2.0.10
LH-12        | lh    | cluster-b.web.default.svc.clusterset.local. AAAA          | NOERROR AA       | AAAA fd00:b::10
LH-12        | lh    | cluster-d.split.default.svc.clusterset.local. A           | NOERROR AA       | A 10.4.0.60
LH-18        | lh    | cluster-a.db.default.svc.clusterset.local. A              | NOERROR AA       | A 10.1.1.1;A 10.1.1.2
LH-12        | lh    | web.default.svc.clusterset.local. A                       | NOERROR AA       | A 10.1.0.10
MCS-14       | lh    | empty-hl.default.svc.clusterset.local. A                  | NXDOMAIN AA SOA  | -
MCS-14/LH-18 | lh    | cluster-a.empty-hl.default.svc.clusterset.local. A        | NXDOMAIN AA SOA  | -
MCS-20/22    | lh    | cluster-c.db.default.svc.clusterset.local. A              | NXDOMAIN AA SOA  | -
K8S-21       | std   | db.default.svc.clusterset.local. AAAA                     | NOERROR AA SOA   | -
MCS-20/22    | std   | 10-3-1-1.cluster-c.db.default.svc.clusterset.local. A     | NXDOMAIN AA SOA  | -
MCS-19       | std   | db.default.svc.cluster-c.local. A                         | NOERROR AA       | A 10.3.0.99
MCS-21       | std   | api.default.svc.clusterset.local. SRV                     | NOERROR AA       | SRV 0 50 80 api.default.svc.clusterset.local.;SRV 0 50 9090 api.default.svc.clusterset.local.
MCS-21       | std   | _grpc._tcp.api.default.svc.clusterset.local. SRV          | NOERROR AA       | SRV 0 100 9090 api.default.svc.clusterset.local.
MCS-21       | std   | _http._tcp.api.default.svc.clusterset.local. SRV          | NOERROR AA       | SRV 0 100 80 api.default.svc.clusterset.local.
# SPEC §3 policies. local-first with a ready local endpoint is `web` above (cluster-a only).
SPEC-3-local | std   | failover.default.svc.clusterset.local. A                  | NOERROR AA       | A 10.2.0.30;A 10.3.0.30
SPEC-3-all   | all   | web.default.svc.clusterset.local. A                       | NOERROR AA       | A 10.1.0.10;A 10.2.0.10;A 10.3.0.10
SPEC-3-all   | all   | web.default.svc.clusterset.local. AAAA                    | NOERROR AA       | AAAA fd00:a::10;AAAA fd00:b::10;AAAA fd00:c::10
SPEC-3-all   | all   | failover.default.svc.clusterset.local. A                  | NOERROR AA       | A 10.2.0.30;A 10.3.0.30
SPEC-3-none  | std   | noready.default.svc.clusterset.local. A                   | NOERROR AA       | A 10.1.0.40;A 10.2.0.40
SPEC-3-none  | all   | noready.default.svc.clusterset.local. A                   | NOERROR AA       | A 10.1.0.40;A 10.2.0.40
SPEC-3-dead  | std   | split.default.svc.clusterset.local. A                     | NOERROR AA       | A 10.2.0.60
SPEC-3-dead  | std   | split.default.svc.cluster-d.local. A                      | NOERROR AA       | A 10.4.0.60
A.6-ns       | std   | default.svc.clusterset.local. A                           | NOERROR AA SOA   | -
A.6-ns       | std   | prod.svc.clusterset.local. SRV                            | NOERROR AA SOA   | -
A.6-ns       | std   | nope.svc.clusterset.local. A                              | NXDOMAIN AA SOA  | -
A.6-svc      | std   | svc.clusterset.local. A                                   | NOERROR AA SOA   | -
A.6-svc      | std   | svc.cluster-a.local. A                                    | NOERROR AA SOA   | -
A.6-svc      | empty | svc.clusterset.local. A                                   | NOERROR AA SOA   | -
A.6-svc      | std   | svc.cluster-e.local. A                                    | NOERROR AA SOA   | -
A.6-svc      | std   | default.svc.cluster-e.local. A                            | NXDOMAIN AA SOA  | -
K8S-3        | std   | dns-version.cluster-e.local. TXT                          | NOERROR AA       | TXT 1.1.0
A.6-svc      | empty | svc.cluster-a.local. A                                    | REFUSED          | -
A.6-pod      | std   | pod.cluster-a.local. A                                    | NOERROR AA SOA   | -
A.6-pod      | std   | 10-1-0-1.default.pod.cluster-a.local. A                   | NXDOMAIN AA SOA  | -
A.6-pod      | std   | pod.clusterset.local. A                                   | NXDOMAIN AA SOA  | -
A.6-x        | std   | pods.clusterset.local. A                                  | NXDOMAIN AA SOA  | -
A.6-unknown  | std   | nope.default.svc.clusterset.local. A                      | NXDOMAIN AA SOA  | -
A.6-unknown  | empty | web.default.svc.clusterset.local. A                       | NXDOMAIN AA SOA  | -
MCS-11       | empty | dns-version.clusterset.local. TXT                         | NOERROR AA       | TXT 1.0.0
A.6-type     | std   | web.default.svc.clusterset.local. MX                      | NOERROR AA SOA   | -
A.6-type     | std   | web.default.svc.cluster-a.local. TXT                      | NOERROR AA SOA   | -
A.6-type     | std   | nope.default.svc.clusterset.local. MX                     | NXDOMAIN AA SOA  | -
A.6-labels   | std   | x.db-0.cluster-a.db.default.svc.clusterset.local. A       | NXDOMAIN AA SOA  | -
K8S-20       | std   | web.prod.svc.cluster-b.local.prod.svc.cluster.local. A    | REFUSED          | -
K8S-20       | std   | web.prod.svc.cluster-b.local.default.svc.clusterset.local. A | NXDOMAIN AA SOA | -
K8S-20       | std   | web.prod.svc.cluster-b.local.prod.svc.cluster-a.local. A  | NXDOMAIN AA SOA  | -
K8S-20       | std   | web.default.svc.clusterset.local.default.svc.clusterset.local. AAAA | NXDOMAIN AA SOA | -
SPEC-2.5     | std   | example.com. A                                            | REFUSED          | -
SPEC-2.5     | std   | local. SOA                                                | REFUSED          | -
SPEC-2.5     | std   | cluster-z.local. A                                        | REFUSED          | -
K8S-2        | std   | WEB.Default.SVC.ClusterSet.LOCAL. A                       | NOERROR AA       | A 10.1.0.10
K8S-2        | std   | DB-0.Cluster-A.db.default.svc.CLUSTERSET.local. A         | NOERROR AA       | A 10.1.1.1
K8S-2        | std   | Dns-Version.ClusterSet.Local. TXT                         | NOERROR AA       | TXT 1.0.0
A.6-soa      | std   | clusterset.local. SOA                                     | NOERROR AA ttl=5 | SOA ns.dns.clusterset.local. hostmaster.clusterset.local. 4242 7200 1800 86400 5
A.6-soa      | std   | clusterset.local. NS                                      | NOERROR AA       | NS ns.dns.clusterset.local.
A.6-soa      | std   | clusterset.local. MX                                      | NOERROR AA SOA   | -
A.6-soa      | std   | cluster-b.local. SOA                                      | NOERROR AA ttl=5 | SOA ns.dns.cluster-b.local. hostmaster.cluster-b.local. 4242 7200 1800 86400 5
K8S-18/19    | ttl   | clusterset.local. SOA                                     | NOERROR AA ttl=300 | SOA ns.dns.clusterset.local. hostmaster.clusterset.local. 4242 7200 1800 86400 600
K8S-18/19    | ttl   | cluster-b.local. SOA                                      | NOERROR AA ttl=30 | SOA ns.dns.cluster-b.local. hostmaster.cluster-b.local. 4242 7200 1800 86400 30
K8S-19       | ttl   | web.default.svc.clusterset.local. A                       | NOERROR AA ttl=600 | A 10.1.0.10
K8S-19       | ttl   | web.default.svc.cluster-b.local. A                        | NOERROR AA ttl=30 | A 10.2.0.10
K8S-18/19    | ttl   | nope.default.svc.clusterset.local. A                      | NXDOMAIN AA SOA  | -
K8S-18/19    | ttl   | v4only.default.svc.clusterset.local. AAAA                 | NOERROR AA SOA   | -
K8S-18/19    | ttl   | nope.default.svc.cluster-a.local. A                       | NXDOMAIN AA SOA  | -
K8S-4        | std   | web.default.svc.cluster-b.local. A                        | NOERROR AA ttl=5 | A 10.2.0.10
K8S-4        | std   | web.default.svc.cluster-b.local. AAAA                     | NOERROR AA       | AAAA fd00:b::10
K8S-4        | std   | noready.default.svc.cluster-a.local. A                    | NOERROR AA       | A 10.1.0.40
K8S-5        | std   | _http._tcp.web.default.svc.cluster-c.local. SRV           | NOERROR AA       | SRV 0 100 80 web.default.svc.cluster-c.local.
K8S-7        | std   | web.default.svc.cluster-c.local. SRV                      | NOERROR AA       | SRV 0 50 80 web.default.svc.cluster-c.local.;SRV 0 50 53 web.default.svc.cluster-c.local.
K8S-9        | std   | db.default.svc.cluster-a.local. A                         | NOERROR AA       | A 10.1.1.1;A 10.1.1.2
K8S-10       | std   | db-1.db.default.svc.cluster-a.local. A                    | NOERROR AA       | A 10.1.1.2
K8S-11       | std   | 10-2-1-1.db.default.svc.cluster-b.local. A                | NOERROR AA       | A 10.2.1.1
K8S-16       | std   | 10-1-1-3.db.default.svc.cluster-a.local. A                | NXDOMAIN AA SOA  | -
K8S-12       | std   | _pg._tcp.db.default.svc.cluster-a.local. SRV              | NOERROR AA       | SRV 0 50 5432 db-0.db.default.svc.cluster-a.local.;SRV 0 50 5432 db-1.db.default.svc.cluster-a.local.
K8S-8/12     | std   | db.default.svc.cluster-a.local. SRV                       | NOERROR AA       | SRV 0 25 5432 db-0.db.default.svc.cluster-a.local.;SRV 0 25 5432 db-1.db.default.svc.cluster-a.local.;SRV 0 25 9187 db-0.db.default.svc.cluster-a.local.;SRV 0 25 9187 db-1.db.default.svc.cluster-a.local.
K8S-8/12     | std   | db.default.svc.cluster-b.local. SRV                       | NOERROR AA       | SRV 0 50 5432 10-2-1-1.db.default.svc.cluster-b.local.;SRV 0 50 9187 10-2-1-1.db.default.svc.cluster-b.local.
K8S-14       | std   | empty-hl.default.svc.cluster-a.local. A                   | NXDOMAIN AA SOA  | -
K8S-21       | std   | v4only.default.svc.cluster-a.local. AAAA                  | NOERROR AA SOA   | -
# Mesh names and Istio ServiceEntry hosts (SPEC §2.3, reference D); fixture: add_service_entries.
IST-2        | mesh  | reviews.default.cluster-2. A                              | NOERROR AA ttl=30 | A 240.0.0.2
IST-2        | mesh  | REVIEWS.Default.Cluster-2. A                              | NOERROR AA       | A 240.0.0.2
K8S-21       | mesh  | reviews.default.cluster-2. AAAA                           | NOERROR AA SOA   | -
IST-2        | mesh  | ratings.default.cluster-2. A                              | NOERROR AA       | A 240.0.0.3
IST-2        | mesh  | ratings.default.cluster-2. AAAA                           | NOERROR AA       | AAAA 2001:db8::3
SPEC-2.3     | mesh  | nope.default.cluster-2. A                                 | NXDOMAIN AA SOA  | -
SPEC-2.3     | mesh  | default.cluster-2. A                                      | NOERROR AA SOA   | -
SPEC-2.3     | mesh  | cluster-2. SOA                                            | NOERROR AA ttl=30 | SOA ns.dns.cluster-2. hostmaster.cluster-2. 4242 7200 1800 86400 30
IST-14       | mesh  | status.example.com. A                                     | NOERROR AA       | A 240.240.0.1
IST-14       | mesh  | status.example.com. AAAA                                  | NOERROR AA       | AAAA 2001:2::1
IST-14       | mesh  | young.example.com. A                                      | NOERROR AA       | A 240.240.1.2
K8S-21       | mesh  | young.example.com. AAAA                                   | NOERROR AA SOA   | -
IST-14       | mesh  | alloc.example.com. A                                      | NOERROR AA       | A 240.240.1.1
IST-14       | mesh  | alloc.example.com. AAAA                                   | NOERROR AA       | AAAA 2001:2::1:1
IST-14       | mesh  | optout.example.com. A                                     | NXDOMAIN AA SOA  | -
IST-3        | mesh  | maps.wild.example.com. A                                  | NOERROR AA       | A 192.0.2.50
IST-10       | mesh  | a.b.wild.example.com. A                                   | NOERROR AA       | A 192.0.2.50
K8S-21       | mesh  | maps.wild.example.com. AAAA                               | NOERROR AA SOA   | -
IST-3        | mesh  | wild.example.com. A                                       | NOERROR AA SOA   | -
IST-2        | mesh  | none.example.com. A                                       | NXDOMAIN AA SOA  | -
IST-2        | mesh  | noneaddr.example.com. A                                   | NOERROR AA       | A 192.0.2.60
IST-15       | mesh  | web.default.svc.clusterset.local. A                       | NOERROR AA ttl=5 | A 10.1.0.10
IST-15       | mesh  | private.example.com. A                                    | NXDOMAIN AA SOA  | -
IST-14       | mesh  | web.default.cluster-b. A                                  | NOERROR AA       | A 240.0.0.9
SPEC-2.3     | mesh  | web.default.cluster-a. A                                  | NOERROR AA ttl=30 | A 10.1.0.10
SPEC-2.3     | mesh  | web.default.cluster-a. AAAA                               | NOERROR AA       | AAAA fd00:a::10
SPEC-2.3     | mesh  | db.default.cluster-a. A                                   | NOERROR AA       | A 10.1.1.1;A 10.1.1.2
K8S-21       | mesh  | db.default.cluster-a. AAAA                                | NOERROR AA SOA   | -
SPEC-2.3     | mesh  | empty-hl.default.cluster-a. A                             | NXDOMAIN AA SOA  | -
SPEC-2.3     | mesh  | split.default.cluster-d. A                                | NOERROR AA       | A 10.4.0.60
SPEC-2.3     | mesh  | web.default.global. A                                     | NOERROR AA ttl=30 | A 240.240.0.10
SPEC-2.3     | mesh  | web.default.global. AAAA                                  | NOERROR AA       | AAAA 2001:2::10
K8S-21       | mesh  | v4only.default.global. AAAA                               | NOERROR AA SOA   | -
SPEC-2.3     | mesh  | nope.default.global. A                                    | NXDOMAIN AA SOA  | -
SPEC-2.3     | mesh  | global. NS                                                | NOERROR AA       | NS ns.dns.global.
SPEC-2.3     | mesh-ttl | web.default.global. A                                  | NOERROR AA ttl=60 | A 240.240.0.10
SPEC-2.3     | mesh-ttl | reviews.default.cluster-2. AAAA                        | NOERROR AA SOA   | -
IST-2        | mesh  | example.org. A                                            | NOERROR AA       | A 192.0.2.90
K8S-21       | mesh  | example.org. AAAA                                         | NOERROR AA SOA   | -
SPEC-2.5     | mesh  | other.org. A                                              | REFUSED          | -
SPEC-2.5     | mesh  | anything.net. A                                           | REFUSED          | -
IST-15       | mesh  | details.default.svc.cluster.local. A                      | REFUSED          | -
IST-15       | mesh  | a.b.svc.cluster-z.example. A                              | REFUSED          | -
SPEC-2.3     | std   | reviews.default.cluster-2. A                              | REFUSED          | -
SPEC-2.3     | std   | web.default.global. A                                     | REFUSED          | -
"#;

struct Case<'a> {
    line: &'a str,
    rule: &'a str,
    fixture: &'a str,
    qname: &'a str,
    qtype: RecordType,
    rcode: ResponseCode,
    aa: bool,
    soa: bool,
    ttl: Option<u32>,
    answers: Vec<String>,
}

fn parse_cases() -> Vec<Case<'static>> {
    CASES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            assert_eq!(cols.len(), 5, "bad case line: {line}");
            let (qname, qtype) = cols[2].split_once(' ').expect("qname qtype");
            let mut flags = cols[3].split_whitespace();
            let rcode = rcode(flags.next().expect("rcode"));
            let flags: Vec<&str> = flags.collect();
            let mut answers: Vec<String> = if cols[4] == "-" {
                vec![]
            } else {
                cols[4].split(';').map(|s| s.trim().to_owned()).collect()
            };
            answers.sort();
            Case {
                line,
                rule: cols[0],
                fixture: cols[1],
                qname,
                qtype: rtype(qtype.trim()),
                rcode,
                aa: flags.contains(&"AA"),
                soa: flags.contains(&"SOA"),
                ttl: flags
                    .iter()
                    .find_map(|f| f.strip_prefix("ttl="))
                    .map(|t| t.parse().expect("ttl")),
                answers,
            }
        })
        .collect()
}

#[test]
fn answer_table_cases() {
    let cases = parse_cases();
    assert!(
        cases.len() > 80,
        "the table parsed to {} cases",
        cases.len()
    );
    let mut tables: BTreeMap<&str, AnswerTable> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let t = tables
            .entry(case.fixture)
            .or_insert_with(|| table(case.fixture));
        let m = ask(t, case.qname, case.qtype);
        let mut problems = Vec::new();
        let got = sorted_answers(&m);
        if m.metadata.response_code != case.rcode {
            problems.push(format!(
                "rcode {:?}, want {:?}",
                m.metadata.response_code, case.rcode
            ));
        }
        if m.metadata.authoritative != case.aa {
            problems.push(format!("AA {}, want {}", m.metadata.authoritative, case.aa));
        }
        if m.metadata.truncation {
            problems.push("TC set".into());
        }
        if m.metadata.id != 0x5a5a {
            problems.push(format!("id {:#x}", m.metadata.id));
        }
        if got != case.answers {
            problems.push(format!("answers {got:?}, want {:?}", case.answers));
        }
        // The answer owner is the question name, in the question's case (K8S-2).
        for r in &m.answers {
            if r.name.to_string() != case.qname {
                problems.push(format!("owner {} for question {}", r.name, case.qname));
            }
        }
        if let Some(ttl) = case.ttl {
            for r in &m.answers {
                if r.ttl != ttl {
                    problems.push(format!("TTL {} on {}, want {ttl}", r.ttl, rr_string(r)));
                }
            }
        }
        match (soa_in_authority(&m), case.soa) {
            (None, true) => problems.push("no SOA in AUTHORITY".into()),
            (Some(_), false) => problems.push("unexpected SOA in AUTHORITY".into()),
            (Some(soa), true) => {
                // K8S-18/19: the zone's SOA, minimum = zone TTL, RR TTL = min(minimum, 300).
                let cfg = config(case.fixture);
                let (apex, zone_ttl) =
                    zone_of(case.qname, &cfg).expect("a negative answer in a zone");
                if !soa.name.to_string().eq_ignore_ascii_case(&apex) {
                    problems.push(format!("SOA owner {}, want {apex}", soa.name));
                }
                match &soa.data {
                    RData::SOA(s) => {
                        if s.minimum != zone_ttl {
                            problems.push(format!("SOA minimum {}, want {zone_ttl}", s.minimum));
                        }
                        if soa.ttl != zone_ttl.min(300) {
                            problems.push(format!(
                                "SOA TTL {}, want {}",
                                soa.ttl,
                                zone_ttl.min(300)
                            ));
                        }
                    }
                    other => problems.push(format!("SOA record holds {other:?}")),
                }
            }
            (None, false) => {}
        }
        if !problems.is_empty() {
            failures.push(format!(
                "[{}] {}\n    {}",
                case.rule,
                case.line,
                problems.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Policies that rotate (SPEC §3): answers depend on the query sequence.
// ---------------------------------------------------------------------------------------------

fn a_answers(t: &AnswerTable, name: &str) -> Vec<String> {
    let m = ask(t, name, RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
    assert!(m.metadata.authoritative, "{name}");
    m.answers.iter().map(rr_string).collect()
}

#[test]
fn spec3_round_robin_answers_one_ip_rotating_over_ready_clusters() {
    // LH-15: exactly one A per answer; successive queries walk the healthy ready clusters.
    let t = table("rr");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let got = a_answers(&t, "web.default.svc.clusterset.local.");
        assert_eq!(got.len(), 1, "round-robin answers exactly one IP: {got:?}");
        seen.push(got[0].clone());
    }
    let distinct: BTreeSet<&String> = seen.iter().collect();
    let want: BTreeSet<String> = ["A 10.1.0.10", "A 10.2.0.10", "A 10.3.0.10"]
        .map(String::from)
        .into();
    assert_eq!(
        distinct,
        want.iter().collect(),
        "three successive queries visit the three live clusters (not dead cluster-d)"
    );
    // Only ready clusters take part: cluster-a's failover endpoint is not ready.
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        let got = a_answers(&t, "failover.default.svc.clusterset.local.");
        assert_eq!(got.len(), 1, "{got:?}");
        seen.insert(got[0].clone());
    }
    assert_eq!(
        seen,
        ["A 10.2.0.30", "A 10.3.0.30"].map(String::from).into()
    );
    // AAAA rotates too, one record per answer (MCS-12 dual-stack).
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let m = ask(&t, "web.default.svc.clusterset.local.", RecordType::AAAA);
        assert_eq!(m.answers.len(), 1);
        seen.insert(rr_string(&m.answers[0]));
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn spec3_all_and_local_first_fallback_rotate_per_query() {
    // "every healthy ready cluster, rotated": the full set each time, led by another cluster.
    for (fixture, name, n) in [
        ("all", "web.default.svc.clusterset.local.", 3),
        ("std", "failover.default.svc.clusterset.local.", 2),
    ] {
        let t = table(fixture);
        let mut firsts = BTreeSet::new();
        let mut sets = BTreeSet::new();
        for _ in 0..n {
            let got = a_answers(&t, name);
            assert_eq!(got.len(), n, "{fixture} {name}: {got:?}");
            firsts.insert(got[0].clone());
            let mut sorted = got.clone();
            sorted.sort();
            sets.insert(sorted);
        }
        assert_eq!(sets.len(), 1, "{fixture} {name}: same set every time");
        assert_eq!(
            firsts.len(),
            n,
            "{fixture} {name}: {n} successive answers start with {n} different clusters"
        );
    }
}

#[test]
fn spec3_local_first_is_stable_when_local_cluster_is_ready() {
    // Local cluster ready → its ClusterIP only, every time (LH-14).
    let t = table("std");
    for _ in 0..5 {
        assert_eq!(
            a_answers(&t, "web.default.svc.clusterset.local."),
            ["A 10.1.0.10"]
        );
    }
}

#[test]
fn spec3_local_first_without_local_export_answers_all_ready_clusters() {
    // A server in cluster-c: cluster-c does not export `split`, so every healthy ready
    // cluster answers (cluster-b only: cluster-d is dead); for `web` cluster-c's own IP.
    let snap = fleet();
    let merged = merge_fleet(&snap);
    let mut cfg = config("std");
    cfg.local_cluster = Some(ClusterId::new("cluster-c").unwrap());
    let t = compile(&snap, &merged, &cfg, SERIAL);
    assert_eq!(
        a_answers(&t, "web.default.svc.clusterset.local."),
        ["A 10.3.0.10"]
    );
    assert_eq!(
        a_answers(&t, "split.default.svc.clusterset.local."),
        ["A 10.2.0.60"]
    );
    let mut got = a_answers(&t, "web.prod.svc.clusterset.local.");
    got.sort();
    assert_eq!(got, ["A 10.2.0.70"]);
}

#[test]
fn spec3_dead_cluster_leaves_answers_and_comes_back() {
    // SPEC §3: a cluster is healthy while its agent is alive. Dead cluster-d's `web` export is
    // left out under "all"; once cluster-d is alive again it is answered again.
    let mut snap = fleet();
    let d = ClusterId::new("cluster-d").unwrap();
    let merged = merge_fleet(&snap);
    let t = compile(&snap, &merged, &config("all"), SERIAL);
    let mut got = a_answers(&t, "web.default.svc.clusterset.local.");
    got.sort();
    assert_eq!(got, ["A 10.1.0.10", "A 10.2.0.10", "A 10.3.0.10"]);
    snap.clusters.get_mut(&d).unwrap().alive = true;
    let merged = merge_fleet(&snap);
    let t = compile(&snap, &merged, &config("all"), SERIAL);
    let mut got = a_answers(&t, "web.default.svc.clusterset.local.");
    got.sort();
    assert_eq!(
        got,
        ["A 10.1.0.10", "A 10.2.0.10", "A 10.3.0.10", "A 10.4.0.10"]
    );
    // Alive again and ready, cluster-d now counts for `noready`: only ready clusters answer.
    assert_eq!(
        a_answers(&t, "noready.default.svc.clusterset.local."),
        ["A 10.4.0.40"]
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 8482 ANY
// ---------------------------------------------------------------------------------------------

/// SPEC §3, MCS-10: a service only dead clusters export keeps its name (NODATA with the SOA,
/// K8S-21) but never answers their addresses, under every policy.
#[test]
fn spec3_a_service_only_dead_clusters_export_answers_no_address() {
    let mut snap = FleetSnapshot::default();
    cluster(
        &mut snap,
        "cluster-a",
        true,
        vec![
            svc("web", ServiceType::ClusterSetIp, 100)
                .ips(&["10.1.0.10"])
                .ready("10.244.1.1"),
        ],
    );
    cluster(
        &mut snap,
        "cluster-d",
        false,
        vec![
            svc("gone", ServiceType::ClusterSetIp, 100)
                .ips(&["10.4.0.10", "fd00:d::10"])
                .ready("10.244.4.1"),
            svc("gone-hl", ServiceType::Headless, 100).eps(vec![ep(
                Some("p-0"),
                &["10.244.4.2"],
                true,
            )]),
        ],
    );
    let merged = merge_fleet(&snap);
    for policy in ["std", "all", "rr", "lh"] {
        let t = compile(&snap, &merged, &config(policy), SERIAL);
        for qtype in [RecordType::A, RecordType::AAAA] {
            let m = ask(&t, "gone.default.svc.clusterset.local.", qtype);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NoError,
                "{policy} {qtype}"
            );
            assert!(
                m.answers.is_empty(),
                "{policy} {qtype}: {:?}",
                sorted_answers(&m)
            );
            assert!(
                soa_in_authority(&m).is_some(),
                "{policy} {qtype}: NODATA carries the SOA"
            );
        }
        let m = ask(&t, "gone-hl.default.svc.clusterset.local.", RecordType::A);
        assert!(m.answers.is_empty(), "{policy}: {:?}", sorted_answers(&m));
        let m = ask(
            &t,
            "p-0.cluster-d.gone-hl.default.svc.clusterset.local.",
            RecordType::A,
        );
        assert!(m.answers.is_empty(), "{policy}: {:?}", sorted_answers(&m));
        // The live cluster's service is unaffected.
        assert_eq!(
            a_answers(&t, "web.default.svc.clusterset.local."),
            ["A 10.1.0.10"]
        );
    }
}

#[test]
fn rfc8482_any_gets_exactly_one_rrset() {
    let t = table("all");
    for name in [
        "web.default.svc.clusterset.local.",
        "db.default.svc.clusterset.local.",
        "clusterset.local.",
        "dns-version.clusterset.local.",
        "web.default.svc.cluster-b.local.",
    ] {
        let m = ask(&t, name, RecordType::ANY);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.metadata.authoritative, "{name}");
        assert!(
            !m.answers.is_empty(),
            "{name}: ANY on an existing name answers"
        );
        let types: BTreeSet<RecordType> = m.answers.iter().map(Record::record_type).collect();
        assert_eq!(types.len(), 1, "{name}: one RRset, got {types:?}");
        // ... and that RRset is complete: the same records as asking for its type.
        let ty = *types.iter().next().unwrap();
        let direct = ask(&t, name, ty);
        assert_eq!(sorted_answers(&m), sorted_answers(&direct), "{name} {ty}");
    }
    // ANY for a name that does not exist is still NXDOMAIN with the SOA.
    let m = ask(&t, "nope.default.svc.clusterset.local.", RecordType::ANY);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(soa_in_authority(&m).is_some());
}

// ---------------------------------------------------------------------------------------------
// Response codes for what is not a plain question
// ---------------------------------------------------------------------------------------------

#[test]
fn servfail_before_the_first_snapshot() {
    // SPEC §2: until the first snapshot the authoritative zones answer SERVFAIL, never NXDOMAIN.
    for name in [
        "web.default.svc.clusterset.local.",
        "nope.default.svc.clusterset.local.",
        // SPEC §2.3: mesh names and ServiceEntry hosts too.
        "reviews.default.cluster-2.",
        "web.default.global.",
        "maps.wild.example.com.",
    ] {
        let p = query_packet(0x1234, name, RecordType::A, None);
        let (m, _) = ask_raw(None, &p, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{name}");
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.answers.is_empty());
    }
}

/// A hand-built query header: id, flags, and the section counts.
fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    let mut p = Vec::new();
    for v in [id, flags, qd, an, ns, ar] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    p
}

fn raw_response(t: &AnswerTable, packet: &[u8]) -> Message {
    ask_raw(Some(t), packet, Transport::Udp).0
}

#[test]
fn formerr_for_malformed_queries() {
    let t = table("std");
    let good = query_packet(
        0x0bad,
        "web.default.svc.clusterset.local.",
        RecordType::A,
        None,
    );
    // A question cut in the middle of a label, then cut before the type/class.
    for cut in [20, good.len() - 3] {
        let m = raw_response(&t, &good[..cut]);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::FormErr,
            "cut at {cut}"
        );
        assert_eq!(m.metadata.id, 0x0bad);
        assert!(m.answers.is_empty());
    }
    // A compression pointer as the question name.
    let mut p = header(0x0bae, 0x0100, 1, 0, 0, 0);
    p.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    let m = raw_response(&t, &p);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0x0bae);
    // A compression pointer after a first label.
    let mut p = header(0x0baf, 0x0100, 1, 0, 0, 0);
    p.extend_from_slice(b"\x03web\xc0\x0c\x00\x01\x00\x01");
    let m = raw_response(&t, &p);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Two questions (qdcount = 2), both well formed.
    let mut p = header(0x0bb0, 0x0100, 2, 0, 0, 0);
    let q = &good[12..];
    p.extend_from_slice(q);
    p.extend_from_slice(q);
    let m = raw_response(&t, &p);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0x0bb0);
    // No question at all.
    let m = raw_response(&t, &header(0x0bb1, 0x0100, 0, 0, 0, 0));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // The question is fine but an additional record runs past the end.
    let mut p = good.clone();
    p[11] = 1;
    p.extend_from_slice(&[0, 0, 41, 0x10]);
    let m = raw_response(&t, &p);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Two OPT records (RFC 6891 6.1.1).
    let mut p = good.clone();
    p[11] = 2;
    for _ in 0..2 {
        p.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    }
    let m = raw_response(&t, &p);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn notimp_for_other_opcodes() {
    let t = table("std");
    let good = query_packet(
        0x7777,
        "web.default.svc.clusterset.local.",
        RecordType::A,
        None,
    );
    for opcode in [2u8, 4, 5, 1] {
        let mut p = good.clone();
        p[2] = (p[2] & 0x87) | (opcode << 3);
        let m = raw_response(&t, &p);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NotImp,
            "opcode {opcode}"
        );
        assert_eq!(m.metadata.id, 0x7777);
        assert_eq!(u8::from(m.metadata.op_code), opcode, "opcode echoed");
        assert!(m.answers.is_empty());
        assert!(!m.metadata.authoritative);
    }
}

#[test]
fn other_classes_are_refused() {
    // SPEC §2.5: fleetdns serves class IN only (CH `version.bind` and friends: REFUSED).
    let t = table("std");
    let mut p = query_packet(
        0x0c0c,
        "web.default.svc.clusterset.local.",
        RecordType::A,
        None,
    );
    let n = p.len();
    p[n - 2..].copy_from_slice(&3u16.to_be_bytes()); // CH
    let m = raw_response(&t, &p);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    assert!(!m.metadata.authoritative);
}

#[test]
fn rd_and_cd_are_copied_from_the_query() {
    // RFC 1035 4.1.1 (RD) and RFC 6840 5.9 (CD): the response carries the query's bits, set
    // or clear, in an answer and in a header-only NOTIMP alike.
    let t = table("std");
    for (rd, cd) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut p = query_packet(3, "web.default.svc.clusterset.local.", RecordType::A, None);
        p[2] = (p[2] & !0x01) | u8::from(rd);
        p[3] = (p[3] & !0x10) | if cd { 0x10 } else { 0 };
        let m = raw_response(&t, &p);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.metadata.recursion_desired, rd, "RD {rd}, CD {cd}");
        assert_eq!(m.metadata.checking_disabled, cd, "RD {rd}, CD {cd}");
        p[2] |= 2 << 3; // opcode STATUS
        let m = raw_response(&t, &p);
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        assert_eq!(m.metadata.recursion_desired, rd, "NOTIMP, RD {rd}");
    }
}

#[test]
fn a_response_is_never_answered() {
    // Answering responses would let two servers ping-pong forever (reflection loops).
    let t = table("std");
    let mut p = query_packet(1, "web.default.svc.clusterset.local.", RecordType::A, None);
    p[2] |= 0x80;
    let mut out = Vec::new();
    respond(Some(&t), &p, Transport::Udp, &mut out);
    assert!(out.is_empty());
}

#[test]
fn query_id_is_echoed() {
    let t = table("std");
    for id in [0u16, 1, 0x00ff, 0xff00, 0xbeef, u16::MAX] {
        for (name, ty) in [
            ("web.default.svc.clusterset.local.", RecordType::A),
            ("nope.default.svc.clusterset.local.", RecordType::A),
            ("example.com.", RecordType::A),
        ] {
            let (m, _) = ask_raw(Some(&t), &query_packet(id, name, ty, None), Transport::Tcp);
            assert_eq!(m.metadata.id, id, "{name}");
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert!(m.metadata.recursion_desired, "RD is copied from the query");
            assert_eq!(m.queries.len(), 1, "the question is echoed");
            assert_eq!(m.queries[0].name().to_string(), name);
        }
    }
}

#[test]
fn k8s2_owner_echoes_query_case() {
    // Case-insensitive lookup; the answer's owner (and the echoed question) keep the query's case.
    let t = table("std");
    for name in [
        "WEB.DEFAULT.SVC.CLUSTERSET.LOCAL.",
        "wEb.dEfAuLt.SvC.cLuStErSeT.lOcAl.",
        "Db-0.CLUSTER-A.Db.Default.Svc.Clusterset.Local.",
    ] {
        let m = ask(&t, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(m.answers.len(), 1, "{name}");
        assert_eq!(m.answers[0].name.to_string(), name, "owner case");
        assert_eq!(m.queries[0].name().to_string(), name, "question case");
    }
    // Negative answers with a mixed-case question still carry the zone SOA.
    let m = ask(&t, "NOPE.Default.Svc.ClusterSet.Local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let soa = soa_in_authority(&m).expect("SOA");
    assert!(
        soa.name
            .to_string()
            .eq_ignore_ascii_case("clusterset.local.")
    );
}

// ---------------------------------------------------------------------------------------------
// EDNS and truncation (SPEC §8: UDP answers respect the client's size and set TC)
// ---------------------------------------------------------------------------------------------

const BIG: &str = "big.default.svc.clusterset.local.";

#[test]
fn udp_without_edns_is_cut_to_512_with_tc() {
    let t = table("std");
    let (m, len) = ask_raw(
        Some(&t),
        &query_packet(9, BIG, RecordType::A, None),
        Transport::Udp,
    );
    assert!(len <= 512, "UDP answer without EDNS is {len} bytes");
    assert!(
        m.metadata.truncation,
        "TC must be set when records were left out"
    );
    assert!(m.answers.len() < 60, "{} answers", m.answers.len());
    assert_eq!(m.metadata.id, 9);
    assert!(
        m.edns.is_none(),
        "no OPT in the response to a query without one"
    );
}

#[test]
fn udp_with_edns_4096_fits_without_tc() {
    let t = table("std");
    let (m, len) = ask_raw(
        Some(&t),
        &query_packet(10, BIG, RecordType::A, Some((4096, 0))),
        Transport::Udp,
    );
    assert!(len > 512 && len <= 4096, "{len}");
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60, "all 60 ready endpoints (MCS-14)");
    assert!(m.edns.is_some(), "OPT echoed (RFC 6891 6.1.1)");
    // A client advertising 1232 bytes gets at most that.
    let (m, len) = ask_raw(
        Some(&t),
        &query_packet(11, BIG, RecordType::A, Some((700, 0))),
        Transport::Udp,
    );
    assert!(len <= 700, "{len}");
    assert!(m.metadata.truncation);
}

#[test]
fn tcp_is_never_truncated() {
    let t = table("std");
    for edns in [None, Some((512, 0))] {
        let (m, len) = ask_raw(
            Some(&t),
            &query_packet(12, BIG, RecordType::A, edns),
            Transport::Tcp,
        );
        assert!(!m.metadata.truncation, "{edns:?}");
        assert_eq!(m.answers.len(), 60, "{edns:?}");
        assert!(len > 512);
    }
}

#[test]
fn edns_version_1_gets_badvers() {
    let t = table("std");
    let (m, _) = ask_raw(
        Some(&t),
        &query_packet(
            13,
            "web.default.svc.clusterset.local.",
            RecordType::A,
            Some((1232, 1)),
        ),
        Transport::Udp,
    );
    // RFC 6891 BADVERS is 16: 0 in the header, 1 in the OPT's extended RCODE. hickory decodes
    // 16 as BADSIG (the TSIG code sharing the number), so compare the number.
    assert_eq!(u16::from(m.metadata.response_code), 16, "BADVERS");
    let opt = m.edns.expect("BADVERS travels in the OPT record");
    assert_eq!(opt.version(), 0, "the server speaks EDNS version 0");
    assert!(m.answers.is_empty());
}

#[test]
fn opt_echoed_only_when_the_query_had_one() {
    let t = table("std");
    for (name, ty) in [
        ("web.default.svc.clusterset.local.", RecordType::A),
        ("nope.default.svc.clusterset.local.", RecordType::A),
        ("v4only.default.svc.clusterset.local.", RecordType::AAAA),
        ("example.com.", RecordType::A),
    ] {
        let (with, _) = ask_raw(
            Some(&t),
            &query_packet(14, name, ty, Some((1232, 0))),
            Transport::Udp,
        );
        let e = with.edns.as_ref().unwrap_or_else(|| panic!("{name}: OPT"));
        assert_eq!(e.version(), 0);
        assert!(e.max_payload() >= 512);
        let (without, _) = ask_raw(Some(&t), &query_packet(14, name, ty, None), Transport::Udp);
        assert!(without.edns.is_none(), "{name}");
        // The OPT changes nothing else.
        assert_eq!(
            with.metadata.response_code, without.metadata.response_code,
            "{name}"
        );
        assert_eq!(sorted_answers(&with), sorted_answers(&without), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness: no packet makes respond() panic (SPEC §8)
// ---------------------------------------------------------------------------------------------

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn check_survives(t: &AnswerTable, packet: &[u8], transport: Transport, out: &mut Vec<u8>) {
    respond(Some(t), packet, transport, out);
    let is_query = packet.len() >= 12 && packet[2] & 0x80 == 0;
    if !is_query {
        assert!(out.is_empty(), "answered a non-query {packet:02x?}");
        return;
    }
    assert!(
        out.len() >= 12,
        "a query gets at least a header: {packet:02x?}"
    );
    assert_eq!(out[..2], packet[..2], "id echoed for {packet:02x?}");
    assert_ne!(out[2] & 0x80, 0, "QR set for {packet:02x?}");
    if transport == Transport::Udp {
        assert!(out.len() <= 4096, "UDP answer of {} bytes", out.len());
    }
    let m = Message::from_vec(out)
        .unwrap_or_else(|e| panic!("unparseable response {e} to {packet:02x?}: {out:02x?}"));
    assert_eq!(m.metadata.id, u16::from_be_bytes([packet[0], packet[1]]));
    // No OPT in the response means the query was read as one without EDNS: 512 bytes at most.
    if transport == Transport::Udp && m.edns.is_none() {
        assert!(
            out.len() <= 512,
            "{} bytes over UDP without EDNS",
            out.len()
        );
    }
}

#[test]
fn random_and_mutated_packets_never_panic() {
    let t = table("lh");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let seeds: Vec<Vec<u8>> = [
        ("web.default.svc.clusterset.local.", RecordType::A, None),
        (
            "db.default.svc.clusterset.local.",
            RecordType::SRV,
            Some((4096, 0)),
        ),
        (BIG, RecordType::A, None),
        (
            "_pg._tcp.db.default.svc.clusterset.local.",
            RecordType::SRV,
            None,
        ),
        (
            "nope.default.svc.clusterset.local.",
            RecordType::A,
            Some((1232, 0)),
        ),
        ("web.default.svc.cluster-b.local.", RecordType::AAAA, None),
        ("example.com.", RecordType::ANY, None),
    ]
    .into_iter()
    .map(|(n, ty, e)| query_packet(0x4321, n, ty, e))
    .collect();
    let mut answered = 0;
    for i in 0..6000 {
        let transport = if i % 3 == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let packet = if i % 4 == 0 {
            // Pure noise, with a query-shaped header half of the time.
            let len = rng.below(300);
            let mut p: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if p.len() >= 12 && rng.below(2) == 0 {
                p[2] &= 0x7f;
                p[4] = 0;
                p[5] = 1;
            }
            p
        } else {
            let mut p = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                match rng.below(5) {
                    0 if !p.is_empty() => {
                        let at = rng.below(p.len());
                        p[at] = rng.byte();
                    }
                    1 if !p.is_empty() => {
                        let at = rng.below(p.len());
                        p[at] ^= 1 << rng.below(8);
                    }
                    0..=2 => p.truncate(rng.below(p.len() + 1)),
                    3 => {
                        let at = rng.below(p.len() + 1);
                        p.insert(at, rng.byte());
                    }
                    _ => {
                        let at = rng.below(p.len() + 1);
                        let extra: Vec<u8> = (0..rng.below(20)).map(|_| rng.byte()).collect();
                        p.splice(at..at, extra);
                    }
                }
            }
            p
        };
        check_survives(&t, &packet, transport, &mut out);
        answered += usize::from(!out.is_empty());
    }
    assert!(answered > 1000, "only {answered} packets were answered");
}

#[test]
fn spec4_policy_vip_answers_the_vip_and_falls_back_without_one() {
    // SPEC §4 / LH-13: with `policy = "vip"` a service with a VIP answers that one address
    // (SRV targets unchanged); a service without one yet is answered as with local-first.
    let mut snap = fleet();
    let web = fleetdns_core::ServiceKey::new("default", "web").unwrap();
    snap.vips.insert(web, ip("240.240.0.7"));
    let mut cfg = config("std");
    cfg.clusterset.policy = AnswerPolicy::Vip;
    let t = compile(&snap, &merge_fleet(&snap), &cfg, SERIAL);
    for _ in 0..3 {
        assert_eq!(
            a_answers(&t, "web.default.svc.clusterset.local."),
            ["A 240.240.0.7"]
        );
    }
    let std = table("std");
    let m = ask(&t, "api.default.svc.clusterset.local.", RecordType::A);
    let s = ask(&std, "api.default.svc.clusterset.local.", RecordType::A);
    assert!(!m.answers.is_empty());
    assert_eq!(
        sorted_answers(&m),
        sorted_answers(&s),
        "no VIP: local-first"
    );
}

/// The committed fuzz corpora (`fuzz/corpus/<target>/`, fuzz/README.md) as a regression suite:
/// every file through the same harness body the fuzz target runs. A file that panics is named.
mod fuzz_corpus {
    use fleetdns_core::fuzzing::run_corpus as run;

    #[test]
    fn query_udp() {
        run("query_udp", fleetdns_dns::fuzzing::query_response_udp);
    }

    #[test]
    fn query_tcp() {
        run("query_tcp", fleetdns_dns::fuzzing::query_response_tcp);
    }

    #[test]
    fn question_name() {
        run("question_name", fleetdns_dns::fuzzing::question_name);
    }

    #[test]
    fn upstream_answer() {
        run("upstream_answer", fleetdns_dns::fuzzing::upstream_answer);
    }
}
