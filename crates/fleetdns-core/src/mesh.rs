//! What every ServiceEntry host of the fleet is answered with, decided once per snapshot by
//! one pure function that the DNS compiler and the VIP allocators share (IST-2, IST-14):
//!
//! 1. The oldest entry naming a host owns it (creation time, then cluster, namespace, name).
//! 2. Its `spec.addresses` always win; they are never taken from it.
//! 3. Else its `status.addresses` (Istio's own allocation). Where two hosts carry the same status
//!    address, the oldest entry keeps it; the others fall back to a fleetdns VIP.
//! 4. Else a VIP the registry allocates (both families), unless the entry opted out, is a
//!    wildcard, or has `resolution: NONE`. An allocated VIP equal to an address of 2. or 3. is
//!    not answered; the registry moves it.
//! 5. `resolution: NONE` without `spec.addresses` is not served.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::service_entry::{Resolution, ServiceEntry};
use crate::{ClusterView, FleetSnapshot, HostVips};

/// Where a host's addresses come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    Spec,
    Status,
    Allocated,
}

/// One served host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAnswer {
    pub ips: Vec<IpAddr>,
    pub source: AddressSource,
    pub entry: Arc<ServiceEntry>,
}

/// The fleet's ServiceEntry hosts at one snapshot.
#[derive(Debug, Clone, Default)]
pub struct MeshPlan {
    /// Served hosts (wildcards as `*.suffix`) with their addresses.
    pub hosts: BTreeMap<String, HostAnswer>,
    /// Hosts the registry must hold VIPs for.
    pub needs_vip: BTreeSet<String>,
    /// Addresses owned by spec or status: never handed out as VIPs.
    pub reserved: BTreeSet<IpAddr>,
    /// Hosts not served, with why.
    pub unserved: BTreeMap<String, &'static str>,
}

/// Every ServiceEntry of the live clusters, oldest first.
pub fn entries_by_age(snapshot: &FleetSnapshot) -> Vec<Arc<ServiceEntry>> {
    entries_by_age_in(snapshot.clusters.values())
}

/// [`entries_by_age`] over cluster views.
pub fn entries_by_age_in<'a>(
    views: impl Iterator<Item = &'a ClusterView>,
) -> Vec<Arc<ServiceEntry>> {
    let mut all: Vec<Arc<ServiceEntry>> = views
        .filter(|v| v.alive)
        .flat_map(|v| v.service_entries.values().cloned())
        .collect();
    all.sort_by(|a, b| {
        (a.created, &a.cluster, &a.namespace, &a.name).cmp(&(
            b.created,
            &b.cluster,
            &b.namespace,
            &b.name,
        ))
    });
    all
}

/// Decides every host's answer (see the module docs). `host_vips` are the registry's
/// allocations.
pub fn plan(snapshot: &FleetSnapshot) -> MeshPlan {
    plan_with(&entries_by_age(snapshot), &snapshot.host_vips)
}

/// [`plan`] over entries already sorted oldest first.
pub fn plan_with(
    entries: &[Arc<ServiceEntry>],
    host_vips: &BTreeMap<String, HostVips>,
) -> MeshPlan {
    let mut out = MeshPlan::default();
    // Pass 1: owners, spec addresses, status candidates.
    let mut status: Vec<(String, Arc<ServiceEntry>, Vec<IpAddr>)> = Vec::new();
    let mut wants_vip: Vec<(String, Arc<ServiceEntry>)> = Vec::new();
    let mut owned = BTreeSet::new();
    for e in entries {
        for host in &e.hosts {
            if !owned.insert(host.clone()) {
                continue; // an older entry owns it (IST-14: oldest wins)
            }
            if !e.addresses.is_empty() {
                out.reserved.extend(e.addresses.iter().copied());
                out.hosts.insert(
                    host.clone(),
                    HostAnswer {
                        ips: e.addresses.clone(),
                        source: AddressSource::Spec,
                        entry: e.clone(),
                    },
                );
                continue;
            }
            if e.resolution == Resolution::None {
                out.unserved
                    .insert(host.clone(), "resolution NONE without addresses");
                continue;
            }
            let st: Vec<IpAddr> = e
                .status_addresses
                .iter()
                .filter(|(h, _)| h == host)
                .map(|(_, ip)| *ip)
                .collect();
            if st.is_empty() {
                wants_vip.push((host.clone(), e.clone()));
            } else {
                status.push((host.clone(), e.clone(), st));
            }
        }
    }
    // Pass 2: status addresses, oldest entry first; a clash sends the younger to a VIP.
    for (host, e, st) in status {
        if st.iter().any(|ip| out.reserved.contains(ip)) {
            if e.autoallocate {
                wants_vip.push((host, e));
            } else {
                let free: Vec<IpAddr> = st
                    .into_iter()
                    .filter(|ip| !out.reserved.contains(ip))
                    .collect();
                if free.is_empty() {
                    out.unserved
                        .insert(host, "status address taken by an older entry");
                } else {
                    out.reserved.extend(free.iter().copied());
                    out.hosts.insert(
                        host,
                        HostAnswer {
                            ips: free,
                            source: AddressSource::Status,
                            entry: e,
                        },
                    );
                }
            }
            continue;
        }
        out.reserved.extend(st.iter().copied());
        out.hosts.insert(
            host,
            HostAnswer {
                ips: st,
                source: AddressSource::Status,
                entry: e,
            },
        );
    }
    // Pass 3: fleetdns VIPs.
    for (host, e) in wants_vip {
        if host.starts_with("*.") {
            out.unserved.insert(
                host,
                "wildcard host without addresses (no VIP for wildcards)",
            );
            continue;
        }
        if !e.autoallocate {
            out.unserved
                .insert(host, "no addresses and VIP allocation turned off by label");
            continue;
        }
        out.needs_vip.insert(host.clone());
        let ips: Vec<IpAddr> = host_vips
            .get(&host)
            .map(|v| v.ips().filter(|ip| !out.reserved.contains(ip)).collect())
            .unwrap_or_default();
        if ips.is_empty() {
            continue; // not allocated yet (or being moved): not answered until it is
        }
        out.hosts.insert(
            host,
            HostAnswer {
                ips,
                source: AddressSource::Allocated,
                entry: e,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterId, Timestamp};

    fn entry(name: &str, created: i64, hosts: &[&str]) -> ServiceEntry {
        ServiceEntry {
            namespace: "ns".into(),
            name: name.into(),
            cluster: ClusterId::new("c").unwrap(),
            hosts: hosts.iter().map(ToString::to_string).collect(),
            addresses: vec![],
            status_addresses: vec![],
            resolution: Resolution::Dns,
            autoallocate: true,
            created: Timestamp(created),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ist14_spec_wins_then_oldest_status_then_vips() {
        let mut old = entry("old", 1, &["old.example.com"]);
        old.status_addresses = vec![("old.example.com".into(), ip("240.240.0.1"))];
        let mut young = entry("young", 2, &["young.example.com"]);
        young.status_addresses = vec![("young.example.com".into(), ip("240.240.0.1"))];
        let mut spec = entry("spec", 3, &["spec.example.com"]);
        spec.addresses = vec![ip("240.240.0.5")];
        let alloc = entry("alloc", 4, &["alloc.example.com", "*.wild.example.com"]);
        let mut none = entry("none", 5, &["none.example.com"]);
        none.resolution = Resolution::None;
        let mut dup = entry("dup", 6, &["old.example.com"]);
        dup.addresses = vec![ip("192.0.2.9")];
        let entries: Vec<Arc<ServiceEntry>> = [old, young, spec, alloc, none, dup]
            .into_iter()
            .map(Arc::new)
            .collect();
        let mut vips = BTreeMap::new();
        vips.insert(
            "alloc.example.com".to_owned(),
            HostVips {
                v4: Some("240.240.0.5".parse().unwrap()), // clashes with spec: not answered
                v6: Some("2001:2::7".parse().unwrap()),
            },
        );
        vips.insert(
            "young.example.com".to_owned(),
            HostVips {
                v4: Some("240.240.0.2".parse().unwrap()),
                v6: None,
            },
        );
        let p = plan_with(&entries, &vips);
        assert_eq!(p.hosts["old.example.com"].ips, [ip("240.240.0.1")]);
        assert_eq!(
            p.hosts["old.example.com"].entry.name, "old",
            "oldest owns the host"
        );
        assert_eq!(p.hosts["young.example.com"].ips, [ip("240.240.0.2")]);
        assert_eq!(
            p.hosts["young.example.com"].source,
            AddressSource::Allocated
        );
        assert_eq!(p.hosts["spec.example.com"].ips, [ip("240.240.0.5")]);
        assert_eq!(p.hosts["alloc.example.com"].ips, [ip("2001:2::7")]);
        assert!(!p.hosts.contains_key("none.example.com"));
        assert!(!p.hosts.contains_key("*.wild.example.com"));
        assert_eq!(
            p.needs_vip.iter().map(String::as_str).collect::<Vec<_>>(),
            ["alloc.example.com", "young.example.com"]
        );
        assert!(p.reserved.contains(&ip("240.240.0.1")));
        assert!(p.reserved.contains(&ip("240.240.0.5")));
    }
}
