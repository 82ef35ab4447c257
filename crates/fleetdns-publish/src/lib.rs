//! fleetdns publishes the fleet to the DNS the rest of the world uses, the way ExternalDNS does
//! (SPEC §6, XDNS-1..21), so the two can share a zone.
//!
//! - [`desired`]: annotated Services and (opt-in) every exported service → the records that
//!   should exist. Pure.
//! - [`txt`]: ExternalDNS's TXT ownership records (names and values). Pure.
//! - [`filter`]: domain filters (XDNS-10). Pure.
//! - [`plan`]: current records + desired records + policy → creates, updates, deletes, and what
//!   another owner holds. Pure.
//! - [`rfc2136`]: the RFC 2136 provider (UPDATE with prerequisites, AXFR, TSIG) on hickory-proto.
//! - [`skydns`]: the etcd provider in the SkyDNS layout CoreDNS serves (XDNS-18..20).
//! - [`sync`]: one sync, and the loop (`interval`, `min_event_interval`) that runs until cancelled.
//!
//! Libraries here read no files and no environment: the binary hands in secrets and clients.

pub mod desired;
pub mod filter;
pub mod model;
pub mod plan;
pub mod rfc2136;
pub mod skydns;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod txt;

pub use model::{Endpoint, RecordType};
pub use plan::{Plan, Policy};
