//! [`EtcdRegistry`]: the [`Registry`] trait on etcd, in three parts that share its client:
//! [`writer`] (agents: one lease per cluster, whole sets published in transactions, as a diff
//! or as a new generation), [`reader`] (DNS servers: a snapshot at one revision, the watch from
//! the next; a compacted revision or a lost connection means a fresh snapshot, never a missed
//! update, and meanwhile the last snapshot stays served and [`EtcdStatus::stale`] says so) and
//! [`vips`] (clusterset and ServiceEntry host VIPs: allocation by compare-and-swap, release
//! after a grace period).

mod reader;
mod vips;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use fleetdns_core::registry::{BoxFuture, SnapshotReceiver};
use fleetdns_core::{
    ClusterId, ClusterView, ExportSet, FleetSnapshot, Registry, RegistryError, ServiceEntrySet,
    ServiceKey, Timestamp, VipRange, VipRangeV6,
};
use tokio::sync::watch;

use crate::EtcdError;
use crate::codec::Layout;

pub use reader::ReaderError;
use writer::Writer;

/// gRPC messages fleetdns accepts from etcd (tonic's default is 4 MiB): a watch response
/// carries every event of one revision, and deleting a large generation is one revision.
const MAX_MESSAGE: usize = 256 << 20;

/// HTTP/2 pings on an idle connection, to notice an etcd that stopped answering (frozen, or
/// cut off by the network). Not more often than every 10 s (grpc-go's own floor): etcd closes
/// a connection pinged more often than its `--grpc-keepalive-min-time` (5 s by default) with
/// GOAWAY "too_many_pings", which cut every idle watch after a few pings.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection is given up.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Whole generations written: a cluster's first publish, one on a new lease (after etcd
    /// lost the old one), one too large for a transaction of changes.
    pub generations: AtomicU64,
    pub publish_errors: AtomicU64,
    /// Times the client authenticated again because etcd no longer took its token (it
    /// expired, or etcd restarted and forgot it).
    pub auth_renewals: AtomicU64,
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
    /// User and password, kept to authenticate again when etcd stops taking the token.
    credentials: Option<(String, String)>,
    /// When the token was last renewed: requests failing together renew it once.
    renewed: tokio::sync::Mutex<Option<tokio::time::Instant>>,
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

/// etcd's answers to a request whose auth token it does not take: `ErrInvalidAuthToken` (a
/// simple token past its `--auth-token-ttl`, or one an etcd restart forgot),
/// `ErrAuthOldRevision` (the auth store changed since the token was issued) and
/// `ErrUserEmpty` (no token at all, as while the token is being replaced).
fn says_token_rejected(message: &str) -> bool {
    message.contains("invalid auth token")
        || message.contains("revision of auth store is old")
        || message.contains("user name is empty")
}

/// Whether etcd refused a request for its auth token (see [`says_token_rejected`]).
pub(super) fn token_rejected(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => says_token_rejected(s.message()),
        etcd_client::Error::LeaseKeepAliveError(m) | etcd_client::Error::WatchError(m) => {
            says_token_rejected(m)
        }
        _ => false,
    }
}

/// The same for an error already turned into a [`RegistryError`].
fn registry_token_rejected(e: &RegistryError) -> bool {
    match e {
        RegistryError::Unavailable(m) => says_token_rejected(m),
        _ => false,
    }
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
        // Require a leader (gRPC metadata `hasleader=true`): a member cut off from its quorum
        // refuses requests at once and cancels its watches ("no leader") instead of leaving
        // the reader's watch silent while the rest of the cluster moves on.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.dial_timeout)
            .with_timeout(config.request_timeout)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
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
            credentials: config.user.clone(),
            renewed: tokio::sync::Mutex::new(None),
        })
    }

    /// Authenticates again with the configured user after etcd refused the token; whether
    /// the request that was refused is worth retrying. Requests refused together renew the
    /// token once: a renewal less than a second old is taken as the answer. etcd-client
    /// authenticates only when it connects, and a simple token expires after
    /// `--auth-token-ttl` without use (and with any etcd restart).
    pub(super) async fn renew_token(&self) -> bool {
        let Some((user, password)) = &self.credentials else {
            return false;
        };
        let mut renewed = self.renewed.lock().await;
        if renewed.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return true;
        }
        let mut auth = self.client.auth_client();
        // etcd checks the token a request carries even on Authenticate: the refused one must
        // not go with it.
        auth.remove_client_auth();
        let answer = tokio::time::timeout(
            self.request_timeout,
            auth.set_client_auth(user.clone(), password.clone()),
        )
        .await;
        match answer {
            Ok(Ok(())) => {
                *renewed = Some(tokio::time::Instant::now());
                self.status.auth_renewals.fetch_add(1, Ordering::Relaxed);
                tracing::info!(user = %user, "etcd auth token renewed");
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(user = %user, error = %e, "etcd authentication failed");
                false
            }
            Err(_) => {
                tracing::warn!(user = %user, "etcd authentication timed out");
                false
            }
        }
    }

    pub fn status(&self) -> Arc<EtcdStatus> {
        self.status.clone()
    }

    /// The client, for tests and tools (compaction, raw keys).
    #[doc(hidden)]
    pub fn client(&self) -> Client {
        self.client.clone()
    }
}

/// The end of the key range of everything under `prefix` (which ends in `/`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("a prefix ends in /") += 1;
    end
}

impl Registry for EtcdRegistry {
    fn publish<'a>(
        &'a self,
        cluster: &'a ClusterId,
        exports: Arc<ExportSet>,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            // The writer keeps its own copy of the requested set (to publish again).
            let exports = Arc::unwrap_or_clone(exports);
            let keys: Vec<ServiceKey> = exports.keys().cloned().collect();
            let writer = self.writer(cluster);
            let mut w = writer.lock().await;
            let mut r = self.publish_locked(cluster, &mut w, exports).await;
            if matches!(&r, Err(e) if e.token_rejected()) && self.renew_token().await {
                let set = w.requested.clone().unwrap_or_default();
                r = self.publish_locked(cluster, &mut w, set).await;
            }
            // A publish keeps the cluster alive, as a heartbeat does (a source whose set
            // changes on every poll never heartbeats).
            if r.is_ok() {
                r = self.renew_lease(&mut w).await;
            }
            drop(w);
            let r = match r {
                Ok(()) => {
                    let mut r = self.allocate_vips(keys.iter()).await;
                    if matches!(&r, Err(e) if registry_token_rejected(e))
                        && self.renew_token().await
                    {
                        r = self.allocate_vips(keys.iter()).await;
                    }
                    r
                }
                Err(e) => Err(e.into()),
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
            let mut r = self.put_entries_locked(cluster, &mut w).await;
            if matches!(&r, Err(e) if e.token_rejected()) && self.renew_token().await {
                r = self.put_entries_locked(cluster, &mut w).await;
            }
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
            match self.sweep_hosts(&snapshot).await {
                Err(e) if registry_token_rejected(&e) && self.renew_token().await => {
                    self.sweep_hosts(&snapshot).await
                }
                r => r,
            }
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
            match self.heartbeat_locked(cluster, &mut w).await {
                Err(e) if e.token_rejected() && self.renew_token().await => {
                    Ok(self.heartbeat_locked(cluster, &mut w).await?)
                }
                r => Ok(r?),
            }
        })
    }

    /// Revokes the cluster's lease: its keys go at once.
    fn withdraw<'a>(&'a self, cluster: &'a ClusterId) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let writer = self
                .writers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(cluster);
            if let Some(writer) = writer {
                let w = writer.lock().await;
                if let Some(lease) = w.lease {
                    let mut leases = self.client.lease_client();
                    match leases.revoke(lease).await {
                        Err(e) if token_rejected(&e) && self.renew_token().await => {
                            leases.revoke(lease).await.map_err(unavailable)?;
                        }
                        r => {
                            r.map_err(unavailable)?;
                        }
                    }
                }
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

    #[test]
    fn a_prefix_range_ends_just_past_its_slash() {
        assert_eq!(prefix_end("/fleetdns/v1/"), b"/fleetdns/v10".to_vec());
        assert!(b"/fleetdns/v1/zzz".as_slice() < prefix_end("/fleetdns/v1/").as_slice());
        assert!(b"/fleetdns/v1".as_slice() < b"/fleetdns/v1/".as_slice());
    }
}
