//! The registry: the fleet's shared state. Sources publish one cluster's complete export set;
//! DNS servers subscribe to fleet snapshots.
//!
//! The contract (every backend keeps it):
//! - [`Registry::publish`] replaces a cluster's whole set and marks it alive. There is no
//!   per-service delete: a re-list is the removal path.
//! - A cluster stays alive while its publisher calls [`Registry::heartbeat`] within the
//!   liveness timeout (an etcd backend maps this onto a per-cluster lease, MCS-10). A dead
//!   cluster's exports stay in the snapshot marked `alive = false`, or vanish with its lease.
//! - [`Registry::subscribe`] yields immutable snapshots; `None` until the backend has loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::service_entry::ServiceEntrySet;
use crate::{ClusterId, ExportSet, HostVips, ServiceKey, Timestamp, VipRange, VipRangeV6};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type SnapshotReceiver = watch::Receiver<Option<Arc<FleetSnapshot>>>;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry backend unavailable: {0}")]
    Unavailable(String),
    #[error("registry is shut down")]
    Closed,
}

/// One cluster as the registry sees it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub alive: bool,
    pub exports: Arc<ExportSet>,
    /// When the set was last published (wall clock).
    pub published: Timestamp,
    /// The cluster's Istio ServiceEntries, replaced whole by
    /// [`Registry::publish_service_entries`].
    pub service_entries: Arc<ServiceEntrySet>,
}

/// The whole fleet at one moment. Immutable; a change makes a new one.
#[derive(Debug, Clone, Default)]
pub struct FleetSnapshot {
    /// Grows with every change; lets consumers skip snapshots they have seen.
    pub version: u64,
    pub clusters: BTreeMap<ClusterId, ClusterView>,
    /// Clusterset VIPs by service (SPEC §4), when the registry allocates them.
    pub vips: BTreeMap<ServiceKey, IpAddr>,
    /// IPv6 clusterset VIPs by service, when the registry has an IPv6 range (`vip_range_v6`).
    pub vips_v6: BTreeMap<ServiceKey, Ipv6Addr>,
    /// VIPs of ServiceEntry hosts without addresses of their own (IST-14), by host.
    pub host_vips: BTreeMap<String, HostVips>,
}

impl FleetSnapshot {
    pub fn export_count(&self) -> usize {
        self.clusters.values().map(|c| c.exports.len()).sum()
    }
}

/// The fleet's shared state, as seen by sources (writers) and DNS servers (readers).
pub trait Registry: Send + Sync + 'static {
    /// Replaces `cluster`'s complete export set and marks the cluster alive. The set is
    /// shared: a source keeps the one it published, and the registry holds the same map.
    fn publish<'a>(
        &'a self,
        cluster: &'a ClusterId,
        exports: Arc<ExportSet>,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Replaces `cluster`'s complete set of Istio ServiceEntries (the exports stay as they are).
    fn publish_service_entries<'a>(
        &'a self,
        cluster: &'a ClusterId,
        entries: ServiceEntrySet,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Keeps `cluster` alive without changing its exports.
    fn heartbeat<'a>(&'a self, cluster: &'a ClusterId) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Removes `cluster` and its exports: its publisher left the fleet.
    fn withdraw<'a>(&'a self, cluster: &'a ClusterId) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Snapshots as they change; `None` until the backend has loaded.
    fn subscribe(&self) -> SnapshotReceiver;
}

/// The embedded default: one process, state in memory.
#[derive(Debug)]
pub struct MemoryRegistry {
    state: Mutex<MemoryState>,
    tx: watch::Sender<Option<Arc<FleetSnapshot>>>,
    liveness_timeout: Duration,
    /// VIP range and how long a VIP outlives the last export of its service.
    vips: Option<(VipRange, Duration)>,
    vips_v6: Option<VipRangeV6>,
}

#[derive(Debug, Default)]
struct MemoryState {
    version: u64,
    clusters: BTreeMap<ClusterId, (ClusterView, Instant)>,
    /// Allocated VIPs, with when their service lost its last export.
    vips: BTreeMap<ServiceKey, (Ipv4Addr, Option<Instant>)>,
    vips_v6: BTreeMap<ServiceKey, Ipv6Addr>,
    /// ServiceEntry host VIPs, with when the host stopped needing one.
    host_vips: BTreeMap<String, (HostVips, Option<Instant>)>,
    taken: BTreeSet<Ipv4Addr>,
    taken_v6: BTreeSet<Ipv6Addr>,
}

impl MemoryRegistry {
    /// A registry whose clusters die `liveness_timeout` after their last publish or heartbeat.
    pub fn new(liveness_timeout: Duration) -> Self {
        let (tx, _) = watch::channel(Some(Arc::new(FleetSnapshot::default())));
        Self {
            state: Mutex::new(MemoryState::default()),
            tx,
            liveness_timeout,
            vips: None,
            vips_v6: None,
        }
    }

    /// Also allocates an IPv6 VIP per service and ServiceEntry host from `range` (IST-14).
    pub fn with_vips_v6(mut self, range: VipRangeV6) -> Self {
        self.vips_v6 = Some(range);
        self
    }

    /// Allocates and releases ServiceEntry host VIPs (see [`crate::mesh`]): every host that
    /// needs one gets one per configured family, off the addresses spec and status own; a
    /// host that no longer needs one keeps it for the grace period. Returns whether anything
    /// changed.
    fn sweep_hosts(&self, state: &mut MemoryState, now: Instant) -> bool {
        let Some((range, grace)) = self.vips else {
            return false;
        };
        let entries = crate::mesh::entries_by_age_in(state.clusters.values().map(|(v, _)| v));
        let current: BTreeMap<String, HostVips> = state
            .host_vips
            .iter()
            .map(|(h, (v, _))| (h.clone(), *v))
            .collect();
        let plan = crate::mesh::plan_with(&entries, &current);
        let mut changed = false;
        for host in &plan.needs_vip {
            let (mut vips, _) = state.host_vips.get(host).copied().unwrap_or_default();
            let reserved = |ip: IpAddr| plan.reserved.contains(&ip);
            if vips.v4.is_none_or(|ip| reserved(IpAddr::V4(ip))) {
                if let Some(old) = vips.v4.take() {
                    state.taken.remove(&old);
                }
                vips.v4 = range
                    .candidates_for(host)
                    .find(|ip| !state.taken.contains(ip) && !reserved(IpAddr::V4(*ip)));
                match vips.v4 {
                    Some(ip) => {
                        state.taken.insert(ip);
                        tracing::info!(host = %host, vip = %ip, "ServiceEntry host VIP allocated");
                    }
                    None => tracing::warn!(host = %host, range = %range, "VIP range exhausted"),
                }
            }
            if let Some(range6) = self.vips_v6
                && vips.v6.is_none_or(|ip| reserved(IpAddr::V6(ip)))
            {
                if let Some(old) = vips.v6.take() {
                    state.taken_v6.remove(&old);
                }
                vips.v6 = range6
                    .candidates_for(host)
                    .find(|ip| !state.taken_v6.contains(ip) && !reserved(IpAddr::V6(*ip)));
                if let Some(ip) = vips.v6 {
                    state.taken_v6.insert(ip);
                }
            }
            let before = state.host_vips.insert(host.clone(), (vips, None));
            changed |= before.is_none_or(|(old, _)| old != vips);
        }
        let mut gone = Vec::new();
        for (host, (vips, since)) in &mut state.host_vips {
            if plan.needs_vip.contains(host) {
                continue;
            }
            let since = *since.get_or_insert(now);
            if now.saturating_duration_since(since) > grace {
                gone.push((host.clone(), *vips));
            }
        }
        for (host, vips) in gone {
            tracing::info!(host = %host, "ServiceEntry host VIP released: not needed for longer than the grace period");
            state.host_vips.remove(&host);
            if let Some(ip) = vips.v4 {
                state.taken.remove(&ip);
            }
            if let Some(ip) = vips.v6 {
                state.taken_v6.remove(&ip);
            }
            changed = true;
        }
        changed
    }

    /// Allocates a VIP from `range` for every exported service, released `grace` after the
    /// service's last export is gone.
    pub fn with_vips(mut self, range: VipRange, grace: Duration) -> Self {
        self.vips = Some((range, grace));
        self
    }

    fn allocate(&self, state: &mut MemoryState, keys: impl Iterator<Item = ServiceKey>) {
        let Some((range, _)) = self.vips else { return };
        for key in keys {
            if let Some(range6) = self.vips_v6
                && !state.vips_v6.contains_key(&key)
                && let Some(ip) = range6
                    .candidates(&key)
                    .find(|ip| !state.taken_v6.contains(ip))
            {
                state.taken_v6.insert(ip);
                state.vips_v6.insert(key.clone(), ip);
            }
            if state.vips.contains_key(&key) {
                continue;
            }
            let free = range.candidates(&key).find(|ip| !state.taken.contains(ip));
            match free {
                Some(ip) => {
                    state.taken.insert(ip);
                    state.vips.insert(key, (ip, None));
                }
                None => tracing::warn!(service = %key, range = %range, "VIP range exhausted"),
            }
        }
    }

    /// Releases VIPs whose service has had no export for longer than the grace period.
    fn release(&self, state: &mut MemoryState, now: Instant) -> bool {
        let Some((_, grace)) = self.vips else {
            return false;
        };
        let exported: BTreeSet<&ServiceKey> = state
            .clusters
            .values()
            .flat_map(|(v, _)| v.exports.keys())
            .collect();
        let mut gone = Vec::new();
        for (key, (ip, since)) in &mut state.vips {
            if exported.contains(key) {
                *since = None;
                continue;
            }
            let since = *since.get_or_insert(now);
            if now.saturating_duration_since(since) > grace {
                gone.push((key.clone(), *ip));
            }
        }
        for (key, ip) in &gone {
            tracing::info!(service = %key, vip = %ip, "VIP released: no export for longer than the grace period");
            state.vips.remove(key);
            state.taken.remove(ip);
            if let Some(ip6) = state.vips_v6.remove(key) {
                state.taken_v6.remove(&ip6);
            }
        }
        !gone.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding this lock cannot leave the map half-written (each change is
        // one insert), so a poisoned lock is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn emit(&self, state: &mut MemoryState) {
        state.version += 1;
        let snapshot = FleetSnapshot {
            version: state.version,
            clusters: state
                .clusters
                .iter()
                .map(|(id, (view, _))| (id.clone(), view.clone()))
                .collect(),
            vips: state
                .vips
                .iter()
                .map(|(k, (ip, _))| (k.clone(), IpAddr::V4(*ip)))
                .collect(),
            vips_v6: state.vips_v6.clone(),
            host_vips: state
                .host_vips
                .iter()
                .map(|(h, (v, _))| (h.clone(), *v))
                .collect(),
        };
        self.tx.send_replace(Some(Arc::new(snapshot)));
    }

    /// Marks clusters whose last sign of life is older than the timeout as dead. Returns how
    /// many changed. Called by [`MemoryRegistry::run_liveness`]; public for tests.
    pub fn expire(&self, now: Instant) -> usize {
        let mut state = self.lock();
        let mut changed = 0;
        for (id, (view, seen)) in &mut state.clusters {
            if view.alive && now.saturating_duration_since(*seen) > self.liveness_timeout {
                tracing::warn!(cluster = %id, "cluster missed its liveness timeout, leaving the answers");
                view.alive = false;
                changed += 1;
            }
        }
        let released = self.release(&mut state, now);
        let hosts = self.sweep_hosts(&mut state, now);
        if changed > 0 || released || hosts {
            self.emit(&mut state);
        }
        changed
    }

    /// Runs the liveness sweep until `shutdown` resolves.
    pub async fn run_liveness(&self, shutdown: impl Future<Output = ()>) {
        let period = (self.liveness_timeout / 4).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => { self.expire(Instant::now()); }
            }
        }
    }
}

impl Registry for MemoryRegistry {
    fn publish<'a>(
        &'a self,
        cluster: &'a ClusterId,
        exports: Arc<ExportSet>,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut state = self.lock();
            self.allocate(&mut state, exports.keys().cloned());
            let service_entries = state
                .clusters
                .get(cluster)
                .map(|(v, _)| v.service_entries.clone())
                .unwrap_or_default();
            let view = ClusterView {
                alive: true,
                exports,
                published: Timestamp::now(),
                service_entries,
            };
            state
                .clusters
                .insert(cluster.clone(), (view, Instant::now()));
            // Notes services that just lost their last export (their grace period starts now).
            self.release(&mut state, Instant::now());
            self.sweep_hosts(&mut state, Instant::now());
            self.emit(&mut state);
            Ok(())
        })
    }

    fn publish_service_entries<'a>(
        &'a self,
        cluster: &'a ClusterId,
        entries: ServiceEntrySet,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut state = self.lock();
            let now = Instant::now();
            let entry = state.clusters.entry(cluster.clone()).or_insert_with(|| {
                (
                    ClusterView {
                        alive: true,
                        exports: Arc::new(ExportSet::new()),
                        published: Timestamp::now(),
                        service_entries: Arc::default(),
                    },
                    now,
                )
            });
            entry.0.alive = true;
            entry.0.service_entries = Arc::new(entries);
            entry.1 = now;
            self.sweep_hosts(&mut state, now);
            self.emit(&mut state);
            Ok(())
        })
    }

    fn heartbeat<'a>(&'a self, cluster: &'a ClusterId) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut state = self.lock();
            let revived = match state.clusters.get_mut(cluster) {
                Some((view, seen)) => {
                    *seen = Instant::now();
                    let revived = !view.alive;
                    view.alive = true;
                    revived
                }
                None => false,
            };
            if revived {
                tracing::info!(cluster = %cluster, "cluster alive again");
                self.emit(&mut state);
            }
            Ok(())
        })
    }

    fn withdraw<'a>(&'a self, cluster: &'a ClusterId) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut state = self.lock();
            if state.clusters.remove(cluster).is_some() {
                self.release(&mut state, Instant::now());
                self.sweep_hosts(&mut state, Instant::now());
                self.emit(&mut state);
            }
            Ok(())
        })
    }

    fn subscribe(&self) -> SnapshotReceiver {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceKey;
    use crate::model::{Export, ServiceType};

    fn set(cluster: &ClusterId, names: &[&str]) -> ExportSet {
        names
            .iter()
            .map(|n| {
                let key = ServiceKey::new("default", n).unwrap();
                let export = Export {
                    key: key.clone(),
                    cluster: cluster.clone(),
                    service_type: ServiceType::ClusterSetIp,
                    ports: vec![].into(),
                    cluster_ips: vec!["10.0.0.1".parse().unwrap()].into(),
                    endpoints: vec![].into(),
                    created: Timestamp(1),
                };
                (key, Arc::new(export))
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn publish_replaces_the_whole_set() {
        let reg = MemoryRegistry::new(Duration::from_secs(15));
        let mut rx = reg.subscribe();
        let a = ClusterId::new("a").unwrap();
        reg.publish(&a, std::sync::Arc::new(set(&a, &["web", "db"])))
            .await
            .unwrap();
        reg.publish(&a, std::sync::Arc::new(set(&a, &["web"])))
            .await
            .unwrap();
        rx.changed().await.unwrap();
        let snap = rx.borrow().clone().unwrap();
        assert_eq!(
            snap.clusters[&a].exports.len(),
            1,
            "db must be gone after a re-publish"
        );
        assert_eq!(snap.version, 2);
        reg.withdraw(&a).await.unwrap();
        assert!(
            reg.subscribe()
                .borrow()
                .as_ref()
                .unwrap()
                .clusters
                .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn mcs10_cluster_dies_without_heartbeat_and_comes_back() {
        let reg = MemoryRegistry::new(Duration::from_secs(15));
        let a = ClusterId::new("a").unwrap();
        let b = ClusterId::new("b").unwrap();
        reg.publish(&a, std::sync::Arc::new(set(&a, &["web"])))
            .await
            .unwrap();
        reg.publish(&b, std::sync::Arc::new(set(&b, &["web"])))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
        reg.heartbeat(&b).await.unwrap();
        assert_eq!(reg.expire(Instant::now()), 0);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(reg.expire(Instant::now()), 1);
        let snap = reg.subscribe().borrow().clone().unwrap();
        assert!(!snap.clusters[&a].alive);
        assert!(snap.clusters[&b].alive);
        assert_eq!(
            snap.clusters[&a].exports.len(),
            1,
            "a dead cluster keeps its last exports"
        );
        reg.heartbeat(&a).await.unwrap();
        assert!(reg.subscribe().borrow().as_ref().unwrap().clusters[&a].alive);
    }

    /// A source that is still loading is not a dead cluster: liveness counts from the first
    /// publish, however long the load took, and a heartbeat before it makes no cluster.
    #[tokio::test(start_paused = true)]
    async fn liveness_counts_from_the_first_publish() {
        let reg = MemoryRegistry::new(Duration::from_secs(15));
        let a = ClusterId::new("a").unwrap();
        reg.heartbeat(&a).await.unwrap();
        assert!(
            reg.subscribe()
                .borrow()
                .as_ref()
                .unwrap()
                .clusters
                .is_empty()
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(reg.expire(Instant::now()), 0);
        reg.publish(&a, std::sync::Arc::new(set(&a, &["web"])))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(14)).await;
        assert_eq!(reg.expire(Instant::now()), 0);
        assert!(reg.subscribe().borrow().as_ref().unwrap().clusters[&a].alive);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            reg.expire(Instant::now()),
            1,
            "silent for longer than the timeout"
        );
    }

    /// SPEC §4: one VIP per service, the same from every cluster's publish, stable while any
    /// export lives, released only after the grace period.
    #[tokio::test(start_paused = true)]
    async fn vips_are_stable_unique_and_released_after_the_grace_period() {
        let range: VipRange = "240.240.0.0/16".parse().unwrap();
        let reg =
            MemoryRegistry::new(Duration::from_secs(15)).with_vips(range, Duration::from_secs(60));
        let a = ClusterId::new("a").unwrap();
        let b = ClusterId::new("b").unwrap();
        reg.publish(&a, std::sync::Arc::new(set(&a, &["web", "db"])))
            .await
            .unwrap();
        reg.publish(&b, std::sync::Arc::new(set(&b, &["web"])))
            .await
            .unwrap();
        let vips = |reg: &MemoryRegistry| reg.subscribe().borrow().as_ref().unwrap().vips.clone();
        let first = vips(&reg);
        assert_eq!(first.len(), 2);
        assert_ne!(first.values().next(), first.values().nth(1), "unique");
        assert!(first.values().all(|ip| match ip {
            IpAddr::V4(v4) => range.contains(*v4),
            IpAddr::V6(_) => false,
        }));
        // web leaves a, db leaves entirely: web keeps its VIP (b exports it), db keeps its
        // VIP through the grace period, then loses it.
        reg.publish(&a, std::sync::Arc::new(ExportSet::new()))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        reg.heartbeat(&a).await.unwrap();
        reg.heartbeat(&b).await.unwrap();
        reg.expire(Instant::now());
        assert_eq!(vips(&reg), first, "within the grace period");
        tokio::time::advance(Duration::from_secs(40)).await;
        reg.heartbeat(&a).await.unwrap();
        reg.heartbeat(&b).await.unwrap();
        reg.expire(Instant::now());
        let web = ServiceKey::new("default", "web").unwrap();
        let now = vips(&reg);
        assert_eq!(now.len(), 1);
        assert_eq!(now[&web], first[&web], "stable for the service's life");
    }
    fn entries(cluster: &ClusterId, list: &[(&str, i64, &str, Option<&str>)]) -> ServiceEntrySet {
        use crate::service_entry::{Resolution, ServiceEntry};
        list.iter()
            .map(|(name, created, host, addr)| {
                let e = ServiceEntry {
                    namespace: "ns".into(),
                    name: name.to_string(),
                    cluster: cluster.clone(),
                    hosts: vec![host.to_string()],
                    addresses: addr.iter().map(|a| a.parse().unwrap()).collect(),
                    status_addresses: vec![],
                    resolution: Resolution::Dns,
                    autoallocate: true,
                    created: Timestamp(*created),
                };
                (e.label(), Arc::new(e))
            })
            .collect()
    }

    /// IST-14: one VIP per family per host, kept while needed; an address an entry names in
    /// `spec.addresses` always wins, so an allocated VIP equal to it moves; released after
    /// the grace period.
    #[tokio::test(start_paused = true)]
    async fn ist14_host_vips_both_families_spec_wins_and_grace() {
        let range: VipRange = "240.240.0.0/30".parse().unwrap(); // two usable addresses
        let range6: VipRangeV6 = "2001:2::/48".parse().unwrap();
        let reg = MemoryRegistry::new(Duration::from_secs(15))
            .with_vips(range, Duration::from_secs(60))
            .with_vips_v6(range6);
        let a = ClusterId::new("a").unwrap();
        let b = ClusterId::new("b").unwrap();
        reg.publish_service_entries(&a, entries(&a, &[("x", 1, "x.example.com", None)]))
            .await
            .unwrap();
        let snap = || reg.subscribe().borrow().clone().unwrap();
        let first = snap().host_vips["x.example.com"];
        let v4 = first.v4.expect("an IPv4 VIP");
        assert!(range.contains(v4));
        assert!(range6.contains(first.v6.expect("an IPv6 VIP")));
        assert!(
            snap().clusters[&a].alive,
            "publishing entries makes the cluster known"
        );
        // b names x's VIP as its own address: spec wins, x moves to the other free address.
        let taken = v4.to_string();
        reg.publish_service_entries(&b, entries(&b, &[("y", 2, "y.example.com", Some(&taken))]))
            .await
            .unwrap();
        let moved = snap().host_vips["x.example.com"];
        assert_ne!(
            moved.v4,
            Some(v4),
            "spec.addresses win over an allocated VIP"
        );
        assert!(moved.v4.is_some_and(|ip| range.contains(ip)));
        assert_eq!(moved.v6, first.v6, "the other family stays");
        assert!(
            !snap().host_vips.contains_key("y.example.com"),
            "y has its own address"
        );
        let plan = crate::mesh::plan(&snap());
        assert_eq!(plan.hosts["y.example.com"].ips, [IpAddr::V4(v4)]);
        assert_eq!(plan.hosts["x.example.com"].ips.len(), 2);
        // x goes away: its VIP outlives it for the grace period only.
        reg.publish_service_entries(&a, ServiceEntrySet::new())
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        reg.heartbeat(&a).await.unwrap();
        reg.heartbeat(&b).await.unwrap();
        reg.expire(Instant::now());
        assert!(
            snap().host_vips.contains_key("x.example.com"),
            "within the grace period"
        );
        tokio::time::advance(Duration::from_secs(40)).await;
        reg.heartbeat(&a).await.unwrap();
        reg.heartbeat(&b).await.unwrap();
        reg.expire(Instant::now());
        assert!(
            !snap().host_vips.contains_key("x.example.com"),
            "released after it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn services_get_an_ipv6_vip_beside_the_ipv4_one() {
        let reg = MemoryRegistry::new(Duration::from_secs(15))
            .with_vips("240.240.0.0/16".parse().unwrap(), Duration::from_secs(60))
            .with_vips_v6("2001:2::/48".parse().unwrap());
        let a = ClusterId::new("a").unwrap();
        reg.publish(&a, std::sync::Arc::new(set(&a, &["web", "db"])))
            .await
            .unwrap();
        let snap = reg.subscribe().borrow().clone().unwrap();
        assert_eq!(snap.vips.len(), 2);
        assert_eq!(snap.vips_v6.len(), 2);
        let v6: BTreeSet<_> = snap.vips_v6.values().collect();
        assert_eq!(v6.len(), 2, "unique");
    }
    /// IST-13 (istiocoredns/V1 allocation's fault): adding and removing other entries never
    /// moves a host's VIP.
    #[tokio::test(start_paused = true)]
    async fn ist13_host_vips_do_not_move_when_other_entries_change() {
        let reg = MemoryRegistry::new(Duration::from_secs(15))
            .with_vips("240.240.0.0/16".parse().unwrap(), Duration::from_secs(60))
            .with_vips_v6("2001:2::/48".parse().unwrap());
        let a = ClusterId::new("a").unwrap();
        let b = ClusterId::new("b").unwrap();
        reg.publish_service_entries(&a, entries(&a, &[("x", 5, "x.example.com", None)]))
            .await
            .unwrap();
        let vip = || reg.subscribe().borrow().as_ref().unwrap().host_vips["x.example.com"];
        let first = vip();
        let names: Vec<String> = (0..200).map(|i| format!("h{i}.example.com")).collect();
        let many: Vec<(&str, i64, &str, Option<&str>)> =
            names.iter().map(|h| ("e", 1, h.as_str(), None)).collect();
        let many: ServiceEntrySet = many
            .iter()
            .enumerate()
            .flat_map(|(i, e)| {
                let label = format!("e{i}");
                entries(&b, &[(label.as_str(), e.1, e.2, e.3)])
            })
            .collect();
        reg.publish_service_entries(&b, many).await.unwrap();
        assert_eq!(
            reg.subscribe().borrow().as_ref().unwrap().host_vips.len(),
            201
        );
        assert_eq!(vip(), first, "200 older entries added");
        reg.publish_service_entries(&b, ServiceEntrySet::new())
            .await
            .unwrap();
        assert_eq!(vip(), first, "and removed again");
    }
}
