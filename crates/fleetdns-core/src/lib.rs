//! fleetdns vocabulary: cluster ids, exports, the merged clusterset view of a service
//! (MCS-20..24), the Kubernetes object → export translation, and the registry trait with its
//! in-memory implementation.
//!
//! This crate opens no sockets and knows nothing of kube-rs: sources (manifest files, the
//! Kubernetes API) translate objects with [`translate`] and publish through a [`Registry`]; the
//! DNS server compiles each [`FleetSnapshot`] into answers.

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod id;
pub mod kube;
pub mod merge;
pub mod mesh;
pub mod model;
pub mod registry;
pub mod service_entry;
pub mod shared;
pub mod tap;
pub mod time;
pub mod translate;
pub mod vip;
pub mod yaml_subset;

pub use id::{ClusterId, IdError, ServiceKey};
pub use merge::{
    Conflict, ConflictKind, Merged, MergedService, merge_fleet, merge_key, merge_service,
};
pub use model::{
    Endpoint, Export, ExportSet, IpList, Port, Ports, Protocol, ServiceType, shared_ports,
    shared_zone,
};
pub use registry::{
    ClusterView, FleetSnapshot, MemoryRegistry, Registry, RegistryError, SnapshotReceiver,
};
pub use service_entry::{ServiceEntry, ServiceEntrySet};
pub use time::Timestamp;
pub use vip::{HostVips, VipRange, VipRangeV6};
