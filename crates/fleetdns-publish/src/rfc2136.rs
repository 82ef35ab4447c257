//! RFC 2136 provider: not built yet.
