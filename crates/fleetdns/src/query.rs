//! `fleetdns query NAME [TYPE]`: how a server answers a name and why, from its debug API
//! (`--server HOST:OPSPORT`), or from a config alone (`--config F`: its manifest folders are
//! read once, as `check-config` does). Human tables by default, `--json` for the raw report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use fleetdns_core::{MemoryRegistry, Registry, merge_fleet};
use fleetdns_dns::explain::{self, FleetHistory, Inputs};
use serde_json::Value;

use crate::config::{Config, Source};
use crate::files::FilesSource;

/// How long a request to the ops listener may take.
const TIMEOUT: Duration = Duration::from_secs(5);

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

/// GETs `path` from the ops listener at `server`; errors say what to do.
pub fn fetch(server: &str, path: &str) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (status, body) = rt
        .block_on(async { tokio::time::timeout(TIMEOUT, get(server, path)).await })
        .map_err(|_| {
            anyhow::anyhow!(
                "the fleetdns ops listener at {server} did not answer within {} s (is that the DNS port rather than [ops] listen?)",
                TIMEOUT.as_secs()
            )
        })??;
    match status {
        200 => Ok(body),
        404 if body == crate::ops::DEBUG_AGENT => bail!(
            "{server} is a fleetdns agent, which answers no DNS: give the ops address of a DNS server (fleetdns serve)"
        ),
        404 if body == crate::ops::DEBUG_OFF => bail!(
            "the server at {server} has its debug API off ([ops] debug = false); turn it on to use `fleetdns query` and `fleetdns status`"
        ),
        404 => bail!(
            "{server} does not serve {}: is it a fleetdns ops listener ([ops] listen), not the DNS port?",
            path.split('?').next().unwrap_or(path)
        ),
        400 => {
            let msg = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            bail!("{msg}")
        }
        _ => bail!("{server} answered HTTP {status}: {}", body.trim()),
    }
}

async fn get(server: &str, path: &str) -> anyhow::Result<(u16, String)> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(server).await.with_context(|| {
        format!("cannot reach the fleetdns ops listener at {server} (is `fleetdns serve` running with [ops] listen = \"{server}\"?)")
    })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .with_context(|| format!("{server}: HTTP handshake failed"))?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, server)
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .context("bad request")?;
    let response = sender.send_request(request).await.with_context(|| {
        format!("{server} is not an HTTP server (the DNS port instead of the ops port?)")
    })?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("{server}: the response broke off"))?
        .to_bytes();
    driver.abort();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The explanation from the config alone: every files source read once into a memory
/// registry, compiled, explained with no history. Kubernetes sources are not contacted.
fn from_config(path: &std::path::Path, name: &str, qtype: &str) -> anyhow::Result<String> {
    let config = Config::load(path)?;
    let qtype = explain::parse_qtype(qtype)?;
    let rt = crate::serve::runtime()?;
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

/// Rows as aligned columns, two spaces apart, the last column unpadded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The human form of a `/debug/query` report.
pub fn render(v: &Value, via: Option<&str>) -> String {
    let mut o = String::new();
    let r = &v["response"];
    o.push_str(&format!(
        "{} {}: {} ({}{})\n",
        s(&v["name"]),
        s(&v["qtype"]),
        s(&r["rcode"]),
        s(&r["outcome"]),
        if r["authoritative"] == Value::Bool(true) {
            ", authoritative"
        } else {
            ""
        }
    ));
    o.push_str(&format!(
        "server {} (fleetdns {}){}\n",
        s(&v["server"]["nsid"]),
        s(&v["server"]["version"]),
        via.map_or(String::new(), |a| format!(" via {a}"))
    ));
    let records = |title: &str, list: &Value, o: &mut String| {
        if let Some(list) = list.as_array().filter(|l| !l.is_empty()) {
            o.push_str(&format!("\n{title}\n"));
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
        o.push_str(&format!("zone     {} ({})\n", s(&z["name"]), s(&z["kind"])));
    }
    if !v["service"].is_null() {
        o.push_str(&format!(
            "service  {} ({})\n",
            s(&v["service"]),
            s(&v["service_type"])
        ));
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
        o.push_str(&format!(
            "\nPOLICY   {} (local cluster {}): {} → [{}], {}\n         {}\n",
            s(&p["policy"]),
            s(&p["local_cluster"]),
            s(&p["basis"]),
            chosen.join(", "),
            s(&p["selection"]),
            s(&p["detail"])
        ));
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
            o.push_str(&format!("  {}\n", s(x)));
        }
    }
    let f = &v["forward"];
    if !f.is_null() {
        o.push_str(&format!("\nFORWARD  {}\n", s(&f["zone"])));
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
