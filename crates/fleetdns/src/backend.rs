//! Opening the configured registry: memory (one process) or etcd (a fleet of processes).

use std::sync::Arc;

use anyhow::Context;
use fleetdns_core::{MemoryRegistry, Registry};
use fleetdns_etcd::{EtcdConfig, EtcdRegistry, EtcdStatus, TlsPem};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;

pub struct Backend {
    pub registry: Arc<dyn Registry>,
    memory: Option<Arc<MemoryRegistry>>,
    etcd: Option<Arc<EtcdRegistry>>,
}

impl Backend {
    /// Builds the registry; nothing runs until [`Backend::spawn`]. An etcd that is down is not
    /// an error here: the reader retries, and writes report it.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let Some(e) = &config.etcd else {
            let mut memory = MemoryRegistry::new(config.liveness_timeout);
            if let Some((range, grace)) = config.vips {
                memory = memory.with_vips(range, grace);
            }
            if let Some(range6) = config.vips_v6 {
                memory = memory.with_vips_v6(range6);
            }
            let memory = Arc::new(memory);
            return Ok(Self {
                registry: memory.clone(),
                memory: Some(memory),
                etcd: None,
            });
        };
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
        };
        let tls = if e.ca_file.is_some() || e.cert_file.is_some() {
            Some(TlsPem {
                ca: e.ca_file.as_deref().map(read).transpose()?,
                identity: match (&e.cert_file, &e.key_file) {
                    (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                    _ => None,
                },
            })
        } else {
            None
        };
        let etcd = EtcdRegistry::connect(&EtcdConfig {
            endpoints: e.endpoints.clone(),
            prefix: e.prefix.clone(),
            lease_ttl_secs: e.lease_ttl_secs as i64,
            dial_timeout: std::time::Duration::from_millis(e.dial_timeout_ms),
            request_timeout: std::time::Duration::from_millis(e.request_timeout_ms),
            user: e.username.clone().zip(e.password.clone()),
            tls,
            vips: config.vips,
            vips_v6: config.vips_v6,
        })
        .await
        .context("etcd registry")?;
        let etcd = Arc::new(etcd);
        tracing::info!(endpoints = ?e.endpoints, prefix = %e.prefix, lease_ttl_secs = e.lease_ttl_secs, "etcd registry");
        Ok(Self {
            registry: etcd.clone(),
            memory: None,
            etcd: Some(etcd),
        })
    }

    /// Starts the registry's own task: the liveness sweep (memory) or the snapshot + watch
    /// reader (etcd).
    pub fn spawn(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        if let Some(memory) = &self.memory {
            let (memory, cancel) = (memory.clone(), cancel.clone());
            tasks.spawn(async move { memory.run_liveness(cancel.cancelled()).await });
        }
        if let Some(etcd) = &self.etcd {
            let (etcd, cancel) = (etcd.clone(), cancel.clone());
            tasks.spawn(async move { etcd.run(cancel).await });
        }
    }

    pub fn etcd_status(&self) -> Option<Arc<EtcdStatus>> {
        self.etcd.as_ref().map(|e| e.status())
    }
}
