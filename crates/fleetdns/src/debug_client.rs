//! What `fleetdns query` and `fleetdns status` share: a GET from a server's debug API (its ops
//! listener) with errors that say what to do, and rows printed as aligned columns.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// How long a request to the ops listener may take.
const TIMEOUT: Duration = Duration::from_secs(5);

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
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
