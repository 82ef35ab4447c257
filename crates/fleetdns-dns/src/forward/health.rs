//! Upstream health: consecutive failures mark an upstream down (`max_fails`, CDNS-2), a health
//! check that gets an answer brings it back, and healthy upstreams are tried in policy order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::exchange::{build_query, exchange_tcp, exchange_udp};
use super::{Forwarder, Question, UpstreamPolicy, Zone};

/// One upstream server and its health.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// Consecutive failures; at `max_fails` the upstream is down until a health check answers.
    fails: AtomicU32,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
}

impl Upstream {
    pub(super) fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            fails: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// `max_fails = 0` means never marked down (CDNS-2).
    pub fn healthy(&self, max_fails: u32) -> bool {
        max_fails == 0 || self.fails.load(Ordering::Relaxed) < max_fails
    }

    /// Failures in a row since the last answer.
    pub fn consecutive_fails(&self) -> u32 {
        self.fails.load(Ordering::Relaxed)
    }

    /// An answer came: the failure run ends. Returns the failures before it.
    pub(super) fn answered(&self) -> u32 {
        self.fails.swap(0, Ordering::Relaxed)
    }

    /// An exchange failed. Returns the failures in a row now.
    pub(super) fn failed(&self) -> u32 {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.fails.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl Forwarder {
    /// Healthy upstreams in policy order (at most three tries per query).
    pub(super) fn order<'z>(&self, zone: &'z Zone) -> Vec<&'z Arc<Upstream>> {
        let healthy: Vec<&Arc<Upstream>> = zone
            .upstreams
            .iter()
            .filter(|u| u.healthy(zone.cfg.max_fails))
            .collect();
        if healthy.is_empty() {
            return healthy;
        }
        let n = healthy.len();
        let start = match zone.cfg.policy {
            UpstreamPolicy::Sequential => 0,
            UpstreamPolicy::RoundRobin => zone.next.fetch_add(1, Ordering::Relaxed) % n,
            UpstreamPolicy::Random => self.random_id() as usize % n,
        };
        (0..n.min(3)).map(|i| healthy[(start + i) % n]).collect()
    }

    /// Probes down upstreams until `cancel` fires; an upstream that answers is up again.
    pub async fn run_health_checks(self: Arc<Self>, cancel: CancellationToken) {
        let period = self
            .zones
            .iter()
            .map(|z| z.cfg.health_check_ms)
            .min()
            .unwrap_or(500)
            .max(50);
        let mut tick = tokio::time::interval(Duration::from_millis(period));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            for zone in &self.zones {
                for u in zone
                    .upstreams
                    .iter()
                    .filter(|u| !u.healthy(zone.cfg.max_fails))
                {
                    // `. IN NS`: any well-formed answer with our ID means the server is back.
                    let probe =
                        [b"\x00".as_slice(), &2u16.to_be_bytes(), &1u16.to_be_bytes()].concat();
                    let q = Question {
                        id: 0,
                        question: &probe,
                        lower_name: b"\x00",
                        qtype: 2,
                        qclass: 1,
                        edns: false,
                        udp_limit: 512,
                    };
                    let id = self.random_id();
                    let timeout = Duration::from_millis(zone.cfg.timeout_ms.clamp(1, 1000));
                    let ok = if zone.cfg.force_tcp {
                        exchange_tcp(u.addr, &build_query(id, &q), &q, timeout)
                            .await
                            .is_ok()
                    } else {
                        exchange_udp(u.addr, &build_query(id, &q), &q, timeout)
                            .await
                            .is_ok()
                    };
                    if ok {
                        u.fails.store(0, Ordering::Relaxed);
                        tracing::info!(upstream = %u.addr, zone = %zone.display, "health check answered, upstream up");
                    }
                }
            }
        }
    }
}
