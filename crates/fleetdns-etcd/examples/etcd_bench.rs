//! Measures the etcd registry (bench/registry.sh runs it against a local etcd):
//!
//! - `throughput ENDPOINT`: exports per second one writer publishes and a second registry
//!   (a reader, as a DNS server holds) has seen: whole-set rewrites (new generation) and small
//!   diffs (one transaction) separately.
//! - `populate ENDPOINT PREFIX CLUSTERS SERVICES`: writes a fleet of SERVICES services spread
//!   over CLUSTERS clusters (10 endpoints each) under long leases, for a server to load; prints
//!   how long a reader takes to load it and the reader's resident memory.
//!
//! Output: one `key=value` line per figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetdns_core::model::{Endpoint, Export, Port, Protocol, ServiceType};
use fleetdns_core::{ClusterId, ExportSet, Registry, ServiceKey, Timestamp};
use fleetdns_etcd::{EtcdConfig, EtcdRegistry};
use tokio_util::sync::CancellationToken;

fn config(endpoint: &str, prefix: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![endpoint.to_owned()],
        prefix: prefix.to_owned(),
        lease_ttl_secs: 600,
        dial_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(60),
        user: None,
        tls: None,
        vips: None,
        vips_v6: None,
    }
}

fn fleet_set(cluster: &str, from: usize, n: usize, generation: u32) -> ExportSet {
    let id = ClusterId::new(cluster).unwrap();
    (from..from + n)
        .map(|i| {
            let key = ServiceKey::new(&format!("ns-{}", i % 100), &format!("svc-{i}")).unwrap();
            let ip =
                |a: u32, b: u32| std::net::IpAddr::from([10, (a >> 8) as u8, a as u8, b as u8]);
            let e = Export {
                key: key.clone(),
                cluster: id.clone(),
                service_type: ServiceType::ClusterSetIp,
                ports: vec![Port {
                    name: Some("http".into()),
                    protocol: Protocol::Tcp,
                    port: 80,
                    app_protocol: None,
                }]
                .into(),
                cluster_ips: vec![ip(i as u32 % 65536, generation)].into(),
                endpoints: (0..10)
                    .map(|j| Endpoint {
                        addresses: vec![ip(i as u32 % 65536, 100 + j)].into(),
                        hostname: None,
                        ready: true,
                        zone: None,
                    })
                    .collect(),
                created: Timestamp(1_700_000_000),
            };
            (key, Arc::new(e))
        })
        .collect()
}

async fn reader(endpoint: &str, prefix: &str) -> (Arc<EtcdRegistry>, CancellationToken) {
    let r = Arc::new(
        EtcdRegistry::connect(&config(endpoint, prefix))
            .await
            .unwrap(),
    );
    let cancel = CancellationToken::new();
    let (run, c) = (r.clone(), cancel.clone());
    tokio::spawn(async move { run.run(c).await });
    (r, cancel)
}

/// Waits until the reader's snapshot satisfies `ok`.
async fn seen(r: &EtcdRegistry, ok: impl Fn(&fleetdns_core::FleetSnapshot) -> bool) {
    let mut rx = r.subscribe();
    loop {
        if rx.borrow_and_update().as_ref().is_some_and(|s| ok(s)) {
            return;
        }
        tokio::time::timeout(Duration::from_secs(120), rx.changed())
            .await
            .expect("reader caught up within 120 s")
            .unwrap();
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn throughput(endpoint: &str) {
    let prefix = "/bench-throughput";
    let writer = EtcdRegistry::connect(&config(endpoint, prefix))
        .await
        .unwrap();
    let (r, cancel) = reader(endpoint, prefix).await;
    let cluster = ClusterId::new("east").unwrap();
    // Whole sets: 2,000 exports rewritten each round (a new generation per publish).
    let (n, rounds) = (2_000, 5);
    writer
        .publish(&cluster, std::sync::Arc::new(fleet_set("east", 0, n, 0)))
        .await
        .unwrap();
    let start = Instant::now();
    for g in 1..=rounds {
        writer
            .publish(&cluster, std::sync::Arc::new(fleet_set("east", 0, n, g)))
            .await
            .unwrap();
    }
    let written = start.elapsed();
    let last = rounds as u8;
    seen(&r, |s| {
        s.clusters.get(&cluster).is_some_and(|v| {
            v.exports.len() == n
                && v.exports.values().all(|e| match e.cluster_ips[0] {
                    std::net::IpAddr::V4(a) => a.octets()[3] == last,
                    _ => false,
                })
        })
    })
    .await;
    let absorbed = start.elapsed();
    let total = (n * rounds as usize) as f64;
    println!("whole_set_exports={n} rounds={rounds}");
    println!(
        "whole_set_written_exports_per_s={:.0}",
        total / written.as_secs_f64()
    );
    println!(
        "whole_set_seen_by_reader_exports_per_s={:.0}",
        total / absorbed.as_secs_f64()
    );
    // Diffs: 50 of the 2,000 change per publish (one transaction each).
    let mut current = fleet_set("east", 0, n, 0);
    writer
        .publish(&cluster, std::sync::Arc::new(current.clone()))
        .await
        .unwrap();
    let diffs = 200;
    let start = Instant::now();
    for round in 0..diffs {
        let changed = fleet_set("east", (round * 50) % n, 50, 1 + (round / 40) as u32);
        current.extend(changed);
        writer
            .publish(&cluster, std::sync::Arc::new(current.clone()))
            .await
            .unwrap();
    }
    let written = start.elapsed();
    let want = current.clone();
    seen(&r, |s| {
        s.clusters.get(&cluster).is_some_and(|v| *v.exports == want)
    })
    .await;
    let absorbed = start.elapsed();
    println!("diff_publishes={diffs} changed_per_publish=50");
    println!(
        "diff_written_exports_per_s={:.0}",
        (diffs * 50) as f64 / written.as_secs_f64()
    );
    println!(
        "diff_publishes_per_s={:.0}",
        diffs as f64 / written.as_secs_f64()
    );
    println!(
        "diff_seen_by_reader_exports_per_s={:.0}",
        (diffs * 50) as f64 / absorbed.as_secs_f64()
    );
    writer.withdraw(&cluster).await.unwrap();
    cancel.cancel();
}

async fn populate(endpoint: &str, prefix: &str, clusters: usize, services: usize) {
    let writer = EtcdRegistry::connect(&config(endpoint, prefix))
        .await
        .unwrap();
    let per = services.div_ceil(clusters);
    let start = Instant::now();
    for c in 0..clusters {
        let id = format!("cluster-{c}");
        let from = c * per;
        let n = per.min(services - from);
        writer
            .publish(
                &ClusterId::new(&id).unwrap(),
                std::sync::Arc::new(fleet_set(&id, from, n, 1)),
            )
            .await
            .unwrap();
    }
    println!(
        "populated_services={services} clusters={clusters} seconds={:.2}",
        start.elapsed().as_secs_f64()
    );
    let before = rss_kib();
    let start = Instant::now();
    let (r, cancel) = reader(endpoint, prefix).await;
    seen(&r, |s| s.export_count() == services).await;
    println!("reader_load_seconds={:.2}", start.elapsed().as_secs_f64());
    println!(
        "reader_rss_mib={:.0}",
        (rss_kib().saturating_sub(before)) as f64 / 1024.0
    );
    cancel.cancel();
    // The writer's leases stay (600 s) for the server to load; exiting does not revoke them.
    std::mem::forget(writer);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("throughput") => throughput(&args[2]).await,
        Some("populate") => {
            populate(
                &args[2],
                &args[3],
                args[4].parse().unwrap(),
                args[5].parse().unwrap(),
            )
            .await;
        }
        _ => {
            eprintln!(
                "usage: etcd_bench throughput ENDPOINT | populate ENDPOINT PREFIX CLUSTERS SERVICES"
            );
            std::process::exit(2);
        }
    }
}
