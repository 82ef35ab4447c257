//! Service + EndpointSlices + ServiceExport → [`Export`]: the one translation, pure, shared by the
//! manifest-file source and the Kubernetes watcher.

pub mod by_service;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::id::check_label;
use crate::kube::{
    ClusterObjects, EndpointSlice, SERVICE_NAME_LABEL, Service, ServiceExport, SmolStr,
};
use crate::model::{
    Endpoint, Export, ExportSet, Port, Protocol, ServiceType, shared_ports, shared_zone,
};
use crate::{ClusterId, FleetSnapshot, IdError, ServiceKey, Timestamp};

/// Why an exported service was refused. [`Invalid::reason`] is the ServiceExport `Valid=False`
/// reason of the mcs-api (MCS-2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("ServiceExport {key} has no Service of the same name (MCS-5)")]
    NoService { key: String },
    #[error("Service {key} is of type ExternalName, which cannot be exported (MCS-4)")]
    ExternalName { key: String },
    #[error("object has a bad name: {0}")]
    BadName(#[from] IdError),
    #[error("Service {key}: {reason}")]
    BadService { key: String, reason: String },
    /// A ServiceExport that cannot be read (a source's reader refuses it; the translation
    /// never sees it).
    #[error("ServiceExport {key} cannot be read: {reason}")]
    BadExport { key: String, reason: String },
}

impl Invalid {
    /// The mcs-api condition reason for `Valid=False`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoService { .. } => "NoService",
            Self::ExternalName { .. } => "InvalidServiceType",
            Self::BadName(_) | Self::BadService { .. } => "InvalidService",
            Self::BadExport { .. } => "InvalidServiceExport",
        }
    }
}

/// The outcome of translating one cluster's objects.
#[derive(Debug, Default)]
pub struct Translated {
    pub exports: ExportSet,
    /// ServiceExports that could not be exported, with why.
    pub invalid: Vec<(String, Invalid)>,
    /// Things skipped inside otherwise valid exports (bad addresses, bad hostnames).
    pub warnings: Vec<String>,
}

/// Translates one cluster's complete object set. Only services with a ServiceExport are
/// published (MCS-5). `first_seen` gives the creation time of a ServiceExport that carries no
/// `creationTimestamp` (hand-written manifests); it is called with `namespace/name`.
pub fn translate_cluster(
    cluster: &ClusterId,
    objects: &ClusterObjects,
    first_seen: &mut dyn FnMut(&str) -> Timestamp,
) -> Translated {
    let mut out = Translated::default();
    let services: HashMap<(&str, &str), &Service> = objects
        .services
        .iter()
        .filter_map(|s| Some(((ns_of(&s.metadata), s.metadata.name.as_deref()?), s)))
        .collect();
    let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in &objects.endpoint_slices {
        let ns = ns_of(&slice.metadata);
        let Some(svc) = slice.metadata.labels.get(SERVICE_NAME_LABEL) else {
            continue;
        };
        slices.entry((ns, svc.as_str())).or_default().push(slice);
    }
    for export in &objects.service_exports {
        let name = export.metadata.name.as_deref().unwrap_or_default();
        let ns = ns_of(&export.metadata);
        let service = services.get(&(ns, name)).copied();
        let own_slices = slices.get(&(ns, name)).map_or(&[][..], Vec::as_slice);
        match translate_export(
            cluster,
            export,
            service,
            own_slices,
            first_seen,
            &mut out.warnings,
        ) {
            Ok(exp) => {
                out.exports.insert(exp.key.clone(), Arc::new(exp));
            }
            Err(refused) => out.invalid.push(refused),
        }
    }
    out
}

/// Translates one ServiceExport with the Service of its name and that Service's slices: the
/// export, or the ServiceExport's `namespace/name` label and why it is refused. Its creation
/// time is its `creationTimestamp`, else what `first_seen` says for the label.
pub fn translate_export(
    cluster: &ClusterId,
    export: &ServiceExport,
    service: Option<&Service>,
    slices: &[&EndpointSlice],
    first_seen: &mut dyn FnMut(&str) -> Timestamp,
    warnings: &mut Vec<String>,
) -> Result<Export, (String, Invalid)> {
    let Some(name) = export.metadata.name.as_deref() else {
        return Err((
            "<unnamed>".into(),
            Invalid::BadName(IdError::Empty {
                what: "ServiceExport name",
            }),
        ));
    };
    // Made only when needed: most exports have a creation time and translate.
    let label = || format!("{}/{name}", ns_of(&export.metadata));
    let created = match export.metadata.creation_timestamp.as_deref() {
        Some(ts) => match Timestamp::parse_rfc3339(ts) {
            Ok(t) => t,
            Err(e) => {
                let label = label();
                warnings.push(format!("ServiceExport {label}: {e}; using first-seen time"));
                first_seen(&label)
            }
        },
        None => first_seen(&label()),
    };
    translate(cluster, export, service, slices, created, warnings).map_err(|e| (label(), e))
}

/// Objects without a namespace (hand-written manifests) live in `default`, as `kubectl apply` puts them.
pub(crate) fn ns_of(meta: &crate::kube::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

/// Translates one exported service. `created` is the ServiceExport's creation time.
pub fn translate(
    cluster: &ClusterId,
    export: &ServiceExport,
    service: Option<&Service>,
    slices: &[&EndpointSlice],
    created: Timestamp,
    warnings: &mut Vec<String>,
) -> Result<Export, Invalid> {
    let name = export.metadata.name.as_deref().unwrap_or_default();
    let ns = ns_of(&export.metadata);
    let key = ServiceKey::new(ns, name)?;
    let label = key.as_str();
    let Some(service) = service else {
        return Err(Invalid::NoService { key: label.into() });
    };
    let spec = &service.spec;
    let bad = |reason: String| Invalid::BadService {
        key: label.into(),
        reason,
    };
    let service_type = match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "ExternalName" => return Err(Invalid::ExternalName { key: label.into() }),
        "ClusterIP" | "NodePort" | "LoadBalancer" => {
            if spec.cluster_ip.as_deref() == Some("None")
                || spec.cluster_ips.first().map(SmolStr::as_str) == Some("None")
            {
                ServiceType::Headless
            } else {
                ServiceType::ClusterSetIp
            }
        }
        other => return Err(bad(format!("spec.type {other:?} is not a Service type"))),
    };
    let mut cluster_ips = Vec::new();
    if service_type == ServiceType::ClusterSetIp {
        let raw: Vec<&str> = if spec.cluster_ips.is_empty() {
            spec.cluster_ip.as_deref().into_iter().collect()
        } else {
            spec.cluster_ips.iter().map(SmolStr::as_str).collect()
        };
        for ip in raw {
            let parsed: IpAddr = ip
                .parse()
                .map_err(|_| bad(format!("spec.clusterIPs: {ip:?} is not an IP address")))?;
            if !cluster_ips.contains(&parsed) {
                cluster_ips.push(parsed);
            }
        }
        if cluster_ips.is_empty() {
            return Err(bad(
                "spec.clusterIP is not set (a ClusterIP service needs its allocated IP)".into(),
            ));
        }
    }
    let mut ports: Vec<Port> = Vec::with_capacity(spec.ports.len());
    for (i, p) in spec.ports.iter().enumerate() {
        let port = u16::try_from(p.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("spec.ports[{i}].port {} is out of range", p.port)))?;
        let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => {
                return Err(bad(format!(
                    "spec.ports[{i}].protocol {other:?} is unknown"
                )));
            }
        };
        let name = match p.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => {
                let lower = n.to_ascii_lowercase();
                check_label("port name", &lower)
                    .map_err(|e| bad(format!("spec.ports[{i}].name: {e}")))?;
                Some(SmolStr::from(lower))
            }
            None => None,
        };
        ports.push(Port {
            name,
            protocol,
            port,
            app_protocol: p.app_protocol.as_ref().map(ToString::to_string),
        });
    }
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let endpoints = collect_endpoints(label, slices, publish_not_ready, warnings);
    Ok(Export {
        key,
        cluster: cluster.clone(),
        service_type,
        ports: shared_ports(&ports),
        cluster_ips: cluster_ips.into(),
        endpoints,
        created,
    })
}

/// Endpoints of all slices; duplicate addresses within the cluster are dropped (LH-19), a
/// ready copy winning over a not-ready one.
fn collect_endpoints(
    label: &str,
    slices: &[&EndpointSlice],
    publish_not_ready: bool,
    warnings: &mut Vec<String>,
) -> Box<[Endpoint]> {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut seen: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for slice in slices {
        let want_v6 = match slice.address_type.as_str() {
            "IPv4" => false,
            "IPv6" => true,
            _ => continue, // FQDN slices carry no addresses DNS can serve
        };
        for ep in &slice.endpoints {
            // K8S-16: nil means ready; K8S-17: publishNotReadyAddresses publishes everything.
            let ready = publish_not_ready || ep.conditions.ready != Some(false);
            let mut addresses = Vec::new();
            for raw in &ep.addresses {
                match raw.parse::<IpAddr>() {
                    Ok(ip) if ip.is_ipv6() == want_v6 && routable(ip) => {
                        if let Some(&idx) = seen.get(&ip) {
                            if ready && !endpoints[idx].ready {
                                let kept = endpoints[idx].addresses.without(ip);
                                endpoints[idx].addresses = kept;
                            } else {
                                continue;
                            }
                        }
                        addresses.push(ip);
                    }
                    _ => warnings.push(format!(
                        "{label}: endpoint address {raw:?} skipped (not a routable {} address)",
                        if want_v6 { "IPv6" } else { "IPv4" }
                    )),
                }
            }
            if addresses.is_empty() {
                continue;
            }
            let hostname = match ep.hostname.as_deref() {
                Some(h) => match check_label("endpoint hostname", &h.to_ascii_lowercase()) {
                    Ok(()) => Some(SmolStr::from(h.to_ascii_lowercase())),
                    Err(e) => {
                        warnings.push(format!("{label}: {e}; using the dashed IP"));
                        None
                    }
                },
                None => None,
            };
            let idx = endpoints.len();
            for ip in &addresses {
                seen.insert(*ip, idx);
            }
            endpoints.push(Endpoint {
                addresses: addresses.into(),
                hostname,
                ready,
                zone: ep.zone.as_deref().map(shared_zone),
            });
        }
    }
    endpoints.retain(|e| !e.addresses.is_empty());
    endpoints.into_boxed_slice()
}

/// Addresses no other cluster could ever reach are refused (LH-26).
fn routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unicast_link_local())
        }
    }
}

/// The creation times the registry already shows for `cluster`'s exports, by `namespace/name`:
/// what a new source for the cluster (after a reload or a restart) starts its first-seen times
/// from, so a ServiceExport without `creationTimestamp` keeps its age and an MCS-20 winner
/// does not flip.
pub fn created_times(snapshot: &FleetSnapshot, cluster: &ClusterId) -> BTreeMap<String, Timestamp> {
    snapshot
        .clusters
        .get(cluster)
        .map(|view| {
            view.exports
                .iter()
                .map(|(key, export)| (key.to_string(), export.created))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::{EndpointConditions, ObjectMeta, ServicePort, ServiceSpec, SliceEndpoint};

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            creation_timestamp: Some("2026-01-01T00:00:00Z".into()),
            ..ObjectMeta::default()
        }
    }

    fn service(
        name: &str,
        ty: Option<&str>,
        cluster_ip: Option<&str>,
        ports: Vec<ServicePort>,
    ) -> Service {
        Service {
            metadata: meta(name),
            spec: ServiceSpec {
                type_: ty.map(Into::into),
                cluster_ip: cluster_ip.map(Into::into),
                ports,
                ..ServiceSpec::default()
            },
            ..Service::default()
        }
    }

    fn slice(
        svc: &str,
        family: &str,
        eps: Vec<(&str, Option<bool>, Option<&str>)>,
    ) -> EndpointSlice {
        let mut m = meta(&format!("{svc}-{family}"));
        m.labels.insert(SERVICE_NAME_LABEL, svc);
        EndpointSlice {
            metadata: m,
            address_type: family.into(),
            endpoints: eps
                .into_iter()
                .map(|(ip, ready, host)| SliceEndpoint {
                    addresses: vec![ip.into()],
                    conditions: EndpointConditions { ready },
                    hostname: host.map(Into::into),
                    zone: None,
                })
                .collect(),
        }
    }

    fn export_of(name: &str) -> ServiceExport {
        ServiceExport {
            metadata: meta(name),
        }
    }

    fn port(name: Option<&str>, port: i64, protocol: Option<&str>) -> ServicePort {
        ServicePort {
            name: name.map(Into::into),
            protocol: protocol.map(Into::into),
            port,
            app_protocol: None,
        }
    }

    fn run(objects: &ClusterObjects) -> Translated {
        let cluster = ClusterId::new("c1").unwrap();
        translate_cluster(&cluster, objects, &mut |_| Timestamp(42))
    }

    fn one(svc: Service, slices: Vec<EndpointSlice>) -> Result<Export, Invalid> {
        let name = svc.metadata.name.clone().unwrap();
        let t = run(&ClusterObjects {
            services: vec![svc],
            endpoint_slices: slices,
            service_exports: vec![export_of(&name)],
        });
        match t.invalid.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok((*t.exports.into_values().next().unwrap()).clone()),
        }
    }

    #[test]
    fn mcs4_service_types() {
        for (ty, ip, want) in [
            (None, Some("10.0.0.1"), ServiceType::ClusterSetIp),
            (
                Some("ClusterIP"),
                Some("10.0.0.1"),
                ServiceType::ClusterSetIp,
            ),
            (
                Some("NodePort"),
                Some("10.0.0.1"),
                ServiceType::ClusterSetIp,
            ),
            (
                Some("LoadBalancer"),
                Some("10.0.0.1"),
                ServiceType::ClusterSetIp,
            ),
            (Some("ClusterIP"), Some("None"), ServiceType::Headless),
        ] {
            let e = one(service("web", ty, ip, vec![]), vec![]).unwrap();
            assert_eq!(e.service_type, want, "{ty:?} {ip:?}");
        }
    }

    #[test]
    fn headless_declared_by_cluster_ips_alone() {
        let mut svc = service("web", None, None, vec![]);
        svc.spec.cluster_ips = vec!["None".into()];
        assert_eq!(
            one(svc, vec![]).unwrap().service_type,
            ServiceType::Headless
        );
    }

    #[test]
    fn mcs4_external_name_is_invalid_service_type() {
        let err = one(
            service("legacy", Some("ExternalName"), None, vec![]),
            vec![],
        )
        .unwrap_err();
        assert_eq!(err.reason(), "InvalidServiceType");
    }

    #[test]
    fn mcs5_only_exported_services_are_published() {
        let t = run(&ClusterObjects {
            services: vec![
                service("web", None, Some("10.0.0.1"), vec![]),
                service("db", None, Some("10.0.0.2"), vec![]),
            ],
            endpoint_slices: vec![],
            service_exports: vec![export_of("web"), export_of("ghost")],
        });
        let names: Vec<&str> = t.exports.keys().map(ServiceKey::name).collect();
        assert_eq!(names, ["web"]);
        assert_eq!(t.invalid.len(), 1);
        assert_eq!(t.invalid[0].1.reason(), "NoService");
    }

    #[test]
    fn named_and_unnamed_ports() {
        let e = one(
            service(
                "web",
                None,
                Some("10.0.0.1"),
                vec![port(Some("HTTP"), 80, None), port(None, 8443, Some("UDP"))],
            ),
            vec![],
        )
        .unwrap();
        assert_eq!(
            e.ports[0].name.as_deref(),
            Some("http"),
            "port names compare lower-case (K8S-2)"
        );
        assert_eq!(
            e.ports[0].protocol,
            Protocol::Tcp,
            "protocol defaults to TCP"
        );
        assert_eq!(e.ports[1].name, None);
        assert_eq!(e.ports[1].protocol, Protocol::Udp);
        let err = one(
            service("web", None, Some("10.0.0.1"), vec![port(None, 70000, None)]),
            vec![],
        )
        .unwrap_err();
        assert!(err.to_string().contains("spec.ports[0].port"), "{err}");
    }

    #[test]
    fn k8s16_readiness_nil_means_ready() {
        let e = one(
            service("web", None, Some("None"), vec![]),
            vec![slice(
                "web",
                "IPv4",
                vec![
                    ("10.1.0.1", None, None),
                    ("10.1.0.2", Some(true), None),
                    ("10.1.0.3", Some(false), None),
                ],
            )],
        )
        .unwrap();
        let ready: Vec<bool> = e.endpoints.iter().map(|ep| ep.ready).collect();
        assert_eq!(ready, [true, true, false]);
    }

    #[test]
    fn k8s17_publish_not_ready_addresses_makes_everything_ready() {
        let mut svc = service("web", None, Some("None"), vec![]);
        svc.spec.publish_not_ready_addresses = Some(true);
        let e = one(
            svc,
            vec![slice("web", "IPv4", vec![("10.1.0.3", Some(false), None)])],
        )
        .unwrap();
        assert!(e.endpoints[0].ready);
    }

    #[test]
    fn dual_stack_cluster_ips_and_endpoints() {
        let mut svc = service("web", None, Some("10.0.0.1"), vec![]);
        svc.spec.cluster_ips = vec!["10.0.0.1".into(), "fd00::1".into()];
        let e = one(
            svc,
            vec![
                slice("web", "IPv4", vec![("10.1.0.1", None, Some("web-0"))]),
                slice("web", "IPv6", vec![("fd00:1::1", None, Some("web-0"))]),
                slice("web", "FQDN", vec![("example.com", None, None)]),
            ],
        )
        .unwrap();
        assert_eq!(
            e.cluster_ips,
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
        assert_eq!(e.endpoints.len(), 2, "FQDN slices are ignored");
        assert!(
            e.endpoints
                .iter()
                .all(|ep| ep.hostname.as_deref() == Some("web-0"))
        );
    }

    #[test]
    fn lh19_lh26_duplicates_and_unroutable_addresses_are_dropped() {
        let e = one(
            service("web", None, Some("None"), vec![]),
            vec![
                slice(
                    "web",
                    "IPv4",
                    vec![
                        ("10.1.0.1", Some(false), None),
                        ("127.0.0.1", None, None),
                        ("v4?", None, None),
                    ],
                ),
                slice("web", "IPv4", vec![("10.1.0.1", Some(true), None)]),
            ],
        )
        .unwrap();
        assert_eq!(e.endpoints.len(), 1);
        assert!(e.endpoints[0].ready, "the ready copy of a duplicate wins");
    }

    /// LH-19: of two ready copies of one address, the first is kept (with its hostname), so
    /// the answer does not depend on which copy came last.
    #[test]
    fn lh19_the_first_ready_copy_of_an_address_is_kept() {
        let e = one(
            service("web", None, Some("None"), vec![]),
            vec![
                slice("web", "IPv4", vec![("10.1.0.1", Some(true), Some("first"))]),
                slice(
                    "web",
                    "IPv4",
                    vec![("10.1.0.1", Some(true), Some("second"))],
                ),
            ],
        )
        .unwrap();
        assert_eq!(e.endpoints.len(), 1);
        assert_eq!(e.endpoints[0].hostname.as_deref(), Some("first"));
    }

    /// LH-26: every kind of address no other cluster can reach is refused, of both families;
    /// a routable one beside them is kept.
    #[test]
    fn lh26_every_unroutable_kind_is_refused() {
        let unroutable = [
            ("IPv4", "0.0.0.0"),
            ("IPv4", "127.0.0.1"),
            ("IPv4", "169.254.1.1"),
            ("IPv4", "224.0.0.1"),
            ("IPv4", "255.255.255.255"),
            ("IPv6", "::"),
            ("IPv6", "::1"),
            ("IPv6", "ff02::1"),
            ("IPv6", "fe80::1"),
        ];
        for (family, ip) in unroutable {
            let routable = if family == "IPv4" {
                "10.1.0.9"
            } else {
                "fd00::9"
            };
            let e = one(
                service("web", None, Some("None"), vec![]),
                vec![slice(
                    "web",
                    family,
                    vec![(ip, None, None), (routable, None, None)],
                )],
            )
            .unwrap();
            let kept: Vec<String> = e
                .endpoints
                .iter()
                .flat_map(|ep| ep.addresses.iter().map(ToString::to_string))
                .collect();
            assert_eq!(kept, [routable], "{ip} must be refused");
        }
    }

    /// MCS-20 across a new source: the creation times a snapshot shows for a cluster, by
    /// `namespace/name`.
    #[test]
    fn created_times_are_the_snapshots_creation_times_of_one_cluster() {
        let cluster = ClusterId::new("c1").unwrap();
        let other = ClusterId::new("c2").unwrap();
        let mut svc = service("web", None, Some("10.0.0.1"), vec![]);
        let t = run(&ClusterObjects {
            services: vec![svc.clone()],
            endpoint_slices: vec![],
            service_exports: vec![export_of("web")],
        });
        svc.metadata.name = Some("db".into());
        let mut snapshot = FleetSnapshot::default();
        let view = |exports: ExportSet| crate::ClusterView {
            alive: true,
            exports: Arc::new(exports),
            published: Timestamp(0),
            service_entries: Arc::default(),
        };
        snapshot.clusters.insert(cluster.clone(), view(t.exports));
        snapshot
            .clusters
            .insert(other.clone(), view(ExportSet::new()));
        let times = created_times(&snapshot, &cluster);
        assert_eq!(
            times.into_iter().collect::<Vec<_>>(),
            [(
                "shop/web".to_owned(),
                Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
            )]
        );
        assert!(created_times(&snapshot, &other).is_empty());
        assert!(created_times(&snapshot, &ClusterId::new("c3").unwrap()).is_empty());
    }

    #[test]
    fn bad_hostnames_fall_back_to_the_dashed_ip() {
        let e = one(
            service("web", None, Some("None"), vec![]),
            vec![slice(
                "web",
                "IPv4",
                vec![("10.1.0.1", None, Some("not_a_label"))],
            )],
        )
        .unwrap();
        assert_eq!(e.endpoints[0].hostname, None);
    }

    #[test]
    fn creation_time_comes_from_the_service_export_or_first_seen() {
        let e = one(service("web", None, Some("10.0.0.1"), vec![]), vec![]).unwrap();
        assert_eq!(
            e.created,
            Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
        );
        let mut ex = export_of("web");
        ex.metadata.creation_timestamp = None;
        let t = run(&ClusterObjects {
            services: vec![service("web", None, Some("10.0.0.1"), vec![])],
            endpoint_slices: vec![],
            service_exports: vec![ex],
        });
        assert_eq!(t.exports.values().next().unwrap().created, Timestamp(42));
    }

    #[test]
    fn a_cluster_ip_service_without_its_ip_is_refused() {
        let err = one(service("web", None, None, vec![]), vec![]).unwrap_err();
        assert!(err.to_string().contains("clusterIP"), "{err}");
        let err = one(service("web", None, Some("10.0.0.999"), vec![]), vec![]).unwrap_err();
        assert!(err.to_string().contains("not an IP"), "{err}");
    }
}
