//! `potok-client`: an asynchronous Rust client for Kafka-protocol brokers.
//!
//! - [`Connection`]: one broker connection (framing, correlation ids, ApiVersions).
//! - [`Client`]: the cluster view (bootstrap, metadata, a connection per broker).
//! - [`Admin`]: create, delete, list and describe topics; describe configs; list,
//!   describe and delete consumer groups and their offsets ([`group_admin`]); delete
//!   records, describe log dirs, list offsets ([`log_admin`]); describe the cluster,
//!   topic partitions with their ELR and the metadata quorum ([`cluster_admin`]).
//! - [`Producer`]: partitioning, batching, compression, acks.
//! - [`Consumer`]: manual assignment or group subscription, seeking, polling, commits.
//! - [`group`]: classic consumer-group membership, the embedded consumer protocol, assignors.
//! - [`records`]: the magic-v2 record batch codec (headers kept in order, duplicates too).
//!
//! Every request and response is encoded by the `kafka-protocol` crate, record batches
//! by [`records`]; the client speaks the highest version both it and the broker support.

pub mod admin;
pub mod cluster;
pub mod cluster_admin;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
pub mod group_admin;
pub mod log_admin;
pub mod partitioner;
pub mod producer;
pub mod records;

pub use admin::{
    Admin, AlterConfigOp, ConfigEntry, ConfigResource, ConfigSynonym, NewTopic, PartitionDescription,
    TopicDescription,
};
pub use cluster::{Client, ClientConfig};
pub use cluster_admin::{BrokerDescription, ClusterDescription, QuorumDescription, QuorumReplica};
pub use connection::{Connection, ConnectionConfig};
pub use consumer::{
    AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, Offset,
    TimestampType,
};
pub use error::{Error, KafkaError, Result};
pub use group_admin::{CommittedOffset, GroupDescription, GroupListing, GroupMember};
pub use log_admin::{ListedOffset, LogDirDescription, ReplicaInfo};
pub use producer::{
    Acks, Compression, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
