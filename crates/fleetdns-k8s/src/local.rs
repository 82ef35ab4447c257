//! What one cluster's source knows and reports, shared by the watcher (`source`), which
//! fills it, and the writer (`writer`), which reads it: neither imports the other.
//!
//! `SourceStatus` holds the counters for metrics and `/ready`; `LocalView` is the watcher's
//! picture of its own cluster handed to the writer on every change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64};

use fleetdns_core::ClusterId;
use fleetdns_core::translate::Invalid;

use crate::status::Observed;

/// What a running source reports, for metrics and `/ready`. Updated with relaxed atomics.
#[derive(Debug)]
pub struct SourceStatus {
    pub cluster: ClusterId,
    /// The last request to the API server succeeded.
    pub connected: AtomicBool,
    /// Every watched kind has been listed once and the set published.
    pub synced: AtomicBool,
    pub watch_errors: AtomicU64,
    /// Times the API server stopped answering (one per outage, logged once).
    pub outages: AtomicU64,
    /// Objects that could not be read (skipped; the rest of the cluster is served).
    pub bad_objects: AtomicU64,
    pub publishes: AtomicU64,
    pub exports: AtomicU64,
    pub writes: AtomicU64,
    pub write_errors: AtomicU64,
}

impl SourceStatus {
    pub fn new(cluster: ClusterId) -> Self {
        Self {
            cluster,
            connected: AtomicBool::new(false),
            synced: AtomicBool::new(false),
            watch_errors: AtomicU64::new(0),
            outages: AtomicU64::new(0),
            bad_objects: AtomicU64::new(0),
            publishes: AtomicU64::new(0),
            exports: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        }
    }
}

/// What the watcher knows of its own cluster, handed to the writer.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct LocalView {
    pub export_version: &'static str,
    /// The owner label value of this clusterset's objects.
    pub owner: String,
    /// `namespace/name` of each ServiceExport the translation refused, with why.
    pub invalid: BTreeMap<String, Invalid>,
    /// Every ServiceExport with its observed conditions.
    pub exports: BTreeMap<(String, String), Vec<Observed>>,
    /// Namespaces that exist and are not being deleted.
    pub namespaces: BTreeSet<String>,
    /// ServiceImports carrying fleetdns's managed-by label.
    pub our_imports: BTreeSet<(String, String)>,
    /// Every other ServiceImport (another MCS implementation's): never touched.
    pub other_imports: BTreeSet<(String, String)>,
    /// EndpointSlices carrying fleetdns's managed-by label.
    pub our_slices: BTreeSet<(String, String)>,
    /// Every other EndpointSlice: never touched, even when a name matches.
    pub other_slices: BTreeSet<(String, String)>,
    /// What the cluster holds of our ServiceImports and EndpointSlices (labels and content,
    /// see `source::held_content`), by kind, namespace and name: the writer puts back hand edits.
    pub held: BTreeMap<(&'static str, String, String), serde_json::Value>,
}
