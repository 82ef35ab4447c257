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
//! set: selection u8 | count, extra_count, wire_len, extra_len (uint each) | [ttl u32]
//!      | [extra_type u16 | extra_ttl u32] | [rdlength u16]
//!      | starts (count × uint) | extra_starts (extra_count × uint) | wire | extra
//! ```
//!
//! A `uint` is two bytes, or four in a *wide* entry (bit 7 of `sets`): an entry is wide only
//! when it would not fit in 64 KiB (a headless service with thousands of endpoints). The name
//! is stored without its zone's apex (`svc-1.ns-1.svc` of `svc-1.ns-1.svc.cluster-1.local`):
//! every name of a zone shares the apex, and the table compares it once per lookup.
//!
//! A *bare* set (bit 7 of `selection`, with `ttl`) stores only each record's RDATA in `wire`:
//! its records all belong to the question name, are of the set's type and class IN and share
//! one TTL, so the 12 bytes before each RDATA (owner pointer, type, class, TTL, RDLENGTH) are
//! written when answering. Every set of up to four records is bare but the SOA (its serial is
//! rewritten in place) and a set whose records differ in TTL. Likewise additional records of one type and TTL (bit 6,
//! with `extra_type` and `extra_ttl`) keep only their owner (a compression pointer) and RDATA.
//! A bare set whose records' RDATA are all as long (addresses, most SRV records; bit 5, with
//! `rdlength`) stores no `starts`: record `i` is the `i`th slice of that length.
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
/// Bit of a set's `selection` byte that marks a bare set.
const BARE: u8 = 0x80;
/// Bit of a set's `selection` byte that marks bare additional records.
const BARE_EXTRA: u8 = 0x40;
/// Most records a bare set holds. Larger sets (a headless service's endpoints: few names, so
/// little to save) are stored whole and answered with one copy instead of a head per record.
const MAX_BARE_RECORDS: usize = 4;
/// Bit of a bare set's `selection` byte that marks RDATA of one length, without `starts`.
const FIXED: u8 = 0x20;
/// What a bare set does not store of each record: owner pointer, type, class, TTL, RDLENGTH.
const RECORD_HEAD: usize = 12;
/// What a bare additional record does not store: type, class, TTL, RDLENGTH.
const EXTRA_HEAD: usize = 10;
/// The type and TTL of bare additional records.
type ExtraHead = (u16, u32);
/// How a set is stored: the TTL of bare records, the type and TTL of bare additional records,
/// the one RDATA length of fixed-length bare records.
type Bareness = (Option<u32>, Option<ExtraHead>, Option<usize>);
/// The owner of every answer record: a pointer to the question name.
const QUESTION: [u8; 2] = [0xc0, 12];
const CLASS_IN: [u8; 2] = [0, 1];
const SOA: u16 = 6;
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

/// The bytes of a set's header: the selection, four `uint`s, in a bare set the TTL and with
/// bare additional records their type and TTL.
fn header_len(set: &[u8], width: Width) -> usize {
    width.set_header()
        + if set[0] & BARE != 0 { 4 } else { 0 }
        + if set[0] & BARE_EXTRA != 0 { 6 } else { 0 }
        + if set[0] & FIXED != 0 { 2 } else { 0 }
}

fn set_len(set: &[u8], width: Width) -> usize {
    let count = width.at(set, 1);
    let extra_count = width.at(set, 1 + width.0);
    let starts = if set[0] & FIXED != 0 { 0 } else { count };
    header_len(set, width)
        + width.0 * (starts + extra_count)
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
    fn record(&self, i: usize) -> &[u8] {
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.wire.len(), |&e| e as usize);
        &self.wire[self.starts[i] as usize..end]
    }

    /// The TTL every record shares when the set can be stored bare (see the module doc).
    fn bare_ttl(&self) -> Option<u32> {
        if self.rtype == SOA || self.starts.len() > MAX_BARE_RECORDS {
            return None;
        }
        let mut ttl = None;
        for i in 0..self.starts.len() {
            let r = self.record(i);
            let head = r.get(..RECORD_HEAD)?;
            let this = u32::from_be_bytes([head[6], head[7], head[8], head[9]]);
            let rdlength = u16::from_be_bytes([head[10], head[11]]) as usize;
            if head[..2] != QUESTION
                || u16::from_be_bytes([head[2], head[3]]) != self.rtype
                || head[4..6] != CLASS_IN
                || rdlength != r.len() - RECORD_HEAD
                || ttl.is_some_and(|t| t != this)
            {
                return None;
            }
            ttl = Some(this);
        }
        ttl
    }

    fn extra_record(&self, i: usize) -> &[u8] {
        let end = self
            .extra_starts
            .get(i + 1)
            .map_or(self.extra.len(), |&e| e as usize);
        &self.extra[self.extra_starts[i] as usize..end]
    }

    /// The type and TTL every additional record shares when they can be stored bare: each
    /// owned by a compression pointer, of class IN, one type and one TTL.
    fn bare_extra(&self) -> Option<ExtraHead> {
        let mut shared = None;
        for i in 0..self.extra_starts.len() {
            let r = self.extra_record(i);
            let head = r.get(..RECORD_HEAD)?;
            let rtype = u16::from_be_bytes([head[2], head[3]]);
            let ttl = u32::from_be_bytes([head[6], head[7], head[8], head[9]]);
            let rdlength = u16::from_be_bytes([head[10], head[11]]) as usize;
            if head[0] & 0xc0 != 0xc0
                || head[4..6] != CLASS_IN
                || rdlength != r.len() - RECORD_HEAD
                || shared.is_some_and(|s| s != (rtype, ttl))
            {
                return None;
            }
            shared = Some((rtype, ttl));
        }
        shared
    }

    /// The one length of every record's RDATA, if they are all as long (and there are any).
    fn fixed_rdlength(&self) -> Option<usize> {
        let first = self
            .starts
            .len()
            .checked_sub(1)
            .map(|_| self.record(0).len())?;
        (1..self.starts.len())
            .all(|i| self.record(i).len() == first)
            .then(|| first.checked_sub(RECORD_HEAD))
            .flatten()
            .filter(|&l| l > 0 && l <= usize::from(u16::MAX))
    }

    /// Bytes of the set's encoding in `width`, with its directory row.
    fn encoded_len(&self, width: Width, bare: bool, bare_extra: bool, fixed: bool) -> usize {
        let (wire, ttl) = if bare {
            (self.wire.len() - RECORD_HEAD * self.starts.len(), 4)
        } else {
            (self.wire.len(), 0)
        };
        let (extra, extra_head) = if bare_extra {
            (self.extra.len() - EXTRA_HEAD * self.extra_starts.len(), 6)
        } else {
            (self.extra.len(), 0)
        };
        let (starts, fixed) = if fixed {
            (0, 2)
        } else {
            (self.starts.len(), 0)
        };
        width.directory_row()
            + width.set_header()
            + ttl
            + extra_head
            + fixed
            + width.0 * (starts + self.extra_starts.len())
            + wire
            + extra
    }
}

/// Writes an entry for `name`, a name of the zone numbered `zone` whose apex is `apex_len`
/// bytes long, into `out`. At most [`MAX_SETS`] sets.
pub(crate) fn encode(out: &mut Vec<u8>, name: &[u8], zone: u16, apex_len: usize, sets: &[SetData]) {
    debug_assert!(name.len() <= 255 && apex_len <= name.len() && sets.len() <= MAX_SETS);
    let name = &name[..name.len() - apex_len];
    let start = out.len();
    let fixed = 1 + name.len() + 3;
    // Per set: the TTL of bare records, the type and TTL of bare additional records.
    let bare: Vec<Bareness> = sets
        .iter()
        .map(|s| {
            let ttl = s.bare_ttl();
            let rdlength = ttl.and_then(|_| s.fixed_rdlength());
            (ttl, s.bare_extra(), rdlength)
        })
        .collect();
    let narrow = fixed
        + sets
            .iter()
            .zip(&bare)
            .map(|(s, (b, e, f))| {
                s.encoded_len(Width::NARROW, b.is_some(), e.is_some(), f.is_some())
            })
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
    for (i, (s, (bare, bare_extra, rdlength))) in sets.iter().zip(bare).enumerate() {
        let row = dir + i * width.directory_row();
        let at = out.len() - start;
        out[row..row + 2].copy_from_slice(&s.rtype.to_le_bytes());
        if width == Width::NARROW {
            out[row + 2..row + 4].copy_from_slice(&(at as u16).to_le_bytes());
        } else {
            out[row + 2..row + 6].copy_from_slice(&(at as u32).to_le_bytes());
        }
        let head = if bare.is_some() { RECORD_HEAD } else { 0 };
        let extra_head = if bare_extra.is_some() { EXTRA_HEAD } else { 0 };
        let wire_len = s.wire.len() - head * s.starts.len();
        let extra_len = s.extra.len() - extra_head * s.extra_starts.len();
        out.push(
            s.selection.code()
                | if bare.is_some() { BARE } else { 0 }
                | if bare_extra.is_some() { BARE_EXTRA } else { 0 }
                | if rdlength.is_some() { FIXED } else { 0 },
        );
        for v in [s.starts.len(), s.extra_starts.len(), wire_len, extra_len] {
            width.put(out, v);
        }
        if let Some(ttl) = bare {
            out.extend_from_slice(&ttl.to_le_bytes());
        }
        if let Some((rtype, ttl)) = bare_extra {
            out.extend_from_slice(&rtype.to_le_bytes());
            out.extend_from_slice(&ttl.to_le_bytes());
        }
        if let Some(rdlength) = rdlength {
            out.extend_from_slice(&(rdlength as u16).to_le_bytes());
        } else {
            for (i, v) in s.starts.iter().enumerate() {
                width.put(out, *v as usize - head * i);
            }
        }
        for (i, v) in s.extra_starts.iter().enumerate() {
            width.put(out, *v as usize - extra_head * i);
        }
        if bare.is_some() {
            for i in 0..s.starts.len() {
                out.extend_from_slice(&s.record(i)[RECORD_HEAD..]);
            }
        } else {
            out.extend_from_slice(&s.wire);
        }
        if bare_extra.is_some() {
            for i in 0..s.extra_starts.len() {
                let r = s.extra_record(i);
                out.extend_from_slice(&r[..2]);
                out.extend_from_slice(&r[RECORD_HEAD..]);
            }
        } else {
            out.extend_from_slice(&s.extra);
        }
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
    /// The records' TTL in a bare set, whose `wire` holds RDATA only.
    bare_ttl: Option<u32>,
    /// The type and TTL of bare additional records, stored as owner pointer and RDATA.
    bare_extra: Option<ExtraHead>,
    count: usize,
    /// The one RDATA length of a fixed-length bare set (which has no `starts`), else 0.
    rdlength: usize,
    starts: &'a [u8],
    extra_starts: &'a [u8],
    /// Every record preceded by its owner, which is always the question name, written as a
    /// pointer to offset 12; then type, class, TTL, RDLENGTH, RDATA. Back to back: an answer
    /// that fits is one copy (two when rotated). In a bare set, the RDATA alone.
    wire: &'a [u8],
    /// Whole records for the additional section (owners compressed against the question),
    /// back to back; bare, each its owner pointer and RDATA.
    extra: &'a [u8],
}

impl<'a> RrSet<'a> {
    fn new(rtype: u16, set: &'a [u8], width: Width) -> Self {
        let flags = set[0];
        // The four `uint`s, read in the entry's width once.
        let (count, extra_count, wire_len, extra_len, mut at) = if width == Width::NARROW {
            let h: [u8; 9] = set[..9].try_into().expect("a narrow set header");
            let u = |i: usize| usize::from(u16::from_le_bytes([h[i], h[i + 1]]));
            (u(1), u(3), u(5), u(7), 9)
        } else {
            let h: [u8; 17] = set[..17].try_into().expect("a wide set header");
            let u = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as usize;
            (u(1), u(5), u(9), u(13), 17)
        };
        let bare_ttl = (flags & BARE != 0).then(|| {
            at += 4;
            u32_at(set, at - 4)
        });
        let bare_extra = (flags & BARE_EXTRA != 0).then(|| {
            at += 6;
            (u16_at(set, at - 6), u32_at(set, at - 4))
        });
        let rdlength = if flags & FIXED != 0 {
            at += 2;
            usize::from(u16_at(set, at - 2))
        } else {
            0
        };
        let rest = &set[at..];
        let (starts, rest) = rest.split_at(if rdlength > 0 { 0 } else { width.0 * count });
        let (extra_starts, rest) = rest.split_at(width.0 * extra_count);
        let (wire, rest) = rest.split_at(wire_len);
        Self {
            rtype,
            selection: Selection::from_code(flags & !(BARE | BARE_EXTRA | FIXED)),
            width,
            bare_ttl,
            bare_extra,
            count,
            rdlength,
            starts,
            extra_starts,
            wire,
            extra: &rest[..extra_len],
        }
    }

    /// Records in the set.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Where record `i` starts in [`RrSet::wire`].
    pub fn start(&self, i: usize) -> usize {
        if self.rdlength > 0 {
            return i * self.rdlength;
        }
        self.width.at(self.starts, self.width.0 * i)
    }

    /// Record `i` as stored: whole, or its RDATA in a bare set.
    #[inline]
    fn stored(&self, i: usize) -> &'a [u8] {
        if self.rdlength > 0 {
            let at = i * self.rdlength;
            return &self.wire[at..at + self.rdlength];
        }
        part(self.wire, self.starts, i, self.width)
    }

    /// Bytes record `i` takes in an answer.
    pub fn record_len(&self, i: usize) -> usize {
        self.stored(i).len() + self.bare_ttl.map_or(0, |_| RECORD_HEAD)
    }

    /// Bytes the whole set takes in an answer.
    pub fn answer_len(&self) -> usize {
        self.wire.len() + self.bare_ttl.map_or(0, |_| RECORD_HEAD * self.len())
    }

    /// Appends record `i`, its owner a pointer to the question name.
    #[inline]
    pub fn write_record(&self, i: usize, out: &mut Vec<u8>) {
        let stored = self.stored(i);
        match self.bare_ttl {
            Some(ttl) => put_record(out, &head(QUESTION, self.rtype, ttl, stored), stored),
            None => out.extend_from_slice(stored),
        }
    }

    /// Appends every record, from record `first` round to the one before it.
    pub fn write_all(&self, first: usize, out: &mut Vec<u8>) {
        let Some(ttl) = self.bare_ttl else {
            // One copy, or two when it starts in the middle.
            let cut = self.start(first);
            out.extend_from_slice(&self.wire[cut..]);
            out.extend_from_slice(&self.wire[..cut]);
            return;
        };
        out.reserve(self.answer_len());
        let n = self.len();
        for i in (first..n).chain(0..first.min(n)) {
            let rdata = self.stored(i);
            put_record(out, &head(QUESTION, self.rtype, ttl, rdata), rdata);
        }
    }

    /// Record `i` as it is answered.
    pub fn record(&self, i: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.record_len(i));
        self.write_record(i, &mut out);
        out
    }

    /// Where the set's stored records end in its entry (an apex's SOA serial sits just
    /// before).
    pub(crate) fn stored_end(&self) -> *const u8 {
        self.wire.as_ptr_range().end
    }

    /// Additional records in the set.
    pub fn extra_len(&self) -> usize {
        self.extra_starts.len() / self.width.0
    }

    /// Additional record `i` as stored.
    fn stored_extra(&self, i: usize) -> &'a [u8] {
        part(self.extra, self.extra_starts, i, self.width)
    }

    /// Bytes additional record `i` takes in an answer.
    pub fn extra_record_len(&self, i: usize) -> usize {
        self.stored_extra(i).len() + self.bare_extra.map_or(0, |_| EXTRA_HEAD)
    }

    /// Bytes every additional record takes in an answer.
    pub fn extras_len(&self) -> usize {
        self.extra.len() + self.bare_extra.map_or(0, |_| EXTRA_HEAD * self.extra_len())
    }

    /// Appends additional record `i`.
    #[inline]
    pub fn write_extra(&self, i: usize, out: &mut Vec<u8>) {
        let stored = self.stored_extra(i);
        match self.bare_extra {
            Some((rtype, ttl)) => {
                let (owner, rdata) = stored.split_at(2);
                put_record(out, &head([owner[0], owner[1]], rtype, ttl, rdata), rdata);
            }
            None => out.extend_from_slice(stored),
        }
    }

    /// Appends every additional record.
    pub fn write_extras(&self, out: &mut Vec<u8>) {
        if self.bare_extra.is_none() {
            out.extend_from_slice(self.extra);
            return;
        }
        out.reserve(self.extras_len());
        for i in 0..self.extra_len() {
            self.write_extra(i, out);
        }
    }

    /// Additional record `i` as it is answered.
    pub fn extra_record(&self, i: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.extra_record_len(i));
        self.write_extra(i, &mut out);
        out
    }
}

/// A record's head: owner (a compression pointer), type, class IN, TTL, RDLENGTH of `rdata`.
#[inline]
fn head(owner: [u8; 2], rtype: u16, ttl: u32, rdata: &[u8]) -> [u8; RECORD_HEAD] {
    let [r0, r1] = rtype.to_be_bytes();
    let [t0, t1, t2, t3] = ttl.to_be_bytes();
    let [l0, l1] = (rdata.len() as u16).to_be_bytes();
    [
        owner[0],
        owner[1],
        r0,
        r1,
        CLASS_IN[0],
        CLASS_IN[1],
        t0,
        t1,
        t2,
        t3,
        l0,
        l1,
    ]
}

/// Appends a record's head and RDATA. Addresses (4 and 16 bytes) are copied as arrays of
/// their size: no call per record.
#[inline]
fn put_record(out: &mut Vec<u8>, head: &[u8; RECORD_HEAD], rdata: &[u8]) {
    out.extend_from_slice(head);
    match <[u8; 4]>::try_from(rdata) {
        Ok(v4) => out.extend_from_slice(&v4),
        Err(_) => match <[u8; 16]>::try_from(rdata) {
            Ok(v6) => out.extend_from_slice(&v6),
            Err(_) => out.extend_from_slice(rdata),
        },
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
            (2, b"aaaa".to_vec(), b"bb".to_vec())
        );
        assert_eq!(a.selection, Selection::Rotate);
        assert_eq!(a.start(1), 4);
        assert_eq!(a.extra_len(), 0);
        let mut rotated = Vec::new();
        a.write_all(1, &mut rotated);
        assert_eq!(rotated, b"bbaaaa");
        let srv = node.rrset(33).unwrap();
        assert_eq!(srv.record(0), b"srv");
        assert_eq!(
            (srv.extra_record(0), srv.extra_record(1)),
            (b"x1".to_vec(), b"y22".to_vec())
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
        assert_eq!(node.rrset(16).unwrap().record(0), big);
        let a = node.rrset(1).unwrap();
        assert_eq!(
            (a.record(0), a.record(1), a.start(1)),
            (b"aaaa".to_vec(), b"bb".to_vec(), 4)
        );
        let srv = node.rrset(33).unwrap();
        assert_eq!(
            (srv.record(0), srv.extra_record(1)),
            (b"srv".to_vec(), b"y22".to_vec())
        );
    }

    /// A whole record as the builder writes it: owner pointer, type, class IN, TTL, RDATA.
    fn record(rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut r = QUESTION.to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN);
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    /// Records of the question name with one TTL are stored as RDATA and answered whole, in
    /// every rotation, and additional records of one type and TTL as owner and RDATA; a set
    /// whose TTLs differ, the SOA, and additional records of two types are stored whole.
    #[test]
    fn records_of_one_type_and_ttl_are_stored_bare_and_answered_whole() {
        let records = [
            record(1, 5, &[10, 0, 0, 1]),
            record(1, 5, &[10, 0, 0, 2]),
            record(1, 5, &[10, 0, 0, 3]),
        ];
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let extra = record(28, 5, &[0; 16]);
        let mut other_extra = record(28, 5, &[1; 16]);
        other_extra[1] = 40; // owned by another name in the message
        let sets = [set(1, &refs, &[&extra, &other_extra])];
        let mut out = Vec::new();
        encode(&mut out, b"\x01a\x00", 0, 1, &sets);
        assert_eq!(entry_len(&out), out.len());
        let whole: usize =
            records.iter().map(Vec::len).sum::<usize>() + extra.len() + other_extra.len();
        assert!(
            out.len() < whole,
            "{} bytes stored for {whole} of records",
            out.len()
        );
        let a = Node::new(&out).rrset(1).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a.rdlength, 4, "addresses: one RDATA length, no starts");
        assert_eq!(a.answer_len(), 3 * 16);
        for (i, r) in records.iter().enumerate() {
            assert_eq!((a.record(i), a.record_len(i)), (r.clone(), 16));
        }
        for first in 0..3 {
            let mut answered = Vec::new();
            a.write_all(first, &mut answered);
            let expected: Vec<u8> = (first..3)
                .chain(0..first)
                .flat_map(|i| records[i].clone())
                .collect();
            assert_eq!(answered, expected, "rotation {first}");
        }
        assert_eq!(a.bare_extra, Some((28, 5)));
        assert_eq!(
            (a.extra_record(0), a.extra_record(1)),
            (extra.clone(), other_extra.clone())
        );
        let mut extras = Vec::new();
        a.write_extras(&mut extras);
        assert_eq!(extras, [extra.clone(), other_extra].concat());
        assert_eq!(a.extras_len(), extras.len());

        // RDATA of two lengths: bare, with their starts.
        let texts = [record(16, 5, b"\x02ab"), record(16, 5, b"\x04abcd")];
        let refs: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
        let mut out = Vec::new();
        encode(&mut out, b"\x01a\x00", 0, 1, &[set(16, &refs, &[])]);
        let t = Node::new(&out).rrset(16).unwrap();
        assert_eq!((t.bare_ttl, t.rdlength), (Some(5), 0));
        assert_eq!(
            (t.record(0), t.record(1)),
            (texts[0].clone(), texts[1].clone())
        );
        let mut answered = Vec::new();
        t.write_all(1, &mut answered);
        assert_eq!(answered, [texts[1].clone(), texts[0].clone()].concat());

        let mixed = [record(1, 5, &[10, 0, 0, 1]), record(1, 6, &[10, 0, 0, 2])];
        let refs: Vec<&[u8]> = mixed.iter().map(Vec::as_slice).collect();
        let soa = record(6, 5, &[0; 22]);
        // Additional records of two types are stored whole too.
        let extras = [record(1, 5, &[10, 0, 0, 9]), record(28, 5, &[0; 16])];
        let sets = [
            set(1, &refs, &[&extras[0], &extras[1]]),
            set(6, &[&soa], &[]),
        ];
        let mut out = Vec::new();
        encode(&mut out, b"\x01a\x00", 0, 1, &sets);
        let node = Node::new(&out);
        for (rtype, records) in [(1, &mixed[..]), (6, std::slice::from_ref(&soa))] {
            let s = node.rrset(rtype).unwrap();
            assert_eq!(s.bare_ttl, None, "type {rtype} stored whole");
            let mut answered = Vec::new();
            s.write_all(0, &mut answered);
            assert_eq!(answered, records.concat());
        }
        let a = node.rrset(1).unwrap();
        assert_eq!(a.bare_extra, None);
        let mut answered = Vec::new();
        a.write_extras(&mut answered);
        assert_eq!(answered, extras.concat());
    }

    #[test]
    fn an_empty_non_terminal_has_no_sets() {
        let mut out = Vec::new();
        encode(&mut out, b"\x00", 0, 1, &[]);
        assert_eq!(entry_len(&out), out.len());
        assert_eq!(Node::new(&out).rrsets().count(), 0);
    }
}
