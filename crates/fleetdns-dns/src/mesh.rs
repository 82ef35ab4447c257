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

use std::collections::BTreeMap;
use std::net::IpAddr;

use fleetdns_core::{FleetSnapshot, MergedService, ServiceKey, ServiceType};

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
    merged: &BTreeMap<ServiceKey, MergedService>,
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
                ServiceType::ClusterSetIp => export.cluster_ips.clone(),
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
}
