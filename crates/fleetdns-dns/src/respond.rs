//! Answers from tables only: the response rules of SPEC §2 applied to a compiled table, for a
//! query the request path parsed once and the zone catalog sent here. Pure: no I/O, no locks,
//! no allocation beyond the reused output buffer, no metrics, no forwarding.

use crate::request::{ADVERTISED_UDP_SIZE, Outcome, Request, Transport};
use crate::table::{AnswerTable, Lookup, RrSet, Selection, Zone};
use crate::wire::{
    CLASS_ANY, CLASS_IN, Edns, HEADER_LEN, MAX_NAME, ParseError, Query, rcode, rtype,
};

/// Where the zone catalog sent a question that is answered here.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'t> {
    /// No answer table yet (before the first snapshot): SERVFAIL.
    NoTable,
    /// The table's lookup of the name; a name in no served zone is REFUSED.
    Table(&'t AnswerTable, Lookup<'t>),
    /// A forward zone the client may not use (`[dns] allow`): REFUSED.
    ForwardRefused,
}

impl<'t> Destination<'t> {
    /// The destination of `name` with authoritative zones alone.
    #[inline]
    pub fn in_table(table: Option<&'t AnswerTable>, name: &[u8]) -> Self {
        match table {
            None => Destination::NoTable,
            Some(t) => Destination::Table(t, t.lookup(name)),
        }
    }
}

/// What the responder wrote, and the authoritative zone that answered (its apex, lower-case
/// wire form), for the per-zone count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered<'t> {
    pub outcome: Outcome,
    pub zone: Option<&'t [u8]>,
}

/// Parses `packet` and answers it from `table` alone (no forward zones, no NSID). `table` is
/// `None` before the first snapshot. Returns what was written; `Dropped` means send nothing.
pub fn respond(
    table: Option<&AnswerTable>,
    packet: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> Outcome {
    let mut lower = [0u8; MAX_NAME];
    match Request::parse(packet, transport, &mut lower) {
        Ok(request) => {
            let destination = Destination::in_table(table, request.lower_name);
            answer(&request, destination, None, out).outcome
        }
        Err(e) => unparsed(e, out),
    }
}

/// The response to a packet that did not parse: FORMERR or NOTIMP with the header alone, or
/// nothing (`Dropped`). `out` is cleared first.
pub fn unparsed(error: ParseError, out: &mut Vec<u8>) -> Outcome {
    out.clear();
    match error {
        ParseError::Drop => Outcome::Dropped,
        ParseError::FormErr { id, opcode, rd } => {
            header_only(out, id, opcode, rd, rcode::FORMERR);
            Outcome::FormErr
        }
        ParseError::NotImp { id, opcode, rd } => {
            header_only(out, id, opcode, rd, rcode::NOTIMP);
            Outcome::NotImp
        }
    }
}

/// Whether a query may go to a forward zone at all: one the responder would not refuse or
/// reject before looking at its name (EDNS version, class, type OPT).
#[inline]
pub fn forwardable(request: &Request<'_>) -> bool {
    let q = &request.query;
    !matches!(q.edns, Some(Edns { version, .. }) if version > 0)
        && (q.qclass == CLASS_IN || q.qclass == CLASS_ANY)
        && q.qtype != rtype::OPT
}

/// Writes the response to `request` into `out` (cleared first). `nsid` is the server's
/// identity (RFC 5001): a query whose OPT record carries the NSID option gets it back in the
/// response's OPT record; queries without the option cost nothing more.
#[inline]
pub fn answer<'t>(
    request: &Request<'_>,
    destination: Destination<'t>,
    nsid: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Answered<'t> {
    out.clear();
    let query = &request.query;
    let name = request.lower_name;
    let local = |outcome| Answered {
        outcome,
        zone: None,
    };
    let mut w = Writer::start(out, query, request.size_limit());
    if let (true, Some(id)) = (request.wants_nsid(), nsid) {
        w.set_nsid(id);
    }
    if let Some(Edns { version, .. }) = query.edns
        && version > 0
    {
        w.finish(rcode::BADVERS, false, false);
        return local(Outcome::FormErr);
    }
    if query.qclass != CLASS_IN && query.qclass != CLASS_ANY {
        w.finish(rcode::REFUSED as u16, false, false);
        return local(Outcome::Refused);
    }
    if query.qtype == rtype::OPT {
        w.finish(rcode::FORMERR as u16, false, false);
        return local(Outcome::FormErr);
    }
    let (table, lookup) = match destination {
        Destination::NoTable => {
            w.finish(rcode::SERVFAIL as u16, false, false);
            return local(Outcome::ServFail);
        }
        Destination::ForwardRefused => {
            w.finish(rcode::REFUSED as u16, false, false);
            return local(Outcome::Refused);
        }
        Destination::Table(table, lookup) => (table, lookup),
    };
    match lookup {
        Lookup::NotOurs => {
            w.finish(rcode::REFUSED as u16, false, false);
            local(Outcome::Refused)
        }
        Lookup::NxDomain(zone) => {
            w.soa(zone, name.len());
            w.finish(rcode::NXDOMAIN as u16, true, false);
            in_zone(Outcome::NxDomain, zone)
        }
        Lookup::Node(node, zone) => {
            if matches!(query.qtype, rtype::AXFR | rtype::IXFR) {
                w.finish(rcode::REFUSED as u16, false, false);
                return in_zone(Outcome::Refused, zone);
            }
            let set = if query.qtype == rtype::ANY {
                // RFC 8482: one RRset is a complete answer to ANY.
                node.rrsets().next()
            } else {
                node.rrset(query.qtype)
            };
            match set {
                Some(set) if !set.is_empty() => {
                    let tc = w.answer(set, table.next_rotation());
                    w.finish(rcode::NOERROR as u16, true, tc);
                    in_zone(Outcome::Answer, zone)
                }
                // K8S-21: a known name without this type is NODATA, never NXDOMAIN.
                _ => {
                    w.soa(zone, name.len());
                    w.finish(rcode::NOERROR as u16, true, false);
                    in_zone(Outcome::NoData, zone)
                }
            }
        }
    }
}

fn in_zone(outcome: Outcome, zone: &Zone) -> Answered<'_> {
    Answered {
        outcome,
        zone: Some(&zone.apex),
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
    /// The NSID to put in the OPT record (asked for, and configured).
    nsid: Option<&'a [u8]>,
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
            nsid: None,
        }
    }

    /// Answers the NSID option with `id` (at most 512 bytes are sent), keeping room for it.
    fn set_nsid(&mut self, id: &'a [u8]) {
        if !self.edns || id.is_empty() {
            return;
        }
        let id = &id[..id.len().min(512)];
        self.limit = self.limit.saturating_sub(4 + id.len());
        self.nsid = Some(id);
    }

    /// The answer section; returns whether it had to be cut (TC).
    fn answer(&mut self, set: RrSet<'_>, rotation: usize) -> bool {
        let n = set.len();
        let (start, count) = match set.selection {
            Selection::Fixed => (0, n),
            Selection::Rotate => (rotation % n, n),
            Selection::One => (rotation % n, 1),
        };
        let room = self.limit.saturating_sub(self.out.len());
        if count == n && set.answer_len() <= room {
            set.write_all(start, self.out);
            self.an = n as u16;
        } else {
            for i in 0..count {
                let at = (start + i) % n;
                if self.out.len() + set.record_len(at) > self.limit {
                    self.truncated = true;
                    return true;
                }
                set.write_record(at, self.out);
                self.an += 1;
            }
        }
        // Additional data is optional: what does not fit is left out without TC (RFC 2181 9).
        if set.extras_len() <= self.limit.saturating_sub(self.out.len()) {
            set.write_extras(self.out);
            self.ar += set.extra_len() as u16;
        } else {
            for i in 0..set.extra_len() {
                if self.out.len() + set.extra_record_len(i) > self.limit {
                    break;
                }
                set.write_extra(i, self.out);
                self.ar += 1;
            }
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
            match self.nsid {
                None => self.out.extend_from_slice(&[0, 0, 0, 0, 0]), // version 0, flags, RDLENGTH 0
                Some(id) => {
                    self.out.extend_from_slice(&[0, 0, 0]); // version 0, flags
                    // RFC 5001: option code 3, the identity as opaque bytes.
                    let len = id.len() as u16;
                    self.out.extend_from_slice(&(4 + len).to_be_bytes());
                    self.out
                        .extend_from_slice(&crate::wire::OPTION_NSID.to_be_bytes());
                    self.out.extend_from_slice(&len.to_be_bytes());
                    self.out.extend_from_slice(id);
                }
            }
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::table::{SoaParams, TableBuilder};
    use crate::wire::{encode_name, prefix_name};

    /// SRV records at `srv.z.test`: one per target, each target with an A and an AAAA record
    /// in the additional section.
    const TARGETS: usize = 30;

    /// Zone `z.test` with a long SOA (480 bytes: a negative answer with EDNS is over 512
    /// bytes) and `srv.z.test` holding [`TARGETS`] SRV records (about 850 bytes of answers).
    fn table() -> AnswerTable {
        let mut b = TableBuilder::default();
        let apex = encode_name("z.test").unwrap();
        // `first` and `labels` labels of 59 bytes under the apex.
        let long = |first: &str, labels: usize| {
            let label = "x".repeat(59);
            let mut name = vec![first];
            name.extend(std::iter::repeat_n(label.as_str(), labels));
            prefix_name(&name, &apex).unwrap()
        };
        let soa = SoaParams {
            mname: long("ns", 4),
            rname: long("hostmaster", 3),
            serial: 1,
            refresh: 1,
            retry: 1,
            expire: 1,
            minimum: 5,
        };
        let zone = b.add_zone(&apex, &soa).unwrap();
        let owner = encode_name("srv.z.test").unwrap();
        for i in 0..TARGETS {
            let target = prefix_name(&[&format!("host-{i}")], &owner).unwrap();
            let ips = [
                IpAddr::from([10, 0, 0, i as u8]),
                IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, i as u16]),
            ];
            b.add_srv(zone, &owner, 5, 3, 80, &target, &ips);
        }
        b.build(1)
    }

    /// A query for `name`; `edns` is the advertised UDP size (the query then asks for the
    /// NSID too).
    fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut p = vec![
            0x12,
            0x34,
            1,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(edns.is_some()),
        ];
        p.extend_from_slice(&encode_name(name).unwrap());
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        if let Some(size) = edns {
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&size.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 0, 0, 4, 0, 3, 0, 0]);
        }
        p
    }

    fn ask(t: &AnswerTable, packet: &[u8], transport: Transport, nsid: Option<&[u8]>) -> Vec<u8> {
        let mut lower = [0u8; MAX_NAME];
        let request = Request::parse(packet, transport, &mut lower).unwrap();
        let mut out = Vec::new();
        answer(
            &request,
            Destination::in_table(Some(t), request.lower_name),
            nsid,
            &mut out,
        );
        out
    }

    fn count(msg: &[u8], at: usize) -> usize {
        usize::from(u16::from_be_bytes([msg[at], msg[at + 1]]))
    }

    fn skip_name(msg: &[u8], mut at: usize) -> usize {
        loop {
            match msg[at] {
                0 => return at + 1,
                l if l & 0xc0 == 0xc0 => return at + 2,
                l => at += 1 + usize::from(l),
            }
        }
    }

    /// Where the question of `msg` ends, and where each of its resource records ends.
    fn record_ends(msg: &[u8]) -> (usize, Vec<usize>) {
        let question_end = skip_name(msg, HEADER_LEN) + 4;
        let mut at = question_end;
        let records = count(msg, 6) + count(msg, 8) + count(msg, 10);
        let ends = (0..records)
            .map(|_| {
                at = skip_name(msg, at) + 8;
                at += 2 + count(msg, at);
                at
            })
            .collect();
        (question_end, ends)
    }

    /// SPEC §8: a UDP response is at most the client's EDNS size (512 without EDNS) and holds
    /// every record that fits: the answer and authority sections whole, or cut with TC; then
    /// as many additional records as still fit, without TC (RFC 2181 9). Room is kept for the
    /// OPT record and the NSID option (RFC 5001). Checked at every size from 512 to the whole
    /// response, against the response over TCP, whose sections hold `sections` records (answer,
    /// authority, additional without the OPT).
    fn fills_the_size_and_no_more(
        t: &AnswerTable,
        name: &str,
        qtype: u16,
        sections: (usize, usize, usize),
        edns: bool,
        nsid: Option<&[u8]>,
    ) {
        let opt_len = match (edns, nsid) {
            (false, _) => 0,
            (true, None) => 11,
            (true, Some(id)) => 11 + 4 + id.len(),
        };
        let full = ask(
            t,
            &query(name, qtype, edns.then_some(512)),
            Transport::Tcp,
            nsid,
        );
        let (question_end, ends) = record_ends(&full);
        let (an, ns, extras) = sections;
        assert_eq!(
            (count(&full, 6), count(&full, 8), count(&full, 10)),
            (an, ns, extras + usize::from(edns)),
            "{name}: the whole response"
        );
        assert_eq!(
            ends.last(),
            Some(&full.len()),
            "{name}: its records fill it"
        );
        assert_eq!(full[2] & 0x02, 0, "{name}: no TC over TCP");
        let sizes = if edns {
            512..=full.len() + 1
        } else {
            512..=512
        };
        for size in sizes {
            let got = ask(
                t,
                &query(name, qtype, edns.then_some(size as u16)),
                Transport::Udp,
                nsid,
            );
            assert!(got.len() <= size, "{name}: {} bytes at {size}", got.len());
            let fits = |i: &usize| ends[*i] + opt_len <= size;
            let kept_main = (0..an + ns).take_while(fits).count();
            let (kept, tc, counts) = if kept_main < an + ns {
                let kept_an = kept_main.min(an);
                (kept_main, true, [kept_an, kept_main - kept_an, 0])
            } else {
                let kept_extras = (an + ns..an + ns + extras).take_while(fits).count();
                (an + ns + kept_extras, false, [an, ns, kept_extras])
            };
            let body_end = if kept == 0 {
                question_end
            } else {
                ends[kept - 1]
            };
            let mut want = full[..body_end].to_vec();
            want.extend_from_slice(&full[full.len() - opt_len..]);
            if tc {
                want[2] |= 0x02;
            }
            for (i, n) in counts.into_iter().enumerate() {
                let n = n + usize::from(i == 2 && edns);
                want[6 + 2 * i..8 + 2 * i].copy_from_slice(&(n as u16).to_be_bytes());
            }
            assert_eq!(got, want, "{name} at {size} bytes, NSID {nsid:?}");
        }
    }

    #[test]
    fn a_udp_answer_fills_the_clients_size_and_no_more() {
        let t = table();
        for nsid in [None, Some(&b"dns-1"[..])] {
            for edns in [true, false] {
                let name = "srv.z.test";
                fills_the_size_and_no_more(
                    &t,
                    name,
                    rtype::SRV,
                    (TARGETS, 0, 2 * TARGETS),
                    edns,
                    nsid,
                );
                // K8S-21 NODATA and NXDOMAIN: the SOA alone, in the authority section.
                fills_the_size_and_no_more(&t, name, rtype::TXT, (0, 1, 0), edns, nsid);
                fills_the_size_and_no_more(&t, "nope.z.test", rtype::A, (0, 1, 0), edns, nsid);
            }
        }
    }
}
