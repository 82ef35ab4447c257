//! [`EtcdRegistry`]: the [`Registry`] trait on etcd. Writers (agents) hold one lease per
//! cluster and publish whole sets in transactions; readers (DNS servers) load a snapshot at one
//! revision and follow the watch from the next. A compacted revision or a lost connection
//! means a fresh snapshot, never a missed update; meanwhile the last snapshot stays served and
//! [`EtcdStatus::stale`] says so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions,
};
use fleetdns_core::registry::{BoxFuture, SnapshotReceiver};
use fleetdns_core::{
    ClusterId, ClusterView, ExportSet, FleetSnapshot, HostVips, Registry, RegistryError,
    ServiceEntrySet, ServiceKey, Timestamp, VipRange, VipRangeV6,
};
use futures::FutureExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::EtcdError;
use crate::codec::{self, ClusterRecord, ExportRecord, Layout, Parsed};

/// etcd refuses transactions of more than 128 operations by default (`--max-txn-ops`).
const MAX_TXN_OPS: usize = 120;
/// etcd refuses requests over 1.5 MiB by default (`--max-request-bytes`): transactions are
/// kept under 1 MiB.
const MAX_TXN_BYTES: usize = 1 << 20;
/// Keys per page of a snapshot load.
const PAGE: i64 = 2000;
/// gRPC messages fleetdns accepts from etcd (tonic's default is 4 MiB): a watch response
/// carries every event of one revision, and deleting a large generation is one revision.
const MAX_MESSAGE: usize = 256 << 20;

/// PEM bytes for TLS; the binary reads the files.
#[derive(Debug, Clone, Default)]
pub struct TlsPem {
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// Key prefix, e.g. `/fleetdns/v1`.
    pub prefix: String,
    /// Each publishing cluster's lease: a cluster whose agent stops heartbeating leaves every
    /// answer within this time.
    pub lease_ttl_secs: i64,
    pub dial_timeout: Duration,
    /// Bound on each request (a watch is not a request).
    pub request_timeout: Duration,
    pub user: Option<(String, String)>,
    pub tls: Option<TlsPem>,
    /// Allocate a VIP per exported service from this range; release it this long after the
    /// service's last export is gone.
    pub vips: Option<(VipRange, Duration)>,
    /// Also an IPv6 VIP per service and ServiceEntry host from this range (IST-14); used only
    /// with `vips`.
    pub vips_v6: Option<VipRangeV6>,
}

/// What the registry reports, for metrics. Relaxed atomics.
#[derive(Debug, Default)]
pub struct EtcdStatus {
    /// 1 while the snapshot served may be behind etcd (not loaded, or the watch is down).
    pub stale: AtomicBool,
    /// Snapshots loaded: the first, and one after every compaction or lost connection.
    pub loads: AtomicU64,
    /// The etcd revision the served snapshot reflects.
    pub revision: AtomicI64,
    pub watch_errors: AtomicU64,
    /// Values that could not be decoded (skipped).
    pub bad_values: AtomicU64,
    pub publishes: AtomicU64,
    pub publish_errors: AtomicU64,
}

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

/// One cluster this process publishes.
struct Writer {
    lease: Option<i64>,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    generation: u64,
    /// What is in etcd under `generation`, as last written by this process.
    published: Option<ExportSet>,
    /// What the source last asked to publish (written or not): what a lost lease re-publishes.
    requested: Option<ExportSet>,
    /// The last keep-alive etcd confirmed: sources may heartbeat often, etcd hears a third
    /// of the TTL at most.
    kept: Option<tokio::time::Instant>,
    /// The ServiceEntry set the source last asked to publish, and the lease it was written
    /// on (a new lease writes it again).
    requested_entries: Option<ServiceEntrySet>,
    entries_lease: Option<i64>,
}

pub struct EtcdRegistry {
    client: Client,
    layout: Layout,
    lease_ttl: i64,
    /// One lock per cluster: a large publish of one cluster never holds up another's
    /// heartbeats.
    writers: std::sync::Mutex<HashMap<ClusterId, Arc<tokio::sync::Mutex<Writer>>>>,
    request_timeout: Duration,
    tx: watch::Sender<Option<Arc<FleetSnapshot>>>,
    status: Arc<EtcdStatus>,
    vips: Option<(VipRange, Duration)>,
    /// Services without exports, with when that was first seen (for the grace period).
    vip_orphans: std::sync::Mutex<HashMap<ServiceKey, tokio::time::Instant>>,
    vips_v6: Option<VipRangeV6>,
    /// ServiceEntry host VIPs no longer needed, with when that was first seen.
    host_orphans: std::sync::Mutex<HashMap<String, tokio::time::Instant>>,
}

impl std::fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Unavailable(e.to_string())
}

impl EtcdRegistry {
    /// Builds the client. The connection is made lazily: an etcd that is down now is retried
    /// by [`EtcdRegistry::run`] and by every write.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, EtcdError> {
        if config.endpoints.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        if config.lease_ttl_secs < 1 {
            return Err(EtcdError::LeaseTtl(config.lease_ttl_secs));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.dial_timeout)
            .with_timeout(config.request_timeout)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        if let Some((user, password)) = &config.user {
            options = options.with_user(user, password);
        }
        if let Some(tls) = &config.tls {
            let mut t = etcd_client::TlsOptions::new();
            if let Some(ca) = &tls.ca {
                t = t.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &tls.identity {
                t = t.identity(etcd_client::Identity::from_pem(cert, key));
            }
            options = options.with_tls(t);
        }
        let client = Client::connect(&config.endpoints, Some(options)).await?;
        Ok(Self {
            client,
            layout: Layout::new(&config.prefix),
            lease_ttl: config.lease_ttl_secs,
            writers: std::sync::Mutex::new(HashMap::new()),
            request_timeout: config.request_timeout,
            tx: watch::Sender::new(None),
            status: Arc::new(EtcdStatus {
                stale: AtomicBool::new(true),
                ..EtcdStatus::default()
            }),
            vips: config.vips,
            vip_orphans: std::sync::Mutex::new(HashMap::new()),
            vips_v6: config.vips_v6,
            host_orphans: std::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn status(&self) -> Arc<EtcdStatus> {
        self.status.clone()
    }

    /// Follows etcd into snapshots until `cancel`: load at one revision, watch from the next,
    /// start over on compaction or a lost connection (with backoff). Only readers need it;
    /// an agent that writes back runs it too.
    pub async fn run(&self, cancel: CancellationToken) {
        let mut wait = Duration::from_millis(200);
        loop {
            let loads = self.status.loads.load(Ordering::Relaxed);
            // etcd-client asserts on an unexpected first watch response; a panic there must
            // not end the reader (the registry would be stale for good).
            let attempt = std::panic::AssertUnwindSafe(self.load_and_follow()).catch_unwind();
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                r = attempt => r.unwrap_or(ReaderError::Panicked),
            };
            if self.status.loads.load(Ordering::Relaxed) != loads {
                wait = Duration::from_millis(200); // it loaded: the next outage starts afresh
            }
            self.status.watch_errors.fetch_add(1, Ordering::Relaxed);
            if !self.status.stale.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %outcome, "etcd registry stale: serving the last snapshot until etcd answers");
            } else {
                tracing::debug!(error = %outcome, "etcd registry still unreachable");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// One snapshot and the watch that follows it; returns why it stopped.
    async fn load_and_follow(&self) -> ReaderError {
        match self.load().await {
            Ok((state, revision)) => self.follow(state, revision).await,
            Err(e) => e,
        }
    }

    /// Loads every key at one revision and serves it: pages of [`PAGE`] keys, every page
    /// read at the first page's revision, so the snapshot is consistent however large.
    async fn load(&self) -> Result<(ReaderState, i64), ReaderError> {
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE);
        let root = self.layout.root().into_bytes();
        let mut end = root.clone();
        *end.last_mut().expect("the root ends in /") += 1; // the prefix's range end
        let mut start = root;
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
                revision = resp.header().map_or(0, |h| h.revision());
            }
            for kv in resp.kvs() {
                state.put(&self.layout, kv, &self.status);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
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
    async fn follow(&self, mut state: ReaderState, revision: i64) -> ReaderError {
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
        let sweep_every = self.vips.map_or(Duration::from_secs(3600), |(_, grace)| {
            (grace / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
        });
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = sweep.tick() => {
                    if self.vips.is_some() {
                        self.release_vips(&state).await;
                        self.release_host_vips(&state).await;
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
                    EventType::Put => state.put(&self.layout, kv, &self.status),
                    EventType::Delete => state.delete(&self.layout, kv.key()),
                }
            }
            self.emit(&mut state, last);
        }
    }

    /// For tests: follows the watch from an old revision after loading (to see what a
    /// compaction does to it). Returns why it stopped.
    #[doc(hidden)]
    pub async fn follow_from(&self, revision: i64) -> String {
        let why = match self.load().await {
            Ok((state, _)) => self.follow(state, revision).await,
            Err(e) => e,
        };
        why.to_string()
    }

    /// The client, for tests and tools (compaction, raw keys).
    #[doc(hidden)]
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn emit(&self, state: &mut ReaderState, revision: i64) {
        state.revision = revision;
        self.status.revision.store(revision, Ordering::Relaxed);
        let version = revision.max(0) as u64;
        let snapshot = state.snapshot(version);
        self.tx.send_replace(Some(Arc::new(snapshot)));
    }

    async fn grant(&self, w: &mut Writer) -> Result<i64, RegistryError> {
        if let Some(id) = w.lease {
            return Ok(id);
        }
        let resp = self
            .client
            .lease_client()
            .grant(self.lease_ttl, None)
            .await
            .map_err(unavailable)?;
        w.lease = Some(resp.id());
        w.keeper = None;
        w.published = None; // every key must move onto the new lease
        Ok(resp.id())
    }

    /// Writes `exports` as a new generation, then flips the cluster key to it in one
    /// transaction and deletes every other generation.
    async fn publish_generation(
        &self,
        cluster: &ClusterId,
        w: &mut Writer,
        exports: &ExportSet,
        lease: i64,
    ) -> Result<(), RegistryError> {
        // A second writer of the same cluster (an agent and its replacement overlapping in a
        // rolling restart) may flip the cluster key while this one writes its generation, and
        // then delete it as older: so the flip is a compare-and-swap on the key as read at the
        // start, and a lost race starts over with a new generation.
        for _ in 0..5 {
            if let Some(generation) = self.try_generation(cluster, w, exports, lease).await? {
                return self.drop_older(cluster, generation).await;
            }
        }
        Err(RegistryError::Unavailable(format!(
            "cluster {cluster}: another writer keeps replacing its export set"
        )))
    }

    /// Writes a new generation and flips the cluster key to it unless someone else flipped it
    /// meanwhile (then its keys are deleted again and `None` returned).
    async fn try_generation(
        &self,
        cluster: &ClusterId,
        w: &mut Writer,
        exports: &ExportSet,
        lease: i64,
    ) -> Result<Option<u64>, RegistryError> {
        let mut kv = self.client.kv_client();
        let cluster_key = self.layout.cluster(cluster);
        let current = kv
            .get(cluster_key.clone(), None)
            .await
            .map_err(unavailable)?;
        let seen = current.kvs().first().map_or(0, |kv| kv.mod_revision());
        let in_etcd = current
            .kvs()
            .first()
            .and_then(|kv| codec::decode_cluster(kv.value()).ok())
            .map_or(0, |r| r.generation);
        // Unique per writer (time in microseconds, then the low bits of its lease), growing:
        // two writers of one cluster never fill the same generation.
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let generation = (in_etcd.max(w.generation) + 1).max(micros << 10 | (lease as u64 & 0x3ff));
        let put = PutOptions::new().with_lease(lease);
        // Batches under etcd's limits on operations and bytes per request.
        let mut batch = Vec::new();
        let mut bytes = 0;
        for (key, e) in exports {
            let k = self.layout.export(cluster, generation, key);
            let v = codec::encode(&ExportRecord::from_export(e));
            let size = k.len() + v.len() + 16;
            if size > MAX_TXN_BYTES {
                return Err(RegistryError::Unavailable(format!(
                    "export {key} of cluster {cluster} encodes to {size} bytes, more than one etcd request holds"
                )));
            }
            if batch.len() == MAX_TXN_OPS || bytes + size > MAX_TXN_BYTES {
                kv.txn(Txn::new().and_then(std::mem::take(&mut batch)))
                    .await
                    .map_err(unavailable)?;
                bytes = 0;
            }
            bytes += size;
            batch.push(TxnOp::put(k, v, Some(put.clone())));
        }
        if !batch.is_empty() {
            kv.txn(Txn::new().and_then(batch))
                .await
                .map_err(unavailable)?;
        }
        let record = ClusterRecord {
            v: codec::VERSION,
            generation,
            published: Timestamp::now().0,
            exports: exports.len(),
        };
        let flip = Txn::new()
            .when(vec![Compare::mod_revision(
                cluster_key.clone(),
                CompareOp::Equal,
                seen,
            )])
            .and_then(vec![TxnOp::put(
                cluster_key,
                codec::encode(&record),
                Some(put),
            )]);
        let flipped = kv.txn(flip).await.map_err(unavailable)?.succeeded();
        if !flipped {
            kv.delete(
                self.layout.generation(cluster, generation),
                Some(DeleteOptions::new().with_prefix()),
            )
            .await
            .map_err(unavailable)?;
            return Ok(None);
        }
        w.generation = generation;
        w.published = Some(exports.clone());
        Ok(Some(generation))
    }

    /// Deletes the cluster's generations older than `generation` (never a newer one: another
    /// writer may be filling it).
    async fn drop_older(&self, cluster: &ClusterId, generation: u64) -> Result<(), RegistryError> {
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE);
        let base = self.layout.cluster_exports(cluster);
        let old = kv
            .get(
                base.clone(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .map_err(unavailable)?;
        let mut stale: Vec<u64> = old
            .kvs()
            .iter()
            .filter_map(|kv| std::str::from_utf8(kv.key()).ok())
            .filter_map(|k| k.strip_prefix(&base)?.split('/').next()?.parse().ok())
            .filter(|g| *g < generation)
            .collect();
        stale.sort();
        stale.dedup();
        for g in stale {
            kv.delete(
                format!("{base}{g}/"),
                Some(DeleteOptions::new().with_prefix()),
            )
            .await
            .map_err(unavailable)?;
        }
        Ok(())
    }

    /// The operations that turn `old` into `new` inside the current generation, with their
    /// size in bytes.
    fn diff(
        &self,
        cluster: &ClusterId,
        generation: u64,
        old: &ExportSet,
        new: &ExportSet,
        lease: i64,
    ) -> (Vec<TxnOp>, usize) {
        let put = PutOptions::new().with_lease(lease);
        let mut ops = Vec::new();
        let mut bytes = 0;
        for (key, e) in new {
            if old.get(key).is_none_or(|o| o != e) {
                let k = self.layout.export(cluster, generation, key);
                let v = codec::encode(&ExportRecord::from_export(e));
                bytes += k.len() + v.len() + 16;
                ops.push(TxnOp::put(k, v, Some(put.clone())));
            }
        }
        for key in old.keys().filter(|k| !new.contains_key(*k)) {
            let k = self.layout.export(cluster, generation, key);
            bytes += k.len() + 16;
            ops.push(TxnOp::delete(k, None));
        }
        (ops, bytes)
    }

    /// Gives every service of `keys` a VIP unless it has one: a compare-and-swap transaction
    /// creates the service's record and the address claim together, only if neither exists.
    async fn allocate_vips(
        &self,
        keys: impl Iterator<Item = &ServiceKey>,
    ) -> Result<(), RegistryError> {
        let Some((range, _)) = self.vips else {
            return Ok(());
        };
        let have: BTreeSet<ServiceKey> = self
            .tx
            .borrow()
            .as_ref()
            .map(|s| s.vips.keys().cloned().collect())
            .unwrap_or_default();
        // Allocation is idempotent (the transaction finds an existing record), so a service
        // the reader has not caught up with costs one transaction, nothing more.
        let all: Vec<ServiceKey> = keys.cloned().collect();
        let wanted: Vec<ServiceKey> = all.iter().filter(|k| !have.contains(*k)).cloned().collect();
        let mut kv = self.client.kv_client();
        for key in wanted {
            let record_key = self.layout.vip(&key);
            let mut done = false;
            for ip in range.candidates(&key).take(4096) {
                let claim = self.layout.vip_claim(ip);
                let record = codec::VipRecord {
                    v: codec::VERSION,
                    ip,
                    allocated: Timestamp::now().0,
                };
                let txn = Txn::new()
                    .when(vec![
                        Compare::create_revision(record_key.clone(), CompareOp::Equal, 0),
                        Compare::create_revision(claim.clone(), CompareOp::Equal, 0),
                    ])
                    .and_then(vec![
                        TxnOp::put(record_key.clone(), codec::encode(&record), None),
                        TxnOp::put(claim, format!("{}/{}", key.namespace(), key.name()), None),
                    ])
                    .or_else(vec![TxnOp::get(record_key.clone(), None)]);
                let resp = kv.txn(txn).await.map_err(unavailable)?;
                if resp.succeeded() {
                    tracing::info!(service = %key, vip = %ip, "VIP allocated");
                    done = true;
                    break;
                }
                // Lost the race: either the service got a VIP meanwhile (done) or the address
                // is taken (try the next).
                let allocated = resp.op_responses().into_iter().any(|op| match op {
                    etcd_client::TxnOpResponse::Get(g) => !g.kvs().is_empty(),
                    _ => false,
                });
                if allocated {
                    done = true;
                    break;
                }
            }
            if !done {
                tracing::warn!(service = %key, range = %range, "no free VIP found");
            }
        }
        if let Some(range6) = self.vips_v6 {
            let have6: BTreeSet<ServiceKey> = self
                .tx
                .borrow()
                .as_ref()
                .map(|s| s.vips_v6.keys().cloned().collect())
                .unwrap_or_default();
            for key in all.iter().filter(|k| !have6.contains(*k)) {
                let owner = format!("{}/{}", key.namespace(), key.name());
                let candidates = range6.candidates(key).map(IpAddr::V6);
                if !self
                    .claim_vip(&self.layout.vip6(key), &owner, candidates, &BTreeSet::new())
                    .await?
                {
                    tracing::warn!(service = %key, range = %range6, "no free IPv6 VIP found");
                }
            }
        }
        Ok(())
    }

    /// Creates the VIP record `record_key` with the first candidate whose address claim is
    /// free (skipping `skip`), both in one compare-and-swap. `Ok(true)` when the record exists
    /// afterwards (made here or by someone else).
    async fn claim_vip(
        &self,
        record_key: &str,
        owner: &str,
        candidates: impl Iterator<Item = IpAddr>,
        skip: &BTreeSet<IpAddr>,
    ) -> Result<bool, RegistryError> {
        let mut kv = self.client.kv_client();
        for ip in candidates.filter(|ip| !skip.contains(ip)).take(4096) {
            let claim = self.layout.vip_claim(ip);
            let record = codec::AddrRecord {
                v: codec::VERSION,
                ip,
                allocated: Timestamp::now().0,
            };
            let txn = Txn::new()
                .when(vec![
                    Compare::create_revision(record_key, CompareOp::Equal, 0),
                    Compare::create_revision(claim.clone(), CompareOp::Equal, 0),
                ])
                .and_then(vec![
                    TxnOp::put(record_key, codec::encode(&record), None),
                    TxnOp::put(claim, owner, None),
                ])
                .or_else(vec![TxnOp::get(record_key, None)]);
            let resp = kv.txn(txn).await.map_err(unavailable)?;
            if resp.succeeded() {
                tracing::info!(owner = %owner, vip = %ip, "VIP allocated");
                return Ok(true);
            }
            let exists = resp.op_responses().into_iter().any(|op| match op {
                etcd_client::TxnOpResponse::Get(g) => !g.kvs().is_empty(),
                _ => false,
            });
            if exists {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Deletes a host VIP record and its claim, only while the claim is still this host's.
    /// `unchanged_since`: also only while no cluster's ServiceEntries changed after that
    /// revision (a release must not race an entry that needs the VIP again).
    async fn unclaim_host_vip(
        &self,
        family: u8,
        host: &str,
        ip: IpAddr,
        unchanged_since: Option<i64>,
    ) -> Result<bool, RegistryError> {
        let claim = self.layout.vip_claim(ip);
        let owner = format!("host:{host}");
        let mut when = vec![Compare::value(claim.clone(), CompareOp::Equal, owner)];
        if let Some(revision) = unchanged_since {
            let root = self.layout.service_entries_root().into_bytes();
            let mut end = root.clone();
            *end.last_mut().expect("ends in /") += 1;
            when.push(Compare::mod_revision(root, CompareOp::Less, revision + 1).with_range(end));
        }
        let txn = Txn::new().when(when).and_then(vec![
            TxnOp::delete(self.layout.host_vip(family, host), None),
            TxnOp::delete(claim, None),
        ]);
        let resp = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(unavailable)?;
        Ok(resp.succeeded())
    }

    /// Gives every ServiceEntry host that needs one a VIP per family (IST-14), off the
    /// addresses spec and status own; a VIP that an entry's own address now claims is moved.
    /// `snapshot` is the fleet as it will be once the caller's publish is read back.
    async fn sweep_hosts(&self, snapshot: &FleetSnapshot) -> Result<(), RegistryError> {
        let Some((range, _)) = self.vips else {
            return Ok(());
        };
        let plan = fleetdns_core::mesh::plan(snapshot);
        for host in &plan.needs_vip {
            let cur = snapshot.host_vips.get(host).copied().unwrap_or_default();
            let owner = format!("host:{host}");
            let families: [(u8, Option<IpAddr>, bool); 2] = [
                (4, cur.v4.map(IpAddr::V4), true),
                (6, cur.v6.map(IpAddr::V6), self.vips_v6.is_some()),
            ];
            for (family, ip, wanted) in families {
                if !wanted {
                    continue;
                }
                if let Some(ip) = ip {
                    if !plan.reserved.contains(&ip) {
                        continue;
                    }
                    tracing::info!(host = %host, vip = %ip, "ServiceEntry host VIP is an address an entry owns; moving it");
                    self.unclaim_host_vip(family, host, ip, None).await?;
                }
                let key = self.layout.host_vip(family, host);
                let ok = if family == 4 {
                    let c = range.candidates_for(host).map(IpAddr::V4);
                    self.claim_vip(&key, &owner, c, &plan.reserved).await?
                } else {
                    let c = self
                        .vips_v6
                        .expect("checked above")
                        .candidates_for(host)
                        .map(IpAddr::V6);
                    self.claim_vip(&key, &owner, c, &plan.reserved).await?
                };
                if !ok {
                    tracing::warn!(host = %host, family, "no free VIP found for a ServiceEntry host");
                }
            }
        }
        Ok(())
    }

    /// Deletes host VIPs no entry has needed for longer than the grace period.
    async fn release_host_vips(&self, state: &ReaderState) {
        let Some((_, grace)) = self.vips else { return };
        let snapshot = self.tx.borrow().clone();
        let Some(snapshot) = snapshot else { return };
        let needed = fleetdns_core::mesh::plan(&snapshot).needs_vip;
        let now = tokio::time::Instant::now();
        let mut due = Vec::new();
        {
            let mut orphans = self.host_orphans.lock().unwrap_or_else(|e| e.into_inner());
            orphans.retain(|h, _| !needed.contains(h));
            for ((family, host), (ip, _)) in &state.host_vips {
                if needed.contains(host) {
                    continue;
                }
                let since = *orphans.entry(host.clone()).or_insert(now);
                if now.duration_since(since) > grace {
                    due.push((*family, host.clone(), *ip));
                }
            }
        }
        for (family, host, ip) in due {
            match self
                .unclaim_host_vip(family, &host, ip, Some(state.revision))
                .await
            {
                Ok(true) => {
                    tracing::info!(host = %host, vip = %ip, "ServiceEntry host VIP released: not needed for longer than the grace period")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(host = %host, error = %e, "host VIP release failed; retried")
                }
            }
        }
    }

    /// Writes the requested ServiceEntry set on the writer's lease.
    async fn put_entries(&self, cluster: &ClusterId, w: &mut Writer) -> Result<(), RegistryError> {
        let Some(set) = &w.requested_entries else {
            return Ok(());
        };
        let value = codec::encode(&codec::ServiceEntriesRecord::from_set(set));
        let lease = self.grant(w).await?;
        if value.len() > MAX_TXN_BYTES {
            return Err(RegistryError::Unavailable(format!(
                "the ServiceEntries of cluster {cluster} encode to {} bytes, more than one etcd request holds",
                value.len()
            )));
        }
        self.client
            .kv_client()
            .put(
                self.layout.service_entries(cluster),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(unavailable)?;
        w.entries_lease = Some(lease);
        Ok(())
    }

    /// Deletes VIPs whose service has had no export for longer than the grace period, only if
    /// nobody changed them meanwhile.
    async fn release_vips(&self, state: &ReaderState) {
        let Some((_, grace)) = self.vips else { return };
        let exported: BTreeSet<&ServiceKey> =
            state.exports.values().flat_map(|s| s.keys()).collect();
        let now = tokio::time::Instant::now();
        let mut due = Vec::new();
        let mut due6 = Vec::new();
        {
            let mut orphans = self.vip_orphans.lock().unwrap_or_else(|e| e.into_inner());
            orphans.retain(|k, _| {
                (state.vips.contains_key(k) || state.vips6.contains_key(k)) && !exported.contains(k)
            });
            for (key, (ip, mod_rev)) in &state.vips {
                if exported.contains(key) {
                    continue;
                }
                let since = *orphans.entry(key.clone()).or_insert(now);
                if now.duration_since(since) > grace {
                    due.push((key.clone(), *ip, *mod_rev));
                }
            }
            // An IPv6 VIP whose IPv4 one is gone already (or was never allocated).
            for (key, ip6) in &state.vips6 {
                if exported.contains(key) || state.vips.contains_key(key) {
                    continue;
                }
                let since = *orphans.entry(key.clone()).or_insert(now);
                if now.duration_since(since) > grace {
                    due6.push((key.clone(), *ip6));
                }
            }
        }
        let mut kv6 = self.client.kv_client();
        for (key, ip6) in due6 {
            let txn = Txn::new().and_then(vec![
                TxnOp::delete(self.layout.vip6(&key), None),
                TxnOp::delete(self.layout.vip_claim(ip6), None),
            ]);
            if let Err(e) = kv6.txn(txn).await {
                tracing::debug!(service = %key, error = %e, "IPv6 VIP release failed; retried");
            }
        }
        let mut kv = self.client.kv_client();
        // Nothing under exports/ may have changed since this reader's revision: a service
        // exported again a moment ago keeps its VIP.
        let exports = self.layout.exports_root().into_bytes();
        let mut exports_end = exports.clone();
        *exports_end.last_mut().expect("ends in /") += 1;
        for (key, ip, mod_rev) in due {
            let record_key = self.layout.vip(&key);
            let txn = Txn::new()
                .when(vec![
                    Compare::mod_revision(record_key.clone(), CompareOp::Equal, mod_rev),
                    Compare::mod_revision(exports.clone(), CompareOp::Less, state.revision + 1)
                        .with_range(exports_end.clone()),
                ])
                .and_then(
                    [
                        TxnOp::delete(record_key, None),
                        TxnOp::delete(self.layout.vip_claim(ip), None),
                    ]
                    .into_iter()
                    .chain(state.vips6.get(&key).into_iter().flat_map(|ip6| {
                        [
                            TxnOp::delete(self.layout.vip6(&key), None),
                            TxnOp::delete(self.layout.vip_claim(*ip6), None),
                        ]
                    }))
                    .collect::<Vec<_>>(),
                );
            match kv.txn(txn).await {
                Ok(r) if r.succeeded() => {
                    tracing::info!(service = %key, vip = %ip, "VIP released: no export for longer than the grace period");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(service = %key, error = %e, "VIP release failed; retried")
                }
            }
        }
    }

    /// This cluster's writer state, created on first use.
    fn writer(&self, cluster: &ClusterId) -> Arc<tokio::sync::Mutex<Writer>> {
        self.writers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(cluster.clone())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Writer {
                    lease: None,
                    keeper: None,
                    generation: 0,
                    published: None,
                    requested: None,
                    kept: None,
                    requested_entries: None,
                    entries_lease: None,
                }))
            })
            .clone()
    }

    /// Publishes; a lease etcd no longer knows (it expired while this process could not
    /// reach etcd, or a publish outlasted it) is replaced and the set written again.
    async fn publish_locked(
        &self,
        cluster: &ClusterId,
        w: &mut Writer,
        exports: ExportSet,
    ) -> Result<(), RegistryError> {
        w.requested = Some(exports.clone());
        match self.publish_inner(cluster, w, &exports).await {
            Err(e) if lease_lost(&e) => {
                tracing::warn!(cluster = %cluster, "etcd lease lost; publishing the cluster again on a new lease");
                forget_lease(w);
                self.publish_inner(cluster, w, &exports).await?;
            }
            r => r?,
        }
        // A new lease took the ServiceEntries' key away: write them on this one.
        if w.requested_entries.is_some() && w.entries_lease != w.lease {
            self.put_entries(cluster, w).await?;
        }
        Ok(())
    }

    async fn publish_inner(
        &self,
        cluster: &ClusterId,
        w: &mut Writer,
        exports: &ExportSet,
    ) -> Result<(), RegistryError> {
        let lease = self.grant(w).await?;
        let Some(old) = &w.published else {
            return self.publish_generation(cluster, w, exports, lease).await;
        };
        let (mut ops, bytes) = self.diff(cluster, w.generation, old, exports, lease);
        if ops.is_empty() {
            return Ok(());
        }
        if ops.len() + 1 > MAX_TXN_OPS || bytes > MAX_TXN_BYTES {
            return self.publish_generation(cluster, w, exports, lease).await;
        }
        let record = ClusterRecord {
            v: codec::VERSION,
            generation: w.generation,
            published: Timestamp::now().0,
            exports: exports.len(),
        };
        ops.push(TxnOp::put(
            self.layout.cluster(cluster),
            codec::encode(&record),
            Some(PutOptions::new().with_lease(lease)),
        ));
        // Only while the cluster key still names our generation on our lease; else (another
        // writer, or the lease expired and took the keys) write a whole new generation.
        let generation_key = self.layout.cluster(cluster);
        let resp = self
            .client
            .kv_client()
            .get(generation_key.clone(), None)
            .await
            .map_err(unavailable)?;
        let current = resp.kvs().first();
        let ours = current
            .and_then(|kv| codec::decode_cluster(kv.value()).ok())
            .is_some_and(|r| r.generation == w.generation)
            && current.is_some_and(|kv| kv.lease() == lease);
        if !ours {
            return self.publish_generation(cluster, w, exports, lease).await;
        }
        let mod_rev = current.map_or(0, |kv| kv.mod_revision());
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                generation_key,
                CompareOp::Equal,
                mod_rev,
            )])
            .and_then(ops);
        let done = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(unavailable)?;
        if !done.succeeded() {
            return self.publish_generation(cluster, w, exports, lease).await;
        }
        w.published = Some(exports.clone());
        Ok(())
    }

    /// One keep-alive, bounded by the request timeout. `Ok(false)`: etcd no longer knows
    /// the lease.
    async fn keep_alive(&self, w: &mut Writer, lease: i64) -> Result<bool, RegistryError> {
        let timeout = self.request_timeout;
        if w.keeper.is_none() {
            let started =
                tokio::time::timeout(timeout, self.client.lease_client().keep_alive(lease))
                    .await
                    .map_err(|_| unavailable("lease keep-alive timed out"))?;
            match started {
                Ok(k) => w.keeper = Some(k),
                Err(e) if e.to_string().contains("lease not found") => return Ok(false),
                Err(e) => return Err(unavailable(e)),
            }
        }
        let (keeper, stream) = w.keeper.as_mut().expect("set above");
        let answer = tokio::time::timeout(timeout, async {
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        match answer {
            Ok(Ok(Some(resp))) => Ok(resp.ttl() > 0),
            Ok(Ok(None)) => {
                w.keeper = None;
                Err(unavailable("lease keep-alive stream ended"))
            }
            Ok(Err(e)) => {
                w.keeper = None;
                if e.to_string().contains("lease not found") {
                    Ok(false)
                } else {
                    Err(unavailable(e))
                }
            }
            Err(_) => {
                w.keeper = None;
                Err(unavailable("lease keep-alive timed out"))
            }
        }
    }

    /// Whether the cluster key in etcd is still on this writer's lease and generation (a
    /// second writer's key may have replaced it, then expired with that writer's lease).
    async fn still_ours(
        &self,
        cluster: &ClusterId,
        w: &Writer,
        lease: i64,
    ) -> Result<bool, RegistryError> {
        let resp = self
            .client
            .kv_client()
            .get(self.layout.cluster(cluster), None)
            .await
            .map_err(unavailable)?;
        Ok(resp.kvs().first().is_some_and(|kv| {
            kv.lease() == lease
                && codec::decode_cluster(kv.value()).is_ok_and(|r| r.generation == w.generation)
        }))
    }
}

/// An error that means etcd no longer knows the lease the write used.
fn lease_lost(e: &RegistryError) -> bool {
    matches!(e, RegistryError::Unavailable(m) if m.contains("lease not found"))
}

fn forget_lease(w: &mut Writer) {
    w.lease = None;
    w.entries_lease = None;
    w.keeper = None;
    w.published = None;
    w.kept = None;
}

impl Registry for EtcdRegistry {
    fn publish<'a>(
        &'a self,
        cluster: &'a ClusterId,
        exports: ExportSet,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let keys: Vec<ServiceKey> = exports.keys().cloned().collect();
            let writer = self.writer(cluster);
            let mut w = writer.lock().await;
            let r = self.publish_locked(cluster, &mut w, exports).await;
            drop(w);
            let r = match r {
                Ok(()) => self.allocate_vips(keys.iter()).await,
                e => e,
            };
            match &r {
                Ok(()) => self.status.publishes.fetch_add(1, Ordering::Relaxed),
                Err(_) => self.status.publish_errors.fetch_add(1, Ordering::Relaxed),
            };
            r
        })
    }

    /// Writes the set on the cluster's lease (with its exports, it goes with the lease), then
    /// allocates the VIPs its hosts need.
    fn publish_service_entries<'a>(
        &'a self,
        cluster: &'a ClusterId,
        entries: ServiceEntrySet,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let writer = self.writer(cluster);
            let mut w = writer.lock().await;
            w.requested_entries = Some(entries.clone());
            let r = match self.put_entries(cluster, &mut w).await {
                Err(e) if lease_lost(&e) => {
                    forget_lease(&mut w);
                    let set = w.requested.clone().unwrap_or_default();
                    self.publish_locked(cluster, &mut w, set).await
                }
                r => r,
            };
            drop(w);
            r?;
            // The fleet as it will be read back, with this cluster's new set.
            let mut snapshot = self
                .tx
                .borrow()
                .as_ref()
                .map(|s| (**s).clone())
                .unwrap_or_default();
            let view = snapshot
                .clusters
                .entry(cluster.clone())
                .or_insert_with(|| ClusterView {
                    alive: true,
                    exports: Arc::default(),
                    published: Timestamp::now(),
                    service_entries: Arc::default(),
                });
            view.service_entries = Arc::new(entries);
            self.sweep_hosts(&snapshot).await
        })
    }

    /// Keeps the cluster's lease alive (at most every third of its TTL, however often it is
    /// called) and checks the cluster key is still this writer's. A lease that expired
    /// meanwhile took the keys with it, and a key another writer replaced may have gone with
    /// that writer's lease: either way the last requested set is published again.
    fn heartbeat<'a>(&'a self, cluster: &'a ClusterId) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let writer = self.writer(cluster);
            let mut w = writer.lock().await;
            let Some(lease) = w.lease else {
                return match w.requested.clone() {
                    Some(set) => self.publish_locked(cluster, &mut w, set).await,
                    None => Ok(()),
                };
            };
            let third = Duration::from_secs(self.lease_ttl as u64) / 3;
            if w.kept.is_some_and(|at| at.elapsed() < third) {
                return Ok(());
            }
            let alive = self.keep_alive(&mut w, lease).await?;
            if alive && self.still_ours(cluster, &w, lease).await? {
                w.kept = Some(tokio::time::Instant::now());
                return Ok(());
            }
            if alive {
                tracing::warn!(cluster = %cluster, "the cluster's key in etcd is not this writer's any more; publishing again");
                w.published = None; // a whole new generation
            } else {
                tracing::warn!(cluster = %cluster, "etcd lease expired; publishing the cluster again on a new lease");
                forget_lease(&mut w);
            }
            let set = w.requested.clone().unwrap_or_default();
            self.publish_locked(cluster, &mut w, set).await?;
            w.kept = Some(tokio::time::Instant::now());
            Ok(())
        })
    }

    /// Revokes the cluster's lease: its keys go at once.
    fn withdraw<'a>(&'a self, cluster: &'a ClusterId) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let writer = self
                .writers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(cluster);
            if let Some(writer) = writer {
                let w = writer.lock().await;
                if let Some(lease) = w.lease {
                    self.client
                        .lease_client()
                        .revoke(lease)
                        .await
                        .map_err(unavailable)?;
                }
            }
            Ok(())
        })
    }

    fn subscribe(&self) -> SnapshotReceiver {
        self.tx.subscribe()
    }
}

/// What a reader has seen, key by key.
#[derive(Default)]
struct ReaderState {
    clusters: BTreeMap<ClusterId, ClusterRecord>,
    /// (cluster, generation) → exports.
    exports: BTreeMap<(ClusterId, u64), ExportSet>,
    /// Views built for the last snapshot, rebuilt only for clusters that changed.
    views: BTreeMap<ClusterId, Arc<ExportSet>>,
    /// VIPs with the revision they were last written at (for a guarded release).
    vips: BTreeMap<ServiceKey, (Ipv4Addr, i64)>,
    vips6: BTreeMap<ServiceKey, Ipv6Addr>,
    /// ServiceEntry host VIPs by (family, host), with their mod revision.
    host_vips: BTreeMap<(u8, String), (IpAddr, i64)>,
    service_entries: BTreeMap<ClusterId, Arc<ServiceEntrySet>>,
    /// The etcd revision this state reflects.
    revision: i64,
}

impl ReaderState {
    fn put(&mut self, layout: &Layout, kv: &etcd_client::KeyValue, status: &EtcdStatus) {
        let (key, value) = (kv.key(), kv.value());
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
                    self.views.remove(&cluster);
                    self.exports
                        .entry((cluster, generation))
                        .or_default()
                        .insert(key, Arc::new(e));
                }
                Err(e) => bad("export", &e),
            },
            Parsed::Vip(service) => match codec::decode_vip(value) {
                Ok(r) => {
                    self.vips.insert(service, (r.ip, kv.mod_revision()));
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
                Ok(r) if (family == 4) == r.ip.is_ipv4() => {
                    self.host_vips
                        .insert((family, host), (r.ip, kv.mod_revision()));
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
