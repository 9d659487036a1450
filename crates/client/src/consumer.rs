//! The consumer: manually assigned or group-subscribed partitions, seeking, polling
//! with Fetch, and offset commits.
//!
//! [`Consumer::assign`] picks the partitions by hand; [`Consumer::subscribe`] joins
//! the consumer group `group.id` and takes the partitions its leader assigns (see
//! [`crate::group`]). Joining, rejoining after a rebalance and auto-commits all
//! happen inside [`Consumer::poll`]. Fetched record batches are decoded by
//! [`crate::records`], so headers keep their order and duplicate keys; decompression
//! is bounded per poll (see [`crate::records::DecodeBudget`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use uuid::Uuid;

use crate::cluster::{Client, ClientConfig};
use crate::error::{Error, KafkaError, Result};
use crate::group::{GroupEvent, GroupSettings, Membership};
use crate::records::{Batches, DecodeBudget};

pub use crate::records::TimestampType;

/// A position to seek to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// The log start offset.
    Earliest,
    /// The log end offset (only records produced from now on).
    Latest,
    /// This exact offset.
    At(i64),
    /// The first offset whose timestamp is at or after this time (ms since the epoch);
    /// the log end if there is none.
    Timestamp(i64),
}

/// `auto.offset.reset`: where to start when there is no position or it is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// Start at the log start.
    Earliest,
    /// Start at the log end (Kafka's default).
    Latest,
    /// Fail with OFFSET_OUT_OF_RANGE.
    None,
}

impl FromStr for AutoOffsetReset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "earliest" => Ok(AutoOffsetReset::Earliest),
            "latest" => Ok(AutoOffsetReset::Latest),
            "none" => Ok(AutoOffsetReset::None),
            other => Err(Error::InvalidConfig(format!(
                "auto.offset.reset must be earliest, latest or none, not {other:?}"
            ))),
        }
    }
}

/// `isolation.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// See every record, including those of open or aborted transactions.
    #[default]
    ReadUncommitted,
    /// See records only up to the last stable offset.
    ReadCommitted,
}

/// Consumer settings; defaults are Kafka's.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Cluster and connection settings.
    pub client: ClientConfig,
    /// `auto.offset.reset` (default latest).
    pub auto_offset_reset: AutoOffsetReset,
    /// `fetch.max.wait.ms` (default 500 ms).
    pub fetch_max_wait: Duration,
    /// `fetch.min.bytes` (default 1).
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes` (default 50 MiB).
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes` (default 1 MiB).
    pub max_partition_fetch_bytes: i32,
    /// `isolation.level` (default read_uncommitted).
    pub isolation_level: IsolationLevel,
    /// `retry.backoff.ms` (default 100 ms): pause after a failed fetch.
    pub retry_backoff: Duration,
    /// `group.id`: the consumer group, needed by [`Consumer::subscribe`] and commits.
    pub group_id: Option<String>,
    /// `group.instance.id`: makes the consumer a static member (KIP-345).
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms` (default 45 s): the coordinator drops a member that sent
    /// no heartbeat for this long.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms` (default 300 s): the rebalance timeout; a member that
    /// does not poll for this long leaves the group.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms` (default 3 s).
    pub heartbeat_interval: Duration,
    /// `enable.auto.commit` (default true): with a group, commit positions every
    /// `auto_commit_interval` inside poll, before a rebalance and on close.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms` (default 5 s).
    pub auto_commit_interval: Duration,
    /// `client.id`; `None` keeps `client.connection.client_id`.
    pub client_id: Option<String>,
}

impl ConsumerConfig {
    /// Kafka's defaults for the cluster at `bootstrap` (`host:port[,host:port]`).
    pub fn new(bootstrap: &str) -> Result<ConsumerConfig> {
        Ok(ConsumerConfig {
            client: ClientConfig::new(bootstrap)?,
            auto_offset_reset: AutoOffsetReset::Latest,
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            isolation_level: IsolationLevel::ReadUncommitted,
            retry_backoff: Duration::from_millis(100),
            group_id: None,
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            client_id: None,
        })
    }
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp in ms since the epoch.
    pub timestamp: i64,
    /// What the timestamp means.
    pub timestamp_type: TimestampType,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers in order; duplicate keys are kept, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

type TopicPartition = (String, i32);

/// A consumer of manually assigned partitions or of a group subscription.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    /// Next offset to fetch per assigned partition; `None` until reset.
    positions: BTreeMap<TopicPartition, Option<i64>>,
    /// Membership in `group.id`, if one is configured.
    group: Option<Membership>,
    /// Topics subscribed to; `None` for a manual assignment.
    subscription: Option<Vec<String>>,
    /// Set by `subscribe`: join again even if the generation is still valid.
    rejoin_requested: bool,
    next_auto_commit: Instant,
    /// Counts fetch rounds; rotates the order in which partitions are decoded, so a
    /// decompression budget that runs out does not starve the same partitions.
    fetch_round: usize,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Connects to the cluster.
    pub async fn connect(mut config: ConsumerConfig) -> Result<Consumer> {
        if let Some(id) = &config.client_id {
            config.client.connection.client_id = id.clone();
        }
        let client = Client::connect(config.client.clone()).await?;
        let group = config.group_id.as_ref().map(|group_id| {
            Membership::new(
                client.clone(),
                GroupSettings {
                    group_id: group_id.clone(),
                    group_instance_id: config.group_instance_id.clone(),
                    session_timeout: config.session_timeout,
                    rebalance_timeout: config.rebalance_timeout,
                    heartbeat_interval: config.heartbeat_interval,
                    retry_backoff: config.retry_backoff,
                },
            )
        });
        Ok(Consumer {
            client,
            next_auto_commit: Instant::now() + config.auto_commit_interval,
            config,
            positions: BTreeMap::new(),
            group,
            subscription: None,
            rejoin_requested: false,
            fetch_round: 0,
        })
    }

    /// Subscribes to `topics` as a member of the consumer group `group.id`. The
    /// consumer joins the group in its next [`Consumer::poll`], which then reads the
    /// partitions the group assigns it, from the group's committed offsets (else per
    /// `auto_offset_reset`). Fails without a `group_id`.
    pub fn subscribe(&mut self, topics: Vec<String>) -> Result<()> {
        if self.group.is_none() {
            return Err(Error::InvalidConfig(
                "subscribe needs a group.id (ConsumerConfig::group_id)".to_owned(),
            ));
        }
        self.subscription = Some(topics);
        self.rejoin_requested = true;
        Ok(())
    }

    /// The subscribed topics, if the consumer subscribed.
    pub fn subscription(&self) -> Option<&[String]> {
        self.subscription.as_deref()
    }

    fn membership(&mut self) -> Result<&mut Membership> {
        self.group.as_mut().ok_or_else(|| {
            Error::InvalidConfig(
                "committed offsets need a group.id (ConsumerConfig::group_id)".to_owned(),
            )
        })
    }

    /// Commits the current positions of every assigned partition to the group: in the
    /// group's current generation when subscribed, else as Kafka's manually assigned
    /// consumers do (generation -1). Fails with the partition's Kafka error, e.g.
    /// REBALANCE_IN_PROGRESS (the consumer rejoins in its next poll).
    pub async fn commit(&mut self) -> Result<()> {
        let offsets = committable(&self.positions);
        self.membership()?.commit(&offsets).await
    }

    /// The group's committed offset of a partition, `None` if there is none.
    pub async fn committed(&mut self, topic: &str, partition: i32) -> Result<Option<i64>> {
        let tp = (topic.to_owned(), partition);
        let found = self
            .membership()?
            .committed(std::slice::from_ref(&tp))
            .await?;
        Ok(found.get(&tp).copied())
    }

    /// Closes the consumer: with a group, commits the positions (if auto-commit is on)
    /// and leaves the group so that it rebalances at once. Returns the first error.
    pub async fn close(mut self) -> Result<()> {
        let offsets = committable(&self.positions);
        let auto_commit = self.config.enable_auto_commit;
        let subscribed = self.subscription.is_some();
        let Some(group) = self.group.as_mut() else {
            return Ok(());
        };
        let mut result = Ok(());
        // A subscribed member that lost its generation no longer owns the partitions.
        if auto_commit && (!subscribed || group.generation().is_some()) {
            result = group.commit(&offsets).await;
        }
        let left = group.leave().await;
        result.and(left)
    }

    /// Joins or rejoins the group when needed and auto-commits when due.
    async fn maintain_group(&mut self) -> Result<()> {
        let auto_commit = self.config.enable_auto_commit;
        let Some(group) = self.group.as_mut() else {
            return Ok(());
        };
        if let Some(topics) = self.subscription.clone() {
            group.polled();
            let event = group.take_event()?;
            if self.rejoin_requested || event.is_some() || group.needs_join() {
                // Eager protocol: the member gives up every partition; commit first so
                // that the next owner starts where this one stopped (Kafka's
                // onJoinPrepare). After a reset the generation is gone and so is the
                // right to commit.
                if auto_commit && group.generation().is_some() {
                    if let Err(e) = group.commit(&committable(&self.positions)).await {
                        tracing::warn!(error = %e, "commit before rejoining failed");
                    }
                }
                if let Some(GroupEvent::Reset { .. }) = event {
                    tracing::info!(group = %group.group_id(), "generation lost; rejoining");
                }
                self.positions.clear();
                let assignment = group.join(&topics).await?;
                self.rejoin_requested = false;
                // Positions start at the committed offsets (see `reset_positions`).
                self.positions = assignment.into_iter().map(|tp| (tp, None)).collect();
                self.next_auto_commit = Instant::now() + self.config.auto_commit_interval;
                return Ok(());
            }
        }
        if auto_commit && Instant::now() >= self.next_auto_commit {
            self.next_auto_commit = Instant::now() + self.config.auto_commit_interval;
            if let Err(e) = group.commit(&committable(&self.positions)).await {
                tracing::warn!(error = %e, "auto-commit failed");
            }
        }
        Ok(())
    }

    /// The cluster client the consumer uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Replaces the assignment. Partitions that stay assigned keep their positions;
    /// new ones start per `auto_offset_reset` unless sought. Ends a subscription
    /// (without LeaveGroup: the coordinator drops the member after its session timeout).
    pub fn assign(&mut self, partitions: Vec<(String, i32)>) {
        if self.subscription.take().is_some() {
            if let Some(group) = &self.group {
                // A fresh membership: the old one's heartbeats stop with it.
                self.group = Some(Membership::new(
                    self.client.clone(),
                    group.settings().clone(),
                ));
            }
        }
        let mut next = BTreeMap::new();
        for tp in partitions {
            let pos = self.positions.get(&tp).copied().flatten();
            next.insert(tp, pos);
        }
        self.positions = next;
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.positions.keys().cloned().collect()
    }

    /// The next offset to be returned for a partition, if known.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions
            .get(&(topic.to_owned(), partition))
            .copied()
            .flatten()
    }

    /// Moves an assigned partition's position.
    pub async fn seek(&mut self, topic: &str, partition: i32, offset: Offset) -> Result<()> {
        let tp = (topic.to_owned(), partition);
        if !self.positions.contains_key(&tp) {
            return Err(Error::NotAssigned {
                topic: topic.to_owned(),
                partition,
            });
        }
        let pos = match offset {
            Offset::At(o) if o >= 0 => o,
            other => {
                let found = self.list_offsets(std::slice::from_ref(&tp), other).await?;
                found.get(&tp).copied().ok_or_else(|| {
                    Error::protocol(format!(
                        "ListOffsets response has no result for {topic}-{partition}"
                    ))
                })?
            }
        };
        self.positions.insert(tp, Some(pos));
        Ok(())
    }

    /// Looks up offsets with ListOffsets: the log start (`Earliest`), log end
    /// (`Latest`) or first offset at a timestamp (the log end if none). `At(n)` is
    /// returned as is.
    pub async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        offset: Offset,
    ) -> Result<HashMap<TopicPartition, i64>> {
        let timestamp = match offset {
            Offset::Earliest => -2,
            Offset::Latest => -1,
            Offset::Timestamp(t) => t,
            Offset::At(o) => return Ok(partitions.iter().map(|tp| (tp.clone(), o)).collect()),
        };
        let mut found = self.list_offsets_at(partitions, timestamp).await?;
        // No record at or after the timestamp: Kafka answers -1; Kafka's consumer then
        // goes to the log end.
        let past_end: Vec<TopicPartition> = found
            .iter()
            .filter(|(_, o)| **o < 0)
            .map(|(tp, _)| tp.clone())
            .collect();
        if !past_end.is_empty() {
            found.extend(self.list_offsets_at(&past_end, -1).await?);
        }
        Ok(found)
    }

    /// The first offset of each partition whose record timestamp is at or after
    /// `timestamp` (ms since the epoch); `None` where no record is that recent
    /// (Kafka's -1), so the caller chooses the fallback.
    pub async fn offsets_for_time(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<HashMap<TopicPartition, Option<i64>>> {
        let found = self.list_offsets_at(partitions, timestamp.max(0)).await?;
        Ok(found
            .into_iter()
            .map(|(tp, o)| (tp, (o >= 0).then_some(o)))
            .collect())
    }

    async fn list_offsets_at(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<HashMap<TopicPartition, i64>> {
        let mut by_leader: BTreeMap<i32, Vec<&TopicPartition>> = BTreeMap::new();
        for tp in partitions {
            let leader = self.client.leader_for(&tp.0, tp.1).await?;
            by_leader.entry(leader).or_default().push(tp);
        }
        let mut out = HashMap::new();
        for (leader, tps) in by_leader {
            let mut req = ListOffsetsRequest::default();
            req.replica_id = (-1).into();
            req.isolation_level = self.isolation_level();
            req.timeout_ms =
                i32::try_from(self.config.client.connection.request_timeout.as_millis())
                    .unwrap_or(i32::MAX);
            for tp in &tps {
                let mut p = ListOffsetsPartition::default();
                p.partition_index = tp.1;
                p.timestamp = timestamp;
                p.current_leader_epoch = -1;
                match req.topics.iter_mut().find(|t| t.name.0.as_str() == tp.0) {
                    Some(t) => t.partitions.push(p),
                    None => {
                        let mut t = ListOffsetsTopic::default();
                        t.name = TopicName(StrBytes::from_string(tp.0.clone()));
                        t.partitions.push(p);
                        req.topics.push(t);
                    }
                }
            }
            let conn = self.client.broker(leader).await?;
            let resp = conn.send(&req).await?;
            for t in resp.topics {
                for p in t.partitions {
                    let tp = (t.name.0.to_string(), p.partition_index);
                    if let Some(e) = KafkaError::from_code(p.error_code, None) {
                        if e.code.is_retriable() {
                            let _ = self.client.fetch_topic(&tp.0).await;
                        }
                        let message = format!("Cannot list offsets of {}-{}.", tp.0, tp.1);
                        return Err(Error::Kafka(KafkaError {
                            code: e.code,
                            message: Some(message),
                        }));
                    }
                    out.insert(tp, p.offset);
                }
            }
        }
        Ok(out)
    }

    fn isolation_level(&self) -> i8 {
        match self.config.isolation_level {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }

    /// Gives partitions without a position one: the group's committed offset if there
    /// is a group and a commit, else per `auto_offset_reset`.
    async fn reset_positions(&mut self) -> Result<()> {
        let mut missing: Vec<TopicPartition> = self
            .positions
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if let Some(group) = self.group.as_mut() {
            let committed = group.committed(&missing).await?;
            for (tp, off) in &committed {
                if let Some(pos) = self.positions.get_mut(tp) {
                    *pos = Some(*off);
                }
            }
            missing.retain(|tp| !committed.contains_key(tp));
            if missing.is_empty() {
                return Ok(());
            }
        }
        let offset = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => Offset::Earliest,
            AutoOffsetReset::Latest => Offset::Latest,
            AutoOffsetReset::None => {
                let (t, p) = &missing[0];
                return Err(Error::Kafka(KafkaError {
                    code: ResponseError::OffsetOutOfRange,
                    message: Some(format!(
                        "no position for {t}-{p} and auto.offset.reset is none"
                    )),
                }));
            }
        };
        let found = self.list_offsets(&missing, offset).await?;
        for (tp, off) in found {
            if let Some(pos) = self.positions.get_mut(&tp) {
                *pos = Some(off);
            }
        }
        Ok(())
    }

    /// Fetches records from the assigned partitions, waiting up to `timeout` for
    /// at least one. Positions advance past what is returned.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.maintain_group().await?;
            let now = Instant::now();
            if self.positions.is_empty() {
                if self.subscription.is_none() {
                    tokio::time::sleep_until(deadline).await;
                    return Ok(Vec::new());
                }
                // A member without partitions still has to notice a rebalance.
                tokio::time::sleep_until(deadline.min(now + GROUP_CHECK_INTERVAL)).await;
                if Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                continue;
            }
            let result = match self.reset_positions().await {
                Ok(()) => {
                    self.fetch_once(deadline.saturating_duration_since(now))
                        .await
                }
                Err(e) => Err(e),
            };
            let records = match result {
                Ok(r) => r,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(error = %e, "fetch failed; retrying");
                    let _ = self.client.refresh_metadata(Some(&self.topics())).await;
                    let pause = self
                        .config
                        .retry_backoff
                        .min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                    Vec::new()
                }
                Err(e) => return Err(e),
            };
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
            // Guard against a broker that answers at once without waiting.
            if now.elapsed() < Duration::from_millis(5) {
                let pause = Duration::from_millis(20)
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
        }
    }

    fn topics(&self) -> Vec<String> {
        let mut ts: Vec<String> = self.positions.keys().map(|(t, _)| t.clone()).collect();
        ts.dedup();
        ts
    }

    /// One Fetch round: a request per leader, sent concurrently.
    async fn fetch_once(&mut self, max_wait: Duration) -> Result<Vec<ConsumerRecord>> {
        let max_wait = max_wait.min(self.config.fetch_max_wait);
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64, Uuid)>> = BTreeMap::new();
        for (tp, pos) in &self.positions {
            let Some(pos) = *pos else { continue };
            let leader = self.client.leader_for(&tp.0, tp.1).await?;
            let id = self.client.topic(&tp.0).await?.id;
            by_leader
                .entry(leader)
                .or_default()
                .push((tp.clone(), pos, id));
        }
        let mut tasks = Vec::new();
        for (leader, parts) in by_leader {
            let conn = self.client.broker(leader).await?;
            let mut version = conn.version::<FetchRequest>()?;
            // Fetch v13 names topics by id; a broker that sent no id gets v12.
            if parts.iter().any(|(_, _, id)| id.is_nil()) {
                version = version.min(12);
            }
            let mut req = FetchRequest::default();
            req.replica_id = (-1).into();
            req.max_wait_ms = i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX);
            req.min_bytes = self.config.fetch_min_bytes;
            req.max_bytes = self.config.fetch_max_bytes;
            req.isolation_level = self.isolation_level();
            req.session_id = 0;
            req.session_epoch = -1;
            let mut ids: HashMap<Uuid, String> = HashMap::new();
            for ((topic, partition), pos, id) in &parts {
                let mut fp = FetchPartition::default();
                fp.partition = *partition;
                fp.fetch_offset = *pos;
                fp.partition_max_bytes = self.config.max_partition_fetch_bytes;
                match req.topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                    Some(t) => t.partitions.push(fp),
                    None => {
                        let mut ft = FetchTopic::default();
                        ft.topic = TopicName(StrBytes::from_string(topic.clone()));
                        ft.topic_id = *id;
                        ft.partitions.push(fp);
                        req.topics.push(ft);
                    }
                }
                ids.insert(*id, topic.clone());
            }
            let pending = conn.enqueue(&req, version)?;
            tasks.push(tokio::spawn(
                async move { (pending.wait().await, version, ids) },
            ));
        }
        let mut records = Vec::new();
        let mut first_err = None;
        // One decompression budget for the whole poll; the decoding order rotates
        // from round to round so that running out of it starves nobody.
        let fetch_max = usize::try_from(self.config.fetch_max_bytes).unwrap_or(0);
        let mut budget = DecodeBudget::new(MIN_DECODE_BUDGET.max(fetch_max.saturating_mul(2)));
        let round = self.fetch_round;
        self.fetch_round = self.fetch_round.wrapping_add(1);
        let rotate_by = round % tasks.len().max(1);
        tasks.rotate_left(rotate_by);
        for task in tasks {
            let (resp, version, ids) = match task.await {
                Ok(r) => r,
                Err(e) => return Err(Error::protocol(format!("fetch task failed: {e}"))),
            };
            match resp {
                Ok(resp) => {
                    if let Err(e) = self
                        .handle_fetch_response(
                            resp,
                            version,
                            &ids,
                            &mut records,
                            &mut budget,
                            round,
                        )
                        .await
                    {
                        first_err.get_or_insert(e);
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            // Keep what other partitions returned; the error will recur on the next poll.
            Some(e) if records.is_empty() => Err(e),
            _ => Ok(records),
        }
    }

    async fn handle_fetch_response(
        &mut self,
        resp: FetchResponse,
        version: i16,
        ids: &HashMap<Uuid, String>,
        out: &mut Vec<ConsumerRecord>,
        budget: &mut DecodeBudget,
        round: usize,
    ) -> Result<()> {
        crate::error::check(resp.error_code, None)?;
        let mut parts = Vec::new();
        for t in resp.responses {
            let topic = if version >= 13 {
                match ids.get(&t.topic_id) {
                    Some(name) => name.clone(),
                    None => continue,
                }
            } else {
                t.topic.0.to_string()
            };
            for p in t.partitions {
                parts.push(Some((topic.clone(), p)));
            }
        }
        // Decode in rotated order (see `fetch_once`) but return records in the
        // response's order.
        let mut decoded: Vec<Vec<ConsumerRecord>> = vec![Vec::new(); parts.len()];
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.rotate_left(round % parts.len().max(1));
        let mut err = None;
        let mut fatal = None;
        for i in order {
            let Some((topic, p)) = parts.get_mut(i).and_then(Option::take) else {
                continue;
            };
            let tp = (topic.clone(), p.partition_index);
            let Some(Some(pos)) = self.positions.get(&tp).copied() else {
                continue;
            };
            match KafkaError::from_code(p.error_code, None) {
                None => {
                    let Some(data) = p.records else { continue };
                    match decode_records(&topic, p.partition_index, data, pos, budget) {
                        Ok((recs, next)) => {
                            if let Some(slot) = decoded.get_mut(i) {
                                *slot = recs;
                            }
                            self.positions.insert(tp, Some(next));
                        }
                        Err(e) => {
                            fatal = Some(e);
                            break;
                        }
                    }
                }
                Some(e) if e.code == ResponseError::OffsetOutOfRange => {
                    if self.config.auto_offset_reset == AutoOffsetReset::None {
                        fatal = Some(Error::Kafka(KafkaError {
                            code: e.code,
                            message: Some(format!(
                                "offset {pos} is out of range for {}-{}",
                                tp.0, tp.1
                            )),
                        }));
                        break;
                    }
                    tracing::info!(topic = %tp.0, partition = tp.1, offset = pos, "offset out of range; resetting");
                    self.positions.insert(tp, None);
                }
                Some(e) if e.code.is_retriable() || e.code == ResponseError::UnknownTopicId => {
                    err.get_or_insert(Error::Kafka(e));
                }
                Some(e) => {
                    fatal = Some(Error::Kafka(e));
                    break;
                }
            }
        }
        // Positions have moved past these records: hand them out even on error.
        out.extend(decoded.into_iter().flatten());
        if let Some(e) = fatal {
            return Err(e);
        }
        match err {
            Some(e) => {
                let _ = self.client.refresh_metadata(Some(&self.topics())).await;
                if out.is_empty() {
                    Err(e)
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }
}

/// How often a subscribed consumer without partitions checks on its group in poll.
const GROUP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The positions worth committing: every assigned partition that has one.
fn committable(positions: &BTreeMap<TopicPartition, Option<i64>>) -> Vec<(TopicPartition, i64)> {
    positions
        .iter()
        .filter_map(|(tp, pos)| pos.map(|p| (tp.clone(), p)))
        .collect()
}

/// The smallest decompression budget of a poll (it is at least twice `fetch.max.bytes`).
const MIN_DECODE_BUDGET: usize = 64 << 20;

/// Decodes the records of a fetched partition at or after `position`; returns them
/// and the next position. A trailing partial batch (cut by the fetch size) is dropped,
/// control batches are skipped, and the position moves past every decoded batch.
/// Decoding stops early when `budget` runs out. A bad batch is an error unless batches
/// before it made progress; then those are returned and the error recurs at the next
/// fetch, which starts at the bad batch.
pub(crate) fn decode_records(
    topic: &str,
    partition: i32,
    data: Bytes,
    position: i64,
    budget: &mut DecodeBudget,
) -> Result<(Vec<ConsumerRecord>, i64)> {
    let mut out = Vec::new();
    let mut next = position;
    for batch in Batches::new(data, budget) {
        let batch = match batch {
            Ok(b) => b,
            Err(e) if next == position => {
                return Err(match e {
                    Error::Protocol(m) => Error::Protocol(format!("{topic}-{partition}: {m}")),
                    e => e,
                })
            }
            Err(e) => {
                tracing::debug!(topic, partition, offset = next, error = %e, "stopping at a bad batch");
                break;
            }
        };
        if batch.last_offset < next {
            continue;
        }
        let batch_end = batch.next_offset();
        if !batch.is_control {
            for r in batch.records {
                if r.offset < next {
                    continue;
                }
                out.push(ConsumerRecord {
                    topic: topic.to_owned(),
                    partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    timestamp_type: r.timestamp_type,
                    key: r.key,
                    value: r.value,
                    headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
                });
            }
        }
        next = next.max(batch_end);
    }
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::{encode_batch, to_wire_record, Compression, ProducerRecord};

    fn budget() -> DecodeBudget {
        DecodeBudget::new(MIN_DECODE_BUDGET)
    }

    fn batch_at(base: i64, values: &[&str], codec: Compression) -> Vec<u8> {
        let recs: Vec<_> = values
            .iter()
            .map(|v| {
                to_wire_record(
                    ProducerRecord::new("t", Bytes::from(v.to_string()))
                        .with_key(Bytes::from_static(b"k"))
                        .with_header("h", Some(Bytes::from_static(b"x")))
                        .with_timestamp(1000),
                )
            })
            .collect();
        let mut bytes = encode_batch(&recs, codec).expect("encodes").to_vec();
        // Brokers assign the base offset; the CRC does not cover it.
        bytes[0..8].copy_from_slice(&base.to_be_bytes());
        bytes
    }

    #[test]
    fn decoding_skips_records_below_the_position_and_drops_a_partial_tail() {
        let mut data = batch_at(10, &["a", "b", "c"], Compression::None);
        data.extend(batch_at(13, &["d", "e"], Compression::Lz4));
        let partial = batch_at(15, &["f"], Compression::None);
        data.extend(&partial[..partial.len() - 3]);
        let (recs, next) =
            decode_records("t", 0, Bytes::from(data), 11, &mut budget()).expect("decodes");
        let got: Vec<(i64, &[u8])> = recs
            .iter()
            .map(|r| (r.offset, r.value.as_deref().unwrap_or(b"")))
            .collect();
        assert_eq!(
            got,
            vec![(11, &b"b"[..]), (12, b"c"), (13, b"d"), (14, b"e")]
        );
        assert_eq!(next, 15);
        assert_eq!(
            recs[0].headers,
            vec![("h".to_owned(), Some(Bytes::from_static(b"x")))]
        );
        assert_eq!(recs[0].timestamp_type, TimestampType::CreateTime);
    }

    #[test]
    fn control_batches_are_skipped_but_advance_the_position() {
        let mut control = batch_at(5, &["marker"], Compression::None);
        control[22] |= 0x20; // control bit (low byte of attributes)
        let crc = crc32c::crc32c(&control[21..]);
        control[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut data = control;
        data.extend(batch_at(6, &["x"], Compression::None));
        let (recs, next) =
            decode_records("t", 0, Bytes::from(data), 5, &mut budget()).expect("decodes");
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].offset, 6);
        assert_eq!(next, 7);
    }

    #[test]
    fn a_lying_record_count_is_rejected_before_allocation() {
        let mut data = batch_at(0, &["a"], Compression::None);
        data[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&data[21..]);
        data[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(decode_records("t", 0, Bytes::from(data), 0, &mut budget()).is_err());
    }

    #[test]
    fn duplicate_headers_reach_the_consumer_in_order() {
        let recs = vec![to_wire_record(
            ProducerRecord::new("t", Bytes::from_static(b"v"))
                .with_header("a", Some(Bytes::from_static(b"1")))
                .with_header("a", None)
                .with_header("a", Some(Bytes::from_static(b"3"))),
        )];
        let data = encode_batch(&recs, Compression::Snappy).expect("encodes");
        let (got, next) = decode_records("t", 0, data, 0, &mut budget()).expect("decodes");
        assert_eq!(next, 1);
        assert_eq!(
            got[0].headers,
            vec![
                ("a".to_owned(), Some(Bytes::from_static(b"1"))),
                ("a".to_owned(), None),
                ("a".to_owned(), Some(Bytes::from_static(b"3"))),
            ]
        );
    }

    #[test]
    fn a_bad_batch_after_good_ones_stops_there_and_fails_the_next_fetch() {
        let mut data = batch_at(0, &["a", "b"], Compression::None);
        let good = data.len();
        let mut bad = batch_at(2, &["c"], Compression::Gzip);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        data.extend(&bad);
        let data = Bytes::from(data);
        let (recs, next) = decode_records("t", 0, data.clone(), 0, &mut budget()).expect("decodes");
        assert_eq!(recs.len(), 2);
        assert_eq!(next, 2);
        let err =
            decode_records("t", 0, data.slice(good..), 2, &mut budget()).expect_err("bad CRC");
        assert!(err.to_string().contains("t-0"), "{err}");
    }
}
