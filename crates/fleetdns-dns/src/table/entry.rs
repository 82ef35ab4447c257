//! One name of an answer table as bytes: the name, its zone and its RRsets, already encoded,
//! in one contiguous piece. A table stores its entries back to back in arenas, so a name costs
//! its bytes and an index slot, not a heap object per RRset.
//!
//! Layout of an entry (integers little-endian):
//!
//! ```text
//! name_len u8 | name (lower-case wire form) | zone u16 | sets u8 | directory | set*
//! directory: per set, rtype u16 | where the set starts in the entry u32
//! set: rtype u16 | selection u8 | 0 u8 | count u32 | extra_count u32 | wire_len u32 | extra_len u32
//!      | starts (count × u32) | extra_starts (extra_count × u32) | wire | extra
//! ```
//!
//! A query finds its type in the directory and reads that set alone.

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

impl Selection {
    fn code(self) -> u8 {
        match self {
            Selection::Fixed => 0,
            Selection::Rotate => 1,
            Selection::One => 2,
        }
    }

    fn from_code(c: u8) -> Self {
        match c {
            1 => Selection::Rotate,
            2 => Selection::One,
            _ => Selection::Fixed,
        }
    }
}

const SET_HEADER: usize = 20;
const DIRECTORY_ROW: usize = 6;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("two bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

/// The name an entry starts with.
pub(crate) fn entry_name(entry: &[u8]) -> &[u8] {
    &entry[1..=entry[0] as usize]
}

/// The length of the entry that starts `bytes`.
pub(crate) fn entry_len(bytes: &[u8]) -> usize {
    let dir = 1 + bytes[0] as usize + 3;
    match bytes[dir - 1] as usize {
        0 => dir,
        sets => {
            let last = u32_at(bytes, dir + (sets - 1) * DIRECTORY_ROW + 2) as usize;
            last + set_len(&bytes[last..])
        }
    }
}

fn set_len(set: &[u8]) -> usize {
    let count = u32_at(set, 4) as usize;
    let extra_count = u32_at(set, 8) as usize;
    SET_HEADER + 4 * (count + extra_count) + u32_at(set, 12) as usize + u32_at(set, 16) as usize
}

/// One RRset being assembled: records and additional records, each already encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetData {
    pub rtype: u16,
    pub selection: Selection,
    /// Every record preceded by its owner (a pointer to the question), back to back.
    pub wire: Vec<u8>,
    pub starts: Vec<u32>,
    /// Whole additional records, back to back.
    pub extra: Vec<u8>,
    pub extra_starts: Vec<u32>,
}

/// Writes an entry for `name` into `out`.
pub(crate) fn encode(out: &mut Vec<u8>, name: &[u8], zone: u16, sets: &[SetData]) {
    debug_assert!(name.len() <= 255 && sets.len() <= 255);
    let start = out.len();
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&zone.to_le_bytes());
    out.push(sets.len() as u8);
    let dir = out.len();
    out.resize(dir + sets.len() * DIRECTORY_ROW, 0);
    for (i, s) in sets.iter().enumerate() {
        let row = dir + i * DIRECTORY_ROW;
        let at = (out.len() - start) as u32;
        out[row..row + 2].copy_from_slice(&s.rtype.to_le_bytes());
        out[row + 2..row + 6].copy_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&s.rtype.to_le_bytes());
        out.push(s.selection.code());
        out.push(0);
        for v in [
            s.starts.len(),
            s.extra_starts.len(),
            s.wire.len(),
            s.extra.len(),
        ] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        for v in s.starts.iter().chain(&s.extra_starts) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&s.wire);
        out.extend_from_slice(&s.extra);
    }
}

/// A name in a served zone, read in place. No RRsets means an empty non-terminal: NODATA,
/// never NXDOMAIN.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    entry: &'a [u8],
}

impl<'a> Node<'a> {
    pub(crate) fn new(entry: &'a [u8]) -> Self {
        Self { entry }
    }

    /// The lower-case wire name.
    pub fn name(&self) -> &'a [u8] {
        entry_name(self.entry)
    }

    /// The zone (index into the table's zones).
    pub fn zone(&self) -> u16 {
        u16_at(self.entry, 1 + self.entry[0] as usize)
    }

    /// The RRsets, in compiled order.
    pub fn rrsets(&self) -> RrSets<'a> {
        let at = 1 + self.entry[0] as usize + 2;
        let sets = self.entry[at] as usize;
        RrSets {
            entry: self.entry,
            directory: &self.entry[at + 1..at + 1 + sets * DIRECTORY_ROW],
        }
    }

    /// The RRset of type `rtype`.
    pub fn rrset(&self, rtype: u16) -> Option<RrSet<'a>> {
        let at = 1 + self.entry[0] as usize + 2;
        let sets = self.entry[at] as usize;
        let directory = &self.entry[at + 1..at + 1 + sets * DIRECTORY_ROW];
        directory
            .chunks_exact(DIRECTORY_ROW)
            .find(|row| u16_at(row, 0) == rtype)
            .map(|row| RrSet::new(&self.entry[u32_at(row, 2) as usize..]))
    }

    /// How many records the node holds.
    pub fn records(&self) -> usize {
        self.rrsets().map(|s| s.len()).sum()
    }

    /// The bytes of the whole entry.
    pub(crate) fn bytes(&self) -> &'a [u8] {
        self.entry
    }
}

/// The RRsets of a [`Node`].
#[derive(Debug, Clone)]
pub struct RrSets<'a> {
    entry: &'a [u8],
    directory: &'a [u8],
}

impl<'a> Iterator for RrSets<'a> {
    type Item = RrSet<'a>;

    fn next(&mut self) -> Option<RrSet<'a>> {
        let (row, rest) = self.directory.split_at_checked(DIRECTORY_ROW)?;
        self.directory = rest;
        Some(RrSet::new(&self.entry[u32_at(row, 2) as usize..]))
    }
}

/// One encoded RRset at a name, read in place.
#[derive(Debug, Clone, Copy)]
pub struct RrSet<'a> {
    pub rtype: u16,
    pub selection: Selection,
    starts: &'a [u8],
    extra_starts: &'a [u8],
    /// Every record preceded by its owner, which is always the question name, written as a
    /// pointer to offset 12; then type, class, TTL, RDLENGTH, RDATA. Back to back: an answer
    /// that fits is one copy (two when rotated).
    pub wire: &'a [u8],
    /// Whole records for the additional section (owners compressed against the question),
    /// back to back.
    pub extra: &'a [u8],
}

impl<'a> RrSet<'a> {
    fn new(set: &'a [u8]) -> Self {
        let (header, rest) = set.split_at(SET_HEADER);
        let header: &[u8; SET_HEADER] = header.try_into().expect("a whole header");
        let count = u32_at(header, 4) as usize;
        let extra_count = u32_at(header, 8) as usize;
        let wire_len = u32_at(header, 12) as usize;
        let extra_len = u32_at(header, 16) as usize;
        let (starts, rest) = rest.split_at(4 * count);
        let (extra_starts, rest) = rest.split_at(4 * extra_count);
        let (wire, rest) = rest.split_at(wire_len);
        Self {
            rtype: u16_at(header, 0),
            selection: Selection::from_code(header[2]),
            starts,
            extra_starts,
            wire,
            extra: &rest[..extra_len],
        }
    }

    /// Records in the set.
    pub fn len(&self) -> usize {
        self.starts.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Where record `i` starts in [`RrSet::wire`].
    pub fn start(&self, i: usize) -> usize {
        u32_at(self.starts, 4 * i) as usize
    }

    /// Record `i` with its owner pointer.
    pub fn record(&self, i: usize) -> &'a [u8] {
        part(self.wire, self.starts, i)
    }

    /// Additional records in the set.
    pub fn extra_len(&self) -> usize {
        self.extra_starts.len() / 4
    }

    /// Additional record `i`.
    pub fn extra_record(&self, i: usize) -> &'a [u8] {
        part(self.extra, self.extra_starts, i)
    }
}

/// Part `i` of `bytes` cut at the u32 offsets in `starts`.
fn part<'a>(bytes: &'a [u8], starts: &[u8], i: usize) -> &'a [u8] {
    let n = starts.len() / 4;
    let end = if i + 1 < n {
        u32_at(starts, 4 * (i + 1)) as usize
    } else {
        bytes.len()
    };
    &bytes[u32_at(starts, 4 * i) as usize..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rtype: u16, records: &[&[u8]], extra: &[&[u8]]) -> SetData {
        let mut s = SetData {
            rtype,
            selection: Selection::Rotate,
            wire: Vec::new(),
            starts: Vec::new(),
            extra: Vec::new(),
            extra_starts: Vec::new(),
        };
        for r in records {
            s.starts.push(s.wire.len() as u32);
            s.wire.extend_from_slice(r);
        }
        for r in extra {
            s.extra_starts.push(s.extra.len() as u32);
            s.extra.extend_from_slice(r);
        }
        s
    }

    #[test]
    fn an_entry_reads_back_what_was_encoded() {
        let sets = [
            set(1, &[b"aaaa", b"bb"], &[]),
            set(33, &[b"srv"], &[b"x1", b"y22"]),
        ];
        let mut out = vec![7, 7]; // entries sit anywhere in an arena
        encode(&mut out, b"\x03abc\x00", 5, &sets);
        out.push(9);
        let entry = &out[2..];
        assert_eq!(entry_len(entry), out.len() - 3);
        let node = Node::new(entry);
        assert_eq!(node.name(), b"\x03abc\x00");
        assert_eq!(node.zone(), 5);
        assert_eq!(node.records(), 3);
        let a = node.rrset(1).unwrap();
        assert_eq!(
            (a.len(), a.record(0), a.record(1)),
            (2, &b"aaaa"[..], &b"bb"[..])
        );
        assert_eq!(a.selection, Selection::Rotate);
        assert_eq!(a.start(1), 4);
        assert_eq!(a.extra_len(), 0);
        let srv = node.rrset(33).unwrap();
        assert_eq!(srv.wire, b"srv");
        assert_eq!(
            (srv.extra_record(0), srv.extra_record(1)),
            (&b"x1"[..], &b"y22"[..])
        );
        assert!(node.rrset(28).is_none());
    }

    #[test]
    fn an_empty_non_terminal_has_no_sets() {
        let mut out = Vec::new();
        encode(&mut out, b"\x00", 0, &[]);
        assert_eq!(entry_len(&out), out.len());
        assert_eq!(Node::new(&out).rrsets().count(), 0);
    }
}
