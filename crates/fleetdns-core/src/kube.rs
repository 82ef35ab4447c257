//! The few fields of Kubernetes objects that fleetdns reads, as plain serde types.
//!
//! Both the manifest-file source and the Kubernetes watcher deserialize into these, so one
//! [`crate::translate`] serves both. Unknown fields are ignored, as the API server's clients do.

use serde::Deserialize;
pub use smol_str::SmolStr;

/// `metadata` of any object.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: Option<SmolStr>,
    #[serde(default)]
    pub namespace: Option<SmolStr>,
    #[serde(default)]
    pub labels: StringMap,
    #[serde(default)]
    pub creation_timestamp: Option<SmolStr>,
    /// Read for the ExternalDNS-compatible sync (`external-dns.*/hostname`, `ttl`, `target`).
    #[serde(default)]
    pub annotations: StringMap,
}

/// Labels or annotations: a string map kept as one boxed slice sorted by key (16 bytes, no
/// allocation when empty). A map with one label (an EndpointSlice's
/// `kubernetes.io/service-name`) costs one 48-byte allocation, where a `BTreeMap` allocates a
/// 544-byte node: at 165 000 slices that was 90 MB of a manifest source's memory. Lookups
/// are a binary search. As in a map, a key given twice keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StringMap(Box<[(SmolStr, SmolStr)]>);

impl StringMap {
    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&SmolStr> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets `key`; returns the value it replaces.
    pub fn insert(
        &mut self,
        key: impl Into<SmolStr>,
        value: impl Into<SmolStr>,
    ) -> Option<SmolStr> {
        let (key, value) = (key.into(), value.into());
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                let mut entries = std::mem::take(&mut self.0).into_vec();
                entries.insert(i, (key, value));
                self.0 = entries.into_boxed_slice();
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&SmolStr, &SmolStr)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// From entries in any order; a repeated key keeps its last value.
    fn from_entries(mut entries: Vec<(SmolStr, SmolStr)>) -> Self {
        // Reversed, a stable sort puts a key's last value first, and `dedup_by` keeps the
        // first of equal keys.
        entries.reverse();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        Self(entries.into_boxed_slice())
    }
}

/// Label keys every object of a kind carries, longer than a `SmolStr` keeps inline: one
/// static string instead of a heap copy per object.
const WELL_KNOWN_KEYS: [&str; 2] = [SERVICE_NAME_LABEL, "endpointslice.kubernetes.io/managed-by"];

fn well_known(key: SmolStr) -> SmolStr {
    match WELL_KNOWN_KEYS
        .iter()
        .find(|k| key.is_heap_allocated() && **k == key)
    {
        Some(k) => SmolStr::new_static(k),
        None => key,
    }
}

impl<K: Into<SmolStr>, V: Into<SmolStr>> FromIterator<(K, V)> for StringMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_entries(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl<K: Into<SmolStr>, V: Into<SmolStr>, const N: usize> From<[(K, V); N]> for StringMap {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl std::ops::Index<&str> for StringMap {
    type Output = SmolStr;

    /// # Panics
    /// When `key` is not in the map, as a map's index does.
    fn index(&self, key: &str) -> &SmolStr {
        self.get(key)
            .unwrap_or_else(|| panic!("no entry {key:?} in the map"))
    }
}

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = StringMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StringMap, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((key, value)) = map.next_entry::<SmolStr, SmolStr>()? {
                    entries.push((well_known(key), value));
                }
                Ok(StringMap::from_entries(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// `v1 Service`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Hash)]
pub struct Service {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ServiceSpec,
    /// Read for the ExternalDNS-compatible sync: LoadBalancer ingress addresses (XDNS-15).
    #[serde(default)]
    pub status: ServiceStatus,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: Option<SmolStr>,
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<SmolStr>,
    #[serde(default, rename = "clusterIPs")]
    pub cluster_ips: Vec<SmolStr>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub publish_not_ready_addresses: Option<bool>,
    #[serde(default)]
    pub external_name: Option<SmolStr>,
    /// Read for the ExternalDNS-compatible sync (XDNS-15).
    #[serde(default, rename = "externalIPs")]
    pub external_ips: Vec<SmolStr>,
}

/// `v1 Service` `status`: only what the ExternalDNS-compatible sync reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    #[serde(default)]
    pub load_balancer: LoadBalancerStatus,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Hash)]
pub struct LoadBalancerStatus {
    #[serde(default)]
    pub ingress: Vec<LoadBalancerIngress>,
}

/// One `status.loadBalancer.ingress[]` entry: an address or a host name.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Hash)]
pub struct LoadBalancerIngress {
    #[serde(default)]
    pub ip: Option<SmolStr>,
    #[serde(default)]
    pub hostname: Option<SmolStr>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<SmolStr>,
    #[serde(default)]
    pub protocol: Option<SmolStr>,
    pub port: i64,
    #[serde(default)]
    pub app_protocol: Option<SmolStr>,
}

/// `discovery.k8s.io/v1 EndpointSlice`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub address_type: SmolStr,
    #[serde(default)]
    pub endpoints: Vec<SliceEndpoint>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    #[serde(default)]
    pub addresses: Vec<SmolStr>,
    #[serde(default)]
    pub conditions: EndpointConditions,
    #[serde(default)]
    pub hostname: Option<SmolStr>,
    #[serde(default)]
    pub zone: Option<SmolStr>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Hash)]
pub struct EndpointConditions {
    #[serde(default)]
    pub ready: Option<bool>,
}

/// `multicluster.x-k8s.io/{v1alpha1,v1beta1} ServiceExport`: only its metadata matters here.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Hash)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: &str) -> StringMap {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_string_map_reads_as_a_map_does() {
        let m = map(r#"{"b": "2", "a": "1", "c": "3"}"#);
        assert_eq!(m.get("a").map(SmolStr::as_str), Some("1"));
        assert_eq!(m["c"], "3");
        assert_eq!(m.get("d"), None);
        assert!(m.contains_key("b") && !m.contains_key("bb"));
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"], "key order");
        // A key given twice keeps its last value, as serde's maps do.
        let slice = map(r#"{"kubernetes.io/service-name": "web"}"#);
        assert_eq!(slice[SERVICE_NAME_LABEL], "web");
        assert!(
            !slice.iter().next().unwrap().0.is_heap_allocated(),
            "a static key"
        );
        let twice = map(r#"{"k": "first", "x": "y", "k": "last"}"#);
        assert_eq!((twice.len(), twice["k"].as_str()), (2, "last"));
        assert!(map("{}").is_empty());
        assert!(serde_json::from_str::<StringMap>(r#"{"a": 1}"#).is_err());
        assert!(serde_json::from_str::<StringMap>("null").is_err());
    }

    #[test]
    fn a_string_map_inserts_in_order_and_replaces() {
        let mut m = StringMap::from([("m", "1")]);
        assert_eq!(m.insert("a", "0"), None);
        assert_eq!(m.insert("z", "2"), None);
        assert_eq!(m.insert("m", "new"), Some("1".into()));
        let all: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(all, [("a", "0"), ("m", "new"), ("z", "2")]);
        let collected: StringMap = [("x", "1"), ("x", "2")].into_iter().collect();
        assert_eq!(collected["x"], "2");
    }
}
