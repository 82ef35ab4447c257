//! Real primaries for tests: Debian's BIND 9 (`named`) or Knot (`knotd`) on a loopback port
//! with a temporary directory, a TSIG key, and updates and transfers allowed for that key
//! (`allow-update` / `allow-transfer`; Knot: an ACL with `action: [update, transfer]`);
//! stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tests' TSIG secret (32 bytes, base64) and key name.
pub const SECRET: &str = "q1FhTksPXgPFxLS0yQl8SVsJ6M4UUOgxbHzLMfn4Q0k=";
pub const KEY_NAME: &str = "fleetdns-key";

fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = tcp.local_addr().expect("bound").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bind,
    Knot,
}

pub struct Primary {
    pub kind: Kind,
    pub port: u16,
    pub zone: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn zone_file(zone: &str, records: &str) -> String {
    format!(
        "$ORIGIN {zone}.\n$TTL 300\n@ IN SOA ns.{zone}. admin.{zone}. 1 3600 600 86400 60\n@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n{records}\n"
    )
}

impl Primary {
    /// Starts `knotd` serving `zone` as a primary, like [`Primary::bind`].
    pub fn knot(zone: &str, records: &str, algorithm: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "server:\n    rundir: {d}\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             database:\n    storage: {d}\n\
             log:\n  - target: stderr\n    any: info\n\
             key:\n  - id: {KEY_NAME}\n    algorithm: {algorithm}\n    secret: {SECRET}\n\
             acl:\n  - id: sync\n    key: {KEY_NAME}\n    action: [update, transfer]\n\
             zone:\n  - domain: {zone}\n    file: {d}/zone.db\n    zonefile-sync: -1\n    journal-content: all\n    acl: sync\n"
        );
        std::fs::write(dir.path().join("knot.conf"), conf).expect("write knot.conf");
        std::fs::write(dir.path().join("zone.db"), zone_file(zone, records)).expect("write zone");
        let mut knot = Self {
            kind: Kind::Knot,
            port,
            zone: zone.to_owned(),
            dir,
            child: None,
        };
        knot.spawn();
        knot
    }

    /// Starts `named` serving `zone` as a primary; `records` are zone-file lines added after
    /// the SOA and NS (relative names allowed). `algorithm`: e.g. `hmac-sha256`.
    pub fn bind(zone: &str, records: &str, algorithm: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            r#"options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  notify no;
  dnssec-validation no;
}};
controls {{ }};
key "{KEY_NAME}" {{ algorithm {algorithm}; secret "{SECRET}"; }};
zone "{zone}" {{
  type primary;
  file "{d}/zone.db";
  allow-update {{ key "{KEY_NAME}"; }};
  allow-transfer {{ key "{KEY_NAME}"; }};
}};
"#
        );
        std::fs::write(dir.path().join("named.conf"), conf).expect("write named.conf");
        std::fs::write(dir.path().join("zone.db"), zone_file(zone, records)).expect("write zone");
        let mut bind = Self {
            kind: Kind::Bind,
            port,
            zone: zone.to_owned(),
            dir,
            child: None,
        };
        bind.spawn();
        bind
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.log()).expect("log file");
        let mut command = match self.kind {
            Kind::Bind => {
                let mut c = Command::new("named");
                c.args(["-g", "-n", "1", "-c"])
                    .arg(self.dir.path().join("named.conf"));
                c
            }
            Kind::Knot => {
                let mut c = Command::new("knotd");
                c.arg("-c").arg(self.dir.path().join("knot.conf"));
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the DNS server (Debian packages bind9, knot)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new("dig")
                .args(["+tcp", "+short", "+time=1", "+tries=1", "-p"])
                .arg(self.port.to_string())
                .arg("@127.0.0.1")
                .arg(&self.zone)
                .arg("SOA")
                .output()
                .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
            if ok {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "the server exited ({status}): {}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the server did not answer in 20 s: {}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `dig +short` over TCP: the answers, sorted.
    pub fn dig(&self, name: &str, qtype: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args(["+tcp", "+short", "+time=2", "+tries=1", "-p"])
            .arg(self.port.to_string())
            .arg("@127.0.0.1")
            .arg(name)
            .arg(qtype)
            .output()
            .expect("run dig");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .collect();
        lines.sort();
        lines
    }

    /// Stops the server (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.stop();
    }
}
