//! The object store: system fields, writes with optimistic concurrency, lists with
//! `limit`/`continue`, and the JSON helpers they share.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::http::{
    Reply, Target, conflict, error, failure, hex_digit, not_found, object_error, param,
};
use crate::kinds::{Res, group_version, qualified};
use crate::selector::Filter;
use crate::{Change, Signal, State};

// ---- the store ----------------------------------------------------------------------------

impl State {
    /// Sets the system fields of an object about to be written. The API overwrites
    /// uid/creationTimestamp/generation; `admin` (`put`) keeps them when given.
    pub(crate) fn fill_meta(
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
    pub(crate) fn write(
        &mut self,
        res: &'static Res,
        ns: String,
        name: String,
        mut obj: Value,
    ) -> Value {
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
    pub(crate) fn remove(&mut self, res: &'static Res, ns: &str, name: &str) -> Option<Value> {
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

    pub(crate) fn emit(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push(change.clone());
        let _ = self.tx.send(Signal::Change(change));
    }

    pub(crate) fn served_versions(&self, group: &str) -> Vec<String> {
        match group {
            "" | "discovery.k8s.io" => vec!["v1".into()],
            g => self.served.get(g).cloned().unwrap_or_default(),
        }
    }

    /// The real API refuses writes into a missing namespace; the fake checks only once the
    /// test has put any Namespace at all.
    /// The real API refuses to create objects in a namespace with a `deletionTimestamp`.
    pub(crate) fn namespace_terminating(&self, ns: &str) -> bool {
        let key = ("", "namespaces", String::new(), ns.to_owned());
        self.objects
            .get(&key)
            .is_some_and(|n| n["metadata"]["deletionTimestamp"].is_string())
    }

    pub(crate) fn namespace_missing(&self, ns: &str) -> bool {
        let mut names = self
            .objects
            .keys()
            .filter(|k| (k.0, k.1) == ("", "namespaces"))
            .peekable();
        names.peek().is_some() && !names.any(|k| k.3 == ns)
    }
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub(crate) fn as_map(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    as_map(as_map(obj).entry("metadata").or_insert(Value::Null))
}

/// What `metadata.generation` counts: all but metadata, status and type.
pub(crate) fn content(obj: &Value) -> Value {
    let mut v = obj.clone();
    let map = as_map(&mut v);
    map.retain(|k, _| !["metadata", "status", "apiVersion", "kind"].contains(&k.as_str()));
    v
}

pub(crate) fn without_rv(obj: &Value) -> Value {
    let mut v = obj.clone();
    meta_mut(&mut v).remove("resourceVersion");
    v
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
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

pub(crate) fn now_rfc3339() -> String {
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

pub(crate) fn hex(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub(crate) fn unhex(s: &str) -> Option<String> {
    let pair = |p: &[u8]| Some(hex_digit(*p.first()?)? << 4 | hex_digit(*p.get(1)?)?);
    String::from_utf8(s.as_bytes().chunks(2).map(pair).collect::<Option<_>>()?).ok()
}

pub(crate) fn list(st: &State, t: &Target, query: &[(String, String)]) -> Result<Reply, Reply> {
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

// ---- writes -------------------------------------------------------------------------------

/// The body as an object of the target's type, its name (which must agree with the URL's)
/// and namespace (which must agree with the URL's).
pub(crate) fn object_body(
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
pub(crate) fn store_new(
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
pub(crate) fn store_update(
    st: &mut State,
    t: &Target,
    name: &str,
    existing: &Value,
    mut new: Value,
) -> Reply {
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

pub(crate) fn create(st: &mut State, t: &Target, body: Option<Value>) -> Result<Reply, Reply> {
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

pub(crate) fn replace(
    st: &mut State,
    t: &Target,
    name: &str,
    body: Option<Value>,
) -> Result<Reply, Reply> {
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

pub(crate) fn patch(
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

pub(crate) fn delete(st: &mut State, t: &Target, name: &str) -> Result<Reply, Reply> {
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
