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
//! | `<prefix>/vip-ips/<ip>` | `<namespace>/<service>`: the claim that makes an address unique | none |
//!
//! A cluster's set is the exports under the generation its cluster key names. A small change
//! is one transaction inside the current generation; a large one (or the first publish of a
//! process, which must move every key onto its new lease) writes a new generation in batches,
//! then flips the cluster key in one transaction and deletes the old generation. Readers never
//! see a half-written set: keys of a generation the cluster key does not name are ignored.

use std::net::IpAddr;
use std::sync::Arc;

use fleetdns_core::model::{Endpoint, Export, Port, Protocol, ServiceType};
use fleetdns_core::{ClusterId, ServiceKey, Timestamp};
use serde::{Deserialize, Serialize};

/// The value-format version this release writes.
pub const VERSION: u32 = 1;

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
    pub name: Option<String>,
    pub protocol: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub addresses: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub v: u32,
    /// `ClusterSetIP` or `Headless`.
    #[serde(rename = "type")]
    pub type_: String,
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

pub fn decode_vip(bytes: &[u8]) -> Result<VipRecord, DecodeError> {
    let r: VipRecord = serde_json::from_slice(bytes)?;
    if r.v > VERSION {
        return Err(DecodeError::Version(r.v));
    }
    Ok(r)
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON of a known shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("value format version {0} is newer than this release reads ({VERSION})")]
    Version(u32),
    #[error("{0}")]
    Bad(String),
}

impl ExportRecord {
    pub fn from_export(e: &Export) -> Self {
        Self {
            v: VERSION,
            type_: e.service_type.to_string(),
            ports: e
                .ports
                .iter()
                .map(|p| PortRecord {
                    name: p.name.clone(),
                    protocol: p.protocol.to_string(),
                    port: p.port,
                    app_protocol: p.app_protocol.clone(),
                })
                .collect(),
            cluster_ips: e.cluster_ips.clone(),
            endpoints: e
                .endpoints
                .iter()
                .map(|ep| EndpointRecord {
                    addresses: ep.addresses.clone(),
                    hostname: ep.hostname.clone(),
                    ready: ep.ready,
                    zone: ep.zone.clone(),
                })
                .collect(),
            created: e.created.0,
        }
    }

    pub fn into_export(self, key: ServiceKey, cluster: ClusterId) -> Result<Export, DecodeError> {
        if self.v > VERSION {
            return Err(DecodeError::Version(self.v));
        }
        let service_type = match self.type_.as_str() {
            "ClusterSetIP" => ServiceType::ClusterSetIp,
            "Headless" => ServiceType::Headless,
            other => return Err(DecodeError::Bad(format!("unknown service type {other:?}"))),
        };
        let mut ports = Vec::with_capacity(self.ports.len());
        for p in self.ports {
            let protocol = match p.protocol.as_str() {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                other => return Err(DecodeError::Bad(format!("unknown protocol {other:?}"))),
            };
            ports.push(Port {
                name: p.name,
                protocol,
                port: p.port,
                app_protocol: p.app_protocol,
            });
        }
        Ok(Export {
            key,
            cluster,
            service_type,
            ports,
            cluster_ips: self.cluster_ips,
            endpoints: self
                .endpoints
                .into_iter()
                .map(|e| Endpoint {
                    addresses: e.addresses,
                    hostname: e.hostname,
                    ready: e.ready,
                    zone: e.zone,
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
    let r: ClusterRecord = serde_json::from_slice(bytes)?;
    if r.v > VERSION {
        return Err(DecodeError::Version(r.v));
    }
    Ok(r)
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

    pub fn vip_claim(&self, ip: std::net::Ipv4Addr) -> String {
        format!("{}/vip-ips/{ip}", self.prefix)
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
            }],
            cluster_ips: vec![],
            endpoints: vec![Endpoint {
                addresses: vec!["10.1.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
                hostname: Some("web-0".into()),
                ready: false,
                zone: Some("z".into()),
            }],
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
        for other in [
            "/fleetdns/v1/clusters/Bad_Id",
            "/fleetdns/v1/exports/east/x/default/web",
            "/other/clusters/east",
            "/fleetdns/v1/vips/a",
        ] {
            assert_eq!(l.parse(other.as_bytes()), Parsed::Other, "{other}");
        }
    }
}
