//! `fleetdns agent`: runs the config's sources (the cluster it runs in, as a kubernetes source;
//! or manifest folders standing in for clusters) and publishes them to the configured
//! registry, without a DNS listener. With `[registry] kind = "etcd"` every DNS server of the
//! fleet reads what it publishes; with `memory` it is visible only inside this process.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use fleetdns_dns::Metrics;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::Backend;
use crate::config::{Config, Source};
use crate::files::FilesSource;
use crate::ops::{self, OpsState};
use crate::runtime;
use crate::runtime::signals::shutdown_signal;
use crate::runtime::sources::{kube_source, start_files};

pub fn agent(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    if config.sources.is_empty() {
        bail!(
            "{}: an agent needs [[sources]] (the cluster it runs in)",
            config.path.display()
        );
    }
    runtime::build()?.block_on(async move {
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let backend = Backend::open(&config).await?;
        if config.etcd.is_none() {
            tracing::warn!("registry kind \"memory\": this agent's exports are visible only inside this process");
        }
        backend.spawn(&tasks, &cancel);
        if let Some(status) = backend.etcd_status() {
            crate::runtime::memory::spawn_trimmer(&tasks, &cancel, status);
        }
        let registry = backend.registry.clone();
        let tap = crate::publish::tap_for(&config);
        let sync_jobs = crate::publish::jobs(&config).await?;
        let ops = Arc::new(OpsState::new(Arc::new(Metrics::new())));
        ops.set_etcd(backend.etcd_status());
        if let Some(addr) = config.ops.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind the ops listener {addr}"))?;
            tasks.spawn(ops::serve_ops(listener, ops.clone(), cancel.clone()));
        }
        let mut statuses = Vec::new();
        let mut synced = Vec::new();
        for source in &config.sources {
            match source {
                Source::Files { root, interval } => {
                    let files = FilesSource::new(root.clone(), *interval).with_tap(tap.clone());
                    start_files(files, root, &registry, &cancel, &tasks).await?;
                }
                Source::Kubernetes { .. } => {
                    let source = kube_source(source, config.liveness_timeout, tap.clone()).await?;
                    statuses.push(source.status());
                    synced.push(source.synced());
                    tracing::info!(cluster = %source.cluster(), "agent watching");
                    if let Some(tap) = &tap {
                        tap.expect(source.cluster());
                    }
                    tasks.spawn(source.run(registry.clone(), cancel.clone()));
                }
            }
        }
        ops.set_sources(statuses);
        if let Some(tap) = &tap {
            ops.set_sync(crate::publish::spawn(
                sync_jobs, &registry, tap, &tasks, &cancel,
            ));
        }
        {
            let (ops, cancel) = (ops.clone(), cancel.clone());
            tasks.spawn(async move {
                let all = futures::future::join_all(synced.iter_mut().map(|rx| async move {
                    let _ = rx.wait_for(|s| *s).await;
                }));
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = all => ops.set_ready_without_table(),
                }
            });
        }
        tracing::info!("agent running");
        shutdown_signal().await;
        tracing::info!("shutting down");
        cancel.cancel();
        tasks.close();
        if tokio::time::timeout(std::time::Duration::from_secs(5), tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop in time");
        }
        Ok(ExitCode::SUCCESS)
    })
}
