//! `serve` and `check-config`: bind, load sources, compile snapshots into answer tables.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fleetdns_core::{ClusterId, FleetSnapshot, MemoryRegistry, Registry, merge_fleet};
use fleetdns_dns::forward::Forwarder;
use fleetdns_dns::{Metrics, Served, TcpOptions, ZonesConfig};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::Backend;
use crate::config::{Config, Source};
use crate::files::FilesSource;
use crate::ops::{self, Installed, OpsState};

/// How long shutdown waits for in-flight TCP answers.
const DRAIN: Duration = Duration::from_secs(5);
/// How long `serve` waits for a Kubernetes source's first list before serving without it.
const INITIAL_SYNC: Duration = Duration::from_secs(5);

/// The source's kubeconfig, else `KUBECONFIG` (its first file), else the pod's service account.
fn kube_credentials(source: &Source) -> anyhow::Result<fleetdns_k8s::Credentials> {
    let Source::Kubernetes {
        kubeconfig,
        context,
        ..
    } = source
    else {
        anyhow::bail!("not a kubernetes source");
    };
    let path = kubeconfig.clone().or_else(|| {
        std::env::var_os("KUBECONFIG")
            .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    });
    Ok(match path {
        Some(path) => fleetdns_k8s::Credentials::Kubeconfig {
            path,
            context: context.clone(),
        },
        None if context.is_some() => anyhow::bail!(
            "kubernetes source: `context` needs a kubeconfig (set `kubeconfig` or KUBECONFIG)"
        ),
        None => fleetdns_k8s::Credentials::InCluster,
    })
}

/// Connects a kubernetes source and learns its cluster id; nothing runs yet. Credentials: the
/// source's kubeconfig, else `KUBECONFIG` (its first file), else the pod's service account.
pub(crate) async fn kube_source(
    source: &Source,
    liveness: Duration,
    tap: Option<fleetdns_core::tap::ObjectsTap>,
) -> anyhow::Result<fleetdns_k8s::ClusterSource> {
    let Source::Kubernetes {
        cluster_id,
        write_back,
        clusterset,
        ..
    } = source
    else {
        anyhow::bail!("not a kubernetes source");
    };
    let credentials = kube_credentials(source)?;
    let client = fleetdns_k8s::connect(&credentials).await?;
    let id = fleetdns_k8s::cluster_id(&client, cluster_id.as_ref())
        .await
        .with_context(|| format!("kubernetes source ({credentials})"))?;
    tracing::info!(cluster = %id, credentials = %credentials, write_back, "kubernetes source");
    let options = fleetdns_k8s::SourceOptions {
        write_back: *write_back,
        heartbeat: liveness / 3,
        clusterset: clusterset.clone(),
        tap,
        ..Default::default()
    };
    Ok(fleetdns_k8s::ClusterSource::new(client, id, options))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn serve(config_path: &Path, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(config_path)?;
    if let Some(addr) = listen {
        config.dns.listen = addr;
    }
    runtime()?.block_on(run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn bind_udp(
    addr: SocketAddr,
    buffer: usize,
    reuse_port: bool,
) -> anyhow::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        socket
            .set_reuse_port(true)
            .context("cannot set SO_REUSEPORT")?;
    }
    // Bursts of queries overflow the kernel's default 208 KB; ask for more (capped by rmem_max).
    if let Err(e) = socket.set_recv_buffer_size(buffer) {
        tracing::warn!(error = %e, "cannot size the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer) {
        tracing::warn!(error = %e, "cannot size the UDP send buffer");
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind UDP {addr}"))?;
    Ok(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind TCP {addr}"))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

async fn run(config: Config) -> anyhow::Result<()> {
    let addr = config.dns.listen;
    // One socket shared by every UDP worker, or with `reuse_port` one socket per worker (the
    // kernel spreads queries over them by source address and port).
    let first = bind_udp(addr, config.dns.udp_buffer_bytes, config.dns.reuse_port)?;
    let bound = first.local_addr()?; // the real port when `listen` asks for port 0
    let mut udp = vec![Arc::new(first)];
    if config.dns.reuse_port {
        for _ in 1..config.dns.udp_workers {
            udp.push(Arc::new(bind_udp(
                bound,
                config.dns.udp_buffer_bytes,
                true,
            )?));
        }
    }
    let tcp = tokio::net::TcpListener::from_std(bind_tcp(bound)?)?; // same port as UDP, even for port 0
    let ops_listener = match config.ops.listen {
        Some(ops_addr) => Some(
            tokio::net::TcpListener::bind(ops_addr)
                .await
                .with_context(|| format!("cannot bind the ops listener {ops_addr}"))?,
        ),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let served = Arc::new(Served::new(metrics.clone()));
    served.allow.store(Arc::new(config.allow.clone()));
    served
        .query_log
        .store(config.dns.query_log, std::sync::atomic::Ordering::Relaxed);
    if !config.forward.is_empty() {
        let forwarder = Arc::new(forwarder_for(&config, &metrics).context("forward zones")?);
        served.forwarder.store(Some(forwarder));
    }
    let identity = server_identity(&config);
    let _ = served
        .nsid
        .set(identity.clone().into_bytes().into_boxed_slice());
    let mut ops_state = OpsState::new(metrics.clone()).with_served(served.clone());
    if config.ops.debug {
        ops_state = ops_state.with_debug(Arc::new(crate::debug_api::DebugState::new(
            if config.etcd.is_some() {
                "etcd"
            } else {
                "memory"
            },
            config.liveness_timeout,
            identity.clone(),
        )));
    }
    let ops = Arc::new(ops_state);
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();

    // /health answers while sources load; /ready waits for the first table.
    if let Some(listener) = ops_listener {
        tracing::info!(listen = %listener.local_addr()?, debug = config.ops.debug, "ops listening (/health, /ready, /metrics; with debug: /, /debug/fleet, /debug/query)");
        tasks.spawn(ops::serve_ops(listener, ops.clone(), cancel.clone()));
    }
    // Listeners first: until the first snapshot, authoritative zones answer SERVFAIL.
    for worker in 0..config.dns.udp_workers {
        let socket = udp[worker % udp.len()].clone();
        let (served, cancel) = (served.clone(), cancel.clone());
        tasks.spawn(async move {
            // Its own thread per worker, blocking in recvmmsg (fleetdns_dns::udp).
            if let Err(e) = fleetdns_dns::serve_udp_batched(socket, served, cancel).await {
                tracing::error!(error = %e, "cannot start a UDP worker");
            }
        });
    }
    let tcp_options = TcpOptions {
        idle_timeout: Duration::from_millis(config.dns.tcp_idle_timeout_ms),
        max_connections: config.dns.tcp_max_connections,
    };
    tasks.spawn(fleetdns_dns::serve_tcp(
        tcp,
        served.clone(),
        tcp_options,
        cancel.clone(),
    ));
    ops.set_listening();
    tracing::info!(listen = %bound, "listening on UDP and TCP");

    let backend = Backend::open(&config).await?;
    backend.spawn(&tasks, &cancel);
    ops.set_etcd(backend.etcd_status());
    let registry = backend.registry.clone();
    let tap = crate::publish::tap_for(&config);
    let sync_jobs = crate::publish::jobs(&config).await?;
    let (zones_tx, mut zones_rx) = watch::channel(config.zones.clone());
    let mut live = Live {
        served: served.clone(),
        ops: ops.clone(),
        registry: registry.clone(),
        zones: zones_tx,
        in_cluster: None,
        published: Vec::new(),
        tasks: tasks.clone(),
        sources_gen: cancel.child_token(),
        sources_tasks: TaskTracker::new(),
        checks_gen: cancel.child_token(),
        root: cancel.clone(),
        config,
        tap,
    };
    let (published, in_cluster) = live
        .start_sources(
            &live.config.sources.clone(),
            live.sources_gen.clone(),
            &live.sources_tasks.clone(),
        )
        .await?;
    live.in_cluster = in_cluster;
    live.published = published;
    if live.config.zones.local_cluster.is_none()
        && let Some(id) = &live.in_cluster
    {
        tracing::info!(cluster = %id, "local cluster (for local-first): the in-cluster source's");
        live.zones
            .send_replace(live.effective_zones(&live.config.zones));
    }
    live.start_health_checks();
    // Every source has loaded once: the external DNS sync sees complete sets from the start.
    if let Some(tap) = &live.tap {
        ops.set_sync(crate::publish::spawn(
            sync_jobs, &registry, tap, &tasks, &cancel,
        ));
    }

    // Every source has loaded once: compile now, on every registry change and on new zones.
    let mut snapshots = registry.subscribe();
    {
        let (served, ops, cancel) = (served.clone(), ops.clone(), cancel.clone());
        tasks.spawn(async move {
            loop {
                let snapshot = snapshots.borrow_and_update().clone();
                let zones = zones_rx.borrow_and_update().clone();
                if let Some(snapshot) = snapshot {
                    // Off the runtime's workers and below the UDP workers' priority: a
                    // 100k-service compile must not stall queries.
                    let (served, ops) = (served.clone(), ops.clone());
                    fleetdns_dns::udp::run_low_priority(move || {
                        install(&served, &snapshot, &zones, &ops);
                    })
                    .await;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = snapshots.changed() => if r.is_err() { return },
                    r = zones_rx.changed() => if r.is_err() { return },
                }
            }
        });
    }

    // Reload on SIGHUP and when the config file changes; stop on SIGINT/SIGTERM.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut hangup = hangup_signal()?;
    let mut last_seen = file_stamp(&live.config.path);
    let mut tick = tokio::time::interval(CONFIG_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = &mut shutdown => break,
            _ = hangup.recv() => "SIGHUP",
            _ = tick.tick() => {
                let stamp = file_stamp(&live.config.path);
                if stamp == last_seen {
                    continue;
                }
                last_seen = stamp;
                "config file changed"
            }
        };
        live.reload(why).await;
    }
    tracing::info!("shutting down");
    cancel.cancel();
    tasks.close();
    live.sources_tasks.close();
    let sources = live.sources_tasks.clone();
    if tokio::time::timeout(DRAIN, async { tokio::join!(tasks.wait(), sources.wait()) })
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop in time");
    }
    Ok(())
}

/// The forward zones of `config`, their request counts shown in `metrics` from now on.
fn forwarder_for(
    config: &Config,
    metrics: &Metrics,
) -> Result<Forwarder, fleetdns_dns::forward::ForwardConfigError> {
    let forwarder = Forwarder::new(&config.forward, config.cache)?;
    metrics.add_zones(&forwarder.zone_names());
    Ok(forwarder)
}

/// How often the config file is checked for changes.
const CONFIG_POLL: Duration = Duration::from_millis(500);

/// (modified, length) of a file; changes when it is rewritten.
fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(unix)]
fn hangup_signal() -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot watch SIGHUP")
}

/// The running config and what a reload may replace without touching the listeners.
struct Live {
    served: Arc<Served>,
    ops: Arc<OpsState>,
    registry: Arc<dyn Registry>,
    zones: watch::Sender<ZonesConfig>,
    /// The clusters the running sources publish.
    published: Vec<ClusterId>,
    /// The id of the one in-cluster kubernetes source: the local cluster (for local-first)
    /// when the config names none.
    in_cluster: Option<ClusterId>,
    tasks: TaskTracker,
    /// Cancels the current sources' tasks.
    sources_gen: CancellationToken,
    /// The current sources' tasks: a reload waits for the old ones to stop before it
    /// withdraws clusters, so an old poll in flight cannot publish a withdrawn cluster again.
    sources_tasks: TaskTracker,
    /// Cancels the current forwarder's health checker.
    checks_gen: CancellationToken,
    /// The server's own token: every generation is a child of it.
    root: CancellationToken,
    config: Config,
    /// What the sources also hand to the external DNS sync (`[[sync]]`).
    tap: Option<fleetdns_core::tap::ObjectsTap>,
}

impl Live {
    /// Loads every source once (so the first table is complete), then keeps them running.
    /// Returns the clusters they publish, and the cluster of the one in-cluster kubernetes
    /// source if there is exactly one.
    async fn start_sources(
        &self,
        sources: &[Source],
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> anyhow::Result<(Vec<ClusterId>, Option<ClusterId>)> {
        let registry: Arc<dyn Registry> = self.registry.clone();
        let mut published = Vec::new();
        let mut in_cluster = Vec::new();
        let mut kube_sources = Vec::new();
        for source in sources {
            match source {
                Source::Files { root, interval } => {
                    let mut files =
                        FilesSource::new(root.clone(), *interval).with_tap(self.tap.clone());
                    let report = files.poll(&*registry).await.with_context(|| {
                        format!("cannot read manifest folder {}", root.display())
                    })?;
                    // Every folder found: a cluster whose manifests fail to parse right now keeps
                    // its last good state and must not be withdrawn.
                    published.extend(report.present);
                    tracker.spawn(files.run(registry.clone(), cancel.clone()));
                }
                Source::Kubernetes { .. } => {
                    let in_pod = kube_credentials(source)? == fleetdns_k8s::Credentials::InCluster;
                    let source =
                        kube_source(source, self.config.liveness_timeout, self.tap.clone()).await?;
                    if published.contains(source.cluster()) {
                        anyhow::bail!(
                            "two sources publish cluster {}: give each kubernetes source its own cluster_id",
                            source.cluster()
                        );
                    }
                    if in_pod {
                        in_cluster.push(source.cluster().clone());
                    }
                    published.push(source.cluster().clone());
                    kube_sources.push(source);
                }
            }
        }
        // Everything checked: start the watchers, and give them a moment to list their
        // clusters so the first table has them (CoreDNS multicluster waits 5 s too, CMC-5).
        let mut synced = Vec::new();
        let mut statuses = Vec::new();
        for source in kube_sources {
            synced.push((source.cluster().clone(), source.synced()));
            statuses.push(source.status());
            if let Some(tap) = &self.tap {
                // The external DNS sync waits for this cluster's first list.
                tap.expect(source.cluster());
            }
            tracker.spawn(source.run(registry.clone(), cancel.clone()));
        }
        self.ops.set_sources(statuses);
        if let Some(debug) = &self.ops.debug {
            use crate::debug_api::SourceKind;
            let kube: Vec<&ClusterId> = synced.iter().map(|(c, _)| c).collect();
            debug.set_local_sources(
                published
                    .iter()
                    .map(|c| {
                        let kind = if kube.contains(&c) {
                            SourceKind::Kubernetes
                        } else {
                            SourceKind::Files
                        };
                        (c.clone(), kind)
                    })
                    .collect(),
            );
        }
        let waits = synced.iter_mut().map(|(cluster, rx)| async move {
            if tokio::time::timeout(INITIAL_SYNC, rx.wait_for(|s| *s))
                .await
                .is_err()
            {
                tracing::warn!(cluster = %cluster, "cluster not listed yet; serving without it until it is");
            }
        });
        futures::future::join_all(waits).await;
        let in_cluster = (in_cluster.len() == 1).then(|| in_cluster.remove(0));
        Ok((published, in_cluster))
    }

    /// The zones to serve: the config's, with the in-cluster source's id as the local cluster
    /// when the config names none (so `local-first` works in the stock deploy/).
    fn effective_zones(&self, zones: &ZonesConfig) -> ZonesConfig {
        let mut zones = zones.clone();
        if zones.local_cluster.is_none() {
            zones.local_cluster = self.in_cluster.clone();
        }
        zones
    }

    fn start_health_checks(&self) {
        if let Some(forwarder) = self.served.forwarder.load_full() {
            self.tasks
                .spawn(forwarder.clone().run_health_checks(self.checks_gen.clone()));
            // CDNS-13: a zone whose upstream forwards it back here is found at once.
            let cancel = self.checks_gen.clone();
            let prober = forwarder.clone();
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = prober.probe_loops() => {}
                }
            });
            // Prefetch refreshes end with this forwarder's generation (reload or shutdown).
            let cancel = self.checks_gen.clone();
            self.tasks.spawn(async move {
                cancel.cancelled().await;
                forwarder.stop_refreshes().await;
            });
        }
    }

    /// Re-reads the config. A config that does not load is logged with its key and changes
    /// nothing; a good one replaces zones, forward zones, cache, allow-list and sources.
    /// Listeners stay open throughout, so no query is dropped.
    async fn reload(&mut self, why: &str) {
        let new = match Config::load(&self.config.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(trigger = why, error = %format!("{e:#}"), "config reload failed; keeping the running config");
                return;
            }
        };
        let old = &self.config;
        let restart_only = [
            ("dns.listen", new.dns.listen != old.dns.listen),
            (
                "dns.udp_workers",
                new.dns.udp_workers != old.dns.udp_workers,
            ),
            ("dns.reuse_port", new.dns.reuse_port != old.dns.reuse_port),
            (
                "dns.udp_buffer_bytes",
                new.dns.udp_buffer_bytes != old.dns.udp_buffer_bytes,
            ),
            (
                "dns.tcp_idle_timeout_ms",
                new.dns.tcp_idle_timeout_ms != old.dns.tcp_idle_timeout_ms,
            ),
            (
                "dns.tcp_max_connections",
                new.dns.tcp_max_connections != old.dns.tcp_max_connections,
            ),
            ("ops.listen", new.ops.listen != old.ops.listen),
            ("sync", new.sync != old.sync),
            ("ops.debug", new.ops.debug != old.ops.debug),
            ("dns.nsid", new.dns.nsid != old.dns.nsid),
            (
                "registry",
                new.etcd != old.etcd
                    || new.vips != old.vips
                    || new.liveness_timeout != old.liveness_timeout,
            ),
        ];
        let changed: Vec<&str> = restart_only
            .iter()
            .filter(|(_, c)| *c)
            .map(|(k, _)| *k)
            .collect();
        if !changed.is_empty() {
            tracing::warn!(keys = %changed.join(", "), "these settings change only on restart; the rest is applied");
        }
        let mut new = new;
        let forward_changed = new.forward != old.forward || new.cache != old.cache;
        // Every fallible step first: a reload that fails changes nothing.
        let forwarder = if forward_changed {
            let built = if new.forward.is_empty() {
                None
            } else {
                match forwarder_for(&new, &self.served.metrics) {
                    Ok(f) => Some(Arc::new(f)),
                    Err(e) => {
                        tracing::error!(error = %e, "config reload failed; keeping the running config");
                        return;
                    }
                }
            };
            Some(built)
        } else {
            None
        };
        self.served.allow.store(Arc::new(new.allow.clone()));
        self.served
            .query_log
            .store(new.dns.query_log, std::sync::atomic::Ordering::Relaxed);
        if let Some(forwarder) = forwarder {
            self.served.forwarder.store(forwarder);
            self.checks_gen.cancel();
            self.checks_gen = self.tasks_token();
            self.start_health_checks();
        }
        if new.sources != old.sources {
            let generation = self.tasks_token();
            let tracker = TaskTracker::new();
            match self
                .start_sources(&new.sources, generation.clone(), &tracker)
                .await
            {
                Ok((published, in_cluster)) => {
                    self.in_cluster = in_cluster;
                    self.sources_gen.cancel();
                    self.sources_gen = generation;
                    let old_tasks = std::mem::replace(&mut self.sources_tasks, tracker);
                    old_tasks.close();
                    if tokio::time::timeout(DRAIN, old_tasks.wait()).await.is_err() {
                        tracing::warn!("the old sources did not stop in time");
                    }
                    // Only clusters this process published: with a shared registry the
                    // snapshot also holds other processes' clusters.
                    let before = std::mem::replace(&mut self.published, published.clone());
                    for cluster in before.iter().filter(|c| !published.contains(c)) {
                        tracing::info!(cluster = %cluster, "cluster no longer in any source, withdrawn");
                        let _ = self.registry.withdraw(cluster).await;
                        if let Some(tap) = &self.tap {
                            tap.remove(cluster);
                        }
                    }
                }
                Err(e) => {
                    generation.cancel();
                    tracker.close();
                    tracing::error!(error = %format!("{e:#}"), "new sources failed to load; keeping the running sources");
                    // Remembered as still running, so the next reload tries the new ones again.
                    new.sources = self.config.sources.clone();
                }
            }
        }
        let zones = self.effective_zones(&new.zones);
        if *self.zones.borrow() != zones {
            self.zones.send_replace(zones);
        }
        tracing::info!(trigger = why, "config reloaded");
        self.config = new;
    }

    /// A token that stops with the server.
    fn tasks_token(&self) -> CancellationToken {
        self.root.child_token()
    }
}

/// Compiles a snapshot and swaps it in. Queries in flight keep the table they loaded.
fn install(served: &Served, snapshot: &Arc<FleetSnapshot>, zones: &ZonesConfig, ops: &OpsState) {
    let started = Instant::now();
    let merged = merge_fleet(snapshot);
    for service in merged.values() {
        for c in &service.conflicts {
            tracing::warn!(service = %service.key, reason = c.kind.reason(), detail = %c.message, "export conflict");
        }
    }
    let compiled = fleetdns_dns::compile(snapshot, &merged, zones, serial_now());
    served.metrics.add_zones(&compiled.zone_names());
    let stats = compiled.stats();
    let services = merged.len();
    // The debug state first: once a client sees the new answer, `/debug/query` knows why.
    if let Some(debug) = &ops.debug {
        debug.installed(snapshot.clone(), Arc::new(merged), zones.clone());
    }
    served.table.store(Some(Arc::new(compiled)));
    let clusters_alive = snapshot.clusters.values().filter(|c| c.alive).count();
    ops.table_installed(Installed {
        received: started,
        snapshot_version: snapshot.version,
        clusters_alive,
        clusters_dead: snapshot.clusters.len() - clusters_alive,
        exports: snapshot.export_count(),
        services,
        table: stats,
        compile: started.elapsed(),
    });
    tracing::info!(
        version = snapshot.version,
        clusters = snapshot.clusters.len(),
        services,
        names = stats.names,
        records = stats.records,
        micros = started.elapsed().as_micros() as u64,
        "answer table installed"
    );
}

/// `[dns] nsid`, else the host name (in Kubernetes the pod name): the identity this server
/// answers NSID queries with and reports in the debug API.
pub(crate) fn server_identity(config: &Config) -> String {
    if let Some(id) = &config.dns.nsid {
        return id.clone();
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates what fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "fleetdns".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn serial_now() -> u32 {
    fleetdns_core::Timestamp::now().0 as u32
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `check-config`: loads the config and every source once, prints what would be served.
/// Exits 1 when a source has errors (a manifest that does not parse, a bad folder name).
pub fn check_config(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    runtime()?.block_on(async move {
        let mut registry = MemoryRegistry::new(config.liveness_timeout);
        // VIPs as `serve` allocates them, so `.global` names and ServiceEntry hosts show.
        if let Some((range, grace)) = config.vips {
            registry = registry.with_vips(range, grace);
        }
        if let Some(range6) = config.vips_v6 {
            registry = registry.with_vips_v6(range6);
        }
        let mut errors = Vec::new();
        let mut notes = Vec::new();
        let mut source_notes = Vec::new();
        for source in &config.sources {
            match source {
                Source::Files { root, interval } => {
                    let report = FilesSource::new(root.clone(), *interval)
                        .poll(&registry)
                        .await
                        .with_context(|| {
                            format!("cannot read manifest folder {}", root.display())
                        })?;
                    errors.extend(report.errors);
                    notes.extend(report.notes);
                }
                Source::Kubernetes { cluster_id, .. } => {
                    // Credentials are loaded (a bad kubeconfig is an error); the cluster itself
                    // is not contacted, so the check works anywhere.
                    match kube_credentials(source).map(|c| (c.to_string(), c)) {
                        Ok((what, credentials)) => match fleetdns_k8s::connect(&credentials).await {
                            Ok(_) => source_notes.push(format!(
                                "kubernetes source {} ({what}): credentials load; the cluster is not contacted by check-config",
                                cluster_id.as_ref().map_or("(id from the ClusterProperty)", |c| c.as_str())
                            )),
                            Err(e) => errors.push(e.to_string()),
                        },
                        Err(e) => errors.push(format!("{e:#}")),
                    }
                }
            }
        }
        let snapshot = registry.subscribe().borrow().clone().unwrap_or_default();
        let merged = merge_fleet(&snapshot);
        let table = fleetdns_dns::compile(&snapshot, &merged, &config.zones, serial_now());
        println!("config {} is valid", config.path.display());
        println!("listen {} (UDP and TCP)", config.dns.listen);
        match &config.etcd {
            Some(e) => println!(
                "registry etcd {} prefix {} (lease {} s); not contacted by check-config",
                e.endpoints.join(","),
                e.prefix,
                e.lease_ttl_secs
            ),
            None => println!("registry memory"),
        }
        println!(
            "policy {:?}, local cluster {}",
            config.zones.clusterset.policy,
            config
                .zones
                .local_cluster
                .as_ref()
                .map_or("(none)", |c| c.as_str())
        );
        println!("zones: {}", table.zone_names().join(" "));
        for (id, view) in &snapshot.clusters {
            println!("cluster {id}: {} exported services", view.exports.len());
        }
        for service in merged.values() {
            let members: Vec<&str> = service.members.iter().map(|e| e.cluster.as_str()).collect();
            let ports: Vec<String> = service.ports.iter().map(ToString::to_string).collect();
            println!(
                "service {} {} clusters [{}] ports [{}]",
                service.key,
                service.service_type,
                members.join(", "),
                ports.join(", ")
            );
            for c in &service.conflicts {
                println!("  conflict {}: {}", c.kind.reason(), c.message);
            }
        }
        let stats = table.stats();
        println!("{} names, {} records", stats.names, stats.records);
        // [[sync]]: secret files read and keys checked; the servers are not contacted.
        match crate::publish::jobs(&config).await {
            Ok(jobs) => {
                for job in jobs {
                    println!("{}", crate::publish::describe(&job));
                }
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
        for n in &source_notes {
            println!("{n}");
        }
        for n in &notes {
            println!("not exported: {n}");
        }
        for e in &errors {
            println!("error: {e}");
        }
        Ok(if errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
