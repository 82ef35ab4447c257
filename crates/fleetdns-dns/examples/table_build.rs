//! Answer-table build time and memory for a synthetic fleet (bench/answer-path.sh runs it).
//!
//! `cargo run --release -p fleetdns-dns --example table_build -- SERVICES [CLUSTERS] [ENDPOINTS]`
//!
//! Every cluster exports SERVICES services (namespace `ns-<i mod 100>`, two named TCP ports,
//! ENDPOINTS ready endpoints with hostnames); every tenth is headless, the rest ClusterSetIP.
//! Prints one line of `key=value`: the merge and compile times of the first build (as
//! `serve` does on a new snapshot), the time to rebuild after one service changed in one
//! cluster (a whole recompile), the time of one change compiled incrementally as `serve` does
//! it (mean of ROUNDS, default 100; each round also copies the changed cluster's export set,
//! as a source's publish does), the table's size, and the process' resident memory (VmRSS, VmHWM from /proc/self/status) before, with one table, and with
//! two (the old one still serving while the new one is built).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use fleetdns_core::{
    ClusterId, ClusterView, Endpoint, Export, ExportSet, FleetSnapshot, Port, Protocol, ServiceKey,
    ServiceType, Timestamp, merge_fleet,
};
use fleetdns_dns::compile::incremental::Compiler;
use fleetdns_dns::{ZonesConfig, compile};

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn ip(c: usize, kind: u8, n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        kind + c as u8,
        (n >> 8) as u8,
        (n & 255) as u8,
    ))
}

fn export(c: usize, i: usize, endpoints: usize, created: i64, cluster: &ClusterId) -> Export {
    let headless = i % 10 == 9;
    Export {
        key: ServiceKey::new(&format!("ns-{}", i % 100), &format!("svc-{i}")).unwrap(),
        cluster: cluster.clone(),
        service_type: if headless {
            ServiceType::Headless
        } else {
            ServiceType::ClusterSetIp
        },
        ports: ["http", "grpc"]
            .iter()
            .zip([80, 9090])
            .map(|(name, port)| Port {
                name: Some((*name).into()),
                protocol: Protocol::Tcp,
                port,
                app_protocol: None,
            })
            .collect(),
        cluster_ips: if headless {
            Vec::new().into()
        } else {
            vec![ip(c, 96, i + 1)].into()
        },
        endpoints: (0..endpoints)
            .map(|e| Endpoint {
                addresses: vec![ip(c, 16, (i * endpoints + e) % 65_000 + 1)].into(),
                hostname: Some(format!("pod-{e}").into()),
                ready: true,
                zone: None,
            })
            .collect(),
        created: Timestamp(created),
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: SERVICES [CLUSTERS] [ENDPOINTS]"))
        .collect();
    let services = *args.first().unwrap_or(&1000);
    let clusters = *args.get(1).unwrap_or(&3);
    let endpoints = *args.get(2).unwrap_or(&10);
    let rss_start = status_kib("VmRSS:");

    let mut snapshot = FleetSnapshot {
        version: 1,
        clusters: BTreeMap::new(),
        ..FleetSnapshot::default()
    };
    for c in 0..clusters {
        let id = ClusterId::new(&format!("cluster-{c}")).unwrap();
        let exports: ExportSet = (0..services)
            .map(|i| {
                let e = export(c, i, endpoints, 1_700_000_000 + c as i64, &id);
                (e.key.clone(), Arc::new(e))
            })
            .collect();
        snapshot.clusters.insert(
            id,
            ClusterView {
                alive: true,
                exports: Arc::new(exports),
                published: Timestamp(1_700_000_000),
                service_entries: Arc::default(),
            },
        );
    }
    let zones = ZonesConfig {
        local_cluster: Some(ClusterId::new("cluster-0").unwrap()),
        ..ZonesConfig::default()
    };
    let rss_snapshot = status_kib("VmRSS:");

    let started = Instant::now();
    let merged = merge_fleet(&snapshot);
    let merge_ms = started.elapsed().as_secs_f64() * 1e3;
    let table = compile(&snapshot, &merged, &zones, 1);
    let build_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(merged);
    let stats = table.stats();
    let rss_one = status_kib("VmRSS:");

    // One service changes in one cluster: a new snapshot, a whole new table.
    let first = snapshot.clusters.keys().next().unwrap().clone();
    let view = snapshot.clusters.get_mut(&first).unwrap();
    let mut exports = (*view.exports).clone();
    let changed = export(0, 0, endpoints + 1, 1_700_000_000, &first);
    exports.insert(changed.key.clone(), Arc::new(changed));
    view.exports = Arc::new(exports);
    snapshot.version += 1;
    let started = Instant::now();
    let merged = merge_fleet(&snapshot);
    let second = compile(&snapshot, &merged, &zones, 2);
    let rebuild_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(merged);
    let rss_two = status_kib("VmRSS:");
    drop(table);
    let rss_after_swap = status_kib("VmRSS:");

    // The same change the way `serve` compiles it: only the changed service
    // (`compile::incremental::Compiler`), each of ROUNDS changes to a different service.
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(100);
    let mut compiler = Compiler::new();
    let mut snapshot = Arc::new(snapshot);
    let _ = compiler.compile(snapshot.clone(), &zones, 3);
    let started = Instant::now();
    for round in 0..rounds {
        let mut next = (*snapshot).clone();
        let view = next.clusters.get_mut(&first).unwrap();
        let mut exports = (*view.exports).clone();
        let changed = export(0, round % services, endpoints + 2, 1_700_000_000, &first);
        exports.insert(changed.key.clone(), Arc::new(changed));
        view.exports = Arc::new(exports);
        next.version += 1;
        snapshot = Arc::new(next);
        let compiled = compiler.compile(snapshot.clone(), &zones, 4);
        assert_eq!(compiled.changed, Some(1));
    }
    let incremental_ms = started.elapsed().as_secs_f64() * 1e3 / rounds.max(1) as f64;

    println!(
        "services={services} clusters={clusters} endpoints={endpoints} exports={} names={} records={} \
         merge_ms={merge_ms:.1} build_ms={build_ms:.1} rebuild_one_change_ms={rebuild_ms:.1} \
         one_change_incremental_ms={incremental_ms:.2} \
         rss_start_kib={rss_start} rss_snapshot_kib={rss_snapshot} rss_one_table_kib={rss_one} \
         rss_two_tables_kib={rss_two} rss_after_swap_kib={rss_after_swap} hwm_kib={}",
        snapshot.export_count(),
        stats.names,
        stats.records,
        status_kib("VmHWM:"),
    );
    drop(second);
}
