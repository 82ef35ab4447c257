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
use super::{AnswerTable, SHARDS, Selection, Shard, Zone, exactly, name_hash, shard_of};
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
    /// The name records were last added to: records come in runs of one owner, and such a
    /// run then costs a comparison of bytes at hand, not a hash probe.
    last: Option<u32>,
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
    /// A builder with room for about `names` names and `records` records: a whole fleet's
    /// million names grown into an index rehashed it over and over.
    pub fn with_capacity(names: usize, records: usize) -> Self {
        Self {
            names: Vec::with_capacity(names * 32),
            nodes: Vec::with_capacity(names),
            index: HashTable::with_capacity(names),
            records: Vec::with_capacity(records * 24),
            added: Vec::with_capacity(records),
            ..Self::default()
        }
    }

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
            let (i, new) = self.find_or_insert(name_hash(name), name, zone);
            if off == 0 {
                self.last = Some(i);
            }
            if !new {
                break; // its ancestors exist already
            }
        }
    }

    fn find(&self, hash: u64, name: &[u8]) -> Option<u32> {
        let (names, nodes) = (&self.names, &self.nodes);
        self.index
            .find(hash, |&i| name_at(names, &nodes[i as usize]) == name)
            .copied()
    }

    /// The position of `name`, added in `zone` if it is not there; and whether it was added.
    /// One probe of the index either way.
    fn find_or_insert(&mut self, hash: u64, name: &[u8], zone: u16) -> (u32, bool) {
        match probe(&mut self.index, &self.names, &self.nodes, hash, name) {
            Entry::Occupied(e) => (*e.get(), false),
            Entry::Vacant(e) => {
                let i = push_name(&mut self.names, &mut self.nodes, hash, name, zone);
                e.insert(i);
                (i, true)
            }
        }
    }

    /// Adds `name`, in place of any name of the same bytes (whose records are then dropped).
    fn insert_name(&mut self, hash: u64, name: &[u8], zone: u16) -> u32 {
        let i = push_name(&mut self.names, &mut self.nodes, hash, name, zone);
        match probe(&mut self.index, &self.names, &self.nodes, hash, name) {
            Entry::Occupied(mut e) => {
                let old = std::mem::replace(e.get_mut(), i);
                self.nodes[old as usize].live = false;
                self.last = None;
            }
            Entry::Vacant(e) => {
                e.insert(i);
            }
        }
        i
    }

    /// The position of `owner`, made to exist (with its ancestors) if it does not.
    fn node(&mut self, zone: u16, owner: &[u8]) -> u32 {
        if let Some(last) = self.last
            && name_at(&self.names, &self.nodes[last as usize]) == owner
        {
            return last;
        }
        let (i, new) = self.find_or_insert(name_hash(owner), owner, zone);
        if new && owner.len() > 1 {
            self.ensure(zone, &owner[1 + owner[0] as usize..]);
        }
        self.last = Some(i);
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

    /// Encodes every name that is served, in the order the names were made, each appended
    /// to the buffer `sink` gives for its hash. A name's RRsets come in the order their first
    /// records were added; a record already in its set is dropped (and its additional records
    /// with it).
    fn encode_names(&self, sink: &mut impl EntrySink) {
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
            let out = sink.buffer(node.hash);
            let at = out.len();
            encode(
                out,
                name,
                node.zone,
                apex_len(&self.zones, node.zone),
                &sets[..used],
            );
            let records = sets[..used].iter().map(|s| s.starts.len()).sum();
            sink.placed(name, node.hash, at, records);
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
        // Each entry is encoded straight into its shard's arena, each arena reserved first
        // for about what it will hold (the added bytes and a little per record and name) and
        // cut to measure after; the index is made from the hashes the names already have.
        // (Encoding every entry back to back first and copying them into arenas made to
        // measure touched and copied the table's bytes twice more.)
        let mut sink = ShardSink {
            arenas: vec![Vec::new(); SHARDS],
            placed: vec![Vec::new(); SHARDS],
            records: vec![0; SHARDS],
        };
        let mut sizes = vec![0usize; SHARDS];
        let mut names = vec![0usize; SHARDS];
        for a in &self.added {
            let shard = shard_of(self.nodes[a.name as usize].hash);
            sizes[shard] += (a.record_len + a.extras_len) as usize + RESERVED_PER_RECORD;
        }
        for node in self.nodes.iter().filter(|n| n.live) {
            let shard = shard_of(node.hash);
            sizes[shard] += usize::from(node.len) + RESERVED_PER_NAME;
            names[shard] += 1;
        }
        for shard in 0..SHARDS {
            sink.arenas[shard].reserve_exact(sizes[shard]);
            sink.placed[shard].reserve_exact(names[shard]);
        }
        self.encode_names(&mut sink);
        let shards = sink
            .arenas
            .into_iter()
            .zip(sink.placed)
            .zip(sink.records)
            .map(|((arena, placed), records)| {
                Arc::new(Shard::from_placed(arena, &placed, records, &self.zones))
            })
            .collect();
        AnswerTable {
            shards: exactly(shards),
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
        let mut sink = EntriesSink::default();
        self.encode_names(&mut sink);
        sink.entries.into_iter()
    }
}

/// Bytes reserved in an arena per record added beyond its own (its owner pointer, offsets,
/// its set's header), and per name beyond its bytes: about what entries take, so that nearly
/// every arena is reserved once. A wrong guess costs a reallocation, never an answer.
const RESERVED_PER_RECORD: usize = 8;
const RESERVED_PER_NAME: usize = 24;

/// Where [`TableBuilder::encode_names`] puts entries.
trait EntrySink {
    /// The buffer the entry of the name of `hash` is appended to.
    fn buffer(&mut self, hash: u64) -> &mut Vec<u8>;
    /// The entry of `name` was appended to that buffer at `at`; it holds `records` records.
    fn placed(&mut self, name: &[u8], hash: u64, at: usize, records: usize);
}

/// Entries into the arenas of a table's shards, with where each starts and its hash.
struct ShardSink {
    arenas: Vec<Vec<u8>>,
    placed: Vec<Vec<(usize, u64)>>,
    records: Vec<usize>,
}

impl EntrySink for ShardSink {
    fn buffer(&mut self, hash: u64) -> &mut Vec<u8> {
        &mut self.arenas[shard_of(hash)]
    }

    fn placed(&mut self, _: &[u8], hash: u64, at: usize, records: usize) {
        let shard = shard_of(hash);
        self.placed[shard].push((at, hash));
        self.records[shard] += records;
    }
}

/// Each entry on its own, with its name.
#[derive(Default)]
struct EntriesSink {
    buffer: Vec<u8>,
    entries: Vec<(Box<[u8]>, Vec<u8>)>,
}

impl EntrySink for EntriesSink {
    fn buffer(&mut self, _: u64) -> &mut Vec<u8> {
        self.buffer.clear();
        &mut self.buffer
    }

    fn placed(&mut self, name: &[u8], _: u64, at: usize, _: usize) {
        self.entries.push((name.into(), self.buffer[at..].to_vec()));
    }
}

/// The length of zone `zone`'s apex (every name of a table is under its zone's apex).
pub(crate) fn apex_len(zones: &[Zone], zone: u16) -> usize {
    zones.get(zone as usize).map_or(0, |z| z.apex.len())
}

/// Appends a name's bytes and its row; returns its position.
fn push_name(names: &mut Vec<u8>, nodes: &mut Vec<Name>, hash: u64, name: &[u8], zone: u16) -> u32 {
    let i = nodes.len() as u32;
    let at = names.len() as u32;
    names.extend_from_slice(name);
    nodes.push(Name {
        hash,
        at,
        len: name.len() as u8,
        zone,
        addresses: false,
        live: true,
    });
    i
}

/// The index entry of `name`: where it is, or where it goes (one probe).
fn probe<'t>(
    index: &'t mut HashTable<u32>,
    names: &[u8],
    nodes: &[Name],
    hash: u64,
    name: &[u8],
) -> Entry<'t, u32> {
    index.entry(
        hash,
        |&j| name_at(names, &nodes[j as usize]) == name,
        |&j| nodes[j as usize].hash,
    )
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
