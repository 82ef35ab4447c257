//! A small fake Kubernetes API server for tests: plain HTTP/1.1 on loopback, one request per
//! connection (`Connection: close`), JSON only.
//!
//! It serves the kinds fleetdns uses (Services, Namespaces, EndpointSlices, ServiceExports,
//! ServiceImports, ClusterProperties) with the semantics kube-rs relies on: list with
//! selectors and `limit`/`continue`, watch from a resourceVersion with replay, 410 Gone after
//! [`FakeApiServer::compact`], bookmarks, streaming lists, server-side apply, `/status`,
//! optimistic concurrency, and discovery. Objects are stored once per group/resource and are
//! seen through every served version with `apiVersion` rewritten, like a CRD with several
//! versions and no conversion webhook.
//!
//! Not implemented (the real API server does them): field ownership and apply conflicts
//! (`managedFields`), YAML bodies, JSON patch, deletecollection, finalizers and graceful
//! deletion, cascading namespace deletion, validation beyond names.

use std::collections::BTreeMap;
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
const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Events kept for watch replay before the oldest half is compacted away automatically.
const MAX_HISTORY: usize = 10_000;

/// One resource the fake serves.
#[derive(Debug, PartialEq, Eq)]
struct Res {
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource leave `status` alone.
    status: bool,
    /// A CustomResourceDefinition: `metadata.generation` is maintained, DELETE returns the object.
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
];

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// `services` or `serviceexports.multicluster.x-k8s.io`, as in the real API's messages.
fn qualified(res: &Res) -> String {
    if res.group.is_empty() {
        res.plural.to_owned()
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
    /// The body parsed as JSON, if any.
    pub body: Option<Value>,
}

impl Recorded {
    /// The last value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
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
    /// Close every open watch without a clean end (a dropped connection).
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
        let (tx, _) = broadcast::channel(4096);
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
            tx,
        };
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            open_watches: AtomicUsize::new(0),
            addr: listener.local_addr()?,
        });
        let task = tokio::spawn(accept_loop(listener, inner.clone()));
        Ok(FakeApiServer { inner, task })
    }

    /// Stops the server and waits for its accept loop to end; open connections are closed.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// Writes a kubeconfig whose only context, `context`, points at this server (token "fake").
    pub fn write_kubeconfig(&self, path: &std::path::Path, context: &str) -> std::io::Result<()> {
        let q = |s: &str| Value::from(s).to_string(); // a JSON string is a YAML string
        let (ctx, url) = (q(context), q(&self.url()));
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {ctx}\n  cluster:\n    server: {url}\n\
             users:\n- name: {ctx}\n  user:\n    token: fake\ncontexts:\n- name: {ctx}\n  context:\n    \
             cluster: {ctx}\n    user: {ctx}\ncurrent-context: {ctx}\n"
        );
        std::fs::write(path, yaml)
    }

    /// Serves exactly `versions` of a CRD group (first = preferred); empty stops serving it.
    /// Core v1 and discovery.k8s.io/v1 are always served.
    pub fn serve_group(&self, group: &str, versions: &[&str]) {
        let versions = versions.iter().map(|v| v.to_string()).collect();
        self.inner.lock().served.insert(group.to_owned(), versions);
    }

    /// Creates or replaces an object as an admin would (no subresource or namespace checks;
    /// `status` is taken as given). A fresh resourceVersion is always assigned; `uid`,
    /// `creationTimestamp` and `generation` are kept if given, else carried over or created.
    /// A namespaced object without a namespace goes to "default". Replacing an object with an
    /// identical one changes nothing and emits nothing, like the real API.
    /// Panics on a kind the fake does not know or a missing name (a bug in the test).
    pub fn put(&self, mut object: Value) -> Value {
        let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let res = RESOURCES
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .unwrap_or_else(|| panic!("FakeApiServer::put: unknown kind {api_version} {kind}"));
        let name = meta_str(&object, "name")
            .unwrap_or_else(|| panic!("FakeApiServer::put: no metadata.name"))
            .to_owned();
        let ns = if res.namespaced {
            meta_str(&object, "namespace")
                .unwrap_or("default")
                .to_owned()
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

    /// Deletes an object (emitting DELETED); false if there was none.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let Some(res) = RESOURCES
            .iter()
            .find(|r| r.group == group && r.kind == kind)
        else {
            return false;
        };
        let ns = if res.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        self.inner.lock().remove(res, ns, name).is_some()
    }

    /// The stored object (as last written, `apiVersion` as given then).
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let res = RESOURCES.iter().find(|r| r.kind == kind)?;
        let ns = if res.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        self.inner
            .lock()
            .objects
            .get(&(res.group, res.plural, ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every stored object of a kind, by namespace and name.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let st = self.inner.lock();
        st.objects
            .iter()
            .filter(|(k, _)| {
                RESOURCES
                    .iter()
                    .any(|r| r.kind == kind && r.group == k.0 && r.plural == k.1)
            })
            .map(|(_, v)| v.clone())
            .collect()
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

    /// Forgets the event history: a watch from an older resourceVersion, or a list continued
    /// from an older page, gets 410 Gone.
    pub fn compact(&self) {
        let mut st = self.inner.lock();
        st.history.clear();
        st.compacted = st.rv;
    }

    /// Closes every open watch connection abruptly (mid-stream, no final chunk).
    pub fn drop_watches(&self) {
        let _ = self.inner.lock().tx.send(Signal::DropAll);
    }

    /// How many watch streams are open now.
    pub fn open_watches(&self) -> usize {
        self.inner.open_watches.load(Ordering::SeqCst)
    }

    /// While offline every new connection is closed at once, unanswered, and open watches are
    /// dropped: an unreachable API server.
    pub fn set_offline(&self, offline: bool) {
        let mut st = self.inner.lock();
        st.offline = offline;
        if offline {
            let _ = st.tx.send(Signal::DropAll);
        }
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch that allowed bookmarks.
    pub fn bookmark(&self) {
        let st = self.inner.lock();
        let _ = st.tx.send(Signal::Bookmark(st.rv));
    }

    /// The next request with this method whose path contains `path_contains` fails with a
    /// Status of this code. NB kube's client retries 429, 503 and 504 by itself.
    pub fn fail_next(&self, method: &str, path_contains: &str, code: u16) {
        self.inner
            .lock()
            .failures
            .push((method.to_owned(), path_contains.to_owned(), code));
    }
}

// ---------------------------------------------------------------------------------------
// Store

impl State {
    /// Sets the system fields of an object about to be written. `keep_given` (admin `put`)
    /// keeps uid/creationTimestamp/generation from the object; the API overwrites them.
    fn fill_meta(
        &mut self,
        res: &Res,
        obj: &mut Value,
        old: Option<&Value>,
        ns: &str,
        name: &str,
        keep_given: bool,
    ) {
        let changed = old.is_none_or(|o| {
            strip(o, &["metadata", "status", "apiVersion", "kind"])
                != strip(obj, &["metadata", "status", "apiVersion", "kind"])
        });
        let meta = meta_mut(obj);
        meta.insert("name".into(), name.into());
        if res.namespaced {
            meta.insert("namespace".into(), ns.into());
        } else {
            meta.remove("namespace");
        }
        meta.remove("resourceVersion");
        let old_meta = |f: &str| old.and_then(|o| o["metadata"].get(f)).cloned();
        for field in ["uid", "creationTimestamp"] {
            if keep_given && meta.get(field).is_some_and(|v| !v.is_null()) {
                continue;
            }
            let value = old_meta(field).unwrap_or_else(|| {
                self.uids += 1;
                if field == "uid" {
                    format!("00000000-0000-4000-8000-{:012x}", self.uids).into()
                } else {
                    now_rfc3339().into()
                }
            });
            meta.insert(field.into(), value);
        }
        if res.crd && !(keep_given && meta.contains_key("generation")) {
            // CRDs count changes to everything but metadata and status.
            let prev = old_meta("generation").and_then(|g| g.as_u64()).unwrap_or(0);
            meta.insert(
                "generation".into(),
                (prev + u64::from(changed)).max(1).into(),
            );
        }
    }

    /// Stores an object, assigning the next resourceVersion and emitting ADDED or MODIFIED,
    /// unless it is identical to the stored one (a no-op write does not change anything).
    fn write(&mut self, res: &'static Res, ns: String, name: String, mut obj: Value) -> Value {
        let key = (res.group, res.plural, ns, name);
        let old = self.objects.get(&key).cloned();
        if let Some(old) = &old
            && strip_rv(old) == strip_rv(&obj)
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

    /// Removes an object; the DELETED event (and the returned object) carry the deletion's RV.
    fn remove(&mut self, res: &'static Res, ns: &str, name: &str) -> Option<Value> {
        let mut obj =
            self.objects
                .remove(&(res.group, res.plural, ns.to_owned(), name.to_owned()))?;
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
        if self.history.len() > MAX_HISTORY {
            let dropped: Vec<_> = self.history.drain(..MAX_HISTORY / 2).collect();
            self.compacted = dropped.last().map_or(self.compacted, |c| c.rv);
        }
        let _ = self.tx.send(Signal::Change(change));
    }

    fn served_versions(&self, group: &str) -> Vec<String> {
        match group {
            "" | "discovery.k8s.io" => vec!["v1".into()],
            g => self.served.get(g).cloned().unwrap_or_default(),
        }
    }

    /// The real API refuses to create in a missing namespace; the fake only checks once the
    /// test has put any Namespace at all.
    fn namespace_missing(&self, ns: &str) -> bool {
        let mut namespaces = self
            .objects
            .keys()
            .filter(|k| k.0.is_empty() && k.1 == "namespaces")
            .peekable();
        namespaces.peek().is_some() && !namespaces.any(|k| k.3 == ns)
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

fn strip(obj: &Value, keys: &[&str]) -> Value {
    let mut v = obj.clone();
    keys.iter().for_each(|k| drop(as_map(&mut v).remove(*k)));
    v
}

fn strip_rv(obj: &Value) -> Value {
    let mut v = obj.clone();
    meta_mut(&mut v).remove("resourceVersion");
    v
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
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
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------
// Selectors

enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Parses `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma-separated.
fn parse_labels(s: &str) -> Result<Vec<LabelReq>, String> {
    let (mut terms, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    let set = |v: &str| -> Result<Vec<String>, String> {
        let v = v
            .trim()
            .strip_prefix('(')
            .and_then(|v| v.strip_suffix(')'))
            .ok_or(format!("invalid set {v:?}"))?;
        Ok(v.split(',').map(|x| x.trim().to_owned()).collect())
    };
    let valid = |k: &str| !k.is_empty() && !k.contains([' ', '(', ')', '=', '!', ',']);
    let mut reqs = Vec::new();
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        let req = if let Some(k) = term.strip_prefix('!') {
            LabelReq::NotExists(k.trim().to_owned())
        } else if let Some((k, v)) = term.split_once(" notin ") {
            LabelReq::NotIn(k.trim().to_owned(), set(v)?)
        } else if let Some((k, v)) = term.split_once(" in ") {
            LabelReq::In(k.trim().to_owned(), set(v)?)
        } else if let Some((k, v)) = term.split_once("!=") {
            LabelReq::Ne(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            LabelReq::Eq(k.trim().to_owned(), v.trim().to_owned())
        } else {
            LabelReq::Exists(term.to_owned())
        };
        let (LabelReq::Eq(k, _)
        | LabelReq::Ne(k, _)
        | LabelReq::In(k, _)
        | LabelReq::NotIn(k, _)
        | LabelReq::Exists(k)
        | LabelReq::NotExists(k)) = &req;
        if !valid(k) {
            return Err(format!("unable to parse requirement: {term:?}"));
        }
        reqs.push(req);
    }
    Ok(reqs)
}

/// What a list or watch selects: namespace, labels, and `metadata.name`/`metadata.namespace`
/// fields (other field selectors are accepted and ignored).
struct Filter {
    ns: Option<String>,
    labels: Vec<LabelReq>,
    fields: Vec<(String, bool, String)>,
}

impl Filter {
    fn new(ns: Option<String>, query: &[(String, String)]) -> Result<Filter, Reply> {
        let labels =
            parse_labels(param(query, "labelSelector").unwrap_or("")).map_err(|m| error(400, m))?;
        let mut fields = Vec::new();
        for term in param(query, "fieldSelector")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, true, v)
            } else {
                return Err(error(400, format!("invalid selector: {term:?}")));
            };
            fields.push((k.trim().to_owned(), eq, v.trim().to_owned()));
        }
        Ok(Filter { ns, labels, fields })
    }

    fn matches(&self, obj: &Value) -> bool {
        if self
            .ns
            .as_deref()
            .is_some_and(|ns| meta_str(obj, "namespace") != Some(ns))
        {
            return false;
        }
        let fields_ok = self.fields.iter().all(|(k, eq, v)| match k.as_str() {
            "metadata.name" | "metadata.namespace" => {
                (meta_str(obj, &k[9..]).unwrap_or("") == v) == *eq
            }
            _ => true,
        });
        let label = |k: &str| obj["metadata"]["labels"].get(k).and_then(Value::as_str);
        fields_ok
            && self.labels.iter().all(|r| match r {
                LabelReq::Eq(k, v) => label(k) == Some(v),
                LabelReq::Ne(k, v) => label(k) != Some(v),
                LabelReq::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
                LabelReq::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
                LabelReq::Exists(k) => label(k).is_some(),
                LabelReq::NotExists(k) => label(k).is_none(),
            })
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

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

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
fn percent_decode(s: &str) -> String {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::with_capacity(s.len()), 0);
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex_digit),
            b.get(i + 2).copied().and_then(hex_digit),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            (b'+', ..) => out.push(b' '),
            (c, ..) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one request. `Err(Some(..))` is answered with that Status, `Err(None)` just closes.
async fn read_request(stream: &mut TcpStream) -> Result<HttpRequest, Option<(u16, String)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
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
    let malformed = |what: &str| Some((400, format!("malformed HTTP request: {what}")));
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| malformed("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let parts: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(malformed("request line"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(malformed("request line"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or_else(|| malformed("header"))?;
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
        .map_err(|_| malformed("Content-Length"))?;
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
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    Ok(HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        headers,
        body,
    })
}

fn phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

async fn write_response(stream: &mut TcpStream, code: u16, body: &Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        phrase(code),
        body.len()
    );
    if stream
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .is_ok()
    {
        let _ = stream.shutdown().await;
        // Drain what the client may still send so closing does not reset the connection
        // before it has read the answer.
        let mut sink = [0u8; 4096];
        let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }
}

fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    // Dropping the set (when this task is aborted) aborts every connection task.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if inner.lock().offline {
                        drop(stream); // unreachable: closed unanswered
                        continue;
                    }
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
            return write_response(&mut stream, code, &status_body(code, message, json!({}))).await;
        }
        _ => return,
    };
    match handle(&inner, &req) {
        Reply::Json(code, body) => write_response(&mut stream, code, &body).await,
        Reply::Watch(plan) => serve_watch(&inner, stream, *plan).await,
    }
}

// ---------------------------------------------------------------------------------------
// API

enum Reply {
    Json(u16, Value),
    Watch(Box<WatchPlan>),
}

fn status_body(code: u16, message: impl Into<String>, details: Value) -> Value {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    };
    let mut status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code});
    if details.as_object().is_some_and(|d| !d.is_empty()) {
        status["details"] = details;
    }
    status
}

fn error(code: u16, message: impl Into<String>) -> Reply {
    Reply::Json(code, status_body(code, message, json!({})))
}

fn not_found(res: &Res, name: &str) -> Reply {
    let details = json!({"name": name, "group": res.group, "kind": res.plural});
    Reply::Json(
        404,
        status_body(
            404,
            format!("{} {name:?} not found", qualified(res)),
            details,
        ),
    )
}

fn conflict(res: &Res, name: &str) -> Reply {
    let message = format!(
        "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
        qualified(res)
    );
    Reply::Json(
        409,
        status_body(
            409,
            message,
            json!({"name": name, "group": res.group, "kind": res.plural}),
        ),
    )
}

/// What a request addresses, with the version it is seen through.
struct Target {
    res: &'static Res,
    version: String,
    ns: Option<String>,
    name: Option<String>,
    status: bool,
    /// `Accept: ...;as=PartialObjectMetadata[List]` (kube's `list_metadata`/`watch_metadata`).
    meta_only: bool,
}

impl Target {
    fn present(&self, obj: &Value) -> Value {
        if self.meta_only {
            return json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]});
        }
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
}

fn handle(inner: &Inner, req: &HttpRequest) -> Reply {
    let body: Option<Value> = serde_json::from_slice(&req.body).ok();
    let mut st = inner.lock();
    st.requests.push(Recorded {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        content_type: req.header("content-type").map(str::to_owned),
        body: body.clone(),
    });
    let (method, path) = (req.method.as_str(), req.path.as_str());
    if let Some(i) = st
        .failures
        .iter()
        .position(|(m, p, _)| m.eq_ignore_ascii_case(method) && path.contains(p.as_str()))
    {
        let (_, _, code) = st.failures.remove(i);
        return error(code, format!("injected failure for {method} {path}"));
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let not_served = || error(404, "the server could not find the requested resource");
    let discovery = |body: Value| {
        if method == "GET" {
            Reply::Json(200, body)
        } else {
            error(405, format!("{method} is not supported on {path}"))
        }
    };
    let (group, version, rest) = match segs[..] {
        ["version"] => {
            return discovery(
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fleetdns-fake", "gitCommit": "",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
            );
        }
        ["api"] => {
            let cidr =
                json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": inner.addr.to_string()}]);
            return discovery(
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": cidr}),
            );
        }
        ["apis"] => {
            let groups: Vec<Value> = RESOURCES
                .iter()
                .map(|r| r.group)
                .filter(|g| !g.is_empty())
                .fold(Vec::<&str>::new(), |mut gs, g| {
                    if !gs.contains(&g) {
                        gs.push(g);
                    }
                    gs
                })
                .into_iter()
                .filter_map(|g| api_group(g, &st.served_versions(g)))
                .collect();
            return discovery(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            );
        }
        ["apis", group] => {
            return api_group(group, &st.served_versions(group)).map_or_else(not_served, discovery);
        }
        ["api", version, ref rest @ ..] => ("", version, rest),
        ["apis", group, version, ref rest @ ..] => (group, version, rest),
        _ => return not_served(),
    };
    if !st.served_versions(group).iter().any(|v| v == version) {
        return not_served();
    }
    if rest.is_empty() {
        let resources: Vec<Value> = RESOURCES
            .iter()
            .filter(|r| r.group == group)
            .flat_map(|r| {
                let main = json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced, "kind": r.kind, "verbs": VERBS});
                let status = json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]});
                std::iter::once(main).chain(r.status.then_some(status))
            })
            .collect();
        return discovery(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(group, version), "resources": resources}),
        );
    }
    // [namespaces/{ns}/]{plural}[/{name}[/status]]
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..] if *plural != "status" => (
            Some(ns.to_string()),
            std::iter::once(plural)
                .chain(rest)
                .copied()
                .collect::<Vec<_>>(),
        ),
        _ => (None, rest.to_vec()),
    };
    let (plural, name, status) = match rest[..] {
        [plural] => (plural, None, false),
        [plural, name] => (plural, Some(name.to_owned()), false),
        [plural, name, "status"] => (plural, Some(name.to_owned()), true),
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
    let meta_only = req
        .header("accept")
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let t = Target {
        res,
        version: version.to_owned(),
        ns,
        name,
        status,
        meta_only,
    };
    let watch = matches!(param(&req.query, "watch"), Some("1" | "true"));
    let content_type = req
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let needs_ns = res.namespaced && t.ns.is_none();
    let result = match (method, t.name.clone()) {
        ("GET", _) if watch => watch_plan(&st, &t, &req.query),
        ("GET", None) => list(&st, &t, &req.query),
        ("GET", Some(name)) => st
            .objects
            .get(&t.key(&name))
            .map(|o| Reply::Json(200, t.present(o)))
            .ok_or_else(|| not_found(res, &name)),
        ("POST", None) if !needs_ns && !t.status => create(&mut st, &t, body),
        ("PUT", Some(name)) if !needs_ns => replace(&mut st, &t, &name, body),
        ("PATCH", Some(name)) if !needs_ns => {
            patch(&mut st, &t, &name, &req.query, content_type, body)
        }
        ("DELETE", Some(name)) if !needs_ns && !t.status => delete(&mut st, &t, &name, body),
        _ => Err(error(405, format!("{method} is not supported on {path}"))),
    };
    result.unwrap_or_else(|e| e)
}

fn api_group(group: &str, versions: &[String]) -> Option<Value> {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(group, v), "version": v}))
        .collect();
    let preferred = versions.first()?.clone();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": preferred}),
    )
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let bytes: Option<Vec<u8>> = b
        .chunks(2)
        .map(|p| Some(hex_digit(*p.first()?)? << 4 | hex_digit(*p.get(1)?)?))
        .collect();
    String::from_utf8(bytes?).ok()
}

fn list(st: &State, t: &Target, query: &[(String, String)]) -> Result<Reply, Reply> {
    let filter = Filter::new(t.ns.clone(), query)?;
    let limit: usize = param(query, "limit")
        .unwrap_or("0")
        .parse()
        .map_err(|_| error(400, "invalid limit"))?;
    // The continue token is opaque to clients: hex of "{list rv}/{namespace}/{name}" of the
    // last item returned. Later pages report the first page's resourceVersion, like the real
    // API, so a watch from the last page's RV replays whatever changed in between.
    let (list_rv, after) = match param(query, "continue").filter(|c| !c.is_empty()) {
        None => (st.rv, None),
        Some(token) => {
            let decoded = unhex(token).unwrap_or_default();
            let mut parts = decoded.splitn(3, '/');
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
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            (rv, Some((ns.to_owned(), name.to_owned())))
        }
    };
    let matching: Vec<(&Key, &Value)> = st
        .objects
        .iter()
        .filter(|(k, o)| {
            k.0 == t.res.group
                && k.1 == t.res.plural
                && after.as_ref().is_none_or(|(ns, n)| (&k.2, &k.3) > (ns, n))
                && filter.matches(o)
        })
        .collect();
    let take = if limit == 0 {
        matching.len()
    } else {
        limit.min(matching.len())
    };
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if take < matching.len() {
        let last = matching[take - 1].0;
        metadata["continue"] = hex(&format!("{list_rv}/{}/{}", last.2, last.3)).into();
        metadata["remainingItemCount"] = (matching.len() - take).into();
    }
    let items: Vec<Value> = matching[..take].iter().map(|(_, o)| t.present(o)).collect();
    let (kind, api_version) = if t.meta_only {
        (
            "PartialObjectMetadataList".to_owned(),
            "meta.k8s.io/v1".to_owned(),
        )
    } else {
        (
            format!("{}List", t.res.kind),
            group_version(t.res.group, &t.version),
        )
    };
    Ok(Reply::Json(
        200,
        json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items}),
    ))
}

/// Everything a watch stream needs, prepared under the state lock so no event is missed.
struct WatchPlan {
    target: Target,
    filter: Filter,
    /// Events to send first (initial ADDED, replayed history, or a 410 ERROR).
    lines: Vec<String>,
    /// End the stream after `lines` (the 410 case).
    end: bool,
    /// Only events with a greater resourceVersion are sent.
    from: u64,
    bookmarks: bool,
    timeout: Duration,
    rx: broadcast::Receiver<Signal>,
}

fn event_line(etype: &str, object: Value) -> String {
    format!("{}\n", json!({"type": etype, "object": object}))
}

fn bookmark_line(t: &Target, rv: u64, initial_end: bool) -> String {
    let mut object = json!({"kind": t.res.kind, "apiVersion": group_version(t.res.group, &t.version), "metadata": {"resourceVersion": rv.to_string()}});
    if initial_end {
        object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line("BOOKMARK", object)
}

fn change_matches(t: &Target, filter: &Filter, c: &Change) -> bool {
    c.res == t.res
        && (filter.matches(&c.object) || c.old.as_ref().is_some_and(|o| filter.matches(o)))
}

fn watch_plan(st: &State, t: &Target, query: &[(String, String)]) -> Result<Reply, Reply> {
    let mut query = query.to_vec();
    if let Some(name) = &t.name {
        // The deprecated single-object watch is a watch with a name field selector.
        query.push(("fieldSelector".into(), format!("metadata.name={name}")));
    }
    let filter = Filter::new(t.ns.clone(), &query)?;
    let bookmarks = matches!(param(&query, "allowWatchBookmarks"), Some("true" | "1"));
    let timeout = match param(&query, "timeoutSeconds") {
        None => Duration::from_secs(1800), // the real server picks 30-60 minutes
        Some(s) => Duration::from_secs(
            s.parse()
                .map_err(|_| error(400, "invalid timeoutSeconds"))?,
        ),
    };
    let rv = param(&query, "resourceVersion").unwrap_or("");
    let send_initial = matches!(param(&query, "sendInitialEvents"), Some("true" | "1"));
    let (mut lines, mut end, mut from) = (Vec::new(), false, st.rv);
    let current = || {
        st.objects
            .iter()
            .filter(|(k, o)| k.0 == t.res.group && k.1 == t.res.plural && filter.matches(o))
    };
    if send_initial {
        // Streaming list: current objects, then a bookmark marking the end of the initial events.
        if param(&query, "resourceVersionMatch") != Some("NotOlderThan") || !bookmarks {
            return Err(error(
                422,
                "sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true",
            ));
        }
        lines.extend(current().map(|(_, o)| event_line("ADDED", t.present(o))));
        lines.push(bookmark_line(t, st.rv, true));
    } else if rv.is_empty() || rv == "0" {
        // Start "now": synthetic ADDED for everything that exists.
        lines.extend(current().map(|(_, o)| event_line("ADDED", t.present(o))));
    } else {
        let n: u64 = rv
            .parse()
            .map_err(|_| error(400, format!("invalid resource version {rv:?}")))?;
        if n < st.compacted {
            let status = status_body(
                410,
                format!("too old resource version: {n} ({})", st.compacted + 1),
                json!({}),
            );
            lines.push(event_line("ERROR", status));
            end = true;
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
        name: t.name.clone(),
        status: t.status,
        meta_only: t.meta_only,
    };
    let rx = st.tx.subscribe();
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

struct WatchCount<'a>(&'a AtomicUsize);

impl Drop for WatchCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_watch(inner: &Inner, stream: TcpStream, mut plan: WatchPlan) {
    let (mut rd, mut wr) = stream.into_split();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache, private\r\nConnection: close\r\n\r\n";
    let mut out = head.as_bytes().to_vec();
    plan.lines.iter().for_each(|l| out.extend(chunk(l)));
    if plan.end {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if wr.write_all(&out).await.is_err() || plan.end {
        let _ = wr.shutdown().await;
        return;
    }
    inner.open_watches.fetch_add(1, Ordering::SeqCst);
    let _count = WatchCount(&inner.open_watches);
    let deadline = tokio::time::sleep(plan.timeout);
    tokio::pin!(deadline);
    let mut sink = [0u8; 1024];
    loop {
        let line = tokio::select! {
            _ = &mut deadline => {
                // timeoutSeconds elapsed: a clean end of the stream.
                let _ = wr.write_all(b"0\r\n\r\n").await;
                let _ = wr.shutdown().await;
                return;
            }
            read = rd.read(&mut sink) => match read {
                Ok(0) | Err(_) => return, // the client went away
                Ok(_) => continue,
            },
            signal = plan.rx.recv() => match signal {
                Ok(Signal::Change(c)) if c.rv > plan.from && change_matches(&plan.target, &plan.filter, &c) => {
                    event_line(c.etype, plan.target.present(&c.object))
                }
                Ok(Signal::Bookmark(rv)) if plan.bookmarks && rv >= plan.from => bookmark_line(&plan.target, rv, false),
                Ok(Signal::Change(_) | Signal::Bookmark(_)) => continue,
                // Dropped, or too far behind: close abruptly, as a broken connection would.
                Ok(Signal::DropAll) | Err(_) => return,
            },
        };
        if wr.write_all(&chunk(&line)).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writes

/// A JSON object body, with a valid name (defaulting to `url_name`) and namespace.
fn object_body(
    t: &Target,
    body: Option<Value>,
    url_name: Option<&str>,
) -> Result<(Value, String, String), Reply> {
    let Some(mut obj) = body.filter(Value::is_object) else {
        return Err(error(400, "the request body must be a JSON object"));
    };
    if !obj.get("metadata").is_none_or(Value::is_object) {
        return Err(error(400, "metadata must be an object"));
    }
    let name = match (meta_str(&obj, "name"), url_name) {
        (Some(body_name), Some(url_name)) if body_name != url_name => {
            return Err(error(
                400,
                format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
                ),
            ));
        }
        (Some(name), _) | (None, Some(name)) => name.to_owned(),
        (None, None) => match meta_str(&obj, "generateName") {
            Some(prefix) => format!(
                "{prefix}{:05x}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
                    & 0xfffff
            ),
            None => {
                return Err(error(
                    422,
                    format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        t.res.kind
                    ),
                ));
            }
        },
    };
    if name.is_empty()
        || name.len() > 253
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(error(
            422,
            format!(
                "{} {name:?} is invalid: metadata.name: Invalid value",
                t.res.kind
            ),
        ));
    }
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

fn check_namespace(st: &State, t: &Target) -> Result<(), Reply> {
    match &t.ns {
        Some(ns) if st.namespace_missing(ns) => Err(Reply::Json(
            404,
            status_body(
                404,
                format!("namespaces {ns:?} not found"),
                json!({"name": ns, "kind": "namespaces"}),
            ),
        )),
        _ => Ok(()),
    }
}

/// Resets `status` on create through the main resource, as the real registries do.
fn initial_status(res: &Res, obj: &mut Value) {
    let map = as_map(obj);
    if res.status {
        map.remove("status");
    }
    match res.kind {
        "Namespace" => drop(map.insert("status".into(), json!({"phase": "Active"}))),
        "Service" => drop(map.insert("status".into(), json!({"loadBalancer": {}}))),
        _ => {}
    }
}

fn create(st: &mut State, t: &Target, body: Option<Value>) -> Result<Reply, Reply> {
    let (mut obj, name, ns) = object_body(t, body, None)?;
    check_namespace(st, t)?;
    if st.objects.contains_key(&t.key(&name)) {
        let details = json!({"name": name, "group": t.res.group, "kind": t.res.plural});
        let mut status = status_body(
            409,
            format!("{} {name:?} already exists", qualified(t.res)),
            details,
        );
        status["reason"] = "AlreadyExists".into();
        return Err(Reply::Json(409, status));
    }
    if meta_str(&obj, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
        return Err(error(
            500,
            "resourceVersion should not be set on objects to be created",
        ));
    }
    initial_status(t.res, &mut obj);
    st.fill_meta(t.res, &mut obj, None, &ns, &name, false);
    let stored = st.write(t.res, ns, name, obj);
    Ok(Reply::Json(201, t.present(&stored)))
}

/// Builds the object a write leaves behind: through `/status` only `status` changes; through
/// the main resource `status` is kept as stored for kinds with a status subresource.
fn combine(t: &Target, existing: &Value, mut new: Value) -> Value {
    if t.status {
        let mut merged = existing.clone();
        as_map(&mut merged).insert(
            "status".into(),
            new.get("status").cloned().unwrap_or(Value::Null),
        );
        return merged;
    }
    if t.res.status {
        let map = as_map(&mut new);
        match existing.get("status") {
            Some(s) => drop(map.insert("status".into(), s.clone())),
            None => drop(map.remove("status")),
        }
    }
    new
}

fn store_update(st: &mut State, t: &Target, name: &str, existing: &Value, new: Value) -> Reply {
    let mut new = combine(t, existing, new);
    let ns = t.ns.clone().unwrap_or_default();
    st.fill_meta(t.res, &mut new, Some(existing), &ns, name, false);
    Reply::Json(200, t.present(&st.write(t.res, ns, name.to_owned(), new)))
}

fn replace(st: &mut State, t: &Target, name: &str, body: Option<Value>) -> Result<Reply, Reply> {
    let (obj, name, _) = object_body(t, body, Some(name))?;
    let existing = st
        .objects
        .get(&t.key(&name))
        .cloned()
        .ok_or_else(|| not_found(t.res, &name))?;
    // Optimistic concurrency: a stale resourceVersion is a conflict; none is unconditional.
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
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {other:?})"
                ),
            ));
        }
    };
    if apply && param(query, "fieldManager").is_none_or(str::is_empty) {
        return Err(error(
            422,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let Some(patch) = body.filter(Value::is_object) else {
        return Err(error(
            400,
            "the patch must be a JSON object (the fake accepts no YAML)",
        ));
    };
    let existing = st.objects.get(&t.key(name)).cloned();
    if let Some(existing) = &existing
        && meta_str(&patch, "resourceVersion")
            .is_some_and(|rv| Some(rv) != meta_str(existing, "resourceVersion"))
    {
        return Err(conflict(t.res, name));
    }
    if !apply {
        let existing = existing.ok_or_else(|| not_found(t.res, name))?;
        let mut patched = existing.clone();
        merge_patch(&mut patched, &patch);
        let (patched, _, _) = object_body(t, Some(patched), Some(name))?;
        return Ok(store_update(st, t, name, &existing, patched));
    }
    // Server-side apply: the body must name its apiVersion and kind.
    let gv = group_version(t.res.group, &t.version);
    let (av, kind) = (
        patch["apiVersion"].as_str().unwrap_or(""),
        patch["kind"].as_str().unwrap_or(""),
    );
    if av != gv || kind != t.res.kind {
        return Err(error(
            400,
            format!(
                "invalid object type: {av}, Kind={kind} (expected {gv}, Kind={})",
                t.res.kind
            ),
        ));
    }
    let (patch, name, ns) = object_body(t, Some(patch), Some(name))?;
    let Some(existing) = existing else {
        if t.status {
            return Err(not_found(t.res, &name));
        }
        check_namespace(st, t)?;
        let mut obj = patch;
        initial_status(t.res, &mut obj);
        st.fill_meta(t.res, &mut obj, None, &ns, &name, false);
        let stored = st.write(t.res, ns, name, obj);
        return Ok(Reply::Json(201, t.present(&stored)));
    };
    if t.status {
        // Only the patch's status matters on /status; no status in the patch changes nothing.
        let mut new = existing.clone();
        if let Some(status) = patch.get("status") {
            as_map(&mut new).insert("status".into(), status.clone());
        }
        return Ok(store_update(st, t, &name, &existing, new));
    }
    // Main resource: labels and annotations merge key-wise, other top-level fields replace.
    let mut new = existing.clone();
    for field in ["labels", "annotations"] {
        if let Some(Value::Object(entries)) = patch["metadata"].get(field) {
            let target = as_map(meta_mut(&mut new).entry(field).or_insert(Value::Null));
            target.extend(entries.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let map = as_map(&mut new);
    for (k, v) in patch.as_object().into_iter().flatten() {
        if !["metadata", "status", "apiVersion", "kind"].contains(&k.as_str()) {
            map.insert(k.clone(), v.clone());
        }
    }
    Ok(store_update(st, t, &name, &existing, new))
}

fn delete(st: &mut State, t: &Target, name: &str, body: Option<Value>) -> Result<Reply, Reply> {
    let existing = st
        .objects
        .get(&t.key(name))
        .ok_or_else(|| not_found(t.res, name))?;
    // DeleteOptions preconditions.
    let pre = body.as_ref().and_then(|b| b.get("preconditions"));
    for field in ["uid", "resourceVersion"] {
        if let Some(want) = pre.and_then(|p| p.get(field)).and_then(Value::as_str)
            && Some(want) != meta_str(existing, field)
        {
            return Err(conflict(t.res, name));
        }
    }
    let ns = t.ns.clone().unwrap_or_default();
    let removed = st
        .remove(t.res, &ns, name)
        .ok_or_else(|| not_found(t.res, name))?;
    if t.res.crd {
        // Custom resources answer with the deleted object, built-ins with a Status.
        return Ok(Reply::Json(200, t.present(&removed)));
    }
    let details = json!({"name": name, "group": t.res.group, "kind": t.res.plural, "uid": removed["metadata"]["uid"]});
    Ok(Reply::Json(
        200,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{Stream, StreamExt};
    use kube::api::{
        Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
        WatchParams,
    };
    use kube::core::{ApiResource, GroupVersionKind};
    use kube::runtime::watcher::{self, Event};

    const LIMIT: Duration = Duration::from_secs(20);

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
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
            "spec": {"ports": [{"port": 80}]}})
    }

    fn code(e: kube::Error) -> u16 {
        match e {
            kube::Error::Api(s) => s.code,
            other => panic!("not an API error: {other}"),
        }
    }

    /// The next watcher event as text ("Init", "InitApply(a)", "Err", ...), bounded in time.
    async fn next<S>(w: &mut S) -> String
    where
        S: Stream<Item = Result<Event<DynamicObject>, watcher::Error>> + Unpin,
    {
        match tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("watcher stalled")
        {
            Some(Ok(e)) => e.to_string(),
            Some(Err(_)) => "Err".into(),
            None => "End".into(),
        }
    }

    /// Events up to and including the next InitDone, errors skipped.
    async fn until_init_done<S>(w: &mut S) -> Vec<String>
    where
        S: Stream<Item = Result<Event<DynamicObject>, watcher::Error>> + Unpin,
    {
        let mut seen = Vec::new();
        while seen.last().map(String::as_str) != Some("InitDone") {
            let e = next(w).await;
            if e != "Err" {
                seen.push(e);
            }
        }
        seen
    }

    /// One raw HTTP exchange: (status code, body).
    async fn raw(s: &FakeApiServer, request: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(s.inner.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(LIMIT, stream.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (
            head.split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            body.to_owned(),
        )
    }

    async fn bounded<F: Future<Output = ()>>(f: F) {
        tokio::time::timeout(LIMIT, f)
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
            assert_eq!(names, ["a", "b", "c"]);
            assert_eq!(list.metadata.resource_version.as_deref(), Some("4"));
            assert_eq!(list.items[0].types.as_ref().unwrap().kind, "Service");
            let web = all
                .list(&ListParams::default().labels("app=web,!missing"))
                .await
                .unwrap();
            assert_eq!(web.items.len(), 2);
            let set = all
                .list(
                    &ListParams::default()
                        .labels("app in (db, x)")
                        .fields("metadata.name=b"),
                )
                .await
                .unwrap();
            assert_eq!(set.items.len(), 1);
            let meta = all
                .list_metadata(&ListParams::default().labels("app!=web"))
                .await
                .unwrap();
            assert_eq!(meta.items[0].metadata.name.as_deref(), Some("b"));

            // Pages of one, following the continue token.
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
                ns.get("a").await.unwrap().metadata.uid,
                a["metadata"]["uid"].as_str().map(String::from)
            );
            assert_eq!(code(ns.get("zzz").await.unwrap_err()), 404);
            assert!(ns.get_opt("zzz").await.unwrap().is_none());
            let (status, body) = raw(
                &s,
                "GET /api/v1/namespaces/default/services/zzz HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .await;
            assert_eq!(status, 404);
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["reason"], "NotFound");
            assert_eq!(body["message"], "services \"zzz\" not found");
        })
        .await;
    }

    #[tokio::test]
    async fn watcher_sees_init_apply_delete_and_recovers() {
        bounded(async {
            let s = FakeApiServer::start().await.unwrap();
            s.put(svc("default", "a", "web"));
            s.put(svc("default", "b", "web"));
            let api: Api<DynamicObject> = Api::all_with(client(&s), &services());
            let mut w = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
            assert_eq!(
                until_init_done(&mut w).await,
                ["Init", "InitApply(a)", "InitApply(b)", "InitDone"]
            );
            s.put(svc("default", "c", "web"));
            assert_eq!(next(&mut w).await, "Apply(c)");
            s.bookmark();
            s.delete("v1", "Service", Some("default"), "c");
            assert_eq!(next(&mut w).await, "Delete(c)");

            // A dropped watch resumes from its resourceVersion and replays what it missed.
            s.drop_watches();
            s.put(svc("default", "d", "web"));
            let mut e = next(&mut w).await;
            while e == "Err" {
                e = next(&mut w).await;
            }
            assert_eq!(e, "Apply(d)");

            // After compaction the resumed watch gets 410 and the watcher re-lists: b, deleted
            // while it was disconnected, is gone from the new list.
            s.drop_watches();
            s.delete("v1", "Service", Some("default"), "b");
            s.compact();
            assert_eq!(
                until_init_done(&mut w).await,
                ["Init", "InitApply(a)", "InitApply(d)", "InitDone"]
            );
            let watches = s
                .requests()
                .into_iter()
                .filter(|r| r.param("watch") == Some("true"))
                .count();
            assert!(watches >= 3, "{watches} watch requests");
            let lists: Vec<_> = s
                .requests()
                .into_iter()
                .filter(|r| r.method == "GET" && r.param("watch").is_none())
                .collect();
            assert_eq!(lists.len(), 2);
            assert_eq!(lists[0].param("limit"), Some("500"));

            // A streaming list (sendInitialEvents) ends its initial events with a bookmark.
            let mut w = watcher::watcher(api, watcher::Config::default().streaming_lists()).boxed();
            assert_eq!(
                until_init_done(&mut w).await,
                ["Init", "InitApply(a)", "InitApply(d)", "InitDone"]
            );
            s.put(svc("default", "e", "web"));
            assert_eq!(next(&mut w).await, "Apply(e)");
        })
        .await;
    }

    #[tokio::test]
    async fn raw_watch_bookmarks_selectors_and_timeout() {
        bounded(async {
            let s = FakeApiServer::start().await.unwrap();
            s.put(svc("default", "a", "web"));
            let api: Api<DynamicObject> = Api::namespaced_with(client(&s), "default", &services());
            let wp = WatchParams::default().labels("app=web").timeout(1);
            let mut stream = api.watch(&wp, "0").await.unwrap().boxed();
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
            let body = json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
                "metadata": {"name": "web", "labels": {"a": "1"}}, "status": {"ignored": true}});
            let first = api.patch("web", &pp, &Patch::Apply(&body)).await.unwrap();
            let second = api.patch("web", &pp, &Patch::Apply(&body)).await.unwrap();
            assert_eq!(first.metadata.resource_version, second.metadata.resource_version, "a no-op apply");
            assert_eq!(first.metadata.generation, Some(1));
            assert!(first.data.get("status").is_none());
            let status = json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
                "metadata": {"name": "web"}, "status": {"conditions": [{"type": "Valid", "status": "True"}]}});
            let patched = api.patch_status("web", &pp, &Patch::Apply(&status)).await.unwrap();
            assert_ne!(patched.metadata.resource_version, first.metadata.resource_version);
            assert_eq!(patched.data["status"]["conditions"][0]["type"], "Valid");
            assert_eq!(patched.metadata.generation, Some(1));
            let relabel = json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport", "metadata": {"labels": {"b": "2"}}});
            let relabeled = api.patch("web", &pp, &Patch::Apply(&relabel)).await.unwrap();
            assert_eq!(relabeled.metadata.labels.as_ref().unwrap().len(), 2);
            assert_eq!(relabeled.data["status"]["conditions"][0]["status"], "True", "status kept");
            assert_eq!(s.get("ServiceExport", Some("default"), "web").unwrap()["status"]["conditions"][0]["type"], "Valid");

            let req = s.requests().into_iter().find(|r| r.method == "PATCH").unwrap();
            assert_eq!(req.path, "/apis/multicluster.x-k8s.io/v1alpha1/namespaces/default/serviceexports/web");
            assert_eq!((req.param("fieldManager"), req.param("force")), (Some("fleetdns"), Some("true")));
            assert_eq!(req.content_type.as_deref(), Some("application/apply-patch+yaml"));
            assert_eq!(req.body, Some(body.clone()));

            let err = api.patch("web", &PatchParams::default(), &Patch::Apply(&body)).await.unwrap_err();
            assert_eq!(code(err), 422, "fieldManager is required");
            let elsewhere: Api<DynamicObject> = Api::namespaced_with(client(&s), "nope", &exports("v1alpha1"));
            assert_eq!(code(elsewhere.patch("web", &pp, &Patch::Apply(&body)).await.unwrap_err()), 404, "missing namespace");
            let mut missing = status.clone();
            missing["metadata"]["name"] = "nothing".into();
            assert_eq!(code(api.patch_status("nothing", &pp, &Patch::Apply(&missing)).await.unwrap_err()), 404);
            let merged = api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": null}}}))).await.unwrap();
            assert_eq!(merged.metadata.labels.unwrap().len(), 1);
            let deleted = api.delete("web", &DeleteParams::default()).await.unwrap();
            assert!(deleted.is_left(), "custom resources return the deleted object");
        })
        .await;
    }

    #[tokio::test]
    async fn create_replace_conflicts() {
        bounded(async {
            let s = FakeApiServer::start().await.unwrap();
            let api: Api<DynamicObject> = Api::namespaced_with(client(&s), "default", &services());
            let obj: DynamicObject = serde_json::from_value(svc("default", "a", "web")).unwrap();
            let created = api.create(&PostParams::default(), &obj).await.unwrap();
            assert_eq!(created.data["status"], json!({"loadBalancer": {}}));
            assert_eq!(code(api.create(&PostParams::default(), &obj).await.unwrap_err()), 409);
            let mut stale = created.clone();
            stale.metadata.resource_version = Some("1".into());
            assert_eq!(code(api.replace("a", &PostParams::default(), &stale).await.unwrap_err()), 409);
            let mut fresh = created.clone();
            fresh.data["spec"]["ports"][0]["port"] = 81.into();
            let replaced = api.replace("a", &PostParams::default(), &fresh).await.unwrap();
            assert_eq!(replaced.data["spec"]["ports"][0]["port"], 81);
            assert!(api.delete("a", &DeleteParams::default()).await.unwrap().is_right(), "built-ins return a Status");
            assert_eq!(code(api.delete("a", &DeleteParams::default()).await.unwrap_err()), 404);

            let chunked = "POST /api/v1/namespaces/default/services HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
            assert_eq!(raw(&s, chunked).await.0, 411);
            assert_eq!(raw(&s, "garbage\r\n\r\n").await.0, 400);
            assert_eq!(raw(&s, "GET /apis/nothing/v1/things HTTP/1.1\r\n\r\n").await.0, 404);
            assert_eq!(raw(&s, "POST /api/v1/namespaces/default/services HTTP/1.1\r\nContent-Length: 3\r\n\r\n{x}").await.0, 400);
            assert_eq!(raw(&s, "DELETE /api/v1/services HTTP/1.1\r\n\r\n").await.0, 405);
        })
        .await;
    }

    #[tokio::test]
    async fn served_versions_and_discovery() {
        bounded(async {
            let s = FakeApiServer::start().await.unwrap();
            let c = client(&s);
            s.serve_group(MCS, &["v1alpha1"]);
            let beta: Api<DynamicObject> = Api::all_with(c.clone(), &exports("v1beta1"));
            assert_eq!(code(beta.list(&ListParams::default()).await.unwrap_err()), 404);
            let (status, body) = raw(&s, "GET /apis/multicluster.x-k8s.io HTTP/1.1\r\n\r\n").await;
            let group: Value = serde_json::from_str(&body).unwrap();
            assert_eq!((status, &group["versions"][0]["version"], &group["preferredVersion"]["version"]), (200, &json!("v1alpha1"), &json!("v1alpha1")));
            let discovered = kube::discovery::group(&c, MCS).await.unwrap();
            let (found, _) = discovered.recommended_kind("ServiceExport").unwrap();
            assert_eq!((found.version.as_str(), found.plural.as_str()), ("v1alpha1", "serviceexports"));
            assert!(c.list_api_groups().await.unwrap().groups.iter().any(|g| g.name == "discovery.k8s.io"));
            assert!(kube::discovery::group(&c, "about.k8s.io").await.is_err(), "not served");

            s.put(json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport", "metadata": {"namespace": "default", "name": "web"}}));
            s.serve_group(MCS, &["v1beta1", "v1alpha1"]);
            let seen = Api::<DynamicObject>::namespaced_with(c.clone(), "default", &exports("v1beta1")).get("web").await.unwrap();
            assert_eq!(seen.types.unwrap().api_version, "multicluster.x-k8s.io/v1beta1");
        })
        .await;
    }

    #[tokio::test]
    async fn offline_fail_next_and_kubeconfig() {
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
            api.list(&ListParams::default()).await.unwrap();

            s.set_offline(true);
            let offline =
                tokio::time::timeout(Duration::from_secs(5), api.list(&ListParams::default()))
                    .await;
            assert!(
                offline
                    .expect("an offline server must not hang the client")
                    .is_err()
            );
            s.set_offline(false);
            api.list(&ListParams::default()).await.unwrap();

            s.fail_next("GET", "/services", 500);
            assert_eq!(
                code(api.list(&ListParams::default()).await.unwrap_err()),
                500
            );
            api.list(&ListParams::default()).await.unwrap();
            s.clear_requests();
            s.fail_next("get", "/services", 403);
            assert_eq!(
                code(api.list(&ListParams::default()).await.unwrap_err()),
                403
            );
            assert_eq!(s.requests().len(), 1);
            s.stop().await;
        })
        .await;
    }
}
