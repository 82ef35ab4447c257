//! The key layout and value encoding, version 1. Every value is JSON with a `"v"` field, so a
//! later release can read what an older one wrote (and skip, with a warning, what it cannot).
//!
//! Under the configured prefix (default `/fleetdns/v1`):
//!
//! | key | value | lease |
//! |---|---|---|
//! | `<prefix>/clusters/<cluster>` | [`ClusterRecord`]: the generation of its export set, when published, how many | the cluster's |
//! | `<prefix>/exports/<cluster>/<generation>/<namespace>/<service>` | [`ExportRecord`] | the cluster's |
//! | `<prefix>/vips/<namespace>/<service>` | [`VipRecord`]: the service's clusterset VIP | none (persisted) |
//! | `<prefix>/vip-ips/<ip>` | `<namespace>/<service>` (or `host:<host>`): the claim that makes an address unique, both families | none |
//! | `<prefix>/vips6/<namespace>/<service>` | [`AddrRecord`]: the service's IPv6 VIP | none (persisted) |
//! | `<prefix>/host-vips/<4 or 6>/<host>` | [`AddrRecord`]: a ServiceEntry host's VIP (IST-14) | none (persisted) |
//! | `<prefix>/service-entries/<cluster>` | [`ServiceEntriesRecord`]: the cluster's whole ServiceEntry set | the cluster's |
//!
//! The keys of the last four rows came with mesh support; a release that predates them skips
//! them (they parse as `Other`), so old and new servers can share one etcd.
//!
//! A cluster's set is the exports under the generation its cluster key names. A small change
//! is one transaction inside the current generation; a large one (or the first publish of a
//! process, which must move every key onto its new lease) writes a new generation in batches,
//! then flips the cluster key in one transaction and deletes the old generation. Readers never
//! see a half-written set: keys of a generation the cluster key does not name are ignored.

use std::net::IpAddr;
use std::sync::Arc;

use fleetdns_core::kube::SmolStr;
use fleetdns_core::model::{
    Endpoint, Export, Port, Protocol, ServiceType, shared_ports, shared_zone,
};
use fleetdns_core::service_entry::{Resolution, ServiceEntry, ServiceEntrySet, normalize_host};
use fleetdns_core::{ClusterId, ServiceKey, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The value-format version this release writes.
pub const VERSION: u32 = 1;

/// A value with a format version: one written by a newer release is refused, not misread.
pub trait Versioned {
    fn version(&self) -> u32;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl Versioned for $t {
            fn version(&self) -> u32 {
                self.v
            }
        }
    )*};
}
versioned!(
    ClusterRecord,
    ExportRecord,
    VipRecord,
    AddrRecord,
    ServiceEntriesRecord
);

/// `Ok` for a version this release reads.
pub fn check_version(v: u32) -> Result<(), DecodeError> {
    if v > VERSION {
        return Err(DecodeError::Version(v));
    }
    Ok(())
}

/// Parses a record and checks its version.
pub fn decode<T: Versioned + DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let r: T = serde_json::from_slice(bytes)?;
    check_version(r.version())?;
    Ok(r)
}

/// A service type as written: `ClusterSetIP` or `Headless` (MCS-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TypeRecord {
    #[serde(rename = "ClusterSetIP")]
    ClusterSetIp,
    Headless,
}

impl From<ServiceType> for TypeRecord {
    fn from(t: ServiceType) -> Self {
        match t {
            ServiceType::ClusterSetIp => Self::ClusterSetIp,
            ServiceType::Headless => Self::Headless,
        }
    }
}

impl From<TypeRecord> for ServiceType {
    fn from(t: TypeRecord) -> Self {
        match t {
            TypeRecord::ClusterSetIp => Self::ClusterSetIp,
            TypeRecord::Headless => Self::Headless,
        }
    }
}

/// A port's protocol as written: `TCP`, `UDP` or `SCTP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProtocolRecord {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl From<Protocol> for ProtocolRecord {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Tcp => Self::Tcp,
            Protocol::Udp => Self::Udp,
            Protocol::Sctp => Self::Sctp,
        }
    }
}

impl From<ProtocolRecord> for Protocol {
    fn from(p: ProtocolRecord) -> Self {
        match p {
            ProtocolRecord::Tcp => Self::Tcp,
            ProtocolRecord::Udp => Self::Udp,
            ProtocolRecord::Sctp => Self::Sctp,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub v: u32,
    pub generation: u64,
    /// Unix seconds.
    pub published: i64,
    pub exports: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<SmolStr>,
    pub protocol: ProtocolRecord,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub addresses: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<SmolStr>,
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub v: u32,
    /// `ClusterSetIP` or `Headless`.
    #[serde(rename = "type")]
    pub type_: TypeRecord,
    pub ports: Vec<PortRecord>,
    #[serde(default)]
    pub cluster_ips: Vec<IpAddr>,
    #[serde(default)]
    pub endpoints: Vec<EndpointRecord>,
    /// The ServiceExport's creation time, unix seconds (MCS-20).
    pub created: i64,
}

/// A service's clusterset VIP (SPEC §4). Created together with its address claim in one
/// compare-and-swap transaction, so no address is handed out twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipRecord {
    pub v: u32,
    pub ip: std::net::Ipv4Addr,
    /// Unix seconds.
    pub allocated: i64,
}

/// A VIP of the newer keys (IPv6 service VIPs, ServiceEntry host VIPs): either family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrRecord {
    pub v: u32,
    pub ip: IpAddr,
    /// Unix seconds.
    pub allocated: i64,
}

pub fn decode_addr(bytes: &[u8]) -> Result<AddrRecord, DecodeError> {
    decode(bytes)
}

/// One ServiceEntry, as translated by the source that read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntryRecord {
    pub namespace: String,
    pub name: String,
    pub hosts: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    #[serde(default)]
    pub status_addresses: Vec<(String, IpAddr)>,
    pub resolution: String,
    pub autoallocate: bool,
    /// Unix seconds.
    pub created: i64,
}

/// A cluster's whole ServiceEntry set, one value (replaced whole, like the source's set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntriesRecord {
    pub v: u32,
    pub entries: Vec<ServiceEntryRecord>,
}

impl ServiceEntriesRecord {
    pub fn from_set(set: &ServiceEntrySet) -> Self {
        Self {
            v: VERSION,
            entries: set
                .values()
                .map(|e| ServiceEntryRecord {
                    namespace: e.namespace.clone(),
                    name: e.name.clone(),
                    hosts: e.hosts.clone(),
                    addresses: e.addresses.clone(),
                    status_addresses: e.status_addresses.clone(),
                    resolution: e.resolution.as_str().to_owned(),
                    autoallocate: e.autoallocate,
                    created: e.created.0,
                })
                .collect(),
        }
    }

    /// The set, with hosts checked again (a value is input like any other).
    pub fn into_set(self, cluster: &ClusterId) -> Result<ServiceEntrySet, DecodeError> {
        check_version(self.v)?;
        let mut set = ServiceEntrySet::new();
        for r in self.entries {
            let resolution = Resolution::parse(&r.resolution)
                .ok_or_else(|| DecodeError::UnknownResolution(r.resolution.clone()))?;
            let mut hosts = Vec::with_capacity(r.hosts.len());
            for h in &r.hosts {
                hosts.push(normalize_host(h).map_err(|reason| DecodeError::BadHost {
                    host: h.clone(),
                    reason,
                })?);
            }
            let entry = ServiceEntry {
                namespace: r.namespace,
                name: r.name,
                cluster: cluster.clone(),
                hosts,
                addresses: r.addresses,
                status_addresses: r.status_addresses,
                resolution,
                autoallocate: r.autoallocate,
                created: Timestamp(r.created),
            };
            set.insert(entry.label(), Arc::new(entry));
        }
        Ok(set)
    }
}

pub fn decode_service_entries(
    bytes: &[u8],
    cluster: &ClusterId,
) -> Result<ServiceEntrySet, DecodeError> {
    decode::<ServiceEntriesRecord>(bytes)?.into_set(cluster)
}

pub fn decode_vip(bytes: &[u8]) -> Result<VipRecord, DecodeError> {
    decode(bytes)
}

/// An export value read back under its key.
pub fn decode_export(
    bytes: &[u8],
    key: ServiceKey,
    cluster: ClusterId,
) -> Result<Export, DecodeError> {
    decode::<ExportRecord>(bytes)?.into_export(key, cluster)
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON of a known shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("value format version {0} is newer than this release reads ({VERSION})")]
    Version(u32),
    #[error("unknown ServiceEntry resolution {0:?}")]
    UnknownResolution(String),
    #[error("ServiceEntry host {host:?}: {reason}")]
    BadHost { host: String, reason: String },
}

impl ExportRecord {
    pub fn from_export(e: &Export) -> Self {
        Self {
            v: VERSION,
            type_: e.service_type.into(),
            ports: e
                .ports
                .iter()
                .map(|p| PortRecord {
                    name: p.name.clone(),
                    protocol: p.protocol.into(),
                    port: p.port,
                    app_protocol: p.app_protocol.clone(),
                })
                .collect(),
            cluster_ips: e.cluster_ips.to_vec(),
            endpoints: e
                .endpoints
                .iter()
                .map(|ep| EndpointRecord {
                    addresses: ep.addresses.to_vec(),
                    hostname: ep.hostname.clone(),
                    ready: ep.ready,
                    zone: ep.zone.as_deref().map(str::to_owned),
                })
                .collect(),
            created: e.created.0,
        }
    }

    pub fn into_export(self, key: ServiceKey, cluster: ClusterId) -> Result<Export, DecodeError> {
        check_version(self.v)?;
        let ports: Vec<Port> = self
            .ports
            .into_iter()
            .map(|p| Port {
                name: p.name,
                protocol: p.protocol.into(),
                port: p.port,
                app_protocol: p.app_protocol,
            })
            .collect();
        // Boxed slices and IP lists: an export keeps no spare room from the decoding's pushes.
        Ok(Export {
            key,
            cluster,
            service_type: self.type_.into(),
            ports: shared_ports(&ports),
            cluster_ips: self.cluster_ips.into(),
            endpoints: self
                .endpoints
                .into_iter()
                .map(|e| Endpoint {
                    addresses: e.addresses.into(),
                    hostname: e.hostname,
                    ready: e.ready,
                    zone: e.zone.as_deref().map(shared_zone),
                })
                .collect(),
            created: Timestamp(self.created),
        })
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialize")
}

pub fn decode_cluster(bytes: &[u8]) -> Result<ClusterRecord, DecodeError> {
    decode(bytes)
}

/// An address family, as the `host-vips/<4 or 6>/` keys spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Self::V4 } else { Self::V6 }
    }

    /// `4` or `6`, as in the keys.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "4" => Some(Self::V4),
            "6" => Some(Self::V6),
            _ => None,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V4 => "4",
            Self::V6 => "6",
        })
    }
}

/// The keys of one prefix.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
}

/// What a key under the prefix is.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Cluster(ClusterId),
    Export {
        cluster: ClusterId,
        generation: u64,
        key: ServiceKey,
    },
    Vip(ServiceKey),
    Vip6(ServiceKey),
    /// A ServiceEntry host's VIP of one family.
    HostVip(Family, String),
    ServiceEntries(ClusterId),
    Other,
}

impl Layout {
    /// `prefix` without a trailing slash, e.g. `/fleetdns/v1`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// Everything fleetdns keeps, for snapshots and watches.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub fn cluster(&self, cluster: &ClusterId) -> String {
        format!("{}/clusters/{cluster}", self.prefix)
    }

    /// Every cluster's exports.
    pub fn exports_root(&self) -> String {
        format!("{}/exports/", self.prefix)
    }

    /// Every generation of one cluster's exports.
    pub fn cluster_exports(&self, cluster: &ClusterId) -> String {
        format!("{}/exports/{cluster}/", self.prefix)
    }

    pub fn generation(&self, cluster: &ClusterId, generation: u64) -> String {
        format!("{}/exports/{cluster}/{generation}/", self.prefix)
    }

    pub fn export(&self, cluster: &ClusterId, generation: u64, key: &ServiceKey) -> String {
        format!(
            "{}/exports/{cluster}/{generation}/{}/{}",
            self.prefix,
            key.namespace(),
            key.name()
        )
    }

    pub fn vip(&self, key: &ServiceKey) -> String {
        format!("{}/vips/{}/{}", self.prefix, key.namespace(), key.name())
    }

    pub fn vip_claim(&self, ip: impl Into<IpAddr>) -> String {
        format!("{}/vip-ips/{}", self.prefix, ip.into())
    }

    pub fn vip6(&self, key: &ServiceKey) -> String {
        format!("{}/vips6/{}/{}", self.prefix, key.namespace(), key.name())
    }

    pub fn host_vip(&self, family: Family, host: &str) -> String {
        format!("{}/host-vips/{family}/{host}", self.prefix)
    }

    /// Every cluster's ServiceEntries.
    pub fn service_entries_root(&self) -> String {
        format!("{}/service-entries/", self.prefix)
    }

    pub fn service_entries(&self, cluster: &ClusterId) -> String {
        format!("{}/service-entries/{cluster}", self.prefix)
    }

    pub fn parse(&self, key: &[u8]) -> Parsed {
        let Ok(key) = std::str::from_utf8(key) else {
            return Parsed::Other;
        };
        let Some(rest) = key
            .strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Parsed::Other;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["clusters", c] => ClusterId::new(c).map_or(Parsed::Other, Parsed::Cluster),
            ["vips", ns, name] => ServiceKey::new(ns, name).map_or(Parsed::Other, Parsed::Vip),
            ["vips6", ns, name] => ServiceKey::new(ns, name).map_or(Parsed::Other, Parsed::Vip6),
            ["host-vips", family, host] => match (Family::parse(family), normalize_host(host)) {
                (Some(family), Ok(h)) if h == *host && !h.starts_with("*.") => {
                    Parsed::HostVip(family, h)
                }
                _ => Parsed::Other,
            },
            ["service-entries", c] => {
                ClusterId::new(c).map_or(Parsed::Other, Parsed::ServiceEntries)
            }
            ["exports", c, g, ns, name] => {
                match (ClusterId::new(c), g.parse(), ServiceKey::new(ns, name)) {
                    (Ok(cluster), Ok(generation), Ok(key)) => Parsed::Export {
                        cluster,
                        generation,
                        key,
                    },
                    _ => Parsed::Other,
                }
            }
            _ => Parsed::Other,
        }
    }
}

/// Shared so a decoded export is not copied per snapshot.
pub type SharedExport = Arc<Export>;

#[cfg(test)]
mod tests {
    use super::*;

    fn export() -> Export {
        Export {
            key: ServiceKey::new("default", "web").unwrap(),
            cluster: ClusterId::new("east").unwrap(),
            service_type: ServiceType::Headless,
            ports: vec![Port {
                name: Some("http".into()),
                protocol: Protocol::Udp,
                port: 53,
                app_protocol: None,
            }]
            .into(),
            cluster_ips: vec![].into(),
            endpoints: vec![Endpoint {
                addresses: vec!["10.1.0.1".parse().unwrap(), "fd00::1".parse().unwrap()].into(),
                hostname: Some("web-0".into()),
                ready: false,
                zone: Some("z".into()),
            }]
            .into(),
            created: Timestamp(1_700_000_000),
        }
    }

    #[test]
    fn exports_round_trip() {
        let e = export();
        let bytes = encode(&ExportRecord::from_export(&e));
        let back: ExportRecord = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            back.into_export(e.key.clone(), e.cluster.clone()).unwrap(),
            e
        );
    }

    #[test]
    fn newer_and_malformed_values_are_errors_not_panics() {
        let mut r = ExportRecord::from_export(&export());
        r.v = 2;
        let err = r.into_export(export().key, export().cluster).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        for bad in [&b"{"[..], b"[]", b"{\"v\":1}", b"\xff"] {
            assert!(serde_json::from_slice::<ExportRecord>(bad).is_err());
            assert!(decode_cluster(bad).is_err());
        }
        assert!(decode_cluster(br#"{"v":9,"generation":1,"published":0,"exports":0}"#).is_err());
    }

    /// A VIP record written by a newer release is refused, not misread (its address could mean
    /// something else there); the current version decodes.
    #[test]
    fn vip_records_of_a_newer_version_are_refused() {
        let current = br#"{"v":1,"ip":"240.240.0.1","allocated":0}"#;
        assert_eq!(decode_vip(current).unwrap().ip.to_string(), "240.240.0.1");
        let newer = br#"{"v":2,"ip":"240.240.0.1","allocated":0}"#;
        let err = decode_vip(newer).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        assert!(decode_vip(b"{").is_err());
    }

    #[test]
    fn service_entries_round_trip_and_bad_hosts_are_errors() {
        use fleetdns_core::service_entry::{ServiceEntryObject, translate_service_entries};
        let c = ClusterId::new("east").unwrap();
        let obj: ServiceEntryObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r", "namespace": "istio-system", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"hosts": ["reviews.default.cluster-2", "*.example.com"], "addresses": ["240.0.0.2"], "resolution": "DNS"},
            "status": {"addresses": [{"value": "2001:2::1", "host": "reviews.default.cluster-2"}]}
        }))
        .unwrap();
        let (set, notes) = translate_service_entries(&c, &[obj], &mut |_| Timestamp(0));
        assert!(notes.is_empty(), "{notes:?}");
        let bytes = encode(&ServiceEntriesRecord::from_set(&set));
        assert_eq!(decode_service_entries(&bytes, &c).unwrap(), set);
        let mut bad = ServiceEntriesRecord::from_set(&set);
        bad.entries[0]
            .hosts
            .push("no spaces allowed.example.com".into());
        assert!(decode_service_entries(&encode(&bad), &c).is_err());
        bad.v = 9;
        assert!(decode_service_entries(&encode(&bad), &c).is_err());
    }

    /// The values are byte for byte what earlier releases wrote (field names, the type and
    /// protocol spellings), so old and new servers share one etcd.
    #[test]
    fn export_values_keep_their_wire_form() {
        let mut e = export();
        e.service_type = ServiceType::ClusterSetIp;
        let mut ports = e.ports.to_vec();
        ports[0].protocol = Protocol::Sctp;
        e.ports = ports.into();
        e.cluster_ips = vec!["10.0.0.9".parse().unwrap()].into();
        let json = String::from_utf8(encode(&ExportRecord::from_export(&e))).unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"type":"ClusterSetIP","ports":[{"name":"http","protocol":"SCTP","port":53}],"cluster_ips":["10.0.0.9"],"endpoints":[{"addresses":["10.1.0.1","fd00::1"],"hostname":"web-0","ready":false,"zone":"z"}],"created":1700000000}"#
        );
        for (t, want) in [
            ("Headless", ServiceType::Headless),
            ("ClusterSetIP", ServiceType::ClusterSetIp),
        ] {
            let v = json.replace("ClusterSetIP", t);
            let back = decode_export(v.as_bytes(), e.key.clone(), e.cluster.clone()).unwrap();
            assert_eq!(back.service_type, want);
        }
        for (p, want) in [
            ("TCP", Protocol::Tcp),
            ("UDP", Protocol::Udp),
            ("SCTP", Protocol::Sctp),
        ] {
            let v = json.replace("SCTP", p);
            let back = decode_export(v.as_bytes(), e.key.clone(), e.cluster.clone()).unwrap();
            assert_eq!(back.ports[0].protocol, want);
        }
        for bad in [
            json.replace("ClusterSetIP", "clusterSetIP"),
            json.replace("SCTP", "sctp"),
        ] {
            let err = decode_export(bad.as_bytes(), e.key.clone(), e.cluster.clone()).unwrap_err();
            assert!(matches!(err, DecodeError::Json(_)), "{err}");
        }
        let newer = json.replace(r#""v":1"#, r#""v":2"#);
        let err = decode_export(newer.as_bytes(), e.key.clone(), e.cluster.clone()).unwrap_err();
        assert!(matches!(err, DecodeError::Version(2)), "{err}");
    }

    /// Service VIPs of both families share one claim path, which writes an `AddrRecord`: an
    /// IPv4 one must encode exactly as the `VipRecord` earlier releases wrote and read.
    #[test]
    fn an_ipv4_addr_record_is_a_vip_record_byte_for_byte() {
        let ip: std::net::Ipv4Addr = "240.240.0.7".parse().unwrap();
        let vip = encode(&VipRecord {
            v: VERSION,
            ip,
            allocated: 1_700_000_000,
        });
        let addr = encode(&AddrRecord {
            v: VERSION,
            ip: IpAddr::V4(ip),
            allocated: 1_700_000_000,
        });
        assert_eq!(
            String::from_utf8(addr).unwrap(),
            String::from_utf8(vip.clone()).unwrap()
        );
        assert_eq!(
            String::from_utf8(vip).unwrap(),
            r#"{"v":1,"ip":"240.240.0.7","allocated":1700000000}"#
        );
    }

    /// One version check for every record kind.
    #[test]
    fn every_record_kind_refuses_a_newer_version() {
        let c = ClusterId::new("east").unwrap();
        assert!(matches!(
            decode_cluster(br#"{"v":2,"generation":1,"published":0,"exports":0}"#),
            Err(DecodeError::Version(2))
        ));
        assert!(matches!(
            decode_addr(br#"{"v":3,"ip":"fd00::1","allocated":0}"#),
            Err(DecodeError::Version(3))
        ));
        assert!(matches!(
            decode_service_entries(br#"{"v":2,"entries":[]}"#, &c),
            Err(DecodeError::Version(2))
        ));
        assert!(
            decode_service_entries(br#"{"v":1,"entries":[]}"#, &c)
                .unwrap()
                .is_empty()
        );
        let entry = |resolution: &str, host: &str| {
            format!(
                r#"{{"v":1,"entries":[{{"namespace":"n","name":"s","hosts":["{host}"],"resolution":"{resolution}","autoallocate":false,"created":0}}]}}"#
            )
        };
        assert!(matches!(
            decode_service_entries(entry("SOMETIMES", "a.example.com").as_bytes(), &c),
            Err(DecodeError::UnknownResolution(r)) if r == "SOMETIMES"
        ));
        assert!(matches!(
            decode_service_entries(entry("DNS", "a b.example.com").as_bytes(), &c),
            Err(DecodeError::BadHost { host, .. }) if host == "a b.example.com"
        ));
    }

    #[test]
    fn keys_parse_back() {
        let l = Layout::new("/fleetdns/v1/");
        let c = ClusterId::new("east").unwrap();
        let k = ServiceKey::new("default", "web").unwrap();
        assert_eq!(
            l.parse(l.cluster(&c).as_bytes()),
            Parsed::Cluster(c.clone())
        );
        assert_eq!(
            l.parse(l.export(&c, 7, &k).as_bytes()),
            Parsed::Export {
                cluster: c.clone(),
                generation: 7,
                key: k
            }
        );
        assert_eq!(
            l.parse(l.host_vip(Family::V6, "a.example.com").as_bytes()),
            Parsed::HostVip(Family::V6, "a.example.com".into())
        );
        assert_eq!(
            l.host_vip(Family::V4, "a.example.com"),
            "/fleetdns/v1/host-vips/4/a.example.com"
        );
        assert_eq!(
            l.parse(b"/fleetdns/v1/host-vips/4/a.example.com"),
            Parsed::HostVip(Family::V4, "a.example.com".into())
        );
        assert_eq!(
            l.parse(l.service_entries(&c).as_bytes()),
            Parsed::ServiceEntries(c.clone())
        );
        for other in [
            "/fleetdns/v1/host-vips/5/a.example.com",
            "/fleetdns/v1/host-vips/4/A.example.com",
            "/fleetdns/v1/clusters/Bad_Id",
            "/fleetdns/v1/exports/east/x/default/web",
            "/other/clusters/east",
            "/fleetdns/v1/vips/a",
        ] {
            assert_eq!(l.parse(other.as_bytes()), Parsed::Other, "{other}");
        }
    }
}
