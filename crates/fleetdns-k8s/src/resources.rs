//! The Kubernetes resources fleetdns reads and writes, and the names it writes under.

use kube::core::{ApiResource, GroupVersionKind};

/// The server-side-apply field manager of every write.
pub const FIELD_MANAGER: &str = "fleetdns";
/// `endpointslice.kubernetes.io/managed-by` of the EndpointSlices fleetdns writes. MCS-9: it
/// must not be the default EndpointSlice controller's.
pub const SLICE_MANAGER: &str = "fleetdns.io";
/// `app.kubernetes.io/managed-by` of the ServiceImports fleetdns writes: only those are ever
/// deleted by it.
pub const IMPORT_MANAGER: &str = "fleetdns";

/// The clusterset whose fleetdns wrote a ServiceImport or EndpointSlice: garbage collection
/// deletes only its own clusterset's objects (and adopts ones written before this label).
pub const CLUSTERSET_LABEL: &str = "fleetdns.io/clusterset";
/// MCS-7: the ClusterProperty naming the clusterset the cluster belongs to.
pub const CLUSTERSET_PROPERTY: &str = "clusterset.k8s.io";
/// The clusterset name when neither the source nor the cluster names one.
pub const DEFAULT_CLUSTERSET: &str = "default";

pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const APP_MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// MCS-9.
pub const MCS_SERVICE_NAME_LABEL: &str = "multicluster.kubernetes.io/service-name";
/// MCS-9.
pub const MCS_SOURCE_CLUSTER_LABEL: &str = "multicluster.kubernetes.io/source-cluster";

pub const MCS_GROUP: &str = "multicluster.x-k8s.io";
/// ServiceExport versions fleetdns understands, preferred first.
pub const MCS_VERSIONS: [&str; 2] = ["v1beta1", "v1alpha1"];
pub const ABOUT_GROUP: &str = "about.k8s.io";
/// ClusterProperty versions tried, in order.
pub const ABOUT_VERSIONS: [&str; 3] = ["v1alpha1", "v1beta1", "v1"];
/// MCS-6: the ClusterProperty holding the cluster id.
pub const CLUSTER_ID_PROPERTY: &str = "cluster.clusterset.k8s.io";

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub fn services() -> ApiResource {
    resource("", "v1", "Service", "services")
}

pub fn namespaces() -> ApiResource {
    resource("", "v1", "Namespace", "namespaces")
}

pub fn endpoint_slices() -> ApiResource {
    resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
}

pub fn service_exports(version: &str) -> ApiResource {
    resource(MCS_GROUP, version, "ServiceExport", "serviceexports")
}

pub fn service_imports(version: &str) -> ApiResource {
    resource(MCS_GROUP, version, "ServiceImport", "serviceimports")
}

/// Istio's group; ServiceEntry versions fleetdns reads, preferred first.
pub const ISTIO_GROUP: &str = "networking.istio.io";
pub const ISTIO_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

pub fn service_entries(version: &str) -> ApiResource {
    resource(ISTIO_GROUP, version, "ServiceEntry", "serviceentries")
}

pub fn cluster_properties(version: &str) -> ApiResource {
    resource(ABOUT_GROUP, version, "ClusterProperty", "clusterproperties")
}
