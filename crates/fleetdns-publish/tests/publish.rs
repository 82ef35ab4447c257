//! The sync against real servers from Debian on loopback: BIND 9 (`named`) with a TSIG key.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use fleetdns_publish::desired::Desired;
use fleetdns_publish::filter::DomainFilter;
use fleetdns_publish::plan::PlanSettings;
use fleetdns_publish::rfc2136::{Rfc2136, Rfc2136Error, TsigKey};
use fleetdns_publish::sync::{Provider, SyncError, SyncJob};
use fleetdns_publish::testing::{KEY_NAME, Kind, Primary, SECRET};
use fleetdns_publish::txt::{Labels, TxtNames};
use fleetdns_publish::{Endpoint, Policy, RecordType};

/// Starts a primary: BIND 9 or Knot.
type Start = fn(&str, &str, &str) -> Primary;

const ZONE: &str = "fleet.example.com";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn key() -> TsigKey {
    TsigKey::new(KEY_NAME, "hmac-sha256", SECRET).unwrap()
}

fn provider(addr: std::net::SocketAddr, key: Option<TsigKey>) -> Provider {
    Provider::Rfc2136(Rfc2136::new(addr, ZONE, key, Duration::from_secs(5), 50).unwrap())
}

fn job(provider: Provider, policy: Policy) -> SyncJob {
    SyncJob {
        settings: PlanSettings {
            zone: ZONE.into(),
            owner_id: "fleet-1".into(),
            policy,
            filter: DomainFilter::default(),
            managed_types: [RecordType::A, RecordType::Aaaa, RecordType::Cname].into(),
            txt_names: TxtNames::default(),
            default_ttl: 300,
            min_ttl: 0,
        },
        provider,
        publish_clusterset: false,
        interval: Duration::from_secs(60),
        min_event_interval: Duration::from_secs(5),
    }
}

fn a(name: &str, ips: &[&str]) -> Endpoint {
    Endpoint {
        name: format!("{name}.{ZONE}"),
        record_type: RecordType::A,
        targets: ips.iter().map(ToString::to_string).collect(),
        ttl: None,
        resource: format!("service/default/{name}"),
    }
}

fn desired(eps: Vec<Endpoint>) -> Desired {
    Desired {
        endpoints: eps,
        warnings: vec![],
    }
}

fn owner_txt(owner: &str, name: &str) -> String {
    format!(
        "\"{}\"",
        Labels {
            owner: owner.into(),
            resource: format!("service/default/{name}"),
        }
        .value()
    )
}

fn fq(name: &str) -> String {
    format!("{name}.{ZONE}")
}

fn xdns_2_16_sync_creates_updates_and_deletes_with_tsig(start: Start) {
    let bind = start(ZONE, "", "hmac-sha256");
    let job = job(provider(bind.addr(), Some(key())), Policy::Sync);
    let rt = rt();
    let cname = Endpoint {
        record_type: RecordType::Cname,
        targets: BTreeSet::from(["edge.example.net".to_string()]),
        ttl: Some(120),
        ..a("web", &[])
    };
    let out = rt
        .block_on(job.once(
            desired(vec![
                a("payment", &["192.0.2.1", "192.0.2.2"]),
                cname.clone(),
            ]),
            false,
        ))
        .unwrap();
    assert_eq!((out.applied.creates, out.applied.messages), (2, 1));
    assert_eq!(bind.dig(&fq("payment"), "A"), ["192.0.2.1", "192.0.2.2"]);
    assert_eq!(bind.dig(&fq("web"), "CNAME"), ["edge.example.net."]);
    // XDNS-5/6: the ownership record, exactly as ExternalDNS writes it.
    assert_eq!(
        bind.dig(&fq("a-payment"), "TXT"),
        [owner_txt("fleet-1", "payment")]
    );
    assert_eq!(
        bind.dig(&fq("cname-web"), "TXT"),
        [owner_txt("fleet-1", "web")]
    );

    // An address change is an update; nothing else moves.
    let out = rt
        .block_on(job.once(
            desired(vec![a("payment", &["192.0.2.3"]), cname.clone()]),
            false,
        ))
        .unwrap();
    assert_eq!(
        (
            out.applied.creates,
            out.applied.updates,
            out.applied.deletes
        ),
        (0, 1, 0)
    );
    assert_eq!(bind.dig(&fq("payment"), "A"), ["192.0.2.3"]);

    // In sync: an empty plan, no message.
    let out = rt
        .block_on(job.once(desired(vec![a("payment", &["192.0.2.3"]), cname]), false))
        .unwrap();
    assert!(out.plan.is_empty(), "{}", out.plan);
    assert_eq!(out.applied.messages, 0);

    // The service is gone: record and ownership record go.
    let out = rt.block_on(job.once(desired(vec![]), false)).unwrap();
    assert_eq!(out.applied.deletes, 2);
    assert!(bind.dig(&fq("payment"), "A").is_empty());
    assert!(bind.dig(&fq("a-payment"), "TXT").is_empty());
    assert!(bind.dig(&fq("web"), "CNAME").is_empty());
}

#[test]
fn xdns_2_16_sync_creates_updates_and_deletes_with_tsig_bind() {
    xdns_2_16_sync_creates_updates_and_deletes_with_tsig(Primary::bind);
}

#[test]
fn xdns_2_16_sync_creates_updates_and_deletes_with_tsig_knot() {
    xdns_2_16_sync_creates_updates_and_deletes_with_tsig(Primary::knot);
}

fn xdns_2_upsert_only_never_deletes_and_create_only_only_creates(start: Start) {
    let bind = start(ZONE, "", "hmac-sha512");
    let key = TsigKey::new(KEY_NAME, "hmac-sha512", SECRET).unwrap();
    let rt = rt();
    let sync = job(provider(bind.addr(), Some(key.clone())), Policy::Sync);
    rt.block_on(sync.once(
        desired(vec![a("keep", &["192.0.2.1"]), a("moved", &["192.0.2.2"])]),
        false,
    ))
    .unwrap();

    let upsert = job(provider(bind.addr(), Some(key.clone())), Policy::UpsertOnly);
    let out = rt
        .block_on(upsert.once(desired(vec![a("moved", &["192.0.2.20"])]), false))
        .unwrap();
    assert_eq!((out.applied.updates, out.applied.deletes), (1, 0));
    assert_eq!(
        bind.dig(&fq("keep"), "A"),
        ["192.0.2.1"],
        "upsert-only never deletes"
    );
    assert_eq!(bind.dig(&fq("moved"), "A"), ["192.0.2.20"]);

    let create = job(provider(bind.addr(), Some(key)), Policy::CreateOnly);
    let out = rt
        .block_on(create.once(
            desired(vec![
                a("moved", &["192.0.2.99"]),
                a("fresh", &["192.0.2.5"]),
            ]),
            false,
        ))
        .unwrap();
    assert_eq!(
        (
            out.applied.creates,
            out.applied.updates,
            out.applied.deletes
        ),
        (1, 0, 0)
    );
    assert_eq!(
        bind.dig(&fq("moved"), "A"),
        ["192.0.2.20"],
        "create-only never updates"
    );
    assert_eq!(bind.dig(&fq("fresh"), "A"), ["192.0.2.5"]);
    assert_eq!(bind.dig(&fq("keep"), "A"), ["192.0.2.1"]);
}

#[test]
fn xdns_2_upsert_only_never_deletes_and_create_only_only_creates_bind() {
    xdns_2_upsert_only_never_deletes_and_create_only_only_creates(Primary::bind);
}

#[test]
fn xdns_2_upsert_only_never_deletes_and_create_only_only_creates_knot() {
    xdns_2_upsert_only_never_deletes_and_create_only_only_creates(Primary::knot);
}

fn xdns_3_6_shared_zone_foreign_records_untouched_old_format_adopted(start: Start) {
    // Written exactly as ExternalDNS writes them: another owner's TXT+A pairs (current and
    // old format), a record without an ownership record, and ours in the old format.
    let other = |n: &str| owner_txt("cluster-2", n);
    let ours = |n: &str| owner_txt("fleet-1", n);
    let records = format!(
        "payment A 192.0.2.50\na-payment TXT {}\nshop A 192.0.2.51\nshop TXT {}\nmanual A 192.0.2.52\nlegacy A 192.0.2.60\nlegacy TXT {}\nlegacy-gone A 192.0.2.61\nlegacy-gone TXT {}\n",
        other("payment"),
        other("shop"),
        ours("legacy"),
        ours("legacy-gone"),
    );
    let bind = start(ZONE, &records, "hmac-sha256");
    let job = job(provider(bind.addr(), Some(key())), Policy::Sync);
    let rt = rt();
    let want = desired(vec![
        a("payment", &["192.0.2.9"]),
        a("manual", &["192.0.2.9"]),
        a("legacy", &["192.0.2.60"]),
    ]);
    let out = rt.block_on(job.once(want, false)).unwrap();
    let left: Vec<&str> = out
        .plan
        .left_alone
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(left, [fq("payment"), fq("manual")]);
    assert_eq!(
        (
            out.applied.creates,
            out.applied.updates,
            out.applied.deletes
        ),
        (0, 1, 1)
    );
    // Another owner's records and unowned ones: exactly as they were.
    assert_eq!(bind.dig(&fq("payment"), "A"), ["192.0.2.50"]);
    assert_eq!(bind.dig(&fq("a-payment"), "TXT"), [other("payment")]);
    assert_eq!(bind.dig(&fq("shop"), "A"), ["192.0.2.51"]);
    assert_eq!(bind.dig(&fq("shop"), "TXT"), [other("shop")]);
    assert_eq!(bind.dig(&fq("manual"), "A"), ["192.0.2.52"]);
    // Ours in the old format: adopted (current-format TXT written, old one gone) or deleted.
    assert_eq!(bind.dig(&fq("legacy"), "A"), ["192.0.2.60"]);
    assert_eq!(bind.dig(&fq("a-legacy"), "TXT"), [ours("legacy")]);
    assert!(bind.dig(&fq("legacy"), "TXT").is_empty());
    assert!(bind.dig(&fq("legacy-gone"), "A").is_empty());
    assert!(bind.dig(&fq("legacy-gone"), "TXT").is_empty());
}

#[test]
fn xdns_3_6_shared_zone_foreign_records_untouched_old_format_adopted_bind() {
    xdns_3_6_shared_zone_foreign_records_untouched_old_format_adopted(Primary::bind);
}

#[test]
fn xdns_3_6_shared_zone_foreign_records_untouched_old_format_adopted_knot() {
    xdns_3_6_shared_zone_foreign_records_untouched_old_format_adopted(Primary::knot);
}

#[test]
fn xdns_10_domain_filters_and_exclusions_bound_what_is_written() {
    let bind = Primary::bind(ZONE, "", "hmac-sha256");
    let mut job = job(provider(bind.addr(), Some(key())), Policy::Sync);
    job.settings.filter = DomainFilter::new(
        &[format!("public.{ZONE}")],
        &[format!("internal.public.{ZONE}")],
        None,
        None,
    )
    .unwrap();
    let rt = rt();
    rt.block_on(job.once(
        desired(vec![
            a("a.public", &["192.0.2.1"]),
            a("b.internal.public", &["192.0.2.2"]),
            a("c", &["192.0.2.3"]),
        ]),
        false,
    ))
    .unwrap();
    assert_eq!(bind.dig(&fq("a.public"), "A"), ["192.0.2.1"]);
    assert!(bind.dig(&fq("b.internal.public"), "A").is_empty());
    assert!(bind.dig(&fq("c"), "A").is_empty());
}

fn xdns_16_a_wrong_tsig_key_is_refused_reported_and_changes_nothing(start: Start) {
    let bind = start(ZONE, "manual A 192.0.2.52\n", "hmac-sha256");
    let rt = rt();
    let wrong_secret = TsigKey::new(
        KEY_NAME,
        "hmac-sha256",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    )
    .unwrap();
    let p = Rfc2136::new(
        bind.addr(),
        ZONE,
        Some(wrong_secret),
        Duration::from_secs(5),
        50,
    )
    .unwrap();
    let err = rt.block_on(p.read()).unwrap_err();
    match &err {
        Rfc2136Error::Refused {
            rcode, tsig_error, ..
        } => {
            assert_eq!(rcode, "NOTAUTH", "{err}");
            assert_eq!(tsig_error.as_deref(), Some("BADSIG"), "{err}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    // The same key through a whole sync: the read fails, so nothing is written.
    let job = job(Provider::Rfc2136(p.clone()), Policy::Sync);
    let err = rt
        .block_on(job.once(desired(vec![a("new", &["192.0.2.1"])]), false))
        .unwrap_err();
    assert!(matches!(err, SyncError::Read(_, "refused")), "{err}");
    // An UPDATE alone, with a plan made by hand, is refused too and names the TSIG error.
    let plan = fleetdns_publish::plan::Plan {
        creates: vec![Endpoint {
            ttl: Some(300),
            ..a("new", &["192.0.2.1"])
        }],
        ..Default::default()
    };
    let err = rt
        .block_on(p.apply(&plan, "fleet-1", &TxtNames::default()))
        .unwrap_err();
    assert!(
        err.to_string().contains("NOTAUTH") && err.to_string().contains("BADSIG"),
        "{err}"
    );
    assert_eq!(err.applied.messages, 0);
    // An unknown key name: BADKEY.
    let unknown = TsigKey::new("nobody", "hmac-sha256", SECRET).unwrap();
    let p = Rfc2136::new(bind.addr(), ZONE, Some(unknown), Duration::from_secs(5), 50).unwrap();
    let err = rt
        .block_on(p.apply(&plan, "fleet-1", &TxtNames::default()))
        .unwrap_err();
    assert!(err.to_string().contains("BADKEY"), "{err}");
    // No key at all: refused (BIND says REFUSED, Knot NOTAUTH).
    let p = Rfc2136::new(bind.addr(), ZONE, None, Duration::from_secs(5), 50).unwrap();
    let err = rt.block_on(p.read()).unwrap_err();
    let expected = match bind.kind {
        Kind::Bind => "REFUSED",
        Kind::Knot => "NOTAUTH",
    };
    assert!(
        matches!(&err, Rfc2136Error::Refused { rcode, .. } if rcode == expected),
        "{err}"
    );
    assert!(bind.dig(&fq("new"), "A").is_empty());
    assert_eq!(bind.dig(&fq("manual"), "A"), ["192.0.2.52"]);
}

#[test]
fn xdns_16_a_wrong_tsig_key_is_refused_reported_and_changes_nothing_bind() {
    xdns_16_a_wrong_tsig_key_is_refused_reported_and_changes_nothing(Primary::bind);
}

#[test]
fn xdns_16_a_wrong_tsig_key_is_refused_reported_and_changes_nothing_knot() {
    xdns_16_a_wrong_tsig_key_is_refused_reported_and_changes_nothing(Primary::knot);
}

/// A TCP relay in front of BIND that passes the client's bytes through and BIND's answer
/// only up to `pass` whole messages, then (with `corrupt`) one message with a flipped MAC
/// byte, then closes: an AXFR cut short, or tampered with.
async fn relay(bind: std::net::SocketAddr, pass: usize, corrupt: bool) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let mut server = tokio::net::TcpStream::connect(bind).await.unwrap();
            let mut len = [0u8; 2];
            client.read_exact(&mut len).await.unwrap();
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            client.read_exact(&mut q).await.unwrap();
            server.write_all(&len).await.unwrap();
            server.write_all(&q).await.unwrap();
            for i in 0..=pass {
                if server.read_exact(&mut len).await.is_err() {
                    break;
                }
                let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
                server.read_exact(&mut m).await.unwrap();
                if i == pass {
                    if corrupt {
                        let last = m.len() - 10;
                        m[last] ^= 0xff;
                        client.write_all(&len).await.unwrap();
                        client.write_all(&m).await.unwrap();
                    }
                    break;
                }
                client.write_all(&len).await.unwrap();
                client.write_all(&m).await.unwrap();
            }
            // Dropping both ends closes the connection mid-transfer.
        }
    });
    addr
}

fn xdns_17_a_cut_or_tampered_axfr_is_an_error_that_changes_nothing(start: Start) {
    // Enough of our own records for a multi-message transfer.
    let mut records = String::new();
    for i in 0..3000 {
        let _ = writeln!(
            records,
            "svc{i} A 10.0.{}.{}\na-svc{i} TXT {}",
            i / 250,
            i % 250 + 1,
            owner_txt("fleet-1", &format!("svc{i}"))
        );
    }
    let bind = start(ZONE, &records, "hmac-sha256");
    let rt = rt();
    rt.block_on(async {
        // The whole zone reads fine directly.
        let direct =
            Rfc2136::new(bind.addr(), ZONE, Some(key()), Duration::from_secs(5), 50).unwrap();
        let zone = direct.read().await.unwrap();
        assert_eq!(
            zone.sets.len(),
            2 * 3000 + 1,
            "every A, TXT and the NS host"
        );
        for (pass, corrupt) in [(1, false), (2, true)] {
            let cut = relay(bind.addr(), pass, corrupt).await;
            let job = job(provider(cut, Some(key())), Policy::Sync);
            // Nothing desired under `sync`: a cut read taken for the zone would delete what it saw.
            let err = job.once(desired(vec![]), false).await.unwrap_err();
            let SyncError::Read(msg, kind) = &err else {
                panic!("{err}")
            };
            assert_eq!(*kind, if corrupt { "tsig" } else { "axfr" }, "{msg}");
        }
    });
    assert_eq!(bind.dig(&fq("svc0"), "A"), ["10.0.0.1"]);
    assert_eq!(bind.dig(&fq("svc2999"), "A"), ["10.0.11.250"]);
}

#[test]
fn xdns_17_a_cut_or_tampered_axfr_is_an_error_that_changes_nothing_bind() {
    xdns_17_a_cut_or_tampered_axfr_is_an_error_that_changes_nothing(Primary::bind);
}

#[test]
fn xdns_17_a_cut_or_tampered_axfr_is_an_error_that_changes_nothing_knot() {
    xdns_17_a_cut_or_tampered_axfr_is_an_error_that_changes_nothing(Primary::knot);
}

fn xdns_16_a_record_changed_meanwhile_fails_its_batch_instead_of_being_overwritten(start: Start) {
    let bind = start(ZONE, "", "hmac-sha256");
    let job = job(provider(bind.addr(), Some(key())), Policy::Sync);
    let rt = rt();
    rt.block_on(async {
        job.once(desired(vec![a("payment", &["192.0.2.1"])]), false)
            .await
            .unwrap();
        // Plan a move to .2, then someone else moves it to .77 before we apply.
        let stale = job
            .plan(&desired(vec![a("payment", &["192.0.2.2"])]))
            .await
            .unwrap();
        job.once(desired(vec![a("payment", &["192.0.2.77"])]), false)
            .await
            .unwrap();
        let err = job.provider.apply(&stale, &job.settings).await.unwrap_err();
        assert!(matches!(err, SyncError::Apply(_, "refused", _)), "{err}");
        assert!(err.to_string().contains("NXRRSET"), "{err}");
        // A create planned where someone created the name meanwhile fails too.
        let create = job
            .plan(&desired(vec![
                a("payment", &["192.0.2.77"]),
                a("fresh", &["192.0.2.5"]),
            ]))
            .await
            .unwrap();
        assert_eq!(create.creates.len(), 1);
        job.once(
            desired(vec![
                a("payment", &["192.0.2.77"]),
                a("fresh", &["192.0.2.6"]),
            ]),
            false,
        )
        .await
        .unwrap();
        let err = job
            .provider
            .apply(&create, &job.settings)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("YXRRSET"), "{err}");
    });
    assert_eq!(bind.dig(&fq("payment"), "A"), ["192.0.2.77"]);
    assert_eq!(bind.dig(&fq("fresh"), "A"), ["192.0.2.6"]);
}

#[test]
fn xdns_16_a_record_changed_meanwhile_fails_its_batch_instead_of_being_overwritten_bind() {
    xdns_16_a_record_changed_meanwhile_fails_its_batch_instead_of_being_overwritten(Primary::bind);
}

#[test]
fn xdns_16_a_record_changed_meanwhile_fails_its_batch_instead_of_being_overwritten_knot() {
    xdns_16_a_record_changed_meanwhile_fails_its_batch_instead_of_being_overwritten(Primary::knot);
}

mod etcd {
    use super::*;
    use etcd_client::{Client, GetOptions};
    use fleetdns_publish::skydns::SkyDns;

    async fn entries(client: &mut Client, prefix: &str) -> Vec<(String, String)> {
        let resp = client
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        resp.kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key_str().unwrap().to_owned(),
                    kv.value_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Keys under `dir/`: (leaf, value); the leaf is checked to be 8 hex digits.
    async fn leaves(client: &mut Client, dir: &str) -> Vec<String> {
        entries(client, &format!("{dir}/"))
            .await
            .into_iter()
            .map(|(k, v)| {
                let leaf = k.strip_prefix(&format!("{dir}/")).unwrap();
                assert!(
                    leaf.len() == 8
                        && leaf
                            .bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                    "XDNS-18: a random 8-hex leaf, got {k}"
                );
                v
            })
            .collect()
    }

    #[test]
    fn xdns_18_19_20_skydns_layout_byte_for_byte_one_entry_per_target_foreign_untouched() {
        let etcd = fleetdns_etcd::testing::TestEtcd::start();
        let rt = rt();
        rt.block_on(async {
            let mut client = Client::connect([etcd.endpoint()], None).await.unwrap();
            // Another owner's record, exactly as ExternalDNS's coredns provider writes it.
            let theirs_txt = r#"{"text":"\"heritage=external-dns,external-dns/owner=cluster-2,external-dns/resource=service/default/shop\"","targetstrip":1}"#;
            client.put("/skydns/com/example/fleet/shop/0badc0de", r#"{"host":"192.0.2.50","targetstrip":1}"#, None).await.unwrap();
            client.put("/skydns/com/example/fleet/a-shop/0badc0df", theirs_txt, None).await.unwrap();
            let sky = SkyDns::new(client.clone(), "/skydns/", ZONE, 300, Duration::from_secs(5));
            let job = job(Provider::Etcd(Box::new(sky)), Policy::Sync);
            let out = job
                .once(desired(vec![a("payment", &["10.0.0.1"]), a("shop", &["10.0.0.9"])]), false)
                .await
                .unwrap();
            assert_eq!(out.applied.creates, 1);
            assert_eq!(out.plan.left_alone.len(), 1, "{}", out.plan);
            let dir = "/skydns/com/example/fleet";
            assert_eq!(leaves(&mut client, &format!("{dir}/payment")).await, [r#"{"host":"10.0.0.1","targetstrip":1}"#]);
            assert_eq!(
                leaves(&mut client, &format!("{dir}/a-payment")).await,
                [r#"{"text":"\"heritage=external-dns,external-dns/owner=fleet-1,external-dns/resource=service/default/payment\"","targetstrip":1}"#]
            );

            // An address change (and a second target, and a TTL): exactly the new entries.
            let mut moved = a("payment", &["10.0.0.2", "10.0.0.3"]);
            moved.ttl = Some(60);
            let out = job.once(desired(vec![moved.clone(), a("shop", &["10.0.0.9"])]), false).await.unwrap();
            assert_eq!(out.applied.updates, 1);
            let mut now = leaves(&mut client, &format!("{dir}/payment")).await;
            now.sort();
            assert_eq!(
                now,
                [r#"{"host":"10.0.0.2","ttl":60,"targetstrip":1}"#, r#"{"host":"10.0.0.3","ttl":60,"targetstrip":1}"#]
            );
            assert_eq!(leaves(&mut client, &format!("{dir}/a-payment")).await.len(), 1, "no stale ownership entry");
            let out = job.once(desired(vec![moved, a("shop", &["10.0.0.9"])]), false).await.unwrap();
            assert!(out.plan.is_empty(), "read back as written: {}", out.plan);

            // Gone: both entries deleted; the other owner's untouched.
            let out = job.once(desired(vec![]), false).await.unwrap();
            assert_eq!(out.applied.deletes, 1);
            assert!(entries(&mut client, &format!("{dir}/payment/")).await.is_empty());
            assert!(entries(&mut client, &format!("{dir}/a-payment/")).await.is_empty());
            assert_eq!(
                entries(&mut client, dir).await,
                [
                    (format!("{dir}/a-shop/0badc0df"), theirs_txt.to_owned()),
                    (format!("{dir}/shop/0badc0de"), r#"{"host":"192.0.2.50","targetstrip":1}"#.to_owned()),
                ]
            );
        });
    }
}

/// XDNS-1: the loop. Nothing is written while a cluster announced by its source has not been
/// read; a tap change triggers a sync; a record removed behind our back comes back with the
/// periodic resync; cancelling stops the loop.
#[test]
fn xdns_1_the_loop_waits_for_every_source_syncs_on_change_and_resyncs() {
    use fleetdns_core::kube::{ClusterObjects, ObjectMeta, Service, ServiceSpec};
    use fleetdns_core::tap::ObjectsTap;
    use fleetdns_core::{ClusterId, MemoryRegistry, Registry};
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    let bind = Primary::bind(ZONE, "", "hmac-sha256");
    let mut job = job(provider(bind.addr(), Some(key())), Policy::Sync);
    job.interval = Duration::from_millis(300);
    job.min_event_interval = Duration::from_millis(0);
    let lb = |ip: &str| Service {
        metadata: ObjectMeta {
            name: Some("edge".into()),
            namespace: Some("web".into()),
            annotations: [(
                "external-dns.kubernetes.io/hostname".to_string(),
                format!("edge.{ZONE}"),
            )]
            .into(),
            ..ObjectMeta::default()
        },
        spec: ServiceSpec {
            type_: Some("LoadBalancer".into()),
            external_ips: vec![ip.into()],
            ..ServiceSpec::default()
        },
        ..Service::default()
    };
    let objects = |ip: &str| ClusterObjects {
        services: vec![lb(ip)],
        ..ClusterObjects::default()
    };
    let tap = ObjectsTap::new(fleetdns_publish::desired::is_annotated);
    let (east, west) = (
        ClusterId::new("east").unwrap(),
        ClusterId::new("west").unwrap(),
    );
    tap.expect(&west);
    tap.set(&east, &objects("192.0.2.1"));
    let registry = MemoryRegistry::new(Duration::from_secs(15));
    let metrics = Arc::new(fleetdns_publish::sync::SyncMetrics::new(ZONE));
    let cancel = CancellationToken::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let task = rt.spawn(job.clone().run(
        registry.subscribe(),
        tap.clone(),
        metrics.clone(),
        cancel.clone(),
    ));
    let eventually = |what: &str, cond: &dyn Fn() -> bool| {
        let start = std::time::Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(15), "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // `west` was announced and not read: the loop waits (several resync periods).
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        bind.dig(&fq("edge"), "A").is_empty(),
        "synced before every source was read"
    );
    tap.set(&west, &ClusterObjects::default());
    eventually("created once every source was read", &|| {
        bind.dig(&fq("edge"), "A") == ["192.0.2.1"]
    });
    tap.set(&east, &objects("192.0.2.2"));
    eventually("a change is synced", &|| {
        bind.dig(&fq("edge"), "A") == ["192.0.2.2"]
    });
    // Removed behind our back (as another tool would): the periodic resync restores it.
    rt.block_on(async {
        let plan = job.plan(&desired(vec![])).await.unwrap();
        assert_eq!(plan.deletes.len(), 1);
        job.provider.apply(&plan, &job.settings).await.unwrap();
    });
    eventually("restored by the resync", &|| {
        bind.dig(&fq("edge"), "A") == ["192.0.2.2"]
    });
    assert!(metrics.created.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    cancel.cancel();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await })
        .expect("the loop stops on cancel")
        .unwrap();
}

#[test]
fn xdns_7_a_txt_prefix_places_ownership_records_and_reads_them_back() {
    let bind = Primary::bind(ZONE, "", "hmac-sha256");
    let mut job = job(provider(bind.addr(), Some(key())), Policy::Sync);
    job.settings.txt_names = TxtNames::new("_owner.", "").unwrap();
    let rt = rt();
    rt.block_on(job.once(desired(vec![a("x", &["192.0.2.1"])]), false))
        .unwrap();
    assert_eq!(
        bind.dig(&fq("_owner.a-x"), "TXT"),
        [owner_txt("fleet-1", "x")]
    );
    assert!(bind.dig(&fq("a-x"), "TXT").is_empty());
    let again = rt
        .block_on(job.once(desired(vec![a("x", &["192.0.2.1"])]), false))
        .unwrap();
    assert!(
        again.plan.is_empty(),
        "owned through the prefixed record: {}",
        again.plan
    );
    let gone = rt.block_on(job.once(desired(vec![]), false)).unwrap();
    assert_eq!(gone.applied.deletes, 1);
    assert!(bind.dig(&fq("x"), "A").is_empty());
    assert!(bind.dig(&fq("_owner.a-x"), "TXT").is_empty());
}
