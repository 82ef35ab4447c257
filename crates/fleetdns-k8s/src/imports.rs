//! What an importing cluster should hold for the fleet's services (MCS-3, MCS-9, MCS-26): one
//! ServiceImport per exported service whose namespace exists there, and one EndpointSlice per
//! (source cluster, address family). Pure: the writer diffs this against what it observes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use fleetdns_core::merge::{Merged, MergedService};
use fleetdns_core::model::{Export, Port, ServiceType};
use fleetdns_core::{ClusterId, ServiceKey};
use serde_json::{Value, json};

use crate::resources::{
    APP_MANAGED_BY_LABEL, CLUSTERSET_LABEL, IMPORT_MANAGER, MANAGED_BY_LABEL, MCS_GROUP,
    MCS_SERVICE_NAME_LABEL, MCS_SOURCE_CLUSTER_LABEL, SLICE_MANAGER,
};

/// An object to apply: namespace, name and the apply body.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub namespace: String,
    pub name: String,
    pub body: Value,
}

/// A ServiceImport: the object and its `status` (applied separately, it is a subresource).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredImport {
    pub object: Desired,
    pub status: Value,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct DesiredImports {
    pub imports: Vec<DesiredImport>,
    pub slices: Vec<Desired>,
}

/// Everything one cluster should import. `alive` are the clusters alive in the registry: only
/// they appear in `status.clusters` and get EndpointSlices (MCS-10: a dead source cluster's
/// slices go); a service none of them exports is not imported. `namespaces` are the importing
/// cluster's namespaces (MCS-26).
pub fn desired_imports(
    merged: &Merged,
    alive: &BTreeSet<ClusterId>,
    namespaces: &BTreeSet<String>,
    vips: &BTreeMap<ServiceKey, IpAddr>,
    import_version: &str,
) -> DesiredImports {
    let mut out = DesiredImports::default();
    for (key, service) in merged {
        if !namespaces.contains(key.namespace()) {
            continue;
        }
        let members: Vec<&Export> = service
            .members
            .iter()
            .map(AsRef::as_ref)
            .filter(|e| alive.contains(&e.cluster))
            .collect();
        if members.is_empty() {
            continue;
        }
        out.imports.push(service_import(
            key,
            service,
            &members,
            vips.get(key).copied(),
            import_version,
        ));
        for export in &members {
            out.slices
                .extend(slices_of(key, service.service_type, export));
        }
    }
    out
}

fn port_json(p: &Port) -> Value {
    let mut v = json!({ "protocol": p.protocol.to_string(), "port": p.port });
    if let Some(name) = &p.name {
        v["name"] = json!(name);
    }
    if let Some(app) = &p.app_protocol {
        v["appProtocol"] = json!(app);
    }
    v
}

fn service_import(
    key: &ServiceKey,
    service: &MergedService,
    members: &[&Export],
    vip: Option<IpAddr>,
    version: &str,
) -> DesiredImport {
    let ports: Vec<Value> = service.ports.iter().map(port_json).collect();
    let mut body = json!({
        "apiVersion": format!("{MCS_GROUP}/{version}"),
        "kind": "ServiceImport",
        "metadata": {
            "name": key.name(),
            "namespace": key.namespace(),
            "labels": { APP_MANAGED_BY_LABEL: IMPORT_MANAGER },
        },
        // `ips` only with a clusterset VIP (SPEC §4, MCS-3/MCS-27); without one consumers
        // resolve the DNS name, whose answers follow the answer policy.
        "spec": {
            "type": service.service_type.to_string(),
            "ports": ports,
        },
    });
    if let (Some(ip), ServiceType::ClusterSetIp) = (vip, service.service_type) {
        body["spec"]["ips"] = json!([ip.to_string()]);
        body["spec"]["ipFamilies"] = json!([if ip.is_ipv4() { "IPv4" } else { "IPv6" }]);
    }
    let clusters: Vec<Value> = members
        .iter()
        .map(|e| json!({ "cluster": e.cluster.as_str() }))
        .collect();
    DesiredImport {
        object: Desired {
            namespace: key.namespace().to_owned(),
            name: key.name().to_owned(),
            body,
        },
        status: json!({ "clusters": clusters }),
    }
}

/// Endpoints per imported EndpointSlice (the API server refuses more than 1000; 100 is the
/// endpoint-slice controller's default).
pub const SLICE_ENDPOINTS: usize = 100;

/// FNV-1a: stable across releases (a name must not change when fleetdns is upgraded).
fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The name of chunk `index` of the slices for (service, source cluster, family):
/// `<service>-<cluster>-<hash>-v4[-<n>]`. The hash of (service, cluster) keeps `web` from
/// `us-east` and `web-us` from `east` apart; the last dash-separated part (`v4`, `v6` or a
/// chunk number below 10000) is never five characters, so it cannot collide with the
/// endpoint-slice controller's generated `<service>-xxxxx` names.
pub fn slice_name(service: &str, cluster: &ClusterId, v6: bool, index: usize) -> String {
    let hash = fnv(&format!("{service}/{}", cluster.as_str())) & 0xff_ffff;
    let family = if v6 { "v6" } else { "v4" };
    let base = format!("{service}-{}-{hash:06x}-{family}", cluster.as_str());
    if index == 0 {
        base
    } else {
        format!("{base}-{}", index + 1)
    }
}

/// One slice per address family of a source cluster's export (an EndpointSlice holds one
/// family). ClusterSetIP: one endpoint, the cluster's ClusterIP, ready when any backend is
/// (as Lighthouse publishes, LH-8). Headless: that cluster's endpoints.
fn slices_of(key: &ServiceKey, ty: ServiceType, export: &Export) -> Vec<Desired> {
    let ports: Vec<Value> = export.ports.iter().map(port_json).collect();
    let mut out = Vec::new();
    for v6 in [false, true] {
        let family = |ip: &IpAddr| ip.is_ipv6() == v6;
        let endpoints: Vec<Value> = match ty {
            ServiceType::ClusterSetIp => export
                .cluster_ips
                .iter()
                .filter(|ip| family(ip))
                .map(|ip| {
                    json!({
                        "addresses": [ip.to_string()],
                        "conditions": { "ready": export.has_ready_endpoint() },
                    })
                })
                .collect(),
            ServiceType::Headless => export
                .endpoints
                .iter()
                .filter_map(|e| {
                    let addresses: Vec<String> = e
                        .addresses
                        .iter()
                        .filter(|ip| family(ip))
                        .map(ToString::to_string)
                        .collect();
                    if addresses.is_empty() {
                        return None;
                    }
                    let mut v = json!({
                        "addresses": addresses,
                        "conditions": { "ready": e.ready },
                    });
                    if let Some(h) = &e.hostname {
                        v["hostname"] = json!(h);
                    }
                    if let Some(z) = &e.zone {
                        v["zone"] = json!(&**z);
                    }
                    Some(v)
                })
                .collect(),
        };
        for (index, chunk) in endpoints.chunks(SLICE_ENDPOINTS).enumerate() {
            let name = slice_name(key.name(), &export.cluster, v6, index);
            out.push(slice(key, export, &name, v6, chunk, &ports));
        }
    }
    out
}

fn slice(
    key: &ServiceKey,
    export: &Export,
    name: &str,
    v6: bool,
    endpoints: &[Value],
    ports: &[Value],
) -> Desired {
    Desired {
        namespace: key.namespace().to_owned(),
        name: name.to_owned(),
        body: json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": key.namespace(),
                "labels": {
                    MCS_SERVICE_NAME_LABEL: key.name(),
                    MCS_SOURCE_CLUSTER_LABEL: export.cluster.as_str(),
                    MANAGED_BY_LABEL: SLICE_MANAGER,
                },
            },
            "addressType": if v6 { "IPv6" } else { "IPv4" },
            "endpoints": endpoints,
            "ports": ports,
        }),
    }
}

/// The value of [`CLUSTERSET_LABEL`] for a clusterset name: the name itself when it is a valid
/// label value (at most 63 of `A-Za-z0-9-_.`, alphanumeric at both ends), else `h-` and a
/// stable hash of it.
pub fn owner_label_value(clusterset: &str) -> String {
    let valid = clusterset.len() <= 63
        && clusterset
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && clusterset.starts_with(|c: char| c.is_ascii_alphanumeric())
        && clusterset.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        clusterset.to_owned()
    } else {
        format!("h-{:08x}", fnv(clusterset))
    }
}

/// Puts the owner label (a value from [`owner_label_value`]) on every object to write.
pub fn label_owner(desired: &mut DesiredImports, owner: &str) {
    let bodies = desired
        .imports
        .iter_mut()
        .map(|i| &mut i.object.body)
        .chain(desired.slices.iter_mut().map(|s| &mut s.body));
    for body in bodies {
        body["metadata"]["labels"][CLUSTERSET_LABEL] = json!(owner);
    }
}

/// Whether an object carrying fleetdns's managed-by label belongs to the clusterset `owner`:
/// its owner label names it, or it has none (written before the label existed: adopted).
/// `clusterset` is the object's `CLUSTERSET_LABEL` value.
pub fn owned_by(clusterset: Option<&str>, owner: &str) -> bool {
    clusterset.is_none_or(|v| v == owner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fleetdns_core::Timestamp;
    use fleetdns_core::merge::merge_service;
    use fleetdns_core::model::{Endpoint, Protocol};

    use super::*;

    fn id(s: &str) -> ClusterId {
        ClusterId::new(s).unwrap()
    }

    fn export(ns: &str, cluster: &str, created: i64, ty: ServiceType, ips: &[&str]) -> Arc<Export> {
        let ips: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
        Arc::new(Export {
            key: ServiceKey::new(ns, "web").unwrap(),
            cluster: id(cluster),
            service_type: ty,
            ports: vec![Port {
                name: Some("http".into()),
                protocol: Protocol::Tcp,
                port: 80,
                app_protocol: Some("http".into()),
            }]
            .into(),
            cluster_ips: if ty == ServiceType::ClusterSetIp {
                ips.clone().into()
            } else {
                vec![].into()
            },
            endpoints: vec![Endpoint {
                addresses: if ty == ServiceType::Headless {
                    ips.into()
                } else {
                    vec!["10.1.0.5".parse().unwrap()].into()
                },
                hostname: Some("web-0".into()),
                ready: true,
                zone: Some("z1".into()),
            }]
            .into(),
            created: Timestamp(created),
        })
    }

    fn fleet(exports: Vec<Arc<Export>>) -> Merged {
        let merged = merge_service(exports).unwrap();
        BTreeMap::from([(merged.key.clone(), Arc::new(merged))])
    }

    fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
        items.iter().cloned().collect()
    }

    #[test]
    fn the_owner_label_names_the_clusterset_and_old_objects_are_adopted() {
        assert_eq!(owner_label_value("blue"), "blue");
        assert_eq!(owner_label_value("corp.example-1"), "corp.example-1");
        for bad in ["", "-x", "x-", "a/b", "ä", &"x".repeat(64)] {
            let v = owner_label_value(bad);
            assert!(v.starts_with("h-") && v.len() == 10, "{bad:?} → {v}");
        }
        assert_ne!(owner_label_value("a/b"), owner_label_value("a/c"));
        let labels = |v: Option<&str>| {
            let mut l = BTreeMap::from([(APP_MANAGED_BY_LABEL.to_owned(), "fleetdns".to_owned())]);
            if let Some(v) = v {
                l.insert(CLUSTERSET_LABEL.to_owned(), v.to_owned());
            }
            l
        };
        fn owner(l: &BTreeMap<String, String>) -> Option<&str> {
            l.get(CLUSTERSET_LABEL).map(String::as_str)
        }
        assert!(owned_by(owner(&labels(Some("blue"))), "blue"));
        assert!(!owned_by(owner(&labels(Some("green"))), "blue"));
        assert!(owned_by(owner(&labels(None)), "blue"), "adopted");
        assert!(owned_by(None, "blue"));
    }

    #[test]
    fn mcs_3_and_mcs_9_a_service_import_and_one_slice_per_source_cluster() {
        let merged = fleet(vec![
            export("default", "a", 1, ServiceType::ClusterSetIp, &["10.0.0.1"]),
            export("default", "b", 2, ServiceType::ClusterSetIp, &["10.0.0.2"]),
        ]);
        let d = desired_imports(
            &merged,
            &set(&[id("a"), id("b")]),
            &set(&["default".to_string()]),
            &BTreeMap::new(),
            "v1alpha1",
        );
        assert_eq!(d.imports.len(), 1);
        let import = &d.imports[0];
        assert_eq!(import.object.body["spec"]["type"], "ClusterSetIP");
        assert_eq!(
            import.object.body["spec"]["ports"][0],
            json!({"name": "http", "protocol": "TCP", "port": 80, "appProtocol": "http"})
        );
        assert!(import.object.body["spec"].get("ips").is_none());
        assert_eq!(
            import.status,
            json!({"clusters": [{"cluster": "a"}, {"cluster": "b"}]})
        );
        assert_eq!(d.slices.len(), 2);
        let labels = &d.slices[1].body["metadata"]["labels"];
        assert_eq!(labels[MCS_SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MCS_SOURCE_CLUSTER_LABEL], "b");
        assert_eq!(labels[MANAGED_BY_LABEL], "fleetdns.io");
        assert_ne!(labels[MANAGED_BY_LABEL], "endpointslice-controller.k8s.io");
        assert!(labels.get("kubernetes.io/service-name").is_none());
        assert_eq!(
            d.slices[1].body["endpoints"][0]["addresses"],
            json!(["10.0.0.2"])
        );
        assert_eq!(
            d.slices[1].body["endpoints"][0]["conditions"]["ready"],
            true
        );
    }

    #[test]
    fn mcs_26_no_import_where_the_namespace_does_not_exist() {
        let merged = fleet(vec![export(
            "payments",
            "a",
            1,
            ServiceType::ClusterSetIp,
            &["10.0.0.1"],
        )]);
        let d = desired_imports(
            &merged,
            &set(&[id("a")]),
            &set(&["default".to_string()]),
            &BTreeMap::new(),
            "v1alpha1",
        );
        assert_eq!(d, DesiredImports::default());
    }

    #[test]
    fn mcs_10_dead_clusters_get_no_slices_and_leave_status_clusters() {
        let merged = fleet(vec![
            export("default", "a", 1, ServiceType::ClusterSetIp, &["10.0.0.1"]),
            export("default", "b", 2, ServiceType::ClusterSetIp, &["10.0.0.2"]),
        ]);
        let d = desired_imports(
            &merged,
            &set(&[id("b")]),
            &set(&["default".to_string()]),
            &BTreeMap::new(),
            "v1alpha1",
        );
        assert_eq!(d.imports[0].status, json!({"clusters": [{"cluster": "b"}]}));
        assert_eq!(d.slices.len(), 1);
        assert_eq!(d.slices[0].name, slice_name("web", &id("b"), false, 0));
        // Nobody alive: nothing imported.
        let d = desired_imports(
            &merged,
            &BTreeSet::new(),
            &set(&["default".to_string()]),
            &BTreeMap::new(),
            "v1alpha1",
        );
        assert!(d.imports.is_empty() && d.slices.is_empty());
    }

    #[test]
    fn headless_slices_carry_endpoints_and_split_families() {
        let merged = fleet(vec![export(
            "default",
            "a",
            1,
            ServiceType::Headless,
            &["10.1.0.7", "fd00::7"],
        )]);
        let d = desired_imports(
            &merged,
            &set(&[id("a")]),
            &set(&["default".to_string()]),
            &BTreeMap::new(),
            "v1beta1",
        );
        assert_eq!(
            d.imports[0].object.body["apiVersion"],
            "multicluster.x-k8s.io/v1beta1"
        );
        assert_eq!(d.imports[0].object.body["spec"]["type"], "Headless");
        let names: Vec<&str> = d.slices.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                slice_name("web", &id("a"), false, 0),
                slice_name("web", &id("a"), true, 0)
            ]
        );
        assert_eq!(d.slices[0].body["addressType"], "IPv4");
        assert_eq!(
            d.slices[0].body["endpoints"][0]["addresses"],
            json!(["10.1.0.7"])
        );
        assert_eq!(d.slices[0].body["endpoints"][0]["hostname"], "web-0");
        assert_eq!(d.slices[1].body["addressType"], "IPv6");
        assert_eq!(
            d.slices[1].body["endpoints"][0]["addresses"],
            json!(["fd00::7"])
        );
    }

    #[test]
    fn type_conflict_losers_are_not_imported() {
        let merged = fleet(vec![
            export("default", "a", 1, ServiceType::ClusterSetIp, &["10.0.0.1"]),
            export("default", "b", 2, ServiceType::Headless, &["10.1.0.9"]),
        ]);
        let d = desired_imports(
            &merged,
            &set(&[id("a"), id("b")]),
            &set(&["default".to_string()]),
            &BTreeMap::new(),
            "v1alpha1",
        );
        assert_eq!(d.imports[0].status, json!({"clusters": [{"cluster": "a"}]}));
        assert_eq!(d.slices.len(), 1);
    }

    #[test]
    fn slice_names_cannot_collide() {
        // Not with the endpoint-slice controller's `<service>-xxxxx`.
        let name = slice_name("web", &id("abcde"), false, 0);
        assert_ne!(name.rsplit('-').next().unwrap().len(), 5, "{name}");
        // Not between `web` from `us-east` and `web-us` from `east`.
        assert_ne!(
            slice_name("web", &id("us-east"), false, 0),
            slice_name("web-us", &id("east"), false, 0)
        );
        // Stable: a name must survive an upgrade.
        assert_eq!(
            slice_name("web", &id("east"), false, 0),
            slice_name("web", &id("east"), false, 0)
        );
        assert!(slice_name("web", &id("east"), true, 2).ends_with("-v6-3"));
    }

    #[test]
    fn large_headless_services_are_split_into_slices_of_100() {
        let mut e = (*export("default", "a", 1, ServiceType::Headless, &["10.1.0.1"])).clone();
        e.endpoints = (0..250)
            .map(|i| Endpoint {
                addresses: vec![format!("10.1.{}.{}", i / 200, i % 200 + 1).parse().unwrap()]
                    .into(),
                hostname: None,
                ready: true,
                zone: None,
            })
            .collect();
        let merged = fleet(vec![Arc::new(e)]);
        let d = desired_imports(
            &merged,
            &set(&[id("a")]),
            &set(&["default".to_string()]),
            &BTreeMap::new(),
            "v1alpha1",
        );
        let sizes: Vec<usize> = d
            .slices
            .iter()
            .map(|s| s.body["endpoints"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        let names: BTreeSet<&str> = d.slices.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn mcs_3_a_clusterset_vip_is_the_service_imports_ips() {
        let merged = fleet(vec![export(
            "default",
            "a",
            1,
            ServiceType::ClusterSetIp,
            &["10.0.0.1"],
        )]);
        let key = ServiceKey::new("default", "web").unwrap();
        let vips = BTreeMap::from([(key, "240.240.0.7".parse().unwrap())]);
        let d = desired_imports(
            &merged,
            &set(&[id("a")]),
            &set(&["default".to_string()]),
            &vips,
            "v1alpha1",
        );
        assert_eq!(
            d.imports[0].object.body["spec"]["ips"],
            json!(["240.240.0.7"])
        );
        assert_eq!(
            d.imports[0].object.body["spec"]["ipFamilies"],
            json!(["IPv4"])
        );
    }
}
