//! The controller, as KRaft's `QuorumController`: validates metadata requests
//! against the committed image, decides (topic ids, replica placement on the
//! registered brokers, leader = first replica, leader epoch, ISR, producer-id
//! blocks, config changes) and appends the records through a
//! [`MetadataSink`]. It never touches partitions: what a committed change
//! means for this broker is the [`crate::metadata_publisher`]'s job.
//!
//! Deciding and committing are separate calls so that the broker can prepare
//! a topic's directories between them (CreateTopics / CreatePartitions create
//! the logs before the record is appended and remove them if it is not).
//!
//! In a cluster the active controller also runs the brokers' lifecycle
//! ([`brokers`]: registration, heartbeats, fencing), leader election
//! ([`election`]), ISR changes asked by leaders ([`alter_partition`]) and
//! replica placement over the registered brokers ([`placement`]). A single
//! node registers nothing: it places every replica on itself.

mod alter_partition;
mod brokers;
#[cfg(test)]
mod cluster_tests;
mod election;
mod placement;

pub use brokers::PRODUCER_ID_BLOCK_SIZE;

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use metadata::{
    Committed, ConfigRecord, Image, MetadataRecord, MetadataSink, PartitionRecord, TopicImage, TopicRecord,
    RESOURCE_TOPIC,
};
use uuid::Uuid;

use crate::config::ServerConfig;
use crate::dynamic_config::{self, AlterOp};
use crate::error::{BrokerError, Result};
use crate::log_dirs::METADATA_TOPIC;
use crate::topic_config;
use crate::topics::{
    is_internal, partitions_requested, validate_topic_name, NewTopic, EXCESSIVE_BATCH, MAX_PARTITIONS_PER_REQUEST,
    TOO_MANY_PARTITIONS_PER_REQUEST,
};

/// A decided change of one topic: the records to append and the topic as it
/// will be once they are committed.
pub(crate) struct TopicChange {
    /// The records, appended as one batch.
    pub(crate) records: Vec<MetadataRecord>,
    /// The topic after the change.
    pub(crate) topic: TopicImage,
}

/// Validates and decides metadata changes, and appends them.
pub struct Controller {
    sink: Box<dyn MetadataSink>,
    /// The static broker config: defaults (partitions, replication factor),
    /// limits, this node's id.
    config: ServerConfig,
    /// The cluster id registrations must name (None: not checked).
    cluster_id: Option<String>,
    /// Registered brokers' sessions (in memory only, as in Kafka).
    sessions: BTreeMap<i32, brokers::BrokerSession>,
    /// The offset of the last record this controller committed (-1: none yet).
    last_offset: i64,
    /// KIP-966 eligible leader replicas (Kafka 4.1's default for a new cluster).
    elr_enabled: bool,
    /// Where replica placement starts (Kafka's placer is randomised too).
    rng: placement::Rng,
}

fn invalid(error: ResponseError, message: impl Into<String>) -> BrokerError {
    BrokerError::kafka(error, message)
}

impl Controller {
    /// A controller appending to `sink`, deciding with the static `config`.
    pub fn new(sink: Box<dyn MetadataSink>, config: ServerConfig) -> Controller {
        let seed = Uuid::new_v4().as_u64_pair().0;
        Controller {
            sink,
            config,
            cluster_id: None,
            sessions: BTreeMap::new(),
            last_offset: -1,
            elr_enabled: true,
            rng: placement::Rng::new(seed),
        }
    }

    /// The cluster id a broker registration must carry (INCONSISTENT_CLUSTER_ID otherwise).
    pub fn set_cluster_id(&mut self, cluster_id: impl Into<String>) {
        self.cluster_id = Some(cluster_id.into());
    }

    /// Turns KIP-966 eligible leader replicas on or off (Kafka's
    /// `eligible.leader.replicas.version` feature; on by default).
    pub fn set_elr_enabled(&mut self, enabled: bool) {
        self.elr_enabled = enabled;
    }

    /// The broker config with the image's dynamic broker configs applied
    /// (topic defaults such as `min.insync.replicas` come from it).
    fn server_config(&self) -> ServerConfig {
        dynamic_config::effective_server_config(&self.config, self.image()).unwrap_or_else(|_| self.config.clone())
    }

    /// The committed image.
    pub fn image(&self) -> &Image {
        self.sink.image()
    }

    /// The registered brokers: only this node until brokers register (none
    /// on a controller-only node, which hosts no partitions).
    fn registered_brokers(&self) -> Vec<i32> {
        let registered: Vec<i32> = self.image().brokers().map(|b| b.id).collect();
        if registered.is_empty() && self.config.kraft.roles.broker {
            vec![self.config.node_id]
        } else {
            registered
        }
    }

    /// Reloads the image from the sink (in cluster mode: changes other
    /// controllers committed).
    pub fn refresh(&mut self) {
        self.sink.refresh();
    }

    /// Appends `records` as one change and returns once it is committed.
    pub fn commit(&mut self, records: &[MetadataRecord], now_ms: i64) -> Result<Committed> {
        let committed = self.sink.append_and_commit(records, now_ms)?;
        self.last_offset = self.last_offset.max(committed.last_offset);
        Ok(committed)
    }

    /// Refuses adding `adding` partitions above Kafka's per-request limit or
    /// above this broker's `potok.max.partitions`, with POLICY_VIOLATION.
    fn check_partition_limits(&self, adding: u64, too_many: &str) -> Result<()> {
        if adding > MAX_PARTITIONS_PER_REQUEST {
            return Err(invalid(ResponseError::PolicyViolation, too_many));
        }
        let hosted = self.image().partition_count();
        let max = self.config.limits.max_partitions as u64;
        if hosted.saturating_add(adding) > max {
            return Err(invalid(
                ResponseError::PolicyViolation,
                format!(
                    "Adding {adding} partitions to the {hosted} this broker hosts would exceed its limit of {max} (potok.max.partitions)."
                ),
            ));
        }
        Ok(())
    }

    /// Places the replicas of `count` new partitions with replication factor
    /// `rf`: over the registered brokers not shutting down as Kafka's striped
    /// placer, or on this node while none registered.
    fn place_replicas(&mut self, count: i32, rf: i16) -> Result<Vec<Vec<i32>>> {
        let usable: Vec<placement::UsableBroker> = self
            .image()
            .brokers()
            .filter(|b| !b.in_controlled_shutdown)
            .map(|b| placement::UsableBroker { id: b.id, rack: b.rack.clone(), fenced: b.fenced })
            .collect();
        if self.image().brokers().next().is_some() {
            return placement::Placer::new(&mut self.rng, &usable).place_all(count, rf);
        }
        let brokers = self.registered_brokers();
        if rf as usize > brokers.len() {
            return Err(invalid(
                ResponseError::InvalidReplicationFactor,
                format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.", brokers.len()),
            ));
        }
        // Round robin over the brokers, each partition's replicas starting one further.
        Ok((0..count as usize)
            .map(|p| (0..rf as usize).map(|r| brokers[(p + r) % brokers.len()]).collect())
            .collect())
    }

    /// The records of new partitions with these replica sets, from index `first`:
    /// the ISR is the active replicas (all of them on a single node), its
    /// first member leads, epoch 0. INVALID_REPLICA_ASSIGNMENT if a
    /// partition has no active replica.
    fn partition_records(&self, topic_id: Uuid, first: i32, replicas: Vec<Vec<i32>>) -> Result<Vec<MetadataRecord>> {
        replicas
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| {
                let partition = first + i as i32;
                let isr: Vec<i32> = replicas.iter().copied().filter(|&r| self.is_active(r)).collect();
                let Some(&leader) = isr.first() else {
                    return Err(invalid(
                        ResponseError::InvalidReplicaAssignment,
                        format!("All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."),
                    ));
                };
                Ok(MetadataRecord::Partition(PartitionRecord {
                    topic_id,
                    partition,
                    isr,
                    leader,
                    replicas,
                    leader_epoch: 0,
                    ..Default::default()
                }))
            })
            .collect()
    }

    /// The topic `records` make of `id` on top of the committed image.
    fn preview(&self, records: &[MetadataRecord], id: Uuid) -> Result<TopicImage> {
        let mut image = self.image().clone();
        image.apply_all(records);
        image
            .topic_by_id(id)
            .cloned()
            .ok_or_else(|| invalid(ResponseError::UnknownServerError, "validation produced no topic"))
    }

    /// Validates a topic creation and decides it: a new topic id, replicas,
    /// leaders, configs.
    pub(crate) fn create_topic(&mut self, new: &NewTopic) -> Result<TopicChange> {
        validate_topic_name(&new.name).map_err(|m| invalid(ResponseError::InvalidTopicException, m))?;
        if new.name == METADATA_TOPIC {
            // Kafka's controller answers the same.
            return Err(invalid(
                ResponseError::InvalidRequest,
                format!("Creation of internal topic {METADATA_TOPIC} is prohibited."),
            ));
        }
        let image = self.image();
        // Limits first, before anything is sized from the counts.
        let adding = partitions_requested(new.num_partitions, new.assignments.len(), self.config.num_partitions);
        self.check_partition_limits(adding, TOO_MANY_PARTITIONS_PER_REQUEST)?;
        if image.topic(&new.name).is_some() {
            return Err(invalid(ResponseError::TopicAlreadyExists, format!("Topic '{}' already exists.", new.name)));
        }
        let collision_key = new.name.replace('.', "_");
        if let Some(other) = image.topics().find(|t| t.name.replace('.', "_") == collision_key) {
            return Err(invalid(
                ResponseError::InvalidTopicException,
                format!("Topic '{}' collides with existing topic: {}", new.name, other.name),
            ));
        }
        let replicas: Vec<Vec<i32>> = if new.assignments.is_empty() {
            let n = if new.num_partitions == -1 { self.config.num_partitions } else { new.num_partitions };
            if n <= 0 {
                return Err(invalid(ResponseError::InvalidPartitions, "Number of partitions must be larger than 0."));
            }
            let rf = if new.replication_factor == -1 { self.config.default_replication_factor } else { new.replication_factor };
            if rf <= 0 {
                return Err(invalid(ResponseError::InvalidReplicationFactor, "Replication factor must be larger than 0."));
            }
            self.place_replicas(n, rf)?
        } else {
            if new.num_partitions != -1 || new.replication_factor != -1 {
                return Err(invalid(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                ));
            }
            let registered = self.registered_brokers();
            let mut assignments = new.assignments.clone();
            assignments.sort_by_key(|(p, _)| *p);
            let rf = assignments.first().map(|(_, b)| b.len());
            for (i, (p, brokers)) in assignments.iter().enumerate() {
                if *p != i as i32 {
                    return Err(invalid(ResponseError::InvalidReplicaAssignment, "Partitions should be consecutive and start from 0."));
                }
                check_manual_assignment(brokers, &registered, rf)?;
            }
            assignments.into_iter().map(|(_, b)| b).collect()
        };
        let mut configs = BTreeMap::new();
        for (name, value) in &new.configs {
            let Some(value) = value else { continue };
            topic_config::validate(name, value).map_err(|m| invalid(ResponseError::InvalidConfig, m))?;
            configs.insert(name.clone(), value.clone());
        }
        let topic_id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic(TopicRecord { name: new.name.clone(), topic_id })];
        records.extend(self.partition_records(topic_id, 0, replicas)?);
        records.extend(configs.into_iter().map(|(name, value)| {
            MetadataRecord::Config(ConfigRecord {
                resource_type: RESOURCE_TOPIC,
                resource_name: new.name.clone(),
                name,
                value: Some(value),
            })
        }));
        let topic = self.preview(&records, topic_id)?;
        Ok(TopicChange { records, topic })
    }

    /// Validates growing a topic to `count` partitions and decides the new
    /// partitions' replicas (the topic's replication factor) and leaders.
    pub(crate) fn create_partitions(&mut self, name: &str, count: i32) -> Result<TopicChange> {
        if is_internal(name) {
            // Groups are placed by hashing over the partition count.
            return Err(invalid(ResponseError::InvalidPartitions, format!("Cannot change the partition count of internal topic {name}")));
        }
        let topic = self
            .image()
            .topic(name)
            .ok_or_else(|| invalid(ResponseError::UnknownTopicOrPartition, format!("The topic '{name}' does not exist.")))?;
        let current = topic.partitions.len() as i32;
        if count > current {
            let adding = (i64::from(count) - i64::from(current)) as u64;
            self.check_partition_limits(adding, EXCESSIVE_BATCH)?;
        }
        if count < current {
            return Err(invalid(
                ResponseError::InvalidPartitions,
                format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
            ));
        }
        if count == current {
            return Err(invalid(ResponseError::InvalidPartitions, format!("Topic already has {current} partitions.")));
        }
        let rf = topic.partitions.values().next().map_or(1, |p| p.replicas.len()).max(1);
        let topic_id = topic.id;
        let replicas = self.place_replicas(count - current, rf as i16)?;
        let records = self.partition_records(topic_id, current, replicas)?;
        let grown = self.preview(&records, topic_id)?;
        Ok(TopicChange { records, topic: grown })
    }

    /// Validates a topic deletion: the records and the topic's id.
    pub(crate) fn delete_topic(&self, name: &str) -> Result<(Uuid, Vec<MetadataRecord>)> {
        if is_internal(name) {
            // The coordinators write to it; deleting it would lose every group.
            return Err(invalid(ResponseError::InvalidTopicException, format!("Topic {name} is an internal topic and cannot be deleted")));
        }
        let topic_id = self
            .image()
            .topic(name)
            .map(|t| t.id)
            .ok_or_else(|| invalid(ResponseError::UnknownTopicOrPartition, "This server does not host this topic-partition."))?;
        Ok((topic_id, vec![MetadataRecord::RemoveTopic { topic_id }]))
    }

    /// Validates a config alteration of one resource: the records that
    /// make it (none if nothing changes).
    pub(crate) fn alter_configs(
        &self,
        resource_type: i8,
        resource_name: &str,
        ops: &[(String, AlterOp)],
        incremental: bool,
    ) -> Result<Vec<MetadataRecord>> {
        dynamic_config::config_records(&self.config, self.image(), resource_type, resource_name, ops, incremental)
    }

    /// Hands out a block of `size` producer ids, recorded in the metadata log
    /// so they are never handed out again (the single node's own use;
    /// brokers ask with [`Controller::allocate_producer_ids`]).
    pub fn allocate_producer_id_block(&mut self, size: i64, now_ms: i64) -> Result<std::ops::Range<i64>> {
        let start = self.image().next_producer_id();
        let end = start.checked_add(size).ok_or_else(|| invalid(ResponseError::UnknownServerError, "Exhausted all producerIds."))?;
        self.commit(&[MetadataRecord::ProducerIds { next_producer_id: end }], now_ms)?;
        Ok(start..end)
    }
}

/// Kafka's checks of one partition's manual replica assignment: not empty,
/// registered brokers, each once, as many replicas as the first partition.
fn check_manual_assignment(brokers: &[i32], registered: &[i32], rf: Option<usize>) -> Result<()> {
    let refuse = |message: String| Err(invalid(ResponseError::InvalidReplicaAssignment, message));
    if brokers.is_empty() {
        return refuse("The manual partition assignment includes an empty replica list.".into());
    }
    let mut sorted = brokers.to_vec();
    sorted.sort_unstable();
    for (i, b) in sorted.iter().enumerate() {
        if !registered.contains(b) {
            return refuse(format!("The manual partition assignment includes broker {b}, but no such broker is registered."));
        }
        if i > 0 && sorted[i - 1] == *b {
            return refuse(format!("The manual partition assignment includes the broker {b} more than once."));
        }
    }
    match rf {
        Some(rf) if rf != brokers.len() => refuse(format!(
            "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).",
            brokers.len()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metadata::MetadataLog;

    fn controller(dir: &std::path::Path) -> Controller {
        let log = MetadataLog::open(&dir.join("__cluster_metadata-0"), true).expect("open");
        let config = ServerConfig::from_entries(vec![("node.id".into(), "3".into(), "t".into())]).expect("config");
        Controller::new(Box::new(log), config)
    }

    fn new_topic(name: &str, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: vec![("retention.ms".into(), Some("5".into()))],
        }
    }

    #[test]
    fn decides_leaders_on_this_node_and_commits_a_delta_naming_the_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = controller(dir.path());
        let change = c.create_topic(&new_topic("t", 2)).expect("decide");
        assert!(c.image().topic("t").is_none(), "deciding appends nothing");
        for p in change.topic.partitions.values() {
            assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader, p.leader_epoch), (vec![3], vec![3], 3, 0));
        }
        let committed = c.commit(&change.records, 1).expect("commit");
        let id = change.topic.id;
        assert_eq!(committed.delta.created_topics, std::collections::BTreeSet::from([id]));
        assert_eq!(committed.delta.partitions_of(id).count(), 2);
        assert_eq!(committed.last_offset, change.records.len() as i64 - 1);
        assert_eq!(c.image().topic_by_id(id).and_then(|t| t.configs.get("retention.ms")).map(String::as_str), Some("5"));

        let grown = c.create_partitions("t", 3).expect("decide");
        let committed = c.commit(&grown.records, 2).expect("commit");
        let added: Vec<i32> = committed.delta.partitions_of(id).map(|(p, _)| p).collect();
        assert_eq!(added, vec![2]);

        let err = c.create_topic(&NewTopic { replication_factor: 2, ..new_topic("u", 1) }).err().expect("rf 2");
        assert_eq!(err.response_error(), ResponseError::InvalidReplicationFactor);
        let err = c.create_topic(&new_topic("t", 1)).err().expect("exists");
        assert_eq!(err.response_error(), ResponseError::TopicAlreadyExists);

        let (deleted, records) = c.delete_topic("t").expect("decide");
        let committed = c.commit(&records, 3).expect("commit");
        assert_eq!(committed.delta.deleted_topics.get(&deleted).map(String::as_str), Some("t"));

        assert_eq!(c.allocate_producer_id_block(1000, 4).expect("ids"), 0..1000);
        assert_eq!(c.allocate_producer_id_block(1000, 5).expect("ids"), 1000..2000);
    }
}
