//! The operations listener (`[ops] listen`): `/health`, `/ready` and `/metrics` over a minimal
//! HTTP/1.1 (GET and HEAD, one request per connection, then close). Takes a bound listener and
//! a cancellation token like the DNS loops; every connection task is tracked.
//!
//! Every metric is listed in `docs/metrics.md`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetdns_dns::metrics::{CONTENT_TYPE, Exposition};
use fleetdns_dns::{Metrics, TableStats};
use fleetdns_etcd::EtcdStatus;
use fleetdns_k8s::SourceStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The request line and headers may not be longer than this.
const MAX_HEAD: usize = 8 * 1024;
/// A client has this long to send its request, and to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections beyond this are closed at once (scrapers and probes need a handful).
const MAX_CONNECTIONS: usize = 64;

/// What the last installed answer table was built from.
#[derive(Debug, Clone, Copy)]
pub struct Installed {
    /// When the compiler received the registry snapshot.
    pub received: Instant,
    pub snapshot_version: u64,
    pub clusters_alive: usize,
    pub clusters_dead: usize,
    pub exports: usize,
    /// Services after merging across clusters.
    pub services: usize,
    pub table: TableStats,
    pub compile: Duration,
}

/// (name, help, how to read it) of one per-source metric.
type SourceMetric = (&'static str, &'static str, fn(&SourceStatus) -> u64);

/// State the ops listener reports: the DNS counters, and what the serve loop has done.
#[derive(Debug)]
pub struct OpsState {
    dns: Arc<Metrics>,
    /// The served state, for the cache and upstream metrics of forward zones.
    served: Option<Arc<fleetdns_dns::Served>>,
    listening: AtomicBool,
    /// An agent has no answer table: it is ready once its source has synced.
    ready_without_table: AtomicBool,
    installs: AtomicU64,
    installed: Mutex<Option<Installed>>,
    /// The running Kubernetes sources (replaced when a reload restarts the sources).
    sources: Mutex<Vec<Arc<SourceStatus>>>,
    /// The etcd registry's state, when that is the registry.
    etcd: Mutex<Option<Arc<EtcdStatus>>>,
    /// The `[[sync]]` blocks' counters.
    sync: Mutex<Vec<Arc<fleetdns_publish::sync::SyncMetrics>>>,
}

impl OpsState {
    pub fn new(dns: Arc<Metrics>) -> Self {
        Self {
            dns,
            served: None,
            listening: AtomicBool::new(false),
            ready_without_table: AtomicBool::new(false),
            installs: AtomicU64::new(0),
            installed: Mutex::new(None),
            sources: Mutex::new(Vec::new()),
            etcd: Mutex::new(None),
            sync: Mutex::new(Vec::new()),
        }
    }

    pub fn set_sync(&self, sync: Vec<Arc<fleetdns_publish::sync::SyncMetrics>>) {
        *self.sync.lock().unwrap_or_else(|e| e.into_inner()) = sync;
    }

    /// `fleetdns_sync_*`: one series per `[[sync]]` zone (docs/metrics.md).
    fn render_sync(&self, out: &mut Exposition<'_>) {
        use fleetdns_publish::sync::{ERROR_KINDS, SyncMetrics};
        let all = self.sync.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if all.is_empty() {
            return;
        }
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        type Field = fn(&SyncMetrics) -> &AtomicU64;
        let series: [(&str, &str, &str, Field); 6] = [
            (
                "fleetdns_sync_records_created_total",
                "counter",
                "Record sets the sync created in the external zone.",
                |m| &m.created,
            ),
            (
                "fleetdns_sync_records_updated_total",
                "counter",
                "Record sets the sync updated in the external zone.",
                |m| &m.updated,
            ),
            (
                "fleetdns_sync_records_deleted_total",
                "counter",
                "Record sets the sync deleted from the external zone.",
                |m| &m.deleted,
            ),
            (
                "fleetdns_sync_writes_total",
                "counter",
                "Write requests the sync sent (RFC 2136 UPDATE messages, etcd transactions).",
                |m| &m.messages,
            ),
            (
                "fleetdns_sync_last_success_timestamp_seconds",
                "gauge",
                "Unix time of the last sync that applied everything (0: none yet).",
                |m| &m.last_success,
            ),
            (
                "fleetdns_sync_plan_changes",
                "gauge",
                "Changes (creates, updates, deletes) in the last plan.",
                |m| &m.plan_size,
            ),
        ];
        for (name, kind, help, field) in series {
            out.header(name, kind, help);
            for m in &all {
                out.sample(name, &[("zone", m.zone.as_str())], get(field(m)));
            }
        }
        let name = "fleetdns_sync_errors_total";
        out.header(name, "counter", "Syncs that failed, by zone and kind (connect, timeout, refused, tsig, axfr, malformed, etcd, config, other).");
        for m in &all {
            for (i, kind) in ERROR_KINDS.iter().enumerate() {
                out.sample(
                    name,
                    &[("zone", m.zone.as_str()), ("kind", kind)],
                    get(&m.errors[i]),
                );
            }
        }
    }

    /// Reports the forwarder of `served` too.
    pub fn with_served(mut self, served: Arc<fleetdns_dns::Served>) -> Self {
        self.served = Some(served);
        self
    }

    /// The DNS listeners are bound and serving.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Release);
    }

    /// An answer table was swapped in.
    pub fn table_installed(&self, installed: Installed) {
        *self.installed.lock().unwrap_or_else(|e| e.into_inner()) = Some(installed);
        self.installs.fetch_add(1, Ordering::Relaxed);
    }

    /// The Kubernetes sources now running.
    pub fn set_sources(&self, sources: Vec<Arc<SourceStatus>>) {
        *self.sources.lock().unwrap_or_else(|e| e.into_inner()) = sources;
    }

    pub fn set_etcd(&self, status: Option<Arc<EtcdStatus>>) {
        *self.etcd.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    fn render_etcd(&self, out: &mut Exposition<'_>) {
        let Some(s) = self.etcd.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return;
        };
        let rows: [(&str, &str, &str, u64); 7] = [
            (
                "fleetdns_registry_stale",
                "gauge",
                "1 while the etcd snapshot served may be behind etcd (not loaded yet, or the watch is down); the last snapshot keeps being served.",
                u64::from(s.stale.load(Ordering::Relaxed)),
            ),
            (
                "fleetdns_registry_revision",
                "gauge",
                "The etcd revision the served snapshot reflects.",
                s.revision.load(Ordering::Relaxed).max(0) as u64,
            ),
            (
                "fleetdns_registry_loads_total",
                "counter",
                "Snapshots loaded from etcd: the first, then one after every compaction or lost connection.",
                s.loads.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_registry_watch_errors_total",
                "counter",
                "etcd snapshot loads and watches that failed (each retried with backoff).",
                s.watch_errors.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_registry_bad_values_total",
                "counter",
                "etcd values that could not be decoded (skipped).",
                s.bad_values.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_registry_publishes_total",
                "counter",
                "Export sets this process wrote to etcd.",
                s.publishes.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_registry_publish_errors_total",
                "counter",
                "Export sets this process failed to write to etcd (retried by the source).",
                s.publish_errors.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in rows {
            out.header(name, kind, help);
            out.sample(name, &[], value);
        }
    }

    fn render_sources(&self, out: &mut Exposition<'_>) {
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if sources.is_empty() {
            return; // a family without samples is not valid exposition
        }
        let gauges: [SourceMetric; 3] = [
            (
                "fleetdns_source_connected",
                "1 while the cluster's API server answers; 0 while it is unreachable (its last known exports stay served).",
                |s| u64::from(s.connected.load(Ordering::Relaxed)),
            ),
            (
                "fleetdns_source_synced",
                "1 once every watched kind was listed and the cluster's set published.",
                |s| u64::from(s.synced.load(Ordering::Relaxed)),
            ),
            (
                "fleetdns_source_exports",
                "Exported services in the cluster's last published set.",
                |s| s.exports.load(Ordering::Relaxed),
            ),
        ];
        let counters: [SourceMetric; 5] = [
            (
                "fleetdns_source_watch_errors_total",
                "Failed lists and watches (each retried with backoff; 410 Gone re-lists count too).",
                |s| s.watch_errors.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_source_bad_objects_total",
                "Objects skipped because they could not be read.",
                |s| s.bad_objects.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_source_publishes_total",
                "Export sets published to the registry (only when the set changed).",
                |s| s.publishes.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_source_writes_total",
                "Writes into the cluster: ServiceExport status, ServiceImports, EndpointSlices, deletes.",
                |s| s.writes.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_source_write_errors_total",
                "Writes into the cluster that failed (retried with backoff).",
                |s| s.write_errors.load(Ordering::Relaxed),
            ),
        ];
        for (kind, list) in [("gauge", &gauges[..]), ("counter", &counters[..])] {
            for (name, help, read) in list {
                out.header(name, kind, help);
                for s in &sources {
                    out.sample(name, &[("cluster", s.cluster.as_str())], read(s));
                }
            }
        }
    }

    fn last_installed(&self) -> Option<Installed> {
        *self.installed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ready: the DNS listeners are bound and the first answer table is installed (for an
    /// agent: its cluster is listed and published).
    pub fn is_ready(&self) -> bool {
        self.ready_without_table.load(Ordering::Acquire)
            || self.listening.load(Ordering::Acquire) && self.last_installed().is_some()
    }

    /// For `agent`, which serves no DNS.
    pub fn set_ready_without_table(&self) {
        self.ready_without_table.store(true, Ordering::Release);
    }

    /// The whole exposition. The registry and table gauges appear once a table is installed.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        let mut out = Exposition::new(&mut text);
        out.header(
            "fleetdns_build_info",
            "gauge",
            "Always 1; the version of the running fleetdns.",
        );
        out.sample(
            "fleetdns_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        self.dns.render(&mut out);
        let forwarder = self.served.as_ref().and_then(|s| s.forwarder.load_full());
        fleetdns_dns::forward::render_metrics(forwarder.as_deref(), &mut out);
        self.render_sources(&mut out);
        self.render_etcd(&mut out);
        self.render_sync(&mut out);

        let name = "fleetdns_table_installs_total";
        out.header(
            name,
            "counter",
            "Answer tables compiled and swapped in (one per registry change).",
        );
        out.sample(name, &[], self.installs.load(Ordering::Relaxed));
        let Some(i) = self.last_installed() else {
            return text;
        };
        let gauges: [(&str, &str, f64); 8] = [
            (
                "fleetdns_registry_snapshot_age_seconds",
                "Seconds since the registry snapshot behind the installed answer table was taken (the last change of fleet state).",
                i.received.elapsed().as_secs_f64(),
            ),
            (
                "fleetdns_registry_snapshot_version",
                "Version of the registry snapshot behind the installed answer table.",
                i.snapshot_version as f64,
            ),
            (
                "fleetdns_registry_exports",
                "Exported services in the snapshot, counted per cluster.",
                i.exports as f64,
            ),
            (
                "fleetdns_table_services",
                "Services in the installed answer table after merging across clusters.",
                i.services as f64,
            ),
            (
                "fleetdns_table_zones",
                "Zones the installed answer table serves.",
                i.table.zones as f64,
            ),
            (
                "fleetdns_table_names",
                "Names (owners and empty non-terminals) in the installed answer table.",
                i.table.names as f64,
            ),
            (
                "fleetdns_table_records",
                "Records in the installed answer table.",
                i.table.records as f64,
            ),
            (
                "fleetdns_table_compile_duration_seconds",
                "Time the installed answer table took to merge and compile.",
                i.compile.as_secs_f64(),
            ),
        ];
        let name = "fleetdns_registry_clusters";
        out.header(
            name,
            "gauge",
            "Clusters in the snapshot behind the installed answer table, by liveness.",
        );
        out.sample(name, &[("state", "alive")], i.clusters_alive);
        out.sample(name, &[("state", "dead")], i.clusters_dead);
        for (name, help, value) in gauges {
            out.header(name, "gauge", help);
            out.sample(name, &[], value);
        }
        text
    }
}

/// Serves `/health`, `/ready` and `/metrics` on `listener` until `cancel` fires.
pub async fn serve_ops(listener: TcpListener, state: Arc<OpsState>, cancel: CancellationToken) {
    fleetdns_dns::server::accept_loop(
        listener,
        MAX_CONNECTIONS,
        cancel.clone(),
        "ops",
        move |stream, _| {
            let (state, cancel) = (state.clone(), cancel.clone());
            async move { connection(stream, &state, &cancel).await }
        },
    )
    .await;
}

async fn connection(
    mut stream: TcpStream,
    state: &OpsState,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let complete = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        r = tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream, &mut head)) => match r {
            Err(_) => return Ok(()), // too slow: close without a word
            Ok(r) => r?,
        },
    };
    if !complete && head.is_empty() {
        return Ok(()); // connected and closed: a TCP probe
    }
    let response = if complete {
        respond(&head, state)
    } else {
        Response::text(400, "bad request\n")
    };
    let bytes = response.encode();
    tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "response timed out"))?
}

/// Reads until the blank line that ends the headers. Returns whether it came: `false` on end
/// of stream or when the head grows past [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(false);
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_end(&head[searched_from..]) {
            head.truncate(searched_from + end);
            return Ok(true);
        }
        if head.len() > MAX_HEAD {
            return Ok(false);
        }
    }
}

/// Where the head ends (`\r\n\r\n`, or `\n\n` from lenient clients).
fn find_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| {
        let rest = &bytes[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

#[derive(Debug)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    head_only: bool,
    allow: bool,
}

impl Response {
    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            head_only: false,
            allow: false,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Service Unavailable",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        if !self.head_only {
            out.push_str(&self.body);
        }
        out.into_bytes()
    }
}

/// Routes one request head (request line and headers, headers ignored).
fn respond(head: &[u8], state: &OpsState) -> Response {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Response::text(400, "bad request\n");
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "bad request\n");
    };
    if !target.starts_with('/') || !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Response::text(400, "bad request\n");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ if !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()) => {
            let mut r = Response::text(405, "method not allowed\n");
            r.allow = true;
            return r;
        }
        _ => return Response::text(400, "bad request\n"),
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let mut response = match path {
        "/health" => Response::text(200, "ok\n"),
        "/ready" if state.is_ready() => Response::text(200, "ready\n"),
        "/ready" => Response::text(503, "not ready: no answer table installed yet\n"),
        "/metrics" => Response {
            content_type: CONTENT_TYPE,
            ..Response::text(200, &state.render())
        },
        _ => Response::text(404, "not found\n"),
    };
    response.head_only = head_only;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetdns_dns::metrics::{parse_exposition, sample_value};
    use fleetdns_dns::{Outcome, Transport};

    fn state() -> OpsState {
        let served = Arc::new(fleetdns_dns::Served::new(Arc::new(Metrics::new())));
        let zone: fleetdns_dns::forward::ForwardZoneConfig =
            toml::from_str("zone = \"cluster3.local\"\nupstreams = [\"192.0.2.1\"]").unwrap();
        let mut forwarder = fleetdns_dns::forward::Forwarder::new(
            &[zone],
            fleetdns_dns::cache::CacheLimits::default(),
        )
        .unwrap();
        forwarder.attach_counters(&served.metrics);
        served.forwarder.store(Some(Arc::new(forwarder)));
        let state = OpsState::new(served.metrics.clone()).with_served(served);
        let cluster = fleetdns_core::ClusterId::new("cluster-a").unwrap();
        state.set_sources(vec![Arc::new(SourceStatus::new(cluster))]);
        state.set_etcd(Some(Arc::new(EtcdStatus::default())));
        state.set_sync(vec![Arc::new(fleetdns_publish::sync::SyncMetrics::new(
            "fleet.example.com",
        ))]);
        state
    }

    fn installed() -> Installed {
        Installed {
            received: Instant::now(),
            snapshot_version: 7,
            clusters_alive: 2,
            clusters_dead: 1,
            exports: 9,
            services: 6,
            table: TableStats {
                zones: 4,
                names: 40,
                records: 30,
            },
            compile: Duration::from_micros(250),
        }
    }

    fn get(state: &OpsState, request: &str) -> (u16, String) {
        let r = respond(request.as_bytes(), state);
        let text = String::from_utf8(r.encode()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        (r.status, body.to_owned())
    }

    #[test]
    fn health_ready_and_unknown_paths() {
        let s = state();
        assert_eq!(
            get(&s, "GET /health HTTP/1.1\r\n\r\n"),
            (200, "ok\n".into())
        );
        assert_eq!(get(&s, "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n").0, 503);
        s.table_installed(installed());
        assert_eq!(
            get(&s, "GET /ready HTTP/1.1\r\n\r\n").0,
            503,
            "not listening"
        );
        s.set_listening();
        assert_eq!(get(&s, "GET /ready?verbose HTTP/1.0\r\n\r\n").0, 200);
        assert_eq!(get(&s, "GET /nope HTTP/1.1\r\n\r\n").0, 404);
        assert_eq!(get(&s, "POST /health HTTP/1.1\r\n\r\n").0, 405);
        let head = respond(b"HEAD /health HTTP/1.1\r\n\r\n", &s).encode();
        assert!(String::from_utf8(head).unwrap().ends_with("\r\n\r\n"));
    }

    #[test]
    fn bad_requests_get_400() {
        let s = state();
        for bad in [
            "garbage\r\n\r\n",
            "GET\r\n\r\n",
            "GET /health\r\n\r\n",
            "GET /health HTTP/1.1 extra\r\n\r\n",
            "GET health HTTP/1.1\r\n\r\n",
            "GET /health SPDY/3\r\n\r\n",
            "get /health HTTP/1.1\r\n\r\n",
            "\r\n\r\n",
            "GET \u{ff} HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(get(&s, bad).0, 400, "{bad:?}");
        }
        assert_eq!(respond(&[0xff, 0xfe, b'\n'], &s).status, 400);
    }

    #[test]
    fn the_end_of_the_head_is_found_across_reads() {
        assert_eq!(find_end(b"GET / HTTP/1.1\r\n\r\n"), Some(18));
        assert_eq!(find_end(b"GET / HTTP/1.1\n\nxx"), Some(16));
        assert_eq!(find_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn the_exposition_is_valid_before_and_after_the_first_table() {
        let s = state();
        let text = s.render();
        let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(sample_value(&samples, "fleetdns_table_names", &[]).is_none());
        assert_eq!(
            sample_value(&samples, "fleetdns_table_installs_total", &[]),
            Some(0.0)
        );

        s.table_installed(installed());
        s.dns.record(
            Transport::Udp,
            &[0; 12],
            Outcome::FormErr,
            &[0, 0, 0x80, 1],
            Duration::from_micros(3),
        );
        let text = s.render();
        let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let v = |name: &str, labels: &[(&str, &str)]| {
            sample_value(&samples, name, labels).unwrap_or_else(|| panic!("{name}\n{text}"))
        };
        assert_eq!(
            v(
                "fleetdns_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            1.0
        );
        assert_eq!(v("fleetdns_table_installs_total", &[]), 1.0);
        assert_eq!(v("fleetdns_registry_clusters", &[("state", "alive")]), 2.0);
        assert_eq!(v("fleetdns_registry_clusters", &[("state", "dead")]), 1.0);
        assert_eq!(v("fleetdns_registry_exports", &[]), 9.0);
        assert_eq!(v("fleetdns_registry_snapshot_version", &[]), 7.0);
        assert!(v("fleetdns_registry_snapshot_age_seconds", &[]) >= 0.0);
        assert_eq!(v("fleetdns_table_services", &[]), 6.0);
        assert_eq!(v("fleetdns_table_zones", &[]), 4.0);
        assert_eq!(v("fleetdns_table_names", &[]), 40.0);
        assert_eq!(v("fleetdns_table_records", &[]), 30.0);
        assert_eq!(v("fleetdns_table_compile_duration_seconds", &[]), 0.00025);
        assert_eq!(
            v(
                "fleetdns_dns_responses_total",
                &[("outcome", "formerr"), ("rcode", "FORMERR")]
            ),
            1.0
        );
        assert_eq!(v("fleetdns_dns_request_duration_seconds_count", &[]), 1.0);
    }

    /// Every metric rendered is documented in docs/metrics.md, and every documented one exists.
    #[test]
    fn every_metric_is_documented() {
        let docs = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md"),
        )
        .unwrap();
        let s = state();
        s.table_installed(installed());
        let text = s.render();
        let rendered: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for name in &rendered {
            assert!(
                docs.contains(&format!("`{name}`")),
                "{name} is not in docs/metrics.md"
            );
        }
        for word in docs.split('`').skip(1).step_by(2) {
            let is_name = word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if word.starts_with("fleetdns_") && is_name {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s))
                    .filter(|b| rendered.contains(b))
                    .unwrap_or(word);
                assert!(
                    rendered.contains(&base),
                    "docs list {word}, which is not rendered"
                );
            }
        }
    }

    #[tokio::test]
    async fn serves_over_tcp_and_survives_garbage() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = Arc::new(state());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve_ops(listener, s.clone(), cancel.clone()));
        async fn ask(addr: std::net::SocketAddr, request: &[u8]) -> String {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(request).await.unwrap();
            c.shutdown().await.unwrap();
            let mut text = String::new();
            c.read_to_string(&mut text).await.unwrap();
            text
        }
        assert!(
            ask(addr, b"\x00\x01garbage")
                .await
                .starts_with("HTTP/1.1 400 ")
        );
        assert!(
            ask(addr, &[b'a'; MAX_HEAD + 10])
                .await
                .starts_with("HTTP/1.1 400 ")
        );
        let health = ask(addr, b"GET /health HTTP/1.1\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        let metrics = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            metrics.contains("Content-Type: text/plain; version=0.0.4"),
            "{metrics}"
        );
        cancel.cancel();
        task.await.unwrap();
    }
}
