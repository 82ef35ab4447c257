//! One query in, one response out: the response rules of SPEC §2 applied to a compiled table.
//! Pure: no I/O, no locks, no allocation beyond the reused output buffer.

use crate::table::{AnswerTable, Lookup, RrSet, Selection, Zone};
use crate::wire::{
    self, CLASS_ANY, CLASS_IN, Edns, HEADER_LEN, MAX_NAME, ParseError, Query, rcode, rtype,
};

/// The EDNS UDP payload size fleetdns advertises (DNS flag day 2020).
pub const ADVERTISED_UDP_SIZE: u16 = 1232;
/// The largest UDP answer fleetdns sends, whatever the client advertises.
pub const MAX_UDP_SIZE: usize = 4096;

/// How the answer travels: UDP answers are cut to the client's size, TCP carries everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What kind of answer was written, for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answer,
    NoData,
    NxDomain,
    Refused,
    ServFail,
    FormErr,
    NotImp,
    /// Nothing to send (not a query).
    Dropped,
}

/// Writes the response to `packet` into `out` (cleared first). `table` is `None` before the
/// first snapshot. Returns what was written; `Dropped` means send nothing.
pub fn respond(
    table: Option<&AnswerTable>,
    packet: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> Outcome {
    out.clear();
    let mut lower = [0u8; MAX_NAME];
    let query = match wire::parse_query(packet, &mut lower) {
        Ok(q) => q,
        Err(ParseError::Drop) => return Outcome::Dropped,
        Err(ParseError::FormErr { id, opcode, rd }) => {
            header_only(out, id, opcode, rd, rcode::FORMERR);
            return Outcome::FormErr;
        }
        Err(ParseError::NotImp { id, opcode, rd }) => {
            header_only(out, id, opcode, rd, rcode::NOTIMP);
            return Outcome::NotImp;
        }
    };
    let name = &lower[..query.name_len];
    let limit = match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => match query.edns {
            Some(e) => (e.udp_size as usize).min(MAX_UDP_SIZE),
            None => 512,
        },
    };
    let mut w = Writer::start(out, &query, limit);
    if let Some(Edns { version, .. }) = query.edns
        && version > 0
    {
        w.finish(rcode::BADVERS, false, false);
        return Outcome::FormErr;
    }
    if query.qclass != CLASS_IN && query.qclass != CLASS_ANY {
        w.finish(rcode::REFUSED as u16, false, false);
        return Outcome::Refused;
    }
    if query.qtype == rtype::OPT {
        w.finish(rcode::FORMERR as u16, false, false);
        return Outcome::FormErr;
    }
    let Some(table) = table else {
        w.finish(rcode::SERVFAIL as u16, false, false);
        return Outcome::ServFail;
    };
    match table.lookup(name) {
        Lookup::NotOurs => {
            w.finish(rcode::REFUSED as u16, false, false);
            Outcome::Refused
        }
        Lookup::NxDomain(zone) => {
            w.soa(zone, name.len());
            w.finish(rcode::NXDOMAIN as u16, true, false);
            Outcome::NxDomain
        }
        Lookup::Node(node, zone) => {
            if matches!(query.qtype, rtype::AXFR | rtype::IXFR) {
                w.finish(rcode::REFUSED as u16, false, false);
                return Outcome::Refused;
            }
            let set = if query.qtype == rtype::ANY {
                // RFC 8482: one RRset is a complete answer to ANY.
                node.rrsets.first()
            } else {
                node.rrsets.iter().find(|r| r.rtype == query.qtype)
            };
            match set {
                Some(set) if !set.records.is_empty() => {
                    let tc = w.answer(set, table.next_rotation());
                    w.finish(rcode::NOERROR as u16, true, tc);
                    Outcome::Answer
                }
                // K8S-21: a known name without this type is NODATA, never NXDOMAIN.
                _ => {
                    w.soa(zone, name.len());
                    w.finish(rcode::NOERROR as u16, true, false);
                    Outcome::NoData
                }
            }
        }
    }
}

/// A response with the header alone (the question could not be read).
fn header_only(out: &mut Vec<u8>, id: u16, opcode: u8, rd: bool, rcode: u8) {
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0x80 | (opcode << 3) | u8::from(rd));
    out.push(rcode);
    out.extend_from_slice(&[0; 8]);
}

/// Appends sections while they fit in `limit`.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
    name_len: usize,
    edns: bool,
    an: u16,
    ns: u16,
    ar: u16,
    truncated: bool,
}

/// Bytes the OPT record takes.
const OPT_LEN: usize = 11;

impl<'a> Writer<'a> {
    fn start(out: &'a mut Vec<u8>, q: &Query<'_>, limit: usize) -> Self {
        out.extend_from_slice(&q.id.to_be_bytes());
        out.push(0x80 | (q.opcode << 3) | u8::from(q.rd));
        out.push(if q.cd { 0x10 } else { 0 });
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(q.question);
        let edns = q.edns.is_some();
        Self {
            out,
            limit: limit - if edns { OPT_LEN } else { 0 },
            name_len: q.name_len,
            edns,
            an: 0,
            ns: 0,
            ar: 0,
            truncated: false,
        }
    }

    /// One record owned by the question name.
    fn push_owned(&mut self, rec: &[u8]) -> bool {
        if self.out.len() + 2 + rec.len() > self.limit {
            return false;
        }
        self.out.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
        self.out.extend_from_slice(rec);
        true
    }

    /// The answer section; returns whether it had to be cut (TC).
    fn answer(&mut self, set: &RrSet, rotation: usize) -> bool {
        let n = set.records.len();
        let (start, count) = match set.selection {
            Selection::Fixed => (0, n),
            Selection::Rotate => (rotation % n, n),
            Selection::One => (rotation % n, 1),
        };
        for i in 0..count {
            if !self.push_owned(&set.records[(start + i) % n]) {
                self.truncated = true;
                return true;
            }
            self.an += 1;
        }
        // Additional data is optional: what does not fit is left out without TC (RFC 2181 9).
        for extra in &set.additional {
            if self.out.len() + extra.len() > self.limit {
                break;
            }
            self.out.extend_from_slice(extra);
            self.ar += 1;
        }
        false
    }

    /// The zone's SOA in the authority section, its owner a pointer into the question name.
    fn soa(&mut self, zone: &Zone, name_len: usize) {
        debug_assert_eq!(name_len, self.name_len);
        let owner_offset = HEADER_LEN + self.name_len - zone.apex.len();
        if self.out.len() + 2 + zone.soa.len() > self.limit {
            self.truncated = true;
            return;
        }
        self.out
            .extend_from_slice(&(0xc000 | owner_offset as u16).to_be_bytes());
        self.out.extend_from_slice(&zone.soa);
        self.ns += 1;
    }

    fn finish(mut self, rcode: u16, aa: bool, tc: bool) {
        if self.edns {
            self.out.extend_from_slice(&[0, 0, 41]);
            self.out
                .extend_from_slice(&ADVERTISED_UDP_SIZE.to_be_bytes());
            self.out.push((rcode >> 4) as u8); // extended rcode
            self.out.extend_from_slice(&[0, 0, 0, 0, 0]); // version 0, flags, RDLENGTH 0
            self.ar += 1;
        }
        let flags = &mut self.out[2..4];
        if aa {
            flags[0] |= 0x04;
        }
        if tc || self.truncated {
            flags[0] |= 0x02;
        }
        flags[1] |= (rcode & 0x0f) as u8;
        self.out[6..8].copy_from_slice(&self.an.to_be_bytes());
        self.out[8..10].copy_from_slice(&self.ns.to_be_bytes());
        self.out[10..12].copy_from_slice(&self.ar.to_be_bytes());
    }
}
