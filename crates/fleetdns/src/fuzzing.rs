//! Fuzz harness body (feature `fuzzing`): the TOML config. The cargo-fuzz target
//! `fuzz/fuzz_targets/config.rs` calls [`config`], and the crate's tests feed every committed
//! corpus file (`fuzz/corpus/config/`) through it. A panic is a finding: a config the parser
//! takes must be refused with an error naming the key, or be usable by what `serve`,
//! `check-config` and `sync` derive from it.
//!
//! No file system, network or environment access: the resolv.conf files that
//! `[[forward]] upstreams` name are read from memory, TSIG secrets are a fixed key, etcd is
//! not connected.

use std::path::Path;
use std::time::Duration;

use fleetdns_core::{ClusterId, MemoryRegistry, Registry, merge_fleet};
use fleetdns_dns::forward::Forwarder;
use fleetdns_publish::rfc2136::{Rfc2136, TsigKey};
use fleetdns_publish::sync::{Provider, SyncJob};

use crate::config::{Config, SyncProvider, sync_server};

/// Where the fuzzed config "is": relative paths resolve against /etc/fleetdns.
const PATH: &str = "/etc/fleetdns/fleetdns.toml";

/// A resolv.conf path ending in `resolv.conf` reads as two nameservers, one ending in
/// `empty.conf` as a file without any, every other path as missing.
fn read_in_memory(path: &str) -> std::io::Result<String> {
    if path.ends_with("resolv.conf") {
        Ok("search svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\n".into())
    } else if path.ends_with("empty.conf") {
        Ok("search svc.cluster.local\n".into())
    } else {
        Err(std::io::ErrorKind::NotFound.into())
    }
}

/// One config file's bytes (lossily as UTF-8: a config is text) through `Config::parse`, and
/// when it parses, what the commands derive from it without I/O.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new(PATH);
    let config = match Config::parse_with(&text, path, &read_in_memory) {
        Ok(config) => config,
        Err(e) => {
            // Every refusal names the file it refuses.
            let message = format!("{e:#}");
            assert!(message.contains(PATH), "error without the path: {message}");
            return;
        }
    };
    derive(&config);
}

/// What `serve`, `check-config` and `sync` build from a loaded config before any socket,
/// file or cluster: the registry with its VIP ranges, the forwarder, the answer table on a
/// fixture fleet (the zone list), the sync jobs.
fn derive(config: &Config) {
    // `check-config` and `serve`: the memory registry, VIP ranges as configured.
    let mut registry = MemoryRegistry::new(config.liveness_timeout);
    if let Some((range, grace)) = config.vips {
        registry = registry.with_vips(range, grace);
    }
    if let Some(range6) = config.vips_v6 {
        registry = registry.with_vips_v6(range6);
    }
    let empty = registry.subscribe().borrow().clone().unwrap_or_default();
    // The zones the config serves, on no cluster (`check-config` with no sources) and on the
    // fixture fleet of the DNS fuzz targets (3 clusters, ServiceEntries, VIPs), as configured
    // and as `serve` runs them in a cluster whose id comes from the ClusterProperty.
    let fleet = fleetdns_dns::fuzzing::fleet();
    let in_cluster = {
        let mut zones = config.zones.clone();
        if zones.local_cluster.is_none() {
            zones.local_cluster = Some(ClusterId::new("east").expect("fixture id"));
        }
        zones
    };
    for (snapshot, zones) in [
        (&*empty, &config.zones),
        (&fleet, &config.zones),
        (&fleet, &in_cluster),
    ] {
        let merged = merge_fleet(snapshot);
        let table = fleetdns_dns::compile(snapshot, &merged, zones, 1_700_000_000);
        let _ = (table.zone_names(), table.stats());
    }
    // `serve` (and every reload) builds the forwarder from the checked zones.
    if let Err(e) = Forwarder::new(&config.forward, config.cache) {
        panic!("a checked config's forward zones do not build: {e}");
    }
    // `sync` and `check-config`: every block's plan settings; rfc2136 providers are built
    // (with a fixed TSIG secret instead of the file), etcd ones are not connected.
    for block in &config.sync {
        let settings = crate::publish::plan_settings(block)
            .unwrap_or_else(|e| panic!("a checked [[sync]] block does not build: {e:#}"));
        if block.provider != SyncProvider::Rfc2136 {
            continue;
        }
        let server = sync_server(block.server.as_deref().unwrap_or_default())
            .unwrap_or_else(|e| panic!("a checked rfc2136 server does not parse: {e:#}"));
        let key = match (&block.tsig_key, &block.tsig_algorithm) {
            (Some(name), Some(algorithm)) => TsigKey::new(name, algorithm, "c2VjcmV0").ok(),
            _ => None,
        };
        let Ok(provider) = Rfc2136::new(
            server,
            &block.zone,
            key,
            Duration::from_millis(block.timeout_ms),
            block.batch_size,
        ) else {
            continue;
        };
        let job = SyncJob {
            settings,
            provider: Provider::Rfc2136(provider),
            publish_clusterset: block.publish_clusterset,
            interval: Duration::from_millis(block.interval_ms),
            min_event_interval: Duration::from_millis(block.min_event_interval_ms),
        };
        let _ = crate::publish::describe(&job);
    }
}
