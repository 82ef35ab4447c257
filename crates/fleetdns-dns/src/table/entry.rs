//! One name of an answer table as bytes: the name, its zone and its RRsets, already encoded,
//! in one contiguous piece. A table stores its entries back to back in arenas, so a name costs
//! its bytes and an index slot, not a heap object per RRset.
//!
//! Layout of an entry (integers little-endian):
//!
//! ```text
//! name_len u8 | name (lower-case wire labels above the zone's apex) | zone u16 | sets u8
//!      | directory | set*
//! directory: per set, rtype u16 | where the set starts in the entry (uint)
//! set: selection u8 | count, extra_count, wire_len, extra_len (uint each)
//!      | starts (count × uint) | extra_starts (extra_count × uint) | wire | extra
//! ```
//!
//! A `uint` is two bytes, or four in a *wide* entry (bit 7 of `sets`): an entry is wide only
//! when it would not fit in 64 KiB (a headless service with thousands of endpoints). The name
//! is stored without its zone's apex (`svc-1.ns-1.svc` of `svc-1.ns-1.svc.cluster-1.local`):
//! every name of a zone shares the apex, and the table compares it once per lookup.
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

/// Bit of the `sets` byte that marks a wide entry.
const WIDE: u8 = 0x80;
/// Most RRsets one name can hold (the rest of the `sets` byte).
pub(crate) const MAX_SETS: usize = 0x7f;

/// The size of a `uint`: two bytes, four in a wide entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Width(usize);

impl Width {
    const NARROW: Width = Width(2);
    const WIDE: Width = Width(4);

    fn of(sets_byte: u8) -> Self {
        if sets_byte & WIDE == 0 {
            Self::NARROW
        } else {
            Self::WIDE
        }
    }

    /// The `uint` at `at`.
    #[inline]
    fn at(self, b: &[u8], at: usize) -> usize {
        if self.0 == 2 {
            u16_at(b, at) as usize
        } else {
            u32_at(b, at) as usize
        }
    }

    fn put(self, out: &mut Vec<u8>, v: usize) {
        if self.0 == 2 {
            out.extend_from_slice(&(v as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
    }

    fn set_header(self) -> usize {
        1 + 4 * self.0
    }

    fn directory_row(self) -> usize {
        2 + self.0
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("two bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

/// The name an entry starts with, without its zone's apex.
pub(crate) fn entry_name(entry: &[u8]) -> &[u8] {
    &entry[1..=entry[0] as usize]
}

/// The zone of the entry that starts `entry`.
pub(crate) fn entry_zone(entry: &[u8]) -> u16 {
    u16_at(entry, 1 + entry[0] as usize)
}

/// The length of the entry that starts `bytes`.
pub(crate) fn entry_len(bytes: &[u8]) -> usize {
    let at = 1 + bytes[0] as usize + 2;
    let width = Width::of(bytes[at]);
    let sets = (bytes[at] & !WIDE) as usize;
    let dir = at + 1;
    match sets {
        0 => dir,
        sets => {
            let last = width.at(bytes, dir + (sets - 1) * width.directory_row() + 2);
            last + set_len(&bytes[last..], width)
        }
    }
}

fn set_len(set: &[u8], width: Width) -> usize {
    let count = width.at(set, 1);
    let extra_count = width.at(set, 1 + width.0);
    width.set_header()
        + width.0 * (count + extra_count)
        + width.at(set, 1 + 2 * width.0)
        + width.at(set, 1 + 3 * width.0)
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

impl SetData {
    /// Bytes of the set's encoding in `width`, with its directory row.
    fn encoded_len(&self, width: Width) -> usize {
        width.directory_row()
            + width.set_header()
            + width.0 * (self.starts.len() + self.extra_starts.len())
            + self.wire.len()
            + self.extra.len()
    }
}

/// Writes an entry for `name`, a name of the zone numbered `zone` whose apex is `apex_len`
/// bytes long, into `out`. At most [`MAX_SETS`] sets.
pub(crate) fn encode(out: &mut Vec<u8>, name: &[u8], zone: u16, apex_len: usize, sets: &[SetData]) {
    debug_assert!(name.len() <= 255 && apex_len <= name.len() && sets.len() <= MAX_SETS);
    let name = &name[..name.len() - apex_len];
    let start = out.len();
    let fixed = 1 + name.len() + 3;
    let narrow = fixed
        + sets
            .iter()
            .map(|s| s.encoded_len(Width::NARROW))
            .sum::<usize>();
    let width = if narrow <= u16::MAX as usize {
        Width::NARROW
    } else {
        Width::WIDE
    };
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&zone.to_le_bytes());
    let flag = if width == Width::WIDE { WIDE } else { 0 };
    out.push(sets.len().min(MAX_SETS) as u8 | flag);
    let dir = out.len();
    out.resize(dir + sets.len() * width.directory_row(), 0);
    for (i, s) in sets.iter().enumerate() {
        let row = dir + i * width.directory_row();
        let at = out.len() - start;
        out[row..row + 2].copy_from_slice(&s.rtype.to_le_bytes());
        if width == Width::NARROW {
            out[row + 2..row + 4].copy_from_slice(&(at as u16).to_le_bytes());
        } else {
            out[row + 2..row + 6].copy_from_slice(&(at as u32).to_le_bytes());
        }
        out.push(s.selection.code());
        for v in [
            s.starts.len(),
            s.extra_starts.len(),
            s.wire.len(),
            s.extra.len(),
        ] {
            width.put(out, v);
        }
        for v in s.starts.iter().chain(&s.extra_starts) {
            width.put(out, *v as usize);
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

    /// The lower-case wire labels above the zone's apex (empty at the apex).
    pub fn relative_name(&self) -> &'a [u8] {
        entry_name(self.entry)
    }

    /// The zone (index into the table's zones).
    pub fn zone(&self) -> u16 {
        entry_zone(self.entry)
    }

    /// The directory and the width of its entry.
    fn directory(&self) -> (&'a [u8], Width) {
        let at = 1 + self.entry[0] as usize + 2;
        let width = Width::of(self.entry[at]);
        let sets = (self.entry[at] & !WIDE) as usize;
        (
            &self.entry[at + 1..at + 1 + sets * width.directory_row()],
            width,
        )
    }

    /// The RRsets, in compiled order.
    pub fn rrsets(&self) -> RrSets<'a> {
        let (directory, width) = self.directory();
        RrSets {
            entry: self.entry,
            directory,
            width,
        }
    }

    /// The RRset of type `rtype`.
    pub fn rrset(&self, rtype: u16) -> Option<RrSet<'a>> {
        let (directory, width) = self.directory();
        directory
            .chunks_exact(width.directory_row())
            .find(|row| u16_at(row, 0) == rtype)
            .map(|row| RrSet::new(rtype, &self.entry[width.at(row, 2)..], width))
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
    width: Width,
}

impl<'a> Iterator for RrSets<'a> {
    type Item = RrSet<'a>;

    fn next(&mut self) -> Option<RrSet<'a>> {
        let (row, rest) = self
            .directory
            .split_at_checked(self.width.directory_row())?;
        self.directory = rest;
        Some(RrSet::new(
            u16_at(row, 0),
            &self.entry[self.width.at(row, 2)..],
            self.width,
        ))
    }
}

/// One encoded RRset at a name, read in place.
#[derive(Debug, Clone, Copy)]
pub struct RrSet<'a> {
    pub rtype: u16,
    pub selection: Selection,
    width: Width,
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
    fn new(rtype: u16, set: &'a [u8], width: Width) -> Self {
        let count = width.at(set, 1);
        let extra_count = width.at(set, 1 + width.0);
        let wire_len = width.at(set, 1 + 2 * width.0);
        let extra_len = width.at(set, 1 + 3 * width.0);
        let rest = &set[width.set_header()..];
        let (starts, rest) = rest.split_at(width.0 * count);
        let (extra_starts, rest) = rest.split_at(width.0 * extra_count);
        let (wire, rest) = rest.split_at(wire_len);
        Self {
            rtype,
            selection: Selection::from_code(set[0]),
            width,
            starts,
            extra_starts,
            wire,
            extra: &rest[..extra_len],
        }
    }

    /// Records in the set.
    pub fn len(&self) -> usize {
        self.starts.len() / self.width.0
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Where record `i` starts in [`RrSet::wire`].
    pub fn start(&self, i: usize) -> usize {
        self.width.at(self.starts, self.width.0 * i)
    }

    /// Record `i` with its owner pointer.
    pub fn record(&self, i: usize) -> &'a [u8] {
        part(self.wire, self.starts, i, self.width)
    }

    /// Additional records in the set.
    pub fn extra_len(&self) -> usize {
        self.extra_starts.len() / self.width.0
    }

    /// Additional record `i`.
    pub fn extra_record(&self, i: usize) -> &'a [u8] {
        part(self.extra, self.extra_starts, i, self.width)
    }
}

/// Part `i` of `bytes` cut at the offsets in `starts`.
fn part<'a>(bytes: &'a [u8], starts: &[u8], i: usize, width: Width) -> &'a [u8] {
    let n = starts.len() / width.0;
    let end = if i + 1 < n {
        width.at(starts, width.0 * (i + 1))
    } else {
        bytes.len()
    };
    &bytes[width.at(starts, width.0 * i)..end]
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

    /// Reads back every part of the two sets of [`an_entry_reads_back_what_was_encoded`].
    fn check_two_sets(node: Node<'_>) {
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
        let types: Vec<u16> = node.rrsets().map(|s| s.rtype).collect();
        assert_eq!(types, [1, 33]);
    }

    #[test]
    fn an_entry_reads_back_what_was_encoded() {
        let sets = [
            set(1, &[b"aaaa", b"bb"], &[]),
            set(33, &[b"srv"], &[b"x1", b"y22"]),
        ];
        let mut out = vec![7, 7]; // entries sit anywhere in an arena
        // `abc` in the zone `example.` (9 bytes of apex).
        encode(&mut out, b"\x03abc\x07example\x00", 5, 9, &sets);
        out.push(9);
        let entry = &out[2..];
        assert_eq!(entry_len(entry), out.len() - 3);
        let node = Node::new(entry);
        assert_eq!(node.relative_name(), b"\x03abc");
        assert_eq!(node.zone(), 5);
        // length, `abc`, zone: the sets byte.
        assert_eq!(entry[1 + 4 + 2] & WIDE, 0, "a small entry is narrow");
        check_two_sets(node);
    }

    /// An entry beyond 64 KiB (thousands of endpoints) is written with four-byte offsets.
    #[test]
    fn a_large_entry_is_wide_and_reads_back() {
        let big = vec![0xab; 70_000];
        let sets = [
            set(1, &[b"aaaa", b"bb"], &[]),
            set(33, &[b"srv"], &[b"x1", b"y22"]),
            set(16, &[&big], &[]),
        ];
        let mut out = Vec::new();
        encode(&mut out, b"\x03abc\x00", 0, 1, &sets);
        assert_eq!(entry_len(&out), out.len());
        assert_eq!(out[1 + 4 + 2] & WIDE, WIDE);
        let node = Node::new(&out);
        assert_eq!(node.records(), 4);
        assert_eq!(node.rrset(16).unwrap().record(0), &big[..]);
        let a = node.rrset(1).unwrap();
        assert_eq!(
            (a.record(0), a.record(1), a.start(1)),
            (&b"aaaa"[..], &b"bb"[..], 4)
        );
        let srv = node.rrset(33).unwrap();
        assert_eq!((srv.wire, srv.extra_record(1)), (&b"srv"[..], &b"y22"[..]));
    }

    #[test]
    fn an_empty_non_terminal_has_no_sets() {
        let mut out = Vec::new();
        encode(&mut out, b"\x00", 0, 1, &[]);
        assert_eq!(entry_len(&out), out.len());
        assert_eq!(Node::new(&out).rrsets().count(), 0);
    }
}
