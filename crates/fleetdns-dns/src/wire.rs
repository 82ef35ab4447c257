//! Just enough of the DNS wire format (RFC 1035, RFC 6891) to read a query and write answers.
//! Parsing never panics and never loops: every read is bounds-checked and names in the
//! question may not use compression pointers (no real client compresses the first name).

/// Resource record types fleetdns serves or recognises.
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
}

pub const CLASS_IN: u16 = 1;
pub const CLASS_ANY: u16 = 255;

/// Response codes (the low four bits; BADVERS needs the OPT extension).
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
    /// Extended (RFC 6891): 16, sent as 0 in the header and 1 in the OPT record.
    pub const BADVERS: u16 = 16;
}

pub const HEADER_LEN: usize = 12;
/// Longest name on the wire, root label included.
pub const MAX_NAME: usize = 255;

/// The parts of a query the responder needs.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    pub cd: bool,
    /// The question section exactly as received (name, type, class), to echo it back.
    pub question: &'a [u8],
    /// Length of the name inside `question`.
    pub name_len: usize,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    /// The query carries the NSID option (RFC 5001): the server's identity is requested.
    pub nsid: bool,
}

/// EDNS option code of NSID (RFC 5001).
pub const OPTION_NSID: u16 = 3;

/// Whether the OPT RDATA `options` holds an NSID option. Bounded by the RDATA; a cut option
/// ends the walk.
fn has_nsid(mut options: &[u8]) -> bool {
    while let [c0, c1, l0, l1, rest @ ..] = options {
        if u16::from_be_bytes([*c0, *c1]) == OPTION_NSID {
            return true;
        }
        options = rest
            .get(u16::from_be_bytes([*l0, *l1]) as usize..)
            .unwrap_or_default();
    }
    false
}

/// Why a packet is not a query fleetdns can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Too short for a header, or a response (QR set): not answered at all.
    Drop,
    /// A header we can answer with FORMERR; `question` is echoed when it parsed.
    FormErr { id: u16, opcode: u8, rd: bool },
    /// Not a QUERY: answered NOTIMP.
    NotImp { id: u16, opcode: u8, rd: bool },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads a query. `lower` receives the question name in lower case (wire form, root included).
pub fn parse_query<'a>(
    packet: &'a [u8],
    lower: &mut [u8; MAX_NAME],
) -> Result<Query<'a>, ParseError> {
    if packet.len() < HEADER_LEN {
        return Err(ParseError::Drop);
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = packet[2];
    if flags & 0x80 != 0 {
        return Err(ParseError::Drop); // a response: never answer one (reflection loops)
    }
    let opcode = (flags >> 3) & 0x0f;
    let rd = flags & 0x01 != 0;
    let cd = packet[3] & 0x10 != 0;
    let formerr = ParseError::FormErr { id, opcode, rd };
    if opcode != 0 {
        return Err(ParseError::NotImp { id, opcode, rd });
    }
    let qdcount = u16_at(packet, 4).unwrap_or(0);
    let ancount = u16_at(packet, 6).unwrap_or(0);
    let nscount = u16_at(packet, 8).unwrap_or(0);
    let arcount = u16_at(packet, 10).unwrap_or(0);
    if qdcount != 1 {
        return Err(formerr);
    }
    let name_len = read_question_name(packet, HEADER_LEN, lower).ok_or(formerr)?;
    let mut pos = HEADER_LEN + name_len;
    let qtype = u16_at(packet, pos).ok_or(formerr)?;
    let qclass = u16_at(packet, pos + 2).ok_or(formerr)?;
    pos += 4;
    let question = &packet[HEADER_LEN..pos];
    for _ in 0..(u32::from(ancount) + u32::from(nscount)) {
        pos = skip_rr(packet, pos).ok_or(formerr)?.0;
    }
    let mut edns = None;
    for _ in 0..arcount {
        let (next, rr_type, owner_root, class, ttl, rdata) = skip_rr(packet, pos).ok_or(formerr)?;
        if rr_type == rtype::OPT {
            if edns.is_some() || !owner_root {
                return Err(formerr); // RFC 6891 6.1.1: one OPT, owned by the root
            }
            let options = &packet[rdata..next];
            edns = Some(Edns {
                udp_size: class.max(512),
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
                nsid: !options.is_empty() && has_nsid(options),
            });
        }
        pos = next;
    }
    Ok(Query {
        id,
        opcode,
        rd,
        cd,
        question,
        name_len,
        qtype,
        qclass,
        edns,
    })
}

/// The type of the question of a packet that did not parse, for counting (a cold path): `None`
/// unless the packet holds exactly one question whose name can be read.
pub fn question_type(packet: &[u8]) -> Option<u16> {
    if packet.get(4..6) != Some(&[0, 1]) {
        return None;
    }
    let mut scratch = [0u8; MAX_NAME];
    let name_len = read_question_name(packet, HEADER_LEN, &mut scratch)?;
    u16_at(packet, HEADER_LEN + name_len)
}

/// Reads an uncompressed name at `start`, writing it lower-cased into `lower`. Returns its length.
/// The labels are walked first (lengths only), then the whole name is copied and lower-cased in
/// one pass: length bytes are at most 63, below `A`, so lower-casing leaves them alone.
fn read_question_name(packet: &[u8], start: usize, lower: &mut [u8; MAX_NAME]) -> Option<usize> {
    let mut pos = start;
    loop {
        let len = *packet.get(pos)? as usize;
        if len & 0xc0 != 0 {
            return None; // compression pointer or reserved label type in the question
        }
        let end = pos + 1 + len;
        if end - start > MAX_NAME || end > packet.len() {
            return None;
        }
        pos = end;
        if len == 0 {
            break;
        }
    }
    let name_len = pos - start;
    let out = &mut lower[..name_len];
    out.copy_from_slice(&packet[start..pos]);
    for b in out.iter_mut() {
        *b |= u8::from(b.wrapping_sub(b'A') < 26) << 5;
    }
    Some(name_len)
}

/// Skips a resource record. Returns (next offset, type, owner is root, class, ttl, RDATA offset).
fn skip_rr(packet: &[u8], pos: usize) -> Option<(usize, u16, bool, u16, u32, usize)> {
    let owner_start = pos;
    let pos = skip_name(packet, pos)?;
    let owner_root = pos == owner_start + 1;
    let rr_type = u16_at(packet, pos)?;
    let class = u16_at(packet, pos + 2)?;
    let ttl = u32::from(u16_at(packet, pos + 4)?) << 16 | u32::from(u16_at(packet, pos + 6)?);
    let rdlen = u16_at(packet, pos + 8)? as usize;
    let end = pos + 10 + rdlen;
    if end > packet.len() {
        return None;
    }
    Some((end, rr_type, owner_root, class, ttl, pos + 10))
}

/// Skips a possibly compressed name at `start` and returns the offset after it. A pointer ends
/// the name and is never followed, so this cannot loop. `None` when the name runs past the
/// packet, uses a reserved label type or is longer than a name may be: its labels before the
/// root or the pointer take 255 octets or more (the root, or the name pointed at, adds at least
/// one). The one walker over names in received messages (the question name itself is read by
/// `read_question_name`, which also lower-cases it).
pub fn skip_name(packet: &[u8], start: usize) -> Option<usize> {
    let mut pos = start;
    loop {
        let len = *packet.get(pos)? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + len,
            0xc0 => return Some(pos + 2),
            _ => return None,
        }
        if pos - start >= MAX_NAME {
            return None;
        }
    }
}

/// Why a name could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name {0:?} has an empty label")]
    EmptyLabel(String),
    #[error("name {0:?} has a label longer than 63 bytes")]
    LabelTooLong(String),
    #[error("name {0:?} is longer than 255 bytes on the wire")]
    TooLong(String),
}

/// Encodes a dotted name (trailing dot optional) in lower-case wire form, root label included.
pub fn encode_name(dotted: &str) -> Result<Vec<u8>, NameError> {
    let trimmed = dotted.strip_suffix('.').unwrap_or(dotted);
    let mut out = Vec::with_capacity(trimmed.len() + 2);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel(dotted.to_owned()));
            }
            if label.len() > 63 {
                return Err(NameError::LabelTooLong(dotted.to_owned()));
            }
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    if out.len() > MAX_NAME {
        return Err(NameError::TooLong(dotted.to_owned()));
    }
    Ok(out)
}

/// Prepends labels to a wire name: `prefix_name(&["_http", "_tcp"], web.ns.svc.z.)`.
pub fn prefix_name(labels: &[&str], base: &[u8]) -> Result<Vec<u8>, NameError> {
    let mut out = Vec::with_capacity(base.len() + 16);
    for label in labels {
        if label.is_empty() {
            return Err(NameError::EmptyLabel(labels.join(".")));
        }
        if label.len() > 63 {
            return Err(NameError::LabelTooLong(labels.join(".")));
        }
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.extend_from_slice(base);
    if out.len() > MAX_NAME {
        return Err(NameError::TooLong(display_name(&out)));
    }
    Ok(out)
}

/// Offsets of every label start in a wire name (the root label's offset last).
pub fn label_offsets(name: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut pos = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || pos >= name.len() {
            return None;
        }
        let at = pos;
        let len = name[pos] as usize;
        if len == 0 {
            done = true;
        }
        pos += 1 + len;
        Some(at)
    })
}

/// Writes `target` compressed against `owner`, where `owner` sits at `owner_offset` in the
/// message: the longest common suffix (at label boundaries) becomes a pointer, if its offset
/// fits a pointer's 14 bits (at most 0x3fff).
pub fn write_name_against(out: &mut Vec<u8>, target: &[u8], owner: &[u8], owner_offset: usize) {
    for t_off in label_offsets(target) {
        let suffix = &target[t_off..];
        if suffix.len() == 1 {
            break; // the root alone is cheaper written than pointed at
        }
        if owner.len() >= suffix.len() {
            let o_off = owner.len() - suffix.len();
            if &owner[o_off..] == suffix && label_offsets(owner).any(|x| x == o_off) {
                let ptr = owner_offset + o_off;
                if ptr <= 0x3fff {
                    out.extend_from_slice(&target[..t_off]);
                    out.extend_from_slice(&(0xc000 | ptr as u16).to_be_bytes());
                    return;
                }
            }
        }
    }
    out.extend_from_slice(target);
}

/// `a.b.c.` for a wire name, for logs and tests. Bytes that are not a whole name (a label
/// running past the end) show as far as they go.
pub fn display_name(name: &[u8]) -> String {
    let mut s = String::new();
    for off in label_offsets(name) {
        let len = name[off] as usize;
        if len == 0 {
            break;
        }
        let label = name.get(off + 1..off + 1 + len).unwrap_or(&name[off + 1..]);
        s.push_str(&String::from_utf8_lossy(label));
        s.push('.');
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        p
    }

    #[test]
    fn parses_a_query_and_lowercases_the_name() {
        let name = b"\x03WeB\x07DeFault\x00";
        let p = query(name, rtype::A);
        let mut lower = [0u8; MAX_NAME];
        let q = parse_query(&p, &mut lower).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(q.rd);
        assert_eq!(q.qtype, rtype::A);
        assert_eq!(&lower[..q.name_len], b"\x03web\x07default\x00");
        assert_eq!(
            &q.question[..q.name_len],
            name,
            "the question keeps its case"
        );
        assert!(q.edns.is_none());
    }

    #[test]
    fn reads_edns() {
        let mut p = query(b"\x00", rtype::A);
        p[11] = 1;
        p.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 0]);
        let mut lower = [0u8; MAX_NAME];
        let q = parse_query(&p, &mut lower).unwrap();
        assert_eq!(
            q.edns,
            Some(Edns {
                udp_size: 4096,
                version: 0,
                dnssec_ok: true,
                nsid: false,
            })
        );
        // RFC 5001: an NSID option (empty, as clients send it) after a cookie option.
        let mut p = query(b"\x00", rtype::A);
        p[11] = 1;
        p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 16]);
        p.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 3, 0, 0]);
        let q = parse_query(&p, &mut lower).unwrap();
        assert!(q.edns.unwrap().nsid);
        // A cut option ends the walk without reading past the record.
        let mut p = query(b"\x00", rtype::A);
        p[11] = 1;
        p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 6]);
        p.extend_from_slice(&[0, 10, 0, 200, 0, 3]);
        assert!(!parse_query(&p, &mut lower).unwrap().edns.unwrap().nsid);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let mut lower = [0u8; MAX_NAME];
        assert_eq!(parse_query(&[], &mut lower).unwrap_err(), ParseError::Drop);
        assert_eq!(
            parse_query(&[0; 11], &mut lower).unwrap_err(),
            ParseError::Drop
        );
        // A compression pointer in the question (could loop) is a FORMERR.
        let p = query(b"\xc0\x0c", rtype::A);
        assert!(matches!(
            parse_query(&p, &mut lower),
            Err(ParseError::FormErr { .. })
        ));
        // A label running past the end.
        let p = query(b"\x3fabc", rtype::A);
        assert!(matches!(
            parse_query(&p[..16], &mut lower),
            Err(ParseError::FormErr { .. })
        ));
        // A response is never answered.
        let mut p = query(b"\x00", rtype::A);
        p[2] |= 0x80;
        assert_eq!(parse_query(&p, &mut lower).unwrap_err(), ParseError::Drop);
        // Two OPT records.
        let mut p = query(b"\x00", rtype::A);
        p[11] = 2;
        for _ in 0..2 {
            p.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
        }
        assert!(matches!(
            parse_query(&p, &mut lower),
            Err(ParseError::FormErr { .. })
        ));
    }

    #[test]
    fn encodes_and_compresses_names() {
        let owner = encode_name("_http._tcp.web.ns.svc.clusterset.local").unwrap();
        let target = encode_name("web.ns.svc.clusterset.local.").unwrap();
        let mut out = Vec::new();
        write_name_against(&mut out, &target, &owner, 12);
        // "_http" (6) + "_tcp" (5) = 11 bytes before "web" → pointer to 12 + 11.
        assert_eq!(out, vec![0xc0, 23]);
        let pod = encode_name("pod-0.c1.web.ns.svc.clusterset.local").unwrap();
        let owner = encode_name("web.ns.svc.clusterset.local").unwrap();
        out.clear();
        write_name_against(&mut out, &pod, &owner, 12);
        assert_eq!(out, b"\x05pod-0\x02c1\xc0\x0c".to_vec());
        assert_eq!(display_name(&pod), "pod-0.c1.web.ns.svc.clusterset.local.");
        assert!(encode_name(&format!("{}.x", "a".repeat(64))).is_err());
        assert!(encode_name("a..b").is_err());
    }

    /// RFC 6891 6.1.1: the OPT record is in the additional section, after the answer and
    /// authority records a query may carry; those are skipped, so the client's EDNS size is
    /// still read.
    #[test]
    fn reads_the_opt_after_answer_and_authority_records() {
        let mut lower = [0u8; MAX_NAME];
        for (an, ns) in [(1u8, 0u8), (0, 1), (1, 1), (2, 1)] {
            let mut p = query(b"\x00", rtype::A);
            p[7] = an;
            p[9] = ns;
            p[11] = 1;
            for _ in 0..an + ns {
                // The root, A, IN, TTL 5, 10.0.0.1.
                p.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1]);
            }
            p.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
            let q = parse_query(&p, &mut lower).unwrap();
            assert_eq!(
                q.edns.map(|e| e.udp_size),
                Some(4096),
                "{an} answer and {ns} authority records"
            );
        }
    }

    /// RFC 1035 2.3.4: a name is at most 255 bytes on the wire. A question name of 255 bytes
    /// is read; one of 256 is a FORMERR (and never overruns the 255-byte buffer).
    #[test]
    fn question_names_longer_than_255_bytes_are_formerr() {
        let name = |last: usize| {
            let mut n = Vec::new();
            for len in [63, 63, 63, last] {
                n.push(len as u8);
                n.extend(std::iter::repeat_n(b'a', len));
            }
            n.push(0);
            n
        };
        let mut lower = [0u8; MAX_NAME];
        let longest = name(61);
        assert_eq!(longest.len(), MAX_NAME);
        let p = query(&longest, rtype::A);
        let q = parse_query(&p, &mut lower).unwrap();
        assert_eq!(q.name_len, MAX_NAME);
        assert_eq!(&lower[..], &longest[..]);
        let too_long = name(62);
        assert!(matches!(
            parse_query(&query(&too_long, rtype::A), &mut lower),
            Err(ParseError::FormErr { .. })
        ));
    }

    /// Only ASCII letters are lower-cased: the bytes just outside `A`..`Z` (`@`, `[`) stay as
    /// they are, so names that differ there are not taken for one another (table lookups and
    /// the forward cache key use the lower-cased name).
    #[test]
    fn only_ascii_letters_are_lower_cased() {
        let p = query(b"\x06@AZ[az\x00", rtype::A);
        let mut lower = [0u8; MAX_NAME];
        let q = parse_query(&p, &mut lower).unwrap();
        assert_eq!(&lower[..q.name_len], b"\x06@az[az\x00");
    }

    /// Found by the `question_name` fuzz target: a label length past the end of the bytes
    /// indexed out of bounds.
    #[test]
    fn display_name_of_a_cut_name_shows_what_is_there() {
        assert_eq!(display_name(b"\x03abc\x05de"), "abc.de.");
        assert_eq!(display_name(b"\x07"), ".");
        assert_eq!(display_name(b"\x02ab\x5fcd\x00"), "ab.cd\0.");
    }

    /// RFC 1035 2.3.4 for the names `skip_name` walks in received messages (answer, authority
    /// and additional records): 255 octets are read, 256 are refused. With a pointer at the
    /// end, the labels before it may take 254 octets (the name pointed at is at least the root),
    /// not 255.
    #[test]
    fn skip_name_reads_names_of_255_octets_and_refuses_longer_ones() {
        // A header, the question `z. A IN`, then the name.
        let start = HEADER_LEN + 7;
        let message = |labels: &[usize], end: &[u8]| {
            let mut message = vec![0; HEADER_LEN];
            message.extend_from_slice(b"\x01z\x00\x00\x01\x00\x01");
            for &len in labels {
                message.push(len as u8);
                message.extend(std::iter::repeat_n(b'a', len));
            }
            message.extend_from_slice(end);
            message.extend_from_slice(&[0, 1, 0, 1]); // the record's type and class
            message
        };
        let longest = message(&[63, 63, 63, 61], b"\x00");
        assert_eq!(skip_name(&longest, start), Some(start + MAX_NAME));
        let too_long = message(&[63, 63, 63, 62], b"\x00");
        assert_eq!(skip_name(&too_long, start), None);

        // The pointer goes to the root ending the question name (offset 14): 255 octets.
        let compressed = message(&[63, 63, 63, 61], b"\xc0\x0e");
        assert_eq!(skip_name(&compressed, start), Some(start + MAX_NAME + 1));
        let too_long = message(&[63, 63, 63, 62], b"\xc0\x0e");
        assert_eq!(skip_name(&too_long, start), None);

        // A pointer ends the name (`aaa.z.`); the root alone; a reserved label type; a cut name.
        let short = message(&[3], b"\xc0\x0c");
        assert_eq!(skip_name(&short, start), Some(start + 6));
        assert_eq!(skip_name(&message(&[], b"\x00"), start), Some(start + 1));
        assert_eq!(skip_name(&message(&[3], b"\x40"), start), None);
        assert_eq!(skip_name(&short[..start + 3], start), None);
    }

    /// A dotted name of labels of these lengths, `a`s.
    fn dotted(labels: &[usize]) -> String {
        labels
            .iter()
            .map(|&len| "a".repeat(len))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The name at `at` in `message`, pointers followed, as a real decoder (hickory) reads it.
    fn decode_name(message: &[u8], at: usize) -> String {
        use hickory_proto::rr::Name;
        use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
        let mut decoder = BinDecoder::new(message);
        decoder.read_slice(at).unwrap();
        Name::read(&mut decoder).unwrap().to_ascii()
    }

    /// RFC 1035 2.3.4: a label is at most 63 octets, a name at most 255 octets on the wire
    /// (length bytes and the root included). `encode_name` takes both limits exactly and
    /// refuses one octet more.
    #[test]
    fn encode_name_takes_63_octet_labels_and_255_octet_names_and_no_more() {
        let name = encode_name(&dotted(&[63, 3])).unwrap();
        assert_eq!(name.len(), 1 + 63 + 1 + 3 + 1);
        assert_eq!(name[0], 63);
        assert_eq!(decode_name(&name, 0), format!("{}.", dotted(&[63, 3])));
        let too_long_label = dotted(&[64, 3]);
        assert_eq!(
            encode_name(&too_long_label),
            Err(NameError::LabelTooLong(too_long_label))
        );

        // 3 × (1 + 63) + (1 + 61) + 1 = 255.
        let longest = dotted(&[63, 63, 63, 61]);
        for written in [longest.clone(), format!("{longest}.")] {
            let wire = encode_name(&written).unwrap();
            assert_eq!(wire.len(), MAX_NAME);
            assert_eq!(decode_name(&wire, 0), format!("{longest}."));
        }
        let too_long = dotted(&[63, 63, 63, 62]);
        assert_eq!(encode_name(&too_long), Err(NameError::TooLong(too_long)));
    }

    /// The same limits for labels put in front of an encoded name (SRV owners, pod names).
    #[test]
    fn prefix_name_takes_63_octet_labels_and_255_octet_names_and_no_more() {
        let base = encode_name("svc.z").unwrap();
        let label = "A".repeat(63);
        let name = prefix_name(&[&label, "_tcp"], &base).unwrap();
        assert_eq!(
            name,
            encode_name(&format!("{}._tcp.svc.z", "a".repeat(63))).unwrap(),
            "lower-cased, in order, before the base"
        );
        let label = "a".repeat(64);
        assert_eq!(
            prefix_name(&[&label], &base),
            Err(NameError::LabelTooLong(label))
        );

        // (1 + 63) + a base of 2 × (1 + 63) + (1 + 61) + 1 = 255.
        let label = "a".repeat(63);
        let base = encode_name(&dotted(&[63, 63, 61])).unwrap();
        let longest = prefix_name(&[&label], &base).unwrap();
        assert_eq!(longest.len(), MAX_NAME);
        assert_eq!(longest, encode_name(&dotted(&[63, 63, 63, 61])).unwrap());
        let base = encode_name(&dotted(&[63, 63, 62])).unwrap();
        assert!(matches!(
            prefix_name(&[&label], &base),
            Err(NameError::TooLong(_))
        ));
    }

    /// Compression (RFC 1035 4.1.4) replaces the end of a name by a pointer to an earlier
    /// occurrence of those labels: only at a label of the owner, and what is written decodes
    /// to the target name.
    #[test]
    fn compression_points_only_at_a_label_of_the_owner() {
        let owner_offset = 12;
        let cases = [
            // (owner, target, the bytes written)
            (
                "web.ns.svc.zone",
                "api.ns.svc.zone",
                b"\x03api\xc0\x10".to_vec(),
            ),
            ("web.ns.svc.zone", "web.ns.svc.zone", b"\xc0\x0c".to_vec()),
            ("web.ns.svc.zone", "zone", b"\xc0\x17".to_vec()),
            // Only the root in common: written out, not pointed at.
            (
                "web.ns.svc.zone",
                "example.org",
                b"\x07example\x03org\x00".to_vec(),
            ),
            // `ns.svc.zone` is in the owner, but not as its end.
            (
                "ns.svc.zone.web",
                "ns.svc.zone",
                b"\x02ns\x03svc\x04zone\x00".to_vec(),
            ),
        ];
        for (owner, target, written) in cases {
            let owner = encode_name(owner).unwrap();
            let target_wire = encode_name(target).unwrap();
            let mut message = vec![0; owner_offset];
            message.extend_from_slice(&owner);
            let at = message.len();
            write_name_against(&mut message, &target_wire, &owner, owner_offset);
            assert_eq!(message[at..], written, "{target} against {owner:?}");
            assert_eq!(decode_name(&message, at), format!("{target}."));
        }

        // The bytes of the target's whole name are in the owner, but inside its first label (a
        // `0`, 48, reads there as the length of a 48-octet label): no pointer goes there, the
        // common suffix at a label of the owner is `zone.`.
        let owner = encode_name(&format!("a0{}.zone", "b".repeat(48))).unwrap();
        let target = encode_name(&format!("{}.zone", "b".repeat(48))).unwrap();
        assert_eq!(owner[2..], target[..], "the same bytes, two octets in");
        let mut message = vec![0; owner_offset];
        message.extend_from_slice(&owner);
        let at = message.len();
        write_name_against(&mut message, &target, &owner, owner_offset);
        let mut written = target[..49].to_vec();
        written.extend_from_slice(&[0xc0, (owner_offset + 51) as u8]);
        assert_eq!(message[at..], written);
        assert_eq!(message[owner_offset + 51..][..6], *b"\x04zone\x00");
        assert_eq!(
            decode_name(&message, at),
            format!("{}.zone.", "b".repeat(48))
        );
    }

    /// A pointer's offset has 14 bits (RFC 1035 4.1.4): an owner at 0x3fff is pointed at
    /// (0xffff), one at 0x4000 cannot be and the target is written whole.
    #[test]
    fn compression_points_at_offsets_up_to_0x3fff() {
        let owner = encode_name("web.ns.svc.zone").unwrap();
        let target = encode_name("api.web.ns.svc.zone").unwrap();
        for (owner_offset, written) in [
            (0x3ffe, b"\x03api\xff\xfe".to_vec()),
            (0x3fff, b"\x03api\xff\xff".to_vec()),
            (0x4000, target.clone()),
        ] {
            let mut message = vec![0; owner_offset];
            message.extend_from_slice(&owner);
            let at = message.len();
            write_name_against(&mut message, &target, &owner, owner_offset);
            assert_eq!(message[at..], written, "owner at {owner_offset:#x}");
            assert_eq!(decode_name(&message, at), "api.web.ns.svc.zone.");
        }
    }
}
