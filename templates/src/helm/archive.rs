//! Packaged charts (`.tgz`, as `helm package` and `helm dependency build` write them), read in
//! memory: [`unpack`] turns the archive's bytes into a [`MemSource`] the chart loader reads like a
//! directory. Nothing is written to disk.
//!
//! As helm's `loader.LoadArchive` does, the first path component of every entry (the chart's
//! directory inside the archive) is dropped, only regular files are kept, and the archive is
//! refused past helm's limits (100 MiB in all, 5 MiB a file).

use crate::source::{Entry, EntryKind, Source, SourceError};
use std::collections::BTreeMap;
use std::io::Read;

/// helm's `MaxDecompressedChartSize`.
const MAX_CHART: u64 = 100 * 1024 * 1024;
/// helm's `MaxDecompressedFileSize`.
const MAX_FILE: u64 = 5 * 1024 * 1024;

/// A tree of files held in memory (an unpacked chart archive).
#[derive(Clone, Debug, Default)]
pub struct MemSource {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemSource {
    /// A source over `files` (paths relative to the root, `/`-separated).
    pub fn new(files: BTreeMap<String, Vec<u8>>) -> Self {
        MemSource { files }
    }

    /// Every file, by path.
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }
}

impl Source for MemSource {
    fn read(&self, path: &str) -> Result<Vec<u8>, SourceError> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| SourceError::NotFound(path.to_string()))
    }

    fn list_dir(&self, path: &str) -> Result<Vec<Entry>, SourceError> {
        if self.kind(path) != Some(EntryKind::Dir) {
            return Err(SourceError::NotFound(path.to_string()));
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut entries: BTreeMap<String, bool> = BTreeMap::new();
        for name in self.files.keys() {
            if let Some(rest) = name.strip_prefix(&prefix) {
                match rest.split_once('/') {
                    Some((dir, _)) => entries.insert(dir.to_string(), true),
                    None => entries.insert(rest.to_string(), false),
                };
            }
        }
        Ok(entries
            .into_iter()
            .map(|(name, is_dir)| Entry { name, is_dir })
            .collect())
    }

    fn kind(&self, path: &str) -> Option<EntryKind> {
        if self.files.contains_key(path) {
            return Some(EntryKind::File);
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        self.files
            .keys()
            .any(|k| k.starts_with(&prefix))
            .then_some(EntryKind::Dir)
    }
}

/// Unpacks the chart archive `bytes` (read from `path`, named in errors) into memory, its chart
/// at the root.
pub fn unpack(path: &str, bytes: &[u8]) -> Result<MemSource, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| format!("{path}: not a chart archive (gzip'd tar): {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("{path}: not a chart archive: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| format!("{path}: bad entry name: {e}"))?
            .to_string_lossy()
            .replace('\\', "/");
        let clean = crate::source::join("", &name)
            .map_err(|_| format!("{path}: entry {name:?} leaves the archive"))?;
        let Some((_, rel)) = clean.split_once('/') else {
            if clean == "Chart.yaml" {
                return Err(format!("{path}: chart yaml not in base directory"));
            }
            continue;
        };
        let size = entry.header().size().unwrap_or(0);
        if size > MAX_FILE {
            return Err(format!(
                "{path}: decompressed chart file {rel:?} is larger than the maximum file size {MAX_FILE}"
            ));
        }
        total += size;
        if total > MAX_CHART {
            return Err(format!(
                "{path}: chart exceeds the maximum decompressed size {MAX_CHART}"
            ));
        }
        let mut data = Vec::with_capacity(size as usize);
        entry
            .by_ref()
            .take(MAX_FILE + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("{path}: reading {rel}: {e}"))?;
        files.insert(rel.to_string(), data);
    }
    if files.is_empty() {
        return Err(format!("{path}: no files in the chart archive"));
    }
    Ok(MemSource::new(files))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (name, text) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, text.as_bytes())
                .expect("append");
        }
        builder
            .into_inner()
            .and_then(|gz| gz.finish())
            .expect("finish")
    }

    #[test]
    fn the_chart_directory_is_dropped_and_the_tree_listed() {
        let bytes = archive(&[
            ("sub/Chart.yaml", "name: sub"),
            ("sub/templates/a.yaml", "a"),
            ("sub/values.yaml", "x: 1"),
        ]);
        let src = unpack("charts/sub-1.0.0.tgz", &bytes).expect("unpack");
        assert_eq!(src.read("Chart.yaml").expect("read"), b"name: sub");
        assert_eq!(src.kind("templates"), Some(EntryKind::Dir));
        assert_eq!(src.kind("nothing"), None);
        let names: Vec<String> = src
            .list_dir("")
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["Chart.yaml", "templates", "values.yaml"]);
    }

    #[test]
    fn garbage_and_misplaced_charts_are_refused_naming_the_file() {
        let e = unpack("charts/x.tgz", b"not gzip").expect_err("garbage");
        assert!(e.starts_with("charts/x.tgz: "), "{e}");
        let e = unpack("charts/y.tgz", &archive(&[("Chart.yaml", "name: y")])).expect_err("flat");
        assert!(e.contains("chart yaml not in base directory"), "{e}");
    }
}
