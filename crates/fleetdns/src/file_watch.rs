//! The one file-change poller: the config file (`serve` reloads on change) and the manifest
//! folders of `files` sources are both watched by stamping files on a fixed tick.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// What a file looked like when last checked: (modified, length); `None` when it cannot be
/// read. A rewrite changes it.
pub type Stamp = Option<(SystemTime, u64)>;

/// The stamp of `path` now.
pub fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A tick every `period`, the first at once; a late tick delays the next ones rather than
/// firing a burst (a slow poll is not followed by polls back to back).
pub fn ticker(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
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
}
