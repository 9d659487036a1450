//! Fetch: resolve the request's partitions and session, hand them to
//! [`ReplicaManager::fetch_records`](crate::replica_manager::ReplicaManager::fetch_records)
//! (which reads and waits), build the response.
//!
//! Bounded as Kafka bounds it: `max_bytes` is capped by `fetch.max.bytes`, a
//! partition listed twice is read once (the last listing wins, as in Kafka's
//! map of fetch data), and every read first reserves its `max_bytes` from the
//! broker's Fetch memory budget, waiting for memory rather than allocating.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::str_bytes;
use crate::cluster_view::{node_endpoints, wants_leader_hint, ClusterView};
use crate::fetch_session::{FetchPlan, FetchTarget, PartitionState};
use crate::replica_manager::{FetchParams, PartitionRead};
use crate::Broker;

/// First Fetch version that names topics by id.
const TOPIC_ID_VERSION: i16 = 13;
/// First Fetch version whose clients can read zstd batches (KIP-110).
const ZSTD_VERSION: i16 = 10;
/// First Fetch version that carries the replica id in `replica_state` (KIP-903).
const REPLICA_STATE_VERSION: i16 = 15;
/// First Fetch version with the current-leader hints of KIP-951.
const LEADER_HINT_VERSION: i16 = 16;
/// First Fetch version with `last_fetched_epoch` and `diverging_epoch` (KIP-320).
const DIVERGING_EPOCH_VERSION: i16 = 12;
/// The zstd codec id of the batch attributes.
const ZSTD: u8 = records::compression::ZSTD;

/// Serves one Fetch; the permit holds the response's share of `memory` until
/// the caller has written it.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    req: FetchRequest,
    version: i16,
    listener: &str,
    memory: &Arc<Semaphore>,
) -> (FetchResponse, Option<OwnedSemaphorePermit>) {
    // From v13 topics are named by id (resolved here), before by name.
    let target = |name: &TopicName, id: uuid::Uuid, partition: i32, fetch_offset: i64, max_bytes: i32, epochs: (i32, i32)| {
        let (topic, topic_id) = if version >= TOPIC_ID_VERSION {
            (broker.replicas.topic_name(id).unwrap_or_default(), id)
        } else {
            (name.0.to_string(), uuid::Uuid::nil())
        };
        let (current_leader_epoch, last_fetched_epoch) = epochs;
        // Below v12 the field is not on the wire (and must be ignored).
        let last_fetched_epoch = if version >= DIVERGING_EPOCH_VERSION { last_fetched_epoch } else { -1 };
        FetchTarget { topic, topic_id, partition, fetch_offset, max_bytes, current_leader_epoch, last_fetched_epoch }
    };
    let requested = collapse_duplicates(req.topics.iter().flat_map(|t| {
        t.partitions.iter().map(|p| {
            let epochs = (p.current_leader_epoch, p.last_fetched_epoch);
            target(&t.topic, t.topic_id, p.partition, p.fetch_offset, p.partition_max_bytes, epochs)
        })
    }));
    let forgotten = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| target(&t.topic, t.topic_id, p, 0, 0, (-1, -1))))
        .collect();
    let plan = match broker.fetch_sessions.lock().plan(req.session_id, req.session_epoch, requested, forgotten) {
        Ok(plan) => plan,
        Err(error) => return (FetchResponse::default().with_error_code(error.code()), None),
    };

    let (replica_id, replica_epoch) = if version >= REPLICA_STATE_VERSION {
        (req.replica_state.replica_id.0, req.replica_state.replica_epoch)
    } else {
        (req.replica_id.0, -1)
    };
    let requested_max = if req.max_bytes <= 0 { i32::MAX as usize } else { req.max_bytes as usize };
    let params = FetchParams {
        replica_id: replica_id.max(-1),
        replica_epoch,
        max_wait: Duration::from_millis(req.max_wait_ms.max(0) as u64),
        min_bytes: req.min_bytes.max(0) as usize,
        max_bytes: requested_max.min(broker.config.limits.fetch_max_bytes),
    };
    // A response larger than the whole budget may still run alone.
    let reservation = params.max_bytes.min(broker.config.limits.fetch_memory_bytes).min(u32::MAX as usize) as u32;
    let (reads, permit) = broker.replicas.fetch_records(&params, &plan.targets, memory, reservation).await;
    let reads = if version < ZSTD_VERSION { reads.into_iter().map(refuse_zstd).collect() } else { reads };
    (build_response(broker, &plan, reads, version, listener), permit)
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
        diverging_epoch: None,
        ..read
    }
}

fn build_response(broker: &Broker, plan: &FetchPlan, reads: Vec<PartitionRead>, version: i16, listener: &str) -> FetchResponse {
    // KIP-951 (v16+): where a partition this broker does not lead is led now.
    let image = (version >= LEADER_HINT_VERSION).then(|| broker.image());
    let view = image.as_deref().map(|image| ClusterView::of(broker, image, listener));
    let mut hinted = Vec::new();
    let mut sessions = broker.fetch_sessions.lock();
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for read in reads {
        // A diverging epoch is always sent, as Kafka's sessions do.
        let has_records_or_error = !read.records.is_empty() || read.error.is_some() || read.diverging_epoch.is_some();
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
        let mut data = match (&view, read.error) {
            (Some(view), Some(error)) if wants_leader_hint(error) => {
                let (leader, epoch, node) = view.current_leader(&read.target.topic, read.target.partition);
                hinted.extend(node);
                data.with_current_leader(LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader)).with_leader_epoch(epoch))
            }
            _ => data,
        };
        if let Some((epoch, end_offset)) = read.diverging_epoch.filter(|_| version >= DIVERGING_EPOCH_VERSION) {
            data.diverging_epoch = EpochEndOffset::default().with_epoch(epoch).with_end_offset(end_offset);
        }
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
    let node_endpoints = node_endpoints!(NodeEndpoint, hinted);
    FetchResponse::default().with_session_id(plan.session_id).with_responses(topics).with_node_endpoints(node_endpoints)
}
