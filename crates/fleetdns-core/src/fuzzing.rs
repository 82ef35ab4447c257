//! Fuzz harness bodies (feature `fuzzing`): manifest files and Kubernetes objects through the
//! one translation every source uses, then merged and planned as a server would. The
//! cargo-fuzz targets in `fuzz/` call them, and `tests/rules.rs` feeds every committed corpus
//! file (`fuzz/corpus/<target>/`) through them as an ordinary test. A panic is a finding.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::kube::ClusterObjects;
use crate::service_entry::{ServiceEntryObject, translate_service_entries};
use crate::translate::translate_cluster;
use crate::yaml_subset;
use crate::{ClusterId, ClusterView, FleetSnapshot, Timestamp, merge_fleet, mesh};

/// The objects of one cluster that the sources read, sorted by kind.
#[derive(Debug, Default)]
struct Objects {
    objects: ClusterObjects,
    entries: Vec<ServiceEntryObject>,
}

/// Sorts one object into `out` by `apiVersion` and `kind`, as the manifest-file source
/// (`crates/fleetdns/src/files.rs`) does: kinds not read are skipped, a `List` is unpacked, an
/// object of a read kind that does not deserialize is an error.
fn push_manifest_object(out: &mut Objects, value: Value) -> Result<(), String> {
    if value.is_null() {
        return Ok(());
    }
    let Value::Object(map) = &value else {
        return Err("a document must be a Kubernetes object (a mapping)".into());
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
    let (api, kind) = (text("apiVersion").to_owned(), text("kind").to_owned());
    if api.is_empty() || kind.is_empty() {
        return Err("object has no apiVersion or kind".into());
    }
    let bad = |e: serde_json::Error| format!("{kind} {api}: {e}");
    match (api.as_str(), kind.as_str()) {
        ("v1", "Service") => out
            .objects
            .services
            .push(serde_json::from_value(value).map_err(bad)?),
        ("discovery.k8s.io/v1", "EndpointSlice") => out
            .objects
            .endpoint_slices
            .push(serde_json::from_value(value).map_err(bad)?),
        ("multicluster.x-k8s.io/v1alpha1" | "multicluster.x-k8s.io/v1beta1", "ServiceExport") => {
            out.objects
                .service_exports
                .push(serde_json::from_value(value).map_err(bad)?);
        }
        (
            "networking.istio.io/v1"
            | "networking.istio.io/v1beta1"
            | "networking.istio.io/v1alpha3",
            "ServiceEntry",
        ) => out
            .entries
            .push(serde_json::from_value(value).map_err(bad)?),
        (_, "List") => {
            let Some(Value::Array(items)) = map.get("items").cloned() else {
                return Err("List has no items array".into());
            };
            for item in items {
                push_manifest_object(out, item)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Translates one cluster's objects as the sources do, merges the result into a fleet with a
/// second cluster holding the same exports, and plans the mesh names; checks what every
/// translation must give.
fn translate_and_merge(objects: &Objects) {
    let cluster = ClusterId::new("fuzz").expect("valid id");
    let mut first_seen: HashMap<String, Timestamp> = HashMap::new();
    let mut seen = |label: &str| {
        *first_seen
            .entry(label.to_owned())
            .or_insert(Timestamp(1_700_000_000))
    };
    let translated = translate_cluster(&cluster, &objects.objects, &mut seen);
    assert!(
        translated.exports.len() + translated.invalid.len()
            <= objects.objects.service_exports.len(),
        "every export or refusal comes from one ServiceExport"
    );
    for (key, export) in &translated.exports {
        assert_eq!(&export.key, key);
        assert_eq!(export.cluster, cluster);
    }
    for (_, why) in &translated.invalid {
        assert!(!why.reason().is_empty());
        let _ = why.to_string();
    }
    let (entries, _notes) = translate_service_entries(&cluster, &objects.entries, &mut |label| {
        seen(&format!("serviceentry/{label}"))
    });
    let mut snapshot = FleetSnapshot::default();
    for (id, alive) in [("fuzz", true), ("other", false)] {
        let id = ClusterId::new(id).expect("valid id");
        let exports = translated
            .exports
            .values()
            .map(|e| {
                let mut e = (**e).clone();
                e.cluster = id.clone();
                (e.key.clone(), Arc::new(e))
            })
            .collect();
        snapshot.clusters.insert(
            id,
            ClusterView {
                alive,
                exports: Arc::new(exports),
                published: Timestamp(1_700_000_000),
                service_entries: Arc::new(entries.clone()),
            },
        );
    }
    let merged = merge_fleet(&snapshot);
    assert!(merged.len() <= translated.exports.len());
    let _ = mesh::plan(&snapshot);
}

/// The documents of a manifest as serde-saphyr reads them with the manifest-file source's
/// budget, or its error.
pub fn saphyr_documents(
    text: &str,
) -> Result<Vec<serde_saphyr::Spanned<Value>>, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 200_000,
            max_nodes: 10_000_000,
            max_events: 40_000_000,
        },
    };
    serde_saphyr::from_multiple_with_options::<serde_saphyr::Spanned<Value>>(text, options)
}

/// The text cut before each `---` line, as the manifest-file source cuts a file into
/// documents (the first piece may hold only comments).
pub fn cut_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let (mut start, mut at) = (0, 0);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let marker = body
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
        if marker && at > start {
            docs.push(&text[start..at]);
            start = at;
        }
        at += line.len();
    }
    if at > start {
        docs.push(&text[start..at]);
    }
    docs
}

/// The differential check of the YAML fast path: each document of `text` that
/// [`yaml_subset::read_document`] accepts must be exactly what serde-saphyr reads from it, and
/// every shape the sources read must come out of its nodes ([`yaml_subset::from_node`]) as
/// out of serde-saphyr's `serde_json::Value`, or fail as it fails (a mismatch panics);
/// returns how many documents it accepted.
pub fn check_yaml_subset(text: &str) -> usize {
    let mut accepted = 0;
    for doc in cut_documents(text) {
        let Some(read) = yaml_subset::read_document(doc) else {
            continue;
        };
        let fast = read.root().to_value();
        assert_eq!(
            yaml_subset::parse_document(doc).as_ref(),
            Some(&fast),
            "{doc:?}"
        );
        accepted += 1;
        match saphyr_documents(doc) {
            Ok(docs) => {
                let values: Vec<&Value> = docs.iter().map(|d| &d.value).collect();
                assert!(
                    values == [&fast],
                    "the YAML fast path read {doc:?} as {fast:?}, serde-saphyr as {values:?}"
                );
            }
            Err(e) => {
                panic!("the YAML fast path read {doc:?} as {fast:?}, serde-saphyr refuses it: {e}")
            }
        }
        check_typed_reads(read.root(), &fast);
    }
    accepted
}

/// Every shape the sources read (and the values and lists inside them), from a fast-path node
/// and from its `serde_json::Value`: the same object, or an error from both (a mismatch
/// panics).
pub fn check_typed_reads(node: yaml_subset::NodeRef<'_>, value: &Value) {
    use crate::kube::{EndpointSlice, ObjectMeta, Service, ServiceExport, StringMap};
    use serde::Deserialize;

    fn same<'d, T>(node: yaml_subset::NodeRef<'d>, value: &'d Value)
    where
        T: Deserialize<'d> + PartialEq + std::fmt::Debug,
    {
        let fast = yaml_subset::from_node::<T>(node);
        let slow = T::deserialize(value);
        match (&fast, &slow) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}: {value}", std::any::type_name::<T>()),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "{}: from the nodes {fast:?}, from the value {slow:?}: {value}",
                std::any::type_name::<T>()
            ),
        }
    }
    same::<Service>(node, value);
    same::<EndpointSlice>(node, value);
    same::<ServiceExport>(node, value);
    same::<ServiceEntryObject>(node, value);
    same::<ObjectMeta>(node, value);
    same::<StringMap>(node, value);
    same::<Value>(node, value);
    same::<Option<Vec<String>>>(node, value);
    same::<Option<i64>>(node, value);
    same::<Option<u16>>(node, value);
    same::<Option<bool>>(node, value);
    same::<Option<String>>(node, value);
    same::<Option<f64>>(node, value);
    same::<()>(node, value);
    same::<std::collections::BTreeMap<String, Value>>(node, value);
    same::<(Value, Value)>(node, value);
    // The values inside, as the shapes' fields read them.
    if let (Some(items), Value::Array(values)) = (node.items(), value) {
        for (item, v) in items.zip(values) {
            check_typed_reads(item, v);
        }
    }
    if let Value::Object(map) = value {
        for (key, v) in map {
            let item = node.get(key).expect("the same keys");
            check_typed_reads(item, v);
        }
    }
}

/// A manifest file (YAML, JSON being YAML too): parsed as the manifest-file source parses
/// it (multi-document, serde-saphyr with the same budget), then translated. Every document
/// the YAML fast path accepts is checked against serde-saphyr ([`check_yaml_subset`]).
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // the source reads files as UTF-8 text: an error there
    };
    check_yaml_subset(text);
    let Ok(docs) = saphyr_documents(text) else {
        return;
    };
    let mut objects = Objects::default();
    for doc in docs {
        let _ = doc.referenced.line();
        if push_manifest_object(&mut objects, doc.value).is_err() {
            return; // one bad object fails the whole file
        }
    }
    translate_and_merge(&objects);
}

/// Kubernetes objects as the API server sends them (JSON): one object, an array, or a `List`.
/// Each is read by its `kind` as the watcher reads the object of its stream (deserialized
/// into the shared shapes; an object that does not deserialize is skipped and counted), then
/// translated.
pub fn kube_objects(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let items = match value {
        Value::Array(items) => items,
        Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
            match map.get("items") {
                Some(Value::Array(items)) => items.clone(),
                _ => return,
            }
        }
        other => vec![other],
    };
    let mut objects = Objects::default();
    for item in items {
        let kind = item.get("kind").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "Service" => {
                if let Ok(o) = serde_json::from_value(item) {
                    objects.objects.services.push(o);
                }
            }
            "EndpointSlice" => {
                if let Ok(o) = serde_json::from_value(item) {
                    objects.objects.endpoint_slices.push(o);
                }
            }
            "ServiceExport" => {
                if let Ok(o) = serde_json::from_value(item) {
                    objects.objects.service_exports.push(o);
                }
            }
            "ServiceEntry" => {
                if let Ok(o) = serde_json::from_value(item) {
                    objects.entries.push(o);
                }
            }
            _ => {}
        }
    }
    translate_and_merge(&objects);
}

/// Feeds every file of the committed corpus `fuzz/corpus/<target>/` to `harness` and fails
/// naming each file that panics: the corpora as an ordinary regression test, in each crate's
/// test binary.
pub fn run_corpus(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).expect("read a corpus file");
            std::panic::catch_unwind(|| harness(&data)).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: these inputs fail: {failed:#?}"
    );
}
