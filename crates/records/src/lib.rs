//! Potok records: Kafka's record batch format (magic v2), the one codec the
//! workspace shares.
//!
//! Batches stay bytes: the broker's produce and fetch paths only frame them
//! ([`BatchIter`]), read their 61-byte headers ([`BatchHeader`]), patch fields
//! in place and [`validate`] them, which walks the records' framing without
//! keeping any. Records are decoded only where they are needed (the client,
//! the log cleaner, group and metadata replay), byte-preserving: headers are an
//! ordered list in which keys may repeat, null keys and values stay null, and a
//! kept record can be copied verbatim into a rebuilt batch.
//!
//! Layout of the crate, one file per step:
//! * [`batch`]: the header (parse, CRC-32C, validate, patch) and the
//!   iteration over the batches of a byte buffer.
//! * `walk`: validation's streaming walk over a batch's records.
//! * [`compression`]: the codecs (gzip, snappy, lz4, zstd) as streams, and
//!   bounded whole-section (de)compression.
//! * `varint`: Kafka's zigzag varints.
//! * [`record`]: records inside a batch: parse, write, decode a batch's
//!   records, build a batch ([`BatchWriter`], [`write_batch`]).
//! * `error`: [`Error`], one variant per Kafka error code.
//!
//! Nothing here trusts a count or length from the bytes to size an allocation,
//! and nothing panics on malformed input.

#![warn(missing_docs)]

pub mod batch;
pub mod compression;
mod error;
pub mod record;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
mod varint;
mod walk;

pub use batch::{frame_size, validate, validate_cleaned, Batch, BatchHeader, BatchIter, TimestampType};
pub use compression::Compression;
pub use error::{Error, Result};
pub use record::{decode_records, parse_record, write_batch, write_record, BatchOptions, BatchWriter, RawHeader, RawRecord};
pub use varint::{put_varint, put_varlong, read_varint, read_varlong};
pub use walk::{walk_records, WalkError};
