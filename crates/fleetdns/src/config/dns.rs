//! `[dns]`: the DNS listeners, their limits, and the clients that may use forward zones.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use fleetdns_dns::acl::Cidr;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    pub listen: SocketAddr,
    /// UDP worker threads (sharing the socket, or one socket each with `reuse_port`); by
    /// default one per CPU the process may run on (more than that only adds wake-ups).
    pub udp_workers: usize,
    /// One UDP socket per worker with SO_REUSEPORT, instead of one socket shared by all.
    pub reuse_port: bool,
    /// UDP workers in the real-time scheduling class (needs CAP_SYS_NICE): no query waits
    /// behind a table compile or a manifest parse on its CPU (`fleetdns_dns::UdpOptions`).
    pub udp_realtime: bool,
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
            udp_realtime: false,
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

impl DnsConfig {
    /// The listeners' limits; errors name the key.
    pub(super) fn check(&self, path: &Path) -> anyhow::Result<()> {
        if !(1..=1024).contains(&self.udp_workers) {
            bail!("{}: dns.udp_workers must be 1 to 1024", path.display());
        }
        if !(1..=1_000_000).contains(&self.tcp_max_connections) {
            bail!(
                "{}: dns.tcp_max_connections must be 1 to 1000000",
                path.display()
            );
        }
        Ok(())
    }

    /// `allow`, parsed.
    pub(super) fn allow_list(&self, path: &Path) -> anyhow::Result<Vec<Cidr>> {
        self.allow
            .iter()
            .map(|c| c.parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}: dns.allow", path.display()))
    }
}
