//! The records that should exist: from Services annotated for ExternalDNS (XDNS-11..15), and,
//! opt-in, every exported service of the fleet as `<svc>.<ns>.<zone>`. Pure, like `translate`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use fleetdns_core::kube::{ClusterObjects, SERVICE_NAME_LABEL, Service, SmolStr};
use fleetdns_core::{FleetSnapshot, ServiceType, merge_fleet};

use crate::model::{Endpoint, RecordType, normalize_name};

/// Annotation prefixes, the current one first (XDNS-11: both are read).
pub const ANNOTATION_PREFIXES: [&str; 2] = [
    "external-dns.kubernetes.io/",
    "external-dns.alpha.kubernetes.io/",
];

/// The annotation `key` (e.g. `hostname`) under either prefix, the current one winning.
pub fn annotation<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    ANNOTATION_PREFIXES.iter().find_map(|p| {
        svc.metadata
            .annotations
            .get(&format!("{p}{key}"))
            .map(SmolStr::as_str)
    })
}

/// Whether a Service asks for records (`hostname` or `internal-hostname`, either prefix):
/// the filter the sources' tap keeps.
pub fn is_annotated(svc: &Service) -> bool {
    annotation(svc, "hostname").is_some() || annotation(svc, "internal-hostname").is_some()
}

/// Desired records, with notes on what was skipped and why.
#[derive(Debug, Default, Clone)]
pub struct Desired {
    pub endpoints: Vec<Endpoint>,
    pub warnings: Vec<String>,
}

/// XDNS-13: integer seconds or a Go duration, 1..=2^31-1; `0` means the provider default.
pub fn parse_ttl(text: &str) -> Result<Option<u32>, String> {
    let text = text.trim();
    let secs: u64 = match text.parse::<u64>() {
        Ok(n) => n,
        Err(_) => parse_go_duration(text)
            .ok_or_else(|| format!("ttl {text:?} is not a number of seconds or a duration"))?,
    };
    match secs {
        0 => Ok(None),
        1..=0x7fff_ffff => Ok(Some(secs as u32)),
        _ => Err(format!("ttl {text:?} is out of range 1..2147483647")),
    }
}

/// `1h30m`, `90s`, `1.5m`: whole seconds (Go's `time.ParseDuration`, truncated like ExternalDNS).
fn parse_go_duration(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut nanos: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        nanos += value * scale;
    }
    Some((nanos / 1e9) as u64)
}

fn split_names(list: &str, what: &str, key: &str, warnings: &mut Vec<String>) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .filter_map(|n| {
            let norm = normalize_name(n);
            if norm.is_none() {
                warnings.push(format!(
                    "Service {key}: {what} {n:?} is not a DNS name, skipped"
                ));
            }
            norm
        })
        .collect()
}

/// A target's record type (XDNS-14): IPv4 → A, IPv6 → AAAA, anything else → CNAME.
fn classify(target: &str) -> Option<(RecordType, String)> {
    let target = target.trim();
    if target.is_empty() {
        return None;
    }
    match target.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Some((RecordType::A, ip.to_string())),
        Ok(IpAddr::V6(ip)) => Some((RecordType::Aaaa, ip.to_string())),
        Err(_) => normalize_name(target).map(|n| (RecordType::Cname, n)),
    }
}

/// The ready (or, with `publishNotReadyAddresses`, all) endpoint addresses of a headless
/// Service, with the endpoints' hostnames (XDNS-15).
fn endpoint_addresses(
    svc: &Service,
    ns: &str,
    name: &str,
    objects: &ClusterObjects,
) -> Vec<(Option<String>, IpAddr)> {
    let all = svc.spec.publish_not_ready_addresses.unwrap_or(false);
    let mut out = Vec::new();
    for slice in &objects.endpoint_slices {
        if slice.metadata.namespace.as_deref().unwrap_or("default") != ns
            || slice
                .metadata
                .labels
                .get(SERVICE_NAME_LABEL)
                .map(SmolStr::as_str)
                != Some(name)
        {
            continue;
        }
        for ep in &slice.endpoints {
            if !(all || ep.conditions.ready.unwrap_or(true)) {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    out.push((ep.hostname.as_ref().map(ToString::to_string), ip));
                }
            }
        }
    }
    out
}

fn ip_target(ip: IpAddr) -> (RecordType, String) {
    match ip {
        IpAddr::V4(v4) => (RecordType::A, v4.to_string()),
        IpAddr::V6(v6) => (RecordType::Aaaa, v6.to_string()),
    }
}

/// The endpoints of one cluster's annotated Services (XDNS-11..15). Services need not be
/// exported.
pub fn annotated_endpoints(objects: &ClusterObjects) -> Desired {
    let mut out = Desired::default();
    for svc in objects.services.iter().filter(|s| is_annotated(s)) {
        let Some(name) = svc.metadata.name.as_deref() else {
            continue;
        };
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let key = format!("{ns}/{name}");
        let resource = format!("service/{ns}/{name}");
        let ttl = match annotation(svc, "ttl").map(parse_ttl) {
            None => None,
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                out.warnings
                    .push(format!("Service {key}: {e}; provider default used"));
                None
            }
        };
        let ty = svc.spec.type_.as_deref().unwrap_or("ClusterIP");
        let headless = svc.spec.cluster_ip.as_deref() == Some("None");
        let cluster_ips: Vec<IpAddr> = {
            let mut ips: Vec<&SmolStr> = svc.spec.cluster_ips.iter().collect();
            if ips.is_empty() {
                ips.extend(svc.spec.cluster_ip.as_ref());
            }
            ips.iter().filter_map(|i| i.parse().ok()).collect()
        };
        let mut records: Vec<(String, RecordType, String)> = Vec::new();
        let mut push = |host: &str, targets: Vec<(RecordType, String)>| {
            for (t, v) in targets {
                records.push((host.to_owned(), t, v));
            }
        };
        let override_targets: Option<Vec<(RecordType, String)>> =
            annotation(svc, "target").map(|list| list.split(',').filter_map(classify).collect());
        if let Some(list) = annotation(svc, "hostname") {
            for host in split_names(list, "hostname", &key, &mut out.warnings) {
                if let Some(t) = &override_targets {
                    push(&host, t.clone());
                    continue;
                }
                match ty {
                    "ExternalName" => {
                        if !svc.spec.external_ips.is_empty() {
                            push(&host, svc.spec.external_ips.iter().filter_map(|i| classify(i)).collect());
                        } else if let Some(t) = svc.spec.external_name.as_deref().and_then(classify) {
                            push(&host, vec![t]);
                        }
                    }
                    "LoadBalancer" => {
                        if svc.spec.external_ips.is_empty() {
                            let ingress = svc.status.load_balancer.ingress.iter().filter_map(|i| {
                                i.ip.as_deref().or(i.hostname.as_deref()).and_then(classify)
                            });
                            push(&host, ingress.collect());
                        } else {
                            push(&host, svc.spec.external_ips.iter().filter_map(|i| classify(i)).collect());
                        }
                    }
                    _ if headless => {
                        let addrs = endpoint_addresses(svc, ns, name, objects);
                        for (pod_host, ip) in &addrs {
                            if let Some(h) = pod_host {
                                push(&format!("{h}.{host}"), vec![ip_target(*ip)]);
                            }
                        }
                        push(&host, addrs.iter().map(|(_, ip)| ip_target(*ip)).collect());
                    }
                    "NodePort" => out.warnings.push(format!(
                        "Service {key}: NodePort services publish node addresses, which fleetdns does not read; skipped"
                    )),
                    // ClusterIP: only with internal-hostname (XDNS-15).
                    _ => {}
                }
            }
        }
        if let Some(list) = annotation(svc, "internal-hostname") {
            for host in split_names(list, "internal-hostname", &key, &mut out.warnings) {
                if headless {
                    let addrs = endpoint_addresses(svc, ns, name, objects);
                    push(&host, addrs.iter().map(|(_, ip)| ip_target(*ip)).collect());
                } else {
                    push(&host, cluster_ips.iter().map(|ip| ip_target(*ip)).collect());
                }
            }
        }
        let mut grouped: BTreeMap<(String, RecordType), BTreeSet<String>> = BTreeMap::new();
        for (host, t, v) in records {
            grouped.entry((host, t)).or_default().insert(v);
        }
        for ((host, record_type), targets) in grouped {
            out.endpoints.push(Endpoint {
                name: host,
                record_type,
                targets,
                ttl,
                resource: resource.clone(),
            });
        }
    }
    out
}

/// Every exported service of the fleet as `<svc>.<ns>.<zone>`: ClusterSetIP services with the
/// ClusterIPs of the clusters that have a ready endpoint, headless ones with their ready
/// endpoints, alive clusters only (what answer policy `all` gives).
pub fn clusterset_endpoints(snapshot: &FleetSnapshot, zone: &str) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for (key, service) in merge_fleet(snapshot) {
        let mut targets: BTreeMap<RecordType, BTreeSet<String>> = BTreeMap::new();
        for export in &service.members {
            let ips: Vec<IpAddr> = match service.service_type {
                ServiceType::ClusterSetIp if export.has_ready_endpoint() => {
                    export.cluster_ips.to_vec()
                }
                ServiceType::ClusterSetIp => Vec::new(),
                ServiceType::Headless => export
                    .endpoints
                    .iter()
                    .filter(|e| e.ready)
                    .flat_map(|e| e.addresses.iter().copied())
                    .collect(),
            };
            for ip in ips {
                let (t, v) = ip_target(ip);
                targets.entry(t).or_default().insert(v);
            }
        }
        for (record_type, targets) in targets {
            out.push(Endpoint {
                name: format!("{}.{}.{zone}", key.name(), key.namespace()),
                record_type,
                targets,
                ttl: None,
                resource: format!("service/{}/{}", key.namespace(), key.name()),
            });
        }
    }
    out
}

/// Joins endpoints of several clusters: one name and type → the union of targets and the
/// smallest TTL. A name may carry a CNAME only alone and with one target: conflicts keep the
/// address records (or the first CNAME target) and are reported.
pub fn merge_endpoints(endpoints: impl IntoIterator<Item = Endpoint>) -> Desired {
    let mut out = Desired::default();
    let mut by_key: BTreeMap<(String, RecordType), Endpoint> = BTreeMap::new();
    for ep in endpoints {
        match by_key.get_mut(&(ep.name.clone(), ep.record_type)) {
            Some(have) => {
                have.targets.extend(ep.targets);
                have.ttl = match (have.ttl, ep.ttl) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if ep.resource < have.resource {
                    have.resource = ep.resource;
                }
            }
            None => {
                by_key.insert((ep.name.clone(), ep.record_type), ep);
            }
        }
    }
    let names_with_addresses: BTreeSet<String> = by_key
        .iter()
        .filter(|((_, t), _)| *t != RecordType::Cname)
        .map(|((n, _), _)| n.clone())
        .collect();
    for ((name, t), mut ep) in by_key {
        if ep.targets.is_empty() {
            continue;
        }
        if t == RecordType::Cname {
            if names_with_addresses.contains(&name) {
                out.warnings.push(format!(
                    "{name}: a CNAME cannot share its name with address records; CNAME [{}] skipped",
                    ep.targets_text()
                ));
                continue;
            }
            if ep.targets.len() > 1 {
                let first = ep.targets.iter().next().cloned().unwrap_or_default();
                out.warnings.push(format!(
                    "{name}: a CNAME has one target; [{}] asked, {first} used",
                    ep.targets_text()
                ));
                ep.targets = BTreeSet::from([first]);
            }
        }
        out.endpoints.push(ep);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetdns_core::kube::{
        EndpointConditions, EndpointSlice, LoadBalancerIngress, ObjectMeta, ServiceSpec,
        SliceEndpoint,
    };

    fn svc(name: &str, ty: &str, annotations: &[(&str, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                annotations: annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..ObjectMeta::default()
            },
            spec: ServiceSpec {
                type_: Some(ty.into()),
                cluster_ip: Some("10.96.0.10".into()),
                ..ServiceSpec::default()
            },
            ..Service::default()
        }
    }

    fn objects(services: Vec<Service>, slices: Vec<EndpointSlice>) -> ClusterObjects {
        ClusterObjects {
            services,
            endpoint_slices: slices,
            service_exports: Vec::new(),
        }
    }

    fn find<'a>(d: &'a Desired, name: &str, t: RecordType) -> Option<&'a Endpoint> {
        d.endpoints
            .iter()
            .find(|e| e.name == name && e.record_type == t)
    }

    fn targets(e: &Endpoint) -> Vec<&str> {
        e.targets.iter().map(String::as_str).collect()
    }

    #[test]
    fn xdns_11_both_prefixes_comma_lists_and_trailing_dots() {
        let mut a = svc(
            "a",
            "LoadBalancer",
            &[(
                "external-dns.alpha.kubernetes.io/hostname",
                "A.fleet.example.com., b.fleet.example.com",
            )],
        );
        a.spec.external_ips = vec!["192.0.2.1".into()];
        let mut b = svc(
            "b",
            "LoadBalancer",
            &[
                (
                    "external-dns.kubernetes.io/hostname",
                    "new.fleet.example.com",
                ),
                (
                    "external-dns.alpha.kubernetes.io/hostname",
                    "old.fleet.example.com",
                ),
            ],
        );
        b.spec.external_ips = vec!["192.0.2.2".into()];
        let d = annotated_endpoints(&objects(vec![a, b], vec![]));
        let names: Vec<&str> = d.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "a.fleet.example.com",
                "b.fleet.example.com",
                "new.fleet.example.com"
            ]
        );
        assert_eq!(d.endpoints[0].resource, "service/shop/a");
    }

    #[test]
    fn xdns_15_load_balancer_external_ips_else_ingress_ip_or_hostname() {
        let h = ("external-dns.kubernetes.io/hostname", "lb.ex.com");
        let mut with_ext = svc("x", "LoadBalancer", &[h]);
        with_ext.spec.external_ips = vec!["192.0.2.9".into()];
        with_ext.status.load_balancer.ingress = vec![LoadBalancerIngress {
            ip: Some("198.51.100.1".into()),
            hostname: None,
        }];
        let d = annotated_endpoints(&objects(vec![with_ext], vec![]));
        assert_eq!(
            targets(find(&d, "lb.ex.com", RecordType::A).unwrap()),
            ["192.0.2.9"]
        );

        let mut ingress = svc("y", "LoadBalancer", &[h]);
        ingress.status.load_balancer.ingress = vec![
            LoadBalancerIngress {
                ip: Some("198.51.100.1".into()),
                hostname: None,
            },
            LoadBalancerIngress {
                ip: Some("2001:db8::1".into()),
                hostname: None,
            },
        ];
        let d = annotated_endpoints(&objects(vec![ingress], vec![]));
        assert_eq!(
            targets(find(&d, "lb.ex.com", RecordType::A).unwrap()),
            ["198.51.100.1"]
        );
        assert_eq!(
            targets(find(&d, "lb.ex.com", RecordType::Aaaa).unwrap()),
            ["2001:db8::1"]
        );

        let mut host = svc("z", "LoadBalancer", &[h]);
        host.status.load_balancer.ingress = vec![LoadBalancerIngress {
            ip: None,
            hostname: Some("elb-1.aws.example.".into()),
        }];
        let d = annotated_endpoints(&objects(vec![host], vec![]));
        assert_eq!(
            targets(find(&d, "lb.ex.com", RecordType::Cname).unwrap()),
            ["elb-1.aws.example"]
        );
    }

    #[test]
    fn xdns_12_15_cluster_ip_only_with_internal_hostname() {
        let plain = svc(
            "p",
            "ClusterIP",
            &[("external-dns.kubernetes.io/hostname", "p.ex.com")],
        );
        let internal = svc(
            "i",
            "ClusterIP",
            &[("external-dns.kubernetes.io/internal-hostname", "i.ex.com")],
        );
        let d = annotated_endpoints(&objects(vec![plain, internal], vec![]));
        assert!(find(&d, "p.ex.com", RecordType::A).is_none());
        assert_eq!(
            targets(find(&d, "i.ex.com", RecordType::A).unwrap()),
            ["10.96.0.10"]
        );
    }

    #[test]
    fn xdns_15_headless_ready_endpoints_and_pod_hostnames() {
        let mut h = svc(
            "db",
            "ClusterIP",
            &[("external-dns.kubernetes.io/hostname", "db.ex.com")],
        );
        h.spec.cluster_ip = Some("None".into());
        let mut meta = ObjectMeta {
            namespace: Some("shop".into()),
            ..ObjectMeta::default()
        };
        meta.labels.insert(SERVICE_NAME_LABEL, "db");
        let ep = |ip: &str, ready: Option<bool>, host: Option<&str>| SliceEndpoint {
            addresses: vec![ip.into()],
            conditions: EndpointConditions { ready },
            hostname: host.map(Into::into),
            zone: None,
        };
        let slice = EndpointSlice {
            metadata: meta,
            address_type: "IPv4".into(),
            endpoints: vec![
                ep("10.1.0.1", Some(true), Some("db-0")),
                ep("10.1.0.2", None, None),
                ep("10.1.0.3", Some(false), Some("db-2")),
            ],
        };
        let d = annotated_endpoints(&objects(vec![h.clone()], vec![slice.clone()]));
        assert_eq!(
            targets(find(&d, "db.ex.com", RecordType::A).unwrap()),
            ["10.1.0.1", "10.1.0.2"]
        );
        assert_eq!(
            targets(find(&d, "db-0.db.ex.com", RecordType::A).unwrap()),
            ["10.1.0.1"]
        );
        assert!(
            find(&d, "db-2.db.ex.com", RecordType::A).is_none(),
            "not ready"
        );
        h.spec.publish_not_ready_addresses = Some(true);
        let d = annotated_endpoints(&objects(vec![h], vec![slice]));
        assert_eq!(
            find(&d, "db.ex.com", RecordType::A).unwrap().targets.len(),
            3
        );
    }

    #[test]
    fn xdns_15_external_name_is_a_cname() {
        let mut e = svc(
            "ext",
            "ExternalName",
            &[("external-dns.kubernetes.io/hostname", "ext.ex.com")],
        );
        e.spec.external_name = Some("backend.example.org.".into());
        let d = annotated_endpoints(&objects(vec![e], vec![]));
        assert_eq!(
            targets(find(&d, "ext.ex.com", RecordType::Cname).unwrap()),
            ["backend.example.org"]
        );
    }

    #[test]
    fn xdns_14_target_overrides_and_classifies() {
        let s = svc(
            "t",
            "LoadBalancer",
            &[
                ("external-dns.kubernetes.io/hostname", "t.ex.com"),
                (
                    "external-dns.kubernetes.io/target",
                    "192.0.2.5, 2001:db8::5",
                ),
            ],
        );
        let d = annotated_endpoints(&objects(vec![s], vec![]));
        assert_eq!(
            targets(find(&d, "t.ex.com", RecordType::A).unwrap()),
            ["192.0.2.5"]
        );
        assert_eq!(
            targets(find(&d, "t.ex.com", RecordType::Aaaa).unwrap()),
            ["2001:db8::5"]
        );
        let c = svc(
            "c",
            "ClusterIP",
            &[
                ("external-dns.kubernetes.io/hostname", "c.ex.com"),
                (
                    "external-dns.alpha.kubernetes.io/target",
                    "edge.example.net",
                ),
            ],
        );
        let d = annotated_endpoints(&objects(vec![c], vec![]));
        assert_eq!(
            targets(find(&d, "c.ex.com", RecordType::Cname).unwrap()),
            ["edge.example.net"]
        );
    }

    #[test]
    fn xdns_13_ttl_seconds_durations_zero_and_range() {
        assert_eq!(parse_ttl("60"), Ok(Some(60)));
        assert_eq!(parse_ttl("1m30s"), Ok(Some(90)));
        assert_eq!(parse_ttl("1h"), Ok(Some(3600)));
        assert_eq!(parse_ttl("0"), Ok(None));
        assert!(parse_ttl("2147483648").is_err());
        assert!(parse_ttl("soon").is_err());
        let mut s = svc(
            "t",
            "LoadBalancer",
            &[
                ("external-dns.kubernetes.io/hostname", "t.ex.com"),
                ("external-dns.alpha.kubernetes.io/ttl", "2m"),
            ],
        );
        s.spec.external_ips = vec!["192.0.2.1".into()];
        let d = annotated_endpoints(&objects(vec![s.clone()], vec![]));
        assert_eq!(d.endpoints[0].ttl, Some(120));
        s.metadata
            .annotations
            .insert("external-dns.alpha.kubernetes.io/ttl", "-3");
        let d = annotated_endpoints(&objects(vec![s], vec![]));
        assert_eq!(d.endpoints[0].ttl, None);
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    }

    #[test]
    fn merging_clusters_unions_targets_and_keeps_cname_alone() {
        let ep = |name: &str, t, target: &str, ttl| Endpoint {
            name: name.into(),
            record_type: t,
            targets: BTreeSet::from([target.to_owned()]),
            ttl,
            resource: "service/a/b".into(),
        };
        let d = merge_endpoints([
            ep("x.ex.com", RecordType::A, "192.0.2.1", Some(300)),
            ep("x.ex.com", RecordType::A, "192.0.2.2", Some(60)),
            ep("x.ex.com", RecordType::Cname, "other.example", None),
            ep("y.ex.com", RecordType::Cname, "b.example", None),
            ep("y.ex.com", RecordType::Cname, "a.example", None),
        ]);
        assert_eq!(d.endpoints.len(), 2);
        assert_eq!(targets(&d.endpoints[0]), ["192.0.2.1", "192.0.2.2"]);
        assert_eq!(d.endpoints[0].ttl, Some(60));
        assert_eq!(targets(&d.endpoints[1]), ["a.example"]);
        assert_eq!(d.warnings.len(), 2);
    }

    #[test]
    fn clusterset_names_carry_every_alive_cluster_with_a_ready_endpoint() {
        use fleetdns_core::{
            ClusterId, ClusterView, Endpoint as Ep, Export, ServiceKey, Timestamp,
        };
        use std::sync::Arc;
        let key = ServiceKey::new("default", "payment").unwrap();
        let export = |cluster: &str, ip: &str, ready: bool| Export {
            key: key.clone(),
            cluster: ClusterId::new(cluster).unwrap(),
            service_type: ServiceType::ClusterSetIp,
            ports: vec![].into(),
            cluster_ips: vec![ip.parse().unwrap()].into(),
            endpoints: vec![Ep {
                addresses: vec!["10.9.0.1".parse().unwrap()].into(),
                hostname: None,
                ready,
                zone: None,
            }]
            .into(),
            created: Timestamp(1),
        };
        let mut snap = FleetSnapshot::default();
        for (c, ip, ready, alive) in [
            ("c1", "10.0.0.1", true, true),
            ("c2", "10.0.0.2", true, false),
            ("c3", "10.0.0.3", false, true),
        ] {
            let e = export(c, ip, ready);
            snap.clusters.insert(
                ClusterId::new(c).unwrap(),
                ClusterView {
                    alive,
                    exports: Arc::new([(key.clone(), Arc::new(e))].into()),
                    service_entries: Arc::default(),
                    published: Timestamp(1),
                },
            );
        }
        let eps = clusterset_endpoints(&snap, "fleet.example.com");
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].name, "payment.default.fleet.example.com");
        assert_eq!(
            targets(&eps[0]),
            ["10.0.0.1"],
            "c2 is dead, c3 has no ready endpoint"
        );
        assert_eq!(eps[0].resource, "service/default/payment");
    }
}
