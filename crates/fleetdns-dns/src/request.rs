//! What every part of the request path shares: how a message travels, the size limits, the
//! query parsed once ([`Request`]), the question a forward zone is asked ([`Question`]), and
//! what was done with it ([`Outcome`]). This module imports neither the responder, the
//! forwarder nor the servers: they all import it.

use crate::cache::CacheKey;
use crate::wire::{self, Edns, MAX_NAME, ParseError, Query};

/// The EDNS UDP payload size fleetdns advertises (DNS flag day 2020).
pub const ADVERTISED_UDP_SIZE: u16 = 1232;
/// The largest UDP answer fleetdns sends, whatever the client advertises.
pub const MAX_UDP_SIZE: usize = 4096;

/// How the answer travels: UDP answers are cut to the client's size, TCP carries everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What kind of answer was written, for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answer,
    NoData,
    NxDomain,
    Refused,
    ServFail,
    FormErr,
    NotImp,
    /// Nothing to send (not a query).
    Dropped,
    /// Not answered here: forward zone `.0` of the forwarder takes it (nothing written).
    Forward(usize),
}

/// A query parsed once, at the edge: every later step (the zone catalog, the responder, the
/// forwarder, the metrics, the query log) reads this, never the packet again.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub query: Query<'a>,
    /// The question name in lower case (wire form, root included).
    pub lower_name: &'a [u8],
    pub transport: Transport,
}

impl<'a> Request<'a> {
    /// Parses `packet`; `lower` receives the lower-cased question name.
    #[inline]
    pub fn parse(
        packet: &'a [u8],
        transport: Transport,
        lower: &'a mut [u8; MAX_NAME],
    ) -> Result<Self, ParseError> {
        let query = wire::parse_query(packet, lower)?;
        let lower: &'a [u8; MAX_NAME] = lower;
        Ok(Self {
            lower_name: &lower[..query.name_len],
            query,
            transport,
        })
    }

    /// The largest response that may be sent: the client's EDNS size (at most
    /// [`MAX_UDP_SIZE`]) or 512 over UDP, 65535 over TCP.
    #[inline]
    pub fn size_limit(&self) -> usize {
        match self.transport {
            Transport::Tcp => u16::MAX as usize,
            Transport::Udp => match self.query.edns {
                Some(e) => (e.udp_size as usize).min(MAX_UDP_SIZE),
                None => 512,
            },
        }
    }

    /// Whether the query carries the EDNS NSID option (RFC 5001).
    pub fn wants_nsid(&self) -> bool {
        matches!(self.query.edns, Some(Edns { nsid: true, .. }))
    }

    /// The question as a forward zone is asked it.
    pub fn question(&self) -> Question<'a> {
        Question {
            id: self.query.id,
            question: self.query.question,
            lower_name: self.lower_name,
            qtype: self.query.qtype,
            qclass: self.query.qclass,
            edns: self.query.edns.is_some(),
            udp_limit: self.query.edns.map_or(512, |e| e.udp_size as usize),
        }
    }
}

/// The question of a query being forwarded.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub id: u16,
    /// Question section as the client sent it (name, type, class).
    pub question: &'a [u8],
    pub lower_name: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    pub edns: bool,
    /// The client's UDP size limit (ignored over TCP).
    pub udp_limit: usize,
}

impl Question<'_> {
    /// What the answer to this question is cached under.
    pub fn cache_key(&self) -> CacheKey<'_> {
        CacheKey {
            lower_name: self.lower_name,
            qtype: self.qtype,
            qclass: self.qclass,
            edns: self.edns,
        }
    }

    /// An owned copy, for the task that waits on the upstream.
    pub fn owned(&self) -> OwnedQuestion {
        OwnedQuestion {
            id: self.id,
            question: self.question.into(),
            lower_name: self.lower_name.into(),
            qtype: self.qtype,
            qclass: self.qclass,
            edns: self.edns,
            udp_limit: self.udp_limit,
        }
    }
}

/// A [`Question`] that owns its bytes.
#[derive(Debug, Clone)]
pub struct OwnedQuestion {
    pub id: u16,
    pub question: Box<[u8]>,
    pub lower_name: Box<[u8]>,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: bool,
    pub udp_limit: usize,
}

impl OwnedQuestion {
    pub fn as_question(&self) -> Question<'_> {
        Question {
            id: self.id,
            question: &self.question,
            lower_name: &self.lower_name,
            qtype: self.qtype,
            qclass: self.qclass,
            edns: self.edns,
            udp_limit: self.udp_limit,
        }
    }
}

/// What the metrics count of one answered message, as the request path returns it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted<'a> {
    /// The question's type; `None` when the question could not be read.
    pub qtype: Option<u16>,
    /// The zone that answered, authoritative or forward (its apex, lower-case wire form).
    pub zone: Option<&'a [u8]>,
}
