//! OffsetForLeaderEpoch (KIP-101, KIP-279; consumers since KIP-320): where a
//! leader epoch ended in the leader's log, so that a follower (or a consumer
//! after a leader change) can find the records it must truncate.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::Broker;

/// Kafka's `ReplicaManager.lastOffsetForLeaderEpoch`: every partition is
/// answered by its leader only, for followers and consumers alike. A
/// partition this broker does not host is NOT_LEADER_OR_FOLLOWER if the
/// metadata has it (another broker leads it), else UNKNOWN_TOPIC_OR_PARTITION.
pub(crate) fn handle(broker: &Arc<Broker>, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = EpochEndOffset::default().with_partition(p.partition);
                    let partition = match broker.replicas.partition_or_error(name, p.partition) {
                        Ok(partition) => partition,
                        Err(e) => return response.with_error_code(e.code()),
                    };
                    match partition.last_offset_for_leader_epoch(p.current_leader_epoch, p.leader_epoch) {
                        Ok((epoch, end_offset)) => response.with_leader_epoch(epoch).with_end_offset(end_offset),
                        Err(e) => response.with_error_code(e.code()),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(topic.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
