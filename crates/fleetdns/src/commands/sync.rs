//! `fleetdns sync [--dry-run]`: loads the config's sources once and plans (and applies) every
//! `[[sync]]` block once, as ExternalDNS would.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use fleetdns_core::tap::{ObjectsTap, TappedObjects};
use fleetdns_core::{FleetSnapshot, MemoryRegistry, Registry};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::Backend;
use crate::config::{Config, Source};
use crate::files::FilesSource;
use crate::publish::jobs;
use crate::runtime;
use crate::runtime::sources::kube_source;

/// How long `fleetdns sync` waits for a Kubernetes source's first list or the registry's
/// first snapshot.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// `fleetdns sync [--dry-run]`: loads the config's sources once, plans (and applies) every
/// `[[sync]]` block once. Exit 0 when every change was applied (or, with `--dry-run`, when
/// every zone could be read); 1 otherwise, with the reason.
pub fn sync_command(config_path: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    if config.sync.is_empty() {
        bail!("{}: no [[sync]] blocks", config.path.display());
    }
    runtime::build()?.block_on(async move {
        let jobs = jobs(&config).await?;
        let (snapshot, tapped) = load_once(&config).await?;
        let mut failed = false;
        for job in &jobs {
            let s = &job.settings;
            println!(
                "zone {} via {} (owner {}, policy {}{})",
                s.zone,
                job.provider.name(),
                s.owner_id,
                s.policy,
                if dry_run { ", dry run" } else { "" }
            );
            let desired = job.desired(snapshot.as_deref(), &tapped);
            for w in &desired.warnings {
                println!("  skipped: {w}");
            }
            match job.once(desired, dry_run).await {
                Ok(outcome) => {
                    for line in outcome.plan.to_string().lines() {
                        println!("  {line}");
                    }
                    let p = &outcome.plan;
                    println!(
                        "  plan: {} to create, {} to update, {} to delete, {} left alone",
                        p.creates.len(),
                        p.updates.len(),
                        p.deletes.len(),
                        p.left_alone.len()
                    );
                    if !dry_run {
                        fleetdns_publish::sync::log_outcome(&s.zone, &outcome);
                        let a = outcome.applied;
                        println!(
                            "  applied: {} created, {} updated, {} deleted in {} messages",
                            a.creates, a.updates, a.deletes, a.messages
                        );
                    }
                }
                Err(e) => {
                    failed = true;
                    println!("  error ({}): {e}", e.kind());
                }
            }
        }
        Ok(if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// Runs the config's sources once: their annotated Services through a tap, their exports
/// into a throwaway memory registry. The fleet snapshot is that registry's, or with
/// `[registry] kind = "etcd"` the shared registry's.
async fn load_once(config: &Config) -> anyhow::Result<(Option<Arc<FleetSnapshot>>, TappedObjects)> {
    let tap = ObjectsTap::new(fleetdns_publish::desired::is_annotated);
    let local: Arc<dyn Registry> = Arc::new(MemoryRegistry::new(config.liveness_timeout));
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let result = async {
        let mut synced = Vec::new();
        for source in &config.sources {
            match source {
                Source::Files { root, interval } => {
                    let report = FilesSource::new(root.clone(), *interval)
                        .with_tap(Some(tap.clone()))
                        .poll(&*local)
                        .await
                        .with_context(|| {
                            format!("cannot read manifest folder {}", root.display())
                        })?;
                    if let Some(e) = report.errors.first() {
                        bail!("manifests: {e}");
                    }
                }
                Source::Kubernetes { .. } => {
                    let source =
                        kube_source(source, config.liveness_timeout, Some(tap.clone())).await?;
                    synced.push((source.cluster().clone(), source.synced()));
                    tap.expect(source.cluster());
                    tasks.spawn(source.run(local.clone(), cancel.clone()));
                }
            }
        }
        for (cluster, rx) in &mut synced {
            tokio::time::timeout(LOAD_TIMEOUT, rx.wait_for(|s| *s))
                .await
                .map_err(|_| {
                    anyhow::anyhow!("cluster {cluster} not listed within {LOAD_TIMEOUT:?}")
                })?
                .map_err(|_| anyhow::anyhow!("cluster {cluster}: source stopped"))?;
        }
        let snapshot = if config.etcd.is_some() {
            let backend = Backend::open(config).await?;
            backend.spawn(&tasks, &cancel);
            let mut rx = backend.registry.subscribe();
            tokio::time::timeout(LOAD_TIMEOUT, rx.wait_for(Option::is_some))
                .await
                .map_err(|_| anyhow::anyhow!("etcd registry not loaded within {LOAD_TIMEOUT:?}"))?
                .map_err(|_| anyhow::anyhow!("etcd registry stopped"))?
                .clone()
        } else {
            local.subscribe().borrow().clone()
        };
        Ok((snapshot, tap.current()))
    }
    .await;
    cancel.cancel();
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    result
}
