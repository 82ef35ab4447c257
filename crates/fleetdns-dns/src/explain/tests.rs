//! One case per reason a cluster is dropped and per negative-answer cause, each naming its rule.
//! Expectations are written from the rules and the fixture, not from the output.

use std::net::IpAddr;

use fleetdns_core::{ClusterView, Endpoint, ExportSet, Port, Protocol, Timestamp, merge_fleet};

use super::*;
use crate::compile;

const T0: i64 = 1_767_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (cluster, alive, [(ns/name, type, created, cluster IP, ready?)])
type Spec<'a> = (
    &'a str,
    bool,
    Vec<(&'a str, ServiceType, i64, &'a str, bool)>,
);

fn snapshot(clusters: Vec<Spec<'_>>) -> Arc<FleetSnapshot> {
    let mut snap = FleetSnapshot {
        version: 3,
        ..Default::default()
    };
    for (id, alive, services) in clusters {
        let cid = ClusterId::new(id).unwrap();
        let mut set = ExportSet::new();
        for (full, ty, created, addr, ready) in services {
            let (ns, name) = full.split_once('/').unwrap();
            let key = ServiceKey::new(ns, name).unwrap();
            let is_ip = ty == ServiceType::ClusterSetIp;
            let export = Export {
                key: key.clone(),
                cluster: cid.clone(),
                service_type: ty,
                ports: vec![Port {
                    name: Some("http".into()),
                    protocol: Protocol::Tcp,
                    port: 80,
                    app_protocol: None,
                }]
                .into(),
                cluster_ips: if is_ip {
                    vec![ip(addr)].into()
                } else {
                    vec![].into()
                },
                endpoints: vec![Endpoint {
                    addresses: vec![if is_ip { ip("192.0.2.99") } else { ip(addr) }].into(),
                    hostname: None,
                    ready,
                    zone: None,
                }]
                .into(),
                created: Timestamp(created),
            };
            set.insert(key, Arc::new(export));
        }
        snap.clusters.insert(
            cid,
            ClusterView {
                alive,
                exports: Arc::new(set),
                published: Timestamp(T0),
                service_entries: Arc::default(),
            },
        );
    }
    Arc::new(snap)
}

fn zones(local: Option<&str>, policy: AnswerPolicy) -> ZonesConfig {
    let mut z = ZonesConfig {
        local_cluster: local.map(|c| ClusterId::new(c).unwrap()),
        ..Default::default()
    };
    z.clusterset.policy = policy;
    z
}

fn run(
    snap: &FleetSnapshot,
    zones: &ZonesConfig,
    history: &FleetHistory,
    name: &str,
    qtype: &str,
) -> Explanation {
    let merged = merge_fleet(snap);
    let table = compile(snap, &merged, zones, 1);
    let inputs = Inputs {
        snapshot: Some(snap),
        merged: &merged,
        zones,
        table: Some(&table),
        forwarder: None,
        history,
    };
    explain(&inputs, name, parse_qtype(qtype).unwrap()).unwrap()
}

/// `run` without history.
fn ask(snap: &FleetSnapshot, zones: &ZonesConfig, name: &str, qtype: &str) -> Explanation {
    run(snap, zones, &FleetHistory::default(), name, qtype)
}

/// `ask` with every cluster answering (`AnswerPolicy::All`) and no local cluster.
fn ask_all(snap: &FleetSnapshot, name: &str, qtype: &str) -> Explanation {
    ask(snap, &zones(None, AnswerPolicy::All), name, qtype)
}

/// Cluster `a`, alive, exports `default/payment` (ClusterSetIP 10.0.0.1, ready).
fn payment_in_a() -> Arc<FleetSnapshot> {
    snapshot(vec![(
        "a",
        true,
        vec![("default/payment", IP, 1, "10.0.0.1", true)],
    )])
}

fn verdict(x: &Explanation, cluster: &str) -> (Verdict, String) {
    let c = x
        .candidates
        .iter()
        .find(|c| c.cluster == cluster)
        .unwrap_or_else(|| panic!("no candidate {cluster}: {x:#?}"));
    (c.verdict, c.rule.clone())
}

fn answers(x: &Explanation) -> Vec<String> {
    let mut v: Vec<String> = x.response.answers.iter().map(|r| r.data.clone()).collect();
    v.sort();
    v
}

const PAY: &str = "payment.default.svc.clusterset.local";
const IP: ServiceType = ServiceType::ClusterSetIp;
const HL: ServiceType = ServiceType::Headless;

#[test]
fn lh14_local_first_keeps_the_ready_local_cluster_and_drops_the_others_as_not_local() {
    let snap = snapshot(vec![
        (
            "a",
            true,
            vec![("default/payment", IP, 1, "10.0.0.1", true)],
        ),
        (
            "b",
            true,
            vec![("default/payment", IP, 2, "10.0.0.2", true)],
        ),
    ]);
    let x = ask(&snap, &zones(Some("b"), AnswerPolicy::LocalFirst), PAY, "A");
    assert_eq!(x.response.rcode, "NOERROR");
    assert_eq!(answers(&x), ["10.0.0.2"]);
    assert_eq!(verdict(&x, "b"), (Verdict::Kept, "LH-14".into()));
    assert_eq!(verdict(&x, "a"), (Verdict::NotLocal, "LH-14".into()));
    let p = x.policy.as_ref().unwrap();
    assert_eq!(
        (p.policy.as_str(), p.basis.as_str()),
        ("local-first", "local-ready")
    );
    assert_eq!(p.chosen, ["b"]);
    assert!(x.rules.iter().any(|s| s.rule == "MCS-12"));
    assert_eq!(x.zone.as_ref().unwrap().kind, "clusterset");
}

#[test]
fn mcs10_a_dead_cluster_is_dropped_with_the_time_it_died() {
    let alive = snapshot(vec![
        (
            "a",
            true,
            vec![("default/payment", IP, 1, "10.0.0.1", true)],
        ),
        (
            "b",
            true,
            vec![("default/payment", IP, 2, "10.0.0.2", true)],
        ),
    ]);
    let dead = snapshot(vec![
        (
            "a",
            false,
            vec![("default/payment", IP, 1, "10.0.0.1", true)],
        ),
        (
            "b",
            true,
            vec![("default/payment", IP, 2, "10.0.0.2", true)],
        ),
    ]);
    let mut h = FleetHistory::default();
    h.observe(&alive, Timestamp(T0));
    h.observe(&dead, Timestamp(T0 + 20));
    let x = run(&dead, &zones(None, AnswerPolicy::All), &h, PAY, "A");
    assert_eq!(answers(&x), ["10.0.0.2"]);
    assert_eq!(verdict(&x, "a"), (Verdict::Dead, "MCS-10".into()));
    assert_eq!(verdict(&x, "b").0, Verdict::Kept);
    let detail = &x
        .candidates
        .iter()
        .find(|c| c.cluster == "a")
        .unwrap()
        .detail;
    assert!(detail.contains(&Timestamp(T0 + 20).to_string()), "{detail}");
}

#[test]
fn spec3_a_cluster_without_a_ready_endpoint_is_dropped_while_another_has_one() {
    let snap = snapshot(vec![
        (
            "a",
            true,
            vec![("default/payment", IP, 1, "10.0.0.1", false)],
        ),
        (
            "b",
            true,
            vec![("default/payment", IP, 2, "10.0.0.2", true)],
        ),
    ]);
    let x = ask(&snap, &zones(Some("a"), AnswerPolicy::LocalFirst), PAY, "A");
    assert_eq!(answers(&x), ["10.0.0.2"]);
    assert_eq!(
        verdict(&x, "a"),
        (Verdict::NoReadyEndpoint, "SPEC-3".into())
    );
    assert_eq!(x.policy.as_ref().unwrap().basis, "ready");
    assert!(
        x.policy
            .as_ref()
            .unwrap()
            .detail
            .contains("local cluster a")
    );
}

#[test]
fn spec3_no_ready_endpoint_anywhere_keeps_every_healthy_exporter() {
    let snap = snapshot(vec![
        (
            "a",
            true,
            vec![("default/payment", IP, 1, "10.0.0.1", false)],
        ),
        (
            "b",
            true,
            vec![("default/payment", IP, 2, "10.0.0.2", false)],
        ),
    ]);
    let x = ask_all(&snap, PAY, "A");
    assert_eq!(answers(&x), ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(x.policy.as_ref().unwrap().basis, "none-ready");
    assert!(x.candidates.iter().all(|c| c.kept));
}

#[test]
fn mcs22_a_type_conflict_drops_the_younger_export_and_says_why() {
    let snap = snapshot(vec![
        (
            "a",
            true,
            vec![("default/payment", IP, 1, "10.0.0.1", true)],
        ),
        (
            "b",
            true,
            vec![("default/payment", HL, 2, "10.1.0.7", true)],
        ),
    ]);
    let x = ask_all(&snap, PAY, "A");
    assert_eq!(answers(&x), ["10.0.0.1"]);
    assert_eq!(verdict(&x, "b"), (Verdict::TypeConflict, "MCS-22".into()));
    assert!(
        x.conflicts.iter().any(|c| c.starts_with("TypeConflict")),
        "{:?}",
        x.conflicts
    );
}

#[test]
fn lh13_policy_vip_answers_the_vip_and_marks_clusters_behind_it() {
    let mut snap = (*payment_in_a()).clone();
    snap.vips.insert(
        ServiceKey::new("default", "payment").unwrap(),
        ip("240.240.0.9"),
    );
    let x = ask(&snap, &zones(None, AnswerPolicy::Vip), PAY, "A");
    assert_eq!(answers(&x), ["240.240.0.9"]);
    assert_eq!(verdict(&x, "a"), (Verdict::BehindVip, "LH-13".into()));
}

#[test]
fn round_robin_chooses_one_per_answer() {
    let snap = snapshot(vec![
        (
            "a",
            true,
            vec![("default/payment", IP, 1, "10.0.0.1", true)],
        ),
        (
            "b",
            true,
            vec![("default/payment", IP, 2, "10.0.0.2", true)],
        ),
    ]);
    let x = ask(&snap, &zones(None, AnswerPolicy::RoundRobin), PAY, "A");
    assert_eq!(x.response.answers.len(), 1);
    assert_eq!(x.policy.as_ref().unwrap().selection, "one");
}

#[test]
fn mcs10_not_exported_names_who_exported_it_until_when_and_that_the_lease_expired() {
    let before = snapshot(vec![
        ("a", true, vec![("default/other", IP, 1, "10.0.0.1", true)]),
        (
            "b",
            true,
            vec![("default/payment", IP, 2, "10.0.0.2", true)],
        ),
    ]);
    let after = snapshot(vec![(
        "a",
        true,
        vec![("default/other", IP, 1, "10.0.0.1", true)],
    )]);
    let mut h = FleetHistory::default();
    h.observe(&before, Timestamp(T0));
    h.observe(&after, Timestamp(T0 + 7));
    let x = run(&after, &zones(None, AnswerPolicy::All), &h, PAY, "A");
    assert_eq!(x.response.rcode, "NXDOMAIN");
    assert_eq!(x.response.authority.len(), 1, "the zone SOA");
    let m = &x.missing[0];
    assert_eq!((m.cause, m.rule.as_str()), (Cause::NotExported, "MCS-10"));
    assert_eq!(m.cluster.as_deref(), Some("b"));
    assert_eq!(m.since, Some(Timestamp(T0 + 7).to_string()));
    assert!(
        m.text.contains("b exported default/payment until"),
        "{}",
        m.text
    );
    assert!(m.text.contains("lease expired"), "{}", m.text);
}

#[test]
fn mcs10_a_departed_exporter_is_listed_as_gone_and_its_cluster_zone_names_the_departure() {
    let before = snapshot(vec![
        (
            "a",
            true,
            vec![("default/payment", IP, 1, "10.0.0.1", true)],
        ),
        (
            "b",
            true,
            vec![("default/payment", IP, 2, "10.0.0.2", true)],
        ),
    ]);
    let after = snapshot(vec![(
        "b",
        true,
        vec![("default/payment", IP, 2, "10.0.0.2", true)],
    )]);
    let mut h = FleetHistory::default();
    h.observe(&before, Timestamp(T0));
    h.observe(&after, Timestamp(T0 + 9));
    let x = run(
        &after,
        &zones(Some("a"), AnswerPolicy::LocalFirst),
        &h,
        PAY,
        "A",
    );
    assert_eq!(answers(&x), ["10.0.0.2"]);
    assert_eq!(verdict(&x, "a"), (Verdict::Gone, "MCS-10".into()));
    assert_eq!(verdict(&x, "b").0, Verdict::Kept);
    let x = run(
        &after,
        &zones(None, AnswerPolicy::All),
        &h,
        "payment.default.svc.a.local",
        "A",
    );
    assert_eq!(x.response.rcode, "REFUSED");
    let m = &x.missing[0];
    assert_eq!(
        (m.cause, m.cluster.as_deref()),
        (Cause::ClusterLeft, Some("a"))
    );
    assert!(m.text.contains("lease expired"), "{}", m.text);
}

#[test]
fn mcs12_never_exported_says_so() {
    let snap = snapshot(vec![(
        "a",
        true,
        vec![("default/other", IP, 1, "10.0.0.1", true)],
    )]);
    let x = ask_all(&snap, PAY, "A");
    assert_eq!(x.response.rcode, "NXDOMAIN");
    assert_eq!(x.missing[0].cause, Cause::NotExported);
    assert!(x.missing[0].text.contains("none did since"));
}

#[test]
fn an_export_removed_from_a_live_cluster_is_remembered_as_unexported() {
    let before = snapshot(vec![(
        "b",
        true,
        vec![("default/payment", IP, 2, "10.0.0.2", true)],
    )]);
    let after = snapshot(vec![("b", true, vec![])]);
    let mut h = FleetHistory::default();
    h.observe(&before, Timestamp(T0));
    h.observe(&after, Timestamp(T0 + 3));
    let x = run(&after, &zones(None, AnswerPolicy::All), &h, PAY, "A");
    assert!(
        x.missing[0].text.contains("no longer exports it"),
        "{:?}",
        x.missing
    );
}

#[test]
fn mcs10_every_exporter_dead_is_nodata_naming_the_dead_cluster() {
    let snap = snapshot(vec![(
        "b",
        false,
        vec![("default/payment", IP, 2, "10.0.0.2", true)],
    )]);
    let x = ask_all(&snap, PAY, "A");
    assert_eq!(
        (x.response.rcode.as_str(), x.response.outcome.as_str()),
        ("NOERROR", "nodata")
    );
    assert_eq!(x.missing[0].cause, Cause::AllExportersDead);
    assert_eq!(x.missing[0].cluster.as_deref(), Some("b"));
    assert_eq!(verdict(&x, "b").0, Verdict::Dead);
}

#[test]
fn mcs14_headless_without_ready_endpoints_is_nxdomain() {
    let snap = snapshot(vec![(
        "a",
        true,
        vec![("default/db", HL, 1, "10.1.0.1", false)],
    )]);
    let x = ask_all(&snap, "db.default.svc.clusterset.local", "A");
    assert_eq!(x.response.rcode, "NXDOMAIN");
    assert_eq!(
        (x.missing[0].cause, x.missing[0].rule.as_str()),
        (Cause::NoReadyEndpoint, "MCS-14")
    );
}

#[test]
fn k8s21_a_missing_family_is_nodata() {
    let snap = payment_in_a();
    let x = ask_all(&snap, PAY, "AAAA");
    assert_eq!(x.response.outcome, "nodata");
    assert_eq!(x.response.authority[0].rtype, "SOA");
    assert_eq!(
        (x.missing[0].cause, x.missing[0].rule.as_str()),
        (Cause::NoSuchType, "K8S-21")
    );
}

#[test]
fn mcs18_the_cluster_scoped_name_does_not_exist() {
    let snap = payment_in_a();
    let x = ask_all(&snap, "a.payment.default.svc.clusterset.local", "A");
    assert_eq!(x.response.rcode, "NXDOMAIN");
    assert_eq!(
        (x.missing[0].cause, x.missing[0].rule.as_str()),
        (Cause::ClusterScopedName, "MCS-18")
    );
}

#[test]
fn mcs13_an_unknown_srv_port_is_named() {
    let snap = payment_in_a();
    let x = ask_all(
        &snap,
        "_grpc._tcp.payment.default.svc.clusterset.local",
        "SRV",
    );
    assert_eq!(x.response.rcode, "NXDOMAIN");
    assert_eq!(
        (x.missing[0].cause, x.missing[0].rule.as_str()),
        (Cause::NoSuchName, "MCS-13")
    );
    let ok = ask_all(
        &snap,
        "_http._tcp.payment.default.svc.clusterset.local",
        "SRV",
    );
    assert_eq!(
        answers(&ok),
        ["0 100 80 payment.default.svc.clusterset.local."]
    );
}

#[test]
fn refused_outside_every_zone_and_servfail_before_the_first_snapshot() {
    let snap = snapshot(vec![]);
    let x = ask_all(&snap, "example.com", "A");
    assert_eq!(x.response.rcode, "REFUSED");
    assert_eq!(
        (x.missing[0].cause, x.missing[0].rule.as_str()),
        (Cause::NotOurs, "SPEC-2.5")
    );

    let merged = BTreeMap::new();
    let z = ZonesConfig::default();
    let h = FleetHistory::default();
    let inputs = Inputs {
        snapshot: None,
        merged: &merged,
        zones: &z,
        table: None,
        forwarder: None,
        history: &h,
    };
    let x = explain(&inputs, PAY, rtype::A).unwrap();
    assert_eq!(x.response.rcode, "SERVFAIL");
    assert_eq!(x.missing[0].cause, Cause::NotLoaded);
}

#[test]
fn k8s4_per_cluster_zone_answers_its_own_cluster_ip_and_names_a_missing_export() {
    let snap = snapshot(vec![
        (
            "a",
            true,
            vec![("default/payment", IP, 1, "10.0.0.1", false)],
        ),
        ("b", true, vec![("default/other", IP, 2, "10.0.0.2", true)]),
    ]);
    let mut z = zones(None, AnswerPolicy::All);
    z.cluster_zones.enabled = true;
    let x = ask(&snap, &z, "payment.default.svc.a.local", "A");
    assert_eq!(answers(&x), ["10.0.0.1"]);
    assert_eq!(x.zone.as_ref().unwrap().kind, "cluster");
    assert!(x.rules.iter().any(|s| s.rule == "K8S-4"));
    let x = ask(&snap, &z, "payment.default.svc.b.local", "A");
    assert_eq!(x.response.rcode, "NXDOMAIN");
    assert_eq!(x.missing[0].cause, Cause::NotExported);
    assert!(
        x.missing[0].text.contains("from b"),
        "{}",
        x.missing[0].text
    );
}

#[test]
fn a_zone_kind_without_detail_explains_itself_by_zone_rcode_and_records() {
    use crate::table::{SoaParams, TableBuilder};
    let mut b = TableBuilder::default();
    let apex = encode_name("mesh.example").unwrap();
    let soa = SoaParams {
        mname: encode_name("ns.mesh.example").unwrap(),
        rname: encode_name("hostmaster.mesh.example").unwrap(),
        serial: 1,
        refresh: 1,
        retry: 1,
        expire: 1,
        minimum: 5,
    };
    let zone = b.add_zone(&apex, &soa).unwrap();
    b.add_ip(
        zone,
        &encode_name("reviews.mesh.example").unwrap(),
        ip("240.0.0.2"),
        5,
        Selection::Fixed,
    );
    let table = b.build(1);
    let (merged, z, h) = (
        BTreeMap::new(),
        ZonesConfig::default(),
        FleetHistory::default(),
    );
    let snap = FleetSnapshot::default();
    let inputs = Inputs {
        snapshot: Some(&snap),
        merged: &merged,
        zones: &z,
        table: Some(&table),
        forwarder: None,
        history: &h,
    };
    let x = explain(&inputs, "Reviews.Mesh.Example.", rtype::A).unwrap();
    assert_eq!(x.zone.as_ref().unwrap().kind, "other");
    assert_eq!(answers(&x), ["240.0.0.2"]);
    let x = explain(&inputs, "nope.mesh.example", rtype::A).unwrap();
    assert_eq!(x.response.rcode, "NXDOMAIN");
    assert_eq!(x.missing.len(), 1);
}

#[test]
fn cdns1_a_forward_zone_reports_its_upstreams() {
    use crate::cache::CacheLimits;
    use crate::forward::ForwardZoneConfig;
    let cfg: ForwardZoneConfig = toml_like("cluster3.local", "192.0.2.1:53");
    let f = Forwarder::new(&[cfg], CacheLimits::default()).unwrap();
    let snap = FleetSnapshot::default();
    let merged = BTreeMap::new();
    let z = ZonesConfig::default();
    let table = compile(&snap, &merged, &z, 1);
    let h = FleetHistory::default();
    let inputs = Inputs {
        snapshot: Some(&snap),
        merged: &merged,
        zones: &z,
        table: Some(&table),
        forwarder: Some(&f),
        history: &h,
    };
    let x = explain(&inputs, "web.cluster3.local", rtype::A).unwrap();
    assert_eq!(x.response.rcode, "FORWARDED");
    assert_eq!(x.zone.as_ref().unwrap().kind, "forward");
    let fw = x.forward.as_ref().unwrap();
    assert_eq!(fw.upstreams.len(), 1);
    assert!(fw.upstreams[0].healthy);
    assert_eq!(x.rules[0].rule, "CDNS-1");
}

fn toml_like(zone: &str, upstream: &str) -> crate::forward::ForwardZoneConfig {
    crate::forward::ForwardZoneConfig {
        zone: zone.into(),
        upstreams: vec![upstream.into()],
        force_tcp: false,
        prefer_udp: false,
        policy: crate::forward::UpstreamPolicy::Random,
        health_check_ms: 500,
        max_fails: 2,
        timeout_ms: 100,
        max_concurrent: 10,
    }
}

/// The compiler's list of changed exports gives the history the same departures as walking
/// every changed cluster's exports.
#[test]
fn the_compilers_changed_exports_record_the_same_departures() {
    let names = ["default/a", "default/b", "default/c", "other/d", "other/e"];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let config = crate::config::ZonesConfig::default();
    let mut compiler = compile::incremental::Compiler::new();
    let (mut hinted, mut walked) = (FleetHistory::default(), FleetHistory::default());
    // Each cluster's exports as a bit per name; each step flips one.
    let mut bits = [0b10110u32, 0b01101u32];
    let mut last = None::<Arc<FleetSnapshot>>;
    let mut hints = 0;
    for step in 0..200u64 {
        bits[next(2) as usize] ^= 1 << next(5);
        let spec = |c: usize| -> Vec<(&str, ServiceType, i64, &str, bool)> {
            (0..5)
                .filter(|i| bits[c] & (1 << i) != 0)
                .map(|i| (names[i], IP, 1, "10.0.0.1", true))
                .collect()
        };
        let mut snap = (*snapshot(vec![("c1", true, spec(0)), ("c2", true, spec(1))])).clone();
        snap.version = step + 1;
        // An unchanged cluster keeps its export set (as a registry does).
        if let Some(last) = &last {
            for (id, view) in &mut snap.clusters {
                if last.clusters[id].exports == view.exports {
                    view.exports = last.clusters[id].exports.clone();
                }
            }
        }
        let snap = Arc::new(snap);
        let compiled = compiler.compile(snap.clone(), &config, 1);
        hints += usize::from(compiled.exports_changed.is_some());
        let at = Timestamp(T0 + step as i64);
        hinted.observe_changes(&snap, at, compiled.exports_changed.as_ref());
        walked.observe(&snap, at);
        for name in names {
            let (ns, n) = name.split_once('/').unwrap();
            let key = ServiceKey::new(ns, n).unwrap();
            assert_eq!(
                hinted.last_seen(&key),
                walked.last_seen(&key),
                "step {step}: {name}"
            );
        }
        last = Some(snap);
    }
    assert!(
        hints > 150,
        "the compiler compiled incrementally ({hints} of 200)"
    );
}

#[test]
fn the_history_is_bounded() {
    let mut h = FleetHistory::default();
    for i in 0..(HISTORY_LIMIT + 50) {
        let name = format!("c{i}");
        let with = snapshot(vec![(
            name.as_str(),
            true,
            vec![("default/payment", IP, 1, "10.0.0.1", true)],
        )]);
        h.observe(&with, Timestamp(T0 + i as i64));
        h.observe(&snapshot(vec![]), Timestamp(T0 + i as i64));
    }
    let (left, gone) = h.len();
    assert_eq!((left, gone), (HISTORY_LIMIT, HISTORY_LIMIT));
    // The newest departure is the one reported first.
    let key = ServiceKey::new("default", "payment").unwrap();
    assert_eq!(
        h.last_seen(&key)[0].cluster.as_str(),
        format!("c{}", HISTORY_LIMIT + 49)
    );
}

#[test]
fn qtypes_parse_by_name_and_number() {
    assert_eq!(parse_qtype("aaaa").unwrap(), rtype::AAAA);
    assert_eq!(parse_qtype("TYPE65").unwrap(), 65);
    assert!(parse_qtype("bogus").is_err());
    assert_eq!(qtype_name(65), "TYPE65");
}

#[test]
fn mcs14_headless_keeps_every_cluster_with_a_ready_endpoint() {
    let snap = snapshot(vec![
        ("a", true, vec![("default/db", HL, 1, "10.1.0.1", true)]),
        ("b", true, vec![("default/db", HL, 2, "10.2.0.1", false)]),
        ("c", true, vec![("default/db", HL, 3, "10.3.0.1", true)]),
    ]);
    let x = ask(
        &snap,
        &zones(Some("a"), AnswerPolicy::LocalFirst),
        "db.default.svc.clusterset.local",
        "A",
    );
    assert_eq!(answers(&x), ["10.1.0.1", "10.3.0.1"]);
    assert_eq!(verdict(&x, "a"), (Verdict::Kept, "MCS-14".into()));
    assert_eq!(
        verdict(&x, "b"),
        (Verdict::NoReadyEndpoint, "MCS-14".into())
    );
    assert_eq!(verdict(&x, "c").0, Verdict::Kept);
    assert!(x.policy.is_none(), "no answer policy for headless services");
}
