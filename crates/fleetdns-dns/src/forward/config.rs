//! `[[forward]]` zones as configured, and their upstream addresses: `IP`, `IP:PORT`, or the
//! `nameserver` lines of a resolv.conf the binary read and handed in as text.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::wire::NameError;

/// How an upstream is picked (CoreDNS `policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamPolicy {
    #[default]
    Random,
    RoundRobin,
    Sequential,
}

/// `[[forward]]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardZoneConfig {
    pub zone: String,
    /// `IP`, `IP:PORT`, `[IPv6]:PORT`, or a resolv.conf path (its `nameserver` lines, port 53).
    /// The binary reads such a file and replaces the path by the addresses it names
    /// ([`resolv_conf_nameservers`]) before the forwarder sees the config.
    pub upstreams: Vec<String>,
    #[serde(default)]
    pub force_tcp: bool,
    /// Use UDP to upstreams even for queries that came over TCP.
    #[serde(default)]
    pub prefer_udp: bool,
    #[serde(default)]
    pub policy: UpstreamPolicy,
    #[serde(default = "default_health_check_ms")]
    pub health_check_ms: u64,
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
}

fn default_health_check_ms() -> u64 {
    500
}
fn default_max_fails() -> u32 {
    2
}
fn default_timeout_ms() -> u64 {
    2000
}
/// The most in-flight queries a zone may allow (the config refuses more).
pub const MAX_CONCURRENT: usize = 1_000_000;

fn default_max_concurrent() -> usize {
    1000
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardConfigError {
    #[error("forward zone {zone:?}: {source}")]
    Zone { zone: String, source: NameError },
    #[error("forward zone {zone:?}: upstream {value:?} is not an address: {why}")]
    Upstream {
        zone: String,
        value: String,
        why: String,
    },
    #[error("forward zone {zone:?}: no upstreams")]
    NoUpstreams { zone: String },
}

/// Parses `upstreams` entries into socket addresses (port 53 unless given). A resolv.conf
/// path is not read here: the binary expands it first (libraries never read files).
pub fn parse_upstreams(
    zone: &str,
    values: &[String],
) -> Result<Vec<SocketAddr>, ForwardConfigError> {
    let mut out = Vec::new();
    for v in values {
        if let Ok(addr) = v.parse::<SocketAddr>() {
            out.push(addr);
        } else if let Ok(ip) = v.parse::<IpAddr>() {
            out.push(SocketAddr::new(ip, 53));
        } else {
            return Err(ForwardConfigError::Upstream {
                zone: zone.to_owned(),
                value: v.clone(),
                why: if v.starts_with('/') {
                    "a resolv.conf path must be read by the caller".into()
                } else {
                    "expected IP, IP:PORT or a resolv.conf path".into()
                },
            });
        }
    }
    if out.is_empty() {
        return Err(ForwardConfigError::NoUpstreams {
            zone: zone.to_owned(),
        });
    }
    Ok(out)
}

/// Whether an `upstreams` entry names a resolv.conf file rather than an address.
pub fn is_resolv_conf_path(value: &str) -> bool {
    value.starts_with('/')
}

/// The `nameserver` addresses of a resolv.conf's text, port 53, in file order. Lines that are
/// not `nameserver IP` are ignored.
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            let ip = words.next()?.parse::<IpAddr>().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addresses_and_resolv_conf_text() {
        let got = parse_upstreams("z", &["127.0.0.1:5300".into(), "10.1.1.1".into()]).unwrap();
        let want: Vec<SocketAddr> = ["127.0.0.1:5300", "10.1.1.1:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        let err = parse_upstreams("z", &["dns.example".into()]).unwrap_err();
        assert!(err.to_string().contains("dns.example"), "{err}");
        assert!(parse_upstreams("z", &[]).is_err());
        assert!(parse_upstreams("z", &["/etc/resolv.conf".into()]).is_err());
        let text = "search x\nnameserver 10.0.0.1\nnameserver ::1\n# nameserver 10.9.9.9\nnameserver bad\n";
        let want: Vec<SocketAddr> = ["10.0.0.1:53", "[::1]:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(resolv_conf_nameservers(text), want);
        assert!(is_resolv_conf_path("/etc/resolv.conf") && !is_resolv_conf_path("10.0.0.1"));
    }
}
