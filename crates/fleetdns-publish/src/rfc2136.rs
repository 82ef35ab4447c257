//! The RFC 2136 provider: current records by AXFR, changes by UPDATE with prerequisites, both
//! signed with TSIG (RFC 8945) when a key is given (XDNS-16, XDNS-17).
//!
//! Wire work is hickory-proto's (already the workspace's DNS library): `Message` encoding and
//! decoding, `TSigner` for signing and `TSigVerifier` for checking every message of a
//! multi-message answer. Everything goes over TCP: AXFR needs it, and UPDATE batches of 50
//! changes outgrow 512-byte UDP.
//!
//! Safety rules:
//! - An AXFR that fails, stops before the closing SOA, or fails TSIG verification on any
//!   message is an error and nothing is changed (XDNS-17: never an empty zone).
//! - Every update and delete carries the record set as read, and the ownership TXT as read, as
//!   value-dependent prerequisites (RFC 2136 §2.4.2); every create requires that the record set
//!   does not exist (§2.4.3). A record someone changed meanwhile fails its batch (YXRRSET /
//!   NXRRSET) instead of being overwritten.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType as WireType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::model::{Endpoint, RecordType, in_zone};
use crate::plan::{OwnerRecord, Plan, ZoneRecords};
use crate::txt::{Labels, TxtNames};

/// TSIG time window, seconds (BIND's and ExternalDNS's default).
const FUDGE: u16 = 300;

#[derive(Debug, thiserror::Error)]
pub enum Rfc2136Error {
    #[error("TSIG: {0}")]
    Key(String),
    #[error("zone {0:?} is not a DNS name")]
    Zone(String),
    #[error("{server}: {what}: {error}")]
    Io {
        server: SocketAddr,
        what: &'static str,
        error: std::io::Error,
    },
    #[error("{server}: {what}: no answer within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        what: &'static str,
        timeout: Duration,
    },
    #[error("{server}: {what} refused: rcode {rcode}{}", tsig_error.as_ref().map(|e| format!(", TSIG error {e}")).unwrap_or_default())]
    Refused {
        server: SocketAddr,
        what: &'static str,
        rcode: String,
        tsig_error: Option<String>,
    },
    #[error("{server}: {what}: TSIG verification failed: {reason}")]
    Verify {
        server: SocketAddr,
        what: &'static str,
        reason: String,
    },
    #[error(
        "{server}: AXFR of {zone} ended before its closing SOA ({records} records read); nothing changed"
    )]
    Truncated {
        server: SocketAddr,
        zone: String,
        records: usize,
    },
    #[error("{server}: {what}: bad message: {reason}")]
    Malformed {
        server: SocketAddr,
        what: &'static str,
        reason: String,
    },
    #[error("cannot encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}

impl Rfc2136Error {
    /// A short kind for metrics: `connect`, `timeout`, `refused`, `tsig`, `axfr`, `malformed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Key(_) | Self::Zone(_) | Self::Encode { .. } => "config",
            Self::Io { .. } => "connect",
            Self::Timeout { .. } => "timeout",
            Self::Refused { .. } => "refused",
            Self::Verify { .. } => "tsig",
            Self::Truncated { .. } => "axfr",
            Self::Malformed { .. } => "malformed",
        }
    }
}

/// A TSIG key: name, algorithm and secret.
#[derive(Clone)]
pub struct TsigKey {
    signer: TSigner,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.signer.signer_name().to_ascii())
            .field("algorithm", self.signer.algorithm())
            .finish_non_exhaustive()
    }
}

impl TsigKey {
    /// `algorithm`: `hmac-sha256`, `hmac-sha384` or `hmac-sha512` (also `hmac-sha224`,
    /// `hmac-sha1`); `secret_base64`: the key as `tsig-keygen` prints it.
    pub fn new(name: &str, algorithm: &str, secret_base64: &str) -> Result<Self, Rfc2136Error> {
        let algorithm = match algorithm.to_ascii_lowercase().trim_end_matches('.') {
            "hmac-sha1" => TsigAlgorithm::HmacSha1,
            "hmac-sha224" => TsigAlgorithm::HmacSha224,
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => {
                return Err(Rfc2136Error::Key(format!(
                    "algorithm {other:?} is not one of hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512"
                )));
            }
        };
        let secret = data_encoding::BASE64
            .decode(secret_base64.trim().as_bytes())
            .map_err(|e| Rfc2136Error::Key(format!("secret is not base64: {e}")))?;
        if secret.is_empty() {
            return Err(Rfc2136Error::Key("secret is empty".into()));
        }
        let name = Name::from_ascii(name)
            .map_err(|e| Rfc2136Error::Key(format!("key name {name:?}: {e}")))?;
        let signer = TSigner::new(secret, algorithm, name, FUDGE)
            .map_err(|e| Rfc2136Error::Key(e.to_string()))?;
        Ok(Self { signer })
    }
}

/// One primary that takes UPDATE and AXFR for one zone.
#[derive(Debug, Clone)]
pub struct Rfc2136 {
    server: SocketAddr,
    zone: String,
    origin: Name,
    key: Option<TsigKey>,
    timeout: Duration,
    batch_size: usize,
}

/// What an apply did: changes applied, UPDATE messages sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub creates: usize,
    pub updates: usize,
    pub deletes: usize,
    pub messages: usize,
}

/// Partial success: what was applied before a batch failed, and why it failed.
#[derive(Debug, thiserror::Error)]
#[error("{error} (applied before the failure: {} creates, {} updates, {} deletes)", applied.creates, applied.updates, applied.deletes)]
pub struct ApplyError {
    pub applied: Applied,
    #[source]
    pub error: Rfc2136Error,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn fqdn(name: &str) -> Result<Name, Rfc2136Error> {
    Name::from_ascii(format!("{name}.")).map_err(|e| Rfc2136Error::Encode {
        what: "name",
        reason: format!("{name:?}: {e}"),
    })
}

fn plain(name: &Name) -> String {
    let s = name.to_ascii().to_ascii_lowercase();
    s.strip_suffix('.').map(str::to_owned).unwrap_or(s)
}

/// One change's records in a batch.
#[derive(Default)]
struct Batch {
    prerequisites: Vec<Record>,
    updates: Vec<Record>,
}

impl Rfc2136 {
    /// `batch_size`: changes per UPDATE message (XDNS-16, default 50); `timeout`: per exchange
    /// (and per AXFR message).
    pub fn new(
        server: SocketAddr,
        zone: &str,
        key: Option<TsigKey>,
        timeout: Duration,
        batch_size: usize,
    ) -> Result<Self, Rfc2136Error> {
        let zone =
            crate::model::normalize_name(zone).ok_or_else(|| Rfc2136Error::Zone(zone.into()))?;
        let origin = fqdn(&zone)?;
        Ok(Self {
            server,
            zone,
            origin,
            key,
            timeout,
            batch_size: batch_size.max(1),
        })
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    async fn connect(&self, what: &'static str) -> Result<TcpStream, Rfc2136Error> {
        match tokio::time::timeout(self.timeout, TcpStream::connect(self.server)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(error)) => Err(Rfc2136Error::Io {
                server: self.server,
                what,
                error,
            }),
            Err(_) => Err(self.timed_out(what)),
        }
    }

    fn timed_out(&self, what: &'static str) -> Rfc2136Error {
        Rfc2136Error::Timeout {
            server: self.server,
            what,
            timeout: self.timeout,
        }
    }

    fn io(&self, what: &'static str) -> impl Fn(std::io::Error) -> Rfc2136Error + '_ {
        move |error| Rfc2136Error::Io {
            server: self.server,
            what,
            error,
        }
    }

    async fn send(
        &self,
        stream: &mut TcpStream,
        bytes: &[u8],
        what: &'static str,
    ) -> Result<(), Rfc2136Error> {
        let len = u16::try_from(bytes.len()).map_err(|_| Rfc2136Error::Encode {
            what,
            reason: format!("message of {} bytes is too long", bytes.len()),
        })?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(bytes);
        match tokio::time::timeout(self.timeout, stream.write_all(&framed)).await {
            Ok(r) => r.map_err(self.io(what)),
            Err(_) => Err(self.timed_out(what)),
        }
    }

    /// One length-prefixed message; `None` when the server closed the connection cleanly.
    async fn receive(
        &self,
        stream: &mut TcpStream,
        what: &'static str,
    ) -> Result<Option<Vec<u8>>, Rfc2136Error> {
        let read = async {
            let mut len = [0u8; 2];
            match stream.read_exact(&mut len).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            stream.read_exact(&mut buf).await?;
            Ok(Some(buf))
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(r) => r.map_err(self.io(what)),
            Err(_) => Err(self.timed_out(what)),
        }
    }

    /// Signs `message` when a key is set; returns its bytes and the verifier of the answers.
    fn seal(
        &self,
        message: &mut Message,
        what: &'static str,
    ) -> Result<(Vec<u8>, Option<hickory_proto::rr::TSigVerifier>), Rfc2136Error> {
        let verifier = match &self.key {
            Some(key) => {
                message
                    .finalize(&key.signer, now())
                    .map_err(|e| Rfc2136Error::Encode {
                        what,
                        reason: e.to_string(),
                    })?
            }
            None => None,
        };
        let bytes = message.to_vec().map_err(|e| Rfc2136Error::Encode {
            what,
            reason: e.to_string(),
        })?;
        Ok((bytes, verifier))
    }

    /// Parses an answer, turns an error rcode into [`Rfc2136Error::Refused`] (with the TSIG
    /// error), and checks its TSIG.
    fn check_answer(
        &self,
        bytes: &[u8],
        id: u16,
        verifier: &mut Option<hickory_proto::rr::TSigVerifier>,
        what: &'static str,
    ) -> Result<Message, Rfc2136Error> {
        let message = Message::from_vec(bytes).map_err(|e| Rfc2136Error::Malformed {
            server: self.server,
            what,
            reason: e.to_string(),
        })?;
        if message.metadata.id != id || message.metadata.message_type != MessageType::Response {
            return Err(Rfc2136Error::Malformed {
                server: self.server,
                what,
                reason: format!(
                    "answer id {} does not match query id {id}",
                    message.metadata.id
                ),
            });
        }
        let tsig_error = message
            .signature()
            .and_then(|s| s.data.error.as_ref())
            .map(|e| format!("{e:?}").to_ascii_uppercase());
        if message.metadata.response_code != ResponseCode::NoError || tsig_error.is_some() {
            return Err(Rfc2136Error::Refused {
                server: self.server,
                what,
                rcode: rcode_name(message.metadata.response_code),
                tsig_error,
            });
        }
        if let Some(v) = verifier {
            v.verify(bytes).map_err(|e| Rfc2136Error::Verify {
                server: self.server,
                what,
                reason: e.to_string(),
            })?;
        }
        Ok(message)
    }

    /// The zone's current A, AAAA, CNAME and TXT records, by AXFR. Anything short of a complete,
    /// verified transfer is an error (XDNS-17).
    pub async fn read(&self) -> Result<ZoneRecords, Rfc2136Error> {
        const WHAT: &str = "AXFR";
        let mut query = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        let mut q = Query::query(self.origin.clone(), WireType::AXFR);
        q.set_query_class(DNSClass::IN);
        query.queries.push(q);
        let id = query.metadata.id;
        let (bytes, mut verifier) = self.seal(&mut query, WHAT)?;
        let mut stream = self.connect(WHAT).await?;
        self.send(&mut stream, &bytes, WHAT).await?;
        let mut zone = ZoneRecords::default();
        let mut soas = 0usize;
        let mut records = 0usize;
        loop {
            let Some(bytes) = self.receive(&mut stream, WHAT).await? else {
                return Err(Rfc2136Error::Truncated {
                    server: self.server,
                    zone: self.zone.clone(),
                    records,
                });
            };
            let message = self.check_answer(&bytes, id, &mut verifier, WHAT)?;
            for record in &message.answers {
                records += 1;
                if record.record_type() == WireType::SOA {
                    soas += 1;
                    if soas == 2 {
                        return Ok(zone);
                    }
                    continue;
                }
                if soas == 0 {
                    return Err(Rfc2136Error::Malformed {
                        server: self.server,
                        what: WHAT,
                        reason: "the transfer does not start with the zone's SOA".into(),
                    });
                }
                let name = plain(&record.name);
                if !in_zone(&name, &self.zone) {
                    continue;
                }
                let (t, value) = match &record.data {
                    RData::A(a) => (RecordType::A, a.0.to_string()),
                    RData::AAAA(a) => (RecordType::Aaaa, a.0.to_string()),
                    RData::CNAME(c) => (RecordType::Cname, plain(&c.0)),
                    RData::TXT(t) => (
                        RecordType::Txt,
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<String>(),
                    ),
                    _ => continue,
                };
                zone.insert(name, t, record.ttl, value);
            }
        }
    }

    fn rdata(t: RecordType, value: &str) -> Result<RData, Rfc2136Error> {
        let bad = |reason: String| Rfc2136Error::Encode {
            what: "record",
            reason,
        };
        Ok(match t {
            RecordType::A => RData::A(A(value
                .parse()
                .map_err(|_| bad(format!("{value:?} is not IPv4")))?)),
            RecordType::Aaaa => RData::AAAA(AAAA(
                value
                    .parse()
                    .map_err(|_| bad(format!("{value:?} is not IPv6")))?,
            )),
            RecordType::Cname => RData::CNAME(CNAME(fqdn(value)?)),
            RecordType::Txt => RData::TXT(TXT::new(vec![value.to_owned()])),
        })
    }

    fn records(
        name: &str,
        t: RecordType,
        ttl: u32,
        values: &BTreeSet<String>,
        class: DNSClass,
    ) -> Result<Vec<Record>, Rfc2136Error> {
        let owner = fqdn(name)?;
        values
            .iter()
            .map(|v| {
                let mut r = Record::from_rdata(owner.clone(), ttl, Self::rdata(t, v)?);
                r.dns_class = class;
                Ok(r)
            })
            .collect()
    }

    fn wire_type(t: RecordType) -> WireType {
        match t {
            RecordType::A => WireType::A,
            RecordType::Aaaa => WireType::AAAA,
            RecordType::Cname => WireType::CNAME,
            RecordType::Txt => WireType::TXT,
        }
    }

    /// RFC 2136 §2.4.3 "RRset does not exist".
    fn absent(name: &str, t: RecordType) -> Result<Record, Rfc2136Error> {
        let mut r = Record::update0(fqdn(name)?, 0, Self::wire_type(t));
        r.dns_class = DNSClass::NONE;
        Ok(r)
    }

    /// RFC 2136 §2.5.2 "delete an RRset".
    fn delete_set(name: &str, t: RecordType) -> Result<Record, Rfc2136Error> {
        let mut r = Record::update0(fqdn(name)?, 0, Self::wire_type(t));
        r.dns_class = DNSClass::ANY;
        Ok(r)
    }

    /// §2.4.2 "RRset exists (value dependent)": the set exactly as read.
    fn exactly(
        name: &str,
        t: RecordType,
        values: &BTreeSet<String>,
    ) -> Result<Vec<Record>, Rfc2136Error> {
        Self::records(name, t, 0, values, DNSClass::IN)
    }

    fn owner_prerequisites(batch: &mut Batch, owners: &[OwnerRecord]) -> Result<(), Rfc2136Error> {
        let mut seen = BTreeSet::new();
        for o in owners {
            if seen.insert(o.name.clone()) {
                batch
                    .prerequisites
                    .extend(Self::exactly(&o.name, RecordType::Txt, &o.rrset)?);
            }
        }
        Ok(())
    }

    fn ownership_record(
        ep: &Endpoint,
        owner_id: &str,
        names: &TxtNames,
        ttl: u32,
    ) -> Result<Record, Rfc2136Error> {
        let value = Labels {
            owner: owner_id.to_owned(),
            resource: ep.resource.clone(),
        }
        .value();
        let mut r = Record::from_rdata(
            fqdn(&names.new_format(&ep.name, ep.record_type))?,
            ttl,
            Self::rdata(RecordType::Txt, &value)?,
        );
        r.dns_class = DNSClass::IN;
        Ok(r)
    }

    /// Applies `plan` in batches of `batch_size` changes, each an UPDATE message whose
    /// prerequisites make it fail rather than overwrite what someone else changed. Stops at the
    /// first failing batch.
    pub async fn apply(
        &self,
        plan: &Plan,
        owner_id: &str,
        names: &TxtNames,
    ) -> Result<Applied, ApplyError> {
        let mut changes: Vec<(Batch, u8)> = Vec::new();
        let built = (|| -> Result<(), Rfc2136Error> {
            for ep in &plan.creates {
                let ttl = ep.ttl.unwrap_or(0);
                let mut b = Batch::default();
                b.prerequisites
                    .push(Self::absent(&ep.name, ep.record_type)?);
                b.updates.extend(Self::records(
                    &ep.name,
                    ep.record_type,
                    ttl,
                    &ep.targets,
                    DNSClass::IN,
                )?);
                b.updates
                    .push(Self::ownership_record(ep, owner_id, names, ttl)?);
                changes.push((b, 0));
            }
            for u in &plan.updates {
                let ttl = u.new.ttl.unwrap_or(0);
                let old = &u.old.current;
                let mut b = Batch::default();
                b.prerequisites
                    .extend(Self::exactly(&old.name, old.record_type, &old.targets)?);
                Self::owner_prerequisites(&mut b, &u.old.owner_records)?;
                b.updates
                    .push(Self::delete_set(&old.name, old.record_type)?);
                b.updates.extend(Self::records(
                    &u.new.name,
                    u.new.record_type,
                    ttl,
                    &u.new.targets,
                    DNSClass::IN,
                )?);
                let new_owner = Self::ownership_record(&u.new, owner_id, names, ttl)?;
                // Our old ownership values go (old format, or a changed resource), the new one
                // is written.
                for o in &u.old.owner_records {
                    let mut del = Record::from_rdata(
                        fqdn(&o.name)?,
                        0,
                        Self::rdata(RecordType::Txt, &o.value)?,
                    );
                    del.dns_class = DNSClass::NONE;
                    if !(del.name == new_owner.name && del.data == new_owner.data) {
                        b.updates.push(del);
                    }
                }
                b.updates.push(new_owner);
                changes.push((b, 1));
            }
            for d in &plan.deletes {
                let cur = &d.current;
                let mut b = Batch::default();
                b.prerequisites
                    .extend(Self::exactly(&cur.name, cur.record_type, &cur.targets)?);
                Self::owner_prerequisites(&mut b, &d.owner_records)?;
                b.updates
                    .push(Self::delete_set(&cur.name, cur.record_type)?);
                for o in &d.owner_records {
                    let mut del = Record::from_rdata(
                        fqdn(&o.name)?,
                        0,
                        Self::rdata(RecordType::Txt, &o.value)?,
                    );
                    del.dns_class = DNSClass::NONE;
                    b.updates.push(del);
                }
                changes.push((b, 2));
            }
            Ok(())
        })();
        let mut applied = Applied::default();
        if let Err(error) = built {
            return Err(ApplyError { applied, error });
        }
        for chunk in changes.chunks(self.batch_size) {
            let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Update);
            let mut zone = Query::query(self.origin.clone(), WireType::SOA);
            zone.set_query_class(DNSClass::IN);
            message.queries.push(zone);
            for (b, _) in chunk {
                message.answers.extend(b.prerequisites.iter().cloned());
                message.authorities.extend(b.updates.iter().cloned());
            }
            if let Err(error) = self.update(message).await {
                return Err(ApplyError { applied, error });
            }
            applied.messages += 1;
            for (_, kind) in chunk {
                match kind {
                    0 => applied.creates += 1,
                    1 => applied.updates += 1,
                    _ => applied.deletes += 1,
                }
            }
        }
        Ok(applied)
    }

    async fn update(&self, mut message: Message) -> Result<(), Rfc2136Error> {
        const WHAT: &str = "UPDATE";
        let id = message.metadata.id;
        let (bytes, mut verifier) = self.seal(&mut message, WHAT)?;
        let mut stream = self.connect(WHAT).await?;
        self.send(&mut stream, &bytes, WHAT).await?;
        let Some(answer) = self.receive(&mut stream, WHAT).await? else {
            return Err(Rfc2136Error::Malformed {
                server: self.server,
                what: WHAT,
                reason: "connection closed without an answer".into(),
            });
        };
        self.check_answer(&answer, id, &mut verifier, WHAT)?;
        Ok(())
    }
}

/// The rcode's mnemonic (RFC 2136 §2.2, RFC 8945 §4.3), as dig and nsupdate print it.
fn rcode_name(rcode: ResponseCode) -> String {
    let code = u16::from(rcode);
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        other => format!("RCODE{other}"),
    }
}

fn rand_id() -> u16 {
    // hickory's own query ids come from `rand`; a random id is all TCP needs here.
    Message::query().metadata.id
}
