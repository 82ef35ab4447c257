//! Building a table: records are added in any order, then grouped by name and encoded once
//! into entries ([`super::entry`]) and shards.
//!
//! While a table is built nothing is allocated per name or per record: names are written back
//! to back into one buffer (found through an index of positions), records into another, each
//! with a small row saying whose it is. A whole fleet adds a million names and a few million
//! records; a map of growing vectors per name spent most of a whole compile in the allocator,
//! allocating them and freeing them again.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rustc_hash::FxHashMap;

use super::entry::{SetData, encode};
use super::{AnswerTable, SHARDS, Selection, Zone, name_hash, shard_of, shards_from_arenas};
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

    /// Empties the set for another name, keeping its buffers.
    fn reset(&mut self, rtype: u16, selection: Selection) {
        self.rtype = rtype;
        self.selection = selection;
        self.wire.clear();
        self.starts.clear();
        self.extra.clear();
        self.extra_starts.clear();
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

/// A wildcard while the table is built (a handful per table, mesh zones only).
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

    fn encode(&self, name: &[u8], zones: &[Zone]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(
            &mut out,
            name,
            self.zone,
            apex_len(zones, self.zone),
            &self.sets,
        );
        out
    }
}

/// A name while the table is built: where it is in [`TableBuilder::names`], and its zone.
#[derive(Debug, Clone, Copy)]
struct Name {
    hash: u64,
    at: u32,
    len: u8,
    zone: u16,
    /// It holds an A or AAAA record.
    addresses: bool,
    /// False once a new zone's apex replaced it (its records are not served).
    live: bool,
}

/// One record as added: its name, its type and set, and where its bytes are in
/// [`TableBuilder::records`]: the record (type .. RDATA), then its additional records, each
/// preceded by its length (two bytes).
#[derive(Debug, Clone, Copy)]
struct Added {
    name: u32,
    rtype: u16,
    selection: Selection,
    at: usize,
    record_len: u32,
    extras_len: u32,
}

/// Builds an [`AnswerTable`]: zones first, then records, each owner under a zone.
#[derive(Debug, Default)]
pub struct TableBuilder {
    /// Every name's bytes, back to back.
    names: Vec<u8>,
    nodes: Vec<Name>,
    /// Positions in `nodes`, by name.
    index: HashTable<u32>,
    /// Every record's bytes, in the order added (see [`Added`]).
    records: Vec<u8>,
    added: Vec<Added>,
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
        self.insert_name(name_hash(apex), apex, zone);
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
        self.find(name_hash(owner), owner)
            .is_some_and(|i| self.nodes[i as usize].addresses)
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
            let name = &owner[off..];
            let hash = name_hash(name);
            if self.find(hash, name).is_some() {
                break; // its ancestors exist already
            }
            self.insert_name(hash, name, zone);
        }
    }

    fn find(&self, hash: u64, name: &[u8]) -> Option<u32> {
        let (names, nodes) = (&self.names, &self.nodes);
        self.index
            .find(hash, |&i| name_at(names, &nodes[i as usize]) == name)
            .copied()
    }

    /// Adds `name`, in place of any name of the same bytes (whose records are then dropped).
    fn insert_name(&mut self, hash: u64, name: &[u8], zone: u16) -> u32 {
        let i = self.nodes.len() as u32;
        let at = self.names.len() as u32;
        self.names.extend_from_slice(name);
        self.nodes.push(Name {
            hash,
            at,
            len: name.len() as u8,
            zone,
            addresses: false,
            live: true,
        });
        let Self {
            names,
            nodes,
            index,
            ..
        } = self;
        match index.entry(
            hash,
            |&j| name_at(names, &nodes[j as usize]) == name,
            |&j| nodes[j as usize].hash,
        ) {
            Entry::Occupied(mut e) => {
                let old = std::mem::replace(e.get_mut(), i);
                nodes[old as usize].live = false;
            }
            Entry::Vacant(e) => {
                e.insert(i);
            }
        }
        i
    }

    /// The position of `owner`, made to exist (with its ancestors) if it does not.
    fn node(&mut self, zone: u16, owner: &[u8]) -> u32 {
        let hash = name_hash(owner);
        if let Some(i) = self.find(hash, owner) {
            return i;
        }
        let i = self.insert_name(hash, owner, zone);
        if owner.len() > 1 {
            self.ensure(zone, &owner[1 + owner[0] as usize..]);
        }
        i
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
        let name = self.node(zone, owner);
        if rtype == rtype::A || rtype == rtype::AAAA {
            self.nodes[name as usize].addresses = true;
        }
        let at = self.records.len();
        write_record(&mut self.records, rtype, ttl, rdata);
        self.added.push(Added {
            name,
            rtype,
            selection,
            at,
            record_len: (self.records.len() - at) as u32,
            extras_len: 0,
        });
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
        let name = self.node(zone, owner);
        let out = &mut self.records;
        let at = out.len();
        out.extend_from_slice(&rtype::SRV.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        let rdlength_at = out.len();
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&0u16.to_be_bytes()); // priority 0 (K8S-8)
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&port.to_be_bytes());
        let target_at = out.len();
        write_name_against(out, target, owner, crate::wire::HEADER_LEN);
        let target_end = out.len();
        let rdlength = (target_end - rdlength_at - 2) as u16;
        out[rdlength_at..rdlength_at + 2].copy_from_slice(&rdlength.to_be_bytes());
        // Each additional record: the target as written above, then the address record.
        for ip in target_ips {
            let len_at = out.len();
            out.extend_from_slice(&[0, 0]);
            out.extend_from_within(target_at..target_end);
            match ip {
                IpAddr::V4(v4) => write_record(out, rtype::A, ttl, &v4.octets()),
                IpAddr::V6(v6) => write_record(out, rtype::AAAA, ttl, &v6.octets()),
            }
            let len = (out.len() - len_at - 2) as u16;
            out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
        }
        self.added.push(Added {
            name,
            rtype: rtype::SRV,
            selection: Selection::Fixed,
            at,
            record_len: (target_end - at) as u32,
            extras_len: (out.len() - target_end) as u32,
        });
    }

    /// Adds a TXT record holding one string.
    pub fn add_txt(&mut self, zone: u16, owner: &[u8], ttl: u32, text: &str) {
        let bytes = &text.as_bytes()[..text.len().min(255)];
        let mut rdata = Vec::with_capacity(bytes.len() + 1);
        rdata.push(bytes.len() as u8);
        rdata.extend_from_slice(bytes);
        self.add(zone, owner, rtype::TXT, ttl, &rdata, Selection::Fixed);
    }

    /// Encodes every name that is served, in the order the names were made, handing each to
    /// `emit` with its hash. A name's RRsets come in the order their first records were
    /// added; a record already in its set is dropped (and its additional records with it).
    fn encode_names(&self, mut emit: impl FnMut(&[u8], u64, &[u8])) {
        // The records of each name, in the order added (a counting sort by name).
        let mut first = vec![0u32; self.nodes.len() + 1];
        for a in &self.added {
            first[a.name as usize + 1] += 1;
        }
        for i in 1..first.len() {
            first[i] += first[i - 1];
        }
        let mut next = first.clone();
        let mut order = vec![0u32; self.added.len()];
        for (i, a) in self.added.iter().enumerate() {
            let slot = &mut next[a.name as usize];
            order[*slot as usize] = i as u32;
            *slot += 1;
        }
        let mut sets: Vec<SetData> = Vec::new();
        let mut entry = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.live {
                continue;
            }
            let mut used = 0;
            for &k in &order[first[i] as usize..first[i + 1] as usize] {
                let a = &self.added[k as usize];
                let set = match sets[..used].iter().position(|s| s.rtype == a.rtype) {
                    Some(j) => j,
                    None => {
                        if used == sets.len() {
                            sets.push(SetData::new(a.rtype, a.selection));
                        } else {
                            sets[used].reset(a.rtype, a.selection);
                        }
                        used += 1;
                        used - 1
                    }
                };
                let record_end = a.at + a.record_len as usize;
                if sets[set].push(&self.records[a.at..record_end]) {
                    let mut extras = &self.records[record_end..record_end + a.extras_len as usize];
                    while let [h, l, rest @ ..] = extras {
                        let len = u16::from_be_bytes([*h, *l]) as usize;
                        sets[set].push_extra(&rest[..len]);
                        extras = &rest[len..];
                    }
                }
            }
            let name = name_at(&self.names, node);
            entry.clear();
            encode(
                &mut entry,
                name,
                node.zone,
                apex_len(&self.zones, node.zone),
                &sets[..used],
            );
            emit(name, node.hash, &entry);
        }
    }

    pub fn build(self, version: u64) -> AnswerTable {
        let wildcards = self
            .wildcards
            .iter()
            .map(|(suffix, n)| {
                let entry = n.encode(suffix, &self.zones).into_boxed_slice();
                (suffix.clone(), entry)
            })
            .collect();
        // Every entry back to back first, then each shard's arena made to measure and filled:
        // arenas grown by pushes were copied about twice over.
        let mut all = Vec::with_capacity(self.records.len() + self.names.len() * 2);
        let mut placed: Vec<(u16, usize, u32)> = Vec::with_capacity(self.nodes.len());
        let mut sizes = vec![0usize; SHARDS];
        self.encode_names(|_, hash, entry| {
            let shard = shard_of(hash);
            sizes[shard] += entry.len();
            placed.push((shard as u16, all.len(), entry.len() as u32));
            all.extend_from_slice(entry);
        });
        let mut arenas: Vec<Vec<u8>> = sizes.into_iter().map(Vec::with_capacity).collect();
        for (shard, at, len) in placed {
            arenas[shard as usize].extend_from_slice(&all[at..at + len as usize]);
        }
        drop(all);
        AnswerTable {
            shards: shards_from_arenas(arenas, &self.zones),
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
        let mut out = Vec::new();
        self.encode_names(|name, _, entry| out.push((name.into(), entry.to_vec())));
        out.into_iter()
    }
}

/// The length of zone `zone`'s apex (every name of a table is under its zone's apex).
pub(crate) fn apex_len(zones: &[Zone], zone: u16) -> usize {
    zones.get(zone as usize).map_or(0, |z| z.apex.len())
}

/// The bytes of a name.
fn name_at<'a>(names: &'a [u8], name: &Name) -> &'a [u8] {
    &names[name.at as usize..name.at as usize + name.len as usize]
}

/// type, class IN, TTL, RDLENGTH, RDATA.
fn record(rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(10 + rdata.len());
    write_record(&mut r, rtype, ttl, rdata);
    r
}

/// Appends type, class IN, TTL, RDLENGTH, RDATA to `out`.
fn write_record(out: &mut Vec<u8>, rtype: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}
