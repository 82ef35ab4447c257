//! VIP allocation: a clusterset VIP (and, with an IPv6 range, an IPv6 one) per exported
//! service, and one per family for each ServiceEntry host that needs one (IST-14). A VIP record
//! and its address claim are created together by one compare-and-swap, so no address is handed
//! out twice; a VIP no longer needed is released after the grace period, only if nothing
//! changed meanwhile.

use std::collections::BTreeSet;
use std::net::IpAddr;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use fleetdns_core::{FleetSnapshot, RegistryError, ServiceKey, Timestamp};

use super::reader::ReaderState;
use super::{EtcdRegistry, prefix_end, unavailable};
use crate::codec;

impl EtcdRegistry {
    /// Gives every service of `keys` a VIP unless it has one: a compare-and-swap transaction
    /// creates the service's record and the address claim together, only if neither exists.
    pub(super) async fn allocate_vips(
        &self,
        keys: impl Iterator<Item = &ServiceKey>,
    ) -> Result<(), RegistryError> {
        let Some((range, _)) = self.vips else {
            return Ok(());
        };
        let have: BTreeSet<ServiceKey> = self
            .tx
            .borrow()
            .as_ref()
            .map(|s| s.vips.keys().cloned().collect())
            .unwrap_or_default();
        // Allocation is idempotent (the transaction finds an existing record), so a service
        // the reader has not caught up with costs one transaction, nothing more.
        let all: Vec<ServiceKey> = keys.cloned().collect();
        let wanted: Vec<ServiceKey> = all.iter().filter(|k| !have.contains(*k)).cloned().collect();
        let mut kv = self.client.kv_client();
        for key in wanted {
            let record_key = self.layout.vip(&key);
            let mut done = false;
            for ip in range.candidates(&key).take(4096) {
                let claim = self.layout.vip_claim(ip);
                let record = codec::VipRecord {
                    v: codec::VERSION,
                    ip,
                    allocated: Timestamp::now().0,
                };
                let txn = Txn::new()
                    .when(vec![
                        Compare::create_revision(record_key.clone(), CompareOp::Equal, 0),
                        Compare::create_revision(claim.clone(), CompareOp::Equal, 0),
                    ])
                    .and_then(vec![
                        TxnOp::put(record_key.clone(), codec::encode(&record), None),
                        TxnOp::put(claim, format!("{}/{}", key.namespace(), key.name()), None),
                    ])
                    .or_else(vec![TxnOp::get(record_key.clone(), None)]);
                let resp = kv.txn(txn).await.map_err(unavailable)?;
                if resp.succeeded() {
                    tracing::info!(service = %key, vip = %ip, "VIP allocated");
                    done = true;
                    break;
                }
                // Lost the race: either the service got a VIP meanwhile (done) or the address
                // is taken (try the next).
                let allocated = resp.op_responses().into_iter().any(|op| match op {
                    etcd_client::TxnOpResponse::Get(g) => !g.kvs().is_empty(),
                    _ => false,
                });
                if allocated {
                    done = true;
                    break;
                }
            }
            if !done {
                tracing::warn!(service = %key, range = %range, "no free VIP found");
            }
        }
        if let Some(range6) = self.vips_v6 {
            let have6: BTreeSet<ServiceKey> = self
                .tx
                .borrow()
                .as_ref()
                .map(|s| s.vips_v6.keys().cloned().collect())
                .unwrap_or_default();
            for key in all.iter().filter(|k| !have6.contains(*k)) {
                let owner = format!("{}/{}", key.namespace(), key.name());
                let candidates = range6.candidates(key).map(IpAddr::V6);
                if !self
                    .claim_vip(&self.layout.vip6(key), &owner, candidates, &BTreeSet::new())
                    .await?
                {
                    tracing::warn!(service = %key, range = %range6, "no free IPv6 VIP found");
                }
            }
        }
        Ok(())
    }

    /// Creates the VIP record `record_key` with the first candidate whose address claim is
    /// free (skipping `skip`), both in one compare-and-swap. `Ok(true)` when the record exists
    /// afterwards (made here or by someone else).
    async fn claim_vip(
        &self,
        record_key: &str,
        owner: &str,
        candidates: impl Iterator<Item = IpAddr>,
        skip: &BTreeSet<IpAddr>,
    ) -> Result<bool, RegistryError> {
        let mut kv = self.client.kv_client();
        for ip in candidates.filter(|ip| !skip.contains(ip)).take(4096) {
            let claim = self.layout.vip_claim(ip);
            let record = codec::AddrRecord {
                v: codec::VERSION,
                ip,
                allocated: Timestamp::now().0,
            };
            let txn = Txn::new()
                .when(vec![
                    Compare::create_revision(record_key, CompareOp::Equal, 0),
                    Compare::create_revision(claim.clone(), CompareOp::Equal, 0),
                ])
                .and_then(vec![
                    TxnOp::put(record_key, codec::encode(&record), None),
                    TxnOp::put(claim, owner, None),
                ])
                .or_else(vec![TxnOp::get(record_key, None)]);
            let resp = kv.txn(txn).await.map_err(unavailable)?;
            if resp.succeeded() {
                tracing::info!(owner = %owner, vip = %ip, "VIP allocated");
                return Ok(true);
            }
            let exists = resp.op_responses().into_iter().any(|op| match op {
                etcd_client::TxnOpResponse::Get(g) => !g.kvs().is_empty(),
                _ => false,
            });
            if exists {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Deletes a host VIP record and its claim, only while the claim is still this host's.
    /// `unchanged_since`: also only while no cluster's ServiceEntries changed after that
    /// revision (a release must not race an entry that needs the VIP again).
    async fn unclaim_host_vip(
        &self,
        family: u8,
        host: &str,
        ip: IpAddr,
        unchanged_since: Option<i64>,
    ) -> Result<bool, RegistryError> {
        let claim = self.layout.vip_claim(ip);
        let owner = format!("host:{host}");
        let mut when = vec![Compare::value(claim.clone(), CompareOp::Equal, owner)];
        if let Some(revision) = unchanged_since {
            let root = self.layout.service_entries_root();
            let end = prefix_end(&root);
            when.push(Compare::mod_revision(root, CompareOp::Less, revision + 1).with_range(end));
        }
        let txn = Txn::new().when(when).and_then(vec![
            TxnOp::delete(self.layout.host_vip(family, host), None),
            TxnOp::delete(claim, None),
        ]);
        let resp = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(unavailable)?;
        Ok(resp.succeeded())
    }

    /// Gives every ServiceEntry host that needs one a VIP per family (IST-14), off the
    /// addresses spec and status own; a VIP that an entry's own address now claims is moved.
    /// `snapshot` is the fleet as it will be once the caller's publish is read back.
    pub(super) async fn sweep_hosts(&self, snapshot: &FleetSnapshot) -> Result<(), RegistryError> {
        let Some((range, _)) = self.vips else {
            return Ok(());
        };
        let plan = fleetdns_core::mesh::plan(snapshot);
        for host in &plan.needs_vip {
            let cur = snapshot.host_vips.get(host).copied().unwrap_or_default();
            let owner = format!("host:{host}");
            let families: [(u8, Option<IpAddr>, bool); 2] = [
                (4, cur.v4.map(IpAddr::V4), true),
                (6, cur.v6.map(IpAddr::V6), self.vips_v6.is_some()),
            ];
            for (family, ip, wanted) in families {
                if !wanted {
                    continue;
                }
                if let Some(ip) = ip {
                    if !plan.reserved.contains(&ip) {
                        continue;
                    }
                    tracing::info!(host = %host, vip = %ip, "ServiceEntry host VIP is an address an entry owns; moving it");
                    self.unclaim_host_vip(family, host, ip, None).await?;
                }
                let key = self.layout.host_vip(family, host);
                let ok = if family == 4 {
                    let c = range.candidates_for(host).map(IpAddr::V4);
                    self.claim_vip(&key, &owner, c, &plan.reserved).await?
                } else {
                    let c = self
                        .vips_v6
                        .expect("checked above")
                        .candidates_for(host)
                        .map(IpAddr::V6);
                    self.claim_vip(&key, &owner, c, &plan.reserved).await?
                };
                if !ok {
                    tracing::warn!(host = %host, family, "no free VIP found for a ServiceEntry host");
                }
            }
        }
        Ok(())
    }

    /// Deletes host VIPs no entry has needed for longer than the grace period.
    pub(super) async fn release_host_vips(&self, state: &ReaderState) {
        let Some((_, grace)) = self.vips else { return };
        let snapshot = self.tx.borrow().clone();
        let Some(snapshot) = snapshot else { return };
        let needed = fleetdns_core::mesh::plan(&snapshot).needs_vip;
        let now = tokio::time::Instant::now();
        let mut due = Vec::new();
        {
            let mut orphans = self.host_orphans.lock().unwrap_or_else(|e| e.into_inner());
            orphans.retain(|h, _| !needed.contains(h));
            for ((family, host), (ip, _)) in &state.host_vips {
                if needed.contains(host) {
                    continue;
                }
                let since = *orphans.entry(host.clone()).or_insert(now);
                if now.duration_since(since) > grace {
                    due.push((*family, host.clone(), *ip));
                }
            }
        }
        for (family, host, ip) in due {
            match self
                .unclaim_host_vip(family, &host, ip, Some(state.revision))
                .await
            {
                Ok(true) => {
                    tracing::info!(host = %host, vip = %ip, "ServiceEntry host VIP released: not needed for longer than the grace period")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(host = %host, error = %e, "host VIP release failed; retried")
                }
            }
        }
    }

    /// Deletes VIPs whose service has had no export for longer than the grace period, only if
    /// nobody changed them meanwhile.
    pub(super) async fn release_vips(&self, state: &ReaderState) {
        let Some((_, grace)) = self.vips else { return };
        let exported: BTreeSet<&ServiceKey> =
            state.exports.values().flat_map(|s| s.keys()).collect();
        let now = tokio::time::Instant::now();
        let mut due = Vec::new();
        let mut due6 = Vec::new();
        {
            let mut orphans = self.vip_orphans.lock().unwrap_or_else(|e| e.into_inner());
            orphans.retain(|k, _| {
                (state.vips.contains_key(k) || state.vips6.contains_key(k)) && !exported.contains(k)
            });
            for (key, (ip, mod_rev)) in &state.vips {
                if exported.contains(key) {
                    continue;
                }
                let since = *orphans.entry(key.clone()).or_insert(now);
                if now.duration_since(since) > grace {
                    due.push((key.clone(), *ip, *mod_rev));
                }
            }
            // An IPv6 VIP whose IPv4 one is gone already (or was never allocated).
            for (key, ip6) in &state.vips6 {
                if exported.contains(key) || state.vips.contains_key(key) {
                    continue;
                }
                let since = *orphans.entry(key.clone()).or_insert(now);
                if now.duration_since(since) > grace {
                    due6.push((key.clone(), *ip6));
                }
            }
        }
        let mut kv6 = self.client.kv_client();
        for (key, ip6) in due6 {
            let txn = Txn::new().and_then(vec![
                TxnOp::delete(self.layout.vip6(&key), None),
                TxnOp::delete(self.layout.vip_claim(ip6), None),
            ]);
            if let Err(e) = kv6.txn(txn).await {
                tracing::debug!(service = %key, error = %e, "IPv6 VIP release failed; retried");
            }
        }
        let mut kv = self.client.kv_client();
        // Nothing under exports/ may have changed since this reader's revision: a service
        // exported again a moment ago keeps its VIP.
        let exports = self.layout.exports_root();
        let exports_end = prefix_end(&exports);
        for (key, ip, mod_rev) in due {
            let record_key = self.layout.vip(&key);
            let txn = Txn::new()
                .when(vec![
                    Compare::mod_revision(record_key.clone(), CompareOp::Equal, mod_rev),
                    Compare::mod_revision(exports.clone(), CompareOp::Less, state.revision + 1)
                        .with_range(exports_end.clone()),
                ])
                .and_then(
                    [
                        TxnOp::delete(record_key, None),
                        TxnOp::delete(self.layout.vip_claim(ip), None),
                    ]
                    .into_iter()
                    .chain(state.vips6.get(&key).into_iter().flat_map(|ip6| {
                        [
                            TxnOp::delete(self.layout.vip6(&key), None),
                            TxnOp::delete(self.layout.vip_claim(*ip6), None),
                        ]
                    }))
                    .collect::<Vec<_>>(),
                );
            match kv.txn(txn).await {
                Ok(r) if r.succeeded() => {
                    tracing::info!(service = %key, vip = %ip, "VIP released: no export for longer than the grace period");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(service = %key, error = %e, "VIP release failed; retried")
                }
            }
        }
    }
}
