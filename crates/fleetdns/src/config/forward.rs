//! `[[forward]]` zones and the `[cache]` in front of them.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use fleetdns_dns::cache::CacheLimits;
use fleetdns_dns::forward::{ForwardZoneConfig, Forwarder};
use serde::Deserialize;

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

impl CacheConfig {
    /// The forwarder's cache limits.
    pub(super) fn limits(&self) -> CacheLimits {
        CacheLimits {
            capacity: self.capacity,
            max_ttl: self.max_ttl,
            max_negative_ttl: self.max_negative_ttl,
            min_ttl: self.min_ttl,
            serve_stale: Duration::from_millis(self.serve_stale_ms),
            prefetch: self.prefetch,
        }
    }
}

/// Every zone's `max_concurrent` is in range; the error names the zone.
pub(super) fn check_limits(forward: &[ForwardZoneConfig], path: &Path) -> anyhow::Result<()> {
    if let Some(f) = forward
        .iter()
        .find(|f| !(1..=fleetdns_dns::forward::MAX_CONCURRENT).contains(&f.max_concurrent))
    {
        bail!(
            "{}: forward zone {:?}: max_concurrent must be 1 to 1000000",
            path.display(),
            f.zone
        );
    }
    Ok(())
}

/// Replaces resolv.conf paths among the upstreams by the addresses they name, then builds a
/// forwarder once to check zone names and upstreams (`serve` builds its own).
pub(super) fn resolve_and_check(
    forward: &mut [ForwardZoneConfig],
    cache: CacheLimits,
    path: &Path,
    read: crate::resolv_conf::ReadFile<'_>,
) -> anyhow::Result<()> {
    crate::resolv_conf::expand_upstream_files_with(forward, read)
        .with_context(|| format!("{}: forward", path.display()))?;
    Forwarder::new(forward, cache).with_context(|| format!("{}: forward", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{MINIMAL, parse};

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
}
