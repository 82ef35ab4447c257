//! `[[sync]]`: the ExternalDNS-compatible sync in the binary. Builds the jobs (reads TSIG
//! secret files, connects etcd), runs `fleetdns sync` (one sync, or a dry-run plan), and starts
//! the continuous sync in `serve` and `agent`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use fleetdns_core::tap::{ObjectsTap, TappedObjects};
use fleetdns_core::{FleetSnapshot, MemoryRegistry, Registry};
use fleetdns_etcd::{EtcdConfig, EtcdRegistry, TlsPem};
use fleetdns_publish::filter::DomainFilter;
use fleetdns_publish::plan::PlanSettings;
use fleetdns_publish::rfc2136::{Rfc2136, TsigKey};
use fleetdns_publish::skydns::{EtcdClient, SkyDns};
use fleetdns_publish::sync::{Provider, SyncJob, SyncMetrics};
use fleetdns_publish::txt::TxtNames;
use fleetdns_publish::{Policy, RecordType};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::Backend;
use crate::config::{Config, Source, SyncConfig, SyncProvider, sync_server};
use crate::files::FilesSource;
use crate::serve::{kube_source, runtime};

/// How long `fleetdns sync` waits for a Kubernetes source's first list or the registry's
/// first snapshot.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The sources' tap, when the config has `[[sync]]` blocks.
pub fn tap_for(config: &Config) -> Option<ObjectsTap> {
    (!config.sync.is_empty()).then(|| ObjectsTap::new(fleetdns_publish::desired::is_annotated))
}

/// Builds one job per `[[sync]]` block. The config was checked when loaded; what can still
/// fail here is reading a secret file or connecting etcd.
pub async fn jobs(config: &Config) -> anyhow::Result<Vec<SyncJob>> {
    let mut out = Vec::new();
    for (i, b) in config.sync.iter().enumerate() {
        out.push(
            job(config, b).await.with_context(|| {
                format!("{}: sync[{i}] (zone {})", config.path.display(), b.zone)
            })?,
        );
    }
    Ok(out)
}

async fn job(config: &Config, b: &SyncConfig) -> anyhow::Result<SyncJob> {
    let timeout = Duration::from_millis(b.timeout_ms);
    let provider = match b.provider {
        SyncProvider::Rfc2136 => {
            let server = sync_server(b.server.as_deref().unwrap_or_default())?;
            let key = match (&b.tsig_key, &b.tsig_algorithm, &b.tsig_secret_file) {
                (Some(name), Some(alg), Some(file)) => {
                    let secret = std::fs::read_to_string(file).with_context(|| {
                        format!("tsig_secret_file: cannot read {}", file.display())
                    })?;
                    Some(TsigKey::new(name, alg, &secret).context("tsig")?)
                }
                _ => None,
            };
            Provider::Rfc2136(Rfc2136::new(server, &b.zone, key, timeout, b.batch_size)?)
        }
        SyncProvider::Etcd => Provider::Etcd(Box::new(SkyDns::new(
            etcd_client(config, &b.endpoints).await?,
            &b.prefix,
            &b.zone,
            b.default_ttl,
            timeout,
        ))),
    };
    let managed_types = b
        .managed_record_types
        .iter()
        .map(|t| t.parse::<RecordType>())
        .collect::<Result<_, _>>()?;
    Ok(SyncJob {
        settings: PlanSettings {
            zone: b.zone.clone(),
            owner_id: b.owner_id.clone(),
            policy: b.policy.parse::<Policy>().map_err(anyhow::Error::msg)?,
            filter: DomainFilter::new(
                &b.domain_filter,
                &b.exclude_domains,
                b.regex_domain_filter.as_deref(),
                b.regex_domain_exclusion.as_deref(),
            )?,
            managed_types,
            txt_names: TxtNames::new(&b.txt_prefix, &b.txt_suffix)?,
            default_ttl: b.default_ttl,
            min_ttl: b.min_ttl,
        },
        provider,
        publish_clusterset: b.publish_clusterset,
        interval: Duration::from_millis(b.interval_ms),
        min_event_interval: Duration::from_millis(b.min_event_interval_ms),
    })
}

/// One line about a job: zone, provider, owner, policy.
pub fn describe(job: &SyncJob) -> String {
    let s = &job.settings;
    format!(
        "sync zone {} via {} (owner {}, policy {}{}); not contacted by check-config",
        s.zone,
        job.provider.name(),
        s.owner_id,
        s.policy,
        if job.publish_clusterset {
            ", publish_clusterset"
        } else {
            ""
        }
    )
}

/// An etcd client with the `[registry]`'s TLS and auth settings (when it is etcd), on the
/// block's `endpoints` or else the registry's.
async fn etcd_client(config: &Config, endpoints: &[String]) -> anyhow::Result<EtcdClient> {
    let registry = config.etcd.as_ref();
    let endpoints = if endpoints.is_empty() {
        registry.map(|e| e.endpoints.clone()).unwrap_or_default()
    } else {
        endpoints.to_vec()
    };
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let tls = match registry {
        Some(e) if e.ca_file.is_some() || e.cert_file.is_some() => Some(TlsPem {
            ca: e.ca_file.as_deref().map(read).transpose()?,
            identity: match (&e.cert_file, &e.key_file) {
                (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                _ => None,
            },
        }),
        _ => None,
    };
    let etcd = EtcdRegistry::connect(&EtcdConfig {
        endpoints,
        prefix: registry.map_or_else(|| "/fleetdns/v1".into(), |e| e.prefix.clone()),
        lease_ttl_secs: 15,
        dial_timeout: Duration::from_millis(registry.map_or(2000, |e| e.dial_timeout_ms)),
        request_timeout: Duration::from_millis(registry.map_or(5000, |e| e.request_timeout_ms)),
        user: registry.and_then(|e| e.username.clone().zip(e.password.clone())),
        tls,
        vips: None,
        vips_v6: None,
    })
    .await
    .context("etcd")?;
    // The registry's client, configured the same way; the registry itself is not used.
    Ok(etcd.client())
}

/// Starts every job's loop; returns their counters for `/metrics`.
pub fn spawn(
    jobs: Vec<SyncJob>,
    registry: &Arc<dyn Registry>,
    tap: &ObjectsTap,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> Vec<Arc<SyncMetrics>> {
    let mut metrics = Vec::new();
    for job in jobs {
        let m = Arc::new(SyncMetrics::new(&job.settings.zone));
        tracing::info!(zone = %job.settings.zone, provider = job.provider.name(), owner = %job.settings.owner_id, policy = %job.settings.policy, publish_clusterset = job.publish_clusterset, "external DNS sync running");
        tasks.spawn(job.run(registry.subscribe(), tap.clone(), m.clone(), cancel.clone()));
        metrics.push(m);
    }
    metrics
}

/// `fleetdns sync [--dry-run]`: loads the config's sources once, plans (and applies) every
/// `[[sync]]` block once. Exit 0 when every change was applied (or, with `--dry-run`, when
/// every zone could be read); 1 otherwise, with the reason.
pub fn sync_command(config_path: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    if config.sync.is_empty() {
        bail!("{}: no [[sync]] blocks", config.path.display());
    }
    runtime()?.block_on(async move {
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
