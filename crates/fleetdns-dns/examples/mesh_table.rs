//! Mesh zones in the answer table: compile time and lookup cost with ServiceEntries.
//!
//! `cargo run --release -p fleetdns-dns --example mesh_table -- [ENTRIES] [WILDCARDS]`
//!
//! Three clusters export 1000 services each; cluster-0 also holds ENTRIES ServiceEntries
//! (hosts `svc-<i>.ns.cluster-9`; every other one with an explicit address, the rest with an
//! allocated VIP) and WILDCARDS wildcard entries `*.w<i>.example.com`. Prints one line of
//! `key=value`: the compile time with `[mesh]` off and on, and the nanoseconds per
//! `AnswerTable::lookup` for an exact hit, a wildcard hit and an NXDOMAIN in a mesh zone, and
//! for the same exact hit in a table without wildcards (what a wildcard costs names that are
//! not wildcards: nothing, they are found by the first hash probe).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use fleetdns_core::service_entry::{Resolution, ServiceEntry};
use fleetdns_core::{
    ClusterId, ClusterView, Export, ExportSet, FleetSnapshot, HostVips, ServiceEntrySet,
    ServiceKey, ServiceType, Timestamp, merge_fleet,
};
use fleetdns_dns::table::Lookup;
use fleetdns_dns::wire::encode_name;
use fleetdns_dns::{AnswerTable, ZonesConfig, compile};

fn fleet(entries: usize, wildcards: usize) -> FleetSnapshot {
    let mut snap = FleetSnapshot::default();
    for c in 0..3u8 {
        let id = ClusterId::new(&format!("cluster-{c}")).unwrap();
        let exports: ExportSet = (0..1000u16)
            .map(|i| {
                let key = ServiceKey::new("ns", &format!("svc-{i}")).unwrap();
                let e = Export {
                    key: key.clone(),
                    cluster: id.clone(),
                    service_type: ServiceType::ClusterSetIp,
                    ports: vec![].into(),
                    cluster_ips: vec![IpAddr::V4(Ipv4Addr::new(10, c, (i >> 8) as u8, i as u8))]
                        .into(),
                    endpoints: vec![].into(),
                    created: Timestamp(1),
                };
                (key, Arc::new(e))
            })
            .collect();
        let mut set = ServiceEntrySet::new();
        if c == 0 {
            let entry = |name: String, host: String, addresses: Vec<IpAddr>| ServiceEntry {
                namespace: "istio-system".into(),
                name,
                cluster: id.clone(),
                hosts: vec![host],
                addresses,
                status_addresses: vec![],
                resolution: Resolution::Dns,
                autoallocate: true,
                created: Timestamp(1),
            };
            for i in 0..entries {
                let addr = IpAddr::V4(Ipv4Addr::new(240, 0, (i >> 8) as u8, i as u8));
                let host = format!("svc-{i}.ns.cluster-9");
                let e = entry(
                    format!("e{i}"),
                    host.clone(),
                    if i % 2 == 0 { vec![addr] } else { vec![] },
                );
                if i % 2 == 1 {
                    snap.host_vips.insert(
                        host,
                        HostVips {
                            v4: Some(Ipv4Addr::new(240, 240, (i >> 8) as u8, i as u8)),
                            v6: None,
                        },
                    );
                }
                set.insert(e.label(), Arc::new(e));
            }
            for i in 0..wildcards {
                let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 250) as u8));
                let e = entry(format!("w{i}"), format!("*.w{i}.example.com"), vec![addr]);
                set.insert(e.label(), Arc::new(e));
            }
        }
        snap.clusters.insert(
            id,
            ClusterView {
                alive: true,
                exports: Arc::new(exports),
                published: Timestamp(1),
                service_entries: Arc::new(set),
            },
        );
    }
    snap
}

fn ns_per_lookup(table: &AnswerTable, name: &str, want_node: bool) -> f64 {
    let wire = encode_name(name).unwrap();
    let found = matches!(table.lookup(&wire), Lookup::Node(..));
    assert_eq!(found, want_node, "{name}");
    let n = 2_000_000;
    let started = Instant::now();
    for _ in 0..n {
        black_box(table.lookup(black_box(&wire)));
    }
    started.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: [ENTRIES] [WILDCARDS]"))
        .collect();
    let entries = *args.first().unwrap_or(&10_000);
    let wildcards = *args.get(1).unwrap_or(&100);
    let snap = fleet(entries, wildcards);
    let merged: BTreeMap<_, _> = merge_fleet(&snap);
    let mut zones = ZonesConfig::default();
    let started = Instant::now();
    let plain = compile(&snap, &merged, &zones, 1);
    let off_ms = started.elapsed().as_secs_f64() * 1e3;
    zones.mesh.enabled = true;
    zones
        .mesh
        .gateways
        .insert("cluster-9".into(), "192.0.2.10".into());
    let started = Instant::now();
    let table = compile(&snap, &merged, &zones, 1);
    let on_ms = started.elapsed().as_secs_f64() * 1e3;
    let no_wild = compile(&fleet(entries, 0), &merged, &zones, 1);
    let exact = "svc-7.ns.cluster-9";
    println!(
        "entries={entries} wildcards={wildcards} names={} compile_mesh_off_ms={off_ms:.1} compile_mesh_on_ms={on_ms:.1} \
         exact_hit_ns={:.1} exact_hit_no_wildcards_ns={:.1} clusterset_hit_ns={:.1} clusterset_hit_mesh_off_ns={:.1} \
         wildcard_hit_ns={:.1} nxdomain_ns={:.1} nxdomain_no_wildcards_ns={:.1}",
        table.stats().names,
        ns_per_lookup(&table, exact, true),
        ns_per_lookup(&no_wild, exact, true),
        ns_per_lookup(&table, "svc-7.ns.svc.clusterset.local", true),
        ns_per_lookup(&plain, "svc-7.ns.svc.clusterset.local", true),
        ns_per_lookup(&table, "a.b.w7.example.com", true),
        ns_per_lookup(&table, "nope.ns.cluster-9", false),
        ns_per_lookup(&no_wild, "nope.ns.cluster-9", false),
    );
}
