//! The writer: one lease per published cluster, kept alive by heartbeats; a set is published
//! as a diff inside the current generation (one transaction) or as a new generation written in
//! batches and flipped by a compare-and-swap on the cluster key; a lost lease or a key another
//! writer replaced means the last requested set is published again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions,
    Txn, TxnOp,
};
use fleetdns_core::{ClusterId, ExportSet, RegistryError, ServiceEntrySet, ServiceKey, Timestamp};

use super::{EtcdRegistry, MAX_MESSAGE};
use crate::codec::{self, ClusterRecord, ExportRecord, Layout};

/// etcd refuses transactions of more than 128 operations by default (`--max-txn-ops`).
const MAX_TXN_OPS: usize = 120;
/// etcd refuses requests over 1.5 MiB by default (`--max-request-bytes`): transactions are
/// kept under 1 MiB.
pub(super) const MAX_TXN_BYTES: usize = 1 << 20;
/// Flips of one new generation tried while other writers change the cluster key (each failed
/// flip means another writer's transaction went through).
const FLIP_TRIES: usize = 100;

/// One cluster this process publishes.
pub(super) struct Writer {
    pub(super) lease: Option<i64>,
    pub(super) keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    pub(super) generation: u64,
    /// What is in etcd under `generation`, as last written by this process.
    pub(super) published: Option<ExportSet>,
    /// What the source last asked to publish (written or not): what a lost lease re-publishes.
    pub(super) requested: Option<ExportSet>,
    /// The last keep-alive etcd confirmed: sources may heartbeat often, etcd hears a third
    /// of the TTL at most.
    pub(super) kept: Option<tokio::time::Instant>,
    /// The ServiceEntry set the source last asked to publish, and the lease it was written
    /// on (a new lease writes it again).
    pub(super) requested_entries: Option<ServiceEntrySet>,
    pub(super) entries_lease: Option<i64>,
}

/// Why a write failed. The [`Registry`](fleetdns_core::Registry) methods report it as
/// [`RegistryError::Unavailable`] with this text.
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    #[error("{0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("lease keep-alive timed out")]
    KeepAliveTimedOut,
    #[error("lease keep-alive stream ended")]
    KeepAliveEnded,
    #[error(
        "export {key} of cluster {cluster} encodes to {size} bytes, more than one etcd request holds"
    )]
    ExportTooLarge {
        key: ServiceKey,
        cluster: ClusterId,
        size: usize,
    },
    #[error(
        "the ServiceEntries of cluster {cluster} encode to {size} bytes, more than one etcd request holds"
    )]
    EntriesTooLarge { cluster: ClusterId, size: usize },
    #[error("cluster {0}: another writer keeps replacing its export set")]
    Contended(ClusterId),
}

impl WriteError {
    /// etcd no longer knows the lease the write used (it expired, or was revoked).
    pub(super) fn lease_lost(&self) -> bool {
        matches!(self, Self::Etcd(e) if lease_not_found(e))
    }

    /// etcd refused the client's auth token: authenticate again and retry.
    pub(super) fn token_rejected(&self) -> bool {
        matches!(self, Self::Etcd(e) if super::token_rejected(e))
    }
}

impl From<WriteError> for RegistryError {
    fn from(e: WriteError) -> Self {
        RegistryError::Unavailable(e.to_string())
    }
}

/// etcd's answer to a request on a lease it does not know (`ErrGRPCLeaseNotFound`:
/// "etcdserver: requested lease not found"), directly or through the keep-alive stream.
fn lease_not_found(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().contains("lease not found"),
        etcd_client::Error::LeaseKeepAliveError(m) => m.contains("lease not found"),
        _ => false,
    }
}

pub(super) fn forget_lease(w: &mut Writer) {
    w.lease = None;
    w.entries_lease = None;
    w.keeper = None;
    w.published = None;
    w.kept = None;
}

impl EtcdRegistry {
    /// This cluster's writer state, created on first use.
    pub(super) fn writer(&self, cluster: &ClusterId) -> Arc<tokio::sync::Mutex<Writer>> {
        self.writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// Keeps the cluster's lease alive (see [`Registry::heartbeat`](fleetdns_core::Registry)).
    pub(super) async fn heartbeat_locked(
        &self,
        cluster: &ClusterId,
        w: &mut Writer,
    ) -> Result<(), WriteError> {
        let Some(lease) = w.lease else {
            return match w.requested.clone() {
                Some(set) => self.publish_locked(cluster, w, set).await,
                None => Ok(()),
            };
        };
        let third = Duration::from_secs(self.lease_ttl as u64) / 3;
        if w.kept.is_some_and(|at| at.elapsed() < third) {
            return Ok(());
        }
        let alive = self.keep_alive(w, lease).await?;
        if alive && self.still_ours(cluster, w, lease).await? {
            w.kept = Some(tokio::time::Instant::now());
            return Ok(());
        }
        if alive {
            tracing::warn!(cluster = %cluster, "the cluster's key in etcd is not this writer's any more; publishing again");
            w.published = None; // a whole new generation
        } else {
            tracing::warn!(cluster = %cluster, "etcd lease expired; publishing the cluster again on a new lease");
            forget_lease(w);
        }
        let set = w.requested.clone().unwrap_or_default();
        self.publish_locked(cluster, w, set).await?;
        w.kept = Some(tokio::time::Instant::now());
        Ok(())
    }

    /// Writes the requested ServiceEntry set; a lease etcd no longer knows is replaced and
    /// the cluster published again on the new one (which writes the set too).
    pub(super) async fn put_entries_locked(
        &self,
        cluster: &ClusterId,
        w: &mut Writer,
    ) -> Result<(), WriteError> {
        match self.put_entries(cluster, w).await {
            Err(e) if e.lease_lost() => {
                forget_lease(w);
                let set = w.requested.clone().unwrap_or_default();
                self.publish_locked(cluster, w, set).await
            }
            r => r,
        }
    }

    /// Publishes; a lease etcd no longer knows (it expired while this process could not
    /// reach etcd, or a publish outlasted it) is replaced and the set written again.
    pub(super) async fn publish_locked(
        &self,
        cluster: &ClusterId,
        w: &mut Writer,
        exports: ExportSet,
    ) -> Result<(), WriteError> {
        w.requested = Some(exports.clone());
        match self.publish_inner(cluster, w, &exports).await {
            Err(e) if e.lease_lost() => {
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
    ) -> Result<(), WriteError> {
        let lease = self.grant(w).await?;
        let Some(old) = &w.published else {
            return self.publish_generation(cluster, w, exports, lease).await;
        };
        let changes = diff(&self.layout, cluster, w.generation, old, exports);
        if changes.is_empty() {
            return Ok(());
        }
        let bytes: usize = changes.iter().map(Change::size).sum();
        if changes.len() + 1 > MAX_TXN_OPS || bytes > MAX_TXN_BYTES {
            return self.publish_generation(cluster, w, exports, lease).await;
        }
        let put = PutOptions::new().with_lease(lease);
        let mut ops: Vec<TxnOp> = changes.into_iter().map(|c| c.into_op(&put)).collect();
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
            .await?;
        let current = resp.kvs().first();
        let ours = current
            .and_then(|kv| codec::decode_cluster(kv.value()).ok())
            .is_some_and(|r| r.generation == w.generation)
            && current.is_some_and(|kv| kv.lease() == lease);
        if !ours {
            return self.publish_generation(cluster, w, exports, lease).await;
        }
        let mod_rev = current.map_or(0, etcd_client::KeyValue::mod_revision);
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                generation_key,
                CompareOp::Equal,
                mod_rev,
            )])
            .and_then(ops);
        let done = self.client.kv_client().txn(txn).await?;
        if !done.succeeded() {
            return self.publish_generation(cluster, w, exports, lease).await;
        }
        w.published = Some(exports.clone());
        Ok(())
    }

    async fn grant(&self, w: &mut Writer) -> Result<i64, WriteError> {
        if let Some(id) = w.lease {
            return Ok(id);
        }
        let resp = self
            .client
            .lease_client()
            .grant(self.lease_ttl, None)
            .await?;
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
    ) -> Result<(), WriteError> {
        // A second writer of the same cluster (an agent and its replacement overlapping in a
        // rolling restart) may flip the cluster key while this one writes its generation, and
        // then delete it as older: so the flip is a compare-and-swap on the key as read, made
        // only over an older generation, and a race lost to a newer one starts over with a new
        // generation.
        self.status.generations.fetch_add(1, Ordering::Relaxed);
        for _ in 0..5 {
            if let Some(generation) = self.try_generation(cluster, w, exports, lease).await? {
                return self.drop_older(cluster, generation).await;
            }
        }
        Err(WriteError::Contended(cluster.clone()))
    }

    /// Writes a new generation and flips the cluster key to it unless someone else flipped it
    /// to a generation as new meanwhile (then its keys are deleted again and `None` returned).
    async fn try_generation(
        &self,
        cluster: &ClusterId,
        w: &mut Writer,
        exports: &ExportSet,
        lease: i64,
    ) -> Result<Option<u64>, WriteError> {
        let mut kv = self.client.kv_client();
        let cluster_key = self.layout.cluster(cluster);
        let current = kv.get(cluster_key.clone(), None).await?;
        let seen = current
            .kvs()
            .first()
            .map_or(0, etcd_client::KeyValue::mod_revision);
        let in_etcd = current
            .kvs()
            .first()
            .and_then(|kv| codec::decode_cluster(kv.value()).ok())
            .map_or(0, |r| r.generation);
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let generation = next_generation(in_etcd, w.generation, micros, lease);
        let put = PutOptions::new().with_lease(lease);
        let mut batches = Batches::default();
        for (key, e) in exports {
            let change = Change::Put {
                key: self.layout.export(cluster, generation, key),
                value: codec::encode(&ExportRecord::from_export(e)),
            };
            let size = change.size();
            if size > MAX_TXN_BYTES {
                return Err(WriteError::ExportTooLarge {
                    key: key.clone(),
                    cluster: cluster.clone(),
                    size,
                });
            }
            if let Some(full) = batches.push(change) {
                send_batch(&mut kv, full, &put).await?;
            }
        }
        if let Some(last) = batches.finish() {
            send_batch(&mut kv, last, &put).await?;
        }
        let record = ClusterRecord {
            v: codec::VERSION,
            generation,
            published: Timestamp::now().0,
            exports: exports.len(),
        };
        let value = codec::encode(&record);
        // The flip is a compare-and-swap on the cluster key as last read. Another writer's
        // small change (a diff inside its generation) rewrites the key without making this
        // generation unsafe: read it again and flip over it. A generation as new as this one
        // wins: this one is given up (its keys may be deleted as older).
        let mut seen = seen;
        let mut flipped = false;
        for _ in 0..FLIP_TRIES {
            let flip = Txn::new()
                .when(vec![Compare::mod_revision(
                    cluster_key.clone(),
                    CompareOp::Equal,
                    seen,
                )])
                .and_then(vec![TxnOp::put(
                    cluster_key.clone(),
                    value.clone(),
                    Some(put.clone()),
                )]);
            if kv.txn(flip).await?.succeeded() {
                flipped = true;
                break;
            }
            let now = kv.get(cluster_key.clone(), None).await?;
            let current = now.kvs().first();
            let named = current
                .and_then(|kv| codec::decode_cluster(kv.value()).ok())
                .map(|r| r.generation);
            if !may_flip_over(named, generation) {
                break;
            }
            seen = current.map_or(0, etcd_client::KeyValue::mod_revision);
        }
        if !flipped {
            kv.delete(
                self.layout.generation(cluster, generation),
                Some(DeleteOptions::new().with_prefix()),
            )
            .await?;
            return Ok(None);
        }
        w.generation = generation;
        w.published = Some(exports.clone());
        Ok(Some(generation))
    }

    /// Deletes the cluster's generations older than `generation` (never a newer one: another
    /// writer may be filling it).
    async fn drop_older(&self, cluster: &ClusterId, generation: u64) -> Result<(), WriteError> {
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
            .await?;
        let stale = older_generations(
            &base,
            old.kvs().iter().map(etcd_client::KeyValue::key),
            generation,
        );
        for g in stale {
            kv.delete(
                format!("{base}{g}/"),
                Some(DeleteOptions::new().with_prefix()),
            )
            .await?;
        }
        Ok(())
    }

    /// Writes the requested ServiceEntry set on the writer's lease.
    pub(super) async fn put_entries(
        &self,
        cluster: &ClusterId,
        w: &mut Writer,
    ) -> Result<(), WriteError> {
        let Some(set) = &w.requested_entries else {
            return Ok(());
        };
        let value = codec::encode(&codec::ServiceEntriesRecord::from_set(set));
        let lease = self.grant(w).await?;
        if value.len() > MAX_TXN_BYTES {
            return Err(WriteError::EntriesTooLarge {
                cluster: cluster.clone(),
                size: value.len(),
            });
        }
        self.client
            .kv_client()
            .put(
                self.layout.service_entries(cluster),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        w.entries_lease = Some(lease);
        Ok(())
    }

    /// Keeps the lease alive after a publish, as a heartbeat does (at most every third of the
    /// TTL). A publish marks the cluster alive (`Registry::publish`), but a put on a lease does
    /// not renew it: a source whose cluster changes on every poll never heartbeats, and its
    /// lease expired every TTL, taking the cluster out of every answer until the next publish
    /// noticed (found by bench/soak.sh).
    pub(super) async fn renew_lease(&self, w: &mut Writer) -> Result<(), WriteError> {
        let Some(lease) = w.lease else {
            return Ok(());
        };
        let third = Duration::from_secs(self.lease_ttl as u64) / 3;
        if w.kept.is_some_and(|at| at.elapsed() < third) {
            return Ok(());
        }
        if self.keep_alive(w, lease).await? {
            w.kept = Some(tokio::time::Instant::now());
        }
        Ok(())
    }

    /// One keep-alive, bounded by the request timeout. `Ok(false)`: etcd no longer knows
    /// the lease.
    pub(super) async fn keep_alive(&self, w: &mut Writer, lease: i64) -> Result<bool, WriteError> {
        let timeout = self.request_timeout;
        if w.keeper.is_none() {
            let started =
                tokio::time::timeout(timeout, self.client.lease_client().keep_alive(lease))
                    .await
                    .map_err(|_| WriteError::KeepAliveTimedOut)?;
            match started {
                Ok(k) => w.keeper = Some(k),
                Err(e) if lease_not_found(&e) => return Ok(false),
                Err(e) => return Err(e.into()),
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
                Err(WriteError::KeepAliveEnded)
            }
            Ok(Err(e)) => {
                w.keeper = None;
                if lease_not_found(&e) {
                    Ok(false)
                } else {
                    Err(e.into())
                }
            }
            Err(_) => {
                w.keeper = None;
                Err(WriteError::KeepAliveTimedOut)
            }
        }
    }

    /// Whether the cluster key in etcd is still on this writer's lease and generation (a
    /// second writer's key may have replaced it, then expired with that writer's lease).
    pub(super) async fn still_ours(
        &self,
        cluster: &ClusterId,
        w: &Writer,
        lease: i64,
    ) -> Result<bool, WriteError> {
        let resp = self
            .client
            .kv_client()
            .get(self.layout.cluster(cluster), None)
            .await?;
        Ok(resp.kvs().first().is_some_and(|kv| {
            kv.lease() == lease
                && codec::decode_cluster(kv.value()).is_ok_and(|r| r.generation == w.generation)
        }))
    }
}

/// One key write of a publish, before it becomes a transaction operation.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl Change {
    /// What it adds to a request: key, value and a margin for the framing.
    fn size(&self) -> usize {
        match self {
            Self::Put { key, value } => key.len() + value.len() + 16,
            Self::Delete { key } => key.len() + 16,
        }
    }

    /// Puts go on the writer's lease (`put` carries it).
    fn into_op(self, put: &PutOptions) -> TxnOp {
        match self {
            Self::Put { key, value } => TxnOp::put(key, value, Some(put.clone())),
            Self::Delete { key } => TxnOp::delete(key, None),
        }
    }
}

/// The writes that turn `old` into `new` inside generation `generation`: puts of what is new
/// or changed, then deletes of what is gone.
fn diff(
    layout: &Layout,
    cluster: &ClusterId,
    generation: u64,
    old: &ExportSet,
    new: &ExportSet,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for (key, e) in new {
        if old.get(key).is_none_or(|o| o != e) {
            changes.push(Change::Put {
                key: layout.export(cluster, generation, key),
                value: codec::encode(&ExportRecord::from_export(e)),
            });
        }
    }
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        changes.push(Change::Delete {
            key: layout.export(cluster, generation, key),
        });
    }
    changes
}

/// Writes of a new generation grouped into requests under etcd's limits on operations
/// ([`MAX_TXN_OPS`]) and bytes ([`MAX_TXN_BYTES`]) per request.
#[derive(Default)]
struct Batches {
    current: Vec<Change>,
    bytes: usize,
}

impl Batches {
    /// Adds `change`; returns the batch to send first when it would not fit in this one.
    fn push(&mut self, change: Change) -> Option<Vec<Change>> {
        let size = change.size();
        let full = (!self.current.is_empty()
            && (self.current.len() == MAX_TXN_OPS || self.bytes + size > MAX_TXN_BYTES))
            .then(|| {
                self.bytes = 0;
                std::mem::take(&mut self.current)
            });
        self.bytes += size;
        self.current.push(change);
        full
    }

    /// The last batch, if anything is left.
    fn finish(self) -> Option<Vec<Change>> {
        (!self.current.is_empty()).then_some(self.current)
    }
}

async fn send_batch(
    kv: &mut etcd_client::KvClient,
    batch: Vec<Change>,
    put: &PutOptions,
) -> Result<(), WriteError> {
    let ops: Vec<TxnOp> = batch.into_iter().map(|c| c.into_op(put)).collect();
    kv.txn(Txn::new().and_then(ops)).await?;
    Ok(())
}

/// The generation a writer fills next: past the one in etcd and its own last, and unique per
/// writer (time in microseconds, then the low bits of its lease), so two writers of one
/// cluster never fill the same generation.
fn next_generation(in_etcd: u64, last: u64, micros: u64, lease: i64) -> u64 {
    (in_etcd.max(last) + 1).max(micros << 10 | (lease as u64 & 0x3ff))
}

/// Whether a new generation may replace the cluster key that names `named` (`None`: no key,
/// or one this release cannot read): only an older one, whose writer never deletes a newer
/// generation.
fn may_flip_over(named: Option<u64>, generation: u64) -> bool {
    named.is_none_or(|g| g < generation)
}

/// The generations under `base` (a cluster's exports, ending in `/`) older than `generation`,
/// each once, in order; never a newer one: another writer may be filling it.
fn older_generations<'a>(
    base: &str,
    keys: impl Iterator<Item = &'a [u8]>,
    generation: u64,
) -> Vec<u64> {
    let mut stale: Vec<u64> = keys
        .filter_map(|k| std::str::from_utf8(k).ok())
        .filter_map(|k| k.strip_prefix(base)?.split('/').next()?.parse().ok())
        .filter(|g| *g < generation)
        .collect();
    stale.sort_unstable();
    stale.dedup();
    stale
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fleetdns_core::model::{Export, Port, Protocol, ServiceType};
    use fleetdns_core::{ServiceKey, Timestamp};

    use super::*;

    fn export(name: &str, port: u16) -> (ServiceKey, Arc<Export>) {
        let key = ServiceKey::new("default", name).unwrap();
        let e = Export {
            key: key.clone(),
            cluster: ClusterId::new("east").unwrap(),
            service_type: ServiceType::ClusterSetIp,
            ports: vec![Port {
                name: Some("http".into()),
                protocol: Protocol::Tcp,
                port,
                app_protocol: None,
            }]
            .into(),
            cluster_ips: vec!["10.0.0.1".parse().unwrap()].into(),
            endpoints: vec![].into(),
            created: Timestamp(1_700_000_000),
        };
        (key, Arc::new(e))
    }

    #[test]
    fn a_diff_puts_what_changed_and_deletes_what_went() {
        let layout = Layout::new("/fleetdns/v1");
        let east = ClusterId::new("east").unwrap();
        let old: ExportSet = [export("a", 80), export("b", 80), export("c", 80)].into();
        let new: ExportSet = [export("a", 80), export("b", 81), export("d", 80)].into();
        let changes = diff(&layout, &east, 7, &old, &new);
        let keys: Vec<(&str, bool)> = changes
            .iter()
            .map(|c| match c {
                Change::Put { key, .. } => (key.as_str(), true),
                Change::Delete { key } => (key.as_str(), false),
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("/fleetdns/v1/exports/east/7/default/b", true),
                ("/fleetdns/v1/exports/east/7/default/d", true),
                ("/fleetdns/v1/exports/east/7/default/c", false),
            ]
        );
        let Change::Put { value, .. } = &changes[0] else {
            unreachable!()
        };
        let back =
            codec::decode_export(value, new.keys().nth(1).unwrap().clone(), east.clone()).unwrap();
        assert_eq!(back.ports[0].port, 81);
        assert!(diff(&layout, &east, 7, &new, &new).is_empty());
    }

    #[test]
    fn batches_stay_under_the_operation_and_byte_limits() {
        let small = |i: usize| Change::Delete {
            key: format!("k{i}"),
        };
        let mut b = Batches::default();
        let mut sent: Vec<usize> = (0..250)
            .filter_map(|i| b.push(small(i)))
            .map(|v| v.len())
            .collect();
        sent.extend(b.finish().map(|v| v.len()));
        assert_eq!(sent, [MAX_TXN_OPS, MAX_TXN_OPS, 250 - 2 * MAX_TXN_OPS]);

        let big = || Change::Put {
            key: "k".into(),
            value: vec![b'x'; MAX_TXN_BYTES / 2 - 100],
        };
        let mut b = Batches::default();
        let mut sent: Vec<usize> = (0..5)
            .filter_map(|_| b.push(big()))
            .map(|v| v.len())
            .collect();
        sent.extend(b.finish().map(|v| v.len()));
        assert_eq!(sent, [2, 2, 1]);
        assert!(Batches::default().finish().is_none());
    }

    #[test]
    fn generations_grow_and_differ_between_writers() {
        // Past what etcd has and what this writer wrote, even with a clock behind both.
        assert_eq!(
            next_generation(u64::from(u32::MAX) << 20, 5, 1, 7),
            (u64::from(u32::MAX) << 20) + 1
        );
        assert_eq!(next_generation(3, 9, 0, 7), 10);
        // Two writers in the same microsecond differ by their leases' low bits.
        let micros = 1_700_000_000_000_000;
        let a = next_generation(0, 0, micros, 0x1001);
        let b = next_generation(0, 0, micros, 0x1002);
        assert_ne!(a, b);
        assert!(next_generation(0, 0, micros + 1, 0x1001) > b);
    }

    #[test]
    fn a_generation_replaces_only_an_older_one() {
        assert!(may_flip_over(None, 5));
        assert!(may_flip_over(Some(4), 5));
        assert!(!may_flip_over(Some(5), 5));
        assert!(!may_flip_over(Some(6), 5));
    }

    #[test]
    fn only_older_generations_are_dropped() {
        let base = "/fleetdns/v1/exports/east/";
        let keys = [
            "/fleetdns/v1/exports/east/3/default/a",
            "/fleetdns/v1/exports/east/3/default/b",
            "/fleetdns/v1/exports/east/1/default/a",
            "/fleetdns/v1/exports/east/5/default/a",
            "/fleetdns/v1/exports/east/9/default/a",
            "/fleetdns/v1/exports/east/x/default/a",
        ];
        let old = older_generations(base, keys.iter().map(|k| k.as_bytes()), 5);
        assert_eq!(old, [1, 3]);
    }

    #[test]
    fn only_an_unknown_lease_counts_as_lost() {
        let lost = WriteError::Etcd(etcd_client::Error::LeaseKeepAliveError(
            "etcdserver: requested lease not found".into(),
        ));
        assert!(lost.lease_lost());
        assert!(!WriteError::KeepAliveTimedOut.lease_lost());
        assert!(!WriteError::Contended(ClusterId::new("east").unwrap()).lease_lost());
        let other = WriteError::Etcd(etcd_client::Error::WatchError("lease not found".into()));
        assert!(!other.lease_lost(), "only lease and status errors");
        // What the trait's callers see is the text it always was.
        let e: RegistryError = WriteError::Contended(ClusterId::new("east").unwrap()).into();
        assert_eq!(
            e.to_string(),
            RegistryError::Unavailable(
                "cluster east: another writer keeps replacing its export set".into()
            )
            .to_string()
        );
    }
}
