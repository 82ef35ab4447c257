//! One query in, one response out: the response rules of SPEC §2 applied to a compiled table.
//! Pure: no I/O, no locks, no allocation beyond the reused output buffer.

use crate::forward::{Forwarder, Question};
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
    /// Not answered here: forward zone `.0` of the forwarder takes it (nothing written).
    Forward(usize),
}

/// Writes the response to `packet` into `out` (cleared first). `table` is `None` before the
/// first snapshot. Returns what was written; `Dropped` means send nothing.
pub fn respond(
    table: Option<&AnswerTable>,
    packet: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> Outcome {
    respond_with(table, None, false, packet, transport, out)
}

/// [`respond`] with forward zones. A name goes to a forward zone when that zone is longer than
/// the authoritative zone holding it (an authoritative zone wins a tie, and a name that exists
/// in an authoritative zone is always answered there). `client_allowed` says whether the client
/// may use forward zones (`[dns] allow`); others get REFUSED.
pub fn respond_with(
    table: Option<&AnswerTable>,
    forwarder: Option<&Forwarder>,
    client_allowed: bool,
    packet: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> Outcome {
    respond_full(
        table,
        forwarder,
        client_allowed,
        None,
        packet,
        transport,
        out,
    )
}

/// [`respond_with`] with the server's NSID identity (RFC 5001): a query whose OPT record
/// carries the NSID option gets `nsid` back in the response's OPT record. Queries without the
/// option cost nothing more (the option is found while the OPT record is read anyway).
pub fn respond_full(
    table: Option<&AnswerTable>,
    forwarder: Option<&Forwarder>,
    client_allowed: bool,
    nsid: Option<&[u8]>,
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
    if let (Some(Edns { nsid: true, .. }), Some(id)) = (query.edns, nsid) {
        w.set_nsid(id);
    }
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
    // The forward zone for the name, if it is longer than `auth_len` (the authoritative zone).
    let forward_zone = |auth_len: usize| {
        forwarder
            .and_then(|f| f.find(name))
            .filter(|(_, len)| *len > auth_len)
            .map(|(zone, _)| zone)
    };
    let Some(table) = table else {
        // Forward zones do not wait for the first snapshot.
        if let Some(zone) = forward_zone(0) {
            return w.forward(zone, client_allowed);
        }
        w.finish(rcode::SERVFAIL as u16, false, false);
        return Outcome::ServFail;
    };
    match table.lookup(name) {
        Lookup::NotOurs => {
            if let Some(zone) = forward_zone(0) {
                return w.forward(zone, client_allowed);
            }
            w.finish(rcode::REFUSED as u16, false, false);
            Outcome::Refused
        }
        Lookup::NxDomain(zone) => {
            if let Some(fz) = forward_zone(zone.apex.len()) {
                return w.forward(fz, client_allowed);
            }
            count(zone);
            w.soa(zone, name.len());
            w.finish(rcode::NXDOMAIN as u16, true, false);
            Outcome::NxDomain
        }
        Lookup::Node(node, zone) => {
            count(zone);
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
                Some(set) if !set.is_empty() => {
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

fn count(zone: &Zone) {
    if let Some(c) = &zone.requests {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    fn answer(&mut self, set: &RrSet, rotation: usize) -> bool {
        let n = set.len();
        let (start, count) = match set.selection {
            Selection::Fixed => (0, n),
            Selection::Rotate => (rotation % n, n),
            Selection::One => (rotation % n, 1),
        };
        let room = self.limit.saturating_sub(self.out.len());
        let cut = set.starts[start] as usize;
        if count == n && set.wire.len() <= room {
            // The whole set fits: one copy, or two when it starts in the middle.
            self.out.extend_from_slice(&set.wire[cut..]);
            self.out.extend_from_slice(&set.wire[..cut]);
            self.an = n as u16;
        } else {
            for i in 0..count {
                let rec = set.record((start + i) % n);
                if self.out.len() + rec.len() > self.limit {
                    self.truncated = true;
                    return true;
                }
                self.out.extend_from_slice(rec);
                self.an += 1;
            }
        }
        // Additional data is optional: what does not fit is left out without TC (RFC 2181 9).
        if set.extra.len() <= self.limit.saturating_sub(self.out.len()) {
            self.out.extend_from_slice(&set.extra);
            self.ar += set.extra_len() as u16;
        } else {
            for i in 0..set.extra_len() {
                let extra = set.extra_record(i);
                if self.out.len() + extra.len() > self.limit {
                    break;
                }
                self.out.extend_from_slice(extra);
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

    /// Hands the query to forward zone `zone`, or refuses a client that may not use it.
    fn forward(self, zone: usize, client_allowed: bool) -> Outcome {
        if client_allowed {
            self.out.clear();
            Outcome::Forward(zone)
        } else {
            self.finish(rcode::REFUSED as u16, false, false);
            Outcome::Refused
        }
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

/// Re-reads a query the responder sent to a forward zone, as the forwarder's [`Question`].
pub fn forward_question<'a>(
    packet: &'a [u8],
    lower: &'a mut [u8; MAX_NAME],
) -> Option<Question<'a>> {
    let q = wire::parse_query(packet, lower).ok()?;
    Some(Question {
        id: q.id,
        question: q.question,
        lower_name: &lower[..q.name_len],
        qtype: q.qtype,
        qclass: q.qclass,
        edns: q.edns.is_some(),
        udp_limit: q.edns.map_or(512, |e| e.udp_size as usize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheLimits;
    use crate::forward::{ForwardZoneConfig, UpstreamPolicy};
    use crate::table::{SoaParams, TableBuilder};
    use crate::wire::encode_name;

    fn forwarder(zones: &[&str]) -> Forwarder {
        let cfg: Vec<ForwardZoneConfig> = zones
            .iter()
            .map(|z| ForwardZoneConfig {
                zone: (*z).into(),
                upstreams: vec!["192.0.2.1".into()],
                force_tcp: false,
                prefer_udp: false,
                policy: UpstreamPolicy::Random,
                health_check_ms: 500,
                max_fails: 2,
                timeout_ms: 100,
                max_concurrent: 10,
            })
            .collect();
        Forwarder::new(&cfg, CacheLimits::default()).unwrap()
    }

    /// A table serving `clusterset.local` with `a.clusterset.local` existing.
    fn table() -> AnswerTable {
        let mut b = TableBuilder::default();
        let apex = encode_name("clusterset.local").unwrap();
        let soa = SoaParams {
            mname: encode_name("ns.dns.clusterset.local").unwrap(),
            rname: encode_name("hostmaster.clusterset.local").unwrap(),
            serial: 1,
            refresh: 1,
            retry: 1,
            expire: 1,
            minimum: 5,
        };
        let zone = b.add_zone(&apex, &soa).unwrap();
        let owner = encode_name("a.clusterset.local").unwrap();
        b.add_ip(
            zone,
            &owner,
            "10.0.0.1".parse().unwrap(),
            5,
            Selection::Fixed,
        );
        b.build(1)
    }

    fn query(name: &str) -> Vec<u8> {
        let mut p = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(&encode_name(name).unwrap());
        p.extend_from_slice(&[0, 1, 0, 1]);
        p
    }

    fn route(table: Option<&AnswerTable>, f: &Forwarder, allowed: bool, name: &str) -> Outcome {
        respond_with(
            table,
            Some(f),
            allowed,
            &query(name),
            Transport::Udp,
            &mut Vec::new(),
        )
    }

    #[test]
    fn longest_zone_wins_and_authoritative_wins_a_tie() {
        let t = table();
        let f = forwarder(&[
            "cluster3.local",
            "sub.clusterset.local",
            "clusterset.local",
            ".",
        ]);
        let idx = |z: &str| f.find(&encode_name(z).unwrap()).unwrap().0;
        assert_eq!(
            route(Some(&t), &f, true, "web.cluster3.local"),
            Outcome::Forward(idx("x.cluster3.local"))
        );
        // A deeper forward zone under an authoritative zone takes its names...
        assert_eq!(
            route(Some(&t), &f, true, "x.sub.clusterset.local"),
            Outcome::Forward(idx("x.sub.clusterset.local"))
        );
        // ...but an authoritative zone wins over a forward zone of the same name.
        assert_eq!(
            route(Some(&t), &f, true, "nope.clusterset.local"),
            Outcome::NxDomain
        );
        assert_eq!(
            route(Some(&t), &f, true, "a.clusterset.local"),
            Outcome::Answer
        );
        // The root forward zone catches everything else.
        assert_eq!(
            route(Some(&t), &f, true, "example.com"),
            Outcome::Forward(idx("example.com"))
        );
        // Forward zones work before the first snapshot; authoritative names are SERVFAIL then.
        assert_eq!(
            route(None, &f, true, "web.cluster3.local"),
            Outcome::Forward(idx("x.cluster3.local"))
        );
        assert_eq!(
            route(
                None,
                &forwarder(&["cluster3.local"]),
                true,
                "a.clusterset.local"
            ),
            Outcome::ServFail
        );
    }

    #[test]
    fn rotated_sets_are_copied_whole_starting_one_further_each_time() {
        let mut b = TableBuilder::default();
        let soa = SoaParams {
            mname: encode_name("ns.dns.z").unwrap(),
            rname: encode_name("hostmaster.z").unwrap(),
            serial: 1,
            refresh: 1,
            retry: 1,
            expire: 1,
            minimum: 5,
        };
        let zone = b.add_zone(&encode_name("z").unwrap(), &soa).unwrap();
        let owner = encode_name("r.z").unwrap();
        for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            b.add_ip(zone, &owner, ip.parse().unwrap(), 5, Selection::Rotate);
        }
        let t = b.build(1);
        let last_octets = |out: &[u8]| -> Vec<u8> {
            // Each answer record: pointer (2), type, class, TTL, RDLENGTH (10), 4 bytes.
            let start = HEADER_LEN + owner.len() + 4;
            (0..3).map(|i| out[start + i * 16 + 15]).collect()
        };
        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut out = Vec::new();
            assert_eq!(
                respond(Some(&t), &query("r.z"), Transport::Udp, &mut out),
                Outcome::Answer
            );
            assert_eq!(&out[6..8], &[0, 3], "three answers");
            seen.push(last_octets(&out));
        }
        assert_eq!(seen, vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]);
    }

    #[test]
    fn clients_outside_allow_are_refused_forwarding_but_get_authoritative_answers() {
        let t = table();
        let f = forwarder(&["cluster3.local"]);
        let mut out = Vec::new();
        let outcome = respond_with(
            Some(&t),
            Some(&f),
            false,
            &query("web.cluster3.local"),
            Transport::Udp,
            &mut out,
        );
        assert_eq!(outcome, Outcome::Refused);
        assert_eq!(out[3] & 0x0f, rcode::REFUSED);
        assert_eq!(
            route(Some(&t), &f, false, "a.clusterset.local"),
            Outcome::Answer
        );
    }

    /// RFC 5001: the identity comes back only when the query carries the NSID option, in the
    /// response's OPT record (option code 3), and never without EDNS.
    #[test]
    fn nsid_is_answered_only_when_asked() {
        let t = table();
        let with_opt = |options: &[u8]| {
            let mut p = query("a.clusterset.local");
            p[11] = 1;
            p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
            p.extend_from_slice(&(options.len() as u16).to_be_bytes());
            p.extend_from_slice(options);
            p
        };
        let run = |p: &[u8], nsid: Option<&[u8]>| {
            let mut out = Vec::new();
            let o = respond_full(Some(&t), None, false, nsid, p, Transport::Udp, &mut out);
            assert_eq!(o, Outcome::Answer);
            out
        };
        let asked = run(&with_opt(&[0, 3, 0, 0]), Some(b"dns-1"));
        assert!(asked.ends_with(&[0, 9, 0, 3, 0, 5, b'd', b'n', b's', b'-', b'1']));
        assert_eq!(&asked[10..12], &[0, 1], "one additional record: the OPT");
        let not_asked = run(
            &with_opt(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]),
            Some(b"dns-1"),
        );
        assert!(not_asked.ends_with(&[0, 0, 0, 0, 0]), "OPT without options");
        let no_edns = run(&query("a.clusterset.local"), Some(b"dns-1"));
        assert_eq!(&no_edns[10..12], &[0, 0], "no OPT without EDNS");
        let empty = run(&with_opt(&[0, 3, 0, 0]), Some(b""));
        assert!(
            empty.ends_with(&[0, 0, 0, 0, 0]),
            "an empty identity is not sent"
        );
    }
}
