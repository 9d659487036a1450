//! Produce: validate each partition's batches and append them verbatim.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};

use super::str_bytes;
use crate::{now_ms, Broker};

/// A partition index and the records produced to it.
type PartitionRecords = (i32, Option<Bytes>);

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

/// Appends every partition's records.
pub(crate) fn handle(broker: &Arc<Broker>, req: ProduceRequest, version: i16) -> ProduceOutcome {
    let acks = req.acks;
    let acks_valid = matches!(acks, -1..=1);
    let now = now_ms();
    let mut appended = false;
    // Detach the records from everything else that points into the request
    // buffer, so that a buffer held by one partition's records alone can be
    // patched in place instead of copied.
    let topics: Vec<(String, Vec<PartitionRecords>)> = req
        .topic_data
        .into_iter()
        .map(|t| (t.name.0.to_string(), t.partition_data.into_iter().map(|p| (p.index, p.records)).collect()))
        .collect();
    let mut responses = Vec::with_capacity(topics.len());
    for (name, partition_data) in topics {
        let mut partition_responses = Vec::with_capacity(partition_data.len());
        for (index, records) in partition_data {
            let response = PartitionProduceResponse::default().with_index(index);
            let fail = |error: ResponseError, message: String| {
                response
                    .clone()
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(message)))
            };
            if !acks_valid {
                partition_responses.push(fail(ResponseError::InvalidRequiredAcks, format!("acks must be -1, 0 or 1, not {acks}")));
                continue;
            }
            if crate::topics::is_internal(&name) {
                partition_responses.push(fail(
                    ResponseError::InvalidTopicException,
                    format!("Cannot append to internal topic {name}"),
                ));
                continue;
            }
            let Some(partition) = broker.replicas.partition(&name, index) else {
                partition_responses.push(fail(
                    ResponseError::UnknownTopicOrPartition,
                    format!("This server does not host {name}-{}.", index),
                ));
                continue;
            };
            let Some(records) = records else {
                partition_responses.push(fail(ResponseError::CorruptMessage, "Produce request has no records".into()));
                continue;
            };
            // Since Produce v3 a partition's records are exactly one batch (Kafka's rule).
            if storage::batch::frame_size(&records).is_ok_and(|size| size < records.len()) {
                partition_responses.push(fail(
                    ResponseError::InvalidRecord,
                    "Produce requests since v3 must contain exactly one record batch per partition".into(),
                ));
                continue;
            }
            let zstd = || {
                storage::BatchIter::new(&records).any(|b| b.is_ok_and(|b| b.header.compression() == storage::compression::ZSTD))
            };
            if version < ZSTD_VERSION && zstd() {
                partition_responses.push(fail(
                    ResponseError::UnsupportedCompressionType,
                    format!("Produce requests with version {version} are not allowed to use ZStandard compression"),
                ));
                continue;
            }
            // The topic's timestamp bounds and compression.type; a batch already
            // in the topic's codec comes back as None and is appended as it is.
            let rewritten = match crate::recompress::prepare(&partition.produce_policy(), &records, now, broker.config.socket_request_max_bytes) {
                Ok(rewritten) => rewritten,
                Err(e) => {
                    partition_responses.push(fail(e.response_error(), e.to_string()));
                    continue;
                }
            };
            // Base offset and leader epoch are patched in place: without a copy
            // when these bytes are the buffer's only user, else in a copy.
            let mut batches = match rewritten {
                Some(batch) => batch,
                None => records.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..])),
            };
            // An fsync (flush.messages) or a segment roll blocks: keep it off the async workers.
            let result = if partition.append_may_block(&batches, now) {
                super::blocking(|| partition.append(&mut batches, now))
            } else {
                partition.append(&mut batches, now)
            };
            match result {
                Ok(info) => {
                    appended = true;
                    partition_responses.push(
                        response
                            .with_base_offset(info.base_offset)
                            .with_log_append_time_ms(info.log_append_time.unwrap_or(-1))
                            .with_log_start_offset(partition.log_start_offset()),
                    );
                }
                Err(e) => {
                    tracing::debug!(topic = %name, partition = index, error = %e, "produce rejected");
                    partition_responses.push(fail(e.response_error(), e.to_string()));
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partition_responses(partition_responses),
        );
    }
    if appended {
        broker.notify_data_arrived();
    }
    if acks == 0 {
        let failed = responses.iter().flat_map(|t| &t.partition_responses).any(|p| p.error_code != 0);
        return if failed { ProduceOutcome::Close } else { ProduceOutcome::Silent };
    }
    ProduceOutcome::Respond(ProduceResponse::default().with_responses(responses))
}
