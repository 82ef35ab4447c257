//! A manifest file cut into its YAML documents, and the documents decoded one by one: a
//! changed file parses only the documents whose text is new (an edit of one Service in a
//! 300-document file parses that document, ~1.6 KB, instead of the whole file, ~80 KB), and a
//! file whose objects are needed again decodes only the documents holding the services asked
//! for. Every decoded document also says which services it holds and a fingerprint of its
//! objects of each, so the folder tells which services really changed without keeping the
//! objects.
//!
//! A file is cut at its `---` lines, where YAML itself starts a document (a `---` at the start
//! of a line ends any block scalar; YAML forbids such a line inside one). Files with
//! directives (`%YAML`) or `...` end markers, and JSON files, are one document: parsed whole.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::path::Path;

use rustc_hash::FxHasher;

use fleetdns_core::translate::by_service::{ServiceName, named, slice_owner};

use fleetdns_core::yaml_subset;

use super::{ClusterManifests, ManifestError, ObjectSink, parse_file, parse_manifest_into};

/// The documents of `text` as byte ranges, or `None` when the file is not cut (JSON, YAML
/// directives or `...` document ends).
fn split(text: &str) -> Option<Vec<Range<usize>>> {
    if text.trim_start().starts_with(['{', '[']) {
        return None;
    }
    let bytes = text.as_bytes();
    // Only lines starting with `%`, `.` or `-` matter: found by searching for a line feed and
    // that byte together (many bytes at a time; the lines of manifests are short).
    let body_at = |at: usize| {
        let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |i| at + i);
        text[at..end].trim_end_matches(['\n', '\r'])
    };
    let starting = |first: &'static [u8], after_newline: &'static [u8]| {
        let at_start = bytes.starts_with(first).then_some(0);
        at_start
            .into_iter()
            .chain(memchr::memmem::find_iter(bytes, after_newline).map(|i| i + 1))
    };
    if starting(b"%", b"\n%").next().is_some()
        || starting(b".", b"\n.").any(|at| is_marker(body_at(at), "..."))
    {
        return None;
    }
    let mut docs = Vec::new();
    let mut start = 0;
    for at in starting(b"-", b"\n-") {
        if at > start && is_marker(body_at(at), "---") {
            docs.push(start..at);
            start = at;
        }
    }
    if bytes.len() > start {
        docs.push(start..bytes.len());
    }
    Some(docs)
}

/// The documents of `text` as byte ranges: a file that is not cut is one document.
pub(super) fn cut(text: &str) -> Vec<Range<usize>> {
    split(text).unwrap_or_else(|| std::iter::once(0..text.len()).collect())
}

/// Whether a line is the marker (alone, or followed by a space or tab and content).
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// A file's or a document's text hash, to tell changed text from text read before: 64 bits
/// of rustc-hash's byte hash (16 bytes a step, several times cheaper than SipHash; at
/// start-up every byte of the fleet is hashed twice, as a file and as a document). Not kept
/// beyond the process, and not a defence against crafted collisions (a writer of manifest
/// files controls their content anyway).
pub(super) fn hash_of(text: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(text.as_bytes());
    h.finish()
}

/// The services the objects of `m` from `from` on (one document's) belong to, in the order
/// they first appear, each with a fingerprint of its objects there (Services, then slices,
/// then ServiceExports, each kind in document order: what a translation reads of them),
/// appended to `held`; `by` is room for the hashers, kept between documents.
fn fingerprints(
    m: &ClusterManifests,
    from: [usize; 4],
    by: &mut Vec<(ServiceName, FxHasher)>,
    held: &mut Vec<(ServiceName, u64)>,
) {
    // FxHasher, not SipHash: every object of a fleet is hashed field by field at start-up, and
    // SipHash's cost per write made it a tenth of the read.
    by.clear();
    let mut feed = |name: ServiceName, kind: u8, object: &dyn Fn(&mut FxHasher)| {
        let at = match by.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                by.push((name, FxHasher::default()));
                by.len() - 1
            }
        };
        let hasher = &mut by[at].1;
        hasher.write_u8(kind);
        object(hasher);
    };
    for s in &m.objects.services[from[0]..] {
        feed(named(&s.metadata), 0, &|h| s.hash(h));
    }
    for s in &m.objects.endpoint_slices[from[1]..] {
        if let Some(owner) = slice_owner(s) {
            feed(owner, 1, &|h| s.hash(h));
        }
    }
    for e in &m.objects.service_exports[from[2]..] {
        feed(named(&e.metadata), 2, &|h| e.hash(h));
    }
    held.extend(by.drain(..).map(|(n, h)| (n, h.finish())));
}

/// One document decoded: its objects and the services they belong to.
struct DocDecoded {
    objects: ClusterManifests,
    held: Vec<(ServiceName, u64)>,
}

fn decode(path: &Path, text: &str) -> Result<DocDecoded, ManifestError> {
    let mut objects = ClusterManifests::default();
    let mut held = Vec::new();
    DocReader::default().decode_into(path, text, &mut objects, &mut held)?;
    Ok(DocDecoded { objects, held })
}

/// What decoding a file's documents one after the other keeps between them: the vectors the
/// YAML fast path reads into and the fingerprints' hashers, so that a document allocates
/// little beyond its objects.
#[derive(Default)]
struct DocReader<'a> {
    yaml: yaml_subset::Buffers<'a>,
    hashers: Vec<(ServiceName, FxHasher)>,
}

impl<'a> DocReader<'a> {
    /// Decodes one document, appending its objects to `objects` and its services to `held`
    /// (each kind in document order, as [`Decoded`] keeps them); on an error both may hold
    /// some of them.
    fn decode_into(
        &mut self,
        path: &Path,
        text: &'a str,
        objects: &mut ClusterManifests,
        held: &mut Vec<(ServiceName, u64)>,
    ) -> Result<DocCounts, ManifestError> {
        let from = objects.mark();
        let held_from = held.len();
        parse_manifest_into(path, text, &mut self.yaml, objects)?;
        fingerprints(objects, from, &mut self.hashers, held);
        let to = objects.mark();
        Ok(DocCounts {
            objects: std::array::from_fn(|i| u32::try_from(to[i] - from[i]).unwrap_or(u32::MAX)),
            held: u32::try_from(held.len() - held_from).unwrap_or(u32::MAX),
        })
    }
}

/// What one decoded document gave: how many services, slices, ServiceExports and
/// ServiceEntries, and how many services it holds.
#[derive(Debug, Clone, Copy)]
struct DocCounts {
    objects: [u32; 4],
    held: u32,
}

fn counts_of(m: &ClusterManifests) -> [u32; 4] {
    [
        m.objects.services.len(),
        m.objects.endpoint_slices.len(),
        m.objects.service_exports.len(),
        m.service_entries.len(),
    ]
    .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// A file's earlier decoding, and where each of its documents now is in it.
pub(super) type EarlierDecoding<'a> = (&'a Decoded, &'a dyn Fn(usize) -> Option<usize>);

/// Some of one file's documents decoded: their objects in file order, and the services each
/// holds with the fingerprint of its objects of each. Lives for one translation (or, when a
/// tap takes every object, with every document decoded, until the file changes).
#[derive(Debug, Default)]
pub(super) struct Decoded {
    pub(super) objects: ClusterManifests,
    /// Per document of the file, in order: what it decoded to, `None` when not decoded.
    docs: Vec<Option<DocCounts>>,
    /// The services of the decoded documents, document after document.
    held: Vec<(ServiceName, u64)>,
}

impl Decoded {
    /// A file of `docs` documents, none decoded yet.
    pub(super) fn undecoded(docs: usize) -> Self {
        Self {
            docs: vec![None; docs],
            ..Self::default()
        }
    }

    pub(super) fn is_decoded(&self, doc: usize) -> bool {
        self.docs.get(doc).is_some_and(Option::is_some)
    }

    /// Whether every document is decoded.
    pub(super) fn is_whole(&self) -> bool {
        self.docs.iter().all(Option::is_some)
    }

    /// Where each decoded document's objects start (services, slices, exports, entries) and
    /// its services in [`Decoded::held`]; `None` for documents not decoded.
    fn starts(&self) -> Vec<Option<([usize; 4], usize)>> {
        let mut at = ([0usize; 4], 0usize);
        self.docs
            .iter()
            .map(|d| {
                d.map(|c| {
                    let start = at;
                    for (a, n) in at.0.iter_mut().zip(c.objects) {
                        *a += n as usize;
                    }
                    at.1 += c.held as usize;
                    start
                })
            })
            .collect()
    }

    /// The services each document holds with their fingerprints there (`None` for documents
    /// not decoded).
    pub(super) fn held_by_doc(&self) -> Vec<Option<&[(ServiceName, u64)]>> {
        self.starts()
            .into_iter()
            .zip(&self.docs)
            .map(|(start, c)| {
                let ((_, h), c) = (start?, (*c)?);
                Some(&self.held[h..h + c.held as usize])
            })
            .collect()
    }

    /// The ServiceEntries of each decoded document (`None` for documents not decoded).
    pub(super) fn entries_by_doc(
        &self,
    ) -> Vec<Option<&[fleetdns_core::service_entry::ServiceEntryObject]>> {
        self.starts()
            .into_iter()
            .zip(&self.docs)
            .map(|(start, c)| {
                let ((o, _), c) = (start?, (*c)?);
                Some(&self.objects.service_entries[o[3]..o[3] + c.objects[3] as usize])
            })
            .collect()
    }

    /// Decodes the documents `wanted` names (in order, each once) that are not decoded yet,
    /// from the file's `text`
    /// (cut as [`cut`] cuts it), or copies them from `last`, the same file's earlier decoding,
    /// where `from_last` maps a document to its position there. Returns how many documents
    /// were parsed.
    pub(super) fn decode_more(
        &mut self,
        path: &Path,
        text: Option<&str>,
        wanted: &[usize],
        last: Option<EarlierDecoding<'_>>,
    ) -> Result<usize, ManifestError> {
        let ranges = text.map(cut);
        let last_starts = last.map(|(l, _)| l.starts());
        let mut added: Vec<(usize, DocDecoded)> = Vec::new();
        let mut parsed = 0;
        for &doc in wanted {
            if self.is_decoded(doc) {
                continue;
            }
            let copied = last
                .zip(last_starts.as_ref())
                .and_then(|((l, from_last), starts)| {
                    let at = from_last(doc)?;
                    let ((o, h), c) = (starts.get(at).copied().flatten()?, l.docs[at]?);
                    let n = c.objects.map(|n| n as usize);
                    let mut m = ClusterManifests::default();
                    let lo = &l.objects;
                    m.objects.services = lo.objects.services[o[0]..o[0] + n[0]].to_vec();
                    m.objects.endpoint_slices =
                        lo.objects.endpoint_slices[o[1]..o[1] + n[1]].to_vec();
                    m.objects.service_exports =
                        lo.objects.service_exports[o[2]..o[2] + n[2]].to_vec();
                    m.service_entries = lo.service_entries[o[3]..o[3] + n[3]].to_vec();
                    let held = l.held[h..h + c.held as usize].to_vec();
                    Some(DocDecoded { objects: m, held })
                });
            let decoded = match copied {
                Some(d) => d,
                None => {
                    let (Some(text), Some(range)) =
                        (text, ranges.as_ref().and_then(|r| r.get(doc)))
                    else {
                        return Err(ManifestError {
                            file: path.to_owned(),
                            line: 0,
                            reason: "changed while it was read; read again at the next poll".into(),
                        });
                    };
                    parsed += 1;
                    decode(path, &text[range.clone()])?
                }
            };
            added.push((doc, decoded));
        }
        if !added.is_empty() {
            added.sort_by_key(|(d, _)| *d);
            self.merge(added);
        }
        Ok(parsed)
    }

    /// Puts newly decoded documents in their places (`added` in document order).
    fn merge(&mut self, added: Vec<(usize, DocDecoded)>) {
        let old = std::mem::take(&mut self.objects);
        let mut services = old.objects.services.into_iter();
        let mut slices = old.objects.endpoint_slices.into_iter();
        let mut exports = old.objects.service_exports.into_iter();
        let mut entries = old.service_entries.into_iter();
        let mut held = std::mem::take(&mut self.held).into_iter();
        let mut added = added.into_iter().peekable();
        let mut out = ClusterManifests::default();
        for (i, doc) in self.docs.iter_mut().enumerate() {
            if let Some(c) = doc {
                let n = c.objects.map(|n| n as usize);
                out.objects.services.extend(services.by_ref().take(n[0]));
                out.objects
                    .endpoint_slices
                    .extend(slices.by_ref().take(n[1]));
                out.objects
                    .service_exports
                    .extend(exports.by_ref().take(n[2]));
                out.service_entries.extend(entries.by_ref().take(n[3]));
                self.held.extend(held.by_ref().take(c.held as usize));
            } else if let Some((_, mut d)) = added.next_if(|(j, _)| *j == i) {
                *doc = Some(DocCounts {
                    objects: counts_of(&d.objects),
                    held: u32::try_from(d.held.len()).unwrap_or(u32::MAX),
                });
                out.append(&mut d.objects);
                self.held.append(&mut d.held);
            }
        }
        self.objects = out;
    }

    /// Gives back the spare room of the object vectors (kept while a tap takes them).
    pub(super) fn shrink_to_fit(&mut self) {
        self.objects.shrink_to_fit();
        self.docs.shrink_to_fit();
        self.held.shrink_to_fit();
    }
}

/// What reading a changed file found: every document's hash, and the documents whose text is
/// new decoded (a file read whole: its one document).
#[derive(Debug)]
pub(super) struct FileRead {
    pub(super) decoded: Decoded,
    /// Every document's hash, in file order.
    pub(super) hashes: Vec<u64>,
    /// The file's text, kept when a document was not decoded (its objects may be wanted).
    pub(super) text: Option<String>,
}

impl FileRead {
    /// How many documents were parsed (a file read whole counts once).
    pub(super) fn parsed(&self) -> usize {
        self.decoded.docs.iter().filter(|d| d.is_some()).count()
    }
}

/// Parses `text`, skipping the documents whose hash is in `known` (the file's last version's).
pub(super) fn read(path: &Path, text: String, known: &[u64]) -> Result<FileRead, ManifestError> {
    let Some(ranges) = split(&text) else {
        let one = decode(path, &text)?;
        let mut decoded = Decoded {
            docs: vec![None],
            ..Decoded::default()
        };
        decoded.merge(vec![(0, one)]);
        return Ok(FileRead {
            decoded,
            hashes: vec![hash_of(&text)],
            text: None,
        });
    };
    let known: HashSet<u64> = known.iter().copied().collect();
    let mut decoded = Decoded {
        docs: Vec::with_capacity(ranges.len()),
        ..Decoded::default()
    };
    let mut hashes = Vec::with_capacity(ranges.len());
    let mut skipped = false;
    let mut failed = false;
    let mut reader = DocReader::default();
    for range in ranges {
        let doc = &text[range];
        let hash = hash_of(doc);
        hashes.push(hash);
        if known.contains(&hash) {
            decoded.docs.push(None);
            skipped = true;
            continue;
        }
        match reader.decode_into(path, doc, &mut decoded.objects, &mut decoded.held) {
            Ok(counts) => decoded.docs.push(Some(counts)),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    drop(reader);
    if failed {
        // A document's errors name lines of the document: the whole file is parsed again for
        // the error the reader sees (only when there is one).
        return Err(parse_file(path, &text)
            .err()
            .unwrap_or_else(|| ManifestError {
                file: path.to_owned(),
                line: 0,
                reason: "a document does not parse on its own (YAML anchors across documents?)"
                    .into(),
            }));
    }
    Ok(FileRead {
        decoded,
        hashes,
        text: skipped.then_some(text),
    })
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
        assert_eq!(
            texts("- a\n---\n- b\n...x: 1\n---\r\nc: 1"),
            Some(vec!["- a\n", "---\n- b\n...x: 1\n", "---\r\nc: 1"])
        );
        assert_eq!(texts("%YAML 1.2\n---\na: 1\n"), None, "directives");
        assert_eq!(texts("a: 1\n---\n%TAG ! x\n"), None, "a later directive");
        assert_eq!(texts("a: 1\n...\n---\nb: 1\n"), None, "document ends");
        assert_eq!(texts("{\"kind\": \"List\"}"), None, "JSON");
    }

    #[test]
    fn an_error_in_one_document_names_the_line_of_the_file() {
        let path = Path::new("m.yaml");
        let good = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\n";
        let text = format!("{good}---\n{good}---\nkind: [unclosed\n");
        let whole = parse_file(path, &text).unwrap_err();
        let by_document = read(path, text, &[]).unwrap_err();
        assert_eq!(by_document, whole);
        assert!(whole.line >= 9, "{whole}");
    }
}
