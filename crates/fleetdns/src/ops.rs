//! The operations listener (`[ops] listen`): `/health`, `/ready` and `/metrics` over a minimal
//! HTTP/1.1 (GET and HEAD, one request per connection, then close). Takes a bound listener and
//! a cancellation token like the DNS loops; every connection task is tracked.
//!
//! Every metric is listed in `docs/metrics.md`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fleetdns_dns::metrics::{CONTENT_TYPE, Exposition};
use fleetdns_dns::{Metrics, TableStats};
use fleetdns_etcd::EtcdStatus;
use fleetdns_k8s::SourceStatus;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The request line and headers may not be longer than this.
const MAX_HEAD: usize = 8 * 1024;
/// A client has this long to send its request, and to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections beyond this are closed at once (scrapers and probes need a handful).
const MAX_CONNECTIONS: usize = 64;
/// After a failed accept (out of file descriptors), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
    pub(crate) served: Option<Arc<fleetdns_dns::Served>>,
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
    /// The debug API and status page; `None` with `[ops] debug = false`.
    pub(crate) debug: Option<Arc<crate::debug_api::DebugState>>,
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
            debug: None,
        }
    }

    pub fn set_sync(&self, sync: Vec<Arc<fleetdns_publish::sync::SyncMetrics>>) {
        *self
            .sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = sync;
    }

    /// `fleetdns_sync_*`: one series per `[[sync]]` zone (docs/metrics.md).
    fn render_sync(&self, out: &mut Exposition<'_>) {
        use fleetdns_publish::sync::{ERROR_KINDS, SyncMetrics};
        let all = self
            .sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
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

    /// Turns on the debug API and the status page.
    pub fn with_debug(mut self, debug: Arc<crate::debug_api::DebugState>) -> Self {
        self.debug = Some(debug);
        self
    }

    /// The Kubernetes sources now running.
    pub fn source_statuses(&self) -> Vec<Arc<SourceStatus>> {
        self.sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn etcd_status(&self) -> Option<Arc<EtcdStatus>> {
        self.etcd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// What the last installed table was built from.
    pub fn last_table(&self) -> Option<Installed> {
        self.last_installed()
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
        *self
            .installed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(installed);
        self.installs.fetch_add(1, Ordering::Relaxed);
    }

    /// The Kubernetes sources now running.
    pub fn set_sources(&self, sources: Vec<Arc<SourceStatus>>) {
        *self
            .sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = sources;
    }

    pub fn set_etcd(&self, status: Option<Arc<EtcdStatus>>) {
        *self
            .etcd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = status;
    }

    fn render_etcd(&self, out: &mut Exposition<'_>) {
        let Some(s) = self
            .etcd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
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
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let counters: [SourceMetric; 6] = [
            (
                "fleetdns_source_watch_errors_total",
                "Failed lists and watches (each retried with backoff; 410 Gone re-lists count too).",
                |s| s.watch_errors.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_source_outages_total",
                "Times the cluster's API server stopped answering (one per outage).",
                |s| s.outages.load(Ordering::Relaxed),
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
        *self
            .installed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        fleetdns_dns::metrics::render_forwarder(forwarder.as_deref(), &mut out);
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

/// Serves the ops routes on `listener` until `cancel` fires: `/health`, `/ready`, `/metrics`,
/// and with the debug API on, `/` (the status page), `/debug/fleet` and `/debug/query`.
/// An axum router on hyper's HTTP/1 server (both already in the binary through the etcd
/// client), with its own accept loop (at most [`MAX_CONNECTIONS`] at once); every connection
/// is a tracked task and closes gracefully on shutdown.
pub async fn serve_ops(listener: TcpListener, state: Arc<OpsState>, cancel: CancellationToken) {
    let app = router(state);
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(listener = "ops", error = %e, "tcp accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(listener = "ops", peer = %peer, "tcp connection limit reached, closing");
            continue;
        };
        let (app, cancel) = (app.clone(), cancel.clone());
        connections.spawn(async move {
            if let Err(e) = connection(stream, app, &cancel).await {
                tracing::debug!(listener = "ops", error = %e, peer = %peer, "tcp connection ended with an error");
            }
            drop(permit);
        });
    }
    connections.close();
    connections.wait().await;
}

/// One HTTP/1.1 connection (keep-alive allowed; a client has [`IO_TIMEOUT`] to send each
/// request head). A client that half-closes after its request still gets the response.
async fn connection<S>(stream: S, app: Router, cancel: &CancellationToken) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .half_close(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(IO_TIMEOUT)
        .max_buf_size(MAX_HEAD.max(8192));
    let conn = builder.serve_connection(
        hyper_util::rt::TokioIo::new(stream),
        hyper_util::service::TowerToHyperService::new(app),
    );
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(IO_TIMEOUT, conn.as_mut()).await.unwrap_or(Ok(()))
        }
    };
    result.map_err(std::io::Error::other)
}

/// The ops routes.
pub fn router(state: Arc<OpsState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/", get(crate::status_page::page))
        .route("/debug/fleet", get(debug_fleet))
        .route("/debug/query", get(debug_query))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(state)
}

async fn ready(State(state): State<Arc<OpsState>>) -> (StatusCode, &'static str) {
    if state.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no answer table installed yet\n",
        )
    }
}

async fn metrics(State(state): State<Arc<OpsState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], state.render())
}

/// The body of a 404 from a debug route when the API is off; `fleetdns query` and `status`
/// recognise it.
pub const DEBUG_OFF: &str = "debug API is off on this server ([ops] debug = false)\n";
/// The same for `fleetdns agent`, which answers no DNS.
pub const DEBUG_AGENT: &str =
    "this is a fleetdns agent: it answers no DNS; ask a DNS server (fleetdns serve)\n";

/// The 404 of a debug route without the debug API.
pub(crate) fn debug_unavailable(state: &OpsState) -> Response {
    let body = if state.served.is_none() {
        DEBUG_AGENT
    } else {
        DEBUG_OFF
    };
    (StatusCode::NOT_FOUND, body).into_response()
}

pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
        .into_response()
}

async fn debug_fleet(State(state): State<Arc<OpsState>>) -> Response {
    let Some(debug) = state.debug.clone() else {
        return debug_unavailable(&state);
    };
    let report = crate::debug_api::fleet(&debug, &state, state.served.as_deref());
    json(StatusCode::OK, &report)
}

async fn debug_query(State(state): State<Arc<OpsState>>, RawQuery(query): RawQuery) -> Response {
    let Some(debug) = state.debug.clone() else {
        return debug_unavailable(&state);
    };
    let mut name = None;
    let mut qtype = "A".to_owned();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "name" => name = Some(v.into_owned()),
            "type" => qtype = v.into_owned(),
            _ => {}
        }
    }
    let Some(name) = name else {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "missing parameter: name (e.g. /debug/query?name=payment.default.svc.clusterset.local&type=A)"}),
        );
    };
    match crate::debug_api::query(&debug, state.served.as_deref(), &name, &qtype) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Err(e) => json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": e.to_string()}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetdns_dns::metrics::{parse_exposition, sample_value};
    use fleetdns_dns::{Outcome, Transport};

    fn state() -> Arc<OpsState> {
        let served = Arc::new(fleetdns_dns::Served::new(Arc::new(Metrics::new())));
        let zone: fleetdns_dns::forward::ForwardZoneConfig =
            toml::from_str("zone = \"cluster3.local\"\nupstreams = [\"192.0.2.1\"]").unwrap();
        let forwarder = fleetdns_dns::forward::Forwarder::new(
            &[zone],
            fleetdns_dns::cache::CacheLimits::default(),
        )
        .unwrap();
        served.metrics.add_zones(&forwarder.zone_names());
        served.forwarder.store(Some(Arc::new(forwarder)));
        let state = OpsState::new(served.metrics.clone()).with_served(served);
        let cluster = fleetdns_core::ClusterId::new("cluster-a").unwrap();
        state.set_sources(vec![Arc::new(SourceStatus::new(cluster))]);
        state.set_etcd(Some(Arc::new(EtcdStatus::default())));
        state.set_sync(vec![Arc::new(fleetdns_publish::sync::SyncMetrics::new(
            "fleet.example.com",
        ))]);
        Arc::new(state)
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

    /// Sends raw request bytes through the real HTTP stack (an in-memory stream), half-closes,
    /// and reads the whole response: (status, body); status 0 when the connection closed
    /// without one.
    fn raw(state: &Arc<OpsState>, request: &[u8]) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let cancel = CancellationToken::new();
            let app = router(state.clone());
            let task = tokio::spawn(async move { connection(server, app, &cancel).await });
            client.write_all(request).await.unwrap();
            client.shutdown().await.unwrap();
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.unwrap();
            let _ = task.await;
            let text = String::from_utf8_lossy(&out).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                return (0, text);
            };
            let status = head[9..12].parse().unwrap();
            if let Some(len) = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            }) && !request.starts_with(b"HEAD")
                && !body.contains("HTTP/1.1")
            {
                assert_eq!(len.parse::<usize>().unwrap(), body.len(), "{head}");
            }
            (status, body.to_owned())
        })
    }

    fn get(state: &Arc<OpsState>, request: &str) -> (u16, String) {
        raw(state, request.as_bytes())
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
        assert_eq!(
            get(&s, "HEAD /health HTTP/1.1\r\n\r\n"),
            (200, String::new())
        );
        // Two requests on one connection (keep-alive) are both answered.
        let (_, both) = raw(
            &s,
            b"GET /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
        );
        assert!(
            both.contains("ok\n") && both.contains("HTTP/1.1 200"),
            "{both}"
        );
    }

    #[test]
    fn bad_requests_get_400() {
        let s = state();
        for bad in [
            "garbage\r\n\r\n",
            "GET\r\n\r\n",
            "GET /health\r\n\r\n",
            "GET /health HTTP/1.1 extra\r\n\r\n",
            "GET /health SPDY/3\r\n\r\n",
            "GET \u{ff} HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(get(&s, bad).0, 400, "{bad:?}");
        }
        assert_eq!(raw(&s, &[0xff, 0xfe, b'\n', b'\n']).0, 400);
        // Nothing but blank lines: closed without a response.
        assert_eq!(get(&s, "\r\n\r\n").0, 0);
    }

    #[test]
    fn the_debug_routes_say_when_the_debug_api_is_off() {
        let s = state();
        for path in ["/", "/debug/fleet", "/debug/query?name=x"] {
            let (status, body) = get(&s, &format!("GET {path} HTTP/1.1\r\n\r\n"));
            assert_eq!((status, body.as_str()), (404, DEBUG_OFF), "{path}");
        }
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
            fleetdns_dns::request::Counted::default(),
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
        let s = state();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve_ops(listener, s.clone(), cancel.clone()));
        async fn ask(addr: std::net::SocketAddr, request: &[u8]) -> String {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
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
        let long = ask(addr, &[b'a'; MAX_HEAD + 10]).await;
        assert!(long.starts_with("HTTP/1.1 4"), "{long:?}");
        let health = ask(addr, b"GET /health HTTP/1.1\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        let metrics = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            metrics
                .to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{metrics}"
        );
        cancel.cancel();
        task.await.unwrap();
    }
}
