//! Where renderers read files from: a directory on disk, or (supplied by the syncer) a Git tree.
//!
//! Paths are relative to the source's root, use `/` as separator, and never leave the root:
//! [`join`] resolves `.` and `..` and refuses to climb above it. The empty path is the root.

use std::path::PathBuf;

/// Why a file or directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Nothing exists at the path.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// A relative path climbs above the root of the source.
    #[error("{0}: path leaves the source root")]
    OutsideRoot(String),
    /// The path is a symbolic link; sources never follow links (one could point anywhere).
    #[error("{0}: is a symbolic link; links are not followed")]
    Symlink(String),
    /// The file is larger than a renderer reads.
    #[error("{path}: {size} bytes, more than the {limit} bytes a file may have")]
    TooLarge {
        /// The path being read.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The largest size read.
        limit: u64,
    },
    /// The underlying storage failed.
    #[error("{path}: {source}")]
    Io {
        /// The path being read.
        path: String,
        /// What the storage reported.
        #[source]
        source: std::io::Error,
    },
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name (no `/`).
    pub name: String,
    /// Whether the entry is a directory.
    pub is_dir: bool,
}

/// Read access to a tree of files.
pub trait Source {
    /// The bytes of the file at `path`.
    fn read(&self, path: &str) -> Result<Vec<u8>, SourceError>;
    /// The entries of the directory at `path`, sorted by name.
    fn list_dir(&self, path: &str) -> Result<Vec<Entry>, SourceError>;
    /// Whether `path` names a directory; `None` when nothing is there.
    fn kind(&self, path: &str) -> Option<EntryKind>;
    /// Whether anything exists at `path`.
    fn exists(&self, path: &str) -> bool {
        self.kind(path).is_some()
    }
}

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// A [`Source`] over a directory of the local filesystem.
#[derive(Clone, Debug)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// A source whose root is the directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirSource { root: root.into() }
    }

    fn full(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }
}

impl Source for DirSource {
    fn read(&self, path: &str) -> Result<Vec<u8>, SourceError> {
        std::fs::read(self.full(path)).map_err(|e| io_error(path, e))
    }

    fn list_dir(&self, path: &str) -> Result<Vec<Entry>, SourceError> {
        let reader = std::fs::read_dir(self.full(path)).map_err(|e| io_error(path, e))?;
        let mut entries = Vec::new();
        for entry in reader {
            let entry = entry.map_err(|e| io_error(path, e))?;
            let is_dir = std::fs::metadata(entry.path())
                .map(|m| m.is_dir())
                .unwrap_or(false);
            entries.push(Entry {
                name: entry.file_name().to_string_lossy().into_owned(),
                is_dir,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn kind(&self, path: &str) -> Option<EntryKind> {
        let meta = std::fs::metadata(self.full(path)).ok()?;
        Some(if meta.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::File
        })
    }
}

fn io_error(path: &str, e: std::io::Error) -> SourceError {
    if e.kind() == std::io::ErrorKind::NotFound {
        SourceError::NotFound(path.to_string())
    } else {
        SourceError::Io {
            path: path.to_string(),
            source: e,
        }
    }
}

/// Joins `relative` onto the directory `base`, resolving `.` and `..`.
///
/// An absolute `relative` (leading `/`) is taken from the root.
pub fn join(base: &str, relative: &str) -> Result<String, SourceError> {
    let mut parts: Vec<&str> = if relative.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|p| !p.is_empty()).collect()
    };
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(SourceError::OutsideRoot(format!("{base}/{relative}")));
                }
            }
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// The directory containing `path` (the root for a top-level path).
pub fn parent(path: &str) -> &str {
    path.rfind('/').map(|i| &path[..i]).unwrap_or("")
}

/// The last component of `path`.
pub fn file_name(path: &str) -> &str {
    path.rfind('/').map(|i| &path[i + 1..]).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(base: &str, relative: &str, expected: Option<&str>) {
        assert_eq!(
            join(base, relative).ok().as_deref(),
            expected,
            "{base} + {relative}"
        );
    }

    #[test]
    fn join_resolves_dots_and_refuses_to_leave_the_root() {
        check("apps/web", "base", Some("apps/web/base"));
        check("apps/web", "../base/./x.yaml", Some("apps/base/x.yaml"));
        check("", "a/b", Some("a/b"));
        check("apps", "../..", None);
        check("apps/web", "/shared/x", Some("shared/x"));
        check("apps", "..", Some(""));
    }

    #[test]
    fn parent_and_file_name_split_a_path() {
        assert_eq!(parent("a/b/c.yaml"), "a/b");
        assert_eq!(parent("c.yaml"), "");
        assert_eq!(file_name("a/b/c.yaml"), "c.yaml");
        assert_eq!(file_name("c.yaml"), "c.yaml");
    }
}
