//! The follower side of replication (Kafka's `ReplicaFetcherThread` /
//! `AbstractFetcherThread`), as a state machine over an abstract leader: for
//! every partition a follower copies from one leader, first truncate the log
//! to where it agrees with the leader (by leader epoch, KIP-101 / KIP-279),
//! then fetch from its log end and append what the leader sends. The network
//! side is a [`LeaderEndpoint`]. See `replication.md`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use crate::error::Result;
use crate::partition::Partition;

/// A topic partition by name.
pub type TopicPartition = (String, i32);

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
    /// The follower's log end: it has everything below.
    pub fetch_offset: i64,
    /// The leader epoch the follower knows the leader by.
    pub current_leader_epoch: i32,
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
}

/// How a follower reaches its leader: OffsetForLeaderEpoch and Fetch (with
/// the follower's replica id), one answer per query, in query order. An
/// `Err` fails the whole request (the connection); every partition retries.
pub trait LeaderEndpoint {
    /// OffsetForLeaderEpoch for `queries`.
    fn offset_for_leader_epoch(&self, queries: &[EpochQuery]) -> impl Future<Output = Result<Vec<EpochAnswer>>> + Send;
    /// A follower Fetch of `queries`, at most `max_bytes` per partition.
    fn fetch(&self, queries: &[FetchQuery], max_bytes: usize) -> impl Future<Output = Result<Vec<FetchAnswer>>> + Send;
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
}

struct Followed {
    partition: Arc<Partition>,
    /// The epoch of the leader it follows.
    leader_epoch: i32,
    state: FetchState,
    /// The last error the leader answered, kept for operators and tests.
    last_error: Option<ResponseError>,
}

/// Copies the partitions one follower (`node_id`) follows from one leader.
pub struct ReplicaFetcher {
    node_id: i32,
    leader_id: i32,
    max_bytes: usize,
    partitions: BTreeMap<TopicPartition, Followed>,
}

impl ReplicaFetcher {
    /// A fetcher of follower `node_id` from leader `leader_id`, fetching at
    /// most `max_bytes` per partition (`replica.fetch.max.bytes`).
    pub fn new(node_id: i32, leader_id: i32, max_bytes: usize) -> ReplicaFetcher {
        ReplicaFetcher { node_id, leader_id, max_bytes, partitions: BTreeMap::new() }
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
        self.partitions.insert(key, Followed { partition, leader_epoch, state: FetchState::Truncating, last_error: None });
    }

    /// Stops following a partition.
    pub fn remove_partition(&mut self, topic: &str, index: i32) {
        self.partitions.remove(&(topic.to_string(), index));
    }

    /// Where a followed partition is, and the leader's last error for it.
    pub fn state(&self, topic: &str, index: i32) -> Option<(FetchState, Option<ResponseError>)> {
        self.partitions.get(&(topic.to_string(), index)).map(|f| (f.state, f.last_error))
    }

    /// One round: OffsetForLeaderEpoch for the partitions that must truncate
    /// (truncating each to the answer), then one Fetch for those fetching
    /// (appending what came). Errors of one partition, the leader's or its
    /// own log's, stay with it ([`ReplicaFetcher::state`]) and it retries
    /// next round; an `Err` is a failed request.
    pub async fn do_work<E: LeaderEndpoint>(&mut self, leader: &E, now_ms: i64) -> Result<()> {
        self.truncate(leader).await?;
        self.fetch(leader, now_ms).await
    }

    async fn truncate<E: LeaderEndpoint>(&mut self, leader: &E) -> Result<()> {
        let mut queries = Vec::new();
        for (key, f) in self.partitions.iter_mut().filter(|(_, f)| f.state == FetchState::Truncating) {
            match f.partition.latest_epoch() {
                Ok(Some(epoch)) => queries.push(EpochQuery { partition: key.clone(), current_leader_epoch: f.leader_epoch, leader_epoch: epoch }),
                // No epoch to compare (an empty log): only what was
                // committed is sure to be on the leader, as Kafka.
                Ok(None) => match f.partition.truncate_to(f.partition.high_watermark()) {
                    Ok(()) => f.state = FetchState::Fetching,
                    Err(e) => f.last_error = Some(e.response_error()),
                },
                Err(e) => f.last_error = Some(e.response_error()),
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
                None => match truncation_point(&f.partition, &answer).and_then(|(offset, done)| {
                    f.partition.truncate_to(offset)?;
                    Ok(done)
                }) {
                    Ok(true) => f.state = FetchState::Fetching,
                    Ok(false) => {}
                    // This replica's own log failed: it stays to retry (an
                    // offline log dir refuses every write from now on).
                    Err(e) => f.last_error = Some(e.response_error()),
                },
                Some(ResponseError::FencedLeaderEpoch) => f.state = FetchState::Fenced,
                // The leader does not know the epoch yet, or moved: retry.
                Some(_) => {}
            }
        }
        Ok(())
    }

    async fn fetch<E: LeaderEndpoint>(&mut self, leader: &E, now_ms: i64) -> Result<()> {
        let queries: Vec<FetchQuery> = self
            .partitions
            .iter()
            .filter(|(_, f)| f.state == FetchState::Fetching)
            .map(|(key, f)| FetchQuery {
                partition: key.clone(),
                fetch_offset: f.partition.log_end_offset(),
                current_leader_epoch: f.leader_epoch,
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
                    if let Err(e) = apply_fetched(&f.partition, answer, now_ms) {
                        f.last_error = Some(e.response_error());
                    }
                }
                Some(ResponseError::FencedLeaderEpoch) => f.state = FetchState::Fenced,
                // OFFSET_OUT_OF_RANGE needs the leader's log start or end
                // (ListOffsets), which comes with the network endpoint;
                // other errors are retried.
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Appends what a fetch brought, then takes the leader's high watermark
/// (bounded by this log end) and log start (DeleteRecords and retention
/// reach followers so).
fn apply_fetched(partition: &Partition, answer: FetchAnswer, now_ms: i64) -> Result<()> {
    partition.append_as_follower(answer.records, now_ms)?;
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
    use super::*;
    use crate::partition::LeaderAndIsr;
    use records::Compression;
    use storage::{Log, LogConfig};
    use uuid::Uuid;

    /// A leader in this process, what the tests drive followers against.
    struct LocalLeader {
        /// The follower's replica id in the fetches.
        replica_id: i32,
        /// The leader's partitions.
        partitions: BTreeMap<TopicPartition, Arc<Partition>>,
    }

    impl LocalLeader {
        fn partition(&self, key: &TopicPartition) -> std::result::Result<&Arc<Partition>, ResponseError> {
            self.partitions.get(key).ok_or(ResponseError::UnknownTopicOrPartition)
        }
    }

    impl LeaderEndpoint for LocalLeader {
        fn offset_for_leader_epoch(&self, queries: &[EpochQuery]) -> impl Future<Output = Result<Vec<EpochAnswer>>> + Send {
            let answers = queries
                .iter()
                .map(|q| {
                    let found = self
                        .partition(&q.partition)
                        .and_then(|p| p.last_offset_for_leader_epoch(q.current_leader_epoch, q.leader_epoch).map_err(|e| e.response_error()));
                    match found {
                        Ok((leader_epoch, end_offset)) => EpochAnswer { error: None, leader_epoch, end_offset },
                        Err(error) => EpochAnswer { error: Some(error), leader_epoch: -1, end_offset: -1 },
                    }
                })
                .collect();
            std::future::ready(Ok(answers))
        }

        fn fetch(&self, queries: &[FetchQuery], max_bytes: usize) -> impl Future<Output = Result<Vec<FetchAnswer>>> + Send {
            let now = crate::now_ms();
            let answers = queries
                .iter()
                .map(|q| {
                    let read = self.partition(&q.partition).and_then(|p| {
                        p.fetch_records(q.fetch_offset, max_bytes, q.current_leader_epoch, Some(self.replica_id), now)
                            .map_err(|e| e.response_error())
                    });
                    match read {
                        Ok(read) => FetchAnswer {
                            error: None,
                            records: read.records,
                            high_watermark: read.offsets.high_watermark,
                            log_start_offset: read.offsets.log_start,
                        },
                        Err(error) => FetchAnswer { error: Some(error), records: Bytes::new(), high_watermark: -1, log_start_offset: -1 },
                    }
                })
                .collect();
            std::future::ready(Ok(answers))
        }
    }

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

    fn endpoint(leader: &Arc<Partition>, follower_id: i32) -> LocalLeader {
        LocalLeader { replica_id: follower_id, partitions: BTreeMap::from([(("t".to_string(), 0), Arc::clone(leader))]) }
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

    /// The values of every record in `batches`, in offset order.
    fn values(batches: &Bytes) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = batches.clone();
        while let Ok(header) = records::BatchHeader::parse(&rest) {
            let (decoded, _) = records::decode_records(&header, &rest, 1 << 20).expect("decode");
            out.extend(decoded.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()));
            rest = rest.slice(header.total_size()..);
        }
        out
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
        to_new.truncate(&endpoint).await.expect("truncate");
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
        follower.truncate_to(1).expect("truncate");
        assert_eq!(follower.offsets().high_watermark, 0, "the whole batch 0..3 went");
    }

    /// A leader whose fetched bytes were damaged on the way.
    struct Corrupting(LocalLeader);

    impl LeaderEndpoint for Corrupting {
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
        // The next, undamaged fetch takes it.
        fetcher.do_work(&endpoint(&leader, 1), 0).await.expect("round");
        assert_eq!((follower.log_end_offset(), fetcher.state("t", 0)), (1, Some((FetchState::Fetching, None))));
    }
}
