//! DescribeCluster and FindCoordinator, from the metadata image through the
//! request's listener ([`ClusterView`]): a group's coordinator is the leader of
//! its `__consumer_offsets` partition; on a single node, this broker.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, FindCoordinatorRequest, FindCoordinatorResponse,
};

use super::{authorized_operations, str_bytes};
use kafka_protocol::protocol::StrBytes;
use metadata::Image;

use crate::cluster_view::{ClusterView, Node};
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::Broker;

/// FindCoordinator's key type for consumer groups (1 is transactions).
const GROUP_KEY_TYPE: i8 = 0;
/// DescribeCluster's endpoint types (Kafka's `EndpointType`).
const BROKER_ENDPOINT: i8 = 1;
const CONTROLLER_ENDPOINT: i8 = 2;

pub(crate) fn describe(broker: &Arc<Broker>, req: DescribeClusterRequest, version: i16, listener: &str) -> DescribeClusterResponse {
    // As Kafka's AuthHelper: a broker listener serves the BROKER endpoint type.
    let refusal = |error: ResponseError, message: String| {
        let code = if version == 0 { ResponseError::InvalidRequest.code() } else { error.code() };
        DescribeClusterResponse::default().with_error_code(code).with_error_message(Some(str_bytes(message)))
    };
    match req.endpoint_type {
        BROKER_ENDPOINT => {}
        CONTROLLER_ENDPOINT => {
            return refusal(
                ResponseError::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER".into(),
            )
        }
        other => return refusal(ResponseError::UnsupportedEndpointType, format!("Unsupported endpoint type {other}")),
    }
    let image = broker.image();
    let view = ClusterView::of(broker, &image, listener);
    let brokers = view
        .brokers(req.include_fenced_brokers)
        .into_iter()
        .map(|n| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(n.id))
                .with_host(str_bytes(n.host))
                .with_port(n.port)
                .with_rack(n.rack.map(str_bytes))
                .with_is_fenced(n.fenced)
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_authorized_operations(authorized_operations::if_asked(
            req.include_cluster_authorized_operations,
            authorized_operations::CLUSTER,
        ))
        .with_endpoint_type(BROKER_ENDPOINT)
        .with_cluster_id(str_bytes(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(view.controller_id(broker.active_controller())))
        .with_brokers(brokers)
}

/// DescribeCluster on a CONTROLLER listener (Kafka's `ControllerApis`): the
/// voters as the CONTROLLER endpoint type, for `--bootstrap-controller` tools.
pub(crate) fn describe_controllers(broker: &Arc<Broker>, req: DescribeClusterRequest, version: i16) -> DescribeClusterResponse {
    if req.endpoint_type != CONTROLLER_ENDPOINT {
        let code = if version == 0 { ResponseError::InvalidRequest } else { ResponseError::MismatchedEndpointType };
        return DescribeClusterResponse::default().with_error_code(code.code()).with_error_message(Some(str_bytes(
            "The request was sent to an endpoint of type CONTROLLER, but we wanted an endpoint of type BROKER".to_string(),
        )));
    }
    let voters = broker
        .config
        .kraft
        .voters
        .iter()
        .map(|v| DescribeClusterBroker::default().with_broker_id(BrokerId(v.id)).with_host(str_bytes(v.host.clone())).with_port(i32::from(v.port)))
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_authorized_operations(authorized_operations::if_asked(
            req.include_cluster_authorized_operations,
            authorized_operations::CLUSTER,
        ))
        .with_endpoint_type(CONTROLLER_ENDPOINT)
        .with_cluster_id(str_bytes(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.active_controller().unwrap_or(-1)))
        .with_brokers(voters)
}

/// Kafka's `KafkaApis.getCoordinator`: a group's coordinator is the leader of
/// its `__consumer_offsets` partition (created on first use), reached through
/// the request's listener; COORDINATOR_NOT_AVAILABLE while it has none.
/// Transactional ids are answered with this broker (no transaction
/// coordinator yet).
pub(crate) fn find_coordinator(
    broker: &Arc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    let keys: Vec<_> = if version >= 4 { req.coordinator_keys.clone() } else { vec![req.key.clone()] };
    // (error code, message, node) per key.
    let answers: Vec<(i16, Option<StrBytes>, Node)> = if req.key_type == GROUP_KEY_TYPE {
        match broker.ensure_offsets_topic() {
            Ok(()) => {
                let image = broker.image();
                let view = ClusterView::of(broker, &image, listener);
                keys.iter().map(|group| group_coordinator(&view, &image, group)).collect()
            }
            Err(e) => keys.iter().map(|_| (e.code(), Some(str_bytes(e.to_string())), no_node())).collect(),
        }
    } else {
        let (host, port) = broker.advertised_endpoint_for(listener);
        let this = Node { id: broker.config.node_id, host, port, rack: None, fenced: false };
        keys.iter().map(|_| (0, None, this.clone())).collect()
    };
    if version >= 4 {
        let coordinators = keys
            .into_iter()
            .zip(answers)
            .map(|(key, (code, message, node))| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node.id))
                    .with_host(str_bytes(node.host))
                    .with_port(node.port)
                    .with_error_code(code)
                    .with_error_message(message)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (code, message, node) = answers.into_iter().next().unwrap_or((0, None, no_node()));
    let resp = FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(node.id))
        .with_host(str_bytes(node.host))
        .with_port(node.port);
    if version >= 1 { resp.with_error_message(message) } else { resp }
}

/// Kafka's `Node.noNode()`.
fn no_node() -> Node {
    Node { id: -1, host: String::new(), port: -1, rack: None, fenced: false }
}

/// The coordinator of `group`: the leader of its `__consumer_offsets`
/// partition, if it is an unfenced broker with an endpoint on the listener.
fn group_coordinator(view: &ClusterView<'_>, image: &Image, group: &str) -> (i16, Option<StrBytes>, Node) {
    let leader = image.topic(OFFSETS_TOPIC).and_then(|topic| {
        let partition = partition_for(group, topic.partitions.len() as i32);
        topic.partitions.get(&partition).and_then(|p| view.leader(p).2)
    });
    match leader {
        Some(node) => (0, None, node),
        None => {
            let error = ResponseError::CoordinatorNotAvailable;
            (error.code(), Some(str_bytes("The coordinator is not available.")), no_node())
        }
    }
}

#[cfg(test)]
mod tests {
    use metadata::{MetadataRecord, PartitionRecord, TopicRecord};
    use uuid::Uuid;

    use super::*;
    use crate::cluster_view::tests::cluster_broker;

    /// `__consumer_offsets` with partition 0 led by broker 2, 1 by broker 1, 2 by none.
    fn offsets_topic() -> Vec<MetadataRecord> {
        let id = Uuid::from_u128(50);
        let partition = |index, replicas: Vec<i32>, leader| {
            MetadataRecord::Partition(PartitionRecord { topic_id: id, partition: index, isr: replicas.clone(), replicas, leader, ..Default::default() })
        };
        vec![
            MetadataRecord::Topic(TopicRecord { name: OFFSETS_TOPIC.into(), topic_id: id }),
            partition(0, vec![2, 1], 2),
            partition(1, vec![1, 2], 1),
            partition(2, vec![3, 1], -1),
        ]
    }

    /// A group id whose coordinator partition of 3 is `partition`.
    fn group_of(partition: i32) -> String {
        (0..).map(|i| format!("group-{i}")).find(|g| partition_for(g, 3) == partition).expect("some group")
    }

    #[test]
    fn the_coordinator_is_the_leader_of_the_groups_offsets_partition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = cluster_broker(dir.path(), false, offsets_topic());
        let keys: Vec<String> = (0..3).map(group_of).collect();
        let req = FindCoordinatorRequest::default().with_coordinator_keys(keys.iter().map(|k| str_bytes(k.clone())).collect());
        let resp = find_coordinator(&broker, req, 4, "EXTERNAL");
        let answers: Vec<_> = resp.coordinators.iter().map(|c| (c.key.to_string(), c.error_code, c.node_id.0, c.host.to_string(), c.port)).collect();
        let unavailable = ResponseError::CoordinatorNotAvailable.code();
        assert_eq!(
            answers,
            [
                (keys[0].clone(), 0, 2, "broker-2.example".into(), 19092),
                (keys[1].clone(), 0, 1, "broker-1.example".into(), 19091),
                (keys[2].clone(), unavailable, -1, String::new(), -1),
            ]
        );
        assert_eq!(resp.coordinators[2].error_message.as_deref(), Some("The coordinator is not available."));
        // v3 and older: one key, the answer at the top level.
        let req = FindCoordinatorRequest::default().with_key(str_bytes(keys[0].clone()));
        let resp = find_coordinator(&broker, req, 3, "INTERNAL");
        assert_eq!((resp.error_code, resp.node_id.0, resp.host.as_str(), resp.port), (0, 2, "10.0.0.2", 9092));
    }

    #[test]
    fn describe_cluster_v2_reports_fenced_brokers_only_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = cluster_broker(dir.path(), false, Vec::new());
        let brokers = |include_fenced| {
            let req = DescribeClusterRequest::default().with_include_fenced_brokers(include_fenced);
            let resp = describe(&broker, req, 2, "EXTERNAL");
            assert_eq!((resp.error_code, resp.controller_id.0, resp.endpoint_type), (0, 1, BROKER_ENDPOINT));
            resp.brokers.iter().map(|b| (b.broker_id.0, b.host.to_string(), b.rack.as_ref().map(|r| r.to_string()), b.is_fenced)).collect::<Vec<_>>()
        };
        assert_eq!(brokers(false), [(1, "broker-1.example".into(), Some("r1".into()), false), (2, "broker-2.example".into(), Some("r2".into()), false)]);
        assert_eq!(brokers(true).iter().map(|b| (b.0, b.3)).collect::<Vec<_>>(), [(1, false), (2, false), (3, true)]);
        let controller = describe(&broker, DescribeClusterRequest::default().with_endpoint_type(CONTROLLER_ENDPOINT), 1, "EXTERNAL");
        assert_eq!(controller.error_code, ResponseError::MismatchedEndpointType.code());
        assert_eq!(
            controller.error_message.as_deref(),
            Some("The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER")
        );
    }
}
