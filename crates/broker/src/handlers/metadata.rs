//! Metadata: brokers, the controller, and topics with their partitions; creates
//! requested topics when auto-creation is on.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use metadata::TopicImage;
use uuid::Uuid;

use super::{authorized_operations, str_bytes};
use crate::topics::{is_internal, validate_topic_name, NewTopic};
use crate::Broker;

pub(crate) fn handle(broker: &Arc<Broker>, req: MetadataRequest, version: i16) -> MetadataResponse {
    let allow_auto_create = broker.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let requested: Option<Vec<(Option<String>, Uuid)>> = match req.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()),
    };
    let topics: Vec<MetadataResponseTopic> = match requested {
        None => {
            let image = broker.image();
            image.topics().map(topic_response).collect()
        }
        Some(list) => list
            .into_iter()
            .map(|(name, id)| match name {
                Some(name) => named_topic(broker, &name, allow_auto_create),
                None => {
                    match broker.image().topic_by_id(id) {
                        Some(t) => topic_response(t),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    }
                }
            })
            .collect(),
    };
    let topics = topics.into_iter().map(|t| mark_offline_partitions(broker, t)).collect::<Vec<_>>();
    // KIP-430 (v8+): operations only for topics that were found.
    let topic_operations =
        authorized_operations::if_asked(req.include_topic_authorized_operations, authorized_operations::TOPIC);
    let topics = topics
        .into_iter()
        .map(|t| {
            let operations = if t.error_code == 0 { topic_operations } else { authorized_operations::NOT_ASKED };
            t.with_topic_authorized_operations(operations)
        })
        .collect();
    let (host, port) = broker.advertised_endpoint();
    let brokers = vec![MetadataResponseBroker::default()
        .with_node_id(BrokerId(broker.config.node_id))
        .with_host(str_bytes(host))
        .with_port(port)];
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(authorized_operations::if_asked(
            req.include_cluster_authorized_operations,
            authorized_operations::CLUSTER,
        ))
}

fn named_topic(broker: &Arc<Broker>, name: &str, allow_auto_create: bool) -> MetadataResponseTopic {
    let existing = broker.image().topic(name).cloned();
    if let Some(topic) = existing {
        return topic_response(&topic);
    }
    let error = |e: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(str_bytes(name))))
            .with_error_code(e.code())
    };
    if validate_topic_name(name).is_err() {
        return error(ResponseError::InvalidTopicException);
    }
    if !allow_auto_create || is_internal(name) {
        return error(ResponseError::UnknownTopicOrPartition);
    }
    let new = NewTopic {
        name: name.to_string(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: Vec::new(),
        configs: Vec::new(),
    };
    match broker.create_topic(new, false) {
        Ok(topic) => topic_response(&topic),
        // Another connection created it at the same moment.
        Err(e) if e.response_error() == ResponseError::TopicAlreadyExists => {
            match broker.image().topic(name) {
                Some(t) => topic_response(t),
                None => error(ResponseError::LeaderNotAvailable),
            }
        }
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creation failed");
            error(e.response_error())
        }
    }
}

/// A hosted partition whose log could not be opened has no leader, as Kafka
/// reports a partition whose only replica is on an offline log dir:
/// LEADER_NOT_AVAILABLE, leader -1, this broker among the offline replicas.
fn mark_offline_partitions(broker: &Broker, mut topic: MetadataResponseTopic) -> MetadataResponseTopic {
    let Some(hosted) = topic.name.as_ref().and_then(|n| broker.replicas.topic(n)) else { return topic };
    for p in &mut topic.partitions {
        let offline = usize::try_from(p.partition_index)
            .ok()
            .and_then(|i| hosted.partitions.get(i))
            .is_some_and(|partition| partition.is_offline());
        if offline {
            p.error_code = ResponseError::LeaderNotAvailable.code();
            p.leader_id = BrokerId(-1);
            p.offline_replicas = vec![BrokerId(broker.config.node_id)];
        }
    }
    topic
}

fn topic_response(topic: &TopicImage) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|(&index, p)| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
}
