//! The storage conformance suite every backend passes (filled in by the storage work).
