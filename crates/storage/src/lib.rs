//! Potok storage: a partition's append-only log on disk, in Kafka's layout.
//!
//! A [`Log`] lives in one directory and is a sequence of segments, each a
//! `<20-digit base offset>.log` file of whole Kafka RecordBatches (magic v2)
//! with a sparse `.index` (relative offset -> file position) and
//! `.timeindex` (timestamp -> relative offset). Batches stay opaque bytes:
//! the log reads only their 61-byte headers (the `records` crate's
//! [`records::batch`], which owns the batch format), patches base offset and
//! leader epoch in place on append, and serves fetches straight from the files.
//!
//! Layout of the crate, one file per step:
//! * `config`: [`LogConfig`], Kafka-named settings.
//! * `error`: [`StorageError`], one variant per Kafka error code.
//! * `index`: the `.index` / `.timeindex` file formats.
//! * `segment`: one segment: append, lookups, truncation; only the segment
//!   being written keeps its files open.
//! * [`file_cache`]: the bounded cache of open handles every other segment's
//!   reads go through.
//! * `recovery`: opening a directory, checking and rebuilding segments.
//! * [`checkpoint`]: Kafka's per-log-dir offset checkpoint files.
//! * [`leader_epoch`]: the leader-epoch cache and its `leader-epoch-checkpoint`.
//! * `producer_state`: idempotent producers' last batches and their
//!   `<offset>.snapshot` files.
//! * `log`: [`Log`], the public face: append, read, truncate, flush, and
//!   the segment replacement a log cleaner uses.

#![warn(missing_docs)]

pub mod checkpoint;
mod config;
mod error;
pub mod file_cache;
mod index;
pub mod leader_epoch;
mod log;
mod producer_state;
mod recovery;
mod segment;

pub use config::LogConfig;
pub use error::{Result, StorageError};
pub use leader_epoch::EpochEntry;
pub use log::{AppendInfo, Log, ReplacementTarget, SegmentInfo, StagedReplacement, SwapOutcome};
