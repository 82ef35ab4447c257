//! One cluster folder as the files source keeps it: per manifest file a small index (its
//! documents' hashes, the services each document holds, and per service a fingerprint of its
//! objects in the file), which files hold each service, and the cluster's exports by service.
//! The objects themselves are not kept: a changed file re-translates only the services whose
//! fingerprint changed, from its freshly decoded documents and the documents holding them
//! decoded again (from the changed file's text, or from the other holder files, read again);
//! a removed file, only the services it held. With a tap, which takes the whole object set,
//! every file's objects are kept instead. Runs on a low-priority thread (the source moves the
//! folder there and back).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleetdns_core::service_entry::{ServiceEntryObject, translate_service_entries};
use fleetdns_core::tap::ObjectsTap;
use fleetdns_core::translate::by_service::{ExportsByService, ObjectsByService, ServiceName};
use fleetdns_core::{ClusterId, ExportSet, ServiceEntrySet, Timestamp};
use rustc_hash::{FxHashMap, FxHashSet};

use super::documents::{self, Decoded, FileRead};
use super::{ClusterManifests, ManifestError, note_entries, note_refusals};
use crate::file_watch;

/// One manifest file as last read.
pub(super) struct FileState {
    pub(super) stamp: file_watch::Stamp,
    /// A hash of the file's bytes (`None` when it could not be read): a rewrite with the
    /// same content is not parsed again.
    pub(super) hash: Option<u64>,
    /// Modified within the stamp resolution of its read: its content is checked again at the
    /// next poll even if its stamp is the same.
    pub(super) recent: bool,
    /// What the file holds, or why it does not parse.
    index: Result<FileIndex, ManifestError>,
    /// Every document's objects, kept only while a tap takes the cluster's whole object set.
    kept: Option<Decoded>,
}

impl FileState {
    /// The hashes of the file's documents as last read: those are not parsed again.
    pub(super) fn doc_hashes(&self) -> Vec<u64> {
        self.index
            .as_ref()
            .map(|i| i.docs.iter().map(|d| d.hash).collect())
            .unwrap_or_default()
    }
}

/// A changed file as a poll read it.
pub(super) struct ChangedFile {
    pub(super) stamp: file_watch::Stamp,
    pub(super) hash: Option<u64>,
    pub(super) recent: bool,
    pub(super) read: Result<FileRead, ManifestError>,
}

/// What one file holds, without its objects: ~100 bytes per service instead of ~1 KB.
struct FileIndex {
    /// The file's documents, in order.
    docs: Box<[DocIndex]>,
    /// The services each document holds (positions in `services`), document after document.
    held: Box<[u32]>,
    /// The services the file holds, sorted, each with a fingerprint of its objects in the
    /// file (the fingerprints of its documents' objects of it, in file order).
    services: Box<[(ServiceName, u64)]>,
    /// The file's ServiceEntries, document after document: few, and translated as one set
    /// whenever one of them changes, so they are kept.
    entries: Box<[ServiceEntryObject]>,
}

/// One document of a file: a hash of its text, and where its services and ServiceEntries end
/// in the file's [`FileIndex::held`] and [`FileIndex::entries`].
#[derive(Clone, Copy)]
struct DocIndex {
    hash: u64,
    held_end: u32,
    entries_end: u32,
}

impl FileIndex {
    /// Where document `doc`'s services and ServiceEntries are.
    fn ranges(&self, doc: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let start = doc.checked_sub(1).map_or((0, 0), |p| {
            (self.docs[p].held_end, self.docs[p].entries_end)
        });
        let end = (self.docs[doc].held_end, self.docs[doc].entries_end);
        (
            start.0 as usize..end.0 as usize,
            start.1 as usize..end.1 as usize,
        )
    }

    fn names_of_doc(&self, doc: usize) -> impl Iterator<Item = &ServiceName> {
        self.held[self.ranges(doc).0]
            .iter()
            .map(|&s| &self.services[s as usize].0)
    }

    fn fingerprint(&self, name: &ServiceName) -> Option<u64> {
        self.services
            .binary_search_by(|(n, _)| n.cmp(name))
            .ok()
            .map(|at| self.services[at].1)
    }

    /// The documents holding any of `names`, in order.
    fn docs_holding(&self, names: &FxHashSet<&ServiceName>) -> Vec<usize> {
        (0..self.docs.len())
            .filter(|&d| self.names_of_doc(d).any(|n| names.contains(n)))
            .collect()
    }

    /// Per service, a hash of the hashes of the documents holding it, in order: equal when
    /// the service's objects in the file are the same documents in the same order.
    fn placements(&self) -> FxHashMap<&ServiceName, u64> {
        let mut by: FxHashMap<&ServiceName, std::hash::DefaultHasher> = FxHashMap::default();
        for (d, doc) in self.docs.iter().enumerate() {
            for name in self.names_of_doc(d) {
                by.entry(name).or_default().write_u64(doc.hash);
            }
        }
        by.into_iter().map(|(n, h)| (n, h.finish())).collect()
    }
}

/// A changed file indexed: its index, the services whose objects in it changed (appeared,
/// disappeared or differ), and its objects decoded so far.
struct Indexed {
    index: FileIndex,
    changed: Vec<ServiceName>,
    decoded: Decoded,
    text: Option<String>,
    /// Documents of unchanged text parsed again (their services changed elsewhere in the file).
    reparsed: usize,
}

fn changed_while_read(path: &Path) -> ManifestError {
    ManifestError {
        file: path.to_owned(),
        line: 0,
        reason: "changed while it was read; read again at the next poll".into(),
    }
}

/// Indexes a changed file from what its read decoded and its last index: the services of the
/// documents whose text is new, or that are gone or moved, have their documents of unchanged
/// text decoded too (from the text, or copied from `kept`, the last version's objects) and
/// their fingerprints compared. With `keep_all`, every document is decoded.
fn index_file(
    path: &Path,
    read: FileRead,
    old: Option<&FileIndex>,
    kept: Option<&Decoded>,
    keep_all: bool,
) -> Result<Indexed, ManifestError> {
    let FileRead {
        mut decoded,
        hashes,
        text,
    } = read;
    // Where each document of the last version is, by hash.
    let mut old_at: FxHashMap<u64, usize> = FxHashMap::default();
    if let Some(old) = old {
        for (d, doc) in old.docs.iter().enumerate() {
            old_at.entry(doc.hash).or_insert(d);
        }
    }
    // The services each document holds: as decoded now, or as indexed for the same text.
    let mut names: Vec<ServiceName> = Vec::new();
    let mut names_end: Vec<usize> = Vec::with_capacity(hashes.len());
    {
        let held = decoded.held_by_doc();
        for (d, hash) in hashes.iter().enumerate() {
            match (held.get(d).copied().flatten(), old) {
                (Some(held), _) => names.extend(held.iter().map(|(n, _)| n.clone())),
                (None, Some(old)) => {
                    let at = *old_at.get(hash).ok_or_else(|| changed_while_read(path))?;
                    names.extend(old.names_of_doc(at).cloned());
                }
                (None, None) => return Err(changed_while_read(path)),
            }
            names_end.push(names.len());
        }
    }
    // The services the file holds, sorted; from here on a service is its position there, and
    // what is known per service is a vector by position, not a map (a first read indexes
    // every service of every file: 165 000 at fleet scale).
    let mut sorted: Vec<&ServiceName> = names.iter().collect();
    // A service's objects are mostly adjacent documents: fewer to sort.
    sorted.dedup();
    sorted.sort_unstable();
    sorted.dedup();
    let positions: FxHashMap<&ServiceName, usize> =
        sorted.iter().enumerate().map(|(p, n)| (*n, p)).collect();
    let position = |n: &ServiceName| positions.get(n).copied();
    let held: Box<[u32]> = names
        .iter()
        .map(|n| position(n).map_or(u32::MAX, |p| u32::try_from(p).unwrap_or(u32::MAX)))
        .collect();
    let doc_held = |d: usize| &held[d.checked_sub(1).map_or(0, |p| names_end[p])..names_end[d]];
    // The services whose documents are not the same texts in the same order as before
    // (`candidate`, by position), and those the file held before and holds no more (`gone`).
    let (candidate, gone): (Vec<bool>, Vec<&ServiceName>) = match old {
        None => (vec![true; sorted.len()], Vec::new()),
        Some(old) => {
            let mut now = vec![std::hash::DefaultHasher::new(); sorted.len()];
            for (d, hash) in hashes.iter().enumerate() {
                for &p in doc_held(d) {
                    now[p as usize].write_u64(*hash);
                }
            }
            let before = old.placements();
            let candidate = sorted
                .iter()
                .zip(&now)
                .map(|(n, h)| before.get(n) != Some(&h.finish()))
                .collect();
            let gone = before
                .keys()
                .filter(|n| position(n).is_none())
                .copied()
                .collect();
            (candidate, gone)
        }
    };
    let wanted: Vec<usize> = (0..hashes.len())
        .filter(|&d| keep_all || doc_held(d).iter().any(|&p| candidate[p as usize]))
        .collect();
    let from_last = |d: usize| hashes.get(d).and_then(|h| old_at.get(h).copied());
    let reparsed = decoded.decode_more(
        path,
        text.as_deref(),
        &wanted,
        kept.map(|k| -> documents::EarlierDecoding<'_> { (k, &from_last) }),
    )?;
    // The candidates' fingerprints now, from their documents' fingerprints in file order.
    let mut now: Vec<Option<std::hash::DefaultHasher>> = vec![None; sorted.len()];
    for held in decoded.held_by_doc().into_iter().flatten() {
        for (name, fingerprint) in held {
            if let Some(p) = position(name).filter(|&p| candidate[p]) {
                now[p]
                    .get_or_insert_with(std::hash::DefaultHasher::new)
                    .write_u64(*fingerprint);
            }
        }
    }
    let now: Vec<Option<u64>> = now.iter().map(|h| h.as_ref().map(Hasher::finish)).collect();
    let before = |n: &ServiceName| old.and_then(|o| o.fingerprint(n));
    let mut changed: Vec<ServiceName> = Vec::new();
    let services: Box<[(ServiceName, u64)]> = sorted
        .iter()
        .enumerate()
        .map(|(p, n)| {
            let fingerprint = if candidate[p] {
                if now[p] != before(n) {
                    changed.push((*n).clone());
                }
                now[p].or_else(|| before(n))
            } else {
                before(n)
            };
            ((*n).clone(), fingerprint.unwrap_or_default())
        })
        .collect();
    changed.extend(gone.into_iter().filter(|n| before(n).is_some()).cloned());
    let mut entries: Vec<ServiceEntryObject> = Vec::new();
    let mut docs = Vec::with_capacity(hashes.len());
    let fresh_entries = decoded.entries_by_doc();
    for (d, hash) in hashes.iter().enumerate() {
        match (fresh_entries.get(d).copied().flatten(), old) {
            (Some(fresh), _) => entries.extend_from_slice(fresh),
            (None, Some(old)) => {
                let at = old_at[hash];
                entries.extend_from_slice(&old.entries[old.ranges(at).1]);
            }
            (None, None) => return Err(changed_while_read(path)),
        }
        docs.push(DocIndex {
            hash: *hash,
            held_end: u32::try_from(names_end[d]).unwrap_or(u32::MAX),
            entries_end: u32::try_from(entries.len()).unwrap_or(u32::MAX),
        });
    }
    Ok(Indexed {
        index: FileIndex {
            docs: docs.into_boxed_slice(),
            held,
            services,
            entries: entries.into_boxed_slice(),
        },
        changed,
        decoded,
        text,
        reparsed,
    })
}

/// What a folder's translation found.
pub(super) struct Translation {
    /// The cluster's whole export set (the map the folder keeps: publishing shares it).
    pub(super) exports: Arc<ExportSet>,
    /// How many exports were added, removed or changed by this translation.
    pub(super) changed: usize,
    /// The cluster's ServiceEntries, when a file's entries changed since they were last
    /// published (see [`Folder::entries_published`]).
    pub(super) entries: Option<ServiceEntrySet>,
    /// Refused ServiceExports and skipped parts of the services translated this time.
    pub(super) notes: Vec<String>,
    /// Documents of unchanged text parsed again for the objects of a service that changed.
    pub(super) reparsed: usize,
    /// Files found changed on disk while their objects were read for the translation: read
    /// as changed files of this poll.
    pub(super) read_again: Vec<PathBuf>,
}

/// A file's objects decoded for this translation, and its text while more of its documents
/// may be wanted.
struct AtHand {
    decoded: Decoded,
    text: Option<String>,
}

/// The files holding one service's objects, in path order: nearly always one, held inline
/// (165 000 services, none with a list of its own); more in a boxed slice.
#[derive(Clone)]
enum Holders {
    One(Arc<Path>),
    /// Two or more.
    Many(Box<[Arc<Path>]>),
}

impl Holders {
    fn as_slice(&self) -> &[Arc<Path>] {
        match self {
            Self::One(path) => std::slice::from_ref(path),
            Self::Many(paths) => paths,
        }
    }

    /// The files of a list; `None` for none.
    fn of(mut paths: Vec<Arc<Path>>) -> Option<Self> {
        match paths.len() {
            0 => None,
            1 => paths.pop().map(Self::One),
            _ => Some(Self::Many(paths.into_boxed_slice())),
        }
    }
}

/// One cluster folder's files and what they translate to.
#[derive(Default)]
pub(super) struct Folder {
    files: BTreeMap<PathBuf, FileState>,
    /// For each service, the files holding any of its objects, in path order.
    holders: FxHashMap<ServiceName, Holders>,
    /// Services whose objects changed since they were last translated.
    touched: BTreeSet<ServiceName>,
    /// Keep every file's objects (a tap takes the whole set at every translation).
    keep_objects: bool,
    /// The objects decoded since the last translation, by file: dropped once it is done.
    at_hand: HashMap<PathBuf, AtHand>,
    /// Documents of unchanged text parsed again since the last translation.
    reparsed: usize,
    /// Files found changed on disk while translating (read as changed files of the poll; a
    /// file found gone is removed).
    read_again: Vec<PathBuf>,
    /// How many services the last translation translated (for tests).
    #[cfg(test)]
    translated: usize,
    exports: ExportsByService,
    /// ServiceExports without a creationTimestamp get the time fleetdns first saw them.
    first_seen: HashMap<String, Timestamp>,
    /// A file's ServiceEntries changed since the set was last published (at first: never
    /// published).
    entries_changed: bool,
}

impl Folder {
    /// A folder not read yet, whose ServiceExports without a creationTimestamp date from
    /// `first_seen` (the registry's times for a cluster already served). With
    /// `keep_objects`, every file's objects are kept (for a tap).
    pub(super) fn new(first_seen: HashMap<String, Timestamp>, keep_objects: bool) -> Self {
        Self {
            first_seen,
            keep_objects,
            entries_changed: true,
            ..Self::default()
        }
    }

    pub(super) fn file_mut(&mut self, path: &Path) -> Option<&mut FileState> {
        self.files.get_mut(path)
    }

    /// The files of the folder as last read, in path order.
    pub(super) fn files(&self) -> impl Iterator<Item = (&PathBuf, &FileState)> {
        self.files.iter()
    }

    /// The first file that does not parse.
    fn broken(&self) -> Option<&ManifestError> {
        self.files.values().find_map(|f| f.index.as_ref().err())
    }

    /// Replaces (or adds) a file: the services whose objects in it differ are touched.
    pub(super) fn put(&mut self, path: PathBuf, file: ChangedFile) {
        let old = self.files.remove(&path);
        self.at_hand.remove(&path);
        let old_index = old.as_ref().and_then(|f| f.index.as_ref().ok());
        let ChangedFile {
            mut stamp,
            mut hash,
            recent,
            read,
        } = file;
        let indexed = read.and_then(|read| {
            index_file(
                &path,
                read,
                old_index,
                old.as_ref().and_then(|f| f.kept.as_ref()),
                self.keep_objects,
            )
            .inspect_err(|_| {
                // Forgotten (no hash, no stamp), it is read whole at the next poll.
                (stamp, hash) = (None, None);
            })
        });
        let holder: Arc<Path> = Arc::from(path.as_path());
        let (index, kept) = match indexed {
            Ok(indexed) => {
                for name in &indexed.changed {
                    self.touched.insert(name.clone());
                    let held_now = indexed.index.fingerprint(name).is_some();
                    let held_before = old_index.is_some_and(|o| o.fingerprint(name).is_some());
                    match (held_before, held_now) {
                        (false, true) => self.hold(name, &holder),
                        (true, false) => self.unhold(name, &path),
                        _ => {}
                    }
                }
                let entries_before = old_index.map_or(&[][..], |o| &o.entries);
                self.entries_changed |= *entries_before != *indexed.index.entries;
                self.reparsed += indexed.reparsed;
                let kept = if self.keep_objects {
                    let mut decoded = indexed.decoded;
                    decoded.shrink_to_fit();
                    Some(decoded)
                } else {
                    self.at_hand.insert(
                        path.clone(),
                        AtHand {
                            decoded: indexed.decoded,
                            text: indexed.text,
                        },
                    );
                    None
                };
                (Ok(indexed.index), kept)
            }
            Err(e) => {
                if let Some(old) = old_index {
                    for (name, _) in &old.services {
                        self.touched.insert(name.clone());
                        self.unhold(name, &path);
                    }
                    self.entries_changed |= !old.entries.is_empty();
                }
                (Err(e), None)
            }
        };
        self.files.insert(
            path,
            FileState {
                stamp,
                hash,
                recent,
                index,
                kept,
            },
        );
    }

    /// Forgets a removed file: the services it held are touched.
    pub(super) fn remove(&mut self, path: &Path) {
        self.at_hand.remove(path);
        let Some(old) = self.files.remove(path) else {
            return;
        };
        if let Ok(old) = old.index {
            for (name, _) in &old.services {
                self.unhold(name, path);
                self.touched.insert(name.clone());
            }
            self.entries_changed |= !old.entries.is_empty();
        }
    }

    fn hold(&mut self, name: &ServiceName, holder: &Arc<Path>) {
        let Some(files) = self.holders.get(name).map(Holders::as_slice) else {
            self.holders
                .insert(name.clone(), Holders::One(holder.clone()));
            return;
        };
        let at = files.partition_point(|p| **p < **holder);
        let mut grown = Vec::with_capacity(files.len() + 1);
        grown.extend_from_slice(&files[..at]);
        grown.push(holder.clone());
        grown.extend_from_slice(&files[at..]);
        if let Some(grown) = Holders::of(grown) {
            self.holders.insert(name.clone(), grown);
        }
    }

    fn unhold(&mut self, name: &ServiceName, path: &Path) {
        if let Some(files) = self.holders.get(name) {
            let kept: Vec<Arc<Path>> = files
                .as_slice()
                .iter()
                .filter(|p| ***p != *path)
                .cloned()
                .collect();
            match Holders::of(kept) {
                Some(kept) => {
                    self.holders.insert(name.clone(), kept);
                }
                None => {
                    self.holders.remove(name);
                }
            }
        }
    }

    /// Decodes, in every file holding a touched service, the documents holding it: from the
    /// objects at hand, or from the file read again. A file whose content is no longer what
    /// its index says is read as changed now (it may touch more services), so what is
    /// translated always agrees with the index.
    fn gather(&mut self) -> Result<(), ManifestError> {
        let mut gathered: FxHashSet<ServiceName> = FxHashSet::default();
        // Whether a holder file is at hand with every document decoded (every file at start):
        // nothing more to gather from it. Asked once per file, not once per service.
        let mut whole: FxHashMap<*const Path, bool> = FxHashMap::default();
        loop {
            let mut wanted: BTreeMap<Arc<Path>, Vec<ServiceName>> = BTreeMap::new();
            for name in &self.touched {
                if gathered.insert(name.clone()) {
                    for holder in self.holders.get(name).map_or(&[][..], Holders::as_slice) {
                        let at_hand = &self.at_hand;
                        let done = *whole.entry(Arc::as_ptr(holder)).or_insert_with(|| {
                            at_hand
                                .get(&**holder)
                                .is_some_and(|hand| hand.decoded.is_whole())
                        });
                        if !done {
                            wanted.entry(holder.clone()).or_default().push(name.clone());
                        }
                    }
                }
            }
            if wanted.is_empty() {
                return Ok(());
            }
            for (path, names) in wanted {
                if self.files.get(&*path).is_some_and(|f| f.kept.is_some()) {
                    continue;
                }
                if !self.at_hand.contains_key(&*path) {
                    self.read_again(&path);
                }
                let Some(Ok(index)) = self.files.get(&*path).map(|f| f.index.as_ref()) else {
                    continue;
                };
                let Some(hand) = self.at_hand.get_mut(&*path) else {
                    continue;
                };
                let docs = index.docs_holding(&names.iter().collect());
                let decoded = hand
                    .decoded
                    .decode_more(&path, hand.text.as_deref(), &docs, None);
                match decoded {
                    Ok(parsed) => self.reparsed += parsed,
                    // A document that parsed when it was indexed: the file is read whole at
                    // the next poll (no stamp, no hash), its services wait for it.
                    Err(e) => self.put(
                        path.to_path_buf(),
                        ChangedFile {
                            stamp: None,
                            hash: None,
                            recent: false,
                            read: Err(e),
                        },
                    ),
                }
            }
            if let Some(e) = self.broken() {
                return Err(e.clone());
            }
        }
    }

    /// Reads a holder file again for its objects: at hand when its content is as indexed,
    /// put as a changed (or removed) file when not.
    fn read_again(&mut self, path: &Path) {
        let stamp = file_watch::stamp(path);
        let read_at = std::time::SystemTime::now();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.remove(path);
                return;
            }
            Err(e) => {
                let read = Err(ManifestError {
                    file: path.to_owned(),
                    line: 0,
                    reason: e.to_string(),
                });
                let recent = stamp.is_some_and(|s| s.is_recent(read_at));
                self.read_again.push(path.to_owned());
                self.put(
                    path.to_owned(),
                    ChangedFile {
                        stamp,
                        hash: None,
                        recent,
                        read,
                    },
                );
                return;
            }
        };
        let hash = documents::hash_of(&text);
        let Some(file) = self.files.get(path) else {
            return;
        };
        if file.hash == Some(hash) {
            let docs = file.index.as_ref().map_or(0, |i| i.docs.len());
            self.at_hand.insert(
                path.to_owned(),
                AtHand {
                    decoded: Decoded::undecoded(docs),
                    text: Some(text),
                },
            );
            return;
        }
        tracing::debug!(file = %path.display(), "manifest file changed since the poll read it; read as changed");
        let known = file.doc_hashes();
        let read = documents::read(path, text, &known);
        self.reparsed += read.as_ref().map_or(0, FileRead::parsed);
        self.read_again.push(path.to_owned());
        let recent = stamp.is_some_and(|s| s.is_recent(read_at));
        self.put(
            path.to_owned(),
            ChangedFile {
                stamp,
                hash: Some(hash),
                recent,
                read,
            },
        );
    }

    /// Translates the touched services again (and the ServiceEntries when a file's entries
    /// changed), hands the whole object set to `tap`, and returns the cluster's export set;
    /// or the first file that does not parse, and nothing is translated (the touched
    /// services wait for the next translation).
    pub(super) fn translate(
        &mut self,
        cluster: &ClusterId,
        tap: Option<&ObjectsTap>,
    ) -> Result<Translation, ManifestError> {
        let gathered = match self.broken() {
            Some(e) => Err(e.clone()),
            None => self.gather(),
        };
        if let Err(e) = gathered {
            self.at_hand = HashMap::new();
            self.reparsed = 0;
            self.read_again.clear();
            return Err(e);
        }
        if let Some(tap) = tap {
            let (all, counts) = take_manifests(&mut self.files);
            tap.set(cluster, &all.objects);
            put_back_manifests(&mut self.files, all, &counts);
        }
        let touched = std::mem::take(&mut self.touched);
        #[cfg(test)]
        {
            self.translated = touched.len();
        }
        let now = Timestamp::now();
        let first_seen = &mut self.first_seen;
        let mut seen = |label: &str| *first_seen.entry(label.to_owned()).or_insert(now);
        let mut grouped = ObjectsByService::default();
        for path in holder_files(&self.holders, &touched) {
            let decoded = match self.at_hand.get(&**path) {
                Some(hand) => &hand.decoded,
                None => match self.files.get(&**path).and_then(|f| f.kept.as_ref()) {
                    Some(kept) => kept,
                    None => continue,
                },
            };
            grouped.add(&decoded.objects.objects);
        }
        let done = self
            .exports
            .update(cluster, &touched, |name| grouped.take(name), &mut seen);
        drop(grouped);
        // Every object decoded for this translation goes, and the map's room with it.
        self.at_hand = HashMap::new();
        let mut notes = Vec::new();
        note_refusals(cluster, &done.invalid, &done.warnings, &mut notes);
        let entries = self.entries_changed.then(|| {
            let objects: Vec<ServiceEntryObject> = self
                .files
                .values()
                .filter_map(|f| f.index.as_ref().ok())
                .flat_map(|i| i.entries.iter().cloned())
                .collect();
            let (entries, entry_notes) =
                translate_service_entries(cluster, &objects, &mut |label| {
                    seen(&format!("serviceentry/{label}"))
                });
            note_entries(cluster, entry_notes, &mut notes);
            entries
        });
        Ok(Translation {
            exports: Arc::clone(self.exports.exports()),
            changed: done.changed,
            entries,
            notes,
            reparsed: std::mem::take(&mut self.reparsed),
            read_again: std::mem::take(&mut self.read_again),
        })
    }

    #[cfg(test)]
    pub(super) fn translated_last(&self) -> usize {
        self.translated
    }

    /// Whether any file's objects are kept (only with a tap), for tests.
    #[cfg(test)]
    pub(super) fn keeps_objects(&self) -> bool {
        self.files.values().any(|f| f.kept.is_some()) || !self.at_hand.is_empty()
    }

    /// The ServiceEntries of the last translation reached the registry.
    pub(super) fn entries_published(&mut self) {
        self.entries_changed = false;
    }
}

/// The files holding any of `touched`'s objects, in path order, each once: their objects,
/// grouped by service in this order, are what each service's translation reads (the last
/// Service and ServiceExport of a name win, as in a whole-cluster translation).
fn holder_files<'h>(
    holders: &'h FxHashMap<ServiceName, Holders>,
    touched: &BTreeSet<ServiceName>,
) -> Vec<&'h Arc<Path>> {
    // Once per `Arc` first (the services a file held when it was read share one), then once
    // per path (a file read again holds its new services under another `Arc`).
    let mut seen: FxHashSet<*const Path> = FxHashSet::default();
    let mut files: Vec<&Arc<Path>> = touched
        .iter()
        .flat_map(|name| holders.get(name).map_or(&[][..], Holders::as_slice))
        .filter(|path| seen.insert(Arc::as_ptr(path)))
        .collect();
    files.sort_unstable();
    files.dedup_by(|a, b| a == b);
    files
}

/// Moves every kept file's objects into one set, in file order (no copies: 50 000 services
/// move in milliseconds), with how many of each kind each file gave; [`put_back_manifests`]
/// returns them.
fn take_manifests(files: &mut BTreeMap<PathBuf, FileState>) -> (ClusterManifests, Vec<[usize; 4]>) {
    let mut all = ClusterManifests::default();
    let mut counts = Vec::new();
    for file in files.values_mut() {
        if let Some(kept) = &mut file.kept {
            let m = &mut kept.objects;
            counts.push([
                m.objects.services.len(),
                m.objects.endpoint_slices.len(),
                m.objects.service_exports.len(),
                m.service_entries.len(),
            ]);
            all.append(m);
        }
    }
    (all, counts)
}

/// Hands the objects [`take_manifests`] took back to their files.
fn put_back_manifests(
    files: &mut BTreeMap<PathBuf, FileState>,
    mut all: ClusterManifests,
    counts: &[[usize; 4]],
) {
    // Each file's share is at the end once the files after it have theirs back.
    fn tail<T>(from: &mut Vec<T>, n: usize) -> Vec<T> {
        from.split_off(from.len().saturating_sub(n))
    }
    let mut counts = counts.iter().rev();
    for file in files.values_mut().rev() {
        if let Some(kept) = &mut file.kept {
            let Some(n) = counts.next() else {
                return;
            };
            let m = &mut kept.objects;
            m.objects.services = tail(&mut all.objects.services, n[0]);
            m.objects.endpoint_slices = tail(&mut all.objects.endpoint_slices, n[1]);
            m.objects.service_exports = tail(&mut all.objects.service_exports, n[2]);
            m.service_entries = tail(&mut all.service_entries, n[3]);
        }
    }
}
