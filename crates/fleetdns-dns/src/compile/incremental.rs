//! Compiling only what changed. The [`Compiler`] keeps the last snapshot, its merge and its
//! table; a new snapshot is compared with the last one (exports are shared `Arc`s, so an
//! unchanged cluster or service costs a pointer comparison), and only the services that differ
//! are merged and compiled again: each service's names before and after are built into small
//! parts, and the table is remade with those names replaced ([`AnswerTable::with_changes`]),
//! sharing every untouched shard with the last table.
//!
//! A service owns every name under `<svc>.<ns>.svc.<zone>` in each zone it appears in; the
//! only names services share are the namespace nodes `<ns>.svc.<zone>`, which exist while at
//! least one service is in them (counted here). Anything else (the zones themselves, the
//! clusters of the fleet, the zone settings, the mesh zones) changes through a whole compile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fleetdns_core::{
    ClusterId, ExportSet, FleetSnapshot, Merged, ServiceKey, merge_fleet, merge_key,
};
use rustc_hash::{FxHashMap, FxHashSet};

use super::{cluster_service, clusterset_service, compile, parent, service_name};
use crate::config::ZonesConfig;
use crate::table::{AnswerTable, Change, Node, TableBuilder};
use crate::wire::{MAX_NAME, encode_name, label_offsets, prefix_name};

/// Beyond this share of the fleet's services changed at once, a whole compile is cheaper.
const MOST_OF_THE_FLEET: usize = 4;

/// What one compile produced. The merge it compiled from stays with the [`Compiler`]
/// ([`Compiler::merged`]), changed in place: a change to one service copies nothing else.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub table: Arc<AnswerTable>,
    /// Services in the merge (the fleet's exported services).
    pub services: usize,
    /// Services compiled again; `None` when the whole table was compiled.
    pub changed: Option<usize>,
    /// The exports that differ (added, removed or changed) from the snapshot of version
    /// `.0`, the one compiled before; `None` when the whole table was compiled.
    pub exports_changed: Option<(u64, BTreeSet<(ClusterId, ServiceKey)>)>,
    /// The snapshot compiled before, let go by the compiler: the caller drops it once the new
    /// table is served (freeing a replaced export set takes milliseconds).
    pub retired: Option<Arc<FleetSnapshot>>,
}

/// Turns snapshots into tables, compiling only what changed since the last one.
#[derive(Debug, Default)]
pub struct Compiler {
    last: Option<Last>,
}

#[derive(Debug)]
struct Last {
    snapshot: Arc<FleetSnapshot>,
    merged: Merged,
    config: ZonesConfig,
    table: Arc<AnswerTable>,
    /// `<ns>.svc.<zone>` → how many services are in it (its node exists while above 0).
    namespaces: FxHashMap<Box<[u8]>, u32>,
}

/// The services a change touches: by merged service (the clusterset zone) and by one
/// cluster's export (its own zone).
#[derive(Debug, Default)]
struct Touched {
    services: BTreeSet<ServiceKey>,
    exports: BTreeSet<(ClusterId, ServiceKey)>,
}

impl Compiler {
    pub fn new() -> Self {
        Self::default()
    }

    /// The table for `snapshot` under `config`, SOA serial `serial`.
    pub fn compile(
        &mut self,
        snapshot: Arc<FleetSnapshot>,
        config: &ZonesConfig,
        serial: u32,
    ) -> Compiled {
        if let Some(compiled) = self.try_incremental(&snapshot, config, serial) {
            return compiled;
        }
        let merged = merge_fleet(&snapshot);
        // A whole compile reports every conflict (an incremental one, those of the services
        // it merged again).
        for service in merged.values() {
            for c in &service.conflicts {
                tracing::warn!(service = %service.key, reason = c.kind.reason(), detail = %c.message, "export conflict");
            }
        }
        let table = Arc::new(compile(&snapshot, &merged, config, serial));
        let namespaces = if incremental_possible(&snapshot, config, &table) {
            namespace_counts(&snapshot, &merged, config)
        } else {
            FxHashMap::default()
        };
        let services = merged.len();
        let retired = self.last.replace(Last {
            snapshot,
            merged,
            config: config.clone(),
            table: table.clone(),
            namespaces,
        });
        Compiled {
            table,
            services,
            changed: None,
            exports_changed: None,
            retired: retired.map(|l| l.snapshot),
        }
    }

    /// The merge of the last snapshot compiled.
    pub fn merged(&self) -> Option<&Merged> {
        self.last.as_ref().map(|l| &l.merged)
    }

    fn try_incremental(
        &mut self,
        snapshot: &Arc<FleetSnapshot>,
        config: &ZonesConfig,
        serial: u32,
    ) -> Option<Compiled> {
        let last = self.last.as_mut()?;
        if last.config != *config || !incremental_possible(snapshot, config, &last.table) {
            return None;
        }
        let touched = touched(&last.snapshot, snapshot)?;
        if touched.services.len() * MOST_OF_THE_FLEET > last.merged.len().max(16) {
            return None;
        }
        // The names the touched services own now, before their merge changes in place.
        let (old_names, old_ns) = Side {
            snapshot: &last.snapshot,
            merged: &last.merged,
        }
        .build(&last.table, config, &touched);
        for key in &touched.services {
            match merge_key(snapshot, key) {
                Some(service) => {
                    for c in &service.conflicts {
                        tracing::warn!(service = %service.key, reason = c.kind.reason(), detail = %c.message, "export conflict");
                    }
                    last.merged.insert(key.clone(), Arc::new(service));
                }
                None => {
                    last.merged.remove(key);
                }
            }
        }
        let (new_entries, new_ns) = Side {
            snapshot,
            merged: &last.merged,
        }
        .build(&last.table, config, &touched);

        let mut changes: Vec<Change> = Vec::new();
        let new_names: FxHashSet<&[u8]> = new_entries.iter().map(|(n, _)| &**n).collect();
        for (name, _) in old_names {
            if !new_names.contains(&*name) {
                changes.push((name, None));
            }
        }
        for (name, entry) in new_entries {
            let same = last
                .table
                .node(&name)
                .is_some_and(|n| n.bytes().starts_with(&entry));
            if !same {
                changes.push((name, Some(entry)));
            }
        }
        let mut ns_delta: FxHashMap<(Box<[u8]>, u16), i64> = FxHashMap::default();
        for ns in old_ns {
            *ns_delta.entry(ns).or_default() -= 1;
        }
        for ns in new_ns {
            *ns_delta.entry(ns).or_default() += 1;
        }
        for ((ns, zone), delta) in ns_delta {
            let count = last.namespaces.entry(ns.clone()).or_default();
            let before = *count;
            *count = (i64::from(before) + delta).max(0) as u32;
            match (before, *count) {
                (0, n) if n > 0 => {
                    let mut entry = Vec::new();
                    let apex_len = last
                        .table
                        .zones()
                        .get(zone as usize)
                        .map_or(0, |z| z.apex.len());
                    crate::table::encode_entry(&mut entry, &ns, zone, apex_len, &[]);
                    changes.push((ns, Some(entry)));
                }
                (b, 0) if b > 0 => {
                    last.namespaces.remove(&ns);
                    changes.push((ns, None));
                }
                _ => {}
            }
        }
        let table = Arc::new(last.table.with_changes(changes, serial, snapshot.version));
        let retired = std::mem::replace(&mut last.snapshot, snapshot.clone());
        last.table = table.clone();
        Some(Compiled {
            table,
            services: last.merged.len(),
            changed: Some(touched.services.len().max(touched.exports.len())),
            exports_changed: Some((retired.version, touched.exports)),
            retired: Some(retired),
        })
    }
}

/// Whether a table can be changed in place: no mesh zones (compiled whole), and every zone the
/// settings name is in the table under its own apex (no two clusters' zones clash).
fn incremental_possible(
    snapshot: &FleetSnapshot,
    config: &ZonesConfig,
    table: &AnswerTable,
) -> bool {
    if config.mesh.enabled {
        return false;
    }
    let mut expected = 0;
    if config.clusterset.enabled {
        expected += 1;
    }
    if config.cluster_zones.enabled {
        expected += snapshot.clusters.len();
    }
    table.zones().len() == expected
}

/// What changed between two snapshots of the same clusters; `None` when the clusters differ.
fn touched(old: &FleetSnapshot, new: &FleetSnapshot) -> Option<Touched> {
    if old.clusters.len() != new.clusters.len()
        || old
            .clusters
            .keys()
            .zip(new.clusters.keys())
            .any(|(a, b)| a != b)
    {
        return None;
    }
    let mut t = Touched::default();
    for ((id, o), n) in old.clusters.iter().zip(new.clusters.values()) {
        if o.alive != n.alive {
            // Its exports join or leave every merge; its own zone does not change.
            t.services.extend(o.exports.keys().cloned());
            t.services.extend(n.exports.keys().cloned());
        }
        if !Arc::ptr_eq(&o.exports, &n.exports) {
            for key in differing(&o.exports, &n.exports) {
                t.exports.insert((id.clone(), key.clone()));
                t.services.insert(key);
            }
        }
    }
    for key in differing_values(&old.vips, &new.vips) {
        t.services.insert(key);
    }
    for key in differing_values(&old.vips_v6, &new.vips_v6) {
        t.services.insert(key);
    }
    Some(t)
}

/// Keys whose export differs between two sets (added, removed or changed).
fn differing(old: &ExportSet, new: &ExportSet) -> Vec<ServiceKey> {
    let mut out = Vec::new();
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return out,
            (Some((k, _)), None) => {
                out.push((*k).clone());
                a.next();
            }
            (None, Some((k, _))) => {
                out.push((*k).clone());
                b.next();
            }
            (Some((ka, ea)), Some((kb, eb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.push((*ka).clone());
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((*kb).clone());
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if !Arc::ptr_eq(ea, eb) && ea != eb {
                        out.push((*ka).clone());
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
}

/// Keys whose value differs between two maps.
fn differing_values<V: PartialEq>(
    old: &BTreeMap<ServiceKey, V>,
    new: &BTreeMap<ServiceKey, V>,
) -> Vec<ServiceKey> {
    let mut out: Vec<ServiceKey> = old
        .iter()
        .filter(|(k, v)| new.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(new.keys().filter(|k| !old.contains_key(*k)).cloned());
    out
}

/// A name and its encoded entry.
type Entry = (Box<[u8]>, Vec<u8>);

/// A namespace node `<ns>.svc.<zone>` and its zone.
type NamespaceNode = (Box<[u8]>, u16);

/// One side of a change: the snapshot and merge before it, or after.
struct Side<'a> {
    snapshot: &'a FleetSnapshot,
    merged: &'a Merged,
}

impl Side<'_> {
    /// The names the touched services own on this side, encoded, and the namespace node each
    /// of them is in (with its zone).
    fn build(
        &self,
        table: &AnswerTable,
        config: &ZonesConfig,
        touched: &Touched,
    ) -> (Vec<Entry>, Vec<NamespaceNode>) {
        let mut b = TableBuilder::part_of(table);
        let mut namespaces = Vec::new();
        if config.clusterset.enabled
            && let Ok(apex) = encode_name(&config.clusterset.name)
            && let Some(zone) = table.zone_at(&apex)
        {
            for key in &touched.services {
                if let Some(service) = self.merged.get(key) {
                    clusterset_service(&mut b, zone, &apex, self.snapshot, key, service, config);
                    if let Some(name) = service_name(key, &apex) {
                        namespaces.push((parent(&name).into(), zone));
                    }
                }
            }
        }
        if config.cluster_zones.enabled {
            for (cluster, key) in &touched.exports {
                let Some(export) = self
                    .snapshot
                    .clusters
                    .get(cluster)
                    .and_then(|v| v.exports.get(key))
                else {
                    continue;
                };
                let Ok(apex) = encode_name(&config.cluster_zone_name(cluster.as_str())) else {
                    continue;
                };
                let Some(zone) = table.zone_at(&apex) else {
                    continue;
                };
                cluster_service(&mut b, zone, &apex, config.cluster_zones.ttl, export);
                if let Some(name) = service_name(key, &apex) {
                    namespaces.push((parent(&name).into(), zone));
                }
            }
        }
        let zones = table.zones();
        let entries = b
            .into_entries()
            .filter(|(name, entry)| {
                // Only names below a namespace node belong to a service.
                let apex = &zones[Node::new(entry).zone() as usize].apex;
                labels(name) > labels(apex) + 2
            })
            .collect();
        (entries, namespaces)
    }
}

fn labels(name: &[u8]) -> usize {
    label_offsets(name).count()
}

/// How many services each namespace node holds in a whole table, as [`compile`] makes them.
fn namespace_counts(
    snapshot: &FleetSnapshot,
    merged: &Merged,
    config: &ZonesConfig,
) -> FxHashMap<Box<[u8]>, u32> {
    let mut counts: FxHashMap<Box<[u8]>, u32> = FxHashMap::default();
    if config.clusterset.enabled
        && let Ok(apex) = encode_name(&config.clusterset.name)
    {
        count_namespaces(&mut counts, merged.keys(), &apex);
    }
    if config.cluster_zones.enabled {
        for (cluster, view) in &snapshot.clusters {
            if let Ok(apex) = encode_name(&config.cluster_zone_name(cluster.as_str())) {
                count_namespaces(&mut counts, view.exports.keys(), &apex);
            }
        }
    }
    counts
}

/// Adds to `counts` the services of `keys` under their namespace nodes in the zone of
/// `apex`: those [`service_name`] names. Counted by namespace first, and each node's name made
/// once: naming every service and its node cost a whole compile of a 50 000-service fleet
/// two allocations per service and zone.
fn count_namespaces<'k>(
    counts: &mut FxHashMap<Box<[u8]>, u32>,
    keys: impl Iterator<Item = &'k ServiceKey>,
    apex: &[u8],
) {
    let mut by_namespace: FxHashMap<&str, u32> = FxHashMap::default();
    for key in keys {
        let (namespace, name) = (key.namespace(), key.name());
        // Exactly when `service_name` names it: labels of 1..=63 bytes, a name within 255.
        let fits = (1..=63).contains(&namespace.len())
            && (1..=63).contains(&name.len())
            && 1 + name.len() + 1 + namespace.len() + 4 + apex.len() <= MAX_NAME;
        if fits {
            *by_namespace.entry(namespace).or_default() += 1;
        }
    }
    for (namespace, n) in by_namespace {
        if let Ok(node) = prefix_name(&[namespace, "svc"], apex) {
            *counts.entry(node.into()).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests;
