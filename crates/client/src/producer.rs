//! The producer: partitions records, batches them per partition, sends Produce requests.
//!
//! [`Producer::send`] hands a record to a background task (the accumulator) and returns
//! a [`DeliveryFuture`]. The accumulator appends the record to its partition's open
//! batch; a batch is sent when it reaches `batch_size`, when it is `linger` old, or on
//! [`Producer::flush`]. Ready batches for the same leader share one Produce request
//! (one batch per partition per request); requests are queued on the connection in order, at most `max_in_flight` per broker.
//! Batches failing with a retriable error are retried (after a metadata refresh) until
//! `delivery_timeout` runs out.
//!
//! Limits, for now:
//! - Not idempotent: a retried batch may be written twice (if the first attempt's
//!   response was lost) or land after a later batch of the same partition.
//! - The accumulator waits (up to `max_block`) for the metadata of a topic it has not
//!   seen yet; records for other topics wait meanwhile.
//!
//! Batches are encoded by [`crate::records`], so headers keep their order and
//! duplicate keys, as in Kafka.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::cluster::{Client, ClientConfig};
use crate::error::{Error, KafkaError, Result};
use crate::partitioner::partition_for_key;
use crate::records::{BatchOptions, Header, Record, TimestampType};

pub use crate::records::Compression;

/// `acks`: how many replicas must have a record before the broker acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: the broker sends no response; offsets are unknown (-1).
    None,
    /// `acks=1`: the leader has written it.
    Leader,
    /// `acks=all` (-1): every in-sync replica has it.
    All,
}

impl Acks {
    /// The wire value: 0, 1 or -1.
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl FromStr for Acks {
    type Err = Error;
    fn from_str(s: &str) -> Result<Acks> {
        match s.trim() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "-1" | "all" | "ALL" => Ok(Acks::All),
            other => Err(Error::InvalidConfig(format!(
                "acks must be 0, 1, -1 or all, not {other:?}"
            ))),
        }
    }
}

/// Producer settings; defaults are Kafka's.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Cluster and connection settings.
    pub client: ClientConfig,
    /// `acks` (default all).
    pub acks: Acks,
    /// `linger.ms` (default 5 ms, as Kafka 4).
    pub linger: Duration,
    /// `batch.size` in bytes (default 16384).
    pub batch_size: usize,
    /// `compression.type` (default none).
    pub compression: Compression,
    /// `max.request.size` (default 1 MiB): ready batches are split across requests to stay under it.
    pub max_request_size: usize,
    /// `delivery.timeout.ms` (default 120 s): give up retrying a record after this long.
    pub delivery_timeout: Duration,
    /// `retry.backoff.ms` (default 100 ms).
    pub retry_backoff: Duration,
    /// `max.block.ms` (default 60 s): how long to wait for a topic's metadata.
    pub max_block: Duration,
    /// `max.in.flight.requests.per.connection` (default 5).
    pub max_in_flight: usize,
    /// How many records may wait for the accumulator before `send` blocks.
    pub queue_capacity: usize,
}

impl ProducerConfig {
    /// Kafka's defaults for the cluster at `bootstrap` (`host:port[,host:port]`).
    pub fn new(bootstrap: &str) -> Result<ProducerConfig> {
        let mut client = ClientConfig::new(bootstrap)?;
        // The Java producer lets the broker auto-create topics it writes to.
        client.allow_auto_topic_creation = true;
        Ok(ProducerConfig {
            client,
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16384,
            compression: Compression::None,
            max_request_size: 1024 * 1024,
            delivery_timeout: Duration::from_secs(120),
            retry_backoff: Duration::from_millis(100),
            max_block: Duration::from_secs(60),
            max_in_flight: 5,
            queue_capacity: 10_000,
        })
    }
}

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Topic name.
    pub topic: String,
    /// Partition; `None` lets the partitioner choose (by key hash, else sticky).
    pub partition: Option<i32>,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers in order; duplicate keys are kept, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    /// Sets the create timestamp (ms since the epoch).
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Offset; -1 with acks=0.
    pub offset: i64,
    /// The record's timestamp: the create time, or the broker's append time for
    /// topics with `message.timestamp.type=LogAppendTime`.
    pub timestamp: i64,
}

/// Resolves when the broker has acknowledged (or rejected) a record.
#[derive(Debug)]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => Poll::Ready(Err(Error::ProducerClosed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

type Waiter = oneshot::Sender<Result<RecordMetadata>>;

enum Command {
    Send(ProducerRecord, Waiter),
    Flush(oneshot::Sender<()>),
}

/// An asynchronous Kafka producer.
pub struct Producer {
    tx: mpsc::Sender<Command>,
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Connects to the cluster and starts the background accumulator.
    pub async fn connect(config: ProducerConfig) -> Result<Producer> {
        if config.batch_size == 0 || config.max_in_flight == 0 || config.queue_capacity == 0 {
            return Err(Error::InvalidConfig(
                "batch_size, max_in_flight and queue_capacity must be positive".to_owned(),
            ));
        }
        let client = Client::connect(config.client.clone()).await?;
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        let config_backoff = config.retry_backoff;
        let acc = Accumulator {
            client: client.clone(),
            config,
            open: HashMap::new(),
            ready: VecDeque::new(),
            sticky: HashMap::new(),
            sticky_counter: seed(),
            in_flight: JoinSet::new(),
            permits: HashMap::new(),
            retrier: Retrier {
                tx: retry_tx,
                client: client.clone(),
                backoff: config_backoff,
                sleeping: Arc::new(AtomicUsize::new(0)),
            },
            flush_waiters: Vec::new(),
        };
        let task = tokio::spawn(acc.run(rx, retry_rx));
        Ok(Producer { tx, client, task })
    }

    /// The cluster client the producer uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Queues `record` (waiting while the queue is full) and returns a future that
    /// resolves once the broker has acknowledged or rejected it.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Send(record, tx))
            .await
            .map_err(|_| Error::ProducerClosed)?;
        Ok(DeliveryFuture { rx })
    }

    /// Sends every queued record now and waits until all of them are acknowledged or failed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(tx))
            .await
            .map_err(|_| Error::ProducerClosed)?;
        rx.await.map_err(|_| Error::ProducerClosed)
    }

    /// Flushes and stops the background task.
    pub async fn close(self) -> Result<()> {
        let flushed = self.flush().await;
        drop(self.tx);
        let _ = self.task.await;
        flushed
    }
}

fn seed() -> usize {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Records bound for one partition, sent together as one record batch.
struct Batch {
    topic: String,
    topic_id: Uuid,
    partition: i32,
    records: Vec<Record>,
    waiters: Vec<Waiter>,
    /// Estimated encoded size.
    bytes: usize,
    created: Instant,
    /// When retrying stops (`delivery_timeout` after the first record arrived).
    deadline: Instant,
    /// The encoded batch, kept so a retry resends identical bytes.
    encoded: Option<Bytes>,
}

impl Batch {
    fn fail(self, err: &Error) {
        for w in self.waiters {
            let _ = w.send(Err(err.clone()));
        }
    }

    fn encode(&mut self, compression: Compression) -> Result<Bytes> {
        if let Some(b) = &self.encoded {
            return Ok(b.clone());
        }
        let bytes = encode_batch(&self.records, compression)?;
        self.encoded = Some(bytes.clone());
        Ok(bytes)
    }
}

/// Encodes `records` as one magic-v2 record batch (base offset 0, no producer id).
pub(crate) fn encode_batch(records: &[Record], compression: Compression) -> Result<Bytes> {
    crate::records::encode_batch(records, &BatchOptions::with_compression(compression))
        .map(|b| b.freeze())
}

/// Converts a producer record into a batch record (offsets are set at encoding).
pub(crate) fn to_wire_record(rec: ProducerRecord) -> Record {
    Record {
        offset: 0,
        timestamp: rec.timestamp.unwrap_or_else(now_ms),
        timestamp_type: TimestampType::CreateTime,
        key: rec.key,
        value: rec.value,
        headers: rec
            .headers
            .into_iter()
            .map(|(key, value)| Header { key, value })
            .collect(),
    }
}

fn estimate_size(r: &Record) -> usize {
    // Varint lengths, attributes and deltas; an overestimate is fine.
    let headers: usize = r
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len) + 10)
        .sum();
    21 + r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len) + headers
}

/// The size of a batch's header (everything before the records).
const BATCH_OVERHEAD: usize = 61;

struct Accumulator {
    client: Client,
    config: ProducerConfig,
    /// Open (still filling) batches, by topic and partition.
    open: HashMap<(String, i32), Batch>,
    /// Batches waiting to be sent, oldest first.
    ready: VecDeque<Batch>,
    /// The partition unkeyed records of a topic go to until its batch is sent.
    sticky: HashMap<String, i32>,
    sticky_counter: usize,
    in_flight: JoinSet<()>,
    /// In-flight request slots per broker.
    permits: HashMap<i32, Arc<Semaphore>>,
    retrier: Retrier,
    flush_waiters: Vec<oneshot::Sender<()>>,
}

impl Accumulator {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut retry_rx: mpsc::UnboundedReceiver<Batch>,
    ) {
        let mut closing = false;
        loop {
            let linger_deadline = self
                .open
                .values()
                .map(|b| b.created + self.config.linger)
                .min();
            tokio::select! {
                cmd = rx.recv(), if !closing => match cmd {
                    Some(Command::Send(rec, w)) => self.append(rec, w).await,
                    Some(Command::Flush(w)) => self.flush_waiters.push(w),
                    None => closing = true,
                },
                Some(batch) = retry_rx.recv() => self.take_retry(batch),
                () = sleep_until_opt(linger_deadline) => {}
                Some(_) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {}
            }
            // Take whatever else is queued before deciding what to send, so that a
            // burst of sends fills batches instead of producing one request each.
            while !closing {
                match rx.try_recv() {
                    Ok(Command::Send(rec, w)) => self.append(rec, w).await,
                    Ok(Command::Flush(w)) => self.flush_waiters.push(w),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => closing = true,
                }
            }
            while let Ok(batch) = retry_rx.try_recv() {
                self.take_retry(batch);
            }
            let now = Instant::now();
            let everything = closing || !self.flush_waiters.is_empty();
            let due: Vec<(String, i32)> = self
                .open
                .iter()
                .filter(|(_, b)| everything || b.created + self.config.linger <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for key in due {
                self.close_batch(&key);
            }
            self.send_ready().await;
            let idle = self.open.is_empty()
                && self.ready.is_empty()
                && self.in_flight.is_empty()
                && self.retrier.sleeping.load(Ordering::SeqCst) == 0;
            if idle {
                for w in self.flush_waiters.drain(..) {
                    let _ = w.send(());
                }
                if closing {
                    return;
                }
            }
        }
    }

    fn take_retry(&mut self, batch: Batch) {
        self.retrier.sleeping.fetch_sub(1, Ordering::SeqCst);
        self.ready.push_back(batch);
    }

    /// Moves an open batch to the ready queue and moves the topic's sticky partition on.
    fn close_batch(&mut self, key: &(String, i32)) {
        if let Some(batch) = self.open.remove(key) {
            if self.sticky.get(&key.0) == Some(&key.1) {
                self.sticky.remove(&key.0);
            }
            self.ready.push_back(batch);
        }
    }

    async fn topic_metadata(&self, topic: &str) -> Result<crate::cluster::TopicMetadata> {
        let give_up = Instant::now() + self.config.max_block;
        let mut fresh = false;
        loop {
            let res = if fresh {
                self.client.fetch_topic(topic).await
            } else {
                self.client.topic(topic).await
            };
            match res {
                Ok(t) if !t.partitions.is_empty() => return Ok(t),
                Ok(_) => {}
                Err(e) if e.is_retriable() => {
                    if Instant::now() + self.config.retry_backoff >= give_up {
                        return Err(Error::Timeout(
                            self.config.max_block,
                            format!("topic {topic} not present in metadata ({e})"),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
            if Instant::now() >= give_up {
                return Err(Error::Timeout(
                    self.config.max_block,
                    format!("topic {topic} has no partitions"),
                ));
            }
            tokio::time::sleep(self.config.retry_backoff).await;
            fresh = true;
        }
    }

    async fn append(&mut self, rec: ProducerRecord, waiter: Waiter) {
        let topic = match self.topic_metadata(&rec.topic).await {
            Ok(t) => t,
            Err(e) => {
                let _ = waiter.send(Err(e));
                return;
            }
        };
        let num_partitions = topic.partitions.len() as i32;
        let partition = match (rec.partition, &rec.key) {
            (Some(p), _) => {
                if p < 0 || p >= num_partitions {
                    let _ = waiter.send(Err(Error::Kafka(KafkaError {
                        code: ResponseError::UnknownTopicOrPartition,
                        message: Some(format!(
                            "Invalid partition given with record: {p} is not in the range [0...{num_partitions})."
                        )),
                    })));
                    return;
                }
                p
            }
            (None, Some(key)) => partition_for_key(key, num_partitions),
            (None, None) => self.sticky_partition(&topic),
        };
        let record = to_wire_record(rec);
        let size = estimate_size(&record);
        let key = (topic.name.clone(), partition);
        if let Some(b) = self.open.get(&key) {
            if b.bytes + size > self.config.batch_size && !b.records.is_empty() {
                self.close_batch(&key);
            }
        }
        let now = Instant::now();
        let batch = self.open.entry(key.clone()).or_insert_with(|| Batch {
            topic: topic.name.clone(),
            topic_id: topic.id,
            partition,
            records: Vec::new(),
            waiters: Vec::new(),
            bytes: BATCH_OVERHEAD,
            created: now,
            deadline: now + self.config.delivery_timeout,
            encoded: None,
        });
        batch.records.push(record);
        batch.waiters.push(waiter);
        batch.bytes += size;
        if batch.bytes >= self.config.batch_size {
            self.close_batch(&key);
        }
    }

    /// Kafka's sticky partitioning, simplified: unkeyed records of a topic go to one
    /// partition with a leader until that partition's batch is sent, then to the next.
    fn sticky_partition(&mut self, topic: &crate::cluster::TopicMetadata) -> i32 {
        if let Some(p) = self.sticky.get(&topic.name) {
            return *p;
        }
        let available: Vec<i32> = topic
            .partitions
            .iter()
            .filter(|p| p.leader >= 0)
            .map(|p| p.partition)
            .collect();
        let choices = if available.is_empty() {
            topic.partitions.iter().map(|p| p.partition).collect()
        } else {
            available
        };
        self.sticky_counter = self.sticky_counter.wrapping_add(1);
        let p = choices
            .get(self.sticky_counter % choices.len().max(1))
            .copied()
            .unwrap_or(0);
        self.sticky.insert(topic.name.clone(), p);
        p
    }

    fn retry_or_fail(&self, batch: Batch, err: Error) {
        self.retrier.retry_or_fail(batch, err);
    }

    /// Groups ready batches by leader and sends them.
    async fn send_ready(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let mut by_leader: Vec<(i32, Vec<Batch>)> = Vec::new();
        while let Some(batch) = self.ready.pop_front() {
            match self.client.leader_for(&batch.topic, batch.partition).await {
                Ok(leader) => match by_leader.iter_mut().find(|(l, _)| *l == leader) {
                    Some((_, v)) => v.push(batch),
                    None => by_leader.push((leader, vec![batch])),
                },
                Err(e) => self.retry_or_fail(batch, e),
            }
        }
        for (leader, batches) in by_leader {
            let conn = match self.client.broker(leader).await {
                Ok(c) => c,
                Err(e) => {
                    for b in batches {
                        self.retry_or_fail(b, e.clone());
                    }
                    continue;
                }
            };
            let version = match conn.version::<ProduceRequest>() {
                Ok(v) => v,
                Err(e) => {
                    for b in batches {
                        b.fail(&e);
                    }
                    continue;
                }
            };
            // Encode and split into requests under max_request_size.
            let mut requests: Vec<Vec<(Batch, Bytes)>> = vec![Vec::new()];
            let mut request_bytes = 0usize;
            for mut b in batches {
                let bytes = match b.encode(self.config.compression) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        b.fail(&e);
                        continue;
                    }
                };
                let last_has_room = request_bytes + bytes.len() <= self.config.max_request_size;
                // One batch per partition per request, as Kafka's producer does: the
                // response has one result per partition.
                let partition_taken = requests.last().is_some_and(|r| {
                    r.iter()
                        .any(|(o, _)| o.topic == b.topic && o.partition == b.partition)
                });
                if (!last_has_room || partition_taken)
                    && requests.last().is_some_and(|r| !r.is_empty())
                {
                    requests.push(Vec::new());
                    request_bytes = 0;
                }
                request_bytes += bytes.len();
                if let Some(r) = requests.last_mut() {
                    r.push((b, bytes));
                }
            }
            for group in requests.into_iter().filter(|g| !g.is_empty()) {
                let permit = self.permit(leader).await;
                self.send_request(&conn, version, group, permit);
            }
        }
    }

    async fn permit(&mut self, leader: i32) -> Option<OwnedSemaphorePermit> {
        let sem = self
            .permits
            .entry(leader)
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_in_flight)))
            .clone();
        // Waiting here is the producer's backpressure: while `max_in_flight` requests
        // to this broker are unanswered, nothing else is sent (or accepted).
        sem.acquire_owned().await.ok()
    }

    fn send_request(
        &mut self,
        conn: &Arc<crate::connection::Connection>,
        version: i16,
        group: Vec<(Batch, Bytes)>,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        // Produce v13 names topics by id; a broker that sent no id gets v12.
        let version = if group.iter().any(|(b, _)| b.topic_id.is_nil()) {
            version.min(12)
        } else {
            version
        };
        let mut req = ProduceRequest::default();
        req.acks = self.config.acks.as_i16();
        req.timeout_ms = i32::try_from(self.config.client.connection.request_timeout.as_millis())
            .unwrap_or(i32::MAX);
        for (b, bytes) in &group {
            let mut pd = PartitionProduceData::default();
            pd.index = b.partition;
            pd.records = Some(bytes.clone());
            match req
                .topic_data
                .iter_mut()
                .find(|t| t.name.0.as_str() == b.topic)
            {
                Some(t) => t.partition_data.push(pd),
                None => {
                    let mut td = TopicProduceData::default();
                    td.name = TopicName(StrBytes::from_string(b.topic.clone()));
                    td.topic_id = b.topic_id;
                    td.partition_data.push(pd);
                    req.topic_data.push(td);
                }
            }
        }
        let batches: Vec<Batch> = group.into_iter().map(|(b, _)| b).collect();
        if self.config.acks == Acks::None {
            match conn.send_without_response(&req, version) {
                // Done once written to the socket: a flush (or a tool's exit
                // after it) must not overtake records still queued for the writer.
                Ok(written) => {
                    let retrier = self.retrier.clone();
                    let addr = conn.addr().to_owned();
                    tokio::spawn(async move {
                        let sent = written.await.is_ok();
                        for b in batches {
                            if sent {
                                complete(b, -1, -1);
                            } else {
                                retrier.retry_or_fail(b, Error::Disconnected { addr: addr.clone() });
                            }
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    for b in batches {
                        self.retry_or_fail(b, e.clone());
                    }
                    drop(permit);
                }
            }
            return;
        }
        let pending = match conn.enqueue(&req, version) {
            Ok(p) => p,
            Err(e) => {
                for b in batches {
                    self.retry_or_fail(b, e.clone());
                }
                return;
            }
        };
        let retrier = self.retrier.clone();
        self.in_flight.spawn(async move {
            let result = pending.wait().await;
            drop(permit);
            match result {
                Ok(resp) => handle_response(resp, batches, version, &retrier),
                Err(e) => {
                    for b in batches {
                        retrier.retry_or_fail(b, e.clone());
                    }
                }
            }
        });
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves every record of a batch written at `base_offset`.
fn complete(batch: Batch, base_offset: i64, log_append_time: i64) {
    for (i, (w, r)) in batch
        .waiters
        .into_iter()
        .zip(batch.records.iter())
        .enumerate()
    {
        let offset = if base_offset < 0 {
            -1
        } else {
            base_offset + i as i64
        };
        let timestamp = if log_append_time >= 0 {
            log_append_time
        } else {
            r.timestamp
        };
        let _ = w.send(Ok(RecordMetadata {
            topic: batch.topic.clone(),
            partition: batch.partition,
            offset,
            timestamp,
        }));
    }
}

/// Sends failed batches back to the accumulator after a backoff and metadata refresh.
#[derive(Clone)]
struct Retrier {
    tx: mpsc::UnboundedSender<Batch>,
    client: Client,
    backoff: Duration,
    /// Batches sleeping before their retry; flush is not done while any are.
    sleeping: Arc<AtomicUsize>,
}

impl Retrier {
    /// Retries the batch if the error is retriable and its time is not up; else fails it.
    fn retry_or_fail(&self, batch: Batch, err: Error) {
        if !err.is_retriable() || Instant::now() + self.backoff >= batch.deadline {
            batch.fail(&err);
            return;
        }
        tracing::debug!(topic = %batch.topic, partition = batch.partition, error = %err, "retrying batch");
        let this = self.clone();
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::time::sleep(this.backoff).await;
            let _ = this.client.fetch_topic(&batch.topic).await;
            if let Err(mpsc::error::SendError(batch)) = this.tx.send(batch) {
                this.sleeping.fetch_sub(1, Ordering::SeqCst);
                batch.fail(&Error::ProducerClosed);
            }
        });
    }
}

fn handle_response(resp: ProduceResponse, batches: Vec<Batch>, version: i16, retrier: &Retrier) {
    for batch in batches {
        let topic = resp.responses.iter().find(|t| {
            if version >= 13 {
                t.topic_id == batch.topic_id
            } else {
                t.name.0.as_str() == batch.topic
            }
        });
        let part = topic.and_then(|t| {
            t.partition_responses
                .iter()
                .find(|p| p.index == batch.partition)
        });
        let Some(p) = part else {
            let e = Error::protocol(format!(
                "Produce response has no result for {}-{}",
                batch.topic, batch.partition
            ));
            batch.fail(&e);
            continue;
        };
        let message = p.error_message.as_ref().map(|m| m.to_string()).or_else(|| {
            p.record_errors
                .first()
                .and_then(|r| r.batch_index_error_message.as_ref().map(|m| m.to_string()))
        });
        match KafkaError::from_code(p.error_code, message.as_deref()) {
            None => complete(batch, p.base_offset, p.log_append_time_ms),
            Some(e) => retrier.retry_or_fail(batch, Error::Kafka(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::decode_batches;

    fn sample(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                to_wire_record(ProducerRecord {
                    topic: "t".into(),
                    partition: None,
                    key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                    value: Some(Bytes::from(format!("value-{i}"))),
                    headers: vec![
                        ("h".into(), Some(Bytes::from_static(b"v"))),
                        ("n".into(), None),
                        ("h".into(), Some(Bytes::from_static(b"again"))),
                    ],
                    timestamp: Some(1_700_000_000_000 + i as i64),
                })
            })
            .collect()
    }

    #[test]
    fn records_encode_as_one_v2_batch_per_codec_and_decode_back() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let records = sample(5);
            let bytes = encode_batch(&records, codec).expect("encodes");
            let sets = decode_batches(bytes.clone(), 1 << 20).expect("decodes");
            assert_eq!(sets.len(), 1, "{codec:?}: one batch");
            assert_eq!(sets[0].compression, codec);
            let got = &sets[0].records;
            assert_eq!(got.len(), 5);
            for (i, r) in got.iter().enumerate() {
                assert_eq!(r.offset, i as i64);
                assert_eq!(r.value.as_deref(), Some(format!("value-{i}").as_bytes()));
                assert_eq!(r.timestamp, 1_700_000_000_000 + i as i64);
                assert_eq!(r.headers, records[i].headers, "duplicates kept in order");
            }
            // Base offset 0, magic 2, no producer id, base sequence -1.
            assert_eq!(&bytes[0..8], &[0u8; 8]);
            assert_eq!(bytes[16], 2);
            assert_eq!(&bytes[43..51], &(-1i64).to_be_bytes());
            assert_eq!(&bytes[53..57], &(-1i32).to_be_bytes());
        }
    }

    #[test]
    fn acks_and_compression_parse_kafkas_spellings() {
        assert_eq!("all".parse::<Acks>().ok(), Some(Acks::All));
        assert_eq!("-1".parse::<Acks>().ok(), Some(Acks::All));
        assert_eq!("0".parse::<Acks>().ok(), Some(Acks::None));
        assert!("2".parse::<Acks>().is_err());
        assert_eq!("ZSTD".parse::<Compression>().ok(), Some(Compression::Zstd));
        assert!("brotli".parse::<Compression>().is_err());
    }
}
