//! Wires the group coordinator to the broker: the hosted topics, as the
//! coordinator's [`TopicCatalog`], and the leadership of `__consumer_offsets`
//! partitions, which decides the group shards this broker serves. Kept out of
//! `group/`, `replica_manager.rs` and the metadata publisher, so that none
//! knows the others.

use std::sync::Arc;

use metadata::PartitionImage;
use uuid::Uuid;

use crate::group::{TopicCatalog, OFFSETS_TOPIC};
use crate::partition::Partition;
use crate::replica_manager::ReplicaManager;
use crate::topics::is_internal;
use crate::{now_ms, Broker};

impl Broker {
    /// Follows a leader change of a `__consumer_offsets` partition (one of
    /// `partition_count`; other topics are ignored): this broker serves its
    /// groups while it leads it and the partition is online, as Kafka's
    /// `onElection` / `onResignation`.
    pub(crate) fn follow_group_coordinator(&self, partition: &Arc<Partition>, state: &PartitionImage, partition_count: usize) {
        if partition.topic != OFFSETS_TOPIC {
            return;
        }
        if state.leader == self.config.node_id && !partition.is_offline() {
            let count = i32::try_from(partition_count).unwrap_or(i32::MAX);
            self.groups.on_become_leader(Arc::clone(partition), state.leader_epoch, count, now_ms());
        } else {
            self.groups.on_resign(partition.index, state.leader_epoch);
        }
    }
}

impl TopicCatalog for ReplicaManager {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        self.topic(name).map(|t| (t.id, t.partitions.len() as i32))
    }

    fn by_id(&self, id: Uuid) -> Option<(String, i32)> {
        let name = self.topic_name(id)?;
        self.by_name(&name).map(|(_, count)| (name, count))
    }

    fn names(&self) -> Vec<String> {
        self.topic_names().into_iter().filter(|n| !is_internal(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica_manager::HostedTopic;

    #[test]
    fn regex_subscriptions_see_every_hosted_topic_but_the_internal_ones() {
        let replicas = ReplicaManager::new(0);
        let id = Uuid::from_bytes([1; 16]);
        replicas.put_topic("orders".into(), HostedTopic { id, partitions: Vec::new() });
        replicas.put_topic("__consumer_offsets".into(), HostedTopic { id: Uuid::from_bytes([2; 16]), partitions: Vec::new() });
        assert_eq!(replicas.names(), ["orders"]);
        assert_eq!(replicas.by_name("orders"), Some((id, 0)));
        assert_eq!(replicas.by_id(id), Some(("orders".into(), 0)));
        assert_eq!(TopicCatalog::by_name(&replicas, "missing"), None);
    }
}
