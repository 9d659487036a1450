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
    /// A broker registered (or registered again after a restart), as Kafka's
    /// `RegisterBrokerRecord`: it replaces any earlier registration of the id.
    RegisterBroker(BrokerRegistrationRecord),
    /// A registered broker was fenced or unfenced, or entered controlled
    /// shutdown, as Kafka's `BrokerRegistrationChangeRecord`.
    BrokerRegistrationChange(BrokerRegistrationChangeRecord),
    /// A broker was removed from the cluster, as Kafka's `UnregisterBrokerRecord`.
    UnregisterBroker {
        /// The broker's node id.
        broker_id: i32,
        /// The epoch of the registration removed.
        broker_epoch: i64,
    },
    /// The highest broker epoch given out so far (in snapshots, so that epochs
    /// stay unique after the registration that had it is gone).
    BrokerEpochs {
        /// The highest epoch given out.
        last_broker_epoch: i64,
    },
    /// A partition's ISR, leader, replicas or eligible leaders changed, as
    /// Kafka's `PartitionChangeRecord`: fields left `None` keep their value.
    PartitionChange(PartitionChangeRecord),
}

/// A topic's creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic's name.
    pub name: String,
    /// The topic's id (KIP-516).
    pub topic_id: Uuid,
}

/// A partition's replica set and leadership (a new partition, or one
/// restated whole, e.g. in a snapshot).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// The partition epoch: bumped on every change of the partition (what
    /// AlterPartition requests are checked against). Absent in older records: 0.
    #[serde(default)]
    pub partition_epoch: i32,
    /// The eligible leader replicas (KIP-966): replicas that left the ISR
    /// while it was below `min.insync.replicas` and still have every
    /// committed record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elr: Vec<i32>,
    /// The ELR members last known when the ELR became empty (KIP-966).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_known_elr: Vec<i32>,
}

/// Kafka's `PartitionChangeRecord`: what changed in one partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionChangeRecord {
    /// The owning topic's id.
    pub topic_id: Uuid,
    /// The partition index.
    pub partition: i32,
    /// The new ISR, if it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isr: Option<Vec<i32>>,
    /// The new leader (-1 for none), if it changed; a change bumps the leader epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<i32>,
    /// The new replica set, if it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<i32>>,
    /// The new eligible leader replicas, if they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elr: Option<Vec<i32>>,
    /// The new last known ELR, if it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known_elr: Option<Vec<i32>>,
    /// Bump the leader epoch although the leader stays (e.g. a replica-set
    /// change the leader must notice).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bump_leader_epoch: bool,
}

/// One listener a broker registered, as in Kafka's `BrokerEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// The listener's name (e.g. `PLAINTEXT`).
    pub name: String,
    /// The advertised host.
    pub host: String,
    /// The advertised port.
    pub port: u16,
    /// Kafka's security protocol id (0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT, 3 SASL_SSL).
    pub security_protocol: i16,
}

/// Kafka's `RegisterBrokerRecord`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerRegistrationRecord {
    /// The broker's node id.
    pub broker_id: i32,
    /// The epoch the controller gave this registration (unique, increasing:
    /// `Image::next_broker_epoch`).
    pub broker_epoch: i64,
    /// The incarnation id the broker chose at start: a new one per process start.
    pub incarnation_id: Uuid,
    /// Its advertised listeners.
    pub listeners: Vec<BrokerEndpoint>,
    /// `broker.rack`, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// True until the broker has caught up with the metadata log.
    pub fenced: bool,
    /// True while it is shutting down in a controlled way.
    #[serde(default)]
    pub in_controlled_shutdown: bool,
}

/// Kafka's `BrokerRegistrationChangeRecord`: fields left `None` keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerRegistrationChangeRecord {
    /// The broker's node id.
    pub broker_id: i32,
    /// The epoch of the registration this changes (a stale one changes nothing).
    pub broker_epoch: i64,
    /// Fenced (`Some(true)`) or unfenced (`Some(false)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced: Option<bool>,
    /// Entered controlled shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_controlled_shutdown: Option<bool>,
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
