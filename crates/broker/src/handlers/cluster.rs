//! DescribeCluster and FindCoordinator: on a single node, this broker is every
//! coordinator.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterResponse, FindCoordinatorRequest, FindCoordinatorResponse,
};

use super::str_bytes;
use crate::Broker;

pub(crate) fn describe(broker: &Arc<Broker>) -> DescribeClusterResponse {
    let (host, port) = broker.advertised_endpoint();
    DescribeClusterResponse::default()
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
