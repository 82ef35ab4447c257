//! Connecting to one cluster's API server and asking it who it is.

use std::path::PathBuf;

use fleetdns_core::ClusterId;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::K8sError;
use crate::resources::{
    self, ABOUT_VERSIONS, CLUSTER_ID_PROPERTY, CLUSTERSET_PROPERTY, MCS_GROUP, MCS_VERSIONS,
};

/// Where a source's credentials come from. The binary resolves `KUBECONFIG`; this crate never
/// reads the environment itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A kubeconfig file, with an optional context (else its current context).
    Kubeconfig {
        path: PathBuf,
        context: Option<String>,
    },
    /// The pod's service account.
    InCluster,
}

impl std::fmt::Display for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kubeconfig {
                path,
                context: Some(c),
            } => write!(f, "kubeconfig {} (context {c})", path.display()),
            Self::Kubeconfig {
                path,
                context: None,
            } => write!(f, "kubeconfig {}", path.display()),
            Self::InCluster => f.write_str("in-cluster service account"),
        }
    }
}

/// Builds a client. Nothing is sent yet.
pub async fn connect(credentials: &Credentials) -> Result<Client, K8sError> {
    let config = match credentials {
        Credentials::Kubeconfig { path, context } => {
            let file = Kubeconfig::read_from(path).map_err(|e| K8sError::Credentials {
                what: credentials.to_string(),
                reason: e.to_string(),
            })?;
            let options = KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| K8sError::Credentials {
                    what: credentials.to_string(),
                    reason: e.to_string(),
                })?
        }
        Credentials::InCluster => kube::Config::incluster().map_err(|e| K8sError::Credentials {
            what: credentials.to_string(),
            reason: e.to_string(),
        })?,
    };
    Client::try_from(config).map_err(|e| K8sError::Credentials {
        what: credentials.to_string(),
        reason: e.to_string(),
    })
}

/// The cluster id: the configured one, else the ClusterProperty `cluster.clusterset.k8s.io`
/// (MCS-6). An id that is not an RFC 1123 label is refused (LH-3), as is a cluster with
/// neither.
pub async fn cluster_id(
    client: &Client,
    configured: Option<&ClusterId>,
) -> Result<ClusterId, K8sError> {
    if let Some(id) = configured {
        return Ok(id.clone());
    }
    for version in ABOUT_VERSIONS {
        let api: Api<DynamicObject> =
            Api::all_with(client.clone(), &resources::cluster_properties(version));
        let found = api
            .get_opt(CLUSTER_ID_PROPERTY)
            .await
            .map_err(|e| K8sError::Api {
                what: "reading the ClusterProperty cluster.clusterset.k8s.io",
                source: Box::new(e),
            })?;
        let Some(property) = found else { continue };
        let value = property
            .data
            .pointer("/spec/value")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        return ClusterId::new(value).map_err(|e| K8sError::ClusterId {
            reason: format!(
                "ClusterProperty {CLUSTER_ID_PROPERTY} ({}/{version}) holds {value:?}, which is not a cluster id: {e}; set cluster_id in the source",
                resources::ABOUT_GROUP
            ),
        });
    }
    Err(K8sError::ClusterId {
        reason: format!(
            "no cluster_id in the source and no ClusterProperty {CLUSTER_ID_PROPERTY} in the cluster (MCS-6); set one of them"
        ),
    })
}

/// The clusterset the cluster belongs to: the value of the ClusterProperty
/// `clusterset.k8s.io` (MCS-7); `None` without one, or when the credentials may not read it
/// (403: RBAC from before this was read).
pub async fn clusterset_name(client: &Client) -> Result<Option<String>, K8sError> {
    for version in ABOUT_VERSIONS {
        let api: Api<DynamicObject> =
            Api::all_with(client.clone(), &resources::cluster_properties(version));
        let found = match api.get_opt(CLUSTERSET_PROPERTY).await {
            Ok(found) => found,
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(None),
            Err(e) => {
                return Err(K8sError::Api {
                    what: "reading the ClusterProperty clusterset.k8s.io",
                    source: Box::new(e),
                });
            }
        };
        let value = found.as_ref().and_then(|p| p.data.pointer("/spec/value"));
        if let Some(value) = value.and_then(|v| v.as_str()).filter(|v| !v.is_empty()) {
            return Ok(Some(value.to_owned()));
        }
    }
    Ok(None)
}

/// The Istio ServiceEntry version the cluster serves (v1, v1beta1, v1alpha3, in that
/// order); `None` when Istio's CRDs are not installed.
pub async fn service_entry_version(client: &Client) -> Result<Option<&'static str>, K8sError> {
    let groups = client.list_api_groups().await.map_err(|e| K8sError::Api {
        what: "listing API groups",
        source: Box::new(e),
    })?;
    let Some(group) = groups
        .groups
        .iter()
        .find(|g| g.name == resources::ISTIO_GROUP)
    else {
        return Ok(None);
    };
    Ok(resources::ISTIO_VERSIONS
        .into_iter()
        .find(|v| group.versions.iter().any(|gv| gv.version == *v)))
}

/// The ServiceExport version the cluster serves, preferring v1beta1; `None` when the MCS CRDs
/// are not installed.
pub async fn export_version(client: &Client) -> Result<Option<&'static str>, K8sError> {
    let groups = client.list_api_groups().await.map_err(|e| K8sError::Api {
        what: "listing API groups",
        source: Box::new(e),
    })?;
    let Some(group) = groups.groups.iter().find(|g| g.name == MCS_GROUP) else {
        return Ok(None);
    };
    Ok(MCS_VERSIONS
        .into_iter()
        .find(|v| group.versions.iter().any(|gv| gv.version == *v)))
}
