//! The group coordinator: consumer groups (classic and KIP-848), their
//! committed offsets, and their records in `__consumer_offsets`.
//!
//! Groups are sharded by their `__consumer_offsets` partition ([`shard`]): a
//! broker serves the groups of the partitions it leads, loaded when it
//! becomes their leader ([`GroupCoordinator::on_become_leader`]) and dropped
//! when it stops being one ([`GroupCoordinator::on_resign`]); other brokers'
//! groups are NOT_COORDINATOR. Each operation changes the group in memory
//! under its shard's lock, appends the records that describe the change to
//! the shard's partition, and answers once they are committed (below the high
//! watermark), so a failover or restart replays the topic and loses no
//! acknowledged commit; committed offsets become visible only then. A timer
//! ([`GroupCoordinator::tick`]) expires sessions, ends rebalance phases and
//! expires offsets of empty groups.

pub(crate) mod assignor;
pub(crate) mod classic;
pub(crate) mod consumer;
pub(crate) mod shard;
pub(crate) mod store;

pub(crate) use store::partition_for;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::config::GroupConfig;
use crate::error::{BrokerError, Result};
use crate::partition::Partition;
use classic::ClassicGroup;
use consumer::ConsumerGroup;
use shard::{Groups, Pending, Shard};
use store::{ClassicGroupValue, OffsetValue, StoredKey, StoredValue};

/// The internal topic holding groups and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Who sent a request: member records carry it.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The request header's client id.
    pub client_id: String,
    /// The client's address, as Kafka prints it (`/127.0.0.1`).
    pub client_host: String,
}

/// What the coordinator needs to know of topics: ids and partition counts.
/// Implemented where the coordinator is wired to the broker's topics (lib.rs).
pub(crate) trait TopicCatalog {
    /// A topic's id and partition count by name.
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)>;
    /// A topic's name and partition count by id.
    fn by_id(&self, id: Uuid) -> Option<(String, i32)>;
    /// The names a regex subscription may match: every topic but the
    /// internal ones, as Kafka's coordinator excludes them.
    fn names(&self) -> Vec<String>;
}

/// A group's membership: one of the two rebalance protocols.
#[allow(clippy::large_enum_variant)] // one per group, never moved on a hot path
pub(crate) enum Membership {
    /// JoinGroup/SyncGroup groups.
    Classic(ClassicGroup),
    /// KIP-848 ConsumerGroupHeartbeat groups.
    Consumer(ConsumerGroup),
}

/// A group: its membership and committed offsets.
pub(crate) struct Group {
    pub(crate) membership: Membership,
    pub(crate) offsets: BTreeMap<(String, i32), OffsetValue>,
    /// The classic group's record as last stored: what the group goes back to
    /// when storing a change fails.
    pub(crate) stored_classic: Option<ClassicGroupValue>,
    /// Commits appended and not yet committed, in append order: the offset
    /// after their records, and the offsets they commit.
    pub(crate) pending_offsets: Vec<(i64, Vec<PartitionOffset>)>,
}

impl Group {
    fn classic(now: i64) -> Group {
        Group::new(Membership::Classic(ClassicGroup::new(now)))
    }

    /// A group without offsets and with nothing stored yet.
    pub(crate) fn new(membership: Membership) -> Group {
        Group { membership, offsets: BTreeMap::new(), stored_classic: None, pending_offsets: Vec::new() }
    }

    /// True when no member is in the group.
    pub(crate) fn is_empty(&self) -> bool {
        match &self.membership {
            Membership::Classic(g) => g.is_empty(),
            Membership::Consumer(g) => g.is_empty(),
        }
    }

    /// A classic group nobody joined or committed to (a join that stopped at
    /// MEMBER_ID_REQUIRED and never came back): nothing worth keeping.
    pub(crate) fn is_unused(&self) -> bool {
        matches!(&self.membership, Membership::Classic(g) if g.is_empty() && g.generation == 0)
            && self.offsets.is_empty()
            && self.pending_offsets.is_empty()
    }

    /// Makes the pending commits whose records end at or before
    /// `committed_end` visible, oldest first.
    fn commit_pending(&mut self, committed_end: i64) {
        let done = self.pending_offsets.iter().take_while(|(end, _)| *end <= committed_end).count();
        for (_, offsets) in self.pending_offsets.drain(..done) {
            self.offsets.extend(offsets);
        }
    }

    /// Kafka's name for the group's state.
    pub(crate) fn state_name(&self) -> &'static str {
        match &self.membership {
            Membership::Classic(g) => g.state.name(),
            Membership::Consumer(g) => g.state_name(),
        }
    }

    /// The protocol type: `consumer` for consumer groups, empty for groups that
    /// only commit offsets.
    pub(crate) fn protocol_type(&self) -> String {
        match &self.membership {
            Membership::Classic(g) => g.protocol_type.clone().unwrap_or_default(),
            Membership::Consumer(_) => "consumer".to_string(),
        }
    }

    /// KIP-848's group type name.
    pub(crate) fn type_name(&self) -> &'static str {
        match &self.membership {
            Membership::Classic(_) => "classic",
            Membership::Consumer(_) => "consumer",
        }
    }

    /// The records describing how the group's membership changed since the
    /// last call: a classic group's whole record, a consumer group's records
    /// of each change.
    fn take_records(&mut self, id: &str) -> Vec<(StoredKey, Option<StoredValue>)> {
        match &mut self.membership {
            Membership::Classic(g) if g.dirty => {
                g.dirty = false;
                vec![(StoredKey::ClassicGroup(id.to_string()), Some(StoredValue::ClassicGroup(g.to_stored())))]
            }
            Membership::Classic(_) => Vec::new(),
            Membership::Consumer(g) => g.take_records(),
        }
    }

    /// Records of the group's whole state: its committed offsets and its
    /// membership as stored (moving it to another partition).
    fn copy_records(&self, id: &str) -> Vec<(StoredKey, Option<StoredValue>)> {
        let mut records: Vec<(StoredKey, Option<StoredValue>)> = match &self.membership {
            Membership::Consumer(g) => g.snapshot_records(),
            Membership::Classic(_) => self
                .stored_classic
                .iter()
                .map(|v| (StoredKey::ClassicGroup(id.to_string()), Some(StoredValue::ClassicGroup(v.clone()))))
                .collect(),
        };
        records.extend(self.offsets.iter().map(|((topic, partition), v)| {
            (StoredKey::Offset { group: id.to_string(), topic: topic.clone(), partition: *partition }, Some(StoredValue::Offset(v.clone())))
        }));
        records
    }

    /// Tombstones for the group's membership records (not its offsets).
    fn membership_tombstones(&self, id: &str) -> Vec<(StoredKey, Option<StoredValue>)> {
        let mut records = match &self.membership {
            Membership::Consumer(g) => g.tombstones(),
            Membership::Classic(_) => Vec::new(),
        };
        records.push((StoredKey::ClassicGroup(id.to_string()), None));
        records
    }

    /// Checks who may commit offsets: a member of the current generation (or
    /// member epoch), or anyone with generation -1 while the group is empty.
    fn check_commit(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> std::result::Result<(), ResponseError> {
        // An admin (or simple consumer) commit: any member id, while nobody is in
        // the group. With members, only they may commit.
        if generation < 0 && self.is_empty() {
            return Ok(());
        }
        match &self.membership {
            Membership::Classic(g) => {
                g.check_member(member_id, instance_id, generation)?;
                if g.state == classic::ClassicState::CompletingRebalance {
                    return Err(ResponseError::RebalanceInProgress);
                }
                Ok(())
            }
            Membership::Consumer(g) => g.check_member_epoch(member_id, generation),
        }
    }

    /// Topics the group's members are subscribed to (for OffsetDelete).
    fn subscribed_topics(&self) -> BTreeSet<String> {
        match &self.membership {
            Membership::Classic(g) => {
                let protocol = g.protocol.clone().unwrap_or_default();
                if g.protocol_type.as_deref() != Some("consumer") {
                    return BTreeSet::new();
                }
                g.members.values().flat_map(|m| subscription_topics(&m.metadata(&protocol))).collect()
            }
            Membership::Consumer(g) => g.subscribed_topics(),
        }
    }
}

/// The topics of an embedded consumer-protocol subscription.
pub(crate) fn subscription_topics(metadata: &Bytes) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    // Newer versions only append fields: read them as the newest we know.
    let version = bytes::Buf::get_i16(&mut buf).clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut buf, version)
        .map(|s| s.topics.into_iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

/// How a failed append to `__consumer_offsets` is answered, as Kafka's group
/// coordinator translates it: the client looks for the coordinator again
/// (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR) rather than taking the change
/// as done. `offsets`: an OffsetCommit, whose too-large batch is
/// INVALID_COMMIT_OFFSET_SIZE (UNKNOWN_SERVER_ERROR for group records).
pub(crate) fn append_error(error: ResponseError, offsets: bool) -> ResponseError {
    use ResponseError as E;
    match error {
        E::UnknownTopicOrPartition | E::NotEnoughReplicas | E::NotEnoughReplicasAfterAppend | E::RequestTimedOut => {
            E::CoordinatorNotAvailable
        }
        E::NotLeaderOrFollower | E::KafkaStorageError => E::NotCoordinator,
        E::MessageTooLarge | E::RecordListTooLarge | E::InvalidFetchSize if offsets => E::InvalidCommitOffsetSize,
        E::MessageTooLarge | E::RecordListTooLarge | E::InvalidFetchSize => E::UnknownServerError,
        other => other,
    }
}

/// A topic name and partition index.
pub(crate) type TopicPartition = (String, i32);

/// A partition's committed offset.
pub(crate) type PartitionOffset = (TopicPartition, OffsetValue);

/// The outcome of committing one partition's offset.
pub(crate) type PartitionResult = std::result::Result<(), ResponseError>;

/// A result per partition, or one error for the whole request.
pub(crate) type PartitionResults = std::result::Result<Vec<((String, i32), PartitionResult)>, ResponseError>;

/// The groups this broker coordinates: one [`Shard`] per `__consumer_offsets`
/// partition it leads (on one node: all of them). The shard map is locked
/// only to look a shard up; each shard locks its own groups.
pub struct GroupCoordinator {
    pub(crate) config: GroupConfig,
    shards: RwLock<HashMap<i32, Arc<Shard>>>,
    /// `__consumer_offsets`'s partition count (what group ids hash over); 0
    /// until the topic exists.
    partitions: AtomicI32,
    last_expiry_ms: Mutex<i64>,
}

impl GroupCoordinator {
    /// A coordinator with no groups.
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            shards: RwLock::new(HashMap::new()),
            partitions: AtomicI32::new(0),
            last_expiry_ms: Mutex::new(0),
        }
    }

    /// This broker became the leader of `partition` of `__consumer_offsets`
    /// (one of `partition_count`) at `leader_epoch` (Kafka's `onElection`):
    /// its groups are loaded, in the background when there is something to
    /// replay and a runtime to do it on; clients of its groups get
    /// COORDINATOR_LOAD_IN_PROGRESS meanwhile. A shard already loaded at this
    /// or a newer epoch is kept. `clock` is the time in ms: the load reads it
    /// when it starts and again when it is done, which is when the sessions
    /// of the members it loads start.
    pub fn on_become_leader(&self, partition: Arc<Partition>, leader_epoch: i32, partition_count: i32, clock: impl Fn() -> i64 + Send + 'static) {
        self.partitions.store(partition_count, Ordering::Relaxed);
        let index = partition.index;
        let current = self.shards.read().get(&index).cloned();
        if current.is_some_and(|s| s.leader_epoch >= leader_epoch && s.status() != shard::Status::Unloaded) {
            return;
        }
        let empty = partition.log_end_offset() <= partition.log_start_offset();
        let shard = Arc::new(Shard::new(partition, leader_epoch, partition_count));
        let replaced = self.shards.write().insert(index, Arc::clone(&shard));
        if let Some(old) = replaced {
            old.unload();
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !empty => {
                let config = self.config.clone();
                runtime.spawn_blocking(move || shard.load(&config, &clock));
            }
            // Failures are logged by the load and answered NOT_COORDINATOR.
            _ => drop(shard.load(&self.config, &clock)),
        }
    }

    /// This broker stopped leading partition `partition_index` of
    /// `__consumer_offsets` at `leader_epoch` (Kafka's `onResignation`): its
    /// groups are dropped and their clients get NOT_COORDINATOR. A
    /// resignation older than the shard's epoch changes nothing.
    pub fn on_resign(&self, partition_index: i32, leader_epoch: i32) {
        let mut shards = self.shards.write();
        if shards.get(&partition_index).is_some_and(|s| s.leader_epoch <= leader_epoch) {
            if let Some(shard) = shards.remove(&partition_index) {
                drop(shards);
                shard.unload();
            }
        }
    }

    /// Waits until no shard is loading; the first load failure, if any (start-up
    /// refuses to serve groups it could not read, as before sharding). Then
    /// moves the groups earlier versions placed elsewhere, so that on one
    /// node they are where Kafka looks before the first request.
    pub fn wait_loaded(&self) -> Result<()> {
        for shard in self.shards() {
            shard.wait_loaded().map_err(|reason| BrokerError::kafka(ResponseError::CorruptMessage, reason))?;
        }
        self.migrate_misplaced(crate::now_ms());
        Ok(())
    }

    /// Moves the groups that earlier Potok versions wrote to the partition of
    /// the masked hash ([`store::legacy_partition_for`]) to the one Kafka
    /// places them in, where both are led here: the group's offsets and
    /// metadata are written to the target partition as any change is, and
    /// once they are committed there its records in the old partition are
    /// tombstoned. A group the target already has (used since the upgrade,
    /// or a move interrupted after the copy) keeps the target's state and
    /// only the old records are tombstoned. A target another broker leads is
    /// logged once and the records are left in place. Every step can be
    /// repeated: a crash between copy and tombstones copies nothing twice
    /// that differs. Runs after loads and with the timers.
    pub(crate) fn migrate_misplaced(&self, now: i64) {
        let shards: HashMap<i32, Arc<Shard>> = self.shards.read().clone();
        let mut sorted: Vec<&Arc<Shard>> = shards.values().collect();
        sorted.sort_by_key(|s| s.index);
        for from in sorted {
            let Some(mut misplaced) = from.misplaced() else { continue };
            misplaced.retain(|id, m| !Self::migrate_group(from, shards.get(&m.target).map(|s| s.as_ref()), id, m, now));
            from.misplaced_done(&misplaced);
        }
    }

    /// One step (or more) of a misplaced group's move; true once it is done.
    fn migrate_group(from: &Shard, to: Option<&Shard>, id: &str, m: &mut shard::Misplaced, now: i64) -> bool {
        use shard::MovePhase;
        let (p, q) = (from.index, m.target);
        loop {
            match &m.phase {
                MovePhase::Copy => {
                    let Some(groups) = to.and_then(|s| s.lock().ok()) else {
                        if !m.reported {
                            m.reported = true;
                            tracing::info!(group = %id, "group {id} is stored in {OFFSETS_TOPIC}-{p} but Kafka places it in -{q}, which this broker does not serve now; its records stay in -{p} until it does");
                        }
                        return false;
                    };
                    let (Some(to), Some(group)) = (to, m.group.as_ref()) else { return false };
                    let mut groups = groups;
                    if let Some(own) = groups.get(id).filter(|g| !g.is_unused()) {
                        // The target's own state wins; the same offsets there are
                        // an interrupted move finishing.
                        m.phase = MovePhase::Tombstone { superseded: own.offsets != group.offsets };
                        continue;
                    }
                    match to.write(group.copy_records(id), now) {
                        Ok(None) => {
                            groups.insert(id.to_string(), m.group.take().expect("the group"));
                            m.phase = MovePhase::Tombstone { superseded: false };
                        }
                        Ok(Some(pending)) => {
                            m.phase = MovePhase::Copying(pending);
                            return false;
                        }
                        Err(e) => {
                            if !std::mem::replace(&mut m.failure_logged, true) {
                                tracing::warn!(group = %id, error = %e, "cannot copy group {id} to {OFFSETS_TOPIC}-{q}; its records stay in -{p} and the move is retried");
                            }
                            return false;
                        }
                    }
                }
                MovePhase::Copying(pending) => match pending.check() {
                    None => return false,
                    Some(Err(e)) => {
                        if !std::mem::replace(&mut m.failure_logged, true) {
                            tracing::warn!(group = %id, error = %e, "the copy of group {id} to {OFFSETS_TOPIC}-{q} was not committed; its records stay in -{p} and the move is retried");
                        }
                        m.phase = MovePhase::Copy;
                        return false;
                    }
                    Some(Ok(())) => {
                        // Committed: the target has it, here or at its next leader's load.
                        if let Some(mut groups) = to.and_then(|s| s.lock().ok()) {
                            if let Some(group) = m.group.take() {
                                groups.entry(id.to_string()).or_insert(group);
                            }
                        }
                        m.phase = MovePhase::Tombstone { superseded: false };
                    }
                },
                MovePhase::Tombstone { superseded } => {
                    let superseded = *superseded;
                    let records: Vec<(StoredKey, Option<StoredValue>)> = m.live.iter().map(|k| (k.clone(), None)).collect();
                    return match from.write(records, now) {
                        Ok(_) => {
                            if superseded {
                                tracing::warn!(group = %id, "group {id} already has state in {OFFSETS_TOPIC}-{q} (Kafka's placement), used since the upgrade: it is kept, and the older records in -{p} are dropped");
                            } else {
                                tracing::info!(group = %id, "group {id} moved from {OFFSETS_TOPIC}-{p} to -{q} (Kafka's placement)");
                            }
                            true
                        }
                        Err(e) => {
                            if !std::mem::replace(&mut m.failure_logged, true) {
                                tracing::warn!(group = %id, error = %e, "cannot remove the moved records of group {id} from {OFFSETS_TOPIC}-{p}; retried");
                            }
                            false
                        }
                    };
                }
            }
        }
    }

    /// Every shard, by partition.
    fn shards(&self) -> Vec<Arc<Shard>> {
        let mut shards: Vec<Arc<Shard>> = self.shards.read().values().cloned().collect();
        shards.sort_by_key(|s| s.index);
        shards
    }

    /// The shard of a group: COORDINATOR_NOT_AVAILABLE while
    /// `__consumer_offsets` does not exist, NOT_COORDINATOR when another
    /// broker leads the group's partition.
    pub(crate) fn shard(&self, group_id: &str) -> std::result::Result<Arc<Shard>, ResponseError> {
        let count = self.partitions.load(Ordering::Relaxed);
        if count <= 0 {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let index = store::partition_for(group_id, count);
        let legacy = store::legacy_partition_for(group_id, count);
        let shards = self.shards.read();
        let shard = shards.get(&index).cloned().ok_or(ResponseError::NotCoordinator)?;
        // Not answered as a group without offsets while its records from an
        // earlier version are still in the old partition (or it is loading).
        if legacy != index && shards.get(&legacy).is_some_and(|old| old.holds_unmoved(group_id)) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Ok(shard)
    }

    /// How long a write may take to be committed (`offsets.commit.timeout.ms`).
    fn commit_timeout(&self) -> Duration {
        Duration::from_millis(self.config.offsets_commit_timeout_ms)
    }

    /// The classic group `id`, created (empty) if `create` and missing. Errors
    /// with INCONSISTENT_GROUP_PROTOCOL for a non-empty consumer group; an empty
    /// one is turned into a classic group.
    pub(crate) fn classic_group<'a>(
        groups: &'a mut Groups,
        id: &str,
        create: bool,
        now: i64,
    ) -> std::result::Result<&'a mut ClassicGroup, ResponseError> {
        if !groups.contains_key(id) {
            if !create {
                return Err(ResponseError::UnknownMemberId);
            }
            groups.insert(id.to_string(), Group::classic(now));
        }
        let group = groups.get_mut(id).ok_or(ResponseError::UnknownMemberId)?;
        if matches!(group.membership, Membership::Consumer(_)) {
            if !create || !group.is_empty() {
                return Err(ResponseError::InconsistentGroupProtocol);
            }
            group.membership = Membership::Classic(ClassicGroup::new(now));
        }
        match &mut group.membership {
            Membership::Classic(g) => Ok(g),
            Membership::Consumer(_) => Err(ResponseError::InconsistentGroupProtocol),
        }
    }

    /// Commits offsets for a group. `generation` is the member epoch for
    /// consumer groups; -1 with an empty member id is an admin commit (only
    /// for empty groups). Answers once the records are committed (below the
    /// high watermark) and only then makes them visible to OffsetFetch.
    /// Returns a result per partition, or one for all.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn commit_offsets(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<((String, i32), OffsetValue)>,
        topics: &(dyn TopicCatalog + Sync),
        now: i64,
    ) -> PartitionResults {
        let shard = self.shard(group_id)?;
        let (results, pending) = {
            let mut groups = shard.lock()?;
            let created = !groups.contains_key(group_id);
            if created {
                if generation >= 0 {
                    // Kafka: GROUP_ID_NOT_FOUND from OffsetCommit v9, ILLEGAL_GENERATION
                    // before (the handler maps it).
                    return Err(ResponseError::GroupIdNotFound);
                }
                groups.insert(group_id.to_string(), Group::classic(now));
            }
            let Some(group) = groups.get_mut(group_id) else { return Err(ResponseError::CoordinatorNotAvailable) };
            group.check_commit(member_id, instance_id, generation)?;
            let mut results = Vec::with_capacity(offsets.len());
            let mut records = Vec::new();
            let mut accepted = Vec::new();
            for ((topic, partition), value) in offsets {
                let known = topics.by_name(&topic).is_some_and(|(_, count)| (0..count).contains(&partition));
                let result = if !known {
                    Err(ResponseError::UnknownTopicOrPartition)
                } else if value.metadata.len() > self.config.offset_metadata_max_bytes {
                    Err(ResponseError::OffsetMetadataTooLarge)
                } else {
                    records.push((
                        StoredKey::Offset { group: group_id.to_string(), topic: topic.clone(), partition },
                        Some(StoredValue::Offset(value.clone())),
                    ));
                    accepted.push(((topic.clone(), partition), value));
                    Ok(())
                };
                results.push(((topic, partition), result));
            }
            match shard.write(records, now) {
                Err(e) => {
                    tracing::error!(group = %group_id, error = %e, "cannot store committed offsets");
                    if created {
                        groups.remove(group_id);
                    }
                    return Ok(failed(results, append_error(e.response_error(), true)));
                }
                Ok(None) => {
                    group.commit_pending(i64::MAX);
                    group.offsets.extend(accepted);
                    return Ok(results);
                }
                Ok(Some(pending)) => {
                    group.pending_offsets.push((pending.required_offset, accepted));
                    (results, pending)
                }
            }
        };
        let outcome = pending.committed(self.commit_timeout()).await;
        let mut groups = shard.groups();
        let group = groups.get_mut(group_id);
        match outcome {
            Ok(()) => {
                if let Some(group) = group {
                    group.commit_pending(pending.required_offset);
                }
                Ok(results)
            }
            Err(e) => {
                tracing::warn!(group = %group_id, error = %e, "committed offsets were not replicated");
                if let Some(group) = group {
                    group.pending_offsets.retain(|(end, _)| *end != pending.required_offset);
                }
                Ok(failed(results, append_error(e.response_error(), true)))
            }
        }
    }

    /// The committed offsets of a group: the given partitions, or all when None.
    pub(crate) fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> std::result::Result<Vec<(TopicPartition, Option<OffsetValue>)>, ResponseError> {
        let shard = self.shard(group_id)?;
        let groups = shard.lock()?;
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        Ok(match partitions {
            Some(list) => list
                .into_iter()
                .map(|tp| {
                    let value = offsets.and_then(|o| o.get(&tp)).cloned();
                    (tp, value)
                })
                .collect(),
            None => offsets
                .map(|o| o.iter().map(|(tp, v)| (tp.clone(), Some(v.clone()))).collect())
                .unwrap_or_default(),
        })
    }

    /// Checks a KIP-848 member before it reads offsets (OffsetFetch v9+).
    pub(crate) fn check_fetch_member(&self, group_id: &str, member_id: &str, member_epoch: i32) -> std::result::Result<(), ResponseError> {
        let shard = self.shard(group_id)?;
        let groups = shard.lock()?;
        match groups.get(group_id).map(|g| &g.membership) {
            Some(Membership::Consumer(g)) if !member_id.is_empty() => g.check_member_epoch(member_id, member_epoch),
            _ => Ok(()),
        }
    }

    /// Runs `f` over the groups of every shard this broker serves: Err when a
    /// shard is still loading (COORDINATOR_LOAD_IN_PROGRESS, as Kafka's ListGroups).
    pub(crate) fn each_group(&self, mut f: impl FnMut(&str, &Group)) -> std::result::Result<(), ResponseError> {
        let mut loading = false;
        for shard in self.shards() {
            match shard.lock() {
                Ok(groups) => groups.iter().for_each(|(id, g)| f(id, g)),
                Err(ResponseError::CoordinatorLoadInProgress) => loading = true,
                Err(_) => {}
            }
        }
        if loading {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Ok(())
    }

    /// Deletes empty groups with their offsets, answering once the tombstones
    /// are committed.
    pub(crate) async fn delete_groups(&self, ids: &[String], now: i64) -> Vec<(String, PartitionResult)> {
        let mut results = Vec::with_capacity(ids.len());
        let mut waiting = Vec::new();
        for id in ids {
            let result = self.delete_group(id, now).map(|pending| {
                waiting.extend(pending.map(|p| (results.len(), p)));
            });
            results.push((id.clone(), result));
        }
        for (i, pending) in waiting {
            if let Err(e) = pending.committed(self.commit_timeout()).await {
                results[i].1 = Err(append_error(e.response_error(), false));
            }
        }
        results
    }

    fn delete_group(&self, id: &str, now: i64) -> std::result::Result<Option<Pending>, ResponseError> {
        // Without __consumer_offsets there are no groups.
        let shard = self.shard(id).map_err(|e| match e {
            ResponseError::CoordinatorNotAvailable => ResponseError::GroupIdNotFound,
            e => e,
        })?;
        let mut groups = shard.lock()?;
        let group = match groups.get(id) {
            None => return Err(ResponseError::GroupIdNotFound),
            Some(g) if !g.is_empty() => return Err(ResponseError::NonEmptyGroup),
            Some(g) => g,
        };
        let mut records = tombstones(id, group.offsets.keys());
        records.extend(group.membership_tombstones(id));
        let pending = shard.write(records, now).map_err(|e| append_error(e.response_error(), false))?;
        groups.remove(id);
        Ok(pending)
    }

    /// Forgets every group's committed offsets of a deleted topic, as Kafka
    /// does, so a topic created again under the name starts without them.
    /// `__consumer_offsets` itself deleted: every shard is unloaded.
    pub(crate) fn forget_topic(&self, topic: &str, now: i64) {
        if topic == OFFSETS_TOPIC {
            self.partitions.store(0, Ordering::Relaxed);
            let shards = std::mem::take(&mut *self.shards.write());
            shards.into_values().for_each(|s| s.unload());
            return;
        }
        for shard in self.shards() {
            let Ok(mut groups) = shard.lock() else { continue };
            for (id, group) in groups.iter_mut() {
                let gone: Vec<(String, i32)> = group.offsets.keys().filter(|(t, _)| t == topic).cloned().collect();
                if gone.is_empty() {
                    continue;
                }
                match shard.write(tombstones(id, gone.iter()), now) {
                    Ok(_) => {
                        for tp in &gone {
                            group.offsets.remove(tp);
                        }
                    }
                    Err(e) => tracing::error!(group = %id, %topic, error = %e, "cannot drop offsets of a deleted topic"),
                }
            }
        }
    }

    /// Deletes committed offsets of a group, unless its members subscribe to
    /// the topic; answers once the tombstones are committed.
    pub(crate) async fn delete_offsets(&self, group_id: &str, partitions: Vec<(String, i32)>, now: i64) -> PartitionResults {
        let (results, pending) = {
            let shard = self.shard(group_id)?;
            let mut groups = shard.lock()?;
            let Some(group) = groups.get_mut(group_id) else { return Err(ResponseError::GroupIdNotFound) };
            let subscribed = group.subscribed_topics();
            let mut results = Vec::new();
            let mut removed = Vec::new();
            for tp in partitions {
                if subscribed.contains(&tp.0) {
                    results.push((tp, Err(ResponseError::GroupSubscribedToTopic)));
                } else {
                    removed.push(tp.clone());
                    results.push((tp, Ok(())));
                }
            }
            let pending = shard
                .write(tombstones(group_id, removed.iter()), now)
                .map_err(|e| append_error(e.response_error(), false))?;
            for tp in &removed {
                group.offsets.remove(tp);
            }
            (results, pending)
        };
        if let Some(pending) = pending {
            pending.committed(self.commit_timeout()).await.map_err(|e| append_error(e.response_error(), false))?;
        }
        Ok(results)
    }

    /// Completes the transactional offset commits (TxnOffsetCommit) that
    /// `producer_id` left pending in `__consumer_offsets` partition
    /// `offsets_partition`, once its COMMIT (`commit`) or ABORT marker is
    /// appended there: committed ones become the groups' offsets, aborted ones
    /// are dropped. Called by WriteTxnMarkers after the marker is appended.
    ///
    /// Skeleton: pending transactional offsets are not kept yet.
    #[allow(dead_code)] // called by WriteTxnMarkers once it appends markers
    pub(crate) fn complete_txn_offsets(&self, offsets_partition: i32, producer_id: i64, commit: bool) {
        let _ = (offsets_partition, producer_id, commit);
    }

    /// Runs the timers of every served shard: sessions, rebalance deadlines,
    /// offset expiry.
    pub fn tick(&self, now: i64) {
        let expire = {
            let mut last = self.last_expiry_ms.lock();
            let due = now - *last >= self.config.offsets_retention_check_interval_ms as i64;
            if due {
                *last = now;
            }
            due
        };
        for shard in self.shards() {
            let Ok(mut groups) = shard.lock() else { continue };
            for (id, group) in groups.iter_mut() {
                match &mut group.membership {
                    Membership::Classic(g) => g.tick(&self.config, now),
                    Membership::Consumer(g) => g.tick(&self.config, now),
                }
                // A failure is logged and undone there (a classic group); the
                // members learn of it on their next request.
                let _ = shard.persist_membership(id, group, now);
            }
            groups.retain(|_, g| !g.is_unused());
            if expire {
                self.expire_offsets(&shard, &mut groups, now);
            }
        }
        self.migrate_misplaced(now);
    }

    /// Drops offsets of empty groups older than `offsets.retention.minutes`
    /// (counted from when the group became empty, or from the commit for
    /// groups that only commit), and groups left with nothing.
    fn expire_offsets(&self, shard: &Shard, groups: &mut Groups, now: i64) {
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        for (id, group) in groups.iter_mut() {
            if !group.is_empty() {
                continue;
            }
            let empty_since = match &group.membership {
                Membership::Classic(g) if g.protocol_type.is_some() => Some(g.state_timestamp),
                Membership::Consumer(g) => Some(g.empty_since()),
                Membership::Classic(_) => None,
            };
            let expired: Vec<(String, i32)> = group
                .offsets
                .iter()
                .filter(|(_, v)| empty_since.unwrap_or(v.commit_timestamp).max(v.commit_timestamp) + retention <= now)
                .map(|(tp, _)| tp.clone())
                .collect();
            if expired.is_empty() {
                continue;
            }
            let mut records = tombstones(id, expired.iter());
            let all_gone = expired.len() == group.offsets.len() && group.pending_offsets.is_empty();
            if all_gone {
                records.extend(group.membership_tombstones(id));
            }
            if let Err(e) = shard.write(records, now) {
                tracing::error!(group = %id, error = %e, "cannot expire offsets");
                continue;
            }
            tracing::info!(group = %id, partitions = expired.len(), "expired committed offsets");
            for tp in &expired {
                group.offsets.remove(tp);
            }
            if all_gone {
                dead.push(id.clone());
            }
        }
        for id in dead {
            groups.remove(&id);
        }
    }
}

#[cfg(test)]
impl GroupCoordinator {
    /// Leads every partition at epoch 0 and waits for their loads (tests).
    pub(crate) fn load_partitions(&self, partitions: Vec<Arc<Partition>>, now: i64) -> Result<()> {
        let count = partitions.len() as i32;
        for partition in partitions {
            self.on_become_leader(partition, 0, count, move || now);
        }
        self.wait_loaded()
    }

    /// Runs `f` on the groups of the shard `group_id` belongs to (tests).
    pub(crate) fn with_groups<T>(&self, group_id: &str, f: impl FnOnce(&mut Groups) -> T) -> T {
        let shard = self.shard(group_id).expect("a shard");
        let mut groups = shard.groups();
        f(&mut groups)
    }
}

/// Runs a coordinator future to its end on a runtime of its own (tests).
#[cfg(test)]
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// Every accepted partition's result replaced by `code`.
fn failed(results: Vec<((String, i32), PartitionResult)>, code: ResponseError) -> Vec<((String, i32), PartitionResult)> {
    results.into_iter().map(|(tp, r)| (tp, r.and(Err(code)))).collect()
}

fn tombstones<'a>(group: &str, partitions: impl Iterator<Item = &'a (String, i32)>) -> Vec<(StoredKey, Option<StoredValue>)> {
    partitions
        .map(|(topic, partition)| {
            (StoredKey::Offset { group: group.to_string(), topic: topic.clone(), partition: *partition }, None)
        })
        .collect()
}

pub(crate) fn corrupt(offset: i64, reason: store::DecodeError) -> BrokerError {
    BrokerError::kafka(ResponseError::CorruptMessage, format!("corrupt group record at offset {offset}: {reason}"))
}

/// Applies one replayed record.
pub(crate) fn apply_stored(groups: &mut Groups, key: StoredKey, value: Option<StoredValue>, now: i64) {
    let id = key.group().to_string();
    match (key, value) {
        (StoredKey::Offset { topic, partition, .. }, Some(StoredValue::Offset(v))) => {
            groups.entry(id).or_insert_with(|| Group::classic(now)).offsets.insert((topic, partition), v);
        }
        (StoredKey::Offset { topic, partition, .. }, _) => {
            if let Some(g) = groups.get_mut(&id) {
                g.offsets.remove(&(topic, partition));
            }
        }
        (StoredKey::ClassicGroup(_), Some(StoredValue::ClassicGroup(v))) => {
            let group = groups.entry(id).or_insert_with(|| Group::classic(now));
            group.stored_classic = Some(v.clone());
            group.membership = Membership::Classic(ClassicGroup::restore(v, now));
        }
        (StoredKey::ClassicGroup(_) | StoredKey::ConsumerGroup(_), None) => {
            groups.remove(&id);
        }
        (
            key @ (StoredKey::ConsumerGroup(_)
            | StoredKey::ConsumerMember { .. }
            | StoredKey::TargetAssignmentEpoch(_)
            | StoredKey::TargetAssignment { .. }
            | StoredKey::CurrentAssignment { .. }),
            value,
        ) => {
            if value.is_none() {
                // A tombstone changes only a consumer group; it never creates one.
                if let Some(Group { membership: Membership::Consumer(g), .. }) = groups.get_mut(&id) {
                    g.replay(key, value);
                }
                return;
            }
            let group = groups.entry(id.clone()).or_insert_with(|| Group::classic(now));
            if !matches!(group.membership, Membership::Consumer(_)) {
                group.membership = Membership::Consumer(ConsumerGroup::new(&id, now));
            }
            if let Membership::Consumer(g) = &mut group.membership {
                g.replay(key, value);
            }
        }
        (key, value) => tracing::warn!(?key, ?value, "group record with a mismatched value skipped"),
    }
}
