//! Writing back into one cluster, as an MCS implementation must: ServiceExport conditions for
//! the cluster's own exports, and for the fleet's services a ServiceImport and EndpointSlices
//! where the namespace exists. Server-side apply with fleetdns's field manager; an object is
//! written only when what the cluster holds differs from what fleetdns wants (so a hand edit
//! of one of ours is put back) and it was not just written, and stale ServiceImports and
//! slices carrying fleetdns's label are deleted.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetdns_core::merge::merge_fleet;
use fleetdns_core::registry::SnapshotReceiver;
use fleetdns_core::{ClusterId, ServiceKey, Timestamp};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::imports::{desired_imports, label_owner};
use crate::local::{LocalView, SourceStatus};
use crate::resources::{self, FIELD_MANAGER, MCS_GROUP, MCS_SERVICE_NAME_LABEL};
use crate::status::{export_conditions, status_patch, up_to_date};

/// How long a write is trusted before the watch must show it.
const ECHO: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Object {
    ExportStatus,
    Import,
    ImportStatus,
    Slice,
}

type Key = (Object, String, String);

struct Writer {
    client: Client,
    status: Arc<SourceStatus>,
    /// What was last written, by hash, and when.
    written: HashMap<Key, (u64, Instant)>,
    /// Objects of another implementation already warned about (once each).
    warned: HashSet<Key>,
}

/// Writes until `cancel`: a pass after every change of the cluster's view or of the fleet;
/// after a failed pass, another after a backoff (1 s doubling to 30 s), or as soon as
/// `answered_again` says the API server answers again after an outage.
pub(crate) async fn run(
    client: Client,
    status: Arc<SourceStatus>,
    mut local: watch::Receiver<Option<Arc<LocalView>>>,
    mut fleet: SnapshotReceiver,
    mut answered_again: watch::Receiver<u64>,
    settle: Duration,
    cancel: CancellationToken,
) {
    let mut writer = Writer {
        client,
        status,
        written: HashMap::new(),
        warned: HashSet::new(),
    };
    let mut retry: Option<Instant> = None;
    let mut backoff = Duration::from_secs(1);
    let mut probe_gone = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = local.changed() => if r.is_err() { return },
            r = fleet.changed() => if r.is_err() { return },
            _ = async {
                match retry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            r = answered_again.changed(), if retry.is_some() && !probe_gone => {
                if r.is_err() {
                    probe_gone = true; // only the backoff is left to end the wait
                    continue;
                }
                tracing::debug!(cluster = %writer.cluster(), "cluster API answering again; retrying the failed writes");
                backoff = Duration::from_secs(1);
            }
        }
        // Let a burst of changes settle, then write once.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(settle) => {}
        }
        let view = local.borrow_and_update().clone();
        let snapshot = fleet.borrow_and_update().clone();
        let (Some(view), Some(snapshot)) = (view, snapshot) else {
            continue;
        };
        // Only the server answering again from here on cuts the wait after a failed pass
        // short (also when it answers while this pass is failing).
        answered_again.borrow_and_update();
        if writer.pass(&view, &snapshot, &cancel).await {
            retry = None;
            backoff = Duration::from_secs(1);
        } else {
            retry = Some(Instant::now() + backoff);
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

fn hash(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

impl Writer {
    fn cluster(&self) -> &ClusterId {
        &self.status.cluster
    }

    /// One reconciliation. Returns false when some write failed (retried with backoff).
    async fn pass(
        &mut self,
        view: &LocalView,
        snapshot: &fleetdns_core::FleetSnapshot,
        cancel: &CancellationToken,
    ) -> bool {
        let merged = merge_fleet(snapshot);
        let alive: BTreeSet<ClusterId> = snapshot
            .clusters
            .iter()
            .filter(|(_, c)| c.alive)
            .map(|(id, _)| id.clone())
            .collect();
        let version = view.export_version;
        let mut ok = true;
        let now = Timestamp::now().to_string();

        // The cluster's own ServiceExports (MCS-2, MCS-20..24).
        let exports_api = resources::service_exports(version);
        for ((ns, name), observed) in &view.exports {
            if cancel.is_cancelled() {
                return true;
            }
            let label = format!("{ns}/{name}");
            let service = ServiceKey::new(ns, name)
                .ok()
                .and_then(|k| merged.get(&k))
                .map(|s| &**s);
            let desired = export_conditions(self.cluster(), view.invalid.get(&label), service);
            if up_to_date(observed, &desired) {
                continue;
            }
            let body = json!({
                "apiVersion": format!("{MCS_GROUP}/{version}"),
                "kind": "ServiceExport",
                "metadata": { "name": name, "namespace": ns },
                "status": status_patch(observed, &desired, &now),
            });
            let key = (Object::ExportStatus, ns.clone(), name.clone());
            // The hash leaves out the transition times, which change with `now`.
            let digest = hash(&json!(format!("{desired:?}")));
            if self.fresh_unseen(&key, digest) {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), ns, &exports_api);
            let r = api
                .patch_status(name, &apply(), &Patch::Apply(&body))
                .await
                .map(drop);
            ok &= self.done(key, digest, "ServiceExport status", r);
        }

        // ServiceImports and their EndpointSlices (MCS-3, MCS-9, MCS-26).
        let mut desired =
            desired_imports(&merged, &alive, &view.namespaces, &snapshot.vips, version);
        label_owner(&mut desired, &view.owner);
        let imports_api = resources::service_imports(version);
        let slices_api = resources::endpoint_slices();
        let mut want_imports = BTreeSet::new();
        let mut want_slices = BTreeSet::new();
        for import in &desired.imports {
            if cancel.is_cancelled() {
                return true;
            }
            let (ns, name) = (&import.object.namespace, &import.object.name);
            want_imports.insert((ns.clone(), name.clone()));
            if view.other_imports.contains(&(ns.clone(), name.clone())) {
                if self
                    .warned
                    .insert((Object::Import, ns.clone(), name.clone()))
                {
                    tracing::warn!(cluster = %self.cluster(), namespace = %ns, name = %name, "a ServiceImport of that name is not fleetdns's; leaving it alone");
                }
                continue;
            }
            let held = view.held.get(&("ServiceImport", ns.clone(), name.clone()));
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), ns, &imports_api);
            let key = (Object::Import, ns.clone(), name.clone());
            let digest = hash(&import.object.body);
            let in_place = held.is_some_and(|h| holds(h, &import.object.body));
            if !(in_place || self.fresh_unseen(&key, digest)) {
                let r = api
                    .patch(name, &apply_owned(), &Patch::Apply(&import.object.body))
                    .await
                    .map(drop);
                if !self.done(key, digest, "ServiceImport", r) {
                    ok = false;
                    continue; // its status cannot be written without it
                }
            }
            let body = json!({
                "apiVersion": import.object.body["apiVersion"],
                "kind": "ServiceImport",
                "metadata": { "name": name, "namespace": ns },
                "status": import.status,
            });
            let key = (Object::ImportStatus, ns.clone(), name.clone());
            let digest = hash(&body);
            let in_place = held.is_some_and(|h| subset(&h["status"], &import.status));
            if !(in_place || self.fresh_unseen(&key, digest)) {
                let r = api
                    .patch_status(name, &apply(), &Patch::Apply(&body))
                    .await
                    .map(drop);
                ok &= self.done(key, digest, "ServiceImport status", r);
            }
        }
        for slice in &desired.slices {
            if cancel.is_cancelled() {
                return true;
            }
            let id = (slice.namespace.clone(), slice.name.clone());
            want_slices.insert(id.clone());
            let service = slice.body["metadata"]["labels"][MCS_SERVICE_NAME_LABEL]
                .as_str()
                .unwrap_or_default();
            if view
                .other_imports
                .contains(&(slice.namespace.clone(), service.to_owned()))
            {
                continue; // another implementation imports this service
            }
            if view.other_slices.contains(&id) {
                if self
                    .warned
                    .insert((Object::Slice, id.0.clone(), id.1.clone()))
                {
                    tracing::warn!(cluster = %self.cluster(), namespace = %id.0, name = %id.1, "an EndpointSlice of that name is not fleetdns's; leaving it alone");
                }
                continue;
            }
            let held = view
                .held
                .get(&("EndpointSlice", id.0.clone(), id.1.clone()));
            let key = (Object::Slice, id.0.clone(), id.1.clone());
            let digest = hash(&slice.body);
            if held.is_some_and(|h| holds(h, &slice.body)) || self.fresh_unseen(&key, digest) {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), &slice.namespace, &slices_api);
            let r = api
                .patch(&slice.name, &apply_owned(), &Patch::Apply(&slice.body))
                .await
                .map(drop);
            ok &= self.done(key, digest, "EndpointSlice", r);
        }

        // Garbage: what carries fleetdns's label but is no longer wanted.
        for (ns, name) in view.our_imports.difference(&want_imports) {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), ns, &imports_api);
            ok &= self
                .delete(&api, Object::Import, ns, name, "ServiceImport")
                .await;
        }
        for (ns, name) in view.our_slices.difference(&want_slices) {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), ns, &slices_api);
            ok &= self
                .delete(&api, Object::Slice, ns, name, "EndpointSlice")
                .await;
        }
        // Forget what is neither wanted nor there any more (the maps stay the fleet's size).
        self.written.retain(|(object, ns, name), (_, at)| {
            let id = (ns.clone(), name.clone());
            at.elapsed() < ECHO
                || match object {
                    Object::ExportStatus => view.exports.contains_key(&id),
                    Object::Import | Object::ImportStatus => {
                        want_imports.contains(&id) || view.our_imports.contains(&id)
                    }
                    Object::Slice => want_slices.contains(&id) || view.our_slices.contains(&id),
                }
        });
        // Warnings about imports are kept; about slices, while the slice is still another's.
        self.warned.retain(|(object, ns, name)| {
            *object != Object::Slice || view.other_slices.contains(&(ns.clone(), name.clone()))
        });
        ok
    }

    /// Written with this content too recently for the watch to show it yet.
    fn fresh_unseen(&self, key: &Key, digest: u64) -> bool {
        self.written
            .get(key)
            .is_some_and(|(d, at)| *d == digest && at.elapsed() < ECHO)
    }

    fn done(
        &mut self,
        key: Key,
        digest: u64,
        what: &'static str,
        r: Result<(), kube::Error>,
    ) -> bool {
        match r {
            Ok(()) => {
                self.status.writes.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(cluster = %self.status.cluster, namespace = %key.1, name = %key.2, what, "applied");
                self.written.insert(key, (digest, Instant::now()));
                true
            }
            Err(e) => {
                self.status.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cluster = %self.status.cluster, namespace = %key.1, name = %key.2, what, error = %e, "write failed; will retry");
                self.written.remove(&key);
                false
            }
        }
    }

    async fn delete(
        &mut self,
        api: &Api<DynamicObject>,
        object: Object,
        ns: &str,
        name: &str,
        what: &'static str,
    ) -> bool {
        let key = (object, ns.to_owned(), name.to_owned());
        if self.written.get(&key).is_some_and(|(d, _)| *d == 0) {
            // Deleted (or found gone) already; the watch has not caught up. The mark is
            // forgotten once the view no longer lists the object (see `pass`).
            return true;
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                self.status.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cluster = %self.status.cluster, namespace = ns, name, what, error = %e, "delete failed; will retry");
                return false;
            }
        }
        self.status.writes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(cluster = %self.status.cluster, namespace = ns, name, what, "deleted: no longer exported");
        if object == Object::Import {
            self.written
                .remove(&(Object::ImportStatus, ns.to_owned(), name.to_owned()));
        }
        self.written.insert(key, (0, Instant::now()));
        true
    }
}

/// Whether `held` (an object as the cluster holds it, see `source::held_content`) has what the
/// apply body `desired` sets: its labels and everything outside `metadata`. Fields the server
/// or others added are ignored; a value of ours changed by hand is not.
fn holds(held: &Value, desired: &Value) -> bool {
    let Some(desired) = desired.as_object() else {
        return false;
    };
    desired.iter().all(|(k, v)| match k.as_str() {
        "apiVersion" | "kind" => true,
        "metadata" => subset(&held["metadata"]["labels"], &v["labels"]),
        _ => subset(&held[k.as_str()], v),
    })
}

/// `desired` is contained in `observed`: objects by key (extra keys allowed), arrays element by
/// element (same length), anything else equal. A missing value is `null`.
fn subset(observed: &Value, desired: &Value) -> bool {
    match (observed, desired) {
        (_, Value::Null) => true,
        (Value::Object(o), Value::Object(d)) => d
            .iter()
            .all(|(k, v)| subset(o.get(k).unwrap_or(&Value::Null), v)),
        (Value::Array(o), Value::Array(d)) => {
            o.len() == d.len() && o.iter().zip(d).all(|(o, d)| subset(o, d))
        }
        (o, d) => o == d,
    }
}

/// ServiceExport status: an MCS implementation owns these conditions, so take them over.
fn apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// ServiceImports and slices: never forced, so an object another implementation created
/// between our view and this write answers 409 instead of being taken over.
fn apply_owned() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_object_matches_what_we_want_only_if_our_fields_are_unchanged() {
        let desired = json!({
            "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
            "metadata": {"name": "web", "namespace": "default",
                         "labels": {"app.kubernetes.io/managed-by": "fleetdns"}},
            "spec": {"type": "ClusterSetIP", "ports": [{"protocol": "TCP", "port": 80}]},
        });
        let held = json!({
            "metadata": {"labels": {"app.kubernetes.io/managed-by": "fleetdns", "extra": "x"}},
            "spec": {"type": "ClusterSetIP", "ports": [{"protocol": "TCP", "port": 80, "name": ""}]},
            "status": {"clusters": [{"cluster": "a"}]},
        });
        assert!(
            holds(&held, &desired),
            "server defaults and others' fields are ignored"
        );
        let mut edited = held.clone();
        edited["spec"]["ports"][0]["port"] = json!(8080);
        assert!(!holds(&edited, &desired), "a changed port");
        let mut edited = held.clone();
        edited["spec"]["ports"] = json!([]);
        assert!(!holds(&edited, &desired), "a removed port");
        let mut edited = held.clone();
        edited["metadata"]["labels"] = json!({});
        assert!(!holds(&edited, &desired), "our label removed");
        assert!(subset(
            &held["status"],
            &json!({"clusters": [{"cluster": "a"}]})
        ));
        assert!(!subset(
            &held["status"],
            &json!({"clusters": [{"cluster": "b"}]})
        ));
        assert!(!subset(&Value::Null, &json!({"clusters": []})));
    }
}
