//! Container log files in the CRI format (`<RFC 3339 time> <stdout|stderr> <F|P> <text>`, one
//! line each; `P` marks a piece of a line longer than [`MAX_LINE`]), rotated by size: when the
//! file passes its limit it becomes `<path>.1` (the older `.1` becomes `.2`, and so on up to
//! the number of files kept) and a new file starts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest piece of a line written as one record.
pub const MAX_LINE: usize = 16 * 1024;

/// A log file being written.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: usize,
}

impl LogWriter {
    /// Opens (appending) `path`, creating its directory.
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> std::io::Result<LogWriter> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Writes one record (a full line when `full`, a piece otherwise) of `stream`.
    pub fn write(&mut self, stream: &str, full: bool, text: &[u8]) {
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.9fZ");
        let mut record = format!("{now} {stream} {} ", if full { 'F' } else { 'P' }).into_bytes();
        record.extend_from_slice(text);
        record.push(b'\n');
        if self.size > 0 && self.size + record.len() as u64 > self.max_size {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut()
            && f.write_all(&record).is_ok()
        {
            self.size += record.len() as u64;
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(numbered(self.max_files));
        for n in (1..self.max_files).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        let _ = std::fs::rename(&self.path, numbered(1));
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.size = 0;
    }
}

/// One parsed record.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The time as written.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// Whether this ends a line (`F`) or is a piece of a longer one (`P`).
    pub full: bool,
    /// The text, without the newline.
    pub text: &'a str,
}

/// Parses one record; `None` for a line not in the format.
pub fn parse(line: &str) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    if !matches!(stream, "stdout" | "stderr") {
        return None;
    }
    Some(Record {
        time,
        stream,
        full: tag != "P",
        text,
    })
}

/// The files of a log, oldest first (`path.N` … `path.1`, `path`).
pub fn files(path: &Path, max_files: usize) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..=max_files)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .filter(|p| p.exists())
        .collect();
    out.push(path.to_path_buf());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_into_time_stream_and_text() {
        let cases = [
            (
                "2026-01-01T00:00:00.000000001Z stdout F hello world",
                Some((
                    "2026-01-01T00:00:00.000000001Z",
                    "stdout",
                    true,
                    "hello world",
                )),
            ),
            (
                "2026-01-01T00:00:00Z stderr P part",
                Some(("2026-01-01T00:00:00Z", "stderr", false, "part")),
            ),
            (
                "2026-01-01T00:00:00Z stdout F ",
                Some(("2026-01-01T00:00:00Z", "stdout", true, "")),
            ),
            ("garbage", None),
            ("t other F x", None),
        ];
        for (line, want) in cases {
            let got = parse(line).map(|r| (r.time, r.stream, r.full, r.text));
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn a_file_past_its_size_is_rotated_and_old_ones_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c/0.log");
        let mut w = LogWriter::open(&path, 100, 2).expect("open");
        for i in 0..20 {
            w.write("stdout", true, format!("line {i}").as_bytes());
        }
        let all = files(&path, 2);
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(!PathBuf::from(format!("{}.3", path.display())).exists());
        let last = std::fs::read_to_string(&path).expect("read");
        assert!(last.ends_with("line 19\n"), "{last}");
    }
}
