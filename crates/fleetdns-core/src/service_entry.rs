//! Istio ServiceEntries (`networking.istio.io` v1, v1beta1, v1alpha3): the serde shape of the
//! fields fleetdns reads, and the pure translation into a [`ServiceEntry`] the registry carries
//! and the DNS compiler answers (IST-2, IST-3, IST-10, IST-14, IST-15).
//!
//! What a host is answered with is decided per snapshot by [`crate::mesh`]; this module only
//! validates and normalizes one object.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use crate::kube::ObjectMeta;
use crate::{ClusterId, Timestamp};

/// The label that turns Istio's (and fleetdns's) VIP auto-allocation off for one entry (IST-14).
pub const AUTOALLOCATE_LABEL: &str = "networking.istio.io/enable-autoallocate-ip";

/// The API group and the versions fleetdns reads, newest first.
pub const GROUP: &str = "networking.istio.io";
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// `networking.istio.io/* ServiceEntry`, the fields that matter for DNS (IST-15).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ServiceEntryObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ServiceEntrySpec,
    #[serde(default)]
    pub status: Option<ServiceEntryStatus>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ServiceEntryPort>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub resolution: Option<String>,
    #[serde(default)]
    pub export_to: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryPort {
    #[serde(default)]
    pub number: i64,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ServiceEntryStatus {
    #[serde(default)]
    pub addresses: Vec<StatusAddress>,
}

/// Istio ≥ 1.23 writes one per host and family (IST-14).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct StatusAddress {
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub host: Option<String>,
}

/// `spec.resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    None,
    Static,
    Dns,
    DnsRoundRobin,
    DynamicDns,
}

/// A translated ServiceEntry: validated hosts (lower case, `*.` prefix for wildcards) and the
/// addresses usable as answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    pub cluster: ClusterId,
    pub hosts: Vec<String>,
    /// `spec.addresses`: plain IPs and /32 or /128 CIDRs (IST-2, without its inverted check).
    pub addresses: Vec<IpAddr>,
    /// `status.addresses` by host (Istio's own allocation, IST-14).
    pub status_addresses: Vec<(String, IpAddr)>,
    pub resolution: Resolution,
    /// False when the entry carries `networking.istio.io/enable-autoallocate-ip: "false"`.
    pub autoallocate: bool,
    /// `metadata.creationTimestamp`: the oldest entry keeps a contested address (IST-14).
    pub created: Timestamp,
}

impl ServiceEntry {
    /// `<namespace>/<name>`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One cluster's ServiceEntries, keyed by `<namespace>/<name>`. Publishing replaces the set.
pub type ServiceEntrySet = BTreeMap<String, Arc<ServiceEntry>>;

/// Why an entry (or part of it) is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error("ServiceEntry has no metadata.name or metadata.namespace")]
    NoName,
    #[error("no hosts")]
    NoHosts,
    #[error(
        "exportTo {0:?} does not make it visible to every namespace; fleetdns serves the whole fleet, so it is not served"
    )]
    NotExported(Vec<String>),
    #[error("resolution {0:?} is not one Istio knows")]
    BadResolution(String),
}

/// A part of an entry that was dropped while the rest is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryWarning(pub String);

impl std::fmt::Display for EntryWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks and normalizes a host: a DNS name of labels (case folded), optionally `*.` first.
/// A bare `*` is refused (IST-15), as are short names without a dot.
pub fn normalize_host(host: &str) -> Result<String, String> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    let (wild, rest) = match h.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, h.as_str()),
    };
    if rest.is_empty() || rest.contains('*') {
        return Err(format!(
            "host {host:?} is not a DNS name (a bare * is not allowed)"
        ));
    }
    if !rest.contains('.') {
        return Err(format!(
            "host {host:?} is a short name; fleetdns serves fully qualified hosts only"
        ));
    }
    if rest.len() > 253 {
        return Err(format!("host {host:?} is longer than 253 characters"));
    }
    for label in rest.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("host {host:?} has a bad label {label:?}"));
        }
    }
    Ok(if wild {
        format!("*.{rest}")
    } else {
        rest.to_owned()
    })
}

/// An entry of `spec.addresses`: a plain IP or a single-address CIDR (/32, /128) is an answer;
/// a wider CIDR (or junk) is not, and says why.
pub fn parse_address(s: &str) -> Result<IpAddr, String> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("address {s:?} is not an IP or CIDR"))?;
    match len {
        None => Ok(ip),
        Some(len) => {
            let full = if ip.is_ipv4() { "32" } else { "128" };
            if len.trim() == full {
                Ok(ip)
            } else {
                Err(format!(
                    "address {s:?} is a CIDR wider than one address; it is not answered"
                ))
            }
        }
    }
}

/// exportTo → served or not. fleetdns answers every client of the fleet alike, so an entry is
/// served when Istio would show it to every namespace: no `exportTo`, an empty one, or one
/// holding `*`. `.`, `~` or a list of namespaces hide it from the rest of the mesh, so fleetdns
/// does not serve it either (it cannot tell which namespace a query comes from).
pub fn exported_to_all(export_to: &Option<Vec<String>>) -> bool {
    match export_to {
        None => true,
        Some(v) => v.is_empty() || v.iter().any(|s| s.trim() == "*"),
    }
}

impl Resolution {
    /// The name Istio's API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Static => "STATIC",
            Self::Dns => "DNS",
            Self::DnsRoundRobin => "DNS_ROUND_ROBIN",
            Self::DynamicDns => "DYNAMIC_DNS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::None,
            Self::Static,
            Self::Dns,
            Self::DnsRoundRobin,
            Self::DynamicDns,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

fn resolution(s: Option<&str>) -> Result<Resolution, EntryProblem> {
    let s = s.unwrap_or("NONE");
    Resolution::parse(s).ok_or_else(|| EntryProblem::BadResolution(s.to_owned()))
}

/// Translates one object. `seen` gives a first-seen time when the object has no
/// `creationTimestamp` (a hand-written manifest). Returns the entry and what was dropped.
pub fn translate_service_entry(
    cluster: &ClusterId,
    obj: &ServiceEntryObject,
    seen: &mut dyn FnMut(&str) -> Timestamp,
) -> Result<(ServiceEntry, Vec<EntryWarning>), EntryProblem> {
    let (Some(name), Some(namespace)) = (&obj.metadata.name, &obj.metadata.namespace) else {
        return Err(EntryProblem::NoName);
    };
    let label = format!("{namespace}/{name}");
    if !exported_to_all(&obj.spec.export_to) {
        return Err(EntryProblem::NotExported(
            obj.spec.export_to.clone().unwrap_or_default(),
        ));
    }
    let resolution = resolution(obj.spec.resolution.as_deref())?;
    let mut warnings = Vec::new();
    let mut hosts = Vec::new();
    for h in &obj.spec.hosts {
        match normalize_host(h) {
            Ok(h) if !hosts.contains(&h) => hosts.push(h),
            Ok(_) => {}
            Err(e) => warnings.push(EntryWarning(format!("ServiceEntry {label}: {e}"))),
        }
    }
    if hosts.is_empty() {
        return Err(EntryProblem::NoHosts);
    }
    let mut addresses = Vec::new();
    for a in &obj.spec.addresses {
        match parse_address(a) {
            Ok(ip) if !addresses.contains(&ip) => addresses.push(ip),
            Ok(_) => {}
            Err(e) => warnings.push(EntryWarning(format!("ServiceEntry {label}: {e}"))),
        }
    }
    let mut status_addresses = Vec::new();
    for s in obj.status.iter().flat_map(|s| &s.addresses) {
        let Ok(ip) = parse_address(&s.value) else {
            warnings.push(EntryWarning(format!(
                "ServiceEntry {label}: status address {:?} is not an IP",
                s.value
            )));
            continue;
        };
        // Istio writes `host`; without it the address belongs to every host.
        let targets: Vec<String> = match &s.host {
            Some(h) => normalize_host(h).into_iter().collect(),
            None => hosts.clone(),
        };
        for h in targets {
            if hosts.contains(&h) && !status_addresses.contains(&(h.clone(), ip)) {
                status_addresses.push((h, ip));
            }
        }
    }
    let autoallocate = obj
        .metadata
        .labels
        .get(AUTOALLOCATE_LABEL)
        .is_none_or(|v| v.trim() != "false");
    let created = obj
        .metadata
        .creation_timestamp
        .as_deref()
        .and_then(|t| Timestamp::parse_rfc3339(t).ok())
        .unwrap_or_else(|| seen(&label));
    Ok((
        ServiceEntry {
            namespace: namespace.to_string(),
            name: name.to_string(),
            cluster: cluster.clone(),
            hosts,
            addresses,
            status_addresses,
            resolution,
            autoallocate,
            created,
        },
        warnings,
    ))
}

/// Translates a cluster's objects into its set, with notes on what is not served.
pub fn translate_service_entries(
    cluster: &ClusterId,
    objects: &[ServiceEntryObject],
    seen: &mut dyn FnMut(&str) -> Timestamp,
) -> (ServiceEntrySet, Vec<String>) {
    let mut set = ServiceEntrySet::new();
    let mut notes = Vec::new();
    for obj in objects {
        let label = format!(
            "{}/{}",
            obj.metadata.namespace.as_deref().unwrap_or("?"),
            obj.metadata.name.as_deref().unwrap_or("?")
        );
        match translate_service_entry(cluster, obj, seen) {
            Ok((entry, warnings)) => {
                notes.extend(warnings.into_iter().map(|w| w.0));
                set.insert(entry.label(), Arc::new(entry));
            }
            Err(e) => notes.push(format!("ServiceEntry {label} not served: {e}")),
        }
    }
    (set, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(yaml_json: serde_json::Value) -> ServiceEntryObject {
        serde_json::from_value(yaml_json).unwrap()
    }

    fn cluster() -> ClusterId {
        ClusterId::new("cluster-1").unwrap()
    }

    /// IST-15: hosts are DNS names, case folded, an optional `*.` first; a bare `*`, a `*`
    /// elsewhere, short names, over-long names and bad labels are refused.
    #[test]
    fn ist15_hosts_are_checked_and_normalized() {
        for (host, want) in [
            ("Api.Example.COM.", Some("api.example.com")),
            ("*.example.com", Some("*.example.com")),
            ("a_b.example.com", Some("a_b.example.com")),
            ("a-b.example.com", Some("a-b.example.com")),
            ("*", None),
            ("*.", None),
            ("", None),
            ("a.*.example.com", None),
            ("localhost", None),
            ("*.com", None),
            ("a..example.com", None),
            ("a.b$.example.com", None),
        ] {
            assert_eq!(normalize_host(host).ok().as_deref(), want, "{host:?}");
        }
        let label63 = "a".repeat(63);
        assert!(normalize_host(&format!("{label63}.com")).is_ok());
        assert!(
            normalize_host(&format!("{label63}a.com")).is_err(),
            "a 64-byte label"
        );
        let long = format!("{label63}.{label63}.{label63}.{}.com", "b".repeat(57));
        assert_eq!(long.len(), 253);
        assert!(normalize_host(&long).is_ok(), "253 characters");
        assert!(
            normalize_host(&format!("c{long}")).is_err(),
            "254 characters"
        );
    }

    #[test]
    fn ist2_addresses_plain_and_single_address_cidrs_wider_ones_reported() {
        let o = obj(serde_json::json!({
            "metadata": {"name": "x", "namespace": "ns", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"hosts": ["A.Example.com", "*.wild.example.com", "*", "short"],
                     "addresses": ["240.0.0.2/32", "2001:db8::1/128", "10.0.0.0/24", "192.0.2.1", "junk"],
                     "resolution": "DNS"}
        }));
        let (e, warnings) = translate_service_entry(&cluster(), &o, &mut |_| Timestamp(0)).unwrap();
        assert_eq!(e.hosts, ["a.example.com", "*.wild.example.com"]);
        let want: Vec<IpAddr> = ["240.0.0.2", "2001:db8::1", "192.0.2.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(e.addresses, want);
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.0.contains("10.0.0.0/24")));
        assert_eq!(
            e.created,
            Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").unwrap()
        );
        assert!(e.autoallocate);
    }

    #[test]
    fn ist14_status_addresses_and_the_opt_out_label() {
        let o = obj(serde_json::json!({
            "metadata": {"name": "x", "namespace": "ns",
                         "labels": {AUTOALLOCATE_LABEL: "false"}},
            "spec": {"hosts": ["a.example.com", "b.example.com"]},
            "status": {"addresses": [{"value": "240.240.0.1", "host": "a.example.com"},
                                     {"value": "2001:2::1", "host": "A.example.com"},
                                     {"value": "240.240.0.9", "host": "other.example.com"}]}
        }));
        let (e, _) = translate_service_entry(&cluster(), &o, &mut |_| Timestamp(7)).unwrap();
        assert!(!e.autoallocate);
        assert_eq!(e.resolution, Resolution::None);
        assert_eq!(
            e.created,
            Timestamp(7),
            "first-seen time without creationTimestamp"
        );
        assert_eq!(
            e.status_addresses,
            vec![
                ("a.example.com".to_owned(), "240.240.0.1".parse().unwrap()),
                ("a.example.com".to_owned(), "2001:2::1".parse().unwrap()),
            ]
        );
    }

    #[test]
    fn export_to_limits_what_is_served() {
        for (export_to, served) in [
            (serde_json::json!(null), true),
            (serde_json::json!([]), true),
            (serde_json::json!(["*"]), true),
            (serde_json::json!(["."]), false),
            (serde_json::json!(["~"]), false),
            (serde_json::json!(["istio-system"]), false),
        ] {
            let o = obj(serde_json::json!({
                "metadata": {"name": "x", "namespace": "ns"},
                "spec": {"hosts": ["a.example.com"], "exportTo": export_to}
            }));
            let r = translate_service_entry(&cluster(), &o, &mut |_| Timestamp(0));
            assert_eq!(r.is_ok(), served, "{export_to}");
        }
        let bad = obj(serde_json::json!({
            "metadata": {"name": "x", "namespace": "ns"},
            "spec": {"hosts": ["a.example.com"], "resolution": "MAGIC"}
        }));
        assert!(translate_service_entry(&cluster(), &bad, &mut |_| Timestamp(0)).is_err());
        let nohosts = obj(serde_json::json!({"metadata": {"name": "x", "namespace": "ns"}}));
        assert_eq!(
            translate_service_entry(&cluster(), &nohosts, &mut |_| Timestamp(0)).unwrap_err(),
            EntryProblem::NoHosts
        );
    }
}
