//! `[[sources]]`: where exports come from (manifest folders, Kubernetes API servers).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use fleetdns_core::ClusterId;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    Files(FilesSourceConfig),
    Kubernetes(KubernetesSourceConfig),
}

/// One cluster's Kubernetes API (SPEC §5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSourceConfig {
    /// Else the ClusterProperty `cluster.clusterset.k8s.io` (MCS-6).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Relative to the config file; else `KUBECONFIG`, else the in-cluster service account.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub context: Option<String>,
    /// Write ServiceExport status, ServiceImports and EndpointSlices; `false` for read-only
    /// credentials.
    #[serde(default = "yes")]
    pub write_back: bool,
    /// The clusterset named in the owner label of what write-back writes; garbage collection
    /// deletes only objects with it. Else the ClusterProperty `clusterset.k8s.io` (MCS-7),
    /// else `default`.
    #[serde(default)]
    pub clusterset: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSourceConfig {
    /// One sub-folder per cluster id; relative to the config file.
    pub path: PathBuf,
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
}

fn default_poll_ms() -> u64 {
    250
}

/// A checked source.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Files {
        root: PathBuf,
        interval: Duration,
    },
    Kubernetes {
        cluster_id: Option<ClusterId>,
        /// `None`: `KUBECONFIG` or in-cluster, resolved when the source starts.
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
        write_back: bool,
        /// A valid label value.
        clusterset: Option<String>,
    },
}

/// Checks `[[sources]]`: paths made absolute, cluster ids and clusterset names valid, and no
/// two Kubernetes sources claiming one cluster id. Errors name the key.
pub(super) fn check(
    raw: Vec<SourceConfig>,
    path: &Path,
    base: &Path,
) -> anyhow::Result<Vec<Source>> {
    let relative = |p: PathBuf| super::relative_to(base, p);
    let mut sources = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        sources.push(match s {
                SourceConfig::Files(f) => Source::Files {
                    root: relative(f.path),
                    interval: Duration::from_millis(f.poll_interval_ms.max(10)),
                },
                SourceConfig::Kubernetes(k) => Source::Kubernetes {
                    cluster_id: match k.cluster_id.as_deref() {
                        Some(id) => Some(ClusterId::new(id).with_context(|| {
                            format!("{}: sources[{i}].cluster_id", path.display())
                        })?),
                        None => None,
                    },
                    kubeconfig: k.kubeconfig.map(relative),
                    context: k.context,
                    write_back: k.write_back,
                    clusterset: match k.clusterset {
                        Some(name) if fleetdns_k8s::imports::owner_label_value(&name) != name => {
                            bail!(
                                "{}: sources[{i}].clusterset {name:?} is not a label value (at most 63 of A-Za-z0-9-_., alphanumeric at both ends)",
                                path.display()
                            )
                        }
                        name => name,
                    },
                },
            });
    }
    let mut ids = BTreeSet::new();
    for s in &sources {
        if let Source::Kubernetes {
            cluster_id: Some(id),
            ..
        } = s
            && !ids.insert(id.clone())
        {
            bail!(
                "{}: two kubernetes sources claim cluster_id {id:?}",
                path.display()
            );
        }
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use fleetdns_core::ClusterId;

    use super::super::testing::parse;
    use super::Source;

    #[test]
    fn kubernetes_sources_parse_with_defaults_and_checked_ids() {
        let text = r#"
[[sources]]
kind = "kubernetes"
cluster_id = "cluster1"
kubeconfig = "kube/c1.yaml"
context = "c1"
clusterset = "blue"
[[sources]]
kind = "kubernetes"
write_back = false
"#;
        let c = parse(text).unwrap();
        assert_eq!(
            c.sources[0],
            Source::Kubernetes {
                cluster_id: Some(ClusterId::new("cluster1").unwrap()),
                kubeconfig: Some(PathBuf::from("/etc/fleetdns/kube/c1.yaml")),
                context: Some("c1".into()),
                write_back: true,
                clusterset: Some("blue".into()),
            }
        );
        assert_eq!(
            c.sources[1],
            Source::Kubernetes {
                cluster_id: None,
                kubeconfig: None,
                context: None,
                write_back: false,
                clusterset: None,
            }
        );
        for (bad, needle) in [
            (
                "[[sources]]\nkind = \"kubernetes\"\ncluster_id = \"Not_A_Label\"",
                "sources[0].cluster_id",
            ),
            (
                "[[sources]]\nkind = \"kubernetes\"\nkubecfg = \"x\"",
                "kubecfg",
            ),
            (
                "[[sources]]\nkind = \"kubernetes\"\nclusterset = \"a/b\"",
                "sources[0].clusterset",
            ),
            (
                "[[sources]]\nkind = \"kubernetes\"\ncluster_id = \"a\"\n[[sources]]\nkind = \"kubernetes\"\ncluster_id = \"a\"",
                "two kubernetes sources",
            ),
        ] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
