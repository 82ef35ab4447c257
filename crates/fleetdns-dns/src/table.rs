//! Answer tables: each registry snapshot compiles into one immutable [`AnswerTable`] that holds
//! every answer already encoded. A query does one hash lookup on its lower-cased name and copies
//! bytes; nothing is computed per query that could be computed per snapshot.

use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::FxHashMap;

use crate::wire::{CLASS_IN, label_offsets, rtype, write_name_against};

/// How the records of an RRset are picked per query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// All records, in compiled order.
    Fixed,
    /// All records, starting at a position that moves with every query.
    Rotate,
    /// One record, moving with every query.
    One,
}

/// One encoded RRset at a name.
#[derive(Debug)]
pub struct RrSet {
    pub rtype: u16,
    pub selection: Selection,
    /// Every record preceded by its owner, which is always the question name, written as a
    /// pointer to offset 12; then type, class, TTL, RDLENGTH, RDATA. Back to back: an answer
    /// that fits is one copy (two when rotated).
    pub wire: Vec<u8>,
    /// Where each record starts in `wire`.
    pub starts: Vec<u32>,
    /// Whole records for the additional section (owners compressed against the question),
    /// back to back.
    pub extra: Vec<u8>,
    /// Where each additional record starts in `extra`.
    pub extra_starts: Vec<u32>,
}

/// The owner of every answer record: a pointer to the question name.
const OWNER: [u8; 2] = [0xc0, 12];

/// Part `i` of `bytes` cut at `starts`.
fn part<'a>(bytes: &'a [u8], starts: &[u32], i: usize) -> &'a [u8] {
    let end = starts.get(i + 1).map_or(bytes.len(), |&e| e as usize);
    &bytes[starts[i] as usize..end]
}

impl RrSet {
    /// Records in the set.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Record `i` with its owner pointer.
    pub fn record(&self, i: usize) -> &[u8] {
        part(&self.wire, &self.starts, i)
    }

    /// Additional records in the set.
    pub fn extra_len(&self) -> usize {
        self.extra_starts.len()
    }

    /// Additional record `i`.
    pub fn extra_record(&self, i: usize) -> &[u8] {
        part(&self.extra, &self.extra_starts, i)
    }

    /// Appends a record (given without its owner) unless the set holds it already.
    fn push(&mut self, rec: &[u8]) -> bool {
        if (0..self.len()).any(|i| &self.record(i)[OWNER.len()..] == rec) {
            return false;
        }
        self.starts.push(self.wire.len() as u32);
        self.wire.extend_from_slice(&OWNER);
        self.wire.extend_from_slice(rec);
        true
    }

    /// Appends an additional record unless the set holds it already.
    fn push_extra(&mut self, rec: &[u8]) {
        if (0..self.extra_len()).any(|i| self.extra_record(i) == rec) {
            return;
        }
        self.extra_starts.push(self.extra.len() as u32);
        self.extra.extend_from_slice(rec);
    }

    fn shrink(&mut self) {
        self.wire.shrink_to_fit();
        self.starts.shrink_to_fit();
        self.extra.shrink_to_fit();
        self.extra_starts.shrink_to_fit();
    }
}

/// A name in a served zone. An empty `rrsets` is an empty non-terminal: NODATA, never NXDOMAIN.
#[derive(Debug)]
pub struct Node {
    pub zone: u16,
    pub rrsets: Vec<RrSet>,
}

/// A served zone: what negative answers need.
#[derive(Debug)]
pub struct Zone {
    /// Lower-case wire name of the apex.
    pub apex: Box<[u8]>,
    /// The SOA record without its owner (type .. RDATA), TTL = min(minimum, 300) (K8S-18).
    pub soa: Box<[u8]>,
    /// Queries answered in this zone; shared with the next table's zone of the same name
    /// (see [`AnswerTable::attach_counters`]), so the count survives table swaps.
    pub requests: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The name exists in `zone`.
    Node(&'a Node, &'a Zone),
    /// The name is in `zone` but does not exist.
    NxDomain(&'a Zone),
    /// The name is in no served zone.
    NotOurs,
}

/// Counts of what a table holds, for logs and `check-config`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub zones: usize,
    pub names: usize,
    pub records: usize,
}

/// One compiled snapshot.
#[derive(Debug)]
pub struct AnswerTable {
    nodes: FxHashMap<Box<[u8]>, Node>,
    /// Wildcard owners (`*.<suffix>`, IST-3/IST-10) keyed by the suffix; looked at only after an
    /// exact miss, one hash probe per label of the name.
    wildcards: FxHashMap<Box<[u8]>, Node>,
    zones: Vec<Zone>,
    zone_index: FxHashMap<Box<[u8]>, u16>,
    rotation: AtomicUsize,
    /// The registry snapshot version this table was built from.
    pub version: u64,
}

impl AnswerTable {
    /// Finds a lower-cased wire name.
    pub fn lookup(&self, name: &[u8]) -> Lookup<'_> {
        if let Some(node) = self.nodes.get(name) {
            return Lookup::Node(node, &self.zones[node.zone as usize]);
        }
        if !self.wildcards.is_empty() {
            // IST-3: at least one label more than the suffix, never the suffix itself.
            for off in label_offsets(name).skip(1) {
                if let Some(node) = self.wildcards.get(&name[off..]) {
                    return Lookup::Node(node, &self.zones[node.zone as usize]);
                }
            }
        }
        // The longest served zone containing the name (K8S-20: junk under a zone is a cheap NXDOMAIN).
        for off in label_offsets(name) {
            if let Some(&z) = self.zone_index.get(&name[off..]) {
                return Lookup::NxDomain(&self.zones[z as usize]);
            }
        }
        Lookup::NotOurs
    }

    /// Gives every zone its request counter from `metrics` (by zone name). Call before the
    /// table is shared.
    pub fn attach_counters(&mut self, metrics: &crate::metrics::Metrics) {
        for zone in &mut self.zones {
            zone.requests = Some(metrics.zone_counter(&crate::wire::display_name(&zone.apex)));
        }
    }

    /// A number that moves with every call, for rotating answers.
    pub fn next_rotation(&self) -> usize {
        self.rotation.fetch_add(1, Ordering::Relaxed)
    }

    pub fn stats(&self) -> TableStats {
        TableStats {
            zones: self.zones.len(),
            names: self.nodes.len(),
            records: self
                .nodes
                .values()
                .flat_map(|n| n.rrsets.iter())
                .map(RrSet::len)
                .sum(),
        }
    }

    /// Zone apexes, as dotted names.
    pub fn zone_names(&self) -> Vec<String> {
        self.zones
            .iter()
            .map(|z| crate::wire::display_name(&z.apex))
            .collect()
    }
}

/// Builds an [`AnswerTable`]: zones first, then records, each owner under a zone.
#[derive(Debug, Default)]
pub struct TableBuilder {
    nodes: FxHashMap<Box<[u8]>, Node>,
    wildcards: FxHashMap<Box<[u8]>, Node>,
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
            requests: None,
            apex: apex.into(),
            soa: record(rtype::SOA, soa_ttl, &rdata).into(),
        });
        self.zone_index.insert(apex.into(), zone);
        // A node under another zone's apex moves to the new, deeper zone.
        self.nodes.insert(
            apex.into(),
            Node {
                zone,
                rrsets: Vec::new(),
            },
        );
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
            n.rrsets
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
        let node = self.wildcards.entry(suffix.into()).or_insert_with(|| Node {
            zone,
            rrsets: Vec::new(),
        });
        let idx = match node.rrsets.iter().position(|r| r.rtype == t) {
            Some(i) => i,
            None => {
                node.rrsets.push(RrSet {
                    rtype: t,
                    selection,
                    wire: Vec::new(),
                    starts: Vec::new(),
                    extra: Vec::new(),
                    extra_starts: Vec::new(),
                });
                node.rrsets.len() - 1
            }
        };
        node.rrsets[idx].push(&record(t, ttl, &data));
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
                    v.insert(Node {
                        zone,
                        rrsets: Vec::new(),
                    });
                }
            }
        }
    }

    fn rrset(&mut self, zone: u16, owner: &[u8], rtype: u16, selection: Selection) -> &mut RrSet {
        self.ensure(zone, owner);
        let node = self.nodes.get_mut(owner).expect("ensured above");
        let idx = match node.rrsets.iter().position(|r| r.rtype == rtype) {
            Some(i) => i,
            None => {
                node.rrsets.push(RrSet {
                    rtype,
                    selection,
                    wire: Vec::new(),
                    starts: Vec::new(),
                    extra: Vec::new(),
                    extra_starts: Vec::new(),
                });
                node.rrsets.len() - 1
            }
        };
        &mut node.rrsets[idx]
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

    pub fn build(mut self, version: u64) -> AnswerTable {
        for node in self.nodes.values_mut().chain(self.wildcards.values_mut()) {
            for set in &mut node.rrsets {
                set.shrink();
            }
        }
        AnswerTable {
            nodes: self.nodes,
            wildcards: self.wildcards,
            zones: self.zones,
            zone_index: self.zone_index,
            rotation: AtomicUsize::new(0),
            version,
        }
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
