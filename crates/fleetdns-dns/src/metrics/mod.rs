//! DNS server counters. Rendering every metric family of the crate (these counters, the
//! forwarder's cache and upstreams) lives in `render`; the exposition writer in
//! `exposition`; the strict exposition parser the tests use sits behind the `testing`
//! feature.
//!
//! The hot path is one [`Metrics::record`] per answered message: a few relaxed atomic
//! increments into fixed arrays (no locks, no allocation, no maps). Rendering reads the same
//! atomics; a scrape may see one query's counters half-updated, which Prometheus tolerates.
//! Every metric is listed in `docs/metrics.md`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

mod exposition;
#[cfg(any(test, feature = "testing"))]
mod parse;
mod render;

pub use exposition::{CONTENT_TYPE, Exposition};
#[cfg(any(test, feature = "testing"))]
pub use parse::{Sample, parse_exposition, sample_value};
pub use render::render_forwarder;

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;

use crate::request::{Counted, Outcome, Transport};
use crate::wire::{display_name, encode_name, rtype};

const TRANSPORTS: [&str; 2] = ["udp", "tcp"];

/// The `qtype` label values; `other` is any other type, `none` a request whose question could
/// not be read (FORMERR, NOTIMP).
const QTYPES: [&str; 9] = [
    "A", "AAAA", "SRV", "TXT", "SOA", "NS", "ANY", "other", "none",
];
const QTYPE_OTHER: usize = 7;
const QTYPE_NONE: usize = 8;

/// `(outcome, rcode)` label pairs of the responses counter, by index.
const RESPONSES: [(&str, &str); 13] = [
    ("answer", "NOERROR"),
    ("nodata", "NOERROR"),
    ("nxdomain", "NXDOMAIN"),
    ("refused", "REFUSED"),
    ("servfail", "SERVFAIL"),
    ("formerr", "FORMERR"),
    ("formerr", "BADVERS"),
    ("notimp", "NOTIMP"),
    ("forwarded", "NOERROR"),
    ("forwarded", "NXDOMAIN"),
    ("forwarded", "SERVFAIL"),
    ("forwarded", "REFUSED"),
    ("forwarded", "other"),
];
const RESPONSE_FORWARDED: usize = 8;
const RESPONSE_BADVERS: usize = 6;

/// Upper bounds of the duration histogram, nanoseconds, with their `le` labels (seconds).
const BUCKETS_NANOS: [u64; 12] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    10_000_000,
    100_000_000,
];
const BUCKET_LABELS: [&str; 12] = [
    "0.000001",
    "0.0000025",
    "0.000005",
    "0.00001",
    "0.000025",
    "0.00005",
    "0.0001",
    "0.00025",
    "0.0005",
    "0.001",
    "0.01",
    "0.1",
];

/// Counters of the UDP and TCP servers, shared by every server task.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [[AtomicU64; QTYPES.len()]; TRANSPORTS.len()],
    responses: [AtomicU64; RESPONSES.len()],
    truncated: AtomicU64,
    dropped: [AtomicU64; TRANSPORTS.len()],
    /// Non-cumulative: slot `i` counts durations in `(bound[i-1], bound[i]]`; the last slot is
    /// everything above the largest bound. The histogram's count is the sum of all slots.
    duration_slots: [AtomicU64; BUCKETS_NANOS.len() + 1],
    duration_sum_nanos: AtomicU64,
    /// Requests by zone (authoritative and forward zones).
    zones: ZoneCounters,
}

/// Requests by zone, keyed by apex (lower-case wire form). Read without locks: one arc-swap
/// load and one hash lookup per counted message; a zone seen for the first time is added under
/// a lock. Entries are never removed, so a zone's count survives table swaps and reloads.
#[derive(Debug, Default)]
struct ZoneCounters {
    map: ArcSwap<FxHashMap<Box<[u8]>, Arc<AtomicU64>>>,
    add: Mutex<()>,
}

impl ZoneCounters {
    fn count(&self, apex: &[u8]) {
        if let Some(c) = self.map.load().get(apex) {
            c.fetch_add(1, Relaxed);
            return;
        }
        self.counter(apex).fetch_add(1, Relaxed);
    }

    /// The counter of `apex`, created on first use.
    fn counter(&self, apex: &[u8]) -> Arc<AtomicU64> {
        let _adding = self
            .add
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = self.map.load();
        if let Some(c) = map.get(apex) {
            return c.clone();
        }
        let mut grown = FxHashMap::clone(&map);
        let counter = grown.entry(apex.into()).or_default().clone();
        self.map.store(Arc::new(grown));
        counter
    }

    /// (dotted zone name, requests), ordered by name.
    fn counts(&self) -> Vec<(String, u64)> {
        let mut counts: Vec<(String, u64)> = self
            .map
            .load()
            .iter()
            .map(|(apex, c)| (display_name(apex), c.load(Relaxed)))
            .collect();
        counts.sort();
        counts
    }
}

fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one answered message: what the request path returned for it (`counted`: the
    /// question's type and the zone that answered), `response` as sent, `elapsed` from receipt
    /// until the response was handed to the socket. Relaxed increments, and one lock-free
    /// lookup of the zone's counter.
    pub fn record(
        &self,
        transport: Transport,
        counted: Counted<'_>,
        outcome: Outcome,
        response: &[u8],
        elapsed: Duration,
    ) {
        self.record_with(transport, counted, None, outcome, response, elapsed);
    }

    /// [`Metrics::record`] with the counter of `counted`'s zone already in hand
    /// (`zone_counter`, from [`Metrics::zone_counter_of`]): the UDP workers keep the counters
    /// of the zones they answer in, so the shared map is not searched per message.
    pub fn record_with(
        &self,
        transport: Transport,
        counted: Counted<'_>,
        zone_counter: Option<&AtomicU64>,
        outcome: Outcome,
        response: &[u8],
        elapsed: Duration,
    ) {
        let t = transport_index(transport);
        let response_index = match outcome {
            Outcome::Answer => 0,
            Outcome::NoData => 1,
            Outcome::NxDomain => 2,
            Outcome::Refused => 3,
            Outcome::ServFail => 4,
            // BADVERS (16) leaves 0 in the header's four rcode bits; FORMERR is 1.
            Outcome::FormErr if response.get(3).is_some_and(|b| b & 0x0f == 0) => RESPONSE_BADVERS,
            Outcome::FormErr => 5,
            Outcome::NotImp => 7,
            // Forwarded answers are counted by the rcode the upstream (or the cache) gave.
            Outcome::Forward(_) => match response.get(3).map(|b| b & 0x0f) {
                Some(0) => RESPONSE_FORWARDED,
                Some(3) => RESPONSE_FORWARDED + 1,
                Some(2) => RESPONSE_FORWARDED + 2,
                Some(5) => RESPONSE_FORWARDED + 3,
                _ => RESPONSE_FORWARDED + 4,
            },
            Outcome::Dropped => {
                self.dropped(transport);
                return;
            }
        };
        self.requests[t][qtype_index(counted.qtype)].fetch_add(1, Relaxed);
        match (zone_counter, counted.zone) {
            (Some(counter), _) => {
                counter.fetch_add(1, Relaxed);
            }
            (None, Some(apex)) => self.zones.count(apex),
            (None, None) => {}
        }
        self.responses[response_index].fetch_add(1, Relaxed);
        if response.get(2).is_some_and(|b| b & 0x02 != 0) {
            self.truncated.fetch_add(1, Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slot = BUCKETS_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BUCKETS_NANOS.len());
        self.duration_slots[slot].fetch_add(1, Relaxed);
        self.duration_sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Counts a message that got no response (not a query: too short, or QR set).
    pub fn dropped(&self, transport: Transport) {
        self.dropped[transport_index(transport)].fetch_add(1, Relaxed);
    }

    /// The request counter of zone `name` (dotted, trailing dot), created on first use.
    /// Queries are counted by [`Metrics::record`]; this is for counting from outside the
    /// request path (and `table::AnswerTable::attach_counters`, which nothing calls any more).
    pub fn zone_counter(&self, name: &str) -> Arc<AtomicU64> {
        match encode_name(name) {
            Ok(apex) => self.zones.counter(&apex),
            Err(_) => Arc::default(),
        }
    }

    /// The request counter of the zone with apex `apex` (lower-case wire form), created on
    /// first use.
    pub fn zone_counter_of(&self, apex: &[u8]) -> Arc<AtomicU64> {
        self.zones.counter(apex)
    }

    /// Counts one request in zone `name` (dotted) from outside the server loops (the debug
    /// API's explained queries).
    pub fn count_zone(&self, name: &str) {
        self.zone_counter(name).fetch_add(1, Relaxed);
    }

    /// Shows the zones named (dotted) from now on, at zero until a query is counted in one
    /// (call when a table or forwarder is installed).
    pub fn add_zones(&self, names: &[String]) {
        for name in names {
            self.zone_counter(name);
        }
    }

    /// (dotted zone name, requests) of every zone counted so far, ordered by name.
    pub fn zone_counts(&self) -> Vec<(String, u64)> {
        self.zones.counts()
    }
}

/// The index into [`QTYPES`] of a question's type; `none` when it could not be read.
fn qtype_index(qtype: Option<u16>) -> usize {
    match qtype {
        None => QTYPE_NONE,
        Some(rtype::A) => 0,
        Some(rtype::AAAA) => 1,
        Some(rtype::SRV) => 2,
        Some(rtype::TXT) => 3,
        Some(rtype::SOA) => 4,
        Some(rtype::NS) => 5,
        Some(rtype::ANY) => 6,
        Some(_) => QTYPE_OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::question_type;

    /// What the request path returns for `request`, outside any zone.
    fn seen(request: &[u8]) -> Counted<'static> {
        Counted {
            qtype: question_type(request),
            zone: None,
        }
    }

    fn parse(text: &str) -> Vec<Sample> {
        parse_exposition(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn render(m: &Metrics) -> String {
        let mut text = String::new();
        m.render(&mut Exposition::new(&mut text));
        text
    }

    /// A query for `name` (dotted, no trailing dot) of type `qtype`.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    fn response(rcode: u8, tc: bool) -> Vec<u8> {
        vec![
            0x12,
            0x34,
            0x84 | if tc { 0x02 } else { 0 },
            rcode,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ]
    }

    #[test]
    fn an_empty_registry_renders_every_series_at_zero() {
        let samples = parse(&render(&Metrics::new()));
        assert_eq!(
            samples
                .iter()
                .filter(|s| s.name == "fleetdns_dns_requests_total")
                .count(),
            TRANSPORTS.len() * QTYPES.len()
        );
        assert!(samples.iter().all(|s| s.value == 0.0));
    }

    #[test]
    fn records_count_by_transport_qtype_outcome_and_rcode() {
        let m = Metrics::new();
        let us = Duration::from_micros;
        let q = query("a.clusterset.local", rtype::A);
        m.record(
            Transport::Udp,
            seen(&q),
            Outcome::Answer,
            &response(0, false),
            us(3),
        );
        m.record(
            Transport::Udp,
            seen(&q),
            Outcome::Answer,
            &response(0, true),
            us(3),
        );
        let aaaa = query("a.clusterset.local", rtype::AAAA);
        m.record(
            Transport::Tcp,
            seen(&aaaa),
            Outcome::NoData,
            &response(0, false),
            us(40),
        );
        let mx = query("x.example", 15);
        m.record(
            Transport::Udp,
            seen(&mx),
            Outcome::Refused,
            &response(5, false),
            us(2000),
        );
        m.record(
            Transport::Udp,
            seen(&[0; 12]),
            Outcome::FormErr,
            &response(1, false),
            us(1),
        );
        m.record(
            Transport::Udp,
            seen(&q),
            Outcome::FormErr,
            &response(0, false),
            us(1),
        );
        m.record(
            Transport::Udp,
            seen(&q),
            Outcome::NxDomain,
            &response(3, false),
            us(500_000),
        );
        m.record(Transport::Udp, seen(&[1]), Outcome::Dropped, &[], us(1));
        m.dropped(Transport::Tcp);

        let samples = parse(&render(&m));
        let v = |name: &str, labels: &[(&str, &str)]| sample_value(&samples, name, labels).unwrap();
        let req = "fleetdns_dns_requests_total";
        assert_eq!(v(req, &[("transport", "udp"), ("qtype", "A")]), 4.0);
        assert_eq!(v(req, &[("transport", "tcp"), ("qtype", "AAAA")]), 1.0);
        assert_eq!(v(req, &[("transport", "udp"), ("qtype", "other")]), 1.0);
        assert_eq!(v(req, &[("transport", "udp"), ("qtype", "none")]), 1.0);
        let resp = "fleetdns_dns_responses_total";
        assert_eq!(v(resp, &[("outcome", "answer"), ("rcode", "NOERROR")]), 2.0);
        assert_eq!(v(resp, &[("outcome", "nodata"), ("rcode", "NOERROR")]), 1.0);
        assert_eq!(
            v(resp, &[("outcome", "refused"), ("rcode", "REFUSED")]),
            1.0
        );
        assert_eq!(
            v(resp, &[("outcome", "formerr"), ("rcode", "FORMERR")]),
            1.0
        );
        assert_eq!(
            v(resp, &[("outcome", "formerr"), ("rcode", "BADVERS")]),
            1.0
        );
        assert_eq!(
            v(resp, &[("outcome", "nxdomain"), ("rcode", "NXDOMAIN")]),
            1.0
        );
        assert_eq!(v("fleetdns_dns_truncated_responses_total", &[]), 1.0);
        let dropped = "fleetdns_dns_dropped_messages_total";
        assert_eq!(v(dropped, &[("transport", "udp")]), 1.0);
        assert_eq!(v(dropped, &[("transport", "tcp")]), 1.0);

        let h = "fleetdns_dns_request_duration_seconds";
        assert_eq!(v(&format!("{h}_count"), &[]), 7.0);
        assert_eq!(v(&format!("{h}_bucket"), &[("le", "0.000001")]), 2.0);
        assert_eq!(v(&format!("{h}_bucket"), &[("le", "0.000005")]), 4.0);
        assert_eq!(v(&format!("{h}_bucket"), &[("le", "0.00005")]), 5.0);
        assert_eq!(v(&format!("{h}_bucket"), &[("le", "0.01")]), 6.0);
        assert_eq!(v(&format!("{h}_bucket"), &[("le", "0.1")]), 6.0);
        assert_eq!(v(&format!("{h}_bucket"), &[("le", "+Inf")]), 7.0);
        let sum = v(&format!("{h}_sum"), &[]);
        assert!((sum - 0.502048).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn bucket_labels_match_the_bounds() {
        for (nanos, label) in BUCKETS_NANOS.iter().zip(BUCKET_LABELS) {
            let seconds: f64 = label.parse().unwrap();
            assert!((seconds * 1e9 - *nanos as f64).abs() < 1e-3, "{label}");
        }
    }

    #[test]
    fn questions_that_cannot_be_read_are_none() {
        let mut pointer = query("a.b", rtype::A);
        pointer[12] = 0xc0;
        for bad in [&[][..], &[0; 11], &query("a.b", rtype::A)[..16], &pointer] {
            assert_eq!(qtype_index(question_type(bad)), QTYPE_NONE, "{bad:?}");
        }
        let mut two = query("a.b", rtype::A);
        two[5] = 2;
        assert_eq!(qtype_index(question_type(&two)), QTYPE_NONE);
        assert_eq!(qtype_index(question_type(&query("a.b", rtype::SRV))), 2);
        assert_eq!(
            qtype_index(question_type(&query("a.b", rtype::PTR))),
            QTYPE_OTHER
        );
    }
}
