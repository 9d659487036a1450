//! What a run of committed records changed in the [`crate::Image`]: the input
//! of a metadata publisher, which applies it to the broker (hosting and
//! deleting logs, leadership, configs), as KRaft's `MetadataDelta`.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::image::PartitionImage;

/// The changes of a run of records, relative to the image before the first.
///
/// A topic created and deleted within the run does not appear at all; a
/// topic deleted and another created under its name appear as one deletion
/// and one creation (different ids).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDelta {
    /// Ids of topics created.
    pub created_topics: BTreeSet<Uuid>,
    /// Topics deleted: id and the name they had.
    pub deleted_topics: BTreeMap<Uuid, String>,
    /// Partitions added or changed (replicas, ISR, leader, epoch), by topic id
    /// and index, of topics that still exist.
    pub partitions: BTreeMap<(Uuid, i32), PartitionChange>,
    /// Ids of existing topics whose configs changed.
    pub topic_configs: BTreeSet<Uuid>,
    /// Broker config resources that changed: a node id, or "" for the
    /// cluster-wide default.
    pub broker_configs: BTreeSet<String>,
    /// True if a producer-id block was handed out.
    pub producer_ids: bool,
    /// Node ids of brokers registered, changed (fenced, unfenced, shutting
    /// down) or unregistered.
    pub brokers: BTreeSet<i32>,
}

/// One partition before and after a delta.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionChange {
    /// Its state before the delta; `None` for a new partition.
    pub old: Option<PartitionImage>,
    /// Its state after.
    pub new: PartitionImage,
}

impl PartitionChange {
    /// True if the leader or the leader epoch changed (or the partition is new).
    pub fn leader_changed(&self) -> bool {
        self.old.as_ref().is_none_or(|old| old.leader != self.new.leader || old.leader_epoch != self.new.leader_epoch)
    }
}

impl ImageDelta {
    /// True if nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == ImageDelta::default()
    }

    pub(crate) fn topic_created(&mut self, id: Uuid) {
        self.created_topics.insert(id);
    }

    pub(crate) fn topic_deleted(&mut self, id: Uuid, name: String) {
        self.partitions.retain(|(topic, _), _| *topic != id);
        self.topic_configs.remove(&id);
        if !self.created_topics.remove(&id) {
            self.deleted_topics.insert(id, name);
        }
    }

    /// Records a partition change; a second change of the same partition
    /// keeps the first one's `old`.
    pub(crate) fn partition_changed(&mut self, topic: Uuid, partition: i32, change: PartitionChange) {
        match self.partitions.get_mut(&(topic, partition)) {
            Some(earlier) => earlier.new = change.new,
            None => {
                self.partitions.insert((topic, partition), change);
            }
        }
    }

    /// The changed partitions of one topic, in index order.
    pub fn partitions_of(&self, topic: Uuid) -> impl Iterator<Item = (i32, &PartitionChange)> {
        self.partitions.range((topic, i32::MIN)..=(topic, i32::MAX)).map(|(&(_, index), change)| (index, change))
    }
}
