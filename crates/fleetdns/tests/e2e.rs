//! End to end: the real `fleetdns` binary on the demo fleet, asked by the real `dig`.
//! Needs `dig` (Debian `dnsutils`); `.ci/run` installs it.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "soon"; never a speed assertion.
const PATIENCE: Duration = Duration::from_secs(15);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Server {
    /// Copies the demo into a temp folder (so tests can edit it) and serves it.
    fn demo() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo_root().join("examples/demo"), dir.path());
        Self::start(dir)
    }

    fn start(dir: tempfile::TempDir) -> Self {
        Self::start_on(dir, free_port())
    }

    fn start_on(dir: tempfile::TempDir, port: u16) -> Self {
        let log = dir.path().join("fleetdns.log");
        let child = Command::new(env!("CARGO_BIN_EXE_fleetdns"))
            .arg("serve")
            .arg("--config")
            .arg(dir.path().join("fleetdns.toml"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("FLEETDNS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start fleetdns");
        let server = Self {
            child,
            port,
            dir,
            log,
        };
        server.wait_until(|| server.status("dns-version.clusterset.local", "TXT") == "NOERROR");
        server
    }

    fn clusters(&self) -> PathBuf {
        self.dir.path().join("clusters")
    }

    fn dig(&self, args: &[&str]) -> String {
        let out = Command::new("dig")
            .arg("@127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args(["+time=2", "+tries=1"])
            .args(args)
            .output()
            .expect("run dig (install dnsutils)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `dig +short`, sorted.
    fn short(&self, name: &str, qtype: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec![name, qtype, "+short"];
        args.extend_from_slice(extra);
        let mut lines: Vec<String> = self
            .dig(&args)
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.starts_with(';'))
            .collect();
        lines.sort();
        lines
    }

    fn status(&self, name: &str, qtype: &str) -> String {
        let out = self.dig(&[name, qtype]);
        out.split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or("NO ANSWER")
            .to_owned()
    }

    fn wait_until(&self, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < PATIENCE,
                "condition not met in time; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn demo_answers_over_udp_and_tcp() {
    let s = Server::demo();
    for transport in [&[][..], &["+tcp"][..]] {
        // MCS-12 + SPEC §3 local-first: cluster-a is local and ready.
        assert_eq!(
            s.short("payment.default.svc.clusterset.local", "A", transport),
            ["10.96.10.10"]
        );
        // MCS-14: ready endpoints of every cluster; reviews-2 is not ready (K8S-16).
        assert_eq!(
            s.short("reviews.default.svc.clusterset.local", "A", transport),
            ["10.244.1.20", "10.244.1.21", "10.246.1.20"]
        );
        // MCS-15 with hostname, and K8S-11 dashed IP for the pod without one.
        assert_eq!(
            s.short(
                "reviews-1.cluster-a.reviews.default.svc.clusterset.local",
                "A",
                transport
            ),
            ["10.244.1.21"]
        );
        assert_eq!(
            s.short(
                "10-246-1-20.cluster-c.reviews.default.svc.clusterset.local",
                "A",
                transport
            ),
            ["10.246.1.20"]
        );
        // Dual-stack both families.
        assert_eq!(
            s.short("frontend.web.svc.clusterset.local", "AAAA", transport),
            ["fd00:97::20"]
        );
        assert_eq!(
            s.short("frontend.web.svc.clusterset.local", "A", transport),
            ["10.97.20.20"]
        );
        // MCS-13: named ports only.
        assert_eq!(
            s.short("frontend.web.svc.clusterset.local", "SRV", transport),
            ["0 100 443 frontend.web.svc.clusterset.local."]
        );
        // §2.2: per-cluster zone of cluster-b.
        assert_eq!(
            s.short("payment.default.svc.cluster-b.local", "A", transport),
            ["10.97.10.10"]
        );
        // MCS-22: cluster-c's headless inventory lost the type conflict in clusterset.local but
        // is still what cluster-c.local serves.
        assert_eq!(
            s.short("inventory.shop.svc.clusterset.local", "A", transport),
            ["10.96.30.30"]
        );
        assert_eq!(
            s.short("inventory.shop.svc.cluster-c.local", "A", transport),
            ["10.246.3.30"]
        );
    }
    // MCS-5: a Service without ServiceExport; MCS-4: ExternalName is never exported.
    assert_eq!(
        s.status("internal.web.svc.clusterset.local", "A"),
        "NXDOMAIN"
    );
    assert_eq!(
        s.status("legacy-db.shop.svc.clusterset.local", "A"),
        "NXDOMAIN"
    );
    // K8S-21: the other family of a known name is NODATA with the SOA.
    let out = s.dig(&["payment.default.svc.clusterset.local", "AAAA"]);
    assert!(
        out.contains("status: NOERROR") && out.contains("ANSWER: 0"),
        "{out}"
    );
    assert!(
        out.contains("SOA\tns.dns.clusterset.local. hostmaster.clusterset.local."),
        "{out}"
    );
    assert!(out.contains(" aa"), "authoritative answers set AA: {out}");
    // Outside every zone: REFUSED (no forwarding yet).
    assert_eq!(s.status("example.com", "A"), "REFUSED");
    // MCS-18: the cluster form does not exist.
    assert_eq!(
        s.status("cluster-a.payment.default.svc.clusterset.local", "A"),
        "NXDOMAIN"
    );
}

#[test]
fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let mut endpoints = String::new();
    for i in 0..120 {
        let _ = writeln!(
            endpoints,
            "- addresses: [\"10.250.{}.{}\"]",
            i / 200,
            i % 200 + 1
        );
    }
    std::fs::write(
        dir.path().join("clusters/cluster-b/big.yaml"),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: big, namespace: default}}\nspec: {{clusterIP: None}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: big}}\naddressType: IPv4\nendpoints:\n{endpoints}---\n\
             apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {{name: big, namespace: default}}\n"
        ),
    )
    .unwrap();
    let s = Server::start(dir);
    let name = "big.default.svc.clusterset.local";
    // Without EDNS: 512 bytes at most, TC set (+ignore keeps dig from retrying over TCP).
    let out = s.dig(&[name, "A", "+noedns", "+ignore"]);
    assert!(out.contains(" tc"), "expected TC without EDNS: {out}");
    let msg_size: usize = out
        .split("MSG SIZE  rcvd: ")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(msg_size <= 512, "{msg_size}");
    // With EDNS the client's size is honoured: 120 records do not fit 1232 bytes either.
    let out = s.dig(&[name, "A", "+bufsize=1232", "+ignore"]);
    assert!(out.contains(" tc"), "{out}");
    // TCP carries everything; and dig's own fallback from a truncated UDP answer gets it all.
    assert_eq!(s.short(name, "A", &["+tcp"]).len(), 120);
    assert_eq!(s.short(name, "A", &["+noedns"]).len(), 120);
}

#[test]
fn manifest_edits_show_without_restart_and_bad_files_keep_the_last_good_state() {
    let s = Server::demo();
    let payment_b = s.clusters().join("cluster-b/payment.yaml");
    let name = "payment.default.svc.cluster-b.local";
    assert_eq!(s.short(name, "A", &[]), ["10.97.10.10"]);

    // An edit.
    let text = std::fs::read_to_string(&payment_b).unwrap();
    std::fs::write(&payment_b, text.replace("10.97.10.10", "10.97.10.77")).unwrap();
    s.wait_until(|| s.short(name, "A", &[]) == ["10.97.10.77"]);

    // A file that does not parse: reported with file and line; the last good state stays.
    std::fs::write(
        s.clusters().join("cluster-b/broken.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: [oops\n",
    )
    .unwrap();
    s.wait_until(|| s.log_text().contains("broken.yaml:"));
    assert_eq!(s.short(name, "A", &[]), ["10.97.10.77"]);
    assert_eq!(
        s.short("frontend.web.svc.clusterset.local", "A", &[]),
        ["10.97.20.20"]
    );
    std::fs::remove_file(s.clusters().join("cluster-b/broken.yaml")).unwrap();

    // A new file.
    std::fs::write(
        s.clusters().join("cluster-c/cart.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec: {clusterIP: 10.98.1.1}\n---\n\
         apiVersion: multicluster.x-k8s.io/v1beta1\nkind: ServiceExport\nmetadata: {name: cart, namespace: shop}\n",
    )
    .unwrap();
    s.wait_until(|| s.short("cart.shop.svc.clusterset.local", "A", &[]) == ["10.98.1.1"]);

    // A removed file.
    std::fs::remove_file(s.clusters().join("cluster-b/frontend.yaml")).unwrap();
    s.wait_until(|| s.status("frontend.web.svc.clusterset.local", "A") == "NXDOMAIN");

    // A removed cluster folder withdraws the cluster and its zone.
    std::fs::remove_dir_all(s.clusters().join("cluster-c")).unwrap();
    s.wait_until(|| s.status("cart.shop.svc.cluster-c.local", "A") == "REFUSED");
    assert_eq!(
        s.short("reviews.default.svc.clusterset.local", "A", &[]),
        ["10.244.1.20", "10.244.1.21"]
    );
}

#[test]
fn malformed_packets_get_formerr_or_silence_and_the_server_keeps_answering() {
    let s = Server::demo();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(40)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut packets: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01], // truncated header
        vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0], // qdcount 1, no question
        vec![
            0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
        ], // pointer loop
        vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f, b'a'], // label past the end
    ];
    for _ in 0..300 {
        let len = (next() % 300) as usize;
        packets.push((0..len).map(|_| next() as u8).collect());
    }
    for p in &packets {
        // A socket per packet: a reply slower than the read timeout (a busy machine) lands on
        // the old socket instead of being read as the reply to the next packet.
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(40)))
            .unwrap();
        sock.send_to(p, s.addr()).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            // Whatever comes back is a response header with the packet's ID.
            assert!(n >= 12, "short response to {p:?}");
            assert_eq!(&buf[..2], &p[..2], "ID echoed");
            assert!(buf[2] & 0x80 != 0, "QR set");
        }
    }
    // The FORMERR cases answer FORMERR.
    for p in &packets[3..6] {
        sock.send_to(p, s.addr()).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (n, _) = sock.recv_from(&mut buf).expect("a FORMERR answer");
        assert!(n >= 12);
        assert_eq!(buf[3] & 0x0f, 1, "FORMERR for {p:?}");
    }
    // And it still answers, over both transports.
    assert_eq!(
        s.short("payment.default.svc.clusterset.local", "A", &[]),
        ["10.96.10.10"]
    );
    assert_eq!(
        s.short("payment.default.svc.clusterset.local", "A", &["+tcp"]),
        ["10.96.10.10"]
    );
    // A TCP client sending garbage, then a half message, does not disturb anyone.
    use std::io::Write;
    let mut tcp = std::net::TcpStream::connect(s.addr()).unwrap();
    let _ = tcp.write_all(&[0x00, 0x05, 1, 2, 3, 4, 5, 0x40, 0x00, 1]);
    assert_eq!(
        s.short(
            "reviews-0.cluster-a.reviews.default.svc.clusterset.local",
            "A",
            &["+tcp"]
        ),
        ["10.244.1.20"]
    );
}

fn fleetdns(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetdns"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_config_prints_what_it_would_serve_and_names_what_is_wrong() {
    let demo = repo_root().join("examples/demo/fleetdns.toml");
    let (code, out) = fleetdns(&["check-config", demo.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("zones: clusterset.local. cluster-a.local. cluster-b.local. cluster-c.local."),
        "{out}"
    );
    assert!(
        out.contains("service default/payment ClusterSetIP clusters [cluster-a, cluster-b]"),
        "{out}"
    );
    assert!(out.contains("conflict TypeConflict"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let config = dir.path().join("fleetdns.toml");
    std::fs::write(
        dir.path().join("clusters/cluster-a/bad.yaml"),
        "apiVersion: v1\nkind: Service\nspec:\n  ports: [\n",
    )
    .unwrap();
    let (code, out) = fleetdns(&["check-config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad.yaml:"), "names the file and line: {out}");

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[dns]", "[dns]\nlissen = \"x\"")).unwrap();
    let (code, out) = fleetdns(&["check-config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("lissen"), "names the unknown key: {out}");
}

/// One HTTP/1.1 request over a plain socket: (status, body).
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the ops listener");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request).unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, body.to_owned())
}

#[test]
fn ops_listener_reports_health_readiness_and_metrics_that_count_queries() {
    use fleetdns_dns::metrics::{Sample, parse_exposition, sample_value};
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let ops_port = free_port();
    let config = dir.path().join("fleetdns.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\n"),
    )
    .unwrap();
    let s = Server::start(dir);
    let ops = SocketAddr::from(([127, 0, 0, 1], ops_port));
    let get = |path: &str| {
        http(
            ops,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
    };
    s.wait_until(|| get("/ready").0 == 200);
    assert_eq!(get("/health"), (200, "ok\n".to_owned()));

    let scrape = || -> Vec<Sample> {
        let (status, body) = get("/metrics");
        assert_eq!(status, 200, "{body}");
        parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
    };
    let value = |samples: &[Sample], name: &str, labels: &[(&str, &str)]| {
        sample_value(samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}"))
    };
    let req = "fleetdns_dns_requests_total";
    let resp = "fleetdns_dns_responses_total";
    let count = "fleetdns_dns_request_duration_seconds_count";
    let total = |samples: &[Sample]| -> f64 {
        samples
            .iter()
            .filter(|x| x.name == resp)
            .map(|x| x.value)
            .sum()
    };
    let before = scrape();

    // The answer is sent before it is counted: dig may return first. Wait for the counts.
    assert_eq!(
        s.short("payment.default.svc.clusterset.local", "A", &[]),
        ["10.96.10.10"]
    );
    assert_eq!(
        s.status("payment.default.svc.clusterset.local", "AAAA"),
        "NOERROR"
    );
    assert_eq!(
        s.status("nope.default.svc.clusterset.local", "A"),
        "NXDOMAIN"
    );
    assert_eq!(s.status("example.com", "A"), "REFUSED");
    assert_eq!(
        s.short("payment.default.svc.clusterset.local", "A", &["+tcp"]),
        ["10.96.10.10"]
    );
    let mut after = scrape();
    s.wait_until(|| {
        after = scrape();
        total(&after) >= total(&before) + 5.0
    });
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(delta(req, &[("transport", "udp"), ("qtype", "A")]), 3.0);
    assert_eq!(delta(req, &[("transport", "udp"), ("qtype", "AAAA")]), 1.0);
    assert_eq!(delta(req, &[("transport", "tcp"), ("qtype", "A")]), 1.0);
    assert_eq!(
        delta(resp, &[("outcome", "answer"), ("rcode", "NOERROR")]),
        2.0
    );
    assert_eq!(
        delta(resp, &[("outcome", "nodata"), ("rcode", "NOERROR")]),
        1.0
    );
    assert_eq!(
        delta(resp, &[("outcome", "nxdomain"), ("rcode", "NXDOMAIN")]),
        1.0
    );
    assert_eq!(
        delta(resp, &[("outcome", "refused"), ("rcode", "REFUSED")]),
        1.0
    );
    assert_eq!(total(&after) - total(&before), 5.0);
    assert_eq!(delta(count, &[]), 5.0);
    // Requests by zone: four went to clusterset.local (the REFUSED one is in no zone).
    assert_eq!(
        delta(
            "fleetdns_dns_zone_requests_total",
            &[("zone", "clusterset.local.")]
        ),
        4.0
    );
    assert!(
        value(
            &after,
            resp,
            &[("outcome", "nxdomain"), ("rcode", "NXDOMAIN")]
        ) >= 1.0
    );
    assert!(
        value(&after, req, &[("transport", "tcp"), ("qtype", "A")]) >= 1.0,
        "a TCP query was counted"
    );

    // What the demo serves: three live clusters, a table with names in it.
    let clusters = "fleetdns_registry_clusters";
    assert_eq!(value(&after, clusters, &[("state", "alive")]), 3.0);
    assert!(value(&after, "fleetdns_registry_exports", &[]) >= 3.0);
    assert!(value(&after, "fleetdns_table_names", &[]) > 0.0);
    assert!(value(&after, "fleetdns_table_records", &[]) > 0.0);
    assert!(value(&after, "fleetdns_table_installs_total", &[]) >= 1.0);
    assert!(value(&after, "fleetdns_registry_snapshot_age_seconds", &[]) >= 0.0);
    assert!(
        after
            .iter()
            .any(|x| x.name == "fleetdns_build_info" && x.value == 1.0)
    );

    // Unknown paths, garbage and a client that says nothing leave the listener serving.
    assert_eq!(get("/nope").0, 404);
    assert_eq!(http(ops, b"\x16\x03\x01garbage\r\n\r\n").0, 400);
    assert_eq!(http(ops, b"GET /health\r\n\r\n").0, 400);
    drop(std::net::TcpStream::connect(ops).unwrap());
    assert_eq!(get("/health"), (200, "ok\n".to_owned()));
    assert_eq!(get("/ready").0, 200);
}

/// A real Knot DNS on loopback serving `cluster3.local`, stopped when dropped.
struct Knot {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Knot {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("cluster3.local.zone"),
            "$ORIGIN cluster3.local.\n$TTL 1\n@ SOA ns hostmaster 1 7200 1800 86400 1\n@ NS ns\nns A 127.0.0.1\n\
             web.default.svc A 10.3.0.1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("knot.conf"),
            format!(
                "server:\n    rundir: {d}\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
                 database:\n    storage: {d}\nlog:\n  - target: stderr\n    any: warning\n\
                 zone:\n  - domain: cluster3.local\n    file: {d}/cluster3.local.zone\n"
            ),
        )
        .unwrap();
        let child = Command::new("knotd")
            .arg("-c")
            .arg(dir.path().join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start knotd (install knot)");
        let knot = Self {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while !Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "+time=1",
                "+tries=1",
                "+short",
                "web.default.svc.cluster3.local",
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("10.3.0.1"))
        {
            assert!(start.elapsed() < PATIENCE, "knotd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        knot
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SPEC §2.5: fleetdns is never an open resolver. A client outside `[dns] allow` gets REFUSED
/// for a forward zone (and the upstream is never asked), while authoritative names still
/// answer it.
#[test]
fn a_client_outside_the_allow_list_is_refused_forwarding_but_answered_authoritatively() {
    let knot = Knot::start();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let config = dir.path().join("fleetdns.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen("[dns]", "[dns]\nallow = [\"10.0.0.0/8\"]", 1);
    std::fs::write(
        &config,
        format!(
            "{text}\n[[forward]]\nzone = \"cluster3.local\"\nupstreams = [\"127.0.0.1:{}\"]\ntimeout_ms = 500\n",
            knot.port
        ),
    )
    .unwrap();
    let s = Server::start(dir);
    assert_eq!(s.status("web.default.svc.cluster3.local", "A"), "REFUSED");
    assert_eq!(
        s.status("web.default.svc.cluster3.local", "A"),
        "REFUSED",
        "and again: nothing was cached for it either"
    );
    assert_eq!(
        s.short("payment.default.svc.clusterset.local", "A", &[]),
        ["10.96.10.10"]
    );
}

#[test]
fn forward_zone_to_a_real_knot_with_cache_and_stale_answers() {
    let mut knot = Knot::start();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let config = dir.path().join("fleetdns.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}\n[cache]\nmin_ttl = 0\nserve_stale_ms = 600000\n\n[[forward]]\nzone = \"cluster3.local\"\nupstreams = [\"127.0.0.1:{}\"]\ntimeout_ms = 500\nmax_fails = 1\n",
            knot.port
        ),
    )
    .unwrap();
    let s = Server::start(dir);
    // Forwarded, over both transports; authoritative zones still answer.
    assert_eq!(
        s.short("web.default.svc.cluster3.local", "A", &[]),
        ["10.3.0.1"]
    );
    assert_eq!(
        s.short("WEB.default.svc.cluster3.local", "A", &["+tcp"]),
        ["10.3.0.1"]
    );
    assert_eq!(s.status("nope.cluster3.local", "A"), "NXDOMAIN");
    assert_eq!(
        s.short("payment.default.svc.clusterset.local", "A", &[]),
        ["10.96.10.10"]
    );
    assert_eq!(
        s.status("example.org", "A"),
        "REFUSED",
        "no forward zone for it"
    );
    // Upstream gone: the cached answer (TTL 1 s, expired) is served stale; an unknown name is
    // SERVFAIL, not NXDOMAIN and not a hang.
    let _ = knot.child.kill();
    let _ = knot.child.wait();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        s.short("web.default.svc.cluster3.local", "A", &[]),
        ["10.3.0.1"]
    );
    assert_eq!(s.status("other.cluster3.local", "A"), "SERVFAIL");
}

/// Sends `payment.default.svc.clusterset.local A` over UDP until `stop`; returns (sent, failed).
/// A failure is a timeout or anything but NOERROR with an answer.
fn query_loop(addr: SocketAddr, stop: &std::sync::atomic::AtomicBool) -> (u64, u64) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut q = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["payment", "default", "svc", "clusterset", "local"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut buf = [0u8; 512];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        sent += 1;
        q[..2].copy_from_slice(&(sent as u16).to_be_bytes());
        sock.send_to(&q, addr).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if n >= 12 && buf[..2] == q[..2] && buf[3] & 0x0f == 0 && buf[7] > 0 => {}
            _ => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (sent, failed)
}

#[test]
fn config_reload_on_change_and_sighup_drops_no_query_and_keeps_a_good_config() {
    let s = Server::demo();
    let config = s.dir.path().join("fleetdns.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let name = "payment.default.svc.clusterset.local";
    assert_eq!(s.short(name, "A", &[]), ["10.96.10.10"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (addr, stop) = (s.addr(), stop.clone());
        std::thread::spawn(move || query_loop(addr, &stop))
    };
    let write = |text: &str| {
        let tmp = s.dir.path().join("fleetdns.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &config).unwrap();
    };

    // A valid change: policy "all" answers both clusters.
    write(&original.replace("policy = \"local-first\"", "policy = \"all\""));
    s.wait_until(|| s.short(name, "A", &[]) == ["10.96.10.10", "10.97.10.10"]);

    // An invalid one: logged with the key at fault; the running config stays.
    write(&original.replace("policy = \"local-first\"", "polcy = \"all\""));
    s.wait_until(|| s.log_text().contains("config reload failed"));
    assert!(s.log_text().contains("polcy"), "{}", s.log_text());
    assert_eq!(s.short(name, "A", &[]), ["10.96.10.10", "10.97.10.10"]);

    // Fixed again, and SIGHUP re-reads it too.
    write(&original);
    s.wait_until(|| s.short(name, "A", &[]) == ["10.96.10.10"]);
    let status = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    s.wait_until(|| {
        s.log_text().contains("trigger=\"SIGHUP\"") || s.log_text().contains("trigger=SIGHUP")
    });

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = load.join().unwrap();
    assert!(sent > 20, "the load loop ran ({sent} queries)");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} queries failed during reloads"
    );
    assert_eq!(s.short(name, "A", &["+tcp"]), ["10.96.10.10"]);
}

#[test]
fn cdns13_a_forward_zone_pointing_back_at_this_server_is_detected_not_a_storm() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let port = free_port();
    let config = dir.path().join("fleetdns.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[[forward]]\nzone = \"loop.test\"\nupstreams = [\"127.0.0.1:{port}\"]\ntimeout_ms = 500\n"),
    )
    .unwrap();
    let s = Server::start_on(dir, port);
    s.wait_until(|| s.log_text().contains("forward loop detected"));
    assert_eq!(s.status("www.loop.test", "A"), "SERVFAIL");
    assert_eq!(
        s.short("payment.default.svc.clusterset.local", "A", &[]),
        ["10.96.10.10"]
    );
}

#[test]
fn stub_domains_patch_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let config = dir.path().join("fleetdns.toml");
    let corefile = dir.path().join("Corefile");
    let original = ".:53 {\n    errors\n    forward . /etc/resolv.conf\n    cache 30\n}\n";
    std::fs::write(&corefile, original).unwrap();
    let args = [
        "stub-domains",
        "--server",
        "10.96.0.53",
        "--config",
        config.to_str().unwrap(),
        "--patch",
        corefile.to_str().unwrap(),
    ];

    let (code, out) = fleetdns(&args);
    assert_eq!(code, 0, "{out}");
    let once = std::fs::read_to_string(&corefile).unwrap();
    let (code, out) = fleetdns(&args);
    assert_eq!(code, 0, "{out}");
    let twice = std::fs::read_to_string(&corefile).unwrap();

    assert_eq!(once, twice, "a second run changes nothing");
    assert!(once.starts_with(original), "the existing Corefile is kept");
    assert!(once.contains("cluster-b.local:53 {"), "{once}");
    assert!(once.contains("    forward . 10.96.0.53:53\n"), "{once}");
    assert_eq!(once.matches("# fleetdns:begin").count(), 1, "{once}");
}

/// A loopback UDP upstream that answers every A query with 192.0.2.99 after `delay`.
fn slow_upstream(delay: Duration) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let q = buf[..n].to_vec();
            let sock = sock.try_clone().unwrap();
            std::thread::spawn(move || {
                // Header + question as asked, QR set, one answer.
                let mut end = 12;
                while end < q.len() && q[end] != 0 {
                    end += 1 + q[end] as usize;
                }
                end += 5;
                if end > q.len() {
                    return;
                }
                std::thread::sleep(delay);
                let mut r = q[..end].to_vec();
                r[2] |= 0x80;
                r[7] = 1;
                r[11] = 0;
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 99]);
                let _ = sock.send_to(&r, peer);
            });
        }
    });
    addr
}

#[test]
fn sigterm_drains_an_in_flight_tcp_query() {
    use std::io::{Read, Write};
    let upstream = slow_upstream(Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let config = dir.path().join("fleetdns.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[[forward]]\nzone = \"slow.test\"\nupstreams = [\"{upstream}\"]\ntimeout_ms = 4000\nprefer_udp = true\n"),
    )
    .unwrap();
    let mut s = Server::start(dir);
    let mut tcp = std::net::TcpStream::connect(s.addr()).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut q = vec![0x51, 0x52, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x03www\x04slow\x04test\x00\x00\x01\x00\x01");
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    tcp.write_all(&framed).unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the query is now waiting on the upstream
    let status = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len)
        .expect("the in-flight answer arrives after SIGTERM");
    let mut resp = vec![0u8; u16::from_be_bytes(len) as usize];
    tcp.read_exact(&mut resp).unwrap();
    assert_eq!(&resp[..2], &[0x51, 0x52]);
    assert_eq!(resp[3] & 0x0f, 0, "NOERROR from the upstream");
    assert_eq!(&resp[resp.len() - 4..], &[192, 0, 2, 99]);
    let exit = s.child.wait().unwrap();
    assert!(exit.success(), "clean exit after draining: {exit:?}");
    assert!(s.log_text().contains("shutting down"));
}

/// RFC 7766 6.2.1.1: queries pipelined on one TCP connection are answered as they are ready.
/// A forwarded query whose upstream takes a second is sent first; the authoritative queries
/// behind it are answered before it, and its answer still arrives on the same connection.
#[test]
fn tcp_pipelined_queries_are_answered_as_they_are_ready() {
    use std::io::{Read, Write};
    let upstream = slow_upstream(Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let config = dir.path().join("fleetdns.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[[forward]]\nzone = \"slow.test\"\nupstreams = [\"{upstream}\"]\ntimeout_ms = 4000\nprefer_udp = true\n"),
    )
    .unwrap();
    let s = Server::start(dir);
    let mut tcp = std::net::TcpStream::connect(s.addr()).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let query = |id: u16, name: &[u8]| {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(name);
        q.extend_from_slice(&[0, 16, 0, 1]); // TXT IN
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        framed
    };
    // One write: the slow forwarded query first, then two authoritative ones.
    let mut burst = query(0x0f0f, b"\x03www\x04slow\x04test\x00");
    burst.extend(query(0x0a01, b"\x0bdns-version\x0aclusterset\x05local\x00"));
    burst.extend(query(0x0a02, b"\x0bdns-version\x0aclusterset\x05local\x00"));
    tcp.write_all(&burst).unwrap();
    let mut read_answer = || {
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).expect("an answer");
        let mut resp = vec![0u8; u16::from_be_bytes(len) as usize];
        tcp.read_exact(&mut resp).unwrap();
        resp
    };
    let ids: Vec<u16> = (0..3)
        .map(|_| {
            let r = read_answer();
            u16::from_be_bytes([r[0], r[1]])
        })
        .collect();
    assert_eq!(
        ids,
        vec![0x0a01, 0x0a02, 0x0f0f],
        "authoritative answers first, in order; the forwarded one when its upstream answers"
    );
}

#[test]
fn json_logs_and_the_query_log() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let config = dir.path().join("fleetdns.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[dns]", "[dns]\nquery_log = true")).unwrap();
    let port = free_port();
    let log = dir.path().join("json.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetdns"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let query_logged = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| {
                v["fields"]["message"] == "query"
                    && v["fields"]["name"] == "payment.default.svc.clusterset.local."
            })
    };
    let start = Instant::now();
    while !query_logged() {
        assert!(
            start.elapsed() < PATIENCE,
            "no JSON query log line:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        let _ = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "+time=1",
                "+tries=1",
                "+short",
                "payment.default.svc.clusterset.local",
            ])
            .output();
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    // Every line is JSON.
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}

#[test]
fn reuse_port_serves_from_one_socket_per_worker() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let config = dir.path().join("fleetdns.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[dns]", "[dns]\nreuse_port = true\nudp_workers = 4"),
    )
    .unwrap();
    let s = Server::start(dir);
    // Each dig comes from a new source port, so the kernel spreads them over the sockets:
    // every one of them must answer.
    for _ in 0..20 {
        assert_eq!(
            s.short("payment.default.svc.clusterset.local", "A", &[]),
            ["10.96.10.10"]
        );
    }
    let sockets = std::fs::read_dir(format!("/proc/{}/fd", s.child.id()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count();
    assert!(
        sockets >= 5,
        "4 UDP sockets + the TCP listener, found {sockets}"
    );
}

#[test]
fn a_reload_that_swaps_sources_keeps_a_cluster_whose_manifest_is_broken() {
    let s = Server::demo();
    let name = "payment.default.svc.cluster-b.local";
    std::fs::write(s.clusters().join("cluster-b/broken.yaml"), "kind: [\n").unwrap();
    s.wait_until(|| s.log_text().contains("broken.yaml:"));
    let config = s.dir.path().join("fleetdns.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "path = \"clusters\"",
            "path = \"clusters\"\npoll_interval_ms = 200",
        ),
    )
    .unwrap();
    s.wait_until(|| s.log_text().contains("config reloaded"));
    assert!(!s.log_text().contains("withdrawn"), "{}", s.log_text());
    assert_eq!(
        s.short(name, "A", &[]),
        ["10.97.10.10"],
        "the last good state is still served"
    );
}

/// A runtime for the fake API servers these tests stand up (the binary under test talks to
/// them over loopback).
fn fake_api_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Direct watch of two clusters: one `fleetdns serve` with two kubernetes sources (fake API servers,
/// one serving ServiceExports as v1alpha1 and one as v1beta1, the first naming itself by its
/// ClusterProperty) answers `clusterset.local` for both, writes ServiceExport conditions and
/// ServiceImports into both, and follows a ServiceExport deleted in one of them.
#[test]
fn two_kubernetes_sources_become_clusterset_answers_with_status_and_imports() {
    use fleetdns_k8s_fake::FakeApiServer;
    use serde_json::json;

    let rt = fake_api_runtime();
    let (a, b) = rt.block_on(async {
        (
            FakeApiServer::start().await.unwrap(),
            FakeApiServer::start().await.unwrap(),
        )
    });
    a.serve_group("multicluster.x-k8s.io", &["v1alpha1"]);
    a.serve_group("about.k8s.io", &["v1alpha1"]);
    b.serve_group("multicluster.x-k8s.io", &["v1beta1"]);
    a.put(json!({"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
                 "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "cluster-a"}}));
    for (server, version, svc, ip, created) in [
        (
            &a,
            "v1alpha1",
            "payment",
            "10.96.1.1",
            "2026-01-01T00:00:00Z",
        ),
        (
            &b,
            "v1beta1",
            "payment",
            "10.97.1.1",
            "2026-02-01T00:00:00Z",
        ),
        (
            &b,
            "v1beta1",
            "reviews",
            "10.97.2.2",
            "2026-02-01T00:00:00Z",
        ),
    ] {
        server
            .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}));
        server.put(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": svc, "namespace": "default"},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}}));
        server.put(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{svc}-x1y2z"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": true}}]}),
        );
        server.put(json!({"apiVersion": format!("multicluster.x-k8s.io/{version}"), "kind": "ServiceExport",
            "metadata": {"name": svc, "namespace": "default", "creationTimestamp": created}}));
    }
    let dir = tempfile::tempdir().unwrap();
    a.write_kubeconfig(&dir.path().join("a.kubeconfig"), "ctx-a")
        .unwrap();
    b.write_kubeconfig(&dir.path().join("b.kubeconfig"), "ctx-b")
        .unwrap();
    std::fs::write(
        dir.path().join("fleetdns.toml"),
        r#"
cluster_id = "cluster-a"
[[sources]]
kind = "kubernetes"
kubeconfig = "a.kubeconfig"
context = "ctx-a"
[[sources]]
kind = "kubernetes"
cluster_id = "cluster-b"
kubeconfig = "b.kubeconfig"
"#,
    )
    .unwrap();
    let server = Server::start(dir);
    // local-first: this server is in cluster-a, which exports payment with a ready endpoint.
    server.wait_until(|| {
        server.short("payment.default.svc.clusterset.local", "A", &[]) == ["10.96.1.1"]
    });
    assert_eq!(
        server.short("reviews.default.svc.clusterset.local", "A", &[]),
        ["10.97.2.2"]
    );
    assert_eq!(
        server.short("payment.default.svc.cluster-b.local", "A", &[]),
        ["10.97.1.1"]
    );
    let condition = |obj: &serde_json::Value, ty: &str| -> Option<String> {
        let c = obj
            .pointer("/status/conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == ty)?;
        Some(format!(
            "{}/{}",
            c["status"].as_str()?,
            c["reason"].as_str()?
        ))
    };
    server.wait_until(|| {
        [(&a, "payment"), (&b, "payment"), (&b, "reviews")]
            .iter()
            .all(|(s, name)| {
                s.get("ServiceExport", Some("default"), name)
                    .and_then(|o| condition(&o, "Ready"))
                    .as_deref()
                    == Some("True/Exported")
            })
    });
    server.wait_until(|| {
        [&a, &b].iter().all(|s| {
            s.get("ServiceImport", Some("default"), "payment")
                .and_then(|o| o.pointer("/status/clusters").cloned())
                == Some(json!([{"cluster": "cluster-a"}, {"cluster": "cluster-b"}]))
                && s.get("ServiceImport", Some("default"), "reviews").is_some()
        })
    });
    // cluster-b stops exporting reviews: it leaves the answers and the ServiceImports.
    assert!(b.delete(
        "multicluster.x-k8s.io/v1beta1",
        "ServiceExport",
        Some("default"),
        "reviews"
    ));
    server.wait_until(|| server.status("reviews.default.svc.clusterset.local", "A") == "NXDOMAIN");
    server.wait_until(|| a.get("ServiceImport", Some("default"), "reviews").is_none());
    drop(server);
    drop((a, b));
    drop(rt);
}

/// MCS-6 / LH-3: a kubernetes source with no `cluster_id` and no ClusterProperty, or with a
/// ClusterProperty that is not a DNS label, refuses to start and says why.
#[test]
fn a_kubernetes_source_without_a_cluster_id_refuses_to_start() {
    use fleetdns_k8s_fake::FakeApiServer;
    let rt = fake_api_runtime();
    let api = rt.block_on(FakeApiServer::start()).unwrap();
    api.serve_group("about.k8s.io", &["v1alpha1"]);
    let dir = tempfile::tempdir().unwrap();
    api.write_kubeconfig(&dir.path().join("kubeconfig"), "c")
        .unwrap();
    let config = dir.path().join("fleetdns.toml");
    std::fs::write(
        &config,
        "[[sources]]\nkind = \"kubernetes\"\nkubeconfig = \"kubeconfig\"\n",
    )
    .unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_fleetdns"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "no cluster_id in the source and no ClusterProperty cluster.clusterset.k8s.io"
        ),
        "{stderr}"
    );
    api.put(
        serde_json::json!({"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
        "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "a.b.example"}}),
    );
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"a.b.example\"") && stderr.contains("set cluster_id"),
        "{stderr}"
    );
}

/// `fleetdns agent`: one kubernetes source, no DNS; ready on /ready once its cluster is listed
/// and published; writes ServiceExport status into its own cluster.
#[test]
fn the_agent_publishes_its_cluster_and_writes_back() {
    use fleetdns_k8s_fake::FakeApiServer;
    use serde_json::json;
    let rt = fake_api_runtime();
    let api = rt.block_on(FakeApiServer::start()).unwrap();
    api.serve_group("multicluster.x-k8s.io", &["v1alpha1"]);
    api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}));
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}}));
    api.put(
        json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
        "metadata": {"name": "web", "namespace": "default"}}),
    );
    let dir = tempfile::tempdir().unwrap();
    api.write_kubeconfig(&dir.path().join("kubeconfig"), "c")
        .unwrap();
    let ops_port = free_port();
    std::fs::write(
        dir.path().join("fleetdns.toml"),
        format!(
            "[[sources]]\nkind = \"kubernetes\"\ncluster_id = \"east\"\nkubeconfig = \"kubeconfig\"\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetdns"))
        .args(["agent", "--config"])
        .arg(dir.path().join("fleetdns.toml"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let ops = SocketAddr::from(([127, 0, 0, 1], ops_port));
    let start = Instant::now();
    let ready = loop {
        let ok = std::net::TcpStream::connect(ops).is_ok()
            && http(ops, b"GET /ready HTTP/1.1\r\n\r\n").0 == 200
            && api
                .get("ServiceExport", Some("default"), "web")
                .and_then(|o| o.pointer("/status/conditions").cloned())
                .is_some();
        if ok || start.elapsed() > PATIENCE {
            break ok;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (_, metrics) = http(ops, b"GET /metrics HTTP/1.1\r\n\r\n");
    // An agent answers no DNS: `fleetdns status` says so instead of a confusing error.
    let (code, out) = fleetdns(&["status", "--server", &ops.to_string()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is a fleetdns agent"), "{out}");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ready,
        "agent not ready; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        metrics.contains("fleetdns_source_synced{cluster=\"east\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fleetdns_source_exports{cluster=\"east\"} 1"),
        "{metrics}"
    );
    assert!(api.get("ServiceImport", Some("default"), "web").is_some());
}

/// A process of the fleet that is not a DNS server: `fleetdns agent`.
struct Agent {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// An agent publishing one demo cluster (a manifest folder standing in for a cluster).
    fn start(cluster: &str, etcd: &str, ttl: u64) -> (Self, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            &repo_root().join("examples/demo/clusters").join(cluster),
            &dir.path().join("clusters").join(cluster),
        );
        std::fs::write(
            dir.path().join("agent.toml"),
            format!(
                "[registry]\nkind = \"etcd\"\nendpoints = [\"{etcd}\"]\nlease_ttl_secs = {ttl}\n[[sources]]\nkind = \"files\"\npath = \"clusters\"\n"
            ),
        )
        .unwrap();
        let log = dir.path().join("agent.log");
        let child = Command::new(env!("CARGO_BIN_EXE_fleetdns"))
            .args(["agent", "--config"])
            .arg(dir.path().join("agent.toml"))
            .env("FLEETDNS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let folder = dir.path().join("clusters").join(cluster);
        (
            Self {
                child,
                log,
                _dir: dir,
            },
            folder,
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fleet topology: three agents (manifest folders standing in for clusters) and two DNS
/// servers on one real etcd. An edit in one agent's cluster reaches both servers; an agent
/// killed with SIGKILL leaves the answers within its lease TTL (SPEC §3, MCS-10); etcd stopped
/// under the servers leaves them answering from the last snapshot, and what is written after
/// its restart arrives.
#[test]
fn agents_and_dns_servers_share_one_etcd() {
    let mut etcd = fleetdns_etcd::testing::TestEtcd::start();
    let endpoint = etcd.endpoint();
    let ttl = 2;
    let (mut agent_a, _) = Agent::start("cluster-a", &endpoint, ttl);
    let (_agent_b, folder_b) = Agent::start("cluster-b", &endpoint, ttl);
    let (_agent_c, folder_c) = Agent::start("cluster-c", &endpoint, ttl);
    let server = |ops: u16| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fleetdns.toml"),
            format!(
                "cluster_id = \"cluster-a\"\n[registry]\nkind = \"etcd\"\nendpoints = [\"{endpoint}\"]\nlease_ttl_secs = {ttl}\n[ops]\nlisten = \"127.0.0.1:{ops}\"\n"
            ),
        )
        .unwrap();
        Server::start(dir)
    };
    let ops1 = free_port();
    let s1 = server(ops1);
    let s2 = server(free_port());
    for s in [&s1, &s2] {
        s.wait_until(|| {
            s.short("payment.default.svc.clusterset.local", "A", &[]) == ["10.96.10.10"]
                && s.short("reviews.default.svc.clusterset.local", "A", &[])
                    .len()
                    == 3
                && s.short("payment.default.svc.cluster-b.local", "A", &[]) == ["10.97.10.10"]
        });
    }
    // An edit in cluster-b reaches both servers.
    let payment_b = folder_b.join("payment.yaml");
    let text = std::fs::read_to_string(&payment_b).unwrap();
    assert!(text.contains("10.97.10.10"));
    std::fs::write(&payment_b, text.replace("10.97.10.10", "10.97.10.99")).unwrap();
    for s in [&s1, &s2] {
        s.wait_until(|| {
            s.short("payment.default.svc.cluster-b.local", "A", &[]) == ["10.97.10.99"]
        });
    }
    // SIGKILL the agent of cluster-a: its lease expires, its exports leave every answer, and
    // local-first falls back to the other exporting cluster.
    agent_a.child.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    for s in [&s1, &s2] {
        s.wait_until(|| {
            s.short("payment.default.svc.clusterset.local", "A", &[]) == ["10.97.10.99"]
        });
    }
    assert!(
        killed.elapsed() < Duration::from_secs(ttl + 6),
        "gone within the lease TTL (plus etcd's lease check); log:\n{}",
        std::fs::read_to_string(&agent_a.log).unwrap_or_default()
    );
    // `status` and `query` name the cluster that left and its lease expiry (MCS-10).
    let ops_addr = format!("127.0.0.1:{ops1}");
    let (code, out) = fleetdns(&["status", "--server", &ops_addr]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("registry etcd revision")
            && out.contains("2 clusters (2 alive, 0 dead)")
            && out.contains("cluster-a left at")
            && out.contains("lease expired"),
        "{out}"
    );
    let (code, out) = fleetdns(&[
        "query",
        "payment.default.svc.clusterset.local",
        "--server",
        &ops_addr,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("cluster-a exported default/payment until")
            && out.contains("lease expired")
            && out.contains("10.97.10.99"),
        "{out}"
    );
    let (_, out) = fleetdns(&[
        "query",
        "payment.default.svc.cluster-a.local",
        "--server",
        &ops_addr,
    ]);
    assert!(
        out.contains("REFUSED") && out.contains("cluster-a left the registry at"),
        "{out}"
    );
    // etcd stops: both servers keep answering from the last snapshot, and say it is stale.
    etcd.stop();
    let ops = SocketAddr::from(([127, 0, 0, 1], ops1));
    s1.wait_until(|| {
        http(ops, b"GET /metrics HTTP/1.1\r\n\r\n")
            .1
            .contains("fleetdns_registry_stale 1")
    });
    assert_eq!(
        http(ops, b"GET /ready HTTP/1.1\r\n\r\n").0,
        200,
        "still ready"
    );
    for s in [&s1, &s2] {
        assert_eq!(
            s.short("payment.default.svc.clusterset.local", "A", &[]),
            ["10.97.10.99"]
        );
    }
    // Restarted: an edit made meanwhile arrives (the agent retries its publish).
    let reviews_c = folder_c.join("reviews.yaml");
    let text = std::fs::read_to_string(&reviews_c).unwrap();
    assert!(text.contains("10.246.1.20"));
    std::fs::write(&reviews_c, text.replace("10.246.1.20", "10.246.1.77")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    etcd.restart();
    for s in [&s1, &s2] {
        s.wait_until(|| {
            s.short("reviews.default.svc.clusterset.local", "A", &[])
                .contains(&"10.246.1.77".to_string())
        });
    }
    s1.wait_until(|| {
        http(ops, b"GET /metrics HTTP/1.1\r\n\r\n")
            .1
            .contains("fleetdns_registry_stale 0")
    });
}

/// A `[[sync]]` block publishing to `bind` with the tests' TSIG key (written next to the
/// config as `tsig.secret`).
fn sync_block(dir: &Path, bind: &fleetdns_publish::testing::Primary, extra: &str) -> String {
    std::fs::write(
        dir.join("tsig.secret"),
        format!("{}\n", fleetdns_publish::testing::SECRET),
    )
    .unwrap();
    format!(
        "\n[[sync]]\nprovider = \"rfc2136\"\nzone = \"{}\"\nserver = \"{}\"\ntsig_key = \"{}\"\ntsig_algorithm = \"hmac-sha256\"\ntsig_secret_file = \"tsig.secret\"\nowner_id = \"fleet-1\"\npolicy = \"sync\"\npublish_clusterset = true\ninterval_ms = 60000\nmin_event_interval_ms = 200\n{extra}",
        bind.zone,
        bind.addr(),
        fleetdns_publish::testing::KEY_NAME,
    )
}

const ANNOTATED: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: shop-lb\n  namespace: web\n  annotations:\n    external-dns.alpha.kubernetes.io/hostname: shop.fleet.example.com.\n    external-dns.kubernetes.io/ttl: \"60\"\nspec:\n  type: LoadBalancer\n  clusterIP: 10.97.50.50\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: 203.0.113.10\n";

/// SPEC §6: `serve` with the demo clusters publishes every exported service as
/// `<svc>.<ns>.<zone>` (policy-`all` addresses) and annotated Services (not exported) to a
/// real BIND over TSIG; an edit reaches BIND, and a cluster that leaves takes its addresses
/// and its annotated records with it.
#[test]
fn serve_publishes_the_fleet_to_bind_and_a_cluster_that_leaves_takes_its_records() {
    let bind = fleetdns_publish::testing::Primary::bind("fleet.example.com", "", "hmac-sha256");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    std::fs::write(
        dir.path().join("clusters/cluster-b/shop-lb.yaml"),
        ANNOTATED,
    )
    .unwrap();
    let config = dir.path().join("fleetdns.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&sync_block(dir.path(), &bind, ""));
    let ops_port = free_port();
    let _ = writeln!(text, "[ops]\nlisten = \"127.0.0.1:{ops_port}\"");
    std::fs::write(&config, text).unwrap();
    let s = Server::start(dir);
    let ops = SocketAddr::from(([127, 0, 0, 1], ops_port));
    let payment = "payment.default.fleet.example.com";
    s.wait_until(|| bind.dig(payment, "A") == ["10.96.10.10", "10.97.10.10"]);
    assert_eq!(bind.dig("shop.fleet.example.com", "A"), ["203.0.113.10"]);
    assert_eq!(
        bind.dig("frontend.web.fleet.example.com", "AAAA"),
        ["fd00:97::20"]
    );
    assert_eq!(
        bind.dig("aaaa-frontend.web.fleet.example.com", "TXT"),
        [
            "\"heritage=external-dns,external-dns/owner=fleet-1,external-dns/resource=service/web/frontend\""
        ]
    );
    assert_eq!(
        bind.dig("a-payment.default.fleet.example.com", "TXT"),
        [
            "\"heritage=external-dns,external-dns/owner=fleet-1,external-dns/resource=service/default/payment\""
        ]
    );
    // Headless: the ready endpoints of every cluster.
    assert_eq!(
        bind.dig("reviews.default.fleet.example.com", "A"),
        ["10.244.1.20", "10.244.1.21", "10.246.1.20"]
    );
    // An edit reaches BIND.
    let payment_b = s.clusters().join("cluster-b/payment.yaml");
    let edited = std::fs::read_to_string(&payment_b)
        .unwrap()
        .replace("10.97.10.10", "10.97.10.77");
    std::fs::write(&payment_b, edited).unwrap();
    s.wait_until(|| bind.dig(payment, "A") == ["10.96.10.10", "10.97.10.77"]);
    // cluster-b leaves: its address and its annotated record leave the zone.
    std::fs::remove_dir_all(s.clusters().join("cluster-b")).unwrap();
    s.wait_until(|| bind.dig(payment, "A") == ["10.96.10.10"]);
    s.wait_until(|| bind.dig("shop.fleet.example.com", "A").is_empty());
    assert!(bind.dig("a-shop.fleet.example.com", "TXT").is_empty());
    assert!(
        s.log_text().contains("record deleted"),
        "one log line per change"
    );
    let (_, metrics) = http(ops, b"GET /metrics HTTP/1.1\r\n\r\n");
    let samples = fleetdns_dns::metrics::parse_exposition(&metrics).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        fleetdns_dns::metrics::sample_value(&samples, name, labels).unwrap_or(-1.0)
    };
    let zone = [("zone", "fleet.example.com")];
    assert!(
        value("fleetdns_sync_records_created_total", &zone) >= 6.0,
        "{metrics}"
    );
    assert!(
        value("fleetdns_sync_records_updated_total", &zone) >= 1.0,
        "{metrics}"
    );
    assert!(
        value("fleetdns_sync_records_deleted_total", &zone) >= 1.0,
        "{metrics}"
    );
    assert!(
        value("fleetdns_sync_last_success_timestamp_seconds", &zone) > 1.0e9,
        "{metrics}"
    );
    assert_eq!(
        value(
            "fleetdns_sync_errors_total",
            &[("zone", "fleet.example.com"), ("kind", "refused")]
        ),
        0.0,
        "{metrics}"
    );
}

/// `fleetdns sync --dry-run` prints the plan and changes nothing; `fleetdns sync` applies it
/// and exits 0; a refused key exits 1 with the rcode and the TSIG error.
#[test]
fn sync_command_dry_run_then_once_and_a_refused_key_exits_non_zero() {
    let foreign = "payment.default A 192.0.2.50\na-payment.default TXT \"heritage=external-dns,external-dns/owner=cluster-9,external-dns/resource=service/default/payment\"\n";
    let bind =
        fleetdns_publish::testing::Primary::bind("fleet.example.com", foreign, "hmac-sha256");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let config = dir.path().join("fleetdns.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&sync_block(dir.path(), &bind, ""));
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap().to_owned();

    let (code, out) = fleetdns(&["check-config", &config]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sync zone fleet.example.com via rfc2136 (owner fleet-1, policy sync, publish_clusterset)"), "{out}");
    let (code, out) = fleetdns(&["sync", "--dry-run", "--config", &config]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "create reviews.default.fleet.example.com A [10.244.1.20,10.244.1.21,10.246.1.20]"
        ),
        "{out}"
    );
    assert!(
        out.contains("leave payment.default.fleet.example.com A: owned by \"cluster-9\""),
        "{out}"
    );
    assert!(
        bind.dig("reviews.default.fleet.example.com", "A")
            .is_empty(),
        "dry run wrote"
    );

    let (code, out) = fleetdns(&["sync", "--config", &config]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("applied:"), "{out}");
    assert_eq!(bind.dig("reviews.default.fleet.example.com", "A").len(), 3);
    assert_eq!(
        bind.dig("payment.default.fleet.example.com", "A"),
        ["192.0.2.50"],
        "another owner's"
    );
    let (_, out) = fleetdns(&["sync", "--dry-run", "--config", &config]);
    assert!(
        out.contains("plan: 0 to create, 0 to update, 0 to delete"),
        "{out}"
    );

    std::fs::write(
        dir.path().join("tsig.secret"),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    )
    .unwrap();
    let (code, out) = fleetdns(&["sync", "--config", &config]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOTAUTH") && out.contains("BADSIG"), "{out}");
}

/// `fleetdns sync` with `provider = "etcd"`: the demo fleet's services land in the SkyDNS
/// layout (XDNS-18/19) on a real etcd.
#[test]
fn sync_command_writes_the_skydns_layout_to_etcd() {
    let etcd = fleetdns_etcd::testing::TestEtcd::start();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let config = dir.path().join("fleetdns.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    let _ = writeln!(
        text,
        "\n[[sync]]\nprovider = \"etcd\"\nzone = \"fleet.example.com\"\nendpoints = [\"{}\"]\nowner_id = \"fleet-1\"\npolicy = \"sync\"\npublish_clusterset = true",
        etcd.endpoint()
    );
    std::fs::write(&config, text).unwrap();
    let (code, out) = fleetdns(&["sync", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let endpoint = etcd.endpoint();
    let mut values: Vec<String> = fake_api_runtime().block_on(async {
        let mut client = fleetdns_publish::skydns::EtcdClient::connect([endpoint], None)
            .await
            .unwrap();
        let prefix = "/skydns/com/example/fleet/default/payment/";
        let resp = client
            .get(
                prefix,
                Some(fleetdns_publish::skydns::GetOptions::new().with_prefix()),
            )
            .await
            .unwrap();
        resp.kvs()
            .iter()
            .map(|kv| kv.value_str().unwrap().to_owned())
            .collect()
    });
    values.sort();
    let keys = values.join("\n");
    assert_eq!(
        values,
        [
            r#"{"host":"10.96.10.10","targetstrip":1}"#,
            r#"{"host":"10.97.10.10","targetstrip":1}"#
        ],
        "{keys}\n{out}"
    );
}

/// The whole fleet from one place: agents publish their clusters to etcd, one `serve` with no
/// sources of its own syncs `publish_clusterset` names to BIND from the registry. An agent
/// killed with SIGKILL takes its cluster's address out of BIND once its lease expires.
#[test]
fn a_killed_cluster_leaves_the_public_zone_within_its_lease() {
    let etcd = fleetdns_etcd::testing::TestEtcd::start();
    let endpoint = etcd.endpoint();
    let ttl = 2;
    let bind = fleetdns_publish::testing::Primary::bind("fleet.example.com", "", "hmac-sha256");
    let (_agent_a, _) = Agent::start("cluster-a", &endpoint, ttl);
    let (mut agent_b, _) = Agent::start("cluster-b", &endpoint, ttl);
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[registry]\nkind = \"etcd\"\nendpoints = [\"{endpoint}\"]\nlease_ttl_secs = {ttl}\n"
    );
    text.push_str(&sync_block(dir.path(), &bind, ""));
    std::fs::write(dir.path().join("fleetdns.toml"), text).unwrap();
    let s = Server::start(dir);
    let payment = "payment.default.fleet.example.com";
    s.wait_until(|| bind.dig(payment, "A") == ["10.96.10.10", "10.97.10.10"]);
    assert_eq!(
        bind.dig("frontend.web.fleet.example.com", "A"),
        ["10.97.20.20"]
    );
    agent_b.child.kill().unwrap(); // SIGKILL
    s.wait_until(|| bind.dig(payment, "A") == ["10.96.10.10"]);
    assert!(
        bind.dig("frontend.web.fleet.example.com", "A").is_empty(),
        "cluster-b's only service is gone too"
    );
}

/// A kubernetes source feeds the sync: `serve` watching a (fake) API server publishes a Service
/// annotated for ExternalDNS, not exported, to BIND; a LoadBalancer status change and the
/// Service's deletion follow.
#[test]
fn a_kubernetes_source_feeds_annotated_services_to_bind() {
    use fleetdns_k8s_fake::FakeApiServer;
    use serde_json::json;
    let rt = fake_api_runtime();
    let api = rt.block_on(FakeApiServer::start()).unwrap();
    api.serve_group("multicluster.x-k8s.io", &["v1beta1"]);
    let lb = |ip: &str| {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "edge", "namespace": "web",
                "annotations": {"external-dns.kubernetes.io/hostname": "edge.fleet.example.com"}},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.9"},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
    };
    api.put(lb("203.0.113.1"));
    let bind = fleetdns_publish::testing::Primary::bind("fleet.example.com", "", "hmac-sha256");
    let dir = tempfile::tempdir().unwrap();
    api.write_kubeconfig(&dir.path().join("kubeconfig"), "c")
        .unwrap();
    let mut text = "[[sources]]\nkind = \"kubernetes\"\ncluster_id = \"east\"\nkubeconfig = \"kubeconfig\"\nwrite_back = false\n".to_string();
    text.push_str(
        &sync_block(dir.path(), &bind, "")
            .replace("publish_clusterset = true", "publish_clusterset = false"),
    );
    std::fs::write(dir.path().join("fleetdns.toml"), text).unwrap();
    let s = Server::start(dir);
    s.wait_until(|| bind.dig("edge.fleet.example.com", "A") == ["203.0.113.1"]);
    api.put(lb("203.0.113.2"));
    s.wait_until(|| bind.dig("edge.fleet.example.com", "A") == ["203.0.113.2"]);
    assert!(api.delete("v1", "Service", Some("web"), "edge"));
    s.wait_until(|| bind.dig("edge.fleet.example.com", "A").is_empty());
    assert!(bind.dig("a-edge.fleet.example.com", "TXT").is_empty());
}

// ---------------------------------------------------------------------------------------------
// The second seed: Istio ServiceEntries served in place of istiocoredns.
// ---------------------------------------------------------------------------------------------

/// The ServiceEntries Service Mesh Hub created on cluster-1 in the second seed.
const SEED_SERVICE_ENTRIES: &str = r"
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: ratings.default.cluster-2
  namespace: istio-system
spec:
  hosts: [ratings.default.cluster-2]
  location: MESH_INTERNAL
  resolution: DNS
  addresses: [240.0.0.2]
  ports: [{number: 9080, name: http1, protocol: http}]
  endpoints: [{address: 192.0.2.10, ports: {http1: 15443}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: reviews.default.cluster-2
  namespace: istio-system
spec:
  hosts: [reviews.default.cluster-2]
  location: MESH_INTERNAL
  resolution: DNS
  addresses: [240.0.0.3]
  ports: [{number: 9080, name: http1, protocol: http}]
  endpoints: [{address: 192.0.2.10, ports: {http1: 15443}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: istio-ingressgateway.istio-system.cluster-2
  namespace: istio-system
spec:
  hosts: [istio-ingressgateway.istio-system.cluster-2]
  location: MESH_INTERNAL
  resolution: DNS
  addresses: [240.0.0.4]
  ports: [{number: 443, name: https, protocol: TLS}]
  endpoints: [{address: 192.0.2.10, ports: {https: 15443}}]
";

/// cluster-2's bookinfo services, exported (for `.global` and `<svc>.<ns>.cluster-2`).
const CLUSTER2_EXPORTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: details, namespace: default}
spec:
  clusterIP: 10.22.0.7
  ports: [{name: http, protocol: TCP, port: 9080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: details-abc
  namespace: default
  labels: {kubernetes.io/service-name: details}
addressType: IPv4
endpoints: [{addresses: [10.244.2.7], conditions: {ready: true}}]
ports: [{name: http, protocol: TCP, port: 9080}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: details, namespace: default, creationTimestamp: "2024-01-01T00:00:00Z"}
"#;

fn mesh_config(extra_sources: &str) -> String {
    format!(
        r#"
cluster_id = "cluster-1"
[registry]
kind = "memory"
vip_range = "240.240.0.0/16"
vip_range_v6 = "2001:2::/48"
[mesh]
enabled = true
cluster_suffix = "{{cluster}}"
global_suffix = "global"
ttl = 30
gateways = {{ "cluster-2" = "192.0.2.10:15443" }}
[[sources]]
kind = "files"
path = "clusters"
{extra_sources}
"#
    )
}

/// Debian's unbound as the cluster DNS would be: forwarding `zones` to fleetdns.
struct Unbound {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Unbound {
    fn start(zones: &[String], fleetdns: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let mut conf = format!(
            "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n  module-config: \"iterator\"\n  num-threads: 1\nremote-control:\n  control-enable: no\n"
        );
        for zone in zones {
            let _ = writeln!(
                conf,
                "forward-zone:\n  name: \"{zone}.\"\n  forward-addr: {}@{}",
                fleetdns.ip(),
                fleetdns.port()
            );
        }
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unbound (install unbound)");
        let unbound = Self {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while !unbound
            .dig(&["version.server", "CH", "TXT"])
            .contains("status:")
        {
            assert!(start.elapsed() < PATIENCE, "unbound did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        unbound
    }

    fn dig(&self, args: &[&str]) -> String {
        let out = Command::new("dig")
            .arg("@127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args(["+time=2", "+tries=1"])
            .args(args)
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The zones of `fleetdns stub-domains --format corefile` (`<zone>:53 {` lines).
fn corefile_zones(corefile: &str) -> Vec<String> {
    corefile
        .lines()
        .filter_map(|l| l.strip_suffix(":53 {"))
        .map(str::to_owned)
        .collect()
}

/// Runs the seed's checks against one server: the one stub-domains command, and a real
/// forwarding resolver (unbound) configured from it answering the ServiceEntry hosts.
fn seed_through_unbound(server: &Server) {
    let config = server.dir.path().join("fleetdns.toml");
    let config = config.to_str().unwrap();
    let addr = server.addr().to_string();
    let (code, corefile) = fleetdns(&["stub-domains", "--config", config, "--server", &addr]);
    assert_eq!(code, 0, "{corefile}");
    let zones = corefile_zones(&corefile);
    for zone in ["cluster-1", "cluster-2", "global"] {
        assert!(
            zones.iter().any(|z| z == zone),
            "{zone} missing from:\n{corefile}"
        );
    }
    let (code, kube_dns) = fleetdns(&[
        "stub-domains",
        "--config",
        config,
        "--server",
        &addr,
        "--format",
        "kube-dns",
    ]);
    assert_eq!(code, 0, "{kube_dns}");
    for zone in ["\"cluster-1\"", "\"cluster-2\"", "\"global\""] {
        assert!(kube_dns.contains(zone), "{zone} missing from:\n{kube_dns}");
    }
    let unbound = Unbound::start(&zones, server.addr());
    let short = |name: &str, qtype: &str| -> Vec<String> {
        let mut v: Vec<String> = unbound
            .dig(&[name, qtype, "+short"])
            .lines()
            .filter(|l| !l.starts_with(';'))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    // The seed's `nslookup ratings.default.cluster-2` → 240.0.0.2, now through unbound.
    server.wait_until(|| short("ratings.default.cluster-2", "A") == ["240.0.0.2"]);
    assert_eq!(short("reviews.default.cluster-2", "A"), ["240.0.0.3"]);
    assert_eq!(
        short("istio-ingressgateway.istio-system.cluster-2", "A"),
        ["240.0.0.4"]
    );
    // IST-4 fixed (K8S-21): AAAA of a known v4-only host is NOERROR without answers.
    let aaaa = unbound.dig(&["ratings.default.cluster-2", "AAAA"]);
    assert!(aaaa.contains("status: NOERROR"), "{aaaa}");
    assert!(aaaa.contains("ANSWER: 0"), "{aaaa}");
    // An unknown name in the mesh zone is NXDOMAIN.
    let nx = unbound.dig(&["nope.default.cluster-2", "A"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    // fleetdns itself: authoritative, TTL 30 as configured.
    let direct = server.dig(&[
        "ratings.default.cluster-2",
        "A",
        "+noall",
        "+answer",
        "+comments",
    ]);
    assert!(direct.contains(" aa"), "{direct}");
    assert!(
        direct.contains("ratings.default.cluster-2. 30\tIN\tA\t240.0.0.2"),
        "{direct}"
    );
}

/// The second seed through manifest files: cluster-1's folder holds the ServiceEntries
/// Service Mesh Hub made, cluster-2's its exported services.
#[test]
fn seed_istio_service_entries_from_manifest_files_through_unbound() {
    let dir = tempfile::tempdir().unwrap();
    let clusters = dir.path().join("clusters");
    std::fs::create_dir_all(clusters.join("cluster-1")).unwrap();
    std::fs::create_dir_all(clusters.join("cluster-2")).unwrap();
    std::fs::write(
        clusters.join("cluster-1/serviceentries.yaml"),
        SEED_SERVICE_ENTRIES,
    )
    .unwrap();
    std::fs::write(clusters.join("cluster-2/details.yaml"), CLUSTER2_EXPORTS).unwrap();
    std::fs::write(dir.path().join("fleetdns.toml"), mesh_config("")).unwrap();
    let server = Server::start(dir);
    seed_through_unbound(&server);
    // Mesh names of an export: `<svc>.<ns>.<cluster>` (its ClusterIP) and `.global` (VIPs).
    assert_eq!(
        server.short("details.default.cluster-2", "A", &[]),
        ["10.22.0.7"]
    );
    let v4 = server.short("details.default.global", "A", &[]);
    let v6 = server.short("details.default.global", "AAAA", &[]);
    assert!(v4.len() == 1 && v4[0].starts_with("240.240."), "{v4:?}");
    assert!(v6.len() == 1 && v6[0].starts_with("2001:2:"), "{v6:?}");
    // `fleetdns query` says which ServiceEntry answers and by which rule.
    let config = server.dir.path().join("fleetdns.toml");
    let (code, why) = fleetdns(&[
        "query",
        "--config",
        config.to_str().unwrap(),
        "ratings.default.cluster-2",
    ]);
    assert_eq!(code, 0, "{why}");
    for want in [
        "240.0.0.2",
        "(mesh)",
        "IST-2",
        "istio-system/ratings.default.cluster-2",
    ] {
        assert!(why.contains(want), "{want} missing from:\n{why}");
    }
}

/// The second seed through the Kubernetes API (the fake API server): cluster-1 serves the
/// ServiceEntries as networking.istio.io/v1alpha3.
#[test]
fn seed_istio_service_entries_from_the_kubernetes_api_through_unbound() {
    use fleetdns_k8s_fake::FakeApiServer;
    use serde_json::json;

    let rt = fake_api_runtime();
    let api = rt.block_on(async { FakeApiServer::start().await.unwrap() });
    api.serve_group("multicluster.x-k8s.io", &["v1alpha1"]);
    api.serve_group("networking.istio.io", &["v1alpha3"]);
    api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}));
    for (host, ip) in [
        ("ratings.default.cluster-2", "240.0.0.2"),
        ("reviews.default.cluster-2", "240.0.0.3"),
        ("istio-ingressgateway.istio-system.cluster-2", "240.0.0.4"),
    ] {
        api.put(
            json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "ServiceEntry",
            "metadata": {"name": host, "namespace": "istio-system"},
            "spec": {"hosts": [host], "location": "MESH_INTERNAL", "resolution": "DNS",
                     "addresses": [ip], "endpoints": [{"address": "192.0.2.10"}]}}),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("clusters/cluster-2")).unwrap();
    std::fs::write(
        dir.path().join("clusters/cluster-2/details.yaml"),
        CLUSTER2_EXPORTS,
    )
    .unwrap();
    api.write_kubeconfig(&dir.path().join("c1.kubeconfig"), "c1")
        .unwrap();
    std::fs::write(
        dir.path().join("fleetdns.toml"),
        mesh_config(
            "[[sources]]\nkind = \"kubernetes\"\ncluster_id = \"cluster-1\"\nkubeconfig = \"c1.kubeconfig\"\nwrite_back = false\n",
        ),
    )
    .unwrap();
    let server = Server::start(dir);
    seed_through_unbound(&server);
    drop(server);
    drop(api);
    drop(rt);
}

/// `fleetdns istio service-entries` prints YAML that fleetdns itself (and so `kubectl
/// apply`) reads back: applied to cluster-1, `details.default.cluster-2` answers the fleet
/// VIP that `details.default.global` answers, with cluster-2's gateway as endpoint.
#[test]
fn istio_service_entries_command_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let clusters = dir.path().join("clusters");
    std::fs::create_dir_all(clusters.join("cluster-1")).unwrap();
    std::fs::create_dir_all(clusters.join("cluster-2")).unwrap();
    std::fs::write(clusters.join("cluster-2/details.yaml"), CLUSTER2_EXPORTS).unwrap();
    let config = dir.path().join("fleetdns.toml");
    std::fs::write(&config, mesh_config("")).unwrap();
    let (code, yaml) = fleetdns(&[
        "istio",
        "service-entries",
        "--config",
        config.to_str().unwrap(),
        "--cluster",
        "cluster-1",
    ]);
    assert_eq!(code, 0, "{yaml}");
    for want in [
        "kind: ServiceEntry",
        "name: \"details.default.cluster-2\"",
        "location: MESH_INTERNAL",
        "resolution: DNS",
        "- number: 9080",
        "protocol: HTTP",
        "- address: \"192.0.2.10\"",
        "\"http\": 15443",
        "cluster: \"cluster-2\"",
        "locality: \"cluster-2\"",
    ] {
        assert!(yaml.contains(want), "{want} missing from:\n{yaml}");
    }
    let (code, none) = fleetdns(&[
        "istio",
        "service-entries",
        "--config",
        config.to_str().unwrap(),
        "--cluster",
        "cluster-2",
    ]);
    assert_eq!(code, 0, "{none}");
    assert!(
        !none.contains("kind: ServiceEntry"),
        "cluster-2's own services are left out:\n{none}"
    );
    std::fs::write(clusters.join("cluster-1/generated.yaml"), &yaml).unwrap();
    let server = Server::start(dir);
    let global = server.short("details.default.global", "A", &[]);
    assert_eq!(global.len(), 1, "{global:?}");
    assert!(
        yaml.contains(&format!("- \"{}\"", global[0])),
        "the fleet VIP:\n{yaml}"
    );
    server.wait_until(|| server.short("details.default.cluster-2", "A", &[]) == global);
}

/// ServiceEntries through a fleet: an agent publishes cluster-1's ServiceEntries (the seed's,
/// and one without addresses) to etcd, two DNS servers answer them alike, and the VIP
/// allocated for the one without addresses is the same on both and after everything restarts
/// (IST-14).
#[test]
fn service_entries_through_agents_and_etcd_agree_and_survive_restarts() {
    let etcd = fleetdns_etcd::testing::TestEtcd::start();
    let endpoint = etcd.endpoint();
    let registry = format!(
        "[registry]\nkind = \"etcd\"\nendpoints = [\"{endpoint}\"]\nlease_ttl_secs = 5\nvip_range = \"240.240.0.0/16\"\nvip_range_v6 = \"2001:2::/48\"\n"
    );
    let agent_dir = tempfile::tempdir().unwrap();
    let folder = agent_dir.path().join("clusters/cluster-1");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("serviceentries.yaml"),
        format!(
            "{SEED_SERVICE_ENTRIES}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: payments-api, namespace: istio-system}}\nspec: {{hosts: [api.payments.example.com], location: MESH_EXTERNAL, resolution: DNS}}\n"
        ),
    )
    .unwrap();
    let folder2 = agent_dir.path().join("clusters/cluster-2");
    std::fs::create_dir_all(&folder2).unwrap();
    std::fs::write(folder2.join("details.yaml"), CLUSTER2_EXPORTS).unwrap();
    std::fs::write(
        agent_dir.path().join("agent.toml"),
        format!("{registry}[[sources]]\nkind = \"files\"\npath = \"clusters\"\n"),
    )
    .unwrap();
    let agent = || {
        Command::new(env!("CARGO_BIN_EXE_fleetdns"))
            .args(["agent", "--config"])
            .arg(agent_dir.path().join("agent.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let server = || {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fleetdns.toml"),
            format!("{registry}[mesh]\nenabled = true\ngateways = {{ \"cluster-2\" = \"192.0.2.10\" }}\n"),
        )
        .unwrap();
        Server::start(dir)
    };
    let mut a = agent();
    let (s1, s2) = (server(), server());
    let vips = |s: &Server| {
        s.wait_until(|| {
            s.short("ratings.default.cluster-2", "A", &[]) == ["240.0.0.2"]
                && s.short("api.payments.example.com", "AAAA", &[]).len() == 1
        });
        (
            s.short("api.payments.example.com", "A", &[]),
            s.short("api.payments.example.com", "AAAA", &[]),
        )
    };
    let first = vips(&s1);
    assert_eq!(vips(&s2), first, "two servers on one etcd agree");
    // `istio service-entries` reads the fleet (and its VIPs) from etcd.
    s1.wait_until(|| s1.short("details.default.global", "A", &[]).len() == 1);
    let global = s1.short("details.default.global", "A", &[]);
    let config = s1.dir.path().join("fleetdns.toml");
    let (code, yaml) = fleetdns(&[
        "istio",
        "service-entries",
        "--config",
        config.to_str().unwrap(),
        "--cluster",
        "cluster-1",
    ]);
    assert_eq!(code, 0, "{yaml}");
    assert!(
        yaml.contains("name: \"details.default.cluster-2\""),
        "{yaml}"
    );
    assert!(
        yaml.contains(&format!("- \"{}\"", global[0])),
        "the fleet VIP {global:?}:\n{yaml}"
    );
    assert!(first.0[0].starts_with("240.240."), "{first:?}");
    assert!(first.1[0].starts_with("2001:2:"), "{first:?}");
    // Everything restarts: the agent publishes again, a new server reads etcd.
    let _ = a.kill();
    let _ = a.wait();
    drop((s1, s2));
    let mut a = agent();
    let s3 = server();
    assert_eq!(vips(&s3), first, "stable across restarts");
    let _ = a.kill();
    let _ = a.wait();
}

/// A demo server with `[ops] listen` (and extra lines in `[dns]`); returns it and the ops
/// address, ready.
fn demo_with_ops(dns_extra: &str, ops_extra: &str) -> (Server, String) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/demo"), dir.path());
    let ops_port = free_port();
    let config = dir.path().join("fleetdns.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[dns]\n", &format!("[dns]\n{dns_extra}\n"));
    std::fs::write(
        &config,
        format!("{text}\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\n{ops_extra}\n"),
    )
    .unwrap();
    let s = Server::start(dir);
    let ops = SocketAddr::from(([127, 0, 0, 1], ops_port));
    s.wait_until(|| http(ops, b"GET /ready HTTP/1.1\r\n\r\n").0 == 200);
    (s, ops.to_string())
}

/// `fleetdns query` explains a local-first choice (LH-14) and a NODATA (K8S-21), `status`
/// lists the clusters and the demo's type conflict (MCS-22), a removed export is named with
/// when it was last seen (MCS-10), and `dig +nsid` gets the configured identity (RFC 5001).
#[test]
fn query_and_status_explain_the_demo_and_nsid_names_the_server() {
    let (s, ops) = demo_with_ops("nsid = \"dns-e2e-1\"", "");
    let pay = "payment.default.svc.clusterset.local";
    let (code, out) = fleetdns(&["query", pay, "--server", &ops]);
    assert_eq!(code, 0, "{out}");
    for want in [
        "NOERROR (answer, authoritative)",
        "10.96.10.10",
        "server dns-e2e-1",
        "local-first (local cluster cluster-a): local-ready → [cluster-a]",
        "LH-14",
        "not-local",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let (code, out) = fleetdns(&["query", pay, "AAAA", "--server", &ops]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NOERROR (nodata"), "{out}");
    assert!(out.contains("K8S-21") && out.contains("SOA"), "{out}");

    let (code, json) = fleetdns(&["query", pay, "--server", &ops, "--json"]);
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["response"]["answers"][0]["data"], "10.96.10.10");
    assert_eq!(v["policy"]["chosen"], serde_json::json!(["cluster-a"]));
    assert_eq!(v["server"]["nsid"], "dns-e2e-1");

    let (code, out) = fleetdns(&["status", "--server", &ops]);
    assert_eq!(code, 0, "{out}");
    for want in [
        "3 clusters (3 alive, 0 dead)",
        "cluster-a",
        "cluster-b",
        "cluster-c",
        "shop/inventory TypeConflict",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let (_, json) = fleetdns(&["status", "--server", &ops, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["summary"]["clusters"], 3);
    assert_eq!(v["registry"]["kind"], "memory");

    // web/frontend is exported by cluster-b alone; its export goes away.
    let frontend = "frontend.web.svc.clusterset.local";
    let removed = std::fs::read_dir(s.clusters().join("cluster-b"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).unwrap().contains("frontend"))
        .expect("the demo's frontend manifest");
    std::fs::remove_file(removed).unwrap();
    s.wait_until(|| s.status(frontend, "A") == "NXDOMAIN");
    let (_, out) = fleetdns(&["query", frontend, "--server", &ops]);
    assert!(
        out.contains("cluster-b exported web/frontend until")
            && out.contains("no longer exports it"),
        "{out}"
    );

    // NSID from a real client, over UDP and TCP.
    for extra in [&["+nsid"][..], &["+nsid", "+tcp"]] {
        let mut args = vec![pay, "A"];
        args.extend_from_slice(extra);
        let out = s.dig(&args);
        assert!(
            out.contains("NSID: ") && out.contains("(\"dns-e2e-1\")"),
            "{out}"
        );
    }
    assert!(!s.dig(&[pay, "A"]).contains("NSID"), "only when asked");

    // From the config alone.
    let config = s.dir.path().join("fleetdns.toml");
    let (code, out) = fleetdns(&["query", pay, "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("10.96.10.10") && out.contains("local-ready"),
        "{out}"
    );
}

#[test]
fn query_and_status_say_clearly_when_the_server_cannot_answer() {
    let (_s, ops) = demo_with_ops("", "debug = false");
    let (code, out) = fleetdns(&["status", "--server", &ops]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("debug API off"), "{out}");
    let (_, body) = http(ops.parse().unwrap(), b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(body.contains("fleetdns_build_info"), "metrics stay on");
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port())).to_string();
    let (code, out) = fleetdns(&["query", "x.clusterset.local", "--server", &closed]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("cannot reach the fleetdns ops listener"),
        "{out}"
    );
    let (code, out) = fleetdns(&["query", "x.clusterset.local"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("--server"), "{out}");
}

/// Runs Debian's `chromium` headless with a fresh profile; returns its stdout. Bounded in time.
fn chromium(profile: &Path, args: &[&str]) -> String {
    let out = profile.join("chromium.out");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        .args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("run chromium (Debian package chromium; scripts/deps.sh installs it)");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(out).unwrap_or_default()
}

/// The status page at `/` in a real headless Chromium: the DOM lists the three clusters and
/// highlights the demo's type conflict (MCS-22). The screenshot is kept as a test artifact in
/// Cargo's target tmp dir (`status-page.png`).
#[test]
fn the_status_page_renders_in_headless_chromium() {
    let (_s, ops) = demo_with_ops("nsid = \"dns-page\"", "");
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{ops}/");
    let dom = chromium(profile.path(), &["--dump-dom", &url]);
    for want in [
        "data-cluster=\"cluster-a\"",
        "data-cluster=\"cluster-b\"",
        "data-cluster=\"cluster-c\"",
        "<tr class=\"conflict\"><td>shop/inventory</td><td>TypeConflict</td>",
        "<code id=\"nsid\">dns-page</code>",
    ] {
        assert!(dom.contains(want), "{want:?} in:\n{dom}");
    }
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &[
            "--window-size=1280,900",
            "--hide-scrollbars",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    eprintln!("status page screenshot: {}", shot.display());
}

/// `fleetdns_…` metric names in `text`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("fleetdns_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// deploy/monitoring: the alert rules pass `promtool check rules` and their unit tests
/// (`promtool test rules`), and the rules and the Grafana dashboard use only metrics that
/// docs/metrics.md documents.
#[test]
fn monitoring_rules_pass_promtool_and_use_only_documented_metrics() {
    let dir = repo_root().join("deploy/monitoring");
    for args in [
        &["check", "rules", "fleetdns-alerts.yaml"][..],
        &["test", "rules", "fleetdns-alerts.test.yaml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run promtool (Debian package prometheus; scripts/deps.sh installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let documented =
        metric_names(&std::fs::read_to_string(repo_root().join("docs/metrics.md")).unwrap());
    let rules: String = std::fs::read_to_string(dir.join("fleetdns-alerts.yaml"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let dashboard = std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let panels = parsed["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "a dashboard, not a stub");
    let mut exprs = String::new();
    for p in panels {
        for t in p["targets"].as_array().expect("targets") {
            exprs.push_str(t["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    for (what, text) in [("alert rules", &rules), ("dashboard", &exprs)] {
        let used = metric_names(text);
        assert!(used.len() >= 5, "{what} use metrics: {used:?}");
        let undocumented: Vec<_> = used.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "{what} use metrics docs/metrics.md does not document: {undocumented:?}"
        );
    }
}

/// The committed corpus of the `config` fuzz target (`fuzz/corpus/config/`) through its
/// harness: every file parses or is refused with an error, and what the commands derive from
/// a config that parses builds; none panics (fuzz/README.md).
mod fuzz_corpus {
    #[test]
    fn config() {
        fleetdns_core::fuzzing::run_corpus("config", fleetdns::fuzzing::config);
    }
}
