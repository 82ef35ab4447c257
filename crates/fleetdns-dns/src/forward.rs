//! Forward zones (seed approach 1; CDNS-1..3): upstream selection, health, TCP fallback on
//! truncation, answer validation (random IDs, question must match), concurrency limits, and
//! the cache in front of it all.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, CacheKey, CacheLimits, Hit, Staleness, skip_name};
use crate::respond::{ADVERTISED_UDP_SIZE, MAX_UDP_SIZE, Transport};
use crate::wire::{HEADER_LEN, NameError, encode_name, rcode};

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
    #[error(
        "forward zone {zone:?}: upstream {value:?} is not an address or a readable resolv.conf: {why}"
    )]
    Upstream {
        zone: String,
        value: String,
        why: String,
    },
    #[error("forward zone {zone:?}: no upstreams")]
    NoUpstreams { zone: String },
}

/// Parses `upstreams` entries into socket addresses.
pub fn parse_upstreams(
    zone: &str,
    values: &[String],
) -> Result<Vec<SocketAddr>, ForwardConfigError> {
    let mut out = Vec::new();
    for v in values {
        let bad = |why: String| ForwardConfigError::Upstream {
            zone: zone.to_owned(),
            value: v.clone(),
            why,
        };
        if let Ok(addr) = v.parse::<SocketAddr>() {
            out.push(addr);
        } else if let Ok(ip) = v.parse::<IpAddr>() {
            out.push(SocketAddr::new(ip, 53));
        } else if v.starts_with('/') {
            let text = std::fs::read_to_string(Path::new(v)).map_err(|e| bad(e.to_string()))?;
            let before = out.len();
            for line in text.lines() {
                let mut words = line.split_whitespace();
                if words.next() == Some("nameserver")
                    && let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok())
                {
                    out.push(SocketAddr::new(ip, 53));
                }
            }
            if out.len() == before {
                return Err(bad("no nameserver lines".into()));
            }
        } else {
            return Err(bad("expected IP, IP:PORT or a resolv.conf path".into()));
        }
    }
    if out.is_empty() {
        return Err(ForwardConfigError::NoUpstreams {
            zone: zone.to_owned(),
        });
    }
    Ok(out)
}

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
    /// `max_fails = 0` means never marked down (CDNS-2).
    pub fn healthy(&self, max_fails: u32) -> bool {
        max_fails == 0 || self.fails.load(Ordering::Relaxed) < max_fails
    }
}

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
    requests: Option<Arc<AtomicU64>>,
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

/// The question of a query being forwarded.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub id: u16,
    /// Question section as the client sent it (name, type, class).
    pub question: &'a [u8],
    pub lower_name: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    pub edns: bool,
    /// The client's UDP size limit (ignored over TCP).
    pub udp_limit: usize,
}

impl Question<'_> {
    /// What the answer to this question is cached under.
    pub fn cache_key(&self) -> CacheKey<'_> {
        CacheKey {
            lower_name: self.lower_name,
            qtype: self.qtype,
            qclass: self.qclass,
            edns: self.edns,
        }
    }
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
                .map(|addr| {
                    Arc::new(Upstream {
                        addr,
                        fails: AtomicU32::new(0),
                        requests: AtomicU64::new(0),
                        failures: AtomicU64::new(0),
                    })
                })
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
                requests: None,
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

    /// Gives every forward zone its request counter from `metrics`. Call before sharing.
    pub fn attach_counters(&mut self, metrics: &crate::metrics::Metrics) {
        for zone in &mut self.zones {
            zone.requests = Some(metrics.zone_counter(&zone.display));
        }
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
                        consecutive_fails: u.fails.load(Ordering::Relaxed),
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
        if let Some(c) = &zone.requests {
            c.fetch_add(1, Ordering::Relaxed);
        }
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
                    if upstream.fails.swap(0, Ordering::Relaxed) >= cfg.max_fails {
                        tracing::info!(upstream = %upstream.addr, zone = %zone.display, "upstream answers again");
                    }
                    self.cache.put(&q.cache_key(), &resp, Instant::now());
                    return Some(resp);
                }
                Err(e) => {
                    upstream.failures.fetch_add(1, Ordering::Relaxed);
                    let fails = upstream.fails.fetch_add(1, Ordering::Relaxed) + 1;
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

    /// Healthy upstreams in policy order (at most three tries per query).
    fn order<'z>(&self, zone: &'z Zone) -> Vec<&'z Arc<Upstream>> {
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

    /// Whether a forward loop was detected for the zone named `zone` (dotted, trailing dot).
    pub fn looped(&self, zone: &str) -> bool {
        self.zones
            .iter()
            .any(|z| z.display == zone && z.looped.load(Ordering::Relaxed))
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

/// Header (RD set), the client's question, and an OPT record if the client sent one.
fn build_query(id: u16, q: &Question<'_>) -> Vec<u8> {
    let mut p = Vec::with_capacity(HEADER_LEN + q.question.len() + 11);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(q.edns)]);
    p.extend_from_slice(q.question);
    if q.edns {
        p.extend_from_slice(&[0, 0, 41]);
        p.extend_from_slice(&ADVERTISED_UDP_SIZE.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    p
}

/// Whether `resp` answers `query`: a response, same ID, same question (case-insensitively).
fn matches(resp: &[u8], query: &[u8]) -> bool {
    if resp.len() < HEADER_LEN || resp[..2] != query[..2] || resp[2] & 0x80 == 0 {
        return false;
    }
    if u16::from_be_bytes([resp[4], resp[5]]) != 1 {
        return false;
    }
    let Some(end) = skip_name(query, HEADER_LEN).map(|e| e + 4) else {
        return false;
    };
    // The name case-insensitively, type and class exactly.
    resp.len() >= end
        && resp[HEADER_LEN..end - 4].eq_ignore_ascii_case(&query[HEADER_LEN..end - 4])
        && resp[end - 4..end] == query[end - 4..end]
}

async fn exchange_udp(
    addr: SocketAddr,
    query: &[u8],
    _q: &Question<'_>,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(addr).await?;
    sock.send(query).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream timed out")
            })??;
        // A wrong ID or question is dropped, never used (no cache poisoning): keep waiting.
        if matches(&buf[..n], query) {
            buf.truncate(n);
            return Ok(buf);
        }
        tracing::debug!(upstream = %addr, "answer with a wrong ID or question dropped");
    }
}

async fn exchange_tcp(
    addr: SocketAddr,
    query: &[u8],
    _q: &Question<'_>,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let work = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        loop {
            let len = stream.read_u16().await? as usize;
            let mut buf = vec![0u8; len];
            stream.read_exact(&mut buf).await?;
            if matches(&buf, query) {
                return Ok(buf);
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream timed out"))?
}

/// Cuts a UDP answer that exceeds the client's size to header + question with TC set.
fn fit(out: &mut Vec<u8>, q: &Question<'_>, transport: Transport) -> u8 {
    // The client's own question, case included (DNS 0x20): a cached answer holds the case of
    // whoever asked first. Same length, and compression pointers do not depend on case.
    let end = HEADER_LEN + q.question.len();
    if out.len() >= end {
        out[HEADER_LEN..end].copy_from_slice(q.question);
    }
    let code = out.get(3).map_or(rcode::SERVFAIL, |b| b & 0x0f);
    let limit = if q.edns {
        q.udp_limit.min(MAX_UDP_SIZE)
    } else {
        512
    };
    if transport == Transport::Udp && out.len() > limit {
        let id = q.id;
        error_response(out, q, code);
        out[..2].copy_from_slice(&id.to_be_bytes());
        out[2] |= 0x02;
    }
    code
}

/// Header + question with `rcode` (no AA: not our data).
fn error_response(out: &mut Vec<u8>, q: &Question<'_>, code: u8) {
    out.clear();
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&[0x81, code, 0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(q.question);
}

/// Writes the cache and upstream metrics. The cache series are always written (zero without
/// forward zones); upstream series exist per configured upstream.
pub fn render_metrics(forwarder: Option<&Forwarder>, out: &mut crate::metrics::Exposition<'_>) {
    use crate::cache::CacheStats;
    let zero = CacheStats::default();
    let (stats, entries) = match forwarder {
        Some(f) => (&f.cache.stats, f.cache.len()),
        None => (&zero, 0),
    };
    for (name, help, value) in [
        (
            "fleetdns_cache_hits_total",
            "Forwarded queries answered from the cache.",
            &stats.hits,
        ),
        (
            "fleetdns_cache_misses_total",
            "Forwarded queries not in the cache (or expired).",
            &stats.misses,
        ),
        (
            "fleetdns_cache_evictions_total",
            "Entries dropped to stay within the cache capacity.",
            &stats.evictions,
        ),
        (
            "fleetdns_cache_stale_total",
            "Expired answers served because every upstream failed (RFC 8767).",
            &stats.stale,
        ),
    ] {
        out.header(name, "counter", help);
        out.sample(name, &[], value.load(Ordering::Relaxed));
    }
    out.header(
        "fleetdns_cache_entries",
        "gauge",
        "Answers held in the cache.",
    );
    out.sample("fleetdns_cache_entries", &[], entries);
    let Some(f) = forwarder.filter(|f| f.upstreams().next().is_some()) else {
        return;
    };
    let series: Vec<(&str, &Upstream, u32, String)> = f
        .zones
        .iter()
        .flat_map(|z| {
            z.upstreams.iter().map(move |u| {
                (
                    z.display.as_str(),
                    &**u,
                    z.cfg.max_fails,
                    u.addr.to_string(),
                )
            })
        })
        .collect();
    type Value = fn(&Upstream, u32) -> u64;
    let metrics: [(&str, &str, &str, Value); 3] = [
        (
            "fleetdns_upstream_requests_total",
            "counter",
            "Queries sent to an upstream.",
            |u, _| u.requests.load(Ordering::Relaxed),
        ),
        (
            "fleetdns_upstream_failures_total",
            "counter",
            "Upstream exchanges that timed out or failed.",
            |u, _| u.failures.load(Ordering::Relaxed),
        ),
        (
            "fleetdns_upstream_healthy",
            "gauge",
            "1 while the upstream is in use, 0 while it is down (after max_fails failures, until a health check answers).",
            |u, m| u64::from(u.healthy(m)),
        ),
    ];
    for (name, kind, help, value) in metrics {
        out.header(name, kind, help);
        for (zone, u, max_fails, addr) in &series {
            out.sample(
                name,
                &[("zone", zone), ("upstream", addr)],
                value(u, *max_fails),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// How a fake upstream misbehaves.
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Good,
        /// Sends a forged answer (wrong ID, other address) before the real one.
        ForgeFirst,
        /// Answers over UDP with TC and no records; TCP answers fully.
        Truncate,
        /// Never answers.
        Silent,
    }

    /// A loopback upstream for `*.fwd.test A` answering 192.0.2.<n>, TTL 60.
    async fn upstream(mode: Mode, n: u8, alive: Arc<AtomicBool>) -> SocketAddr {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let answer = move |q: &[u8], tc: bool| -> Vec<u8> {
            let end = skip_name(q, HEADER_LEN).unwrap() + 4;
            let mut r = q[..end].to_vec();
            r[2] = 0x85 | if tc { 0x02 } else { 0 };
            r[3] = 0x80;
            r[10] = 0;
            r[11] = 0;
            if !tc {
                r[7] = 1;
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, n]);
            }
            r
        };
        let alive2 = alive.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((len, peer)) = udp.recv_from(&mut buf).await {
                if mode == Mode::Silent || !alive2.load(Ordering::Relaxed) {
                    continue;
                }
                let q = &buf[..len];
                if mode == Mode::ForgeFirst {
                    let mut forged = answer(q, false);
                    forged[0] ^= 0xff;
                    let last = forged.len() - 1;
                    forged[last] = 66;
                    udp.send_to(&forged, peer).await.unwrap();
                }
                udp.send_to(&answer(q, mode == Mode::Truncate), peer)
                    .await
                    .unwrap();
            }
        });
        tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                if !alive.load(Ordering::Relaxed) || mode == Mode::Silent {
                    continue;
                }
                let len = s.read_u16().await.unwrap() as usize;
                let mut q = vec![0u8; len];
                s.read_exact(&mut q).await.unwrap();
                let r = answer(&q, false);
                s.write_all(&(r.len() as u16).to_be_bytes()).await.unwrap();
                s.write_all(&r).await.unwrap();
            }
        });
        addr
    }

    fn zone(upstreams: &[SocketAddr], policy: UpstreamPolicy) -> ForwardZoneConfig {
        ForwardZoneConfig {
            zone: "fwd.test".into(),
            upstreams: upstreams.iter().map(ToString::to_string).collect(),
            force_tcp: false,
            prefer_udp: false,
            policy,
            health_check_ms: 50,
            max_fails: 1,
            timeout_ms: 300,
            max_concurrent: 10,
        }
    }

    const QUESTION: &[u8] = b"\x03WWW\x03fwd\x04test\x00\x00\x01\x00\x01";
    const LOWER: &[u8] = b"\x03www\x03fwd\x04test\x00";

    fn question(id: u16) -> Question<'static> {
        Question {
            id,
            question: QUESTION,
            lower_name: LOWER,
            qtype: 1,
            qclass: 1,
            edns: false,
            udp_limit: 512,
        }
    }

    fn last_octet(resp: &[u8]) -> Option<u8> {
        (u16::from_be_bytes([resp[6], resp[7]]) > 0).then(|| resp[resp.len() - 1])
    }

    #[tokio::test]
    async fn forwards_validates_and_caches() {
        let up = upstream(Mode::ForgeFirst, 7, Arc::new(AtomicBool::new(true))).await;
        let f = Arc::new(
            Forwarder::new(
                &[zone(&[up], UpstreamPolicy::Random)],
                CacheLimits::default(),
            )
            .unwrap(),
        );
        assert_eq!(f.find(LOWER), Some((0, 10)));
        assert_eq!(
            f.find(b"\x03www\x04xfwd\x04test\x00"),
            None,
            "label boundaries matter"
        );
        let mut out = Vec::new();
        assert_eq!(
            f.resolve(0, &question(0x4242), Transport::Udp, &mut out)
                .await,
            rcode::NOERROR
        );
        assert_eq!(&out[..2], &[0x42, 0x42], "the client's ID");
        assert_eq!(
            last_octet(&out),
            Some(7),
            "the forged answer (wrong ID) was dropped"
        );
        assert_eq!(
            &out[12..12 + QUESTION.len()],
            QUESTION,
            "the question keeps the client's case"
        );
        // Second time from the cache: the upstream sees no new request.
        let before = f
            .upstreams()
            .next()
            .unwrap()
            .1
            .requests
            .load(Ordering::Relaxed);
        f.resolve(0, &question(1), Transport::Udp, &mut out).await;
        assert_eq!(
            f.upstreams()
                .next()
                .unwrap()
                .1
                .requests
                .load(Ordering::Relaxed),
            before
        );
        assert_eq!(f.cache.stats.hits.load(Ordering::Relaxed), 1);
    }

    /// CDNS-7: a prefetch refresh waiting on a silent upstream ends when the forwarder is
    /// stopped (reload or shutdown), and a stopped forwarder starts no more.
    #[tokio::test]
    async fn cdns7_prefetch_refreshes_stop_with_the_forwarder() {
        let up = upstream(Mode::Silent, 1, Arc::new(AtomicBool::new(true))).await;
        let mut cfg = zone(&[up], UpstreamPolicy::Random);
        cfg.timeout_ms = 600_000;
        let limits = CacheLimits {
            prefetch: 1,
            min_ttl: 0,
            ..CacheLimits::default()
        };
        let f = Arc::new(Forwarder::new(&[cfg], limits).unwrap());
        // A cached answer with 60 s TTL stored 57 s ago: popular enough and in its last 10%.
        let mut cached = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        cached.extend_from_slice(QUESTION);
        cached.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        let stored = Instant::now() - Duration::from_secs(57);
        f.cache.put(&question(0).cache_key(), &cached, stored);
        let mut out = Vec::new();
        assert_eq!(
            f.resolve(0, &question(1), Transport::Udp, &mut out).await,
            rcode::NOERROR
        );
        assert_eq!(
            f.refreshes_running(),
            1,
            "the refresh waits on the silent upstream"
        );
        tokio::time::timeout(Duration::from_secs(30), f.stop_refreshes())
            .await
            .expect("refreshes stop when asked");
        assert_eq!(f.refreshes_running(), 0);
        // Still answered from the cache, but no new refresh starts.
        f.cache.put(
            &question(0).cache_key(),
            &cached,
            Instant::now() - Duration::from_secs(57),
        );
        assert_eq!(
            f.resolve(0, &question(2), Transport::Udp, &mut out).await,
            rcode::NOERROR
        );
        assert_eq!(f.refreshes_running(), 0);
    }

    #[tokio::test]
    async fn a_truncated_udp_answer_is_retried_over_tcp() {
        let up = upstream(Mode::Truncate, 9, Arc::new(AtomicBool::new(true))).await;
        let f = Arc::new(
            Forwarder::new(
                &[zone(&[up], UpstreamPolicy::Random)],
                CacheLimits::default(),
            )
            .unwrap(),
        );
        let mut out = Vec::new();
        assert_eq!(
            f.resolve(0, &question(5), Transport::Udp, &mut out).await,
            rcode::NOERROR
        );
        assert_eq!(out[2] & 0x02, 0, "not truncated");
        assert_eq!(last_octet(&out), Some(9));
    }

    #[tokio::test]
    async fn a_silent_upstream_times_out_and_the_next_one_answers() {
        let alive = Arc::new(AtomicBool::new(true));
        let silent = upstream(Mode::Silent, 1, alive.clone()).await;
        let good = upstream(Mode::Good, 2, alive).await;
        let f = Arc::new(
            Forwarder::new(
                &[zone(&[silent, good], UpstreamPolicy::Sequential)],
                CacheLimits {
                    capacity: 0,
                    ..CacheLimits::default()
                },
            )
            .unwrap(),
        );
        let mut out = Vec::new();
        assert_eq!(
            f.resolve(0, &question(5), Transport::Udp, &mut out).await,
            rcode::NOERROR
        );
        assert_eq!(last_octet(&out), Some(2));
        // max_fails = 1: the silent one is down now and skipped without waiting.
        let (_, silent_up) = f.upstreams().next().unwrap();
        assert!(!silent_up.healthy(1));
        assert_eq!(
            f.resolve(0, &question(6), Transport::Udp, &mut out).await,
            rcode::NOERROR
        );
        assert_eq!(silent_up.requests.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn all_upstreams_down_is_servfail_then_stale_then_recovery() {
        let alive = Arc::new(AtomicBool::new(true));
        let up = upstream(Mode::Good, 3, alive.clone()).await;
        let limits = CacheLimits {
            min_ttl: 0,
            serve_stale: Duration::from_secs(3600),
            ..CacheLimits::default()
        };
        let f = Arc::new(Forwarder::new(&[zone(&[up], UpstreamPolicy::Random)], limits).unwrap());
        let mut out = Vec::new();
        // Nothing cached, upstream gone: SERVFAIL (never NXDOMAIN, never a hang).
        alive.store(false, Ordering::Relaxed);
        assert_eq!(
            f.resolve(0, &question(1), Transport::Udp, &mut out).await,
            rcode::SERVFAIL
        );
        // Down now: the next SERVFAIL comes without asking it.
        let requests = f
            .upstreams()
            .next()
            .unwrap()
            .1
            .requests
            .load(Ordering::Relaxed);
        assert_eq!(
            f.resolve(0, &question(2), Transport::Udp, &mut out).await,
            rcode::SERVFAIL
        );
        assert_eq!(
            f.upstreams()
                .next()
                .unwrap()
                .1
                .requests
                .load(Ordering::Relaxed),
            requests
        );
        // The health checker brings it back once it answers.
        alive.store(true, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let checker = tokio::spawn(f.clone().run_health_checks(cancel.clone()));
        for _ in 0..100 {
            if f.upstreams().next().unwrap().1.healthy(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        checker.await.unwrap();
        assert!(
            f.upstreams().next().unwrap().1.healthy(1),
            "health check did not revive the upstream"
        );
        assert_eq!(
            f.resolve(0, &question(3), Transport::Udp, &mut out).await,
            rcode::NOERROR
        );
        // Stale: an answer cached with a TTL in the past is served only when upstreams fail.
        f.cache.put(
            &crate::cache::CacheKey {
                lower_name: LOWER,
                qtype: 28,
                qclass: 1,
                edns: false,
            },
            &{
                let mut r = out.clone();
                r[12 + QUESTION.len() - 3] = 28; // qtype AAAA in the question
                r
            },
            Instant::now() - Duration::from_secs(120),
        );
        alive.store(false, Ordering::Relaxed);
        let q = Question {
            qtype: 28,
            question: b"\x03WWW\x03fwd\x04test\x00\x00\x1c\x00\x01",
            ..question(4)
        };
        assert_eq!(
            f.resolve(0, &q, Transport::Udp, &mut out).await,
            rcode::NOERROR
        );
        assert_eq!(f.cache.stats.stale.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_cache_hit_echoes_the_askers_case_and_max_fails_zero_never_marks_down() {
        let up = upstream(Mode::Good, 4, Arc::new(AtomicBool::new(true))).await;
        let mut cfg = zone(&[up], UpstreamPolicy::Random);
        cfg.max_fails = 0;
        let f = Arc::new(Forwarder::new(&[cfg], CacheLimits::default()).unwrap());
        assert!(
            f.upstreams().next().unwrap().1.healthy(0),
            "max_fails = 0: never down"
        );
        let mut out = Vec::new();
        assert_eq!(
            f.resolve(0, &question(1), Transport::Udp, &mut out).await,
            rcode::NOERROR
        );
        let other_case = b"\x03wWw\x03FwD\x04tEsT\x00\x00\x01\x00\x01";
        let q = Question {
            question: other_case,
            ..question(2)
        };
        assert_eq!(
            f.resolve(0, &q, Transport::Udp, &mut out).await,
            rcode::NOERROR
        );
        assert_eq!(
            f.cache.stats.hits.load(Ordering::Relaxed),
            1,
            "served from the cache"
        );
        assert_eq!(
            &out[12..12 + other_case.len()],
            other_case,
            "DNS 0x20: the asker's own case"
        );
    }

    #[tokio::test]
    async fn queries_beyond_max_concurrent_are_refused() {
        let silent = upstream(Mode::Silent, 1, Arc::new(AtomicBool::new(true))).await;
        let mut cfg = zone(&[silent], UpstreamPolicy::Random);
        cfg.max_concurrent = 1;
        cfg.timeout_ms = 1000;
        let f = Arc::new(Forwarder::new(&[cfg], CacheLimits::default()).unwrap());
        let first = {
            let f = f.clone();
            tokio::spawn(async move {
                f.resolve(0, &question(1), Transport::Udp, &mut Vec::new())
                    .await
            })
        };
        // Let the first query take the only slot (it waits on the silent upstream).
        while f
            .upstreams()
            .next()
            .unwrap()
            .1
            .requests
            .load(Ordering::Relaxed)
            == 0
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut out = Vec::new();
        assert_eq!(
            f.resolve(0, &question(2), Transport::Udp, &mut out).await,
            rcode::REFUSED
        );
        assert_eq!(&out[..2], &[0, 2]);
        assert_eq!(first.await.unwrap(), rcode::SERVFAIL);
    }

    #[test]
    fn upstream_addresses_and_resolv_conf() {
        let dir = std::env::temp_dir().join(format!("fleetdns-resolv-{}", std::process::id()));
        std::fs::write(&dir, "search x\nnameserver 10.0.0.1\nnameserver ::1\n").unwrap();
        let got = parse_upstreams(
            "z",
            &[
                "127.0.0.1:5300".into(),
                "10.1.1.1".into(),
                dir.display().to_string(),
            ],
        )
        .unwrap();
        std::fs::remove_file(&dir).unwrap();
        let want: Vec<SocketAddr> = ["127.0.0.1:5300", "10.1.1.1:53", "10.0.0.1:53", "[::1]:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        let err = parse_upstreams("z", &["dns.example".into()]).unwrap_err();
        assert!(err.to_string().contains("dns.example"), "{err}");
        assert!(parse_upstreams("z", &[]).is_err());
    }
}
