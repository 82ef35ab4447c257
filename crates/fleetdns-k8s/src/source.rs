//! One cluster's watcher: Services, EndpointSlices and ServiceExports (plus, when writing back,
//! Namespaces and fleetdns's own ServiceImports) kept in local stores, translated with
//! `fleetdns_core::translate` and published to the registry as the cluster's whole set.
//!
//! A re-list replaces a store whole (deletes are never the only removal path). While the API
//! server is unreachable the cluster keeps heartbeating, so its last known exports stay
//! served; `SourceStatus::connected` and a log line say so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetdns_core::kube::{
    ClusterObjects, EndpointSlice, SERVICE_NAME_LABEL, Service, ServiceExport, SmolStr,
};
use fleetdns_core::service_entry::{ServiceEntryObject, translate_service_entries};
use fleetdns_core::translate::Invalid;
use fleetdns_core::translate::by_service::{ExportsByService, ServiceName, ServiceObjects};
use fleetdns_core::{ClusterId, ExportSet, Registry, ServiceEntrySet, Timestamp};
use futures::stream::{BoxStream, StreamExt};
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::imports::owned_by;
use crate::local::{LocalView, SourceStatus};
use crate::reachability::Reachability;
use crate::resources::CLUSTERSET_LABEL;
use crate::resources::{
    self, APP_MANAGED_BY_LABEL, IMPORT_MANAGER, MANAGED_BY_LABEL, SLICE_MANAGER,
};
use crate::status::{Observed, export_spec_problem, observed_conditions};
use crate::writer;

/// How a source behaves; the binary fills it from the config.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Write ServiceExport status, ServiceImports and EndpointSlices into the cluster.
    pub write_back: bool,
    /// How often the cluster is kept alive in the registry (a third of its liveness timeout).
    pub heartbeat: Duration,
    /// Changes arriving within this window are published together.
    pub settle: Duration,
    /// The clusterset named in the owner label of what the writer writes (garbage collection
    /// deletes only objects labelled with it). `None`: the cluster's ClusterProperty
    /// `clusterset.k8s.io` (MCS-7), else `default`.
    pub clusterset: Option<String>,
    /// Where every complete object set also goes (the external DNS sync's annotated Services).
    pub tap: Option<fleetdns_core::tap::ObjectsTap>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            write_back: true,
            heartbeat: Duration::from_secs(5),
            settle: Duration::from_millis(10),
            clusterset: None,
            tap: None,
        }
    }
}

/// The part of one of our objects the writer compares with what it wants: `metadata.labels`
/// and everything outside `metadata`.
fn held_content(obj: &DynamicObject) -> serde_json::Value {
    let mut content = obj.data.clone();
    if let Some(map) = content.as_object_mut() {
        map.insert(
            "metadata".into(),
            serde_json::json!({ "labels": obj.metadata.labels.clone().unwrap_or_default() }),
        );
    }
    content
}

type Key = (String, String);

/// Objects of one kind, replaced whole by each (re-)list.
struct Store<T> {
    items: BTreeMap<Key, T>,
    pending: Option<BTreeMap<Key, T>>,
    synced: bool,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            pending: None,
            synced: false,
        }
    }
}

fn key_of(obj: &DynamicObject) -> Option<Key> {
    Some((
        obj.metadata.namespace.clone().unwrap_or_default(),
        obj.metadata.name.clone()?,
    ))
}

/// Told of a key whose object may have changed, with its old and new value.
type Changed<'a, T> = dyn FnMut(&Key, Option<&T>, Option<&T>) + 'a;

impl<T: PartialEq> Store<T> {
    /// Applies one watcher event; returns whether the served state may have changed.
    /// `changed` is told every key whose object may have changed, with its old and new value.
    fn apply(
        &mut self,
        event: Event<DynamicObject>,
        parse: impl Fn(&DynamicObject) -> Option<T>,
        changed: &mut Changed<'_, T>,
    ) -> bool {
        match event {
            Event::Init => {
                self.pending = Some(BTreeMap::new());
                false
            }
            Event::InitApply(obj) => {
                if let (Some(key), Some(value)) = (key_of(&obj), parse(&obj)) {
                    self.pending
                        .get_or_insert_with(BTreeMap::new)
                        .insert(key, value);
                }
                false
            }
            Event::InitDone => {
                // The re-list is the whole truth: whatever it did not list is gone.
                let old =
                    std::mem::replace(&mut self.items, self.pending.take().unwrap_or_default());
                for (key, was) in &old {
                    let now = self.items.get(key);
                    if now != Some(was) {
                        changed(key, Some(was), now);
                    }
                }
                for (key, now) in &self.items {
                    if !old.contains_key(key) {
                        changed(key, None, Some(now));
                    }
                }
                self.synced = true;
                true
            }
            Event::Apply(obj) => match (key_of(&obj), parse(&obj)) {
                (Some(key), Some(value)) => {
                    let was = self.items.insert(key.clone(), value);
                    changed(&key, was.as_ref(), self.items.get(&key));
                    true
                }
                // Unreadable now: drop it rather than serve a stale version of it.
                (Some(key), None) => self.remove(&key, changed),
                _ => false,
            },
            Event::Delete(obj) => key_of(&obj).is_some_and(|k| self.remove(&k, changed)),
        }
    }

    fn remove(&mut self, key: &Key, changed: &mut Changed<'_, T>) -> bool {
        let Some(was) = self.items.remove(key) else {
            return false;
        };
        changed(key, Some(&was), None);
        true
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Services,
    Slices,
    Exports,
    Namespaces,
    Imports,
    /// Istio ServiceEntries, when the cluster serves them.
    Entries,
}

type Stream = BoxStream<'static, (Kind, Result<Event<DynamicObject>, watcher::Error>)>;

/// Watches one cluster and publishes it.
pub struct ClusterSource {
    client: Client,
    options: SourceOptions,
    status: Arc<SourceStatus>,
    reachability: Reachability,
    synced_tx: watch::Sender<bool>,
}

impl ClusterSource {
    pub fn new(client: Client, cluster: ClusterId, options: SourceOptions) -> Self {
        let status = Arc::new(SourceStatus::new(cluster));
        Self {
            client,
            options,
            reachability: Reachability::new(status.clone()),
            status,
            synced_tx: watch::Sender::new(false),
        }
    }

    pub fn cluster(&self) -> &ClusterId {
        &self.status.cluster
    }

    pub fn status(&self) -> Arc<SourceStatus> {
        self.status.clone()
    }

    /// Turns true once the cluster's first complete set is published.
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.synced_tx.subscribe()
    }

    /// Runs until `cancel`: discovery, watches, publishing, heartbeats and (with `write_back`)
    /// the writer. Never returns an error: failures are retried with backoff and reported.
    pub async fn run(self, registry: Arc<dyn Registry>, cancel: CancellationToken) {
        let cluster = self.status.cluster.clone();
        let Some((version, owner)) = self.discover(&cancel).await else {
            return;
        };
        tracing::info!(cluster = %cluster, version, clusterset = %owner, "watching ServiceExports");
        let entries_version = match crate::service_entry_version(&self.client).await {
            Ok(Some(v)) => {
                tracing::info!(cluster = %cluster, version = v, "watching Istio ServiceEntries");
                Some(v)
            }
            Ok(None) => {
                tracing::info!(cluster = %cluster, "the cluster serves no networking.istio.io ServiceEntries (Istio CRDs not installed); no mesh hosts from it");
                None
            }
            Err(e) => {
                tracing::warn!(cluster = %cluster, error = %e, "cannot tell whether the cluster serves Istio ServiceEntries; not watching them");
                None
            }
        };
        let (view_tx, view_rx) = watch::channel(None);
        let fleet = registry.subscribe();
        let writer = async {
            if self.options.write_back {
                writer::run(
                    self.client.clone(),
                    self.status.clone(),
                    view_rx,
                    fleet,
                    self.reachability.answered_again(),
                    self.options.settle,
                    cancel.clone(),
                )
                .await;
            }
        };
        tokio::join!(
            self.watch(
                version,
                owner,
                entries_version,
                &*registry,
                view_tx,
                &cancel
            ),
            writer,
            self.reachability.probe(&self.client, &cancel)
        );
    }

    /// The owner label value: the configured clusterset, else the ClusterProperty
    /// `clusterset.k8s.io` (MCS-7, read only when writing back), else `default`.
    async fn owner(&self) -> Result<String, crate::K8sError> {
        let name = match &self.options.clusterset {
            Some(name) => Some(name.clone()),
            None if self.options.write_back => crate::clusterset_name(&self.client).await?,
            None => None,
        };
        let name = name.unwrap_or_else(|| resources::DEFAULT_CLUSTERSET.to_owned());
        Ok(crate::imports::owner_label_value(&name))
    }

    /// The ServiceExport version and the owner label value, retried until the API server
    /// answers and serves the MCS CRDs. `None` when cancelled first.
    async fn discover(&self, cancel: &CancellationToken) -> Option<(&'static str, String)> {
        let mut wait = Duration::from_millis(500);
        let mut said = false;
        loop {
            match crate::export_version(&self.client).await {
                Ok(Some(v)) => match self.owner().await {
                    Ok(owner) => {
                        self.status.connected.store(true, Ordering::Relaxed);
                        return Some((v, owner));
                    }
                    Err(e) => {
                        self.status.watch_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(cluster = %self.status.cluster, error = %e, "cannot read the clusterset name; retrying");
                    }
                },
                Ok(None) => {
                    self.status.connected.store(true, Ordering::Relaxed);
                    if !said {
                        tracing::warn!(cluster = %self.status.cluster, "the cluster serves no multicluster.x-k8s.io ServiceExports (MCS CRDs not installed); waiting for them");
                        said = true;
                    }
                }
                Err(e) => {
                    self.status.connected.store(false, Ordering::Relaxed);
                    self.status.watch_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(cluster = %self.status.cluster, error = %e, "cluster API unreachable; retrying");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    fn streams(&self, version: &'static str, entries: Option<&'static str>) -> Vec<Stream> {
        let config = watcher::Config::default();
        let watch = |ar: kube::core::ApiResource, config: watcher::Config, kind: Kind| -> Stream {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
            self.reachability
                .retrying(watcher::watcher(api, config))
                .map(move |e| (kind, e))
                .boxed()
        };
        let mut out = vec![
            watch(resources::services(), config.clone(), Kind::Services),
            watch(resources::endpoint_slices(), config.clone(), Kind::Slices),
            watch(
                resources::service_exports(version),
                config.clone(),
                Kind::Exports,
            ),
        ];
        if let Some(v) = entries {
            out.push(watch(
                resources::service_entries(v),
                config.clone(),
                Kind::Entries,
            ));
        }
        if self.options.write_back {
            out.push(watch(
                resources::namespaces(),
                config.clone(),
                Kind::Namespaces,
            ));
            // Every ServiceImport, not only ours: one another tool owns is seen and left alone.
            out.push(watch(
                resources::service_imports(version),
                config,
                Kind::Imports,
            ));
        }
        out
    }

    async fn watch(
        &self,
        version: &'static str,
        owner: String,
        entries_version: Option<&'static str>,
        registry: &dyn Registry,
        view_tx: watch::Sender<Option<Arc<LocalView>>>,
        cancel: &CancellationToken,
    ) {
        let cluster = &self.status.cluster;
        let mut events = futures::stream::select_all(self.streams(version, entries_version));
        let mut stores = Stores {
            owner,
            entries_watched: entries_version.is_some(),
            ..Stores::default()
        };
        let mut last_entries: Option<ServiceEntrySet> = None;
        let mut entries_seen: BTreeMap<String, Timestamp> = BTreeMap::new();
        let mut first_seen: BTreeMap<String, Timestamp> = BTreeMap::new();
        let mut last: Option<Arc<ExportSet>> = None;
        let mut by_service = ExportsByService::default();
        let mut publish_at: Option<Instant> = None;
        let mut heartbeat = tokio::time::interval(self.options.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                event = events.next() => {
                    let Some((kind, event)) = event else { return };
                    match event {
                        Ok(event) if matches!(kind, Kind::Entries) && !stores.entries_watched => {
                            // Refused before (RBAC fixed since): ServiceEntries count again.
                            self.reachability.event(&event);
                            tracing::info!(cluster = %cluster, "ServiceEntries can be listed again");
                            stores.entries_watched = true;
                            stores.entries.apply(event, |o| parse(o, &self.status), &mut |_, _, _| {});
                        }
                        Err(e) if matches!(kind, Kind::Entries) && refused(&e) => {
                            // RBAC without serviceentries: serve the cluster without them
                            // rather than not at all.
                            if stores.entries_watched {
                                tracing::warn!(cluster = %cluster, error = %e, "the API server refuses to list ServiceEntries; serving the cluster without them");
                                stores.entries_watched = false;
                                if publish_at.is_none() {
                                    publish_at = Some(Instant::now());
                                }
                            }
                        }
                        Ok(event) => {
                            self.reachability.event(&event);
                            if stores.apply(kind, event, &self.status) && publish_at.is_none() {
                                publish_at = Some(Instant::now() + self.options.settle);
                            }
                        }
                        Err(e) => self.reachability.failed(&kind, &e),
                    }
                }
                _ = sleep_until(publish_at) => {
                    publish_at = None;
                    // Publishing needs only what the translation reads: a write-back kind
                    // that cannot be listed (RBAC) must not stop the cluster being served.
                    if !stores.synced(false) {
                        continue;
                    }
                    if let Some(tap) = &self.options.tap {
                        tap.set(cluster, &stores.objects());
                    }
                    // Only the services whose objects changed are translated again.
                    let touched = std::mem::take(&mut stores.touched);
                    let translated = by_service.update(
                        cluster,
                        &touched,
                        |name| stores.objects_of(name),
                        &mut |label| {
                            *first_seen.entry(label.to_owned()).or_insert_with(Timestamp::now)
                        },
                    );
                    first_seen.retain(|label, _| {
                        label.split_once('/').is_some_and(|(ns, name)| {
                            stores.exports.items.contains_key(&(ns.to_owned(), name.to_owned()))
                        })
                    });
                    for w in &translated.warnings {
                        tracing::warn!(cluster = %cluster, detail = %w, "export partly skipped");
                    }
                    let exports = by_service.exports();
                    if last.as_ref() != Some(exports) {
                        let count = exports.len();
                        match registry.publish(cluster, exports.clone()).await {
                            Ok(()) => {
                                self.status.publishes.fetch_add(1, Ordering::Relaxed);
                                self.status.exports.store(count as u64, Ordering::Relaxed);
                                tracing::info!(cluster = %cluster, exports = count, invalid = by_service.invalid().count(), "cluster published");
                                last = Some(exports.clone());
                            }
                            Err(e) => {
                                tracing::warn!(cluster = %cluster, error = %e, "registry publish failed; retrying");
                                publish_at = Some(Instant::now() + Duration::from_secs(1));
                            }
                        }
                    }
                    if last.is_some() && stores.entries_watched {
                        let objects: Vec<ServiceEntryObject> =
                            stores.entries.items.values().cloned().collect();
                        let (entries, notes) = translate_service_entries(cluster, &objects, &mut |label| {
                            *entries_seen.entry(label.to_owned()).or_insert_with(Timestamp::now)
                        });
                        entries_seen.retain(|label, _| entries.contains_key(label));
                        if last_entries.as_ref() != Some(&entries) {
                            for n in &notes {
                                tracing::warn!(cluster = %cluster, detail = %n, "ServiceEntry not served in full");
                            }
                            let count = entries.len();
                            match registry.publish_service_entries(cluster, entries.clone()).await {
                                Ok(()) => {
                                    tracing::info!(cluster = %cluster, service_entries = count, "ServiceEntries published");
                                    last_entries = Some(entries);
                                }
                                Err(e) => {
                                    tracing::warn!(cluster = %cluster, error = %e, "registry publish of ServiceEntries failed; retrying");
                                    publish_at = Some(Instant::now() + Duration::from_secs(1));
                                }
                            }
                        }
                    }
                    if last.is_some() {
                        self.status.synced.store(true, Ordering::Relaxed);
                        self.synced_tx.send_replace(true);
                    }
                    if self.options.write_back && stores.synced(true) {
                        // Only a changed view wakes the writer (pod churn in services that
                        // are not exported changes nothing it writes).
                        let view = stores.view(version, by_service.invalid().cloned().collect());
                        view_tx.send_if_modified(|old| {
                            if old.as_deref() == Some(&view) {
                                return false;
                            }
                            *old = Some(Arc::new(view));
                            true
                        });
                    }
                }
                _ = heartbeat.tick() => {
                    // The registry first: an API server that black-holes the probe must not
                    // cost the cluster its liveness.
                    if last.is_some()
                        && let Err(e) = registry.heartbeat(cluster).await
                    {
                        tracing::warn!(cluster = %cluster, error = %e, "registry heartbeat failed");
                    }
                }
            }
        }
    }
}

/// A list or watch the API server answered with 403 or 404.
fn refused(e: &watcher::Error) -> bool {
    let code = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    };
    matches!(code, Some(403 | 404))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn parse<T: DeserializeOwned>(obj: &DynamicObject, status: &SourceStatus) -> Option<T> {
    // Read from the borrowed value: short strings are copied inline rather than moved out
    // and freed.
    let parsed = serde_json::to_value(obj).and_then(|v| T::deserialize(&v));
    match parsed {
        Ok(v) => Some(v),
        Err(e) => {
            status.bad_objects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                cluster = %status.cluster,
                namespace = obj.metadata.namespace.as_deref().unwrap_or(""),
                name = obj.metadata.name.as_deref().unwrap_or(""),
                error = %e,
                "object skipped: cannot be read"
            );
            None
        }
    }
}

/// A ServiceExport, or why it cannot be read (counted and logged like any bad object).
fn read_export(obj: &DynamicObject, status: &SourceStatus) -> Result<ServiceExport, String> {
    if let Some(problem) = export_spec_problem(&obj.data) {
        status.bad_objects.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            cluster = %status.cluster,
            namespace = obj.metadata.namespace.as_deref().unwrap_or(""),
            name = obj.metadata.name.as_deref().unwrap_or(""),
            error = %problem,
            "ServiceExport cannot be read; marked Valid=False"
        );
        return Err(problem);
    }
    parse(obj, status).ok_or_else(|| "its metadata cannot be read".to_owned())
}

#[derive(Default)]
struct Stores {
    services: Store<Service>,
    /// EndpointSlices, with their content when they are ours.
    slices: Store<(EndpointSlice, Option<serde_json::Value>)>,
    /// ServiceExports, each read or with why it cannot be (it then gets `Valid=False`).
    exports: Store<(Result<ServiceExport, String>, Vec<Observed>)>,
    /// Namespaces, by whether they are active (no `deletionTimestamp`: not being deleted).
    namespaces: Store<bool>,
    /// ServiceImports: their content when fleetdns's label is on them, else `None`.
    imports: Store<Option<serde_json::Value>>,
    /// The owner label value: objects of ours labelled for another clusterset are not ours.
    owner: String,
    entries: Store<ServiceEntryObject>,
    /// Whether the cluster serves ServiceEntries (then a set is complete only once listed).
    entries_watched: bool,
    /// The EndpointSlices of each service (by its `kubernetes.io/service-name` label).
    slices_by_service: HashMap<ServiceName, BTreeSet<Key>>,
    /// Services whose Service, slices or ServiceExport changed since they were last
    /// translated.
    touched: BTreeSet<ServiceName>,
}

impl Stores {
    fn apply(&mut self, kind: Kind, event: Event<DynamicObject>, status: &SourceStatus) -> bool {
        let touched = &mut self.touched;
        let mut touch = |key: &Key| {
            touched.insert((key.0.as_str().into(), key.1.as_str().into()));
        };
        match kind {
            Kind::Services => self
                .services
                .apply(event, |o| parse(o, status), &mut |k, _, _| touch(k)),
            Kind::Exports => self.exports.apply(
                event,
                |o| {
                    let conditions = observed_conditions(&o.data);
                    Some((read_export(o, status), conditions))
                },
                &mut |k, _, _| touch(k),
            ),
            Kind::Slices => {
                let owner = &self.owner;
                let index = &mut self.slices_by_service;
                self.slices.apply(
                    event,
                    |o| {
                        let slice: EndpointSlice = parse(o, status)?;
                        let labels = &slice.metadata.labels;
                        let ours = labels.get(MANAGED_BY_LABEL).map(SmolStr::as_str)
                            == Some(SLICE_MANAGER)
                            && owned_by(labels.get(CLUSTERSET_LABEL).map(SmolStr::as_str), owner);
                        Some((slice, ours.then(|| held_content(o))))
                    },
                    // A slice belongs to the service its label names: both its old and its
                    // new service are translated again.
                    &mut |key, was, now| {
                        let service_of = |held: Option<&(EndpointSlice, _)>| {
                            let (slice, _) = held?;
                            let service = slice.metadata.labels.get(SERVICE_NAME_LABEL)?;
                            Some((key.0.as_str().into(), service.clone()))
                        };
                        if let Some(service) = service_of(was) {
                            if let Some(slices) = index.get_mut(&service) {
                                slices.remove(key);
                                if slices.is_empty() {
                                    index.remove(&service);
                                }
                            }
                            touched.insert(service);
                        }
                        if let Some(service) = service_of(now) {
                            index
                                .entry(service.clone())
                                .or_default()
                                .insert(key.clone());
                            touched.insert(service);
                        }
                    },
                )
            }
            Kind::Namespaces => self.namespaces.apply(
                event,
                |o| Some(o.metadata.deletion_timestamp.is_none()),
                &mut |_, _, _| {},
            ),
            Kind::Imports => self.imports.apply(
                event,
                |o| {
                    let labels = o.metadata.labels.as_ref();
                    let ours = labels
                        .and_then(|l| l.get(APP_MANAGED_BY_LABEL))
                        .map(String::as_str)
                        == Some(IMPORT_MANAGER)
                        && owned_by(
                            labels
                                .and_then(|l| l.get(CLUSTERSET_LABEL))
                                .map(String::as_str),
                            &self.owner,
                        );
                    Some(ours.then(|| held_content(o)))
                },
                &mut |_, _, _| {},
            ),
            Kind::Entries => self
                .entries
                .apply(event, |o| parse(o, status), &mut |_, _, _| {}),
        }
    }

    /// One service's objects, for its translation.
    fn objects_of(&self, name: &ServiceName) -> ServiceObjects<'_> {
        let key: Key = (name.0.to_string(), name.1.to_string());
        ServiceObjects {
            service: self.services.items.get(&key),
            slices: self
                .slices_by_service
                .get(name)
                .into_iter()
                .flatten()
                .filter_map(|key| self.slices.items.get(key).map(|(slice, _)| slice))
                .collect(),
            export: self
                .exports
                .items
                .get(&key)
                .and_then(|(export, _)| export.as_ref().ok()),
        }
    }

    fn synced(&self, write_back: bool) -> bool {
        self.services.synced
            && self.slices.synced
            && self.exports.synced
            && (!self.entries_watched || self.entries.synced)
            && (!write_back || (self.namespaces.synced && self.imports.synced))
    }

    fn objects(&self) -> ClusterObjects {
        ClusterObjects {
            services: self.services.items.values().cloned().collect(),
            endpoint_slices: self.slices.items.values().map(|(s, _)| s.clone()).collect(),
            service_exports: self
                .exports
                .items
                .values()
                .filter_map(|(e, _)| e.as_ref().ok().cloned())
                .collect(),
        }
    }

    fn view(&self, version: &'static str, invalid: Vec<(String, Invalid)>) -> LocalView {
        let unreadable = self
            .exports
            .items
            .iter()
            .filter_map(|((ns, name), (e, _))| {
                let key = format!("{ns}/{name}");
                let reason = e.as_ref().err()?.clone();
                Some((key.clone(), Invalid::BadExport { key, reason }))
            });
        let mut view = LocalView {
            export_version: version,
            owner: self.owner.clone(),
            invalid: invalid.into_iter().chain(unreadable).collect(),
            exports: self
                .exports
                .items
                .iter()
                .map(|(k, (_, c))| (k.clone(), c.clone()))
                .collect(),
            // A namespace being deleted is no place to import into (MCS-26).
            namespaces: self
                .namespaces
                .items
                .iter()
                .filter(|(_, active)| **active)
                .map(|((_, n), _)| n.clone())
                .collect(),
            ..LocalView::default()
        };
        for ((ns, name), held) in &self.imports.items {
            let key = (ns.clone(), name.clone());
            match held {
                Some(content) => {
                    view.our_imports.insert(key);
                    view.held
                        .insert(("ServiceImport", ns.clone(), name.clone()), content.clone());
                }
                None => {
                    view.other_imports.insert(key);
                }
            }
        }
        for ((ns, name), (_, held)) in &self.slices.items {
            let key = (ns.clone(), name.clone());
            match held {
                Some(content) => {
                    view.our_slices.insert(key);
                    view.held
                        .insert(("EndpointSlice", ns.clone(), name.clone()), content.clone());
                }
                None => {
                    view.other_slices.insert(key);
                }
            }
        }
        view
    }
}
