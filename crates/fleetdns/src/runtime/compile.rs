//! The compile loop: every registry snapshot and every change of zones becomes an answer
//! table, compiled off the async runtime at low priority and swapped in whole.

use std::sync::Arc;
use std::time::Instant;

use fleetdns_core::{FleetSnapshot, merge_fleet};
use fleetdns_dns::{Served, ZonesConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ops::{Installed, OpsState};

/// Compiles the current snapshot now, then again on every registry change and on new zones,
/// until `cancel` fires. Call it once every source has loaded, so the first table is complete.
pub(crate) fn spawn_compile_loop(
    tasks: &TaskTracker,
    mut snapshots: watch::Receiver<Option<Arc<FleetSnapshot>>>,
    mut zones: watch::Receiver<ZonesConfig>,
    served: Arc<Served>,
    ops: Arc<OpsState>,
    cancel: CancellationToken,
) {
    tasks.spawn(async move {
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            let current = zones.borrow_and_update().clone();
            if let Some(snapshot) = snapshot {
                // Off the runtime's workers and below the UDP workers' priority: a
                // 100k-service compile must not stall queries.
                let (served, ops) = (served.clone(), ops.clone());
                fleetdns_dns::compile_thread::run_low_priority(move || {
                    install(&served, &snapshot, &current, &ops);
                })
                .await;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = snapshots.changed() => if r.is_err() { return },
                r = zones.changed() => if r.is_err() { return },
            }
        }
    });
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

/// The SOA serial of a table compiled now: seconds since the epoch, truncated.
pub(crate) fn serial_now() -> u32 {
    fleetdns_core::Timestamp::now().0 as u32
}
