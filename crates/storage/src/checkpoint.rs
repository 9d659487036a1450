//! Kafka's offset checkpoint files (`log-start-offset-checkpoint`,
//! `recovery-point-offset-checkpoint`, `replication-offset-checkpoint`): one
//! per log directory, text:
//!
//! ```text
//! 0                      version
//! 2                      number of entries
//! orders 0 42            topic, partition, offset
//! orders 1 7
//! ```
//!
//! The same layout with other entries is the partition directory's
//! `leader-epoch-checkpoint` (see [`read_entries`]).
//!
//! Written as Kafka's `CheckpointFile` does: to `<name>.tmp`, fsynced, renamed
//! over the file, the directory fsynced.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result, StorageError};

/// The file holding each partition's log start offset, in every log dir.
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
/// The file holding each partition's high watermark, in every log dir.
pub const REPLICATION_OFFSET_CHECKPOINT: &str = "replication-offset-checkpoint";
/// The file holding each partition's recovery point (the offset below which
/// the log is known to be flushed), in every log dir.
pub const RECOVERY_POINT_OFFSET_CHECKPOINT: &str = "recovery-point-offset-checkpoint";

/// The only checkpoint format version Kafka has.
const VERSION: u32 = 0;

/// One entry: topic, partition, offset.
pub type CheckpointEntry = (String, i32, i64);

/// Reads a checkpoint file; a missing file is empty. A malformed file is
/// [`StorageError::CorruptRecord`] naming it.
pub fn read_checkpoint(path: &Path) -> Result<Vec<CheckpointEntry>> {
    read_entries(path, |fields| match fields {
        [topic, partition, offset] => {
            Some(((*topic).to_owned(), partition.parse().ok()?, offset.parse().ok()?))
        }
        _ => None,
    })
}

/// Replaces the checkpoint file atomically and durably with `entries`.
pub fn write_checkpoint(path: &Path, entries: &[CheckpointEntry]) -> Result<()> {
    let lines = entries
        .iter()
        .map(|(topic, partition, offset)| format!("{topic} {partition} {offset}"));
    write_entries(path, lines)
}

/// Reads a file in Kafka's `CheckpointFile` layout (version 0, entry count,
/// one entry per line), parsing each line's whitespace-separated fields with
/// `parse`. A missing file is empty; a malformed one (unknown version, wrong
/// count, a line `parse` refuses) is [`StorageError::CorruptRecord`] naming it.
pub fn read_entries<T>(path: &Path, parse: impl Fn(&[&str]) -> Option<T>) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(StorageError::CorruptRecord(format!(
                "checkpoint file {}: not text",
                path.display()
            )))
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let bad = |what: &str| {
        StorageError::CorruptRecord(format!("checkpoint file {}: {what}", path.display()))
    };
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some(v) if v.parse::<u32>() == Ok(VERSION) => {}
        Some(v) => return Err(bad(&format!("unknown version {v:?}"))),
        None => return Err(bad("empty file")),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| bad("missing entry count"))?;
    let mut entries = Vec::new();
    for line in lines.by_ref().take(count) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        entries.push(parse(&fields).ok_or_else(|| bad(&format!("malformed line {line:?}")))?);
    }
    if entries.len() != count {
        return Err(bad(&format!(
            "expected {count} entries, found {}",
            entries.len()
        )));
    }
    Ok(entries)
}

/// Replaces a file in Kafka's `CheckpointFile` layout atomically and durably
/// with `lines` (each one entry, without its newline).
pub fn write_entries(path: &Path, lines: impl ExactSizeIterator<Item = String>) -> Result<()> {
    let mut text = format!("{VERSION}\n{}\n", lines.len());
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    write_durably(path, text.as_bytes()).map_err(io_err(path))
}

/// The temporary file [`write_durably`] writes before renaming it over `path`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Replaces the file at `path` with `bytes` atomically and durably: written to
/// [`temporary_path`], fsynced, renamed over `path`, the directory fsynced. A
/// crash leaves the old file or the new one, never a torn one.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary_path(path);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_kafkas_text_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LOG_START_OFFSET_CHECKPOINT);
        assert!(read_checkpoint(&path).expect("missing").is_empty());
        let entries = vec![("orders".to_owned(), 0, 42), ("a.b-c".to_owned(), 11, 7)];
        write_checkpoint(&path, &entries).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "0\n2\norders 0 42\na.b-c 11 7\n");
        assert_eq!(read_checkpoint(&path).expect("read"), entries);
        assert!(!dir.path().join("log-start-offset-checkpoint.tmp").exists());
    }

    #[test]
    fn malformed_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LOG_START_OFFSET_CHECKPOINT);
        for text in [
            "",
            "1\n0\n",
            "0\n2\nt 0 1\n",
            "0\n1\nt x 1\n",
            "0\n1\nt 0 1 9\n",
        ] {
            std::fs::write(&path, text).expect("write");
            let err = read_checkpoint(&path).expect_err(text);
            assert!(
                err.to_string().contains("log-start-offset-checkpoint"),
                "{err}"
            );
        }
    }
}
