//! Kubernetes sources for fleetdns: watch Services, EndpointSlices and ServiceExports of one
//! cluster, publish its exports to a registry, and write back what an MCS implementation must
//! (ServiceExport conditions, ServiceImports and their EndpointSlices).
//!
//! The translation is `fleetdns_core::translate` unchanged: objects are read into the serde
//! shapes of `fleetdns_core::kube`, exactly as the manifest-file source reads them.

mod client;
pub mod imports;
mod local;
mod reachability;
pub mod resources;
mod source;
pub mod status;
mod writer;

pub use client::{
    Credentials, cluster_id, clusterset_name, connect, export_version, service_entry_version,
};
pub use local::SourceStatus;
pub use source::{ClusterSource, SourceOptions};

/// Why a Kubernetes source could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("cannot load credentials from {what}: {reason}")]
    Credentials { what: String, reason: String },
    #[error("{what}: {source}")]
    Api {
        what: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cluster id: {reason}")]
    ClusterId { reason: String },
}
