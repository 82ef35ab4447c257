//! The first sync of a large zone (bench/sync.sh runs it): N A records (each with its TXT
//! ownership record) created in an empty zone of a real BIND 9 or Knot over TSIG, then the
//! no-op resync that reads it all back by AXFR. Prints `key=value` lines.
//!
//! usage: sync_bench [RECORDS] [BATCH_SIZE] [bind|knot]   (default 10000 50 bind)

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fleetdns_publish::desired::Desired;
use fleetdns_publish::filter::DomainFilter;
use fleetdns_publish::plan::PlanSettings;
use fleetdns_publish::rfc2136::{Rfc2136, TsigKey};
use fleetdns_publish::sync::{Provider, SyncJob};
use fleetdns_publish::testing::{KEY_NAME, Primary, SECRET};
use fleetdns_publish::txt::TxtNames;
use fleetdns_publish::{Endpoint, Policy, RecordType};

const ZONE: &str = "fleet.example.com";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let batch: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let server = args.get(3).map_or("bind", String::as_str);
    let primary = match server {
        "knot" => Primary::knot(ZONE, "", "hmac-sha256"),
        _ => Primary::bind(ZONE, "", "hmac-sha256"),
    };
    let key = TsigKey::new(KEY_NAME, "hmac-sha256", SECRET).unwrap();
    let provider = Rfc2136::new(
        primary.addr(),
        ZONE,
        Some(key),
        Duration::from_secs(60),
        batch,
    )
    .unwrap();
    let job = SyncJob {
        settings: PlanSettings {
            zone: ZONE.into(),
            owner_id: "bench".into(),
            policy: Policy::Sync,
            filter: DomainFilter::default(),
            managed_types: [RecordType::A, RecordType::Aaaa, RecordType::Cname].into(),
            txt_names: TxtNames::default(),
            default_ttl: 300,
            min_ttl: 0,
        },
        provider: Provider::Rfc2136(provider),
        publish_clusterset: false,
        interval: Duration::from_secs(60),
        min_event_interval: Duration::from_secs(5),
    };
    let desired = Desired {
        endpoints: (0..records)
            .map(|i| Endpoint {
                name: format!("svc{i}.ns{}.{ZONE}", i % 100),
                record_type: RecordType::A,
                targets: BTreeSet::from([format!(
                    "10.{}.{}.{}",
                    i >> 16 & 255,
                    i >> 8 & 255,
                    i & 255
                )]),
                ttl: None,
                resource: format!("service/ns{}/svc{i}", i % 100),
            })
            .collect(),
        warnings: vec![],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let first = rt.block_on(job.once(desired.clone(), false)).unwrap();
    let first_time = started.elapsed();
    let started = Instant::now();
    let again = rt.block_on(job.once(desired, false)).unwrap();
    let resync_time = started.elapsed();
    assert_eq!(first.applied.creates, records);
    assert!(again.plan.is_empty());
    println!("server={server}");
    println!("records={records}");
    println!("batch_size={batch}");
    println!("first_sync_seconds={:.3}", first_time.as_secs_f64());
    println!(
        "first_sync_records_per_second={:.0}",
        records as f64 / first_time.as_secs_f64()
    );
    println!("update_messages={}", first.applied.messages);
    println!("noop_resync_seconds={:.3}", resync_time.as_secs_f64());
    println!("axfr_records={}", 2 * records + 3);
}
