//! The fleet status page at `/` on the ops listener: one server-rendered HTML page, no
//! JavaScript, no external assets, refreshing itself. Summaries first; problems (dead clusters,
//! conflicts, upstreams down) before the long lists; the service list is paged and collapsed,
//! so a fleet of 50 clusters and 5 000 services stays readable. Built from the same
//! [`FleetReport`] as `/debug/fleet`.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::debug_api::{FleetReport, SourceKind};
use crate::ops::OpsState;

/// Services per page of the full list.
pub const PAGE: usize = 200;
/// Seconds between refreshes.
const REFRESH: u32 = 10;

pub async fn page(State(state): State<Arc<OpsState>>, RawQuery(query): RawQuery) -> Response {
    let Some(debug) = state.debug.clone() else {
        return crate::ops::debug_unavailable(&state);
    };
    let page = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let report = crate::debug_api::fleet(&debug, &state, state.served.as_deref());
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        render(&report, page),
    )
        .into_response()
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
.muted{color:#666}.cards{display:flex;flex-wrap:wrap;gap:.6em}\
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5em .9em;min-width:8em}\
.card b{display:block;font-size:1.5em}.bad{color:#b00020}.ok{color:#1b7f2a}.warn{color:#a15c00}\
table{border-collapse:collapse;background:#fff;width:100%;margin:.3em 0}\
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f0f0f0}tr.dead td,tr.conflict td{background:#fdecee}\
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}code{font-size:.95em}";

/// The page for `report`, services page `page` (1-based).
pub fn render(r: &FleetReport, page: usize) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let s = &r.summary;
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH}\"><title>fleetdns: {} clusters, {} services</title>\
<style>{STYLE}</style></head><body>",
        s.clusters, s.services
    );
    let _ = write!(
        h,
        "<h1>fleetdns fleet status</h1><p class=\"muted\">server <code id=\"nsid\">{}</code> · version {} · {} · refreshes every {REFRESH} s</p>",
        esc(&r.server.nsid),
        esc(&r.server.version),
        esc(&r.server.now)
    );
    // Summary cards.
    let card = |h: &mut String, label: &str, value: String, class: &str| {
        let _ = write!(
            h,
            "<div class=\"card\"><b class=\"{class}\">{value}</b>{label}</div>"
        );
    };
    h.push_str("<div class=\"cards\" id=\"summary\">");
    card(&mut h, "clusters", s.clusters.to_string(), "");
    card(&mut h, "alive", s.alive.to_string(), "ok");
    card(
        &mut h,
        "dead",
        s.dead.to_string(),
        if s.dead > 0 { "bad" } else { "" },
    );
    card(&mut h, "services", s.services.to_string(), "");
    card(
        &mut h,
        "in conflict",
        s.services_in_conflict.to_string(),
        if s.services_in_conflict > 0 {
            "warn"
        } else {
            ""
        },
    );
    card(
        &mut h,
        "upstreams down",
        s.upstreams_down.to_string(),
        if s.upstreams_down > 0 { "bad" } else { "" },
    );
    let reg = &r.registry;
    let stale = reg.stale == Some(true);
    card(
        &mut h,
        &format!("registry {}", esc(&reg.kind)),
        if stale {
            "stale".into()
        } else {
            "fresh".into()
        },
        if stale { "bad" } else { "ok" },
    );
    h.push_str("</div>");

    // Registry and table.
    let _ = write!(
        h,
        "<h2>Registry</h2><table id=\"registry\"><tr><th>kind</th><th>snapshot version</th><th>installed</th><th>age</th><th>etcd revision</th><th>liveness timeout</th><th>answer table</th></tr>\
<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} s</td><td>{}</td></tr></table>",
        esc(&reg.kind),
        reg.snapshot_version
            .map_or("none yet".into(), |v| v.to_string()),
        esc(reg.snapshot_installed.as_deref().unwrap_or("-")),
        reg.snapshot_age_seconds
            .map_or("-".into(), |a| format!("{a:.0} s")),
        reg.revision.map_or("-".into(), |v| v.to_string()),
        reg.liveness_timeout_seconds,
        r.table
            .as_ref()
            .map_or("none (SERVFAIL)".into(), |t| format!(
                "version {}, {} names, {} records; zones {}",
                t.version,
                t.names,
                t.records,
                esc(&t.zones.join(" "))
            )),
    );

    // Clusters: dead first.
    let _ = write!(h, "<h2>Clusters ({})</h2>", r.clusters.len());
    let mut clusters: Vec<_> = r.clusters.iter().collect();
    clusters.sort_by_key(|c| (c.alive, c.id.clone()));
    h.push_str("<table id=\"clusters\"><tr><th>cluster</th><th>health</th><th>source</th><th>connected</th><th>exports</th><th>last publish</th><th>dead since</th></tr>");
    for c in clusters {
        let _ = write!(
            h,
            "<tr class=\"{}\" data-cluster=\"{}\"><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if c.alive { "alive" } else { "dead" },
            esc(&c.id),
            esc(&c.id),
            if c.alive { "ok" } else { "bad" },
            if c.alive { "alive" } else { "dead" },
            match c.source {
                SourceKind::Files => "files",
                SourceKind::Kubernetes => "kubernetes",
                SourceKind::Registry => "registry",
            },
            c.connected.map_or("-", |v| if v { "yes" } else { "no" }),
            c.exports,
            esc(&c.last_publish),
            esc(c.dead_since.as_deref().unwrap_or("-")),
        );
    }
    h.push_str("</table>");
    if !r.departed.is_empty() {
        let _ = write!(
            h,
            "<details><summary>Clusters that left the registry ({})</summary><table id=\"departed\"><tr><th>cluster</th><th>left at</th><th>last publish</th><th>was dead</th></tr>",
            r.departed.len()
        );
        for d in &r.departed {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.cluster),
                esc(&d.at),
                esc(&d.last_publish),
                if d.was_dead { "yes" } else { "no" }
            );
        }
        h.push_str("</table></details>");
    }

    // Conflicts: every one, before the full list.
    let conflicted: Vec<_> = r
        .services
        .iter()
        .filter(|s| !s.conflicts.is_empty())
        .collect();
    let _ = write!(h, "<h2>Conflicts ({})</h2>", conflicted.len());
    if conflicted.is_empty() {
        h.push_str("<p class=\"muted\">none</p>");
    } else {
        h.push_str("<table id=\"conflicts\"><tr><th>service</th><th>reason</th><th>winner</th><th>clusters</th><th>message</th></tr>");
        for svc in conflicted {
            for c in &svc.conflicts {
                let _ = write!(
                    h,
                    "<tr class=\"conflict\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&svc.name),
                    esc(&c.reason),
                    esc(&c.winner),
                    esc(&c.clusters.join(", ")),
                    esc(&c.message)
                );
            }
        }
        h.push_str("</table>");
    }

    // Forward zones.
    let _ = write!(h, "<h2>Forward zones ({})</h2>", r.forward.len());
    if r.forward.is_empty() {
        h.push_str("<p class=\"muted\">none configured</p>");
    } else {
        h.push_str("<table id=\"forward\"><tr><th>zone</th><th>upstream</th><th>health</th><th>requests</th><th>failures</th></tr>");
        for z in &r.forward {
            for u in &z.upstreams {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&z.zone),
                    u.addr,
                    if u.healthy { "ok" } else { "bad" },
                    if z.looped {
                        "loop (CDNS-13)"
                    } else if u.healthy {
                        "up"
                    } else {
                        "down"
                    },
                    u.requests,
                    u.failures
                );
            }
        }
        h.push_str("</table>");
    }

    // Every service, paged and collapsed.
    let pages = r.services.len().div_ceil(PAGE).max(1);
    let page = page.min(pages);
    let from = (page - 1) * PAGE;
    let _ = write!(
        h,
        "<h2>Services ({})</h2><details id=\"services\"{}><summary>page {page} of {pages}: services {}–{}</summary>",
        r.services.len(),
        if r.services.len() <= 50 { " open" } else { "" },
        (from + 1).min(r.services.len()),
        (from + PAGE).min(r.services.len()),
    );
    h.push_str("<table><tr><th>service</th><th>type</th><th>clusters</th><th>ports</th><th>conflicts</th></tr>");
    for svc in r.services.iter().skip(from).take(PAGE) {
        let conflict = !svc.conflicts.is_empty();
        let _ = write!(
            h,
            "<tr{}><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            if conflict { " class=\"conflict\"" } else { "" },
            esc(&svc.name),
            esc(&svc.service_type),
            esc(&svc.clusters.join(", ")),
            if svc.excluded.is_empty() {
                String::new()
            } else {
                format!(" (left out: {})", esc(&svc.excluded.join(", ")))
            },
            esc(&svc.ports.join(", ")),
            esc(&svc
                .conflicts
                .iter()
                .map(|c| c.reason.as_str())
                .collect::<Vec<_>>()
                .join(", ")),
        );
    }
    h.push_str("</table>");
    if pages > 1 {
        h.push_str("<p>pages: ");
        for p in 1..=pages {
            if p == page {
                let _ = write!(h, "<b>{p}</b> ");
            } else {
                let _ = write!(h, "<a href=\"?page={p}\">{p}</a> ");
            }
        }
        h.push_str("</p>");
    }
    h.push_str("</details><p class=\"muted\">JSON: <a href=\"/debug/fleet\">/debug/fleet</a> · explain an answer: <code>/debug/query?name=NAME&amp;type=A</code> or <code>fleetdns query NAME --server HOST:PORT</code></p></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debug_api::{
        ClusterRow, ConflictRow, RegistryView, ServerView, ServiceRow, Summary,
    };

    /// 50 clusters (one dead), 5 000 services (one in conflict).
    fn big() -> FleetReport {
        let clusters: Vec<ClusterRow> = (0..50)
            .map(|i| ClusterRow {
                id: format!("cluster-{i}"),
                source: SourceKind::Registry,
                connected: None,
                alive: i != 7,
                last_publish: "2026-12-01T00:00:00Z".into(),
                dead_since: (i == 7).then(|| "2026-12-01T00:01:00Z".into()),
                liveness_deadline: None,
                exports: 100,
            })
            .collect();
        let services: Vec<ServiceRow> = (0..5000)
            .map(|i| ServiceRow {
                name: format!("ns-{}/svc-{i}", i % 40),
                service_type: "ClusterSetIP".into(),
                clusters: vec!["cluster-1".into(), "cluster-2".into()],
                excluded: vec![],
                ports: vec!["http:80/TCP".into()],
                conflicts: if i == 4321 {
                    vec![ConflictRow {
                        reason: "PortConflict".into(),
                        winner: "cluster-1".into(),
                        clusters: vec!["cluster-2".into()],
                        message: "ports <differ>".into(),
                    }]
                } else {
                    vec![]
                },
            })
            .collect();
        FleetReport {
            server: ServerView {
                nsid: "dns-0".into(),
                version: "0".into(),
                now: "2026-12-01T00:02:00Z".into(),
            },
            summary: Summary {
                clusters: 50,
                alive: 49,
                dead: 1,
                services: 5000,
                services_in_conflict: 1,
                ..Default::default()
            },
            registry: RegistryView {
                kind: "etcd".into(),
                revision: Some(9),
                stale: Some(false),
                snapshot_version: Some(3),
                snapshot_installed: None,
                snapshot_age_seconds: None,
                liveness_timeout_seconds: 15,
            },
            table: None,
            clusters,
            departed: vec![],
            services,
            forward: vec![],
        }
    }

    #[test]
    fn a_large_fleet_is_summarised_with_problems_first_and_services_paged() {
        let r = big();
        let html = render(&r, 1);
        assert!(html.contains("page 1 of 25"), "5000 / 200 per page");
        assert_eq!(
            html.matches("<td>ns-").count(),
            PAGE + 1,
            "one page plus the conflict"
        );
        // The dead cluster is listed first, and the conflict before the long list.
        let dead = html.find("data-cluster=\"cluster-7\"").unwrap();
        assert!(dead < html.find("data-cluster=\"cluster-0\"").unwrap());
        let conflict = html.find("PortConflict").unwrap();
        assert!(conflict < html.find("id=\"services\"").unwrap());
        // Escaped, no script, no external asset.
        assert!(html.contains("ports &lt;differ&gt;"));
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("http://"));
        // The last page holds the rest; a page past the end shows the last.
        assert!(render(&r, 25).contains("svc-4999"));
        assert!(render(&r, 99).contains("page 25 of 25"));
        assert!(html.len() < 400_000, "{} bytes", html.len());
    }
}
