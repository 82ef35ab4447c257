//! What every part of the request path shares: how a message travels, the size limits, and
//! what was done with it. No module here imports the responder, the forwarder or the servers.

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
