//! Snapshot → [`AnswerTable`]: the answer rules of SPEC §2.1–2.2 and §3, applied once per
//! registry change: the whole fleet with [`compile`], or only the services that changed with
//! [`incremental::Compiler`].

pub mod incremental;

use std::net::IpAddr;

use fleetdns_core::{
    ClusterId, Endpoint, Export, FleetSnapshot, Merged, MergedService, ServiceKey, ServiceType,
};

use crate::config::{AnswerPolicy, SoaConfig, ZonesConfig};
use crate::table::{AnswerTable, Selection, SoaParams, TableBuilder};
use crate::wire::{MAX_NAME, encode_name, prefix_name};

/// `dns-version` TTL of the specs' examples (K8S-3, MCS-11).
const VERSION_TTL: u32 = 28_800;
const MCS_DNS_VERSION: &str = "1.0.0";
const K8S_DNS_VERSION: &str = "1.1.0";

/// Compiles one snapshot. `merged` is `fleetdns_core::merge_fleet(snapshot)`; `serial` is the
/// SOA serial (the snapshot's wall-clock time).
pub fn compile(
    snapshot: &FleetSnapshot,
    merged: &Merged,
    config: &ZonesConfig,
    serial: u32,
) -> AnswerTable {
    // About four names and eight records per service in each zone it is in (the service,
    // `_tcp` and a name per port, a record per address and per port, twice), and a name and
    // two records per endpoint (the headless services' pods).
    let services = merged.len() + snapshot.export_count();
    let endpoints: usize = snapshot
        .clusters
        .values()
        .flat_map(|view| view.exports.values())
        .map(|e| e.endpoints.len())
        .sum();
    let mut b =
        TableBuilder::with_capacity(4 * services + 2 * endpoints, 8 * services + 4 * endpoints);
    if config.clusterset.enabled {
        compile_clusterset(&mut b, snapshot, merged, config, serial);
    }
    if config.cluster_zones.enabled {
        for (cluster, view) in &snapshot.clusters {
            let zone_name = config.cluster_zone_name(cluster.as_str());
            let Ok(apex) = encode_name(&zone_name) else {
                tracing::warn!(cluster = %cluster, zone = %zone_name, "per-cluster zone name is not a valid DNS name, skipped");
                continue;
            };
            let soa = soa_params(
                &config.cluster_zones.soa,
                &apex,
                config.cluster_zones.ttl,
                serial,
            );
            let Some(zone) = b.add_zone(&apex, &soa) else {
                tracing::warn!(cluster = %cluster, zone = %zone_name, "per-cluster zone clashes with another served zone, skipped");
                continue;
            };
            let ttl = config.cluster_zones.ttl;
            if let Ok(owner) = prefix_name(&["dns-version"], &apex) {
                b.add_txt(zone, &owner, VERSION_TTL, K8S_DNS_VERSION);
            }
            ensure_svc(&mut b, zone, &apex);
            // A.6: `pod.<zone>` exists (NODATA); pod names themselves are off, as in CoreDNS's
            // default `pods disabled`, so `<ip>.<ns>.pod.<zone>` is NXDOMAIN.
            if let Ok(owner) = prefix_name(&["pod"], &apex) {
                b.ensure(zone, &owner);
            }
            for export in view.exports.values() {
                cluster_service(&mut b, zone, &apex, ttl, export);
            }
        }
    }
    if config.mesh.enabled {
        crate::mesh::compile_mesh(&mut b, snapshot, merged, config, serial);
    }
    b.build(snapshot.version)
}

pub(crate) fn soa_params(cfg: &SoaConfig, apex: &[u8], ttl: u32, serial: u32) -> SoaParams {
    let name_or = |v: &Option<String>, label: &str| {
        v.as_deref()
            .and_then(|n| encode_name(n).ok())
            .or_else(|| prefix_name(&[label], apex).ok())
            .unwrap_or_else(|| apex.to_vec())
    };
    let mname = match &cfg.mname {
        Some(_) => name_or(&cfg.mname, "ns"),
        None => prefix_name(&["ns", "dns"], apex).unwrap_or_else(|_| apex.to_vec()),
    };
    SoaParams {
        mname,
        rname: name_or(&cfg.rname, "hostmaster"),
        serial,
        refresh: cfg.refresh,
        retry: cfg.retry,
        expire: cfg.expire,
        minimum: cfg.minimum.unwrap_or(ttl),
    }
}

/// `svc.<zone>` always exists (NODATA, never NXDOMAIN; dns-behaviour A.6), even before any
/// service is exported, so a negative answer never denies the whole `svc` subtree (RFC 8020).
fn ensure_svc(b: &mut TableBuilder, zone: u16, apex: &[u8]) {
    if let Ok(owner) = prefix_name(&["svc"], apex) {
        b.ensure(zone, &owner);
    }
}

/// `<svc>.<ns>.svc.<apex>`.
fn service_name(key: &ServiceKey, apex: &[u8]) -> Option<Vec<u8>> {
    prefix_name(&[key.name(), key.namespace(), "svc"], apex).ok()
}

/// K8S-11: the endpoint's hostname, else the dashed IP (`10-1-2-3`, IPv6 `:` → `-`).
fn endpoint_names(ep: &Endpoint) -> Vec<(String, Vec<IpAddr>)> {
    match &ep.hostname {
        Some(h) => vec![(h.to_string(), ep.addresses.to_vec())],
        None => ep
            .addresses
            .iter()
            .map(|ip| (dashed(*ip), vec![*ip]))
            .collect(),
    }
}

fn dashed(ip: IpAddr) -> String {
    let mut s = ip.to_string().replace(['.', ':'], "-");
    if s.ends_with('-') {
        s.push('0');
    }
    if s.starts_with('-') {
        s.insert(0, '0');
    }
    s
}

/// K8S-8: weight = floor(100 / N), at least 1.
fn srv_weight(n: usize) -> u16 {
    (100 / n.max(1)).max(1) as u16
}

fn compile_clusterset(
    b: &mut TableBuilder,
    snapshot: &FleetSnapshot,
    merged: &Merged,
    config: &ZonesConfig,
    serial: u32,
) {
    let cs = &config.clusterset;
    let Ok(apex) = encode_name(&cs.name) else {
        return; // validated with the config; nothing to serve otherwise
    };
    let soa = soa_params(&cs.soa, &apex, cs.ttl, serial);
    let Some(zone) = b.add_zone(&apex, &soa) else {
        return;
    };
    if let Ok(owner) = prefix_name(&["dns-version"], &apex) {
        b.add_txt(zone, &owner, VERSION_TTL, MCS_DNS_VERSION);
    }
    ensure_svc(b, zone, &apex);
    for (key, service) in merged {
        clusterset_service(b, zone, &apex, snapshot, key, service, config);
    }
}

/// One merged service's names in the clusterset zone: `<svc>.<ns>.svc.<apex>` and everything
/// under it (MCS-5..16, LH-12), and its namespace node.
fn clusterset_service(
    b: &mut TableBuilder,
    zone: u16,
    apex: &[u8],
    snapshot: &FleetSnapshot,
    key: &ServiceKey,
    service: &MergedService,
    config: &ZonesConfig,
) {
    let cs = &config.clusterset;
    let alive = |c: &ClusterId| snapshot.clusters.get(c).is_some_and(|v| v.alive);
    let Some(svc_name) = service_name(key, apex) else {
        tracing::warn!(service = %key, "name too long for the clusterset zone (MCS-8), skipped");
        return;
    };
    // The namespace exists while it exports something: NODATA, not NXDOMAIN.
    b.ensure(zone, parent(&svc_name));
    let live: Vec<&Export> = service
        .members
        .iter()
        .map(|e| &**e)
        .filter(|e| alive(&e.cluster))
        .collect();
    match service.service_type {
        ServiceType::ClusterSetIp => clusterset_ip(
            b,
            zone,
            &svc_name,
            cs.ttl,
            cs.policy,
            config.local_cluster.as_ref(),
            service,
            &live,
            snapshot.vips.get(key).copied(),
        ),
        ServiceType::Headless => clusterset_headless(b, zone, &svc_name, cs.ttl, service, &live),
    }
    if cs.lighthouse_names {
        // LH-12: that cluster's own addresses, even when it is unhealthy (dead clusters
        // take no part in the merge, so read every cluster's export of the same type).
        let of_type = snapshot
            .clusters
            .values()
            .filter_map(|view| view.exports.get(key))
            .filter(|e| e.service_type == service.service_type);
        for export in of_type {
            let Ok(owner) = prefix_name(&[export.cluster.as_str()], &svc_name) else {
                continue;
            };
            let ips: Vec<IpAddr> = match export.service_type {
                ServiceType::ClusterSetIp => export.cluster_ips.to_vec(),
                ServiceType::Headless => ready_ips(export),
            };
            // No address, no name: an empty `<cluster>.<svc>` node would turn a headless
            // service without ready endpoints from NXDOMAIN (MCS-14) into NODATA.
            for ip in ips {
                b.add_ip(zone, &owner, ip, cs.ttl, Selection::Fixed);
            }
        }
    }
}

/// A name without its first label.
pub(crate) fn parent(name: &[u8]) -> &[u8] {
    &name[1 + name[0] as usize..]
}

pub(crate) fn ready_ips(export: &Export) -> Vec<IpAddr> {
    export
        .endpoints
        .iter()
        .filter(|e| e.ready)
        .flat_map(|e| e.addresses.iter().copied())
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn clusterset_ip(
    b: &mut TableBuilder,
    zone: u16,
    owner: &[u8],
    ttl: u32,
    policy: AnswerPolicy,
    local: Option<&ClusterId>,
    service: &MergedService,
    live: &[&Export],
    vip: Option<IpAddr>,
) {
    b.ensure(zone, owner);
    // SPEC §3, decided in one place (crate::policy) so `explain` reports the same choice.
    let choice = crate::policy::choose(policy, local, live, vip);
    let mut ips = Vec::new();
    if let Some(vip) = choice.vip {
        // SPEC §4 / LH-13: the one clusterset VIP; the dataplane routes it.
        b.add_ip(zone, owner, vip, ttl, Selection::Fixed);
        ips.push(vip);
    }
    for export in &choice.chosen {
        for ip in &export.cluster_ips {
            b.add_ip(zone, owner, *ip, ttl, choice.selection);
            ips.push(*ip);
        }
    }
    // MCS-13: SRV per named port, at `_<port>._<proto>.<svc>` and at the bare name.
    service_srv(b, zone, owner, ttl, &service.ports, &ips);
}

/// The SRV records of a service with one address set (ClusterSetIP, K8S-7/8, MCS-13): per
/// named port one at `_<port>._<proto>.<owner>` (weight 100) and one at the bare name (weight
/// shared), each targeting the service name with `ips` as additional records.
fn service_srv(
    b: &mut TableBuilder,
    zone: u16,
    owner: &[u8],
    ttl: u32,
    ports: &[fleetdns_core::Port],
    ips: &[IpAddr],
) {
    let named: Vec<_> = ports
        .iter()
        .filter_map(|p| Some((p.name.as_deref()?, p)))
        .collect();
    let weight = srv_weight(named.len());
    // The bare name's records first, one run of one owner (the names and records come in
    // the same order either way: the owner exists before any `_<port>` name).
    for (_, port) in &named {
        b.add_srv(zone, owner, ttl, weight, port.port, owner, ips);
    }
    for (name, port) in &named {
        if let Some(srv_owner) = srv_owner(name, port, owner) {
            b.add_srv(zone, &srv_owner, ttl, 100, port.port, owner, ips);
        }
    }
}

/// `_<port>._<proto>.<owner>` (K8S-7), lower-cased; `None` when a label or the name is too
/// long. Written in place: formatting the labels first allocated three times per port.
fn srv_owner(port_name: &str, port: &fleetdns_core::Port, owner: &[u8]) -> Option<Vec<u8>> {
    let proto = port.protocol.srv_label();
    let len = 2 + port_name.len() + 2 + proto.len() + owner.len();
    if 1 + port_name.len() > 63 || 1 + proto.len() > 63 || len > MAX_NAME {
        return None;
    }
    let mut name = Vec::with_capacity(len);
    for label in [port_name, proto] {
        name.push(1 + label.len() as u8);
        name.push(b'_');
        name.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    name.extend_from_slice(owner);
    Some(name)
}

fn clusterset_headless(
    b: &mut TableBuilder,
    zone: u16,
    owner: &[u8],
    ttl: u32,
    service: &MergedService,
    live: &[&Export],
) {
    // (cluster, hostname, ips, export) for every ready endpoint of a healthy cluster.
    let mut pods: Vec<(Vec<u8>, Vec<IpAddr>, &Export)> = Vec::new();
    for export in live {
        for ep in export.endpoints.iter().filter(|e| e.ready) {
            for (host, ips) in endpoint_names(ep) {
                match prefix_name(&[&host, export.cluster.as_str()], owner) {
                    Ok(name) => pods.push((name, ips, export)),
                    Err(e) => tracing::warn!(error = %e, "endpoint name too long (MCS-8), skipped"),
                }
            }
        }
    }
    if pods.is_empty() {
        return; // MCS-14: no ready endpoint anywhere → NXDOMAIN
    }
    for (name, ips, _) in &pods {
        for ip in ips {
            // MCS-14: A and AAAA cover the same subset (all of them).
            b.add_ip(zone, owner, *ip, ttl, Selection::Rotate);
            b.add_ip(zone, name, *ip, ttl, Selection::Fixed); // MCS-15
        }
    }
    // MCS-16: N endpoints × M named ports, each port only where its cluster exposes it (MCS-21).
    let mut bare: Vec<(&Vec<u8>, &Vec<IpAddr>, u16)> = Vec::new();
    for port in service.ports.iter() {
        let Some(pname) = port.name.as_deref() else {
            continue;
        };
        let serving: Vec<_> = pods
            .iter()
            .filter(|(_, _, e)| MergedService::exposes(e, port))
            .collect();
        let Some(srv_owner) = srv_owner(pname, port, owner) else {
            continue;
        };
        let weight = srv_weight(serving.len());
        for (name, ips, _) in &serving {
            b.add_srv(zone, &srv_owner, ttl, weight, port.port, name, ips);
            bare.push((name, ips, port.port));
        }
    }
    let weight = srv_weight(bare.len());
    for (name, ips, port) in bare {
        b.add_srv(zone, owner, ttl, weight, port, name, ips);
    }
}

/// One cluster's own service in its per-cluster zone, with the cluster DNS rules (K8S-4..14).
fn cluster_service(b: &mut TableBuilder, zone: u16, apex: &[u8], ttl: u32, export: &Export) {
    let Some(owner) = service_name(&export.key, apex) else {
        return;
    };
    b.ensure(zone, parent(&owner));
    let named: Vec<_> = export
        .ports
        .iter()
        .filter_map(|p| Some((p.name.as_deref()?, p)))
        .collect();
    match export.service_type {
        ServiceType::ClusterSetIp => {
            // K8S-4: the ClusterIPs, whether or not an endpoint is ready (A.6).
            for ip in &export.cluster_ips {
                b.add_ip(zone, &owner, *ip, ttl, Selection::Fixed);
            }
            service_srv(b, zone, &owner, ttl, &export.ports, &export.cluster_ips);
        }
        ServiceType::Headless => {
            let mut pods = Vec::new();
            for ep in export.endpoints.iter().filter(|e| e.ready) {
                for (host, ips) in endpoint_names(ep) {
                    if let Ok(name) = prefix_name(&[&host], &owner) {
                        pods.push((name, ips));
                    }
                }
            }
            if pods.is_empty() {
                return; // K8S-14: NXDOMAIN
            }
            for (name, ips) in &pods {
                for ip in ips {
                    b.add_ip(zone, &owner, *ip, ttl, Selection::Rotate); // K8S-9
                    b.add_ip(zone, name, *ip, ttl, Selection::Fixed); // K8S-10
                }
            }
            let bare_weight = srv_weight(pods.len() * named.len());
            for (pname, port) in &named {
                let Some(srv_owner) = srv_owner(pname, port, &owner) else {
                    continue;
                };
                for (name, ips) in &pods {
                    b.add_srv(
                        zone,
                        &srv_owner,
                        ttl,
                        srv_weight(pods.len()),
                        port.port,
                        name,
                        ips,
                    ); // K8S-12
                    b.add_srv(zone, &owner, ttl, bare_weight, port.port, name, ips);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_ip_names_follow_coredns() {
        assert_eq!(dashed("10.1.2.3".parse().unwrap()), "10-1-2-3");
        assert_eq!(dashed("fd00::1".parse().unwrap()), "fd00--1");
        assert_eq!(dashed("fd00::".parse().unwrap()), "fd00--0");
        assert_eq!(dashed("::1".parse().unwrap()), "0--1");
    }

    #[test]
    fn srv_weights_follow_k8s_8() {
        assert_eq!(srv_weight(1), 100);
        assert_eq!(srv_weight(3), 33);
        assert_eq!(srv_weight(500), 1);
    }
}
