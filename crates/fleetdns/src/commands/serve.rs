//! `fleetdns serve`: binds the DNS listeners (UDP and TCP on one port) and the ops listener,
//! starts the sources, compiles every snapshot into an answer table, and reloads until told to
//! stop; what it shares with the other commands lives in [`crate::runtime`].

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetdns_dns::{Metrics, Served, TcpOptions};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::Backend;
use crate::config::Config;
use crate::ops::{self, OpsState};
use crate::runtime;
use crate::runtime::compile::spawn_compile_loop;
use crate::runtime::reload::{Live, forwarder_for};
use crate::runtime::sources::start_sources;

pub fn serve(config_path: &Path, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(config_path)?;
    if let Some(addr) = listen {
        config.dns.listen = addr;
    }
    runtime::build()?.block_on(run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn bind_udp(
    addr: SocketAddr,
    buffer: usize,
    reuse_port: bool,
) -> anyhow::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        socket
            .set_reuse_port(true)
            .context("cannot set SO_REUSEPORT")?;
    }
    // Bursts of queries overflow the kernel's default 208 KB; ask for more (capped by rmem_max).
    if let Err(e) = socket.set_recv_buffer_size(buffer) {
        tracing::warn!(error = %e, "cannot size the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer) {
        tracing::warn!(error = %e, "cannot size the UDP send buffer");
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind UDP {addr}"))?;
    Ok(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind TCP {addr}"))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The UDP socket and the TCP listener on one port. With port 0 the kernel picks the UDP port;
/// if TCP cannot have the same one (another process holds it), another port is tried.
fn bind_pair(
    addr: SocketAddr,
    buffer: usize,
    reuse_port: bool,
) -> anyhow::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    const TRIES_FOR_PORT_ZERO: usize = 16;
    let mut tries = 0;
    loop {
        let udp = bind_udp(addr, buffer, reuse_port)?;
        let bound = udp.local_addr()?;
        match bind_tcp(bound) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(_) if addr.port() == 0 && tries + 1 < TRIES_FOR_PORT_ZERO => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let addr = config.dns.listen;
    // One socket shared by every UDP worker, or with `reuse_port` one socket per worker (the
    // kernel spreads queries over them by source address and port).
    let (first, tcp) = bind_pair(addr, config.dns.udp_buffer_bytes, config.dns.reuse_port)?;
    let bound = first.local_addr()?; // the real port when `listen` asks for port 0
    let mut udp = vec![Arc::new(first)];
    if config.dns.reuse_port {
        for _ in 1..config.dns.udp_workers {
            udp.push(Arc::new(bind_udp(
                bound,
                config.dns.udp_buffer_bytes,
                true,
            )?));
        }
    }
    let tcp = tokio::net::TcpListener::from_std(tcp)?;
    let ops_listener = match config.ops.listen {
        Some(ops_addr) => Some(
            tokio::net::TcpListener::bind(ops_addr)
                .await
                .with_context(|| format!("cannot bind the ops listener {ops_addr}"))?,
        ),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let served = Arc::new(Served::new(metrics.clone()));
    served.allow.store(Arc::new(config.allow.clone()));
    served
        .query_log
        .store(config.dns.query_log, std::sync::atomic::Ordering::Relaxed);
    if !config.forward.is_empty() {
        let forwarder = Arc::new(forwarder_for(&config, &metrics).context("forward zones")?);
        served.forwarder.store(Some(forwarder));
    }
    let identity = server_identity(&config);
    let _ = served
        .nsid
        .set(identity.clone().into_bytes().into_boxed_slice());
    let mut ops_state = OpsState::new(metrics.clone()).with_served(served.clone());
    if config.ops.debug {
        ops_state = ops_state.with_debug(Arc::new(crate::debug_api::DebugState::new(
            if config.etcd.is_some() {
                "etcd"
            } else {
                "memory"
            },
            config.liveness_timeout,
            identity.clone(),
        )));
    }
    let ops = Arc::new(ops_state);
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();

    // /health answers while sources load; /ready waits for the first table.
    if let Some(listener) = ops_listener {
        tracing::info!(listen = %listener.local_addr()?, debug = config.ops.debug, "ops listening (/health, /ready, /metrics; with debug: /, /debug/fleet, /debug/query)");
        tasks.spawn(ops::serve_ops(listener, ops.clone(), cancel.clone()));
    }
    // Listeners first: until the first snapshot, authoritative zones answer SERVFAIL.
    let udp_options = fleetdns_dns::UdpOptions {
        realtime: config.dns.udp_realtime,
    };
    for worker in 0..config.dns.udp_workers {
        let socket = udp[worker % udp.len()].clone();
        let (served, cancel) = (served.clone(), cancel.clone());
        tasks.spawn(async move {
            // Its own thread per worker, blocking in recvmmsg (fleetdns_dns::udp).
            if let Err(e) =
                fleetdns_dns::serve_udp_batched(socket, served, udp_options, cancel).await
            {
                tracing::error!(error = %e, "cannot start a UDP worker");
            }
        });
    }
    let tcp_options = TcpOptions {
        idle_timeout: Duration::from_millis(config.dns.tcp_idle_timeout_ms),
        max_connections: config.dns.tcp_max_connections,
    };
    tasks.spawn(fleetdns_dns::serve_tcp(
        tcp,
        served.clone(),
        tcp_options,
        cancel.clone(),
    ));
    ops.set_listening();
    tracing::info!(listen = %bound, "listening on UDP and TCP");

    let backend = Backend::open(&config).await?;
    backend.spawn(&tasks, &cancel);
    if let Some(status) = backend.etcd_status() {
        crate::runtime::memory::spawn_trimmer(&tasks, &cancel, status);
    }
    ops.set_etcd(backend.etcd_status());
    let registry = backend.registry.clone();
    let tap = crate::publish::tap_for(&config);
    let sync_jobs = crate::publish::jobs(&config).await?;
    let (zones_tx, zones_rx) = watch::channel(config.zones.clone());
    let mut live = Live {
        served: served.clone(),
        ops: ops.clone(),
        registry: registry.clone(),
        zones: zones_tx,
        in_cluster: None,
        published: Vec::new(),
        tasks: tasks.clone(),
        sources_gen: cancel.child_token(),
        sources_tasks: TaskTracker::new(),
        checks_gen: cancel.child_token(),
        root: cancel.clone(),
        config,
        tap,
    };
    let (published, in_cluster) = start_sources(
        &live.config.sources,
        &live.sinks(),
        live.sources_gen.clone(),
        &live.sources_tasks,
    )
    .await?;
    live.in_cluster = in_cluster;
    live.published = published;
    if live.config.zones.local_cluster.is_none()
        && let Some(id) = &live.in_cluster
    {
        tracing::info!(cluster = %id, "local cluster (for local-first): the in-cluster source's");
        live.zones
            .send_replace(live.effective_zones(&live.config.zones));
    }
    live.start_health_checks();
    // Every source has loaded once: the external DNS sync sees complete sets from the start.
    if let Some(tap) = &live.tap {
        ops.set_sync(crate::publish::spawn(
            sync_jobs, &registry, tap, &tasks, &cancel,
        ));
    }
    // Every source has loaded once: compile now, on every registry change and on new zones.
    spawn_compile_loop(&tasks, registry.subscribe(), zones_rx, served, ops, cancel);
    // Reload on SIGHUP and when the config file changes; stop on SIGINT/SIGTERM.
    live.run_until_shutdown().await
}

/// `[dns] nsid`, else the host name (in Kubernetes the pod name): the identity this server
/// answers NSID queries with and reports in the debug API.
pub(crate) fn server_identity(config: &Config) -> String {
    if let Some(id) = &config.dns.nsid {
        return id.clone();
    }
    match hostname::get() {
        Ok(name) => name.to_string_lossy().into_owned(),
        Err(_) => "fleetdns".into(),
    }
}
