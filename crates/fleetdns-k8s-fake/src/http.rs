//! HTTP/1.1 on loopback: reading requests, routing them, discovery and `Status` errors.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::kinds::{GROUPS, RESOURCES, Res, group_version, qualified};
use crate::selector::Filter;
use crate::store::{as_map, create, delete, list, patch, replace};
use crate::watch::{WatchPlan, serve_watch, watch_plan};
use crate::{Inner, Key, Recorded, State};

// ---- HTTP ---------------------------------------------------------------------------------

pub(crate) struct HttpRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Query-string decoding (`+` is a space).
pub(crate) fn percent_decode(s: &str) -> String {
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
pub(crate) async fn read_request(
    stream: &mut TcpStream,
) -> Result<HttpRequest, Option<(u16, String)>> {
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
pub(crate) fn reasons(code: u16) -> (&'static str, &'static str) {
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

pub(crate) async fn write_response(stream: &mut TcpStream, code: u16, body: &Value) {
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

pub(crate) async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
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

pub(crate) async fn connection(inner: Arc<Inner>, mut stream: TcpStream) {
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

pub(crate) enum Reply {
    Json(u16, Value),
    Watch(Box<WatchPlan>),
}

pub(crate) fn failure(code: u16, message: impl Into<String>) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reasons(code).1, "code": code})
}

pub(crate) fn error(code: u16, message: impl Into<String>) -> Reply {
    Reply::Json(code, failure(code, message))
}

/// A failure about one object, with `details` as the real API gives them.
pub(crate) fn object_error(
    code: u16,
    reason: &str,
    res: &Res,
    name: &str,
    message: String,
) -> Reply {
    let mut status = failure(code, message);
    status["reason"] = reason.into();
    status["details"] = json!({"name": name, "group": res.group, "kind": res.plural});
    Reply::Json(code, status)
}

pub(crate) fn not_found(res: &Res, name: &str) -> Reply {
    object_error(
        404,
        "NotFound",
        res,
        name,
        format!("{} {name:?} not found", qualified(res)),
    )
}

pub(crate) fn conflict(res: &Res, name: &str) -> Reply {
    let message = format!(
        "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
         please apply your changes to the latest version and try again",
        qualified(res)
    );
    object_error(409, "Conflict", res, name, message)
}

/// What a request addresses, and the version it is seen through.
pub(crate) struct Target {
    pub(crate) res: &'static Res,
    pub(crate) version: String,
    pub(crate) ns: Option<String>,
    pub(crate) status: bool,
}

impl Target {
    pub(crate) fn present(&self, obj: &Value) -> Value {
        let mut obj = obj.clone();
        let map = as_map(&mut obj);
        map.insert(
            "apiVersion".into(),
            group_version(self.res.group, &self.version).into(),
        );
        map.insert("kind".into(), self.res.kind.into());
        obj
    }

    pub(crate) fn key(&self, name: &str) -> Key {
        (
            self.res.group,
            self.res.plural,
            self.ns.clone().unwrap_or_default(),
            name.to_owned(),
        )
    }

    pub(crate) fn current<'a>(&self, st: &'a State, filter: &Filter) -> Vec<(&'a Key, &'a Value)> {
        let of_kind = st
            .objects
            .iter()
            .filter(|(k, _)| (k.0, k.1) == (self.res.group, self.res.plural));
        of_kind.filter(|(_, o)| filter.matches(o)).collect()
    }
}

pub(crate) fn api_group(group: &str, versions: &[String]) -> Option<Value> {
    let gv = |v: &String| json!({"groupVersion": group_version(group, v), "version": v});
    let preferred = gv(versions.first()?);
    let versions: Vec<Value> = versions.iter().map(gv).collect();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": preferred}),
    )
}

pub(crate) fn resource_list(group: &str, version: &str) -> Value {
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

pub(crate) fn handle(inner: &Inner, req: &HttpRequest) -> Reply {
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
