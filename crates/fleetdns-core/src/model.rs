//! One cluster's view of one exported service, as published to the registry.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::kube::SmolStr;
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

/// One endpoint of an exported service (from an EndpointSlice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: Vec<IpAddr>,
    /// The endpoint's `hostname`, already checked to be a DNS label; `None` → dashed IP (K8S-11).
    pub hostname: Option<SmolStr>,
    /// `conditions.ready`, with nil meaning ready (K8S-16) and `publishNotReadyAddresses` forcing true (K8S-17).
    pub ready: bool,
    pub zone: Option<String>,
}

/// One cluster's export of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub key: ServiceKey,
    pub cluster: ClusterId,
    pub service_type: ServiceType,
    pub ports: Vec<Port>,
    /// ClusterIPs of both families, in the Service's order; empty for headless services.
    pub cluster_ips: Vec<IpAddr>,
    pub endpoints: Vec<Endpoint>,
    /// The ServiceExport's `creationTimestamp`: the oldest export wins conflicts (MCS-20).
    pub created: Timestamp,
}

impl Export {
    /// Gives back the spare capacity of every vector: an export lives as long as its service
    /// and there are hundreds of thousands of them, while a vector grown by pushes holds
    /// room for four endpoints where most services have one (at 165 000 exports: 60 MB).
    pub fn shrink_to_fit(&mut self) {
        self.ports.shrink_to_fit();
        self.cluster_ips.shrink_to_fit();
        self.endpoints.shrink_to_fit();
        for endpoint in &mut self.endpoints {
            endpoint.addresses.shrink_to_fit();
        }
    }

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

    /// A ready endpoint counts only with an address (the answer policy, SPEC §3, prefers
    /// clusters with one).
    #[test]
    fn a_ready_endpoint_needs_an_address() {
        let endpoint = |ready: bool, addresses: Vec<std::net::IpAddr>| Endpoint {
            addresses,
            hostname: None,
            ready,
            zone: None,
        };
        let ip: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let export = |endpoints: Vec<Endpoint>| Export {
            key: crate::ServiceKey::new("ns", "web").unwrap(),
            cluster: crate::ClusterId::new("c1").unwrap(),
            service_type: ServiceType::ClusterSetIp,
            ports: Vec::new(),
            cluster_ips: vec![ip],
            endpoints,
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
