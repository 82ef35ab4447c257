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

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};

const MCS: &str = "multicluster.x-k8s.io";

/// One resource the fake serves.
#[derive(Debug, PartialEq, Eq)]
struct Res {
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource leave `status` alone.
    status: bool,
    /// A custom resource: keeps `metadata.generation`, DELETE answers with the object.
    crd: bool,
}

#[rustfmt::skip]
const RESOURCES: &[Res] = &[
    Res { group: "", plural: "services", kind: "Service", namespaced: true, status: true, crd: false },
    Res { group: "", plural: "namespaces", kind: "Namespace", namespaced: false, status: true, crd: false },
    Res { group: "discovery.k8s.io", plural: "endpointslices", kind: "EndpointSlice", namespaced: true, status: false, crd: false },
    Res { group: MCS, plural: "serviceexports", kind: "ServiceExport", namespaced: true, status: true, crd: true },
    Res { group: MCS, plural: "serviceimports", kind: "ServiceImport", namespaced: true, status: true, crd: true },
    Res { group: "about.k8s.io", plural: "clusterproperties", kind: "ClusterProperty", namespaced: false, status: false, crd: true },
    Res { group: "networking.istio.io", plural: "serviceentries", kind: "ServiceEntry", namespaced: true, status: true, crd: true },
];
const GROUPS: [&str; 4] = [
    "discovery.k8s.io",
    MCS,
    "about.k8s.io",
    "networking.istio.io",
];

fn find_res(api_version: &str, kind: &str) -> Option<&'static Res> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.into()
    } else {
        format!("{group}/{version}")
    }
}

/// `services` or `serviceexports.multicluster.x-k8s.io`, as in the real API's messages.
fn qualified(res: &Res) -> String {
    if res.group.is_empty() {
        res.plural.into()
    } else {
        format!("{}.{}", res.plural, res.group)
    }
}

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
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
        let versions = versions.iter().map(|v| v.to_string()).collect();
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

// ---- the store ----------------------------------------------------------------------------

impl State {
    /// Sets the system fields of an object about to be written. The API overwrites
    /// uid/creationTimestamp/generation; `admin` (`put`) keeps them when given.
    fn fill_meta(
        &mut self,
        res: &Res,
        obj: &mut Value,
        old: Option<&Value>,
        ns: &str,
        name: &str,
        admin: bool,
    ) {
        let changed = old.is_none_or(|o| content(o) != content(obj));
        self.uids += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", self.uids);
        let meta = meta_mut(obj);
        meta.insert("name".into(), name.into());
        if res.namespaced {
            meta.insert("namespace".into(), ns.into());
        } else {
            meta.remove("namespace");
        }
        meta.remove("resourceVersion");
        for (field, fresh) in [
            ("uid", uid.into()),
            ("creationTimestamp", now_rfc3339().into()),
        ] {
            if !(admin && meta.contains_key(field)) {
                let kept = old.and_then(|o| o["metadata"].get(field)).cloned();
                meta.insert(field.into(), kept.unwrap_or(fresh));
            }
        }
        if res.crd && !(admin && meta.contains_key("generation")) {
            // Custom resources count changes to anything but metadata and status.
            let prev = old
                .and_then(|o| o["metadata"]["generation"].as_u64())
                .unwrap_or(0);
            meta.insert("generation".into(), (prev + u64::from(changed)).into());
        }
    }

    /// Stores an object at the next resourceVersion, emitting ADDED or MODIFIED, unless it is
    /// identical to the stored one: a no-op write changes nothing, as in the real API.
    fn write(&mut self, res: &'static Res, ns: String, name: String, mut obj: Value) -> Value {
        let key = (res.group, res.plural, ns, name);
        let old = self.objects.get(&key).cloned();
        if let Some(old) = old
            .as_ref()
            .filter(|old| without_rv(old) == without_rv(&obj))
        {
            return old.clone();
        }
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), self.rv.to_string().into());
        self.objects.insert(key, obj.clone());
        let etype = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.emit(Change {
            rv: self.rv,
            res,
            etype,
            object: obj.clone(),
            old,
        });
        obj
    }

    /// Removes an object; it comes back (and goes out as DELETED) at the deletion's RV.
    fn remove(&mut self, res: &'static Res, ns: &str, name: &str) -> Option<Value> {
        let key = (res.group, res.plural, ns.to_owned(), name.to_owned());
        let mut obj = self.objects.remove(&key)?;
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), self.rv.to_string().into());
        self.emit(Change {
            rv: self.rv,
            res,
            etype: "DELETED",
            object: obj.clone(),
            old: None,
        });
        Some(obj)
    }

    fn emit(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push(change.clone());
        let _ = self.tx.send(Signal::Change(change));
    }

    fn served_versions(&self, group: &str) -> Vec<String> {
        match group {
            "" | "discovery.k8s.io" => vec!["v1".into()],
            g => self.served.get(g).cloned().unwrap_or_default(),
        }
    }

    /// The real API refuses writes into a missing namespace; the fake checks only once the
    /// test has put any Namespace at all.
    /// The real API refuses to create objects in a namespace with a `deletionTimestamp`.
    fn namespace_terminating(&self, ns: &str) -> bool {
        let key = ("", "namespaces", String::new(), ns.to_owned());
        self.objects
            .get(&key)
            .is_some_and(|n| n["metadata"]["deletionTimestamp"].is_string())
    }

    fn namespace_missing(&self, ns: &str) -> bool {
        let mut names = self
            .objects
            .keys()
            .filter(|k| (k.0, k.1) == ("", "namespaces"))
            .peekable();
        names.peek().is_some() && !names.any(|k| k.3 == ns)
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn as_map(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    as_map(as_map(obj).entry("metadata").or_insert(Value::Null))
}

/// What `metadata.generation` counts: all but metadata, status and type.
fn content(obj: &Value) -> Value {
    let mut v = obj.clone();
    let map = as_map(&mut v);
    map.retain(|k, _| !["metadata", "status", "apiVersion", "kind"].contains(&k.as_str()));
    v
}

fn without_rv(obj: &Value) -> Value {
    let mut v = obj.clone();
    meta_mut(&mut v).remove("resourceVersion");
    v
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        return *target = patch.clone();
    };
    let target = as_map(target);
    for (k, v) in patch {
        if v.is_null() {
            target.remove(k);
        } else {
            merge_patch(target.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since the epoch (H. Hinnant's algorithm).
    let doe = (days + 719_468).rem_euclid(146_097);
    let era = (days + 719_468).div_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let (d, m) = (
        doy - (153 * mp + 2) / 5 + 1,
        if mp < 10 { mp + 3 } else { mp - 9 },
    );
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, min, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}Z")
}

// ---- selectors ----------------------------------------------------------------------------

/// One selector term on a label or field `key`: with a `value`, `=`/`==` (`equal`) or `!=`;
/// without, `k` (`equal`: it exists) or `!k`.
struct Term {
    field: bool,
    key: String,
    equal: bool,
    value: Option<String>,
}

/// What a list or watch selects: a namespace, labels (`k=v`, `k==v`, `k!=v`, `k`, `!k`,
/// comma-separated) and the fields `metadata.name` and `metadata.namespace`; other field
/// selectors are accepted and ignored.
struct Filter {
    ns: Option<String>,
    terms: Vec<Term>,
}

impl Filter {
    fn new(ns: Option<String>, query: &[(String, String)]) -> Result<Filter, Reply> {
        let mut terms = Vec::new();
        for (field, param_name) in [(false, "labelSelector"), (true, "fieldSelector")] {
            for t in param(query, param_name)
                .unwrap_or("")
                .split(',')
                .map(str::trim)
            {
                let (key, equal, value) = if t.is_empty() {
                    continue;
                } else if let Some(k) = t.strip_prefix('!') {
                    (k, false, None)
                } else if let Some((k, v)) = t.split_once("!=") {
                    (k, false, Some(v))
                } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                    (k, true, Some(v))
                } else {
                    (t, true, None)
                };
                let key = key.trim();
                if key.is_empty()
                    || key.contains([' ', '(', ')', '!', '='])
                    || (field && value.is_none())
                {
                    return Err(error(400, format!("unable to parse requirement: {t:?}")));
                }
                let value = value.map(|v| v.trim().to_owned());
                terms.push(Term {
                    field,
                    key: key.to_owned(),
                    equal,
                    value,
                });
            }
        }
        Ok(Filter { ns, terms })
    }

    fn matches(&self, obj: &Value) -> bool {
        if self
            .ns
            .as_deref()
            .is_some_and(|ns| meta_str(obj, "namespace") != Some(ns))
        {
            return false;
        }
        self.terms.iter().all(|t| {
            let actual = match (t.field, t.key.as_str()) {
                (true, "metadata.name") => meta_str(obj, "name"),
                (true, "metadata.namespace") => meta_str(obj, "namespace"),
                (true, _) => return true,
                (false, key) => obj["metadata"]["labels"].get(key).and_then(Value::as_str),
            };
            match &t.value {
                Some(v) => (actual == Some(v.as_str())) == t.equal,
                None => actual.is_some() == t.equal,
            }
        })
    }
}

// ---- HTTP ---------------------------------------------------------------------------------

struct HttpRequest {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Query-string decoding (`+` is a space).
fn percent_decode(s: &str) -> String {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        let hex = |j: usize| b.get(j).copied().and_then(hex_digit);
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => (out.push(h << 4 | l), i += 2),
            (b'+', ..) => (out.push(b' '), ()),
            (c, ..) => (out.push(c), ()),
        };
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one request. `Err(Some(..))` is answered with that Status, `Err(None)` just closes.
async fn read_request(stream: &mut TcpStream) -> Result<HttpRequest, Option<(u16, String)>> {
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 8192]);
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 64 * 1024 {
            return Err(Some((400, "request header too large".into())));
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let bad = |what: &str| Some((400, format!("malformed HTTP request: {what}")));
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let parts: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(bad("request line"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(bad("request line"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or_else(|| bad("header"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if header("transfer-encoding").is_some() {
        return Err(Some((
            411,
            "chunked request bodies are not supported: send Content-Length".into(),
        )));
    }
    let len: usize = header("content-length")
        .unwrap_or("0")
        .parse()
        .map_err(|_| bad("Content-Length"))?;
    if len > 16 << 20 {
        return Err(Some((413, "request body too large".into())));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(len);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")));
    let query = pairs
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let (method, path) = (method.to_owned(), path.to_owned());
    Ok(HttpRequest {
        method,
        path,
        query,
        headers,
        body,
    })
}

/// The HTTP reason phrase and the Kubernetes Status reason of a code.
fn reasons(code: u16) -> (&'static str, &'static str) {
    match code {
        200 => ("OK", ""),
        201 => ("Created", ""),
        400 => ("Bad Request", "BadRequest"),
        401 => ("Unauthorized", "Unauthorized"),
        403 => ("Forbidden", "Forbidden"),
        404 => ("Not Found", "NotFound"),
        405 => ("Method Not Allowed", "MethodNotAllowed"),
        409 => ("Conflict", "Conflict"),
        410 => ("Gone", "Expired"),
        411 => ("Length Required", "BadRequest"),
        413 => ("Payload Too Large", "RequestEntityTooLarge"),
        415 => ("Unsupported Media Type", "UnsupportedMediaType"),
        422 => ("Unprocessable Entity", "Invalid"),
        429 => ("Too Many Requests", "TooManyRequests"),
        500 => ("Internal Server Error", "InternalError"),
        503 => ("Service Unavailable", "ServiceUnavailable"),
        504 => ("Gateway Timeout", "Timeout"),
        _ => ("Unknown", "Unknown"),
    }
}

async fn write_response(stream: &mut TcpStream, code: u16, body: &Value) {
    let body = body.to_string();
    let (phrase, len) = (reasons(code).0, body.len());
    let head = format!(
        "HTTP/1.1 {code} {phrase}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    if stream
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .is_ok()
    {
        let _ = stream.shutdown().await;
        // Drain what the client may still send, so closing does not reset the connection
        // before it has read the answer (a refused chunked body, say).
        let mut sink = [0u8; 4096];
        let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    // Dropping the set, when this task is aborted, aborts every connection task.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                // Offline: closed unanswered.
                Ok((stream, _)) if inner.lock().offline => drop(stream),
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(inner.clone(), stream));
                }
                Err(e) => {
                    tracing::debug!("fake apiserver accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(inner: Arc<Inner>, mut stream: TcpStream) {
    let req = match tokio::time::timeout(Duration::from_secs(30), read_request(&mut stream)).await {
        Ok(Ok(req)) => req,
        Ok(Err(Some((code, message)))) => {
            return write_response(&mut stream, code, &failure(code, message)).await;
        }
        _ => return,
    };
    let watch = matches!(param(&req.query, "watch"), Some("1" | "true"));
    if !watch && inner.lock().only_watches {
        return; // closed unanswered
    }
    match handle(&inner, &req) {
        Reply::Json(code, body) => write_response(&mut stream, code, &body).await,
        Reply::Watch(plan) => serve_watch(&inner, stream, *plan).await,
    }
}

// ---- the API ------------------------------------------------------------------------------

enum Reply {
    Json(u16, Value),
    Watch(Box<WatchPlan>),
}

fn failure(code: u16, message: impl Into<String>) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reasons(code).1, "code": code})
}

fn error(code: u16, message: impl Into<String>) -> Reply {
    Reply::Json(code, failure(code, message))
}

/// A failure about one object, with `details` as the real API gives them.
fn object_error(code: u16, reason: &str, res: &Res, name: &str, message: String) -> Reply {
    let mut status = failure(code, message);
    status["reason"] = reason.into();
    status["details"] = json!({"name": name, "group": res.group, "kind": res.plural});
    Reply::Json(code, status)
}

fn not_found(res: &Res, name: &str) -> Reply {
    object_error(
        404,
        "NotFound",
        res,
        name,
        format!("{} {name:?} not found", qualified(res)),
    )
}

fn conflict(res: &Res, name: &str) -> Reply {
    let message = format!(
        "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
         please apply your changes to the latest version and try again",
        qualified(res)
    );
    object_error(409, "Conflict", res, name, message)
}

/// What a request addresses, and the version it is seen through.
struct Target {
    res: &'static Res,
    version: String,
    ns: Option<String>,
    status: bool,
}

impl Target {
    fn present(&self, obj: &Value) -> Value {
        let mut obj = obj.clone();
        let map = as_map(&mut obj);
        map.insert(
            "apiVersion".into(),
            group_version(self.res.group, &self.version).into(),
        );
        map.insert("kind".into(), self.res.kind.into());
        obj
    }

    fn key(&self, name: &str) -> Key {
        (
            self.res.group,
            self.res.plural,
            self.ns.clone().unwrap_or_default(),
            name.to_owned(),
        )
    }

    fn current<'a>(&self, st: &'a State, filter: &Filter) -> Vec<(&'a Key, &'a Value)> {
        let of_kind = st
            .objects
            .iter()
            .filter(|(k, _)| (k.0, k.1) == (self.res.group, self.res.plural));
        of_kind.filter(|(_, o)| filter.matches(o)).collect()
    }
}

fn api_group(group: &str, versions: &[String]) -> Option<Value> {
    let gv = |v: &String| json!({"groupVersion": group_version(group, v), "version": v});
    let preferred = gv(versions.first()?);
    let versions: Vec<Value> = versions.iter().map(gv).collect();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": preferred}),
    )
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        let verbs = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let (singular, ns) = (r.kind.to_lowercase(), r.namespaced);
        resources.push(json!({"name": r.plural, "singularName": singular, "namespaced": ns, "kind": r.kind, "verbs": verbs}));
        if r.status {
            let name = format!("{}/status", r.plural);
            let verbs = ["get", "patch", "update"];
            resources.push(json!({"name": name, "singularName": "", "namespaced": ns, "kind": r.kind, "verbs": verbs}));
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(group, version), "resources": resources})
}

fn handle(inner: &Inner, req: &HttpRequest) -> Reply {
    let body: Option<Value> = serde_json::from_slice(&req.body).ok();
    let (method, path, query) = (req.method.as_str(), req.path.as_str(), req.query.as_slice());
    let mut st = inner.lock();
    let content_type = req.header("content-type").map(str::to_owned);
    let recorded = Recorded {
        method: method.into(),
        path: path.into(),
        query: query.to_vec(),
        content_type,
        body: body.clone(),
    };
    st.requests.push(recorded);
    let failing = st
        .failures
        .iter()
        .position(|(m, p, _)| m.eq_ignore_ascii_case(method) && path.contains(p.as_str()));
    if let Some(i) = failing {
        let code = st.failures.remove(i).2;
        return error(code, format!("injected failure for {method} {path}"));
    }
    let not_served = || error(404, "the server could not find the requested resource");
    let get_only = |body: Value| match method {
        "GET" => Reply::Json(200, body),
        _ => error(405, format!("{method} is not supported on {path}")),
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs[..] {
        ["apis"] => {
            let groups: Vec<Value> = GROUPS
                .iter()
                .filter_map(|g| api_group(g, &st.served_versions(g)))
                .collect();
            return get_only(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}));
        }
        ["apis", group] => {
            return api_group(group, &st.served_versions(group)).map_or_else(not_served, get_only);
        }
        ["api", version, ref rest @ ..] => ("", version, rest),
        ["apis", group, version, ref rest @ ..] => (group, version, rest),
        _ => return not_served(),
    };
    if !st.served_versions(group).iter().any(|v| v == version) {
        return not_served();
    }
    // [namespaces/{ns}/]{plural}[/{name}[/status]]
    let (ns, rest) = match rest {
        [] => return get_only(resource_list(group, version)),
        ["namespaces", ns, plural, rest @ ..] if *plural != "status" => {
            (Some(ns.to_string()), [&[*plural], rest].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, status) = match rest[..] {
        [plural] => (plural, None, false),
        [plural, name] => (plural, Some(name), false),
        [plural, name, "status"] => (plural, Some(name), true),
        _ => return not_served(),
    };
    let Some(res) = RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
    else {
        return not_served();
    };
    if (ns.is_some() && !res.namespaced) || (status && !res.status) {
        return not_served();
    }
    let one_ns = ns.is_some() || !res.namespaced;
    let t = Target {
        res,
        version: version.to_owned(),
        ns,
        status,
    };
    let content_type = req
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let result = match (method, name) {
        ("GET", _) if matches!(param(query, "watch"), Some("1" | "true")) => {
            watch_plan(&st, &t, name, query)
        }
        ("GET", None) => list(&st, &t, query),
        ("GET", Some(name)) => st
            .objects
            .get(&t.key(name))
            .map(|o| Reply::Json(200, t.present(o)))
            .ok_or_else(|| not_found(res, name)),
        ("POST", None) if one_ns && !status => create(&mut st, &t, body),
        ("PUT", Some(name)) if one_ns => replace(&mut st, &t, name, body),
        ("PATCH", Some(name)) if one_ns => patch(&mut st, &t, name, query, content_type, body),
        ("DELETE", Some(name)) if one_ns && !status => delete(&mut st, &t, name),
        _ => Err(error(405, format!("{method} is not supported on {path}"))),
    };
    result.unwrap_or_else(|e| e)
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let pair = |p: &[u8]| Some(hex_digit(*p.first()?)? << 4 | hex_digit(*p.get(1)?)?);
    String::from_utf8(s.as_bytes().chunks(2).map(pair).collect::<Option<_>>()?).ok()
}

fn list(st: &State, t: &Target, query: &[(String, String)]) -> Result<Reply, Reply> {
    let filter = Filter::new(t.ns.clone(), query)?;
    let limit: usize = param(query, "limit")
        .unwrap_or("0")
        .parse()
        .map_err(|_| error(400, "invalid limit"))?;
    // The opaque continue token is hex("{rv}/{namespace}/{name}"): the first page's RV and
    // the last item given. Later pages report that RV, like the real API, so a watch from the
    // last page's RV replays whatever changed while paging.
    let (list_rv, after) = match param(query, "continue").filter(|c| !c.is_empty()) {
        None => (st.rv, None),
        Some(token) => {
            let token = unhex(token).unwrap_or_default();
            let mut parts = token.splitn(3, '/');
            let (Some(Ok(rv)), Some(ns), Some(name)) = (
                parts.next().map(str::parse::<u64>),
                parts.next(),
                parts.next(),
            ) else {
                return Err(error(400, "continue key is not valid"));
            };
            if rv < st.compacted {
                return Err(error(
                    410,
                    "The provided continue parameter is too old to display a consistent list result.",
                ));
            }
            (rv, Some((ns.to_owned(), name.to_owned())))
        }
    };
    let mut items = t.current(st, &filter);
    items.retain(|(k, _)| {
        after
            .as_ref()
            .is_none_or(|(ns, name)| (&k.2, &k.3) > (ns, name))
    });
    let take = if limit == 0 {
        items.len()
    } else {
        limit.min(items.len())
    };
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if take < items.len() {
        let last = items[take - 1].0; // take >= 1: a limit is set
        metadata["continue"] = hex(&format!("{list_rv}/{}/{}", last.2, last.3)).into();
        metadata["remainingItemCount"] = (items.len() - take).into();
    }
    let items: Vec<Value> = items[..take].iter().map(|(_, o)| t.present(o)).collect();
    let (kind, api_version) = (
        format!("{}List", t.res.kind),
        group_version(t.res.group, &t.version),
    );
    Ok(Reply::Json(
        200,
        json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items}),
    ))
}

// ---- watches ------------------------------------------------------------------------------

/// Everything a watch stream needs, prepared under the state lock so no event is missed.
struct WatchPlan {
    target: Target,
    filter: Filter,
    /// Events to send first: initial ADDED, replayed history, or a 410 ERROR.
    lines: Vec<String>,
    /// End the stream after `lines` (the 410 case).
    end: bool,
    /// Only later events are sent.
    from: u64,
    bookmarks: bool,
    timeout: Duration,
    rx: broadcast::Receiver<Signal>,
}

fn event_line(etype: &str, object: Value) -> String {
    format!("{}\n", json!({"type": etype, "object": object}))
}

fn bookmark_line(t: &Target, rv: u64, initial_end: bool) -> String {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let av = group_version(t.res.group, &t.version);
    event_line(
        "BOOKMARK",
        json!({"kind": t.res.kind, "apiVersion": av, "metadata": metadata}),
    )
}

/// A change is sent when its object matches before or after (simpler than the real API,
/// which turns "stopped matching" into DELETED).
fn change_matches(t: &Target, filter: &Filter, c: &Change) -> bool {
    c.res == t.res
        && (filter.matches(&c.object) || c.old.as_ref().is_some_and(|o| filter.matches(o)))
}

fn watch_plan(
    st: &State,
    t: &Target,
    name: Option<&str>,
    query: &[(String, String)],
) -> Result<Reply, Reply> {
    let mut query = query.to_vec();
    if let Some(name) = name {
        // The deprecated single-object watch: a watch with a name field selector.
        query.push(("fieldSelector".into(), format!("metadata.name={name}")));
    }
    let filter = Filter::new(t.ns.clone(), &query)?;
    let bookmarks = matches!(param(&query, "allowWatchBookmarks"), Some("true" | "1"));
    let timeout = match param(&query, "timeoutSeconds").map(str::parse) {
        None | Some(Ok(0)) => 1800, // the real server picks 30 to 60 minutes
        Some(Ok(seconds)) => seconds,
        Some(Err(_)) => return Err(error(400, "invalid timeoutSeconds")),
    };
    let rv = param(&query, "resourceVersion").unwrap_or("");
    let initial = || {
        t.current(st, &filter)
            .into_iter()
            .map(|(_, o)| event_line("ADDED", t.present(o)))
    };
    let (mut lines, mut end, mut from) = (Vec::new(), false, st.rv);
    if matches!(param(&query, "sendInitialEvents"), Some("true" | "1")) {
        // A streaming list: current objects, then a bookmark marking their end.
        if param(&query, "resourceVersionMatch") != Some("NotOlderThan") || !bookmarks {
            return Err(error(
                422,
                "sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks",
            ));
        }
        lines.extend(initial());
        lines.push(bookmark_line(t, st.rv, true));
    } else if rv.is_empty() || rv == "0" {
        // Start now, with a synthetic ADDED for everything that exists.
        lines.extend(initial());
    } else {
        let n: u64 = rv
            .parse()
            .map_err(|_| error(400, format!("invalid resource version {rv:?}")))?;
        if n < st.compacted {
            let message = format!("too old resource version: {n} ({})", st.compacted + 1);
            (lines, end) = (vec![event_line("ERROR", failure(410, message))], true);
        } else {
            let replay = st
                .history
                .iter()
                .filter(|c| c.rv > n && change_matches(t, &filter, c));
            lines.extend(replay.map(|c| event_line(c.etype, t.present(&c.object))));
            from = n;
        }
    }
    let target = Target {
        res: t.res,
        version: t.version.clone(),
        ns: t.ns.clone(),
        status: false,
    };
    let (timeout, rx) = (Duration::from_secs(timeout), st.tx.subscribe());
    Ok(Reply::Watch(Box::new(WatchPlan {
        target,
        filter,
        lines,
        end,
        from,
        bookmarks,
        timeout,
        rx,
    })))
}

fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

struct WatchCount<'a>(&'a AtomicUsize);

impl Drop for WatchCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_watch(inner: &Inner, stream: TcpStream, mut plan: WatchPlan) {
    let (mut rd, mut wr) = stream.into_split();
    let mut out =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
        Cache-Control: no-cache, private\r\nConnection: close\r\n\r\n"
            .to_vec();
    plan.lines.iter().for_each(|l| out.extend(chunk(l)));
    if plan.end {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if wr.write_all(&out).await.is_err() || plan.end {
        return drop(wr.shutdown().await);
    }
    inner.open_watches.fetch_add(1, Ordering::SeqCst);
    let _count = WatchCount(&inner.open_watches);
    let deadline = tokio::time::sleep(plan.timeout);
    tokio::pin!(deadline);
    let mut sink = [0u8; 1024];
    loop {
        let line = tokio::select! {
            // timeoutSeconds elapsed: a clean end of the stream.
            _ = &mut deadline => return drop(wr.write_all(b"0\r\n\r\n").await),
            read = rd.read(&mut sink) => match read {
                Ok(0) | Err(_) => return, // the client went away
                Ok(_) => continue,
            },
            signal = plan.rx.recv() => match signal {
                Ok(Signal::Change(c)) if c.rv > plan.from
                    && change_matches(&plan.target, &plan.filter, &c)
                    && !inner.lock().stale.contains(c.res.plural) => {
                    event_line(c.etype, plan.target.present(&c.object))
                }
                Ok(Signal::Bookmark(rv)) if plan.bookmarks && rv >= plan.from => bookmark_line(&plan.target, rv, false),
                Ok(Signal::Change(_) | Signal::Bookmark(_)) => continue,
                // Dropped, or too far behind to catch up: close abruptly like a broken
                // connection; the client resumes from its last resourceVersion.
                Ok(Signal::DropAll) | Err(_) => return,
            },
        };
        if wr.write_all(&chunk(&line)).await.is_err() {
            return;
        }
    }
}

// ---- writes -------------------------------------------------------------------------------

/// The body as an object of the target's type, its name (which must agree with the URL's)
/// and namespace (which must agree with the URL's).
fn object_body(
    t: &Target,
    body: Option<Value>,
    url_name: Option<&str>,
) -> Result<(Value, String, String), Reply> {
    let Some(mut obj) =
        body.filter(|b| b.is_object() && b.get("metadata").is_none_or(Value::is_object))
    else {
        return Err(error(
            400,
            "the body must be a JSON object (the fake accepts no YAML)",
        ));
    };
    let name = match (meta_str(&obj, "name"), url_name) {
        (Some(body), Some(url)) if body != url => {
            return Err(error(
                400,
                format!(
                    "the name of the object ({body}) does not match the name on the URL ({url})"
                ),
            ));
        }
        (Some(name), _) | (None, Some(name)) if !name.is_empty() => name.to_owned(),
        _ => {
            return Err(error(
                422,
                format!(
                    "{}: metadata.name: Required value: name is required",
                    t.res.kind
                ),
            ));
        }
    };
    let ns = t.ns.clone().unwrap_or_default();
    if t.res.namespaced && meta_str(&obj, "namespace").is_some_and(|n| n != ns) {
        return Err(error(
            400,
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let map = as_map(&mut obj);
    map.insert(
        "apiVersion".into(),
        group_version(t.res.group, &t.version).into(),
    );
    map.insert("kind".into(), t.res.kind.into());
    Ok((obj, name, ns))
}

/// Creates through the main resource: the namespace must exist, status starts empty.
fn store_new(
    st: &mut State,
    t: &Target,
    mut obj: Value,
    name: String,
    ns: String,
) -> Result<Reply, Reply> {
    if let Some(ns) = t.ns.as_deref().filter(|ns| st.namespace_missing(ns)) {
        let mut status = failure(404, format!("namespaces {ns:?} not found"));
        status["details"] = json!({"name": ns, "kind": "namespaces"});
        return Err(Reply::Json(404, status));
    }
    if let Some(ns) = t.ns.as_deref().filter(|ns| st.namespace_terminating(ns)) {
        let message = format!(
            "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            qualified(t.res)
        );
        return Err(object_error(403, "Forbidden", t.res, &name, message));
    }
    if t.res.status {
        as_map(&mut obj).remove("status");
    }
    st.fill_meta(t.res, &mut obj, None, &ns, &name, false);
    Ok(Reply::Json(201, t.present(&st.write(t.res, ns, name, obj))))
}

/// Stores what an update leaves: through `/status` only `status` changes; through the main
/// resource, `status` stays as stored for kinds with a status subresource.
fn store_update(st: &mut State, t: &Target, name: &str, existing: &Value, mut new: Value) -> Reply {
    if t.status {
        let status = new.get("status").cloned().unwrap_or(Value::Null);
        new = existing.clone();
        as_map(&mut new).insert("status".into(), status);
    } else if t.res.status {
        let map = as_map(&mut new);
        match existing.get("status") {
            Some(s) => map.insert("status".into(), s.clone()),
            None => map.remove("status"),
        };
    }
    let ns = t.ns.clone().unwrap_or_default();
    st.fill_meta(t.res, &mut new, Some(existing), &ns, name, false);
    Reply::Json(200, t.present(&st.write(t.res, ns, name.to_owned(), new)))
}

fn create(st: &mut State, t: &Target, body: Option<Value>) -> Result<Reply, Reply> {
    let (obj, name, ns) = object_body(t, body, None)?;
    if st.objects.contains_key(&t.key(&name)) {
        let message = format!("{} {name:?} already exists", qualified(t.res));
        return Err(object_error(409, "AlreadyExists", t.res, &name, message));
    }
    if meta_str(&obj, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
        return Err(error(
            500,
            "resourceVersion should not be set on objects to be created",
        ));
    }
    store_new(st, t, obj, name, ns)
}

fn replace(st: &mut State, t: &Target, name: &str, body: Option<Value>) -> Result<Reply, Reply> {
    let (obj, name, _) = object_body(t, body, Some(name))?;
    let existing = st
        .objects
        .get(&t.key(&name))
        .cloned()
        .ok_or_else(|| not_found(t.res, &name))?;
    // Optimistic concurrency: a stale resourceVersion conflicts, none is unconditional.
    if meta_str(&obj, "resourceVersion")
        .is_some_and(|rv| !rv.is_empty() && Some(rv) != meta_str(&existing, "resourceVersion"))
    {
        return Err(conflict(t.res, &name));
    }
    Ok(store_update(st, t, &name, &existing, obj))
}

fn patch(
    st: &mut State,
    t: &Target,
    name: &str,
    query: &[(String, String)],
    content_type: &str,
    body: Option<Value>,
) -> Result<Reply, Reply> {
    let apply = match content_type {
        "application/apply-patch+yaml" => true,
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => false,
        other => {
            return Err(error(
                415,
                format!("the fake accepts apply and merge patches, not {other:?}"),
            ));
        }
    };
    if apply && param(query, "fieldManager").is_none_or(str::is_empty) {
        return Err(error(
            422,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let existing = st.objects.get(&t.key(name)).cloned();
    let patch_rv = body.as_ref().and_then(|b| meta_str(b, "resourceVersion"));
    if let (Some(existing), Some(rv)) = (&existing, patch_rv)
        && Some(rv) != meta_str(existing, "resourceVersion")
    {
        return Err(conflict(t.res, name));
    }
    if !apply {
        let existing = existing.ok_or_else(|| not_found(t.res, name))?;
        let (mut patched, patch) = (existing.clone(), body.filter(Value::is_object));
        merge_patch(
            &mut patched,
            &patch.ok_or_else(|| error(400, "the patch must be a JSON object"))?,
        );
        let (patched, _, _) = object_body(t, Some(patched), Some(name))?;
        return Ok(store_update(st, t, name, &existing, patched));
    }
    // Server-side apply: the body must state its apiVersion and kind.
    let (patch, name, ns) = object_body(t, body.clone(), Some(name))?;
    let gv = group_version(t.res.group, &t.version);
    let (av, kind) = body.as_ref().map_or((None, None), |b| {
        (b["apiVersion"].as_str(), b["kind"].as_str())
    });
    if (av, kind) != (Some(gv.as_str()), Some(t.res.kind)) {
        let (av, kind) = (av.unwrap_or_default(), kind.unwrap_or_default());
        return Err(error(
            400,
            format!(
                "invalid object type: {av}, Kind={kind} (expected {gv}, Kind={})",
                t.res.kind
            ),
        ));
    }
    let Some(existing) = existing else {
        return if t.status {
            Err(not_found(t.res, &name))
        } else {
            store_new(st, t, patch, name, ns)
        };
    };
    let mut new = existing.clone();
    if t.status {
        // On /status only the patch's status matters; without one nothing changes.
        if let Some(status) = patch.get("status") {
            as_map(&mut new).insert("status".into(), status.clone());
        }
        return Ok(store_update(st, t, &name, &existing, new));
    }
    // Main resource: labels and annotations merge key-wise, other top-level fields replace,
    // status is ignored.
    for field in ["labels", "annotations"] {
        if let Some(Value::Object(entries)) = patch["metadata"].get(field) {
            as_map(meta_mut(&mut new).entry(field).or_insert(Value::Null)).extend(entries.clone());
        }
    }
    let fields = patch.as_object().into_iter().flatten();
    let fields =
        fields.filter(|(k, _)| !["metadata", "status", "apiVersion", "kind"].contains(&k.as_str()));
    as_map(&mut new).extend(fields.map(|(k, v)| (k.clone(), v.clone())));
    Ok(store_update(st, t, &name, &existing, new))
}

fn delete(st: &mut State, t: &Target, name: &str) -> Result<Reply, Reply> {
    let ns = t.ns.clone().unwrap_or_default();
    let removed = st
        .remove(t.res, &ns, name)
        .ok_or_else(|| not_found(t.res, name))?;
    if t.res.crd {
        // Custom resources answer with the deleted object, built-ins with a Status.
        return Ok(Reply::Json(200, t.present(&removed)));
    }
    let (group, plural, uid) = (t.res.group, t.res.plural, &removed["metadata"]["uid"]);
    let details = json!({"name": name, "group": group, "kind": plural, "uid": uid});
    Ok(Reply::Json(
        200,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use kube::api::{
        Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
        WatchParams,
    };
    use kube::core::{ApiResource, GroupVersionKind};
    use kube::runtime::watcher::{self, Event};

    fn client(s: &FakeApiServer) -> kube::Client {
        kube::Client::try_from(kube::Config::new(s.url().parse().unwrap())).unwrap()
    }

    fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    fn services() -> ApiResource {
        ar("", "v1", "Service", "services")
    }

    fn exports(version: &str) -> ApiResource {
        ar(MCS, version, "ServiceExport", "serviceexports")
    }

    fn svc(ns: &str, name: &str, app: &str) -> Value {
        let metadata = json!({"namespace": ns, "name": name, "labels": {"app": app}});
        json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": {"ports": [{"port": 80}]}})
    }

    fn code<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> u16 {
        match r {
            Err(kube::Error::Api(s)) => s.code,
            other => panic!("not an API error: {other:?}"),
        }
    }

    type Watcher =
        futures::stream::BoxStream<'static, Result<Event<DynamicObject>, watcher::Error>>;

    /// The next watcher event as text ("InitApply(a)", "Err", ...), within 5 s.
    async fn next(w: &mut Watcher) -> String {
        match tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("watcher stalled")
        {
            Some(Ok(e)) => e.to_string(),
            Some(Err(_)) => "Err".into(),
            None => "End".into(),
        }
    }

    /// Events up to the next InitDone (or, with `until`, that event), errors skipped.
    async fn events(w: &mut Watcher, until: &str) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        while seen.last().is_none_or(|e| e != until) {
            seen.extend(Some(next(w).await).filter(|e| e != "Err"));
        }
        seen
    }

    /// One raw HTTP exchange: (status code, body).
    async fn raw(s: &FakeApiServer, request: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(s.inner.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        (
            head.split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            body.to_owned(),
        )
    }

    async fn bounded(test: impl Future<Output = ()>) {
        tokio::time::timeout(Duration::from_secs(20), test)
            .await
            .expect("test timed out");
    }

    #[tokio::test]
    async fn list_get_selectors_and_pagination() {
        bounded(async {
            let s = FakeApiServer::start().await.unwrap();
            s.put(svc("other", "c", "web"));
            s.put(svc("default", "b", "db"));
            let a = s.put(svc("default", "a", "web"));
            assert_eq!(a["metadata"]["resourceVersion"], "4");
            assert!(
                a["metadata"]["uid"].is_string() && a["metadata"]["creationTimestamp"].is_string()
            );
            let all: Api<DynamicObject> = Api::all_with(client(&s), &services());
            let list = all.list(&ListParams::default()).await.unwrap();
            let names: Vec<_> = list
                .items
                .iter()
                .map(|o| o.metadata.name.clone().unwrap())
                .collect();
            assert_eq!(
                (names, list.metadata.resource_version),
                (
                    vec!["a", "b", "c"].into_iter().map(String::from).collect(),
                    Some("4".into())
                )
            );
            assert_eq!(list.items[0].types.as_ref().unwrap().kind, "Service");
            assert_eq!(
                all.list(&ListParams::default().labels("app=web,!missing"))
                    .await
                    .unwrap()
                    .items
                    .len(),
                2
            );
            assert_eq!(
                all.list(
                    &ListParams::default()
                        .labels("app!=web")
                        .fields("metadata.name=b")
                )
                .await
                .unwrap()
                .items
                .len(),
                1
            );
            assert_eq!(
                all.list_metadata(&ListParams::default().labels("app==db"))
                    .await
                    .unwrap()
                    .items
                    .len(),
                1
            );

            let (mut pages, mut lp) = (Vec::new(), ListParams::default().limit(1));
            loop {
                let page = all.list(&lp).await.unwrap();
                pages.push((
                    page.items[0].metadata.name.clone().unwrap(),
                    page.metadata.remaining_item_count,
                ));
                match page.metadata.continue_ {
                    Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                    _ => break,
                }
            }
            assert_eq!(
                pages,
                [
                    ("a".into(), Some(2)),
                    ("b".into(), Some(1)),
                    ("c".into(), None)
                ]
            );

            let ns: Api<DynamicObject> = Api::namespaced_with(client(&s), "default", &services());
            assert_eq!(
                ns.list(&ListParams::default()).await.unwrap().items.len(),
                2
            );
            assert_eq!(
                ns.get("a").await.unwrap().metadata.uid.as_deref(),
                a["metadata"]["uid"].as_str()
            );
            assert_eq!(code(ns.get("zzz").await), 404);
            assert!(ns.get_opt("zzz").await.unwrap().is_none());
            let (status, body) = raw(
                &s,
                "GET /api/v1/namespaces/default/services/zzz HTTP/1.1\r\n\r\n",
            )
            .await;
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                (status, &body["reason"], &body["message"]),
                (
                    404,
                    &json!("NotFound"),
                    &json!("services \"zzz\" not found")
                )
            );
        })
        .await;
    }

    #[tokio::test]
    async fn watcher_follows_resumes_and_relists() {
        bounded(async {
            let s = FakeApiServer::start().await.unwrap();
            s.put(svc("default", "a", "web"));
            s.put(svc("default", "b", "web"));
            let api: Api<DynamicObject> = Api::all_with(client(&s), &services());
            let mut w: Watcher = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
            assert_eq!(
                events(&mut w, "InitDone").await,
                ["Init", "InitApply(a)", "InitApply(b)", "InitDone"]
            );
            s.put(svc("default", "c", "web"));
            assert_eq!(next(&mut w).await, "Apply(c)");
            s.bookmark();
            s.delete("v1", "Service", Some("default"), "c");
            assert_eq!(next(&mut w).await, "Delete(c)");

            // A dropped watch resumes from its resourceVersion and gets what it missed.
            s.drop_watches();
            s.put(svc("default", "d", "web"));
            assert_eq!(events(&mut w, "Apply(d)").await, ["Apply(d)"]);

            // After compaction the resumed watch gets 410 and the watcher lists again: b,
            // deleted while it was disconnected, is gone.
            s.drop_watches();
            s.delete("v1", "Service", Some("default"), "b");
            s.compact();
            assert_eq!(
                events(&mut w, "InitDone").await,
                ["Init", "InitApply(a)", "InitApply(d)", "InitDone"]
            );
            let requests = s.requests();
            let lists: Vec<_> = requests
                .iter()
                .filter(|r| r.param("watch").is_none())
                .collect();
            assert_eq!((lists.len(), lists[0].param("limit")), (2, Some("500")));
            let watch = requests
                .iter()
                .find(|r| r.param("watch").is_some())
                .unwrap();
            assert_eq!(
                (
                    watch.param("allowWatchBookmarks"),
                    watch.param("timeoutSeconds")
                ),
                (Some("true"), Some("290"))
            );

            // A streaming list (sendInitialEvents) ends its initial events with a bookmark.
            let mut w: Watcher =
                watcher::watcher(api, watcher::Config::default().streaming_lists()).boxed();
            assert_eq!(
                events(&mut w, "InitDone").await,
                ["Init", "InitApply(a)", "InitApply(d)", "InitDone"]
            );
            s.put(svc("default", "e", "web"));
            assert_eq!(next(&mut w).await, "Apply(e)");
        })
        .await;
    }

    #[tokio::test]
    async fn raw_watch_selector_bookmark_timeout() {
        bounded(async {
            let s = FakeApiServer::start().await.unwrap();
            s.put(svc("default", "a", "web"));
            let api: Api<DynamicObject> = Api::namespaced_with(client(&s), "default", &services());
            let mut stream = api.watch(&WatchParams::default().labels("app=web").timeout(1), "0").await.unwrap().boxed();
            assert!(matches!(stream.next().await, Some(Ok(WatchEvent::Added(o))) if o.metadata.name.as_deref() == Some("a")));
            while s.open_watches() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            s.put(svc("default", "x", "db")); // not selected
            s.put(svc("default", "a", "db")); // stops matching: still sent
            s.bookmark();
            assert!(matches!(stream.next().await, Some(Ok(WatchEvent::Modified(_)))));
            assert!(matches!(stream.next().await, Some(Ok(WatchEvent::Bookmark(b))) if b.metadata.resource_version == "4"));
            assert!(stream.next().await.is_none(), "timeoutSeconds ends the stream");
        })
        .await;
    }

    #[tokio::test]
    async fn server_side_apply_and_status() {
        bounded(async {
            let s = FakeApiServer::start().await.unwrap();
            s.serve_group(MCS, &["v1alpha1"]);
            s.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}));
            let api: Api<DynamicObject> = Api::namespaced_with(client(&s), "default", &exports("v1alpha1"));
            let pp = PatchParams::apply("fleetdns").force();
            let with = |extra: Value| {
                let mut v = json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport", "metadata": {"name": "web"}});
                merge_patch(&mut v, &extra);
                v
            };
            let body = with(json!({"metadata": {"name": "web", "labels": {"a": "1"}}, "status": {"ignored": true}}));
            let first = api.patch("web", &pp, &Patch::Apply(&body)).await.unwrap();
            let second = api.patch("web", &pp, &Patch::Apply(&body)).await.unwrap();
            assert_eq!(first.metadata.resource_version, second.metadata.resource_version, "a no-op apply");
            assert_eq!((first.metadata.generation, first.data.get("status")), (Some(1), None));
            let status = with(json!({"status": {"conditions": [{"type": "Valid", "status": "True"}]}}));
            let patched = api.patch_status("web", &pp, &Patch::Apply(&status)).await.unwrap();
            assert_ne!(patched.metadata.resource_version, first.metadata.resource_version);
            assert_eq!((&patched.data["status"]["conditions"][0]["type"], patched.metadata.generation), (&json!("Valid"), Some(1)));
            let relabeled = api.patch("web", &pp, &Patch::Apply(with(json!({"metadata": {"labels": {"b": "2"}}})))).await.unwrap();
            assert_eq!(relabeled.metadata.labels.unwrap().len(), 2);
            assert_eq!(relabeled.data["status"]["conditions"][0]["status"], "True", "status kept");
            assert_eq!(s.get("ServiceExport", Some("default"), "web").unwrap()["status"]["conditions"][0]["type"], "Valid");

            let req = s.requests().into_iter().find(|r| r.method == "PATCH").unwrap();
            assert_eq!(req.path, "/apis/multicluster.x-k8s.io/v1alpha1/namespaces/default/serviceexports/web");
            assert_eq!((req.param("fieldManager"), req.param("force")), (Some("fleetdns"), Some("true")));
            assert_eq!((req.content_type.as_deref(), req.body), (Some("application/apply-patch+yaml"), Some(body.clone())));

            assert_eq!(code(api.patch("web", &PatchParams::default(), &Patch::Apply(&body)).await), 422, "no fieldManager");
            let elsewhere: Api<DynamicObject> = Api::namespaced_with(client(&s), "nope", &exports("v1alpha1"));
            assert_eq!(code(elsewhere.patch("web", &pp, &Patch::Apply(&body)).await), 404, "missing namespace");
            let mut missing = status.clone();
            missing["metadata"]["name"] = "none".into();
            assert_eq!(code(api.patch_status("none", &pp, &Patch::Apply(&missing)).await), 404);
            let unlabel = Patch::Merge(json!({"metadata": {"labels": {"a": null}}}));
            assert_eq!(api.patch("web", &PatchParams::default(), &unlabel).await.unwrap().metadata.labels.unwrap().len(), 1);
            assert!(api.delete("web", &DeleteParams::default()).await.unwrap().is_left(), "CRs return the object");
        })
        .await;
    }

    #[tokio::test]
    async fn create_replace_delete_and_bad_requests() {
        bounded(async {
            let s = FakeApiServer::start().await.unwrap();
            let api: Api<DynamicObject> = Api::namespaced_with(client(&s), "default", &services());
            let obj: DynamicObject = serde_json::from_value(svc("default", "a", "web")).unwrap();
            let created = api.create(&PostParams::default(), &obj).await.unwrap();
            assert_eq!(code(api.create(&PostParams::default(), &obj).await), 409);
            let mut stale = created.clone();
            stale.metadata.resource_version = Some("1".into());
            assert_eq!(
                code(api.replace("a", &PostParams::default(), &stale).await),
                409
            );
            let mut fresh = created.clone();
            fresh.data["spec"]["ports"][0]["port"] = 81.into();
            assert_eq!(
                api.replace("a", &PostParams::default(), &fresh)
                    .await
                    .unwrap()
                    .data["spec"]["ports"][0]["port"],
                81
            );
            assert!(
                api.delete("a", &DeleteParams::default())
                    .await
                    .unwrap()
                    .is_right(),
                "built-ins return a Status"
            );
            assert_eq!(code(api.delete("a", &DeleteParams::default()).await), 404);

            let post = "POST /api/v1/namespaces/default/services HTTP/1.1\r\n";
            assert_eq!(
                raw(
                    &s,
                    &format!("{post}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n")
                )
                .await
                .0,
                411
            );
            assert_eq!(
                raw(&s, &format!("{post}Content-Length: 3\r\n\r\n{{x}}"))
                    .await
                    .0,
                400
            );
            assert_eq!(raw(&s, "garbage\r\n\r\n").await.0, 400);
            assert_eq!(
                raw(&s, "GET /apis/nothing/v1/things HTTP/1.1\r\n\r\n")
                    .await
                    .0,
                404
            );
            assert_eq!(
                raw(&s, "DELETE /api/v1/services HTTP/1.1\r\n\r\n").await.0,
                405
            );
        })
        .await;
    }

    #[tokio::test]
    async fn served_versions_and_discovery() {
        bounded(async {
            let s = FakeApiServer::start().await.unwrap();
            let c = client(&s);
            s.serve_group(MCS, &["v1alpha1"]);
            assert_eq!(code(Api::<DynamicObject>::all_with(c.clone(), &exports("v1beta1")).list(&ListParams::default()).await), 404);
            let (status, body) = raw(&s, "GET /apis/multicluster.x-k8s.io HTTP/1.1\r\n\r\n").await;
            let group: Value = serde_json::from_str(&body).unwrap();
            assert_eq!((status, &group["versions"][0]["version"], &group["preferredVersion"]["version"]), (200, &json!("v1alpha1"), &json!("v1alpha1")));
            let (found, _) = kube::discovery::group(&c, MCS).await.unwrap().recommended_kind("ServiceExport").unwrap();
            assert_eq!((found.version.as_str(), found.plural.as_str()), ("v1alpha1", "serviceexports"));
            assert!(c.list_api_groups().await.unwrap().groups.iter().any(|g| g.name == "discovery.k8s.io"));
            assert!(kube::discovery::group(&c, "about.k8s.io").await.is_err(), "not served");

            let export = json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport", "metadata": {"name": "web"}});
            s.put(export);
            s.serve_group(MCS, &["v1beta1", "v1alpha1"]);
            let seen = Api::<DynamicObject>::namespaced_with(c, "default", &exports("v1beta1")).get("web").await.unwrap();
            assert_eq!(seen.types.unwrap().api_version, "multicluster.x-k8s.io/v1beta1");
        })
        .await;
    }

    #[tokio::test]
    async fn kubeconfig_offline_and_fail_next() {
        bounded(async {
            let s = FakeApiServer::start().await.unwrap();
            let path =
                std::env::temp_dir().join(format!("fleetdns-fake-{}.yaml", std::process::id()));
            s.write_kubeconfig(&path, "east").unwrap();
            let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
            let _ = std::fs::remove_file(&path);
            let options = kube::config::KubeConfigOptions {
                context: Some("east".into()),
                ..Default::default()
            };
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .unwrap();
            let api: Api<DynamicObject> =
                Api::all_with(kube::Client::try_from(config).unwrap(), &services());
            let lp = ListParams::default();
            api.list(&lp).await.unwrap();

            s.set_offline(true);
            let offline = tokio::time::timeout(Duration::from_secs(5), api.list(&lp)).await;
            assert!(
                offline
                    .expect("an offline server must not hang the client")
                    .is_err()
            );
            s.set_offline(false);
            api.list(&lp).await.unwrap();

            s.fail_next("GET", "/services", 500);
            assert_eq!(code(api.list(&lp).await), 500);
            api.list(&lp).await.unwrap();
            s.clear_requests();
            s.fail_next("get", "/services", 403);
            assert_eq!(code(api.list(&lp).await), 403);
            assert_eq!(s.requests().len(), 1);
            s.stop().await;
        })
        .await;
    }
}
