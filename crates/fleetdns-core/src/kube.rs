//! The few fields of Kubernetes objects that fleetdns reads, as plain serde types.
//!
//! Both the manifest-file source and the Kubernetes watcher deserialize into these, so one
//! [`crate::translate`] serves both. Unknown fields are ignored, as the API server's clients do.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `metadata` of any object.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    #[serde(default)]
    pub resource_version: Option<String>,
    /// Read for the ExternalDNS-compatible sync (`external-dns.*/hostname`, `ttl`, `target`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `v1 Service`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Service {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ServiceSpec,
    /// Read for the ExternalDNS-compatible sync: LoadBalancer ingress addresses (XDNS-15).
    #[serde(default)]
    pub status: ServiceStatus,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub publish_not_ready_addresses: Option<bool>,
    #[serde(default)]
    pub external_name: Option<String>,
    /// Read for the ExternalDNS-compatible sync (XDNS-15).
    #[serde(default, rename = "externalIPs")]
    pub external_ips: Vec<String>,
}

/// `v1 Service` `status`: only what the ExternalDNS-compatible sync reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    #[serde(default)]
    pub load_balancer: LoadBalancerStatus,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct LoadBalancerStatus {
    #[serde(default)]
    pub ingress: Vec<LoadBalancerIngress>,
}

/// One `status.loadBalancer.ingress[]` entry: an address or a host name.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct LoadBalancerIngress {
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    pub port: i64,
    #[serde(default)]
    pub app_protocol: Option<String>,
}

/// `discovery.k8s.io/v1 EndpointSlice`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub address_type: String,
    #[serde(default)]
    pub endpoints: Vec<SliceEndpoint>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: EndpointConditions,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct EndpointConditions {
    #[serde(default)]
    pub ready: Option<bool>,
}

/// `multicluster.x-k8s.io/{v1alpha1,v1beta1} ServiceExport`: only its metadata matters here.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ServiceExport {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// The label joining an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Every object of one cluster that the translation reads.
#[derive(Debug, Clone, Default)]
pub struct ClusterObjects {
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub service_exports: Vec<ServiceExport>,
}
