//! UDP and TCP loops. Each takes an already bound socket, the shared table, the shared
//! [`Metrics`] and a cancellation token; every task it spawns is tracked and stops with the
//! token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::respond::{Outcome, Transport, respond};

/// The table queries read: swapped whole on every registry change, read without locks.
pub type SharedTable = Arc<ArcSwapOption<crate::AnswerTable>>;

/// Serves DNS over UDP on `socket` until `cancel` fires.
pub async fn serve_udp(
    socket: Arc<UdpSocket>,
    table: SharedTable,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(4096);
    loop {
        let (len, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on some systems: keep serving.
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            },
        };
        let started = Instant::now();
        let current = table.load();
        let outcome = respond(current.as_deref(), &buf[..len], Transport::Udp, &mut out);
        if outcome == Outcome::Dropped {
            metrics.dropped(Transport::Udp);
            continue;
        }
        if let Err(e) = socket.send_to(&out, peer).await {
            tracing::debug!(error = %e, peer = %peer, "udp send failed");
        }
        metrics.record(
            Transport::Udp,
            &buf[..len],
            outcome,
            &out,
            started.elapsed(),
        );
    }
}

/// Limits of the TCP server.
#[derive(Debug, Clone, Copy)]
pub struct TcpOptions {
    /// A connection idle this long between messages is closed (RFC 7766 suggests seconds).
    pub idle_timeout: Duration,
    /// Connections beyond this are closed at once.
    pub max_connections: usize,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// Serves DNS over TCP until `cancel` fires, then waits for connections to finish the message
/// they are answering.
pub async fn serve_tcp(
    listener: TcpListener,
    table: SharedTable,
    metrics: Arc<Metrics>,
    options: TcpOptions,
    cancel: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(options.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, "tcp connection limit reached, closing");
            continue;
        };
        let (table, metrics, cancel) = (table.clone(), metrics.clone(), cancel.clone());
        tracker.spawn(async move {
            if let Err(e) = connection(stream, peer, table, &metrics, options, cancel).await {
                tracing::debug!(error = %e, peer = %peer, "tcp connection ended with an error");
            }
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    table: SharedTable,
    metrics: &Metrics,
    options: TcpOptions,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(4096);
    loop {
        // Wait for the next message; shutdown and idleness end the connection here, between
        // messages, never in the middle of an answer.
        let len = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = tokio::time::timeout(options.idle_timeout, stream.read_u16()) => match r {
                Err(_) => return Ok(()),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(r) => r? as usize,
            },
        };
        let body = &mut buf[..len];
        tokio::time::timeout(options.idle_timeout, stream.read_exact(body))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "message body timed out")
            })??;
        let started = Instant::now();
        let current = table.load();
        let outcome = respond(current.as_deref(), body, Transport::Tcp, &mut out);
        if outcome == Outcome::Dropped {
            metrics.dropped(Transport::Tcp);
            tracing::debug!(peer = %peer, "tcp message is not a query, closing");
            return Ok(());
        }
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        let sent = stream.write_all(&framed).await;
        metrics.record(Transport::Tcp, body, outcome, &out, started.elapsed());
        sent?;
    }
}
