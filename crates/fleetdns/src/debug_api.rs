//! The read-only debug API of the ops listener: `/debug/fleet` (the fleet as this server sees
//! it) and `/debug/query` (the answer to one question and why). JSON, documented field by field
//! in docs/debug-api.md; off with `[ops] debug = false`.
//!
//! `serve` hands every installed snapshot to [`DebugState::installed`], which keeps the last one
//! (with its merge and zones) and a bounded [`FleetHistory`] for "last seen" facts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetdns_core::{ClusterId, FleetSnapshot, Merged, ServiceKey, Timestamp};
use fleetdns_dns::explain::{self, Explanation, FleetHistory, Inputs};
use fleetdns_dns::forward::ForwardZoneView;
use fleetdns_dns::{Served, ZonesConfig};
use serde::{Deserialize, Serialize};

use crate::ops::OpsState;

/// The last installed snapshot and what was built from it.
#[derive(Debug)]
pub struct Installed {
    pub snapshot: Arc<FleetSnapshot>,
    /// The snapshot's merge, made at the first debug request that needs it: the compiler
    /// changes its own merge in place, and copying 100 000 services on every change for a
    /// debug request that may never come would cost every change.
    merged: std::sync::OnceLock<Merged>,
    pub zones: ZonesConfig,
    pub at: Timestamp,
}

impl Installed {
    /// The merge the table was compiled from (the compiler's incremental merge equals the
    /// whole one: `compile::incremental`'s tests).
    pub fn merged(&self) -> &Merged {
        self.merged
            .get_or_init(|| fleetdns_core::merge_fleet(&self.snapshot))
    }
}

/// How this process gets a cluster's exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Manifest folders read by this process.
    Files,
    /// A Kubernetes API watched by this process.
    Kubernetes,
    /// Published by another process (an agent) through the shared registry.
    Registry,
}

/// What the debug API reads besides the ops state.
#[derive(Debug)]
pub struct DebugState {
    /// `memory` or `etcd`.
    pub registry_kind: &'static str,
    pub liveness_timeout: Duration,
    /// The server's NSID identity (`[dns] nsid`, default the host name).
    pub identity: String,
    current: Mutex<Option<Arc<Installed>>>,
    history: Mutex<FleetHistory>,
    /// The clusters this process's own sources publish, and how.
    local: Mutex<BTreeMap<ClusterId, SourceKind>>,
}

impl DebugState {
    pub fn new(registry_kind: &'static str, liveness_timeout: Duration, identity: String) -> Self {
        Self {
            registry_kind,
            liveness_timeout,
            identity,
            current: Mutex::new(None),
            history: Mutex::new(FleetHistory::default()),
            local: Mutex::new(BTreeMap::new()),
        }
    }

    /// A snapshot was compiled and is being installed; `changed`: the exports that differ
    /// from the snapshot compiled before (the compiler's). Returns what this state let go of
    /// (the snapshot before), for the caller to drop once the new table is served.
    pub fn installed(
        &self,
        snapshot: Arc<FleetSnapshot>,
        zones: ZonesConfig,
        changed: Option<&(u64, BTreeSet<(ClusterId, ServiceKey)>)>,
    ) -> Retired {
        let at = Timestamp::now();
        let seen_before = lock(&self.history).observe_changes(&snapshot, at, changed);
        let installed_before = lock(&self.current).replace(Arc::new(Installed {
            snapshot,
            merged: std::sync::OnceLock::new(),
            zones,
            at,
        }));
        Retired {
            _seen: seen_before,
            _installed: installed_before,
        }
    }

    pub fn set_local_sources(&self, sources: BTreeMap<ClusterId, SourceKind>) {
        *lock(&self.local) = sources;
    }

    fn current(&self) -> Option<Arc<Installed>> {
        lock(&self.current).clone()
    }
}

/// What [`DebugState::installed`] let go of; freeing it may take milliseconds (a replaced
/// export set), so the caller drops it once the new table is served.
#[must_use]
pub struct Retired {
    _seen: Option<Arc<FleetSnapshot>>,
    _installed: Option<Arc<Installed>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerView {
    /// The NSID this server sends (RFC 5001).
    pub nsid: String,
    pub version: String,
    pub now: String,
}

pub(crate) fn server_view(debug: &DebugState) -> ServerView {
    ServerView {
        nsid: debug.identity.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        now: Timestamp::now().to_string(),
    }
}

/// Explains `name` `qtype` against what `served` answers from now.
pub fn query(
    debug: &DebugState,
    served: Option<&Served>,
    name: &str,
    qtype: &str,
) -> Result<String, explain::ExplainError> {
    let qtype = explain::parse_qtype(qtype)?;
    let current = debug.current();
    let empty = BTreeMap::new();
    let default_zones = ZonesConfig::default();
    let history = lock(&debug.history);
    let table = served.and_then(|s| s.table.load_full());
    let forwarder = served.and_then(|s| s.forwarder.load_full());
    let inputs = Inputs {
        snapshot: current.as_deref().map(|c| &*c.snapshot),
        merged: current.as_deref().map_or(&empty, Installed::merged),
        zones: current.as_deref().map_or(&default_zones, |c| &c.zones),
        table: table.as_deref(),
        forwarder: forwarder.as_deref(),
        history: &history,
    };
    let explanation: Explanation = explain::explain(&inputs, name, qtype)?;
    if let (Some(served), Some(zone)) = (served, &explanation.counted_zone) {
        served.metrics.count_zone(zone);
    }
    Ok(query_json(server_view(debug), &explanation))
}

/// `{"server": ..., <explanation fields>}` as pretty JSON, fields in their declared order:
/// what `/debug/query` returns and `query --json` prints.
pub fn query_json(server: ServerView, explanation: &Explanation) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        server: ServerView,
        #[serde(flatten)]
        explanation: &'a Explanation,
    }
    let mut text = serde_json::to_string_pretty(&Out {
        server,
        explanation,
    })
    .unwrap_or_default();
    text.push('\n');
    text
}

/// `/debug/fleet`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetReport {
    pub server: ServerView,
    pub summary: Summary,
    pub registry: RegistryView,
    pub table: Option<TableView>,
    pub clusters: Vec<ClusterRow>,
    pub departed: Vec<DepartedRow>,
    pub services: Vec<ServiceRow>,
    pub forward: Vec<ForwardZoneView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub clusters: usize,
    pub alive: usize,
    pub dead: usize,
    pub services: usize,
    pub services_in_conflict: usize,
    pub forward_zones: usize,
    pub upstreams_down: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryView {
    pub kind: String,
    /// etcd: the revision the snapshot reflects.
    pub revision: Option<i64>,
    /// etcd: whether the snapshot may be behind (not loaded, or the watch is down).
    pub stale: Option<bool>,
    pub snapshot_version: Option<u64>,
    /// When the served snapshot was installed.
    pub snapshot_installed: Option<String>,
    pub snapshot_age_seconds: Option<f64>,
    pub liveness_timeout_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableView {
    pub version: u64,
    pub zones: Vec<String>,
    pub names: usize,
    pub records: usize,
    pub built: Option<String>,
    pub compile_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRow {
    pub id: String,
    pub source: SourceKind,
    /// Kubernetes sources of this process: whether the API server answers.
    pub connected: Option<bool>,
    pub alive: bool,
    pub last_publish: String,
    /// When this server first saw the cluster dead.
    pub dead_since: Option<String>,
    /// The latest a live cluster stays in the answers without a heartbeat after its last
    /// publish: last publish + liveness timeout (heartbeats may extend it).
    pub liveness_deadline: Option<String>,
    pub exports: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepartedRow {
    pub cluster: String,
    pub at: String,
    pub last_publish: String,
    pub was_dead: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRow {
    pub name: String,
    #[serde(rename = "type")]
    pub service_type: String,
    /// Clusters whose exports take part in the answers, oldest export first.
    pub clusters: Vec<String>,
    /// Clusters left out by a type conflict (MCS-22).
    pub excluded: Vec<String>,
    pub ports: Vec<String>,
    pub conflicts: Vec<ConflictRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConflictRow {
    pub reason: String,
    pub winner: String,
    pub clusters: Vec<String>,
    pub message: String,
}

/// The whole fleet as this server sees it.
pub fn fleet(debug: &DebugState, ops: &OpsState, served: Option<&Served>) -> FleetReport {
    let current = debug.current();
    let history = lock(&debug.history);
    let local = lock(&debug.local).clone();
    let connected: BTreeMap<String, bool> = ops
        .source_statuses()
        .iter()
        .map(|s| {
            (
                s.cluster.to_string(),
                s.connected.load(std::sync::atomic::Ordering::Relaxed),
            )
        })
        .collect();
    let etcd = ops.etcd_status();
    let installed = ops.last_table();
    let now = Timestamp::now();
    let mut clusters = Vec::new();
    let mut services = Vec::new();
    if let Some(c) = &current {
        for (id, view) in &c.snapshot.clusters {
            clusters.push(ClusterRow {
                id: id.to_string(),
                source: local.get(id).copied().unwrap_or(SourceKind::Registry),
                connected: connected.get(id.as_str()).copied(),
                alive: view.alive,
                last_publish: view.published.to_string(),
                dead_since: history.dead_since(id).map(|t| t.to_string()),
                liveness_deadline: view.alive.then(|| {
                    Timestamp(view.published.0 + debug.liveness_timeout.as_secs() as i64)
                        .to_string()
                }),
                exports: view.exports.len(),
            });
        }
        for s in c.merged().values() {
            services.push(ServiceRow {
                name: s.key.to_string(),
                service_type: s.service_type.to_string(),
                clusters: s.members.iter().map(|e| e.cluster.to_string()).collect(),
                excluded: s.excluded.iter().map(|e| e.cluster.to_string()).collect(),
                ports: s.ports.iter().map(ToString::to_string).collect(),
                conflicts: s
                    .conflicts
                    .iter()
                    .map(|c| ConflictRow {
                        reason: c.kind.reason().into(),
                        winner: c.winner.to_string(),
                        clusters: c.clusters.iter().map(ToString::to_string).collect(),
                        message: c.message.clone(),
                    })
                    .collect(),
            });
        }
    }
    let departed = history
        .departed()
        .filter(|d| {
            current
                .as_ref()
                .is_none_or(|c| !c.snapshot.clusters.contains_key(&d.cluster))
        })
        .take(50)
        .map(|d| DepartedRow {
            cluster: d.cluster.to_string(),
            at: d.at.to_string(),
            last_publish: d.last_published.to_string(),
            was_dead: d.was_dead,
        })
        .collect();
    let forward = served
        .and_then(|s| s.forwarder.load_full())
        .map(|f| f.zones_view())
        .unwrap_or_default();
    let table = served.and_then(|s| s.table.load_full()).map(|t| {
        let stats = t.stats();
        TableView {
            version: t.version,
            zones: t.zone_names(),
            names: stats.names,
            records: stats.records,
            built: current.as_ref().map(|c| c.at.to_string()),
            compile_seconds: installed.map(|i| i.compile.as_secs_f64()),
        }
    });
    let summary = Summary {
        clusters: clusters.len(),
        alive: clusters.iter().filter(|c| c.alive).count(),
        dead: clusters.iter().filter(|c| !c.alive).count(),
        services: services.len(),
        services_in_conflict: services.iter().filter(|s| !s.conflicts.is_empty()).count(),
        forward_zones: forward.len(),
        upstreams_down: forward
            .iter()
            .flat_map(|z| &z.upstreams)
            .filter(|u| !u.healthy)
            .count(),
    };
    FleetReport {
        server: server_view(debug),
        summary,
        registry: RegistryView {
            kind: debug.registry_kind.into(),
            revision: etcd
                .as_ref()
                .map(|s| s.revision.load(std::sync::atomic::Ordering::Relaxed)),
            stale: etcd
                .as_ref()
                .map(|s| s.stale.load(std::sync::atomic::Ordering::Relaxed)),
            snapshot_version: current.as_ref().map(|c| c.snapshot.version),
            snapshot_installed: current.as_ref().map(|c| c.at.to_string()),
            snapshot_age_seconds: current.as_ref().map(|c| (now.0 - c.at.0).max(0) as f64),
            liveness_timeout_seconds: debug.liveness_timeout.as_secs(),
        },
        table,
        clusters,
        departed,
        services,
        forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetdns_core::{ClusterView, ExportSet};

    fn snapshot(version: u64, clusters: &[(&str, bool)]) -> Arc<FleetSnapshot> {
        Arc::new(FleetSnapshot {
            version,
            clusters: clusters
                .iter()
                .map(|(id, alive)| {
                    (
                        ClusterId::new(id).unwrap(),
                        ClusterView {
                            alive: *alive,
                            exports: Arc::new(ExportSet::new()),
                            published: Timestamp(1_767_000_000),
                            service_entries: Arc::default(),
                        },
                    )
                })
                .collect(),
            vips: BTreeMap::new(),
            ..FleetSnapshot::default()
        })
    }

    #[test]
    fn the_fleet_report_names_sources_dead_and_departed_clusters() {
        let debug = DebugState::new("memory", Duration::from_secs(15), "dns-9".into());
        let ops = OpsState::new(Arc::new(fleetdns_dns::Metrics::new()));
        debug.set_local_sources(
            [(ClusterId::new("a").unwrap(), SourceKind::Files)]
                .into_iter()
                .collect(),
        );
        let _ = debug.installed(
            snapshot(1, &[("a", true), ("b", true), ("c", true)]),
            ZonesConfig::default(),
            None,
        );
        let _ = debug.installed(
            snapshot(2, &[("a", true), ("b", false)]),
            ZonesConfig::default(),
            None,
        );
        let r = fleet(&debug, &ops, None);
        assert_eq!(r.server.nsid, "dns-9");
        assert_eq!(
            (r.summary.clusters, r.summary.alive, r.summary.dead),
            (2, 1, 1)
        );
        let row = |id: &str| r.clusters.iter().find(|c| c.id == id).unwrap();
        assert_eq!(row("a").source, SourceKind::Files);
        assert_eq!(row("b").source, SourceKind::Registry);
        assert!(row("b").dead_since.is_some() && row("b").liveness_deadline.is_none());
        assert_eq!(
            row("a").liveness_deadline.as_deref(),
            Some(Timestamp(1_767_000_015).to_string().as_str())
        );
        assert_eq!(r.departed.len(), 1);
        assert_eq!(
            (r.departed[0].cluster.as_str(), r.departed[0].was_dead),
            ("c", false)
        );
        assert_eq!(r.registry.snapshot_version, Some(2));
        assert!(r.table.is_none(), "no table without a served state");
        // The JSON round-trips (the CLI reads it back).
        let text = serde_json::to_string(&r).unwrap();
        let back: FleetReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back.clusters.len(), 2);
    }
}
