//! Every rule ID cited in `crates/` (tests and comments: `MCS-14`, `K8S-21`, ...) is defined
//! in docs/dns-rules.md, exactly once.
//!
//! The crate's one integration-test binary: the YAML fast path's differential test lives in
//! the `yaml_subset` module.

mod yaml_subset;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const PREFIXES: [&str; 7] = ["MCS", "K8S", "LH", "CMC", "IST", "XDNS", "CDNS"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The rule IDs in `text`: a known prefix, `-`, digits, not glued to a longer word.
fn rule_ids(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    for prefix in PREFIXES {
        let pattern = format!("{prefix}-");
        let mut from = 0;
        while let Some(at) = text[from..].find(&pattern) {
            let start = from + at;
            from = start + pattern.len();
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            let digits = text[from..].bytes().take_while(u8::is_ascii_digit).count();
            let after = bytes.get(from + digits).copied();
            if digits == 0 || after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
                continue;
            }
            found.push(format!("{prefix}-{}", &text[from..from + digits]));
        }
    }
    found.sort_by_key(|id| text.find(id.as_str()));
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// IDs defined by docs/dns-rules.md: the first cell of a table row, counted.
fn defined() -> BTreeMap<String, usize> {
    let doc = fs::read_to_string(repo_root().join("docs/dns-rules.md")).expect("docs/dns-rules.md");
    let mut ids = BTreeMap::new();
    for line in doc.lines() {
        let Some(row) = line.strip_prefix("| ") else {
            continue;
        };
        let first = row.split(" |").next().unwrap_or_default().trim();
        if rule_ids(first) == [first] {
            *ids.entry(first.to_owned()).or_insert(0) += 1;
        }
    }
    ids
}

#[test]
fn rule_ids_are_recognised_on_word_boundaries() {
    assert_eq!(
        rule_ids("MCS-14, K8S-21 and (LH-3)"),
        ["MCS-14", "K8S-21", "LH-3"]
    );
    assert!(rule_ids("XMCS-1 MCS-x MCS-1a").is_empty());
    assert_eq!(rule_ids("CDNS-13: loop"), ["CDNS-13"]);
}

#[test]
fn every_cited_rule_is_defined_once_in_docs_dns_rules() {
    let defined = defined();
    assert!(
        defined.len() > 100,
        "docs/dns-rules.md defines {} rules",
        defined.len()
    );
    let twice: Vec<_> = defined
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(twice.is_empty(), "defined more than once: {twice:?}");

    let mut files = Vec::new();
    rust_files(&repo_root().join("crates"), &mut files);
    assert!(
        files.len() > 20,
        "found the sources ({} files)",
        files.len()
    );
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("read a source file");
        for id in rule_ids(&text) {
            if !defined.contains_key(&id) {
                let shown = file
                    .strip_prefix(repo_root())
                    .unwrap_or(file)
                    .display()
                    .to_string();
                missing.entry(id).or_default().insert(shown);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "rule IDs cited in crates/ but not defined in docs/dns-rules.md: {missing:?}"
    );
}

/// The committed fuzz corpora (`fuzz/corpus/<target>/`, fuzz/README.md) as a regression suite:
/// every file through the same harness body the fuzz target runs. A file that panics is named.
mod fuzz_corpus {
    use fleetdns_core::fuzzing::run_corpus as run;

    #[test]
    fn manifest() {
        run("manifest", fleetdns_core::fuzzing::manifest);
    }

    #[test]
    fn kube_objects() {
        run("kube_objects", fleetdns_core::fuzzing::kube_objects);
    }
}
