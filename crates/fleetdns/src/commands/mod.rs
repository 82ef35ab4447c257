//! One module per `fleetdns` command; each parses nothing itself (clap does, in `main`) and
//! shares the sources, signals and reload of [`crate::runtime`].

pub mod agent;
pub mod check_config;
pub mod istio;
pub mod query;
pub mod serve;
pub mod status;
pub mod stub_domains;
pub mod sync;
