//! The request path, once: a query is parsed into a [`Request`], the zone [`Catalog`] says
//! where it goes, and it is either answered from the table ([`respond`]) or handed, parsed, to
//! the forwarder. The server loops call [`handle`] and count what it returns with
//! `Metrics::record`; `explain` calls it to show the real answer.

use crate::catalog::{Catalog, Route};
use crate::forward::Forwarder;
use crate::request::{Counted, Outcome, OwnedQuestion, Request, Transport};
use crate::respond::{self, Destination};
use crate::wire::{self, MAX_NAME};

/// What became of one message.
#[derive(Debug)]
pub enum Handled<'t, F> {
    /// `out` holds the response (nothing to send when the outcome is `Dropped`).
    Answered {
        outcome: Outcome,
        counted: Counted<'t>,
    },
    /// Forward zone `zone` of `forwarder` takes the question; `out` is empty.
    Forward {
        forwarder: &'t F,
        zone: usize,
        question: OwnedQuestion,
    },
}

/// Handles one message. `client_allowed` says whether the client may use forward zones
/// (`[dns] allow`); it is asked only for a name in a forward zone. `nsid` is the identity
/// answered to the EDNS NSID option (RFC 5001).
#[inline]
pub fn handle<'t, F: AsRef<Forwarder>>(
    catalog: Catalog<'t, F>,
    client_allowed: impl Fn() -> bool,
    nsid: Option<&[u8]>,
    packet: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> Handled<'t, F> {
    let mut lower = [0u8; MAX_NAME];
    // `wire::parse_query` directly rather than `Request::parse`: one `Result` fewer to move.
    let query = match wire::parse_query(packet, &mut lower) {
        Ok(query) => query,
        Err(e) => {
            return Handled::Answered {
                outcome: respond::unparsed(e, out),
                counted: Counted {
                    qtype: wire::question_type(packet),
                    zone: None,
                },
            };
        }
    };
    let request = Request {
        lower_name: &lower[..query.name_len],
        query,
        transport,
    };
    let destination = match catalog.route(request.lower_name) {
        Route::Local(destination) => destination,
        Route::Forward { forwarder, zone }
            if respond::forwardable(&request) && client_allowed() =>
        {
            out.clear();
            return Handled::Forward {
                forwarder,
                zone,
                question: request.question().owned(),
            };
        }
        // Refused, or (a bad EDNS version, class or type) rejected before the name matters.
        Route::Forward { .. } => Destination::ForwardRefused,
    };
    let answered = respond::answer(&request, destination, nsid, out);
    Handled::Answered {
        outcome: answered.outcome,
        counted: Counted {
            qtype: Some(request.query.qtype),
            zone: answered.zone,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheLimits;
    use crate::forward::{ForwardZoneConfig, UpstreamPolicy};
    use crate::request::Counted;
    use crate::respond::respond;
    use crate::table::{AnswerTable, Selection};
    use crate::table::{SoaParams, TableBuilder};
    use crate::wire::encode_name;
    use crate::wire::{HEADER_LEN, rcode};

    /// The whole request path with forward zones; `allowed` is the client's `[dns] allow`.
    fn respond_with(
        table: Option<&AnswerTable>,
        forwarder: Option<&Forwarder>,
        allowed: bool,
        packet: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Outcome {
        respond_full(table, forwarder, allowed, None, packet, transport, out)
    }

    /// [`respond_with`] with the server's NSID identity.
    fn respond_full(
        table: Option<&AnswerTable>,
        forwarder: Option<&Forwarder>,
        allowed: bool,
        nsid: Option<&[u8]>,
        packet: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let catalog = Catalog { table, forwarder };
        match handle(catalog, || allowed, nsid, packet, transport, out) {
            Handled::Answered { outcome, .. } => outcome,
            Handled::Forward { zone, .. } => Outcome::Forward(zone),
        }
    }

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

    /// A query the responder would reject whatever its name (an EDNS version above 0, a class
    /// other than IN/ANY, type OPT) is answered here, never sent to a forward zone's upstream.
    #[test]
    fn a_query_with_a_bad_edns_version_class_or_type_is_not_forwarded() {
        let f = forwarder(&["fwd.test"]);
        let ask = |packet: &[u8]| {
            respond_with(
                None,
                Some(&f),
                true,
                packet,
                Transport::Udp,
                &mut Vec::new(),
            )
        };
        let good = query("web.fwd.test");
        assert!(
            matches!(ask(&good), Outcome::Forward(_)),
            "an ordinary query is forwarded"
        );
        let n = good.len();
        let mut chaos = good.clone();
        chaos[n - 1] = 3; // class CH
        assert_eq!(ask(&chaos), Outcome::Refused);
        let mut any = good.clone();
        any[n - 2..].copy_from_slice(&[0, 255]); // class ANY
        assert!(
            matches!(ask(&any), Outcome::Forward(_)),
            "class ANY is forwarded"
        );
        let mut opt = good.clone();
        opt[n - 4..n - 2].copy_from_slice(&[0, 41]); // type OPT
        assert_eq!(ask(&opt), Outcome::FormErr);
        let mut edns1 = good.clone();
        edns1[11] = 1; // ARCOUNT 1: an OPT record, version 1
        edns1.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(ask(&edns1), Outcome::FormErr);
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

    /// The request path hands on what it parsed: the counted type and zone for an answer, the
    /// question (the client's case kept, the name lower-cased once) for a forward zone.
    #[test]
    fn the_request_path_returns_what_is_counted_and_the_parsed_question() {
        let t = table();
        let f = forwarder(&["cluster3.local"]);
        let catalog = Catalog {
            table: Some(&t),
            forwarder: Some(&f),
        };
        let mut out = Vec::new();
        let apex = encode_name("clusterset.local").unwrap();
        for (name, want) in [
            ("a.clusterset.local", Outcome::Answer),
            ("nope.clusterset.local", Outcome::NxDomain),
        ] {
            match handle(
                catalog,
                || true,
                None,
                &query(name),
                Transport::Udp,
                &mut out,
            ) {
                Handled::Answered { outcome, counted } => {
                    assert_eq!(outcome, want);
                    assert_eq!(counted.qtype, Some(1));
                    assert_eq!(counted.zone, Some(&apex[..]), "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        match handle(
            catalog,
            || true,
            None,
            &query("example.com"),
            Transport::Udp,
            &mut out,
        ) {
            Handled::Answered { outcome, counted } => {
                assert_eq!(outcome, Outcome::Refused);
                assert_eq!(counted.zone, None, "in no zone");
            }
            other => panic!("{other:?}"),
        }
        let mut p = query("web.cluster3.local");
        p[13..16].copy_from_slice(b"WEB");
        match handle(catalog, || true, None, &p, Transport::Udp, &mut out) {
            Handled::Forward { zone, question, .. } => {
                assert_eq!(zone, 0);
                assert_eq!(question.id, 7);
                assert_eq!(&*question.question, &p[HEADER_LEN..], "the client's case");
                assert_eq!(
                    &*question.lower_name,
                    &encode_name("web.cluster3.local").unwrap()[..]
                );
                assert!(out.is_empty(), "nothing to send yet");
            }
            other => panic!("{other:?}"),
        }
        // A question that cannot be read is counted without a type.
        let mut bad = query("a.clusterset.local");
        bad[5] = 2;
        match handle(catalog, || true, None, &bad, Transport::Udp, &mut out) {
            Handled::Answered { outcome, counted } => {
                assert_eq!(outcome, Outcome::FormErr);
                assert_eq!(counted, Counted::default());
            }
            other => panic!("{other:?}"),
        }
    }
}
