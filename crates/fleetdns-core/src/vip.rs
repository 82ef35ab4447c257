//! Clusterset VIPs (SPEC §4): one IPv4 per service from a configured range (default
//! `240.240.0.0/16`, IST-14), allocated once and persisted by the registry, never recomputed
//! from a hash. A hash of the service only picks where the search for a free address starts,
//! so two allocators rarely race for the same address.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::ServiceKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipRange {
    network: u32,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IPv4 range with room for VIPs (such as 240.240.0.0/16; prefix 8 to 30)")]
pub struct VipRangeError(String);

impl FromStr for VipRange {
    type Err = VipRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VipRangeError(s.to_owned());
        let (ip, len) = s.split_once('/').ok_or_else(err)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| err())?;
        let prefix: u8 = len.parse().map_err(|_| err())?;
        if !(8..=30).contains(&prefix) {
            return Err(err());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            network: u32::from(ip) & mask,
            prefix,
        })
    }
}

impl std::fmt::Display for VipRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

impl VipRange {
    /// Usable addresses: the network and broadcast addresses are left out.
    pub fn size(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.network
    }

    /// Every usable address, starting at the service's hash and wrapping around.
    pub fn candidates(&self, key: &ServiceKey) -> impl Iterator<Item = Ipv4Addr> + use<> {
        // FNV-1a: stable across Rust releases and processes, so every allocator of the fleet
        // starts its search at the same address.
        let h = format!("{}/{}", key.namespace(), key.name())
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let size = self.size();
        let start = (h % u64::from(size)) as u32;
        let network = self.network;
        (0..size).map(move |i| Ipv4Addr::from(network + 1 + (start + i) % size))
    }
}

/// FNV-1a of a string: stable across Rust releases and processes.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl VipRange {
    /// Every usable address for a ServiceEntry host (IST-14), starting at the host's hash.
    pub fn candidates_for(&self, host: &str) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let size = self.size();
        let start = (fnv(host) % u64::from(size)) as u32;
        let network = self.network;
        (0..size).map(move |i| Ipv4Addr::from(network + 1 + (start + i) % size))
    }
}

/// The IPv6 VIP range (default `2001:2::/48`, as Istio's `PILOT_IP_AUTOALLOCATE_IPV6_PREFIX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipRangeV6 {
    network: u128,
    prefix: u8,
}

/// Istio's default IPv6 VIP prefix (IST-14).
pub const DEFAULT_VIP_RANGE_V6: &str = "2001:2::/48";

impl FromStr for VipRangeV6 {
    type Err = VipRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VipRangeError(s.to_owned());
        let (ip, len) = s.split_once('/').ok_or_else(err)?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| err())?;
        let prefix: u8 = len.parse().map_err(|_| err())?;
        if !(16..=126).contains(&prefix) {
            return Err(err());
        }
        let mask = u128::MAX << (128 - prefix);
        Ok(Self {
            network: u128::from(ip) & mask,
            prefix,
        })
    }
}

impl std::fmt::Display for VipRangeV6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv6Addr::from(self.network), self.prefix)
    }
}

impl VipRangeV6 {
    /// Usable addresses (the all-zero host is left out), capped at 2^32 so searches stay
    /// bounded.
    pub fn size(&self) -> u64 {
        let bits = 128 - u32::from(self.prefix);
        if bits >= 32 {
            u64::from(u32::MAX)
        } else {
            (1u64 << bits) - 1
        }
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        let mask = u128::MAX << (128 - self.prefix);
        u128::from(ip) & mask == self.network
    }

    /// Every usable address for `owner` (a `namespace/service` or a host), starting at its hash.
    pub fn candidates_for(&self, owner: &str) -> impl Iterator<Item = Ipv6Addr> + use<> {
        let size = self.size();
        let start = fnv(owner) % size;
        let network = self.network;
        (0..size).map(move |i| Ipv6Addr::from(network + 1 + u128::from((start + i) % size)))
    }

    /// Candidates for a service, from the same `namespace/name` string the IPv4 search hashes.
    pub fn candidates(&self, key: &ServiceKey) -> impl Iterator<Item = Ipv6Addr> + use<> {
        self.candidates_for(&format!("{}/{}", key.namespace(), key.name()))
    }
}

/// The VIPs of one ServiceEntry host, one per family (IST-14).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostVips {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl HostVips {
    pub fn ips(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        self.v4
            .map(std::net::IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(std::net::IpAddr::V6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_exclude_network_and_broadcast() {
        let r: VipRange = "240.240.7.9/16".parse().unwrap();
        assert_eq!(r.to_string(), "240.240.0.0/16");
        assert_eq!(r.size(), 65534);
        let small: VipRange = "10.0.0.0/30".parse().unwrap();
        let key = ServiceKey::new("default", "web").unwrap();
        let mut all: Vec<Ipv4Addr> = small.candidates(&key).collect();
        all.sort();
        assert_eq!(
            all,
            [
                "10.0.0.1".parse::<Ipv4Addr>().unwrap(),
                "10.0.0.2".parse().unwrap()
            ]
        );
        for bad in [
            "240.240.0.0",
            "240.240.0.0/31",
            "x/16",
            "240.240.0.0/4",
            "::/64",
        ] {
            assert!(bad.parse::<VipRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn candidates_are_stable_per_service_and_spread() {
        let r: VipRange = "240.240.0.0/16".parse().unwrap();
        let a = ServiceKey::new("default", "a").unwrap();
        let b = ServiceKey::new("default", "b").unwrap();
        let first = |k| r.candidates(k).next().unwrap();
        assert_eq!(first(&a), first(&a));
        assert_ne!(first(&a), first(&b));
        assert!(r.contains(first(&a)));
        assert!(
            !r.contains(Ipv4Addr::new(240, 241, 0, 1)),
            "outside the /16"
        );
        assert!(!r.contains(Ipv4Addr::new(10, 240, 0, 1)));
    }

    #[test]
    fn ist14_v6_ranges_parse_and_candidates_stay_inside() {
        let r: VipRangeV6 = DEFAULT_VIP_RANGE_V6.parse().unwrap();
        assert_eq!(r.to_string(), "2001:2::/48");
        let first = r
            .candidates_for("reviews.default.cluster-2")
            .next()
            .unwrap();
        assert!(r.contains(first));
        assert!(
            !r.contains(Ipv6Addr::from(0x2001_0003_u128 << 96)),
            "outside the /48"
        );
        assert_ne!(
            first,
            Ipv6Addr::from(0x2001_0002_u128 << 96),
            "network address left out"
        );
        let small: VipRangeV6 = "fd00::/126".parse().unwrap();
        assert_eq!(small.candidates_for("x").count(), 3);
        for bad in ["2001:2::", "2001:2::/127", "240.240.0.0/16", "x/48"] {
            assert!(bad.parse::<VipRangeV6>().is_err(), "{bad}");
        }
    }
}
