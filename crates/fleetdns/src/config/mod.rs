//! The TOML config: strict (an unknown key is an error naming it), parsed once at the edge.
//! One module per section, with its defaults and its checks; `Config::parse` runs them in
//! order and the checks that span sections.

mod dns;
mod forward;
mod ops;
mod registry;
mod sources;
mod sync;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use fleetdns_core::ClusterId;
use fleetdns_dns::acl::Cidr;
use fleetdns_dns::cache::CacheLimits;
use fleetdns_dns::forward::ForwardZoneConfig;
use fleetdns_dns::{ClusterZones, ClustersetZone, ZonesConfig};
use serde::Deserialize;

pub use dns::DnsConfig;
pub use forward::CacheConfig;
pub use ops::OpsConfig;
pub use registry::{EtcdRegistryConfig, RegistryConfig};
pub use sources::{Source, SourceConfig};
pub use sync::{SyncConfig, SyncProvider, sync_server};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The cluster this server runs in (for `policy = "local-first"`).
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub registry: RegistryConfig,
    #[serde(default)]
    pub clusterset: ClustersetZone,
    #[serde(default)]
    pub cluster_zones: ClusterZones,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub ops: OpsConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub forward: Vec<ForwardZoneConfig>,
    /// `[[sync]]`: publish to external DNS, ExternalDNS-compatible (SPEC §6).
    #[serde(default)]
    pub sync: Vec<SyncConfig>,
    /// Mesh names and ServiceEntry hosts (SPEC §2.3).
    #[serde(default)]
    pub mesh: fleetdns_dns::MeshZones,
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub dns: DnsConfig,
    /// How long a silent cluster stays in the answers: the memory registry's liveness timeout,
    /// or the etcd lease TTL.
    pub liveness_timeout: Duration,
    /// `Some` for `[registry] kind = "etcd"`, paths made absolute.
    pub etcd: Option<EtcdRegistryConfig>,
    /// The VIP range and release grace period, when the registry allocates VIPs.
    pub vips: Option<(fleetdns_core::VipRange, Duration)>,
    /// The IPv6 VIP range, used only with `vips`.
    pub vips_v6: Option<fleetdns_core::VipRangeV6>,
    pub zones: ZonesConfig,
    pub sources: Vec<Source>,
    pub ops: OpsConfig,
    pub allow: Vec<Cidr>,
    pub cache: CacheLimits,
    pub forward: Vec<ForwardZoneConfig>,
    /// `[[sync]]` blocks, checked; paths made absolute.
    pub sync: Vec<SyncConfig>,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        Self::parse_with(text, path, &crate::resolv_conf::read_from_disk)
    }

    /// [`Config::parse`], the resolv.conf files that `[[forward]] upstreams` name read by
    /// `read` (the fuzz harness reads none from disk). The only file the parse reads.
    pub fn parse_with(
        text: &str,
        path: &Path,
        read: crate::resolv_conf::ReadFile<'_>,
    ) -> anyhow::Result<Self> {
        let mut raw: RawConfig = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let local_cluster = match raw.cluster_id.as_deref() {
            Some(id) => Some(
                ClusterId::new(id).with_context(|| format!("{}: cluster_id", path.display()))?,
            ),
            None => None,
        };
        let zones = ZonesConfig {
            clusterset: raw.clusterset,
            cluster_zones: raw.cluster_zones,
            mesh: raw.mesh,
            local_cluster,
        };
        zones
            .validate()
            .with_context(|| format!("{}", path.display()))?;
        raw.dns.check(path)?;
        forward::check_limits(&raw.forward, path)?;
        let shared = matches!(raw.registry, RegistryConfig::Etcd(_));
        if raw.sources.is_empty() && raw.forward.is_empty() && !shared {
            bail!(
                "{}: no [[sources]] and no [[forward]]: nothing would be served",
                path.display()
            );
        }
        let allow = raw.dns.allow_list(path)?;
        let cache = raw.cache.limits();
        forward::resolve_and_check(&mut raw.forward, cache, path, read)?;
        let (vips, vips_v6) = raw.registry.vips(path)?;
        if zones.mesh.enabled && !zones.mesh.global_suffix.is_empty() && vips.is_none() {
            bail!(
                "{}: mesh.global_suffix: `<svc>.<ns>.{}` names answer the fleet VIP and need registry.vip_range (or set mesh.global_suffix = \"\")",
                path.display(),
                zones.mesh.global_suffix
            );
        }
        if zones.clusterset.policy == fleetdns_dns::AnswerPolicy::Vip && vips.is_none() {
            bail!(
                "{}: clusterset.policy = \"vip\" needs registry.vip_range",
                path.display()
            );
        }
        let (liveness_timeout, etcd) = raw.registry.check(path, base)?;
        let sources = sources::check(raw.sources, path, base)?;
        let sync = sync::check(raw.sync, etcd.is_some(), path, base)?;
        Ok(Self {
            path: path.to_owned(),
            dns: raw.dns,
            liveness_timeout,
            etcd,
            vips,
            vips_v6,
            zones,
            sources,
            ops: raw.ops,
            allow,
            cache,
            forward: raw.forward,
            sync,
        })
    }
}

/// `p`, relative to the config file's folder `base` unless absolute.
fn relative_to(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { base.join(p) }
}

/// What the tests of every section share: a config parsed as if read from
/// /etc/fleetdns/fleetdns.toml, and the smallest config that serves something.
#[cfg(test)]
mod testing {
    use std::path::Path;

    use super::Config;

    pub(super) fn parse(text: &str) -> anyhow::Result<Config> {
        Config::parse(text, Path::new("/etc/fleetdns/fleetdns.toml"))
    }

    pub(super) const MINIMAL: &str = r#"
cluster_id = "cluster-a"
[dns]
listen = "127.0.0.1:5353"
[registry]
kind = "memory"
[[sources]]
kind = "files"
path = "clusters"
"#;
}

#[cfg(test)]
mod tests {
    use super::Source;
    use super::testing::{MINIMAL, parse};
    use std::path::Path;

    #[test]
    fn a_full_example_parses_and_paths_are_relative_to_the_file() {
        let c = parse(MINIMAL).unwrap();
        let Source::Files { root, .. } = &c.sources[0] else {
            panic!("not a files source")
        };
        assert_eq!(root, Path::new("/etc/fleetdns/clusters"));
        assert_eq!(
            c.zones.local_cluster.as_ref().unwrap().as_str(),
            "cluster-a"
        );
        assert_eq!(c.zones.clusterset.ttl, 5);
        assert_eq!(c.ops.listen, None);
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            // Before the first table: a key of the top level itself.
            (format!("top_level_typo = 1\n{MINIMAL}"), "top_level_typo"),
            (format!("{MINIMAL}\nbogus = 1"), "bogus"),
            (
                MINIMAL.replace("[dns]", "[dns]\nlisten_addr = \"x\""),
                "listen_addr",
            ),
            (
                MINIMAL.replace("path = \"clusters\"", "path = \"c\"\npoll = 1"),
                "poll",
            ),
            (
                format!("{MINIMAL}\n[clusterset]\nttl = 5\nzone = \"x\""),
                "zone",
            ),
            (
                MINIMAL.replace("kind = \"memory\"", "kind = \"memory\"\ntimeout = 3"),
                "timeout",
            ),
            (format!("{MINIMAL}\n[ops]\nport = 9153"), "port"),
        ] {
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains(key), "error for {key} does not name it: {err}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let err = format!(
            "{:#}",
            parse(&MINIMAL.replace("cluster-a", "Cluster_A")).unwrap_err()
        );
        assert!(err.contains("cluster_id"), "{err}");
        let err = format!(
            "{:#}",
            parse(&format!("{MINIMAL}\n[clusterset]\nttl = 99999")).unwrap_err()
        );
        assert!(err.contains("clusterset.ttl"), "{err}");
        let err = format!(
            "{:#}",
            parse(&format!("{MINIMAL}\n[cluster_zones]\nsuffix = \"local\"")).unwrap_err()
        );
        assert!(err.contains("cluster_zones.suffix"), "{err}");
        let err = format!(
            "{:#}",
            parse(&MINIMAL.replace("kind = \"files\"", "kind = \"ftp\"")).unwrap_err()
        );
        assert!(err.contains("ftp"), "{err}");
        let err = format!(
            "{:#}",
            parse("[dns]\nlisten = \"127.0.0.1:53\"").unwrap_err()
        );
        assert!(err.contains("sources"), "{err}");
        let err = format!("{:#}", parse("cluster_id = [").unwrap_err());
        assert!(err.contains("fleetdns.toml"), "{err}");
    }

    /// SPEC §2.3: the issue's `[mesh]` example parses; `.global` needs a VIP range; the IPv6
    /// range defaults to Istio's; bad keys and values are named.
    #[test]
    fn mesh_config_parses_and_is_checked() {
        let with_vips = MINIMAL.replace(
            "kind = \"memory\"",
            "kind = \"memory\"\nvip_range = \"240.240.0.0/16\"",
        );
        let mesh = "[mesh]\nenabled = true\ncluster_suffix = \"{cluster}\"\nglobal_suffix = \"global\"\nttl = 30\ngateways = { \"cluster-2\" = \"192.0.2.10:15443\" }\n";
        let c = parse(&format!("{with_vips}\n{mesh}")).unwrap();
        assert!(c.zones.mesh.enabled);
        assert_eq!(c.zones.mesh.ttl, 30);
        assert_eq!(
            c.vips_v6.map(|r| r.to_string()).as_deref(),
            Some("2001:2::/48"),
            "Istio's IPv6 prefix by default"
        );
        assert_eq!(
            c.zones.mesh.gateway("cluster-2"),
            Some(Ok("192.0.2.10:15443".parse().unwrap()))
        );
        let off = with_vips.replace(
            "vip_range = \"240.240.0.0/16\"",
            "vip_range = \"240.240.0.0/16\"\nvip_range_v6 = \"\"",
        );
        assert!(parse(&off).unwrap().vips_v6.is_none());
        for (text, key) in [
            (format!("{MINIMAL}\n{mesh}"), "vip_range"),
            (format!("{with_vips}\n{mesh}\nzone = \"x\""), "zone"),
            (
                format!("{with_vips}\n[mesh]\nenabled = true\ncluster_suffix = \"mesh\""),
                "mesh.cluster_suffix",
            ),
            (
                format!("{with_vips}\n[mesh]\nenabled = true\nttl = 7200"),
                "mesh.ttl",
            ),
            (
                format!("{with_vips}\n[mesh]\ngateways = {{ \"cluster-2\" = \"gw.example\" }}"),
                "mesh.gateways.cluster-2",
            ),
            (
                MINIMAL.replace(
                    "kind = \"memory\"",
                    "kind = \"memory\"\nvip_range_v6 = \"2001:2::/48\"",
                ),
                "vip_range_v6",
            ),
            (
                with_vips.replace(
                    "vip_range = \"240.240.0.0/16\"",
                    "vip_range = \"240.240.0.0/16\"\nvip_range_v6 = \"10.0.0.0/8\"",
                ),
                "vip_range_v6",
            ),
        ] {
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains(key), "error for {key} does not name it: {err}");
        }
    }
}
