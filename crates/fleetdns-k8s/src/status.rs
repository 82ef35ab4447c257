//! ServiceExport status conditions (MCS-2, MCS-20..24), as pure functions: what a cluster's
//! ServiceExport should say, given its translation and the merged fleet.

use fleetdns_core::ClusterId;
use fleetdns_core::merge::MergedService;
use fleetdns_core::translate::Invalid;
use serde_json::{Value, json};

/// One `metav1.Condition`, without its transition time (kept from the object when the status
/// did not change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

/// A condition as read from an object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Option<String>,
}

/// Why a ServiceExport's spec cannot be read, if it cannot. MCS-1: `spec` is optional, with
/// optional `exportedLabels` and `exportedAnnotations`, each a map of strings. `object` is
/// the object without its metadata (kube's `DynamicObject::data`).
pub fn export_spec_problem(object: &Value) -> Option<String> {
    let spec = match object.get("spec") {
        None | Some(Value::Null) => return None,
        Some(Value::Object(spec)) => spec,
        Some(other) => return Some(format!("spec is not an object: {other}")),
    };
    for field in ["exportedLabels", "exportedAnnotations"] {
        match spec.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) if map.values().all(Value::is_string) => {}
            Some(other) => {
                return Some(format!("spec.{field} is not a map of strings: {other}"));
            }
        }
    }
    None
}

/// Reads `status.conditions` of an object; anything malformed reads as absent.
pub fn observed_conditions(object: &Value) -> Vec<Observed> {
    let Some(list) = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
    list.iter()
        .filter_map(|c| {
            Some(Observed {
                type_: text(c, "type")?,
                status: text(c, "status").unwrap_or_default(),
                reason: text(c, "reason").unwrap_or_default(),
                message: text(c, "message").unwrap_or_default(),
                last_transition_time: text(c, "lastTransitionTime"),
            })
        })
        .collect()
}

/// The conditions of `cluster`'s ServiceExport of a service: `Valid`, `Ready`, `Conflict`.
/// `invalid` is why the translation refused it; `merged` is the fleet's view of the service
/// (`None` while the registry has not merged it yet).
pub fn export_conditions(
    cluster: &ClusterId,
    invalid: Option<&Invalid>,
    merged: Option<&MergedService>,
) -> Vec<Condition> {
    if let Some(why) = invalid {
        return vec![
            Condition {
                type_: "Valid",
                status: "False",
                reason: why.reason().to_owned(),
                message: why.to_string(),
            },
            Condition {
                type_: "Ready",
                status: "False",
                reason: "Failed".into(),
                message: "not exported: the ServiceExport is not valid".into(),
            },
            no_conflicts(),
        ];
    }
    let valid = Condition {
        type_: "Valid",
        status: "True",
        reason: "Valid".into(),
        message: "the Service can be exported".into(),
    };
    let Some(merged) = merged else {
        return vec![
            valid,
            Condition {
                type_: "Ready",
                status: "Unknown",
                reason: "Pending".into(),
                message: "waiting for the clusterset registry to merge this export".into(),
            },
            no_conflicts(),
        ];
    };
    let member = merged.members.iter().any(|e| &e.cluster == cluster);
    let excluded = merged.excluded.iter().any(|e| &e.cluster == cluster);
    let clusters: Vec<&str> = merged.members.iter().map(|e| e.cluster.as_str()).collect();
    let ready = if member {
        Condition {
            type_: "Ready",
            status: "True",
            reason: "Exported".into(),
            message: format!(
                "exported as {} {}/{}, served from {}",
                merged.service_type,
                merged.key.namespace(),
                merged.key.name(),
                clusters.join(", ")
            ),
        }
    } else if excluded {
        Condition {
            type_: "Ready",
            status: "False",
            reason: "Failed".into(),
            message: format!(
                "not exported: its type conflicts with the clusterset's {} (see Conflict)",
                merged.service_type
            ),
        }
    } else {
        Condition {
            type_: "Ready",
            status: "Unknown",
            reason: "Pending".into(),
            message: "waiting for the clusterset registry to merge this export".into(),
        }
    };
    // MCS-20: a conflict is reported on every ServiceExport of the service.
    let conflict = match merged.conflicts.first() {
        None => no_conflicts(),
        Some(first) => Condition {
            type_: "Conflict",
            status: "True",
            reason: first.kind.reason().to_owned(),
            message: merged
                .conflicts
                .iter()
                .map(|c| format!("{}: {}", c.kind.reason(), c.message))
                .collect::<Vec<_>>()
                .join("; "),
        },
    };
    vec![valid, ready, conflict]
}

fn no_conflicts() -> Condition {
    Condition {
        type_: "Conflict",
        status: "False",
        reason: "NoConflicts".into(),
        message: "no conflicts with other clusters' exports".into(),
    }
}

/// Whether the observed conditions already say what `desired` says (time aside).
pub fn up_to_date(observed: &[Observed], desired: &[Condition]) -> bool {
    desired.iter().all(|d| {
        observed.iter().any(|o| {
            o.type_ == d.type_
                && o.status == d.status
                && o.reason == d.reason
                && o.message == d.message
        })
    })
}

/// The `status` of an apply patch: transition times are kept where the status did not change.
pub fn status_patch(observed: &[Observed], desired: &[Condition], now: &str) -> Value {
    let conditions: Vec<Value> = desired
        .iter()
        .map(|d| {
            let since = observed
                .iter()
                .find(|o| o.type_ == d.type_ && o.status == d.status)
                .and_then(|o| o.last_transition_time.clone())
                .unwrap_or_else(|| now.to_owned());
            json!({
                "type": d.type_,
                "status": d.status,
                "reason": d.reason,
                "message": d.message,
                "lastTransitionTime": since,
            })
        })
        .collect();
    json!({ "conditions": conditions })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fleetdns_core::merge::merge_service;
    use fleetdns_core::model::{Export, Port, Protocol, ServiceType};
    use fleetdns_core::{ServiceKey, Timestamp};

    use super::*;

    fn id(s: &str) -> ClusterId {
        ClusterId::new(s).unwrap()
    }

    fn export(cluster: &str, created: i64, ty: ServiceType, port: u16) -> Arc<Export> {
        Arc::new(Export {
            key: ServiceKey::new("default", "web").unwrap(),
            cluster: id(cluster),
            service_type: ty,
            ports: vec![Port {
                name: Some("http".into()),
                protocol: Protocol::Tcp,
                port,
                app_protocol: None,
            }]
            .into(),
            cluster_ips: if ty == ServiceType::ClusterSetIp {
                vec!["10.0.0.1".parse().unwrap()].into()
            } else {
                vec![].into()
            },
            endpoints: vec![].into(),
            created: Timestamp(created),
        })
    }

    fn get<'a>(c: &'a [Condition], t: &str) -> &'a Condition {
        c.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn mcs_1_a_service_export_spec_is_read_or_refused_with_why() {
        for readable in [
            json!({}),
            json!({"spec": null}),
            json!({"spec": {}}),
            json!({"spec": {"exportedLabels": {"team": "a"}, "exportedAnnotations": null}}),
            json!({"spec": {"somethingNewer": [1]}}),
        ] {
            assert_eq!(export_spec_problem(&readable), None, "{readable}");
        }
        for (bad, says) in [
            (json!({"spec": "web"}), "spec is not an object"),
            (json!({"spec": []}), "spec is not an object"),
            (
                json!({"spec": {"exportedLabels": ["team"]}}),
                "spec.exportedLabels is not a map of strings",
            ),
            (
                json!({"spec": {"exportedAnnotations": {"n": 1}}}),
                "spec.exportedAnnotations is not a map of strings",
            ),
        ] {
            let problem = export_spec_problem(&bad).unwrap_or_default();
            assert!(problem.starts_with(says), "{bad}: {problem}");
        }
        let why = Invalid::BadExport {
            key: "default/web".into(),
            reason: "spec is not an object: \"web\"".into(),
        };
        let c = export_conditions(&id("a"), Some(&why), None);
        assert_eq!(get(&c, "Valid").status, "False");
        assert_eq!(get(&c, "Valid").reason, "InvalidServiceExport");
        assert!(get(&c, "Valid").message.contains("spec is not an object"));
        assert_eq!(get(&c, "Ready").status, "False");
    }

    #[test]
    fn mcs_2_external_name_is_invalid_service_type() {
        let why = Invalid::ExternalName {
            key: "default/web".into(),
        };
        let c = export_conditions(&id("a"), Some(&why), None);
        assert_eq!(get(&c, "Valid").status, "False");
        assert_eq!(get(&c, "Valid").reason, "InvalidServiceType");
        assert_eq!(get(&c, "Ready").status, "False");
        assert_eq!(get(&c, "Conflict").reason, "NoConflicts");
    }

    #[test]
    fn mcs_2_missing_service_is_no_service() {
        let why = Invalid::NoService {
            key: "default/web".into(),
        };
        let c = export_conditions(&id("a"), Some(&why), None);
        assert_eq!(
            (get(&c, "Valid").status, get(&c, "Valid").reason.as_str()),
            ("False", "NoService")
        );
    }

    #[test]
    fn a_clean_export_is_valid_ready_without_conflict() {
        let merged = merge_service(vec![export("a", 1, ServiceType::ClusterSetIp, 80)]).unwrap();
        let c = export_conditions(&id("a"), None, Some(&merged));
        assert_eq!(get(&c, "Valid").reason, "Valid");
        assert_eq!(
            (get(&c, "Ready").status, get(&c, "Ready").reason.as_str()),
            ("True", "Exported")
        );
        assert_eq!(
            (
                get(&c, "Conflict").status,
                get(&c, "Conflict").reason.as_str()
            ),
            ("False", "NoConflicts")
        );
    }

    #[test]
    fn mcs_20_type_conflict_is_on_every_export_and_the_newer_is_not_ready() {
        let merged = merge_service(vec![
            export("a", 1, ServiceType::ClusterSetIp, 80),
            export("b", 2, ServiceType::Headless, 80),
        ])
        .unwrap();
        for cluster in ["a", "b"] {
            let c = export_conditions(&id(cluster), None, Some(&merged));
            let conflict = get(&c, "Conflict");
            assert_eq!(
                (conflict.status, conflict.reason.as_str()),
                ("True", "TypeConflict")
            );
            // The message names the field, the winner and why.
            assert!(
                conflict.message.contains("service type"),
                "{}",
                conflict.message
            );
            assert!(
                conflict.message.contains("a exports it as ClusterSetIP"),
                "{}",
                conflict.message
            );
            assert!(conflict.message.contains("oldest"), "{}", conflict.message);
        }
        let winner = export_conditions(&id("a"), None, Some(&merged));
        assert_eq!(get(&winner, "Ready").status, "True");
        let loser = export_conditions(&id("b"), None, Some(&merged));
        assert_eq!(
            (
                get(&loser, "Ready").status,
                get(&loser, "Ready").reason.as_str()
            ),
            ("False", "Failed")
        );
    }

    #[test]
    fn mcs_21_port_conflict() {
        let merged = merge_service(vec![
            export("a", 1, ServiceType::ClusterSetIp, 80),
            export("b", 2, ServiceType::ClusterSetIp, 8080),
        ])
        .unwrap();
        let c = export_conditions(&id("b"), None, Some(&merged));
        assert_eq!(get(&c, "Conflict").reason, "PortConflict");
        assert!(get(&c, "Conflict").message.contains("ports"));
        assert_eq!(get(&c, "Ready").status, "True");
    }

    #[test]
    fn not_yet_merged_is_pending() {
        let c = export_conditions(&id("a"), None, None);
        assert_eq!(
            (get(&c, "Ready").status, get(&c, "Ready").reason.as_str()),
            ("Unknown", "Pending")
        );
    }

    #[test]
    fn written_only_when_changed_and_transition_times_kept() {
        let merged = merge_service(vec![export("a", 1, ServiceType::ClusterSetIp, 80)]).unwrap();
        let desired = export_conditions(&id("a"), None, Some(&merged));
        let first = status_patch(&[], &desired, "2026-01-01T00:00:00Z");
        let object = json!({ "status": first });
        let observed = observed_conditions(&object);
        assert!(up_to_date(&observed, &desired));
        // A new conflict: Conflict changes status (new time), Valid keeps its time.
        let merged2 = merge_service(vec![
            export("a", 1, ServiceType::ClusterSetIp, 80),
            export("b", 2, ServiceType::ClusterSetIp, 81),
        ])
        .unwrap();
        let desired2 = export_conditions(&id("a"), None, Some(&merged2));
        assert!(!up_to_date(&observed, &desired2));
        let second = status_patch(&observed, &desired2, "2026-02-02T00:00:00Z");
        let times: Vec<(&str, &str)> = second["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap(),
                    c["lastTransitionTime"].as_str().unwrap(),
                )
            })
            .collect();
        assert!(
            times.contains(&("Valid", "2026-01-01T00:00:00Z")),
            "{times:?}"
        );
        assert!(
            times.contains(&("Conflict", "2026-02-02T00:00:00Z")),
            "{times:?}"
        );
    }

    #[test]
    fn malformed_status_reads_as_no_conditions() {
        for bad in [
            json!({}),
            json!({"status": 3}),
            json!({"status": {"conditions": "x"}}),
            json!({"status": {"conditions": [1, {"status": "True"}]}}),
        ] {
            assert!(observed_conditions(&bad).is_empty(), "{bad}");
        }
    }
}
