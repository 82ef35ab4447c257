//! Why an answer is what it is. Given the state a server answers from (snapshot, merged
//! services, zones, answer table, forward zones) and a small history of the fleet, explains one
//! question: the exact response the responder gives (it is run, not re-derived), the zone and
//! rules that matched, the candidate clusters and why each was kept or dropped, the answer
//! policy's choice, and for a negative answer what is missing and since when.
//!
//! Pure: no I/O, no clock (the caller passes `now` to [`FleetHistory::observe`]). The policy
//! decision comes from [`crate::policy::choose`], the same function the compiler uses.
//! A zone kind this module does not know explains itself generically (zone, rcode, records).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use fleetdns_core::{ClusterId, Export, FleetSnapshot, MergedService, ServiceKey, ServiceType};
use fleetdns_core::{ConflictKind, Merged, Timestamp};
use serde::Serialize;

use crate::catalog::Catalog;
use crate::config::{AnswerPolicy, ZonesConfig};
use crate::dispatch::{self, Handled};
use crate::forward::{ForwardZoneView, Forwarder};
use crate::policy::{self, Basis};
use crate::request::{Outcome, Transport};
use crate::table::{AnswerTable, Lookup, Selection};
use crate::wire::{HEADER_LEN, NameError, display_name, encode_name, rcode, rtype};

/// How many departed exports and clusters the history remembers (oldest forgotten first).
pub const HISTORY_LIMIT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("name {name:?}: {source}")]
    Name { name: String, source: NameError },
    #[error(
        "unknown record type {0:?} (use A, AAAA, SRV, TXT, SOA, NS, PTR, CNAME, ANY or TYPEnnn)"
    )]
    Type(String),
}

/// A record type by name (`A`, `aaaa`, `TYPE65`).
pub fn parse_qtype(s: &str) -> Result<u16, ExplainError> {
    let up = s.to_ascii_uppercase();
    Ok(match up.as_str() {
        "A" => rtype::A,
        "AAAA" => rtype::AAAA,
        "SRV" => rtype::SRV,
        "TXT" => rtype::TXT,
        "SOA" => rtype::SOA,
        "NS" => rtype::NS,
        "PTR" => rtype::PTR,
        "CNAME" => 5,
        "ANY" => rtype::ANY,
        _ => up
            .strip_prefix("TYPE")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ExplainError::Type(s.to_owned()))?,
    })
}

/// The name of a record type (`TYPEnnn` for the ones without a mnemonic here).
pub fn qtype_name(t: u16) -> String {
    match t {
        rtype::A => "A".into(),
        rtype::AAAA => "AAAA".into(),
        rtype::SRV => "SRV".into(),
        rtype::TXT => "TXT".into(),
        rtype::SOA => "SOA".into(),
        rtype::NS => "NS".into(),
        rtype::PTR => "PTR".into(),
        rtype::OPT => "OPT".into(),
        rtype::ANY => "ANY".into(),
        5 => "CNAME".into(),
        _ => format!("TYPE{t}"),
    }
}

// ---------------------------------------------------------------------------------------------
// History

/// Why an export is no longer in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GoneWhy {
    /// The cluster is still in the registry but stopped exporting the service.
    Unexported,
    /// The cluster left the registry (etcd: its agent's lease expired, or it withdrew).
    ClusterLeft,
}

/// One export that disappeared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoneExport {
    pub service: ServiceKey,
    pub cluster: ClusterId,
    /// The last snapshot time it was seen.
    pub until: Timestamp,
    pub why: GoneWhy,
    /// Whether the cluster was already dead (missed its liveness timeout) when it went.
    pub was_dead: bool,
}

/// One cluster that left the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLeft {
    pub cluster: ClusterId,
    pub at: Timestamp,
    pub last_published: Timestamp,
    pub was_dead: bool,
}

/// What the fleet looked like before: kept by `serve` as snapshots arrive, bounded in size.
#[derive(Debug, Default)]
pub struct FleetHistory {
    prev: Option<Arc<FleetSnapshot>>,
    /// When each cluster still in the registry was first seen dead.
    dead_since: BTreeMap<ClusterId, Timestamp>,
    left: VecDeque<ClusterLeft>,
    gone: VecDeque<GoneExport>,
}

impl FleetHistory {
    /// Records what changed between the last snapshot seen and `snapshot`, at `now`.
    pub fn observe(&mut self, snapshot: &Arc<FleetSnapshot>, now: Timestamp) {
        self.observe_changes(snapshot, now, None);
    }

    /// [`FleetHistory::observe`], told which exports differ from the snapshot of version `.0`
    /// (the compiler's [`crate::compile::incremental::Compiled::exports_changed`]): when that is the last
    /// snapshot seen, a cluster's changed exports are looked up instead of its whole export
    /// set walked. Returns the last snapshot seen, for the caller to drop when it suits it.
    pub fn observe_changes(
        &mut self,
        snapshot: &Arc<FleetSnapshot>,
        now: Timestamp,
        changed: Option<&(u64, BTreeSet<(ClusterId, ServiceKey)>)>,
    ) -> Option<Arc<FleetSnapshot>> {
        for (id, view) in &snapshot.clusters {
            if view.alive {
                self.dead_since.remove(id);
            } else {
                self.dead_since.entry(id.clone()).or_insert(now);
            }
        }
        let prev = self.prev.take();
        if let Some(prev) = &prev {
            let changed = changed
                .filter(|(version, _)| *version == prev.version)
                .map(|(_, set)| set);
            for (id, old) in &prev.clusters {
                match snapshot.clusters.get(id) {
                    None => {
                        self.push_left(ClusterLeft {
                            cluster: id.clone(),
                            at: now,
                            last_published: old.published,
                            was_dead: !old.alive,
                        });
                        for key in old.exports.keys() {
                            self.push_gone(GoneExport {
                                service: key.clone(),
                                cluster: id.clone(),
                                until: now,
                                why: GoneWhy::ClusterLeft,
                                was_dead: !old.alive,
                            });
                        }
                    }
                    Some(new) if !Arc::ptr_eq(&new.exports, &old.exports) => {
                        let gone: Vec<&ServiceKey> = match changed {
                            Some(set) => set
                                .iter()
                                .filter(|(c, key)| {
                                    c == id
                                        && old.exports.contains_key(key)
                                        && !new.exports.contains_key(key)
                                })
                                .map(|(_, key)| key)
                                .collect(),
                            None => only_in(&old.exports, &new.exports),
                        };
                        for key in gone {
                            self.push_gone(GoneExport {
                                service: key.clone(),
                                cluster: id.clone(),
                                until: now,
                                why: GoneWhy::Unexported,
                                was_dead: !old.alive,
                            });
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        self.dead_since
            .retain(|id, _| snapshot.clusters.contains_key(id));
        self.prev = Some(snapshot.clone());
        prev
    }

    fn push_left(&mut self, left: ClusterLeft) {
        if self.left.len() >= HISTORY_LIMIT {
            self.left.pop_front();
        }
        self.left.push_back(left);
    }

    fn push_gone(&mut self, gone: GoneExport) {
        if self.gone.len() >= HISTORY_LIMIT {
            self.gone.pop_front();
        }
        self.gone.push_back(gone);
    }

    /// When `cluster` (still in the registry) was first seen dead.
    pub fn dead_since(&self, cluster: &ClusterId) -> Option<Timestamp> {
        self.dead_since.get(cluster).copied()
    }

    /// The clusters that left the registry, newest first.
    pub fn departed(&self) -> impl Iterator<Item = &ClusterLeft> {
        self.left.iter().rev()
    }

    /// The latest departure of each cluster that exported `service`, newest first.
    pub fn last_seen(&self, service: &ServiceKey) -> Vec<&GoneExport> {
        let mut seen = BTreeSet::new();
        self.gone
            .iter()
            .rev()
            .filter(|g| &g.service == service)
            .filter(|g| seen.insert(g.cluster.clone()))
            .collect()
    }

    /// Bounded sizes, for tests: (departed clusters, departed exports).
    pub fn len(&self) -> (usize, usize) {
        (self.left.len(), self.gone.len())
    }

    pub fn is_empty(&self) -> bool {
        self.left.is_empty() && self.gone.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// The explanation

/// What the explanation reads: the state the server answers from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// `None` before the first registry snapshot.
    pub snapshot: Option<&'a FleetSnapshot>,
    /// `fleetdns_core::merge_fleet(snapshot)`.
    pub merged: &'a Merged,
    pub zones: &'a ZonesConfig,
    /// The installed answer table (`None` before the first).
    pub table: Option<&'a AnswerTable>,
    pub forwarder: Option<&'a Forwarder>,
    pub history: &'a FleetHistory,
}

/// One resource record of the response, in presentation form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    #[serde(rename = "type")]
    pub rtype: String,
    pub data: String,
}

/// The response the server gives to the question (over TCP, so never truncated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseView {
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, ... or `FORWARDED` (sent upstream).
    pub rcode: String,
    /// `answer`, `nodata`, `nxdomain`, `refused`, `servfail`, `forward`, ...
    pub outcome: String,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
}

/// One step of the decision, with the rule it applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// A rule ID of docs/dns-behaviour (`MCS-12`, `K8S-21`, ...) or a SPEC section (`SPEC-3`).
    pub rule: String,
    pub text: String,
}

/// Why a cluster exporting the service was kept in the answer or dropped from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// In the answer.
    Kept,
    /// Not alive in the registry (missed its liveness timeout).
    Dead,
    /// Alive, but no ready endpoint while another cluster has one.
    NoReadyEndpoint,
    /// Its export's type conflicts with the oldest export's (MCS-22).
    TypeConflict,
    /// Ready, but `local-first` chose the local cluster.
    NotLocal,
    /// `policy = "vip"`: the service's VIP is answered instead of any ClusterIP.
    BehindVip,
    /// Exported it before; no longer does, or left the registry (from the history).
    Gone,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub cluster: String,
    pub verdict: Verdict,
    pub kept: bool,
    pub rule: String,
    pub detail: String,
}

/// The answer policy and what it chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyView {
    pub policy: String,
    pub local_cluster: Option<String>,
    /// `vip`, `local-ready`, `ready`, `none-ready`.
    pub basis: String,
    pub chosen: Vec<String>,
    /// `fixed`, `rotate` (all, rotated per query), `one` (one per answer).
    pub selection: String,
    pub detail: String,
}

/// Why a negative answer is negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// No registry snapshot yet: authoritative names answer SERVFAIL.
    NotLoaded,
    /// The name is in no zone fleetdns serves or forwards: REFUSED.
    NotOurs,
    /// The name is in the per-cluster zone of a cluster that left the registry: REFUSED.
    ClusterLeft,
    /// No cluster exports the service (now).
    NotExported,
    /// Every cluster exporting it is dead.
    AllExportersDead,
    /// A headless service with no ready endpoint in a healthy cluster (MCS-14, K8S-14).
    NoReadyEndpoint,
    /// The name exists, without records of this type (K8S-21).
    NoSuchType,
    /// `<cluster>.<svc>.<ns>.svc.clusterset.local` does not exist (MCS-18).
    ClusterScopedName,
    /// A name under the service that does not exist (no such port or endpoint).
    NoSuchName,
    /// Not of a form the zone serves.
    NotAName,
    /// The forward zone's upstreams answer; none of them is healthy.
    UpstreamsDown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub cause: Cause,
    pub rule: String,
    pub text: String,
    /// The cluster the fact is about, when there is one.
    pub cluster: Option<String>,
    /// Since when (RFC 3339), when known.
    pub since: Option<String>,
}

/// Which zone the name fell in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneMatch {
    pub name: String,
    /// `clusterset`, `cluster` (a per-cluster zone), `mesh` (SPEC §2.3), `forward`, or `other` (a zone kind this
    /// explanation has no detail for: explained by zone, rcode and records).
    pub kind: String,
    /// For a per-cluster zone: its cluster.
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub name: String,
    pub qtype: String,
    pub response: ResponseView,
    pub zone: Option<ZoneMatch>,
    pub service: Option<String>,
    pub service_type: Option<String>,
    pub rules: Vec<Step>,
    pub candidates: Vec<Candidate>,
    pub policy: Option<PolicyView>,
    pub missing: Vec<Missing>,
    pub conflicts: Vec<String>,
    pub forward: Option<ForwardZoneView>,
    pub snapshot_version: Option<u64>,
    /// The authoritative zone the responder answered in (dotted), as `Metrics::record` would
    /// count it: a debug query counts in its zone like any query (docs/debug-api.md).
    #[serde(skip)]
    pub counted_zone: Option<String>,
}

impl Explanation {
    fn step(&mut self, rule: &str, text: impl Into<String>) {
        self.rules.push(Step {
            rule: rule.into(),
            text: text.into(),
        });
    }

    fn missing(
        &mut self,
        cause: Cause,
        rule: &str,
        text: impl Into<String>,
        cluster: Option<&ClusterId>,
        since: Option<Timestamp>,
    ) {
        self.missing.push(Missing {
            cause,
            rule: rule.into(),
            text: text.into(),
            cluster: cluster.map(ToString::to_string),
            since: since.map(|t| t.to_string()),
        });
    }

    fn negative(&self) -> bool {
        self.response.outcome != "answer" && self.response.outcome != "forward"
    }
}

/// Explains the answer to `name` `qtype`.
pub fn explain(inputs: &Inputs<'_>, name: &str, qtype: u16) -> Result<Explanation, ExplainError> {
    let lower = name.trim().to_ascii_lowercase();
    let wire = encode_name(&lower).map_err(|source| ExplainError::Name {
        name: name.to_owned(),
        source,
    })?;
    let (response, forwarded, counted_zone) = run_responder(inputs, &wire, qtype);
    let mut x = Explanation {
        name: display_name(&wire),
        qtype: qtype_name(qtype),
        response,
        zone: None,
        service: None,
        service_type: None,
        rules: Vec::new(),
        candidates: Vec::new(),
        policy: None,
        missing: Vec::new(),
        conflicts: Vec::new(),
        forward: None,
        snapshot_version: inputs.snapshot.map(|s| s.version),
        counted_zone,
    };
    if let Some(index) = forwarded {
        explain_forward(inputs, &mut x, index);
        return Ok(x);
    }
    let zone_apex = inputs.table.and_then(|t| match t.lookup(&wire) {
        Lookup::Node(_, z) | Lookup::NxDomain(z) => Some(display_name(&z.apex)),
        Lookup::NotOurs => None,
    });
    let Some(table) = inputs.table else {
        x.step(
            "SPEC-2",
            "no answer table yet: until the first registry snapshot is loaded, authoritative zones answer SERVFAIL, never NXDOMAIN",
        );
        x.missing(
            Cause::NotLoaded,
            "SPEC-2",
            "the registry has not delivered its first snapshot",
            None,
            None,
        );
        return Ok(x);
    };
    let _ = table;
    let Some(apex) = zone_apex else {
        x.step(
            "SPEC-2.5",
            "the name is in no zone fleetdns serves or forwards: REFUSED (fleetdns is never an open resolver)",
        );
        let departed = inputs.history.departed().find(|d| {
            let zone = format!(
                ".{}.",
                inputs
                    .zones
                    .cluster_zone_name(d.cluster.as_str())
                    .trim_end_matches('.')
            );
            format!(".{}", x.name).ends_with(&zone)
                && inputs
                    .snapshot
                    .is_none_or(|s| !s.clusters.contains_key(&d.cluster))
        });
        match departed {
            Some(d) => {
                let text = format!(
                    "{} is in the per-cluster zone of {}, which is no longer served: {} left the registry at {} ({}; last publish {})",
                    x.name,
                    d.cluster,
                    d.cluster,
                    d.at,
                    if d.was_dead {
                        "it had missed its liveness timeout, then its agent's lease expired"
                    } else {
                        "its agent's lease expired or its source withdrew it"
                    },
                    d.last_published
                );
                x.missing(
                    Cause::ClusterLeft,
                    "MCS-10",
                    text,
                    Some(&d.cluster),
                    Some(d.at),
                );
            }
            None => x.missing(
                Cause::NotOurs,
                "SPEC-2.5",
                format!("{} is outside every served and forward zone", x.name),
                None,
                None,
            ),
        }
        return Ok(x);
    };
    let labels: Vec<&str> = x
        .name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .collect();
    let apex_labels = apex
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .count();
    let rel: Vec<String> = labels[..labels.len().saturating_sub(apex_labels)]
        .iter()
        .map(ToString::to_string)
        .collect();
    let fqdn = |n: &str| format!("{}.", n.trim_end_matches('.').to_ascii_lowercase());
    if apex == fqdn(&inputs.zones.clusterset.name) {
        x.zone = Some(ZoneMatch {
            name: apex.clone(),
            kind: "clusterset".into(),
            cluster: None,
        });
        explain_clusterset(inputs, &mut x, &rel, qtype);
    } else if let Some(cluster) = inputs.snapshot.and_then(|s| {
        s.clusters
            .keys()
            .find(|c| fqdn(&inputs.zones.cluster_zone_name(c.as_str())) == apex)
    }) {
        x.zone = Some(ZoneMatch {
            name: apex.clone(),
            kind: "cluster".into(),
            cluster: Some(cluster.to_string()),
        });
        explain_cluster_zone(inputs, &mut x, cluster, &rel, qtype);
    } else if let Some(steps) = inputs
        .snapshot
        .filter(|_| inputs.zones.mesh.enabled)
        .and_then(|s| crate::mesh::explain_name(s, inputs.zones, &x.name))
    {
        x.zone = Some(ZoneMatch {
            name: apex.clone(),
            kind: "mesh".into(),
            cluster: None,
        });
        for (rule, text) in steps {
            x.step(rule, text);
        }
    } else {
        x.zone = Some(ZoneMatch {
            name: apex.clone(),
            kind: "other".into(),
            cluster: None,
        });
        x.step(
            "SPEC-2",
            format!(
                "{apex} is served by fleetdns from the answer table; this explanation has no detail for its zone kind yet: the response above is what the table holds"
            ),
        );
    }
    if x.negative() && x.missing.is_empty() {
        negative_fallback(&mut x, qtype);
    }
    Ok(x)
}

/// Runs the responder on a query for the name, as a client on TCP would send it.
/// Returns the response, the forward zone that takes the question, and the authoritative zone
/// that answered it (dotted).
fn run_responder(
    inputs: &Inputs<'_>,
    wire: &[u8],
    qtype: u16,
) -> (ResponseView, Option<usize>, Option<String>) {
    let mut packet = vec![0x4d, 0x51, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(wire);
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    let mut out = Vec::new();
    let catalog = Catalog {
        table: inputs.table,
        forwarder: inputs.forwarder,
    };
    let (outcome, counted_zone) =
        match dispatch::handle(catalog, || true, None, &packet, Transport::Tcp, &mut out) {
            Handled::Answered { outcome, counted } => (outcome, counted.zone.map(display_name)),
            Handled::Forward { zone, .. } => (Outcome::Forward(zone), None),
        };
    let outcome_name = match outcome {
        Outcome::Answer => "answer",
        Outcome::NoData => "nodata",
        Outcome::NxDomain => "nxdomain",
        Outcome::Refused => "refused",
        Outcome::ServFail => "servfail",
        Outcome::FormErr => "formerr",
        Outcome::NotImp => "notimp",
        Outcome::Dropped => "dropped",
        Outcome::Forward(_) => "forward",
    };
    if let Outcome::Forward(index) = outcome {
        let view = ResponseView {
            rcode: "FORWARDED".into(),
            outcome: outcome_name.into(),
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
        };
        return (view, Some(index), None);
    }
    let mut view = decode_response(&out).unwrap_or(ResponseView {
        rcode: "NONE".into(),
        outcome: String::new(),
        authoritative: false,
        answers: Vec::new(),
        authority: Vec::new(),
    });
    view.outcome = outcome_name.into();
    (view, None, counted_zone)
}

fn rcode_name(code: u8) -> &'static str {
    match code {
        rcode::NOERROR => "NOERROR",
        rcode::FORMERR => "FORMERR",
        rcode::SERVFAIL => "SERVFAIL",
        rcode::NXDOMAIN => "NXDOMAIN",
        rcode::NOTIMP => "NOTIMP",
        rcode::REFUSED => "REFUSED",
        _ => "OTHER",
    }
}

/// Reads a response the responder wrote (answer and authority sections).
pub fn decode_response(msg: &[u8]) -> Option<ResponseView> {
    if msg.len() < HEADER_LEN {
        return None;
    }
    let count = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]) as usize;
    let (qd, an, ns) = (count(4), count(6), count(8));
    let mut pos = HEADER_LEN;
    for _ in 0..qd {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut sections = [Vec::new(), Vec::new()];
    for (i, n) in [an, ns].into_iter().enumerate() {
        for _ in 0..n {
            let (rec, next) = read_record(msg, pos)?;
            sections[i].push(rec);
            pos = next;
        }
    }
    let [answers, authority] = sections;
    Some(ResponseView {
        rcode: rcode_name(msg[3] & 0x0f).into(),
        outcome: String::new(),
        authoritative: msg[2] & 0x04 != 0,
        answers,
        authority,
    })
}

/// A (possibly compressed) name at `pos`: (dotted name, offset after it). Bounded: at most
/// 128 pointer hops.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos)? as usize;
        match len & 0xc0 {
            0xc0 => {
                let target = (len & 0x3f) << 8 | *msg.get(pos + 1)? as usize;
                end.get_or_insert(pos + 2);
                pos = target;
            }
            0 if len == 0 => {
                if out.is_empty() {
                    out.push('.');
                }
                return Some((out, end.unwrap_or(pos + 1)));
            }
            0 => {
                let label = msg.get(pos + 1..pos + 1 + len)?;
                out.push_str(&String::from_utf8_lossy(label));
                out.push('.');
                pos += 1 + len;
            }
            _ => return None,
        }
    }
    None
}

fn read_record(msg: &[u8], pos: usize) -> Option<(Record, usize)> {
    let (name, p) = read_name(msg, pos)?;
    let field = |at: usize| Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]));
    let t = field(p)?;
    let ttl = u32::from(field(p + 4)?) << 16 | u32::from(field(p + 6)?);
    let rdlen = field(p + 8)? as usize;
    let start = p + 10;
    let rdata = msg.get(start..start + rdlen)?;
    let data = match t {
        rtype::A if rdlen == 4 => Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]).to_string(),
        rtype::AAAA if rdlen == 16 => Ipv6Addr::from(<[u8; 16]>::try_from(rdata).ok()?).to_string(),
        rtype::SRV if rdlen >= 7 => format!(
            "{} {} {} {}",
            field(start)?,
            field(start + 2)?,
            field(start + 4)?,
            read_name(msg, start + 6)?.0
        ),
        rtype::TXT => {
            let mut parts = Vec::new();
            let mut i = 0;
            while i < rdata.len() {
                let l = rdata[i] as usize;
                let s = rdata.get(i + 1..i + 1 + l)?;
                parts.push(format!("\"{}\"", String::from_utf8_lossy(s)));
                i += 1 + l;
            }
            parts.join(" ")
        }
        rtype::SOA => {
            let (mname, p2) = read_name(msg, start)?;
            let (rname, p3) = read_name(msg, p2)?;
            let n = |i: usize| -> Option<u32> {
                Some(u32::from(field(p3 + i * 4)?) << 16 | u32::from(field(p3 + i * 4 + 2)?))
            };
            format!(
                "{mname} {rname} {} {} {} {} {}",
                n(0)?,
                n(1)?,
                n(2)?,
                n(3)?,
                n(4)?
            )
        }
        rtype::NS | rtype::PTR | 5 => read_name(msg, start)?.0,
        _ => format!("\\# {rdlen}"),
    };
    Some((
        Record {
            name,
            ttl,
            rtype: qtype_name(t),
            data,
        },
        start + rdlen,
    ))
}

fn explain_forward(inputs: &Inputs<'_>, x: &mut Explanation, index: usize) {
    let view = inputs
        .forwarder
        .and_then(|f| f.zones_view().into_iter().nth(index));
    let Some(view) = view else {
        return;
    };
    x.zone = Some(ZoneMatch {
        name: view.zone.clone(),
        kind: "forward".into(),
        cluster: None,
    });
    let healthy = view.upstreams.iter().filter(|u| u.healthy).count();
    x.step(
        "CDNS-1",
        format!(
            "{} is a forward zone: the query goes to its upstreams ({} of {} healthy, policy {:?}{}), answers cached (CDNS-6)",
            view.zone,
            healthy,
            view.upstreams.len(),
            view.policy,
            if view.force_tcp { ", force_tcp" } else { "" }
        ),
    );
    x.step(
        "SPEC-2.5",
        "only clients in the `allow` CIDRs may use forward zones; others get REFUSED",
    );
    if view.looped {
        x.missing(
            Cause::UpstreamsDown,
            "CDNS-13",
            "an upstream forwards this zone back to this server: it answers SERVFAIL until the config changes",
            None,
            None,
        );
    } else if healthy == 0 {
        x.missing(
            Cause::UpstreamsDown,
            "CDNS-3",
            "every upstream is marked down (max_fails reached): a random one is tried, else SERVFAIL or a stale cached answer",
            None,
            None,
        );
    }
    x.forward = Some(view);
}

/// `name.ns.svc.<apex>` relative labels → (prefix labels, namespace, service).
fn split_service(rel: &[String]) -> Option<(&[String], &str, &str)> {
    let n = rel.len();
    if n < 3 || rel[n - 1] != "svc" {
        return None;
    }
    Some((&rel[..n - 3], &rel[n - 2], &rel[n - 3]))
}

fn explain_clusterset(inputs: &Inputs<'_>, x: &mut Explanation, rel: &[String], qtype: u16) {
    let zone = inputs
        .zones
        .clusterset
        .name
        .trim_end_matches('.')
        .to_owned();
    if rel.is_empty() {
        x.step(
            "MCS-11",
            format!("the apex of {zone}: its SOA; nothing else"),
        );
        return;
    }
    if rel == ["dns-version"] {
        x.step(
            "MCS-11",
            format!("dns-version.{zone} TXT \"1.0.0\": the MCS DNS schema version"),
        );
        return;
    }
    if rel == ["svc"] {
        x.step(
            "K8S-21",
            format!("svc.{zone} always exists (NODATA, never NXDOMAIN)"),
        );
        return;
    }
    if rel.len() == 2 && rel[1] == "svc" {
        let ns = &rel[0];
        let services: Vec<&ServiceKey> = inputs
            .merged
            .keys()
            .filter(|k| k.namespace() == ns)
            .collect();
        x.step(
            "K8S-21",
            format!(
                "namespace {ns}: exists (NODATA) while it exports a service; {} exported now",
                services.len()
            ),
        );
        if services.is_empty() {
            x.missing(
                Cause::NotExported,
                "MCS-12",
                format!("no cluster exports a service in namespace {ns}"),
                None,
                None,
            );
        }
        return;
    }
    let Some((prefix, ns, svc)) = split_service(rel) else {
        x.step(
            "MCS-12",
            format!(
                "{zone} answers <svc>.<ns>.svc.{zone} and names under it (K8S-20: search-path junk is a cheap NXDOMAIN)"
            ),
        );
        x.missing(
            Cause::NotAName,
            "MCS-12",
            format!("{} is not of the form <svc>.<ns>.svc.{zone}", x.name),
            None,
            None,
        );
        return;
    };
    let Ok(key) = ServiceKey::new(ns, svc) else {
        x.missing(
            Cause::NotAName,
            "MCS-8",
            format!("{svc}.{ns} is not a valid service name"),
            None,
            None,
        );
        return;
    };
    x.service = Some(key.to_string());
    let Some(snapshot) = inputs.snapshot else {
        return;
    };
    let Some(merged) = inputs.merged.get(&key) else {
        not_exported(inputs, x, &key, None);
        return;
    };
    x.service_type = Some(merged.service_type.to_string());
    x.conflicts = merged
        .conflicts
        .iter()
        .map(|c| format!("{}: {}", c.kind.reason(), c.message))
        .collect();
    x.step(
        "MCS-20",
        format!(
            "{key} merged across {} exporting cluster(s): type {} from the oldest export ({}), ports the union (MCS-21)",
            merged.members.len() + merged.excluded.len(),
            merged.service_type,
            merged
                .members
                .first()
                .map_or("none".to_owned(), |e| e.cluster.to_string())
        ),
    );
    let live = candidates(inputs, snapshot, merged, x);
    if merged.service_type == ServiceType::Headless {
        // MCS-14: every ready endpoint of every healthy cluster; no policy choice.
        for export in &live {
            let ready = export
                .endpoints
                .iter()
                .filter(|e| e.ready && !e.addresses.is_empty())
                .count();
            let (verdict, detail) = if ready > 0 {
                (Verdict::Kept, format!("alive, {ready} ready endpoint(s)"))
            } else {
                (
                    Verdict::NoReadyEndpoint,
                    "alive, but no ready endpoint".to_owned(),
                )
            };
            x.candidates.push(Candidate {
                cluster: export.cluster.to_string(),
                verdict,
                kept: verdict == Verdict::Kept,
                rule: "MCS-14".into(),
                detail,
            });
        }
    }
    match (prefix, merged.service_type) {
        ([], ServiceType::ClusterSetIp) => {
            x.step(
                "MCS-12",
                "ClusterSetIP service: A/AAAA are ClusterIPs of the clusters the answer policy picks (SPEC §3)",
            );
            clusterset_policy(inputs, x, snapshot, &key, &live);
        }
        ([], ServiceType::Headless) => {
            x.step(
                "MCS-14",
                "headless service: A/AAAA for every ready endpoint of every healthy cluster; none ready anywhere → NXDOMAIN",
            );
        }
        ([port, proto], t) if port.starts_with('_') && proto.starts_with('_') => {
            let (rule, what) = match t {
                ServiceType::ClusterSetIp => {
                    ("MCS-13", "one SRV per named port, target the service name")
                }
                ServiceType::Headless => (
                    "MCS-16",
                    "N ready endpoints × M named ports, targets the per-endpoint names",
                ),
            };
            x.step(rule, format!("SRV {port}.{proto}: {what}"));
            let known = merged.ports.iter().any(|p| {
                p.name.as_deref() == Some(&port[1..]) && p.protocol.srv_label() == &proto[1..]
            });
            if !known {
                let ports: Vec<String> = merged.ports.iter().map(ToString::to_string).collect();
                x.missing(
                    Cause::NoSuchName,
                    rule,
                    format!(
                        "{key} has no named port {} over {}; its ports: [{}] (unnamed ports get no SRV)",
                        &port[1..],
                        &proto[1..],
                        ports.join(", ")
                    ),
                    None,
                    None,
                );
            }
            if t == ServiceType::ClusterSetIp {
                clusterset_policy(inputs, x, snapshot, &key, &live);
            }
        }
        ([cluster], _) => {
            let exporter = ClusterId::new(cluster).ok().filter(|c| {
                snapshot
                    .clusters
                    .get(c)
                    .is_some_and(|v| v.exports.contains_key(&key))
            });
            if inputs.zones.clusterset.lighthouse_names {
                x.step(
                    "LH-12",
                    format!(
                        "lighthouse_names = true: <cluster>.{svc}.{ns}.svc answers that cluster's own addresses, even when it is unhealthy"
                    ),
                );
            } else if exporter.is_some() {
                x.step(
                    "MCS-18",
                    "<clusterid>.<svc>.<ns>.svc.clusterset.local must not exist (lighthouse_names is off)",
                );
                x.missing(
                    Cause::ClusterScopedName,
                    "MCS-18",
                    format!("{cluster}.{svc}.{ns}.svc names one cluster's backends, which the MCS DNS spec forbids; ask {svc}.{ns}.svc.{zone} or {svc}.{ns}.svc.{}", inputs.zones.cluster_zone_name(cluster)),
                    exporter.as_ref(),
                    None,
                );
            }
            if exporter.is_none() {
                x.missing(
                    Cause::NoSuchName,
                    "MCS-15",
                    format!("{cluster} is not a cluster exporting {key}"),
                    None,
                    None,
                );
            }
        }
        ([host, cluster], ServiceType::Headless) => {
            x.step(
                "MCS-15",
                format!("per-endpoint name: endpoint {host} of cluster {cluster} (its hostname, else the dashed IP, K8S-11)"),
            );
            let id = ClusterId::new(cluster).ok();
            let dead = id
                .as_ref()
                .and_then(|c| snapshot.clusters.get(c))
                .is_some_and(|v| !v.alive);
            if dead {
                x.missing(
                    Cause::AllExportersDead,
                    "MCS-10",
                    format!("cluster {cluster} is dead: its endpoints left the answers"),
                    id.as_ref(),
                    id.as_ref().and_then(|c| inputs.history.dead_since(c)),
                );
            }
        }
        _ => {
            x.missing(
                Cause::NoSuchName,
                "MCS-12",
                format!("{} is not a name {key} has", x.name),
                None,
                None,
            );
        }
    }
    if x.negative() && x.missing.is_empty() {
        service_negative(inputs, x, snapshot, merged, qtype);
    }
}

/// Sorts every cluster exporting the service into kept and dropped; returns the live members.
fn candidates<'a>(
    inputs: &Inputs<'_>,
    snapshot: &FleetSnapshot,
    merged: &'a MergedService,
    x: &mut Explanation,
) -> Vec<&'a Export> {
    let mut live = Vec::new();
    let alive = |c: &ClusterId| snapshot.clusters.get(c).is_some_and(|v| v.alive);
    // Dead clusters are merged only when no live one exports; list every exporter.
    for (id, view) in &snapshot.clusters {
        let Some(export) = view.exports.get(&merged.key) else {
            continue;
        };
        if !view.alive {
            let since = inputs.history.dead_since(id);
            x.candidates.push(Candidate {
                cluster: id.to_string(),
                verdict: Verdict::Dead,
                kept: false,
                rule: "MCS-10".into(),
                detail: format!(
                    "not alive in the registry{}: its source missed the liveness timeout; last published {}",
                    since.map_or(String::new(), |t| format!(" since {t}")),
                    view.published
                ),
            });
            continue;
        }
        if merged.excluded.iter().any(|e| &e.cluster == id) {
            let message = merged
                .conflicts
                .iter()
                .find(|c| c.kind == ConflictKind::Type)
                .map_or(String::new(), |c| c.message.clone());
            x.candidates.push(Candidate {
                cluster: id.to_string(),
                verdict: Verdict::TypeConflict,
                kept: false,
                rule: "MCS-22".into(),
                detail: format!("exports it as {}: {message}", export.service_type),
            });
            continue;
        }
        if let Some(m) = merged
            .members
            .iter()
            .find(|e| &e.cluster == id && alive(id))
        {
            live.push(&**m);
        }
    }
    // Clusters that exported it before and no longer do: the last-seen facts.
    for g in inputs.history.last_seen(&merged.key) {
        let exports_now = snapshot
            .clusters
            .get(&g.cluster)
            .is_some_and(|v| v.exports.contains_key(&merged.key));
        if !exports_now {
            x.candidates.push(Candidate {
                cluster: g.cluster.to_string(),
                verdict: Verdict::Gone,
                kept: false,
                rule: "MCS-10".into(),
                detail: gone_text(g),
            });
        }
    }
    live
}

/// "cluster-b exported default/payment until T; ..."
fn gone_text(g: &GoneExport) -> String {
    let why = match (g.why, g.was_dead) {
        (GoneWhy::ClusterLeft, true) => format!(
            "{} had missed its liveness timeout and then left the registry (its agent's lease expired)",
            g.cluster
        ),
        (GoneWhy::ClusterLeft, false) => format!(
            "{} left the registry: its agent's lease expired or its source withdrew it",
            g.cluster
        ),
        (GoneWhy::Unexported, _) => format!(
            "{} is still in the registry but no longer exports it (ServiceExport or Service removed)",
            g.cluster
        ),
    };
    format!(
        "{} exported {} until {}; {why}",
        g.cluster, g.service, g.until
    )
}

fn clusterset_policy(
    inputs: &Inputs<'_>,
    x: &mut Explanation,
    snapshot: &FleetSnapshot,
    key: &ServiceKey,
    live: &[&Export],
) {
    let cs = &inputs.zones.clusterset;
    let local = inputs.zones.local_cluster.as_ref();
    let vip = snapshot.vips.get(key).copied();
    let choice = policy::choose(cs.policy, local, live, vip);
    let chosen: Vec<&ClusterId> = choice.chosen.iter().map(|e| &e.cluster).collect();
    for export in live {
        let id = &export.cluster;
        let ready = export.has_ready_endpoint();
        let (verdict, rule, detail) = if choice.basis == Basis::Vip {
            (
                Verdict::BehindVip,
                "LH-13",
                format!(
                    "policy vip: the VIP {} is answered; the dataplane routes it to the clusters",
                    vip.map_or(String::new(), |v| v.to_string())
                ),
            )
        } else if chosen.contains(&id) {
            let detail = match choice.basis {
                Basis::LocalReady => "the local cluster, with a ready endpoint: local-first answers its ClusterIP only".to_owned(),
                Basis::NoneReady => "no healthy cluster has a ready endpoint, so every healthy exporting cluster is answered (SPEC §3, as CoreDNS answers a ClusterIP without endpoints)".to_owned(),
                _ => "alive, with a ready endpoint".to_owned(),
            };
            (
                Verdict::Kept,
                if choice.basis == Basis::LocalReady {
                    "LH-14"
                } else {
                    "SPEC-3"
                },
                detail,
            )
        } else if !ready {
            (
                Verdict::NoReadyEndpoint,
                "SPEC-3",
                "alive, but no ready endpoint while another cluster has one".to_owned(),
            )
        } else {
            (
                Verdict::NotLocal,
                "LH-14",
                format!(
                    "ready, but local-first chose the local cluster {}",
                    local.map_or("", |c| c.as_str())
                ),
            )
        };
        x.candidates.push(Candidate {
            cluster: id.to_string(),
            verdict,
            kept: verdict == Verdict::Kept,
            rule: rule.into(),
            detail,
        });
    }
    let policy_name = match cs.policy {
        AnswerPolicy::LocalFirst => "local-first",
        AnswerPolicy::All => "all",
        AnswerPolicy::RoundRobin => "round-robin",
        AnswerPolicy::Vip => "vip",
    };
    let (basis, detail) = match choice.basis {
        Basis::Vip => ("vip", "the service's clusterset VIP (SPEC §4)".to_owned()),
        Basis::LocalReady => (
            "local-ready",
            format!(
                "the local cluster {} exports it with a ready endpoint: its ClusterIP only",
                local.map_or("", |c| c.as_str())
            ),
        ),
        Basis::Ready => (
            "ready",
            match (cs.policy, local) {
                (AnswerPolicy::LocalFirst, Some(l)) => format!(
                    "the local cluster {l} has no ready export of it: every healthy cluster with a ready endpoint"
                ),
                (AnswerPolicy::LocalFirst, None) => {
                    "no local cluster is configured: every healthy cluster with a ready endpoint".to_owned()
                }
                _ => "every healthy cluster with a ready endpoint".to_owned(),
            },
        ),
        Basis::NoneReady => (
            "none-ready",
            "no healthy cluster has a ready endpoint: the ClusterIPs of every healthy exporting cluster".to_owned(),
        ),
    };
    let selection = match choice.selection {
        Selection::Fixed => "fixed",
        Selection::Rotate => "rotate",
        Selection::One => "one",
    };
    x.policy = Some(PolicyView {
        policy: policy_name.into(),
        local_cluster: local.map(ToString::to_string),
        basis: basis.into(),
        chosen: chosen.iter().map(ToString::to_string).collect(),
        selection: selection.into(),
        detail,
    });
}

/// A negative answer for a service that is merged (some cluster exports it).
fn service_negative(
    inputs: &Inputs<'_>,
    x: &mut Explanation,
    snapshot: &FleetSnapshot,
    merged: &MergedService,
    qtype: u16,
) {
    let exporters: Vec<(&ClusterId, bool)> = snapshot
        .clusters
        .iter()
        .filter(|(_, v)| v.exports.contains_key(&merged.key))
        .map(|(id, v)| (id, v.alive))
        .collect();
    if exporters.iter().all(|(_, alive)| !alive) {
        for (id, _) in &exporters {
            x.missing(
                Cause::AllExportersDead,
                "MCS-10",
                format!(
                    "{id} exports {} but is dead: it missed its liveness timeout, so it left the answers; the name stays known (NODATA, K8S-21) until the registry drops it",
                    merged.key
                ),
                Some(id),
                inputs.history.dead_since(id),
            );
        }
        return;
    }
    if merged.service_type == ServiceType::Headless && x.response.outcome == "nxdomain" {
        x.missing(
            Cause::NoReadyEndpoint,
            "MCS-14",
            format!(
                "headless {} has no ready endpoint in any healthy cluster: NXDOMAIN",
                merged.key
            ),
            None,
            None,
        );
        return;
    }
    if x.response.outcome == "nodata" {
        x.missing(
            Cause::NoSuchType,
            "K8S-21",
            format!(
                "{} exists but has no {} records (e.g. no ClusterIP of that family): NODATA with the SOA, never NXDOMAIN",
                x.name,
                qtype_name(qtype)
            ),
            None,
            None,
        );
    }
}

/// No cluster exports the service: say who did, until when, and why they stopped.
fn not_exported(
    inputs: &Inputs<'_>,
    x: &mut Explanation,
    key: &ServiceKey,
    only: Option<&ClusterId>,
) {
    let seen: Vec<&GoneExport> = inputs
        .history
        .last_seen(key)
        .into_iter()
        .filter(|g| only.is_none_or(|c| &g.cluster == c))
        .collect();
    if seen.is_empty() {
        x.missing(
            Cause::NotExported,
            "MCS-12",
            format!(
                "no cluster exports {key}{}, and none did since this server started",
                only.map_or(String::new(), |c| format!(" from {c}"))
            ),
            only,
            None,
        );
        return;
    }
    for g in seen {
        x.missing(
            Cause::NotExported,
            "MCS-10",
            gone_text(g),
            Some(&g.cluster),
            Some(g.until),
        );
    }
}

fn explain_cluster_zone(
    inputs: &Inputs<'_>,
    x: &mut Explanation,
    cluster: &ClusterId,
    rel: &[String],
    qtype: u16,
) {
    let Some(snapshot) = inputs.snapshot else {
        return;
    };
    let Some(view) = snapshot.clusters.get(cluster) else {
        return;
    };
    x.step(
        "K8S-1",
        format!(
            "per-cluster zone of {cluster}: its own exported services with the cluster DNS rules, no cross-cluster policy"
        ),
    );
    if !view.alive {
        x.step(
            "MCS-10",
            format!(
                "{cluster} is dead{}; its zone keeps answering its last published exports",
                inputs
                    .history
                    .dead_since(cluster)
                    .map_or(String::new(), |t| format!(" since {t}"))
            ),
        );
    }
    if rel == ["dns-version"] {
        x.step("K8S-3", "dns-version TXT \"1.1.0\"");
        return;
    }
    let Some((prefix, ns, svc)) = split_service(rel) else {
        if !rel.is_empty()
            && rel != ["svc"]
            && rel != ["pod"]
            && !(rel.len() == 2 && rel[1] == "svc")
        {
            x.missing(
                Cause::NotAName,
                "K8S-1",
                format!("{} is not of the form <svc>.<ns>.svc.<zone>", x.name),
                None,
                None,
            );
        }
        return;
    };
    let Ok(key) = ServiceKey::new(ns, svc) else {
        return;
    };
    x.service = Some(key.to_string());
    let Some(export) = view.exports.get(&key) else {
        not_exported(inputs, x, &key, Some(cluster));
        return;
    };
    x.service_type = Some(export.service_type.to_string());
    x.candidates.push(Candidate {
        cluster: cluster.to_string(),
        verdict: Verdict::Kept,
        kept: true,
        rule: "K8S-1".into(),
        detail: "the zone's own cluster".into(),
    });
    match (prefix, export.service_type) {
        ([], ServiceType::ClusterSetIp) => x.step(
            "K8S-4",
            "ClusterIP service: its ClusterIPs, whether or not an endpoint is ready",
        ),
        ([], ServiceType::Headless) => {
            x.step(
                "K8S-9",
                "headless service: one A/AAAA per ready endpoint address",
            );
            if !export.has_ready_endpoint() {
                x.missing(
                    Cause::NoReadyEndpoint,
                    "K8S-14",
                    format!("headless {key} has no ready endpoint in {cluster}: NXDOMAIN"),
                    Some(cluster),
                    None,
                );
            }
        }
        ([_, _], ServiceType::ClusterSetIp) => x.step("K8S-5", "SRV per named port"),
        ([_, _], ServiceType::Headless) => x.step("K8S-12", "SRV: ready endpoints × named ports"),
        ([_], ServiceType::Headless) => x.step("K8S-10", "per-endpoint name"),
        _ => {}
    }
    if x.negative() && x.missing.is_empty() && x.response.outcome == "nodata" {
        x.missing(
            Cause::NoSuchType,
            "K8S-21",
            format!(
                "{} exists but has no {} records: NODATA with the SOA, never NXDOMAIN",
                x.name,
                qtype_name(qtype)
            ),
            None,
            None,
        );
    }
}

/// A negative answer no specific rule explained.
fn negative_fallback(x: &mut Explanation, qtype: u16) {
    match x.response.outcome.as_str() {
        "nodata" => x.missing(
            Cause::NoSuchType,
            "K8S-21",
            format!(
                "{} exists but has no {} records: NODATA with the SOA",
                x.name,
                qtype_name(qtype)
            ),
            None,
            None,
        ),
        "nxdomain" => x.missing(
            Cause::NoSuchName,
            "K8S-20",
            format!("{} does not exist in its zone", x.name),
            None,
            None,
        ),
        _ => {}
    }
}

/// The keys of `old` that `new` lacks, in one walk over both (both are sorted): a cluster's
/// set of 50 000 exports is compared in a millisecond, not 50 000 lookups.
fn only_in<'a, V>(
    old: &'a BTreeMap<ServiceKey, V>,
    new: &BTreeMap<ServiceKey, V>,
) -> Vec<&'a ServiceKey> {
    let mut out = Vec::new();
    let mut new_keys = new.keys().peekable();
    for key in old.keys() {
        while new_keys.next_if(|k| *k < key).is_some() {}
        if new_keys.peek() != Some(&key) {
            out.push(key);
        }
    }
    out
}

#[cfg(test)]
mod tests;
