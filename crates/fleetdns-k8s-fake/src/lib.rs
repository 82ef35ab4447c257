//! A small fake Kubernetes API server for tests: HTTP/1.1 on loopback, JSON only, one request
//! per connection (`Connection: close`), watches streamed as chunked JSON lines.
//!
//! It serves the kinds fleetdns uses with the semantics kube-rs relies on: lists with
//! selectors and `limit`/`continue`, watches from a resourceVersion with replay, 410 Gone
//! after [`FakeApiServer::compact`], bookmarks, streaming lists, server-side apply, `/status`,
//! optimistic concurrency and discovery. An object is stored once per group/resource and seen
//! through every served version with `apiVersion` rewritten (a CRD without conversion).
//!
//! Left out: field ownership and apply conflicts (`managedFields`), YAML bodies, JSON patch,
//! deletecollection, finalizers, cascading namespace deletion, most validation. A namespace
//! put with a `deletionTimestamp` is terminating: creating objects in it is refused (403).

mod http;
mod kinds;
mod selector;
mod store;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::http::{accept_loop, param};
use crate::kinds::{RESOURCES, Res, find_res};
use crate::store::meta_str;

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Query pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// The body parsed as JSON, if it was.
    pub body: Option<Value>,
}

impl Recorded {
    /// The last value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        param(&self.query, key)
    }
}

/// (group, plural, namespace or "", name): independent of the version.
type Key = (&'static str, &'static str, String, String);

/// One stored change, kept for watch replay.
struct Change {
    rv: u64,
    res: &'static Res,
    etype: &'static str,
    object: Value,
    old: Option<Value>,
}

#[derive(Clone)]
enum Signal {
    Change(Arc<Change>),
    Bookmark(u64),
    /// Close every open watch abruptly (a dropped connection).
    DropAll,
}

struct State {
    rv: u64,
    uids: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Arc<Change>>,
    served: BTreeMap<String, Vec<String>>,
    requests: Vec<Recorded>,
    failures: Vec<(String, String, u16)>,
    offline: bool,
    /// Only watch requests are answered; every other request is closed unanswered.
    only_watches: bool,
    /// Resources (plural) whose watches receive no changes.
    stale: BTreeSet<&'static str>,
    tx: broadcast::Sender<Signal>,
}

struct Inner {
    state: Mutex<State>,
    open_watches: AtomicUsize,
    addr: SocketAddr,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The fake API server. Dropping it stops it and closes every connection.
pub struct FakeApiServer {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Binds 127.0.0.1 on an ephemeral port and serves until dropped.
    pub async fn start() -> std::io::Result<FakeApiServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let state = State {
            rv: 1,
            uids: 0,
            compacted: 0,
            objects: BTreeMap::new(),
            history: Vec::new(),
            served: BTreeMap::new(),
            requests: Vec::new(),
            failures: Vec::new(),
            offline: false,
            only_watches: false,
            stale: BTreeSet::new(),
            tx: broadcast::channel(4096).0,
        };
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            open_watches: 0.into(),
            addr,
        });
        let task = tokio::spawn(accept_loop(listener, inner.clone()));
        Ok(FakeApiServer { inner, task })
    }

    /// Stops the server and waits for it; open connections are closed.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// Writes a kubeconfig whose only context, `context`, points here (token "fake").
    pub fn write_kubeconfig(&self, path: &std::path::Path, context: &str) -> std::io::Result<()> {
        let (c, url) = (Value::from(context), Value::from(self.url())); // JSON strings are YAML
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {c}\n\
             clusters:\n- name: {c}\n  cluster:\n    server: {url}\n\
             users:\n- name: {c}\n  user:\n    token: fake\n\
             contexts:\n- name: {c}\n  context:\n    cluster: {c}\n    user: {c}\n"
        );
        std::fs::write(path, yaml)
    }

    /// Serves exactly `versions` of a CRD group (the first preferred); none stops serving it.
    /// Core v1 and discovery.k8s.io/v1 are always served.
    pub fn serve_group(&self, group: &str, versions: &[&str]) {
        let versions = versions.iter().map(ToString::to_string).collect();
        self.inner.lock().served.insert(group.into(), versions);
    }

    /// Creates or replaces an object as an admin would: no namespace or subresource rules,
    /// `status` as given. A fresh resourceVersion is always assigned; `uid`,
    /// `creationTimestamp` and `generation` are kept if given, else carried over or made. A
    /// namespaced object without namespace goes to "default". Writing an identical object
    /// changes nothing and emits nothing, like the real API. Returns the stored object.
    /// Panics on an unknown kind or a missing name: a bug in the test.
    pub fn put(&self, mut object: Value) -> Value {
        let (av, kind) = (object["apiVersion"].as_str(), object["kind"].as_str());
        let (av, kind) = (av.unwrap_or_default(), kind.unwrap_or_default());
        let res = find_res(av, kind)
            .unwrap_or_else(|| panic!("FakeApiServer::put: unknown kind {av} {kind}"));
        let name = meta_str(&object, "name")
            .expect("FakeApiServer::put: no metadata.name")
            .to_owned();
        let ns = meta_str(&object, "namespace").unwrap_or("default");
        let ns = if res.namespaced {
            ns.to_owned()
        } else {
            String::new()
        };
        let mut st = self.inner.lock();
        let old = st
            .objects
            .get(&(res.group, res.plural, ns.clone(), name.clone()))
            .cloned();
        st.fill_meta(res, &mut object, old.as_ref(), &ns, &name, true);
        st.write(res, ns, name, object)
    }

    /// Deletes an object, emitting DELETED; false if there was none.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        let Some(res) = find_res(api_version, kind) else {
            return false;
        };
        let ns = if res.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        self.inner.lock().remove(res, ns, name).is_some()
    }

    /// The stored object (with the `apiVersion` it was last written through).
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let res = RESOURCES.iter().find(|r| r.kind == kind)?;
        let ns = if res.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        let key = (res.group, res.plural, ns.to_owned(), name.to_owned());
        self.inner.lock().objects.get(&key).cloned()
    }

    /// Every stored object of a kind, by namespace and name.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let Some(res) = RESOURCES.iter().find(|r| r.kind == kind) else {
            return Vec::new();
        };
        let st = self.inner.lock();
        let of_kind = st
            .objects
            .iter()
            .filter(|(k, _)| (k.0, k.1) == (res.group, res.plural));
        of_kind.map(|(_, v)| v.clone()).collect()
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.lock().rv
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.inner.lock().requests.clear();
    }

    /// Forgets the event history: a watch from an older resourceVersion (or a list continued
    /// from an older first page) gets 410 Gone.
    pub fn compact(&self) {
        let mut st = self.inner.lock();
        st.history.clear();
        st.compacted = st.rv;
    }

    /// Closes every open watch connection abruptly, without the final chunk.
    pub fn drop_watches(&self) {
        let _ = self.inner.lock().tx.send(Signal::DropAll);
    }

    /// How many watch streams are open.
    pub fn open_watches(&self) -> usize {
        self.inner.open_watches.load(Ordering::SeqCst)
    }

    /// While offline every new connection is closed at once, unanswered, and open watches
    /// are dropped: an unreachable API server.
    pub fn set_offline(&self, offline: bool) {
        let mut st = self.inner.lock();
        st.offline = offline;
        if offline {
            let _ = st.tx.send(Signal::DropAll);
        }
    }

    /// A restarted API server: every open watch is closed and the event history forgotten
    /// (its watch cache starts afresh, so a watch from an older resourceVersion gets 410
    /// Gone); the objects stay, as they live in etcd.
    pub fn restart(&self) {
        let mut st = self.inner.lock();
        st.history.clear();
        st.compacted = st.rv;
        let _ = st.tx.send(Signal::DropAll);
    }

    /// While set, watch requests are answered as usual and every other request (lists, gets,
    /// writes, discovery) is closed unanswered: a half-up API server, e.g. one starting
    /// behind a load balancer. A watcher that must re-list sees no answer to its list.
    pub fn set_only_watches_answered(&self, only: bool) {
        self.inner.lock().only_watches = only;
    }

    /// While set, watches of this kind stay open but receive no changes: a stale watch (a
    /// lagging watch cache). Lists stay current.
    pub fn set_watch_stale(&self, kind: &str, stale: bool) {
        let Some(res) = RESOURCES.iter().find(|r| r.kind == kind) else {
            return;
        };
        let mut st = self.inner.lock();
        if stale {
            st.stale.insert(res.plural);
        } else {
            st.stale.remove(res.plural);
        }
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch that allowed them.
    pub fn bookmark(&self) {
        let st = self.inner.lock();
        let _ = st.tx.send(Signal::Bookmark(st.rv));
    }

    /// The next request with this method (any case) whose path contains `path_contains`
    /// fails with a Status of this code. NB kube's client itself retries 429, 503 and 504.
    pub fn fail_next(&self, method: &str, path_contains: &str, code: u16) {
        let failure = (method.to_owned(), path_contains.to_owned(), code);
        self.inner.lock().failures.push(failure);
    }
}
