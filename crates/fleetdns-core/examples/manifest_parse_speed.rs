//! Parses every `.yaml` file under a folder as the manifest-file source does (cut at `---`
//! lines, each document read by the YAML fast path and the Kubernetes shapes fleetdns reads
//! deserialized from its nodes) and prints MB/s, documents, how many took the YAML fast path,
//! and objects.
//!
//!     cargo run --release -p fleetdns-core --features fuzzing --example manifest_parse_speed -- DIR [--value|--saphyr]
//!
//! `--value`: the fast path to a `serde_json::Value`, then the shapes from the value (what the
//! source did before it read the nodes); `--saphyr`: serde-saphyr for every document (what the
//! source did before the fast path). Run it under `/usr/bin/time -v` for CPU time.

use std::path::{Path, PathBuf};
use std::time::Instant;

use fleetdns_core::fuzzing::{cut_documents, saphyr_documents};
use fleetdns_core::kube::{EndpointSlice, Service, ServiceExport};
use fleetdns_core::service_entry::ServiceEntryObject;
use fleetdns_core::yaml_subset;
use serde_json::Value;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Deserializes one object from a fast-path node into its shape; `true` when it is a kind
/// fleetdns reads.
fn typed_from_node(node: yaml_subset::NodeRef<'_>) -> bool {
    let kind = node
        .get("kind")
        .and_then(yaml_subset::NodeRef::as_str)
        .unwrap_or_default();
    match kind {
        "Service" => yaml_subset::from_node::<Service>(node).is_ok(),
        "EndpointSlice" => yaml_subset::from_node::<EndpointSlice>(node).is_ok(),
        "ServiceExport" => yaml_subset::from_node::<ServiceExport>(node).is_ok(),
        "ServiceEntry" => yaml_subset::from_node::<ServiceEntryObject>(node).is_ok(),
        _ => false,
    }
}

/// Deserializes one object into its shape; `true` when it is a kind fleetdns reads.
fn typed(value: Value) -> bool {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind {
        "Service" => serde_json::from_value::<Service>(value).is_ok(),
        "EndpointSlice" => serde_json::from_value::<EndpointSlice>(value).is_ok(),
        "ServiceExport" => serde_json::from_value::<ServiceExport>(value).is_ok(),
        "ServiceEntry" => serde_json::from_value::<ServiceEntryObject>(value).is_ok(),
        _ => false,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: manifest_parse_speed DIR [--value|--saphyr]"),
    );
    let mode = args.next().unwrap_or_default();
    let (saphyr_only, by_value) = (mode == "--saphyr", mode == "--value");
    let mut paths = Vec::new();
    yaml_files(&dir, &mut paths);
    paths.sort();
    let texts: Vec<String> = paths
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read a manifest"))
        .collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let (mut documents, mut fast, mut objects) = (0usize, 0usize, 0usize);
    let start = Instant::now();
    for text in &texts {
        for doc in cut_documents(text) {
            documents += 1;
            if !saphyr_only
                && !by_value
                && let Some(read) = yaml_subset::read_document(doc)
            {
                fast += 1;
                objects += usize::from(typed_from_node(read.root()));
                continue;
            }
            let values = match yaml_subset::parse_document(doc).filter(|_| !saphyr_only) {
                Some(value) => {
                    fast += 1;
                    vec![value]
                }
                None => saphyr_documents(doc)
                    .expect("the manifest parses")
                    .into_iter()
                    .map(|d| d.value)
                    .collect(),
            };
            objects += values.into_iter().map(typed).filter(|&read| read).count();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{} files, {:.1} MB in {seconds:.2} s: {:.1} MB/s; {documents} documents, {fast} by the fast path; {objects} objects",
        paths.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / seconds,
    );
}
