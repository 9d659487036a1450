//! Metadata and DescribeTopicPartitions: brokers, the controller, and topics
//! with their partitions as [`ClusterView`] shows them through the request's
//! listener; Metadata creates requested topics when auto-creation is on.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use metadata::TopicImage;
use uuid::Uuid;

use super::{authorized_operations, str_bytes};
use crate::cluster_view::{ClusterView, PartitionView, Reporting};
use crate::topics::{is_internal, validate_topic_name, NewTopic};
use crate::Broker;

/// First Metadata version whose clients know LISTENER_NOT_FOUND.
const LISTENER_NOT_FOUND_VERSION: i16 = 6;

/// What one requested topic resolved to.
enum Requested {
    /// A topic of the image, by id.
    Found(Uuid),
    /// An answer already decided (unknown, invalid, not created).
    Answer(MetadataResponseTopic),
}

pub(crate) fn handle(broker: &Arc<Broker>, req: MetadataRequest, version: i16, listener: &str) -> MetadataResponse {
    let allow_auto_create = broker.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let requested: Option<Vec<(Option<String>, Uuid)>> = match req.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()),
    };
    let resolved: Vec<Requested> = match requested {
        None => broker.image().topics().map(|t| Requested::Found(t.id)).collect(),
        Some(list) => list
            .into_iter()
            .map(|(name, id)| match name {
                Some(name) => named_topic(broker, &name, allow_auto_create),
                None => match broker.image().topic_by_id(id) {
                    Some(t) => Requested::Found(t.id),
                    None => Requested::Answer(
                        MetadataResponseTopic::default()
                            .with_topic_id(id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    ),
                },
            })
            .collect(),
    };
    // One image for the whole answer (auto-creation above may have changed it).
    let image = broker.image();
    let view = ClusterView::of(broker, &image, listener);
    let reporting = Reporting { filter_unavailable: version == 0, listener_not_found: version >= LISTENER_NOT_FOUND_VERSION };
    // KIP-430 (v8+): operations only for topics that were found.
    let topic_operations =
        authorized_operations::if_asked(req.include_topic_authorized_operations, authorized_operations::TOPIC);
    let topics = resolved
        .into_iter()
        .map(|r| match r {
            Requested::Found(id) => match image.topic_by_id(id) {
                Some(topic) => topic_response(broker, &view, topic, reporting).with_topic_authorized_operations(topic_operations),
                // Deleted meanwhile.
                None => MetadataResponseTopic::default().with_topic_id(id).with_error_code(ResponseError::UnknownTopicId.code()),
            },
            Requested::Answer(answer) => answer.with_topic_authorized_operations(authorized_operations::NOT_ASKED),
        })
        .collect();
    let brokers = view
        .brokers(false)
        .into_iter()
        .map(|n| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(n.id))
                .with_host(str_bytes(n.host))
                .with_port(n.port)
                .with_rack(n.rack.map(str_bytes))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(view.controller_id(broker.active_controller())))
        .with_topics(topics)
        .with_cluster_authorized_operations(authorized_operations::if_asked(
            req.include_cluster_authorized_operations,
            authorized_operations::CLUSTER,
        ))
}

/// Kafka's `max.request.partition.size.limit`: the most partitions one
/// DescribeTopicPartitions response holds.
const MAX_REQUEST_PARTITION_SIZE_LIMIT: i32 = 2000;

/// DescribeTopicPartitions (KIP-966): Metadata's partition view with the
/// eligible leader replicas, for the named topics (none named: every topic)
/// in name order, at most `response_partition_limit` partitions per response
/// with a cursor to continue from, as Kafka's `DescribeTopicPartitionsRequestHandler`.
pub(crate) fn describe_topic_partitions(
    broker: &Arc<Broker>,
    req: DescribeTopicPartitionsRequest,
    listener: &str,
) -> DescribeTopicPartitionsResponse {
    let image = broker.image();
    let view = ClusterView::of(broker, &image, listener);
    let reporting = Reporting { filter_unavailable: false, listener_not_found: true };
    let mut names: Vec<String> = if req.topics.is_empty() {
        image.topics().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (cursor_topic, cursor_partition) = req.cursor.as_ref().map_or((String::new(), 0), |c| (c.topic_name.0.to_string(), c.partition_index));
    let mut remaining = req.response_partition_limit.clamp(1, MAX_REQUEST_PARTITION_SIZE_LIMIT);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names.into_iter().filter(|n| *n >= cursor_topic) {
        let Some(topic) = image.topic(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(TopicName(str_bytes(name))))
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
            );
            continue;
        };
        if remaining == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(TopicName(str_bytes(name))).with_partition_index(0));
            break;
        }
        let first = if name == cursor_topic { cursor_partition } else { 0 };
        let mut partitions = Vec::new();
        for (&index, p) in topic.partitions.range(first..) {
            if remaining == 0 {
                next_cursor = Some(Cursor::default().with_topic_name(TopicName(str_bytes(name.clone()))).with_partition_index(index));
                break;
            }
            remaining -= 1;
            let shown = view.partition(p, local_offline(broker, &topic.name, index), reporting);
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(shown.error.map_or(0, |e| e.code()))
                    .with_partition_index(index)
                    .with_leader_id(BrokerId(shown.leader))
                    .with_leader_epoch(shown.leader_epoch)
                    .with_replica_nodes(broker_ids(&shown.replicas))
                    .with_isr_nodes(broker_ids(&shown.isr))
                    .with_eligible_leader_replicas(Some(broker_ids(&shown.elr)))
                    .with_last_known_elr(Some(broker_ids(&shown.last_known_elr)))
                    .with_offline_replicas(broker_ids(&shown.offline)),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
                .with_topic_id(topic.id)
                .with_is_internal(is_internal(&topic.name))
                .with_partitions(partitions)
                .with_topic_authorized_operations(authorized_operations::TOPIC),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}

fn named_topic(broker: &Arc<Broker>, name: &str, allow_auto_create: bool) -> Requested {
    if let Some(topic) = broker.image().topic(name) {
        return Requested::Found(topic.id);
    }
    let error = |e: ResponseError| {
        Requested::Answer(
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(name))))
                .with_error_code(e.code()),
        )
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
        Ok(topic) => Requested::Found(topic.id),
        // Another connection created it at the same moment.
        Err(e) if e.response_error() == ResponseError::TopicAlreadyExists => match broker.image().topic(name) {
            Some(t) => Requested::Found(t.id),
            None => error(ResponseError::LeaderNotAvailable),
        },
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creation failed");
            error(e.response_error())
        }
    }
}

/// True if this broker's replica of `topic`-`index` is in a failed log dir
/// or could not be opened: Kafka reports a replica on an offline log dir
/// among the offline replicas (and no leader, if it leads).
fn local_offline(broker: &Broker, topic: &str, index: i32) -> bool {
    broker.replicas.partition(topic, index).is_some_and(|p| p.is_offline())
}

fn broker_ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().copied().map(BrokerId).collect()
}

fn topic_response(broker: &Broker, view: &ClusterView<'_>, topic: &TopicImage, reporting: Reporting) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|(&index, p)| partition_response(index, &view.partition(p, local_offline(broker, &topic.name, index), reporting)))
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
}

fn partition_response(index: i32, shown: &PartitionView) -> MetadataResponsePartition {
    MetadataResponsePartition::default()
        .with_error_code(shown.error.map_or(0, |e| e.code()))
        .with_partition_index(index)
        .with_leader_id(BrokerId(shown.leader))
        .with_leader_epoch(shown.leader_epoch)
        .with_replica_nodes(broker_ids(&shown.replicas))
        .with_isr_nodes(broker_ids(&shown.isr))
        .with_offline_replicas(broker_ids(&shown.offline))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor as RequestCursor, TopicRequest};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;

    use super::*;
    use crate::cluster_view::tests::cluster_broker;

    fn request(topics: &[&str]) -> MetadataRequest {
        let topics = topics.iter().map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(str_bytes(*t))))).collect();
        MetadataRequest::default().with_topics(Some(topics)).with_allow_auto_topic_creation(false)
    }

    fn ids(nodes: &[BrokerId]) -> Vec<i32> {
        nodes.iter().map(|b| b.0).collect()
    }

    #[test]
    fn metadata_of_a_cluster_lists_registered_brokers_on_the_request_listener() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = cluster_broker(dir.path(), false, Vec::new());
        let resp = handle(&broker, request(&["t", "missing"]), 12, "EXTERNAL");
        let brokers: Vec<_> = resp.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port, b.rack.as_ref().map(|r| r.to_string()))).collect();
        assert_eq!(
            brokers,
            [(1, "broker-1.example".into(), 19091, Some("r1".into())), (2, "broker-2.example".into(), 19092, Some("r2".into()))],
            "broker 3 is fenced"
        );
        assert_eq!(resp.controller_id.0, 1, "the active controller, an unfenced broker");
        assert_eq!(resp.cluster_id.as_deref(), Some(broker.cluster_id.as_str()));
        let t = &resp.topics[0];
        assert_eq!((t.error_code, t.topic_id), (0, Uuid::from_u128(7)));
        let p: Vec<_> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code, p.leader_id.0, p.leader_epoch, ids(&p.replica_nodes), ids(&p.isr_nodes), ids(&p.offline_replicas)))
            .collect();
        let lna = ResponseError::LeaderNotAvailable.code();
        assert_eq!(
            p,
            [
                (0, 0, 1, 4, vec![1, 2, 3], vec![1, 2], vec![3]),
                (1, lna, -1, 4, vec![3, 1], vec![], vec![3]),
                (2, 0, 2, 4, vec![2, 3, 1], vec![2, 1], vec![3]),
                (3, 0, 2, 4, vec![2, 3], vec![2], vec![3]),
            ]
        );
        assert_eq!(resp.topics[1].error_code, ResponseError::UnknownTopicOrPartition.code());
        // The same image through INTERNAL: the other endpoints.
        let resp = handle(&broker, request(&["t"]), 12, "INTERNAL");
        let hosts: Vec<_> = resp.brokers.iter().map(|b| (b.host.to_string(), b.port)).collect();
        assert_eq!(hosts, [("10.0.0.1".into(), 9092), ("10.0.0.2".into(), 9092)]);
    }

    #[test]
    fn a_leader_without_the_request_listener_is_listener_not_found_from_v6() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = cluster_broker(dir.path(), true, Vec::new());
        let errors = |version| {
            let resp = handle(&broker, request(&["t"]), version, "EXTERNAL");
            resp.topics[0].partitions.iter().map(|p| (p.error_code, p.leader_id.0)).collect::<Vec<_>>()
        };
        let (lna, lnf) = (ResponseError::LeaderNotAvailable.code(), ResponseError::ListenerNotFound.code());
        assert_eq!(errors(5), [(0, 1), (lna, -1), (lna, -1), (lna, -1)]);
        assert_eq!(errors(12), [(0, 1), (lna, -1), (lnf, -1), (lnf, -1)]);
    }

    #[test]
    fn describe_topic_partitions_adds_the_elr_and_pages_with_a_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = cluster_broker(dir.path(), false, Vec::new());
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![TopicRequest::default().with_name(TopicName(str_bytes("t")))])
            .with_response_partition_limit(3);
        let resp = describe_topic_partitions(&broker, req.clone(), "EXTERNAL");
        let t = &resp.topics[0];
        assert_eq!((t.error_code, t.topic_id, t.partitions.len()), (0, Uuid::from_u128(7), 3));
        let p1 = &t.partitions[1];
        assert_eq!((p1.error_code, p1.leader_id.0), (ResponseError::LeaderNotAvailable.code(), -1));
        assert_eq!(p1.eligible_leader_replicas.as_deref().map(ids), Some(vec![3]));
        assert_eq!(p1.last_known_elr.as_deref().map(ids), Some(vec![]));
        assert_eq!(ids(&p1.offline_replicas), [3]);
        let cursor = resp.next_cursor.expect("more partitions");
        assert_eq!((cursor.topic_name.0.as_str(), cursor.partition_index), ("t", 3));
        let cursor = RequestCursor::default().with_topic_name(cursor.topic_name).with_partition_index(3);
        let rest = describe_topic_partitions(&broker, req.with_cursor(Some(cursor)), "EXTERNAL");
        assert_eq!(rest.topics[0].partitions.iter().map(|p| p.partition_index).collect::<Vec<_>>(), [3]);
        assert!(rest.next_cursor.is_none());
    }
}
