//! The operations listener (`[ops] listen`): `/health`, `/ready` and `/metrics`, and with the
//! debug API on, `/` (the status page), `/debug/fleet` and `/debug/query`. An axum router on
//! hyper's HTTP/1 server with its own accept loop; takes a bound listener and a cancellation
//! token like the DNS loops; every connection task is tracked.
//!
//! `state` is what the listener reports, `metrics` renders it (every metric is listed in
//! `docs/metrics.md`), `debug` holds the debug routes.

mod debug;
mod metrics;
mod state;
#[cfg(test)]
mod test_support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use fleetdns_dns::metrics::CONTENT_TYPE;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use debug::debug_unavailable;
pub use debug::{DEBUG_AGENT, DEBUG_OFF};
pub use state::{Installed, OpsState};

/// The request line and headers may not be longer than this.
const MAX_HEAD: usize = 8 * 1024;
/// A client has this long to send its request, and to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections beyond this are closed at once (scrapers and probes need a handful).
const MAX_CONNECTIONS: usize = 64;
/// After a failed accept (out of file descriptors), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves the ops routes on `listener` until `cancel` fires: `/health`, `/ready`, `/metrics`,
/// and with the debug API on, `/` (the status page), `/debug/fleet` and `/debug/query`.
/// An axum router on hyper's HTTP/1 server (both already in the binary through the etcd
/// client), with its own accept loop (at most [`MAX_CONNECTIONS`] at once); every connection
/// is a tracked task and closes gracefully on shutdown.
pub async fn serve_ops(listener: TcpListener, state: Arc<OpsState>, cancel: CancellationToken) {
    let app = router(state);
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(listener = "ops", error = %e, "tcp accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(listener = "ops", peer = %peer, "tcp connection limit reached, closing");
            continue;
        };
        let (app, cancel) = (app.clone(), cancel.clone());
        connections.spawn(async move {
            if let Err(e) = connection(stream, app, &cancel).await {
                tracing::debug!(listener = "ops", error = %e, peer = %peer, "tcp connection ended with an error");
            }
            drop(permit);
        });
    }
    connections.close();
    connections.wait().await;
}

/// One HTTP/1.1 connection (keep-alive allowed; a client has [`IO_TIMEOUT`] to send each
/// request head). A client that half-closes after its request still gets the response.
async fn connection<S>(stream: S, app: Router, cancel: &CancellationToken) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .half_close(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(IO_TIMEOUT)
        .max_buf_size(MAX_HEAD.max(8192));
    let conn = builder.serve_connection(
        hyper_util::rt::TokioIo::new(stream),
        hyper_util::service::TowerToHyperService::new(app),
    );
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(IO_TIMEOUT, conn.as_mut()).await.unwrap_or(Ok(()))
        }
    };
    result.map_err(std::io::Error::other)
}

/// The ops routes.
pub fn router(state: Arc<OpsState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/", get(crate::status_page::page))
        .route("/debug/fleet", get(debug::debug_fleet))
        .route("/debug/query", get(debug::debug_query))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(state)
}

async fn ready(State(state): State<Arc<OpsState>>) -> (StatusCode, &'static str) {
    if state.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no answer table installed yet\n",
        )
    }
}

async fn metrics(State(state): State<Arc<OpsState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], state.render())
}

#[cfg(test)]
mod tests {
    use super::test_support::{installed, state};
    use super::*;

    /// Sends raw request bytes through the real HTTP stack (an in-memory stream), half-closes,
    /// and reads the whole response: (status, body); status 0 when the connection closed
    /// without one.
    fn raw(state: &Arc<OpsState>, request: &[u8]) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let cancel = CancellationToken::new();
            let app = router(state.clone());
            let task = tokio::spawn(async move { connection(server, app, &cancel).await });
            client.write_all(request).await.unwrap();
            client.shutdown().await.unwrap();
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.unwrap();
            let _ = task.await;
            let text = String::from_utf8_lossy(&out).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                return (0, text);
            };
            let status = head[9..12].parse().unwrap();
            if let Some(len) = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            }) && !request.starts_with(b"HEAD")
                && !body.contains("HTTP/1.1")
            {
                assert_eq!(len.parse::<usize>().unwrap(), body.len(), "{head}");
            }
            (status, body.to_owned())
        })
    }

    fn get(state: &Arc<OpsState>, request: &str) -> (u16, String) {
        raw(state, request.as_bytes())
    }

    #[test]
    fn health_ready_and_unknown_paths() {
        let s = state();
        assert_eq!(
            get(&s, "GET /health HTTP/1.1\r\n\r\n"),
            (200, "ok\n".into())
        );
        assert_eq!(get(&s, "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n").0, 503);
        s.table_installed(installed());
        assert_eq!(
            get(&s, "GET /ready HTTP/1.1\r\n\r\n").0,
            503,
            "not listening"
        );
        s.set_listening();
        assert_eq!(get(&s, "GET /ready?verbose HTTP/1.0\r\n\r\n").0, 200);
        assert_eq!(get(&s, "GET /nope HTTP/1.1\r\n\r\n").0, 404);
        assert_eq!(get(&s, "POST /health HTTP/1.1\r\n\r\n").0, 405);
        assert_eq!(
            get(&s, "HEAD /health HTTP/1.1\r\n\r\n"),
            (200, String::new())
        );
        // Two requests on one connection (keep-alive) are both answered.
        let (_, both) = raw(
            &s,
            b"GET /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
        );
        assert!(
            both.contains("ok\n") && both.contains("HTTP/1.1 200"),
            "{both}"
        );
    }

    #[test]
    fn bad_requests_get_400() {
        let s = state();
        for bad in [
            "garbage\r\n\r\n",
            "GET\r\n\r\n",
            "GET /health\r\n\r\n",
            "GET /health HTTP/1.1 extra\r\n\r\n",
            "GET /health SPDY/3\r\n\r\n",
            "GET \u{ff} HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(get(&s, bad).0, 400, "{bad:?}");
        }
        assert_eq!(raw(&s, &[0xff, 0xfe, b'\n', b'\n']).0, 400);
        // Nothing but blank lines: closed without a response.
        assert_eq!(get(&s, "\r\n\r\n").0, 0);
    }

    #[test]
    fn the_debug_routes_say_when_the_debug_api_is_off() {
        let s = state();
        for path in ["/", "/debug/fleet", "/debug/query?name=x"] {
            let (status, body) = get(&s, &format!("GET {path} HTTP/1.1\r\n\r\n"));
            assert_eq!((status, body.as_str()), (404, DEBUG_OFF), "{path}");
        }
    }

    #[tokio::test]
    async fn serves_over_tcp_and_survives_garbage() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = state();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve_ops(listener, s.clone(), cancel.clone()));
        async fn ask(addr: std::net::SocketAddr, request: &[u8]) -> String {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(request).await.unwrap();
            c.shutdown().await.unwrap();
            let mut text = String::new();
            c.read_to_string(&mut text).await.unwrap();
            text
        }
        assert!(
            ask(addr, b"\x00\x01garbage")
                .await
                .starts_with("HTTP/1.1 400 ")
        );
        let long = ask(addr, &[b'a'; MAX_HEAD + 10]).await;
        assert!(long.starts_with("HTTP/1.1 4"), "{long:?}");
        let health = ask(addr, b"GET /health HTTP/1.1\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        let metrics = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            metrics
                .to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{metrics}"
        );
        cancel.cancel();
        task.await.unwrap();
    }
}
