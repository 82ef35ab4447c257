//! Mesh names into the answer table (SPEC §2.3, seed approach 4), compiled per snapshot like
//! the other zones:
//!
//! - the hosts of Istio ServiceEntries with the addresses [`fleetdns_core::mesh::plan`] decides
//!   (IST-2, IST-14), wildcards as one wildcard node (IST-3, IST-10); a host some Kubernetes
//!   zone answers already is left to it (IST-15);
//! - `<svc>.<ns>.<cluster>`: that cluster's export (ClusterIPs, or ready endpoints when headless);
//! - `<svc>.<ns>.global`: the service's fleet VIPs, both families (SPEC §4).
//!
//! Each is in a zone with an SOA (AA, SOA on every negative answer, NODATA for a missing
//! family, K8S-21). A ServiceEntry host outside every served zone gets a zone of its own: its
//! `<cluster>` mesh zone when it has the `<svc>.<ns>.<cluster>` shape, else its parent domain.

use std::net::IpAddr;

use fleetdns_core::{FleetSnapshot, Merged, ServiceKey, ServiceType};

use crate::compile::{ready_ips, soa_params};
use crate::config::ZonesConfig;
use crate::table::{Selection, TableBuilder};
use crate::wire::{encode_name, prefix_name};

/// The zone a ServiceEntry host belongs to when no served zone holds it: the mesh zone of a
/// `<svc>.<ns>.<cluster>` host whose cluster has a `[mesh] gateways` entry (clusters of the
/// fleet have their zone already), the suffix of a wildcard, else the host's parent domain,
/// or the host itself when its parent is a top-level domain: fleetdns never makes itself the
/// zone of a whole TLD (`example.com` is its own zone, `*.com` is not served).
///
/// `None` for Kubernetes service names (`<svc>.<ns>.svc.<domain>`, anything under
/// `cluster.local`): such an entry decorates a Kubernetes service that the cluster DNS answers
/// (IST-15); taking a zone for it would take the cluster's own names away from its DNS.
pub fn host_zone(config: &ZonesConfig, host: &str) -> Option<String> {
    if is_kubernetes_name(host) {
        return None;
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        return suffix.contains('.').then(|| suffix.to_owned());
    }
    if let Some(z) = config.mesh.cluster_zone_of(host) {
        let known = config
            .mesh
            .gateways
            .keys()
            .any(|c| config.mesh.cluster_zone_name(c) == z);
        if known {
            return Some(z);
        }
    }
    match host.split_once('.') {
        Some((_, parent)) if parent.contains('.') => Some(parent.to_owned()),
        _ => Some(host.to_owned()),
    }
}

/// Every mesh zone the snapshot serves: `<cluster>` per cluster of the fleet and per cluster
/// with a `[mesh] gateways` entry, `global`, and the zones of ServiceEntry hosts outside the
/// other served zones (for `fleetdns stub-domains`).
pub fn mesh_zone_names(snapshot: &FleetSnapshot, config: &ZonesConfig) -> Vec<String> {
    let mut zones = std::collections::BTreeSet::new();
    if !config.mesh.enabled {
        return Vec::new();
    }
    for cluster in snapshot.clusters.keys() {
        zones.insert(config.mesh.cluster_zone_name(cluster.as_str()));
    }
    for cluster in config.mesh.gateways.keys() {
        zones.insert(config.mesh.cluster_zone_name(cluster));
    }
    if !config.mesh.global_suffix.is_empty() {
        zones.insert(config.mesh.global_suffix.clone());
    }
    let mut other: Vec<String> = vec![config.clusterset.name.clone()];
    if config.cluster_zones.enabled {
        other.extend(
            snapshot
                .clusters
                .keys()
                .map(|c| config.cluster_zone_name(c.as_str())),
        );
    }
    let under = |name: &str, apex: &str| name == apex || name.ends_with(&format!(".{apex}"));
    let entries = fleetdns_core::mesh::entries_by_age(snapshot);
    for host in entries.iter().flat_map(|e| &e.hosts) {
        let name = host.strip_prefix("*.").unwrap_or(host);
        if other.iter().chain(zones.iter()).any(|z| under(name, z)) {
            continue;
        }
        if let Some(z) = host_zone(config, host) {
            zones.insert(z);
        }
    }
    zones.into_iter().collect()
}

/// `<svc>.<ns>.svc.<domain>` (or a wildcard over such names) and anything under the default
/// cluster domain `cluster.local`.
pub fn is_kubernetes_name(host: &str) -> bool {
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(suffix) => (true, suffix),
        None => (false, host),
    };
    let labels: Vec<&str> = name.split('.').collect();
    let svc_at = |i: usize| labels.len() > i + 1 && labels[i] == "svc";
    name == "cluster.local"
        || name.ends_with(".cluster.local")
        || if wildcard {
            svc_at(0) || svc_at(1)
        } else {
            svc_at(2)
        }
}

fn mesh_zone(
    b: &mut TableBuilder,
    config: &ZonesConfig,
    apex_name: &str,
    serial: u32,
) -> Option<(u16, Vec<u8>)> {
    let apex = encode_name(apex_name).ok()?;
    if let Some(z) = b.zone_at(&apex) {
        return Some((z, apex));
    }
    let soa = soa_params(&config.mesh.soa, &apex, config.mesh.ttl, serial);
    match b.add_zone(&apex, &soa) {
        Some(z) => Some((z, apex)),
        None => {
            tracing::warn!(zone = %apex_name, "mesh zone clashes with another served zone, skipped");
            None
        }
    }
}

pub(crate) fn compile_mesh(
    b: &mut TableBuilder,
    snapshot: &FleetSnapshot,
    merged: &Merged,
    config: &ZonesConfig,
    serial: u32,
) {
    let mesh = &config.mesh;
    let ttl = mesh.ttl;
    // The zones first, so ServiceEntry hosts under them land in them.
    let mut cluster_zones = Vec::new();
    for (cluster, view) in &snapshot.clusters {
        if let Some((zone, apex)) =
            mesh_zone(b, config, &mesh.cluster_zone_name(cluster.as_str()), serial)
        {
            cluster_zones.push((zone, apex, view));
        }
    }
    let global = if mesh.global_suffix.is_empty() {
        None
    } else {
        mesh_zone(b, config, &mesh.global_suffix, serial)
    };

    // ServiceEntry hosts: before the generated names, after the Kubernetes zones (IST-15).
    let plan = fleetdns_core::mesh::plan(snapshot);
    for (host, answer) in &plan.hosts {
        let wildcard = host.starts_with("*.");
        let name = host.strip_prefix("*.").unwrap_or(host);
        let Ok(owner) = encode_name(name) else {
            continue;
        };
        let zone = match b.zone_of(&owner) {
            Some(z) => z,
            None => {
                let Some(apex) = host_zone(config, host) else {
                    continue;
                };
                match mesh_zone(b, config, &apex, serial) {
                    Some((z, _)) => z,
                    None => continue,
                }
            }
        };
        if wildcard {
            for ip in &answer.ips {
                b.add_wildcard_ip(zone, &owner, *ip, ttl, Selection::Rotate);
            }
            continue;
        }
        if b.has_addresses(&owner) {
            tracing::debug!(host = %host, "ServiceEntry host is a Kubernetes service name; the Kubernetes answer wins (IST-15)");
            continue;
        }
        for ip in &answer.ips {
            // IST-8: shuffled per query.
            b.add_ip(zone, &owner, *ip, ttl, Selection::Rotate);
        }
    }

    // `<svc>.<ns>.<cluster>`: that cluster's export.
    for (zone, apex, view) in &cluster_zones {
        for export in view.exports.values() {
            let Ok(owner) = prefix_name(&[export.key.name(), export.key.namespace()], apex) else {
                continue;
            };
            if b.has_addresses(&owner) {
                continue; // a ServiceEntry declared this very name: its addresses stand
            }
            let ips: Vec<IpAddr> = match export.service_type {
                ServiceType::ClusterSetIp => export.cluster_ips.to_vec(),
                ServiceType::Headless => ready_ips(export),
            };
            if ips.is_empty() {
                continue; // as K8S-14: a headless service without ready endpoints is NXDOMAIN
            }
            let selection = match export.service_type {
                ServiceType::ClusterSetIp => Selection::Fixed,
                ServiceType::Headless => Selection::Rotate,
            };
            for ip in ips {
                b.add_ip(*zone, &owner, ip, ttl, selection);
            }
        }
    }

    // `<svc>.<ns>.global`: the fleet VIPs.
    if let Some((zone, apex)) = global {
        for key in merged.keys() {
            let Ok(owner) = prefix_name(&[key.name(), key.namespace()], &apex) else {
                continue;
            };
            if b.has_addresses(&owner) {
                continue;
            }
            let v4 = snapshot.vips.get(key).copied();
            let v6 = snapshot.vips_v6.get(key).copied().map(IpAddr::V6);
            for ip in v4.into_iter().chain(v6) {
                b.add_ip(zone, &owner, ip, ttl, Selection::Fixed);
            }
        }
    }
}

/// Why a mesh name answers what it does, for `fleetdns query` (the explain module): rule and
/// text per step; `None` when the name is not a mesh name.
pub fn explain_name(
    snapshot: &FleetSnapshot,
    config: &ZonesConfig,
    name: &str,
) -> Option<Vec<(&'static str, String)>> {
    use fleetdns_core::mesh::AddressSource;
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let plan = fleetdns_core::mesh::plan(snapshot);
    let list = |ips: &[IpAddr]| {
        ips.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let owner = |host: &str, a: &fleetdns_core::mesh::HostAnswer| {
        let (rule, from) = match a.source {
            AddressSource::Spec => ("IST-2", "its spec.addresses"),
            AddressSource::Status => ("IST-14", "the address Istio wrote in its status"),
            AddressSource::Allocated => ("IST-14", "VIPs fleetdns allocated for the host"),
        };
        (
            rule,
            format!(
                "{host} is a host of ServiceEntry {} in cluster {} (the oldest entry naming it); it answers {from}: {}",
                a.entry.label(),
                a.entry.cluster,
                list(&a.ips)
            ),
        )
    };
    if let Some(a) = plan.hosts.get(&name) {
        return Some(vec![owner(&name, a)]);
    }
    let mut suffix = name.as_str();
    while let Some((_, rest)) = suffix.split_once('.') {
        let wildcard = format!("*.{rest}");
        if let Some(a) = plan.hosts.get(&wildcard) {
            let (_, text) = owner(&wildcard, a);
            return Some(vec![(
                "IST-3",
                format!("{name} is below the wildcard host: {text}"),
            )]);
        }
        suffix = rest;
    }
    if let Some(why) = plan.unserved.get(&name) {
        return Some(vec![(
            "IST-2",
            format!("{name} is a ServiceEntry host that is not served: {why}"),
        )]);
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() >= 3 {
        let (svc, ns, zone) = (labels[0], labels[1], labels[2..].join("."));
        if !config.mesh.global_suffix.is_empty() && zone == config.mesh.global_suffix {
            let key = ServiceKey::new(ns, svc).ok()?;
            let v4 = snapshot.vips.get(&key).map(ToString::to_string);
            let v6 = snapshot.vips_v6.get(&key).map(ToString::to_string);
            let vips: Vec<String> = v4.into_iter().chain(v6).collect();
            return Some(vec![(
                "IST-6",
                if vips.is_empty() {
                    format!(
                        "{name} would answer the fleet VIPs of {ns}/{svc}, which has none (not exported by a live cluster, or no VIP yet)"
                    )
                } else {
                    format!(
                        "{name} answers the fleet VIPs of {ns}/{svc}: {}",
                        vips.join(", ")
                    )
                },
            )]);
        }
        let cluster = snapshot
            .clusters
            .keys()
            .find(|c| config.mesh.cluster_zone_name(c.as_str()) == zone)?;
        let key = ServiceKey::new(ns, svc).ok()?;
        let export = snapshot.clusters[cluster].exports.get(&key);
        return Some(vec![(
            "IST-5",
            match export {
                Some(e) => format!(
                    "{name} answers cluster {cluster}'s export of {ns}/{svc} ({}): its ClusterIPs, or its ready endpoints when headless",
                    e.service_type
                ),
                None => format!("cluster {cluster} exports no {ns}/{svc}"),
            },
        )]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ist15_kubernetes_names_are_recognized() {
        for yes in [
            "reviews.default.svc.cluster.local",
            "reviews.default.svc.cluster-2.example",
            "*.default.svc.cluster.local",
            "*.svc.cluster.local",
            "*.svc.example.org",
            "cluster.local",
            "anything.cluster.local",
        ] {
            assert!(is_kubernetes_name(yes), "{yes}");
        }
        for no in [
            "api.svc.example.com",
            "reviews.default.cluster-2",
            "*.example.com",
            "svc.example.com",
            "a.b.svc",
        ] {
            assert!(!is_kubernetes_name(no), "{no}");
        }
    }

    #[test]
    fn explain_names_the_entry_the_rule_and_the_source() {
        use fleetdns_core::service_entry::{Resolution, ServiceEntry};
        use fleetdns_core::{ClusterId, ClusterView, Timestamp};
        use std::sync::Arc;
        let c = ClusterId::new("cluster-1").unwrap();
        let entry = |name: &str, host: &str, addresses: Vec<IpAddr>| ServiceEntry {
            namespace: "istio-system".into(),
            name: name.into(),
            cluster: c.clone(),
            hosts: vec![host.into()],
            addresses,
            status_addresses: vec![],
            resolution: Resolution::Dns,
            autoallocate: false,
            created: Timestamp(1),
        };
        let set: fleetdns_core::ServiceEntrySet = [
            entry(
                "r",
                "ratings.default.cluster-2",
                vec!["240.0.0.2".parse().unwrap()],
            ),
            entry(
                "w",
                "*.wild.example.com",
                vec!["192.0.2.1".parse().unwrap()],
            ),
            entry("o", "optout.example.com", vec![]),
        ]
        .into_iter()
        .map(|e| (e.label(), Arc::new(e)))
        .collect();
        let mut snap = FleetSnapshot::default();
        snap.clusters.insert(
            c.clone(),
            ClusterView {
                alive: true,
                exports: Arc::default(),
                published: Timestamp(1),
                service_entries: Arc::new(set),
            },
        );
        let config = ZonesConfig::default();
        let one = |n: &str| explain_name(&snap, &config, n).unwrap().remove(0);
        let (rule, text) = one("Ratings.default.cluster-2.");
        assert_eq!(rule, "IST-2");
        assert!(
            text.contains("istio-system/r") && text.contains("240.0.0.2"),
            "{text}"
        );
        assert_eq!(one("a.b.wild.example.com").0, "IST-3");
        let (rule, text) = one("optout.example.com");
        assert_eq!(rule, "IST-2");
        assert!(text.contains("not served"), "{text}");
        assert!(one("web.default.global").1.contains("none"));
        assert!(one("web.default.cluster-1").1.contains("exports no"));
        assert!(explain_name(&snap, &config, "example.com").is_none());
    }
}
