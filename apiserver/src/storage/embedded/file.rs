//! The database file: opening it (with the layout check), the handle the readers and the writer
//! share, reopening it after a failed write, and the free space left on its file system.
//!
//! # Why reopen
//! Once one I/O call has failed, redb refuses every later call on that [`Database`], reads
//! included (`PreviousIo`), until the file is opened again; opening runs redb's repair, which
//! returns the file to its last committed transaction. A full disk is the usual cause: a commit
//! that cannot write its pages fails. So the handle is a slot the writer can empty and fill
//! again: a reader holds the slot's read lock for the length of its transaction, the writer
//! takes the write lock to close the old handle (redb locks the file, so the old one must be
//! gone before the new one opens) and open a new one. While the file cannot be opened (the disk
//! is still full and the repair cannot write), the slot holds that error and every call that
//! needs the file fails with it; the writer tries again when writes arrive.
//!
//! # Free space
//! [`free_bytes`] is what the file system holding the file has left for ordinary users
//! (`statvfs`'s `f_bavail`, as the kubelet's `nodefs.available`). The writer compares it with
//! [`EmbeddedConfig::reserve_bytes`](super::EmbeddedConfig::reserve_bytes) before each batch.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use redb::{Database, DatabaseError, ReadableTable, ReadableTableMetadata};

use super::tables::{self, internal};
use crate::storage::{Revision, StorageError};

/// The database file and its current handle (or why there is none).
#[derive(Debug)]
pub(super) struct DbFile {
    path: PathBuf,
    slot: RwLock<Result<Database, StorageError>>,
}

impl DbFile {
    /// Opens (or creates) the file and returns it with the store revision.
    ///
    /// Fails with [`StorageError::Unavailable`] when the file is already open (by this or
    /// another process) and [`StorageError::Internal`] when it cannot be created or read.
    pub(super) fn open(path: PathBuf) -> Result<(DbFile, Revision), StorageError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StorageError::Internal(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let (db, revision) = open_database(&path)?;
        let file = DbFile {
            path,
            slot: RwLock::new(Ok(db)),
        };
        Ok((file, revision))
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the open database, holding the slot so that the writer cannot reopen the
    /// file meanwhile; fails with the reason the file is closed, if it is.
    pub(super) fn with<T, E: From<StorageError>>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, E>,
    ) -> Result<T, E> {
        let slot = self.slot.read().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Ok(db) => f(db),
            Err(error) => Err(error.clone().into()),
        }
    }

    /// Whether the file is closed (a reopen failed).
    pub(super) fn is_closed(&self) -> bool {
        self.slot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_err()
    }

    /// Closes the current handle, waiting for the reads holding it, and opens the file again.
    /// Returns the revision the file holds; on failure the file stays closed with the error.
    pub(super) fn reopen(&self) -> Result<Revision, StorageError> {
        let mut slot = self.slot.write().unwrap_or_else(PoisonError::into_inner);
        // Drop the old handle first: it holds the file's lock.
        *slot = Err(StorageError::Unavailable(format!(
            "{} is being reopened",
            self.path.display()
        )));
        match open_database(&self.path) {
            Ok((db, revision)) => {
                *slot = Ok(db);
                Ok(revision)
            }
            Err(error) => {
                *slot = Err(error.clone());
                Err(error)
            }
        }
    }
}

/// Opens the file and checks or writes its layout.
fn open_database(path: &Path) -> Result<(Database, Revision), StorageError> {
    let db = Database::create(path).map_err(|error| match error {
        DatabaseError::DatabaseAlreadyOpen => {
            StorageError::Unavailable(format!("{} is already open", path.display()))
        }
        other => failure(&format!("cannot open {}", path.display()), other),
    })?;
    let revision = initialize(&db).map_err(|error| {
        StorageError::Internal(format!("cannot open {}: {error}", path.display()))
    })?;
    Ok((db, revision))
}

/// Creates the tables of a new file, or checks the layout version of an existing one, and
/// returns the store revision.
fn initialize(db: &Database) -> Result<Revision, StorageError> {
    let txn = db.begin_write().map_err(internal)?;
    let revision = {
        let kv = txn.open_table(tables::KV).map_err(internal)?;
        let mut meta = txn.open_table(tables::META).map_err(internal)?;
        let format = meta
            .get(tables::FORMAT)
            .map_err(internal)?
            .map(|guard| guard.value());
        match format {
            Some(tables::FORMAT_VERSION) => None,
            Some(other) => {
                return Err(StorageError::Internal(format!(
                    "unsupported layout version {other} (this build reads {})",
                    tables::FORMAT_VERSION
                )));
            }
            None if kv.is_empty().map_err(internal)? => {
                meta.insert(tables::FORMAT, tables::FORMAT_VERSION)
                    .map_err(internal)?;
                meta.insert(tables::REVISION, tables::INITIAL_REVISION)
                    .map_err(internal)?;
                Some(tables::INITIAL_REVISION)
            }
            None => {
                return Err(StorageError::Internal(
                    "the file has entries but no layout version".to_owned(),
                ));
            }
        }
    };
    match revision {
        Some(revision) => {
            txn.commit().map_err(internal)?;
            Ok(revision)
        }
        None => {
            let revision = {
                let meta = txn.open_table(tables::META).map_err(internal)?;
                tables::read_revision(&meta)?
            };
            txn.abort().map_err(internal)?;
            Ok(revision)
        }
    }
}

/// A redb failure while doing `what`, as [`StorageError::Internal`]; a full disk says so
/// first, in the words of the operating system's error.
pub(super) fn failure(what: &str, error: impl Into<redb::Error>) -> StorageError {
    match error.into() {
        redb::Error::Io(io) if no_space(&io) => StorageError::Internal(format!(
            "no space left on device: {what}: {io}; writes are accepted again once space is freed"
        )),
        other => StorageError::Internal(format!("{what}: {other}")),
    }
}

/// Whether `error` says the file system (or the user's quota) is full.
fn no_space(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Bytes the file system holding `path` has left for ordinary users; `None` when the
/// file system cannot say.
pub(super) fn free_bytes(path: &Path) -> Option<u64> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// `bytes` in MiB with one decimal, for messages.
pub(super) fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}
