//! The TCP loop, and the [`Served`] state it shares with the UDP fast path (`udp`). Each loop
//! takes an already bound socket, the shared state and a cancellation token; every task it
//! spawns is tracked and stops with the token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acl::{self, Cidr};
use crate::catalog::Catalog;
use crate::dispatch::{self, Handled};
use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::request::{Counted, Outcome, OwnedQuestion, Transport};
use crate::wire::MAX_NAME;

/// What every server task reads. Each part is swapped whole (a new registry snapshot, a
/// reloaded config) and read without locks.
#[derive(Debug)]
pub struct Served {
    /// `None` until the first snapshot: authoritative names answer SERVFAIL.
    pub table: ArcSwapOption<crate::AnswerTable>,
    /// Forward zones and their cache; `None` when none are configured.
    pub forwarder: ArcSwapOption<Forwarder>,
    /// Clients allowed to use forward zones (authoritative zones answer everyone).
    pub allow: ArcSwap<Vec<Cidr>>,
    pub metrics: Arc<Metrics>,
    /// Log every query (opt-in; `[dns] query_log`).
    pub query_log: std::sync::atomic::AtomicBool,
    /// The identity answered to the EDNS NSID option (RFC 5001); set once at start.
    pub nsid: std::sync::OnceLock<Box<[u8]>>,
}

impl Served {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            table: ArcSwapOption::empty(),
            forwarder: ArcSwapOption::empty(),
            allow: ArcSwap::from_pointee(acl::default_allow()),
            metrics,
            query_log: std::sync::atomic::AtomicBool::new(false),
            nsid: std::sync::OnceLock::new(),
        }
    }

    /// Counts an answered message and, when the query log is on, logs it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn done(
        &self,
        transport: Transport,
        peer: SocketAddr,
        request: &[u8],
        counted: Counted<'_>,
        outcome: Outcome,
        response: &[u8],
        started: Instant,
    ) {
        self.done_after(
            transport,
            peer,
            request,
            counted,
            None,
            outcome,
            response,
            started.elapsed(),
        );
    }

    /// [`Served::done`] with the time taken already measured (once for a batch of answers),
    /// and the counter of the answering zone when the caller holds it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn done_after(
        &self,
        transport: Transport,
        peer: SocketAddr,
        request: &[u8],
        counted: Counted<'_>,
        zone_counter: Option<&std::sync::atomic::AtomicU64>,
        outcome: Outcome,
        response: &[u8],
        elapsed: Duration,
    ) {
        self.metrics
            .record_with(transport, counted, zone_counter, outcome, response, elapsed);
        if self.query_log.load(std::sync::atomic::Ordering::Relaxed) {
            // Opt-in and off the counting path: the name is read again for the log line only.
            let mut lower = [0u8; MAX_NAME];
            let name = match crate::wire::parse_query(request, &mut lower) {
                Ok(q) => crate::wire::display_name(&lower[..q.name_len]),
                Err(_) => String::from("-"),
            };
            tracing::info!(
                client = %peer,
                transport = ?transport,
                name = %name,
                qtype = counted.qtype.unwrap_or(0),
                rcode = response.get(3).map_or(0, |b| b & 0x0f),
                outcome = ?outcome,
                bytes = response.len(),
                micros = elapsed.as_micros() as u64,
                "query"
            );
        }
    }

    /// The state to handle messages with, loaded now. Guards, not clones: no reference-count
    /// traffic on the hot path.
    pub(crate) fn load(&self) -> LoadedGuards {
        LoadedGuards {
            table: self.table.load(),
            forwarder: self.forwarder.load(),
        }
    }
}

/// Guards on the table and forwarder (see [`Served::load`]).
pub(crate) struct LoadedGuards {
    table: arc_swap::Guard<Option<Arc<crate::AnswerTable>>>,
    forwarder: arc_swap::Guard<Option<Arc<Forwarder>>>,
}

impl LoadedGuards {
    pub(crate) fn view<'s>(&'s self, served: &'s Served) -> Loaded<'s> {
        Loaded {
            table: self.table.as_deref(),
            forwarder: self.forwarder.as_ref(),
            allow: &served.allow,
            nsid: served.nsid.get().map(|id| &**id),
        }
    }
}

/// One worker's view of [`Served`]: the table and forwarder are re-read only after one was
/// swapped (a pointer comparison each per batch, instead of an arc-swap load). The previous
/// table is released at the worker's first batch after a swap.
pub(crate) struct CachedServed<'a> {
    table: arc_swap::Cache<&'a ArcSwapOption<crate::AnswerTable>, Option<Arc<crate::AnswerTable>>>,
    forwarder: arc_swap::Cache<&'a ArcSwapOption<Forwarder>, Option<Arc<Forwarder>>>,
    allow: &'a ArcSwap<Vec<Cidr>>,
    nsid: &'a std::sync::OnceLock<Box<[u8]>>,
}

impl<'a> CachedServed<'a> {
    pub(crate) fn new(served: &'a Served) -> Self {
        Self {
            table: arc_swap::Cache::new(&served.table),
            forwarder: arc_swap::Cache::new(&served.forwarder),
            allow: &served.allow,
            nsid: &served.nsid,
        }
    }

    /// The current state, through the cache.
    pub(crate) fn load(&mut self) -> Loaded<'_> {
        Loaded {
            table: self.table.load().as_deref(),
            forwarder: self.forwarder.load().as_ref(),
            allow: self.allow,
            nsid: self.nsid.get().map(|id| &**id),
        }
    }
}

/// The state messages are handled with: the zone catalog's parts, the allow-list (read only
/// for a name in a forward zone) and the NSID identity.
pub(crate) struct Loaded<'s> {
    table: Option<&'s crate::AnswerTable>,
    forwarder: Option<&'s Arc<Forwarder>>,
    allow: &'s ArcSwap<Vec<Cidr>>,
    nsid: Option<&'s [u8]>,
}

impl<'s> Loaded<'s> {
    /// Which table and forwarder these are (their addresses): the zones' apexes found under
    /// them stay where they are while both stay loaded.
    pub(crate) fn identity(&self) -> (usize, usize) {
        (
            self.table.map_or(0, |t| std::ptr::from_ref(t) as usize),
            self.forwarder.map_or(0, |f| Arc::as_ptr(f) as usize),
        )
    }

    /// Handles `packet` from `peer`: the request path ([`dispatch::handle`]).
    pub(crate) fn handle(
        &self,
        packet: &[u8],
        peer: SocketAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Handled<'s, Arc<Forwarder>> {
        let catalog = Catalog {
            table: self.table,
            forwarder: self.forwarder,
        };
        let allow = self.allow;
        dispatch::handle(
            catalog,
            || acl::allowed(&allow.load(), peer.ip()),
            self.nsid,
            packet,
            transport,
            out,
        )
    }
}

/// A query on its way to a forward zone, owning what its task needs.
pub(crate) struct Forwarding {
    forwarder: Arc<Forwarder>,
    zone: usize,
    question: OwnedQuestion,
}

impl Forwarding {
    pub(crate) fn new(forwarder: &Arc<Forwarder>, zone: usize, question: OwnedQuestion) -> Self {
        Self {
            forwarder: forwarder.clone(),
            zone,
            question,
        }
    }

    /// Resolves the question and writes the answer into `out`.
    pub(crate) async fn run(&self, transport: Transport, out: &mut Vec<u8>) {
        self.forwarder
            .resolve(self.zone, &self.question.as_question(), transport, out)
            .await;
    }

    /// What the metrics count of it: its type and the forward zone.
    pub(crate) fn counted(&self) -> Counted<'_> {
        Counted {
            qtype: Some(self.question.qtype),
            zone: Some(self.forwarder.zone_apex(self.zone)),
        }
    }

    pub(crate) fn outcome(&self) -> Outcome {
        Outcome::Forward(self.zone)
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

/// Serves DNS over TCP until `cancel` fires, then waits for connections to finish the messages
/// they are answering. Queries on one connection may be pipelined (RFC 7766 6.2.1.1): each is
/// answered as soon as its answer is ready, so a forwarded query waiting on its upstream never
/// holds back the authoritative answers behind it.
pub async fn serve_tcp(
    listener: TcpListener,
    served: Arc<Served>,
    options: TcpOptions,
    cancel: CancellationToken,
) {
    let max = options.max_connections;
    accept_loop(listener, max, cancel.clone(), "dns", move |stream, peer| {
        let (served, cancel) = (served.clone(), cancel.clone());
        async move { connection(stream, peer, served, options, cancel).await }
    })
    .await;
}

/// Accepts TCP connections until `cancel` fires, at most `max_connections` at once (more are
/// closed at once), each handled by `handle` in a tracked task; then waits for those tasks.
/// `name` names the listener in logs. The DNS TCP listener's alone: the ops listener has its own.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    max_connections: usize,
    cancel: CancellationToken,
    name: &'static str,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(
        max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(listener = name, peer = %peer, "tcp connection limit reached, closing");
            continue;
        };
        let work = handle(stream, peer);
        tracker.spawn(async move {
            if let Err(e) = work.await {
                tracing::debug!(listener = name, error = %e, peer = %peer, "tcp connection ended with an error");
            }
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Forwarded queries of one TCP connection waiting on upstreams at once; the next query is read
/// when one of them finishes.
const MAX_FORWARDS_PER_CONNECTION: usize = 16;

/// Whether `buf` starts with a whole length-prefixed message.
fn message_buffered(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf.len() >= 2 + usize::from(u16::from_be_bytes([buf[0], buf[1]]))
}

/// Writes `data` on the shared write half; a client that never reads must not hold its
/// connection slot forever.
async fn write_framed(
    writer: &tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>,
    data: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    tokio::time::timeout(limit, async { writer.lock().await.write_all(data).await })
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client does not read",
            ))
        })
}

/// One TCP connection. Authoritative answers are written at once, or, while more queries are
/// already buffered, gathered and written together; forwarded queries run in tasks of their
/// own that write their answers when they have them. Shutdown and idleness end the connection
/// between messages; answers in flight are always finished (the drain is bounded by the caller).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    served: Arc<Served>,
    options: TcpOptions,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let mut reader = tokio::io::BufReader::with_capacity(16 * 1024, reader);
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let mut forwards: tokio::task::JoinSet<std::io::Result<()>> = tokio::task::JoinSet::new();
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(4096);
    // Framed authoritative answers not written yet.
    let mut pending: Vec<u8> = Vec::with_capacity(16 * 1024);
    let idle = options.idle_timeout;
    let result = loop {
        if !pending.is_empty() && (pending.len() >= 64 * 1024 || !message_buffered(reader.buffer()))
        {
            if let Err(e) = write_framed(&writer, &pending, idle).await {
                break Err(e);
            }
            pending.clear();
        }
        while let Some(done) = forwards.try_join_next() {
            if let Ok(Err(e)) = done {
                tracing::debug!(peer = %peer, error = %e, "tcp answer not sent");
            }
        }
        if forwards.len() >= MAX_FORWARDS_PER_CONNECTION {
            forwards.join_next().await;
        }
        let len = tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            r = tokio::time::timeout(idle, reader.read_u16()) => match r {
                Err(_) => break Ok(()),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
                Ok(Err(e)) => break Err(e),
                Ok(Ok(len)) => len as usize,
            },
        };
        let body = &mut buf[..len];
        match tokio::time::timeout(idle, reader.read_exact(body)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => break Err(e),
            Err(_) => {
                break Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "message body timed out",
                ));
            }
        }
        let started = Instant::now();
        let guards = served.load();
        let (outcome, counted) =
            match guards
                .view(&served)
                .handle(body, peer, Transport::Tcp, &mut out)
            {
                Handled::Answered {
                    outcome: Outcome::Dropped,
                    ..
                } => {
                    served.metrics.dropped(Transport::Tcp);
                    tracing::debug!(peer = %peer, "tcp message is not a query, closing");
                    break Ok(());
                }
                Handled::Forward {
                    forwarder,
                    zone,
                    question,
                } => {
                    let forwarding = Forwarding::new(forwarder, zone, question);
                    let (packet, served, writer) = (body.to_vec(), served.clone(), writer.clone());
                    forwards.spawn(async move {
                        let mut out = Vec::new();
                        forwarding.run(Transport::Tcp, &mut out).await;
                        let mut framed = Vec::with_capacity(out.len() + 2);
                        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
                        framed.extend_from_slice(&out);
                        let sent = write_framed(&writer, &framed, idle).await;
                        served.done(
                            Transport::Tcp,
                            peer,
                            &packet,
                            forwarding.counted(),
                            forwarding.outcome(),
                            &out,
                            started,
                        );
                        sent
                    });
                    continue;
                }
                Handled::Answered { outcome, counted } => (outcome, counted),
            };
        pending.extend_from_slice(&(out.len() as u16).to_be_bytes());
        pending.extend_from_slice(&out);
        served.done(Transport::Tcp, peer, body, counted, outcome, &out, started);
    };
    let flushed = if pending.is_empty() || result.is_err() {
        Ok(())
    } else {
        write_framed(&writer, &pending, idle).await
    };
    while let Some(done) = forwards.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::debug!(peer = %peer, error = %e, "tcp answer not sent");
        }
    }
    result.and(flushed)
}
