//! The metadata publisher, as KRaft's `BrokerMetadataPublisher`: applies each
//! committed [`ImageDelta`] to this broker, in commit order: the dynamic
//! broker configs, deleted topics (logs unhosted and removed), created and
//! grown topics (logs opened or created and hosted), leadership (the
//! become-leader / become-follower call site), topic config changes
//! (`LogConfig`, `ProducePolicy`), and finally the image that readers
//! (Metadata, DescribeConfigs, retention, the cleaner) see.
//!
//! At start the publisher gets the whole image as a delta from the empty
//! one ([`metadata::Image::delta_from_empty`]), so start-up and live changes
//! take the same path. A live CreateTopics / CreatePartitions prepares its
//! logs before the controller appends ([`Broker::prepare_partitions`]) and
//! hands them to the publisher, which hosts them instead of opening again.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use metadata::{Committed, Image, ImageDelta, PartitionImage, TopicImage};
use parking_lot::{Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};
use storage::Log;
use uuid::Uuid;

use crate::config::ServerConfig;
use crate::dynamic_config::effective_server_config;
use crate::error::{BrokerError, Result};
use crate::log_dirs::{Placement, METADATA_TOPIC};
use crate::partition::{LeaderAndIsr, Partition};
use crate::replica_manager::HostedTopic;
use crate::{now_ms, topic_config, Broker};

/// The last image published to this broker.
#[derive(Default)]
pub(crate) struct MetadataPublisher {
    image: RwLock<Arc<Image>>,
    /// The offset of the last committed change published (-1: none).
    published: Mutex<i64>,
    /// Signalled when `published` moves.
    advanced: Condvar,
}

impl MetadataPublisher {
    /// The image as of the last published change.
    pub(crate) fn image(&self) -> Arc<Image> {
        Arc::clone(&self.image.read())
    }

    /// The offset of the last committed change published to this broker.
    pub(crate) fn published_offset(&self) -> i64 {
        *self.published.lock()
    }

    /// Records that every change up to `offset` is published.
    pub(crate) fn set_published(&self, offset: i64) {
        let mut published = self.published.lock();
        if offset > *published {
            *published = offset;
            self.advanced.notify_all();
        }
    }

    /// Waits until the change at `offset` is published; false if `timeout` passed first.
    pub(crate) fn wait_published(&self, offset: i64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut published = self.published.lock();
        while *published < offset {
            if self.advanced.wait_until(&mut published, deadline).timed_out() {
                return *published >= offset;
            }
        }
        true
    }
}

/// A topic's partition logs opened before its metadata record is appended,
/// so a failure leaves nothing behind.
pub(crate) struct PreparedPartitions {
    /// The topic they belong to.
    topic_id: Uuid,
    /// The topic's local replicas, in index order.
    partitions: Vec<Arc<Partition>>,
    /// The directories created for them, removed on roll-back.
    created: Vec<PathBuf>,
}

impl PreparedPartitions {
    /// Closes the partitions and removes the directories created for them.
    pub(crate) fn roll_back(self) {
        drop(self.partitions);
        for dir in self.created {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::error!(dir = %dir.display(), error = %e, "cannot remove the directory of a failed topic change");
            }
        }
    }
}

impl Broker {
    /// The image as of the last change published to this broker.
    pub fn image(&self) -> Arc<Image> {
        self.publisher.image()
    }

    /// Applies a committed live change; `prepared` are the logs the request
    /// created before the append. A failure is logged (the change is
    /// committed; a partition that cannot be opened goes offline). In cluster
    /// mode the publisher task applies every committed change in log order,
    /// this node's own included: this waits until it has applied this one.
    pub(crate) fn publish_change(&self, committed: &Committed, image: &Image, prepared: Option<PreparedPartitions>) {
        if let Some(cluster) = &self.cluster {
            if let Some(unused) = prepared {
                unused.roll_back();
            }
            cluster.await_published(self, committed.last_offset);
            return;
        }
        if let Err((topic, e)) = self.publish(&committed.delta, image, prepared, Placement::New) {
            tracing::error!(%topic, error = %e, "cannot apply a committed metadata change to the topic's partitions");
        }
        self.publisher.set_published(committed.last_offset);
    }

    /// Applies `delta`, which took the published image to `image`. Partitions
    /// not prepared are opened with `placement` (Existing at start). The
    /// error names the topic whose partitions could not be hosted.
    pub(crate) fn publish(
        &self,
        delta: &ImageDelta,
        image: &Image,
        mut prepared: Option<PreparedPartitions>,
        placement: Placement,
    ) -> std::result::Result<(), (String, BrokerError)> {
        let node = self.config.node_id.to_string();
        if delta.broker_configs.iter().any(|r| r.is_empty() || *r == node) {
            self.publish_broker_configs(image);
        }
        for (&id, name) in &delta.deleted_topics {
            self.unhost_topic(id, name);
        }
        if !delta.deleted_topics.is_empty() {
            // A topic created later under a deleted name must not inherit its entries.
            if let Err(e) = self.checkpoint_log_start_offsets().and_then(|()| self.checkpoint_replication_offsets(true)) {
                tracing::warn!(error = %e, "cannot rewrite the offset checkpoints");
            }
        }
        let touched: BTreeSet<Uuid> =
            delta.created_topics.iter().copied().chain(delta.partitions.keys().map(|(id, _)| *id)).collect();
        for id in touched {
            let Some(topic) = image.topic_by_id(id) else { continue };
            if topic.name == METADATA_TOPIC {
                // Created before the name was reserved; its directory is the metadata log's.
                tracing::warn!(topic = %topic.name, "ignoring a topic with the metadata log's reserved name");
                continue;
            }
            // Every topic is known here; only the partitions with a replica on this node are hosted.
            let count = topic.partitions.len() as i32;
            let local: Vec<i32> = self.local_partitions(topic).map(|(&index, _)| index).collect();
            let hosted = self.replicas.topic(&topic.name).filter(|h| h.id == id);
            if hosted.is_none_or(|h| h.partition_count != count || !h.partitions.keys().eq(local.iter())) {
                let ready = match prepared.take_if(|p| p.topic_id == id) {
                    Some(ready) => ready,
                    None => self.prepare_partitions(topic, placement, image).map_err(|e| (topic.name.clone(), e))?,
                };
                self.replicas.put_topic(topic.name.clone(), HostedTopic::new(id, count, ready.partitions));
            }
            let Some(hosted) = self.replicas.topic(&topic.name) else { continue };
            for (index, change) in delta.partitions_of(id) {
                let Some(partition) = hosted.partition(index) else { continue };
                if change.leader_changed() {
                    self.apply_leadership(partition, &change.new);
                    self.follow_group_coordinator(partition, &change.new, topic.partitions.len());
                } else if change.new.leader == self.config.node_id && change.old.as_ref() != Some(&change.new) {
                    // The same leadership at a new partition epoch (the ISR the
                    // controller changed, e.g. a fenced follower removed): the
                    // leader takes it, as Kafka's leaders apply every partition
                    // epoch. Followers keep fetching as they were.
                    self.apply_leadership(partition, &change.new);
                }
            }
        }
        let server = self.effective_config();
        for topic in delta.topic_configs.iter().filter_map(|&id| image.topic_by_id(id)) {
            self.apply_topic_configs(topic, &server);
        }
        if let Some(unused) = prepared {
            // Only if the change it was prepared for did not create its partitions.
            unused.roll_back();
        }
        *self.publisher.image.write() = Arc::new(image.clone());
        Ok(())
    }

    /// Rebuilds the effective broker config from the dynamic levels in
    /// `image` and re-derives every hosted topic's settings from it.
    fn publish_broker_configs(&self, image: &Image) {
        let updated = match effective_server_config(&self.config, image) {
            Ok(updated) => Arc::new(updated),
            Err(e) => {
                // As Kafka: a stored dynamic config that no longer applies is logged and skipped.
                tracing::error!(error = %e, "dynamic broker configs not applied");
                return;
            }
        };
        *self.effective.write() = Arc::clone(&updated);
        for topic in image.topics() {
            self.apply_topic_configs(topic, &updated);
        }
    }

    /// The partition's role after a leader change in the metadata.
    fn apply_leadership(&self, partition: &Arc<Partition>, state: &PartitionImage) {
        let leadership = LeaderAndIsr { leader_epoch: state.leader_epoch, replicas: state.replicas.clone(), isr: state.isr.clone() };
        let following = state.leader >= 0 && state.leader != self.config.node_id && state.replicas.contains(&self.config.node_id);
        let changed = if state.leader == self.config.node_id {
            let made = match partition.alter_partition_epochs() {
                // An ISR change the controller answered is newer already (Kafka
                // skips such a stale become-leader).
                Some((epoch, newer)) if epoch == state.leader_epoch && newer > state.partition_epoch => Ok(false),
                _ => partition.make_leader(&leadership, now_ms()),
            };
            partition.set_partition_epoch(state.partition_epoch);
            made
        } else if state.replicas.contains(&self.config.node_id) {
            partition.make_follower(state.leader, &leadership)
        } else {
            Ok(false)
        };
        match changed {
            Ok(true) if following => self.add_fetcher(partition, state.leader),
            Ok(false) => {}
            _ => self.remove_fetcher(partition),
        }
        if let Err(e) = changed {
            // An offline partition keeps no role; it answers KAFKA_STORAGE_ERROR.
            tracing::debug!(topic = %partition.topic, partition = partition.index, error = %e, "leadership not applied");
        }
    }

    /// Stops hosting a deleted topic and removes its data.
    fn unhost_topic(&self, id: Uuid, name: &str) {
        if let Some(hosted) = self.replicas.topic(name).filter(|h| h.id == id) {
            self.replicas.remove_topic(name);
            for partition in hosted.partitions.values() {
                self.remove_fetcher(partition);
                if let Err(e) = partition.delete() {
                    tracing::error!(topic = name, partition = partition.index, error = %e, "cannot remove partition data");
                }
            }
        }
        self.fetch_sessions.lock().forget_topic(id);
        self.groups.forget_topic(name, now_ms());
    }

    /// Gives a topic's hosted partitions the log settings and produce policy of
    /// its configs under broker config `server`.
    pub(crate) fn apply_topic_configs(&self, topic: &TopicImage, server: &ServerConfig) {
        let Some(hosted) = self.replicas.topic(&topic.name) else { return };
        let log_config = topic_config::log_config(&topic.configs, server);
        let policy = topic_config::produce_policy(&topic.configs, server);
        for partition in hosted.partitions.values() {
            partition.set_produce_policy(policy);
            if let Err(e) = partition.set_log_config(log_config.clone()) {
                tracing::debug!(topic = %topic.name, partition = partition.index, error = %e, "config not applied");
            }
        }
    }

    /// The partitions of `topic` with a replica on this broker (on a single
    /// node, every one: the controller places them all here).
    fn local_partitions<'a>(&self, topic: &'a TopicImage) -> impl Iterator<Item = (&'a i32, &'a PartitionImage)> {
        let node = self.config.node_id;
        topic.partitions.iter().filter(move |(_, p)| p.has_replica(node))
    }

    /// Opens the logs of a topic's local replicas, reusing those already hosted
    /// and creating directories for the others (`placement` says whether an
    /// existing directory without a readable `partition.metadata` is theirs).
    /// On failure the directories created here are removed again.
    pub(crate) fn prepare_partitions(&self, topic: &TopicImage, placement: Placement, image: &Image) -> Result<PreparedPartitions> {
        let existing = self.replicas.topic(&topic.name).filter(|h| h.id == topic.id);
        let server = self.effective_config();
        let log_config = topic_config::log_config(&topic.configs, &server);
        let policy = topic_config::produce_policy(&topic.configs, &server);
        let mut prepared = PreparedPartitions {
            topic_id: topic.id,
            partitions: Vec::with_capacity(topic.partitions.len()),
            created: Vec::new(),
        };
        for (&index, partition) in self.local_partitions(topic) {
            if let Some(open) = existing.as_ref().and_then(|h| h.partition(index)) {
                prepared.partitions.push(Arc::clone(open));
                continue;
            }
            // A partition whose directory is in a log dir that went offline
            // (at start: an unreadable high watermark checkpoint) stays there, offline.
            if let Some((dir, health)) = self.log_dirs.failed_dir_of(&topic.name, index, topic.id, placement) {
                let reason = health.failure().unwrap_or("its log dir failed").to_string();
                let offline = Partition::offline(topic.name.clone(), topic.id, index, &dir, partition.leader_epoch, reason);
                prepared.partitions.push(Arc::new(offline.in_log_dir(Arc::clone(health))));
                continue;
            }
            let placed = self
                .log_dirs
                .partition_dir(&topic.name, index, topic.id, placement, &|id| image.was_removed(id))
                .map_err(|e| BrokerError::kafka(ResponseError::KafkaStorageError, e.to_string()));
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
            let recovery_point = self.checkpoints.recovery_point.take(&topic.name, index);
            let high_watermark = self.checkpoints.high_watermark.take(&topic.name, index);
            let opened = Log::open_with_recovery_point(&dir, log_config.clone(), self.log_dirs.clean_shutdown, recovery_point).map_err(BrokerError::from).and_then(|log| {
                let mut opened = Partition::open(topic.name.clone(), topic.id, index, log, self.config.node_id);
                if let Some(health) = self.log_dirs.health().of(&dir) {
                    opened = opened.in_log_dir(Arc::clone(health));
                }
                if let Some(start) = self.checkpoints.log_start.take(&topic.name, index) {
                    opened.advance_log_start_offset(start)?;
                }
                // As Kafka: min(checkpointed, log end) before any role; a
                // leader then moves it with its ISR (on a single node, to the
                // log end at once), a follower with its leader's.
                let restored = opened.restore_high_watermark(high_watermark);
                tracing::debug!(topic = %topic.name, partition = index, high_watermark = restored, "partition opened");
                let opened = Arc::new(opened);
                self.apply_leadership(&opened, partition);
                Ok(opened)
            });
            match opened {
                Ok(opened) => {
                    opened.set_produce_policy(policy);
                    prepared.partitions.push(opened);
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
}

#[cfg(test)]
mod tests {
    use metadata::{MetadataRecord, PartitionRecord};

    use super::*;
    use crate::topics::NewTopic;

    fn config(dir: &std::path::Path) -> ServerConfig {
        let entry = |k: &str, v: &str| (k.to_string(), v.to_string(), "test".to_string());
        ServerConfig::from_entries(vec![entry("node.id", "1"), entry("log.dirs", &dir.display().to_string())]).expect("config")
    }

    #[test]
    fn a_committed_leader_epoch_reaches_the_partition_live_and_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = Broker::open(config(dir.path())).expect("open");
        let new = NewTopic { name: "t".into(), num_partitions: 2, replication_factor: -1, assignments: Vec::new(), configs: Vec::new() };
        let topic = broker.create_topic(new, false).expect("create");
        let partition = broker.replicas.partition("t", 1).expect("hosted");
        assert_eq!(partition.leader_epoch(), 0);
        assert!(broker.image().topic("t").is_some(), "published before the request returns");

        // A leader change decided by the controller (an election): epoch 1 for partition 1.
        let elected = MetadataRecord::Partition(PartitionRecord {
            topic_id: topic.id,
            partition: 1,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 1,
            ..Default::default()
        });
        {
            let mut controller = broker.controller.lock();
            let committed = controller.commit(&[elected], now_ms()).expect("commit");
            assert!(committed.delta.partitions[&(topic.id, 1)].leader_changed());
            broker.publish_change(&committed, controller.image(), None);
        }
        assert_eq!(partition.leader_epoch(), 1);
        assert_eq!(broker.replicas.partition("t", 0).map(|p| p.leader_epoch()), Some(0));
        assert_eq!(broker.image().topic("t").map(|t| t.partitions[&1].leader_epoch), Some(1));
        assert!(Arc::ptr_eq(&partition, &broker.replicas.partition("t", 1).expect("hosted")), "the log is not reopened");
        broker.shutdown().expect("shutdown");
        drop((partition, broker));

        let broker = Broker::open(config(dir.path())).expect("reopen");
        assert_eq!(broker.replicas.partition("t", 1).map(|p| p.leader_epoch()), Some(1));
        assert_eq!(broker.replicas.partition("t", 0).map(|p| p.leader_epoch()), Some(0));
        broker.delete_topic("t").expect("delete");
        assert!(broker.replicas.topic("t").is_none() && broker.image().topic("t").is_none());
        assert!(!dir.path().join("t-0").exists(), "the publisher removed the data");
    }
    #[test]
    fn a_leader_takes_an_isr_change_of_the_same_leader_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = Broker::open(config(dir.path())).expect("open");
        let new = NewTopic { name: "t".into(), num_partitions: 1, replication_factor: -1, assignments: Vec::new(), configs: Vec::new() };
        let topic = broker.create_topic(new, false).expect("create");
        let partition = broker.replicas.partition("t", 0).expect("hosted");
        let state = |isr: Vec<i32>, partition_epoch: i32| {
            MetadataRecord::Partition(PartitionRecord {
                topic_id: topic.id,
                partition: 0,
                replicas: vec![1, 2, 3],
                isr,
                leader: 1,
                leader_epoch: 1,
                partition_epoch,
                ..Default::default()
            })
        };
        let isr = || match partition.role() {
            crate::partition::Role::Leader(leader) => leader.isr,
            other => panic!("not leading: {other:?}"),
        };
        for (record, expected) in [(state(vec![1, 2, 3], 1), vec![1, 2, 3]), (state(vec![1, 3], 2), vec![1, 3])] {
            let mut controller = broker.controller.lock();
            let committed = controller.commit(&[record], now_ms()).expect("commit");
            broker.publish_change(&committed, controller.image(), None);
            drop(controller);
            assert_eq!(isr(), expected);
        }
        assert_eq!(partition.alter_partition_epochs(), Some((1, 2)), "the leader knows the partition epoch");
    }
}
