//! `fleetdns query NAME [TYPE]`: how a server answers a name and why, from its debug API
//! (`--server HOST:OPSPORT`), or from a config alone (`--config F`: its manifest folders are
//! read once, as `check-config` does). Human tables by default, `--json` for the raw report.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use fleetdns_core::{MemoryRegistry, Registry, merge_fleet};
use fleetdns_dns::explain::{self, FleetHistory, Inputs};
use serde_json::Value;

use crate::config::{Config, Source};
use crate::debug_client::{fetch, table};
use crate::files::FilesSource;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The name to explain, e.g. payment.default.svc.clusterset.local
    pub name: String,
    /// Record type (A, AAAA, SRV, TXT, SOA, ANY, TYPEnnn).
    #[arg(default_value = "A")]
    pub qtype: String,
    /// The server's ops listener (`[ops] listen`), HOST:PORT.
    #[arg(long, conflicts_with = "config", required_unless_present = "config")]
    pub server: Option<String>,
    /// Answer from this config alone, without a server (its manifest folders are read once).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the JSON report instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let text = match (&args.server, &args.config) {
        (Some(server), _) => {
            let path = format!(
                "/debug/query?name={}&type={}",
                encode(&args.name),
                encode(&args.qtype)
            );
            fetch(server, &path)?
        }
        (None, Some(config)) => from_config(config, &args.name, &args.qtype)?,
        (None, None) => bail!("give --server HOST:OPSPORT or --config FILE"),
    };
    if args.json {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let v: Value = serde_json::from_str(&text).context("the server's answer is not JSON")?;
    print!("{}", render(&v, args.server.as_deref()));
    Ok(ExitCode::SUCCESS)
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The explanation from the config alone: every files source read once into a memory
/// registry, compiled, explained with no history. Kubernetes sources are not contacted.
fn from_config(path: &std::path::Path, name: &str, qtype: &str) -> anyhow::Result<String> {
    let config = Config::load(path)?;
    let qtype = explain::parse_qtype(qtype)?;
    let rt = crate::runtime::build()?;
    rt.block_on(async move {
        let mut registry = MemoryRegistry::new(config.liveness_timeout);
        // VIPs as `serve` allocates them: `.global` names and ServiceEntry hosts answer.
        if let Some((range, grace)) = config.vips {
            registry = registry.with_vips(range, grace);
        }
        if let Some(range6) = config.vips_v6 {
            registry = registry.with_vips_v6(range6);
        }
        for source in &config.sources {
            match source {
                Source::Files { root, interval } => {
                    FilesSource::new(root.clone(), *interval)
                        .poll(&registry)
                        .await
                        .with_context(|| format!("cannot read manifest folder {}", root.display()))?;
                }
                Source::Kubernetes { .. } => eprintln!(
                    "note: kubernetes sources are not contacted by `query --config`; ask a running server with --server"
                ),
            }
        }
        let snapshot = registry.subscribe().borrow().clone().unwrap_or_default();
        let merged = merge_fleet(&snapshot);
        let table = fleetdns_dns::compile(&snapshot, &merged, &config.zones, 1);
        let forwarder = if config.forward.is_empty() {
            None
        } else {
            Some(
                fleetdns_dns::forward::Forwarder::new(&config.forward, config.cache)
                    .context("forward zones")?,
            )
        };
        let history = FleetHistory::default();
        let inputs = Inputs {
            snapshot: Some(&snapshot),
            merged: &merged,
            zones: &config.zones,
            table: Some(&table),
            forwarder: forwarder.as_ref(),
            history: &history,
        };
        let x = explain::explain(&inputs, name, qtype)?;
        let server = crate::debug_api::ServerView {
            nsid: format!("(config {})", config.path.display()),
            version: env!("CARGO_PKG_VERSION").into(),
            now: fleetdns_core::Timestamp::now().to_string(),
        };
        Ok(crate::debug_api::query_json(server, &x))
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The human form of a `/debug/query` report.
pub fn render(v: &Value, via: Option<&str>) -> String {
    let mut o = String::new();
    let r = &v["response"];
    let _ = writeln!(
        o,
        "{} {}: {} ({}{})",
        s(&v["name"]),
        s(&v["qtype"]),
        s(&r["rcode"]),
        s(&r["outcome"]),
        if r["authoritative"] == Value::Bool(true) {
            ", authoritative"
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "server {} (fleetdns {}){}",
        s(&v["server"]["nsid"]),
        s(&v["server"]["version"]),
        via.map_or(String::new(), |a| format!(" via {a}"))
    );
    let records = |title: &str, list: &Value, o: &mut String| {
        if let Some(list) = list.as_array().filter(|l| !l.is_empty()) {
            let _ = writeln!(o, "\n{title}");
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|x| vec![s(&x["name"]), s(&x["ttl"]), s(&x["type"]), s(&x["data"])])
                .collect();
            o.push_str(&table(&rows));
        }
    };
    records("ANSWER", &r["answers"], &mut o);
    records("AUTHORITY", &r["authority"], &mut o);
    o.push('\n');
    let z = &v["zone"];
    if !z.is_null() {
        let _ = writeln!(o, "zone     {} ({})", s(&z["name"]), s(&z["kind"]));
    }
    if !v["service"].is_null() {
        let _ = writeln!(
            o,
            "service  {} ({})",
            s(&v["service"]),
            s(&v["service_type"])
        );
    }
    if let Some(rules) = v["rules"].as_array().filter(|l| !l.is_empty()) {
        o.push_str("\nRULES\n");
        let rows: Vec<Vec<String>> = rules
            .iter()
            .map(|x| vec![s(&x["rule"]), s(&x["text"])])
            .collect();
        o.push_str(&table(&rows));
    }
    if let Some(c) = v["candidates"].as_array().filter(|l| !l.is_empty()) {
        o.push_str("\nCANDIDATES\n");
        let mut rows = vec![vec![
            "CLUSTER".into(),
            "VERDICT".into(),
            "RULE".into(),
            "WHY".into(),
        ]];
        rows.extend(c.iter().map(|x| {
            vec![
                s(&x["cluster"]),
                s(&x["verdict"]),
                s(&x["rule"]),
                s(&x["detail"]),
            ]
        }));
        o.push_str(&table(&rows));
    }
    let p = &v["policy"];
    if !p.is_null() {
        let chosen: Vec<String> = p["chosen"]
            .as_array()
            .map(|a| a.iter().map(s).collect())
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "\nPOLICY   {} (local cluster {}): {} → [{}], {}\n         {}",
            s(&p["policy"]),
            s(&p["local_cluster"]),
            s(&p["basis"]),
            chosen.join(", "),
            s(&p["selection"]),
            s(&p["detail"])
        );
    }
    if let Some(m) = v["missing"].as_array().filter(|l| !l.is_empty()) {
        o.push_str("\nWHY NOT\n");
        let rows: Vec<Vec<String>> = m
            .iter()
            .map(|x| vec![s(&x["rule"]), s(&x["cause"]), s(&x["text"])])
            .collect();
        o.push_str(&table(&rows));
    }
    if let Some(c) = v["conflicts"].as_array().filter(|l| !l.is_empty()) {
        o.push_str("\nCONFLICTS\n");
        for x in c {
            let _ = writeln!(o, "  {}", s(x));
        }
    }
    let f = &v["forward"];
    if !f.is_null() {
        let _ = writeln!(o, "\nFORWARD  {}", s(&f["zone"]));
        let mut rows = vec![vec![
            "UPSTREAM".into(),
            "HEALTH".into(),
            "REQUESTS".into(),
            "FAILURES".into(),
        ]];
        for u in f["upstreams"].as_array().into_iter().flatten() {
            rows.push(vec![
                s(&u["addr"]),
                if u["healthy"] == Value::Bool(true) {
                    "up".into()
                } else {
                    "down".into()
                },
                s(&u["requests"]),
                s(&u["failures"]),
            ]);
        }
        o.push_str(&table(&rows));
    }
    o
}
