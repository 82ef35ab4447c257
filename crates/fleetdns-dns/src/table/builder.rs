//! Building a table: records are added in any order into nodes that can still grow, then
//! encoded once into entries ([`super::entry`]) and shards.

use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use rustc_hash::FxHashMap;

use super::entry::{SetData, encode};
use super::{AnswerTable, Selection, Zone, shards_from};
use crate::wire::{CLASS_IN, label_offsets, rtype, write_name_against};

/// The owner of every answer record: a pointer to the question name.
const OWNER: [u8; 2] = [0xc0, 12];

impl SetData {
    fn new(rtype: u16, selection: Selection) -> Self {
        Self {
            rtype,
            selection,
            wire: Vec::new(),
            starts: Vec::new(),
            extra: Vec::new(),
            extra_starts: Vec::new(),
        }
    }

    fn records(&self) -> impl Iterator<Item = &[u8]> {
        cut(&self.wire, &self.starts)
    }

    /// Appends a record (given without its owner) unless the set holds it already.
    fn push(&mut self, rec: &[u8]) -> bool {
        if self.records().any(|r| &r[OWNER.len()..] == rec) {
            return false;
        }
        self.starts.push(self.wire.len() as u32);
        self.wire.extend_from_slice(&OWNER);
        self.wire.extend_from_slice(rec);
        true
    }

    /// Appends an additional record unless the set holds it already.
    fn push_extra(&mut self, rec: &[u8]) {
        if cut(&self.extra, &self.extra_starts).any(|r| r == rec) {
            return;
        }
        self.extra_starts.push(self.extra.len() as u32);
        self.extra.extend_from_slice(rec);
    }
}

/// `bytes` cut at `starts`.
fn cut<'a>(bytes: &'a [u8], starts: &'a [u32]) -> impl Iterator<Item = &'a [u8]> {
    starts.iter().enumerate().map(move |(i, &s)| {
        let end = starts.get(i + 1).map_or(bytes.len(), |&e| e as usize);
        &bytes[s as usize..end]
    })
}

/// A name while the table is built.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BuildNode {
    zone: u16,
    sets: Vec<SetData>,
}

impl BuildNode {
    fn new(zone: u16) -> Self {
        Self {
            zone,
            sets: Vec::new(),
        }
    }

    fn encode(&self, name: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, name, self.zone, &self.sets);
        out
    }
}

/// Builds an [`AnswerTable`]: zones first, then records, each owner under a zone.
#[derive(Debug, Default)]
pub struct TableBuilder {
    nodes: FxHashMap<Box<[u8]>, BuildNode>,
    wildcards: FxHashMap<Box<[u8]>, BuildNode>,
    zones: Vec<Zone>,
    zone_index: FxHashMap<Box<[u8]>, u16>,
}

/// Parameters of a zone's SOA.
#[derive(Debug, Clone)]
pub struct SoaParams {
    pub mname: Vec<u8>,
    pub rname: Vec<u8>,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

impl TableBuilder {
    /// Adds a zone with its SOA and NS at the apex. Returns `None` if the apex is already served.
    pub fn add_zone(&mut self, apex: &[u8], soa: &SoaParams) -> Option<u16> {
        if self.zone_index.contains_key(apex) {
            return None;
        }
        let zone = u16::try_from(self.zones.len()).ok()?;
        let mut rdata = Vec::with_capacity(soa.mname.len() + soa.rname.len() + 20);
        rdata.extend_from_slice(&soa.mname);
        rdata.extend_from_slice(&soa.rname);
        for v in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        let soa_ttl = soa.minimum.min(300);
        self.zones.push(Zone {
            apex: apex.into(),
            soa: record(rtype::SOA, soa_ttl, &rdata).into(),
        });
        self.zone_index.insert(apex.into(), zone);
        // A node under another zone's apex moves to the new, deeper zone.
        self.nodes.insert(apex.into(), BuildNode::new(zone));
        self.add(zone, apex, rtype::SOA, soa_ttl, &rdata, Selection::Fixed);
        self.add(
            zone,
            apex,
            rtype::NS,
            soa.minimum,
            &soa.mname,
            Selection::Fixed,
        );
        Some(zone)
    }

    /// The deepest served zone holding `name` (the name itself may be the apex).
    pub fn zone_of(&self, name: &[u8]) -> Option<u16> {
        label_offsets(name).find_map(|off| self.zone_index.get(&name[off..]).copied())
    }

    /// The zone whose apex is exactly `apex`.
    pub fn zone_at(&self, apex: &[u8]) -> Option<u16> {
        self.zone_index.get(apex).copied()
    }

    /// Whether `owner` holds an A or AAAA record (a name some other rule answers already).
    pub fn has_addresses(&self, owner: &[u8]) -> bool {
        self.nodes.get(owner).is_some_and(|n| {
            n.sets
                .iter()
                .any(|r| r.rtype == rtype::A || r.rtype == rtype::AAAA)
        })
    }

    /// Adds an A or AAAA record at the wildcard `*.<suffix>` (IST-3, IST-10); `suffix` itself
    /// is made to exist (NODATA, never the wildcard's answer).
    pub fn add_wildcard_ip(
        &mut self,
        zone: u16,
        suffix: &[u8],
        ip: IpAddr,
        ttl: u32,
        selection: Selection,
    ) {
        self.ensure(zone, suffix);
        let (t, data): (u16, Vec<u8>) = match ip {
            IpAddr::V4(v4) => (rtype::A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (rtype::AAAA, v6.octets().to_vec()),
        };
        let node = self
            .wildcards
            .entry(suffix.into())
            .or_insert_with(|| BuildNode::new(zone));
        let idx = match node.sets.iter().position(|r| r.rtype == t) {
            Some(i) => i,
            None => {
                node.sets.push(SetData::new(t, selection));
                node.sets.len() - 1
            }
        };
        node.sets[idx].push(&record(t, ttl, &data));
    }

    /// Makes sure `owner` (and every name between it and the apex) exists.
    pub fn ensure(&mut self, zone: u16, owner: &[u8]) {
        let apex_len = self.zones[zone as usize].apex.len();
        for off in label_offsets(owner) {
            if owner.len() - off < apex_len {
                break;
            }
            match self.nodes.entry(owner[off..].into()) {
                Entry::Occupied(_) => break, // its ancestors exist already
                Entry::Vacant(v) => {
                    v.insert(BuildNode::new(zone));
                }
            }
        }
    }

    fn rrset(&mut self, zone: u16, owner: &[u8], rtype: u16, selection: Selection) -> &mut SetData {
        self.ensure(zone, owner);
        let node = self.nodes.get_mut(owner).expect("ensured above");
        let idx = match node.sets.iter().position(|r| r.rtype == rtype) {
            Some(i) => i,
            None => {
                node.sets.push(SetData::new(rtype, selection));
                node.sets.len() - 1
            }
        };
        &mut node.sets[idx]
    }

    /// Adds one record (duplicates within an RRset are dropped).
    pub fn add(
        &mut self,
        zone: u16,
        owner: &[u8],
        rtype: u16,
        ttl: u32,
        rdata: &[u8],
        selection: Selection,
    ) {
        let rec = record(rtype, ttl, rdata);
        self.rrset(zone, owner, rtype, selection).push(&rec);
    }

    /// Adds an A or AAAA record.
    pub fn add_ip(&mut self, zone: u16, owner: &[u8], ip: IpAddr, ttl: u32, selection: Selection) {
        match ip {
            IpAddr::V4(v4) => self.add(zone, owner, rtype::A, ttl, &v4.octets(), selection),
            IpAddr::V6(v6) => self.add(zone, owner, rtype::AAAA, ttl, &v6.octets(), selection),
        }
    }

    /// Adds an SRV record whose target is compressed against the owner, and the target's
    /// addresses to the additional section.
    #[allow(clippy::too_many_arguments)]
    pub fn add_srv(
        &mut self,
        zone: u16,
        owner: &[u8],
        ttl: u32,
        weight: u16,
        port: u16,
        target: &[u8],
        target_ips: &[IpAddr],
    ) {
        let mut rdata = Vec::with_capacity(6 + target.len());
        rdata.extend_from_slice(&0u16.to_be_bytes()); // priority 0 (K8S-8)
        rdata.extend_from_slice(&weight.to_be_bytes());
        rdata.extend_from_slice(&port.to_be_bytes());
        write_name_against(&mut rdata, target, owner, crate::wire::HEADER_LEN);
        let mut extra: Vec<Vec<u8>> = Vec::new();
        for ip in target_ips {
            let mut rr = Vec::with_capacity(target.len() + 26);
            write_name_against(&mut rr, target, owner, crate::wire::HEADER_LEN);
            let (t, data): (u16, Vec<u8>) = match ip {
                IpAddr::V4(v4) => (rtype::A, v4.octets().to_vec()),
                IpAddr::V6(v6) => (rtype::AAAA, v6.octets().to_vec()),
            };
            rr.extend_from_slice(&record(t, ttl, &data));
            extra.push(rr);
        }
        let set = self.rrset(zone, owner, rtype::SRV, Selection::Fixed);
        let rec = record(rtype::SRV, ttl, &rdata);
        if set.push(&rec) {
            for e in &extra {
                set.push_extra(e);
            }
        }
    }

    /// Adds a TXT record holding one string.
    pub fn add_txt(&mut self, zone: u16, owner: &[u8], ttl: u32, text: &str) {
        let bytes = &text.as_bytes()[..text.len().min(255)];
        let mut rdata = Vec::with_capacity(bytes.len() + 1);
        rdata.push(bytes.len() as u8);
        rdata.extend_from_slice(bytes);
        self.add(zone, owner, rtype::TXT, ttl, &rdata, Selection::Fixed);
    }

    pub fn build(self, version: u64) -> AnswerTable {
        let wildcards = self
            .wildcards
            .iter()
            .map(|(suffix, n)| (suffix.clone(), n.encode(suffix).into_boxed_slice()))
            .collect();
        let shards = shards_from(self.nodes.into_iter().map(|(name, n)| {
            let e = n.encode(&name);
            (name, e)
        }));
        AnswerTable {
            shards,
            wildcards: Arc::new(wildcards),
            zones: self.zones.into(),
            zone_index: Arc::new(self.zone_index),
            rotation: AtomicUsize::new(0),
            version,
        }
    }

    /// A builder for part of `table`: its zones (ids and apexes as in the table), no names.
    /// What it builds is handed back by [`TableBuilder::into_entries`].
    pub(crate) fn part_of(table: &AnswerTable) -> Self {
        Self {
            zones: table.zones.to_vec(),
            zone_index: (*table.zone_index).clone(),
            ..Self::default()
        }
    }

    /// Every name built, encoded. Wildcards are not included (a part never holds any).
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (Box<[u8]>, Vec<u8>)> {
        self.nodes.into_iter().map(|(name, n)| {
            let e = n.encode(&name);
            (name, e)
        })
    }
}

/// type, class IN, TTL, RDLENGTH, RDATA.
fn record(rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(10 + rdata.len());
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&CLASS_IN.to_be_bytes());
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(rdata);
    r
}
