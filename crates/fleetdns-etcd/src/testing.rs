//! A real etcd for tests: Debian's `etcd` on loopback ports with a temporary data dir, stopped
//! (and its data dir removed) on drop. Feature `testing`.
//!
//! [`TestEtcd::start`] is one plain member; [`TestEtcd::builder`] adds TLS (certificates made
//! by the `openssl` command for the test, client certificates required) and a short simple
//! token TTL for password auth ([`TestEtcd::enable_auth`]); [`TestEtcd::cluster`] starts
//! several members forming one cluster.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TlsPem;

pub struct TestEtcd {
    child: Option<Child>,
    pub client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    name: String,
    /// `--initial-cluster`: this member alone, or every member of a cluster.
    initial_cluster: String,
    options: TestEtcdOptions,
    tls: Option<TestTls>,
}

/// How [`TestEtcd::builder`] starts etcd.
#[derive(Debug, Clone, Default)]
pub struct TestEtcdOptions {
    tls: bool,
    auth_token_ttl: Option<u64>,
    fast_elections: bool,
}

impl TestEtcdOptions {
    /// Clients over TLS only (https), with a client certificate signed by the test CA.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// `--auth-token simple --auth-token-ttl <secs>`: a token unused for this long is
    /// forgotten (etcd's default is 300 s).
    pub fn auth_token_ttl(mut self, secs: u64) -> Self {
        self.auth_token_ttl = Some(secs);
        self
    }

    /// Heartbeats every 50 ms and elections after 250 ms: a lost quorum shows within a
    /// second or two.
    pub fn fast_elections(mut self) -> Self {
        self.fast_elections = true;
        self
    }

    pub fn start(self) -> TestEtcd {
        let mut etcd = TestEtcd::new("test", free_port(), free_port(), self);
        etcd.initial_cluster = format!("test={}", etcd.peer_url());
        etcd.spawn();
        etcd.wait_listening();
        etcd
    }
}

/// Certificates made for one test etcd: a CA, the server's (for 127.0.0.1), a client's, and
/// a second CA that signed none of them (for a client that trusts the wrong one).
pub struct TestTls {
    dir: PathBuf,
}

impl TestTls {
    fn make(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("tls dir");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl (install the openssl package)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for ca in ["ca", "other-ca"] {
            let (key, cert, subject) = (
                format!("{ca}-key.pem"),
                format!("{ca}.pem"),
                format!("/CN=fleetdns test {ca}"),
            );
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
            args.extend(ec);
            args.extend([
                "-keyout",
                &key,
                "-out",
                &cert,
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(&args);
        }
        for (who, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let ext = format!("{who}.ext");
            std::fs::write(
                dir.join(&ext),
                format!(
                    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                     extendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                ),
            )
            .expect("extensions file");
            let (key, csr, cert, subject) = (
                format!("{who}-key.pem"),
                format!("{who}.csr"),
                format!("{who}.pem"),
                format!("/CN={who}"),
            );
            let mut args = vec!["req", "-nodes"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
            openssl(&args);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &cert,
                "-extfile",
                &ext,
            ]);
        }
        Self {
            dir: dir.to_owned(),
        }
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(file)).expect("certificate file")
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The test CA and a client certificate it signed: what a client needs.
    pub fn client(&self) -> TlsPem {
        TlsPem {
            ca: Some(self.read("ca.pem")),
            identity: Some((self.read("client.pem"), self.read("client-key.pem"))),
        }
    }

    /// Trusts a CA that did not sign the server's certificate (with a valid client one).
    pub fn wrong_ca(&self) -> TlsPem {
        TlsPem {
            ca: Some(self.read("other-ca.pem")),
            ..self.client()
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl TestEtcd {
    /// Starts etcd and waits until it answers (bounded). Panics with a clear message when the
    /// `etcd` binary is missing (`apt-get install etcd-server`).
    pub fn start() -> Self {
        Self::builder().start()
    }

    pub fn builder() -> TestEtcdOptions {
        TestEtcdOptions::default()
    }

    /// `members` etcd processes forming one cluster (plain http, fast elections), started
    /// together; each waits until it listens.
    pub fn cluster(members: usize) -> Vec<TestEtcd> {
        let options = TestEtcdOptions::default().fast_elections();
        let mut all: Vec<TestEtcd> = (0..members)
            .map(|i| TestEtcd::new(&format!("m{i}"), free_port(), free_port(), options.clone()))
            .collect();
        let initial = all
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut all {
            m.initial_cluster.clone_from(&initial);
            m.spawn();
        }
        for m in &all {
            m.wait_listening();
        }
        all
    }

    fn new(name: &str, client_port: u16, peer_port: u16, options: TestEtcdOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = options.tls.then(|| TestTls::make(&dir.path().join("tls")));
        Self {
            child: None,
            client_port,
            peer_port,
            dir,
            name: name.to_owned(),
            initial_cluster: String::new(),
            options,
            tls,
        }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The certificates, when started with TLS.
    pub fn tls(&self) -> Option<&TestTls> {
        self.tls.as_ref()
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// What etcd logged (warnings and worse).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let peer = self.peer_url();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("etcd log");
        let mut command = Command::new("etcd");
        command
            .arg(format!("--name={}", self.name))
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={}", self.endpoint()))
            .arg(format!("--advertise-client-urls={}", self.endpoint()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--log-level=warn");
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.path("server.pem").display()))
                .arg(format!(
                    "--key-file={}",
                    tls.path("server-key.pem").display()
                ))
                .arg(format!(
                    "--trusted-ca-file={}",
                    tls.path("ca.pem").display()
                ))
                .arg("--client-cert-auth");
        }
        if let Some(ttl) = self.options.auth_token_ttl {
            command
                .arg("--auth-token=simple")
                .arg(format!("--auth-token-ttl={ttl}"));
        }
        if self.options.fast_elections {
            command
                .arg("--heartbeat-interval=50")
                .arg("--election-timeout=250");
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (install Debian's etcd-server)");
        self.child = Some(child);
    }

    fn wait_listening(&self) {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.client_port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "etcd did not start; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops etcd (SIGKILL: as abrupt as a crash); the data dir stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.wait_listening();
    }

    /// An etcd-client connected as `user` (none: no auth), with the client certificate
    /// when TLS is on.
    pub async fn client(&self, user: Option<(&str, &str)>) -> etcd_client::Client {
        let mut options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(5));
        if let Some(tls) = &self.tls {
            let pem = tls.client();
            let (cert, key) = pem.identity.expect("a client identity");
            options = options.with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(pem.ca.expect("a CA")))
                    .identity(etcd_client::Identity::from_pem(cert, key)),
            );
        }
        if let Some((user, password)) = user {
            options = options.with_user(user, password);
        }
        etcd_client::Client::connect([self.endpoint()], Some(options))
            .await
            .expect("connect to the test etcd")
    }

    /// Turns on password auth: `root` (password `root`) with the root role, and `user` with
    /// `password` and a role that may read and write everything under `prefix`.
    pub async fn enable_auth(&self, user: &str, password: &str, prefix: &str) {
        let mut c = self.client(None).await;
        c.role_add("root").await.expect("role add root");
        c.user_add("root", "root", None)
            .await
            .expect("user add root");
        c.user_grant_role("root", "root")
            .await
            .expect("grant root root");
        c.role_add("fleetdns").await.expect("role add");
        c.role_grant_permission(
            "fleetdns",
            etcd_client::Permission::read_write(prefix).with_prefix(),
        )
        .await
        .expect("grant permission");
        c.user_add(user, password, None).await.expect("user add");
        c.user_grant_role(user, "fleetdns")
            .await
            .expect("grant role");
        c.auth_enable().await.expect("auth enable");
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let Some(child) = &self.child else { return };
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {}", child.id());
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.stop();
    }
}
