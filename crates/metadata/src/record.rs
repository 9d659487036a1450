use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One change to cluster metadata. Records are stored as JSON values in the
/// metadata log, one record per Kafka record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum MetadataRecord {
    /// A topic was created.
    Topic(TopicRecord),
    /// A partition was created or its replicas/leadership changed.
    Partition(PartitionRecord),
    /// A topic config was set (`value: Some`) or removed (`value: None`).
    TopicConfig {
        /// The topic's name.
        topic: String,
        /// The config key (Kafka's topic-level name, e.g. `retention.ms`).
        name: String,
        /// The new value, or None to return to the default.
        value: Option<String>,
    },
    /// A config of a resource was set (`value: Some`) or removed (`value: None`),
    /// as Kafka's `ConfigRecord`: topics, and brokers (a node id, or the empty
    /// name for the cluster-wide default).
    Config(ConfigRecord),
    /// A block of producer ids was handed out: ids below `next_producer_id` are taken.
    ProducerIds {
        /// The first id not yet handed out.
        next_producer_id: i64,
    },
    /// A topic and all its partitions were deleted.
    RemoveTopic {
        /// The deleted topic's id.
        topic_id: Uuid,
    },
}

/// A topic's creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic's name.
    pub name: String,
    /// The topic's id (KIP-516).
    pub topic_id: Uuid,
}

/// A partition's replica set and leadership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// The owning topic's id.
    pub topic_id: Uuid,
    /// The partition index.
    pub partition: i32,
    /// Node ids of all replicas.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// Node id of the leader, -1 if none.
    pub leader: i32,
    /// The leader epoch: bumped on every leader change.
    pub leader_epoch: i32,
}

/// Kafka's `ConfigResource.Type` id of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's `ConfigResource.Type` id of a broker.
pub const RESOURCE_BROKER: i8 = 4;

/// One config of one resource, as Kafka's `ConfigRecord`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigRecord {
    /// Kafka's resource type id ([`RESOURCE_TOPIC`], [`RESOURCE_BROKER`]).
    pub resource_type: i8,
    /// The topic name, the broker's node id, or empty for the broker default.
    pub resource_name: String,
    /// The config key, Kafka's name.
    pub name: String,
    /// The new value, or None to remove the setting.
    pub value: Option<String>,
}
