//! `fleetdns agent`: the kubernetes source of the cluster it runs in, publishing to the
//! configured registry and writing back into its own cluster, without a DNS listener. With the
//! `memory` registry the published set is visible only in this process; a shared registry
//! (etcd) is what makes the agent useful across machines: only the backend changes.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use fleetdns_core::{MemoryRegistry, Registry};
use fleetdns_dns::Metrics;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Source};
use crate::ops::{self, OpsState};
use crate::serve::{kube_source, runtime, shutdown_signal};

pub fn agent(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let [source @ Source::Kubernetes { .. }] = config.sources.as_slice() else {
        bail!(
            "{}: an agent needs exactly one [[sources]] of kind \"kubernetes\": the cluster it runs in",
            config.path.display()
        );
    };
    runtime()?.block_on(async move {
        // The registry backend; issue 5 adds etcd here.
        let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new(config.liveness_timeout));
        tracing::warn!(
            "registry kind \"memory\": this agent's exports are visible only inside this process"
        );
        let source = kube_source(source, config.liveness_timeout).await?;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let ops = Arc::new(OpsState::new(Arc::new(Metrics::new())));
        ops.set_sources(vec![source.status()]);
        if let Some(addr) = config.ops.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind the ops listener {addr}"))?;
            tasks.spawn(ops::serve_ops(listener, ops.clone(), cancel.clone()));
        }
        let mut synced = source.synced();
        tracing::info!(cluster = %source.cluster(), "agent running");
        tasks.spawn(source.run(registry, cancel.clone()));
        {
            let ops = ops.clone();
            let cancel = cancel.clone();
            tasks.spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    r = synced.wait_for(|s| *s) => if r.is_ok() { ops.set_ready_without_table() },
                }
            });
        }
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
