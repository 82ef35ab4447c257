//! The compile loop: every registry snapshot and every change of zones becomes an answer
//! table, compiled off the async runtime at low priority, only what changed
//! ([`fleetdns_dns::compile::incremental::Compiler`]), and swapped in whole. The table it
//! replaces is freed on the compile thread, never by a query thread.

use std::sync::Arc;
use std::time::Instant;

use fleetdns_core::FleetSnapshot;
use fleetdns_dns::compile::incremental::Compiler;
use fleetdns_dns::{AnswerTable, Served, ZonesConfig};
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
        let mut compiler = Some(Compiler::new());
        let mut untrimmed = 0u32;
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            let current = zones.borrow_and_update().clone();
            if let (Some(snapshot), Some(mut c)) = (snapshot, compiler.take()) {
                // Off the runtime's workers and below the UDP workers' priority: a
                // 100k-service compile must not stall queries.
                let (served, ops) = (served.clone(), ops.clone());
                let done = fleetdns_dns::compile_thread::run_low_priority(move || {
                    let whole = install(&mut c, &served, &snapshot, &current, &ops);
                    (c, whole)
                })
                .await;
                if let Some((c, whole)) = done {
                    compiler = Some(c);
                    // A whole compile has trimmed already.
                    untrimmed = if whole { 0 } else { untrimmed + 1 };
                }
            }
            // A compile thread that could not start: begin again from a whole compile.
            compiler.get_or_insert_with(Compiler::new);
            if untrimmed >= TRIM_EVERY {
                untrimmed = 0;
                trim().await;
            }
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = snapshots.changed() => if r.is_err() { return } else { break },
                    r = zones.changed() => if r.is_err() { return } else { break },
                    () = tokio::time::sleep(TRIM_SETTLE), if untrimmed > 0 => {
                        untrimmed = 0;
                        trim().await;
                    }
                }
            }
        }
    });
}

/// Changes compiled one by one leave freed memory behind (each replaces a file's objects, a
/// cluster's export map, some shards) that the allocator keeps resident: +5% over 1 000
/// changes at 50 000 services, all of it given back by a trim. It is trimmed once changes
/// have paused for this long...
const TRIM_SETTLE: std::time::Duration = std::time::Duration::from_secs(3);

/// ... or after this many changes, when they do not pause. A trim walks the heap (6–15 ms at
/// 50 000 services, measured from this loop's debug line, at the lowest priority).
const TRIM_EVERY: u32 = 256;

async fn trim() {
    let started = Instant::now();
    if fleetdns_dns::compile_thread::run_low_priority(
        fleetdns_dns::compile_thread::release_free_memory,
    )
    .await
    .is_some()
    {
        tracing::debug!(
            micros = started.elapsed().as_micros() as u64,
            "freed memory given back after changes"
        );
    }
}

/// Compiles a snapshot and swaps it in. Queries in flight keep the table they loaded. True
/// when it compiled the whole table (and gave freed memory back).
fn install(
    compiler: &mut Compiler,
    served: &Served,
    snapshot: &Arc<FleetSnapshot>,
    zones: &ZonesConfig,
    ops: &OpsState,
) -> bool {
    let started = Instant::now();
    let cpu_before = fleetdns_dns::compile_thread::thread_cpu_time();
    let compiled = compiler.compile(snapshot.clone(), zones, serial_now());
    if compiled.changed.is_none() {
        served.metrics.add_zones(&compiled.table.zone_names());
    }
    let stats = compiled.table.stats();
    let table_bytes = compiled.table.bytes();
    let services = compiled.services;
    // The debug state first: once a client sees the new answer, `/debug/query` knows why.
    let retired_debug = ops.debug.as_ref().map(|debug| {
        debug.installed(
            snapshot.clone(),
            zones.clone(),
            compiled.exports_changed.as_ref(),
        )
    });
    let old = served.table.swap(Some(compiled.table));
    let swapped = started.elapsed();
    let cpu = fleetdns_dns::compile_thread::thread_cpu_time().saturating_sub(cpu_before);
    let clusters_alive = snapshot.clusters.values().filter(|c| c.alive).count();
    ops.table_installed(Installed {
        received: started,
        snapshot_version: snapshot.version,
        clusters_alive,
        clusters_dead: snapshot.clusters.len() - clusters_alive,
        exports: snapshot.export_count(),
        services,
        table: stats,
        compile: swapped,
    });
    tracing::info!(
        version = snapshot.version,
        clusters = snapshot.clusters.len(),
        services,
        names = stats.names,
        records = stats.records,
        table_bytes = table_bytes,
        services_compiled = compiled.changed.unwrap_or(services),
        whole = compiled.changed.is_none(),
        micros = swapped.as_micros() as u64,
        cpu_micros = cpu.as_micros() as u64,
        "answer table installed"
    );
    // What the new table replaced is freed only now that it is served: the old table, and
    // the snapshot before (a replaced export set of 50 000 exports takes milliseconds).
    if let Some(old) = old {
        free_here(old);
    }
    drop(retired_debug);
    drop(compiled.retired);
    let whole = compiled.changed.is_none();
    if whole {
        fleetdns_dns::compile_thread::release_free_memory();
    }
    whole
}

/// Drops a replaced table on this thread once no query holds it any more: a query thread
/// that dropped the last reference would free it inside its next query, and a whole fleet's
/// table takes long to free. Gives up waiting after a while (a query never holds a table
/// that long; the reference is then simply dropped).
fn free_here(old: Arc<AnswerTable>) {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(old);
}

/// The SOA serial of a table compiled now: seconds since the epoch, truncated.
pub(crate) fn serial_now() -> u32 {
    fleetdns_core::Timestamp::now().0 as u32
}
