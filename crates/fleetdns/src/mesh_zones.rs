//! The mesh zones a cluster's DNS delegates to fleetdns (`stub-domains`), from the config
//! alone: the clusters it knows, `global`, and the zones of the ServiceEntry hosts in its
//! files sources.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::Context;
use fleetdns_core::{ClusterId, ClusterView, FleetSnapshot, Timestamp};

use crate::config::{Config, Source};

/// The mesh zones `stub-domains` delegates: `<cluster>` for every cluster the config knows
/// (files folders, configured ids, gateway entries), `global`, and the zones of the
/// ServiceEntry hosts found in the files sources (hosts from Kubernetes sources are only
/// known to a running server).
pub fn mesh_zones(config: &Config, clusters: &BTreeSet<ClusterId>) -> anyhow::Result<Vec<String>> {
    if !config.zones.mesh.enabled {
        return Ok(Vec::new());
    }
    let mut snapshot = FleetSnapshot::default();
    for c in clusters {
        snapshot.clusters.insert(
            c.clone(),
            ClusterView {
                alive: true,
                exports: Arc::default(),
                published: Timestamp(0),
                service_entries: Arc::default(),
            },
        );
    }
    for source in &config.sources {
        let Source::Files { root, .. } = source else {
            continue;
        };
        for c in clusters {
            let dir = root.join(c.as_str());
            if !dir.is_dir() {
                continue;
            }
            let (_, entries, _) = crate::files::load_cluster(c, &dir, &mut HashMap::new())
                .with_context(|| format!("reading ServiceEntries of {}", dir.display()))?;
            if let Some(view) = snapshot.clusters.get_mut(c) {
                view.service_entries = Arc::new(entries);
            }
        }
    }
    Ok(fleetdns_dns::mesh::mesh_zone_names(
        &snapshot,
        &config.zones,
    ))
}
