//! Produce: check each partition's records as the request version demands,
//! hand them to [`ReplicaManager::append_records`](crate::replica_manager::ReplicaManager::append_records),
//! build the response.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, TopicName};

use super::str_bytes;
use crate::cluster_view::{node_endpoints, wants_leader_hint, ClusterView};
use crate::error::{BrokerError, Result};
use crate::{now_ms, Broker};

/// What a produce request is answered with.
pub(crate) enum ProduceOutcome {
    /// acks 1 or -1: this response.
    Respond(ProduceResponse),
    /// acks=0 and everything appended: no response.
    Silent,
    /// acks=0 and something failed: close the connection, the only way to tell
    /// a client that expects no response (as Kafka does).
    Close,
}

/// First Produce version whose clients may send zstd batches (KIP-110).
const ZSTD_VERSION: i16 = 7;
/// First Produce version with the current-leader hints of KIP-951.
const LEADER_HINT_VERSION: i16 = 10;

/// Appends every partition's records; with acks=-1 answers once the
/// in-sync replicas have them or `timeout_ms` passed.
pub(crate) async fn handle(broker: &Arc<Broker>, req: ProduceRequest, version: i16, listener: &str) -> ProduceOutcome {
    let acks = req.acks;
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    // Detach the records from everything else that points into the request
    // buffer, so that a buffer held by one partition's records alone can be
    // patched in place instead of copied.
    let topics = req
        .topic_data
        .into_iter()
        .map(|t| {
            let partitions = t.partition_data.into_iter().map(|p| (p.index, check_records(p.records, version))).collect();
            (t.name.0.to_string(), partitions)
        })
        .collect();
    let max_decompressed = broker.config.socket_request_max_bytes;
    let results = broker.replicas.append_records(acks, timeout, topics, now_ms(), max_decompressed).await;
    let image = (version >= LEADER_HINT_VERSION).then(|| broker.image());
    let view = image.as_deref().map(|image| ClusterView::of(broker, image, listener));
    let mut hinted = Vec::new();
    let responses: Vec<TopicProduceResponse> = results
        .into_iter()
        .map(|(name, partitions)| {
            let partition_responses = partitions
                .into_iter()
                .map(|(index, result)| {
                    let response = PartitionProduceResponse::default().with_index(index);
                    match result {
                        Ok(info) => response
                            .with_base_offset(info.base_offset)
                            .with_log_append_time_ms(info.log_append_time)
                            .with_log_start_offset(info.log_start_offset),
                        Err(e) => {
                            let response = response.with_error_code(e.code()).with_error_message(Some(str_bytes(e.to_string())));
                            match &view {
                                // KIP-951: where the partition's leader is now.
                                Some(view) if wants_leader_hint(e.response_error()) => {
                                    let (leader, epoch, node) = view.current_leader(&name, index);
                                    hinted.extend(node);
                                    response.with_current_leader(
                                        LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader)).with_leader_epoch(epoch),
                                    )
                                }
                                _ => response,
                            }
                        }
                    }
                })
                .collect();
            TopicProduceResponse::default().with_name(TopicName(str_bytes(name))).with_partition_responses(partition_responses)
        })
        .collect();
    if acks == 0 {
        let failed = responses.iter().flat_map(|t| &t.partition_responses).any(|p| p.error_code != 0);
        return if failed { ProduceOutcome::Close } else { ProduceOutcome::Silent };
    }
    let node_endpoints = node_endpoints!(NodeEndpoint, hinted);
    ProduceOutcome::Respond(ProduceResponse::default().with_responses(responses).with_node_endpoints(node_endpoints))
}

/// The request-level checks of one partition's records (Kafka's
/// `ProduceRequest.validateRecords`): present, exactly one batch since v3,
/// no zstd below v7.
fn check_records(records: Option<Bytes>, version: i16) -> Result<Bytes> {
    let Some(records) = records else {
        return Err(BrokerError::kafka(ResponseError::CorruptMessage, "Produce request has no records"));
    };
    if records::frame_size(&records).is_ok_and(|size| size < records.len()) {
        return Err(BrokerError::kafka(
            ResponseError::InvalidRecord,
            "Produce requests since v3 must contain exactly one record batch per partition",
        ));
    }
    let zstd = || records::BatchIter::new(&records).any(|b| b.is_ok_and(|b| b.header.compression() == records::compression::ZSTD));
    if version < ZSTD_VERSION && zstd() {
        return Err(BrokerError::kafka(
            ResponseError::UnsupportedCompressionType,
            format!("Produce requests with version {version} are not allowed to use ZStandard compression"),
        ));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use records::Compression;

    use super::*;
    use crate::cluster_view::tests::cluster_broker;

    fn request(partitions: &[i32]) -> ProduceRequest {
        let data = partitions
            .iter()
            .map(|&index| {
                let entries = [(None, Some(Bytes::from_static(b"v")), 1_000)];
                let records = crate::record_batch::encode(entries, Compression::None).expect("encode").freeze();
                PartitionProduceData::default().with_index(index).with_records(Some(records))
            })
            .collect();
        ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(1_000)
            .with_topic_data(vec![TopicProduceData::default().with_name(TopicName(str_bytes("t"))).with_partition_data(data)])
    }

    async fn produce(broker: &Arc<Broker>, partitions: &[i32], version: i16) -> ProduceResponse {
        match handle(broker, request(partitions), version, "EXTERNAL").await {
            ProduceOutcome::Respond(resp) => resp,
            _ => panic!("acks=1 is answered"),
        }
    }

    #[tokio::test]
    async fn a_partition_led_elsewhere_is_not_leader_or_follower_with_the_current_leader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = cluster_broker(dir.path(), false, Vec::new());
        // 0: led here; 2: a follower here; 3: no replica here; 9: does not exist.
        let resp = produce(&broker, &[0, 2, 3, 9], 12).await;
        let partitions = &resp.responses[0].partition_responses;
        let answers: Vec<_> = partitions.iter().map(|p| (p.index, p.error_code)).collect();
        let not_leader = ResponseError::NotLeaderOrFollower.code();
        assert_eq!(answers, [(0, 0), (2, not_leader), (3, not_leader), (9, ResponseError::UnknownTopicOrPartition.code())]);
        for p in &partitions[1..3] {
            assert_eq!((p.current_leader.leader_id.0, p.current_leader.leader_epoch), (2, 4), "KIP-951 hint");
        }
        let endpoints: Vec<_> = resp.node_endpoints.iter().map(|n| (n.node_id.0, n.host.to_string(), n.port, n.rack.as_ref().map(|r| r.to_string()))).collect();
        assert_eq!(endpoints, [(2, "broker-2.example".into(), 19092, Some("r2".into()))]);
        // Before v10 there are no hints.
        let resp = produce(&broker, &[3], 9).await;
        assert_eq!(resp.responses[0].partition_responses[0].error_code, not_leader);
        assert!(resp.node_endpoints.is_empty());
    }
}
