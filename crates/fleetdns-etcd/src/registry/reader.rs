//! The reader: one snapshot of everything under the prefix at one revision, then the watch
//! from the next revision, applied whole revisions at a time; on compaction or a lost
//! connection, a fresh snapshot (with backoff). [`ReaderState`] is what it has seen, key by
//! key, and builds the [`FleetSnapshot`]s it serves.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use fleetdns_core::{
    ClusterId, ClusterView, ExportSet, FleetSnapshot, HostVips, ServiceEntrySet, ServiceKey,
    Timestamp,
};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::{EtcdRegistry, EtcdStatus, MAX_MESSAGE, prefix_end};
use crate::codec::{self, ClusterRecord, Family, Layout, Parsed};

/// Keys per page of a snapshot load.
const PAGE: i64 = 2000;

/// Why a reader's snapshot-and-watch stopped (it then starts over).
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("loading the snapshot: {0}")]
    Load(etcd_client::Error),
    #[error("starting the watch: {0}")]
    WatchStart(etcd_client::Error),
    #[error("the watch failed: {0}")]
    Watch(etcd_client::Error),
    #[error("the watch ended")]
    WatchEnded,
    #[error("revision {from} was compacted (now {now}); loading a fresh snapshot")]
    Compacted { from: i64, now: i64 },
    #[error("the watch was cancelled: {0}")]
    Cancelled(String),
    #[error("the etcd client panicked")]
    Panicked,
}

impl ReaderError {
    /// etcd refused the client's auth token. A watch created with a token etcd no longer
    /// takes is cancelled as "permission denied" (etcd 3.4) or with the token error.
    fn token_rejected(&self) -> bool {
        match self {
            Self::Load(e) | Self::WatchStart(e) | Self::Watch(e) => super::token_rejected(e),
            Self::Cancelled(reason) => {
                super::says_token_rejected(reason) || reason.contains("permission denied")
            }
            _ => false,
        }
    }
}

impl EtcdRegistry {
    /// Follows etcd into snapshots until `cancel`: load at one revision, watch from the next,
    /// start over on compaction or a lost connection (with backoff). Only readers need it;
    /// an agent that writes back runs it too.
    pub async fn run(&self, cancel: CancellationToken) {
        let mut wait = Duration::from_millis(200);
        // What the last load and watch saw: the next load shares its unchanged exports.
        let mut previous = None;
        loop {
            let loads = self.status.loads.load(Ordering::Relaxed);
            // etcd-client asserts on an unexpected first watch response; a panic there must
            // not end the reader (the registry would be stale for good).
            let attempt =
                std::panic::AssertUnwindSafe(self.load_and_follow(&mut previous)).catch_unwind();
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                r = attempt => r.unwrap_or(ReaderError::Panicked),
            };
            if self.status.loads.load(Ordering::Relaxed) != loads {
                wait = Duration::from_millis(200); // it loaded: the next outage starts afresh
            }
            self.status.watch_errors.fetch_add(1, Ordering::Relaxed);
            if outcome.token_rejected() {
                self.renew_token().await;
            }
            if self.status.stale.swap(true, Ordering::Relaxed) {
                tracing::debug!(error = %outcome, "etcd registry still unreachable");
            } else {
                tracing::warn!(error = %outcome, "etcd registry stale: serving the last snapshot until etcd answers");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// One snapshot and the watch that follows it; returns why it stopped, and leaves what
    /// it saw in `previous` for the next load.
    async fn load_and_follow(&self, previous: &mut Option<ReaderState>) -> ReaderError {
        match self.load(previous.as_ref()).await {
            Ok((state, revision)) => {
                let state = previous.insert(state);
                self.follow(state, revision).await
            }
            Err(e) => e,
        }
    }

    /// Loads every key at one revision and serves it: pages of [`PAGE`] keys, every page
    /// read at the first page's revision, so the snapshot is consistent however large.
    /// Exports equal to what `previous` held are served as the same `Arc`s (see
    /// [`ReaderState::reloaded`]).
    async fn load(
        &self,
        previous: Option<&ReaderState>,
    ) -> Result<(ReaderState, i64), ReaderError> {
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE);
        let root = self.layout.root();
        let end = prefix_end(&root);
        let mut start = root.into_bytes();
        let mut revision = 0;
        let mut state = ReaderState::default();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let resp = kv
                .get(start.clone(), Some(options))
                .await
                .map_err(ReaderError::Load)?;
            if revision == 0 {
                revision = resp
                    .header()
                    .map_or(0, etcd_client::ResponseHeader::revision);
            }
            for kv in resp.kvs() {
                state.put(&self.layout, Entry::of(kv), &self.status, previous);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        if let Some(previous) = previous {
            state.reloaded(previous);
        }
        self.status.loads.fetch_add(1, Ordering::Relaxed);
        if self.status.stale.swap(false, Ordering::Relaxed) {
            tracing::info!(
                revision,
                clusters = state.clusters.len(),
                "etcd registry loaded"
            );
        }
        self.emit(&mut state, revision);
        Ok((state, revision))
    }

    /// Applies the watch from `revision + 1` until it fails; returns why.
    async fn follow(&self, state: &mut ReaderState, revision: i64) -> ReaderError {
        let mut watch_client = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE);
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let (_watcher, mut stream) =
            match watch_client.watch(self.layout.root(), Some(options)).await {
                Ok(w) => w,
                Err(e) => return ReaderError::WatchStart(e),
            };
        let mut sweep =
            tokio::time::interval(super::vips::sweep_every(self.vips.map(|(_, grace)| grace)));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = sweep.tick() => {
                    if self.vips.is_some() {
                        self.release_vips(state).await;
                        self.release_host_vips(state).await;
                    }
                    continue;
                }
            };
            let resp = match message {
                Ok(Some(r)) => r,
                Ok(None) => return ReaderError::WatchEnded,
                Err(e) => return ReaderError::Watch(e),
            };
            if resp.compact_revision() > 0 {
                return ReaderError::Compacted {
                    from: revision + 1,
                    now: resp.compact_revision(),
                };
            }
            if resp.canceled() {
                return ReaderError::Cancelled(resp.cancel_reason().to_owned());
            }
            if resp.events().is_empty() {
                continue;
            }
            // One response carries whole revisions: a transaction is applied at once.
            let mut last = revision;
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                last = last.max(kv.mod_revision());
                match event.event_type() {
                    EventType::Put => state.put(&self.layout, Entry::of(kv), &self.status, None),
                    EventType::Delete => state.delete(&self.layout, kv.key()),
                }
            }
            self.emit(state, last);
        }
    }

    /// For tests: follows the watch from an old revision after loading (to see what a
    /// compaction does to it). Returns why it stopped.
    #[doc(hidden)]
    pub async fn follow_from(&self, revision: i64) -> String {
        let why = match self.load(None).await {
            Ok((mut state, _)) => self.follow(&mut state, revision).await,
            Err(e) => e,
        };
        why.to_string()
    }

    fn emit(&self, state: &mut ReaderState, revision: i64) {
        state.revision = revision;
        self.status.revision.store(revision, Ordering::Relaxed);
        let version = revision.max(0) as u64;
        let snapshot = state.snapshot(version);
        self.tx.send_replace(Some(Arc::new(snapshot)));
    }
}

/// One key-value as the reader takes it from a range read or a watch event.
#[derive(Debug, Clone, Copy)]
struct Entry<'a> {
    key: &'a [u8],
    value: &'a [u8],
    mod_revision: i64,
}

impl<'a> Entry<'a> {
    fn of(kv: &'a etcd_client::KeyValue) -> Self {
        Self {
            key: kv.key(),
            value: kv.value(),
            mod_revision: kv.mod_revision(),
        }
    }
}

/// What a reader has seen, key by key.
#[derive(Default)]
pub(super) struct ReaderState {
    pub(super) clusters: BTreeMap<ClusterId, ClusterRecord>,
    /// (cluster, generation) → exports.
    pub(super) exports: BTreeMap<(ClusterId, u64), ExportSet>,
    /// Views built for the last snapshot, rebuilt only for clusters that changed.
    pub(super) views: BTreeMap<ClusterId, Arc<ExportSet>>,
    /// VIPs with the revision they were last written at (for a guarded release).
    pub(super) vips: BTreeMap<ServiceKey, (Ipv4Addr, i64)>,
    pub(super) vips6: BTreeMap<ServiceKey, Ipv6Addr>,
    /// ServiceEntry host VIPs by (family, host), with their mod revision.
    pub(super) host_vips: BTreeMap<(Family, String), (IpAddr, i64)>,
    pub(super) service_entries: BTreeMap<ClusterId, Arc<ServiceEntrySet>>,
    /// The etcd revision this state reflects.
    pub(super) revision: i64,
}

impl ReaderState {
    /// Takes over from `previous` (what the reader held before it loaded again) every cluster
    /// set whose exports all are the ones it served (`put` shares equal exports as they are
    /// decoded): an unchanged cluster after etcd came back is the same set, compared by one
    /// pointer.
    fn reloaded(&mut self, previous: &ReaderState) {
        for (id, record) in &self.clusters {
            let (Some(old), Some(new)) = (
                previous.views.get(id),
                self.exports.get(&(id.clone(), record.generation)),
            ) else {
                continue;
            };
            let same = old.len() == new.len()
                && old
                    .iter()
                    .zip(new)
                    .all(|((ka, ea), (kb, eb))| ka == kb && Arc::ptr_eq(ea, eb));
            if same {
                self.views.insert(id.clone(), old.clone());
            }
        }
    }

    /// The exports of the generation `cluster`'s record names.
    fn current_exports(&self, cluster: &ClusterId) -> Option<&ExportSet> {
        let generation = self.clusters.get(cluster)?.generation;
        self.exports.get(&(cluster.clone(), generation))
    }

    /// Applies one key-value. An export equal to one already served (by `earlier`, the state
    /// before a reload, or by this state's current generation of the cluster) is kept as that
    /// same `Arc` and the decoded copy dropped at once: otherwise the compiler's merge kept
    /// the exports it had while the snapshot held the reloaded copies (every export twice
    /// from the first etcd restart on), and freeing the copies only after a whole load left
    /// holes between the new state's maps that the allocator could not give back.
    fn put(
        &mut self,
        layout: &Layout,
        kv: Entry<'_>,
        status: &EtcdStatus,
        earlier: Option<&ReaderState>,
    ) {
        let (key, value) = (kv.key, kv.value);
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            status.bad_values.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(key = %String::from_utf8_lossy(key), what, error = %e, "etcd value skipped");
        };
        match layout.parse(key) {
            Parsed::Cluster(c) => match codec::decode_cluster(value) {
                Ok(r) => {
                    self.views.remove(&c);
                    self.clusters.insert(c, r);
                }
                Err(e) => bad("cluster", &e),
            },
            Parsed::Export {
                cluster,
                generation,
                key,
            } => match codec::decode_export(value, key.clone(), cluster.clone()) {
                Ok(e) => {
                    // Equal to one served already (after a reload, or in a new generation
                    // written on a new lease): that one, and this copy dropped now.
                    let served = |state: &ReaderState| {
                        state
                            .current_exports(&cluster)
                            .and_then(|set| set.get(&key))
                            .filter(|before| ***before == e)
                            .cloned()
                    };
                    let shared = earlier.and_then(served).or_else(|| served(self));
                    self.views.remove(&cluster);
                    self.exports
                        .entry((cluster, generation))
                        .or_default()
                        .insert(key, shared.unwrap_or_else(|| Arc::new(e)));
                }
                Err(e) => bad("export", &e),
            },
            Parsed::Vip(service) => match codec::decode_vip(value) {
                Ok(r) => {
                    self.vips.insert(service, (r.ip, kv.mod_revision));
                }
                Err(e) => bad("vip", &e),
            },
            Parsed::Vip6(service) => match codec::decode_addr(value) {
                Ok(codec::AddrRecord {
                    ip: IpAddr::V6(ip), ..
                }) => {
                    self.vips6.insert(service, ip);
                }
                Ok(_) => bad("vip6", &"not an IPv6 address"),
                Err(e) => bad("vip6", &e),
            },
            Parsed::HostVip(family, host) => match codec::decode_addr(value) {
                Ok(r) if Family::of(r.ip) == family => {
                    self.host_vips
                        .insert((family, host), (r.ip, kv.mod_revision));
                }
                Ok(_) => bad("host vip", &"address of the other family"),
                Err(e) => bad("host vip", &e),
            },
            Parsed::ServiceEntries(c) => match codec::decode_service_entries(value, &c) {
                Ok(set) => {
                    self.service_entries.insert(c, Arc::new(set));
                }
                Err(e) => bad("service entries", &e),
            },
            Parsed::Other => {}
        }
    }

    fn delete(&mut self, layout: &Layout, key: &[u8]) {
        match layout.parse(key) {
            Parsed::Cluster(c) => {
                self.views.remove(&c);
                self.clusters.remove(&c);
            }
            Parsed::Export {
                cluster,
                generation,
                key,
            } => {
                self.views.remove(&cluster);
                let id = (cluster, generation);
                if let Some(set) = self.exports.get_mut(&id) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.exports.remove(&id);
                    }
                }
            }
            Parsed::Vip(service) => {
                self.vips.remove(&service);
            }
            Parsed::Vip6(service) => {
                self.vips6.remove(&service);
            }
            Parsed::HostVip(family, host) => {
                self.host_vips.remove(&(family, host));
            }
            Parsed::ServiceEntries(c) => {
                self.service_entries.remove(&c);
            }
            Parsed::Other => {}
        }
    }

    fn snapshot(&mut self, version: u64) -> FleetSnapshot {
        let mut clusters = BTreeMap::new();
        for (id, record) in &self.clusters {
            let exports = self
                .views
                .entry(id.clone())
                .or_insert_with(|| {
                    Arc::new(
                        self.exports
                            .get(&(id.clone(), record.generation))
                            .cloned()
                            .unwrap_or_default(),
                    )
                })
                .clone();
            clusters.insert(
                id.clone(),
                ClusterView {
                    alive: true,
                    exports,
                    published: Timestamp(record.published),
                    service_entries: self.service_entries.get(id).cloned().unwrap_or_default(),
                },
            );
        }
        let vips = self
            .vips
            .iter()
            .map(|(k, (ip, _))| (k.clone(), IpAddr::V4(*ip)))
            .collect();
        let mut host_vips: BTreeMap<String, HostVips> = BTreeMap::new();
        for ((_, host), (ip, _)) in &self.host_vips {
            let v = host_vips.entry(host.clone()).or_default();
            match ip {
                IpAddr::V4(ip) => v.v4 = Some(*ip),
                IpAddr::V6(ip) => v.v6 = Some(*ip),
            }
        }
        FleetSnapshot {
            version,
            clusters,
            vips,
            vips_v6: self.vips6.clone(),
            host_vips,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use fleetdns_core::model::{Export, ServiceType};

    use super::*;

    const PREFIX: &str = "/fleetdns/v1";

    struct Reader {
        layout: Layout,
        state: ReaderState,
        status: EtcdStatus,
        revision: i64,
    }

    impl Reader {
        fn new() -> Self {
            Self {
                layout: Layout::new(PREFIX),
                state: ReaderState::default(),
                status: EtcdStatus::default(),
                revision: 0,
            }
        }

        fn put(&mut self, key: &str, value: &[u8]) {
            self.revision += 1;
            let entry = Entry {
                key: key.as_bytes(),
                value,
                mod_revision: self.revision,
            };
            self.state.put(&self.layout, entry, &self.status, None);
        }

        fn delete(&mut self, key: &str) {
            self.state.delete(&self.layout, key.as_bytes());
        }

        /// Exported service names per cluster, as served.
        fn served(&mut self) -> Vec<(String, Vec<String>)> {
            self.state
                .snapshot(1)
                .clusters
                .iter()
                .map(|(c, v)| {
                    let names = v.exports.keys().map(|k| k.name().to_owned()).collect();
                    (c.to_string(), names)
                })
                .collect()
        }
    }

    fn cluster(generation: u64) -> Vec<u8> {
        codec::encode(&ClusterRecord {
            v: codec::VERSION,
            generation,
            published: 0,
            exports: 1,
        })
    }

    fn export(name: &str) -> Vec<u8> {
        codec::encode(&codec::ExportRecord::from_export(&Export {
            key: ServiceKey::new("default", name).unwrap(),
            cluster: ClusterId::new("east").unwrap(),
            service_type: ServiceType::Headless,
            ports: vec![].into(),
            cluster_ips: vec![].into(),
            endpoints: vec![].into(),
            created: Timestamp(0),
        }))
    }

    fn served(names: &[&str]) -> Vec<(String, Vec<String>)> {
        vec![(
            "east".to_owned(),
            names.iter().map(|n| (*n).to_owned()).collect(),
        )]
    }

    /// A generation the cluster key does not name is never served: a half-written set stays
    /// invisible until the flip, and the flip shows the whole new set at once.
    #[test]
    fn only_the_generation_the_cluster_key_names_is_served() {
        let mut r = Reader::new();
        r.put("/fleetdns/v1/exports/east/1/default/a", &export("a"));
        assert!(r.served().is_empty(), "no cluster key yet");
        r.put("/fleetdns/v1/clusters/east", &cluster(1));
        assert_eq!(r.served(), served(&["a"]));
        r.put("/fleetdns/v1/exports/east/2/default/b", &export("b"));
        r.put("/fleetdns/v1/exports/east/2/default/c", &export("c"));
        assert_eq!(
            r.served(),
            served(&["a"]),
            "generation 2 is not flipped to yet"
        );
        r.put("/fleetdns/v1/clusters/east", &cluster(2));
        assert_eq!(r.served(), served(&["b", "c"]));
        r.delete("/fleetdns/v1/exports/east/2/default/c");
        assert_eq!(r.served(), served(&["b"]));
        r.delete("/fleetdns/v1/clusters/east");
        assert!(r.served().is_empty(), "a cluster whose key expired is gone");
    }

    /// Bad values are skipped and counted; they do not take down what was served.
    #[test]
    fn bad_values_are_counted_and_skipped() {
        let mut r = Reader::new();
        r.put("/fleetdns/v1/clusters/east", &cluster(1));
        r.put("/fleetdns/v1/exports/east/1/default/a", &export("a"));
        r.put("/fleetdns/v1/exports/east/1/default/b", b"{not json");
        r.put(
            "/fleetdns/v1/clusters/west",
            br#"{"v":9,"generation":1,"published":0,"exports":0}"#,
        );
        // An IPv4 address under the IPv6 family, and an IPv4 one under vips6.
        r.put(
            "/fleetdns/v1/host-vips/6/a.example.com",
            br#"{"v":1,"ip":"240.0.0.1","allocated":0}"#,
        );
        r.put(
            "/fleetdns/v1/vips6/default/a",
            br#"{"v":1,"ip":"240.0.0.1","allocated":0}"#,
        );
        assert_eq!(r.status.bad_values.load(Ordering::Relaxed), 4);
        assert_eq!(r.served(), served(&["a"]));
        let snapshot = r.state.snapshot(1);
        assert!(snapshot.host_vips.is_empty() && snapshot.vips_v6.is_empty());
        // Keys of no known shape are not values at all: ignored, not counted.
        r.put("/fleetdns/v1/unknown/thing", b"x");
        r.put("/elsewhere/clusters/east", b"x");
        assert_eq!(r.status.bad_values.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn vips_of_both_families_and_hosts_reach_the_snapshot() {
        let mut r = Reader::new();
        r.put(
            "/fleetdns/v1/vips/default/a",
            br#"{"v":1,"ip":"240.0.0.1","allocated":0}"#,
        );
        r.put(
            "/fleetdns/v1/vips6/default/a",
            br#"{"v":1,"ip":"fd00::1","allocated":0}"#,
        );
        r.put(
            "/fleetdns/v1/host-vips/4/a.example.com",
            br#"{"v":1,"ip":"240.0.0.2","allocated":0}"#,
        );
        r.put(
            "/fleetdns/v1/host-vips/6/a.example.com",
            br#"{"v":1,"ip":"fd00::2","allocated":0}"#,
        );
        let key = ServiceKey::new("default", "a").unwrap();
        assert_eq!(r.state.vips[&key], ("240.0.0.1".parse().unwrap(), 1));
        let s = r.state.snapshot(3);
        assert_eq!(s.version, 3);
        assert_eq!(s.vips[&key].to_string(), "240.0.0.1");
        assert_eq!(s.vips_v6[&key].to_string(), "fd00::1");
        let host = s.host_vips["a.example.com"];
        assert_eq!(host.v4.unwrap().to_string(), "240.0.0.2");
        assert_eq!(host.v6.unwrap().to_string(), "fd00::2");
        r.delete("/fleetdns/v1/host-vips/4/a.example.com");
        r.delete("/fleetdns/v1/vips/default/a");
        let s = r.state.snapshot(4);
        assert!(s.vips.is_empty());
        assert_eq!(s.host_vips["a.example.com"].v4, None);
    }
}
