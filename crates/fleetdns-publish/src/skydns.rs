//! The etcd provider (SkyDNS layout): not built yet.
