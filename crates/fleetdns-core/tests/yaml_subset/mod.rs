//! The YAML fast path against serde-saphyr on real manifests: every document the fast path
//! accepts in the fuzz corpus, the repository's manifests and `bench/gen.py`'s output must be
//! exactly what serde-saphyr reads (`fuzzing::check_yaml_subset` panics otherwise), and the
//! manifests fleetdns is benchmarked with must all take the fast path.

use std::path::{Path, PathBuf};
use std::process::Command;

use fleetdns_core::fuzzing::{check_yaml_subset, cut_documents};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file under `dir` (recursively) whose name ends in one of `suffixes`, sorted.
fn files(dir: &Path, suffixes: &[&str], out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, suffixes, out);
        } else if suffixes.iter().any(|s| path.to_string_lossy().ends_with(s)) {
            out.push(path);
        }
    }
}

/// Checks every file; returns (documents, documents the fast path accepted).
fn check(paths: &[PathBuf]) -> (usize, usize) {
    assert!(!paths.is_empty());
    let (mut documents, mut accepted) = (0, 0);
    for path in paths {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // not UTF-8: the source refuses it before any YAML
        };
        documents += cut_documents(&text).len();
        accepted += check_yaml_subset(&text);
    }
    (documents, accepted)
}

#[test]
fn the_fuzz_corpus_reads_as_serde_saphyr_reads_it() {
    let mut paths = Vec::new();
    files(&repo().join("fuzz/corpus/manifest"), &[""], &mut paths);
    let (documents, accepted) = check(&paths);
    assert!(accepted > 0, "{accepted} of {documents}");
}

#[test]
fn the_repositorys_manifests_read_as_serde_saphyr_reads_them() {
    let mut paths = Vec::new();
    files(&repo().join("examples"), &[".yaml", ".yml"], &mut paths);
    let (documents, accepted) = check(&paths);
    // The demo's EndpointSlices and ServiceEntries hold flow mappings (`{ready: true}`),
    // which the fast path declines.
    assert!(accepted > documents / 2, "{accepted} of {documents}");
    let mut deploy = Vec::new();
    files(&repo().join("deploy"), &[".yaml", ".yml"], &mut deploy);
    check(&deploy);
}

#[test]
fn bench_gen_output_takes_the_fast_path_and_reads_as_serde_saphyr_reads_it() {
    let out = std::env::temp_dir().join(format!("fleetdns-yaml-subset-{}", std::process::id()));
    let status = Command::new("python3")
        .arg(repo().join("bench/gen.py"))
        .args([
            "--clusters",
            "2",
            "--services",
            "300",
            "--queries",
            "10",
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("python3 runs bench/gen.py (scripts/deps.sh installs it)");
    assert!(status.success());
    let mut paths = Vec::new();
    files(&out.join("fleet/clusters"), &[".yaml"], &mut paths);
    let result = check(&paths);
    std::fs::remove_dir_all(&out).expect("remove the generated fleet");
    let (documents, accepted) = result;
    assert_eq!(
        documents,
        2 * 300 * 3,
        "a Service, ServiceExport, EndpointSlice each"
    );
    assert_eq!(accepted, documents);
}
