//! The registry contract, passed by both the memory and the etcd registry, and the etcd
//! faults: lease expiry, etcd restarted under a reader, a compacted revision. Against a real
//! etcd (Debian's `etcd-server`) on loopback. Waits are bounded; nothing measures speed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetdns_core::model::{Endpoint, Export, Port, Protocol, ServiceType};
use fleetdns_core::{
    ClusterId, ExportSet, FleetSnapshot, MemoryRegistry, Registry, ServiceKey, Timestamp,
};
use fleetdns_etcd::testing::TestEtcd;
use fleetdns_etcd::{EtcdConfig, EtcdRegistry};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn id(s: &str) -> ClusterId {
    ClusterId::new(s).unwrap()
}

fn export(cluster: &str, ns: &str, name: &str, ip: &str) -> (ServiceKey, Arc<Export>) {
    let key = ServiceKey::new(ns, name).unwrap();
    let e = Export {
        key: key.clone(),
        cluster: id(cluster),
        service_type: ServiceType::ClusterSetIp,
        ports: vec![Port {
            name: Some("http".into()),
            protocol: Protocol::Tcp,
            port: 80,
            app_protocol: None,
        }]
        .into(),
        cluster_ips: vec![ip.parse().unwrap()].into(),
        endpoints: vec![Endpoint {
            addresses: vec!["10.1.0.1".parse().unwrap()].into(),
            hostname: None,
            ready: true,
            zone: None,
        }]
        .into(),
        created: Timestamp(1_700_000_000),
    };
    (key, Arc::new(e))
}

fn set(cluster: &str, names: &[&str], ip: &str) -> ExportSet {
    names
        .iter()
        .map(|n| export(cluster, "default", n, ip))
        .collect()
}

fn many(cluster: &str, n: usize, ip: &str) -> ExportSet {
    (0..n)
        .map(|i| export(cluster, "bulk", &format!("svc-{i}"), ip))
        .collect()
}

async fn until(
    registry: &dyn Registry,
    what: &str,
    mut ok: impl FnMut(&FleetSnapshot) -> bool,
) -> Arc<FleetSnapshot> {
    let mut rx = registry.subscribe();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(s) = rx.borrow_and_update().clone()
            && ok(&s)
        {
            return s;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!("timed out waiting for {what}"),
        }
    }
}

fn names(s: &FleetSnapshot, cluster: &str) -> Option<Vec<String>> {
    let v = s.clusters.get(&id(cluster))?;
    v.alive
        .then(|| v.exports.keys().map(|k| k.name().to_owned()).collect())
}

fn alive(s: &FleetSnapshot, cluster: &str) -> bool {
    s.clusters.get(&id(cluster)).is_some_and(|v| v.alive)
}

/// What every registry backend promises (fleetdns_core::registry's module docs).
async fn contract(registry: Arc<dyn Registry>, liveness: Duration) {
    let r = &*registry;
    // Publishing replaces the whole set; exports come back as they were published.
    r.publish(
        &id("east"),
        std::sync::Arc::new(set("east", &["a", "b"], "10.0.0.1")),
    )
    .await
    .unwrap();
    r.publish(
        &id("west"),
        std::sync::Arc::new(set("west", &["a"], "10.0.0.2")),
    )
    .await
    .unwrap();
    let s = until(r, "both clusters", |s| {
        names(s, "east").is_some() && names(s, "west").is_some()
    })
    .await;
    assert_eq!(names(&s, "east").unwrap(), ["a", "b"]);
    assert_eq!(
        *s.clusters[&id("east")].exports,
        set("east", &["a", "b"], "10.0.0.1"),
        "exports round-trip"
    );
    r.publish(
        &id("east"),
        std::sync::Arc::new(set("east", &["b", "c"], "10.0.0.1")),
    )
    .await
    .unwrap();
    until(r, "replaced set", |s| {
        names(s, "east") == Some(vec!["b".into(), "c".into()])
    })
    .await;
    // A changed export shows.
    r.publish(
        &id("east"),
        std::sync::Arc::new(set("east", &["b", "c"], "10.0.0.9")),
    )
    .await
    .unwrap();
    let nine: std::net::IpAddr = "10.0.0.9".parse().unwrap();
    until(r, "changed export", |s| {
        s.clusters
            .get(&id("east"))
            .is_some_and(|v| v.exports.values().all(|e| e.cluster_ips == vec![nine]))
    })
    .await;
    // A large set (more than one etcd transaction holds) is never seen half-written.
    r.publish(
        &id("bulk"),
        std::sync::Arc::new(many("bulk", 300, "10.0.1.1")),
    )
    .await
    .unwrap();
    until(r, "300 exports", |s| {
        names(s, "bulk").is_some_and(|n| n.len() == 300)
    })
    .await;
    let mut rx = r.subscribe();
    rx.borrow_and_update();
    let seen = tokio::spawn(async move {
        let mut sizes = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(s) = rx.borrow_and_update().clone()
                && let Some(v) = s.clusters.get(&id("bulk"))
            {
                let n = v.exports.len();
                let ips: BTreeSet<String> = v
                    .exports
                    .values()
                    .map(|e| e.cluster_ips[0].to_string())
                    .collect();
                sizes.insert((n, ips.into_iter().collect::<Vec<_>>()));
                if n == 500 {
                    return sizes;
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return sizes;
            }
        }
    });
    r.publish(
        &id("bulk"),
        std::sync::Arc::new(many("bulk", 500, "10.0.2.2")),
    )
    .await
    .unwrap();
    let sizes = seen.await.unwrap();
    assert!(
        sizes
            .iter()
            .all(|(n, ips)| (*n == 300 && ips == &["10.0.1.1"])
                || (*n == 500 && ips == &["10.0.2.2"])),
        "every snapshot holds the old set or the new one: {sizes:?}"
    );
    assert!(sizes.iter().any(|(n, _)| *n == 500), "{sizes:?}");
    // Withdraw removes a cluster.
    r.withdraw(&id("bulk")).await.unwrap();
    until(r, "withdrawn", |s| !s.clusters.contains_key(&id("bulk"))).await;
    // Heartbeats keep a cluster alive past its liveness time; without them it leaves.
    for _ in 0..6 {
        tokio::time::sleep(liveness / 3).await;
        r.heartbeat(&id("east")).await.unwrap();
    }
    let s = until(r, "snapshot", |_| true).await;
    assert!(alive(&s, "east"), "heartbeats keep east alive");
    assert!(!alive(&s, "west"), "west (no heartbeats) left");
}

fn etcd_config(etcd: &TestEtcd, prefix: &str, ttl: i64) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: prefix.into(),
        lease_ttl_secs: ttl,
        dial_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        user: None,
        tls: None,
        vips: None,
        vips_v6: None,
    }
}

async fn etcd_registry(
    etcd: &TestEtcd,
    prefix: &str,
    ttl: i64,
) -> (Arc<EtcdRegistry>, CancellationToken) {
    let r = Arc::new(
        EtcdRegistry::connect(&etcd_config(etcd, prefix, ttl))
            .await
            .unwrap(),
    );
    let cancel = CancellationToken::new();
    let reader = r.clone();
    let c = cancel.clone();
    tokio::spawn(async move { reader.run(c).await });
    (r, cancel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_registry_keeps_the_contract() {
    let liveness = Duration::from_secs(2);
    let r = Arc::new(MemoryRegistry::new(liveness));
    let cancel = CancellationToken::new();
    let sweeper = r.clone();
    let c = cancel.clone();
    tokio::spawn(async move { sweeper.run_liveness(c.cancelled()).await });
    contract(r, liveness).await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_registry_keeps_the_contract() {
    let etcd = TestEtcd::start();
    let (r, cancel) = etcd_registry(&etcd, "/contract", 2).await;
    contract(r, Duration::from_secs(2)).await;
    cancel.cancel();
}

/// MCS-10 / SPEC §3: a publisher that stops (no revoke, as after SIGKILL) leaves every reader
/// within the lease TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_publisher_expires_with_its_lease_in_other_readers() {
    let etcd = TestEtcd::start();
    let (writer, cancel_w) = etcd_registry(&etcd, "/lease", 2).await;
    let (reader, cancel_r) = etcd_registry(&etcd, "/lease", 2).await;
    writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["web"], "10.0.0.1")),
        )
        .await
        .unwrap();
    until(&*reader, "reader sees east", |s| names(s, "east").is_some()).await;
    cancel_w.cancel();
    drop(writer); // nothing revokes the lease: it just stops being kept alive
    until(&*reader, "east expired", |s| {
        !s.clusters.contains_key(&id("east"))
    })
    .await;
    cancel_r.cancel();
}

/// etcd stops under a running reader: the last snapshot stays, `stale` says so; after the
/// restart the reader catches up with what is written since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restarted_under_a_reader_and_a_writer() {
    let mut etcd = TestEtcd::start();
    let (writer, cancel_w) = etcd_registry(&etcd, "/restart", 2).await;
    let (reader, cancel_r) = etcd_registry(&etcd, "/restart", 2).await;
    writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["web"], "10.0.0.1")),
        )
        .await
        .unwrap();
    until(&*reader, "east", |s| names(s, "east").is_some()).await;
    let status = reader.status();
    etcd.stop();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !status.stale.load(Ordering::Relaxed) {
        assert!(tokio::time::Instant::now() < deadline, "stale never set");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = reader.subscribe().borrow().clone().unwrap();
    assert_eq!(
        names(&s, "east").unwrap(),
        ["web"],
        "the last snapshot is still served"
    );
    // past the keep-alive rate limit (a third of the TTL; the publish renewed the lease)
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(writer.heartbeat(&id("east")).await.is_err(), "etcd is down");
    tokio::time::sleep(Duration::from_secs(3)).await; // longer than the lease TTL
    etcd.restart();
    let deadline = tokio::time::Instant::now() + WAIT;
    while writer.heartbeat(&id("east")).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "heartbeat never worked again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["web", "api"], "10.0.0.1")),
        )
        .await
        .unwrap();
    // The writer goes on heartbeating, as an agent does: with a 2 s lease and no heartbeat,
    // the set expired before a reader still backing off from the outage (up to 5 s) loaded
    // again, and the test waited for a state etcd no longer had.
    let heartbeats = {
        let (writer, cancel) = (writer.clone(), cancel_w.clone());
        tokio::spawn(async move {
            while !cancel.is_cancelled() {
                let _ = writer.heartbeat(&id("east")).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    until(&*reader, "state after the restart", |s| {
        names(s, "east") == Some(vec!["api".into(), "web".into()])
    })
    .await;
    assert!(!status.stale.load(Ordering::Relaxed));
    assert!(
        status.loads.load(Ordering::Relaxed) >= 2,
        "a fresh snapshot after the outage"
    );
    cancel_w.cancel();
    heartbeats.await.unwrap();
    cancel_r.cancel();
}

/// Whether two snapshots serve `cluster`'s exports as the very same objects.
fn shares_exports(a: &FleetSnapshot, b: &FleetSnapshot, cluster: &str) -> bool {
    let (a, b) = (
        &a.clusters[&id(cluster)].exports,
        &b.clusters[&id(cluster)].exports,
    );
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|((ka, ea), (kb, eb))| ka == kb && Arc::ptr_eq(ea, eb))
}

/// A reload after etcd came back serves what did not change as the objects it served before:
/// a compiler that kept the old exports in its merge while the snapshot held reloaded copies
/// held every export twice (the soak's step in RSS at each etcd restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_shares_the_exports_it_already_had() {
    let mut etcd = TestEtcd::start();
    let (writer, cancel_w) = etcd_registry(&etcd, "/reload", 30).await;
    let (reader, cancel_r) = etcd_registry(&etcd, "/reload", 30).await;
    writer
        .publish(
            &id("east"),
            std::sync::Arc::new(many("east", 50, "10.0.0.1")),
        )
        .await
        .unwrap();
    writer
        .publish(
            &id("west"),
            std::sync::Arc::new(many("west", 50, "10.0.0.2")),
        )
        .await
        .unwrap();
    let before = until(&*reader, "both clusters", |s| {
        names(s, "east").is_some_and(|n| n.len() == 50)
            && names(s, "west").is_some_and(|n| n.len() == 50)
    })
    .await;
    let status = reader.status();
    let loads = status.loads.load(Ordering::Relaxed);
    let errors = status.watch_errors.load(Ordering::Relaxed);
    etcd.stop();
    // Down long enough for loads to fail too: what the reader had must outlive them.
    wait_for("failed attempts", WAIT, || {
        status.watch_errors.load(Ordering::Relaxed) >= errors + 3
    })
    .await;
    etcd.restart();
    wait_for("a fresh load", WAIT, || {
        status.loads.load(Ordering::Relaxed) > loads && !status.stale.load(Ordering::Relaxed)
    })
    .await;
    // West changes after the reload: east's exports and set are the ones served before.
    writer
        .publish(
            &id("west"),
            std::sync::Arc::new(many("west", 49, "10.0.0.2")),
        )
        .await
        .unwrap();
    let after = until(&*reader, "west's change", |s| {
        names(s, "west").is_some_and(|n| n.len() == 49)
    })
    .await;
    assert!(
        shares_exports(&before, &after, "east"),
        "east's exports are the objects served before the reload"
    );
    assert!(
        Arc::ptr_eq(
            &before.clusters[&id("east")].exports,
            &after.clusters[&id("east")].exports
        ),
        "east's set is the one served before"
    );
    let (w0, w1) = (
        &before.clusters[&id("west")].exports,
        &after.clusters[&id("west")].exports,
    );
    assert!(
        w1.iter().all(|(k, e)| Arc::ptr_eq(e, &w0[k])),
        "west's unchanged exports are shared too"
    );
    cancel_w.cancel();
    cancel_r.cancel();
}

/// A second writer of a cluster writes a new generation; what it repeats of the generation
/// being served is served as the same objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_generation_shares_the_exports_it_repeats() {
    let etcd = TestEtcd::start();
    let (a, cancel_a) = etcd_registry(&etcd, "/regen", 30).await;
    let (b, cancel_b) = etcd_registry(&etcd, "/regen", 30).await;
    let (reader, cancel_r) = etcd_registry(&etcd, "/regen", 30).await;
    let east = id("east");
    a.publish(
        &east,
        std::sync::Arc::new(set("east", &["web", "api"], "10.0.0.1")),
    )
    .await
    .unwrap();
    let before = until(&*reader, "a's set", |s| names(s, "east").is_some()).await;
    let mut changed = set("east", &["web", "api", "new"], "10.0.0.1");
    let (api_key, api_changed) = export("east", "default", "api", "10.0.0.9");
    changed.insert(api_key, api_changed);
    b.publish(&east, std::sync::Arc::new(changed))
        .await
        .unwrap();
    let after = until(&*reader, "b's set", |s| {
        names(s, "east").is_some_and(|n| n.len() == 3)
    })
    .await;
    let (old, new) = (
        &before.clusters[&east].exports,
        &after.clusters[&east].exports,
    );
    let web = ServiceKey::new("default", "web").unwrap();
    let api = ServiceKey::new("default", "api").unwrap();
    assert!(
        Arc::ptr_eq(&old[&web], &new[&web]),
        "web, repeated, is shared"
    );
    assert!(!Arc::ptr_eq(&old[&api], &new[&api]), "api changed");
    assert_eq!(
        new[&api].cluster_ips,
        ["10.0.0.9".parse::<std::net::IpAddr>().unwrap()]
    );
    cancel_a.cancel();
    cancel_b.cancel();
    cancel_r.cancel();
}

/// A watch from a compacted revision is cancelled by etcd; the reader loads a fresh snapshot
/// instead of missing what was compacted away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_revision_forces_a_fresh_snapshot() {
    let etcd = TestEtcd::start();
    let (writer, cancel_w) = etcd_registry(&etcd, "/compact", 30).await;
    writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["a"], "10.0.0.1")),
        )
        .await
        .unwrap();
    let before = until(&*writer, "a", |s| names(s, "east").is_some())
        .await
        .version as i64;
    writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["a", "b"], "10.0.0.1")),
        )
        .await
        .unwrap();
    writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["b"], "10.0.0.1")),
        )
        .await
        .unwrap();
    let mut client = writer.client();
    let now = client
        .get("/compact/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client.compact(now, None).await.unwrap();
    let why = tokio::time::timeout(WAIT, writer.follow_from(before))
        .await
        .expect("the watch ends");
    assert!(why.contains("compacted"), "{why}");
    until(&*writer, "final state", |s| {
        names(s, "east") == Some(vec!["b".into()])
    })
    .await;
    cancel_w.cancel();
}

/// Values that do not decode (a newer format, garbage) are skipped and counted; the rest of
/// the fleet is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_values_are_skipped() {
    let etcd = TestEtcd::start();
    let (r, cancel) = etcd_registry(&etcd, "/bad", 30).await;
    r.publish(
        &id("east"),
        std::sync::Arc::new(set("east", &["web"], "10.0.0.1")),
    )
    .await
    .unwrap();
    until(&*r, "east", |s| names(s, "east").is_some()).await;
    let mut client = r.client();
    client
        .put("/bad/clusters/west", "{not json", None)
        .await
        .unwrap();
    client
        .put(
            "/bad/clusters/north",
            r#"{"v":99,"generation":1,"published":0,"exports":0}"#,
            None,
        )
        .await
        .unwrap();
    client
        .put("/bad/exports/east/1/default/zzz", "garbage", None)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while r.status().bad_values.load(Ordering::Relaxed) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bad values not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = r.subscribe().borrow().clone().unwrap();
    assert_eq!(names(&s, "east").unwrap(), ["web"]);
    assert!(!s.clusters.contains_key(&id("west")) && !s.clusters.contains_key(&id("north")));
    cancel.cancel();
}

/// SPEC §4: allocators racing in separate processes' registries (here: three clients) never
/// hand out one address twice, agree on one VIP per service, keep it across re-publishes, and
/// release it only after the last export has been gone for the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_vip_allocators_never_share_an_address() {
    let etcd = TestEtcd::start();
    // A small range, so hash starts collide and the compare-and-swap is exercised.
    let range: fleetdns_core::VipRange = "10.99.0.0/25".parse().unwrap();
    let grace = Duration::from_secs(1);
    let mut regs = Vec::new();
    for _ in 0..3 {
        let mut config = etcd_config(&etcd, "/vip", 30);
        config.vips = Some((range, grace));
        let r = Arc::new(EtcdRegistry::connect(&config).await.unwrap());
        let reader = r.clone();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move { reader.run(c).await });
        regs.push((r, cancel));
    }
    let shared: Vec<String> = (0..40).map(|i| format!("shared-{i}")).collect();
    let shared: Vec<&str> = shared.iter().map(String::as_str).collect();
    let own: Vec<String> = (0..30).map(|i| format!("own-{i}")).collect();
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    let (r0, r1, r2) = (&regs[0].0, &regs[1].0, &regs[2].0);
    let (east, west, north) = (id("east"), id("west"), id("north"));
    let (a, b, c) = tokio::join!(
        r0.publish(&east, std::sync::Arc::new(set("east", &shared, "10.0.0.1"))),
        r1.publish(&west, std::sync::Arc::new(set("west", &shared, "10.0.0.2"))),
        r2.publish(&north, std::sync::Arc::new(set("north", &own, "10.0.0.3"))),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    let mut seen = Vec::new();
    for (r, _) in &regs {
        let s = until(&**r, "70 VIPs", |s| s.vips.len() == 70).await;
        let ips: BTreeSet<std::net::IpAddr> = s.vips.values().copied().collect();
        assert_eq!(ips.len(), 70, "no address handed out twice");
        assert!(ips.iter().all(|ip| match ip {
            std::net::IpAddr::V4(v4) => range.contains(*v4),
            std::net::IpAddr::V6(_) => false,
        }));
        seen.push(s.vips.clone());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "every reader agrees");
    // Stable: a re-publish does not move a VIP.
    r0.publish(
        &id("east"),
        std::sync::Arc::new(set("east", &shared, "10.0.0.9")),
    )
    .await
    .unwrap();
    let s = until(&**r0, "re-published", |s| {
        s.clusters[&id("east")]
            .exports
            .values()
            .all(|e| e.cluster_ips[0].to_string() == "10.0.0.9")
    })
    .await;
    assert_eq!(s.vips, seen[0]);
    // north leaves: its 30 VIPs go after the grace period, the shared ones stay.
    r2.withdraw(&id("north")).await.unwrap();
    let s = until(&**r0, "released", |s| s.vips.len() == 40).await;
    assert!(s.vips.keys().all(|k| k.name().starts_with("shared-")));
    for (_, cancel) in regs {
        cancel.cancel();
    }
}

/// A snapshot larger than one page (and than gRPC's default 4 MiB message) loads whole, at
/// one revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_loads_in_pages() {
    let etcd = TestEtcd::start();
    let (writer, cancel_w) = etcd_registry(&etcd, "/pages", 30).await;
    let mut big = many("big", 5000, "10.0.3.3");
    for e in big.values_mut() {
        let mut x = (**e).clone();
        x.endpoints = (0..20)
            .map(|i| Endpoint {
                addresses: vec![format!("10.2.{i}.{i}").parse().unwrap()].into(),
                hostname: Some(format!("pod-with-a-long-hostname-{i}").into()),
                ready: true,
                zone: Some("zone-a".into()),
            })
            .collect();
        *e = Arc::new(x);
    }
    writer
        .publish(&id("big"), std::sync::Arc::new(big))
        .await
        .unwrap();
    let (reader, cancel_r) = etcd_registry(&etcd, "/pages", 30).await;
    let s = until(&*reader, "5000 exports", |s| s.export_count() == 5000).await;
    assert!(
        s.clusters[&id("big")]
            .exports
            .values()
            .all(|e| e.endpoints.len() == 20)
    );
    assert_eq!(reader.status().loads.load(Ordering::Relaxed), 1);
    cancel_w.cancel();
    cancel_r.cancel();
}

/// Two writers of one cluster overlapping (an agent and its replacement in a rolling restart)
/// flip generations back and forth, but a reader only ever sees one writer's whole set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_writers_of_one_cluster_never_show_a_half_set() {
    let etcd = TestEtcd::start();
    let (a, cancel_a) = etcd_registry(&etcd, "/overlap", 30).await;
    let (b, cancel_b) = etcd_registry(&etcd, "/overlap", 30).await;
    let (reader, cancel_r) = etcd_registry(&etcd, "/overlap", 30).await;
    let mut rx = reader.subscribe();
    // The watcher looks at every snapshot until the writers are done and the reader has caught
    // up with etcd's last revision. (It used to stop after 3 s without a new snapshot; on a
    // loaded machine the first generation alone can take that long, and then it had seen
    // nothing.) Bounded all the same.
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(None::<u64>);
    let watcher = tokio::spawn(async move {
        let mut sizes = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + 3 * WAIT;
        loop {
            let snapshot = rx.borrow_and_update().clone();
            if let Some(s) = &snapshot
                && let Some(v) = s.clusters.get(&id("east"))
            {
                let ips: BTreeSet<String> = v
                    .exports
                    .values()
                    .map(|e| e.cluster_ips[0].to_string())
                    .collect();
                sizes.insert((v.exports.len(), ips.into_iter().collect::<Vec<_>>()));
            }
            let end = *done_rx.borrow_and_update();
            if let (Some(s), Some(end)) = (&snapshot, end)
                && s.version >= end
            {
                break;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { break },
                r = done_rx.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        sizes
    });
    let east = id("east");
    let (ra, rb) = tokio::join!(
        async {
            for _ in 0..6 {
                a.publish(&east, std::sync::Arc::new(many("east", 300, "10.0.0.1")))
                    .await?;
                a.publish(&east, std::sync::Arc::new(many("east", 250, "10.0.0.1")))
                    .await?;
            }
            Ok::<_, fleetdns_core::RegistryError>(())
        },
        async {
            for _ in 0..6 {
                b.publish(&east, std::sync::Arc::new(many("east", 400, "10.0.0.2")))
                    .await?;
                b.publish(&east, std::sync::Arc::new(many("east", 350, "10.0.0.2")))
                    .await?;
            }
            Ok::<_, fleetdns_core::RegistryError>(())
        },
    );
    ra.unwrap();
    rb.unwrap();
    let mut client = reader.client();
    let last = client.get("/overlap/", None).await.unwrap();
    let revision = last
        .header()
        .map_or(0, etcd_client::ResponseHeader::revision);
    done_tx.send_replace(Some(revision.max(0) as u64));
    let sizes = watcher.await.unwrap();
    assert!(!sizes.is_empty());
    assert!(
        sizes
            .iter()
            .all(|(n, ips)| ([250, 300].contains(n) && ips == &["10.0.0.1"])
                || ([350, 400].contains(n) && ips == &["10.0.0.2"])),
        "a half-written or mixed set was visible: {sizes:?}"
    );
    cancel_a.cancel();
    cancel_b.cancel();
    cancel_r.cancel();
}

/// A writer that keeps making small changes (each one a transaction on the cluster key) does
/// not starve a second writer that writes a whole new generation: the flip is retried while
/// the cluster key names an older generation, and given up only for a newer one. (Each small
/// change used to fail the other writer's compare-and-swap, and five lost flips were an error:
/// `overlapping_writers_of_one_cluster_never_show_a_half_set` failed that way under load.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_changes_of_one_writer_do_not_starve_another_writers_generation() {
    let etcd = TestEtcd::start();
    let (a, cancel_a) = etcd_registry(&etcd, "/starve", 30).await;
    let (b, cancel_b) = etcd_registry(&etcd, "/starve", 30).await;
    let east = id("east");
    b.publish(&east, std::sync::Arc::new(many("east", 10, "10.0.0.2")))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let churn = {
        let (b, east, stop) = (b.clone(), east.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() && n < 200 {
                b.publish(
                    &east,
                    std::sync::Arc::new(many("east", 10 + n % 2, "10.0.0.2")),
                )
                .await
                .unwrap();
                n += 1;
            }
            n
        })
    };
    let r = a
        .publish(&east, std::sync::Arc::new(many("east", 600, "10.0.0.1")))
        .await;
    stop.cancel();
    let churned = churn.await.unwrap();
    r.unwrap();
    assert!(churned > 0);
    cancel_a.cancel();
    cancel_b.cancel();
}

/// A lease etcd dropped while etcd stayed up (expired during a partition; here revoked from
/// outside) is noticed by the next heartbeat or publish, and the cluster is published again on
/// a new lease. A second writer that took the cluster key and then went away is noticed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_leases_and_lost_keys_are_published_again() {
    let etcd = TestEtcd::start();
    let (a, cancel_a) = etcd_registry(&etcd, "/lost", 3).await;
    let (reader, cancel_r) = etcd_registry(&etcd, "/lost", 3).await;
    let east = id("east");
    a.publish(
        &east,
        std::sync::Arc::new(set("east", &["web"], "10.0.0.1")),
    )
    .await
    .unwrap();
    until(&*reader, "east", |s| names(s, "east").is_some()).await;
    let mut client = reader.client();
    let lease_of =
        |resp: etcd_client::GetResponse| resp.kvs().first().map(etcd_client::KeyValue::lease);
    // 1. The lease disappears under the writer (heartbeat path).
    let lease = lease_of(client.get("/lost/clusters/east", None).await.unwrap()).unwrap();
    client.lease_revoke(lease).await.unwrap();
    until(&*reader, "east gone with its lease", |s| {
        !s.clusters.contains_key(&east)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the keep-alive rate limit
    a.heartbeat(&east).await.unwrap();
    until(&*reader, "east back on a new lease", |s| {
        names(s, "east").is_some()
    })
    .await;
    // 2. The lease disappears again; this time a publish notices.
    let lease = lease_of(client.get("/lost/clusters/east", None).await.unwrap()).unwrap();
    client.lease_revoke(lease).await.unwrap();
    until(&*reader, "east gone again", |s| {
        !s.clusters.contains_key(&east)
    })
    .await;
    a.publish(
        &east,
        std::sync::Arc::new(set("east", &["web", "api"], "10.0.0.1")),
    )
    .await
    .unwrap();
    until(&*reader, "east republished", |s| {
        names(s, "east") == Some(vec!["api".into(), "web".into()])
    })
    .await;
    // 3. Another writer takes the cluster key, then withdraws (its lease goes, and the key
    // with it): the first writer's next heartbeat notices the key is not its own.
    let (b, cancel_b) = etcd_registry(&etcd, "/lost", 3).await;
    b.publish(
        &east,
        std::sync::Arc::new(set("east", &["other"], "10.0.0.2")),
    )
    .await
    .unwrap();
    until(&*reader, "b's set", |s| {
        names(s, "east") == Some(vec!["other".into()])
    })
    .await;
    b.withdraw(&east).await.unwrap();
    until(&*reader, "b's set gone", |s| {
        !s.clusters.contains_key(&east)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.heartbeat(&east).await.unwrap();
    until(&*reader, "a's set back", |s| {
        names(s, "east") == Some(vec!["api".into(), "web".into()])
    })
    .await;
    cancel_a.cancel();
    cancel_b.cancel();
    cancel_r.cancel();
}

/// ServiceEntries as a source reads them (through the shared translation).
fn service_entries(cluster: &str, list: serde_json::Value) -> fleetdns_core::ServiceEntrySet {
    let objects: Vec<fleetdns_core::service_entry::ServiceEntryObject> =
        serde_json::from_value(list).unwrap();
    let (set, notes) = fleetdns_core::service_entry::translate_service_entries(
        &id(cluster),
        &objects,
        &mut |_| Timestamp(0),
    );
    assert!(notes.is_empty(), "{notes:?}");
    set
}

fn vip_config(etcd: &TestEtcd, prefix: &str) -> EtcdConfig {
    let mut config = etcd_config(etcd, prefix, 30);
    config.vips = Some(("240.240.0.0/16".parse().unwrap(), Duration::from_secs(600)));
    config.vips_v6 = Some("2001:2::/48".parse().unwrap());
    config
}

async fn started(config: &EtcdConfig) -> (Arc<EtcdRegistry>, CancellationToken) {
    let r = Arc::new(EtcdRegistry::connect(config).await.unwrap());
    let cancel = CancellationToken::new();
    let (reader, c) = (r.clone(), cancel.clone());
    tokio::spawn(async move { reader.run(c).await });
    (r, cancel)
}

/// IST-14 through etcd: ServiceEntries reach every server; a host without addresses gets one
/// VIP per family, the same on two servers, kept across a restart of the writer and of the
/// servers; where two entries carry the same status address the oldest keeps it and the
/// younger gets a VIP; services get IPv6 VIPs beside IPv4 ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ist14_service_entries_and_vips_through_etcd() {
    let etcd = TestEtcd::start();
    let config = vip_config(&etcd, "/mesh");
    let (agent, cancel_agent) = started(&config).await;
    let (server1, cancel1) = started(&config).await;
    let (server2, cancel2) = started(&config).await;
    let one = id("cluster-1");
    agent
        .publish(
            &one,
            std::sync::Arc::new(set("cluster-1", &["web"], "10.0.0.1")),
        )
        .await
        .unwrap();
    let entries = service_entries(
        "cluster-1",
        serde_json::json!([
            {"metadata": {"name": "reviews", "namespace": "istio-system", "creationTimestamp": "2024-01-01T00:00:00Z"},
             "spec": {"hosts": ["reviews.default.cluster-2"], "addresses": ["240.0.0.2"], "resolution": "DNS"}},
            {"metadata": {"name": "alloc", "namespace": "istio-system", "creationTimestamp": "2024-01-01T00:00:01Z"},
             "spec": {"hosts": ["alloc.example.com"], "resolution": "DNS"}},
            {"metadata": {"name": "old", "namespace": "istio-system", "creationTimestamp": "2024-01-01T00:00:02Z"},
             "spec": {"hosts": ["old.example.com"], "resolution": "DNS"},
             "status": {"addresses": [{"value": "240.240.9.9", "host": "old.example.com"}]}},
        ]),
    );
    agent
        .publish_service_entries(&one, entries.clone())
        .await
        .unwrap();
    let two = id("cluster-2");
    agent
        .publish(
            &two,
            std::sync::Arc::new(set("cluster-2", &["web"], "10.0.0.2")),
        )
        .await
        .unwrap();
    let young = service_entries(
        "cluster-2",
        serde_json::json!([
            {"metadata": {"name": "young", "namespace": "istio-system", "creationTimestamp": "2024-06-01T00:00:00Z"},
             "spec": {"hosts": ["young.example.com"], "resolution": "DNS"},
             "status": {"addresses": [{"value": "240.240.9.9", "host": "young.example.com"}]}},
        ]),
    );
    agent.publish_service_entries(&two, young).await.unwrap();
    let ready = |s: &FleetSnapshot| {
        let hv = |h: &str| {
            s.host_vips
                .get(h)
                .is_some_and(|v| v.v4.is_some() && v.v6.is_some())
        };
        hv("alloc.example.com")
            && hv("young.example.com")
            && s.vips_v6.len() == 1
            && s.clusters
                .get(&id("cluster-2"))
                .is_some_and(|v| v.service_entries.len() == 1)
    };
    let s1 = until(&*server1, "entries and VIPs on server 1", ready).await;
    let s2 = until(&*server2, "entries and VIPs on server 2", ready).await;
    assert_eq!(s1.host_vips, s2.host_vips, "two servers agree");
    assert_eq!((&s1.vips, &s1.vips_v6), (&s2.vips, &s2.vips_v6));
    assert_eq!(s1.clusters[&one].service_entries, Arc::new(entries.clone()));
    let plan = fleetdns_core::mesh::plan(&s1);
    let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
    assert_eq!(
        plan.hosts["reviews.default.cluster-2"].ips,
        [ip("240.0.0.2")]
    );
    assert_eq!(
        plan.hosts["old.example.com"].ips,
        [ip("240.240.9.9")],
        "oldest keeps it"
    );
    let young_ips = &plan.hosts["young.example.com"].ips;
    assert!(
        !young_ips.contains(&ip("240.240.9.9")),
        "the younger moves to a VIP"
    );
    assert_eq!(young_ips.len(), 2, "both families");
    assert!(
        !s1.host_vips.contains_key("reviews.default.cluster-2"),
        "spec address: no VIP"
    );
    // Restart: every process goes, new ones come; the writer re-publishes the same sets.
    for c in [cancel_agent, cancel1, cancel2] {
        c.cancel();
    }
    drop((agent, server1, server2));
    let (agent, cancel_agent) = started(&config).await;
    let (server3, cancel3) = started(&config).await;
    agent
        .publish(
            &one,
            std::sync::Arc::new(set("cluster-1", &["web"], "10.0.0.1")),
        )
        .await
        .unwrap();
    agent.publish_service_entries(&one, entries).await.unwrap();
    let s3 = until(&*server3, "after the restart", ready).await;
    assert_eq!(s3.host_vips, s1.host_vips, "stable across a restart");
    assert_eq!((&s3.vips, &s3.vips_v6), (&s1.vips, &s1.vips_v6));
    cancel_agent.cancel();
    cancel3.cancel();
}

/// SPEC §4 with both families: a service's IPv6 VIP is allocated beside its IPv4 one, unique,
/// and released with it after the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_service_vips_come_and_go_with_the_ipv4_ones() {
    let etcd = TestEtcd::start();
    let mut config = vip_config(&etcd, "/vip6");
    config.vips = Some(("240.240.0.0/16".parse().unwrap(), Duration::from_secs(1)));
    let (r, cancel) = started(&config).await;
    let east = id("east");
    r.publish(
        &east,
        std::sync::Arc::new(set("east", &["web", "db"], "10.0.0.1")),
    )
    .await
    .unwrap();
    let s = until(&*r, "two VIPs per family", |s| {
        s.vips.len() == 2 && s.vips_v6.len() == 2
    })
    .await;
    let v6: BTreeSet<_> = s.vips_v6.values().collect();
    assert_eq!(v6.len(), 2, "unique");
    assert!(v6.iter().all(|ip| ip.segments()[..3] == [0x2001, 2, 0]));
    r.withdraw(&east).await.unwrap();
    until(&*r, "both families released", |s| {
        s.vips.is_empty() && s.vips_v6.is_empty()
    })
    .await;
    cancel.cancel();
}

/// IST-14: a ServiceEntry host's VIPs outlive the entry by the grace period only, then both
/// families are released (record and address claim), by a reader's sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_vips_are_released_after_the_grace_period() {
    let etcd = TestEtcd::start();
    let mut config = vip_config(&etcd, "/hostvip");
    config.vips = Some(("240.240.0.0/16".parse().unwrap(), Duration::from_secs(1)));
    let (r, cancel) = started(&config).await;
    let east = id("east");
    r.publish(&east, std::sync::Arc::new(ExportSet::new()))
        .await
        .unwrap();
    let entries = service_entries(
        "east",
        serde_json::json!([{"metadata": {"name": "api", "namespace": "ns"},
                            "spec": {"hosts": ["api.example.com"], "resolution": "DNS"}}]),
    );
    r.publish_service_entries(&east, entries).await.unwrap();
    until(&*r, "host VIPs", |s| {
        s.host_vips
            .get("api.example.com")
            .is_some_and(|v| v.v4.is_some() && v.v6.is_some())
    })
    .await;
    r.publish_service_entries(&east, fleetdns_core::ServiceEntrySet::new())
        .await
        .unwrap();
    until(&*r, "host VIPs released", |s| s.host_vips.is_empty()).await;
    let claims = r
        .client()
        .kv_client()
        .get(
            "/hostvip/vip-ips/",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(claims.count(), 0, "the address claims go with the records");
    cancel.cancel();
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An etcd with TLS (client certificates required, the server's verified against the test
/// CA) and password auth with simple tokens that expire after 2 s unused. A writer idle for
/// longer than that publishes and heartbeats again (its token refused, it authenticates again
/// and retries), and a reader whose etcd restarted (forgetting every token) loads a fresh
/// snapshot. Before the renewal both failed for good with "etcdserver: invalid auth token".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_auth_tokens_are_renewed_over_tls() {
    let mut etcd = TestEtcd::builder().tls().auth_token_ttl(2).start();
    etcd.enable_auth("fleetdns", "secret", "/secure/").await;
    // A 6 s lease: heartbeats reach etcd every 2 s at most (a third of it).
    let mut config = etcd_config(&etcd, "/secure", 6);
    config.tls = Some(etcd.tls().unwrap().client());
    config.user = Some(("fleetdns".into(), "secret".into()));
    let writer = EtcdRegistry::connect(&config).await.unwrap();
    let (reader, cancel_r) = started(&config).await;
    writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["web"], "10.0.0.1")),
        )
        .await
        .unwrap();
    until(&*reader, "east over TLS with auth", |s| {
        names(s, "east").is_some()
    })
    .await;

    // Unused for longer than the TTL, the writer's token is forgotten.
    tokio::time::sleep(Duration::from_secs(4)).await;
    writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["web", "api"], "10.0.0.1")),
        )
        .await
        .expect("a publish after the token expired");
    writer.heartbeat(&id("east")).await.expect("a heartbeat");
    let renewals = writer.status().auth_renewals.load(Ordering::Relaxed);
    assert!(renewals >= 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    writer
        .heartbeat(&id("east"))
        .await
        .expect("a heartbeat after the token expired");
    assert!(writer.status().auth_renewals.load(Ordering::Relaxed) > renewals);
    until(&*reader, "the publish after the token expired", |s| {
        names(s, "east") == Some(vec!["api".into(), "web".into()])
    })
    .await;

    // A restarted etcd knows no token: the reader's fresh snapshot needs a new one.
    let status = reader.status();
    let loads = status.loads.load(Ordering::Relaxed);
    etcd.restart();
    wait_for("the reader to load again", WAIT, || {
        status.loads.load(Ordering::Relaxed) > loads && !status.stale.load(Ordering::Relaxed)
    })
    .await;
    assert!(status.auth_renewals.load(Ordering::Relaxed) >= 1);
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Err(e) = writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["api"], "10.0.0.1")),
        )
        .await
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no publish after the restart: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    until(&*reader, "the publish after the restart", |s| {
        names(s, "east") == Some(vec!["api".into()])
    })
    .await;
    cancel_r.cancel();
}

/// A client that trusts a CA other than the one that signed etcd's certificate is refused
/// with an error that says so, rather than hanging or a bare "transport error".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_a_clear_error() {
    let etcd = TestEtcd::builder().tls().start();
    let mut config = etcd_config(&etcd, "/tls", 30);
    config.tls = Some(etcd.tls().unwrap().wrong_ca());
    let registry = EtcdRegistry::connect(&config).await.unwrap();
    let e = tokio::time::timeout(
        WAIT,
        registry.publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["web"], "10.0.0.1")),
        ),
    )
    .await
    .expect("refused within the bound")
    .expect_err("the server's certificate is not trusted");
    let message = e.to_string();
    assert!(
        message.contains("invalid peer certificate: UnknownIssuer"),
        "{message}"
    );
}

/// A reader whose only etcd member loses its quorum (the other two of three stop) is told
/// so: the watch requires a leader, the member cancels it ("no leader"), and the reader turns
/// stale instead of following a silent watch while it could miss changes. When the quorum is
/// back it loads again and follows. Before the watch required a leader, `stale` stayed 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_on_a_member_without_quorum_turns_stale() {
    let mut members = TestEtcd::cluster(3);
    let config = etcd_config(&members[0], "/quorum", 30);
    let writer = Arc::new(EtcdRegistry::connect(&config).await.unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Err(e) = writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["web"], "10.0.0.1")),
        )
        .await
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster never took a write: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (reader, cancel) = started(&config).await;
    until(&*reader, "east", |s| names(s, "east").is_some()).await;
    let status = reader.status();
    wait_for("a fresh reader", WAIT, || {
        !status.stale.load(Ordering::Relaxed)
    })
    .await;
    let errors = status.watch_errors.load(Ordering::Relaxed);

    members[1].stop();
    members[2].stop();
    let lost = tokio::time::Instant::now();
    wait_for("the reader to notice", Duration::from_secs(15), || {
        status.stale.load(Ordering::Relaxed)
    })
    .await;
    assert!(status.watch_errors.load(Ordering::Relaxed) > errors);
    assert!(
        lost.elapsed() < Duration::from_secs(15),
        "noticed {:?} after the quorum was lost",
        lost.elapsed()
    );
    let s = reader.subscribe().borrow().clone().unwrap();
    assert_eq!(
        names(&s, "east").unwrap(),
        ["web"],
        "the last snapshot stays"
    );

    // One member back: a quorum of two; the reader loads again and follows.
    let loads = status.loads.load(Ordering::Relaxed);
    members[1].restart();
    wait_for("the reader to load again", WAIT, || {
        status.loads.load(Ordering::Relaxed) > loads && !status.stale.load(Ordering::Relaxed)
    })
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Err(e) = writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["web", "api"], "10.0.0.1")),
        )
        .await
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no write with the quorum back: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    until(&*reader, "the write after the quorum came back", |s| {
        names(s, "east") == Some(vec!["api".into(), "web".into()])
    })
    .await;
    cancel.cancel();
}

/// An idle reader keeps its watch: etcd closes a connection pinged more often than its
/// `--grpc-keepalive-min-time` (5 s) with GOAWAY "too_many_pings", so a client keep-alive
/// below that cut the idle watch every few seconds and cost a fresh snapshot each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_reader_keeps_its_watch() {
    let etcd = TestEtcd::start();
    let (writer, cancel_w) = etcd_registry(&etcd, "/idle", 30).await;
    let (reader, cancel_r) = etcd_registry(&etcd, "/idle", 30).await;
    writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["web"], "10.0.0.1")),
        )
        .await
        .unwrap();
    until(&*reader, "east", |s| names(s, "east").is_some()).await;
    let status = reader.status();
    let loads = status.loads.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(status.watch_errors.load(Ordering::Relaxed), 0);
    assert_eq!(
        status.loads.load(Ordering::Relaxed),
        loads,
        "no fresh snapshot"
    );
    assert!(!status.stale.load(Ordering::Relaxed));
    cancel_w.cancel();
    cancel_r.cancel();
}

/// A frozen etcd (SIGSTOP: its sockets stay open, nothing answers) does not leave the reader
/// following a silent watch: the client's keep-alive pings go unanswered, the connection is
/// given up and the reader turns stale within 10 s + 5 s; once etcd runs again it loads a
/// fresh snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_on_a_frozen_member_turns_stale() {
    let etcd = TestEtcd::start();
    let (reader, cancel) = etcd_registry(&etcd, "/frozen", 30).await;
    let writer = EtcdRegistry::connect(&etcd_config(&etcd, "/frozen", 30))
        .await
        .unwrap();
    writer
        .publish(
            &id("east"),
            std::sync::Arc::new(set("east", &["web"], "10.0.0.1")),
        )
        .await
        .unwrap();
    until(&*reader, "east", |s| names(s, "east").is_some()).await;
    let status = reader.status();
    let loads = status.loads.load(Ordering::Relaxed);
    etcd.pause();
    wait_for("the reader to notice", Duration::from_secs(20), || {
        status.stale.load(Ordering::Relaxed)
    })
    .await;
    etcd.resume();
    wait_for("the reader to load again", WAIT, || {
        status.loads.load(Ordering::Relaxed) > loads && !status.stale.load(Ordering::Relaxed)
    })
    .await;
    let s = reader.subscribe().borrow().clone().unwrap();
    assert_eq!(names(&s, "east").unwrap(), ["web"]);
    cancel.cancel();
}

/// A cluster published again and again, with no heartbeat in between (a files source whose
/// folder changes on every poll heartbeats only unchanged clusters), keeps its lease: a
/// publish marks the cluster alive. Before, the lease expired every TTL, the cluster left
/// every answer and was published again on a new lease (found by bench/soak.sh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_published_on_every_poll_keeps_its_lease() {
    let etcd = TestEtcd::start();
    let (writer, cancel_w) = etcd_registry(&etcd, "/busy", 2).await;
    let (reader, cancel_r) = etcd_registry(&etcd, "/busy", 2).await;
    let east = id("east");
    writer
        .publish(
            &east,
            std::sync::Arc::new(set("east", &["web-0"], "10.0.0.1")),
        )
        .await
        .unwrap();
    until(&*reader, "east", |s| names(s, "east").is_some()).await;
    let client = reader.client();
    let lease = || {
        let mut client = client.clone();
        async move {
            let resp = client.get("/busy/clusters/east", None).await.unwrap();
            resp.kvs().first().map(etcd_client::KeyValue::lease)
        }
    };
    let first = lease().await.expect("the cluster key has a lease");
    // 4 TTLs of publishes every 250 ms, each a changed set.
    for i in 1..=32 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        writer
            .publish(
                &east,
                std::sync::Arc::new(set("east", &[&format!("web-{i}")], "10.0.0.1")),
            )
            .await
            .unwrap();
        assert_eq!(
            lease().await,
            Some(first),
            "publish {i}: the lease was replaced"
        );
    }
    assert_eq!(
        writer.status().generations.load(Ordering::Relaxed),
        1,
        "only the first publish writes a whole generation; the others write changes"
    );
    cancel_w.cancel();
    cancel_r.cancel();
}

/// The committed fuzz corpora (`fuzz/corpus/<target>/`, fuzz/README.md) as a regression suite:
/// every file through the same harness body the fuzz target runs. A file that panics is named.
mod fuzz_corpus {
    use fleetdns_core::fuzzing::run_corpus as run;

    #[test]
    fn etcd_value() {
        run("etcd_value", fleetdns_etcd::fuzzing::registry_value);
    }
}
