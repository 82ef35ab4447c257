//! `[registry]`: where the fleet's state lives (memory or etcd), and the VIP ranges.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use fleetdns_core::{VipRange, VipRangeV6};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RegistryConfig {
    Memory(MemoryRegistryConfig),
    Etcd(EtcdRegistryConfig),
}

/// `[registry] kind = "etcd"`: the fleet's state in etcd, shared by agents and DNS servers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EtcdRegistryConfig {
    pub endpoints: Vec<String>,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// A publisher's lease: its clusters leave every answer this long after it stops.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_secs: u64,
    #[serde(default = "default_dial_timeout")]
    pub dial_timeout_ms: u64,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// PEM files, relative to the config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub vip_range: Option<String>,
    #[serde(default = "default_vip_grace")]
    pub vip_release_grace_secs: u64,
    /// IPv6 VIPs beside `vip_range` (default `2001:2::/48`, IST-14; `""` turns them off).
    #[serde(default)]
    pub vip_range_v6: Option<String>,
}

fn default_vip_grace() -> u64 {
    600
}

fn default_prefix() -> String {
    "/fleetdns/v1".into()
}
fn default_lease_ttl() -> u64 {
    15
}
fn default_dial_timeout() -> u64 {
    2000
}
fn default_request_timeout() -> u64 {
    5000
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self::Memory(MemoryRegistryConfig::default())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryRegistryConfig {
    /// A cluster whose source has not spoken for this long leaves the clusterset answers.
    pub liveness_timeout_ms: u64,
    /// Allocate a clusterset VIP per service from this IPv4 range (SPEC §4); absent: none.
    pub vip_range: Option<String>,
    /// A VIP outlives the last export of its service this long.
    pub vip_release_grace_secs: u64,
    /// IPv6 VIPs beside `vip_range` (default `2001:2::/48`, IST-14; `""` turns them off).
    pub vip_range_v6: Option<String>,
}

impl Default for MemoryRegistryConfig {
    fn default() -> Self {
        Self {
            liveness_timeout_ms: 15_000,
            vip_range: None,
            vip_release_grace_secs: default_vip_grace(),
            vip_range_v6: None,
        }
    }
}

/// The IPv4 VIP range, and how long a VIP outlives the last export of its service.
type Ipv4Vips = Option<(VipRange, Duration)>;

impl RegistryConfig {
    /// The VIP ranges the registry allocates from: IPv4 with its release grace period, and
    /// IPv6 beside it (Istio's prefix by default). Errors name the key.
    pub(super) fn vips(&self, path: &Path) -> anyhow::Result<(Ipv4Vips, Option<VipRangeV6>)> {
        let vip = |range: &Option<String>, grace: u64| -> anyhow::Result<_> {
            Ok(match range {
                Some(r) => Some((
                    r.parse::<VipRange>()
                        .with_context(|| format!("{}: registry.vip_range", path.display()))?,
                    Duration::from_secs(grace),
                )),
                None => None,
            })
        };
        let vips = match self {
            RegistryConfig::Memory(m) => vip(&m.vip_range, m.vip_release_grace_secs)?,
            RegistryConfig::Etcd(e) => vip(&e.vip_range, e.vip_release_grace_secs)?,
        };
        let v6 = match self {
            RegistryConfig::Memory(m) => &m.vip_range_v6,
            RegistryConfig::Etcd(e) => &e.vip_range_v6,
        };
        if vips.is_none() && v6.as_deref().is_some_and(|r| !r.is_empty()) {
            bail!(
                "{}: registry.vip_range_v6 needs registry.vip_range (VIPs of both families come together)",
                path.display()
            );
        }
        let vips_v6 = match (v6.as_deref(), &vips) {
            (_, None) | (Some(""), _) => None,
            (r, Some(_)) => Some(
                r.unwrap_or(fleetdns_core::vip::DEFAULT_VIP_RANGE_V6)
                    .parse::<VipRangeV6>()
                    .with_context(|| format!("{}: registry.vip_range_v6", path.display()))?,
            ),
        };
        Ok((vips, vips_v6))
    }

    /// How long a silent cluster stays in the answers (the memory registry's liveness timeout,
    /// or the etcd lease TTL), and the etcd settings, checked, with paths made absolute.
    pub(super) fn check(
        self,
        path: &Path,
        base: &Path,
    ) -> anyhow::Result<(Duration, Option<EtcdRegistryConfig>)> {
        let relative = |p: PathBuf| super::relative_to(base, p);
        Ok(match self {
            RegistryConfig::Memory(mem) => (
                Duration::from_millis(mem.liveness_timeout_ms.max(100)),
                None,
            ),
            RegistryConfig::Etcd(mut e) => {
                if e.endpoints.is_empty() {
                    bail!("{}: registry.endpoints is empty", path.display());
                }
                if !(1..=3600).contains(&e.lease_ttl_secs) {
                    bail!(
                        "{}: registry.lease_ttl_secs must be 1 to 3600",
                        path.display()
                    );
                }
                if !e.prefix.starts_with('/') {
                    bail!("{}: registry.prefix must start with /", path.display());
                }
                if e.username.is_some() != e.password.is_some() {
                    bail!(
                        "{}: registry.username and registry.password go together",
                        path.display()
                    );
                }
                if e.cert_file.is_some() != e.key_file.is_some() {
                    bail!(
                        "{}: registry.cert_file and registry.key_file go together",
                        path.display()
                    );
                }
                e.ca_file = e.ca_file.map(relative);
                e.cert_file = e.cert_file.map(relative);
                e.key_file = e.key_file.map(relative);
                (Duration::from_secs(e.lease_ttl_secs), Some(e))
            }
        })
    }
}
