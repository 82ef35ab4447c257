//! VIP allocation: a clusterset VIP (and, with an IPv6 range, an IPv6 one) per exported
//! service, and one per family for each ServiceEntry host that needs one (IST-14). A VIP record
//! and its address claim are created together by one compare-and-swap, so no address is handed
//! out twice; a VIP no longer needed is released after the grace period, only if nothing
//! changed meanwhile.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use fleetdns_core::{FleetSnapshot, RegistryError, ServiceKey, Timestamp};
use tokio::time::Instant;

use super::reader::ReaderState;
use super::{EtcdRegistry, prefix_end, unavailable};
use crate::codec::{self, Family};

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
        for key in wanted {
            let owner = format!("{}/{}", key.namespace(), key.name());
            let candidates = range.candidates(&key).map(IpAddr::V4);
            // An IPv4 `AddrRecord` encodes exactly as a `VipRecord` (codec tests check it).
            match self
                .claim_vip(&self.layout.vip(&key), &owner, candidates, &BTreeSet::new())
                .await?
            {
                Claim::Made(ip) => tracing::info!(service = %key, vip = %ip, "VIP allocated"),
                Claim::Existed => {}
                Claim::NoneFree => {
                    tracing::warn!(service = %key, range = %range, "no free VIP found");
                }
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
                let claim = self
                    .claim_vip(&self.layout.vip6(key), &owner, candidates, &BTreeSet::new())
                    .await?;
                if !claim.log(&owner) {
                    tracing::warn!(service = %key, range = %range6, "no free IPv6 VIP found");
                }
            }
        }
        Ok(())
    }

    /// Creates the VIP record `record_key` with the first candidate whose address claim is
    /// free (skipping `skip`), both in one compare-and-swap; the claim's value is `owner`.
    async fn claim_vip(
        &self,
        record_key: &str,
        owner: &str,
        candidates: impl Iterator<Item = IpAddr>,
        skip: &BTreeSet<IpAddr>,
    ) -> Result<Claim, RegistryError> {
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
                return Ok(Claim::Made(ip));
            }
            // Lost the race: either the record was made meanwhile (done) or the address is
            // taken (try the next).
            let exists = resp.op_responses().into_iter().any(|op| match op {
                etcd_client::TxnOpResponse::Get(g) => !g.kvs().is_empty(),
                _ => false,
            });
            if exists {
                return Ok(Claim::Existed);
            }
        }
        Ok(Claim::NoneFree)
    }

    /// Deletes a host VIP record and its claim, only while the claim is still this host's.
    /// `unchanged_since`: also only while no cluster's ServiceEntries changed after that
    /// revision (a release must not race an entry that needs the VIP again).
    async fn unclaim_host_vip(
        &self,
        family: Family,
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
            let families: [(Family, Option<IpAddr>, bool); 2] = [
                (Family::V4, cur.v4.map(IpAddr::V4), true),
                (Family::V6, cur.v6.map(IpAddr::V6), self.vips_v6.is_some()),
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
                let ok = if family == Family::V4 {
                    let c = range.candidates_for(host).map(IpAddr::V4);
                    self.claim_vip(&key, &owner, c, &plan.reserved)
                        .await?
                        .log(&owner)
                } else {
                    let c = self
                        .vips_v6
                        .expect("checked above")
                        .candidates_for(host)
                        .map(IpAddr::V6);
                    self.claim_vip(&key, &owner, c, &plan.reserved)
                        .await?
                        .log(&owner)
                };
                if !ok {
                    tracing::warn!(host = %host, family = %family, "no free VIP found for a ServiceEntry host");
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
        let due = {
            let mut orphans = self
                .host_orphans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            hosts_due(state, &needed, &mut orphans, Instant::now(), grace)
        };
        for (family, host, ip) in due {
            match self
                .unclaim_host_vip(family, &host, ip, Some(state.revision))
                .await
            {
                Ok(true) => {
                    tracing::info!(host = %host, vip = %ip, "ServiceEntry host VIP released: not needed for longer than the grace period");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(host = %host, error = %e, "host VIP release failed; retried");
                    if super::registry_token_rejected(&e) {
                        self.renew_token().await;
                    }
                }
            }
        }
    }

    /// Deletes VIPs whose service has had no export for longer than the grace period, only if
    /// nobody changed them meanwhile.
    pub(super) async fn release_vips(&self, state: &ReaderState) {
        let Some((_, grace)) = self.vips else { return };
        let ServicesDue { due, due6 } = {
            let mut orphans = self
                .vip_orphans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            services_due(state, &mut orphans, Instant::now(), grace)
        };
        let mut kv6 = self.client.kv_client();
        for (key, ip6) in due6 {
            let txn = Txn::new().and_then(vec![
                TxnOp::delete(self.layout.vip6(&key), None),
                TxnOp::delete(self.layout.vip_claim(ip6), None),
            ]);
            if let Err(e) = kv6.txn(txn).await {
                tracing::debug!(service = %key, error = %e, "IPv6 VIP release failed; retried");
                if super::token_rejected(&e) {
                    self.renew_token().await;
                }
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
                    tracing::debug!(service = %key, error = %e, "VIP release failed; retried");
                    if super::token_rejected(&e) {
                        self.renew_token().await;
                    }
                }
            }
        }
    }
}

/// What [`EtcdRegistry::claim_vip`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// The record was created with this address.
    Made(IpAddr),
    /// The record exists already (someone else made it).
    Existed,
    /// Every candidate address is taken.
    NoneFree,
}

impl Claim {
    /// Logs an allocation under `owner`; whether the record exists now.
    fn log(self, owner: &str) -> bool {
        if let Self::Made(ip) = self {
            tracing::info!(owner = %owner, vip = %ip, "VIP allocated");
        }
        self != Self::NoneFree
    }
}

/// How often a reader looks for VIPs to release: a quarter of the grace period, within
/// 250 ms..30 s; hourly (and then it does nothing) without VIP allocation.
pub(super) fn sweep_every(grace: Option<Duration>) -> Duration {
    grace.map_or(Duration::from_secs(3600), |grace| {
        (grace / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
    })
}

/// Service VIPs due for release.
#[derive(Debug, Default, PartialEq, Eq)]
struct ServicesDue {
    /// IPv4 VIPs (with the mod revision the release is guarded by); each takes its service's
    /// IPv6 VIP along.
    due: Vec<(ServiceKey, Ipv4Addr, i64)>,
    /// IPv6 VIPs whose IPv4 one is gone already (or was never allocated).
    due6: Vec<(ServiceKey, Ipv6Addr)>,
}

/// The service VIPs whose service has had no export for longer than `grace`. `orphans`
/// remembers since when each has had none (kept between sweeps); a service exported again
/// is forgotten.
fn services_due(
    state: &ReaderState,
    orphans: &mut HashMap<ServiceKey, Instant>,
    now: Instant,
    grace: Duration,
) -> ServicesDue {
    let exported: BTreeSet<&ServiceKey> = state.exports.values().flat_map(|s| s.keys()).collect();
    let mut out = ServicesDue::default();
    orphans.retain(|k, _| {
        (state.vips.contains_key(k) || state.vips6.contains_key(k)) && !exported.contains(k)
    });
    for (key, (ip, mod_rev)) in &state.vips {
        if exported.contains(key) {
            continue;
        }
        let since = *orphans.entry(key.clone()).or_insert(now);
        if now.duration_since(since) > grace {
            out.due.push((key.clone(), *ip, *mod_rev));
        }
    }
    for (key, ip6) in &state.vips6 {
        if exported.contains(key) || state.vips.contains_key(key) {
            continue;
        }
        let since = *orphans.entry(key.clone()).or_insert(now);
        if now.duration_since(since) > grace {
            out.due6.push((key.clone(), *ip6));
        }
    }
    out
}

/// The ServiceEntry host VIPs (family, host, address) no entry has needed for longer than
/// `grace`; `orphans` as in [`services_due`], by host.
fn hosts_due(
    state: &ReaderState,
    needed: &BTreeSet<String>,
    orphans: &mut HashMap<String, Instant>,
    now: Instant,
    grace: Duration,
) -> Vec<(Family, String, IpAddr)> {
    let mut due = Vec::new();
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
    due
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fleetdns_core::model::{Export, ServiceType};
    use fleetdns_core::{ClusterId, ExportSet};

    use super::*;

    const GRACE: Duration = Duration::from_secs(60);

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("default", name).unwrap()
    }

    fn exports(names: &[&str]) -> ExportSet {
        names
            .iter()
            .map(|n| {
                let e = Export {
                    key: key(n),
                    cluster: ClusterId::new("east").unwrap(),
                    service_type: ServiceType::ClusterSetIp,
                    ports: vec![].into(),
                    cluster_ips: vec![].into(),
                    endpoints: vec![].into(),
                    created: Timestamp(0),
                };
                (key(n), Arc::new(e))
            })
            .collect()
    }

    #[test]
    fn a_service_vip_is_released_only_after_the_grace_period_without_exports() {
        let mut state = ReaderState::default();
        let east = ClusterId::new("east").unwrap();
        state.exports.insert((east.clone(), 1), exports(&["kept"]));
        state
            .vips
            .insert(key("kept"), ("240.0.0.1".parse().unwrap(), 5));
        state
            .vips
            .insert(key("gone"), ("240.0.0.2".parse().unwrap(), 6));
        state.vips6.insert(key("gone"), "fd00::2".parse().unwrap());
        state
            .vips6
            .insert(key("v6only"), "fd00::3".parse().unwrap());
        let mut orphans = HashMap::new();
        let t0 = Instant::now();
        assert_eq!(
            services_due(&state, &mut orphans, t0, GRACE),
            ServicesDue::default()
        );
        assert_eq!(orphans.len(), 2, "gone and v6only are orphans from now on");
        assert_eq!(
            services_due(&state, &mut orphans, t0 + GRACE, GRACE),
            ServicesDue::default(),
            "not before the grace period is over"
        );
        let due = services_due(
            &state,
            &mut orphans,
            t0 + GRACE + Duration::from_secs(1),
            GRACE,
        );
        assert_eq!(due.due, [(key("gone"), "240.0.0.2".parse().unwrap(), 6)]);
        assert_eq!(due.due6, [(key("v6only"), "fd00::3".parse().unwrap())]);
        // Exported again before the release: forgotten, and its clock starts afresh.
        state.exports.insert((east, 2), exports(&["gone"]));
        let later = t0 + 10 * GRACE;
        let due = services_due(&state, &mut orphans, later, GRACE);
        assert!(due.due.is_empty());
        assert!(!orphans.contains_key(&key("gone")));
        state.exports.clear();
        assert!(
            services_due(&state, &mut orphans, later + GRACE / 2, GRACE)
                .due
                .is_empty()
        );
    }

    #[test]
    fn a_host_vip_is_released_only_after_the_grace_period_unneeded() {
        let mut state = ReaderState::default();
        state.host_vips.insert(
            (Family::V4, "a.example.com".into()),
            ("240.0.0.1".parse().unwrap(), 1),
        );
        state.host_vips.insert(
            (Family::V6, "a.example.com".into()),
            ("fd00::1".parse().unwrap(), 1),
        );
        state.host_vips.insert(
            (Family::V4, "b.example.com".into()),
            ("240.0.0.2".parse().unwrap(), 1),
        );
        let needed: BTreeSet<String> = ["b.example.com".to_owned()].into();
        let mut orphans = HashMap::new();
        let t0 = Instant::now();
        assert!(hosts_due(&state, &needed, &mut orphans, t0, GRACE).is_empty());
        let due = hosts_due(&state, &needed, &mut orphans, t0 + 2 * GRACE, GRACE);
        assert_eq!(
            due,
            [
                (
                    Family::V4,
                    "a.example.com".to_owned(),
                    "240.0.0.1".parse().unwrap()
                ),
                (
                    Family::V6,
                    "a.example.com".to_owned(),
                    "fd00::1".parse().unwrap()
                ),
            ]
        );
        // Needed again: forgotten.
        let needed: BTreeSet<String> =
            ["a.example.com".to_owned(), "b.example.com".to_owned()].into();
        assert!(hosts_due(&state, &needed, &mut orphans, t0 + 3 * GRACE, GRACE).is_empty());
        assert!(orphans.is_empty());
    }

    #[test]
    fn sweeps_run_four_times_a_grace_period_within_bounds() {
        assert_eq!(
            sweep_every(Some(Duration::from_secs(60))),
            Duration::from_secs(15)
        );
        assert_eq!(
            sweep_every(Some(Duration::from_millis(100))),
            Duration::from_millis(250)
        );
        assert_eq!(
            sweep_every(Some(Duration::from_secs(3600))),
            Duration::from_secs(30)
        );
        assert_eq!(sweep_every(None), Duration::from_secs(3600));
    }
}
