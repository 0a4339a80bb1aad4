//! Label and field selectors (filled in by the selector work).
