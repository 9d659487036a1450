//! ListOffsets: earliest, latest, max timestamp, and the first offset at or
//! after a timestamp.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::partition::{Partition, TimestampAndOffset};
use crate::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
/// The replica id of a consumer's request.
const CONSUMER_REPLICA_ID: i32 = -1;
/// First ListOffsets version with leader epochs.
const LEADER_EPOCH_VERSION: i16 = 4;

pub(crate) fn handle(broker: &Arc<Broker>, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    // A follower's (or a debugging tool's) latest offset is the log end, a consumer's the HW.
    let to_log_end = req.replica_id.0 != CONSUMER_REPLICA_ID;
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    let partition = match broker.replicas.partition_or_error(topic.name.0.as_str(), p.partition_index) {
                        Ok(partition) => partition,
                        Err(e) => return response.with_error_code(e.code()),
                    };
                    match lookup(&partition, p.timestamp, p.current_leader_epoch, to_log_end) {
                        Ok(found) => {
                            let (timestamp, offset) = found.map_or((-1, -1), |f| (f.timestamp, f.offset));
                            let response = response.with_timestamp(timestamp).with_offset(offset);
                            if version >= LEADER_EPOCH_VERSION {
                                response.with_leader_epoch(partition.leader_epoch())
                            } else {
                                response
                            }
                        }
                        Err(e) => response.with_error_code(e.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Kafka's `fetchOffsetForTimestamp` on the leader: offline, leader epoch
/// and leadership checked first.
fn lookup(partition: &Partition, timestamp: i64, current_leader_epoch: i32, to_log_end: bool) -> crate::error::Result<Option<TimestampAndOffset>> {
    let at = |offset| Ok(Some(TimestampAndOffset { timestamp: -1, offset }));
    partition.check_leader_at(current_leader_epoch)?;
    let offsets = partition.offsets();
    match timestamp {
        LATEST if to_log_end => at(offsets.log_end),
        LATEST => at(offsets.high_watermark),
        EARLIEST | EARLIEST_LOCAL => at(offsets.log_start),
        MAX_TIMESTAMP => partition.max_timestamp(),
        ts if ts >= 0 => partition.offset_for_timestamp(ts),
        _ => Ok(None),
    }
}
