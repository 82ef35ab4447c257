//! The incremental compiler against the whole compile: after every change of a random
//! sequence, the table it makes holds exactly the names and bytes a whole compile of the same
//! snapshot holds.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use fleetdns_core::{
    ClusterId, ClusterView, Endpoint, Export, FleetSnapshot, Port, Protocol, ServiceKey,
    ServiceType, Timestamp, merge_fleet,
};

use super::Compiler;
use crate::config::{AnswerPolicy, ZonesConfig};
use crate::table::AnswerTable;

/// A small deterministic generator (no test depends on a random crate).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

const CLUSTERS: usize = 3;

fn cluster_id(c: usize) -> ClusterId {
    ClusterId::new(&format!("cluster-{c}")).unwrap()
}

fn export(c: usize, ns: usize, svc: usize, rng: &mut Lcg) -> Export {
    let headless = svc.is_multiple_of(5);
    let port = |name: &str, p: u16| Port {
        name: Some(name.into()),
        protocol: Protocol::Tcp,
        port: p,
        app_protocol: None,
    };
    let endpoints = (0..=rng.next(3))
        .map(|e| Endpoint {
            addresses: vec![IpAddr::from([10, 20 + c as u8, svc as u8, e as u8 + 1])].into(),
            hostname: (e % 2 == 0).then(|| format!("pod-{e}").into()),
            ready: rng.next(4) != 0,
            zone: None,
        })
        .collect();
    Export {
        key: ServiceKey::new(&format!("ns-{ns}"), &format!("svc-{svc}")).unwrap(),
        cluster: cluster_id(c),
        service_type: if headless {
            ServiceType::Headless
        } else {
            ServiceType::ClusterSetIp
        },
        ports: if rng.next(3) == 0 {
            vec![port("http", 80)].into()
        } else {
            vec![port("http", 80), port("grpc", 9090)].into()
        },
        cluster_ips: if headless {
            Vec::new().into()
        } else {
            vec![IpAddr::from([
                10,
                96 + c as u8,
                svc as u8,
                1 + rng.next(3) as u8,
            ])]
            .into()
        },
        endpoints,
        created: Timestamp(100 + rng.next(3) as i64),
    }
}

fn fleet(rng: &mut Lcg) -> FleetSnapshot {
    let mut snap = FleetSnapshot {
        version: 1,
        ..FleetSnapshot::default()
    };
    for c in 0..CLUSTERS {
        let mut exports = BTreeMap::new();
        for svc in 0..30 {
            if rng.next(4) != 0 {
                let e = export(c, svc % 4, svc, rng);
                exports.insert(e.key.clone(), Arc::new(e));
            }
        }
        snap.clusters.insert(
            cluster_id(c),
            ClusterView {
                alive: true,
                exports: Arc::new(exports),
                published: Timestamp(1),
                service_entries: Arc::default(),
            },
        );
    }
    snap
}

/// One random change, the way registries make them: a new set for one cluster (unchanged
/// exports keep their `Arc`), a cluster dying or coming back, a VIP given or taken.
fn change(snap: &FleetSnapshot, rng: &mut Lcg) -> FleetSnapshot {
    let mut next = snap.clone();
    next.version += 1;
    let c = rng.next(CLUSTERS);
    let view = next.clusters.get_mut(&cluster_id(c)).unwrap();
    match rng.next(10) {
        0 => view.alive = !view.alive,
        1 => {
            let svc = rng.next(30);
            let key = ServiceKey::new(&format!("ns-{}", svc % 4), &format!("svc-{svc}")).unwrap();
            match rng.next(2) {
                0 => next.vips.insert(key, IpAddr::from([242, 1, 0, svc as u8])),
                _ => next.vips.remove(&key),
            };
        }
        _ => {
            let mut exports = (*view.exports).clone();
            for _ in 0..=rng.next(3) {
                // Services in a fifth namespace come and go, so namespace nodes appear and vanish.
                let svc = rng.next(34);
                let ns = if svc >= 30 { 4 } else { svc % 4 };
                let key = ServiceKey::new(&format!("ns-{ns}"), &format!("svc-{svc}")).unwrap();
                if rng.next(3) == 0 {
                    exports.remove(&key);
                } else {
                    exports.insert(key, Arc::new(export(c, ns, svc, rng)));
                }
            }
            view.exports = Arc::new(exports);
        }
    }
    next
}

/// Every name of a table with its bytes, sorted.
fn contents(table: &AnswerTable) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = table
        .names()
        .map(|n| {
            let len = crate::table::entry_len_of(n);
            n.bytes()[..len].to_vec()
        })
        .collect();
    names.sort();
    names
}

fn configs() -> Vec<ZonesConfig> {
    let local = ZonesConfig {
        local_cluster: Some(cluster_id(0)),
        ..ZonesConfig::default()
    };
    let mut all = local.clone();
    all.clusterset.policy = AnswerPolicy::All;
    all.clusterset.lighthouse_names = true;
    let mut no_cluster_zones = local.clone();
    no_cluster_zones.cluster_zones.enabled = false;
    let mut vip = local.clone();
    vip.clusterset.policy = AnswerPolicy::Vip;
    vec![local, all, no_cluster_zones, vip]
}

#[test]
fn every_change_compiles_to_what_a_whole_compile_makes() {
    for (i, config) in configs().into_iter().enumerate() {
        let mut rng = Lcg(7 + i as u64);
        let mut snap = Arc::new(fleet(&mut rng));
        let mut compiler = Compiler::new();
        let first = compiler.compile(snap.clone(), &config, 1);
        assert!(first.changed.is_none(), "the first compile is whole");
        let mut incremental = 0;
        for step in 0..200u32 {
            snap = Arc::new(change(&snap, &mut rng));
            let serial = 2 + step;
            let got = compiler.compile(snap.clone(), &config, serial);
            incremental += usize::from(got.changed.is_some());
            let merged = merge_fleet(&snap);
            let whole = super::compile(&snap, &merged, &config, serial);
            assert_eq!(
                contents(&got.table),
                contents(&whole),
                "config {i}, step {step}: the changed table differs from a whole compile"
            );
            assert_eq!(got.table.stats(), whole.stats(), "config {i}, step {step}");
            assert_eq!(
                compiler.merged(),
                Some(&merged),
                "config {i}, step {step}: merge"
            );
            assert_eq!(got.services, merged.len());
            assert_eq!(got.table.version, snap.version);
        }
        assert!(
            incremental > 160,
            "config {i}: only {incremental} of 200 changes were incremental"
        );
    }
}

#[test]
fn an_unchanged_snapshot_touches_nothing_but_the_serial() {
    let mut rng = Lcg(3);
    let snap = Arc::new(fleet(&mut rng));
    let config = &configs()[0];
    let mut compiler = Compiler::new();
    let first = compiler.compile(snap.clone(), config, 1);
    let mut same = (*snap).clone();
    same.version += 1;
    let second = compiler.compile(Arc::new(same), config, 1);
    assert_eq!(second.changed, Some(0));
    let shared = first
        .table
        .shard_ptrs()
        .zip(second.table.shard_ptrs())
        .filter(|(a, b)| a == b)
        .count();
    assert_eq!(shared, crate::table::SHARDS, "every shard is shared");
}

#[test]
fn new_settings_or_clusters_compile_the_whole_table() {
    let mut rng = Lcg(5);
    let snap = Arc::new(fleet(&mut rng));
    let configs = configs();
    let mut compiler = Compiler::new();
    compiler.compile(snap.clone(), &configs[0], 1);
    assert!(
        compiler
            .compile(snap.clone(), &configs[1], 2)
            .changed
            .is_none()
    );
    let mut more = (*snap).clone();
    more.clusters
        .insert(cluster_id(9), more.clusters[&cluster_id(0)].clone());
    assert!(
        compiler
            .compile(Arc::new(more), &configs[1], 3)
            .changed
            .is_none()
    );
    let mut mesh = configs[1].clone();
    mesh.mesh.enabled = true;
    let a = compiler.compile(snap.clone(), &mesh, 4);
    let b = compiler.compile(snap, &mesh, 5);
    assert!(
        a.changed.is_none() && b.changed.is_none(),
        "mesh zones compile whole"
    );
}

/// A cluster joining or leaving the fleet changes the merge of every service it exports:
/// with per-cluster zones off (the zone count then does not change), the clusterset answers
/// still gain the new cluster's addresses and lose the departed one's.
#[test]
fn a_cluster_joining_or_leaving_changes_the_clusterset_answers() {
    let mut rng = Lcg(11);
    let snap = Arc::new(fleet(&mut rng));
    let config = &configs()[2];
    assert!(!config.cluster_zones.enabled);
    let mut compiler = Compiler::new();
    compiler.compile(snap.clone(), config, 1);
    let mut joined = (*snap).clone();
    joined.version += 1;
    let exports = (0..30)
        .map(|svc| {
            let e = export(9, svc % 4, svc, &mut rng);
            (e.key.clone(), Arc::new(e))
        })
        .collect();
    joined.clusters.insert(
        cluster_id(9),
        ClusterView {
            alive: true,
            exports: Arc::new(exports),
            published: Timestamp(1),
            service_entries: Arc::default(),
        },
    );
    let mut left = (*snap).clone();
    left.version += 2;
    for (serial, next) in [(2, joined), (3, left)] {
        let next = Arc::new(next);
        let got = compiler.compile(next.clone(), config, serial);
        let whole = super::compile(&next, &merge_fleet(&next), config, serial);
        assert_eq!(
            contents(&got.table),
            contents(&whole),
            "{} clusters: the table differs from a whole compile",
            next.clusters.len()
        );
    }
}
