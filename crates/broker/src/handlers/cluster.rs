//! DescribeCluster and FindCoordinator: on a single node, this broker is every
//! coordinator.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, FindCoordinatorRequest, FindCoordinatorResponse,
};

use super::{authorized_operations, str_bytes};

/// FindCoordinator's key type for consumer groups (1 is transactions).
const GROUP_KEY_TYPE: i8 = 0;
use crate::Broker;

pub(crate) fn describe(broker: &Arc<Broker>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let (host, port) = broker.advertised_endpoint();
    DescribeClusterResponse::default()
        .with_cluster_authorized_operations(authorized_operations::if_asked(
            req.include_cluster_authorized_operations,
            authorized_operations::CLUSTER,
        ))
        .with_cluster_id(str_bytes(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(broker.config.node_id))
            .with_host(str_bytes(host))
            .with_port(port)])
}

pub(crate) fn find_coordinator(broker: &Arc<Broker>, req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let (host, port) = broker.advertised_endpoint();
    let node = BrokerId(broker.config.node_id);
    // Group coordination needs __consumer_offsets: create it on first use.
    if req.key_type == GROUP_KEY_TYPE {
        if let Err(e) = broker.ensure_offsets_topic() {
            let code = e.code();
            let message = Some(str_bytes(e.to_string()));
            return if version >= 4 {
                let coordinators = req
                    .coordinator_keys
                    .into_iter()
                    .map(|key| Coordinator::default().with_key(key).with_node_id(BrokerId(-1)).with_error_code(code).with_error_message(message.clone()))
                    .collect();
                FindCoordinatorResponse::default().with_coordinators(coordinators)
            } else {
                let resp = FindCoordinatorResponse::default().with_error_code(code).with_node_id(BrokerId(-1));
                if version >= 1 { resp.with_error_message(message) } else { resp }
            };
        }
    }
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| Coordinator::default().with_key(key).with_node_id(node).with_host(str_bytes(host.clone())).with_port(port))
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        FindCoordinatorResponse::default().with_node_id(node).with_host(str_bytes(host)).with_port(port)
    }
}
