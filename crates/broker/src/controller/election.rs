//! Deciding one partition's change, as Kafka's `PartitionChangeBuilder`:
//! given the ISR the caller wants, which replicas may lead and whether an
//! unclean election is allowed, the `PartitionChangeRecord` that moves the
//! partition there (or none if nothing changes).
//!
//! The leader is kept while it stays acceptable and in the ISR; otherwise the
//! first replica (in replica order) that is in the target ISR and acceptable
//! leads; with an empty ISR, the first acceptable eligible leader replica
//! (KIP-966 ELR); failing that, with `unclean.leader.election.enable`, the
//! last known leader when ISR and ELR are both empty (KIP-966: the replica
//! that led when the ISR emptied, back after an unclean restart), or, with
//! `unclean.leader.election.enable`, the first acceptable replica at all
//! (either way unclean: the ISR becomes that one replica, records may be
//! lost); else nobody (-1).
//!
//! Without ELR the ISR is never emptied: its last member stays, leaderless
//! until it returns. With ELR, replicas that leave an ISR smaller than
//! `min.insync.replicas` join the ELR (they still have every committed
//! record), and the ISR may become empty.

use metadata::{MetadataRecord, PartitionChangeRecord, PartitionImage, TopicImage, Uuid};

use super::Controller;
use crate::config::ServerConfig;
use crate::topic_config;

/// How a new leader may be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Election {
    /// Only from the ISR (or the ELR when the ISR is empty).
    Clean,
    /// Also from any acceptable replica when no clean leader exists
    /// (`unclean.leader.election.enable`).
    Unclean,
}

/// The inputs of one partition change.
pub(crate) struct PartitionChangeBuilder<'a> {
    partition: &'a PartitionImage,
    topic_id: Uuid,
    index: i32,
    target_isr: Vec<i32>,
    target_elr: Vec<i32>,
    target_last_known_elr: Vec<i32>,
    unclean_shutdown: Option<i32>,
    election: Election,
    elr_enabled: bool,
    min_isr: usize,
}

impl<'a> PartitionChangeBuilder<'a> {
    /// A change of `partition` that, until told otherwise, keeps its ISR.
    pub(crate) fn new(partition: &'a PartitionImage, topic_id: Uuid, index: i32, elr_enabled: bool, min_isr: usize) -> Self {
        PartitionChangeBuilder {
            partition,
            topic_id,
            index,
            target_isr: partition.isr.clone(),
            target_elr: partition.elr.clone(),
            target_last_known_elr: partition.last_known_elr.clone(),
            unclean_shutdown: None,
            election: Election::Clean,
            elr_enabled,
            min_isr: min_isr.max(1),
        }
    }

    /// The ISR wanted.
    pub(crate) fn target_isr(mut self, isr: Vec<i32>) -> Self {
        self.target_isr = isr;
        self
    }

    /// Allows an unclean election.
    pub(crate) fn election(mut self, election: Election) -> Self {
        self.election = election;
        self
    }

    /// A broker that restarted without a clean shutdown: it may have lost
    /// records, so it leaves the ELR too.
    pub(crate) fn unclean_shutdown(mut self, broker: i32) -> Self {
        self.unclean_shutdown = Some(broker);
        self
    }

    /// The leader to elect, and whether the election is unclean.
    fn elect(&self, acceptable: &impl Fn(i32) -> bool) -> (i32, bool) {
        let valid = |r: i32| {
            (self.target_isr.contains(&r) || (self.target_isr.is_empty() && self.target_elr.contains(&r))) && acceptable(r)
        };
        if self.partition.leader >= 0 && valid(self.partition.leader) {
            return (self.partition.leader, false);
        }
        if let Some(&r) = self.partition.replicas.iter().find(|&&r| valid(r)) {
            return (r, false);
        }
        // KIP-966: with ISR and ELR empty, the last known leader may take
        // over again when it is back (as before ELR, when the last ISR
        // member returned); it may have lost records, so this is unclean.
        if let [last] = self.partition.last_known_elr[..] {
            if self.elr_enabled && self.target_isr.is_empty() && self.target_elr.is_empty() && acceptable(last) {
                return (last, true);
            }
        }
        if self.election == Election::Unclean {
            if let Some(&r) = self.partition.replicas.iter().find(|&&r| acceptable(r)) {
                return (r, true);
            }
        }
        (-1, false)
    }

    /// With ELR: replicas leaving an ISR below `min.insync.replicas` join
    /// the ELR; an ISR at or above it clears ELR and last known ELR.
    fn populate_target_elr(&mut self) {
        if !self.elr_enabled {
            return;
        }
        if self.target_isr.len() >= self.min_isr {
            self.target_elr.clear();
            self.target_last_known_elr.clear();
            return;
        }
        let mut candidates: Vec<i32> = self.target_elr.iter().chain(&self.partition.isr).copied().collect();
        candidates.sort_unstable();
        candidates.dedup();
        let isr = &self.target_isr;
        let unclean = self.unclean_shutdown;
        self.target_elr = candidates.iter().copied().filter(|r| !isr.contains(r) && Some(*r) != unclean).collect();
        let mut last_known: Vec<i32> = candidates.into_iter().chain(self.target_last_known_elr.iter().copied()).collect();
        last_known.sort_unstable();
        last_known.dedup();
        let elr = &self.target_elr;
        self.target_last_known_elr = last_known.into_iter().filter(|r| !isr.contains(r) && !elr.contains(r)).collect();
    }

    /// The record of the change, or None if nothing changes. `acceptable`
    /// says which brokers may lead (registered, unfenced, not shutting down,
    /// and whatever the caller excludes).
    pub(crate) fn build(mut self, acceptable: impl Fn(i32) -> bool) -> Option<PartitionChangeRecord> {
        let mut record = PartitionChangeRecord { topic_id: self.topic_id, partition: self.index, ..Default::default() };
        self.populate_target_elr();
        let (leader, unclean) = self.elect(&acceptable);
        if leader != self.partition.leader {
            if self.target_elr.contains(&leader) {
                // Elected from the ELR: it is the ISR now.
                self.target_isr = vec![leader];
                self.target_elr.retain(|&r| r != leader);
            } else if unclean {
                tracing::info!(topic_id = %self.topic_id, partition = self.index, leader, "unclean leader election: records the old ISR had may be lost");
                // Only the new leader is known to have what it has.
                record.isr = Some(vec![leader]);
            }
            record.leader = Some(leader);
        }
        if unclean || !self.elr_enabled {
            self.target_elr.clear();
            self.target_last_known_elr.clear();
        }
        let leaderless = record.leader == Some(-1) || (record.leader.is_none() && self.partition.leader < 0);
        if self.elr_enabled && self.partition.last_known_elr.len() == 1 && leaderless {
            // The last known leader stays recorded while nobody leads.
            self.target_last_known_elr = self.partition.last_known_elr.clone();
        }
        if self.target_elr != self.partition.elr {
            record.elr = Some(self.target_elr.clone());
        }
        if self.target_last_known_elr != self.partition.last_known_elr {
            record.last_known_elr = Some(self.target_last_known_elr.clone());
        }
        // Without ELR an ISR is never emptied: its last member keeps every committed record.
        if record.isr.is_none()
            && (!self.target_isr.is_empty() || self.elr_enabled)
            && self.target_isr != self.partition.isr
        {
            record.isr = Some(self.target_isr);
        }
        // The ISR empties: remember who led last (once).
        let last_leader = self.partition.leader;
        if self.elr_enabled
            && last_leader >= 0
            && record.isr.as_deref() == Some(&[])
            && self.partition.last_known_elr != [last_leader]
        {
            record.last_known_elr = Some(vec![last_leader]);
        }
        let changed = record.isr.is_some()
            || record.leader.is_some()
            || record.elr.is_some()
            || record.last_known_elr.is_some()
            || record.replicas.is_some();
        changed.then_some(record)
    }
}

/// What a broker event changes for the partitions it touches (Kafka's
/// `generateLeaderAndIsrUpdates` arguments).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Change {
    /// A broker leaving every ISR and leadership (fenced, shutting down).
    remove: Option<i32>,
    /// A broker that may lead although the image still shows it fenced (being unfenced).
    add: Option<i32>,
    /// A broker that restarted: it leaves ISR and ELR and may not lead.
    unclean_shutdown: Option<i32>,
}

impl Change {
    /// `broker` leaves the ISRs.
    pub(crate) fn removing(broker: i32) -> Change {
        Change { remove: Some(broker), ..Change::default() }
    }

    /// `broker` becomes an acceptable leader.
    pub(crate) fn adding(broker: i32) -> Change {
        Change { add: Some(broker), ..Change::default() }
    }

    /// `broker` came back as a new process.
    pub(crate) fn uncleanly_shut_down(broker: i32) -> Change {
        Change { unclean_shutdown: Some(broker), ..Change::default() }
    }
}

impl Controller {
    /// The partitions (topic id, index) of the committed image that match `pred`.
    pub(crate) fn partitions_where<'s>(
        &'s self,
        pred: impl Fn(&PartitionImage) -> bool + 's,
    ) -> impl Iterator<Item = (Uuid, i32)> + 's {
        self.image()
            .topics()
            .flat_map(move |t| t.partitions.iter().filter(|(_, p)| pred(p)).map(move |(&i, _)| (t.id, i)).collect::<Vec<_>>())
    }

    /// True if `broker` may lead: registered, unfenced and not shutting down
    /// (on a single node without registrations: this node).
    pub(crate) fn is_active(&self, broker: i32) -> bool {
        let image = self.image();
        if image.brokers().next().is_none() {
            return self.config.kraft.roles.broker && broker == self.config.node_id;
        }
        image.broker(broker).is_some_and(|b| b.is_usable())
    }

    /// A builder for one partition with the topic's ELR and unclean-election settings.
    pub(crate) fn change_builder<'p>(
        &self,
        server: &ServerConfig,
        topic: &TopicImage,
        index: i32,
        partition: &'p PartitionImage,
    ) -> PartitionChangeBuilder<'p> {
        let min_isr = topic_config::effective("min.insync.replicas", &topic.configs, server).trim().parse().unwrap_or(1);
        let unclean = topic_config::effective("unclean.leader.election.enable", &topic.configs, server).trim() == "true";
        PartitionChangeBuilder::new(partition, topic.id, index, self.elr_enabled, min_isr)
            .election(if unclean { Election::Unclean } else { Election::Clean })
    }

    /// Kafka's `generateLeaderAndIsrUpdates`: the changes of `partitions`
    /// after `change` (the broker removed leaves the ISR, leaders are
    /// re-elected where needed).
    pub(crate) fn leader_and_isr_updates(&self, partitions: Vec<(Uuid, i32)>, change: Change) -> Vec<MetadataRecord> {
        let server = self.server_config();
        let image = self.image();
        let acceptable = |r: i32| {
            Some(r) != change.remove && Some(r) != change.unclean_shutdown && (Some(r) == change.add || self.is_active(r))
        };
        let mut records = Vec::new();
        for (topic_id, index) in partitions {
            let Some(topic) = image.topic_by_id(topic_id) else { continue };
            let Some(partition) = topic.partitions.get(&index) else { continue };
            let target: Vec<i32> = partition
                .isr
                .iter()
                .copied()
                .filter(|&r| Some(r) != change.remove && Some(r) != change.unclean_shutdown)
                .collect();
            let mut builder = self.change_builder(&server, topic, index, partition).target_isr(target);
            if let Some(broker) = change.unclean_shutdown {
                builder = builder.unclean_shutdown(broker);
            }
            if let Some(record) = builder.build(acceptable) {
                tracing::debug!(topic = %topic.name, partition = index, ?record, "partition change");
                records.push(MetadataRecord::PartitionChange(record));
            }
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionImage {
        PartitionImage { replicas: replicas.to_vec(), isr: isr.to_vec(), leader, ..Default::default() }
    }

    fn without(isr: &[i32], broker: i32) -> Vec<i32> {
        isr.iter().copied().filter(|&r| r != broker).collect()
    }

    #[test]
    fn a_leader_leaving_the_isr_is_replaced_by_the_first_isr_member_in_replica_order() {
        let p = partition(&[1, 2, 3], &[1, 3, 2], 1);
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, false, 1)
            .target_isr(without(&p.isr, 1))
            .build(|r| r != 1)
            .expect("a change");
        assert_eq!((record.leader, record.isr, record.elr), (Some(2), Some(vec![3, 2]), None));
    }

    #[test]
    fn without_elr_the_last_isr_member_stays_and_the_partition_has_no_leader() {
        let p = partition(&[1, 2], &[1], 1);
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, false, 1).target_isr(vec![]).build(|r| r != 1).expect("a change");
        assert_eq!((record.leader, record.isr), (Some(-1), None));
    }

    #[test]
    fn with_elr_replicas_leaving_an_isr_below_min_isr_become_eligible_and_can_lead_again() {
        let p = partition(&[1, 2, 3], &[1, 2], 1);
        // min.insync.replicas 2: 1 leaves an ISR of 2, which drops to 1: 1 joins the ELR.
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, true, 2).target_isr(vec![2]).build(|r| r != 1).expect("a change");
        assert_eq!((record.leader, record.isr.clone(), record.elr.clone()), (Some(2), Some(vec![2]), Some(vec![1])));
        // 2 goes too: the ISR is empty, both are eligible, nobody leads.
        let p = PartitionImage { isr: vec![2], elr: vec![1], leader: 2, ..p };
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, true, 2).target_isr(vec![]).build(|r| r == 3).expect("a change");
        assert_eq!((record.leader, record.isr.clone(), record.elr.clone()), (Some(-1), Some(vec![]), Some(vec![1, 2])));
        // 1 comes back: elected from the ELR, it is the ISR; 3 (never in sync) is not considered.
        let p = PartitionImage { isr: vec![], elr: vec![1, 2], leader: -1, ..p };
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, true, 2).build(|r| r == 1 || r == 3).expect("a change");
        assert_eq!((record.leader, record.isr, record.elr), (Some(1), Some(vec![1]), Some(vec![2])));
    }

    #[test]
    fn an_unclean_election_takes_any_live_replica_only_when_allowed() {
        let p = partition(&[1, 2], &[1], -1);
        assert!(PartitionChangeBuilder::new(&p, Uuid::nil(), 0, false, 1).build(|r| r == 2).is_none(), "clean: nothing to do");
        let record = PartitionChangeBuilder::new(&p, Uuid::nil(), 0, false, 1)
            .election(Election::Unclean)
            .build(|r| r == 2)
            .expect("a change");
        assert_eq!((record.leader, record.isr), (Some(2), Some(vec![2])));
    }
}
