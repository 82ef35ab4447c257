//! `fleetdns istio service-entries`, which prints the ServiceEntries a consuming cluster needs
//! for every exported service of the other clusters (the ones Service Mesh Hub generated in
//! the second seed: `<svc>.<ns>.<cluster>`, MESH_INTERNAL, resolution DNS, the fleet VIP, the
//! remote cluster's east-west gateway on 15443, IST-5/IST-6).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use fleetdns_core::{ClusterId, Export, FleetSnapshot, Protocol, ServiceKey, merge_fleet};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Source};

#[derive(Debug, clap::Subcommand)]
pub enum IstioCommand {
    /// Print (as YAML for `kubectl apply -f -`) the ServiceEntries cluster C needs to reach
    /// every service the other clusters export: host `<svc>.<ns>.<cluster>`, the fleet VIP,
    /// the remote east-west gateway as endpoint.
    ServiceEntries {
        #[arg(long)]
        config: PathBuf,
        /// The consuming cluster (its own services are left out).
        #[arg(long)]
        cluster: String,
        /// Namespace of the printed ServiceEntries.
        #[arg(long, default_value = "istio-system")]
        namespace: String,
        /// How long to wait for the registry's first snapshot (etcd).
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
    },
}

pub fn run(cmd: &IstioCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IstioCommand::ServiceEntries {
            config,
            cluster,
            namespace,
            timeout_secs,
        } => {
            let config = Config::load(config)?;
            let cluster = ClusterId::new(cluster).context("--cluster")?;
            fleetdns_core::id::check_label("namespace", namespace).context("--namespace")?;
            if config.vips.is_none() {
                bail!(
                    "{}: ServiceEntries carry the fleet VIP; set registry.vip_range",
                    config.path.display()
                );
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let snapshot = runtime.block_on(fleet(&config, Duration::from_secs(*timeout_secs)))?;
            print!(
                "{}",
                render_service_entries(&snapshot, &config, &cluster, namespace)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The fleet as the config's registry holds it: etcd is read as it is (agents and servers
/// filled it, VIPs included); the memory registry is filled here from the config's files
/// sources, once, in cluster order (VIPs as a server with the same folders allocates them on
/// its first poll).
async fn fleet(config: &Config, timeout: Duration) -> anyhow::Result<Arc<FleetSnapshot>> {
    let backend = crate::backend::Backend::open(config).await?;
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();
    backend.spawn(&tasks, &cancel);
    if let Some(status) = backend.etcd_status() {
        crate::runtime::memory::spawn_trimmer(&tasks, &cancel, status);
    }
    if config.etcd.is_none() {
        for source in &config.sources {
            match source {
                Source::Files { root, interval } => {
                    let mut files = crate::files::FilesSource::new(root.clone(), *interval);
                    let report = files.poll(&*backend.registry).await?;
                    for e in report.errors {
                        tracing::warn!(error = %e, "manifest not read");
                    }
                }
                Source::Kubernetes { .. } => bail!(
                    "{}: with the memory registry only files sources can be read here; use the etcd registry the agents publish to",
                    config.path.display()
                ),
            }
        }
    }
    let mut rx = backend.registry.subscribe();
    let snapshot = tokio::time::timeout(timeout, async {
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                return Ok(s);
            }
            if rx.changed().await.is_err() {
                bail!("the registry closed");
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no registry snapshot within {timeout:?}"))??;
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(snapshot)
}

/// Istio's port protocol from the Kubernetes port: appProtocol, else the name prefix
/// (`http-web` → HTTP, Istio's naming convention), else TCP. `None` for UDP/SCTP, which a
/// ServiceEntry cannot route.
fn istio_protocol(port: &fleetdns_core::Port) -> Option<&'static str> {
    if port.protocol != Protocol::Tcp {
        return None;
    }
    let hint = port
        .app_protocol
        .as_deref()
        .or(port.name.as_deref())
        .unwrap_or("")
        .to_ascii_lowercase();
    let prefix = hint.split(['-', '.']).next().unwrap_or("");
    Some(match prefix {
        "http" => "HTTP",
        "http2" | "kubernetes.io/h2c" => "HTTP2",
        "https" => "HTTPS",
        "grpc" | "grpc-web" => "GRPC",
        "tls" => "TLS",
        "mongo" => "MONGO",
        _ => "TCP",
    })
}

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// The ServiceEntries `consumer` needs, one per (service, other cluster exporting it).
pub fn render_service_entries(
    snapshot: &FleetSnapshot,
    config: &Config,
    consumer: &ClusterId,
    namespace: &str,
) -> String {
    let merged = merge_fleet(snapshot);
    let mesh = &config.zones.mesh;
    let mut out = String::new();
    for (key, service) in &merged {
        let Some(vip) = snapshot.vips.get(key) else {
            tracing::warn!(service = %key, "no fleet VIP yet, no ServiceEntry");
            continue;
        };
        for export in service.members.iter().filter(|e| &e.cluster != consumer) {
            out.push_str(&render_one(
                key,
                export,
                &service.ports,
                *vip,
                mesh,
                namespace,
            ));
        }
    }
    out
}

fn render_one(
    key: &ServiceKey,
    export: &Export,
    ports: &[fleetdns_core::Port],
    vip: std::net::IpAddr,
    mesh: &fleetdns_dns::MeshZones,
    namespace: &str,
) -> String {
    let cluster = export.cluster.as_str();
    let host = format!(
        "{}.{}.{}",
        key.name(),
        key.namespace(),
        mesh.cluster_zone_name(cluster)
    );
    let gateway = match mesh.gateway(cluster) {
        Some(Ok(sa)) => Some(sa),
        Some(Err(_)) | None => None, // validated with the config; absent: said below
    };
    let mut s = String::new();
    let _ = writeln!(s, "---");
    let _ = writeln!(s, "apiVersion: networking.istio.io/v1");
    let _ = writeln!(s, "kind: ServiceEntry");
    let _ = writeln!(s, "metadata:");
    let _ = writeln!(s, "  name: {}", q(&host));
    let _ = writeln!(s, "  namespace: {}", q(namespace));
    let _ = writeln!(s, "  labels:");
    let _ = writeln!(s, "    app.kubernetes.io/managed-by: fleetdns");
    let _ = writeln!(s, "    cluster: {}", q(cluster));
    let _ = writeln!(s, "spec:");
    let _ = writeln!(s, "  hosts:");
    let _ = writeln!(s, "  - {}", q(&host));
    let _ = writeln!(s, "  location: MESH_INTERNAL");
    let _ = writeln!(s, "  resolution: DNS");
    let _ = writeln!(s, "  addresses:");
    let _ = writeln!(s, "  - {}", q(&vip.to_string()));
    // Ports this cluster exposes; each needs a name for the endpoint's port map.
    let mut names = Vec::new();
    let mut port_lines = String::new();
    for port in ports
        .iter()
        .filter(|p| fleetdns_core::MergedService::exposes(export, p))
    {
        let Some(protocol) = istio_protocol(port) else {
            continue;
        };
        let name = port.name.as_ref().map_or_else(
            || format!("{}-{}", protocol.to_ascii_lowercase(), port.port),
            ToString::to_string,
        );
        let _ = writeln!(port_lines, "  - number: {}", port.port);
        let _ = writeln!(port_lines, "    name: {}", q(&name));
        let _ = writeln!(port_lines, "    protocol: {protocol}");
        names.push(name);
    }
    if !port_lines.is_empty() {
        let _ = writeln!(s, "  ports:");
        s.push_str(&port_lines);
    }
    let zone = export.endpoints.iter().find_map(|e| e.zone.clone());
    let locality = match zone {
        Some(z) => format!("{cluster}/{z}"),
        None => cluster.to_owned(),
    };
    match gateway {
        Some(gw) => {
            let _ = writeln!(s, "  endpoints:");
            let _ = writeln!(s, "  - address: {}", q(&gw.ip().to_string()));
            let _ = writeln!(s, "    locality: {}", q(&locality));
            let _ = writeln!(s, "    labels:");
            let _ = writeln!(s, "      cluster: {}", q(cluster));
            if !names.is_empty() {
                let _ = writeln!(s, "    ports:");
                for n in &names {
                    let _ = writeln!(s, "      {}: {}", q(n), gw.port());
                }
            }
        }
        None => {
            tracing::warn!(cluster = %cluster, "no [mesh] gateways entry for this cluster: its ServiceEntries have no endpoint");
        }
    }
    s
}
