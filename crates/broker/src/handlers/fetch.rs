//! Fetch: read whole batches from the partitions' logs, waiting up to max_wait_ms
//! for min_bytes, answered as soon as enough data arrives.
//!
//! Bounded as Kafka bounds it: `max_bytes` is capped by `fetch.max.bytes`, a
//! partition listed twice is read once (the last listing wins, as in Kafka's
//! map of fetch data), and every read first reserves its `max_bytes` from the
//! broker's Fetch memory budget, waiting for memory rather than allocating.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::str_bytes;
use crate::fetch_session::{FetchPlan, FetchTarget, PartitionState};
use crate::Broker;

/// First Fetch version that names topics by id.
const TOPIC_ID_VERSION: i16 = 13;
/// First Fetch version whose clients can read zstd batches (KIP-110).
const ZSTD_VERSION: i16 = 10;
/// The zstd codec id of the batch attributes.
const ZSTD: u8 = records::compression::ZSTD;

struct PartitionRead {
    target: FetchTarget,
    error: Option<ResponseError>,
    records: Bytes,
    high_watermark: i64,
    log_start_offset: i64,
}

/// Serves one Fetch; the permit holds the response's share of `memory` until
/// the caller has written it.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    req: FetchRequest,
    version: i16,
    memory: &Arc<Semaphore>,
) -> (FetchResponse, Option<OwnedSemaphorePermit>) {
    // From v13 topics are named by id (resolved here), before by name.
    let target = |name: &TopicName, id: uuid::Uuid, partition: i32, fetch_offset: i64, max_bytes: i32| {
        let (topic, topic_id) = if version >= TOPIC_ID_VERSION {
            (broker.replicas.topic_name(id).unwrap_or_default(), id)
        } else {
            (name.0.to_string(), uuid::Uuid::nil())
        };
        FetchTarget { topic, topic_id, partition, fetch_offset, max_bytes }
    };
    let requested = collapse_duplicates(req.topics.iter().flat_map(|t| {
        t.partitions
            .iter()
            .map(|p| target(&t.topic, t.topic_id, p.partition, p.fetch_offset, p.partition_max_bytes))
    }));
    let forgotten = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| target(&t.topic, t.topic_id, p, 0, 0)))
        .collect();
    let plan = match broker.fetch_sessions.lock().plan(req.session_id, req.session_epoch, requested, forgotten) {
        Ok(plan) => plan,
        Err(error) => return (FetchResponse::default().with_error_code(error.code()), None),
    };

    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let deadline = Instant::now() + max_wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let requested_max = if req.max_bytes <= 0 { i32::MAX as usize } else { req.max_bytes as usize };
    let max_bytes = requested_max.min(broker.config.limits.fetch_max_bytes);
    // A response larger than the whole budget may still run alone.
    let reservation = max_bytes.min(broker.config.limits.fetch_memory_bytes).min(u32::MAX as usize) as u32;
    let (reads, permit) = loop {
        // Memory first: a fetch that does not fit waits here, holding nothing.
        let permit = Arc::clone(memory).acquire_many_owned(reservation).await.ok();
        // Register for the wake-up before reading, so an append between the read
        // and the wait is not missed.
        let notified = broker.data_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let reads = read_all(broker, &plan, max_bytes);
        let total: usize = reads.iter().map(|r| r.records.len()).sum();
        let any_error = reads.iter().any(|r| r.error.is_some());
        if total >= min_bytes || any_error || plan.targets.is_empty() || Instant::now() >= deadline {
            break (reads, permit);
        }
        // Waiting for data holds no memory.
        drop((reads, permit));
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    };
    let reads = if version < ZSTD_VERSION { reads.into_iter().map(refuse_zstd).collect() } else { reads };
    (build_response(broker, &plan, reads, version), permit)
}

/// One target per partition: a partition listed again takes the later
/// listing's offset and limit at the first listing's place (Kafka keeps fetch
/// data in an insertion-ordered map).
fn collapse_duplicates(targets: impl Iterator<Item = FetchTarget>) -> Vec<FetchTarget> {
    let mut out: Vec<FetchTarget> = Vec::new();
    let mut index: std::collections::HashMap<(String, uuid::Uuid, i32), usize> = std::collections::HashMap::new();
    for target in targets {
        let key = (target.topic.clone(), target.topic_id, target.partition);
        match index.get(&key) {
            Some(&at) => out[at] = target,
            None => {
                index.insert(key, out.len());
                out.push(target);
            }
        }
    }
    out
}

/// Below Fetch v10 clients cannot decode zstd: a partition whose data holds a
/// zstd batch is answered UNSUPPORTED_COMPRESSION_TYPE without data, as Kafka does.
fn refuse_zstd(read: PartitionRead) -> PartitionRead {
    let has_zstd = records::BatchIter::stop_at_partial_tail(&read.records)
        .any(|b| b.is_ok_and(|b| b.header.compression() == ZSTD));
    if !has_zstd {
        return read;
    }
    PartitionRead {
        error: Some(ResponseError::UnsupportedCompressionType),
        records: Bytes::new(),
        high_watermark: -1,
        log_start_offset: -1,
        ..read
    }
}

fn read_all(broker: &Broker, plan: &FetchPlan, max_bytes: usize) -> Vec<PartitionRead> {
    let mut remaining = max_bytes;
    let mut total = 0usize;
    plan.targets
        .iter()
        .map(|target| {
            let mut read = PartitionRead {
                target: target.clone(),
                error: None,
                records: Bytes::new(),
                high_watermark: -1,
                log_start_offset: -1,
            };
            let Some(partition) = broker.replicas.partition(&target.topic, target.partition) else {
                read.error = Some(if target.topic.is_empty() && !target.topic_id.is_nil() {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                });
                return read;
            };
            read.high_watermark = partition.high_watermark();
            read.log_start_offset = partition.log_start_offset();
            let limit = (target.max_bytes.max(0) as usize).min(remaining);
            if limit == 0 && total > 0 {
                return read;
            }
            match partition.read(target.fetch_offset, limit) {
                Ok(records) => {
                    // Only the first partition with data may exceed the limits (KIP-74).
                    if records.len() <= limit || total == 0 {
                        total += records.len();
                        remaining = remaining.saturating_sub(records.len());
                        read.records = records;
                    }
                }
                Err(e) => read.error = Some(e.response_error()),
            }
            read
        })
        .collect()
}

fn build_response(broker: &Broker, plan: &FetchPlan, reads: Vec<PartitionRead>, version: i16) -> FetchResponse {
    let mut sessions = broker.fetch_sessions.lock();
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for read in reads {
        let has_records_or_error = !read.records.is_empty() || read.error.is_some();
        let state = PartitionState { high_watermark: read.high_watermark, log_start_offset: read.log_start_offset };
        if !sessions.should_send(plan, &read.target, state, has_records_or_error) {
            continue;
        }
        let data = PartitionData::default()
            .with_partition_index(read.target.partition)
            .with_error_code(read.error.map_or(0, |e| e.code()))
            .with_high_watermark(read.high_watermark)
            .with_last_stable_offset(read.high_watermark)
            .with_log_start_offset(read.log_start_offset)
            .with_records(Some(read.records));
        let same_topic = topics.last().is_some_and(|t| {
            if version >= TOPIC_ID_VERSION {
                t.topic_id == read.target.topic_id
            } else {
                t.topic.0.as_str() == read.target.topic
            }
        });
        if !same_topic {
            topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(str_bytes(read.target.topic.clone())))
                    .with_topic_id(read.target.topic_id),
            );
        }
        if let Some(topic) = topics.last_mut() {
            topic.partitions.push(data);
        }
    }
    FetchResponse::default().with_session_id(plan.session_id).with_responses(topics)
}
