//! The sync loop: not built yet.
