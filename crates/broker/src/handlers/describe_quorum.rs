//! DescribeQuorum (KIP-595/KIP-836/KIP-853): the metadata quorum's leader,
//! epoch, high watermark and each voter's position, as `kafka-metadata-quorum.sh
//! describe` prints them. Served on the CONTROLLER listener and on client
//! listeners. Only the leader knows the voters' positions: another node
//! answers NOT_LEADER_OR_FOLLOWER for the partition, as Kafka's Raft client.
//! A single node is its own quorum: the one voter, leading, at the metadata
//! log's end.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::log_dirs::METADATA_TOPIC;
use crate::{now_ms, Broker};

/// What the quorum looks like from this node (cluster mode: from the quorum).
pub(crate) struct QuorumView {
    /// The leader's id, if it is this node (else the partition is answered
    /// NOT_LEADER_OR_FOLLOWER).
    pub(crate) leading: bool,
    /// The leader epoch.
    pub(crate) epoch: i32,
    /// The end offset a majority has.
    pub(crate) high_watermark: i64,
    /// Voter id, log end offset, last fetch and last caught-up time (unix ms).
    pub(crate) voters: Vec<(i32, i64, i64, i64)>,
    /// The same for each observer (broker-only node) fetching from the leader.
    pub(crate) observers: Vec<(i32, i64, i64, i64)>,
    /// Voter id and its controller endpoint (host, port).
    pub(crate) endpoints: Vec<(i32, String, u16)>,
}

/// The single node's view: it is the one voter, leading, caught up.
fn single_node_view(broker: &Broker) -> QuorumView {
    let now = now_ms();
    let end = broker.metadata_end_offset();
    let id = broker.config.node_id;
    let endpoints = broker.config.kraft.voters.iter().map(|v| (v.id, v.host.clone(), v.port)).collect();
    QuorumView { leading: true, epoch: 1, high_watermark: end, voters: vec![(id, end, now, now)], observers: Vec::new(), endpoints }
}

/// Answers a DescribeQuorum from a client listener: as Kafka's brokers, a
/// node that is not the active controller forwards it to the active one.
pub(crate) async fn forward_or_handle(broker: &Broker, req: &DescribeQuorumRequest, version: i16) -> DescribeQuorumResponse {
    if let Some(forwarded) = broker.forward_to_active_controller(req, version).await {
        return forwarded;
    }
    handle(broker, req, version)
}

/// Answers one DescribeQuorum request.
pub(crate) fn handle(broker: &Broker, req: &DescribeQuorumRequest, version: i16) -> DescribeQuorumResponse {
    let asked_metadata = req.topics.len() == 1
        && req.topics[0].topic_name.as_str() == METADATA_TOPIC
        && req.topics[0].partitions.len() == 1
        && req.topics[0].partitions[0].partition_index == 0;
    let view = match broker.cluster_quorum_view() {
        Some(view) => view,
        None => single_node_view(broker),
    };
    let partition = PartitionData::default().with_partition_index(0);
    let partition = if !asked_metadata {
        // Kafka: any other topic or partition than __cluster_metadata-0.
        return DescribeQuorumResponse::default().with_topics(
            req.topics
                .iter()
                .map(|t| {
                    TopicData::default().with_topic_name(t.topic_name.clone()).with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                PartitionData::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            })
                            .collect(),
                    )
                })
                .collect(),
        );
    } else if !view.leading {
        partition.with_error_code(ResponseError::NotLeaderOrFollower.code())
    } else {
        let replicas = |list: &[(i32, i64, i64, i64)]| -> Vec<ReplicaState> {
            list.iter()
                .map(|&(id, end, fetch, caught_up)| {
                    ReplicaState::default()
                        .with_replica_id(BrokerId(id))
                        .with_log_end_offset(end)
                        .with_last_fetch_timestamp(fetch)
                        .with_last_caught_up_timestamp(caught_up)
                })
                .collect()
        };
        partition
            .with_leader_id(BrokerId(broker.config.node_id))
            .with_leader_epoch(view.epoch)
            .with_high_watermark(view.high_watermark)
            .with_current_voters(replicas(&view.voters))
            .with_observers(replicas(&view.observers))
    };
    let mut response = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![partition])]);
    if version >= 2 {
        // KIP-853: the voters' controller endpoints.
        let listener = broker.config.controller_listener_names.first().cloned().unwrap_or_else(|| "CONTROLLER".to_string());
        response.nodes = view
            .endpoints
            .into_iter()
            .map(|(id, host, port)| {
                Node::default().with_node_id(BrokerId(id)).with_listeners(vec![Listener::default()
                    .with_name(StrBytes::from_string(listener.clone()))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port)])
            })
            .collect();
    }
    response
}
