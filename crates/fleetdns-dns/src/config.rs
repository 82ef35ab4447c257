//! What the answer tables serve: zone names, TTLs, SOA fields and the answer policy.
//! Deserialized strictly from the binary's TOML (unknown keys are errors).

use serde::Deserialize;

use crate::wire::{NameError, encode_name};

/// How a ClusterSetIP service without a VIP is answered (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerPolicy {
    /// This server's own cluster if it has a ready endpoint, else every healthy ready cluster.
    #[default]
    LocalFirst,
    /// Every healthy cluster with a ready endpoint, rotated per query.
    All,
    /// One IP per answer, rotating over healthy ready clusters (Lighthouse LH-15).
    RoundRobin,
    /// The service's clusterset VIP (SPEC §4, LH-13); a service without one yet is answered
    /// as with `local-first`.
    Vip,
}

/// SOA fields; `mname`/`rname` default to `ns.dns.<zone>` / `hostmaster.<zone>` (CoreDNS),
/// `minimum` to the zone TTL (K8S-19).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoaConfig {
    pub mname: Option<String>,
    pub rname: Option<String>,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: Option<u32>,
}

impl Default for SoaConfig {
    fn default() -> Self {
        Self {
            mname: None,
            rname: None,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: None,
        }
    }
}

/// The `clusterset.local` zone (SPEC §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClustersetZone {
    pub enabled: bool,
    pub name: String,
    pub ttl: u32,
    pub policy: AnswerPolicy,
    /// Serve the Lighthouse extension `<cluster>.<svc>.<ns>.svc.<zone>` (LH-11/12), which
    /// the MCS spec forbids (MCS-18).
    pub lighthouse_names: bool,
    pub soa: SoaConfig,
}

impl Default for ClustersetZone {
    fn default() -> Self {
        Self {
            enabled: true,
            name: "clusterset.local".into(),
            ttl: 5,
            policy: AnswerPolicy::default(),
            lighthouse_names: false,
            soa: SoaConfig::default(),
        }
    }
}

/// The per-cluster zones `<svc>.<ns>.svc.<cluster>.local` (SPEC §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterZones {
    pub enabled: bool,
    /// Zone name pattern; `{cluster}` is replaced by the cluster id.
    pub suffix: String,
    pub ttl: u32,
    pub soa: SoaConfig,
}

impl Default for ClusterZones {
    fn default() -> Self {
        Self {
            enabled: true,
            suffix: "{cluster}.local".into(),
            ttl: 5,
            soa: SoaConfig::default(),
        }
    }
}

/// Mesh names (SPEC §2.3, seed approach 4): `<svc>.<ns>.<cluster>`, `<svc>.<ns>.global` and
/// the hosts of Istio ServiceEntries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshZones {
    pub enabled: bool,
    /// Zone name pattern of a cluster's mesh names; `{cluster}` is replaced by the cluster id.
    pub cluster_suffix: String,
    /// Zone of the fleet-VIP names; empty turns them off.
    pub global_suffix: String,
    /// Istio's DNS proxy uses 30 s (IST-8).
    pub ttl: u32,
    /// East-west gateway (`ip` or `ip:port`, port 15443 by default) per cluster id, for
    /// `fleetdns istio service-entries`.
    pub gateways: std::collections::BTreeMap<String, String>,
    pub soa: SoaConfig,
}

impl Default for MeshZones {
    fn default() -> Self {
        Self {
            enabled: false,
            cluster_suffix: "{cluster}".into(),
            global_suffix: "global".into(),
            ttl: 30,
            gateways: std::collections::BTreeMap::new(),
            soa: SoaConfig::default(),
        }
    }
}

/// The port of Istio's east-west gateway for mTLS passthrough (IST-5).
pub const GATEWAY_PORT: u16 = 15443;

impl MeshZones {
    /// The mesh zone name of `cluster`.
    pub fn cluster_zone_name(&self, cluster: &str) -> String {
        self.cluster_suffix.replace("{cluster}", cluster)
    }

    /// The mesh zone a `<svc>.<ns>.<cluster>`-shaped host falls in, if it has that shape.
    pub fn cluster_zone_of(&self, host: &str) -> Option<String> {
        let suffix_labels = self.cluster_suffix.split('.').count();
        let labels: Vec<&str> = host.split('.').collect();
        if labels.len() != 2 + suffix_labels {
            return None;
        }
        let zone = labels[2..].join(".");
        let pattern: Vec<&str> = self.cluster_suffix.split('.').collect();
        let fits = pattern
            .iter()
            .zip(&labels[2..])
            .all(|(p, l)| p.contains("{cluster}") || p == l);
        fits.then_some(zone)
    }

    /// A gateway address: `ip` or `ip:port`.
    pub fn gateway(&self, cluster: &str) -> Option<Result<std::net::SocketAddr, String>> {
        let v = self.gateways.get(cluster)?;
        Some(parse_gateway(v))
    }
}

/// `ip` (port 15443) or `ip:port` / `[v6]:port`.
pub fn parse_gateway(v: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(sa) = v.parse::<std::net::SocketAddr>() {
        return Ok(sa);
    }
    v.parse::<std::net::IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, GATEWAY_PORT))
        .map_err(|_| format!("{v:?} is not an IP or IP:port"))
}

/// Everything the compiler needs besides the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ZonesConfig {
    pub clusterset: ClustersetZone,
    pub cluster_zones: ClusterZones,
    pub mesh: MeshZones,
    /// The cluster this server runs in (for `local-first`).
    pub local_cluster: Option<fleetdns_core::ClusterId>,
}

/// A config value that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneConfigError {
    #[error("{key}: {source}")]
    Name {
        key: &'static str,
        source: NameError,
    },
    #[error("{key}: must contain {{cluster}}")]
    NoClusterPlaceholder { key: &'static str },
    #[error("{key}: {value} is above the maximum of 3600 seconds")]
    Ttl { key: &'static str, value: u32 },
    #[error("{key}: {reason}")]
    Bad { key: String, reason: String },
}

impl ZonesConfig {
    /// Checks names and numbers, naming the key at fault.
    pub fn validate(&self) -> Result<(), ZoneConfigError> {
        let name = |key, v: &str| {
            encode_name(v)
                .map(drop)
                .map_err(|source| ZoneConfigError::Name { key, source })
        };
        let ttl = |key, value: u32| {
            if value > 3600 {
                Err(ZoneConfigError::Ttl { key, value })
            } else {
                Ok(())
            }
        };
        name("clusterset.name", &self.clusterset.name)?;
        ttl("clusterset.ttl", self.clusterset.ttl)?;
        for (key, v) in [
            ("clusterset.soa.mname", &self.clusterset.soa.mname),
            ("clusterset.soa.rname", &self.clusterset.soa.rname),
            ("cluster_zones.soa.mname", &self.cluster_zones.soa.mname),
            ("cluster_zones.soa.rname", &self.cluster_zones.soa.rname),
        ] {
            if let Some(v) = v {
                name(key, v)?;
            }
        }
        if !self.cluster_zones.suffix.contains("{cluster}") {
            return Err(ZoneConfigError::NoClusterPlaceholder {
                key: "cluster_zones.suffix",
            });
        }
        name(
            "cluster_zones.suffix",
            &self.cluster_zones.suffix.replace("{cluster}", "x"),
        )?;
        ttl("cluster_zones.ttl", self.cluster_zones.ttl)?;
        let mesh = &self.mesh;
        if !mesh.cluster_suffix.contains("{cluster}") {
            return Err(ZoneConfigError::NoClusterPlaceholder {
                key: "mesh.cluster_suffix",
            });
        }
        name(
            "mesh.cluster_suffix",
            &mesh.cluster_suffix.replace("{cluster}", "x"),
        )?;
        if !mesh.global_suffix.is_empty() {
            name("mesh.global_suffix", &mesh.global_suffix)?;
        }
        ttl("mesh.ttl", mesh.ttl)?;
        for (key, v) in [
            ("mesh.soa.mname", &mesh.soa.mname),
            ("mesh.soa.rname", &mesh.soa.rname),
        ] {
            if let Some(v) = v {
                name(key, v)?;
            }
        }
        for (cluster, v) in &mesh.gateways {
            fleetdns_core::ClusterId::new(cluster).map_err(|e| ZoneConfigError::Bad {
                key: format!("mesh.gateways.{cluster}"),
                reason: e.to_string(),
            })?;
            parse_gateway(v).map_err(|reason| ZoneConfigError::Bad {
                key: format!("mesh.gateways.{cluster}"),
                reason,
            })?;
        }
        Ok(())
    }

    /// The per-cluster zone name of `cluster`.
    pub fn cluster_zone_name(&self, cluster: &str) -> String {
        self.cluster_zones.suffix.replace("{cluster}", cluster)
    }
}
