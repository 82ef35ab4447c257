//! `fleetdns check-config`: loads the config and every source once, prints what would be
//! served; no socket is bound and no cluster or registry is contacted.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use fleetdns_core::{MemoryRegistry, Registry, merge_fleet};

use crate::config::{Config, Source};
use crate::files::FilesSource;
use crate::runtime;
use crate::runtime::compile::serial_now;
use crate::runtime::sources::kube_credentials;

/// `check-config`: loads the config and every source once, prints what would be served.
/// Exits 1 when a source has errors (a manifest that does not parse, a bad folder name).
pub fn check_config(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    runtime::build()?.block_on(async move {
        let mut registry = MemoryRegistry::new(config.liveness_timeout);
        // VIPs as `serve` allocates them, so `.global` names and ServiceEntry hosts show.
        if let Some((range, grace)) = config.vips {
            registry = registry.with_vips(range, grace);
        }
        if let Some(range6) = config.vips_v6 {
            registry = registry.with_vips_v6(range6);
        }
        let mut errors = Vec::new();
        let mut notes = Vec::new();
        let mut source_notes = Vec::new();
        for source in &config.sources {
            match source {
                Source::Files { root, interval } => {
                    let report = FilesSource::new(root.clone(), *interval)
                        .poll(&registry)
                        .await
                        .with_context(|| {
                            format!("cannot read manifest folder {}", root.display())
                        })?;
                    errors.extend(report.errors);
                    notes.extend(report.notes);
                }
                Source::Kubernetes { cluster_id, .. } => {
                    // Credentials are loaded (a bad kubeconfig is an error); the cluster itself
                    // is not contacted, so the check works anywhere.
                    match kube_credentials(source).map(|c| (c.to_string(), c)) {
                        Ok((what, credentials)) => match fleetdns_k8s::connect(&credentials).await {
                            Ok(_) => source_notes.push(format!(
                                "kubernetes source {} ({what}): credentials load; the cluster is not contacted by check-config",
                                cluster_id.as_ref().map_or("(id from the ClusterProperty)", |c| c.as_str())
                            )),
                            Err(e) => errors.push(e.to_string()),
                        },
                        Err(e) => errors.push(format!("{e:#}")),
                    }
                }
            }
        }
        let snapshot = registry.subscribe().borrow().clone().unwrap_or_default();
        let merged = merge_fleet(&snapshot);
        let table = fleetdns_dns::compile(&snapshot, &merged, &config.zones, serial_now());
        println!("config {} is valid", config.path.display());
        println!("listen {} (UDP and TCP)", config.dns.listen);
        match &config.etcd {
            Some(e) => println!(
                "registry etcd {} prefix {} (lease {} s); not contacted by check-config",
                e.endpoints.join(","),
                e.prefix,
                e.lease_ttl_secs
            ),
            None => println!("registry memory"),
        }
        println!(
            "policy {:?}, local cluster {}",
            config.zones.clusterset.policy,
            config
                .zones
                .local_cluster
                .as_ref()
                .map_or("(none)", |c| c.as_str())
        );
        println!("zones: {}", table.zone_names().join(" "));
        for (id, view) in &snapshot.clusters {
            println!("cluster {id}: {} exported services", view.exports.len());
        }
        for service in merged.values() {
            let members: Vec<&str> = service.members.iter().map(|e| e.cluster.as_str()).collect();
            let ports: Vec<String> = service.ports.iter().map(ToString::to_string).collect();
            println!(
                "service {} {} clusters [{}] ports [{}]",
                service.key,
                service.service_type,
                members.join(", "),
                ports.join(", ")
            );
            for c in &service.conflicts {
                println!("  conflict {}: {}", c.kind.reason(), c.message);
            }
        }
        let stats = table.stats();
        println!("{} names, {} records", stats.names, stats.records);
        // [[sync]]: secret files read and keys checked; the servers are not contacted.
        match crate::publish::jobs(&config).await {
            Ok(jobs) => {
                for job in jobs {
                    println!("{}", crate::publish::describe(&job));
                }
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
        for n in &source_notes {
            println!("{n}");
        }
        for n in &notes {
            println!("not exported: {n}");
        }
        for e in &errors {
            println!("error: {e}");
        }
        Ok(if errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
