//! The request path's cost per query (parse, zone catalog, responder) for three kinds of query: without EDNS, with EDNS and a
//! cookie option, and with a cookie and NSID (RFC 5001), answered with an NSID configured (as
//! `serve` always has one). Prints the best ns/query of R runs of N calls; on a busy machine
//! count instructions instead, which callgrind makes repeatable:
//!
//! ```sh
//! cargo build --release -p fleetdns-dns --example respond_cost
//! for n in 0 100000; do N=$n R=1 KIND=edns+cookie valgrind --tool=callgrind \
//!   --callgrind-out-file=/dev/null target/release/examples/respond_cost 2>&1 | grep Collected; done
//! ```
//!
//! (the difference divided by 100 000 is instructions per query).

use fleetdns_dns::Transport;
use fleetdns_dns::table::{Selection, SoaParams, TableBuilder};
use fleetdns_dns::wire::encode_name;
use std::time::Instant;

fn main() {
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
    let owner = encode_name("payment.default.svc.clusterset.local").unwrap();
    b.add_ip(
        zone,
        &owner,
        "10.96.10.10".parse().unwrap(),
        5,
        Selection::Fixed,
    );
    let table = b.build(1);
    // The request path as the servers run it: parse once, route through the zone catalog
    // (no forward zones), answer from the table.
    let catalog = fleetdns_dns::catalog::Catalog {
        table: Some(&table),
        forwarder: None::<&fleetdns_dns::forward::Forwarder>,
    };
    let mut q = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(&owner);
    q.extend_from_slice(&[0, 1, 0, 1]);
    let plain = q.clone();
    let mut cookie = q.clone();
    cookie[11] = 1;
    cookie.extend_from_slice(&[
        0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8,
    ]);
    let mut nsid = q.clone();
    nsid[11] = 1;
    nsid.extend_from_slice(&[
        0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 16, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 3, 0, 0,
    ]);
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let reps: u32 = std::env::var("R")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let kind = std::env::var("KIND").unwrap_or_default();
    let mut out = Vec::with_capacity(4096);
    for (what, p) in [
        ("no-edns", &plain),
        ("edns+cookie", &cookie),
        ("edns+cookie+nsid", &nsid),
    ] {
        if !kind.is_empty() && kind != what {
            continue;
        }
        let mut best = f64::MAX;
        for _ in 0..reps {
            let t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(matches!(
                    fleetdns_dns::dispatch::handle(
                        catalog,
                        || false,
                        Some(b"dns-1"),
                        p,
                        Transport::Udp,
                        &mut out,
                    ),
                    fleetdns_dns::dispatch::Handled::Answered { .. }
                ));
            }
            best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
        }
        println!(
            "{what:>18}: {best:.1} ns/query, response {} bytes",
            out.len()
        );
    }
}
