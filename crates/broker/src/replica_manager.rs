//! The partitions this broker hosts and the produce and fetch flows over
//! them (Kafka's ReplicaManager): appends with acks=all waiting for the high
//! watermark (delayed produce), and fetches for consumers and followers that
//! wait for their own partitions' changes (delayed fetch).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use parking_lot::RwLock;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{BrokerError, Result};
use crate::fetch_session::FetchTarget;
use crate::partition::{Partition, PartitionOffsets};

/// A hosted topic's partitions, indexed by partition number.
pub struct HostedTopic {
    /// The topic's id.
    pub id: Uuid,
    /// Partitions in index order.
    pub partitions: Vec<Arc<Partition>>,
}

/// Every partition this broker hosts, and the produce and fetch flows.
pub struct ReplicaManager {
    /// This broker's id: its replica id in every partition.
    local_id: i32,
    topics: RwLock<HashMap<String, Arc<HostedTopic>>>,
    names: RwLock<HashMap<Uuid, String>>,
}

/// One partition's records of a produce request; `Err` when the request's
/// own checks (the handler's) already refused them.
pub type ProducePartition = (i32, Result<Bytes>);

/// Where one partition's produced records landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceInfo {
    /// Offset of the first record.
    pub base_offset: i64,
    /// The broker's timestamp under LogAppendTime, else -1.
    pub log_append_time: i64,
    /// The partition's log start offset after the append.
    pub log_start_offset: i64,
}

/// What a fetch asks of every partition it reads.
#[derive(Debug, Clone, Copy)]
pub struct FetchParams {
    /// -1 for a consumer, else the fetching follower's broker id.
    pub replica_id: i32,
    /// Answer by then even without `min_bytes`.
    pub max_wait: Duration,
    /// Bytes that answer at once.
    pub min_bytes: usize,
    /// The response's byte limit (already capped by `fetch.max.bytes`).
    pub max_bytes: usize,
}

/// One partition's part of a fetch response.
pub(crate) struct PartitionRead {
    /// The partition as the request named it.
    pub target: FetchTarget,
    /// The error, if it could not be read.
    pub error: Option<ResponseError>,
    /// Whole batches.
    pub records: Bytes,
    /// The high watermark when read (-1: unknown).
    pub high_watermark: i64,
    /// The log start offset when read (-1: unknown).
    pub log_start_offset: i64,
}

/// Which of a produce request's topics, partitions and results.
type TopicResults = Vec<(String, Vec<(i32, Result<ProduceInfo>)>)>;

impl ReplicaManager {
    /// No partitions yet, on broker `local_id`.
    pub fn new(local_id: i32) -> ReplicaManager {
        ReplicaManager { local_id, topics: RwLock::default(), names: RwLock::default() }
    }

    /// This broker's id.
    pub fn local_id(&self) -> i32 {
        self.local_id
    }

    /// A partition by topic name.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topics = self.topics.read();
        let hosted = topics.get(topic)?;
        usize::try_from(index).ok().and_then(|i| hosted.partitions.get(i)).cloned()
    }

    /// A hosted topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<HostedTopic>> {
        self.topics.read().get(name).cloned()
    }

    /// A topic's name by id.
    pub fn topic_name(&self, id: Uuid) -> Option<String> {
        self.names.read().get(&id).cloned()
    }

    /// Adds or replaces a topic's partitions.
    pub fn put_topic(&self, name: String, hosted: HostedTopic) {
        self.names.write().insert(hosted.id, name.clone());
        self.topics.write().insert(name, Arc::new(hosted));
    }

    /// Removes a topic, returning its partitions.
    pub fn remove_topic(&self, name: &str) -> Option<Arc<HostedTopic>> {
        let removed = self.topics.write().remove(name)?;
        self.names.write().remove(&removed.id);
        Some(removed)
    }

    /// The names of every hosted topic.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.read().keys().cloned().collect()
    }

    /// Every hosted partition.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.topics.read().values().flat_map(|t| t.partitions.iter().cloned()).collect()
    }

    /// Appends each partition's records as its leader (Kafka's
    /// `appendRecords`), in request order. With `acks` -1 it then waits,
    /// without holding a thread, until every appended partition's high
    /// watermark passes its records or `timeout` expires (REQUEST_TIMED_OUT
    /// for those still waiting), as Kafka's delayed produce. `now_ms` stamps
    /// LogAppendTime; `max_decompressed` bounds recompression.
    pub async fn append_records(
        &self,
        acks: i16,
        timeout: Duration,
        topics: Vec<(String, Vec<ProducePartition>)>,
        now_ms: i64,
        max_decompressed: usize,
    ) -> TopicResults {
        let deadline = Instant::now() + timeout;
        let mut waiting: Vec<(usize, usize, Arc<Partition>, i64)> = Vec::new();
        let mut results: TopicResults = Vec::with_capacity(topics.len());
        for (t, (name, partitions)) in topics.into_iter().enumerate() {
            let mut done = Vec::with_capacity(partitions.len());
            for (p, (index, records)) in partitions.into_iter().enumerate() {
                let appended = self.append_partition(acks, &name, index, records, now_ms, max_decompressed);
                let result = appended.map(|(partition, appended)| {
                    if acks == -1 {
                        waiting.push((t, p, Arc::clone(&partition), appended.last_offset + 1));
                    }
                    ProduceInfo {
                        base_offset: appended.base_offset,
                        log_append_time: appended.log_append_time.unwrap_or(-1),
                        log_start_offset: partition.log_start_offset(),
                    }
                });
                if let Err(e) = &result {
                    tracing::debug!(topic = %name, partition = index, error = %e, "produce rejected");
                }
                done.push((index, result));
            }
            results.push((name, done));
        }
        // Every partition must complete, so waiting for them one after the
        // other ends when the last one does, or at the deadline.
        for (t, p, partition, required_offset) in waiting {
            if let Err(e) = partition.wait_replicated(required_offset, deadline).await {
                results[t].1[p].1 = Err(e);
            }
        }
        results
    }

    fn append_partition(
        &self,
        acks: i16,
        topic: &str,
        index: i32,
        records: Result<Bytes>,
        now_ms: i64,
        max_decompressed: usize,
    ) -> Result<(Arc<Partition>, crate::partition::Appended)> {
        if !matches!(acks, -1..=1) {
            return Err(BrokerError::kafka(ResponseError::InvalidRequiredAcks, format!("acks must be -1, 0 or 1, not {acks}")));
        }
        if crate::topics::is_internal(topic) {
            return Err(BrokerError::kafka(ResponseError::InvalidTopicException, format!("Cannot append to internal topic {topic}")));
        }
        let partition = self.partition(topic, index).ok_or_else(|| {
            BrokerError::kafka(ResponseError::UnknownTopicOrPartition, format!("This server does not host {topic}-{index}."))
        })?;
        // The request's own checks, then leadership, before any work on the records.
        let records = records?;
        partition.check_leader_at(-1)?;
        // The topic's timestamp bounds and compression.type; a batch already
        // in the topic's codec comes back as None and is appended as it is.
        let rewritten = crate::recompress::prepare(&partition.produce_policy(), &records, now_ms, max_decompressed)?;
        // Base offset and leader epoch are patched in place: without a copy
        // when these bytes are the buffer's only user, else in a copy.
        let mut batches = match rewritten {
            Some(batch) => batch,
            None => records.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..])),
        };
        // An fsync (flush.messages) or a segment roll blocks: keep it off the async workers.
        let appended = if partition.append_may_block(&batches, now_ms) {
            crate::blocking(|| partition.append_as_leader(&mut batches, acks, now_ms))?
        } else {
            partition.append_as_leader(&mut batches, acks, now_ms)?
        };
        Ok((partition, appended))
    }

    /// Reads every target as its leader (Kafka's `fetchMessages`): consumers
    /// (`replica_id` -1) up to the high watermark, followers up to the log
    /// end, recording each follower's fetch offset. Answers at once with
    /// `min_bytes` or an error, else waits until one of its own partitions
    /// changes or `max_wait` passes. Before each read it reserves
    /// `reservation` bytes of `memory` (the Fetch budget), held by the
    /// returned permit; while it waits it holds none.
    pub(crate) async fn fetch_records(
        &self,
        params: &FetchParams,
        targets: &[FetchTarget],
        memory: &Arc<Semaphore>,
        reservation: u32,
    ) -> (Vec<PartitionRead>, Option<OwnedSemaphorePermit>) {
        let deadline = Instant::now() + params.max_wait;
        loop {
            // Memory first: a fetch that does not fit waits here, holding nothing.
            let permit = Arc::clone(memory).acquire_many_owned(reservation).await.ok();
            let partitions: Vec<Option<Arc<Partition>>> =
                targets.iter().map(|t| self.partition(&t.topic, t.partition)).collect();
            // Subscribe before reading, so a change between the read and the
            // wait is not missed.
            let mut changes: Vec<watch::Receiver<PartitionOffsets>> = partitions.iter().flatten().map(|p| p.subscribe()).collect();
            let reads = read_all(params, targets, &partitions, crate::now_ms());
            let total: usize = reads.iter().map(|r| r.records.len()).sum();
            let any_error = reads.iter().any(|r| r.error.is_some());
            if total >= params.min_bytes || any_error || targets.is_empty() || Instant::now() >= deadline {
                return (reads, permit);
            }
            // Waiting for data holds no memory.
            drop((reads, permit));
            tokio::select! {
                _ = any_changed(&mut changes) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// Resolves once any of `changes` sees a change (never for none).
async fn any_changed(changes: &mut [watch::Receiver<PartitionOffsets>]) {
    type Changed<'a> = Pin<Box<dyn Future<Output = std::result::Result<(), watch::error::RecvError>> + Send + 'a>>;
    let mut waits: Vec<Changed<'_>> = changes.iter_mut().map(|c| Box::pin(c.changed()) as Changed<'_>).collect();
    std::future::poll_fn(|cx| {
        // Closed (a dropped partition) counts too: the caller reads again and
        // finds it gone. No future is polled again once it has completed.
        if waits.iter_mut().any(|w| w.as_mut().poll(cx).is_ready()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// One pass over the targets, bounded as Kafka bounds a fetch: each partition
/// by its `partition_max_bytes`, all by `max_bytes`, except that the first
/// partition with data may exceed both (KIP-74).
fn read_all(params: &FetchParams, targets: &[FetchTarget], partitions: &[Option<Arc<Partition>>], now_ms: i64) -> Vec<PartitionRead> {
    let follower = (params.replica_id >= 0).then_some(params.replica_id);
    let mut remaining = params.max_bytes;
    let mut total = 0usize;
    targets
        .iter()
        .zip(partitions)
        .map(|(target, partition)| {
            let mut read = PartitionRead {
                target: target.clone(),
                error: None,
                records: Bytes::new(),
                high_watermark: -1,
                log_start_offset: -1,
            };
            let Some(partition) = partition else {
                read.error = Some(if target.topic.is_empty() && !target.topic_id.is_nil() {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                });
                return read;
            };
            let limit = (target.max_bytes.max(0) as usize).min(remaining);
            if limit == 0 && total > 0 {
                let offsets = partition.offsets();
                (read.high_watermark, read.log_start_offset) = (offsets.high_watermark, offsets.log_start);
                return read;
            }
            match partition.fetch_records(target.fetch_offset, limit, target.current_leader_epoch, follower, now_ms) {
                Ok(fetched) => {
                    (read.high_watermark, read.log_start_offset) = (fetched.offsets.high_watermark, fetched.offsets.log_start);
                    // Only the first partition with data may exceed the limits (KIP-74).
                    if fetched.records.len() <= limit || total == 0 {
                        total += fetched.records.len();
                        remaining = remaining.saturating_sub(fetched.records.len());
                        read.records = fetched.records;
                    }
                }
                Err(e) => {
                    let error = e.response_error();
                    // A partition this broker does not lead at the request's
                    // epoch tells nothing of its offsets.
                    if !matches!(
                        error,
                        ResponseError::NotLeaderOrFollower | ResponseError::FencedLeaderEpoch | ResponseError::UnknownLeaderEpoch
                    ) {
                        let offsets = partition.offsets();
                        (read.high_watermark, read.log_start_offset) = (offsets.high_watermark, offsets.log_start);
                    }
                    read.error = Some(error);
                }
            }
            read
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::LeaderAndIsr;
    use crate::recompress::ProducePolicy;
    use records::Compression;
    use storage::{Log, LogConfig};

    fn records(values: &[&'static [u8]]) -> Bytes {
        let entries = values.iter().map(|&v| (None, Some(Bytes::from_static(v)), 1_000));
        crate::record_batch::encode(entries, Compression::None).expect("encode").freeze()
    }

    /// A manager on broker 0 hosting `topic`-0 led at epoch 3 with these replicas and ISR.
    fn hosting(rm: &ReplicaManager, dir: &std::path::Path, topic: &str, replicas: &[i32], isr: &[i32]) -> Arc<Partition> {
        let log = Log::open(&dir.join(format!("{topic}-0")), LogConfig::default(), true).expect("open");
        let partition = Partition::open(topic.into(), Uuid::new_v4(), 0, log, 0);
        let leadership = LeaderAndIsr { leader_epoch: 3, replicas: replicas.to_vec(), isr: isr.to_vec() };
        partition.make_leader(&leadership, 0).expect("leader");
        let partition = Arc::new(partition);
        rm.put_topic(topic.into(), HostedTopic { id: partition.topic_id, partitions: vec![Arc::clone(&partition)] });
        partition
    }

    fn produce(topic: &str, values: &[&'static [u8]]) -> Vec<(String, Vec<ProducePartition>)> {
        vec![(topic.to_string(), vec![(0, Ok(records(values)))])]
    }

    fn target(topic: &str, fetch_offset: i64) -> FetchTarget {
        FetchTarget { topic: topic.into(), topic_id: Uuid::nil(), partition: 0, fetch_offset, max_bytes: 1 << 20, current_leader_epoch: -1 }
    }

    /// A consumer waits for a byte; a follower here answers at once.
    fn params(replica_id: i32) -> FetchParams {
        let min_bytes = if replica_id < 0 { 1 } else { 0 };
        FetchParams { replica_id, max_wait: Duration::from_secs(600), min_bytes, max_bytes: 1 << 20 }
    }

    fn only(results: TopicResults) -> Result<ProduceInfo> {
        results.into_iter().next().expect("topic").1.into_iter().next().expect("partition").1
    }

    /// A consumer fetch of `topic`-0 from offset 0, waiting for a byte.
    fn consume_in_background(rm: &Arc<ReplicaManager>, topic: &'static str) -> tokio::task::JoinHandle<Vec<PartitionRead>> {
        let rm = Arc::clone(rm);
        tokio::spawn(async move {
            let memory = Arc::new(Semaphore::new(1 << 24));
            rm.fetch_records(&params(-1), &[target(topic, 0)], &memory, 1 << 20).await.0
        })
    }

    async fn until(condition: impl Fn() -> bool) {
        while !condition() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn acks_all_waits_until_the_follower_has_fetched_the_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rm = Arc::new(ReplicaManager::new(0));
        let partition = hosting(&rm, dir.path(), "t", &[0, 1], &[0, 1]);
        let producing = {
            let rm = Arc::clone(&rm);
            tokio::spawn(async move { rm.append_records(-1, Duration::from_secs(600), produce("t", &[b"a", b"b"]), 0, 1 << 20).await })
        };
        until(|| partition.log_end_offset() == 2).await;
        assert_eq!(partition.high_watermark(), 0);
        assert!(!producing.is_finished());
        // The follower's fetch from offset 2 says it has both records.
        let memory = Arc::new(Semaphore::new(1 << 24));
        let (reads, _) = rm.fetch_records(&params(1), &[target("t", 2)], &memory, 1 << 20).await;
        assert_eq!(reads[0].error, None);
        let info = only(producing.await.expect("join")).expect("acknowledged");
        assert_eq!(info.base_offset, 0);
        assert_eq!(partition.high_watermark(), 2);
    }

    #[tokio::test]
    async fn acks_all_times_out_when_the_isr_does_not_catch_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rm = ReplicaManager::new(0);
        let partition = hosting(&rm, dir.path(), "t", &[0, 1], &[0, 1]);
        let result = only(rm.append_records(-1, Duration::from_millis(20), produce("t", &[b"a"]), 0, 1 << 20).await);
        assert_eq!(result.expect_err("timed out").response_error(), ResponseError::RequestTimedOut);
        assert_eq!(partition.offsets(), PartitionOffsets { log_start: 0, high_watermark: 0, log_end: 1 }, "appended, not committed");
        // acks=1 does not wait.
        let result = only(rm.append_records(1, Duration::from_millis(0), produce("t", &[b"b"]), 0, 1 << 20).await);
        assert_eq!(result.expect("acks=1").base_offset, 1);
    }

    #[tokio::test]
    async fn acks_all_below_min_insync_replicas_appends_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rm = ReplicaManager::new(0);
        let partition = hosting(&rm, dir.path(), "t", &[0, 1], &[0]);
        partition.set_produce_policy(ProducePolicy { min_insync_replicas: 2, ..ProducePolicy::default() });
        let result = only(rm.append_records(-1, Duration::from_secs(600), produce("t", &[b"a"]), 0, 1 << 20).await);
        assert_eq!(result.expect_err("refused").response_error(), ResponseError::NotEnoughReplicas);
        assert_eq!(partition.log_end_offset(), 0);
    }

    #[tokio::test]
    async fn a_waiting_fetch_is_woken_by_its_own_partitions_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rm = Arc::new(ReplicaManager::new(0));
        let a = hosting(&rm, dir.path(), "a", &[0], &[0]);
        let b = hosting(&rm, dir.path(), "b", &[0], &[0]);
        let fetching = consume_in_background(&rm, "a");
        until(|| a.subscribers() == 1).await;
        assert_eq!(b.subscribers(), 0, "the fetch of a waits on a alone");
        only(rm.append_records(1, Duration::ZERO, produce("b", &[b"for b"]), 0, 1 << 20).await).expect("append b");
        assert!(!fetching.is_finished());
        only(rm.append_records(1, Duration::ZERO, produce("a", &[b"for a"]), 0, 1 << 20).await).expect("append a");
        let reads = fetching.await.expect("join");
        assert_eq!(reads[0].records, a.read(0, 1 << 20).expect("read"));
        assert!(!reads[0].records.is_empty());
    }

    #[tokio::test]
    async fn a_follower_fetch_moves_the_high_watermark_and_wakes_consumers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rm = Arc::new(ReplicaManager::new(0));
        let partition = hosting(&rm, dir.path(), "t", &[0, 1], &[0, 1]);
        only(rm.append_records(1, Duration::ZERO, produce("t", &[b"a"]), 0, 1 << 20).await).expect("append");
        let consuming = consume_in_background(&rm, "t");
        until(|| partition.subscribers() == 1).await;
        let memory = Arc::new(Semaphore::new(1 << 24));
        let (follower, _) = rm.fetch_records(&params(1), &[target("t", 0)], &memory, 1 << 20).await;
        assert!(!follower[0].records.is_empty(), "a follower reads past the high watermark");
        assert_eq!(follower[0].high_watermark, 0);
        assert!(!consuming.is_finished());
        rm.fetch_records(&params(1), &[target("t", 1)], &memory, 1 << 20).await;
        let reads = consuming.await.expect("join");
        assert_eq!(reads[0].high_watermark, 1);
        assert_eq!(reads[0].records, follower[0].records);
    }
}
