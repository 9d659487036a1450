//! One partition this broker hosts: a small state machine of its role
//! (leader, follower, offline), leader epoch, log and high watermark, all
//! changed under one lock. See `replication.md` for the invariants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use parking_lot::{Mutex, RwLock};
use records::BatchHeader;
use storage::{Log, LogConfig, StorageError};
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::{BrokerError, Result};
use crate::log_dir_health::LogDirHealth;
use crate::recompress::ProducePolicy;

/// A hosted partition: its log and what this broker is for it.
///
/// Every change of role, leader epoch, ISR, log or high watermark happens
/// under the one `state` lock and ends with a new [`PartitionOffsets`]
/// published on a watch channel: waiting fetches and acks=all produces
/// subscribe to the partitions they wait for ([`Partition::subscribe`]).
pub struct Partition {
    /// The topic's name.
    pub topic: String,
    /// The topic's id.
    pub topic_id: Uuid,
    /// The partition index.
    pub index: i32,
    /// This broker's id (its replica id in `replicas` and the ISR).
    local_id: i32,
    /// The log dir holding this partition's directory.
    log_dir: PathBuf,
    // Fetches read under the read lock, so they run beside each other.
    state: RwLock<State>,
    /// The offsets after the last change, for readers that take no lock and
    /// for waiters.
    offsets: watch::Sender<PartitionOffsets>,
    // Read on every produce; written on a config change.
    produce_policy: RwLock<ProducePolicy>,
    /// Why the log could not be opened at start, for a partition taken offline.
    offline: Option<String>,
    /// Whether the log dir failed: an I/O error writing this log takes the
    /// whole dir offline, and nothing in it is written again.
    health: Arc<LogDirHealth>,
    /// Held by the log cleaner while it writes a replacement segment's files
    /// into the partition's directory without the state lock, and while it
    /// swaps them in: closing or deleting the log waits for it (as Kafka
    /// aborts a partition's cleaning and waits before deleting its log).
    cleaning: Mutex<()>,
}

/// One consistent view of a partition's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionOffsets {
    /// The first offset still in the log.
    pub log_start: i64,
    /// The end of the records every in-sync replica has: consumers read below it.
    pub high_watermark: i64,
    /// The offset the next record appended here will get.
    pub log_end: i64,
}

/// What this broker is for a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It takes produce and fetch requests and tracks its followers.
    Leader(LeaderState),
    /// It copies the leader's log (`leader` -1: no leader known yet).
    Follower {
        /// The leader's broker id.
        leader: i32,
    },
    /// Its log is unusable; every request gets KAFKA_STORAGE_ERROR.
    Offline,
}

/// The leader's view of its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    /// The in-sync replicas, this broker included.
    pub isr: Vec<i32>,
    /// Every other assigned replica and how far it has fetched.
    pub followers: BTreeMap<i32, FollowerState>,
    /// The partition epoch of the committed state this ISR is (-1: not
    /// known yet); an AlterPartition names it, the controller refuses a stale one.
    pub partition_epoch: i32,
    /// Followers an AlterPartition in flight adds to the ISR: the high
    /// watermark waits for them already (Kafka's maximal ISR), so that they
    /// have everything below it once the controller commits them.
    pub pending_expansion: Vec<i32>,
}

/// How far a follower has fetched, as its fetches tell the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The follower's log end offset: the offset of its last fetch (-1: unknown).
    pub log_end_offset: i64,
    /// When it last had everything the leader had (its fetch reached the
    /// leader's log end), in ms; what `replica.lag.time.max.ms` is measured from.
    pub last_caught_up_ms: i64,
    /// The leader's log end at its previous fetch.
    last_fetch_leader_log_end: i64,
    /// When its previous fetch came.
    last_fetch_ms: i64,
    /// The broker epoch its last fetch named (KIP-903; -1: none), for the
    /// ISR change the leader asks the controller for.
    pub broker_epoch: i64,
}

impl FollowerState {
    fn new(in_sync: bool, now_ms: i64) -> FollowerState {
        // An ISR member counts as caught up when leadership starts, as in Kafka.
        let caught_up = if in_sync { now_ms } else { 0 };
        FollowerState { log_end_offset: -1, last_caught_up_ms: caught_up, last_fetch_leader_log_end: -1, last_fetch_ms: 0, broker_epoch: -1 }
    }
}

/// A partition's leadership as the metadata says it (Kafka's LeaderAndIsr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAndIsr {
    /// The leader epoch.
    pub leader_epoch: i32,
    /// Every assigned replica.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// How far a fetch may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchIsolation {
    /// A follower: up to the log end.
    LogEnd,
    /// A consumer: up to the high watermark.
    HighWatermark,
}

/// What one partition's fetch read.
#[derive(Debug, Clone)]
pub struct FetchedRecords {
    /// Whole batches.
    pub records: Bytes,
    /// The offsets when they were read.
    pub offsets: PartitionOffsets,
    /// Fetch v12+: the fetcher's last fetched epoch is not in this log as
    /// it has it: the largest epoch <= it here and where that ended, for the
    /// fetcher to truncate to (no records then).
    pub diverging_epoch: Option<(i32, i64)>,
}

/// Who a follower fetch comes from (Kafka's `ReplicaState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    /// The follower's broker id.
    pub replica_id: i32,
    /// Its broker epoch (-1: not given, before Fetch v15).
    pub broker_epoch: i64,
}

/// Everything the partition lock guards.
struct State {
    /// None once closed or deleted (and for a partition offline from start).
    log: Option<Log>,
    role: Role,
    leader_epoch: i32,
    replicas: Vec<i32>,
    high_watermark: i64,
    /// The log end when this broker became leader of `leader_epoch`: a
    /// follower joins the ISR only once it has everything from before.
    leader_epoch_start_offset: i64,
    /// `min.insync.replicas` (from the produce policy): the high watermark
    /// does not advance while the ISR is smaller (KIP-966's strict min ISR).
    min_isr: i32,
}

/// Where a produced batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record: acks=all waits for the high watermark to pass it.
    pub last_offset: i64,
    /// The broker's timestamp, if the topic uses LogAppendTime.
    pub log_append_time: Option<i64>,
}

/// An offset and the timestamp of the record there, for ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampAndOffset {
    /// The record's timestamp.
    pub timestamp: i64,
    /// The record's offset.
    pub offset: i64,
}

/// FENCED_LEADER_EPOCH for a request that knows an older leader epoch,
/// UNKNOWN_LEADER_EPOCH for one that knows a newer one (Kafka's
/// `checkCurrentLeaderEpoch`); -1 means the request names none.
fn check_leader_epoch(local: i32, requested: i32) -> std::result::Result<(), ResponseError> {
    if requested < 0 || requested == local {
        Ok(())
    } else if requested < local {
        Err(ResponseError::FencedLeaderEpoch)
    } else {
        Err(ResponseError::UnknownLeaderEpoch)
    }
}

impl State {
    fn offsets(&self) -> PartitionOffsets {
        match &self.log {
            Some(l) => PartitionOffsets {
                log_start: l.log_start_offset(),
                high_watermark: self.high_watermark,
                log_end: l.log_end_offset(),
            },
            None => PartitionOffsets { log_start: -1, high_watermark: -1, log_end: -1 },
        }
    }

    /// Moves the high watermark up to the smallest log end in the ISR (the
    /// leader's own included); never down. A follower's ISR member that has
    /// not fetched yet (-1) holds it where it is.
    fn maybe_increment_high_watermark(&mut self, local_id: i32) {
        let Some(log) = &self.log else { return };
        let log_end = log.log_end_offset();
        let log_start = log.log_start_offset();
        // KIP-966's strict min ISR (capped by the replica count): below it the
        // high watermark stays, so every eligible leader replica (ELR) has
        // everything below it and may be elected after the ISR is gone.
        let strict_min_isr = (self.min_isr.max(1) as usize).min(self.replicas.len().max(1));
        if let Some(leader) = match &self.role {
            Role::Leader(leader) if leader.isr.len() >= strict_min_isr => Some(leader),
            _ => None,
        } {
            let smallest = leader
                .isr
                .iter()
                .chain(&leader.pending_expansion)
                .filter(|&&id| id != local_id)
                .map(|id| leader.followers.get(id).map_or(-1, |f| f.log_end_offset))
                .fold(log_end, i64::min);
            if smallest > self.high_watermark {
                self.high_watermark = smallest;
            }
        }
        // Kafka's rule when the log start passes it (a follower told of a
        // DeleteRecords by its leader).
        if self.high_watermark < log_start {
            self.high_watermark = log_start;
        }
    }
}

impl Partition {
    /// Wraps an opened log. The partition has no role until the metadata
    /// gives it one ([`Partition::make_leader`] / [`Partition::make_follower`]):
    /// until then it is a follower of no leader and refuses produce and fetch.
    pub fn open(topic: String, topic_id: Uuid, index: i32, log: Log, local_id: i32) -> Partition {
        let log_dir = log.dir().parent().map_or_else(|| log.dir().to_path_buf(), Path::to_path_buf);
        // At the log start until [`Partition::restore_high_watermark`] gives
        // the checkpointed one; a leader moves it up as its ISR allows.
        let start = log.log_start_offset();
        let state = State {
            log: Some(log),
            role: Role::Follower { leader: -1 },
            leader_epoch: -1,
            replicas: Vec::new(),
            high_watermark: start,
            leader_epoch_start_offset: -1,
            min_isr: 1,
        };
        Partition::with(topic, topic_id, index, local_id, log_dir, state, None)
    }

    /// A partition led by this broker alone (replica 0, leader epoch
    /// `leader_epoch`): what the unit tests use.
    #[cfg(test)]
    pub(crate) fn new(topic: String, topic_id: Uuid, index: i32, log: Log, leader_epoch: i32) -> Partition {
        let partition = Partition::open(topic, topic_id, index, log, 0);
        let sole = LeaderAndIsr { leader_epoch, replicas: vec![0], isr: vec![0] };
        partition.make_leader(&sole, 0).expect("make leader");
        partition
    }

    /// A partition whose log could not be opened at start: every operation on
    /// it answers KAFKA_STORAGE_ERROR with `reason`, while the broker serves
    /// the others.
    pub fn offline(topic: String, topic_id: Uuid, index: i32, dir: &Path, leader_epoch: i32, reason: String) -> Partition {
        let state = State {
            log: None,
            role: Role::Offline,
            leader_epoch,
            replicas: Vec::new(),
            high_watermark: 0,
            leader_epoch_start_offset: -1,
            min_isr: 1,
        };
        let log_dir = dir.parent().map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
        Partition::with(topic, topic_id, index, -1, log_dir, state, Some(reason))
    }

    fn with(topic: String, topic_id: Uuid, index: i32, local_id: i32, log_dir: PathBuf, state: State, offline: Option<String>) -> Partition {
        let (offsets, _) = watch::channel(state.offsets());
        Partition {
            topic,
            topic_id,
            index,
            local_id,
            health: Arc::new(LogDirHealth::new(log_dir.clone(), false)),
            log_dir,
            state: RwLock::new(state),
            offsets,
            produce_policy: RwLock::new(ProducePolicy::default()),
            offline,
            cleaning: Mutex::new(()),
        }
    }

    /// Starts the high watermark at the one `replication-offset-checkpoint`
    /// recorded (None: no entry, which counts as 0), kept within the log's
    /// start and end, as Kafka's `Partition.createLog` and
    /// `UnifiedLog.updateHighWatermark`: a log that lost an unflushed tail
    /// never holds a high watermark past its end. Returns the value taken.
    pub(crate) fn restore_high_watermark(&self, checkpointed: Option<i64>) -> i64 {
        let mut state = self.state.write();
        let Some(log) = &state.log else { return state.high_watermark };
        let restored = checkpointed.unwrap_or(0).min(log.log_end_offset()).max(log.log_start_offset());
        state.high_watermark = restored;
        self.publish(&state);
        restored
    }

    /// Shares the health of the log dir the partition lives in (a partition
    /// made without it watches its dir alone).
    pub(crate) fn in_log_dir(mut self, health: Arc<LogDirHealth>) -> Partition {
        self.health = health;
        self
    }

    /// Makes this broker the leader for `leader` (a newer or the current
    /// epoch; an older one changes nothing and returns false). A new epoch
    /// starts every follower's tracking afresh; the same epoch only updates
    /// the replicas and ISR (an ISR change the controller committed).
    pub fn make_leader(&self, leader: &LeaderAndIsr, now_ms: i64) -> Result<bool> {
        let mut assigned = Ok(());
        let changed = self.transition(leader, |state, local_id| {
            let new_epoch = leader.leader_epoch > state.leader_epoch || !matches!(state.role, Role::Leader(_));
            let log_end = state.log.as_ref().map_or(0, |l| l.log_end_offset());
            let mut followers = BTreeMap::new();
            for &id in leader.replicas.iter().filter(|&&id| id != local_id) {
                let known = match &state.role {
                    Role::Leader(current) if !new_epoch => current.followers.get(&id).copied(),
                    _ => None,
                };
                followers.insert(id, known.unwrap_or_else(|| FollowerState::new(leader.isr.contains(&id), now_ms)));
            }
            if new_epoch {
                state.leader_epoch_start_offset = log_end;
                // The epoch starts at the log end in the epoch cache at once.
                if let Some(log) = state.log.as_mut() {
                    assigned = log.assign_epoch_start(leader.leader_epoch).map_err(BrokerError::from);
                }
            }
            let (partition_epoch, pending_expansion) = match &state.role {
                Role::Leader(current) if !new_epoch => (
                    current.partition_epoch,
                    current.pending_expansion.iter().copied().filter(|id| !leader.isr.contains(id)).collect(),
                ),
                _ => (-1, Vec::new()),
            };
            state.role =
                Role::Leader(LeaderState { isr: leader.isr.clone(), followers, partition_epoch, pending_expansion });
        })?;
        self.watched(assigned)?;
        Ok(changed)
    }

    /// Makes this broker a follower of `leader_id` (-1: none known) for
    /// `leader` (an older epoch changes nothing and returns false). The
    /// high watermark stays; the replica fetcher will truncate and fetch.
    pub fn make_follower(&self, leader_id: i32, leader: &LeaderAndIsr) -> Result<bool> {
        self.transition(leader, |state, _| {
            state.role = Role::Follower { leader: leader_id };
            state.leader_epoch_start_offset = -1;
        })
    }

    fn transition(&self, leader: &LeaderAndIsr, apply: impl FnOnce(&mut State, i32)) -> Result<bool> {
        let mut state = self.state.write();
        if matches!(state.role, Role::Offline) {
            return Err(self.deleted());
        }
        // A replica in a failed log dir takes no role (Kafka's offline
        // partition), so nothing (a new epoch's leader-epoch-checkpoint) is
        // written there.
        self.check_log_dir()?;
        if leader.leader_epoch < state.leader_epoch {
            tracing::info!(topic = %self.topic, partition = self.index, epoch = leader.leader_epoch, current = state.leader_epoch, "ignored a leadership change of an older leader epoch");
            return Ok(false);
        }
        apply(&mut state, self.local_id);
        state.leader_epoch = leader.leader_epoch;
        state.replicas = leader.replicas.clone();
        state.maybe_increment_high_watermark(self.local_id);
        // Always wake waiters: a role change can end their wait.
        let offsets = state.offsets();
        self.offsets.send_modify(|o| *o = offsets);
        Ok(true)
    }

    /// The role this broker has for the partition.
    pub fn role(&self) -> Role {
        self.state.read().role.clone()
    }

    /// True while this broker is the partition's leader.
    pub fn is_leader(&self) -> bool {
        matches!(self.state.read().role, Role::Leader(_))
    }

    /// The ISR that dropping every in-sync follower not caught up within
    /// `lag_max_ms` of `now_ms` gives, if it differs from the current one
    /// (for the controller to commit; nothing changes here). None unless leader.
    pub fn maybe_shrink_isr(&self, now_ms: i64, lag_max_ms: i64) -> Option<Vec<i32>> {
        let state = self.state.read();
        let Role::Leader(leader) = &state.role else { return None };
        let lagging = |id: &i32| {
            *id != self.local_id && leader.followers.get(id).is_none_or(|f| now_ms - f.last_caught_up_ms > lag_max_ms)
        };
        if !leader.isr.iter().any(lagging) {
            return None;
        }
        Some(leader.isr.iter().copied().filter(|id| !lagging(id)).collect())
    }

    /// The ISR with `replica_id` added, if it is an assigned follower outside
    /// the ISR that has everything up to the high watermark and since this
    /// leader's epoch began (Kafka's `isFollowerInSync`); for the controller
    /// to commit. None unless leader.
    pub fn maybe_expand_isr(&self, replica_id: i32) -> Option<Vec<i32>> {
        let state = self.state.read();
        let Role::Leader(leader) = &state.role else { return None };
        if leader.isr.contains(&replica_id) {
            return None;
        }
        let follower = leader.followers.get(&replica_id)?;
        let in_sync = follower.log_end_offset >= state.high_watermark && follower.log_end_offset >= state.leader_epoch_start_offset;
        if !in_sync {
            return None;
        }
        let mut isr = leader.isr.clone();
        isr.push(replica_id);
        Some(isr)
    }

    /// Records the partition epoch of the committed state the leader has
    /// (the metadata publisher, after [`Partition::make_leader`]); it only moves up.
    pub fn set_partition_epoch(&self, partition_epoch: i32) {
        let mut state = self.state.write();
        if let Role::Leader(leader) = &mut state.role {
            leader.partition_epoch = leader.partition_epoch.max(partition_epoch);
        }
    }

    /// Marks the members `isr` adds to the current ISR as pending (the high
    /// watermark counts them) while its AlterPartition is in flight, or
    /// clears the marks (`isr` None: the request ended without a change).
    pub fn set_pending_isr(&self, isr: Option<&[i32]>) {
        let mut state = self.state.write();
        let Role::Leader(leader) = &mut state.role else { return };
        leader.pending_expansion = match isr {
            Some(isr) => isr.iter().copied().filter(|id| !leader.isr.contains(id)).collect(),
            None => Vec::new(),
        };
    }

    /// The leader epoch and partition epoch an AlterPartition of this
    /// leader names; None unless leader.
    pub fn alter_partition_epochs(&self) -> Option<(i32, i32)> {
        let state = self.state.read();
        match &state.role {
            Role::Leader(leader) => Some((state.leader_epoch, leader.partition_epoch)),
            _ => None,
        }
    }

    /// Applies the ISR the controller committed in answer to an
    /// AlterPartition (Kafka's `handleAlterPartitionUpdate`): only while
    /// this broker still leads at `leader_epoch` and `partition_epoch` is
    /// not older than the one it has. True if applied; the high watermark
    /// may move with the new ISR.
    pub fn apply_isr_update(&self, leader_epoch: i32, partition_epoch: i32, isr: &[i32]) -> bool {
        let mut state = self.state.write();
        if state.leader_epoch != leader_epoch {
            return false;
        }
        let Role::Leader(leader) = &mut state.role else { return false };
        if partition_epoch < leader.partition_epoch {
            return false;
        }
        leader.isr = isr.to_vec();
        leader.partition_epoch = partition_epoch;
        leader.pending_expansion.clear();
        state.maybe_increment_high_watermark(self.local_id);
        self.publish(&state);
        true
    }

    fn with_log<T>(&self, f: impl FnOnce(&mut Log) -> Result<T>) -> Result<T> {
        self.with_state(f)
    }

    /// Runs `f` on the log under the write lock, then moves the high
    /// watermark and publishes the offsets if they changed. An I/O error
    /// takes the log dir offline (and nothing is written to an offline dir).
    fn with_state<T>(&self, f: impl FnOnce(&mut Log) -> Result<T>) -> Result<T> {
        let mut state = self.state.write();
        self.check_log_dir()?;
        let result = match state.log.as_mut() {
            Some(log) => self.watched(f(log)),
            None => return Err(self.deleted()),
        };
        state.maybe_increment_high_watermark(self.local_id);
        self.publish(&state);
        result
    }

    fn publish(&self, state: &State) {
        let offsets = state.offsets();
        self.offsets.send_if_modified(|o| {
            let changed = *o != offsets;
            *o = offsets;
            changed
        });
    }

    /// Runs `f` on the log under the read lock, whatever the high watermark
    /// (tests compare whole logs).
    #[cfg(test)]
    pub(crate) fn reading<T>(&self, f: impl FnOnce(&Log) -> Result<T>) -> Result<T> {
        self.reading_log(f)
    }

    fn reading_log<T>(&self, f: impl FnOnce(&Log) -> Result<T>) -> Result<T> {
        self.check_log_dir()?;
        match self.state.read().log.as_ref() {
            Some(log) => f(log),
            None => Err(self.deleted()),
        }
    }

    fn check_log_dir(&self) -> Result<()> {
        self.health.check(&format_args!("partition {}-{}", self.topic, self.index))
    }

    /// `result`, after taking the log dir offline if it is an I/O error.
    fn watched<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(BrokerError::Storage(e @ StorageError::Io { .. })) = &result {
            self.health.fail(e);
        }
        result
    }

    /// True for a partition whose log could not be opened at start or whose
    /// log dir failed.
    pub fn is_offline(&self) -> bool {
        self.offline.is_some() || self.health.is_offline()
    }

    /// Ok while the log is open; the error an operation on it would get
    /// otherwise (offline: KAFKA_STORAGE_ERROR, deleted: UNKNOWN_TOPIC_OR_PARTITION).
    pub fn check_online(&self) -> Result<()> {
        self.reading_log(|_| Ok(()))
    }

    fn deleted(&self) -> BrokerError {
        if let Some(reason) = &self.offline {
            return BrokerError::kafka(
                ResponseError::KafkaStorageError,
                format!("partition {}-{} is offline: {reason}", self.topic, self.index),
            );
        }
        BrokerError::kafka(
            ResponseError::UnknownTopicOrPartition,
            format!("partition {}-{} was deleted", self.topic, self.index),
        )
    }

    /// Kafka's `getLocalLog`: an offline or deleted partition's error, then
    /// the leader epoch check (`current_leader_epoch` -1: none), then
    /// NOT_LEADER_OR_FOLLOWER unless this broker leads.
    fn check_leader(&self, state: &State, current_leader_epoch: i32) -> Result<()> {
        if state.log.is_none() || matches!(state.role, Role::Offline) {
            return Err(self.deleted());
        }
        if let Err(error) = check_leader_epoch(state.leader_epoch, current_leader_epoch) {
            let relation = if error == ResponseError::FencedLeaderEpoch { "older" } else { "newer" };
            return Err(BrokerError::kafka(
                error,
                format!(
                    "The leader epoch {current_leader_epoch} in the request is {relation} than the current leader epoch {} of partition {}-{}",
                    state.leader_epoch, self.topic, self.index
                ),
            ));
        }
        if !matches!(state.role, Role::Leader(_)) {
            return Err(self.not_leader());
        }
        Ok(())
    }

    fn not_leader(&self) -> BrokerError {
        BrokerError::kafka(
            ResponseError::NotLeaderOrFollower,
            format!("Leader not local for partition {}-{} on broker {}", self.topic, self.index, self.local_id),
        )
    }

    /// Checks that this broker leads at `current_leader_epoch` (-1: any), as
    /// ListOffsets and other leader-only reads need.
    pub fn check_leader_at(&self, current_leader_epoch: i32) -> Result<()> {
        self.check_log_dir()?;
        self.check_leader(&self.state.read(), current_leader_epoch)
    }

    /// Kafka's `Partition.lastOffsetForLeaderEpoch`, served by the leader
    /// only (for followers and consumers alike): after the checks of
    /// [`Partition::check_leader_at`], the largest epoch <= `leader_epoch`
    /// in this log and where it ended (the log end for the latest epoch,
    /// not the high watermark); `(-1, -1)` if the log knows no such epoch.
    pub fn last_offset_for_leader_epoch(&self, current_leader_epoch: i32, leader_epoch: i32) -> Result<(i32, i64)> {
        self.check_log_dir()?;
        let state = self.state.read();
        self.check_leader(&state, current_leader_epoch)?;
        let Some(log) = state.log.as_ref() else { return Err(self.deleted()) };
        Ok(log.end_offset_for_epoch(leader_epoch))
    }

    /// The largest epoch <= `epoch` in this replica's own leader-epoch cache
    /// and where it ended, whatever the role (a follower's side of
    /// truncation); `(-1, -1)` if none.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<(i32, i64)> {
        self.reading_log(|log| Ok(log.end_offset_for_epoch(epoch)))
    }

    /// The latest leader epoch that appended to this replica's log.
    pub fn latest_epoch(&self) -> Result<Option<i32>> {
        self.reading_log(|log| Ok(log.latest_epoch()))
    }

    /// NOT_LEADER_OR_FOLLOWER unless this broker follows the partition: only
    /// a follower's log may be truncated or take the leader's batches. With
    /// `leader_epoch` >= 0 (what the fetcher fetched at), another current
    /// epoch is FENCED_LEADER_EPOCH (the fetcher is behind the metadata) or
    /// UNKNOWN_LEADER_EPOCH: an answer from a leader of another epoch never
    /// reaches the log.
    fn check_follower(&self, state: &State, leader_epoch: i32) -> Result<()> {
        if state.log.is_none() || matches!(state.role, Role::Offline) {
            return Err(self.deleted());
        }
        if !matches!(state.role, Role::Follower { .. }) {
            return Err(BrokerError::kafka(
                ResponseError::NotLeaderOrFollower,
                format!("Broker {} is not a follower of partition {}-{}", self.local_id, self.topic, self.index),
            ));
        }
        check_leader_epoch(state.leader_epoch, leader_epoch).map_err(|error| {
            BrokerError::kafka(
                error,
                format!(
                    "partition {}-{} follows leader epoch {}, not {leader_epoch}",
                    self.topic, self.index, state.leader_epoch
                ),
            )
        })
    }

    /// A follower of `leader_epoch` (-1: any) removes every batch from the
    /// one holding `offset` on (the log, its producer state and leader-epoch
    /// cache go back together) and its high watermark becomes min(high
    /// watermark, new log end).
    pub fn truncate_to(&self, offset: i64, leader_epoch: i32) -> Result<()> {
        let mut state = self.state.write();
        self.check_log_dir()?;
        self.check_follower(&state, leader_epoch)?;
        let Some(log) = state.log.as_mut() else { return Err(self.deleted()) };
        let truncated = self.watched(log.truncate_to(offset).map_err(BrokerError::from));
        let log_end = log.log_end_offset();
        state.high_watermark = state.high_watermark.min(log_end);
        state.maybe_increment_high_watermark(self.local_id);
        self.publish(&state);
        truncated
    }

    /// A follower of `leader_epoch` whose log end fell below its leader's
    /// log start drops its whole log and starts empty at `offset` (Kafka's
    /// `truncateFullyAndStartAt`); its high watermark becomes `offset`.
    pub fn truncate_fully_and_start_at(&self, offset: i64, leader_epoch: i32) -> Result<()> {
        let mut state = self.state.write();
        self.check_log_dir()?;
        self.check_follower(&state, leader_epoch)?;
        let Some(log) = state.log.as_mut() else { return Err(self.deleted()) };
        let truncated = self.watched(log.truncate_fully_and_start_at(offset).map_err(BrokerError::from));
        state.high_watermark = state.log.as_ref().map_or(offset, Log::log_start_offset);
        self.publish(&state);
        truncated
    }

    /// A follower of `leader_epoch` (-1: any) appends batches fetched from
    /// its leader as they are (Kafka's
    /// `appendRecordsToFollowerOrFutureReplica`): the leader's offsets,
    /// leader epochs and timestamps stay; framing and CRC are checked and the
    /// leader-epoch cache learns the batches' epochs. A trailing partial
    /// batch (a fetch's size limit) is left for the next fetch. None if there
    /// was no whole batch.
    pub fn append_as_follower(&self, records: Bytes, leader_epoch: i32, now_ms: i64) -> Result<Option<Appended>> {
        let whole = below_offset(records, i64::MAX);
        if whole.is_empty() {
            return Ok(None);
        }
        let mut state = self.state.write();
        self.check_log_dir()?;
        self.check_follower(&state, leader_epoch)?;
        let Some(log) = state.log.as_mut() else { return Err(self.deleted()) };
        // An empty log whose start is inside the leader's first batch (the
        // leader's log start moved mid-batch, DeleteRecords) starts again at
        // that batch's base offset, as Kafka's follower does.
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        if let Some(first) = BatchHeader::parse(&whole).ok().filter(|h| start == end && h.base_offset < end && h.last_offset() >= end) {
            tracing::info!(topic = %self.topic, partition = self.index, log_start = start, base_offset = first.base_offset, "the leader's first batch starts below this empty log: starting the log at its base offset");
            self.watched(log.truncate_fully_and_start_at(first.base_offset).map_err(BrokerError::from))?;
        }
        let appended = self.watched(log.append_replicated(&whole, now_ms).map_err(BrokerError::from));
        if appended.is_err() {
            let end = log.log_end_offset();
            state.high_watermark = state.high_watermark.min(end);
        }
        // A follower's high watermark only moves with its leader's.
        self.publish(&state);
        let info = appended?;
        Ok(Some(Appended { base_offset: info.base_offset, last_offset: info.last_offset, log_append_time: None }))
    }

    /// A follower's high watermark after a fetch: min(its log end, the
    /// leader's high watermark), and never back. Returns the new value.
    pub fn update_follower_high_watermark(&self, leader_high_watermark: i64) -> Result<i64> {
        let mut state = self.state.write();
        self.check_follower(&state, -1)?;
        let Some(log) = state.log.as_ref() else { return Err(self.deleted()) };
        let candidate = leader_high_watermark.min(log.log_end_offset());
        if candidate > state.high_watermark {
            state.high_watermark = candidate;
        }
        state.maybe_increment_high_watermark(self.local_id);
        self.publish(&state);
        Ok(state.high_watermark)
    }

    /// Validates and appends produced batches (patched in place) as the
    /// leader, acks=1. See [`Partition::append_as_leader`].
    pub fn append(&self, records: &mut [u8], now_ms: i64) -> Result<Appended> {
        self.append_as_leader(records, 1, now_ms)
    }

    /// Validates and appends produced batches (patched in place) as the
    /// leader: NOT_LEADER_OR_FOLLOWER unless leader; with `required_acks` -1,
    /// NOT_ENOUGH_REPLICAS before appending while the ISR is smaller than
    /// `min.insync.replicas` (capped by the replica count, as Kafka's
    /// `effectiveMinIsr`). A retried batch of an idempotent producer is not
    /// appended again: its original offsets are returned.
    pub fn append_as_leader(&self, records: &mut [u8], required_acks: i16, now_ms: i64) -> Result<Appended> {
        let min_isr = self.produce_policy().min_insync_replicas;
        let mut state = self.state.write();
        self.check_log_dir()?;
        self.check_leader(&state, -1)?;
        if required_acks == -1 {
            let isr = match &state.role {
                Role::Leader(l) => l.isr.len(),
                _ => 0,
            };
            let effective = (min_isr.max(1) as usize).min(state.replicas.len().max(1));
            if isr < effective {
                return Err(BrokerError::kafka(
                    ResponseError::NotEnoughReplicas,
                    format!(
                        "The size of the current ISR : {isr} is insufficient to satisfy the min.isr requirement of {effective} for partition {}-{}",
                        self.topic, self.index
                    ),
                ));
            }
        }
        let leader_epoch = state.leader_epoch;
        let Some(partition_log) = state.log.as_mut() else { return Err(self.deleted()) };
        let appended = self.watched(self.append_to_log(partition_log, records, leader_epoch, now_ms));
        state.maybe_increment_high_watermark(self.local_id);
        self.publish(&state);
        appended
    }

    fn append_to_log(
        &self,
        log: &mut Log,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<Appended> {
        // The log checks an idempotent producer's sequence under this lock: a
        // retried batch comes back with its original offsets, appended once.
        let info = log.append(records, leader_epoch, now_ms)?;
        Ok(Appended { base_offset: info.base_offset, last_offset: info.last_offset, log_append_time: info.log_append_time })
    }

    /// Kafka's `checkEnoughReplicasReachOffset` for an acks=all produce whose
    /// records end before `required_offset`: None while the high watermark
    /// has not reached it; then Ok, or NOT_ENOUGH_REPLICAS_AFTER_APPEND if the
    /// ISR shrank below `min.insync.replicas` meanwhile; NOT_LEADER_OR_FOLLOWER
    /// once this broker no longer leads.
    pub fn check_replicated(&self, required_offset: i64) -> Option<Result<()>> {
        let state = self.state.read();
        if state.log.is_none() || matches!(state.role, Role::Offline) {
            return Some(Err(self.deleted()));
        }
        let Role::Leader(leader) = &state.role else { return Some(Err(self.not_leader())) };
        if state.high_watermark < required_offset {
            return None;
        }
        let min_isr = self.produce_policy().min_insync_replicas;
        let effective = (min_isr.max(1) as usize).min(state.replicas.len().max(1));
        if leader.isr.len() < effective {
            return Some(Err(BrokerError::kafka(
                ResponseError::NotEnoughReplicasAfterAppend,
                format!(
                    "The ISR of partition {}-{} shrank to {} below min.insync.replicas {effective} after the records were appended",
                    self.topic,
                    self.index,
                    leader.isr.len()
                ),
            )));
        }
        Some(Ok(()))
    }

    /// Waits, without holding a thread, until the high watermark reaches
    /// `required_offset` (Kafka's delayed produce for one partition; see
    /// [`Partition::check_replicated`]), or REQUEST_TIMED_OUT at `deadline`.
    pub async fn wait_replicated(&self, required_offset: i64, deadline: tokio::time::Instant) -> Result<()> {
        let mut changes = self.subscribe();
        loop {
            if let Some(done) = self.check_replicated(required_offset) {
                return done;
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(BrokerError::kafka(
                        ResponseError::RequestTimedOut,
                        format!(
                            "{}-{}: the in-sync replicas did not reach offset {required_offset} in time",
                            self.topic, self.index
                        ),
                    ));
                }
            }
        }
    }

    /// Serves one partition of a Fetch as the leader: whole batches from the
    /// one holding `fetch_offset`, at most `max_bytes` (but at least one
    /// batch), up to the high watermark for consumers or the log end for
    /// followers. A follower's fetch (`follower` Some(replica id)) records
    /// its fetch offset as its log end, which can move the high watermark.
    pub fn fetch_records(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        current_leader_epoch: i32,
        follower: Option<i32>,
        now_ms: i64,
    ) -> Result<FetchedRecords> {
        let follower = follower.map(|replica_id| FollowerFetch { replica_id, broker_epoch: -1 });
        self.fetch_records_for(fetch_offset, max_bytes, current_leader_epoch, follower, -1, now_ms)
    }

    /// [`Partition::fetch_records`] with what a follower's fetch tells
    /// (`follower`) and, for any fetch, its `last_fetched_epoch` (Fetch v12+,
    /// -1: none). That epoch is checked first, as Kafka's
    /// `Partition.readFromLocalLog`: if this log has it ending below
    /// `fetch_offset`, or lacks it, the answer is the diverging epoch (the
    /// largest epoch <= it here and its end) without records, and a
    /// follower's fetch state is left as it was.
    pub fn fetch_records_for(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        current_leader_epoch: i32,
        follower: Option<FollowerFetch>,
        last_fetched_epoch: i32,
        now_ms: i64,
    ) -> Result<FetchedRecords> {
        let isolation = if follower.is_some() { FetchIsolation::LogEnd } else { FetchIsolation::HighWatermark };
        let (fetched, epoch) = {
            let state = self.state.read();
            self.check_log_dir()?;
            self.check_leader(&state, current_leader_epoch)?;
            if let Some(replica) = follower.map(|f| f.replica_id) {
                if !state.replicas.contains(&replica) || replica == self.local_id {
                    // Kafka: a tuple (replica, epoch) it does not know yet is
                    // retried by the follower.
                    let error = if current_leader_epoch >= 0 { ResponseError::UnknownLeaderEpoch } else { ResponseError::NotLeaderOrFollower };
                    return Err(BrokerError::kafka(
                        error,
                        format!("Replica {replica} is not an assigned replica of partition {}-{}", self.topic, self.index),
                    ));
                }
            }
            let offsets = state.offsets();
            let Some(log) = state.log.as_ref() else { return Err(self.deleted()) };
            if last_fetched_epoch >= 0 {
                if let Some(diverging) = self.diverging_epoch(log, fetch_offset, last_fetched_epoch)? {
                    return Ok(FetchedRecords { records: Bytes::new(), offsets, diverging_epoch: Some(diverging) });
                }
            }
            let limit = match isolation {
                FetchIsolation::LogEnd => offsets.log_end,
                FetchIsolation::HighWatermark => offsets.high_watermark,
            };
            let records = below_offset(log.read(fetch_offset, max_bytes)?, limit);
            (FetchedRecords { records, offsets, diverging_epoch: None }, state.leader_epoch)
        };
        if let Some(f) = follower {
            self.update_follower_fetch_state(f, fetch_offset, fetched.offsets.log_end, epoch, now_ms);
        }
        Ok(fetched)
    }

    /// Kafka's check of a fetch's `last_fetched_epoch` against this leader's
    /// epoch cache: OFFSET_OUT_OF_RANGE when it cannot tell (no such epoch,
    /// or the fetch offset is below the log start), the largest epoch <= it
    /// and its end when the fetcher's log diverges from this one, else None.
    fn diverging_epoch(&self, log: &Log, fetch_offset: i64, last_fetched_epoch: i32) -> Result<Option<(i32, i64)>> {
        let (epoch, end_offset) = log.end_offset_for_epoch(last_fetched_epoch);
        let out_of_range = |why: String| {
            Err(BrokerError::kafka(ResponseError::OffsetOutOfRange, format!("partition {}-{}: {why}", self.topic, self.index)))
        };
        if epoch < 0 || end_offset < 0 {
            return out_of_range(format!("cannot determine the end offset of the last fetched epoch {last_fetched_epoch}"));
        }
        if fetch_offset < log.log_start_offset() {
            return out_of_range(format!("fetch offset {fetch_offset} is below the log start offset {}", log.log_start_offset()));
        }
        if epoch < last_fetched_epoch || end_offset < fetch_offset {
            return Ok(Some((epoch, end_offset)));
        }
        Ok(None)
    }

    /// Records that follower `fetch.replica_id` fetched from `fetch_offset` when the
    /// leader's log ended at `leader_log_end` (Kafka's
    /// `Replica.updateFetchState`): its log end, and when it was last caught
    /// up. Skipped if the leader epoch changed since the read.
    fn update_follower_fetch_state(&self, fetch: FollowerFetch, fetch_offset: i64, leader_log_end: i64, epoch: i32, now_ms: i64) {
        let mut state = self.state.write();
        if state.leader_epoch != epoch {
            return;
        }
        let Role::Leader(leader) = &mut state.role else { return };
        let Some(f) = leader.followers.get_mut(&fetch.replica_id) else { return };
        f.broker_epoch = fetch.broker_epoch;
        if fetch_offset >= leader_log_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= f.last_fetch_leader_log_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.last_fetch_leader_log_end = leader_log_end;
        f.last_fetch_ms = now_ms;
        f.log_end_offset = fetch_offset;
        state.maybe_increment_high_watermark(self.local_id);
        self.publish(&state);
    }

    /// A receiver that sees every later change of the partition's offsets
    /// or role (its current value counts as seen).
    pub fn subscribe(&self) -> watch::Receiver<PartitionOffsets> {
        self.offsets.subscribe()
    }

    /// The number of waiters subscribed to this partition.
    #[cfg(test)]
    pub(crate) fn subscribers(&self) -> usize {
        self.offsets.receiver_count()
    }

    /// Whether appending `records` now would fsync (`flush.messages`) or roll
    /// a segment: disk work to keep off the async workers. A hint (another
    /// append may come first).
    pub fn append_may_block(&self, records: &[u8], now_ms: i64) -> bool {
        let count = BatchHeader::parse(records).map_or(1, |h| i64::from(h.record_count));
        self.state.read().log.as_ref().is_some_and(|log| log.append_may_block(records.len(), count, now_ms))
    }

    /// Compacts the log's inactive segments unless none rolled since
    /// `cleaned_up_to` (what the previous pass returned). Returns how far the
    /// inactive segments now reach (-1 when the log changed under the pass, so
    /// that the next one tries again) and what the pass did.
    pub(crate) fn clean(
        &self,
        policy: &crate::log_cleaner::CleanPolicy,
        cleaned_up_to: Option<i64>,
        now_ms: i64,
    ) -> Result<(i64, crate::log_cleaner::CleanStats)> {
        self.clean_with(policy, cleaned_up_to, now_ms, &|_| {})
    }

    /// [`Partition::clean`], calling `at` before each chunk the pass reads,
    /// before each replacement's files are written and before its swap
    /// (where a test holds it).
    pub(crate) fn clean_with(
        &self,
        policy: &crate::log_cleaner::CleanPolicy,
        cleaned_up_to: Option<i64>,
        now_ms: i64,
        at: &dyn Fn(crate::log_cleaner::PassPoint),
    ) -> Result<(i64, crate::log_cleaner::CleanStats)> {
        use crate::log_cleaner::{plan, LogSnapshot, PassPoint};
        use storage::SwapOutcome;
        let snapshot = self.reading_log(LogSnapshot::of)?;
        let end = snapshot.cleanable_end();
        if cleaned_up_to == Some(end) || end < 0 {
            return Ok((end, Default::default()));
        }
        // Copy without holding the lock (each chunk read takes it briefly), so
        // produce and fetch go on during the pass...
        let read = |offset, max_bytes| {
            at(PassPoint::Read);
            self.reading_log(|log| Ok(log.read(offset, max_bytes)?))
        };
        let replacements = match plan(&read, &snapshot, policy, now_ms) {
            Ok(replacements) => replacements,
            // Retention or DeleteRecords moved the log start under the pass.
            Err(BrokerError::Storage(StorageError::OffsetOutOfRange { .. })) => return Ok((-1, Default::default())),
            Err(e) => return Err(e),
        };
        if replacements.is_empty() {
            return Ok((end, Default::default()));
        }
        // ...then, for each run, write and fsync its new segment's files
        // without the lock either, and swap them in under the write lock only
        // if the run did not change meanwhile (Kafka's cleaner).
        let _cleaning = self.cleaning.lock();
        let mut stats = crate::log_cleaner::CleanStats::default();
        for mut r in replacements {
            at(PassPoint::Stage);
            let Some(target) = self.reading_log(|log| r.target(log))? else {
                stats.skipped += 1;
                continue;
            };
            self.check_log_dir()?;
            let staged = self.watched(r.stage(target))?;
            at(PassPoint::Swap);
            match self.with_log(|log| Ok(log.swap_in(staged)?))? {
                SwapOutcome::Swapped => stats.add(&r),
                SwapOutcome::Changed(staged) => {
                    stats.skipped += 1;
                    tracing::debug!(topic = %self.topic, partition = self.index, first = r.first_base(), "segments changed while their cleaned segment was written: left for the next pass");
                    // Not into a dir that failed meanwhile: the next open removes them.
                    self.check_log_dir()?;
                    self.watched(staged.discard().map_err(BrokerError::from))?;
                }
            }
        }
        Ok((if stats.skipped > 0 { -1 } else { end }, stats))
    }

    /// Whole batches from the one holding `offset`, at most `max_bytes` (but at
    /// least one batch), never past the high watermark; whatever the role
    /// (the group coordinator's replay, timestamp lookups).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        self.check_log_dir()?;
        let state = self.state.read();
        let Some(log) = state.log.as_ref() else { return Err(self.deleted()) };
        Ok(below_offset(log.read(offset, max_bytes)?, state.high_watermark))
    }

    /// Up to `max_bytes` of batches from `offset`, past the high watermark
    /// to the log end: for replaying what a new leader holds (the group
    /// coordinator's load), never for clients.
    pub fn read_to_log_end(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        self.reading_log(|log| Ok(log.read(offset, max_bytes)?))
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.state.read().leader_epoch
    }

    /// Log start, high watermark and log end, as of the last change.
    pub fn offsets(&self) -> PartitionOffsets {
        *self.offsets.borrow()
    }

    /// The high watermark: the end of the records every in-sync replica has.
    pub fn high_watermark(&self) -> i64 {
        self.offsets().high_watermark
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.offsets().log_start
    }

    /// The offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.offsets().log_end
    }

    /// The first record at or after the log start offset with a timestamp at or
    /// after `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<TimestampAndOffset>> {
        let start = self.log_start_offset();
        let matches = |t: i64, o: i64| t >= ts && o >= start;
        let Some(batch) = self.reading_log(|log| Ok(log.batch_at_or_after_timestamp(ts)?))? else {
            return Ok(None);
        };
        match find_record(batch, matches, false) {
            Some(found) => Ok(Some(found)),
            // The time index found a batch below the log start (DeleteRecords moved
            // it into a segment): look on from the start, as Kafka does.
            None => self.scan_for_timestamp(start, matches),
        }
    }

    /// The first record from `start` on that `matches` (timestamp, offset),
    /// decoding only batches whose max timestamp could match.
    fn scan_for_timestamp(&self, start: i64, matches: impl Fn(i64, i64) -> bool + Copy) -> Result<Option<TimestampAndOffset>> {
        let mut offset = start;
        while offset < self.high_watermark() {
            let bytes = self.read(offset, 1 << 20)?;
            let mut position = 0;
            while let Ok(h) = BatchHeader::parse(&bytes[position..]) {
                let size = h.total_size();
                if position + size > bytes.len() {
                    break;
                }
                if matches(h.max_timestamp, h.last_offset()) {
                    if let Some(found) = find_record(bytes.slice(position..position + size), matches, false) {
                        return Ok(Some(found));
                    }
                }
                offset = h.next_offset();
                position += size;
            }
            if position == 0 {
                break;
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (the first one on ties, as Kafka).
    pub fn max_timestamp(&self) -> Result<Option<TimestampAndOffset>> {
        let batch = self.reading_log(|log| Ok(log.batch_with_max_timestamp()?))?;
        Ok(batch.and_then(|b| find_record(b, |_, _| true, true)))
    }

    /// The offset below which the log is flushed (its recovery point).
    pub fn recovery_point(&self) -> Result<i64> {
        self.reading_log(|log| Ok(log.recovery_point()))
    }

    /// The log dir this partition lives in.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Bytes of record batches in the partition's segments.
    pub fn size_in_bytes(&self) -> Result<u64> {
        self.reading_log(|log| Ok(log.size_in_bytes()))
    }

    /// DeleteRecords: moves the log start offset to `offset` (-1: the high
    /// watermark), deleting the segments wholly below it, and returns the new
    /// low watermark. Past the high watermark, or negative, is
    /// OFFSET_OUT_OF_RANGE, as in Kafka; an offset below the current start
    /// changes nothing.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let high_watermark = self.high_watermark();
        let offset = if offset == -1 { high_watermark } else { offset };
        if !(0..=high_watermark).contains(&offset) {
            return Err(BrokerError::kafka(
                ResponseError::OffsetOutOfRange,
                format!(
                    "Cannot increment the log start offset to {offset} of partition {}-{} since it is larger than the high watermark {high_watermark}",
                    self.topic, self.index
                ),
            ));
        }
        self.advance_log_start_offset(offset)
    }

    /// Moves the log start offset forward to `offset` (at most the log end),
    /// as a `log-start-offset-checkpoint` recorded it; returns the new start.
    pub fn advance_log_start_offset(&self, offset: i64) -> Result<i64> {
        self.with_log(|log| {
            log.advance_log_start_offset(offset.min(log.log_end_offset()))?;
            Ok(log.log_start_offset())
        })
    }

    /// What the topic's configs ask of produced batches (compression, timestamps).
    pub fn produce_policy(&self) -> ProducePolicy {
        *self.produce_policy.read()
    }

    /// Sets the produce policy (a topic config change).
    pub fn set_produce_policy(&self, policy: ProducePolicy) {
        *self.produce_policy.write() = policy;
        let mut state = self.state.write();
        if state.min_isr != policy.min_insync_replicas {
            state.min_isr = policy.min_insync_replicas;
            // A lower minimum may let the high watermark move now.
            state.maybe_increment_high_watermark(self.local_id);
            self.publish(&state);
        }
    }

    /// Applies new log settings (a topic config change).
    pub fn set_log_config(&self, config: LogConfig) -> Result<()> {
        self.with_log(|log| {
            log.set_config(config);
            Ok(())
        })
    }

    /// Deletes segments past retention (`retention.ms` / `retention.bytes`, None
    /// for unlimited), never beyond the high watermark; returns how many went.
    pub fn apply_retention(&self, retention_ms: Option<u64>, retention_bytes: Option<u64>, now_ms: i64) -> Result<usize> {
        let high_watermark = self.high_watermark();
        self.with_log(|log| {
            Ok(log.delete_retained_segments(retention_ms, retention_bytes, high_watermark, now_ms)?)
        })
    }

    /// Fsyncs if `flush.ms` has passed.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<()> {
        self.with_log(|log| Ok(log.maybe_flush_by_time(now_ms)?))
    }

    /// Fsyncs everything written so far.
    pub fn flush(&self) -> Result<()> {
        self.with_log(|log| Ok(log.flush()?))
    }

    /// Flushes and closes the log; later calls fail with UNKNOWN_TOPIC_OR_PARTITION.
    /// In a failed log dir the log is dropped unflushed: nothing is written there.
    pub fn close(&self) -> Result<()> {
        match self.take_log() {
            Some(_) if self.health.is_offline() => Ok(()),
            Some(log) => Ok(self.health.watch(log.close())?),
            None => Ok(()),
        }
    }

    /// Takes the log out, waking every waiter (they find it gone).
    fn take_log(&self) -> Option<Log> {
        // Not while the cleaner writes into the log's directory.
        let _cleaning = self.cleaning.lock();
        let mut state = self.state.write();
        let log = state.log.take();
        let offsets = state.offsets();
        self.offsets.send_modify(|o| *o = offsets);
        log
    }

    /// Closes the log and removes its directory. In a failed log dir the
    /// directory stays; the next start removes it (the topic is gone from the metadata).
    pub fn delete(&self) -> Result<()> {
        match self.take_log() {
            Some(_) if self.health.is_offline() => Ok(()),
            Some(log) => Ok(self.health.watch(log.delete())?),
            None => Ok(()),
        }
    }
}

/// The leading whole batches of `bytes` that start below `end`: consumers never
/// see records past the high watermark.
fn below_offset(bytes: Bytes, end: i64) -> Bytes {
    let mut position = 0;
    while let Ok(header) = BatchHeader::parse(&bytes[position..]) {
        if header.base_offset >= end || position + header.total_size() > bytes.len() {
            break;
        }
        position += header.total_size();
    }
    if position == bytes.len() {
        bytes
    } else {
        bytes.slice(..position)
    }
}

/// Decodes one batch (decompressing if needed) and finds a record: the first whose
/// timestamp matches, or with `max` the one with the largest timestamp.
fn find_record(batch: Bytes, matches: impl Fn(i64, i64) -> bool, max: bool) -> Option<TimestampAndOffset> {
    let header = BatchHeader::parse(&batch).ok()?;
    let (records, _) = records::decode_records(&header, &batch, crate::record_batch::MAX_DECOMPRESSED).ok()?;
    let mut best: Option<TimestampAndOffset> = None;
    for record in records {
        let found = TimestampAndOffset { timestamp: record.timestamp(&header), offset: record.offset(&header) };
        if max {
            if best.is_none_or(|b| found.timestamp > b.timestamp) {
                best = Some(found);
            }
        } else if matches(found.timestamp, found.offset) {
            return Some(found);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use records::Compression;

    fn batch(timestamps: &[i64]) -> BytesMut {
        let entries = timestamps.iter().map(|&ts| (None, Some(Bytes::from_static(b"v")), ts));
        crate::record_batch::encode(entries, Compression::None).expect("encode")
    }

    fn partition(dir: &std::path::Path) -> Partition {
        let log = Log::open(dir, LogConfig::default(), true).expect("open");
        Partition::new("t".into(), Uuid::new_v4(), 0, log, 0)
    }

    /// A leader of replicas `replicas` with ISR `isr` at leader epoch 5, made leader at `now`.
    fn led(dir: &std::path::Path, replicas: &[i32], isr: &[i32], now: i64) -> Partition {
        let log = Log::open(dir, LogConfig::default(), true).expect("open");
        let p = Partition::open("t".into(), Uuid::new_v4(), 0, log, 0);
        let state = LeaderAndIsr { leader_epoch: 5, replicas: replicas.to_vec(), isr: isr.to_vec() };
        assert!(p.make_leader(&state, now).expect("make leader"));
        p
    }

    fn code<T: std::fmt::Debug>(r: Result<T>) -> ResponseError {
        r.expect_err("an error").response_error()
    }

    #[test]
    fn reads_stop_at_the_high_watermark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = led(dir.path(), &[0, 1], &[0, 1], 0);
        p.append(&mut batch(&[1, 2]), 0).expect("append");
        p.append(&mut batch(&[3]), 0).expect("append");
        assert_eq!(p.offsets(), PartitionOffsets { log_start: 0, high_watermark: 0, log_end: 3 }, "follower 1 has nothing yet");
        let follower = p.fetch_records(0, 1 << 20, 5, Some(1), 0).expect("follower fetch");
        assert_eq!(follower.records, p.reading_log(|l| Ok(l.read(0, 1 << 20)?)).expect("read"), "a follower reads to the log end");
        assert!(p.fetch_records(0, 1 << 20, -1, None, 0).expect("consumer fetch").records.is_empty());
        p.fetch_records(2, 1 << 20, 5, Some(1), 0).expect("follower fetch");
        assert_eq!(p.high_watermark(), 2, "the follower's fetch offset is its log end");
        let visible = p.fetch_records(0, 1 << 20, -1, None, 0).expect("consumer fetch").records;
        let header = BatchHeader::parse(&visible).expect("header");
        assert_eq!((header.base_offset, header.last_offset()), (0, 1));
        assert_eq!(visible.len(), header.total_size());
        assert_eq!(p.read(0, 1 << 20).expect("read"), visible);
    }

    #[test]
    fn the_high_watermark_is_the_smallest_log_end_in_the_isr_and_never_moves_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = led(dir.path(), &[0, 1, 2], &[0, 1, 2], 0);
        p.append(&mut batch(&[1, 2, 3, 4]), 0).expect("append");
        p.fetch_records(4, 1 << 20, -1, Some(1), 0).expect("fetch");
        assert_eq!(p.high_watermark(), 0, "replica 2 has not fetched");
        p.fetch_records(3, 1 << 20, -1, Some(2), 0).expect("fetch");
        assert_eq!(p.high_watermark(), 3);
        p.fetch_records(1, 1 << 20, -1, Some(2), 0).expect("fetch");
        assert_eq!(p.high_watermark(), 3, "never back");
        // The controller drops replica 2 from the ISR: the rest have all 4.
        let shrunk = LeaderAndIsr { leader_epoch: 5, replicas: vec![0, 1, 2], isr: vec![0, 1] };
        assert!(p.make_leader(&shrunk, 0).expect("isr change"));
        assert_eq!(p.high_watermark(), 4);
        // An ISR of the leader alone follows its log end.
        let alone = LeaderAndIsr { leader_epoch: 5, replicas: vec![0, 1, 2], isr: vec![0] };
        p.make_leader(&alone, 0).expect("isr change");
        p.append(&mut batch(&[5]), 0).expect("append");
        assert_eq!(p.offsets(), PartitionOffsets { log_start: 0, high_watermark: 5, log_end: 5 });
    }

    #[test]
    fn only_the_leader_takes_produce_and_consumer_fetch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = led(dir.path(), &[0, 1], &[0, 1], 0);
        let state = LeaderAndIsr { leader_epoch: 6, replicas: vec![0, 1], isr: vec![0, 1] };
        assert!(p.make_follower(1, &state).expect("make follower"));
        assert_eq!(p.role(), Role::Follower { leader: 1 });
        assert_eq!(code(p.append(&mut batch(&[1]), 0)), ResponseError::NotLeaderOrFollower);
        assert_eq!(code(p.fetch_records(0, 1 << 20, -1, None, 0)), ResponseError::NotLeaderOrFollower);
        assert_eq!(code(p.fetch_records(0, 1 << 20, 6, Some(1), 0)), ResponseError::NotLeaderOrFollower);
        // An older epoch changes nothing.
        let stale = LeaderAndIsr { leader_epoch: 5, replicas: vec![0, 1], isr: vec![0, 1] };
        assert!(!p.make_leader(&stale, 0).expect("stale"));
        assert!(!p.is_leader());
        assert_eq!(p.leader_epoch(), 6);
        let opened = Partition::open("t".into(), Uuid::new_v4(), 1, Log::open(&dir.path().join("x"), LogConfig::default(), true).expect("open"), 0);
        assert_eq!(code(opened.append(&mut batch(&[1]), 0)), ResponseError::NotLeaderOrFollower, "no role before the metadata gives one");
    }

    #[test]
    fn requests_with_another_leader_epoch_are_fenced_or_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = led(dir.path(), &[0], &[0], 0);
        p.append(&mut batch(&[1]), 0).expect("append");
        assert_eq!(code(p.fetch_records(0, 1 << 20, 4, None, 0)), ResponseError::FencedLeaderEpoch);
        assert_eq!(code(p.fetch_records(0, 1 << 20, 6, None, 0)), ResponseError::UnknownLeaderEpoch);
        assert_eq!(code(p.check_leader_at(4)), ResponseError::FencedLeaderEpoch);
        for epoch in [5, -1] {
            assert!(!p.fetch_records(0, 1 << 20, epoch, None, 0).expect("fetch").records.is_empty());
        }
        // The epoch check comes before the leadership check, as in Kafka.
        p.make_follower(1, &LeaderAndIsr { leader_epoch: 7, replicas: vec![0, 1], isr: vec![1] }).expect("follower");
        assert_eq!(code(p.fetch_records(0, 1 << 20, 5, None, 0)), ResponseError::FencedLeaderEpoch);
        assert_eq!(code(p.fetch_records(0, 1 << 20, 7, None, 0)), ResponseError::NotLeaderOrFollower);
    }

    #[test]
    fn offset_for_leader_epoch_is_answered_by_the_leader_up_to_its_log_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = led(dir.path(), &[0, 1], &[0, 1], 0);
        p.append(&mut batch(&[1, 2]), 0).expect("append");
        assert_eq!(p.high_watermark(), 0, "follower 1 has nothing");
        assert_eq!(p.last_offset_for_leader_epoch(5, 5).expect("latest"), (5, 2), "the log end, not the high watermark");
        assert_eq!(p.last_offset_for_leader_epoch(-1, 9).expect("above the latest"), (-1, -1));
        assert_eq!(p.last_offset_for_leader_epoch(-1, 4).expect("below the first"), (4, 0));
        assert_eq!(code(p.last_offset_for_leader_epoch(4, 5)), ResponseError::FencedLeaderEpoch);
        assert_eq!(code(p.last_offset_for_leader_epoch(6, 5)), ResponseError::UnknownLeaderEpoch);
        p.make_follower(1, &LeaderAndIsr { leader_epoch: 6, replicas: vec![0, 1], isr: vec![0, 1] }).expect("follower");
        assert_eq!(code(p.last_offset_for_leader_epoch(6, 5)), ResponseError::NotLeaderOrFollower);
        assert_eq!(p.end_offset_for_epoch(5).expect("own cache"), (5, 2), "a follower reads its own cache");
        // A new leader's epoch starts at its log end before anything is appended in it.
        p.make_leader(&LeaderAndIsr { leader_epoch: 7, replicas: vec![0, 1], isr: vec![0, 1] }, 0).expect("leader");
        assert_eq!(p.last_offset_for_leader_epoch(7, 5).expect("epoch 5"), (5, 2));
        assert_eq!(p.last_offset_for_leader_epoch(7, 6).expect("epoch 6 never led here"), (5, 2));
        assert_eq!(p.last_offset_for_leader_epoch(7, 7).expect("epoch 7"), (7, 2));
    }

    #[test]
    fn acks_all_needs_min_insync_replicas_capped_by_the_replica_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = led(dir.path(), &[0, 1], &[0], 0);
        p.set_produce_policy(ProducePolicy { min_insync_replicas: 2, ..ProducePolicy::default() });
        assert_eq!(code(p.append_as_leader(&mut batch(&[1]), -1, 0)), ResponseError::NotEnoughReplicas);
        assert_eq!(p.log_end_offset(), 0, "refused before appending");
        p.append_as_leader(&mut batch(&[1]), 1, 0).expect("acks=1 does not ask for the ISR");
        // One replica: min.insync.replicas=2 is capped at 1 (Kafka's effectiveMinIsr).
        let sole = led(&dir.path().join("sole"), &[0], &[0], 0);
        sole.set_produce_policy(ProducePolicy { min_insync_replicas: 2, ..ProducePolicy::default() });
        sole.append_as_leader(&mut batch(&[1]), -1, 0).expect("sole replica");
    }

    #[test]
    fn acks_all_completes_once_the_high_watermark_passes_the_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = led(dir.path(), &[0, 1], &[0, 1], 0);
        p.set_produce_policy(ProducePolicy { min_insync_replicas: 2, ..ProducePolicy::default() });
        let appended = p.append_as_leader(&mut batch(&[1, 2]), -1, 0).expect("append");
        assert_eq!((appended.base_offset, appended.last_offset), (0, 1));
        assert!(p.check_replicated(appended.last_offset + 1).is_none(), "follower 1 has not fetched");
        p.fetch_records(1, 1 << 20, 5, Some(1), 0).expect("fetch");
        assert!(p.check_replicated(2).is_none());
        p.fetch_records(2, 1 << 20, 5, Some(1), 0).expect("fetch");
        assert!(matches!(p.check_replicated(2), Some(Ok(()))));
        // Appended, then the ISR shrank below min.insync.replicas: the high
        // watermark stays (KIP-966's strict min ISR), so the produce waits
        // (as Kafka's, until its timeout) rather than count on the leader alone.
        let next = p.append_as_leader(&mut batch(&[3]), -1, 0).expect("append");
        p.make_leader(&LeaderAndIsr { leader_epoch: 5, replicas: vec![0, 1], isr: vec![0] }, 0).expect("shrink");
        assert!(p.check_replicated(next.last_offset + 1).is_none(), "not committed by the leader alone");
        assert_eq!(p.high_watermark(), 2);
        // With min.insync.replicas 1 the leader alone commits it.
        p.set_produce_policy(ProducePolicy { min_insync_replicas: 1, ..ProducePolicy::default() });
        assert_eq!(p.high_watermark(), 3);
        assert!(matches!(p.check_replicated(next.last_offset + 1), Some(Ok(()))));
        p.make_follower(1, &LeaderAndIsr { leader_epoch: 6, replicas: vec![0, 1], isr: vec![1] }).expect("follower");
        assert_eq!(code(p.check_replicated(100).expect("complete")), ResponseError::NotLeaderOrFollower);
    }

    #[test]
    fn isr_shrinks_by_lag_time_and_expands_once_caught_up() {
        let lag = 30_000;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = led(dir.path(), &[0, 1, 2], &[0, 1, 2], 1_000);
        p.append(&mut batch(&[1, 2]), 0).expect("append");
        assert_eq!(p.maybe_shrink_isr(1_000 + lag, lag), None, "caught up when leadership began");
        // Replica 1 fetches everything at 20 s; replica 2 never fetches.
        p.fetch_records(2, 1 << 20, 5, Some(1), 20_000).expect("fetch");
        assert_eq!(p.maybe_shrink_isr(1_000 + lag + 1, lag), Some(vec![0, 1]));
        // Behind the leader's log end at its fetch, but at the end of the previous one.
        p.append(&mut batch(&[3]), 0).expect("append");
        p.fetch_records(2, 1 << 20, 5, Some(1), 40_000).expect("fetch");
        p.fetch_records(3, 1 << 20, 5, Some(1), 60_000).expect("fetch");
        assert_eq!(p.maybe_shrink_isr(60_000 + lag, lag), Some(vec![0, 1]), "caught up at 60 s");
        assert_eq!(p.maybe_shrink_isr(40_000 + lag + 1, lag), Some(vec![0, 1]));

        let out = led(&dir.path().join("out"), &[0, 1], &[0], 0);
        out.append(&mut batch(&[1, 2]), 0).expect("append");
        out.fetch_records(1, 1 << 20, 5, Some(1), 0).expect("fetch");
        assert_eq!(out.maybe_expand_isr(1), None, "below the high watermark");
        out.fetch_records(2, 1 << 20, 5, Some(1), 0).expect("fetch");
        assert_eq!(out.maybe_expand_isr(1), Some(vec![0, 1]));
        assert_eq!(out.maybe_expand_isr(0), None);
        assert_eq!(code(out.fetch_records(0, 1 << 20, 5, Some(7), 0)), ResponseError::UnknownLeaderEpoch, "not a replica");
    }

    #[test]
    fn timestamp_lookup_finds_the_record_inside_a_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = partition(dir.path());
        p.append(&mut batch(&[100, 200, 300]), 0).expect("append");
        let found = p.offset_for_timestamp(150).expect("lookup").expect("found");
        assert_eq!(found, TimestampAndOffset { timestamp: 200, offset: 1 });
        assert_eq!(p.offset_for_timestamp(301).expect("lookup"), None);
        assert_eq!(p.max_timestamp().expect("max"), Some(TimestampAndOffset { timestamp: 300, offset: 2 }));
    }

    #[test]
    fn timestamp_lookup_skips_records_below_the_log_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = partition(dir.path());
        p.append(&mut batch(&[100, 200, 300]), 0).expect("append");
        p.append(&mut batch(&[400]), 0).expect("append");
        assert_eq!(p.delete_records_before(2).expect("delete"), 2);
        assert_eq!(p.offset_for_timestamp(150).expect("lookup"), Some(TimestampAndOffset { timestamp: 300, offset: 2 }));
        assert_eq!(p.delete_records_before(3).expect("delete"), 3);
        assert_eq!(p.offset_for_timestamp(0).expect("lookup"), Some(TimestampAndOffset { timestamp: 400, offset: 3 }));
        assert!(matches!(p.read(1, 1 << 20), Err(e) if e.code() == ResponseError::OffsetOutOfRange.code()));
    }

    #[test]
    fn a_failed_write_takes_the_whole_log_dir_offline_and_nothing_is_retried() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (failing, other) = (tmp.path().join("a"), tmp.path().join("b"));
        let healths = crate::log_dir_health::LogDirHealths::new(&[tmp.path().join("meta"), failing.clone(), other.clone()]);
        let open = |dir: &Path, name: &str| {
            let config = LogConfig { segment_bytes: 100, ..LogConfig::default() };
            let log = Log::open(&dir.join(name), config, true).expect("open");
            let health = Arc::clone(healths.of(dir).expect("a log dir"));
            Partition::new(name.into(), Uuid::new_v4(), 0, log, 0).in_log_dir(health)
        };
        let (p, neighbour, elsewhere) = (open(&failing, "p"), open(&failing, "n"), open(&other, "e"));
        p.append(&mut batch(&[1]), 0).expect("append");
        // The next append rolls a segment into a directory that is gone: an I/O error.
        std::fs::remove_dir_all(failing.join("p")).expect("remove");
        let err = p.append(&mut batch(&[2; 20]), 0).expect_err("roll fails");
        assert_eq!(err.response_error(), ResponseError::KafkaStorageError, "{err}");
        assert!(p.is_offline() && neighbour.is_offline(), "the whole dir is offline");
        assert_eq!(healths.offline_dirs(), vec![failing.clone()]);
        // Nothing is written there again, not even by a partition whose files are fine.
        let size = std::fs::metadata(failing.join("n").join("00000000000000000000.log")).expect("stat").len();
        for result in [neighbour.append(&mut batch(&[3]), 0).map(|_| ()), neighbour.flush(), p.flush(), neighbour.advance_log_start_offset(0).map(|_| ())] {
            assert_eq!(result.expect_err("offline").response_error(), ResponseError::KafkaStorageError);
        }
        assert!(matches!(neighbour.read(0, 1 << 20), Err(e) if e.response_error() == ResponseError::KafkaStorageError));
        assert!(matches!(neighbour.check_online(), Err(e) if e.to_string().contains("log dir")));
        assert_eq!(std::fs::metadata(failing.join("n").join("00000000000000000000.log")).expect("stat").len(), size);
        neighbour.close().expect("closing an offline partition writes nothing");
        // Another log dir keeps working.
        assert!(!elsewhere.is_offline());
        assert_eq!(elsewhere.append(&mut batch(&[4]), 0).expect("append").base_offset, 0);
        assert_eq!(elsewhere.read(0, 1 << 20).expect("read").len(), batch(&[4]).len());
    }

    #[test]
    fn a_restored_high_watermark_stays_within_the_log_start_and_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opened = || {
            let log = Log::open(dir.path(), LogConfig::default(), true).expect("open");
            Partition::open("t".into(), Uuid::new_v4(), 0, log, 0)
        };
        let p = opened();
        p.append_as_follower(batch(&[1, 2, 3, 4, 5]).freeze(), -1, 0).expect("append");
        p.advance_log_start_offset(1).expect("log start");
        assert_eq!(p.restore_high_watermark(Some(3)), 3, "the checkpointed value");
        assert_eq!(p.offsets(), PartitionOffsets { log_start: 1, high_watermark: 3, log_end: 5 });
        assert_eq!(p.restore_high_watermark(Some(9)), 5, "never past the log end (a lost unflushed tail)");
        assert_eq!(p.restore_high_watermark(None), 1, "no entry: 0, raised to the log start");
        // A follower keeps it until its leader's moves; reads stop there.
        drop(p);
        let p = opened();
        p.restore_high_watermark(Some(2));
        assert!(p.make_follower(1, &LeaderAndIsr { leader_epoch: 1, replicas: vec![0, 1], isr: vec![0, 1] }).expect("follow"));
        assert_eq!(p.high_watermark(), 2);
        // A leader whose followers have not fetched yet keeps it too, not the log start.
        drop(p);
        let p = opened();
        p.restore_high_watermark(Some(4));
        assert!(p.make_leader(&LeaderAndIsr { leader_epoch: 2, replicas: vec![0, 1], isr: vec![0, 1] }, 0).expect("lead"));
        assert_eq!(p.high_watermark(), 4);
    }

    #[test]
    fn a_replica_in_a_failed_log_dir_takes_no_role_and_writes_no_leader_epoch() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let healths = crate::log_dir_health::LogDirHealths::new(&[tmp.path().join("meta"), tmp.path().join("a")]);
        let health = Arc::clone(healths.of(&tmp.path().join("a")).expect("a log dir"));
        let log = Log::open(&tmp.path().join("a").join("t-0"), LogConfig::default(), true).expect("open");
        let p = Partition::new("t".into(), Uuid::new_v4(), 0, log, 0).in_log_dir(Arc::clone(&health));
        p.append(&mut batch(&[1]), 0).expect("append");
        let checkpoint = tmp.path().join("a").join("t-0").join("leader-epoch-checkpoint");
        let before = std::fs::read_to_string(&checkpoint).expect("written when it became leader");
        health.fail(&"EIO");
        let leader = LeaderAndIsr { leader_epoch: 7, replicas: vec![0], isr: vec![0] };
        assert_eq!(code(p.make_leader(&leader, 0)), ResponseError::KafkaStorageError);
        assert_eq!(code(p.make_follower(1, &leader)), ResponseError::KafkaStorageError);
        assert_eq!(p.leader_epoch(), 0);
        assert_eq!(std::fs::read_to_string(&checkpoint).expect("read"), before, "nothing written to a failed dir");
    }

    #[test]
    fn retried_idempotent_batch_gets_its_first_offset_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = partition(dir.path());
        let mut first = batch(&[1, 2]);
        // producer id 9, epoch 0, base sequence 0: bytes 43..57 of the header.
        first[43..51].copy_from_slice(&9i64.to_be_bytes());
        first[51..53].copy_from_slice(&0i16.to_be_bytes());
        first[53..57].copy_from_slice(&0i32.to_be_bytes());
        let crc = crc32c::crc32c(&first[21..]);
        first[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut retry = first.clone();
        assert_eq!(p.append(&mut first, 0).expect("append").base_offset, 0);
        assert_eq!(p.append(&mut retry, 0).expect("retry").base_offset, 0);
        assert_eq!(p.log_end_offset(), 2, "the retry appended nothing");
    }
}
