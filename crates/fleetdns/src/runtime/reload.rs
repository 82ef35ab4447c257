//! What `serve` may change while it runs: [`Live`] holds the running config and replaces zones,
//! forward zones, cache, allow-list and sources on SIGHUP or when the config file changes,
//! without touching the listeners; then drains on SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use fleetdns_core::tap::ObjectsTap;
use fleetdns_core::{ClusterId, Registry};
use fleetdns_dns::forward::Forwarder;
use fleetdns_dns::{Metrics, Served, ZonesConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::file_watch;
use crate::ops::OpsState;
use crate::runtime::signals::{hangup_signal, shutdown_signal};
use crate::runtime::sources::{SourceSinks, start_sources};

/// How long shutdown waits for in-flight TCP answers, and a reload for the old sources.
const DRAIN: Duration = Duration::from_secs(5);
/// How often the config file is checked for changes.
const CONFIG_POLL: Duration = Duration::from_millis(500);

/// The forward zones of `config`, their request counts shown in `metrics` from now on.
pub(crate) fn forwarder_for(
    config: &Config,
    metrics: &Metrics,
) -> Result<Forwarder, fleetdns_dns::forward::ForwardConfigError> {
    let forwarder = Forwarder::new(&config.forward, config.cache)?;
    metrics.add_zones(&forwarder.zone_names());
    Ok(forwarder)
}

/// The running config and what a reload may replace without touching the listeners.
pub(crate) struct Live {
    pub served: Arc<Served>,
    pub ops: Arc<OpsState>,
    pub registry: Arc<dyn Registry>,
    pub zones: watch::Sender<ZonesConfig>,
    /// The clusters the running sources publish.
    pub published: Vec<ClusterId>,
    /// The id of the one in-cluster kubernetes source: the local cluster (for local-first)
    /// when the config names none.
    pub in_cluster: Option<ClusterId>,
    pub tasks: TaskTracker,
    /// Cancels the current sources' tasks.
    pub sources_gen: CancellationToken,
    /// The current sources' tasks: a reload waits for the old ones to stop before it
    /// withdraws clusters, so an old poll in flight cannot publish a withdrawn cluster again.
    pub sources_tasks: TaskTracker,
    /// Cancels the current forwarder's health checker.
    pub checks_gen: CancellationToken,
    /// The server's own token: every generation is a child of it.
    pub root: CancellationToken,
    pub config: Config,
    /// What the sources also hand to the external DNS sync (`[[sync]]`).
    pub tap: Option<ObjectsTap>,
}

impl Live {
    /// The zones to serve: the config's, with the in-cluster source's id as the local cluster
    /// when the config names none (so `local-first` works in the stock deploy/).
    pub(crate) fn effective_zones(&self, zones: &ZonesConfig) -> ZonesConfig {
        let mut zones = zones.clone();
        if zones.local_cluster.is_none() {
            zones.local_cluster.clone_from(&self.in_cluster);
        }
        zones
    }

    pub(crate) fn start_health_checks(&self) {
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
    pub(crate) async fn reload(&mut self, why: &str) {
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
                "dns.udp_realtime",
                new.dns.udp_realtime != old.dns.udp_realtime,
            ),
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
            match start_sources(&new.sources, &self.sinks(), generation.clone(), &tracker).await {
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

    /// Where this server's sources publish.
    pub(crate) fn sinks(&self) -> SourceSinks<'_> {
        SourceSinks {
            registry: &self.registry,
            tap: &self.tap,
            ops: &self.ops,
            liveness: self.config.liveness_timeout,
        }
    }

    /// Reloads on SIGHUP and when the config file changes until SIGINT/SIGTERM, then stops
    /// every task and waits up to [`DRAIN`] for them (in-flight TCP answers included).
    pub(crate) async fn run_until_shutdown(mut self) -> anyhow::Result<()> {
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let mut hangup = hangup_signal()?;
        let mut last_seen = file_watch::stamp(&self.config.path);
        let mut tick = file_watch::ticker(CONFIG_POLL);
        loop {
            let why = tokio::select! {
                _ = &mut shutdown => break,
                _ = hangup.recv() => "SIGHUP",
                _ = tick.tick() => {
                    let stamp = file_watch::stamp(&self.config.path);
                    if stamp == last_seen {
                        continue;
                    }
                    last_seen = stamp;
                    "config file changed"
                }
            };
            self.reload(why).await;
        }
        tracing::info!("shutting down");
        self.root.cancel();
        self.tasks.close();
        self.sources_tasks.close();
        let (tasks, sources) = (self.tasks.clone(), self.sources_tasks.clone());
        if tokio::time::timeout(DRAIN, async { tokio::join!(tasks.wait(), sources.wait()) })
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop in time");
        }
        Ok(())
    }

    /// A token that stops with the server.
    fn tasks_token(&self) -> CancellationToken {
        self.root.child_token()
    }
}
