//! The kinds the fake serves: groups, versions, plurals and scopes.

pub(crate) const MCS: &str = "multicluster.x-k8s.io";

/// One resource the fake serves.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Res {
    pub(crate) group: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource leave `status` alone.
    pub(crate) status: bool,
    /// A custom resource: keeps `metadata.generation`, DELETE answers with the object.
    pub(crate) crd: bool,
}

#[rustfmt::skip]
pub(crate) const RESOURCES: &[Res] = &[
    Res { group: "", plural: "services", kind: "Service", namespaced: true, status: true, crd: false },
    Res { group: "", plural: "namespaces", kind: "Namespace", namespaced: false, status: true, crd: false },
    Res { group: "discovery.k8s.io", plural: "endpointslices", kind: "EndpointSlice", namespaced: true, status: false, crd: false },
    Res { group: MCS, plural: "serviceexports", kind: "ServiceExport", namespaced: true, status: true, crd: true },
    Res { group: MCS, plural: "serviceimports", kind: "ServiceImport", namespaced: true, status: true, crd: true },
    Res { group: "about.k8s.io", plural: "clusterproperties", kind: "ClusterProperty", namespaced: false, status: false, crd: true },
    Res { group: "networking.istio.io", plural: "serviceentries", kind: "ServiceEntry", namespaced: true, status: true, crd: true },
];
pub(crate) const GROUPS: [&str; 4] = [
    "discovery.k8s.io",
    MCS,
    "about.k8s.io",
    "networking.istio.io",
];

pub(crate) fn find_res(api_version: &str, kind: &str) -> Option<&'static Res> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

pub(crate) fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.into()
    } else {
        format!("{group}/{version}")
    }
}

/// `services` or `serviceexports.multicluster.x-k8s.io`, as in the real API's messages.
pub(crate) fn qualified(res: &Res) -> String {
    if res.group.is_empty() {
        res.plural.into()
    } else {
        format!("{}.{}", res.plural, res.group)
    }
}
