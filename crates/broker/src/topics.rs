//! Topic lifecycle: create, delete and grow topics through the metadata log, and
//! host their partitions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use metadata::{Image, MetadataRecord, PartitionImage, PartitionRecord, TopicImage, TopicRecord};
use storage::Log;
use uuid::Uuid;

use crate::error::{BrokerError, Result};
use crate::log_dirs::{Placement, METADATA_TOPIC};
use crate::partition::Partition;
use crate::replica_manager::HostedTopic;
use crate::{now_ms, topic_config, Broker};

/// Kafka's longest legal topic name.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}"
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return Err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// True for Kafka's internal topics, and for `__cluster_metadata`, the
/// metadata log's name, which no client topic may take.
pub fn is_internal(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state" || name == METADATA_TOPIC
}

/// A topic's partition logs opened before its metadata record is appended,
/// so a failure leaves nothing behind.
pub(crate) struct PreparedPartitions {
    /// Every partition of the topic, in index order.
    pub(crate) partitions: Vec<Arc<Partition>>,
    /// The directories created for them, removed on roll-back.
    created: Vec<PathBuf>,
}

impl PreparedPartitions {
    /// Closes the partitions and removes the directories created for them.
    fn roll_back(self) {
        drop(self.partitions);
        for dir in self.created {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::error!(dir = %dir.display(), error = %e, "cannot remove the directory of a failed topic change");
            }
        }
    }
}

/// A request to create one topic.
pub struct NewTopic {
    /// The name.
    pub name: String,
    /// Partition count; -1 for `num.partitions`.
    pub num_partitions: i32,
    /// Replication factor; -1 for `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replica assignment by partition, if any.
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Topic configs.
    pub configs: Vec<(String, Option<String>)>,
}

fn invalid(error: ResponseError, message: impl Into<String>) -> BrokerError {
    BrokerError::kafka(error, message)
}

/// Kafka's controller refuses requests that add more partitions than this
/// (`MAX_PARTITIONS_PER_BATCH`), with POLICY_VIOLATION.
pub const MAX_PARTITIONS_PER_REQUEST: u64 = 10_000;

/// Kafka's message for a CreateTopics over [`MAX_PARTITIONS_PER_REQUEST`].
pub const TOO_MANY_PARTITIONS_PER_REQUEST: &str = "Excessively large number of partitions per request.";

/// Kafka's message for any other request that would write more than
/// [`MAX_PARTITIONS_PER_REQUEST`] metadata records (e.g. a CreatePartitions).
pub const EXCESSIVE_BATCH: &str = "Unable to perform excessively large batch operation.";

/// How many partitions creating `new` adds (before any other validation;
/// nonsense counts add none and are refused later).
pub fn partitions_requested(new_partitions: i32, assignments: usize, default_partitions: i32) -> u64 {
    if assignments > 0 {
        return assignments as u64;
    }
    let n = if new_partitions == -1 { default_partitions } else { new_partitions };
    u64::try_from(n).unwrap_or(0)
}

impl Broker {
    /// Refuses adding `adding` partitions above Kafka's per-request limit or
    /// above this broker's `potok.max.partitions`, with POLICY_VIOLATION.
    fn check_partition_limits(&self, image: &metadata::Image, adding: u64, too_many: &str) -> Result<()> {
        if adding > MAX_PARTITIONS_PER_REQUEST {
            return Err(invalid(ResponseError::PolicyViolation, too_many));
        }
        let hosted: u64 = image.topics().map(|t| t.partitions.len() as u64).sum();
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

    /// Creates a topic (or only checks it, with `validate_only`) and returns it.
    pub fn create_topic(&self, new: NewTopic, validate_only: bool) -> Result<TopicImage> {
        validate_topic_name(&new.name).map_err(|m| invalid(ResponseError::InvalidTopicException, m))?;
        if new.name == METADATA_TOPIC {
            // Kafka's controller answers the same.
            return Err(invalid(
                ResponseError::InvalidRequest,
                format!("Creation of internal topic {METADATA_TOPIC} is prohibited."),
            ));
        }
        let mut metadata = self.metadata.lock();
        // Limits first, before anything is sized from the counts.
        let adding = partitions_requested(new.num_partitions, new.assignments.len(), self.config.num_partitions);
        self.check_partition_limits(metadata.image(), adding, TOO_MANY_PARTITIONS_PER_REQUEST)?;
        if metadata.image().topic(&new.name).is_some() {
            return Err(invalid(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{}' already exists.", new.name),
            ));
        }
        let collision_key = new.name.replace('.', "_");
        if let Some(other) = metadata.image().topics().find(|t| t.name.replace('.', "_") == collision_key) {
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
            let rf = if new.replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                new.replication_factor
            };
            if rf <= 0 {
                return Err(invalid(
                    ResponseError::InvalidReplicationFactor,
                    "Replication factor must be larger than 0.",
                ));
            }
            if rf > 1 {
                return Err(invalid(
                    ResponseError::InvalidReplicationFactor,
                    format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered."),
                ));
            }
            vec![vec![self.config.node_id]; n as usize]
        } else {
            if new.num_partitions != -1 || new.replication_factor != -1 {
                return Err(invalid(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                ));
            }
            let mut assignments = new.assignments.clone();
            assignments.sort_by_key(|(p, _)| *p);
            for (i, (p, brokers)) in assignments.iter().enumerate() {
                if *p != i as i32 {
                    return Err(invalid(ResponseError::InvalidReplicaAssignment, "Partitions should be consecutive and start from 0."));
                }
                if brokers.is_empty() || brokers.iter().any(|b| *b != self.config.node_id) {
                    return Err(invalid(
                        ResponseError::InvalidReplicaAssignment,
                        format!("Replica assignment {brokers:?} names brokers that are not registered."),
                    ));
                }
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
        for (partition, replicas) in replicas.into_iter().enumerate() {
            records.push(MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: partition as i32,
                isr: replicas.clone(),
                leader: replicas[0],
                replicas,
                leader_epoch: 0,
            }));
        }
        for (name, value) in &configs {
            records.push(MetadataRecord::TopicConfig {
                topic: new.name.clone(),
                name: name.clone(),
                value: Some(value.clone()),
            });
        }
        let mut image = Image::default();
        for record in &records {
            image.apply(record);
        }
        let topic = image
            .topic(&new.name)
            .cloned()
            .ok_or_else(|| invalid(ResponseError::UnknownServerError, "validation produced no topic"))?;
        if validate_only {
            return Ok(topic);
        }
        // Prepare, then commit: the directories and logs first, so that a
        // failure (no file descriptors, full disk) leaves no metadata record.
        let prepared = self.prepare_partitions(&topic, Placement::New, metadata.image())?;
        if let Err(e) = metadata.append(&records, now_ms()) {
            prepared.roll_back();
            return Err(e.into());
        }
        self.replicas.put_topic(topic.name.clone(), HostedTopic { id: topic.id, partitions: prepared.partitions });
        tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), "created topic");
        Ok(topic)
    }

    /// Deletes a topic by name and removes its data.
    pub fn delete_topic(&self, name: &str) -> Result<Uuid> {
        if is_internal(name) {
            // The coordinators write to it; deleting it would lose every group.
            return Err(invalid(ResponseError::InvalidTopicException, format!("Topic {name} is an internal topic and cannot be deleted")));
        }
        let mut metadata = self.metadata.lock();
        let topic_id = metadata
            .image()
            .topic(name)
            .map(|t| t.id)
            .ok_or_else(|| invalid(ResponseError::UnknownTopicOrPartition, "This server does not host this topic-partition."))?;
        metadata.append(&[MetadataRecord::RemoveTopic { topic_id }], now_ms())?;
        if let Some(hosted) = self.replicas.remove_topic(name) {
            for partition in &hosted.partitions {
                if let Err(e) = partition.delete() {
                    tracing::error!(topic = name, partition = partition.index, error = %e, "cannot remove partition data");
                }
            }
        }
        if let Err(e) = self.checkpoint_log_start_offsets() {
            tracing::warn!(topic = name, error = %e, "cannot rewrite the log start offset checkpoints");
        }
        self.fetch_sessions.lock().forget_topic(topic_id);
        self.groups.forget_topic(name, now_ms());
        tracing::info!(topic = name, "deleted topic");
        Ok(topic_id)
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<()> {
        if is_internal(name) {
            // Groups are placed by hashing over the partition count.
            return Err(invalid(ResponseError::InvalidPartitions, format!("Cannot change the partition count of internal topic {name}")));
        }
        let mut metadata = self.metadata.lock();
        let topic = metadata
            .image()
            .topic(name)
            .cloned()
            .ok_or_else(|| invalid(ResponseError::UnknownTopicOrPartition, format!("The topic '{name}' does not exist.")))?;
        let current = topic.partitions.len() as i32;
        if count > current {
            let adding = (i64::from(count) - i64::from(current)) as u64;
            self.check_partition_limits(metadata.image(), adding, EXCESSIVE_BATCH)?;
        }
        if count < current {
            return Err(invalid(
                ResponseError::InvalidPartitions,
                format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
            ));
        }
        if count == current {
            return Err(invalid(
                ResponseError::InvalidPartitions,
                format!("Topic already has {current} partitions."),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let mut grown = topic.clone();
        let mut records = Vec::new();
        for p in current..count {
            let node = self.config.node_id;
            grown.partitions.insert(p, PartitionImage { replicas: vec![node], isr: vec![node], leader: node, leader_epoch: 0 });
            records.push(MetadataRecord::Partition(PartitionRecord {
                topic_id: topic.id,
                partition: p,
                replicas: vec![node],
                isr: vec![node],
                leader: node,
                leader_epoch: 0,
            }));
        }
        let prepared = self.prepare_partitions(&grown, Placement::New, metadata.image())?;
        if let Err(e) = metadata.append(&records, now_ms()) {
            prepared.roll_back();
            return Err(e.into());
        }
        self.replicas.put_topic(grown.name.clone(), HostedTopic { id: grown.id, partitions: prepared.partitions });
        tracing::info!(topic = name, from = current, to = count, "changed partition count");
        Ok(())
    }

    /// Opens the logs of a topic's partitions, reusing those already hosted
    /// and creating directories for the others (`placement` says whether an
    /// existing directory without a readable `partition.metadata` is theirs).
    /// On failure the directories created here are removed again.
    pub(crate) fn prepare_partitions(&self, topic: &TopicImage, placement: Placement, image: &Image) -> Result<PreparedPartitions> {
        let existing = self.replicas.topic(&topic.name).filter(|h| h.id == topic.id);
        let server = self.effective_config();
        let log_config = topic_config::log_config(&topic.configs, &server);
        let policy = topic_config::produce_policy(&topic.configs, &server);
        let mut prepared = PreparedPartitions { partitions: Vec::with_capacity(topic.partitions.len()), created: Vec::new() };
        for (&index, partition) in &topic.partitions {
            if let Some(open) = existing.as_ref().and_then(|h| h.partitions.get(index as usize)) {
                prepared.partitions.push(Arc::clone(open));
                continue;
            }
            let placed = self
                .log_dirs
                .partition_dir(&topic.name, index, topic.id, placement, &|id| image.was_removed(id))
                .map_err(|e| invalid(ResponseError::KafkaStorageError, e.to_string()));
            let dir = match placed {
                Ok((dir, created)) => {
                    if created {
                        prepared.created.push(dir.clone());
                    }
                    dir
                }
                Err(e) => {
                    prepared.roll_back();
                    return Err(e);
                }
            };
            let opened = Log::open(&dir, log_config.clone(), self.log_dirs.clean_shutdown).map_err(BrokerError::from).and_then(|log| {
                let mut partition = Partition::new(topic.name.clone(), topic.id, index, log, partition.leader_epoch);
                if let Some(health) = self.log_dirs.health().of(&dir) {
                    partition = partition.in_log_dir(Arc::clone(health));
                }
                if let Some(start) = self.log_start_offsets.take(&topic.name, index) {
                    partition.advance_log_start_offset(start)?;
                }
                Ok(partition)
            });
            match opened {
                Ok(opened) => {
                    opened.set_produce_policy(policy);
                    prepared.partitions.push(Arc::new(opened));
                }
                // At start, one partition that cannot be opened (a damaged
                // file, no descriptors) goes offline instead of the broker.
                Err(e) if placement == Placement::Existing => {
                    tracing::error!(topic = %topic.name, partition = index, error = %e, "cannot open the partition: it is offline (KAFKA_STORAGE_ERROR) until the cause is fixed and the broker restarted");
                    prepared.partitions.push(Arc::new(Partition::offline(
                        topic.name.clone(),
                        topic.id,
                        index,
                        &dir,
                        partition.leader_epoch,
                        e.to_string(),
                    )));
                }
                Err(e) => {
                    prepared.roll_back();
                    return Err(e);
                }
            }
        }
        Ok(prepared)
    }

    /// Opens and hosts the partitions of a topic already in the metadata.
    pub(crate) fn host_topic(&self, topic: &TopicImage, image: &Image) -> Result<()> {
        let prepared = self.prepare_partitions(topic, Placement::Existing, image)?;
        self.replicas.put_topic(topic.name.clone(), HostedTopic { id: topic.id, partitions: prepared.partitions });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("my-topic.v1_x").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name(".").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("bad/name").is_err());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
