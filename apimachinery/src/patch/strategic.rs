//! Strategic merge patch for the built-in kinds (filled in by the strategic-merge-patch work).
