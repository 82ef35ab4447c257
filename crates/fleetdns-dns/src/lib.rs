//! fleetdns DNS: the wire format, answer tables compiled from registry snapshots, the UDP
//! and TCP server loops and their metrics. Libraries take bound sockets and a cancellation token; they never
//! bind or read the environment themselves.

pub mod acl;
pub mod cache;
pub mod catalog;
pub mod compile;
pub mod compile_thread;
pub mod config;
pub mod dispatch;
pub mod explain;
pub mod forward;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod mesh;
pub mod metrics;
pub mod policy;
pub mod request;
pub mod respond;
pub mod server;
pub mod table;
pub mod udp;
pub mod wire;

pub use compile::compile;
pub use config::{
    AnswerPolicy, ClusterZones, ClustersetZone, MeshZones, SoaConfig, ZoneConfigError, ZonesConfig,
};
pub use metrics::Metrics;
pub use request::{Outcome, Transport};
pub use respond::respond;
pub use server::{Served, TcpOptions, serve_tcp};
pub use table::{AnswerTable, TableStats};
pub use udp::{UdpOptions, serve_udp_batched};
