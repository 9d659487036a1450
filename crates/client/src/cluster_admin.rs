//! `Admin` calls about the cluster itself: DescribeCluster (brokers, fenced
//! or not, and the controller), DescribeTopicPartitions (KIP-966: partitions
//! with their eligible leader replicas) and DescribeQuorum (the metadata
//! quorum's leader and replication state).

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::{Admin, PartitionDescription, TopicDescription};
use crate::error::{Error, KafkaError, Result};

/// One broker as DescribeCluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    /// Its node id.
    pub id: i32,
    /// Advertised host of the listener the request used.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Fenced by the controller (only listed when asked for, DescribeCluster v2).
    pub fenced: bool,
}

/// The cluster as DescribeCluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: String,
    /// The broker named as controller, -1 if none.
    pub controller_id: i32,
    /// The brokers, by id.
    pub brokers: Vec<BrokerDescription>,
}

/// One replica of the metadata quorum as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReplica {
    /// Its node id.
    pub id: i32,
    /// Its metadata log end offset.
    pub log_end_offset: i64,
    /// When the leader last heard from it (ms), -1 if unknown.
    pub last_fetch_timestamp: i64,
    /// When it was last caught up (ms), -1 if unknown.
    pub last_caught_up_timestamp: i64,
}

/// The metadata quorum as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// The leader (the active controller), -1 if none.
    pub leader_id: i32,
    /// The leader's epoch.
    pub leader_epoch: i32,
    /// The quorum's high watermark.
    pub high_watermark: i64,
    /// The voters.
    pub voters: Vec<QuorumReplica>,
    /// The observers (brokers that are not voters).
    pub observers: Vec<QuorumReplica>,
}

/// One described topic, or its error.
pub type TopicResult = std::result::Result<TopicDescription, KafkaError>;

/// The metadata log's topic.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// DescribeCluster's BROKER endpoint type.
const BROKER_ENDPOINT: i8 = 1;

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn kafka_error(code: i16, message: Option<StrBytes>) -> Result<()> {
    match KafkaError::from_code(code, message.as_deref()) {
        Some(e) => Err(Error::Kafka(e)),
        None => Ok(()),
    }
}

impl Admin {
    /// DescribeCluster: the brokers and the controller; fenced brokers too if
    /// `include_fenced` and the broker speaks DescribeCluster v2.
    pub async fn describe_cluster(&self, include_fenced: bool) -> Result<ClusterDescription> {
        let req = DescribeClusterRequest::default()
            .with_endpoint_type(BROKER_ENDPOINT)
            .with_include_fenced_brokers(include_fenced);
        let resp: DescribeClusterResponse = self.client().send_any(&req).await?;
        kafka_error(resp.error_code, resp.error_message)?;
        let mut brokers: Vec<BrokerDescription> = resp
            .brokers
            .into_iter()
            .map(|b| BrokerDescription {
                id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
                fenced: b.is_fenced,
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterDescription {
            cluster_id: resp.cluster_id.to_string(),
            controller_id: resp.controller_id.0,
            brokers,
        })
    }

    /// DescribeTopicPartitions for `names` (`None`: every topic), following
    /// the cursor until every partition is in, in name order; `Ok(None)` if
    /// the broker does not serve it. A topic that does not exist comes back
    /// with its error.
    pub async fn describe_topic_partitions(&self, names: Option<&[String]>) -> Result<Option<Vec<(String, TopicResult)>>> {
        let requested: Vec<TopicRequest> = names
            .unwrap_or_default()
            .iter()
            .map(|n| TopicRequest::default().with_name(TopicName(str_bytes(n))))
            .collect();
        let mut out: Vec<(String, TopicResult)> = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let req = DescribeTopicPartitionsRequest::default()
                .with_topics(requested.clone())
                .with_response_partition_limit(2000)
                .with_cursor(cursor.take());
            let resp: DescribeTopicPartitionsResponse = match self.client().send_any(&req).await {
                Ok(resp) => resp,
                Err(Error::UnsupportedApi { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            for t in resp.topics {
                let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
                let partitions = t.partitions.into_iter().map(|p| PartitionDescription {
                    partition: p.partition_index,
                    leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                    replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|n| n.0).collect(),
                    elr: p.eligible_leader_replicas.map(|ids| ids.iter().map(|n| n.0).collect()),
                    last_known_elr: p.last_known_elr.map(|ids| ids.iter().map(|n| n.0).collect()),
                });
                if let Some(error) = KafkaError::from_code(t.error_code, None) {
                    out.push((name, Err(error)));
                    continue;
                }
                // A topic continued from the previous page.
                match out.last_mut() {
                    Some((last, Ok(topic))) if *last == name => topic.partitions.extend(partitions),
                    _ => {
                        let topic = TopicDescription {
                            name: name.clone(),
                            id: t.topic_id,
                            is_internal: t.is_internal,
                            partitions: partitions.collect(),
                        };
                        out.push((name, Ok(topic)));
                    }
                }
            }
            match resp.next_cursor {
                Some(next) => {
                    cursor = Some(Cursor::default().with_topic_name(next.topic_name).with_partition_index(next.partition_index))
                }
                None => break,
            }
        }
        for (_, topic) in &mut out {
            if let Ok(topic) = topic {
                topic.partitions.sort_by_key(|p| p.partition);
            }
        }
        Ok(Some(out))
    }

    /// DescribeQuorum of the metadata quorum (`__cluster_metadata-0`), asked of
    /// any broker.
    pub async fn describe_quorum(&self) -> Result<QuorumDescription> {
        let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        let resp: DescribeQuorumResponse = self.client().send_any(&req).await?;
        kafka_error(resp.error_code, resp.error_message)?;
        let partition = resp
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| Error::protocol("DescribeQuorum answered no partition".to_owned()))?;
        kafka_error(partition.error_code, partition.error_message)?;
        let replicas = |states: Vec<kafka_protocol::messages::describe_quorum_response::ReplicaState>| {
            states
                .into_iter()
                .map(|r| QuorumReplica {
                    id: r.replica_id.0,
                    log_end_offset: r.log_end_offset,
                    last_fetch_timestamp: r.last_fetch_timestamp,
                    last_caught_up_timestamp: r.last_caught_up_timestamp,
                })
                .collect()
        };
        Ok(QuorumDescription {
            leader_id: partition.leader_id.0,
            leader_epoch: partition.leader_epoch,
            high_watermark: partition.high_watermark,
            voters: replicas(partition.current_voters),
            observers: replicas(partition.observers),
        })
    }
}
