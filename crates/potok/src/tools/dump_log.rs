//! `kafka-dump-log` (Kafka's DumpLogSegments): prints the batches and records of
//! `.log` segment files and the entries of `.index` / `.timeindex` files, read
//! straight from disk (no broker), in Kafka's output format.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bytes::Bytes;
use client::records::{decode_batches, Compression, DecodedBatch};
use records::BatchHeader;

/// Bytes a batch's records may decompress to (bounded, as Kafka bounds it).
const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;
/// Size of a batch's offset and length fields, before the rest of its header.
const LOG_OVERHEAD: usize = 12;
/// Offset-index and time-index entry sizes.
const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

/// Flags of Kafka's `kafka-dump-log.sh`.
#[derive(clap::Args, Debug)]
pub(crate) struct KafkaDumpLogArgs {
    /// Comma-separated `.log`, `.index` and `.timeindex` files to dump.
    #[arg(long, required = true, value_name = "file1,file2,...")]
    files: String,
    /// Print each record's key and payload (implies --deep-iteration).
    #[arg(long)]
    print_data_log: bool,
    /// Print every record, not only every batch.
    #[arg(long)]
    deep_iteration: bool,
    /// For index files: only check their sanity.
    #[arg(long)]
    index_sanity_check: bool,
    /// For index files: check them against the log without printing entries.
    #[arg(long)]
    verify_index_only: bool,
    /// Skip the record metadata when printing records.
    #[arg(long)]
    skip_record_metadata: bool,
    /// Largest batch to read when checking index entries.
    #[arg(long, default_value_t = 5 * 1024 * 1024)]
    max_message_size: usize,
    /// Read at most this many bytes of each `.log` file.
    #[arg(long, default_value_t = i32::MAX as usize)]
    max_bytes: usize,
}

/// Problems found while dumping, printed to stderr at the end as Kafka does.
#[derive(Default)]
struct Findings {
    index_mismatches: Vec<(String, Vec<(i64, i64)>)>,
    non_consecutive: Vec<(String, Vec<(i64, i64)>)>,
}

pub(crate) fn run(args: KafkaDumpLogArgs) -> anyhow::Result<ExitCode> {
    let mut findings = Findings::default();
    for name in args.files.split(',') {
        let path = PathBuf::from(name);
        println!("Dumping {name}");
        let suffix = name.rsplit_once('.').map_or("", |(_, s)| s);
        let result = match suffix {
            "log" => dump_log(&path, &args, &mut findings),
            "index" => dump_index(&path, &args, &mut findings),
            "timeindex" => dump_time_index(&path, &args),
            _ => {
                eprintln!("Ignoring unknown file {name}");
                Ok(())
            }
        };
        if let Err(e) = result {
            eprintln!("{e:#}");
            return Ok(ExitCode::FAILURE);
        }
    }
    for (file, mismatches) in &findings.index_mismatches {
        eprintln!("Mismatches in :{file}");
        for (index_offset, log_offset) in mismatches.iter().rev() {
            eprintln!("  Index offset: {index_offset}, log offset: {log_offset}");
        }
    }
    for (file, pairs) in &findings.non_consecutive {
        eprintln!("Non-consecutive offsets in {file}");
        for (prev, next) in pairs {
            eprintln!("  {prev} is followed by {next}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The base offset a segment file's name carries (`00000000000000000042.log`).
fn base_offset(path: &Path) -> anyhow::Result<i64> {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .unwrap_or_default();
    stem.parse().with_context(|| {
        format!(
            "{}: the file name is not a segment's base offset",
            path.display()
        )
    })
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// Reads the batches of a `.log` file one at a time, each as its bytes and
/// position; stops at the first incomplete or unparseable one.
struct FileBatches {
    file: File,
    limit: u64,
    position: u64,
}

impl FileBatches {
    fn open(path: &Path, max_bytes: usize) -> anyhow::Result<FileBatches> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = file
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        Ok(FileBatches {
            file,
            limit: size.min(max_bytes as u64),
            position: 0,
        })
    }

    /// The next whole batch at or after `position`, with its header.
    fn next_batch(&mut self) -> anyhow::Result<Option<(u64, BatchHeader, Vec<u8>)>> {
        let mut head = [0u8; LOG_OVERHEAD];
        if self.position + LOG_OVERHEAD as u64 > self.limit {
            return Ok(None);
        }
        self.file
            .read_exact_at(&mut head, self.position)
            .context("cannot read the log file")?;
        let length = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        let Ok(length) = u64::try_from(length) else {
            return Ok(None);
        };
        let total = LOG_OVERHEAD as u64 + length;
        if self.position + total > self.limit {
            return Ok(None);
        }
        let mut bytes = vec![0u8; usize::try_from(total).context("batch too large")?];
        self.file
            .read_exact_at(&mut bytes, self.position)
            .context("cannot read the log file")?;
        let Ok(header) = BatchHeader::parse(&bytes) else {
            return Ok(None);
        };
        let at = self.position;
        self.position += total;
        Ok(Some((at, header, bytes)))
    }
}

/// Kafka's `incrementSequence`: sequences wrap at i32::MAX to 0.
fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    if sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

fn codec_name(id: u8) -> &'static str {
    match Compression::from_id(id) {
        Some(Compression::None) => "none",
        Some(Compression::Gzip) => "gzip",
        Some(Compression::Snappy) => "snappy",
        Some(Compression::Lz4) => "lz4",
        Some(Compression::Zstd) => "zstd",
        None => "unknown",
    }
}

/// Kafka's batch line.
fn batch_line(h: &BatchHeader, position: u64, valid: bool) -> String {
    let last_sequence = if h.base_sequence < 0 {
        -1
    } else {
        increment_sequence(h.base_sequence, h.last_offset_delta)
    };
    let delete_horizon = if h.has_delete_horizon() {
        format!("OptionalLong[{}]", h.base_timestamp)
    } else {
        "OptionalLong.empty".to_owned()
    };
    format!(
        "baseOffset: {} lastOffset: {} count: {} baseSequence: {} lastSequence: {last_sequence} producerId: {} \
         producerEpoch: {} partitionLeaderEpoch: {} isTransactional: {} isControl: {} deleteHorizonMs: {delete_horizon} \
         position: {position} {}: {} size: {} magic: {} compresscodec: {} crc: {} isvalid: {valid}",
        h.base_offset,
        h.last_offset(),
        h.record_count,
        h.base_sequence,
        h.producer_id,
        h.producer_epoch,
        h.partition_leader_epoch,
        h.is_transactional(),
        h.is_control(),
        h.timestamp_type(),
        h.max_timestamp,
        h.total_size(),
        h.magic,
        codec_name(h.compression()),
        h.crc,
    )
}

/// Kafka's record line (metadata, then with `print` the key and payload).
fn record_lines(batch: &DecodedBatch, print: bool, skip_metadata: bool) -> Vec<String> {
    let kind = batch.timestamp_type;
    let size = |b: &Option<Bytes>| {
        b.as_ref()
            .map_or(-1, |b| i64::try_from(b.len()).unwrap_or(i64::MAX))
    };
    batch
        .records
        .iter()
        .map(|r| {
            let mut line = String::new();
            if !skip_metadata {
                let delta = i32::try_from(r.offset - batch.base_offset).unwrap_or(0);
                let sequence =
                    if batch.base_sequence < 0 { -1 } else { increment_sequence(batch.base_sequence, delta) };
                let keys: Vec<&str> = r.headers.iter().map(|h| h.key.as_str()).collect();
                line = format!(
                    "| offset: {} {kind}: {} keySize: {} valueSize: {} sequence: {sequence} headerKeys: [{}]",
                    r.offset,
                    r.timestamp,
                    size(&r.key),
                    size(&r.value),
                    keys.join(",")
                );
            }
            if print && !batch.is_control {
                let mut prefix = if skip_metadata { "| " } else { " " };
                if let Some(k) = &r.key {
                    line.push_str(&format!("{prefix}key: {}", String::from_utf8_lossy(k)));
                    prefix = " ";
                }
                if let Some(v) = &r.value {
                    line.push_str(&format!("{prefix}payload: {}", String::from_utf8_lossy(v)));
                }
            }
            line
        })
        .collect()
}

fn dump_log(path: &Path, args: &KafkaDumpLogArgs, findings: &mut Findings) -> anyhow::Result<()> {
    println!("Log starting offset: {}", base_offset(path)?);
    let deep = args.deep_iteration || args.print_data_log;
    let mut batches = FileBatches::open(path, args.max_bytes)?;
    let mut last_offset = -1i64;
    let mut non_consecutive = Vec::new();
    while let Some((position, header, bytes)) = batches.next_batch()? {
        let valid = header.verify_crc(&bytes).is_ok();
        println!("{}", batch_line(&header, position, valid));
        if !deep || !valid {
            continue;
        }
        let decoded = decode_batches(Bytes::from(bytes), MAX_DECOMPRESSED)
            .with_context(|| format!("{}: batch at position {position}", path.display()))?;
        for batch in &decoded {
            for r in &batch.records {
                if r.offset != last_offset + 1 {
                    non_consecutive.push((last_offset, r.offset));
                }
                last_offset = r.offset;
            }
            for line in record_lines(batch, args.print_data_log, args.skip_record_metadata) {
                println!("{line}");
            }
        }
    }
    let size = batches.file.metadata().map(|m| m.len()).unwrap_or(0);
    let trailing = size.saturating_sub(batches.position);
    if trailing > 0 && args.max_bytes == i32::MAX as usize {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        println!("Found {trailing} invalid bytes at the end of {name}");
    }
    if !non_consecutive.is_empty() {
        findings
            .non_consecutive
            .push((absolute(path), non_consecutive));
    }
    Ok(())
}

/// The entries of an index file (`entry` bytes each) and the file's length.
fn read_entries(path: &Path, entry: usize) -> anyhow::Result<(Vec<u8>, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = bytes.len();
    Ok((bytes, len / entry))
}

fn sibling(path: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    let base = base_offset(path)?;
    Ok(path.with_file_name(format!("{base:020}.{suffix}")))
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Kafka's first sanity check of an index: whole entries only.
fn check_whole_entries(path: &Path, len: usize, entry: usize, kind: &str) -> anyhow::Result<()> {
    if !len.is_multiple_of(entry) {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        bail!("{kind} file {name} is corrupt, found {len} bytes which is neither positive nor a multiple of {entry}.");
    }
    Ok(())
}

fn dump_index(path: &Path, args: &KafkaDumpLogArgs, findings: &mut Findings) -> anyhow::Result<()> {
    let base = base_offset(path)?;
    let (bytes, entries) = read_entries(path, OFFSET_ENTRY)?;
    let log = File::open(sibling(path, "log")?)
        .with_context(|| format!("cannot open the log file of {}", path.display()))?;
    if entries == 0 && bytes.is_empty() {
        println!("{} is empty.", path.display());
        return Ok(());
    }
    if args.index_sanity_check {
        // Kafka's OffsetIndex.sanityCheck.
        check_whole_entries(path, bytes.len(), OFFSET_ENTRY, "Index")?;
        let last = base + i64::from(i32_at(&bytes, (entries - 1) * OFFSET_ENTRY));
        if last < base {
            bail!(
                "Corrupt index found, index file ({}) has non-zero size but the last offset is {last} which is less than the base offset {base}.",
                absolute(path)
            );
        }
        println!("{} passed sanity check.", path.display());
        return Ok(());
    }
    let mut mismatches = Vec::new();
    for i in 0..entries {
        let relative = i32_at(&bytes, i * OFFSET_ENTRY);
        let position = i32_at(&bytes, i * OFFSET_ENTRY + 4);
        let offset = base + i64::from(relative);
        // A zero entry after the first ends a preallocated index.
        if offset == base && i > 0 {
            break;
        }
        let mut head = vec![0u8; 61];
        let found = u64::try_from(position)
            .ok()
            .and_then(|p| log.read_exact_at(&mut head, p).ok())
            .and_then(|()| BatchHeader::parse(&head).ok())
            .filter(|h| h.total_size() <= args.max_message_size)
            .map_or(-1, |h| h.last_offset());
        if found != offset {
            mismatches.push((offset, found));
        }
        if !args.verify_index_only {
            println!("offset: {offset} position: {position}");
        }
    }
    if !mismatches.is_empty() {
        findings.index_mismatches.push((absolute(path), mismatches));
    }
    Ok(())
}

fn dump_time_index(path: &Path, args: &KafkaDumpLogArgs) -> anyhow::Result<()> {
    let base = base_offset(path)?;
    let (bytes, entries) = read_entries(path, TIME_ENTRY)?;
    if args.index_sanity_check {
        // Kafka's TimeIndex.sanityCheck.
        check_whole_entries(path, bytes.len(), TIME_ENTRY, "Time index")?;
        if entries > 0 {
            let first = i64_at(&bytes, 0);
            let last_ts = i64_at(&bytes, (entries - 1) * TIME_ENTRY);
            let last_offset = base + i64::from(i32_at(&bytes, (entries - 1) * TIME_ENTRY + 8));
            if last_ts < first {
                bail!(
                    "Corrupt time index found, time index file ({}) has non-zero size but the last timestamp is {last_ts} which is less than the first entry timestamp {first}.",
                    absolute(path)
                );
            }
            if last_offset < base {
                bail!(
                    "Corrupt time index found, time index file ({}) has non-zero size but the last offset is {last_offset} which is less than the first entry offset {base}.",
                    absolute(path)
                );
            }
        }
        println!("{} passed sanity check.", path.display());
        return Ok(());
    }
    for i in 0..entries {
        let timestamp = i64_at(&bytes, i * TIME_ENTRY);
        let offset = base + i64::from(i32_at(&bytes, i * TIME_ENTRY + 8));
        if offset == base && i > 0 {
            break;
        }
        if !args.verify_index_only {
            println!("timestamp: {timestamp} offset: {offset}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_as_kafkas() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }
}
