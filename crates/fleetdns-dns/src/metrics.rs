//! DNS server counters, and the Prometheus text exposition (format 0.0.4) they render into.
//!
//! The hot path is one [`Metrics::record`] per answered message: a few relaxed atomic
//! increments into fixed arrays (no locks, no allocation, no maps). Rendering reads the same
//! atomics; a scrape may see one query's counters half-updated, which Prometheus tolerates.
//! Every metric is listed in `docs/metrics.md`.

use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::respond::{Outcome, Transport};
use crate::wire::{HEADER_LEN, rtype};

/// `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    /// Requests by zone name (authoritative and forward zones); entries are never removed, so
    /// a zone's count survives table swaps and reloads.
    zones: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<AtomicU64>>>,
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

    /// Counts one answered message: `request` as received, `response` as sent, `elapsed`
    /// from receipt until the response was handed to the socket. Relaxed increments only.
    pub fn record(
        &self,
        transport: Transport,
        request: &[u8],
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
        self.requests[t][qtype_index(request)].fetch_add(1, Relaxed);
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
    pub fn zone_counter(&self, name: &str) -> std::sync::Arc<AtomicU64> {
        let mut zones = self.zones.lock().unwrap_or_else(|p| p.into_inner());
        zones.entry(name.to_owned()).or_default().clone()
    }

    /// Appends every DNS metric, zeros included (zone series once a zone exists), to `out`.
    pub fn render(&self, out: &mut Exposition<'_>) {
        {
            // Written once a zone exists (a header without samples is not valid exposition).
            let name = "fleetdns_dns_zone_requests_total";
            let zones = self.zones.lock().unwrap_or_else(|p| p.into_inner());
            if !zones.is_empty() {
                out.header(
                    name,
                    "counter",
                    "DNS requests answered in a zone (authoritative or forward), by zone name.",
                );
            }
            for (zone, count) in zones.iter() {
                out.sample(name, &[("zone", zone)], count.load(Relaxed));
            }
        }
        let name = "fleetdns_dns_requests_total";
        out.header(
            name,
            "counter",
            "DNS requests answered, by transport and question type.",
        );
        for (t, transport) in TRANSPORTS.iter().enumerate() {
            for (q, qtype) in QTYPES.iter().enumerate() {
                out.sample(
                    name,
                    &[("transport", transport), ("qtype", qtype)],
                    self.requests[t][q].load(Relaxed),
                );
            }
        }

        let name = "fleetdns_dns_responses_total";
        out.header(
            name,
            "counter",
            "DNS responses sent, by outcome and response code.",
        );
        for (i, (outcome, rcode)) in RESPONSES.iter().enumerate() {
            out.sample(
                name,
                &[("outcome", outcome), ("rcode", rcode)],
                self.responses[i].load(Relaxed),
            );
        }

        let name = "fleetdns_dns_truncated_responses_total";
        out.header(
            name,
            "counter",
            "DNS responses sent with TC set (the answer did not fit the client's UDP size).",
        );
        out.sample(name, &[], self.truncated.load(Relaxed));

        let name = "fleetdns_dns_dropped_messages_total";
        out.header(
            name,
            "counter",
            "Messages received that are not queries and got no response (too short, or responses).",
        );
        for (t, transport) in TRANSPORTS.iter().enumerate() {
            out.sample(
                name,
                &[("transport", transport)],
                self.dropped[t].load(Relaxed),
            );
        }

        let name = "fleetdns_dns_request_duration_seconds";
        out.header(
            name,
            "histogram",
            "Time from receiving a DNS request until its response is handed to the socket.",
        );
        let mut cumulative = 0u64;
        for (i, le) in BUCKET_LABELS.iter().enumerate() {
            cumulative += self.duration_slots[i].load(Relaxed);
            out.sample_suffixed(name, "_bucket", &[("le", le)], cumulative);
        }
        cumulative += self.duration_slots[BUCKETS_NANOS.len()].load(Relaxed);
        out.sample_suffixed(name, "_bucket", &[("le", "+Inf")], cumulative);
        let sum = self.duration_sum_nanos.load(Relaxed) as f64 / 1e9;
        out.sample_suffixed(name, "_sum", &[], sum);
        out.sample_suffixed(name, "_count", &[], cumulative);
    }
}

/// The type of the question of `request`, as an index into [`QTYPES`]. Bounds-checked; a
/// question that cannot be read (compression pointer, cut short, no question) is `none`.
fn qtype_index(request: &[u8]) -> usize {
    if request.get(4..6) != Some(&[0, 1]) {
        return QTYPE_NONE;
    }
    let mut pos = HEADER_LEN;
    loop {
        match request.get(pos) {
            Some(0) => break,
            Some(&len) if len & 0xc0 == 0 => pos += 1 + len as usize,
            _ => return QTYPE_NONE,
        }
    }
    let Some(&[hi, lo]) = request.get(pos + 1..pos + 3) else {
        return QTYPE_NONE;
    };
    match u16::from_be_bytes([hi, lo]) {
        rtype::A => 0,
        rtype::AAAA => 1,
        rtype::SRV => 2,
        rtype::TXT => 3,
        rtype::SOA => 4,
        rtype::NS => 5,
        rtype::ANY => 6,
        _ => QTYPE_OTHER,
    }
}

/// Writes the Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` once per metric,
/// then its samples as `name{label="value",...} value`.
pub struct Exposition<'a> {
    out: &'a mut String,
}

impl<'a> Exposition<'a> {
    pub fn new(out: &'a mut String) -> Self {
        Self { out }
    }

    /// `kind` is `counter`, `gauge` or `histogram`.
    pub fn header(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.sample_suffixed(name, "", labels, value);
    }

    /// A sample of `name` + `suffix` (`_bucket`, `_sum`, `_count` of a histogram).
    pub fn sample_suffixed(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// One sample of a parsed exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// Finds the value of the sample `name` with exactly `labels`.
pub fn sample_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| s.value)
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Parses a fleetdns exposition strictly, for tests and tools: every line is `# HELP`,
/// `# TYPE` or a sample `name{labels} value`; every sample belongs to a metric declared before
/// it with HELP then TYPE, each declared once, named `fleetdns_*`; counters end in `_total`;
/// histogram buckets are cumulative, end in `+Inf` and that bucket equals `_count`. The error
/// names the offending line or metric.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    use std::collections::{BTreeMap, BTreeSet};
    ensure!(
        text.ends_with('\n'),
        "the exposition does not end with a newline"
    );
    let mut help = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let Some((name, text)) = rest.split_once(' ') else {
                return Err(format!("HELP without text: {line}"));
            };
            ensure!(!text.is_empty(), "empty HELP: {line}");
            ensure!(valid_name(name), "bad name: {line}");
            ensure!(help.insert(name.to_owned()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ') else {
                return Err(format!("TYPE without a type: {line}"));
            };
            ensure!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unknown type: {line}"
            );
            ensure!(help.contains(name), "TYPE before HELP: {line}");
            ensure!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        ensure!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line: {line:?}"
        );
        let sample = parse_sample(line)?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                let base = sample.name.strip_suffix(s)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(&sample.name);
        let Some(kind) = types.get(family) else {
            return Err(format!("sample without HELP and TYPE: {line}"));
        };
        ensure!(
            sample.value.is_finite() && sample.value >= 0.0,
            "negative or infinite value: {line}"
        );
        ensure!(
            kind != "counter" || sample.name.ends_with("_total"),
            "counter not named *_total: {line}"
        );
        ensure!(
            !samples
                .iter()
                .any(|s: &Sample| s.name == sample.name && s.labels == sample.labels),
            "series twice: {line}"
        );
        samples.push(sample);
    }
    for (name, kind) in &types {
        ensure!(name.starts_with("fleetdns_"), "{name} is not fleetdns_*");
        ensure!(
            samples.iter().any(|s| s.name.starts_with(name.as_str())),
            "{name} has no samples"
        );
        if kind == "histogram" {
            check_histogram(name, &samples)?;
        }
    }
    Ok(samples)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let bad = || format!("bad sample: {line}");
    let (series, value) = line.rsplit_once(' ').ok_or_else(bad)?;
    let value: f64 = value.parse().map_err(|_| bad())?;
    let (name, labels) = match series.split_once('{') {
        None => (series, std::collections::BTreeMap::new()),
        Some((name, rest)) => {
            let mut rest = rest.strip_suffix('}').ok_or_else(bad)?;
            let mut labels = std::collections::BTreeMap::new();
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"").ok_or_else(bad)?;
                ensure!(
                    valid_name(key) && !key.starts_with("__"),
                    "bad label: {line}"
                );
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().ok_or_else(bad)? {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().ok_or_else(bad)?.1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            _ => return Err(bad()),
                        },
                        (_, c) => value.push(c),
                    }
                };
                ensure!(
                    labels.insert(key.to_owned(), value).is_none(),
                    "label twice: {line}"
                );
                rest = &after[end + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else {
                    ensure!(rest.is_empty(), "labels not separated by commas: {line}");
                }
            }
            (name, labels)
        }
    };
    ensure!(valid_name(name), "bad name: {line}");
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn check_histogram(name: &str, samples: &[Sample]) -> Result<(), String> {
    let bucket = format!("{name}_bucket");
    let mut last_le = f64::NEG_INFINITY;
    let mut last_count = 0.0;
    let mut buckets = 0;
    for b in samples.iter().filter(|s| s.name == bucket) {
        let le = match b.labels.get("le").map(String::as_str) {
            Some("+Inf") => f64::INFINITY,
            Some(s) => s
                .parse()
                .map_err(|_| format!("{name}: le {s:?} is not a number"))?,
            None => return Err(format!("{name}: a bucket without le")),
        };
        if le.is_nan() || le <= last_le {
            return Err(format!("{name}: le not increasing at {le}"));
        }
        if b.value < last_count {
            return Err(format!("{name}: buckets not cumulative at {le}"));
        }
        (last_le, last_count) = (le, b.value);
        buckets += 1;
    }
    ensure!(buckets >= 2, "{name}: fewer than two buckets");
    ensure!(
        last_le == f64::INFINITY,
        "{name}: the last bucket is not +Inf"
    );
    let count = sample_value(samples, &format!("{name}_count"), &[])
        .ok_or_else(|| format!("{name}: no _count"))?;
    ensure!(
        count == last_count,
        "{name}: +Inf bucket {last_count} != _count {count}"
    );
    ensure!(
        sample_value(samples, &format!("{name}_sum"), &[]).is_some(),
        "{name}: no _sum"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            &q,
            Outcome::Answer,
            &response(0, false),
            us(3),
        );
        m.record(
            Transport::Udp,
            &q,
            Outcome::Answer,
            &response(0, true),
            us(3),
        );
        let aaaa = query("a.clusterset.local", rtype::AAAA);
        m.record(
            Transport::Tcp,
            &aaaa,
            Outcome::NoData,
            &response(0, false),
            us(40),
        );
        let mx = query("x.example", 15);
        m.record(
            Transport::Udp,
            &mx,
            Outcome::Refused,
            &response(5, false),
            us(2000),
        );
        m.record(
            Transport::Udp,
            &[0; 12],
            Outcome::FormErr,
            &response(1, false),
            us(1),
        );
        m.record(
            Transport::Udp,
            &q,
            Outcome::FormErr,
            &response(0, false),
            us(1),
        );
        m.record(
            Transport::Udp,
            &q,
            Outcome::NxDomain,
            &response(3, false),
            us(500_000),
        );
        m.record(Transport::Udp, &[1], Outcome::Dropped, &[], us(1));
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
            assert_eq!(qtype_index(bad), QTYPE_NONE, "{bad:?}");
        }
        let mut two = query("a.b", rtype::A);
        two[5] = 2;
        assert_eq!(qtype_index(&two), QTYPE_NONE);
        assert_eq!(qtype_index(&query("a.b", rtype::SRV)), 2);
        assert_eq!(qtype_index(&query("a.b", rtype::PTR)), QTYPE_OTHER);
    }

    #[test]
    fn the_parser_refuses_what_prometheus_would() {
        let ok =
            "# HELP fleetdns_x_total X.\n# TYPE fleetdns_x_total counter\nfleetdns_x_total 1\n";
        parse(ok);
        let hist = |b1: &str, inf: &str, count: &str| {
            format!(
                "# HELP fleetdns_h_seconds H.\n# TYPE fleetdns_h_seconds histogram\n\
                 fleetdns_h_seconds_bucket{{le=\"0.1\"}} {b1}\n\
                 fleetdns_h_seconds_bucket{{le=\"+Inf\"}} {inf}\n\
                 fleetdns_h_seconds_sum 0.5\nfleetdns_h_seconds_count {count}\n"
            )
        };
        parse(&hist("1", "2", "2"));
        for bad in [
            ok.trim_end().to_owned(),
            ok.replace("# HELP fleetdns_x_total X.\n", ""),
            ok.replace("# TYPE fleetdns_x_total counter\n", ""),
            ok.replace("fleetdns_x_total 1", "fleetdns_x_total{a=\"1\" b=\"2\"} 1"),
            ok.replace("fleetdns_x_total 1", "fleetdns_x_total{a=\"1} 1"),
            ok.replace("fleetdns_x_total 1", "fleetdns_x_total one"),
            ok.replace("fleetdns_x_total 1", "fleetdns_y_total 1"),
            ok.replace("fleetdns_x", "other_x"),
            ok.replace("_total", ""),
            format!("{ok}fleetdns_x_total 2\n"),
            hist("3", "2", "2"),
            hist("1", "2", "3"),
        ] {
            assert!(parse_exposition(&bad).is_err(), "accepted:\n{bad}");
        }
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut text = String::new();
        let mut e = Exposition::new(&mut text);
        e.header("fleetdns_build_info", "gauge", "Build.\nSecond line \\.");
        e.sample("fleetdns_build_info", &[("version", "a\"b\\c\nd")], 1);
        let samples = parse(&text);
        assert_eq!(samples[0].labels["version"], "a\"b\\c\nd");
        assert_eq!(text.lines().count(), 3);
    }
}
