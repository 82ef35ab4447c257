//! One cluster folder as the files source keeps it: every manifest file's objects, which files
//! hold each service's objects, and the cluster's exports by service. A changed file
//! re-translates only the services whose objects in it changed; a removed file, only those it
//! held. Runs on a low-priority thread (the source moves the folder there and back).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleetdns_core::kube::{EndpointSlice, Service, ServiceExport};
use fleetdns_core::service_entry::{ServiceEntryObject, translate_service_entries};
use fleetdns_core::tap::ObjectsTap;
use fleetdns_core::translate::by_service::{
    ExportsByService, ServiceName, ServiceObjects, is_named, is_slice_of, named, slice_owner,
};
use fleetdns_core::{ClusterId, ExportSet, ServiceEntrySet, Timestamp};

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
    /// What the file held, or why it does not parse.
    pub(super) parsed: Result<ClusterManifests, ManifestError>,
}

impl FileState {
    /// The hashes of the file's documents as last read: those are not parsed again.
    pub(super) fn doc_hashes(&self) -> Vec<u64> {
        self.parsed
            .as_ref()
            .map(|m| m.docs.iter().map(|d| d.hash).collect())
            .unwrap_or_default()
    }
}

/// What a folder's translation found.
pub(super) struct Translation {
    /// The cluster's whole export set.
    pub(super) exports: ExportSet,
    /// How many exports were added, removed or changed by this translation.
    pub(super) changed: usize,
    /// The cluster's ServiceEntries, when a file's entries changed since they were last
    /// published (see [`Folder::entries_published`]).
    pub(super) entries: Option<ServiceEntrySet>,
    /// Refused ServiceExports and skipped parts of the services translated this time.
    pub(super) notes: Vec<String>,
}

/// One cluster folder's files and what they translate to.
#[derive(Default)]
pub(super) struct Folder {
    files: BTreeMap<PathBuf, FileState>,
    /// For each service, the files holding any of its objects, in path order (usually one;
    /// a boxed slice, not a vector: 165 000 of them, each without spare room).
    holders: HashMap<ServiceName, Box<[Arc<Path>]>>,
    /// Services whose objects changed since they were last translated.
    touched: BTreeSet<ServiceName>,
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

/// One service's objects in one file.
#[derive(Default, PartialEq)]
struct Share<'a> {
    services: Vec<&'a Service>,
    slices: Vec<&'a EndpointSlice>,
    exports: Vec<&'a ServiceExport>,
}

/// A file's objects by the service they belong to.
fn shares(file: &FileState) -> HashMap<ServiceName, Share<'_>> {
    let mut out: HashMap<ServiceName, Share<'_>> = HashMap::new();
    let Ok(m) = &file.parsed else {
        return out;
    };
    for s in &m.objects.services {
        out.entry(named(&s.metadata)).or_default().services.push(s);
    }
    for s in &m.objects.endpoint_slices {
        if let Some(owner) = slice_owner(s) {
            out.entry(owner).or_default().slices.push(s);
        }
    }
    for e in &m.objects.service_exports {
        out.entry(named(&e.metadata)).or_default().exports.push(e);
    }
    out
}

fn entries_of(file: &FileState) -> &[ServiceEntryObject] {
    file.parsed.as_ref().map_or(&[], |m| &m.service_entries)
}

impl Folder {
    /// A folder not read yet, whose ServiceExports without a creationTimestamp date from
    /// `first_seen` (the registry's times for a cluster already served).
    pub(super) fn new(first_seen: HashMap<String, Timestamp>) -> Self {
        Self {
            first_seen,
            entries_changed: true,
            ..Self::default()
        }
    }

    pub(super) fn file(&self, path: &Path) -> Option<&FileState> {
        self.files.get(path)
    }

    pub(super) fn file_mut(&mut self, path: &Path) -> Option<&mut FileState> {
        self.files.get_mut(path)
    }

    /// The files of the folder as last read, in path order.
    pub(super) fn files(&self) -> impl Iterator<Item = (&PathBuf, &FileState)> {
        self.files.iter()
    }

    /// The first file that does not parse.
    pub(super) fn broken(&self) -> Option<&ManifestError> {
        self.files.values().find_map(|f| f.parsed.as_ref().err())
    }

    /// Replaces (or adds) a file: the services whose objects in it differ are touched.
    pub(super) fn put(&mut self, path: PathBuf, file: FileState) {
        let old = self.files.remove(&path);
        let holder: Arc<Path> = Arc::from(path.as_path());
        {
            let before = old.as_ref().map(shares).unwrap_or_default();
            let after = shares(&file);
            for (name, share) in &after {
                match before.get(name) {
                    Some(was) if was == share => {}
                    Some(_) => {
                        self.touched.insert(name.clone());
                    }
                    None => {
                        self.touched.insert(name.clone());
                        let files = self.holders.entry(name.clone()).or_default();
                        let at = files.partition_point(|p| **p < *holder);
                        let mut grown = Vec::with_capacity(files.len() + 1);
                        grown.extend_from_slice(&files[..at]);
                        grown.push(holder.clone());
                        grown.extend_from_slice(&files[at..]);
                        *files = grown.into_boxed_slice();
                    }
                }
            }
            for name in before.keys().filter(|n| !after.contains_key(*n)) {
                self.touched.insert(name.clone());
                self.unhold(name, &path);
            }
            let entries_before = old.as_ref().map_or(&[][..], entries_of);
            self.entries_changed |= entries_before != entries_of(&file);
        }
        self.files.insert(path, file);
    }

    /// Forgets a removed file: the services it held are touched.
    pub(super) fn remove(&mut self, path: &Path) {
        let Some(old) = self.files.remove(path) else {
            return;
        };
        for name in shares(&old).into_keys() {
            self.unhold(&name, path);
            self.touched.insert(name);
        }
        self.entries_changed |= !entries_of(&old).is_empty();
    }

    fn unhold(&mut self, name: &ServiceName, path: &Path) {
        if let Some(files) = self.holders.get_mut(name) {
            let kept: Box<[Arc<Path>]> = files.iter().filter(|p| ***p != *path).cloned().collect();
            if kept.is_empty() {
                self.holders.remove(name);
            } else {
                *files = kept;
            }
        }
    }

    /// Translates the touched services again (and the ServiceEntries when a file's entries
    /// changed), hands the whole object set to `tap`, and returns the cluster's export set.
    pub(super) fn translate(
        &mut self,
        cluster: &ClusterId,
        tap: Option<&ObjectsTap>,
    ) -> Translation {
        if let Some(tap) = tap {
            let all = take_manifests(&mut self.files);
            tap.set(cluster, &all.objects);
            put_back_manifests(&mut self.files, all);
        }
        let touched = std::mem::take(&mut self.touched);
        #[cfg(test)]
        {
            self.translated = touched.len();
        }
        let now = Timestamp::now();
        let first_seen = &mut self.first_seen;
        let mut seen = |label: &str| *first_seen.entry(label.to_owned()).or_insert(now);
        let (files, holders) = (&self.files, &self.holders);
        let done = self.exports.update(
            cluster,
            &touched,
            |name| objects_of(files, holders, name),
            &mut seen,
        );
        let mut notes = Vec::new();
        note_refusals(cluster, &done.invalid, &done.warnings, &mut notes);
        let entries = self.entries_changed.then(|| {
            let objects: Vec<ServiceEntryObject> = self
                .files
                .values()
                .flat_map(|f| entries_of(f).iter().cloned())
                .collect();
            let (entries, entry_notes) =
                translate_service_entries(cluster, &objects, &mut |label| {
                    seen(&format!("serviceentry/{label}"))
                });
            note_entries(cluster, entry_notes, &mut notes);
            entries
        });
        Translation {
            exports: self.exports.exports().clone(),
            changed: done.changed,
            entries,
            notes,
        }
    }

    #[cfg(test)]
    pub(super) fn translated_last(&self) -> usize {
        self.translated
    }

    /// The ServiceEntries of the last translation reached the registry.
    pub(super) fn entries_published(&mut self) {
        self.entries_changed = false;
    }
}

/// One service's objects, from the files holding them, in path order (the last Service and
/// ServiceExport of a name win, as in a whole-cluster translation).
fn objects_of<'a>(
    files: &'a BTreeMap<PathBuf, FileState>,
    holders: &HashMap<ServiceName, Box<[Arc<Path>]>>,
    name: &ServiceName,
) -> ServiceObjects<'a> {
    let mut found = ServiceObjects::default();
    for path in holders.get(name).into_iter().flatten() {
        let Some(Ok(m)) = files.get(&**path).map(|f| f.parsed.as_ref()) else {
            continue;
        };
        if let Some(s) = m
            .objects
            .services
            .iter()
            .rfind(|s| is_named(&s.metadata, name))
        {
            found.service = Some(s);
        }
        found.slices.extend(
            m.objects
                .endpoint_slices
                .iter()
                .filter(|s| is_slice_of(s, name)),
        );
        if let Some(e) = m
            .objects
            .service_exports
            .iter()
            .rfind(|e| is_named(&e.metadata, name))
        {
            found.export = Some(e);
        }
    }
    found
}

/// Moves every file's objects into one set, in file order (no copies: 50 000 services move
/// in milliseconds); [`put_back_manifests`] returns them.
fn take_manifests(files: &mut BTreeMap<PathBuf, FileState>) -> ClusterManifests {
    let mut all = ClusterManifests::default();
    for file in files.values_mut() {
        if let Ok(m) = &mut file.parsed {
            all.append(m);
        }
    }
    all
}

/// Hands the objects [`take_manifests`] took back to their files.
fn put_back_manifests(files: &mut BTreeMap<PathBuf, FileState>, mut all: ClusterManifests) {
    // Each file's share is at the end once the files after it have theirs back.
    fn tail<T>(from: &mut Vec<T>, n: usize) -> Vec<T> {
        from.split_off(from.len().saturating_sub(n))
    }
    for file in files.values_mut().rev() {
        if let Ok(m) = &mut file.parsed {
            let counts = m.counts;
            m.objects.services = tail(&mut all.objects.services, counts[0]);
            m.objects.endpoint_slices = tail(&mut all.objects.endpoint_slices, counts[1]);
            m.objects.service_exports = tail(&mut all.objects.service_exports, counts[2]);
            m.service_entries = tail(&mut all.service_entries, counts[3]);
        }
    }
}
