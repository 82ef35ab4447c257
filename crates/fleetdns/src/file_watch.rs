//! The one file-change poller: the config file (`serve` reloads on change) and the manifest
//! folders of `files` sources are both watched by stamping files on a fixed tick. A manifest
//! folder is also watched for change events ([`ChangeWaker`], inotify through the `notify`
//! crate), which wake its poller at once; the tick stays, for file systems without events.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::Watcher as _;

/// What a file looked like when last checked; `None` when it cannot be read. A rewrite
/// changes it, and so does a replacement by rename (a new inode). Two writes of the same
/// length within the file system's time resolution keep it: a reader that must not miss them
/// re-checks the content of files modified within [`STAMP_RESOLUTION`] of reading them.
pub type Stamp = Option<FileStamp>;

/// A file's modification time, length and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileStamp {
    pub modified: SystemTime,
    pub len: u64,
    pub inode: u64,
}

/// How far apart two writes must be for the second to change a file's modification time,
/// on every file system fleetdns reads (FAT keeps 2 s; most keep the kernel's clock tick).
pub const STAMP_RESOLUTION: Duration = Duration::from_secs(2);

impl FileStamp {
    /// Whether the file was modified so shortly before `now` that a write of the same length
    /// could follow without changing the stamp.
    pub fn is_recent(&self, now: SystemTime) -> bool {
        now.duration_since(self.modified)
            .map_or(true, |age| age < STAMP_RESOLUTION)
    }
}

/// The stamp of `path` now.
pub fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok()?,
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// A tick every `period`, the first at once; a late tick delays the next ones rather than
/// firing a burst (a slow poll is not followed by polls back to back).
pub fn ticker(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Wakes a poller when anything under a folder changes. Dropping it stops the watch (and the
/// `notify` crate's thread that reads the events).
pub struct ChangeWaker {
    /// `None` when the folder cannot be watched: the poller then relies on its tick alone.
    _watcher: Option<notify::RecommendedWatcher>,
    changed: Arc<tokio::sync::Notify>,
    named: Arc<std::sync::Mutex<Named>>,
}

/// The folders directly under the root that events named since the last
/// [`ChangeWaker::take_named`], or all of them.
#[derive(Debug, Default)]
struct Named {
    all: bool,
    folders: BTreeSet<OsString>,
}

impl Named {
    /// Notes an event's path: the root's child it is in, or all of them when it is the root
    /// itself or outside it (a rename out of the root, an overflow rescan).
    fn note(&mut self, root: &Path, path: &Path) {
        match path
            .strip_prefix(root)
            .ok()
            .and_then(|p| p.components().next())
        {
            Some(std::path::Component::Normal(first)) => {
                self.folders.insert(first.to_owned());
            }
            _ => self.all = true,
        }
    }
}

impl ChangeWaker {
    /// Watches `root` and every folder below it (folders created later too).
    pub fn watch(root: &Path) -> Self {
        let changed = Arc::new(tokio::sync::Notify::new());
        let named = Arc::new(std::sync::Mutex::new(Named::default()));
        let (wake, note) = (changed.clone(), named.clone());
        let watched = root.to_owned();
        let handler = move |event: notify::Result<notify::Event>| {
            {
                let mut named = note
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match &event {
                    // Reads (the poller's own among them) change nothing.
                    Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => return,
                    Ok(e) if !e.need_rescan() && !e.paths.is_empty() => {
                        for path in &e.paths {
                            named.note(&watched, path);
                        }
                    }
                    _ => named.all = true,
                }
            }
            wake.notify_one();
        };
        let watcher = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(root, notify::RecursiveMode::Recursive)?;
            Ok(w)
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(folder = %root.display(), error = %e, "cannot watch the folder for changes; polling it only");
                None
            }
        };
        Self {
            _watcher: watcher,
            changed,
            named,
        }
    }

    /// Returns when something changed since the last return (at once if it already has).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The names of the root's folders (the cluster folders) that changed since the last call,
    /// or `None` when every folder must be looked at.
    pub fn take_named(&self) -> Option<BTreeSet<OsString>> {
        let mut named = self
            .named
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Named { all, folders } = std::mem::take(&mut *named);
        (!all).then_some(folders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_has_no_stamp_and_a_rewrite_changes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleetdns.toml");
        assert_eq!(stamp(&path), None);
        std::fs::write(&path, "a").unwrap();
        let first = stamp(&path);
        assert!(first.is_some());
        assert_eq!(stamp(&path), first, "an unchanged file keeps its stamp");
        // A longer rewrite changes the stamp even within the file system's time resolution.
        std::fs::write(&path, "ab").unwrap();
        assert_ne!(stamp(&path), first);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(stamp(&path), None);
    }

    #[test]
    fn a_replacement_by_rename_changes_the_stamp_and_a_fresh_write_is_recent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        std::fs::write(&path, "ab").unwrap();
        let first = stamp(&path).unwrap();
        assert!(first.is_recent(SystemTime::now()));
        assert!(!first.is_recent(first.modified + STAMP_RESOLUTION));
        // Same length, possibly the same modification time: the inode tells them apart.
        let other = dir.path().join("a.yaml.tmp");
        std::fs::write(&other, "cd").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_ne!(stamp(&path), Some(first));
    }

    #[tokio::test]
    async fn a_write_below_the_folder_wakes_the_waker() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cluster-a")).unwrap();
        let waker = ChangeWaker::watch(dir.path());
        let quiet = tokio::time::timeout(Duration::from_millis(200), waker.changed()).await;
        assert!(quiet.is_err(), "woken with nothing changed");
        std::fs::write(dir.path().join("cluster-a").join("a.yaml"), "x").unwrap();
        tokio::time::timeout(Duration::from_secs(5), waker.changed())
            .await
            .expect("a write in a cluster folder wakes the poller");
        // A folder created after the watch started is watched too.
        std::fs::create_dir(dir.path().join("cluster-b")).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        while tokio::time::timeout(Duration::from_millis(50), waker.changed())
            .await
            .is_ok()
        {}
        waker.take_named();
        std::fs::write(dir.path().join("cluster-b").join("b.yaml"), "y").unwrap();
        tokio::time::timeout(Duration::from_secs(5), waker.changed())
            .await
            .expect("a write in a new cluster folder wakes the poller");
        assert_eq!(
            waker.take_named(),
            Some(BTreeSet::from([OsString::from("cluster-b")])),
            "the event names its cluster folder"
        );
    }
}
