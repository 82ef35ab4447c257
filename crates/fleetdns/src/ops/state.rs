//! What the ops listener reports: the DNS counters, and what the serve loop has done.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetdns_dns::{Metrics, TableStats};
use fleetdns_etcd::EtcdStatus;
use fleetdns_k8s::SourceStatus;

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

/// State the ops listener reports: the DNS counters, and what the serve loop has done.
#[derive(Debug)]
pub struct OpsState {
    pub(super) dns: Arc<Metrics>,
    /// The served state, for the cache and upstream metrics of forward zones.
    pub(crate) served: Option<Arc<fleetdns_dns::Served>>,
    pub(super) listening: AtomicBool,
    /// An agent has no answer table: it is ready once its source has synced.
    pub(super) ready_without_table: AtomicBool,
    pub(super) installs: AtomicU64,
    pub(super) installed: Mutex<Option<Installed>>,
    /// The running Kubernetes sources (replaced when a reload restarts the sources).
    pub(super) sources: Mutex<Vec<Arc<SourceStatus>>>,
    /// The etcd registry's state, when that is the registry.
    pub(super) etcd: Mutex<Option<Arc<EtcdStatus>>>,
    /// The `[[sync]]` blocks' counters.
    pub(super) sync: Mutex<Vec<Arc<fleetdns_publish::sync::SyncMetrics>>>,
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

    pub(super) fn last_installed(&self) -> Option<Installed> {
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
}
