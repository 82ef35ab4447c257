//! What the tests of the ops modules share: a state with one of everything it reports, and
//! an installed table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetdns_dns::{Metrics, TableStats};
use fleetdns_etcd::EtcdStatus;
use fleetdns_k8s::SourceStatus;

use super::{Installed, OpsState};

pub(super) fn state() -> Arc<OpsState> {
    let served = Arc::new(fleetdns_dns::Served::new(Arc::new(Metrics::new())));
    let zone: fleetdns_dns::forward::ForwardZoneConfig =
        toml::from_str("zone = \"cluster3.local\"\nupstreams = [\"192.0.2.1\"]").unwrap();
    let forwarder =
        fleetdns_dns::forward::Forwarder::new(&[zone], fleetdns_dns::cache::CacheLimits::default())
            .unwrap();
    served.metrics.add_zones(&forwarder.zone_names());
    served.forwarder.store(Some(Arc::new(forwarder)));
    let state = OpsState::new(served.metrics.clone()).with_served(served);
    let cluster = fleetdns_core::ClusterId::new("cluster-a").unwrap();
    state.set_sources(vec![Arc::new(SourceStatus::new(cluster))]);
    state.set_etcd(Some(Arc::new(EtcdStatus::default())));
    state.set_sync(vec![Arc::new(fleetdns_publish::sync::SyncMetrics::new(
        "fleet.example.com",
    ))]);
    Arc::new(state)
}

pub(super) fn installed() -> Installed {
    Installed {
        received: Instant::now(),
        snapshot_version: 7,
        clusters_alive: 2,
        clusters_dead: 1,
        exports: 9,
        services: 6,
        table: TableStats {
            zones: 4,
            names: 40,
            records: 30,
        },
        compile: Duration::from_micros(250),
    }
}
