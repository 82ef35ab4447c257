//! Watches: replay from a resourceVersion, bookmarks, 410 Gone and chunked JSON lines.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

use crate::http::{Reply, Target, error, failure, param};
use crate::kinds::group_version;
use crate::selector::Filter;
use crate::{Change, Inner, Signal, State};

// ---- watches ------------------------------------------------------------------------------

/// Everything a watch stream needs, prepared under the state lock so no event is missed.
pub(crate) struct WatchPlan {
    pub(crate) target: Target,
    pub(crate) filter: Filter,
    /// Events to send first: initial ADDED, replayed history, or a 410 ERROR.
    pub(crate) lines: Vec<String>,
    /// End the stream after `lines` (the 410 case).
    pub(crate) end: bool,
    /// Only later events are sent.
    pub(crate) from: u64,
    pub(crate) bookmarks: bool,
    pub(crate) timeout: Duration,
    pub(crate) rx: broadcast::Receiver<Signal>,
}

pub(crate) fn event_line(etype: &str, object: Value) -> String {
    let mut event = json!({ "type": etype });
    event["object"] = object;
    format!("{event}\n")
}

pub(crate) fn bookmark_line(t: &Target, rv: u64, initial_end: bool) -> String {
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
pub(crate) fn change_matches(t: &Target, filter: &Filter, c: &Change) -> bool {
    c.res == t.res
        && (filter.matches(&c.object) || c.old.as_ref().is_some_and(|o| filter.matches(o)))
}

pub(crate) fn watch_plan(
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

pub(crate) fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

pub(crate) struct WatchCount<'a>(&'a AtomicUsize);

impl Drop for WatchCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) async fn serve_watch(inner: &Inner, stream: TcpStream, mut plan: WatchPlan) {
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
