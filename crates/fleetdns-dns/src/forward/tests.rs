use super::*;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::wire::{HEADER_LEN, skip_name};

/// How a fake upstream misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Good,
    /// Sends a forged answer (wrong ID, other address) before the real one.
    ForgeFirst,
    /// Answers over UDP with TC and no records; TCP answers fully.
    Truncate,
    /// Never answers.
    Silent,
}

/// A UDP socket and a TCP listener on one loopback port, as an upstream serves both. The port
/// the kernel picks for UDP may be taken for TCP (by another test's connection): then another.
async fn udp_and_tcp_on_one_port() -> (UdpSocket, tokio::net::TcpListener) {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        match tokio::net::TcpListener::bind(udp.local_addr().unwrap()).await {
            Ok(tcp) => return (udp, tcp),
            Err(e) => assert_eq!(
                e.kind(),
                std::io::ErrorKind::AddrInUse,
                "cannot listen on TCP: {e}"
            ),
        }
    }
    panic!("no loopback port free for both UDP and TCP in 100 tries");
}

/// A loopback upstream for `*.fwd.test A` answering 192.0.2.<n>, TTL 60.
async fn upstream(mode: Mode, n: u8, alive: Arc<AtomicBool>) -> SocketAddr {
    let (udp, tcp) = udp_and_tcp_on_one_port().await;
    let addr = udp.local_addr().unwrap();
    let answer = move |q: &[u8], tc: bool| -> Vec<u8> {
        let end = skip_name(q, HEADER_LEN).unwrap() + 4;
        let mut r = q[..end].to_vec();
        r[2] = 0x85 | if tc { 0x02 } else { 0 };
        r[3] = 0x80;
        r[10] = 0;
        r[11] = 0;
        if !tc {
            r[7] = 1;
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, n]);
        }
        r
    };
    let alive2 = alive.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((len, peer)) = udp.recv_from(&mut buf).await {
            if mode == Mode::Silent || !alive2.load(Ordering::Relaxed) {
                continue;
            }
            let q = &buf[..len];
            if mode == Mode::ForgeFirst {
                let mut forged = answer(q, false);
                forged[0] ^= 0xff;
                let last = forged.len() - 1;
                forged[last] = 66;
                udp.send_to(&forged, peer).await.unwrap();
            }
            udp.send_to(&answer(q, mode == Mode::Truncate), peer)
                .await
                .unwrap();
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            if !alive.load(Ordering::Relaxed) || mode == Mode::Silent {
                continue;
            }
            let len = s.read_u16().await.unwrap() as usize;
            let mut q = vec![0u8; len];
            s.read_exact(&mut q).await.unwrap();
            let r = answer(&q, false);
            s.write_all(&(r.len() as u16).to_be_bytes()).await.unwrap();
            s.write_all(&r).await.unwrap();
        }
    });
    addr
}

fn zone(upstreams: &[SocketAddr], policy: UpstreamPolicy) -> ForwardZoneConfig {
    ForwardZoneConfig {
        zone: "fwd.test".into(),
        upstreams: upstreams.iter().map(ToString::to_string).collect(),
        force_tcp: false,
        prefer_udp: false,
        policy,
        health_check_ms: 50,
        max_fails: 1,
        timeout_ms: 300,
        max_concurrent: 10,
    }
}

const QUESTION: &[u8] = b"\x03WWW\x03fwd\x04test\x00\x00\x01\x00\x01";
const LOWER: &[u8] = b"\x03www\x03fwd\x04test\x00";

fn question(id: u16) -> Question<'static> {
    Question {
        id,
        question: QUESTION,
        lower_name: LOWER,
        qtype: 1,
        qclass: 1,
        edns: false,
        udp_limit: 512,
    }
}

fn last_octet(resp: &[u8]) -> Option<u8> {
    (u16::from_be_bytes([resp[6], resp[7]]) > 0).then(|| resp[resp.len() - 1])
}

#[tokio::test]
async fn forwards_validates_and_caches() {
    let up = upstream(Mode::ForgeFirst, 7, Arc::new(AtomicBool::new(true))).await;
    let f = Arc::new(
        Forwarder::new(
            &[zone(&[up], UpstreamPolicy::Random)],
            CacheLimits::default(),
        )
        .unwrap(),
    );
    assert_eq!(f.find(LOWER), Some((0, 10)));
    assert_eq!(
        f.find(b"\x03www\x04xfwd\x04test\x00"),
        None,
        "label boundaries matter"
    );
    let mut out = Vec::new();
    assert_eq!(
        f.resolve(0, &question(0x4242), Transport::Udp, &mut out)
            .await,
        rcode::NOERROR
    );
    assert_eq!(&out[..2], &[0x42, 0x42], "the client's ID");
    assert_eq!(
        last_octet(&out),
        Some(7),
        "the forged answer (wrong ID) was dropped"
    );
    assert_eq!(
        &out[12..12 + QUESTION.len()],
        QUESTION,
        "the question keeps the client's case"
    );
    // Second time from the cache: the upstream sees no new request.
    let before = f
        .upstreams()
        .next()
        .unwrap()
        .1
        .requests
        .load(Ordering::Relaxed);
    f.resolve(0, &question(1), Transport::Udp, &mut out).await;
    assert_eq!(
        f.upstreams()
            .next()
            .unwrap()
            .1
            .requests
            .load(Ordering::Relaxed),
        before
    );
    assert_eq!(f.cache.stats.hits.load(Ordering::Relaxed), 1);
}

/// CDNS-7: a prefetch refresh waiting on a silent upstream ends when the forwarder is
/// stopped (reload or shutdown), and a stopped forwarder starts no more.
#[tokio::test]
async fn cdns7_prefetch_refreshes_stop_with_the_forwarder() {
    let up = upstream(Mode::Silent, 1, Arc::new(AtomicBool::new(true))).await;
    let mut cfg = zone(&[up], UpstreamPolicy::Random);
    cfg.timeout_ms = 600_000;
    let limits = CacheLimits {
        prefetch: 1,
        min_ttl: 0,
        ..CacheLimits::default()
    };
    let f = Arc::new(Forwarder::new(&[cfg], limits).unwrap());
    // A cached answer with 60 s TTL stored 57 s ago: popular enough and in its last 10%.
    let mut cached = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    cached.extend_from_slice(QUESTION);
    cached.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
    let stored = Instant::now() - Duration::from_secs(57);
    f.cache.put(&question(0).cache_key(), &cached, stored);
    let mut out = Vec::new();
    // Answered from the cache at once (if the cache did not hold it, the silent upstream's
    // ten-minute timeout would keep the test waiting).
    let asked = question(1);
    let resolved = f.resolve(0, &asked, Transport::Udp, &mut out);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), resolved)
            .await
            .expect("answered from the cache"),
        rcode::NOERROR
    );
    assert_eq!(
        f.refreshes_running(),
        1,
        "the refresh waits on the silent upstream"
    );
    tokio::time::timeout(Duration::from_secs(30), f.stop_refreshes())
        .await
        .expect("refreshes stop when asked");
    assert_eq!(f.refreshes_running(), 0);
    // Still answered from the cache, but no new refresh starts.
    f.cache.put(
        &question(0).cache_key(),
        &cached,
        Instant::now() - Duration::from_secs(57),
    );
    assert_eq!(
        f.resolve(0, &question(2), Transport::Udp, &mut out).await,
        rcode::NOERROR
    );
    assert_eq!(f.refreshes_running(), 0);
}

#[tokio::test]
async fn a_truncated_udp_answer_is_retried_over_tcp() {
    let up = upstream(Mode::Truncate, 9, Arc::new(AtomicBool::new(true))).await;
    let f = Arc::new(
        Forwarder::new(
            &[zone(&[up], UpstreamPolicy::Random)],
            CacheLimits::default(),
        )
        .unwrap(),
    );
    let mut out = Vec::new();
    assert_eq!(
        f.resolve(0, &question(5), Transport::Udp, &mut out).await,
        rcode::NOERROR
    );
    assert_eq!(out[2] & 0x02, 0, "not truncated");
    assert_eq!(last_octet(&out), Some(9));
}

#[tokio::test]
async fn a_silent_upstream_times_out_and_the_next_one_answers() {
    let alive = Arc::new(AtomicBool::new(true));
    let silent = upstream(Mode::Silent, 1, alive.clone()).await;
    let good = upstream(Mode::Good, 2, alive).await;
    let f = Arc::new(
        Forwarder::new(
            &[zone(&[silent, good], UpstreamPolicy::Sequential)],
            CacheLimits {
                capacity: 0,
                ..CacheLimits::default()
            },
        )
        .unwrap(),
    );
    let mut out = Vec::new();
    assert_eq!(
        f.resolve(0, &question(5), Transport::Udp, &mut out).await,
        rcode::NOERROR
    );
    assert_eq!(last_octet(&out), Some(2));
    // max_fails = 1: the silent one is down now and skipped without waiting.
    let (_, silent_up) = f.upstreams().next().unwrap();
    assert!(!silent_up.healthy(1));
    assert_eq!(
        f.resolve(0, &question(6), Transport::Udp, &mut out).await,
        rcode::NOERROR
    );
    assert_eq!(silent_up.requests.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn all_upstreams_down_is_servfail_then_stale_then_recovery() {
    let alive = Arc::new(AtomicBool::new(true));
    let up = upstream(Mode::Good, 3, alive.clone()).await;
    let limits = CacheLimits {
        min_ttl: 0,
        serve_stale: Duration::from_secs(3600),
        ..CacheLimits::default()
    };
    let f = Arc::new(Forwarder::new(&[zone(&[up], UpstreamPolicy::Random)], limits).unwrap());
    let mut out = Vec::new();
    // Nothing cached, upstream gone: SERVFAIL (never NXDOMAIN, never a hang).
    alive.store(false, Ordering::Relaxed);
    assert_eq!(
        f.resolve(0, &question(1), Transport::Udp, &mut out).await,
        rcode::SERVFAIL
    );
    // Down now: the next SERVFAIL comes without asking it.
    let requests = f
        .upstreams()
        .next()
        .unwrap()
        .1
        .requests
        .load(Ordering::Relaxed);
    assert_eq!(
        f.resolve(0, &question(2), Transport::Udp, &mut out).await,
        rcode::SERVFAIL
    );
    assert_eq!(
        f.upstreams()
            .next()
            .unwrap()
            .1
            .requests
            .load(Ordering::Relaxed),
        requests
    );
    // The health checker brings it back once it answers.
    alive.store(true, Ordering::Relaxed);
    let cancel = CancellationToken::new();
    let checker = tokio::spawn(f.clone().run_health_checks(cancel.clone()));
    for _ in 0..100 {
        if f.upstreams().next().unwrap().1.healthy(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    checker.await.unwrap();
    assert!(
        f.upstreams().next().unwrap().1.healthy(1),
        "health check did not revive the upstream"
    );
    assert_eq!(
        f.resolve(0, &question(3), Transport::Udp, &mut out).await,
        rcode::NOERROR
    );
    // Stale: an answer cached with a TTL in the past is served only when upstreams fail.
    f.cache.put(
        &crate::cache::CacheKey {
            lower_name: LOWER,
            qtype: 28,
            qclass: 1,
            edns: false,
        },
        &{
            let mut r = out.clone();
            r[12 + QUESTION.len() - 3] = 28; // qtype AAAA in the question
            r
        },
        Instant::now() - Duration::from_secs(120),
    );
    alive.store(false, Ordering::Relaxed);
    let q = Question {
        qtype: 28,
        question: b"\x03WWW\x03fwd\x04test\x00\x00\x1c\x00\x01",
        ..question(4)
    };
    assert_eq!(
        f.resolve(0, &q, Transport::Udp, &mut out).await,
        rcode::NOERROR
    );
    assert_eq!(f.cache.stats.stale.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_cache_hit_echoes_the_askers_case_and_max_fails_zero_never_marks_down() {
    let up = upstream(Mode::Good, 4, Arc::new(AtomicBool::new(true))).await;
    let mut cfg = zone(&[up], UpstreamPolicy::Random);
    cfg.max_fails = 0;
    let f = Arc::new(Forwarder::new(&[cfg], CacheLimits::default()).unwrap());
    assert!(
        f.upstreams().next().unwrap().1.healthy(0),
        "max_fails = 0: never down"
    );
    let mut out = Vec::new();
    assert_eq!(
        f.resolve(0, &question(1), Transport::Udp, &mut out).await,
        rcode::NOERROR
    );
    let other_case = b"\x03wWw\x03FwD\x04tEsT\x00\x00\x01\x00\x01";
    let q = Question {
        question: other_case,
        ..question(2)
    };
    assert_eq!(
        f.resolve(0, &q, Transport::Udp, &mut out).await,
        rcode::NOERROR
    );
    assert_eq!(
        f.cache.stats.hits.load(Ordering::Relaxed),
        1,
        "served from the cache"
    );
    assert_eq!(
        &out[12..12 + other_case.len()],
        other_case,
        "DNS 0x20: the asker's own case"
    );
}

/// On paused time: the first query's upstream timeout can only fire once the test waits for
/// it, so however busy the machine, the second query finds the only slot taken.
#[tokio::test(start_paused = true)]
async fn queries_beyond_max_concurrent_are_refused() {
    let silent = upstream(Mode::Silent, 1, Arc::new(AtomicBool::new(true))).await;
    let mut cfg = zone(&[silent], UpstreamPolicy::Random);
    cfg.max_concurrent = 1;
    cfg.timeout_ms = 1000;
    let f = Arc::new(Forwarder::new(&[cfg], CacheLimits::default()).unwrap());
    let first = {
        let f = f.clone();
        tokio::spawn(async move {
            f.resolve(0, &question(1), Transport::Udp, &mut Vec::new())
                .await
        })
    };
    // Let the first query take the only slot (it waits on the silent upstream). The paused
    // clock moves only when every task waits, to the next timer: this sleep's, long before
    // the first query's timeout.
    while f
        .upstreams()
        .next()
        .unwrap()
        .1
        .requests
        .load(Ordering::Relaxed)
        == 0
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut out = Vec::new();
    assert_eq!(
        f.resolve(0, &question(2), Transport::Udp, &mut out).await,
        rcode::REFUSED
    );
    assert_eq!(&out[..2], &[0, 2]);
    assert_eq!(first.await.unwrap(), rcode::SERVFAIL);
}
