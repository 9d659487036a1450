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
            self.groups.on_become_leader(Arc::clone(partition), state.leader_epoch, count, now_ms);
        } else {
            self.groups.on_resign(partition.index, state.leader_epoch);
        }
    }
}

impl TopicCatalog for ReplicaManager {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        self.topic(name).map(|t| (t.id, t.partition_count))
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
    use crate::group::{block_on, store::OffsetValue, store::partition_for};
    use crate::replica_manager::HostedTopic;
    use kafka_protocol::error::ResponseError;
    use metadata::{MetadataRecord, PartitionRecord};

    fn broker(dir: &std::path::Path, extra: &[(&str, &str)]) -> Arc<Broker> {
        let entry = |k: &str, v: &str| (k.to_string(), v.to_string(), "test".to_string());
        let mut entries = vec![entry("node.id", "1"), entry("log.dirs", &dir.display().to_string()), entry("offsets.topic.num.partitions", "3")];
        entries.extend(extra.iter().map(|(k, v)| entry(k, v)));
        Broker::open(crate::ServerConfig::from_entries(entries).expect("config")).expect("open")
    }

    #[test]
    fn the_offsets_topic_has_one_replica_on_a_lone_broker_unless_more_are_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lone = broker(dir.path(), &[]);
        lone.ensure_offsets_topic().expect("created");
        let topic = lone.image().topic(OFFSETS_TOPIC).cloned().expect("in the image");
        assert!(topic.partitions.values().all(|p| p.replicas == [1] && p.leader == 1));
        assert!(lone.groups.shard("g").is_ok(), "its groups are served here");

        let dir = tempfile::tempdir().expect("tempdir");
        let strict = broker(dir.path(), &[("offsets.topic.replication.factor", "3")]);
        let e = strict.ensure_offsets_topic().expect_err("three replicas asked for, one broker");
        assert_eq!(e.response_error(), ResponseError::CoordinatorNotAvailable);
        assert!(strict.image().topic(OFFSETS_TOPIC).is_none());
        assert_eq!(strict.groups.shard("g").err(), Some(ResponseError::CoordinatorNotAvailable));
    }

    #[test]
    fn a_leader_change_of_an_offsets_partition_moves_its_groups_away_and_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = broker(dir.path(), &[]);
        broker.ensure_offsets_topic().expect("created");
        let topic = broker.image().topic(OFFSETS_TOPIC).cloned().expect("in the image");
        let t = crate::topics::NewTopic { name: "t".into(), num_partitions: 1, replication_factor: -1, assignments: Vec::new(), configs: Vec::new() };
        broker.create_topic(t, false).expect("topic t");
        let index = partition_for("g", 3);
        let value = OffsetValue { offset: 9, leader_epoch: -1, metadata: String::new(), commit_timestamp: 1 };
        block_on(broker.groups.commit_offsets("g", "", None, -1, vec![(("t".into(), 0), value)], &broker.replicas, 1)).expect("commit");
        let lead = |leader: i32, leader_epoch: i32| {
            let record = MetadataRecord::Partition(PartitionRecord {
                topic_id: topic.id,
                partition: index,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                leader,
                leader_epoch,
                ..Default::default()
            });
            let mut controller = broker.controller.lock();
            let committed = controller.commit(&[record], now_ms()).expect("commit");
            broker.publish_change(&committed, controller.image(), None);
        };
        lead(2, 1);
        assert_eq!(broker.groups.fetch_offsets("g", None).err(), Some(ResponseError::NotCoordinator), "broker 2 coordinates g");
        lead(1, 2);
        let fetched = broker.groups.fetch_offsets("g", None).expect("served again");
        assert_eq!(fetched.into_iter().map(|(tp, v)| (tp, v.map(|v| v.offset))).collect::<Vec<_>>(), vec![(("t".to_string(), 0), Some(9))]);
    }

    #[test]
    fn a_restarted_broker_serves_the_offsets_an_earlier_version_stored_by_the_masked_hash() {
        use crate::group::store::{legacy_partition_for, StoredKey, StoredValue};
        let dir = tempfile::tempdir().expect("tempdir");
        let group = (0..).map(|i| format!("g{i}")).find(|g| legacy_partition_for(g, 3) != partition_for(g, 3)).expect("an id");
        let (old, new) = (legacy_partition_for(&group, 3), partition_for(&group, 3));
        let value = OffsetValue { offset: 42, leader_epoch: -1, metadata: "m".into(), commit_timestamp: 1 };
        {
            let broker = broker(dir.path(), &[]);
            broker.ensure_offsets_topic().expect("created");
            let t = crate::topics::NewTopic { name: "t".into(), num_partitions: 1, replication_factor: -1, assignments: Vec::new(), configs: Vec::new() };
            broker.create_topic(t, false).expect("topic t");
            // What an earlier version wrote: the commit in the masked hash's partition.
            let partition = broker.replicas.partition(OFFSETS_TOPIC, old).expect("hosted");
            let key = StoredKey::Offset { group: group.clone(), topic: "t".into(), partition: 0 };
            crate::group::shard::Shard::new(partition, 0, 3).write(vec![(key, Some(StoredValue::Offset(value.clone())))], 1).expect("written");
        }
        let fetched = |broker: &Broker| {
            let offsets = broker.groups.fetch_offsets(&group, None).expect("served");
            offsets.into_iter().map(|(tp, v)| (tp, v.map(|v| v.offset))).collect::<Vec<_>>()
        };
        let upgraded = broker(dir.path(), &[]);
        assert_eq!(fetched(&upgraded), vec![(("t".to_string(), 0), Some(42))], "the offsets are found after the upgrade");
        let end = |index| upgraded.replicas.partition(OFFSETS_TOPIC, index).expect("hosted").log_end_offset();
        assert_eq!((end(old), end(new)), (2, 1), "copied to Kafka's partition, tombstoned in the old one");
        drop(upgraded);
        let restarted = broker(dir.path(), &[]);
        assert_eq!(fetched(&restarted), vec![(("t".to_string(), 0), Some(42))], "and still after the next restart");
    }

    #[test]
    fn regex_subscriptions_see_every_hosted_topic_but_the_internal_ones() {
        let replicas = ReplicaManager::new(0);
        let id = Uuid::from_bytes([1; 16]);
        replicas.put_topic("orders".into(), HostedTopic::new(id, 0, []));
        replicas.put_topic("__consumer_offsets".into(), HostedTopic::new(Uuid::from_bytes([2; 16]), 0, []));
        assert_eq!(replicas.names(), ["orders"]);
        assert_eq!(replicas.by_name("orders"), Some((id, 0)));
        assert_eq!(replicas.by_id(id), Some(("orders".into(), 0)));
        assert_eq!(TopicCatalog::by_name(&replicas, "missing"), None);
    }
}
