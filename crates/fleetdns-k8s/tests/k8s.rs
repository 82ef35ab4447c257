//! Watch plumbing and write-back against the fake API server (`fleetdns_k8s_fake`): list +
//! watch with resourceVersion, 410 Gone, dropped connections, bookmarks, server-side apply.
//! Waits are bounded (`eventually`); nothing here measures speed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetdns_core::{ClusterId, FleetSnapshot, MemoryRegistry, Registry, ServiceKey};
use fleetdns_k8s::{ClusterSource, SourceOptions, SourceStatus};
use fleetdns_k8s_fake::FakeApiServer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const WAIT: Duration = Duration::from_secs(20);

async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() <= deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn id(s: &str) -> ClusterId {
    ClusterId::new(s).unwrap()
}

fn client(server: &FakeApiServer) -> kube::Client {
    kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap()
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn service(ns: &str, name: &str, ip: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                 "ports": [{"name": "http", "protocol": "TCP", "port": port}]}
    })
}

fn slice(ns: &str, svc: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-abcde"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc,
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]
    })
}

fn export(version: &str, ns: &str, name: &str, created: &str) -> Value {
    json!({
        "apiVersion": format!("multicluster.x-k8s.io/{version}"), "kind": "ServiceExport",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created}
    })
}

/// A cluster with `default` and one exported ClusterIP service `web`.
async fn cluster(version: &str, ip: &str, port: u16, created: &str) -> FakeApiServer {
    let server = FakeApiServer::start().await.unwrap();
    server.serve_group("multicluster.x-k8s.io", &[version]);
    server.put(namespace("default"));
    server.put(service("default", "web", ip, port));
    server.put(slice("default", "web", "10.1.0.1"));
    server.put(export(version, "default", "web", created));
    server
}

struct Running {
    registry: Arc<MemoryRegistry>,
    statuses: Vec<Arc<SourceStatus>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Running {
    fn start(clusters: &[(&str, &FakeApiServer)], write_back: bool) -> Self {
        let registry = Arc::new(MemoryRegistry::new(Duration::from_secs(15)));
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut statuses = Vec::new();
        for (name, server) in clusters {
            let options = SourceOptions {
                write_back,
                heartbeat: Duration::from_millis(200),
                settle: Duration::from_millis(20),
                ..SourceOptions::default()
            };
            let source = ClusterSource::new(client(server), id(name), options);
            statuses.push(source.status());
            let reg: Arc<dyn Registry> = registry.clone();
            tasks.spawn(source.run(reg, cancel.clone()));
        }
        Self {
            registry,
            statuses,
            cancel,
            tasks,
        }
    }

    fn snapshot(&self) -> Arc<FleetSnapshot> {
        self.registry
            .subscribe()
            .borrow()
            .clone()
            .unwrap_or_default()
    }

    fn exports_of(&self, cluster: &str) -> Option<Vec<String>> {
        let snapshot = self.snapshot();
        let view = snapshot.clusters.get(&id(cluster))?;
        Some(view.exports.keys().map(ToString::to_string).collect())
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.tasks.close();
        tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .expect("sources stop on cancel");
    }
}

fn condition(object: &Value, ty: &str) -> Option<(String, String, String)> {
    let c = object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
        c["message"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn writes(server: &FakeApiServer) -> Vec<(String, String)> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.method, r.path))
        .collect()
}

/// Two clusters (one serving v1alpha1, one v1beta1) become one
/// clusterset; each ServiceExport gets conditions (MCS-2, a PortConflict naming the winner,
/// MCS-20/21) and each cluster gets the ServiceImport and one slice per source cluster (MCS-9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_become_one_clusterset_with_status_and_imports() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    let b = cluster("v1beta1", "10.96.0.2", 81, "2026-02-01T00:00:00Z").await;
    let run = Running::start(&[("cluster-a", &a), ("cluster-b", &b)], true);
    eventually("both clusters in the registry", || {
        (run.exports_of("cluster-a")? == ["default/web"]
            && run.exports_of("cluster-b")? == ["default/web"])
        .then_some(())
    })
    .await;
    let snapshot = run.snapshot();
    let export =
        &snapshot.clusters[&id("cluster-b")].exports[&ServiceKey::new("default", "web").unwrap()];
    assert_eq!(
        export.cluster_ips,
        vec!["10.96.0.2".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(export.endpoints.len(), 1);

    for (server, version) in [(&a, "v1alpha1"), (&b, "v1beta1")] {
        let exported = eventually("ServiceExport conditions", || {
            let obj = server.get("ServiceExport", Some("default"), "web")?;
            (condition(&obj, "Conflict")?.0 == "True").then_some(obj)
        })
        .await;
        assert_eq!(
            exported["apiVersion"],
            format!("multicluster.x-k8s.io/{version}")
        );
        let (status, reason, message) = condition(&exported, "Conflict").unwrap();
        assert_eq!((status.as_str(), reason.as_str()), ("True", "PortConflict"));
        assert!(
            message.contains("cluster-a (the oldest export)"),
            "{message}"
        );
        assert_eq!(condition(&exported, "Valid").unwrap().1, "Valid");
        assert_eq!(condition(&exported, "Ready").unwrap().1, "Exported");

        let import = eventually("ServiceImport with both clusters", || {
            let obj = server.get("ServiceImport", Some("default"), "web")?;
            (obj.pointer("/status/clusters")?.as_array()?.len() == 2).then_some(obj)
        })
        .await;
        assert_eq!(import["spec"]["type"], "ClusterSetIP");
        // MCS-21: merged by name first; both name theirs `http`, so the oldest (cluster-a) wins.
        assert_eq!(
            import["spec"]["ports"],
            json!([{"name": "http", "protocol": "TCP", "port": 80}])
        );
        assert_eq!(
            import["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "fleetdns"
        );
        for (source, ip) in [("cluster-a", "10.96.0.1"), ("cluster-b", "10.96.0.2")] {
            let name = fleetdns_k8s::imports::slice_name("web", &id(source), false, 0);
            let s = eventually("imported slice", || {
                server.get("EndpointSlice", Some("default"), &name)
            })
            .await;
            assert_eq!(
                s["metadata"]["labels"]["multicluster.kubernetes.io/source-cluster"],
                source
            );
            assert_eq!(
                s["metadata"]["labels"]["multicluster.kubernetes.io/service-name"],
                "web"
            );
            assert_eq!(
                s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
                "fleetdns.io"
            );
            assert_eq!(s["endpoints"][0]["addresses"][0], ip);
        }
        // Server-side apply with our field manager, nothing else.
        for r in server.requests().iter().filter(|r| r.method == "PATCH") {
            assert_eq!(
                r.content_type.as_deref(),
                Some("application/apply-patch+yaml"),
                "{}",
                r.path
            );
            assert!(
                r.query
                    .contains(&("fieldManager".into(), "fleetdns".into())),
                "{:?}",
                r.query
            );
        }
    }
    // Our own slices are never read back as endpoints of a local service.
    let snapshot = run.snapshot();
    let export =
        &snapshot.clusters[&id("cluster-a")].exports[&ServiceKey::new("default", "web").unwrap()];
    assert_eq!(export.endpoints.len(), 1);

    // Settled: nothing more is written (written only when they change), not even once the
    // writer's 5 s trust in its own writes has passed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.clear_requests();
    a.put(namespace("unrelated")); // wakes the watcher and the writer
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(writes(&a), Vec::<(String, String)>::new());
    run.stop().await;
}

/// MCS-26 and a service that leaves: no import where the namespace does not exist; when one
/// exporter leaves its slices go from every cluster; when the last leaves the ServiceImport
/// goes (MCS-5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_follow_namespaces_and_leaving_services() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    let b = cluster("v1alpha1", "10.96.0.2", 80, "2026-02-01T00:00:00Z").await;
    a.put(namespace("payments"));
    a.put(service("payments", "ledger", "10.96.5.5", 443));
    a.put(export(
        "v1alpha1",
        "payments",
        "ledger",
        "2026-01-01T00:00:00Z",
    ));
    let run = Running::start(&[("cluster-a", &a), ("cluster-b", &b)], true);
    eventually("ledger imported in cluster-a", || {
        a.get("ServiceImport", Some("payments"), "ledger")
    })
    .await;
    eventually("web imported in cluster-b", || {
        b.get("ServiceImport", Some("default"), "web")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        b.requests()
            .iter()
            .all(|r| !r.path.contains("/namespaces/payments/")),
        "cluster-b has no payments namespace and must get no write there: {:?}",
        writes(&b)
    );
    assert!(b.get("ServiceImport", Some("payments"), "ledger").is_none());

    // cluster-b stops exporting web: its slices leave both clusters, the import stays.
    let slice_b = fleetdns_k8s::imports::slice_name("web", &id("cluster-b"), false, 0);
    a.clear_requests();
    assert!(b.delete(
        "multicluster.x-k8s.io/v1alpha1",
        "ServiceExport",
        Some("default"),
        "web"
    ));
    for server in [&a, &b] {
        eventually("cluster-b's slice deleted", || {
            server
                .get("EndpointSlice", Some("default"), &slice_b)
                .is_none()
                .then_some(())
        })
        .await;
        eventually("status.clusters without cluster-b", || {
            let obj = server.get("ServiceImport", Some("default"), "web")?;
            (obj.pointer("/status/clusters")? == &json!([{"cluster": "cluster-a"}])).then_some(())
        })
        .await;
    }
    assert!(
        writes(&a).contains(&(
            "DELETE".into(),
            format!("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/{slice_b}")
        )),
        "{:?}",
        writes(&a)
    );
    // The real slice of the local service is never touched.
    assert!(
        a.get("EndpointSlice", Some("default"), "web-abcde")
            .is_some()
    );

    // The last exporter leaves: the ServiceImport goes everywhere.
    assert!(a.delete(
        "multicluster.x-k8s.io/v1alpha1",
        "ServiceExport",
        Some("default"),
        "web"
    ));
    for server in [&a, &b] {
        eventually("ServiceImport deleted", || {
            server
                .get("ServiceImport", Some("default"), "web")
                .is_none()
                .then_some(())
        })
        .await;
    }
    assert!(writes(&b).contains(&(
        "DELETE".into(),
        "/apis/multicluster.x-k8s.io/v1alpha1/namespaces/default/serviceimports/web".into()
    )));
    run.stop().await;
}

/// A dropped connection and a 410 Gone: the watcher re-lists, and a delete that happened
/// while it was away is noticed because a re-list replaces the cluster's set. While the API
/// server is unreachable the last known exports stay in the registry and `connected` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_after_410_catches_a_delete_missed_while_disconnected() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    a.put(service("default", "api", "10.96.0.9", 80));
    a.put(export("v1alpha1", "default", "api", "2026-01-01T00:00:00Z"));
    let run = Running::start(&[("cluster-a", &a)], false);
    let status = run.statuses[0].clone();
    eventually("synced", || {
        (run.exports_of("cluster-a")?.len() == 2).then_some(())
    })
    .await;
    assert!(status.connected.load(Ordering::Relaxed));

    a.set_offline(true);
    eventually("disconnected", || {
        (!status.connected.load(Ordering::Relaxed)).then_some(())
    })
    .await;
    // Deleted while the watcher cannot see it, and the history forgotten: only a re-list can tell.
    assert!(a.delete(
        "multicluster.x-k8s.io/v1alpha1",
        "ServiceExport",
        Some("default"),
        "api"
    ));
    a.compact();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let snapshot = run.snapshot();
    let view = &snapshot.clusters[&id("cluster-a")];
    assert!(
        view.alive,
        "an unreachable API server does not kill the cluster"
    );
    assert_eq!(
        view.exports.len(),
        2,
        "last known exports stay served while unreachable"
    );

    a.set_offline(false);
    eventually("the missed delete noticed", || {
        (run.exports_of("cluster-a")? == ["default/web"]).then_some(())
    })
    .await;
    eventually("connected again", || {
        status.connected.load(Ordering::Relaxed).then_some(())
    })
    .await;
    assert!(status.watch_errors.load(Ordering::Relaxed) > 0);
    let relisted = a
        .requests()
        .iter()
        .filter(|r| {
            r.path.ends_with("/serviceexports") && !r.query.iter().any(|(k, _)| k == "watch")
        })
        .count();
    assert!(relisted >= 2, "the ServiceExports were listed again");
    run.stop().await;
}

/// Bookmarks and plain dropped watches lose nothing; changes after a reconnect arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_and_bookmarks_keep_following_changes() {
    let a = cluster("v1beta1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    let run = Running::start(&[("cluster-a", &a)], false);
    eventually("synced", || run.exports_of("cluster-a")).await;
    a.bookmark();
    a.drop_watches();
    a.put(service("default", "late", "10.96.0.7", 80));
    a.put(export("v1beta1", "default", "late", "2026-03-01T00:00:00Z"));
    eventually("change after a dropped watch", || {
        (run.exports_of("cluster-a")?.len() == 2).then_some(())
    })
    .await;
    a.bookmark();
    a.put(service("default", "web", "10.96.0.55", 80));
    eventually("ClusterIP change followed", || {
        let snapshot = run.snapshot();
        let e = snapshot
            .clusters
            .get(&id("cluster-a"))?
            .exports
            .get(&ServiceKey::new("default", "web").unwrap())?
            .clone();
        (e.cluster_ips == vec!["10.96.0.55".parse::<std::net::IpAddr>().unwrap()]).then_some(())
    })
    .await;
    run.stop().await;
}

/// Bad objects are skipped and counted; ExternalName and a missing Service get Valid=False
/// with the mcs-api reasons (MCS-2, MCS-4, MCS-5); with write_back off nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_exports_get_valid_false_and_bad_objects_are_skipped() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    a.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "ext", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}
    }));
    a.put(export("v1alpha1", "default", "ext", "2026-01-01T00:00:00Z"));
    a.put(export(
        "v1alpha1",
        "default",
        "ghost",
        "2026-01-01T00:00:00Z",
    ));
    a.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "broken", "namespace": "default"},
        "spec": {"ports": "not a list"}
    }));
    let run = Running::start(&[("cluster-a", &a)], true);
    let status = run.statuses[0].clone();
    eventually("synced", || {
        (run.exports_of("cluster-a")? == ["default/web"]).then_some(())
    })
    .await;
    let ext = eventually("ExternalName refused", || {
        let obj = a.get("ServiceExport", Some("default"), "ext")?;
        condition(&obj, "Valid")
    })
    .await;
    assert_eq!(
        (ext.0.as_str(), ext.1.as_str()),
        ("False", "InvalidServiceType")
    );
    let ghost = eventually("missing Service refused", || {
        let obj = a.get("ServiceExport", Some("default"), "ghost")?;
        condition(&obj, "Valid")
    })
    .await;
    assert_eq!((ghost.0.as_str(), ghost.1.as_str()), ("False", "NoService"));
    assert!(status.bad_objects.load(Ordering::Relaxed) >= 1);
    run.stop().await;

    let b = cluster("v1alpha1", "10.96.0.2", 80, "2026-01-01T00:00:00Z").await;
    let run = Running::start(&[("cluster-b", &b)], false);
    eventually("synced", || run.exports_of("cluster-b")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        writes(&b),
        Vec::<(String, String)>::new(),
        "write_back = false writes nothing"
    );
    run.stop().await;
}

/// Failed writes are retried: a 500 on the first ServiceImport apply still ends with the import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_are_retried() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    a.fail_next("PATCH", "/serviceimports/web", 500);
    let run = Running::start(&[("cluster-a", &a)], true);
    eventually("import written after a failure", || {
        a.get("ServiceImport", Some("default"), "web")
    })
    .await;
    let status = run.statuses[0].clone();
    assert!(status.write_errors.load(Ordering::Relaxed) >= 1);
    run.stop().await;
}

/// A source publishes only a complete set: while EndpointSlices cannot be listed, Services
/// and ServiceExports alone are not published (an agent restart would otherwise withdraw
/// endpoints fleet-wide); once the slices are listed the cluster appears with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_published_until_every_kind_is_listed() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    for _ in 0..3 {
        a.fail_next("GET", "/endpointslices", 500);
    }
    let run = Running::start(&[("cluster-a", &a)], false);
    let listed = |path: &str| {
        a.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.contains(path))
    };
    eventually("services, exports and a failed slice list", || {
        (listed("/services") && listed("/serviceexports") && listed("/endpointslices"))
            .then_some(())
    })
    .await;
    // The slice list is retried with backoff (0.8 s, then doubling): inside that window the
    // other kinds have long been read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        run.exports_of("cluster-a"),
        None,
        "published without its EndpointSlices"
    );
    assert!(!run.statuses[0].synced.load(Ordering::Relaxed));
    eventually("published once the slices are listed", || {
        run.exports_of("cluster-a")
    })
    .await;
    let snapshot = run.snapshot();
    let web = ServiceKey::new("default", "web").unwrap();
    assert!(snapshot.clusters[&id("cluster-a")].exports[&web].has_ready_endpoint());
    run.stop().await;
}

/// MCS-6: the cluster id comes from the ClusterProperty when not configured; a bad or
/// missing one is refused with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_id_from_the_cluster_property() {
    let a = FakeApiServer::start().await.unwrap();
    a.serve_group("about.k8s.io", &["v1alpha1"]);
    let c = client(&a);
    let err = fleetdns_k8s::cluster_id(&c, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no cluster_id") && err.contains("cluster.clusterset.k8s.io"),
        "{err}"
    );
    assert_eq!(
        fleetdns_k8s::cluster_id(&c, Some(&id("given")))
            .await
            .unwrap()
            .as_str(),
        "given"
    );
    let property = |value: &str| {
        json!({"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
               "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": value}})
    };
    a.put(property("Not_A_Label"));
    let err = fleetdns_k8s::cluster_id(&c, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Not_A_Label") && err.contains("set cluster_id"),
        "{err}"
    );
    a.put(property("east-1"));
    assert_eq!(
        fleetdns_k8s::cluster_id(&c, None).await.unwrap().as_str(),
        "east-1"
    );
}

/// A write-back kind the credentials may not list (403 on Namespaces) does not stop the
/// cluster being published, nor count as the API server being unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_back_list_does_not_block_publishing() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    for _ in 0..3 {
        a.fail_next("GET", "/api/v1/namespaces", 403);
    }
    let run = Running::start(&[("cluster-a", &a)], true);
    let status = run.statuses[0].clone();
    eventually("published", || run.exports_of("cluster-a")).await;
    let namespace_lists = a
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces" && r.param("watch").is_none())
        .count();
    assert!(
        namespace_lists <= 3,
        "published only after Namespaces could be listed ({namespace_lists} lists)"
    );
    assert!(status.connected.load(Ordering::Relaxed));
    // Once the list is allowed (the queued refusals are used up) the writer catches up.
    eventually("import written", || {
        a.get("ServiceImport", Some("default"), "web")
    })
    .await;
    assert!(status.watch_errors.load(Ordering::Relaxed) >= 1);
    run.stop().await;
}

/// A ServiceImport another MCS implementation owns (no fleetdns label) is never written or
/// deleted, and no slices are added under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_implementations_service_import_is_left_alone() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    let theirs = json!({
        "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
        "metadata": {"name": "web", "namespace": "default",
                     "labels": {"app.kubernetes.io/managed-by": "lighthouse-agent"}},
        "spec": {"type": "ClusterSetIP", "ports": [{"port": 80, "protocol": "TCP"}]}
    });
    let before = a.put(theirs);
    let run = Running::start(&[("cluster-a", &a)], true);
    eventually("status written (the writer ran)", || {
        condition(&a.get("ServiceExport", Some("default"), "web")?, "Ready")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let touched: Vec<(String, String)> = writes(&a)
        .into_iter()
        .filter(|(_, p)| p.contains("/serviceimports/") || p.contains("/endpointslices/"))
        .collect();
    assert_eq!(touched, Vec::<(String, String)>::new());
    assert_eq!(a.get("ServiceImport", Some("default"), "web"), Some(before));
    run.stop().await;
}

// ---- API server outages -------------------------------------------------------------------

/// After an outage long enough to grow any backoff, and a restart that forgot the watch
/// history (410 Gone for every resumed watch), a change made while the server was down shows
/// as soon as it answers again: the reachability probe wakes the watchers and a 410 is
/// re-listed at once. The 5 s bound is the target of the requirement, not a measurement:
/// with kube-runtime's default backoff the first retry after this outage comes ~4 s after
/// the server is back and the 410 then costs another ~13 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_shows_within_seconds_of_the_api_server_answering_after_a_long_outage() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    a.put(service("default", "api", "10.96.0.9", 80));
    a.put(export("v1alpha1", "default", "api", "2026-01-01T00:00:00Z"));
    let run = Running::start(&[("cluster-a", &a)], false);
    let status = run.statuses[0].clone();
    eventually("synced", || {
        (run.exports_of("cluster-a")?.len() == 2).then_some(())
    })
    .await;

    a.set_offline(true);
    eventually("disconnected", || {
        (!status.connected.load(Ordering::Relaxed)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(a.delete(
        "multicluster.x-k8s.io/v1alpha1",
        "ServiceExport",
        Some("default"),
        "api"
    ));
    a.restart();
    a.set_offline(false);
    let back = tokio::time::Instant::now();
    eventually("the change made during the outage", || {
        (run.exports_of("cluster-a")? == ["default/web"]).then_some(())
    })
    .await;
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "visible {took:?} after the API server answered again"
    );
    assert_eq!(status.outages.load(Ordering::Relaxed), 1);
    assert!(status.connected.load(Ordering::Relaxed));
    run.stop().await;
}

/// A write-back that failed during an outage is retried as soon as the API server answers
/// again, not when the writer's backoff (grown to 16 s over this outage: 1, 2, 4, 8 s) runs
/// out: the reachability probe wakes the writer as it wakes the watchers. Nothing else wakes
/// it here: cluster-a's own view and the fleet do not change once the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_back_that_failed_during_an_outage_is_retried_when_the_api_answers() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    let b = cluster("v1beta1", "10.96.0.2", 80, "2026-02-01T00:00:00Z").await;
    let run = Running::start(&[("cluster-a", &a), ("cluster-b", &b)], true);
    let status = run.statuses[0].clone();
    eventually("the web ServiceImport in cluster-a", || {
        a.get("ServiceImport", Some("default"), "web")
    })
    .await;

    a.set_offline(true);
    eventually("cluster-a disconnected", || {
        (!status.connected.load(Ordering::Relaxed)).then_some(())
    })
    .await;
    // A service of cluster-b's: cluster-a's writer must import it, and cannot.
    b.put(service("default", "api", "10.96.0.9", 80));
    b.put(export("v1beta1", "default", "api", "2026-02-01T00:00:00Z"));
    let failing = eventually("a failed write into cluster-a", || {
        let errors = status.write_errors.load(Ordering::Relaxed);
        (errors >= 1).then_some(errors)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert!(
        status.write_errors.load(Ordering::Relaxed) > failing,
        "the writer kept retrying during the outage"
    );
    assert!(a.get("ServiceImport", Some("default"), "api").is_none());

    a.set_offline(false);
    let back = tokio::time::Instant::now();
    eventually("the api ServiceImport in cluster-a", || {
        a.get("ServiceImport", Some("default"), "api")
    })
    .await;
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "written {took:?} after the API server answered again"
    );
    run.stop().await;
}

/// kube-runtime emits `Init` before it sends the list: that is no answer. A half-up server
/// that answers the resumed watches with 410 but not the re-lists is one outage: `connected`
/// turns false once (one warning, one more in `outages`) and stays false while every re-list goes
/// unanswered, instead of flipping to "reachable" at each retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_before_any_answer_is_not_reachability_and_an_outage_counts_once() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    let run = Running::start(&[("cluster-a", &a)], false);
    let status = run.statuses[0].clone();
    eventually("synced", || run.exports_of("cluster-a")).await;
    assert_eq!(status.outages.load(Ordering::Relaxed), 0);

    a.put(service("default", "late", "10.96.0.7", 80)); // the history moves past the lists
    a.set_only_watches_answered(true);
    a.restart();
    a.put(export(
        "v1alpha1",
        "default",
        "late",
        "2026-03-01T00:00:00Z",
    ));
    eventually("disconnected", || {
        (!status.connected.load(Ordering::Relaxed)).then_some(())
    })
    .await;
    // The dropped watches may count as an outage of their own, ended by the 410 answers;
    // from the first unanswered re-list on it is one outage, however many retries follow.
    let retries = |n: u64| {
        let from = status.watch_errors.load(Ordering::Relaxed);
        let status = status.clone();
        eventually("retries", move || {
            (status.watch_errors.load(Ordering::Relaxed) >= from + n).then_some(())
        })
    };
    retries(3).await;
    let outages = status.outages.load(Ordering::Relaxed);
    assert!((1..=2).contains(&outages), "{outages} outages");
    retries(5).await; // more retry rounds of the watchers
    assert!(!status.connected.load(Ordering::Relaxed));
    assert_eq!(
        status.outages.load(Ordering::Relaxed),
        outages,
        "one outage, one warning"
    );
    assert!(
        run.snapshot().clusters[&id("cluster-a")].alive,
        "its last known exports stay served"
    );

    a.set_only_watches_answered(false);
    eventually("reachable again", || {
        status.connected.load(Ordering::Relaxed).then_some(())
    })
    .await;
    eventually("re-listed", || {
        (run.exports_of("cluster-a")?.len() == 2).then_some(())
    })
    .await;
    assert_eq!(status.outages.load(Ordering::Relaxed), outages);
    run.stop().await;
}

// ---- where and what the writer writes -----------------------------------------------------

/// MCS-26: a namespace with a `deletionTimestamp` is being deleted, not a place to import
/// into: nothing is written there (the API would refuse creates with 403), while an active
/// namespace of the same cluster gets the import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_imported_into_a_terminating_namespace() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    let b = cluster("v1alpha1", "10.96.0.2", 80, "2026-02-01T00:00:00Z").await;
    a.put(namespace("payments"));
    a.put(service("payments", "ledger", "10.96.5.5", 443));
    a.put(export(
        "v1alpha1",
        "payments",
        "ledger",
        "2026-01-01T00:00:00Z",
    ));
    b.put(json!({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": "payments", "deletionTimestamp": "2026-03-01T00:00:00Z"},
                 "status": {"phase": "Terminating"}}));
    let run = Running::start(&[("cluster-a", &a), ("cluster-b", &b)], true);
    eventually("web imported in cluster-b", || {
        b.get("ServiceImport", Some("default"), "web")
    })
    .await;
    eventually("ledger imported where its namespace is active", || {
        a.get("ServiceImport", Some("payments"), "ledger")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let into_terminating: Vec<(String, String)> = writes(&b)
        .into_iter()
        .filter(|(_, p)| p.contains("/namespaces/payments/"))
        .collect();
    assert_eq!(into_terminating, Vec::<(String, String)>::new());
    assert_eq!(run.statuses[1].write_errors.load(Ordering::Relaxed), 0);
    run.stop().await;
}

/// A ServiceImport deleted once is not deleted again while the ServiceImport watch has not
/// shown the delete (a stale watch kept listing it for 45 s and drew 9 deletes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_service_import_is_deleted_once_while_its_watch_is_stale() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    let run = Running::start(&[("cluster-a", &a)], true);
    eventually("import written", || {
        a.get("ServiceImport", Some("default"), "web")
    })
    .await;
    a.set_watch_stale("ServiceImport", true);
    assert!(a.delete(
        "multicluster.x-k8s.io/v1alpha1",
        "ServiceExport",
        Some("default"),
        "web"
    ));
    eventually("import deleted", || {
        a.get("ServiceImport", Some("default"), "web")
            .is_none()
            .then_some(())
    })
    .await;
    // Keep the writer busy past its 5 s trust in its own writes: each new namespace changes
    // the view and runs a pass, which still sees the stale import.
    for i in 0..8 {
        a.put(namespace(&format!("busy-{i}")));
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    let deletes = writes(&a)
        .into_iter()
        .filter(|(m, p)| m == "DELETE" && p.ends_with("/serviceimports/web"))
        .count();
    assert_eq!(deletes, 1);
    run.stop().await;
}

/// MCS-1/MCS-2: a ServiceExport whose spec cannot be read is not skipped silently: it gets
/// `Valid=False` (reason `InvalidServiceExport`, the message says why) and `Ready=False`,
/// its service is not published, and the rest of the cluster is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_service_export_spec_gets_valid_false() {
    let a = cluster("v1beta1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    a.put(service("default", "api", "10.96.0.9", 80));
    a.put(json!({
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
        "metadata": {"name": "api", "namespace": "default"},
        "spec": {"exportedLabels": ["not", "a", "map"]}
    }));
    let run = Running::start(&[("cluster-a", &a)], true);
    let valid = eventually("Valid=False on the unreadable export", || {
        condition(&a.get("ServiceExport", Some("default"), "api")?, "Valid")
    })
    .await;
    assert_eq!(
        (valid.0.as_str(), valid.1.as_str()),
        ("False", "InvalidServiceExport")
    );
    assert!(valid.2.contains("spec.exportedLabels"), "{}", valid.2);
    let ready = condition(
        &a.get("ServiceExport", Some("default"), "api").unwrap(),
        "Ready",
    );
    assert_eq!(ready.unwrap().0, "False");
    assert_eq!(run.exports_of("cluster-a").unwrap(), ["default/web"]);
    assert!(run.statuses[0].bad_objects.load(Ordering::Relaxed) >= 1);

    // Fixed by hand: it becomes valid and is exported.
    a.put(json!({
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
        "metadata": {"name": "api", "namespace": "default"},
        "spec": {"exportedLabels": {"team": "a"}}
    }));
    eventually("exported once readable", || {
        (run.exports_of("cluster-a")? == ["default/api", "default/web"]).then_some(())
    })
    .await;
    eventually("Valid=True", || {
        let c = condition(&a.get("ServiceExport", Some("default"), "api")?, "Valid")?;
        (c.0 == "True").then_some(())
    })
    .await;
    run.stop().await;
}

/// A hand edit of a ServiceImport or EndpointSlice of ours is put back, though what fleetdns
/// wants did not change: the writer compares with what the cluster holds (MCS-3, MCS-9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_of_our_import_or_slice_is_put_back() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    let run = Running::start(&[("cluster-a", &a)], true);
    let slice_name = fleetdns_k8s::imports::slice_name("web", &id("cluster-a"), false, 0);
    let import = eventually("import written", || {
        a.get("ServiceImport", Some("default"), "web")
    })
    .await;
    let slice = eventually("slice written", || {
        a.get("EndpointSlice", Some("default"), &slice_name)
    })
    .await;
    // Past the writer's 5 s trust in its own writes: only a comparison can notice now.
    tokio::time::sleep(Duration::from_millis(5500)).await;

    let mut edited = import.clone();
    edited["spec"]["ports"][0]["port"] = json!(8080);
    edited["status"] = json!({"clusters": [{"cluster": "someone-else"}]});
    a.put(edited);
    let mut edited = slice.clone();
    edited["endpoints"][0]["addresses"] = json!(["192.0.2.66"]);
    a.put(edited);

    eventually("ServiceImport put back", || {
        let obj = a.get("ServiceImport", Some("default"), "web")?;
        (obj["spec"]["ports"][0]["port"] == 80
            && obj.pointer("/status/clusters")? == &json!([{"cluster": "cluster-a"}]))
            .then_some(())
    })
    .await;
    eventually("EndpointSlice put back", || {
        let obj = a.get("EndpointSlice", Some("default"), &slice_name)?;
        (obj["endpoints"][0]["addresses"][0] == "10.96.0.1").then_some(())
    })
    .await;
    // Put back once, then settled: no write loop against what the server holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.clear_requests();
    a.put(namespace("unrelated")); // wakes the writer
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(writes(&a), Vec::<(String, String)>::new());
    run.stop().await;
}

/// Two fleetdns deployments for different clustersets write into one cluster: each labels
/// what it writes with its clusterset (the ClusterProperty `clusterset.k8s.io`, MCS-7) and
/// collects only its own, so neither deletes the other's ServiceImports or slices. An object
/// from an older fleetdns without the label is adopted: relabelled when wanted, collected
/// when not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_keeps_to_its_own_clusterset() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    a.serve_group("about.k8s.io", &["v1alpha1"]);
    a.put(
        json!({"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
                 "metadata": {"name": "clusterset.k8s.io"}, "spec": {"value": "blue"}}),
    );
    a.put(namespace("shop"));
    let theirs = |name: &str, owner: Option<&str>| {
        let mut labels = json!({"app.kubernetes.io/managed-by": "fleetdns"});
        if let Some(owner) = owner {
            labels["fleetdns.io/clusterset"] = json!(owner);
        }
        json!({
            "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {"type": "ClusterSetIP", "ports": [{"port": 80, "protocol": "TCP"}]}
        })
    };
    let green = a.put(theirs("cart", Some("green")));
    let green_slice = a.put(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "cart-east-123456-v4", "namespace": "shop",
                     "labels": {"endpointslice.kubernetes.io/managed-by": "fleetdns.io",
                                "multicluster.kubernetes.io/service-name": "cart",
                                "fleetdns.io/clusterset": "green"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.9.0.1"], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "protocol": "TCP", "port": 80}]
    }));
    a.put(theirs("stale", None)); // an older fleetdns's, no longer exported
    let mut old_web = theirs("web", None); // an older fleetdns's, still wanted
    old_web["metadata"]["namespace"] = json!("default");
    a.put(old_web);

    let run = Running::start(&[("cluster-a", &a)], true);
    eventually("the old unlabelled import collected", || {
        a.get("ServiceImport", Some("shop"), "stale")
            .is_none()
            .then_some(())
    })
    .await;
    let web = eventually("the old wanted import adopted", || {
        let obj = a.get("ServiceImport", Some("default"), "web")?;
        (obj["metadata"]["labels"]["fleetdns.io/clusterset"] == "blue").then_some(obj)
    })
    .await;
    assert_eq!(
        web["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "fleetdns"
    );
    let slice_name = fleetdns_k8s::imports::slice_name("web", &id("cluster-a"), false, 0);
    let slice = eventually("our slice", || {
        a.get("EndpointSlice", Some("default"), &slice_name)
    })
    .await;
    assert_eq!(
        slice["metadata"]["labels"]["fleetdns.io/clusterset"],
        "blue"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.get("ServiceImport", Some("shop"), "cart"), Some(green));
    assert_eq!(
        a.get("EndpointSlice", Some("shop"), "cart-east-123456-v4"),
        Some(green_slice)
    );
    assert!(
        !writes(&a).iter().any(|(_, p)| p.contains("/cart")),
        "{:?}",
        writes(&a)
    );
    run.stop().await;
}

/// The external DNS sync's tap: the watcher carries what it reads of annotated Services
/// (annotations, externalIPs, LoadBalancer status, ExternalName) whether or not they are
/// exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tap_carries_annotated_services_exported_or_not() {
    use fleetdns_core::tap::ObjectsTap;
    let server = cluster("v1beta1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    server.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "lb", "namespace": "default",
                     "annotations": {"external-dns.alpha.kubernetes.io/hostname": "lb.fleet.example.com"}},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.9", "externalIPs": ["192.0.2.7"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}, {"hostname": "elb.example.net"}]}}
    }));
    server.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "ext", "namespace": "default",
                     "annotations": {"external-dns.kubernetes.io/hostname": "ext.fleet.example.com"}},
        "spec": {"type": "ExternalName", "externalName": "backend.example.org"}
    }));
    let tap = ObjectsTap::new(|s| !s.metadata.annotations.is_empty());
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new(Duration::from_secs(15)));
    let options = SourceOptions {
        write_back: false,
        tap: Some(tap.clone()),
        ..SourceOptions::default()
    };
    let source = ClusterSource::new(client(&server), id("east"), options);
    tap.expect(&id("east"));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(source.run(registry, cancel.clone()));
    let objects = eventually("the tap delivers", || {
        tap.is_complete()
            .then(|| tap.current().get(&id("east")).cloned())
            .flatten()
    })
    .await;
    let names: Vec<&str> = objects
        .services
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}: only the annotated ones");
    let lb = objects
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("lb"))
        .unwrap();
    assert_eq!(lb.spec.external_ips, ["192.0.2.7"]);
    assert_eq!(
        lb.status.load_balancer.ingress[0].ip.as_deref(),
        Some("203.0.113.1")
    );
    assert_eq!(
        lb.status.load_balancer.ingress[1].hostname.as_deref(),
        Some("elb.example.net")
    );
    let ext = objects
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("ext"))
        .unwrap();
    assert_eq!(
        ext.spec.external_name.as_deref(),
        Some("backend.example.org")
    );
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

fn service_entry(version: &str, name: &str, host: &str, address: Option<&str>) -> Value {
    let mut spec = json!({"hosts": [host], "location": "MESH_INTERNAL", "resolution": "DNS"});
    if let Some(a) = address {
        spec["addresses"] = json!([a]);
    }
    json!({
        "apiVersion": format!("networking.istio.io/{version}"), "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "istio-system"},
        "spec": spec
    })
}

fn entry_hosts(running: &Running, cluster: &str) -> Option<Vec<String>> {
    let snapshot = running.snapshot();
    let view = snapshot.clusters.get(&id(cluster))?;
    let mut hosts: Vec<String> = view
        .service_entries
        .values()
        .flat_map(|e| e.hosts.clone())
        .collect();
    hosts.sort();
    Some(hosts)
}

/// Istio ServiceEntries are watched at whichever version the cluster serves (v1, v1beta1,
/// v1alpha3), reach the registry, follow adds and deletes; a cluster without Istio's CRDs
/// is served without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_entries_are_watched_at_the_served_version() {
    let mut servers = Vec::new();
    for version in ["v1", "v1beta1", "v1alpha3"] {
        let server = cluster("v1beta1", "10.96.0.10", 80, "2024-01-01T00:00:00Z").await;
        server.serve_group("networking.istio.io", &[version]);
        server.put(namespace("istio-system"));
        server.put(service_entry(
            version,
            "reviews.default.cluster-2",
            "reviews.default.cluster-2",
            Some("240.0.0.2"),
        ));
        servers.push(server);
    }
    let plain = cluster("v1beta1", "10.96.0.11", 80, "2024-01-01T00:00:00Z").await;
    let running = Running::start(
        &[
            ("c-v1", &servers[0]),
            ("c-v1beta1", &servers[1]),
            ("c-v1alpha3", &servers[2]),
            ("plain", &plain),
        ],
        false,
    );
    for c in ["c-v1", "c-v1beta1", "c-v1alpha3"] {
        let hosts = eventually(c, || entry_hosts(&running, c).filter(|h| !h.is_empty())).await;
        assert_eq!(hosts, ["reviews.default.cluster-2"], "{c}");
    }
    eventually("the cluster without Istio", || {
        running
            .exports_of("plain")
            .filter(|e| e == &["default/web"])
    })
    .await;
    assert_eq!(
        entry_hosts(&running, "plain").unwrap(),
        Vec::<String>::new()
    );
    // An add and a delete reach the registry.
    servers[0].put(service_entry(
        "v1",
        "ratings.default.cluster-2",
        "ratings.default.cluster-2",
        None,
    ));
    eventually("ratings added", || {
        entry_hosts(&running, "c-v1").filter(|h| h.len() == 2)
    })
    .await;
    assert!(servers[0].delete(
        "networking.istio.io/v1",
        "ServiceEntry",
        Some("istio-system"),
        "reviews.default.cluster-2"
    ));
    let hosts = eventually("reviews deleted", || {
        entry_hosts(&running, "c-v1").filter(|h| h.len() == 1)
    })
    .await;
    assert_eq!(hosts, ["ratings.default.cluster-2"]);
    running.stop().await;
    for s in servers {
        s.stop().await;
    }
    plain.stop().await;
}

/// RBAC without `serviceentries` (every list answered 403): the cluster's exports are still
/// published, without ServiceEntries; once the API server lets the list through, they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_service_entry_watch_does_not_hold_the_cluster_back() {
    let server = cluster("v1beta1", "10.96.0.10", 80, "2024-01-01T00:00:00Z").await;
    server.serve_group("networking.istio.io", &["v1"]);
    server.put(namespace("istio-system"));
    server.put(service_entry(
        "v1",
        "reviews.default.cluster-2",
        "reviews.default.cluster-2",
        Some("240.0.0.2"),
    ));
    for _ in 0..3 {
        server.fail_next("GET", "serviceentries", 403);
    }
    let running = Running::start(&[("east", &server)], false);
    eventually("exports published despite the 403", || {
        running.exports_of("east").filter(|e| e == &["default/web"])
    })
    .await;
    // The retries back off for seconds: the exports did not wait for them.
    assert_eq!(
        entry_hosts(&running, "east").unwrap(),
        Vec::<String>::new(),
        "published before the ServiceEntries could be listed"
    );
    let hosts = eventually("ServiceEntries once allowed", || {
        entry_hosts(&running, "east").filter(|h| !h.is_empty())
    })
    .await;
    assert_eq!(hosts, ["reviews.default.cluster-2"]);
    running.stop().await;
    server.stop().await;
}

/// A watch event re-translates only the service it belongs to: every other export is
/// published as the same `Arc`; a slice relabelled to another service moves its endpoints;
/// a re-list that changes nothing keeps every export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_translates_only_its_service() {
    let a = cluster("v1alpha1", "10.96.0.1", 80, "2026-01-01T00:00:00Z").await;
    for i in 0..20 {
        let name = format!("s{i}");
        a.put(service("default", &name, &format!("10.96.1.{i}"), 80));
        a.put(export("v1alpha1", "default", &name, "2026-01-01T00:00:00Z"));
    }
    a.put(slice("default", "s3", "10.1.3.1"));
    let run = Running::start(&[("cluster-a", &a)], false);
    let exports = |run: &Running| run.snapshot().clusters[&id("cluster-a")].exports.clone();
    eventually("synced", || {
        (run.exports_of("cluster-a")?.len() == 21).then_some(())
    })
    .await;
    let before = exports(&run);
    let key = |name: &str| ServiceKey::new("default", name).unwrap();

    a.put(service("default", "s7", "10.96.9.7", 80));
    eventually("s7's new address", || {
        let now = exports(&run);
        (now[&key("s7")].cluster_ips[0].to_string() == "10.96.9.7").then_some(())
    })
    .await;
    let after = exports(&run);
    for (k, export) in after.iter().filter(|(k, _)| **k != key("s7")) {
        assert!(Arc::ptr_eq(export, &before[k]), "{k} was translated again");
    }

    // The slice of s3 now says it belongs to s4: s3 loses its endpoint, s4 gains it.
    let mut moved = slice("default", "s3", "10.1.3.1");
    moved["metadata"]["labels"]["kubernetes.io/service-name"] = json!("s4");
    a.put(moved);
    eventually("the endpoint moved from s3 to s4", || {
        let now = exports(&run);
        (now[&key("s3")].endpoints.is_empty() && now[&key("s4")].endpoints.len() == 1).then_some(())
    })
    .await;
    let moved_at = exports(&run);
    assert!(Arc::ptr_eq(&moved_at[&key("s5")], &before[&key("s5")]));

    // A re-list with nothing changed (410 after a compaction) translates nothing again.
    a.set_offline(true);
    a.compact();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.set_offline(false);
    let status = run.statuses[0].clone();
    eventually("connected again", || {
        status.connected.load(Ordering::Relaxed).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let relisted = exports(&run);
    for (k, export) in relisted.iter() {
        assert!(
            Arc::ptr_eq(export, &moved_at[k]),
            "{k} changed on a re-list"
        );
    }
    run.stop().await;
}
