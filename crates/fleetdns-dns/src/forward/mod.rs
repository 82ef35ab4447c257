//! Forward zones (CDNS-1..3): the zones and their upstreams, the cache in front of them, and
//! the resolution of one forwarded question (cache, loop probe, concurrency limit, upstreams in
//! policy order, stale answers when all fail). One concept per module: [`config`] (the
//! `[[forward]]` settings and upstream addresses), `health` (upstream health, policy order,
//! health checks), `exchange` (one query to one upstream over UDP or TCP, answers validated
//! by random ID and question), `fit` (the answer cut to the client's size).

pub mod config;
mod exchange;
mod fit;
mod health;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, CacheLimits, Hit, Staleness};
use crate::request::{Question, Transport};
use crate::wire::{encode_name, rcode};

pub use config::{
    ForwardConfigError, ForwardZoneConfig, MAX_CONCURRENT, UpstreamPolicy, parse_upstreams,
    resolv_conf_nameservers,
};
use exchange::{build_query, exchange_tcp, exchange_udp};
use fit::{error_response, fit};
pub use health::Upstream;

#[derive(Debug)]
struct Zone {
    name: Box<[u8]>,
    display: String,
    upstreams: Vec<Arc<Upstream>>,
    cfg: ForwardZoneConfig,
    inflight: Arc<Semaphore>,
    next: AtomicUsize,
    /// `<random>.fleetdns-loop.<zone>`: sent to the upstreams at start; if it ever reaches this
    /// server, an upstream forwards the zone back to us (CDNS-13).
    probe: Box<[u8]>,
    probe_hits: AtomicU32,
    looped: std::sync::atomic::AtomicBool,
}

/// One forward zone and the health of its upstreams, as the debug API reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ForwardZoneView {
    pub zone: String,
    pub policy: UpstreamPolicy,
    pub force_tcp: bool,
    pub max_fails: u32,
    /// CDNS-13: an upstream forwards the zone back here; it answers SERVFAIL.
    pub looped: bool,
    pub upstreams: Vec<UpstreamView>,
}

/// One upstream's health.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct UpstreamView {
    pub addr: SocketAddr,
    pub healthy: bool,
    pub consecutive_fails: u32,
    pub requests: u64,
    pub failures: u64,
}

/// Every forward zone, longest first, and the shared cache.
#[derive(Debug)]
pub struct Forwarder {
    zones: Vec<Zone>,
    pub cache: Cache,
    ids: RandomState,
    id_counter: AtomicU64,
    /// Background refreshes of popular cache entries (prefetch); bounded by `max_concurrent`.
    refreshes: tokio_util::task::TaskTracker,
    /// Ends the refreshes: see [`Forwarder::stop_refreshes`].
    refresh_stop: CancellationToken,
}

impl AsRef<Forwarder> for Forwarder {
    fn as_ref(&self) -> &Forwarder {
        self
    }
}

impl Forwarder {
    pub fn new(
        configs: &[ForwardZoneConfig],
        cache: CacheLimits,
    ) -> Result<Self, ForwardConfigError> {
        let ids = RandomState::new();
        let mut zones = Vec::new();
        for cfg in configs {
            let name = encode_name(&cfg.zone).map_err(|source| ForwardConfigError::Zone {
                zone: cfg.zone.clone(),
                source,
            })?;
            let upstreams = parse_upstreams(&cfg.zone, &cfg.upstreams)?
                .into_iter()
                .map(|addr| Arc::new(Upstream::new(addr)))
                .collect();
            let mut h = ids.build_hasher();
            h.write(&name);
            let label = format!("{:016x}", h.finish());
            let probe =
                crate::wire::prefix_name(&[&label, "fleetdns-loop"], &name).map_err(|source| {
                    ForwardConfigError::Zone {
                        zone: cfg.zone.clone(),
                        source,
                    }
                })?;
            zones.push(Zone {
                probe: probe.into(),
                probe_hits: AtomicU32::new(0),
                looped: std::sync::atomic::AtomicBool::new(false),
                display: crate::wire::display_name(&name),
                name: name.into(),
                upstreams,
                inflight: Arc::new(Semaphore::new(cfg.max_concurrent.clamp(1, MAX_CONCURRENT))),
                cfg: cfg.clone(),
                next: AtomicUsize::new(0),
            });
        }
        zones.sort_by_key(|z| std::cmp::Reverse(z.name.len()));
        Ok(Self {
            zones,
            cache: Cache::new(cache),
            ids,
            id_counter: AtomicU64::new(0),
            refreshes: tokio_util::task::TaskTracker::new(),
            refresh_stop: CancellationToken::new(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// Every forward zone's name, dotted.
    pub fn zone_names(&self) -> Vec<String> {
        self.zones.iter().map(|z| z.display.clone()).collect()
    }

    /// The apex of forward zone `index` (lower-case wire form), as the metrics count it.
    pub fn zone_apex(&self, index: usize) -> &[u8] {
        &self.zones[index].name
    }

    /// The longest forward zone containing `name` (lower-case wire form): (index, apex length).
    pub fn find(&self, name: &[u8]) -> Option<(usize, usize)> {
        self.zones.iter().enumerate().find_map(|(i, z)| {
            let suffix_ok = name.len() >= z.name.len()
                && name.ends_with(&z.name)
                && crate::wire::label_offsets(name).any(|o| o == name.len() - z.name.len());
            suffix_ok.then_some((i, z.name.len()))
        })
    }

    /// Every upstream, for metrics: (zone, upstream).
    pub fn upstreams(&self) -> impl Iterator<Item = (&str, &Upstream)> {
        self.zones
            .iter()
            .flat_map(|z| z.upstreams.iter().map(move |u| (z.display.as_str(), &**u)))
    }

    /// Every upstream with its zone and the zone's `max_fails`, for metrics.
    pub fn upstreams_with_max_fails(&self) -> impl Iterator<Item = (&str, &Upstream, u32)> {
        self.zones.iter().flat_map(|z| {
            z.upstreams
                .iter()
                .map(move |u| (z.display.as_str(), &**u, z.cfg.max_fails))
        })
    }

    /// Every forward zone with its upstreams' health, longest zone first (for the debug API).
    pub fn zones_view(&self) -> Vec<ForwardZoneView> {
        self.zones
            .iter()
            .map(|z| ForwardZoneView {
                zone: z.display.clone(),
                policy: z.cfg.policy,
                force_tcp: z.cfg.force_tcp,
                max_fails: z.cfg.max_fails,
                looped: z.looped.load(Ordering::Relaxed),
                upstreams: z
                    .upstreams
                    .iter()
                    .map(|u| UpstreamView {
                        addr: u.addr,
                        healthy: u.healthy(z.cfg.max_fails),
                        consecutive_fails: u.consecutive_fails(),
                        requests: u.requests.load(Ordering::Relaxed),
                        failures: u.failures.load(Ordering::Relaxed),
                    })
                    .collect(),
            })
            .collect()
    }

    /// An unpredictable query ID (SipHash keyed from OS randomness over a counter).
    fn random_id(&self) -> u16 {
        let mut h = self.ids.build_hasher();
        h.write_u64(self.id_counter.fetch_add(1, Ordering::Relaxed));
        h.finish() as u16
    }

    /// Answers `q` from the cache or the zone's upstreams. Never fails: errors become SERVFAIL
    /// (or REFUSED when the zone is at its concurrency limit).
    pub async fn resolve(
        self: &Arc<Self>,
        index: usize,
        q: &Question<'_>,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> u8 {
        let zone = &self.zones[index];
        if q.lower_name == &*zone.probe {
            // Our own probe came back: whoever sent it forwards this zone to us.
            let hits = zone.probe_hits.fetch_add(1, Ordering::Relaxed) + 1;
            if hits >= 2 && !zone.looped.swap(true, Ordering::Relaxed) {
                tracing::error!(zone = %zone.display, "forward loop detected (CDNS-13): an upstream sends this zone back to this server; the zone answers SERVFAIL until the config changes");
            }
            error_response(out, q, rcode::SERVFAIL);
            return rcode::SERVFAIL;
        }
        if zone.looped.load(Ordering::Relaxed) {
            error_response(out, q, rcode::SERVFAIL);
            return rcode::SERVFAIL;
        }
        let key = q.cache_key();
        match self
            .cache
            .get(&key, q.id, Instant::now(), Staleness::FreshOnly, out)
        {
            Some(Hit::Fresh) => return fit(out, q, transport),
            Some(Hit::Prefetch) if !self.refresh_stop.is_cancelled() => {
                // CDNS-8: answer from the cache now, refresh it in the background.
                let (me, question, lower) =
                    (self.clone(), q.question.to_vec(), q.lower_name.to_vec());
                let (qtype, qclass, edns) = (q.qtype, q.qclass, q.edns);
                let stop = self.refresh_stop.clone();
                self.refreshes.spawn(async move {
                    let q = Question {
                        id: 0,
                        question: &question,
                        lower_name: &lower,
                        qtype,
                        qclass,
                        edns,
                        udp_limit: 512,
                    };
                    let zone = &me.zones[index];
                    if let Ok(_permit) = zone.inflight.clone().try_acquire_owned() {
                        tokio::select! {
                            () = stop.cancelled() => {}
                            _ = me.fetch(zone, &q, Transport::Udp) => {}
                        }
                    }
                });
                return fit(out, q, transport);
            }
            Some(Hit::Prefetch) => return fit(out, q, transport),
            _ => {}
        }
        let Ok(_permit) = zone.inflight.clone().try_acquire_owned() else {
            error_response(out, q, rcode::REFUSED);
            return rcode::REFUSED;
        };
        if let Some(resp) = self.fetch(zone, q, transport).await {
            out.clear();
            out.extend_from_slice(&resp);
            out[..2].copy_from_slice(&q.id.to_be_bytes());
            return fit(out, q, transport);
        }
        // Every upstream failed or is down: a stale answer if allowed, else SERVFAIL at once.
        if self
            .cache
            .get(&key, q.id, Instant::now(), Staleness::AllowStale, out)
            .is_some()
        {
            return fit(out, q, transport);
        }
        error_response(out, q, rcode::SERVFAIL);
        rcode::SERVFAIL
    }

    /// Asks the zone's healthy upstreams in policy order; caches and returns the first answer.
    async fn fetch(&self, zone: &Zone, q: &Question<'_>, transport: Transport) -> Option<Vec<u8>> {
        let cfg = &zone.cfg;
        let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
        let use_tcp = cfg.force_tcp || (transport == Transport::Tcp && !cfg.prefer_udp);
        for upstream in self.order(zone) {
            upstream.requests.fetch_add(1, Ordering::Relaxed);
            let query = build_query(self.random_id(), q);
            let result = if use_tcp {
                exchange_tcp(upstream.addr, &query, q, timeout).await
            } else {
                match exchange_udp(upstream.addr, &query, q, timeout).await {
                    // A truncated UDP answer is asked again over TCP.
                    Ok(resp) if resp[2] & 0x02 != 0 => {
                        exchange_tcp(upstream.addr, &query, q, timeout).await
                    }
                    other => other,
                }
            };
            match result {
                Ok(resp) => {
                    if upstream.answered() >= cfg.max_fails {
                        tracing::info!(upstream = %upstream.addr, zone = %zone.display, "upstream answers again");
                    }
                    self.cache.put(&q.cache_key(), &resp, Instant::now());
                    return Some(resp);
                }
                Err(e) => {
                    let fails = upstream.failed();
                    if fails == cfg.max_fails {
                        tracing::warn!(upstream = %upstream.addr, zone = %zone.display, error = %e, "upstream marked down");
                    } else {
                        tracing::debug!(upstream = %upstream.addr, error = %e, "upstream exchange failed");
                    }
                }
            }
        }
        None
    }

    /// Ends every background refresh (prefetch) in flight and starts no more; returns once they
    /// have stopped. Called when this forwarder is replaced (reload) or the server shuts down.
    pub async fn stop_refreshes(&self) {
        self.refresh_stop.cancel();
        self.refreshes.close();
        self.refreshes.wait().await;
    }

    /// Background refreshes running now.
    pub fn refreshes_running(&self) -> usize {
        self.refreshes.len()
    }

    /// Sends each zone's loop probe (three times) to each of its upstreams. If the probe comes
    /// back to this server, [`Forwarder::resolve`] marks the zone looped.
    pub async fn probe_loops(self: Arc<Self>) {
        for zone in &self.zones {
            let mut question = zone.probe.to_vec();
            question.extend_from_slice(&[0, 13, 0, 1]); // HINFO IN: nobody caches or answers it
            let q = Question {
                id: 0,
                question: &question,
                lower_name: &zone.probe,
                qtype: 13,
                qclass: 1,
                edns: false,
                udp_limit: 512,
            };
            for u in &zone.upstreams {
                for _ in 0..3 {
                    let query = build_query(self.random_id(), &q);
                    let _ = exchange_udp(u.addr, &query, &q, Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// One upstream response through everything the forwarder does with it, without sockets (the
/// `upstream_answer` fuzz target): `query` is the client's query, `response` what an upstream
/// sent for it. The upstream query is built as [`Forwarder::resolve`] builds it (under the
/// response's ID, so a matching answer can be found), the answer is validated by ID and
/// question, stored in a cache, cut to the client's size for UDP and TCP, and read back fresh
/// and stale. Panics when a result breaks what the client must get.
#[cfg(feature = "fuzzing")]
pub fn take_upstream_answer(query: &[u8], response: &[u8]) {
    use crate::request::{MAX_UDP_SIZE, Request};
    use crate::wire::{HEADER_LEN, MAX_NAME};

    let mut lower = [0u8; MAX_NAME];
    let Ok(request) = Request::parse(query, Transport::Udp, &mut lower) else {
        return;
    };
    let q = request.question();
    let id = response
        .get(..2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let upstream_query = build_query(id, &q);
    if !exchange::matches(response, &upstream_query) {
        return;
    }
    let cache = Cache::new(CacheLimits {
        serve_stale: Duration::from_secs(60),
        prefetch: 2,
        ..CacheLimits::default()
    });
    let t0 = Instant::now();
    cache.put(&q.cache_key(), response, t0);
    let check = |out: &[u8], transport: Transport| {
        assert!(out.len() >= HEADER_LEN, "an answer has a header");
        assert_eq!(out[..2], q.id.to_be_bytes(), "the client's ID");
        if transport == Transport::Udp {
            let limit = if q.edns {
                q.udp_limit.min(MAX_UDP_SIZE)
            } else {
                512
            };
            assert!(out.len() <= limit, "{} bytes over {limit}", out.len());
        }
        assert_eq!(
            &out[HEADER_LEN..HEADER_LEN + q.question.len()],
            q.question,
            "the client's question, case included"
        );
    };
    for transport in [Transport::Udp, Transport::Tcp] {
        // As `resolve` does with a fresh upstream answer.
        let mut out = response.to_vec();
        out[..2].copy_from_slice(&q.id.to_be_bytes());
        fit(&mut out, &q, transport);
        check(&out, transport);
    }
    let reads = [
        (t0, Staleness::FreshOnly),
        (t0, Staleness::FreshOnly),
        (t0 + Duration::from_secs(1), Staleness::FreshOnly),
        (t0 + Duration::from_secs(3599), Staleness::AllowStale),
        (
            t0 + Duration::from_secs(86_400 * 365),
            Staleness::AllowStale,
        ),
    ];
    for (now, staleness) in reads {
        let mut out = Vec::new();
        if cache
            .get(&q.cache_key(), q.id, now, staleness, &mut out)
            .is_some()
        {
            assert_eq!(
                out.len(),
                response.len(),
                "a cached answer is replayed whole"
            );
            for transport in [Transport::Udp, Transport::Tcp] {
                let mut cut = out.clone();
                fit(&mut cut, &q, transport);
                check(&cut, transport);
            }
        }
    }
}

#[cfg(test)]
mod tests;
