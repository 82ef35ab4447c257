//! Current records + desired records + policy → what to change (XDNS-1..4). Pure.
//!
//! Ownership is ExternalDNS's (XDNS-3): a record is ours when its TXT ownership record (current
//! format, else the old one) names our owner id. Records of another owner, and records without
//! an ownership record, are never updated or deleted; a name someone else holds is never
//! created over.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::filter::DomainFilter;
use crate::model::{Endpoint, RecordType, in_zone};
use crate::txt::{Labels, TxtNames};

/// XDNS-2. There is no default: the config must name one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Create, update and delete.
    Sync,
    /// Create and update, never delete.
    UpsertOnly,
    /// Create only.
    CreateOnly,
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(Self::Sync),
            "upsert-only" => Ok(Self::UpsertOnly),
            "create-only" => Ok(Self::CreateOnly),
            _ => Err(format!(
                "policy {s:?} is not one of sync, upsert-only, create-only"
            )),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sync => "sync",
            Self::UpsertOnly => "upsert-only",
            Self::CreateOnly => "create-only",
        })
    }
}

/// One record set as a provider read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet {
    pub ttl: u32,
    /// A/AAAA/CNAME targets as in [`Endpoint::targets`]; TXT values without quotes.
    pub values: BTreeSet<String>,
}

/// A zone's current records, keyed by (name, type); names lower-case without a trailing dot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneRecords {
    pub sets: BTreeMap<(String, RecordType), RecordSet>,
}

impl ZoneRecords {
    pub fn insert(&mut self, name: String, t: RecordType, ttl: u32, value: String) {
        let set = self.sets.entry((name, t)).or_insert(RecordSet {
            ttl,
            values: BTreeSet::new(),
        });
        set.ttl = set.ttl.min(ttl);
        set.values.insert(value);
    }

    fn txt(&self, name: &str) -> Option<&RecordSet> {
        self.sets.get(&(name.to_owned(), RecordType::Txt))
    }
}

/// A TXT ownership record we hold: its name, our value there, and every value at that name
/// (the prerequisite of a change is that set, unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRecord {
    pub name: String,
    pub value: String,
    pub rrset: BTreeSet<String>,
}

/// A record set we own, as it is now, with the ownership records that say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub current: Endpoint,
    pub owner_records: Vec<OwnerRecord>,
}

impl Owned {
    /// Only the old format says it is ours: the update adopts it (writes the current format).
    pub fn old_format_only(&self, names: &TxtNames) -> bool {
        let new = names.new_format(&self.current.name, self.current.record_type);
        !self.owner_records.iter().any(|r| r.name == new)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub old: Owned,
    pub new: Endpoint,
}

/// Why a desired record is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftAlone {
    pub name: String,
    pub record_type: RecordType,
    pub reason: String,
}

/// What a sync will do. Every endpoint carries its effective TTL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub creates: Vec<Endpoint>,
    pub updates: Vec<Update>,
    pub deletes: Vec<Owned>,
    pub left_alone: Vec<LeftAlone>,
}

impl Plan {
    pub fn changes(&self) -> usize {
        self.creates.len() + self.updates.len() + self.deletes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes() == 0
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.creates {
            writeln!(f, "create {c}")?;
        }
        for u in &self.updates {
            writeln!(
                f,
                "update {} -> [{}] ttl {}",
                u.old.current,
                u.new.targets_text(),
                u.new.ttl.unwrap_or(0)
            )?;
        }
        for d in &self.deletes {
            writeln!(f, "delete {}", d.current)?;
        }
        for l in &self.left_alone {
            writeln!(f, "leave {} {}: {}", l.name, l.record_type, l.reason)?;
        }
        Ok(())
    }
}

/// What the plan needs to know beyond the records.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub zone: String,
    pub owner_id: String,
    pub policy: Policy,
    pub filter: DomainFilter,
    pub managed_types: BTreeSet<RecordType>,
    pub txt_names: TxtNames,
    /// TTL of endpoints without one (ExternalDNS's rfc2136 default is 0 → `min_ttl`; ours is 300).
    pub default_ttl: u32,
    /// XDNS-16: TTL = max(record TTL, `min_ttl`).
    pub min_ttl: u32,
}

/// Who owns a record set.
enum Ownership {
    Ours(Vec<OwnerRecord>, String),
    Other(String),
    Nobody,
}

fn ownership(zone: &ZoneRecords, settings: &PlanSettings, name: &str, t: RecordType) -> Ownership {
    let names = &settings.txt_names;
    let mut candidates = vec![names.new_format(name, t)];
    if t != RecordType::Aaaa {
        candidates.push(names.old_format(name));
    }
    // The current format decides when it exists; the old one is a fallback (XDNS-6).
    for txt_name in candidates {
        let Some(set) = zone.txt(&txt_name) else {
            continue;
        };
        let mut ours = Vec::new();
        let mut resource = String::new();
        let mut other = None;
        for value in &set.values {
            match Labels::parse(value) {
                Ok(Some(l)) if l.owner == settings.owner_id => {
                    resource.clone_from(&l.resource);
                    ours.push(OwnerRecord {
                        name: txt_name.clone(),
                        value: value.clone(),
                        rrset: set.values.clone(),
                    });
                }
                Ok(Some(l)) => other = Some(l.owner),
                _ => {}
            }
        }
        if let Some(o) = other {
            return Ownership::Other(o);
        }
        if !ours.is_empty() {
            return Ownership::Ours(ours, resource);
        }
    }
    Ownership::Nobody
}

/// Computes the plan. `desired` must be merged (one endpoint per name and type).
pub fn plan(desired: &[Endpoint], zone: &ZoneRecords, settings: &PlanSettings) -> Plan {
    let mut plan = Plan::default();
    let ttl_of = |ttl: Option<u32>| ttl.unwrap_or(settings.default_ttl).max(settings.min_ttl);
    let managed = |name: &str, t: RecordType| {
        settings.managed_types.contains(&t)
            && in_zone(name, &settings.zone)
            && settings.filter.matches(name)
    };
    let mut wanted: BTreeSet<(String, RecordType)> = BTreeSet::new();
    for want in desired {
        if !managed(&want.name, want.record_type) {
            continue;
        }
        wanted.insert((want.name.clone(), want.record_type));
        let mut want = want.clone();
        want.ttl = Some(ttl_of(want.ttl));
        let leave = |reason: String| LeftAlone {
            name: want.name.clone(),
            record_type: want.record_type,
            reason,
        };
        let current = zone.sets.get(&(want.name.clone(), want.record_type));
        match (
            current,
            ownership(zone, settings, &want.name, want.record_type),
        ) {
            (Some(set), Ownership::Ours(owner_records, resource)) => {
                let owned = Owned {
                    current: Endpoint {
                        name: want.name.clone(),
                        record_type: want.record_type,
                        targets: set.values.clone(),
                        ttl: Some(set.ttl),
                        resource,
                    },
                    owner_records,
                };
                let stale = owned.current.targets != want.targets
                    || owned.current.ttl != want.ttl
                    || owned.current.resource != want.resource
                    || owned.old_format_only(&settings.txt_names);
                if stale && settings.policy != Policy::CreateOnly {
                    plan.updates.push(Update {
                        old: owned,
                        new: want,
                    });
                }
            }
            (None, Ownership::Ours(..) | Ownership::Nobody) => {
                let blocker = zone.sets.keys().find(|(n, t)| {
                    n == &want.name
                        && *t != RecordType::Txt
                        && (want.record_type == RecordType::Cname || *t == RecordType::Cname)
                });
                match blocker {
                    Some((_, t)) => plan.left_alone.push(leave(format!(
                        "the name holds a {t} record, which cannot share it with a {}",
                        want.record_type
                    ))),
                    None => plan.creates.push(want),
                }
            }
            (_, Ownership::Other(owner)) => {
                plan.left_alone.push(leave(format!("owned by {owner:?}")));
            }
            (Some(_), Ownership::Nobody) => {
                plan.left_alone
                    .push(leave("exists without an ownership record".into()));
            }
        }
    }
    if settings.policy == Policy::Sync {
        for ((name, t), set) in &zone.sets {
            if *t == RecordType::Txt || !managed(name, *t) || wanted.contains(&(name.clone(), *t)) {
                continue;
            }
            if let Ownership::Ours(owner_records, resource) = ownership(zone, settings, name, *t) {
                plan.deletes.push(Owned {
                    current: Endpoint {
                        name: name.clone(),
                        record_type: *t,
                        targets: set.values.clone(),
                        ttl: Some(set.ttl),
                        resource,
                    },
                    owner_records,
                });
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "fleet.example.com";

    fn settings(policy: Policy) -> PlanSettings {
        PlanSettings {
            zone: ZONE.into(),
            owner_id: "fleet-1".into(),
            policy,
            filter: DomainFilter::default(),
            managed_types: [RecordType::A, RecordType::Aaaa, RecordType::Cname].into(),
            txt_names: TxtNames::default(),
            default_ttl: 300,
            min_ttl: 0,
        }
    }

    fn ep(name: &str, targets: &[&str]) -> Endpoint {
        Endpoint {
            name: format!("{name}.{ZONE}"),
            record_type: RecordType::A,
            targets: targets.iter().map(ToString::to_string).collect(),
            ttl: None,
            resource: format!("service/default/{name}"),
        }
    }

    fn owner(owner: &str, name: &str) -> String {
        Labels {
            owner: owner.into(),
            resource: format!("service/default/{name}"),
        }
        .value()
    }

    /// A zone holding `name` A `ip`, owned by `who` through a TXT in the current or old format.
    fn with(zone: &mut ZoneRecords, name: &str, ip: &str, who: Option<&str>, old: bool) {
        let fq = format!("{name}.{ZONE}");
        zone.insert(fq.clone(), RecordType::A, 300, ip.into());
        if let Some(who) = who {
            let txt = if old { fq } else { format!("a-{name}.{ZONE}") };
            zone.insert(txt, RecordType::Txt, 300, owner(who, name));
        }
    }

    #[test]
    fn xdns_2_sync_creates_updates_and_deletes_its_own() {
        let mut zone = ZoneRecords::default();
        with(&mut zone, "same", "192.0.2.1", Some("fleet-1"), false);
        with(&mut zone, "moved", "192.0.2.2", Some("fleet-1"), false);
        with(&mut zone, "gone", "192.0.2.3", Some("fleet-1"), false);
        let desired = [
            ep("same", &["192.0.2.1"]),
            ep("moved", &["192.0.2.20"]),
            ep("new", &["192.0.2.4"]),
        ];
        let p = plan(&desired, &zone, &settings(Policy::Sync));
        assert_eq!(p.creates.len(), 1);
        assert_eq!(p.creates[0].name, format!("new.{ZONE}"));
        assert_eq!(p.creates[0].ttl, Some(300));
        assert_eq!(p.updates.len(), 1);
        assert_eq!(p.updates[0].old.current.name, format!("moved.{ZONE}"));
        assert_eq!(p.deletes.len(), 1);
        assert_eq!(p.deletes[0].current.name, format!("gone.{ZONE}"));
        assert_eq!(p.deletes[0].owner_records[0].name, format!("a-gone.{ZONE}"));
    }

    #[test]
    fn xdns_2_upsert_only_never_deletes_and_create_only_only_creates() {
        let mut zone = ZoneRecords::default();
        with(&mut zone, "moved", "192.0.2.2", Some("fleet-1"), false);
        with(&mut zone, "gone", "192.0.2.3", Some("fleet-1"), false);
        let desired = [ep("moved", &["192.0.2.20"]), ep("new", &["192.0.2.4"])];
        let p = plan(&desired, &zone, &settings(Policy::UpsertOnly));
        assert_eq!(
            (p.creates.len(), p.updates.len(), p.deletes.len()),
            (1, 1, 0)
        );
        let p = plan(&desired, &zone, &settings(Policy::CreateOnly));
        assert_eq!(
            (p.creates.len(), p.updates.len(), p.deletes.len()),
            (1, 0, 0)
        );
    }

    #[test]
    fn xdns_3_foreign_and_unowned_records_are_never_touched() {
        let mut zone = ZoneRecords::default();
        with(&mut zone, "theirs", "192.0.2.1", Some("cluster-2"), false);
        with(
            &mut zone,
            "theirs-old",
            "192.0.2.2",
            Some("cluster-2"),
            true,
        );
        with(&mut zone, "manual", "192.0.2.3", None, false);
        // A name another owner claimed without (yet) a record: no create either.
        zone.insert(
            format!("a-claimed.{ZONE}"),
            RecordType::Txt,
            300,
            owner("cluster-2", "claimed"),
        );
        let desired = [
            ep("theirs", &["192.0.2.9"]),
            ep("theirs-old", &["192.0.2.9"]),
            ep("manual", &["192.0.2.9"]),
            ep("claimed", &["192.0.2.9"]),
        ];
        let p = plan(&desired, &zone, &settings(Policy::Sync));
        assert!(p.is_empty(), "{p}");
        assert_eq!(p.left_alone.len(), 4);
        assert!(p.left_alone[0].reason.contains("cluster-2"));
        assert!(
            p.left_alone[2]
                .reason
                .contains("without an ownership record")
        );
        // Nothing desired: still nothing deleted that is not ours.
        let p = plan(&[], &zone, &settings(Policy::Sync));
        assert!(p.is_empty(), "{p}");
    }

    #[test]
    fn xdns_6_old_format_records_of_ours_are_adopted_and_deleted() {
        let mut zone = ZoneRecords::default();
        with(&mut zone, "legacy", "192.0.2.1", Some("fleet-1"), true);
        with(&mut zone, "legacy-gone", "192.0.2.2", Some("fleet-1"), true);
        let p = plan(
            &[ep("legacy", &["192.0.2.1"])],
            &zone,
            &settings(Policy::Sync),
        );
        assert_eq!(p.updates.len(), 1, "{p}");
        assert!(p.updates[0].old.old_format_only(&TxtNames::default()));
        assert_eq!(
            p.updates[0].old.owner_records[0].name,
            format!("legacy.{ZONE}")
        );
        assert_eq!(p.deletes.len(), 1);
        assert_eq!(p.deletes[0].current.name, format!("legacy-gone.{ZONE}"));
    }

    #[test]
    fn xdns_6_old_format_is_not_read_for_aaaa() {
        let mut zone = ZoneRecords::default();
        let fq = format!("v6.{ZONE}");
        zone.insert(fq.clone(), RecordType::Aaaa, 300, "2001:db8::1".into());
        zone.insert(fq.clone(), RecordType::Txt, 300, owner("fleet-1", "v6"));
        let p = plan(&[], &zone, &settings(Policy::Sync));
        assert!(p.deletes.is_empty(), "{p}");
    }

    #[test]
    fn xdns_10_filters_zone_and_xdns_4_managed_types_bound_the_plan() {
        let mut zone = ZoneRecords::default();
        with(&mut zone, "out", "192.0.2.1", Some("fleet-1"), false);
        let mut s = settings(Policy::Sync);
        s.filter = DomainFilter::new(
            &[format!("in.{ZONE}")],
            &[format!("no.in.{ZONE}")],
            None,
            None,
        )
        .unwrap();
        let desired = [
            ep("a.in", &["192.0.2.1"]),
            ep("x.no.in", &["192.0.2.1"]),
            Endpoint {
                name: "elsewhere.org".into(),
                ..ep("e", &["192.0.2.1"])
            },
        ];
        let p = plan(&desired, &zone, &s);
        assert_eq!(p.creates.len(), 1, "{p}");
        assert_eq!(p.creates[0].name, format!("a.in.{ZONE}"));
        assert!(
            p.deletes.is_empty(),
            "a record outside the filter is not ours to delete"
        );
        let mut s = settings(Policy::Sync);
        s.managed_types = [RecordType::Aaaa].into();
        assert!(plan(&[ep("a", &["192.0.2.1"])], &zone, &s).is_empty());
    }

    #[test]
    fn xdns_16_ttl_is_at_least_min_ttl_and_a_ttl_change_is_an_update() {
        let mut zone = ZoneRecords::default();
        with(&mut zone, "t", "192.0.2.1", Some("fleet-1"), false);
        let mut s = settings(Policy::Sync);
        s.min_ttl = 600;
        let mut want = ep("t", &["192.0.2.1"]);
        want.ttl = Some(60);
        let p = plan(&[want], &zone, &s);
        assert_eq!(p.updates.len(), 1);
        assert_eq!(p.updates[0].new.ttl, Some(600));
    }

    #[test]
    fn a_cname_is_not_created_over_other_records() {
        let mut zone = ZoneRecords::default();
        with(&mut zone, "busy", "192.0.2.1", None, false);
        let want = Endpoint {
            record_type: RecordType::Cname,
            targets: ["x.example".to_string()].into(),
            ..ep("busy", &[])
        };
        let p = plan(&[want], &zone, &settings(Policy::Sync));
        assert!(p.creates.is_empty());
        assert_eq!(p.left_alone.len(), 1);
    }
}
