//! The clusterset view of a service: MCS-20..24 as pure functions.
//!
//! Exports are ordered oldest ServiceExport first (ties broken by cluster id, so every server
//! of the fleet agrees). The oldest export decides the type; exports of another type are left
//! out of the answers and recorded as a `TypeConflict`. Ports are the union, merged by name and
//! then by (protocol, port), with a `PortConflict` when the clusters' port sets differ.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::model::{Export, Port, Ports, ServiceType, shared_ports};
use crate::{ClusterId, FleetSnapshot, ServiceKey};

/// The mcs-api conflict kinds fleetdns detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConflictKind {
    Type,
    Port,
    IpFamily,
}

impl ConflictKind {
    /// The `Conflict=True` reason of the mcs-api (MCS-2).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Type => "TypeConflict",
            Self::Port => "PortConflict",
            Self::IpFamily => "IPFamilyConflict",
        }
    }
}

/// One conflicting property of a service. It applies to every export of the service (MCS-20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub kind: ConflictKind,
    /// The cluster whose export won: the oldest.
    pub winner: ClusterId,
    /// The clusters whose exports disagree with the merged result.
    pub clusters: Vec<ClusterId>,
    /// Names the field, the winner and why.
    pub message: String,
}

/// The merged clusterset view of one service. Its lists are boxed slices: one lives for each
/// service of the fleet, and none grows once merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedService {
    pub key: ServiceKey,
    pub service_type: ServiceType,
    /// Union of the members' ports, oldest first, without duplicate names or (protocol, port);
    /// shared with the exports (and other services) that have the same list.
    pub ports: Ports,
    /// Exports that take part in answers, oldest first.
    pub members: Box<[Arc<Export>]>,
    /// Exports left out because their type conflicts with the oldest export's (MCS-22).
    pub excluded: Box<[Arc<Export>]>,
    pub conflicts: Box<[Conflict]>,
}

impl MergedService {
    /// Whether `port` of the merged set is exposed by `export` (MCS-21: traffic to a
    /// conflicting port should only reach clusters that expose it).
    pub fn exposes(export: &Export, port: &Port) -> bool {
        export
            .ports
            .iter()
            .any(|p| p.name == port.name && p.protocol == port.protocol && p.port == port.port)
    }
}

/// Every service of the fleet, merged across clusters. Values are shared, so a copy of the
/// map with a few services merged again costs the map, not the services.
pub type Merged = BTreeMap<ServiceKey, Arc<MergedService>>;

/// Merges every export of one service. `None` when `exports` is empty.
pub fn merge_service(mut exports: Vec<Arc<Export>>) -> Option<MergedService> {
    exports.sort_by(|a, b| (a.created, &a.cluster).cmp(&(b.created, &b.cluster)));
    let oldest = exports.first()?.clone();
    let winner = oldest.cluster.clone();
    let (members, excluded): (Vec<_>, Vec<_>) = exports
        .into_iter()
        .partition(|e| e.service_type == oldest.service_type);
    let mut conflicts = Vec::new();
    if !excluded.is_empty() {
        let losers: Vec<ClusterId> = excluded.iter().map(|e| e.cluster.clone()).collect();
        conflicts.push(Conflict {
            kind: ConflictKind::Type,
            message: format!(
                "service type: {} exports it as {}, the oldest export (created {}); {} export it as {} and are left out",
                winner,
                oldest.service_type,
                oldest.created,
                join(&losers),
                excluded[0].service_type,
            ),
            winner: winner.clone(),
            clusters: losers,
        });
    }

    let ports = merge_ports(&members);
    let port_losers: Vec<ClusterId> = members
        .iter()
        .filter(|e| !same_port_set(&e.ports, &ports))
        .map(|e| e.cluster.clone())
        .collect();
    if !port_losers.is_empty() {
        let list: Vec<String> = ports.iter().map(ToString::to_string).collect();
        conflicts.push(Conflict {
            kind: ConflictKind::Port,
            message: format!(
                "ports: the clusters expose different ports; the union [{}] is served, {} (the oldest export) winning where names or (protocol, port) clash; {} differ",
                list.join(", "),
                winner,
                join(&port_losers),
            ),
            winner: winner.clone(),
            clusters: port_losers,
        });
    }

    let families = |e: &Export| -> (bool, bool) {
        let ips: Vec<IpAddr> = if e.service_type == ServiceType::ClusterSetIp {
            e.cluster_ips.to_vec()
        } else {
            e.endpoints
                .iter()
                .flat_map(|ep| ep.addresses.iter().copied())
                .collect()
        };
        (
            ips.iter().any(IpAddr::is_ipv4),
            ips.iter().any(IpAddr::is_ipv6),
        )
    };
    let oldest_families = families(&oldest);
    let family_losers: Vec<ClusterId> = members
        .iter()
        .filter(|e| {
            let f = families(e);
            // An export with no address at all (no endpoints yet) does not conflict.
            (f.0 || f.1) && f != oldest_families
        })
        .map(|e| e.cluster.clone())
        .collect();
    if !family_losers.is_empty() {
        conflicts.push(Conflict {
            kind: ConflictKind::IpFamily,
            message: format!(
                "ipFamilies: {} (the oldest export) serves {}; {} serve other families, so some backends are unreachable by one family",
                winner,
                family_names(oldest_families),
                join(&family_losers),
            ),
            winner,
            clusters: family_losers,
        });
    }

    Some(MergedService {
        key: oldest.key.clone(),
        service_type: oldest.service_type,
        ports,
        members: members.into(),
        excluded: excluded.into(),
        conflicts: conflicts.into(),
    })
}

/// MCS-21: union keyed first by name, then by (protocol, port); the oldest export wins a clash.
fn merge_ports(members: &[Arc<Export>]) -> Ports {
    let mut merged: Vec<Port> = Vec::new();
    for export in members {
        for p in export.ports.iter() {
            let name_clash = merged.iter().any(|m| m.name.is_some() && m.name == p.name);
            let number_clash = merged
                .iter()
                .any(|m| m.protocol == p.protocol && m.port == p.port);
            if !name_clash && !number_clash {
                merged.push(p.clone());
            }
        }
    }
    shared_ports(&merged)
}

fn same_port_set(ports: &[Port], merged: &[Port]) -> bool {
    ports.len() == merged.len()
        && ports.iter().all(|p| {
            merged
                .iter()
                .any(|m| m.name == p.name && m.protocol == p.protocol && m.port == p.port)
        })
}

fn family_names(f: (bool, bool)) -> &'static str {
    match f {
        (true, true) => "IPv4 and IPv6",
        (true, false) => "IPv4",
        (false, true) => "IPv6",
        (false, false) => "no address",
    }
}

fn join(ids: &[ClusterId]) -> String {
    ids.iter()
        .map(ClusterId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Merges every service of the fleet over the clusters that are alive: a dead cluster takes
/// no part in deciding a live service's type or ports. A service exported only by dead
/// clusters is still merged (over those), so its name stays known (NODATA, not NXDOMAIN) until
/// the registry drops them.
pub fn merge_fleet(snapshot: &FleetSnapshot) -> Merged {
    /// (exports of live clusters, exports of dead ones)
    type LiveDead = (Vec<Arc<Export>>, Vec<Arc<Export>>);
    let mut by_key: BTreeMap<&ServiceKey, LiveDead> = BTreeMap::new();
    for view in snapshot.clusters.values() {
        for (key, export) in view.exports.iter() {
            let (live, dead) = by_key.entry(key).or_default();
            if view.alive { live } else { dead }.push(export.clone());
        }
    }
    by_key
        .into_iter()
        .filter_map(|(key, (live, dead))| {
            let exports = if live.is_empty() { dead } else { live };
            Some((key.clone(), Arc::new(merge_service(exports)?)))
        })
        .collect()
}

/// [`merge_fleet`]'s result for one service: what a change of `key` needs re-merged.
pub fn merge_key(snapshot: &FleetSnapshot, key: &ServiceKey) -> Option<MergedService> {
    let (mut live, mut dead) = (Vec::new(), Vec::new());
    for view in snapshot.clusters.values() {
        if let Some(export) = view.exports.get(key) {
            if view.alive { &mut live } else { &mut dead }.push(export.clone());
        }
    }
    merge_service(if live.is_empty() { dead } else { live })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;
    use crate::model::{Endpoint, Protocol};

    fn port(name: Option<&str>, port: u16) -> Port {
        Port {
            name: name.map(Into::into),
            protocol: Protocol::Tcp,
            port,
            app_protocol: None,
        }
    }

    fn export(
        cluster: &str,
        created: i64,
        ty: ServiceType,
        ports: Vec<Port>,
        ip: &str,
    ) -> Arc<Export> {
        Arc::new(Export {
            key: ServiceKey::new("default", "web").unwrap(),
            cluster: ClusterId::new(cluster).unwrap(),
            service_type: ty,
            ports: ports.into(),
            cluster_ips: if ty == ServiceType::ClusterSetIp {
                vec![ip.parse().unwrap()].into()
            } else {
                vec![].into()
            },
            endpoints: vec![Endpoint {
                addresses: vec![ip.parse().unwrap()].into(),
                hostname: None,
                ready: true,
                zone: None,
            }]
            .into(),
            created: Timestamp(created),
        })
    }

    #[test]
    fn mcs20_oldest_export_wins_and_order_is_stable() {
        let a = export(
            "a",
            200,
            ServiceType::ClusterSetIp,
            vec![port(Some("http"), 80)],
            "10.0.0.1",
        );
        let b = export(
            "b",
            100,
            ServiceType::ClusterSetIp,
            vec![port(Some("http"), 80)],
            "10.0.0.2",
        );
        let m = merge_service(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(m.members[0].cluster.as_str(), "b");
        assert!(m.conflicts.is_empty(), "{:?}", m.conflicts);
        // Same creation time: the cluster id breaks the tie, whatever the input order.
        let c = export(
            "c",
            100,
            ServiceType::ClusterSetIp,
            vec![port(Some("http"), 80)],
            "10.0.0.3",
        );
        let m1 = merge_service(vec![c.clone(), b.clone()]).unwrap();
        let m2 = merge_service(vec![b, c]).unwrap();
        assert_eq!(m1, m2);
        assert_eq!(m1.members[0].cluster.as_str(), "b");
    }

    #[test]
    fn mcs22_type_conflict_keeps_oldest_type_and_excludes_newer() {
        let old = export("a", 100, ServiceType::Headless, vec![], "10.0.0.1");
        let new = export("b", 200, ServiceType::ClusterSetIp, vec![], "10.0.0.2");
        let m = merge_service(vec![new, old]).unwrap();
        assert_eq!(m.service_type, ServiceType::Headless);
        assert_eq!(m.members.len(), 1);
        assert_eq!(m.excluded[0].cluster.as_str(), "b");
        let c = m
            .conflicts
            .iter()
            .find(|c| c.kind == ConflictKind::Type)
            .unwrap();
        assert_eq!(c.winner.as_str(), "a");
        assert_eq!(c.kind.reason(), "TypeConflict");
        assert!(
            c.message.contains("service type") && c.message.contains("oldest"),
            "{}",
            c.message
        );
    }

    #[test]
    fn mcs21_ports_are_the_union_with_port_conflict() {
        let a = export(
            "a",
            100,
            ServiceType::ClusterSetIp,
            vec![port(Some("http"), 80)],
            "10.0.0.1",
        );
        let b = export(
            "b",
            200,
            ServiceType::ClusterSetIp,
            // same name, other number (clash: oldest wins); a new port; an unnamed port.
            vec![
                port(Some("http"), 8080),
                port(Some("grpc"), 9090),
                port(None, 7000),
            ],
            "10.0.0.2",
        );
        let m = merge_service(vec![a, b]).unwrap();
        let got: Vec<String> = m.ports.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["http:80/TCP", "grpc:9090/TCP", "7000/TCP"]);
        let c = m
            .conflicts
            .iter()
            .find(|c| c.kind == ConflictKind::Port)
            .unwrap();
        assert_eq!(c.kind.reason(), "PortConflict");
        assert_eq!(c.winner.as_str(), "a");
        assert!(c.clusters.iter().any(|x| x.as_str() == "b"));
        assert!(!MergedService::exposes(&m.members[0], &m.ports[1]));
        assert!(MergedService::exposes(&m.members[1], &m.ports[1]));
    }

    /// The IP families of a ClusterSetIP export are its ClusterIPs' (the addresses answered),
    /// not its pods': an IPv6 ClusterIP in front of IPv4 pods conflicts with an IPv4 one.
    #[test]
    fn ip_families_of_a_clusterset_ip_export_come_from_its_cluster_ips() {
        let a = export("a", 100, ServiceType::ClusterSetIp, vec![], "10.0.0.1");
        let v6 = export("b", 200, ServiceType::ClusterSetIp, vec![], "fd00::1");
        let b = Arc::new(Export {
            endpoints: a.endpoints.clone(),
            ..(*v6).clone()
        });
        let m = merge_service(vec![a, b]).unwrap();
        let c = m
            .conflicts
            .iter()
            .find(|c| c.kind == ConflictKind::IpFamily)
            .expect("an IP family conflict");
        assert_eq!(c.winner.as_str(), "a");
        assert_eq!(c.clusters.len(), 1);
        assert_eq!(c.clusters[0].as_str(), "b");
    }

    /// MCS-21: a cluster exposes a merged port only when name, protocol and number all match
    /// (one matching field is not enough: its SRV records would send traffic to a port the
    /// cluster does not serve).
    #[test]
    fn mcs21_a_port_is_exposed_only_with_the_same_name_protocol_and_number() {
        let e = export(
            "a",
            100,
            ServiceType::ClusterSetIp,
            vec![port(Some("http"), 80)],
            "10.0.0.1",
        );
        assert!(MergedService::exposes(&e, &port(Some("http"), 80)));
        assert!(
            !MergedService::exposes(&e, &port(Some("web"), 80)),
            "other name"
        );
        assert!(!MergedService::exposes(&e, &port(None, 80)), "no name");
        assert!(
            !MergedService::exposes(&e, &port(Some("http"), 8080)),
            "other number"
        );
        let udp = Port {
            protocol: Protocol::Udp,
            ..port(Some("http"), 80)
        };
        assert!(!MergedService::exposes(&e, &udp), "other protocol");
    }

    #[test]
    fn mcs21_same_number_under_two_names_is_not_duplicated() {
        let a = export(
            "a",
            100,
            ServiceType::ClusterSetIp,
            vec![port(Some("http"), 80)],
            "10.0.0.1",
        );
        let b = export(
            "b",
            200,
            ServiceType::ClusterSetIp,
            vec![port(Some("web"), 80)],
            "10.0.0.2",
        );
        let m = merge_service(vec![a, b]).unwrap();
        assert_eq!(m.ports.len(), 1);
        assert_eq!(m.ports[0].name.as_deref(), Some("http"));
        assert!(m.conflicts.iter().any(|c| c.kind == ConflictKind::Port));
    }

    #[test]
    fn mcs24_ip_family_conflict_is_recorded() {
        let a = export("a", 100, ServiceType::ClusterSetIp, vec![], "10.0.0.1");
        let b = export("b", 200, ServiceType::ClusterSetIp, vec![], "fd00::2");
        let m = merge_service(vec![a, b]).unwrap();
        let c = m
            .conflicts
            .iter()
            .find(|c| c.kind == ConflictKind::IpFamily)
            .unwrap();
        assert_eq!(c.kind.reason(), "IPFamilyConflict");
        assert_eq!(m.members.len(), 2, "a family conflict changes no answer");
    }

    #[test]
    fn a_dead_cluster_does_not_decide_a_live_service() {
        use crate::registry::ClusterView;
        let old_dead = export("a", 100, ServiceType::Headless, vec![], "10.0.0.1");
        let new_live = export("b", 200, ServiceType::ClusterSetIp, vec![], "10.0.0.2");
        let only_dead = Arc::new(Export {
            key: ServiceKey::new("default", "db").unwrap(),
            ..(*old_dead).clone()
        });
        let view = |alive, exports: Vec<Arc<Export>>| ClusterView {
            alive,
            exports: Arc::new(exports.into_iter().map(|e| (e.key.clone(), e)).collect()),
            published: crate::Timestamp(0),
            service_entries: Arc::default(),
        };
        let mut snap = FleetSnapshot::default();
        snap.clusters.insert(
            old_dead.cluster.clone(),
            view(false, vec![old_dead, only_dead]),
        );
        snap.clusters
            .insert(new_live.cluster.clone(), view(true, vec![new_live]));
        let merged = merge_fleet(&snap);
        let web = &merged[&ServiceKey::new("default", "web").unwrap()];
        assert_eq!(web.service_type, ServiceType::ClusterSetIp);
        assert!(web.conflicts.is_empty(), "{:?}", web.conflicts);
        let db = &merged[&ServiceKey::new("default", "db").unwrap()];
        assert_eq!(
            db.members[0].cluster.as_str(),
            "a",
            "a service of dead clusters only stays known"
        );
        // One service merged alone (what a change re-merges) is the whole merge's service.
        for (key, service) in &merged {
            assert_eq!(merge_key(&snap, key).as_ref(), Some(&**service), "{key}");
        }
        let gone = ServiceKey::new("default", "gone").unwrap();
        assert_eq!(merge_key(&snap, &gone), None);
    }
}
