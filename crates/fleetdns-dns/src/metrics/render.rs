//! Every metric family of the crate rendered in one place: the DNS servers' counters, and the
//! forwarder's cache and upstreams.

use std::sync::atomic::Ordering::{self, Relaxed};

use super::{BUCKET_LABELS, BUCKETS_NANOS, Exposition, Metrics, QTYPES, RESPONSES, TRANSPORTS};
use crate::cache::CacheStats;
use crate::forward::{Forwarder, Upstream};

impl Metrics {
    /// Appends every DNS metric, zeros included (zone series once a zone exists), to `out`.
    pub fn render(&self, out: &mut Exposition<'_>) {
        {
            // Written once a zone exists (a header without samples is not valid exposition).
            let name = "fleetdns_dns_zone_requests_total";
            let zones = self.zone_counts();
            if !zones.is_empty() {
                out.header(
                    name,
                    "counter",
                    "DNS requests answered in a zone (authoritative or forward), by zone name.",
                );
            }
            for (zone, count) in &zones {
                out.sample(name, &[("zone", zone)], count);
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

/// Writes the cache and upstream metrics. The cache series are always written (zero without
/// forward zones); upstream series exist per configured upstream.
pub fn render_forwarder(forwarder: Option<&Forwarder>, out: &mut Exposition<'_>) {
    let zero = CacheStats::default();
    let (stats, entries) = match forwarder {
        Some(f) => (&f.cache.stats, f.cache.len()),
        None => (&zero, 0),
    };
    for (name, help, value) in [
        (
            "fleetdns_cache_hits_total",
            "Forwarded queries answered from the cache.",
            &stats.hits,
        ),
        (
            "fleetdns_cache_misses_total",
            "Forwarded queries not in the cache (or expired).",
            &stats.misses,
        ),
        (
            "fleetdns_cache_evictions_total",
            "Entries dropped to stay within the cache capacity.",
            &stats.evictions,
        ),
        (
            "fleetdns_cache_stale_total",
            "Expired answers served because every upstream failed (RFC 8767).",
            &stats.stale,
        ),
    ] {
        out.header(name, "counter", help);
        out.sample(name, &[], value.load(Ordering::Relaxed));
    }
    out.header(
        "fleetdns_cache_entries",
        "gauge",
        "Answers held in the cache.",
    );
    out.sample("fleetdns_cache_entries", &[], entries);
    let Some(f) = forwarder.filter(|f| f.upstreams().next().is_some()) else {
        return;
    };
    let series: Vec<(&str, &Upstream, u32, String)> = f
        .upstreams_with_max_fails()
        .map(|(zone, u, max_fails)| (zone, u, max_fails, u.addr.to_string()))
        .collect();
    type Value = fn(&Upstream, u32) -> u64;
    let metrics: [(&str, &str, &str, Value); 3] = [
        (
            "fleetdns_upstream_requests_total",
            "counter",
            "Queries sent to an upstream.",
            |u, _| u.requests.load(Ordering::Relaxed),
        ),
        (
            "fleetdns_upstream_failures_total",
            "counter",
            "Upstream exchanges that timed out or failed.",
            |u, _| u.failures.load(Ordering::Relaxed),
        ),
        (
            "fleetdns_upstream_healthy",
            "gauge",
            "1 while the upstream is in use, 0 while it is down (after max_fails failures, until a health check answers).",
            |u, m| u64::from(u.healthy(m)),
        ),
    ];
    for (name, kind, help, value) in metrics {
        out.header(name, kind, help);
        for (zone, u, max_fails, addr) in &series {
            out.sample(
                name,
                &[("zone", zone), ("upstream", addr)],
                value(u, *max_fails),
            );
        }
    }
}
