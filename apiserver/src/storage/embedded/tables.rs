//! The on-disk layout of the embedded store: redb tables, the value encoding and the read paths.
//!
//! Two tables live in the one database file:
//! - `kv`: key bytes (UTF-8) to `create_revision (i64 LE) | mod_revision (i64 LE) | value`;
//! - `meta`: the store revision (`revision`) and the layout version (`format`).
//!
//! Keys are stored as bytes rather than `&str` so that a damaged file surfaces as
//! [`StorageError::Internal`] instead of a panic inside redb's UTF-8 decoding. Byte order and
//! `str` order agree for UTF-8, so range scans return keys in the order the trait promises.

use std::ops::Bound;

use bytes::Bytes;
use redb::{ReadableTable, TableDefinition};

use crate::storage::{KeyValue, ListResult, Revision, StorageError};

/// Keys to encoded entries.
pub(super) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// Store-wide counters.
pub(super) const META: TableDefinition<&[u8], i64> = TableDefinition::new("meta");

/// The `meta` row holding the store revision.
pub(super) const REVISION: &[u8] = b"revision";

/// The `meta` row holding the layout version.
pub(super) const FORMAT: &[u8] = b"format";

/// The layout version this code reads and writes.
pub(super) const FORMAT_VERSION: i64 = 1;

/// The revision of a freshly created store, as in etcd: the first write gets revision 2.
pub(super) const INITIAL_REVISION: Revision = 1;

/// Bytes before the value in an encoded entry.
const HEADER: usize = 16;

/// Wraps any redb failure as [`StorageError::Internal`].
pub(super) fn internal(error: impl std::fmt::Display) -> StorageError {
    StorageError::Internal(error.to_string())
}

/// Encodes an entry for the `kv` table.
pub(super) fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

/// Decodes an entry of the `kv` table.
pub(super) fn decode(key: &[u8], raw: &[u8]) -> Result<KeyValue, StorageError> {
    let key = std::str::from_utf8(key)
        .map_err(|_| StorageError::Internal("stored key is not UTF-8".to_owned()))?;
    let corrupt = || StorageError::Internal(format!("stored entry for key {key} is corrupt"));
    let (create, rest) = raw.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (modified, value) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value),
        create_revision: i64::from_le_bytes(*create),
        mod_revision: i64::from_le_bytes(*modified),
    })
}

/// Reads the store revision from the `meta` table.
pub(super) fn read_revision(
    meta: &impl ReadableTable<&'static [u8], i64>,
) -> Result<Revision, StorageError> {
    meta.get(REVISION)
        .map_err(internal)?
        .map(|guard| guard.value())
        .ok_or_else(|| StorageError::Internal("the store revision is missing".to_owned()))
}

/// Reads one key from the `kv` table.
pub(super) fn read_key(
    kv: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &str,
) -> Result<Option<KeyValue>, StorageError> {
    match kv.get(key.as_bytes()).map_err(internal)? {
        Some(guard) => decode(key.as_bytes(), guard.value()).map(Some),
        None => Ok(None),
    }
}

/// Reads the keys under `prefix` strictly after `start_after`, at most `limit` (0 = all).
pub(super) fn read_range(
    kv: &impl ReadableTable<&'static [u8], &'static [u8]>,
    revision: Revision,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
) -> Result<ListResult, StorageError> {
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after.as_bytes()),
        _ => Bound::Included(prefix.as_bytes()),
    };
    let range = kv
        .range::<&[u8]>((lower, Bound::Unbounded))
        .map_err(internal)?;
    let mut kvs = Vec::new();
    let mut more = false;
    for entry in range {
        let (key, value) = entry.map_err(internal)?;
        if !key.value().starts_with(prefix.as_bytes()) {
            break;
        }
        if limit != 0 && kvs.len() == limit {
            more = true;
            break;
        }
        kvs.push(decode(key.value(), value.value())?);
    }
    Ok(ListResult {
        revision,
        kvs,
        more,
    })
}
