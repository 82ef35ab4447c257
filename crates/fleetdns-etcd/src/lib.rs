//! The fleetdns registry on etcd v3, for fleets that outgrow one process: agents publish their
//! clusters under per-cluster leases (a dead agent's exports expire with its lease, MCS-10),
//! DNS servers load one consistent snapshot and follow the watch from its revision.
//!
//! [`codec`] documents the key layout and value encoding (versioned).
//! The registry is in three parts sharing one client: the writer (leases, generations), the
//! reader (snapshot + watch) and VIP allocation; see the `registry` module.

pub mod codec;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod registry;
#[cfg(feature = "testing")]
pub mod testing;

pub use registry::{EtcdConfig, EtcdRegistry, EtcdStatus, ReaderError, TlsPem};

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd: {0}")]
    Client(#[from] etcd_client::Error),
    #[error("etcd config: no endpoints")]
    NoEndpoints,
    #[error("etcd config: lease_ttl_secs must be at least 1 (got {0})")]
    LeaseTtl(i64),
}
