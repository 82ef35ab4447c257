//! The TOML config: strict (an unknown key is an error naming it), parsed once at the edge.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use fleetdns_core::ClusterId;
use fleetdns_dns::acl::Cidr;
use fleetdns_dns::cache::CacheLimits;
use fleetdns_dns::forward::{ForwardZoneConfig, Forwarder};
use fleetdns_dns::{ClusterZones, ClustersetZone, ZonesConfig};
use serde::Deserialize;

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

/// `[[sync]] provider`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyncProvider {
    Rfc2136,
    Etcd,
}

/// One `[[sync]]` block: a zone fleetdns keeps in sync, as ExternalDNS would (XDNS-1..21).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    pub provider: SyncProvider,
    pub zone: String,
    /// rfc2136: the primary that takes UPDATE and AXFR (`host:port`, port 53 when omitted).
    #[serde(default)]
    pub server: Option<String>,
    /// TSIG key name; the three `tsig_` keys go together (omit all for no TSIG).
    #[serde(default)]
    pub tsig_key: Option<String>,
    #[serde(default)]
    pub tsig_algorithm: Option<String>,
    /// The base64 secret, relative to the config file.
    #[serde(default)]
    pub tsig_secret_file: Option<PathBuf>,
    /// etcd: endpoints; default the `[registry]`'s (whose TLS and auth settings are used).
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default = "default_skydns_prefix")]
    pub prefix: String,
    pub owner_id: String,
    /// `sync`, `upsert-only` or `create-only`; required, as in ExternalDNS ≥ 0.22.
    pub policy: String,
    #[serde(default)]
    pub publish_clusterset: bool,
    #[serde(default)]
    pub domain_filter: Vec<String>,
    #[serde(default)]
    pub exclude_domains: Vec<String>,
    #[serde(default)]
    pub regex_domain_filter: Option<String>,
    #[serde(default)]
    pub regex_domain_exclusion: Option<String>,
    #[serde(default = "default_managed_types")]
    pub managed_record_types: Vec<String>,
    #[serde(default)]
    pub txt_prefix: String,
    #[serde(default)]
    pub txt_suffix: String,
    /// Changes per UPDATE message.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub min_ttl: u32,
    /// TTL of records whose Service names none.
    #[serde(default = "default_sync_ttl")]
    pub default_ttl: u32,
    #[serde(default = "default_sync_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_min_event_interval")]
    pub min_event_interval_ms: u64,
    /// Per exchange with the server.
    #[serde(default = "default_sync_timeout")]
    pub timeout_ms: u64,
}

fn default_skydns_prefix() -> String {
    "/skydns/".into()
}
fn default_managed_types() -> Vec<String> {
    vec!["A".into(), "AAAA".into(), "CNAME".into()]
}
fn default_batch_size() -> usize {
    50
}
fn default_sync_ttl() -> u32 {
    300
}
fn default_sync_interval() -> u64 {
    60_000
}
fn default_min_event_interval() -> u64 {
    5_000
}
fn default_sync_timeout() -> u64 {
    10_000
}

/// The cache in front of forward zones (CDNS-6..8).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub capacity: usize,
    pub max_ttl: u32,
    pub max_negative_ttl: u32,
    pub min_ttl: u32,
    /// Serve expired answers this long when every upstream fails (RFC 8767); 0 = never.
    pub serve_stale_ms: u64,
    /// Refresh entries asked this often once under 10% of their TTL is left; 0 = off.
    pub prefetch: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        let d = CacheLimits::default();
        Self {
            capacity: d.capacity,
            max_ttl: d.max_ttl,
            max_negative_ttl: d.max_negative_ttl,
            min_ttl: d.min_ttl,
            serve_stale_ms: d.serve_stale.as_millis() as u64,
            prefetch: d.prefetch,
        }
    }
}

/// The operations HTTP listener (`/health`, `/ready`, `/metrics`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Absent: no listener.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The read-only debug API (`/debug/fleet`, `/debug/query`) and the status page at `/`.
    #[serde(default = "debug_on")]
    pub debug: bool,
}

fn debug_on() -> bool {
    true
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            debug: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    pub listen: SocketAddr,
    /// UDP worker threads (sharing the socket, or one socket each with `reuse_port`); by
    /// default one per CPU the process may run on (more than that only adds wake-ups).
    pub udp_workers: usize,
    /// One UDP socket per worker with SO_REUSEPORT, instead of one socket shared by all.
    pub reuse_port: bool,
    /// SO_RCVBUF / SO_SNDBUF of the UDP socket, bytes (the kernel default drops bursts).
    pub udp_buffer_bytes: usize,
    pub tcp_idle_timeout_ms: u64,
    pub tcp_max_connections: usize,
    /// Clients that may use forward zones (CIDRs); authoritative zones answer everyone.
    pub allow: Vec<String>,
    /// Log every query at info level (client, name, type, rcode, duration).
    pub query_log: bool,
    /// The identity sent to queries carrying the EDNS NSID option (RFC 5001); default the
    /// host name (in Kubernetes, the pod name). Empty: NSID is not answered.
    pub nsid: Option<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5353)),
            udp_workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(64)),
            reuse_port: false,
            udp_buffer_bytes: 8 << 20,
            tcp_idle_timeout_ms: 10_000,
            tcp_max_connections: 1024,
            query_log: false,
            nsid: None,
            allow: fleetdns_dns::acl::default_allow()
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    Files(FilesSourceConfig),
    Kubernetes(KubernetesSourceConfig),
}

/// One cluster's Kubernetes API (SPEC §5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSourceConfig {
    /// Else the ClusterProperty `cluster.clusterset.k8s.io` (MCS-6).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Relative to the config file; else `KUBECONFIG`, else the in-cluster service account.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub context: Option<String>,
    /// Write ServiceExport status, ServiceImports and EndpointSlices; `false` for read-only
    /// credentials.
    #[serde(default = "yes")]
    pub write_back: bool,
    /// The clusterset named in the owner label of what write-back writes; garbage collection
    /// deletes only objects with it. Else the ClusterProperty `clusterset.k8s.io` (MCS-7),
    /// else `default`.
    #[serde(default)]
    pub clusterset: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSourceConfig {
    /// One sub-folder per cluster id; relative to the config file.
    pub path: PathBuf,
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
}

fn default_poll_ms() -> u64 {
    250
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

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Files {
        root: PathBuf,
        interval: Duration,
    },
    Kubernetes {
        cluster_id: Option<ClusterId>,
        /// `None`: `KUBECONFIG` or in-cluster, resolved when the source starts.
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
        write_back: bool,
        /// A valid label value.
        clusterset: Option<String>,
    },
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
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
        if !(1..=1024).contains(&raw.dns.udp_workers) {
            bail!("{}: dns.udp_workers must be 1 to 1024", path.display());
        }
        if !(1..=1_000_000).contains(&raw.dns.tcp_max_connections) {
            bail!(
                "{}: dns.tcp_max_connections must be 1 to 1000000",
                path.display()
            );
        }
        if let Some(f) = raw
            .forward
            .iter()
            .find(|f| !(1..=fleetdns_dns::forward::MAX_CONCURRENT).contains(&f.max_concurrent))
        {
            bail!(
                "{}: forward zone {:?}: max_concurrent must be 1 to 1000000",
                path.display(),
                f.zone
            );
        }
        let shared = matches!(raw.registry, RegistryConfig::Etcd(_));
        if raw.sources.is_empty() && raw.forward.is_empty() && !shared {
            bail!(
                "{}: no [[sources]] and no [[forward]]: nothing would be served",
                path.display()
            );
        }
        let allow = raw
            .dns
            .allow
            .iter()
            .map(|c| c.parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}: dns.allow", path.display()))?;
        let cache = CacheLimits {
            capacity: raw.cache.capacity,
            max_ttl: raw.cache.max_ttl,
            max_negative_ttl: raw.cache.max_negative_ttl,
            min_ttl: raw.cache.min_ttl,
            serve_stale: Duration::from_millis(raw.cache.serve_stale_ms),
            prefetch: raw.cache.prefetch,
        };
        crate::resolv_conf::expand_upstream_files(&mut raw.forward)
            .with_context(|| format!("{}: forward", path.display()))?;
        // Built once to check zone names and upstreams; `serve` builds its own.
        Forwarder::new(&raw.forward, cache)
            .with_context(|| format!("{}: forward", path.display()))?;
        let relative = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let vip = |range: &Option<String>, grace: u64| -> anyhow::Result<_> {
            Ok(match range {
                Some(r) => Some((
                    r.parse::<fleetdns_core::VipRange>()
                        .with_context(|| format!("{}: registry.vip_range", path.display()))?,
                    Duration::from_secs(grace),
                )),
                None => None,
            })
        };
        let vips = match &raw.registry {
            RegistryConfig::Memory(m) => vip(&m.vip_range, m.vip_release_grace_secs)?,
            RegistryConfig::Etcd(e) => vip(&e.vip_range, e.vip_release_grace_secs)?,
        };
        let v6 = match &raw.registry {
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
                    .parse::<fleetdns_core::VipRangeV6>()
                    .with_context(|| format!("{}: registry.vip_range_v6", path.display()))?,
            ),
        };
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
        let (liveness_timeout, etcd) = match raw.registry {
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
        };
        let mut sources = Vec::new();
        for (i, s) in raw.sources.into_iter().enumerate() {
            sources.push(match s {
                SourceConfig::Files(f) => Source::Files {
                    root: relative(f.path),
                    interval: Duration::from_millis(f.poll_interval_ms.max(10)),
                },
                SourceConfig::Kubernetes(k) => Source::Kubernetes {
                    cluster_id: match k.cluster_id.as_deref() {
                        Some(id) => Some(ClusterId::new(id).with_context(|| {
                            format!("{}: sources[{i}].cluster_id", path.display())
                        })?),
                        None => None,
                    },
                    kubeconfig: k.kubeconfig.map(relative),
                    context: k.context,
                    write_back: k.write_back,
                    clusterset: match k.clusterset {
                        Some(name) if fleetdns_k8s::imports::owner_label_value(&name) != name => {
                            bail!(
                                "{}: sources[{i}].clusterset {name:?} is not a label value (at most 63 of A-Za-z0-9-_., alphanumeric at both ends)",
                                path.display()
                            )
                        }
                        name => name,
                    },
                },
            });
        }
        let mut ids = std::collections::BTreeSet::new();
        for s in &sources {
            if let Source::Kubernetes {
                cluster_id: Some(id),
                ..
            } = s
                && !ids.insert(id.clone())
            {
                bail!(
                    "{}: two kubernetes sources claim cluster_id {id:?}",
                    path.display()
                );
            }
        }
        let mut sync = raw.sync;
        for (i, block) in sync.iter_mut().enumerate() {
            check_sync(block, etcd.is_some())
                .with_context(|| format!("{}: sync[{i}]", path.display()))?;
            block.tsig_secret_file = block.tsig_secret_file.take().map(relative);
        }
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

/// Checks one `[[sync]]` block; errors name the key. The zone is normalised in place.
fn check_sync(b: &mut SyncConfig, registry_is_etcd: bool) -> anyhow::Result<()> {
    use fleetdns_publish::RecordType;
    b.zone = fleetdns_publish::model::normalize_name(&b.zone)
        .with_context(|| format!("zone {:?} is not a DNS name", b.zone))?;
    if b.owner_id.trim().is_empty() || b.owner_id.contains([',', '=', '"']) {
        bail!("owner_id must be non-empty, without ',', '=' or '\"'");
    }
    b.policy
        .parse::<fleetdns_publish::Policy>()
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    for t in &b.managed_record_types {
        t.parse::<RecordType>()
            .map_err(|e| anyhow::anyhow!("managed_record_types: {e}"))?;
    }
    fleetdns_publish::filter::DomainFilter::new(
        &b.domain_filter,
        &b.exclude_domains,
        b.regex_domain_filter.as_deref(),
        b.regex_domain_exclusion.as_deref(),
    )?;
    fleetdns_publish::txt::TxtNames::new(&b.txt_prefix, &b.txt_suffix)?;
    if !(1..=1000).contains(&b.batch_size) {
        bail!("batch_size must be 1 to 1000");
    }
    if b.interval_ms < 1000 {
        bail!("interval_ms must be at least 1000");
    }
    if b.timeout_ms == 0 {
        bail!("timeout_ms must be positive");
    }
    let tsig = [
        b.tsig_key.is_some(),
        b.tsig_algorithm.is_some(),
        b.tsig_secret_file.is_some(),
    ];
    match b.provider {
        SyncProvider::Rfc2136 => {
            let server = b
                .server
                .as_deref()
                .context("server: required for provider \"rfc2136\"")?;
            sync_server(server).context("server")?;
            if tsig.iter().any(|x| *x) && !tsig.iter().all(|x| *x) {
                bail!("tsig_key, tsig_algorithm and tsig_secret_file go together");
            }
            if !b.endpoints.is_empty() {
                bail!("endpoints: only for provider \"etcd\"");
            }
        }
        SyncProvider::Etcd => {
            if b.server.is_some() || tsig.iter().any(|x| *x) {
                bail!("server and tsig_*: only for provider \"rfc2136\"");
            }
            if b.endpoints.is_empty() && !registry_is_etcd {
                bail!("endpoints: required for provider \"etcd\" unless [registry] is etcd");
            }
            if !b.prefix.starts_with('/') {
                bail!("prefix must start with /");
            }
        }
    }
    Ok(())
}

/// `host:port` or `host` (port 53); the host must be an address.
pub fn sync_server(server: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = server.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: std::net::IpAddr = server
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .with_context(|| format!("{server:?} is not an address or address:port"))?;
    Ok(SocketAddr::new(ip, 53))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        Config::parse(text, Path::new("/etc/fleetdns/fleetdns.toml"))
    }

    const MINIMAL: &str = r#"
cluster_id = "cluster-a"
[dns]
listen = "127.0.0.1:5353"
[registry]
kind = "memory"
[[sources]]
kind = "files"
path = "clusters"
"#;

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
    fn kubernetes_sources_parse_with_defaults_and_checked_ids() {
        let text = r#"
[[sources]]
kind = "kubernetes"
cluster_id = "cluster1"
kubeconfig = "kube/c1.yaml"
context = "c1"
clusterset = "blue"
[[sources]]
kind = "kubernetes"
write_back = false
"#;
        let c = parse(text).unwrap();
        assert_eq!(
            c.sources[0],
            Source::Kubernetes {
                cluster_id: Some(ClusterId::new("cluster1").unwrap()),
                kubeconfig: Some(PathBuf::from("/etc/fleetdns/kube/c1.yaml")),
                context: Some("c1".into()),
                write_back: true,
                clusterset: Some("blue".into()),
            }
        );
        assert_eq!(
            c.sources[1],
            Source::Kubernetes {
                cluster_id: None,
                kubeconfig: None,
                context: None,
                write_back: false,
                clusterset: None,
            }
        );
        for (bad, needle) in [
            (
                "[[sources]]\nkind = \"kubernetes\"\ncluster_id = \"Not_A_Label\"",
                "sources[0].cluster_id",
            ),
            (
                "[[sources]]\nkind = \"kubernetes\"\nkubecfg = \"x\"",
                "kubecfg",
            ),
            (
                "[[sources]]\nkind = \"kubernetes\"\nclusterset = \"a/b\"",
                "sources[0].clusterset",
            ),
            (
                "[[sources]]\nkind = \"kubernetes\"\ncluster_id = \"a\"\n[[sources]]\nkind = \"kubernetes\"\ncluster_id = \"a\"",
                "two kubernetes sources",
            ),
        ] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn ops_listen_is_optional() {
        let c = parse(&format!("{MINIMAL}\n[ops]\nlisten = \"127.0.0.1:9153\"")).unwrap();
        assert_eq!(c.ops.listen, Some(SocketAddr::from(([127, 0, 0, 1], 9153))));
        assert_eq!(
            parse(&format!("{MINIMAL}\n[ops]")).unwrap().ops.listen,
            None
        );
        let err = format!(
            "{:#}",
            parse(&format!("{MINIMAL}\n[ops]\nlisten = \"nowhere\"")).unwrap_err()
        );
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn the_debug_api_is_on_unless_turned_off_and_nsid_is_optional() {
        assert!(parse(MINIMAL).unwrap().ops.debug);
        assert!(parse(&format!("{MINIMAL}\n[ops]")).unwrap().ops.debug);
        assert!(
            !parse(&format!("{MINIMAL}\n[ops]\ndebug = false"))
                .unwrap()
                .ops
                .debug
        );
        assert_eq!(parse(MINIMAL).unwrap().dns.nsid, None);
        let text = MINIMAL.replace("[dns]\n", "[dns]\nnsid = \"dns-1\"\n");
        assert_eq!(parse(&text).unwrap().dns.nsid.as_deref(), Some("dns-1"));
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
    fn forward_zones_cache_and_allow() {
        let c = parse(&format!(
            "{MINIMAL}\n[cache]\ncapacity = 5\nserve_stale_ms = 1000\n[[forward]]\nzone = \"cluster3.local\"\nupstreams = [\"10.244.0.5\", \"10.244.0.6:5353\"]\nforce_tcp = true\npolicy = \"round_robin\"\n"
        ))
        .unwrap();
        assert_eq!(c.forward.len(), 1);
        assert!(c.forward[0].force_tcp);
        assert_eq!(c.cache.capacity, 5);
        assert!(c.allow.iter().any(|a| a.to_string() == "10.0.0.0/8"));
        for (extra, key) in [
            (
                "[[forward]]\nzone = \"x.local\"\nupstreams = [\"not-an-ip\"]\n",
                "not-an-ip",
            ),
            (
                "[[forward]]\nzone = \"x.local\"\nupstreams = [\"10.0.0.1\"]\nretries = 3\n",
                "retries",
            ),
            (
                "[[forward]]\nzone = \"x.local\"\nupstreams = [\"10.0.0.1\"]\npolicy = \"best\"\n",
                "best",
            ),
            ("[cache]\nsize = 3\n", "size"),
            (
                "[[forward]]\nzone = \"x.local\"\nupstreams = [\"10.0.0.1\"]\nmax_concurrent = 4611686018427387904\n",
                "max_concurrent",
            ),
        ] {
            let err = format!("{:#}", parse(&format!("{MINIMAL}\n{extra}")).unwrap_err());
            assert!(err.contains(key), "error does not name {key}: {err}");
        }
        let err = format!(
            "{:#}",
            parse(&MINIMAL.replace("[dns]", "[dns]\nallow = [\"10.0.0.0/99\"]")).unwrap_err()
        );
        assert!(err.contains("dns.allow"), "{err}");
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

    const SYNC: &str = r#"
[[sync]]
provider = "rfc2136"
zone = "Fleet.Example.com."
server = "127.0.0.1:53"
tsig_key = "fleetdns-key"
tsig_algorithm = "hmac-sha256"
tsig_secret_file = "tsig.secret"
owner_id = "fleet-1"
policy = "sync"
publish_clusterset = true
domain_filter = ["fleet.example.com"]
exclude_domains = []
managed_record_types = ["A", "AAAA", "CNAME"]
interval_ms = 60000
min_event_interval_ms = 5000
"#;

    #[test]
    fn sync_blocks_parse_strictly_and_name_the_key() {
        let c = parse(&format!("{MINIMAL}{SYNC}")).unwrap();
        let s = &c.sync[0];
        assert_eq!(s.zone, "fleet.example.com");
        assert_eq!(
            s.tsig_secret_file.as_deref(),
            Some(Path::new("/etc/fleetdns/tsig.secret"))
        );
        assert_eq!(
            (s.batch_size, s.min_ttl, s.prefix.as_str()),
            (50, 0, "/skydns/")
        );
        let err = |extra: &str, from: &str, to: &str| {
            format!(
                "{:#}",
                parse(&format!("{MINIMAL}{}{extra}", SYNC.replace(from, to))).unwrap_err()
            )
        };
        let e = err("colour = 1\n", "", "");
        assert!(e.contains("colour"), "{e}");
        let e = err("", "owner_id = \"fleet-1\"\n", "");
        assert!(e.contains("owner_id"), "{e}");
        let e = err("", "policy = \"sync\"\n", "");
        assert!(e.contains("policy"), "{e}");
        let e = err("", "\"sync\"", "\"upsert\"");
        assert!(e.contains("sync[0]") && e.contains("policy"), "{e}");
        let e = err("", "tsig_key = \"fleetdns-key\"\n", "");
        assert!(
            e.contains("tsig_key, tsig_algorithm and tsig_secret_file"),
            "{e}"
        );
        let e = err("", "\"CNAME\"]", "\"MX\"]");
        assert!(e.contains("managed_record_types"), "{e}");
        let e = err("txt_prefix = \"p.\"\ntxt_suffix = \"-s\"\n", "", "");
        assert!(e.contains("txt_prefix and txt_suffix"), "{e}");
        let e = err("regex_domain_filter = \"(\"\n", "", "");
        assert!(e.contains("regex_domain_filter"), "{e}");
        let e = err("", "provider = \"rfc2136\"", "provider = \"etcd\"");
        assert!(e.contains("only for provider \"rfc2136\""), "{e}");
        let e = err("", "server = \"127.0.0.1:53\"\n", "");
        assert!(e.contains("server"), "{e}");
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
