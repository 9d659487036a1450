//! The network [`LeaderEndpoint`] (Kafka's `RemoteLeaderEndPoint`): one
//! Kafka-protocol connection from a follower to its leader's inter-broker
//! listener, carrying sessionless full Fetches (v12+, the replica id in
//! `replica_state` from v15 with the broker epoch, in the header field
//! before), OffsetForLeaderEpoch and ListOffsets with the follower's replica
//! id. A failed request drops the connection; the next one reconnects,
//! looking the leader's address up again (it may have moved).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use client::{Connection, ConnectionConfig};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};
use uuid::Uuid;

use super::{EpochAnswer, EpochQuery, FetchAnswer, FetchQuery, LeaderEndpoint, OffsetSpec, TopicPartition};
use crate::error::{BrokerError, Result};

/// Where brokers are: the address of a broker's inter-broker listener and
/// its broker epoch. The broker reads them from the metadata image's broker
/// registrations; tests give addresses directly.
pub trait BrokerDirectory: Send + Sync {
    /// The host and port of `broker_id`'s inter-broker listener, if known.
    fn endpoint(&self, broker_id: i32) -> Option<(String, u16)>;

    /// `broker_id`'s broker epoch, sent in Fetch v15+ (-1: unknown).
    fn broker_epoch(&self, _broker_id: i32) -> i64 {
        -1
    }
}

/// First Fetch version answering `diverging_epoch` (truncation on fetch).
const DIVERGING_EPOCH_VERSION: i16 = 12;
/// First Fetch version naming topics by id.
const TOPIC_ID_VERSION: i16 = 13;
/// First Fetch version with `replica_state` (KIP-903).
const REPLICA_STATE_VERSION: i16 = 15;
/// The highest Fetch version this endpoint speaks.
pub const MAX_FETCH_VERSION: i16 = 16;
/// ListOffsets' timestamps for the log end and the log start.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;

/// How a follower fetches (Kafka's `replica.fetch.*` settings).
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// `replica.fetch.wait.max.ms`.
    pub max_wait_ms: i32,
    /// `replica.fetch.min.bytes`.
    pub min_bytes: i32,
    /// `replica.fetch.response.max.bytes`.
    pub response_max_bytes: i32,
    /// `replica.socket.timeout.ms`: connecting and waiting for an answer.
    pub socket_timeout_ms: u64,
    /// The highest Fetch version to send: below 12 truncation goes through
    /// OffsetForLeaderEpoch (as Kafka before truncation on fetch).
    pub max_fetch_version: i16,
}

impl Default for FetchSettings {
    fn default() -> FetchSettings {
        FetchSettings {
            max_wait_ms: 500,
            min_bytes: 1,
            response_max_bytes: 10_485_760,
            socket_timeout_ms: 30_000,
            max_fetch_version: MAX_FETCH_VERSION,
        }
    }
}

/// A follower's connection to one leader.
pub struct RemoteLeader {
    node_id: i32,
    leader_id: i32,
    directory: Arc<dyn BrokerDirectory>,
    settings: FetchSettings,
    // A tokio mutex: held while connecting.
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl RemoteLeader {
    /// The endpoint of follower `node_id` to leader `leader_id`, found through `directory`.
    pub fn new(node_id: i32, leader_id: i32, directory: Arc<dyn BrokerDirectory>, settings: FetchSettings) -> RemoteLeader {
        RemoteLeader { node_id, leader_id, directory, settings, connection: tokio::sync::Mutex::new(None) }
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> BrokerError {
        BrokerError::kafka(
            ResponseError::NetworkException,
            format!("replica fetcher of broker {} to leader {}: {what}: {e}", self.node_id, self.leader_id),
        )
    }

    async fn connection(&self) -> Result<Arc<Connection>> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        let Some((host, port)) = self.directory.endpoint(self.leader_id) else {
            return Err(self.failed("connect", "the metadata has no inter-broker listener of the leader"));
        };
        let addr = format!("{host}:{port}");
        let timeout = Duration::from_millis(self.settings.socket_timeout_ms);
        let config = ConnectionConfig {
            client_id: format!("broker-{}-fetcher-{}", self.node_id, self.leader_id),
            connect_timeout: timeout,
            request_timeout: timeout + Duration::from_millis(self.settings.max_wait_ms.max(0) as u64),
            // The first partition with data may exceed the response limit (KIP-74).
            max_response_bytes: (self.settings.response_max_bytes.max(0) as usize).saturating_mul(2).saturating_add(1 << 20),
        };
        let conn = Arc::new(Connection::connect(&addr, config).await.map_err(|e| self.failed(&format!("connect to {addr}"), e))?);
        *slot = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// Sends `req` at `version`, dropping the connection if it fails.
    async fn send<R: Request>(&self, conn: &Connection, req: &R, version: i16) -> Result<R::Response> {
        match conn.send_version(req, version).await {
            Ok(response) => Ok(response),
            Err(e) => {
                *self.connection.lock().await = None;
                Err(self.failed(&format!("request of api key {} v{version}", R::KEY), e))
            }
        }
    }

    /// The highest version of `api` both sides speak, capped at `cap`.
    fn version(&self, conn: &Connection, api: ApiKey, cap: i16) -> Result<i16> {
        match conn.versions(api) {
            Some(range) if !range.is_empty() && range.min <= cap => Ok(range.max.min(cap)),
            _ => Err(self.failed(&format!("{api:?}"), "the leader speaks no version this broker does")),
        }
    }
}

/// The partition's error from a response's code.
fn error_of(code: i16) -> Option<ResponseError> {
    if code == 0 {
        None
    } else {
        Some(ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError))
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

impl LeaderEndpoint for RemoteLeader {
    fn truncation_on_fetch(&self) -> bool {
        self.settings.max_fetch_version >= DIVERGING_EPOCH_VERSION
    }

    async fn offset_for_leader_epoch(&self, queries: &[EpochQuery]) -> Result<Vec<EpochAnswer>> {
        let conn = self.connection().await?;
        let version = self.version(&conn, ApiKey::OffsetForLeaderEpoch, 4)?;
        let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
        for q in queries {
            let partition = OffsetForLeaderPartition::default()
                .with_partition(q.partition.1)
                .with_current_leader_epoch(q.current_leader_epoch)
                .with_leader_epoch(q.leader_epoch);
            match topics.last_mut().filter(|t| t.topic.0.as_str() == q.partition.0) {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(OffsetForLeaderTopic::default().with_topic(topic_name(&q.partition.0)).with_partitions(vec![partition])),
            }
        }
        let replica_id = if version >= 3 { self.node_id } else { -2 };
        let req = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(replica_id)).with_topics(topics);
        let response = self.send(&conn, &req, version).await?;
        let mut found: HashMap<TopicPartition, EpochAnswer> = HashMap::new();
        for topic in response.topics {
            for p in topic.partitions {
                let answer = EpochAnswer { error: error_of(p.error_code), leader_epoch: p.leader_epoch, end_offset: p.end_offset };
                found.insert((topic.topic.0.to_string(), p.partition), answer);
            }
        }
        let missing = EpochAnswer { error: Some(ResponseError::UnknownServerError), leader_epoch: -1, end_offset: -1 };
        Ok(queries.iter().map(|q| found.remove(&q.partition).unwrap_or(missing)).collect())
    }

    async fn fetch(&self, queries: &[FetchQuery], max_bytes: usize) -> Result<Vec<FetchAnswer>> {
        let conn = self.connection().await?;
        let version = self.version(&conn, ApiKey::Fetch, self.settings.max_fetch_version)?;
        if self.truncation_on_fetch() && version < DIVERGING_EPOCH_VERSION {
            // Its answers would not tell a divergent log: refuse rather than copy wrongly.
            return Err(self.failed("Fetch", format!("the leader speaks Fetch up to v{version}, below v{DIVERGING_EPOCH_VERSION}")));
        }
        let by_id = version >= TOPIC_ID_VERSION;
        let partition_max = i32::try_from(max_bytes).unwrap_or(i32::MAX);
        let mut topics: Vec<FetchTopic> = Vec::new();
        for q in queries {
            let partition = FetchPartition::default()
                .with_partition(q.partition.1)
                .with_current_leader_epoch(q.current_leader_epoch)
                .with_fetch_offset(q.fetch_offset)
                .with_last_fetched_epoch(if version >= DIVERGING_EPOCH_VERSION { q.last_fetched_epoch } else { -1 })
                .with_log_start_offset(q.log_start_offset)
                .with_partition_max_bytes(partition_max);
            let same = |t: &FetchTopic| if by_id { t.topic_id == q.topic_id } else { t.topic.0.as_str() == q.partition.0 };
            match topics.last_mut().filter(|t| same(t)) {
                Some(topic) => topic.partitions.push(partition),
                None => {
                    let topic = if by_id { FetchTopic::default().with_topic_id(q.topic_id) } else { FetchTopic::default().with_topic(topic_name(&q.partition.0)) };
                    topics.push(topic.with_partitions(vec![partition]));
                }
            }
        }
        let mut req = FetchRequest::default()
            .with_max_wait_ms(self.settings.max_wait_ms)
            .with_min_bytes(self.settings.min_bytes)
            .with_max_bytes(self.settings.response_max_bytes)
            .with_isolation_level(0)
            // Sessionless: every fetch names every partition.
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics);
        if version >= REPLICA_STATE_VERSION {
            req.replica_state = ReplicaState::default().with_replica_id(BrokerId(self.node_id)).with_replica_epoch(self.directory.broker_epoch(self.node_id));
        } else {
            req.replica_id = BrokerId(self.node_id);
        }
        let response = self.send(&conn, &req, version).await?;
        let top_error = error_of(response.error_code);
        let mut found: HashMap<(Uuid, String, i32), FetchAnswer> = HashMap::new();
        for topic in response.responses {
            let (id, name) = if by_id { (topic.topic_id, String::new()) } else { (Uuid::nil(), topic.topic.0.to_string()) };
            for p in topic.partitions {
                let diverging = (p.diverging_epoch.epoch >= 0).then_some((p.diverging_epoch.epoch, p.diverging_epoch.end_offset));
                let answer = FetchAnswer {
                    error: error_of(p.error_code),
                    records: p.records.unwrap_or_default(),
                    high_watermark: p.high_watermark,
                    log_start_offset: p.log_start_offset,
                    diverging_epoch: diverging,
                };
                found.insert((id, name.clone(), p.partition_index), answer);
            }
        }
        let failed = |error| FetchAnswer { error: Some(error), records: Default::default(), high_watermark: -1, log_start_offset: -1, diverging_epoch: None };
        Ok(queries
            .iter()
            .map(|q| {
                if let Some(error) = top_error {
                    return failed(error);
                }
                let key = if by_id { (q.topic_id, String::new(), q.partition.1) } else { (Uuid::nil(), q.partition.0.clone(), q.partition.1) };
                found.remove(&key).unwrap_or_else(|| failed(ResponseError::UnknownServerError))
            })
            .collect())
    }

    async fn list_offset(&self, partition: &TopicPartition, current_leader_epoch: i32, spec: OffsetSpec) -> Result<std::result::Result<i64, ResponseError>> {
        let conn = self.connection().await?;
        let version = self.version(&conn, ApiKey::ListOffsets, 10)?;
        let timestamp = match spec {
            OffsetSpec::Earliest => EARLIEST_TIMESTAMP,
            OffsetSpec::Latest => LATEST_TIMESTAMP,
        };
        let queried = ListOffsetsPartition::default()
            .with_partition_index(partition.1)
            .with_current_leader_epoch(current_leader_epoch)
            .with_timestamp(timestamp);
        let topic = ListOffsetsTopic::default().with_name(topic_name(&partition.0)).with_partitions(vec![queried]);
        let req = ListOffsetsRequest::default().with_replica_id(BrokerId(self.node_id)).with_topics(vec![topic]);
        let response = self.send(&conn, &req, version).await?;
        let answer = response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == partition.0)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition.1);
        Ok(match answer {
            Some(p) => match error_of(p.error_code) {
                None => Ok(p.offset),
                Some(error) => Err(error),
            },
            None => Err(ResponseError::UnknownServerError),
        })
    }
}
