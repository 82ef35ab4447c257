//! `[[sync]]`: zones fleetdns keeps in sync in external DNS, as ExternalDNS would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

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

/// Checks every `[[sync]]` block (errors name the block and the key); the secret files'
/// paths made absolute.
pub(super) fn check(
    mut sync: Vec<SyncConfig>,
    registry_is_etcd: bool,
    path: &Path,
    base: &Path,
) -> anyhow::Result<Vec<SyncConfig>> {
    for (i, block) in sync.iter_mut().enumerate() {
        check_sync(block, registry_is_etcd)
            .with_context(|| format!("{}: sync[{i}]", path.display()))?;
        block.tsig_secret_file = block
            .tsig_secret_file
            .take()
            .map(|p| super::relative_to(base, p));
    }
    Ok(sync)
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
    use std::path::Path;

    use super::super::testing::{MINIMAL, parse};

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
}
