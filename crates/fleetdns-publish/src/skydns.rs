//! The etcd provider in the SkyDNS layout CoreDNS's `etcd` plugin serves, as ExternalDNS's
//! coredns provider writes it (XDNS-18..20).

use crate::plan::{Plan, ZoneRecords};
use crate::rfc2136::Applied;

#[derive(Debug, thiserror::Error)]
pub enum SkyDnsError {
    #[error("etcd: {0}")]
    Etcd(String),
}

impl SkyDnsError {
    pub fn kind(&self) -> &'static str {
        "etcd"
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct SkyDnsApplyError {
    pub applied: Applied,
    pub error: SkyDnsError,
}

#[derive(Debug, Clone)]
pub struct SkyDns {}

impl SkyDns {
    pub async fn read(&self) -> Result<ZoneRecords, SkyDnsError> {
        Err(SkyDnsError::Etcd("not built yet".into()))
    }

    pub async fn apply(&self, _plan: &Plan, _owner: &str) -> Result<Applied, SkyDnsApplyError> {
        Err(SkyDnsApplyError {
            applied: Applied::default(),
            error: SkyDnsError::Etcd("not built yet".into()),
        })
    }
}
