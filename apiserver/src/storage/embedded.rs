//! The embedded backend on redb (filled in by the storage work).
