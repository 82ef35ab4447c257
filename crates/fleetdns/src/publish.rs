//! `[[sync]]`: the ExternalDNS-compatible sync in the binary. Builds the jobs (reads TSIG
//! secret files, connects etcd) for `fleetdns sync` (`commands::sync`), and starts the
//! continuous sync in `serve` and `agent`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetdns_core::Registry;
use fleetdns_core::tap::ObjectsTap;
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

use crate::config::{Config, SyncConfig, SyncProvider, sync_server};

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
    Ok(SyncJob {
        settings: plan_settings(b)?,
        provider,
        publish_clusterset: b.publish_clusterset,
        interval: Duration::from_millis(b.interval_ms),
        min_event_interval: Duration::from_millis(b.min_event_interval_ms),
    })
}

/// What a block's plans are made with: zone, owner, policy, filters, record types, TXT names,
/// TTLs. No I/O (the fuzz harness builds them too).
pub fn plan_settings(b: &SyncConfig) -> anyhow::Result<PlanSettings> {
    let managed_types = b
        .managed_record_types
        .iter()
        .map(|t| t.parse::<RecordType>())
        .collect::<Result<_, _>>()?;
    Ok(PlanSettings {
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
