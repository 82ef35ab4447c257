//! One sync (read → plan → apply, XDNS-1) and the loop that repeats it: a change schedules a
//! sync no sooner than `min_event_interval` after the last one, and a full resync runs every
//! `interval`. A failing sync is logged and counted, and retried; it never blocks anything
//! else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleetdns_core::tap::{ObjectsTap, TappedObjects};
use fleetdns_core::{FleetSnapshot, SnapshotReceiver};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::desired::{Desired, annotated_endpoints, clusterset_endpoints, merge_endpoints};
use crate::plan::{Plan, PlanSettings, ZoneRecords, plan};
use crate::rfc2136::{Applied, Rfc2136};
use crate::skydns::SkyDns;

/// Where the records go.
#[derive(Debug, Clone)]
pub enum Provider {
    Rfc2136(Rfc2136),
    Etcd(Box<SkyDns>),
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("reading the current records: {0}")]
    Read(String, &'static str),
    #[error("applying the plan: {0}")]
    Apply(String, &'static str, Applied),
}

impl SyncError {
    /// For `fleetdns_sync_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Read(_, k) | Self::Apply(_, k, _) => k,
        }
    }
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rfc2136(_) => "rfc2136",
            Self::Etcd(_) => "etcd",
        }
    }

    pub async fn read(&self) -> Result<ZoneRecords, SyncError> {
        match self {
            Self::Rfc2136(p) => p
                .read()
                .await
                .map_err(|e| SyncError::Read(e.to_string(), e.kind())),
            Self::Etcd(p) => p
                .read()
                .await
                .map_err(|e| SyncError::Read(e.to_string(), e.kind())),
        }
    }

    pub async fn apply(&self, plan: &Plan, settings: &PlanSettings) -> Result<Applied, SyncError> {
        match self {
            Self::Rfc2136(p) => p
                .apply(plan, &settings.owner_id, &settings.txt_names)
                .await
                .map_err(|e| SyncError::Apply(e.to_string(), e.error.kind(), e.applied)),
            Self::Etcd(p) => p
                .apply(plan, &settings.owner_id, &settings.txt_names)
                .await
                .map_err(|e| SyncError::Apply(e.to_string(), e.error.kind(), e.applied)),
        }
    }
}

/// One `[[sync]]` block.
#[derive(Debug, Clone)]
pub struct SyncJob {
    pub settings: PlanSettings,
    pub provider: Provider,
    /// Every exported service as `<svc>.<ns>.<zone>`.
    pub publish_clusterset: bool,
    /// Full resync period (XDNS-1, ExternalDNS's `--interval`).
    pub interval: Duration,
    /// Least time between event-triggered syncs (`--min-event-sync-interval`).
    pub min_event_interval: Duration,
}

/// What one sync did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub plan: Plan,
    pub applied: Applied,
    pub warnings: Vec<String>,
}

impl SyncJob {
    /// The desired records: every tapped cluster's annotated Services, plus the fleet's
    /// exported services when `publish_clusterset` is on.
    pub fn desired(&self, snapshot: Option<&FleetSnapshot>, tapped: &TappedObjects) -> Desired {
        let mut all = Vec::new();
        let mut warnings = Vec::new();
        for (cluster, objects) in tapped {
            let d = annotated_endpoints(objects);
            all.extend(d.endpoints);
            warnings.extend(d.warnings.into_iter().map(|w| format!("{cluster}: {w}")));
        }
        if self.publish_clusterset
            && let Some(snapshot) = snapshot
        {
            all.extend(clusterset_endpoints(snapshot, &self.settings.zone));
        }
        let mut merged = merge_endpoints(all);
        warnings.append(&mut merged.warnings);
        merged.warnings = warnings;
        merged
    }

    /// Reads the zone and plans; nothing is written.
    pub async fn plan(&self, desired: &Desired) -> Result<Plan, SyncError> {
        let current = self.provider.read().await?;
        Ok(plan(&desired.endpoints, &current, &self.settings))
    }

    /// Reads, plans and (unless `dry_run`) applies.
    pub async fn once(&self, desired: Desired, dry_run: bool) -> Result<Outcome, SyncError> {
        let plan = self.plan(&desired).await?;
        let applied = if dry_run || plan.is_empty() {
            Applied::default()
        } else {
            self.provider.apply(&plan, &self.settings).await?
        };
        Ok(Outcome {
            plan,
            applied,
            warnings: desired.warnings,
        })
    }

    /// Syncs until `cancel`: at start, after changes (no sooner than `min_event_interval`
    /// after the last sync) and every `interval`. Nothing happens until every source has
    /// delivered its cluster through `tap` and (with `publish_clusterset`) the registry has
    /// loaded, so nothing not yet read is taken for gone. A change that leaves the desired
    /// records as the last successful sync wrote them costs no read and no write.
    pub async fn run(
        self,
        mut snapshots: SnapshotReceiver,
        tap: ObjectsTap,
        metrics: Arc<SyncMetrics>,
        cancel: CancellationToken,
    ) {
        let zone = self.settings.zone.clone();
        let mut tapped = tap.subscribe();
        let mut waiting = false;
        // What the last successful sync made the zone hold.
        let mut synced: Option<Vec<crate::model::Endpoint>> = None;
        let mut last: Option<Instant> = None;
        let mut due = Some(Instant::now());
        loop {
            let next_resync = last.map_or_else(Instant::now, |l| l + self.interval);
            let wake = due.map_or(next_resync, |d| d.min(next_resync));
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = snapshots.changed(), if self.publish_clusterset => {
                    if r.is_err() { return; }
                    due.get_or_insert(self.event_time(last));
                    continue;
                }
                r = tapped.changed() => {
                    if r.is_err() { return; }
                    due.get_or_insert(self.event_time(last));
                    continue;
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
            let snapshot = snapshots.borrow_and_update().clone();
            let objects = tapped.borrow_and_update().clone();
            // Not everything read yet: a missing cluster is not a cluster without records.
            if (self.publish_clusterset && snapshot.is_none()) || !tap.is_complete() {
                if !waiting {
                    tracing::warn!(zone = %zone, "sync waits until every source has read its cluster (and the registry has loaded)");
                    waiting = true;
                }
                due = None;
                last = Some(Instant::now());
                continue;
            }
            let resync = last.is_none_or(|l| Instant::now() >= l + self.interval);
            let desired = self.desired(snapshot.as_deref(), &objects);
            due = None;
            if !resync && synced.as_ref() == Some(&desired.endpoints) {
                // A change that moves no record (another service, a heartbeat): no read, no
                // write; the periodic resync still comes.
                continue;
            }
            last = Some(Instant::now());
            waiting = false;
            let wanted = desired.endpoints.clone();
            for w in &desired.warnings {
                tracing::warn!(zone = %zone, detail = %w, "desired record skipped");
            }
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.once(desired, false) => r,
            };
            match result {
                Ok(outcome) => {
                    metrics.record_success(&outcome);
                    log_outcome(&zone, &outcome);
                    synced = Some(wanted);
                }
                Err(e) => {
                    synced = None;
                    metrics.record_error(&e);
                    tracing::error!(zone = %zone, provider = self.provider.name(), kind = e.kind(), error = %e, "sync failed; retrying");
                    // Retry after the event interval rather than a whole resync period.
                    due = Some(
                        Instant::now() + self.min_event_interval.max(Duration::from_millis(500)),
                    );
                }
            }
        }
    }

    fn event_time(&self, last: Option<Instant>) -> Instant {
        let now = Instant::now();
        last.map_or(now, |l| (l + self.min_event_interval).max(now))
    }
}

/// One log line per applied change, and what was left alone at debug level.
pub fn log_outcome(zone: &str, outcome: &Outcome) {
    if outcome.applied.messages == 0 {
        return;
    }
    for c in &outcome.plan.creates {
        tracing::info!(zone = %zone, name = %c.name, record_type = %c.record_type, targets = %c.targets_text(), "record created");
    }
    for u in &outcome.plan.updates {
        tracing::info!(zone = %zone, name = %u.new.name, record_type = %u.new.record_type, old = %u.old.current.targets_text(), targets = %u.new.targets_text(), "record updated");
    }
    for d in &outcome.plan.deletes {
        tracing::info!(zone = %zone, name = %d.current.name, record_type = %d.current.record_type, targets = %d.current.targets_text(), "record deleted");
    }
    for l in &outcome.plan.left_alone {
        tracing::debug!(zone = %zone, name = %l.name, record_type = %l.record_type, reason = %l.reason, "record left alone");
    }
}

/// Counters of one `[[sync]]` block, for `/metrics` (relaxed atomics).
#[derive(Debug, Default)]
pub struct SyncMetrics {
    pub zone: String,
    pub created: AtomicU64,
    pub updated: AtomicU64,
    pub deleted: AtomicU64,
    pub messages: AtomicU64,
    /// Errors by kind, in [`ERROR_KINDS`] order.
    pub errors: [AtomicU64; ERROR_KINDS.len()],
    /// Unix seconds of the last sync that applied everything; 0 = never.
    pub last_success: AtomicU64,
    /// Changes in the last plan.
    pub plan_size: AtomicU64,
}

/// Error kinds counted, in order.
pub const ERROR_KINDS: [&str; 9] = [
    "config",
    "connect",
    "timeout",
    "refused",
    "tsig",
    "axfr",
    "malformed",
    "etcd",
    "other",
];

impl SyncMetrics {
    pub fn new(zone: &str) -> Self {
        Self {
            zone: zone.to_owned(),
            ..Self::default()
        }
    }

    pub fn record_success(&self, o: &Outcome) {
        self.created
            .fetch_add(o.applied.creates as u64, Ordering::Relaxed);
        self.updated
            .fetch_add(o.applied.updates as u64, Ordering::Relaxed);
        self.deleted
            .fetch_add(o.applied.deletes as u64, Ordering::Relaxed);
        self.messages
            .fetch_add(o.applied.messages as u64, Ordering::Relaxed);
        self.plan_size
            .store(o.plan.changes() as u64, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_success.store(now, Ordering::Relaxed);
    }

    pub fn record_error(&self, e: &SyncError) {
        if let SyncError::Apply(_, _, applied) = e {
            self.created
                .fetch_add(applied.creates as u64, Ordering::Relaxed);
            self.updated
                .fetch_add(applied.updates as u64, Ordering::Relaxed);
            self.deleted
                .fetch_add(applied.deletes as u64, Ordering::Relaxed);
            self.messages
                .fetch_add(applied.messages as u64, Ordering::Relaxed);
        }
        let i = ERROR_KINDS
            .iter()
            .position(|k| *k == e.kind())
            .unwrap_or(ERROR_KINDS.len() - 1);
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }
}
