//! The manifest-file source: `<root>/<cluster-id>/*.yaml`, polled on a tick and at once on a
//! change event (inotify, where the file system has it). A change shows in the registry
//! milliseconds after it is written (within one poll interval without events); only the
//! services whose objects changed are translated again. A file that does not parse is
//! reported with its line and the cluster keeps its last good state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleetdns_core::kube::{ClusterObjects, EndpointSlice, Service, ServiceExport};
use fleetdns_core::service_entry::ServiceEntryObject;
use fleetdns_core::tap::ObjectsTap;
use fleetdns_core::translate::{created_times, translate_cluster};
use fleetdns_core::{ClusterId, ExportSet, Registry, Timestamp, yaml_subset};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::file_watch;

mod documents;
mod folder;

use folder::{ChangedFile, FileState, Folder, Translation};

/// A manifest that could not be read: file, line and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
pub struct ManifestError {
    pub file: PathBuf,
    pub line: u64,
    pub reason: String,
}

/// One object from a manifest file that the translation reads.
#[derive(Debug, Clone)]
pub enum Object {
    Service(Service),
    EndpointSlice(EndpointSlice),
    ServiceExport(ServiceExport),
    /// `networking.istio.io` v1, v1beta1 or v1alpha3.
    ServiceEntry(Box<fleetdns_core::service_entry::ServiceEntryObject>),
}

/// Parses a (multi-document) YAML manifest. Kinds fleetdns does not read are skipped; a `List`
/// is unpacked.
#[cfg(test)]
pub fn parse_manifest(file: &Path, text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    parse_manifest_into(file, text, &mut yaml_subset::Buffers::default(), &mut out)?;
    Ok(out)
}

/// Where a manifest's objects go: a list of them, or a file's objects by kind.
trait ObjectSink {
    fn push(&mut self, object: Object);
    /// How many objects it holds (of each kind).
    fn mark(&self) -> [usize; 4];
    /// Drops the objects pushed since `mark`.
    fn truncate(&mut self, mark: [usize; 4]);
}

impl ObjectSink for Vec<Object> {
    fn push(&mut self, object: Object) {
        self.push(object);
    }

    fn mark(&self) -> [usize; 4] {
        [self.len(), 0, 0, 0]
    }

    fn truncate(&mut self, mark: [usize; 4]) {
        self.truncate(mark[0]);
    }
}

impl ObjectSink for ClusterManifests {
    fn push(&mut self, object: Object) {
        match object {
            Object::Service(s) => self.objects.services.push(s),
            Object::EndpointSlice(s) => self.objects.endpoint_slices.push(s),
            Object::ServiceExport(s) => self.objects.service_exports.push(s),
            Object::ServiceEntry(e) => self.service_entries.push(*e),
        }
    }

    fn mark(&self) -> [usize; 4] {
        [
            self.objects.services.len(),
            self.objects.endpoint_slices.len(),
            self.objects.service_exports.len(),
            self.service_entries.len(),
        ]
    }

    fn truncate(&mut self, mark: [usize; 4]) {
        self.objects.services.truncate(mark[0]);
        self.objects.endpoint_slices.truncate(mark[1]);
        self.objects.service_exports.truncate(mark[2]);
        self.service_entries.truncate(mark[3]);
    }
}

/// Parses a (multi-document) manifest into `out`, the YAML fast path reading into `buffers`
/// (kept between the documents of a file). Kinds fleetdns does not read are skipped; a `List`
/// is unpacked. On an error `out` may hold some of the text's objects.
fn parse_manifest_into<'a>(
    file: &Path,
    text: &'a str,
    buffers: &mut yaml_subset::Buffers<'a>,
    out: &mut impl ObjectSink,
) -> Result<(), ManifestError> {
    if text.trim_start().starts_with(['{', '[']) {
        // JSON (`kubectl get -o json`): serde_json reads it tens of times faster than a YAML
        // parser. What it refuses goes on to the YAML parser, which names the line at fault.
        if let Some(objects) = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|value| objects_of(file, &value))
        {
            objects.into_iter().for_each(|o| out.push(o));
            return Ok(());
        }
    }
    // The YAML that Kubernetes manifests are written in takes a fast path that reads exactly
    // serde-saphyr's value or declines (`fleetdns_core::yaml_subset`), and the objects are
    // read straight from its nodes, as from that value. What it declines, and a document whose
    // objects are refused, go to serde-saphyr, whose errors name the line.
    if let Some(doc) = yaml_subset::read_document_with(text, buffers) {
        let mark = out.mark();
        let read = push_read_object(out, doc.root()).is_ok();
        buffers.recycle(doc);
        if read {
            return Ok(());
        }
        out.truncate(mark);
    }
    // serde-saphyr's default budget (1024 documents, 250k nodes) protects against YAML bombs
    // but refuses an ordinary `kubectl get -o yaml` dump of a big cluster; keep the protection,
    // at sizes real manifest sets reach.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 200_000,
            max_nodes: 10_000_000,
            max_events: 40_000_000,
        },
    };
    let docs: Vec<serde_saphyr::Spanned<Value>> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| ManifestError {
            file: file.to_owned(),
            line: e.location().map_or(0, |l| l.line()),
            reason: first_line(&e.to_string()),
        })?;
    let mut objects = Vec::new();
    for doc in docs {
        let line = doc.referenced.line();
        push_object(&mut objects, &doc.value, &|reason| ManifestError {
            file: file.to_owned(),
            line,
            reason,
        })?;
    }
    objects.into_iter().for_each(|o| out.push(o));
    Ok(())
}

/// The objects of one document read by a fast path (JSON, the YAML subset), or `None` when
/// they are refused: the caller then reads the text with serde-saphyr, whose error names the
/// line at fault.
fn objects_of(file: &Path, value: &Value) -> Option<Vec<Object>> {
    let mut out = Vec::new();
    let error = |reason| ManifestError {
        file: file.to_owned(),
        line: 1,
        reason,
    };
    push_object(&mut out, value, &error).ok().map(|()| out)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_owned()
}

fn push_object(
    out: &mut Vec<Object>,
    value: &Value,
    err: &dyn Fn(String) -> ManifestError,
) -> Result<(), ManifestError> {
    if value.is_null() {
        return Ok(());
    }
    let Value::Object(map) = value else {
        return Err(err(
            "a document must be a Kubernetes object (a mapping)".into()
        ));
    };
    let api = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if api.is_empty() || kind.is_empty() {
        return Err(err("object has no apiVersion or kind".into()));
    }
    // Read from a borrowed value: a string of 23 bytes or less is copied inline into the
    // object instead of moved out of the value and freed (which costs the allocator more).
    let typed = |what: &str, r: Result<Object, serde_json::Error>| {
        r.map_err(|e| err(format!("{kind} {api}: {what}: {e}")))
    };
    match (api.as_str(), kind.as_str()) {
        ("v1", "Service") => out.push(typed(
            "bad Service",
            Service::deserialize(value).map(Object::Service),
        )?),
        ("discovery.k8s.io/v1", "EndpointSlice") => out.push(typed(
            "bad EndpointSlice",
            EndpointSlice::deserialize(value).map(Object::EndpointSlice),
        )?),
        ("multicluster.x-k8s.io/v1alpha1" | "multicluster.x-k8s.io/v1beta1", "ServiceExport") => {
            out.push(typed(
                "bad ServiceExport",
                ServiceExport::deserialize(value).map(Object::ServiceExport),
            )?);
        }
        (
            "networking.istio.io/v1"
            | "networking.istio.io/v1beta1"
            | "networking.istio.io/v1alpha3",
            "ServiceEntry",
        ) => out.push(typed(
            "bad ServiceEntry",
            ServiceEntryObject::deserialize(value).map(|e| Object::ServiceEntry(Box::new(e))),
        )?),
        (_, "List") => {
            let Some(Value::Array(items)) = map.get("items") else {
                return Err(err("List has no items array".into()));
            };
            for item in items {
                push_object(out, item, err)?;
            }
        }
        _ => {
            tracing::debug!(api_version = %api, kind = %kind, "manifest object of a kind fleetdns does not read, skipped");
        }
    }
    Ok(())
}

/// [`push_object`] on a document the YAML fast path read: the same objects from the same
/// value, or `Err` where `push_object` fails (and for what the fast path does not mirror).
fn push_read_object(
    out: &mut impl ObjectSink,
    node: yaml_subset::NodeRef<'_>,
) -> Result<(), yaml_subset::NotRead> {
    use serde::de::Error as _;
    if node.is_null() {
        return Ok(());
    }
    if !node.is_mapping() {
        return Err(yaml_subset::NotRead::custom("a document must be a mapping"));
    }
    let text = |key: &str| {
        node.get(key)
            .and_then(yaml_subset::NodeRef::as_str)
            .unwrap_or_default()
    };
    let (api, kind) = (text("apiVersion"), text("kind"));
    if api.is_empty() || kind.is_empty() {
        return Err(yaml_subset::NotRead::custom("no apiVersion or kind"));
    }
    match (api, kind) {
        ("v1", "Service") => out.push(Object::Service(yaml_subset::from_node(node)?)),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            out.push(Object::EndpointSlice(yaml_subset::from_node(node)?));
        }
        ("multicluster.x-k8s.io/v1alpha1" | "multicluster.x-k8s.io/v1beta1", "ServiceExport") => {
            out.push(Object::ServiceExport(yaml_subset::from_node(node)?));
        }
        (
            "networking.istio.io/v1"
            | "networking.istio.io/v1beta1"
            | "networking.istio.io/v1alpha3",
            "ServiceEntry",
        ) => out.push(Object::ServiceEntry(Box::new(yaml_subset::from_node(
            node,
        )?))),
        (_, "List") => {
            let items = node
                .get("items")
                .and_then(yaml_subset::NodeRef::items)
                .ok_or_else(|| yaml_subset::NotRead::custom("List has no items array"))?;
            for item in items {
                push_read_object(out, item)?;
            }
        }
        _ => {
            tracing::debug!(api_version = %api, kind = %kind, "manifest object of a kind fleetdns does not read, skipped");
        }
    }
    Ok(())
}

/// How long after a change event the folder is polled: a writer's next system calls land.
const CHANGE_SETTLE: Duration = Duration::from_millis(5);

/// Polls `root` and publishes each cluster folder to the registry.
pub struct FilesSource {
    root: PathBuf,
    interval: Duration,
    clusters: BTreeMap<ClusterId, ClusterState>,
    /// Folder names already reported as invalid cluster ids.
    bad_dirs: Vec<String>,
    /// Where every good read of a cluster also goes (the external DNS sync's annotated
    /// Services).
    tap: Option<ObjectsTap>,
    /// Added to every file read: how the tests make a parse slow.
    #[cfg(test)]
    read_delay: Duration,
}

struct ClusterState {
    /// The folder's files and what they translate to (on a translation thread while it runs).
    folder: Folder,
    /// A file was added, removed or changed since the cluster was last translated: the
    /// services it touched are translated and the cluster published again.
    dirty: bool,
    /// The last publish failed: the next poll publishes again.
    retry: bool,
    /// The error last reported, so a broken file is logged once, not every poll.
    last_error: Option<String>,
    /// Whether a good state was ever published.
    published: bool,
}

/// What happened to one cluster's files in a poll.
#[derive(Default)]
struct Arrivals {
    changed: Vec<(PathBuf, ChangedFile)>,
    removed: Vec<PathBuf>,
}

/// What a translation thread found for a cluster.
enum Step {
    /// A file does not parse: nothing was translated.
    Broken(ManifestError),
    Translated(Translation),
}

/// One file to read in a poll.
struct ReadJob {
    cluster: ClusterId,
    path: PathBuf,
    stamp: file_watch::Stamp,
    /// The hash of its content as last read.
    known: Option<u64>,
    /// The hashes of its documents as last read (none when it was read whole).
    known_docs: Vec<u64>,
}

/// What reading one file found.
enum ReadOutcome {
    /// The content hashes as it did: nothing to parse.
    Same,
    Changed {
        hash: Option<u64>,
        parsed: Box<Result<documents::FileRead, ManifestError>>,
    },
}

/// The outcome of one poll, for tests and `check-config`.
#[derive(Debug, Default)]
pub struct PollReport {
    pub published: Vec<ClusterId>,
    /// Every cluster folder found, including those whose manifests do not parse right now.
    pub present: Vec<ClusterId>,
    pub withdrawn: Vec<ClusterId>,
    pub errors: Vec<String>,
    /// ServiceExports refused (with the mcs-api reason) and parts of exports skipped.
    pub notes: Vec<String>,
    /// The files parsed in this poll (new, or with changed content).
    pub parsed: Vec<PathBuf>,
    /// The YAML documents parsed in this poll: a changed file's documents that its last
    /// version had too are not parsed again (a file read whole counts once).
    pub documents_parsed: usize,
    /// The YAML documents of unchanged text parsed again in this poll, for the objects of a
    /// service that changed in another document (or another file): the files source does not
    /// keep objects.
    pub documents_reparsed: usize,
}

impl FilesSource {
    pub fn new(root: PathBuf, interval: Duration) -> Self {
        Self {
            root,
            interval,
            clusters: BTreeMap::new(),
            bad_dirs: Vec::new(),
            tap: None,
            #[cfg(test)]
            read_delay: Duration::ZERO,
        }
    }

    /// Also hands every cluster's objects to `tap`.
    pub fn with_tap(mut self, tap: Option<ObjectsTap>) -> Self {
        self.tap = tap;
        self
    }

    /// The cluster folders under the root, sorted; folders whose name is not a cluster id are
    /// reported (and logged once).
    fn cluster_dirs(
        &mut self,
        report: &mut PollReport,
    ) -> std::io::Result<Vec<(ClusterId, PathBuf)>> {
        let mut entries: Vec<_> = std::fs::read_dir(&self.root)?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        let mut dirs = Vec::new();
        for entry in entries {
            if !entry.path().is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match ClusterId::new(&name) {
                Ok(id) => dirs.push((id, entry.path())),
                Err(e) => {
                    if !self.bad_dirs.contains(&name) {
                        tracing::error!(folder = %entry.path().display(), error = %e, "folder name is not a valid cluster id, skipped");
                        self.bad_dirs.push(name);
                    }
                    report
                        .errors
                        .push(format!("{}: {e}", entry.path().display()));
                }
            }
        }
        Ok(dirs)
    }

    /// Checks the folder once: re-reads only the files whose stamp changed (and parses only
    /// those whose content changed), publishes the clusters that changed, withdraws removed
    /// ones, heartbeats the rest. Published clusters keep heartbeating while files are read.
    /// Fails only when the root itself cannot be read.
    pub async fn poll(&mut self, registry: &dyn Registry) -> std::io::Result<PollReport> {
        self.poll_folders(registry, None).await
    }

    /// [`FilesSource::poll`], looking for changed files only in the cluster folders `only`
    /// names (those change events named), when given; the others heartbeat.
    async fn poll_folders(
        &mut self,
        registry: &dyn Registry,
        only: Option<&BTreeSet<OsString>>,
    ) -> std::io::Result<PollReport> {
        let started = std::time::Instant::now();
        let mut report = PollReport::default();
        let dirs = self.cluster_dirs(&mut report)?;
        let mut jobs = Vec::new();
        let mut arrivals: BTreeMap<ClusterId, Arrivals> = BTreeMap::new();
        // A tap takes every object at every translation: only then are they kept.
        let keep_objects = self.tap.is_some();
        let looked_at: Vec<&(ClusterId, PathBuf)> = dirs
            .iter()
            .filter(|(id, dir)| {
                !self.clusters.contains_key(id)
                    || only.is_none_or(|o| dir.file_name().is_some_and(|n| o.contains(n)))
            })
            .collect();
        // Listing the folders and taking every file's stamp is a system call per file (a few
        // milliseconds for a folder of 500 files, every poll): on a thread below the query
        // threads' priority, as parsing, not on an async worker that queries wait behind.
        let folders: Vec<PathBuf> = looked_at.iter().map(|(_, dir)| dir.clone()).collect();
        let list = move || -> Vec<Vec<(PathBuf, file_watch::Stamp)>> {
            folders
                .iter()
                .map(|dir| {
                    manifest_files(dir)
                        .into_iter()
                        .map(|path| {
                            let stamp = file_watch::stamp(&path);
                            (path, stamp)
                        })
                        .collect()
                })
                .collect()
        };
        let listings = match fleetdns_dns::compile_thread::run_low_priority(list.clone()).await {
            Some(listings) => listings,
            None => list(),
        };
        for ((id, _), listing) in looked_at.into_iter().zip(listings) {
            let state = self.clusters.entry(id.clone()).or_insert_with(|| {
                // A new source for a cluster already served (reload, restart with etcd): the
                // registry's creation times are the first-seen times (MCS-20 keeps its winner).
                let shown = registry.subscribe().borrow().clone();
                ClusterState {
                    folder: Folder::new(
                        shown
                            .map(|s| created_times(&s, id).into_iter().collect())
                            .unwrap_or_default(),
                        keep_objects,
                    ),
                    dirty: true,
                    retry: false,
                    last_error: None,
                    published: false,
                }
            });
            // The listing and the folder's files, both in path order, walked side by side: a
            // folder of thousands of files costs a stat each, not a search each.
            let mut known_files = state.folder.files().peekable();
            let mut removed = Vec::new();
            for (path, stamp) in listing {
                while let Some((gone, _)) =
                    known_files.next_if(|(p, _)| p.as_os_str() < path.as_os_str())
                {
                    removed.push(gone.clone());
                }
                let known = known_files
                    .next_if(|(p, _)| p.as_os_str() == path.as_os_str())
                    .map(|(_, f)| f);
                if known.is_some_and(|f| f.stamp == stamp && stamp.is_some() && !f.recent) {
                    continue;
                }
                jobs.push(ReadJob {
                    cluster: id.clone(),
                    known: known.and_then(|f| f.hash),
                    known_docs: known.map(FileState::doc_hashes).unwrap_or_default(),
                    path,
                    stamp,
                });
            }
            removed.extend(known_files.map(|(p, _)| p.clone()));
            if !removed.is_empty() {
                state.dirty = true;
                arrivals.entry(id.clone()).or_default().removed = removed;
            }
        }
        // A file modified shortly before this moment may be written again without changing its
        // stamp after it was read.
        let reading_at = std::time::SystemTime::now();
        let outcomes = self.read_files(&jobs, registry).await;
        let read_us = started.elapsed().as_micros() as u64;
        // The newest modification among changed files: when the change was written.
        let mut written: BTreeMap<ClusterId, std::time::SystemTime> = BTreeMap::new();
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            let Some(state) = self.clusters.get_mut(&job.cluster) else {
                continue;
            };
            let recent = job.stamp.is_some_and(|s| s.is_recent(reading_at));
            match outcome {
                ReadOutcome::Same => {
                    if let Some(file) = state.folder.file_mut(&job.path) {
                        file.stamp = job.stamp;
                        file.recent = recent;
                    }
                }
                ReadOutcome::Changed { hash, parsed } => {
                    report.parsed.push(job.path.clone());
                    let parsed = *parsed;
                    report.documents_parsed +=
                        parsed.as_ref().map_or(1, documents::FileRead::parsed);
                    if let Some(stamp) = job.stamp {
                        let at = written.entry(job.cluster.clone()).or_insert(stamp.modified);
                        *at = (*at).max(stamp.modified);
                    }
                    state.dirty = true;
                    arrivals
                        .entry(job.cluster.clone())
                        .or_default()
                        .changed
                        .push((
                            job.path,
                            ChangedFile {
                                stamp: job.stamp,
                                hash,
                                recent,
                                read: parsed,
                            },
                        ));
                }
            }
        }
        let mut present = Vec::new();
        let mut work = Vec::new();
        for (id, _) in dirs {
            present.push(id.clone());
            let Some(state) = self.clusters.get_mut(&id) else {
                continue;
            };
            if !state.dirty && !state.retry {
                if let Some(e) = &state.last_error {
                    report.errors.push(e.clone());
                }
                if let Err(e) = registry.heartbeat(&id).await {
                    tracing::warn!(cluster = %id, error = %e, "registry heartbeat failed");
                }
                continue;
            }
            let arrived = arrivals.remove(&id).unwrap_or_default();
            work.push((id, std::mem::take(&mut state.folder), arrived));
        }
        // Off the async workers and below the query threads' priority, as table compiles
        // run, the clusters side by side on every core: the first translation of a
        // 50 000-service cluster takes a good part of a second (a later one, only the services
        // a change touched).
        let tap = self.tap.clone();
        let ids: Vec<ClusterId> = work.iter().map(|(id, _, _)| id.clone()).collect();
        let stepped = if work.is_empty() {
            Some(Vec::new())
        } else {
            fleetdns_dns::compile_thread::run_low_priority(move || {
                in_parallel_owned(work, |(cluster, mut folder, arrived)| {
                    let translating = std::time::Instant::now();
                    for path in &arrived.removed {
                        folder.remove(path);
                    }
                    for (path, file) in arrived.changed {
                        folder.put(path, file);
                    }
                    // Any file that does not parse fails the whole folder, so a half-edited
                    // set never replaces a good one.
                    let step = match folder.translate(&cluster, tap.as_ref()) {
                        Ok(t) => Step::Translated(t),
                        Err(e) => Step::Broken(e),
                    };
                    (folder, step, translating.elapsed())
                })
            })
            .await
        };
        let stepped = stepped.unwrap_or_else(|| {
            // The thread did not start or panicked and took the folders with it: read every
            // file of those clusters again at the next poll.
            for id in &ids {
                tracing::error!(cluster = %id, "translating manifests failed; reading the folder again");
                if let Some(state) = self.clusters.get_mut(id) {
                    state.folder = Folder::new(HashMap::new(), self.tap.is_some());
                    state.dirty = true;
                }
            }
            Vec::new()
        });
        for (id, (folder, step, translating)) in ids.into_iter().zip(stepped) {
            let Some(state) = self.clusters.get_mut(&id) else {
                continue;
            };
            state.folder = folder;
            state.dirty = false;
            let translated = match step {
                Step::Broken(e) => {
                    let msg = e.to_string();
                    if state.last_error.as_deref() != Some(&msg) {
                        tracing::error!(cluster = %id, error = %msg, "manifest does not parse; the cluster keeps its last good state");
                    }
                    report.errors.push(msg.clone());
                    state.last_error = Some(msg);
                    // Until a file changes again there is nothing new to publish.
                    if let (Some(tap), false) = (&self.tap, state.published) {
                        tap.expect(&id);
                    }
                    let _ = registry.heartbeat(&id).await;
                    continue;
                }
                Step::Translated(t) => t,
            };
            let translate_us = translating.as_micros() as u64;
            report.notes.extend(translated.notes);
            report.documents_reparsed += translated.reparsed;
            report.parsed.extend(translated.read_again);
            if state.last_error.take().is_some() {
                tracing::info!(cluster = %id, "manifests parse again");
            }
            let Translation {
                exports,
                changed,
                entries,
                ..
            } = translated;
            let count = exports.len();
            let publishing = std::time::Instant::now();
            let mut published = Ok(());
            // Nothing new (a comment edited, a Service nobody exports): a heartbeat will do.
            let sending = changed > 0 || !state.published || state.retry || entries.is_some();
            if sending {
                published = registry.publish(&id, exports).await;
            } else if let Err(e) = registry.heartbeat(&id).await {
                tracing::warn!(cluster = %id, error = %e, "registry heartbeat failed");
            }
            if let (Ok(()), Some(entries)) = (&published, entries) {
                published = registry.publish_service_entries(&id, entries).await;
                if published.is_ok() {
                    state.folder.entries_published();
                }
            }
            match published {
                Ok(()) => {
                    let since_write_us = written
                        .get(&id)
                        .and_then(|at| std::time::SystemTime::now().duration_since(*at).ok())
                        .map_or(0, |d| d.as_micros() as u64);
                    tracing::debug!(
                        cluster = %id,
                        exports = count,
                        changed,
                        read_us,
                        translate_us,
                        publish_us = publishing.elapsed().as_micros() as u64,
                        since_write_us,
                        "manifest folder published"
                    );
                    state.published = true;
                    state.retry = false;
                    if sending {
                        report.published.push(id);
                    }
                }
                Err(e) => {
                    // The next poll publishes again.
                    state.retry = true;
                    tracing::warn!(cluster = %id, error = %e, "registry publish failed, will retry");
                }
            }
        }
        report.present = present.clone();
        let gone: Vec<ClusterId> = self
            .clusters
            .keys()
            .filter(|id| !present.contains(id))
            .cloned()
            .collect();
        for id in gone {
            self.clusters.remove(&id);
            if let Some(tap) = &self.tap {
                tap.remove(&id);
            }
            tracing::info!(cluster = %id, "cluster folder removed, withdrawing its exports");
            if let Err(e) = registry.withdraw(&id).await {
                tracing::warn!(cluster = %id, error = %e, "registry withdraw failed");
            }
            report.withdrawn.push(id);
        }
        Ok(report)
    }

    /// Reads and parses `jobs` on the blocking pool, on every core, while the clusters
    /// already published keep heartbeating every poll interval: a long parse is not a dead
    /// cluster.
    async fn read_files(&self, jobs: &[ReadJob], registry: &dyn Registry) -> Vec<ReadOutcome> {
        if jobs.is_empty() {
            return Vec::new();
        }
        let work: Vec<(PathBuf, Option<u64>, Vec<u64>)> = jobs
            .iter()
            .map(|j| (j.path.clone(), j.known, j.known_docs.clone()))
            .collect();
        #[cfg(test)]
        let delay = self.read_delay;
        // At the lowest priority, as table compiles: parsing must not take the CPU from the
        // query threads (the threads `in_parallel` starts inherit it).
        let mut reading =
            std::pin::pin!(fleetdns_dns::compile_thread::run_low_priority(move || {
                in_parallel(&work, |(path, known, known_docs)| {
                    #[cfg(test)]
                    std::thread::sleep(delay);
                    read_file(path, *known, known_docs)
                })
            }));
        let alive: Vec<&ClusterId> = self
            .clusters
            .iter()
            .filter(|(_, s)| s.published)
            .map(|(id, _)| id)
            .collect();
        let period = self.interval.max(Duration::from_millis(10));
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                done = &mut reading => {
                    return done.unwrap_or_else(|| {
                        let e = "the reading thread did not start or panicked";
                        tracing::error!(error = e, "reading manifests failed");
                        jobs.iter()
                            .map(|j| ReadOutcome::Changed {
                                hash: None,
                                parsed: Box::new(Err(ManifestError {
                                    file: j.path.clone(),
                                    line: 0,
                                    reason: format!("reading failed: {e}"),
                                })),
                            })
                            .collect()
                    });
                }
                _ = beat.tick() => {
                    for id in &alive {
                        if let Err(e) = registry.heartbeat(id).await {
                            tracing::warn!(cluster = %id, error = %e, "registry heartbeat failed");
                        }
                    }
                }
            }
        }
    }

    /// Polls until `cancel` fires. The first poll has already been done by the caller.
    pub async fn run(mut self, registry: Arc<dyn Registry>, cancel: CancellationToken) {
        let mut tick = file_watch::ticker(self.interval);
        // A change event polls at once (after a moment for the rest of a write to land), so an
        // edit is served in milliseconds rather than up to a poll interval later.
        let waker = file_watch::ChangeWaker::watch(&self.root);
        loop {
            let only = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    waker.take_named();
                    None
                }
                _ = waker.changed() => {
                    tokio::time::sleep(CHANGE_SETTLE).await;
                    waker.take_named()
                }
            };
            if let Err(e) = self.poll_folders(&*registry, only.as_ref()).await {
                tracing::warn!(root = %self.root.display(), error = %e, "cannot read the manifest folder; keeping what is served");
            }
        }
    }
}

/// [`in_parallel`] on items it takes.
fn in_parallel_owned<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let slots: Vec<std::sync::Mutex<Option<T>>> = items
        .into_iter()
        .map(|t| std::sync::Mutex::new(Some(t)))
        .collect();
    in_parallel(&slots, |slot| {
        let item = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        f(item.expect("each slot is taken once"))
    })
}

/// Runs `f` on every item, spread over the machine's cores; results in item order.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return out;
                        };
                        out.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Reads one manifest file; parses it only when its content does not hash to `known`, and
/// then only the documents whose hashes are not in `known_docs`.
fn read_file(path: &Path, known: Option<u64>, known_docs: &[u64]) -> ReadOutcome {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return ReadOutcome::Changed {
                hash: None,
                parsed: Box::new(Err(ManifestError {
                    file: path.to_owned(),
                    line: 0,
                    reason: e.to_string(),
                })),
            };
        }
    };
    let hash = documents::hash_of(&text);
    if known == Some(hash) {
        return ReadOutcome::Same;
    }
    ReadOutcome::Changed {
        hash: Some(hash),
        parsed: Box::new(documents::read(path, text, known_docs)),
    }
}

/// Parses one file's text into its objects.
fn parse_file(path: &Path, text: &str) -> Result<ClusterManifests, ManifestError> {
    let mut manifests = ClusterManifests::default();
    parse_manifest_into(
        path,
        text,
        &mut yaml_subset::Buffers::default(),
        &mut manifests,
    )?;
    Ok(manifests)
}

fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| {
            // The directory entry's type costs no system call; a symlink (a ConfigMap
            // volume's files) is followed.
            e.file_type()
                .is_ok_and(|t| t.is_file() || (t.is_symlink() && e.path().is_file()))
        })
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    // Files of one folder differ only in their last component: byte order is path order.
    files.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    files
}

/// One cluster folder's (or one file's) objects: what the export translation reads, and
/// Istio ServiceEntries.
#[derive(Debug, Default)]
pub struct ClusterManifests {
    pub objects: ClusterObjects,
    pub service_entries: Vec<fleetdns_core::service_entry::ServiceEntryObject>,
}

impl ClusterManifests {
    /// Gives back the spare room of the object vectors (kept ones live as long as the file).
    fn shrink_to_fit(&mut self) {
        self.objects.services.shrink_to_fit();
        self.objects.endpoint_slices.shrink_to_fit();
        self.objects.service_exports.shrink_to_fit();
        self.service_entries.shrink_to_fit();
    }

    /// Moves `other`'s objects to the end of these (no copies).
    fn append(&mut self, other: &mut Self) {
        self.objects.services.append(&mut other.objects.services);
        self.objects
            .endpoint_slices
            .append(&mut other.objects.endpoint_slices);
        self.objects
            .service_exports
            .append(&mut other.objects.service_exports);
        self.service_entries.append(&mut other.service_entries);
    }
}

/// Reads and translates one cluster folder: the exports, the folder's Istio ServiceEntries,
/// and notes on what was refused or is not served.
pub fn load_cluster(
    cluster: &ClusterId,
    dir: &Path,
    first_seen: &mut HashMap<String, Timestamp>,
) -> Result<(ExportSet, fleetdns_core::ServiceEntrySet, Vec<String>), ManifestError> {
    Ok(translate_manifests(
        cluster,
        &read_cluster(dir)?,
        first_seen,
    ))
}

/// Reads every manifest of one cluster folder, files in parallel. Any unreadable file fails
/// the whole folder, so a half-edited set never replaces a good one.
pub fn read_cluster(dir: &Path) -> Result<ClusterManifests, ManifestError> {
    let files = manifest_files(dir);
    let mut all = ClusterManifests::default();
    for outcome in in_parallel(&files, |path| read_file(path, None, &[])) {
        if let ReadOutcome::Changed { parsed, .. } = outcome {
            // Nothing known: every document was parsed.
            all.append(&mut (*parsed)?.decoded.objects);
        }
    }
    Ok(all)
}

/// Logs refused ServiceExports and skipped parts of exports, and notes them for the poll's
/// report.
fn note_refusals(
    cluster: &ClusterId,
    invalid: &[(String, fleetdns_core::translate::Invalid)],
    warnings: &[String],
    notes: &mut Vec<String>,
) {
    for (label, why) in invalid {
        tracing::warn!(cluster = %cluster, export = %label, reason = why.reason(), error = %why, "ServiceExport is not valid, not exported");
        notes.push(format!(
            "{cluster}: ServiceExport {label} Valid=False ({}): {why}",
            why.reason()
        ));
    }
    for w in warnings {
        tracing::warn!(cluster = %cluster, detail = %w, "part of an export skipped");
        notes.push(format!("{cluster}: {w}"));
    }
}

/// Logs what of the ServiceEntries is not served, and notes it for the poll's report.
fn note_entries(cluster: &ClusterId, entry_notes: Vec<String>, notes: &mut Vec<String>) {
    for n in entry_notes {
        tracing::warn!(cluster = %cluster, detail = %n, "ServiceEntry not served in full");
        notes.push(format!("{cluster}: {n}"));
    }
}

/// Translates one cluster's manifests: the exports, the ServiceEntries, and notes on what was
/// refused or is not served.
fn translate_manifests(
    cluster: &ClusterId,
    manifests: &ClusterManifests,
    first_seen: &mut HashMap<String, Timestamp>,
) -> (ExportSet, fleetdns_core::ServiceEntrySet, Vec<String>) {
    let now = Timestamp::now();
    let mut seen = |label: &str| *first_seen.entry(label.to_owned()).or_insert(now);
    let translated = translate_cluster(cluster, &manifests.objects, &mut seen);
    let mut notes = Vec::new();
    note_refusals(
        cluster,
        &translated.invalid,
        &translated.warnings,
        &mut notes,
    );
    let (entries, entry_notes) = fleetdns_core::service_entry::translate_service_entries(
        cluster,
        &manifests.service_entries,
        &mut |label| seen(&format!("serviceentry/{label}")),
    );
    note_entries(cluster, entry_notes, &mut notes);
    (translated.exports, entries, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_manifests_and_skips_other_kinds() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec: {clusterIP: 10.0.0.1}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\napiVersion: multicluster.x-k8s.io/v1beta1\nkind: ServiceExport\nmetadata: {name: web, namespace: demo}\n";
        let objs = parse_manifest(Path::new("a.yaml"), text).unwrap();
        assert_eq!(objs.len(), 2);
        assert!(matches!(objs[0], Object::Service(_)));
        assert!(matches!(objs[1], Object::ServiceExport(_)));
    }

    #[test]
    fn a_syntax_error_names_file_and_line() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels: [unclosed\n";
        let err = parse_manifest(Path::new("dir/bad.yaml"), text).unwrap_err();
        assert_eq!(err.file, Path::new("dir/bad.yaml"));
        assert!(
            err.line >= 5,
            "line {} should point at the broken line",
            err.line
        );
        assert!(err.to_string().starts_with("dir/bad.yaml:"), "{err}");
    }

    #[test]
    fn a_bad_object_names_its_document_line() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec:\n  ports: [{port: notanumber}]\n";
        let err = parse_manifest(Path::new("x.yaml"), text).unwrap_err();
        assert_eq!(err.line, 5, "{err}");
        assert!(err.reason.contains("Service"), "{err}");
        let err = parse_manifest(Path::new("x.yaml"), "- just\n- a list\n").unwrap_err();
        assert!(err.reason.contains("mapping"), "{err}");
        let err = parse_manifest(Path::new("x.yaml"), "kind: Service\n").unwrap_err();
        assert!(err.reason.contains("apiVersion"), "{err}");
    }

    /// The objects read from the YAML fast path's nodes are those read from its
    /// `serde_json::Value` (what the source did before) and from serde-saphyr's, and a
    /// document whose objects the nodes refuse is refused from the value too.
    #[test]
    fn objects_read_from_the_fast_path_nodes_are_those_read_from_the_value() {
        let head = "apiVersion: v1\nkind: Service\n";
        let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n";
        let documents = [
            format!("{head}metadata:\n  name: web\n  namespace: demo\nspec:\n  clusterIP: 10.0.0.1\n  ports:\n  - port: 80\n    name: http\n"),
            format!("{head}'metadata':\n  \"name\": 'web'\n  \"namespace\": \"d\\u00e9mo\"\n"),
            format!("{head}metadata:\n  name: '8080'\n  namespace: \"1\"\n"),
            format!("{head}metadata:\n  name: 8080\n"),
            format!("{head}metadata:\n  name: true\n"),
            format!("{head}metadata:\n  name:\n  namespace: ~\n  labels: {{}}\nspec:\n  clusterIPs: []\n  ports: []\n"),
            format!("{head}metadata:\n  labels:\nspec:\n"),
            format!("{head}metadata:\n  name: a\n  name: b\n"),
            format!("{head}metadata:\n  name: a\n  uid: x\n  managedFields:\n  - manager: kubectl\n    time: 2024-01-01T00:00:00Z\nunknown: [1, 2]\n"),
            format!("{head}spec:\n  ports:\n  - name: http\n"),
            format!("{head}spec:\n  ports:\n  - port: '80'\n"),
            format!("{head}spec:\n  ports:\n  - port: -80\n  - port: 18446744073709551615\n"),
            format!("{head}spec:\n  ports: {{}}\n"),
            format!("{head}spec:\n  clusterIPs: 10.0.0.1\n"),
            format!("{head}spec:\n  clusterIPs: [10.0.0.1, 1]\n"),
            format!("{head}spec:\n  publishNotReadyAddresses: 'true'\n"),
            format!("{head}spec:\n  publishNotReadyAddresses: false\n"),
            format!("{head}metadata:\n  labels:\n    a: 1\n"),
            format!("{head}metadata:\n  labels:\n    a: null\n"),
            format!("{head}metadata:\n  labels:\n    b: x\n    a: y\n    '1': z\n"),
            format!("{head}metadata: []\n"),
            format!("{head}metadata:\n- name: a\n"),
            format!("{head}status:\n  loadBalancer:\n    ingress:\n    - ip: 192.0.2.1\n    - hostname: lb.example.com\n"),
            format!("{slice}metadata:\n  name: web-x\n  labels:\n    kubernetes.io/service-name: web\naddressType: IPv4\nendpoints:\n- addresses: [10.1.0.1]\n  conditions:\n    ready: true\n- addresses:\n  - 10.1.0.2\n  hostname: pod-1\n  zone: z\n"),
            format!("{slice}addressType:\nendpoints:\n- conditions:\n    ready: 'yes'\n"),
            format!("{slice}endpoints:\n-\n- addresses: []\n"),
            "apiVersion: multicluster.x-k8s.io/v1beta1\nkind: ServiceExport\nmetadata:\n  name: web\n  namespace: demo\n  creationTimestamp: \"2024-01-01T00:00:00Z\"\n".to_owned(),
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: e\nspec:\n  hosts: [a.example.com]\n  addresses: ['240.0.0.1']\n  ports:\n  - number: 80\n    protocol: HTTP\n  exportTo: ['*']\nstatus:\n  addresses:\n  - value: 240.240.0.1\n    host: a.example.com\n".to_owned(),
            "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nspec:\n  exportTo:\n  ports:\n  - number: x\n".to_owned(),
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: a\n-\n- apiVersion: apps/v1\n  kind: Deployment\n".to_owned(),
            "apiVersion: v1\nkind: List\nitems: {}\n".to_owned(),
            "apiVersion: v1\nkind: List\n".to_owned(),
            "apiVersion: v1\nkind: List\nitems:\n- just a string\n".to_owned(),
            "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 3\n".to_owned(),
            "kind: Service\n".to_owned(),
            "apiVersion: 1\nkind: Service\n".to_owned(),
            "apiVersion: v1\nkind: ''\n".to_owned(),
            "- a\n- b\n".to_owned(),
            "---\n# nothing\n".to_owned(),
        ];
        let path = Path::new("m.yaml");
        let debug = |objects: Vec<Object>| format!("{objects:?}");
        let mut read_by_nodes = 0;
        for text in &documents {
            let from_saphyr = serde_saphyr::from_multiple::<serde_saphyr::Spanned<Value>>(text)
                .ok()
                .and_then(|docs| {
                    let mut out = Vec::new();
                    let fine = docs.iter().all(|d| {
                        push_object(&mut out, &d.value, &|reason| ManifestError {
                            file: path.to_owned(),
                            line: 0,
                            reason,
                        })
                        .is_ok()
                    });
                    fine.then(|| debug(out))
                });
            let Some(doc) = yaml_subset::read_document(text) else {
                continue;
            };
            let from_value = yaml_subset::parse_document(text)
                .and_then(|value| objects_of(path, &value))
                .map(debug);
            let mut out = Vec::new();
            let from_nodes = push_read_object(&mut out, doc.root())
                .is_ok()
                .then(|| debug(out));
            assert_eq!(from_nodes, from_value, "{text}");
            if from_nodes.is_some() {
                read_by_nodes += 1;
                assert_eq!(from_nodes, from_saphyr, "{text}");
            }
            let whole = parse_manifest(path, text).map(debug).ok();
            assert_eq!(whole, from_saphyr, "{text}");
        }
        assert!(
            read_by_nodes >= 10,
            "{read_by_nodes} of {}",
            documents.len()
        );
    }

    #[test]
    fn large_manifest_files_parse() {
        let doc = "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: web}\n---\n";
        let text = doc.repeat(2000);
        let objs = parse_manifest(Path::new("big.yaml"), &text).unwrap();
        assert_eq!(objs.len(), 2000);
    }

    /// MCS-20: a new source (a reload, a restart on etcd) takes the first-seen time of a
    /// ServiceExport without `creationTimestamp` from what the registry shows, so the export
    /// keeps its age and the oldest export stays the winner.
    #[tokio::test]
    async fn first_seen_times_survive_a_new_source() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster-a");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("web.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {clusterIP: 10.0.0.1, clusterIPs: [10.0.0.1]}\n---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: web, namespace: default}\n---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: new, namespace: default}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: new, namespace: default}\nspec: {clusterIP: 10.0.0.2, clusterIPs: [10.0.0.2]}\n",
        )
        .unwrap();
        let registry = fleetdns_core::MemoryRegistry::new(Duration::from_secs(15));
        let cluster = ClusterId::new("cluster-a").unwrap();
        // What the previous source published: `web` first seen long ago.
        let (mut earlier, _, _) = load_cluster(&cluster, &dir, &mut HashMap::new()).unwrap();
        let web = fleetdns_core::ServiceKey::new("default", "web").unwrap();
        let mut old = (*earlier[&web]).clone();
        old.created = Timestamp(1_000);
        earlier.insert(web.clone(), Arc::new(old));
        earlier.remove(&fleetdns_core::ServiceKey::new("default", "new").unwrap());
        registry
            .publish(&cluster, std::sync::Arc::new(earlier))
            .await
            .unwrap();

        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_secs(1));
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.published, std::slice::from_ref(&cluster));
        let snapshot = registry.subscribe().borrow().clone().unwrap();
        let exports = &snapshot.clusters[&cluster].exports;
        assert_eq!(exports[&web].created, Timestamp(1_000), "web keeps its age");
        let new = &exports[&fleetdns_core::ServiceKey::new("default", "new").unwrap()];
        assert!(new.created.0 > 1_000_000, "a new export is first seen now");
    }

    #[test]
    fn annotations_external_ips_and_load_balancer_status_are_read() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\n  annotations: {external-dns.alpha.kubernetes.io/hostname: lb.ex.com}\nspec: {type: LoadBalancer, externalIPs: [192.0.2.1]}\nstatus:\n  loadBalancer:\n    ingress: [{ip: 203.0.113.1}, {hostname: elb.example.net}]\n";
        let objs = parse_manifest(Path::new("lb.yaml"), text).unwrap();
        let [Object::Service(s)] = &objs[..] else {
            panic!("{objs:?}")
        };
        assert_eq!(
            s.metadata.annotations["external-dns.alpha.kubernetes.io/hostname"],
            "lb.ex.com"
        );
        assert_eq!(s.spec.external_ips, ["192.0.2.1"]);
        let ingress = &s.status.load_balancer.ingress;
        assert_eq!(ingress[0].ip.as_deref(), Some("203.0.113.1"));
        assert_eq!(ingress[1].hostname.as_deref(), Some("elb.example.net"));
    }

    /// A Service with its ServiceExport, as one manifest file.
    fn exported(name: &str, ip: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{clusterIP: {ip}, clusterIPs: [{ip}]}}\n---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {{name: {name}, namespace: default}}\n"
        )
    }

    fn exports(registry: &fleetdns_core::MemoryRegistry, cluster: &str) -> Vec<String> {
        let snapshot = registry.subscribe().borrow().clone().unwrap();
        let cluster = ClusterId::new(cluster).unwrap();
        snapshot.clusters[&cluster]
            .exports
            .values()
            .map(|e| format!("{} {:?}", e.key, e.cluster_ips))
            .collect()
    }

    fn version(registry: &fleetdns_core::MemoryRegistry) -> u64 {
        registry.subscribe().borrow().as_ref().unwrap().version
    }

    /// A folder with `web.yaml` and `db.yaml`, polled once.
    async fn polled_folder() -> (
        tempfile::TempDir,
        PathBuf,
        FilesSource,
        fleetdns_core::MemoryRegistry,
    ) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster-a");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("web.yaml"), exported("web", "10.0.0.1")).unwrap();
        std::fs::write(dir.join("db.yaml"), exported("db", "10.0.0.2")).unwrap();
        let registry = fleetdns_core::MemoryRegistry::new(Duration::from_secs(15));
        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_millis(50));
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.parsed.len(), 2);
        assert_eq!(report.published.len(), 1);
        (root, dir, source, registry)
    }

    /// Files rewritten, moved between and removed at random: after every poll the registry
    /// holds what a whole translation of the folder gives, though each poll translated only
    /// the services whose objects changed.
    #[tokio::test]
    async fn polls_translate_what_changed_and_agree_with_a_whole_read() {
        random_edits_agree_with_a_whole_read(None).await;
    }

    /// As above, with a tap: every file's objects are kept and handed over whole.
    #[tokio::test]
    async fn polls_with_a_tap_translate_what_changed_and_agree_with_a_whole_read() {
        let tap = ObjectsTap::new(|_| true);
        random_edits_agree_with_a_whole_read(Some(tap)).await;
    }

    async fn random_edits_agree_with_a_whole_read(tap: Option<ObjectsTap>) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster-a");
        std::fs::create_dir(&dir).unwrap();
        let registry = fleetdns_core::MemoryRegistry::new(Duration::from_secs(15));
        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_millis(50))
            .with_tap(tap.clone());
        let cluster = ClusterId::new("cluster-a").unwrap();
        // Objects of six services, each possibly in any of three files, a Service and its
        // ServiceExport and slice possibly in different files, and duplicates across files.
        let object = |kind: u64, svc: u64, ip: u64| match kind {
            0 => format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: s{svc}, namespace: x}}\nspec: {{clusterIP: 10.0.{svc}.{ip}}}\n"
            ),
            1 => format!(
                "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {{name: s{svc}, namespace: x, creationTimestamp: '2026-01-0{}T00:00:00Z'}}\n",
                1 + ip % 3
            ),
            _ => format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{svc}-{ip}, namespace: x, labels: {{kubernetes.io/service-name: s{svc}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [10.1.{svc}.{ip}]}}]\n"
            ),
        };
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut retranslated = 0;
        // Documents written and parsed: a rewrite often keeps documents of the file's last
        // version, which are copied rather than parsed.
        let (mut written, mut parsed) = (0, 0);
        for step in 0..60 {
            let file = dir.join(format!("f{}.yaml", next(3)));
            if next(5) == 0 {
                let _ = std::fs::remove_file(&file);
            } else {
                let docs: Vec<String> = (0..next(6))
                    .map(|_| object(next(3), next(6), 1 + next(3)))
                    .collect();
                written += docs.len();
                let tmp = dir.join(".tmp");
                std::fs::write(&tmp, docs.join("---\n")).unwrap();
                std::fs::rename(&tmp, &file).unwrap();
            }
            let report = source.poll(&registry).await.unwrap();
            parsed += report.documents_parsed;
            assert!(report.errors.is_empty(), "step {step}: {:?}", report.errors);
            let whole = load_cluster(&cluster, &dir, &mut HashMap::new()).unwrap().0;
            let served = registry.subscribe().borrow().clone().unwrap();
            let served = served.clusters.get(&cluster).map(|c| c.exports.clone());
            assert_eq!(
                served.as_deref().cloned().unwrap_or_default(),
                whole,
                "step {step}"
            );
            let folder = &source.clusters[&cluster].folder;
            retranslated += folder.translated_last();
            assert_eq!(
                folder.keeps_objects(),
                tap.is_some() && folder.files().next().is_some(),
                "step {step}: objects are kept only for a tap"
            );
            if let Some(tap) = &tap {
                let tapped = tap.current();
                let services = tapped.get(&cluster).map_or(0, |o| o.services.len());
                let all = read_cluster(&dir).unwrap();
                assert_eq!(services, all.objects.services.len(), "step {step}");
            }
        }
        assert!(retranslated > 0);
        assert!(
            parsed < written,
            "{parsed} documents parsed of {written} written"
        );
    }

    /// One Service edited in a file of many: only its service is translated again, and every
    /// other export is the same `Arc` as before.
    #[tokio::test]
    async fn an_edit_translates_only_the_services_it_changed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster-a");
        std::fs::create_dir(&dir).unwrap();
        let text = |changed: &str| {
            (0..50)
                .map(|i| exported(&format!("s{i}"), if i == 7 { changed } else { "10.0.0.1" }))
                .collect::<Vec<_>>()
                .join("---\n")
        };
        std::fs::write(dir.join("all.yaml"), text("10.0.0.7")).unwrap();
        let registry = fleetdns_core::MemoryRegistry::new(Duration::from_secs(15));
        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_millis(50));
        let first = source.poll(&registry).await.unwrap();
        assert_eq!(first.documents_parsed, 100);
        let cluster = ClusterId::new("cluster-a").unwrap();
        assert_eq!(source.clusters[&cluster].folder.translated_last(), 50);
        let before = registry.subscribe().borrow().clone().unwrap().clusters[&cluster]
            .exports
            .clone();
        std::fs::write(dir.join(".tmp"), text("10.0.0.77")).unwrap();
        std::fs::rename(dir.join(".tmp"), dir.join("all.yaml")).unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.published.len(), 1);
        assert_eq!(
            report.documents_parsed, 1,
            "only the edited Service's document of the file's 100 is parsed again"
        );
        assert_eq!(
            report.documents_reparsed, 1,
            "and s7's ServiceExport's, for its translation"
        );
        assert_eq!(source.clusters[&cluster].folder.translated_last(), 1);
        let after = registry.subscribe().borrow().clone().unwrap().clusters[&cluster]
            .exports
            .clone();
        let mut same = 0;
        for (key, export) in after.iter() {
            if key.name() == "s7" {
                assert_eq!(
                    export.cluster_ips,
                    ["10.0.0.77".parse::<std::net::IpAddr>().unwrap()]
                );
            } else {
                assert!(
                    Arc::ptr_eq(export, &before[key]),
                    "{key} was translated again"
                );
                same += 1;
            }
        }
        assert_eq!(same, 49);
    }

    /// A poll after change events looks only in the cluster folders they named; the tick's
    /// poll looks everywhere.
    #[tokio::test]
    async fn an_event_poll_reads_only_the_folders_it_names() {
        let root = tempfile::tempdir().unwrap();
        for c in ["cluster-a", "cluster-b"] {
            std::fs::create_dir(root.path().join(c)).unwrap();
            std::fs::write(
                root.path().join(c).join("s.yaml"),
                exported("s", "10.0.0.1"),
            )
            .unwrap();
        }
        let registry = fleetdns_core::MemoryRegistry::new(Duration::from_secs(15));
        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_millis(50));
        assert_eq!(source.poll(&registry).await.unwrap().parsed.len(), 2);
        for c in ["cluster-a", "cluster-b"] {
            std::fs::write(
                root.path().join(c).join("s.yaml"),
                exported("s", "10.0.0.22"),
            )
            .unwrap();
        }
        let only = BTreeSet::from([OsString::from("cluster-a")]);
        let report = source.poll_folders(&registry, Some(&only)).await.unwrap();
        assert_eq!(
            report.parsed,
            [root.path().join("cluster-a").join("s.yaml")]
        );
        assert_eq!(report.present.len(), 2, "cluster-b is still there");
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(
            report.parsed,
            [root.path().join("cluster-b").join("s.yaml")]
        );
    }

    /// A change event polls at once: with a poll interval of a minute, an edit is still
    /// published within seconds.
    #[tokio::test]
    async fn a_change_event_polls_without_waiting_for_the_interval() {
        let (_root, dir, mut source, registry) = polled_folder().await;
        source.interval = Duration::from_secs(60);
        let registry = Arc::new(registry);
        let cancel = CancellationToken::new();
        let running = tokio::spawn(source.run(registry.clone(), cancel.clone()));
        // The first tick polls at once; the change below must come from the event.
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(dir.join("web.yaml"), exported("web", "10.0.0.9")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !exports(&registry, "cluster-a").contains(&"default/web [10.0.0.9]".to_owned()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the edit was not published within 10 s: {:?}",
                exports(&registry, "cluster-a")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        running.await.unwrap();
    }

    #[tokio::test]
    async fn only_a_changed_file_is_parsed_again() {
        let (_root, dir, mut source, registry) = polled_folder().await;
        let report = source.poll(&registry).await.unwrap();
        assert!(report.published.is_empty(), "nothing changed");
        std::fs::write(dir.join("db.yaml"), exported("db", "10.0.0.22")).unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.parsed, [dir.join("db.yaml")]);
        assert_eq!(report.published.len(), 1);
        assert_eq!(
            exports(&registry, "cluster-a"),
            ["default/db [10.0.0.22]", "default/web [10.0.0.1]"]
        );
    }

    #[tokio::test]
    async fn a_rewrite_with_the_same_content_is_neither_parsed_nor_published() {
        let (_root, dir, mut source, registry) = polled_folder().await;
        let before = version(&registry);
        // A new inode and modification time, the same bytes.
        let tmp = dir.join(".web.yaml.tmp");
        std::fs::write(&tmp, exported("web", "10.0.0.1")).unwrap();
        std::fs::rename(&tmp, dir.join("web.yaml")).unwrap();
        for _ in 0..2 {
            let report = source.poll(&registry).await.unwrap();
            assert!(report.parsed.is_empty(), "{:?}", report.parsed);
            assert!(report.published.is_empty());
        }
        assert_eq!(version(&registry), before, "no new snapshot");
    }

    /// A write that keeps the length within the stamp resolution is still noticed: a file
    /// modified shortly before it was read is hashed again at the next poll.
    #[tokio::test]
    async fn a_rewrite_of_the_same_length_right_after_a_read_is_noticed() {
        let (_root, dir, mut source, registry) = polled_folder().await;
        let path = dir.join("db.yaml");
        let stamp = file_watch::stamp(&path).unwrap();
        std::fs::write(&path, exported("db", "10.0.0.3")).unwrap();
        // As if the write had come within the file system's time resolution.
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(stamp.modified).unwrap();
        assert_eq!(file_watch::stamp(&path), Some(stamp));
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.parsed, [path]);
        assert_eq!(
            exports(&registry, "cluster-a"),
            ["default/db [10.0.0.3]", "default/web [10.0.0.1]"]
        );
    }

    #[tokio::test]
    async fn a_removed_file_withdraws_its_services() {
        let (_root, dir, mut source, registry) = polled_folder().await;
        std::fs::remove_file(dir.join("db.yaml")).unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert!(report.parsed.is_empty());
        assert_eq!(report.published.len(), 1);
        assert_eq!(exports(&registry, "cluster-a"), ["default/web [10.0.0.1]"]);
    }

    #[tokio::test]
    async fn a_broken_file_keeps_the_last_good_state_until_it_is_fixed() {
        let (_root, dir, mut source, registry) = polled_folder().await;
        let good = exports(&registry, "cluster-a");
        std::fs::write(dir.join("web.yaml"), exported("web", "10.0.0.9")).unwrap();
        std::fs::write(
            dir.join("db.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: [\n",
        )
        .unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.parsed.len(), 2);
        assert!(report.published.is_empty());
        assert!(
            report.errors[0].starts_with(&format!("{}:", dir.join("db.yaml").display())),
            "{:?}",
            report.errors
        );
        assert_eq!(exports(&registry, "cluster-a"), good, "the last good state");
        // Still broken: reported again, nothing parsed or published.
        std::thread::sleep(file_watch::STAMP_RESOLUTION);
        source.poll(&registry).await.unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert!(report.parsed.is_empty(), "{:?}", report.parsed);
        assert!(report.published.is_empty());
        assert_eq!(report.errors.len(), 1);
        // Fixed: only the fixed file is parsed; the other file's newer objects are published.
        std::fs::write(dir.join("db.yaml"), exported("db", "10.0.0.2")).unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.parsed, [dir.join("db.yaml")]);
        assert_eq!(report.published.len(), 1);
        assert_eq!(
            exports(&registry, "cluster-a"),
            ["default/db [10.0.0.2]", "default/web [10.0.0.9]"]
        );
    }

    /// MCS-10 liveness counts from a cluster's publish: a long read of one cluster's files
    /// must not stop the heartbeats of the clusters already published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_read_does_not_make_published_clusters_dead() {
        let root = tempfile::tempdir().unwrap();
        for (cluster, name) in [("cluster-a", "web"), ("cluster-b", "db")] {
            let dir = root.path().join(cluster);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("svc.yaml"), exported(name, "10.0.0.1")).unwrap();
        }
        let registry = Arc::new(fleetdns_core::MemoryRegistry::new(Duration::from_secs(2)));
        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_millis(100));
        source.poll(&*registry).await.unwrap();
        let cancel = CancellationToken::new();
        let sweeper = registry.clone();
        let stop = cancel.clone();
        let liveness =
            tokio::spawn(async move { sweeper.run_liveness(stop.cancelled_owned()).await });
        let mut rx = registry.subscribe();
        let watcher = tokio::spawn(async move {
            let mut dead = Vec::new();
            while rx.changed().await.is_ok() {
                let snapshot = rx.borrow_and_update().clone().unwrap();
                dead.extend(
                    snapshot
                        .clusters
                        .iter()
                        .filter(|(_, v)| !v.alive)
                        .map(|(id, _)| id.to_string()),
                );
            }
            dead
        });
        // cluster-b changes, and reading it takes three liveness timeouts.
        std::fs::write(
            root.path().join("cluster-b/svc.yaml"),
            exported("db", "10.0.0.2"),
        )
        .unwrap();
        source.read_delay = Duration::from_secs(6);
        let report = source.poll(&*registry).await.unwrap();
        assert_eq!(report.published.len(), 1);
        cancel.cancel();
        liveness.await.unwrap();
        drop(registry);
        drop(source);
        let dead = tokio::time::timeout(Duration::from_secs(5), watcher).await;
        // The watcher ends only when every sender is gone; the registry is, so it has.
        assert_eq!(dead.unwrap().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn json_manifests_take_the_json_path_with_the_same_objects_and_errors() {
        let json = r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo"}, "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}}]}"#;
        let yaml = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: web, namespace: demo}\n  spec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}\n";
        let (Object::Service(a), Object::Service(b)) = (
            &parse_manifest(Path::new("a.json"), json).unwrap()[0],
            &parse_manifest(Path::new("a.yaml"), yaml).unwrap()[0],
        ) else {
            panic!("services expected")
        };
        assert_eq!(a, b);
        // A bad object in JSON is reported as the YAML parser reports it.
        let bad = "{\"apiVersion\": \"v1\",\n \"kind\": \"Service\",\n \"spec\": {\"ports\": [{\"port\": \"x\"}]}}";
        let err = parse_manifest(Path::new("b.json"), bad).unwrap_err();
        assert!(err.reason.contains("bad Service"), "{err}");
        let err = parse_manifest(Path::new("c.json"), "{\"kind\": \n\n [").unwrap_err();
        assert!(err.line >= 3, "{err}");
    }

    /// Writes `text` to `path` keeping its stamp (same length, modification time set back):
    /// a poll does not see the change.
    fn write_unseen(path: &Path, text: &str) {
        let stamp = file_watch::stamp(path).unwrap();
        assert_eq!(text.len() as u64, stamp.len, "the same length");
        std::fs::write(path, text).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(stamp.modified).unwrap();
        assert_eq!(file_watch::stamp(path), Some(stamp));
    }

    /// Writes `text` to `path` modified long ago, so a poll does not check it again for
    /// having been written within the stamp resolution of its read.
    fn write_old(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
            .unwrap();
    }

    fn slice(service: &str, ip: &str) -> String {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: default, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [{ip}]}}]\n"
        )
    }

    fn service(name: &str, ip: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{clusterIP: {ip}, clusterIPs: [{ip}]}}\n"
        )
    }

    fn service_export(name: &str) -> String {
        format!(
            "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {{name: {name}, namespace: default}}\n"
        )
    }

    fn export_of(
        registry: &fleetdns_core::MemoryRegistry,
        name: &str,
    ) -> Arc<fleetdns_core::Export> {
        let snapshot = registry.subscribe().borrow().clone().unwrap();
        let cluster = ClusterId::new("cluster-a").unwrap();
        let key = fleetdns_core::ServiceKey::new("default", name).unwrap();
        snapshot.clusters[&cluster].exports[&key].clone()
    }

    /// A service whose Service is in one file and whose ServiceExport and slice are in
    /// another: an edit of the Service is translated with the other file's objects, read
    /// again from disk (the source keeps no objects).
    #[tokio::test]
    async fn a_service_split_across_files_is_translated_with_both_when_one_changes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster-a");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), service("web", "10.0.0.1")).unwrap();
        let rest = [
            service_export("web"),
            slice("web", "10.1.0.1"),
            service("db", "10.0.0.2"),
        ];
        std::fs::write(dir.join("b.yaml"), rest.join("---\n")).unwrap();
        let registry = fleetdns_core::MemoryRegistry::new(Duration::from_secs(15));
        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_millis(50));
        let first = source.poll(&registry).await.unwrap();
        assert_eq!(
            first.documents_reparsed, 0,
            "at start every object is fresh"
        );
        assert_eq!(
            exports(&registry, "cluster-a"),
            ["default/web [10.0.0.1]"],
            "db has no ServiceExport"
        );
        std::fs::write(dir.join("a.yaml"), service("web", "10.0.0.9")).unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.parsed, [dir.join("a.yaml")]);
        assert_eq!(report.documents_parsed, 1);
        assert_eq!(
            report.documents_reparsed, 2,
            "web's ServiceExport and slice in b.yaml, not db's Service"
        );
        let cluster = ClusterId::new("cluster-a").unwrap();
        assert_eq!(source.clusters[&cluster].folder.translated_last(), 1);
        let web = export_of(&registry, "web");
        assert_eq!(
            web.cluster_ips,
            ["10.0.0.9".parse::<std::net::IpAddr>().unwrap()]
        );
        let whole = load_cluster(&cluster, &dir, &mut HashMap::new()).unwrap().0;
        assert_eq!(
            *web, *whole[&web.key],
            "as a whole read of both files gives"
        );
        assert!(!source.clusters[&cluster].folder.keeps_objects());
    }

    /// A file holding a changed service's objects, itself changed on disk but not yet seen by
    /// a poll (its stamp kept), is read as changed when its objects are needed: what is
    /// published agrees with the files, and the other services it changed are translated too.
    #[tokio::test]
    async fn a_holder_changed_on_disk_but_not_yet_polled_is_read_as_changed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster-a");
        std::fs::create_dir(&dir).unwrap();
        write_old(&dir.join("a.yaml"), &service("web", "10.0.0.1"));
        let b = |db: &str| {
            [
                service_export("web"),
                service("db", db),
                service_export("db"),
            ]
            .join("---\n")
        };
        write_old(&dir.join("b.yaml"), &b("10.0.0.2"));
        let registry = fleetdns_core::MemoryRegistry::new(Duration::from_secs(15));
        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_millis(50));
        source.poll(&registry).await.unwrap();
        assert_eq!(
            exports(&registry, "cluster-a"),
            ["default/db [10.0.0.2]", "default/web [10.0.0.1]"]
        );
        write_unseen(&dir.join("b.yaml"), &b("10.0.0.3"));
        let report = source.poll(&registry).await.unwrap();
        assert!(report.parsed.is_empty(), "the poll does not see it");
        std::fs::write(dir.join("a.yaml"), service("web", "10.0.0.9")).unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.parsed, [dir.join("a.yaml"), dir.join("b.yaml")]);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(
            exports(&registry, "cluster-a"),
            ["default/db [10.0.0.3]", "default/web [10.0.0.9]"],
            "db's change in b.yaml is published with web's"
        );
        // b.yaml's index is its new content: nothing more to read.
        let report = source.poll(&registry).await.unwrap();
        assert!(report.parsed.is_empty(), "{:?}", report.parsed);
        assert!(report.published.is_empty());
    }

    /// A holder file removed but not yet polled when its objects are needed: its services
    /// leave with it.
    #[tokio::test]
    async fn a_holder_removed_before_its_poll_withdraws_its_services() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster-a");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), service("web", "10.0.0.1")).unwrap();
        let b = [service_export("web"), exported("db", "10.0.0.2")].join("---\n");
        std::fs::write(dir.join("b.yaml"), b).unwrap();
        let registry = fleetdns_core::MemoryRegistry::new(Duration::from_secs(15));
        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_millis(50));
        source.poll(&registry).await.unwrap();
        std::fs::write(dir.join("a.yaml"), service("web", "10.0.0.9")).unwrap();
        std::fs::remove_file(dir.join("b.yaml")).unwrap();
        // As if the change of a.yaml arrived before the listing saw b.yaml gone.
        let cluster = ClusterId::new("cluster-a").unwrap();
        let folder = &mut source.clusters.get_mut(&cluster).unwrap().folder;
        let text = std::fs::read_to_string(dir.join("a.yaml")).unwrap();
        let known = folder.files().next().unwrap().1.doc_hashes();
        folder.put(
            dir.join("a.yaml"),
            ChangedFile {
                stamp: file_watch::stamp(&dir.join("a.yaml")),
                hash: Some(documents::hash_of(&text)),
                recent: true,
                read: documents::read(&dir.join("a.yaml"), text, &known),
            },
        );
        let translated = folder.translate(&cluster, None).unwrap();
        assert!(translated.read_again.is_empty(), "b.yaml is gone, not read");
        assert!(translated.exports.is_empty(), "{:?}", translated.exports);
        assert_eq!(folder.files().count(), 1);
    }

    /// A document removed from a file: its service is translated again, nothing is parsed.
    #[tokio::test]
    async fn a_removed_document_withdraws_only_its_service() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster-a");
        std::fs::create_dir(&dir).unwrap();
        let docs = |with_s1: bool| {
            (0..3)
                .flat_map(|i| {
                    let name = format!("s{i}");
                    let mut d = vec![service(&name, &format!("10.0.0.{}", i + 1))];
                    if i != 1 || with_s1 {
                        d.push(service_export(&name));
                    }
                    d
                })
                .collect::<Vec<_>>()
                .join("---\n")
        };
        std::fs::write(dir.join("all.yaml"), docs(true)).unwrap();
        let registry = fleetdns_core::MemoryRegistry::new(Duration::from_secs(15));
        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_millis(50));
        source.poll(&registry).await.unwrap();
        let before = export_of(&registry, "s0");
        std::fs::write(dir.join("all.yaml"), docs(false)).unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.documents_parsed, 0, "no document is new");
        assert_eq!(
            report.documents_reparsed, 1,
            "s1's Service, for its translation"
        );
        let cluster = ClusterId::new("cluster-a").unwrap();
        assert_eq!(source.clusters[&cluster].folder.translated_last(), 1);
        assert_eq!(
            exports(&registry, "cluster-a"),
            ["default/s0 [10.0.0.1]", "default/s2 [10.0.0.3]"]
        );
        assert!(Arc::ptr_eq(&before, &export_of(&registry, "s0")));
    }

    /// A comment edited in a document: parsed, but no service's objects changed, so nothing
    /// is translated or published.
    #[tokio::test]
    async fn an_edit_that_changes_no_object_translates_nothing() {
        let (_root, dir, mut source, registry) = polled_folder().await;
        let before = version(&registry);
        let text = format!("# a comment\n{}", exported("db", "10.0.0.2"));
        std::fs::write(dir.join("db.yaml"), text).unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.documents_parsed, 1, "the edited document");
        assert_eq!(
            report.documents_reparsed, 1,
            "db's ServiceExport, for the fingerprint"
        );
        let cluster = ClusterId::new("cluster-a").unwrap();
        assert_eq!(source.clusters[&cluster].folder.translated_last(), 0);
        assert!(report.published.is_empty());
        assert_eq!(version(&registry), before);
    }

    /// Two Services of one name in a file: the last wins; swapping the documents (the same
    /// texts) changes the winner and is translated.
    #[tokio::test]
    async fn documents_swapped_in_a_file_are_translated_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster-a");
        std::fs::create_dir(&dir).unwrap();
        let (one, two) = (service("web", "10.0.0.1"), service("web", "10.0.0.2"));
        let export = service_export("web");
        // Every document starts with its marker: swapped, each keeps its text.
        let file = |docs: [&String; 3]| docs.map(|d| format!("---\n{d}")).concat();
        std::fs::write(dir.join("a.yaml"), file([&one, &two, &export])).unwrap();
        let registry = fleetdns_core::MemoryRegistry::new(Duration::from_secs(15));
        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_millis(50));
        source.poll(&registry).await.unwrap();
        assert_eq!(exports(&registry, "cluster-a"), ["default/web [10.0.0.2]"]);
        std::fs::write(dir.join("a.yaml"), file([&two, &one, &export])).unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.documents_parsed, 0, "the same texts");
        assert_eq!(report.published.len(), 1);
        assert_eq!(exports(&registry, "cluster-a"), ["default/web [10.0.0.1]"]);
    }

    /// With a tap, every object is kept and handed over at every translation: an edit shows
    /// in the tap with the other files' objects still there.
    #[tokio::test]
    async fn a_tap_gets_every_object_after_an_edit() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster-a");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("web.yaml"), exported("web", "10.0.0.1")).unwrap();
        std::fs::write(dir.join("db.yaml"), exported("db", "10.0.0.2")).unwrap();
        let tap = ObjectsTap::new(|_| true);
        let registry = fleetdns_core::MemoryRegistry::new(Duration::from_secs(15));
        let mut source = FilesSource::new(root.path().to_owned(), Duration::from_millis(50))
            .with_tap(Some(tap.clone()));
        source.poll(&registry).await.unwrap();
        std::fs::write(dir.join("db.yaml"), exported("db", "10.0.0.22")).unwrap();
        let report = source.poll(&registry).await.unwrap();
        assert_eq!(report.documents_parsed, 1);
        assert_eq!(report.documents_reparsed, 0, "db's ServiceExport is kept");
        let cluster = ClusterId::new("cluster-a").unwrap();
        assert!(source.clusters[&cluster].folder.keeps_objects());
        let tapped = tap.current();
        let ips: BTreeSet<(String, String)> = tapped[&cluster]
            .services
            .iter()
            .map(|s| {
                (
                    s.metadata.name.as_deref().unwrap().to_owned(),
                    s.spec.cluster_ip.as_deref().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            ips,
            BTreeSet::from([
                ("db".to_owned(), "10.0.0.22".to_owned()),
                ("web".to_owned(), "10.0.0.1".to_owned())
            ])
        );
        assert_eq!(
            exports(&registry, "cluster-a"),
            ["default/db [10.0.0.22]", "default/web [10.0.0.1]"]
        );
    }

    #[test]
    fn lists_are_unpacked() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: multicluster.x-k8s.io/v1alpha1\n  kind: ServiceExport\n  metadata: {name: web}\n";
        let objs = parse_manifest(Path::new("l.yaml"), text).unwrap();
        assert!(matches!(objs[..], [Object::ServiceExport(_)]));
    }
}
