//! `/metrics`: the whole exposition. The DNS crate renders its own families (servers,
//! forwarder, cache); this adds the build, sources, etcd registry, sync, and the registry and
//! table gauges of the installed answer table. Every metric is listed in `docs/metrics.md`.

use std::sync::atomic::{AtomicU64, Ordering};

use fleetdns_dns::metrics::Exposition;
use fleetdns_k8s::SourceStatus;

use super::OpsState;

/// (name, help, how to read it) of one per-source metric.
type SourceMetric = (&'static str, &'static str, fn(&SourceStatus) -> u64);

impl OpsState {
    /// The whole exposition. The registry and table gauges appear once a table is installed.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        let mut out = Exposition::new(&mut text);
        out.header(
            "fleetdns_build_info",
            "gauge",
            "Always 1; the version of the running fleetdns.",
        );
        out.sample(
            "fleetdns_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        self.dns.render(&mut out);
        let forwarder = self.served.as_ref().and_then(|s| s.forwarder.load_full());
        fleetdns_dns::metrics::render_forwarder(forwarder.as_deref(), &mut out);
        self.render_sources(&mut out);
        self.render_etcd(&mut out);
        self.render_sync(&mut out);

        let name = "fleetdns_table_installs_total";
        out.header(
            name,
            "counter",
            "Answer tables compiled and swapped in (one per registry change).",
        );
        out.sample(name, &[], self.installs.load(Ordering::Relaxed));
        let Some(i) = self.last_installed() else {
            return text;
        };
        let gauges: [(&str, &str, f64); 8] = [
            (
                "fleetdns_registry_snapshot_age_seconds",
                "Seconds since the registry snapshot behind the installed answer table was taken (the last change of fleet state).",
                i.received.elapsed().as_secs_f64(),
            ),
            (
                "fleetdns_registry_snapshot_version",
                "Version of the registry snapshot behind the installed answer table.",
                i.snapshot_version as f64,
            ),
            (
                "fleetdns_registry_exports",
                "Exported services in the snapshot, counted per cluster.",
                i.exports as f64,
            ),
            (
                "fleetdns_table_services",
                "Services in the installed answer table after merging across clusters.",
                i.services as f64,
            ),
            (
                "fleetdns_table_zones",
                "Zones the installed answer table serves.",
                i.table.zones as f64,
            ),
            (
                "fleetdns_table_names",
                "Names (owners and empty non-terminals) in the installed answer table.",
                i.table.names as f64,
            ),
            (
                "fleetdns_table_records",
                "Records in the installed answer table.",
                i.table.records as f64,
            ),
            (
                "fleetdns_table_compile_duration_seconds",
                "Time the installed answer table took to merge and compile.",
                i.compile.as_secs_f64(),
            ),
        ];
        let name = "fleetdns_registry_clusters";
        out.header(
            name,
            "gauge",
            "Clusters in the snapshot behind the installed answer table, by liveness.",
        );
        out.sample(name, &[("state", "alive")], i.clusters_alive);
        out.sample(name, &[("state", "dead")], i.clusters_dead);
        for (name, help, value) in gauges {
            out.header(name, "gauge", help);
            out.sample(name, &[], value);
        }
        text
    }

    /// `fleetdns_sync_*`: one series per `[[sync]]` zone (docs/metrics.md).
    fn render_sync(&self, out: &mut Exposition<'_>) {
        use fleetdns_publish::sync::{ERROR_KINDS, SyncMetrics};
        let all = self
            .sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if all.is_empty() {
            return;
        }
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        type Field = fn(&SyncMetrics) -> &AtomicU64;
        let series: [(&str, &str, &str, Field); 6] = [
            (
                "fleetdns_sync_records_created_total",
                "counter",
                "Record sets the sync created in the external zone.",
                |m| &m.created,
            ),
            (
                "fleetdns_sync_records_updated_total",
                "counter",
                "Record sets the sync updated in the external zone.",
                |m| &m.updated,
            ),
            (
                "fleetdns_sync_records_deleted_total",
                "counter",
                "Record sets the sync deleted from the external zone.",
                |m| &m.deleted,
            ),
            (
                "fleetdns_sync_writes_total",
                "counter",
                "Write requests the sync sent (RFC 2136 UPDATE messages, etcd transactions).",
                |m| &m.messages,
            ),
            (
                "fleetdns_sync_last_success_timestamp_seconds",
                "gauge",
                "Unix time of the last sync that applied everything (0: none yet).",
                |m| &m.last_success,
            ),
            (
                "fleetdns_sync_plan_changes",
                "gauge",
                "Changes (creates, updates, deletes) in the last plan.",
                |m| &m.plan_size,
            ),
        ];
        for (name, kind, help, field) in series {
            out.header(name, kind, help);
            for m in &all {
                out.sample(name, &[("zone", m.zone.as_str())], get(field(m)));
            }
        }
        let name = "fleetdns_sync_errors_total";
        out.header(name, "counter", "Syncs that failed, by zone and kind (connect, timeout, refused, tsig, axfr, malformed, etcd, config, other).");
        for m in &all {
            for (i, kind) in ERROR_KINDS.iter().enumerate() {
                out.sample(
                    name,
                    &[("zone", m.zone.as_str()), ("kind", kind)],
                    get(&m.errors[i]),
                );
            }
        }
    }

    fn render_etcd(&self, out: &mut Exposition<'_>) {
        let Some(s) = self
            .etcd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        let rows: [(&str, &str, &str, u64); 9] = [
            (
                "fleetdns_registry_stale",
                "gauge",
                "1 while the etcd snapshot served may be behind etcd (not loaded yet, or the watch is down); the last snapshot keeps being served.",
                u64::from(s.stale.load(Ordering::Relaxed)),
            ),
            (
                "fleetdns_registry_revision",
                "gauge",
                "The etcd revision the served snapshot reflects.",
                s.revision.load(Ordering::Relaxed).max(0) as u64,
            ),
            (
                "fleetdns_registry_loads_total",
                "counter",
                "Snapshots loaded from etcd: the first, then one after every compaction or lost connection.",
                s.loads.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_registry_watch_errors_total",
                "counter",
                "etcd snapshot loads and watches that failed (each retried with backoff).",
                s.watch_errors.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_registry_bad_values_total",
                "counter",
                "etcd values that could not be decoded (skipped).",
                s.bad_values.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_registry_publishes_total",
                "counter",
                "Export sets this process wrote to etcd.",
                s.publishes.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_registry_generations_total",
                "counter",
                "Whole export sets this process wrote to etcd as a new generation: a cluster's first publish, one on a new lease, one too large for a transaction of changes.",
                s.generations.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_registry_publish_errors_total",
                "counter",
                "Export sets this process failed to write to etcd (retried by the source).",
                s.publish_errors.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_registry_auth_renewals_total",
                "counter",
                "Times the etcd client authenticated again because etcd refused its token (expired, or forgotten by a restart).",
                s.auth_renewals.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in rows {
            out.header(name, kind, help);
            out.sample(name, &[], value);
        }
    }

    fn render_sources(&self, out: &mut Exposition<'_>) {
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if sources.is_empty() {
            return; // a family without samples is not valid exposition
        }
        let gauges: [SourceMetric; 3] = [
            (
                "fleetdns_source_connected",
                "1 while the cluster's API server answers; 0 while it is unreachable (its last known exports stay served).",
                |s| u64::from(s.connected.load(Ordering::Relaxed)),
            ),
            (
                "fleetdns_source_synced",
                "1 once every watched kind was listed and the cluster's set published.",
                |s| u64::from(s.synced.load(Ordering::Relaxed)),
            ),
            (
                "fleetdns_source_exports",
                "Exported services in the cluster's last published set.",
                |s| s.exports.load(Ordering::Relaxed),
            ),
        ];
        let counters: [SourceMetric; 6] = [
            (
                "fleetdns_source_watch_errors_total",
                "Failed lists and watches (each retried with backoff; 410 Gone re-lists count too).",
                |s| s.watch_errors.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_source_outages_total",
                "Times the cluster's API server stopped answering (one per outage).",
                |s| s.outages.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_source_bad_objects_total",
                "Objects skipped because they could not be read.",
                |s| s.bad_objects.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_source_publishes_total",
                "Export sets published to the registry (only when the set changed).",
                |s| s.publishes.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_source_writes_total",
                "Writes into the cluster: ServiceExport status, ServiceImports, EndpointSlices, deletes.",
                |s| s.writes.load(Ordering::Relaxed),
            ),
            (
                "fleetdns_source_write_errors_total",
                "Writes into the cluster that failed (retried with backoff).",
                |s| s.write_errors.load(Ordering::Relaxed),
            ),
        ];
        for (kind, list) in [("gauge", &gauges[..]), ("counter", &counters[..])] {
            for (name, help, read) in list {
                out.header(name, kind, help);
                for s in &sources {
                    out.sample(name, &[("cluster", s.cluster.as_str())], read(s));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fleetdns_dns::metrics::{parse_exposition, sample_value};
    use fleetdns_dns::{Outcome, Transport};

    use super::super::test_support::{installed, state};

    #[test]
    fn the_exposition_is_valid_before_and_after_the_first_table() {
        let s = state();
        let text = s.render();
        let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(sample_value(&samples, "fleetdns_table_names", &[]).is_none());
        assert_eq!(
            sample_value(&samples, "fleetdns_table_installs_total", &[]),
            Some(0.0)
        );

        s.table_installed(installed());
        s.dns.record(
            Transport::Udp,
            fleetdns_dns::request::Counted::default(),
            Outcome::FormErr,
            &[0, 0, 0x80, 1],
            Duration::from_micros(3),
        );
        let text = s.render();
        let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let v = |name: &str, labels: &[(&str, &str)]| {
            sample_value(&samples, name, labels).unwrap_or_else(|| panic!("{name}\n{text}"))
        };
        assert_eq!(
            v(
                "fleetdns_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            1.0
        );
        assert_eq!(v("fleetdns_table_installs_total", &[]), 1.0);
        assert_eq!(v("fleetdns_registry_clusters", &[("state", "alive")]), 2.0);
        assert_eq!(v("fleetdns_registry_clusters", &[("state", "dead")]), 1.0);
        assert_eq!(v("fleetdns_registry_exports", &[]), 9.0);
        assert_eq!(v("fleetdns_registry_snapshot_version", &[]), 7.0);
        assert!(v("fleetdns_registry_snapshot_age_seconds", &[]) >= 0.0);
        assert_eq!(v("fleetdns_table_services", &[]), 6.0);
        assert_eq!(v("fleetdns_table_zones", &[]), 4.0);
        assert_eq!(v("fleetdns_table_names", &[]), 40.0);
        assert_eq!(v("fleetdns_table_records", &[]), 30.0);
        assert_eq!(v("fleetdns_table_compile_duration_seconds", &[]), 0.00025);
        assert_eq!(
            v(
                "fleetdns_dns_responses_total",
                &[("outcome", "formerr"), ("rcode", "FORMERR")]
            ),
            1.0
        );
        assert_eq!(v("fleetdns_dns_request_duration_seconds_count", &[]), 1.0);
    }

    /// Every metric rendered is documented in docs/metrics.md, and every documented one exists.
    #[test]
    fn every_metric_is_documented() {
        let docs = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md"),
        )
        .unwrap();
        let s = state();
        s.table_installed(installed());
        let text = s.render();
        let rendered: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for name in &rendered {
            assert!(
                docs.contains(&format!("`{name}`")),
                "{name} is not in docs/metrics.md"
            );
        }
        for word in docs.split('`').skip(1).step_by(2) {
            let is_name = word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if word.starts_with("fleetdns_") && is_name {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s))
                    .filter(|b| rendered.contains(b))
                    .unwrap_or(word);
                assert!(
                    rendered.contains(&base),
                    "docs list {word}, which is not rendered"
                );
            }
        }
    }
}
