//! One cluster's view of one exported service, as published to the registry.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;

use crate::kube::SmolStr;
use crate::shared::Shared;
use crate::{ClusterId, ServiceKey, Timestamp};

/// MCS service types (MCS-4): ClusterIP, NodePort and LoadBalancer export as `ClusterSetIP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceType {
    ClusterSetIp,
    Headless,
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClusterSetIp => "ClusterSetIP",
            Self::Headless => "Headless",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The SRV label without the underscore: `tcp`, `udp`, `sctp`.
    pub fn srv_label(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// A service port. `name` is lower-case; unnamed ports get no SRV records (K8S-5, MCS-13).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Port {
    /// Inline up to 23 bytes (port names are at most 15).
    pub name: Option<SmolStr>,
    pub protocol: Protocol,
    pub port: u16,
    pub app_protocol: Option<String>,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n}:{}/{}", self.port, self.protocol),
            None => write!(f, "{}/{}", self.port, self.protocol),
        }
    }
}

/// A service's port list, shared by every export (and merged service) with an equal one:
/// nearly every service of a fleet has one of a handful of port lists.
pub type Ports = Arc<[Port]>;

static PORT_LISTS: Shared<[Port]> = Shared::new();
static ZONES: Shared<str> = Shared::new();

/// The shared copy of a port list (see [`Ports`]).
pub fn shared_ports(ports: &[Port]) -> Ports {
    PORT_LISTS.get(ports, |p| Arc::from(p))
}

/// The shared copy of a zone name: a fleet's endpoints name a handful of zones.
pub fn shared_zone(zone: &str) -> Arc<str> {
    ZONES.get(zone, |z| Arc::from(z))
}

/// IP addresses in order, in as little room as they fit: one address (an endpoint's usual
/// count, a single-stack ClusterIP service's) is held inline, more in one boxed slice. Reads
/// as a slice.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IpList(IpListRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum IpListRepr {
    One(IpAddr),
    /// None, or two and more.
    Many(Box<[IpAddr]>),
}

impl IpList {
    /// The addresses but `ip`.
    pub fn without(&self, ip: IpAddr) -> Self {
        self.iter().copied().filter(|a| *a != ip).collect()
    }
}

impl Default for IpList {
    fn default() -> Self {
        Self(IpListRepr::Many(Box::default()))
    }
}

impl Deref for IpList {
    type Target = [IpAddr];
    fn deref(&self) -> &[IpAddr] {
        match &self.0 {
            IpListRepr::One(ip) => std::slice::from_ref(ip),
            IpListRepr::Many(ips) => ips,
        }
    }
}

impl fmt::Debug for IpList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<Vec<IpAddr>> for IpList {
    fn from(ips: Vec<IpAddr>) -> Self {
        match ips[..] {
            [one] => Self(IpListRepr::One(one)),
            _ => Self(IpListRepr::Many(ips.into_boxed_slice())),
        }
    }
}

impl<const N: usize> From<[IpAddr; N]> for IpList {
    fn from(ips: [IpAddr; N]) -> Self {
        Self::from(Vec::from(ips))
    }
}

impl From<&[IpAddr]> for IpList {
    fn from(ips: &[IpAddr]) -> Self {
        Self::from(ips.to_vec())
    }
}

impl FromIterator<IpAddr> for IpList {
    fn from_iter<I: IntoIterator<Item = IpAddr>>(iter: I) -> Self {
        Self::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a IpList {
    type Item = &'a IpAddr;
    type IntoIter = std::slice::Iter<'a, IpAddr>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq<[IpAddr]> for IpList {
    fn eq(&self, other: &[IpAddr]) -> bool {
        **self == *other
    }
}

impl<const N: usize> PartialEq<[IpAddr; N]> for IpList {
    fn eq(&self, other: &[IpAddr; N]) -> bool {
        **self == other[..]
    }
}

impl PartialEq<Vec<IpAddr>> for IpList {
    fn eq(&self, other: &Vec<IpAddr>) -> bool {
        **self == other[..]
    }
}

/// One endpoint of an exported service (from an EndpointSlice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: IpList,
    /// The endpoint's `hostname`, already checked to be a DNS label; `None` → dashed IP (K8S-11).
    pub hostname: Option<SmolStr>,
    /// `conditions.ready`, with nil meaning ready (K8S-16) and `publishNotReadyAddresses` forcing true (K8S-17).
    pub ready: bool,
    /// Shared with every endpoint in the same zone ([`shared_zone`]).
    pub zone: Option<Arc<str>>,
}

/// One cluster's export of one service. Its lists are boxed slices and [`IpList`]s, not
/// vectors: an export lives as long as its service and there are hundreds of thousands of
/// them, so none holds spare room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub key: ServiceKey,
    pub cluster: ClusterId,
    pub service_type: ServiceType,
    /// Shared with every export with the same ports ([`shared_ports`]).
    pub ports: Ports,
    /// ClusterIPs of both families, in the Service's order; empty for headless services.
    pub cluster_ips: IpList,
    pub endpoints: Box<[Endpoint]>,
    /// The ServiceExport's `creationTimestamp`: the oldest export wins conflicts (MCS-20).
    pub created: Timestamp,
}

impl Export {
    pub fn has_ready_endpoint(&self) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.ready && !e.addresses.is_empty())
    }
}

/// One cluster's complete export set, keyed by service. Publishing replaces the whole set.
pub type ExportSet = BTreeMap<ServiceKey, Arc<Export>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_labels_name_the_protocol() {
        assert_eq!(
            [Protocol::Tcp, Protocol::Udp, Protocol::Sctp].map(Protocol::srv_label),
            ["tcp", "udp", "sctp"]
        );
    }

    #[test]
    fn ip_lists_read_as_the_addresses_they_were_made_of() {
        let ips: Vec<IpAddr> = ["10.0.0.1", "fd00::1", "10.0.0.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for n in 0..=ips.len() {
            let list = IpList::from(ips[..n].to_vec());
            assert_eq!(*list, ips[..n]);
            assert_eq!(list, ips[..n].iter().copied().collect::<IpList>());
            assert_eq!(format!("{list:?}"), format!("{:?}", &ips[..n]));
            for ip in &ips[..n] {
                let without = list.without(*ip);
                assert_eq!(without.len(), n - 1);
                assert!(!without.contains(ip));
            }
        }
        assert!(IpList::default().is_empty());
    }

    #[test]
    fn equal_port_lists_are_shared() {
        let port = |n: u16| Port {
            name: None,
            protocol: Protocol::Tcp,
            port: n,
            app_protocol: None,
        };
        let a = shared_ports(&[port(80), port(443)]);
        let b = shared_ports(&[port(80), port(443)]);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*shared_ports(&[port(443)]), [port(443)]);
        assert!(Arc::ptr_eq(&shared_zone("z1"), &shared_zone("z1")));
    }

    /// A ready endpoint counts only with an address (the answer policy, SPEC §3, prefers
    /// clusters with one).
    #[test]
    fn a_ready_endpoint_needs_an_address() {
        let endpoint = |ready: bool, addresses: Vec<std::net::IpAddr>| Endpoint {
            addresses: addresses.into(),
            hostname: None,
            ready,
            zone: None,
        };
        let ip: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let export = |endpoints: Vec<Endpoint>| Export {
            key: crate::ServiceKey::new("ns", "web").unwrap(),
            cluster: crate::ClusterId::new("c1").unwrap(),
            service_type: ServiceType::ClusterSetIp,
            ports: shared_ports(&[]),
            cluster_ips: [ip].into(),
            endpoints: endpoints.into(),
            created: crate::Timestamp(0),
        };
        assert!(export(vec![endpoint(true, vec![ip])]).has_ready_endpoint());
        assert!(!export(vec![endpoint(false, vec![ip])]).has_ready_endpoint());
        assert!(!export(vec![endpoint(true, vec![])]).has_ready_endpoint());
        assert!(!export(vec![]).has_ready_endpoint());
        assert!(
            export(vec![endpoint(false, vec![ip]), endpoint(true, vec![ip])]).has_ready_endpoint()
        );
    }
}
