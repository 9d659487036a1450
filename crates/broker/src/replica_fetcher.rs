//! The follower side of replication (Kafka's `ReplicaFetcherThread` /
//! `AbstractFetcherThread`), as a state machine over an abstract leader: for
//! every partition a follower copies from one leader, first make sure its
//! log agrees with the leader's by leader epoch (KIP-101 / KIP-279; with
//! Fetch v12+ the leader's `diverging_epoch` answers carry it, KIP-320), then
//! fetch from its log end and append what the leader sends. The network side
//! is a [`LeaderEndpoint`] ([`endpoint::RemoteLeader`] over TCP); the tasks
//! that drive it are in `replica_fetcher_manager.rs`. See `replication.md`.

pub mod endpoint;
#[cfg(test)]
pub(crate) mod local;
#[cfg(test)]
mod sim;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use crate::error::{BrokerError, Result};
use crate::partition::Partition;

/// A topic partition by name.
pub type TopicPartition = (String, i32);

/// Kafka's `replica.fetch.backoff.ms` default.
pub const DEFAULT_BACKOFF_MS: i64 = 1_000;

/// One partition of an OffsetForLeaderEpoch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochQuery {
    /// The partition.
    pub partition: TopicPartition,
    /// The leader epoch the follower knows the leader by (fences stale leaders).
    pub current_leader_epoch: i32,
    /// The epoch whose end the follower asks for: its own latest.
    pub leader_epoch: i32,
}

/// The leader's answer for one partition of OffsetForLeaderEpoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochAnswer {
    /// The partition's error, if any.
    pub error: Option<ResponseError>,
    /// The largest epoch <= the one asked for in the leader's log (-1: none).
    pub leader_epoch: i32,
    /// Where that epoch ended in the leader's log (-1: unknown).
    pub end_offset: i64,
}

/// One partition of a follower's Fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchQuery {
    /// The partition.
    pub partition: TopicPartition,
    /// Its topic's id (Fetch v13+ names topics by id).
    pub topic_id: Uuid,
    /// The follower's log end: it has everything below.
    pub fetch_offset: i64,
    /// The leader epoch the follower knows the leader by.
    pub current_leader_epoch: i32,
    /// The epoch of the last batch in the follower's log, for the leader to
    /// check (-1: none, or truncation goes through OffsetForLeaderEpoch).
    pub last_fetched_epoch: i32,
    /// The follower's log start offset.
    pub log_start_offset: i64,
}

/// The leader's answer for one partition of a follower's Fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchAnswer {
    /// The partition's error, if any.
    pub error: Option<ResponseError>,
    /// Whole batches from the fetch offset on (a partial last one is ignored).
    pub records: Bytes,
    /// The leader's high watermark.
    pub high_watermark: i64,
    /// The leader's log start offset.
    pub log_start_offset: i64,
    /// The follower's last fetched epoch diverges from the leader's log:
    /// the largest epoch <= it there and where it ended (no records then).
    pub diverging_epoch: Option<(i32, i64)>,
}

/// Which offset of the leader's log a follower asks for with ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (a replica's "latest", not the high watermark).
    Latest,
}

/// How a follower reaches its leader: OffsetForLeaderEpoch, Fetch and
/// ListOffsets (each with the follower's replica id), one answer per query,
/// in query order. An `Err` fails the whole request (the connection); every
/// partition retries after the backoff.
pub trait LeaderEndpoint {
    /// Whether the leader answers Fetch with diverging epochs (v12+): then
    /// a partition with epochs in its log fetches at once and truncates on
    /// the answers, else it asks OffsetForLeaderEpoch first (Kafka's
    /// `isTruncationOnFetchSupported`).
    fn truncation_on_fetch(&self) -> bool;
    /// OffsetForLeaderEpoch for `queries`.
    fn offset_for_leader_epoch(&self, queries: &[EpochQuery]) -> impl Future<Output = Result<Vec<EpochAnswer>>> + Send;
    /// A follower Fetch of `queries`, at most `max_bytes` per partition.
    fn fetch(&self, queries: &[FetchQuery], max_bytes: usize) -> impl Future<Output = Result<Vec<FetchAnswer>>> + Send;
    /// ListOffsets of one partition as a replica: the offset, or the
    /// partition's error.
    fn list_offset(
        &self,
        partition: &TopicPartition,
        current_leader_epoch: i32,
        spec: OffsetSpec,
    ) -> impl Future<Output = Result<std::result::Result<i64, ResponseError>>> + Send;
}

/// Where a followed partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchState {
    /// It must find where its log agrees with the leader's before fetching.
    Truncating,
    /// It fetches from its log end.
    Fetching,
    /// The leader has a newer epoch than it was told of: it waits until
    /// the metadata gives it one ([`ReplicaFetcher::add_partition`]).
    Fenced,
    /// Its own log failed (an offline log dir) or is gone: it is not
    /// fetched again (Kafka's failed partitions).
    Failed,
}

struct Followed {
    partition: Arc<Partition>,
    /// The epoch of the leader it follows.
    leader_epoch: i32,
    state: FetchState,
    /// The last error, the leader's or its own log's, kept for operators and tests.
    last_error: Option<ResponseError>,
    /// Not worked on before this time (ms): the backoff after an error.
    retry_at_ms: i64,
}

impl Followed {
    fn ready(&self, state: FetchState, now_ms: i64) -> bool {
        self.state == state && self.retry_at_ms <= now_ms
    }

    /// The leader answered `error` for this partition: FENCED_LEADER_EPOCH
    /// waits for the metadata; the others (NOT_LEADER_OR_FOLLOWER,
    /// UNKNOWN_LEADER_EPOCH, unknown topic, ...) retry after the backoff.
    fn leader_failed(&mut self, error: ResponseError, now_ms: i64, backoff_ms: i64) {
        self.last_error = Some(error);
        if error == ResponseError::FencedLeaderEpoch {
            self.state = FetchState::Fenced;
        } else {
            self.retry_at_ms = now_ms + backoff_ms;
        }
    }

    /// This replica's own log refused: a failed log dir or a deleted log
    /// stops it; a newer epoch or another role here waits for the metadata
    /// (which re-adds or removes it); anything else (a damaged batch) is
    /// retried after the backoff.
    fn local_failed(&mut self, e: &BrokerError, now_ms: i64, backoff_ms: i64) {
        let error = e.response_error();
        self.last_error = Some(error);
        match error {
            ResponseError::KafkaStorageError | ResponseError::UnknownTopicOrPartition => {
                tracing::error!(topic = %self.partition.topic, partition = self.partition.index, error = %e, "replica fetcher stops fetching the partition");
                self.state = FetchState::Failed;
            }
            ResponseError::FencedLeaderEpoch | ResponseError::NotLeaderOrFollower => self.state = FetchState::Fenced,
            _ => {
                tracing::warn!(topic = %self.partition.topic, partition = self.partition.index, error = %e, "cannot apply what the leader sent; retrying");
                self.retry_at_ms = now_ms + backoff_ms;
            }
        }
    }
}

/// Copies the partitions one follower (`node_id`) follows from one leader.
pub struct ReplicaFetcher {
    node_id: i32,
    leader_id: i32,
    max_bytes: usize,
    backoff_ms: i64,
    partitions: BTreeMap<TopicPartition, Followed>,
}

impl ReplicaFetcher {
    /// A fetcher of follower `node_id` from leader `leader_id`, fetching at
    /// most `max_bytes` per partition (`replica.fetch.max.bytes`), backing
    /// off a partition [`DEFAULT_BACKOFF_MS`] after an error.
    pub fn new(node_id: i32, leader_id: i32, max_bytes: usize) -> ReplicaFetcher {
        ReplicaFetcher { node_id, leader_id, max_bytes, backoff_ms: DEFAULT_BACKOFF_MS, partitions: BTreeMap::new() }
    }

    /// The backoff after a partition's error (`replica.fetch.backoff.ms`).
    pub fn with_backoff(mut self, backoff_ms: i64) -> ReplicaFetcher {
        self.backoff_ms = backoff_ms;
        self
    }

    /// The follower's broker id (its replica id in fetches).
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The leader's broker id.
    pub fn leader_id(&self) -> i32 {
        self.leader_id
    }

    /// Follows `partition` from this leader at `leader_epoch`. A new epoch
    /// (or a partition not followed yet) starts with truncation; the same
    /// epoch changes nothing; an older one is ignored.
    pub fn add_partition(&mut self, partition: Arc<Partition>, leader_epoch: i32) {
        let key = (partition.topic.clone(), partition.index);
        if self.partitions.get(&key).is_some_and(|f| f.leader_epoch >= leader_epoch) {
            return;
        }
        let followed = Followed { partition, leader_epoch, state: FetchState::Truncating, last_error: None, retry_at_ms: 0 };
        self.partitions.insert(key, followed);
    }

    /// Stops following a partition.
    pub fn remove_partition(&mut self, topic: &str, index: i32) {
        self.partitions.remove(&(topic.to_string(), index));
    }

    /// How many partitions it follows.
    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// Where a followed partition is, and the last error for it.
    pub fn state(&self, topic: &str, index: i32) -> Option<(FetchState, Option<ResponseError>)> {
        self.partitions.get(&(topic.to_string(), index)).map(|f| (f.state, f.last_error))
    }

    /// When a partition is next ready to truncate or fetch (ms; at or before
    /// now: at once); None while every partition waits for the metadata or
    /// failed.
    pub fn next_work_at(&self) -> Option<i64> {
        self.partitions
            .values()
            .filter(|f| matches!(f.state, FetchState::Truncating | FetchState::Fetching))
            .map(|f| f.retry_at_ms)
            .min()
    }

    /// One round: OffsetForLeaderEpoch for the partitions that must truncate
    /// (truncating each to the answer), then one Fetch for those fetching
    /// (appending what came, truncating on a diverging epoch, resetting on
    /// OFFSET_OUT_OF_RANGE). Errors of one partition, the leader's or its
    /// own log's, stay with it ([`ReplicaFetcher::state`]) and it retries
    /// after the backoff; an `Err` is a failed request.
    pub async fn do_work<E: LeaderEndpoint>(&mut self, leader: &E, now_ms: i64) -> Result<()> {
        self.truncate(leader, now_ms).await?;
        self.fetch(leader, now_ms).await
    }

    async fn truncate<E: LeaderEndpoint>(&mut self, leader: &E, now_ms: i64) -> Result<()> {
        let on_fetch = leader.truncation_on_fetch();
        let backoff = self.backoff_ms;
        let mut queries = Vec::new();
        for (key, f) in self.partitions.iter_mut().filter(|(_, f)| f.ready(FetchState::Truncating, now_ms)) {
            match f.partition.latest_epoch() {
                // The leader checks the last fetched epoch of every fetch.
                Ok(Some(_)) if on_fetch => f.state = FetchState::Fetching,
                Ok(Some(epoch)) => queries.push(EpochQuery { partition: key.clone(), current_leader_epoch: f.leader_epoch, leader_epoch: epoch }),
                // No epoch to compare (an empty log): only what was
                // committed is sure to be on the leader, as Kafka.
                Ok(None) => match f.partition.truncate_to(f.partition.high_watermark(), f.leader_epoch) {
                    Ok(()) => f.state = FetchState::Fetching,
                    Err(e) => f.local_failed(&e, now_ms, backoff),
                },
                Err(e) => f.local_failed(&e, now_ms, backoff),
            }
        }
        if queries.is_empty() {
            return Ok(());
        }
        let answers = leader.offset_for_leader_epoch(&queries).await?;
        for (query, answer) in queries.iter().zip(answers) {
            let Some(f) = self.partitions.get_mut(&query.partition) else { continue };
            f.last_error = answer.error;
            match answer.error {
                None => match truncate_by_epoch(f, &answer) {
                    Ok(true) => f.state = FetchState::Fetching,
                    // It lacks the leader's epoch: it asks again for its new latest.
                    Ok(false) => {}
                    Err(e) => f.local_failed(&e, now_ms, backoff),
                },
                Some(error) => f.leader_failed(error, now_ms, backoff),
            }
        }
        Ok(())
    }

    async fn fetch<E: LeaderEndpoint>(&mut self, leader: &E, now_ms: i64) -> Result<()> {
        let on_fetch = leader.truncation_on_fetch();
        let backoff = self.backoff_ms;
        let queries: Vec<FetchQuery> = self
            .partitions
            .iter()
            .filter(|(_, f)| f.ready(FetchState::Fetching, now_ms))
            .map(|(key, f)| {
                let offsets = f.partition.offsets();
                let last_fetched_epoch = if on_fetch { f.partition.latest_epoch().ok().flatten().unwrap_or(-1) } else { -1 };
                FetchQuery {
                    partition: key.clone(),
                    topic_id: f.partition.topic_id,
                    fetch_offset: offsets.log_end,
                    current_leader_epoch: f.leader_epoch,
                    last_fetched_epoch,
                    log_start_offset: offsets.log_start,
                }
            })
            .collect();
        if queries.is_empty() {
            return Ok(());
        }
        let answers = leader.fetch(&queries, self.max_bytes).await?;
        for (query, answer) in queries.iter().zip(answers) {
            let Some(f) = self.partitions.get_mut(&query.partition) else { continue };
            f.last_error = answer.error;
            match answer.error {
                None => {
                    let applied = match answer.diverging_epoch {
                        // Truncation on fetch (KIP-320): the next fetch
                        // names the new latest epoch, and is checked again.
                        Some((leader_epoch, end_offset)) => {
                            truncate_by_epoch(f, &EpochAnswer { error: None, leader_epoch, end_offset }).map(|_| ())
                        }
                        None => apply_fetched(&f.partition, answer, f.leader_epoch, now_ms),
                    };
                    if let Err(e) = applied {
                        f.local_failed(&e, now_ms, backoff);
                    }
                }
                Some(ResponseError::OffsetOutOfRange) => {
                    if let Err(e) = reset_out_of_range(leader, &query.partition, f, now_ms, backoff).await {
                        tracing::warn!(topic = %f.partition.topic, partition = f.partition.index, error = %e, "cannot ask the leader for its offsets; retrying");
                        f.retry_at_ms = now_ms + backoff;
                    }
                }
                Some(error) => f.leader_failed(error, now_ms, backoff),
            }
        }
        Ok(())
    }
}

/// Truncates to where `answer` (the leader's end of an epoch) says the logs
/// agree; true if that is final.
fn truncate_by_epoch(f: &Followed, answer: &EpochAnswer) -> Result<bool> {
    let (offset, done) = truncation_point(&f.partition, answer)?;
    if offset < f.partition.log_end_offset() {
        tracing::info!(topic = %f.partition.topic, partition = f.partition.index, offset, leader_epoch = answer.leader_epoch, end_offset = answer.end_offset, "truncating the divergent tail of the log");
    }
    f.partition.truncate_to(offset, f.leader_epoch)?;
    Ok(done)
}

/// Kafka's `fetchOffsetAndTruncate` after OFFSET_OUT_OF_RANGE: a leader whose
/// log ends below this one (an unclean election) has this replica truncate
/// to its end; a leader whose log starts past this one's end (retention,
/// DeleteRecords) has it drop its log and start at the leader's log start;
/// otherwise it fetches again from its log end.
async fn reset_out_of_range<E: LeaderEndpoint>(leader: &E, key: &TopicPartition, f: &mut Followed, now_ms: i64, backoff_ms: i64) -> Result<()> {
    let log_end = f.partition.log_end_offset();
    let latest = match leader.list_offset(key, f.leader_epoch, OffsetSpec::Latest).await? {
        Ok(offset) => offset,
        Err(error) => {
            f.leader_failed(error, now_ms, backoff_ms);
            return Ok(());
        }
    };
    let reset = if latest < log_end {
        tracing::warn!(topic = %key.0, partition = key.1, leader_log_end = latest, log_end, "the leader's log ends below this replica's: truncating to it");
        f.partition.truncate_to(latest, f.leader_epoch)
    } else {
        let earliest = match leader.list_offset(key, f.leader_epoch, OffsetSpec::Earliest).await? {
            Ok(offset) => offset,
            Err(error) => {
                f.leader_failed(error, now_ms, backoff_ms);
                return Ok(());
            }
        };
        if earliest > log_end {
            tracing::warn!(topic = %key.0, partition = key.1, leader_log_start = earliest, log_end, "the leader's log starts past this replica's end: starting afresh at it");
            f.partition.truncate_fully_and_start_at(earliest, f.leader_epoch)
        } else {
            Ok(())
        }
    };
    if let Err(e) = reset {
        f.local_failed(&e, now_ms, backoff_ms);
    }
    Ok(())
}

/// Appends what a fetch brought, then takes the leader's high watermark
/// (bounded by this log end) and log start (DeleteRecords and retention
/// reach followers so).
fn apply_fetched(partition: &Partition, answer: FetchAnswer, leader_epoch: i32, now_ms: i64) -> Result<()> {
    partition.append_as_follower(answer.records, leader_epoch, now_ms)?;
    partition.update_follower_high_watermark(answer.high_watermark)?;
    if answer.log_start_offset > partition.log_start_offset() {
        partition.advance_log_start_offset(answer.log_start_offset)?;
    }
    Ok(())
}


/// Kafka's `getOffsetTruncationState` (KIP-279): where a follower truncates
/// after the leader answered for the follower's latest epoch, and whether
/// that is final. The leader answered the largest epoch it has <= the one
/// asked, and its end. If the follower has that epoch too, both logs agree
/// up to the smaller of the two ends of it. If the follower does not have
/// it, it truncates to the end of its largest epoch below and asks again.
fn truncation_point(partition: &Partition, answer: &EpochAnswer) -> Result<(i64, bool)> {
    let log_end = partition.log_end_offset();
    if answer.end_offset < 0 {
        // The leader has nothing of the follower's epochs: keep what was committed.
        return Ok((partition.high_watermark().min(log_end), true));
    }
    if answer.leader_epoch < 0 {
        return Ok((answer.end_offset.min(log_end), true));
    }
    let (own_epoch, own_end) = partition.end_offset_for_epoch(answer.leader_epoch)?;
    if own_end < 0 {
        // The follower kept no epochs that old: the leader's end is the bound.
        return Ok((answer.end_offset.min(log_end), true));
    }
    if own_epoch != answer.leader_epoch {
        return Ok((own_end.min(log_end), false));
    }
    Ok((own_end.min(answer.end_offset).min(log_end), true))
}

#[cfg(test)]
mod tests {
    use super::local::{values, LocalLeader};
    use super::*;
    use crate::partition::LeaderAndIsr;
    use records::Compression;
    use storage::{Log, LogConfig};

    fn batch(values: &[&str]) -> bytes::BytesMut {
        let entries = values.iter().map(|v| (None, Some(Bytes::copy_from_slice(v.as_bytes())), 1));
        crate::record_batch::encode(entries, Compression::None).expect("encode")
    }

    /// Replica `local_id` of partition t-0 in `dir`.
    fn replica(dir: &std::path::Path, local_id: i32) -> Arc<Partition> {
        let log = Log::open(&dir.join(format!("t-0-{local_id}")), LogConfig::default(), true).expect("open");
        Arc::new(Partition::open("t".into(), Uuid::nil(), 0, log, local_id))
    }

    fn state(epoch: i32, isr: &[i32]) -> LeaderAndIsr {
        LeaderAndIsr { leader_epoch: epoch, replicas: vec![0, 1], isr: isr.to_vec() }
    }

    /// A leader answering OffsetForLeaderEpoch only (before Fetch v12).
    fn endpoint(leader: &Arc<Partition>, follower_id: i32) -> LocalLeader {
        LocalLeader { replica_id: follower_id, partitions: BTreeMap::from([(("t".to_string(), 0), Arc::clone(leader))]), truncation_on_fetch: false }
    }

    /// A leader answering fetches with diverging epochs (Fetch v12+).
    fn diverging_endpoint(leader: &Arc<Partition>, follower_id: i32) -> LocalLeader {
        LocalLeader { truncation_on_fetch: true, ..endpoint(leader, follower_id) }
    }

    /// Rounds until nothing moves (each round's fetch tells the leader the
    /// follower's log end; the next one brings back the high watermark).
    async fn run(fetcher: &mut ReplicaFetcher, leader: &LocalLeader, follower: &Partition, leader_partition: &Partition) {
        for _ in 0..20 {
            let before = (follower.offsets(), leader_partition.offsets());
            fetcher.do_work(leader, 0).await.expect("round");
            if (follower.offsets(), leader_partition.offsets()) == before {
                return;
            }
        }
        panic!("no convergence");
    }

    /// Every batch of `p`'s log (its high watermark must be its log end).
    fn all(p: &Partition) -> Bytes {
        assert_eq!(p.high_watermark(), p.log_end_offset());
        p.read(0, 1 << 20).expect("read")
    }

    #[tokio::test]
    async fn a_follower_catches_up_and_the_leaders_high_watermark_follows_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (leader, follower) = (replica(dir.path(), 0), replica(dir.path(), 1));
        leader.make_leader(&state(3, &[0, 1]), 0).expect("leader");
        follower.make_follower(0, &state(3, &[0, 1])).expect("follower");
        leader.append(&mut batch(&["a", "b"]), 0).expect("append");
        leader.append(&mut batch(&["c"]), 0).expect("append");
        assert_eq!(leader.high_watermark(), 0, "the follower has nothing yet");

        let mut fetcher = ReplicaFetcher::new(1, 0, 1 << 20);
        fetcher.add_partition(Arc::clone(&follower), 3);
        let endpoint = endpoint(&leader, 1);
        run(&mut fetcher, &endpoint, &follower, &leader).await;
        assert_eq!(fetcher.state("t", 0), Some((FetchState::Fetching, None)));
        assert_eq!(leader.high_watermark(), 3, "the follower's fetch offset moved it");
        assert_eq!(follower.offsets(), leader.offsets());
        assert_eq!(all(&follower), all(&leader), "byte for byte, offsets and epochs included");
        assert_eq!(follower.end_offset_for_epoch(3).expect("epochs"), (3, 3));
    }

    #[tokio::test]
    async fn a_divergent_tail_is_truncated_and_the_follower_converges_with_the_new_leader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, new) = (replica(dir.path(), 0), replica(dir.path(), 1));
        // Epoch 5: 0 leads, 1 copies offsets 0..4.
        old.make_leader(&state(5, &[0, 1]), 0).expect("leader");
        new.make_follower(0, &state(5, &[0, 1])).expect("follower");
        old.append(&mut batch(&["a", "b"]), 0).expect("append");
        old.append(&mut batch(&["c", "d"]), 0).expect("append");
        let mut to_old = ReplicaFetcher::new(1, 0, 1 << 20);
        to_old.add_partition(Arc::clone(&new), 5);
        run(&mut to_old, &endpoint(&old, 1), &new, &old).await;
        assert_eq!(new.log_end_offset(), 4);
        // 0 appends 4..6 that 1 never gets (it stops fetching), then 1 leads epoch 6.
        old.append(&mut batch(&["lost-1", "lost-2"]), 0).expect("append");
        new.make_leader(&state(6, &[1, 0]), 0).expect("new leader");
        new.append(&mut batch(&["x"]), 0).expect("append");
        new.append(&mut batch(&["y", "z"]), 0).expect("append");
        old.make_follower(1, &state(6, &[1, 0])).expect("old leader follows");
        assert_eq!(old.end_offset_for_epoch(5).expect("epochs"), (5, 6));
        assert_eq!(new.last_offset_for_leader_epoch(6, 5).expect("epochs"), (5, 4), "epoch 5 ended where 6 began");

        let mut to_new = ReplicaFetcher::new(0, 1, 1 << 20);
        to_new.add_partition(Arc::clone(&old), 6);
        let endpoint = endpoint(&new, 0);
        let before = old.reading(|l| Ok(l.read(0, 1 << 20)?)).expect("read");
        to_new.truncate(&endpoint, 0).await.expect("truncate");
        // Exactly the tail of epoch 5 the new leader never had went.
        assert_eq!(old.log_end_offset(), 4);
        assert_eq!(old.end_offset_for_epoch(5).expect("epochs"), (5, 4));
        let kept = old.reading(|l| Ok(l.read(0, 1 << 20)?)).expect("read");
        assert_eq!(values(&kept), ["a", "b", "c", "d"]);
        assert_eq!(kept, before.slice(..kept.len()), "the batches below 4 are untouched");
        assert_eq!(to_new.state("t", 0), Some((FetchState::Fetching, None)));
        run(&mut to_new, &endpoint, &old, &new).await;
        assert_eq!(old.offsets(), new.offsets());
        assert_eq!(old.log_end_offset(), 7);
        assert_eq!(all(&old), all(&new), "byte for byte with the new leader");
        for epoch in [5, 6] {
            assert_eq!(old.end_offset_for_epoch(epoch).expect("epochs"), new.end_offset_for_epoch(epoch).expect("epochs"));
        }
        let values = values(&all(&old));
        assert_eq!(values, ["a", "b", "c", "d", "x", "y", "z"]);
    }

    #[tokio::test]
    async fn a_follower_never_exposes_records_past_the_leaders_high_watermark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (leader, follower, other) = (replica(dir.path(), 0), replica(dir.path(), 1), replica(dir.path(), 2));
        // Replica 2 is in the ISR and never fetches: the leader's HW stays at 0.
        let three = LeaderAndIsr { leader_epoch: 1, replicas: vec![0, 1, 2], isr: vec![0, 1, 2] };
        leader.make_leader(&three, 0).expect("leader");
        follower.make_follower(0, &three).expect("follower");
        drop(other);
        leader.append(&mut batch(&["a", "b", "c"]), 0).expect("append");
        let mut fetcher = ReplicaFetcher::new(1, 0, 1 << 20);
        fetcher.add_partition(Arc::clone(&follower), 1);
        run(&mut fetcher, &endpoint(&leader, 1), &follower, &leader).await;
        assert_eq!((follower.log_end_offset(), leader.high_watermark()), (3, 0));
        assert_eq!(follower.high_watermark(), 0, "min(its log end, the leader's HW)");
        assert!(follower.read(0, 1 << 20).expect("read").is_empty(), "nothing committed to read");
        let consumer = follower.fetch_records(0, 1 << 20, -1, None, 0).expect_err("a follower");
        assert_eq!(consumer.response_error(), ResponseError::NotLeaderOrFollower);
        // The HW a follower learnt never goes back, but never passes its own log end.
        assert_eq!(follower.update_follower_high_watermark(2).expect("hw"), 2);
        assert_eq!(follower.update_follower_high_watermark(1).expect("hw"), 2);
        assert_eq!(follower.update_follower_high_watermark(10).expect("hw"), 3);
        follower.truncate_to(1, -1).expect("truncate");
        assert_eq!(follower.offsets().high_watermark, 0, "the whole batch 0..3 went");
    }

    /// A leader whose fetched bytes were damaged on the way.
    struct Corrupting(LocalLeader);

    impl LeaderEndpoint for Corrupting {
        fn truncation_on_fetch(&self) -> bool {
            self.0.truncation_on_fetch()
        }

        fn list_offset(
            &self,
            partition: &TopicPartition,
            current_leader_epoch: i32,
            spec: OffsetSpec,
        ) -> impl Future<Output = Result<std::result::Result<i64, ResponseError>>> + Send {
            self.0.list_offset(partition, current_leader_epoch, spec)
        }

        fn offset_for_leader_epoch(&self, queries: &[EpochQuery]) -> impl Future<Output = Result<Vec<EpochAnswer>>> + Send {
            self.0.offset_for_leader_epoch(queries)
        }

        async fn fetch(&self, queries: &[FetchQuery], max_bytes: usize) -> Result<Vec<FetchAnswer>> {
            let mut answers = self.0.fetch(queries, max_bytes).await?;
            for a in &mut answers {
                let mut bytes = a.records.to_vec();
                if let Some(last) = bytes.last_mut() {
                    *last ^= 0xff;
                }
                a.records = Bytes::from(bytes);
            }
            Ok(answers)
        }
    }

    #[tokio::test]
    async fn a_damaged_batch_from_the_leader_is_refused_and_nothing_is_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (leader, follower) = (replica(dir.path(), 0), replica(dir.path(), 1));
        leader.make_leader(&state(2, &[0, 1]), 0).expect("leader");
        follower.make_follower(0, &state(2, &[0, 1])).expect("follower");
        leader.append(&mut batch(&["a"]), 0).expect("append");
        let mut fetcher = ReplicaFetcher::new(1, 0, 1 << 20);
        fetcher.add_partition(Arc::clone(&follower), 2);
        fetcher.do_work(&Corrupting(endpoint(&leader, 1)), 0).await.expect("round");
        assert_eq!(fetcher.state("t", 0), Some((FetchState::Fetching, Some(ResponseError::CorruptMessage))));
        assert_eq!(follower.log_end_offset(), 0);
        // The next, undamaged fetch takes it, after the backoff.
        fetcher.do_work(&endpoint(&leader, 1), DEFAULT_BACKOFF_MS - 1).await.expect("round");
        assert_eq!(follower.log_end_offset(), 0, "backing off");
        fetcher.do_work(&endpoint(&leader, 1), DEFAULT_BACKOFF_MS).await.expect("round");
        assert_eq!((follower.log_end_offset(), fetcher.state("t", 0)), (1, Some((FetchState::Fetching, None))));
    }

    /// Epoch 5 led by `old` with 0..4 on both and 4..6 on `old` alone, then
    /// epoch 6 led by `new` with 4..7 of its own: `old` follows `new`.
    fn diverged(dir: &std::path::Path) -> (Arc<Partition>, Arc<Partition>) {
        let (old, new) = (replica(dir, 0), replica(dir, 1));
        old.make_leader(&state(5, &[0, 1]), 0).expect("leader");
        new.make_follower(0, &state(5, &[0, 1])).expect("follower");
        old.append(&mut batch(&["a", "b"]), 0).expect("append");
        old.append(&mut batch(&["c", "d"]), 0).expect("append");
        new.append_as_follower(old.reading(|l| Ok(l.read(0, 1 << 20)?)).expect("read"), 5, 0).expect("copy");
        old.append(&mut batch(&["lost-1", "lost-2"]), 0).expect("append");
        new.make_leader(&state(6, &[1, 0]), 0).expect("new leader");
        new.append(&mut batch(&["x"]), 0).expect("append");
        new.append(&mut batch(&["y", "z"]), 0).expect("append");
        old.make_follower(1, &state(6, &[1, 0])).expect("old leader follows");
        (old, new)
    }

    #[tokio::test]
    async fn a_diverging_epoch_in_the_fetch_answer_truncates_without_offset_for_leader_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, new) = diverged(dir.path());
        let mut fetcher = ReplicaFetcher::new(0, 1, 1 << 20);
        fetcher.add_partition(Arc::clone(&old), 6);
        let leader = diverging_endpoint(&new, 0);
        // The leader answers the fetch (last fetched epoch 5 at offset 6) with where epoch 5 ended.
        let query = FetchQuery {
            partition: ("t".into(), 0),
            topic_id: Uuid::nil(),
            fetch_offset: 6,
            current_leader_epoch: 6,
            last_fetched_epoch: 5,
            log_start_offset: 0,
        };
        let follower = crate::partition::FollowerFetch { replica_id: 0, broker_epoch: -1 };
        let answer = super::local::answer_fetch(Some(&new), follower, &query, 1 << 20, 0);
        assert_eq!((answer.diverging_epoch, answer.records.len()), (Some((5, 4)), 0));
        fetcher.do_work(&leader, 0).await.expect("round");
        assert_eq!(old.log_end_offset(), 4, "the tail of epoch 5 the new leader never had went");
        assert_eq!(fetcher.state("t", 0), Some((FetchState::Fetching, None)));
        run(&mut fetcher, &leader, &old, &new).await;
        assert_eq!(all(&old), all(&new), "byte for byte with the new leader");
        assert_eq!(values(&all(&old)), ["a", "b", "c", "d", "x", "y", "z"]);
        assert_eq!(new.high_watermark(), 7);
    }

    #[tokio::test]
    async fn a_follower_behind_the_leaders_log_start_starts_afresh_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (leader, follower) = (replica(dir.path(), 0), replica(dir.path(), 1));
        // The follower is out of the ISR: the leader's HW follows its own log end.
        leader.make_leader(&state(2, &[0]), 0).expect("leader");
        follower.make_follower(0, &state(2, &[0])).expect("follower");
        for v in ["a", "b", "c"] {
            leader.append(&mut batch(&[v, v]), 0).expect("append");
        }
        assert_eq!(leader.delete_records_before(4).expect("delete"), 4);
        let mut fetcher = ReplicaFetcher::new(1, 0, 1 << 20);
        fetcher.add_partition(Arc::clone(&follower), 2);
        let endpoint = diverging_endpoint(&leader, 1);
        fetcher.do_work(&endpoint, 0).await.expect("round");
        assert_eq!(fetcher.state("t", 0), Some((FetchState::Fetching, Some(ResponseError::OffsetOutOfRange))));
        assert_eq!(follower.offsets(), crate::partition::PartitionOffsets { log_start: 4, high_watermark: 4, log_end: 4 });
        run(&mut fetcher, &endpoint, &follower, &leader).await;
        assert_eq!(follower.offsets(), leader.offsets());
        let read = |p: &Partition| p.reading(|l| Ok(l.read(4, 1 << 20)?)).expect("read");
        assert_eq!(read(&follower), read(&leader));
        assert_eq!(values(&read(&follower)), ["c", "c"]);
    }
}
