//! Produce: validate each partition's batches and append them verbatim.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::str_bytes;
use crate::{now_ms, Broker};

/// Appends every partition's records; None for acks=0, which gets no response.
pub(crate) fn handle(broker: &Arc<Broker>, req: ProduceRequest, _version: i16) -> Option<ProduceResponse> {
    let acks = req.acks;
    let acks_valid = matches!(acks, -1..=1);
    let now = now_ms();
    let mut appended = false;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let mut partition_responses = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let response = PartitionProduceResponse::default().with_index(data.index);
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
            let Some(partition) = broker.replicas.partition(&name, data.index) else {
                partition_responses.push(fail(
                    ResponseError::UnknownTopicOrPartition,
                    format!("This server does not host {name}-{}.", data.index),
                ));
                continue;
            };
            let Some(records) = data.records else {
                partition_responses.push(fail(ResponseError::CorruptMessage, "Produce request has no records".into()));
                continue;
            };
            // The request buffer is shared, so the batches are copied once to be
            // patched (base offset, leader epoch) and appended.
            let mut batches = records.to_vec();
            match partition.append(&mut batches, now) {
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
                    tracing::debug!(topic = %name, partition = data.index, error = %e, "produce rejected");
                    partition_responses.push(fail(e.response_error(), e.to_string()));
                }
            }
        }
        responses.push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partition_responses));
    }
    if appended {
        broker.notify_data_arrived();
    }
    if acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(responses))
}
