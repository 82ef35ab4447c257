//! Starting the config's sources: manifest folders and Kubernetes clusters, each publishing
//! to the registry; shared by `serve` (and its reloads), `agent`, `check-config` and `sync`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetdns_core::tap::ObjectsTap;
use fleetdns_core::{ClusterId, Registry};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Source;
use crate::files::{FilesSource, PollReport};
use crate::ops::OpsState;

/// How long `serve` waits for a Kubernetes source's first list before serving without it.
const INITIAL_SYNC: Duration = Duration::from_secs(5);

/// The source's kubeconfig, else `KUBECONFIG` (its first file), else the pod's service account.
pub(crate) fn kube_credentials(source: &Source) -> anyhow::Result<fleetdns_k8s::Credentials> {
    let Source::Kubernetes {
        kubeconfig,
        context,
        ..
    } = source
    else {
        anyhow::bail!("not a kubernetes source");
    };
    let path = kubeconfig.clone().or_else(|| {
        std::env::var_os("KUBECONFIG")
            .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    });
    Ok(match path {
        Some(path) => fleetdns_k8s::Credentials::Kubeconfig {
            path,
            context: context.clone(),
        },
        None if context.is_some() => anyhow::bail!(
            "kubernetes source: `context` needs a kubeconfig (set `kubeconfig` or KUBECONFIG)"
        ),
        None => fleetdns_k8s::Credentials::InCluster,
    })
}

/// Connects a kubernetes source and learns its cluster id; nothing runs yet. Credentials: the
/// source's kubeconfig, else `KUBECONFIG` (its first file), else the pod's service account.
pub(crate) async fn kube_source(
    source: &Source,
    liveness: Duration,
    tap: Option<fleetdns_core::tap::ObjectsTap>,
) -> anyhow::Result<fleetdns_k8s::ClusterSource> {
    let Source::Kubernetes {
        cluster_id,
        write_back,
        clusterset,
        ..
    } = source
    else {
        anyhow::bail!("not a kubernetes source");
    };
    let credentials = kube_credentials(source)?;
    let client = fleetdns_k8s::connect(&credentials).await?;
    let id = fleetdns_k8s::cluster_id(&client, cluster_id.as_ref())
        .await
        .with_context(|| format!("kubernetes source ({credentials})"))?;
    tracing::info!(cluster = %id, credentials = %credentials, write_back, "kubernetes source");
    let options = fleetdns_k8s::SourceOptions {
        write_back: *write_back,
        heartbeat: liveness / 3,
        clusterset: clusterset.clone(),
        tap,
        ..Default::default()
    };
    Ok(fleetdns_k8s::ClusterSource::new(client, id, options))
}

/// Polls a manifest folder once (what it holds is published before anything else starts),
/// then keeps polling it in `tracker` until `cancel` fires. Fails only when `root` itself
/// cannot be read.
pub(crate) async fn start_files(
    mut files: FilesSource,
    root: &Path,
    registry: &Arc<dyn Registry>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<PollReport> {
    let report = files
        .poll(&**registry)
        .await
        .with_context(|| format!("cannot read manifest folder {}", root.display()))?;
    tracker.spawn(files.run(registry.clone(), cancel.clone()));
    Ok(report)
}

/// Where started sources publish, and who is told about them.
pub(crate) struct SourceSinks<'a> {
    pub registry: &'a Arc<dyn Registry>,
    /// What the sources also hand to the external DNS sync (`[[sync]]`).
    pub tap: &'a Option<ObjectsTap>,
    /// Shows the kubernetes sources' status and, with the debug API, each cluster's kind.
    pub ops: &'a OpsState,
    pub liveness: Duration,
}

/// Loads every source once (so the first table is complete), then keeps them running.
/// Returns the clusters they publish, and the cluster of the one in-cluster kubernetes
/// source if there is exactly one.
pub(crate) async fn start_sources(
    sources: &[Source],
    to: &SourceSinks<'_>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<(Vec<ClusterId>, Option<ClusterId>)> {
    let registry: Arc<dyn Registry> = to.registry.clone();
    let mut published = Vec::new();
    let mut in_cluster = Vec::new();
    let mut kube_sources = Vec::new();
    for source in sources {
        match source {
            Source::Files { root, interval } => {
                let files = FilesSource::new(root.clone(), *interval).with_tap(to.tap.clone());
                let report = start_files(files, root, &registry, &cancel, tracker).await?;
                // Every folder found: a cluster whose manifests fail to parse right now keeps
                // its last good state and must not be withdrawn.
                published.extend(report.present);
            }
            Source::Kubernetes { .. } => {
                let in_pod = kube_credentials(source)? == fleetdns_k8s::Credentials::InCluster;
                let source = kube_source(source, to.liveness, to.tap.clone()).await?;
                if published.contains(source.cluster()) {
                    anyhow::bail!(
                        "two sources publish cluster {}: give each kubernetes source its own cluster_id",
                        source.cluster()
                    );
                }
                if in_pod {
                    in_cluster.push(source.cluster().clone());
                }
                published.push(source.cluster().clone());
                kube_sources.push(source);
            }
        }
    }
    // Everything checked: start the watchers, and give them a moment to list their
    // clusters so the first table has them (CoreDNS multicluster waits 5 s too, CMC-5).
    let mut synced = Vec::new();
    let mut statuses = Vec::new();
    for source in kube_sources {
        synced.push((source.cluster().clone(), source.synced()));
        statuses.push(source.status());
        if let Some(tap) = to.tap {
            // The external DNS sync waits for this cluster's first list.
            tap.expect(source.cluster());
        }
        tracker.spawn(source.run(registry.clone(), cancel.clone()));
    }
    to.ops.set_sources(statuses);
    if let Some(debug) = &to.ops.debug {
        use crate::debug_api::SourceKind;
        let kube: Vec<&ClusterId> = synced.iter().map(|(c, _)| c).collect();
        debug.set_local_sources(
            published
                .iter()
                .map(|c| {
                    let kind = if kube.contains(&c) {
                        SourceKind::Kubernetes
                    } else {
                        SourceKind::Files
                    };
                    (c.clone(), kind)
                })
                .collect(),
        );
    }
    let waits = synced.iter_mut().map(|(cluster, rx)| async move {
        if tokio::time::timeout(INITIAL_SYNC, rx.wait_for(|s| *s))
            .await
            .is_err()
        {
            tracing::warn!(cluster = %cluster, "cluster not listed yet; serving without it until it is");
        }
    });
    futures::future::join_all(waits).await;
    let in_cluster = (in_cluster.len() == 1).then(|| in_cluster.remove(0));
    Ok((published, in_cluster))
}
