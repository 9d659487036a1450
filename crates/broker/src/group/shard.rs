//! One `__consumer_offsets` partition's share of the group coordinator (Kafka's
//! coordinator shard): the groups whose ids hash to that partition, loaded
//! from it when this broker becomes its leader and dropped when it stops
//! being one. A shard appends its records under its own lock, never a
//! coordinator-wide one, and a change is answered only once its records are
//! committed (below the high watermark), never from the leader's memory alone.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use parking_lot::{Condvar, Mutex, MutexGuard};
use records::Compression;

use super::classic::ClassicGroup;
use super::store::{legacy_partition_for, partition_for, StoredKey, StoredValue};
use super::{append_error, apply_stored, corrupt, Group, Membership, OFFSETS_TOPIC};
use crate::config::GroupConfig;
use crate::error::{BrokerError, Result};
use crate::partition::Partition;

/// A shard's groups by id.
pub(crate) type Groups = HashMap<String, Group>;

/// Where a shard is in its life as this broker's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Replaying its partition: clients get COORDINATOR_LOAD_IN_PROGRESS.
    Loading,
    /// Serving its groups.
    Active,
    /// The replay failed (the reason): clients get NOT_COORDINATOR.
    Failed(String),
    /// This broker no longer leads the partition: NOT_COORDINATOR.
    Unloaded,
}

/// The groups of one `__consumer_offsets` partition this broker leads.
pub(crate) struct Shard {
    /// The partition's index.
    pub(crate) index: i32,
    /// The leader epoch this broker became its leader at.
    pub(crate) leader_epoch: i32,
    /// `__consumer_offsets`'s partition count when it became the leader: what
    /// tells the groups placed here by earlier versions (0: not looked for).
    partition_count: i32,
    partition: Arc<Partition>,
    groups: Mutex<Groups>,
    /// Groups found here that Kafka places in another partition, by id, until
    /// they are moved there ([`super::GroupCoordinator::migrate_misplaced`]).
    misplaced: Mutex<BTreeMap<String, Misplaced>>,
    /// Whether `misplaced` has any group: a lock-free look before each request.
    has_misplaced: AtomicBool,
    status: Mutex<Status>,
    status_changed: Condvar,
}

/// A group whose records earlier Potok versions wrote to this partition
/// (masking the hash: [`legacy_partition_for`]) and which Kafka's placement
/// ([`partition_for`]) puts in `target`. It is copied there through the
/// normal write path, and only once the copy is committed are its records
/// here tombstoned; until then its requests answer COORDINATOR_LOAD_IN_PROGRESS.
pub(crate) struct Misplaced {
    /// The partition Kafka places the group in.
    pub(crate) target: i32,
    /// The group as replayed here; None once handed to the target shard.
    pub(crate) group: Option<Group>,
    /// The keys of the group whose last record here is not a tombstone: what
    /// is tombstoned here after the move.
    pub(crate) live: Vec<StoredKey>,
    pub(crate) phase: MovePhase,
    /// Whether "the target is not led here" was logged.
    pub(crate) reported: bool,
    /// Whether a failed step was logged (retried with the timer, logged once).
    pub(crate) failure_logged: bool,
}

/// How far a misplaced group's move is.
pub(crate) enum MovePhase {
    /// Not copied yet: requests for the group wait (LOAD_IN_PROGRESS).
    Copy,
    /// Copied to the target, not committed there yet: requests still wait.
    Copying(Pending),
    /// The target has the group (copied, or its own state won): the records
    /// here are to be tombstoned; requests are served by the target.
    Tombstone {
        /// Whether the target's own state replaced different records here.
        superseded: bool,
    },
}

/// Records appended to a shard's partition and not yet committed: done once
/// the high watermark reaches `required_offset` (Kafka's acks=-1 append).
pub(crate) struct Pending {
    partition: Arc<Partition>,
    /// The offset after the last appended record.
    pub(crate) required_offset: i64,
}

impl Pending {
    /// Whether the records are committed: None while not yet, the error once
    /// they cannot be (this broker no longer leads the partition).
    pub(crate) fn check(&self) -> Option<Result<()>> {
        self.partition.check_replicated(self.required_offset)
    }

    /// Waits, without holding a thread, until the records are committed, or
    /// `timeout` (`offsets.commit.timeout.ms`: REQUEST_TIMED_OUT), or this
    /// broker stops leading (NOT_LEADER_OR_FOLLOWER).
    pub(crate) async fn committed(&self, timeout: Duration) -> Result<()> {
        self.partition.wait_replicated(self.required_offset, tokio::time::Instant::now() + timeout).await
    }
}

/// How a classic group write that failed after the append is answered, as
/// Kafka's GroupMetadataManager.storeGroup does: a write the ISR did not
/// take in time is REBALANCE_IN_PROGRESS (the members rejoin), the rest as
/// [`append_error`].
pub(crate) fn classic_append_error(error: ResponseError) -> ResponseError {
    match error {
        ResponseError::RequestTimedOut => ResponseError::RebalanceInProgress,
        other => append_error(other, false),
    }
}

impl Shard {
    /// A shard of `partition` (one of `partition_count`), led at
    /// `leader_epoch`, loading.
    pub(crate) fn new(partition: Arc<Partition>, leader_epoch: i32, partition_count: i32) -> Shard {
        Shard {
            index: partition.index,
            leader_epoch,
            partition_count,
            partition,
            groups: Mutex::new(HashMap::new()),
            misplaced: Mutex::new(BTreeMap::new()),
            has_misplaced: AtomicBool::new(false),
            status: Mutex::new(Status::Loading),
            status_changed: Condvar::new(),
        }
    }

    /// The shard's state.
    pub(crate) fn status(&self) -> Status {
        self.status.lock().clone()
    }

    /// The shard's groups, or the error its clients get while it is loading
    /// (COORDINATOR_LOAD_IN_PROGRESS) or no longer this broker's (NOT_COORDINATOR).
    pub(crate) fn lock(&self) -> std::result::Result<MutexGuard<'_, Groups>, ResponseError> {
        match &*self.status.lock() {
            Status::Active => {}
            Status::Loading => return Err(ResponseError::CoordinatorLoadInProgress),
            Status::Failed(_) | Status::Unloaded => return Err(ResponseError::NotCoordinator),
        }
        Ok(self.groups.lock())
    }

    /// The groups whatever the state: for finishing a write begun while active.
    pub(crate) fn groups(&self) -> MutexGuard<'_, Groups> {
        self.groups.lock()
    }

    /// Replays the partition (to its log end: what a new leader has is what
    /// will be committed) into the shard's groups and makes it active. The
    /// groups are built aside, so clients meanwhile get LOAD_IN_PROGRESS
    /// rather than wait. A failure leaves the shard failed (NOT_COORDINATOR).
    /// `clock` is read when the replay starts and when it is done: the
    /// sessions of the loaded members start then (Kafka's `onLoaded`), since
    /// their heartbeats were refused with LOAD_IN_PROGRESS until then.
    pub(crate) fn load(&self, config: &GroupConfig, clock: &dyn Fn() -> i64) -> Result<()> {
        let replayed = self.replay(config, clock);
        let mut groups = self.groups.lock();
        let mut status = self.status.lock();
        let result = match replayed {
            Ok((loaded, misplaced, records)) if *status == Status::Loading => {
                if records > 0 {
                    tracing::info!(partition = self.index, epoch = self.leader_epoch, groups = loaded.len(), records, "loaded groups from {OFFSETS_TOPIC}");
                } else {
                    tracing::debug!(partition = self.index, epoch = self.leader_epoch, "no groups to load from {OFFSETS_TOPIC}");
                }
                if !misplaced.is_empty() {
                    tracing::info!(partition = self.index, groups = misplaced.len(), "{OFFSETS_TOPIC}-{} holds groups that Kafka places in other partitions (written by an earlier version); they are moved there", self.index);
                }
                *groups = loaded;
                self.has_misplaced.store(!misplaced.is_empty(), Ordering::Release);
                *self.misplaced.lock() = misplaced;
                *status = Status::Active;
                Ok(())
            }
            // Resigned meanwhile: the groups belong to the next leader.
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(partition = self.index, error = %e, "cannot load the groups of {OFFSETS_TOPIC}: they are not served here (NOT_COORDINATOR)");
                if *status == Status::Loading {
                    *status = Status::Failed(e.to_string());
                }
                Err(e)
            }
        };
        self.status_changed.notify_all();
        result
    }

    fn replay(&self, config: &GroupConfig, clock: &dyn Fn() -> i64) -> Result<(Groups, BTreeMap<String, Misplaced>, usize)> {
        let now = clock();
        let partition = &self.partition;
        let mut groups = Groups::new();
        let mut records = 0usize;
        // Groups placed here by the masked hash that Kafka places elsewhere:
        // their live keys, with the offset of each key's last record.
        let (index, count) = (self.index, self.partition_count);
        let mut placed = HashMap::<String, bool>::new();
        let mut misplaced_keys = HashMap::<String, HashMap<StoredKey, i64>>::new();
        // To the log end, past the high watermark, as Kafka's loader: a new
        // leader's high watermark lags what it has (and will commit).
        let read = |offset| partition.read_to_log_end(offset, 1 << 20);
        let replay = |header: &records::BatchHeader, batch: Vec<records::RawRecord>| {
            for record in batch {
                let offset = record.offset(header);
                let Some(key) = record.key.filter(|_| !header.is_control()) else { continue };
                let Some(key) = StoredKey::decode(key).map_err(|e| corrupt(offset, e))? else { continue };
                let value = match record.value {
                    Some(v) => Some(StoredValue::decode(&key, v).map_err(|e| corrupt(offset, e))?),
                    None => None,
                };
                let group = key.group();
                let is_misplaced = count > 0
                    && *placed.entry(group.to_string()).or_insert_with(|| {
                        partition_for(group, count) != index && legacy_partition_for(group, count) == index
                    });
                if is_misplaced {
                    let keys = misplaced_keys.entry(group.to_string()).or_default();
                    match value {
                        Some(_) => keys.insert(key.clone(), offset),
                        None => keys.remove(&key),
                    };
                }
                apply_stored(&mut groups, key, value, now);
                records += 1;
            }
            Ok(())
        };
        crate::record_batch::scan(read, partition.log_start_offset(), partition.log_end_offset(), replay)
            .map_err(|e| BrokerError::kafka(e.response_error(), format!("{OFFSETS_TOPIC}-{}: {e}", partition.index)))?;
        // The members' sessions start now that the load is done, not when it
        // began: a long replay must not expire members that could not
        // heartbeat meanwhile.
        let loaded_at = clock().max(now);
        for group in groups.values_mut() {
            match &mut group.membership {
                Membership::Classic(g) => g.loaded(loaded_at),
                Membership::Consumer(g) => g.loaded(config, loaded_at),
            }
        }
        // A misplaced group is taken out of the served ones (it is never asked
        // for here) until it is moved; one with nothing live left has nothing to move.
        let mut misplaced = BTreeMap::new();
        for (id, keys) in misplaced_keys {
            let Some(group) = groups.remove(&id) else { continue };
            if keys.is_empty() {
                continue;
            }
            let mut live: Vec<(StoredKey, i64)> = keys.into_iter().collect();
            live.sort_by_key(|(_, offset)| *offset);
            let target = partition_for(&id, count);
            let live = live.into_iter().map(|(key, _)| key).collect();
            misplaced.insert(id, Misplaced { target, group: Some(group), live, phase: MovePhase::Copy, reported: false, failure_logged: false });
        }
        Ok((groups, misplaced, records))
    }

    /// Whether requests for `group_id`, which Kafka places in another
    /// partition, must wait because this shard (its earlier placement) is
    /// still loading or holds its records not yet moved.
    pub(crate) fn holds_unmoved(&self, group_id: &str) -> bool {
        if self.status() == Status::Loading {
            return self.partition_count > 0;
        }
        if !self.has_misplaced.load(Ordering::Acquire) {
            return false;
        }
        self.misplaced.lock().get(group_id).is_some_and(|m| !matches!(m.phase, MovePhase::Tombstone { .. }))
    }

    /// The misplaced groups, for moving them: nothing unless the shard is active.
    pub(crate) fn misplaced(&self) -> Option<MutexGuard<'_, BTreeMap<String, Misplaced>>> {
        if !self.has_misplaced.load(Ordering::Acquire) || self.status() != Status::Active {
            return None;
        }
        Some(self.misplaced.lock())
    }

    /// Notes whether misplaced groups are left after a pass over them.
    pub(crate) fn misplaced_done(&self, misplaced: &BTreeMap<String, Misplaced>) {
        self.has_misplaced.store(!misplaced.is_empty(), Ordering::Release);
    }

    /// Waits until the shard is no longer loading; the reason if its load failed.
    pub(crate) fn wait_loaded(&self) -> std::result::Result<(), String> {
        let mut status = self.status.lock();
        while *status == Status::Loading {
            self.status_changed.wait(&mut status);
        }
        match &*status {
            Status::Failed(reason) => Err(reason.clone()),
            _ => Ok(()),
        }
    }

    /// Stops serving: the groups are dropped (the next leader loads them) and
    /// members waiting in JoinGroup/SyncGroup get NOT_COORDINATOR.
    pub(crate) fn unload(&self) {
        *self.status.lock() = Status::Unloaded;
        self.status_changed.notify_all();
        self.has_misplaced.store(false, Ordering::Release);
        self.misplaced.lock().clear();
        let dropped = std::mem::take(&mut *self.groups.lock());
        for group in dropped.into_values() {
            if let Membership::Classic(mut g) = group.membership {
                g.fail_waiting(ResponseError::NotCoordinator);
            }
        }
        tracing::info!(partition = self.index, epoch = self.leader_epoch, "unloaded the groups of {OFFSETS_TOPIC}");
    }

    /// Appends records of one group to the partition with acks=-1 semantics
    /// (NOT_ENOUGH_REPLICAS below min.insync.replicas): None once they are
    /// already committed (on one node, at once), else what to wait for.
    pub(crate) fn write(&self, records: Vec<(StoredKey, Option<StoredValue>)>, now: i64) -> Result<Option<Pending>> {
        if records.is_empty() {
            return Ok(None);
        }
        let entries = records.into_iter().map(|(key, value)| (Some(key.encode()), value.map(|v| v.encode()), now));
        let mut buf = crate::record_batch::encode(entries, Compression::None)
            .map_err(|e| BrokerError::kafka(ResponseError::UnknownServerError, format!("cannot encode group records: {e}")))?;
        let partition = &self.partition;
        // An fsync (flush.messages) or a segment roll blocks: keep it off the async workers.
        let appended = if partition.append_may_block(&buf, now) {
            crate::blocking(|| partition.append_as_leader(&mut buf, -1, now))?
        } else {
            partition.append_as_leader(&mut buf, -1, now)?
        };
        let pending = Pending { partition: Arc::clone(partition), required_offset: appended.last_offset + 1 };
        match partition.check_replicated(pending.required_offset) {
            Some(Ok(())) => Ok(None),
            Some(Err(e)) => Err(e),
            None => Ok(Some(pending)),
        }
    }

    /// Writes the records of a group's membership changes, in one append. When
    /// the append fails, a classic group goes back to its last stored record
    /// (members waiting in JoinGroup/SyncGroup get the error and rejoin); a
    /// consumer group is rolled back by its heartbeat, which holds its state
    /// from before, and keeps the records to write them with the next change.
    /// Errors with the code the client gets ([`append_error`]). A write not
    /// yet committed comes back to be waited for ([`Shard::settle_classic`]
    /// for classic groups, whose assignments are handed out only then).
    pub(crate) fn persist_membership(&self, id: &str, group: &mut Group, now: i64) -> std::result::Result<Option<Pending>, ResponseError> {
        let records = group.take_records(id);
        let classic = records.iter().find_map(|(_, value)| match value {
            Some(StoredValue::ClassicGroup(v)) => Some(v.clone()),
            _ => None,
        });
        // A consumer group's records are kept for a retry: a timer's change
        // (a session expiry) has no caller to undo it.
        let retry = if matches!(group.membership, Membership::Consumer(_)) { records.clone() } else { Vec::new() };
        match self.write(records, now) {
            Ok(pending) => {
                if classic.is_some() {
                    group.stored_classic = classic;
                }
                if let (Membership::Classic(g), None) = (&mut group.membership, &pending) {
                    g.release_syncs();
                }
                Ok(pending)
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
    /// [`Shard::persist_membership`]) and forgets a classic group that never
    /// got a member or an offset.
    pub(crate) fn finish_classic(&self, groups: &mut Groups, id: &str, now: i64) -> std::result::Result<Option<Pending>, ResponseError> {
        let Some(group) = groups.get_mut(id) else { return Ok(None) };
        let result = self.persist_membership(id, group, now);
        if group.is_unused() {
            groups.remove(id);
        }
        result
    }

    /// Waits for a classic group's write and then hands out the assignments
    /// waiting for it; if it is not committed in time the waiting members get
    /// the error (REBALANCE_IN_PROGRESS for a timeout) and the group
    /// rebalances, as Kafka does after a failed store.
    pub(crate) async fn settle_classic(&self, id: &str, pending: Pending, config: &GroupConfig, now: i64) -> std::result::Result<(), ResponseError> {
        let outcome = pending.committed(Duration::from_millis(config.offsets_commit_timeout_ms)).await;
        let mut groups = self.groups();
        let classic = match groups.get_mut(id).map(|g| &mut g.membership) {
            Some(Membership::Classic(g)) => Some(g),
            _ => None,
        };
        match outcome {
            Ok(()) => {
                if let Some(g) = classic {
                    g.release_syncs();
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(group = %id, error = %e, "group metadata was not committed");
                let code = classic_append_error(e.response_error());
                if let Some(g) = classic {
                    g.store_failed(code, config, now);
                }
                Err(code)
            }
        }
    }
}
