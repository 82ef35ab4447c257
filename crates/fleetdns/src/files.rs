//! The manifest-file source: `<root>/<cluster-id>/*.yaml`, watched by polling (no inotify
//! dependency, works on every file system). A change shows in the registry within one poll
//! interval; a file that does not parse is reported with its line and the cluster keeps its
//! last good state.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fleetdns_core::kube::{ClusterObjects, EndpointSlice, Service, ServiceExport};
use fleetdns_core::tap::ObjectsTap;
use fleetdns_core::translate::{created_times, translate_cluster};
use fleetdns_core::{ClusterId, ExportSet, Registry, Timestamp};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

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
pub fn parse_manifest(file: &Path, text: &str) -> Result<Vec<Object>, ManifestError> {
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
            line: e.location().map(|l| l.line()).unwrap_or(0),
            reason: first_line(&e.to_string()),
        })?;
    let mut out = Vec::new();
    for doc in docs {
        let line = doc.referenced.line();
        push_object(&mut out, doc.value, &|reason| ManifestError {
            file: file.to_owned(),
            line,
            reason,
        })?;
    }
    Ok(out)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_owned()
}

fn push_object(
    out: &mut Vec<Object>,
    value: Value,
    err: &dyn Fn(String) -> ManifestError,
) -> Result<(), ManifestError> {
    if value.is_null() {
        return Ok(());
    }
    let Value::Object(map) = &value else {
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
    let typed = |what: &str, r: Result<Object, serde_json::Error>| {
        r.map_err(|e| err(format!("{kind} {api}: {what}: {e}")))
    };
    match (api.as_str(), kind.as_str()) {
        ("v1", "Service") => out.push(typed(
            "bad Service",
            serde_json::from_value(value).map(Object::Service),
        )?),
        ("discovery.k8s.io/v1", "EndpointSlice") => out.push(typed(
            "bad EndpointSlice",
            serde_json::from_value(value).map(Object::EndpointSlice),
        )?),
        ("multicluster.x-k8s.io/v1alpha1" | "multicluster.x-k8s.io/v1beta1", "ServiceExport") => {
            out.push(typed(
                "bad ServiceExport",
                serde_json::from_value(value).map(Object::ServiceExport),
            )?)
        }
        (
            "networking.istio.io/v1"
            | "networking.istio.io/v1beta1"
            | "networking.istio.io/v1alpha3",
            "ServiceEntry",
        ) => out.push(typed(
            "bad ServiceEntry",
            serde_json::from_value(value).map(|e| Object::ServiceEntry(Box::new(e))),
        )?),
        (_, "List") => {
            let Some(Value::Array(items)) = map.get("items").cloned() else {
                return Err(err("List has no items array".into()));
            };
            for item in items {
                push_object(out, item, err)?;
            }
        }
        _ => {
            tracing::debug!(api_version = %api, kind = %kind, "manifest object of a kind fleetdns does not read, skipped")
        }
    }
    Ok(())
}

/// What a cluster folder looked like at the last poll: (file, modified, length).
type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

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
}

#[derive(Default)]
struct ClusterState {
    fingerprint: Fingerprint,
    /// ServiceExports without a creationTimestamp get the time fleetdns first saw them.
    first_seen: HashMap<String, Timestamp>,
    /// The error last reported, so a broken file is logged once, not every poll.
    last_error: Option<String>,
    /// Whether a good state was ever published.
    published: bool,
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
}

impl FilesSource {
    pub fn new(root: PathBuf, interval: Duration) -> Self {
        Self {
            root,
            interval,
            clusters: BTreeMap::new(),
            bad_dirs: Vec::new(),
            tap: None,
        }
    }

    /// Also hands every cluster's objects to `tap`.
    pub fn with_tap(mut self, tap: Option<ObjectsTap>) -> Self {
        self.tap = tap;
        self
    }

    /// Checks the folder once: publishes changed clusters, withdraws removed ones, heartbeats
    /// the rest. Fails only when the root itself cannot be read.
    pub async fn poll(&mut self, registry: &dyn Registry) -> std::io::Result<PollReport> {
        let mut report = PollReport::default();
        let mut present = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(&self.root)?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            if !entry.path().is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let id = match ClusterId::new(&name) {
                Ok(id) => id,
                Err(e) => {
                    if !self.bad_dirs.contains(&name) {
                        tracing::error!(folder = %entry.path().display(), error = %e, "folder name is not a valid cluster id, skipped");
                        self.bad_dirs.push(name);
                    }
                    report
                        .errors
                        .push(format!("{}: {e}", entry.path().display()));
                    continue;
                }
            };
            present.push(id.clone());
            let dir = entry.path();
            let fingerprint = fingerprint(&dir);
            let state = self.clusters.entry(id.clone()).or_insert_with(|| {
                // A new source for a cluster already served (reload, restart with etcd): the
                // registry's creation times are the first-seen times (MCS-20 keeps its winner).
                let shown = registry.subscribe().borrow().clone();
                ClusterState {
                    first_seen: shown
                        .map(|s| created_times(&s, &id).into_iter().collect())
                        .unwrap_or_default(),
                    ..ClusterState::default()
                }
            });
            if state.fingerprint == fingerprint && (state.published || state.last_error.is_some()) {
                if let Some(e) = &state.last_error {
                    report.errors.push(e.clone());
                }
                if let Err(e) = registry.heartbeat(&id).await {
                    tracing::warn!(cluster = %id, error = %e, "registry heartbeat failed");
                }
                continue;
            }
            state.fingerprint = fingerprint;
            let loaded = read_cluster(&dir).map(|manifests| {
                if let Some(tap) = &self.tap {
                    tap.set(&id, &manifests.objects);
                }
                translate_manifests(&id, &manifests, &mut state.first_seen)
            });
            match loaded {
                Ok((exports, entries, notes)) => {
                    report.notes.extend(notes);
                    if state.last_error.take().is_some() {
                        tracing::info!(cluster = %id, "manifests parse again");
                    }
                    let published = match registry.publish(&id, exports).await {
                        Ok(()) => registry.publish_service_entries(&id, entries).await,
                        Err(e) => Err(e),
                    };
                    match published {
                        Ok(()) => {
                            state.published = true;
                            report.published.push(id);
                        }
                        Err(e) => {
                            tracing::warn!(cluster = %id, error = %e, "registry publish failed, will retry");
                            state.fingerprint.clear();
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    if state.last_error.as_deref() != Some(&msg) {
                        tracing::error!(cluster = %id, error = %msg, "manifest does not parse; the cluster keeps its last good state");
                    }
                    report.errors.push(msg.clone());
                    state.last_error = Some(msg);
                    if let (Some(tap), false) = (&self.tap, state.published) {
                        tap.expect(&id);
                    }
                    let _ = registry.heartbeat(&id).await;
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

    /// Polls until `cancel` fires. The first poll has already been done by the caller.
    pub async fn run(mut self, registry: Arc<dyn Registry>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.poll(&*registry).await {
                tracing::warn!(root = %self.root.display(), error = %e, "cannot read the manifest folder; keeping what is served");
            }
        }
    }
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut files: Fingerprint = manifest_files(dir)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map(|m| m.len()).unwrap_or(0);
            (p, modified, len)
        })
        .collect();
    files.sort();
    files
}

fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// One cluster folder's objects: what the export translation reads, and Istio ServiceEntries.
#[derive(Debug, Default)]
pub struct ClusterManifests {
    pub objects: ClusterObjects,
    pub service_entries: Vec<fleetdns_core::service_entry::ServiceEntryObject>,
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

/// Reads every manifest of one cluster folder. Any unreadable file fails the whole folder, so
/// a half-edited set never replaces a good one.
pub fn read_cluster(dir: &Path) -> Result<ClusterManifests, ManifestError> {
    let mut objects = ClusterObjects::default();
    let mut entry_objects = Vec::new();
    for file in manifest_files(dir) {
        let text = std::fs::read_to_string(&file).map_err(|e| ManifestError {
            file: file.clone(),
            line: 0,
            reason: e.to_string(),
        })?;
        for obj in parse_manifest(&file, &text)? {
            match obj {
                Object::Service(s) => objects.services.push(s),
                Object::EndpointSlice(s) => objects.endpoint_slices.push(s),
                Object::ServiceExport(s) => objects.service_exports.push(s),
                Object::ServiceEntry(e) => entry_objects.push(*e),
            }
        }
    }
    Ok(ClusterManifests {
        objects,
        service_entries: entry_objects,
    })
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
    for (label, why) in &translated.invalid {
        tracing::warn!(cluster = %cluster, export = %label, reason = why.reason(), error = %why, "ServiceExport is not valid, not exported");
        notes.push(format!(
            "{cluster}: ServiceExport {label} Valid=False ({}): {why}",
            why.reason()
        ));
    }
    for w in &translated.warnings {
        tracing::warn!(cluster = %cluster, detail = %w, "part of an export skipped");
        notes.push(format!("{cluster}: {w}"));
    }
    let (entries, entry_notes) = fleetdns_core::service_entry::translate_service_entries(
        cluster,
        &manifests.service_entries,
        &mut |label| seen(&format!("serviceentry/{label}")),
    );
    for n in entry_notes {
        tracing::warn!(cluster = %cluster, detail = %n, "ServiceEntry not served in full");
        notes.push(format!("{cluster}: {n}"));
    }
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
        registry.publish(&cluster, earlier).await.unwrap();

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

    #[test]
    fn lists_are_unpacked() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: multicluster.x-k8s.io/v1alpha1\n  kind: ServiceExport\n  metadata: {name: web}\n";
        let objs = parse_manifest(Path::new("l.yaml"), text).unwrap();
        assert!(matches!(objs[..], [Object::ServiceExport(_)]));
    }
}
