//! One request frame (after its size prefix), decoded as the broker's network
//! layer does (header by API key and version, then the body with
//! kafka-protocol), and every Produce partition's records run through the
//! log's batch validator. Must never panic or abort, whatever the bytes.
#![no_main]

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;

// The broker's own allocator: forged array counts reserve address space only.
#[path = "../../crates/potok/src/allocator.rs"]
mod allocator;
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let mut frame = Bytes::copy_from_slice(data);
    let raw_key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let Ok(api_key) = ApiKey::try_from(raw_key) else { return };
    let range = api_key.valid_versions();
    if version < range.min || version > range.max {
        return;
    }
    let Ok(_header) = RequestHeader::decode(&mut frame, api_key.request_header_version(version)) else { return };
    let Ok(request) = RequestKind::decode(api_key, &mut frame, version) else { return };
    if let RequestKind::Produce(produce) = request {
        for topic in produce.topic_data {
            for partition in topic.partition_data {
                let Some(records) = partition.records else { continue };
                for batch in records::BatchIter::new(&records).flatten() {
                    let _ = records::validate(batch.bytes, usize::MAX);
                }
            }
        }
    }
});
