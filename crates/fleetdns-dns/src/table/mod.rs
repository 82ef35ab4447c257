//! Answer tables: each registry snapshot compiles into one immutable [`AnswerTable`] that holds
//! every answer already encoded. A query does one hash lookup on its lower-cased name and copies
//! bytes; nothing is computed per query that could be computed per snapshot.
//!
//! A table is split by name hash into [`SHARDS`] shards, each an arena of encoded entries
//! ([`entry`]) with an index of offsets. A change makes a new table that shares every shard it
//! does not touch with the previous one ([`AnswerTable::with_changes`]), so installing a change
//! copies what changed, not the fleet.

mod builder;
mod entry;

use std::hash::Hasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashTable;
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

pub use builder::{SoaParams, TableBuilder};
pub(crate) use entry::encode as encode_entry;
pub use entry::{Node, RrSet, RrSets, Selection};
use entry::{entry_len, entry_name, entry_zone};

use crate::wire::{label_offsets, rtype};

/// Shards per table: a power of two. A change of one service touches a handful of them.
pub const SHARDS: usize = 4096;

/// The hash a name is stored under.
fn name_hash(name: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(name);
    h.finish()
}

/// The shard of a hash: bits the index's own probing does not use (it takes the low bits
/// for the position and the top seven for its tags).
fn shard_of(hash: u64) -> usize {
    (hash >> 40) as usize & (SHARDS - 1)
}

/// A served zone: what negative answers need.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Lower-case wire name of the apex.
    pub apex: Box<[u8]>,
    /// The SOA record without its owner (type .. RDATA), TTL = min(minimum, 300) (K8S-18).
    pub soa: Box<[u8]>,
}

/// Bytes from the end of an SOA record (or RDATA) to its serial: serial, refresh, retry,
/// expire, minimum.
const SOA_SERIAL_FROM_END: usize = 20;

impl Zone {
    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        let at = self.soa.len() - SOA_SERIAL_FROM_END;
        u32::from_be_bytes([
            self.soa[at],
            self.soa[at + 1],
            self.soa[at + 2],
            self.soa[at + 3],
        ])
    }
}

/// What a lookup found.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// The name exists in `zone`.
    Node(Node<'a>, &'a Zone),
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

/// Encoded entries back to back, and an index of where each starts.
#[derive(Debug, Default)]
struct Shard {
    arena: Vec<u8>,
    index: Index,
    records: usize,
}

/// Where each entry of a shard starts: in two bytes when the arena is within 64 KiB (nearly
/// every shard: ~20 KiB at a million names), in four otherwise.
#[derive(Debug)]
enum Index {
    Narrow(HashTable<u16>),
    Wide(HashTable<u32>),
}

impl Default for Index {
    fn default() -> Self {
        Index::Narrow(HashTable::new())
    }
}

/// An offset into a shard's arena as an index stores it.
trait Offset: Copy {
    fn at(self) -> usize;
    fn of(at: usize) -> Self;
}

impl Offset for u16 {
    #[inline]
    fn at(self) -> usize {
        self as usize
    }
    fn of(at: usize) -> Self {
        at as u16
    }
}

impl Offset for u32 {
    #[inline]
    fn at(self) -> usize {
        self as usize
    }
    fn of(at: usize) -> Self {
        at as u32
    }
}

/// The entry of `name` in `arena`, found through `index`.
#[inline]
fn probe<'a, T: Offset>(
    index: &HashTable<T>,
    arena: &'a [u8],
    hash: u64,
    name: &[u8],
    zones: &[Zone],
) -> Option<&'a [u8]> {
    index
        .find(hash, |&off| is_entry_of(&arena[off.at()..], name, zones))
        .map(|&off| &arena[off.at()..])
}

/// An index of the entries of `arena` at the offsets of `placed`, each with its name's hash.
fn index_of<T: Offset>(arena: &[u8], placed: &[(usize, u64)], zones: &[Zone]) -> HashTable<T> {
    // Made with room for every entry, so the hasher below never runs.
    let mut index = HashTable::with_capacity(placed.len());
    for &(off, hash) in placed {
        debug_assert_eq!(
            hash,
            name_hash(full_name(&arena[off..], zones, &mut [0; 256]))
        );
        index.insert_unique(hash, T::of(off), |&o: &T| {
            name_hash(full_name(&arena[o.at()..], zones, &mut [0; 256]))
        });
    }
    index
}

/// Whether `entry` is the entry of `name`: its labels, then its zone's apex.
#[inline]
fn is_entry_of(entry: &[u8], name: &[u8], zones: &[Zone]) -> bool {
    let relative = entry_name(entry);
    let Some(zone) = zones.get(entry_zone(entry) as usize) else {
        return false;
    };
    name.len() == relative.len() + zone.apex.len()
        && name[..relative.len()] == *relative
        && name[relative.len()..] == *zone.apex
}

/// The whole name of `entry` (its labels and its zone's apex), written into `buf`.
fn full_name<'b>(entry: &[u8], zones: &[Zone], buf: &'b mut [u8; 256]) -> &'b [u8] {
    let relative = entry_name(entry);
    let apex = zones
        .get(entry_zone(entry) as usize)
        .map_or(&[][..], |z| &z.apex);
    let len = (relative.len() + apex.len()).min(buf.len());
    buf[..relative.len()].copy_from_slice(relative);
    buf[relative.len()..len].copy_from_slice(&apex[..len - relative.len()]);
    &buf[..len]
}

impl Shard {
    #[inline]
    fn find(&self, hash: u64, name: &[u8], zones: &[Zone]) -> Option<&[u8]> {
        match &self.index {
            Index::Narrow(index) => probe(index, &self.arena, hash, name, zones),
            Index::Wide(index) => probe(index, &self.arena, hash, name, zones),
        }
    }

    /// Every entry, each cut to its length.
    fn entries(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= self.arena.len() {
                return None;
            }
            let len = entry_len(&self.arena[at..]);
            let e = &self.arena[at..at + len];
            at += len;
            Some(e)
        })
    }

    /// A shard of entries of `zones` written back to back into `arena` (each name once).
    fn from_arena(arena: Vec<u8>, zones: &[Zone]) -> Self {
        let mut placed = Vec::new();
        let mut records = 0;
        let mut buf = [0; 256];
        let mut at = 0;
        while at < arena.len() {
            let e = &arena[at..];
            placed.push((at, name_hash(full_name(e, zones, &mut buf))));
            records += Node::new(e).records();
            at += entry_len(e);
        }
        Self::from_placed(arena, &placed, records, zones)
    }

    /// A shard of the entries of `zones` in `arena` at the offsets of `placed`, each with its
    /// name's hash, `records` records in all: what a builder knows of what it encoded.
    fn from_placed(
        mut arena: Vec<u8>,
        placed: &[(usize, u64)],
        records: usize,
        zones: &[Zone],
    ) -> Self {
        arena.shrink_to_fit();
        let index = if arena.len() <= usize::from(u16::MAX) + 1 {
            Index::Narrow(index_of(&arena, placed, zones))
        } else {
            Index::Wide(index_of(&arena, placed, zones))
        };
        Shard {
            arena,
            index,
            records,
        }
    }

    fn names(&self) -> usize {
        match &self.index {
            Index::Narrow(index) => index.len(),
            Index::Wide(index) => index.len(),
        }
    }

    fn bytes(&self) -> usize {
        self.arena.capacity()
            + match &self.index {
                Index::Narrow(index) => index.capacity() * (std::mem::size_of::<u16>() + 1),
                Index::Wide(index) => index.capacity() * (std::mem::size_of::<u32>() + 1),
            }
    }
}

/// Encoded wildcard entries by suffix.
type Wildcards = FxHashMap<Box<[u8]>, Box<[u8]>>;

/// One compiled snapshot.
#[derive(Debug)]
pub struct AnswerTable {
    /// Exactly [`SHARDS`]: indexing by a masked hash needs no bounds check.
    shards: Box<[Arc<Shard>; SHARDS]>,
    /// Wildcard owners (`*.<suffix>`, IST-3/IST-10) keyed by the suffix, as encoded entries
    /// (named by the suffix); looked at only after an exact miss, one hash probe per label.
    wildcards: Arc<Wildcards>,
    zones: Arc<[Zone]>,
    zone_index: Arc<FxHashMap<Box<[u8]>, u16>>,
    rotation: AtomicUsize,
    /// The registry snapshot version this table was built from.
    pub version: u64,
}

/// A name to put into a table (its encoded entry) or to take out (`None`).
pub(crate) type Change = (Box<[u8]>, Option<Vec<u8>>);

impl AnswerTable {
    /// Finds a lower-cased wire name.
    pub fn lookup(&self, name: &[u8]) -> Lookup<'_> {
        let hash = name_hash(name);
        if let Some(e) = self.shards[shard_of(hash)].find(hash, name, &self.zones) {
            let node = Node::new(e);
            return Lookup::Node(node, &self.zones[node.zone() as usize]);
        }
        if !self.wildcards.is_empty() {
            // IST-3: at least one label more than the suffix, never the suffix itself.
            for off in label_offsets(name).skip(1) {
                if let Some(e) = self.wildcards.get(&name[off..]) {
                    let node = Node::new(e);
                    return Lookup::Node(node, &self.zones[node.zone() as usize]);
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

    /// The node at exactly `name` (no wildcard), if any.
    pub fn node(&self, name: &[u8]) -> Option<Node<'_>> {
        let hash = name_hash(name);
        self.shards[shard_of(hash)]
            .find(hash, name, &self.zones)
            .map(Node::new)
    }

    /// A number that moves with every call, for rotating answers.
    pub fn next_rotation(&self) -> usize {
        self.rotation.fetch_add(1, Ordering::Relaxed)
    }

    pub fn stats(&self) -> TableStats {
        let mut stats = TableStats {
            zones: self.zones.len(),
            ..TableStats::default()
        };
        for s in self.shards.iter() {
            stats.names += s.names();
            stats.records += s.records;
        }
        for e in self.wildcards.values() {
            stats.records += Node::new(e).records();
        }
        stats
    }

    /// Bytes of encoded entries (names and records) and their indexes.
    pub fn bytes(&self) -> usize {
        let wildcards: usize = self.wildcards.values().map(|e| e.len()).sum();
        self.shards.iter().map(|s| s.bytes()).sum::<usize>() + wildcards
    }

    /// The served zones.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone whose apex is exactly `apex`.
    pub fn zone_at(&self, apex: &[u8]) -> Option<u16> {
        self.zone_index.get(apex).copied()
    }

    /// Zone apexes, as dotted names.
    pub fn zone_names(&self) -> Vec<String> {
        self.zones
            .iter()
            .map(|z| crate::wire::display_name(&z.apex))
            .collect()
    }

    /// Every exact name, for tests and tools (not the query path).
    pub fn names(&self) -> impl Iterator<Item = Node<'_>> {
        self.shards.iter().flat_map(|s| s.entries()).map(Node::new)
    }

    /// Where each shard lives, to tell shared shards apart in tests.
    #[cfg(test)]
    pub(crate) fn shard_ptrs(&self) -> impl Iterator<Item = *const ()> + '_ {
        self.shards.iter().map(|s| Arc::as_ptr(s).cast::<()>())
    }

    /// A new table: this one with `changes` made (each name replaced or removed), every zone's
    /// SOA serial set to `serial`, and `version`. Shards no change touches are shared.
    pub(crate) fn with_changes(
        &self,
        mut changes: Vec<Change>,
        serial: u32,
        version: u64,
    ) -> AnswerTable {
        let mut zones: Vec<Zone> = self.zones.to_vec();
        for zone in &mut zones {
            if zone.serial() == serial {
                continue;
            }
            let mut soa = zone.soa.to_vec();
            set_serial(&mut soa, serial);
            zone.soa = soa.into();
            if let Some(apex) = self.node(&zone.apex) {
                changes.push((zone.apex.clone(), Some(with_serial(apex, serial))));
            }
        }
        let mut by_shard: FxHashMap<usize, Vec<Change>> = FxHashMap::default();
        for change in changes {
            by_shard
                .entry(shard_of(name_hash(&change.0)))
                .or_default()
                .push(change);
        }
        let mut shards = self.shards.to_vec();
        for (i, changes) in by_shard {
            shards[i] = Arc::new(rebuilt(&self.shards[i], &changes, &zones));
        }
        AnswerTable {
            shards: exactly(shards),
            wildcards: self.wildcards.clone(),
            zones: zones.into(),
            zone_index: self.zone_index.clone(),
            rotation: AtomicUsize::new(0),
            version,
        }
    }
}

/// `old` with `changes` made; the last change of a name wins.
fn rebuilt(old: &Shard, changes: &[Change], zones: &[Zone]) -> Shard {
    let touched: FxHashSet<&[u8]> = changes.iter().map(|(n, _)| &**n).collect();
    let added: usize = changes
        .iter()
        .filter_map(|(_, e)| e.as_ref())
        .map(Vec::len)
        .sum();
    let mut arena = Vec::with_capacity(old.arena.len() + added);
    let mut buf = [0; 256];
    for e in old.entries() {
        if !touched.contains(full_name(e, zones, &mut buf)) {
            arena.extend_from_slice(e);
        }
    }
    let mut last: FxHashMap<&[u8], Option<&Vec<u8>>> = FxHashMap::default();
    for (name, e) in changes {
        last.insert(name, e.as_ref());
    }
    for e in last.into_values().flatten() {
        arena.extend_from_slice(e);
    }
    Shard::from_arena(arena, zones)
}

fn set_serial(soa_record: &mut [u8], serial: u32) {
    let at = soa_record.len() - SOA_SERIAL_FROM_END;
    soa_record[at..at + 4].copy_from_slice(&serial.to_be_bytes());
}

/// A copy of an apex entry with its SOA record's serial set to `serial`.
fn with_serial(apex: Node<'_>, serial: u32) -> Vec<u8> {
    let bytes = &apex.bytes()[..entry_len(apex.bytes())];
    let mut copy = bytes.to_vec();
    if let Some(soa) = apex.rrset(rtype::SOA) {
        let end = soa.stored_end() as usize - bytes.as_ptr() as usize;
        set_serial(&mut copy[..end], serial);
    }
    copy
}

/// The length of a node's entry.
#[cfg(test)]
pub(crate) fn entry_len_of(node: Node<'_>) -> usize {
    entry_len(node.bytes())
}

/// The shards of a table, as many as there must be.
fn exactly(shards: Vec<Arc<Shard>>) -> Box<[Arc<Shard>; SHARDS]> {
    shards
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!("a table always has SHARDS shards"))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::table::TableBuilder;
    use crate::wire::encode_name;

    /// A shard beyond 64 KiB (a name with 20 000 addresses) is indexed with four-byte offsets;
    /// every name is found either way, and a name that is not there is not.
    #[test]
    fn names_are_found_in_narrow_and_wide_shards() {
        let mut b = TableBuilder::default();
        let apex = encode_name("z.test").unwrap();
        let soa = crate::compile::soa_params(&crate::config::SoaConfig::default(), &apex, 5, 1);
        let zone = b.add_zone(&apex, &soa).unwrap();
        let big = encode_name("big.z.test").unwrap();
        for i in 0..20_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            b.add_ip(zone, &big, ip, 5, Selection::Rotate);
        }
        let small: Vec<Vec<u8>> = (0..2_000)
            .map(|i| encode_name(&format!("n-{i}.z.test")).unwrap())
            .collect();
        for (i, name) in small.iter().enumerate() {
            b.add_ip(
                zone,
                name,
                IpAddr::V4(Ipv4Addr::from(i as u32)),
                5,
                Selection::Fixed,
            );
        }
        let table = b.build(1);
        let wide = table
            .shards
            .iter()
            .filter(|s| matches!(s.index, Index::Wide(_)))
            .count();
        assert_eq!(wide, 1, "only the big name's shard is wide");
        let Lookup::Node(node, _) = table.lookup(&big) else {
            panic!("big.z.test not found");
        };
        assert_eq!(node.rrset(rtype::A).unwrap().len(), 20_000);
        for (i, name) in small.iter().enumerate() {
            let node = table
                .node(name)
                .unwrap_or_else(|| panic!("n-{i} not found"));
            let a = node.rrset(rtype::A).unwrap();
            assert_eq!(a.record(0)[12..], Ipv4Addr::from(i as u32).octets());
        }
        let missing = encode_name("n-2000.z.test").unwrap();
        assert!(matches!(table.lookup(&missing), Lookup::NxDomain(_)));
        assert_eq!(table.stats().names, 2 + 2_000);
    }
}
