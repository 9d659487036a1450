//! The group coordinator: consumer groups (classic and KIP-848), their
//! committed offsets, and their records in `__consumer_offsets`.
//!
//! Every group lives in one map behind one lock; each operation changes the
//! group in memory, then appends the records that describe the change to the
//! group's `__consumer_offsets` partition before it answers, so a restart
//! replays the topic ([`GroupCoordinator::load`]) and loses no acknowledged
//! commit. A timer ([`GroupCoordinator::tick`]) expires sessions, ends
//! rebalance phases and expires offsets of empty groups.

pub(crate) mod assignor;
pub(crate) mod classic;
pub(crate) mod consumer;
pub(crate) mod store;

pub(crate) use store::partition_for;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use records::Compression;
use parking_lot::{Mutex, MutexGuard, RwLock};
use uuid::Uuid;

use crate::config::GroupConfig;
use crate::error::{BrokerError, Result};
use crate::partition::Partition;
use classic::ClassicGroup;
use consumer::ConsumerGroup;
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
}

impl Group {
    fn classic(now: i64) -> Group {
        Group::new(Membership::Classic(ClassicGroup::new(now)))
    }

    /// A group without offsets and with nothing stored yet.
    pub(crate) fn new(membership: Membership) -> Group {
        Group { membership, offsets: BTreeMap::new(), stored_classic: None }
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
        matches!(&self.membership, Membership::Classic(g) if g.is_empty() && g.generation == 0) && self.offsets.is_empty()
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

/// The outcome of committing one partition's offset.
pub(crate) type PartitionResult = std::result::Result<(), ResponseError>;

/// A result per partition, or one error for the whole request.
pub(crate) type PartitionResults = std::result::Result<Vec<((String, i32), PartitionResult)>, ResponseError>;

/// The groups this broker coordinates (on one node: all of them).
pub struct GroupCoordinator {
    pub(crate) config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    /// `__consumer_offsets` partitions; empty until the topic exists.
    topic: RwLock<Vec<Arc<Partition>>>,
    last_expiry_ms: Mutex<i64>,
}

impl GroupCoordinator {
    /// A coordinator with no groups.
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: Mutex::new(HashMap::new()),
            topic: RwLock::new(Vec::new()),
            last_expiry_ms: Mutex::new(0),
        }
    }

    /// True once `__consumer_offsets` is hosted.
    pub(crate) fn has_topic(&self) -> bool {
        !self.topic.read().is_empty()
    }

    /// Replays `__consumer_offsets` into the group map and starts writing to it.
    pub fn load(&self, partitions: Vec<Arc<Partition>>, now: i64) -> Result<()> {
        let mut groups = self.groups.lock();
        let mut records = 0usize;
        for partition in &partitions {
            let read = |offset| partition.read(offset, 1 << 20);
            let replay = |header: &records::BatchHeader, batch: Vec<records::RawRecord>| {
                for record in batch {
                    let offset = record.offset(header);
                    let Some(key) = record.key.filter(|_| !header.is_control()) else { continue };
                    let key = StoredKey::decode(key).map_err(|e| corrupt(offset, e))?;
                    let Some(key) = key else { continue };
                    let value = match record.value {
                        Some(v) => Some(
                            StoredValue::decode(&key, v).map_err(|e| corrupt(offset, e))?,
                        ),
                        None => None,
                    };
                    apply_stored(&mut groups, key, value, now);
                    records += 1;
                }
                Ok(())
            };
            crate::record_batch::scan(read, partition.log_start_offset(), partition.high_watermark(), replay)
                .map_err(|e| BrokerError::kafka(e.response_error(), format!("{}-{}: {e}", partition.topic, partition.index)))?;
        }
        for group in groups.values_mut() {
            if let Membership::Consumer(g) = &mut group.membership {
                g.loaded(&self.config, now);
            }
        }
        *self.topic.write() = partitions;
        tracing::info!(groups = groups.len(), records, "loaded groups from {OFFSETS_TOPIC}");
        Ok(())
    }

    /// Locks the group map.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock()
    }

    /// Appends records for one group to its `__consumer_offsets` partition.
    pub(crate) fn write(&self, group: &str, records: Vec<(StoredKey, Option<StoredValue>)>, now: i64) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let topic = self.topic.read();
        if topic.is_empty() {
            return Err(BrokerError::kafka(ResponseError::CoordinatorNotAvailable, format!("{OFFSETS_TOPIC} does not exist yet")));
        }
        let partition = &topic[store::partition_for(group, topic.len() as i32) as usize];
        let entries = records.into_iter().map(|(key, value)| (Some(key.encode()), value.map(|v| v.encode()), now));
        let mut buf = crate::record_batch::encode(entries, Compression::None).map_err(|e| {
            BrokerError::kafka(ResponseError::UnknownServerError, format!("cannot encode group records: {e}"))
        })?;
        partition.append(&mut buf, now)?;
        Ok(())
    }

    /// Writes the records of a group's membership changes, in one append. When
    /// the append fails, a classic group goes back to its last stored record
    /// (members waiting in JoinGroup/SyncGroup get the error and rejoin); a
    /// consumer group is rolled back by its heartbeat, which holds its state
    /// from before, and keeps the records to write them with the next change.
    /// Errors with the code the client gets ([`append_error`]).
    pub(crate) fn persist_membership(&self, id: &str, group: &mut Group, now: i64) -> std::result::Result<(), ResponseError> {
        let records = group.take_records(id);
        let classic = records.iter().find_map(|(_, value)| match value {
            Some(StoredValue::ClassicGroup(v)) => Some(v.clone()),
            _ => None,
        });
        // A consumer group's records are kept for a retry: a timer's change
        // (a session expiry) has no caller to undo it.
        let retry = if matches!(group.membership, Membership::Consumer(_)) { records.clone() } else { Vec::new() };
        match self.write(id, records, now) {
            Ok(()) => {
                if classic.is_some() {
                    group.stored_classic = classic;
                }
                if let Membership::Classic(g) = &mut group.membership {
                    g.release_syncs();
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(group = %id, error = %e, "cannot store group metadata; the change is undone");
                let code = append_error(e.response_error(), false);
                match &mut group.membership {
                    Membership::Classic(g) => {
                        g.fail_waiting(code);
                        let restored = match &group.stored_classic {
                            Some(v) => ClassicGroup::restore(v.clone(), now),
                            None => ClassicGroup::new(now),
                        };
                        group.membership = Membership::Classic(restored);
                    }
                    Membership::Consumer(g) => g.requeue_records(retry),
                }
                Err(code)
            }
        }
    }

    /// After a classic group operation: stores the group if it changed (see
    /// [`Self::persist_membership`]) and forgets a classic group that never got
    /// a member or an offset.
    pub(crate) fn finish_classic(
        &self,
        groups: &mut HashMap<String, Group>,
        id: &str,
        now: i64,
    ) -> std::result::Result<(), ResponseError> {
        let Some(group) = groups.get_mut(id) else { return Ok(()) };
        let result = self.persist_membership(id, group, now);
        if group.is_unused() {
            groups.remove(id);
        }
        result
    }

    /// The classic group `id`, created (empty) if `create` and missing. Errors
    /// with INCONSISTENT_GROUP_PROTOCOL for a non-empty consumer group; an empty
    /// one is turned into a classic group.
    pub(crate) fn classic_group<'a>(
        groups: &'a mut HashMap<String, Group>,
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
    /// for empty groups). Returns a result per partition, or one for all.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_offsets(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<((String, i32), OffsetValue)>,
        topics: &dyn TopicCatalog,
        now: i64,
    ) -> PartitionResults {
        let mut groups = self.groups.lock();
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
        if let Err(e) = self.write(group_id, records, now) {
            tracing::error!(group = %group_id, error = %e, "cannot store committed offsets");
            let code = append_error(e.response_error(), true);
            if created {
                groups.remove(group_id);
            }
            return Ok(results.into_iter().map(|(tp, r)| (tp, r.and(Err(code)))).collect());
        }
        group.offsets.extend(accepted);
        Ok(results)
    }

    /// The committed offsets of a group: the given partitions, or all when None.
    pub(crate) fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<((String, i32), Option<OffsetValue>)> {
        let groups = self.groups.lock();
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        match partitions {
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
        }
    }

    /// Checks a KIP-848 member before it reads offsets (OffsetFetch v9+).
    pub(crate) fn check_fetch_member(&self, group_id: &str, member_id: &str, member_epoch: i32) -> std::result::Result<(), ResponseError> {
        let groups = self.groups.lock();
        match groups.get(group_id).map(|g| &g.membership) {
            Some(Membership::Consumer(g)) if !member_id.is_empty() => g.check_member_epoch(member_id, member_epoch),
            _ => Ok(()),
        }
    }

    /// Deletes empty groups with their offsets.
    pub(crate) fn delete_groups(&self, ids: &[String], now: i64) -> Vec<(String, PartitionResult)> {
        let mut groups = self.groups.lock();
        ids.iter()
            .map(|id| {
                let result = match groups.get(id) {
                    None => Err(ResponseError::GroupIdNotFound),
                    Some(g) if !g.is_empty() => Err(ResponseError::NonEmptyGroup),
                    Some(g) => {
                        let mut records = tombstones(id, g.offsets.keys());
                        records.extend(g.membership_tombstones(id));
                        match self.write(id, records, now) {
                            Ok(()) => {
                                groups.remove(id);
                                Ok(())
                            }
                            Err(e) => Err(append_error(e.response_error(), false)),
                        }
                    }
                };
                (id.clone(), result)
            })
            .collect()
    }

    /// Forgets every group's committed offsets of a deleted topic, as Kafka
    /// does, so a topic created again under the name starts without them.
    pub(crate) fn forget_topic(&self, topic: &str, now: i64) {
        let mut groups = self.groups.lock();
        for (id, group) in groups.iter_mut() {
            let gone: Vec<(String, i32)> = group.offsets.keys().filter(|(t, _)| t == topic).cloned().collect();
            if gone.is_empty() {
                continue;
            }
            match self.write(id, tombstones(id, gone.iter()), now) {
                Ok(()) => {
                    for tp in &gone {
                        group.offsets.remove(tp);
                    }
                }
                Err(e) => tracing::error!(group = %id, %topic, error = %e, "cannot drop offsets of a deleted topic"),
            }
        }
    }

    /// Deletes committed offsets of a group, unless its members subscribe to the topic.
    pub(crate) fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
        now: i64,
    ) -> PartitionResults {
        let mut groups = self.groups.lock();
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
        self.write(group_id, tombstones(group_id, removed.iter()), now)
            .map_err(|e| append_error(e.response_error(), false))?;
        for tp in &removed {
            group.offsets.remove(tp);
        }
        Ok(results)
    }

    /// Runs the timers: sessions, rebalance deadlines, offset expiry.
    pub fn tick(&self, now: i64) {
        let mut groups = self.groups.lock();
        for (id, group) in groups.iter_mut() {
            match &mut group.membership {
                Membership::Classic(g) => g.tick(&self.config, now),
                Membership::Consumer(g) => g.tick(&self.config, now),
            }
            // A failure is logged and undone there (a classic group); the
            // members learn of it on their next request.
            let _ = self.persist_membership(id, group, now);
        }
        groups.retain(|_, g| !g.is_unused());
        let mut last = self.last_expiry_ms.lock();
        if now - *last >= self.config.offsets_retention_check_interval_ms as i64 {
            *last = now;
            self.expire_offsets(&mut groups, now);
        }
    }

    /// Drops offsets of empty groups older than `offsets.retention.minutes`
    /// (counted from when the group became empty, or from the commit for
    /// groups that only commit), and groups left with nothing.
    fn expire_offsets(&self, groups: &mut HashMap<String, Group>, now: i64) {
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
            let all_gone = expired.len() == group.offsets.len();
            if all_gone {
                records.extend(group.membership_tombstones(id));
            }
            if let Err(e) = self.write(id, records, now) {
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

fn tombstones<'a>(group: &str, partitions: impl Iterator<Item = &'a (String, i32)>) -> Vec<(StoredKey, Option<StoredValue>)> {
    partitions
        .map(|(topic, partition)| {
            (StoredKey::Offset { group: group.to_string(), topic: topic.clone(), partition: *partition }, None)
        })
        .collect()
}

fn corrupt(offset: i64, reason: store::DecodeError) -> BrokerError {
    BrokerError::kafka(ResponseError::CorruptMessage, format!("corrupt group record at offset {offset}: {reason}"))
}

/// Applies one replayed record.
fn apply_stored(groups: &mut HashMap<String, Group>, key: StoredKey, value: Option<StoredValue>, now: i64) {
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
