//! A forwarded answer made the client's: its own ID and question case (DNS 0x20), and cut to
//! header + question with TC when it exceeds the client's UDP size.

use super::Question;
use crate::request::{MAX_UDP_SIZE, Transport};
use crate::wire::{HEADER_LEN, rcode};

/// Cuts a UDP answer that exceeds the client's size to header + question with TC set.
pub(super) fn fit(out: &mut Vec<u8>, q: &Question<'_>, transport: Transport) -> u8 {
    // The client's own question, case included (DNS 0x20): a cached answer holds the case of
    // whoever asked first. Same length, and compression pointers do not depend on case.
    let end = HEADER_LEN + q.question.len();
    if out.len() >= end {
        out[HEADER_LEN..end].copy_from_slice(q.question);
    }
    let code = out.get(3).map_or(rcode::SERVFAIL, |b| b & 0x0f);
    let limit = if q.edns {
        q.udp_limit.min(MAX_UDP_SIZE)
    } else {
        512
    };
    if transport == Transport::Udp && out.len() > limit {
        let id = q.id;
        error_response(out, q, code);
        out[..2].copy_from_slice(&id.to_be_bytes());
        out[2] |= 0x02;
    }
    code
}

/// Header + question with `rcode` (no AA: not our data).
pub(super) fn error_response(out: &mut Vec<u8>, q: &Question<'_>, code: u8) {
    out.clear();
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&[0x81, code, 0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(q.question);
}
