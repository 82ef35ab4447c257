//! The etcd provider: the SkyDNS layout CoreDNS's `etcd` plugin serves, written exactly as
//! ExternalDNS's coredns provider writes it (XDNS-18..20).
//!
//! - Key: prefix + the name's labels reversed, joined by `/`, + `/` + an 8-hex random id:
//!   `nginx.example.org` → `/skydns/org/example/nginx/1a2b3c4d`; one key per target.
//! - Value: JSON with every field omitted when empty, in the order `host`, `port`,
//!   `priority`, `weight`, `text`, `mail`, `ttl`, `targetstrip`, `group`; an A entry is
//!   `{"host":"10.0.0.1","ttl":300,"targetstrip":1}`, an ownership entry
//!   `{"text":"\"heritage=external-dns,…\"","ttl":300,"targetstrip":1}`.
//! - Every change is one etcd transaction that requires each key it replaces or deletes to be
//!   unchanged since it was read (its mod revision), and that deletes every key of the old
//!   record set: a changed target never leaves a stale duplicate (XDNS-20), and a record
//!   someone changed meanwhile fails the change instead of being overwritten.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};

/// The etcd client the provider takes (the registry's crate, re-exported for the binary).
pub use etcd_client::{Client as EtcdClient, GetOptions};
use serde::{Deserialize, Serialize};

use crate::model::{Endpoint, RecordType, in_zone, normalize_name};
use crate::plan::{Plan, ZoneRecords};
use crate::rfc2136::Applied;
use crate::txt::{Labels, TxtNames};

#[derive(Debug, thiserror::Error)]
pub enum SkyDnsError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd: no answer within {0:?}")]
    Timeout(Duration),
    #[error("etcd: {0} changed since it was read; nothing of this change was written")]
    Conflict(String),
    #[error("apply without a read first")]
    NotRead,
}

impl SkyDnsError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Conflict(_) => "refused",
            Self::Timeout(_) => "timeout",
            _ => "etcd",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{error} (applied before the failure: {} creates, {} updates, {} deletes)", applied.creates, applied.updates, applied.deletes)]
pub struct SkyDnsApplyError {
    pub applied: Applied,
    #[source]
    pub error: SkyDnsError,
}

/// One SkyDNS entry, as ExternalDNS's coredns provider (un)marshals it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkyDnsEntry {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mail: bool,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub targetstrip: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// XDNS-14's guess, as ExternalDNS reads a `host`: IPv4 → A, IPv6 → AAAA, else CNAME.
fn host_type(host: &str) -> RecordType {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => RecordType::A,
        Ok(IpAddr::V6(_)) => RecordType::Aaaa,
        Err(_) => RecordType::Cname,
    }
}

/// What a read saw, so an apply can replace exactly that: per (name, type) the keys and
/// their mod revisions.
#[derive(Debug, Default)]
struct Index {
    keys: BTreeMap<(String, RecordType), Vec<(String, i64)>>,
}

/// The etcd provider for one zone.
pub struct SkyDns {
    client: Client,
    prefix: String,
    zone: String,
    /// The TTL of entries without one (CoreDNS serves them with its default).
    default_ttl: u32,
    timeout: Duration,
    index: Mutex<Option<Index>>,
}

impl std::fmt::Debug for SkyDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkyDns")
            .field("prefix", &self.prefix)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl Clone for SkyDns {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            prefix: self.prefix.clone(),
            zone: self.zone.clone(),
            default_ttl: self.default_ttl,
            timeout: self.timeout,
            index: Mutex::new(None),
        }
    }
}

/// A random 8-hex id, as ExternalDNS uses for the leaf label.
fn random_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:08x}", h.finish() as u32)
}

impl SkyDns {
    /// `prefix`: `/skydns/` by default (XDNS-18); a missing trailing `/` is added.
    pub fn new(
        client: Client,
        prefix: &str,
        zone: &str,
        default_ttl: u32,
        timeout: Duration,
    ) -> Self {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self {
            client,
            prefix,
            zone: normalize_name(zone).unwrap_or_else(|| zone.to_owned()),
            default_ttl,
            timeout,
            index: Mutex::new(None),
        }
    }

    /// The key of a new entry for `name`: reversed labels and a random leaf (XDNS-18).
    pub fn key_for(&self, name: &str) -> String {
        let mut labels: Vec<&str> = name.split('.').collect();
        labels.reverse();
        format!("{}{}/{}", self.prefix, labels.join("/"), random_id())
    }

    /// The name an entry's key stands for, with `targetstrip` leaf labels removed.
    fn name_of(&self, key: &str, strip: i64) -> Option<String> {
        let rest = key.strip_prefix(&self.prefix)?;
        let mut labels: Vec<&str> = rest.split('/').collect();
        labels.reverse();
        let strip = usize::try_from(strip).ok()?;
        if strip >= labels.len() {
            return None;
        }
        normalize_name(&labels[strip..].join("."))
    }

    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, SkyDnsError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(SkyDnsError::Timeout(self.timeout)),
        }
    }

    /// Every entry under the prefix that belongs to the zone, as record sets.
    pub async fn read(&self) -> Result<ZoneRecords, SkyDnsError> {
        let mut kv = self.client.kv_client();
        let resp = self
            .timed(kv.get(
                self.prefix.as_bytes(),
                Some(GetOptions::new().with_prefix()),
            ))
            .await?;
        let mut zone = ZoneRecords::default();
        let mut index = Index::default();
        for item in resp.kvs() {
            let (Ok(key), Ok(value)) = (item.key_str(), item.value_str()) else {
                continue;
            };
            let Ok(entry) = serde_json::from_str::<SkyDnsEntry>(value) else {
                tracing::debug!(key, "etcd entry is not SkyDNS JSON, ignored");
                continue;
            };
            let Some(name) = self.name_of(key, entry.targetstrip) else {
                continue;
            };
            if !in_zone(&name, &self.zone) {
                continue;
            }
            let ttl = if entry.ttl == 0 {
                self.default_ttl
            } else {
                entry.ttl
            };
            let mut add = |t: RecordType, v: String| {
                zone.insert(name.clone(), t, ttl, v);
                index
                    .keys
                    .entry((name.clone(), t))
                    .or_default()
                    .push((key.to_owned(), item.mod_revision()));
            };
            if !entry.host.is_empty() {
                let t = host_type(&entry.host);
                let host = if t == RecordType::Cname {
                    normalize_name(&entry.host).unwrap_or(entry.host.clone())
                } else {
                    entry.host.clone()
                };
                add(t, host);
            }
            if !entry.text.is_empty() {
                add(RecordType::Txt, entry.text.clone());
            }
        }
        *self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(index);
        Ok(zone)
    }

    /// A TTL equal to the default is left out, as ExternalDNS leaves out a TTL nobody set.
    fn entry(&self, host: &str, text: &str, ttl: Option<u32>) -> String {
        let e = SkyDnsEntry {
            host: host.to_owned(),
            text: text.to_owned(),
            ttl: ttl.filter(|t| *t != self.default_ttl).unwrap_or(0),
            targetstrip: 1,
            ..SkyDnsEntry::default()
        };
        serde_json::to_string(&e).unwrap_or_default()
    }

    /// The puts of one record set and its ownership entry (TXT text quoted, as ExternalDNS's
    /// registry writes it).
    fn puts(&self, ep: &Endpoint, owner_id: &str, names: &TxtNames) -> Vec<TxnOp> {
        let mut ops: Vec<TxnOp> = ep
            .targets
            .iter()
            .map(|t| TxnOp::put(self.key_for(&ep.name), self.entry(t, "", ep.ttl), None))
            .collect();
        let text = format!(
            "\"{}\"",
            Labels {
                owner: owner_id.to_owned(),
                resource: ep.resource.clone(),
            }
            .value()
        );
        ops.push(TxnOp::put(
            self.key_for(&names.new_format(&ep.name, ep.record_type)),
            self.entry("", &text, ep.ttl),
            None,
        ));
        ops
    }

    /// Applies `plan`: one transaction per change; stops at the first failure.
    pub async fn apply(
        &self,
        plan: &Plan,
        owner_id: &str,
        names: &TxtNames,
    ) -> Result<Applied, SkyDnsApplyError> {
        let index = self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let mut applied = Applied::default();
        let Some(index) = index else {
            return Err(SkyDnsApplyError {
                applied,
                error: SkyDnsError::NotRead,
            });
        };
        let old_keys = |name: &str, t: RecordType| -> Vec<(String, i64)> {
            index
                .keys
                .get(&(name.to_owned(), t))
                .cloned()
                .unwrap_or_default()
        };
        // (keys replaced, with their read revisions; operations; 0 create, 1 update, 2 delete)
        type Change = (Vec<(String, i64)>, Vec<TxnOp>, u8);
        let mut changes: Vec<Change> = Vec::new();
        for ep in &plan.creates {
            changes.push((Vec::new(), self.puts(ep, owner_id, names), 0));
        }
        for u in &plan.updates {
            let mut olds = old_keys(&u.old.current.name, u.old.current.record_type);
            for o in &u.old.owner_records {
                olds.extend(old_keys(&o.name, RecordType::Txt));
            }
            olds.sort();
            olds.dedup();
            let mut ops: Vec<TxnOp> = olds
                .iter()
                .map(|(k, _)| TxnOp::delete(k.as_bytes(), None))
                .collect();
            ops.extend(self.puts(&u.new, owner_id, names));
            changes.push((olds, ops, 1));
        }
        for d in &plan.deletes {
            let mut olds = old_keys(&d.current.name, d.current.record_type);
            for o in &d.owner_records {
                olds.extend(old_keys(&o.name, RecordType::Txt));
            }
            olds.sort();
            olds.dedup();
            let ops = olds
                .iter()
                .map(|(k, _)| TxnOp::delete(k.as_bytes(), None))
                .collect();
            changes.push((olds, ops, 2));
        }
        let mut kv = self.client.kv_client();
        for (olds, ops, kind) in changes {
            let first = olds.first().map(|(k, _)| k.clone()).unwrap_or_default();
            let compares: Vec<Compare> = olds
                .iter()
                .map(|(k, rev)| Compare::mod_revision(k.as_bytes(), CompareOp::Equal, *rev))
                .collect();
            let txn = Txn::new().when(compares).and_then(ops);
            let resp = match self.timed(kv.txn(txn)).await {
                Ok(r) => r,
                Err(error) => return Err(SkyDnsApplyError { applied, error }),
            };
            if !resp.succeeded() {
                return Err(SkyDnsApplyError {
                    applied,
                    error: SkyDnsError::Conflict(first),
                });
            }
            applied.messages += 1;
            match kind {
                0 => applied.creates += 1,
                1 => applied.updates += 1,
                _ => applied.deletes += 1,
            }
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdns_19_values_are_byte_for_byte_externaldns_json() {
        let a = SkyDnsEntry {
            host: "10.0.0.1".into(),
            targetstrip: 1,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"host":"10.0.0.1","targetstrip":1}"#
        );
        let t = SkyDnsEntry {
            host: "10.173.32.42".into(),
            text: "\"heritage=external-dns,external-dns/owner=x\"".into(),
            ttl: 60,
            targetstrip: 1,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"host":"10.173.32.42","text":"\"heritage=external-dns,external-dns/owner=x\"","ttl":60,"targetstrip":1}"#
        );
        let back: SkyDnsEntry =
            serde_json::from_str(r#"{"host":"a.example","port":80,"group":"g"}"#).unwrap();
        assert_eq!((back.port, back.group.as_str()), (80, "g"));
    }
}
