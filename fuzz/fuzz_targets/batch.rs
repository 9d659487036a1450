//! Bytes a client sends as a partition's records: framed into batches and each
//! validated as the log does before an append (header, CRC, and the records,
//! streamed through the codec of compressed batches), and as a cleaner's output.
//! The records section is also walked under every codec, CRC or not, so the
//! decompressors see arbitrary input. Must never panic or abort.
#![no_main]

use libfuzzer_sys::fuzz_target;
use records::batch::{self, HEADER_SIZE};
use records::compression;

#[path = "../../crates/potok/src/allocator.rs"]
mod allocator;
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

fuzz_target!(|data: &[u8]| {
    for b in records::BatchIter::new(data).flatten() {
        let _ = batch::validate(b.bytes, usize::MAX);
        let _ = batch::validate_cleaned(b.bytes);
        let section = b.bytes.get(HEADER_SIZE..).unwrap_or_default();
        for codec in 0..=compression::ZSTD {
            if let Ok(records) = compression::buffered(codec, section) {
                let _ = records::walk_records(records, b.header.record_count, true);
            }
        }
    }
});
