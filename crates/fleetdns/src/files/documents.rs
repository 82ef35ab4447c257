//! A changed YAML manifest file parsed document by document, each document only when its text
//! is new: an edit of one Service in a 50-document file parses that document (~1.6 KB) instead
//! of the whole file (~80 KB, ~10 ms of YAML). The documents a file's last version had are
//! copied from what it parsed to.
//!
//! A file is cut at its `---` lines, where YAML itself starts a document (a `---` at the start
//! of a line ends any block scalar; YAML forbids such a line inside one). Files with
//! directives (`%YAML`) or `...` end markers, and JSON files, are parsed whole and not reused.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;

use super::{ClusterManifests, ManifestError, parse_file};

/// One document of a file: a hash of its text and how many services, slices, exports and
/// entries it holds, in the file's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DocShape {
    pub(super) hash: u64,
    counts: [u32; 4],
}

/// The documents of `text` as byte ranges, or `None` when the file is not cut (JSON, YAML
/// directives or `...` document ends).
fn split(text: &str) -> Option<Vec<std::ops::Range<usize>>> {
    if text.trim_start().starts_with(['{', '[']) {
        return None;
    }
    let mut docs = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if body.starts_with('%') || is_marker(body, "...") {
            return None;
        }
        if is_marker(body, "---") && at > start {
            docs.push(start..at);
            start = at;
        }
        at += line.len();
    }
    if at > start {
        docs.push(start..at);
    }
    Some(docs)
}

/// Whether a line is the marker (alone, or followed by a space or tab and content).
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

fn hash_of(text: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// What reading a changed file found: the objects of the documents parsed now, and every
/// document's shape; a document with `None` counts is one the file's last version had (its
/// objects are copied from there by [`assemble`]).
#[derive(Debug)]
pub(super) struct FileRead {
    fresh: ClusterManifests,
    docs: Vec<(u64, Option<[u32; 4]>)>,
    /// Parsed whole (not cut into documents): `docs` is empty.
    whole: bool,
}

impl FileRead {
    /// How many documents were parsed (a file read whole counts once).
    pub(super) fn parsed(&self) -> usize {
        if self.whole {
            return 1;
        }
        self.docs.iter().filter(|(_, c)| c.is_some()).count()
    }
}

/// Parses `text`, skipping the documents whose hash is in `known` (the last version's).
pub(super) fn read(path: &Path, text: &str, known: &[u64]) -> Result<FileRead, ManifestError> {
    let Some(ranges) = split(text) else {
        return Ok(FileRead {
            fresh: parse_file(path, text)?,
            docs: Vec::new(),
            whole: true,
        });
    };
    let known: HashSet<u64> = known.iter().copied().collect();
    let mut fresh = ClusterManifests::default();
    let mut docs = Vec::with_capacity(ranges.len());
    for range in ranges {
        let doc = &text[range];
        let hash = hash_of(doc);
        if known.contains(&hash) {
            docs.push((hash, None));
            continue;
        }
        // A document's errors name lines of the document: the whole file is parsed again for
        // the error the reader sees (only when there is one).
        let Ok(mut parsed) = parse_file(path, doc) else {
            return Err(parse_file(path, text)
                .err()
                .unwrap_or_else(|| ManifestError {
                    file: path.to_owned(),
                    line: 0,
                    reason: "a document does not parse on its own (YAML anchors across documents?)"
                        .into(),
                }));
        };
        let counts = parsed.counts.map(|n| n as u32);
        fresh.append(&mut parsed);
        docs.push((hash, Some(counts)));
    }
    Ok(FileRead {
        fresh,
        docs,
        whole: false,
    })
}

/// A file's objects from what [`read`] found and the file's last version: documents parsed now
/// are moved in, documents the last version had are copied from it. `Err(hash)` when `last`
/// has no document with that hash (it changed after the read started).
pub(super) fn assemble(
    read: FileRead,
    last: Option<&ClusterManifests>,
) -> Result<ClusterManifests, u64> {
    let FileRead {
        mut fresh,
        docs,
        whole,
    } = read;
    if whole {
        fresh.shrink_to_fit();
        fresh.counts = count(&fresh);
        return Ok(fresh);
    }
    // Where each document of the last version starts in its object lists.
    let mut index: HashMap<u64, ([usize; 4], [u32; 4])> = HashMap::new();
    if let Some(last) = last {
        let mut at = [0usize; 4];
        for shape in &last.docs {
            index.entry(shape.hash).or_insert((at, shape.counts));
            for (a, n) in at.iter_mut().zip(shape.counts) {
                *a += n as usize;
            }
        }
    }
    // The documents parsed now, in file order: each takes the next objects of each kind.
    let mut services = std::mem::take(&mut fresh.objects.services).into_iter();
    let mut slices = std::mem::take(&mut fresh.objects.endpoint_slices).into_iter();
    let mut exports = std::mem::take(&mut fresh.objects.service_exports).into_iter();
    let mut entries = std::mem::take(&mut fresh.service_entries).into_iter();
    // The file's objects live until it changes: their vectors are made to measure (grown by
    // pushes they kept up to half again as much room, 40 MB at 165 000 services).
    let mut total = [0usize; 4];
    for (hash, counts) in &docs {
        let counts = counts.or_else(|| index.get(hash).map(|(_, c)| *c));
        for (t, n) in total.iter_mut().zip(counts.unwrap_or_default()) {
            *t += n as usize;
        }
    }
    let mut out = ClusterManifests::default();
    out.objects.services.reserve_exact(total[0]);
    out.objects.endpoint_slices.reserve_exact(total[1]);
    out.objects.service_exports.reserve_exact(total[2]);
    out.service_entries.reserve_exact(total[3]);
    out.docs.reserve_exact(docs.len());
    for (hash, counts) in docs {
        let counts = match counts {
            Some(counts) => {
                let n = counts.map(|c| c as usize);
                let o = &mut out.objects;
                o.services.extend(services.by_ref().take(n[0]));
                o.endpoint_slices.extend(slices.by_ref().take(n[1]));
                o.service_exports.extend(exports.by_ref().take(n[2]));
                out.service_entries.extend(entries.by_ref().take(n[3]));
                counts
            }
            None => {
                let (from, counts) = index.get(&hash).copied().ok_or(hash)?;
                let last = last.ok_or(hash)?;
                let n = counts.map(|c| c as usize);
                let (l, o) = (&last.objects, &mut out.objects);
                o.services
                    .extend_from_slice(&l.services[from[0]..from[0] + n[0]]);
                o.endpoint_slices
                    .extend_from_slice(&l.endpoint_slices[from[1]..from[1] + n[1]]);
                o.service_exports
                    .extend_from_slice(&l.service_exports[from[2]..from[2] + n[2]]);
                out.service_entries
                    .extend_from_slice(&last.service_entries[from[3]..from[3] + n[3]]);
                counts
            }
        };
        out.docs.push(DocShape { hash, counts });
    }
    out.counts = count(&out);
    Ok(out)
}

fn count(m: &ClusterManifests) -> [usize; 4] {
    [
        m.objects.services.len(),
        m.objects.endpoint_slices.len(),
        m.objects.service_exports.len(),
        m.service_entries.len(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Option<Vec<&str>> {
        split(text).map(|r| r.into_iter().map(|r| &text[r]).collect())
    }

    #[test]
    fn a_file_is_cut_at_its_document_markers() {
        assert_eq!(
            texts("a: 1\n---\nb: 2\n--- # c\nc: 3\n"),
            Some(vec!["a: 1\n", "---\nb: 2\n", "--- # c\nc: 3\n"])
        );
        assert_eq!(texts("---\na: 1\n"), Some(vec!["---\na: 1\n"]));
        assert_eq!(texts(""), Some(vec![]));
        // not markers: indented, or `---` followed by more dashes or text
        assert_eq!(
            texts("a: |\n  ---\nb: ----\n---x: 1\n"),
            Some(vec!["a: |\n  ---\nb: ----\n---x: 1\n"])
        );
        assert_eq!(texts("%YAML 1.2\n---\na: 1\n"), None, "directives");
        assert_eq!(texts("a: 1\n...\n---\nb: 1\n"), None, "document ends");
        assert_eq!(texts("{\"kind\": \"List\"}"), None, "JSON");
    }

    #[test]
    fn an_error_in_one_document_names_the_line_of_the_file() {
        let path = Path::new("m.yaml");
        let good = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\n";
        let text = format!("{good}---\n{good}---\nkind: [unclosed\n");
        let whole = parse_file(path, &text).unwrap_err();
        let by_document = read(path, &text, &[]).unwrap_err();
        assert_eq!(by_document, whole);
        assert!(whole.line >= 9, "{whole}");
    }
}
