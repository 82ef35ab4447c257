//! Clusterset VIPs (SPEC §4): one IPv4 per service from a configured range (default
//! `240.240.0.0/16`, IST-14), allocated once and persisted by the registry, never recomputed
//! from a hash. A hash of the service only picks where the search for a free address starts,
//! so two allocators rarely race for the same address.

use std::net::Ipv4Addr;
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
    }
}
