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
use writer::{Writer, forget_lease};

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

/// How often the client pings etcd over HTTP/2 (see [`EtcdRegistry::connect`]).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

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
            // HTTP/2 pings no more often than every 10 s: etcd (gRPC-Go) answers a client that
            // pings more often than its --grpc-keepalive-min-time (default 5 s) with GOAWAY
            // "too_many_pings" after three pings, which dropped the connection (and every watch
            // and lease keep-alive on it) every ~8 s. 10 s is also gRPC-Go's own client minimum.
            .with_keep_alive(KEEPALIVE_INTERVAL, Duration::from_secs(5))
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
        exports: ExportSet,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let keys: Vec<ServiceKey> = exports.keys().cloned().collect();
            let writer = self.writer(cluster);
            let mut w = writer.lock().await;
            let r = match self.publish_locked(cluster, &mut w, exports).await {
                Ok(()) => self.renew_lease(&mut w).await,
                Err(e) => Err(e),
            };
            drop(w);
            let r = match r {
                Ok(()) => self.allocate_vips(keys.iter()).await,
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
            let r = match self.put_entries(cluster, &mut w).await {
                Err(e) if e.lease_lost() => {
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
                    Some(set) => Ok(self.publish_locked(cluster, &mut w, set).await?),
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
