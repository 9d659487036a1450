//! DeleteRecords: moves partitions' log start offsets (Kafka's
//! `deleteRecordsOnLeader`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::error::{BrokerError, Result};
use crate::topic_config;
use crate::topics::is_internal;
use crate::Broker;

pub(crate) fn handle(broker: &Arc<Broker>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    match delete(broker, &name, p.partition_index, p.offset) {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(e) => {
                            tracing::debug!(topic = %name, partition = p.partition_index, error = %e, "DeleteRecords refused");
                            result.with_low_watermark(-1).with_error_code(e.code())
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

fn delete(broker: &Broker, topic: &str, index: i32, offset: i64) -> Result<i64> {
    if is_internal(topic) {
        return Err(BrokerError::kafka(
            ResponseError::InvalidTopicException,
            format!("Cannot delete records of internal topic {topic}"),
        ));
    }
    let partition = broker.replicas.partition_or_error(topic, index)?;
    let policy = broker
        .image()
        .topic(topic)
        .map(|t| topic_config::effective("cleanup.policy", &t.configs, &broker.config));
    if policy.is_some_and(|p| !p.split(',').any(|p| p.trim() == "delete")) {
        return Err(BrokerError::kafka(
            ResponseError::PolicyViolation,
            format!("Records of partition {topic}-{index} can not be deleted due to the configured policy"),
        ));
    }
    let low_watermark = broker.delete_records(&partition, offset)?;
    tracing::info!(topic, partition = index, log_start_offset = low_watermark, "deleted records");
    Ok(low_watermark)
}
