//! Produce: check each partition's records as the request version demands,
//! hand them to [`ReplicaManager::append_records`](crate::replica_manager::ReplicaManager::append_records),
//! build the response.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};

use super::str_bytes;
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

/// Appends every partition's records; with acks=-1 answers once the
/// in-sync replicas have them or `timeout_ms` passed.
pub(crate) async fn handle(broker: &Arc<Broker>, req: ProduceRequest, version: i16) -> ProduceOutcome {
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
                        Err(e) => response.with_error_code(e.code()).with_error_message(Some(str_bytes(e.to_string()))),
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
    ProduceOutcome::Respond(ProduceResponse::default().with_responses(responses))
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
