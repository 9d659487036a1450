//! CreateTopics, DeleteTopics and CreatePartitions.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::error::ResponseError;

use super::str_bytes;
use crate::error::BrokerError;
use crate::topics::{self, NewTopic};
use crate::Broker;

/// First CreateTopics version whose response carries the topic's configs.
const CONFIGS_IN_RESPONSE_VERSION: i16 = 5;

pub(crate) fn create(broker: &Arc<Broker>, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    // As Kafka's controller: a request adding too many partitions in all is
    // refused whole, before any topic is looked at.
    let total: u64 = req
        .topics
        .iter()
        .map(|t| topics::partitions_requested(t.num_partitions, t.assignments.len(), broker.config.num_partitions))
        .fold(0u64, u64::saturating_add);
    if total > topics::MAX_PARTITIONS_PER_REQUEST {
        let error = BrokerError::kafka(ResponseError::PolicyViolation, topics::TOO_MANY_PARTITIONS_PER_REQUEST);
        let results = req
            .topics
            .into_iter()
            .map(|t| with_error(CreatableTopicResult::default().with_name(t.name), &error))
            .collect();
        return CreateTopicsResponse::default().with_topics(results);
    }
    let mut seen = std::collections::HashSet::new();
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let result = CreatableTopicResult::default().with_name(topic.name.clone());
            if !seen.insert(name.clone()) {
                return with_error(result, &BrokerError::kafka(ResponseError::InvalidRequest, format!("Duplicate topic name {name} in request.")));
            }
            let new = NewTopic {
                name,
                num_partitions: topic.num_partitions,
                replication_factor: topic.replication_factor,
                assignments: topic
                    .assignments
                    .iter()
                    .map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect()))
                    .collect(),
                configs: topic
                    .configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                    .collect(),
            };
            match broker.create_topic(new, req.validate_only) {
                Ok(created) => {
                    let configs = super::configs::created_topic_configs(broker, &created.configs)
                        .into_iter()
                        .map(|(name, value, source)| {
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(name))
                                .with_value(value.map(str_bytes))
                                .with_config_source(source)
                        })
                        .collect();
                    let rf = created.partitions.values().next().map_or(1, |p| p.replicas.len() as i16);
                    result
                        .with_topic_id(created.id)
                        .with_num_partitions(created.partitions.len() as i32)
                        .with_replication_factor(rf)
                        .with_configs(if version >= CONFIGS_IN_RESPONSE_VERSION { Some(configs) } else { None })
                }
                Err(e) => with_error(result, &e),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn with_error(result: CreatableTopicResult, e: &BrokerError) -> CreatableTopicResult {
    result
        .with_error_code(e.code())
        .with_error_message(Some(str_bytes(e.to_string())))
        .with_configs(None)
}

pub(crate) fn delete(broker: &Arc<Broker>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<String>, uuid::Uuid)> =
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect();
    targets.extend(req.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)));
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            // By id: the image knows every topic, hosted here or not (a
            // forwarded request may name one with no replica on the controller).
            let name = name.or_else(|| broker.image().topic_by_id(id).map(|t| t.name.clone())).or_else(|| broker.replicas.topic_name(id));
            let result = DeletableTopicResult::default().with_topic_id(id);
            let Some(name) = name else {
                return result.with_error_code(ResponseError::UnknownTopicId.code());
            };
            let result = result.with_name(Some(TopicName(str_bytes(name.clone()))));
            match broker.delete_topic(&name) {
                Ok(id) => result.with_topic_id(id),
                Err(e) => result.with_error_code(e.code()).with_error_message(Some(str_bytes(e.to_string()))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(crate) fn create_partitions(broker: &Arc<Broker>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    // As Kafka's controller: a request that would add too many partitions in
    // all fails whole (its bounded list of metadata records overflows).
    let adding: u64 = req
        .topics
        .iter()
        .map(|t| {
            let current = broker.replicas.topic(t.name.0.as_str()).map_or(0, |h| i64::from(h.partition_count));
            u64::try_from(i64::from(t.count) - current).unwrap_or(0)
        })
        .fold(0u64, u64::saturating_add);
    if adding > topics::MAX_PARTITIONS_PER_REQUEST {
        let results = req
            .topics
            .into_iter()
            .map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(ResponseError::PolicyViolation.code())
                    .with_error_message(Some(str_bytes(topics::EXCESSIVE_BATCH)))
            })
            .collect();
        return CreatePartitionsResponse::default().with_results(results);
    }
    let results = req
        .topics
        .into_iter()
        .map(|topic| {
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            match broker.create_partitions(topic.name.0.as_str(), topic.count, req.validate_only) {
                Ok(()) => result,
                Err(e) => result.with_error_code(e.code()).with_error_message(Some(str_bytes(e.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
