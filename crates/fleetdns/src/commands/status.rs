//! `fleetdns status --server HOST:OPSPORT`: the fleet as one server sees it (clusters and their
//! health, clusters that left, services in conflict, forward-zone upstreams, the registry),
//! from its `/debug/fleet`. Tables by default, `--json` for the raw report.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;

use crate::debug_api::{FleetReport, SourceKind};
use crate::debug_client::{fetch, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server's ops listener (`[ops] listen`), HOST:PORT.
    #[arg(long)]
    pub server: String,
    /// Print the JSON report instead of tables.
    #[arg(long)]
    pub json: bool,
    /// List every service, not only those in conflict.
    #[arg(long)]
    pub services: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let text = fetch(&args.server, "/debug/fleet")?;
    if args.json {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let report: FleetReport =
        serde_json::from_str(&text).context("the server's /debug/fleet is not a fleet report")?;
    print!("{}", render(&report, &args.server, args.services));
    Ok(ExitCode::SUCCESS)
}

pub fn render(r: &FleetReport, via: &str, all_services: bool) -> String {
    let mut o = String::new();
    let s = &r.summary;
    let _ = writeln!(
        o,
        "server {} (fleetdns {}) via {via} at {}",
        r.server.nsid, r.server.version, r.server.now
    );
    let reg = &r.registry;
    let _ = writeln!(
        o,
        "registry {}{}{}: snapshot {} installed {} ({} s ago); liveness timeout {} s",
        reg.kind,
        reg.revision
            .map_or(String::new(), |v| format!(" revision {v}")),
        match reg.stale {
            Some(true) => " STALE (serving the last snapshot)",
            _ => "",
        },
        reg.snapshot_version
            .map_or("none yet".into(), |v| format!("version {v}")),
        reg.snapshot_installed.as_deref().unwrap_or("-"),
        reg.snapshot_age_seconds
            .map_or("-".into(), |a| format!("{a:.0}")),
        reg.liveness_timeout_seconds,
    );
    match &r.table {
        Some(t) => {
            let _ = writeln!(
                o,
                "answer table version {}: {} names, {} records; zones {}",
                t.version,
                t.names,
                t.records,
                t.zones.join(" ")
            );
        }
        None => o.push_str("answer table: none yet (authoritative zones answer SERVFAIL)\n"),
    }
    let _ = writeln!(
        o,
        "{} clusters ({} alive, {} dead), {} services ({} in conflict), {} forward zones ({} upstreams down)",
        s.clusters,
        s.alive,
        s.dead,
        s.services,
        s.services_in_conflict,
        s.forward_zones,
        s.upstreams_down
    );

    o.push_str("\nCLUSTERS\n");
    let mut rows = vec![vec![
        "CLUSTER".to_owned(),
        "HEALTH".into(),
        "SOURCE".into(),
        "CONNECTED".into(),
        "EXPORTS".into(),
        "LAST PUBLISH".into(),
        "DEAD SINCE".into(),
    ]];
    let mut clusters: Vec<_> = r.clusters.iter().collect();
    clusters.sort_by_key(|c| (c.alive, c.id.clone()));
    for c in clusters {
        rows.push(vec![
            c.id.clone(),
            if c.alive { "alive" } else { "DEAD" }.into(),
            match c.source {
                SourceKind::Files => "files",
                SourceKind::Kubernetes => "kubernetes",
                SourceKind::Registry => "registry",
            }
            .into(),
            c.connected
                .map_or("-", |v| if v { "yes" } else { "no" })
                .into(),
            c.exports.to_string(),
            c.last_publish.clone(),
            c.dead_since.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    o.push_str(&table(&rows));
    if !r.departed.is_empty() {
        o.push_str("\nLEFT THE REGISTRY\n");
        for d in &r.departed {
            let _ = writeln!(
                o,
                "  {} left at {} (last publish {}){}",
                d.cluster,
                d.at,
                d.last_publish,
                if d.was_dead {
                    ": it was dead, then its entry expired"
                } else if r.registry.kind == "etcd" {
                    ": its agent's lease expired or it withdrew"
                } else {
                    ": its source withdrew it"
                }
            );
        }
    }
    let conflicted: Vec<_> = r
        .services
        .iter()
        .filter(|s| !s.conflicts.is_empty())
        .collect();
    if !conflicted.is_empty() {
        o.push_str("\nCONFLICTS\n");
        for svc in conflicted {
            for c in &svc.conflicts {
                let _ = writeln!(o, "  {} {}: {}", svc.name, c.reason, c.message);
            }
        }
    }
    if all_services || r.services.len() <= 20 {
        o.push_str("\nSERVICES\n");
        let mut rows = vec![vec![
            "SERVICE".to_owned(),
            "TYPE".into(),
            "CLUSTERS".into(),
            "PORTS".into(),
        ]];
        for svc in &r.services {
            rows.push(vec![
                svc.name.clone(),
                svc.service_type.clone(),
                svc.clusters.join(","),
                svc.ports.join(","),
            ]);
        }
        o.push_str(&table(&rows));
    } else {
        let _ = writeln!(
            o,
            "\n{} services (list them with --services)",
            r.services.len()
        );
    }
    if !r.forward.is_empty() {
        o.push_str("\nFORWARD ZONES\n");
        let mut rows = vec![vec![
            "ZONE".to_owned(),
            "UPSTREAM".into(),
            "HEALTH".into(),
            "REQUESTS".into(),
            "FAILURES".into(),
        ]];
        for z in &r.forward {
            for u in &z.upstreams {
                rows.push(vec![
                    z.zone.clone(),
                    u.addr.to_string(),
                    if z.looped {
                        "loop".into()
                    } else if u.healthy {
                        "up".into()
                    } else {
                        "DOWN".into()
                    },
                    u.requests.to_string(),
                    u.failures.to_string(),
                ]);
            }
        }
        o.push_str(&table(&rows));
    }
    o
}
